"""The augmenter interface: n variants per input, single texts or (a, b) pairs, seeded.

Every augmenter subclasses :class:`Augmenter` and is called the same way::

    aug = augrl.baselines.get("eda")
    aug.fit(task)                       # optional: task resources (vocabulary, adapted MLM)
    aug.augment(["a fine film ."], n=4, seed=0)
    # -> [["a fine movie .", "a fine film", ...]]   (one list of n variants per input)
    aug.augment([("q one", "q two")], n=2, labels=[1], seed=0)
    # -> [[("q 1", "q two"), ...]]       (pairs in, pairs out; ``side`` says which side changes)

Conventions shared by all augmenters:

* Texts are edited at the word level, words being whitespace-separated tokens (the corpora in
  ``shared/data`` are pre-tokenised); a variant is the edited words joined by single spaces.
* Input that has nothing to edit (empty, whitespace-only, a side of a pair that is empty...)
  comes back unchanged; no augmenter raises on odd text.
* Randomness comes from one :class:`numpy.random.Generator` per example, seeded by
  ``(seed, position)``: the same seed and inputs give the same variants, whatever the batch
  size. With ``seed=None`` the augmenter's own ``seed`` is used, and with neither, fresh entropy.
* ``augment`` processes the inputs in batches of ``batch_size`` (the batched path: one spaCy
  pass, one MLM forward pass per batch); ``batch_size=1`` is the one-at-a-time path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence, Union

import numpy as np

from augrl.errors import ConfigError

Text = Union[str, tuple[str, str]]
"""One input: a single text, or an (a, b) pair for pair tasks."""

Example = tuple[str, ...]
"""Internal form of an input: a tuple of one or two sides."""

SIDES = ("both", "a", "b")


def as_example(text: Any) -> tuple[Example, bool]:
    """Normalise one input to a tuple of sides; also say whether it was a pair.

    ``None`` sides become empty strings; lists/tuples of length 2 are pairs.
    """
    if isinstance(text, (tuple, list)):
        if len(text) != 2:
            raise ConfigError(f"a pair input must have exactly 2 texts, got {len(text)}")
        return (_as_str(text[0]), _as_str(text[1])), True
    return (_as_str(text),), False


def _as_str(value: Any) -> str:
    return "" if value is None else str(value)


def from_example(example: Example, pair: bool) -> Text:
    """The user-facing form of an internal example (str, or (a, b) tuple)."""
    return (example[0], example[1]) if pair else example[0]


def words_of(text: str) -> list[str]:
    """The editable units of a text: whitespace-separated tokens."""
    return text.split()


def example_rngs(seed: int | None, positions: Sequence[int]) -> list[np.random.Generator]:
    """One generator per example, seeded by ``(seed, position)``; fresh entropy when seed is None."""
    if seed is None:
        return [np.random.default_rng(s) for s in np.random.SeedSequence().spawn(len(positions))]
    return [np.random.default_rng([int(seed) & 0xFFFFFFFF, int(p)]) for p in positions]


def word_edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (insert, delete, substitute: cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, wa in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, wb in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (wa != wb))
        prev = cur
    return prev[-1]


def edit_count(original: Text, variant: Text) -> int:
    """Word edits from ``original`` to ``variant`` (pairs: summed over both sides)."""
    orig, _ = as_example(original)
    var, _ = as_example(variant)
    return sum(word_edit_distance(words_of(o), words_of(v)) for o, v in zip(orig, var))


def edit_fraction(original: Text, variant: Text) -> float:
    """Word edits divided by the original's word count (at least 1)."""
    orig, _ = as_example(original)
    return edit_count(original, variant) / max(1, sum(len(words_of(s)) for s in orig))


class Augmenter(ABC):
    """Base class of every augmentation method.

    Args:
        side: for pair inputs, which side is changed: ``both`` (default), ``a`` or ``b``.
        seed: default seed of :meth:`augment` when it is called without one.
        batch_size: inputs processed together on the batched path.

    Subclasses implement :meth:`_augment_examples` and set ``name``.
    """

    name: ClassVar[str] = ""

    def __init__(self, side: str = "both", seed: int | None = None, batch_size: int = 256) -> None:
        if side not in SIDES:
            raise ConfigError(f"side must be one of {list(SIDES)}, got {side!r}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.side = side
        self.seed = seed
        self.batch_size = int(batch_size)

    # ------------------------------------------------------------------ public API

    def fit(self, task) -> "Augmenter":
        """Prepare task resources (vocabulary, adapted MLM...) from the task's train and source
        texts only, never its validation or test texts. The default does nothing."""
        return self

    def params(self) -> dict[str, Any]:
        """The settings that decide the variants (recorded with results)."""
        return {"side": self.side}

    def augment(self, texts: Text | Sequence[Text], n: int = 1, labels: Sequence | None = None,
                seed: int | None = None, batch_size: int | None = None) -> list[list[Text]]:
        """``n`` variants of each input.

        Args:
            texts: a list of inputs, each a string or an (a, b) pair; a bare string is one input.
            n: variants per input.
            labels: one label per input (needed by label-conditioned augmenters such as CBERT).
            seed: the same seed and inputs give the same variants.
            batch_size: inputs per batch (default: the augmenter's ``batch_size``).

        Returns:
            One list of ``n`` variants per input, each of the input's form (str or pair).
        """
        if isinstance(texts, str):
            texts = [texts]
        converted = [as_example(t) for t in texts]
        seed = self.seed if seed is None else seed
        rngs = example_rngs(seed, range(len(converted)))
        return self.augment_examples([e for e, _ in converted], [p for _, p in converted], n, labels, rngs,
                                     batch_size)

    def augment_examples(self, examples: Sequence[Example], pairs: Sequence[bool], n: int,
                         labels: Sequence | None, rngs: Sequence[np.random.Generator],
                         batch_size: int | None = None) -> list[list[Text]]:
        """:meth:`augment` with the examples already normalised and one generator per example."""
        n = int(n)
        if n < 0:
            raise ConfigError(f"n must be >= 0, got {n}")
        if labels is not None and len(labels) != len(examples):
            raise ConfigError(f"got {len(labels)} labels for {len(examples)} texts")
        size = self.batch_size if batch_size is None else int(batch_size)
        out: list[list[Text]] = []
        for start in range(0, len(examples), max(1, size)):
            stop = start + max(1, size)
            chunk = list(examples[start:stop])
            chunk_labels = None if labels is None else list(labels[start:stop])
            if n:
                variants = self._augment_examples(chunk, n, chunk_labels, list(rngs[start:stop]))
            else:
                variants = [[] for _ in chunk]
            for example, pair, vs in zip(chunk, pairs[start:stop], variants):
                out.append([from_example(self._valid(example, v), pair) for v in vs])
        return out

    def changeable(self, example: Example) -> tuple[bool, ...]:
        """Which sides of ``example`` may be edited under ``side``."""
        if len(example) == 1:
            return (True,)
        return (self.side in ("both", "a"), self.side in ("both", "b"))

    # ------------------------------------------------------------------ subclass hooks

    @abstractmethod
    def _augment_examples(self, examples: list[Example], n: int, labels: list | None,
                          rngs: list[np.random.Generator]) -> list[list[Example]]:
        """``n`` variants (tuples of the same number of sides) of each example."""

    @staticmethod
    def _valid(example: Example, variant: Example) -> Example:
        """Guard the output contract: same number of sides, each a str."""
        if len(variant) != len(example) or not all(isinstance(s, str) for s in variant):
            return example
        return variant

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class WordAugmenter(Augmenter):
    """An augmenter that edits each side's words independently, with no model.

    Subclasses implement :meth:`_variant` (one variant of one side) and may override
    :meth:`_prepare` to annotate all texts of a batch at once (e.g. POS tags).
    """

    def _prepare(self, texts: list[str]) -> list[Any]:
        """Per-text annotations computed for a whole batch; default: the words."""
        return [words_of(t) for t in texts]

    @abstractmethod
    def _variant(self, prepared: Any, rng: np.random.Generator, label: Any) -> list[str]:
        """The words of one variant of one side (``prepared`` comes from :meth:`_prepare`)."""

    def _variants(self, prepared: Any, n: int, rng: np.random.Generator, label: Any) -> list[list[str]]:
        """The words of ``n`` variants of one side; default: :meth:`_variant` ``n`` times."""
        return [self._variant(prepared, rng, label) for _ in range(n)]

    def _augment_examples(self, examples, n, labels, rngs):
        texts, where = [], []
        for i, example in enumerate(examples):
            for s, (text, change) in enumerate(zip(example, self.changeable(example))):
                if change and words_of(text):
                    where.append((i, s))
                    texts.append(text)
        prepared = dict(zip(where, self._prepare(texts))) if texts else {}
        out = []
        for i, example in enumerate(examples):
            label = None if labels is None else labels[i]
            per_side = []
            for s, text in enumerate(example):
                if (i, s) in prepared:
                    per_side.append([" ".join(w) or text for w in self._variants(prepared[(i, s)], n, rngs[i], label)])
                else:
                    per_side.append([text] * n)
            out.append([tuple(side[j] for side in per_side) for j in range(n)])
        return out
