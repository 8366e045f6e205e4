"""The domain-adapted masked LM that contextual replacement and CBERT sample words from.

No masked-LM head ships with the offline encoder (all-MiniLM-L6-v2 is a sentence encoder), so
one is built: ``BertForMaskedLM`` over the encoder's weights, its decoder tied to the word
embeddings and its transform layer new. It is then adapted on the task's unlabeled text (target
train texts plus the source pool; never validation or test text) with every weight trained: a
few hundred steps recover a usable fill-mask, training only the head does not.

The adapted model is cached on disk (:mod:`augrl.artifacts`, kind ``mlm``), keyed by the
encoder, the task's data and every setting of :class:`MLMConfig`; the cache metadata records
the masked-token accuracy on held-out text (source texts not trained on) before and after
adaptation. A hub name or folder of a real MLM (one with a head, e.g. ``bert-base-uncased``)
is used as it is, unless adaptation is asked for.

    mlm = load_mlm("minilm", task=task)           # adapts once, then loads from the cache
    mlm.info["heldout_accuracy"]
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from augrl.artifacts import cached_build, slug
from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.models import loading, model_key, quiet_transformers, resolve_model
from augrl.runtime import select_device

from .corpus import task_corpus, task_key

MLM_ARCH_HINTS = ("ForMaskedLM", "ForPreTraining", "ForMaskedLMWithHeads")


@dataclass
class MLMConfig(ConfigMixin):
    """Settings of masked-LM adaptation (all part of the cache key).

    Attributes:
        steps: optimiser steps (a few hundred suffice for a usable fill-mask).
        batch_size: texts per step.
        lr: peak learning rate (linear warm-up over ``warmup_ratio`` of the steps, then decay).
        mask_prob: fraction of word pieces selected for prediction (BERT's 80/10/10 scheme).
        max_length: word pieces per text, special tokens included.
        max_texts: at most this many training texts (all target texts, then sampled source).
        heldout: source texts kept out of training to measure masked-token accuracy.
        seed: seeds the sample, the masks and the weights of the new head.
    """

    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-4
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    mask_prob: float = 0.15
    max_length: int = 64
    max_texts: int = 20000
    heldout: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_length"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"MLM {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ConfigError(f"MLM mask_prob must be in (0, 1), got {self.mask_prob}")


@dataclass
class MaskedLM:
    """A masked LM ready for batched fill-in.

    Attributes:
        model: a ``*ForMaskedLM`` model in eval mode on ``device``.
        tokenizer: its tokenizer.
        path: the folder it was loaded from.
        info: cache metadata (held-out accuracy, settings) when it was adapted, else ``{}``.
    """

    model: nn.Module
    tokenizer: object
    path: str
    info: dict
    device: torch.device

    @property
    def max_length(self) -> int:
        limit = getattr(self.model.config, "max_position_embeddings", 512)
        return int(min(limit, getattr(self.tokenizer, "model_max_length", limit) or limit, 512))

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states (B, L, H) of the encoder under the MLM."""
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state

    def head(self, states: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits (M, V) of hidden states (M, H): the LM head on chosen positions only."""
        return lm_head(self.model)(states)

    def head_over(self, states: torch.Tensor, vocabulary: torch.Tensor) -> torch.Tensor:
        """Logits (M, K) of hidden states (M, H) over the token ids ``vocabulary`` (K,) only.

        The head's transform runs as usual and the vocabulary projection multiplies by the
        decoder's rows of those tokens alone, so a K-token vocabulary costs K / V of the
        projection. The rows are gathered on every call: the weights may be training (L2A's G).
        """
        parts = head_parts(self.model)
        if parts is None:
            return self.head(states)[:, vocabulary]
        transform, decoder = parts
        bias = None if decoder.bias is None else decoder.bias[vocabulary]
        return nn.functional.linear(transform(states), decoder.weight[vocabulary], bias)

    def masked_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                      token_type_ids: torch.Tensor | None = None,
                      vocabulary: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (M, V) at the (row, column) ``positions`` (M, 2) of one padded batch; (M, K) over the
        token ids ``vocabulary`` (K,) when it is given (:meth:`head_over`)."""
        states = self.hidden(input_ids, attention_mask, token_type_ids)
        picked = states[positions[:, 0], positions[:, 1]]
        return self.head(picked) if vocabulary is None else self.head_over(picked, vocabulary)


def lm_head(model: nn.Module) -> nn.Module:
    """The module mapping hidden states to vocabulary logits (BERT: ``cls``; RoBERTa: ``lm_head``)."""
    for name in ("cls", "lm_head"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    raise ConfigError(f"{type(model).__name__} has no recognised masked-LM head (cls or lm_head); "
                      "use a BERT- or RoBERTa-family masked LM")


def head_parts(model: nn.Module):
    """The LM head as (transform, decoder): ``transform`` maps hidden states (M, H) to (M, H) and
    the ``nn.Linear`` ``decoder`` projects them onto the vocabulary; ``None`` for an unknown head."""
    bert = getattr(getattr(model, "cls", None), "predictions", None)
    if bert is not None and isinstance(getattr(bert, "decoder", None), nn.Linear):
        return bert.transform, bert.decoder
    roberta = getattr(model, "lm_head", None)
    if roberta is not None and all(isinstance(getattr(roberta, n, None), nn.Module)
                                   for n in ("dense", "layer_norm", "decoder")):
        def transform(x: torch.Tensor) -> torch.Tensor:
            return roberta.layer_norm(nn.functional.gelu(roberta.dense(x)))

        return transform, roberta.decoder
    return None


def has_mlm_head(path: str) -> bool:
    """Whether a model folder or hub name carries trained masked-LM head weights."""
    folder = Path(path)
    config_file = folder / "config.json"
    if folder.is_dir():
        if not config_file.is_file():
            return False
        archs = json.loads(config_file.read_text()).get("architectures") or []
        if any(h in a for a in archs for h in MLM_ARCH_HINTS):
            return True
        weights = folder / "model.safetensors"
        if weights.is_file():
            from safetensors import safe_open

            with safe_open(str(weights), "pt") as f:
                return any(k.startswith(("cls.predictions.transform", "lm_head.")) for k in f.keys())
        return False
    try:  # a hub name: trust its config
        from transformers import AutoConfig

        archs = AutoConfig.from_pretrained(path).architectures or []
    except OSError:
        return False
    return any(h in a for a in archs for h in MLM_ARCH_HINTS)


def build_mlm_from_encoder(name_or_path: str = "minilm", seed: int = 0) -> tuple[nn.Module, object]:
    """``BertForMaskedLM`` over an encoder's weights: decoder tied to the word embeddings, new transform.

    Returns:
        The model (train mode) and the encoder's tokenizer.
    """
    from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM
    from transformers.utils import logging as hf_logging

    quiet_transformers()
    path = resolve_model(name_or_path)
    with loading(name_or_path):
        config = AutoConfig.from_pretrained(path)
    if config.model_type != "bert":
        raise ConfigError(f"building a masked LM from an encoder is implemented for BERT models, not "
                          f"{config.model_type!r}; pass a masked LM with its head instead")
    config.tie_word_embeddings = True
    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialised head weights": expected here
    try:
        with loading(name_or_path):
            model = BertForMaskedLM.from_pretrained(path, config=config)
            tokenizer = AutoTokenizer.from_pretrained(path)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.tie_weights()
    if model.cls.predictions.decoder.weight.data_ptr() != model.bert.embeddings.word_embeddings.weight.data_ptr():
        raise RuntimeError("the MLM decoder is not tied to the word embeddings")
    return model, tokenizer


# ---------------------------------------------------------------------------- masking and training


def tokenize_texts(tokenizer, texts: Sequence[str | tuple[str, str]], max_length: int) -> list[list[int]]:
    """Token ids (with special tokens) of each text or (a, b) pair, truncated to ``max_length``."""
    if not texts:
        return []
    if isinstance(texts[0], (tuple, list)):
        return tokenizer([a for a, _ in texts], [b for _, b in texts], truncation=True,
                         max_length=max_length)["input_ids"]
    return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def mask_tokens(ids: list[list[int]], tokenizer, mask_prob: float, rng: np.random.Generator,
                all_mask: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad a batch and choose prediction targets BERT's way.

    ``mask_prob`` of the non-special tokens (at least one per text) become targets; of those
    80% are replaced by ``[MASK]``, 10% by a random token, 10% kept (all ``[MASK]`` with
    ``all_mask``, used for evaluation).

    Returns:
        ``input_ids``, ``attention_mask`` and ``labels`` (-100 where nothing is predicted), (B, L).
    """
    length = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id or 0
    special = set(tokenizer.all_special_ids)
    input_ids = torch.full((len(ids), length), pad, dtype=torch.long)
    attention = torch.zeros((len(ids), length), dtype=torch.long)
    labels = torch.full((len(ids), length), -100, dtype=torch.long)
    vocab = len(tokenizer)
    for row, seq in enumerate(ids):
        input_ids[row, :len(seq)] = torch.tensor(seq)
        attention[row, :len(seq)] = 1
        candidates = [i for i, t in enumerate(seq) if t not in special]
        if not candidates:
            continue
        k = max(1, int(round(mask_prob * len(candidates))))
        chosen = rng.choice(candidates, size=min(k, len(candidates)), replace=False)
        for pos in chosen:
            labels[row, pos] = seq[pos]
            u = 0.0 if all_mask else rng.random()
            if u < 0.8:
                input_ids[row, pos] = tokenizer.mask_token_id
            elif u < 0.9:
                input_ids[row, pos] = int(rng.integers(vocab))
    return input_ids, attention, labels


def _mlm_loss(model: nn.Module, input_ids, attention, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy at the target positions only (the LM head runs on those positions alone)."""
    states = model.base_model(input_ids=input_ids, attention_mask=attention).last_hidden_state
    where = labels != -100
    logits = lm_head(model)(states[where])
    targets = labels[where]
    return nn.functional.cross_entropy(logits, targets), logits, targets


@torch.no_grad()
def masked_token_accuracy(model: nn.Module, tokenizer, texts: Sequence[str], mask_prob: float = 0.15,
                          max_length: int = 64, seed: int = 0, batch_size: int = 64,
                          device: torch.device | str = "cpu") -> dict[str, float]:
    """Top-1 accuracy and mean loss of filling ``[MASK]`` at ``mask_prob`` of the tokens of ``texts``."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    ids = [x for x in tokenize_texts(tokenizer, texts, max_length) if len(x) > 2]
    correct, total, loss_sum = 0, 0, 0.0
    for start in range(0, len(ids), batch_size):
        batch = mask_tokens(ids[start:start + batch_size], tokenizer, mask_prob, rng, all_mask=True)
        input_ids, attention, labels = (t.to(device) for t in batch)
        loss, logits, targets = _mlm_loss(model, input_ids, attention, labels)
        correct += int((logits.argmax(-1) == targets).sum())
        total += int(targets.numel())
        loss_sum += float(loss) * int(targets.numel())
    model.train(was_training)
    return {"accuracy": correct / max(1, total), "loss": loss_sum / max(1, total), "tokens": total}


def train_mlm(model: nn.Module, tokenizer, texts: Sequence[str], cfg: MLMConfig, device: torch.device | str = "cpu",
              progress: bool = True, token_type_ids_of=None, desc: str = "mlm") -> dict[str, float]:
    """Masked-LM training of all weights of ``model`` on ``texts`` for ``cfg.steps`` steps.

    Args:
        token_type_ids_of: optional ``f(indices, input_ids) -> token_type_ids`` (CBERT's label
            embeddings); default: the model's own (zeros).

    Returns:
        Mean loss of the last tenth of the steps, steps and seconds.
    """
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    if not texts:
        raise ConfigError("no text to train the masked LM on")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    ids = tokenize_texts(tokenizer, texts, cfg.max_length)
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * cfg.steps), cfg.steps)
    losses: list[float] = []
    start = time.perf_counter()
    order: list[int] = []
    bar = tqdm(total=cfg.steps, desc=desc, unit="step", disable=not progress, file=sys.stderr, leave=False)
    for _step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            order += list(rng.permutation(len(ids)))
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        input_ids, attention, labels = mask_tokens([ids[i] for i in idx], tokenizer, cfg.mask_prob, rng)
        input_ids, attention, labels = input_ids.to(device), attention.to(device), labels.to(device)
        kwargs = {}
        if token_type_ids_of is not None:
            kwargs["token_type_ids"] = token_type_ids_of(idx, input_ids).to(device)
        states = model.base_model(input_ids=input_ids, attention_mask=attention, **kwargs).last_hidden_state
        where = labels != -100
        loss = nn.functional.cross_entropy(lm_head(model)(states[where]), labels[where])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return {"final_loss": float(np.mean(tail)), "first_loss": losses[0], "steps": len(losses),
            "seconds": round(time.perf_counter() - start, 1)}


def split_heldout(target: list[str], source: list[str], heldout: int, seed: int) -> tuple[list[str], list[str]]:
    """Training texts and held-out texts: held-out ones come from the source pool when it has
    enough (target texts are scarce and all kept for training), else from everything."""
    rng = np.random.default_rng(seed + 1)
    pool, keep_first = (source, target) if len(source) >= 2 * heldout else (target + source, [])
    k = min(heldout, len(pool) // 5)
    chosen = set(rng.permutation(len(pool))[:k].tolist())
    held = [t for i, t in enumerate(pool) if i in chosen]
    train = keep_first + [t for i, t in enumerate(pool) if i not in chosen]
    return train, held


# ---------------------------------------------------------------------------- loading


def adapt_to_task(name_or_path: str, task, cfg: MLMConfig | None = None, device: torch.device | str = "cpu",
                  progress: bool = True) -> tuple[Path, dict]:
    """Build the MLM from ``name_or_path``, adapt it on ``task``'s train and source text, cache it.

    Returns:
        The cache folder (loadable with ``from_pretrained``) and its metadata.
    """
    cfg = cfg or MLMConfig()
    key = {"kind": "domain-adapted MLM", "encoder": model_key(name_or_path), "data": task_key(task),
           "config": cfg.to_dict()}

    def build(folder: Path) -> dict:
        target, source = task_corpus(task, cfg.max_texts + cfg.heldout, seed=cfg.seed)
        train_texts, held = split_heldout(target, source, cfg.heldout, cfg.seed)
        model, tokenizer = build_mlm_from_encoder(name_or_path, seed=cfg.seed)
        before = masked_token_accuracy(model, tokenizer, held, cfg.mask_prob, cfg.max_length, cfg.seed, device=device)
        stats = train_mlm(model, tokenizer, train_texts, cfg, device=device, progress=progress,
                          desc=f"adapting MLM ({task.spec.name})")
        after = masked_token_accuracy(model, tokenizer, held, cfg.mask_prob, cfg.max_length, cfg.seed, device=device)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return {"encoder": str(name_or_path), "task": task.spec.name, "train_texts": len(train_texts),
                "target_texts": len(target), "heldout_texts": len(held), "heldout_accuracy": after["accuracy"],
                "heldout_loss": after["loss"], "heldout_tokens": after["tokens"],
                "heldout_accuracy_before": before["accuracy"], "heldout_loss_before": before["loss"], **stats}

    return cached_build("mlm", f"{slug(name_or_path)}-{task.spec.name}", key, build)


def load_masked_lm(path: str, device: torch.device | str = "cpu", info: dict | None = None) -> MaskedLM:
    """Load a masked LM (with its head) and its tokenizer from a folder or hub name."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    quiet_transformers()
    with loading(path):
        model = AutoModelForMaskedLM.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.mask_token_id is None:
        raise ConfigError(f"the tokenizer of {path!r} has no mask token")
    device = torch.device(device)
    return MaskedLM(model.eval().to(device), tokenizer, str(path), dict(info or {}), device)


def load_mlm(name_or_path: str = "minilm", task=None, adapt: bool | None = None, cfg: MLMConfig | None = None,
             device: str = "auto", progress: bool = True) -> MaskedLM:
    """The masked LM an augmenter samples from.

    Args:
        name_or_path: ``minilm`` (default), a hub name or a folder: an encoder (a head is built
            and adapted) or a real masked LM (used as it is).
        task: the task whose train and source text adapt the MLM.
        adapt: adapt on ``task``; default: only when the model has no trained head.
        cfg: adaptation settings.
        device: ``auto``, ``cpu``, ``cuda``...
    """
    dev = select_device(device)
    path = resolve_model(name_or_path)
    head = has_mlm_head(path)
    if adapt is None:
        adapt = not head
    if not adapt:
        if not head:
            raise ConfigError(f"{name_or_path!r} has no trained masked-LM head; adapt it on a task "
                              "(fit the augmenter on a task) or pass a masked LM such as bert-base-uncased")
        return load_masked_lm(path, dev)
    if task is None:
        raise ConfigError(f"adapting the masked LM of {name_or_path!r} needs a task: call fit(task) first")
    folder, meta = adapt_to_task(name_or_path, task, cfg, device=dev, progress=progress)
    return load_masked_lm(str(folder), dev, info={**meta, "cache_dir": str(folder)})


def describe(mlm: MaskedLM) -> dict:
    """What to record about the MLM an augmenter used."""
    keep = ("encoder", "task", "heldout_accuracy", "heldout_accuracy_before", "train_texts", "examples",
            "base_heldout_accuracy", "steps", "cache_dir")
    return {"path": mlm.path, **{k: mlm.info[k] for k in keep if k in mlm.info}}

