"""Safe loading, full disks, an unreachable hub, and CI that cannot pass by skipping.

- every ``.pt`` file augrl reads goes through ``torch.load(weights_only=True)``: a file holding a
  pickled object whose ``__reduce__`` would run code is refused, and what augrl saves loads;
- a full disk while saving a model or a ``.pt`` file ends with a DiskFullError naming the file,
  and leaves no half-written file or folder that looks valid;
- a hub name with no hub (``--teacher bert-base-uncased`` offline) fails at once and clearly;
- with ``AUGRL_DATA`` set, a skipped integration test fails the run.
"""

from __future__ import annotations

import ast
import errno
import os
from pathlib import Path

import pytest
import torch

from augrl import models
from augrl.cli import main
from augrl.errors import ConfigError, DiskFullError

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]


class RunsCode:
    """Unpickling this creates a folder: proof that the loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


# ----------------------------------------------------------------------------- weights_only


def test_no_torch_load_without_weights_only_in_the_package():
    """A static check of augrl/, envs/, baselines/ and scripts/: every torch.load passes
    weights_only=True (torch < 2.6, which pyproject allows, unpickles anything by default)."""
    unsafe = []
    for folder in ("augrl", "envs", "baselines", "scripts"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                    flag = [k for k in node.keywords if k.arg == "weights_only"]
                    if not flag or not (isinstance(flag[0].value, ast.Constant) and flag[0].value.value is True):
                        unsafe.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert unsafe == []


def _selector():
    from augrl.selection.reinforce import ReinforceSelector, SelectorConfig

    torch.manual_seed(0)
    return ReinforceSelector(5, SelectorConfig())


def _cache():
    from augrl.kd.cache import TeacherCache

    lengths = torch.tensor([2, 3])
    return TeacherCache(torch.randn(2, 2), lengths, layers={"hidden_states": {1: torch.randn(5, 4)}}, num_layers=2,
                        hidden_size=4, heads=1, extras={"domain": torch.tensor([0, 1])})


def _distiller(tiny_model_dir):
    from augrl.kd.distiller import Distiller

    student = models.build_student(2, tiny_model_dir, num_layers=2)
    return Distiller(student, {"hidden_mse": 1.0, "dark_ce": 1.0}, teacher_hidden_size=32, teacher_layers=4)


def _loaders(tiny_model_dir) -> dict:
    """Each loader of a .pt file, called on a path."""
    from augrl.kd.cache import TeacherCache
    from augrl.selection.reinforce import ReinforceSelector

    return {"selector": ReinforceSelector.load, "cache": TeacherCache.load,
            "distiller": lambda p: _distiller(tiny_model_dir).load_modules(p), "load_torch": models.load_torch}


@pytest.mark.parametrize("loader", ["selector", "cache", "distiller", "load_torch"])
def test_a_pickled_object_is_refused_and_never_run(loader, tiny_model_dir, tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"logits": torch.zeros(2, 2), "config": RunsCode(marker)}, path)  # what an attacker would ship
    with pytest.raises(ConfigError, match="refused to load") as err:
        _loaders(tiny_model_dir)[loader](path)
    assert str(path) in str(err.value) and "weights_only=True" in str(err.value) and "posix.mkdir" in str(err.value)
    assert not marker.exists(), "the loader unpickled the object and ran its code"


@pytest.mark.parametrize("loader", ["selector", "cache", "distiller"])
def test_a_cut_off_or_missing_file_is_a_clear_error(loader, tiny_model_dir, tmp_path):
    good = tmp_path / "good.pt"
    models.save_torch({"logits": torch.zeros(4, 2)}, good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ConfigError, match="not a readable torch file") as err:
        _loaders(tiny_model_dir)[loader](cut)
    assert str(cut) in str(err.value)
    with pytest.raises(ConfigError, match="no such file"):
        _loaders(tiny_model_dir)[loader](tmp_path / "missing.pt")


def test_saved_files_round_trip_under_weights_only(tiny_model_dir, tmp_path):
    """What augrl saves holds only tensors and plain values: torch.load(weights_only=True) reads
    it, and each loader restores exactly what was saved."""
    from augrl.kd.cache import TeacherCache
    from augrl.selection.reinforce import ReinforceSelector

    selector = _selector()
    selector.baseline, selector.scale, selector.updates = 0.25, 0.5, 7
    path = selector.save(tmp_path / "s.pt")
    assert isinstance(torch.load(path, weights_only=True)["config"], str)
    back = ReinforceSelector.load(path)
    assert (back.baseline, back.scale, back.updates, back.config) == (0.25, 0.5, 7, selector.config)
    assert all(torch.equal(a, b) for a, b in zip(back.policy.state_dict().values(), selector.policy.state_dict().values()))

    cache = _cache()
    cache_path = cache.save(tmp_path / "c.pt")
    torch.load(cache_path, weights_only=True)
    again = TeacherCache.load(cache_path)
    assert torch.equal(again.logits, cache.logits) and torch.equal(again.layers["hidden_states"][1],
                                                                   cache.layers["hidden_states"][1])
    assert torch.equal(again.extras["domain"], cache.extras["domain"]) and again.heads == 1

    distiller = _distiller(tiny_model_dir)
    with torch.no_grad():
        for p in distiller.modules.parameters():
            p.add_(1.0)
    modules_path = distiller.save_modules(tmp_path / "kd_modules.pt")
    state = torch.load(modules_path, weights_only=True)
    assert state["objective"] == {"hidden_mse": 1.0, "dark_ce": 1.0}
    other = _distiller(tiny_model_dir)
    other.load_modules(modules_path)
    for a, b in zip(other.modules.parameters(), distiller.modules.parameters()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob(".*tmp*")), "a staging file was left behind"


# ----------------------------------------------------------------------------- full disk


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _write_config_then_fail(self, folder, *args, **kwargs):
    (Path(folder) / "config.json").write_text("{}")  # a partial save that would look like a model
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_saving_a_model_leaves_nothing_half_written(tiny_model_dir, tmp_path, monkeypatch):
    model = models.build_student(2, tiny_model_dir)
    target = tmp_path / "runs" / "student"
    monkeypatch.setattr(type(model), "save_pretrained", _write_config_then_fail)
    with pytest.raises(DiskFullError) as err:
        models.save_model(model, target)
    message = str(err.value)
    assert str(target) in message and "no space left on device" in message and "Fix: free some space" in message
    assert err.value.errno == errno.ENOSPC and isinstance(err.value, OSError)
    assert not target.exists() and list(target.parent.iterdir()) == [], "a partial model folder was left"


def test_a_full_disk_keeps_the_model_saved_before(tiny_model_dir, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = models.build_student(2, tiny_model_dir).eval()
    target = tmp_path / "student"
    models.save_model(model, target, models.load_tokenizer(tiny_model_dir))
    (target / "kd_modules.pt").write_bytes(b"kept")  # a file the pipelines add beside the model
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    other = models.build_student(2, tiny_model_dir)
    monkeypatch.setattr(type(other), "save_pretrained", _write_config_then_fail)
    with pytest.raises(DiskFullError, match="the model saved there before is unchanged"):
        models.save_model(other, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["student"]
    monkeypatch.undo()
    ids = torch.tensor([[2, 8, 9, 3]])
    assert torch.equal(models.load_model(target).eval()(input_ids=ids).logits, model(input_ids=ids).logits)
    # a save that succeeds over it replaces the model files and keeps the others
    models.save_model(other, target)
    assert (target / "kd_modules.pt").read_bytes() == b"kept"
    assert not torch.equal(models.load_model(target).eval()(input_ids=ids).logits, model(input_ids=ids).logits)


def test_a_full_disk_while_saving_a_pt_file_keeps_the_old_one(tmp_path, monkeypatch):
    path = models.save_torch({"a": torch.ones(3)}, tmp_path / "x.pt")
    monkeypatch.setattr(torch, "save", _full_disk)
    with pytest.raises(DiskFullError, match="the file saved there before is unchanged") as err:
        models.save_torch({"a": torch.zeros(3)}, path)
    assert str(path) in str(err.value)
    assert torch.equal(models.load_torch(path)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_the_cli_turns_a_full_disk_into_exit_2(toy_task, tiny_model_dir, tmp_path, monkeypatch, capsys):
    """A model save (DiskFullError) and a writer that raises a bare OSError(ENOSPC) both end
    with one message and status 2, not a traceback."""
    from transformers import PreTrainedModel

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", _write_config_then_fail)
    out = tmp_path / "out"
    code = main(["finetune", "--model", "student", "--task", str(toy_task), "--teacher", str(tiny_model_dir),
                 "--shots", "4", "--max-steps", "1", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(out / "student_ft-seed0") in err and "no space left on device" in err
    assert not (out / "student_ft-seed0").exists()

    import augrl.report

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "table.md"))

    monkeypatch.setattr(augrl.report, "write_report", full)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'table.md'}: cannot write: no space left on device" in err and "Fix: free some space" in err


def test_other_os_errors_are_not_reported_as_a_full_disk(monkeypatch):
    import augrl.report

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/x")

    monkeypatch.setattr(augrl.report, "write_report", denied)
    with pytest.raises(PermissionError):
        main(["report", "/x"])


# ----------------------------------------------------------------------------- hub


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """The hub is switched off and its cache is empty; no test here touches the network."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def test_a_hub_name_offline_fails_at_once_with_the_way_out(no_hub, toy_task, capsys):
    expected = "cannot load model 'bert-base-uncased': it is not a local folder and the Hugging Face hub cannot be reached"
    for load in (lambda: models.build_teacher(2, "bert-base-uncased"), lambda: models.load_tokenizer("bert-base-uncased"),
                 lambda: models.build_student(2, "bert-base-uncased")):
        with pytest.raises(ConfigError, match=expected) as err:
            load()
        assert "`minilm` (shipped), `mpnet` (shipped)" in str(err.value) and "a local folder with config.json" in str(err.value)
    assert main(["distill", "--task", str(toy_task), "--teacher", "bert-base-uncased", "--shots", "4", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_an_unreachable_hub_is_detected_in_one_quick_check(monkeypatch, tmp_path):
    """Without HF_HUB_OFFLINE one TCP connection decides (no retries), once per process."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    calls = []

    def refuse(address, timeout=None):
        calls.append((address, timeout))
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    models._endpoint_reachable.cache_clear()
    try:
        assert not models.hub_reachable() and not models.hub_reachable()
        url = urlparse(constants.ENDPOINT)
        assert calls == [((url.hostname, url.port or 443), models.HUB_TIMEOUT_S)]
        with pytest.raises(ConfigError, match="hub cannot be reached"):
            models.resolve_model("bert-base-uncased")
    finally:
        models._endpoint_reachable.cache_clear()


def test_a_cached_hub_model_loads_without_the_hub(no_hub, tiny_model_dir, monkeypatch):
    """Unreachable hub, model in the Hugging Face cache: its snapshot folder is used."""
    snapshot = no_hub / "models--bert-base-uncased" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for f in tiny_model_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (no_hub / "models--bert-base-uncased" / "refs").mkdir()
    (no_hub / "models--bert-base-uncased" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(models, "hub_offline", lambda: False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=None: False)
    assert Path(models.resolve_model("bert-base-uncased")) == snapshot.resolve()
    assert models.build_teacher(2, "bert-base-uncased").config.hidden_size == 32


def _hub_failure(kind: str) -> Exception:
    """What from_pretrained raises when the hub cannot be reached (transformers wraps the hub's error)."""
    import httpx
    import requests
    from huggingface_hub.errors import LocalEntryNotFoundError

    cause = {"local-entry": LocalEntryNotFoundError("cannot find the requested files in the local cache"),
             "requests": requests.ConnectionError("Max retries exceeded"),
             "httpx": httpx.ConnectError("[Errno -2] Name or service not known")}[kind]
    if kind == "httpx":
        return cause  # raised bare by newer hub clients
    try:
        raise cause
    except Exception as err:
        wrapped = OSError("We couldn't connect to 'https://huggingface.co' to load the files")
        wrapped.__cause__ = err
        return wrapped


@pytest.mark.parametrize("kind", ["local-entry", "requests", "httpx"])
def test_hub_connection_errors_from_from_pretrained_become_config_errors(kind, monkeypatch):
    from transformers import AutoConfig, AutoTokenizer

    def fail(*args, **kwargs):
        raise _hub_failure(kind)

    monkeypatch.setattr(models, "hub_reachable", lambda timeout=None: True)  # the check passed; the download fails
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", fail)
    monkeypatch.setattr(AutoConfig, "from_pretrained", fail)
    for load in (lambda: models.load_tokenizer("bert-base-uncased"), lambda: models.build_teacher(2, "bert-base-uncased")):
        with pytest.raises(ConfigError, match="the Hugging Face hub cannot be reached"):
            load()


def test_a_name_the_hub_does_not_know_is_not_called_a_network_problem(monkeypatch):
    import httpx
    from huggingface_hub.errors import RepositoryNotFoundError
    from transformers import AutoConfig

    url = "https://huggingface.co/bert-base-uncasd/resolve/main/config.json"
    response = httpx.Response(404, request=httpx.Request("HEAD", url))

    def missing(*args, **kwargs):
        raise OSError("bert-base-uncasd is not a local folder and is not a valid model identifier") \
            from RepositoryNotFoundError("404 Client Error: Repository Not Found", response=response)

    monkeypatch.setattr(models, "hub_reachable", lambda timeout=None: True)
    monkeypatch.setattr(AutoConfig, "from_pretrained", missing)
    with pytest.raises(ConfigError, match="cannot load model 'bert-base-uncasd': bert-base-uncasd is not a local "
                                          "folder and is not a valid model identifier") as err:
        models.build_teacher(2, "bert-base-uncasd")
    assert "cannot be reached" not in str(err.value)


def test_a_missing_folder_is_named_as_such(tmp_path):
    with pytest.raises(ConfigError, match="there is no such folder"):
        models.load_model(tmp_path / "runs" / "teacher")


# ----------------------------------------------------------------------------- CI and skips


SKIPPING = """
import pytest

@pytest.mark.integration
def test_needs_data(data_root):
    pass

def test_unit():
    pass
"""


def _inner_run(pytester, monkeypatch, data):
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_inner=SKIPPING)
    if data is None:
        monkeypatch.delenv("AUGRL_DATA", raising=False)
    else:
        monkeypatch.setenv("AUGRL_DATA", str(data))
    return pytester.runpytest_inprocess("-rs", "-p", "no:cacheprovider")


def test_without_augrl_data_integration_tests_skip(pytester, monkeypatch):
    result = _inner_run(pytester, monkeypatch, None)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["SKIPPED*AUGRL_DATA is not set*"])


def test_augrl_data_set_to_a_missing_folder_fails_the_run(pytester, monkeypatch, tmp_path):
    result = _inner_run(pytester, monkeypatch, tmp_path / "no-such-data")
    result.assert_outcomes(passed=1, errors=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*AUGRL_DATA=*no-such-data is not a folder*"])


def test_a_skipped_integration_test_fails_the_run_when_augrl_data_is_set(pytester, monkeypatch, tmp_path):
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_inner="""
import pytest

@pytest.mark.integration
def test_needs_a_file(data_root):
    pytest.skip("rt/ is missing from the data root")
""")
    monkeypatch.setenv("AUGRL_DATA", str(tmp_path))
    result = pytester.runpytest_inprocess("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*1 integration test(s) skipped although AUGRL_DATA=* is set: the run fails*",
                                 "*test_needs_a_file: rt/ is missing from the data root"])


def test_make_test_shows_skips_and_ci_runs_it():
    makefile = (REPO / "Makefile").read_text()
    assert "$(BIN)/python -m pytest -q -rs" in makefile
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")
