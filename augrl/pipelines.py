"""End-to-end runs: teacher fine-tuning, student fine-tuning and distillation by any registered
method (:mod:`augrl.kd.methods`).

Each run loads the task's seeded split, trains with model selection on validation, evaluates
once on test, and returns a result record (config, split, metrics, sizes, wall time,
provenance) that the CLI prints and appends to ``results.jsonl``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from augrl import models
from augrl.batching import Encoded, encode
from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.kd.distiller import Distiller
from augrl.kd.losses import validate_objective
from augrl.results import provenance
from augrl.runtime import seed_everything, select_device
from augrl.tasks import LEAKAGE_FILTERS, Task, load_task
from augrl.training import FitResult, TrainConfig, evaluate, fit


@dataclass
class RunConfig(ConfigMixin):
    """Everything that decides a fine-tuning or distillation run (saved with its result).

    Attributes:
        task: registered task name or task YAML path.
        shots, seed: the few-shot split (see :mod:`augrl.tasks`); ``seed`` also seeds training.
        data_dir: data root (default ``$AUGRL_DATA``, else the hub).
        teacher: encoder of the teacher (``minilm``, a hub name or a folder).
        student: ``transformer`` (layers of ``student_init``), ``bilstm`` or ``textcnn``.
        student_init: encoder the student is made from (default: the shipped MiniLM).
        student_layers: number of encoder layers the transformer student keeps (the first ones).
        objective: KD loss weights (registry names) for ``distill``; None: the method's
            default (``kd``: dark_ce + hard_ce, or logit_mse + hard_ce for BiLSTM/TextCNN
            students, Tang et al.), see :meth:`kd_objective`.
        loss_params: per-loss options, e.g. ``{"minilm_relation": {"relation_heads": 12}}``.
        temperature: softmax temperature of ``dark_ce`` (merged into ``loss_params``).
        layer_map: teacher:student layer pairs for layer losses, e.g. ``"3:1,6:2"``; None:
            uniform (see :class:`augrl.kd.LayerMap`).
        method: distillation method (see ``augrl.kd.methods``): ``kd``, ``multi_teacher``,
            ``cotrain_isolated``, ``cotrain_shared_grad``, ``cotrain_loss_sum``, ``newsbert``,
            ``rco``, ``metakd``.
        method_options: the method's own options (e.g. ``{"beta": 0.5}`` for newsbert).
        cache_dtype: storage type of cached teacher layer outputs (``float16`` or ``float32``).
        teacher_train, student_train: optimisation settings of each stage.
        device: ``auto``, ``cpu``, ``cuda``...
        leakage: ``remove`` (default) drops the source rows that leak the validation or test
            texts (see :mod:`augrl.leakage`); ``keep`` keeps them, to reproduce work that did
            not filter. The split record in the result says which.
    """

    task: str = "rt"
    shots: int = 40
    seed: int = 0
    data_dir: str | None = None
    teacher: str = models.DEFAULT_MODEL
    student: str = "transformer"
    student_init: str = models.DEFAULT_MODEL
    student_layers: int = 2
    objective: dict | None = None
    loss_params: dict = field(default_factory=dict)
    temperature: float = 2.0
    layer_map: str | None = None
    method: str = "kd"
    method_options: dict = field(default_factory=dict)
    cache_dtype: str = "float16"
    teacher_train: TrainConfig = field(default_factory=TrainConfig)
    student_train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"
    leakage: str = "remove"

    def __post_init__(self) -> None:
        if self.leakage not in LEAKAGE_FILTERS:
            raise ConfigError(f"RunConfig.leakage must be one of {LEAKAGE_FILTERS}, got {self.leakage!r}")

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "RunConfig":
        data = dict(data)
        for key in ("teacher_train", "student_train"):
            if isinstance(data.get(key), dict):
                data[key] = TrainConfig.from_dict(data[key], source=f"{source}: {key}")
        return super().from_dict(data, source)

    def kd_objective(self, default: dict | None = None) -> dict:
        """The objective to train with: ``objective`` if set, else ``default`` (a method's own),
        else plain KD: dark_ce + hard_ce, or logit_mse + hard_ce for BiLSTM/TextCNN students."""
        if self.objective:
            return validate_objective(self.objective)
        if default:
            return dict(default)
        if self.student != "transformer":  # Tang et al.: BiLSTM/TextCNN regress the teacher's logits
            return {"logit_mse": 1.0, "hard_ce": 1.0}
        return {"dark_ce": 1.0, "hard_ce": 1.0}

    def kd_loss_params(self) -> dict:
        """``loss_params`` with the dark-knowledge temperature merged in."""
        params = {k: dict(v) for k, v in self.loss_params.items()}
        params.setdefault("dark_ce", {}).setdefault("temperature", self.temperature)
        return params

    def with_max_steps(self, max_steps: int | None) -> "RunConfig":
        """Cap both stages at ``max_steps`` optimiser steps (smoke runs)."""
        if max_steps is None:
            return self
        return dataclasses.replace(self, teacher_train=self.teacher_train.replace(max_steps=max_steps),
                                   student_train=self.student_train.replace(max_steps=max_steps))


@dataclass
class Prepared:
    """A task with its encoded splits, ready for training."""

    task: Task
    tokenizer: object
    train: Encoded
    val: Encoded
    test: Encoded
    device: torch.device


def prepare(cfg: RunConfig) -> Prepared:
    """Load the task split and tokenise it with the teacher's tokenizer."""
    task = load_task(cfg.task, shots=cfg.shots, seed=cfg.seed, data_dir=cfg.data_dir, leakage=cfg.leakage)
    tokenizer = models.load_tokenizer(cfg.teacher)
    max_len = cfg.teacher_train.max_length
    return Prepared(task, tokenizer, *(encode(d, tokenizer, task.spec, max_len) for d in (task.train, task.val, task.test)),
                    device=select_device(cfg.device))


def _check_student_vocab(cfg: RunConfig) -> None:
    if cfg.student != "transformer" and cfg.student_init != cfg.teacher:
        raise ConfigError("bilstm/textcnn students use the teacher's tokenizer: set student_init to the teacher")


def train_teacher(cfg: RunConfig, data: Prepared, progress: bool = True, on_epoch_end=None,
                  train: Encoded | None = None) -> tuple[object, FitResult]:
    """Fine-tune the teacher on the few-shot train set (model selection on validation).

    ``on_epoch_end(epoch, row, teacher)`` is called after each epoch (RCO records its route there);
    ``train`` replaces the target train set (e.g. a source-domain teacher).
    """
    seed_everything(cfg.seed)
    teacher = models.build_teacher(data.task.spec.num_labels, cfg.teacher)
    result = fit(teacher, data.train if train is None else train, data.val, data.task.spec, cfg.teacher_train,
                 device=data.device, seed=cfg.seed, progress=progress, desc="teacher", on_epoch_end=on_epoch_end)
    return teacher, result


def build_distiller(cfg: RunConfig, student: torch.nn.Module, device: torch.device | str, total_steps: int | None,
                    teacher=None, objective: dict | None = None, train: TrainConfig | None = None,
                    **kwargs) -> Distiller:
    """The distiller of a run: ``objective`` (default the run's :meth:`RunConfig.kd_objective`),
    the run's loss options and layer map, and the optimiser settings of ``train`` (default
    ``cfg.student_train``) over ``total_steps`` (None: constant learning rate). ``kwargs`` go to
    :class:`~augrl.kd.Distiller` (``extra_parameters``, ``teacher_layers``, ``loss_params``...)."""
    kwargs.setdefault("loss_params", cfg.kd_loss_params())
    kwargs.setdefault("layer_map", cfg.layer_map)
    return Distiller.from_train_config(student, objective or cfg.kd_objective(), train or cfg.student_train,
                                       total_steps=total_steps, device=device, teacher=teacher, **kwargs)


def build_configured_student(cfg: RunConfig, num_labels: int):
    _check_student_vocab(cfg)
    seed_everything(cfg.seed + 1)  # the student's fresh head differs from the teacher's
    return models.build_student_of_kind(cfg.student, num_labels, cfg.student_init, num_layers=cfg.student_layers)


def train_student(cfg: RunConfig, data: Prepared, progress: bool = True) -> tuple[object, FitResult]:
    """Student-FT: fine-tune a fresh ``cfg.student`` on the few-shot train set with the hard
    label alone (model selection on validation)."""
    model = build_configured_student(cfg, data.task.spec.num_labels)
    seed_everything(cfg.seed)
    result = fit(model, data.train, data.val, data.task.spec, cfg.student_train, device=data.device, seed=cfg.seed,
                 progress=progress, desc="student")
    return model, result


def _record(command: str, method: str, cfg: RunConfig, data: Prepared, test: dict, val: dict,
            params: dict, seconds: float, stages: dict) -> dict:
    return {
        "command": command,
        "task": data.task.spec.name,
        "method": method,
        "seed": cfg.seed,
        "shots": cfg.shots,
        "metrics": {"test": test, "val": val},
        "params": params,
        "wall_time_s": round(seconds, 2),
        "stages": stages,
        "config": cfg.to_dict(),
        "split": data.task.meta,
        "device": str(data.device),
        **provenance(),
    }


def _stage(result: FitResult) -> dict:
    return {"best_epoch": result.best_epoch, "steps": result.steps, "seconds": round(result.seconds, 2),
            "history": result.history}


def run_finetune(cfg: RunConfig, which: str = "teacher", out_dir: str | Path | None = None,
                 progress: bool = True) -> dict:
    """Teacher-FT or Student-FT: fine-tune on the target few-shot set, report test metrics."""
    if which not in ("teacher", "student"):
        raise ConfigError(f"--model must be teacher or student, got {which!r}")
    start = time.perf_counter()
    data = prepare(cfg)
    spec = data.task.spec
    if which == "teacher":
        model, result = train_teacher(cfg, data, progress)
        train_cfg = cfg.teacher_train
    else:
        model, result = train_student(cfg, data, progress)
        train_cfg = cfg.student_train
    test = evaluate(model, data.test, spec, data.device, train_cfg.eval_batch_size)
    record = _record("finetune", f"{which}_ft", cfg, data, test, result.best_val,
                     {which: models.count_parameters(model)}, time.perf_counter() - start, {which: _stage(result)})
    if out_dir is not None:
        run_dir = models.save_model(model, Path(out_dir) / f"{which}_ft-seed{cfg.seed}", data.tokenizer)
        _save_curves(record, run_dir)
    return record


def _save_curves(record: dict, run_dir: Path) -> None:
    from augrl.plots import plot_learning_curves

    metric = next(iter(record["metrics"]["test"]))
    title = f"{record['task']} {record['method']} seed {record['seed']} ({record['shots']} shots)"
    plot_learning_curves(record["stages"], metric, run_dir / "learning_curves.png", title)


def run_distill(cfg: RunConfig, out_dir: str | Path | None = None,
                teacher_dir: str | Path | Sequence[str | Path] | None = None, progress: bool = True) -> dict:
    """Distil with ``cfg.method`` (default ``kd``: fine-tune or load the teacher, cache its
    outputs on the train set once, train the student on the weighted objective), selecting the
    student's best epoch on validation; evaluate once on test.

    Every method returns the same record shape (:func:`_record`), plus ``teacher_metrics``,
    ``teacher_dir``, the resolved ``objective`` and ``method_options``, and method-specific
    fields. With ``out_dir`` the student (and the learned loss modules, ``kd_modules.pt``) and
    any teacher trained here are saved under ``out_dir/{method}-seed{seed}/``.

    Args:
        cfg: the run; ``cfg.method`` picks the trainer (see :mod:`augrl.kd.methods`).
        out_dir: where models go (None: not saved).
        teacher_dir: saved fine-tuned teacher(s) to reuse instead of training one (several
            for ``multi_teacher``).
        progress: progress bars on stderr.
    """
    from augrl.kd.methods import DistillContext, get_method

    start = time.perf_counter()
    method = get_method(cfg.method)
    options = method.parse_options(cfg.method_options)
    method.check_student(cfg.student)
    dirs = [] if teacher_dir is None else ([teacher_dir] if isinstance(teacher_dir, (str, Path)) else list(teacher_dir))
    data = prepare(cfg)
    ctx = DistillContext(cfg, data, options, [Path(d) for d in dirs], progress, method)
    result = method.run(ctx)
    spec = data.task.spec
    test = evaluate(result.student, data.test, spec, data.device, cfg.student_train.eval_batch_size)
    if out_dir is not None:
        out = Path(out_dir) / f"{cfg.method}-seed{cfg.seed}"
        models.save_model(result.student, out / "student", data.tokenizer)
        if result.distiller is not None:
            result.distiller.save_modules(out / "student" / "kd_modules.pt")
        for name, model in result.trained_teachers.items():
            models.save_model(model, out / name, data.tokenizer)
    record = _record("distill", cfg.method, cfg, data, test, result.best_val, result.params,
                     time.perf_counter() - start, ctx.stages)
    if result.evaluate_teacher is not None:
        record.update(result.evaluate_teacher(data.test))
    record["teacher_dir"] = None if not dirs else (str(dirs[0]) if len(dirs) == 1 else [str(d) for d in dirs])
    record["objective"] = result.objective
    record["method_options"] = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else {}
    record.update(result.extra)
    if out_dir is not None:
        _save_curves(record, out)
    return record
