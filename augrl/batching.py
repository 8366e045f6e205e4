"""Tokenise a task's datasets once, then serve padded batches and batched predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from augrl.models import TokenizerPair, TokenView, model_inputs, pad_rows
from augrl.tasks import TaskSpec


@dataclass
class Encoded:
    """Token ids of N examples (unpadded) and their labels.

    Attributes:
        input_ids: N lists of token ids, truncated to the model's maximum.
        token_type_ids: N lists of segment ids (pairs), or None.
        labels: (N,) int64 class indices, or float32 scores for regression.
        views: the same examples in other tokenizers' ids, by vocabulary fingerprint (a student
            of another family than the teacher; see :class:`augrl.models.TokenView`); empty
            when teacher and student share a tokenizer.
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: torch.Tensor
    pad_id: int = 0
    views: dict[str, TokenView] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)

    def subset(self, indices) -> "Encoded":
        idx = [int(i) for i in indices]
        return Encoded(
            [self.input_ids[i] for i in idx],
            None if self.token_type_ids is None else [self.token_type_ids[i] for i in idx],
            self.labels[idx],
            self.pad_id,
            {k: v.subset(idx) for k, v in self.views.items()},
        )

    @classmethod
    def concat(cls, parts: "list[Encoded]") -> "Encoded":
        """The examples of ``parts`` one after another (same tokenizer: same pad id)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        if len({p.pad_id for p in parts}) > 1:
            raise ValueError("cannot concatenate examples encoded with different pad ids")
        if len({tuple(sorted(p.views)) for p in parts}) > 1:
            raise ValueError("cannot concatenate examples encoded for different students' tokenizers: encode every "
                             "part with the run's tokenizer (a TokenizerPair when the student's differs)")
        types = None
        if any(p.token_type_ids is not None for p in parts):
            types = [t for p in parts for t in (p.token_type_ids or [[0] * len(ids) for ids in p.input_ids])]
        return cls([ids for p in parts for ids in p.input_ids], types, torch.cat([p.labels for p in parts]),
                   parts[0].pad_id, {k: TokenView.concat([p.views[k] for p in parts]) for k in parts[0].views})

    def batch(self, indices, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Pad the given examples to their longest.

        Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, L), ``labels`` (B,)
        and ``index`` (B,): positions in this Encoded, for looking up cached teacher outputs;
        plus each view's keys (:meth:`augrl.models.TokenView.batch`).
        """
        idx = [int(i) for i in indices]
        ids, mask, types = pad_rows(self.input_ids, self.token_type_ids, idx, self.pad_id)
        out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types,
               "labels": self.labels[idx], "index": torch.tensor(idx)}
        for vocab, view in self.views.items():
            out.update(view.batch(idx, vocab))
        return {k: v.to(device) for k, v in out.items()}


def encode(dataset, tokenizer, spec: TaskSpec, max_length: int = 128) -> Encoded:
    """Tokenise a task dataset (``text`` or ``text_a``/``text_b``, ``label``).

    Texts longer than ``max_length`` tokens are truncated (pairs: longest side first), never
    rejected. With a :class:`~augrl.models.TokenizerPair` the ids are the teacher's, and the
    student's tokenisation comes along as a view.
    """
    pair = tokenizer if isinstance(tokenizer, TokenizerPair) else None
    max_length = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
    fields = [list(dataset[f]) for f in spec.text_fields]  # datasets 5 returns lazy Columns
    enc = tokenizer(*fields, truncation=True, max_length=max_length)
    dtype = torch.float32 if spec.is_regression else torch.long
    labels = torch.tensor(list(dataset["label"]), dtype=dtype)
    types = enc.get("token_type_ids") if spec.pair else None
    views = pair.views(fields, enc["input_ids"], max_length) if pair is not None else {}
    return Encoded(enc["input_ids"], types, labels, tokenizer.pad_token_id or 0, views)


def iterate_batches(n: int, batch_size: int, generator: torch.Generator | None = None,
                    shuffle: bool = True) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``; the last batch may be smaller."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def length_batches(data: Encoded, batch_size: int) -> list[list[int]]:
    """Index batches over ``data`` grouped by token length (shortest first), so that a padded
    batch carries little padding; every index appears once."""
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


@torch.no_grad()
def predict(model, data: Encoded, batch_size: int = 128, device: torch.device | str = "cpu",
            **forward_kwargs) -> torch.Tensor:
    """Logits of ``model`` on every example, in the original order.

    Examples are grouped by length so that batches carry little padding.

    Returns:
        (N, num_labels) float32 tensor on the CPU.
    """
    was_training = model.training
    model.eval()
    out: torch.Tensor | None = None
    for idx in length_batches(data, batch_size):
        b = data.batch(idx, device)
        logits = model(**model_inputs(model, b), **forward_kwargs).logits.float().cpu()
        if out is None:
            out = torch.empty((len(data), logits.shape[-1]), dtype=torch.float32)
        out[torch.tensor(idx)] = logits
    model.train(was_training)
    return out if out is not None else torch.empty((0, 0))
