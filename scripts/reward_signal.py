"""Can an agent learn from the environment's reward? The signal gate of issue #17.

On a planted pool (the seed's EDA candidates plus planted bad ones: flipped labels, unrelated
sentences, shuffled words; :func:`augrl.planted.plant`) an *oracle* policy keeps exactly the
clean candidates of each batch and an *anti-oracle* keeps exactly the planted ones. For each
reward (``paired``, the default, with each ``--paired-controls`` control, and ``metric``, the
old accuracy reward) both act for
``--steps`` environment steps (episodes of ``--episode-length`` steps from the warm-start
snapshots) and the script reports each reward's mean, standard deviation and one-sample t
statistic. ``--policies random`` adds a policy that keeps a random subset of each batch (the
clean share's size): where any learner starts; every line also regresses the rewards on the
kept-minus-control clean count (per step; the running gap on the running count, whose rows
within an episode are correlated, so its t overstates; and each whole episode's return on its
summed count, one independent row per episode), which says whether single choices carry a
signal a learner could credit. The gate: the paired reward of the oracle has mean > 0 with
t >= 3 within 100 steps, and the anti-oracle's is < 0.

    AUGRL_DATA=../shared/data python scripts/reward_signal.py --task rt --seed 0 --out results/reward-signal

Writes one JSON line per (reward, policy) to ``OUT/results.jsonl`` (with the config, the
world's timings and versions) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def act(env, keep_fn, steps: int, seed: int, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Rewards of ``steps`` steps of a policy ``keep_fn(pool rows, observation) -> bool mask``, the episode
    each came from, seconds, and each step's clean contrast: how many more clean candidates
    (``clean``: (N,) bool over the pool) the kept set held than the paired reward's control
    subset (NaN without a paired control)."""
    rewards, episodes, contrasts, episode, start = [], [], [], 0, time.perf_counter()
    while len(rewards) < steps:
        obs, _ = env.reset(seed=seed * 10_000 + episode)
        done = False
        while not done and len(rewards) < steps:
            rows = env.batch_rows.copy()
            keep = keep_fn(rows, obs).astype(np.int8)
            obs, r, done, _, info = env.step(keep)
            rewards.append(r)
            episodes.append(episode)
            control = info.get("control_positions")
            contrasts.append(np.nan if control is None else
                             float(clean[rows[keep.astype(bool)]].sum() - clean[rows[np.asarray(control, dtype=int)]].sum()))
        episode += 1
    return np.asarray(rewards), np.asarray(episodes), time.perf_counter() - start, np.asarray(contrasts)


def through_origin(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float]:
    """Least-squares slope of ``y ~ b x`` (no intercept: a zero contrast pays exactly 0) and its t."""
    if len(x) < 2 or np.isnan(x).any() or not (x @ x) > 0:
        return None, 0.0
    b = float(x @ y / (x @ x))
    residual = y - b * x
    se = np.sqrt(residual @ residual / (len(y) - 1) / (x @ x))
    return b, float(b / se) if se > 0 else 0.0


def running(values: np.ndarray, episode: np.ndarray) -> np.ndarray:
    """Within-episode running sums (the trajectory control's gap is the running sum of its rewards)."""
    out = np.zeros(len(values))
    for e in np.unique(episode):
        out[episode == e] = np.cumsum(values[episode == e])
    return out


def t_statistic(values: np.ndarray) -> float:
    """One-sample t statistic of the mean (0 when there is no spread)."""
    if len(values) < 2 or values.std() == 0:
        return 0.0
    return float(values.mean() / (values.std(ddof=1) / np.sqrt(len(values))))


def main(argv=None) -> int:
    from augrl.sections import PAIRED_CONTROLS, PAIRED_TARGETS, REWARD_SETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="rt")
    parser.add_argument("--shots", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--planted", type=float, default=0.3, help="share of planted candidates in the pool")
    parser.add_argument("--kinds", nargs="+", default=["flip", "unrelated", "shuffle"], help="planted kinds")
    parser.add_argument("--hard-weight", type=float, default=1.0,
                        help="weight of the hard-label term (the objective is dark_ce 1 + hard_ce W)")
    parser.add_argument("--reward-unlabelled", type=int, default=0,
                        help="unlabelled target texts added to the paired reward's divergence set")
    parser.add_argument("--reward-on", default="all", choices=list(REWARD_SETS),
                        help="the texts the paired reward's divergence is measured on (reward_on): all, or the "
                             "--reward-unlabelled texts alone")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--episode-length", type=int, default=10)
    parser.add_argument("--rewards", nargs="+", default=["paired", "metric"])
    parser.add_argument("--paired-controls", nargs="+", default=["random"], choices=list(PAIRED_CONTROLS),
                        help="the paired reward's control subsets to measure (paired_control)")
    parser.add_argument("--paired-targets", nargs="+", default=["teacher"], choices=list(PAIRED_TARGETS),
                        help="what the paired reward's validation loss compares with (paired_target): the "
                             "teacher's outputs or the gold labels")
    parser.add_argument("--policies", nargs="+", default=["oracle", "anti-oracle"],
                        help="oracle, anti-oracle, random (a random subset of each batch of the clean share's size: "
                             "the start of any learner) or rule:FEATURE:+ / rule:FEATURE:- (the clean share's size "
                             "of each batch with the highest / lowest FEATURE, as rule search plays it) or "
                             "static:FEATURE:+ / static:FEATURE:- (the same, but by FEATURE measured once per "
                             "candidate and averaged over the warm-start snapshots, as a selector's final "
                             "selection scores it, instead of at the episode's current student); every "
                             "policy plays the same episodes (reset seeds), and each line also regresses the "
                             "rewards on the kept-minus-control clean count")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from augrl import baselines
    from augrl.envs import AugmentKDConfig, AugmentKDEnv, build_world
    from augrl.pipelines import prepare
    from augrl.planted import plant
    from augrl.pool import build_pool
    from augrl.results import provenance
    from augrl.selection.rule_search import RuleSearchSelector
    from augrl.teachers import obtain_teacher

    cfg = AugmentKDConfig(task=args.task, shots=args.shots, seed=args.seed, episode_length=args.episode_length,
                          objective={"dark_ce": 1.0, "hard_ce": args.hard_weight},
                          reward_unlabelled=args.reward_unlabelled, reward_on=args.reward_on)
    data = prepare(cfg.run_config())
    teacher, info = obtain_teacher(cfg.run_config(), data, None, progress=True)
    augmenter = baselines.get("eda").fit(data.task)
    clean = build_pool(data.task, augmenter, 4 * len(data.train), source_fraction=0.0, seed=args.seed)
    pool = plant(clean, data.task, args.planted, kinds=tuple(args.kinds), seed=args.seed)
    cfg = cfg.replace(pool_size=len(pool), source_fraction=0.0)
    world = build_world(cfg, progress=True, data=data, teacher=teacher, pool=pool)
    planted = np.asarray(pool.planted, dtype=bool)
    keep_rng = np.random.default_rng([args.seed, 17])

    def size(rows: np.ndarray) -> int:  # the clean share of a batch: what random and rule policies keep
        return max(1, round((1 - planted.mean()) * len(rows)))

    def random_keep(rows: np.ndarray) -> np.ndarray:
        keep = np.zeros(len(rows), dtype=bool)
        keep[keep_rng.permutation(len(rows))[:size(rows)]] = True
        return keep

    def rule_keep(column: int, sign: float):
        return lambda rows, obs: RuleSearchSelector.keep_mask(obs, column, sign, size(rows)).astype(bool)

    static_view: list[np.ndarray] = []  # (N, F) pool observations averaged over the snapshots, built once

    def static_keep(column: int, sign: float):
        def keep(rows, obs):
            return RuleSearchSelector.keep_mask(static_view[0][rows], column, sign, size(rows)).astype(bool)
        return keep

    every = {"oracle": lambda rows, obs: ~planted[rows], "anti-oracle": lambda rows, obs: planted[rows],
             "random": lambda rows, obs: random_keep(rows)}
    names = list(world.feature_names)
    policies = {}
    for name in args.policies:
        if name in every:
            policies[name] = every[name]
            continue
        parts = name.split(":")
        if len(parts) != 3 or parts[0] not in ("rule", "static") or parts[1] not in names or parts[2] not in ("+", "-"):
            parser.error(f"--policies {name!r}: use oracle, anti-oracle, random, rule:FEATURE:+|- or "
                         f"static:FEATURE:+|- with FEATURE one of this world's features {names}")
        policies[name] = (rule_keep if parts[0] == "rule" else static_keep)(names.index(parts[1]),
                                                                            1.0 if parts[2] == "+" else -1.0)
    lines = []
    settings = [(reward, control, target) for reward in args.rewards
                for control in (args.paired_controls if reward == "paired" else [None])
                for target in (args.paired_targets if reward == "paired" else [None])]
    for reward, control, target in settings:
        changes = {"reward": reward, **({"paired_control": control, "paired_target": target} if control else {})}
        env = AugmentKDEnv.from_world(world, **changes)
        if not static_view and any(name.startswith("static:") for name in policies):
            static_view.append(np.mean(env.pool_views(), axis=0))
        for name, fn in policies.items():
            r, episode, seconds, contrast = act(env, fn, args.steps, args.seed, ~planted)
            t = t_statistic(r)
            slope, slope_t = through_origin(contrast, r)
            running_slope, running_t = through_origin(running(contrast, episode), running(r, episode))
            # whole episodes only: a trajectory control's rewards telescope within an episode
            complete = [e for e in np.unique(episode) if (episode == e).sum() == env.steps_per_episode]
            returns = np.asarray([r[episode == e].sum() for e in complete])
            episode_contrast = np.asarray([contrast[episode == e].sum() for e in complete])
            episode_slope, episode_t = through_origin(episode_contrast, returns)
            line = {"command": "reward-signal", "task": args.task, "shots": args.shots, "seed": args.seed,
                    **changes, "policy": name, "steps": len(r), "mean": float(r.mean()),
                    "std": float(r.std(ddof=1)), "t": t, "episode_length": env.steps_per_episode,
                    "episodes": len(returns), "return_mean": float(returns.mean()) if len(returns) else None,
                    "return_t": t_statistic(returns), "episode_returns": [float(x) for x in returns],
                    "seconds": round(seconds, 1),
                    "clean_contrast": {"mean": float(np.nanmean(contrast)) if not np.isnan(contrast).all() else None,
                                       "slope": slope, "t": slope_t, "running_slope": running_slope,
                                       "running_t": running_t, "episode_slope": episode_slope,
                                       "episode_t": episode_t},
                    "pool": {"size": len(pool), "planted": int(planted.sum()), "kinds": sorted(set(pool.planted_kind) - {""})},
                    "config": cfg.to_dict(), "world_timings": world.timings, "reward_set": world.reward_set, "teacher_val": info.get("val"),
                    **provenance()}
            lines.append(line)
            label = reward if control is None else f"{reward} ({control}, {target})"
            print(f"{label:>18} {name:>12}: mean {line['mean']:+.5f}  std {line['std']:.5f}  t {t:+.2f}  "
                  f"episode return t {line['return_t']:+.2f} over {len(returns)}  reward ~ clean contrast t "
                  f"{slope_t:+.2f} (episode return ~ episode contrast t {episode_t:+.2f})  ({len(r)} steps, {seconds:.0f} s)",
                  flush=True)
            if args.out:
                out = Path(args.out)
                out.mkdir(parents=True, exist_ok=True)
                with open(out / "results.jsonl", "a") as f:
                    f.write(json.dumps(line, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
