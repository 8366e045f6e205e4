"""Teachers and students of different families, on tiny random models: mean-pooled heads over
MPNet, RoBERTa, DeBERTa and BERT encoders, attention recomputation per family (or a clear
refusal), the token alignment of two tokenizers, size checks, and a short MPNet -> BERT
distillation."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from augrl import models
from augrl.batching import encode, predict
from augrl.errors import ConfigError
from augrl.kd import Distiller, Needs, TeacherCache, model_outputs
from augrl.kd.outputs import model_family, to_student_tokens
from augrl.training import TrainConfig, fit, total_steps

from conftest import FILLER, NEG_WORDS, POS_WORDS

BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "!"] + POS_WORDS + NEG_WORDS + FILLER
#: all-mpnet-base-v2's layout: BERT's uncased WordPiece vocabulary after <s> <pad> </s> <unk>, then <mask>
MPNET_VOCAB = ["<s>", "<pad>", "</s>", "<unk>"] + BERT_VOCAB + ["<mask>"]
V = len(MPNET_VOCAB)


def _save_bert_style(folder, vocab: list[str], hidden: int = 32, heads: int = 4, layers: int = 2):
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(1)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=2 * hidden,
                         max_position_embeddings=64)).save_pretrained(folder)
    BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True, model_max_length=64).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict:
    """Tiny random encoders saved like real checkpoints: ``mpnet`` (64 wide, 8 heads, 4 layers,
    with an MPNet tokenizer over BERT's pieces), ``roberta``, ``deberta`` (no tokenizer) and
    ``bert_other`` (a BERT whose vocabulary splits 'movie' into 'mov ##ie')."""
    from transformers import (DebertaV2Config, DebertaV2Model, MPNetConfig, MPNetModel, MPNetTokenizer,
                              RobertaConfig, RobertaModel)

    root = tmp_path_factory.mktemp("families")
    out = {}
    d = root / "mpnet"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(MPNET_VOCAB) + "\n")
    torch.manual_seed(0)
    MPNetModel(MPNetConfig(vocab_size=V, hidden_size=64, num_hidden_layers=4, num_attention_heads=8,
                           intermediate_size=128, max_position_embeddings=80)).save_pretrained(d)
    MPNetTokenizer(str(d / "vocab.txt"), do_lower_case=True, model_max_length=64).save_pretrained(d)
    out["mpnet"] = d
    d = root / "roberta"
    RobertaModel(RobertaConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=70, pad_token_id=1)).save_pretrained(d)
    out["roberta"] = d
    d = root / "deberta"
    DebertaV2Model(DebertaV2Config(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=64, max_position_embeddings=64, relative_attention=True,
                                   pos_att_type=["p2c", "c2p"])).save_pretrained(d)
    out["deberta"] = d
    other = [w for w in BERT_VOCAB if w != "movie"] + ["mov", "##ie"]
    out["bert_other"] = _save_bert_style(root / "bert-other", other)
    return out


def _dir(name: str, family_dirs: dict, tiny_model_dir):
    return tiny_model_dir if name == "bert" else family_dirs[name]


def _random_batch(pad_id: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two examples (5 and 3 real tokens), ids in 5..V-1, padding with ``pad_id``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, len(BERT_VOCAB), (2, 5), generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    ids = ids.masked_fill(mask == 0, pad_id)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def _labelled(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {**batch, "labels": torch.tensor([0, 1])}


def _pad_id(model) -> int:
    return 1 if model_family(model) in ("mpnet", "roberta") else 0


# ----------------------------------------------------------------------------- mean-pooled heads

FAMILIES = {"mpnet": "MPNetMeanPoolClassifier", "roberta": "RobertaMeanPoolClassifier",
            "deberta": "DebertaV2MeanPoolClassifier", "bert": "BertMeanPoolClassifier"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("num_labels", [3, 1])
def test_mean_pooled_head_round_trips_through_save_and_load(family, num_labels, family_dirs, tiny_model_dir,
                                                           tmp_path):
    torch.manual_seed(0)
    model = models.build_teacher(num_labels, _dir(family, family_dirs, tiny_model_dir)).eval()
    assert isinstance(model, models.MeanPoolClassifier) and type(model).__name__ == FAMILIES[family]
    assert model.config.augrl_pooling == "mean"
    batch = _random_batch(_pad_id(model))
    before = model(**batch).logits
    assert before.shape == (2, num_labels)
    folder = models.save_model(model, tmp_path / family)
    loaded = models.load_model(folder).eval()
    assert type(loaded) is type(model)
    saved = model.state_dict()
    assert loaded.state_dict().keys() == saved.keys()
    assert all(torch.equal(v, saved[k]) for k, v in loaded.state_dict().items())
    # (a 1-wide head's matmul may round differently once the weights sit elsewhere in memory)
    assert torch.allclose(loaded(**batch).logits, before, atol=1e-6)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_mean_pooling_is_the_mean_over_real_tokens(family, family_dirs, tiny_model_dir):
    torch.manual_seed(0)
    model = models.build_teacher(2, _dir(family, family_dirs, tiny_model_dir)).eval()
    batch = _random_batch(_pad_id(model))
    with torch.no_grad():
        inputs = models.model_inputs(model.base_model, batch)
        last = model.base_model(**inputs).last_hidden_state
        by_hand = torch.stack([last[row, :n].mean(0) for row, n in enumerate(batch["attention_mask"].sum(1))])
        assert torch.allclose(model(**batch).logits, model.classifier(by_hand), atol=1e-5)
        # padding further changes nothing
        wider = {k: torch.cat([v, torch.full((2, 3), _pad_id(model) if k == "input_ids" else 0)], 1)
                 for k, v in batch.items()}
        assert torch.allclose(model(**wider).logits, model(**batch).logits, atol=1e-5)


def test_folders_saved_by_the_bert_only_head_still_load(tiny_model_dir, tmp_path):
    """Earlier versions saved BertForSequenceClassification's layout (bert.*, classifier.*) with
    augrl_pooling = "mean"; every weight must load, none be drawn afresh."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(3)
    old = BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    old.config.augrl_pooling = "mean"
    old.config.architectures = ["BertMeanPoolClassifier"]
    old.save_pretrained(tmp_path / "old")
    loaded = models.load_model(tmp_path / "old")
    assert isinstance(loaded, models.BertMeanPoolClassifier)
    saved = old.state_dict()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, saved[name]), name


def test_mean_pooled_models_pickle(family_dirs):
    model = models.build_teacher(2, family_dirs["mpnet"]).eval()
    copy = pickle.loads(pickle.dumps(model))
    batch = _random_batch(1)
    assert type(copy) is models.MPNetMeanPoolClassifier and torch.equal(copy(**batch).logits, model(**batch).logits)


def test_students_are_cut_from_mpnet_too(family_dirs):
    teacher = models.build_teacher(2, family_dirs["mpnet"])
    student = models.build_student_of_kind("transformer", 2, family_dirs["mpnet"], num_layers=2)
    assert isinstance(student, models.MPNetMeanPoolClassifier) and models.layer_count(student) == 2
    for i in range(2):
        for (n, p), (_, q) in zip(models.encoder_layers(student)[i].named_parameters(),
                                  models.encoder_layers(teacher)[i].named_parameters()):
            assert torch.equal(p, q), n
    assert student.config.augrl_vocab == teacher.config.augrl_vocab


# ----------------------------------------------------------------------------- attention


@pytest.mark.parametrize("family", ["bert", "roberta", "mpnet"])
def test_recomputed_attention_equals_eager_attention(family, family_dirs, tiny_model_dir):
    model = models.build_teacher(2, _dir(family, family_dirs, tiny_model_dir), attentions=True).eval()
    n = models.layer_count(model)
    batch = _random_batch(_pad_id(model))
    needs = Needs.of(attentions=range(1, n + 1), attention_scores=[n], values=[1, n])
    with torch.no_grad():
        out = model_outputs(model, batch, needs)
        ref = model(**models.model_inputs(model, batch), output_attentions=True, output_hidden_states=True)
    real = batch["attention_mask"][:, None, :, None].bool().expand_as(ref.attentions[0])
    for i in range(n):  # padded query rows differ by definition
        assert torch.allclose(out.attentions[i][real], ref.attentions[i][real], atol=1e-6), i
    for layer in (1, n):
        value = models.encoder_layers(model)[layer - 1].attention
        value = value.attn.v if family == "mpnet" else value.self.value
        assert torch.allclose(out.values[layer - 1], value(ref.hidden_states[layer - 1]), atol=1e-6)
    mask = batch["attention_mask"][:, None, None, :] == 0
    assert torch.allclose(torch.softmax(out.attention_scores[n - 1].masked_fill(mask, -1e9), -1),
                          out.attentions[n - 1], atol=1e-6)
    if family == "mpnet":  # the relative position bias is part of what was matched
        with torch.no_grad():
            model.base_model.encoder.relative_attention_bias.weight.zero_()
            unbiased = model(**models.model_inputs(model, batch), output_attentions=True)
        assert not torch.allclose(unbiased.attentions[0][real], ref.attentions[0][real], atol=1e-4)


def test_attention_of_deberta_is_refused_naming_loss_and_architecture(family_dirs, tiny_model_dir):
    teacher = models.build_teacher(2, family_dirs["deberta"])
    student = models.build_student(2, tiny_model_dir, num_layers=2)
    for loss in ("attention_mse", "minilm_relation"):
        with pytest.raises(ConfigError, match=f"loss '{loss}' reads the teacher's attention.*deberta-v2"):
            Distiller(student, {loss: 1.0, "dark_ce": 1.0}, teacher=teacher)
    with pytest.raises(ConfigError, match="deberta-v2.*disentangled"):
        model_outputs(teacher, _random_batch(0), Needs.of(attentions=[1]))
    # its hidden states distil as any family's
    distiller = Distiller(student, {"hidden_mse": 1.0, "dark_ce": 1.0}, teacher=teacher)
    terms = distiller.losses(_labelled(_random_batch(0)), teacher)
    assert torch.isfinite(terms["loss"]) and terms["hidden_mse"] > 0


def test_sizes_a_loss_cannot_bridge_fail_before_training(family_dirs, tiny_model_dir):
    teacher = models.build_teacher(2, family_dirs["mpnet"])  # hidden 64, 8 heads
    student = models.build_student(2, tiny_model_dir, num_layers=2)  # hidden 32, 4 heads
    with pytest.raises(ConfigError, match=r"'attention_mse'.*teacher \(mpnet, hidden 64, 8 heads\) has 8, the "
                                          r"student \(bert, hidden 32, 4 heads\) 4"):
        Distiller(student, {"attention_mse": 1.0}, teacher=teacher)
    with pytest.raises(ConfigError, match="'minilm_relation'.*has 8, the student"):
        Distiller(student, {"minilm_relation": 1.0}, teacher=teacher)
    with pytest.raises(ConfigError, match=r"'pkd'.*one width.*has 64, the student .* 32"):
        Distiller(student, {"pkd": 1.0}, teacher=teacher, layer_map="2:1,4:2")
    # the projection W bridges the widths: 32 -> 64
    distiller = Distiller(student, {"hidden_mse": 1.0, "embedding_mse": 1.0}, teacher=teacher)
    assert distiller.modules["hidden_mse"].weight.shape == (64, 32)
    assert distiller.modules["embedding_mse"].weight.shape == (64, 32)


# ----------------------------------------------------------------------------- two tokenizers


@pytest.fixture(scope="module")
def pair(family_dirs, tiny_model_dir) -> models.TokenizerPair:
    tokenizers = models.load_tokenizers(family_dirs["mpnet"], tiny_model_dir)
    assert isinstance(tokenizers, models.TokenizerPair)
    return tokenizers


def test_one_vocabulary_needs_no_pair(tiny_model_dir, tmp_path):
    copy = models.save_model(models.build_student(2, tiny_model_dir), tmp_path / "s",
                             models.load_tokenizer(tiny_model_dir))
    assert not isinstance(models.load_tokenizers(tiny_model_dir, copy), models.TokenizerPair)


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_mpnet_and_bert_tokens_align_where_their_pieces_match(kind, pair, toy_tasks, tiny_model_dir):
    task = toy_tasks[kind]
    data = encode(task.train, pair, task.spec, 64)
    alone = encode(task.train, models.load_tokenizer(tiny_model_dir), task.spec, 64)
    view = data.views[pair.student_vocab]
    assert view.input_ids == alone.input_ids and view.pad_id == 0 and data.pad_id == 1  # each its own ids
    assert data.input_ids != view.input_ids
    assert all(p is not None for p in view.positions)
    role = {"[CLS]": "<s>", "[SEP]": "</s>"}
    for t_ids, s_ids, positions in zip(data.input_ids, view.input_ids, view.positions):
        t_tok, s_tok = pair.teacher.convert_ids_to_tokens(t_ids), pair.student.convert_ids_to_tokens(s_ids)
        assert [t_tok[p] for p in positions] == [role.get(s, s) for s in s_tok]
        first_sep = s_tok.index("[SEP]")
        # <s> a </s></s> b </s>: the student's tokens after the first [SEP] sit one further on
        assert positions == [j if j <= first_sep else j + 1 for j in range(len(s_tok))] if kind == "pair" \
            else positions == list(range(len(s_tok)))


def test_each_model_reads_its_own_tokens_and_saves_its_own_tokenizer(pair, family_dirs, tiny_model_dir, toy_tasks,
                                                                    tmp_path):
    task = toy_tasks["pair"]
    data = encode(task.val, pair, task.spec, 64)
    teacher = models.build_teacher(2, family_dirs["mpnet"]).eval()
    student = models.build_student(2, tiny_model_dir, num_layers=2).eval()
    alone = encode(task.val, models.load_tokenizer(tiny_model_dir), task.spec, 64)
    assert torch.equal(predict(student, data), predict(student, alone))
    mpnet_alone = encode(task.val, models.load_tokenizer(family_dirs["mpnet"]), task.spec, 64)
    assert torch.equal(predict(teacher, data), predict(teacher, mpnet_alone))
    for model, vocab in ((student, pair.student_vocab), (teacher, pair.teacher_vocab)):
        folder = models.save_model(model, tmp_path / vocab, pair)
        assert models.vocab_fingerprint(models.load_tokenizer(folder)) == vocab


def test_texts_split_into_other_pieces_fail_clearly_before_training(family_dirs, toy_tasks):
    task = toy_tasks["single"]
    tokenizers = models.load_tokenizers(family_dirs["mpnet"], family_dirs["bert_other"])
    data = encode(task.train, tokenizers, task.spec, 64)
    teacher = models.build_teacher(2, family_dirs["mpnet"])
    student = models.build_student(2, family_dirs["bert_other"], num_layers=2)
    distiller = Distiller(student, {"hidden_mse": 1.0, "dark_ce": 1.0}, teacher=teacher)
    with pytest.raises(ConfigError, match=r"\['hidden_mse'\] compare .* token by token.*different pieces, e\.g\. "
                                          r"'[^']*movie[^']*': the teacher's tokenizer gives \[<s> .*movie.*</s>\], "
                                          r"the student's \[\[CLS\] .*mov ##ie.*\[SEP\]\]"):
        distiller.check_tokens(data)
    bad = [i for i, p in enumerate(data.views[tokenizers.student_vocab].positions) if p is None]
    good = [i for i, p in enumerate(data.views[tokenizers.student_vocab].positions) if p is not None]
    assert bad and good  # texts with 'movie' only
    with pytest.raises(ConfigError, match=rf"examples \[{bad[0]}\]"):
        distiller.losses(data.batch([bad[0], good[0]]), teacher)
    # losses on logits need no alignment
    logits_only = Distiller(student, {"dark_ce": 1.0, "hard_ce": 1.0}, teacher=teacher)
    logits_only.check_tokens(data)
    assert torch.isfinite(logits_only.losses(data.batch(bad[:4]), teacher)["loss"])


def test_a_student_of_another_vocabulary_without_its_tokens_is_refused(family_dirs, tiny_model_dir, toy_tasks):
    task = toy_tasks["single"]
    teacher_only = encode(task.train, models.load_tokenizer(family_dirs["mpnet"]), task.spec, 64)
    distiller = Distiller(models.build_student(2, tiny_model_dir, num_layers=2), {"dark_ce": 1.0},
                          teacher=models.build_teacher(2, family_dirs["mpnet"]))
    with pytest.raises(ConfigError, match="holds the teacher's ids only.*load_tokenizers"):
        distiller.check_tokens(teacher_only)


def test_teacher_outputs_move_to_the_student_tokens():
    """A pair: teacher <s> a </s></s> b </s> (6 tokens), student [CLS] a [SEP] b [SEP] (5)."""
    positions = torch.tensor([[0, 1, 2, 4, 5], [0, 1, 2, -1, -1]])  # second row: 3 student tokens
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    hidden = torch.arange(2 * 6 * 2, dtype=torch.float32).view(2, 6, 2)
    scores = torch.randn(2, 3, 6, 6)
    probs = torch.softmax(scores, -1)
    from augrl.kd import Outputs

    moved = to_student_tokens(Outputs(torch.zeros(2, 2), (hidden,), (probs,), (scores,), (hidden,)), positions, mask)
    assert torch.equal(moved.hidden_states[0][0], hidden[0, [0, 1, 2, 4, 5]])
    assert torch.equal(moved.hidden_states[0][1, 3:], torch.zeros(2, 2)) and torch.equal(moved.mask, mask)
    keep = [0, 1, 2, 4, 5]
    assert torch.equal(moved.attention_scores[0][0], scores[0][:, keep][:, :, keep])
    expected = torch.softmax(scores[0][:, keep][:, :, keep], -1)  # the distribution over the student's pieces
    assert torch.allclose(moved.attentions[0][0], expected, atol=1e-6)
    assert torch.allclose(moved.attentions[0][1, :, :3, :3].sum(-1), torch.ones(3, 3), atol=1e-6)


# ----------------------------------------------------------------------------- distillation


def _no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def test_hidden_mse_compares_the_same_pieces_across_families(pair, family_dirs, tiny_model_dir, toy_tasks):
    task = toy_tasks["pair"]
    data = encode(task.train, pair, task.spec, 64)
    teacher = models.build_teacher(2, family_dirs["mpnet"]).eval()
    student = _no_dropout(models.build_student(2, tiny_model_dir, num_layers=2))
    distiller = Distiller(student, {"hidden_mse": 1.0}, teacher=teacher, layer_map="2:1,4:2")
    batch = data.batch(range(4))
    with torch.no_grad():
        got = distiller.losses(batch, teacher)["hidden_mse"]
        s = student(**models.model_inputs(student, batch), output_hidden_states=True).hidden_states
        t = teacher(**models.model_inputs(teacher, batch), output_hidden_states=True).hidden_states
        w = distiller.modules["hidden_mse"]
        total = torch.zeros(4)
        for t_layer, s_layer in ((2, 1), (4, 2)):
            for row in range(4):
                n = int(batch[models.view_key("attention_mask", pair.student_vocab)][row].sum())
                first_sep = models.view_key("input_ids", pair.student_vocab)
                sep = int((batch[first_sep][row] == pair.student.sep_token_id).nonzero()[0])
                t_rows = [j if j <= sep else j + 1 for j in range(n)]
                total[row] += ((w(s[s_layer][row, :n]) - t[t_layer][row, t_rows]) ** 2).mean()
    assert got.item() == pytest.approx(total.mean().item(), rel=1e-5)


def test_short_distillation_from_an_mpnet_teacher_into_a_bert_student(pair, family_dirs, tiny_model_dir, toy_tasks):
    task = toy_tasks["single"]
    train, val = (encode(d, pair, task.spec, 64) for d in (task.train, task.val))
    torch.manual_seed(0)
    teacher = models.build_teacher(2, family_dirs["mpnet"])
    student = models.build_student(2, tiny_model_dir, num_layers=2)
    cfg = TrainConfig(batch_size=4, max_steps=3, lr=1e-2)
    distiller = Distiller.from_train_config(student, {"dark_ce": 1.0, "hidden_mse": 1.0}, cfg,
                                            total_steps=total_steps(len(train), cfg), device="cpu", teacher=teacher)
    distiller.check_tokens(train)
    cache = TeacherCache.from_model(teacher, train, distiller.teacher_needs(), dtype="float32")
    before = distiller.modules["hidden_mse"].weight.detach().clone()
    result = fit(student, train, val, task.spec, cfg, teacher=cache, distiller=distiller, progress=False)
    assert result.steps == 3 and distiller.steps == 3
    assert not torch.equal(before, distiller.modules["hidden_mse"].weight)
    student.eval()
    terms = distiller.losses(train.batch(range(4)), cache)
    assert torch.isfinite(terms["loss"]) and terms["hidden_mse"] > 0 and terms["dark_ce"] >= 0
    # the cached teacher gives the live teacher's losses at the student's tokens
    live = distiller.losses(train.batch(range(4)), teacher)
    assert terms["hidden_mse"].item() == pytest.approx(live["hidden_mse"].item(), rel=1e-4)


def test_rows_of_a_batch_are_cut_per_tokenisation(pair, toy_tasks):
    """The environment trains on some rows of an observed batch: each tokenisation is cut to its
    own longest chosen example, exactly as a batch of those rows alone."""
    task = toy_tasks["pair"]
    data = encode(task.train, pair, task.spec, 64)
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    chosen = [order[0], order[1]]  # the two shortest next to the longest
    batch = data.batch([order[-1], *chosen])
    sub = models.batch_rows(batch, torch.tensor([1, 2]))
    alone = data.batch(chosen)
    assert sub.keys() == alone.keys()
    for key in alone:
        assert torch.equal(sub[key], alone[key]), key
