"""The benchmark: tasks x shots x seeds x methods, one result line per run, resumable.

``augrl bench --task rt --methods kd,kd+eda --seeds 5 --shots 40 --out DIR`` runs every
(task, shots, seed, method) that ``DIR/results.jsonl`` does not hold yet, appends one JSON line
per run as soon as it ends (:func:`augrl.results.append_jsonl`: one locked, fsynced write, so
two bench processes on one DIR never interleave partial lines), and rebuilds ``DIR/table.md``,
``DIR/table.csv`` and the plots (:mod:`augrl.report`) after each run.

**Resuming.** A run is identified by its task (as given), method, seed, shots and a hash of
everything that decides it (:func:`config_hash`: the method's full ``RunConfig``, its
augmenter and settings, and the augmentation budget for methods that augment). A rerun skips
the runs whose line exists, so a crash or Ctrl-C loses at most the run in progress; changed
settings give another hash and are run again. Lines that do not parse (a write cut off by a
crash, even holding bytes that are not UTF-8) are reported and their runs redone.

**Several processes on one DIR** (two shells, or array jobs of a scheduler) share the work and
never run one configuration twice. Before a run starts, its process claims it: an exclusive
``flock`` on ``DIR/claims/<digest of the run key>.claim``, a file naming the holder (pid, host,
start time, run), held while the run goes on and removed once its line is written. Another
process skips a run that is claimed (``... is being run by another process (pid 123 on host,
since ...); skipped for now``) and goes on with the next; when the rest is done it comes back
to the runs it skipped: those finished meanwhile are skipped, those still claimed are waited
for. The kernel drops the lock of a process that dies (``kill -9``, a lost node), so its claim
is taken over by the next process that asks (``taking over its claim from pid 123 ...``) and
the run is redone; nothing needs cleaning up by hand. The results file is re-read once a run is
claimed, so a run another process finished meanwhile is not repeated. (On NFS, Linux's
``flock`` relies on the server's lock support, and a dead client's locks are dropped when the
server notices.)

**A full disk** stops the bench with one message naming the file
(:class:`augrl.errors.DiskFullError`, exit status 2): a result line that could not be written
whole is cut back off, so every earlier line is kept; free some space and rerun the command.

**Fair comparison.** Every method of one (task, shots, seed) gets the same split and the same
fine-tuned teacher (:func:`augrl.teachers.fine_tuned_teacher`: trained once, cached on disk);
methods may not change the fields that decide them (:data:`SHARED_FIELDS`). Augmented methods
add ``variants`` candidates per target train example (default 4, the same for every method,
recorded in every line), drawn by :func:`augrl.pool.build_pool` from the target train set only
(``source_fraction`` 0 for the baselines), and distil a fresh student on the target set plus
the candidates (:func:`augrl.augmented.distil_on`).

**Methods** are the rows of the one method registry, :mod:`augrl.methods` (its docstring lists
them and shows how to add your own); ``augrl bench --list`` prints them.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from augrl.config import ConfigMixin
from augrl.errors import ConfigError, DiskFullError
# the registry's public names stay reachable as augrl.bench.<name>, as documented before it had a module
from augrl.methods import (AUGMENTERS, ENV_OPTION, SHARED_FIELDS, BenchMethod, BenchRun, Outcome,  # noqa: F401
                           SharedSeed, derive, get, import_modules, names, register, run_in)
from augrl.pipelines import RunConfig
from augrl.results import append_jsonl, read_jsonl

RESULTS_FILE = "results.jsonl"

#: the folder of a bench's run claims (see "Several processes" in the module docstring).
CLAIMS_DIR = "claims"





# ----------------------------------------------------------------------------- settings and presets


@dataclass
class BenchSettings(ConfigMixin):
    """What a benchmark runs (everything but the base ``RunConfig``); presets are YAML files of it.

    Attributes:
        tasks: task names or task YAML paths.
        methods: method names, registered or defined in ``define``.
        seeds: split and training seeds (a YAML/CLI integer N means 0..N-1).
        shots: target train examples per class; several give the data-size curve.
        variants: candidates per target train example for augmented methods.
        augmenter_params: settings per augmenter name, e.g. ``{"eda": {"alpha_sr": 0.2}}``.
        define: methods derived for this bench: ``name: {base, description, config,
            augmenter, augmenter_params, options}`` (see :func:`derive`).
        description: what the preset measures.
        teacher: the teacher every run distils from unless ``--teacher`` is given (the L2A
            paper's presets: ``mpnet``); ``None``: the run config's.
    """

    tasks: list = field(default_factory=lambda: ["rt"])
    methods: list = field(default_factory=list)
    seeds: list = field(default_factory=lambda: [0])
    shots: list = field(default_factory=lambda: [40])
    variants: int = 4
    augmenter_params: dict = field(default_factory=dict)
    define: dict = field(default_factory=dict)
    description: str = ""
    teacher: str | None = None

    def __post_init__(self) -> None:
        if self.teacher is not None and not (isinstance(self.teacher, str) and self.teacher.strip()):
            raise ConfigError(f"teacher: expected a teacher name or folder (e.g. mpnet), got {self.teacher!r}")
        self.tasks = _as_list(self.tasks, "tasks", str)
        self.methods = _as_list(self.methods, "methods", str, allow_empty=True)  # checked by resolve_methods
        self.seeds = seed_list(self.seeds)
        self.shots = _as_list(self.shots, "shots", int)
        if any(s < 1 for s in self.shots):
            raise ConfigError(f"shots must be >= 1, got {self.shots}")
        if int(self.variants) < 1:
            raise ConfigError(f"variants must be >= 1, got {self.variants}")
        self.variants = int(self.variants)
        for name, params in self.augmenter_params.items():
            if not isinstance(params, dict):
                raise ConfigError(f"augmenter_params[{name!r}] must be a mapping of setting: value")

    def resolve_methods(self) -> dict[str, BenchMethod]:
        """Each of ``methods`` as a :class:`BenchMethod`; a clear error for unknown names or
        settings, before anything runs."""
        from augrl import baselines
        from augrl.kd.losses import validate_objective

        if not self.methods:
            raise ConfigError(f"no methods to run; give --methods (available: {', '.join(names())}) or a --preset")
        defined: dict[str, BenchMethod] = {}
        for name, spec in self.define.items():
            spec = dict(spec or {})
            unknown = sorted(set(spec) - {"base", "description", "config", "augmenter", "augmenter_params", "options"})
            if unknown or "base" not in spec:
                raise ConfigError(f"define {name!r}: give base (a method) and optionally description, config, "
                                  f"augmenter, augmenter_params, options; unknown keys {unknown}")
            parent_name = spec.pop("base")
            parent = defined.get(parent_name) or get(parent_name)
            defined[name] = derive(name, parent, register_it=False, **spec)
        methods = {name: defined.get(name) or get(name) for name in self.methods}
        for augmenter in self.augmenter_params:
            if augmenter not in baselines.names():
                raise ConfigError(f"augmenter_params names an unknown augmenter {augmenter!r}; "
                                  f"available: {', '.join(baselines.names())}")
        for method in methods.values():
            if method.augmenter:
                accepted = baselines.parameters(method.augmenter)
                given = {**self.augmenter_params.get(method.augmenter, {}), **method.augmenter_params}
                unknown = sorted(set(given) - set(accepted))
                if unknown:
                    raise ConfigError(f"augmenter {method.augmenter!r} (method {method.name!r}) has no setting(s) "
                                      f"{unknown}; it takes {accepted}")
            if method.config.get("objective"):
                validate_objective(method.config["objective"])
            check_selection_options(method)
        return methods


def check_selection_options(method: BenchMethod) -> None:
    """A method's selection budget and pool settings, checked before anything runs."""
    from augrl.methods import POOL_OPTION, pool_settings

    budget = method.options.get("budget")
    if budget is not None and not (isinstance(budget, (int, float)) and 0.0 < float(budget) <= 1.0):
        raise ConfigError(f"method {method.name!r}: options.budget must be a fraction in (0, 1], got {budget!r}")
    if method.options.get(POOL_OPTION):
        pool_settings(method)


def _as_list(value, what: str, kind: type, allow_empty: bool = False) -> list:
    items = value.split(",") if isinstance(value, str) else (value if isinstance(value, (list, tuple)) else [value])
    try:
        out = [kind(v.strip() if isinstance(v, str) else v) for v in items if str(v).strip()]
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected a list of {kind.__name__}, got {value!r}") from None
    if not out and not allow_empty:
        raise ConfigError(f"{what}: empty")
    return out


def seed_list(value) -> list[int]:
    """Seeds from ``5`` (0..4), ``"0,3,7"`` or ``[0, 3, 7]`` (one seed ``s`` alone: ``"s,"``)."""
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        n = int(value)
        if n < 1:
            raise ConfigError(f"--seeds N runs seeds 0..N-1 and needs N >= 1, got {n}; to run seed {n} alone, give a "
                              f"list: --seeds {n},")
        return list(range(n))
    return _as_list(value, "seeds", int)


def preset_names() -> list[str]:
    """The presets shipped in ``augrl/configs`` (``augrl bench --preset NAME``)."""
    return sorted(p.name[:-5] for p in resources.files("augrl.configs").iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> BenchSettings:
    """A shipped preset by name, or a YAML file of :class:`BenchSettings`."""
    if Path(name).suffix in (".yaml", ".yml"):
        return BenchSettings.load(name)
    entry = resources.files("augrl.configs") / f"{name}.yaml"
    if not entry.is_file():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(preset_names())} (or a YAML file path)")
    with resources.as_file(entry) as path:
        return BenchSettings.load(path)


# ----------------------------------------------------------------------------- keys and resuming


def config_hash(method: BenchMethod, cfg: RunConfig, variants: int, augmenter_params: dict) -> str:
    """A digest of everything that decides a run: its full ``RunConfig`` (task, shots and seed
    included), the augmenter settings given for it, the budget when the method augments, and
    the method's own settings. The report groups seeds by :func:`augrl.report.settings_hash`."""
    if method.augmenter:
        augmenting = {method.augmenter: {**augmenter_params.get(method.augmenter, {}), **method.augmenter_params}}
    else:
        augmenting = dict(augmenter_params) if method.augments else {}
    key = {"config": cfg.to_dict(), "augmenter": augmenting, "variants": variants if method.augments else None,
           "method_config": method.config}
    if method.options:  # only when set, so the keys of methods without options stay as they were
        key["options"] = method.options
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_key(record: dict) -> tuple:
    """(task as given, method, seed, shots, config hash) of a bench record."""
    return (record.get("config", {}).get("task"), record.get("method"), record.get("seed"), record.get("shots"),
            record.get("config_hash"))


def finished_keys(path: Path) -> tuple[set[tuple], list[tuple[int, str]]]:
    """The run keys in a results file, and its unreadable lines."""
    records, bad = read_jsonl(path)
    keys = {run_key(r) for r in records if isinstance(r, dict) and r.get("command") == "bench"}
    return keys, bad


@dataclass
class PlannedRun:
    """One (task, shots, seed, method) of a bench, with its run config and its key
    (``(task, method, seed, shots, config_hash)``, as :func:`run_key` reads it from a record)."""

    task: str
    shots: int
    seed: int
    method: BenchMethod
    cfg: RunConfig
    key: tuple

    def label(self) -> str:
        return f"{self.task} {self.method.name} seed={self.seed} shots={self.shots}"


def plan_runs(settings: BenchSettings, base: RunConfig) -> list[PlannedRun]:
    """Every (task, shots, seed, method) of the bench, in running order (a seed's methods together)."""
    methods = settings.resolve_methods()
    runs = []
    for task in settings.tasks:
        for shots in settings.shots:
            for seed in settings.seeds:
                for method in methods.values():
                    runs.append(plan_run(method, base, task, shots, seed, settings))
    return runs


def plan_run(method: BenchMethod, base: RunConfig, task: str, shots: int, seed: int,
             settings: BenchSettings) -> PlannedRun:
    """One (task, shots, seed) of ``method``, registered or not (a search trial's derived method)."""
    cfg = method.run_config(base.replace(task=task, shots=shots, seed=seed))
    digest = config_hash(method, cfg, settings.variants, settings.augmenter_params)
    return PlannedRun(task, shots, seed, method, cfg, (task, method.name, seed, shots, digest))


# ----------------------------------------------------------------------------- the loop


def run_one(run: PlannedRun, shared: SharedSeed, settings: BenchSettings, progress: bool = True,
            max_steps: int | None = None, evaluate_test: bool = True) -> dict:
    """Run one planned run and return its record (not yet written).

    With ``evaluate_test`` False the model is never evaluated on the test set and the record's
    ``metrics`` hold ``val`` alone (hyperparameter search trials, :mod:`augrl.tune`)."""
    return run_outcome(run, shared, settings, progress, max_steps, evaluate_test)[0]


def bench_run(run: PlannedRun, shared: SharedSeed, settings: BenchSettings, progress: bool = True,
              max_steps: int | None = None) -> BenchRun:
    """The context a planned run's method runs in: its seed's shared things and the bench's
    augmentation budget and settings."""
    return BenchRun(run.method, run.cfg, shared, settings.variants, settings.augmenter_params, progress, max_steps)


def run_outcome(run: PlannedRun, shared: SharedSeed, settings: BenchSettings, progress: bool = True,
                max_steps: int | None = None, evaluate_test: bool = True) -> tuple[dict, Outcome]:
    """:func:`run_one`, also handing back the method's :class:`Outcome` (its trained model)."""
    record, outcome = run_in(bench_run(run, shared, settings, progress, max_steps), "bench", evaluate_test)
    record["config_hash"] = run.key[-1]
    return record, outcome


# ----------------------------------------------------------------------------- claims


@dataclass
class Claim:
    """An exclusive ``flock`` held on a run's claim file while the run goes on.

    Attributes:
        path: ``DIR/claims/<digest of the run key>.claim``.
        fd: the open claim file holding the lock.
        previous: the holder recorded in the file when it was taken over from a process that
            died while running it (``{"pid", "host", "started_at", "run"}``), else None.
    """

    path: Path
    fd: int
    previous: dict | None = None


def claim_path(out: str | Path, key: tuple) -> Path:
    """The claim file of the run ``key`` in the bench folder ``out``."""
    digest = hashlib.sha1(json.dumps(list(key), default=str).encode()).hexdigest()[:16]
    return Path(out) / CLAIMS_DIR / f"{digest}.claim"


def claim_run(out: str | Path, run: PlannedRun, wait: bool = False) -> Claim | None:
    """Claim ``run`` for this process: an exclusive ``flock`` on its claim file.

    Args:
        out: the bench folder.
        run: the run to claim.
        wait: block until the holder (another process) lets go; otherwise return None at once
            when the run is held.

    Returns:
        The held :class:`Claim` (the file now names this process), or None when another live
        process holds the run. The kernel drops the lock of a process that dies, so a claim
        left by a killed process is taken over, with its old holder in ``Claim.previous``.

    Raises:
        DiskFullError: the claims folder or file cannot be created (a full disk).
    """
    path = claim_path(out, run.key)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise DiskFullError(path, err, f"nothing was run for {run.label()}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(path, fd):
            break
        os.close(fd)  # the holder finished and removed the file meanwhile: claim the one at the path now
    previous = _holder(fd)  # holders remove the file before they let go: content left here is from a dead one
    _write_holder(fd, run)
    return Claim(path, fd, previous)


def release_claim(claim: Claim) -> None:
    """Remove the claim file and drop the lock (removal first, so nobody locks a removed file)."""
    try:
        os.unlink(claim.path)
    except FileNotFoundError:
        pass
    finally:
        os.close(claim.fd)


def claim_holder(out: str | Path, run: PlannedRun) -> str:
    """Who holds ``run``'s claim, in words (``pid 123 on host, since ...``), as far as the file says."""
    try:
        fd = os.open(claim_path(out, run.key), os.O_RDONLY)
    except OSError:
        return "another process"
    try:
        holder = _holder(fd)
    finally:
        os.close(fd)
    return _describe_holder(holder)


def _describe_holder(holder: dict | None) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started_at')}"


def _same_file(path: Path, fd: int) -> bool:
    try:
        here, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


def _holder(fd: int) -> dict | None:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None  # empty (a holder killed before it wrote its name) or unreadable
    return holder if isinstance(holder, dict) else None


def _write_holder(fd: int, run: PlannedRun) -> None:
    """Name this process in the claim file: for people and for the messages of other processes."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "run": run.label()}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
    except OSError:
        pass  # the lock is the claim; the name in it only makes messages clearer


# ----------------------------------------------------------------------------- the bench loop


#: The bench redraws its PNGs after a run only when this many seconds have passed since it last
#: drew them (the tables are rewritten after every run, the PNGs always at the end): drawing is
#: most of what a rebuild costs, nothing beside a real run but much of a tiny smoke bench's time.
PLOT_EVERY_S = 60.0


def run_bench(settings: BenchSettings, base: RunConfig, out: str | Path, progress: bool = True,
              max_steps: int | None = None, on_record: Callable[[dict], None] | None = None,
              log: Callable[[str], None] | None = None) -> dict:
    """Run what ``out/results.jsonl`` lacks of the bench; rebuild the tables after each run and
    the PNGs after a run at most every :data:`PLOT_EVERY_S` seconds and at the end.

    Each run is claimed (:func:`claim_run`) before it starts: a run another live process holds
    is skipped and, when the rest is done, waited for; a claim whose holder died is taken over.

    Args:
        settings: tasks, methods, seeds, shots, budget.
        base: the run config every method starts from (teacher, training settings, device).
        out: the bench folder.
        progress: a bar over runs (rate, ETA) and the training bars, on stderr.
        max_steps: recorded cap on optimiser steps (already applied to ``base``); augmenters
            that fine-tune an MLM get it as their step cap too.
        on_record: called with each new record once it is written.
        log: where messages go (default: stderr, above the progress bar).

    Returns:
        ``{"out", "results", "planned", "skipped", "ran", "by_others", "bad_lines", "report"}``:
        ``ran`` lists the keys run now, ``by_others`` those another process on ``out``
        finished meanwhile; ``report`` is :func:`augrl.report.write_report`'s summary.
    """
    from tqdm.auto import tqdm

    from augrl.runtime import git_commit

    git_commit()  # asked (and cached) now: every line records the commit of the code this process loaded
    out = Path(out)
    path = out / RESULTS_FILE
    runs = plan_runs(settings, base)
    done, bad = finished_keys(path)

    bar = None

    def say(message: str) -> None:
        if log is not None:
            log(message)
        elif bar is not None:
            bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    for line, problem in bad:
        say(f"bench: {path}:{line}: {problem}; skipped (its run, if any, is run again)")
    todo = [r for r in runs if r.key not in done]
    say(f"bench: {len(runs)} runs planned, {len(runs) - len(todo)} already in {path}, {len(todo)} to run")
    ran: list[tuple] = []
    by_others: list[tuple] = []
    shared: SharedSeed | None = None
    bar = tqdm(total=len(todo), desc="bench", unit="run", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    current = None
    drawn_at = -float("inf")  # the first run's PNGs are drawn at once

    def attempt(run: PlannedRun, wait: bool) -> bool:
        """Claim and run ``run`` unless it is finished; False when another process holds it."""
        nonlocal shared, drawn_at
        claim = claim_run(out, run, wait=wait)
        if claim is None:
            return False
        try:
            if run.key in finished_keys(path)[0]:  # another process on this folder finished it meanwhile
                say(f"bench: {run.label()} was finished by another process; skipped")
                by_others.append(run.key)
                return True
            if claim.previous:
                say(f"bench: {run.label()}: taking over its claim from {_describe_holder(claim.previous)}, "
                    f"which no longer holds it (that process died); running it again")
            bar.set_postfix_str(run.label(), refresh=True)
            if shared is None or shared.key != (run.task, run.shots, run.seed):
                shared = None  # free the previous seed's teacher and pools first
                shared = SharedSeed(base.replace(task=run.task, shots=run.shots, seed=run.seed), progress)
            record = run_one(run, shared, settings, progress, max_steps)
            append_jsonl(path, record)
            ran.append(run.key)
        finally:
            release_claim(claim)
        if on_record is not None:
            on_record(record)
        draw = time.monotonic() - drawn_at >= PLOT_EVERY_S
        _write_report(out, path, plots=draw)
        if draw:
            drawn_at = time.monotonic()
        return True

    try:
        deferred = []
        for run in todo:
            current = run
            if attempt(run, wait=False):
                bar.update(1)
            else:
                say(f"bench: {run.label()} is being run by another process ({claim_holder(out, run)}); "
                    f"skipped for now, back to it once the rest is done")
                deferred.append(run)
        for run in deferred:  # finished by its holder meanwhile, or taken over if the holder died
            current = run
            if not attempt(run, wait=False):
                say(f"bench: waiting for {claim_holder(out, run)} to finish {run.label()}")
                attempt(run, wait=True)
            bar.update(1)
        current = None
    except KeyboardInterrupt:
        say(f"bench: interrupted during {current.label() if current else 'start-up'}; {len(ran)} new line(s) kept "
            f"in {path}; run the same command again to finish the remaining runs")
        if ran:
            _write_report(out, path)  # the PNGs too, which may lag the tables by a few runs
        raise
    finally:
        bar.close()
    report = _write_report(out, path)
    return {"out": str(out), "results": str(path), "planned": len(runs), "skipped": len(runs) - len(todo),
            "ran": [list(k) for k in ran], "by_others": [list(k) for k in by_others],
            "bad_lines": [{"line": n, "problem": p} for n, p in bad], "report": report}


def _write_report(out: Path, results: Path, plots: bool = True) -> dict:
    """Rebuild the bench's tables (and, with ``plots``, its PNGs); a full disk is a clear error
    that keeps the results."""
    from augrl.report import write_report

    try:
        return write_report(out, quiet=True, plots=plots)
    except DiskFullError:
        raise
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        target = Path(err.filename) if getattr(err, "filename", None) else out
        raise DiskFullError(target, err, f"the tables and plots of {out} could not be rebuilt; every line of "
                                         f"{results} is kept",
                            fix=f"free some space and run `augrl report {out}` (or the same bench command again: "
                                f"it resumes)") from err
