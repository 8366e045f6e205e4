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


@pytest.mark.parametrize("network", ["mlp", "slots"])
def test_saved_policy_reloads_and_selects_the_same(policy_world, network, tmp_path):
    from stable_baselines3 import PPO

    from augrl.policies import PolicyConfig, select_by_policy, train_policy

    cfg = PolicyConfig(algo="ppo", episodes=1, eval_epochs=1, eval_batch_size=8, budget=0.25, policy=network)
    record = train_policy(policy_world.config, cfg, out_dir=tmp_path, progress=False, world=policy_world)
    agent = PPO.load(record["policy_path"], device="cpu")
    kept, scores = select_by_policy(agent, policy_world, "batch", cfg.budget, seed=0)
    assert kept == record["evaluation"]["policy"]["kept_indices"]
    assert len(kept) == round(0.25 * len(policy_world.pool)) == record["evaluation"]["random"]["kept"]
    assert min(scores[kept]) >= max(np.delete(scores, kept))  # the top of the policy's scores
    assert (type(agent.policy).__name__ == "SlotPolicy") == (network == "slots")  # the class travels in the zip


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


class _SlotBandit:
    """A batch bandit: B candidates of F random features; keeping a candidate pays +1 when its
    first feature is positive and -1 otherwise (gamma 0: every step is its own episode)."""

    def __new__(cls, slots: int = 8, features: int = 3, seed: int = 0):
        import gymnasium as gym

        class Bandit(gym.Env):
            observation_space = gym.spaces.Box(-3, 3, (slots, features), dtype=np.float32)
            action_space = gym.spaces.MultiBinary(slots)
            steps_per_episode = 1

            def reset(self, seed=None, options=None):
                super().reset(seed=seed)
                self.obs = self.np_random.normal(size=(slots, features)).clip(-3, 3).astype(np.float32)
                return self.obs, {}

            def step(self, action):
                reward = float(np.where(self.obs[:, 0] > 0, 1.0, -1.0) @ np.asarray(action, dtype=float))
                return self.reset()[0], reward, True, False, {}

        return Bandit()


def test_the_slot_policy_is_permutation_equivariant_and_its_size_does_not_grow_with_the_batch():
    import torch

    from augrl.policies import PolicyConfig, make_agent

    agents = {b: make_agent("ppo", _SlotBandit(slots=b), PolicyConfig(policy="slots"), seed=0, total=4) for b in (8, 32)}
    sizes = {b: sum(p.numel() for p in a.policy.parameters()) for b, a in agents.items()}
    assert sizes[8] == sizes[32]
    flat = {b: sum(p.numel() for p in make_agent("ppo", _SlotBandit(slots=b), PolicyConfig(), seed=0,
                                                   total=4).policy.parameters()) for b in (8, 32)}
    assert flat[32] > flat[8]  # the MlpPolicy's input and output layers grow with B
    policy = agents[8].policy
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(1, 8, 3)), dtype=torch.float32)
    perm = torch.as_tensor(np.random.default_rng(1).permutation(8))
    with torch.no_grad():
        probs = policy.get_distribution(obs).distribution.probs
        permuted = policy.get_distribution(obs[:, perm]).distribution.probs
        values = policy.predict_values(obs), policy.predict_values(obs[:, perm])
    assert torch.allclose(permuted, probs[:, perm], atol=1e-6)
    assert torch.allclose(*values, atol=1e-6)
    assert not torch.allclose(probs, probs[:, perm])  # the slots are scored, not given one probability


def test_ppo_with_the_slot_policy_learns_which_candidates_pay():
    from augrl.metrics import detection_auc
    from augrl.policies import PolicyConfig, make_agent, policy_scores

    env = _SlotBandit(slots=8)
    agent = make_agent("ppo", env, PolicyConfig(policy="slots", n_steps=64, learning_rate=3e-3), seed=0, total=64)
    agent.learn(1024)
    rows = np.random.default_rng(2).normal(size=(256, 3)).astype(np.float32)
    scores = policy_scores(agent, rows, "batch", 8)
    assert detection_auc(scores, rows[:, 0] <= 0) > 0.9  # the candidates that cost score lowest


def test_slot_policy_config_errors():
    from augrl.policies import PolicyConfig

    with pytest.raises(ConfigError, match="policy must be one of"):
        PolicyConfig(policy="cnn")
    with pytest.raises(ConfigError, match="policy='slots'.*dqn decides one candidate at a time"):
        PolicyConfig(algo="dqn", policy="slots")


def test_dqn_with_batch_long_returns_credits_every_decision_of_a_batch():
    """Sample mode pays a batch's reward with its last decision; 8-step returns at gamma 1 in
    one-batch episodes carry it back to every decision (``kd+dqn-nstep``)."""
    import gymnasium as gym
    import torch

    from augrl.metrics import detection_auc
    from augrl.policies import PolicyConfig, make_agent

    class SampleBandit(gym.Env):
        B = 8
        observation_space = gym.spaces.Box(-3, 3, (3,), dtype=np.float32)
        action_space = gym.spaces.Discrete(2)
        steps_per_episode = 1

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.x = self.np_random.normal(size=(self.B, 3)).clip(-3, 3).astype(np.float32)
            self.j, self.total = 0, 0.0
            return self.x[0], {}

        def step(self, action):
            self.total += float(action) * (1.0 if self.x[self.j, 0] > 0 else -1.0)
            self.j += 1
            done = self.j == self.B
            return (np.zeros(3, np.float32) if done else self.x[self.j]), (self.total if done else 0.0), done, False, {}

    agent = make_agent("dqn", SampleBandit(), PolicyConfig(algo="dqn", gamma=1.0, n_steps=8, learning_rate=1e-3),
                       seed=0)
    assert type(agent.replay_buffer).__name__ == "NStepReplayBuffer"
    agent.learn(2000)
    rows = np.random.default_rng(2).normal(size=(512, 3)).astype(np.float32)
    with torch.no_grad():
        q = agent.q_net(torch.as_tensor(rows)).numpy()
    assert detection_auc(q[:, 1] - q[:, 0], rows[:, 0] <= 0) > 0.95
