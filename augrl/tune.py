"""Hyperparameter search on Ray Tune: ``augrl tune --task rt --method kd+eda --num-samples 16 --out DIR``.

A **trial** is a benchmark run (:func:`augrl.bench.run_outcome`) of the method with one sample
of the search space (:mod:`augrl.spaces`) applied, on the search's seeds in turn. After each
seed the trial reports the mean *validation* metric over the seeds it has run
(``val_<metric>``: accuracy, or Pearson for regression) and a checkpoint, so ASHA can stop a
poor configuration after its first seed and a crashed trial resumes at the seed it had reached.
Trials never evaluate on test. After the search the best configuration (highest mean
validation metric; more seeds win a tie) and, for comparison, the method's default
configuration are run once more on ``--final-seeds`` with a test evaluation; those records go
to ``DIR/final.jsonl``, apart from the trials.

**Files** in ``DIR``: ``results.jsonl`` (one ``command: "tune"`` line per finished trial, in the
benchmark's record format, written by the driver as trials finish), ``final.jsonl``,
``tune.json`` (the settings, to resume), ``ray/`` (Ray's experiment state and the trials'
checkpoints), ``table.md`` and ``search.png`` (:func:`augrl.report.write_report`), and
``ray-tmp/`` (Ray's session files, when ``DIR`` is short enough: Unix socket paths under it
must stay below 107 characters, so a long ``DIR`` gets ``$TMPDIR/augrl-ray-<hash>`` instead,
and the run says so).

**Checkpoints** hold the trial's sample, the records of the seeds it finished, its attempt
counter and the state dict of the last seed's trained student (``student.pt``). The
selector, policy and generator of L2A and SB3 rows live within one seed's run and are not
checkpointed: a trial that crashes mid-seed redoes that seed (up to ``--max-failures`` times,
:class:`ray.tune.FailureConfig`) and keeps the seeds it had finished.

**Schedulers.** ``asha`` (default): asynchronous successive halving over the seeds
(``training_iteration`` = seeds run; grace period 1 seed, reduction factor 2), useful with
``--seeds 2`` or more. ``fifo``: every trial runs all its seeds. ``pbt``: population-based
training perturbing the numeric and categorical parameters after each seed (needs ``--seeds
2`` or more); a trial that takes over a better trial's checkpoint starts its seeds again under
its new configuration (the records of another configuration are never mixed into its mean)
and every trial stops after at most 3 x seeds reports.

**Search algorithms.** ``random`` (seeded by ``--search-seed``) and ``optuna`` (Ray's
``OptunaSearch``, TPE; needs ``pip install optuna``).

**Devices.** A trial asks Ray for ``--cpus-per-trial`` CPUs and ``--gpus-per-trial`` GPUs
(fractions allowed: 0.5 packs two trials on a GPU). Under ``--device auto`` (default) it runs on
the GPU Ray assigned (Ray sets ``CUDA_VISIBLE_DEVICES``) when torch can use one, else on the
CPU; torch's threads follow the CPU allocation. The assigned GPU ids are recorded in the line
(``ray.gpu_ids``), also when they are logical ids on a machine without CUDA.

**Cluster.** ``ray start --head`` on one machine, ``ray start --address HEAD:6379`` on the
others, then the same command with ``--address auto`` on the head; ``DIR`` must be on storage
every node sees (Ray persists checkpoints there).

**Resume, and trust.** ``--resume DIR`` continues the search saved in ``DIR`` as Ray Tune's
``Tuner.restore`` does: with its saved settings (``tune.json``), so the search, its space and
its trials' resources stay what they were; only ``--final`` and ``--final-seeds`` (the test
after the search) and how this run talks to Ray (``--address``, ``--verbose``, ``--quiet``,
``--json``) apply, and the CLI names every other flag it ignores. ``Tuner.restore``
**unpickles** Ray's experiment state from ``DIR/ray`` (the trainable, search algorithm and
scheduler state), and unpickling runs whatever code the file names: resume only a folder that
you, or a cluster you control, wrote. augrl's own files in ``DIR`` are JSON, and checkpoints'
``student.pt`` hold tensors only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray import tune

from augrl import bench
from augrl.config import ConfigMixin
from augrl.errors import AugrlError, ConfigError
from augrl.report import load_search as search_lines
from augrl.results import append_jsonl, provenance

SCHEDULERS = ("asha", "pbt", "fifo")
SEARCHES = ("random", "optuna")
FINALS = ("best+default", "best", "none")
SETTINGS_FILE = "tune.json"
FINAL_FILE = "final.jsonl"
EXPERIMENT = "ray"
#: longest Ray temp folder kept inside DIR: Ray adds ~63 characters of session/socket path, Unix allows 107
MAX_TEMP_DIR = 40
#: PBT: a trial stops after this many times its seeds in reports (each exploit restarts its seeds)
PBT_ROUNDS = 3


@dataclass
class TuneSettings(ConfigMixin):
    """What a search runs (saved as ``DIR/tune.json``; ``--resume`` reads it back).

    Attributes:
        task: task name or task YAML path.
        method: the bench method searched (``augrl bench --list``).
        space: search space preset or YAML file (None: the method's default, see
            :func:`augrl.spaces.default_space`).
        num_samples: trials.
        scheduler: ``asha``, ``pbt`` or ``fifo``.
        search: ``random`` or ``optuna``.
        search_seed: seed of the sampler.
        seeds: split/training seeds every trial runs in turn (a YAML/CLI integer N: 0..N-1).
        final_seeds: seeds of the final test evaluation (default: ``seeds``).
        final: ``best+default``, ``best`` or ``none``: what is tested after the search.
        shots: target train examples per class.
        variants: candidates per target train example (a space may sample it).
        max_steps: cap on optimiser steps per training stage (smoke runs).
        cpus_per_trial, gpus_per_trial: Ray resources of one trial (fractions allowed).
        max_concurrent: trials running at once (None: as many as resources allow).
        max_failures: retries of a crashed trial, each from its last checkpoint.
        imports: modules that register bench methods (``--import``), imported in every trial.
        fail_once: testing fault tolerance: a marker file path; a trial's first attempt, after
            its first checkpoint, creates it and raises, if it does not exist yet.
    """

    task: str = "rt"
    method: str = "kd"
    space: str | None = None
    num_samples: int = 8
    scheduler: str = "asha"
    search: str = "random"
    search_seed: int = 0
    seeds: list = field(default_factory=lambda: [0])
    final_seeds: list | None = None
    final: str = "best+default"
    shots: int = 40
    variants: int = 4
    max_steps: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 2
    imports: list = field(default_factory=list)
    fail_once: str | None = None

    def __post_init__(self) -> None:
        self.seeds = bench.seed_list(self.seeds)
        if self.final_seeds is not None:
            self.final_seeds = bench.seed_list(self.final_seeds)
        for name, value, allowed in (("scheduler", self.scheduler, SCHEDULERS), ("search", self.search, SEARCHES),
                                     ("final", self.final, FINALS)):
            if value not in allowed:
                raise ConfigError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.num_samples < 1:
            raise ConfigError(f"--num-samples must be >= 1, got {self.num_samples}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ConfigError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, got {self.cpus_per_trial} "
                              f"and {self.gpus_per_trial}")
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ConfigError(f"--gpus-per-trial above 1 must be a whole number, got {self.gpus_per_trial}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent must be >= 1, got {self.max_concurrent}")
        if self.scheduler == "pbt" and len(self.seeds) < 2:
            raise ConfigError("--scheduler pbt perturbs configurations between a trial's reports (one per seed); "
                              "give --seeds 2 or more, or use asha/fifo")
        if self.scheduler == "pbt" and self.search == "optuna":
            raise ConfigError("--scheduler pbt chooses configurations itself; use it with --search random")

    @property
    def test_seeds(self) -> list[int]:
        return self.final_seeds if self.final_seeds is not None else self.seeds


def metric_key(metric: str) -> str:
    """The name of the reported metric: ``val_accuracy``, ``val_pearson``..."""
    return f"val_{metric}"


# ----------------------------------------------------------------------------- one trial (in a Ray worker)


def _trial_device(base) -> tuple[str, list[str]]:
    """The device of a trial or final run and the GPU ids Ray assigned it: under ``auto``, the
    assigned GPU when torch can use it (``CUDA_VISIBLE_DEVICES`` makes it ``cuda``), else CPU."""
    import torch

    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    if base.device != "auto":
        return base.device, gpu_ids
    return ("cuda" if gpu_ids and torch.cuda.is_available() else "cpu"), gpu_ids


def _setup_worker(settings: TuneSettings) -> None:
    from augrl.runtime import set_threads

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_threads(max(1, int(settings.cpus_per_trial)))
    bench.import_modules(settings.imports)


def _mean_val(records: list[dict]) -> dict:
    keys = [k for k in records[0]["metrics"]["val"] if all(k in r["metrics"]["val"] for r in records)]
    return {k: sum(float(r["metrics"]["val"][k]) for r in records) / len(records) for k in keys}


def trial_line(records: list[dict], sample: dict, settings: TuneSettings, trial: dict, placement: dict) -> dict:
    """The results.jsonl line of a trial from its seeds' bench records (no test metrics):
    bench fields of its first seed, ``metrics.val`` averaged over its seeds, the sample, and
    where and how it ran (``trial``, ``ray``, ``per_seed``)."""
    first = records[0]
    keep = ("task", "shots", "params", "config", "config_hash", "variants", "augmenter", "objective", "pool",
            "method_description", "method_options", "split", "device", "teacher")
    line = {"command": "tune", "method": settings.method, "seed": first["seed"],
            "seeds": [r["seed"] for r in records], **{k: first.get(k) for k in keep},
            "metrics": {"val": _mean_val(records)}, "sampled": sample,
            "wall_time_s": round(sum(float(r.get("wall_time_s") or 0.0) for r in records), 2),
            "trial": trial, "ray": placement,
            "per_seed": [{"seed": r["seed"], "val": r["metrics"]["val"], "wall_time_s": r.get("wall_time_s"),
                          "config_hash": r.get("config_hash"), "attempt": r.get("attempt")} for r in records],
            "search": {"space": settings.space, "scheduler": settings.scheduler, "search": settings.search,
                       "seeds": settings.seeds},
            **provenance()}
    return line


def _load_state(checkpoint, sample: dict) -> dict:
    state = {"sample": sample, "records": [], "attempt": 0, "restored": False, "exploited_from": None}
    if checkpoint is None:
        return state
    with checkpoint.as_directory() as d:
        saved = json.loads((Path(d) / "state.json").read_text())
    if saved["sample"] == sample:
        saved["restored"] = True
        return saved
    # PBT handed this trial another configuration's checkpoint: its seeds are not ours
    state.update(attempt=saved.get("attempt", 0), exploited_from=saved.get("trial_id"))
    return state


def run_trial(config: dict, context: dict) -> None:
    """A Ray Tune function trainable: the bench run of ``config``'s sample on each seed in turn
    (see the module docstring). ``context`` holds ``settings``, ``base`` (RunConfig dict) and
    ``params`` (the sampled names)."""
    import torch

    from augrl.pipelines import RunConfig
    from augrl.spaces import apply_sample, to_jsonable

    settings = TuneSettings.from_dict(context["settings"])
    _setup_worker(settings)
    started = time.time()
    base = RunConfig.from_dict(context["base"])
    device, gpu_ids = _trial_device(base)
    base = base.replace(device=device)
    sample = {k: to_jsonable(config[k]) for k in context["params"] if k in config}
    method = bench.get(settings.method)
    bench_settings = bench.BenchSettings(tasks=[settings.task], methods=[settings.method], seeds=settings.seeds,
                                         shots=[settings.shots], variants=settings.variants)
    derived, bench_settings = apply_sample(method, base, bench_settings, sample, source=settings.space or "space")
    ctx = tune.get_context()
    state = _load_state(tune.get_checkpoint(), sample)
    state["attempt"] += 1
    state["trial_id"] = ctx.get_trial_id()
    placement = {"gpu_ids": gpu_ids, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                 "cpus": settings.cpus_per_trial, "gpus": settings.gpus_per_trial, "device": device,
                 "torch_threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available(),
                 "node": os.uname().nodename, "pid": os.getpid(), "started_at": started}
    records = state["records"]
    for seed in settings.seeds[len(records):]:
        run = bench.plan_run(derived, base, settings.task, settings.shots, seed, bench_settings)
        shared = bench.SharedSeed(base.replace(task=settings.task, shots=settings.shots, seed=seed), progress=False)
        record, outcome = bench.run_outcome(run, shared, bench_settings, progress=False, max_steps=settings.max_steps,
                                            evaluate_test=False)
        record["attempt"] = state["attempt"]
        records.append(json.loads(json.dumps(record, default=str)))
        metric = shared.data.task.spec.metric
        del shared
        info = {"id": state["trial_id"], "name": ctx.get_trial_name(), "attempts": state["attempt"],
                "restored_from_checkpoint": state["restored"], "exploited_from": state["exploited_from"],
                "seeds_done": len(records), "seeds_planned": len(settings.seeds)}
        placement["ended_at"] = time.time()
        line = trial_line(records, sample, settings, info, dict(placement))
        with tempfile.TemporaryDirectory(prefix="augrl-ckpt-") as d:
            (Path(d) / "state.json").write_text(json.dumps(state, default=str))
            torch.save({k: v.detach().cpu() for k, v in outcome.model.state_dict().items()}, Path(d) / "student.pt")
            tune.report({metric_key(metric): line["metrics"]["val"][metric], "seeds_done": len(records),
                         "line": line}, checkpoint=tune.Checkpoint.from_directory(d))
        del outcome
        if settings.fail_once and state["attempt"] == 1 and not Path(settings.fail_once).exists():
            Path(settings.fail_once).write_text(f"trial {state['trial_id']} failed here on purpose\n")
            raise RuntimeError(f"augrl tune: trial {state['trial_id']} fails once on purpose (fail_once marker "
                               f"{settings.fail_once})")


def run_final(role: str, sample: dict, seed: int, context: dict) -> dict:
    """The final evaluation of one configuration on one seed, with its test metrics: a bench
    record with ``command: "tune-final"``, ``role`` (``best`` or ``default``) and ``sampled``."""
    from augrl.pipelines import RunConfig
    from augrl.spaces import apply_sample

    settings = TuneSettings.from_dict(context["settings"])
    _setup_worker(settings)
    base = RunConfig.from_dict(context["base"])
    device, gpu_ids = _trial_device(base)
    base = base.replace(device=device)
    method = bench.get(settings.method)
    bench_settings = bench.BenchSettings(tasks=[settings.task], methods=[settings.method], seeds=[seed],
                                         shots=[settings.shots], variants=settings.variants)
    derived, bench_settings = apply_sample(method, base, bench_settings, sample, source=settings.space or "space")
    run = bench.plan_run(derived, base, settings.task, settings.shots, seed, bench_settings)
    shared = bench.SharedSeed(base.replace(task=settings.task, shots=settings.shots, seed=seed), progress=False)
    record = bench.run_one(run, shared, bench_settings, progress=False, max_steps=settings.max_steps)
    record.update(command="tune-final", role=role, sampled=sample, ray={"gpu_ids": gpu_ids, "device": device})
    return json.loads(json.dumps(record, default=str))


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


# ----------------------------------------------------------------------------- the driver


class _Live:
    """What the driver shows while trials finish, and the caller's callbacks: kept out of the
    callbacks Ray pickles into its experiment state, so a resumed search uses those of the
    resuming call, not those of the first."""

    def __init__(self, bar, log, key: str, callbacks: list) -> None:
        self.bar, self.log, self.key, self.best, self.callbacks = bar, log, key, None, callbacks

    def forward(self, hook: str, *args, **kwargs) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args, **kwargs)


_LIVE: dict[str, _Live] = {}


def _trial_ids(out: Path) -> set[str]:
    return {(r.get("trial") or {}).get("id") for r in search_lines(out)[0]}


class TrialLines(tune.Callback):
    """Driver side: appends a finished trial's line to ``results.jsonl`` (once per trial id, so
    a resumed search never writes a trial twice) and moves the progress bar."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_trial_start(self, iteration, trials, trial, **info):
        live = _LIVE.get(self.out)
        if live is not None:
            live.forward("on_trial_start", iteration, trials, trial, **info)

    def on_trial_complete(self, iteration, trials, trial, **info):
        line = (trial.last_result or {}).get("line")
        path = Path(self.out) / bench.RESULTS_FILE
        if line and line["trial"]["id"] not in _trial_ids(Path(self.out)):
            line["trial"]["complete"] = line["trial"]["seeds_done"] == line["trial"]["seeds_planned"]
            append_jsonl(path, line)
        live = _LIVE.get(self.out)
        if live is not None:
            value = (trial.last_result or {}).get(live.key)
            if value is not None and (live.best is None or value > live.best):
                live.best = value
            if live.best is not None:
                live.bar.set_postfix_str(f"best {live.key}={live.best:.4f}", refresh=False)
            live.bar.update(1)
            live.forward("on_trial_complete", iteration, trials, trial, **info)

    def on_trial_error(self, iteration, trials, trial, **info):
        live = _LIVE.get(self.out)
        if live is not None:
            live.log(f"tune: trial {trial.trial_id} failed after its retries (its error is in {trial.path})")
            live.bar.update(1)
            live.forward("on_trial_error", iteration, trials, trial, **info)


def _domain(spec):
    if not isinstance(spec, dict):
        return spec
    kind, args = next(iter(spec.items()))
    if kind == "uniform":
        return tune.uniform(*args)
    if kind == "loguniform":
        return tune.loguniform(*args)
    if kind == "int":
        return tune.randint(int(args[0]), int(args[1]) + 1)
    return tune.choice(list(args))


def ray_temp_dir(out: Path) -> tuple[Path, str | None]:
    """Ray's session folder for a search in ``out``: ``out/ray-tmp``, or a short path under
    the system temp folder when that is too long for Unix socket paths (with a note why)."""
    inside = out.resolve() / "ray-tmp"
    if len(str(inside)) <= MAX_TEMP_DIR:
        return inside, None
    digest = hashlib.sha1(str(inside).encode()).hexdigest()[:8]
    short = Path(tempfile.gettempdir()) / f"augrl-ray-{digest}"
    return short, (f"Ray's temp files go to {short}, not {inside}: Ray's socket paths under a folder longer than "
                   f"{MAX_TEMP_DIR} characters pass the 107-character Unix limit")


def _worker_env() -> dict:
    """Environment the trial workers need to see what the driver sees: augrl's own checkout on
    PYTHONPATH, the data root, the cache, offline hub settings."""
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("AUGRL_", "HF_", "TRANSFORMERS_")) or k == "TOKENIZERS_PARALLELISM"}
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in paths if p != root])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def start_ray(out: Path, address: str | None = None, verbose: bool = False, log=None, **init) -> bool:
    """Start (or connect to) Ray for a search; returns whether this call initialised it (and
    should shut it down). An already initialised Ray (a notebook, a test) is used as it is."""

    if ray.is_initialized():
        return False
    kwargs = dict(runtime_env={"env_vars": _worker_env()}, log_to_driver=verbose, include_dashboard=False,
                  logging_level=logging.INFO if verbose else logging.ERROR)
    if address:
        ray.init(address=address, **kwargs, **init)
    else:
        temp, note = ray_temp_dir(out)
        if note and log is not None:
            log(f"tune: {note}")
        temp.mkdir(parents=True, exist_ok=True)
        ray.init(_temp_dir=str(temp), **kwargs, **init)
    return True


def _quiet_ray(verbose: bool) -> None:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1" if verbose else "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "60")
    if not verbose:
        for name in ("ray", "ray.tune", "ray.train", "ray.air"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _scheduler(settings: TuneSettings, space):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if settings.scheduler == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=len(settings.seeds), grace_period=1,
                             reduction_factor=2)
    if settings.scheduler == "pbt":
        mutations = {k: _domain(v) for k, v in space.searched().items()}
        return PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=1,
                                       hyperparam_mutations=mutations, synch=False)
    return FIFOScheduler()


def _search_alg(settings: TuneSettings, metric: str):
    import importlib.util

    if settings.search == "random":
        from ray.tune.search import BasicVariantGenerator

        # Ray ignores TuneConfig.max_concurrent_trials for a search_alg of this class: it is set here
        return BasicVariantGenerator(random_state=settings.search_seed, max_concurrent=settings.max_concurrent or 0)
    if importlib.util.find_spec("optuna") is None:
        raise ConfigError("--search optuna needs Optuna, which is not installed: pip install optuna "
                          "(or use --search random)")
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(metric=metric, mode="max", seed=settings.search_seed)


def _context(settings: TuneSettings, base, space) -> dict:
    return {"settings": settings.to_dict(), "base": base.to_dict(), "params": list(space.params)}


def _trainable(settings: TuneSettings, context: dict):
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, context=context), resources)


def _write_settings(path: Path, saved: dict) -> None:
    """Write ``tune.json`` whole or not at all (a full disk: DiskFullError, the old file kept)."""
    from augrl.fileio import write_file_atomically

    text = json.dumps(saved, indent=2, default=str)
    write_file_atomically(path, lambda tmp: tmp.write_text(text))


def _save_or_check(out: Path, settings: TuneSettings, base, space) -> None:
    path = out / SETTINGS_FILE
    saved = {"settings": settings.to_dict(), "base": base.to_dict(), "space": space.params,
             "space_name": space.name}
    if path.exists():
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in saved} != json.loads(json.dumps(saved, default=str)):
            raise ConfigError(f"{out} holds another search ({path}); resume it with `augrl tune --resume {out}` "
                              "or give a new --out")
        raise ConfigError(f"{out} already holds this search; continue it with `augrl tune --resume {out}`")
    out.mkdir(parents=True, exist_ok=True)
    _write_settings(path, saved)


def load_search(out: str | Path) -> tuple[TuneSettings, object, object]:
    """The settings, base RunConfig and space of the search saved in ``out`` (for ``--resume``)."""
    from augrl.pipelines import RunConfig
    from augrl.spaces import SearchSpace

    path = Path(out) / SETTINGS_FILE
    if not path.is_file():
        raise ConfigError(f"{out}: no {SETTINGS_FILE}; --resume takes the --out folder of an earlier `augrl tune`")
    saved = json.loads(path.read_text())
    return (TuneSettings.from_dict(saved["settings"], source=str(path)),
            RunConfig.from_dict(saved["base"], source=str(path)),
            SearchSpace(saved.get("space_name") or "space", saved["space"]))


def _final_overrides(out: Path, settings: TuneSettings, final: str | None, final_seeds) -> TuneSettings:
    """``settings`` with a new final test, saved back to ``out/tune.json`` so a later resume
    keeps it."""
    if final is None and final_seeds is None:
        return settings
    settings = settings.replace(final=final, final_seeds=final_seeds)  # None: the saved value stays
    path = out / SETTINGS_FILE
    saved = json.loads(path.read_text())
    saved["settings"] = settings.to_dict()
    _write_settings(path, saved)
    return settings


def prepare_search(settings: TuneSettings, base):
    """Resolve and check the method and space before Ray starts; returns ``(settings, space, metric)``."""
    from augrl import spaces
    from augrl.tasks import get_spec

    bench.import_modules(settings.imports)
    method = bench.get(settings.method)
    name = settings.space or spaces.default_space(settings.method)
    space = spaces.load_space(name)
    settings = settings.replace(space=space.name)
    spaces.check_space(space, method, base)
    if not space.searched():
        raise ConfigError(f"search space {space.name} samples nothing (every parameter is a plain value); "
                          "give at least one distribution")
    return settings, space, get_spec(settings.task).metric


def run_tune(settings: TuneSettings | None = None, base=None, out: str | Path = "tune", *, resume: bool = False,
             final: str | None = None, final_seeds=None, address: str | None = None, verbose: bool = False,
             progress: bool = True, log=None, ray_init: dict | None = None, callbacks: list | None = None) -> dict:
    """Run (or, with ``resume``, continue) a search; see the module docstring.

    Args:
        settings: the search (ignored with ``resume``: read from ``out/tune.json``).
        base: the RunConfig every trial starts from (teacher, training settings, device).
        out: the search folder.
        resume: continue the search saved in ``out`` with ``Tuner.restore``: finished trials
            are not run again, unfinished and errored ones are. This unpickles Ray's
            experiment state from ``out/ray``: resume only a folder you trust.
        final, final_seeds: with ``resume``, replace the saved search's final test (they do
            not change the trials): e.g. test a finished search's best and default
            configurations on more seeds; final runs already in ``final.jsonl`` are kept.
        address: an existing Ray cluster (``auto``, ``HOST:PORT``); None: start Ray locally.
        verbose: Ray's logs, trial table and the workers' output.
        progress: a bar over trials (rate, ETA, best value so far) on stderr.
        log: where messages go (default: stderr).
        ray_init: extra ``ray.init`` arguments when starting Ray (``num_cpus``, ``num_gpus``).
        callbacks: objects with ``on_trial_start/complete/error`` hooks (``ray.tune.Callback``),
            called on the driver for this call only (not saved with the experiment).

    Returns:
        ``{"out", "results", "trials", "errors", "interrupted", "best", "final", "report", ...}``.
    """
    from tqdm.auto import tqdm

    from augrl.runtime import git_commit

    out = Path(out).resolve()
    say = log or (lambda m: print(m, file=sys.stderr))
    if resume:
        from augrl.tasks import get_spec

        settings, base, space = load_search(out)
        settings = _final_overrides(out, settings, final, final_seeds)
        bench.import_modules(settings.imports)
        metric = get_spec(settings.task).metric
    else:
        if final is not None or final_seeds is not None:
            raise ConfigError("final and final_seeds replace a saved search's final test; without resume, set "
                              "them in the TuneSettings")
        settings, space, metric = prepare_search(settings, base)
        _save_or_check(out, settings, base, space)
    key = metric_key(metric)
    git_commit()
    _quiet_ray(verbose)
    started = start_ray(out, address, verbose, say, **(ray_init or {}))
    results = out / bench.RESULTS_FILE
    done_before = len(_trial_ids(out))
    bar = tqdm(total=settings.num_samples, initial=done_before, desc="tune", unit="trial", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    live = _LIVE[str(out)] = _Live(bar, lambda m: bar.write(m, file=sys.stderr) if progress else say(m), key,
                                   list(callbacks or []))
    earlier = best_trial(search_lines(out)[0], metric)
    if earlier:  # a resumed search's bar shows the best of all its trials, not only of the new ones
        live.best = earlier["val"][metric]
        bar.set_postfix_str(f"best {key}={live.best:.4f}")
    start = time.perf_counter()
    try:
        context = _context(settings, base, space)
        trainable = _trainable(settings, context)
        if resume:
            path = out / EXPERIMENT
            if not tune.Tuner.can_restore(str(path)):
                raise ConfigError(f"{path}: no Ray Tune experiment state to resume; start the search again")
            tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:
            stop = {"training_iteration": PBT_ROUNDS * len(settings.seeds)} if settings.scheduler == "pbt" else None
            tuner = tune.Tuner(
                trainable,
                param_space={k: _domain(v) for k, v in space.params.items()},
                tune_config=tune.TuneConfig(metric=key, mode="max", num_samples=settings.num_samples,
                                            scheduler=_scheduler(settings, space),
                                            search_alg=_search_alg(settings, key),
                                            max_concurrent_trials=settings.max_concurrent,
                                            # a fresh worker per trial: reused ones grew by ~1 GB a trial
                                            # (9.4 and 11.6 GB after 6 and 8 L2A trials) until Ray killed one
                                            reuse_actors=False,
                                            trial_dirname_creator=_trial_dirname),
                run_config=tune.RunConfig(
                    name=EXPERIMENT, storage_path=str(out), stop=stop, verbose=2 if verbose else 0,
                    failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                    # PBT copies other trials' checkpoints: keep a few so none is deleted under it
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=3 if settings.scheduler == "pbt" else 1),
                    callbacks=[TrialLines(str(out))]))
        try:
            grid = tuner.fit()
        except (RuntimeError, ray.exceptions.OutOfMemoryError) as e:
            if "low on memory" not in str(e):
                raise
            raise AugrlError(f"tune: Ray killed a trial because this node ran low on memory; finished trials are "
                             f"kept in {results}. Continue with `augrl tune --resume {out}` after freeing memory, "
                             "or start the search again with a lower --max-concurrent or a higher "
                             "--cpus-per-trial") from e
        errors = [{"error": f"{type(e).__name__}: {e}"[:500]} for e in grid.errors]
        lines = search_lines(out)[0]
        interrupted = len(lines) + len(errors) < settings.num_samples
        bar.close()
        summary = {"out": str(out), "results": str(results), "trials": len(lines), "new_trials": len(lines) - done_before,
                   "errors": errors, "interrupted": interrupted, "metric": key,
                   "seconds": round(time.perf_counter() - start, 2), "ray_temp_dir": None}
        if started and not address:
            summary["ray_temp_dir"] = str(ray_temp_dir(out)[0])
        if interrupted:
            say(f"tune: interrupted with {len(lines)} of {settings.num_samples} trials finished; continue with "
                f"`augrl tune --resume {out}`")
            summary["best"], summary["final"] = best_trial(lines, metric), None
        else:
            summary["best"] = best_trial(lines, metric)
            final_start = time.perf_counter()  # "seconds" is the search's own time
            summary["final"] = final_evaluation(settings, base, space, summary["best"], out, say)
            summary["final_seconds"] = round(time.perf_counter() - final_start, 2)
    finally:
        bar.close()
        _LIVE.pop(str(out), None)
        if started:
            ray.shutdown()
    from augrl.report import write_report

    # a search stopped before any trial finished has no lines to report yet
    summary["report"] = write_report(out, quiet=True) if summary["trials"] else None
    return summary


def best_trial(lines: list[dict], metric: str) -> dict | None:
    """The trial line with the highest mean validation ``metric`` (more seeds win a tie)."""
    scored = [r for r in lines if metric in r["metrics"]["val"]]
    if not scored:
        return None
    best = max(scored, key=lambda r: (r["metrics"]["val"][metric], len(r.get("seeds") or [])))
    return {"trial_id": best["trial"]["id"], "val": best["metrics"]["val"], "sampled": best["sampled"],
            "seeds": best["seeds"], "config_hash": best.get("config_hash")}


def _final_key(record: dict) -> tuple:
    return record.get("role"), json.dumps(record.get("sampled"), sort_keys=True), record.get("seed")


def final_evaluation(settings: TuneSettings, base, space, best: dict | None, out: Path, say) -> dict | None:
    """Test the best configuration (and the default one) on ``settings.test_seeds`` as Ray
    tasks with a trial's resources; lines go to ``out/final.jsonl`` (a resumed search skips
    those already there). Returns per role the mean test and validation metrics."""

    if settings.final == "none" or best is None:
        return None
    context = _context(settings, base, space)
    roles = [("best", best["sampled"])]
    if settings.final == "best+default":
        roles.append(("default", dict(space.fixed())))
    path = out / FINAL_FILE
    done = {_final_key(r) for r in search_lines(out)[1]}
    # max_calls=1: a fresh worker per run, like the trials
    remote = ray.remote(num_cpus=settings.cpus_per_trial, num_gpus=settings.gpus_per_trial, max_calls=1)(run_final)
    pending = [(role, sample, seed) for role, sample in roles for seed in settings.test_seeds
               if (role, json.dumps(sample, sort_keys=True), seed) not in done]
    if pending:
        say(f"tune: testing {', '.join(r for r, _ in roles)} on seeds {settings.test_seeds} ({len(pending)} runs)")
    refs = [remote.remote(role, sample, seed, context) for role, sample, seed in pending]
    while refs:  # each run is written as it finishes: an interrupted final test keeps what is done
        ready, refs = ray.wait(refs, num_returns=1)
        record = ray.get(ready[0])
        append_jsonl(path, record)
        say(f"tune: {record['role']} seed {record['seed']}: test "
            + ", ".join(f"{k}={v:.4f}" for k, v in record["metrics"]["test"].items()))
    records = search_lines(out)[1]
    summary = {}
    for role, sample in roles:
        mine = sorted((r for r in records if _final_key(r)[:2] == (role, json.dumps(sample, sort_keys=True))
                       and r["seed"] in settings.test_seeds), key=lambda r: r["seed"])
        if not mine:
            continue
        test_keys = list(mine[0]["metrics"]["test"])
        summary[role] = {"sampled": sample, "seeds": [r["seed"] for r in mine],
                         "test": {k: sum(r["metrics"]["test"][k] for r in mine) / len(mine) for k in test_keys},
                         "val": _mean_val(mine)}
    return summary
