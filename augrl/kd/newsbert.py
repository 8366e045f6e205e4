"""``newsbert``: NewsBERT's teacher-student joint learning with momentum distillation.

Wu et al. (2021) train teacher and student together:

- the student is initialised from the teacher: its embeddings and its layers are copies of
  the teacher's embeddings and first K layers (K = ``student_layers``);
- teacher and student *share* the top: the pooler and the classification head are the same
  modules (the same tensors), updated by both models' losses;
- the teacher learns from the labels (``L_T = CE``); the student learns the run's objective
  against the teacher's (detached) outputs on the same batch;
- momentum distillation: the gradient applied to each student parameter mixes in the
  gradient of the teacher parameter it corresponds to::

      g_s <- beta * g_t + (1 - beta) * g_s

  where the corresponding teacher parameter is the one the student parameter was copied
  from (student layer i <-> teacher layer i of the first K; embeddings <-> embeddings). So the
  student also follows what the teacher learns from the labels. ``beta`` is an option
  (default 0.5).

The shared head is optimised once, in the student's optimiser, with the sum of both losses'
gradients; the teacher's optimiser holds the teacher's own (unshared) parameters. Model
selection restores the student's best epoch, shared head included, so the teacher's reported
metrics are those of its final encoder with that head.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
from torch import nn

from augrl import models
from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.kd.distiller import Distiller, make_optimizer
from augrl.kd.losses import hard_ce
from augrl.kd.methods import DistillContext, MethodResult, register_method
from augrl.kd.outputs import model_outputs
from augrl.runtime import stage
from augrl.training import TrainConfig, train_loop

SHARED_MODULES = ("classifier", "pooler")


@dataclass
class NewsBertOptions(ConfigMixin):
    """Options of ``newsbert`` (``--option key=value``)."""

    beta: float = 0.5
    teacher_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ConfigError(f"newsbert beta must be in [0, 1], got {self.beta}")


def build_shared_student(teacher: nn.Module, num_layers: int) -> nn.Module:
    """A student cut from ``teacher``: copies of its embeddings and first ``num_layers`` layers,
    sharing (not copying) the teacher's pooler and classifier modules."""
    student = models.keep_layers(copy.deepcopy(teacher), list(range(num_layers)))
    student.classifier = teacher.classifier
    if getattr(teacher.base_model, "pooler", None) is not None:
        student.base_model.pooler = teacher.base_model.pooler
    return student


def shared_parameters(student: nn.Module, teacher: nn.Module) -> list[nn.Parameter]:
    """Parameters that are the same tensors in both models."""
    teacher_ids = {id(p) for p in teacher.parameters()}
    return [p for p in student.parameters() if id(p) in teacher_ids]


def corresponding_parameters(student: nn.Module, teacher: nn.Module) -> list[tuple[str, nn.Parameter, nn.Parameter]]:
    """(student name, student parameter, teacher parameter) for every unshared student
    parameter: student layer i <-> the teacher layer it was copied from
    (``config.augrl_student_layers[i]``), other parameters (embeddings) by name."""
    origin = list(getattr(student.config, "augrl_student_layers", range(models.layer_count(student))))
    teacher_params = dict(teacher.named_parameters())
    shared = {id(p) for p in shared_parameters(student, teacher)}
    pairs = []
    for name, p in student.named_parameters():
        if id(p) in shared:
            continue
        match = re.search(r"encoder\.layer\.(\d+)\.", name)
        teacher_name = name if match is None else (
            name[:match.start(1)] + str(origin[int(match.group(1))]) + name[match.end(1):])
        if teacher_name not in teacher_params:
            raise ConfigError(f"newsbert: student parameter {name} has no teacher counterpart {teacher_name}")
        pairs.append((name, p, teacher_params[teacher_name]))
    return pairs


def momentum_gradients(pairs: list[tuple[str, nn.Parameter, nn.Parameter]], beta: float) -> None:
    """In place, for each pair: ``student.grad = beta * teacher.grad + (1 - beta) * student.grad``
    (a missing gradient counts as zero)."""
    for _, p_s, p_t in pairs:
        g_t = p_t.grad if p_t.grad is not None else torch.zeros_like(p_s)
        g_s = p_s.grad if p_s.grad is not None else torch.zeros_like(p_s)
        p_s.grad = beta * g_t + (1.0 - beta) * g_s


class NewsBertTrainer:
    """One joint NewsBERT update per batch.

    Args:
        teacher: the teacher (trained on the labels).
        student: from :func:`build_shared_student` (shares the head with ``teacher``).
        distiller: the student's :class:`Distiller` (its optimiser holds the shared head).
        beta: momentum of the teacher's gradient in the student's update.
        teacher_cfg: the teacher's optimiser settings; ``total``: steps for its schedule.
        teacher_weight: weight of ``L_T``.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, distiller: Distiller, beta: float,
                 teacher_cfg: TrainConfig, total: int, teacher_weight: float = 1.0) -> None:
        self.teacher, self.student, self.distiller = teacher, student, distiller
        self.beta, self.teacher_weight, self.teacher_cfg = beta, teacher_weight, teacher_cfg
        self.shared = shared_parameters(student, teacher)
        if not self.shared:
            raise ConfigError("newsbert: teacher and student share no parameters; use build_shared_student")
        self.pairs = corresponding_parameters(student, teacher)
        shared_ids = {id(p) for p in self.shared}
        self.teacher_own = [p for p in teacher.parameters() if id(p) not in shared_ids]
        self.teacher_optimizer, self.teacher_scheduler = make_optimizer(
            self.teacher_own, teacher_cfg.lr, teacher_cfg.weight_decay, total, teacher_cfg.warmup_ratio)

    def backward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Zero gradients, back-propagate ``teacher_weight * L_T + L_S`` and mix the student's
        gradients with the teacher's (no update)."""
        self.teacher.train()
        self.student.train()
        self.teacher_optimizer.zero_grad(set_to_none=True)
        self.distiller.optimizer.zero_grad(set_to_none=True)
        teacher_out = model_outputs(self.teacher, batch, self.distiller.teacher_needs())
        teacher_loss = hard_ce(teacher_out, None, batch["labels"])
        terms = self.distiller.losses(batch, teacher_out.detach())
        student_loss = terms.pop("loss")
        total = student_loss + (self.teacher_weight * teacher_loss if self.teacher_weight else 0.0)
        total.backward()
        momentum_gradients(self.pairs, self.beta)
        return {"teacher_ce": teacher_loss, **terms, "student_loss": student_loss, "loss": total}

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        terms = self.backward(batch)
        if self.teacher_cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.teacher_own, self.teacher_cfg.grad_clip)
        self.teacher_optimizer.step()
        self.teacher_scheduler.step()
        self.distiller.apply_gradients()
        return {k: float(v.detach()) for k, v in terms.items()}


def run_newsbert(ctx: DistillContext) -> MethodResult:
    teacher, _ = ctx.initial_teacher()
    student = build_shared_student(teacher, ctx.cfg.student_layers).to(ctx.device)
    total = ctx.student_steps()
    distiller = ctx.distiller(student, teacher, total)
    trainer = NewsBertTrainer(teacher, student, distiller, ctx.options.beta, ctx.cfg.teacher_train, total,
                              ctx.options.teacher_weight)
    with stage("student"):
        result = train_loop(student, trainer.step, total, ctx.data.train, ctx.data.val, ctx.spec, ctx.cfg.student_train,
                            ctx.device, ctx.cfg.seed, ctx.progress, "newsbert")
    ctx.record_stage("student", result)
    return MethodResult(student, result.best_val, distiller.objective, ctx.params(teacher=teacher, student=student),
                        evaluate_teacher=ctx.teacher_evaluation(teacher), distiller=distiller,
                        trained_teachers={"teacher": teacher},
                        extra={"shared_parameters": sum(p.numel() for p in trainer.shared),
                               "momentum_pairs": len(trainer.pairs)})


def register_methods() -> None:
    """Register ``newsbert`` (called once by :func:`augrl.kd.methods.get_method`)."""
    register_method("newsbert", run_newsbert, options=NewsBertOptions, students=("transformer",),
                    description="NewsBERT: shared head, student follows beta * g_teacher + (1 - beta) * g_student")
