"""The artifact store: content keys, verification of entries, locking, clean-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from augrl import artifacts, models


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("AUGRL_CACHE", str(root))
    return root


def _builder(calls: list, payload: bytes = b"x" * 1000):
    def build(folder: Path) -> dict:
        calls.append(folder)
        (folder / "model.safetensors").write_bytes(payload)
        (folder / "sub").mkdir()
        (folder / "sub" / "vocab.json").write_text("[1, 2, 3]")
        return {"accuracy": 0.5}

    return build


def test_entry_is_built_once_and_records_file_sizes(cache):
    calls: list = []
    folder, meta = artifacts.cached_build("mlm", "enc", {"a": 1}, _builder(calls))
    again, meta2 = artifacts.cached_build("mlm", "enc", {"a": 1}, _builder(calls))
    assert len(calls) == 1 and again == folder and folder.parent == cache / "mlm"
    assert meta["files"] == {"model.safetensors": 1000, "sub/vocab.json": 9}
    assert meta2 == json.loads(json.dumps(meta)) and meta["accuracy"] == 0.5
    other, _ = artifacts.cached_build("mlm", "enc", {"a": 2}, _builder(calls))
    assert other != folder and len(calls) == 2


@pytest.mark.parametrize("damage", ["truncate", "delete", "meta"])
def test_a_damaged_entry_is_reported_and_rebuilt(cache, damage):
    calls: list = []
    folder, _ = artifacts.cached_build("teacher", "t", {"k": 1}, _builder(calls))
    if damage == "truncate":  # a kill while copying the weights, a full disk...
        (folder / "model.safetensors").write_bytes(b"x" * 10)
    elif damage == "delete":
        (folder / "sub" / "vocab.json").unlink()
    else:
        (folder / artifacts.META_FILE).write_text('{"key": ')
    assert artifacts.read_meta(folder) is None and artifacts.entry_problem(folder)
    said: list[str] = []
    again, meta = artifacts.cached_build("teacher", "t", {"k": 1}, _builder(calls), say=said.append)
    assert len(calls) == 2 and again == folder
    assert (folder / "model.safetensors").stat().st_size == 1000 and artifacts.entry_problem(folder) is None
    assert len(said) == 1 and "building it again" in said[0] and str(folder) in said[0]
    if damage == "truncate":
        assert "model.safetensors has 10 bytes, 1000 expected" in said[0]


def test_a_failed_build_leaves_nothing_and_leftovers_are_cleaned(cache):
    def failing(folder: Path) -> dict:
        (folder / "half").write_text("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        artifacts.cached_build("mlm", "enc", {"a": 1}, failing)
    final = artifacts.entry_dir("mlm", "enc", {"a": 1})
    assert not final.exists() and not list(final.parent.glob(f".{final.name}-*"))
    leftover = final.parent / f".{final.name}-abc123"  # what a SIGKILLed build leaves behind
    leftover.mkdir()
    (leftover / "model.safetensors").write_text("half")
    artifacts.cached_build("mlm", "enc", {"a": 1}, _builder([]))
    assert not leftover.exists() and artifacts.read_meta(final) is not None


def test_concurrent_builders_of_one_entry_build_it_once(cache, tmp_path):
    log = tmp_path / "builds.log"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from augrl import artifacts, models

        def build(folder):
            with open({str(log)!r}, "a") as f:
                f.write("built\\n")
            time.sleep(1.5)
            (folder / "model.bin").write_bytes(b"w" * 100)
            return {{}}

        folder, meta = artifacts.cached_build("teacher", "shared", {{"k": 1}}, build)
        print(folder, meta["files"]["model.bin"])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert log.read_text().count("built") == 1
    assert outs[0][0] == outs[1][0] and outs[0][0].strip().endswith(" 100")
    assert sum("waiting for it" in err for _, err in outs) == 1


def _yaml_task(folder: Path, words: list[str]) -> Path:
    folder.mkdir()
    rows = ["text,label"] + [f"{w} film {w},{'pos' if i % 2 else 'neg'}" for i, w in enumerate(words)]
    (folder / "data.csv").write_text("\n".join(rows) + "\n")
    (folder / "task.yaml").write_text("name: task\nkind: classification\ntext: text\nlabel: label\n"
                                      "labels: [neg, pos]\ntarget: {all: data.csv}\nval_size: 4\ntest_size: 4\n")
    return folder / "task.yaml"


def test_tasks_of_one_name_and_size_with_other_text_get_other_entries(cache, tmp_path):
    from augrl.baselines.corpus import task_key
    from augrl.tasks import load_task

    words_a = [f"alpha{i}" for i in range(16)]
    words_b = [f"beta{i}" for i in range(16)]
    a = load_task(str(_yaml_task(tmp_path / "a", words_a)), shots=4, seed=0)
    b = load_task(str(_yaml_task(tmp_path / "b", words_b)), shots=4, seed=0)
    assert len(a.train) == len(b.train) and a.spec.name == b.spec.name
    assert task_key(a) != task_key(b)
    assert task_key(a) == task_key(load_task(str(tmp_path / "a" / "task.yaml"), shots=4, seed=0))
    # the POS vocabulary of task B holds B's words, not A's (it used to come back as A's)
    from augrl import baselines

    vocab_a = baselines.get("pos").fit(a).vocabulary
    vocab_b = baselines.get("pos").fit(b).vocabulary
    words_in = lambda vocab: {w for ws in vocab.counts.values() for w in ws}  # noqa: E731
    assert any(w.startswith("beta") for w in words_in(vocab_b))
    assert not any(w.startswith("alpha") for w in words_in(vocab_b))
    assert len(list((cache / "pos-vocab").glob("task-*"))) == 2 and vocab_a is not vocab_b


def test_model_key_follows_the_weights(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"a" * 64)
    first = models.model_key(str(folder))
    (folder / "model.safetensors").write_bytes(b"b" * 64)  # same size, other weights
    os.utime(folder / "model.safetensors", ns=(1, 1))  # whatever the clock's granularity
    assert models.model_key(str(folder)) != first


def test_distill_twice_on_one_split_fine_tunes_the_teacher_once(toy_tasks, tiny_model_dir, augrl_cache,
                                                                 single_thread, monkeypatch):
    from augrl import teachers
    from augrl.methods import run_distill
    from augrl.pipelines import RunConfig
    from augrl.training import TrainConfig

    trained = []
    real = teachers.train_teacher

    def counting(*args, **kwargs):
        trained.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(teachers, "train_teacher", counting)
    small = TrainConfig(epochs=1, batch_size=8, max_steps=2)
    cfg = RunConfig(task=str(toy_tasks["single_file"]), shots=8, seed=5, teacher=str(tiny_model_dir),
                    student_init=str(tiny_model_dir), teacher_train=small, student_train=small, device="cpu")
    first = run_distill(cfg, progress=False)
    second = run_distill(cfg, progress=False)
    assert len(trained) == 1
    assert first["teacher"]["cached"] is False and second["teacher"]["cached"] is True
    assert first["teacher_metrics"] == second["teacher_metrics"]
