"""Settings of :class:`~augrl.envs.AugmentKDEnv` (the keyword arguments of ``gymnasium.make``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from augrl.errors import ConfigError
from augrl.pipelines import RunConfig
from augrl.sections import Composed, EnvConfig, PoolConfig, WorldConfig


@dataclass
class AugmentKDConfig(EnvConfig, WorldConfig, PoolConfig, RunConfig):
    """Everything that decides an :class:`~augrl.envs.AugmentKDEnv`: a run config's sections
    (split, teacher, student, KD: see :class:`~augrl.pipelines.RunConfig`), the candidate pool
    (:class:`~augrl.sections.PoolConfig`), the rest of the static world
    (:class:`~augrl.sections.WorldConfig`: a saved teacher, the reward set, frozen embeddings)
    and the decision process (:class:`~augrl.sections.EnvConfig`), each field under its own
    name (the keyword arguments of ``gymnasium.make``). It is a ``RunConfig`` too
    (``kd_objective()``, ``kd_loss_params()``...).

    The teacher is fine-tuned on the target train set once per split and cached
    (:mod:`augrl.teachers`) with ``teacher_train``, whose ``max_length`` is also the tokens per
    candidate. Every section but ``env`` decides the world (:meth:`world_fields`); the KD
    objective defaults to dark_ce + hard_ce (L2A's is ``{"attention_mse": 1, "hidden_mse": 1,
    "dark_ce": 1}``).
    """

    SECTIONS: ClassVar[dict[str, type]] = {**RunConfig.SECTIONS, "pool": PoolConfig, "world": WorldConfig,
                                           "env": EnvConfig}

    def __post_init__(self) -> None:
        Composed.__post_init__(self)  # every section's checks (EnvConfig's alone comes first in the MRO)
        if self.pool_size < self.batch_size:
            raise ConfigError(f"pool_size ({self.pool_size}) must be at least batch_size ({self.batch_size}): an "
                              "episode is pool_size // batch_size distillation steps")
        if self.reward_on == "unlabelled" and not int(self.reward_unlabelled):
            raise ConfigError("reward_on='unlabelled' measures the paired reward on the reward_unlabelled texts alone, "
                              "but reward_unlabelled is 0; set reward_unlabelled (e.g. 200) or reward_on='all'")
        if self.reward_on == "unlabelled" and self.paired_target == "labels":
            raise ConfigError("paired_target='labels' measures the paired reward against gold labels, which the "
                              "reward_unlabelled texts of reward_on='unlabelled' do not have; set reward_on='all' "
                              "(the validation set) or paired_target='teacher'")

    #: fields of configs saved before the teacher section existed, and where they live now
    RENAMED: ClassVar[dict[str, str]] = {"teacher_epochs": "epochs", "teacher_lr": "lr",
                                         "teacher_max_steps": "max_steps", "max_length": "max_length"}

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "AugmentKDConfig":
        """The sectioned or the flat form (:class:`~augrl.sections.Composed`); an older flat file's
        ``teacher_epochs``, ``teacher_lr``, ``teacher_max_steps`` and ``max_length`` are read
        into ``teacher_train``."""
        data = dict(data)
        old = {cls.RENAMED[k]: data.pop(k) for k in list(data) if k in cls.RENAMED}
        if old:
            train = data.get("teacher_train") or {}
            data["teacher_train"] = {**(train.to_dict() if hasattr(train, "to_dict") else train), **old}
        return super().from_dict(data, source)

    @classmethod
    def world_fields(cls) -> frozenset[str]:
        """The fields that decide a :class:`~augrl.envs.KDWorld`: every section's but the
        decision process's (:class:`~augrl.sections.EnvConfig`), and ``device``."""
        return frozenset(f.name for f in dataclasses.fields(cls)) - cls.fields_of(EnvConfig)

    @property
    def max_length(self) -> int:
        """Tokens per example (the teacher's ``teacher_train.max_length``)."""
        return self.teacher_train.max_length

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
        """The environment on a :class:`~augrl.pipelines.RunConfig`'s sections (the benchmark's
        methods that act in the env use this), with its objective resolved
        (:meth:`~augrl.pipelines.RunConfig.kd_objective`) and ``changes`` on top. The decision
        process keeps its own defaults unless changed: one env step (``lr``, ``batch_size``...) is
        not one step of the run's student training."""
        return cls(**{**run.to_dict(), "objective": run.kd_objective(), **changes})

    def run_config(self) -> RunConfig:
        """The :class:`~augrl.pipelines.RunConfig` sections of this config."""
        return self.section(RunConfig)
