"""Odd input through every augmenter: valid output (possibly the original), never an exception."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augrl import baselines

from conftest import FILLER, NEG_WORDS, POS_WORDS

pytestmark = pytest.mark.usefixtures("augrl_cache", "single_thread")

MLM_BASED = {"contextual", "cbert"}
METHODS = ["eda", "mask", "pos", "ngram", "tang", "contextual", "cbert"]

LONG = " ".join((FILLER + POS_WORDS) * 40)  # 640 words: past every model's maximum length
BAD_TEXTS = ["", " ", "   \t\n ", "!!!", ". , ! ?", "...", "café naïve résumé", "good 😀 movie 🎬🍿",
             "日本語のテキスト", "\u200b\u200b", "good", "x", LONG, "a" * 3000, "the [MASK] was [UNK] good",
             "ünïcödé wörds ﬁne"]
BAD_PAIRS = [("", "the movie was good"), ("the movie was good", ""), ("", ""), ("   ", "!!!"), ("😀", LONG),
             ("good", "bad")]

WORDS = st.sampled_from(POS_WORDS + NEG_WORDS + FILLER + [",", ".", "!", "😀", "é", "[MASK]", "xyzzy", "a" * 80])
TEXT = st.one_of(
    st.sampled_from(BAD_TEXTS),
    st.text(max_size=40),
    st.lists(WORDS, max_size=25).map(" ".join),
)
PAIR = st.tuples(TEXT, TEXT)


def _check(inputs, outputs, n):
    assert len(outputs) == len(inputs)
    for original, variants in zip(inputs, outputs):
        assert len(variants) == n
        for v in variants:
            if isinstance(original, tuple):
                assert isinstance(v, tuple) and len(v) == 2 and all(isinstance(s, str) for s in v)
            else:
                assert isinstance(v, str)
            sides = v if isinstance(v, tuple) else (v,)
            orig_sides = original if isinstance(original, tuple) else (original,)
            for s, o in zip(sides, orig_sides):
                if not o.split():  # nothing to edit: the original comes back
                    assert s == o


@pytest.mark.parametrize("method", METHODS)
def test_the_bad_input_list(method, fitted_augmenters):
    aug = fitted_augmenters[(method, "single")]
    labels = [i % 2 for i in range(len(BAD_TEXTS))]
    _check(BAD_TEXTS, aug.augment(BAD_TEXTS, n=3, labels=labels, seed=0), 3)
    pair_aug = fitted_augmenters[(method, "pair")]
    _check(BAD_PAIRS, pair_aug.augment(BAD_PAIRS, n=3, labels=[1] * len(BAD_PAIRS), seed=0), 3)
    assert aug.augment([], n=3, labels=[], seed=0) == []
    assert aug.augment(BAD_TEXTS[:3], n=0, labels=[0, 0, 0]) == [[], [], []]


@pytest.mark.parametrize("method", METHODS)
def test_any_text_gives_valid_variants(method, fitted_augmenters):
    aug = fitted_augmenters[(method, "single")]

    @settings(max_examples=8 if method in MLM_BASED else 25, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(texts=st.lists(TEXT, min_size=1, max_size=4), n=st.integers(1, 3), seed=st.integers(0, 2**31))
    def run(texts, n, seed):
        labels = [len(t) % 2 for t in texts]
        out = aug.augment(texts, n=n, labels=labels, seed=seed)
        _check(texts, out, n)
        assert out == aug.augment(texts, n=n, labels=labels, seed=seed)

    run()


@pytest.mark.parametrize("method", METHODS)
def test_any_pair_gives_valid_variants(method, fitted_augmenters):
    aug = fitted_augmenters[(method, "pair")]

    @settings(max_examples=6 if method in MLM_BASED else 15, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(pairs=st.lists(PAIR, min_size=1, max_size=3), side=st.sampled_from(["both", "a", "b"]),
           seed=st.integers(0, 2**31))
    def run(pairs, side, seed):
        aug.side = side
        try:
            out = aug.augment(pairs, n=2, labels=[1] * len(pairs), seed=seed)
        finally:
            aug.side = "both"
        _check(pairs, out, 2)
        keep = {"a": 1, "b": 0}.get(side)
        if keep is not None:
            assert all(v[keep] == p[keep] for p, vs in zip(pairs, out) for v in vs)

    run()
