"""L2A's constrained generator ``P_s`` and its trainable masked LM ``G_theta`` (Feng et al., AAAI 2021).

A sample z of an input x with m replaceable words is drawn in three steps,
``P_s(z|x) = P(d|x) P(o|d,x) P(w|o,d,x)``:

1. an edit distance d in 0..m with ``P(d|x) = exp(-d/alpha) c(d,m) / sum_e exp(-e/alpha) c(e,m)``,
   where ``c(d,m) = C(m,d)`` counts the position sets of size d (:func:`edit_distance_probs`;
   ``candidate_factor=True`` also counts the words each position can take, ``c = C(m,d) k^d``);
2. d positions chosen uniformly without replacement: each position is chosen with probability
   d/m, and the chosen set has ``P(o|d,x) = 1 / C(m,d)``;
3. each chosen word replaced by ``w ~ softmax(MLM logit(w) / T)`` over the MLM's ``top_k``
   whole-word candidates at that position (the original word excluded unless
   ``keep_original``); all positions of a sample are masked together and every sample of a
   batch is predicted in one forward pass (the batched path of
   :class:`~augrl.baselines.contextual.ContextualAugmenter`).

``log P_s(z|x)`` is the sum of the three logs; with the default ``c = C(m,d)`` the first two
give ``-d/alpha - log Z``. Small T keeps samples near the MLM's best guesses (T -> 0 gives its
argmax); larger alpha moves probability to larger d.

The MLM is the task-adapted masked LM (:func:`augrl.baselines.mlm.load_mlm`); it is
``G_theta`` and :meth:`L2AGenerator.update` trains it with L2A's loss
``-E_{z~P_s}[(log P_s(z) + pi_phi(z)) log P_G(z|x)]``, ``pi_phi(z)`` being the selector's keep
probability, so later samples drift towards what the selector keeps.

Registered as the augmenter ``l2a``; :meth:`L2AGenerator.augment_scored` returns each sample
with ``log P_s(z|x)`` and d, which the candidate pool (:mod:`augrl.pool`) records. The mix of
source and target inputs is the pool's ``source_fraction``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import torch
from scipy.special import gammaln

from augrl.baselines.base import as_example, example_rngs
from augrl.baselines.contextual import ContextualAugmenter, MaskedRow
from augrl.errors import ConfigError


def edit_distance_probs(m: int, alpha: float, candidate_factor: int | None = None) -> np.ndarray:
    """``P(d|x)`` for d = 0..m: ``exp(-d/alpha) c(d,m)``, normalised.

    Args:
        m: replaceable words of x.
        alpha: > 0; larger alpha puts more mass on larger d.
        candidate_factor: None: ``c(d,m) = C(m,d)``; an integer k: ``c(d,m) = C(m,d) k^d`` (each of
            the d positions can take k words).

    Returns:
        (m + 1,) float64 probabilities.
    """
    if m < 0:
        raise ValueError(f"m must be >= 0, got {m}")
    if alpha <= 0:
        raise ConfigError(f"alpha must be > 0, got {alpha}")
    d = np.arange(m + 1, dtype=np.float64)
    log_c = gammaln(m + 1) - gammaln(d + 1) - gammaln(m - d + 1)
    if candidate_factor:
        log_c = log_c + d * math.log(candidate_factor)
    logits = -d / alpha + log_c
    p = np.exp(logits - logits.max())
    return p / p.sum()


class Sample(NamedTuple):
    """One generated sample: its text (str or pair), ``log P_s(z|x)`` and its edit distance d."""

    text: object
    logprob: float
    edits: int


class L2AGenerator(ContextualAugmenter):
    """L2A's constrained search space ``P_s`` over a task-adapted masked LM (module docstring).

    Args:
        alpha: edit-distance scale of ``P(d|x)`` (the paper sweeps 0.5..4).
        temperature: T of the word distribution (the paper sweeps 0.5..2).
        top_k: candidate words per position.
        keep_original: allow a position to keep its word (default: the original is excluded,
            so every chosen position changes).
        candidate_factor: ``c(d,m) = C(m,d) top_k^d`` instead of ``C(m,d)``.
        max_edits: at most this many replaced words per sample (None: m).
        mlm, mlm_steps, mlm_config, adapt, max_length, forward_batch, device, progress, side,
            seed, batch_size: as :class:`~augrl.baselines.contextual.ContextualAugmenter`.
    """

    name = "l2a"

    def __init__(self, alpha: float = 1.0, temperature: float = 1.0, top_k: int = 50, keep_original: bool = False,
                 candidate_factor: bool = False, max_edits: int | None = None, mlm="minilm",
                 mlm_steps: int | None = None, mlm_config: dict | None = None, adapt: bool | None = None,
                 max_length: int = 128, forward_batch: int = 128, device: str = "auto", progress: bool = False,
                 side: str = "both", seed: int | None = None, batch_size: int = 64) -> None:
        super().__init__(mlm=mlm, top_k=top_k, temperature=temperature, adapt=adapt, mlm_steps=mlm_steps,
                         mlm_config=mlm_config, max_length=max_length, forward_batch=forward_batch, device=device,
                         progress=progress, side=side, seed=seed, batch_size=batch_size)
        if float(alpha) <= 0:
            raise ConfigError(f"alpha must be > 0, got {alpha}")
        if max_edits is not None and int(max_edits) < 1:
            raise ConfigError(f"max_edits must be >= 1 or None, got {max_edits}")
        self.alpha = float(alpha)
        self.keep_original = bool(keep_original)
        self.candidate_factor = bool(candidate_factor)
        self.max_edits = None if max_edits is None else int(max_edits)
        self._scores: list[list[tuple[float, int]]] = []
        self.updates = 0

    def params(self):
        p = super().params()
        for k in ("p", "min_words", "max_words", "stop_words"):
            p.pop(k, None)
        return {**p, "alpha": self.alpha, "keep_original": self.keep_original,
                "candidate_factor": self.candidate_factor, "max_edits": self.max_edits, "updates": self.updates}

    # ------------------------------------------------------------------ P(d|x), P(o|d,x)

    def _d_probs(self, m: int) -> np.ndarray:
        p = edit_distance_probs(m, self.alpha, self.top_k if self.candidate_factor else None)
        if self.max_edits is not None and m > self.max_edits:
            p = p.copy()
            p[self.max_edits + 1:] = 0.0
            p /= p.sum()
        return p

    def _mask_count(self, rng: np.random.Generator, maskable: int, in_window: int) -> int:
        return int(rng.choice(maskable + 1, p=self._d_probs(maskable))) if maskable else 0

    def _position_logprob(self, m: int, d: int) -> float:
        """``log P(d|x) + log P(o|d,x)`` of a sample with d of m words replaced."""
        return float(np.log(self._d_probs(m)[d]) - (gammaln(m + 1) - gammaln(d + 1) - gammaln(m - d + 1)))

    # ------------------------------------------------------------------ sampling with scores

    def _predict(self, rows: list[MaskedRow], rngs) -> None:
        if self.keep_original:
            for row in rows:
                row.exclude = [-1] * len(row.exclude)
        super()._predict(rows, rngs)

    def _augment_examples(self, examples, n, labels, rngs):
        rows = self.masked_rows(examples, n, labels, rngs)
        maskable = list(self._maskable_counts)
        self._predict(rows, rngs)
        by_key = {(r.example, r.variant): r for r in rows}
        for i in range(len(examples)):
            scores = []
            for j in range(n):
                row = by_key.get((i, j))
                if row is None:  # d = 0 (or nothing replaceable): the input itself
                    scores.append((self._position_logprob(maskable[i], 0) if maskable[i] else 0.0, 0))
                    continue
                d = len(row.columns)
                scores.append((self._position_logprob(row.maskable, d) + float(sum(row.logprobs)), d))
            self._scores.append(scores)
        return self.fill_rows(examples, rows, n)

    def augment_scored(self, texts, n: int = 1, labels: Sequence | None = None, seed: int | None = None,
                       batch_size: int | None = None) -> list[list[Sample]]:
        """``n`` samples of each input with ``log P_s(z|x)`` and d (see :meth:`augment`)."""
        if isinstance(texts, str):
            texts = [texts]
        converted = [as_example(t) for t in texts]
        seed = self.seed if seed is None else seed
        self._scores = []
        variants = self.augment_examples([e for e, _ in converted], [p for _, p in converted], n, labels,
                                         example_rngs(seed, range(len(converted))), batch_size)
        scores, self._scores = self._scores, []
        return [[Sample(v, lp, d) for v, (lp, d) in zip(vs, sc)] for vs, sc in zip(variants, scores)]

    # ------------------------------------------------------------------ G_theta

    def sample_logprob(self, originals: Sequence, samples: Sequence, grad: bool = False) -> torch.Tensor:
        """``log P_G(z|x)`` under the current MLM: for each (original, sample) pair, the sum over the
        words that differ of the MLM's log-probability of the sample's word with those words
        masked (first word piece; words the tokenizer splits are scored by their first piece).

        Returns (N,) float32 (with gradients when ``grad``).
        """
        mlm = self.masked_lm()
        tok = mlm.tokenizer
        ids_batch, positions, targets = [], [], []
        for row, (orig, samp) in enumerate(zip(originals, samples)):
            o_sides, _ = as_example(orig)
            s_sides, _ = as_example(samp)
            ids = [tok.cls_token_id]
            for o, s in zip(o_sides, s_sides):
                ow, sw = o.split(), s.split()
                if len(ow) != len(sw):
                    raise ValueError(f"sample {samp!r} is not a word-for-word edit of {orig!r}")
                self._word_pieces(sw)
                for a, b in zip(ow, sw):
                    pieces = self._pieces[b] or [tok.unk_token_id]
                    if a != b:
                        positions.append((row, len(ids)))
                        targets.append(pieces[0])
                        ids.append(tok.mask_token_id)
                    else:
                        ids.extend(pieces)
                ids.append(tok.sep_token_id)
            ids_batch.append(ids[: mlm.max_length])
        positions = [(r, c) for r, c in positions if c < mlm.max_length]
        targets = targets[: len(positions)]
        out = torch.zeros(len(samples), device=mlm.device)
        if not positions:
            return out
        length = max(len(i) for i in ids_batch)
        pad = tok.pad_token_id or 0
        input_ids = torch.full((len(ids_batch), length), pad, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for r, ids in enumerate(ids_batch):
            input_ids[r, :len(ids)] = torch.tensor(ids)
            attention[r, :len(ids)] = 1
        pos = torch.tensor(positions, device=mlm.device)
        with torch.set_grad_enabled(grad):
            logits = mlm.masked_logits(input_ids.to(mlm.device), attention.to(mlm.device), pos)
            logp = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(targets, device=mlm.device)[:, None])[:, 0]
            return out.index_add(0, pos[:, 0], logp)

    def update(self, originals: Sequence, samples: Sequence, logprob_s: Sequence[float], keep_prob: Sequence[float],
               lr: float = 1e-5, steps: int = 1, batch_size: int = 32, seed: int = 0) -> dict:
        """One L2A update of ``G_theta`` (the MLM) on generated samples.

        Loss: ``-mean_z w(z) log P_G(z|x) / d(z)`` over samples with d >= 1, where the L2A weight
        ``log P_s(z) + pi_phi(z)`` is normalised for stability: ``log P_s`` is taken per edited
        word (it grows with d), the sum is standardised over the samples (zero mean, unit
        variance: the mean acts as a baseline, so low-weighted samples are pushed down and
        high-weighted ones up) and clipped to [-3, 3]; ``log P_G`` is also per edited word.

        Args:
            originals, samples: inputs and their samples (word-for-word edits).
            logprob_s: ``log P_s(z|x)`` of each sample.
            keep_prob: the selector's keep probability ``pi_phi(z)`` of each sample.
            lr: AdamW learning rate; steps: passes over the samples; batch_size: samples per step.

        Returns:
            ``{"loss": mean loss, "samples": samples used, "weight_std": std before standardising}``.
        """
        mlm = self.masked_lm()
        edits = np.array([sum(a != b for a, b in zip(" ".join(as_example(o)[0]).split(), " ".join(as_example(s)[0]).split()))
                          for o, s in zip(originals, samples)])
        use = np.flatnonzero(edits > 0)
        if len(use) < 2:
            return {"loss": 0.0, "samples": int(len(use)), "weight_std": 0.0}
        raw = np.asarray(logprob_s, dtype=np.float64)[use] / edits[use] + np.asarray(keep_prob, dtype=np.float64)[use]
        std = float(raw.std())
        weights = np.clip((raw - raw.mean()) / (std + 1e-8), -3.0, 3.0)
        model = mlm.model
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        if not hasattr(self, "_optimizer") or self._optimizer_model is not model:
            self._optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
            self._optimizer_model = model
        for group in self._optimizer.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng(seed)
        losses = []
        for _ in range(int(steps)):
            order = rng.permutation(len(use))
            for start in range(0, len(use), batch_size):
                chunk = order[start:start + batch_size]
                rows = use[chunk]
                logp = self.sample_logprob([originals[i] for i in rows], [samples[i] for i in rows], grad=True)
                w = torch.tensor(weights[chunk], dtype=torch.float32, device=logp.device)
                loss = -(w * logp / torch.tensor(edits[rows], dtype=torch.float32, device=logp.device)).mean()
                self._optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                self._optimizer.step()
                losses.append(float(loss.detach()))
        model.eval()
        self.updates += 1
        return {"loss": float(np.mean(losses)), "samples": int(len(use)), "weight_std": std}

