"""Teacher outputs computed once per dataset and looked up by example index.

A frozen teacher's logits, and the hidden states, attention maps and value vectors that an
objective's losses read, are computed in one pass over an :class:`~augrl.batching.Encoded`
(:meth:`TeacherCache.from_model`) and reused by every epoch and every distiller step.

Storage, to keep memory in check:

- only the teacher layers the objective reads (the mapped ones, see
  :meth:`augrl.kd.Distiller.teacher_needs`), never all of them;
- layer outputs in float16 by default (logits stay float32);
- per example, unpadded: example i keeps its own n_i tokens (hidden states and values as
  n_i x H rows of one packed (sum n_i, H) tensor per layer; attention maps and scores as
  h x n_i x n_i blocks of one flat buffer per layer). Batches are padded dynamically to their longest
  example (:meth:`Encoded.batch`), so :meth:`TeacherCache.__getitem__` re-pads the rows of
  the requested examples to that length with zeros, with the matching (B, L) mask.

Size: per stored layer and example, n_i * H (hidden, values) or h * n_i^2 (attention)
numbers, 2 bytes each in float16; :attr:`TeacherCache.nbytes` reports the total (the ``kd``
result record carries it as ``teacher_cache_bytes``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from augrl.batching import Encoded, length_batches
from augrl.kd.outputs import KINDS, Needs, Outputs, model_outputs
from augrl.models import hidden_size, layer_count, load_torch, save_torch

SQUARE_KINDS = ("attentions", "attention_scores")  # stored as h x n_i x n_i blocks
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        from augrl.errors import ConfigError

        raise ConfigError(f"unknown cache dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


class TeacherCache:
    """Frozen-teacher outputs for every example of one :class:`~augrl.batching.Encoded`.

    Args:
        logits: (N, C) teacher logits, row i for example i.
        lengths: (N,) tokens of each example (needed when ``layers`` is given).
        layers: ``{kind: {layer: packed tensor}}``: hidden states / values (sum n_i, H),
            attentions / attention scores (sum h * n_i^2,) flat; kinds as in :class:`~augrl.kd.outputs.Outputs`.
        num_layers: the teacher's transformer layers (tuples are sized from it).
        hidden_size: the teacher's hidden width (for the distiller's projections).
        heads: attention heads (to unflatten attention blocks).
        extras: per-example tensors (N, ...), returned as ``Outputs.extras``.
    """

    def __init__(self, logits: torch.Tensor, lengths: torch.Tensor | None = None,
                 layers: dict[str, dict[int, torch.Tensor]] | None = None, num_layers: int | None = None,
                 hidden_size: int | None = None, heads: int | None = None,
                 extras: dict[str, torch.Tensor] | None = None) -> None:
        self.logits = logits.detach().float().cpu()
        self.layers = {k: dict(v) for k, v in (layers or {}).items() if v}
        if self.layers and lengths is None:
            raise ValueError("a cache with layer outputs needs the example lengths")
        self.lengths = None if lengths is None else torch.as_tensor(lengths, dtype=torch.long).cpu()
        self.num_layers = num_layers
        self.hidden_size = hidden_size
        self.heads = heads
        self.extras = {k: v.detach().cpu() for k, v in (extras or {}).items()}
        for k, v in self.extras.items():
            if v.shape[0] != len(self.logits):
                raise ValueError(f"extra {k!r} has {v.shape[0]} rows for {len(self.logits)} examples")
        if self.lengths is not None:
            n = self.lengths
            self._row_start = torch.cumsum(n, 0) - n  # offsets into packed (sum n_i, H) tensors
            self._att_start = torch.cumsum((heads or 0) * n * n, 0) - (heads or 0) * n * n

    # ------------------------------------------------------------------ building

    @classmethod
    @torch.no_grad()
    def from_model(cls, teacher, data: Encoded, needs: Needs | None = None, batch_size: int = 128,
                   device: torch.device | str = "cpu", dtype: str | torch.dtype = "float16",
                   extras_fn=None, extras_needs: Needs | None = None) -> "TeacherCache":
        """Run the teacher once over ``data`` (eval mode, no gradients).

        Args:
            teacher: the frozen teacher.
            data: the examples to cache, looked up later by position.
            needs: teacher layers to keep per kind (default: logits only); from
                :meth:`augrl.kd.Distiller.teacher_needs`.
            batch_size: examples per forward pass (grouped by length to save padding).
            dtype: storage type of layer outputs (``float16`` default, ``float32`` exact).
            extras_fn: optional ``fn(outputs, batch) -> {name: (B, ...) tensor}`` of extra
                per-example outputs to keep (e.g. Meta-KD's domain representation).
            extras_needs: layers ``extras_fn`` reads (computed, not stored).
        """
        needs = needs or Needs()
        forward_needs = needs | (extras_needs or Needs())
        store = resolve_dtype(dtype)
        was_training = teacher.training
        teacher.eval()
        lengths = torch.tensor([len(ids) for ids in data.input_ids], dtype=torch.long)
        logits = None
        extras: dict[str, torch.Tensor] = {}
        per_example: dict[str, dict[int, list]] = {k: {l: [None] * len(data) for l in getattr(needs, k)} for k in KINDS}
        heads = None
        for idx in length_batches(data, batch_size):
            batch = data.batch(idx, device)
            out = model_outputs(teacher, batch, forward_needs)
            if logits is None:
                logits = torch.empty((len(data), out.logits.shape[-1]), dtype=torch.float32)
            logits[torch.tensor(idx)] = out.logits.float().cpu()
            if extras_fn is not None:
                for k, v in extras_fn(out, batch).items():
                    if k not in extras:
                        extras[k] = torch.empty((len(data), *v.shape[1:]), dtype=torch.float32)
                    extras[k][torch.tensor(idx)] = v.float().cpu()
            for kind in KINDS:
                for layer in getattr(needs, kind):
                    seq = getattr(out, kind)
                    t = seq[layer if kind == "hidden_states" else layer - 1].to(store).cpu()
                    square = kind in SQUARE_KINDS
                    if square:
                        heads = t.shape[1]
                    for row, i in enumerate(idx):
                        n = len(data.input_ids[i])
                        # clone: a view would keep the whole padded batch tensor alive
                        per_example[kind][layer][i] = (t[row, :, :n, :n] if square else t[row, :n]).clone()
        teacher.train(was_training)
        if logits is None:
            logits = torch.empty((0, 0))
        packed = {kind: {layer: torch.cat([r.reshape(-1) if kind in SQUARE_KINDS else r for r in rows], 0)
                         for layer, rows in by_layer.items()}
                  for kind, by_layer in per_example.items() if by_layer}
        return cls(logits, lengths if needs else None, packed, layer_count(teacher), hidden_size(teacher), heads,
                   extras)

    # ------------------------------------------------------------------ lookup

    def __len__(self) -> int:
        return self.logits.shape[0]

    def stored(self) -> Needs:
        """The teacher layers held, per kind."""
        return Needs.of(**{k: v.keys() for k, v in self.layers.items()})

    def __getitem__(self, index: torch.Tensor) -> Outputs:
        """Outputs for a batch: ``index`` is (B,) positions into the cached dataset.

        Layer outputs are re-padded to the longest example of the batch (as
        :meth:`Encoded.batch` pads) and returned in the storage dtype with a (B, L) mask.
        """
        index = index.cpu()
        logits = self.logits[index]
        extras = {k: v[index] for k, v in self.extras.items()}
        if not self.layers:
            return Outputs(logits, extras=extras)
        n = self.lengths[index]
        length = int(n.max())
        mask = (torch.arange(length)[None, :] < n[:, None]).long()
        tuples: dict[str, tuple | None] = {}
        for kind in KINDS:
            stored = self.layers.get(kind)
            if not stored:
                tuples[kind] = None
                continue
            size = (self.num_layers or max(stored)) + (kind == "hidden_states")
            seq: list[torch.Tensor | None] = [None] * size
            for layer, packed in stored.items():
                seq[layer if kind == "hidden_states" else layer - 1] = self._pad(kind, packed, index, n, length)
            tuples[kind] = tuple(seq)
        return Outputs(logits, mask=mask, extras=extras, **tuples)

    def _pad(self, kind: str, packed: torch.Tensor, index: torch.Tensor, n: torch.Tensor, length: int) -> torch.Tensor:
        if kind in SQUARE_KINDS:
            h = self.heads
            out = packed.new_zeros((len(index), h, length, length))
            for row, (i, k) in enumerate(zip(index.tolist(), n.tolist())):
                start = int(self._att_start[i])
                out[row, :, :k, :k] = packed[start:start + h * k * k].view(h, k, k)
            return out
        out = packed.new_zeros((len(index), length, packed.shape[-1]))
        for row, (i, k) in enumerate(zip(index.tolist(), n.tolist())):
            start = int(self._row_start[i])
            out[row, :k] = packed[start:start + k]
        return out

    def select(self, rows) -> "TeacherCache":
        """The cache of examples ``rows`` (positions into this cache, in that order): what
        :meth:`from_model` would compute over ``data.subset(rows)``, without the teacher."""
        index = torch.as_tensor([int(r) for r in rows], dtype=torch.long)
        extras = {k: v[index] for k, v in self.extras.items()}
        if not self.layers:
            return TeacherCache(self.logits[index], None if self.lengths is None else self.lengths[index],
                                num_layers=self.num_layers, hidden_size=self.hidden_size, heads=self.heads,
                                extras=extras)
        n = self.lengths[index]
        layers: dict[str, dict[int, torch.Tensor]] = {}
        for kind, stored in self.layers.items():
            square = kind in SQUARE_KINDS
            starts, sizes = (self._att_start, self.heads * self.lengths * self.lengths) if square \
                else (self._row_start, self.lengths)
            layers[kind] = {layer: torch.cat([packed[int(starts[i]):int(starts[i]) + int(sizes[i])] for i in index.tolist()])
                            if len(index) else packed[:0]
                            for layer, packed in stored.items()}
        return TeacherCache(self.logits[index], n, layers, self.num_layers, self.hidden_size, self.heads, extras)

    # ------------------------------------------------------------------ bookkeeping

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        tensors = [self.logits, *self.extras.values(), *(t for v in self.layers.values() for t in v.values())]
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: torch.device | str) -> "TeacherCache":
        """Kept for compatibility: lookups always return CPU tensors; the distiller moves them."""
        return self

    def save(self, path: str | Path) -> Path:
        """Write the cache to one file (tensors and plain values only, written atomically:
        :func:`augrl.models.save_torch`)."""
        return save_torch({"logits": self.logits, "lengths": self.lengths, "layers": self.layers,
                           "num_layers": self.num_layers, "hidden_size": self.hidden_size, "heads": self.heads,
                           "extras": self.extras}, path)

    @classmethod
    def load(cls, path: str | Path) -> "TeacherCache":
        """A cache saved by :meth:`save`; read with ``torch.load(weights_only=True)``
        (:func:`augrl.models.load_torch`), so a file holding other pickled objects is refused."""
        return cls(**load_torch(path, map_location="cpu"))
