"""Rule search finds the one-feature keep rule whose episodes pay most, and its sign."""

from __future__ import annotations

import numpy as np
import pytest

from augrl.errors import ConfigError
from augrl.selection.rule_search import RuleSearchConfig, RuleSearchSelector


class EpisodeValueWorld:
    """Batches of 8 candidates with 5 Gaussian features (the last constant, like ``progress``);
    each step pays ``w* . (sum kept - sum of a random subset of its size) + noise``."""

    def __init__(self, weights, noise: float = 1.0, steps: int = 4) -> None:
        from gymnasium import spaces

        self.weights, self.noise, self.steps = np.asarray(weights, dtype=float), noise, steps
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(8, 5), dtype=np.float32)

    def _obs(self):
        x = self.rng.standard_normal((8, 5)).astype(np.float32)
        x[:, 4] = 0.5
        return x

    def reset(self, seed=None, options=None):
        self.rng, self.t = np.random.default_rng(seed), 0
        self.obs = self._obs()
        return self.obs, {}

    def step(self, action):
        kept = np.flatnonzero(action)
        control = self.rng.choice(8, size=len(kept), replace=False)
        reward = float(self.weights @ (self.obs[kept].sum(0) - self.obs[control].sum(0)))
        reward += self.noise * float(self.rng.standard_normal())
        self.t += 1
        self.obs = self._obs()
        return self.obs, reward, self.t >= self.steps, False, {"updated": True}


@pytest.mark.parametrize("weights, rule, sign", [([1.0, -0.3, 0, 0, 0], 0, 1.0), ([0.2, 0, -1.0, 0, 0], 2, -1.0)])
def test_rule_search_finds_the_best_rule_and_its_sign(weights, rule, sign):
    env = EpisodeValueWorld(weights)
    selector = RuleSearchSelector.for_env(env, RuleSearchConfig(budget=0.25, keep_fraction=0.5, episodes_per_round=3))
    history = selector.learn(env, episodes=40, seed=0)
    # 4 varying features (the constant one is no rule): 4 + 2 x 3 + 1 x 3 ... within the budget
    assert len(history) <= 40 and {h["rule"] for h in history[:4]} == {"f0", "f1", "f2", "f3"}
    assert selector.leader() == rule and selector.leader_sign() == sign
    obs, _ = env.reset(seed=5)
    assert np.allclose(selector.scores(obs), sign * obs[:, rule])
    assert selector.ranking()[0]["rule"] == f"f{rule}" and selector.ranking()[0]["leader"] and all(h["kept_fraction"] == 0.25 for h in history)


@pytest.mark.parametrize("search_seed", range(5))
def test_common_episodes_compare_signed_rules_on_the_same_draws(search_seed):
    # the noise (5 per step, as large as the best rule's edge) is drawn alike for every arm of a
    # round, so it cancels from the comparison and the best signed rule wins on every seed
    env = EpisodeValueWorld([0.0, 0.0, -1.0, 0.3, 0.0], noise=5.0)
    selector = RuleSearchSelector.for_env(env, RuleSearchConfig(budget=0.25, keep_fraction=0.25, episodes_per_round=1,
                                                                common_episodes=True))
    seeds = []
    original = selector.play
    selector.play = lambda env, rule, sign, seed: seeds.append(seed) or original(env, rule, sign, seed)
    history = selector.learn(env, episodes=20, seed=100 * search_seed)
    assert [(h["rule"], h["sign"]) for h in history[:8]] == [(f"f{j}", s) for j in range(4) for s in (1.0, -1.0)]
    assert set(seeds[:8]) == {100 * search_seed}  # round 1: every arm on the same episode
    assert len(set(seeds[8:10])) == 1 and seeds[8] != seeds[0]  # round 2: the 2 survivors on one new episode
    assert len(history) == 8 + 2 and selector.leader() == 2 and selector.leader_sign() == -1.0
    obs, _ = env.reset(seed=7)
    assert np.allclose(selector.scores(obs), -obs[:, 2])


def test_rule_search_respects_the_episode_budget_and_saves(tmp_path):
    env = EpisodeValueWorld([1.0, 0, 0, 0, 0])
    selector = RuleSearchSelector.for_env(env, RuleSearchConfig(budget=0.5))
    assert len(selector.learn(env, episodes=3, seed=0)) == 3 and selector.updates == 3
    again = RuleSearchSelector.load(selector.save(tmp_path / "r.pt"))
    obs, _ = env.reset(seed=1)
    assert again.leader() == selector.leader() and np.allclose(again.scores(obs), selector.scores(obs))


@pytest.mark.parametrize("settings, match", [({"budget": 1.5}, "budget"), ({"keep_fraction": 1.0}, "keep_fraction"),
                                             ({"episodes_per_round": 0}, "episodes_per_round")])
def test_rule_search_config_names_a_bad_setting(settings, match):
    with pytest.raises(ConfigError, match=match):
        RuleSearchConfig(**settings)
