"""Sensitivity of L2A to alpha and T (the shape of the L2A paper's Figure 3).

A benchmark (:mod:`augrl.bench`, so resumable and in its results format) of ``kd+l2a`` with
alpha swept at T = 1 and T swept at alpha = 1, plus ``kd`` as the reference, then
``OUT/sensitivity.png``: test metric (mean ± std over seeds) against each parameter. With the
default values it runs what ``augrl bench --preset sensitivity`` runs, into the same lines.

    AUGRL_DATA=../shared/data python scripts/l2a_sensitivity.py --task rt --seeds 3 --out runs/sensitivity
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from augrl import bench
from augrl.pipelines import RunConfig
from augrl.plots import plt, save_figure
from augrl.results import read_jsonl


def _values(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def settings(task: str, shots: int, seeds: int, alphas: list[float], temperatures: list[float]) -> bench.BenchSettings:
    """The sweep as bench methods: ``l2a-a<alpha>`` at T = 1 and ``l2a-t<T>`` at alpha = 1."""
    define = {f"l2a-a{a:g}": {"base": "kd+l2a", "description": f"L2A, alpha = {a:g}, T = 1",
                              "augmenter_params": {"alpha": a, "temperature": 1.0}} for a in alphas}
    define.update({f"l2a-t{t:g}": {"base": "kd+l2a", "description": f"L2A, alpha = 1, T = {t:g}",
                                   "augmenter_params": {"alpha": 1.0, "temperature": t}}
                   for t in temperatures if t != 1.0 or 1.0 not in alphas})  # (1, 1) is run once
    return bench.BenchSettings(tasks=[task], shots=[shots], seeds=seeds, methods=["kd", *define], define=define)


def plot(out: Path, task: str) -> Path:
    """Test metric against alpha (at T = 1) and against T (at alpha = 1), KD dashed."""
    records = [r for r in read_jsonl(out / bench.RESULTS_FILE)[0] if r.get("task") == task]
    if not records:
        raise SystemExit(f"no {task} records in {out / bench.RESULTS_FILE}")
    metric = next(iter(records[0]["metrics"]["test"]))
    by_point: dict[tuple, list[float]] = {}
    for r in records:
        if (r.get("augmenter") or {}).get("name") == "l2a":
            p = r["augmenter"]["params"]
            by_point.setdefault((float(p.get("alpha", 1.0)), float(p.get("temperature", 1.0))), []).append(
                r["metrics"]["test"][metric])
    kd = [r["metrics"]["test"][metric] for r in records if r["method"] == "kd"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, name, fixed in ((axes[0], "alpha", lambda a, t: t == 1.0), (axes[1], "T", lambda a, t: a == 1.0)):
        points = sorted((a if name == "alpha" else t, v) for (a, t), v in by_point.items() if fixed(a, t))
        ax.errorbar([x for x, _ in points], [np.mean(v) for _, v in points],
                    yerr=[np.std(v, ddof=1) if len(v) > 1 else 0.0 for _, v in points], marker="o", capsize=3,
                    label="kd+l2a")
        if kd:
            ax.axhline(np.mean(kd), color="gray", linestyle="--", label=f"kd (n={len(kd)})")
        ax.set(xlabel=name, title=f"{task}: L2A against {name} ({'T' if name == 'alpha' else 'alpha'} = 1)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"test {metric} (mean ± std over seeds)")
    return save_figure(fig, out / "sensitivity.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="rt")
    p.add_argument("--shots", type=int, default=40)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--alphas", default="0.5,1,2,4")
    p.add_argument("--temperatures", default="0.5,1,2")
    p.add_argument("--max-steps", type=int, default=None, help="smoke runs: cap on every training stage")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", required=True)
    args = p.parse_args()

    sweep = settings(args.task, args.shots, args.seeds, _values(args.alphas), _values(args.temperatures))
    bench.run_bench(sweep, RunConfig().with_max_steps(args.max_steps), args.out, progress=not args.quiet,
                    max_steps=args.max_steps, on_record=lambda r: print(r["method"], r["seed"], r["metrics"]["test"],
                                                                       flush=True))
    print(f"wrote {plot(Path(args.out), args.task)}")


if __name__ == "__main__":
    main()
