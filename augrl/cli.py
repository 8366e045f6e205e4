"""The ``augrl`` command.

Every long-running command takes ``--seed``, ``--shots``, ``--data-dir``, ``--out DIR`` (models
and a ``results.jsonl`` line go there), ``--max-steps N`` (a hard cap on optimisation steps,
for smoke runs), ``--json`` (the last line printed is one JSON object with the metrics and the
config) and ``--quiet`` (no progress bars).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
from pathlib import Path

from augrl import leakage
from augrl.errors import AugrlError


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="rt", help="task name (see `augrl tasks`) or a task YAML file")
    p.add_argument("--shots", type=int, default=None, help="target training examples per class (default 40)")
    p.add_argument("--seed", type=int, default=None, help="split and training seed (default 0)")
    p.add_argument("--data-dir", default=None, help="data root (default: $AUGRL_DATA, else the Hugging Face hub)")
    p.add_argument("--out", default=None, help="folder for models and results.jsonl")
    p.add_argument("--max-steps", type=int, default=None, help="cap on optimiser steps per training stage")
    p.add_argument("--config", default=None, help="YAML/JSON RunConfig; flags given on the command line win")
    _add_model_flags(p)
    p.add_argument("--student", default=None, choices=["transformer", "bilstm", "textcnn"])
    p.add_argument("--epochs", type=int, default=None, help="epochs of each training stage")
    p.add_argument("--lr", type=float, default=None, help="learning rate of each training stage")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    _add_leakage_flag(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """The teacher and student flags every run command shares."""
    p.add_argument("--teacher", default=None,
                   help="teacher encoder: minilm (default, offline), mpnet (all-mpnet-base-v2, offline), hub name or "
                        "folder")
    p.add_argument("--teacher-source-shots", type=int, default=None, metavar="N",
                   help="source-adapted teacher: fine-tune it on N source examples per class first, then on the "
                        "target set (default 0: target only)")
    p.add_argument("--student-init", default=None,
                   help="encoder the transformer student is cut from (default: MiniLM with --teacher minilm or "
                        "mpnet, else the teacher)")
    p.add_argument("--student-layers", type=int, default=None, help="layers the transformer student keeps (default 2)")


def _add_leakage_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-leaky-source", action="store_true",
                   help="keep the source rows that leak the validation/test texts (default: removed; "
                        "see `augrl audit`); for reproducing work that did not filter")


def _student_follows(teacher: str, student: str) -> bool:
    """Whether a student is cut from ``teacher`` by default: yes, except a transformer student of
    the paper-sized MPNet teacher, whose 2-layer cut would have 38M parameters; it keeps the
    15.6M MiniLM student (the BiLSTM/TextCNN students read the teacher's vocabulary)."""
    from augrl.models import MPNET_ALIASES

    return teacher.lower() not in MPNET_ALIASES or student != "transformer"


def _run_config(args: argparse.Namespace):
    from augrl.models import DEFAULT_MODEL
    from augrl.pipelines import RunConfig

    cfg = RunConfig.load(args.config) if args.config else RunConfig()
    cfg = cfg.replace(task=args.task, shots=args.shots, seed=args.seed, data_dir=args.data_dir,
                      teacher=args.teacher, student=args.student, student_layers=args.student_layers,
                      device=args.device, leakage="keep" if args.keep_leaky_source else None,
                      teacher_source_shots=args.teacher_source_shots, student_init=args.student_init)
    if args.teacher and not args.student_init and cfg.student_init == DEFAULT_MODEL \
            and _student_follows(args.teacher, cfg.student):
        cfg = cfg.replace(student_init=args.teacher)
    stage = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size}
    cfg = cfg.replace(teacher_train=cfg.teacher_train.replace(**stage),
                      student_train=cfg.student_train.replace(**stage))
    return cfg.with_max_steps(args.max_steps)


def _summary(record: dict) -> str:
    test = record["metrics"]["test"]
    parts = [f"{record['task']} {record['method']} seed={record['seed']} shots={record['shots']}:"]
    parts += [f"test {k}={v:.4f}" for k, v in test.items()]
    if "teacher_metrics" in record:
        parts += [f"(teacher test {k}={v:.4f})" for k, v in record["teacher_metrics"]["test"].items()][:1]
    parts.append(f"[{record['wall_time_s']:.1f}s]")
    return " ".join(parts)


def _finish(record: dict, args: argparse.Namespace) -> None:
    from augrl.results import append_jsonl

    if args.out:
        path = append_jsonl(Path(args.out) / "results.jsonl", record)
        print(f"result appended to {path}", file=sys.stderr)
    print(_summary(record), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(record, default=str))


def cmd_tasks(args: argparse.Namespace) -> None:
    from augrl.tasks import get_spec, load_task, resolve_data_dir, task_names

    root = resolve_data_dir(args.data_dir)
    rows = []
    for name in task_names():
        spec = get_spec(name)
        row = {"name": name, "kind": spec.kind, "metric": spec.metric, "metrics": list(spec.metrics),
               "labels": list(spec.label_names), "source": spec.source, "target": spec.target,
               "description": spec.description}
        if root is not None and not args.no_counts:
            task = load_task(name, shots=args.shots, seed=args.seed, data_dir=root)
            row["rows"] = dict(task.meta["sizes"], source_removed=task.meta["source_removed"])
        rows.append(row)
    if args.json:
        print(json.dumps(rows))
        return
    header = f"{'task':20s} {'kind':20s} {'metric':9s} {'train':>5s} {'val':>4s} {'test':>5s} {'source':>6s}  source -> target"
    print(header)
    for r in rows:
        n = r.get("rows", {})
        print(f"{r['name']:20s} {r['kind']:20s} {r['metric']:9s} {n.get('train', '-'):>5} {n.get('val', '-'):>4} "
              f"{n.get('test', '-'):>5} {n.get('source', '-'):>6}  {r['source'] or '-'} -> {r['target']}")
    if root is None:
        print("(no data root: set AUGRL_DATA or --data-dir to see row counts)")


def cmd_audit(args: argparse.Namespace) -> None:
    from augrl.tasks import load_task

    settings = leakage.LeakageSettings(
        **{k: v for k, v in (("min_substring_words", args.min_substring_words), ("ngram", args.ngram),
                             ("containment", args.containment)) if v is not None})
    mode = "keep" if args.keep_leaky_source else "remove"
    task = load_task(args.task, shots=args.shots, seed=args.seed, data_dir=args.data_dir, leakage=mode,
                     leakage_settings=settings)
    report = task.leakage_report
    heldout = task.heldout_texts()
    # re-audit the pool the task hands out: 0 leaky rows under "remove", all of them under "keep"
    fields = task.spec.text_fields
    pool = list(zip(*(task.source[f] for f in fields)))
    left = leakage.audit(pool, heldout, max_examples=0, **settings.to_dict()).counts["flagged"]
    n_val = len(task.val)

    def located(e: dict) -> dict:  # target_index runs over validation then test rows
        t = e["target_index"]
        return {**e, "target_split": "val" if t < n_val else "test", "target_row": t if t < n_val else t - n_val}

    examples = {c: [located(e) for e in report.examples[c][: max(args.examples, 0)]] for c in leakage.CATEGORIES}
    out = {
        "task": task.spec.name, "seed": args.seed, "shots": args.shots, "against": "val+test",
        "source": task.spec.source, "source_total": report.n_source, "targets": report.n_target,
        "counts": report.counts, "settings": settings.to_dict(), "leakage_filter": mode,
        "source_after_filter": {"rows": len(task.source), "leaky": left},
        "examples": examples, "seconds": round(report.seconds, 3),
    }
    if args.json:
        print(json.dumps(out))
        return
    c, n = report.counts, max(report.n_source, 1)
    print(f"{out['task']} seed={args.seed} shots={args.shots}: source {out['source'] or '-'} "
          f"({report.n_source} rows) against {report.n_target} validation+test texts")
    notes = {"exact": "verbatim (whitespace collapsed)",
             "normalized": "equal after augrl.leakage.normalize",
             "substring": f"inside a held-out text, >= {settings.min_substring_words} words",
             "near_duplicate": f">= {settings.containment:g} of its word {settings.ngram}-grams in one held-out text"}
    for cat in leakage.CATEGORIES:
        print(f"  {cat:15s} {c[cat]:7d}  {100 * c[cat] / n:5.1f}%  {notes[cat]}")
    print(f"  {'flagged':15s} {c['flagged']:7d}  {100 * c['flagged'] / n:5.1f}%")
    action = ("kept in the task's source pool (--keep-leaky-source)" if mode == "keep"
              else "removed from the task's source pool (--keep-leaky-source keeps them)")
    print(f"  {action}: the pool has {len(task.source)} rows, {left} of them leaky")
    for cat in leakage.CATEGORIES:
        for e in examples[cat]:
            extra = f" ({e['containment']:.2f})" if "containment" in e else ""
            print(f"  [{cat}{extra}] source row {e['source_index']}: {e['source']!r}\n"
                  f"      {e['target_split']} row {e['target_row']}: {e['target']!r}")
    print(f"audit took {report.seconds:.2f}s")


def cmd_finetune(args: argparse.Namespace) -> None:
    from augrl.methods import run_finetune

    _finish(run_finetune(_run_config(args), which=args.model, out_dir=args.out, progress=not args.quiet), args)


def _parse_key_values(items: list[str], flag: str) -> dict:
    """``key=value`` flags into a dict; values read as YAML scalars/lists (``0.5``, ``true``, ``[1, 2]``)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AugrlError(f"{flag} {item!r}: write key=value, e.g. {flag} beta=0.5")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def cmd_distill(args: argparse.Namespace) -> None:
    from augrl import methods
    from augrl.kd.losses import parse_objective

    methods.get(args.method)  # a clear error before any data is loaded
    cfg = _run_config(args)
    changes = {"temperature": args.temperature, "layer_map": args.layer_map}
    if args.objective is not None:
        changes["objective"] = parse_objective(args.objective)
    if args.option:
        changes["method_options"] = {**cfg.method_options, **_parse_key_values(args.option, "--option")}
    if args.cache_dtype is not None:
        changes["cache_dtype"] = args.cache_dtype
    cfg = cfg.replace(**changes)
    dirs = [d for arg in (args.teacher_dir or []) for d in arg.split(",") if d]
    _finish(methods.run_distill(cfg, out_dir=args.out, teacher_dir=dirs or None, progress=not args.quiet,
                                method=args.method, max_steps=args.max_steps), args)


def _augment_teacher(args: argparse.Namespace, spec):
    """The teacher of ``--report``: loaded from ``--teacher-dir``, or the split's fine-tuned one
    (from the teacher cache; saved to --out)."""
    from augrl import models
    from augrl.pipelines import RunConfig, prepare
    from augrl.teachers import obtain_teacher

    if args.teacher_dir:
        return models.load_model(args.teacher_dir), models.load_tokenizer(args.teacher_dir), args.teacher_dir
    cfg = RunConfig(task=args.task, shots=args.shots, seed=args.seed, data_dir=args.data_dir,
                    teacher=args.teacher or models.DEFAULT_MODEL, device=args.device or "auto")
    cfg = cfg.with_max_steps(args.max_steps)
    data = prepare(cfg)
    teacher, _ = obtain_teacher(cfg, data, progress=not args.quiet)
    where = None
    if args.out:
        where = str(models.save_model(teacher, Path(args.out) / f"teacher_ft-seed{args.seed}", data.tokenizer))
        print(f"teacher saved to {where} (reuse it with --teacher-dir)", file=sys.stderr)
    return teacher, data.tokenizer, where


def cmd_augment(args: argparse.Namespace) -> None:
    import time

    from augrl import baselines
    from augrl.baselines.quality import quality_report
    from augrl.runtime import select_device
    from augrl.tasks import load_task

    params = _parse_key_values(args.param or [], "--param")
    accepted = baselines.parameters(args.augmenter)  # an unknown method fails before any loading
    for key, value in (("mlm", args.mlm), ("side", args.side), ("device", args.device),
                       ("progress", not args.quiet), ("mlm_steps", args.mlm_steps)):
        if value is not None and key in accepted and key not in params:
            params[key] = value
    task = load_task(args.task, shots=args.shots, seed=args.seed, data_dir=args.data_dir)
    dataset = getattr(task, args.split)
    if args.limit is not None:
        dataset = dataset.select(range(min(args.limit, len(dataset))))
    fields = task.spec.text_fields
    columns = [list(dataset[f]) for f in fields]
    texts = columns[0] if len(fields) == 1 else [(a, b) for a, b in zip(*columns)]
    labels = list(dataset["label"])

    augmenter = baselines.get(args.augmenter, **params)
    start = time.perf_counter()
    augmenter.fit(task)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    variants = augmenter.augment(texts, n=args.n, labels=labels, seed=args.seed)
    seconds = time.perf_counter() - start
    examples = [{"idx": int(idx), "label": label, "original": list(t) if isinstance(t, tuple) else t,
                 "variants": [list(v) if isinstance(v, tuple) else v for v in vs],
                 "edits": [baselines.edit_count(t, v) for v in vs]}
                for idx, label, t, vs in zip(dataset["idx"], labels, texts, variants)]
    flat = [(t, v) for t, vs in zip(texts, variants) for v in vs]
    record = {"command": "augment", "task": task.spec.name, "split": args.split, "method": args.augmenter,
              "params": augmenter.params(), "n": args.n, "seed": args.seed, "inputs": len(texts),
              "changed_rate": sum(v != t for t, v in flat) / len(flat) if flat else 0.0,
              "fit_seconds": round(fit_seconds, 2), "seconds": round(seconds, 3),
              "sentences_per_second": round(len(texts) / seconds, 2) if seconds > 0 else None,
              "examples": examples, "split_meta": task.meta}
    if hasattr(augmenter, "describe_mlm"):
        record["mlm"] = augmenter.describe_mlm()
    if args.report:
        teacher, tokenizer, teacher_dir = _augment_teacher(args, task.spec)
        record["report"] = quality_report(texts, labels, variants, teacher, tokenizer, task.spec,
                                          device=select_device(args.device or "auto"))
        record["report"]["teacher_dir"] = teacher_dir
    if args.json:
        print(json.dumps(record, default=str))
        return
    for ex in examples:
        print(f"[{ex['idx']}] label={ex['label']}: {ex['original']}")
        for v, e in zip(ex["variants"], ex["edits"]):
            print(f"    ({e} edits) {v}")
    print(f"{args.augmenter}: {len(texts)} inputs x {args.n} variants, changed {record['changed_rate']:.1%}, "
          f"{record['sentences_per_second']} inputs/s")
    if args.report:
        print("quality: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in record["report"].items()))


def _add_env_options(p: argparse.ArgumentParser) -> None:
    """Settings of the augmentation environment (see ``augrl.envs.AugmentKDConfig``)."""
    p.add_argument("--task", default="rt", help="task name (see `augrl tasks`) or a task YAML file")
    p.add_argument("--shots", type=int, default=None, help="target training examples per class (default 40)")
    p.add_argument("--seed", type=int, default=None, help="split, pool and training seed (default 0)")
    p.add_argument("--seeds", type=int, default=1, help="run seeds seed .. seed+N-1, one result line each")
    p.add_argument("--data-dir", default=None, help="data root (default: $AUGRL_DATA, else the Hugging Face hub)")
    p.add_argument("--out", default=None, help="folder for results.jsonl, policies, logs and plots")
    p.add_argument("--config", default=None, help="YAML/JSON AugmentKDConfig; flags given on the command line win")
    p.add_argument("--augmenter", default=None, help="augmenter of the candidate pool (default eda)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="augmenter setting, repeatable (e.g. --param alpha_sr=0.2)")
    p.add_argument("--pool-size", type=int, default=None, help="candidates per episode (default 1600)")
    p.add_argument("--variants", type=int, default=None, help="variants per source example (default 4)")
    p.add_argument("--source-fraction", type=float, default=None, help="share of source-made candidates")
    p.add_argument("--env-batch-size", type=int, default=None, help="B, candidates per distillation step (default 32)")
    p.add_argument("--reward", default=None, choices=["metric", "loss"], help="validation metric change (default) "
                   "or validation loss decrease")
    p.add_argument("--val-size", type=int, default=None, help="validation examples of the reward (default all)")
    p.add_argument("--target-batch-size", type=int, default=None,
                   help="target examples added to every distillation step (default 8)")
    p.add_argument("--objective", default=None, help="KD loss weights, e.g. attention_mse=1,hidden_mse=1,dark_ce=1")
    p.add_argument("--teacher", default=None, help="teacher encoder: minilm (default, offline), hub name or folder")
    p.add_argument("--teacher-dir", default=None, help="a fine-tuned teacher saved by `augrl finetune --out`")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16"], help="student forward precision")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--max-steps", type=int, default=None,
                   help="smoke runs: cap on env steps and on every training stage's optimiser steps")
    _add_leakage_flag(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _env_config(args: argparse.Namespace):
    from augrl.envs import AugmentKDConfig
    from augrl.kd.losses import parse_objective

    cfg = AugmentKDConfig.load(args.config) if args.config else AugmentKDConfig()
    changes = dict(task=args.task, shots=args.shots, seed=args.seed, data_dir=args.data_dir, augmenter=args.augmenter,
                   pool_size=args.pool_size, variants=args.variants, source_fraction=args.source_fraction,
                   batch_size=args.env_batch_size, reward=args.reward, val_size=args.val_size,
                   target_batch_size=args.target_batch_size, teacher=args.teacher, teacher_dir=args.teacher_dir,
                   precision=args.precision, device=args.device, leakage="keep" if args.keep_leaky_source else None)
    if args.max_steps is not None:
        changes["teacher_train"] = cfg.teacher_train.replace(max_steps=args.max_steps)
    if args.param:
        changes["augmenter_params"] = {**cfg.augmenter_params, **_parse_key_values(args.param, "--param")}
    if args.objective is not None:
        changes["objective"] = parse_objective(args.objective)
    if args.teacher and _student_follows(args.teacher, "transformer"):
        changes["student_init"] = args.teacher
    return cfg.replace(**changes)


def _print_selection_summary(records: list[dict], metric: str) -> None:
    import numpy as np

    print(f"{'selection':10s} {'kept':>6s}  test {metric} (mean ± std over {len(records)} seed(s))")
    for name in ("policy", "all", "random"):
        values = np.array([r["evaluation"][name]["test"][metric] for r in records])
        kept = np.mean([r["evaluation"][name]["kept_fraction"] for r in records])
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        print(f"{name:10s} {kept:6.2f}  {values.mean():.4f} ± {std:.4f}   per seed: "
              + " ".join(f"{v:.4f}" for v in values))


def cmd_train_policy(args: argparse.Namespace) -> None:
    from augrl.policies import PolicyConfig, train_policy

    env_cfg = _env_config(args)
    policy = PolicyConfig(algo=args.algo, max_steps=args.max_steps).replace(
        episodes=args.episodes, learning_rate=args.policy_lr, gamma=args.gamma, ent_coef=args.ent_coef,
        n_steps=args.n_steps, eval_epochs=args.eval_epochs, policy=args.policy)
    records = []
    for seed in range(env_cfg.seed, env_cfg.seed + max(1, args.seeds)):
        record = train_policy(env_cfg.replace(seed=seed), policy, out_dir=args.out, progress=not args.quiet)
        records.append(record)
        _finish(record, args)
    if len(records) > 1 or not args.json:
        _print_selection_summary(records, next(iter(records[0]["metrics"]["test"])))


def cmd_l2a(args: argparse.Namespace) -> None:
    from augrl.l2a import L2AConfig, run_l2a

    if args.augmenter not in (None, "l2a"):
        raise AugrlError(f"augrl l2a samples with L2A's generator; --augmenter {args.augmenter} is for "
                         "`augrl train-policy` (drop the flag; --param sets the generator's options)")
    env_cfg = _env_config(args)
    params = dict(env_cfg.augmenter_params)
    for key, value in (("alpha", args.alpha), ("temperature", args.gen_temperature), ("top_k", args.top_k)):
        if value is not None:
            params[key] = value
    env_cfg = env_cfg.replace(augmenter="l2a", augmenter_params=params)
    cfg = L2AConfig(use_source=not args.no_source, use_target=not args.no_target,
                    use_selector=not args.no_selector, max_steps=args.max_steps).replace(
        episodes=args.episodes, generator_every=0 if args.no_generator_update else args.generator_every,
        eval_epochs=args.eval_epochs)
    for seed in range(env_cfg.seed, env_cfg.seed + max(1, args.seeds)):
        _finish(run_l2a(env_cfg.replace(seed=seed), cfg, out_dir=args.out, progress=not args.quiet), args)


def _aug_params(items: list[str]) -> dict:
    """``--aug-param eda.alpha_sr=0.2`` flags into ``{"eda": {"alpha_sr": 0.2}}``."""
    out: dict = {}
    for key, value in _parse_key_values(items, "--aug-param").items():
        name, dot, setting = key.partition(".")
        if not dot or not name or not setting:
            raise AugrlError(f"--aug-param {key}=...: write AUGMENTER.SETTING=VALUE, e.g. --aug-param eda.alpha_sr=0.2")
        out.setdefault(name, {})[setting] = value
    return out


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def bench_settings(args: argparse.Namespace):
    """The :class:`~augrl.bench.BenchSettings` and the base run config that ``augrl bench``'s
    parsed ``args`` ask for (a preset, changed by the flags given)."""
    from augrl import bench

    settings = bench.load_preset(args.preset) if args.preset else bench.BenchSettings()
    params = settings.augmenter_params
    for name, values in _aug_params(args.aug_param).items():
        params = {**params, name: {**params.get(name, {}), **values}}
    settings = settings.replace(tasks=args.task, methods=args.methods, seeds=args.seeds, shots=args.shots,
                                variants=args.variants, augmenter_params=params)
    # the bench sets task, shots and seed per run; the rest of the run config comes from the flags
    cfg = _run_config(argparse.Namespace(**{**vars(args), "task": None, "shots": None, "seed": None, "student": None,
                                            "teacher": args.teacher or settings.teacher}))
    return settings, cfg


def cmd_bench(args: argparse.Namespace) -> None:
    from augrl import bench

    bench.import_modules(args.import_modules)
    if args.list:
        for name in bench.names():
            print(f"{name:16s} {bench.get(name).description}")
        print("presets: " + ", ".join(bench.preset_names()))
        return
    if not args.out:
        raise AugrlError("augrl bench needs --out DIR (results.jsonl, table.md, table.csv and plots go there)")
    settings, cfg = bench_settings(args)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` (or a batch scheduler's time limit) stops it like Ctrl-C
    summary = bench.run_bench(settings, cfg, args.out, progress=not args.quiet, max_steps=args.max_steps,
                              on_record=lambda r: print(_summary(r), file=sys.stderr if args.json else sys.stdout,
                                                        flush=True))
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(Path(summary["report"]["table_md"]).read_text())
        print(f"tables and plots in {args.out}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> None:
    from augrl.report import write_report

    summary = write_report(args.dir, quiet=args.json)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(Path(summary["table_md"]).read_text())
        print("wrote " + ", ".join(p for p in [summary["table_md"], summary["table_csv"], *summary["plots"]] if p),
          file=sys.stderr)


def cmd_tune(args: argparse.Namespace) -> None:
    from augrl import tune

    if args.list:
        from augrl import spaces

        for name in spaces.preset_names():
            space = spaces.load_space(name)
            print(f"{name:10s} {', '.join(space.methods)}: {space.description}")
        return
    out = args.resume or args.out
    if not out:
        raise AugrlError("augrl tune needs --out DIR (results.jsonl, final.jsonl, tables and Ray's state go there), "
                         "or --resume DIR")
    settings = base = None
    if args.resume:
        for line in _ignored_on_resume(args, tune.load_search(out)[0]):
            print(line, file=sys.stderr)
    else:
        settings = tune.TuneSettings(
            task=args.task, method=args.method, space=args.space, num_samples=args.num_samples,
            scheduler=args.scheduler, search=args.search, search_seed=args.search_seed, seeds=args.seeds,
            final_seeds=args.final_seeds, final=args.final or tune.TuneSettings.final, shots=args.shots,
            variants=args.variants, max_steps=args.max_steps, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
            max_concurrent=args.max_concurrent, max_failures=args.max_failures, imports=list(args.import_modules))
        # trials set task, shots and seed; the rest of the run config comes from the flags
        base = _run_config(argparse.Namespace(**{**vars(args), "task": None, "shots": None, "seed": None,
                                                 "student": None}))
    # on --resume only the final test may change: --final/--final-seeds replace the saved ones
    final = {"final": args.final, "final_seeds": args.final_seeds} if args.resume else {}
    summary = tune.run_tune(settings, base, out, resume=bool(args.resume), address=args.address,
                            verbose=args.verbose, progress=not args.quiet, **final)
    if args.json:
        print(json.dumps(summary, default=str))
    elif summary["report"]:
        print(Path(summary["report"]["table_md"]).read_text())
    if summary["interrupted"]:
        raise KeyboardInterrupt  # exit 130 like an interrupted bench; finished trials are kept
    if args.json:
        return
    best = summary.get("best")
    if best:
        value = best["val"].get(summary["metric"].removeprefix("val_"))
        print(f"best trial {best['trial_id']}: {summary['metric']}={value:.4f} with {best['sampled']}")
    for role, res in (summary.get("final") or {}).items():
        print(f"{role}: test " + ", ".join(f"{k}={v:.4f}" for k, v in res["test"].items()) + f" (seeds {res['seeds']})")
    if summary["errors"]:
        print(f"{len(summary['errors'])} trial(s) failed; see {out}/ray", file=sys.stderr)


#: what ``augrl tune --resume`` applies: the final test and how this run talks to Ray; every
#: other flag is ignored (the saved search is kept, as with Ray Tune's ``Tuner.restore``)
RESUME_APPLIES = ("resume", "final", "final_seeds", "address", "verbose", "quiet", "json", "list")


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def _flag_text(action: argparse.Action, value) -> str:
    """How a flag and its value are written on the command line."""
    flag = action.option_strings[-1]
    if action.nargs == 0:  # store_true
        return flag
    values = value if isinstance(value, list) else [value]
    return " ".join(f"{flag} {v}" for v in values)


def _ignored_on_resume(args: argparse.Namespace, saved) -> list[str]:
    """One warning per flag of ``augrl tune --resume`` that differs from the parser's default
    and is not in :data:`RESUME_APPLIES`, with the saved value where the search has one."""
    parser = _subparser(build_parser(), "tune")
    fields = {"import_modules": "imports"}
    lines = []
    for action in parser._actions:
        dest = action.dest
        if not action.option_strings or dest in RESUME_APPLIES or dest == "help":
            continue
        value = getattr(args, dest, None)
        if value == parser.get_default(dest):
            continue
        field = fields.get(dest, dest)
        kept = f" (the saved search has {field}={getattr(saved, field)!r})" if hasattr(saved, field) else ""
        lines.append(f"augrl tune: --resume continues the saved search and ignores {_flag_text(action, value)}"
                     f"{kept}; only --final and --final-seeds change a resumed search (start a new one with --out "
                     "to change anything else)")
    return lines


def _add_bench_run_flags(p: argparse.ArgumentParser, unit: str, device_help: str) -> None:
    """The RunConfig flags of `bench` and `tune` (read by ``_run_config``); ``unit`` is what
    starts from the config (a bench method, a search trial)."""
    p.add_argument("--data-dir", default=None, help="data root (default: $AUGRL_DATA, else the Hugging Face hub)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="cap on optimiser steps per training stage (also MLM fine-tuning in augmenters)")
    p.add_argument("--config", default=None, help=f"YAML/JSON RunConfig every {unit} starts from; flags win")
    _add_model_flags(p)
    p.add_argument("--epochs", type=int, default=None, help="epochs of each training stage")
    p.add_argument("--lr", type=float, default=None, help="learning rate of each training stage")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default=None, help=device_help)
    _add_leakage_flag(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="augrl", description="Learned data augmentation for knowledge distillation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tasks", help="list the registered tasks and the rows of each split")
    p.add_argument("--json", action="store_true")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--shots", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-counts", action="store_true", help="do not load data (no row counts)")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("audit", help="find source rows that leak the target's validation/test texts")
    p.add_argument("--task", default="rt", help="task name (see `augrl tasks`) or a task YAML file")
    p.add_argument("--shots", type=int, default=40, help="target training examples per class (default 40)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--data-dir", default=None, help="data root (default: $AUGRL_DATA, else the Hugging Face hub)")
    p.add_argument("--min-substring-words", type=int, default=None,
                   help=f"shortest source text (in words) flagged as substring or near-duplicate "
                        f"(default {leakage.DEFAULT_MIN_SUBSTRING_WORDS})")
    p.add_argument("--ngram", type=int, default=None,
                   help=f"word n-gram size of the near-duplicate test (default {leakage.DEFAULT_NGRAM})")
    p.add_argument("--containment", type=float, default=None,
                   help="near-duplicate threshold in (0, 1]: share of the source text's n-grams found in one "
                        f"held-out text (default {leakage.DEFAULT_CONTAINMENT})")
    p.add_argument("--examples", type=int, default=3, help="examples shown per category (default 3)")
    _add_leakage_flag(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("finetune", help="fine-tune the teacher or the student on the few-shot target set")
    _add_run_options(p)
    p.add_argument("--model", choices=["teacher", "student"], default="teacher")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("distill", help="fine-tune a teacher and distil it into the student")
    _add_run_options(p)
    p.add_argument("--method", default="kd",
                   help="a method of the one registry (augrl.methods): kd (default), a distillation trainer "
                        "(multi_teacher, cotrain_isolated, cotrain_shared_grad, cotrain_loss_sum, newsbert, rco, "
                        "metakd) or any bench row (kd+eda, kd+l2a...; `augrl bench --list` lists them)")
    p.add_argument("--objective", default=None,
                   help="KD loss weights: JSON or name=weight,name=weight, e.g. attention_mse=1,hidden_mse=1,dark_ce=1 "
                        "(default: the method's; kd: dark_ce=1,hard_ce=1, or logit_mse=1,hard_ce=1 for bilstm/textcnn)")
    p.add_argument("--layer-map", default=None,
                   help="teacher:student layer pairs for layer losses, e.g. 3:1,6:2 (default: uniform)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, repeatable (e.g. --option beta=0.5 for newsbert)")
    p.add_argument("--temperature", type=float, default=None, help="dark-knowledge temperature (default 2)")
    p.add_argument("--cache-dtype", default=None, choices=["float16", "bfloat16", "float32"],
                   help="storage type of cached teacher layer outputs (default float16)")
    p.add_argument("--teacher-dir", action="append", default=None,
                   help="reuse a fine-tuned teacher saved by --out (repeat, or comma-separate, for multi_teacher)")
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("augment", help="print an augmenter's variants of a task's examples (and their quality)")
    p.add_argument("--task", default="rt", help="task name (see `augrl tasks`) or a task YAML file")
    p.add_argument("--augmenter", "--method", dest="augmenter", required=True,
                   help="augmenter (augrl.baselines): eda, mask, pos, ngram, tang, contextual, cbert, l2a "
                        "(--method is the old spelling)")
    p.add_argument("--n", type=int, default=4, help="variants per example (default 4)")
    p.add_argument("--limit", type=int, default=None, help="augment only the first L examples of the split")
    p.add_argument("--split", default="train", choices=["train", "val", "test", "source"],
                   help="which examples to augment (default: the few-shot train set)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="augmenter setting, repeatable (e.g. --param p_mask=0.2)")
    p.add_argument("--side", default=None, choices=["both", "a", "b"], help="pair tasks: the side(s) to change")
    p.add_argument("--mlm", default=None, help="contextual/cbert: encoder or masked LM (default minilm, adapted)")
    p.add_argument("--mlm-steps", type=int, default=None, help="contextual/cbert: MLM adaptation steps")
    p.add_argument("--shots", type=int, default=40)
    p.add_argument("--seed", type=int, default=0, help="split and augmentation seed")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--report", action="store_true",
                   help="label preservation (teacher), distinct-n and edit fraction of the variants")
    p.add_argument("--teacher-dir", default=None, help="--report: a fine-tuned teacher saved by --out")
    p.add_argument("--teacher", default=None, help="--report: encoder of the teacher fine-tuned when no --teacher-dir")
    p.add_argument("--max-steps", type=int, default=None, help="--report: cap on the teacher's optimiser steps")
    p.add_argument("--out", default=None, help="--report: save the fine-tuned teacher here")
    p.add_argument("--json", action="store_true", help="print one JSON object (originals, variants, report) last")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_augment)

    p = sub.add_parser("train-policy", help="train a keep/drop policy with stable-baselines3 on augrl/AugmentKD-v0 "
                                            "and test the students distilled on what it keeps")
    _add_env_options(p)
    p.add_argument("--algo", default="ppo", choices=["ppo", "a2c", "dqn"],
                   help="ppo, a2c (batch decisions) or dqn (one decision per candidate)")
    p.add_argument("--episodes", type=int, default=None, help="training episodes (default 10)")
    p.add_argument("--policy-lr", type=float, default=None, help="the agent's learning rate (default 3e-4)")
    p.add_argument("--gamma", type=float, default=None,
                   help="discount (default 0: the paired reward is per step, so each step is a bandit)")
    p.add_argument("--ent-coef", type=float, default=None, help="PPO/A2C entropy coefficient (default 0.01)")
    p.add_argument("--policy", default=None, choices=["mlp", "slots"],
                   help="PPO/A2C network: mlp (SB3's MlpPolicy over the flattened batch, default) or slots (one "
                        "scorer shared over the batch's slots, augrl.slot_policy.SlotPolicy)")
    p.add_argument("--n-steps", type=int, default=None, help="PPO/A2C rollout length (default: one episode / 5)")
    p.add_argument("--eval-epochs", type=int, default=None,
                   help="epochs of the evaluation's students over target + kept candidates (default 3)")
    p.set_defaults(func=cmd_train_policy)

    p = sub.add_parser("l2a", help="Learning to Augment: constrained generator + reinforced selector, then a "
                                   "student distilled on the selected data")
    _add_env_options(p)
    p.add_argument("--episodes", type=int, default=None, help="selector episodes (default 10)")
    p.add_argument("--generator-every", type=int, default=None, help="update G_theta every K episodes (default 2)")
    p.add_argument("--alpha", type=float, default=None, help="edit-distance scale of P(d|x) (default 1)")
    p.add_argument("--gen-temperature", type=float, default=None, help="T of the word distribution (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="candidate words per position (default 50)")
    p.add_argument("--no-source", action="store_true", help="ablation w/o src: sample target inputs only")
    p.add_argument("--no-target", action="store_true", help="ablation w/o tgt: sample source inputs only")
    p.add_argument("--no-generator-update", action="store_true", help="ablation: never update G_theta")
    p.add_argument("--no-selector", action="store_true", help="ablation: keep every P_s sample (no selector)")
    p.add_argument("--eval-epochs", type=int, default=None, help="epochs of the final student (default 10)")
    p.set_defaults(func=cmd_l2a)

    p = sub.add_parser("bench", help="run methods x seeds on tasks; one results.jsonl line per run, resumable")
    p.add_argument("--task", default=None, help="task(s), comma-separated (default: the preset's, else rt)")
    p.add_argument("--methods", default=None, help="methods, comma-separated (see --list), e.g. kd,kd+eda")
    p.add_argument("--seeds", default=None, help="N (seeds 0..N-1) or a list such as 0,3,7 (default: the preset's, else 1)")
    p.add_argument("--shots", default=None, help="target train examples per class; several: 10,20,40 (default 40)")
    p.add_argument("--preset", default=None, help="a shipped preset (datasize, kd-objective; see --list) or a YAML file")
    p.add_argument("--variants", type=int, default=None,
                   help="augmented candidates per target train example, the same for every method (default 4)")
    p.add_argument("--aug-param", action="append", default=[], metavar="AUG.KEY=VALUE",
                   help="an augmenter setting for every method that uses it, repeatable (e.g. eda.alpha_sr=0.2)")
    p.add_argument("--import", dest="import_modules", action="append", default=[], metavar="MODULE",
                   help="import a module that registers bench methods (augrl.bench.register), repeatable")
    p.add_argument("--list", action="store_true", help="list the methods and presets, and exit")
    p.add_argument("--out", default=None, help="the bench folder: results.jsonl, table.md, table.csv, plots")
    _add_bench_run_flags(p, "method", "auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--json", action="store_true", help="print a JSON summary (runs done, files written) last")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("tune", help="hyperparameter search on Ray Tune: trials are bench runs with sampled settings")
    p.add_argument("--task", default="rt", help="task name or task YAML file (default rt)")
    p.add_argument("--method", default="kd", help="the bench method searched (see `augrl bench --list`)")
    p.add_argument("--space", default=None, help="search space: a preset (see --list) or a YAML file "
                                                 "(default: the method's preset)")
    p.add_argument("--num-samples", type=int, default=8, help="trials (default 8)")
    p.add_argument("--scheduler", default="asha", choices=["asha", "pbt", "fifo"], help="trial scheduler (default asha)")
    p.add_argument("--search", default="random", choices=["random", "optuna"],
                   help="search algorithm (optuna: Ray's OptunaSearch, needs `pip install optuna`)")
    p.add_argument("--search-seed", type=int, default=0, help="seed of the sampler (default 0)")
    p.add_argument("--seeds", default="1", help="split/training seeds each trial runs in turn: N or 0,3,7 (default 1); "
                                                "ASHA stops poor trials after their first seed")
    p.add_argument("--final-seeds", default=None, help="seeds of the final test of the best and default "
                                                       "configurations (default: --seeds); with --resume, "
                                                       "extends a finished search's test")
    p.add_argument("--final", default=None, choices=["best+default", "best", "none"],
                   help="what is tested after the search (default best+default); may change with --resume")
    p.add_argument("--shots", type=int, default=40, help="target train examples per class (default 40)")
    p.add_argument("--variants", type=int, default=4, help="candidates per target train example (default 4)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs of one trial; torch threads follow (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs of one trial, fractions allowed (default 0)")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: as resources allow)")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial from its checkpoint")
    p.add_argument("--address", default=None, help="a running Ray cluster (auto, HOST:PORT); default: start Ray here")
    p.add_argument("--out", default=None, help="the search folder")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the search in DIR with its saved settings: only --final and --final-seeds "
                        "change (other search flags are ignored, with a warning for each). This unpickles Ray's "
                        "experiment state from DIR/ray: resume only a folder you trust")
    p.add_argument("--import", dest="import_modules", action="append", default=[], metavar="MODULE",
                   help="import a module that registers bench methods, repeatable")
    p.add_argument("--list", action="store_true", help="list the shipped search spaces, and exit")
    _add_bench_run_flags(p, "trial", "auto (default: the GPU Ray assigns, else CPU), cpu, cuda")
    p.add_argument("--json", action="store_true", help="print a JSON summary (trials, best, final test) last")
    p.add_argument("--verbose", action="store_true", help="Ray's logs, trial table and the trials' output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="rebuild a bench folder's table.md, table.csv and plots from results.jsonl")
    p.add_argument("dir", help="the bench folder (holding results.jsonl)")
    p.add_argument("--json", action="store_true", help="print a JSON summary (files, rows, notes)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except AugrlError as err:
        print(f"augrl: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a full disk in a writer that does not say so itself
        from augrl.fileio import DISK_FULL_FIX, is_disk_full

        if not is_disk_full(err):
            raise
        where = getattr(err, "filename", None)
        reason = "disk quota exceeded" if getattr(err, "errno", None) == errno.EDQUOT else "no space left on device"
        print(f"augrl: error: {f'{where}: ' if where else ''}cannot write: {reason}; results written before are "
              f"kept. Fix: {DISK_FULL_FIX}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("augrl: interrupted; results already written are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
