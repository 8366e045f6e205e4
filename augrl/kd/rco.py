"""``rco``: route-constrained optimisation (Jin et al., 2019).

A converged teacher is a hard target for a small student; the route the teacher took to get
there is easier to follow. The teacher is fine-tuned here (it must be: its route is recorded)
and its outputs on the train set are cached at ``anchors - 1`` intermediate epochs, evenly
spread over its training, plus once for the final (selected) teacher. The student then
distils from these anchors in order, easy to hard: its ``total`` steps are split into equal
stages, stage j using anchor j's cached outputs, with one optimiser (and one set of learned
loss projections) throughout. The student's best epoch on validation is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from transformers import AutoConfig

from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.kd.cache import TeacherCache
from augrl.kd.methods import DistillContext, MethodResult, register_method
from augrl.models import loading, resolve_model
from augrl.pipelines import train_teacher
from augrl.runtime import stage
from augrl.training import total_steps, train_loop


@dataclass
class RcoOptions(ConfigMixin):
    """Options of ``rco`` (``--option key=value``)."""

    anchors: int = 3

    def __post_init__(self) -> None:
        if self.anchors < 1:
            raise ConfigError(f"rco needs at least one anchor, got {self.anchors}")


def anchor_epochs(epochs: int, anchors: int) -> list[int]:
    """Intermediate teacher epochs to snapshot: ``anchors - 1`` evenly spread over
    ``1 .. epochs - 1`` (the final teacher is the last anchor). Fewer when epochs are few."""
    if anchors <= 1 or epochs <= 1:
        return []
    return sorted({min(epochs - 1, max(1, round(epochs * k / anchors))) for k in range(1, anchors)})


def stage_of(step: int, total: int, stages: int) -> int:
    """The anchor (0-based) that student step ``step`` (0-based) of ``total`` distils from."""
    return min(stages - 1, step * stages // max(1, total))


def run_rco(ctx: DistillContext) -> MethodResult:
    if ctx.teacher_dirs:
        raise ConfigError("rco fine-tunes its own teacher to record its route; drop --teacher-dir")
    cfg = ctx.cfg
    # the distiller decides which teacher layers the anchors' caches hold: give it the
    # teacher's shape from its config (the teacher itself is built by train_teacher)
    with loading(cfg.teacher):
        shape = AutoConfig.from_pretrained(resolve_model(cfg.teacher))
    student = ctx.student()
    total = ctx.student_steps()
    distiller = ctx.distiller(student, None, total, teacher_layers=shape.num_hidden_layers,
                              teacher_hidden_size=shape.hidden_size)
    teacher_total = total_steps(len(ctx.data.train), cfg.teacher_train)
    epochs = math.ceil(teacher_total / math.ceil(len(ctx.data.train) / cfg.teacher_train.batch_size))
    wanted = set(anchor_epochs(epochs, ctx.options.anchors))
    route: list[dict] = []
    caches: list[TeacherCache] = []

    def snapshot(epoch: int, row: dict, teacher) -> None:
        if epoch in wanted:
            caches.append(ctx.cache(teacher, distiller.teacher_needs()))
            route.append({"epoch": epoch, f"val_{ctx.spec.metric}": row[f"val_{ctx.spec.metric}"]})

    teacher, fit_result = train_teacher(cfg, ctx.data, ctx.progress, on_epoch_end=snapshot)
    ctx.record_stage("teacher", fit_result)
    caches.append(ctx.cache(teacher, distiller.teacher_needs()))
    route.append({"epoch": "final", "best_epoch": fit_result.best_epoch,
                  f"val_{ctx.spec.metric}": fit_result.best_val[ctx.spec.metric]})

    def step(batch: dict) -> dict:
        anchor = stage_of(distiller.steps, total, len(caches))
        return {**distiller.step(batch, caches[anchor]), "anchor": float(anchor)}

    with stage("student"):
        result = train_loop(student, step, total, ctx.data.train, ctx.data.val, ctx.spec, cfg.student_train, ctx.device,
                            cfg.seed, ctx.progress, "student (RCO)")
    ctx.record_stage("student", result)
    return MethodResult(student, result.best_val, distiller.objective, ctx.params(teacher=teacher, student=student),
                        evaluate_teacher=ctx.teacher_evaluation(teacher), distiller=distiller,
                        trained_teachers={"teacher": teacher}, extra={"route": route})


def register_methods() -> None:
    """Register ``rco`` (called once by :func:`augrl.kd.methods.get_method`)."""
    register_method("rco", run_rco, options=RcoOptions,
                    description="route-constrained KD: the student follows the teacher's checkpoints")
