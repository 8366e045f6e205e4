"""Shared fixtures: a tiny random BERT (saved like a real checkpoint) and tiny task files."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POS_WORDS = ["good", "great", "fine", "lovely", "superb", "fun"]
NEG_WORDS = ["bad", "awful", "dull", "poor", "boring", "weak"]
FILLER = ["the", "movie", "film", "was", "really", "plot", "acting", "very", "a", "it"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 4-layer, 32-wide random BERT with a word-level vocabulary, saved with its tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizer
    import torch

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "!"] + POS_WORDS + NEG_WORDS + FILLER
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(d)
    BertTokenizer(str(d / "vocab.txt"), do_lower_case=True, model_max_length=64).save_pretrained(d)
    return d


def _sentence(rng: random.Random, words: list[str]) -> str:
    body = rng.sample(FILLER, 3) + [rng.choice(words), rng.choice(words)]
    rng.shuffle(body)
    return " ".join(body)


def write_sentiment_csv(path: Path, n: int, seed: int) -> Path:
    """A separable toy sentiment set: positive rows hold positive words, negative rows negative."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        lines.append(f"{_sentence(rng, POS_WORDS if label == 'pos' else NEG_WORDS)},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def toy_task(tmp_path) -> Path:
    """A task YAML over toy CSVs: target with official train/test, and a source pool."""
    write_sentiment_csv(tmp_path / "train.csv", 120, seed=1)
    write_sentiment_csv(tmp_path / "test.csv", 60, seed=2)
    write_sentiment_csv(tmp_path / "source.csv", 80, seed=3)
    (tmp_path / "task.yaml").write_text(
        "name: toy\nkind: classification\ntext: text\nlabel: label\nlabels: [neg, pos]\n"
        "target: {train: train.csv, test: test.csv}\nsource: {all: source.csv}\nval_size: 20\n"
    )
    return tmp_path / "task.yaml"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data (``AUGRL_DATA``); integration tests skip without it."""
    root = os.environ.get("AUGRL_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("AUGRL_DATA is not set to the shared data folder")
    return Path(root)
