"""Trains the demo review-sentiment classifier and writes weights.safetensors and tokenizer.json.

    python train.py [--out-dir DIR]      # DIR defaults to this script's directory

Training-resolve only (scikit-learn is used for evaluation metrics); nothing here goes into an image.
Deterministic like the fraud model's: seeded synthetic reviews, a frequency-ordered vocabulary, full-batch
gradient descent in float64 and weights rounded to a grid, so re-running reproduces the committed bytes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from models.shared.textfeatures import token_bags, train_word_tokenizer
from models.shared.training import quantize  # stored weights on a grid: CPU math cannot change the bytes

HERE = Path(__file__).resolve().parent

SEED = 20241105
N_REVIEWS = 6_000
TEST_FRACTION = 0.25
STEPS = 2000
LEARNING_RATE = 10.0
L2 = 1e-4
LABEL_NOISE = 0.05

PRODUCTS = ["kettle", "headphones", "backpack", "lamp", "blender", "jacket", "charger", "mattress", "camera",
            "keyboard", "toaster", "umbrella"]
POSITIVE = ["great", "excellent", "love", "sturdy", "comfortable", "reliable", "perfect", "recommend",
            "works well", "fast delivery", "good value", "happy"]
NEGATIVE = ["broken", "terrible", "disappointed", "flimsy", "refund", "returned", "stopped working",
            "waste of money", "poor quality", "late delivery", "cheap plastic", "awful"]
FILLER = ["the", "this", "it", "was", "is", "my", "after", "a", "week", "and", "very", "really", "for", "use",
          "daily", "bought", "gift", "arrived", "box", "price"]


def load_serving_module():
    """server/handler.py, loaded by path like the runtime server does (it is not in the training resolve)."""
    spec = importlib.util.spec_from_file_location("sentiment_handler", HERE / "server" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_reviews(rng: np.random.Generator, n: int) -> tuple[list[str], np.ndarray]:
    """Synthetic reviews: filler words, a product, and one to three opinion phrases that mostly (not
    always) agree with the review's label; some labels are flipped, as real star ratings are noisy."""
    positive = rng.random(n) < 0.5
    texts = []
    for i in range(n):
        words = list(rng.choice(FILLER, size=rng.integers(3, 8)))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(PRODUCTS)))
        for _ in range(int(rng.integers(1, 4))):
            agree = rng.random() < 0.8
            pool = POSITIVE if positive[i] == agree else NEGATIVE
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(pool)))
        texts.append(" ".join(words).capitalize() + ".")
    flipped = rng.random(n) < LABEL_NOISE
    return texts, (positive ^ flipped).astype(np.float64)


def train_logistic(bags: np.ndarray, y: np.ndarray) -> dict:
    """Full-batch gradient descent on L2-regularised log loss, from zero weights (no randomness)."""
    weight, bias = np.zeros(bags.shape[1]), np.array([0.0])
    for _ in range(STEPS):
        p = 0.5 * (1.0 + np.tanh(0.5 * (bags @ weight + bias[0])))
        error = (p - y) / len(y)
        weight = weight - LEARNING_RATE * (bags.T @ error + L2 * weight)
        bias = bias - LEARNING_RATE * np.array([error.sum()])
    return {"token.weight": weight, "bias": bias}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where to write the artifacts")
    args = parser.parse_args(argv)

    serving = load_serving_module()
    rng = np.random.default_rng(SEED)
    texts, y = make_reviews(rng, N_REVIEWS)
    order = rng.permutation(N_REVIEWS)
    n_test = int(N_REVIEWS * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]

    tokenizer = train_word_tokenizer([texts[i] for i in train], min_frequency=10)
    params = train_logistic(token_bags(tokenizer, [texts[i] for i in train]), y[train])
    stored = {name: quantize(value) for name, value in params.items()}
    config = {"format": serving.MODEL_FORMAT, "tokenizer": "tokenizer.json", "decision_threshold": 0.5, "seed": SEED}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(args.out_dir / "tokenizer.json"))
    save_file(stored, str(args.out_dir / "weights.safetensors"),
              metadata={serving.METADATA_KEY: json.dumps(config, sort_keys=True, separators=(",", ":"))})
    (args.out_dir / "weights.safetensors").chmod(0o644)  # safetensors creates it 0600

    # Evaluate exactly what ships: the written files, through the serving code path.
    outputs = serving.Handler(str(args.out_dir)).predict({"text": [texts[i] for i in test]})
    p_test = outputs["positive_probability"].astype(np.float64)
    metrics = {
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "positive_rate_test": float(y[test].mean()),
        "vocab_size": tokenizer.get_vocab_size(),
        "accuracy": accuracy_score(y[test], outputs["is_positive"]),
        "roc_auc": roc_auc_score(y[test], p_test),
        "log_loss": log_loss(y[test], p_test),
    }
    metrics = {k: round(float(v), 4) if isinstance(v, float) else v for k, v in metrics.items()}
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
