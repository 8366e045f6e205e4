"""What a KD loss sees of a model, and how to get it from a model in one forward pass.

Hugging Face returns hidden states on request; self-attention maps and value vectors are
taken here with forward hooks on each layer's ``attention.self.query/key/value`` projections:

- value vectors (MiniLM's value relation) are the output of the ``value`` projection,
  (B, L, heads * head_size), exactly what the layer multiplies its attention weights with;
- attention scores ``Q K^T * head_size^-0.5`` (TinyBERT's unnormalised attention matrix) and
  maps ``softmax(scores + padding mask)`` are recomputed per head from the hooked queries and
  keys. The maps are the distribution the
  layer uses *before* attention dropout: Hugging Face's ``output_attentions`` returns the maps
  after dropout (a student in training mode would be compared through dropout noise, and KL
  terms would meet zeroed entries), and needs the slower ``eager`` kernels. The recomputation
  holds for BERT-style absolute-position self-attention (BERT, RoBERTa, MiniLM, TinyBERT);
  other position schemes are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

import torch

from augrl.errors import ConfigError
from augrl.models import encoder_layers

KINDS = ("hidden_states", "attentions", "attention_scores", "values")
#: batch keys produced by :meth:`augrl.batching.Encoded.batch`; any other key of a batch
#: (e.g. ``domain``) is passed to the losses as ``Outputs.extras``.
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
            ``Q K^T / sqrt(head_size)`` before the padding mask and softmax (TinyBERT's "A").
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


def _attention_scores(attn_self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, L) Q K^T * scaling of one BERT self-attention module (float32)."""
    b, length, _ = query.shape
    heads, size = attn_self.num_attention_heads, attn_self.attention_head_size
    q = query.view(b, length, heads, size).transpose(1, 2)
    k = key.view(b, length, heads, size).transpose(1, 2)
    scaling = getattr(attn_self, "scaling", size ** -0.5)
    return torch.matmul(q.float(), k.float().transpose(-1, -2)) * scaling


def attention_probs(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax over keys of ``scores`` (B, h, L, L) with padded keys (``mask`` (B, L) == 0) excluded."""
    return torch.softmax(scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min), dim=-1)


def model_outputs(model, batch: dict[str, torch.Tensor], needs: Needs | None = None) -> Outputs:
    """One forward pass of ``model`` on ``batch``, returning what ``needs`` asks for.

    Gradients flow as usual (wrap in ``torch.no_grad()`` for a frozen teacher). Tuples hold
    None at layers not asked for.

    Args:
        model: a classifier; BERT-style (``encoder.layer``) when ``needs`` asks for layers.
        batch: ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, L); other keys
            beyond :data:`BATCH_KEYS` are copied into ``Outputs.extras``.
        needs: intermediate outputs wanted (default: logits only).
    """
    needs = needs or Needs()
    mask = batch["attention_mask"]
    extras = {k: v for k, v in batch.items() if k not in BATCH_KEYS}
    kwargs = {"input_ids": batch["input_ids"], "attention_mask": mask, "token_type_ids": batch.get("token_type_ids")}
    if not needs:
        return Outputs(model(**kwargs).logits, mask=mask, extras=extras)
    layers = encoder_layers(model)
    if needs.max_layer() > len(layers):
        raise ConfigError(f"outputs of layer {needs.max_layer()} asked for, but the model has {len(layers)} layers")
    position = getattr(getattr(model, "config", None), "position_embedding_type", "absolute")
    attending = needs.attentions | needs.attention_scores
    if attending and position != "absolute":
        raise ConfigError(f"attention maps are recomputed for absolute-position self-attention, not {position!r}")
    captured: dict = {}
    hooks = []
    try:
        for layer in attending | needs.values:
            attn_self = layers[layer - 1].attention.self
            names = (("query", "key") if layer in attending else ()) + (("value",) if layer in needs.values else ())
            for name in names:
                hooks.append(getattr(attn_self, name).register_forward_hook(partial(_store, captured, (layer, name))))
        out = model(**kwargs, output_hidden_states=bool(needs.hidden_states))
    finally:
        for hook in hooks:
            hook.remove()
    hidden = None
    if needs.hidden_states:
        hidden = tuple(h if i in needs.hidden_states else None for i, h in enumerate(out.hidden_states))
    scores = {layer: _attention_scores(layers[layer - 1].attention.self, captured[(layer, "query")],
                                       captured[(layer, "key")]) for layer in attending}

    def per_layer(wanted: frozenset[int], get) -> tuple | None:
        return tuple(get(i + 1) if i + 1 in wanted else None for i in range(len(layers))) if wanted else None

    return Outputs(out.logits, hidden,
                   per_layer(needs.attentions, lambda layer: attention_probs(scores[layer], mask)),
                   per_layer(needs.attention_scores, lambda layer: scores[layer]),
                   per_layer(needs.values, lambda layer: captured[(layer, "value")]), mask, extras)
