"""Selection baselines: rankers that give every candidate of a pool a keep-score, and a budget.

A learned selector (the L2A REINFORCE selector, an SB3 policy acting in
:class:`~augrl.envs.AugmentKDEnv`) is judged against these at equal size: each ranker scores
the N candidates of a :class:`~augrl.envs.world.KDWorld` (higher = keep), and a fixed budget
keeps the top ``k = budget_size(N, budget)`` (:func:`select`)::

    from augrl.selection import get_ranker, select

    kept = select(world, get_ranker("teacher_student_kl", prefer="high"), budget=0.25, student=env.student)

The registry works like TextBrewer's: :func:`register_ranker` adds a class under a name,
:func:`get_ranker` builds one with its parameters, :func:`ranker_names` lists them.

Built-in rankers (this module, and :mod:`augrl.selection.influence`):

============================  ==========================================================
``random``                    seeded uniform scores (the random-kept control)
``keep_all``                  all scores equal (budget 1.0 keeps the whole pool)
``teacher_confidence``        the teacher's probability of the inherited label
``teacher_student_kl``        KL(teacher || student) on the candidate
``val_similarity``            closeness of the candidate to the reward's validation set
``influence``                 one-step look-ahead influence on the validation KD objective
============================  ==========================================================

Shapes: a world has N candidates, rows ``0 .. N-1`` of ``world.encoded`` and ``world.cache``;
V validation examples (``world.val``); C outputs per example (C = 1: regression); H the
teacher's hidden width. Every ranker returns ``scores`` as a float64 ``np.ndarray`` of shape
(N,).
"""

from __future__ import annotations

import abc
import inspect
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from augrl.batching import predict
from augrl.config import build_with_params
from augrl.errors import ConfigError

if TYPE_CHECKING:  # the environment package imports gymnasium; only annotations need it here
    from augrl.envs.world import KDWorld

# ----------------------------------------------------------------------------- budgets and top-k


def budget_size(n: int, budget: float) -> int:
    """How many of ``n`` candidates a budget keeps: ``round(budget * n)`` (Python's round, half
    to even), at least 1.

    Raises:
        ConfigError: ``budget`` outside (0, 1].
        ValueError: ``n < 1`` (nothing to keep).
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)) \
            or not 0.0 < float(budget) <= 1.0:
        raise ConfigError(f"budget must be a fraction of the pool in (0, 1], got {budget!r}")
    if int(n) < 1:
        raise ValueError(f"a budget needs at least one candidate, the pool has {n}")
    return min(int(n), max(1, int(round(float(budget) * int(n)))))


def top_k(scores: np.ndarray, k: int, seed: int) -> list[int]:
    """The indices of the ``k`` highest ``scores`` (N,), in increasing order.

    Ties are broken by a random order drawn from ``seed``: the same seed picks the same tied
    candidates, another seed may pick others (so ``keep_all`` at a budget below 1 is a seeded
    random subset).

    Raises:
        ValueError: ``scores`` not one-dimensional or holding NaN, ``k`` outside [0, N].
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be one score per candidate, shape (N,), got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} of {len(s)} scores are NaN")
    if not 0 <= int(k) <= len(s):
        raise ValueError(f"k must be in [0, {len(s)}], got {k}")
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, 17]).permutation(len(s))
    order = order[np.argsort(-s[order], kind="stable")]  # stable: tied scores keep the random order
    return sorted(int(i) for i in order[: int(k)])


# ----------------------------------------------------------------------------- the registry


class Ranker(abc.ABC):
    """Gives every candidate of a world's pool a keep-score (higher = keep).

    Subclasses set :attr:`name` (:func:`register_ranker` does) and implement :meth:`scores`.
    Constructor arguments are the ranker's parameters (``get_ranker(name, **params)``), kept in
    :attr:`params` for result records.
    """

    name: ClassVar[str] = ""

    def __init__(self, **params) -> None:
        self.params = dict(params)

    @abc.abstractmethod
    def scores(self, world: "KDWorld", student: nn.Module | None = None) -> np.ndarray:
        """(N,) float64 keep-scores of the world's candidates.

        Args:
            world: the environment's static world.
            student: the student at some training state (e.g. the env's student after warm-up),
                left as it was; None: ``world.new_student()``, the initial weights.
        """

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


RANKERS: dict[str, type[Ranker]] = {}


def register_ranker(name: str, cls: type[Ranker] | None = None, overwrite: bool = False):
    """Register a :class:`Ranker` subclass under ``name`` (sets its :attr:`Ranker.name`).

    Usable as a decorator (``@register_ranker("mine")``) or a call (``register_ranker("mine", Mine)``).

    Raises:
        ConfigError: the name is taken (pass ``overwrite=True`` to replace it).
        TypeError: ``cls`` is not a Ranker subclass.
    """

    def add(c: type[Ranker]) -> type[Ranker]:
        if not (isinstance(c, type) and issubclass(c, Ranker)):
            raise TypeError(f"register_ranker({name!r}) takes a Ranker subclass, got {c!r}")
        if name in RANKERS and RANKERS[name] is not c and not overwrite:
            raise ConfigError(f"ranker {name!r} is already registered; pass overwrite=True to replace it")
        c.name = name
        RANKERS[name] = c
        return c

    return add if cls is None else add(cls)


def ranker_names() -> list[str]:
    """The registered ranker names, sorted."""
    return sorted(RANKERS)


def ranker_parameters(name: str) -> list[str]:
    """The parameters the ranker ``name`` takes."""
    return [p for p in inspect.signature(_ranker_class(name)).parameters if p != "self"]


def _ranker_class(name: str) -> type[Ranker]:
    if name not in RANKERS:
        raise ConfigError(f"unknown ranker {name!r}; registered: {', '.join(ranker_names())}")
    return RANKERS[name]


def get_ranker(name: str, **params) -> Ranker:
    """A new ranker ``name`` built with ``params``.

    Raises:
        ConfigError: unknown name (the message lists the registered ones), a parameter the
            ranker does not take, or a bad value.
    """
    cls = _ranker_class(name)
    return build_with_params(f"ranker {name!r}", cls, params)


def select(world: "KDWorld", ranker: Ranker | str, budget: float, student: nn.Module | None = None,
           seed: int = 0) -> list[int]:
    """The pool indices a ranker keeps under a budget: the top ``budget_size(N, budget)`` of its
    scores (ties broken with ``seed``), sorted (:func:`select_scores` without the scores)."""
    return select_scores(world, ranker, budget, student, seed)[0]


def select_scores(world: "KDWorld", ranker: Ranker | str, budget: float, student: nn.Module | None = None,
                  seed: int = 0) -> tuple[list[int], np.ndarray]:
    """The pool indices a ranker keeps under a budget and its (N,) scores.

    Args:
        world: the world whose N candidates are ranked.
        ranker: a :class:`Ranker`, or a registered name (built with its defaults).
        budget: the fraction of the pool to keep, in (0, 1].
        student: passed to :meth:`Ranker.scores`.
        seed: tie-breaking seed.
    """
    k = budget_size(world.num_candidates, budget)
    if isinstance(ranker, str):
        ranker = get_ranker(ranker)
    s = np.asarray(ranker.scores(world, student))
    if s.shape != (world.num_candidates,):
        raise ValueError(f"ranker {ranker.name!r} returned scores of shape {s.shape} for "
                         f"{world.num_candidates} candidates")
    return top_k(s, k, seed), s


# ----------------------------------------------------------------------------- shared pieces


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def eval_batch_size(world: "KDWorld") -> int:
    """Examples per forward pass for the rankers' batched passes (the teacher's eval batch size)."""
    return int(world.config.run_config().teacher_train.eval_batch_size)


def as_fp32(student: nn.Module) -> nn.Module:
    """``student`` itself when all its floating parameters are float32, else a float32 copy."""
    if all(p.dtype == torch.float32 for p in student.parameters() if p.is_floating_point()):
        return student
    import copy

    return copy.deepcopy(student).float()


def divergence(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """(B,) per-example KL(teacher || student) of the softmax distributions at temperature 1,
    from (B, C) logits; regression (C = 1): the squared difference of the predictions.

    Differentiable in ``student_logits`` (the influence ranker's validation objective)."""
    s = student_logits.float()
    t = teacher_logits.to(s.device).float()
    if s.shape != t.shape:
        raise ValueError(f"student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} differ in shape")
    if s.shape[-1] == 1:
        return (s[:, 0] - t[:, 0]) ** 2
    log_p = F.log_softmax(t, dim=-1)
    return (log_p.exp() * (log_p - F.log_softmax(s, dim=-1))).sum(-1)


def candidate_logits(world: "KDWorld", student: nn.Module) -> torch.Tensor:
    """(N, C) float32 outputs of ``student`` on the candidates, in eval mode (dropout off), no
    autocast; the student's train/eval mode is restored."""
    model = as_fp32(student)
    n = world.num_candidates
    device = world.data.device
    with torch.autocast(torch.device(device).type, enabled=False):
        return predict(model, world.encoded.subset(range(n)), eval_batch_size(world), device).float()


# ----------------------------------------------------------------------------- simple rankers


@register_ranker("random")
class RandomRanker(Ranker):
    """Uniform scores in [0, 1) from ``seed``: the random-kept control at any budget.

    Shapes: none read; returns (N,). The student is not used."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed=int(seed))
        self.seed = int(seed)

    def scores(self, world: "KDWorld", student: nn.Module | None = None) -> np.ndarray:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, 23]).random(world.num_candidates)


@register_ranker("keep_all")
class KeepAllRanker(Ranker):
    """All scores 0: budget 1.0 keeps the whole pool (at a smaller budget, :func:`top_k`'s seeded
    tie-break makes it a random subset). Returns (N,) zeros; the student is not used."""

    def __init__(self) -> None:
        super().__init__()

    def scores(self, world: "KDWorld", student: nn.Module | None = None) -> np.ndarray:
        return np.zeros(world.num_candidates)


@register_ranker("teacher_confidence")
class TeacherConfidenceRanker(Ranker):
    """Label preservation as the teacher sees it (higher = keep).

    Classification: the teacher's softmax probability of the label the candidate inherits from
    its original, ``world.static["teacher_prob_label"]`` (N,), computed from the cached
    teacher logits (N, C). Regression: minus the teacher's absolute error to the inherited
    score, ``-world.static["teacher_abs_error"]`` (N,). The student is not used.
    """

    def __init__(self) -> None:
        super().__init__()

    def scores(self, world: "KDWorld", student: nn.Module | None = None) -> np.ndarray:
        if world.num_labels == 1:
            return -world.static["teacher_abs_error"].double().cpu().numpy()
        return world.static["teacher_prob_label"].double().cpu().numpy()


@register_ranker("teacher_student_kl")
class TeacherStudentKLRanker(Ranker):
    """How far the student is from the teacher on each candidate.

    Measures ``KL(p_t || p_s)`` at temperature 1 between the teacher's cached distribution
    (``world.cache.logits[:N]``, (N, C)) and the student's (eval mode, float32, (N, C)), per
    candidate; regression: the squared difference of the two predictions. One forward pass of
    the student over the N candidates.

    Args:
        prefer: ``"high"`` (default): keep the candidates the student disagrees with most,
            where the KD loss carries the most signal ("most to learn"); at the initial student
            (near-uniform outputs) this is close to keeping what the teacher is confident on.
            ``"low"``: keep the candidates the student already agrees with the teacher on, a
            conservative choice that avoids text on which the teacher's view is unusual
            (e.g. label-flipping edits the teacher follows).
    """

    def __init__(self, prefer: str = "high") -> None:
        super().__init__(prefer=prefer)
        self.prefer = check_choice("prefer", prefer, ("low", "high"))

    def scores(self, world: "KDWorld", student: nn.Module | None = None) -> np.ndarray:
        student = world.new_student() if student is None else student
        n = world.num_candidates
        kl = divergence(candidate_logits(world, student), world.cache.logits[:n]).double().cpu().numpy()
        return kl if self.prefer == "high" else -kl


# ----------------------------------------------------------------------------- validation similarity


@register_ranker("val_similarity")
class ValSimilarityRanker(Ranker):
    """How close a candidate lies to the reward's validation set, in the teacher's space.

    The world measures both at build time from the teacher's sentence representations
    (``world.static["val_max_cosine"]`` and ``["val_centroid_distance"]``, (N,) each; see
    :mod:`augrl.envs.features`). The student is not used.

    Args:
        measure: ``"max"`` (default): the largest cosine similarity to any validation example;
            ``"centroid"``: minus the cosine distance to the validation centroid.
    """

    def __init__(self, measure: str = "max") -> None:
        super().__init__(measure=measure)
        self.measure = check_choice("measure", measure, ("max", "centroid"))

    def scores(self, world: "KDWorld", student: nn.Module | None = None) -> np.ndarray:
        if self.measure == "max":
            return world.static["val_max_cosine"].double().numpy()
        return -world.static["val_centroid_distance"].double().numpy()


