"""Trains the demo fraud detector and writes weights.safetensors and tokenizer.json.

    python train.py [--out-dir DIR]      # DIR defaults to this script's directory

Training-resolve only (scikit-learn is used for evaluation metrics); nothing here goes into an image.
Everything is deterministic: the synthetic data comes from a seeded numpy Generator, the tokenizer is a
frequency-ordered word-level vocabulary, and the MLP is trained full-batch, so re-running reproduces the
committed artifacts byte for byte (train_test.py checks this).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from tokenizers import Tokenizer

from models.shared.textfeatures import token_bags, train_word_tokenizer
from models.shared.training import adam_step, quantize

HERE = Path(__file__).resolve().parent

SEED = 20240611
N_TRANSACTIONS = 20_000
TEST_FRACTION = 0.2
EMBED_DIM = 8
HIDDEN = 16
STEPS = 600
LEARNING_RATE = 0.02
L2 = 1e-3
# Stored weights are rounded to models/shared/training.py's grid: last-bit differences between CPUs' math
# kernels (SIMD exp/log, BLAS summation order) then cannot change the committed bytes.

# Merchant descriptor vocabulary: (category words, fraud log-odds contribution, share of transactions).
# The risky categories are the classic cash-out channels: instruments that are easy to resell or move.
CATEGORIES = [
    ("grocery market", 0.0, 14),
    ("supermarket", 0.0, 12),
    ("coffee house", -0.3, 10),
    ("restaurant", 0.0, 10),
    ("fuel station", 0.1, 8),
    ("pharmacy", -0.2, 6),
    ("bakery", -0.3, 4),
    ("transit fare", -0.4, 4),
    ("bookstore", -0.2, 3),
    ("hardware store", 0.0, 3),
    ("cinema", 0.0, 3),
    ("parking", -0.2, 3),
    ("electronics store", 0.6, 4),
    ("airline tickets", 0.7, 2),
    ("hotel", 0.3, 2),
    ("crypto exchange", 2.4, 1.2),
    ("gift cards", 2.2, 1.2),
    ("wire transfer", 2.5, 0.8),
    ("online casino", 2.0, 1.0),
    ("prepaid topup", 1.8, 1.0),
    ("money transfer", 1.9, 0.8),
]
BRANDS = ["bluebird", "northwind", "summit", "maple", "harbor", "evergreen",
          "lakeside", "redwood", "pioneer", "silverline", "cedar", "oakridge"]
# "online" marks card-not-present purchases, which are riskier.
CITIES = [("london", 10), ("paris", 8), ("berlin", 8), ("madrid", 6), ("toronto", 6), ("sydney", 5),
          ("new york", 10), ("chicago", 6), ("lagos", 3), ("manila", 3), ("online", 15)]
PREFIXES = [("", 55), ("SQ *", 15), ("POS ", 15), ("PAYPAL *", 10), ("TST* ", 5)]
# Card activity by local hour: quiet at night, busy at lunch and in the early evening.
HOURLY_ACTIVITY = [1.0, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4.0, 5.0, 5.5, 6.0,
                   6.5, 6.0, 5.5, 5.5, 6.0, 6.5, 6.5, 6.0, 5.0, 4.0, 3.0, 2.0]


def load_serving_module():
    """server/handler.py, loaded by path like the runtime server does: its feature code is shared."""
    spec = importlib.util.spec_from_file_location("fraud_handler", HERE / "server" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _weights(pairs):
    weights = np.array([w for _, w in pairs], dtype=np.float64)
    return weights / weights.sum()


def make_dataset(rng: np.random.Generator, n: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Synthetic card transactions, fraud labels, and the generator's observable log-odds.

    Labels are drawn from a known log-odds model plus unobserved noise; ranking by the noiseless
    log-odds is the best any model of these inputs can do, a reference for the model's ROC AUC.
    """
    category = rng.choice(len(CATEGORIES), size=n, p=_weights([(c, w) for c, _, w in CATEGORIES]))
    brand = rng.integers(len(BRANDS), size=n)
    city = rng.choice(len(CITIES), size=n, p=_weights(CITIES))
    prefix = rng.choice(len(PREFIXES), size=n, p=_weights(PREFIXES))
    store = rng.integers(1, 10_000, size=n)
    has_store = rng.random(n) < 0.4
    merchant = []
    for i in range(n):
        text = f"{PREFIXES[prefix[i]][0]}{BRANDS[brand[i]]} {CATEGORIES[category[i]][0]}"
        if has_store[i]:
            text += f" #{store[i]:04d}"
        merchant.append(f"{text} {CITIES[city[i]][0]}".upper())

    hour = rng.choice(24, size=n, p=np.array(HOURLY_ACTIVITY) / sum(HOURLY_ACTIVITY))
    amount = np.round(np.maximum(np.exp(rng.normal(3.4, 1.0, size=n)), 1.0), 2)
    country_mismatch = rng.random(n) < 0.08
    txn_count_24h = rng.poisson(1.5, size=n) + 1

    night = hour < 6
    online = np.array([CITIES[c][0] == "online" for c in city])
    signal = (
        -4.6
        + 1.2 * (np.log1p(amount) - 3.4)
        + 1.8 * night
        + 2.0 * country_mismatch
        + 1.0 * (night & country_mismatch)
        + 0.6 * (txn_count_24h - 2.5)
        + 0.7 * online
        + np.array([CATEGORIES[c][1] for c in category])
    )
    log_odds = signal + rng.normal(0.0, 0.5, size=n)
    is_fraud = rng.random(n) < 1.0 / (1.0 + np.exp(-log_odds))
    columns = {
        "amount": amount.astype(np.float32),
        "hour": hour.astype(np.int32),
        "country_mismatch": country_mismatch,
        "txn_count_24h": txn_count_24h.astype(np.int32),
        "merchant": merchant,
    }
    return columns, is_fraud.astype(np.float64), signal


def take(columns: dict, index: np.ndarray) -> dict:
    return {k: [v[i] for i in index] if isinstance(v, list) else v[index] for k, v in columns.items()}


def train_tokenizer(texts: list[str]) -> Tokenizer:
    # Words seen fewer than 20 times stay unknown: they could only be memorised, not learned.
    return train_word_tokenizer(texts, min_frequency=20)


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # never overflows, unlike 1 / (1 + exp(-z))


def forward(params: dict, x_num: np.ndarray, bags: np.ndarray) -> dict:
    """Same network as Handler.probability, keeping the intermediate values backprop needs."""
    x = np.concatenate([x_num, bags @ params["token_embedding.weight"]], axis=1)
    pre = x @ params["hidden.weight"] + params["hidden.bias"]
    hidden = np.maximum(pre, 0.0)
    p = sigmoid(hidden @ params["output.weight"] + params["output.bias"])
    return {"x": x, "pre": pre, "hidden": hidden, "p": p}


def train_mlp(rng: np.random.Generator, x_num: np.ndarray, bags: np.ndarray, y: np.ndarray) -> dict:
    """Full-batch Adam on L2-regularised log loss; float64 so the optimisation itself is stable."""
    n, k = x_num.shape
    params = {
        "token_embedding.weight": rng.normal(0.0, 0.1, size=(bags.shape[1], EMBED_DIM)),
        "hidden.weight": rng.normal(0.0, math.sqrt(2.0 / (k + EMBED_DIM)), size=(k + EMBED_DIM, HIDDEN)),
        "hidden.bias": np.zeros(HIDDEN),
        "output.weight": rng.normal(0.0, math.sqrt(1.0 / HIDDEN), size=HIDDEN),
        "output.bias": np.array([math.log(y.mean() / (1.0 - y.mean()))]),  # start at the base rate
    }
    moment1 = {name: np.zeros_like(value) for name, value in params.items()}
    moment2 = {name: np.zeros_like(value) for name, value in params.items()}
    for step in range(1, STEPS + 1):
        f = forward(params, x_num, bags)
        d_logit = (f["p"] - y) / n
        d_pre = np.outer(d_logit, params["output.weight"]) * (f["pre"] > 0)
        d_x = d_pre @ params["hidden.weight"].T
        grads = {
            "output.weight": f["hidden"].T @ d_logit,
            "output.bias": np.array([d_logit.sum()]),
            "hidden.weight": f["x"].T @ d_pre,
            "hidden.bias": d_pre.sum(axis=0),
            "token_embedding.weight": bags.T @ d_x[:, k:],
        }
        for name in ("output.weight", "hidden.weight", "token_embedding.weight"):
            grads[name] += L2 * params[name]
        adam_step(params, grads, moment1, moment2, step, LEARNING_RATE)
    return params


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Decision threshold maximising F1 on the training split (fraud is rare, so 0.5 is too strict)."""
    best = (-1.0, 0.5)
    for threshold in np.round(np.arange(0.05, 0.951, 0.01), 2):
        flagged = p >= threshold
        tp = float(np.sum(flagged & (y == 1)))
        f1 = 2 * tp / (flagged.sum() + y.sum())
        if f1 > best[0]:
            best = (f1, float(threshold))
    return best[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where to write the artifacts")
    args = parser.parse_args(argv)
    serving = load_serving_module()

    rng = np.random.default_rng(SEED)
    columns, y, signal = make_dataset(rng, N_TRANSACTIONS)
    order = rng.permutation(N_TRANSACTIONS)
    n_test = int(N_TRANSACTIONS * TEST_FRACTION)
    test, train = take(columns, order[:n_test]), take(columns, order[n_test:])
    y_test, y_train = y[order[:n_test]], y[order[n_test:]]

    tokenizer = train_tokenizer(train["merchant"])
    numeric = serving.numeric_features(
        train["amount"], train["hour"], train["country_mismatch"], train["txn_count_24h"])
    mean, std = numeric.mean(axis=0), numeric.std(axis=0)
    bags = token_bags(tokenizer, train["merchant"])
    params = train_mlp(rng, (numeric - mean) / std, bags, y_train)

    stored = {name: quantize(value) for name, value in params.items()}
    stored["numeric.mean"], stored["numeric.std"] = quantize(mean), quantize(std)
    as64 = {name: value.astype(np.float64) for name, value in stored.items()}
    p_train = forward(as64, (numeric - as64["numeric.mean"]) / as64["numeric.std"], bags)["p"]
    config = {
        "format": serving.MODEL_FORMAT,
        "numeric_features": list(serving.NUMERIC_FEATURES),
        "tokenizer": "tokenizer.json",
        "decision_threshold": best_f1_threshold(y_train, p_train),
        "seed": SEED,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(args.out_dir / "tokenizer.json"))
    save_file(stored, str(args.out_dir / "weights.safetensors"),
              metadata={serving.METADATA_KEY: json.dumps(config, sort_keys=True, separators=(",", ":"))})
    (args.out_dir / "weights.safetensors").chmod(0o644)  # safetensors creates it 0600

    # Evaluate exactly what ships: the written files, through the serving code path.
    outputs = serving.Handler(str(args.out_dir)).predict(test)
    p_test = outputs["fraud_probability"].astype(np.float64)
    flagged = outputs["is_fraud"]
    tp = float(np.sum(flagged & (y_test == 1)))
    metrics = {
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        "fraud_rate_test": float(y_test.mean()),
        "vocab_size": tokenizer.get_vocab_size(),
        "parameters": int(sum(v.size for k, v in stored.items() if not k.startswith("numeric."))),
        "roc_auc": roc_auc_score(y_test, p_test),
        "average_precision": average_precision_score(y_test, p_test),
        "log_loss": log_loss(y_test, p_test),
        "brier": brier_score_loss(y_test, p_test),
        "decision_threshold": config["decision_threshold"],
        "precision": tp / max(float(flagged.sum()), 1.0),
        "recall": tp / float(y_test.sum()),
        "flag_rate": float(flagged.mean()),
        "roc_auc_amount_only_baseline": roc_auc_score(y_test, test["amount"]),
        "roc_auc_generator_reference": roc_auc_score(y_test, signal[order[:n_test]]),
    }
    metrics = {k: round(float(v), 4) if isinstance(v, float) else v for k, v in metrics.items()}
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
