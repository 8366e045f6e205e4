"""Cross-domain leakage: find source texts that reveal a target's validation or test texts.

Why: a source pool can be built from the same documents as the target. SST-2 (the source of
the ``rt`` task) was made from the RT corpus: its training file holds RT sentences verbatim,
the same sentences tokenised differently (``it 's`` / ``it's``, ```` `` ```` / ``"``), and
sub-phrases of RT sentences (SST-2 rows are nodes of parse trees). A teacher, an augmenter or
the environment fed such rows has seen pieces of the test set, so whole-sentence
de-duplication is not enough. See "Measured on the real data" below for the sizes.

Use::

    from augrl.leakage import audit
    report = audit(source_texts, target_texts)          # any pools of texts
    report.counts        # {"exact": ..., "normalized": ..., "substring": ..., "near_duplicate": ..., ...}
    report.categories    # per source row: a category or None (clean)
    report.flagged       # indices of the leaky source rows
    report.to_dict()     # JSON-serialisable, with examples

or from the command line, for a task's source pool against the seed's validation and test
splits: ``augrl audit --task rt --shots 40 --seed 0 [--json]``. A text may be a string or,
for pair tasks, a sequence of strings: a source row leaks if any of its sides leaks against any
side of any target row. :func:`augrl.tasks.load_task` runs this audit on every load and removes
the flagged rows from ``task.source`` (``leakage="keep"`` keeps them; the split record says
which, see :mod:`augrl.tasks`).

Categories, exclusive, checked in this order (a row gets the first that applies):

``exact``
    the source text equals a target text once surrounding and repeated whitespace is removed
    (case kept): a verbatim copy.
``normalized``
    equal after :func:`normalize` (case, accents, tokenisation, British spellings, quotes,
    brackets and punctuation folded).
``substring``
    the normalised source text has at least ``min_substring_words`` words and occurs as a
    contiguous word sequence inside a normalised target text (a sub-phrase of a test sentence).
``near_duplicate``
    the source text has at least ``min_substring_words`` words and at least a fraction
    ``containment`` of its distinct normalised word ``ngram``-grams occur in one single target
    text (containment of the source in that target; catches copies with a few words changed,
    added or dropped that the normaliser does not fold).

Source rows shorter than ``min_substring_words`` words are only ever flagged as ``exact`` or
``normalized``: a two- or three-word phrase (``the movie``, ``is n't funny``) occurs in
countless unrelated reviews and reveals nothing about a particular test sentence.

Defaults and why. The evidence is printed by ``scripts/bench_audit.py --calibrate``: SST-2
train rows against the 2,200 validation + test texts of ``rt`` (seed 0), and against as many
19-word chunks of unrelated text (Amazon DVD reviews, cut at random places); matches against
the unrelated text are coincidences.

- ``min_substring_words=4``: share of SST-2 rows found inside a held-out RT text vs inside the
  unrelated text, by the row's length in words: 2 words 30.1% vs 7.95%, 3 words 22.8% vs
  1.88%, 4 words 20.9% vs 0.53%, 5 words 21.5% vs 0.23%. From 4 words on, a match against RT
  is about 40 times likelier than a coincidence; shorter phrases are generic.
- ``ngram=3``, ``containment=0.8``: SST-2 rows of >= 4 words that are not substrings, by best
  containment of their word 3-grams in one text (RT held-out vs unrelated): [0.6, 0.7) 111 vs
  76, [0.7, 0.8) 27 vs 7, >= 0.8 18 vs 4. Read one by one, 8 of the 18 RT matches at >= 0.8
  are pieces of a held-out sentence cut next to characters that RT garbled (``<i ? fire``,
  ``filmit``) and 10 are stock phrases (``a small movie with a big heart`` / ``... big
  impact``); in [0.7, 0.8) only 4 of 27 are pieces, the rest stock phrases (``on the edge of
  your seat``). Dropping a stock phrase costs one source row; 0.8 keeps that cost to a few
  rows in 67,349. A word substituted inside a row breaks up to
  three of its 3-grams, one at either end: at 0.8, a substitution is still caught in rows of
  17 or more words (7 or more at an end); shorter rows need the normaliser.

Speed: the audit never compares all pairs. Target texts are indexed once by their normalised
word n-grams (n-gram -> ids of the target texts holding it). A source row's substring candidates
are the postings of its rarest k-gram (``k = min(min_substring_words, ngram)``), verified with
one string search each; near-duplicate candidates come from prefix filtering: a target that
contains a fraction ``c`` of the row's ``G`` distinct n-grams must contain at least one of any
``G - ceil(c * G) + 1`` of them, so only the postings of that many rarest n-grams are read, and
each candidate is verified by one set intersection. ``scripts/bench_audit.py`` audits all
67,349 SST-2 train rows against 10,000 RT sentences in 3.9 to 4.3 s, index included (best of
3, three runs on a two-core machine shared with other jobs, load average 7.6 to 8.4);
:func:`audit_pairwise`, the all-pairs reference that gives the same report, would take 390 to
570 s there (extrapolated from 200 rows).

Measured on the real data (``augrl audit --task rt --shots 40 --seed 0``): of SST-2's 67,349
training rows, 634 are exact copies of one of the 2,200 validation and test texts, 908 more are
copies after normalisation, 8,490 are sub-phrases of 4 or more words and 18 are
near-duplicates: 10,050 rows (14.9%) leave the source pool, where the earlier whole-sentence
filter (lower case, whitespace) removed 634. The other way round, 3,120 of RT's 10,662
sentences are an SST-2 row verbatim and 5,662 after normalisation. Rows of 1 to 3 words stay
even where they occur in a test sentence (see ``min_substring_words``).
"""

from __future__ import annotations

import functools
import math
import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from augrl.errors import ConfigError, DataError

CATEGORIES = ("exact", "normalized", "substring", "near_duplicate")
"""Leak categories, in the order they are checked (the first that applies wins)."""

DEFAULT_MIN_SUBSTRING_WORDS = 4
DEFAULT_NGRAM = 3
DEFAULT_CONTAINMENT = 0.8
DEFAULT_MAX_EXAMPLES = 5

# --------------------------------------------------------------------------- normaliser

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "\u02bc": "'"})
# Penn Treebank bracket tokens (-lrb- for "(" ...), as some tokenised corpora write them
_PTB_BRACKETS = re.compile(r"-(?:lrb|rrb|lsb|rsb|lcb|rcb)-")
# Penn Treebank splits clitics off the word they end: "it's" -> "it 's", "don't" -> "do n't",
# "can't" -> "ca n't"; and a few whole words: "cannot" -> "can not", "gonna" -> "gon na"
_CLITIC = re.compile(r"(?<=[^\W_])('(?:s|re|ve|ll|d|m)|n't)(?![^\W_])")
_PTB_SPLITS = {"cannot": "can not", "gonna": "gon na", "wanna": "wan na", "gotta": "got ta",
               "lemme": "lem me", "gimme": "gim me"}
_WORD = re.compile(r"[^\W_]+")
# British spellings that SST-2 often has in American form (RT "humour", SST-2 "humor")
_OUR = re.compile(r"([a-z]{2,})our(s|ed|ing|ite|ites|able|ably|ful|less|er|ers)?")
_TRE = re.compile(r"([a-z]{2,}[tb])re(s?)")


@functools.lru_cache(maxsize=1 << 16)
def _fold_word(word: str) -> str:
    """Steps 3 (whole-word splits) and 5 of :func:`normalize` for one word."""
    if word in _PTB_SPLITS:
        return _PTB_SPLITS[word]
    if _OUR.fullmatch(word):
        return _OUR.sub(r"\1or\2", word)
    if _TRE.fullmatch(word):
        return _TRE.sub(r"\1er\2", word)
    return word

def normalize(text: str) -> str:
    """The leakage key of a text: its words, folded, joined by single spaces.

    Folds exactly this:

    1. Unicode compatibility decomposition (NFKD) with combining marks dropped, so accents go
       (``clichés`` -> ``cliches``), then case (``str.casefold``).
    2. Curly quotes, backquotes and acute accents used as quotes become ``'``; Penn Treebank
       bracket tokens (``-lrb-``, ``-rrb-``, ``-lsb-``...) are removed.
    3. Clitics are split off as the Penn Treebank tokeniser (which made SST-2) does:
       ``it's`` -> ``it 's``, ``don't`` -> ``do n't``, ``can't`` -> ``ca n't``, ``cannot`` ->
       ``can not``, ``gonna`` / ``wanna`` / ``gotta`` / ``lemme`` / ``gimme`` -> ``gon na``,
       ``wan na``, ``got ta``, ``lem me``, ``gim me``; text tokenised that way already is
       left as it is. Splitting (rather than
       joining) keeps word boundaries where a phrase was cut next to a clitic: ``'s not bad``
       (cut from ``it 's not bad``) and ``i`` (from ``i 've``) stay whole words.
    4. Apostrophes are deleted (``'s`` -> ``s``, ``n't`` -> ``nt``; the quote marks ```` `` ````
       and ``''`` vanish).
    5. British ``-our`` and ``-tre`` / ``-bre`` spellings take their American form, which
       SST-2 often has where RT has the British one: ``humour`` -> ``humor``,
       ``favourite`` -> ``favorite``, ``theatres`` -> ``theaters``, ``calibre`` -> ``caliber``
       (at least two letters before the ending, so ``four`` and ``your`` stay; both sides are
       folded alike, so a word with no American twin, ``contour`` -> ``contor``, is harmless).
    6. Every other character that is not a letter or digit separates words: punctuation,
       double quotes, brackets, hyphens and dashes (``jean-claud`` -> ``jean claud``), and the
       C1 control characters that cp1252 dashes and ellipses become in latin-1 text.

    Example: ``The 21st century's new "Conan" -- isn't it?`` and SST-2's
    ``the 21st century 's new `` conan '' is n't it`` both give
    ``the 21st century s new conan is nt it``.
    """
    if not text.isascii():
        text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    text = text.casefold()
    text = text.translate(_APOSTROPHES)
    if "-" in text:
        text = _PTB_BRACKETS.sub(" ", text)
    if "'" in text:
        text = _CLITIC.sub(r" \1", text).replace("'", "")
    return " ".join(map(_fold_word, _WORD.findall(text)))

def _collapse(text: str) -> str:
    return " ".join(text.split())


def _grams(words: list[str], n: int) -> list[str]:
    """The word n-grams of ``words``, each as one space-joined string."""
    return list(map(" ".join, zip(*(words[i:] for i in range(n)))))


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class LeakageSettings:
    """Thresholds of :func:`audit` (defaults and their reasons in the module docstring).

    Attributes:
        min_substring_words: a source text needs at least this many normalised words to be
            flagged as ``substring`` or ``near_duplicate``.
        ngram: word n-gram size of the near-duplicate test.
        containment: near-duplicate threshold, in (0, 1]: the fraction of the source text's
            distinct n-grams that one target text must contain.
    """

    min_substring_words: int = DEFAULT_MIN_SUBSTRING_WORDS
    ngram: int = DEFAULT_NGRAM
    containment: float = DEFAULT_CONTAINMENT

    def __post_init__(self) -> None:
        for name in ("min_substring_words", "ngram"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"leakage setting {name} must be an integer >= 1, got {value!r}")
        c = self.containment
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 < c <= 1.0:
            raise ConfigError(f"leakage setting containment must be a number in (0, 1], got {c!r}")
        object.__setattr__(self, "containment", float(c))

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- the index


class NgramIndex:
    """Target texts indexed by their normalised word n-grams.

    Built once per target pool; :meth:`substring_of` and :meth:`best_containment` answer for
    one source text by reading the postings of a few of its n-grams, never by scanning all
    targets.

    Args:
        texts: the target texts (strings).
        n: n-gram size of the near-duplicate test.
        substring_n: n-gram size used to find substring candidates (default ``n``).
    """

    def __init__(self, texts: Sequence[str], n: int = DEFAULT_NGRAM, substring_n: int | None = None) -> None:
        self.n = n
        self.substring_n = n if substring_n is None else substring_n
        self.exact: dict[str, int] = {}
        self.normalized: dict[str, int] = {}
        self.padded: list[str] = []  # " w1 w2 ... " per text: a word-aligned substring test
        self.grams: list[frozenset[str]] = []
        self.postings: dict[str, list[int]] = {}
        sub_postings: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            norm = normalize(text)
            self.exact.setdefault(_collapse(text), i)
            self.normalized.setdefault(norm, i)
            self.padded.append(f" {norm} ")
            words = norm.split()
            grams = frozenset(_grams(words, n))
            self.grams.append(grams)
            for g in grams:
                self.postings.setdefault(g, []).append(i)
            if self.substring_n != n:
                for g in set(_grams(words, self.substring_n)):
                    sub_postings.setdefault(g, []).append(i)
        self.sub_postings = sub_postings if self.substring_n != n else self.postings

    def __len__(self) -> int:
        return len(self.padded)

    def substring_of(self, words: list[str]) -> int | None:
        """The first target text that holds ``words`` as a contiguous word sequence, or None."""
        rarest = None
        for g in _grams(words, self.substring_n):
            ids = self.sub_postings.get(g)
            if ids is None:  # a k-gram no target has: cannot be a substring
                return None
            if rarest is None or len(ids) < len(rarest):
                rarest = ids
        if rarest is None:  # fewer words than substring_n
            return None
        needle = f" {' '.join(words)} "
        for t in rarest:
            if needle in self.padded[t]:
                return t
        return None

    def best_containment(self, words: list[str], threshold: float) -> tuple[int, float] | None:
        """The target text containing the largest fraction of the distinct n-grams of ``words``,
        and that fraction, if it is at least ``threshold``; else None (prefix filtering: see
        the module docstring)."""
        grams = set(_grams(words, self.n))
        need = _need(threshold, len(grams))
        present = [ids for ids in map(self.postings.get, grams) if ids is not None]
        if len(present) < need:
            return None
        # a target holding >= need of the grams holds one of any len(grams) - need + 1 of them;
        # the absent grams are among those, so read the postings of the rarest present ones
        present.sort(key=len)
        candidates = set().union(*present[: len(present) - need + 1])
        best, best_hits = None, need - 1
        for t in sorted(candidates):
            hits = len(grams & self.grams[t])
            if hits > best_hits:
                best, best_hits = t, hits
        return None if best is None else (best, best_hits / len(grams))


# --------------------------------------------------------------------------- the audit


@dataclass
class LeakageReport:
    """What :func:`audit` found, one entry per source row.

    Attributes:
        categories: per source row, its category (see :data:`CATEGORIES`) or None (clean).
        matches: per source row, the index of the target row it leaks, or None.
        scores: per source row, the containment of a ``near_duplicate`` (1.0 for the other
            categories, None for clean rows).
        settings: the thresholds used.
        n_target: number of target rows audited against.
        examples: per category, up to ``max_examples`` flagged rows (source and target text).
        seconds: wall time of the audit, index included.
    """

    categories: list[str | None]
    matches: list[int | None]
    scores: list[float | None]
    settings: LeakageSettings
    n_target: int
    examples: dict[str, list[dict]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def n_source(self) -> int:
        return len(self.categories)

    @property
    def flagged(self) -> list[int]:
        """Indices of the source rows with a category."""
        return [i for i, c in enumerate(self.categories) if c is not None]

    @property
    def counts(self) -> dict[str, int]:
        """Rows per category, plus ``flagged`` (their sum), ``clean`` and ``total``."""
        counts = {c: 0 for c in CATEGORIES}
        for c in self.categories:
            if c is not None:
                counts[c] += 1
        flagged = sum(counts.values())
        return {**counts, "flagged": flagged, "clean": self.n_source - flagged, "total": self.n_source}

    def to_dict(self, rows: bool = False) -> dict:
        """JSON-serialisable summary; ``rows=True`` adds the per-row lists."""
        out = {
            "counts": self.counts,
            "settings": self.settings.to_dict(),
            "n_source": self.n_source,
            "n_target": self.n_target,
            "examples": self.examples,
            "seconds": round(self.seconds, 3),
        }
        if rows:
            out.update(categories=self.categories, matches=self.matches, scores=self.scores)
        return out


Text = str | Sequence[str]


def _sides(item: Text, what: str, i: int) -> tuple[str, ...]:
    sides = (item,) if isinstance(item, str) else tuple(item) if isinstance(item, Sequence) else None
    if not sides or not all(isinstance(s, str) for s in sides):
        raise DataError(
            f"{what} text #{i} is {type(item).__name__} {item!r:.60}",
            "pass strings, or sequences of strings for pair tasks",
        )
    return sides


def _check_args(source_texts, target_texts, settings_args: tuple, max_examples: int) -> LeakageSettings:
    settings = LeakageSettings(*settings_args)
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 0:
        raise ConfigError(f"max_examples must be an integer >= 0, got {max_examples!r}")
    for what, texts in (("source_texts", source_texts), ("target_texts", target_texts)):
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise DataError(f"{what} is a {type(texts).__name__}, not a list of texts", "pass a list of strings")
    return settings


def audit(
    source_texts: Sequence[Text],
    target_texts: Sequence[Text],
    min_substring_words: int = DEFAULT_MIN_SUBSTRING_WORDS,
    ngram: int = DEFAULT_NGRAM,
    containment: float = DEFAULT_CONTAINMENT,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> LeakageReport:
    """Classify every source text by how it leaks the target texts (see the module docstring).

    Args:
        source_texts: the pool to check (a task's source, an augmented candidate pool...):
            strings, or sequences of strings (pairs).
        target_texts: the texts that must not leak (validation and test): same form.
        min_substring_words: minimum normalised words of a ``substring`` / ``near_duplicate``.
        ngram: word n-gram size of the near-duplicate test.
        containment: near-duplicate threshold in (0, 1].
        max_examples: flagged rows kept as examples per category.

    Raises:
        ConfigError: a threshold out of range.
        DataError: a text that is not a string (or a sequence of strings).
    """
    settings = _check_args(source_texts, target_texts, (min_substring_words, ngram, containment), max_examples)
    return _audit(source_texts, target_texts, settings, max_examples, _indexed_classifier)


def audit_pairwise(
    source_texts: Sequence[Text],
    target_texts: Sequence[Text],
    min_substring_words: int = DEFAULT_MIN_SUBSTRING_WORDS,
    ngram: int = DEFAULT_NGRAM,
    containment: float = DEFAULT_CONTAINMENT,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> LeakageReport:
    """Reference implementation of :func:`audit` that compares every source text with every
    target text (time grows with their product): the same report, for tests and benchmarks."""
    settings = _check_args(source_texts, target_texts, (min_substring_words, ngram, containment), max_examples)
    return _audit(source_texts, target_texts, settings, max_examples, _pairwise_classifier)


Found = tuple[int, int, float]  # (category number, target side, score)


def _need(threshold: float, n_grams: int) -> int:
    """Fewest of ``n_grams`` n-grams a target must contain to reach ``threshold``."""
    return max(1, math.ceil(threshold * n_grams - 1e-9))


def _indexed_classifier(target_sides: list[str], s: LeakageSettings):
    index = NgramIndex(target_sides, n=s.ngram, substring_n=min(s.min_substring_words, s.ngram))

    def classify(text: str, key: str, norm: str, words: list[str]) -> Found | None:
        if key in index.exact:
            return 0, index.exact[key], 1.0
        if norm in index.normalized:
            return 1, index.normalized[norm], 1.0
        if len(words) < s.min_substring_words:
            return None
        t = index.substring_of(words)
        if t is not None:
            return 2, t, 1.0
        near = index.best_containment(words, s.containment)
        return None if near is None else (3, near[0], near[1])

    return classify


def _pairwise_classifier(target_sides: list[str], s: LeakageSettings):
    collapsed = [_collapse(t) for t in target_sides]
    norms = [normalize(t) for t in target_sides]
    grams = [set(_grams(n.split(), s.ngram)) for n in norms]

    def classify(text: str, key: str, norm: str, words: list[str]) -> Found | None:
        for cat, have, want in ((0, collapsed, key), (1, norms, norm)):
            for j, t in enumerate(have):
                if t == want:
                    return cat, j, 1.0
        if len(words) < s.min_substring_words:
            return None
        for j, t in enumerate(norms):
            if f" {norm} " in f" {t} ":
                return 2, j, 1.0
        mine = set(_grams(words, s.ngram))
        if not mine:
            return None
        hits = [len(mine & g) for g in grams]
        best = max(range(len(hits)), key=hits.__getitem__, default=None)
        if best is None or hits[best] < _need(s.containment, len(mine)):
            return None
        return 3, best, hits[best] / len(mine)

    return classify


def _audit(source_texts, target_texts, settings: LeakageSettings, max_examples: int, make_classifier) -> LeakageReport:
    start = time.perf_counter()
    target_sides, owner = [], []
    for j, item in enumerate(target_texts):
        for side in _sides(item, "target", j):
            target_sides.append(side)
            owner.append(j)
    classify_side = make_classifier(target_sides, settings)
    memo: dict[str, Found | None] = {}

    def classify(text: str) -> Found | None:
        key = _collapse(text)
        if key not in memo:
            norm = normalize(text)
            words = norm.split()
            # a text of nothing but punctuation reveals nothing
            memo[key] = classify_side(text, key, norm, words) if words else None
        return memo[key]

    categories: list[str | None] = []
    matches: list[int | None] = []
    scores: list[float | None] = []
    examples: dict[str, list[dict]] = {c: [] for c in CATEGORIES}
    for i, item in enumerate(source_texts):
        sides = _sides(item, "source", i)
        best = None  # the side with the first category in CATEGORIES order
        for s, side in enumerate(sides):
            found = classify(side)
            if found is not None and (best is None or found[0] < best[0][0]):
                best = (found, s)
        if best is None:
            categories.append(None)
            matches.append(None)
            scores.append(None)
            continue
        (cat_no, t_side, score), s = best
        category = CATEGORIES[cat_no]
        categories.append(category)
        matches.append(owner[t_side])
        scores.append(round(score, 4))
        if len(examples[category]) < max_examples:
            example = {"source_index": i, "source": sides[s], "target_index": owner[t_side],
                       "target": target_sides[t_side]}
            if category == "near_duplicate":
                example["containment"] = round(score, 4)
            examples[category].append(example)
    return LeakageReport(categories, matches, scores, settings, len(target_texts), examples,
                         time.perf_counter() - start)
