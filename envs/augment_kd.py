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
* **reward** (``reward=``):

  - ``paired`` (default): from one snapshot of the student and its optimiser, the step is taken
    twice: on the kept candidates and on a random subset of the batch of the same size, with the
    same target rows and the same dropout draws. The reward is how much more the kept step
    lowered KL(teacher || student) on the reward's validation set (fp32, eval mode, teacher
    logits cached) than the random step did; the episode continues from the kept step. General
    progress, the target rows and dropout cancel; what is left is the value of the choice.
    Keeping all or none of a batch gives exactly 0 (the control is the same set).
    ``paired_target="labels"`` compares the validation set's cross-entropy to its gold labels
    (MSE for regression) instead of the divergence from the teacher.
    With ``paired_control="trajectory"`` the control is a second student that starts each
    episode from the same snapshot and follows its own random subsets (of the kept sets'
    sizes, on the same batches, target rows and dropout draws) all episode; the reward is the
    step's change of the gap between the two students' divergences, so an episode's return is
    how much lower the kept trajectory ends than the random one. One step of one candidate
    choice is worth about 1e-4 of divergence, but a consistent choice compounds over an
    episode (see the README, "Learned selection").
  - ``metric``: the change of the student's validation metric after the step (accuracy or
    Pearson, as in L2A); it telescopes: an episode's return is the final validation metric minus
    the initial one. At few-shot scale it is mostly noise (see the README, "The environment").
  - ``loss``: the decrease of the validation loss (cross-entropy to the gold labels, MSE).

**Episodes** start from warm-start snapshots (``snapshot_steps``): a student trained with the
environment's own step on every candidate, saved after 0, 10, 25, 50 and 100 steps by default,
built once per world and cached on disk (:meth:`~augrl.envs.world.KDWorld.snapshots`); each
``reset`` restores one, drawn at random (``info["start_step"]`` says which), so the agent sees
the states a distilled student passes through rather than only its first steps.
``episode_length`` sets the steps per episode (default: one pass over the pool).

Kept nothing: when no candidate of a batch is kept, the step still trains on the target
examples (the counterfactual "no augmentation" step) and the reward is measured as usual; with
``target_batch_size=0`` nothing is trained, the reward is 0 and ``info["updated"]`` is False.
In sample mode, decisions that do not complete a batch get reward 0; the batch's reward comes
with its B-th decision.

Cost: the teacher's outputs on the pool and the validation set are computed once
(:class:`~augrl.envs.world.KDWorld`). Each step costs an eval-mode forward pass over the
batch for the observation, one training step (two with ``paired``) on the kept rows and the
target rows, and one validation pass per step taken (two with ``paired``); ``val_size`` trades
the validation passes for noise. The student's word embeddings are frozen by default
(``freeze_embeddings``): on a CPU their dense update costs more than the rest of a step.

Randomness: ``seed`` (a keyword argument) fixes the split, the pool and the student's initial
weights; ``reset(seed=...)`` fixes the episode: the order of the pool, the target examples
drawn and dropout. The student runs under a private torch generator state, so the
environment's randomness neither disturbs nor depends on the agent's.

Reward noise (RT, 40 shots, B = 32, default models, 200 validation examples): see the
package README, section "The environment".
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from augrl import models
from augrl.batching import length_batches
from augrl.kd import Distiller
from augrl.metrics import compute_metrics
from augrl.runtime import resolve_precision

from .config import AugmentKDConfig
from .features import (NORMALIZED_CLIP, FeatureScaler, feature_bounds, feature_names, head_gradient,
                       head_influence, logit_gradients, observation)
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
        F = ``2 C + 18`` for C classes, 15 for regression, minus the features constant over the pool (``world.feature_names``) (see :mod:`augrl.envs.features`).

    ``info`` after every step: ``updated`` (a distillation step was taken), ``kept`` and
    ``kept_fraction`` (of the batch just decided), ``kept_total`` and ``candidates_seen``
    (this episode), ``decided_rows`` (pool indices of the candidates this step decided),
    ``val_metric``, ``val_loss``, ``val_divergence`` (KL(teacher || student), over the
    reward set: validation plus ``reward_unlabelled`` texts, or those texts alone with
    ``reward_on="unlabelled"``) and ``val_teacher_agreement`` (the
    student's, on the reward's validation set), ``loss_terms`` (the KD terms of the last step),
    ``batch`` (steps taken this episode), ``start_step`` (the warm-start snapshot the episode
    began from), ``control_positions`` (paired reward: the batch positions the control step
    trained on, for learners that credit the kept set against it; with the trajectory control,
    ``control_reused``: its loss was known from an earlier episode's identical history) and, at the end of an
    episode, ``episode_kept_indices`` (pool indices kept).
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
        every = feature_names(world.num_labels)
        self.feature_names = list(world.feature_names or every)
        self._columns = np.asarray([every.index(n) for n in self.feature_names])
        self._raw_low, self._raw_high = feature_bounds(world.num_labels)
        if c.normalize_obs:
            self._low = np.full(len(self._columns), -NORMALIZED_CLIP, dtype=np.float32)
            self._high = -self._low
        else:
            self._low, self._high = self._raw_low[self._columns], self._raw_high[self._columns]
        self.scaler: FeatureScaler | None = None
        self._progress_column = self.feature_names.index("progress")
        self.B = c.batch_size
        if c.decision == "batch":
            self.observation_space = spaces.Box(np.tile(self._low, (self.B, 1)), np.tile(self._high, (self.B, 1)),
                                                dtype=np.float32)
            self.action_space = spaces.MultiBinary(self.B)
        else:
            self.observation_space = spaces.Box(self._low, self._high, dtype=np.float32)
            self.action_space = spaces.Discrete(2)
        self.steps_per_episode = c.episode_steps
        self.precision = resolve_precision(c.precision, self.device)
        self.student = world.new_student()
        self.distiller = None
        objective = c.kd_objective()
        self._hard_weight = float(objective.get("hard_ce", 0.0))
        self._soft_weight = float(sum(w for k, w in objective.items() if k != "hard_ce")) or 1.0
        self._head_grad: torch.Tensor | None = None
        # paired_control="trajectory": the control student and its distiller, and the current gap
        self._control: tuple[torch.nn.Module, Distiller] | None = None
        self._last_control: np.ndarray | None = None  # the last paired step's control positions (info)
        self._gap = 0.0
        # the trajectory control's history digest this episode, the steps it has skipped (their
        # divergence was known) and every known (history digest -> control loss)
        self._control_key = ""
        self._control_pending: list[tuple] = []
        self._control_memo: dict[str, float] = {}
        self._control_reused = False
        self._resets = 0
        self.start_step = 0
        self._rng_state: torch.Tensor | None = None
        self._cuda_rng_state: torch.Tensor | None = None
        self._order: np.ndarray | None = None
        self._pool_views: list[np.ndarray] | None = None  # pool_views() at the snapshots, read once
        self._batch = 0
        self._decisions: list[int] = []
        self._batch_tensors = None
        self._rows: torch.Tensor | None = None
        self._target_rows: torch.Tensor | None = None
        self._obs: np.ndarray | None = None
        self._val: dict = {}
        self._episode = {}

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._resets += 1
        fresh = self.distiller is None or self.config.student_reset == "episode"
        from_snapshot = False
        generator = torch.Generator().manual_seed(int(self.np_random.integers(2 ** 62)))
        self._rng_state = generator.get_state()
        self._cuda_rng_state = None
        if fresh:
            self.student.load_state_dict(self.world.student_template.state_dict())
            with self._private_rng():
                self.distiller = self.world.new_distiller(self.student)
            self.start_step = 0
            if self.config.normalize_obs and self.scaler is None:
                self.scaler = self.feature_scaler()
                self.student.load_state_dict(self.world.student_template.state_dict())
                with self._private_rng():
                    self.distiller = self.world.new_distiller(self.student)
            snapshots = self.world.snapshots()
            if snapshots:
                wanted = (options or {}).get("snapshot")
                steps = [s for s, _ in snapshots]
                if wanted is None:
                    index = int(self.np_random.integers(len(snapshots)))
                elif wanted in steps:
                    index = steps.index(wanted)
                else:
                    raise ValueError(f"reset(options={{'snapshot': {wanted!r}}}): no snapshot at that step; the "
                                     f"world has {steps} (snapshot_steps)")
                self.start_step, state = snapshots[index]
                self.distiller.load_training_state(state)
                from_snapshot = True
        if self.config.reward == "paired" and self.config.paired_control == "trajectory":
            if self._control is None:
                student = self.world.new_student()
                with self._private_rng():
                    self._control = (student, self.world.new_distiller(student))
            self._control[1].load_training_state(self.distiller.training_state())
            self._gap = 0.0
            # a control from a snapshot can repeat another episode's; any other start is its own
            self._control_key = f"snapshot {self.start_step}" if from_snapshot else f"reset {self._resets}"
            self._control_pending = []
        self._order = self._episode_order()
        self._batch = 0
        self._decisions = []
        self._episode = {"kept_total": 0, "candidates_seen": 0, "kept": []}
        self._val = self._validate(head=self.config.observations)
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
            obs = np.zeros(self.observation_space.shape, dtype=np.float32)
            obs[..., self._progress_column] = self._high[self._progress_column]
        else:
            self._start_batch()
            obs = self._current_obs()
        info = self._info(updated=updated, kept=int(keep.sum()), terms=terms)
        info["decided_rows"] = decided
        if self._last_control is not None:
            info["control_positions"] = self._last_control.tolist()
            if self.config.paired_control == "trajectory":
                info["control_reused"] = self._control_reused
        if terminated:
            info["episode_kept_indices"] = list(self._episode["kept"])
        return obs, float(reward), terminated, False, info

    @property
    def batch_rows(self) -> np.ndarray:
        """(B,) pool indices of the candidates the next action decides (oracle policies and
        diagnostics read it; an agent should act on the observation)."""
        if self._rows is None:
            raise RuntimeError("call reset() first")
        return self._rows.numpy().copy()

    def close(self) -> None:
        self._batch_tensors = None

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
        n, used = self.world.num_candidates, self.steps_per_episode * self.B
        order = np.concatenate([self.np_random.permutation(n) for _ in range(max(1, -(-used // n)))])
        if not self.config.length_bucketing:
            return order
        lengths = self.world.lengths
        bucket = 8 * self.B
        batches = []
        for start in range(0, used, bucket):
            chunk = order[start:min(start + bucket, used)]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.B] for i in range(0, len(chunk), self.B)]
        batches = [batches[i] for i in self.np_random.permutation(len(batches))]
        return np.concatenate(batches + [order[used:]])

    def _start_batch(self) -> None:
        """Draw the batch's target examples and compute the candidates' observation (an eval-mode
        pass of the student; the step runs its own training-mode passes; zeros without
        ``observations``)."""
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
        if not self.config.observations:
            self._obs = np.zeros((self.B, len(self._columns)), dtype=np.float32)
            return
        progress = self._batch / self.steps_per_episode
        self._obs = self._raw_features(self._rows, self._batch_tensors, progress)
        if self.scaler is not None:
            self._obs = self.scaler(self._obs)

    def _raw_features(self, rows: torch.Tensor, batch: dict, progress: float) -> np.ndarray:
        """(B, F) the unscaled features of candidates ``rows`` (``batch``: their tensors) for the
        current student."""
        logits, head_inputs = self._student_view(batch)
        labels = torch.as_tensor(self.world.pool.labels)[rows]
        teacher = self.world.cache.logits[rows].float()
        grads = logit_gradients(logits, teacher, labels, self._hard_weight, self._soft_weight)
        influence = head_influence(self._head_grad, grads, head_inputs) if head_inputs is not None \
            else torch.zeros(len(rows))
        return observation(self.world.static, rows, logits, labels, progress, influence, self._raw_low,
                           self._raw_high)[:, self._columns]

    def pool_observations(self, snapshot: int | None = None) -> np.ndarray:
        """(N, F) the observation row of every candidate of the pool (scaled like the episodes'
        observations, ``progress`` at mid-episode) for the student at warm-start snapshot step
        ``snapshot`` (None: the current student), without training: what a selector scores for
        its final selection. Loading a snapshot replaces the current student; ``reset()`` before
        stepping again."""
        if self.distiller is None:
            self.reset(seed=int(self.config.seed))
        if snapshot is not None:
            states = dict(self.world.snapshots())
            if snapshot not in states:
                raise ValueError(f"no snapshot at step {snapshot}; the world has {sorted(states)} (snapshot_steps)")
            self.distiller.load_training_state(states[snapshot])
            self.start_step = snapshot
        self._val = self._validate()
        rows_all = np.arange(self.world.num_candidates)
        parts = []
        for start in range(0, len(rows_all), self.B):
            rows = torch.as_tensor(rows_all[start:start + self.B])
            parts.append(self._raw_features(rows, self.world.encoded.batch(rows, self.device), 0.5))
        raw = np.concatenate(parts)
        self._order = None  # the episode's batch is gone: step() needs a reset first
        return self.scaler(raw) if self.scaler is not None else raw

    def pool_views(self) -> list[np.ndarray]:
        """The pool's (N, F) observation rows (:meth:`pool_observations`) at every warm-start
        snapshot, or at the current student without snapshots: what a selector's final selection
        scores (:meth:`augrl.selection.budgeted.BudgetedSelector.pool_scores` averages them).
        ``reset()`` before stepping again. The snapshots do not change, so their views are read
        once per env (a search that scores rules on them and the final selection share the read);
        without snapshots the current student is read every call."""
        steps = [step for step, _ in self.world.snapshots()]
        if not steps:
            return [self.pool_observations()]
        if self._pool_views is None:
            self._pool_views = [self.pool_observations(snapshot=step) for step in steps]
        return [view.copy() for view in self._pool_views]

    def feature_scaler(self) -> FeatureScaler:
        """The world's :class:`FeatureScaler`: each feature's mean and std over up to 512 pool
        candidates (a fixed seeded sample) under every warm-start state (the initial student
        without snapshots); measured once and kept in the world. Leaves the student at the last
        state it loaded: call it before choosing the episode's state."""
        c = self.config
        key = ("feature_scaler", tuple(c.snapshot_steps or ()), c.lr, c.weight_decay, c.grad_clip, c.batch_size,
               c.target_batch_size, tuple(self.feature_names))
        store = self.world.snapshot_store
        if key not in store:
            rng = np.random.default_rng([int(self.config.seed) & 0xFFFFFFFF, 31])
            sample = np.sort(rng.choice(self.world.num_candidates, size=min(512, self.world.num_candidates),
                                        replace=False))
            states = [state for _, state in self.world.snapshots()] or [None]
            rows_seen = []
            for state in states:
                if state is not None:
                    self.distiller.load_training_state(state)
                self._validate()
                for start in range(0, len(sample), self.B):
                    rows = torch.as_tensor(sample[start:start + self.B])
                    rows_seen.append(self._raw_features(rows, self.world.encoded.batch(rows, self.device), 0.5))
            raw = np.concatenate(rows_seen)
            scaler = FeatureScaler.fit(raw)
            j = self._progress_column
            scaler.mean[j], scaler.std[j] = 0.5, float(np.sqrt(1 / 12))
            store[key] = scaler
        return store[key]

    @torch.no_grad()
    def _student_view(self, batch: dict, fp32: bool = False,
                      student: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The student's (default: the episode's) eval-mode logits (B, C) on ``batch`` and what
        its classification head reads (B, H), or None for a student without a linear
        ``classifier``; ``fp32``: without the env's bf16 autocast."""
        student = self.student if student is None else student
        head = getattr(student, "classifier", None)
        seen: list[torch.Tensor] = []
        hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach())) \
            if isinstance(head, torch.nn.Linear) else None
        was_training = student.training
        student.eval()
        try:
            with contextlib.nullcontext() if fp32 else self._autocast():
                logits = student(**models.model_inputs(student, batch)).logits.float().cpu()
        finally:
            if hook is not None:
                hook.remove()
            student.train(was_training)
        return logits, (seen[0].float().cpu() if seen else None)

    def _current_obs(self) -> np.ndarray:
        if self.config.decision == "batch":
            return self._obs.copy()
        row = self._obs[len(self._decisions)].copy()
        progress = (self._batch * self.B + len(self._decisions)) / (self.steps_per_episode * self.B)
        if self.scaler is not None:
            j = self._progress_column
            progress = np.clip((progress - self.scaler.mean[j]) / self.scaler.std[j], -NORMALIZED_CLIP, NORMALIZED_CLIP)
        row[self._progress_column] = progress
        return row

    def _distil(self, keep: np.ndarray) -> tuple[float, bool, dict]:
        """One distillation step on the kept candidates and the target rows; the reward.

        ``paired``: the same step is first taken on a random subset of the batch of the kept
        set's size, from the same training state and random state (so the target rows get the
        same dropout masks), its validation divergence measured, and the state restored; then
        the kept step is taken and the episode goes on from it. The target rows come first in
        the step, so both steps draw their masks identically.
        """
        positions = np.flatnonzero(keep)
        n_kept, n_target = len(positions), len(self._target_rows)
        self._last_control = None
        if n_kept + n_target == 0:
            return 0.0, False, {}
        before = self._val
        if self.config.step_seeds:
            self._rng_state = torch.Generator().manual_seed(int(self.np_random.integers(2 ** 62))).get_state()
            self._cuda_rng_state = None
        if self.config.reward == "paired" and self.config.paired_control == "trajectory":
            rng = self._random_state()
            self._last_control = self._control_positions(keep, n_kept)
            loss_control = self._control_step(self._rows[torch.as_tensor(self._last_control, dtype=torch.long)])
            self._rng_state, self._cuda_rng_state = rng
            terms = self._step_on(positions)
            self._val = self._validate(head=self.config.observations)
            gap = loss_control - self._paired_loss(self._val)
            reward, self._gap = gap - self._gap, gap
        elif self.config.reward == "paired":
            state, rng = self.distiller.training_state(), self._random_state()
            control = self._last_control = self._control_positions(keep, n_kept)
            self._step_on(control)
            loss_control = self._paired_loss(self._validate(head=False))
            self.distiller.load_training_state(state)
            self._rng_state, self._cuda_rng_state = rng
            terms = self._step_on(positions)
            self._val = self._validate(head=self.config.observations)
            reward = loss_control - self._paired_loss(self._val)
        else:
            terms = self._step_on(positions)
            self._val = self._validate(head=self.config.observations)
            if self.config.reward == "metric":
                reward = self._val["val_metric"] - before["val_metric"]
            else:
                reward = before["val_loss"] - self._val["val_loss"]
        return float(reward), True, terms

    def _random_state(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Copies of the env's CPU and CUDA random states, to give the kept step the control's
        dropout draws on either device."""
        cuda = None if self._cuda_rng_state is None else self._cuda_rng_state.clone()
        return self._rng_state.clone(), cuda

    def _control_step(self, rows: torch.Tensor) -> float:
        """The trajectory control's step on the target rows and candidates ``rows`` (pool
        indices) from the current random state, and its paired loss after it. The control's
        state is a function of where the episode began and of every (target rows, candidate
        rows, random state) it stepped on, so a history seen before reuses that loss; the
        skipped steps are replayed only if the history later leaves the known ones."""
        step = (self._target_rows.clone(), rows.clone(), *self._random_state())
        digest = hashlib.sha1(self._control_key.encode())
        for part in step:
            if part is not None:
                digest.update(part.numpy().tobytes())
        self._control_key = digest.hexdigest()
        self._control_reused = self._control_key in self._control_memo
        if self._control_reused:
            self._control_pending.append(step)
            return self._control_memo[self._control_key]
        student, distiller = self._control
        rng, cuda_rng = self._rng_state, self._cuda_rng_state
        for target_rows, candidate_rows, rng_state, cuda_state in self._control_pending + [step]:
            self._rng_state, self._cuda_rng_state = rng_state, cuda_state
            self._step_rows(target_rows, candidate_rows, distiller)
        self._rng_state, self._cuda_rng_state = rng, cuda_rng
        self._control_pending = []
        loss = self._paired_loss(self._validate(head=False, student=student))
        self._control_memo[self._control_key] = loss
        return loss

    def _paired_loss(self, validation: dict) -> float:
        """What the paired reward compares (``paired_target``): the divergence from the teacher
        on the reward set, or the validation set's loss to its gold labels."""
        return validation["val_loss" if self.config.paired_target == "labels" else "val_divergence"]

    def _control_positions(self, keep: np.ndarray, size: int) -> np.ndarray:
        """The paired reward's control: ``size`` positions of the batch (``paired_control``)."""
        if self.config.paired_control in ("random", "trajectory"):
            return np.sort(self.np_random.choice(self.B, size=size, replace=False))
        dropped, kept = np.flatnonzero(~keep.astype(bool)), np.flatnonzero(keep)
        if size <= len(dropped):
            return np.sort(self.np_random.choice(dropped, size=size, replace=False))
        extra = self.np_random.choice(kept, size=size - len(dropped), replace=False)
        return np.sort(np.concatenate([dropped, extra]))

    def _step_on(self, positions: np.ndarray, distiller: Distiller | None = None) -> dict:
        """One step of ``distiller`` (default: the episode's) on the target rows and the batch's
        candidates at ``positions``."""
        return self._step_rows(self._target_rows, self._rows[torch.as_tensor(positions, dtype=torch.long)], distiller)

    def _step_rows(self, target_rows: torch.Tensor, rows: torch.Tensor, distiller: Distiller | None = None) -> dict:
        """One step of ``distiller`` (default: the episode's) on ``target_rows`` then candidates
        ``rows`` (pool indices), with the env's random state."""
        parts = []
        if len(target_rows):
            parts.append((self.world.encoded.batch(target_rows, self.device), None))
        if len(rows):
            parts.append((self.world.encoded.batch(rows, self.device), None))
        with self._private_rng(), self._autocast():
            return (distiller or self.distiller).step_parts(parts, self.world.cache)

    @torch.no_grad()
    def _validate(self, head: bool = True, student: torch.nn.Module | None = None) -> dict:
        """The student's (default: the episode's; else ``student``) metric, loss, divergence from
        the teacher and agreement with it on the reward's validation set (eval mode, fp32 for the
        paired reward); with ``head``, also the validation gradient at the classification head
        that the ``head_influence`` feature reads."""
        extra = self.world.reward_extra
        unlabelled_only = self.config.reward == "paired" and self.config.reward_on == "unlabelled"
        if unlabelled_only and not head:  # the paired control: only its divergence is read
            return {"val_divergence": self._extra_divergence(student)}
        val = self.world.val
        logits, inputs = torch.empty(len(val), self.world.num_labels), []
        for idx in length_batches(val, self.config.val_batch_size):
            out, h = self._student_view(val.batch(idx, self.device), fp32=self.config.reward == "paired",
                                        student=student)
            logits[torch.tensor(idx)] = out
            inputs.append((idx, h))
        labels = val.labels
        teacher = self.world.val_teacher_logits
        metrics = compute_metrics(logits.numpy(), labels.numpy(), self.task_spec.num_labels)
        if self.task_spec.is_regression:
            loss = float(torch.nn.functional.mse_loss(logits[:, 0], labels.float()))
            divergence = self._divergence(logits, teacher)
            agreement = float(np.corrcoef(logits[:, 0].numpy(), teacher[:, 0].numpy())[0, 1]) \
                if len(labels) > 1 and logits.std() > 0 and teacher.std() > 0 else 0.0
        else:
            loss = float(torch.nn.functional.cross_entropy(logits, labels))
            divergence = self._divergence(logits, teacher)
            agreement = float((logits.argmax(-1) == teacher.argmax(-1)).float().mean())
        if head and inputs and inputs[0][1] is not None:
            h = torch.empty(len(val), inputs[0][1].shape[-1])
            for idx, part in inputs:
                h[torch.tensor(idx)] = part
            self._head_grad = head_gradient(logit_gradients(logits, teacher, None, 0.0, 1.0), h)
        if unlabelled_only:
            divergence = self._extra_divergence(student)
        elif extra is not None and self.config.reward == "paired":
            # the teacher-labelled unlabelled texts join the divergence (weighted by their count)
            divergence = (divergence * len(val) + self._extra_divergence(student) * len(extra)) / (len(val) + len(extra))
        metric = metrics[self.task_spec.metric]
        return {"val_metric": 0.0 if np.isnan(metric) else float(metric), "val_loss": loss,
                "val_divergence": divergence, "val_teacher_agreement": agreement, "val_metrics": metrics}

    def _extra_divergence(self, student: torch.nn.Module | None = None) -> float:
        """KL(teacher || student) on the world's ``reward_unlabelled`` texts (eval mode, fp32),
        read in length-grouped batches (in their own order, padded to each batch's longest text,
        the pass over 200 RT texts took 1.08 s instead of 0.70 s: ``scripts/bench_reward_passes.py``,
        one thread, fp32 student on an AVX2 CPU, load 1)."""
        extra = self.world.reward_extra
        logits = torch.empty(len(extra), self.world.num_labels)
        for idx in length_batches(extra, self.config.val_batch_size):
            logits[torch.tensor(idx)] = self._student_view(extra.batch(idx, self.device), fp32=True, student=student)[0]
        return self._divergence(logits, self.world.reward_extra_teacher_logits)

    def _divergence(self, logits: torch.Tensor, teacher: torch.Tensor) -> float:
        """Mean KL(teacher || student) over rows of (N, C) logits (regression: squared error)."""
        if self.task_spec.is_regression:
            return float(torch.nn.functional.mse_loss(logits[:, 0], teacher[:, 0]))
        log_t = torch.log_softmax(teacher, -1)
        return float((log_t.exp() * (log_t - torch.log_softmax(logits, -1))).sum(-1).mean())

    def _info(self, updated: bool, kept: int, terms: dict) -> dict:
        return {"updated": updated, "kept": kept, "kept_fraction": kept / self.B,
                "kept_total": self._episode["kept_total"], "candidates_seen": self._episode["candidates_seen"],
                "batch": self._batch, "start_step": self.start_step, "loss_terms": dict(terms),
                **{k: dict(v) if isinstance(v, dict) else v for k, v in self._val.items()}}

    # ------------------------------------------------------------------ conveniences

    @classmethod
    def from_world(cls, world: KDWorld, **changes: Any) -> "AugmentKDEnv":
        """An env on a shared world with some decision-process settings changed (``decision``,
        ``reward``, ``batch_size``, ``target_batch_size``, ``student_reset``, ``lr``...).
        Settings that decide the world itself (task, pool, teacher...) cannot change here."""
        return cls(world=world.with_settings(**changes))
