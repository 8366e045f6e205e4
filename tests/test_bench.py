"""The benchmark harness: result lines, resuming, reports, paired tests, presets (tiny models)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pytest

from augrl import bench, methods
from augrl.cli import main
from augrl.errors import ConfigError
from augrl.pipelines import RunConfig
from augrl.runtime import STAGES
from augrl.report import write_report
from augrl.results import append_jsonl, read_jsonl
from augrl.training import TrainConfig


@pytest.fixture
def base(tiny_model_dir, augrl_cache, single_thread) -> RunConfig:
    small = TrainConfig(epochs=1, batch_size=8, max_steps=2)
    return RunConfig(teacher=str(tiny_model_dir), student_init=str(tiny_model_dir), teacher_train=small,
                     student_train=small, device="cpu")


def _settings(toy_tasks, methods, **kw) -> bench.BenchSettings:
    return bench.BenchSettings(tasks=[str(toy_tasks["single_file"])], methods=methods, seeds=kw.pop("seeds", 1),
                               shots=[8], **kw)


def _cli(toy_tasks, tiny_model_dir, out, methods, *extra) -> list[str]:
    return ["bench", "--task", str(toy_tasks["single_file"]), "--methods", methods, "--seeds", "1", "--shots", "8",
            "--teacher", str(tiny_model_dir), "--epochs", "1", "--batch-size", "8", "--max-steps", "2",
            "--device", "cpu", "--quiet", "--out", str(out), *extra]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_two_runs_write_lines_tables_and_plot_and_a_rerun_adds_nothing(toy_tasks, tiny_model_dir, augrl_cache,
                                                                       single_thread, tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(_cli(toy_tasks, tiny_model_dir, out, "kd", "--json")) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["planned"] == 1 and first["skipped"] == 0 and [k[1] for k in first["ran"]] == ["kd"]
    # a later bench on the folder adds kd+eda; it must find the split and the teacher kd had
    assert main(_cli(toy_tasks, tiny_model_dir, out, "kd,kd+eda", "--json")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["planned"] == 2 and summary["skipped"] == 1 and [k[1] for k in summary["ran"]] == ["kd+eda"]
    assert summary["ran"][0][:4] == [str(toy_tasks["single_file"]), "kd+eda", 0, 8]
    records, bad = read_jsonl(out / "results.jsonl")
    assert not bad and [r["method"] for r in records] == ["kd", "kd+eda"]
    kd, eda = records
    for r in records:
        assert r["command"] == "bench" and r["task"] == "toy" and r["seed"] == 0 and r["shots"] == 8
        assert set(r["metrics"]["test"]) == {"accuracy", "f1"} and r["metrics"]["val"]
        assert r["params"]["teacher"] > r["params"]["student"] > 0 and r["variants"] == 4
        assert r["split"]["sizes"]["train"] == 16 and r["versions"]["torch"] and "git_commit" in r
        assert r["versions"]["tokenizers"] and r["hardware"]["cpu_capability"]
        assert r["objective"] == {"dark_ce": 1.0, "hard_ce": 1.0} and len(r["config_hash"]) == 12
    assert kd["augmenter"] is None and kd["train_size"] == 16 and kd["candidates"] == 0
    assert eda["augmenter"]["name"] == "eda" and "alpha_sr" in eda["augmenter"]["params"]
    assert eda["pool"]["size"] == 4 * 16 and eda["candidates"] == 64 and eda["train_size"] == 80
    # the second bench learnt from the teacher the first one trained (loaded from the cache, not
    # trained again), on the same split: a fair comparison across resumed benches
    assert eda["teacher"]["cached"] is True and Path(eda["teacher"]["dir"], "config.json").is_file()
    assert {k: eda["teacher"][k] for k in ("dir", "val", "train_seconds")} == \
        {k: kd["teacher"][k] for k in ("dir", "val", "train_seconds")}
    assert eda["split"] == kd["split"] and eda["split"]["index_hash"]["train"]
    table = (out / "table.md").read_text()
    assert "| kd |" in table and "| kd+eda |" in table and "toy, 8 shots per class" in table
    assert len(_lines(out / "table.csv")) == 3 and (out / "toy.png").stat().st_size > 5000

    before = (out / "results.jsonl").read_bytes()
    assert main(_cli(toy_tasks, tiny_model_dir, out, "kd,kd+eda", "--json")) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["skipped"] == 2 and again["ran"] == [] and again["by_others"] == []
    assert (out / "results.jsonl").read_bytes() == before
    assert (out / "table.md").read_text() == table  # the report of the same lines is the same report


def _failing(method: str, error: type[BaseException]):
    original = bench.get(method)

    def run(ctx):
        raise error("simulated crash")

    return dataclasses.replace(original, run=run)


def test_interrupted_bench_keeps_finished_lines_and_a_rerun_completes_only_the_rest(
        toy_tasks, tiny_model_dir, augrl_cache, single_thread, tmp_path, capsys, monkeypatch):
    out = tmp_path / "bench"
    with monkeypatch.context() as m:  # Ctrl-C during the second run
        m.setitem(methods._REGISTRY, "kd+mask", _failing("kd+mask", KeyboardInterrupt))
        assert main(_cli(toy_tasks, tiny_model_dir, out, "kd,kd+mask,student_ft")) == 130
    err = capsys.readouterr().err
    assert "interrupted during toy kd+mask" in err or f"interrupted during {toy_tasks['single_file']} kd+mask" in err
    first = _lines(out / "results.jsonl")
    assert [json.loads(x)["method"] for x in first] == ["kd"]
    assert list((out / bench.CLAIMS_DIR).iterdir()) == []  # Ctrl-C gives the claim back

    assert main(_cli(toy_tasks, tiny_model_dir, out, "kd,kd+mask,student_ft", "--json")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] == 1 and [k[1] for k in summary["ran"]] == ["kd+mask", "student_ft"]
    lines = _lines(out / "results.jsonl")
    assert lines[0] == first[0] and [json.loads(x)["method"] for x in lines] == ["kd", "kd+mask", "student_ft"]


def test_an_error_in_a_run_loses_only_that_run(toy_tasks, base, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    settings = _settings(toy_tasks, ["kd", "kd+mask", "student_ft"])
    with monkeypatch.context() as m:
        m.setitem(methods._REGISTRY, "kd+mask", _failing("kd+mask", RuntimeError))
        with pytest.raises(RuntimeError, match="simulated crash"):
            bench.run_bench(settings, base, out, progress=False, log=lambda _: None)
    assert [r["method"] for r in read_jsonl(out / "results.jsonl")[0]] == ["kd"]
    # the failed run's claim is given back: a claim kept open would make the rerun below wait for itself
    assert list((out / bench.CLAIMS_DIR).iterdir()) == []
    summary = bench.run_bench(settings, base, out, progress=False, log=lambda _: None)
    assert [k[1] for k in summary["ran"]] == ["kd+mask", "student_ft"]


def test_a_truncated_last_line_is_reported_and_its_run_redone(toy_tasks, base, tmp_path):
    out = tmp_path / "bench"
    settings = _settings(toy_tasks, ["kd", "student_ft"])
    bench.run_bench(settings, base, out, progress=False, log=lambda _: None)
    path = out / "results.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # a crash in the middle of writing the student_ft line
    messages: list[str] = []
    summary = bench.run_bench(settings, base, out, progress=False, log=messages.append)
    assert any("results.jsonl:2: not valid JSON" in m for m in messages)
    assert summary["bad_lines"][0]["line"] == 2 and [k[1] for k in summary["ran"]] == ["student_ft"]
    records, bad = read_jsonl(path)
    assert [r["method"] for r in records] == ["kd", "student_ft"] and [b[0] for b in bad] == [2]
    notes = write_report(out, quiet=True)["notes"]
    assert any("results.jsonl:2: not valid JSON" in n for n in notes)
    assert "results.jsonl:2: not valid JSON" in (out / "table.md").read_text()


def test_append_after_a_cut_line_starts_a_new_line(tmp_path):
    path = tmp_path / "r.jsonl"
    append_jsonl(path, {"a": 1})
    with open(path, "a") as f:
        f.write('{"a": 2, "b')
    append_jsonl(path, {"a": 3})
    records, bad = read_jsonl(path)
    assert records == [{"a": 1}, {"a": 3}] and [b[0] for b in bad] == [2]


def test_report_rebuilds_everything_from_results_jsonl_alone(toy_tasks, base, tmp_path, capsys):
    out = tmp_path / "bench"
    bench.run_bench(_settings(toy_tasks, ["kd", "student_ft", "teacher_ft"], seeds=2), base, out, progress=False,
                    log=lambda _: None)
    main_table, timings = (out / "table.md").read_text().split("# Where the time goes")
    rows = [line for line in main_table.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 4 and all(" | 2 | " in line for line in rows[1:])  # a header, then one row per method
    timed = [line for line in timings.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(timed) == 5 and all(" | 2 | " in line for line in timed[1:4])  # header, 3 methods x 2 runs, all
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(out / "results.jsonl", copy / "results.jsonl")
    assert main(["report", str(copy)]) == 0
    printed = capsys.readouterr().out
    assert (copy / "table.md").read_text() == (out / "table.md").read_text() and "| teacher_ft |" in printed
    assert (copy / "table.csv").read_text() == (out / "table.csv").read_text()
    assert (copy / "toy.png").read_bytes() == (out / "toy.png").read_bytes()  # the plot too comes from the lines
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no results file" in capsys.readouterr().err


def _record(method: str, seed: int, acc: float, task: str = "rt", shots: int = 40, config_hash: str = "h0",
            **extra) -> dict:
    # like the bench's own lines: the config (and its hash) name the seed, the report must still pool the seeds
    return {"command": "bench", "task": task, "method": method, "seed": seed, "shots": shots,
            "config": {"task": task, "shots": shots, "seed": seed, "student": "transformer"},
            "config_hash": f"{method}-{config_hash}-{seed}",
            "metrics": {"test": {"accuracy": acc, "f1": acc - 0.01}, "val": {}},
            "params": {"teacher": 22_713_986, "student": 15_600_000} if method != "teacher_ft" else
            {"teacher": 22_713_986}, "wall_time_s": 10.0, "variants": 4, "augmenter": None,
            "split": {"sizes": {"test": 2000}}, **extra}


def test_paired_t_test_against_kd_is_marked(tmp_path):
    from scipy import stats

    kd = [0.60, 0.62, 0.58, 0.61, 0.59]
    up = [k + d for k, d in zip(kd, [0.10, 0.10, 0.10, 0.10, 0.20])]  # diffs: mean 0.12, sd 0.0447 -> t = 6
    noise = [k + d for k, d in zip(kd, [0.10, -0.10, 0.05, -0.05, 0.0])]  # mean diff 0 -> p = 1
    for method, values in (("kd", kd), ("kd+up", up), ("kd+noise", noise)):
        for seed, acc in enumerate(values):
            append_jsonl(tmp_path / "results.jsonl", _record(method, seed, acc))
    append_jsonl(tmp_path / "results.jsonl", _record("kd+one", 0, 0.9))  # one pair: no test
    summary = write_report(tmp_path, quiet=True)
    table = (tmp_path / "table.md").read_text()
    row = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| kd")}
    assert "0.7200 ± 0.0418 †" in row["kd+up"] and "†" not in row["kd+noise"] and "†" not in row["kd"]
    assert "| 0.9000 |" in row["kd+one"]  # one seed: no ± and no test
    csv_rows = {r.split(",")[2]: r.split(",") for r in _lines(tmp_path / "table.csv")[1:]}
    header = _lines(tmp_path / "table.csv")[0].split(",")
    p_up = float(csv_rows["kd+up"][header.index("accuracy_p_vs_kd")])
    assert p_up == pytest.approx(2 * stats.t.sf(6.0, df=4), rel=1e-3) and p_up < 0.01
    assert float(csv_rows["kd+up"][header.index("accuracy_diff_vs_kd")]) == pytest.approx(0.12)
    assert float(csv_rows["kd+noise"][header.index("accuracy_p_vs_kd")]) == pytest.approx(1.0)
    assert csv_rows["kd+one"][header.index("accuracy_p_vs_kd")] == ""
    assert "22.7M parameters" in table and "| 15.6M |" in row["kd"]
    assert [r["method"] for r in summary["rows"]] == ["kd", "kd+up", "kd+noise", "kd+one"]


def test_the_auc_within_the_gate_window_is_the_final_selections_when_training_fits_in_it():
    from augrl.report import auc_within

    curve = [{"env_steps": 240, "detection_auc": 0.6}, {"env_steps": 480, "detection_auc": 0.99},
             {"env_steps": 600, "detection_auc": 0.7}]
    done_early = {"selection": {"detection_auc": 0.59}, "policy_training": {"env_steps": 480, "detection_curve": curve}}
    assert auc_within(done_early) == 0.59  # the final policy is inside the window: its own scores, not a checkpoint's
    longer = {"selection": {"detection_auc": 0.7}, "policy_training": {"env_steps": 600, "detection_curve": curve}}
    assert auc_within(longer) == 0.99 and auc_within({"selection": {}, "policy_training": {}}) is None


def test_gates_judge_each_learned_selector_on_its_pool(tmp_path):
    planted, clean = {"pool": {"planted": 0.75}}, {"pool": {}}
    random = [0.58, 0.60, 0.59, 0.61, 0.57]
    lines = []
    for seed, base in enumerate(random):
        def row(method, acc, options, kept=320, auc=None, **extra):
            training = {} if auc is None else {"policy_training": {"env_steps": 300, "detection_curve": [
                {"env_steps": 100, "detection_auc": 0.5}, {"env_steps": 300, "detection_auc": auc},
                {"env_steps": 900, "detection_auc": 1.0}]}}  # a checkpoint after 500 steps does not count
            return _record(method, seed, acc, method_options=options, selection={"kept": kept}, **training, **extra)
        lines += [row("kd+random", base, {**planted, "ranker": "random"}),
                  row("kd+confidence", base + 0.04, {**planted, "ranker": "teacher_confidence"}),
                  row("all", base + 0.10, {**planted, "ranker": "random", "budget": 1.0}, kept=1280),  # another budget
                  row("kd+winner", base + 0.05 + 0.002 * seed, planted, auc=0.95),
                  row("kd+middling", base + 0.03 + 0.002 * seed, planted, auc=0.92 if seed < 2 else 0.80)]
    lines.append(_record("kd+early", 0, 0.61, method_options=planted, selection={"kept": 320},
                         policy_training={"env_steps": 300}))  # one seed so far
    for line in lines:
        append_jsonl(tmp_path / "results.jsonl", line)
    write_report(tmp_path, quiet=True)
    gates = (tmp_path / "table.md").read_text().split("# Gates", 1)[1].split("# Where", 1)[0]
    cells = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in gates.splitlines() if line.startswith("| kd")}
    assert set(cells) == {"kd+random", "kd+confidence", "kd+winner", "kd+middling", "kd+early"}  # every selection row
    # compared with the baseline on its one seed (0.62 there), not with the baseline's 5-seed mean (0.63)
    assert cells["kd+early"][2] == "1" and cells["kd+early"][7] == "kd+confidence (-1.0)"
    assert cells["kd+confidence"][4:] == ["+4.0 (-)", "-", "-", "-", "-", "- |"]  # a baseline: no gates
    assert cells["kd+winner"][5:7] == ["0.95 (5/5)", "pass"] and cells["kd+winner"][7:9] == ["kd+confidence (+1.4)", "pass"]
    # +3.4 points over random with p < 0.05, but below the confidence ranker; AUC 0.85 on average
    assert cells["kd+middling"][5:7] == ["0.85 (2/5)", "missed"] and cells["kd+middling"][8] == "missed"
    assert cells["kd+middling"][4].startswith("+3.4 (0.0")

    clean_dir = tmp_path / "clean"
    for seed, base in enumerate(random):
        append_jsonl(clean_dir / "results.jsonl", _record("kd+random", seed, base, method_options={**clean, "ranker": "random"},
                                                          selection={"kept": 160}))
        for method, acc in (("kd+close", base - 0.004), ("kd+behind", base - 0.01)):
            append_jsonl(clean_dir / "results.jsonl", _record(method, seed, acc, method_options=clean, selection={"kept": 160},
                                                              policy_training={"env_steps": 300}))
    write_report(clean_dir, quiet=True)
    gates = (clean_dir / "table.md").read_text().split("# Gates", 1)[1].split("# Where", 1)[0]
    cells = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in gates.splitlines() if line.startswith("| kd")}
    assert cells["kd+close"][1] == "clean" and cells["kd+close"][6] == "-" and cells["kd+close"][8] == "-"
    assert cells["kd+close"][9].rstrip(" |") == "pass" and cells["kd+behind"][9].rstrip(" |") == "missed"


def test_search_report_tests_the_best_configuration_against_the_default_over_seeds(tmp_path):
    from scipy import stats

    for i, (acc, alpha) in enumerate([(0.64, 0.5), (0.66, 2.0)]):
        append_jsonl(tmp_path / "results.jsonl", {
            "command": "tune", "task": "rt", "method": "kd+l2a", "shots": 40, "trial": {"id": f"t{i}"},
            "metrics": {"val": {"accuracy": acc}}, "sampled": {"augmenter.alpha": alpha}, "seeds": [0],
            "wall_time_s": 10.0})
    best, default = [0.66, 0.64, 0.65, 0.61], [0.64, 0.63, 0.60, 0.60]
    for role, values, sampled in (("best", best, {"augmenter.alpha": 2.0}), ("default", default, {})):
        for seed, acc in enumerate(values):
            append_jsonl(tmp_path / "final.jsonl", {"command": "tune-final", "role": role, "seed": seed, "task": "rt",
                                                    "method": "kd+l2a", "shots": 40, "sampled": sampled,
                                                    "metrics": {"test": {"accuracy": acc, "f1": acc}}})
    write_report(tmp_path, quiet=True)
    rows = {line.split("|")[1].strip(): line for line in (tmp_path / "table.md").read_text().splitlines()
            if line.startswith(("| best", "| default"))}
    p = stats.ttest_rel(best, default).pvalue
    assert "0.6400 ± 0.0216" in rows["best"] and "| 0,1,2,3 |" in rows["best"]
    assert f"+2.25, p={p:.3f} |" in rows["best"] and "augmenter.alpha=2" in rows["best"]
    assert "0.6175 ± 0.0206" in rows["default"] and "| - | - |" in rows["default"]


def test_several_configurations_of_a_method_get_rows_of_their_own_and_shots_a_curve(tmp_path):
    for seed in range(2):
        append_jsonl(tmp_path / "results.jsonl", _record("kd", seed, 0.6))
        for shots in (10, 40):
            append_jsonl(tmp_path / "results.jsonl", _record("student_ft", seed, 0.5 + shots / 100, shots=shots))
        for variants, acc in ((4, 0.7), (8, 0.75)):
            append_jsonl(tmp_path / "results.jsonl", _record(
                "kd+eda", seed, acc, config_hash=f"v{variants}", variants=variants,
                augmenter={"name": "eda", "params": {"alpha_sr": 0.1, "progress": seed == 0}}))
    summary = write_report(tmp_path, quiet=True)
    rows = [r for r in summary["rows"] if r["shots"] == 40]
    assert [r["method"] for r in rows] == ["kd", "student_ft", "kd+eda (variants=4)", "kd+eda (variants=8)"]
    assert all(r["seeds"] == 2 for r in rows)  # progress bars on or off: the same configuration
    assert any("kd+eda ran under 2 configurations" in n for n in summary["notes"])
    # one bar plot per shots (named by its shots, none overwriting another) and the data-size curve
    assert sorted(summary["plots"]) == sorted(str(tmp_path / f"rt-{n}.png") for n in ("10shots", "40shots", "datasize"))
    assert not (tmp_path / "rt.png").exists()
    pngs = [Path(p).read_bytes() for p in summary["plots"]]
    assert all(png.startswith(b"\x89PNG") and len(png) > 5000 for png in pngs) and len(set(pngs)) == 3


def test_unknown_methods_and_bad_settings_are_clear_errors_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--methods", "kd,nope", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'nope'" in err and "kd+eda" in err and "teacher_ft" in err
    assert main(["bench", "--methods", "kd+eda", "--aug-param", "eda.nope=1", "--out", str(out)]) == 2
    assert "has no setting(s) ['nope']" in capsys.readouterr().err
    assert main(["bench", "--preset", "nope", "--out", str(out)]) == 2
    assert "unknown preset 'nope'; available: budgeted, clean, datasize, demo, domains, kd-objective, paper-rt, planted, planted-hard, planted-heavy, sensitivity" in capsys.readouterr().err
    assert main(["bench", "--methods", "kd"]) == 2 and "--out" in capsys.readouterr().err
    assert main(["bench", "--methods", "kd", "--seeds", "0", "--out", str(out)]) == 2
    assert "to run seed 0 alone, give a list: --seeds 0," in capsys.readouterr().err
    assert bench.seed_list("7,") == [7] and bench.seed_list("7") == list(range(7))
    assert not out.exists()
    with pytest.raises(ConfigError, match="every method of a seed shares"):
        bench.derive("kd-other-teacher", "kd", config={"teacher": "bert-base-uncased"}, register_it=False)
    with pytest.raises(ConfigError, match="unknown KD loss"):
        bench.BenchSettings(methods=["bad"], define={"bad": {"base": "kd", "config": {"objective": {"x": 1}}}}
                            ).resolve_methods()


def test_presets_ship_the_ablations():
    assert {"datasize", "kd-objective", "sensitivity", "domains", "planted", "budgeted", "demo"} <= \
        set(bench.preset_names())
    planted = bench.load_preset("planted").resolve_methods()
    assert all(m.options["pool"] == {"planted": 0.3} for name, m in planted.items() if name != "kd")
    heavy = bench.load_preset("planted-heavy").resolve_methods()
    assert all(m.options["pool"]["planted"] == 0.75 and m.config["objective"]["hard_ce"] == 4
               for name, m in heavy.items() if name != "kd") and heavy["kd"].config["objective"]["hard_ce"] == 4
    assert heavy["kd+rule-search"].options["learner"] == "rule_search" and heavy["kd+rule-search"].options["episodes"] == 50
    assert planted["all"].options["budget"] == 1.0 and planted["kd+oracle"].options["budget"] is None
    budgeted = bench.load_preset("budgeted").resolve_methods()
    assert all(m.options["pool"]["budgeted"] == 3000 for name, m in budgeted.items() if name != "kd")
    clean = bench.load_preset("clean").resolve_methods()
    # the seeded rule search is one method on every pool: only its pool differs between presets
    seeded = [{k: v for k, v in p["kd+rule-search-static-seeded"].options.items() if k != "pool"}
              for p in (heavy, budgeted, clean)]
    assert seeded[0] == seeded[1] == seeded[2] and seeded[0]["env"]["step_seeds"] is True
    assert all(not m.options.get("pool") for m in clean.values()) and {"kd+random", "kd+reinforce", "kd+ppo"} <= set(clean)
    demo = bench.load_preset("demo").resolve_methods()
    assert list(demo) == ["kd", "kd+oracle", "kd+random", "kd+rule-search-static-seeded"]
    for name, method in demo.items():  # the demo's rows are planted-heavy's own, so its lines are that preset's runs
        assert (method.config, method.options) == (heavy[name].config, heavy[name].options)
    datasize = bench.load_preset("datasize")
    assert datasize.shots == [10, 20, 40, 80, 160] and datasize.seeds == [0, 1, 2, 3, 4]
    assert {"student_ft", "kd"} <= set(datasize.resolve_methods())
    methods = bench.load_preset("kd-objective").resolve_methods()
    objectives = {name: set(m.config["objective"]) for name, m in methods.items()}
    full = {"attention_mse", "hidden_mse", "dark_ce", "hard_ce"}
    assert objectives == {"lkd": full, "lkd-no-att": full - {"attention_mse"},
                          "lkd-no-hidden": full - {"hidden_mse"}, "lkd-no-dark": full - {"dark_ce"}}
    assert all(m.augmenter is None and m.run is bench.get("kd").run for m in methods.values())
    assert "kd+l2a" in datasize.methods
    domains = bench.load_preset("domains").resolve_methods()
    assert domains["kd+l2a"].options["use_source"] and domains["kd+l2a"].options["use_target"]
    assert not domains["kd+l2a-nosrc"].options["use_source"] and not domains["kd+l2a-notgt"].options["use_target"]
    sensitivity = bench.load_preset("sensitivity").resolve_methods()
    points = {(m.augmenter_params["alpha"], m.augmenter_params["temperature"])
              for name, m in sensitivity.items() if name != "kd"}
    assert points == {(0.5, 1.0), (1.0, 1.0), (2.0, 1.0), (4.0, 1.0), (1.0, 0.5), (1.0, 2.0)}
    assert all(m.run is bench.get("kd+l2a").run for name, m in sensitivity.items() if name != "kd")


def test_the_paper_presets_distil_from_mpnet_and_paper_rt_resumes_the_committed_mpnet_lines(monkeypatch, tmp_path):
    """`augrl bench --preset paper-rt` plans exactly the runs whose lines are committed in
    results/rt-40shot-mpnet (same keys), so it resumes them; --teacher still overrides."""
    for name in ("datasize", "domains", "kd-objective", "sensitivity", "paper-rt"):
        assert bench.load_preset(name).teacher == "mpnet"
    assert bench.load_preset("planted").teacher is None
    with pytest.raises(ConfigError, match="teacher"):
        bench.BenchSettings(methods=["kd"], teacher=" ")
    seen = []

    def capture(settings, cfg, out, **kwargs):
        seen.append((settings, cfg))
        raise SystemExit(0)

    monkeypatch.setattr(bench, "run_bench", capture)
    for extra in ([], ["--teacher", "minilm"]):
        with pytest.raises(SystemExit):
            main(["bench", "--preset", "paper-rt", "--out", str(tmp_path / "b"), *extra])
    (settings, cfg), (_, overridden) = seen
    assert cfg.teacher == "mpnet" and cfg.student_init == "minilm" and overridden.teacher == "minilm"
    planned = {run.key for run in bench.plan_runs(settings, cfg)}
    committed = Path(__file__).resolve().parents[1] / "results" / "rt-40shot-mpnet" / "results.jsonl"
    keys = {bench.run_key(r) for r in read_jsonl(committed)[0]}
    assert keys and keys <= planned


def test_a_registered_method_reuses_the_seed_pool_and_a_budget_change_reruns_augmented_methods(
        toy_tasks, base, tmp_path):
    """What kd+l2a will do: draw a pool, keep some candidates, distil on them; a YAML preset
    derives a variant with other options."""
    @bench.register("test-keep", overwrite=True, description="KD on the first k mask candidates", options={"k": 2})
    def keep_first(ctx: bench.BenchRun) -> bench.Outcome:
        pool = ctx.pool("mask")
        return ctx.distil(pool, keep=list(range(ctx.method.options["k"])))

    try:
        preset = tmp_path / "mine.yaml"
        preset.write_text(f"tasks: [{toy_tasks['single_file']}]\nshots: 8\nseeds: 1\n"
                          "methods: [kd, kd+mask, test-keep, test-keep3]\n"
                          "define:\n  test-keep3: {base: test-keep, options: {k: 3}}\n")
        settings = bench.load_preset(str(preset))
        out = tmp_path / "bench"
        bench.run_bench(settings, base, out, progress=False, log=lambda _: None)
        kd, mask, keep, keep3 = read_jsonl(out / "results.jsonl")[0]
        assert keep["candidates"] == 2 and keep["train_size"] == 18 and keep["augmenter"]["name"] == "mask"
        assert keep3["candidates"] == 3 and keep3["method_options"] == {"k": 3} and keep["method_options"] == {"k": 2}
        assert mask["candidates"] == 64 and keep["pool"] == mask["pool"]  # one pool, built once, charged to both
        assert keep["method_description"] == "KD on the first k mask candidates"

        summary = bench.run_bench(dataclasses.replace(settings, variants=2), base, out, progress=False,
                                  log=lambda _: None)
        assert [k[1] for k in summary["ran"]] == ["kd+mask", "test-keep", "test-keep3"]  # kd does not augment
        records = read_jsonl(out / "results.jsonl")[0]
        assert records[-3]["pool"]["size"] == 2 * 16 and records[-3]["variants"] == 2
    finally:
        methods._REGISTRY.pop("test-keep", None)


def test_the_tables_follow_every_run_and_the_pngs_lag_them_by_at_most_plot_every_s(toy_tasks, base, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setattr(bench, "PLOT_EVERY_S", 1e9)
    png, md = tmp_path / "toy.png", tmp_path / "table.md"
    seen = []

    def look(record):  # called once a run's line is written, before the bench rebuilds its report
        seen.append((record["method"], md.read_text() if md.exists() else "",
                     png.stat().st_mtime_ns if png.exists() else None))

    bench.run_bench(_settings(toy_tasks, ["kd", "student_ft", "kd+eda"]), base, tmp_path, progress=False,
                    on_record=look, log=lambda _: None)
    assert [m for m, _, _ in seen] == ["kd", "student_ft", "kd+eda"] and seen[0][1:] == ("", None)
    assert "| kd |" in seen[1][1] and "| student_ft |" not in seen[1][1] and "| student_ft |" in seen[2][1]
    # the first run drew the PNG; the second, within PLOT_EVERY_S of it, did not; the end did
    assert seen[1][2] is not None and seen[2][2] == seen[1][2] < png.stat().st_mtime_ns
    assert "| kd+eda |" in md.read_text()


def test_every_builtin_method_runs(toy_tasks, tiny_model_dir, base, tmp_path):
    from augrl.l2a import L2AConfig

    names = [n for n in bench.names() if not n.startswith("test-")]
    planted = {"pool": {"planted": 0.25, "planted_kinds": ["flip", "shuffle"]}}  # the oracle needs planted rows
    # kd+l2a runs its default episodes; its three ablations run 3 (their pools and switches are
    # what they check, and 30 episodes each were a fifth of this test's time)
    short = {"episodes": 3}
    settings = _settings(toy_tasks, names, augmenter_params={"cbert": {"epochs": 1}},
                         define={"kd+oracle": {"base": "kd+oracle", "options": planted},
                                 **{n: {"base": n, "options": short} for n in ("kd+l2a-nosrc", "kd+l2a-notgt",
                                                                                  "kd+l2a-nogen")}})
    tiny = base.with_max_steps(1)
    start = time.perf_counter()
    bench.run_bench(settings, tiny, tmp_path, progress=False, max_steps=1, log=lambda _: None)
    elapsed = time.perf_counter() - start
    records = {r["method"]: r for r in read_jsonl(tmp_path / "results.jsonl")[0]}
    assert list(records) == names
    assert records["teacher_ft"]["params"] == {"teacher": records["kd"]["params"]["teacher"]}
    assert records["student_ft"]["objective"] is None and "student" in records["student_ft"]["stages"]
    assert set(records["distilbert"]["objective"]) == {"dark_ce", "hidden_cos"}
    assert set(records["tinybert"]["objective"]) == {"embedding_mse", "hidden_mse", "attention_mse", "dark_ce"}
    assert records["pkd"]["objective"]["pkd"] == 100.0 and "minilm_relation" in records["minilm"]["objective"]
    for name in ("bilstm+tang", "textcnn+tang", "bilstm_soft"):
        assert records[name]["config"]["student"] == name.split("+")[0].split("_")[0]
    assert records["bilstm+tang"]["objective"] == {"logit_mse": 1.0, "hard_ce": 1.0}
    assert records["bilstm_soft"]["objective"] == {"logit_mse": 1.0}
    for aug in bench.AUGMENTERS:
        assert records[f"kd+{aug}"]["augmenter"]["name"] == aug and records[f"kd+{aug}"]["candidates"] == 64
    assert records["kd+cbert"]["augmenter"]["params"]["epochs"] == 1
    # the tang pool is shared by the three students that use it
    assert records["kd+tang"]["pool"] == records["bilstm+tang"]["pool"] == records["textcnn+tang"]["pool"]
    # L2A rows: the generator's pool (budget-sized, capped by max_steps x B), a selection of it,
    # and the bench's KD objective for the final student
    l2a = records["kd+l2a"]
    assert l2a["augmenter"]["name"] == "l2a" and l2a["objective"] == records["kd"]["objective"]
    assert l2a["selection"]["pool"] == l2a["pool"]["size"] == 32 and l2a["candidates"] == l2a["selection"]["kept"]
    assert len(l2a["episodes"]) == L2AConfig().episodes and l2a["generator_updates"]
    assert records["kd+l2a-noselector"]["candidates"] == 32 and records["kd+l2a-noselector"]["episodes"] == []
    assert records["kd+l2a-nogen"]["generator_updates"] == [] and len(records["kd+l2a-nogen"]["episodes"]) == 3
    assert len(records["kd+l2a-nosrc"]["episodes"]) == len(records["kd+l2a-notgt"]["episodes"]) == 3
    assert records["kd+l2a-nosrc"]["pool"]["source"] == 0
    assert records["kd+l2a-notgt"]["pool"]["target"] == 0 and records["kd+l2a-notgt"]["pool"]["source"] == 32
    # policy rows: trained on the shared eda pool, with a random-kept control of the same size
    for algo in ("ppo", "a2c", "dqn"):
        r = records[f"kd+{algo}"]
        assert r["pool"] == records["kd+eda"]["pool"] and r["candidates"] == r["selection"]["kept"]
        assert r["policy_training"]["env_steps"] >= 1 and set(r["random_same_size"]["test"]) == {"accuracy", "f1"}
    # where the time goes: the stages each row ran, summing to its measured wall time
    assert "teacher" in records[names[0]]["timings"]  # the seed's teacher is charged to the run that built it
    assert {"student", "evaluation", "teacher_outputs"} <= set(records["kd"]["timings"])
    assert {"pool", "teacher_outputs", "student"} <= set(records["kd+eda"]["timings"])
    assert {"selection", "student"} <= set(records["kd+ppo"]["timings"]) <= set(STAGES)
    assert {"selection", "pool"} <= set(records["kd+l2a"]["timings"])
    # each second is charged to one stage of one run: together they are most of the bench's time
    timed = sum(sum(r["timings"].values()) for r in records.values())
    assert 0.5 * elapsed <= timed <= elapsed
    table = (tmp_path / "table.md").read_text()
    timings = table[table.index("# Where the time goes"):]
    assert "| kd+ppo | 1 |" in timings and "| all |" in timings


@pytest.mark.integration
def test_bench_rt_with_minilm(data_root, augrl_cache, tmp_path, capsys):
    out = tmp_path / "bench"
    # --max-steps 3 and 8 shots: the real-RT tests of test_integration.py share this teacher (augrl_cache)
    argv = ["bench", "--task", "rt", "--methods", "kd,kd+eda", "--seeds", "1", "--shots", "8", "--max-steps", "3",
            "--quiet", "--json", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(summary["ran"]) == 2
    kd, eda = read_jsonl(out / "results.jsonl")[0]
    assert kd["params"]["teacher"] == 22713986 and eda["candidates"] == 4 * 16
    table = (out / "table.md").read_text()
    assert "| kd |" in table and "| kd+eda |" in table and "rt, 8 shots per class" in table
    assert len(_lines(out / "table.csv")) == 3 and (out / "rt.png").stat().st_size > 5000
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ran"] == []


def test_import_flag_loads_a_users_methods(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_bench_methods.py").write_text(
        "from augrl import bench\n\n"
        "@bench.register('test-mine', description='KD on edits under 30%')\n"
        "def run_mine(ctx):\n"
        "    pool = ctx.pool('eda')\n"
        "    return ctx.distil(pool, keep=[i for i, f in enumerate(pool.edit_fraction) if f < 0.3])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["bench", "--import", "my_bench_methods", "--list"]) == 0
        assert "test-mine" in capsys.readouterr().out and bench.get("test-mine").augments
    finally:
        methods._REGISTRY.pop("test-mine", None)
    assert main(["bench", "--import", "no_such_module_xyz", "--list"]) == 2
    assert "--import no_such_module_xyz: cannot import it" in capsys.readouterr().err


SLOW_METHOD = '''
import os
import time
from pathlib import Path

from augrl import bench, methods


@bench.register("test-slow", description="KD; first waits while AUGRL_TEST_SLOW names a file")
def slow(ctx):
    flag = os.environ.get("AUGRL_TEST_SLOW")
    if flag:
        Path(flag).write_text("started")
        time.sleep(300)
    return ctx.distil()


@bench.register("test-hold", augments=False,
                description="student_ft; first gets the seed's teacher and waits while AUGRL_TEST_HOLD names a file")
def hold(ctx):
    flag = os.environ.get("AUGRL_TEST_HOLD")
    if flag:
        ctx.teacher()
        Path(flag).write_text(ctx.info["teacher"]["dir"])
        time.sleep(300)
    return bench.get("student_ft").run(ctx)
'''


def _forget_slow_methods() -> None:
    """Unregister SLOW_METHOD's methods and forget its module, so the next test imports it afresh."""
    import sys

    for name in ("test-slow", "test-hold"):
        methods._REGISTRY.pop(name, None)
    sys.modules.pop("slow_bench_methods", None)


def _slow_bench(tmp_path, augrl_cache, argv: list[str], **flags: Path):
    """A bench subprocess over SLOW_METHOD's methods; ``flags`` (e.g. ``AUGRL_TEST_SLOW=path``)
    tell them where to signal that they started."""
    import os
    import subprocess
    import sys

    (tmp_path / "slow_bench_methods.py").write_text(SLOW_METHOD)
    env = {**os.environ, **{k: str(v) for k, v in flags.items()}, "AUGRL_CACHE": str(augrl_cache),
           "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "augrl.cli", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(proc, *paths: Path, seconds: float = 180) -> None:
    """Wait until every path exists; fail with the process's stderr if it ended first."""
    import time

    deadline = time.monotonic() + seconds
    while not all(p.exists() for p in paths) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert paths[0].exists(), proc.communicate(timeout=5)[1] if proc.poll() is not None else "not started in time"


def test_a_killed_bench_process_keeps_its_lines_and_a_rerun_completes_the_rest(
        toy_tasks, tiny_model_dir, augrl_cache, single_thread, tmp_path, monkeypatch, capsys):
    import signal

    out, flag = tmp_path / "bench", tmp_path / "started"
    argv = _cli(toy_tasks, tiny_model_dir, out, "kd,test-slow,student_ft", "--import", "slow_bench_methods")
    proc = _slow_bench(tmp_path, augrl_cache, argv, AUGRL_TEST_SLOW=flag)
    try:
        _wait_for(proc, flag)
        proc.send_signal(signal.SIGTERM)  # like `kill`, or a scheduler's time limit, during the second run
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted during" in err and "test-slow" in err
    first = _lines(out / "results.jsonl")
    assert [json.loads(x)["method"] for x in first] == ["kd"]
    assert list((out / "claims").iterdir()) == []  # a graceful stop gives its claim back

    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main([*argv, "--json"]) == 0
    finally:
        _forget_slow_methods()
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] == 1 and [k[1] for k in summary["ran"]] == ["test-slow", "student_ft"]
    lines = _lines(out / "results.jsonl")
    assert lines[0] == first[0] and len(lines) == 3
    assert [json.loads(x)["method"] for x in lines] == ["kd", "test-slow", "student_ft"]


def test_a_bench_killed_with_sigkill_mid_run_resumes_only_the_killed_run_and_never_repeats_a_line(
        toy_tasks, tiny_model_dir, augrl_cache, single_thread, tmp_path, monkeypatch, capsys):
    """``kill -9`` (or the OOM killer, or a lost node): no handler runs, the claim file stays."""
    import signal

    out, flag = tmp_path / "bench", tmp_path / "holding"
    argv = _cli(toy_tasks, tiny_model_dir, out, "student_ft,test-hold,kd", "--import", "slow_bench_methods")
    proc = _slow_bench(tmp_path, augrl_cache, argv, AUGRL_TEST_HOLD=flag)
    results = out / "results.jsonl"
    try:
        _wait_for(proc, flag, results)
        assert [json.loads(x)["method"] for x in _lines(results)] == ["student_ft"]  # the first line is in
        proc.send_signal(signal.SIGKILL)  # during the second run
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    first = results.read_bytes()
    assert first.count(b"\n") == 1 and json.loads(first)["method"] == "student_ft"
    left = list((out / "claims").iterdir())  # the killed run's claim, still naming the dead process
    assert len(left) == 1 and json.loads(left[0].read_text())["pid"] == proc.pid

    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main([*argv, "--json"]) == 0  # the same command again, in another process
    finally:
        _forget_slow_methods()
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["skipped"] == 1 and [k[1] for k in summary["ran"]] == ["test-hold", "kd"]
    assert f"test-hold seed=0 shots=8: taking over its claim from pid {proc.pid} on " in captured.err
    data = results.read_bytes()
    assert data.startswith(first)  # the line written before the kill is untouched
    records, bad = read_jsonl(results)
    keys = [bench.run_key(r) for r in records]
    assert not bad and [r["method"] for r in records] == ["student_ft", "test-hold", "kd"] and len(set(keys)) == 3
    assert list((out / "claims").iterdir()) == []
    # kd, run after the resume, learnt from the teacher the killed process had (cached, not retrained)
    kd = records[-1]
    assert kd["teacher"]["cached"] is True and kd["teacher"]["dir"] == flag.read_text()


def test_rows_of_a_seed_share_one_teacher_pass_over_its_pool(toy_tasks, base, tmp_path, monkeypatch):
    """kd+eda, a selection row and a policy row (its policy, all-kept and random-kept students)
    keep different subsets of one EDA pool: the teacher runs over target + pool once for all
    their students (the policy's environment makes its own pass, candidates first, with the
    representations its features need)."""
    from augrl.kd import TeacherCache, stored_outputs

    monkeypatch.setenv("AUGRL_CACHE", str(tmp_path / "cache"))  # nothing stored from other tests
    stored_outputs.clear_memo()
    sizes: list[int] = []
    real = TeacherCache.from_model.__func__

    def counting(cls, teacher, data, *args, **kwargs):
        sizes.append(len(data))
        return real(cls, teacher, data, *args, **kwargs)

    monkeypatch.setattr(TeacherCache, "from_model", classmethod(counting))
    bench.run_bench(_settings(toy_tasks, ["kd+eda", "kd+random", "kd+ppo"]), base.with_max_steps(1), tmp_path / "out",
                    progress=False, max_steps=1, log=lambda _: None)
    records = read_jsonl(tmp_path / "out" / "results.jsonl")[0]
    target, pool = 16, records[0]["candidates"]  # 8 shots x 2 classes; every candidate of the shared pool
    assert {r["pool"]["size"] for r in records} == {pool} and len(records) == 3
    assert sizes.count(target + pool) == 2  # students' pass (train first) + the environment world's pass
    stored_outputs.clear_memo()
