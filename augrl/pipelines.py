"""What every run is made of: the run config (:class:`RunConfig`), the prepared split
(:func:`prepare`), the teacher's and the student's fine-tuning, the student and the distiller a
run config builds. Whole runs and their records are :mod:`augrl.methods`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from augrl import models
from augrl.batching import Encoded, encode
from augrl.sections import Composed, KDConfig, SplitConfig, StudentConfig, TeacherConfig
from augrl.errors import ConfigError
from augrl.kd.distiller import Distiller
from augrl.kd.losses import validate_objective
from augrl.runtime import seed_everything, select_device, stage
from augrl.tasks import Task, load_task
from augrl.training import FitResult, TrainConfig, fit


@dataclass
class RunConfig(Composed, KDConfig, StudentConfig, TeacherConfig, SplitConfig):
    """Everything that decides a fine-tuning or distillation run (saved with its result): the
    sections split (:class:`~augrl.sections.SplitConfig`), teacher, student and KD, whose
    fields it has under their own names (``cfg.shots``, ``cfg.teacher_train``...), and:

    Attributes:
        device: ``auto``, ``cpu``, ``cuda``...
    """

    SECTIONS: ClassVar[dict[str, type]] = {"split": SplitConfig, "teacher": TeacherConfig,
                                           "student": StudentConfig, "kd": KDConfig}

    device: str = "auto"

    def kd_objective(self, default: dict | None = None) -> dict:
        """The objective to train with: ``objective`` if set, else ``default`` (a method's own),
        else plain KD: dark_ce + hard_ce, or logit_mse + hard_ce for BiLSTM/TextCNN students."""
        if self.objective:
            return validate_objective(self.objective)
        if default:
            return dict(default)
        if self.student != "transformer":  # Tang et al.: BiLSTM/TextCNN regress the teacher's logits
            return {"logit_mse": 1.0, "hard_ce": 1.0}
        return {"dark_ce": 1.0, "hard_ce": 1.0}

    def kd_loss_params(self) -> dict:
        """``loss_params`` with the dark-knowledge temperature merged in."""
        params = {k: dict(v) for k, v in self.loss_params.items()}
        params.setdefault("dark_ce", {}).setdefault("temperature", self.temperature)
        return params

    def with_max_steps(self, max_steps: int | None) -> "RunConfig":
        """Cap both stages at ``max_steps`` optimiser steps (smoke runs)."""
        if max_steps is None:
            return self
        return dataclasses.replace(self, teacher_train=self.teacher_train.replace(max_steps=max_steps),
                                   student_train=self.student_train.replace(max_steps=max_steps))


@dataclass
class Prepared:
    """A task with its encoded splits, ready for training."""

    task: Task
    tokenizer: object
    train: Encoded
    val: Encoded
    test: Encoded
    device: torch.device


def prepare(cfg: RunConfig) -> Prepared:
    """Load the task split and tokenise it with the teacher's tokenizer; a transformer student of
    another vocabulary (e.g. a MiniLM student of an MPNet teacher) also gets its own tokenisation,
    aligned with the teacher's (:func:`augrl.models.load_tokenizers`)."""
    task = load_task(cfg.task, shots=cfg.shots, seed=cfg.seed, data_dir=cfg.data_dir, leakage=cfg.leakage)
    tokenizer = models.load_tokenizers(cfg.teacher, cfg.student_init if cfg.student == "transformer" else None)
    max_len = cfg.teacher_train.max_length
    return Prepared(task, tokenizer, *(encode(d, tokenizer, task.spec, max_len) for d in (task.train, task.val, task.test)),
                    device=select_device(cfg.device))


def _check_student_vocab(cfg: RunConfig) -> None:
    if cfg.student != "transformer" and cfg.student_init != cfg.teacher:
        raise ConfigError("bilstm/textcnn students use the teacher's tokenizer: set student_init to the teacher")


def source_sample(cfg: RunConfig, data: Prepared, per_class: int, seed_offset: int = 0,
                  needed_by: str = "a source-adapted teacher") -> tuple[Encoded, list[str]]:
    """A seeded labelled sample of the task's (leakage-filtered) source pool: ``per_class``
    examples of each class from each source domain (regression: ``2 * per_class`` per domain),
    encoded like the split. Returns the encoded sample and each example's domain name."""
    spec, source = data.task.spec, data.task.source
    if source is None or len(source) == 0:
        raise ConfigError(f"task {spec.name!r} has no source pool, which {needed_by} needs; use a task with "
                          "one (rt: SST-2, cikm: MRPC, rte: SICK, amazon-<domain>: the other domains), or give "
                          "your task YAML a `source:`")
    rng = np.random.default_rng(cfg.seed * 7919 + 104729 + seed_offset)
    labels, domains = np.asarray(source["label"]), np.asarray(source["domain"])
    chosen: list[int] = []
    for domain in sorted(set(domains.tolist())):
        in_domain = domains == domain
        groups = ([np.flatnonzero(in_domain)] if spec.is_regression else
                  [np.flatnonzero(in_domain & (labels == m)) for m in range(spec.num_labels)])
        take = 2 * per_class if spec.is_regression else per_class
        for rows in groups:
            chosen += rng.choice(rows, size=min(take, len(rows)), replace=False).tolist()
    subset = source.select(sorted(chosen))
    return encode(subset, data.tokenizer, spec, cfg.teacher_train.max_length), list(subset["domain"])


def train_teacher(cfg: RunConfig, data: Prepared, progress: bool = True, on_epoch_end=None,
                  train: Encoded | None = None) -> tuple[object, FitResult]:
    """Fine-tune the teacher on the few-shot train set (model selection on validation); with
    ``cfg.teacher_source_shots`` it is first fine-tuned on that source sample
    (:func:`source_sample`, selection on the same validation set), then on the target set.

    ``on_epoch_end(epoch, row, teacher)`` is called after each epoch (RCO records its route there);
    ``train`` replaces the target train set (e.g. a source-domain teacher). The returned
    result is the target stage's, with the source stage's summary under ``source_stage``.
    """
    with stage("teacher"):
        return _train_teacher(cfg, data, progress, on_epoch_end, train)


def _train_teacher(cfg: RunConfig, data: Prepared, progress: bool, on_epoch_end, train: Encoded | None):
    seed_everything(cfg.seed)
    teacher = models.build_teacher(data.task.spec.num_labels, cfg.teacher)
    source_result = None
    if cfg.teacher_source_shots:
        source, _ = source_sample(cfg, data, cfg.teacher_source_shots)
        source_result = fit(teacher, source, data.val, data.task.spec, cfg.teacher_train, device=data.device,
                            seed=cfg.seed, progress=progress, desc="teacher (source)")
        seed_everything(cfg.seed)
    result = fit(teacher, data.train if train is None else train, data.val, data.task.spec, cfg.teacher_train,
                 device=data.device, seed=cfg.seed, progress=progress, desc="teacher", on_epoch_end=on_epoch_end)
    if source_result is not None:
        result.earlier["source"] = {**stage_summary(source_result), "examples": len(source)}
        result.seconds += source_result.seconds
    return teacher, result


def build_distiller(cfg: RunConfig, student: torch.nn.Module, device: torch.device | str, total_steps: int | None,
                    teacher=None, objective: dict | None = None, train: TrainConfig | None = None,
                    **kwargs) -> Distiller:
    """The distiller of a run: ``objective`` (default the run's :meth:`RunConfig.kd_objective`),
    the run's loss options and layer map, and the optimiser settings of ``train`` (default
    ``cfg.student_train``) over ``total_steps`` (None: constant learning rate). ``kwargs`` go to
    :class:`~augrl.kd.Distiller` (``extra_parameters``, ``teacher_layers``, ``loss_params``...)."""
    kwargs.setdefault("loss_params", cfg.kd_loss_params())
    kwargs.setdefault("layer_map", cfg.layer_map)
    return Distiller.from_train_config(student, objective or cfg.kd_objective(), train or cfg.student_train,
                                       total_steps=total_steps, device=device, teacher=teacher, **kwargs)


def build_configured_student(cfg: RunConfig, num_labels: int):
    _check_student_vocab(cfg)
    seed_everything(cfg.seed + 1)  # the student's fresh head differs from the teacher's
    return models.build_student_of_kind(cfg.student, num_labels, cfg.student_init, num_layers=cfg.student_layers)


def train_student(cfg: RunConfig, data: Prepared, progress: bool = True) -> tuple[object, FitResult]:
    """Student-FT: fine-tune a fresh ``cfg.student`` on the few-shot train set with the hard
    label alone (model selection on validation)."""
    model = build_configured_student(cfg, data.task.spec.num_labels)
    seed_everything(cfg.seed)
    with stage("student"):
        result = fit(model, data.train, data.val, data.task.spec, cfg.student_train, device=data.device,
                     seed=cfg.seed, progress=progress, desc="student")
    return model, result


def stage_summary(result: FitResult) -> dict:
    """A training stage as result records hold it (``stages[name]``)."""
    return {"best_epoch": result.best_epoch, "steps": result.steps, "seconds": round(result.seconds, 2),
            "history": result.history}
