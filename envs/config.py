"""Settings of :class:`~augrl.envs.AugmentKDEnv` (the keyword arguments of ``gymnasium.make``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from augrl import models
from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.kd.losses import validate_objective
from augrl.pipelines import RunConfig
from augrl.training import TrainConfig

DECISIONS = ("batch", "sample")

#: the settings that decide a :class:`~augrl.envs.KDWorld` (split, teacher, pool, student, KD
#: objective, reward set); the others only shape the decision process on it
WORLD_FIELDS = frozenset({"task", "shots", "seed", "data_dir", "leakage", "teacher", "teacher_dir", "augmenter",
                          "augmenter_params", "pool_size", "variants", "source_fraction", "val_size",
                          "reward_unlabelled", "objective", "loss_params", "layer_map", "student", "student_init",
                          "student_layers", "max_length", "freeze_embeddings", "teacher_epochs", "teacher_lr",
                          "teacher_max_steps", "temperature"})
REWARDS = ("paired", "metric", "loss")
STUDENT_RESETS = ("episode", "never")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class AugmentKDConfig(ConfigMixin):
    """Everything that decides an :class:`~augrl.envs.AugmentKDEnv`.

    Data and models:
        task, shots, seed, data_dir, leakage: the few-shot split (see :mod:`augrl.tasks`);
            ``seed`` also seeds the pool and the student's initial weights.
        teacher: encoder of the teacher (``minilm``, hub name or folder), fine-tuned on the
            target train set once per split and cached (:mod:`augrl.teachers`);
            ``teacher_dir`` uses a saved fine-tuned teacher instead.
        teacher_epochs, teacher_lr, teacher_max_steps: its fine-tuning settings.
        student, student_init, student_layers: the student (as ``augrl distill``).

    The candidate pool (:mod:`augrl.pool`):
        augmenter, augmenter_params: a registered augmenter and its settings.
        pool_size: candidates per episode (the pool is built once, from ``seed``).
        variants: variants per source example.
        source_fraction: share of source-made candidates (None: 0.5 with a source pool, else 0).

    The decision process:
        batch_size: B, candidates per distillation step.
        decision: ``batch`` (one ``MultiBinary(B)`` action per step) or ``sample`` (one
            ``Discrete(2)`` action per candidate; the student is updated every B decisions).
        reward: ``paired`` (default: how much more the step on the kept candidates lowered
            KL(teacher || student) on the reward's validation set than the same step on a
            random subset of the batch of the same size, from the same student and optimiser
            state, with the same target rows and dropout draws; regression: the MSE to the
            teacher's predictions), ``metric`` (change of the validation metric after the step,
            as in L2A) or ``loss`` (decrease of the validation loss: cross-entropy to the gold
            labels, MSE for regression). See :class:`~augrl.envs.AugmentKDEnv`.
        val_size: validation examples the reward is computed on (None: the whole split; a
            smaller, class-stratified seeded subset is faster and noisier).
        reward_unlabelled: target-domain texts no split uses (``Task.unlabelled``: disjoint from
            train, validation and test), labelled by the teacher and added to the paired
            reward's divergence set (their gold labels are never read); 0: the validation set
            alone. The number used is recorded in the world's ``reward_set``.
        student_reset: ``episode`` (every reset restores a student and its optimiser: a
            warm-start snapshot, or the initial student without snapshots) or ``never`` (the
            student keeps learning across episodes).
        snapshot_steps: warm starts: snapshots of a student trained with the environment's step
            on every candidate after these many steps (built once per world, cached); each
            reset starts from one of them, drawn at random (``reset(options={"snapshot": s})``
            picks step ``s``). Empty: every episode starts from the initial student.
        episode_length: distillation steps per episode (None: ``pool_size // batch_size``, one
            pass over the pool).
        normalize_obs: standardise each feature with running statistics (clipped to [-5, 5]);
            False: raw values in their documented ranges.
        target_batch_size: target few-shot examples added to every distillation step (0: the
            student learns from kept candidates only).

    Distillation:
        objective, loss_params, temperature, layer_map: the KD objective (default dark_ce +
            hard_ce; L2A's is ``{"attention_mse": 1, "hidden_mse": 1, "dark_ce": 1}``).
        lr, weight_decay, grad_clip: the student's AdamW settings (constant learning rate).
        freeze_embeddings: keep the student's word-embedding matrix fixed (see the env's docs).
        precision: ``bf16`` autocast for the student's forward passes (the reward's
            validation pass included), ``fp32``, or ``auto``: ``bf16`` where the hardware computes
            it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), else ``fp32``.
            The resolved choice is in ``env.precision``. Students distilled for evaluation
            (:mod:`augrl.augmented`) always train in fp32.
        length_bucketing: batch candidates of similar length (each run of 8 B shuffled
            candidates is sorted by length before it is cut into batches; the batches are
            then shuffled), which cuts the padding the student computes on.
        val_batch_size: examples per forward pass of the reward's validation pass (grouped by
            length; small batches carry less padding, 32 was fastest on a 2-core CPU).
        max_length: tokens per example.
        device: ``auto``, ``cpu``, ``cuda``...
    """

    task: str = "rt"
    shots: int = 40
    seed: int = 0
    data_dir: str | None = None
    leakage: str = "remove"
    teacher: str = models.DEFAULT_MODEL
    teacher_dir: str | None = None
    teacher_epochs: int = 10
    teacher_lr: float = 1e-4
    teacher_max_steps: int | None = None
    student: str = "transformer"
    student_init: str = models.DEFAULT_MODEL
    student_layers: int = 2
    augmenter: str = "eda"
    augmenter_params: dict = field(default_factory=dict)
    pool_size: int = 1600
    variants: int = 4
    source_fraction: float | None = None
    batch_size: int = 32
    decision: str = "batch"
    reward: str = "paired"
    val_size: int | None = None
    reward_unlabelled: int = 0
    student_reset: str = "episode"
    snapshot_steps: tuple = (0, 10, 25, 50, 100)
    episode_length: int | None = None
    normalize_obs: bool = True
    target_batch_size: int = 8
    objective: dict | None = None
    loss_params: dict = field(default_factory=dict)
    temperature: float = 2.0
    layer_map: str | None = None
    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    freeze_embeddings: bool = True
    precision: str = "auto"
    length_bucketing: bool = True
    val_batch_size: int = 32
    max_length: int = 128
    device: str = "auto"

    def __post_init__(self) -> None:
        for name, allowed in (("decision", DECISIONS), ("reward", REWARDS), ("student_reset", STUDENT_RESETS),
                              ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("pool_size", "batch_size", "variants", "shots"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pool_size < self.batch_size:
            raise ConfigError(f"pool_size ({self.pool_size}) must be at least batch_size ({self.batch_size}): an "
                              "episode is pool_size // batch_size distillation steps")
        if self.target_batch_size < 0:
            raise ConfigError(f"target_batch_size must be >= 0, got {self.target_batch_size}")
        steps = list(self.snapshot_steps or ())
        if any(not isinstance(x, int) or isinstance(x, bool) or x < 0 for x in steps) or steps != sorted(set(steps)):
            raise ConfigError(f"snapshot_steps must be increasing distinct integers >= 0 (e.g. [0, 10, 25, 50, 100]) "
                              f"or empty, got {self.snapshot_steps!r}")
        self.snapshot_steps = tuple(steps)
        if self.episode_length is not None and self.episode_length < 1:
            raise ConfigError(f"episode_length must be >= 1 or None, got {self.episode_length}")
        if int(self.reward_unlabelled) < 0:
            raise ConfigError(f"reward_unlabelled must be >= 0 (target texts added to the reward set), got "
                              f"{self.reward_unlabelled}")
        if self.val_size is not None and self.val_size < 2:
            raise ConfigError(f"val_size must be >= 2 or None, got {self.val_size}")
        if self.objective:
            self.objective = validate_objective(self.objective)

    @property
    def episode_steps(self) -> int:
        """Distillation steps per episode: ``episode_length``, else ``pool_size // batch_size``
        (the remainder of each episode's shuffled pool waits for a later episode)."""
        return self.episode_length or self.pool_size // self.batch_size

    def check_snapshots(self, final_steps: int, final: str = "the final student") -> None:
        """Refuse warm-start snapshots later than the optimiser steps of the student they stand
        for (``final_steps``), before any training starts."""
        if self.snapshot_steps and max(self.snapshot_steps) > final_steps:
            raise ConfigError(f"snapshot_steps {list(self.snapshot_steps)} reach step {max(self.snapshot_steps)}, but "
                              f"{final} trains for {final_steps} optimiser steps: the agent would see states it never "
                              f"passes through; use snapshot steps in [0, {final_steps}]")

    @classmethod
    def from_run_config(cls, run: RunConfig, **changes) -> "AugmentKDConfig":
        """The environment of a :class:`~augrl.pipelines.RunConfig`'s split, teacher, student and
        KD objective (the benchmark's methods that act in the env use this), with ``changes``
        on top. The env's own optimiser settings (``lr``, ``batch_size``...) keep their defaults
        unless changed: one env step is not one step of the run's student training."""
        t = run.teacher_train
        fields = dict(task=run.task, shots=run.shots, seed=run.seed, data_dir=run.data_dir, leakage=run.leakage,
                      teacher=run.teacher, teacher_epochs=t.epochs, teacher_lr=t.lr, teacher_max_steps=t.max_steps,
                      student=run.student, student_init=run.student_init, student_layers=run.student_layers,
                      objective=run.kd_objective(), loss_params={k: dict(v) for k, v in run.loss_params.items()},
                      temperature=run.temperature, layer_map=run.layer_map, max_length=t.max_length,
                      device=run.device)
        return cls(**{**fields, **changes})

    def run_config(self) -> RunConfig:
        """The :class:`~augrl.pipelines.RunConfig` of the split, the teacher and the student."""
        teacher_train = TrainConfig(epochs=self.teacher_epochs, lr=self.teacher_lr, max_length=self.max_length,
                                    max_steps=self.teacher_max_steps)
        student_train = TrainConfig(lr=self.lr, weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                                    batch_size=self.batch_size, max_length=self.max_length)
        return RunConfig(task=self.task, shots=self.shots, seed=self.seed, data_dir=self.data_dir,
                         teacher=self.teacher, student=self.student, student_init=self.student_init,
                         student_layers=self.student_layers, objective=self.objective,
                         loss_params=dict(self.loss_params), temperature=self.temperature, layer_map=self.layer_map,
                         teacher_train=teacher_train, student_train=student_train, device=self.device,
                         leakage=self.leakage)
