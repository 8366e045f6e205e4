"""The benchmark: tasks x shots x seeds x methods, one result line per run, resumable.

``augrl bench --task rt --methods kd,kd+eda --seeds 5 --shots 40 --out DIR`` runs every
(task, shots, seed, method) that ``DIR/results.jsonl`` does not hold yet, appends one JSON line
per run as soon as it ends (:func:`augrl.results.append_jsonl`: one locked, fsynced write, so
two bench processes on one DIR never interleave partial lines), and rebuilds ``DIR/table.md``,
``DIR/table.csv`` and the plots (:mod:`augrl.report`) after each run.

**Resuming.** A run is identified by its task (as given), method, seed, shots and a hash of
everything that decides it (:func:`config_hash`: the method's full ``RunConfig``, its
augmenter and settings, and the augmentation budget for methods that augment). A rerun skips
the runs whose line exists, so a crash or Ctrl-C loses at most the run in progress; changed
settings give another hash and are run again. Lines that do not parse (a write cut off by a
crash, even holding bytes that are not UTF-8) are reported and their runs redone.

**Several processes on one DIR** (two shells, or array jobs of a scheduler) share the work and
never run one configuration twice. Before a run starts, its process claims it: an exclusive
``flock`` on ``DIR/claims/<digest of the run key>.claim``, a file naming the holder (pid, host,
start time, run), held while the run goes on and removed once its line is written. Another
process skips a run that is claimed (``... is being run by another process (pid 123 on host,
since ...); skipped for now``) and goes on with the next; when the rest is done it comes back
to the runs it skipped: those finished meanwhile are skipped, those still claimed are waited
for. The kernel drops the lock of a process that dies (``kill -9``, a lost node), so its claim
is taken over by the next process that asks (``taking over its claim from pid 123 ...``) and
the run is redone; nothing needs cleaning up by hand. The results file is re-read once a run is
claimed, so a run another process finished meanwhile is not repeated. (On NFS, Linux's
``flock`` relies on the server's lock support, and a dead client's locks are dropped when the
server notices.)

**A full disk** stops the bench with one message naming the file
(:class:`augrl.errors.DiskFullError`, exit status 2): a result line that could not be written
whole is cut back off, so every earlier line is kept; free some space and rerun the command.

**Fair comparison.** Every method of one (task, shots, seed) gets the same split and the same
fine-tuned teacher (:func:`augrl.teachers.fine_tuned_teacher`: trained once, cached on disk);
methods may not change the fields that decide them (:data:`SHARED_FIELDS`). Augmented methods
add ``variants`` candidates per target train example (default 4, the same for every method,
recorded in every line), drawn by :func:`augrl.pool.build_pool` from the target train set only
(``source_fraction`` 0 for the baselines), and distil a fresh student on the target set plus
the candidates (:func:`augrl.augmented.distil_on`).

**Methods** are a registry (name -> :class:`BenchMethod`), extendable like TextBrewer's
distillers. Built in:

====================  ===================================================================
``teacher_ft``        the shared teacher, fine-tuned on the target set
``student_ft``        the student fine-tuned on the target set (hard label only)
``kd``                KD without augmentation: dark knowledge (T=2) + hard label
``kd+<aug>``          KD on the target set plus ``variants`` candidates per example from the
                      augmenter ``<aug>``: eda, mask, pos, ngram, tang, contextual, cbert
``bilstm+tang``       BiLSTM / TextCNN students (MiniLM word embeddings) with Tang et al.'s
``textcnn+tang``      augmentation and objective: logit MSE + hard label
``distilbert``        soft cross-entropy + cosine of the top hidden states (``hidden_cos``)
``pkd``               BERT-PKD: 0.5 hard label + 0.5 dark knowledge + 100 * patient loss
``minilm``            MiniLM's attention and value-relation KL (top layer) + dark knowledge
``tinybert``          TinyBERT: embedding + hidden + attention + prediction (dark knowledge)
``bilstm_soft``       BiLSTM student on the teacher's logits alone (Tang et al.'s soft loss)
``kd+l2a``            L2A (:mod:`augrl.l2a`): generator pool, selector episodes, G_theta
``kd+l2a-nosrc``      updates, then KD on target + kept; its ablations w/o src, w/o tgt,
``kd+l2a-notgt``      without selector (all generated candidates kept) and without
``kd+l2a-noselector`` G_theta updates
``kd+l2a-nogen``
``kd+ppo``            an SB3 policy (:mod:`augrl.policies`) trained on the env over the
``kd+a2c``            seed's EDA pool keeps candidates; a random subset of the same size is
``kd+dqn``            the recorded control (``random_same_size``)
====================  ===================================================================

The distillation trainers of :mod:`augrl.kd.methods` are rows of the same name
(:data:`TRAINERS`: ``multi_teacher``, ``cotrain_isolated``, ``cotrain_shared_grad``,
``cotrain_loss_sum``, ``newsbert``, ``rco``, ``metakd``), run exactly as ``augrl distill
--method NAME`` runs them, with the seed's split and, where the trainer distils from the
fine-tuned teacher, the seed's shared one. A teacher trained inside the trainer (co-training,
RCO's route, Meta-KD's meta-teacher) is evaluated on test by the final evaluation and recorded
as ``teacher_metrics``; its options are ``method_options`` (``derive(..., config={"method_options":
{"beta": 0.9}})``).

The compression rows (``distilbert`` ... ``bilstm_soft``) are one-stage KD objectives from the
loss registry on the target set, without augmentation, so they differ from ``kd`` only in
what the student is asked to match.

A new method is a function of a :class:`BenchRun` returning an :class:`Outcome`::

    from augrl import bench

    @bench.register("kd+mine", description="KD on the candidates my selector keeps")
    def run_mine(ctx: bench.BenchRun) -> bench.Outcome:
        pool = ctx.pool("eda")                  # or ctx.pool(my_fitted_generator, source_fraction=0.5)
        keep = my_selector(pool, ctx.teacher())
        return ctx.distil(pool, keep=keep)

or, when it only changes settings, a derived method:
``bench.derive("kd-t4", "kd", config={"temperature": 4})`` (presets define these under
``define:``). For ``augrl bench`` to see methods registered in your own module, pass
``--import your.module``; augrl's own modules that register methods are listed in
:data:`METHOD_MODULES` and imported on first lookup.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import fcntl
import hashlib
import importlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Sequence

from augrl import models
from augrl.config import ConfigMixin
from augrl.errors import ConfigError, DiskFullError
from augrl.pipelines import Prepared, RunConfig, _record, _stage, prepare, train_student
from augrl.results import append_jsonl, read_jsonl

RESULTS_FILE = "results.jsonl"

#: the folder of a bench's run claims (see "Several processes" in the module docstring).
CLAIMS_DIR = "claims"

#: RunConfig fields that decide the split and the teacher: the same for every method of a seed.
SHARED_FIELDS = ("task", "shots", "seed", "data_dir", "teacher", "teacher_train", "device", "leakage")

#: augrl modules that register bench methods when imported (imported on first lookup).
METHOD_MODULES: list[str] = ["augrl.l2a", "augrl.policies"]

#: the key of a method's ``options`` holding AugmentKDConfig settings for its environment (B, reward...)
ENV_OPTION = "env"

AUGMENTERS = ("eda", "mask", "pos", "ngram", "tang", "contextual", "cbert")


# ----------------------------------------------------------------------------- what a run returns


@dataclass
class Outcome:
    """What a method hands back; the bench evaluates ``model`` on test and writes the record.

    Attributes:
        model: the trained model (holding its selected weights), evaluated once on test.
        best_val: its validation metrics at the selected epoch.
        params: parameter counts, ``{"teacher": ..., "student": ...}`` (those that apply).
        stages: per-stage training summaries (``pipelines._stage``), e.g. ``{"student": ...}``.
        objective: the KD objective the student was trained with (None: no distillation).
        extra: further fields for the record (train size, candidates kept...).
        evaluate_extra: ``fn(test split) -> record fields`` the final evaluation adds (e.g. a
            co-trained teacher's test metrics); never called for search trials.
    """

    model: object
    best_val: dict
    params: dict
    stages: dict = field(default_factory=dict)
    objective: dict | None = None
    extra: dict = field(default_factory=dict)
    evaluate_extra: Callable[[object], dict] | None = None


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class BenchMethod:
    """A registered benchmark method.

    Attributes:
        name: the ``--methods`` name.
        run: ``run(ctx: BenchRun) -> Outcome``.
        description: one line, shown in listings.
        config: ``RunConfig`` fields the method sets on top of the bench's run config
            (``student``, ``objective``, ``temperature``, ``loss_params``, ``layer_map``,
            ``student_layers``, ``student_train``...); never :data:`SHARED_FIELDS`.
        augmenter: the baselines augmenter whose candidates the built-in KD runner adds
            (None: no augmentation).
        augmenter_params: the augmenter's settings for this method (they win over the bench's
            ``augmenter_params`` for that augmenter).
        augments: whether the result depends on the augmentation budget (``variants``): a
            change of it reruns the method. Built-in methods without an augmenter say False;
            registered functions default to True, as they may draw pools.
        options: the method's own settings, read by its ``run`` function as
            ``ctx.method.options`` (e.g. a generator's alpha and T); derived methods and
            presets' ``define`` entries change them.
    """

    name: str
    run: Callable[["BenchRun"], Outcome]
    description: str = ""
    config: dict = field(default_factory=dict)
    augmenter: str | None = None
    augmenter_params: dict = field(default_factory=dict)
    augments: bool = True
    options: dict = field(default_factory=dict)

    def run_config(self, base: RunConfig) -> RunConfig:
        """``base`` with this method's settings applied."""
        return base.replace(**self.config) if self.config else base


_REGISTRY: dict[str, BenchMethod] = {}


def _check_config(name: str, config: dict) -> dict:
    shared = sorted(set(config) & set(SHARED_FIELDS))
    if shared:
        raise ConfigError(f"bench method {name!r} sets {shared}, which every method of a seed shares (the split and "
                          f"the teacher); set them for the whole bench (--teacher, --epochs, --config...) instead")
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"bench method {name!r}: unknown RunConfig field(s) {unknown}; known: {sorted(known)}")
    return dict(config)


def register(name: str, run: Callable[["BenchRun"], Outcome] | None = None, *, description: str = "",
             config: dict | None = None, augmenter: str | None = None, augmenter_params: dict | None = None,
             augments: bool = True, options: dict | None = None, overwrite: bool = False):
    """Register a bench method; usable as a decorator (``@bench.register("kd+l2a")``).

    Args:
        name: the ``--methods`` name.
        run: ``run(ctx: BenchRun) -> Outcome``; see :class:`BenchRun` for the helpers
            (``ctx.teacher()``, ``ctx.pool(...)``, ``ctx.distil(pool, keep)``).
        description: one line.
        config, augmenter, augmenter_params, augments, options: see :class:`BenchMethod`.
        overwrite: replace an existing entry.
    """
    def add(fn: Callable[["BenchRun"], Outcome]) -> Callable[["BenchRun"], Outcome]:
        if name in _REGISTRY and not overwrite:
            raise ConfigError(f"bench method {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = BenchMethod(name, fn, description, _check_config(name, config or {}), augmenter,
                                      dict(augmenter_params or {}), augments, dict(options or {}))
        return fn

    return add(run) if run is not None else add


def derive(name: str, base: str | BenchMethod, *, description: str | None = None, config: dict | None = None,
           augmenter: str | None = None, augmenter_params: dict | None = None, options: dict | None = None,
           register_it: bool = True) -> BenchMethod:
    """A method like ``base`` with other settings: ``config`` entries are merged into the
    base's, ``augmenter`` replaces it, ``augmenter_params`` and ``options`` are merged.

    With ``register_it`` (default) the method is registered under ``name``; presets build
    unregistered ones (``register_it=False``) that live only for their bench.
    """
    parent = base if isinstance(base, BenchMethod) else get(base)
    merged_config = {**parent.config, **_check_config(name, config or {})}
    if augmenter is not None and augmenter not in _augmenter_names():
        raise ConfigError(f"bench method {name!r}: unknown augmenter {augmenter!r}; "
                          f"available: {', '.join(_augmenter_names())}")
    params = dict(parent.augmenter_params) if augmenter in (None, parent.augmenter) else {}
    params.update(augmenter_params or {})
    method = dataclasses.replace(parent, name=name, description=description or f"{parent.name} with {merged_config}",
                                 config=merged_config, augmenter=augmenter or parent.augmenter,
                                 augmenter_params=params, options={**parent.options, **(options or {})},
                                 augments=parent.augments or augmenter is not None)
    if register_it:
        if name in _REGISTRY:
            raise ConfigError(f"bench method {name!r} is already registered")
        _REGISTRY[name] = method
    return method


def _load_modules() -> None:
    for module in METHOD_MODULES:
        importlib.import_module(module)


def names() -> list[str]:
    """Registered bench methods, in registration order."""
    _load_modules()
    return list(_REGISTRY)


def get(name: str) -> BenchMethod:
    """The method registered as ``name``; ConfigError listing what exists otherwise."""
    if name not in _REGISTRY:
        _load_modules()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown bench method {name!r}; available: {', '.join(_REGISTRY)} "
                          "(register your own with augrl.bench.register, and pass --import MODULE to the CLI)")
    return _REGISTRY[name]


def import_modules(modules: Iterable[str]) -> None:
    """Import user modules that register bench methods (``augrl bench --import``)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"--import {module}: cannot import it ({err}); is it on PYTHONPATH?") from None


def _augmenter_names() -> list[str]:
    from augrl import baselines

    return baselines.names()


# ----------------------------------------------------------------------------- per-seed resources


class SharedSeed:
    """What every method of one (task, shots, seed) shares: the prepared split, the fine-tuned
    teacher and the candidate pools, each made on first use and kept for the seed's methods.

    Attributes:
        cfg: the bench's run config for this task, shots and seed.
        data: the prepared split.
        teacher_info: from :func:`augrl.teachers.fine_tuned_teacher` once the teacher exists.
        wait_seconds: time spent here making shared things (excluded from the runs' own time).
    """

    def __init__(self, cfg: RunConfig, progress: bool) -> None:
        start = time.perf_counter()
        self.cfg = cfg
        self.progress = progress
        self.data: Prepared = prepare(cfg)
        self._teacher = None
        self.teacher_info: dict | None = None
        self._pools: dict[str, tuple[object, float]] = {}
        self.wait_seconds = time.perf_counter() - start

    @property
    def key(self) -> tuple:
        return self.cfg.task, self.cfg.shots, self.cfg.seed

    def teacher(self):
        if self._teacher is None:
            from augrl.teachers import fine_tuned_teacher

            start = time.perf_counter()
            self._teacher, self.teacher_info = fine_tuned_teacher(self.cfg, self.data, self.progress)
            self.wait_seconds += time.perf_counter() - start
        return self._teacher

    def pool(self, name: str, params: dict, variants: int, source_fraction: float):
        """The pool of augmenter ``name`` with ``params`` (built once), and its build seconds."""
        from augrl import baselines
        from augrl.pool import build_pool

        key = json.dumps([name, params, variants, source_fraction], sort_keys=True, default=str)
        if key not in self._pools:
            start = time.perf_counter()
            augmenter = baselines.get(name, **params).fit(self.data.task)
            pool = build_pool(self.data.task, augmenter, size=variants * len(self.data.train), variants=variants,
                              source_fraction=source_fraction, seed=self.cfg.seed)
            seconds = time.perf_counter() - start
            self._pools[key] = (pool, seconds)
            self.wait_seconds += seconds
        return self._pools[key]


@dataclass
class BenchRun:
    """One (task, shots, seed, method) run: what a method's ``run`` function works with.

    Attributes:
        method: the method's registry entry.
        cfg: the run config (the bench's, with the method's ``config`` applied).
        shared: the seed's shared split, teacher and pools.
        variants: augmentation budget: candidates per target train example.
        augmenter_params: the bench's settings per augmenter name.
        progress: show progress bars.
        max_steps: the bench's ``--max-steps`` (also caps MLM fine-tuning in augmenters).
        charged_seconds: cost of shared things this run is charged with (its pool's build
            time; ``teacher_ft``: the teacher's training).
        info: what the run used, merged into the record (``augmenter``, ``pool``, ``teacher``).
    """

    method: BenchMethod
    cfg: RunConfig
    shared: SharedSeed
    variants: int = 4
    augmenter_params: dict = field(default_factory=dict)
    progress: bool = True
    max_steps: int | None = None
    charged_seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def data(self) -> Prepared:
        return self.shared.data

    def teacher(self):
        """The seed's fine-tuned teacher (trained once, cached on disk)."""
        teacher = self.shared.teacher()
        info = self.shared.teacher_info
        self.info["teacher"] = {k: info.get(k) for k in ("cached", "train_seconds", "best_epoch", "val", "dir")}
        return teacher

    def augmenter_settings(self, name: str, params: dict | None = None) -> dict:
        """Settings of augmenter ``name`` for this run: the bench's for ``name``, then
        ``params``; MLM-based augmenters default to the run's encoder, device and progress,
        and under ``--max-steps`` to as many MLM fine-tuning steps."""
        from augrl import baselines

        accepted = baselines.parameters(name)
        settings = {**self.augmenter_params.get(name, {}), **(params or {})}
        defaults = {"mlm": self.cfg.teacher, "device": self.cfg.device, "progress": self.progress}
        if self.max_steps is not None:
            defaults.update(max_steps=self.max_steps, mlm_steps=self.max_steps)
        for key, value in defaults.items():
            if key in accepted and key not in settings:
                settings[key] = value
        return settings

    def pool(self, augmenter: str | object, source_fraction: float = 0.0, params: dict | None = None):
        """A candidate pool of ``variants`` candidates per target train example.

        Args:
            augmenter: a registered augmenter name (fitted on the task and cached for the
                seed, so methods sharing it share the pool) or a fitted augmenter object
                (e.g. L2A's generator; built each call).
            source_fraction: share of the candidates made from the source pool (see
                :func:`augrl.pool.build_pool`); the total stays ``variants * N_train``.
            params: augmenter settings (names only), over the bench's.
        """
        start = time.perf_counter()
        if isinstance(augmenter, str):
            pool, seconds = self.shared.pool(augmenter, self.augmenter_settings(augmenter, params), self.variants,
                                             source_fraction)
        else:
            from augrl.pool import build_pool

            n = len(self.data.train)
            pool = build_pool(self.data.task, augmenter, size=self.variants * n, variants=self.variants,
                              source_fraction=source_fraction, seed=self.cfg.seed)
            seconds = time.perf_counter() - start
            self.shared.wait_seconds += seconds
        self.charged_seconds += seconds
        return self.record_pool(pool, seconds)

    def record_pool(self, pool, seconds: float | None = None):
        """Record a pool the method drew itself (e.g. L2A's last one) as this run's pool:
        its augmenter, settings, size and provenance counts go into the result line."""
        meta = pool.meta
        self.info["augmenter"] = {"name": meta["augmenter"], "params": meta["augmenter_params"]}
        self.info["pool"] = {k: meta[k] for k in ("size", "target", "source", "source_fraction")}
        self.info["pool"]["seconds"] = None if seconds is None else round(seconds, 2)
        return pool

    def env_config(self, **changes):
        """The :class:`augrl.envs.AugmentKDConfig` of this run's split, teacher, student and KD
        objective (for methods that act in ``augrl/AugmentKD-v0``), with ``changes``; the
        method's ``options["env"]`` (e.g. ``{"reward": "loss", "batch_size": 16}``) win over them."""
        from augrl.envs import AugmentKDConfig

        changes = {**changes, **self.method.options.get(ENV_OPTION, {})}  # the method's own env settings win
        return AugmentKDConfig.from_run_config(self.cfg, variants=self.variants, **changes)

    def options_config(self, cls):
        """The method's ``options`` as a config dataclass ``cls`` (e.g. ``L2AConfig``,
        ``PolicyConfig``): its environment settings (``options["env"]``, read by
        :meth:`env_config`) left out, the bench's ``max_steps`` put in."""
        options = {k: v for k, v in self.method.options.items() if k not in (ENV_OPTION, "max_steps")}
        return cls.from_dict({**options, "max_steps": self.max_steps}, source=f"bench method {self.method.name}")

    def distil(self, pool=None, keep: Sequence[int] | None = None, objective: dict | None = None) -> Outcome:
        """A fresh student distilled from the seed's teacher on the target train set plus the
        kept candidates of ``pool`` (all when ``keep`` is None; no pool: plain KD)."""
        from augrl.augmented import distil_on

        teacher = self.teacher()
        out = distil_on(self.cfg, self.data, teacher, pool, keep, progress=self.progress, objective=objective)
        layer_map = out.distiller.layer_map
        return Outcome(out.student, out.fit.best_val,
                       {"teacher": models.count_parameters(teacher), "student": models.count_parameters(out.student)},
                       {"student": _stage(out.fit)}, out.distiller.objective,
                       {"train_size": out.train_size, "candidates": out.candidates, "teacher_cache_bytes": out.cache_bytes,
                        "layer_map": None if layer_map is None else str(layer_map)})


# ----------------------------------------------------------------------------- built-in methods


def _teacher_ft(ctx: BenchRun) -> Outcome:
    teacher = ctx.teacher()
    info = ctx.shared.teacher_info
    ctx.charged_seconds += info.get("train_seconds") or 0.0  # the row's cost is the teacher's training
    stage = {"best_epoch": info.get("best_epoch"), "seconds": info.get("train_seconds"), "history": info.get("history")}
    return Outcome(teacher, info["val"], {"teacher": models.count_parameters(teacher)}, {"teacher": stage})


def _student_ft(ctx: BenchRun) -> Outcome:
    student, result = train_student(ctx.cfg, ctx.data, ctx.progress)
    return Outcome(student, result.best_val, {"student": models.count_parameters(student)},
                   {"student": _stage(result)})


def _kd(ctx: BenchRun) -> Outcome:
    """KD from the seed's teacher on the target set, plus the candidates of the method's augmenter."""
    pool = ctx.pool(ctx.method.augmenter, params=ctx.method.augmenter_params) if ctx.method.augmenter else None
    return ctx.distil(pool)


TANG_OBJECTIVE = {"logit_mse": 1.0, "hard_ce": 1.0}

register("teacher_ft", _teacher_ft, description="the shared teacher, fine-tuned on the target set", augments=False)
register("student_ft", _student_ft, description="the student fine-tuned on the target set (hard label)",
         augments=False)
register("kd", _kd, description="KD without augmentation (dark knowledge T=2 + hard label)", augments=False)
for _name in AUGMENTERS:
    derive(f"kd+{_name}", "kd", description=f"KD on the target set plus {_name} candidates", augmenter=_name)
for _kind in ("bilstm", "textcnn"):
    derive(f"{_kind}+tang", "kd", description=f"{_kind} student, Tang et al.'s augmentation, logit MSE + hard label",
           config={"student": _kind, "objective": TANG_OBJECTIVE}, augmenter="tang")
derive("distilbert", "kd", description="DistilBERT: soft cross-entropy + cosine of the top hidden states",
       config={"objective": {"dark_ce": 1.0, "hidden_cos": 1.0}})
derive("pkd", "kd", description="BERT-PKD: 0.5 hard label + 0.5 dark knowledge + 100 x patient [CLS] loss",
       config={"objective": {"hard_ce": 0.5, "dark_ce": 0.5, "pkd": 100.0}})
derive("minilm", "kd", description="MiniLM: top-layer attention and value-relation KL + dark knowledge",
       config={"objective": {"minilm_relation": 1.0, "dark_ce": 1.0}})
derive("tinybert", "kd", description="TinyBERT: embedding + hidden + attention + prediction (dark knowledge)",
       config={"objective": {"embedding_mse": 1.0, "hidden_mse": 1.0, "attention_mse": 1.0, "dark_ce": 1.0}})
derive("bilstm_soft", "kd", description="BiLSTM student on the teacher's logits alone (logit MSE)",
       config={"student": "bilstm", "objective": {"logit_mse": 1.0}})


#: The distillation trainers of :mod:`augrl.kd.methods` that are bench rows of the same name.
TRAINERS = ("multi_teacher", "cotrain_isolated", "cotrain_shared_grad", "cotrain_loss_sum", "newsbert", "rco",
            "metakd")


def _trainer(ctx: BenchRun) -> Outcome:
    """The trainer ``ctx.cfg.method`` (with ``ctx.cfg.method_options``) on the seed's split, exactly
    as ``augrl distill --method NAME`` runs it; a trainer that distils from the fine-tuned teacher
    gets the seed's shared one."""
    from augrl.kd.methods import DistillContext, get_method

    spec = get_method(ctx.cfg.method)
    spec.check_student(ctx.cfg.student)
    options = spec.parse_options(ctx.cfg.method_options)
    dctx = DistillContext(ctx.cfg, ctx.data, options, [], ctx.progress, spec,
                          shared_teacher=lambda: (ctx.teacher(), ctx.shared.teacher_info))
    result = spec.run(dctx)
    extra = dict(result.extra)
    if result.distiller is not None and result.distiller.layer_map is not None:
        extra.setdefault("layer_map", str(result.distiller.layer_map))
    return Outcome(result.student, result.best_val, result.params, dctx.stages, result.objective, extra,
                   evaluate_extra=result.evaluate_teacher)


def _register_trainers() -> None:
    from augrl.kd.methods import get_method

    for name in TRAINERS:
        register(name, _trainer, description=get_method(name).description, config={"method": name},
                 augments=False)


_register_trainers()


# ----------------------------------------------------------------------------- settings and presets


@dataclass
class BenchSettings(ConfigMixin):
    """What a benchmark runs (everything but the base ``RunConfig``); presets are YAML files of it.

    Attributes:
        tasks: task names or task YAML paths.
        methods: method names, registered or defined in ``define``.
        seeds: split and training seeds (a YAML/CLI integer N means 0..N-1).
        shots: target train examples per class; several give the data-size curve.
        variants: candidates per target train example for augmented methods.
        augmenter_params: settings per augmenter name, e.g. ``{"eda": {"alpha_sr": 0.2}}``.
        define: methods derived for this bench: ``name: {base, description, config,
            augmenter, augmenter_params, options}`` (see :func:`derive`).
        description: what the preset measures.
    """

    tasks: list = field(default_factory=lambda: ["rt"])
    methods: list = field(default_factory=list)
    seeds: list = field(default_factory=lambda: [0])
    shots: list = field(default_factory=lambda: [40])
    variants: int = 4
    augmenter_params: dict = field(default_factory=dict)
    define: dict = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        self.tasks = _as_list(self.tasks, "tasks", str)
        self.methods = _as_list(self.methods, "methods", str, allow_empty=True)  # checked by resolve_methods
        self.seeds = seed_list(self.seeds)
        self.shots = _as_list(self.shots, "shots", int)
        if any(s < 1 for s in self.shots):
            raise ConfigError(f"shots must be >= 1, got {self.shots}")
        if int(self.variants) < 1:
            raise ConfigError(f"variants must be >= 1, got {self.variants}")
        self.variants = int(self.variants)
        for name, params in self.augmenter_params.items():
            if not isinstance(params, dict):
                raise ConfigError(f"augmenter_params[{name!r}] must be a mapping of setting: value")

    def resolve_methods(self) -> dict[str, BenchMethod]:
        """Each of ``methods`` as a :class:`BenchMethod`; a clear error for unknown names or
        settings, before anything runs."""
        from augrl import baselines
        from augrl.kd.losses import validate_objective

        if not self.methods:
            raise ConfigError(f"no methods to run; give --methods (available: {', '.join(names())}) or a --preset")
        defined: dict[str, BenchMethod] = {}
        for name, spec in self.define.items():
            spec = dict(spec or {})
            unknown = sorted(set(spec) - {"base", "description", "config", "augmenter", "augmenter_params", "options"})
            if unknown or "base" not in spec:
                raise ConfigError(f"define {name!r}: give base (a method) and optionally description, config, "
                                  f"augmenter, augmenter_params, options; unknown keys {unknown}")
            parent_name = spec.pop("base")
            parent = defined.get(parent_name) or get(parent_name)
            defined[name] = derive(name, parent, register_it=False, **spec)
        methods = {name: defined.get(name) or get(name) for name in self.methods}
        for augmenter in self.augmenter_params:
            if augmenter not in baselines.names():
                raise ConfigError(f"augmenter_params names an unknown augmenter {augmenter!r}; "
                                  f"available: {', '.join(baselines.names())}")
        for method in methods.values():
            if method.augmenter:
                accepted = baselines.parameters(method.augmenter)
                given = {**self.augmenter_params.get(method.augmenter, {}), **method.augmenter_params}
                unknown = sorted(set(given) - set(accepted))
                if unknown:
                    raise ConfigError(f"augmenter {method.augmenter!r} (method {method.name!r}) has no setting(s) "
                                      f"{unknown}; it takes {accepted}")
            if method.config.get("objective"):
                validate_objective(method.config["objective"])
        return methods


def _as_list(value, what: str, kind: type, allow_empty: bool = False) -> list:
    items = value.split(",") if isinstance(value, str) else (value if isinstance(value, (list, tuple)) else [value])
    try:
        out = [kind(v.strip() if isinstance(v, str) else v) for v in items if str(v).strip()]
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected a list of {kind.__name__}, got {value!r}") from None
    if not out and not allow_empty:
        raise ConfigError(f"{what}: empty")
    return out


def seed_list(value) -> list[int]:
    """Seeds from ``5`` (0..4), ``"0,3,7"`` or ``[0, 3, 7]``."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        n = int(value)
        if n < 1:
            raise ConfigError(f"--seeds N needs N >= 1, got {n}")
        return list(range(n))
    return _as_list(value, "seeds", int)


def preset_names() -> list[str]:
    """The presets shipped in ``augrl/configs`` (``augrl bench --preset NAME``)."""
    return sorted(p.name[:-5] for p in resources.files("augrl.configs").iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> BenchSettings:
    """A shipped preset by name, or a YAML file of :class:`BenchSettings`."""
    if Path(name).suffix in (".yaml", ".yml"):
        return BenchSettings.load(name)
    entry = resources.files("augrl.configs") / f"{name}.yaml"
    if not entry.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(preset_names())} (or a YAML file path)")
    with resources.as_file(entry) as path:
        return BenchSettings.load(path)


# ----------------------------------------------------------------------------- keys and resuming


def config_hash(method: BenchMethod, cfg: RunConfig, variants: int, augmenter_params: dict) -> str:
    """A digest of everything that decides a run: its full ``RunConfig`` (task, shots and seed
    included), the augmenter settings given for it, the budget when the method augments, and
    the method's own settings. The report groups seeds by :func:`augrl.report.settings_hash`."""
    if method.augmenter:
        augmenting = {method.augmenter: {**augmenter_params.get(method.augmenter, {}), **method.augmenter_params}}
    else:
        augmenting = dict(augmenter_params) if method.augments else {}
    key = {"config": cfg.to_dict(), "augmenter": augmenting, "variants": variants if method.augments else None,
           "method_config": method.config}
    if method.options:  # only when set, so the keys of methods without options stay as they were
        key["options"] = method.options
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_key(record: dict) -> tuple:
    """(task as given, method, seed, shots, config hash) of a bench record."""
    return (record.get("config", {}).get("task"), record.get("method"), record.get("seed"), record.get("shots"),
            record.get("config_hash"))


def finished_keys(path: Path) -> tuple[set[tuple], list[tuple[int, str]]]:
    """The run keys in a results file, and its unreadable lines."""
    records, bad = read_jsonl(path)
    keys = {run_key(r) for r in records if isinstance(r, dict) and r.get("command") == "bench"}
    return keys, bad


@dataclass
class PlannedRun:
    """One (task, shots, seed, method) of a bench, with its run config and its key
    (``(task, method, seed, shots, config_hash)``, as :func:`run_key` reads it from a record)."""

    task: str
    shots: int
    seed: int
    method: BenchMethod
    cfg: RunConfig
    key: tuple

    def label(self) -> str:
        return f"{self.task} {self.method.name} seed={self.seed} shots={self.shots}"


def plan_runs(settings: BenchSettings, base: RunConfig) -> list[PlannedRun]:
    """Every (task, shots, seed, method) of the bench, in running order (a seed's methods together)."""
    methods = settings.resolve_methods()
    runs = []
    for task in settings.tasks:
        for shots in settings.shots:
            for seed in settings.seeds:
                for method in methods.values():
                    runs.append(plan_run(method, base, task, shots, seed, settings))
    return runs


def plan_run(method: BenchMethod, base: RunConfig, task: str, shots: int, seed: int,
             settings: BenchSettings) -> PlannedRun:
    """One (task, shots, seed) of ``method``, registered or not (a search trial's derived method)."""
    cfg = method.run_config(base.replace(task=task, shots=shots, seed=seed))
    digest = config_hash(method, cfg, settings.variants, settings.augmenter_params)
    return PlannedRun(task, shots, seed, method, cfg, (task, method.name, seed, shots, digest))


# ----------------------------------------------------------------------------- the loop


def run_one(run: PlannedRun, shared: SharedSeed, settings: BenchSettings, progress: bool = True,
            max_steps: int | None = None, evaluate_test: bool = True) -> dict:
    """Run one planned run and return its record (not yet written).

    With ``evaluate_test`` False the model is never evaluated on the test set and the record's
    ``metrics`` hold ``val`` alone (hyperparameter search trials, :mod:`augrl.tune`)."""
    return run_outcome(run, shared, settings, progress, max_steps, evaluate_test)[0]


def run_outcome(run: PlannedRun, shared: SharedSeed, settings: BenchSettings, progress: bool = True,
                max_steps: int | None = None, evaluate_test: bool = True) -> tuple[dict, Outcome]:
    """:func:`run_one`, also handing back the method's :class:`Outcome` (its trained model)."""
    from augrl.training import evaluate

    ctx = BenchRun(run.method, run.cfg, shared, settings.variants, settings.augmenter_params, progress, max_steps)
    waited = shared.wait_seconds
    start = time.perf_counter()
    outcome = run.method.run(ctx)
    data = shared.data
    test = None
    if evaluate_test:
        test = evaluate(outcome.model, data.test, data.task.spec, data.device, run.cfg.teacher_train.eval_batch_size)
    seconds = time.perf_counter() - start - (shared.wait_seconds - waited) + ctx.charged_seconds
    record = _record("bench", run.method.name, run.cfg, data, test, outcome.best_val, outcome.params, seconds,
                     outcome.stages)
    if test is None:
        del record["metrics"]["test"]
    elif outcome.evaluate_extra is not None:
        record.update(outcome.evaluate_extra(data.test))
    record.update({"config_hash": run.key[-1], "variants": settings.variants, "augmenter": ctx.info.get("augmenter"),
                   "objective": outcome.objective, "pool": ctx.info.get("pool"), "teacher": ctx.info.get("teacher"),
                   "method_description": run.method.description, "method_options": run.method.options,
                   **outcome.extra})
    return record, outcome


# ----------------------------------------------------------------------------- claims


@dataclass
class Claim:
    """An exclusive ``flock`` held on a run's claim file while the run goes on.

    Attributes:
        path: ``DIR/claims/<digest of the run key>.claim``.
        fd: the open claim file holding the lock.
        previous: the holder recorded in the file when it was taken over from a process that
            died while running it (``{"pid", "host", "started_at", "run"}``), else None.
    """

    path: Path
    fd: int
    previous: dict | None = None


def claim_path(out: str | Path, key: tuple) -> Path:
    """The claim file of the run ``key`` in the bench folder ``out``."""
    digest = hashlib.sha1(json.dumps(list(key), default=str).encode()).hexdigest()[:16]
    return Path(out) / CLAIMS_DIR / f"{digest}.claim"


def claim_run(out: str | Path, run: PlannedRun, wait: bool = False) -> Claim | None:
    """Claim ``run`` for this process: an exclusive ``flock`` on its claim file.

    Args:
        out: the bench folder.
        run: the run to claim.
        wait: block until the holder (another process) lets go; otherwise return None at once
            when the run is held.

    Returns:
        The held :class:`Claim` (the file now names this process), or None when another live
        process holds the run. The kernel drops the lock of a process that dies, so a claim
        left by a killed process is taken over, with its old holder in ``Claim.previous``.

    Raises:
        DiskFullError: the claims folder or file cannot be created (a full disk).
    """
    path = claim_path(out, run.key)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DiskFullError(path, err, f"nothing was run for {run.label()}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(path, fd):
            break
        os.close(fd)  # the holder finished and removed the file meanwhile: claim the one at the path now
    previous = _holder(fd)  # holders remove the file before they let go: content left here is from a dead one
    _write_holder(fd, run)
    return Claim(path, fd, previous)


def release_claim(claim: Claim) -> None:
    """Remove the claim file and drop the lock (removal first, so nobody locks a removed file)."""
    try:
        os.unlink(claim.path)
    except FileNotFoundError:
        pass
    finally:
        os.close(claim.fd)


def claim_holder(out: str | Path, run: PlannedRun) -> str:
    """Who holds ``run``'s claim, in words (``pid 123 on host, since ...``), as far as the file says."""
    try:
        fd = os.open(claim_path(out, run.key), os.O_RDONLY)
    except OSError:
        return "another process"
    try:
        holder = _holder(fd)
    finally:
        os.close(fd)
    return _describe_holder(holder)


def _describe_holder(holder: dict | None) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started_at')}"


def _same_file(path: Path, fd: int) -> bool:
    try:
        here, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


def _holder(fd: int) -> dict | None:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None  # empty (a holder killed before it wrote its name) or unreadable
    return holder if isinstance(holder, dict) else None


def _write_holder(fd: int, run: PlannedRun) -> None:
    """Name this process in the claim file: for people and for the messages of other processes."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "run": run.label()}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
    except OSError:
        pass  # the lock is the claim; the name in it only makes messages clearer


# ----------------------------------------------------------------------------- the bench loop


def run_bench(settings: BenchSettings, base: RunConfig, out: str | Path, progress: bool = True,
              max_steps: int | None = None, on_record: Callable[[dict], None] | None = None,
              log: Callable[[str], None] | None = None) -> dict:
    """Run what ``out/results.jsonl`` lacks of the bench; rebuild the report after each run.

    Each run is claimed (:func:`claim_run`) before it starts: a run another live process holds
    is skipped and, when the rest is done, waited for; a claim whose holder died is taken over.

    Args:
        settings: tasks, methods, seeds, shots, budget.
        base: the run config every method starts from (teacher, training settings, device).
        out: the bench folder.
        progress: a bar over runs (rate, ETA) and the training bars, on stderr.
        max_steps: recorded cap on optimiser steps (already applied to ``base``); augmenters
            that fine-tune an MLM get it as their step cap too.
        on_record: called with each new record once it is written.
        log: where messages go (default: stderr, above the progress bar).

    Returns:
        ``{"out", "results", "planned", "skipped", "ran", "by_others", "bad_lines", "report"}``:
        ``ran`` lists the keys run now, ``by_others`` those another process on ``out``
        finished meanwhile; ``report`` is :func:`augrl.report.write_report`'s summary.
    """
    from tqdm.auto import tqdm

    from augrl.runtime import git_commit

    git_commit()  # asked (and cached) now: every line records the commit of the code this process loaded
    out = Path(out)
    path = out / RESULTS_FILE
    runs = plan_runs(settings, base)
    done, bad = finished_keys(path)

    bar = None

    def say(message: str) -> None:
        if log is not None:
            log(message)
        elif bar is not None:
            bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    for line, problem in bad:
        say(f"bench: {path}:{line}: {problem}; skipped (its run, if any, is run again)")
    todo = [r for r in runs if r.key not in done]
    say(f"bench: {len(runs)} runs planned, {len(runs) - len(todo)} already in {path}, {len(todo)} to run")
    ran: list[tuple] = []
    by_others: list[tuple] = []
    shared: SharedSeed | None = None
    bar = tqdm(total=len(todo), desc="bench", unit="run", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    current = None

    def attempt(run: PlannedRun, wait: bool) -> bool:
        """Claim and run ``run`` unless it is finished; False when another process holds it."""
        nonlocal shared
        claim = claim_run(out, run, wait=wait)
        if claim is None:
            return False
        try:
            if run.key in finished_keys(path)[0]:  # another process on this folder finished it meanwhile
                say(f"bench: {run.label()} was finished by another process; skipped")
                by_others.append(run.key)
                return True
            if claim.previous:
                say(f"bench: {run.label()}: taking over its claim from {_describe_holder(claim.previous)}, "
                    f"which no longer holds it (that process died); running it again")
            bar.set_postfix_str(run.label(), refresh=True)
            if shared is None or shared.key != (run.task, run.shots, run.seed):
                shared = None  # free the previous seed's teacher and pools first
                shared = SharedSeed(base.replace(task=run.task, shots=run.shots, seed=run.seed), progress)
            record = run_one(run, shared, settings, progress, max_steps)
            append_jsonl(path, record)
            ran.append(run.key)
        finally:
            release_claim(claim)
        if on_record is not None:
            on_record(record)
        _write_report(out, path)
        return True

    try:
        deferred = []
        for run in todo:
            current = run
            if attempt(run, wait=False):
                bar.update(1)
            else:
                say(f"bench: {run.label()} is being run by another process ({claim_holder(out, run)}); "
                    f"skipped for now, back to it once the rest is done")
                deferred.append(run)
        for run in deferred:  # finished by its holder meanwhile, or taken over if the holder died
            current = run
            if not attempt(run, wait=False):
                say(f"bench: waiting for {claim_holder(out, run)} to finish {run.label()}")
                attempt(run, wait=True)
            bar.update(1)
        current = None
    except KeyboardInterrupt:
        say(f"bench: interrupted during {current.label() if current else 'start-up'}; {len(ran)} new line(s) kept "
            f"in {path}; run the same command again to finish the remaining runs")
        raise
    finally:
        bar.close()
    report = _write_report(out, path)
    return {"out": str(out), "results": str(path), "planned": len(runs), "skipped": len(runs) - len(todo),
            "ran": [list(k) for k in ran], "by_others": [list(k) for k in by_others],
            "bad_lines": [{"line": n, "problem": p} for n, p in bad], "report": report}


def _write_report(out: Path, results: Path) -> dict:
    """Rebuild the bench's tables and plots; a full disk is a clear error that keeps the results."""
    from augrl.report import write_report

    try:
        return write_report(out, quiet=True)
    except DiskFullError:
        raise
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        target = Path(err.filename) if getattr(err, "filename", None) else out
        raise DiskFullError(target, err, f"the tables and plots of {out} could not be rebuilt; every line of "
                                         f"{results} is kept",
                            fix=f"free some space and run `augrl report {out}` (or the same bench command again: "
                                f"it resumes)") from err
