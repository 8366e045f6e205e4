"""One optimisation step of a student under a weighted KD objective."""

from __future__ import annotations

import torch
from torch import nn

from augrl.kd.cache import TeacherCache
from augrl.kd.losses import Outputs, get_loss, validate_objective


class Distiller:
    """Owns a student's optimiser and applies a weighted sum of registry losses.

    Fine-tuning is the special case ``objective={"hard_ce": 1}`` with no teacher.

    Args:
        student: a classifier returning ``.logits`` (B, C).
        objective: loss name -> weight, e.g. ``{"dark_ce": 1, "hard_ce": 1}``.
        loss_params: per-loss keyword arguments, e.g. ``{"dark_ce": {"temperature": 2}}``.
        lr, weight_decay: AdamW settings.
        total_steps, warmup_ratio: linear warm-up then linear decay to 0 over ``total_steps``
            (constant learning rate when ``total_steps`` is None).
        grad_clip: max gradient norm (None: no clipping).
        device: where the student lives.
    """

    def __init__(self, student: nn.Module, objective: dict[str, float],
                 loss_params: dict[str, dict] | None = None, lr: float = 1e-4, weight_decay: float = 0.01,
                 total_steps: int | None = None, warmup_ratio: float = 0.1, grad_clip: float | None = 1.0,
                 device: torch.device | str = "cpu") -> None:
        self.objective = validate_objective(objective)
        self.loss_params = {k: dict(v) for k, v in (loss_params or {}).items() if k in self.objective}
        self.entries = {name: get_loss(name) for name in self.objective}
        self.needs_teacher = any(e.needs_teacher for e in self.entries.values())
        self.needs = frozenset().union(*(e.needs for e in self.entries.values()))
        self.device = torch.device(device)
        self.student = student.to(self.device)
        self.grad_clip = grad_clip
        self.optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=weight_decay)
        self.scheduler = None
        if total_steps:
            warmup = max(1, int(warmup_ratio * total_steps))

            def schedule(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.steps = 0

    def student_outputs(self, batch: dict[str, torch.Tensor]) -> Outputs:
        kwargs = {}
        if "hidden_states" in self.needs:
            kwargs["output_hidden_states"] = True
        if "attentions" in self.needs:
            kwargs["output_attentions"] = True
        out = self.student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"], **kwargs)
        return Outputs(out.logits, getattr(out, "hidden_states", None), getattr(out, "attentions", None))

    def losses(self, batch: dict[str, torch.Tensor], teacher: Outputs | TeacherCache | None) -> dict[str, torch.Tensor]:
        """Each weighted term (unweighted values) and ``loss``, their weighted sum."""
        if isinstance(teacher, TeacherCache):
            teacher = teacher[batch["index"]]
        if self.needs_teacher and teacher is None:
            raise ValueError(f"objective {sorted(self.objective)} needs teacher outputs, none given")
        if teacher is not None:
            teacher = Outputs(*(None if t is None else (t.to(self.device) if torch.is_tensor(t) else
                                                        tuple(x.to(self.device) for x in t))
                                for t in (teacher.logits, teacher.hidden_states, teacher.attentions)))
        student = self.student_outputs(batch)
        terms = {name: e.fn(student, teacher, batch["labels"], **self.loss_params.get(name, {}))
                 for name, e in self.entries.items()}
        terms["loss"] = sum(self.objective[n] * v for n, v in terms.items())
        return terms

    def step(self, batch: dict[str, torch.Tensor], teacher: Outputs | TeacherCache | None = None) -> dict[str, float]:
        """Forward, backward and one optimiser step on ``batch``.

        Args:
            batch: from :meth:`augrl.batching.Encoded.batch` (needs ``index`` with a cache).
            teacher: the teacher's outputs on this batch, or the cache to look them up in.

        Returns:
            Each loss term and the total ``loss``, as floats.
        """
        self.student.train()
        terms = self.losses(batch, teacher)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.student.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps += 1
        return {k: float(v.detach()) for k, v in terms.items()}
