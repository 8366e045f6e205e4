"""Teacher outputs through the artifact store: computed once per (teacher, examples, layers).

Every path that distils (the ``kd`` row, augmented rows, the environment's world, the policy
and L2A final students, the KD trainers) asks :func:`teacher_outputs` instead of running the
teacher itself. The key is content (in the manner of :mod:`augrl.artifacts`): a digest of the
teacher's weights, of the examples' token ids, the layers kept per kind, the storage dtype, the
extra outputs asked for by name, and the device type the teacher ran on. So

* within a process, the rows of one seed that distil from the same examples share one
  :class:`~augrl.kd.TeacherCache` (an in-memory memo of the most recent entries, up to
  :data:`MEMO_BYTES` in all);
* across processes (a resumed bench, Ray trials of one seed), entries of at most
  ``$AUGRL_OUTPUTS_DISK_MB`` MiB (default 64: every logits-only cache, and the layer caches
  of small sets) are kept on disk, kind ``teacher-outputs``; larger ones (a 3,000-candidate
  pool's mapped MPNet layers take ~280 MiB) are recomputed instead of filling the disk.

A student trained on target rows plus some candidates reads the rows it needs from the cache
of the target rows plus the *whole* pool (:meth:`TeacherCache.select`), so rows that keep
different subsets of one pool still share one pass of the teacher.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections import OrderedDict
from typing import Callable

import torch

from augrl.artifacts import cached_build, entry_dir, read_meta
from augrl.batching import Encoded
from augrl.kd.cache import TeacherCache
from augrl.kd.outputs import KINDS, Needs
from augrl.runtime import stage

KIND = "teacher-outputs"
FILE = "outputs.pt"
#: bytes of caches held in memory per process (the most recently used entries)
MEMO_BYTES = 1 << 30
_memo: "OrderedDict[str, TeacherCache]" = OrderedDict()
# per live model (a collected model's entry goes with it, so a new model at its address is hashed)
_fingerprints: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[int, str]]" = weakref.WeakKeyDictionary()


def disk_limit_bytes() -> int:
    """Largest cache written to disk: ``$AUGRL_OUTPUTS_DISK_MB`` MiB (default 64; 0: never)."""
    return int(float(os.environ.get("AUGRL_OUTPUTS_DISK_MB", "64")) * (1 << 20))


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A digest of ``model``'s parameters and buffers (computed again only after an in-place
    change of one of them: torch's version counters)."""
    tensors = list(model.state_dict().items())
    version = sum(t._version for _, t in tensors)
    known = _fingerprints.get(model)
    if known is not None and known[0] == version:
        return known[1]
    h = hashlib.sha1()
    for name, t in tensors:
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digest = h.hexdigest()[:16]
    _fingerprints[model] = (version, digest)
    return digest


def examples_fingerprint(data: Encoded) -> str:
    """A digest of the token ids (and segment ids) of ``data``, in order."""
    h = hashlib.sha1()
    h.update(json.dumps(data.input_ids).encode())
    if data.token_type_ids is not None:
        h.update(b"\x01")
        h.update(json.dumps(data.token_type_ids).encode())
    return h.hexdigest()[:16]


def outputs_key(teacher: torch.nn.Module, data: Encoded, needs: Needs, dtype: str, extras: str | None,
                device: torch.device | str) -> dict:
    """Everything that decides a teacher cache."""
    return {"teacher": weights_fingerprint(teacher), "examples": examples_fingerprint(data), "n": len(data),
            "needs": {k: sorted(getattr(needs, k)) for k in KINDS}, "dtype": str(dtype), "extras": extras,
            "device_type": torch.device(device).type}


def teacher_outputs(teacher: torch.nn.Module, data: Encoded, needs: Needs | None = None, batch_size: int = 128,
                    device: torch.device | str = "cpu", dtype: str = "float16",
                    extras: tuple[str, Callable, Needs] | None = None) -> TeacherCache:
    """:meth:`TeacherCache.from_model` over ``data``, or the stored result of the same call.

    Args:
        teacher, data, needs, batch_size, device, dtype: as :meth:`TeacherCache.from_model`.
        extras: ``(name, extras_fn, extras_needs)``: extra per-example outputs; ``name`` stands
            for ``extras_fn`` in the key, so one name must always mean one function.
    """
    with stage("teacher_outputs"):
        return _teacher_outputs(teacher, data, needs or Needs(), batch_size, device, dtype, extras)


def _teacher_outputs(teacher, data: Encoded, needs: Needs, batch_size: int, device, dtype: str, extras) -> TeacherCache:
    name, fn, extra_needs = extras if extras is not None else (None, None, None)
    key = outputs_key(teacher, data, needs, dtype, name, device)
    digest = json.dumps(key, sort_keys=True)
    if digest in _memo:
        _memo.move_to_end(digest)
        return _memo[digest]
    folder = entry_dir(KIND, f"n{len(data)}", key)
    if read_meta(folder) is not None:
        cache = TeacherCache.load(folder / FILE)
    else:
        cache = TeacherCache.from_model(teacher, data, needs, batch_size, device, dtype, extras_fn=fn,
                                        extras_needs=extra_needs)
        if cache.nbytes <= disk_limit_bytes():
            def build(tmp):
                cache.save(tmp / FILE)
                return {"bytes": cache.nbytes}

            cached_build(KIND, f"n{len(data)}", key, build)
    _memo[digest] = cache
    while len(_memo) > 1 and sum(c.nbytes for c in _memo.values()) > MEMO_BYTES:
        _memo.popitem(last=False)
    return cache


def clear_memo() -> None:
    """Forget the in-memory entries (tests; a process that is done with a seed)."""
    _memo.clear()
