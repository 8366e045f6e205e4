"""The composed config (augrl.sections): sections, their serialised form, and what they decide."""

import dataclasses
import hashlib
import json

import pytest

from augrl.envs import AugmentKDConfig
from augrl.errors import ConfigError
from augrl.pipelines import RunConfig
from augrl.sections import EnvConfig, KDConfig, PoolConfig, SplitConfig, StudentConfig, TeacherConfig, WorldConfig
from augrl.training import TrainConfig


def test_run_config_is_its_sections_and_round_trips_both_forms(tmp_path):
    cfg = RunConfig(task="rt", seed=3, teacher="mpnet", teacher_train=TrainConfig(epochs=4), teacher_source_shots=250,
                    method="newsbert", method_options={"beta": 0.5}, cache_dtype="float32")
    sections = cfg.to_sections()
    assert list(sections) == ["split", "teacher", "student", "kd", "device"]
    assert sections["teacher"] == {"teacher": "mpnet", "teacher_train": TrainConfig(epochs=4).to_dict(),
                                   "teacher_source_shots": 250}
    assert cfg.section(SplitConfig) == SplitConfig(task="rt", seed=3)
    for suffix in (".yaml", ".json"):
        path = cfg.save(tmp_path / f"run{suffix}")
        assert "split" in path.read_text() and RunConfig.load(path) == cfg
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # the flat form (result records, older files)
    with pytest.raises(ConfigError, match=r"section 'teacher' has no field\(s\) \['epochs'\]"):
        RunConfig.from_dict({"teacher": {"epochs": 3}})
    with pytest.raises(ConfigError, match="given both in a section and at the top level"):
        RunConfig.from_dict({"split": {"seed": 1}, "seed": 2})
    with pytest.raises(ConfigError, match="RunConfig.leakage"):
        RunConfig(leakage="sometimes")


def test_flat_fields_are_those_old_result_keys_hash():
    # bench config_hash digests RunConfig.to_dict(): a field added here would change every key
    # and make committed results rerun; the sections must keep exactly these names
    names = ["cache_dtype", "data_dir", "device", "layer_map", "leakage", "loss_params", "method", "method_options",
             "objective", "seed", "shots", "student", "student_init", "student_layers", "student_train", "task",
             "teacher", "teacher_source_shots", "teacher_train", "temperature"]
    assert sorted(RunConfig().to_dict()) == names
    digest = hashlib.sha1(json.dumps(RunConfig().to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    assert digest == hashlib.sha1(json.dumps(RunConfig.from_dict(RunConfig().to_sections()).to_dict(),
                                             sort_keys=True).encode()).hexdigest()[:12]


def test_env_config_composes_the_run_without_dropping_fields():
    run = RunConfig(task="rt", teacher="mpnet", teacher_train=TrainConfig(epochs=3, batch_size=8), teacher_source_shots=250,
                    student_train=TrainConfig(lr=3e-5), method="rco", method_options={"anchors": 2},
                    cache_dtype="float32", device="cpu", temperature=4.0)
    env = AugmentKDConfig.from_run_config(run, batch_size=16, pool_size=64)
    assert isinstance(env, RunConfig) and env.kd_objective() == run.kd_objective()
    # every field of the run arrives (the old converters dropped the source-adapted teacher,
    # the cache dtype, the method and the teacher's batch size)
    assert env.run_config() == run.replace(objective=run.kd_objective())
    assert env.max_length == run.teacher_train.max_length
    assert list(env.to_sections()) == ["split", "teacher", "student", "kd", "pool", "world", "env", "device"]
    assert AugmentKDConfig.from_dict(env.to_sections()) == env


def test_world_fields_are_every_section_but_the_decision_process():
    fields = AugmentKDConfig.world_fields()
    every = {f.name for f in dataclasses.fields(AugmentKDConfig)}
    assert fields == every - {f.name for f in dataclasses.fields(EnvConfig)}
    for kind in (SplitConfig, TeacherConfig, StudentConfig, KDConfig, PoolConfig, WorldConfig):
        assert {f.name for f in dataclasses.fields(kind)} <= fields
    assert "device" in fields and "batch_size" not in fields and "reward" not in fields


def test_older_flat_env_files_still_load(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("task: rt\nteacher_epochs: 3\nteacher_lr: 0.001\nmax_length: 64\nbatch_size: 16\n")
    cfg = AugmentKDConfig.load(path)
    assert (cfg.teacher_train.epochs, cfg.teacher_train.lr, cfg.max_length, cfg.batch_size) == (3, 1e-3, 64, 16)
    with pytest.raises(ConfigError, match="pool_size \\(8\\) must be at least batch_size"):
        AugmentKDConfig(pool_size=8, batch_size=16)
    with pytest.raises(ConfigError, match="reward must be one of"):
        AugmentKDConfig(reward="accuracy")
