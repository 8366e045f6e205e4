"""The training loop shared by fine-tuning and distillation, with model selection on validation."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from augrl.batching import Encoded, iterate_batches, predict
from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.kd.cache import TeacherCache
from augrl.kd.distiller import Distiller
from augrl.metrics import compute_metrics
from augrl.tasks import TaskSpec


@dataclass
class TrainConfig(ConfigMixin):
    """Optimisation settings for one fine-tuning or distillation run.

    The defaults suit a few-shot target set (tens of examples per class) on a small encoder:
    the validation metric is computed after every epoch and the best epoch's weights are kept.
    """

    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    max_steps: int | None = None
    max_length: int = 128
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")


@dataclass
class FitResult:
    """What happened during :func:`fit`.

    Attributes:
        best_epoch: the epoch whose weights were kept (1-based).
        best_val: validation metrics of those weights.
        history: one dict per epoch: mean loss terms and validation metrics.
        steps: optimiser steps taken.
        seconds: wall time of the loop.
        earlier: summaries of earlier stages of the same model, by name (e.g. a source-adapted
            teacher's ``source`` stage), filled by the caller.
    """

    best_epoch: int
    best_val: dict[str, float]
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    earlier: dict[str, dict] = field(default_factory=dict)


def evaluate(model, data: Encoded, spec: TaskSpec, device: torch.device | str = "cpu",
             batch_size: int = 128) -> dict[str, float]:
    """The task's metrics (accuracy and F1, or Pearson and Spearman) of ``model`` on ``data``."""
    logits = predict(model, data, batch_size=batch_size, device=device)
    return compute_metrics(logits.numpy(), data.labels.numpy(), spec.num_labels)


def total_steps(n_train: int, cfg: TrainConfig) -> int:
    """Optimiser steps of a run: ``epochs`` passes over ``n_train`` examples, capped by ``max_steps``."""
    total = -(-n_train // cfg.batch_size) * cfg.epochs
    return total if cfg.max_steps is None else min(total, cfg.max_steps)


StepFn = Callable[[dict], dict]


def train_loop(model, step: StepFn, total: int, train: Encoded, val: Encoded, spec: TaskSpec, cfg: TrainConfig,
               device: torch.device | str = "cpu", seed: int = 0, progress: bool = True, desc: str = "train",
               on_epoch_end: Callable[[int, dict, object], None] | None = None) -> FitResult:
    """Epochs of ``step`` over shuffled batches of ``train``; keep ``model``'s best epoch on ``val``.

    The loop every trainer shares: :func:`fit` passes a :class:`~augrl.kd.Distiller` step;
    co-training, NewsBERT, RCO and Meta-KD pass their own.

    Args:
        model: the network whose validation metric selects the epoch (updated in place and
            left holding the best weights).
        step: ``step(batch) -> {term: float}`` (must include ``loss``), one optimiser update.
        total: optimiser steps to take (see :func:`total_steps`).
        train, val: encoded datasets.
        spec: the task (metric and label count).
        cfg: batch size and evaluation batch size.
        seed: seeds the batch order (weights are seeded by the caller).
        on_epoch_end: called as ``on_epoch_end(epoch, history_row, model)`` after each
            validation, with the model in its end-of-epoch state.
    """
    generator = torch.Generator().manual_seed(seed)
    metric = spec.metric
    best: FitResult | None = None
    best_state = None
    history = []
    steps = 0
    start = time.perf_counter()
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, file=sys.stderr, leave=False)
    epoch = 0
    while steps < total:
        epoch += 1
        sums: dict[str, float] = {}
        n = 0
        for idx in iterate_batches(len(train), cfg.batch_size, generator):
            terms = step(train.batch(idx, device))
            steps += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss']:.3f}", refresh=False)
            if steps >= total:
                break
        val_metrics = evaluate(model, val, spec, device, cfg.eval_batch_size)
        row = {"epoch": epoch, "step": steps, **{k: v / n for k, v in sums.items()},
               **{f"val_{k}": v for k, v in val_metrics.items()}}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", **{f"val_{metric}": f"{val_metrics[metric]:.3f}"})
        # ">=": on ties (common with small validation sets) prefer the longer-trained weights
        if best is None or val_metrics[metric] >= best.best_val[metric]:
            best = FitResult(epoch, val_metrics)
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if on_epoch_end is not None:
            on_epoch_end(epoch, row, model)
    bar.close()
    model.load_state_dict(best_state)
    best.history, best.steps, best.seconds = history, steps, time.perf_counter() - start
    return best


def fit(model, train: Encoded, val: Encoded, spec: TaskSpec, cfg: TrainConfig,
        objective: dict[str, float] | None = None, loss_params: dict[str, dict] | None = None,
        teacher: TeacherCache | None = None, device: torch.device | str = "cpu", seed: int = 0,
        progress: bool = True, desc: str = "train", layer_map=None, weights: torch.Tensor | None = None,
        distiller: Distiller | None = None, on_epoch_end: Callable[[int, dict, object], None] | None = None,
        batch_extras: dict[str, torch.Tensor] | None = None) -> FitResult:
    """Train ``model`` on ``train``; keep the weights of the epoch best on ``val``.

    Args:
        model: the network to train (updated in place and left holding the best weights).
        train, val: encoded datasets; ``teacher`` must be a cache over ``train``.
        spec: the task (metric and label count).
        cfg: epochs, batch size, learning rate, ``max_steps`` cap...
        objective: KD loss weights; default ``{"hard_ce": 1}`` (plain fine-tuning).
        loss_params: per-loss options, e.g. ``{"dark_ce": {"temperature": 2}}``.
        teacher: cached teacher outputs over ``train`` (needed by teacher-based losses).
        seed: seeds the batch order (weights are seeded by the caller).
        progress: show a progress bar (steps, rate, ETA, loss) on stderr.
        layer_map: teacher -> student layers for layer losses (default uniform).
        weights: optional (N,) per-example loss weights over ``train``.
        distiller: a ready :class:`~augrl.kd.Distiller` for ``model`` (then ``objective``,
            ``loss_params`` and ``layer_map`` are its own); build it with
            ``total_steps=total_steps(len(train), cfg)`` so the schedule matches.
        on_epoch_end: see :func:`train_loop`.
        batch_extras: per-example tensors (N, ...) over ``train`` added to each batch under
            their names (e.g. Meta-KD's ``domain`` ids); the losses see them as
            ``Outputs.extras``.
    """
    if len(train) == 0:
        raise ConfigError("the training set is empty")
    if teacher is not None and len(teacher) != len(train):
        raise ValueError(f"teacher cache has {len(teacher)} rows but the training set has {len(train)}")
    if weights is not None and len(weights) != len(train):
        raise ValueError(f"{len(weights)} example weights for a training set of {len(train)}")
    total = total_steps(len(train), cfg)
    if distiller is None:
        distiller = Distiller.from_train_config(model, objective or {"hard_ce": 1.0}, cfg, total_steps=total,
                                                device=device, loss_params=loss_params, layer_map=layer_map,
                                                teacher=teacher)
    distiller.check_tokens(train)  # position-wise losses need tokens aligned across vocabularies

    def step(batch: dict) -> dict:
        index = batch["index"].cpu()
        for name, values in (batch_extras or {}).items():
            batch[name] = values[index].to(batch["index"].device)
        return distiller.step(batch, teacher, None if weights is None else weights[index])

    return train_loop(model, step, total, train, val, spec, cfg, device, seed, progress, desc, on_epoch_end)

