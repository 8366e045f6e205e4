"""``kd``: offline knowledge distillation from cached teacher outputs.

The teacher is fine-tuned on the target few-shot set (or loaded with ``--teacher-dir``) and
frozen; its outputs on the train set — logits, and the hidden states / attention maps /
value vectors of the mapped layers when the objective reads them — are computed once
(:class:`~augrl.kd.TeacherCache`) and reused every epoch. The student trains on the weighted
objective: by default dark knowledge at ``temperature`` plus the hard label (BiLSTM/TextCNN
students: Tang et al.'s logit MSE plus the hard label); L2A's full objective is
``--objective attention_mse=1,hidden_mse=1,dark_ce=1``.

The training is :func:`augrl.augmented.distil_on` without candidates: the same code as the
bench's ``kd`` row and every augmented row's final student.
"""

from __future__ import annotations

from augrl.augmented import distil_on
from augrl.kd.methods import DistillContext, MethodResult, register_method


@register_method("kd", description="offline KD from cached teacher outputs (default: dark_ce + hard_ce)")
def run_kd(ctx: DistillContext) -> MethodResult:
    teacher, trained = ctx.teacher()
    out = distil_on(ctx.cfg, ctx.data, teacher, progress=ctx.progress, objective=ctx.objective())
    ctx.record_stage("student", out.fit)
    layer_map = out.distiller.layer_map
    return MethodResult(
        out.student, out.fit.best_val, out.distiller.objective, ctx.params(teacher=teacher, student=out.student),
        evaluate_teacher=ctx.teacher_evaluation(teacher), distiller=out.distiller,
        trained_teachers={"teacher": teacher} if trained else {},
        extra={"layer_map": None if layer_map is None else str(layer_map), "teacher_cache_bytes": out.cache_bytes})
