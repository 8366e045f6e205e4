"""``augrl/AugmentKD-v0``: which augmented samples should the student distil from?

One episode is one pass over the candidate pool D' (Algorithm 1 of L2A), in batches of B:

* **observation**: per candidate, features of the frozen teacher's and the current student's
  outputs (:mod:`augrl.envs.features` lists and bounds every one);
* **action**: keep or drop each candidate of the batch: ``MultiBinary(B)`` (``decision="batch"``),
  or ``Discrete(2)`` for one candidate at a time (``decision="sample"``: observations are
  per candidate and the student is updated after every B decisions);
* **dynamics**: one :class:`~augrl.kd.Distiller` step on the kept candidates plus
  ``target_batch_size`` target few-shot examples drawn at random, with the teacher's cached
  outputs;
* **reward**: after the step, the change of the student's validation metric (``reward="metric"``,
  accuracy or Pearson as in L2A) or the decrease of its validation loss (``reward="loss"``).

Kept nothing: when no candidate of a batch is kept, the step still trains on the target
examples (the counterfactual "no augmentation" step) and the reward is measured as usual; with
``target_batch_size=0`` nothing is trained, the reward is 0 and ``info["updated"]`` is False.
In sample mode, decisions that do not complete a batch get reward 0; the batch's reward comes
with its B-th decision. The metric reward telescopes: an episode's return is the student's
final validation metric minus its initial one.

Cost: the teacher's outputs on the pool and the validation set are computed once
(:class:`~augrl.envs.world.KDWorld`). The student's forward pass that produces a batch's
observation runs in training mode with its autograd graph kept, and the distillation step
reuses it on the kept rows (:meth:`augrl.kd.outputs.Outputs.rows`), so each candidate costs
one forward and one backward pass. The student's word embeddings are frozen by default
(``freeze_embeddings``): on a CPU their dense update costs more than the rest of a step. The
validation pass for the reward is the remaining cost; ``val_size`` trades it for noise.

Randomness: ``seed`` (a keyword argument) fixes the split, the pool and the student's initial
weights; ``reset(seed=...)`` fixes the episode: the order of the pool, the target examples
drawn and dropout. The student runs under a private torch generator state, so the
environment's randomness neither disturbs nor depends on the agent's.

Reward noise (RT, 40 shots, B = 32, default models, 200 validation examples): see the
package README, section "The environment".
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from augrl import models
from augrl.errors import ConfigError
from augrl.metrics import compute_metrics
from augrl.runtime import native_bf16

from .config import AugmentKDConfig
from .features import feature_bounds, feature_names, observation
from .world import KDWorld, build_world


class AugmentKDEnv(gym.Env):
    """Keep/drop augmented candidates for a student distilled from a frozen teacher.

    Args:
        world: a ready :class:`~augrl.envs.world.KDWorld` to share (then ``config`` and the
            keyword settings are ignored: the world's config is used).
        config: an :class:`~augrl.envs.config.AugmentKDConfig`.
        progress: report the world's build stages on stderr.
        **settings: the fields of :class:`~augrl.envs.config.AugmentKDConfig` (``task``,
            ``shots``, ``seed``, ``augmenter``, ``augmenter_params``, ``pool_size``,
            ``batch_size``, ``decision``, ``reward``, ``objective``, ``val_size``,
            ``student_reset``, ``data_dir``...), as ``gymnasium.make`` passes them.

    Spaces:
        ``decision="batch"``: observation ``Box(B, F)``, action ``MultiBinary(B)``;
        ``decision="sample"``: observation ``Box(F,)``, action ``Discrete(2)`` (1 = keep).
        F = ``2 C + 11`` for C classes, 11 for regression (see :mod:`augrl.envs.features`).

    ``info`` after every step: ``updated`` (a distillation step was taken), ``kept`` and
    ``kept_fraction`` (of the batch just decided), ``kept_total`` and ``candidates_seen``
    (this episode), ``decided_rows`` (pool indices of the candidates this step decided),
    ``val_metric``, ``val_loss`` and ``val_teacher_agreement`` (the student's,
    on the reward's validation set), ``loss_terms`` (the KD terms of the last step), ``batch``
    (steps taken this episode) and, at the end of an episode, ``episode_kept_indices`` (pool
    indices kept).
    """

    metadata = {"render_modes": []}

    def __init__(self, world: KDWorld | None = None, config: AugmentKDConfig | None = None,
                 progress: bool = False, **settings: Any) -> None:
        super().__init__()
        if world is None:
            if config is None:
                config = AugmentKDConfig.from_dict(settings, source="AugmentKD-v0 settings")
            elif settings:
                config = config.replace(**settings)
            world = build_world(config, progress=progress)
        self.world = world
        self.config = c = world.config
        self.device = world.data.device
        self.task_spec = world.data.task.spec
        self.feature_names = feature_names(world.num_labels)
        self._low, self._high = feature_bounds(world.num_labels)
        self.B = c.batch_size
        if c.decision == "batch":
            self.observation_space = spaces.Box(np.tile(self._low, (self.B, 1)), np.tile(self._high, (self.B, 1)),
                                                dtype=np.float32)
            self.action_space = spaces.MultiBinary(self.B)
        else:
            self.observation_space = spaces.Box(self._low, self._high, dtype=np.float32)
            self.action_space = spaces.Discrete(2)
        self.steps_per_episode = c.episode_steps
        if c.precision == "auto":
            self.precision = "bf16" if native_bf16(self.device) else "fp32"
        else:
            self.precision = c.precision
        self.student = world.new_student()
        self.distiller = None
        self._rng_state: torch.Tensor | None = None
        self._cuda_rng_state: torch.Tensor | None = None
        self._order: np.ndarray | None = None
        self._batch = 0
        self._decisions: list[int] = []
        self._outputs = None
        self._rows: torch.Tensor | None = None
        self._target_rows: torch.Tensor | None = None
        self._obs: np.ndarray | None = None
        self._val: dict = {}
        self._episode = {}

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        fresh = self.distiller is None or self.config.student_reset == "episode"
        generator = torch.Generator().manual_seed(int(self.np_random.integers(2 ** 62)))
        self._rng_state = generator.get_state()
        self._cuda_rng_state = None
        if fresh:
            self.student.load_state_dict(self.world.student_template.state_dict())
            with self._private_rng():
                self.distiller = self.world.new_distiller(self.student)
        self._order = self._episode_order()
        self._batch = 0
        self._decisions = []
        self._episode = {"kept_total": 0, "candidates_seen": 0, "kept": []}
        self._val = self._validate()
        self._start_batch()
        return self._current_obs(), self._info(updated=False, kept=0, terms={})

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._order is None:
            raise RuntimeError("call reset() before step()")
        if self._batch >= self.steps_per_episode:
            raise RuntimeError("the episode is over; call reset()")
        if self.config.decision == "batch":
            keep = self._batch_action(action)
        else:
            self._decisions.append(self._sample_action(action))
            decided = [int(self._rows[len(self._decisions) - 1])]
            if len(self._decisions) < self.B:
                self._episode["candidates_seen"] += 1
                info = self._info(updated=False, kept=int(sum(self._decisions)), terms={})
                info["decided_rows"] = decided
                return self._current_obs(), 0.0, False, False, info
            keep = np.asarray(self._decisions, dtype=bool)
            self._decisions = []
        if self.config.decision == "batch":
            decided = self._rows.tolist()
        reward, updated, terms = self._distil(keep)
        kept_rows = self._rows[torch.as_tensor(keep)].tolist()
        self._episode["kept"].extend(kept_rows)
        self._episode["kept_total"] += len(kept_rows)
        self._episode["candidates_seen"] += self.B if self.config.decision == "batch" else 1
        self._batch += 1
        terminated = self._batch >= self.steps_per_episode
        if terminated:
            self._outputs = None
            obs = np.zeros(self.observation_space.shape, dtype=np.float32)
            obs[..., -1] = 1.0  # progress
        else:
            self._start_batch()
            obs = self._current_obs()
        info = self._info(updated=updated, kept=int(keep.sum()), terms=terms)
        info["decided_rows"] = decided
        if terminated:
            info["episode_kept_indices"] = list(self._episode["kept"])
        return obs, float(reward), terminated, False, info

    def close(self) -> None:
        self._outputs = None

    # ------------------------------------------------------------------ actions

    def _batch_action(self, action) -> np.ndarray:
        try:
            a = np.asarray(action)
        except Exception:  # noqa: BLE001
            raise ValueError(f"action must be a length-{self.B} array of 0/1, got {type(action).__name__}") from None
        if a.shape != (self.B,):
            raise ValueError(f"action must have shape ({self.B},) (MultiBinary({self.B}): keep=1/drop=0 per "
                             f"candidate), got shape {a.shape}")
        if a.dtype.kind not in "biuf":
            raise ValueError(f"action must be numeric or boolean 0/1, got dtype {a.dtype}")
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"action values must be 0 (drop) or 1 (keep), got {sorted(set(a.tolist()))[:5]}")
        return a.astype(bool)

    def _sample_action(self, action) -> int:
        a = np.asarray(action)
        if a.size != 1 or a.dtype.kind not in "biu" and not (a.dtype.kind == "f" and float(a.flat[0]).is_integer()):
            raise ValueError(f"action must be 0 (drop) or 1 (keep) (Discrete(2)), got {action!r}")
        value = int(a.flat[0])
        if value not in (0, 1):
            raise ValueError(f"action must be 0 (drop) or 1 (keep) (Discrete(2)), got {value}")
        return value

    # ------------------------------------------------------------------ dynamics

    @contextlib.contextmanager
    def _private_rng(self):
        """Run with this env's own torch random state (dropout, new loss modules)."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self._rng_state)
            if devices:
                if self._cuda_rng_state is None:
                    torch.cuda.manual_seed(int(torch.randint(2 ** 62, (1,))))
                else:
                    torch.cuda.set_rng_state(self._cuda_rng_state, self.device)
            yield
            self._rng_state = torch.get_rng_state()
            if devices:
                self._cuda_rng_state = torch.cuda.get_rng_state(self.device)

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _episode_order(self) -> np.ndarray:
        """The pool's order this episode: shuffled; with ``length_bucketing``, each run of 8 B
        candidates sorted by length and cut into batches, then the batches shuffled."""
        order = self.np_random.permutation(self.world.num_candidates)
        if not self.config.length_bucketing:
            return order
        lengths = self.world.lengths
        used = self.steps_per_episode * self.B
        bucket = 8 * self.B
        batches = []
        for start in range(0, used, bucket):
            chunk = order[start:min(start + bucket, used)]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.B] for i in range(0, len(chunk), self.B)]
        batches = [batches[i] for i in self.np_random.permutation(len(batches))]
        return np.concatenate(batches + [order[used:]])

    def _start_batch(self) -> None:
        """Draw the batch's target examples and run the student on the candidates (the pass is
        kept, with its graph, for the update)."""
        start = self._batch * self.B
        self._rows = torch.as_tensor(self._order[start:start + self.B].copy())
        t = self.config.target_batch_size
        n_target = self.world.num_target
        if t:
            picks = self.np_random.choice(n_target, size=min(t, n_target), replace=False)
            self._target_rows = torch.as_tensor(self.world.num_candidates + np.sort(picks))
        else:
            self._target_rows = torch.empty(0, dtype=torch.long)
        self._batch_tensors = self.world.encoded.batch(self._rows, self.device)
        self.student.train()
        with self._private_rng(), self._autocast():
            self._outputs = self.distiller.student_outputs(self._batch_tensors)
        logits = self._outputs.logits
        progress = self._batch * self.B / (self.steps_per_episode * self.B)
        self._obs = observation(self.world.static, self._rows, logits,
                                torch.as_tensor(self.world.pool.labels)[self._rows], progress, self._low, self._high)

    def _current_obs(self) -> np.ndarray:
        if self.config.decision == "batch":
            return self._obs.copy()
        row = self._obs[len(self._decisions)].copy()
        row[-1] = (self._batch * self.B + len(self._decisions)) / (self.steps_per_episode * self.B)
        return row

    def _distil(self, keep: np.ndarray) -> tuple[float, bool, dict]:
        """One distillation step on the kept candidates and the target rows; the reward.

        The kept rows reuse the observation's forward pass; the target rows get their own
        (padded to their own length). The objective is the mean over all trained rows: each
        part's mean loss weighted by its row count, exactly a joint batch's mean.
        """
        positions = torch.as_tensor(np.flatnonzero(keep), dtype=torch.long)
        n_kept, n_target = len(positions), len(self._target_rows)
        if n_kept + n_target == 0:
            self._outputs = None
            return 0.0, False, {}
        parts = []
        if n_kept:
            sub = models.batch_rows(self._batch_tensors, positions)
            length = models.model_inputs(self.student, sub)["input_ids"].shape[1]
            parts.append((sub, self._outputs.rows(positions.to(self.device), length)))
        if n_target:
            parts.append((self.world.encoded.batch(self._target_rows, self.device), None))
        with self._private_rng(), self._autocast():
            terms = self.distiller.step_parts(parts, self.world.cache)
        self._outputs = None
        before = self._val
        self._val = self._validate()
        if self.config.reward == "metric":
            reward = self._val["val_metric"] - before["val_metric"]
        else:
            reward = before["val_loss"] - self._val["val_loss"]
        return reward, True, terms

    @torch.no_grad()
    def _validate(self) -> dict:
        """The student's metric, loss and agreement with the teacher on the reward's validation set."""
        from augrl.batching import predict

        with self._autocast():
            logits = predict(self.student, self.world.val, self.config.val_batch_size, self.device).float()
        labels = self.world.val.labels
        metrics = compute_metrics(logits.numpy(), labels.numpy(), self.task_spec.num_labels)
        teacher = self.world.val_teacher_logits
        if self.task_spec.is_regression:
            loss = float(torch.nn.functional.mse_loss(logits[:, 0], labels.float()))
            agreement = float(np.corrcoef(logits[:, 0].numpy(), teacher[:, 0].numpy())[0, 1]) \
                if len(labels) > 1 and logits.std() > 0 and teacher.std() > 0 else 0.0
        else:
            loss = float(torch.nn.functional.cross_entropy(logits, labels))
            agreement = float((logits.argmax(-1) == teacher.argmax(-1)).float().mean())
        metric = metrics[self.task_spec.metric]
        return {"val_metric": 0.0 if np.isnan(metric) else float(metric), "val_loss": loss,
                "val_teacher_agreement": agreement, "val_metrics": metrics}

    def _info(self, updated: bool, kept: int, terms: dict) -> dict:
        return {"updated": updated, "kept": kept, "kept_fraction": kept / self.B,
                "kept_total": self._episode["kept_total"], "candidates_seen": self._episode["candidates_seen"],
                "batch": self._batch, "loss_terms": dict(terms),
                **{k: dict(v) if isinstance(v, dict) else v for k, v in self._val.items()}}

    # ------------------------------------------------------------------ conveniences

    @classmethod
    def from_world(cls, world: KDWorld, **changes: Any) -> "AugmentKDEnv":
        """An env on a shared world with some decision-process settings changed (``decision``,
        ``reward``, ``batch_size``, ``target_batch_size``, ``student_reset``, ``lr``...).
        Settings that decide the world itself (task, pool, teacher...) cannot change here."""
        fixed = {"task", "shots", "seed", "data_dir", "leakage", "teacher", "teacher_dir", "augmenter",
                 "augmenter_params", "pool_size", "variants", "source_fraction", "val_size", "objective",
                 "loss_params", "layer_map", "student", "student_init", "student_layers", "max_length",
                 "freeze_embeddings", "teacher_epochs", "teacher_lr", "teacher_max_steps", "temperature"}
        bad = sorted(k for k in changes if k in fixed and changes[k] != getattr(world.config, k))
        if bad:
            raise ConfigError(f"{bad} decide the world (pool, teacher, split); build a new world to change them")
        if not changes:
            return cls(world=world)
        shared = KDWorld(**{**world.__dict__, "config": world.config.replace(**changes)})
        return cls(world=shared)
