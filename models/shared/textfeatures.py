"""Text features shared by the models' serving and training code, so both compute them identically.

Both models read short free text (a merchant descriptor, a product review) as a bag of words over a small
word-level vocabulary: accents, case, digits and punctuation are normalised away, and words too rare to
learn from stay unknown and carry no evidence.
"""

from __future__ import annotations

import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

UNK_TOKEN = "[UNK]"


def train_word_tokenizer(texts: list[str], min_frequency: int, vocab_size: int = 512) -> Tokenizer:
    """A word-level tokenizer whose vocabulary (frequency-ordered, deterministic) is every word seen at
    least ``min_frequency`` times in ``texts``."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.NFKD(),
        normalizers.StripAccents(),
        normalizers.Lowercase(),
        normalizers.Replace(Regex(r"[^a-z]+"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[UNK_TOKEN])
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def token_bags(tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    """Mean bag of known tokens per text, shape [n, vocab], float64; unknown words carry no evidence."""
    unk_id = tokenizer.token_to_id(UNK_TOKEN)
    bags = np.zeros((len(texts), tokenizer.get_vocab_size()), dtype=np.float64)
    for row, encoding in enumerate(tokenizer.encode_batch(texts, add_special_tokens=False)):
        ids = [i for i in encoding.ids if i != unk_id]
        if ids:
            np.add.at(bags[row], ids, 1.0 / len(ids))
    return bags
