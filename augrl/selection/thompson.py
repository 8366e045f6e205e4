"""A linear Thompson-sampling selector: learn what a candidate is worth from the paired reward.

The paired reward (:class:`~augrl.envs.AugmentKDEnv`, ``reward="paired"``) compares a step on the
kept set K with a step on the control's subset C of the same batch and size. If a candidate with
(standardised) features x is worth ``w . x``, the reward is linear in the *contrast*
``d = sum_{i in K} x_i - sum_{j in C} x_j``:

    r ~= w . d + noise.

With the trajectory control (``paired_control="trajectory"``) the two students drift apart all
episode and the reward of a step is the change of their gap, so with ``cumulative=True`` (the
default) the regression is of the gap after step t on the episode's running contrast
``D_t = d_1 + ... + d_t``: ``gap_t ~= w . D_t``. There is no intercept: a kept set equal to the
control's gives contrast 0 and reward exactly 0.

**Learning** is Bayesian linear regression with a ridge prior, updated after every step from
the sufficient statistics ``A = sum D D^T``, ``b = sum D y`` (F x F and F; no replay buffer):

    w_hat = (A + lambda I)^-1 b,   lambda = ridge * trace(A) / (F n)

(``ridge`` is the prior's weight in units of one step's mean squared contrast).

**Acting** is Thompson sampling: each step draws ``w ~ N(w_hat, (exploration * sigma)^2 (A +
lambda I)^-1)``, with ``sigma^2`` the residual variance, and keeps the ``round(budget * B)``
candidates of highest ``w . x``. While the selector has seen no more steps than features
(``n <= F``) it keeps a uniformly random subset, so its first contrasts are unconfounded.
``predict(deterministic=True)`` and the final selection
(:meth:`~augrl.selection.budgeted.BudgetedSelector.select`) use ``w_hat``.

Unlike REINFORCE, it does not learn from the log-probability of its own draws: a step's
reward is credited to the features that separate the kept set from the control, so every step
tells it something whatever it kept. The price is a model class: scores are linear in the
features.
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
class ThompsonConfig(ConfigMixin):
    """Settings of :class:`ThompsonSelector`.

    Attributes:
        budget: the fraction of each batch (and of the final pool) kept, in (0, 1].
        ridge: weight of the zero-mean prior on w, in units of one step's mean squared contrast (> 0).
        exploration: scale of the posterior draw's spread (0: greedy on the posterior mean).
        cumulative: regress the episode's running gap on its running contrast (for the
            trajectory control); False: each step's reward on its own contrast (one-step control).
        seed: the posterior draws and the random first steps.
    """

    budget: float = 0.5
    ridge: float = 10.0
    exploration: float = 1.0
    cumulative: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.budget) <= 1.0:
            raise ConfigError(f"selector budget must be a fraction in (0, 1], got {self.budget}")
        if not float(self.ridge) > 0.0:
            raise ConfigError(f"selector ridge must be > 0, got {self.ridge}")
        if not float(self.exploration) >= 0.0:
            raise ConfigError(f"selector exploration must be >= 0, got {self.exploration}")


class LinearScore(nn.Module):
    """(B, F) features -> (B,) scores ``x . w`` (no bias: only differences of scores matter)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_features), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class ThompsonSelector(BudgetedSelector):
    """Linear Thompson-sampling keep/drop selector with a fixed budget (module docstring).

    Args:
        num_features: F, features per candidate.
        config: its settings.
    """

    def __init__(self, num_features: int, config: ThompsonConfig | None = None) -> None:
        self.config = config or ThompsonConfig()
        self.num_features = f = int(num_features)
        self.policy = LinearScore(f)
        self.rng = np.random.default_rng(self.config.seed)
        self.gram = np.zeros((f, f))  # A = sum D D^T
        self.moment = np.zeros(f)  # b = sum D y
        self.sum_squares = 0.0  # sum y^2
        self.steps = 0  # n, regression rows
        self.updates = 0

    # ------------------------------------------------------------------ the posterior

    def _precision(self) -> np.ndarray:
        f = self.num_features
        scale = np.trace(self.gram) / (f * max(self.steps, 1))
        return self.gram + float(self.config.ridge) * (scale if scale > 0 else 1.0) * np.eye(f)

    def posterior(self) -> tuple[np.ndarray, np.ndarray, float]:
        """``(w_hat, precision, sigma)``: the posterior mean (F,), the precision ``A + lambda I``
        (F, F) and the residual standard deviation."""
        precision = self._precision()
        w = np.linalg.solve(precision, self.moment)
        residual = self.sum_squares - 2 * w @ self.moment + w @ self.gram @ w
        sigma = float(np.sqrt(max(residual, 0.0) / max(self.steps - self.num_features, 1)))
        return w, precision, sigma

    def _draw(self) -> np.ndarray:
        """A posterior draw of w (the mean when ``exploration`` is 0)."""
        w, precision, sigma = self.posterior()
        spread = float(self.config.exploration) * sigma
        if spread == 0.0:
            return w
        cholesky = np.linalg.cholesky(precision)  # precision = L L^T; L^-T z ~ N(0, precision^-1)
        return w + spread * np.linalg.solve(cholesky.T, self.rng.standard_normal(self.num_features))

    def observe(self, contrast: np.ndarray, target: float) -> None:
        """Add one regression row (contrast (F,), its reward or gap) and refresh the scores' w."""
        d = np.asarray(contrast, dtype=np.float64)
        self.gram += np.outer(d, d)
        self.moment += d * float(target)
        self.sum_squares += float(target) ** 2
        self.steps += 1
        self.updates += 1
        self.policy.weight.copy_(torch.as_tensor(self.posterior()[0], dtype=torch.float32))

    # ------------------------------------------------------------------ acting and learning

    def _keep(self, x: np.ndarray, learn: bool, deterministic: bool) -> np.ndarray:
        """Batch positions kept for observation ``x`` (B, F)."""
        from .rankers import budget_size

        k = budget_size(len(x), self.config.budget)
        if deterministic:
            return np.argsort(-self.scores(x), kind="stable")[:k]
        if learn and self.steps <= self.num_features:
            return self.rng.permutation(len(x))[:k]
        return np.argsort(-(x @ self._draw()), kind="stable")[:k]

    def run_episode(self, env, seed: int | None = None, learn: bool = True, deterministic: bool = False,
                    options: dict | None = None) -> dict:
        """Act for one episode, adding a regression row after every step (``learn``).

        Returns ``return``, ``rewards``, ``kept_fraction``, the last ``info``, ``updates`` (of
        this episode), ``residual_std`` (sigma after it) and ``scores`` (pool row -> the
        candidate's last score under ``w_hat``, when the env reports ``decided_rows``).

        Raises:
            ConfigError: the env does not report its paired control (``reward`` is not ``paired``).
        """
        obs, info = env.reset(seed=seed, options=options)
        rewards, scores = [], {}
        running, gap = np.zeros(self.num_features), 0.0
        kept_total = seen = 0
        updates_before = self.updates
        done = False
        while not done:
            x = self._states(obs).numpy().astype(np.float64)
            kept = self._keep(x, learn, deterministic)
            action = np.zeros(len(x), dtype=np.int64)
            action[kept] = 1
            obs, r, terminated, truncated, info = env.step(action)
            for row, value in zip(info.get("decided_rows", []), self.scores(x)):
                scores[int(row)] = float(value)
            rewards.append(float(r))
            kept_total, seen = kept_total + len(kept), seen + len(x)
            done = terminated or truncated
            if learn and info.get("updated", True):
                if "control_positions" not in info:
                    raise ConfigError("the Thompson selector credits the kept set against the paired reward's control "
                                      "subset, but the environment reports none; use reward='paired'")
                contrast = x[kept].sum(0) - x[np.asarray(info["control_positions"], dtype=np.int64)].sum(0)
                if self.config.cumulative:
                    running, gap = running + contrast, gap + float(r)
                    self.observe(running, gap)
                else:
                    self.observe(contrast, float(r))
        return {"return": float(sum(rewards)), "rewards": rewards, "info": info, "scores": scores,
                "kept_fraction": kept_total / max(1, seen), "updates": self.updates - updates_before,
                "residual_std": self.posterior()[2]}

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path) -> Path:
        """The regression's sufficient statistics and settings in one file (tensors and plain
        values only, written atomically: :func:`augrl.models.save_torch`)."""
        from augrl.models import save_torch

        return save_torch({"gram": torch.as_tensor(self.gram), "moment": torch.as_tensor(self.moment),
                           "sum_squares": float(self.sum_squares), "steps": int(self.steps),
                           "updates": int(self.updates), "num_features": int(self.num_features),
                           "config": json.dumps(self.config.to_dict())}, path)

    @classmethod
    def load(cls, path: str | Path) -> "ThompsonSelector":
        """A selector saved by :meth:`save` (read with ``torch.load(weights_only=True)``)."""
        from augrl.models import load_torch

        state = load_torch(path, map_location="cpu")
        selector = cls(state["num_features"], ThompsonConfig.from_dict(json.loads(state["config"])))
        selector.gram, selector.moment = state["gram"].double().numpy(), state["moment"].double().numpy()
        selector.sum_squares, selector.steps, selector.updates = state["sum_squares"], state["steps"], state["updates"]
        selector.policy.weight.copy_(torch.as_tensor(selector.posterior()[0], dtype=torch.float32))
        return selector
