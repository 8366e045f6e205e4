"""The selection rows of the benchmark on a planted toy pool: budgets, detection records, errors."""

from __future__ import annotations

import pytest

from augrl import bench
from augrl.errors import ConfigError
from augrl.pipelines import RunConfig
from augrl.results import read_jsonl
from augrl.training import TrainConfig

PLANTED = {"planted": 0.25, "planted_kinds": ["flip", "shuffle"]}  # no unrelated text: no AUGRL_DATA needed


@pytest.fixture
def base(tiny_model_dir, augrl_cache, single_thread) -> RunConfig:
    small = TrainConfig(epochs=1, batch_size=8, max_steps=2)
    return RunConfig(teacher=str(tiny_model_dir), student_init=str(tiny_model_dir), teacher_train=small,
                     student_train=small, device="cpu")


def _define(names, **options):
    return {name: {"base": name, "options": {"pool": PLANTED, **options}} for name in names}


def test_selection_rows_keep_the_oracle_share_and_record_detection(toy_tasks, base, tmp_path):
    rows = ["kd+oracle", "kd+random", "kd+confidence", "kd+kl", "kd+valsim", "kd+influence", "kd+reinforce",
            "kd+thompson", "kd+rule-search", "kd+ppo", "kd+ppo-slots", "kd+dqn-nstep"]
    define = _define(rows)
    for name in ("kd+reinforce", "kd+thompson", "kd+rule-search"):
        define[name]["options"].update(episodes=2, env={"episode_length": 2, "snapshot_steps": [0, 2],
                                                        **({"paired_control": "trajectory"} if name != "kd+reinforce" else {})})
    define["kd+ppo"]["options"].update(episodes=1, env={"episode_length": 2, "snapshot_steps": [0, 2]})
    define["kd+ppo-slots"]["options"].update(episodes=1, env={"episode_length": 2, "snapshot_steps": [0, 2],
                                                              "paired_control": "trajectory"})
    define["kd+dqn-nstep"]["options"].update(episodes=2, env={"episode_length": 1, "snapshot_steps": [0, 2]})
    settings = bench.BenchSettings(tasks=[str(toy_tasks["single_file"])], methods=rows, seeds=1, shots=[8],
                                   define=define)
    bench.run_bench(settings, base, tmp_path, progress=False, max_steps=2)
    records, bad = read_jsonl(tmp_path / "results.jsonl")
    assert not bad and [r["method"] for r in records] == rows
    by = {r["method"]: r for r in records}
    pool = by["kd+random"]["pool"]
    n, planted = pool["size"], pool["planted"]
    assert planted == round(0.25 * n) and n == 4 * 16 + planted  # 4 variants x 16 train rows, plus the planted
    for r in records:
        sel = r["selection"]
        assert sel["pool"] == n and sel["kept"] == n - planted  # every row keeps the oracle's share
        assert 0.0 <= sel["detection_auc"] <= 1.0 and sel["planted"] == planted
        assert r["train_size"] == 16 + sel["kept"]
        kinds = sel["kept_by_provenance"]  # the pool's EDA rows and its planted ones
        assert set(kinds) == {"eda", "planted"} and sum(kinds.values()) == sel["kept"]
        assert kinds["planted"] == sel["planted_kept"]
    assert by["kd+oracle"]["selection"]["planted_kept"] == 0 and by["kd+oracle"]["selection"]["detection_auc"] == 1.0
    assert by["kd+reinforce"]["policy_training"]["updates"] == 2  # --max-steps 2: one episode of 2 steps, an update each
    assert "random_same_size" in by["kd+ppo"]
    from augrl.runtime import resolve_precision
    here = resolve_precision("auto", "cpu")  # what the rows' precision="auto" env ran in on this CPU
    assert by["kd+reinforce"]["policy_training"]["env_precision"] == by["kd+ppo"]["policy_training"]["env_precision"] == here
    for name in ("kd+ppo", "kd+ppo-slots"):
        assert by[name]["policy_training"]["updates"] == 10  # one rollout of 2 steps, PPO's 10 epochs over it
    nstep = by["kd+dqn-nstep"]["method_options"]
    assert (nstep["n_steps"], nstep["gamma"], nstep["env"]["episode_length"]) == (32, 1.0, 1)
    for name in ("kd+thompson", "kd+rule-search"):  # --max-steps 2: one episode of 2 steps
        training = by[name]["policy_training"]
        assert training["env_steps"] == 2 * len(training["episodes"]) == 2
    assert by["kd+rule-search"]["policy_training"]["ranking"][0]["leader"]
    # (--max-steps 2 ends kd+dqn-nstep within its first 16-decision episode: it has no checkpoint)
    for name in ("kd+reinforce", "kd+thompson", "kd+rule-search", "kd+ppo", "kd+ppo-slots"):
        curve = by[name]["policy_training"]["detection_curve"]
        assert curve and all(0.0 <= p["detection_auc"] <= 1.0 for p in curve)
        assert [p["env_steps"] for p in curve] == sorted({p["env_steps"] for p in curve}) and curve[0]["env_steps"] > 0
        assert curve[-1]["env_steps"] <= by[name]["policy_training"]["env_steps"]
    # the last checkpoint is the final policy: its AUC is the row's
    for name in ("kd+reinforce", "kd+rule-search", "kd+ppo", "kd+ppo-slots"):
        assert by[name]["policy_training"]["detection_curve"][-1]["detection_auc"] == \
            pytest.approx(by[name]["selection"]["detection_auc"], abs=1e-6)
    # the report's selection table: every row against kd+random, with detection and RL cost
    from augrl.report import write_report

    table = (tmp_path / "table.md").read_text() if write_report(tmp_path, quiet=True) else ""
    section, gates = table.split("# Selection", 1)[1].split("# Gates", 1)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in section.splitlines() if line.startswith("| kd")}
    assert set(lines) == set(rows)
    assert " | 1.0000 | " in lines["kd+oracle"] and lines["kd+random"].split(" | ")[2] == "-"
    header = next(line for line in section.splitlines() if line.startswith("| method")).strip("| ").split(" | ")
    cell = {name: dict(zip(header, line.strip("| ").split(" | "))) for name, line in lines.items()}
    assert cell["kd+reinforce"]["env steps"] == "2"
    # what each row kept of each kind, most first: the oracle every EDA row and no planted one
    assert cell["kd+oracle"]["kept by kind"] == f"eda {n - planted}, planted 0"
    counts = [part.rsplit(" ", 1) for part in cell["kd+random"]["kept by kind"].split(", ")]
    assert {k for k, _ in counts} == {"eda", "planted"} and sum(int(v) for _, v in counts) == n - planted
    auc_by_500 = float(lines["kd+reinforce"].split(" | ")[6])
    assert auc_by_500 == pytest.approx(by["kd+reinforce"]["policy_training"]["detection_curve"][-1]["detection_auc"],
                                       abs=1e-4) and lines["kd+random"].split(" | ")[6] == "-"
    assert (tmp_path / "toy-detection.png").read_bytes().startswith(b"\x89PNG")
    # the gates: the learned rows only, each judged on its planted pool
    gated = {line.split(" | ")[0].lstrip("| ") for line in gates.splitlines()
             if line.startswith("| kd") and line.split(" | ")[6] != "-"}
    assert gated == {"kd+reinforce", "kd+thompson", "kd+rule-search", "kd+ppo", "kd+ppo-slots", "kd+dqn-nstep"}


def test_a_rule_search_on_static_features_selects_by_the_pool_it_read(toy_tasks, base, tmp_path):
    define = {"kd+rule-search-static": {"base": "kd+rule-search", "options": {
        "pool": PLANTED, "episodes": 2, "selector": {"static_features": True, "common_episodes": True},
        "env": {"episode_length": 2, "snapshot_steps": [0, 2], "paired_control": "trajectory"}}}}
    settings = bench.BenchSettings(tasks=[str(toy_tasks["single_file"])], methods=list(define), seeds=1, shots=[8],
                                   define=define)
    bench.run_bench(settings, base, tmp_path, progress=False, max_steps=4)
    (record,), bad = read_jsonl(tmp_path / "results.jsonl")
    training, selection = record["policy_training"], record["selection"]
    assert not bad and record["method_options"]["selector"]["static_features"] is True
    assert training["env_steps"] == 4 and training["ranking"][0]["leader"]
    assert selection["kept"] == selection["pool"] - selection["planted"]
    # the final selection scores the same static pool the last episode's leader was judged on
    assert training["detection_curve"][-1]["detection_auc"] == pytest.approx(selection["detection_auc"], abs=1e-6)


def test_oracle_needs_a_planted_pool_and_bad_settings_fail_before_training(toy_tasks, base, tmp_path):
    settings = bench.BenchSettings(tasks=[str(toy_tasks["single_file"])], methods=["kd+oracle"], seeds=1, shots=[8])
    with pytest.raises(ConfigError, match="no planted rows"):
        bench.run_bench(settings, base, tmp_path, progress=False, max_steps=2)
    for options, message in (({"budget": 1.5}, r"budget must be a fraction in \(0, 1\]"),
                             ({"pool": {"planted": 1.0}}, r"planted fraction must be in the open range \(0, 1\)"),
                             ({"pool": {"planted": 0.2, "budgeted": 300}}, "choose one"),
                             ({"pool": {"plant": 0.2}}, "unknown options.pool")):
        bad = bench.BenchSettings(tasks=[str(toy_tasks["single_file"])], methods=["kd+random"], seeds=1, shots=[8],
                                  define={"kd+random": {"base": "kd+random", "options": options}})
        with pytest.raises(ConfigError, match=message):
            bad.resolve_methods()


def test_selection_mix_replays_what_each_ranker_row_kept(toy_tasks, tiny_model_dir, augrl_cache, tmp_path, capsys):
    """scripts/selection_mix.py, on the flags of a bench, reports the kinds each ranker row of
    that bench kept (its result line's selection.kept_by_provenance), without a final student."""
    import importlib.util
    import json
    from pathlib import Path

    import yaml

    from augrl.cli import main

    rows = ["kd+random", "kd+confidence", "kd+valsim"]
    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump({"tasks": [str(toy_tasks["single_file"])], "shots": [8], "seeds": 1,
                                      "methods": ["kd", *rows], "define": _define(rows)}))
    flags = ["--preset", str(preset), "--teacher", str(tiny_model_dir), "--epochs", "1", "--batch-size", "8",
             "--max-steps", "2", "--device", "cpu", "--quiet"]
    assert main(["bench", *flags, "--out", str(tmp_path / "bench")]) == 0
    lines = {r["method"]: r["selection"]["kept_by_provenance"]
             for r in read_jsonl(tmp_path / "bench" / "results.jsonl")[0] if r.get("selection")}
    capsys.readouterr()
    path = Path(__file__).resolve().parents[1] / "scripts" / "selection_mix.py"
    spec = importlib.util.spec_from_file_location("selection_mix", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([*flags, "--save", str(tmp_path / "mix.json")]) == 0
    replayed = {r["method"]: r["kept_by_provenance"] for r in json.loads((tmp_path / "mix.json").read_text())}
    assert set(replayed) == set(rows) and replayed == lines
    assert all(set(kinds) == {"eda", "planted"} for kinds in replayed.values())
    assert f"kd+confidence: kept {sum(lines['kd+confidence'].values())} of " in capsys.readouterr().out
    assert script.main([*flags, "--methods", "kd"]) == 2  # kd keeps nothing: no ranker row to replay
