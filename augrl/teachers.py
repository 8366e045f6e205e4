"""Fine-tuned teachers, trained once per split and kept in the on-disk cache.

The environment, the benchmark, the policy evaluation and every Ray trial of a seed need the
same teacher: the encoder fine-tuned on that seed's few-shot target set. Fine-tuning MiniLM
takes about a minute on a 2-core CPU, so the result is stored in the augrl cache
(:mod:`augrl.artifacts`, kind ``teacher``) under a key made of everything that decides
it: the task, the rows and texts of the split, the encoder, the training settings and the
seed. A change of any of them trains a new teacher; otherwise the saved one is loaded.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from augrl import models
from augrl.artifacts import cached_build, dataset_fingerprint
from augrl.batching import Encoded
from augrl.pipelines import Prepared, RunConfig, train_teacher
from augrl.runtime import stage
from augrl.training import evaluate


def split_fingerprint(data: Prepared, train: Encoded | None = None) -> str:
    """A digest of the training rows (token ids and labels; ``train`` instead of the split's
    when given) and the validation rows of a split."""
    h = hashlib.sha1()
    for enc in (data.train if train is None else train, data.val):
        h.update(json.dumps(enc.input_ids).encode())
        h.update(json.dumps(enc.labels.tolist()).encode())
    return h.hexdigest()[:16]


def teacher_key(cfg: RunConfig, data: Prepared, train: Encoded | None = None) -> dict:
    """Everything that decides a fine-tuned teacher (a source-adapted one: also the source pool's
    content and the sample size)."""
    key = {"task": data.task.spec.name, "split": split_fingerprint(data, train), "seed": cfg.seed,
           "teacher": models.model_key(cfg.teacher), "train": cfg.teacher_train.to_dict(),
           "device_type": data.device.type}
    if cfg.teacher_source_shots:
        source = data.task.source
        key["source"] = {"shots": cfg.teacher_source_shots,
                         "pool": dataset_fingerprint(source, data.task.spec.text_fields) if source is not None else None}
    return key


def _summary(result) -> dict:
    return {"val": result.best_val, "history": result.history, "train_seconds": round(result.seconds, 2),
            "best_epoch": result.best_epoch, "steps": result.steps, "source_stage": result.earlier.get("source")}


def fine_tuned_teacher(cfg: RunConfig, data: Prepared, progress: bool = True, cache: bool = True,
                       train: Encoded | None = None) -> tuple[object, dict]:
    """The teacher fine-tuned on ``data``'s target train set (selected on validation).

    Args:
        cfg: the run (``teacher``, ``teacher_train``, ``seed``).
        data: the prepared split.
        progress: progress bar while training.
        cache: load from / store in the augrl cache (False: always train, store nothing).
        train: another training set (e.g. multi-teacher's source-domain teachers); part of the key.

    Returns:
        ``(teacher, info)``; ``info`` holds ``val`` (metrics of the kept epoch), ``history``,
        ``train_seconds``, ``best_epoch``, ``steps``, ``source_stage`` (a source-adapted
        teacher's first stage, else None), ``cached`` (whether it was loaded) and ``dir`` (the
        cache entry).
    """
    if not cache:
        teacher, result = train_teacher(cfg, data, progress, train=train)
        return teacher.to(data.device), {**_summary(result), "cached": False, "dir": None}
    built = {}

    def build(tmp: Path) -> dict:
        teacher, result = train_teacher(cfg, data, progress, train=train)
        models.save_model(teacher, tmp, data.tokenizer)
        built["model"] = teacher
        return {**_summary(result), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}

    folder, meta = cached_build("teacher", f"{data.task.spec.name}-seed{cfg.seed}", teacher_key(cfg, data, train), build)
    teacher = built.get("model") or models.load_model(folder)
    info = {k: meta.get(k) for k in ("val", "history", "train_seconds", "best_epoch", "steps", "source_stage")}
    info.update(cached="model" not in built, dir=str(folder))
    return teacher.to(data.device), info


def obtain_teacher(cfg: RunConfig, data: Prepared, teacher_dir: str | Path | None = None,
                   progress: bool = True) -> tuple[object, dict]:
    """The run's teacher: the saved model in ``teacher_dir`` when given, else
    :func:`fine_tuned_teacher` (trained once per split and settings, then loaded from the cache).

    Returns ``(teacher, info)`` as :func:`fine_tuned_teacher` does (``info["dir"]`` is
    ``teacher_dir`` for a given teacher).
    """
    with stage("teacher"):
        if teacher_dir is not None:
            return models.load_model(teacher_dir).to(data.device), {"dir": str(teacher_dir), "cached": True}
        return fine_tuned_teacher(cfg, data, progress)


def teacher_stage(info: dict) -> dict:
    """The ``stages["teacher"]`` entry of a result record, from :func:`fine_tuned_teacher`'s info."""
    stage = {"best_epoch": info.get("best_epoch"), "steps": info.get("steps"), "seconds": info.get("train_seconds"),
             "history": info.get("history"), "cached": info.get("cached")}
    if info.get("source_stage"):
        stage["source"] = info["source_stage"]
    return stage


def teacher_test_metrics(teacher, data: Prepared, cfg: RunConfig) -> dict:
    """The teacher's metrics on the test set."""
    return evaluate(teacher, data.test, data.task.spec, data.device, cfg.teacher_train.eval_batch_size)
