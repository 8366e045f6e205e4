"""Teacher outputs through the artifact store (augrl.kd.stored_outputs) and TeacherCache.select."""

import pytest
import torch

from augrl import models
from augrl.artifacts import cache_root
from augrl.batching import encode
from augrl.kd import Needs, TeacherCache
from augrl.kd import stored_outputs
from augrl.kd.stored_outputs import teacher_outputs
from augrl.tasks import load_task

NEEDS = Needs.of(hidden_states=[0, 2], attention_scores=[2], attentions=[1], values=[2])


@pytest.fixture
def teacher_and_data(toy_task, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AUGRL_CACHE", str(tmp_path / "cache"))  # this test's entries alone
    task = load_task(str(toy_task), shots=8, seed=0)
    data = encode(task.train, models.load_tokenizer(tiny_model_dir), task.spec, 32)
    stored_outputs.clear_memo()
    yield models.build_teacher(2, tiny_model_dir), data
    stored_outputs.clear_memo()


def test_select_is_the_cache_of_the_subset(teacher_and_data):
    teacher, data = teacher_and_data
    full = TeacherCache.from_model(teacher, data, NEEDS, batch_size=4, dtype="float32")
    rows = [5, 0, 9, 3, 3]
    picked, direct = full.select(rows), TeacherCache.from_model(teacher, data.subset(rows), NEEDS, batch_size=4,
                                                                dtype="float32")
    assert picked.stored() == NEEDS and len(picked) == len(rows)
    index = torch.arange(len(rows))
    a, b = picked[index], direct[index]
    assert torch.allclose(a.logits, b.logits, atol=1e-5) and torch.equal(a.mask, b.mask)
    for kind in ("hidden_states", "attention_scores", "attentions", "values"):
        for x, y in zip(getattr(a, kind), getattr(b, kind)):
            assert (x is None) == (y is None)
            if x is not None:
                assert torch.allclose(x, y, atol=1e-4), kind
    assert full.select([]).logits.shape == (0, full.logits.shape[1])


def test_outputs_are_computed_once_then_read_from_memory_and_disk(teacher_and_data, monkeypatch):
    teacher, data = teacher_and_data
    first = teacher_outputs(teacher, data, NEEDS, batch_size=4)
    assert teacher_outputs(teacher, data, NEEDS, batch_size=4) is first  # the in-process memo
    entries = list((cache_root() / stored_outputs.KIND).glob("n*"))
    assert len(entries) == 1
    stored_outputs.clear_memo()

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher ran again")

    monkeypatch.setattr(TeacherCache, "from_model", no_teacher)
    again = teacher_outputs(teacher, data, NEEDS, batch_size=4)  # from disk
    assert again is not first and torch.equal(again.logits, first.logits)
    assert torch.equal(again.layers["hidden_states"][2], first.layers["hidden_states"][2])
    with pytest.raises(AssertionError, match="ran again"):  # other layers, other examples: other entries
        teacher_outputs(teacher, data, Needs(), batch_size=4)
    with pytest.raises(AssertionError, match="ran again"):
        teacher_outputs(teacher, data.subset([0, 1]), NEEDS, batch_size=4)


def test_changed_weights_and_large_caches(teacher_and_data, monkeypatch):
    teacher, data = teacher_and_data
    before = teacher_outputs(teacher, data, Needs())
    with torch.no_grad():  # an in-place change of the weights is another teacher
        next(teacher.parameters()).add_(1.0)
    after = teacher_outputs(teacher, data, Needs())
    assert after is not before and not torch.equal(after.logits, before.logits)
    monkeypatch.setenv("AUGRL_OUTPUTS_DISK_MB", "0")  # too large for the disk: memory only
    n = len(list((cache_root() / stored_outputs.KIND).glob("n*")))
    teacher_outputs(teacher, data.subset([1, 2, 3]), NEEDS)
    assert len(list((cache_root() / stored_outputs.KIND).glob("n*"))) == n
