"""CBERT: conditional BERT contextual augmentation (Wu et al., 2019).

The label conditions the masked LM through label embeddings that take the place of BERT's
segment (token type) embeddings: every token of an example carries its label as token type.
The label embeddings start from the segment embeddings (labels beyond the segment vocabulary
copy row 0). Starting from the domain-adapted MLM (:mod:`augrl.baselines.mlm`), the model is
fine-tuned with the masked-LM objective on the labelled target training examples (plus a
sample of the labelled source pool with ``use_source=True``), then words are masked and replaced
by label-conditioned samples exactly as in :mod:`augrl.baselines.contextual` (batched).

Pair tasks are supported: a pair is fed as ``[CLS] a [SEP] b [SEP]``, every token typed by
the pair's label, in fine-tuning and in augmentation. Regression tasks have no classes to
condition on and are refused. The fine-tuned model is cached on disk (kind ``cbert``), keyed by
the MLM it starts from, the task's data and the settings.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from augrl.errors import ConfigError

from augrl.artifacts import cached_build, slug
from .contextual import ContextualAugmenter
from .corpus import task_key
from .mlm import MaskedLM, MLMConfig, load_masked_lm, load_mlm, train_mlm

CONFIG_FLAG = "augrl_cbert_num_labels"


def set_label_embeddings(model: nn.Module, num_labels: int) -> None:
    """Make the token-type embedding table hold ``num_labels`` label embeddings."""
    embeddings = model.base_model.embeddings
    table = getattr(embeddings, "token_type_embeddings", None)
    if table is None:
        raise ConfigError(f"CBERT needs a model with token type (segment) embeddings; {type(model).__name__} has none")
    if table.num_embeddings != num_labels:
        new = nn.Embedding(num_labels, table.embedding_dim).to(table.weight.device)
        with torch.no_grad():
            for label in range(num_labels):
                new.weight[label] = table.weight[label if label < table.num_embeddings else 0]
        embeddings.token_type_embeddings = new
        model.config.type_vocab_size = num_labels
    # BertEmbeddings keeps a zero ``token_type_ids`` buffer sized by the position table: still valid
    setattr(model.config, CONFIG_FLAG, num_labels)


def _examples(dataset, fields: tuple[str, ...]) -> tuple[list, list[int]]:
    columns = [list(dataset[f]) for f in fields]
    texts = columns[0] if len(fields) == 1 else list(zip(columns[0], columns[1]))
    return texts, [int(x) for x in dataset["label"]]


class CBERTAugmenter(ContextualAugmenter):
    """Label-conditioned masked-LM replacement (see the module docstring).

    Args:
        p: fraction of words replaced per variant (Wu et al. mask 15%).
        use_source: fine-tune on the labelled source pool too (a seeded sample of
            ``source_examples``), not only on the target training set.
        epochs: fine-tuning epochs over the examples (Wu et al.: 10), at most ``max_steps`` steps.
        lr, finetune_batch: fine-tuning learning rate and batch size.
        Other arguments: as :class:`~augrl.baselines.contextual.ContextualAugmenter`.
    """

    name = "cbert"
    uses_labels = True

    def __init__(self, mlm: str | MaskedLM = "minilm", p: float = 0.15, min_words: int = 1, max_words: int = 10,
                 top_k: int = 100, temperature: float = 1.0, use_source: bool = False, source_examples: int = 5000,
                 epochs: int = 10, max_steps: int = 300, lr: float = 5e-5, finetune_batch: int = 16,
                 stop_words: list[str] | None = None, adapt: bool | None = None, mlm_steps: int | None = None,
                 mlm_config: dict | None = None, max_length: int = 128, forward_batch: int = 128,
                 device: str = "auto", progress: bool = False, side: str = "both", seed: int | None = None,
                 batch_size: int = 64) -> None:
        super().__init__(mlm=mlm, p=p, min_words=min_words, max_words=max_words, top_k=top_k,
                         temperature=temperature, stop_words=stop_words, adapt=adapt, mlm_steps=mlm_steps,
                         mlm_config=mlm_config, max_length=max_length, forward_batch=forward_batch, device=device,
                         progress=progress,
                         side=side, seed=seed, batch_size=batch_size)
        if int(epochs) < 1 or int(max_steps) < 1 or int(finetune_batch) < 1 or float(lr) <= 0:
            raise ConfigError("CBERT epochs, max_steps, finetune_batch must be >= 1 and lr > 0")
        self.use_source, self.source_examples = bool(use_source), int(source_examples)
        self.epochs, self.max_steps = int(epochs), int(max_steps)
        self.lr, self.finetune_batch = float(lr), int(finetune_batch)
        self.label_names: tuple[str, ...] = ()
        self.num_labels: int | None = None
        if isinstance(mlm, MaskedLM) and getattr(mlm.model.config, CONFIG_FLAG, None):
            self.num_labels = int(getattr(mlm.model.config, CONFIG_FLAG))

    def params(self):
        return {**super().params(), "use_source": self.use_source, "source_examples": self.source_examples,
                "epochs": self.epochs, "max_steps": self.max_steps, "lr": self.lr,
                "finetune_batch": self.finetune_batch}

    # ------------------------------------------------------------------ fine-tuning

    def fit(self, task):
        """Adapt (or load) the MLM, then fine-tune it with label embeddings on the task (cached)."""
        spec = task.spec
        if spec.is_regression:
            raise ConfigError(f"CBERT conditions on class labels; task {spec.name!r} is a regression task")
        base = load_mlm(self.mlm_name, task=task, adapt=self.adapt, cfg=self.mlm_config, device=self.device,
                        progress=self.progress)
        texts, labels = _examples(task.train, spec.text_fields)
        if self.use_source and task.source is not None and len(task.source):
            src_texts, src_labels = _examples(task.source, spec.text_fields)
            keep = np.random.default_rng(0).permutation(len(src_texts))[:self.source_examples]
            texts += [src_texts[i] for i in sorted(keep)]
            labels += [src_labels[i] for i in sorted(keep)]
        steps = min(self.max_steps, self.epochs * math.ceil(len(texts) / self.finetune_batch))
        cfg = MLMConfig(steps=steps, batch_size=self.finetune_batch, lr=self.lr, warmup_ratio=0.1,
                        mask_prob=0.15, max_length=min(self.max_length, base.max_length), seed=0)
        key = {"kind": "cbert", "base": base.path, "base_key": base.info.get("key"), "data": task_key(task),
               "num_labels": spec.num_labels, "use_source": self.use_source, "source_examples": self.source_examples,
               "config": cfg.to_dict()}

        def build(folder: Path) -> dict:
            model = copy.deepcopy(base.model).train()
            set_label_embeddings(model, spec.num_labels)
            label_tensor = torch.tensor(labels)

            def types_of(indices, input_ids):
                return label_tensor[torch.as_tensor(indices)].unsqueeze(1).expand_as(input_ids).contiguous()

            stats = train_mlm(model, base.tokenizer, texts, cfg, device=base.device, progress=self.progress,
                              token_type_ids_of=types_of, desc=f"CBERT fine-tuning ({spec.name})")
            model.save_pretrained(folder)
            base.tokenizer.save_pretrained(folder)
            return {"task": spec.name, "examples": len(texts), "labels": list(spec.label_names), **stats,
                    "base_heldout_accuracy": base.info.get("heldout_accuracy")}

        folder, meta = cached_build("cbert", f"{slug(self.mlm_name)}-{spec.name}", key, build)
        self.set_mlm(load_masked_lm(str(folder), base.device, info={**meta, "cache_dir": str(folder)}))
        self.num_labels = spec.num_labels
        self.label_names = tuple(spec.label_names)
        return self

    def masked_lm(self) -> MaskedLM:
        mlm = super().masked_lm()
        if self.num_labels is None:
            flag = getattr(mlm.model.config, CONFIG_FLAG, None)
            if not flag:
                raise ConfigError("cbert: the masked LM is not label-conditioned yet; call fit(task) first")
            self.num_labels = int(flag)
        return mlm

    # ------------------------------------------------------------------ label conditioning

    def _check_labels(self, labels, count):
        if labels is None:
            raise ConfigError("cbert conditions on labels: pass labels=[...] (one per text)")
        out = []
        for label in labels:
            if isinstance(label, str) and label in self.label_names:
                label = self.label_names.index(label)
            try:
                value = int(label)
            except (TypeError, ValueError):
                raise ConfigError(f"cbert: label {label!r} is not a class index or name") from None
            if not 0 <= value < int(self.num_labels or 0):
                raise ConfigError(f"cbert: label {label!r} is outside 0..{int(self.num_labels or 0) - 1}")
            out.append(value)
        return out

    def _type_ids(self, lengths, label):
        total = sum(lengths) + len(lengths) + 1
        return [int(label)] * total

