"""The KD loss registry: name -> loss function, extendable with :func:`register_loss`.

Every loss has the signature ``fn(student, teacher, labels, **params) -> scalar tensor`` where
``student`` and ``teacher`` are :class:`~augrl.kd.outputs.Outputs` (teacher is None for
losses that need none) and ``labels`` is (B,) class indices or float scores. A weighted
objective such as ``{"attention_mse": 1, "hidden_mse": 1, "dark_ce": 1}`` (L2A's L_KD) sums
the named losses (see :class:`augrl.kd.Distiller`), which passes each loss, besides the
user's ``loss_params``:

- ``layer_map``: a :class:`~augrl.kd.layer_map.LayerMap`, to losses that read layers;
- ``module``: the loss's learned module (e.g. the projection W of ``hidden_mse``), to losses
  registered with a ``module`` factory; the distiller creates it, optimises it with the
  student and saves it;
- ``weights``: (B,) per-example weights, when the caller gives some (Meta-KD). Every
  built-in loss computes one value per example and returns ``mean_b(w_b * loss_b)``
  (``mean_b loss_b`` without weights).

A loss may declare what it needs of the two models' sizes (``fits``, e.g. the same head count
for per-head attention losses); the distiller checks it before training and names the sizes.
Losses that read teacher layers compare token by token: with a student of another tokenizer
the distiller hands them the teacher's outputs at the student's tokens
(:func:`~augrl.kd.outputs.to_student_tokens`).

Padded positions (``Outputs.mask`` == 0) never count: token-level losses average over each
example's real tokens, so a cached teacher re-padded to another batch length gives the same
loss as the live teacher.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from augrl.errors import ConfigError
from augrl.kd.layer_map import LayerMap
from augrl.kd.outputs import KINDS, Outputs


class LossFn(Protocol):
    def __call__(self, student: Outputs, teacher: Outputs | None, labels: torch.Tensor, **params) -> torch.Tensor: ...


#: ``layers(layer_map, **params) -> {kind: ((teacher_layer, student_layer), ...)}``: the
#: layers a loss reads (teacher_layer None: the student's only).
LayersFn = Callable[..., Mapping[str, tuple[tuple[int | None, int], ...]]]
#: ``factory(student_width, teacher_width, **params) -> nn.Module``: a loss's learned part.
ModuleFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSizes:
    """What the size checks of the losses read of a model (None: unknown).

    Attributes:
        family: ``config.model_type`` (``bert``, ``mpnet``...).
        hidden: width of the hidden states (and, for BERT-style and MPNet layers, of the values).
        heads: attention heads per layer.
    """

    family: str | None = None
    hidden: int | None = None
    heads: int | None = None

    def __str__(self) -> str:
        parts = [self.family] if self.family else []
        parts += [f"hidden {self.hidden}"] if self.hidden else []
        parts += [f"{self.heads} heads"] if self.heads else []
        return ", ".join(parts) or "sizes unknown"


#: ``fits(student: ModelSizes, teacher: ModelSizes, **params) -> problem or None``
FitsFn = Callable[..., "str | None"]


@dataclass(frozen=True)
class LossEntry:
    """A registered loss and what it needs.

    Attributes:
        fn: the loss.
        needs_teacher: False for losses on labels alone (``hard_ce``).
        needs: intermediate outputs read: subset of :data:`~augrl.kd.outputs.KINDS`.
        layers: which layers of each kind, given the layer map (see :data:`LayersFn`).
        module: factory of the loss's learned module (None: the loss has no parameters).
        weighted: whether ``fn`` accepts per-example ``weights``.
        fits: what it needs of the teacher's and the student's sizes (see :data:`FitsFn`).
    """

    fn: LossFn
    needs_teacher: bool
    needs: frozenset[str]
    layers: LayersFn | None = None
    module: ModuleFactory | None = None
    weighted: bool = False
    fits: FitsFn | None = None

    def layer_pairs(self, layer_map: LayerMap, **params) -> dict[str, tuple[tuple[int | None, int], ...]]:
        """The (teacher_layer, student_layer) pairs read, per output kind."""
        if not self.needs:
            return {}
        if self.layers is not None:
            return {k: tuple(v) for k, v in self.layers(layer_map, **params).items()}
        # a user loss that declared needs but no layers: every mapped pair (and the embeddings)
        return {k: ((0, 0),) * (k == "hidden_states") + layer_map.pairs for k in self.needs}


LOSSES: dict[str, LossEntry] = {}


def register_loss(name: str, fn: LossFn | None = None, *, needs_teacher: bool = True,
                  needs: tuple[str, ...] = (), layers: LayersFn | None = None,
                  module: ModuleFactory | None = None, fits: FitsFn | None = None, overwrite: bool = False):
    """Register ``fn`` under ``name``; usable as a decorator.

    Args:
        name: the key used in objectives.
        fn: ``fn(student, teacher, labels, **params) -> scalar``.
        needs_teacher: False for losses on labels alone (``hard_ce``).
        needs: intermediate outputs the loss reads (:data:`~augrl.kd.outputs.KINDS`).
        layers: which layers it reads given the layer map (default: every mapped pair, plus
            the embeddings for hidden states); the teacher cache stores only those.
        module: factory ``(student_width, teacher_width, **params) -> nn.Module`` of a learned
            part (projection) that the distiller optimises with the student and passes as
            ``module=``.
        fits: ``fits(student_sizes, teacher_sizes, **params) -> problem or None``
            (:class:`ModelSizes`): a sentence saying why the two models' sizes do not suit the
            loss (the distiller raises it as a ConfigError before training), or None.
        overwrite: replace an existing entry.
    """
    def add(f: LossFn) -> LossFn:
        if name in LOSSES and not overwrite:
            raise ConfigError(f"loss {name!r} is already registered; pass overwrite=True to replace it")
        unknown = set(needs) - set(KINDS)
        if unknown:
            raise ConfigError(f"loss {name!r}: unknown needs {sorted(unknown)}; use {list(KINDS)}")
        weighted = "weights" in inspect.signature(f).parameters
        LOSSES[name] = LossEntry(f, needs_teacher, frozenset(needs), layers, module, weighted, fits)
        return f

    return add(fn) if fn is not None else add


def get_loss(name: str) -> LossEntry:
    if name not in LOSSES:
        raise ConfigError(f"unknown KD loss {name!r}; registered: {sorted(LOSSES)}")
    return LOSSES[name]


# ----------------------------------------------------------------------------- helpers

def _same_shape(name: str, a: torch.Tensor, b: torch.Tensor, what: str = "") -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: student {what}shape {tuple(a.shape)} does not match teacher {what}shape "
                         f"{tuple(b.shape)}")


def reduce_loss(name: str, per_example: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """mean_b(w_b * l_b), or mean_b(l_b) without weights. ``per_example``: (B,)."""
    if weights is None:
        return per_example.mean()
    if weights.shape != per_example.shape:
        raise ValueError(f"{name}: {tuple(weights.shape)} weights for {tuple(per_example.shape)} examples")
    return (per_example * weights.to(per_example.dtype)).mean()


def layer_of(name: str, out: Outputs, kind: str, layer: int, who: str) -> torch.Tensor:
    """Layer ``layer`` (1-based; hidden states: 0 = embeddings) of ``kind``, or a clear error."""
    seq = getattr(out, kind)
    index = layer if kind == "hidden_states" else layer - 1
    if seq is None or not 0 <= index < len(seq) or seq[index] is None:
        have = [] if seq is None else [i if kind == "hidden_states" else i + 1 for i, t in enumerate(seq) if t is not None]
        raise ValueError(f"{name}: the {who}'s {kind} of layer {layer} are missing (it has layers {have}); "
                         "check the layer map and that the teacher cache was built for this objective")
    return seq[index]


def token_mask(student: Outputs, teacher: Outputs | None, like: torch.Tensor) -> torch.Tensor:
    """(B, L) float mask of the real tokens of both sides (all ones when neither carries a mask).

    The teacher's mask matters where it differs from the student's: a teacher moved to the
    tokens of a student of another tokenizer masks the student tokens without a counterpart.
    """
    masks = [m for m in (student.mask, None if teacher is None else teacher.mask) if m is not None]
    if not masks:
        return torch.ones(like.shape[:2], dtype=like.dtype, device=like.device)
    for mask in masks:
        if mask.shape != like.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match (B, L) = {tuple(like.shape[:2])}")
    out = masks[0].to(like.dtype)
    for mask in masks[1:]:
        out = out * mask.to(like.dtype)
    return out


def _token_mse(name: str, s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean over real tokens and features of (s - t)^2; s, t (B, L, H), mask (B, L)."""
    _same_shape(name, s, t)
    sq = ((s - t.to(s.dtype)) ** 2).sum(-1) * mask
    return sq.sum(-1) / (mask.sum(-1).clamp(min=1.0) * s.shape[-1])


def _row_kl(name: str, p: torch.Tensor, q: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean over heads and real query rows of KL(p_row || q_row); p, q (B, h, L, L)."""
    _same_shape(name, q, p)
    kl = (torch.xlogy(p, p) - p * torch.log(q.clamp(min=1e-12))).sum(-1)  # (B, h, L)
    kl = kl * mask[:, None, :]
    return kl.sum((1, 2)) / (p.shape[1] * mask.sum(-1).clamp(min=1.0))


def _linear_factory(student_width: int, teacher_width: int, **_) -> nn.Module:
    """The learned projection W: student width -> teacher width (identity-initialised when the
    widths match, so a student cut from its teacher starts from a meaningful comparison)."""
    linear = nn.Linear(student_width, teacher_width)
    if student_width == teacher_width:
        with torch.no_grad():
            linear.weight.copy_(torch.eye(teacher_width))
            linear.bias.zero_()
    return linear


def _same_heads(student: ModelSizes, teacher: ModelSizes, **_) -> str | None:
    if student.heads and teacher.heads and student.heads != teacher.heads:
        return (f"it compares attention head by head, so teacher and student need as many heads: the teacher "
                f"({teacher}) has {teacher.heads}, the student ({student}) {student.heads}. Use a student with "
                f"{teacher.heads} heads, or hidden_mse / hidden_cos (a learned projection bridges any widths)")
    return None


def _same_width(student: ModelSizes, teacher: ModelSizes, **_) -> str | None:
    if student.hidden and teacher.hidden and student.hidden != teacher.hidden:
        return (f"it compares hidden states without a projection, so teacher and student need one width: the "
                f"teacher ({teacher}) has {teacher.hidden}, the student ({student}) {student.hidden}. Use "
                "hidden_mse or hidden_cos (a learned projection W bridges the widths)")
    return None


def _minilm_fits(student: ModelSizes, teacher: ModelSizes, relation_heads: int | None = None, **_) -> str | None:
    problem = _same_heads(student, teacher)
    r = relation_heads or student.heads
    if problem is None and r:
        odd = [f"the {who}'s {m.hidden}" for who, m in (("teacher", teacher), ("student", student))
               if m.hidden and m.hidden % r]
        if odd:
            problem = (f"its value relations split the values into {r} relation heads, which does not divide "
                       f"{' and '.join(odd)} (teacher: {teacher}; student: {student}). Set loss_params "
                       "{'minilm_relation': {'relation_heads': R}} with R dividing both widths")
    return problem


# ----------------------------------------------------------------------------- prediction layer

@register_loss("dark_ce")
def dark_ce(student: Outputs, teacher: Outputs | None, labels: torch.Tensor, temperature: float = 1.0,
            weights: torch.Tensor | None = None) -> torch.Tensor:
    """Hinton et al.'s dark-knowledge loss on temperature-softened distributions (L2A's L_dark).

    Inputs: student and teacher logits (B, C). With p = softmax(t / T), q = softmax(s / T)::

        T^2 * mean_b sum_c p_c (log p_c - log q_c)

    i.e. the soft cross-entropy -sum p log q minus the teacher's entropy, a constant: the same
    gradient, and exactly zero when the student matches the teacher. The T^2 factor keeps the
    gradient scale independent of T. Regression heads (C = 1) fall back to MSE.
    """
    s, t = student.logits, teacher.logits
    _same_shape("dark_ce", s, t)
    if s.shape[-1] == 1:
        return reduce_loss("dark_ce", ((s - t) ** 2).mean(-1), weights)
    log_q = F.log_softmax(s / temperature, dim=-1)
    log_p = F.log_softmax(t.to(s.dtype) / temperature, dim=-1)
    per = (log_p.exp() * (log_p - log_q)).sum(-1)
    return reduce_loss("dark_ce", (temperature ** 2) * per, weights)


@register_loss("logit_mse")
def logit_mse(student: Outputs, teacher: Outputs | None, labels: torch.Tensor,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """Tang et al.'s logit regression: mean over B and C of (s - t)^2. Inputs (B, C) logits."""
    _same_shape("logit_mse", student.logits, teacher.logits)
    return reduce_loss("logit_mse", ((student.logits - teacher.logits.to(student.logits.dtype)) ** 2).mean(-1), weights)


@register_loss("hard_ce", needs_teacher=False)
def hard_ce(student: Outputs, teacher: Outputs | None, labels: torch.Tensor,
            weights: torch.Tensor | None = None) -> torch.Tensor:
    """Supervised loss on gold labels: cross-entropy for (B, C) logits and (B,) class indices;
    squared error for (B, 1) regression predictions and (B,) float scores."""
    s = student.logits
    if s.shape[0] != labels.shape[0]:
        raise ValueError(f"hard_ce: {s.shape[0]} predictions but {labels.shape[0]} labels")
    if s.shape[-1] == 1:
        per = (s.squeeze(-1) - labels.to(s.dtype)) ** 2
    else:
        per = F.cross_entropy(s, labels.long(), reduction="none")
    return reduce_loss("hard_ce", per, weights)


# ----------------------------------------------------------------------------- intermediate layers

def _attention_kind(target: str = "scores") -> str:
    if target not in ("scores", "probs"):
        raise ConfigError(f"attention_mse target must be 'scores' (TinyBERT) or 'probs', got {target!r}")
    return "attention_scores" if target == "scores" else "attentions"


@register_loss("attention_mse", needs=("attention_scores",),
               layers=lambda m, target="scores", **_: {_attention_kind(target): m.pairs}, fits=_same_heads)
def attention_mse(student: Outputs, teacher: Outputs | None, labels: torch.Tensor, layer_map: LayerMap,
                  target: str = "scores", weights: torch.Tensor | None = None) -> torch.Tensor:
    """TinyBERT's attention loss, L2A's L_att: MSE between the attention matrices of mapped layers.

    Inputs: per mapped pair (teacher layer t, student layer s), attention matrices A_S and A_T,
    each (B, h, L, L) (same head count h): with ``target="scores"`` (default, TinyBERT) the
    unnormalised ``A = Q K^T / sqrt(d_k)`` -- TinyBERT fits these rather than their softmax,
    reporting faster convergence and better results; with ``target="probs"`` the attention
    distributions. For one example with n real tokens::

        sum_(t,s) (1/h) sum_a mean_(i,j <= n) (A_S[a,i,j] - A_T[a,i,j])^2

    i.e. the mean over heads of the per-head MSE over the real n x n block (padded rows and
    columns left out, as TinyBERT zeroes masked entries), summed over the mapped layers
    (TinyBERT sums layers).
    """
    kind = _attention_kind(target)
    total = 0.0
    for t, s in layer_map.pairs:
        a_s = layer_of("attention_mse", student, kind, s, "student")
        a_t = layer_of("attention_mse", teacher, kind, t, "teacher").to(a_s.dtype)
        _same_shape("attention_mse", a_s, a_t, f"layer {s} attention ")
        mask = token_mask(student, teacher, a_s[:, 0])
        block = mask[:, None, :, None] * mask[:, None, None, :]  # (B, 1, L, L)
        n = mask.sum(-1).clamp(min=1.0)
        total = total + ((a_s - a_t) ** 2 * block).sum((1, 2, 3)) / (a_s.shape[1] * n * n)
    return reduce_loss("attention_mse", total, weights)


@register_loss("hidden_mse", needs=("hidden_states",), layers=lambda m, **_: {"hidden_states": m.pairs},
               module=_linear_factory)
def hidden_mse(student: Outputs, teacher: Outputs | None, labels: torch.Tensor, layer_map: LayerMap,
               module: nn.Module | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """TinyBERT's hidden-state loss, L2A's L_hidden, through a learned projection W.

    Inputs: per mapped pair (teacher layer t, student layer s), student hidden states H_S
    (B, L, H_s) and teacher hidden states H_T (B, L, H_t); ``module`` is W (H_s -> H_t, one
    matrix shared by all layers, as in TinyBERT; None: identity, then H_s must equal H_t).
    For one example with n real tokens::

        sum_(t,s) mean_(i <= n, d) ((H_S W)[i,d] - H_T[i,d])^2
    """
    total = 0.0
    for t, s in layer_map.pairs:
        h_s = layer_of("hidden_mse", student, "hidden_states", s, "student")
        h_t = layer_of("hidden_mse", teacher, "hidden_states", t, "teacher")
        projected = h_s if module is None else module(h_s)
        total = total + _token_mse(f"hidden_mse (student layer {s}{', projected' if module is not None else ''})",
                                   projected, h_t, token_mask(student, teacher, h_s))
    return reduce_loss("hidden_mse", total, weights)


@register_loss("embedding_mse", needs=("hidden_states",), layers=lambda m, **_: {"hidden_states": ((0, 0),)},
               module=_linear_factory)
def embedding_mse(student: Outputs, teacher: Outputs | None, labels: torch.Tensor,
                  module: nn.Module | None = None, layer_map: LayerMap | None = None,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """TinyBERT's embedding-layer loss through a learned projection W_e.

    Inputs: the embedding-layer outputs E_S (B, L, H_s) and E_T (B, L, H_t)
    (``hidden_states[0]``); ``module`` is W_e (H_s -> H_t; None: identity). Per example::

        mean_(i <= n, d) ((E_S W_e)[i,d] - E_T[i,d])^2
    """
    e_s = layer_of("embedding_mse", student, "hidden_states", 0, "student")
    e_t = layer_of("embedding_mse", teacher, "hidden_states", 0, "teacher")
    projected = e_s if module is None else module(e_s)
    per = _token_mse("embedding_mse", projected, e_t, token_mask(student, teacher, e_s))
    return reduce_loss("embedding_mse", per, weights)


def _projection_if_widths_differ(student_width: int, teacher_width: int, **_) -> nn.Module:
    """No parameters when the widths match (DistilBERT compares the states as they are);
    else a learned projection W: student width -> teacher width."""
    return nn.Identity() if student_width == teacher_width else _linear_factory(student_width, teacher_width)


def _cos_pairs(layer_map: LayerMap, top_only: bool = True, **_) -> tuple[tuple[int, int], ...]:
    return (layer_map.top,) if top_only else layer_map.pairs


@register_loss("hidden_cos", needs=("hidden_states",), layers=lambda m, **p: {"hidden_states": _cos_pairs(m, **p)},
               module=_projection_if_widths_differ)
def hidden_cos(student: Outputs, teacher: Outputs | None, labels: torch.Tensor, layer_map: LayerMap,
               top_only: bool = True, module: nn.Module | None = None,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """DistilBERT's cosine embedding loss: align the directions of student and teacher hidden states.

    Inputs: per mapped pair (teacher layer t, student layer s) -- with ``top_only`` (default,
    as DistilBERT) only the top pair, the last layers -- student hidden states H_S (B, L, H_s)
    and teacher hidden states H_T (B, L, H_t); ``module`` maps H_s -> H_t (identity when the
    widths match, a learned W otherwise). For one example with n real tokens::

        sum_(t,s) mean_(i <= n) (1 - cos((H_S W)[i], H_T[i]))

    0 when every token's state points the teacher's way, 2 when opposite; the scale of the
    states does not count.
    """
    total = 0.0
    for t, s in _cos_pairs(layer_map, top_only):
        h_s = layer_of("hidden_cos", student, "hidden_states", s, "student")
        h_t = layer_of("hidden_cos", teacher, "hidden_states", t, "teacher")
        projected = h_s if module is None else module(h_s)
        _same_shape(f"hidden_cos (student layer {s})", projected, h_t)
        mask = token_mask(student, teacher, h_s)
        cos = F.cosine_similarity(projected, h_t.to(projected.dtype), dim=-1, eps=1e-8)  # (B, L)
        total = total + ((1.0 - cos) * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
    return reduce_loss("hidden_cos", total, weights)


def _pkd_pairs(layer_map: LayerMap, skip_last: bool = True, **_) -> tuple[tuple[int, int], ...]:
    pairs = layer_map.pairs[:-1] if skip_last else layer_map.pairs
    if not pairs:
        raise ConfigError(f"pkd with layer map {layer_map}: no intermediate pair left once the top one is "
                          "skipped; map more layers or pass loss_params {'pkd': {'skip_last': False}}")
    return pairs


@register_loss("pkd", needs=("hidden_states",), layers=lambda m, **p: {"hidden_states": _pkd_pairs(m, **p)},
               fits=_same_width)
def pkd(student: Outputs, teacher: Outputs | None, labels: torch.Tensor, layer_map: LayerMap,
        skip_last: bool = True, weights: torch.Tensor | None = None) -> torch.Tensor:
    """BERT-PKD's patient loss on normalised [CLS] states of mapped layers.

    Inputs: per mapped pair (t, s), the [CLS] (position 0) hidden states h_S (B, H) and
    h_T (B, H) (same width). Per example::

        sum_(t,s) || h_S / ||h_S||_2 - h_T / ||h_T||_2 ||_2^2

    With ``skip_last`` (default, as in BERT-PKD) the top pair is left out: the student's last
    layer is already taught through the prediction loss.
    """
    total = 0.0
    for t, s in _pkd_pairs(layer_map, skip_last):
        h_s = layer_of("pkd", student, "hidden_states", s, "student")[:, 0]
        h_t = layer_of("pkd", teacher, "hidden_states", t, "teacher")[:, 0].to(h_s.dtype)
        _same_shape("pkd", h_s, h_t, f"layer {s} [CLS] ")
        total = total + ((F.normalize(h_s, dim=-1) - F.normalize(h_t, dim=-1)) ** 2).sum(-1)
    return reduce_loss("pkd", total, weights)


def _value_relation(values: torch.Tensor, heads: int, mask: torch.Tensor, name: str) -> torch.Tensor:
    """(B, r, L, L) softmax(V_a V_a^T / sqrt(d_r)) over real keys, V split into ``heads`` parts."""
    b, length, width = values.shape
    if width % heads:
        raise ValueError(f"{name}: value width {width} is not divisible by {heads} relation heads")
    v = values.float().view(b, length, heads, width // heads).transpose(1, 2)
    scores = torch.matmul(v, v.transpose(-1, -2)) / (width // heads) ** 0.5
    scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


@register_loss("minilm_relation", needs=("attentions", "values"),
               layers=lambda m, **_: {"attentions": (m.top,), "values": (m.top,)}, fits=_minilm_fits)
def minilm_relation(student: Outputs, teacher: Outputs | None, labels: torch.Tensor, layer_map: LayerMap,
                    relation_heads: int | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
    """MiniLM's deep self-attention distillation on the top mapped pair (the last layers).

    Inputs: attention distributions A_S, A_T (B, h, L, L) (same head count) and value vectors
    V_S (B, L, D_S), V_T (B, L, D_T) of the top pair of the layer map. Value relations are
    VR = softmax(V_a V_a^T / sqrt(d_r)) with V split into r = ``relation_heads`` parts (default
    h), so teacher and student widths may differ. Per example with n real tokens::

        (1/(h n)) sum_a sum_(i <= n) KL(A_T[a,i] || A_S[a,i])
      + (1/(r n)) sum_a sum_(i <= n) KL(VR_T[a,i] || VR_S[a,i])
    """
    t, s = layer_map.top
    a_s = layer_of("minilm_relation", student, "attentions", s, "student").float()
    a_t = layer_of("minilm_relation", teacher, "attentions", t, "teacher").float()
    _same_shape("minilm_relation", a_s, a_t, f"layer {s} attention ")
    mask = token_mask(student, teacher, a_s[:, 0])
    v_s = layer_of("minilm_relation", student, "values", s, "student")
    v_t = layer_of("minilm_relation", teacher, "values", t, "teacher")
    if v_s.shape[:2] != v_t.shape[:2]:
        raise ValueError(f"minilm_relation: student values {tuple(v_s.shape)} and teacher values "
                         f"{tuple(v_t.shape)} differ in batch or length")
    r = relation_heads or a_s.shape[1]
    vr_s = _value_relation(v_s, r, mask, "minilm_relation")
    vr_t = _value_relation(v_t, r, mask, "minilm_relation")
    per = _row_kl("minilm_relation", a_t, a_s, mask) + _row_kl("minilm_relation", vr_t, vr_s, mask)
    return reduce_loss("minilm_relation", per, weights)


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


def parse_objective(text: str | Mapping[str, float]) -> Objective:
    """An objective from JSON (``'{"dark_ce": 1, "hard_ce": 1}'``), ``name=weight,name=weight``
    or a bare ``name,name`` (weight 1 each); validated."""
    if isinstance(text, Mapping):
        return validate_objective(dict(text))
    text = text.strip()
    if text.startswith("{"):
        import json

        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"objective {text!r} is not valid JSON: {err.msg}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"objective {text!r}: expected a JSON object of name: weight")
        return validate_objective(data)
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        out[name.strip()] = weight.strip() if weight else 1.0
    return validate_objective(out)
