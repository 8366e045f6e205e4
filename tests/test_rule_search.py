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


class PoolWorld(EpisodeValueWorld):
    """A pool of 64 candidates with a static value each; a batch shows 8 of them. The episode's
    observation of feature 0 is *minus* the value (a student-dependent reading that points the
    wrong way at every step), while the pool's views at the snapshots show the value; each step
    pays the kept candidates' values minus a random subset's."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__([0.0] * 5, noise=0.1)
        self.values = np.random.default_rng(seed).standard_normal(64).astype(np.float32)
        self.views_taken = 0

    def _pool(self, sign: float):
        x = np.zeros((64, 5), dtype=np.float32)
        x[:, 0], x[:, 1], x[:, 4] = sign * self.values, np.arange(64) % 3, 0.5
        return x

    def pool_views(self):
        self.views_taken += 1
        return [self._pool(1.0) * 0.5, self._pool(1.0) * 1.5]  # two snapshots; their mean is the value

    def pool_observations(self):
        return self._pool(-1.0)

    def _obs(self):
        self.batch_rows = self.rng.choice(64, size=8, replace=False)
        return self._pool(-1.0)[self.batch_rows]

    def step(self, action):
        kept = np.flatnonzero(action)
        control = self.rng.choice(8, size=len(kept), replace=False)
        reward = float(self.values[self.batch_rows[kept]].sum() - self.values[self.batch_rows[control]].sum())
        reward += self.noise * float(self.rng.standard_normal())
        self.t += 1
        self.obs = self._obs()
        return self.obs, reward, self.t >= self.steps, False, {"updated": True}


@pytest.mark.parametrize("static", [False, True])
def test_static_features_judge_rules_on_the_scores_the_final_selection_uses(static):
    env = PoolWorld()
    config = RuleSearchConfig(budget=0.25, keep_fraction=0.25, episodes_per_round=1, common_episodes=True,
                              static_features=static)
    selector = RuleSearchSelector.for_env(env, config)
    selector.learn(env, episodes=12, seed=0)
    assert selector.leader() == 0 and env.views_taken == int(static)
    # played on the episode's (reversed) readings the search learns to keep by minus the reading;
    # on the static features it keeps by the value itself, which the final selection scores
    assert selector.leader_sign() == (1.0 if static else -1.0)
    final = selector.pool_scores(env.pool_views())
    assert np.allclose(final, selector.leader_sign() * env.values)


def test_static_features_need_a_pool():
    selector = RuleSearchSelector.for_env(EpisodeValueWorld([1.0, 0, 0, 0, 0]), RuleSearchConfig(static_features=True))
    with pytest.raises(ConfigError, match="static_features"):
        selector.learn(EpisodeValueWorld([1.0, 0, 0, 0, 0]), episodes=2)
