"""Rule search: learn *which* scoring rule to select by, from whole episodes of the paired reward.

Why not credit single choices: on the planted-heavy pool (probe seed 5) a random keep policy's
paired rewards (trajectory control, 120 steps) do not correlate with how many more clean
candidates the kept set held than the control's (t = -0.07 per step, -1.1 for the running
gap); a choice's worth only shows when it is made consistently for a whole episode (the
oracle's episode return has t = 3.98 over 10 episodes). So this selector evaluates *policies*,
not choices: each arm is a rule "keep the ``round(budget * B)`` candidates of highest ``x_j``"
for one feature j of the observation, and an episode played by one rule returns how far the kept
student ends below the random-subset control in validation divergence.

Successive halving over the F rules (features constant over the pool, such as ``progress``,
are skipped):

1. every rule plays one episode with sign +1; its sign becomes that of its return (a rule
   whose kept students end *worse* than random is worth following the other way: the
   anti-oracle's return is about minus the oracle's);
2. the ``keep_fraction`` of rules with the largest returns (by absolute value in round 1, then
   by mean signed return) play ``episodes_per_round`` more episodes each with their sign;
   repeat until one rule is left or the episode budget is spent.

With ``common_episodes`` (common random numbers), the arms are signed rules: both signs of every
varying feature are arms of their own, and every arm of a round plays the *same* episodes (reset
seeds: the same warm-start snapshot, batches, target rows and control subsets), so arms are
compared on the same draws and the control's luck cancels from their differences. Round 1 plays
each arm once; the best ``keep_fraction`` by mean return go on, each playing the round's
``episodes_per_round`` common episodes, until one arm is left.

With ``static_features``, a rule reads each candidate's features as the final selection will:
measured once per candidate at every warm-start snapshot and averaged
(:meth:`augrl.envs.AugmentKDEnv.pool_views`), not at the episode's current student. A rule on a
student-dependent feature (``head_influence``, the student's loss) played at the current student
re-scores the pool at every step, which the single selection the final student trains on cannot
do; judged on the static scores, every rule is judged as the selection it will become.

The selector's scores are ``sign * x_j`` of the leading rule (a one-hot
:class:`~augrl.selection.thompson.LinearScore`), so the final selection is its top share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from augrl.config import ConfigMixin
from augrl.errors import ConfigError

from .budgeted import BudgetedSelector
from .thompson import LinearScore


@dataclass
class RuleSearchConfig(ConfigMixin):
    """Settings of :class:`RuleSearchSelector`.

    Attributes:
        budget: the fraction of each batch (and of the final pool) kept, in (0, 1].
        keep_fraction: the share of rules that survive a round, in (0, 1).
        episodes_per_round: episodes each surviving rule plays per round after the first (>= 1).
        common_episodes: arms are signed rules (both signs of every feature) and every arm of a
            round plays the same reset seeds (module docstring); False: one arm per feature, its
            sign from its first episode, every episode on a seed of its own.
        static_features: rules keep by each candidate's features averaged over the warm-start
            snapshots (what the final selection scores), not by the episode's observation; needs
            an env with a pool (``pool_views`` and ``batch_rows``, as ``augrl/AugmentKD-v0``).
        seed: unused by the search itself (rules act deterministically); kept for the row's seed.
    """

    budget: float = 0.5
    keep_fraction: float = 0.25
    episodes_per_round: int = 3
    common_episodes: bool = False
    static_features: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.budget) <= 1.0:
            raise ConfigError(f"selector budget must be a fraction in (0, 1], got {self.budget}")
        if not 0.0 < float(self.keep_fraction) < 1.0:
            raise ConfigError(f"selector keep_fraction must be in (0, 1), got {self.keep_fraction}")
        if int(self.episodes_per_round) < 1:
            raise ConfigError(f"selector episodes_per_round must be >= 1, got {self.episodes_per_round}")


class RuleSearchSelector(BudgetedSelector):
    """Successive halving over one-feature keep rules (module docstring).

    Args:
        num_features: F, features per candidate.
        config: its settings.
        feature_names: names of the F features (for the record), default ``f0 ... f{F-1}``.
    """

    def __init__(self, num_features: int, config: RuleSearchConfig | None = None,
                 feature_names: list[str] | None = None) -> None:
        self.config = config or RuleSearchConfig()
        self.num_features = int(num_features)
        self.feature_names = list(feature_names or [f"f{j}" for j in range(self.num_features)])
        self.policy = LinearScore(self.num_features)
        self.rng = np.random.default_rng(self.config.seed)
        self.arms: list[list] = []  # arm -> [feature, sign]
        self.returns: dict[int, list[float]] = {}  # arm -> its episodes' returns (played with its sign)
        self.alive: list[int] | None = None  # arms still in the search (None: before round 1)
        self.updates = 0
        self.static: np.ndarray | None = None  # (N, F) pool features the rules read (static_features)

    @classmethod
    def for_env(cls, env, config: RuleSearchConfig | None = None) -> "RuleSearchSelector":
        names = getattr(getattr(env, "world", None), "feature_names", None)
        return cls(env.observation_space.shape[-1], config, list(names) if names is not None else None)

    @property
    def reads_observations(self) -> bool:
        """With ``static_features`` the rules read the pool's views by ``env.batch_rows``, never
        an episode's observation."""
        return not self.config.static_features

    # ------------------------------------------------------------------ the rules

    def _value(self, arm: int) -> float:
        return float(np.mean(self.returns[arm]))

    def leader_arm(self) -> int | None:
        """The arm with the best mean return among those still in the search."""
        candidates = [a for a in (self.alive or self.returns) if a in self.returns]
        if not candidates:
            return None
        return max(candidates, key=self._value)

    def leader(self) -> int | None:
        """The feature of the leading arm (its sign: :meth:`leader_sign`)."""
        arm = self.leader_arm()
        return None if arm is None else int(self.arms[arm][0])

    def leader_sign(self) -> float | None:
        arm = self.leader_arm()
        return None if arm is None else float(self.arms[arm][1])

    def _set_scores(self) -> None:
        w = torch.zeros(self.num_features)
        arm = self.leader_arm()
        if arm is not None:
            rule, sign = self.arms[arm]
            w[int(rule)] = float(sign)
        self.policy.weight.copy_(w)

    @staticmethod
    def keep_mask(x: np.ndarray, rule: int, sign: float, k: int) -> np.ndarray:
        """(B,) int64 keep action for (B, F) features ``x``: the ``k`` rows with the highest
        ``sign * x[:, rule]`` (ties: the earlier row)."""
        action = np.zeros(len(x), dtype=np.int64)
        action[np.argsort(-sign * np.asarray(x)[:, rule], kind="stable")[:k]] = 1
        return action

    def play(self, env, rule: int, sign: float, seed: int | None) -> dict:
        """One episode keeping the top ``budget`` share of each batch by ``sign * x_rule``."""
        from .rankers import budget_size

        obs, info = env.reset(seed=seed)
        rewards, kept_total, seen, done = [], 0, 0, False
        while not done:
            x = self._states(obs).numpy() if self.static is None else self.static[np.asarray(env.batch_rows)]
            k = budget_size(len(x), self.config.budget)
            obs, r, terminated, truncated, info = env.step(self.keep_mask(x, rule, sign, k))
            rewards.append(float(r))
            kept_total, seen, done = kept_total + k, seen + len(x), terminated or truncated
        return {"return": float(sum(rewards)), "rewards": rewards, "info": info, "rule": self.feature_names[rule],
                "sign": sign, "kept_fraction": kept_total / max(1, seen)}

    # ------------------------------------------------------------------ learning

    def learn(self, env, episodes: int, seed: int = 0, callback=None) -> list[dict]:
        """Successive halving with at most ``episodes`` episodes (episode e: reset seed ``seed + e``);
        ``callback(stats)`` after each. Returns the per-episode stats (without rewards lists)."""
        history: list[dict] = []
        common = bool(self.config.common_episodes)

        def run(arm: int, episode_seed: int) -> bool:
            if len(history) >= int(episodes):
                return False
            rule, sign = self.arms[arm]
            stats = self.play(env, int(rule), float(sign), episode_seed)
            self.returns.setdefault(arm, []).append(stats["return"])
            if not common and len(self.returns[arm]) == 1:  # round 1: the rule takes its first return's sign
                self.arms[arm][1] = 1.0 if stats["return"] >= 0 else -1.0
                self.returns[arm] = [abs(stats["return"])]
            self.updates += 1
            history.append({k: v for k, v in stats.items() if k not in ("rewards", "info")})
            self._set_scores()  # before the callback, which scores the pool with the current leader
            if callback is not None:
                callback(stats)
            return True

        if self.config.static_features and self.static is None:
            if not hasattr(env, "pool_views"):  # (batch_rows raises before a reset: not probed here)
                raise ConfigError("selector static_features=True reads the pool's features at the warm-start "
                                  f"snapshots, but {type(env).__name__} has no pool_views()/batch_rows; use "
                                  "augrl/AugmentKD-v0 or static_features=False")
            self.static = np.mean(env.pool_views(), axis=0).astype(np.float32)
        if self.alive is None:
            # the rules: features that vary over the pool (or, for an env without a pool view,
            # over a first batch)
            if self.static is not None:
                probe = self.static
            elif hasattr(env, "pool_observations"):
                probe = np.asarray(env.pool_observations())
            else:
                probe = self._states(env.reset(seed=seed)[0]).numpy()
            varying = [j for j in range(self.num_features) if np.ptp(probe[:, j]) > 0]
            if not varying:
                raise ConfigError("every feature is constant over a batch; there is no rule to search")
            self.arms = [[j, s] for j in varying for s in ((1.0, -1.0) if common else (1.0,))]
            for arm in range(len(self.arms)):
                if not run(arm, seed if common else seed + len(history)):
                    break
            self.alive = [a for a in range(len(self.arms)) if a in self.returns]
        while len(self.alive) > 1 and len(history) < int(episodes):
            survivors = max(1, int(np.ceil(len(self.alive) * float(self.config.keep_fraction))))
            self.alive = sorted(self.alive, key=self._value, reverse=True)[:survivors]
            if len(self.alive) == 1:  # the winner: more episodes of it would not change the choice
                break
            round_start = len(history)  # common episodes: every arm of the round plays these seeds
            for arm in self.alive:
                for i in range(int(self.config.episodes_per_round)):
                    if not run(arm, seed + (round_start + i if common else len(history))):
                        break
        self._set_scores()
        return history

    def training_record(self) -> dict:
        """The search's ranking of every rule it tried (:meth:`ranking`)."""
        return {"ranking": self.ranking()}

    def ranking(self) -> list[dict]:
        """Every rule tried: name, sign, mean signed return, episodes, still in the search; the
        rules still in the search first (the leader, whose scores the selector uses, first of
        all), then by how far they got (episodes) and their mean return. A rule dropped after
        one episode can show a larger mean than the leader: round 1 ranks by ``|return|``."""
        alive, leader = set(self.alive or []), self.leader_arm()
        rows = [{"rule": self.feature_names[int(self.arms[a][0])], "sign": float(self.arms[a][1]),
                 "mean_return": self._value(a), "episodes": len(v), "alive": a in alive, "leader": a == leader}
                for a, v in self.returns.items()]
        return sorted(rows, key=lambda row: (row["leader"], row["alive"], row["episodes"], row["mean_return"]),
                      reverse=True)

    # ------------------------------------------------------------------ saving

    def save(self, path: str | Path) -> Path:
        """The search's state and settings in one file (plain values, written atomically)."""
        from augrl.models import save_torch

        return save_torch({"returns": {str(k): list(v) for k, v in self.returns.items()},
                           "arms": [[int(j), float(sign)] for j, sign in self.arms],
                           "alive": None if self.alive is None else list(self.alive), "updates": int(self.updates),
                           "num_features": int(self.num_features), "feature_names": list(self.feature_names),
                           "config": json.dumps(self.config.to_dict())}, path)

    @classmethod
    def load(cls, path: str | Path) -> "RuleSearchSelector":
        """A selector saved by :meth:`save` (read with ``torch.load(weights_only=True)``)."""
        from augrl.models import load_torch

        state = load_torch(path, map_location="cpu")
        selector = cls(state["num_features"], RuleSearchConfig.from_dict(json.loads(state["config"])),
                       state["feature_names"])
        selector.returns = {int(k): list(v) for k, v in state["returns"].items()}
        selector.arms = [[int(j), float(sign)] for j, sign in state["arms"]]
        selector.alive, selector.updates = state["alive"], state["updates"]
        selector._set_scores()
        return selector
