"""The static part of an augmentation-for-distillation environment, built once and shared.

A :class:`KDWorld` holds what no action changes: the split, the fine-tuned frozen teacher's
outputs on every candidate (computed once, :class:`~augrl.kd.TeacherCache`), the candidate
pool, the per-candidate features that depend on the teacher alone, the reward's validation
set with the teacher's outputs on it, and the student's initial weights. Several environments
(a ``DummyVecEnv``, the L2A selector's episodes, a policy's evaluation) can share one world;
each keeps its own student.

Index layout of :attr:`KDWorld.data` (one encoded set, one teacher cache): rows
``0 .. N-1`` are the pool's candidates, rows ``N .. N+T-1`` the target few-shot train set.
"""

from __future__ import annotations

import copy
import hashlib
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from augrl import baselines, models
from augrl.artifacts import texts_fingerprint
from augrl.augmented import encode_pool
from augrl.batching import Encoded, encode, predict
from augrl.errors import ConfigError
from augrl.kd.cache import TeacherCache
from augrl.kd.distiller import Distiller
from augrl.kd.outputs import Needs
from augrl.kd.stored_outputs import teacher_outputs
from augrl.pipelines import Prepared, build_configured_student, build_distiller, prepare
from augrl.pool import CandidatePool, build_pool, stored_pool, stratified_indices
from augrl.teachers import obtain_teacher

from .config import AugmentKDConfig
from .features import centroid_cosine_distance, feature_names, max_cosine_similarity, static_columns, static_features


@dataclass
class KDWorld:
    """Everything an episode reads and never writes.

    Attributes:
        config: the environment's settings.
        data: the prepared split (tokenizer, train / val / test encodings, device).
        teacher: the fine-tuned teacher (frozen).
        pool: the candidates.
        encoded: (N + T) candidates then target train examples, tokenised.
        cache: the teacher's outputs on ``encoded`` (logits, and the layers the objective reads).
        static: per-candidate features that depend on the teacher alone (see
            :func:`augrl.envs.features.static_features`), N rows each.
        val: the reward's validation examples; ``val_teacher_logits`` (V, C) the teacher's
            outputs on them, ``val_repr`` (V, H) its sentence representations.
        student_template: the student's initial weights (copied into each env).
        teacher_info: how the teacher was obtained (cached or trained, validation metrics).
        timings: seconds spent building each part.
        feature_names: the observation's features (:mod:`augrl.envs.features`) minus
            ``dropped_features``, those that depend on the teacher alone and are constant over
            this pool.
        snapshot_store: the warm-start snapshots, built on first use (:meth:`snapshots`).
        reward_extra: unlabelled target texts (``config.reward_unlabelled`` of ``Task.unlabelled``)
            added to the paired reward's divergence set, with the teacher's logits
            ``reward_extra_teacher_logits`` (U, C); ``reward_set`` records the set's sizes.
    """

    config: AugmentKDConfig
    data: Prepared
    teacher: torch.nn.Module
    pool: CandidatePool
    encoded: Encoded
    cache: TeacherCache
    static: dict[str, torch.Tensor]
    val: Encoded
    val_teacher_logits: torch.Tensor
    student_template: torch.nn.Module
    teacher_info: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    feature_names: list = field(default_factory=list)
    dropped_features: list = field(default_factory=list)
    val_repr: torch.Tensor | None = None
    snapshot_store: dict = field(default_factory=dict)
    reward_extra: Encoded | None = None
    reward_extra_teacher_logits: torch.Tensor | None = None
    reward_set: dict = field(default_factory=dict)

    @property
    def lengths(self) -> np.ndarray:
        """(N,) token count of each candidate."""
        return np.array([len(ids) for ids in self.encoded.input_ids[: len(self.pool)]])

    @property
    def num_candidates(self) -> int:
        return len(self.pool)

    @property
    def num_target(self) -> int:
        return len(self.data.train)

    @property
    def num_labels(self) -> int:
        return self.data.task.spec.num_labels

    def new_student(self) -> torch.nn.Module:
        """A fresh copy of the student at its initial weights, on the world's device."""
        return copy.deepcopy(self.student_template).to(self.data.device)

    def new_distiller(self, student: torch.nn.Module) -> Distiller:
        """A distiller for ``student`` with the configured objective and a constant learning rate."""
        return build_distiller(self.config, student, self.data.device, None, teacher=self.cache,
                               train=self.config.step_train())

    def with_settings(self, **changes) -> "KDWorld":
        """This world (its split, teacher outputs, pool, snapshots, all shared) under other
        decision-process settings (:class:`~augrl.sections.EnvConfig`: ``decision``, ``reward``,
        ``episode_length``...); the other sections decide the world and cannot change here."""
        world_fields = self.config.world_fields()
        bad = sorted(k for k in changes if k in world_fields and changes[k] != getattr(self.config, k))
        if bad:
            raise ConfigError(f"{bad} decide the world (pool, teacher, split); build a new world to change them")
        if not changes:
            return self
        return KDWorld(**{**self.__dict__, "config": self.config.replace(**changes)})

    def snapshots(self, progress: bool = False) -> list[tuple[int, dict]]:
        """``(step, Distiller.training_state())`` of a student trained with the environment's own
        step on every candidate, at each step of ``config.snapshot_steps`` (built once per world
        and cached on disk: :func:`build_snapshots`); ``[]`` when the schedule is empty."""
        c = self.config
        schedule = tuple(c.snapshot_steps or ())
        # worlds that share this store (with_settings) may train with other step settings
        key = (schedule, c.lr, c.weight_decay, c.grad_clip, c.batch_size, c.target_batch_size)
        if key not in self.snapshot_store:
            self.snapshot_store[key] = build_snapshots(self, schedule, progress) if schedule else []
        return self.snapshot_store[key]


def sentence_representation(model, out, batch) -> torch.Tensor:
    """(B, H) what ``model``'s classifier reads: the masked mean of the last layer for the mean-pool
    head, the ``[CLS]`` state otherwise."""
    last = [h for h in out.hidden_states if h is not None][-1]
    if isinstance(model, models.MeanPoolClassifier):
        return models.masked_mean(last, batch["attention_mask"])
    return last[:, 0]


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"[augrl env] {message}", file=sys.stderr, flush=True)


def stratified_subset(labels: np.ndarray, k: int, seed: int, classification: bool) -> np.ndarray:
    """``k`` sorted row indices, class-balanced for classification, seeded
    (:func:`augrl.pool.stratified_indices` with its own stream of ``seed``)."""
    return np.sort(stratified_indices(labels, k, np.random.default_rng([int(seed) & 0xFFFFFFFF, 11]), classification))


def build_world(config: AugmentKDConfig, progress: bool = False, data: Prepared | None = None,
                teacher: torch.nn.Module | None = None, augmenter=None, pool: CandidatePool | None = None) -> KDWorld:
    """Load the split, get the fine-tuned teacher, draw the pool and run the teacher over it once.

    Args:
        config: the settings.
        progress: report each stage on stderr (and the teacher's training bar).
        data, teacher, augmenter, pool: ready parts to use instead of building them (a pool
            given must come from ``data``'s task).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    run = config.run_config()
    if data is None:
        _log(progress, f"loading task {config.task!r} (shots={config.shots}, seed={config.seed})")
        data = prepare(run)
    spec = data.task.spec
    timings["data_s"] = time.perf_counter() - start

    t = time.perf_counter()
    info: dict = {}
    if teacher is None:
        if not config.teacher_dir:
            _log(progress, "fine-tuned teacher (trained once per split, then cached)")
        teacher, info = obtain_teacher(run, data, config.teacher_dir, progress=progress)
    teacher.eval()
    timings["teacher_s"] = time.perf_counter() - t

    t = time.perf_counter()
    if pool is None and augmenter is not None:
        _log(progress, f"drawing a pool of {config.pool_size} candidates")
        pool = build_pool(data.task, augmenter, config.pool_size, config.variants, config.source_fraction,
                          seed=config.seed)
    elif pool is None:
        def fitted():
            _log(progress, f"fitting augmenter {config.augmenter!r} and drawing a pool of {config.pool_size} candidates")
            return baselines.get(config.augmenter, **config.augmenter_params).fit(data.task)

        pool, stored = stored_pool(data.task, config.augmenter, config.augmenter_params, config.pool_size,
                                   config.variants, config.source_fraction, config.seed, fitted)
        if stored:
            _log(progress, f"the pool of {config.pool_size} candidates, drawn before (augrl cache)")
    if len(pool) < config.batch_size:
        raise ConfigError(f"the pool holds {len(pool)} candidates, fewer than batch_size={config.batch_size}")
    timings["pool_s"] = time.perf_counter() - t

    t = time.perf_counter()
    _log(progress, "teacher outputs on the pool (computed once)")
    candidates = encode_pool(pool, data, config.max_length)
    encoded = Encoded.concat([candidates, data.train])
    template = build_configured_student(run, spec.num_labels)
    if config.freeze_embeddings:
        models.freeze_word_embeddings(template)
    probe = build_distiller(run, template, "cpu", None, teacher=teacher)
    probe.check_tokens(encoded)
    top = Needs.of(hidden_states=[models.layer_count(teacher)])

    def representation(out, batch):
        return {"repr": sentence_representation(teacher, out, batch)}

    batch_size = run.teacher_train.eval_batch_size
    extras = ("sentence_representation", representation, top)
    cache = teacher_outputs(teacher, encoded, probe.teacher_needs(), batch_size, data.device, extras=extras)
    # the originals' representations, one pass per distinct original
    first = {}
    for i, o in enumerate(pool.origin_ids.tolist()):
        first.setdefault(o, i)
    distinct = sorted(first)
    originals = encode(pool.subset([first[o] for o in distinct]).originals_columns(spec.text_fields), data.tokenizer,
                       spec, config.max_length)
    orig_cache = teacher_outputs(teacher, originals, Needs(), batch_size, data.device, extras=extras)
    position = {o: k for k, o in enumerate(distinct)}
    orig_repr = orig_cache.extras["repr"][[position[o] for o in pool.origin_ids.tolist()]]
    cand_repr = cache.extras["repr"][: len(pool)]
    distance = 1.0 - torch.nn.functional.cosine_similarity(cand_repr, orig_repr, dim=-1)
    words = torch.tensor([max(1, sum(len(s.split()) for s in ((o,) if isinstance(o, str) else o)))
                          for o in pool.origins], dtype=torch.float32)

    val = data.val
    if config.val_size is not None and config.val_size < len(val):
        rows = stratified_subset(val.labels.numpy(), config.val_size, config.seed, not spec.is_regression)
        val = val.subset(rows)
    val_cache = teacher_outputs(teacher, val, Needs(), batch_size, data.device, extras=extras)
    val_teacher_logits, val_repr = val_cache.logits.float(), val_cache.extras["repr"].float()
    extra, extra_logits = None, None
    unlabelled = getattr(data.task, "unlabelled", None)
    if config.reward_unlabelled:
        available = 0 if unlabelled is None else len(unlabelled)
        if available < config.reward_unlabelled:
            raise ConfigError(f"reward_unlabelled={config.reward_unlabelled}, but task {spec.name!r} keeps "
                              f"{available} unlabelled target texts; use reward_unlabelled <= {available}")
        extra = encode(unlabelled.select(range(config.reward_unlabelled)), data.tokenizer, spec, config.max_length)
        extra_logits = predict(teacher, extra, batch_size, data.device).float()
    reward_set = {"val": len(val), "unlabelled": 0 if extra is None else len(extra),
                  "unlabelled_index_hash": data.task.meta.get("index_hash", {}).get("unlabelled")}
    max_cosine, centroid_distance = max_cosine_similarity(cand_repr, val_repr), centroid_cosine_distance(cand_repr, val_repr)
    lengths = torch.tensor([len(ids) for ids in candidates.input_ids], dtype=torch.float32)
    static = static_features(cache.logits[: len(pool)], torch.as_tensor(pool.labels), distance,
                             torch.as_tensor(pool.edit_fraction), torch.as_tensor(pool.logprob) / words,
                             torch.as_tensor(pool.is_source), max_cosine, centroid_distance, lengths)
    columns = static_columns(static, spec.num_labels)
    dropped = [name for name, col in columns.items() if len(col) < 2 or float(col.float().std()) < 1e-6]
    names = [name for name in feature_names(spec.num_labels) if name not in dropped]
    timings["teacher_outputs_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start
    _log(progress, f"world ready in {timings['total_s']:.1f}s: {len(pool)} candidates, {len(data.train)} target, "
                   f"{len(val)} validation; {len(names)} features ({len(dropped)} constant over the pool dropped)")
    return KDWorld(config, data, teacher, pool, encoded, cache, static, val, val_teacher_logits, template.cpu(),
                   info, {k: round(v, 2) for k, v in timings.items()}, names, dropped, val_repr, {}, extra,
                   extra_logits, reward_set)


# ----------------------------------------------------------------------------- warm starts


def _tensor_digest(tensors: Iterable[torch.Tensor]) -> str:
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def snapshot_key(world: KDWorld, schedule: Sequence[int]) -> dict:
    """What decides a world's snapshots: the student's initial weights, the encoded candidates and
    target rows with their labels, the teacher's outputs on them, and the step's settings."""
    c = world.config
    return {"student": _tensor_digest(world.student_template.state_dict().values()),
            "rows": texts_fingerprint([list(ids) for ids in world.encoded.input_ids], world.encoded.labels.tolist()),
            "teacher": _tensor_digest([world.cache.logits]),
            "teacher_dir": world.teacher_info.get("dir"),
            "settings": {k: getattr(c, k) for k in ("objective", "loss_params", "temperature", "layer_map", "lr",
                                                   "weight_decay", "grad_clip", "batch_size", "target_batch_size",
                                                   "freeze_embeddings", "seed")},
            "schedule": [int(s) for s in schedule]}


def train_snapshots(world: KDWorld, schedule: Sequence[int], progress: bool = False) -> list[tuple[int, dict]]:
    """Train a fresh student with the environment's step keeping every candidate: each step
    takes the next B candidates of a seeded shuffle of the pool (reshuffled when it runs out)
    and ``target_batch_size`` target rows; return its training state at each scheduled step.
    Seeded by ``config.seed``; runs under its own torch random state."""
    from tqdm.auto import tqdm

    c = world.config
    last = max(schedule)
    rng = np.random.default_rng([int(c.seed) & 0xFFFFFFFF, 29])
    states: list[tuple[int, dict]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(c.seed) * 1_000_003 + 29)
        student = world.new_student()
        distiller = world.new_distiller(student)
        if 0 in schedule:
            states.append((0, distiller.training_state()))
        order, pos = rng.permutation(world.num_candidates), 0
        for step in tqdm(range(1, last + 1), desc="warm-start snapshots", unit="step", disable=not progress,
                         file=sys.stderr, leave=False):
            if pos + c.batch_size > len(order):
                order, pos = rng.permutation(world.num_candidates), 0
            rows = torch.as_tensor(order[pos:pos + c.batch_size])
            pos += c.batch_size
            parts = []
            if c.target_batch_size:
                picks = rng.choice(world.num_target, size=min(c.target_batch_size, world.num_target), replace=False)
                parts.append((world.encoded.batch(torch.as_tensor(world.num_candidates + np.sort(picks)),
                                                  world.data.device), None))
            parts.append((world.encoded.batch(rows, world.data.device), None))
            distiller.step_parts(parts, world.cache)
            if step in schedule:
                states.append((step, distiller.training_state()))
    return states


def build_snapshots(world: KDWorld, schedule: Sequence[int], progress: bool = False) -> list[tuple[int, dict]]:
    """:func:`train_snapshots`, through the artifact store (kind ``env-snapshots``, keyed by
    :func:`snapshot_key`): built once, then loaded."""
    from augrl.artifacts import cached_build

    built: dict = {}

    def build(tmp):
        _log(progress, f"warm-start snapshots at steps {list(schedule)} (trained once, then cached)")
        t = time.perf_counter()
        built["states"] = train_snapshots(world, schedule, progress)
        models.save_torch({"steps": [s for s, _ in built["states"]], "states": [st for _, st in built["states"]]},
                          tmp / "snapshots.pt")
        return {"steps": [s for s, _ in built["states"]], "seconds": round(time.perf_counter() - t, 2)}

    folder, meta = cached_build("env-snapshots", f"{world.data.task.spec.name}-seed{world.config.seed}",
                                snapshot_key(world, schedule), build)
    world.timings["snapshots_s"] = meta.get("seconds")
    if "states" in built:
        return built["states"]
    saved = models.load_torch(folder / "snapshots.pt", map_location=world.data.device)
    return list(zip(saved["steps"], saved["states"]))
