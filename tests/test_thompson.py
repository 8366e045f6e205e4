"""The linear Thompson-sampling selector recovers a known linear value from paired rewards."""

from __future__ import annotations

import numpy as np
import pytest

from augrl.errors import ConfigError
from augrl.selection.thompson import ThompsonConfig, ThompsonSelector

TRUE_WEIGHTS = np.array([1.0, -0.5, 0.0, 0.0])


class PairedLinearWorld:
    """Batches of 8 candidates with 4 Gaussian features; the env keeps a random control subset
    of the kept set's size and pays ``w* . (sum kept - sum control) + noise``, like the paired
    reward. ``trajectory``: as with the trajectory control, the two students' gap compounds:
    after step t it is ``(1 + 0.2 t) w* . D_t`` for the running contrast ``D_t``, and the
    reward is the step's change of the gap (plus noise)."""

    def __init__(self, trajectory: bool, steps: int = 5, noise: float = 0.5) -> None:
        from gymnasium import spaces

        self.batch, self.steps, self.noise, self.trajectory = 8, steps, noise, trajectory
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(8, 4), dtype=np.float32)
        self.rng = np.random.default_rng(0)

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.t, self.gap, self.running = 0, 0.0, np.zeros(4)
        self.obs = self.rng.standard_normal((8, 4)).astype(np.float32)
        return self.obs, {}

    def step(self, action):
        kept = np.flatnonzero(action)
        control = np.sort(self.rng.choice(self.batch, size=len(kept), replace=False))
        contrast = self.obs[kept].sum(0) - self.obs[control].sum(0)
        self.t += 1
        if self.trajectory:
            self.running = self.running + contrast
            gap = (1 + 0.2 * self.t) * float(TRUE_WEIGHTS @ self.running)
            value, self.gap = gap - self.gap, gap
        else:
            value = float(TRUE_WEIGHTS @ contrast)
        reward = value + self.noise * float(self.rng.standard_normal())
        self.obs = self.rng.standard_normal((8, 4)).astype(np.float32)
        info = {"control_positions": control.tolist(), "updated": True}
        return self.obs, reward, self.t >= self.steps, False, info


@pytest.mark.parametrize("trajectory", [False, True])
def test_thompson_selector_recovers_the_value_and_keeps_what_pays(trajectory):
    env = PairedLinearWorld(trajectory)
    selector = ThompsonSelector.for_env(env, ThompsonConfig(budget=0.25, cumulative=trajectory, seed=0))
    history = selector.learn(env, episodes=40, seed=0)
    w = selector.posterior()[0]
    assert w @ TRUE_WEIGHTS / (np.linalg.norm(w) * np.linalg.norm(TRUE_WEIGHTS)) > 0.95
    assert selector.updates == 40 * 5 and all(h["kept_fraction"] == 0.25 for h in history)
    # the first F steps keep a random subset (return about 0); the learned ones keep the best two
    late = np.mean([h["return"] for h in history[-10:]])
    assert late > 3.0 and late > np.mean([h["return"] for h in history[:1]])
    pool = np.random.default_rng(7).standard_normal((64, 4)).astype(np.float32)
    best = set(np.argsort(-(pool @ TRUE_WEIGHTS))[:16].tolist())
    assert len(set(selector.select(pool)) & best) >= 14


def test_thompson_selector_refuses_an_env_without_a_paired_control():
    class NoControl(PairedLinearWorld):
        def step(self, action):
            obs, r, done, trunc, info = super().step(action)
            info.pop("control_positions")
            return obs, r, done, trunc, info

    env = NoControl(trajectory=False)
    with pytest.raises(ConfigError, match="reward='paired'"):
        ThompsonSelector.for_env(env).learn(env, episodes=1)


def test_thompson_selector_saves_and_loads(tmp_path):
    env = PairedLinearWorld(trajectory=False)
    selector = ThompsonSelector.for_env(env, ThompsonConfig(budget=0.5))
    selector.learn(env, episodes=4)
    again = ThompsonSelector.load(selector.save(tmp_path / "t.pt"))
    obs, _ = env.reset(seed=3)
    assert np.allclose(selector.scores(obs), again.scores(obs)) and again.steps == selector.steps == 20
    action, _ = again.predict(obs, deterministic=True)
    assert action.sum() == 4 and np.array_equal(action, selector.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("settings, match", [({"budget": 0.0}, "budget"), ({"ridge": 0}, "ridge"),
                                             ({"exploration": -1}, "exploration")])
def test_thompson_config_names_a_bad_setting(settings, match):
    with pytest.raises(ConfigError, match=match):
        ThompsonConfig(**settings)
