"""L2A's reinforced selector: a keep/drop policy ``pi_phi(a|s)`` trained by REINFORCE (Algorithm 1).

The policy scores every candidate of a batch independently from its state (the environment's
per-candidate features, :mod:`augrl.envs.features`) with a small MLP and keeps it with
probability ``pi_phi(keep|s) = sigmoid(f_phi(s))``. Each episode it acts in
``augrl/AugmentKD-v0`` through the plain Gymnasium API (any env with a ``Box(B, F)`` or
``Box(F,)`` observation and a ``MultiBinary(B)`` or ``Discrete(2)`` action works), stores
``(s_t, a_t, r_t)``, computes the discounted returns ``G_t = sum_k gamma^k r_{t+k}`` and
updates phi with

    loss = - mean_t [ (G_t - b) / sigma * mean_b log pi_phi(a_tb | s_tb) ] - entropy_coef * H

where the baseline b is an exponential moving average of past episodes' mean return and sigma
the standard deviation of this episode's returns (``normalize=True``).

Like a stable-baselines3 agent it has ``predict(obs, deterministic)``, ``learn(...)``,
``save(path)`` and ``load(path)``, so the benchmark and the policy evaluation use either.
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


@dataclass
class SelectorConfig(ConfigMixin):
    """Settings of :class:`ReinforceSelector`.

    Attributes:
        hidden: width of the two hidden layers.
        lr: Adam learning rate.
        gamma: discount of the returns.
        baseline_momentum: EMA momentum of the baseline.
        normalize: divide advantages by the episode's return standard deviation.
        entropy_coef: bonus on the policy's entropy (keeps it exploring).
        seed: initial weights and action sampling.
    """

    hidden: int = 64
    lr: float = 1e-3
    gamma: float = 0.99
    baseline_momentum: float = 0.9
    normalize: bool = True
    entropy_coef: float = 0.01
    seed: int = 0


class ReinforceSelector:
    """REINFORCE keep/drop selector over per-candidate states (module docstring).

    Args:
        num_features: F, features per candidate.
        config: its settings.
    """

    def __init__(self, num_features: int, config: SelectorConfig | None = None) -> None:
        self.config = c = config or SelectorConfig()
        self.num_features = int(num_features)
        torch.manual_seed(c.seed)
        self.policy = nn.Sequential(nn.Linear(self.num_features, c.hidden), nn.Tanh(), nn.Linear(c.hidden, c.hidden),
                                    nn.Tanh(), nn.Linear(c.hidden, 1))
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=c.lr)
        self.rng = np.random.default_rng(c.seed)
        self.baseline: float | None = None
        self.episodes = 0

    @classmethod
    def for_env(cls, env, config: SelectorConfig | None = None) -> "ReinforceSelector":
        return cls(env.observation_space.shape[-1], config)

    # ------------------------------------------------------------------ acting

    def keep_probs(self, obs: np.ndarray) -> np.ndarray:
        """``pi_phi(keep|s)`` of each candidate: (B,) for a (B, F) observation, (1,) for (F,)."""
        with torch.no_grad():
            return torch.sigmoid(self.policy(self._states(obs))[:, 0]).numpy()

    def _states(self, obs) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        if x.dim() == 1:
            x = x[None]
        if x.shape[-1] != self.num_features:
            raise ConfigError(f"the selector takes {self.num_features} features per candidate, got {x.shape[-1]}")
        return x

    def predict(self, obs, state=None, episode_start=None, deterministic: bool = False):
        """SB3-style: ``(action, None)``; keep when ``pi >= 0.5`` if deterministic, else sampled."""
        p = self.keep_probs(obs)
        a = (p >= 0.5) if deterministic else (self.rng.random(p.shape) < p)
        a = a.astype(np.int64)
        return (a if np.asarray(obs).ndim == 2 else int(a[0])), None

    # ------------------------------------------------------------------ learning

    def run_episode(self, env, seed: int | None = None, learn: bool = True, deterministic: bool = False) -> dict:
        """Act for one episode (and update phi from it when ``learn``).

        Returns ``return``, ``rewards``, ``kept_fraction``, the last ``info``, and
        ``keep_probs``: pool row -> ``pi_phi(keep|s)`` when the env reports ``decided_rows``.
        """
        obs, info = env.reset(seed=seed)
        states, actions, rewards = [], [], []
        keep_prob: dict[int, float] = {}
        done = False
        while not done:
            p = self.keep_probs(obs)
            a = (p >= 0.5) if deterministic else (self.rng.random(p.shape) < p)
            a = a.astype(np.int64)
            states.append(np.asarray(obs, dtype=np.float32).reshape(-1, self.num_features))
            actions.append(a)
            obs, r, terminated, truncated, info = env.step(a if np.asarray(obs).ndim == 2 else int(a[0]))
            for row, q in zip(info.get("decided_rows", []), p):
                keep_prob[int(row)] = float(q)
            rewards.append(float(r))
            done = terminated or truncated
        stats = {"return": float(sum(rewards)), "rewards": rewards, "info": info, "keep_probs": keep_prob,
                 "kept_fraction": float(np.mean(np.concatenate(actions))) if actions else 0.0}
        if learn:
            stats.update(self.update(states, actions, rewards))
        return stats

    def update(self, states: list[np.ndarray], actions: list[np.ndarray], rewards: list[float]) -> dict:
        """One REINFORCE step from an episode's ``(s_t, a_t, r_t)``."""
        c = self.config
        returns = np.zeros(len(rewards))
        running = 0.0
        for t in reversed(range(len(rewards))):
            running = rewards[t] + c.gamma * running
            returns[t] = running
        if self.baseline is None:
            self.baseline = float(returns.mean())
        advantages = returns - self.baseline
        if c.normalize and len(returns) > 1:
            advantages = advantages / (returns.std() + 1e-8)
        self.baseline = c.baseline_momentum * self.baseline + (1 - c.baseline_momentum) * float(returns.mean())
        logits = [self.policy(torch.as_tensor(s))[:, 0] for s in states]
        loss = torch.zeros(())
        entropy = torch.zeros(())
        for logit, a, adv in zip(logits, actions, advantages):
            dist = torch.distributions.Bernoulli(logits=logit)
            loss = loss - float(adv) * dist.log_prob(torch.as_tensor(a, dtype=torch.float32)).mean()
            entropy = entropy + dist.entropy().mean()
        loss = (loss - c.entropy_coef * entropy) / len(states)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.episodes += 1
        return {"policy_loss": float(loss.detach()), "baseline": self.baseline}

    def learn(self, env, episodes: int, seed: int = 0, callback=None) -> list[dict]:
        """Train for ``episodes`` episodes (episode e uses reset seed ``seed + e``);
        ``callback(stats)`` after each. Returns the per-episode stats (without rewards lists)."""
        history = []
        for e in range(int(episodes)):
            stats = self.run_episode(env, seed=seed + e, learn=True)
            if callback is not None:
                callback(stats)
            history.append({k: v for k, v in stats.items() if k not in ("rewards", "info", "keep_probs")})
        return history

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path) -> Path:
        """Weights, optimiser, baseline and settings in one file (tensors and plain values only,
        written atomically: :func:`augrl.models.save_torch`)."""
        from augrl.models import save_torch

        baseline = None if self.baseline is None else float(self.baseline)
        return save_torch({"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                           "baseline": baseline, "episodes": int(self.episodes),
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
        selector.baseline, selector.episodes = state["baseline"], state["episodes"]
        return selector
