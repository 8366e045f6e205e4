"""Pictures of runs: learning curves from the per-epoch history of each training stage."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: str | Path, title: str = "") -> Path:
    """Title, tighten, write the PNG (creating its folder) and free the figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    return _save(fig, path, title)


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
    return _save(fig, path, title)
