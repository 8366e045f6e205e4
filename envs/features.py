"""The per-candidate observation of :class:`~augrl.envs.AugmentKDEnv`: names, bounds, values.

Classification with C classes (RT, CIKM, RTE, Amazon: C = 2) gives ``2 C + 11`` features:

=======================  ===========  ======================================================
feature                  range        meaning
=======================  ===========  ======================================================
``teacher_prob_c``       [0, 1]       teacher's softmax probability of class c (C values)
``student_prob_c``       [0, 1]       student's softmax probability of class c (C values)
``kl_teacher_student``   [0, 20]      KL(teacher || student) of the two distributions
``teacher_entropy``      [0, log C]   entropy of the teacher's distribution (nats)
``student_entropy``      [0, log C]   entropy of the student's distribution
``teacher_prob_label``   [0, 1]       teacher's probability of the label the candidate
                                      inherits from its original (label preservation)
``student_prob_label``   [0, 1]       the student's probability of that label
``agreement``            {0, 1}       1 when teacher and student predict the same class
``repr_distance``        [0, 2]       cosine distance between the teacher's sentence
                                      representations of the candidate and its original
                                      (what the teacher's classifier reads: the masked mean
                                      of the last layer for the default mean-pool head,
                                      ``[CLS]`` for stock BERT heads)
``edit_fraction``        [0, 5]       augmenter's word edits / words of the original
``generator_logprob``    [-20, 0]     generator's ``log P(z|x)`` per word of the original
                                      (0 when the augmenter does not score its samples)
``is_source``            {0, 1}       1 for candidates made from source-domain examples
``progress``             [0, 1]       candidates decided so far / candidates per episode
=======================  ===========  ======================================================

Regression (one output) gives 11 features: ``teacher_pred``, ``student_pred`` (both clipped
to [-100, 100]), ``squared_difference`` (clipped to [0, 100]), ``teacher_abs_error`` and
``student_abs_error`` (distance to the inherited score, clipped to [0, 100]), ``agreement``
= ``exp(-|teacher - student|)``, then ``repr_distance`` ... ``progress`` as above.

Values are clipped into their range, so every observation lies in the space.
"""

from __future__ import annotations

import math

import numpy as np
import torch

KL_MAX, LOGPROB_MIN, EDIT_MAX, PRED_MAX = 20.0, -20.0, 5.0, 100.0

_SHARED_TAIL = [("repr_distance", 0.0, 2.0), ("edit_fraction", 0.0, EDIT_MAX),
                ("generator_logprob", LOGPROB_MIN, 0.0), ("is_source", 0.0, 1.0), ("progress", 0.0, 1.0)]


def feature_table(num_labels: int) -> list[tuple[str, float, float]]:
    """``(name, low, high)`` of every feature, in observation order."""
    if num_labels == 1:
        head = [("teacher_pred", -PRED_MAX, PRED_MAX), ("student_pred", -PRED_MAX, PRED_MAX),
                ("squared_difference", 0.0, PRED_MAX), ("teacher_abs_error", 0.0, PRED_MAX),
                ("student_abs_error", 0.0, PRED_MAX), ("agreement", 0.0, 1.0)]
        return head + _SHARED_TAIL
    log_c = math.log(num_labels)
    head = ([(f"teacher_prob_{c}", 0.0, 1.0) for c in range(num_labels)]
            + [(f"student_prob_{c}", 0.0, 1.0) for c in range(num_labels)]
            + [("kl_teacher_student", 0.0, KL_MAX), ("teacher_entropy", 0.0, log_c),
               ("student_entropy", 0.0, log_c), ("teacher_prob_label", 0.0, 1.0),
               ("student_prob_label", 0.0, 1.0), ("agreement", 0.0, 1.0)])
    return head + _SHARED_TAIL


def feature_names(num_labels: int) -> list[str]:
    return [name for name, _, _ in feature_table(num_labels)]


def feature_bounds(num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """(F,) lows and highs as float32."""
    table = feature_table(num_labels)
    return (np.array([lo for _, lo, _ in table], dtype=np.float32),
            np.array([hi for _, _, hi in table], dtype=np.float32))


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def static_features(teacher_logits: torch.Tensor, labels: torch.Tensor, repr_distance: torch.Tensor,
                    edit_fraction: torch.Tensor, logprob_per_word: torch.Tensor,
                    is_source: torch.Tensor) -> dict[str, torch.Tensor]:
    """What does not change during an episode, per candidate (N rows each).

    Args:
        teacher_logits: (N, C) teacher outputs on the candidates.
        labels: (N,) inherited labels (class indices, or scores for regression).
        repr_distance, edit_fraction, logprob_per_word, is_source: (N,) each.
    """
    out = {"repr_distance": repr_distance.float(), "edit_fraction": edit_fraction.float(),
           "generator_logprob": torch.nan_to_num(logprob_per_word.float(), nan=0.0),
           "is_source": is_source.float()}
    if teacher_logits.shape[-1] == 1:
        out["teacher_pred"] = teacher_logits[:, 0].float()
        out["teacher_abs_error"] = (teacher_logits[:, 0].float() - labels.float()).abs()
    else:
        p = torch.softmax(teacher_logits.float(), -1)
        out["teacher_prob"] = p
        out["teacher_entropy"] = _entropy(p)
        out["teacher_prob_label"] = p.gather(1, labels.long()[:, None])[:, 0]
    return out


def observation(static: dict[str, torch.Tensor], rows: torch.Tensor, student_logits: torch.Tensor,
                labels: torch.Tensor, progress: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The (B, F) float32 observation of candidates ``rows`` given the student's logits on them.

    Args:
        static: from :func:`static_features` over the whole pool.
        rows: (B,) pool indices.
        student_logits: (B, C) the student's outputs on those candidates.
        labels: (B,) their inherited labels.
        progress: fraction of the episode's candidates already decided.
        low, high: the bounds to clip to (from :func:`feature_bounds`).
    """
    s = student_logits.detach().float().cpu()
    rows = rows.cpu()
    cols: list[torch.Tensor] = []
    if s.shape[-1] == 1:
        t = static["teacher_pred"][rows]
        sp = s[:, 0]
        cols = [t, sp, (t - sp) ** 2, static["teacher_abs_error"][rows], (sp - labels.float()).abs(),
                torch.exp(-(t - sp).abs())]
    else:
        tp = static["teacher_prob"][rows]
        sp = torch.softmax(s, -1)
        kl = (tp * (torch.log(tp.clamp_min(1e-12)) - torch.log(sp.clamp_min(1e-12)))).sum(-1)
        cols = [*tp.T, *sp.T, kl, static["teacher_entropy"][rows], _entropy(sp), static["teacher_prob_label"][rows],
                sp.gather(1, labels.long()[:, None])[:, 0], (tp.argmax(-1) == sp.argmax(-1)).float()]
    cols += [static["repr_distance"][rows], static["edit_fraction"][rows], static["generator_logprob"][rows],
             static["is_source"][rows], torch.full((len(rows),), float(progress))]
    obs = torch.stack([c.float() for c in cols], dim=1).numpy()
    return np.clip(np.nan_to_num(obs, nan=0.0), low, high).astype(np.float32)
