"""The domain-adapted MLM, contextual replacement and CBERT, on the tiny random BERT."""

import json
import math

import numpy as np
import pytest
import torch

from augrl import baselines
from augrl.baselines import mlm as mlm_mod
from augrl.artifacts import read_meta
from augrl.baselines.cbert import CONFIG_FLAG
from augrl.errors import ConfigError

pytestmark = pytest.mark.usefixtures("augrl_cache", "single_thread")

TEXTS = ["the movie was really good and fun", "a dull , boring film with a weak plot",
         "it was great", "the acting was very poor"]


def test_mlm_is_built_from_the_encoder_with_a_tied_decoder(tiny_model_dir):
    model, tokenizer = mlm_mod.build_mlm_from_encoder(str(tiny_model_dir))
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    assert not mlm_mod.has_mlm_head(str(tiny_model_dir))
    assert tokenizer.mask_token == "[MASK]"


def test_adaptation_is_cached_keyed_by_settings_and_never_sees_heldout_text(tiny_model_dir, toy_tasks, augrl_cache,
                                                                             monkeypatch):
    task = toy_tasks["single"]
    seen = []
    real_train = mlm_mod.train_mlm
    monkeypatch.setattr(mlm_mod, "train_mlm", lambda model, tok, texts, *a, **k: seen.append(list(texts))
                        or real_train(model, tok, texts, *a, **k))
    cfg = mlm_mod.MLMConfig(steps=15, batch_size=8, heldout=10)
    folder, meta = mlm_mod.adapt_to_task(str(tiny_model_dir), task, cfg, progress=False)
    assert folder.parent == augrl_cache / "mlm" and read_meta(folder) == json.loads(json.dumps(meta))
    assert 0.0 <= meta["heldout_accuracy"] <= 1.0 and meta["heldout_texts"] > 0 and meta["steps"] == 15
    assert mlm_mod.has_mlm_head(str(folder))
    held_out = set(task.val["text"]) | set(task.test["text"])
    assert seen and not held_out & set(seen[0])
    # a cache hit does not train again; a changed setting does
    again, _ = mlm_mod.adapt_to_task(str(tiny_model_dir), task, cfg, progress=False)
    assert again == folder and len(seen) == 1
    other, _ = mlm_mod.adapt_to_task(str(tiny_model_dir), task, cfg.replace(steps=16), progress=False)
    assert other != folder and len(seen) == 2


def test_adaptation_learns_the_toy_domain(tiny_model_dir, toy_tasks):
    """All-weight training on the task text lowers the held-out masked-LM loss."""
    cfg = mlm_mod.MLMConfig(steps=100, batch_size=16, lr=3e-3, heldout=20)
    _, meta = mlm_mod.adapt_to_task(str(tiny_model_dir), toy_tasks["single"], cfg, progress=False)
    assert meta["heldout_loss"] < meta["heldout_loss_before"] - 0.1
    assert meta["heldout_tokens"] >= 10 and meta["final_loss"] < meta["first_loss"]


def test_an_mlm_with_a_head_is_used_as_it_is(fitted_augmenters):
    adapted = fitted_augmenters[("contextual", "single")].masked_lm()
    aug = baselines.get("contextual", mlm=adapted.info["cache_dir"])
    assert aug.augment(TEXTS[:1], n=2, seed=0)[0][0] != TEXTS[0]  # loaded lazily, no fit needed
    with pytest.raises(ConfigError, match="no trained masked-LM head"):
        baselines.get("contextual", mlm=str(fitted_augmenters[("contextual", "single")].mlm_name)).augment(["a b"])


def test_contextual_replaces_the_expected_number_of_words(fitted_augmenters):
    aug = fitted_augmenters[("contextual", "single")]
    out = aug.augment(TEXTS, n=4, seed=0)
    for text, variants in zip(TEXTS, out):
        words = text.split()
        maskable = [w for w in words if w not in {","}]
        k = min(max(1, math.ceil(0.3 * len(words))), 10, len(maskable))
        for v in variants:
            new = v.split()
            assert len(new) == len(words)
            changed = [i for i, (a, b) in enumerate(zip(words, new)) if a != b]
            assert len(changed) == k and all(words[i] != "," for i in changed)
            assert all(b.isalpha() for a, b in zip(words, new) if a != b)
    assert out == aug.augment(TEXTS, n=4, seed=0) == aug.augment(TEXTS, n=4, seed=0, batch_size=1)
    assert out != aug.augment(TEXTS, n=4, seed=1)


def test_contextual_predicts_every_mask_of_a_batch_in_one_forward_pass(fitted_augmenters, monkeypatch):
    aug = fitted_augmenters[("contextual", "single")]
    mlm = aug.masked_lm()
    calls = []
    real = mlm.masked_logits

    def counting(input_ids, attention_mask, positions, token_type_ids=None, **kwargs):
        calls.append((tuple(input_ids.shape), len(positions)))
        return real(input_ids, attention_mask, positions, token_type_ids, **kwargs)

    monkeypatch.setattr(mlm, "masked_logits", counting)
    aug.augment(TEXTS * 5, n=4, seed=0)  # 20 inputs x 4 variants = 80 masked sequences
    assert len(calls) == 1 and calls[0][0][0] == 80 and calls[0][1] >= 80


def test_contextual_keeps_text_beyond_the_model_length(fitted_augmenters):
    aug = fitted_augmenters[("contextual", "single")]
    long = " ".join(["good movie"] * 100)  # 200 words; the tiny model takes 64 positions
    for v in aug.augment([long], n=3, seed=0)[0]:
        assert v.split()[62:] == long.split()[62:] and v != long


def test_contextual_on_pairs_respects_side(fitted_augmenters):
    aug = fitted_augmenters[("contextual", "pair")]
    pair = ("the movie was good", "the film was great fun")
    out = aug.augment([pair], n=6, seed=0)[0]
    assert all(isinstance(v, tuple) and len(v) == 2 for v in out)
    aug.side = "b"
    try:
        assert all(v[0] == pair[0] and v[1] != pair[1] for v in aug.augment([pair], n=6, seed=0)[0])
    finally:
        aug.side = "both"


def test_cbert_uses_label_embeddings(fitted_augmenters, toy_tasks):
    aug = fitted_augmenters[("cbert", "single")]
    mlm = aug.masked_lm()
    assert getattr(mlm.model.config, CONFIG_FLAG) == 2 and mlm.info["examples"] == len(toy_tasks["single"].train)
    seen = []
    real = mlm.masked_logits

    def spy(input_ids, attention_mask, positions, token_type_ids=None, **kwargs):
        seen.append(token_type_ids.clone())
        return real(input_ids, attention_mask, positions, token_type_ids, **kwargs)

    mlm.masked_logits = spy
    try:
        aug.augment(TEXTS[:2], n=2, labels=[1, 0], seed=0)
    finally:
        del mlm.masked_logits
    types = seen[0]
    # rows are sorted by length; every real token of a row carries that row's label
    assert set(types.unique().tolist()) <= {0, 1} and (types == 1).any()
    with pytest.raises(ConfigError, match="labels"):
        aug.augment(TEXTS, n=1)
    with pytest.raises(ConfigError, match="outside"):
        aug.augment(TEXTS[:1], n=1, labels=[5])
    assert aug.augment(TEXTS[:1], n=1, labels=["pos"], seed=0) == aug.augment(TEXTS[:1], n=1, labels=[1], seed=0)


def test_cbert_label_changes_the_prediction(fitted_augmenters):
    mlm = fitted_augmenters[("cbert", "single")].masked_lm()
    ids = mlm.tokenizer(["the movie was [MASK] ."], return_tensors="pt")
    pos = (ids["input_ids"][0] == mlm.tokenizer.mask_token_id).nonzero()[0, 0]
    positions = torch.tensor([[0, int(pos)]])
    with torch.no_grad():
        logits = [mlm.masked_logits(ids["input_ids"], ids["attention_mask"], positions,
                                    torch.full_like(ids["input_ids"], label)) for label in (0, 1)]
    assert not torch.allclose(logits[0], logits[1])


def test_cbert_on_pairs_and_with_source(fitted_augmenters, toy_tasks, tiny_model_dir):
    aug = fitted_augmenters[("cbert", "pair")]
    out = aug.augment([("the movie was good", "the film was great")], n=3, labels=[1], seed=0)[0]
    assert all(isinstance(v, tuple) for v in out)
    assert any(v != ("the movie was good", "the film was great") for v in out)
    with_source = baselines.get("cbert", mlm=str(tiny_model_dir), mlm_steps=20, use_source=True, max_steps=10)
    with_source.fit(toy_tasks["single"])
    task = toy_tasks["single"]
    assert with_source.masked_lm().info["examples"] == len(task.train) + len(task.source)


def test_cbert_refuses_regression_and_unfitted_use(tiny_model_dir):
    from augrl.tasks import TaskSpec

    class Fake:
        spec = TaskSpec("reg", "regression")

    with pytest.raises(ConfigError, match="regression"):
        baselines.get("cbert", mlm=str(tiny_model_dir)).fit(Fake())
    with pytest.raises(ConfigError, match="fit"):
        baselines.get("cbert", mlm=str(tiny_model_dir)).augment(["a good movie"], labels=[0])


def test_heldout_split_prefers_source_texts():
    train, held = mlm_mod.split_heldout(["t1", "t2"], [f"s{i}" for i in range(100)], heldout=10, seed=0)
    assert len(held) == 10 and all(h.startswith("s") for h in held) and {"t1", "t2"} <= set(train)
    assert not set(train) & set(held)


def test_masking_follows_bert(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = mlm_mod.tokenize_texts(tok, ["the movie was good fun and the plot very fine"] * 200, 64)
    ids_, _, labels = mlm_mod.mask_tokens(ids, tok, 0.15, np.random.default_rng(0))
    where = labels != -100
    assert where[:, 0].sum() == 0  # [CLS] is never a target
    masked = (ids_[where] == tok.mask_token_id).float().mean()
    assert 0.7 < masked < 0.9


def test_the_head_over_a_vocabulary_is_those_columns_of_the_full_head(fitted_augmenters):
    mlm = fitted_augmenters[("contextual", "single")].masked_lm()
    states = torch.randn(5, mlm.model.config.hidden_size)
    vocabulary = torch.tensor([7, 3, 11, 29, 2])
    with torch.no_grad():
        full, part = mlm.head(states), mlm.head_over(states, vocabulary)
    assert part.shape == (5, 5)
    torch.testing.assert_close(part, full[:, vocabulary], rtol=1e-5, atol=1e-5)


def test_sampling_over_the_sampleable_words_draws_what_the_full_vocabulary_draws(fitted_augmenters, monkeypatch):
    """Logits over the allowed words only, without log-softmax, pick the words (and the top-k
    logprobs) that -inf-masked log-softmax logits over the whole vocabulary pick."""
    aug = fitted_augmenters[("contextual", "single")]
    mlm = aug.masked_lm()
    fast = aug.augment(TEXTS * 3, n=4, seed=3)
    allowed = aug._allowed_ids()
    real = mlm.masked_logits

    def whole_vocabulary(input_ids, attention_mask, positions, token_type_ids=None, vocabulary=None):
        logits = torch.log_softmax(real(input_ids, attention_mask, positions, token_type_ids)
                                   .masked_fill(~allowed, float("-inf")), dim=-1)
        return logits[:, vocabulary]

    monkeypatch.setattr(mlm, "masked_logits", whole_vocabulary)
    assert aug.augment(TEXTS * 3, n=4, seed=3) == fast
