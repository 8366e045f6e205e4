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


def run_episode(env: AugmentKDEnv, seed: int) -> dict:
    """One keep-all episode, timed from reset to the last step."""
    start = time.perf_counter()
    env.reset(seed=seed)
    rewards, steps, done, info = [], 0, False, {}
    keep = np.ones(env.action_space.shape, dtype=np.int64) if env.config.decision == "batch" else 1
    while not done:
        _, r, done, _, info = env.step(keep)
        rewards.append(r)
        steps += 1
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "steps": steps, "steps_per_s": steps / seconds, "return": float(sum(rewards)),
            "final_val_metric": info["val_metric"], "kept_total": info["kept_total"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="rt")
    p.add_argument("--shots", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augmenter", default="eda")
    p.add_argument("--pool-size", type=int, default=1600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--noise-seeds", type=int, default=5, help="episode seeds for the reward-noise figures")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    config = AugmentKDConfig(task=args.task, shots=args.shots, seed=args.seed, augmenter=args.augmenter,
                             pool_size=args.pool_size, batch_size=args.batch_size, val_size=args.val_size,
                             precision=args.precision)
    start = time.perf_counter()
    world = build_world(config, progress=True)
    print(f"student precision: {AugmentKDEnv(world=world).precision}")
    print(f"world built in {time.perf_counter() - start:.1f}s: {world.timings} (teacher cached: "
          f"{world.teacher_info.get('cached')})")
    out = {"config": config.to_dict(), "world_timings": world.timings, "episodes": {}}

    for decision in ("batch", "sample"):
        env = AugmentKDEnv.from_world(world, decision=decision)
        ep = run_episode(env, seed=0)
        print(f"{decision:6s} one episode ({env.world.num_candidates} candidates, B={args.batch_size}): "
              f"{ep['seconds']:.2f}s, {ep['steps']} env steps, {ep['steps_per_s']:.1f} env steps/s, "
              f"return {ep['return']:+.4f}")
        out["episodes"][decision] = ep

    # one keep-all trajectory per episode seed; both rewards follow from the same validation passes
    env = AugmentKDEnv.from_world(world)
    metric_r, loss_r, finals = [], [], []
    for s in range(args.noise_seeds):
        _, info = env.reset(seed=s)
        metrics, losses = [info["val_metric"]], [info["val_loss"]]
        done = False
        while not done:
            _, _, done, _, info = env.step(np.ones(env.action_space.shape, dtype=np.int64))
            metrics.append(info["val_metric"])
            losses.append(info["val_loss"])
        metric_r.append(np.diff(metrics))
        loss_r.append(-np.diff(losses))
        finals.append(metrics[-1])
    metric_r, loss_r = np.array(metric_r), np.array(loss_r)  # (seeds, steps)
    for name, r in (("metric", metric_r), ("loss", loss_r)):
        row = {"per_step_std_across_seeds": float(r.std(0, ddof=1).mean()), "per_step_mean_abs": float(np.abs(r).mean()),
               "nonzero_fraction": float((r != 0).mean()), "return_mean": float(r.sum(1).mean()),
               "return_std": float(r.sum(1).std(ddof=1))}
        out[f"reward_{name}"] = row
        print(f"reward={name}: keep-all, {args.noise_seeds} episode seeds: per-step reward std across seeds "
              f"{row['per_step_std_across_seeds']:.4f} (mean |r| {row['per_step_mean_abs']:.4f}, non-zero "
              f"{row['nonzero_fraction']:.2f}); episode return {row['return_mean']:+.4f} ± {row['return_std']:.4f}")
    corr = float(np.corrcoef(metric_r.ravel(), loss_r.ravel())[0, 1])
    half = metric_r.shape[1] // 2
    late = float(np.corrcoef(metric_r[:, half:].ravel(), loss_r[:, half:].ravel())[0, 1])
    out["reward_correlation"] = {"all_steps": corr, "second_half": late}
    out["final_val_metric"] = {"mean": float(np.mean(finals)), "std": float(np.std(finals, ddof=1))}
    print(f"per-step correlation of the two rewards: {corr:+.3f} (second half of the episode: {late:+.3f}); final "
          f"validation {world.data.task.spec.metric} {np.mean(finals):.4f} ± {np.std(finals, ddof=1):.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
