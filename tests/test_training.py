import dataclasses

import pytest
import torch

from augrl import models
from augrl.batching import encode
from augrl.errors import ConfigError
from augrl.kd import Distiller, TeacherCache
from augrl.pipelines import RunConfig
from augrl.tasks import load_task
from augrl.training import TrainConfig, evaluate, fit


@pytest.fixture
def toy(toy_task, tiny_model_dir):
    task = load_task(str(toy_task), shots=20, seed=0)
    tok = models.load_tokenizer(tiny_model_dir)
    return task, [encode(d, tok, task.spec, 32) for d in (task.train, task.val, task.test)]


def test_fit_learns_a_separable_task(toy, tiny_model_dir):
    task, (train, val, test) = toy
    torch.manual_seed(0)
    model = models.build_teacher(2, tiny_model_dir)
    before = evaluate(model, test, task.spec)["accuracy"]
    result = fit(model, train, val, task.spec, TrainConfig(epochs=15, lr=3e-3, batch_size=8), progress=False)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.best_val["accuracy"] >= 0.9
    assert evaluate(model, test, task.spec)["accuracy"] > max(before, 0.85)


def test_fit_restores_the_best_epoch_and_caps_steps(toy, tiny_model_dir):
    task, (train, val, _) = toy
    model = models.build_teacher(2, tiny_model_dir)
    result = fit(model, train, val, task.spec, TrainConfig(epochs=50, lr=3e-3, batch_size=8, max_steps=7), progress=False)
    assert result.steps == 7 and len(result.history) == 2
    best = max(h["val_accuracy"] for h in result.history)
    assert evaluate(model, val, task.spec)["accuracy"] == pytest.approx(best)


def test_same_seed_same_weights(toy, tiny_model_dir):
    task, (train, val, _) = toy

    def run():
        torch.manual_seed(0)
        m = models.build_teacher(2, tiny_model_dir)
        fit(m, train, val, task.spec, TrainConfig(epochs=2, batch_size=8), seed=3, progress=False)
        return m.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kd_with_cached_teacher(toy, tiny_model_dir):
    task, (train, val, _) = toy
    teacher = models.build_teacher(2, tiny_model_dir)
    cache = TeacherCache.from_model(teacher, train)
    assert cache.logits.shape == (len(train), 2)
    # row i holds the frozen (eval-mode) teacher's logits on example i, whatever order it was computed in
    rows = [len(train) - 1, 0, 3]
    batch = train.batch(rows)
    with torch.no_grad():
        expected = teacher.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  token_type_ids=batch["token_type_ids"]).logits
    assert torch.allclose(cache.logits[rows], expected, atol=1e-5)
    student = models.build_student(2, tiny_model_dir)
    result = fit(student, train, val, task.spec, TrainConfig(epochs=2, batch_size=8),
                 objective={"dark_ce": 1, "hard_ce": 1}, loss_params={"dark_ce": {"temperature": 2}},
                 teacher=cache, progress=False)
    assert {"dark_ce", "hard_ce", "loss"} <= set(result.history[0])
    with pytest.raises(ValueError, match="teacher cache has"):
        fit(student, train, val, task.spec, TrainConfig(epochs=1), objective={"dark_ce": 1},
            teacher=TeacherCache(cache.logits[:3]), progress=False)


def test_distiller_needs_teacher_for_teacher_losses(toy, tiny_model_dir):
    _, (train, _, _) = toy
    d = Distiller(models.build_student(2, tiny_model_dir), {"dark_ce": 1})
    with pytest.raises(ValueError, match="needs teacher outputs"):
        d.step(train.batch(range(4)))
    terms = Distiller(models.build_student(2, tiny_model_dir), {"hard_ce": 1}).step(train.batch(range(4)))
    assert set(terms) == {"hard_ce", "loss"}


def test_long_texts_are_truncated(tiny_model_dir, toy):
    task, _ = toy
    import datasets
    long = datasets.Dataset.from_dict({"text": ["good " * 500], "label": [1]})
    enc = encode(long, models.load_tokenizer(tiny_model_dir), task.spec, max_length=16)
    assert len(enc.input_ids[0]) == 16


def test_config_round_trip_and_errors(tmp_path):
    cfg = RunConfig(task="rt", seed=3, teacher_train=TrainConfig(epochs=4))
    path = cfg.save(tmp_path / "run.yaml")
    assert RunConfig.load(path) == cfg
    (tmp_path / "bad.yaml").write_text("task: rt\nepochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown field\(s\) \['epochz'\]"):
        RunConfig.load(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        TrainConfig(epochs=0)
    assert dataclasses.replace(cfg).with_max_steps(5).student_train.max_steps == 5
