"""EDA: easy data augmentation (Wei & Zou, 2019).

Four operations, as in the authors' reference code (``eda.py``):

* SR, synonym replacement: ``max(1, int(alpha_sr * L))`` distinct non-stop words (L = words in
  the sentence) are replaced, every occurrence, by a random WordNet synonym;
* RI, random insertion: ``max(1, int(alpha_ri * L))`` times, a synonym of a random non-stop word
  is inserted at a random position;
* RS, random swap: ``max(1, int(alpha_rs * L))`` times, two random words swap places;
* RD, random deletion: each word is deleted with probability ``p_rd`` (one random word is kept
  if all would go).

Each variant applies one operation; the operations take turns in a random order per input, so
``n = 4`` gives one variant of each. An operation whose alpha is 0 is skipped. Differences from
the reference code, which lower-cases and strips everything but letters: punctuation and case
are kept (punctuation is never replaced, and words without letters get no synonyms).
"""

from __future__ import annotations

import re

import numpy as np

from .base import WordAugmenter
from .resources import load_wordnet

# The stop-word list of the reference implementation (jasonwei20/eda_nlp, code/eda.py).
STOP_WORDS = frozenset(
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers "
    "herself it its itself they them their theirs themselves what which who whom this that these those am is "
    "are was were be been being have has had having do does did doing a an the and but if or because as until "
    "while of at by for with about against between into through during before after above below to from up "
    "down in out on off over under again further then once here there when where why how all any both each few "
    "more most other some such no nor not only own same so than too very s t can will just don should now".split()
)

_LETTERS = re.compile(r"[^a-z ]")


class EDA(WordAugmenter):
    """Wei & Zou (2019)'s four operations (see the module docstring).

    Args:
        alpha_sr, alpha_ri, alpha_rs: fraction of words changed by SR, RI, RS (paper: 0.1).
        p_rd: deletion probability of RD (paper: 0.1).
        stop_words: words SR and RI never pick (default: the reference code's list).
        side, seed, batch_size: see :class:`~augrl.baselines.base.Augmenter`.
    """

    name = "eda"
    OPERATIONS = ("sr", "ri", "rs", "rd")

    def __init__(self, alpha_sr: float = 0.1, alpha_ri: float = 0.1, alpha_rs: float = 0.1, p_rd: float = 0.1,
                 stop_words: frozenset[str] | list[str] | None = None, side: str = "both",
                 seed: int | None = None, batch_size: int = 256) -> None:
        super().__init__(side=side, seed=seed, batch_size=batch_size)
        from augrl.errors import ConfigError

        self.alphas = {"sr": float(alpha_sr), "ri": float(alpha_ri), "rs": float(alpha_rs), "rd": float(p_rd)}
        for op, value in self.alphas.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"EDA {op} rate must be in [0, 1], got {value}")
        self.ops = [op for op in self.OPERATIONS if self.alphas[op] > 0]
        if not self.ops:
            raise ConfigError("EDA needs at least one of alpha_sr, alpha_ri, alpha_rs, p_rd above 0")
        self.stop_words = STOP_WORDS if stop_words is None else frozenset(w.lower() for w in stop_words)
        self._wordnet = None
        self._synonyms: dict[str, tuple[str, ...]] = {}
        if self.alphas["sr"] > 0 or self.alphas["ri"] > 0:
            self._wordnet = load_wordnet()  # fail early, with install instructions

    def params(self):
        return {"alpha_sr": self.alphas["sr"], "alpha_ri": self.alphas["ri"], "alpha_rs": self.alphas["rs"],
                "p_rd": self.alphas["rd"], **super().params()}

    # ---------------------------------------------------------------- resources

    def synonyms(self, word: str) -> tuple[str, ...]:
        """WordNet synonyms of ``word`` (lower-cased letters and spaces, the word itself excluded)."""
        key = word.lower()
        if key not in self._synonyms:
            found: list[str] = []
            if self._wordnet is not None and re.search("[a-z]", key):
                for synset in self._wordnet.synsets(key):
                    for lemma in synset.lemmas():
                        name = _LETTERS.sub("", lemma.name().replace("_", " ").replace("-", " ").lower())
                        name = " ".join(name.split())
                        if name and name != key and name not in found:
                            found.append(name)
            self._synonyms[key] = tuple(found)
        return self._synonyms[key]

    def _candidates(self, words: list[str]) -> list[str]:
        return [w for w in dict.fromkeys(words) if w.lower() not in self.stop_words and re.search("[A-Za-z]", w)]

    # ---------------------------------------------------------------- operations

    def _variants(self, words, n, rng, label):
        order = [self.ops[k] for k in rng.permutation(len(self.ops))]  # operations take turns
        return [getattr(self, f"_{order[j % len(order)]}")(list(words), rng) for j in range(n)]

    def _variant(self, words, rng, label):
        return self._variants(words, 1, rng, label)[0]

    def _count(self, op: str, words: list[str]) -> int:
        return max(1, int(self.alphas[op] * len(words)))

    def _sr(self, words: list[str], rng: np.random.Generator) -> list[str]:
        candidates = self._candidates(words)
        rng.shuffle(candidates)
        replaced, wanted = 0, self._count("sr", words)
        for word in candidates:
            options = self.synonyms(word)
            if not options:
                continue
            choice = options[int(rng.integers(len(options)))]
            words = [choice if w == word else w for w in words]
            replaced += 1
            if replaced >= wanted:
                break
        return " ".join(words).split()  # multi-word synonyms become several words

    def _ri(self, words: list[str], rng: np.random.Generator) -> list[str]:
        candidates = self._candidates(words)
        for _ in range(self._count("ri", words)):
            for _try in range(10):  # the reference code tries 10 words before giving up
                if not candidates:
                    break
                options = self.synonyms(candidates[int(rng.integers(len(candidates)))])
                if options:
                    synonym = options[int(rng.integers(len(options)))]
                    position = int(rng.integers(len(words) + 1))
                    words[position:position] = synonym.split()
                    break
        return words

    def _rs(self, words: list[str], rng: np.random.Generator) -> list[str]:
        if len(words) < 2:
            return words
        for _ in range(self._count("rs", words)):
            i = int(rng.integers(len(words)))
            j = i
            for _try in range(3):  # as the reference code: a few tries to draw a different position
                j = int(rng.integers(len(words)))
                if j != i:
                    break
            words[i], words[j] = words[j], words[i]
        return words

    def _rd(self, words: list[str], rng: np.random.Generator) -> list[str]:
        if len(words) == 1:
            return words
        keep = rng.random(len(words)) > self.alphas["rd"]
        kept = [w for w, k in zip(words, keep) if k]
        return kept or [words[int(rng.integers(len(words)))]]
