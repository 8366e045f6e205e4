"""Distillation trainers: the methods that train a student (and often a teacher) their own way,
and what they share.

A trainer is a function ``run(ctx: DistillContext) -> MethodResult``: it gets the prepared task
and the run config, trains a student however it likes (usually through
:class:`~augrl.kd.Distiller` and :func:`augrl.training.fit` / :func:`~augrl.training.train_loop`)
and returns the student. Every trainer is a row of the one method registry
(:mod:`augrl.methods`, ``config={"method": name}``), so ``augrl distill --method NAME`` and
``augrl bench --methods NAME`` run it the same way; the registry does the rest for every row:
test evaluation, saving and the result record. Plain KD (``kd``) is the registry's own row
(:func:`augrl.augmented.distil_on`, the same code as every augmented row's student).

Built-in trainers (each in its own module, loaded on first use):

========================  =================================================================
``multi_teacher``         averaged / weighted soft targets of several teachers
``cotrain_isolated``      teacher and student trained together, no student gradient reaches the teacher
``cotrain_shared_grad``   as above, the student's soft-label loss also updates the teacher
``cotrain_loss_sum``      one optimiser on the sum of teacher and student losses
``newsbert``              shared head, momentum distillation of teacher gradients
``rco``                   route-constrained: the student follows the teacher's checkpoints
``metakd``                Meta-KD: meta-teacher over domains, weighted meta-distillation
========================  =================================================================

Register your own with :func:`register_method`; options are a ``ConfigMixin`` dataclass
filled from ``RunConfig.method_options`` (``--option key=value`` on the command line).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from augrl import models
from augrl.batching import Encoded
from augrl.errors import ConfigError
from augrl.kd.cache import TeacherCache
from augrl.kd.distiller import Distiller
from augrl.kd.outputs import Needs
from augrl.kd.stored_outputs import teacher_outputs
from augrl.pipelines import (Prepared, RunConfig, build_configured_student, build_distiller, source_sample,
                             stage_summary)
from augrl.runtime import seed_everything, stage
from augrl.training import FitResult, TrainConfig, evaluate, fit, total_steps

_BUILTIN_MODULES = ("augrl.kd.multi_teacher", "augrl.kd.cotrain", "augrl.kd.newsbert",
                    "augrl.kd.rco", "augrl.kd.metakd")


@dataclass
class MethodResult:
    """What a trainer hands back to its row in :mod:`augrl.methods`.

    Attributes:
        student: the trained student (holding its selected weights).
        best_val: the student's validation metrics at the selected epoch.
        objective: the KD objective the student was trained with (resolved weights).
        params: parameter counts, e.g. ``{"teacher": ..., "student": ...}``.
        evaluate_teacher: ``fn(split) -> record fields`` (e.g. ``{"teacher_metrics": {"test":
            metrics}}``) of the teacher(s) the student learned from; called by the final
            evaluation with the test split (a method never reads the test split itself).
        distiller: the student's distiller, whose learned loss modules are saved.
        trained_teachers: teachers trained in this run, saved under these names.
        extra: method-specific fields merged into the result record.
    """

    student: nn.Module
    best_val: dict
    objective: dict
    params: dict
    evaluate_teacher: Callable[[Encoded], dict] | None = None
    distiller: Distiller | None = None
    trained_teachers: dict[str, nn.Module] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


@dataclass
class MethodSpec:
    """A registered method: ``run``, its options class, and which students it supports."""

    name: str
    run: Callable[["DistillContext"], MethodResult]
    options: type | None = None
    description: str = ""
    students: tuple[str, ...] = models.STUDENT_KINDS
    default_objective: Callable[[RunConfig], dict | None] | None = None

    def parse_options(self, values: dict):
        if self.options is None:
            if values:
                raise ConfigError(f"method {self.name!r} takes no options, got {sorted(values)}")
            return None
        return self.options.from_dict(dict(values), source=f"options of method {self.name!r}")

    def check_student(self, kind: str) -> None:
        if kind not in self.students:
            raise ConfigError(f"method {self.name!r} needs a {' or '.join(self.students)} student, not {kind!r}")


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, run: Callable | None = None, *, options: type | None = None, description: str = "",
                    students: tuple[str, ...] = models.STUDENT_KINDS,
                    default_objective: Callable[[RunConfig], dict | None] | None = None, overwrite: bool = False):
    """Register a distillation method; usable as a decorator.

    Args:
        name: the ``--method`` name.
        run: ``run(ctx: DistillContext) -> MethodResult``.
        options: a ``ConfigMixin`` dataclass of the method's options (None: no options).
        description: one line for ``--help``.
        students: the student kinds it supports (``transformer``, ``bilstm``, ``textcnn``).
        default_objective: ``fn(cfg) -> objective or None`` used when the run sets none.
    """
    def add(fn: Callable) -> Callable:
        if name in METHODS and not overwrite:
            raise ConfigError(f"method {name!r} is already registered; pass overwrite=True to replace it")
        METHODS[name] = MethodSpec(name, fn, options, description, tuple(students), default_objective)
        return fn

    return add(run) if run is not None else add


_registered: set[str] = set()


def _load_builtins() -> None:
    """Call ``register_methods()`` of each module of :data:`_BUILTIN_MODULES`, once per module:
    registration is this explicit call, never a side effect of importing a module."""
    for module in _BUILTIN_MODULES:
        if module not in _registered:
            importlib.import_module(module).register_methods()
            _registered.add(module)


def get_method(name: str) -> MethodSpec:
    _load_builtins()
    if name not in METHODS:
        raise ConfigError(f"unknown distillation method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_names() -> list[str]:
    _load_builtins()
    return sorted(METHODS)


@dataclass
class DistillContext:
    """The run a method works in, with the helpers every method shares.

    Attributes:
        cfg: the run config.
        data: the prepared task (tokenised train / val / test, device).
        options: the method's options (its dataclass), or None.
        teacher_dirs: saved teachers given with ``--teacher-dir``.
        progress: show progress bars.
        method: the method's registry entry.
        stages: per-stage training summaries, filled by :meth:`record_stage`.
        shared_teacher: ``fn() -> (teacher, info)`` handing over the row's fine-tuned teacher
            (the seed's, from :func:`augrl.teachers.obtain_teacher`, loaded once per seed).
    """

    cfg: RunConfig
    data: Prepared
    options: object
    teacher_dirs: list[Path]
    progress: bool
    method: MethodSpec
    stages: dict = field(default_factory=dict)
    shared_teacher: Callable[[], tuple[nn.Module, dict]] | None = None

    # ------------------------------------------------------------------ configuration

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def spec(self):
        return self.data.task.spec

    def objective(self) -> dict:
        """The run's objective, else the method's default, else plain KD's."""
        default = self.method.default_objective(self.cfg) if self.method.default_objective else None
        return self.cfg.kd_objective(default)

    def loss_params(self) -> dict:
        return self.cfg.kd_loss_params()

    def record_stage(self, name: str, result: FitResult) -> None:
        self.stages[name] = stage_summary(result)

    # ------------------------------------------------------------------ models

    def teacher(self, index: int = 0) -> tuple[nn.Module, bool]:
        """The ``index``-th ``--teacher-dir`` teacher, or (index 0 without dirs) the row's shared
        teacher fine-tuned on the target train set (:attr:`shared_teacher`). Returns
        ``(teacher, not_given)``."""
        if index < len(self.teacher_dirs):
            return models.load_model(self.teacher_dirs[index]).to(self.device), False
        if index > 0:
            raise ConfigError(f"teacher {index} asked for but only {len(self.teacher_dirs)} --teacher-dir given")
        from augrl.teachers import teacher_stage

        if self.shared_teacher is None:
            raise ValueError("this DistillContext has no shared_teacher; trainers run as rows of augrl.methods")
        teacher, info = self.shared_teacher()
        self.stages["teacher"] = teacher_stage(info)
        return teacher, True

    def initial_teacher(self) -> tuple[nn.Module, bool]:
        """The teacher before any task training (for methods that train it themselves): the
        ``--teacher-dir`` model, or the pre-trained encoder with a fresh head. Returns
        ``(teacher, created_here)``."""
        if self.teacher_dirs:
            return models.load_model(self.teacher_dirs[0]).to(self.device), False
        seed_everything(self.cfg.seed)
        return models.build_teacher(self.spec.num_labels, self.cfg.teacher).to(self.device), True

    def student(self) -> nn.Module:
        return build_configured_student(self.cfg, self.spec.num_labels)

    def distiller(self, student: nn.Module, teacher: nn.Module | TeacherCache | None, total: int,
                  objective: dict | None = None, train_cfg: TrainConfig | None = None, **kwargs) -> Distiller:
        """A :class:`Distiller` for ``student`` with the run's objective, loss options, layer
        map and the student's optimiser settings over ``total`` steps."""
        return build_distiller(self.cfg, student, self.device, total, teacher, objective or self.objective(),
                               train_cfg, **kwargs)

    def student_steps(self, data: Encoded | None = None) -> int:
        return total_steps(len(data if data is not None else self.data.train), self.cfg.student_train)

    def cache(self, teacher: nn.Module, needs: Needs, data: Encoded | None = None, **kwargs) -> TeacherCache:
        """The frozen teacher's outputs over ``data`` (default the train set), computed once
        (:func:`~augrl.kd.stored_outputs.teacher_outputs`; with ``extras_fn``, a method's own
        per-example outputs, computed here every time)."""
        data = data if data is not None else self.data.train
        if kwargs:
            with stage("teacher_outputs"):
                return TeacherCache.from_model(teacher, data, needs, self.cfg.teacher_train.eval_batch_size,
                                               self.device, self.cfg.cache_dtype, **kwargs)
        return teacher_outputs(teacher, data, needs, self.cfg.teacher_train.eval_batch_size, self.device,
                               self.cfg.cache_dtype)

    def fit_student(self, student: nn.Module, distiller: Distiller, cache: TeacherCache | None,
                    weights: torch.Tensor | None = None, desc: str = "student (KD)",
                    batch_extras: dict[str, torch.Tensor] | None = None) -> FitResult:
        """Train ``student`` with ``distiller`` over the train set; recorded as stage ``student``."""
        with stage("student"):
            result = fit(student, self.data.train, self.data.val, self.spec, self.cfg.student_train, teacher=cache,
                         device=self.device, seed=self.cfg.seed, progress=self.progress, desc=desc, weights=weights,
                         distiller=distiller, batch_extras=batch_extras)
        self.record_stage("student", result)
        return result

    def evaluate(self, model: nn.Module, data: Encoded) -> dict:
        """The task's metrics of ``model`` on ``data`` (train or validation: the test split is
        read only by the final evaluation, through :meth:`teacher_evaluation`)."""
        return evaluate(model, data, self.spec, self.device, self.cfg.teacher_train.eval_batch_size)

    def teacher_evaluation(self, teacher: nn.Module) -> Callable[[Encoded], dict]:
        """A :attr:`MethodResult.evaluate_teacher` reporting ``teacher``'s metrics on a split."""
        return lambda split: {"teacher_metrics": {"test": self.evaluate(teacher, split)}}

    def params(self, **named: nn.Module) -> dict:
        return {k: models.count_parameters(m) for k, m in named.items()}

    # ------------------------------------------------------------------ data

    def source_sample(self, per_class: int | None = None, seed_offset: int = 0) -> tuple[Encoded, list[str]]:
        """A labelled sample of the task's source pool: ``per_class`` examples of each class from
        each source domain (regression: ``2 * per_class`` per domain); default the run's shots.

        Returns the encoded sample and each example's domain name (:func:`augrl.pipelines.source_sample`).
        """
        return source_sample(self.cfg, self.data, per_class or self.cfg.shots, seed_offset,
                             needed_by="this method")

    def train_domain(self) -> str:
        """The target domain's name (the ``domain`` column of the train set)."""
        names = set(self.data.task.train["domain"])
        return sorted(names)[0] if len(names) == 1 else "target"
