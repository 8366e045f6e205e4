"""An on-disk cache of built artefacts (adapted MLMs, vocabularies), keyed by their settings.

The root is ``$AUGRL_CACHE`` when set, else ``~/.cache/augrl``. An entry is a folder named
``<slug>-<hash of the key>`` holding the artefact and ``augrl_cache.json`` (the key and any
metadata, such as an MLM's held-out accuracy). Entries are built in a temporary folder and
renamed into place, so a crashed build leaves nothing half-written and two processes building
the same entry at once both end with one complete copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

META_FILE = "augrl_cache.json"


def cache_root() -> Path:
    """``$AUGRL_CACHE`` or ``~/.cache/augrl``."""
    return Path(os.environ.get("AUGRL_CACHE") or Path.home() / ".cache" / "augrl").expanduser()


def key_hash(key: dict) -> str:
    """A short stable digest of a JSON-serialisable key."""
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def slug(text: str) -> str:
    """A file-name-safe short form of a model or task name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text).rstrip("/").split("/")[-1])[:40] or "x"


def entry_dir(kind: str, name: str, key: dict) -> Path:
    """Where the entry for ``key`` lives (whether or not it exists yet)."""
    return cache_root() / kind / f"{slug(name)}-{key_hash(key)}"


def read_meta(directory: str | Path) -> dict | None:
    """The metadata of a cache entry, or None when it is not a complete entry."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def cached_build(kind: str, name: str, key: dict, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """Return the entry for ``key``, building it first if it is missing.

    Args:
        kind: sub-folder of the cache root (``mlm``, ``cbert``, ``pos-vocab``...).
        name: readable part of the folder name.
        key: everything that decides the artefact; a change of any value builds a new entry.
        build: ``build(tmp_dir) -> metadata``: writes the artefact into ``tmp_dir``.

    Returns:
        The entry's folder and its metadata (``{"key": key, **metadata}``).
    """
    final = entry_dir(kind, name, key)
    meta = read_meta(final)
    if meta is not None:
        return final, meta
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        meta = {"key": key, **build(tmp)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        if final.exists():  # an incomplete leftover (no metadata): replace it
            if read_meta(final) is not None:
                return final, read_meta(final)  # another process finished first
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(tmp, final)
        except OSError:  # another process renamed its copy in between
            if read_meta(final) is None:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final, read_meta(final) or meta
