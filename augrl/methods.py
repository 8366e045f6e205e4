"""The one method registry: every row a bench, a search trial or ``augrl distill`` / ``augrl
finetune`` can run, as ``run(ctx: BenchRun) -> Outcome``, and the one way a run becomes a result
record.

**Methods** are a registry (name -> :class:`BenchMethod`), extendable like TextBrewer's
distillers. Built in:

====================  ===================================================================
``teacher_ft``        the shared teacher, fine-tuned on the target set
``teacher_ft_source`` a source-adapted teacher: 250 source examples per class, then the target
                      set (``options.source_shots``); the other rows keep the shared teacher
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
:data:`BUILTIN_PROVIDERS`, whose ``register_methods()`` is called on first lookup.

**One run, one record.** :func:`run_method` runs a row on one split (its shared split,
teacher and pools in a :class:`SharedSeed`), evaluates the model once on the test split (the only
place a test split is read) and builds the record (:func:`build_record`) that ``distill``,
``finetune``, ``bench`` and ``tune`` write.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from augrl import models
from augrl.runtime import stage, stage_clock
from augrl.errors import ConfigError
from augrl.pipelines import Prepared, RunConfig, prepare, stage_summary, train_student
from augrl.results import provenance

#: RunConfig fields that decide the split and the teacher: the same for every method of a seed.
SHARED_FIELDS = ("task", "shots", "seed", "data_dir", "teacher", "teacher_train", "device", "leakage",
                 "teacher_source_shots")

#: augrl modules with rows of their own: each has a ``register_methods()`` that the first lookup
#: calls (explicitly: importing a module never registers anything).
BUILTIN_PROVIDERS: tuple[str, ...] = ("augrl.l2a", "augrl.policies", "augrl.selection.rows")

#: the key of a method's ``options`` holding AugmentKDConfig settings for its environment (B, reward...)
ENV_OPTION = "env"

#: the key of a method's ``options`` that makes its pool a benchmark where selection matters:
#: ``{"planted": 0.3, "planted_kinds": [...]}`` or ``{"budgeted": 3000, "augmenters": ["eda", "l2a"]}``
#: (:meth:`BenchRun.selection_pool`)
POOL_OPTION = "pool"

AUGMENTERS = ("eda", "mask", "pos", "ngram", "tang", "contextual", "cbert")


# ----------------------------------------------------------------------------- what a run returns


@dataclass
class Outcome:
    """What a method hands back; the bench evaluates ``model`` on test and writes the record.

    Attributes:
        model: the trained model (holding its selected weights), evaluated once on test.
        best_val: its validation metrics at the selected epoch.
        params: parameter counts, ``{"teacher": ..., "student": ...}`` (those that apply).
        stages: per-stage training summaries (:func:`augrl.pipelines.stage_summary`), e.g.
            ``{"student": ...}``.
        objective: the KD objective the student was trained with (None: no distillation).
        extra: further fields for the record (train size, candidates kept...).
        evaluate_extra: ``fn(test split) -> record fields`` the final evaluation adds (e.g. a
            co-trained teacher's test metrics); never called for search trials.
        distiller: the student's distiller, whose learned loss modules are saved with it.
        saved: further models trained in the run, saved beside the model under these names
            (e.g. a co-trained ``teacher``).
    """

    model: object
    best_val: dict
    params: dict
    stages: dict = field(default_factory=dict)
    objective: dict | None = None
    extra: dict = field(default_factory=dict)
    evaluate_extra: Callable[[object], dict] | None = None
    distiller: object | None = None
    saved: dict = field(default_factory=dict)


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
    base's, ``augmenter`` replaces it, ``augmenter_params`` and ``options`` are merged, one level
    deep: a nested option such as ``options["env"]`` replaces the base's whole (``kd+reinforce``'s
    ``{"episode_length": 10}`` is gone unless the new ``env`` repeats it).

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


_PROVIDED: set[str] = set()


def _load_builtins() -> None:
    """Register the rows of :data:`BUILTIN_PROVIDERS` and a row for every distillation trainer of
    :mod:`augrl.kd.methods` (users' trainers registered with ``register_method`` included)."""
    from augrl.kd.methods import method_names

    for module in BUILTIN_PROVIDERS:
        if module not in _PROVIDED:
            _PROVIDED.add(module)
            importlib.import_module(module).register_methods()
    for name in method_names():
        if name not in _REGISTRY:
            _register_trainer(name)


def names() -> list[str]:
    """Registered methods, in registration order."""
    _load_builtins()
    return list(_REGISTRY)


def get(name: str) -> BenchMethod:
    """The method registered as ``name``; ConfigError listing what exists otherwise."""
    if name not in _REGISTRY:
        _load_builtins()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(_REGISTRY)} "
                          "(register your own with augrl.methods.register, and pass --import MODULE to the CLI)")
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
        teacher_dirs: saved teachers to use instead of fine-tuning one (``--teacher-dir``; the
            first is the teacher, all of them ``multi_teacher``'s).
        teacher_info: from :func:`augrl.teachers.obtain_teacher` once the teacher exists.
        wait_seconds: time spent here making shared things (excluded from the runs' own time).
    """

    def __init__(self, cfg: RunConfig, progress: bool, teacher_dirs: Sequence[str | Path] = ()) -> None:
        start = time.perf_counter()
        self.cfg = cfg
        self.progress = progress
        self.teacher_dirs = [Path(d) for d in teacher_dirs]
        self.data: Prepared = prepare(cfg)
        self._teacher = None
        self.teacher_info: dict | None = None
        self._pools: dict[str, tuple[object, float]] = {}
        self._memo: dict[str, object] = {}
        self.wait_seconds = time.perf_counter() - start

    def memo(self, key: str, build: Callable[[], object]) -> object:
        """``build()`` once per seed for ``key`` (e.g. a world over a pool, shared by the
        selection rows); its time counts as waiting on shared things."""
        if key not in self._memo:
            start = time.perf_counter()
            self._memo[key] = build()
            self.wait_seconds += time.perf_counter() - start
        return self._memo[key]

    @property
    def key(self) -> tuple:
        return self.cfg.task, self.cfg.shots, self.cfg.seed

    @property
    def has_teacher(self) -> bool:
        """Whether the teacher was needed (and so loaded or trained) by now."""
        return self._teacher is not None

    def teacher(self):
        if self._teacher is None:
            from augrl.teachers import obtain_teacher

            start = time.perf_counter()
            given = self.teacher_dirs[0] if self.teacher_dirs else None
            self._teacher, self.teacher_info = obtain_teacher(self.cfg, self.data, given, self.progress)
            self.wait_seconds += time.perf_counter() - start
        return self._teacher

    def pool(self, name: str, params: dict, variants: int, source_fraction: float):
        """The pool of augmenter ``name`` with ``params`` (built once), and its build seconds."""
        from augrl import baselines
        from augrl.pool import stored_pool

        key = json.dumps([name, params, variants, source_fraction], sort_keys=True, default=str)
        if key not in self._pools:
            start = time.perf_counter()
            task = self.data.task
            pool, _ = stored_pool(task, name, params, variants * len(self.data.train), variants, source_fraction,
                                  self.cfg.seed, lambda: baselines.get(name, **params).fit(task))
            seconds = time.perf_counter() - start
            self._pools[key] = (pool, seconds)
            self.wait_seconds += seconds
        return self._pools[key]


def pool_settings(method: BenchMethod) -> dict:
    """``method.options["pool"]``, checked (:meth:`BenchRun.selection_pool` reads it)."""
    from augrl.planted import check_fraction, check_kinds

    options = dict(method.options.get(POOL_OPTION) or {})
    unknown = sorted(set(options) - {"planted", "planted_kinds", "budgeted", "augmenters", "other_domain"})
    if unknown:
        raise ConfigError(f"method {method.name!r}: unknown options.pool setting(s) {unknown}; use planted "
                          "(a fraction in (0, 1)) and planted_kinds, or budgeted (a size) and augmenters")
    if "planted" in options and "budgeted" in options:
        raise ConfigError(f"method {method.name!r}: options.pool sets both planted and budgeted; choose one")
    if "planted" in options:
        check_fraction(options["planted"])
        if options.get("planted_kinds"):
            check_kinds(options["planted_kinds"])
    if "budgeted" in options and not (isinstance(options["budgeted"], int) and options["budgeted"] >= 1):
        raise ConfigError(f"method {method.name!r}: options.pool.budgeted is the pool size, an integer >= 1; "
                          f"got {options['budgeted']!r}")
    return options


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
        self.note_teacher(self.shared.teacher_info)
        return teacher

    def note_teacher(self, info: dict) -> None:
        """Record the teacher this run used (from :func:`augrl.teachers.fine_tuned_teacher`'s info)."""
        self.info["teacher"] = {k: info.get(k) for k in ("cached", "train_seconds", "best_epoch", "val", "dir")}

    def augmenter_settings(self, name: str, params: dict | None = None) -> dict:
        """Settings of augmenter ``name`` for this run: the bench's for ``name``, then
        ``params``; MLM-based augmenters default to the student's encoder (``student_init``: the
        teacher's unless they differ, e.g. MiniLM under an MPNet teacher, whose sentence encoder
        has no masked-LM head to adapt), the run's device and progress, and under
        ``--max-steps`` to as many MLM fine-tuning steps."""
        from augrl import baselines

        accepted = baselines.parameters(name)
        settings = {**self.augmenter_params.get(name, {}), **(params or {})}
        defaults = {"mlm": self.cfg.student_init, "device": self.cfg.device, "progress": self.progress}
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

    def selection_pool(self):
        """The pool a selection row chooses from: the method augmenter's pool (:meth:`pool`),
        turned by ``options["pool"]`` into a benchmark where selection matters (built once per
        seed and shared by the rows with the same pool settings):

        * ``{"planted": f, "planted_kinds": [...]}``: the pool plus planted bad candidates
          (share ``f`` of the result; :func:`augrl.planted.plant`);
        * ``{"budgeted": n, "augmenters": ["eda", "l2a"]}``: a mixed pool of ``n`` candidates
          (source examples, another domain's text, the augmenters' variants of the target
          examples; :func:`augrl.planted.budgeted_pool`).
        """
        options = pool_settings(self.method)
        if "budgeted" in options:
            from augrl import baselines
            from augrl.planted import budgeted_pool

            names = list(options.get("augmenters") or ["eda", "l2a"])
            key = json.dumps(["budgeted", options, {n: self.augmenter_settings(n) for n in names}], sort_keys=True,
                             default=str)

            def build():
                fitted = {n: baselines.get(n, **self.augmenter_settings(n)).fit(self.data.task) for n in names}
                return budgeted_pool(self.data.task, int(options["budgeted"]), fitted, seed=self.cfg.seed,
                                     other_domain=options.get("other_domain"), data_dir=self.cfg.data_dir)

            pool = self.shared.memo(key, build)
            return self.record_pool(pool)
        pool = self.pool(self.method.augmenter or "eda", params=self.method.augmenter_params)
        if "planted" in options:
            from augrl.planted import PLANT_KINDS, plant

            kinds = tuple(options.get("planted_kinds") or PLANT_KINDS)
            key = json.dumps(["planted", id(pool), float(options["planted"]), kinds])
            pool = self.shared.memo(key, lambda: plant(pool, self.data.task, float(options["planted"]), kinds,
                                                       seed=self.cfg.seed))
            self.record_pool(pool)
        return pool

    def record_pool(self, pool, seconds: float | None = None):
        """Record a pool the method drew itself (e.g. L2A's last one) as this run's pool:
        its augmenter, settings, size and provenance counts go into the result line."""
        meta = pool.meta
        self.info["augmenter"] = {"name": meta.get("augmenter"), "params": meta.get("augmenter_params")}
        self.info["pool"] = {k: meta.get(k) for k in ("size", "target", "source", "source_fraction")}
        self.info["pool"]["size"] = len(pool)
        planted = getattr(pool, "planted", None)
        if planted is not None and planted.any():
            self.info["pool"]["planted"] = int(planted.sum())
        provenance = getattr(pool, "provenance", None)
        if provenance is not None and len(set(provenance)) > 1:
            self.info["pool"]["provenance"] = {k: int(v) for k, v in zip(*np.unique(provenance, return_counts=True))}
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
        :meth:`env_config`), pool settings (``options["pool"]``, :meth:`selection_pool`) and
        selection budget (``options["budget"]``, :func:`augrl.selection.rows.selection_budget`) left
        out, the bench's ``max_steps`` put in."""
        options = {k: v for k, v in self.method.options.items() if k not in (ENV_OPTION, POOL_OPTION, "budget",
                                                                             "max_steps")}
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
                       {"student": stage_summary(out.fit)}, out.distiller.objective,
                       {"train_size": out.train_size, "candidates": out.candidates, "teacher_cache_bytes": out.cache_bytes,
                        "layer_map": None if layer_map is None else str(layer_map)}, distiller=out.distiller)


# ----------------------------------------------------------------------------- built-in methods


def _teacher_outcome(teacher, info: dict) -> Outcome:
    """A Teacher-FT row's outcome: the teacher itself, selected on validation."""
    from augrl.teachers import teacher_stage

    return Outcome(teacher, info.get("val") or {}, {"teacher": models.count_parameters(teacher)},
                   {"teacher": teacher_stage(info)})


def _teacher_ft(ctx: BenchRun) -> Outcome:
    teacher = ctx.teacher()
    info = ctx.shared.teacher_info
    ctx.charged_seconds += info.get("train_seconds") or 0.0  # the row's cost is the teacher's training
    return _teacher_outcome(teacher, info)


def _teacher_ft_source(ctx: BenchRun) -> Outcome:
    """The source-adapted teacher: fine-tuned on ``options["source_shots"]`` source examples per
    class (leakage-filtered), then on the target set; cached like any teacher. The seed's shared
    teacher, which the other rows distil from, is not changed (set ``--teacher-source-shots`` for
    the whole bench to distil from a source-adapted teacher)."""
    from augrl.teachers import fine_tuned_teacher

    shots = int(ctx.method.options.get("source_shots", 0))
    if shots < 1:
        raise ConfigError(f"method {ctx.method.name!r}: options.source_shots must be an integer >= 1, got {shots}")
    start = time.perf_counter()
    teacher, info = fine_tuned_teacher(ctx.cfg.replace(teacher_source_shots=shots), ctx.data, ctx.progress)
    if info["cached"]:  # its cost is its training, whether it ran now or on an earlier bench
        ctx.charged_seconds += (info.get("train_seconds") or 0.0) - (time.perf_counter() - start)
    ctx.note_teacher(info)
    return _teacher_outcome(teacher, info)


def _student_ft(ctx: BenchRun) -> Outcome:
    student, result = train_student(ctx.cfg, ctx.data, ctx.progress)
    return Outcome(student, result.best_val, {"student": models.count_parameters(student)},
                   {"student": stage_summary(result)})


def _kd(ctx: BenchRun) -> Outcome:
    """KD from the seed's teacher on the target set, plus the candidates of the method's augmenter."""
    pool = ctx.pool(ctx.method.augmenter, params=ctx.method.augmenter_params) if ctx.method.augmenter else None
    return ctx.distil(pool)


TANG_OBJECTIVE = {"logit_mse": 1.0, "hard_ce": 1.0}

register("teacher_ft", _teacher_ft, description="the shared teacher, fine-tuned on the target set", augments=False)
register("teacher_ft_source", _teacher_ft_source, augments=False, options={"source_shots": 250},
         description="the teacher fine-tuned on 250 source examples per class, then on the target set")
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


def _trainer(ctx: BenchRun) -> Outcome:
    """The distillation trainer ``ctx.cfg.method`` of :mod:`augrl.kd.methods` (with
    ``ctx.cfg.method_options``) on the seed's split; a trainer that distils from the fine-tuned
    teacher gets the seed's shared one (or the ``--teacher-dir`` teachers)."""
    from augrl.kd.methods import DistillContext, get_method

    spec = get_method(ctx.cfg.method)
    spec.check_student(ctx.cfg.student)
    options = spec.parse_options(ctx.cfg.method_options)
    dctx = DistillContext(ctx.cfg, ctx.data, options, ctx.shared.teacher_dirs, ctx.progress, spec,
                          shared_teacher=lambda: (ctx.teacher(), ctx.shared.teacher_info))
    result = spec.run(dctx)
    extra = {"method_options": dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {},
             **result.extra}
    if result.distiller is not None and result.distiller.layer_map is not None:
        extra.setdefault("layer_map", str(result.distiller.layer_map))
    return Outcome(result.student, result.best_val, result.params, dctx.stages, result.objective, extra,
                   evaluate_extra=result.evaluate_teacher, distiller=result.distiller,
                   saved=dict(result.trained_teachers))


def _register_trainer(name: str) -> None:
    """A row running the distillation trainer ``name`` (``config={"method": name}``)."""
    from augrl.kd.methods import get_method

    register(name, _trainer, description=get_method(name).description, config={"method": name}, augments=False)


# ----------------------------------------------------------------------------- one run, one record


def build_record(command: str, method: str, cfg: RunConfig, data: Prepared, test: dict | None, val: dict,
                 params: dict, seconds: float, stages: dict, config: dict | None = None) -> dict:
    """The fields every result record starts with: the command, task, method, seed, metrics
    (``test`` only when the model was tested), parameter counts, wall time, per-stage
    summaries, the full config (``config``: the sections of a command that has more than a
    ``RunConfig``, e.g. ``augrl l2a``'s env, l2a and final-student settings), the split record,
    the device and provenance."""
    return {
        "command": command,
        "task": data.task.spec.name,
        "method": method,
        "seed": cfg.seed,
        "shots": cfg.shots,
        "metrics": {"val": val} if test is None else {"test": test, "val": val},
        "params": params,
        "wall_time_s": round(seconds, 2),
        "stages": stages,
        "config": cfg.to_dict() if config is None else config,
        "split": data.task.meta,
        "device": str(data.device),
        **provenance(),
    }


def run_in(ctx: BenchRun, command: str, evaluate_test: bool = True) -> tuple[dict, Outcome]:
    """Run ``ctx.method`` and build its record: the one place a trained model meets the test split.

    With ``evaluate_test`` False (search trials) nothing is evaluated on test and the record's
    ``metrics`` hold ``val`` alone. The run's time excludes what its seed's shared things took
    to build, plus what the run is charged with (:attr:`BenchRun.charged_seconds`).
    """
    from augrl.training import evaluate

    shared = ctx.shared
    waited = shared.wait_seconds
    start = time.perf_counter()
    with stage_clock() as timings:
        outcome = ctx.method.run(ctx)
        data = shared.data
        test, tested = None, {}
        if evaluate_test:
            with stage("evaluation"):
                test = evaluate(outcome.model, data.test, data.task.spec, data.device,
                                ctx.cfg.teacher_train.eval_batch_size)
                if outcome.evaluate_extra is not None:
                    tested = outcome.evaluate_extra(data.test)
    seconds = time.perf_counter() - start - (shared.wait_seconds - waited) + ctx.charged_seconds
    record = build_record(command, ctx.method.name, ctx.cfg, data, test, outcome.best_val, outcome.params, seconds,
                          outcome.stages)
    record.update({"variants": ctx.variants, "augmenter": ctx.info.get("augmenter"), "objective": outcome.objective,
                   "pool": ctx.info.get("pool"), "teacher": ctx.info.get("teacher"),
                   "teacher_dir": [str(d) for d in shared.teacher_dirs] if len(shared.teacher_dirs) > 1
                   else (str(shared.teacher_dirs[0]) if shared.teacher_dirs else None),
                   "method_description": ctx.method.description, "method_options": ctx.method.options,
                   "timings": timings, **outcome.extra, **tested})
    return record, outcome


def save_outcome(outcome: Outcome, shared: SharedSeed, folder: Path, flat: bool = False) -> Path:
    """Save a run's models with the split's tokenizer: ``flat``, the model itself in ``folder``
    (``finetune``: reusable with ``--teacher-dir``); else ``folder/student`` (with the learned
    loss modules, ``kd_modules.pt``) and every model the run trained beside it, the fine-tuned
    teacher included unless it was given with ``--teacher-dir``."""
    tokenizer = shared.data.tokenizer
    if flat:
        models.save_model(outcome.model, folder, tokenizer)
        return folder
    models.save_model(outcome.model, folder / "student", tokenizer)
    if outcome.distiller is not None:
        outcome.distiller.save_modules(folder / "student" / "kd_modules.pt")
    saved = dict(outcome.saved)
    if shared.has_teacher and not shared.teacher_dirs:
        saved.setdefault("teacher", shared.teacher())
    for name, model in saved.items():
        models.save_model(model, folder / name, tokenizer)
    return folder


def _save_curves(record: dict, folder: Path) -> None:
    from augrl.plots import plot_learning_curves

    metric = next(iter(record["metrics"]["test"]))
    title = f"{record['task']} {record['method']} seed {record['seed']} ({record['shots']} shots)"
    plot_learning_curves(record["stages"], metric, folder / "learning_curves.png", title)


def run_method(name: str, cfg: RunConfig, *, command: str = "distill", out_dir: str | Path | None = None,
               teacher_dirs: Sequence[str | Path] = (), progress: bool = True, variants: int = 4,
               augmenter_params: dict | None = None, max_steps: int | None = None) -> dict:
    """Run the method ``name`` once on ``cfg``'s split and return its record (``distill`` and
    ``finetune``; the bench runs many through :func:`run_in`).

    Args:
        name: a registered method (a distillation trainer, an augmentation or selection row...).
        cfg: the run (its split, teacher and training settings; the method's ``config`` on top).
        command: recorded as the record's ``command``; ``finetune`` saves the model flat.
        out_dir: where models and learning curves go (``out_dir/NAME-seedS/``); None: not saved.
        teacher_dirs: saved teachers to use instead of fine-tuning one.
        progress: progress bars on stderr.
        variants, augmenter_params: the augmentation budget and settings (augmenting rows).
        max_steps: the ``--max-steps`` cap (already applied to ``cfg``), for augmenters' MLMs.
    """
    from augrl.training import evaluate

    method = get(name)
    shared = SharedSeed(cfg, progress, teacher_dirs)
    ctx = BenchRun(method, method.run_config(cfg), shared, variants, dict(augmenter_params or {}), progress, max_steps)
    record, outcome = run_in(ctx, command)
    if "teacher_metrics" not in record and shared.has_teacher and outcome.model is not shared.teacher():
        data = shared.data
        record["teacher_metrics"] = {"test": evaluate(shared.teacher(), data.test, data.task.spec, data.device,
                                                      cfg.teacher_train.eval_batch_size)}
    if out_dir is not None:
        folder = save_outcome(outcome, shared, Path(out_dir) / f"{name}-seed{cfg.seed}", flat=command == "finetune")
        _save_curves(record, folder)
    return record


def run_finetune(cfg: RunConfig, which: str = "teacher", out_dir: str | Path | None = None,
                 progress: bool = True) -> dict:
    """Teacher-FT or Student-FT (rows ``teacher_ft`` / ``student_ft``): fine-tune on the target
    few-shot set, report test metrics; with ``out_dir`` the model is saved in
    ``out_dir/{which}_ft-seed{seed}`` (reuse a teacher with ``--teacher-dir``)."""
    if which not in ("teacher", "student"):
        raise ConfigError(f"--model must be teacher or student, got {which!r}")
    return run_method(f"{which}_ft", cfg, command="finetune", out_dir=out_dir, progress=progress)


def run_distill(cfg: RunConfig, out_dir: str | Path | None = None,
                teacher_dir: str | Path | Sequence[str | Path] | None = None, progress: bool = True,
                method: str | None = None, **kwargs) -> dict:
    """Distil with the method ``method`` (default ``cfg.method``: ``kd``, a trainer such as
    ``cotrain_isolated``, or any row such as ``kd+eda``), selecting the student's best epoch on
    validation; evaluate once on test. The record also holds the teacher's test metrics
    (``teacher_metrics``). ``teacher_dir``: saved teacher(s) to reuse (several for
    ``multi_teacher``). ``kwargs``: see :func:`run_method`."""
    dirs = [] if teacher_dir is None else ([teacher_dir] if isinstance(teacher_dir, (str, Path)) else list(teacher_dir))
    return run_method(method or cfg.method, cfg, command="distill", out_dir=out_dir, teacher_dirs=dirs,
                      progress=progress, **kwargs)
