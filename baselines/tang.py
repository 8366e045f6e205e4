"""Tang et al. (2019), "Distilling task-specific knowledge from BERT into simple neural networks":
masking, POS-guided word replacement, n-gram sampling, and their combined procedure.

* ``mask``: each word becomes ``[MASK]`` with probability ``p_mask``;
* ``pos``: each word, with probability ``p_pos``, becomes another word with the same POS tag,
  drawn from the task's vocabulary with probability proportional to how often it carries that
  tag (tags from spaCy; Penn Treebank tags by default);
* ``ngram``: with probability ``p_ng`` the text is cut to a random n-gram, n uniform in
  ``[n_min, n_max]`` (default 1..5);
* ``tang``: the paper's procedure: for each word draw u ~ U(0, 1); mask it if u < p_mask,
  else POS-replace it if u < p_mask + p_pos; then n-gram sample the result with probability
  p_ng. Defaults are the paper's: p_mask = p_pos = 0.1, p_ng = 0.25. Repeating the procedure
  gives the n variants.

The POS vocabulary comes from :meth:`fit` (the task's target train texts plus a seeded sample of
its source pool, never validation or test text), cached on disk; without ``fit`` it is built
from the texts being augmented.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from augrl.errors import ConfigError

from .base import WordAugmenter, words_of
from augrl.artifacts import cached_build
from .corpus import task_key, task_texts
from .resources import load_spacy, tag_words

MASK_TOKEN = "[MASK]"


def _probability(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value}")
    return value


class PosVocabulary:
    """Words by POS tag with their counts; samples a word for a tag by frequency.

    Args:
        counts: ``{tag: {word: count}}``.
    """

    def __init__(self, counts: dict[str, dict[str, int]]) -> None:
        self.counts = {tag: dict(words) for tag, words in counts.items() if words}
        self._tables = {}
        for tag, words in self.counts.items():
            items = sorted(words.items())
            freq = np.array([c for _, c in items], dtype=np.float64)
            self._tables[tag] = ([w for w, _ in items], np.cumsum(freq) / freq.sum())

    @classmethod
    def from_tagged(cls, words: Iterable[list[str]], tags: Iterable[list[str]]) -> "PosVocabulary":
        counts: dict[str, Counter] = defaultdict(Counter)
        for ws, ts in zip(words, tags):
            for w, t in zip(ws, ts):
                counts[t][w] += 1
        return cls({t: dict(c) for t, c in counts.items()})

    @classmethod
    def from_texts(cls, texts: list[str], fine: bool = True) -> "PosVocabulary":
        """Tag ``texts`` with spaCy and count words per tag."""
        words = [words_of(t) for t in texts]
        return cls.from_tagged(words, tag_words(words, fine=fine))

    def __len__(self) -> int:
        return sum(len(w) for w in self.counts.values())

    def sample(self, tag: str, rng: np.random.Generator, avoid: str | None = None, tries: int = 5) -> str | None:
        """A word with ``tag`` drawn by frequency, other than ``avoid`` (None if there is none)."""
        table = self._tables.get(tag)
        if table is None:
            return None
        words, cdf = table
        for _ in range(tries):
            word = words[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(words) - 1)]
            if word != avoid:
                return word
        return None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.counts))

    @classmethod
    def load(cls, path: str | Path) -> "PosVocabulary":
        return cls(json.loads(Path(path).read_text()))


# ---------------------------------------------------------------------------- the operations


def mask_words(words: list[str], p_mask: float, rng: np.random.Generator, token: str = MASK_TOKEN) -> list[str]:
    """Each word becomes ``token`` with probability ``p_mask``."""
    draws = rng.random(len(words))
    return [token if u < p_mask else w for w, u in zip(words, draws)]


def ngram_sample(words: list[str], p_ng: float, n_min: int, n_max: int, rng: np.random.Generator) -> list[str]:
    """With probability ``p_ng``, a random contiguous n-gram of ``words`` (n uniform in [n_min, n_max])."""
    if not words or rng.random() >= p_ng:
        return words
    n = min(int(rng.integers(n_min, n_max + 1)), len(words))
    start = int(rng.integers(len(words) - n + 1))
    return words[start:start + n]


class _PosMixin:
    """POS vocabulary handling shared by ``pos`` and ``tang``."""

    fine_tags: bool
    vocab_texts: int
    vocabulary: PosVocabulary | None

    def _init_pos(self, fine_tags: bool, vocab_texts: int, uses_pos: bool = True) -> None:
        self.fine_tags = bool(fine_tags)
        self.vocab_texts = int(vocab_texts)
        self.vocabulary = None
        self._uses_pos = uses_pos
        if uses_pos:
            load_spacy()  # fail early, with install instructions

    def fit(self, task):
        """Build (or load from the cache) the POS vocabulary of the task's train and source texts."""
        import spacy

        if not self._uses_pos:
            return self

        nlp = load_spacy()
        key = {**task_key(task), "max_texts": self.vocab_texts, "fine": self.fine_tags,
               "spacy_model": f"{nlp.meta.get('name')}-{nlp.meta.get('version')}", "spacy": spacy.__version__}

        def build(folder: Path) -> dict:
            texts = task_texts(task, self.vocab_texts)
            vocab = PosVocabulary.from_texts(texts, fine=self.fine_tags)
            vocab.save(folder / "vocab.json")
            return {"texts": len(texts), "words": len(vocab), "tags": len(vocab.counts)}

        folder, _ = cached_build("pos-vocab", task.spec.name, key, build)
        self.vocabulary = PosVocabulary.load(folder / "vocab.json")
        return self

    def fit_texts(self, texts: list[str]):
        """Use the POS vocabulary of ``texts`` (e.g. your own unlabeled in-domain text)."""
        self.vocabulary = PosVocabulary.from_texts([t for t in texts if t and t.strip()], fine=self.fine_tags)
        return self

    def _tagged(self, texts: list[str]) -> list[tuple[list[str], list[str]]]:
        words = [words_of(t) for t in texts]
        tags = tag_words(words, fine=self.fine_tags)
        self._batch_vocab = PosVocabulary.from_tagged(words, tags) if self.vocabulary is None else None
        return list(zip(words, tags))

    def _replace(self, word: str, tag: str, rng: np.random.Generator) -> str:
        vocab = self.vocabulary if self.vocabulary is not None else self._batch_vocab
        return vocab.sample(tag, rng, avoid=word) or word


# ---------------------------------------------------------------------------- the augmenters


class MaskAugmenter(WordAugmenter):
    """Tang et al.'s masking: each word becomes ``[MASK]`` with probability ``p_mask`` (default 0.1).

    Args:
        p_mask: masking probability per word.
        mask_token: the replacement (BERT's ``[MASK]`` by default).
    """

    name = "mask"

    def __init__(self, p_mask: float = 0.1, mask_token: str = MASK_TOKEN, side: str = "both",
                 seed: int | None = None, batch_size: int = 256) -> None:
        super().__init__(side=side, seed=seed, batch_size=batch_size)
        self.p_mask = _probability("p_mask", p_mask)
        self.mask_token = mask_token

    def params(self):
        return {"p_mask": self.p_mask, "mask_token": self.mask_token, **super().params()}

    def _variant(self, words, rng, label):
        return mask_words(words, self.p_mask, rng, self.mask_token)


class POSAugmenter(_PosMixin, WordAugmenter):
    """Tang et al.'s POS-guided replacement: each word, with probability ``p_pos`` (default 0.1),
    becomes another word of the same POS tag drawn from the task vocabulary by frequency.

    Args:
        p_pos: replacement probability per word.
        fine_tags: Penn Treebank tags (default) or coarse universal tags.
        vocab_texts: at most this many texts build the vocabulary in :meth:`fit` (all target
            train texts, then a seeded sample of the source pool).
    """

    name = "pos"

    def __init__(self, p_pos: float = 0.1, fine_tags: bool = True, vocab_texts: int = 5000, side: str = "both",
                 seed: int | None = None, batch_size: int = 256) -> None:
        super().__init__(side=side, seed=seed, batch_size=batch_size)
        self.p_pos = _probability("p_pos", p_pos)
        self._init_pos(fine_tags, vocab_texts)

    def params(self):
        return {"p_pos": self.p_pos, "fine_tags": self.fine_tags, "vocab_texts": self.vocab_texts, **super().params()}

    def _prepare(self, texts):
        return self._tagged(texts)

    def _variant(self, prepared, rng, label):
        words, tags = prepared
        draws = rng.random(len(words))
        return [self._replace(w, t, rng) if u < self.p_pos else w for w, t, u in zip(words, tags, draws)]


class NgramAugmenter(WordAugmenter):
    """Tang et al.'s n-gram sampling: with probability ``p_ng`` (default 0.25) the text is cut to
    a random n-gram, n uniform in ``[n_min, n_max]`` (default 1..5; shorter texts stay whole)."""

    name = "ngram"

    def __init__(self, p_ng: float = 0.25, n_min: int = 1, n_max: int = 5, side: str = "both",
                 seed: int | None = None, batch_size: int = 256) -> None:
        super().__init__(side=side, seed=seed, batch_size=batch_size)
        self.p_ng = _probability("p_ng", p_ng)
        self.n_min, self.n_max = int(n_min), int(n_max)
        if not 1 <= self.n_min <= self.n_max:
            raise ConfigError(f"n-gram range must satisfy 1 <= n_min <= n_max, got {n_min}..{n_max}")

    def params(self):
        return {"p_ng": self.p_ng, "n_min": self.n_min, "n_max": self.n_max, **super().params()}

    def _variant(self, words, rng, label):
        return ngram_sample(list(words), self.p_ng, self.n_min, self.n_max, rng)


class TangAugmenter(_PosMixin, WordAugmenter):
    """Tang et al.'s combined procedure (module docstring) with the paper's defaults."""

    name = "tang"

    def __init__(self, p_mask: float = 0.1, p_pos: float = 0.1, p_ng: float = 0.25, n_min: int = 1, n_max: int = 5,
                 mask_token: str = MASK_TOKEN, fine_tags: bool = True, vocab_texts: int = 5000, side: str = "both",
                 seed: int | None = None, batch_size: int = 256) -> None:
        super().__init__(side=side, seed=seed, batch_size=batch_size)
        self.p_mask = _probability("p_mask", p_mask)
        self.p_pos = _probability("p_pos", p_pos)
        if self.p_mask + self.p_pos > 1.0:
            raise ConfigError(f"p_mask + p_pos must be <= 1, got {self.p_mask + self.p_pos}")
        self.p_ng = _probability("p_ng", p_ng)
        self.n_min, self.n_max = int(n_min), int(n_max)
        if not 1 <= self.n_min <= self.n_max:
            raise ConfigError(f"n-gram range must satisfy 1 <= n_min <= n_max, got {n_min}..{n_max}")
        self.mask_token = mask_token
        self._init_pos(fine_tags, vocab_texts, uses_pos=self.p_pos > 0)

    def params(self):
        return {"p_mask": self.p_mask, "p_pos": self.p_pos, "p_ng": self.p_ng, "n_min": self.n_min,
                "n_max": self.n_max, "mask_token": self.mask_token, "fine_tags": self.fine_tags,
                "vocab_texts": self.vocab_texts, **super().params()}

    def _prepare(self, texts):
        return self._tagged(texts) if self.p_pos > 0 else [(words_of(t), None) for t in texts]

    def _variant(self, prepared, rng, label):
        words, tags = prepared
        out = []
        for i, (word, u) in enumerate(zip(words, rng.random(len(words)))):
            if u < self.p_mask:
                out.append(self.mask_token)
            elif u < self.p_mask + self.p_pos:
                out.append(self._replace(word, tags[i], rng))
            else:
                out.append(word)
        return ngram_sample(out, self.p_ng, self.n_min, self.n_max, rng)
