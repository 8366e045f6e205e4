"""Candidate pools D': augmented samples of target and source examples, with their provenance.

An episode of :class:`augrl.envs.AugmentKDEnv` walks over a pool; the L2A selector, the
policies trained with stable-baselines3 and the benchmark's ``kd+<augmenter>`` rows all take
their augmented data from :func:`build_pool`.

How a pool of ``size`` candidates is drawn (all seeded by ``seed``):

* ``k_s = round(source_fraction * size)`` candidates come from the source pool and
  ``k_t = size - k_s`` from the target few-shot train set;
* target: every train example gets ``ceil(k_t / N_train)`` variants; the pool takes variant
  ``j`` of every example (in a seeded order) before variant ``j + 1``, so each example
  contributes equally and ``k_t`` may be any number;
* source: ``ceil(k_s / variants)`` source examples are drawn without replacement (stratified
  by class for classification), ``variants`` variants each, the first ``k_s`` kept.

Every candidate inherits its original's label and records the original's text, whether it
comes from the source domain, the augmenter's word edit fraction and, for generators that
score their samples (an augmenter with ``augment_scored``, e.g. L2A's), ``log P(z|x)``.

Pools made for the selection benchmarks carry two more per-row records:

* ``provenance``: how the row was made: the augmenter's name (every row of :func:`build_pool`),
  ``"source"`` / ``"other_domain"`` (unaugmented rows of :func:`augrl.planted.budgeted_pool`)
  or ``"planted"``;
* ``planted`` / ``planted_kind``: the bad candidates :func:`augrl.planted.plant` adds
  (``"flip"``, ``"unrelated"``, ``"shuffle"``; ``""`` on clean rows). These flags are ground
  truth for scoring a selector (:func:`augrl.metrics.detection_auc`), never a feature.

:meth:`CandidatePool.concat` joins pools.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from augrl.errors import ConfigError


@dataclass
class CandidatePool:
    """N augmented candidates.

    Attributes:
        texts: the candidates (str, or (a, b) pairs).
        labels: (N,) the label inherited from each candidate's original (float for regression).
        origins: (N,) the original text of each candidate.
        is_source: (N,) True for candidates made from source-domain examples.
        edit_fraction: (N,) word edits / words of the original.
        logprob: (N,) the generator's ``log P(z|x)``; NaN when the augmenter does not score.
        origin_ids: (N,) which original: row ``i`` of the target train set is ``i``; the
            ``k``-th source example drawn is ``N_train + k``.
        meta: how the pool was made (augmenter and params, sizes, seed).
        planted: (N,) bool, True for bad candidates planted by :func:`augrl.planted.plant`;
            None (the default) means none is: all False.
        planted_kind: (N,) the planted kind (``"flip"``, ``"unrelated"``, ``"shuffle"``) of
            each planted row, ``""`` on clean rows; None: ``""`` everywhere (``"planted"`` on
            rows that ``planted`` flags).
        provenance: (N,) how each row was made: an augmenter's name, ``"source"`` or
            ``"other_domain"`` (unaugmented rows), ``"planted"``; None: ``meta["augmenter"]``
            (or ``""``) for every row.

    Raises:
        ValueError: the per-row fields differ in length, or ``planted_kind`` is empty on a
            planted row or set on a clean one.
    """

    texts: list
    labels: np.ndarray
    origins: list
    is_source: np.ndarray
    edit_fraction: np.ndarray
    logprob: np.ndarray
    origin_ids: np.ndarray
    meta: dict = field(default_factory=dict)
    planted: np.ndarray | None = None
    planted_kind: list[str] | None = None
    provenance: list[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.texts)
        self.planted = np.zeros(n, dtype=bool) if self.planted is None else np.asarray(self.planted, dtype=bool)
        if self.planted_kind is None:
            self.planted_kind = ["planted" if p else "" for p in self.planted.tolist()]
        self.planted_kind = [str(k) for k in self.planted_kind]
        if self.provenance is None:
            self.provenance = [str(self.meta.get("augmenter", ""))] * n
        self.provenance = [str(p) for p in self.provenance]
        lengths = {name: len(getattr(self, name)) for name in _ROW_FIELDS}
        if set(lengths.values()) != {n}:
            raise ValueError(f"a CandidatePool's per-row fields must all hold {n} rows, got {lengths}")
        bad = [i for i, (p, k) in enumerate(zip(self.planted.tolist(), self.planted_kind)) if bool(p) != bool(k)]
        if bad:
            raise ValueError(f"planted_kind must be non-empty exactly on planted rows; row {bad[0]} is "
                             f"planted={bool(self.planted[bad[0]])} with kind {self.planted_kind[bad[0]]!r}")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def scored(self) -> bool:
        """Whether the augmenter gave generator log-probabilities."""
        return bool(len(self)) and not np.isnan(self.logprob).all()

    def subset(self, indices: Sequence[int]) -> "CandidatePool":
        """The rows ``indices`` (in that order; repeats allowed), every per-row field kept."""
        idx = [int(i) for i in indices]
        return CandidatePool([self.texts[i] for i in idx], self.labels[idx], [self.origins[i] for i in idx],
                             self.is_source[idx], self.edit_fraction[idx], self.logprob[idx], self.origin_ids[idx],
                             dict(self.meta, subset=len(idx)), self.planted[idx],
                             [self.planted_kind[i] for i in idx], [self.provenance[i] for i in idx])

    def columns(self, text_fields: Sequence[str]) -> dict[str, list]:
        """A column dict (``text`` or ``text_a``/``text_b``, ``label``) that
        :func:`augrl.batching.encode` takes like a dataset."""
        cols: dict[str, list] = {}
        if len(text_fields) == 1:
            cols[text_fields[0]] = list(self.texts)
        else:
            cols[text_fields[0]] = [t[0] for t in self.texts]
            cols[text_fields[1]] = [t[1] for t in self.texts]
        cols["label"] = self.labels.tolist()
        return cols

    def originals_columns(self, text_fields: Sequence[str]) -> dict[str, list]:
        """As :meth:`columns`, with each candidate's original in its place."""
        return replace(self, texts=list(self.origins)).columns(text_fields)

    @classmethod
    def concat(cls, pools: Sequence["CandidatePool"], offset_ids: bool = True,
               meta: dict | None = None) -> "CandidatePool":
        """The rows of ``pools``, one after the other, every per-row field kept.

        Args:
            pools: at least one pool; all of single texts or all of pairs, with labels of one
                kind (class indices or scores).
            offset_ids: shift each pool's ``origin_ids`` past those of the pools before it
                (part ``p`` adds ``1 + `` the largest shifted id so far), so that originals of
                different pools never share an id. False keeps the ids as they are, for parts
                drawn from one task whose ids already name the same originals (row ``i`` of
                the target train set is ``i`` in every :func:`build_pool` with
                ``source_fraction=0``).
            meta: extra entries for the result's ``meta``.

        Returns:
            A pool of ``sum(len(p))`` rows; ``meta["parts"]`` lists each part's ``meta`` with its
            ``size`` and ``id_offset``.
        """
        pools = list(pools)
        if not pools:
            raise ConfigError("CandidatePool.concat needs at least one pool")
        filled = [p for p in pools if len(p)]
        if len({isinstance(p.texts[0], tuple) for p in filled}) > 1:
            raise ConfigError("cannot concatenate pools of single texts with pools of text pairs")
        if len({np.issubdtype(p.labels.dtype, np.floating) for p in filled}) > 1:
            raise ConfigError("cannot concatenate pools of class labels with pools of regression scores")
        offsets, ids, start = [], [], 0
        for p in pools:
            shift = start if offset_ids else 0
            offsets.append(shift)
            ids.append(np.asarray(p.origin_ids, dtype=np.int64) + shift)
            if offset_ids and len(p):
                start = int(ids[-1].max()) + 1
        labels = np.concatenate([p.labels for p in filled]) if filled else pools[0].labels[:0]
        parts = [dict(p.meta, size=len(p), id_offset=off) for p, off in zip(pools, offsets)]
        return cls([t for p in pools for t in p.texts], labels, [o for p in pools for o in p.origins],
                   np.concatenate([p.is_source for p in pools]).astype(bool),
                   np.concatenate([p.edit_fraction for p in pools]).astype(np.float32),
                   np.concatenate([p.logprob for p in pools]).astype(np.float64), np.concatenate(ids),
                   {"parts": parts, "size": sum(len(p) for p in pools), **(meta or {})},
                   np.concatenate([p.planted for p in pools]), [k for p in pools for k in p.planted_kind],
                   [v for p in pools for v in p.provenance])


    def save(self, path: str | Path) -> Path:
        """Write the pool as one JSON file (atomically: :func:`augrl.fileio.write_file_atomically`)."""
        from augrl.fileio import write_file_atomically

        rows = {name: _plain(getattr(self, name)) for name in ("texts", *_ROW_FIELDS)}
        rows["float_labels"] = bool(np.issubdtype(self.labels.dtype, np.floating))
        text = json.dumps({**rows, "meta": self.meta}, default=str)
        return write_file_atomically(path, lambda tmp: tmp.write_text(text))

    @classmethod
    def load(cls, path: str | Path) -> "CandidatePool":
        """A pool written by :meth:`save`."""
        data = json.loads(Path(path).read_text())
        pairs = [tuple(t) if isinstance(t, list) else t for t in data["texts"]]
        origins = [tuple(t) if isinstance(t, list) else t for t in data["origins"]]
        labels = np.asarray(data["labels"], dtype=np.float32 if data["float_labels"] else np.int64)
        return cls(pairs, labels, origins, np.asarray(data["is_source"], dtype=bool),
                   np.asarray(data["edit_fraction"], dtype=np.float32),
                   np.asarray([math.nan if v is None else v for v in data["logprob"]], dtype=np.float64),
                   np.asarray(data["origin_ids"], dtype=np.int64), data["meta"], np.asarray(data["planted"], dtype=bool),
                   data["planted_kind"], data["provenance"])


def _plain(value):
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return [None if isinstance(v, float) and math.isnan(v) else (list(v) if isinstance(v, tuple) else v)
            for v in value]


_ROW_FIELDS = ("labels", "origins", "is_source", "edit_fraction", "logprob", "origin_ids", "planted", "planted_kind",
               "provenance")


def dataset_rows(dataset, fields: Sequence[str]) -> list:
    cols = [list(dataset[f]) for f in fields]
    return cols[0] if len(cols) == 1 else list(zip(*cols))


def stratified_indices(labels: np.ndarray, k: int, rng: np.random.Generator, classification: bool) -> np.ndarray:
    """``k`` row indices drawn without replacement, as even across classes as the data allows."""
    n = len(labels)
    k = min(k, n)
    if not classification:
        return rng.choice(n, size=k, replace=False)
    groups = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < k:  # round-robin over the classes
        for g in groups:
            if depth < len(g) and len(chosen) < k:
                chosen.append(int(g[depth]))
        depth += 1
    return np.asarray(chosen)


def _augment(augmenter, texts: list, labels: list, n: int, seed: int) -> tuple[list[list], list[list[float]]]:
    """Variants (and generator log-probabilities, NaN when not scored) of ``texts``."""
    if hasattr(augmenter, "augment_scored"):
        scored = augmenter.augment_scored(texts, n=n, labels=labels, seed=seed)  # (text, logprob, ...) each
        return [[s[0] for s in row] for row in scored], [[float(s[1]) for s in row] for row in scored]
    variants = augmenter.augment(texts, n=n, labels=labels, seed=seed)
    return variants, [[math.nan] * len(row) for row in variants]


def build_pool(task, augmenter, size: int, variants: int = 4, source_fraction: float | None = None,
               seed: int = 0) -> CandidatePool:
    """Draw a pool of ``size`` candidates from ``task`` with a fitted ``augmenter``.

    Args:
        task: a loaded :class:`augrl.tasks.Task` (its ``train`` and ``source``).
        augmenter: a fitted :class:`augrl.baselines.Augmenter` (or a scoring generator).
        size: candidates in the pool.
        variants: variants per source example.
        source_fraction: share of the pool made from source examples; None: 0.5 when the task
            has a source pool, else 0.
        seed: seeds the choice of examples and the augmenter.
    """
    from augrl.runtime import stage

    with stage("pool"):
        return _build_pool(task, augmenter, size, variants, source_fraction, seed)


def _build_pool(task, augmenter, size: int, variants: int, source_fraction: float | None, seed: int) -> CandidatePool:
    from augrl.baselines.base import edit_fraction

    size, variants = int(size), int(variants)
    if size < 1:
        raise ConfigError(f"pool size must be >= 1, got {size}")
    if variants < 1:
        raise ConfigError(f"variants per example must be >= 1, got {variants}")
    has_source = task.source is not None and len(task.source) > 0
    if source_fraction is None:
        source_fraction = 0.5 if has_source else 0.0
    if not 0.0 <= source_fraction <= 1.0:
        raise ConfigError(f"source_fraction must be in [0, 1], got {source_fraction}")
    if source_fraction > 0 and not has_source:
        raise ConfigError(f"task {task.spec.name!r} has no source pool; set source_fraction=0")
    if source_fraction < 1 and len(task.train) == 0:
        raise ConfigError("the target train set is empty; set source_fraction=1")
    fields = task.spec.text_fields
    classification = not task.spec.is_regression
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7])
    k_source = int(round(source_fraction * size))
    k_target = size - k_source

    texts, labels, origins, from_source, logprobs, origin_ids = [], [], [], [], [], []
    if k_target:
        train_texts, train_labels = dataset_rows(task.train, fields), list(task.train["label"])
        per = math.ceil(k_target / len(train_texts))
        outs, lps = _augment(augmenter, train_texts, train_labels, per, seed)
        order = rng.permutation(len(train_texts))
        taken = [(i, j) for j in range(per) for i in order][:k_target]
        for i, j in taken:
            texts.append(outs[i][j])
            labels.append(train_labels[i])
            origins.append(train_texts[i])
            from_source.append(False)
            logprobs.append(lps[i][j])
            origin_ids.append(int(i))
    if k_source:
        source_labels = np.asarray(list(task.source["label"]))
        rows = stratified_indices(source_labels, math.ceil(k_source / variants), rng, classification)
        chosen = task.source.select(sorted(int(r) for r in rows))
        src_texts, src_labels = dataset_rows(chosen, fields), list(chosen["label"])
        outs, lps = _augment(augmenter, src_texts, src_labels, variants, seed + 1)
        offset = len(task.train)
        for i in range(len(src_texts)):
            for j in range(variants):
                if len(texts) - k_target >= k_source:
                    break
                texts.append(outs[i][j])
                labels.append(src_labels[i])
                origins.append(src_texts[i])
                from_source.append(True)
                logprobs.append(lps[i][j])
                origin_ids.append(offset + i)
    dtype = np.float32 if task.spec.is_regression else np.int64
    meta = {"augmenter": getattr(augmenter, "name", type(augmenter).__name__),
            "augmenter_params": augmenter.params() if hasattr(augmenter, "params") else {},
            "size": len(texts), "target": k_target, "source": len(texts) - k_target, "variants": variants,
            "source_fraction": source_fraction, "seed": seed}
    return CandidatePool(texts, np.asarray(labels, dtype=dtype), origins, np.asarray(from_source, dtype=bool),
                         np.asarray([edit_fraction(o, t) for o, t in zip(origins, texts)], dtype=np.float32),
                         np.asarray(logprobs, dtype=np.float64), np.asarray(origin_ids, dtype=np.int64), meta,
                         provenance=[meta["augmenter"]] * len(texts))


def pool_key(task, augmenter: str, params: dict, size: int, variants: int, source_fraction: float | None,
             seed: int) -> dict:
    """Everything that decides a :func:`build_pool` pool of a registered augmenter: the content
    of the task's train and source sets, the augmenter's name and settings (an MLM named in
    them by its files: :func:`augrl.models.model_key`), the pool's settings, and the source code
    of :mod:`augrl.pool` and the augmenters (:func:`augrl.artifacts.code_fingerprint`), so a
    changed augmenter draws a new pool."""
    from augrl import models
    from augrl.artifacts import code_fingerprint, dataset_fingerprint

    fields = task.spec.text_fields
    settings = {k: (models.model_key(v) if k == "mlm" and isinstance(v, str) else v) for k, v in params.items()
                if k != "progress"}
    if "device" in settings:
        from augrl.runtime import select_device

        settings["device"] = select_device(settings["device"]).type
    return {"train": dataset_fingerprint(task.train, fields), "source": dataset_fingerprint(task.source, fields),
            "augmenter": augmenter, "params": settings, "size": int(size), "variants": int(variants),
            "source_fraction": source_fraction, "seed": int(seed),
            "code": code_fingerprint("augrl.pool", "augrl.baselines", "augrl.generator")}


def stored_pool(task, augmenter: str, params: dict, size: int, variants: int, source_fraction: float | None,
                seed: int, fitted: Callable[[], object]) -> tuple[CandidatePool, bool]:
    """:func:`build_pool` with the augmenter ``fitted()`` returns, through the artifact store
    (kind ``pool``, :func:`pool_key`): a pool drawn before is read back and the augmenter is not
    even fitted. Returns the pool and whether it was read from the store."""
    from augrl.artifacts import cached_build
    from augrl.runtime import stage

    with stage("pool"):
        return _stored_pool(task, augmenter, params, size, variants, source_fraction, seed, fitted)


def _stored_pool(task, augmenter: str, params: dict, size: int, variants: int, source_fraction: float | None,
                 seed: int, fitted: Callable[[], object]) -> tuple[CandidatePool, bool]:
    from augrl.artifacts import cached_build

    built = {}

    def build(tmp: Path) -> dict:
        built["pool"] = build_pool(task, fitted(), size, variants, source_fraction, seed=seed)
        built["pool"].save(tmp / "pool.json")
        return {"rows": len(built["pool"])}

    folder, _ = cached_build("pool", f"{task.spec.name}-{augmenter}-seed{seed}",
                             pool_key(task, augmenter, params, size, variants, source_fraction, seed), build)
    if "pool" in built:
        return built["pool"], False
    return CandidatePool.load(folder / "pool.json"), True
