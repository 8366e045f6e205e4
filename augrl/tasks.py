"""Task registry, loaders for every dataset in ``../shared/data``, and the few-shot split.

A task pairs a *target* domain (few-shot: ``train`` / ``val`` / ``test``) with an optional
*source* domain (a labelled pool that augmenters and teachers may draw from)::

    from augrl.tasks import load_task
    task = load_task("rt", shots=40, seed=0)      # data root from AUGRL_DATA
    task.train, task.val, task.test, task.source  # datasets.Dataset each
    task.meta                                     # the split, recorded with every result

Datasets have the columns ``text`` (or ``text_a`` / ``text_b`` for pairs), ``label`` (class
index, or float score for regression), ``idx`` (row number in the loaded target or source
list, for provenance) and ``domain``.

Few-shot protocol (seeded by ``seed``; the test split does not depend on ``shots``):

1. test: the task's official test split when it has one (sampled down to ``test_size``),
   else ``test_size`` random rows of the target;
2. val: the official validation split when there is one, else ``val_size`` random rows of
   what remains (sampled down to ``val_size`` either way);
3. train: ``shots`` examples per class from what remains; regression tasks take
   ``2 * shots`` examples (the same budget as a binary task);
4. source: the source dataset minus every row that leaks a validation or test text, as
   :func:`augrl.leakage.audit` finds it (exact copies, copies after normalisation, sub-phrases
   of a held-out text, near-duplicates; for pairs, either side against either side). The
   split record holds ``meta["leakage"]`` (rows per category, how many of them are still in
   the source, the thresholds), ``meta["leakage_filter"]`` (``"remove"``, the default, or
   ``"keep"``) and ``meta["source_removed"]`` (rows taken out: 0 under ``"keep"``).
   ``load_task(..., leakage="keep")`` keeps the leaky rows, to reproduce work that did not
   filter; every result line then says ``"leakage_filter": "keep"``.

Users' tasks are YAML files next to CSV, TSV, JSONL or JSON files (README, 'Your own data';
:func:`task_from_yaml`)::

    name: support-tickets
    kind: classification            # classification | pair_classification | regression
    text: body                      # one column name; a pair task: [question1, question2]
    label: category                 # one column name
    labels: [billing, other]        # optional YAML list of distinct classes; default: sorted values
    target: {train: train.csv, test: test.csv}   # or {all: tickets.jsonl}; validation: optional
    source: {all: public_tickets.csv}            # optional labelled pool from another domain
    val_size: 200                   # optional positive integers: rows (test_size: 2000)
    encoding: utf-8                 # optional: encoding of every file above (e.g. latin-1, cp1252)

Every mistake in such a file or its data is a :class:`~augrl.errors.DataError` naming the file,
line and field, what is wrong and the fix; a misspelt key or split suggests the nearest valid one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from augrl import readers
from augrl.errors import ConfigError, DataError
from augrl.leakage import CATEGORIES, LeakageReport, LeakageSettings, audit

KINDS = ("classification", "pair_classification", "regression")

DEFAULT_SHOTS = 40

#: target rows kept aside as unlabelled target-domain text (Task.unlabelled)
UNLABELLED_MAX = 2000
DEFAULT_VAL_SIZE = 200
DEFAULT_TEST_SIZE = 2000
LEAKAGE_FILTERS = ("remove", "keep")


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its kind, labels, metrics and where its data comes from.

    Attributes:
        name: registry name (``rt``, ``amazon-books``...).
        kind: ``classification``, ``pair_classification`` or ``regression``.
        label_names: class names in label-index order (empty for regression).
        pair: whether an example is a pair of texts (``text_a``, ``text_b``).
        target: the target dataset, in words.
        source: the source dataset, in words, or None when the task has none.
        hub_id: the Hugging Face hub dataset used when no data root is given, or None.
        description: one line for ``augrl tasks``.
        val_size: validation rows (rewards and model selection).
        test_size: at most this many test rows.
    """

    name: str
    kind: str
    label_names: tuple[str, ...] = ()
    pair: bool = False
    target: str = ""
    source: str | None = None
    hub_id: str | None = None
    description: str = ""
    val_size: int = DEFAULT_VAL_SIZE
    test_size: int = DEFAULT_TEST_SIZE

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"task {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if self.kind == "regression" and self.label_names:
            raise ConfigError(f"task {self.name!r}: a regression task has no label names")
        if self.kind != "regression" and len(self.label_names) < 2:
            raise ConfigError(f"task {self.name!r}: a classification task needs >= 2 label names")
        if len(set(self.label_names)) != len(self.label_names):
            twice = next(x for x in self.label_names if self.label_names.count(x) > 1)
            raise ConfigError(f"task {self.name!r}: duplicate label {twice!r} in {list(self.label_names)}")
        for key in ("val_size", "test_size"):
            check_size(getattr(self, key), f"task {self.name!r}: {key}")

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"

    @property
    def num_labels(self) -> int:
        """Output width of a model head: number of classes, or 1 for regression."""
        return 1 if self.is_regression else len(self.label_names)

    @property
    def text_fields(self) -> tuple[str, ...]:
        return ("text_a", "text_b") if self.pair else ("text",)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Reported metrics; the first is the headline (model selection, rewards)."""
        return ("pearson", "spearman") if self.is_regression else ("accuracy", "f1")

    @property
    def metric(self) -> str:
        return self.metrics[0]

    def train_size(self, shots: int) -> int:
        """Number of target training examples for ``shots``."""
        return 2 * shots if self.is_regression else shots * self.num_labels

    def to_dict(self) -> dict:
        d = asdict(self)
        d["label_names"] = list(self.label_names)
        d["metrics"] = list(self.metrics)
        return d


@dataclass
class RawTask:
    """Loaded, validated records before splitting.

    ``target`` maps an official split name (``train``, ``validation``, ``test``) or ``all``
    (no official split) to records with the text field(s), ``label`` and ``domain``.
    """

    target: dict[str, list[dict]]
    source: list[dict] = field(default_factory=list)


Loader = Callable[[Path | None], RawTask]


@dataclass
class Task:
    """A loaded task: the spec, the few-shot target splits, the source pool and the split record.

    ``leakage_report`` is the audit of the whole source dataset against ``val`` and ``test``
    (its row indices are the ``idx`` of the source rows); ``meta["leakage"]`` sums it up.
    ``unlabelled``: up to :data:`UNLABELLED_MAX` target rows used by no split (disjoint from
    train, validation and test, and no text equal to a held-out one), for teacher-labelled
    uses such as the environment's reward set; their labels are never read for that.
    """

    spec: TaskSpec
    train: "datasets.Dataset"  # noqa: F821
    val: "datasets.Dataset"  # noqa: F821
    test: "datasets.Dataset"  # noqa: F821
    source: "datasets.Dataset"  # noqa: F821
    meta: dict
    leakage_report: LeakageReport | None = None
    unlabelled: "datasets.Dataset | None" = None  # noqa: F821

    def heldout_texts(self) -> list:
        """The validation and test texts (tuples for pairs): what no training text may leak.

        Audit any pool against them, e.g. augmented candidates:
        ``augrl.leakage.audit(candidates, task.heldout_texts())``.
        """
        rows = [self.val, self.test]
        if self.spec.pair:
            return [tuple(pair) for d in rows for pair in zip(d["text_a"], d["text_b"])]
        return [t for d in rows for t in d["text"]]

    def __repr__(self) -> str:
        return (
            f"Task({self.spec.name!r}, train={len(self.train)}, val={len(self.val)}, "
            f"test={len(self.test)}, source={len(self.source)})"
        )


_REGISTRY: dict[str, tuple[TaskSpec, Loader]] = {}


def check_size(value: object, what: str) -> int:
    """``value`` if it is a positive integer (a split size), else a ConfigError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{what} must be a positive integer (a number of rows), got {value!r}")
    return int(value)


def register_task(spec: TaskSpec, loader: Loader, overwrite: bool = False) -> TaskSpec:
    """Add a task to the registry.

    Args:
        spec: the task's description.
        loader: ``loader(data_root) -> RawTask``; ``data_root`` is None when no data root was
            given (built-in tasks then fall back to the Hugging Face hub).
        overwrite: replace an existing task of the same name.
    """
    if spec.name in _REGISTRY and not overwrite:
        raise ConfigError(f"task {spec.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[spec.name] = (spec, loader)
    return spec


def task_names() -> list[str]:
    return list(_REGISTRY)


def get_spec(name: str) -> TaskSpec:
    """The spec of a registered task, or of a task YAML file."""
    return _resolve(name)[0]


def _resolve(name: str) -> tuple[TaskSpec, Loader]:
    if name.endswith((".yaml", ".yml")):
        return task_from_yaml(name)
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown task {name!r}. Known tasks: {', '.join(_REGISTRY)}; "
            "or pass the path of a task YAML file (see README, 'Your own data')"
        )
    return _REGISTRY[name]


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The data root: ``data_dir`` if given, else ``$AUGRL_DATA``, else None (use the hub)."""
    chosen = data_dir if data_dir is not None else os.environ.get("AUGRL_DATA") or None
    if chosen is None:
        return None
    root = Path(chosen).expanduser()
    if not root.is_dir():
        origin = "--data-dir" if data_dir is not None else "AUGRL_DATA"
        raise DataError(
            f"data root {str(root)!r} (from {origin}) is not a folder",
            "point it at the folder holding sst2/, rt/, cikm/... (this checkout: ../shared/data)",
        )
    return root


def load_raw(name: str, data_dir: str | Path | None = None) -> tuple[TaskSpec, RawTask]:
    """Load and validate all of a task's records, without splitting."""
    spec, loader = _resolve(name)
    return spec, loader(resolve_data_dir(data_dir))


def load_task(
    name: str,
    shots: int = DEFAULT_SHOTS,
    seed: int = 0,
    data_dir: str | Path | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
    leakage: str = "remove",
    leakage_settings: LeakageSettings | dict | None = None,
) -> Task:
    """Load a task and draw its seeded few-shot split (see the module docstring).

    Args:
        name: a registered task name or the path of a task YAML file.
        shots: target training examples per class (regression: ``2 * shots`` examples).
        seed: split seed; the same seed gives the same split.
        data_dir: data root; default ``$AUGRL_DATA``; with neither, the Hugging Face hub.
        val_size, test_size: override the spec's sizes.
        leakage: ``"remove"`` (default) drops the source rows that leak a validation or test
            text; ``"keep"`` keeps them (the audit still runs and is recorded).
        leakage_settings: thresholds of the audit (:class:`augrl.leakage.LeakageSettings`
            or a dict of its fields); default: its defaults.
    """
    if shots < 1:
        raise ConfigError(f"shots must be >= 1, got {shots}")
    _leakage_options(leakage, leakage_settings)  # fail before reading any data
    spec, raw = load_raw(name, data_dir)
    return split_task(spec, raw, shots=shots, seed=seed, val_size=val_size, test_size=test_size,
                      leakage=leakage, leakage_settings=leakage_settings)


# --------------------------------------------------------------------------- splitting


def normalize_text(text: str) -> str:
    """Lower-case and collapse whitespace (a light key; the source filter uses the stronger
    :func:`augrl.leakage.normalize`)."""
    return " ".join(text.lower().split())


def _texts_of(rec: dict, spec: TaskSpec) -> list[str]:
    return [rec[f] for f in spec.text_fields]


def _digest(indices: list[int]) -> str:
    return hashlib.sha1(",".join(map(str, indices)).encode()).hexdigest()[:12]


def split_task(
    spec: TaskSpec,
    raw: RawTask,
    shots: int = DEFAULT_SHOTS,
    seed: int = 0,
    val_size: int | None = None,
    test_size: int | None = None,
    leakage: str = "remove",
    leakage_settings: LeakageSettings | dict | None = None,
) -> Task:
    """Apply the few-shot protocol of the module docstring to loaded records (``leakage`` and
    ``leakage_settings`` as in :func:`load_task`)."""
    settings = _leakage_options(leakage, leakage_settings)
    val_size = spec.val_size if val_size is None else check_size(val_size, "val_size")
    test_size = spec.test_size if test_size is None else check_size(test_size, "test_size")
    rng = np.random.default_rng(seed)
    target = raw.target

    def sample(rows: list[dict], k: int) -> list[dict]:
        order = rng.permutation(len(rows))[: min(k, len(rows))]
        return [rows[i] for i in order]

    if "all" in target:
        pool = [dict(r, idx=i) for i, r in enumerate(target["all"])]
        order = rng.permutation(len(pool))
        test = [pool[i] for i in order[:test_size]]
        rest = [pool[i] for i in order[test_size:]]
        test_from = "random"
    else:
        train_rows = [dict(r, idx=i) for i, r in enumerate(target.get("train", []))]
        offset = len(train_rows)
        test_rows = [dict(r, idx=offset + i) for i, r in enumerate(target["test"])]
        test = sample(test_rows, test_size)
        rest = [train_rows[i] for i in rng.permutation(len(train_rows))]
        test_from = "official test"
    if "validation" in target:
        offset = len(target.get("train", [])) + len(target.get("test", []))
        val = sample([dict(r, idx=offset + i) for i, r in enumerate(target["validation"])], val_size)
        val_from = "official validation"
    else:
        val, rest = rest[:val_size], rest[val_size:]
        val_from = "random"

    def shortage(problem: str, wanted: str) -> DataError:
        need = spec.train_size(shots) + (0 if "validation" in target else val_size)
        need, where = (need + test_size, "target rows") if "all" in target else (need, "rows in the train split")
        return DataError(
            f"task {spec.name!r}: {problem}. The target holds {_rows_by_split(target)}; the test split "
            f"took {len(test)} ({test_from}, test_size {test_size}), validation took {len(val)} ({val_from}, "
            f"val_size {val_size}), leaving {len(rest)} for training; these sizes need at least {need} {where}",
            f"add {wanted} rows to the target, or lower --shots, val_size or test_size (fields of a task YAML, "
            "arguments of load_task)",
        )

    if spec.is_regression:
        need = spec.train_size(shots)
        if len(rest) < need:
            raise shortage(f"shots={shots} needs {need} training rows, only {len(rest)} remain", "training")
        train = rest[:need]
    else:
        train = []
        for label in range(spec.num_labels):
            of_class = [r for r in rest if r["label"] == label][:shots]
            if len(of_class) < shots:
                name = spec.label_names[label]
                raise shortage(f"class {name!r} has only {len(of_class)} rows left for training, {shots} asked for "
                               f"(--shots {shots})", repr(name))
            train.extend(of_class)
        train = [train[i] for i in rng.permutation(len(train))]

    chosen = {id(r) for r in train}
    heldout = {json.dumps(_texts_of(r, spec)) for r in val + test}
    unlabelled = [r for r in rest if id(r) not in chosen and json.dumps(_texts_of(r, spec)) not in heldout]
    unlabelled = unlabelled[:UNLABELLED_MAX]

    report = audit([_texts_of(r, spec) for r in raw.source], [_texts_of(r, spec) for r in val + test],
                   **settings.to_dict())
    source = [dict(r, idx=i) for i, (r, category) in enumerate(zip(raw.source, report.categories))
              if category is None or leakage == "keep"]
    removed = len(raw.source) - len(source)

    meta = {
        "task": spec.name,
        "seed": seed,
        "shots": shots,
        "sizes": {"train": len(train), "val": len(val), "test": len(test), "source": len(source),
                  "unlabelled": len(unlabelled)},
        "test_from": test_from,
        "val_from": val_from,
        "source_removed": removed,
        "source_total": len(raw.source),
        "leakage_filter": leakage,
        "leakage": _leakage_record(report, removed),
        "index_hash": {
            name: _digest([r["idx"] for r in rows])
            for name, rows in (("train", train), ("val", val), ("test", test), ("unlabelled", unlabelled))
        },
    }
    return Task(
        spec=spec,
        train=_to_dataset(train, spec),
        val=_to_dataset(val, spec),
        test=_to_dataset(test, spec),
        source=_to_dataset(source, spec),
        meta=meta,
        leakage_report=report,
        unlabelled=_to_dataset(unlabelled, spec),
    )


def _rows_by_split(target: dict[str, list[dict]]) -> str:
    """``"train: 0 rows (train.csv), test: 4 rows (test.csv)"``: the row count of each target
    split and the files its rows came from, for errors about too little data."""
    parts = []
    for split, rows in target.items():
        files = sorted({Path(str(r["_file"])).name for r in rows if r.get("_file")})
        where = f" ({', '.join(files)})" if files else ""
        parts.append(f"{split}: {len(rows)} row{'' if len(rows) == 1 else 's'}{where}")
    return ", ".join(parts) or "no rows"


def _leakage_options(mode: str, settings: LeakageSettings | dict | None) -> LeakageSettings:
    if mode not in LEAKAGE_FILTERS:
        raise ConfigError(f"leakage must be one of {LEAKAGE_FILTERS}, got {mode!r}")
    if settings is None or isinstance(settings, LeakageSettings):
        return settings or LeakageSettings()
    if not isinstance(settings, dict):
        raise ConfigError(f"leakage_settings must be a LeakageSettings or a dict, got {type(settings).__name__}")
    known = set(LeakageSettings.__dataclass_fields__)
    if set(settings) - known:
        raise ConfigError(f"unknown leakage setting(s) {sorted(set(settings) - known)}; known: {sorted(known)}")
    return LeakageSettings(**settings)


def _leakage_record(report: LeakageReport, removed: int) -> dict:
    """The split record's summary of the source audit (rows per category, thresholds)."""
    counts = report.counts
    return {
        "against": "val+test",
        "counts": {c: counts[c] for c in CATEGORIES},
        "flagged": counts["flagged"],
        "in_source": counts["flagged"] - removed,
        "settings": report.settings.to_dict(),
    }


def _to_dataset(rows: list[dict], spec: TaskSpec):
    import datasets

    columns = list(spec.text_fields) + ["label", "idx", "domain"]
    data = {c: [r[c] for r in rows] for c in columns}
    features = datasets.Features(
        {
            **{f: datasets.Value("string") for f in spec.text_fields},
            "label": datasets.Value("float32")
            if spec.is_regression
            else datasets.ClassLabel(names=list(spec.label_names)),
            "idx": datasets.Value("int64"),
            "domain": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(data, features=features)


# --------------------------------------------------------------------------- record checks


def _check_text(rec: dict, field_name: str) -> str:
    value = rec.get(field_name)
    if value is None or not str(value).strip():
        raise DataError(
            f"empty text in field {field_name!r}",
            "remove the row or fill in the text",
            rec.get("_file"),
            rec.get("_line"),
        )
    return " ".join(str(value).split())


def _label_index(value, label_names: tuple[str, ...], rec: dict, column: str = "label") -> int:
    key = str(value).strip()
    if key in label_names:
        return label_names.index(key)
    raise DataError(
        f"unknown label {key!r} in column {column!r}; expected one of {list(label_names)}"
        f"{_did_you_mean(key, label_names)}",
        "correct the label or list it under 'labels' in the task",
        rec.get("_file"),
        rec.get("_line"),
    )


def _score(value, rec: dict, column: str = "label") -> float:
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = float("nan")
    if not np.isfinite(score):
        raise DataError(
            f"regression score {value!r} in column {column!r} is not a finite number",
            "write a number such as 3.5",
            rec.get("_file"),
            rec.get("_line"),
        )
    return score


def _single(rec: dict, text: str, label, domain: str) -> dict:
    return {"text": text, "label": label, "domain": domain, "_file": rec.get("_file"), "_line": rec.get("_line")}


def _pair(rec: dict, a: str, b: str, label, domain: str) -> dict:
    return {"text_a": a, "text_b": b, "label": label, "domain": domain, "_file": rec.get("_file"), "_line": rec.get("_line")}


# --------------------------------------------------------------------------- built-in loaders

SENTIMENT = ("negative", "positive")
PARAPHRASE = ("not_paraphrase", "paraphrase")
ENTAILMENT = ("entailment", "not_entailment")
AMAZON_DOMAINS = ("books", "dvd", "electronics")


def _hub(path: str, name: str | None = None):
    """Load a hub dataset, turning network failures into a clear error."""
    import datasets

    try:
        return datasets.load_dataset(path, name)
    except Exception as err:  # any hub/network failure
        raise DataError(
            f"no data root was given and loading {path}{'/' + name if name else ''} from the "
            f"Hugging Face hub failed ({type(err).__name__}: {str(err)[:200]})",
            "set AUGRL_DATA or pass --data-dir (this checkout's data is in ../shared/data)",
        ) from None


def _hub_rows(dataset, splits, spec_fields: tuple[str, ...], columns: tuple[str, ...], domain: str):
    rows = []
    for split in splits:
        for i, r in enumerate(dataset[split]):
            if r["label"] < 0:  # GLUE test splits carry no labels
                continue
            rec = {"_file": f"hub:{split}", "_line": i + 1}
            texts = [_check_text({**rec, c: r[c]}, c) for c in columns]
            rows.append(dict(zip(spec_fields, texts), label=int(r["label"]), domain=domain, **rec))
    return rows


def _no_hub(dataset: str) -> RawTask:
    raise DataError(
        f"no data root was given and {dataset} has no Hugging Face hub copy augrl can use",
        "set AUGRL_DATA or pass --data-dir (this checkout's data is in ../shared/data)",
    )


def read_sst2(root: Path, split: str = "train") -> list[dict]:
    rows = readers.read_tsv_plain(root / "sst2" / f"{split}.tsv", columns=("text", "label"))
    return [_single(r, _check_text(r, "text"), _label_index(r["label"], ("0", "1"), r), "sst2") for r in rows]


def _sst2_from_hub(split: str) -> list[dict]:
    return _hub_rows(_hub("stanfordnlp/sst2"), [split], ("text",), ("sentence",), "sst2")


def _load_sst2(root: Path | None) -> RawTask:
    if root is None:
        return RawTask(target={"train": _sst2_from_hub("train"), "test": _sst2_from_hub("validation")})
    return RawTask(target={"train": read_sst2(root, "train"), "test": read_sst2(root, "dev")})


def _load_rt(root: Path | None) -> RawTask:
    if root is None:
        hub = _hub("cornell-movie-review-data/rotten_tomatoes")
        target = _hub_rows(hub, ["train", "validation", "test"], ("text",), ("text",), "rt")
        return RawTask(target={"all": target}, source=_sst2_from_hub("train"))
    target = []
    for label, polarity in enumerate(("neg", "pos")):
        for r in readers.read_lines(root / "rt" / f"rt-polarity.{polarity}", encoding="latin-1"):
            target.append(_single(r, r["text"], label, "rt"))
    return RawTask(target={"all": target}, source=read_sst2(root, "train"))


def read_mrpc(root: Path, split: str) -> list[dict]:
    cols = ("Quality", "#1 String", "#2 String")
    rows = readers.read_tsv_plain(root / "mrpc" / f"{split}.tsv", columns=cols)
    return [
        _pair(r, _check_text(r, "#1 String"), _check_text(r, "#2 String"),
              _label_index(r["Quality"], ("0", "1"), r, "Quality"), "mrpc")
        for r in rows
    ]


def _load_cikm(root: Path | None) -> RawTask:
    if root is None:
        return _no_hub("CIKM AnalytiCup 2018")
    names = ["en1", "es1", "en2", "es2", "label"]
    rows = readers.read_tsv_plain(
        root / "cikm" / "cikm_english_train_20180516.txt", header=False, names=names
    )
    target = [
        _pair(r, _check_text(r, "en1"), _check_text(r, "en2"), _label_index(r["label"], ("0", "1"), r), "cikm")
        for r in rows
    ]
    return RawTask(target={"all": target}, source=read_mrpc(root, "train") + read_mrpc(root, "dev"))


def _read_rte(root: Path, split: str) -> list[dict]:
    rows = readers.read_tsv_plain(
        root / "rte" / f"{split}.tsv",
        columns=("sentence1", "sentence2", "label"),
        header=None,
        names=["index", "sentence1", "sentence2", "label"],
    )
    return [
        _pair(r, _check_text(r, "sentence1"), _check_text(r, "sentence2"), _label_index(r["label"], ENTAILMENT, r), "rte")
        for r in rows
    ]


def read_sick(root: Path) -> list[dict]:
    cols = ("sentence_A", "sentence_B", "entailment_label", "relatedness_score", "SemEval_set")
    return readers.read_tsv_plain(root / "sick" / "SICK.txt", columns=cols)


_SICK_TO_RTE = {"ENTAILMENT": "entailment", "NEUTRAL": "not_entailment", "CONTRADICTION": "not_entailment"}


def _load_rte(root: Path | None) -> RawTask:
    if root is None:
        return _no_hub("SICK (the source of the rte task)")
    source = []
    for r in read_sick(root):
        mapped = _SICK_TO_RTE.get(r["entailment_label"])
        if mapped is None:
            raise DataError(
                f"unknown SICK entailment_label {r['entailment_label']!r}",
                f"expected one of {list(_SICK_TO_RTE)}",
                r["_file"],
                r["_line"],
            )
        source.append(_pair(r, _check_text(r, "sentence_A"), _check_text(r, "sentence_B"), ENTAILMENT.index(mapped), "sick"))
    return RawTask(target={"train": _read_rte(root, "train"), "test": _read_rte(root, "val")}, source=source)


def _load_sick_relatedness(root: Path | None) -> RawTask:
    if root is None:
        return _no_hub("SICK")
    by_split: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    names = {"TRAIN": "train", "TRIAL": "validation", "TEST": "test"}
    for r in read_sick(root):
        split = names.get(r["SemEval_set"].strip())
        if split is None:
            raise DataError(
                f"unknown SemEval_set {r['SemEval_set']!r}", "expected TRAIN, TRIAL or TEST", r["_file"], r["_line"]
            )
        score = _score(r["relatedness_score"], r, "relatedness_score")
        by_split[split].append(_pair(r, _check_text(r, "sentence_A"), _check_text(r, "sentence_B"), score, "sick"))
    return RawTask(target=by_split)


def _amazon_sentiment(root: Path, domain: str) -> list[dict]:
    rows = []
    for label, polarity in enumerate(("negative", "positive")):
        for r in readers.read_amazon_reviews(root / "amazon" / domain / f"{polarity}.review"):
            rows.append(_single(r, r["text"], label, domain))
    return rows


def _amazon_helpfulness(root: Path, domain: str) -> list[dict]:
    rows = []
    for polarity in ("negative", "positive"):
        for r in readers.read_amazon_reviews(root / "amazon" / domain / f"{polarity}.review"):
            if r["helpful_total"]:  # empty field or 0 votes: no ratio
                rows.append(_single(r, r["text"], r["helpful_yes"] / r["helpful_total"], domain))
    return rows


def _amazon_loader(domain: str, read: Callable[[Path, str], list[dict]]) -> Loader:
    def load(root: Path | None) -> RawTask:
        if root is None:
            return _no_hub("the Blitzer et al. multi-domain Amazon reviews")
        source = [row for other in AMAZON_DOMAINS if other != domain for row in read(root, other)]
        return RawTask(target={"all": read(root, domain)}, source=source)

    return load


def _register_builtins() -> None:
    register_task(
        TaskSpec("rt", "classification", SENTIMENT, target="RT movie-review polarity", source="SST-2 train",
                 hub_id="cornell-movie-review-data/rotten_tomatoes",
                 description="movie-review sentence sentiment; source SST-2 (built from RT snippets)"),
        _load_rt,
    )
    register_task(
        TaskSpec("sst2", "classification", SENTIMENT, target="SST-2 (test = GLUE dev)", hub_id="stanfordnlp/sst2",
                 description="SST-2 on its own, no source"),
        _load_sst2,
    )
    register_task(
        TaskSpec("cikm", "pair_classification", PARAPHRASE, pair=True, target="CIKM AnalytiCup 2018 English pairs",
                 source="MRPC train+dev", description="customer-service question paraphrase; source MRPC"),
        _load_cikm,
    )
    register_task(
        TaskSpec("rte", "pair_classification", ENTAILMENT, pair=True, target="RTE (test = GLUE val)",
                 source="SICK (entailment vs not)",
                 description="textual entailment; source SICK mapped to entailment / not"),
        _load_rte,
    )
    for domain in AMAZON_DOMAINS:
        others = "+".join(d for d in AMAZON_DOMAINS if d != domain)
        register_task(
            TaskSpec(f"amazon-{domain}", "classification", SENTIMENT, target=f"Amazon {domain} reviews",
                     source=f"Amazon {others} reviews", test_size=1000,
                     description=f"{domain} review sentiment; source: other domains"),
            _amazon_loader(domain, _amazon_sentiment),
        )
        register_task(
            TaskSpec(f"helpful-{domain}", "regression", target=f"Amazon {domain} helpfulness (x of y votes)",
                     source=f"Amazon {others} helpfulness", test_size=800,
                     description=f"{domain} review helpfulness ratio; reviews without votes are left out"),
            _amazon_loader(domain, _amazon_helpfulness),
        )
    register_task(
        TaskSpec("sick-relatedness", "regression", pair=True, target="SICK relatedness (1-5)",
                 description="sentence-pair relatedness score; official TRAIN/TRIAL/TEST, no source"),
        _load_sick_relatedness,
    )


_register_builtins()


# --------------------------------------------------------------------------- users' YAML tasks

_YAML_KEYS = ("name", "kind", "text", "label", "labels", "target", "source", "val_size", "test_size", "encoding",
              "description")
_SPLIT_KEYS = ("train", "validation", "test", "all")
_YAML_HELP = "see README, 'Your own data'"


def _did_you_mean(word: object, options) -> str:
    """``" (did you mean 'labels'?)"`` for the option closest to ``word``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    if not close:
        lowered = {str(o).lower(): str(o) for o in options}
        close = [lowered[str(word).lower()]] if str(word).lower() in lowered else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def task_from_yaml(path: str | Path) -> tuple[TaskSpec, Loader]:
    """Read a task YAML file (format in the README, 'Your own data').

    Example::

        name: my-reviews
        kind: classification          # or pair_classification, regression
        text: review                  # pairs: [question1, question2]
        label: stars
        labels: [bad, good]           # optional; default: sorted distinct values
        target: {train: train.csv, test: test.csv}   # or {all: reviews.jsonl}
        source: {all: other_domain.csv}              # optional
        val_size: 200                 # optional, rows; test_size likewise (default 2000)
        encoding: utf-8               # optional: the encoding of every file above, e.g. latin-1

    File paths are relative to the YAML file. ``text`` is one column name, or a list of two for
    a pair task; ``label`` is one column name; ``labels`` is a YAML list of distinct class
    names; sizes are positive integers. Every file is read once, here; errors name the file,
    line and field at fault.
    """
    path = Path(path).expanduser()
    cfg = _read_yaml_mapping(path)
    _check_yaml_keys(cfg, path)
    kind = cfg["kind"]
    if kind not in KINDS:
        raise DataError(f"field 'kind' is {kind!r}{_did_you_mean(kind, KINDS)}", f"use one of {list(KINDS)}", path)
    text_cols, label_col = _yaml_columns(cfg, kind, path)
    labels = _yaml_labels(cfg, kind, path)
    sizes = {key: _yaml_size(cfg, key, path) for key in ("val_size", "test_size")}
    encoding = readers.check_encoding(cfg.get("encoding", "utf-8"), path)
    target_files, source_files = _yaml_files(cfg, "target", path), _yaml_files(cfg, "source", path)

    def read(key: str, split: str, file: Path) -> list[dict]:
        rows = _read_yaml_table(file, f"{key}: {split}", path, encoding)
        return [_yaml_row(r, text_cols, label_col, path) for r in rows]

    rows_target = {split: read("target", split, f) for split, f in target_files.items()}
    rows_source = [r for split, f in source_files.items() for r in read("source", split, f)]
    if kind != "regression" and labels is None:
        labels = _infer_labels(rows_target, label_col, path)
    label_names = labels if kind != "regression" else ()
    try:
        spec = TaskSpec(
            name=_yaml_text(cfg, "name", path.stem, path),
            kind=kind,
            label_names=label_names,
            pair=len(text_cols) == 2,
            target=", ".join(f.name for f in target_files.values()),
            source=", ".join(f.name for f in source_files.values()) or None,
            description=_yaml_text(cfg, "description", f"user task from {path.name}", path),
            **sizes,
        )
    except ConfigError as err:
        raise DataError(str(err), _YAML_HELP, path) from None

    def convert(rows: list[dict], domain: str) -> list[dict]:
        out = []
        for r in rows:
            texts = [_check_text(r, c) for c in text_cols]
            value = r[label_col]
            if spec.is_regression:
                label = _score(value, r, label_col)
            else:
                label = _label_index(value, label_names, r, label_col)
            out.append(_pair(r, *texts, label, domain) if spec.pair else _single(r, texts[0], label, domain))
        return out

    def loader(_root: Path | None) -> RawTask:
        return RawTask(
            target={k: convert(rows, "target") for k, rows in rows_target.items()},
            source=convert(rows_source, "source"),
        )

    return spec, loader


def _read_yaml_mapping(path: Path) -> dict:
    """The top-level mapping of a task YAML file."""
    if not path.is_file():
        raise DataError("task file not found", "check the path given to --task", path)
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError("the task file is not UTF-8 text", "save it as UTF-8 (the data files may use any encoding: "
                        "set `encoding:`)", path, line) from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise DataError(f"invalid YAML: {err}", "fix the YAML syntax", path, None if line is None else line + 1) from None
    if not isinstance(cfg, dict):
        raise DataError("a task file must be a YAML mapping (`key: value` lines)", _YAML_HELP, path)
    return cfg


def _check_yaml_keys(cfg: dict, path: Path) -> None:
    """Unknown keys (with the nearest valid one) and missing required keys."""
    unknown = sorted(str(k) for k in cfg if k not in _YAML_KEYS)
    if unknown:
        hints = [(k, _did_you_mean(k, _YAML_KEYS)) for k in unknown]
        if len(unknown) == 1:
            hint = hints[0][1]
        else:
            hint = "; ".join(f"{k!r}{h}" for k, h in hints if h)
            hint = f": {hint}" if hint else ""
        raise DataError(f"unknown field(s) {unknown}{hint}",
                        f"rename or remove them; the fields are {list(_YAML_KEYS)}", path)
    for key in ("kind", "text", "label", "target"):
        if cfg.get(key) is None:
            raise DataError(f"missing field {key!r}", _YAML_HELP, path)


def _yaml_columns(cfg: dict, kind: str, path: Path) -> tuple[list[str], str]:
    """The text column(s) (one, or two for a pair) and the label column."""
    text, label = cfg["text"], cfg["label"]
    if not isinstance(label, str) or not label.strip():
        example = label[0] if isinstance(label, list) and label and isinstance(label[0], str) else "category"
        raise DataError(f"field 'label' is {label!r}; it must be one column name",
                        f"write e.g. `label: {example}`", path)
    cols = text if isinstance(text, list) else [text]
    if not cols or not all(isinstance(c, str) and c.strip() for c in cols):
        raise DataError(f"field 'text' is {text!r}; it must be one column name, or a list of two for a pair task",
                        "write `text: review` or `text: [question1, question2]`", path)
    if len(cols) > 2 or (kind == "pair_classification" and len(cols) != 2):
        need = "two" if kind == "pair_classification" else "one, or two for a pair task"
        raise DataError(f"field 'text' names {len(cols)} column(s) {cols}; a {kind} task needs {need}",
                        "write `text: [first_column, second_column]` for a pair, `text: column` otherwise", path)
    if len(set(cols)) != len(cols) or label in cols:
        raise DataError(f"fields 'text' {cols} and 'label' {label!r} name a column twice",
                        "name a different column in each place", path)
    return cols, label


def _yaml_labels(cfg: dict, kind: str, path: Path) -> tuple[str, ...] | None:
    """The ``labels`` list as strings, or None when it is not given."""
    labels = cfg.get("labels")
    if labels is None:
        return None
    if kind == "regression":
        raise DataError("field 'labels' is given, but a regression task has no classes",
                        "remove 'labels', or set `kind: classification`", path)
    if isinstance(labels, str):
        parts = [p for p in re.split(r"[,\s]+", labels.strip(" []")) if p]
        raise DataError(f"field 'labels' is the string {labels!r}; it must be a YAML list",
                        f"write `labels: [{', '.join(parts) or 'neg, pos'}]`", path)
    if not isinstance(labels, list) or not all(isinstance(x, (str, int, float)) for x in labels):
        raise DataError(f"field 'labels' is {labels!r}; it must be a YAML list of class names",
                        "write e.g. `labels: [neg, pos]`", path)
    booleans = [x for x in labels if isinstance(x, bool)]
    if booleans:
        raise DataError(f"field 'labels' {labels!r} holds {booleans[0]!r}: YAML reads unquoted yes/no/on/off/true/false "
                        "as booleans", "quote those labels, e.g. `labels: ['no', 'yes']`", path)
    names = tuple(str(x).strip() for x in labels)
    twice = [x for i, x in enumerate(names) if x in names[:i]]
    if twice:
        raise DataError(f"duplicate label {twice[0]!r} in field 'labels' {list(names)}",
                        "list each class once", path)
    if len(names) < 2:
        raise DataError(f"field 'labels' lists {len(names)} class(es) {list(names)}; a classification task needs "
                        "at least 2", "list every class, e.g. `labels: [neg, pos]`", path)
    return names


def _yaml_size(cfg: dict, key: str, path: Path) -> int:
    """A split size from the YAML (default: the built-in default), a positive integer."""
    default = {"val_size": DEFAULT_VAL_SIZE, "test_size": DEFAULT_TEST_SIZE}[key]
    value = cfg.get(key, default)
    try:
        return check_size(value, f"field {key!r}")
    except ConfigError as err:
        raise DataError(str(err), f"write e.g. `{key}: {default}`, or leave it out (default {default})", path) from None


def _yaml_text(cfg: dict, key: str, default: str, path: Path) -> str:
    """An optional one-line text field (``name``, ``description``)."""
    value = cfg.get(key, default)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or not str(value).strip():
        raise DataError(f"field {key!r} is {value!r}; it must be a text", f"write e.g. `{key}: {default}`", path)
    return str(value).strip()


def _yaml_files(cfg: dict, key: str, path: Path) -> dict[str, Path]:
    """``target`` / ``source``: split name -> file path (relative to the YAML's folder)."""
    example = "e.g. `target: {train: train.csv, test: test.csv}` or `target: {all: data.csv}`"
    files = cfg.get(key) or {}
    if isinstance(files, str):
        files = {"all": files}
    if not isinstance(files, dict):
        raise DataError(f"field {key!r} is {files!r}; it must map {list(_SPLIT_KEYS)} to files", example, path)
    for split, file in files.items():
        if split not in _SPLIT_KEYS:
            raise DataError(f"field {key!r} has split {split!r}{_did_you_mean(split, _SPLIT_KEYS)}",
                            f"use {list(_SPLIT_KEYS)}; {example}", path)
        if not isinstance(file, str) or not file.strip():
            raise DataError(f"'{key}: {split}' is {file!r}; it must be one file name",
                            f"write e.g. `{key}: {{{split}: {split}.csv}}`; to merge files, merge them first", path)
    if key == "target":
        if "all" in files and len(files) > 1:
            raise DataError(f"field 'target' gives 'all' and {sorted(set(files) - {'all'})}",
                            "give either the whole file as 'all' (split at random), or official splits "
                            "(train and test, optional validation)", path)
        if "all" not in files and not {"train", "test"} <= set(files):
            missing = sorted({"train", "test"} - set(files))
            raise DataError(f"field 'target' has no {' or '.join(map(repr, missing))} split", example, path)
    resolved = {split: (path.parent / Path(file.strip()).expanduser()) for split, file in files.items()}
    if key == "target":
        seen: dict[Path, str] = {}
        for split, file in resolved.items():
            if file.resolve() in seen:
                raise DataError(f"'target: {seen[file.resolve()]}' and 'target: {split}' are the same file "
                                f"{file.name}: test rows would be trained on",
                                "give the file once as `target: {all: ...}` to split it at random", path)
            seen[file.resolve()] = split
    return resolved


def _read_yaml_table(file: Path, where: str, yaml_path: Path, encoding: str) -> list[dict]:
    """The records of one file of a YAML task; errors say which YAML field named it and how to fix it."""
    if file.is_dir():
        raise DataError(f"'{where}' in {yaml_path.name} names a folder, not a file",
                        f"name the CSV, TSV, JSONL or JSON file inside it in {yaml_path}", file)
    if not file.is_file():
        folder = file.parent
        near = _did_you_mean(file.name, [f.name for f in folder.iterdir()] if folder.is_dir() else [])
        raise DataError(f"file not found (named by '{where}' in {yaml_path.name}){near}",
                        f"fix the path in {yaml_path}; paths are relative to the folder of the YAML file", file)
    try:
        rows = readers.read_table(file, encoding=encoding)
    except readers.DecodeError as err:
        other = " (or the file's real encoding, e.g. cp1252 for Windows files)" if err.suggestion == "latin-1" else ""
        raise DataError(err.problem, f"add `encoding: {err.suggestion}` to {yaml_path}{other}, or save {file.name} "
                        "as UTF-8", err.path, err.line) from None
    if not rows:
        what = "a header and no rows" if file.suffix.lower() in (".csv", ".tsv") else "no records"
        raise DataError(f"the file holds {what}",
                        f"add rows to it, or point '{where}' in {yaml_path.name} at the right file", file)
    return rows


def _yaml_row(rec: dict, text_cols: list[str], label_col: str, yaml_path: Path) -> dict:
    """``rec`` if it has every text column and a label; else a DataError naming the key and line.

    CSV/TSV rows all carry the header's columns, so a missing key there is a header problem
    (reported at line 1); in JSON(L) each row has its own keys.
    """
    columns = [c for c in rec if not str(c).startswith("_")]
    tabular = str(rec.get("_file", "")).lower().endswith((".csv", ".tsv"))
    for col in [*text_cols, label_col]:
        if col in rec:
            continue
        field = "label" if col == label_col else "text"
        hint = _did_you_mean(col, columns)
        if tabular:
            fix = (_delimiter_hint(columns, str(rec["_file"]))
                   or f"correct '{field}' in {yaml_path}, or rename the column")
            raise DataError(f"column {col!r} not found; columns are {columns}{hint}", fix, rec.get("_file"), 1)
        raise DataError(f"row has no key {col!r}; its keys are {columns}{hint}",
                        f"add \"{col}\" to that row, or correct '{field}' in {yaml_path}",
                        rec.get("_file"), rec.get("_line"))
    value = rec[label_col]
    if value is None or not str(value).strip():
        raise DataError(f"empty label in column {label_col!r}", "fill in the label or remove the row",
                        rec.get("_file"), rec.get("_line"))
    return rec


def _delimiter_hint(columns: list[str], file: str) -> str:
    """How to fix a header read as one column because the file uses another delimiter, or ``""``."""
    if len(columns) != 1:
        return ""
    tsv = file.lower().endswith(".tsv")
    for sep, name in (("\t", "tab"), (",", "comma"), (";", "semicolon"), ("|", "bar")):
        if sep in columns[0] and sep != ("\t" if tsv else ","):
            if sep == ("," if tsv else "\t"):
                return f"the file is {name}-separated: name it .{'csv' if tsv else 'tsv'}"
            return (f"the file looks {name}-separated, but augrl reads .csv files as comma-separated and .tsv as "
                    "tab-separated: save it with commas (or tabs, as .tsv)")
    return ""


def _infer_labels(rows: dict[str, list[dict]], label_col: str, path: Path) -> tuple[str, ...]:
    """The sorted distinct labels of the target rows (``labels`` not given); at least two."""
    names = tuple(sorted({str(r[label_col]).strip() for split in rows.values() for r in split}))
    if len(names) < 2:
        raise DataError(f"column {label_col!r} of the target holds {len(names)} distinct label(s) {list(names)}; "
                        "a classification task needs at least 2",
                        f"check 'label' and the target files in {path.name}, or list the classes under 'labels'",
                        path)
    return names
