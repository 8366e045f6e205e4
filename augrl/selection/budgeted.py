"""What every learned keep/drop selector with a fixed budget shares: scoring, acting, selecting.

A subclass owns ``self.policy``, a module mapping a batch's (B, F) features to (B,) scores,
``self.config`` with ``budget`` (the kept fraction, in (0, 1]) and ``seed``, ``self.rng`` (a
NumPy generator for exploration) and ``self.num_features`` (F). It gets

* :meth:`learn`: ``episodes`` calls of the subclass's ``run_episode(env, seed, learn=True)``;
* :meth:`predict`: SB3-style ``(action, None)``, keeping the top ``round(budget * B)`` scores
  (deterministic) or a Gumbel-top-k draw (the k largest of ``score + Gumbel noise``);
* :meth:`pool_scores` / :meth:`select`: the final selection, the top ``budget`` fraction of a
  whole pool by score (averaged over the pool seen at several student states), never a
  threshold on a probability.

:class:`~augrl.selection.reinforce.ReinforceSelector` (REINFORCE) and
:class:`~augrl.selection.thompson.ThompsonSelector` (linear Thompson sampling) are the two.
"""

from __future__ import annotations

import numpy as np
import torch

from augrl.errors import ConfigError

from .rankers import budget_size


class BudgetedSelector:
    """Scoring, acting and final selection of a fixed-budget selector (module docstring)."""

    policy: torch.nn.Module
    num_features: int

    @classmethod
    def for_env(cls, env, config=None):
        """A selector for ``env``'s observations (F = its last dimension)."""
        return cls(env.observation_space.shape[-1], config)

    def training_record(self) -> dict:
        """What a bench row records of the training beyond steps and updates (none by default)."""
        return {}

    @property
    def reads_observations(self) -> bool:
        """Whether :meth:`learn` acts on the env's observations (a selector that chooses by pool
        index alone can run on an env with ``observations=False``, which skips building them)."""
        return True

    def _states(self, obs) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        if x.dim() == 1:
            x = x[None]
        if x.shape[-1] != self.num_features:
            raise ConfigError(f"the selector takes {self.num_features} features per candidate, got {x.shape[-1]}")
        return x

    def scores(self, obs) -> np.ndarray:
        """(B,) the score of each candidate of a (B, F) observation."""
        with torch.no_grad():
            return self.policy(self._states(obs)).numpy()

    def keep_probs(self, obs) -> np.ndarray:
        """(B,) each candidate's marginal probability of being kept under the budget, estimated
        from 64 Gumbel-top-k draws (deterministic given the selector's seed)."""
        s = self.scores(obs)
        k = budget_size(len(s), self.config.budget)
        rng = np.random.default_rng([self.config.seed, 5])
        draws = s[None] + rng.gumbel(size=(64, len(s)))
        kept = np.zeros(len(s))
        for row in draws:
            kept[np.argsort(-row, kind="stable")[:k]] += 1
        return kept / len(draws)

    def _choose(self, s: np.ndarray, deterministic: bool) -> np.ndarray:
        """Indices of the kept candidates, in draw order."""
        k = budget_size(len(s), self.config.budget)
        noisy = s if deterministic else s + self.rng.gumbel(size=len(s))
        return np.argsort(-noisy, kind="stable")[:k]

    def predict(self, obs, state=None, episode_start=None, deterministic: bool = False):
        """SB3-style ``(action, None)``: a 0/1 vector keeping the budget's share of the batch
        (the top scores if ``deterministic``, else a Gumbel-top-k draw)."""
        s = self.scores(obs)
        action = np.zeros(len(s), dtype=np.int64)
        action[self._choose(s, deterministic)] = 1
        return (action if np.asarray(obs).ndim == 2 else int(action[0])), None

    def learn(self, env, episodes: int, seed: int = 0, callback=None) -> list[dict]:
        """Train for ``episodes`` episodes (episode e uses reset seed ``seed + e``);
        ``callback(stats)`` after each. Returns the per-episode stats (without rewards lists)."""
        history = []
        for e in range(int(episodes)):
            stats = self.run_episode(env, seed=seed + e, learn=True)
            if callback is not None:
                callback(stats)
            history.append({k: v for k, v in stats.items() if k not in ("rewards", "info", "scores", "keep_probs")})
        return history

    def pool_scores(self, pool_observations, batch_size: int = 32) -> np.ndarray:
        """(N,) scores of every candidate of a pool: ``pool_observations`` is an (N, F) array or
        a list of them (the pool seen at several student states,
        :meth:`augrl.envs.AugmentKDEnv.pool_observations`), whose scores are averaged; each is
        scored in consecutive batches of ``batch_size`` (a score may use its batch as context,
        as in training)."""
        views = pool_observations if isinstance(pool_observations, (list, tuple)) else [pool_observations]
        per_view = []
        for obs in views:
            obs = np.asarray(obs, dtype=np.float32)
            per_view.append(np.concatenate([self.scores(obs[i:i + batch_size]) for i in range(0, len(obs), batch_size)]))
        return np.mean(per_view, axis=0)

    def select(self, pool_observations, budget: float | None = None, batch_size: int = 32) -> list[int]:
        """The final selection: the top ``budget`` fraction (default the config's) of all the
        pool's candidates by :meth:`pool_scores`, never a threshold on a probability."""
        scores = self.pool_scores(pool_observations, batch_size)
        k = budget_size(len(scores), self.config.budget if budget is None else budget)
        return sorted(np.argsort(-scores, kind="stable")[:k].tolist())
