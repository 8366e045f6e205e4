"""Policies trained with stable-baselines3 on the env, and their evaluation (tiny models)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from augrl.errors import ConfigError


@pytest.fixture(scope="module")
def policy_world(toy_tasks, tiny_model_dir, augrl_cache, single_thread):
    from augrl.envs import AugmentKDConfig, build_world

    cfg = AugmentKDConfig(task=str(toy_tasks["single_file"]), shots=8, pool_size=48, batch_size=8,
                          teacher=str(tiny_model_dir), student_init=str(tiny_model_dir), teacher_train={"epochs": 1},
                          device="cpu")
    return build_world(cfg)


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_train_policy_record_files_and_honest_evaluation(policy_world, algo, tmp_path):
    from augrl.policies import PolicyConfig, train_policy

    cfg = PolicyConfig(algo=algo, episodes=2, eval_epochs=1, eval_batch_size=8, batch_size=16)
    record = train_policy(policy_world.config, cfg, out_dir=tmp_path, progress=False, world=policy_world)
    steps = 6 if algo == "ppo" else 48
    assert record["training"]["env_steps"] == 2 * steps
    assert [e["episode"] for e in record["training"]["episodes"]] == [1, 2]
    ev = record["evaluation"]
    assert set(ev) == {"policy", "all", "random"}
    assert ev["all"]["kept"] == 48 and ev["random"]["kept"] == ev["policy"]["kept"]
    assert ev["all"]["train_size"] == 16 + 48
    assert record["metrics"]["test"] == ev["policy"]["test"]
    run_dir = tmp_path / f"{algo}-seed0"
    assert (run_dir / "policy.zip").is_file() and (run_dir / "learning_curves.png").stat().st_size > 0
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents*"))
    json.dumps(record, default=str)


def test_saved_policy_reloads_and_selects_the_same(policy_world, tmp_path):
    from stable_baselines3 import PPO

    from augrl.policies import PolicyConfig, select_by_policy, train_policy

    cfg = PolicyConfig(algo="ppo", episodes=1, eval_epochs=1, eval_batch_size=8, budget=0.25)
    record = train_policy(policy_world.config, cfg, out_dir=tmp_path, progress=False, world=policy_world)
    agent = PPO.load(record["policy_path"], device="cpu")
    kept, scores = select_by_policy(agent, policy_world, "batch", cfg.budget, seed=0)
    assert kept == record["evaluation"]["policy"]["kept_indices"]
    assert len(kept) == round(0.25 * len(policy_world.pool)) == record["evaluation"]["random"]["kept"]
    assert min(scores[kept]) >= max(np.delete(scores, kept))  # the top of the policy's scores


def test_policy_config_errors():
    from augrl.policies import PolicyConfig

    with pytest.raises(ConfigError, match="unknown algo"):
        PolicyConfig(algo="sac")
    with pytest.raises(ConfigError, match="episodes"):
        PolicyConfig(episodes=0)
    with pytest.raises(ConfigError, match=r"budget must be a fraction in \(0, 1\]"):
        PolicyConfig(budget=1.5)


def test_cli_train_policy_json(toy_tasks, tiny_model_dir, tmp_path, capsys, single_thread):
    from augrl.cli import main

    code = main(["train-policy", "--task", str(toy_tasks["single_file"]), "--shots", "8", "--algo", "a2c",
                 "--teacher", str(tiny_model_dir), "--pool-size", "32", "--env-batch-size", "8", "--max-steps", "6",
                 "--device", "cpu", "--out", str(tmp_path), "--json", "--quiet"])
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["method"] == "kd+a2c"
    assert 6 <= record["training"]["env_steps"] < 6 + 5  # A2C runs whole rollouts of 5 steps
    from augrl.results import read_jsonl

    lines, bad = read_jsonl(tmp_path / "results.jsonl")  # one line per run: the printed record
    assert not bad and len(lines) == 1
    assert {k: lines[0][k] for k in ("method", "seed", "metrics", "evaluation")} == \
        {k: record[k] for k in ("method", "seed", "metrics", "evaluation")}
    assert main(["train-policy", "--task", str(toy_tasks["single_file"]), "--algo", "ppo", "--pool-size", "4",
                 "--env-batch-size", "8", "--teacher", str(tiny_model_dir)]) == 2
    assert "pool_size" in capsys.readouterr().err


def test_an_agent_without_tensorboard_leaves_no_sb3_log_folder(tmp_path, monkeypatch):
    """SB3's default logger makes an empty ``SB3-<time>`` folder in the temp dir per agent."""
    import tempfile

    import gymnasium as gym

    from augrl.policies import PolicyConfig, make_agent

    class Tiny(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (3,))
        action_space = gym.spaces.Discrete(2)
        steps_per_episode = 4

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, True, False, {}

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for algo in ("a2c", "ppo"):
        make_agent(algo, Tiny(), PolicyConfig(), seed=0, total=4).learn(8)
    assert list(tmp_path.iterdir()) == []
