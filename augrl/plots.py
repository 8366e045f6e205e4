"""Pictures of runs: learning curves of training stages, and the benchmark's bar charts and
data-size curves (drawn from :mod:`augrl.report` rows)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from augrl.fileio import write_file_atomically  # noqa: E402


def save_figure(fig, path: str | Path, title: str = "") -> Path:
    """Title, tighten, write the PNG whole (:func:`augrl.fileio.write_file_atomically`: never a
    cut-off picture) and free the figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return write_file_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)


def plot_learning_curves(stages: dict[str, dict], metric: str, path: str | Path, title: str = "") -> Path:
    """Training loss and validation ``metric`` per epoch, one line per stage, saved as PNG.

    Args:
        stages: stage name -> ``{"history": [{"epoch", "loss", "val_<metric>"}, ...], "best_epoch"}``
            (the ``stages`` field of a result record).
        metric: the validation metric to draw (``accuracy``, ``pearson``...).
        path: where to write the PNG.
    """
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, stage in stages.items():
        hist = stage["history"]
        epochs = [h["epoch"] for h in hist]
        ax_loss.plot(epochs, [h["loss"] for h in hist], marker=".", label=name)
        line, = ax_val.plot(epochs, [h[f"val_{metric}"] for h in hist], marker=".", label=name)
        best = stage.get("best_epoch")
        if best is not None:
            ax_val.axvline(best, color=line.get_color(), linestyle=":", linewidth=1)
    ax_loss.set(xlabel="epoch", ylabel="training loss (weighted objective)", yscale="log")
    ax_val.set(xlabel="epoch", ylabel=f"validation {metric}", title="dotted: epoch kept")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path, title)


def plot_policy_curves(episodes: list[dict], metric: str, path: str | Path, title: str = "") -> Path:
    """Episode return and the student's validation ``metric`` at each episode's end, saved as PNG.

    Args:
        episodes: ``[{"episode", "return", "val_metric", "kept_fraction"}, ...]`` in order.
        metric: name of the validation metric (axis label).
        path: where to write the PNG.
    """
    x = [e["episode"] for e in episodes]
    fig, (ax_ret, ax_val) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_ret.plot(x, [e["return"] for e in episodes], marker=".")
    ax_ret.set(xlabel="episode", ylabel="episode return")
    ax_val.plot(x, [e["val_metric"] for e in episodes], marker=".", label=f"validation {metric}")
    ax_kept = ax_val.twinx()
    ax_kept.plot(x, [e["kept_fraction"] for e in episodes], color="tab:gray", linestyle="--", label="kept fraction")
    ax_kept.set(ylabel="kept fraction", ylim=(0, 1.05))
    ax_val.set(xlabel="episode", ylabel=f"student's validation {metric} at episode end")
    for ax in (ax_ret, ax_val):
        ax.grid(alpha=0.3)
    ax_val.legend(loc="lower left")
    ax_kept.legend(loc="lower right")
    return save_figure(fig, path, title)


def plot_detection_curves(curves: dict[str, list[list[dict]]], path: str | Path, title: str = "",
                          gate: tuple[int, float] | None = (500, 0.90)) -> Path:
    """Detection AUC of learned selectors against environment steps, saved as PNG: one thin line
    per seed and the mean over seeds (at the steps every seed reached) per method.

    Args:
        curves: method label -> one curve per seed, ``[{"env_steps", "detection_auc"}, ...]``
            (``policy_training.detection_curve`` of the result records).
        gate: ``(steps, auc)`` drawn as a marker of issue 17's detection gate; None: none.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, per_seed in curves.items():
        per_seed = [c for c in per_seed if c]
        if not per_seed:
            continue
        color = None
        for curve in per_seed:
            line, = ax.plot([p["env_steps"] for p in curve], [p["detection_auc"] for p in curve], linewidth=0.6,
                            alpha=0.35, color=color)
            color = line.get_color()
        n = min(len(c) for c in per_seed)
        steps = [per_seed[0][i]["env_steps"] for i in range(n)]
        mean = [sum(c[i]["detection_auc"] for c in per_seed) / len(per_seed) for i in range(n)]
        ax.plot(steps, mean, color=color, linewidth=2, marker=".", label=f"{label} ({len(per_seed)} seeds)")
    ax.axhline(0.5, color="tab:gray", linestyle=":", linewidth=1)
    if gate is not None:
        ax.axvline(gate[0], color="tab:red", linestyle="--", linewidth=1)
        ax.axhline(gate[1], color="tab:red", linestyle="--", linewidth=1, label=f"gate: AUC {gate[1]} by {gate[0]} steps")
    ax.set(xlabel="environment steps", ylabel="detection AUC of the planted candidates", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")  # loc="best" searches every point of every curve
    return save_figure(fig, path, title)


def plot_bench_bars(rows, metrics: list[str], path: str | Path, title: str = "", mark: str = "†",
                    alpha: float = 0.05) -> Path:
    """A benchmark table as grouped bars: one group per method, one bar per metric, ± std.

    Args:
        rows: :class:`augrl.report.Row` of one task and shots value (``label``, ``mean(m)``,
            ``std(m)``, ``tests[m]["p"]``, ``seeds``).
        metrics: the metrics to draw, e.g. ``["accuracy", "f1"]``.
        path: where to write the PNG.
        mark: drawn above a bar whose paired test against the reference has p < ``alpha``.
    """
    import numpy as np

    width = 0.8 / max(len(metrics), 1)
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 2), 3.8))
    for j, metric in enumerate(metrics):
        present = [r for r in rows if metric in r.values]
        pos = [x[i] + (j - (len(metrics) - 1) / 2) * width for i, r in enumerate(rows) if metric in r.values]
        means = [r.mean(metric) for r in present]
        errs = [r.std(metric) or 0.0 for r in present]
        ax.bar(pos, means, width, yerr=errs, capsize=3, label=metric)
        for p, m, e, r in zip(pos, means, errs, present):
            test = r.tests.get(metric) or {}
            if test.get("p") is not None and test["p"] < alpha:
                ax.text(p, m + e, mark, ha="center", va="bottom")
    ax.set_xticks(x, [f"{r.label}\n(n={len(r.seeds)})" for r in rows], rotation=30, ha="right", fontsize=8)
    lows = [r.mean(m) - (r.std(m) or 0.0) for r in rows for m in metrics if m in r.values]
    if lows:
        ax.set_ylim(max(0.0, min(lows) - 0.1), None)
    ax.set(ylabel="test metric (mean ± std over seeds)", title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_metric_vs_shots(rows, metric: str, path: str | Path, title: str = "") -> Path:
    """Test ``metric`` against the training shots, one line per method (± std error bars).

    Args:
        rows: :class:`augrl.report.Row` of one task at several shots values.
        metric: e.g. ``accuracy`` or ``pearson``.
        path: where to write the PNG.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for label in dict.fromkeys(r.label for r in rows):
        points = sorted((r.shots, r.mean(metric), r.std(metric) or 0.0) for r in rows
                        if r.label == label and metric in r.values)
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                    capsize=3, label=label)
    ax.set_xscale("log", base=2)
    shots = sorted({r.shots for r in rows})
    ax.set_xticks(shots, [str(s) for s in shots])
    ax.set(xlabel="target training examples per class", ylabel=f"test {metric} (mean ± std)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_search(trials: list[dict], metric: str, path: str | Path, title: str = "", best: str | None = None) -> Path:
    """A hyperparameter search: the validation ``metric`` of each trial against each sampled
    parameter, one panel per parameter (categorical values at evenly spaced positions).

    Args:
        trials: ``[{"id": trial id, "value": metric, "sampled": {param: value}}, ...]``.
        metric: axis label, e.g. ``val accuracy``.
        path: where to write the PNG.
        best: the id of the best trial, drawn as a star.
    """
    params = sorted({k for t in trials for k in t["sampled"]})
    cols = min(3, max(1, len(params)))
    rows = (len(params) + cols - 1) // cols or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, param in zip(axes.flat, params):
        points = [(t["sampled"].get(param), t["value"], t["id"] == best) for t in trials if param in t["sampled"]]
        numeric = all(isinstance(p[0], (int, float)) and not isinstance(p[0], bool) for p in points)
        if numeric:
            xs = [p[0] for p in points]
        else:
            cats = sorted({str(p[0]) for p in points})
            xs = [cats.index(str(p[0])) for p in points]
            ax.set_xticks(range(len(cats)), cats, fontsize=8)
        ax.scatter([x for x, p in zip(xs, points) if not p[2]], [p[1] for p in points if not p[2]], alpha=0.7)
        ax.scatter([x for x, p in zip(xs, points) if p[2]], [p[1] for p in points if p[2]], marker="*", s=160,
                   color="tab:red", label="best")
        if numeric and len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set(xlabel=param, ylabel=metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.set_visible(False)
    return save_figure(fig, path, title)
