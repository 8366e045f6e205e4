"""Co-training: teacher and student trained together on the same batches (online KD).

The teacher starts from the pre-trained encoder (or ``--teacher-dir``) and learns from the
gold labels, ``L_T = CE(teacher, y)`` (weighted by the ``teacher_weight`` option); the student
learns the run's objective ``L_S`` (default dark_ce + hard_ce) against the teacher's outputs
on the same batch, computed live in training mode. Three variants differ in where the
student's loss may flow:

- ``cotrain_isolated``: the teacher's outputs are detached before ``L_S``; the teacher's
  gradient is exactly that of ``L_T`` (no student gradient reaches the teacher). Two
  optimisers, each with its stage's settings (``teacher_train`` / ``student_train``).
- ``cotrain_shared_grad``: ``L_S`` is not detached, so the student's soft-label loss also
  updates the teacher: its gradient is ``grad(L_T + L_S)``. Two optimisers as above.
- ``cotrain_loss_sum``: teacher and student are one model trained on ``L_T + L_S``: one
  optimiser over both (``student_train`` settings), one gradient clip over all parameters.
  Its gradients equal ``shared_grad``'s; the optimisation differs (learning rate, schedule
  and clipping are shared instead of per model).

The student's best epoch on validation is kept; the teacher ends in its final state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.kd.distiller import Distiller, make_optimizer
from augrl.kd.losses import hard_ce
from augrl.kd.methods import DistillContext, MethodResult, register_method
from augrl.kd.outputs import model_outputs
from augrl.runtime import stage
from augrl.training import TrainConfig, train_loop

MODES = ("isolated", "shared_grad", "loss_sum")


@dataclass
class CoTrainOptions(ConfigMixin):
    """Options of the co-training methods (``--option key=value``)."""

    teacher_weight: float = 1.0


class CoTrainer:
    """One joint teacher/student update per batch.

    Args:
        teacher, student: the two models (the teacher is trained too).
        mode: ``isolated``, ``shared_grad`` or ``loss_sum`` (see the module docstring).
        distiller: the student's :class:`Distiller` (objective, layer map, optimiser); for
            ``loss_sum`` it must have been built with ``extra_parameters=teacher.parameters()``.
        teacher_cfg: the teacher's optimiser settings (not used by ``loss_sum``).
        total: optimiser steps (for the teacher's schedule).
        teacher_weight: weight of ``L_T``.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, mode: str, distiller: Distiller,
                 teacher_cfg: TrainConfig, total: int, teacher_weight: float = 1.0) -> None:
        if mode not in MODES:
            raise ConfigError(f"co-training mode must be one of {MODES}, got {mode!r}")
        self.teacher, self.student, self.mode, self.distiller = teacher, student, mode, distiller
        self.teacher_weight = teacher_weight
        self.teacher_cfg = teacher_cfg
        teacher_ids = {id(p) for p in teacher.parameters()}
        in_distiller = {id(p) for p in distiller.parameters()}
        if mode == "loss_sum":
            if not teacher_ids <= in_distiller:
                raise ConfigError("cotrain_loss_sum: build the distiller with extra_parameters=teacher.parameters()")
            self.teacher_optimizer = self.teacher_scheduler = None
        else:
            self.teacher_optimizer, self.teacher_scheduler = make_optimizer(
                teacher.parameters(), teacher_cfg.lr, teacher_cfg.weight_decay, total, teacher_cfg.warmup_ratio)

    def backward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Zero the gradients, compute both losses and back-propagate (no update).

        Returns ``teacher_ce``, the student's terms, ``student_loss`` and ``loss`` (the total).
        """
        self.teacher.train()
        self.student.train()
        if self.teacher_optimizer is not None:
            self.teacher_optimizer.zero_grad(set_to_none=True)
        self.distiller.optimizer.zero_grad(set_to_none=True)
        teacher_out = model_outputs(self.teacher, batch, self.distiller.teacher_needs())
        teacher_loss = hard_ce(teacher_out, None, batch["labels"])
        soft_targets = teacher_out.detach() if self.mode == "isolated" else teacher_out
        terms = self.distiller.losses(batch, soft_targets)
        student_loss = terms.pop("loss")
        # with teacher_weight 0 the label loss is left out of the graph entirely, so an isolated
        # teacher gets no gradient at all (not a zero one that AdamW's weight decay would act on)
        total = student_loss + (self.teacher_weight * teacher_loss if self.teacher_weight else 0.0)
        total.backward()
        return {"teacher_ce": teacher_loss, **terms, "student_loss": student_loss, "loss": total}

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        terms = self.backward(batch)
        if self.teacher_optimizer is not None:
            if self.teacher_cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.teacher.parameters(), self.teacher_cfg.grad_clip)
            self.teacher_optimizer.step()
            self.teacher_scheduler.step()
        self.distiller.apply_gradients()
        return {k: float(v.detach()) for k, v in terms.items()}


def _cotrainer(mode: str):
    """The trainer of ``cotrain_<mode>``."""
    def run(ctx: DistillContext) -> MethodResult:
        teacher, _ = ctx.initial_teacher()  # trained here either way
        student = ctx.student()
        total = ctx.student_steps()
        extra = teacher.parameters() if mode == "loss_sum" else ()
        distiller = ctx.distiller(student, teacher, total, extra_parameters=extra)
        trainer = CoTrainer(teacher, student, mode, distiller, ctx.cfg.teacher_train, total,
                            ctx.options.teacher_weight)
        with stage("student"):
            result = train_loop(student, trainer.step, total, ctx.data.train, ctx.data.val, ctx.spec,
                                ctx.cfg.student_train, ctx.device, ctx.cfg.seed, ctx.progress, f"cotrain ({mode})")
        ctx.record_stage("student", result)
        return MethodResult(student, result.best_val, distiller.objective, ctx.params(teacher=teacher, student=student),
                            evaluate_teacher=ctx.teacher_evaluation(teacher), distiller=distiller,
                            trained_teachers={"teacher": teacher},
                            extra={"teacher_val": ctx.evaluate(teacher, ctx.data.val)})

    return run


DESCRIPTIONS = {"isolated": "teacher and student co-trained; no student gradient reaches the teacher",
                "shared_grad": "co-trained; the student's soft-label loss also updates the teacher",
                "loss_sum": "co-trained with one optimiser on the sum of teacher and student losses"}


def register_methods() -> None:
    """Register ``cotrain_isolated``, ``cotrain_shared_grad`` and ``cotrain_loss_sum`` (called once
    by :func:`augrl.kd.methods.get_method`)."""
    for mode in MODES:
        register_method(f"cotrain_{mode}", _cotrainer(mode), options=CoTrainOptions, description=DESCRIPTIONS[mode])
