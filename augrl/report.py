"""Tables and plots of a benchmark, rebuilt from ``DIR/results.jsonl`` alone (``augrl report DIR``);
for a search folder (``augrl tune``) also the trials' table and ``search.png``.

Writes, for every task and shots value in the file:

* ``table.md``: per method, mean ± std over seeds of each test metric (accuracy and F1 for
  classification, Pearson and Spearman for regression; the L2A paper's layout), the number of
  seeds, the evaluated model's parameters (teacher for ``teacher_ft``, else the student) and
  the mean wall time per run; a mark on a metric whose paired test against ``kd`` over the
  shared seeds has p < 0.05 (:data:`MARK`);
* ``table.csv``: the same numbers, one row per (task, shots, method), with the p-values, the
  mean paired difference against ``kd`` and the number of pairs;
* ``<task>[-<shots>shots].png``: a bar chart per task (and shots) with ± std error bars;
* ``<task>-datasize.png``: for tasks run at several shots, each method's main metric against
  the shots (the L2A paper's Figure 2);
* when selection rows ran (:mod:`augrl.selection.rows`), a "Selection" section in ``table.md``
  (:func:`selection_markdown`): each row against ``kd+random`` at the same budget, the detection
  of planted candidates and the learned selectors' env steps, updates and seconds; learned
  selectors' detection AUC over training in ``<task>-detection.png``;
* when learned selectors ran, a "Gates" section (:func:`gates_markdown`): issue #17's detection,
  student and clean-pool gates for each of them, pass or missed;
* when records carry stage timings, a "Where the time goes" section (:func:`timings_markdown`):
  mean seconds per run of teacher, pool, teacher outputs, selection, final student, evaluation.

The paired test is a two-sided paired t-test (:func:`scipy.stats.ttest_rel`) over the seeds
both methods ran; it needs at least 2 pairs and differences that are not all equal (else no
p-value: "-"). With 5 seeds it detects only large, consistent differences; read the means.

Which lines count: ``command == "bench"`` records. A row gathers the seeds of one method
configuration (:func:`setting_view`: the run config but task, shots and seed, the augmenter's
settings and budget, the method's options). A method run under several configurations (e.g.
another ``--variants``) in one task and shots gets one row per configuration, labelled by the
settings that differ; the ``kd`` reference is its configuration with the most recent line.
A run present twice (two processes) counts once. Lines that do not parse are reported in the
notes of ``table.md`` and in the returned summary, never silently dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from augrl.errors import ConfigError
from augrl.fileio import write_file_atomically
from augrl.results import read_jsonl

REFERENCE = "kd"
ALPHA = 0.05
MARK = "†"


@dataclass
class Row:
    """One method (in one configuration) on one task and shots value.

    Attributes:
        task, shots, method: what ran; ``label`` is the method plus differing settings.
        settings: :func:`settings_hash` of its configuration.
        values: metric -> {seed: test value}.
        params: ``{"teacher": n, "student": n}`` (those recorded).
        seconds: wall time of each run.
        tests: metric -> ``{"p", "diff", "pairs"}`` against the ``kd`` row (absent for ``kd``).
        test_size: rows of the test set.
    """

    task: str
    shots: int
    method: str
    label: str
    settings: str
    values: dict[str, dict[int, float]] = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    tests: dict[str, dict] = field(default_factory=dict)
    test_size: int | None = None

    @property
    def seeds(self) -> list[int]:
        return sorted({s for v in self.values.values() for s in v})

    def mean(self, metric: str) -> float:
        return statistics.fmean(self.values[metric].values())

    def std(self, metric: str) -> float | None:
        vals = list(self.values[metric].values())
        return statistics.stdev(vals) if len(vals) > 1 else None

    @property
    def model_params(self) -> int | None:
        return self.params.get("student", self.params.get("teacher"))


def load_records(folder: str | Path) -> tuple[list[dict], list[str]]:
    """The bench records of ``folder/results.jsonl`` and notes on lines that were left out."""
    path = Path(folder) / "results.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path}: no results file; run `augrl bench ... --out {folder}` first")
    records, bad = read_jsonl(path)
    notes = [f"{path.name}:{line}: {problem}; skipped" for line, problem in bad]
    bench = []
    for i, r in enumerate(records):
        if not isinstance(r, dict) or not isinstance(r.get("metrics"), dict) or "method" not in r:
            notes.append(f"{path.name}: record {i + 1} is not a result record; skipped")
        elif r.get("command") == "bench":
            bench.append(r)
    return bench, notes


def paired_test(a: dict[int, float], b: dict[int, float]) -> dict:
    """Two-sided paired t-test of ``a`` against ``b`` over their common seeds.

    Returns ``{"p", "diff", "pairs"}``: p is None with fewer than 2 pairs or when every
    difference is the same (the test is undefined); ``diff`` is the mean of ``a - b``.
    """
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    out = {"p": None, "diff": statistics.fmean(diffs) if diffs else None, "pairs": len(seeds)}
    if len(seeds) >= 2 and max(diffs) - min(diffs) > 1e-12:
        out["p"] = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    return out


def _flat(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


#: config fields that say where a run ran, not how: a row gathers the seeds, a table the task and shots
PLACE_FIELDS = ("task", "shots", "seed")
#: augmenter settings that do not change its candidates
DISPLAY_ONLY = ("progress",)


def setting_view(record: dict) -> dict:
    """One configuration of a method, from its record alone: the run config except
    :data:`PLACE_FIELDS`, and for augmented runs the budget and augmenter settings, plus the
    method's options; flattened (``student_train.lr``...). The seeds of one view form a row."""
    view = _flat({k: v for k, v in (record.get("config") or {}).items() if k not in PLACE_FIELDS})
    augmenter = record.get("augmenter")
    if augmenter:
        view["variants"] = record.get("variants")
        params = {k: v for k, v in (augmenter.get("params") or {}).items() if k not in DISPLAY_ONLY}
        view.update(_flat({"name": augmenter.get("name"), **params}, "augmenter."))
    view.update(_flat(record.get("method_options") or {}, "options."))
    return view


def settings_hash(record: dict) -> str:
    """A short digest of :func:`setting_view`: equal for every seed, task and shots value of
    one configuration."""
    return hashlib.sha1(json.dumps(setting_view(record), sort_keys=True, default=str).encode()).hexdigest()[:12]


def _labels(groups: list[list[dict]], method: str) -> list[str]:
    """Row labels for the configurations of one method: the settings that differ."""
    if len(groups) == 1:
        return [method]
    views = [setting_view(g[-1]) for g in groups]
    keys = sorted({k for v in views for k in v if len({repr(w.get(k)) for w in views}) > 1})
    labels = []
    for group, view in zip(groups, views):
        shown = ", ".join(f"{k.split('.')[-1]}={view.get(k)}" for k in keys[:3])
        labels.append(f"{method} ({shown or settings_hash(group[-1])})")
    return labels


def summarise(records: list[dict]) -> tuple[list[Row], list[str]]:
    """Rows per (task, shots, method configuration), with paired tests against ``kd``."""
    notes: list[str] = []
    seen: set[tuple] = set()
    groups: dict[tuple, dict[str, list[dict]]] = {}
    last_line: dict[tuple, int] = {}
    duplicates = 0
    for i, r in enumerate(records):
        key = (r.get("task"), r.get("shots"), r.get("method"), settings_hash(r), r.get("seed"))
        last_line[key[:4]] = i
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        groups.setdefault(key[:3], {}).setdefault(key[3], []).append(r)
    if duplicates:
        notes.append(f"{duplicates} line(s) repeat a run already counted (two processes ran it); counted once")
    rows: list[Row] = []
    for (task, shots, method), by_config in groups.items():
        configs = list(by_config.values())
        for label, (settings, group) in zip(_labels(configs, method), by_config.items()):
            row = Row(task, shots, method, label, settings)
            for r in group:
                for metric, value in r["metrics"]["test"].items():
                    row.values.setdefault(metric, {})[r["seed"]] = float(value)
                row.seconds.append(float(r.get("wall_time_s") or 0.0))
                row.params.update({k: v for k, v in (r.get("params") or {}).items() if v})
                row.test_size = (r.get("split") or {}).get("sizes", {}).get("test", row.test_size)
            rows.append(row)
        if len(configs) > 1:
            notes.append(f"{task}, {shots} shots: {method} ran under {len(configs)} configurations; one row each")
    for task, shots in dict.fromkeys((r.task, r.shots) for r in rows):
        block = [r for r in rows if (r.task, r.shots) == (task, shots)]
        refs = [r for r in block if r.method == REFERENCE]
        if not refs:
            continue
        ref = max(refs, key=lambda r: last_line[(r.task, r.shots, r.method, r.settings)])
        for row in block:
            if row is not ref:
                row.tests = {m: paired_test(row.values[m], ref.values[m]) for m in row.values if m in ref.values}
    return rows, notes


def _fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _millions(n: int | None) -> str:
    return "-" if not n else f"{n / 1e6:.1f}M"


def _mean_std(values: list[float]) -> str:
    """``mean ± std`` of ``values`` (the mean alone for one value)."""
    return _fmt(statistics.fmean(values)) + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else "")


def _cell(row: Row, metric: str) -> str:
    if metric not in row.values:
        return "-"
    text = _mean_std(list(row.values[metric].values()))
    test = row.tests.get(metric)
    if test and test["p"] is not None and test["p"] < ALPHA:
        text += f" {MARK}"
    return text


def _metrics(block: list[Row]) -> list[str]:
    return list(dict.fromkeys(m for r in block for m in r.values))


def _blocks(rows: list[Row]) -> dict[tuple, list[Row]]:
    out: dict[tuple, list[Row]] = {}
    for r in rows:
        out.setdefault((r.task, r.shots), []).append(r)
    return out


def markdown(rows: list[Row], notes: list[str]) -> str:
    """The Markdown tables (one per task and shots) with their notes."""
    lines = ["# Benchmark results", "",
             f"Test metrics, mean ± std over seeds. {MARK}: p < {ALPHA} in a two-sided paired t-test against "
             f"`{REFERENCE}` over the seeds both ran. params: the evaluated model (teacher for `teacher_ft`). "
             "s/run: mean wall time per run, excluding the shared teacher's fine-tuning (counted in `teacher_ft`).",
             ""]
    for (task, shots), block in _blocks(rows).items():
        metrics = _metrics(block)
        teacher = next((r.params.get("teacher") for r in block if r.params.get("teacher")), None)
        test_size = next((r.test_size for r in block if r.test_size), None)
        lines.append(f"## {task}, {shots} shots per class")
        lines.append("")
        lines.append(f"Teacher: {_millions(teacher)} parameters; test set: {test_size or '-'} examples."
                     + ("" if any(r.method == REFERENCE for r in block) else
                        f" No `{REFERENCE}` rows: no paired tests."))
        lines.append("")
        lines.append("| method | " + " | ".join(metrics) + " | seeds | params | s/run |")
        lines.append("|---|" + "---|" * (len(metrics) + 3))
        for r in block:
            cells = [_cell(r, m) for m in metrics]
            lines.append(f"| {r.label} | " + " | ".join(cells) +
                         f" | {len(r.seeds)} | {_millions(r.model_params)} | {statistics.fmean(r.seconds):.0f} |")
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


SELECTION_REFERENCE = "kd+random"


def _mean(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    return statistics.fmean(values) if values else None


#: issue 17's detection gate: AUC >= 0.90 within this many environment steps
DETECTION_GATE_STEPS = 500


def auc_by(curve: list[dict] | None, steps: int) -> float | None:
    """The detection AUC of a selector's last checkpoint within ``steps`` environment steps
    (``policy_training.detection_curve``); None without one."""
    within = [p for p in curve or [] if p["env_steps"] <= steps]
    return within[-1]["detection_auc"] if within else None


def auc_within(record: dict, steps: int = DETECTION_GATE_STEPS) -> float | None:
    """The detection AUC a learned selector's record shows within ``steps`` environment steps:
    its final selection's when its training took no more steps (the final policy is inside the
    window), else its curve's last checkpoint inside the window (:func:`auc_by`)."""
    training = record.get("policy_training") or {}
    final = (record.get("selection") or {}).get("detection_auc")
    if final is not None and training.get("env_steps") is not None and training["env_steps"] <= steps:
        return float(final)
    return auc_by(training.get("detection_curve"), steps)


def detection_curves(records: list[dict]) -> dict[tuple, dict[str, list[list[dict]]]]:
    """(task, shots) -> method -> the detection curve of each seed, for the records that have one."""
    out: dict[tuple, dict[str, list[list[dict]]]] = {}
    for r in records:
        curve = (r.get("policy_training") or {}).get("detection_curve")
        if curve:
            out.setdefault((r.get("task"), r.get("shots")), {}).setdefault(r.get("method"), []).append(curve)
    return out


def selection_markdown(rows: list[Row], records: list[dict]) -> str:
    """The selection gates (issue #17's layout): for every row of a block that holds selection
    rows, the main test metric, its paired difference from ``kd+random`` (the same budget, the
    same pool) with the p-value, and, from the records, the detection of planted candidates
    (AUC of the row's scores, the AUC a learned selector had reached within
    :data:`DETECTION_GATE_STEPS` environment steps, share of the planted in the lowest-scored
    third, planted kept) and
    the cost of learned selectors (env steps, policy updates, seconds per run); where a block's
    lines record ``kept_by_provenance``, also what each row kept of each kind of candidate
    (mean over the seeds that record it). Empty when no record has a ``selection``."""
    if not any(r.get("selection") for r in records):
        return ""
    lines = ["# Selection", "",
             f"Paired differences against `{SELECTION_REFERENCE}` (same pool, same budget), two-sided paired "
             "t-test over shared seeds. detection AUC: how often a planted candidate scores below a clean one "
             "(1.0: all below; 0.5: random); lowest third: share of the planted candidates among the lowest-scored "
             "third of the pool (random: 0.33).", ""]
    by_row: dict[tuple, list[dict]] = {}
    for r in records:
        by_row.setdefault((r.get("task"), r.get("shots"), r.get("method"), settings_hash(r)), []).append(r)
    for (task, shots), block in _blocks(rows).items():
        if not any(by_row.get((row.task, row.shots, row.method, row.settings), [{}])[0].get("selection")
                   for row in block):
            continue
        metric = _metrics(block)[0]
        refs = [row for row in block if row.method == SELECTION_REFERENCE]
        kinds = any((r.get("selection") or {}).get("kept_by_provenance")
                    for row in block for r in by_row.get((row.task, row.shots, row.method, row.settings), []))
        lines += [f"## {task}, {shots} shots per class", "",
                  f"| method | {metric} | Δ vs random | p | kept | detection AUC | AUC by {DETECTION_GATE_STEPS} steps "
                  "| lowest third | planted kept | env steps | updates | s/run |" + (" kept by kind |" if kinds else ""),
                  "|---|" + "---|" * (12 if kinds else 11)]
        for row in block:
            recs = by_row.get((row.task, row.shots, row.method, row.settings), [])
            sel = [r.get("selection") or {} for r in recs]
            training = [r.get("policy_training") or {} for r in recs]
            test = paired_test(row.values[metric], refs[0].values[metric]) if refs and row is not refs[0] else {}
            diff, pval = test.get("diff"), test.get("p")
            lines.append(" | ".join([
                f"| {row.label}", _cell(row, metric), "-" if diff is None else f"{diff:+.4f}",
                "-" if pval is None else f"{pval:.3f}", _fmt0(_mean([x.get("kept") for x in sel])),
                _fmt(_mean([x.get("detection_auc") for x in sel])),
                _fmt(_mean([auc_within(r) for r in recs if r.get("policy_training")])),
                _fmt(_mean([x.get("planted_in_lowest_third") for x in sel])),
                _fmt0(_mean([x.get("planted_kept") for x in sel])),
                _fmt0(_mean([t.get("env_steps") for t in training])), _fmt0(_mean([t.get("updates") for t in training])),
                _fmt0(_mean([t.get("seconds") for t in training]))] + ([kept_by_kind(sel)] if kinds else [])) + " |")
        lines.append("")
    return "\n".join(lines)


def kept_by_kind(selections: list[dict]) -> str:
    """``"other_domain 166, source 147, l2a 5, eda 2"``: the mean number of kept candidates of
    each kind over the selections that record ``kept_by_provenance``, most first; "-" if none do."""
    counts = [s["kept_by_provenance"] for s in selections if s.get("kept_by_provenance")]
    if not counts:
        return "-"
    kinds = dict.fromkeys(k for c in counts for k in c)
    means = {k: sum(c.get(k, 0) for c in counts) / len(counts) for k in kinds}
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(means.items(), key=lambda kv: -kv[1]))


#: issue 17's student gate: a learned selector keeps candidates worth this much over random-kept
STUDENT_GATE_GAIN = 0.02
#: issue 17's clean-pool gate: on a pool without planted candidates, at most this much below random
CLEAN_GATE_LOSS = 0.005


def pool_kind(record: dict) -> str:
    """``planted``, ``budgeted`` or ``clean``: the selection pool a row's ``options.pool`` asks for."""
    pool = (record.get("method_options") or {}).get("pool") or {}
    return "planted" if pool.get("planted") else "budgeted" if pool.get("budgeted") else "clean"


def gates_markdown(rows: list[Row], records: list[dict]) -> str:
    """One table of every selection row of a block (its main test metric, its paired difference
    from ``kd+random``, its detection AUC) with issue #17's gates for every learned selector (rows
    whose records carry ``policy_training``), each judged on the pool its row ran on:

    * detection (planted pools): the mean over seeds of the AUC the selector had reached within
      :data:`DETECTION_GATE_STEPS` environment steps is >= 0.90;
    * student (planted and budgeted pools): its main test metric is >= ``kd+random`` +
      :data:`STUDENT_GATE_GAIN` with paired p < 0.05, and it is not below the best baseline on the seeds both ran
      (a ranker row, ``kd+random`` included, that keeps as many candidates);
    * clean (a pool without planted candidates): not more than :data:`CLEAN_GATE_LOSS` below
      ``kd+random``.

    "pass" / "missed"; "-" where a gate does not apply or a row it needs is absent. The reward
    signal gate has its own table (:func:`signal_markdown`). Empty without learned rows."""
    by_row: dict[tuple, list[dict]] = {}
    for r in records:
        by_row.setdefault((r.get("task"), r.get("shots"), r.get("method"), settings_hash(r)), []).append(r)
    recs_of = {id(row): by_row.get((row.task, row.shots, row.method, row.settings), []) for row in rows}
    if not any(r.get("policy_training") for recs in recs_of.values() for r in recs):
        return ""
    lines = ["# Gates", "",
             f"Every selection row beside `{SELECTION_REFERENCE}`, and issue #17's gates for each learned selector, "
             f"on the pool its row ran on (AUC: for a learned row the one it had reached within "
             f"{DETECTION_GATE_STEPS} environment steps, else its scores'). detection (planted "
             f"pools): mean AUC within {DETECTION_GATE_STEPS} environment steps >= 0.90 (seeds: how many reach "
             f"it). student (planted, budgeted): >= `{SELECTION_REFERENCE}` + {STUDENT_GATE_GAIN * 100:g} points "
             f"with paired p < {ALPHA}, and not below the best baseline (the best ranker row keeping as many "
             f"candidates). clean (no planted candidates): not more than {CLEAN_GATE_LOSS * 100:g} points below "
             f"`{SELECTION_REFERENCE}`.", ""]
    for (task, shots), block in _blocks(rows).items():
        learned = [row for row in block if any(r.get("policy_training") for r in recs_of[id(row)])]
        if not learned:
            continue
        metric = _metrics(block)[0]
        refs = [row for row in block if row.method == SELECTION_REFERENCE]
        kept = {id(row): _mean([(r.get("selection") or {}).get("kept") for r in recs_of[id(row)]]) for row in block}
        baselines = [row for row in block if recs_of[id(row)]
                     and (recs_of[id(row)][0].get("method_options") or {}).get("ranker")]
        lines += [f"## {task}, {shots} shots per class", "",
                  f"| method | pool | seeds | {metric} | Δ vs random (p) | AUC (seeds >= 0.90) | detection "
                  f"| best baseline (Δ) | student | clean |", "|---|" + "---|" * 9]
        shown = [row for row in block if any(r.get("selection") for r in recs_of[id(row)])]
        for row in shown:
            recs = recs_of[id(row)]
            kind = pool_kind(recs[0])
            test = paired_test(row.values[metric], refs[0].values[metric]) if refs and row is not refs[0] else {}
            diff, pval = test.get("diff"), test.get("p")
            vs_random = "-" if diff is None else f"{diff * 100:+.1f} ({'-' if pval is None else f'{pval:.3f}'})"
            if row not in learned:
                aucs = [(r.get("selection") or {}).get("detection_auc") for r in recs]
                aucs = [a for a in aucs if a is not None]
                auc_cell = f"{statistics.fmean(aucs):.2f}" if aucs else "-"
                lines.append(f"| {row.label} | {kind} | {len(row.seeds)} | {_cell(row, metric).replace(f' {MARK}', '')} "
                             f"| {vs_random} | {auc_cell} | - | - | - | - |")
                continue
            aucs = [auc_within(r) for r in recs]
            aucs = [a for a in aucs if a is not None]
            detection, auc_cell = "-", "-"
            if kind == "planted" and aucs:
                auc_cell = f"{statistics.fmean(aucs):.2f} ({sum(a >= 0.90 for a in aucs)}/{len(aucs)})"
                detection = "pass" if statistics.fmean(aucs) >= 0.90 else "missed"
            peers = [b for b in baselines if kept[id(b)] is not None and kept[id(row)] is not None
                     and abs(kept[id(b)] - kept[id(row)]) <= 1 and metric in b.values]
            # against each baseline on the seeds both ran (a row on fewer seeds is not compared
            # with the baseline's mean over others)
            gaps = {id(b): paired_test(row.values[metric], b.values[metric])["diff"] for b in peers}
            peers = [b for b in peers if gaps[id(b)] is not None]
            best = min(peers, key=lambda b: gaps[id(b)], default=None)
            best_cell = "-" if best is None else f"{best.method} ({gaps[id(best)] * 100:+.1f})"
            student = clean = "-"
            if kind in ("planted", "budgeted") and diff is not None and best is not None:
                won = diff >= STUDENT_GATE_GAIN and pval is not None and pval < ALPHA
                student = "pass" if won and gaps[id(best)] >= 0 else "missed"
            if kind == "clean" and diff is not None:
                clean = "pass" if diff >= -CLEAN_GATE_LOSS else "missed"
            lines.append(f"| {row.label} | {kind} | {len(row.seeds)} | {_cell(row, metric).replace(f' {MARK}', '')} "
                         f"| {vs_random} | {auc_cell} | {detection} | {best_cell} | {student} | {clean} |")
        lines.append("")
    return "\n".join(lines)


def timings_markdown(records: list[dict]) -> str:
    """Where the time goes: for every method with stage timings (``timings`` of bench records,
    :func:`augrl.runtime.stage_clock`), the mean seconds per run of each stage, the runs' summed
    wall time, and a total over every method. A stage a seed's first run built for the others
    (the teacher, a shared pool) is charged to that run. Empty when no record has timings."""
    from augrl.runtime import STAGES

    timed = [r for r in records if isinstance(r.get("timings"), dict)]
    if not timed:
        return ""
    by_method: dict[tuple, list[dict]] = {}
    for r in timed:
        by_method.setdefault((r.get("task"), r.get("shots"), r.get("method")), []).append(r)
    stages = [s for s in STAGES if any(s in r["timings"] for r in timed)]
    lines = ["# Where the time goes", "",
             "Mean seconds per run in each stage (`augrl.runtime.STAGES`; a seed's shared teacher and pools are "
             "charged to the run that built them), and all runs' summed stage time.", "",
             "| task | shots | method | runs | " + " | ".join(stages) + " | total s |",
             "|---|---|---|---|" + "---|" * (len(stages) + 1)]
    totals = {s: 0.0 for s in stages}
    for (task, shots, method), recs in sorted(by_method.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        cells = []
        for s in stages:
            values = [float(r["timings"].get(s, 0.0)) for r in recs]
            totals[s] += sum(values)
            cells.append(f"{statistics.fmean(values):.1f}")
        summed = sum(float(v) for r in recs for k, v in r["timings"].items() if k in stages)
        lines.append(f"| {task} | {shots} | {method} | {len(recs)} | " + " | ".join(cells) + f" | {summed:.0f} |")
    lines.append(f"| all | | | {len(timed)} | " + " | ".join(f"{totals[s]:.0f}" for s in stages)
                 + f" | {sum(totals.values()):.0f} |")
    return "\n".join(lines + [""])


def signal_markdown(folder: str | Path) -> str:
    """The reward-signal gate (``scripts/reward_signal.py`` lines, ``command == "reward-signal"``):
    per setting (planted share and kinds, hard-label weight, reward set) and reward, the mean,
    std and t statistic of the oracle's and the anti-oracle's per-step rewards. Empty without
    such lines."""
    records, _ = read_jsonl(Path(folder) / "results.jsonl")
    lines_in = [r for r in records if isinstance(r, dict) and r.get("command") == "reward-signal"]
    if not lines_in:
        return ""
    out = ["# Reward signal", "",
           "Per-step rewards of a policy that keeps exactly the clean candidates of each batch (oracle) and one "
           "that keeps exactly the planted ones (anti-oracle); t: one-sample t statistic of the mean. The gate: "
           "the paired reward's oracle mean > 0 with t >= 3 within 100 steps, the anti-oracle's < 0. Episode "
           "return: the sum of an episode's rewards (whole episodes only), with its t over episodes. Credit t: "
           "the t of the rewards' slope on the kept-minus-control clean count, per step / per whole episode "
           "(can a learner tell from this policy's rewards which choices paid?).", "",
           "| task | seed | planted | kinds | hard weight | reward set | reward | policy | steps | mean | std | t "
           "| episode length | episode return (t, episodes) | credit t (step / episode) | s |",
           "|---|" + "---|" * 15]
    for r in lines_in:
        cfg = r.get("config") or {}
        hard = (cfg.get("objective") or {"hard_ce": 1.0}).get("hard_ce", 0.0)  # None: the default dark + hard
        reward_set = r.get("reward_set") or {}
        pool = r.get("pool") or {}
        share = pool.get("planted", 0) / max(1, pool.get("size", 1))
        out.append(f"| {r.get('task')} | {r.get('seed')} | {share:.2f} | {','.join(pool.get('kinds') or [])} | {hard} "
                   f"| {_reward_set_label(cfg, reward_set)} "
                   f"| {_reward_label(r)} | {r.get('policy')} | {r.get('steps')} | {r.get('mean'):+.5f} "
                   f"| {r.get('std'):.5f} | {r.get('t'):+.2f} | {(r.get('config') or {}).get('episode_length') or '-'} "
                   f"| {_episode_return(r)} | {_credit(r)} | {r.get('seconds')} |")
    out.append("")
    return "\n".join(out)


def _credit(line: dict) -> str:
    """A reward-signal line's clean-contrast slope t per step and per episode ("-" for lines
    written before it was recorded, or without a paired control)."""
    credit = line.get("clean_contrast") or {}
    if credit.get("slope") is None:
        return "-"
    episode = credit.get("episode_t")
    return f"{credit.get('t', 0.0):+.2f} / " + ("-" if episode is None else f"{episode:+.2f}")


def _episode_return(line: dict) -> str:
    """A reward-signal line's mean episode return with its t and the number of episodes ("-" for
    lines written before episode returns were recorded)."""
    if line.get("return_mean") is None:
        return "-"
    return f"{line['return_mean']:+.5f} (t {line.get('return_t', 0.0):+.2f}, {line.get('episodes')})"


def _reward_set_label(cfg: dict, reward_set: dict) -> str:
    """The texts a reward-signal line's paired reward measured: the validation set plus any
    unlabelled texts, or the unlabelled texts alone (``reward_on="unlabelled"``)."""
    if cfg.get("reward_on") == "unlabelled":
        return f"{reward_set.get('unlabelled', 0)} unlabelled alone"
    return f"{reward_set.get('val', 'all')} val + {reward_set.get('unlabelled', 0)} unlabelled"


def _reward_label(line: dict) -> str:
    """A reward-signal line's reward; the paired reward with its control (lines written before
    ``paired_control`` existed used the random one), and what it compares when that is the gold
    labels (``paired_target``; older lines compared the teacher)."""
    if line.get("reward") != "paired":
        return str(line.get("reward"))
    target = ", gold labels" if line.get("paired_target") == "labels" else ""
    return f"paired ({line.get('paired_control', 'random')} control{target})"


def _fmt0(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def csv_text(rows: list[Row]) -> str:
    """One CSV row per (task, shots, method configuration)."""
    metrics = list(dict.fromkeys(m for r in rows for m in r.values))
    header = ["task", "shots", "method", "label", "settings_hash", "seeds", "teacher_params", "student_params",
              "seconds_per_run"]
    for m in metrics:
        header += [f"{m}_mean", f"{m}_std", f"{m}_diff_vs_{REFERENCE}", f"{m}_p_vs_{REFERENCE}", f"{m}_pairs"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        line = [r.task, r.shots, r.method, r.label, r.settings, len(r.seeds), r.params.get("teacher", ""),
                r.params.get("student", ""), round(statistics.fmean(r.seconds), 2)]
        for m in metrics:
            if m not in r.values:
                line += [""] * 5
                continue
            t = r.tests.get(m, {})
            std = r.std(m)
            line += [round(r.mean(m), 6), "" if std is None else round(std, 6),
                     "" if t.get("diff") is None else round(t["diff"], 6), "" if t.get("p") is None else f"{t['p']:.4g}",
                     t.get("pairs", "")]
        writer.writerow(line)
    return buf.getvalue()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)) or "task"


def _write(path: Path, text: str) -> Path:
    """Write atomically (a reader, or a second bench process, never sees half a file; a full
    disk raises DiskFullError and leaves no temporary file)."""
    return write_file_atomically(path, lambda tmp: tmp.write_text(text))


def load_search(folder: str | Path) -> tuple[list[dict], list[dict]]:
    """The trial lines (``command: "tune"``) of ``folder/results.jsonl`` and the final test
    records of ``folder/final.jsonl`` (:mod:`augrl.tune`)."""
    records, _ = read_jsonl(Path(folder) / "results.jsonl")
    finals, _ = read_jsonl(Path(folder) / "final.jsonl")
    return ([r for r in records if isinstance(r, dict) and r.get("command") == "tune"],
            [r for r in finals if isinstance(r, dict) and r.get("command") == "tune-final"])


def _search_groups(trials: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for t in trials:
        out.setdefault((t.get("task"), t.get("method"), t.get("shots")), []).append(t)
    return out


def _main_metric(group: list[dict]) -> str:
    return next(iter(group[0]["metrics"]["val"]))


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def search_markdown(trials: list[dict], finals: list[dict]) -> str:
    """The search tables: per (task, method, shots), the trials best first with their mean
    validation metrics and sampled values; then the final test of the best and the default
    configuration."""
    lines = ["# Search results", "",
             "Trials of `augrl tune`, best first: validation metrics, mean over each trial's seeds (trials never "
             "evaluate on test). The best configuration (first row) and the method's default were then tested "
             "on the final seeds (`final.jsonl`).", ""]
    for (task, method, shots), group in _search_groups(trials).items():
        metric = _main_metric(group)
        metrics = list(group[0]["metrics"]["val"])
        params = sorted({k for t in group for k in t.get("sampled", {})})
        group = sorted(group, key=lambda t: -float(t["metrics"]["val"].get(metric, float("-inf"))))
        lines += [f"## {task}, {method}, {shots} shots per class", "",
                  "| trial | " + " | ".join(f"val {m}" for m in metrics) + " | seeds | " + " | ".join(params)
                  + " | s/trial | gpu |",
                  "|---|" + "---|" * (len(metrics) + len(params) + 3)]
        for t in group:
            vals = [_fmt(t["metrics"]["val"].get(m)) for m in metrics]
            sampled = [_value(t.get("sampled", {}).get(p, "-")) for p in params]
            gpu = ",".join((t.get("ray") or {}).get("gpu_ids") or []) or "-"
            lines.append(f"| {(t.get('trial') or {}).get('id')} | " + " | ".join(vals) +
                         f" | {len(t.get('seeds') or [])} | " + " | ".join(sampled) +
                         f" | {float(t.get('wall_time_s') or 0):.0f} | {gpu} |")
        lines.append("")
        mine = [f for f in finals if (f.get("task"), f.get("method"), f.get("shots")) == (task, method, shots)]
        if mine:
            lines += _final_table(mine)
    return "\n".join(lines)


def _final_table(finals: list[dict]) -> list[str]:
    """The final test of one search: per configuration (``best``, ``default``) mean ± std of
    each test metric over its seeds, and the best configuration's paired difference from the
    default in the first metric, with its two-sided paired t-test over their common seeds."""
    tests = list(finals[0]["metrics"]["test"])
    roles: dict[str, dict[int, dict]] = {}
    for f in finals:  # a seed tested twice counts once (its latest line)
        roles.setdefault(f["role"], {})[f["seed"]] = f
    first = tests[0]
    lines = [f"Final test, mean ± std over seeds; `vs default`: the mean paired difference in test {first} "
             "(points) and its two-sided paired t-test over the seeds both were tested on.", "",
             "| configuration | " + " | ".join(f"test {m}" for m in tests) + " | seeds | vs default | sampled |",
             "|---|" + "---|" * (len(tests) + 3)]
    for role, runs in roles.items():
        cells = [_mean_std([float(f["metrics"]["test"][m]) for f in runs.values()]) for m in tests]
        versus = "-"
        if role != "default" and "default" in roles:
            test = paired_test({s: float(f["metrics"]["test"][first]) for s, f in runs.items()},
                               {s: float(f["metrics"]["test"][first]) for s, f in roles["default"].items()})
            if test["pairs"]:
                versus = f"{100 * test['diff']:+.2f}" + ("" if test["p"] is None else f", p={test['p']:.3f}")
        sampled = ", ".join(f"{k}={_value(v)}" for k, v in list(runs.values())[-1].get("sampled", {}).items()) or "-"
        seeds = ",".join(str(s) for s in sorted(runs))
        lines.append(f"| {role} | " + " | ".join(cells) + f" | {seeds} | {versus} | {sampled} |")
    return lines + [""]


def search_plots(trials: list[dict], folder: Path) -> list[str]:
    """``search.png`` (one search in the folder) or ``search-<task>-<method>.png``: the
    validation metric against each sampled parameter."""
    from augrl.plots import plot_search

    groups = _search_groups(trials)
    out = []
    for (task, method, shots), group in groups.items():
        metric = _main_metric(group)
        points = [{"id": (t.get("trial") or {}).get("id"), "value": float(t["metrics"]["val"][metric]),
                   "sampled": t.get("sampled") or {}} for t in group if metric in t["metrics"]["val"]]
        best = max(points, key=lambda p: p["value"])["id"] if points else None
        name = "search.png" if len(groups) == 1 else f"search-{_slug(task)}-{_slug(method)}-{shots}.png"
        out.append(str(plot_search(points, f"val {metric}", folder / name,
                                   f"{task} {method}, {shots} shots: validation {metric} per trial", best)))
    return out


def write_report(folder: str | Path, quiet: bool = False, plots: bool = True) -> dict:
    """Rebuild ``table.md``, ``table.csv`` and the PNGs of ``folder`` from its results.jsonl.

    Returns ``{"table_md", "table_csv", "plots", "notes", "rows"}``; with ``quiet`` False the
    notes (lines skipped...) are also printed to stderr. With ``plots`` False the PNGs are left
    as they are and ``plots`` is empty (drawing them takes far longer than writing the tables).
    """
    import sys

    folder = Path(folder)
    signal = signal_markdown(folder) if (folder / "results.jsonl").is_file() else ""
    if signal:  # a reward-signal folder: that table alone
        return {"table_md": str(_write(folder / "table.md", signal)), "table_csv": None, "plots": [], "notes": [],
                "rows": []}
    records, notes = load_records(folder)
    rows, more = summarise(records)
    notes += more
    trials, finals = load_search(folder)
    drawn = _draw_plots(folder, rows, records, trials) if plots else []
    text = markdown(rows, notes) if rows or not trials else ""
    selection = selection_markdown(rows, records)
    if selection:
        text += "\n" + selection
    gates = gates_markdown(rows, records)
    if gates:
        text += "\n" + gates
    timings = timings_markdown(records)
    if timings:
        text += "\n" + timings
    if trials:
        text += search_markdown(trials, finals)
    md = _write(folder / "table.md", text)
    table_csv = _write(folder / "table.csv", csv_text(rows))
    if not quiet:
        for note in notes:
            print(f"report: {note}", file=sys.stderr)
    return {"table_md": str(md), "table_csv": str(table_csv), "plots": drawn, "notes": notes,
            "rows": [{"task": r.task, "shots": r.shots, "method": r.label, "seeds": len(r.seeds),
                      **{m: round(r.mean(m), 6) for m in r.values}} for r in rows]}


def _draw_plots(folder: Path, rows: list[Row], records: list[dict], trials: list[dict]) -> list[str]:
    """The PNGs of :func:`write_report`: a bar chart per task and shots, a data-size curve per
    task with several shots, detection curves of planted pools, the search's trials."""
    from augrl.plots import plot_bench_bars, plot_detection_curves, plot_metric_vs_shots

    plots = []
    blocks = _blocks(rows)
    shots_per_task: dict[str, list[int]] = {}
    for task, shots in blocks:
        shots_per_task.setdefault(task, []).append(shots)
    for (task, shots), block in blocks.items():
        name = _slug(task) if len(shots_per_task[task]) == 1 else f"{_slug(task)}-{shots}shots"
        plots.append(str(plot_bench_bars(block, _metrics(block), folder / f"{name}.png",
                                         f"{task}, {shots} shots per class", MARK, ALPHA)))
    for task, shots in shots_per_task.items():
        if len(shots) > 1:
            task_rows = [r for r in rows if r.task == task]
            plots.append(str(plot_metric_vs_shots(task_rows, _metrics(task_rows)[0], folder / f"{_slug(task)}-datasize.png",
                                                  f"{task}: test {_metrics(task_rows)[0]} against training shots")))
    for (task, shots), curves in detection_curves(records).items():
        name = _slug(task) if len(shots_per_task.get(task, [shots])) == 1 else f"{_slug(task)}-{shots}shots"
        plots.append(str(plot_detection_curves(curves, folder / f"{name}-detection.png",
                                               f"{task}, {shots} shots per class: finding the planted candidates")))
    if trials:
        plots += search_plots(trials, folder)
    return plots
