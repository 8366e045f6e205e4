"""Distillation on the target few-shot set plus augmented candidates.

What every "KD with augmentation" result is made of: the benchmark's ``kd+<augmenter>`` rows,
the evaluation of a trained keep/drop policy (a fresh student distilled on the candidates the
policy kept, against keep-all and keep-at-random), and L2A's final student.

The frozen teacher's outputs on the training set (target examples first, then the kept
candidates) are computed once (:class:`~augrl.kd.TeacherCache`), the student is trained on the
run's KD objective with model selection on validation, exactly as ``augrl distill --method kd``
does on the target set alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from augrl import models
from augrl.batching import Encoded, encode
from augrl.kd.stored_outputs import teacher_outputs
from augrl.kd.distiller import Distiller
from augrl.pipelines import Prepared, RunConfig, build_configured_student, build_distiller
from augrl.pool import CandidatePool
from augrl.runtime import seed_everything, stage
from augrl.training import FitResult, fit, total_steps


def encode_pool(pool: CandidatePool, data: Prepared, max_length: int | None = None) -> Encoded:
    """Tokenise a pool's candidates with the run's tokenizer."""
    spec = data.task.spec
    return encode(pool.columns(spec.text_fields), data.tokenizer, spec, max_length or 128)


def augmented_train_set(data: Prepared, pool: CandidatePool | None = None, keep: Sequence[int] | None = None,
                        max_length: int = 128) -> tuple[Encoded, int]:
    """The target train set followed by the kept candidates of ``pool`` (all when ``keep`` is None).

    Returns the encoded set and how many candidates it holds.
    """
    if pool is None or len(pool) == 0:
        return data.train, 0
    chosen = pool if keep is None else pool.subset(keep)
    if len(chosen) == 0:
        return data.train, 0
    return Encoded.concat([data.train, encode_pool(chosen, data, max_length)]), len(chosen)


@dataclass
class DistilledStudent:
    """A student distilled by :func:`distil_on`.

    Attributes:
        student: the model, holding the weights of its best validation epoch.
        fit: the training summary (best epoch, validation metrics, history).
        distiller: its distiller (objective, learned loss modules).
        train_size: examples trained on (target + candidates).
        candidates: candidates among them.
        cache_bytes: size of the teacher cache.
    """

    student: torch.nn.Module
    fit: FitResult
    distiller: Distiller
    train_size: int
    candidates: int
    cache_bytes: int


def distil_on(cfg: RunConfig, data: Prepared, teacher: torch.nn.Module, pool: CandidatePool | None = None,
              keep: Sequence[int] | None = None, progress: bool = True, desc: str = "student (KD)",
              objective: dict | None = None, freeze_embeddings: bool = False) -> DistilledStudent:
    """Distil a fresh student (``cfg.student``, seeded by ``cfg.seed``) from the frozen ``teacher``
    on the target train set plus the kept candidates.

    Args:
        cfg: the run: KD objective, loss options, layer map, ``student_train`` settings.
        data: the prepared split (validation selects the epoch).
        teacher: the fine-tuned teacher.
        pool, keep: the candidates and the indices kept (None: all; an empty list: none).
        objective: overrides ``cfg``'s objective.
        freeze_embeddings: keep the student's word embeddings fixed
            (:func:`augrl.models.freeze_word_embeddings`), as the environment's student does.
    """
    # the teacher runs over the target rows and the whole pool once (stored: rows keeping other
    # subsets of the pool read theirs from the same cache); the student sees the kept rows
    everything, n_candidates = augmented_train_set(data, pool, None, cfg.teacher_train.max_length)
    train, rows = everything, None
    if keep is not None:
        rows = list(range(len(data.train))) + [len(data.train) + int(k) for k in keep]
        train, n_candidates = everything.subset(rows), len(keep)
    student = build_configured_student(cfg, data.task.spec.num_labels)
    if freeze_embeddings:
        models.freeze_word_embeddings(student)
    c = cfg.student_train
    distiller = build_distiller(cfg, student, data.device, total_steps(len(train), c), teacher, objective)
    cache = teacher_outputs(teacher, everything, distiller.teacher_needs(), cfg.teacher_train.eval_batch_size,
                            data.device, cfg.cache_dtype)
    if rows is not None:
        cache = cache.select(rows)
    seed_everything(cfg.seed)
    with stage("student"):
        result = fit(student, train, data.val, data.task.spec, c, teacher=cache, device=data.device, seed=cfg.seed,
                     progress=progress, desc=desc, distiller=distiller)
    return DistilledStudent(student, result, distiller, len(train), n_candidates, cache.nbytes)
