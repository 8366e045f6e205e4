"""Run-time plumbing shared by every command: seeding, device choice, threads, provenance."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import random
import subprocess
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from augrl.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run repeats exactly on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(device: str = "auto") -> torch.device:
    """Pick the compute device.

    ``auto`` takes the first visible CUDA device (under Ray, the GPU assigned to the trial via
    ``CUDA_VISIBLE_DEVICES``), then Apple MPS, else the CPU. ``cpu``, ``cuda``, ``cuda:1`` and
    ``mps`` are taken as given, with a clear error if that device is not there.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return chosen


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU
    with AVX512-BF16 or AMX (read from ``/proc/cpuinfo``; False where that cannot be read)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The student precision an env setting means on ``device``: ``"auto"`` is ``"bf16"`` where
    :func:`native_bf16` holds, else ``"fp32"``; ``"bf16"`` and ``"fp32"`` stand. Result lines
    record it, since the same setting runs differently on different CPUs."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def set_threads(num_threads: int | None) -> None:
    """Limit torch's intra-op threads (e.g. to a Ray trial's CPU allocation)."""
    if num_threads:
        torch.set_num_threads(int(num_threads))


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a result."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("augrl", "torch", "transformers", "tokenizers", "datasets", "numpy", "scipy", "scikit-learn",
                "gymnasium", "stable-baselines3", "spacy", "wn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


@functools.lru_cache(maxsize=None)
def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the augrl checkout (with ``+dirty`` if it has local changes), or None.

    Asked once per process (cached): a long benchmark records the commit whose code it
    loaded, not whatever the checkout holds when a run ends.
    """
    here = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def hardware() -> dict[str, object]:
    """What the run ran on, for result records. ``cpu_capability`` is the vector instruction set
    torch's CPU kernels use (e.g. AVX2, AVX512): runs on different ones can differ in the last
    float bits."""
    info: dict[str, object] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                               "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ----------------------------------------------------------------------------- where the time goes

#: the stages a run's time is split into (``timings`` in a bench record, ``augrl report``)
STAGES = ("teacher", "pool", "teacher_outputs", "selection", "student", "evaluation", "other")
_stage_totals: dict[str, float] | None = None
_stage_stack: list[list] = []


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Charge the enclosed work to stage ``name`` of the run being timed (:func:`stage_clock`);
    a stage nested in another is charged to itself alone, not also to the outer one. Outside a
    clock it costs two ``perf_counter`` calls."""
    start = time.perf_counter()
    _stage_stack.append([name, 0.0])
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        _, nested = _stage_stack.pop()
        if _stage_totals is not None:
            _stage_totals[name] = _stage_totals.get(name, 0.0) + elapsed - nested
        if _stage_stack:
            _stage_stack[-1][1] += elapsed


@contextlib.contextmanager
def stage_clock() -> Iterator[dict[str, float]]:
    """Time the enclosed run by stage: the yielded dict is filled, on exit, with the seconds of
    each stage of :data:`STAGES` that ran (rounded to 0.01 s); time in no stage is ``other``."""
    global _stage_totals
    outer, _stage_totals = _stage_totals, {}
    out: dict[str, float] = {}
    try:
        with stage("other"):
            yield out
    finally:
        out.update({k: round(v, 2) for k, v in sorted(_stage_totals.items(), key=lambda kv: STAGES.index(kv[0])
                                                     if kv[0] in STAGES else len(STAGES))})
        _stage_totals = outer
