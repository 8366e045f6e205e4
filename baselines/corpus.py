"""The unlabeled text an augmenter may learn from, and the key that identifies it in caches.

Only the target few-shot *train* texts and the *source* pool are ever used: validation and test
texts never reach a vocabulary or a masked LM.
"""

from __future__ import annotations

import numpy as np


def _sides(task, dataset) -> list[str]:
    fields = task.spec.text_fields
    return [t for row in zip(*(list(dataset[f]) for f in fields)) for t in row if t and t.strip()]


def task_corpus(task, max_texts: int | None = None, seed: int = 0) -> tuple[list[str], list[str]]:
    """Target-train texts and source texts (every side of pairs), as two lists.

    All target texts are kept; when the total exceeds ``max_texts``, the source texts are a
    seeded sample (in their original order) that fills the rest.
    """
    target = _sides(task, task.train)
    source = _sides(task, task.source) if task.source is not None and len(task.source) else []
    if max_texts is not None and len(target) + len(source) > max_texts:
        keep = max(0, int(max_texts) - len(target))
        order = np.random.default_rng(seed).permutation(len(source))[:keep]
        source = [source[i] for i in sorted(order)]
    return target, source


def task_texts(task, max_texts: int | None = None, seed: int = 0) -> list[str]:
    """:func:`task_corpus` as one list: target-train texts first, then source texts."""
    target, source = task_corpus(task, max_texts, seed)
    return target + source


def task_key(task) -> dict:
    """What identifies a task's data in cache keys: the content of its train set and source pool.

    The texts and labels are fingerprinted (:func:`augrl.artifacts.dataset_fingerprint`), so two
    tasks of one name and size but other text never share an adapted MLM or a vocabulary; the
    name and split seed are kept only to make entries readable.
    """
    from augrl.artifacts import dataset_fingerprint

    fields = task.spec.text_fields
    source = task.source if task.source is not None and len(task.source) else None
    return {"task": task.meta.get("task", task.spec.name), "seed": task.meta.get("seed"),
            "train": dataset_fingerprint(task.train, fields),
            "source": dataset_fingerprint(source, fields), "source_size": 0 if source is None else len(source)}
