import numpy as np

from models.shared.textfeatures import UNK_TOKEN, token_bags, train_word_tokenizer


def test_vocabulary_keeps_frequent_normalised_words_only() -> None:
    tokenizer = train_word_tokenizer(["Café NOIR #12", "cafe noir", "cafe latte"], min_frequency=2)
    assert sorted(tokenizer.get_vocab()) == sorted([UNK_TOKEN, "cafe", "noir"])
    assert train_word_tokenizer(["b a a"], 1).to_str() == train_word_tokenizer(["b a a"], 1).to_str()


def test_bags_average_known_tokens_and_ignore_unknown_ones() -> None:
    tokenizer = train_word_tokenizer(["red apple", "red apple", "green"], min_frequency=2)
    bags = token_bags(tokenizer, ["RED red apple kiwi", "kiwi", ""])
    red, apple = tokenizer.token_to_id("red"), tokenizer.token_to_id("apple")
    assert bags.shape == (3, tokenizer.get_vocab_size())
    assert np.isclose(bags[0, red], 2 / 3) and np.isclose(bags[0, apple], 1 / 3)
    assert np.isclose(bags[0].sum(), 1.0)
    assert not bags[1].any() and not bags[2].any()
