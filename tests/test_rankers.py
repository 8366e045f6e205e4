"""augrl.selection: budgets, top-k, the ranker registry, and each ranker on a tiny world."""

from __future__ import annotations

import copy
import math
import types

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from augrl.batching import predict  # noqa: E402
from augrl.envs import AugmentKDConfig, build_world  # noqa: E402
from augrl.errors import ConfigError  # noqa: E402
from augrl.envs.features import centroid_cosine_distance, max_cosine_similarity  # noqa: E402
from augrl.selection import Ranker, budget_size, divergence, get_ranker, ranker_names, register_ranker, select, top_k  # noqa: E402
from augrl.selection.rankers import RANKERS  # noqa: E402

BUILTIN = ["influence", "keep_all", "random", "teacher_confidence", "teacher_student_kl", "val_similarity"]
EVERY_RANKER = [("random", {}), ("keep_all", {}), ("teacher_confidence", {}), ("teacher_student_kl", {}),
                ("teacher_student_kl", {"prefer": "low"}), ("val_similarity", {}),
                ("val_similarity", {"measure": "centroid"}), ("influence", {"scope": "head"}),
                ("influence", {"scope": "all"})]


@pytest.fixture(scope="module")
def env_kwargs(toy_tasks, tiny_model_dir, augrl_cache):
    return dict(task=str(toy_tasks["single_file"]), shots=8, pool_size=64, batch_size=16, teacher=str(tiny_model_dir),
                student_init=str(tiny_model_dir), teacher_train={"epochs": 1}, device="cpu", target_batch_size=4)


@pytest.fixture(scope="module")
def world(env_kwargs, single_thread):
    return build_world(AugmentKDConfig(**env_kwargs))


@pytest.fixture(scope="module")
def trained_student(world):
    """The student after 20 distillation steps (larger learning rate than the env's), away from
    its initial weights, as a warmed-up env's student would be."""
    student = world.new_student()
    rng = np.random.default_rng(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        distiller = world.new_distiller(student)
        for group in distiller.optimizer.param_groups:
            group["lr"] = 3e-3
        for _ in range(20):
            rows = np.concatenate([rng.choice(world.num_candidates, 8, replace=False),
                                   world.num_candidates + rng.choice(world.num_target, 4, replace=False)])
            distiller.step(world.encoded.batch(rows), world.cache)
    student.eval()
    return student


# ----------------------------------------------------------------------------- budgets, top-k, registry


def test_budget_size():
    assert budget_size(64, 0.25) == 16
    assert budget_size(64, 1.0) == 64 and budget_size(64, 1) == 64
    assert budget_size(64, 1e-6) == 1  # at least one
    assert budget_size(10, 0.25) == 2  # round(2.5) is 2 (half to even)
    for bad in (0, 0.0, -0.1, 1.01, 2, float("nan"), "0.5", None, True):
        with pytest.raises(ConfigError, match=r"budget.*\(0, 1\]"):
            budget_size(64, bad)
    with pytest.raises(ValueError):
        budget_size(0, 0.5)


def test_top_k_orders_and_breaks_ties_by_seed():
    scores = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, -1.0])
    picked = top_k(scores, 3, seed=0)
    assert picked == sorted(picked) and len(set(picked)) == 3
    assert {0, 5} <= set(picked) and 7 not in picked
    assert top_k(scores, 3, seed=0) == picked  # same seed, same tie-break
    tied = {tuple(top_k(scores, 3, seed=s)) for s in range(20)}
    assert len(tied) > 1  # the tied zeros are drawn, not always the first
    assert top_k(scores, 0, seed=0) == []
    assert top_k(scores, 8, seed=0) == list(range(8))
    assert top_k(np.arange(5.0), 2, seed=3) == [3, 4]
    with pytest.raises(ValueError):
        top_k(scores, 9, seed=0)
    with pytest.raises(ValueError):
        top_k(np.array([0.0, np.nan]), 1, seed=0)
    with pytest.raises(ValueError):
        top_k(np.zeros((2, 2)), 1, seed=0)


def test_registry_names_errors_and_custom_rankers():
    assert set(BUILTIN) <= set(ranker_names())
    with pytest.raises(ConfigError, match="unknown ranker 'nope'") as err:
        get_ranker("nope")
    assert all(name in str(err.value) for name in BUILTIN)
    with pytest.raises(ConfigError, match="no parameter"):
        get_ranker("random", sede=1)
    with pytest.raises(ConfigError, match="prefer"):
        get_ranker("teacher_student_kl", prefer="middle")
    with pytest.raises(ConfigError, match="scope"):
        get_ranker("influence", scope="encoder")

    @register_ranker("test_lengths")
    class Lengths(Ranker):
        def __init__(self, sign: float = 1.0) -> None:
            super().__init__(sign=sign)
            self.sign = sign

        def scores(self, world, student=None):
            return self.sign * world.lengths.astype(float)

    try:
        assert "test_lengths" in ranker_names() and get_ranker("test_lengths", sign=-1.0).name == "test_lengths"
        with pytest.raises(ConfigError, match="already registered"):
            register_ranker("test_lengths", type("Other", (Lengths,), {}))
        world = types.SimpleNamespace(num_candidates=4, lengths=np.array([3, 9, 5, 7]))
        assert select(world, get_ranker("test_lengths"), 0.5) == [1, 3]
        assert select(world, "test_lengths", 0.25) == [1]
    finally:
        RANKERS.pop("test_lengths", None)


def test_divergence_and_cosine_helpers():
    t = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    assert torch.allclose(divergence(t, t), torch.zeros(2), atol=1e-7)
    p = torch.softmax(t[0], -1)
    q = torch.softmax(torch.zeros(2), -1)
    expected = float((p * (p.log() - q.log())).sum())
    assert float(divergence(torch.zeros(1, 2), t[:1])[0]) == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(divergence(torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [1.0]])),
                          torch.tensor([1.0, 4.0]))  # regression: squared difference
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cand = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    assert torch.allclose(max_cosine_similarity(cand, ref), torch.tensor([1.0, math.sqrt(0.5), 0.0]), atol=1e-6)
    assert torch.allclose(centroid_cosine_distance(cand, ref),
                          torch.tensor([1 - math.sqrt(0.5), 0.0, 1 + math.sqrt(0.5)]), atol=1e-6)


def test_teacher_confidence_regression_is_minus_abs_error():
    world = types.SimpleNamespace(num_labels=1, static={"teacher_abs_error": torch.tensor([0.5, 0.1, 2.0])})
    assert get_ranker("teacher_confidence").scores(world).tolist() == pytest.approx([-0.5, -0.1, -2.0])


# ----------------------------------------------------------------------------- every ranker on the tiny world


@pytest.mark.parametrize("name,params", EVERY_RANKER, ids=[f"{n}-{'-'.join(map(str, p.values()))}"
                                                             for n, p in EVERY_RANKER])
def test_scores_shape_and_determinism(world, name, params):
    ranker = get_ranker(name, **params)
    scores = ranker.scores(world)
    assert isinstance(scores, np.ndarray) and scores.shape == (world.num_candidates,)
    assert scores.dtype == np.float64 and np.isfinite(scores).all()
    assert np.array_equal(scores, ranker.scores(world))
    assert np.array_equal(scores, get_ranker(name, **params).scores(world))  # a fresh instance agrees
    kept = select(world, ranker, 0.25, seed=1)
    assert len(kept) == 16 and kept == sorted(set(kept)) and kept == top_k(scores, 16, seed=1)
    if name not in ("keep_all",):
        assert np.unique(scores).size > 1  # a ranker that ranks


def test_budget_one_keeps_everything(world):
    everything = list(range(world.num_candidates))
    assert select(world, "keep_all", 1.0) == everything
    assert select(world, get_ranker("random", seed=4), 1.0) == everything
    assert select(world, "teacher_confidence", 1.0) == everything
    part = select(world, "keep_all", 0.25, seed=0)
    assert len(part) == 16 and select(world, "keep_all", 0.25, seed=0) == part
    assert get_ranker("random", seed=1).scores(world).tolist() != get_ranker("random", seed=2).scores(world).tolist()
    with pytest.raises(ConfigError, match="budget"):
        select(world, "keep_all", 0.0)


def test_teacher_confidence_follows_the_static_features(world):
    scores = get_ranker("teacher_confidence").scores(world)
    static = world.static["teacher_prob_label"].double().numpy()
    assert np.allclose(scores, static)
    p = torch.softmax(world.cache.logits[: world.num_candidates], -1)
    own = p.gather(1, torch.as_tensor(world.pool.labels).long()[:, None])[:, 0].double().numpy()
    assert np.allclose(scores, own, atol=1e-6)
    kept = select(world, "teacher_confidence", 0.25)
    assert min(static[kept]) >= max(np.delete(static, kept))


def test_teacher_student_kl(world, trained_student):
    high = get_ranker("teacher_student_kl")
    assert high.prefer == "high"  # the default
    student = copy.deepcopy(trained_student).train()
    scores = high.scores(world, student)
    assert student.training  # mode restored
    n = world.num_candidates
    logits = predict(trained_student, world.encoded.subset(range(n)), 64)
    p = torch.softmax(world.cache.logits[:n], -1)
    kl = (p * (p.log() - torch.log_softmax(logits, -1))).sum(-1).double().numpy()
    assert np.allclose(scores, kl, atol=1e-6) and (scores >= -1e-7).all()
    assert np.allclose(get_ranker("teacher_student_kl", prefer="low").scores(world, student), -scores)
    fresh = high.scores(world)  # the initial student
    assert np.allclose(fresh, high.scores(world, world.new_student()))
    assert not np.allclose(fresh, scores)


def test_val_similarity(world):
    ranker = get_ranker("val_similarity")
    val = world.val_repr
    assert val.shape == (len(world.val), world.cache.extras["repr"].shape[1])
    scores = ranker.scores(world)
    assert (scores <= 1 + 1e-6).all() and (scores >= -1 - 1e-6).all()
    cand = world.cache.extras["repr"][: world.num_candidates]
    sims = torch.nn.functional.normalize(cand, dim=-1) @ torch.nn.functional.normalize(val, dim=-1).T
    assert np.allclose(scores, sims.max(-1).values.double().numpy(), atol=1e-6)
    centroid = get_ranker("val_similarity", measure="centroid").scores(world)
    assert np.allclose(centroid, -centroid_cosine_distance(cand, val).double().numpy(), atol=1e-6)
    # a validation example used as a candidate would score 1: check on the validation rows themselves
    assert torch.allclose(max_cosine_similarity(val, val), torch.ones(len(val)), atol=1e-5)


# ----------------------------------------------------------------------------- influence


def _val_kl(model, world) -> float:
    """The validation objective, computed here without the ranker's code: mean KL(teacher || student)."""
    logits = predict(model, world.val, 64).double()
    p = torch.softmax(world.val_teacher_logits.double(), -1)
    return float((p * (p.log() - torch.log_softmax(logits, -1))).sum(-1).mean())


def _finite_differences(world, student, scope: str, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate: one SGD step of size alpha on the candidate alone (gradient of the world's
    distiller loss on a one-row batch), and the validation objective after it. Returns the
    one-sided drop / alpha and the central difference (L(θ + αg) - L(θ - αg)) / 2α."""
    model = copy.deepcopy(student).eval()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        distiller = world.new_distiller(model)
    names = [n for n, p in model.named_parameters()
             if p.requires_grad and (scope == "all" or n.startswith("classifier."))]
    base = _val_kl(model, world)
    one_sided, central = [], []
    for i in range(world.num_candidates):
        loss = distiller.losses(world.encoded.batch([i]), world.cache)["loss"]
        params = dict(model.named_parameters())
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        after = {}
        for sign in (1.0, -1.0):
            stepped = copy.deepcopy(model)
            moved = dict(stepped.named_parameters())
            with torch.no_grad():
                for n, g in zip(names, grads):
                    if g is not None:
                        moved[n] -= sign * alpha * g
            after[sign] = _val_kl(stepped, world)
        one_sided.append((base - after[1.0]) / alpha)
        central.append((after[-1.0] - after[1.0]) / (2 * alpha))
    return np.array(one_sided), np.array(central)


@pytest.mark.parametrize("scope", ["head", "all"])
def test_influence_is_the_validation_drop_of_one_sgd_step(world, trained_student, scope):
    from scipy.stats import spearmanr

    scores = get_ranker("influence", scope=scope).scores(world, trained_student)
    one_sided, central = _finite_differences(world, trained_student, scope, alpha=1e-3)
    assert spearmanr(scores, one_sided).statistic > 0.9
    assert np.mean(np.sign(scores) == np.sign(one_sided)) > 0.9
    assert np.allclose(scores, central, rtol=2e-2, atol=2e-3 * np.abs(scores).max())


@pytest.mark.parametrize("scope", ["head", "all"])
def test_influence_batched_equals_one_row_at_a_time(world, trained_student, scope):
    batched = get_ranker("influence", scope=scope, method="jvp", batch_size=16).scores(world, trained_student)
    rows = get_ranker("influence", scope=scope, method="per_row").scores(world, trained_student)
    assert np.allclose(batched, rows, rtol=1e-4, atol=1e-5 * np.abs(rows).max())
    assert not np.allclose(batched, get_ranker("influence", scope=scope).scores(world))  # depends on the student


def test_influence_leaves_the_student_and_random_state_alone(world, trained_student):
    student = copy.deepcopy(trained_student).train()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    get_ranker("influence", scope="all").scores(world, student)
    assert torch.equal(torch.rand(3), expected)
    assert student.training
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert all(p.grad is None for p in student.parameters())


def test_influence_under_the_l2a_objective(env_kwargs, single_thread):
    """Attention and hidden-state losses (hooks, the learned projection) go through the batched
    forward-mode pass too: it agrees with one backward per candidate."""
    world = build_world(AugmentKDConfig(**env_kwargs, objective={"attention_mse": 1, "hidden_mse": 1, "dark_ce": 1}))
    batched = get_ranker("influence", scope="all").scores(world)
    rows = get_ranker("influence", scope="all", method="per_row").scores(world)
    assert np.allclose(batched, rows, rtol=1e-4, atol=1e-5 * np.abs(rows).max())
    assert np.unique(batched).size > 1


def test_rankers_on_a_regression_world(toy_regression_task, tiny_model_dir, augrl_cache, single_thread):
    world = build_world(AugmentKDConfig(task=str(toy_regression_task), shots=8, pool_size=32, batch_size=8,
                                        teacher=str(tiny_model_dir), student_init=str(tiny_model_dir),
                                        teacher_train={"epochs": 1}, device="cpu"))
    n = world.num_candidates
    assert world.num_labels == 1
    for name, params in EVERY_RANKER:
        scores = get_ranker(name, **params).scores(world)
        assert scores.shape == (n,) and np.isfinite(scores).all()
    assert np.allclose(get_ranker("teacher_confidence").scores(world), -world.static["teacher_abs_error"].numpy())
    student = world.new_student()
    pred = predict(student, world.encoded.subset(range(n)), 64)[:, 0]
    squared = ((pred - world.cache.logits[:n, 0]) ** 2).double().numpy()
    assert np.allclose(get_ranker("teacher_student_kl").scores(world), squared, rtol=1e-5, atol=1e-6)
    batched = get_ranker("influence", scope="all").scores(world)
    rows = get_ranker("influence", scope="all", method="per_row").scores(world)
    assert np.allclose(batched, rows, rtol=1e-4, atol=1e-5 * np.abs(rows).max())
