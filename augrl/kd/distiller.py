"""One optimisation step of a student under a weighted KD objective.

:class:`Distiller` is what every trainer and the augmentation environment call: it owns the
student's optimiser, the learned parts of the losses (the projections W of ``hidden_mse`` and
``embedding_mse``, Meta-KD's student domain head), the explicit layer map, and takes teacher
outputs from a :class:`~augrl.kd.cache.TeacherCache` (computed once per dataset), from a live
teacher model, or as ready :class:`~augrl.kd.outputs.Outputs`.

Where the learned loss modules live: in :attr:`Distiller.modules` (an ``nn.ModuleDict`` keyed
by loss name), outside the student, so the student's checkpoint stays a plain Hugging Face
model. They are in the same optimiser as the student and are saved beside it by
:meth:`Distiller.save_modules` (``kd_modules.pt``; the pipelines do this next to the student).

**Teacher and student of different families.** Before training, the distiller refuses what
cannot work, naming the loss: attention losses on a family whose attention is not recomputed
(DeBERTa), sizes a loss cannot bridge (per-head losses with different head counts, PKD with
different widths; hidden_mse's projection W bridges widths, e.g. 384 -> 768). A student of
another tokenizer reads its own ids (:func:`augrl.models.model_inputs`); logit losses work
for any pair, and for losses that read teacher layers the teacher's outputs are moved to the
student's tokens (:func:`~augrl.kd.outputs.to_student_tokens`), which needs the two
tokenisations to split each text into the same pieces: :meth:`Distiller.check_tokens` says
before training when they do not, with an example.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from augrl.errors import ConfigError
from augrl.kd.cache import TeacherCache
from augrl.kd.layer_map import LayerMap
from augrl.kd.losses import LossEntry, ModelSizes, get_loss, validate_objective
from augrl.kd.outputs import (KINDS, SUPPORTED, Needs, Outputs, attention_refusal, misaligned_rows, model_family,
                              model_outputs, to_student_tokens)
from augrl.models import hidden_size, layer_count, load_torch, model_vocab, save_torch, view_key

#: output kinds read from a model's self-attention (refused for families it is not recomputed for)
ATTENTION_KINDS = frozenset({"attentions", "attention_scores", "values"})

TeacherLike = "Outputs | TeacherCache | nn.Module | None"


def make_optimizer(params: Iterable[nn.Parameter], lr: float, weight_decay: float = 0.01,
                   total_steps: int | None = None, warmup_ratio: float = 0.1):
    """AdamW, with linear warm-up then linear decay to 0 over ``total_steps`` (constant learning
    rate when ``total_steps`` is None). Returns ``(optimizer, scheduler or None)``."""
    optimizer = torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay)
    if not total_steps:
        return optimizer, None
    warmup = max(1, int(warmup_ratio * total_steps))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _sizes(model) -> ModelSizes:
    """The family, hidden width and head count of a transformer (None where it has none)."""
    config = getattr(model, "config", None)
    if config is None or isinstance(config, dict):
        return ModelSizes()
    return ModelSizes(model_family(model), hidden_size(model), getattr(config, "num_attention_heads", None))


def _teacher_sizes(teacher, width: int | None) -> ModelSizes:
    """The teacher's sizes: from the model, or from what its cache recorded."""
    if isinstance(teacher, TeacherCache):
        sizes = ModelSizes(None, teacher.hidden_size, teacher.heads)
    elif isinstance(teacher, nn.Module):
        sizes = _sizes(teacher)
    else:
        sizes = ModelSizes()
    return replace(sizes, hidden=width or sizes.hidden)


class Distiller:
    """Owns a student's optimiser and applies a weighted sum of registry losses.

    Fine-tuning is the special case ``objective={"hard_ce": 1}`` with no teacher.

    Args:
        student: a classifier returning ``.logits`` (B, C); BERT-style when the objective reads
            layers.
        objective: loss name -> weight, e.g. ``{"attention_mse": 1, "hidden_mse": 1, "dark_ce": 1}``.
        loss_params: per-loss keyword arguments, e.g. ``{"dark_ce": {"temperature": 2}}``.
        lr, weight_decay: AdamW settings.
        total_steps, warmup_ratio: linear warm-up then linear decay to 0 over ``total_steps``
            (constant learning rate when ``total_steps`` is None).
        grad_clip: max gradient norm over everything trained (None: no clipping).
        device: where the student lives.
        layer_map: teacher -> student layers (a :class:`LayerMap`, ``"3:1,6:2"``...); default
            the uniform map. Only used when a loss reads layers.
        teacher: the teacher model or its cache, to read its layer count and width from
            (``teacher_layers`` / ``teacher_hidden_size`` override).
        extra_parameters: further parameters trained by the same optimiser and clipped with the
            student (e.g. the teacher in ``cotrain_loss_sum``).
    """

    def __init__(self, student: nn.Module, objective: dict[str, float],
                 loss_params: dict[str, dict] | None = None, lr: float = 1e-4, weight_decay: float = 0.01,
                 total_steps: int | None = None, warmup_ratio: float = 0.1, grad_clip: float | None = 1.0,
                 device: torch.device | str = "cpu", layer_map: LayerMap | str | None = None,
                 teacher: TeacherCache | nn.Module | None = None, teacher_layers: int | None = None,
                 teacher_hidden_size: int | None = None, extra_parameters: Iterable[nn.Parameter] = ()) -> None:
        self.objective = validate_objective(objective)
        self.loss_params = {k: dict(v) for k, v in (loss_params or {}).items() if k in self.objective}
        self.entries: dict[str, LossEntry] = {name: get_loss(name) for name in self.objective}
        self.needs_teacher = any(e.needs_teacher for e in self.entries.values())
        self.device = torch.device(device)
        self.student = student.to(self.device)
        self.grad_clip = grad_clip
        if isinstance(teacher, TeacherCache):
            teacher_layers = teacher_layers or teacher.num_layers
            teacher_hidden_size = teacher_hidden_size or teacher.hidden_size
        elif isinstance(teacher, nn.Module):
            teacher_layers = teacher_layers or layer_count(teacher)
            teacher_hidden_size = teacher_hidden_size or hidden_size(teacher)
        self.layer_map: LayerMap | None = None
        self._teacher_needs = self._student_needs = Needs()
        self._token_level: list[str] = []  # losses that compare teacher and student layers token by token
        self._student_vocab = model_vocab(student)
        self._teacher_vocab = model_vocab(teacher) if isinstance(teacher, nn.Module) else None
        layered = [n for n, e in self.entries.items() if e.needs]
        if layered:
            student_layers = layer_count(student)
            if student_layers is None:
                raise ConfigError(f"losses {layered} read transformer layers, but the student is a "
                                  f"{type(student).__name__}; use logit losses (logit_mse, dark_ce, hard_ce)")
            if layer_map is None and teacher_layers is None:
                raise ConfigError(f"losses {layered} need a layer map: give layer_map, or the teacher (or its "
                                  "layer count) so the uniform map can be built")
            self.layer_map = LayerMap.resolve(layer_map, teacher_layers, student_layers)
            for name in layered:
                pairs = self.entries[name].layer_pairs(self.layer_map, **self.loss_params.get(name, {}))
                self._teacher_needs |= Needs.of(**{k: [t for t, _ in v if t is not None] for k, v in pairs.items()})
                self._student_needs |= Needs.of(**{k: [s for _, s in v] for k, v in pairs.items()})
                if any(t is not None for v in pairs.values() for t, _ in v):
                    self._token_level.append(name)
            self._check_attention(student, teacher)
        self._check_sizes(_sizes(student), _teacher_sizes(teacher, teacher_hidden_size))
        self.modules = nn.ModuleDict()
        student_width = hidden_size(student)
        for name, entry in self.entries.items():
            if entry.module is not None:
                if student_width is None:
                    raise ConfigError(f"loss {name!r} learns a projection from the student's hidden states; "
                                      f"a {type(student).__name__} has none")
                self.modules[name] = entry.module(student_width, teacher_hidden_size or student_width,
                                                  **self.loss_params.get(name, {}))
        self.modules.to(self.device)
        self.extra_parameters = list(extra_parameters)
        self.optimizer, self.scheduler = make_optimizer(self.parameters(), lr, weight_decay, total_steps, warmup_ratio)
        self.steps = 0

    # ------------------------------------------------------------------ checks before training

    def _check_attention(self, student: nn.Module, teacher) -> None:
        """ConfigError when a loss reads the self-attention of a model whose family's attention
        is not recomputed (:func:`~augrl.kd.outputs.attention_refusal`)."""
        for name, entry in self.entries.items():
            if not entry.needs & ATTENTION_KINDS:
                continue
            for who, model in (("student", student), ("teacher", teacher)):
                refusal = attention_refusal(model) if isinstance(model, nn.Module) else None
                if refusal is not None:
                    raise ConfigError(
                        f"loss {name!r} reads the {who}'s attention maps or value vectors, which augrl recomputes "
                        f"for {SUPPORTED}; {refusal}. Drop {name!r} or use a {who} of a supported family; "
                        "hidden_mse, hidden_cos, embedding_mse and the logit losses work with any family")

    def _check_sizes(self, student: ModelSizes, teacher: ModelSizes) -> None:
        """ConfigError naming the sizes when a loss cannot compare this teacher and student."""
        for name, entry in self.entries.items():
            problem = entry.fits(student, teacher, **self.loss_params.get(name, {})) if entry.fits else None
            if problem is not None:
                raise ConfigError(f"loss {name!r} does not fit this teacher and student: {problem}")

    def _one_tokenisation_error(self) -> ConfigError:
        return ConfigError(
            f"the student reads another tokenizer's ids (vocabulary {self._student_vocab}) than the teacher "
            f"(vocabulary {self._teacher_vocab}), but the data holds the teacher's ids only. Encode it with "
            "augrl.models.load_tokenizers(teacher, student), a TokenizerPair that augrl.batching.encode turns into "
            "both tokenisations")

    def check_tokens(self, data) -> None:
        """Before training on ``data`` (an :class:`~augrl.batching.Encoded`): a ConfigError when
        the student reads another tokenizer's ids than the teacher and either ``data`` lacks the
        student's tokenisation, or a loss compares teacher and student token by token and some
        text is split into different pieces by the two (the error names the losses and shows
        one such text with its two tokenisations). Nothing to check with one tokenizer."""
        vocab = self._student_vocab
        view = getattr(data, "views", {}).get(vocab) if vocab is not None else None
        if view is None:
            if vocab is not None and self._teacher_vocab is not None and vocab != self._teacher_vocab:
                raise self._one_tokenisation_error()
            return
        bad = [i for i, p in enumerate(view.positions) if p is None]
        if self._token_level and bad:
            raise ConfigError(
                f"losses {self._token_level} compare the teacher's and the student's outputs token by token, but "
                f"their tokenizers split {len(bad)} of {len(view.positions)} texts into different pieces, e.g. "
                f"{view.problems[bad[0]]}. Use a student whose tokenizer has the teacher's pieces (MPNet and "
                "BERT/MiniLM share an uncased WordPiece vocabulary), or only losses on logits (dark_ce, logit_mse, "
                "hard_ce)")

    def _on_student_tokens(self, out: Outputs, batch: dict[str, torch.Tensor]) -> Outputs:
        """The teacher's outputs at the student's tokens when the student reads another
        tokenisation of the batch (token-level losses), else as they are."""
        vocab = self._student_vocab
        key = None if vocab is None else view_key("positions", vocab)
        if key is None or key not in batch:
            if vocab is not None and self._teacher_vocab is not None and vocab != self._teacher_vocab:
                raise self._one_tokenisation_error()
            return out
        if not self._token_level:
            return replace(out, mask=None)  # logits and per-example extras need no alignment
        positions, mask = batch[key], batch[view_key("attention_mask", vocab)]
        bad = misaligned_rows(positions, mask)
        if bad.any():
            rows = batch["index"][bad].tolist() if "index" in batch else bad.nonzero().flatten().tolist()
            raise ConfigError(
                f"losses {self._token_level} compare the teacher's and the student's outputs token by token, but "
                f"the two tokenizers split examples {rows} of this data into different pieces; "
                "Distiller.check_tokens(data) shows one before training. Use a student whose tokenizer has the "
                "teacher's pieces, or only losses on logits (dark_ce, logit_mse, hard_ce)")
        return to_student_tokens(out, positions, mask)

    # ------------------------------------------------------------------ what is needed

    @classmethod
    def from_train_config(cls, student: nn.Module, objective: dict[str, float], train, *,
                          total_steps: int | None, device: torch.device | str,
                          loss_params: dict[str, dict] | None = None, layer_map: LayerMap | str | None = None,
                          teacher: TeacherCache | nn.Module | None = None, **kwargs) -> "Distiller":
        """A distiller whose optimiser settings (``lr``, ``weight_decay``, ``warmup_ratio``,
        ``grad_clip``) come from ``train`` (an :class:`augrl.training.TrainConfig`): the one place
        they are unpacked. ``kwargs``: the other arguments of :class:`Distiller`."""
        return cls(student, objective, loss_params, lr=train.lr, weight_decay=train.weight_decay,
                   total_steps=total_steps, warmup_ratio=train.warmup_ratio, grad_clip=train.grad_clip,
                   device=device, layer_map=layer_map, teacher=teacher, **kwargs)

    def teacher_needs(self) -> Needs:
        """Teacher layers the objective reads, per kind: what a cache must hold."""
        return self._teacher_needs

    def student_needs(self) -> Needs:
        return self._student_needs

    def parameters(self) -> list[nn.Parameter]:
        """Everything this distiller trains: student, loss modules, extra parameters."""
        seen, out = set(), []
        for p in [*self.student.parameters(), *self.modules.parameters(), *self.extra_parameters]:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    # ------------------------------------------------------------------ forward

    def student_outputs(self, batch: dict[str, torch.Tensor]) -> Outputs:
        return model_outputs(self.student, batch, self._student_needs)

    def teacher_outputs(self, batch: dict[str, torch.Tensor], teacher: "TeacherLike") -> Outputs | None:
        """The teacher's outputs on ``batch`` on this device, floating tensors as float32; at the
        student's tokens when the student reads another tokenisation of the batch and the
        objective compares layers (:func:`~augrl.kd.outputs.to_student_tokens`).

        ``teacher``: a cache (looked up by ``batch["index"]``), a frozen model (run without
        gradients in eval mode), ready Outputs (used as given: gradients kept), or None.
        """
        if teacher is None:
            return None
        if isinstance(teacher, TeacherCache):
            missing = {k: sorted(set(getattr(self._teacher_needs, k)) - set(getattr(teacher.stored(), k)))
                       for k in KINDS}
            missing = {k: v for k, v in missing.items() if v}
            if missing:
                raise ValueError(f"the teacher cache lacks layers {missing} that the objective reads; build it with "
                                 "TeacherCache.from_model(teacher, data, needs=distiller.teacher_needs())")
            out = teacher[batch["index"]]
            if out.mask is not None and out.mask.shape[1] != batch["input_ids"].shape[1]:
                raise ValueError(f"cached teacher outputs are padded to {out.mask.shape[1]} tokens but the batch to "
                                 f"{batch['input_ids'].shape[1]}: was the cache built on this dataset?")
        elif isinstance(teacher, nn.Module):
            was_training = teacher.training
            teacher.eval()
            with torch.no_grad():
                out = model_outputs(teacher, batch, self._teacher_needs)
            teacher.train(was_training)
        else:
            out = teacher
        out = out.map(lambda t: t.to(self.device, dtype=torch.float32) if t.is_floating_point() else t.to(self.device))
        return self._on_student_tokens(out, batch)

    def losses(self, batch: dict[str, torch.Tensor], teacher: "TeacherLike" = None,
               weights: torch.Tensor | None = None, student_out: Outputs | None = None) -> dict[str, torch.Tensor]:
        """Each weighted term (unweighted values) and ``loss``, their weighted sum.

        Args:
            batch: from :meth:`augrl.batching.Encoded.batch`, on this device.
            teacher: see :meth:`teacher_outputs`.
            weights: optional (B,) per-example weights, passed to every loss.
            student_out: the student's outputs on ``batch`` (with their graph) when the caller
                has already run the forward pass with :meth:`student_outputs`; else it is run here.
        """
        if self.needs_teacher and teacher is None:
            raise ValueError(f"objective {sorted(self.objective)} needs teacher outputs, none given")
        teacher_out = self.teacher_outputs(batch, teacher)
        student = self.student_outputs(batch) if student_out is None else student_out
        terms = {}
        for name, entry in self.entries.items():
            params = dict(self.loss_params.get(name, {}))
            if entry.needs:
                params["layer_map"] = self.layer_map
            if name in self.modules:
                params["module"] = self.modules[name]
            if weights is not None:
                if not entry.weighted:
                    raise ConfigError(f"loss {name!r} takes no per-example weights (add a `weights` parameter)")
                params["weights"] = weights.to(self.device)
            terms[name] = entry.fn(student, teacher_out, batch["labels"], **params)
        terms["loss"] = sum(self.objective[n] * v for n, v in terms.items())
        return terms

    # ------------------------------------------------------------------ update

    def apply_gradients(self) -> None:
        """Clip, take one optimiser step and advance the schedule (gradients already computed)."""
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.steps += 1

    def step(self, batch: dict[str, torch.Tensor], teacher: "TeacherLike" = None,
             weights: torch.Tensor | None = None, student_out: Outputs | None = None) -> dict[str, float]:
        """Forward, backward and one optimiser step on ``batch``.

        Args:
            batch: from :meth:`augrl.batching.Encoded.batch` (needs ``index`` with a cache).
            teacher: the teacher's outputs on this batch, the cache to look them up in, or a
                frozen teacher model.
            weights: optional (B,) per-example loss weights.
            student_out: the student's outputs on ``batch`` from a forward pass already run in
                training mode (see :meth:`losses`); the pass is not repeated.

        Returns:
            Each loss term and the total ``loss``, as floats.
        """
        return self.step_parts([(batch, student_out)], teacher, weights)

    def step_parts(self, parts: Sequence[tuple[dict[str, torch.Tensor], Outputs | None]],
                   teacher: "TeacherLike" = None, weights: torch.Tensor | None = None) -> dict[str, float]:
        """One optimiser step on the union of several batches, each padded to its own length.

        The objective is each part's mean loss weighted by its row count: exactly the mean over
        one joint batch. A part may bring the student's outputs of a forward pass already run
        (``(batch, student_out)``, e.g. the environment's observation pass); ``(batch, None)``
        runs it here. ``weights`` (one part only): per-example loss weights.

        Returns:
            Each loss term and the total ``loss``, as floats.
        """
        if weights is not None and len(parts) != 1:
            raise ValueError("per-example weights are supported for a single batch only")
        self.student.train()
        self.modules.train()
        if len(parts) == 1:
            batch, student_out = parts[0]
            terms = self.losses(batch, teacher, weights, student_out)
        else:
            sized = [(len(b["input_ids"]), self.losses(b, teacher, None, out)) for b, out in parts]
            total = sum(n for n, _ in sized)
            terms = {k: sum(n * t[k] for n, t in sized) / total for k in sized[0][1]}
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.apply_gradients()
        return {k: float(v.detach()) for k, v in terms.items()}

    # ------------------------------------------------------------------ snapshots

    def training_state(self) -> dict:
        """A copy of everything a step changes: the trainable student weights (frozen ones, e.g.
        fixed word embeddings, are left out: no step touches them), the loss modules, the
        optimiser and schedule, the step count. :meth:`load_training_state` puts it back, so a
        step can be taken, undone and taken differently from the same state."""
        import copy

        trainable = {n: p.detach().clone() for n, p in self.student.named_parameters() if p.requires_grad}
        buffers = {n: b.detach().clone() for n, b in self.student.named_buffers()}
        return {"student": trainable, "buffers": buffers,
                "modules": {k: v.detach().clone() for k, v in self.modules.state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "scheduler": None if self.scheduler is None else copy.deepcopy(self.scheduler.state_dict()),
                "steps": self.steps}

    @torch.no_grad()
    def load_training_state(self, state: dict) -> None:
        """Restore a :meth:`training_state` (values are copied in; the state stays reusable)."""
        import copy

        params = dict(self.student.named_parameters())
        for name, value in state["student"].items():
            params[name].copy_(value)
        buffers = dict(self.student.named_buffers())
        for name, value in state["buffers"].items():
            buffers[name].copy_(value)
        if state["modules"]:
            self.modules.load_state_dict(state["modules"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(copy.deepcopy(state["scheduler"]))
        self.steps = state["steps"]

    # ------------------------------------------------------------------ saving

    def save_modules(self, path: str | Path) -> Path | None:
        """Save the learned loss modules (projections...) with the layer map; None if there are none."""
        if not len(self.modules):
            return None
        return save_torch({"modules": {k: m.state_dict() for k, m in self.modules.items()},
                           "layer_map": None if self.layer_map is None else str(self.layer_map),
                           "objective": {k: float(v) for k, v in self.objective.items()}}, path)

    def load_modules(self, path: str | Path) -> None:
        """Load modules saved by :meth:`save_modules`; read with ``torch.load(weights_only=True)``
        (:func:`augrl.models.load_torch`), so a file holding other pickled objects is refused."""
        state = load_torch(path, map_location=self.device)
        for name, module_state in state["modules"].items():
            self.modules[name].load_state_dict(module_state)
