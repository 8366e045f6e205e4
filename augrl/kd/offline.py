"""``kd``: offline knowledge distillation from cached teacher outputs.

The teacher is fine-tuned on the target few-shot set (or loaded with ``--teacher-dir``) and
frozen; its outputs on the train set — logits, and the hidden states / attention maps /
value vectors of the mapped layers when the objective reads them — are computed once
(:class:`~augrl.kd.TeacherCache`) and reused every epoch. The student trains on the weighted
objective: by default dark knowledge at ``temperature`` plus the hard label (BiLSTM/TextCNN
students: Tang et al.'s logit MSE plus the hard label); L2A's full objective is
``--objective attention_mse=1,hidden_mse=1,dark_ce=1``.
"""

from __future__ import annotations

from augrl.kd.methods import DistillContext, MethodResult, register_method


@register_method("kd", description="offline KD from cached teacher outputs (default: dark_ce + hard_ce)")
def run_kd(ctx: DistillContext) -> MethodResult:
    teacher, trained = ctx.teacher()
    student = ctx.student()
    distiller = ctx.distiller(student, teacher, ctx.student_steps())
    cache = ctx.cache(teacher, distiller.teacher_needs())
    result = ctx.fit_student(student, distiller, cache)
    return MethodResult(
        student, result.best_val, distiller.objective, ctx.params(teacher=teacher, student=student),
        teacher_metrics={"test": ctx.evaluate(teacher)}, distiller=distiller,
        trained_teachers={"teacher": teacher} if trained else {},
        extra={"layer_map": None if distiller.layer_map is None else str(distiller.layer_map),
               "teacher_cache_bytes": cache.nbytes})
