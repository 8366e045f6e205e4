"""``metakd``: Meta-KD (Pan et al., ACL 2021) on a task with labelled source domains.

Made for the Amazon tasks: ``amazon-books`` has the target domain books (few-shot train set)
and ``task.source`` holds dvd and electronics reviews with a ``domain`` column; any task with
a source pool works (``rt``: target rt, source sst2).

1. Meta-teacher data: the target train set plus a labelled sample of every source domain
   (``source_shots`` per class and domain; default the run's shots).
2. Prototype scores t_i (:func:`~augrl.kd.domains.prototype_scores`, weight ``alpha``) from
   the pre-trained encoder's mean-pooled embeddings, before any task training.
3. Meta-teacher: the teacher with a domain branch (:class:`~augrl.kd.domains.MetaTeacherHead`)
   trained over all domains on ``mean_i t_i (CE_i + gamma * DC_i)``, DC the domain-corruption
   loss (:func:`~augrl.kd.domains.meta_teacher_loss`); the epoch is selected on the target's
   validation set.
4. Meta-distillation on the target train set: the meta-teacher's outputs (embeddings, mapped
   hidden states and attentions, logits, and its domain representation) are cached once; the
   student learns embedding, hidden (through W), attention, prediction (dark_ce) and
   domain-transfer losses, every term weighted per instance by the teacher's domain expertise
   lambda_i (:func:`~augrl.kd.domains.expertise_weights`).

The default objective is :data:`METAKD_OBJECTIVE` (``--objective`` replaces it). BiLSTM/TextCNN
students, which have no layers to distil, get logit_mse + hard_ce, still weighted by lambda.
The meta-teacher's classifier is saved as ``meta_teacher`` (its domain branch is only needed
for training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from augrl.batching import Encoded
from augrl.config import ConfigMixin
from augrl.errors import ConfigError
from augrl.kd.domains import MetaTeacherHead, expertise_weights, meta_teacher_loss, prototype_scores
from augrl.kd.distiller import make_optimizer
from augrl.kd.methods import DistillContext, MethodResult, register_method
from augrl.kd.outputs import Needs, model_outputs
from augrl.models import hidden_size, layer_count, masked_mean
from augrl.pipelines import RunConfig
from augrl.runtime import stage
from augrl.training import total_steps, train_loop

METAKD_OBJECTIVE = {"embedding_mse": 1.0, "hidden_mse": 1.0, "attention_mse": 1.0, "dark_ce": 1.0,
                    "domain_transfer": 1.0}


@dataclass
class MetaKDOptions(ConfigMixin):
    """Options of ``metakd`` (``--option key=value``).

    Attributes:
        alpha: weight of the in-domain class prototype in the instance scores.
        gamma: weight of the meta-teacher's domain-corruption loss.
        source_shots: labelled examples per class from each source domain (default: shots).
    """

    alpha: float = 0.5
    gamma: float = 0.1
    source_shots: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"metakd alpha must be in [0, 1], got {self.alpha}")
        if self.gamma < 0:
            raise ConfigError(f"metakd gamma must be >= 0, got {self.gamma}")


class MetaTeacher(nn.Module):
    """The teacher classifier plus its domain branch, selected and saved together.

    ``forward(**batch)`` is the classifier's (``.logits`` (B, C)); ``domain_outputs`` adds the
    domain representation (B, H) and domain logits (B, K) from the last hidden states.
    """

    def __init__(self, model: nn.Module, num_domains: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.model = model
        self.head = MetaTeacherHead(hidden_size(model), num_domains, dropout)
        self.last = layer_count(model)

    def forward(self, **kwargs):
        return self.model(**kwargs)

    def domain_outputs(self, batch: dict[str, torch.Tensor], domains: torch.Tensor):
        out = model_outputs(self.model, batch, Needs.of(hidden_states=[self.last]))
        representation, domain_logits = self.head(out.hidden_states[self.last], out.mask, domains)
        return out, representation, domain_logits


def mean_embeddings(ctx: DistillContext, model: nn.Module, data: Encoded) -> torch.Tensor:
    """(N, H) masked-mean last hidden states of ``model`` on ``data`` (no gradients)."""
    last = layer_count(model)
    cache = ctx.cache(model, Needs(), data, extras_needs=Needs.of(hidden_states=[last]),
                      extras_fn=lambda out, batch: {"embedding": masked_mean(out.hidden_states[last], out.mask)})
    return cache.extras["embedding"]


def _default_objective(cfg: RunConfig) -> dict | None:
    return dict(METAKD_OBJECTIVE) if cfg.student == "transformer" else None


def run_metakd(ctx: DistillContext) -> MethodResult:
    opts: MetaKDOptions = ctx.options
    cfg, data, spec = ctx.cfg, ctx.data, ctx.spec
    if spec.is_regression:
        raise ConfigError("metakd is implemented for classification tasks (prototypes are per class)")
    # 1. domains and the meta-teacher's data
    source, source_domains = ctx.source_sample(opts.source_shots)
    target = ctx.train_domain()
    names = [target] + sorted(set(source_domains) - {target})
    ids = {n: i for i, n in enumerate(names)}
    meta_train = Encoded.concat([data.train, source])
    meta_domains = torch.tensor([0] * len(data.train) + [ids[d] for d in source_domains])
    # 2. prototype scores from the pre-trained encoder
    teacher, _ = ctx.initial_teacher()
    scores = prototype_scores(mean_embeddings(ctx, teacher, meta_train), meta_train.labels, meta_domains, opts.alpha)
    # 3. the meta-teacher
    meta = MetaTeacher(teacher, len(names)).to(ctx.device)
    teacher_cfg = cfg.teacher_train
    teacher_total = total_steps(len(meta_train), teacher_cfg)
    optimizer, scheduler = make_optimizer(meta.parameters(), teacher_cfg.lr, teacher_cfg.weight_decay, teacher_total,
                                          teacher_cfg.warmup_ratio)
    corrupt = torch.Generator().manual_seed(cfg.seed)

    def teacher_step(batch: dict) -> dict:
        meta.train()
        index = batch["index"].cpu()
        out, _, domain_logits = meta.domain_outputs(batch, meta_domains[index].to(ctx.device))
        corrupted = torch.randint(len(names), (len(index),), generator=corrupt).to(ctx.device)
        terms = meta_teacher_loss(out.logits, batch["labels"], domain_logits, corrupted,
                                  scores[index].to(ctx.device), opts.gamma)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if teacher_cfg.grad_clip:
            nn.utils.clip_grad_norm_(meta.parameters(), teacher_cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    with stage("teacher"):
        teacher_fit = train_loop(meta, teacher_step, teacher_total, meta_train, data.val, spec, teacher_cfg, ctx.device,
                                 cfg.seed, ctx.progress, "meta-teacher")
    ctx.record_stage("teacher", teacher_fit)
    meta.eval()
    # 4. meta-distillation on the target domain
    student = ctx.student()
    loss_params = ctx.loss_params()
    loss_params.setdefault("domain_transfer", {})["num_domains"] = len(names)
    distiller = ctx.distiller(student, teacher, ctx.student_steps(), loss_params=loss_params)
    target_domains = torch.zeros(len(data.train), dtype=torch.long)
    last = layer_count(teacher)

    def domain_repr(out, batch) -> dict:
        domains = target_domains[batch["index"].cpu()].to(ctx.device)
        return {"domain_repr": meta.head.domain(out.hidden_states[last], out.mask, domains)}

    cache = ctx.cache(teacher, distiller.teacher_needs(), extras_fn=domain_repr,
                      extras_needs=Needs.of(hidden_states=[last]))
    target_scores = scores[: len(data.train)]
    lam = expertise_weights(target_scores, torch.softmax(cache.logits, -1), data.train.labels)
    result = ctx.fit_student(student, distiller, cache, weights=lam, desc="student (Meta-KD)",
                             batch_extras={"domain": target_domains})
    return MethodResult(
        student, result.best_val, distiller.objective, ctx.params(teacher=teacher, student=student),
        evaluate_teacher=ctx.teacher_evaluation(teacher), distiller=distiller,
        trained_teachers={"meta_teacher": teacher},
        extra={"domains": names, "meta_train_size": len(meta_train),
               "prototype_score_mean": {n: float(scores[meta_domains == i].mean()) for i, n in enumerate(names)},
               "expertise_weight_mean": float(lam.mean()), "teacher_cache_bytes": cache.nbytes})


def register_methods() -> None:
    """Register ``metakd`` (called once by :func:`augrl.kd.methods.get_method`)."""
    register_method("metakd", run_metakd, options=MetaKDOptions, default_objective=_default_objective,
                    description="Meta-KD: meta-teacher over domains, expertise-weighted meta-distillation")
