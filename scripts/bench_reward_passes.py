"""Where an env step of the unlabelled paired reward spends its time, and how long it takes.

The learned rows of issue 17's presets (``kd+rule-search-static``, ``kd+rule-search-crn-unlabelled``)
step :class:`~augrl.envs.AugmentKDEnv` with ``reward="paired"``, ``paired_control="trajectory"``
and ``reward_on="unlabelled"``: each step takes two distillation steps (kept set, control), one
pass over the reward's unlabelled texts for each, and one pass over the validation set for the
``head_influence`` gradient and the info metrics, which an env with ``observations=False`` (what
a static-feature rule search steps) skips with the candidates' observation pass. This script
builds that world once and prints the median seconds of each pass and of a whole step (random
keep actions at the env's budget) with and without observations, so a change to the passes can
be measured. Run it with nothing else on the machine:

    AUGRL_DATA=../shared/data OMP_NUM_THREADS=1 python scripts/bench_reward_passes.py --seed 0

Add ``--json FILE`` to write the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from augrl.envs import AugmentKDConfig, AugmentKDEnv, build_world
from augrl.fileio import write_file_atomically


def median_seconds(fn, repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="rt")
    p.add_argument("--shots", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool-size", type=int, default=320, help="candidates (the clean preset's pool)")
    p.add_argument("--reward-unlabelled", type=int, default=200)
    p.add_argument("--episode-length", type=int, default=10)
    p.add_argument("--repeats", type=int, default=10, help="timed calls per pass")
    p.add_argument("--episodes", type=int, default=3, help="timed episodes (random keep actions)")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    config = AugmentKDConfig(task=args.task, shots=args.shots, seed=args.seed, pool_size=args.pool_size,
                             reward="paired",
                             paired_control="trajectory", reward_on="unlabelled",
                             reward_unlabelled=args.reward_unlabelled, episode_length=args.episode_length)
    start = time.perf_counter()
    world = build_world(config, progress=True)
    print(f"world built in {time.perf_counter() - start:.1f}s (teacher cached: {world.teacher_info.get('cached')})")
    env = AugmentKDEnv(world=world, config=config)
    env.reset(seed=0)
    lengths = [len(ids) for ids in world.reward_extra.input_ids]
    out = {"config": config.to_dict(), "torch_threads": torch.get_num_threads(),
           "load_before": os.getloadavg()[0], "reward_texts": len(lengths),
           "reward_text_tokens": {"mean": float(np.mean(lengths)), "max": int(max(lengths))}}

    out["unlabelled_pass_s"] = median_seconds(env._extra_divergence, args.repeats)
    out["validation_pass_s"] = median_seconds(lambda: env._validate(), args.repeats)
    out["control_pass_s"] = median_seconds(lambda: env._validate(head=False), args.repeats)

    def step_seconds(env: AugmentKDEnv) -> list[float]:
        rng = np.random.default_rng(0)
        times = []
        for episode in range(args.episodes):
            env.reset(seed=episode)
            done = False
            while not done:
                action = (rng.random(env.action_space.shape) < 0.5).astype(np.int64)
                start = time.perf_counter()
                _, _, done, _, _ = env.step(action)
                times.append(time.perf_counter() - start)
        return times

    step_times = step_seconds(env)
    out["step_s"] = statistics.median(step_times)
    out["steps_timed"] = len(step_times)
    # what a learner that chooses by pool index steps (a static-feature rule search)
    out["step_without_observations_s"] = statistics.median(
        step_seconds(AugmentKDEnv(world=world.with_settings(observations=False))))
    out["load_after"] = os.getloadavg()[0]
    print(f"{len(lengths)} reward texts ({out['reward_text_tokens']['mean']:.1f} tokens on average, "
          f"max {out['reward_text_tokens']['max']}), torch threads {out['torch_threads']}, "
          f"1-min load {out['load_before']:.2f} before, {out['load_after']:.2f} after")
    print(f"median seconds: unlabelled pass {out['unlabelled_pass_s']:.3f}, validation pass (with head gradient) "
          f"{out['validation_pass_s']:.3f}, control pass {out['control_pass_s']:.3f}, env step "
          f"{out['step_s']:.3f} ({out['steps_timed']} steps), without observations {out['step_without_observations_s']:.3f}")
    if args.json:
        write_file_atomically(args.json, lambda path: path.write_text(json.dumps(out, indent=2)))


if __name__ == "__main__":
    main()
