"""The artifact store: built things (fine-tuned teachers, adapted MLMs, vocabularies) cached on
disk under keys made of the content that decides them.

The root is ``$AUGRL_CACHE`` when set, else ``~/.cache/augrl``. An entry is a folder
``<root>/<kind>/<slug>-<hash of the key>`` holding the artifact and ``augrl_cache.json``: the
key, the builder's metadata and the size of every file of the entry.

Keys hash content, in the manner of ``datasets``' fingerprints: the texts and labels a thing was
trained on (:func:`texts_fingerprint`), the model files it started from (:func:`augrl.models.model_key`), its
settings, and :data:`FORMAT_VERSION`. Two tasks with the same name and size but other text get
other entries; a model folder whose weights change gets another entry.

Every entry is built the same way (:func:`cached_build`):

- **locked**: the builder holds an exclusive ``flock`` on ``.<entry>.lock``; a second process
  asking for the same entry waits for it and then loads what it built, instead of building it
  twice (the kernel drops the lock of a killed process, so a dead builder never blocks);
- **atomic**: the artifact is written into a temporary folder next to the entry and renamed into
  place with its metadata, so a kill mid-build never leaves an entry that looks complete;
- **verified**: an entry whose metadata is missing or unreadable, or whose files are missing or
  not of the recorded size (a truncated ``model.safetensors``), is reported on stderr and built
  again;
- **clean**: temporary folders left by killed builds of an entry are removed by its next build.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

META_FILE = "augrl_cache.json"

#: Part of every key: bump it when the layout of an entry changes, so old entries are not read.
FORMAT_VERSION = 2


def cache_root() -> Path:
    """``$AUGRL_CACHE`` or ``~/.cache/augrl``."""
    return Path(os.environ.get("AUGRL_CACHE") or Path.home() / ".cache" / "augrl").expanduser()


def key_hash(key: dict) -> str:
    """A short stable digest of a JSON-serialisable key."""
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def slug(text: str) -> str:
    """A file-name-safe short form of a model or task name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text).rstrip("/").split("/")[-1])[:40] or "x"


# ----------------------------------------------------------------------------- fingerprints


def texts_fingerprint(texts: Iterable[object], labels: Iterable[object] | None = None) -> str:
    """A digest of a sequence of texts (str, or tuples of str for pairs) and, optionally, labels.

    Order matters: the same texts in another order are another training set for a seeded build.
    """
    h = hashlib.sha1()
    for text in texts:
        h.update(json.dumps(text, ensure_ascii=False).encode())
        h.update(b"\x00")
    if labels is not None:
        h.update(b"\x01labels")
        for label in labels:
            h.update(json.dumps(label.item() if hasattr(label, "item") else label).encode())
            h.update(b"\x00")
    return h.hexdigest()[:16]


def dataset_fingerprint(dataset, text_fields: Sequence[str], with_labels: bool = True) -> str | None:
    """:func:`texts_fingerprint` of a ``datasets.Dataset``'s text columns (and ``label``)."""
    if dataset is None:
        return None
    columns = [list(dataset[f]) for f in text_fields]
    texts = columns[0] if len(columns) == 1 else list(zip(*columns))
    labels = list(dataset["label"]) if with_labels and "label" in dataset.column_names else None
    return texts_fingerprint(texts, labels)


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_fingerprint(path: str | Path) -> str:
    """The content digest of a file, computed once per process for a given size and mtime."""
    st = os.stat(path)
    return _file_digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def code_fingerprint(*modules: str) -> str:
    """A digest of the source files of ``modules`` (dotted names; a package: every ``.py`` file
    under it), so an artifact made by code enters its key by that code's content."""
    import importlib.util

    h = hashlib.sha1()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"no module {name!r} to fingerprint")
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for f in files:
            h.update(str(f.relative_to(origin.parent)).encode())
            h.update(file_fingerprint(f).encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- entries


def entry_dir(kind: str, name: str, key: dict) -> Path:
    """Where the entry for ``key`` lives (whether or not it exists yet)."""
    return cache_root() / kind / f"{slug(name)}-{key_hash({'format': FORMAT_VERSION, **key})}"


def _file_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != META_FILE}


def entry_problem(directory: str | Path) -> str | None:
    """Why ``directory`` is not a complete entry (None when it is one)."""
    directory = Path(directory)
    path = directory / META_FILE
    if not path.is_file():
        return f"{META_FILE} is missing"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{META_FILE} is unreadable ({err})"
    for rel, size in (meta.get("files") or {}).items():
        f = directory / rel
        if not f.is_file():
            return f"{rel} is missing"
        actual = f.stat().st_size
        if actual != size:
            return f"{rel} has {actual} bytes, {size} expected (cut short?)"
    return None


def read_meta(directory: str | Path) -> dict | None:
    """The metadata of a complete, verified entry, or None."""
    if entry_problem(directory) is not None:
        return None
    return json.loads((Path(directory) / META_FILE).read_text())


@contextlib.contextmanager
def entry_lock(final: Path, say: Callable[[str], None]) -> Iterator[None]:
    """Hold the exclusive build lock of the entry ``final`` (waiting for another builder)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"augrl cache: another process is building {final}; waiting for it")
            start = time.perf_counter()
            fcntl.flock(f, fcntl.LOCK_EX)
            say(f"augrl cache: waited {time.perf_counter() - start:.0f} s for {final.name}")
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cached_build(kind: str, name: str, key: dict, build: Callable[[Path], dict],
                 say: Callable[[str], None] = _stderr) -> tuple[Path, dict]:
    """Return the entry for ``key``, building it first if it is missing or broken.

    Args:
        kind: sub-folder of the cache root (``teacher``, ``mlm``, ``cbert``, ``pos-vocab``...).
        name: readable part of the folder name.
        key: everything that decides the artifact (content fingerprints and settings); a change
            of any value builds a new entry.
        build: ``build(tmp_dir) -> metadata``: writes the artifact into ``tmp_dir``.
        say: where messages go (waiting for another builder, a broken entry rebuilt).

    Returns:
        The entry's folder and its metadata (``{"key": key, **metadata, "files": sizes}``).
    """
    final = entry_dir(kind, name, key)
    meta = read_meta(final)
    if meta is not None:
        return final, meta
    with entry_lock(final, say):
        meta = read_meta(final)
        if meta is not None:  # built by the process we waited for
            return final, meta
        if final.exists():
            say(f"augrl cache: {final} is incomplete or corrupt ({entry_problem(final)}); building it again")
            shutil.rmtree(final, ignore_errors=True)
        for leftover in final.parent.glob(f".{final.name}-*"):  # temp folders of killed builds
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            meta = {"key": key, "format": FORMAT_VERSION, **build(tmp)}
            meta["files"] = _file_sizes(tmp)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final, meta
