"""One-step look-ahead influence of each candidate on the validation KD objective.

In the manner of Learning to Reweight Examples (Ren et al., 2018): give candidate i a weight
ε_i, start at ε = 0, take one SGD step of size α on ``Σ_i ε_i L_i(θ)`` and look at the
validation objective after it::

    θ'(ε) = θ - α Σ_i ε_i ∇L_i(θ)
    ∂L_val(θ'(ε)) / ∂ε_i |_(ε=0) = -α ∇L_val(θ) · ∇L_i(θ)

so ``score_i = ∇L_val(θ) · ∇L_i(θ)`` is, per unit step, how much a small SGD step on
candidate i alone lowers the validation objective (higher = keep; negative = the step would
raise it). At ε = 0 the step is infinitesimal, so the distiller's gradient clipping never
applies; the env's optimiser is AdamW, whose preconditioned step this first-order SGD view
does not model.

Here:

* ``L_val(θ) = mean_v KL(p_teacher(v) || p_student(v; θ))`` at temperature 1 over the reward's
  validation set ``world.val`` against ``world.val_teacher_logits`` (V, C) (regression: the
  mean squared difference), student in eval mode (dropout off), float32;
* ``L_i(θ)`` is the student's KD objective on candidate i as the world's distiller defines it,
  ``world.new_distiller(student).losses(batch_i, world.cache)["loss"]`` on a one-row batch
  (dark_ce + hard_ce by default, L2A's attention/hidden/dark mix when configured), also in
  eval mode, so the score is a deterministic function of θ;
* θ is the classifier layer (``scope="head"``: the last ``nn.Linear`` producing the C outputs,
  ``classifier`` of the mean-pool head) or every trainable student parameter (``scope="all"``;
  frozen word embeddings stay out). Parameters L_val does not reach (an unused pooler, the
  distiller's learned projections) have ``∇L_val = 0`` and drop out of the dot product.

How the N dot products are computed (``method``):

* ``"jvp"`` (the default when every loss of the objective takes per-example weights, as all
  built-in ones do): ``∇L_i · g`` is the directional derivative of L_i along ``g = ∇L_val``,
  i.e. a Jacobian-vector product. One forward-mode pass per batch of candidates, with θ
  replaced by dual numbers ``θ + ε g`` (``torch.autograd.forward_ad``), gives the tangent of
  the batch's weighted loss ``mean_b w_b L_b``; its gradient with respect to the weights w
  (a reverse pass through the loss reduction only, not through the student) is
  ``∇L_b · g / B`` for every row b at once. Exact (the same numbers as ``per_row`` up to
  float rounding), with no per-candidate backward pass.
* ``"per_row"``: the reference; N forward and backward passes of one-row batches.

Cost for N candidates and V validation examples, in student passes:

* ``∇L_val``: one forward and one backward pass over the V validation examples;
* ``jvp``: one forward-mode pass over the N candidates in batches of ``batch_size`` (each
  about 2-3 forward passes of arithmetic with ``scope="all"``; with ``scope="head"`` the
  encoder runs a plain forward and only the head carries tangents);
* ``per_row``: N forward and N backward passes with batch size 1.

Measured on 2 shared CPU threads with the default 2-layer MiniLM student (15.6M parameters,
3.9M trainable with frozen word embeddings), ~30-token candidates, V = 200: ``∇L_val`` takes
0.9 s (``all``) / 0.3 s (``head``); then each candidate 4.5 ms (``jvp``, ``all``), 1.6 ms
(``jvp``, ``head``) or 14 ms (``per_row``), against ~6 ms of a training forward and backward
pass per candidate at batch size 32. So 320 candidates take about 2.3 s (``all``) and 0.8 s
(``head``), 3,000 about 15 s and 5 s.

Self-attention runs through PyTorch's math SDPA kernel while scoring (the fused kernels have
no forward-mode derivative).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call

from augrl.errors import ConfigError
from augrl.models import model_inputs

from .rankers import Ranker, check_choice, as_fp32, divergence, register_ranker

if TYPE_CHECKING:
    from augrl.envs.world import KDWorld
    from augrl.kd.distiller import Distiller

SCOPES = ("head", "all")
METHODS = ("auto", "jvp", "per_row")


def head_parameters(model: nn.Module, num_labels: int) -> dict[str, nn.Parameter]:
    """The trainable parameters of ``model``'s output layer: the last ``nn.Linear`` with
    ``num_labels`` outputs (``classifier`` of the mean-pool and stock BERT heads, the last
    layer of the BiLSTM head), keyed as in ``model.named_parameters()``.

    Raises:
        ConfigError: no such layer, or it is frozen.
    """
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_labels:
            found = name
    if found is None:
        raise ConfigError(f"cannot find the output layer of a {type(model).__name__} (an nn.Linear with "
                          f"{num_labels} outputs); use scope='all'")
    prefix = f"{found}." if found else ""
    params = {n: p for n, p in model.named_parameters()
              if n.startswith(prefix) and "." not in n[len(prefix):] and p.requires_grad}
    if not params:
        raise ConfigError(f"the output layer {found!r} of the student is frozen; use scope='all'")
    return params


def scope_parameters(model: nn.Module, scope: str, num_labels: int) -> dict[str, nn.Parameter]:
    """θ of the influence score: :func:`head_parameters` (``"head"``) or every parameter with
    ``requires_grad`` (``"all"``), by name."""
    if scope == "head":
        return head_parameters(model, num_labels)
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _params_with(model: nn.Module, live: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Every parameter of ``model`` for :func:`torch.func.functional_call`: the tensors of
    ``live`` where given (kept in the autograd graph, or dual), the others detached (so no graph
    is built through them)."""
    return {prefix + n: live[n] if n in live else p.detach() for n, p in model.named_parameters()}


def _length_batches(lengths: np.ndarray, batch_size: int) -> list[list[int]]:
    """Row indices grouped by length (little padding), ``batch_size`` per group."""
    order = np.argsort(lengths, kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def validation_gradient(model: nn.Module, world: "KDWorld", params: dict[str, nn.Parameter],
                        batch_size: int = 32) -> dict[str, torch.Tensor]:
    """``∇_θ L_val``: the gradient of the mean validation KL(teacher || student) (regression:
    mean squared difference) over ``world.val`` (V examples, teacher logits (V, C)) with respect
    to ``params`` (name -> parameter of ``model``). One forward and backward pass over V, in
    the model's current mode. Parameters L_val does not reach are left out of the result."""
    device = world.data.device
    val = world.val
    lengths = np.array([len(ids) for ids in val.input_ids])
    names = list(params)
    total: dict[str, torch.Tensor] = {}
    for rows in _length_batches(lengths, batch_size):
        batch = val.batch(rows, device)
        logits = functional_call(model, _params_with(model, params), args=(), kwargs=model_inputs(model, batch)).logits
        loss = divergence(logits, world.val_teacher_logits[torch.tensor(rows)]).sum() / len(val)
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads):
            if g is not None:
                total[n] = total[n] + g if n in total else g.detach()
    return total


class _StudentPass(nn.Module):
    """Runs ``distiller.student_outputs`` so that :func:`torch.func.functional_call` can swap
    the student's parameters (``student.<name>``) for the distiller's forward pass."""

    def __init__(self, distiller: "Distiller") -> None:
        super().__init__()
        self.student = distiller.student
        self._run = distiller.student_outputs

    def forward(self, batch: dict[str, torch.Tensor]):
        return self._run(batch)


@register_ranker("influence")
class InfluenceRanker(Ranker):
    """One-step look-ahead influence ``∇L_val · ∇L_i`` of each candidate (see the module's
    docstring for the derivation, the objectives and the cost).

    Shapes: candidates are the N rows of ``world.encoded`` / ``world.cache``; the validation set
    is V rows with teacher logits (V, C); θ is the head's (C, H) weight and (C,) bias, or all
    trainable student parameters. Returns (N,) scores; higher = a step on the candidate lowers
    the validation objective more.

    Args:
        scope: ``"head"`` (default, fast: the classifier layer's gradients) or ``"all"``.
        method: ``"jvp"`` (batched, exact), ``"per_row"`` (one backward per candidate), or
            ``"auto"``: ``jvp`` unless a loss of the objective takes no per-example weights.
        batch_size: candidates per forward-mode pass (and validation rows per pass).
        seed: seeds the distiller built when none is given (its learned loss modules, e.g.
            hidden_mse's projection, are initialised at random); the caller's random state is
            left untouched.
    """

    def __init__(self, scope: str = "head", method: str = "auto", batch_size: int = 32, seed: int = 0) -> None:
        super().__init__(scope=scope, method=method, batch_size=batch_size, seed=seed)
        self.scope = check_choice("scope", scope, SCOPES)
        self.method = check_choice("method", method, METHODS)
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    # ------------------------------------------------------------------ setup

    def _models(self, world: "KDWorld", student: nn.Module | None,
                distiller: "Distiller | None") -> tuple[nn.Module, "Distiller"]:
        if distiller is not None:
            if student is not None and distiller.student is not student:
                raise ValueError("the distiller given trains another student than the one given")
            model = distiller.student
            if as_fp32(model) is not model:
                raise ValueError("the influence ranker computes in float32; the distiller's student is not float32")
            return model, distiller
        model = as_fp32(world.new_student() if student is None else student)
        device = torch.device(world.data.device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            distiller = world.new_distiller(model)
        return model, distiller

    def _method(self, distiller: "Distiller") -> str:
        if self.method != "auto":
            if self.method == "jvp":
                unweighted = sorted(n for n, e in distiller.entries.items() if not e.weighted)
                if unweighted:
                    raise ConfigError(f"method='jvp' needs losses that take per-example weights; {unweighted} do "
                                      "not (use method='per_row')")
            return self.method
        return "jvp" if all(e.weighted for e in distiller.entries.values()) else "per_row"

    # ------------------------------------------------------------------ scoring

    def scores(self, world: "KDWorld", student: nn.Module | None = None,
               distiller: "Distiller | None" = None) -> np.ndarray:
        """(N,) ``∇L_val · ∇L_i`` at the student's current weights.

        Args:
            world: the world whose candidates are scored.
            student: the student (None: ``world.new_student()``); its weights, gradients and
                train/eval mode are left as they were.
            distiller: the distiller training ``student`` (e.g. the env's, whose learned loss
                modules are trained); None: ``world.new_distiller(student)``.
        """
        model, distiller = self._models(world, student, distiller)
        method = self._method(distiller)
        device = torch.device(world.data.device)
        modes = (model.training, distiller.modules.training)
        model.eval()
        distiller.modules.eval()
        try:
            with self._kernels(device):
                params = scope_parameters(model, self.scope, world.num_labels)
                g_val = validation_gradient(model, world, params, self.batch_size)
                if not g_val:
                    return np.zeros(world.num_candidates)
                if method == "jvp":
                    out = self._jvp(world, model, distiller, g_val)
                else:
                    out = self._per_row(world, model, distiller, params, g_val)
        finally:
            model.train(modes[0])
            distiller.modules.train(modes[1])
        return out.double().cpu().numpy()

    @staticmethod
    @contextlib.contextmanager
    def _kernels(device: torch.device):
        """float32 (no autocast) and the math attention kernel, whose derivatives all exist."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with torch.autocast(device.type, enabled=False), sdpa_kernel(SDPBackend.MATH):
            yield

    def _jvp(self, world: "KDWorld", model: nn.Module, distiller: "Distiller",
             g_val: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) scores by forward-mode AD along ``g_val``, ``batch_size`` candidates a pass."""
        device = world.data.device
        wrapper = _StudentPass(distiller)
        scores = torch.zeros(world.num_candidates)
        for rows in _length_batches(world.lengths, self.batch_size):
            batch = world.encoded.batch(rows, device)
            weights = torch.ones(len(rows), device=device, requires_grad=True)
            with fwAD.dual_level():
                dual = {n: fwAD.make_dual(p.detach(), g_val[n]) for n, p in model.named_parameters() if n in g_val}
                out = functional_call(wrapper, _params_with(model, dual, "student."), (batch,))
                loss = distiller.losses(batch, world.cache, weights=weights, student_out=out)["loss"]
                tangent = fwAD.unpack_dual(loss).tangent
            if tangent is None or not tangent.requires_grad:
                continue  # the batch's loss does not depend on θ along g_val
            (d_weights,) = torch.autograd.grad(tangent, weights)
            scores[torch.tensor(rows)] = (d_weights * len(rows)).detach().float().cpu()
        return scores

    def _per_row(self, world: "KDWorld", model: nn.Module, distiller: "Distiller",
                 params: dict[str, nn.Parameter], g_val: dict[str, torch.Tensor]) -> torch.Tensor:
        """(N,) scores from one backward pass per candidate (the reference)."""
        device = world.data.device
        wrapper = _StudentPass(distiller)
        live = {n: params[n] for n in g_val}
        names = list(live)
        scores = torch.zeros(world.num_candidates)
        for i in range(world.num_candidates):
            batch = world.encoded.batch([i], device)
            out = functional_call(wrapper, _params_with(model, live, "student."), (batch,))
            loss = distiller.losses(batch, world.cache, student_out=out)["loss"]
            grads = torch.autograd.grad(loss, [live[n] for n in names], allow_unused=True)
            scores[i] = float(sum((g * g_val[n]).sum() for n, g in zip(names, grads) if g is not None))
        return scores
