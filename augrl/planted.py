"""Benchmarks where selection matters: pools with planted bad candidates, and budgeted mixed pools.

On an ordinary pool (:func:`augrl.pool.build_pool`) almost every candidate is harmless, so a
selector that keeps a random subset does about as well as a learned one. Two pools make the
choice matter:

**Planted** (:func:`plant`): a pool plus known-bad candidates, flagged in ``pool.planted``
(ground truth for scoring, never a feature), of three kinds, split evenly:

``flip``
    a copy of a clean candidate (its text, original, domain and generator score) with a wrong
    label: classification, another class drawn uniformly; regression, the score reflected
    around the middle of the label range, ``lo + hi - y`` (``lo``, ``hi``: the smallest and
    largest label among the task's train rows and the pool).
``unrelated``
    a sentence of an unrelated dataset (:func:`unrelated_texts`; pair tasks: two of them) with
    a random label (uniform class, or uniform score in ``[lo, hi]``); it is its own original.
``shuffle``
    a clean candidate's words (whitespace tokens, each side of a pair on its own) in a random
    order different from the candidate's and, where another order exists, from its
    original's (a shuffle must not restore the clean sentence); its label kept.

A selector is then scored by how low it ranks the planted rows:
:func:`augrl.metrics.detection_auc` and :func:`augrl.metrics.planted_in_lowest`.

**Budgeted** (:func:`budgeted_pool`): a large pool (default 3,000) mixing raw source
examples, another domain's labelled text and augmented target examples from several
augmenters; a selector keeps a small budget of it. ``pool.provenance`` says what each row is.

Where the text comes from (data read from ``AUGRL_DATA`` or ``data_dir``):

============================  =======================  =============================================
task family (tasks)           unrelated dataset        other domain (budgeted)
============================  =======================  =============================================
sentiment (rt, sst2)          MRPC sentences (news)    Amazon electronics reviews (``amazon-electronics``)
sentiment (amazon-<domain>)   MRPC sentences (news)    RT movie-review sentences (``rt``)
helpfulness (helpful-<d.>)    MRPC sentences (news)    none (the other domains are the source)
paraphrase (cikm)             pairs of SST-2 phrases   none
nli (rte)                     pairs of SST-2 phrases   none
relatedness (sick-rel.)       pairs of SST-2 phrases   none
a user's single-text task     MRPC sentences           none
a user's pair task            pairs of SST-2 phrases   none
============================  =======================  =============================================

No unrelated dataset is a task's source or target (MRPC is CIKM's source, so pair tasks draw
from SST-2; SST-2 is built from RT, so sentiment tasks draw from MRPC). ``dataset=`` of
:func:`unrelated_texts` (``mrpc``, ``sst2``, ``sick``) and ``other_domain=`` of
:func:`budgeted_pool` (any task with the same kind, labels and text form) override the table.

Randomness: one :class:`numpy.random.Generator` per call, seeded by ``[seed, stream]`` as in
:func:`augrl.pool.build_pool`; the same inputs and seed give the same pool.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from augrl.errors import ConfigError, DataError
from augrl.pool import CandidatePool, build_pool, dataset_rows, stratified_indices

PLANT_KINDS = ("flip", "unrelated", "shuffle")
"""The kinds of planted candidate, in the order :func:`plant` hands out the rows."""

UNRELATED_DATASETS = {
    "mrpc": "MRPC train sentences (newswire; the first side of each pair: the second paraphrases it)",
    "sst2": "SST-2 train phrases (movie reviews)",
    "sick": "SICK sentences (image and video captions; both sides of every pair)",
}
"""The datasets :func:`unrelated_texts` reads, by name."""

UNRELATED_BY_FAMILY = {
    "sentiment": "mrpc",
    "helpfulness": "mrpc",
    "paraphrase": "sst2",
    "nli": "sst2",
    "relatedness": "sst2",
    "single": "mrpc",
    "pair": "sst2",
}
"""Task family (:func:`task_family`) -> the unrelated dataset its planted ``unrelated`` rows use."""

OTHER_DOMAIN = {
    "rt": "amazon-electronics",
    "sst2": "amazon-electronics",
    "amazon-books": "rt",
    "amazon-dvd": "rt",
    "amazon-electronics": "rt",
}
"""Task -> the task whose target rows are its budgeted pool's ``other_domain`` part by default."""

BUDGET_PARTS = ("source", "other_domain", "augmented")
"""The parts of a budgeted pool, as keys of its ``proportions``."""

MIN_UNRELATED_WORDS = 4
"""Unrelated sentences shorter than this (SST-2 holds many one-word phrases) are not drawn."""

_PLANT_STREAM, _UNRELATED_STREAM, _BUDGET_STREAM = 13, 11, 17
_SHUFFLE_TRIES = 100


def task_family(spec) -> str:
    """The family of a :class:`augrl.tasks.TaskSpec`: ``sentiment``, ``helpfulness``,
    ``paraphrase``, ``nli``, ``relatedness`` for the built-in tasks, else ``single`` or ``pair``."""
    name = spec.name
    if name in ("rt", "sst2") or name.startswith("amazon-"):
        return "sentiment"
    if name.startswith("helpful-"):
        return "helpfulness"
    known = {"cikm": "paraphrase", "rte": "nli", "sick-relatedness": "relatedness"}
    return known.get(name, "pair" if spec.pair else "single")


# --------------------------------------------------------------------------- unrelated text


def unrelated_texts(task, n: int, seed: int = 0, data_dir: str | Path | None = None,
                    dataset: str | None = None) -> list[str]:
    """``n`` distinct sentences of a dataset unrelated to ``task`` (see the module's table).

    Sentences are read from the data root (``data_dir``, else ``$AUGRL_DATA``) with the
    loaders of :mod:`augrl.tasks`; duplicates (after lower-casing and collapsing whitespace),
    sentences of fewer than :data:`MIN_UNRELATED_WORDS` words and sentences equal to any text
    of the task (train, validation, test, source; either side of a pair) are left out, then
    ``n`` are drawn without replacement.

    Args:
        task: a loaded :class:`augrl.tasks.Task`.
        n: sentences wanted, >= 0.
        seed: seeds the draw.
        data_dir: the data root; default ``$AUGRL_DATA``.
        dataset: ``mrpc``, ``sst2`` or ``sick``; default: by :func:`task_family`.

    Returns:
        ``n`` strings.

    Raises:
        ConfigError: ``n`` negative or more than the dataset holds, an unknown ``dataset``.
        DataError: no data root (names ``AUGRL_DATA``), or the dataset's files are missing.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"the number of unrelated sentences must be an integer >= 0, got {n!r}")
    dataset = UNRELATED_BY_FAMILY[task_family(task.spec)] if dataset is None else dataset
    if dataset not in UNRELATED_DATASETS:
        raise ConfigError(f"unknown unrelated dataset {dataset!r}; choose one of {sorted(UNRELATED_DATASETS)}")
    if n == 0:
        return []
    from augrl.tasks import normalize_text, resolve_data_dir

    root = resolve_data_dir(data_dir)
    if root is None:
        raise DataError(f"unrelated sentences ({UNRELATED_DATASETS[dataset]}) are read from the data folder, "
                        "and none is set",
                        "set AUGRL_DATA (or pass data_dir) to the folder holding mrpc/, sst2/, sick/... "
                        "(this checkout: ../shared/data)")
    taken = {normalize_text(side) for text in _task_texts(task)
             for side in ((text,) if isinstance(text, str) else text)}
    pool = [s for s in _dataset_sentences(dataset, root) if normalize_text(s) not in taken]
    if n > len(pool):
        raise ConfigError(f"{n} unrelated sentences asked for; {dataset} holds {len(pool)} usable ones "
                          f"(distinct, >= {MIN_UNRELATED_WORDS} words, not in task {task.spec.name!r})")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _UNRELATED_STREAM])
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def _task_texts(task) -> list:
    fields = task.spec.text_fields
    return [t for d in (task.train, task.val, task.test, task.source) if d is not None and len(d)
            for t in dataset_rows(d, fields)]


def _dataset_sentences(dataset: str, root: Path) -> list[str]:
    """The distinct sentences (file order) of ``dataset`` with at least MIN_UNRELATED_WORDS words."""
    from augrl import tasks

    if dataset == "mrpc":
        texts = [r["text_a"] for r in tasks.read_mrpc(root, "train")]
    elif dataset == "sst2":
        texts = [r["text"] for r in tasks.read_sst2(root, "train")]
    else:
        texts = [" ".join(r[c].split()) for r in tasks.read_sick(root) for c in ("sentence_A", "sentence_B")]
    seen: set[str] = set()
    out = []
    for t in texts:
        key = tasks.normalize_text(t)
        if len(key.split()) >= MIN_UNRELATED_WORDS and key not in seen:
            seen.add(key)
            out.append(t)
    return out


# --------------------------------------------------------------------------- planted pools


def plant(pool: CandidatePool, task, fraction: float, kinds: Sequence[str] = PLANT_KINDS, seed: int = 0,
          unrelated_texts: Sequence[str] | None = None) -> CandidatePool:
    """``pool`` plus planted bad candidates that make up ``fraction`` of the result.

    With ``N`` clean rows, ``k = max(1, round(fraction * N / (1 - fraction)))`` rows are
    planted (``k / (N + k)`` is then as close to ``fraction`` as whole rows allow), split
    evenly over ``kinds`` (the first ``k % len(kinds)`` kinds get one more). What each kind
    is: see the module docstring. Flip and shuffle rows copy clean rows drawn without
    replacement (with replacement when there are fewer clean rows than planted ones).

    Planted rows get ``planted=True``, their ``planted_kind``, ``provenance="planted"``,
    fresh ``origin_ids`` (above every id of ``pool``), ``edit_fraction`` of their original as
    :func:`augrl.baselines.base.edit_fraction` computes it, ``is_source`` of the row they copy
    (``unrelated``: False) and ``logprob`` of the row a flip copies (same text, same original:
    the generator's score does not depend on the label), NaN otherwise. They are inserted at
    random positions; the clean rows keep their order.

    Args:
        pool: a pool without planted rows, of the task's text form.
        task: the :class:`augrl.tasks.Task` the pool was drawn from (labels, text fields).
        fraction: share of planted rows in the result, in (0, 1).
        kinds: a non-empty subset of :data:`PLANT_KINDS`, each once.
        seed: seeds every draw.
        unrelated_texts: sentences for the ``unrelated`` rows (pair tasks: two per row), drawn
            without replacement; None reads them with :func:`unrelated_texts` (real data).

    Returns:
        A pool of ``N + k`` rows; ``meta["planted"]`` records the fraction, counts per kind,
        seed and where the unrelated text came from.

    Raises:
        ConfigError: ``fraction`` outside (0, 1), an unknown or repeated kind, an empty pool or
            one that already holds planted rows, a pool of the wrong text form, too few
            unrelated texts, a pool with nothing to flip or shuffle.
    """
    fraction = check_fraction(fraction)
    kinds = check_kinds(kinds)
    n = len(pool)
    if n == 0:
        raise ConfigError("cannot plant candidates into an empty pool")
    if pool.planted.any():
        raise ConfigError(f"the pool already holds {int(pool.planted.sum())} planted rows; plant once, "
                          "with every kind you want")
    pair = task.spec.pair
    if any(isinstance(t, tuple) != pair for t in pool.texts):
        raise ConfigError(f"task {task.spec.name!r} has {'pairs of texts' if pair else 'single texts'}, "
                          "the pool does not")
    k = max(1, round(fraction * n / (1.0 - fraction)))
    counts = {kind: k // len(kinds) + (i < k % len(kinds)) for i, kind in enumerate(kinds)}
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _PLANT_STREAM])
    labels_seen = np.concatenate([np.asarray(list(task.train["label"]), dtype=float), pool.labels.astype(float)])
    lo, hi = float(labels_seen.min()), float(labels_seen.max())

    parts: list[CandidatePool] = []
    unrelated_from = None
    for kind in kinds:
        c = counts[kind]
        if c == 0:
            continue
        if kind == "flip":
            parts.append(_flips(pool, task.spec, c, rng, lo, hi))
        elif kind == "shuffle":
            parts.append(_shuffles(pool, c, rng))
        else:
            need = c * (2 if pair else 1)
            if unrelated_texts is None:
                sentences = _sample_unrelated(task, need, seed)
                unrelated_from = UNRELATED_BY_FAMILY[task_family(task.spec)]
            else:
                sentences = _given_unrelated(unrelated_texts, need, rng)
                unrelated_from = "given"
            parts.append(_unrelated(sentences, task.spec, c, rng, lo, hi, pool.labels.dtype))
    planted = CandidatePool.concat(parts, offset_ids=False)
    base = int(pool.origin_ids.max()) + 1 if n else 0
    planted.origin_ids = np.arange(base, base + k, dtype=np.int64)

    slots = np.zeros(n + k, dtype=bool)
    slots[rng.choice(n + k, size=k, replace=False)] = True
    order = np.empty(n + k, dtype=np.int64)
    order[~slots] = np.arange(n)
    order[slots] = n + rng.permutation(k)
    joined = CandidatePool.concat([pool, planted], offset_ids=False).subset(order)
    record = {"fraction": fraction, "clean": n, "planted": k, "counts": counts, "seed": int(seed),
              "unrelated": unrelated_from}
    return replace(joined, meta=dict(pool.meta, size=n + k, planted=record))


def _sample_unrelated(task, n: int, seed: int) -> list[str]:
    return unrelated_texts(task, n, seed)


def check_fraction(fraction: float) -> float:
    """``fraction`` as a float in (0, 1), or a ConfigError naming the setting and the range."""
    number = isinstance(fraction, (int, float, np.integer, np.floating)) and not isinstance(fraction, bool)
    value = float(fraction) if number else math.nan
    if not 0.0 < value < 1.0:
        raise ConfigError(f"planted fraction must be in the open range (0, 1) (a share of the result), "
                          f"got {fraction!r}")
    return value


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """``kinds`` as a tuple of known, distinct planted kinds, or a ConfigError listing them."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in kinds if k not in PLANT_KINDS]
    if unknown or not kinds:
        what = f"unknown planted kind(s) {unknown}" if unknown else "no planted kind given"
        raise ConfigError(f"{what}; the kinds are {list(PLANT_KINDS)}")
    twice = sorted({k for k in kinds if kinds.count(k) > 1})
    if twice:
        raise ConfigError(f"planted kind(s) {twice} given more than once; the kinds are split evenly, "
                          f"list each once (from {list(PLANT_KINDS)})")
    return kinds


def _draw(candidates: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
    """``c`` of ``candidates``, without replacement when there are enough."""
    return rng.choice(candidates, size=c, replace=c > len(candidates))


def _copies(pool: CandidatePool, rows: np.ndarray, texts: list, labels: np.ndarray, kind: str,
            logprob: np.ndarray) -> CandidatePool:
    """Planted rows made from ``pool``'s ``rows``: new texts and labels, the rows' originals."""
    from augrl.baselines.base import edit_fraction

    origins = [pool.origins[i] for i in rows]
    c = len(rows)
    return CandidatePool(texts, labels.astype(pool.labels.dtype), origins, pool.is_source[rows].copy(),
                         np.asarray([edit_fraction(o, t) for o, t in zip(origins, texts)], dtype=np.float32),
                         logprob, np.zeros(c, dtype=np.int64), {}, np.ones(c, dtype=bool), [kind] * c,
                         ["planted"] * c)


def _flips(pool: CandidatePool, spec, c: int, rng: np.random.Generator, lo: float, hi: float) -> CandidatePool:
    """``c`` copies of clean rows with a wrong label (another class; a score reflected in [lo, hi])."""
    if spec.is_regression:
        reflected = (lo + hi - pool.labels.astype(float))
        candidates = np.flatnonzero(np.abs(reflected - pool.labels) > 1e-6 * max(hi - lo, 1e-12))
        if len(candidates) == 0:
            raise ConfigError("cannot plant label flips: every score in the pool lies at the middle of the "
                              f"label range [{lo}, {hi}], where reflecting it changes nothing")
        rows = _draw(candidates, c, rng)
        labels = reflected[rows]
    else:
        rows = _draw(np.arange(len(pool)), c, rng)
        labels = (pool.labels[rows].astype(np.int64) + rng.integers(1, spec.num_labels, size=c)) % spec.num_labels
    return _copies(pool, rows, [pool.texts[i] for i in rows], labels, "flip", pool.logprob[rows].copy())


def _shuffles(pool: CandidatePool, c: int, rng: np.random.Generator) -> CandidatePool:
    """``c`` clean rows with the words of each side in a random order unlike the row's and its original's."""
    def sides(text) -> tuple[str, ...]:
        return (text,) if isinstance(text, str) else tuple(text)

    candidates = np.flatnonzero([any(len(set(s.split())) > 1 for s in sides(t)) for t in pool.texts])
    if len(candidates) == 0:
        raise ConfigError("cannot plant shuffled candidates: no candidate in the pool has two different words")
    rows = _draw(candidates, c, rng)
    texts = []
    for i in rows:
        out = []
        for side, origin in zip(sides(pool.texts[i]), sides(pool.origins[i])):
            words = side.split()
            shuffled = words
            if len(set(words)) > 1:
                avoid = [words, origin.split()]  # neither the candidate nor (a swap may undo it) its original
                for _ in range(_SHUFFLE_TRIES):
                    shuffled = [words[j] for j in rng.permutation(len(words))]
                    if shuffled not in avoid:
                        break
                while shuffled == words:  # only the original's order is left: still a different order
                    shuffled = [words[j] for j in rng.permutation(len(words))]
            out.append(" ".join(shuffled))
        texts.append(out[0] if isinstance(pool.texts[i], str) else tuple(out))
    return _copies(pool, rows, texts, pool.labels[rows], "shuffle", np.full(c, np.nan))


def _given_unrelated(texts: Sequence[str], need: int, rng: np.random.Generator) -> list[str]:
    texts = [texts] if isinstance(texts, str) else list(texts)
    bad = [t for t in texts if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ConfigError(f"unrelated_texts must be non-empty strings, got {bad[0]!r}")
    if len(texts) < need:
        raise ConfigError(f"{need} unrelated texts are needed (one per planted row, two for a pair task), "
                          f"got {len(texts)}")
    return [texts[i] for i in rng.choice(len(texts), size=need, replace=False)]


def _unrelated(sentences: list[str], spec, c: int, rng: np.random.Generator, lo: float, hi: float,
               dtype) -> CandidatePool:
    """``c`` rows of unrelated text (pairs: consecutive sentences) with random labels."""
    texts = [(sentences[2 * j], sentences[2 * j + 1]) for j in range(c)] if spec.pair else list(sentences[:c])
    labels = rng.uniform(lo, hi, size=c) if spec.is_regression else rng.integers(0, spec.num_labels, size=c)
    return CandidatePool(texts, labels.astype(dtype), list(texts), np.zeros(c, dtype=bool),
                         np.zeros(c, dtype=np.float32), np.full(c, np.nan), np.zeros(c, dtype=np.int64), {},
                         np.ones(c, dtype=bool), ["unrelated"] * c, ["planted"] * c)


# --------------------------------------------------------------------------- budgeted pools


def budgeted_pool(task, size: int = 3000, augmenters: Sequence | Mapping = (), seed: int = 0,
                  other_domain: str | None = None, proportions: Mapping[str, float] | None = None,
                  max_words: int = 64, data_dir: str | Path | None = None) -> CandidatePool:
    """A large mixed pool for a small selection budget.

    Parts (``proportions`` keys, see :data:`BUDGET_PARTS`):

    ``source``
        raw (unaugmented) rows of ``task.source``, drawn evenly across classes;
        ``provenance="source"``, ``is_source=True``.
    ``other_domain``
        raw target rows (every split) of the task ``other_domain`` (default: the module's
        table), with their labels, each side cut to its first ``max_words`` words, drawn evenly
        across classes; rows that leak a validation or test text of ``task``
        (:func:`augrl.leakage.audit`) are left out. ``provenance="other_domain"``,
        ``is_source=True`` (not target-domain text).
    ``augmented``
        variants of the target train rows, split evenly over ``augmenters`` (the first ones get
        the remainder), each part a :func:`augrl.pool.build_pool` with ``source_fraction=0``
        and this ``seed``; ``provenance`` = the augmenter's label.

    Raw rows are their own originals (``edit_fraction`` 0, ``logprob`` NaN). ``origin_ids``
    share one space: target train row ``i`` is ``i`` in every augmented part, the ``k``-th
    source row drawn is ``N_train + k``, the ``k``-th other-domain row ``N_train + n_source + k``.
    Part sizes are ``proportions * size`` rounded by largest remainder (they sum to ``size``);
    the rows are then shuffled (seeded).

    Args:
        task: a loaded :class:`augrl.tasks.Task`.
        size: rows in the pool, >= 1.
        augmenters: fitted augmenters, a sequence (labelled by their ``name``) or a mapping
            label -> augmenter.
        seed: seeds every draw and the augmenters.
        other_domain: a registered task name or task YAML path with the same kind, labels and
            text form as ``task``; None: the table's default (there may be none).
        proportions: share of each part, >= 0, summing to 1; missing keys are 0. None: equal
            shares of the parts available (a source pool, an other domain, augmenters).
        max_words: words kept of each side of an other-domain text, >= 1.
        data_dir: data root of the other domain; default ``$AUGRL_DATA``.

    Returns:
        A pool of ``size`` rows; ``meta`` records the proportions, counts per provenance, the
        other domain, the augmenters' params and the parts.

    Raises:
        ConfigError: ``size`` < 1, bad proportions (unknown key, negative, not summing to 1,
            a part that is not available), bad augmenter labels, an incompatible other domain,
            too few rows for a part.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"budgeted pool size must be an integer >= 1, got {size!r}")
    if isinstance(max_words, bool) or not isinstance(max_words, (int, np.integer)) or max_words < 1:
        raise ConfigError(f"max_words must be an integer >= 1, got {max_words!r}")
    size = int(size)
    named = _label_augmenters(augmenters)
    if other_domain is None:
        other_domain = OTHER_DOMAIN.get(task.spec.name)
    available = {
        "source": task.source is not None and len(task.source) > 0,
        "other_domain": other_domain is not None,
        "augmented": bool(named) and len(task.train) > 0,
    }
    shares = _check_proportions(proportions, available, task.spec.name)
    counts = _largest_remainder(shares, size)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _BUDGET_STREAM])
    dtype = np.float32 if task.spec.is_regression else np.int64
    classification = not task.spec.is_regression
    fields = task.spec.text_fields
    n_train = len(task.train)

    parts: list[CandidatePool] = []
    if counts["source"]:
        k = counts["source"]
        if k > len(task.source):
            raise ConfigError(f"the budgeted pool's source part needs {k} rows; task {task.spec.name!r}'s source "
                              f"holds {len(task.source)}")
        rows = stratified_indices(np.asarray(list(task.source["label"])), k, rng, classification)
        chosen = task.source.select([int(r) for r in rows])
        parts.append(_raw_part(dataset_rows(chosen, fields), np.asarray(list(chosen["label"]), dtype=dtype), "source",
                               n_train))
    other_record = None
    if counts["other_domain"]:
        texts, labels, other_record = _other_domain_rows(task, other_domain, counts["other_domain"], rng, max_words,
                                                         data_dir)
        parts.append(_raw_part(texts, labels.astype(dtype), "other_domain", n_train + counts["source"]))
    aug_counts: dict[str, int] = {}
    if counts["augmented"]:
        k = counts["augmented"]
        for i, (label, augmenter) in enumerate(named.items()):
            aug_counts[label] = k // len(named) + (i < k % len(named))
            if aug_counts[label]:
                part = build_pool(task, augmenter, aug_counts[label], source_fraction=0.0, seed=seed)
                parts.append(replace(part, provenance=[label] * len(part)))
    joined = CandidatePool.concat(parts, offset_ids=False)
    mixed = joined.subset(rng.permutation(len(joined)))
    meta = {
        "pool": "budgeted",
        "task": task.spec.name,
        "size": size,
        "seed": int(seed),
        "proportions": shares,
        "counts": {"source": counts["source"], "other_domain": counts["other_domain"], **aug_counts},
        "other_domain": other_record,
        "augmenters": {label: {"augmenter": getattr(a, "name", type(a).__name__),
                               "params": a.params() if hasattr(a, "params") else {}} for label, a in named.items()},
        "parts": joined.meta["parts"],
    }
    return replace(mixed, meta=meta)


def _label_augmenters(augmenters: Sequence | Mapping) -> dict:
    """label -> augmenter, labels checked (unique, not a reserved provenance)."""
    if isinstance(augmenters, Mapping):
        named = {str(k): v for k, v in augmenters.items()}
    else:
        items = list(augmenters)
        labels = [str(getattr(a, "name", "") or type(a).__name__) for a in items]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ConfigError(f"augmenters {twice} appear more than once; pass a mapping label -> augmenter to tell "
                              "them apart")
        named = dict(zip(labels, items))
    reserved = sorted(set(named) & {"source", "other_domain", "planted", ""})
    if reserved:
        raise ConfigError(f"augmenter label(s) {reserved} are reserved provenance names; choose other labels")
    return named


def _check_proportions(proportions: Mapping[str, float] | None, available: dict[str, bool], task: str) -> dict:
    if proportions is None:
        parts = [p for p in BUDGET_PARTS if available[p]]
        if not parts:
            raise ConfigError(f"task {task!r} has no source pool and no default other domain, and no augmenter was "
                              "given: a budgeted pool has nothing to hold")
        return {p: (1.0 / len(parts) if p in parts else 0.0) for p in BUDGET_PARTS}
    if not isinstance(proportions, Mapping):
        raise ConfigError(f"proportions must map parts {list(BUDGET_PARTS)} to shares, got {proportions!r}")
    unknown = sorted(set(proportions) - set(BUDGET_PARTS))
    if unknown:
        raise ConfigError(f"unknown budgeted pool part(s) {unknown}; the parts are {list(BUDGET_PARTS)}")
    shares = {}
    for p in BUDGET_PARTS:
        try:
            shares[p] = float(proportions.get(p, 0.0))
        except (TypeError, ValueError):
            shares[p] = math.nan
        if not math.isfinite(shares[p]) or shares[p] < 0:
            raise ConfigError(f"the proportion of {p!r} must be a number >= 0, got {proportions.get(p)!r}")
    if abs(sum(shares.values()) - 1.0) > 1e-6:
        raise ConfigError(f"budgeted pool proportions must sum to 1, got {sum(shares.values()):.6g} ({shares})")
    why = {"source": f"task {task!r} has no source pool",
           "other_domain": f"task {task!r} has no default other domain: pass other_domain=<task name>",
           "augmented": "no augmenter was given (or the target train set is empty)"}
    for p in BUDGET_PARTS:
        if shares[p] > 0 and not available[p]:
            raise ConfigError(f"proportion {shares[p]:.3g} for {p!r}, but {why[p]}")
    return shares


def _largest_remainder(shares: dict[str, float], size: int) -> dict[str, int]:
    """Whole counts summing to ``size``, each within one of ``share * size``."""
    exact = {p: shares[p] * size for p in shares}
    counts = {p: int(math.floor(v)) for p, v in exact.items()}
    by_remainder = sorted(shares, key=lambda p: -(exact[p] - counts[p]))
    for p in by_remainder[: size - sum(counts.values())]:
        counts[p] += 1
    return counts


def _raw_part(texts: list, labels: np.ndarray, provenance: str, first_id: int) -> CandidatePool:
    """Unaugmented rows (their own originals) of a budgeted pool."""
    k = len(texts)
    return CandidatePool(list(texts), labels, list(texts), np.ones(k, dtype=bool), np.zeros(k, dtype=np.float32),
                         np.full(k, np.nan), np.arange(first_id, first_id + k, dtype=np.int64),
                         {"part": provenance, "size": k}, provenance=[provenance] * k)


def _other_domain_rows(task, name: str, k: int, rng: np.random.Generator, max_words: int,
                       data_dir: str | Path | None) -> tuple[list, np.ndarray, dict]:
    """``k`` labelled rows of another task's target domain, truncated, without leaks of ``task``."""
    from augrl.leakage import audit
    from augrl.tasks import get_spec, load_raw

    spec = task.spec
    other = get_spec(name)
    if other.name == spec.name:
        raise ConfigError(f"other_domain {name!r} is the task itself; name another domain")
    if other.kind != spec.kind or other.pair != spec.pair or tuple(other.label_names) != tuple(spec.label_names):
        raise ConfigError(f"other_domain {name!r} ({other.kind}, labels {list(other.label_names)}, "
                          f"{'pairs' if other.pair else 'single texts'}) does not match task {spec.name!r} "
                          f"({spec.kind}, labels {list(spec.label_names)}, {'pairs' if spec.pair else 'single texts'})")
    _, raw = load_raw(name, data_dir)
    records = [r for split in raw.target.values() for r in split]

    def cut(text: str) -> str:
        return " ".join(text.split()[:max_words])

    texts = [tuple(cut(r[f]) for f in spec.text_fields) if spec.pair else cut(r["text"]) for r in records]
    labels = np.asarray([r["label"] for r in records], dtype=float if spec.is_regression else np.int64)
    if k > len(texts):
        raise ConfigError(f"the budgeted pool's other-domain part needs {k} rows; {name!r} holds {len(texts)}")
    drawn = stratified_indices(labels, min(len(texts), k + max(50, k // 4)), rng, not spec.is_regression)
    report = audit([texts[i] for i in drawn], task.heldout_texts())
    clean = [int(i) for i, category in zip(drawn, report.categories) if category is None]
    if len(clean) < k:
        raise ConfigError(f"the budgeted pool's other-domain part needs {k} rows; only {len(clean)} of the "
                          f"{len(drawn)} drawn from {name!r} do not leak a held-out text of {spec.name!r}")
    rows = clean[:k]
    record = {"task": other.name, "dataset": other.target, "max_words": int(max_words),
              "leaky_dropped": len(drawn) - len(clean)}
    return [texts[i] for i in rows], labels[rows], record
