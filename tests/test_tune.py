"""Ray Tune search (augrl.tune): logical-GPU placement, fail-once retry from a checkpoint,
resume without repeating finished trials, result lines and report, CLI (tiny models, toy task).

One local Ray (2 CPUs, 2 *logical* GPUs) serves the module: no test here needs a real GPU.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from augrl import bench, spaces
from augrl.cli import main
from augrl.errors import ConfigError
from augrl.pipelines import RunConfig
from augrl.results import read_jsonl
from augrl.training import TrainConfig

SPACE = ("params:\n"
         "  config.temperature: {uniform: [1.0, 4.0]}\n"
         "  config.objective.dark_ce: {uniform: [0.5, 1.5]}\n")


BARRIER = '''"""Test helper imported by the trials: a KD method whose trials wait for each other."""
import os
import time
from pathlib import Path

from augrl import bench


def run(ctx):
    folder = Path(ctx.method.options["barrier"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    deadline = time.time() + 600  # a loaded machine can take minutes to start the second worker
    while len(list(folder.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.1)
    return bench.get("kd").run(ctx)


bench.register("kd+barrier", run, augments=False, options={"barrier": ""}, overwrite=True,
               description="kd, once two trials have started (concurrency test)")
'''


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory, augrl_cache, tiny_model_dir):
    """Ray started the way ``augrl tune`` starts it, with 2 logical GPUs on this CPU machine;
    the trials can import the test helper module ``augrl_test_barrier``."""
    import ray

    from augrl import tune as augrl_tune

    folder = tmp_path_factory.mktemp("ray")
    (folder / "augrl_test_barrier.py").write_text(BARRIER)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
        mp.syspath_prepend(str(folder))
        assert augrl_tune.start_ray(folder, num_cpus=2, num_gpus=2)
        yield ray
        ray.shutdown()


@pytest.fixture
def base(tiny_model_dir) -> RunConfig:
    small = TrainConfig(epochs=1, batch_size=8, max_steps=1)
    return RunConfig(teacher=str(tiny_model_dir), student_init=str(tiny_model_dir), teacher_train=small,
                     student_train=small, device="auto")


def _settings(toy_tasks, tmp_path, **kw):
    from augrl.tune import TuneSettings

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    defaults = dict(task=str(toy_tasks["single_file"]), method="kd", space=str(space), num_samples=2, shots=8,
                    max_steps=1, scheduler="fifo", cpus_per_trial=1, final="none")
    return TuneSettings(**{**defaults, **kw})


def _lines(out):
    records, bad = read_jsonl(out / "results.jsonl")
    assert not bad
    return [r for r in records if r["command"] == "tune"]


def test_logical_gpus_concurrent_trials_lines_final_and_report(ray_session, toy_tasks, base, tmp_path):
    from augrl.tune import run_tune

    out = tmp_path / "search"
    space = tmp_path / "barrier.yaml"  # the trials wait for each other, so they run at the same time
    space.write_text(SPACE + f"  options.barrier: {tmp_path / 'started'}\n")
    settings = _settings(toy_tasks, tmp_path, method="kd+barrier", space=str(space), imports=["augrl_test_barrier"],
                         gpus_per_trial=1, final="best+default")
    summary = run_tune(settings, base, out, progress=False)
    assert summary["errors"] == [] and not summary["interrupted"] and summary["trials"] == 2
    lines = _lines(out)
    assert len(lines) == 2 and len({r["trial"]["id"] for r in lines}) == 2
    for r in lines:
        assert r["method"] == "kd+barrier" and r["task"] == "toy" and r["seeds"] == [0] and r["shots"] == 8
        assert set(r["metrics"]) == {"val"} and "accuracy" in r["metrics"]["val"]  # a trial never sees test
        assert all(set(s) == {"seed", "val", "wall_time_s", "config_hash", "attempt"} for s in r["per_seed"])
        assert set(r["sampled"]) == {"config.temperature", "config.objective.dark_ce", "options.barrier"}
        assert r["config"]["temperature"] == pytest.approx(r["sampled"]["config.temperature"])
        assert r["objective"]["dark_ce"] == pytest.approx(r["sampled"]["config.objective.dark_ce"])
        assert len(r["ray"]["gpu_ids"]) == 1 and r["ray"]["cuda_visible_devices"] == r["ray"]["gpu_ids"][0]
        assert r["ray"]["device"] == "cpu" and r["ray"]["cuda_available"] is False  # logical GPU: CPU fallback
        assert r["ray"]["torch_threads"] == 1 and r["versions"]["torch"] and r["wall_time_s"] > 0
    a, b = (r["ray"] for r in lines)
    overlap = a["started_at"] < b["ended_at"] and b["started_at"] < a["ended_at"]
    assert overlap, "the two trials should have run at the same time (2 CPUs, 2 GPUs, 1 of each per trial)"
    assert a["gpu_ids"] != b["gpu_ids"] and a["pid"] != b["pid"]

    best = summary["best"]
    assert best["val"]["accuracy"] == max(r["metrics"]["val"]["accuracy"] for r in lines)
    finals, _ = read_jsonl(out / "final.jsonl")
    assert sorted(r["role"] for r in finals) == ["best", "default"]
    for r in finals:
        assert r["command"] == "tune-final" and set(r["metrics"]["test"]) == {"accuracy", "f1"}
    assert {r["role"]: r["sampled"] for r in finals} == {"best": best["sampled"],
                                                         "default": {"options.barrier": str(tmp_path / "started")}}
    assert set(summary["final"]) == {"best", "default"}

    table = (out / "table.md").read_text()
    assert "Search" in table and "config.temperature" in table and best["trial_id"] in table
    assert (out / "search.png").stat().st_size > 5000
    assert main(["report", str(out), "--json"]) == 0


def test_a_trial_that_fails_once_is_retried_from_its_checkpoint(ray_session, toy_tasks, base, tmp_path):
    from augrl.tune import run_tune

    marker = tmp_path / "failed-once"
    settings = _settings(toy_tasks, tmp_path, num_samples=1, seeds=2, max_failures=1, fail_once=str(marker))
    summary = run_tune(settings, base, tmp_path / "search", progress=False)
    assert marker.exists() and summary["errors"] == []
    (line,) = _lines(tmp_path / "search")
    trial = line["trial"]
    assert trial["attempts"] == 2 and trial["restored_from_checkpoint"] and trial["complete"]
    # seed 0 finished before the crash and was kept; only seed 1 ran on the second attempt
    assert [(s["seed"], s["attempt"]) for s in line["per_seed"]] == [(0, 1), (1, 2)]


class _InterruptAfterFirst:
    """Sends this process SIGINT (Ctrl+C) once the first trial has finished."""

    def __new__(cls):
        from ray import tune

        class Interrupt(tune.Callback):
            def on_trial_complete(self, iteration, trials, trial, **info):
                os.kill(os.getpid(), signal.SIGINT)

        return Interrupt()


def test_resume_continues_without_repeating_finished_trials(ray_session, toy_tasks, base, tmp_path):
    from ray import tune

    from augrl.tune import run_tune

    out = tmp_path / "search"
    settings = _settings(toy_tasks, tmp_path, num_samples=2, max_concurrent=1)
    first = run_tune(settings, base, out, progress=False, callbacks=[_InterruptAfterFirst()])
    assert first["interrupted"] and first["final"] is None
    done = {r["trial"]["id"] for r in _lines(out)}
    assert len(done) == 1

    started = []

    class Started(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            started.append(trial.trial_id)

    with pytest.raises(ConfigError, match="--resume"):  # the same --out without --resume
        run_tune(settings, base, out, progress=False)
    again = run_tune(out=out, resume=True, progress=False, callbacks=[Started()])
    assert not again["interrupted"] and again["errors"] == []
    lines = _lines(out)
    ids = [r["trial"]["id"] for r in lines]
    assert len(ids) == 2 == len(set(ids)) and done <= set(ids)
    assert set(started) == set(ids) - done, "a finished trial was run again, or an unfinished one was not"

    # a finished search's final test is extended on resume; trials and done final runs are not repeated
    with pytest.raises(ConfigError, match="resume"):
        run_tune(settings, base, tmp_path / "other", final="best", progress=False)
    started.clear()
    tested = run_tune(out=out, resume=True, final="best", final_seeds="0,1", progress=False, callbacks=[Started()])
    assert started == [] and tested["trials"] == 2 and tested["new_trials"] == 0
    assert set(tested["final"]) == {"best"} and tested["final"]["best"]["seeds"] == [0, 1]
    assert tested["final_seconds"] > 0
    saved = json.loads((out / "tune.json").read_text())["settings"]
    assert saved["final"] == "best" and saved["final_seeds"] == [0, 1]
    again = run_tune(out=out, resume=True, final_seeds="1,2", progress=False)
    finals, _ = read_jsonl(out / "final.jsonl")
    assert sorted(r["seed"] for r in finals) == [0, 1, 2], "a final run already done was repeated"
    assert again["final"]["best"]["seeds"] == [1, 2] and started == []


def test_max_concurrent_one_runs_trials_one_at_a_time(ray_session, toy_tasks, base, tmp_path):
    """Ray ignores TuneConfig.max_concurrent_trials when given a BasicVariantGenerator; the
    limit must still hold (the scaling figure measures exactly this)."""
    from augrl.tune import run_tune

    out = tmp_path / "serial"
    summary = run_tune(_settings(toy_tasks, tmp_path, num_samples=2, max_concurrent=1, final="none"), base, out,
                       progress=False)
    assert summary["trials"] == 2 and summary["errors"] == []
    first, second = sorted((r["ray"]["started_at"], r["ray"]["ended_at"]) for r in _lines(out))
    assert first[1] <= second[0], f"trials overlapped: {first} and {second}"
    # each trial gets a fresh worker, so what one trial leaves in memory never adds up
    assert len({r["ray"]["pid"] for r in _lines(out)}) == 2


def test_cli_tune_json_and_clear_errors(ray_session, toy_tasks, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    args = ["tune", "--task", str(toy_tasks["single_file"]), "--method", "kd", "--space", str(space),
            "--num-samples", "1", "--shots", "8", "--max-steps", "1", "--teacher", str(tiny_model_dir),
            "--epochs", "1", "--batch-size", "8", "--scheduler", "asha", "--final", "none", "--out", str(out), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["trials"] == 1 and summary["errors"] == [] and len(_lines(out)) == 1

    # --resume keeps the saved search, as Tuner.restore does: each other flag given is named, and ignored
    assert main(["tune", "--resume", str(out), "--num-samples", "3", "--method", "kd+eda", "--final", "none",
                 "--json"]) == 0
    captured = capsys.readouterr()
    resumed = json.loads(captured.out.strip().splitlines()[-1])
    assert resumed["trials"] == 1 and resumed["new_trials"] == 0 and len(_lines(out)) == 1
    warnings = [line for line in captured.err.splitlines() if "--resume continues the saved search" in line]
    assert len(warnings) == 2
    assert "ignores --method kd+eda (the saved search has method='kd')" in warnings[0]
    assert "ignores --num-samples 3 (the saved search has num_samples=1)" in warnings[1]

    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  augmenter.alpah_sr: {uniform: [0, 0.3]}\n")
    assert main(["tune", "--method", "kd+eda", "--space", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "augmenter.alpah_sr" in err and "alpha_sr" in err
    if _no_optuna():  # optuna is optional: a clear error, before any trial runs
        assert main(["tune", "--method", "kd", "--search", "optuna", "--space", str(space), "--out",
                     str(tmp_path / "y")]) == 2
        assert "pip install optuna" in capsys.readouterr().err
    assert main(["tune", "--resume", str(tmp_path / "nothing")]) == 2
    assert "--resume takes" in capsys.readouterr().err


def test_resume_names_each_ignored_flag_and_only_those(toy_tasks, tmp_path):
    """The flags that differ from the parser's defaults, but for --final, --final-seeds and
    how the run talks to Ray, are named with the value the saved search keeps."""
    from augrl.cli import _ignored_on_resume, build_parser

    saved = _settings(toy_tasks, tmp_path, num_samples=4, seeds=[0, 1], imports=["mine"])
    args = build_parser().parse_args(["tune", "--resume", "DIR", "--final-seeds", "5", "--final", "best",
                                      "--address", "auto", "--verbose", "--quiet", "--json"])
    assert _ignored_on_resume(args, saved) == []
    args = build_parser().parse_args(["tune", "--resume", "DIR", "--num-samples", "16", "--seeds", "3",
                                      "--teacher", "bert-base-uncased", "--import", "a", "--import", "b",
                                      "--keep-leaky-source", "--out", "elsewhere", "--final-seeds", "5"])
    lines = _ignored_on_resume(args, saved)
    ignored = [line.split(" ignores ")[1].split(" (")[0].split("; ")[0] for line in lines]
    assert ignored == ["--num-samples 16", "--seeds 3", "--out elsewhere", "--import a --import b",
                       "--teacher bert-base-uncased", "--keep-leaky-source"]
    assert "(the saved search has num_samples=4)" in lines[0] and "(the saved search has seeds=[0, 1])" in lines[1]
    assert "(the saved search has imports=['mine'])" in lines[3]
    assert all("only --final and --final-seeds change a resumed search" in line for line in lines)


def _no_optuna() -> bool:
    import importlib.util

    return importlib.util.find_spec("optuna") is None


def test_shipped_spaces_fit_their_methods_and_keys_are_checked(tmp_path):
    base = RunConfig(device="cpu")
    names = spaces.preset_names()
    assert {"tune-kd", "tune-eda", "tune-tang", "tune-l2a", "tune-rl"} <= set(names)
    assert not set(names) & set(bench.preset_names())
    for name in names:
        space = spaces.load_space(name)
        assert space.searched() and space.methods
        for method in space.methods:
            assert spaces.default_space(method) == name
            spaces.check_space(space, bench.get(method), base)
    l2a = spaces.load_space("tune-l2a").params
    assert {"augmenter.alpha", "augmenter.temperature", "augmenter.top_k", "env.source_fraction", "env.batch_size",
            "env.reward", "options.selector.gamma"} <= set(l2a)
    method, settings = spaces.apply_sample(bench.get("kd+ppo"), base, bench.BenchSettings(methods=["kd+ppo"]),
                                           {"options.gamma": 0.9, "env.reward": "loss", "env.batch_size": 8,
                                            "variants": 2})
    assert method.options["gamma"] == 0.9
    assert method.options["env"] == {"episode_length": 10, "reward": "loss", "batch_size": 8}
    assert settings.variants == 2 and bench.get("kd+ppo").options["gamma"] == 0.0  # the registry is untouched

    user = tmp_path / "mine.yaml"
    user.write_text("base: tune-eda\nparams:\n  variants: 4\n  config.temperature: null\n")
    mine = spaces.load_space(str(user))
    assert mine.params["variants"] == 4 and "config.temperature" not in mine.params and "augmenter.alpha_sr" in mine.params
    for text, message in [("params:\n  env.batch_size: {choice: [8]}\n", "does not act in the AugmentKD"),
                          ("params:\n  config.seed: {int: [0, 3]}\n", "fixed for the search"),
                          ("params:\n  augmenter.alpha_sr: {loguniform: [0, 1]}\n", "lo > 0"),
                          ("params:\n  augmenter.alpha_sr: {normal: [0, 1]}\n", "write one of"),
                          ("parms: {}\n", "unknown key")]:
        user.write_text(text)
        with pytest.raises(ConfigError, match=message) as err:
            spaces.check_space(spaces.load_space(str(user)), bench.get("kd+eda"), base)
        assert str(user) in str(err.value)


@pytest.mark.integration
def test_integration_rt_kd_eda_two_trials(ray_session, data_root, tmp_path, capsys):
    out = tmp_path / "rt"
    assert main(["tune", "--task", "rt", "--method", "kd+eda", "--num-samples", "2", "--shots", "8", "--max-steps",
                 "3", "--cpus-per-trial", "1", "--out", str(out), "--json", "--final", "none"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["errors"] == [] and len(_lines(out)) == 2
