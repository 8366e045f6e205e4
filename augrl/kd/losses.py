"""The KD loss registry: name -> loss function, extendable with :func:`register_loss`.

Every loss has the signature ``fn(student, teacher, labels, **params) -> scalar tensor`` where
``student`` and ``teacher`` are :class:`Outputs` (teacher is None for losses that need none)
and ``labels`` is (B,) class indices or float scores. A weighted objective such as
``{"dark_ce": 1.0, "hard_ce": 1.0}`` sums the named losses (see :class:`augrl.kd.Distiller`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from augrl.errors import ConfigError


@dataclass
class Outputs:
    """A model's outputs on a batch.

    Attributes:
        logits: (B, C) class logits, or (B, 1) regression predictions.
        hidden_states: per layer (embeddings first), each (B, L, H); None unless requested.
        attentions: per layer, each (B, heads, L, L); None unless requested.
    """

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class LossFn(Protocol):
    def __call__(self, student: Outputs, teacher: Outputs | None, labels: torch.Tensor, **params) -> torch.Tensor: ...


@dataclass(frozen=True)
class LossEntry:
    """A registered loss and what it needs: teacher outputs, hidden states, attention maps."""

    fn: LossFn
    needs_teacher: bool
    needs: frozenset[str]  # subset of {"hidden_states", "attentions"}


LOSSES: dict[str, LossEntry] = {}


def register_loss(name: str, fn: LossFn | None = None, *, needs_teacher: bool = True,
                  needs: tuple[str, ...] = (), overwrite: bool = False):
    """Register ``fn`` under ``name``; usable as a decorator.

    Args:
        name: the key used in objectives.
        fn: ``fn(student, teacher, labels, **params) -> scalar``.
        needs_teacher: False for losses on labels alone (``hard_ce``).
        needs: extra outputs the loss reads: ``"hidden_states"``, ``"attentions"``.
        overwrite: replace an existing entry.
    """
    def add(f: LossFn) -> LossFn:
        if name in LOSSES and not overwrite:
            raise ConfigError(f"loss {name!r} is already registered; pass overwrite=True to replace it")
        unknown = set(needs) - {"hidden_states", "attentions"}
        if unknown:
            raise ConfigError(f"loss {name!r}: unknown needs {sorted(unknown)}")
        LOSSES[name] = LossEntry(f, needs_teacher, frozenset(needs))
        return f

    return add(fn) if fn is not None else add


def get_loss(name: str) -> LossEntry:
    if name not in LOSSES:
        raise ConfigError(f"unknown KD loss {name!r}; registered: {sorted(LOSSES)}")
    return LOSSES[name]


def _same_shape(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: student shape {tuple(a.shape)} does not match teacher shape {tuple(b.shape)}")


@register_loss("dark_ce")
def dark_ce(student: Outputs, teacher: Outputs | None, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton et al.'s dark-knowledge loss on temperature-softened distributions.

    Inputs: student and teacher logits (B, C). With p = softmax(t / T), q = softmax(s / T)::

        T^2 * mean_b sum_c p_c (log p_c - log q_c)

    i.e. the soft cross-entropy -sum p log q minus the teacher's entropy, a constant: the same
    gradient, and exactly zero when the student matches the teacher. The T^2 factor keeps the
    gradient scale independent of T. Regression heads (C = 1) fall back to MSE.
    """
    s, t = student.logits, teacher.logits
    _same_shape("dark_ce", s, t)
    if s.shape[-1] == 1:
        return F.mse_loss(s, t)
    log_q = F.log_softmax(s / temperature, dim=-1)
    log_p = F.log_softmax(t / temperature, dim=-1)
    return (temperature ** 2) * F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")


@register_loss("logit_mse")
def logit_mse(student: Outputs, teacher: Outputs | None, labels: torch.Tensor) -> torch.Tensor:
    """Tang et al.'s logit regression: mean over B and C of (s - t)^2. Inputs (B, C) logits."""
    _same_shape("logit_mse", student.logits, teacher.logits)
    return F.mse_loss(student.logits, teacher.logits)


@register_loss("hard_ce", needs_teacher=False)
def hard_ce(student: Outputs, teacher: Outputs | None, labels: torch.Tensor) -> torch.Tensor:
    """Supervised loss on gold labels: cross-entropy for (B, C) logits and (B,) class indices;
    MSE for (B, 1) regression predictions and (B,) float scores."""
    s = student.logits
    if s.shape[0] != labels.shape[0]:
        raise ValueError(f"hard_ce: {s.shape[0]} predictions but {labels.shape[0]} labels")
    if s.shape[-1] == 1:
        return F.mse_loss(s.squeeze(-1), labels.float())
    return F.cross_entropy(s, labels.long())


Objective = dict[str, float]


def validate_objective(objective: dict[str, float]) -> Objective:
    """Check names and weights; drop zero weights. Raises ConfigError naming the problem."""
    if not objective:
        raise ConfigError("the KD objective is empty; give at least one loss, e.g. {'dark_ce': 1}")
    out = {}
    for name, weight in objective.items():
        get_loss(name)
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"objective weight of {name!r} must be a number, got {weight!r}") from None
        if weight < 0:
            raise ConfigError(f"objective weight of {name!r} must be >= 0, got {weight}")
        if weight > 0:
            out[name] = weight
    if not out:
        raise ConfigError("every weight in the KD objective is 0")
    return out


LossFnLike = Callable[..., torch.Tensor]
