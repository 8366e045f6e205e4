"""L2A: the constrained generator P_s, G_theta's update, the REINFORCE selector, the method end to end."""

from __future__ import annotations

import json
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from scipy.stats import chisquare

from augrl import baselines
from augrl.errors import ConfigError
from augrl.generator import L2AGenerator, edit_distance_probs
from augrl.selection.reinforce import ReinforceSelector, SelectorConfig

SENTENCE = "the movie was really good fun"


@pytest.fixture(scope="module")
def generator(toy_tasks, tiny_model_dir, augrl_cache):
    import torch

    torch.set_num_threads(1)
    return baselines.get("l2a", mlm=str(tiny_model_dir), mlm_steps=20, top_k=10).fit(toy_tasks["single"])


def test_edit_distance_probs_shape_and_alpha():
    p = edit_distance_probs(6, 1.0)
    assert p.shape == (7,) and p.sum() == pytest.approx(1.0) and (p >= 0).all()
    assert edit_distance_probs(0, 1.0).tolist() == [1.0]
    means = [float((edit_distance_probs(10, a) * np.arange(11)).sum()) for a in (0.25, 0.5, 1, 2, 4, 8)]
    assert all(b > a for a, b in zip(means, means[1:]))  # larger alpha: mass at larger d
    # exp(-d/alpha) C(m,d): the mode of C(m,d) alone is m/2; small alpha pulls it to 0
    assert edit_distance_probs(10, 0.1).argmax() == 0 and edit_distance_probs(10, 100).argmax() == 5
    assert (edit_distance_probs(10, 1.0, candidate_factor=10) * np.arange(11)).sum() > means[2]
    with pytest.raises(ConfigError):
        edit_distance_probs(3, 0.0)


def test_sampled_edit_distances_follow_p_d(generator):
    m = len(SENTENCE.split())
    samples = generator.augment_scored([SENTENCE], n=600, seed=0)[0]
    counts = Counter(s.edits for s in samples)
    observed = np.array([counts.get(d, 0) for d in range(m + 1)])
    expected = edit_distance_probs(m, generator.alpha) * len(samples)
    keep = expected >= 5  # chi-square needs enough expected counts; pool the tail
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    assert chisquare(obs, exp).pvalue > 1e-3
    # every sample's edits are exactly d word substitutions of the input
    for s in samples[:50]:
        assert sum(a != b for a, b in zip(SENTENCE.split(), s.text.split())) == s.edits


def test_positions_are_uniform(generator):
    samples = generator.augment_scored([SENTENCE], n=600, seed=1)[0]
    words = SENTENCE.split()
    changed = np.zeros(len(words))
    for s in samples:
        changed += [a != b for a, b in zip(words, s.text.split())]
    assert chisquare(changed).pvalue > 1e-3


def test_low_temperature_gives_the_mlm_argmax(generator, toy_tasks, tiny_model_dir):
    cold = L2AGenerator(mlm=generator.masked_lm(), temperature=1e-4, top_k=10)
    samples = cold.augment_scored([SENTENCE], n=200, seed=2)[0]
    by_positions: dict[tuple, set] = {}
    for s in samples:
        where = tuple(i for i, (a, b) in enumerate(zip(SENTENCE.split(), s.text.split())) if a != b)
        by_positions.setdefault(where, set()).add(s.text)
        # log P(w) is ~0 for the argmax: log P_s is log P(d) + log P(o|d) alone
        m = len(SENTENCE.split())
        assert s.logprob == pytest.approx(cold._position_logprob(m, s.edits), abs=0.05)
    assert all(len(texts) == 1 for texts in by_positions.values())  # same positions: same words
    warm = L2AGenerator(mlm=generator.masked_lm(), temperature=5.0, top_k=10).augment_scored([SENTENCE], n=200, seed=2)[0]
    assert len({s.text for s in warm}) > len({s.text for s in samples})


def test_samples_are_seeded_and_scored(generator):
    a = generator.augment_scored([SENTENCE, ("q one", "q two")], n=5, seed=3)
    b = generator.augment_scored([SENTENCE, ("q one", "q two")], n=5, seed=3)
    assert a == b
    assert all(s.logprob <= 0 for row in a for s in row)
    assert isinstance(a[1][0].text, tuple)
    assert generator.augment([SENTENCE], n=5, seed=3)[0] == [s.text for s in a[0]]


def test_generator_update_raises_logprob_of_a_highly_weighted_sample(generator):
    import copy

    gen = L2AGenerator(mlm=copy.deepcopy(generator.masked_lm()), top_k=10)
    samples = gen.augment_scored([SENTENCE] * 8, n=1, seed=4)
    rows = [(SENTENCE, s[0].text, s[0].logprob) for s in samples if s[0].edits > 0]
    assert len(rows) >= 3
    originals, texts, lps = map(list, zip(*rows))
    keep = [1.0] + [0.0] * (len(rows) - 1)  # the selector keeps the first sample only
    lps = [max(lps) + 5.0] + lps[1:]  # and it is the most probable under P_s
    before = gen.sample_logprob(originals[:1], texts[:1])[0].item()
    result = gen.update(originals, texts, lps, keep, lr=1e-3, steps=3)
    after = gen.sample_logprob(originals[:1], texts[:1])[0].item()
    assert result["samples"] == len(rows) and after > before


class KeepFlaggedBandit(gym.Env):
    """Keeping a candidate whose first feature is 1 pays +1, keeping one whose flag is 0 pays -1."""

    def __init__(self, batch: int = 8, steps: int = 5) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(batch, 3), dtype=np.float32)
        self.action_space = gym.spaces.MultiBinary(batch)
        self.steps, self.batch = steps, batch

    def _obs(self):
        flags = self.np_random.integers(0, 2, size=(self.batch, 1)).astype(np.float32)
        return np.concatenate([flags, self.np_random.uniform(-1, 1, size=(self.batch, 2)).astype(np.float32)], 1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.obs = self._obs()
        return self.obs, {}

    def step(self, action):
        flags = self.obs[:, 0]
        reward = float(((2 * flags - 1) * np.asarray(action)).sum()) / self.batch
        rows = list(range(self.t * self.batch, (self.t + 1) * self.batch))
        self.t += 1
        self.obs = self._obs()
        return self.obs, reward, self.t >= self.steps, False, {"decided_rows": rows}


def test_reinforce_selector_learns_the_bandit():
    env = KeepFlaggedBandit()
    selector = ReinforceSelector.for_env(env, SelectorConfig(lr=1e-2, seed=0))
    flagged = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    before = selector.keep_probs(flagged)
    history = selector.learn(env, episodes=60, seed=0)
    after = selector.keep_probs(flagged)
    assert after[0] > before[0] + 0.2 and after[1] < before[1] - 0.2
    # under its budget (half of each batch) a random choice earns 0 on average; the trained one
    # keeps the flagged candidates first
    assert np.mean([h["return"] for h in history[-10:]]) > 1.0
    assert all(h["kept_fraction"] == 0.5 for h in history) and history[-1]["updates"] == 5
    stats = selector.run_episode(env, seed=99, learn=False)
    assert len(stats["keep_probs"]) == 40 and selector.updates == 60 * 5
    # the final selection over a pool is its top-scored share, here the flagged rows
    pool = env._obs()
    kept = selector.select(pool, budget=0.25)
    assert len(kept) == 2 and set(kept) <= set(np.flatnonzero(pool[:, 0] == 1))


def test_selector_save_load_and_predict(tmp_path):
    env = KeepFlaggedBandit()
    selector = ReinforceSelector.for_env(env)
    selector.learn(env, episodes=3)
    path = selector.save(tmp_path / "s.pt")
    again = ReinforceSelector.load(path)
    obs, _ = env.reset(seed=0)
    assert np.allclose(selector.keep_probs(obs), again.keep_probs(obs))
    action, _ = again.predict(obs, deterministic=True)
    assert action.shape == (8,) and set(np.unique(action)) <= {0, 1}
    with pytest.raises(ConfigError, match="features"):
        selector.keep_probs(np.zeros((8, 5)))


@pytest.fixture(scope="module")
def l2a_settings(toy_tasks, tiny_model_dir, generator):
    from augrl.envs import AugmentKDConfig

    env = AugmentKDConfig(task=str(toy_tasks["single_file"]), shots=8, batch_size=8, teacher=str(tiny_model_dir),
                          student_init=str(tiny_model_dir), teacher_train={"epochs": 1}, device="cpu", snapshot_steps=(0, 3),
                          augmenter="l2a", augmenter_params={"mlm": str(tiny_model_dir), "mlm_steps": 20, "top_k": 10})
    return env


def test_snapshots_may_not_outrun_the_final_student(l2a_settings, tmp_path):
    from augrl.l2a import L2AConfig, run_l2a

    cfg = L2AConfig(episodes=1, eval_epochs=1, eval_batch_size=8)  # 16 target + half of 64 candidates: 6 steps
    with pytest.raises(ConfigError, match=r"snapshot_steps \[0, 50\] reach step 50.*use snapshot steps in \[0, 6\]"):
        run_l2a(l2a_settings.replace(snapshot_steps=(0, 50)), cfg, out_dir=tmp_path, progress=False)


@pytest.mark.parametrize("flags, check", [
    ({}, lambda r: r["method"] == "kd+l2a" and len(r["generator_updates"]) == 1 and len(r["episodes"]) == 3
     and r["pool"]["source"] > 0 and r["pool"]["target"] > 0),
    ({"use_source": False}, lambda r: r["method"] == "kd+l2a-nosrc" and r["pool"]["source"] == 0),
    ({"use_target": False}, lambda r: r["method"] == "kd+l2a-notgt" and r["pool"]["target"] == 0),
    ({"generator_every": 0}, lambda r: r["method"] == "kd+l2a-nogen" and not r["generator_updates"]),
    ({"use_selector": False}, lambda r: r["method"] == "kd+l2a-noselector" and not r["episodes"]
     and r["selection"]["kept"] == r["selection"]["pool"]),
])
def test_run_l2a_and_ablations(l2a_settings, flags, check, tmp_path, single_thread):
    from augrl.l2a import L2AConfig, run_l2a

    cfg = L2AConfig(**{"episodes": 3, "generator_every": 2, "eval_epochs": 1, "eval_batch_size": 8, **flags})
    record = run_l2a(l2a_settings, cfg, out_dir=tmp_path, progress=False)
    assert check(record), {k: record[k] for k in ("method", "pool", "selection", "generator_updates")}
    assert record["pool"]["size"] == 4 * 16  # the augmentation budget: variants x target train size
    assert set(record["objective"]) == {"attention_mse", "hidden_mse", "dark_ce"}
    assert 0 <= record["metrics"]["test"]["accuracy"] <= 1
    json.dumps(record, default=str)


def test_l2a_config_errors():
    from augrl.l2a import L2AConfig

    with pytest.raises(ConfigError, match="no-source"):
        L2AConfig(use_source=False, use_target=False)


def test_cli_l2a(toy_tasks, tiny_model_dir, tmp_path, capsys, generator, single_thread):
    from augrl.cli import main

    args = ["l2a", "--task", str(toy_tasks["single_file"]), "--shots", "8", "--teacher", str(tiny_model_dir),
            "--param", f"mlm={tiny_model_dir}", "--param", "mlm_steps=20", "--episodes", "1", "--max-steps", "5",
            "--env-batch-size", "8", "--device", "cpu", "--out", str(tmp_path), "--json", "--quiet"]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["method"] == "kd+l2a" and record["config"]["l2a"]["max_steps"] == 5
    assert record["pool"]["augmenter_params"]["mlm"] == str(tiny_model_dir)  # --param reached the generator
    assert main(args[:-2] + ["--no-source", "--no-target"]) == 2
