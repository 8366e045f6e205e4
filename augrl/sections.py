"""The composed config: one dataclass per section, each with one job.

=====================  ===========================================================================
:class:`SplitConfig`    the few-shot split: task, shots, seed, data root, leakage filter
:class:`TeacherConfig`  the teacher: encoder, its fine-tuning, source adaptation
:class:`StudentConfig`  the student: kind, encoder it is made from, layers, its training
:class:`KDConfig`       the distillation: objective, loss options, temperature, layer map, method
:class:`PoolConfig`     the candidate pool: augmenter, its settings, size, source share
:class:`WorldConfig`    the rest of an environment's static world: a saved teacher, the reward
                        set, the student's frozen embeddings
:class:`EnvConfig`      the decision process on a world: batch, decision, reward, episodes, the
                        environment's own optimiser step
=====================  ===========================================================================

A whole config is a :class:`Composed` dataclass that inherits the fields of its sections:
:class:`~augrl.pipelines.RunConfig` is split + teacher + student + KD (+ ``device``), and
:class:`~augrl.envs.AugmentKDConfig` is a run config + pool + world + env. Every field keeps
its one flat name (``cfg.shots``, ``cfg.pool_size``), so a gymnasium ``make(..., shots=8)``
or a search's ``config.temperature`` reads as before, while

* ``cfg.section(PoolConfig)`` is one section's content, the thing a cache key hashes: an
  environment's world is decided by every section but :class:`EnvConfig`
  (:meth:`Composed.fields_of`), by construction rather than by a hand-kept list;
* ``cfg.save("run.yaml")`` writes one mapping per section and :meth:`Composed.from_dict`
  reads that form or the flat one (files saved before the sections existed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar


from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.kd.losses import validate_objective
from augrl.models import DEFAULT_MODEL
from augrl.tasks import LEAKAGE_FILTERS
from augrl.training import TrainConfig

S = TypeVar("S", bound=ConfigMixin)
C = TypeVar("C", bound="Composed")


def _train_config(value, source: str) -> TrainConfig:
    return TrainConfig.from_dict(value, source=source) if isinstance(value, dict) else value


@dataclass
class SplitConfig(ConfigMixin):
    """The few-shot split (see :mod:`augrl.tasks`).

    Attributes:
        task: registered task name or task YAML path.
        shots, seed: target train examples per class, and the split's seed (which also seeds
            training, the pool and the student's initial weights).
        data_dir: data root (default ``$AUGRL_DATA``, else the hub).
        leakage: ``remove`` (default) drops the source rows that leak the validation or test
            texts (see :mod:`augrl.leakage`); ``keep`` keeps them, to reproduce work that did
            not filter. The split record in the result says which.
    """

    task: str = "rt"
    shots: int = 40
    seed: int = 0
    data_dir: str | None = None
    leakage: str = "remove"

    def __post_init__(self) -> None:
        if self.leakage not in LEAKAGE_FILTERS:
            raise ConfigError(f"{type(self).__name__}.leakage must be one of {LEAKAGE_FILTERS}, got {self.leakage!r}")
        if isinstance(self.shots, bool) or int(self.shots) < 1:
            raise ConfigError(f"shots must be >= 1, got {self.shots}")


@dataclass
class TeacherConfig(ConfigMixin):
    """The teacher, fine-tuned once per split and cached (:mod:`augrl.teachers`).

    Attributes:
        teacher: its encoder (``minilm``, ``mpnet``, a hub name or a folder).
        teacher_train: its fine-tuning (epochs, learning rate, ``max_length``: tokens per example
            for every encoding of the split).
        teacher_source_shots: a source-adapted teacher: fine-tuned first on this many
            (leakage-filtered) source examples per class and source domain, then on the target
            few-shot set (0, default: the target set alone, the paper's Teacher-FT).
    """

    teacher: str = DEFAULT_MODEL
    teacher_train: TrainConfig = field(default_factory=TrainConfig)
    teacher_source_shots: int = 0

    def __post_init__(self) -> None:
        self.teacher_train = _train_config(self.teacher_train, "teacher_train")
        if isinstance(self.teacher_source_shots, bool) or not isinstance(self.teacher_source_shots, int) \
                or self.teacher_source_shots < 0:
            raise ConfigError(f"{type(self).__name__}.teacher_source_shots must be an integer >= 0 (0: a target-only "
                              f"teacher), got {self.teacher_source_shots!r}")


@dataclass
class StudentConfig(ConfigMixin):
    """The student.

    Attributes:
        student: ``transformer`` (layers of ``student_init``), ``bilstm`` or ``textcnn``.
        student_init: encoder the student is made from (default: the shipped MiniLM).
        student_layers: encoder layers the transformer student keeps (the first ones).
        student_train: optimisation of the students distilled for evaluation.
    """

    student: str = "transformer"
    student_init: str = DEFAULT_MODEL
    student_layers: int = 2
    student_train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        self.student_train = _train_config(self.student_train, "student_train")


@dataclass
class KDConfig(ConfigMixin):
    """The distillation.

    Attributes:
        objective: KD loss weights (registry names); None: the method's default (``kd``:
            dark_ce + hard_ce, or logit_mse + hard_ce for BiLSTM/TextCNN students, Tang et
            al.), see :meth:`~augrl.pipelines.RunConfig.kd_objective`.
        loss_params: per-loss options, e.g. ``{"minilm_relation": {"relation_heads": 12}}``.
        temperature: softmax temperature of ``dark_ce`` (merged into ``loss_params``).
        layer_map: teacher:student layer pairs for layer losses, e.g. ``"3:1,6:2"``; None:
            uniform (see :class:`augrl.kd.LayerMap`).
        method: distillation method (see ``augrl.kd.methods``): ``kd``, ``multi_teacher``,
            ``cotrain_isolated``, ``cotrain_shared_grad``, ``cotrain_loss_sum``, ``newsbert``,
            ``rco``, ``metakd``.
        method_options: the method's own options (e.g. ``{"beta": 0.5}`` for newsbert).
        cache_dtype: storage type of cached teacher layer outputs (``float16`` or ``float32``).
    """

    objective: dict | None = None
    loss_params: dict = field(default_factory=dict)
    temperature: float = 2.0
    layer_map: str | None = None
    method: str = "kd"
    method_options: dict = field(default_factory=dict)
    cache_dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.objective:
            self.objective = validate_objective(self.objective)


@dataclass
class PoolConfig(ConfigMixin):
    """The candidate pool an environment selects from (:mod:`augrl.pool`).

    Attributes:
        augmenter, augmenter_params: a registered augmenter and its settings.
        pool_size: candidates (the pool is built once, from the split's seed).
        variants: variants per source example.
        source_fraction: share of source-made candidates (None: 0.5 with a source pool, else 0).
    """

    augmenter: str = "eda"
    augmenter_params: dict = field(default_factory=dict)
    pool_size: int = 1600
    variants: int = 4
    source_fraction: float | None = None

    def __post_init__(self) -> None:
        for name in ("pool_size", "variants"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class WorldConfig(ConfigMixin):
    """What else decides an environment's static world (:class:`~augrl.envs.KDWorld`).

    Attributes:
        teacher_dir: a saved fine-tuned teacher to use instead of the split's cached one.
        val_size: validation examples the reward is computed on (None: the whole split; a
            smaller, class-stratified seeded subset is faster and noisier).
        reward_unlabelled: target-domain texts no split uses (``Task.unlabelled``: disjoint from
            train, validation and test), labelled by the teacher and added to the paired
            reward's divergence set (their gold labels are never read); 0: the validation set
            alone. The number used is recorded in the world's ``reward_set``.
        freeze_embeddings: keep the environment student's word-embedding matrix fixed (see the
            env's docs).
    """

    teacher_dir: str | None = None
    val_size: int | None = None
    reward_unlabelled: int = 0
    freeze_embeddings: bool = True

    def __post_init__(self) -> None:
        if int(self.reward_unlabelled) < 0:
            raise ConfigError(f"reward_unlabelled must be >= 0 (target texts added to the reward set), got "
                              f"{self.reward_unlabelled}")
        if self.val_size is not None and self.val_size < 2:
            raise ConfigError(f"val_size must be >= 2 or None, got {self.val_size}")


DECISIONS = ("batch", "sample")
REWARDS = ("paired", "metric", "loss")
PAIRED_CONTROLS = ("random", "disjoint", "trajectory")
REWARD_SETS = ("all", "unlabelled")
PAIRED_TARGETS = ("teacher", "labels")
STUDENT_RESETS = ("episode", "never")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class EnvConfig(ConfigMixin):
    """The decision process on a world; environments that differ only here share one world
    (:meth:`~augrl.envs.KDWorld.with_settings`).

    Attributes:
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
        paired_control: the paired reward's control subset, of the kept set's size:
            ``random`` (any rows of the batch) or ``disjoint`` (the dropped rows first, so the
            control shares as few rows with the kept set as its size allows: when half the
            batch is kept, the control is exactly the dropped half). Under a random policy
            both controls are uniform subsets of the batch, so the reward's mean stays 0;
            ``disjoint`` contrasts the kept rows with the rows the policy rejected instead of
            with a mix of both. ``trajectory``: a control student that starts each episode from
            the same snapshot and keeps random subsets of the kept sets' sizes all episode; the
            reward is the step's change of the gap between the two students' divergences (an
            episode's return: how much lower the kept trajectory ends than the random one).
        reward_on: the texts the paired reward's divergence is measured on: ``all`` (the
            validation set plus the world's ``reward_unlabelled`` texts) or ``unlabelled`` (those
            texts alone, so the set the reward measures is disjoint from the validation set the
            features read: ``head_influence`` is the validation gradient's one-step look-ahead,
            and a keep rule on it would otherwise score the reward's own measurement).
        paired_target: what the paired reward's validation loss compares the student with:
            ``teacher`` (KL(teacher || student), the default) or ``labels`` (cross-entropy to the
            validation set's gold labels, MSE for regression; the reward then measures on the
            validation set alone, since ``reward_unlabelled`` texts have no labels). The teacher's
            divergence rewards agreeing with the teacher, errors included; the gold labels reward
            what the test measures, and they are not what ``head_influence`` reads.
        student_reset: ``episode`` (every reset restores a student and its optimiser: a
            warm-start snapshot, or the initial student without snapshots) or ``never`` (the
            student keeps learning across episodes).
        snapshot_steps: warm starts: snapshots of a student trained with the environment's step
            on every candidate after these many steps (built once per world, cached); each
            reset starts from one of them, drawn at random (``reset(options={"snapshot": s})``
            picks step ``s``). Empty: every episode starts from the initial student.
        episode_length: distillation steps per episode (None: ``pool_size // batch_size``, one
            pass over the pool).
        normalize_obs: standardise each feature with means and standard deviations measured once
            per world (clipped to [-5, 5]); False: raw values in their documented ranges.
        target_batch_size: target few-shot examples added to every distillation step (0: the
            student learns from kept candidates only).
        lr, weight_decay, grad_clip: the environment student's AdamW step (constant learning
            rate); one env step is not one step of the evaluated students' training.
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
        observations: build each batch's observation (an eval-mode pass of the student over the
            candidates, and the validation pass whose head gradient ``head_influence`` reads).
            False: ``reset`` and ``step`` return zeros of the observation space's shape, and
            with the paired reward on ``reward_on="unlabelled"`` the reward's own passes are
            all that run (``info`` then carries ``val_divergence`` but not the validation
            set's metric, loss or agreement); the rewards are the same either way, since an
            observation draws no random numbers. For learners that choose by pool index
            (``env.batch_rows``), such as a rule search on static features.
        step_seeds: each step's random draws (dropout) start from a seed drawn from the
            episode's generator, instead of carrying on from the previous step's, so they do not
            depend on what earlier steps kept. The trajectory control's path is then the same in
            every episode that replays its reset seed with the same kept counts (a common-episode
            rule search's arms), and the env reuses its divergence instead of recomputing it
            (it always reuses it when the control's whole history, random state included,
            repeats; without ``step_seeds`` that rarely happens).
    """

    batch_size: int = 32
    decision: str = "batch"
    reward: str = "paired"
    paired_control: str = "random"
    reward_on: str = "all"
    paired_target: str = "teacher"
    student_reset: str = "episode"
    snapshot_steps: tuple = (0, 10, 25, 50, 100)
    episode_length: int | None = None
    normalize_obs: bool = True
    target_batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    precision: str = "auto"
    length_bucketing: bool = True
    val_batch_size: int = 32
    observations: bool = True
    step_seeds: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (("decision", DECISIONS), ("reward", REWARDS), ("paired_control", PAIRED_CONTROLS),
                              ("reward_on", REWARD_SETS), ("paired_target", PAIRED_TARGETS),
                              ("student_reset", STUDENT_RESETS),
                              ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("normalize_obs", "length_bucketing", "observations", "step_seeds"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if int(self.batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.target_batch_size < 0:
            raise ConfigError(f"target_batch_size must be >= 0, got {self.target_batch_size}")
        steps = list(self.snapshot_steps or ())
        if any(not isinstance(x, int) or isinstance(x, bool) or x < 0 for x in steps) or steps != sorted(set(steps)):
            raise ConfigError(f"snapshot_steps must be increasing distinct integers >= 0 (e.g. [0, 10, 25, 50, 100]) "
                              f"or empty, got {self.snapshot_steps!r}")
        self.snapshot_steps = tuple(steps)
        if self.episode_length is not None and self.episode_length < 1:
            raise ConfigError(f"episode_length must be >= 1 or None, got {self.episode_length}")

    def step_train(self) -> TrainConfig:
        """The environment student's optimiser settings, as the distiller takes them."""
        return TrainConfig(lr=self.lr, weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                           batch_size=self.batch_size)


class Composed(ConfigMixin):
    """Mix into a ``@dataclass`` that inherits the fields of the sections in ``SECTIONS``
    (``name -> section class``); see the module docstring."""

    SECTIONS: ClassVar[dict[str, type]] = {}

    def __post_init__(self) -> None:
        for kind in self.SECTIONS.values():
            check = kind.__dict__.get("__post_init__")
            if check is not None:
                check(self)

    @classmethod
    def fields_of(cls, *kinds: type) -> frozenset[str]:
        """The flat field names of sections ``kinds``."""
        return frozenset(f.name for kind in kinds for f in dataclasses.fields(kind))

    def section(self, kind: type[S]) -> S:
        """The content of one section (or of a composed config made of some of these sections,
        e.g. the :class:`~augrl.pipelines.RunConfig` of an environment's config)."""
        return kind(**{f.name: getattr(self, f.name) for f in dataclasses.fields(kind)})

    def to_sections(self) -> dict[str, dict[str, Any]]:
        """``{section name: its fields}``, plus the fields of no section under their own names."""
        flat = self.to_dict()
        out: dict[str, Any] = {}
        for name, kind in self.SECTIONS.items():
            out[name] = {k: flat.pop(k) for k in self.fields_of(kind) if k in flat}
            out[name] = {f.name: out[name][f.name] for f in dataclasses.fields(kind)}  # declaration order
        return {**out, **flat}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
        """Read the sectioned form (:meth:`to_sections`) or the flat one; an unknown field is an
        error naming its section."""
        data = dict(data)
        flat: dict[str, Any] = {}
        for name, kind in cls.SECTIONS.items():
            value = data.get(name)
            if isinstance(value, dict):  # no field named like a section holds a mapping
                data.pop(name)
                unknown = sorted(set(value) - cls.fields_of(kind))
                if unknown:
                    raise ConfigError(f"{source}: section {name!r} has no field(s) {unknown}; it takes "
                                      f"{[f.name for f in dataclasses.fields(kind)]}")
                flat.update(value)
        clash = sorted(set(flat) & set(data))
        if clash:
            raise ConfigError(f"{source}: {clash} given both in a section and at the top level; give each once")
        return super().from_dict({**data, **flat}, source)

    def to_file_dict(self) -> dict[str, Any]:
        """What :meth:`save` writes: the sectioned form (:meth:`to_sections`)."""
        return self.to_sections()
