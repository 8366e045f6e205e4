"""What a KD loss sees of a model, and how to get it from a model in one forward pass.

Hugging Face returns hidden states on request; self-attention maps and value vectors are
taken here with forward hooks on each layer's query, key and value projections
(:func:`self_attention` finds them per family):

- value vectors (MiniLM's value relation) are the output of the value projection,
  (B, L, heads * head_size), exactly what the layer multiplies its attention weights with;
- attention scores (TinyBERT's unnormalised attention matrix) and maps ``softmax(scores +
  padding mask)`` are recomputed per head from the hooked queries and keys: ``Q K^T /
  sqrt(head_size)`` for BERT-style self-attention (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA;
  MiniLM and TinyBERT are BERTs), plus MPNet's relative position bias, taken as the layer
  receives it, for MPNet (all-mpnet-base-v2). The maps are the distribution the layer uses
  *before* attention dropout: Hugging Face's ``output_attentions`` returns the maps after
  dropout (a student in training mode would be compared through dropout noise, and KL terms
  would meet zeroed entries), and needs the slower ``eager`` kernels. Other attention schemes
  (DeBERTa's disentangled content/position attention, relative-key BERT variants) are refused
  with a :class:`ConfigError` naming the architecture; their hidden states work as anywhere.

**Teacher and student of different tokenizers.** A student of another family reads its own
tokenizer's ids (:func:`augrl.models.model_inputs`), so its outputs are in its own token
positions; :func:`to_student_tokens` moves the teacher's token-level outputs to those
positions with the batch's alignment (``positions@V``, :class:`augrl.models.TokenView`), so
the losses compare the same pieces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

import torch
from torch import nn

from augrl.errors import ConfigError
from augrl.models import VIEW_SEP, encoder_layers, model_inputs

KINDS = ("hidden_states", "attentions", "attention_scores", "values")
#: batch keys produced by :meth:`augrl.batching.Encoded.batch`; any other key of a batch
#: (e.g. ``domain``) is passed to the losses as ``Outputs.extras``, except the keys of a second
#: tokenisation (``input_ids@V``..., :class:`augrl.models.TokenView`).
BATCH_KEYS = frozenset({"input_ids", "attention_mask", "token_type_ids", "labels", "index"})


@dataclass
class Outputs:
    """A model's outputs on a batch of B examples padded to length L.

    Attributes:
        logits: (B, C) class logits, or (B, 1) regression predictions.
        hidden_states: per layer, embeddings first (index 0, then layer l at index l), each
            (B, L, H); entries not computed or not cached are None. None when not requested.
        attentions: per layer (layer l at index l - 1), each (B, heads, L, L) attention
            probabilities (rows: queries, columns: keys; zero on padded keys); None entries
            as above.
        attention_scores: per layer as ``attentions``, the unnormalised scores
            ``Q K^T / sqrt(head_size)`` (MPNet: plus its relative position bias) before the
            padding mask and softmax (TinyBERT's "A").
        values: per layer (layer l at index l - 1), each (B, L, heads * head_size): the
            self-attention value projection; None entries as above.
        mask: (B, L) 1 for real tokens, 0 for padding; losses ignore padded positions.
        extras: method-specific per-example tensors, each (B, ...), e.g. Meta-KD's domain ids
            and domain representations.
    """

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor | None, ...] | None = None
    attentions: tuple[torch.Tensor | None, ...] | None = None
    attention_scores: tuple[torch.Tensor | None, ...] | None = None
    values: tuple[torch.Tensor | None, ...] | None = None
    mask: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def map(self, fn) -> "Outputs":
        """Apply ``fn`` to every tensor (e.g. ``lambda t: t.detach()``)."""
        def seq(x):
            return None if x is None else tuple(None if t is None else fn(t) for t in x)

        return Outputs(fn(self.logits), seq(self.hidden_states), seq(self.attentions), seq(self.attention_scores),
                       seq(self.values), None if self.mask is None else fn(self.mask),
                       {k: fn(v) for k, v in self.extras.items()})

    def to(self, device: torch.device | str) -> "Outputs":
        return self.map(lambda t: t.to(device))

    def detach(self) -> "Outputs":
        return self.map(lambda t: t.detach())

    def rows(self, index: torch.Tensor, length: int | None = None) -> "Outputs":
        """The outputs of some examples of the batch, keeping the autograd graph.

        Args:
            index: (K,) positions in the batch.
            length: trim the token dimension(s) to this length (the longest of the chosen
                examples), so the result matches a batch padded to those examples alone.
        """
        def cut(t: torch.Tensor, square: bool = False) -> torch.Tensor:
            t = t[index]
            if length is None:
                return t
            return t[..., :length, :length] if square else t[:, :length]

        def seq(x, square=False):
            return None if x is None else tuple(None if t is None else cut(t, square) for t in x)

        return Outputs(self.logits[index], seq(self.hidden_states), seq(self.attentions, True),
                       seq(self.attention_scores, True), seq(self.values),
                       None if self.mask is None else cut(self.mask), {k: v[index] for k, v in self.extras.items()})

    def with_extras(self, **extras: torch.Tensor) -> "Outputs":
        return replace(self, extras={**self.extras, **extras})


@dataclass(frozen=True)
class Needs:
    """Which intermediate outputs to compute: 1-based layer numbers per kind.

    ``hidden_states`` may contain 0 (the embedding layer's output).
    """

    hidden_states: frozenset[int] = frozenset()
    attentions: frozenset[int] = frozenset()
    attention_scores: frozenset[int] = frozenset()
    values: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return any(getattr(self, k) for k in KINDS)

    def __or__(self, other: "Needs") -> "Needs":
        return Needs(*(getattr(self, k) | getattr(other, k) for k in KINDS))

    @classmethod
    def of(cls, **layers) -> "Needs":
        unknown = set(layers) - set(KINDS)
        if unknown:
            raise ConfigError(f"unknown output kind(s) {sorted(unknown)}; use {list(KINDS)}")
        return cls(**{k: frozenset(int(i) for i in v) for k, v in layers.items()})

    def max_layer(self) -> int:
        return max([0, *(layer for k in KINDS for layer in getattr(self, k))])


def _store(captured: dict, key, _module, _inputs, output) -> None:
    captured[key] = output


def _store_bias(captured: dict, key, _module, args, kwargs) -> None:
    """Forward pre-hook of MPNet's self-attention: keep the relative position bias it is given."""
    captured[key] = kwargs["position_bias"] if "position_bias" in kwargs else (args[2] if len(args) > 2 else None)


#: model types whose self-attention is BERT's: softmax(Q K^T * head_size^-0.5 + padding mask)
BERT_STYLE = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
SUPPORTED = f"BERT-style self-attention ({', '.join(sorted(BERT_STYLE))}) and MPNet's"


@dataclass(frozen=True)
class SelfAttention:
    """Where one layer computes its attention, and how (see :func:`self_attention`).

    Attributes:
        query, key, value: the projections, each (B, L, H) -> (B, L, heads * head_size).
        heads, head_size: how the projections split into heads.
        scale: ``scale(Q K^T)`` -> the scores, as the layer computes them.
        biased: the module whose forward receives a position bias (B, heads, L, L) that the
            layer adds to the scaled scores (MPNet's ``attn``), or None.
    """

    query: nn.Module
    key: nn.Module
    value: nn.Module
    heads: int
    head_size: int
    scale: Callable[[torch.Tensor], torch.Tensor]
    biased: nn.Module | None = None


def model_family(model) -> str:
    """``config.model_type`` of a transformer (``bert``, ``mpnet``...), else its class name."""
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) or type(model).__name__


def attention_refusal(model) -> str | None:
    """Why the attention maps of ``model`` cannot be recomputed exactly, or None when they can."""
    family = model_family(model)
    if family == "mpnet":
        return None
    if family in BERT_STYLE:
        position = getattr(model.config, "position_embedding_type", None) or "absolute"
        if position != "absolute":
            return f"this {family} model uses {position!r} position embeddings inside its attention"
        return None
    why = " (disentangled content and relative-position attention)" if family.startswith("deberta") else ""
    return f"a {family} model ({type(model).__name__}) computes its attention in its own way{why}"


def self_attention(model, layer: nn.Module) -> SelfAttention:
    """The self-attention parts of one transformer layer of ``model``; a ConfigError for
    families whose attention is not recomputed (see :func:`attention_refusal`)."""
    refusal = attention_refusal(model)
    if refusal is not None:
        raise ConfigError(f"attention maps and value vectors are recomputed for {SUPPORTED}; {refusal}. "
                          "Use losses on hidden states or logits with it")
    if model_family(model) == "mpnet":
        attn = layer.attention.attn
        root = math.sqrt(attn.attention_head_size)
        return SelfAttention(attn.q, attn.k, attn.v, attn.num_attention_heads, attn.attention_head_size,
                             lambda s: s / root, biased=attn)
    attn = layer.attention.self
    scaling = getattr(attn, "scaling", attn.attention_head_size ** -0.5)
    return SelfAttention(attn.query, attn.key, attn.value, attn.num_attention_heads, attn.attention_head_size,
                         lambda s: s * scaling)


def _attention_scores(parts: SelfAttention, query: torch.Tensor, key: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
    """(B, heads, L, L) scores of one layer from its hooked queries and keys (float32), as the
    layer computes them: scaled ``Q K^T`` plus the position bias where the family has one."""
    b, length, _ = query.shape
    q = query.float().view(b, length, parts.heads, parts.head_size).transpose(1, 2)
    k = key.float().view(b, length, parts.heads, parts.head_size).transpose(1, 2)
    scores = parts.scale(torch.matmul(q, k.transpose(-1, -2)))
    return scores if bias is None else scores + bias.float()


def attention_probs(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax over keys of ``scores`` (B, h, L, L) with padded keys (``mask`` (B, L) == 0) excluded."""
    return torch.softmax(scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min), dim=-1)


def model_outputs(model, batch: dict[str, torch.Tensor], needs: Needs | None = None) -> Outputs:
    """One forward pass of ``model`` on ``batch``, returning what ``needs`` asks for.

    Gradients flow as usual (wrap in ``torch.no_grad()`` for a frozen teacher). Tuples hold
    None at layers not asked for. The model reads the batch's ids of its own vocabulary
    (:func:`augrl.models.model_inputs`); ``Outputs.mask`` is that tokenisation's.

    Args:
        model: a classifier; with ``encoder.layer`` when ``needs`` asks for layers, of a family
            :func:`self_attention` knows when it asks for attentions or values.
        batch: ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, L); other keys
            beyond :data:`BATCH_KEYS` and a second tokenisation's are copied into
            ``Outputs.extras``.
        needs: intermediate outputs wanted (default: logits only).
    """
    needs = needs or Needs()
    inputs = model_inputs(model, batch)
    mask = inputs["attention_mask"]
    extras = {k: v for k, v in batch.items() if k not in BATCH_KEYS and VIEW_SEP not in k}
    if not needs:
        return Outputs(model(**inputs).logits, mask=mask, extras=extras)
    layers = encoder_layers(model)
    if needs.max_layer() > len(layers):
        raise ConfigError(f"outputs of layer {needs.max_layer()} asked for, but the model has {len(layers)} layers")
    attending = needs.attentions | needs.attention_scores
    parts = {layer: self_attention(model, layers[layer - 1]) for layer in attending | needs.values}
    captured: dict = {}
    hooks = []
    try:
        for layer, part in parts.items():
            if layer in attending:
                hooks.append(part.query.register_forward_hook(partial(_store, captured, (layer, "query"))))
                hooks.append(part.key.register_forward_hook(partial(_store, captured, (layer, "key"))))
                if part.biased is not None:
                    hooks.append(part.biased.register_forward_pre_hook(partial(_store_bias, captured, (layer, "bias")),
                                                                       with_kwargs=True))
            if layer in needs.values:
                hooks.append(part.value.register_forward_hook(partial(_store, captured, (layer, "value"))))
        out = model(**inputs, output_hidden_states=bool(needs.hidden_states))
    finally:
        for hook in hooks:
            hook.remove()
    hidden = None
    if needs.hidden_states:
        hidden = tuple(h if i in needs.hidden_states else None for i, h in enumerate(out.hidden_states))
    scores = {layer: _attention_scores(parts[layer], captured[(layer, "query")], captured[(layer, "key")],
                                       captured.get((layer, "bias"))) for layer in attending}

    def per_layer(wanted: frozenset[int], get) -> tuple | None:
        return tuple(get(i + 1) if i + 1 in wanted else None for i in range(len(layers))) if wanted else None

    return Outputs(out.logits, hidden,
                   per_layer(needs.attentions, lambda layer: attention_probs(scores[layer], mask)),
                   per_layer(needs.attention_scores, lambda layer: scores[layer]),
                   per_layer(needs.values, lambda layer: captured[(layer, "value")]), mask, extras)


# ----------------------------------------------------------------------------- another tokenizer


def misaligned_rows(positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the examples with real tokens (``mask`` (B, L)) of which none has a teacher
    counterpart in ``positions`` (B, L): the ones whose tokenisations could not be aligned."""
    return (mask > 0).any(-1) & ~((positions >= 0) & (mask > 0)).any(-1)


def to_student_tokens(teacher: Outputs, positions: torch.Tensor, mask: torch.Tensor) -> Outputs:
    """The teacher's outputs moved to a student's token positions.

    Args:
        teacher: outputs on the batch's own (teacher's) tokens: (B, L_T, ...) per layer.
        positions: (B, L_S) for each student token the position of the same piece among the
            teacher's tokens, -1 where there is none and on padding (the batch's
            ``positions@V``).
        mask: (B, L_S) the student's attention mask.

    Returns:
        Hidden states and values (B, L_S, H), attention scores and maps (B, h, L_S, L_S), at
        the student's tokens, zero where a token has no counterpart; the maps renormalised over
        the keys that have one, i.e. the teacher's distribution over the pieces the student
        sees (the teacher's own where every teacher token has a counterpart, as in a single
        text); ``mask`` (B, L_S): the student's tokens that have a counterpart. Logits and
        extras as they are.
    """
    valid = (positions >= 0) & (mask > 0)
    index = positions.clamp(min=0)

    def tokens(t: torch.Tensor) -> torch.Tensor:  # (B, L_T, H) -> (B, L_S, H)
        out = t.gather(1, index[:, :, None].expand(-1, -1, t.shape[-1]))
        return out * valid[:, :, None].to(out.dtype)

    def square(t: torch.Tensor) -> torch.Tensor:  # (B, h, L_T, L_T) -> (B, h, L_S, L_S)
        b, h, _, length = t.shape
        n = index.shape[1]
        t = t.gather(2, index[:, None, :, None].expand(b, h, n, length))
        t = t.gather(3, index[:, None, None, :].expand(b, h, n, n))
        return t * (valid[:, None, :, None] & valid[:, None, None, :]).to(t.dtype)

    def probs(t: torch.Tensor) -> torch.Tensor:
        t = square(t)
        return t / t.sum(-1, keepdim=True).clamp(min=torch.finfo(t.dtype).tiny)

    def seq(x, fn):
        return None if x is None else tuple(None if t is None else fn(t) for t in x)

    return Outputs(teacher.logits, seq(teacher.hidden_states, tokens), seq(teacher.attentions, probs),
                   seq(teacher.attention_scores, square), seq(teacher.values, tokens), valid.long(),
                   dict(teacher.extras))
