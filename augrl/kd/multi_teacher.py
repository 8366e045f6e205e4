"""``multi_teacher``: distil several teachers at once through averaged or weighted soft targets.

Teachers come from ``--teacher-dir`` (repeat it, or comma-separate: checkpoints, models
fine-tuned on other domains...) or, without it, are fine-tuned here, one per entry of the
``teachers`` option:

- ``target``: on the target few-shot train set;
- ``source``: on a labelled sample of the whole source pool (``source_shots`` per class and
  domain, default the run's shots);
- ``domain:NAME``: on that sample's rows of one source domain (e.g. ``domain:dvd``);
- ``target+source``: on both.

Each is selected on the target validation set. Every teacher's outputs on the train set are
computed once and combined into one cache, so the student trains exactly like ``kd``:

- ``combine=prob``: the weighted mean of the teachers' temperature-T distributions,
  ``p = sum_k w_k softmax(z_k / T)``, stored as logits ``T log p`` so that ``dark_ce`` at T
  sees exactly p;
- ``combine=logit``: the weighted mean of the logits (what ``logit_mse`` regresses);
- ``combine=auto`` (default): ``logit`` when the objective has ``logit_mse`` but no
  ``dark_ce``, else ``prob``.

Weights: ``uniform`` (default), ``val`` (proportional to each teacher's validation metric on
the target), or an explicit list. Layer losses are refused: the teachers' hidden states do
not average into one meaningful teacher.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from augrl.batching import Encoded, predict
from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.kd.cache import TeacherCache
from augrl.kd.losses import get_loss
from augrl.kd.methods import DistillContext, MethodResult, register_method
from augrl.metrics import compute_metrics
from augrl.models import count_parameters
from augrl.teachers import fine_tuned_teacher, teacher_stage


@dataclass
class MultiTeacherOptions(ConfigMixin):
    """Options of ``multi_teacher`` (``--option key=value``)."""

    teachers: list = field(default_factory=lambda: ["target", "source"])
    weights: object = "uniform"
    combine: str = "auto"
    source_shots: int | None = None

    def __post_init__(self) -> None:
        if self.combine not in ("auto", "prob", "logit"):
            raise ConfigError(f"multi_teacher combine must be auto, prob or logit, got {self.combine!r}")
        if isinstance(self.weights, str) and self.weights not in ("uniform", "val"):
            raise ConfigError(f"multi_teacher weights must be uniform, val or a list, got {self.weights!r}")


def combine_logits(logits: list[torch.Tensor], weights: torch.Tensor, mode: str, temperature: float) -> torch.Tensor:
    """One teacher's worth of logits from K teachers.

    Args:
        logits: K tensors (N, C).
        weights: (K,) non-negative, normalised here to sum to 1.
        mode: ``prob`` (``T log sum_k w_k softmax(z_k / T)``) or ``logit`` (``sum_k w_k z_k``);
            regression (C = 1) always averages.
        temperature: T of ``prob``.
    """
    w = weights.float() / weights.float().sum()
    stacked = torch.stack([z.float() for z in logits])  # (K, N, C)
    if mode == "logit" or stacked.shape[-1] == 1:
        return (w[:, None, None] * stacked).sum(0)
    probs = (w[:, None, None] * torch.softmax(stacked / temperature, dim=-1)).sum(0)
    return temperature * torch.log(probs.clamp(min=1e-12))


def _teacher_train_set(ctx: DistillContext, kind: str, source: tuple[Encoded, list[str]] | None) -> Encoded:
    if kind == "target":
        return ctx.data.train
    enc, domains = source
    if kind == "source":
        return enc
    if kind == "target+source":
        return Encoded.concat([ctx.data.train, enc])
    if kind.startswith("domain:"):
        name = kind.split(":", 1)[1]
        rows = [i for i, d in enumerate(domains) if d == name]
        if not rows:
            raise ConfigError(f"multi_teacher: no source domain {name!r}; the source has {sorted(set(domains))}")
        return enc.subset(rows)
    raise ConfigError(f"multi_teacher teacher {kind!r}: use target, source, target+source or domain:NAME")


def run_multi_teacher(ctx: DistillContext) -> MethodResult:
    opts: MultiTeacherOptions = ctx.options
    objective = ctx.objective()
    layered = [name for name in objective if get_loss(name).needs]
    if layered:
        raise ConfigError(f"multi_teacher distils soft targets only; {layered} read layers")
    student = ctx.student()
    distiller = ctx.distiller(student, None, ctx.student_steps(), objective=objective)
    teachers, names, trained = [], [], {}
    if ctx.teacher_dirs:
        for i, d in enumerate(ctx.teacher_dirs):
            teachers.append(ctx.teacher(i)[0])
            names.append(str(d))
    else:
        needs_source = any(k != "target" for k in opts.teachers)
        source = ctx.source_sample(opts.source_shots) if needs_source else None
        for i, kind in enumerate(opts.teachers):
            cfg_i = ctx.cfg.replace(seed=ctx.cfg.seed + i)  # distinct heads and batch orders
            teacher, info = fine_tuned_teacher(cfg_i, ctx.data, ctx.progress, train=_teacher_train_set(ctx, kind, source))
            ctx.stages[f"teacher_{i}_{kind}"] = teacher_stage(info)
            teachers.append(teacher)
            names.append(kind)
            trained[f"teacher_{i}"] = teacher
    if len(teachers) < 2:
        raise ConfigError("multi_teacher needs at least two teachers")
    spec = ctx.spec
    val = [compute_metrics(predict(t, ctx.data.val, device=ctx.device).numpy(), ctx.data.val.labels.numpy(),
                           spec.num_labels)[spec.metric] for t in teachers]
    if opts.weights == "uniform":
        weights = torch.ones(len(teachers))
    elif opts.weights == "val":
        weights = torch.tensor(val).clamp(min=1e-6)
    else:
        weights = torch.tensor([float(w) for w in opts.weights])
        if len(weights) != len(teachers) or (weights < 0).any() or weights.sum() <= 0:
            raise ConfigError(f"multi_teacher weights {opts.weights} must be {len(teachers)} non-negative numbers")
    mode = opts.combine
    if mode == "auto":
        mode = "logit" if "logit_mse" in objective and "dark_ce" not in objective else "prob"
    temperature = ctx.loss_params().get("dark_ce", {}).get("temperature", ctx.cfg.temperature)
    caches = [ctx.cache(t, distiller.teacher_needs()) for t in teachers]
    cache = TeacherCache(combine_logits([c.logits for c in caches], weights, mode, temperature))
    result = ctx.fit_student(student, distiller, cache)

    def evaluate_teachers(split) -> dict:
        logits = [predict(t, split, device=ctx.device) for t in teachers]
        labels = split.labels.numpy()
        per_teacher = [{"teacher": n, "weight": float(w / weights.sum()), f"val_{spec.metric}": v,
                        "test": compute_metrics(z.numpy(), labels, spec.num_labels)}
                       for n, w, v, z in zip(names, weights, val, logits)]
        ensemble = compute_metrics(combine_logits(logits, weights, mode, temperature).numpy(), labels,
                                   spec.num_labels)
        return {"teacher_metrics": {"test": ensemble}, "teachers": per_teacher}

    params = {"student": count_parameters(student), "teachers": [count_parameters(t) for t in teachers]}
    params["teacher"] = max(params["teachers"])
    return MethodResult(student, result.best_val, distiller.objective, params, evaluate_teacher=evaluate_teachers,
                        distiller=distiller, trained_teachers=trained, extra={"combine": mode})


def register_methods() -> None:
    """Register ``multi_teacher`` (called once by :func:`augrl.kd.methods.get_method`)."""
    register_method("multi_teacher", run_multi_teacher, options=MultiTeacherOptions,
                    description="several teachers' soft targets, averaged or weighted")
