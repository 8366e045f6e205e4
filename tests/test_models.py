import pytest
import torch

from augrl import models
from augrl.errors import ConfigError


def _batch(ids):
    ids = torch.tensor(ids)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def test_teacher_mean_pooling_and_attentions(tiny_model_dir):
    teacher = models.build_teacher(2, tiny_model_dir, attentions=True)
    assert isinstance(teacher, models.BertMeanPoolClassifier)
    out = teacher(**_batch([[2, 8, 9, 3]]), output_attentions=True, output_hidden_states=True)
    assert out.logits.shape == (1, 2)
    assert len(out.attentions) == 4 and out.attentions[0].shape == (1, 4, 4, 4)
    assert len(out.hidden_states) == 5
    cls = models.build_teacher(1, tiny_model_dir, pooling="cls")
    assert not isinstance(cls, models.BertMeanPoolClassifier) and cls(**_batch([[2, 3]])).logits.shape == (1, 1)


def test_padding_does_not_change_mean_pooled_logits(tiny_model_dir):
    teacher = models.build_teacher(2, tiny_model_dir).eval()
    a = teacher(**_batch([[2, 8, 9, 3]])).logits
    b = _batch([[2, 8, 9, 3, 0, 0]])
    b["attention_mask"] = torch.tensor([[1, 1, 1, 1, 0, 0]])
    assert torch.allclose(a, teacher(**b).logits, atol=1e-5)


def test_student_takes_the_chosen_layers(tiny_model_dir):
    teacher = models.build_teacher(2, tiny_model_dir)
    student = models.build_student(2, tiny_model_dir, layers=[1, 3])
    assert student.config.num_hidden_layers == 2 and student.config.augrl_student_layers == [1, 3]
    t_layers, s_layers = teacher.bert.encoder.layer, student.bert.encoder.layer
    for s_idx, t_idx in enumerate([1, 3]):
        for (n, p), (_, q) in zip(s_layers[s_idx].named_parameters(), t_layers[t_idx].named_parameters()):
            assert torch.equal(p, q), n
    assert models.count_parameters(student) < models.count_parameters(teacher)
    assert models.build_student(2, tiny_model_dir).config.augrl_student_layers == [0, 1]
    with pytest.raises(ConfigError, match="must be indices"):
        models.build_student(2, tiny_model_dir, layers=[7])


def test_uniform_layer_map():
    assert models.uniform_layer_map(6, 2) == [2, 5]
    assert models.uniform_layer_map(12, 4) == [2, 5, 8, 11]
    with pytest.raises(ConfigError):
        models.uniform_layer_map(6, 7)


@pytest.mark.parametrize("kind", ["transformer", "bilstm", "textcnn"])
def test_save_load_round_trip_is_exact(kind, tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    model = models.build_student_of_kind(kind, 3, tiny_model_dir).eval()
    batch = _batch([[2, 8, 9, 10, 3], [2, 11, 3, 0, 0]])
    batch["attention_mask"] = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    before = model(**batch).logits
    models.save_model(model, tmp_path / kind, models.load_tokenizer(tiny_model_dir))
    loaded = models.load_model(tmp_path / kind).eval()
    assert type(loaded) is type(model)
    assert torch.equal(before, loaded(**batch).logits)
    assert models.load_tokenizer(tmp_path / kind)("good film")["input_ids"][0] == 2  # self-contained folder


def test_small_students_start_from_teacher_embeddings(tiny_model_dir):
    teacher = models.build_teacher(2, tiny_model_dir)
    for arch in ("bilstm", "textcnn"):
        s = models.build_small_student(arch, 2, tiny_model_dir)
        assert torch.equal(s.embeddings.weight, teacher.get_input_embeddings().weight)
        assert s(**_batch([[2, 3]])).logits.shape == (1, 2)  # shorter than the widest CNN kernel


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot load model"):
        models.build_teacher(2, tmp_path / "missing-model")
    with pytest.raises(ConfigError, match="unknown student"):
        models.build_student_of_kind("gru", 2)


def test_models_record_the_vocabulary_they_read(tiny_model_dir, tmp_path):
    vocab = models.vocab_fingerprint(models.load_tokenizer(tiny_model_dir))
    teacher = models.build_teacher(2, tiny_model_dir)
    assert teacher.config.augrl_vocab == vocab and models.model_vocab(teacher) == vocab
    assert models.build_student(2, tiny_model_dir).config.augrl_vocab == vocab
    folder = models.save_model(teacher, tmp_path / "t")
    assert models.model_vocab(models.load_model(folder)) == vocab  # kept in config.json
    # a folder without tokenizer files records nothing (transformers would make up an empty tokenizer)
    from transformers import BertModel

    BertModel.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "bare")
    assert models.model_vocab(models.build_teacher(2, tmp_path / "bare")) is None
    assert models.model_vocab(models.build_small_student("bilstm", 2, tiny_model_dir)) is None
