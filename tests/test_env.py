"""augrl/AugmentKD-v0 with tiny random models on toy tasks: validity, determinism, dynamics, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

gym = pytest.importorskip("gymnasium")

from augrl.envs import ENV_ID, AugmentKDConfig, AugmentKDEnv, build_world, feature_names  # noqa: E402
from augrl.errors import ConfigError  # noqa: E402


@pytest.fixture(scope="module")
def env_kwargs(toy_tasks, tiny_model_dir, augrl_cache):
    return dict(task=str(toy_tasks["single_file"]), shots=8, pool_size=64, batch_size=16, teacher=str(tiny_model_dir),
                student_init=str(tiny_model_dir), teacher_train={"epochs": 1}, device="cpu", target_batch_size=4,
                snapshot_steps=(0, 4))


@pytest.fixture(scope="module")
def world(env_kwargs, single_thread):
    return build_world(AugmentKDConfig(**env_kwargs))


def _episode(env, seed, actions=None):
    obs, _ = env.reset(seed=seed)
    observations, rewards, infos = [obs], [], []
    done, t = False, 0
    while not done:
        a = actions[t] if actions is not None else np.ones(env.action_space.shape, dtype=np.int8)
        obs, r, done, trunc, info = env.step(a)
        assert not trunc
        observations.append(obs)
        rewards.append(r)
        infos.append(info)
        t += 1
    return observations, rewards, infos


@pytest.mark.parametrize("decision", ["batch", "sample"])
def test_make_passes_both_checkers(env_kwargs, decision, single_thread):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make(ENV_ID, decision=decision, **env_kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)
    assert len(feature_names(2)) == 2 * 2 + 18
    # an EDA pool has no generator scores: that feature is constant, so it is not shown
    assert "generator_logprob" in env.unwrapped.world.dropped_features
    assert env.unwrapped.feature_names == [n for n in feature_names(2) if n not in env.unwrapped.world.dropped_features]
    n_features = len(env.unwrapped.feature_names)
    if decision == "batch":
        assert env.observation_space.shape == (16, n_features)
        assert env.action_space == gym.spaces.MultiBinary(16)
    else:
        assert env.observation_space.shape == (n_features,)
        assert env.action_space == gym.spaces.Discrete(2)


def test_episode_structure_and_info(world):
    env = AugmentKDEnv.from_world(world, reward="metric", normalize_obs=False)
    assert env.steps_per_episode == 64 // 16
    obs, rewards, infos = _episode(env, seed=0)
    assert len(rewards) == 4 and all(i["updated"] for i in infos)
    assert infos[-1]["kept_total"] == 64 and infos[-1]["candidates_seen"] == 64
    assert sorted(infos[-1]["episode_kept_indices"]) == list(range(64))
    # the metric reward telescopes to the change of the validation metric
    first = env.reset(seed=0)[1]["val_metric"]
    _, rewards, infos = _episode(env, seed=0)
    assert sum(rewards) == pytest.approx(infos[-1]["val_metric"] - first, abs=1e-9)
    # raw observations: progress counts decided candidates, teacher probabilities sum to one
    names = env.feature_names
    assert obs[0][:, names.index("progress")].max() == 0.0
    assert obs[1][:, names.index("progress")].max() == pytest.approx(0.25)
    p = obs[0][:, [names.index("teacher_prob_0"), names.index("teacher_prob_1")]].sum(1)
    assert np.allclose(p, 1.0, atol=1e-5)
    assert set(np.unique(obs[0][:, names.index("is_source")])) <= {0.0, 1.0}


def test_same_seed_same_trajectory_and_student(env_kwargs, single_thread):
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 2, size=16) for _ in range(4)]
    runs = []
    for _ in range(2):  # two separately built worlds
        env = gym.make(ENV_ID, **env_kwargs).unwrapped
        runs.append((_episode(env, seed=5, actions=actions), env.student.state_dict()))
    (obs_a, rew_a, _), state_a = runs[0]
    (obs_b, rew_b, _), state_b = runs[1]
    assert all(np.array_equal(x, y) for x, y in zip(obs_a, obs_b))
    assert rew_a == rew_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    env = gym.make(ENV_ID, **env_kwargs).unwrapped
    other, _ = env.reset(seed=6)
    assert not np.array_equal(other, obs_a[0])  # another episode seed: another pool order


def test_env_rng_does_not_touch_global_torch_rng(world):
    env = AugmentKDEnv(world=world)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    env.reset(seed=0)
    env.step(np.ones(16, dtype=np.int8))
    assert torch.equal(torch.rand(3), expected)


def test_keep_nothing(world):
    env = AugmentKDEnv.from_world(world, target_batch_size=0)
    env.reset(seed=0)
    before = {k: v.clone() for k, v in env.student.state_dict().items()}
    _, reward, _, _, info = env.step(np.zeros(16, dtype=np.int8))
    assert reward == 0.0 and not info["updated"] and info["kept"] == 0
    assert all(torch.equal(before[k], v) for k, v in env.student.state_dict().items())
    # with target examples in every step, dropping all candidates still trains on them
    env = AugmentKDEnv.from_world(world, target_batch_size=4)
    env.reset(seed=0)
    before = {k: v.clone() for k, v in env.student.state_dict().items()}
    _, _, _, _, info = env.step(np.zeros(16, dtype=np.int8))
    assert info["updated"] and info["kept"] == 0
    assert any(not torch.equal(before[k], v) for k, v in env.student.state_dict().items())


def test_loss_reward_is_validation_loss_decrease(world):
    env = AugmentKDEnv.from_world(world, reward="loss")
    _, info0 = env.reset(seed=1)
    _, r, _, _, info1 = env.step(np.ones(16, dtype=np.int8))
    assert r == pytest.approx(info0["val_loss"] - info1["val_loss"], abs=1e-6)


def test_student_reset_modes(world):
    env = AugmentKDEnv.from_world(world, student_reset="never")
    _episode(env, seed=0)
    trained = {k: v.clone() for k, v in env.student.state_dict().items()}
    env.reset(seed=1)
    assert all(torch.equal(trained[k], v) for k, v in env.student.state_dict().items())
    env = AugmentKDEnv.from_world(world, student_reset="episode", snapshot_steps=())
    _episode(env, seed=0)
    env.reset(seed=1)
    initial = world.student_template.state_dict()
    assert all(torch.equal(initial[k], v) for k, v in env.student.state_dict().items())
    # warm starts: each reset restores one of the world's snapshots, weights and optimiser
    env = AugmentKDEnv.from_world(world, snapshot_steps=(0, 3, 6))
    starts = set()
    for seed in range(6):
        _, info = env.reset(seed=seed)
        starts.add(info["start_step"])
        state = dict(env.world.snapshots())[info["start_step"]]
        params = dict(env.student.named_parameters())
        assert all(torch.equal(params[k], v) for k, v in state["student"].items())
        assert env.distiller.steps == state["steps"] == info["start_step"]
        env.step(np.ones(16, dtype=np.int8))
    assert starts == {0, 3, 6}
    _, info = env.reset(seed=0, options={"snapshot": 6})
    assert info["start_step"] == 6
    with pytest.raises(ValueError, match="no snapshot at that step"):
        env.reset(seed=0, options={"snapshot": 4})


def test_sample_mode_updates_every_b_decisions(world):
    env = AugmentKDEnv.from_world(world, decision="sample")
    env.reset(seed=0)
    updates = []
    for i in range(32):
        _, r, done, _, info = env.step(i % 2)
        updates.append(info["updated"])
        if not info["updated"]:
            assert r == 0.0
    assert [i for i, u in enumerate(updates) if u] == [15, 31]
    assert info["kept_total"] == 16 and info["candidates_seen"] == 32


def test_bad_actions(world):
    env = AugmentKDEnv(world=world)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.ones(16))
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        env.step(np.ones(8))
    with pytest.raises(ValueError, match="0 \\(drop\\) or 1 \\(keep\\)"):
        env.step(np.full(16, 2))
    with pytest.raises(ValueError, match="dtype"):
        env.step(np.array(["1"] * 16))
    env.step(np.ones(16, dtype=np.float32))  # SB3's MultiBinary actions arrive as floats
    sample = AugmentKDEnv.from_world(world, decision="sample")
    sample.reset(seed=0)
    with pytest.raises(ValueError, match="Discrete"):
        sample.step(3)
    with pytest.raises(ValueError, match="Discrete"):
        sample.step(0.5)
    for _ in range(4):
        env.step(np.ones(16)) if env._batch < env.steps_per_episode else None
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(np.ones(16))


def test_bad_settings(env_kwargs):
    with pytest.raises(ConfigError, match="pool_size"):
        AugmentKDConfig(**{**env_kwargs, "pool_size": 8, "batch_size": 16})
    with pytest.raises(ConfigError, match="unknown augmenter"):
        gym.make(ENV_ID, **{**env_kwargs, "augmenter": "nope"})
    with pytest.raises(ConfigError, match="unknown task|task"):
        gym.make(ENV_ID, **{**env_kwargs, "task": "no-such-task"})
    with pytest.raises(ConfigError, match="decision"):
        gym.make(ENV_ID, **{**env_kwargs, "decision": "both"})
    with pytest.raises(ConfigError, match="unknown field"):
        gym.make(ENV_ID, **{**env_kwargs, "pool": 3})


def test_from_world_refuses_world_settings(world):
    with pytest.raises(ConfigError, match="decide the world"):
        AugmentKDEnv.from_world(world, augmenter="mask")
    with pytest.raises(ConfigError, match=r"\['device'\] decide the world"):  # its tensors live on its device
        AugmentKDEnv.from_world(world, device="cuda")


def test_layer_objective_and_shared_forward(toy_tasks, tiny_model_dir, env_kwargs, single_thread):
    """L2A's objective (attention + hidden + dark knowledge) through the cached teacher layers."""
    env = gym.make(ENV_ID, **{**env_kwargs, "objective": {"attention_mse": 1, "hidden_mse": 1, "dark_ce": 1},
                              "student_layers": 2}).unwrapped
    _, rewards, infos = _episode(env, seed=0)
    assert set(infos[0]["loss_terms"]) == {"attention_mse", "hidden_mse", "dark_ce", "loss"}
    terms = infos[0]["loss_terms"]
    # each layer term is read from the cached teacher layers (a random student differs from them) and the
    # total is their weighted sum (weights 1)
    assert terms["attention_mse"] > 1e-6 and terms["hidden_mse"] > 1e-6
    assert terms["loss"] == pytest.approx(terms["attention_mse"] + terms["hidden_mse"] + terms["dark_ce"], rel=1e-4)


def test_outputs_rows_match_a_forward_on_the_rows_alone(world):
    """Trimmed rows of a batch's outputs give the same loss as a forward pass on those rows."""
    from augrl.kd.outputs import Needs, model_outputs

    student = world.new_student().eval()
    batch = world.encoded.batch(list(range(12)))
    needs = Needs.of(hidden_states=[0, 1, 2], attentions=[1, 2], attention_scores=[2])
    full = model_outputs(student, batch, needs)
    rows = torch.tensor([1, 4, 7])
    length = int(batch["attention_mask"][rows].sum(1).max())
    cut = full.rows(rows, length)
    alone = model_outputs(student, world.encoded.batch([1, 4, 7]), needs)
    assert torch.allclose(cut.logits, alone.logits, atol=1e-5)
    assert cut.mask.shape == alone.mask.shape
    for a, b in zip(cut.hidden_states, alone.hidden_states):
        assert a is None and b is None or torch.allclose(a * cut.mask[..., None], b * alone.mask[..., None], atol=1e-5)
    assert torch.allclose(cut.attentions[1], alone.attentions[1], atol=1e-5)


def test_regression_task(toy_regression_task, tiny_model_dir, augrl_cache, single_thread):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(ENV_ID, task=str(toy_regression_task), shots=8, pool_size=32, batch_size=8,
                   teacher=str(tiny_model_dir), student_init=str(tiny_model_dir), teacher_train={"epochs": 1}, device="cpu")
    names = env.unwrapped.feature_names
    assert env.observation_space.shape == (8, len(names)) and len(names) <= 15 and "squared_difference" in names
    check_env(env.unwrapped, skip_render_check=True)
    _, rewards, infos = _episode(env.unwrapped, seed=0)
    assert len(rewards) == 4 and "pearson" in infos[-1]["val_metrics"]


def test_stable_baselines3_agents(world, env_kwargs, tmp_path, monkeypatch):
    import tempfile

    from stable_baselines3 import A2C, DQN, PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # SB3's default logger's SB3-<time> folders go here

    env = AugmentKDEnv(world=world)
    PPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu").learn(64)
    A2C("MlpPolicy", env, n_steps=4, seed=0, device="cpu").learn(16)
    sample = AugmentKDEnv.from_world(world, decision="sample")
    DQN("MlpPolicy", sample, learning_starts=16, buffer_size=256, seed=0, device="cpu").learn(64)
    vec = DummyVecEnv([lambda: AugmentKDEnv(world=world), lambda: AugmentKDEnv(world=world)])
    vec.seed(0)
    vec.reset()
    obs, rewards, dones, infos = vec.step(np.ones((2, 16), dtype=np.int8))
    assert obs.shape == (2, 16, len(world.feature_names)) and rewards.shape == (2,)


def test_subproc_vec_env(env_kwargs):
    from stable_baselines3.common.vec_env import SubprocVecEnv

    def make():
        import augrl.envs  # noqa: F401  (registers the id in the worker)
        return gym.make(ENV_ID, **env_kwargs)

    vec = SubprocVecEnv([make, make])
    try:
        vec.seed(0)
        obs = vec.reset()
        assert obs.shape == (2, 16, len(gym.make(ENV_ID, **env_kwargs).unwrapped.feature_names))
        for _ in range(4):  # a whole episode; auto-reset afterwards
            obs, rewards, dones, infos = vec.step(np.ones((2, 16), dtype=np.int8))
        assert dones.all() and np.isfinite(rewards).all()
    finally:
        vec.close()
