"""Speed and reward noise of augrl/AugmentKD-v0 on a real task.

Prints the world's build time by stage, the time of one episode and env steps per second for
each decision mode, and the reward's spread for a fixed action sequence (keep everything)
across episode seeds, for ``reward="metric"`` and ``reward="loss"``.

    AUGRL_DATA=../shared/data python scripts/bench_env.py --task rt --shots 40 --pool-size 1600 --batch-size 32

Add ``--json FILE`` to write the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from augrl.envs import AugmentKDConfig, AugmentKDEnv, build_world


def run_episode(env: AugmentKDEnv, seed: int, policy: str = "all") -> dict:
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    obs, info = env.reset(seed=seed)
    rewards, steps, done = [], 0, False
    while not done:
        if policy == "all":
            action = np.ones(env.action_space.shape, dtype=np.int64) if env.config.decision == "batch" else 1
        else:
            action = (rng.integers(0, 2, size=env.action_space.shape) if env.config.decision == "batch"
                      else int(rng.integers(2)))
        obs, r, done, _, info = env.step(action)
        rewards.append(r)
        steps += 1
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "steps": steps, "steps_per_s": steps / seconds, "return": float(sum(rewards)),
            "rewards": rewards, "final_val_metric": info["val_metric"], "kept_total": info["kept_total"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="rt")
    p.add_argument("--shots", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augmenter", default="eda")
    p.add_argument("--pool-size", type=int, default=1600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--noise-seeds", type=int, default=5, help="episode seeds for the reward-noise figures")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    config = AugmentKDConfig(task=args.task, shots=args.shots, seed=args.seed, augmenter=args.augmenter,
                             pool_size=args.pool_size, batch_size=args.batch_size, val_size=args.val_size,
                             precision=args.precision)
    start = time.perf_counter()
    world = build_world(config, progress=True)
    print(f"world built in {time.perf_counter() - start:.1f}s: {world.timings} (teacher cached: "
          f"{world.teacher_info.get('cached')})")
    out = {"config": config.to_dict(), "world_timings": world.timings, "episodes": {}}

    for decision in ("batch", "sample"):
        env = AugmentKDEnv.from_world(world, decision=decision)
        ep = run_episode(env, seed=0)
        print(f"{decision:6s} one episode ({env.world.num_candidates} candidates, B={args.batch_size}): "
              f"{ep['seconds']:.2f}s, {ep['steps']} env steps, {ep['steps_per_s']:.1f} env steps/s, "
              f"return {ep['return']:+.4f}")
        out["episodes"][decision] = {k: v for k, v in ep.items() if k != "rewards"}

    for reward in ("metric", "loss"):
        env = AugmentKDEnv.from_world(world, reward=reward)
        eps = [run_episode(env, seed=s) for s in range(args.noise_seeds)]
        per_step = np.array([e["rewards"] for e in eps])  # (seeds, steps)
        returns = np.array([e["return"] for e in eps])
        finals = np.array([e["final_val_metric"] for e in eps])
        row = {"per_step_std_across_seeds": float(per_step.std(0, ddof=1).mean()),
               "per_step_mean_abs": float(np.abs(per_step).mean()),
               "return_mean": float(returns.mean()), "return_std": float(returns.std(ddof=1)),
               "final_val_metric_mean": float(finals.mean()), "final_val_metric_std": float(finals.std(ddof=1)),
               "nonzero_fraction": float((per_step != 0).mean())}
        out[f"reward_{reward}"] = row
        print(f"reward={reward}: keep-all over {args.noise_seeds} episode seeds: per-step reward std across seeds "
              f"{row['per_step_std_across_seeds']:.4f} (mean |r| {row['per_step_mean_abs']:.4f}, non-zero "
              f"{row['nonzero_fraction']:.2f}); return {row['return_mean']:+.4f} ± {row['return_std']:.4f}; final val "
              f"metric {row['final_val_metric_mean']:.4f} ± {row['final_val_metric_std']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
