"""Shared fixtures: a tiny random BERT (saved like a real checkpoint) and tiny task files."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POS_WORDS = ["good", "great", "fine", "lovely", "superb", "fun"]
NEG_WORDS = ["bad", "awful", "dull", "poor", "boring", "weak"]
FILLER = ["the", "movie", "film", "was", "really", "plot", "acting", "very", "a", "it"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 4-layer, 32-wide random BERT with a word-level vocabulary, saved with its tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizer
    import torch

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "!"] + POS_WORDS + NEG_WORDS + FILLER
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(d)
    BertTokenizer(str(d / "vocab.txt"), do_lower_case=True, model_max_length=64).save_pretrained(d)
    return d


def _sentence(rng: random.Random, words: list[str]) -> str:
    body = rng.sample(FILLER, 3) + [rng.choice(words), rng.choice(words)]
    rng.shuffle(body)
    return " ".join(body)


def write_sentiment_csv(path: Path, n: int, seed: int) -> Path:
    """A separable toy sentiment set: positive rows hold positive words, negative rows negative."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        lines.append(f"{_sentence(rng, POS_WORDS if label == 'pos' else NEG_WORDS)},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def toy_task(tmp_path) -> Path:
    """A task YAML over toy CSVs: target with official train/test, and a source pool."""
    write_sentiment_csv(tmp_path / "train.csv", 120, seed=1)
    write_sentiment_csv(tmp_path / "test.csv", 60, seed=2)
    write_sentiment_csv(tmp_path / "source.csv", 80, seed=3)
    (tmp_path / "task.yaml").write_text(
        "name: toy\nkind: classification\ntext: text\nlabel: label\nlabels: [neg, pos]\n"
        "target: {train: train.csv, test: test.csv}\nsource: {all: source.csv}\nval_size: 20\n"
    )
    return tmp_path / "task.yaml"


@pytest.fixture
def toy_regression_task(tmp_path) -> Path:
    """A task YAML over a toy regression CSV: 120 random six-word texts scored in [1, 5]."""
    rng = random.Random(0)
    words = "good bad fine awful movie film plot the a was".split()
    lines = ["text,score"] + [f"{' '.join(rng.choices(words, k=6))},{rng.uniform(1, 5):.2f}" for _ in range(120)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "task.yaml").write_text("name: toy-reg\nkind: regression\ntext: text\nlabel: score\n"
                                        "target: {all: data.csv}\nval_size: 20\ntest_size: 20\n")
    return tmp_path / "task.yaml"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data (``AUGRL_DATA``). Integration tests skip when it is not set; when it is set
    (CI sets it) to something that is not a folder, they fail: a skip would hide that nothing
    was tested."""
    root = os.environ.get("AUGRL_DATA")
    if not root:
        pytest.skip("AUGRL_DATA is not set to the shared data folder")
    if not Path(root).is_dir():
        pytest.fail(f"AUGRL_DATA={root} is not a folder: point it at the data (../shared/data) or unset it to "
                    "skip the integration tests", pytrace=False)
    return Path(root)


# --------------------------------------------------------------------------- skipped integration tests

_SKIPPED_INTEGRATION = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Note every integration test that was skipped (not xfailed), with its reason."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("integration") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        item.config.stash.setdefault(_SKIPPED_INTEGRATION, []).append(f"{item.nodeid}: {reason}")
    return report


def _skipped_with_data(config) -> list[str]:
    """The integration tests skipped although ``AUGRL_DATA`` is set: each is an error."""
    return config.stash.get(_SKIPPED_INTEGRATION, []) if os.environ.get("AUGRL_DATA") else []


def pytest_sessionfinish(session, exitstatus):
    """With ``AUGRL_DATA`` set, a skipped integration test fails the run (exit status 1)."""
    if _skipped_with_data(session.config) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = _skipped_with_data(config)
    if skipped:
        terminalreporter.write_sep("=", f"{len(skipped)} integration test(s) skipped although AUGRL_DATA="
                                        f"{os.environ['AUGRL_DATA']} is set: the run fails", red=True)
        for line in skipped:
            terminalreporter.write_line(line)


# --------------------------------------------------------------------------- augmentation baselines


def write_pair_csv(path: Path, n: int, seed: int) -> Path:
    """A toy paraphrase set: label 1 pairs share their sentiment words, label 0 pairs do not."""
    rng = random.Random(seed)
    lines = ["text_a,text_b,label"]
    for i in range(n):
        a = _sentence(rng, POS_WORDS)
        b = _sentence(rng, POS_WORDS if i % 2 else NEG_WORDS)
        lines.append(f"{a},{b},{i % 2}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def augrl_cache(tmp_path_factory):
    """A private ``AUGRL_CACHE`` for the session (adapted MLMs, POS vocabularies, WordNet copy)."""
    path = tmp_path_factory.mktemp("augrl-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUGRL_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread: tiny models run far faster without thread hand-offs on a busy CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def toy_tasks(tmp_path_factory, augrl_cache) -> dict:
    """Loaded toy tasks: ``single`` (sentiment) and ``pair`` (paraphrase), 8 shots per class."""
    from augrl.tasks import load_task

    d = tmp_path_factory.mktemp("toy-tasks")
    write_sentiment_csv(d / "train.csv", 120, seed=1)
    write_sentiment_csv(d / "test.csv", 60, seed=2)
    write_sentiment_csv(d / "source.csv", 80, seed=3)
    (d / "single.yaml").write_text(
        "name: toy\nkind: classification\ntext: text\nlabel: label\nlabels: [neg, pos]\n"
        "target: {train: train.csv, test: test.csv}\nsource: {all: source.csv}\nval_size: 20\n"
    )
    write_pair_csv(d / "pairs.csv", 120, seed=4)
    write_pair_csv(d / "pair_source.csv", 60, seed=5)
    (d / "pair.yaml").write_text(
        "name: toy-pair\nkind: pair_classification\ntext: [text_a, text_b]\nlabel: label\nlabels: ['0', '1']\n"
        "target: {all: pairs.csv}\nsource: {all: pair_source.csv}\nval_size: 20\ntest_size: 20\n"
    )
    return {"single": load_task(str(d / "single.yaml"), shots=8), "pair": load_task(str(d / "pair.yaml"), shots=8),
            "single_file": d / "single.yaml", "pair_file": d / "pair.yaml"}


@pytest.fixture(scope="session")
def fitted_augmenters(toy_tasks, tiny_model_dir) -> dict:
    """Every registered augmenter, fitted on the toy tasks (MLMs: the tiny BERT, briefly adapted).

    Returns ``{(name, "single" | "pair"): augmenter}``.
    """
    import torch

    from augrl import baselines

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for kind in ("single", "pair"):
            for name in baselines.names():
                uses_mlm = "mlm" in baselines.parameters(name)  # contextual, cbert, l2a: never the real MiniLM here
                params = {"mlm": str(tiny_model_dir), "mlm_steps": 20} if uses_mlm else {}
                out[(name, kind)] = baselines.get(name, **params).fit(toy_tasks[kind])
    finally:
        torch.set_num_threads(before)
    return out
