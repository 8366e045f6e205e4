"""Candidate pools, cached fine-tuned teachers and KD on augmented data (tiny models)."""

from __future__ import annotations

import numpy as np
import pytest

from augrl import baselines
from augrl.errors import ConfigError
from augrl.pool import build_pool


@pytest.fixture(scope="module")
def eda(toy_tasks):
    return baselines.get("eda").fit(toy_tasks["single"])


def test_pool_sizes_provenance_and_balance(toy_tasks, eda):
    task = toy_tasks["single"]
    pool = build_pool(task, eda, size=50, variants=3, source_fraction=0.4, seed=0)
    assert len(pool) == 50
    assert pool.is_source.sum() == 20 and (~pool.is_source).sum() == 30
    # target candidates: every one of the 16 train examples gives 1 or 2 of the 30
    counts = np.bincount(pool.origin_ids[~pool.is_source], minlength=len(task.train))
    assert counts.min() >= 1 and counts.max() <= 2
    # labels are inherited from the originals
    train_labels = list(task.train["label"])
    for i in np.flatnonzero(~pool.is_source):
        assert pool.labels[i] == train_labels[pool.origin_ids[i]]
    # source examples are drawn evenly across the classes
    src = pool.labels[pool.is_source]
    assert abs(int((src == 0).sum()) - int((src == 1).sum())) <= 3
    assert np.isnan(pool.logprob).all() and not pool.scored
    assert ((pool.edit_fraction >= 0) & (pool.edit_fraction <= 5)).all()
    assert pool.meta["augmenter"] == "eda"


def test_stored_pool_reads_back_exactly_what_it_built(toy_tasks, tmp_path, monkeypatch):
    from augrl.pool import stored_pool

    monkeypatch.setenv("AUGRL_CACHE", str(tmp_path))
    task, fits = toy_tasks["single"], []

    def fitted():
        fits.append(1)
        return baselines.get("eda").fit(task)

    built, stored = stored_pool(task, "eda", {}, 40, 3, 0.5, 7, fitted)
    again, stored_again = stored_pool(task, "eda", {}, 40, 3, 0.5, 7, fitted)
    assert (stored, stored_again, len(fits)) == (False, True, 1)  # the second is read, nothing is fitted
    for name in ("labels", "is_source", "edit_fraction", "logprob", "origin_ids", "planted"):
        a, b = getattr(built, name), getattr(again, name)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    assert (built.texts, built.origins, built.provenance, built.meta) == (again.texts, again.origins, again.provenance,
                                                                          again.meta)
    # another seed, size or setting is another pool
    stored_pool(task, "eda", {"alpha_sr": 0.3}, 40, 3, 0.5, 7, fitted)
    stored_pool(task, "eda", {}, 40, 3, 0.5, 8, fitted)
    assert len(fits) == 3


def test_pool_is_seeded(toy_tasks, eda):
    task = toy_tasks["single"]
    a = build_pool(task, eda, size=30, seed=3)
    b = build_pool(task, eda, size=30, seed=3)
    c = build_pool(task, eda, size=30, seed=4)
    assert a.texts == b.texts and (a.labels == b.labels).all()
    assert a.texts != c.texts


def test_pool_pairs_and_target_only(toy_tasks):
    task = toy_tasks["pair"]
    aug = baselines.get("eda").fit(task)
    pool = build_pool(task, aug, size=20, source_fraction=0.0, seed=0)
    assert len(pool) == 20 and not pool.is_source.any()
    assert all(isinstance(t, tuple) and len(t) == 2 for t in pool.texts)
    # each pair keeps its original's label, and the columns keep the sides and rows aligned
    train_labels = list(task.train["label"])
    assert [int(x) for x in pool.labels] == [train_labels[i] for i in pool.origin_ids]
    cols = pool.columns(task.spec.text_fields)
    assert set(cols) == {"text_a", "text_b", "label"} and len(cols["text_a"]) == 20
    assert list(zip(cols["text_a"], cols["text_b"])) == list(pool.texts)
    assert [int(x) for x in cols["label"]] == [int(x) for x in pool.labels]


def test_pool_bad_input(toy_tasks, eda):
    task = toy_tasks["single"]
    with pytest.raises(ConfigError, match="pool size"):
        build_pool(task, eda, size=0)
    with pytest.raises(ConfigError, match="source_fraction"):
        build_pool(task, eda, size=10, source_fraction=1.5)
    with pytest.raises(ConfigError, match="variants"):
        build_pool(task, eda, size=10, variants=0)


def test_cached_teacher_and_distil_on_candidates(toy_tasks, tiny_model_dir, eda, augrl_cache, single_thread):
    import torch

    from augrl.augmented import distil_on
    from augrl.pipelines import RunConfig, prepare
    from augrl.teachers import fine_tuned_teacher
    from augrl.training import TrainConfig

    small = TrainConfig(epochs=1, batch_size=8, max_steps=3)
    cfg = RunConfig(task=str(toy_tasks["single_file"]), shots=8, teacher=str(tiny_model_dir),
                    student_init=str(tiny_model_dir), teacher_train=small, student_train=small, device="cpu")
    data = prepare(cfg)
    teacher, info = fine_tuned_teacher(cfg, data, progress=False)
    assert not info["cached"] and info["val"]
    again, info2 = fine_tuned_teacher(cfg, data, progress=False)
    assert info2["cached"] and info2["dir"] == info["dir"]
    for a, b in zip(teacher.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    # another seed is another split: another teacher
    _, info3 = fine_tuned_teacher(cfg.replace(seed=1), prepare(cfg.replace(seed=1)), progress=False)
    assert info3["dir"] != info["dir"]

    pool = build_pool(data.task, eda, size=24, seed=0)
    all_kept = distil_on(cfg, data, teacher, pool, progress=False)
    assert all_kept.train_size == len(data.train) + 24 and all_kept.candidates == 24
    some = distil_on(cfg, data, teacher, pool, keep=[0, 5, 7], progress=False)
    assert some.train_size == len(data.train) + 3
    none = distil_on(cfg, data, teacher, pool, keep=[], progress=False)
    assert none.train_size == len(data.train) and none.candidates == 0
