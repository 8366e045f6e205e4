"""Meta-KD's domain machinery (Pan et al., ACL 2021), independent of any training loop.

- :func:`prototype_scores`: how typical each instance is of its class, in its own domain and
  across the other domains (the meta-teacher's instance weights t_i);
- :func:`expertise_weights`: the teacher's domain expertise lambda_i on an instance, which
  weights every meta-distillation loss;
- :class:`DomainHead`: the domain representation ``tanh(W (E_domain[d] + mean_tokens(H)) + b)``
  used by the meta-teacher's domain-corruption loss and by the student's domain-transfer loss;
- the ``domain_transfer`` loss (registered in :data:`augrl.kd.LOSSES`).

The trainer that puts these together is :mod:`augrl.kd.metakd`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from augrl.kd.layer_map import LayerMap
from augrl.kd.losses import layer_of, reduce_loss, register_loss, token_mask
from augrl.kd.outputs import Outputs
from augrl.models import masked_mean


def prototype_scores(embeddings: torch.Tensor, labels: torch.Tensor, domains: torch.Tensor,
                     alpha: float = 0.5) -> torch.Tensor:
    """Meta-KD's prototype-based instance scores.

    The prototype of class m in domain k is the mean embedding of its instances,
    ``p_m^(k) = mean_{x in D_m^(k)} h(x)``. Instance i (class y_i, domain d_i) scores::

        t_i = alpha * cos(h_i, p_{y_i}^(d_i)) + (1 - alpha) * mean_{k != d_i} cos(h_i, p_{y_i}^(k))

    i.e. the paper's ``zeta = (1 - alpha) / (K - 1)`` times the sum over the other K - 1 domains.
    Other domains without class y_i are left out of the mean; with no other domain at all,
    ``t_i = cos(h_i, p_{y_i}^(d_i))``.

    Args:
        embeddings: (N, H) instance representations h(x).
        labels: (N,) class indices.
        domains: (N,) domain indices.
        alpha: weight of the in-domain prototype (0 < alpha < 1).

    Returns:
        (N,) scores in [-1, 1].
    """
    if not (embeddings.shape[0] == labels.shape[0] == domains.shape[0]):
        raise ValueError(f"prototype_scores: {embeddings.shape[0]} embeddings, {labels.shape[0]} labels, "
                         f"{domains.shape[0]} domains")
    h = embeddings.float()
    labels, domains = labels.long(), domains.long()
    scores = torch.empty(h.shape[0])
    protos = {(int(k), int(m)): h[(domains == k) & (labels == m)].mean(0)
              for k, m in {(int(k), int(m)) for k, m in zip(domains, labels)}}
    for i in range(h.shape[0]):
        k, m = int(domains[i]), int(labels[i])
        own = F.cosine_similarity(h[i], protos[(k, m)], dim=0)
        others = [F.cosine_similarity(h[i], p, dim=0) for (kk, mm), p in protos.items() if mm == m and kk != k]
        scores[i] = own if not others else alpha * own + (1 - alpha) * torch.stack(others).mean()
    return scores


def expertise_weights(scores: torch.Tensor, teacher_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Meta-KD's domain-expertise weights for meta-distillation.

    With t_i the prototype score and p_i the teacher's probability of the gold class::

        lambda_i = (1 + t_i) / (1 + exp((p_i - 1)^2))

    so instances typical of their class and well predicted by the teacher count most.

    Args:
        scores: (N,) prototype scores t_i.
        teacher_probs: (N, C) teacher class probabilities.
        labels: (N,) gold classes.
    """
    p = teacher_probs.float().gather(1, labels.long().view(-1, 1)).squeeze(1)
    return (1 + scores.float()) / (1 + torch.exp((p - 1) ** 2))


class DomainHead(nn.Module):
    """A domain-aware sentence representation (Meta-KD's domain corruption and transfer).

    ``r = tanh(W (E[d] + masked_mean(H)) + b)`` with a learned domain embedding E (K, H) and
    W (H, H); optionally followed by a linear map to ``out_width`` (the student's fit to the
    teacher's width). Shapes: hidden (B, L, H), mask (B, L), domains (B,) -> (B, out_width or H).
    """

    def __init__(self, width: int, num_domains: int, out_width: int | None = None) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_domains, width)
        self.dense = nn.Linear(width, width)
        self.fit = nn.Linear(width, out_width) if out_width is not None else None

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None, domains: torch.Tensor) -> torch.Tensor:
        r = torch.tanh(self.dense(self.embedding(domains.long()) + masked_mean(hidden, mask)))
        return r if self.fit is None else self.fit(r)


def _domain_head_factory(student_width: int, teacher_width: int, num_domains: int, **_) -> nn.Module:
    return DomainHead(student_width, int(num_domains), out_width=teacher_width)


@register_loss("domain_transfer", needs=("hidden_states",),
               layers=lambda m, **_: {"hidden_states": ((None, m.top[1]),)}, module=_domain_head_factory)
def domain_transfer(student: Outputs, teacher: Outputs | None, labels: torch.Tensor, layer_map: LayerMap,
                    module: nn.Module, num_domains: int | None = None,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """Meta-KD's domain-transfer loss: the student's domain representation regresses the
    meta-teacher's.

    Inputs: the student's top mapped hidden states (B, L, H_s) with ``student.extras["domain"]``
    (B,) domain ids; ``module`` is the student's :class:`DomainHead` (fit to H_t); the teacher's
    ``extras["domain_repr"]`` (B, H_t) is the meta-teacher's domain representation. Per
    example: ``mean_d (r_S[d] - r_T[d])^2``. Needs ``loss_params={"domain_transfer":
    {"num_domains": K}}`` (the trainer sets it).
    """
    if "domain" not in student.extras or teacher is None or "domain_repr" not in teacher.extras:
        raise ValueError("domain_transfer needs batch['domain'] (B,) and the teacher's extras['domain_repr'] "
                         "(B, H); use it through the metakd trainer")
    h_s = layer_of("domain_transfer", student, "hidden_states", layer_map.top[1], "student")
    r_s = module(h_s, token_mask(student, teacher, h_s), student.extras["domain"])
    r_t = teacher.extras["domain_repr"].to(r_s.dtype)
    if r_s.shape != r_t.shape:
        raise ValueError(f"domain_transfer: student representation {tuple(r_s.shape)} does not match the "
                         f"teacher's {tuple(r_t.shape)}")
    return reduce_loss("domain_transfer", ((r_s - r_t) ** 2).mean(-1), weights)


class MetaTeacherHead(nn.Module):
    """The meta-teacher's domain branch: a :class:`DomainHead` and a domain classifier.

    ``forward(hidden (B, L, H), mask, domains) -> (representation (B, H), domain logits (B, K))``.
    """

    def __init__(self, width: int, num_domains: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.domain = DomainHead(width, num_domains)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_domains)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None,
                domains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.domain(hidden, mask, domains)
        return r, self.classifier(self.dropout(r))


def meta_teacher_loss(logits: torch.Tensor, labels: torch.Tensor, domain_logits: torch.Tensor,
                      corrupted_domains: torch.Tensor, scores: torch.Tensor, gamma: float) -> dict[str, torch.Tensor]:
    """The meta-teacher's objective: prototype-weighted task loss plus domain corruption.

    ``mean_i t_i * (CE(logits_i, y_i) + gamma * CE(domain_logits_i, c_i))`` with ``c_i`` random
    (corrupted) domain labels: learning to predict noise pushes the domain branch, and the
    encoder under it, towards domain-invariant features. Shapes: logits (B, C), labels (B,),
    domain_logits (B, K), corrupted_domains (B,), scores (B,).

    Returns ``task``, ``domain_corruption`` (unweighted means) and ``loss``.
    """
    task = F.cross_entropy(logits, labels.long(), reduction="none")
    corruption = F.cross_entropy(domain_logits, corrupted_domains.long(), reduction="none")
    loss = (scores.to(task.dtype) * (task + gamma * corruption)).mean()
    return {"task": task.mean(), "domain_corruption": corruption.mean(), "loss": loss}
