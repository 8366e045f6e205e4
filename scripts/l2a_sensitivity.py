"""Sensitivity of L2A to alpha and T (the shape of the L2A paper's Figure 3).

Runs ``augrl l2a`` once per value of alpha (T fixed at its default) and once per value of T
(alpha fixed), for each seed, appends every record to ``OUT/results.jsonl`` (runs already there
are skipped) and draws ``OUT/sensitivity.png``: test metric (mean ± std over seeds) against
each parameter.

    AUGRL_DATA=../shared/data python scripts/l2a_sensitivity.py --task rt --seeds 3 --out runs/l2a-sensitivity
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from augrl.envs import AugmentKDConfig
from augrl.l2a import L2AConfig, run_l2a
from augrl.results import append_jsonl, read_jsonl


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="rt")
    p.add_argument("--shots", type=int, default=40)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--alphas", default="0.5,1,2,4")
    p.add_argument("--temperatures", default="0.5,1,1.5,2")
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--max-steps", type=int, default=None, help="smoke runs: cap on every training stage")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    out = Path(args.out)
    done = {(r["sweep"], r["value"], r["seed"]) for r in read_jsonl(out / "results.jsonl")[0] if "sweep" in r}
    sweeps = {"alpha": [float(v) for v in args.alphas.split(",")],
              "temperature": [float(v) for v in args.temperatures.split(",")]}
    cfg = L2AConfig(episodes=args.episodes, max_steps=args.max_steps)
    for name, values in sweeps.items():
        for value in values:
            for seed in range(args.seeds):
                if (name, value, seed) in done:
                    continue
                env = AugmentKDConfig(task=args.task, shots=args.shots, seed=seed, augmenter="l2a",
                                      augmenter_params={name: value}, teacher_max_steps=args.max_steps)
                record = run_l2a(env, cfg, progress=False)
                record.update(sweep=name, value=value)
                append_jsonl(out / "results.jsonl", record)
                print(f"{name}={value} seed={seed}: test {record['metrics']['test']}", flush=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_jsonl(out / "results.jsonl")[0] if "sweep" in r]
    metric = next(iter(records[0]["metrics"]["test"]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, (name, values) in zip(axes, sweeps.items()):
        means, stds = [], []
        for v in values:
            xs = [r["metrics"]["test"][metric] for r in records if r["sweep"] == name and r["value"] == v]
            means.append(np.mean(xs))
            stds.append(np.std(xs, ddof=1) if len(xs) > 1 else 0.0)
        ax.errorbar(values, means, yerr=stds, marker="o", capsize=3)
        ax.set(xlabel=name, title=f"L2A on {args.task}: {name}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test {metric} (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(out / "sensitivity.png", dpi=110)
    print(f"wrote {out / 'sensitivity.png'}")


if __name__ == "__main__":
    main()
