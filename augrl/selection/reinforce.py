"""L2A's reinforced selector: a keep/drop policy ``pi_phi`` trained by REINFORCE, with a fixed budget.

One scoring network ``f_phi`` is shared over the B slots of a batch: candidate b gets the score
``s_b = f_phi([x_b, mean_b' x_b'])`` from its own features ``x_b`` (the environment's observation
row, :mod:`augrl.envs.features`) and the batch's mean features (so the score can be relative to
the batch; the network is permutation-equivariant over the slots).

**A fixed budget.** The selector keeps ``k = round(budget * B)`` candidates of every batch. While
training it samples them without replacement with the Gumbel-top-k trick (the k largest of
``s_b + Gumbel noise``), whose probability is the Plackett-Luce probability of that ordered draw,

    log pi(a|s) = sum_{i=1..k} [ s_{c_i} - logsumexp_{b not in c_1..c_{i-1}} s_b ];

deterministically it keeps the k highest scores. The final selection over a pool
(:meth:`ReinforceSelector.select`) is the top ``budget`` fraction of all candidates by score,
never a threshold on an untrained network's probability.

**An update after every step.** The environment's paired reward is a per-step counterfactual
(:class:`~augrl.envs.AugmentKDEnv`), so each step is its own bandit: the advantage is the reward
minus a moving-average baseline ``b``, divided by a moving-average scale ``sigma`` of
``|r - b|`` (``normalize=True``), and phi takes one Adam step on

    loss = - (r_t - b) / sigma * log pi(a_t|s_t) - entropy_coef * H(softmax(s_t)).

``gamma > 0`` adds discounted future rewards of the episode to each step's return (updates then
wait for the episode's end), for rewards that are not per-step counterfactuals.

Like a stable-baselines3 agent it has ``predict(obs, deterministic)``, ``learn(...)``,
``save(path)`` and ``load(path)``; acting and the final selection come from
:class:`~augrl.selection.budgeted.BudgetedSelector`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from augrl.config import ConfigMixin
from augrl.errors import ConfigError

from .budgeted import BudgetedSelector


@dataclass
class SelectorConfig(ConfigMixin):
    """Settings of :class:`ReinforceSelector`.

    Attributes:
        budget: the fraction of each batch (and of the final pool) kept, in (0, 1].
        hidden: width of the two hidden layers.
        lr: Adam learning rate.
        gamma: discount of future rewards in a step's return (0: per-step updates).
        baseline_momentum: EMA momentum of the reward baseline and scale.
        normalize: divide advantages by the moving scale of the rewards.
        entropy_coef: bonus on the entropy of the batch's score distribution.
        seed: initial weights and action sampling.
    """

    budget: float = 0.5
    hidden: int = 64
    lr: float = 3e-3
    gamma: float = 0.0
    baseline_momentum: float = 0.9
    normalize: bool = True
    entropy_coef: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.budget) <= 1.0:
            raise ConfigError(f"selector budget must be a fraction in (0, 1], got {self.budget}")
        if not 0.0 <= float(self.gamma) <= 1.0:
            raise ConfigError(f"selector gamma must be in [0, 1], got {self.gamma}")


class ScoreNet(nn.Module):
    """(B, F) features -> (B,) scores, shared over the slots, with the batch mean as context."""

    def __init__(self, num_features: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * num_features, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = x.mean(0, keepdim=True).expand_as(x)
        return self.net(torch.cat([x, context], dim=-1))[:, 0]


def plackett_luce_logprob(scores: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """log-probability of drawing ``order`` (k indices, in draw order) without replacement with
    probabilities ``softmax(scores)`` (B,) renormalised after each draw."""
    k = len(order)
    taken = torch.zeros(k, len(scores), dtype=torch.bool)  # row i: the items drawn before draw i
    for i in range(1, k):
        taken[i] = taken[i - 1]
        taken[i, order[i - 1]] = True
    remaining = scores[None].expand(k, -1).masked_fill(taken, float("-inf"))
    return (scores[order] - torch.logsumexp(remaining, -1)).sum()


class ReinforceSelector(BudgetedSelector):
    """REINFORCE keep/drop selector with a fixed budget (module docstring).

    Args:
        num_features: F, features per candidate.
        config: its settings.
    """

    def __init__(self, num_features: int, config: SelectorConfig | None = None) -> None:
        self.config = c = config or SelectorConfig()
        self.num_features = int(num_features)
        torch.manual_seed(c.seed)
        self.policy = ScoreNet(self.num_features, c.hidden)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=c.lr)
        self.rng = np.random.default_rng(c.seed)
        self.baseline: float | None = None
        self.scale: float | None = None
        self.updates = 0

    # ------------------------------------------------------------------ learning

    def run_episode(self, env, seed: int | None = None, learn: bool = True, deterministic: bool = False,
                    options: dict | None = None) -> dict:
        """Act for one episode, updating phi after every step (``gamma = 0``) or at its end.

        Returns ``return``, ``rewards``, ``kept_fraction``, the last ``info``, ``updates`` (of
        this episode), ``scores`` and ``keep_probs``: pool row -> the candidate's last score and
        its probability of being kept under the budget, when the env reports ``decided_rows``.
        """
        obs, info = env.reset(seed=seed, options=options)
        steps, rewards, scores, probs = [], [], {}, {}
        kept_total = seen = 0
        done = False
        updates_before = self.updates
        while not done:
            states = self._states(obs)
            s = self.scores(states)
            order = self._choose(s, deterministic)
            action = np.zeros(len(s), dtype=np.int64)
            action[order] = 1
            obs, r, terminated, truncated, info = env.step(action)
            for row, value, q in zip(info.get("decided_rows", []), s, self.keep_probs(states)):
                scores[int(row)], probs[int(row)] = float(value), float(q)
            rewards.append(float(r))
            kept_total, seen = kept_total + len(order), seen + len(s)
            done = terminated or truncated
            if learn:
                steps.append((states, torch.as_tensor(order)))
                if self.config.gamma == 0:
                    self.update(steps[-1:], rewards[-1:])
        if learn and self.config.gamma > 0 and steps:
            self.update(steps, rewards)
        return {"return": float(sum(rewards)), "rewards": rewards, "info": info, "scores": scores, "keep_probs": probs,
                "kept_fraction": kept_total / max(1, seen), "updates": self.updates - updates_before,
                "policy_loss": getattr(self, "last_loss", None), "baseline": self.baseline}

    def update(self, steps: list[tuple[torch.Tensor, torch.Tensor]], rewards: list[float]) -> dict:
        """One Adam step on the REINFORCE loss of ``steps`` (``(states, kept order)`` each) with
        their discounted returns against the moving baseline."""
        c = self.config
        returns = np.zeros(len(rewards))
        running = 0.0
        for t in reversed(range(len(rewards))):
            running = rewards[t] + c.gamma * running
            returns[t] = running
        if self.baseline is None:
            self.baseline, self.scale = float(returns.mean()), float(np.abs(returns - returns.mean()).mean()) or 1.0
        advantages = returns - self.baseline
        if c.normalize:
            advantages = advantages / max(self.scale, 1e-12)
        m = c.baseline_momentum
        self.baseline = m * self.baseline + (1 - m) * float(returns.mean())
        self.scale = m * self.scale + (1 - m) * float(np.abs(returns - self.baseline).mean())
        loss = torch.zeros(())
        for (states, order), adv in zip(steps, advantages):
            s = self.policy(states)
            entropy = -(torch.softmax(s, 0) * torch.log_softmax(s, 0)).sum()
            loss = loss - float(adv) * plackett_luce_logprob(s, order) - c.entropy_coef * entropy
        loss = loss / len(steps)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        self.last_loss = float(loss.detach())
        return {"policy_loss": self.last_loss, "baseline": self.baseline}

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path) -> Path:
        """Weights, optimiser, baseline and settings in one file (tensors and plain values only,
        written atomically: :func:`augrl.models.save_torch`)."""
        from augrl.models import save_torch

        return save_torch({"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                           "baseline": None if self.baseline is None else float(self.baseline),
                           "scale": None if self.scale is None else float(self.scale), "updates": int(self.updates),
                           "num_features": int(self.num_features), "config": json.dumps(self.config.to_dict())},
                          path)

    @classmethod
    def load(cls, path: str | Path) -> "ReinforceSelector":
        """A selector saved by :meth:`save`; read with ``torch.load(weights_only=True)``
        (:func:`augrl.models.load_torch`), so a file holding other pickled objects is refused."""
        from augrl.models import load_torch

        state = load_torch(path, map_location="cpu")
        selector = cls(state["num_features"], SelectorConfig.from_dict(json.loads(state["config"])))
        selector.policy.load_state_dict(state["policy"])
        selector.optimizer.load_state_dict(state["optimizer"])
        selector.baseline, selector.scale, selector.updates = state["baseline"], state["scale"], state["updates"]
        return selector
