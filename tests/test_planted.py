"""Planted and budgeted candidate pools (augrl.planted) and the detection metrics."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from augrl import baselines
from augrl.errors import ConfigError, DataError
from augrl.metrics import detection_auc, planted_in_lowest
from augrl.planted import budgeted_pool, plant, task_family, unrelated_texts
from augrl.pool import CandidatePool, build_pool

UNRELATED = [f"the committee voted on budget item number {i} today" for i in range(200)]


@pytest.fixture(scope="module")
def eda(toy_tasks):
    return baselines.get("eda").fit(toy_tasks["single"])


@pytest.fixture(scope="module")
def pool(toy_tasks, eda) -> CandidatePool:
    return build_pool(toy_tasks["single"], eda, size=90, variants=3, seed=0)


@pytest.fixture(scope="module")
def pair_pool(toy_tasks) -> CandidatePool:
    task = toy_tasks["pair"]
    return build_pool(task, baselines.get("eda").fit(task), size=40, seed=0)


@pytest.fixture(scope="module")
def regression_task(tmp_path_factory):
    from augrl.tasks import load_task

    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("toy-regression")
    words = ["the", "movie", "plot", "was", "good", "bad", "very", "dull", "fun", "acting"]
    lines = ["text,score"] + [f"{' '.join(rng.choice(words, size=6))},{rng.uniform(0, 1):.3f}" for _ in range(60)]
    (d / "data.csv").write_text("\n".join(lines) + "\n")
    (d / "task.yaml").write_text("name: toy-reg\nkind: regression\ntext: text\nlabel: score\n"
                                 "target: {all: data.csv}\nval_size: 10\ntest_size: 10\n")
    return load_task(str(d / "task.yaml"), shots=8)


def _clean_twin(pool: CandidatePool, text, origin) -> list[int]:
    """Clean rows of ``pool`` with this text and original."""
    return [i for i in np.flatnonzero(~pool.planted) if pool.texts[i] == text and pool.origins[i] == origin]


# --------------------------------------------------------------------------- CandidatePool fields


def test_pool_defaults_and_checks(pool):
    assert not pool.planted.any() and pool.planted.dtype == bool and pool.planted.shape == (90,)
    assert pool.planted_kind == [""] * 90 and pool.provenance == ["eda"] * 90
    # the old positional constructor still works; missing fields default
    bare = CandidatePool(["a b"], np.array([1]), ["a c"], np.array([False]), np.array([0.5], dtype=np.float32),
                         np.array([np.nan]), np.array([0]))
    assert bare.planted.tolist() == [False] and bare.planted_kind == [""] and bare.provenance == [""]
    flagged = CandidatePool(["a b"], np.array([1]), ["a c"], np.array([False]), np.array([0.5]), np.array([np.nan]),
                            np.array([0]), planted=np.array([True]))
    assert flagged.planted_kind == ["planted"]
    with pytest.raises(ValueError, match="per-row fields"):
        CandidatePool(["a", "b"], np.array([1]), ["a", "b"], np.array([False, False]), np.zeros(2), np.zeros(2),
                      np.arange(2))
    with pytest.raises(ValueError, match="planted_kind"):
        CandidatePool(["a"], np.array([1]), ["a"], np.array([False]), np.zeros(1), np.zeros(1), np.arange(1),
                      planted=np.array([False]), planted_kind=["flip"])


# --------------------------------------------------------------------------- plant


def test_plant_fraction_exact_and_kinds_split(toy_tasks, pool):
    task = toy_tasks["single"]
    out = plant(pool, task, 0.25, seed=0, unrelated_texts=UNRELATED)  # 90 clean -> 30 planted, 10 per kind
    assert len(out) == 120 and int(out.planted.sum()) == 30
    assert out.planted.mean() == pytest.approx(0.25)
    assert Counter(k for k in out.planted_kind if k) == {"flip": 10, "unrelated": 10, "shuffle": 10}
    assert [k == "" for k in out.planted_kind] == (~out.planted).tolist()
    assert [p for p, f in zip(out.provenance, out.planted) if f] == ["planted"] * 30
    # the clean rows are the pool's, in its order
    clean = out.subset(np.flatnonzero(~out.planted))
    assert clean.texts == pool.texts and clean.origin_ids.tolist() == pool.origin_ids.tolist()
    assert clean.labels.tolist() == pool.labels.tolist()
    # planted rows are spread through the pool, with fresh distinct origin ids
    positions = np.flatnonzero(out.planted)
    assert positions.min() < 60 and positions.max() >= 60
    ids = out.origin_ids[out.planted]
    assert len(set(ids.tolist())) == 30 and ids.min() > pool.origin_ids.max()
    assert out.meta["planted"]["counts"] == {"flip": 10, "unrelated": 10, "shuffle": 10}
    assert out.meta["planted"]["unrelated"] == "given" and out.meta["size"] == 120
    assert out.meta["augmenter"] == "eda"
    # uneven split: the first kinds get the remainder; 90 clean at 0.1 -> 10 planted
    ten = plant(pool, task, 0.1, seed=0, unrelated_texts=UNRELATED)
    assert len(ten) == 100 and Counter(k for k in ten.planted_kind if k) == {"flip": 4, "unrelated": 3, "shuffle": 3}
    one = plant(pool, task, 0.3, kinds=["shuffle"], seed=0)  # round(0.3 * 90 / 0.7) = 39, no unrelated text needed
    assert int(one.planted.sum()) == 39 and set(one.planted_kind) == {"", "shuffle"}
    tiny = plant(pool, task, 0.001, kinds=("flip",), seed=0)  # at least one row
    assert int(tiny.planted.sum()) == 1


def test_flips_change_labels(toy_tasks, pool):
    task = toy_tasks["single"]
    out = plant(pool, task, 0.4, kinds=("flip",), seed=1)
    flips = np.flatnonzero(out.planted)
    assert len(flips) == 60
    for i in flips:
        twins = _clean_twin(out, out.texts[i], out.origins[i])
        assert twins, "a flip copies a clean candidate's text and original"
        assert all(out.labels[i] != out.labels[j] for j in twins)
        assert out.labels[i] in (0, 1) and out.labels.dtype == pool.labels.dtype
        assert out.edit_fraction[i] == pytest.approx(out.edit_fraction[twins[0]])
        assert out.is_source[i] == out.is_source[twins[0]]


def test_flips_reflect_regression_scores(regression_task, eda):
    task = regression_task
    pool = build_pool(task, eda, size=32, seed=0)
    out = plant(pool, task, 0.2, kinds=("flip",), seed=0)
    labels = np.concatenate([np.asarray(task.train["label"], dtype=float), pool.labels.astype(float)])
    lo, hi = labels.min(), labels.max()
    assert out.labels.dtype == np.float32
    for i in np.flatnonzero(out.planted):
        twin = _clean_twin(out, out.texts[i], out.origins[i])[0]
        assert out.labels[i] == pytest.approx(lo + hi - out.labels[twin], abs=1e-5)
        assert out.labels[i] != pytest.approx(out.labels[twin], abs=1e-6)
    unrelated = plant(pool, task, 0.2, kinds=("unrelated",), seed=0, unrelated_texts=UNRELATED)
    scores = unrelated.labels[unrelated.planted]
    assert ((scores >= lo) & (scores <= hi)).all() and len(set(scores.tolist())) > 1


def test_shuffles_are_permutations(toy_tasks, pool, pair_pool):
    out = plant(pool, toy_tasks["single"], 0.3, kinds=("shuffle",), seed=0)
    rows = np.flatnonzero(out.planted)
    originals = {o for o in pool.origins}
    for i in rows:
        text = out.texts[i]
        sources = [j for j in range(len(pool)) if sorted(pool.texts[j].split()) == sorted(text.split())
                   and pool.origins[j] == out.origins[i]]
        assert sources, "a shuffle holds the words of a clean candidate"
        assert any(pool.texts[j] != text for j in sources)  # (EDA's swaps may give another variant this order)
        assert all(pool.labels[j] == out.labels[i] for j in sources)
        assert out.origins[i] in originals and np.isnan(out.logprob[i])
        assert out.edit_fraction[i] > 0
    # pairs: each side is a permutation of the same side of a clean pair
    task = toy_tasks["pair"]
    out = plant(pair_pool, task, 0.25, kinds=("shuffle",), seed=0)
    for i in np.flatnonzero(out.planted):
        a, b = out.texts[i]
        assert any(sorted(a.split()) == sorted(p[0].split()) and sorted(b.split()) == sorted(p[1].split())
                   and p != (a, b) for p in pair_pool.texts)


def test_unrelated_rows(toy_tasks, pool, pair_pool):
    out = plant(pool, toy_tasks["single"], 0.2, kinds=("unrelated",), seed=0, unrelated_texts=UNRELATED)
    rows = np.flatnonzero(out.planted)
    assert all(out.texts[i] in UNRELATED and out.origins[i] == out.texts[i] for i in rows)
    assert len({out.texts[i] for i in rows}) == len(rows)  # drawn without replacement
    assert not out.is_source[rows].any() and (out.edit_fraction[rows] == 0).all() and np.isnan(out.logprob[rows]).all()
    assert set(out.labels[rows].tolist()) == {0, 1}
    out = plant(pair_pool, toy_tasks["pair"], 0.2, kinds=("unrelated",), seed=0, unrelated_texts=UNRELATED)
    for i in np.flatnonzero(out.planted):
        assert isinstance(out.texts[i], tuple) and all(side in UNRELATED for side in out.texts[i])


def test_plant_is_seeded(toy_tasks, pool):
    task = toy_tasks["single"]
    a = plant(pool, task, 0.2, seed=3, unrelated_texts=UNRELATED)
    b = plant(pool, task, 0.2, seed=3, unrelated_texts=UNRELATED)
    c = plant(pool, task, 0.2, seed=4, unrelated_texts=UNRELATED)
    assert a.texts == b.texts and a.labels.tolist() == b.labels.tolist() and a.planted_kind == b.planted_kind
    assert a.planted.tolist() == b.planted.tolist() and a.origin_ids.tolist() == b.origin_ids.tolist()
    assert a.texts != c.texts or a.planted.tolist() != c.planted.tolist()


def test_subset_concat_and_originals_keep_flags(toy_tasks, pool):
    task = toy_tasks["single"]
    out = plant(pool, task, 0.2, seed=0, unrelated_texts=UNRELATED)
    rows = [int(i) for i in np.flatnonzero(out.planted)[:3]] + [int(i) for i in np.flatnonzero(~out.planted)[:2]]
    sub = out.subset(rows)
    assert sub.planted.tolist() == [True, True, True, False, False]
    assert sub.planted_kind == [out.planted_kind[i] for i in rows]
    assert sub.provenance == [out.provenance[i] for i in rows]
    cols = out.originals_columns(task.spec.text_fields)
    assert cols["text"] == out.origins and cols["label"] == out.labels.tolist()

    both = CandidatePool.concat([pool, out])
    assert len(both) == len(pool) + len(out)
    assert both.planted.tolist() == [False] * len(pool) + out.planted.tolist()
    assert both.planted_kind == pool.planted_kind + out.planted_kind
    assert both.provenance == pool.provenance + out.provenance
    offset = int(pool.origin_ids.max()) + 1
    assert both.origin_ids.tolist() == pool.origin_ids.tolist() + (out.origin_ids + offset).tolist()
    assert [p["size"] for p in both.meta["parts"]] == [len(pool), len(out)]
    assert [p["id_offset"] for p in both.meta["parts"]] == [0, offset] and both.meta["size"] == len(both)
    kept = CandidatePool.concat([pool, pool], offset_ids=False, meta={"name": "twice"})
    assert kept.origin_ids.tolist() == pool.origin_ids.tolist() * 2 and kept.meta["name"] == "twice"
    assert CandidatePool.concat([pool]).texts == pool.texts


def test_concat_bad_input(toy_tasks, pool, pair_pool, regression_task, eda):
    with pytest.raises(ConfigError, match="at least one pool"):
        CandidatePool.concat([])
    with pytest.raises(ConfigError, match="pairs"):
        CandidatePool.concat([pool, pair_pool])
    scores = build_pool(regression_task, eda, size=10, seed=0)
    with pytest.raises(ConfigError, match="regression"):
        CandidatePool.concat([pool, scores])


def test_plant_bad_input(toy_tasks, pool, pair_pool):
    task = toy_tasks["single"]
    for bad in (0, 0.0, 1, 1.0, 1.5, -0.1, "0.1", None, True, float("nan")):
        with pytest.raises(ConfigError, match=r"planted fraction.*\(0, 1\)"):
            plant(pool, task, bad, unrelated_texts=UNRELATED)
    with pytest.raises(ConfigError, match="unknown planted kind.*'flip', 'unrelated', 'shuffle'"):
        plant(pool, task, 0.1, kinds=("flip", "noise"))
    with pytest.raises(ConfigError, match="no planted kind"):
        plant(pool, task, 0.1, kinds=())
    with pytest.raises(ConfigError, match="more than once"):
        plant(pool, task, 0.1, kinds=("flip", "flip"))
    with pytest.raises(ConfigError, match="already holds"):
        plant(plant(pool, task, 0.1, kinds=("flip",)), task, 0.1, kinds=("flip",))
    with pytest.raises(ConfigError, match="empty pool"):
        plant(pool.subset([]), task, 0.1)
    with pytest.raises(ConfigError, match="unrelated texts are needed"):
        plant(pool, task, 0.3, kinds=("unrelated",), unrelated_texts=UNRELATED[:5])
    with pytest.raises(ConfigError, match="non-empty strings"):
        plant(pool, task, 0.1, kinds=("unrelated",), unrelated_texts=["fine", " "])
    with pytest.raises(ConfigError, match="pairs of texts"):
        plant(pool, toy_tasks["pair"], 0.1, kinds=("flip",))
    one_word = CandidatePool(["good"] * 4, np.zeros(4, dtype=np.int64), ["good"] * 4, np.zeros(4, dtype=bool),
                             np.zeros(4), np.full(4, np.nan), np.arange(4))
    with pytest.raises(ConfigError, match="two different words"):
        plant(one_word, task, 0.5, kinds=("shuffle",))


# --------------------------------------------------------------------------- unrelated_texts


def _fake_mrpc(root, sentences: list[str]):
    d = root / "mrpc"
    d.mkdir(parents=True)
    lines = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    lines += [f"1\t{i}\t{i + 1000}\t{s}\tan unused paraphrase of sentence {i}" for i, s in enumerate(sentences)]
    (d / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_unrelated_texts_from_a_data_folder(toy_tasks, tmp_path, monkeypatch):
    task = toy_tasks["single"]
    assert task_family(task.spec) == "single" and task_family(toy_tasks["pair"].spec) == "pair"
    held = task.test["text"][0]
    good = [f"shares of company number {i} rose on monday" for i in range(30)]
    _fake_mrpc(tmp_path, good + ["too short", good[0].upper(), held])
    got = unrelated_texts(task, 30, seed=0, data_dir=tmp_path)
    assert sorted(got) == sorted(good)  # short, duplicate and the task's own texts are left out
    assert unrelated_texts(task, 10, seed=1, data_dir=tmp_path) == unrelated_texts(task, 10, seed=1, data_dir=tmp_path)
    assert unrelated_texts(task, 10, seed=1, data_dir=tmp_path) != unrelated_texts(task, 10, seed=2, data_dir=tmp_path)
    with pytest.raises(ConfigError, match="31 unrelated sentences.*30 usable"):
        unrelated_texts(task, 31, seed=0, data_dir=tmp_path)
    # plant reads them through AUGRL_DATA when none are given
    monkeypatch.setenv("AUGRL_DATA", str(tmp_path))
    pool = CandidatePool(["a fine movie", "a dull plot"], np.array([1, 0]), ["a fine film", "a dull plot"],
                         np.zeros(2, dtype=bool), np.zeros(2), np.full(2, np.nan), np.arange(2))
    out = plant(pool, task, 0.5, kinds=("unrelated",), seed=0)
    assert out.texts[int(np.flatnonzero(out.planted)[0])] in good and out.meta["planted"]["unrelated"] == "mrpc"


def test_unrelated_texts_bad_input(toy_tasks, tmp_path, monkeypatch):
    task = toy_tasks["single"]
    assert unrelated_texts(task, 0, seed=0) == []
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match="integer >= 0"):
            unrelated_texts(task, bad, seed=0)
    with pytest.raises(ConfigError, match="unknown unrelated dataset.*mrpc"):
        unrelated_texts(task, 3, seed=0, dataset="imdb")
    monkeypatch.delenv("AUGRL_DATA", raising=False)
    with pytest.raises(DataError, match="AUGRL_DATA"):
        unrelated_texts(task, 3, seed=0)
    monkeypatch.setenv("AUGRL_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="AUGRL_DATA"):
        unrelated_texts(task, 3, seed=0)
    monkeypatch.setenv("AUGRL_DATA", str(tmp_path))  # a folder without mrpc/
    with pytest.raises(DataError, match="AUGRL_DATA"):
        unrelated_texts(task, 3, seed=0)


# --------------------------------------------------------------------------- budgeted_pool


def _other_task(tmp_path, rows: list[str] | None = None, name: str = "toy-other", labels: str = "[neg, pos]") -> str:
    """A second toy sentiment task YAML (labels `labels`), usable as the toy task's other domain."""
    from conftest import write_sentiment_csv

    if rows is None:
        write_sentiment_csv(tmp_path / "other.csv", 60, seed=9)
    else:
        (tmp_path / "other.csv").write_text("\n".join(["text,label"] + rows) + "\n")
    (tmp_path / "other.yaml").write_text(f"name: {name}\nkind: classification\ntext: text\nlabel: label\n"
                                         f"labels: {labels}\ntarget: {{all: other.csv}}\n")
    return str(tmp_path / "other.yaml")


def test_budgeted_pool_parts(toy_tasks, eda, tmp_path):
    task = toy_tasks["single"]
    n_train = len(task.train)
    pool = budgeted_pool(task, 40, [eda], seed=0)  # the toy task has no other domain: halves
    assert len(pool) == 40 and Counter(pool.provenance) == {"source": 20, "eda": 20}
    assert pool.meta["counts"] == {"source": 20, "other_domain": 0, "eda": 20} and pool.meta["other_domain"] is None
    assert pool.meta["proportions"] == {"source": 0.5, "other_domain": 0.0, "augmented": 0.5}
    src = [i for i, p in enumerate(pool.provenance) if p == "source"]
    aug = [i for i, p in enumerate(pool.provenance) if p == "eda"]
    source_texts = set(task.source["text"])
    assert all(pool.texts[i] in source_texts and pool.origins[i] == pool.texts[i] for i in src)
    assert pool.is_source[src].all() and (pool.edit_fraction[src] == 0).all() and not pool.is_source[aug].any()
    assert sorted(pool.origin_ids[src].tolist()) == list(range(n_train, n_train + 20))
    assert (pool.origin_ids[aug] < n_train).all() and not pool.planted.any()
    assert Counter(pool.labels[src].tolist()) == {0: 10, 1: 10}
    assert src != list(range(20))  # the parts are mixed

    other = _other_task(tmp_path)
    mixed = budgeted_pool(task, 31, {"eda-a": eda, "eda-b": eda}, seed=0, other_domain=other, max_words=3)
    assert Counter(mixed.provenance) == {"source": 11, "other_domain": 10, "eda-a": 5, "eda-b": 5}
    far = [i for i, p in enumerate(mixed.provenance) if p == "other_domain"]
    assert all(len(mixed.texts[i].split()) <= 3 for i in far) and mixed.is_source[far].all()
    assert mixed.meta["other_domain"]["task"] == "toy-other" and mixed.meta["other_domain"]["max_words"] == 3
    assert set(mixed.meta["augmenters"]) == {"eda-a", "eda-b"}
    assert len(set(mixed.origin_ids[[i for i, p in enumerate(mixed.provenance) if p in ("source", "other_domain")]]
                   .tolist())) == 21
    custom = budgeted_pool(task, 10, [eda], seed=0, other_domain=other,
                           proportions={"other_domain": 0.7, "augmented": 0.3})
    assert Counter(custom.provenance) == {"other_domain": 7, "eda": 3}
    # seeded
    again = budgeted_pool(task, 31, {"eda-a": eda, "eda-b": eda}, seed=0, other_domain=other, max_words=3)
    assert again.texts == mixed.texts and again.provenance == mixed.provenance
    assert budgeted_pool(task, 31, {"eda-a": eda, "eda-b": eda}, seed=1, other_domain=other).texts != mixed.texts
    # and plantable
    planted = plant(mixed, task, 0.2, kinds=("flip", "shuffle"), seed=0)
    assert int(planted.planted.sum()) == 8 and Counter(planted.provenance)["planted"] == 8


def test_budgeted_pool_bad_input(toy_tasks, eda, tmp_path):
    task = toy_tasks["single"]
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ConfigError, match="size must be an integer >= 1"):
            budgeted_pool(task, bad, [eda])
    with pytest.raises(ConfigError, match="sum to 1"):
        budgeted_pool(task, 10, [eda], proportions={"source": 0.5, "augmented": 0.4})
    with pytest.raises(ConfigError, match="unknown budgeted pool part"):
        budgeted_pool(task, 10, [eda], proportions={"source": 0.5, "eda": 0.5})
    with pytest.raises(ConfigError, match=">= 0"):
        budgeted_pool(task, 10, [eda], proportions={"source": 1.5, "augmented": -0.5})
    with pytest.raises(ConfigError, match="no default other domain"):
        budgeted_pool(task, 10, [eda], proportions={"other_domain": 1.0})
    with pytest.raises(ConfigError, match="no augmenter"):
        budgeted_pool(task, 10, [], proportions={"augmented": 1.0})
    with pytest.raises(ConfigError, match="more than once"):
        budgeted_pool(task, 10, [eda, eda])
    with pytest.raises(ConfigError, match="reserved"):
        budgeted_pool(task, 10, {"source": eda})
    with pytest.raises(ConfigError, match="max_words"):
        budgeted_pool(task, 10, [eda], max_words=0)
    with pytest.raises(ConfigError, match="source part needs 5000"):
        budgeted_pool(task, 5000, [], proportions={"source": 1.0})
    with pytest.raises(ConfigError, match="is the task itself"):
        budgeted_pool(task, 10, [eda], other_domain=str(toy_tasks["single_file"]))
    with pytest.raises(ConfigError, match="does not match"):
        budgeted_pool(task, 10, [eda], other_domain=str(toy_tasks["pair_file"]))
    d = tmp_path / "labels"
    d.mkdir()
    with pytest.raises(ConfigError, match="does not match"):
        budgeted_pool(task, 10, [eda], other_domain=_other_task(d, labels="[pos, neg]"))
    # an other domain made of the task's test texts leaks every row
    d = tmp_path / "leaky"
    d.mkdir()
    test = task.test
    rows = [f"{t},{task.spec.label_names[y]}" for t, y in zip(test["text"], test["label"])]
    with pytest.raises(ConfigError, match="do not leak"):
        budgeted_pool(task, 12, [eda], other_domain=_other_task(d, rows))


# --------------------------------------------------------------------------- detection metrics


def test_detection_auc_by_hand():
    # planted {0.1, 0.3} vs clean {0.2, 0.4}: 0.1<0.2, 0.1<0.4, 0.3>0.2, 0.3<0.4 -> 3 of 4 pairs
    assert detection_auc([0.1, 0.2, 0.3, 0.4], [True, False, True, False]) == pytest.approx(0.75)
    # ties count half: planted {1, 0} vs clean {1, 2}: tie 0.5 + 1 + 1 + 1 = 3.5 of 4
    assert detection_auc(np.array([1.0, 1.0, 2.0, 0.0]), np.array([1, 0, 0, 1])) == pytest.approx(0.875)
    assert detection_auc([0, 1, 2, 3], [True, True, False, False]) == 1.0
    assert detection_auc([0, 1, 2, 3], [False, False, True, True]) == 0.0
    assert detection_auc([5, 5, 5, 5, 5], [True, False, False, True, False]) == 0.5
    rng = np.random.default_rng(0)
    flags = rng.random(4000) < 0.2
    assert detection_auc(rng.random(4000), flags) == pytest.approx(0.5, abs=0.03)
    for flags in ([True, True], [False, False]):
        with pytest.raises(ValueError, match="at least one planted and one clean"):
            detection_auc([0.1, 0.2], flags)
    with pytest.raises(ValueError, match="length"):
        detection_auc([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="finite"):
        detection_auc([0.1, np.nan], [True, False])
    with pytest.raises(ValueError, match="booleans"):
        detection_auc([0.1, 0.2], [2, 0])


def test_planted_in_lowest_by_hand():
    scores = [0.1, 0.5, 0.2, 0.9, 0.3, 0.8]
    flags = [True, False, False, True, True, False]
    # share 1/3 of 6 -> the 2 lowest: 0.1 (planted), 0.2 (clean) -> 1 of the 3 planted rows
    assert planted_in_lowest(scores, flags) == pytest.approx(1 / 3)
    # share 1/2 -> 0.1, 0.2, 0.3: 2 of 3
    assert planted_in_lowest(scores, flags, share=0.5) == pytest.approx(2 / 3)
    assert planted_in_lowest(scores, flags, share=1.0) == 1.0
    # ties at the cut: 2 rows inspected; 0 (clean) is in, one of the three tied at 1 fits
    # (r/t = 1/3) and one of the tied rows is planted -> 1/3 of a row, out of 2 planted rows
    tied = [0, 1, 1, 1, 2, 2]
    assert planted_in_lowest(tied, [False, True, False, False, True, False]) == pytest.approx(1 / 6)
    # a constant scorer finds exactly the inspected share
    assert planted_in_lowest([7] * 6, [True, False, False, True, False, False], share=0.5) == pytest.approx(0.5)
    # a perfect scorer with more planted rows than inspected ones: m / n_planted
    assert planted_in_lowest([0, 1, 2, 3, 4, 5], [True, True, True, True, False, False]) == pytest.approx(0.5)
    assert planted_in_lowest([0.5, 0.1], [True, False], share=0.1) == 0.0  # floor(0.2 + 0.5) = 0 rows inspected
    with pytest.raises(ValueError, match="at least one planted"):
        planted_in_lowest([0.1, 0.2], [False, False])
    for share in (0, 1.5, -0.2):
        with pytest.raises(ValueError, match="share"):
            planted_in_lowest([0.1, 0.2], [True, False], share=share)


# --------------------------------------------------------------------------- real data


@pytest.mark.integration
def test_rt_unrelated_and_budgeted_from_real_data(data_root):
    from augrl import tasks

    task = tasks.load_task("rt", shots=40, seed=0, data_dir=data_root)
    got = unrelated_texts(task, 40, seed=0, data_dir=data_root)
    mrpc = {r["text_a"] for r in tasks.read_mrpc(data_root, "train")}
    own = {tasks.normalize_text(t) for t in [*task.train["text"], *task.val["text"], *task.test["text"]]}
    assert len(set(got)) == 40 and set(got) <= mrpc and not {tasks.normalize_text(t) for t in got} & own
    assert unrelated_texts(task, 40, seed=0, data_dir=data_root) == got

    eda = baselines.get("eda").fit(task)
    pool = budgeted_pool(task, 300, [eda], seed=0, data_dir=data_root)
    assert len(pool) == 300 and Counter(pool.provenance) == {"source": 100, "other_domain": 100, "eda": 100}
    assert pool.meta["other_domain"]["task"] == "amazon-electronics"
    far = [i for i, p in enumerate(pool.provenance) if p == "other_domain"]
    assert max(len(pool.texts[i].split()) for i in far) <= 64
    assert Counter(pool.labels[far].tolist()) == {0: 50, 1: 50}
    source = set(task.source["text"])
    assert all(pool.texts[i] in source for i, p in enumerate(pool.provenance) if p == "source")

    planted = plant(pool, task, 0.1, seed=0)  # unrelated rows: MRPC sentences from AUGRL_DATA
    assert int(planted.planted.sum()) == 33 and planted.meta["planted"]["unrelated"] == "mrpc"
    assert all(planted.texts[i] in mrpc for i in np.flatnonzero(planted.planted)
               if planted.planted_kind[i] == "unrelated")
    assert detection_auc(-planted.planted.astype(float), planted.planted) == 1.0
