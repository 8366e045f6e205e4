"""The per-candidate observation of :class:`~augrl.envs.AugmentKDEnv`: names, bounds, values.

Every feature, in observation order, for C classes (RT, CIKM, RTE, Amazon: C = 2): ``2 C + 18``:

==============================  ============  =====================================================
feature                         raw range     meaning
==============================  ============  =====================================================
``teacher_prob_c``              [0, 1]        teacher's softmax probability of class c (C values)
``student_prob_c``              [0, 1]        student's softmax probability of class c (C values)
``kl_teacher_student``          [0, 20]       KL(teacher || student) on the candidate: the
                                              student's distillation loss on it (T = 1)
``student_label_loss``          [0, 20]       the student's cross-entropy to the inherited label
``teacher_entropy``             [0, log C]    entropy of the teacher's distribution (nats)
``student_entropy``             [0, log C]    entropy of the student's distribution
``teacher_prob_label``          [0, 1]        teacher's probability of the label the candidate
                                              inherits from its original (label preservation)
``student_prob_label``          [0, 1]        the student's probability of that label
``teacher_margin``              [0, 1]        teacher's top-1 minus top-2 probability
``teacher_contradicts_label``   {0, 1}        1 when the teacher's class is not the inherited label
``agreement``                   {0, 1}        1 when teacher and student predict the same class
``head_influence``              [-1e3, 1e3]   one-step influence at the classification head:
                                              ∇_W L_val · ∇_W L_cand (W the student's last linear
                                              layer; L_val = KL(teacher || student) on the reward's
                                              validation set, L_cand the candidate's logit loss);
                                              > 0: a step on it lowers the validation divergence
``repr_distance``               [0, 2]        cosine distance between the teacher's sentence
                                              representations of the candidate and its original
``val_max_cosine``              [-1, 1]       the largest cosine similarity of the candidate's
                                              teacher representation to a validation example's
``val_centroid_distance``       [0, 2]        cosine distance to the centroid of the validation
                                              set's teacher representations
``edit_fraction``               [0, 5]        augmenter's word edits / words of the original
``generator_logprob``           [-20, 0]      generator's ``log P(z|x)`` per word of the original
                                              (0 when the augmenter does not score its samples)
``length``                      [0, 512]      the candidate's token count
``is_source``                   {0, 1}        1 for candidates made from source-domain examples
``progress``                    [0, 1]        candidates decided so far / candidates per episode
==============================  ============  =====================================================

The teacher's sentence representation is what its classifier reads: the masked mean of the last
layer for the default mean-pool head, ``[CLS]`` for stock BERT heads. Student features come from
an eval-mode forward pass (no dropout), so they describe the student, not a dropout draw.

Regression (one output) starts with ``teacher_pred``, ``student_pred`` (clipped to [-100, 100]),
``squared_difference`` (the logit loss, clipped to [0, 100]), ``teacher_abs_error`` and
``student_abs_error`` (distance to the inherited score), ``agreement`` =
``exp(-|teacher - student|)``, ``head_influence`` (L_val: MSE to the teacher), then
``repr_distance`` ... ``progress`` as above.

**Which features an environment shows.** A feature that depends on the teacher alone and takes
one value over the whole pool (``generator_logprob`` for an augmenter that does not score,
``is_source`` for a target-only pool...) tells candidates nothing and is dropped:
:attr:`~augrl.envs.KDWorld.feature_names` lists those kept, in this order.

**Scale.** Raw values are clipped into their range. With ``normalize_obs`` (the default) the
environment then standardises every feature (:class:`FeatureScaler`) with its mean and standard
deviation over up to 512 of the pool's candidates seen by the student at every warm-start state
(measured once per world), and clips to [-5, 5]; ``progress`` uses those of a uniform [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch

KL_MAX, LOGPROB_MIN, EDIT_MAX, PRED_MAX, INFLUENCE_MAX, LENGTH_MAX = 20.0, -20.0, 5.0, 100.0, 1e3, 512.0
NORMALIZED_CLIP = 5.0

#: features that depend on the teacher and the pool alone (computed once per world; dropped
#: when constant over the pool); every other feature depends on the student.
STATIC = ("teacher_prob_", "teacher_entropy", "teacher_prob_label", "teacher_margin", "teacher_contradicts_label",
          "teacher_pred", "teacher_abs_error", "repr_distance", "val_max_cosine", "val_centroid_distance",
          "edit_fraction", "generator_logprob", "length", "is_source")

_SHARED_TAIL = [("head_influence", -INFLUENCE_MAX, INFLUENCE_MAX), ("repr_distance", 0.0, 2.0),
                ("val_max_cosine", -1.0, 1.0), ("val_centroid_distance", 0.0, 2.0),
                ("edit_fraction", 0.0, EDIT_MAX), ("generator_logprob", LOGPROB_MIN, 0.0),
                ("length", 0.0, LENGTH_MAX), ("is_source", 0.0, 1.0), ("progress", 0.0, 1.0)]


def feature_table(num_labels: int) -> list[tuple[str, float, float]]:
    """``(name, low, high)`` of every feature, in observation order (before constant ones are dropped)."""
    if num_labels == 1:
        head = [("teacher_pred", -PRED_MAX, PRED_MAX), ("student_pred", -PRED_MAX, PRED_MAX),
                ("squared_difference", 0.0, PRED_MAX), ("teacher_abs_error", 0.0, PRED_MAX),
                ("student_abs_error", 0.0, PRED_MAX), ("agreement", 0.0, 1.0)]
        return head + _SHARED_TAIL
    log_c = math.log(num_labels)
    head = ([(f"teacher_prob_{c}", 0.0, 1.0) for c in range(num_labels)]
            + [(f"student_prob_{c}", 0.0, 1.0) for c in range(num_labels)]
            + [("kl_teacher_student", 0.0, KL_MAX), ("student_label_loss", 0.0, KL_MAX),
               ("teacher_entropy", 0.0, log_c), ("student_entropy", 0.0, log_c),
               ("teacher_prob_label", 0.0, 1.0), ("student_prob_label", 0.0, 1.0),
               ("teacher_margin", 0.0, 1.0), ("teacher_contradicts_label", 0.0, 1.0), ("agreement", 0.0, 1.0)])
    return head + _SHARED_TAIL


def feature_names(num_labels: int) -> list[str]:
    """Every feature's name (the environment shows the subset in ``world.feature_names``)."""
    return [name for name, _, _ in feature_table(num_labels)]


def feature_bounds(num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """(F,) raw lows and highs as float32."""
    table = feature_table(num_labels)
    return (np.array([lo for _, lo, _ in table], dtype=np.float32),
            np.array([hi for _, _, hi in table], dtype=np.float32))


def is_static(name: str) -> bool:
    """Whether feature ``name`` depends on the teacher and the pool alone."""
    return any(name == s or (s.endswith("_") and name.startswith(s)) for s in STATIC)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def max_cosine_similarity(candidates: torch.Tensor, reference: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """(N,) the largest cosine similarity of each row of ``candidates`` (N, H) to any row of
    ``reference`` (V, H), in [-1, 1]; computed ``chunk`` candidates at a time."""
    a = torch.nn.functional.normalize(candidates.float(), dim=-1)
    b = torch.nn.functional.normalize(reference.float(), dim=-1)
    if len(a) == 0 or len(b) == 0:
        return torch.full((len(a),), float("nan"))
    return torch.cat([(a[i:i + chunk] @ b.T).max(-1).values for i in range(0, len(a), chunk)])


def centroid_cosine_distance(candidates: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(N,) cosine distance ``1 - cos(c_i, mean_v r_v)`` of each row of ``candidates`` (N, H) to
    the centroid of ``reference`` (V, H), in [0, 2]."""
    centroid = reference.float().mean(0, keepdim=True)
    return 1.0 - torch.nn.functional.cosine_similarity(candidates.float(), centroid, dim=-1)


def static_features(teacher_logits: torch.Tensor, labels: torch.Tensor, repr_distance: torch.Tensor,
                    edit_fraction: torch.Tensor, logprob_per_word: torch.Tensor, is_source: torch.Tensor,
                    val_max_cosine: torch.Tensor, val_centroid_distance: torch.Tensor,
                    length: torch.Tensor) -> dict[str, torch.Tensor]:
    """What does not change during an episode, per candidate (N rows each).

    Args:
        teacher_logits: (N, C) teacher outputs on the candidates.
        labels: (N,) inherited labels (class indices, or scores for regression).
        repr_distance, edit_fraction, logprob_per_word, is_source, val_max_cosine,
            val_centroid_distance, length: (N,) each.
    """
    out = {"repr_distance": repr_distance.float(), "edit_fraction": edit_fraction.float(),
           "generator_logprob": torch.nan_to_num(logprob_per_word.float(), nan=0.0),
           "is_source": is_source.float(), "val_max_cosine": val_max_cosine.float(),
           "val_centroid_distance": val_centroid_distance.float(), "length": length.float()}
    if teacher_logits.shape[-1] == 1:
        out["teacher_pred"] = teacher_logits[:, 0].float()
        out["teacher_abs_error"] = (teacher_logits[:, 0].float() - labels.float()).abs()
    else:
        p = torch.softmax(teacher_logits.float(), -1)
        out["teacher_prob"] = p
        out["teacher_entropy"] = _entropy(p)
        out["teacher_prob_label"] = p.gather(1, labels.long()[:, None])[:, 0]
        top2 = p.topk(2, dim=-1).values
        out["teacher_margin"] = top2[:, 0] - top2[:, 1]
        out["teacher_contradicts_label"] = (p.argmax(-1) != labels.long()).float()
    return out


def static_columns(static: dict[str, torch.Tensor], num_labels: int) -> dict[str, torch.Tensor]:
    """Each static feature of :func:`feature_table` by name, (N,) each."""
    cols = {}
    for name, _, _ in feature_table(num_labels):
        if not is_static(name):
            continue
        if name.startswith("teacher_prob_") and name != "teacher_prob_label":
            cols[name] = static["teacher_prob"][:, int(name.rsplit("_", 1)[1])]
        else:
            cols[name] = static[name]
    return cols


def logit_gradients(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                    hard_weight: float, soft_weight: float) -> torch.Tensor:
    """(N, C) gradient of a distillation loss with respect to the student's logits, at T = 1:
    ``soft_weight * (p_s - p_t) + hard_weight * (p_s - onehot(label))`` (regression:
    ``soft_weight * (s - t) + hard_weight * (s - label)``, the squared-error gradients up to 2)."""
    s = student_logits.float()
    if s.shape[-1] == 1:
        grad = soft_weight * (s - teacher_logits.float())
        if labels is not None and hard_weight:
            grad = grad + hard_weight * (s - labels.float()[:, None])
        return grad
    p_s = torch.softmax(s, -1)
    grad = soft_weight * (p_s - torch.softmax(teacher_logits.float(), -1))
    if labels is not None and hard_weight:
        grad = grad + hard_weight * (p_s - torch.nn.functional.one_hot(labels.long(), s.shape[-1]).float())
    return grad


def head_gradient(val_grads: torch.Tensor, val_inputs: torch.Tensor) -> torch.Tensor:
    """(C, H) gradient of the mean validation loss with respect to the head's weight:
    ``mean_v  g_v h_v^T`` for logit gradients ``val_grads`` (V, C) and head inputs (V, H)."""
    return val_grads.float().T @ val_inputs.float() / max(1, len(val_inputs))


def head_influence(head_grad: torch.Tensor | None, cand_grads: torch.Tensor, cand_inputs: torch.Tensor) -> torch.Tensor:
    """(B,) ``<G_val, g_b h_b^T>`` = ``g_b^T G_val h_b``: positive when a gradient step on the
    candidate lowers the validation loss (to first order, at the head's weight)."""
    if head_grad is None:
        return torch.zeros(len(cand_grads))
    return ((cand_grads.float() @ head_grad) * cand_inputs.float()).sum(-1)


def observation(static: dict[str, torch.Tensor], rows: torch.Tensor, student_logits: torch.Tensor,
                labels: torch.Tensor, progress: float, influence: torch.Tensor, low: np.ndarray,
                high: np.ndarray) -> np.ndarray:
    """The (B, F) float32 raw observation (every feature of :func:`feature_table`) of candidates
    ``rows`` given the student's eval-mode logits on them.

    Args:
        static: from :func:`static_features` over the whole pool.
        rows: (B,) pool indices.
        student_logits: (B, C) the student's outputs on those candidates.
        labels: (B,) their inherited labels.
        progress: fraction of the episode's candidates already decided.
        influence: (B,) :func:`head_influence` of the candidates.
        low, high: the bounds to clip to (from :func:`feature_bounds`).
    """
    s = student_logits.detach().float().cpu()
    rows = rows.cpu()
    if s.shape[-1] == 1:
        t = static["teacher_pred"][rows]
        sp = s[:, 0]
        cols = [t, sp, (t - sp) ** 2, static["teacher_abs_error"][rows], (sp - labels.float()).abs(),
                torch.exp(-(t - sp).abs())]
    else:
        tp = static["teacher_prob"][rows]
        log_sp = torch.log_softmax(s, -1)
        sp = log_sp.exp()
        kl = (tp * (torch.log(tp.clamp_min(1e-12)) - log_sp)).sum(-1)
        label_loss = -log_sp.gather(1, labels.long()[:, None])[:, 0]
        cols = [*tp.T, *sp.T, kl, label_loss, static["teacher_entropy"][rows], _entropy(sp),
                static["teacher_prob_label"][rows], sp.gather(1, labels.long()[:, None])[:, 0],
                static["teacher_margin"][rows], static["teacher_contradicts_label"][rows],
                (tp.argmax(-1) == sp.argmax(-1)).float()]
    cols += [influence.detach().float().cpu()]
    cols += [static[name][rows] for name in ("repr_distance", "val_max_cosine", "val_centroid_distance",
                                             "edit_fraction", "generator_logprob", "length", "is_source")]
    cols += [torch.full((len(rows),), float(progress))]
    obs = torch.stack([c.float() for c in cols], dim=1).numpy()
    return np.clip(np.nan_to_num(obs, nan=0.0), low, high).astype(np.float32)


class FeatureScaler:
    """Standardise features with fixed per-feature means and standard deviations, clipped.

    The environment measures them once per world (:meth:`augrl.envs.AugmentKDEnv.feature_scaler`)
    so that an observation depends only on the student and the candidates, never on what the
    environment showed before: ``reset(seed=s)`` gives the same observation every time.

    Args:
        mean, std: (F,) per feature; a zero std is treated as 1.
        clip: bound of the standardised values.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, clip: float = NORMALIZED_CLIP) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        std = np.asarray(std, dtype=np.float64)
        self.std = np.where(std > 1e-8, std, 1.0)
        self.clip = clip

    @classmethod
    def fit(cls, rows: np.ndarray, clip: float = NORMALIZED_CLIP) -> "FeatureScaler":
        """From an (N, F) sample of raw observations."""
        rows = np.asarray(rows, dtype=np.float64)
        return cls(rows.mean(0), rows.std(0), clip)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        z = (np.asarray(rows, dtype=np.float64) - self.mean) / self.std
        return np.clip(z, -self.clip, self.clip).astype(np.float32)
