"""Run-time plumbing shared by every command: seeding, device choice, threads, provenance."""

from __future__ import annotations

import functools
import os
import platform
import random
import subprocess
from pathlib import Path

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


def set_threads(num_threads: int | None) -> None:
    """Limit torch's intra-op threads (e.g. to a Ray trial's CPU allocation)."""
    if num_threads:
        torch.set_num_threads(int(num_threads))


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a result."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("augrl", "torch", "transformers", "datasets", "numpy", "gymnasium", "stable-baselines3"):
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
    """What the run ran on, for result records."""
    info: dict[str, object] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
