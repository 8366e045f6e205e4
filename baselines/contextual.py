"""Contextual word replacement with a masked LM, batched (nlpaug's ContextualWordEmbsAug behaviour).

For each variant, ``ceil(p * W)`` words (W = words of the changeable sides; clipped to
``[min_words, max_words]`` and to the words that can be masked) are chosen at random, each is
replaced by one ``[MASK]``, and a word is sampled for every mask from the top ``top_k`` of the
MLM's distribution at temperature ``temperature`` (the original word, word pieces, special and
non-alphabetic tokens are never sampled). nlpaug's defaults: p = 0.3, 1..10 words, top_k = 100.

Unlike nlpaug, which runs one forward pass per masked position and computes the vocabulary
logits at every token, the variants of a whole batch of inputs (n per input) are predicted
together: one forward pass per ``forward_batch`` masked sequences (sorted by length), with the
LM head evaluated only at the masked positions and over the words that may be sampled. All
masks of a sequence are predicted at once, independently of each other.

Words are whitespace tokens. Text beyond the model's maximum length is kept unchanged (the MLM
sees the first ``max_length`` word pieces, pairs trimmed longest side first); words that the
tokenizer maps to ``[UNK]`` or to nothing (emoji, control characters) are never masked. Pairs are
fed as ``[CLS] a [SEP] b [SEP]`` so each side is predicted in the context of the other.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from augrl.errors import ConfigError

from .base import Augmenter, Example, words_of
from .mlm import MaskedLM, MLMConfig, describe, has_mlm_head, load_masked_lm, load_mlm

_ALPHA = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_WORDLIKE = re.compile(r"\w", re.UNICODE)


@dataclass
class MaskedRow:
    """One masked sequence: variant ``variant`` of example ``example``."""

    example: int
    variant: int
    ids: list[int]
    types: list[int]
    columns: list[int]  # positions of the masks in ``ids``
    targets: list[tuple[int, int]]  # (side, word index) replaced by each mask
    exclude: list[int]  # token id of the original word (not to be sampled), or -1
    choices: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # of each choice, over the top-k it was drawn from
    maskable: int = 0  # words that could have been masked (m)


class ContextualAugmenter(Augmenter):
    """Replace random words by masked-LM samples (see the module docstring).

    Args:
        mlm: ``minilm`` (default: the encoder with a head adapted on the task by :meth:`fit`),
            a hub name or folder of an encoder or of a masked LM, or a loaded
            :class:`~augrl.baselines.mlm.MaskedLM`.
        p: fraction of words replaced per variant (nlpaug's ``aug_p``).
        min_words, max_words: bounds on words replaced per variant (``aug_min``, ``aug_max``).
        top_k: sample among the ``top_k`` most likely whole-word tokens.
        temperature: softmax temperature of the sampling.
        stop_words: words never replaced (default: none, as nlpaug).
        adapt: adapt the MLM on the task in :meth:`fit` (default: when it has no trained head).
        mlm_steps: adaptation steps (default :class:`~augrl.baselines.mlm.MLMConfig`'s).
        mlm_config: other :class:`~augrl.baselines.mlm.MLMConfig` settings, e.g. ``{"lr": 2e-4}``.
        max_length: word pieces the MLM sees (the model's own limit applies too).
        forward_batch: masked sequences per forward pass.
        device: ``auto``, ``cpu``, ``cuda``...
        progress: show MLM adaptation progress.
        side, seed, batch_size: see :class:`~augrl.baselines.base.Augmenter`.
    """

    name = "contextual"
    uses_labels = False

    def __init__(self, mlm: str | MaskedLM = "minilm", p: float = 0.3, min_words: int = 1, max_words: int = 10,
                 top_k: int = 100, temperature: float = 1.0, stop_words: list[str] | None = None,
                 adapt: bool | None = None, mlm_steps: int | None = None, mlm_config: dict | None = None,
                 max_length: int = 128, forward_batch: int = 128, device: str = "auto", progress: bool = False,
                 side: str = "both", seed: int | None = None, batch_size: int = 64) -> None:
        super().__init__(side=side, seed=seed, batch_size=batch_size)
        if not 0.0 <= float(p) <= 1.0:
            raise ConfigError(f"p must be in [0, 1], got {p}")
        if int(min_words) < 0 or int(max_words) < max(1, int(min_words)):
            raise ConfigError(f"need 0 <= min_words <= max_words and max_words >= 1, got {min_words}, {max_words}")
        if int(top_k) < 1 or float(temperature) <= 0:
            raise ConfigError(f"top_k must be >= 1 and temperature > 0, got {top_k}, {temperature}")
        self.p, self.min_words, self.max_words = float(p), int(min_words), int(max_words)
        self.top_k, self.temperature = int(top_k), float(temperature)
        self.stop_words = frozenset(w.lower() for w in (stop_words or ()))
        self.adapt = adapt
        cfg = MLMConfig.from_dict(dict(mlm_config or {}), source="mlm_config")
        self.mlm_config = cfg if mlm_steps is None else cfg.replace(steps=int(mlm_steps))
        self.max_length, self.forward_batch = int(max_length), int(forward_batch)
        self.device, self.progress = device, bool(progress)
        self.mlm_name = mlm.path if isinstance(mlm, MaskedLM) else str(mlm)
        self._mlm: MaskedLM | None = mlm if isinstance(mlm, MaskedLM) else None
        self._pieces: dict[str, list[int]] = {}
        self._allowed: torch.Tensor | None = None
        self._token_text: dict[int, str] = {}

    def params(self):
        return {"mlm": self.mlm_name, "p": self.p, "min_words": self.min_words, "max_words": self.max_words,
                "top_k": self.top_k, "temperature": self.temperature, "stop_words": sorted(self.stop_words),
                "mlm_config": self.mlm_config.to_dict(), "max_length": self.max_length, **super().params()}

    # ------------------------------------------------------------------ the model

    def fit(self, task):
        """Load the MLM; an encoder without a head is adapted on ``task`` (cached on disk)."""
        self.set_mlm(load_mlm(self.mlm_name, task=task, adapt=self.adapt, cfg=self.mlm_config,
                              device=self.device, progress=self.progress))
        return self

    def set_mlm(self, mlm: MaskedLM) -> None:
        """Use ``mlm`` from now on (resets the per-tokenizer tables)."""
        self._mlm = mlm
        self._pieces, self._token_text, self._allowed = {}, {}, None

    def masked_lm(self) -> MaskedLM:
        """The MLM in use; a model with a trained head is loaded on first use without :meth:`fit`."""
        if self._mlm is None:
            from augrl.models import resolve_model
            from augrl.runtime import select_device

            path = resolve_model(self.mlm_name)
            if not has_mlm_head(path):
                raise ConfigError(f"{self.name}: {self.mlm_name!r} has no trained masked-LM head; call "
                                  "fit(task) to adapt it on the task's text, or pass a masked LM")
            self.set_mlm(load_masked_lm(path, select_device(self.device)))
        return self._mlm

    def describe_mlm(self) -> dict:
        """Where the MLM came from and its held-out masked-token accuracy (when adapted)."""
        return describe(self.masked_lm())

    # ------------------------------------------------------------------ tokenizer tables

    def _token_string(self, token_id: int) -> str:
        if token_id not in self._token_text:
            token = self.masked_lm().tokenizer.convert_ids_to_tokens(int(token_id))
            self._token_text[token_id] = token.lstrip("Ġ▁")
        return self._token_text[token_id]

    def _allowed_ids(self) -> torch.Tensor:
        """(V,) bool: tokens that may be sampled (whole alphabetic words, no special tokens)."""
        if self._allowed is None:
            mlm = self.masked_lm()
            tok = mlm.tokenizer
            vocab_size = mlm.head(torch.zeros(1, mlm.model.config.hidden_size, device=mlm.device)).shape[-1]
            special = set(tok.all_special_ids)
            word_start = self._bpe()  # BPE vocabularies mark whole words by a leading Ġ / ▁
            allowed = torch.zeros(vocab_size, dtype=torch.bool)
            for token, index in tok.get_vocab().items():
                if index < vocab_size and index not in special and not token.startswith("##") \
                        and (not word_start or token[:1] in ("Ġ", "▁")) and _ALPHA.fullmatch(token.lstrip("Ġ▁")):
                    allowed[index] = True
            self._allowed = allowed.to(mlm.device)
        return self._allowed

    def _sampleable(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampleable token ids (K,) and each vocabulary id's index among them (V,), -1 if none."""
        allowed = self._allowed_ids()
        vocabulary = allowed.nonzero(as_tuple=True)[0]
        index_of = torch.full((len(allowed),), -1, dtype=torch.long, device=allowed.device)
        index_of[vocabulary] = torch.arange(len(vocabulary), device=allowed.device)
        return vocabulary, index_of

    def _word_pieces(self, words: list[str]) -> None:
        """Tokenise unseen words (all at once) into ``self._pieces``."""
        new = [w for w in dict.fromkeys(words) if w not in self._pieces]
        if not new:
            return
        if len(self._pieces) > 500_000:
            self._pieces.clear()
        tok = self.masked_lm().tokenizer
        prefix = " " if self._bpe() else ""
        ids = tok([prefix + w for w in new], add_special_tokens=False)["input_ids"]
        self._pieces.update(zip(new, ids))

    def _bpe(self) -> bool:
        """Whether the tokenizer marks a word start by a leading space (RoBERTa's BPE; not WordPiece)."""
        tok = self.masked_lm().tokenizer
        return tok.tokenize(" a") != tok.tokenize("a")

    # ------------------------------------------------------------------ label conditioning hook

    def _type_ids(self, lengths: tuple[int, ...], label) -> list[int]:
        """Token type ids of ``[CLS] a [SEP] (b [SEP])``: segment ids (CBERT: the label)."""
        if len(lengths) == 1:
            return [0] * (lengths[0] + 2)
        return [0] * (lengths[0] + 2) + [1] * (lengths[1] + 1)

    def _check_labels(self, labels, count: int) -> list | None:
        return labels

    # ------------------------------------------------------------------ augmentation

    def _window(self, pieces: list[list[list[int]]], budget: int) -> list[int]:
        """How many leading words of each side fit in ``budget`` word pieces (longest side trimmed first)."""
        counts = [len(p) for p in pieces]
        sizes = [sum(len(w) for w in side) for side in pieces]
        while sum(sizes) > budget:
            s = int(np.argmax(sizes))
            counts[s] -= 1
            sizes[s] -= len(pieces[s][counts[s]])
        return counts

    def _mask_count(self, rng: np.random.Generator, maskable: int, in_window: int) -> int:
        """Words to replace in one variant: ``ceil(p * words)`` within ``[min_words, max_words]``."""
        return min(max(self.min_words, math.ceil(self.p * in_window)), self.max_words, maskable)

    def _augment_examples(self, examples, n, labels, rngs):
        rows = self.masked_rows(examples, n, labels, rngs)
        self._predict(rows, rngs)
        return self.fill_rows(examples, rows, n)

    def masked_rows(self, examples, n, labels, rngs) -> list[MaskedRow]:
        """One masked sequence per variant that changes anything (see the module docstring).

        Also leaves the number of maskable words of each example in ``self._maskable_counts``.
        """
        mlm = self.masked_lm()
        self._maskable_counts: list[int] = []
        labels = self._check_labels(labels, len(examples))
        tok = mlm.tokenizer
        cls_id, sep_id, mask_id = tok.cls_token_id, tok.sep_token_id, tok.mask_token_id
        if cls_id is None:
            cls_id = tok.bos_token_id
        if sep_id is None:
            sep_id = tok.eos_token_id
        unk = tok.unk_token_id
        words = [[words_of(side) for side in ex] for ex in examples]
        self._word_pieces([w for ex in words for side in ex for w in side])
        budget = min(self.max_length, mlm.max_length)

        rows: list[MaskedRow] = []
        for i, (example, sides) in enumerate(zip(examples, words)):
            pieces = [[self._pieces[w] for w in side] for side in sides]
            window = self._window(pieces, max(0, budget - len(example) - 1))  # [CLS] and one [SEP] per side
            change = self.changeable(example)
            maskable = [(s, w) for s in range(len(sides)) if change[s] for w in range(window[s])
                        if pieces[s][w] and unk not in pieces[s][w] and _WORDLIKE.search(sides[s][w])
                        and sides[s][w].lower() not in self.stop_words]
            in_window = sum(window[s] for s in range(len(sides)) if change[s])
            self._maskable_counts.append(len(maskable))
            label = None if labels is None else labels[i]
            for j in range(n):
                k = self._mask_count(rngs[i], len(maskable), in_window)
                if k == 0:
                    continue
                chosen = sorted(maskable[c] for c in rngs[i].choice(len(maskable), size=k, replace=False))
                chosen_set = set(chosen)
                ids, columns, targets, exclude, lengths = [cls_id], [], [], [], []
                for s in range(len(sides)):
                    start = len(ids)
                    for w in range(window[s]):
                        if (s, w) in chosen_set:
                            columns.append(len(ids))
                            targets.append((s, w))
                            exclude.append(pieces[s][w][0] if len(pieces[s][w]) == 1 else -1)
                            ids.append(mask_id)
                        else:
                            ids.extend(pieces[s][w])
                    lengths.append(len(ids) - start)
                    ids.append(sep_id)
                rows.append(MaskedRow(i, j, ids, self._type_ids(tuple(lengths), label), columns, targets, exclude,
                                 maskable=len(maskable)))

        return rows

    def fill_rows(self, examples, rows: list[MaskedRow], n: int) -> list[list[Example]]:
        """The variants: each example's words with its rows' choices put in."""
        words = [[words_of(side) for side in ex] for ex in examples]
        out = []
        by_key = {(r.example, r.variant): r for r in rows}
        for i, (example, sides) in enumerate(zip(examples, words)):
            variants = []
            for j in range(n):
                row = by_key.get((i, j))
                if row is None:
                    variants.append(example)
                    continue
                new = [list(side) for side in sides]
                for (s, w), choice in zip(row.targets, row.choices):
                    if choice:
                        new[s][w] = choice
                variants.append(tuple(" ".join(ws) if ws != orig_ws else text
                                      for ws, orig_ws, text in zip(new, sides, example)))
            out.append(variants)
        return out

    @torch.no_grad()
    def _predict(self, rows: list[MaskedRow], rngs: list[np.random.Generator]) -> None:
        """Fill ``row.choices`` for every row: batched forward passes, then seeded sampling."""
        if not rows:
            return
        mlm = self.masked_lm()
        vocabulary, index_of = self._sampleable()
        k = int(min(self.top_k, len(vocabulary)))
        pad = mlm.tokenizer.pad_token_id or 0
        order = sorted(range(len(rows)), key=lambda r: len(rows[r].ids))
        top_values: dict[int, np.ndarray] = {}
        top_ids: dict[int, np.ndarray] = {}
        for start in range(0, len(order), self.forward_batch):
            batch = [rows[r] for r in order[start:start + self.forward_batch]]
            length = max(len(r.ids) for r in batch)
            ids = torch.full((len(batch), length), pad, dtype=torch.long)
            types = torch.zeros((len(batch), length), dtype=torch.long)
            attention = torch.zeros((len(batch), length), dtype=torch.long)
            positions = []
            for b, row in enumerate(batch):
                ids[b, :len(row.ids)] = torch.tensor(row.ids)
                types[b, :len(row.types)] = torch.tensor(row.types)
                attention[b, :len(row.ids)] = 1
                positions.extend((b, c) for c in row.columns)
            pos = torch.tensor(positions, dtype=torch.long, device=mlm.device)
            # logits over the sampleable words only; no log-softmax over them: a Gumbel draw and the
            # logprob renormalised over the top k are the same for logits shifted by a constant
            logits = mlm.masked_logits(ids.to(mlm.device), attention.to(mlm.device), pos, types.to(mlm.device),
                                       vocabulary=vocabulary).float()
            original = torch.tensor([e for row in batch for e in row.exclude], device=mlm.device)
            exclude = torch.where(original >= 0, index_of[original.clamp(min=0)], -1)  # its sampleable index
            has = exclude >= 0
            if bool(has.any()):
                logits[has.nonzero(as_tuple=True)[0], exclude[has]] = float("-inf")
            if self.temperature != 1.0:
                logits = logits / self.temperature
            values, indices = torch.topk(logits, k, dim=-1)
            values, indices = values.cpu().numpy(), vocabulary[indices].cpu().numpy()
            offset = 0
            for row in batch:
                m = len(row.columns)
                key = id(row)
                top_values[key], top_ids[key] = values[offset:offset + m], indices[offset:offset + m]
                offset += m
        for row in rows:  # sample in input order: each example's generator is consumed deterministically
            rng = rngs[row.example]
            values, indices = top_values[id(row)], top_ids[id(row)]
            for v, ix in zip(values, indices):
                finite = np.isfinite(v)
                if not finite.any():
                    row.choices.append("")
                    continue
                score = np.where(finite, v, -np.inf) + rng.gumbel(size=v.shape)
                pick = int(np.argmax(score))
                row.choices.append(self._token_string(int(ix[pick])))
                row.logprobs.append(float(v[pick] - np.logaddexp.reduce(v[finite])))
