"""The KD stack: every registry loss, layer maps, the output probe, the teacher cache, the
distiller's learned projections, and the trainers' defining update rules, on tiny models."""

import copy

import pytest
import torch
from torch import nn

from augrl import models
from augrl.batching import encode
from augrl.errors import ConfigError
from augrl.kd import LOSSES, Distiller, LayerMap, Needs, Outputs, TeacherCache, model_outputs, parse_objective
from augrl.kd.cotrain import CoTrainer
from augrl.kd.domains import DomainHead, expertise_weights, prototype_scores
from augrl.kd.losses import hard_ce
from augrl.kd.multi_teacher import combine_logits
from augrl.kd.newsbert import NewsBertTrainer, build_shared_student, momentum_gradients
from augrl.kd.rco import anchor_epochs, stage_of
from augrl.tasks import load_task
from augrl.training import TrainConfig

REQUIRED = ["dark_ce", "logit_mse", "hard_ce", "attention_mse", "hidden_mse", "embedding_mse", "pkd",
            "minilm_relation", "hidden_cos"]
L2A = {"attention_mse": 1.0, "hidden_mse": 1.0, "dark_ce": 1.0}


def test_registry_holds_every_loss_with_a_documented_formula():
    for name in REQUIRED + ["domain_transfer"]:
        doc = LOSSES[name].fn.__doc__
        assert doc and "(B" in doc, f"{name} docstring must state shapes"


# ----------------------------------------------------------------------------- synthetic outputs

B, L, H, HEADS, T_LAYERS = 3, 6, 8, 2, 4
MAP = LayerMap(((2, 1), (4, 2)))


def _teacher(seed: int = 0) -> Outputs:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, 4:] = 0  # a padded example
    scores = tuple(torch.randn(B, HEADS, L, L, generator=g) for _ in range(T_LAYERS))
    from augrl.kd.outputs import attention_probs

    return Outputs(torch.randn(B, 3, generator=g),
                   hidden_states=tuple(torch.randn(B, L, H, generator=g) for _ in range(T_LAYERS + 1)),
                   attentions=tuple(attention_probs(s, mask) for s in scores), attention_scores=scores,
                   values=tuple(torch.randn(B, L, H, generator=g) for _ in range(T_LAYERS)), mask=mask,
                   extras={"domain_repr": torch.randn(B, H, generator=g), "domain": torch.tensor([0, 1, 0])})


def _student_like(teacher: Outputs, requires_grad: bool = False) -> Outputs:
    """A 2-layer student whose layer s equals the teacher's mapped layer (2 -> 1, 4 -> 2)."""
    def pick(seq, layers):
        return tuple(seq[i].clone().requires_grad_(requires_grad) for i in layers)

    return Outputs(teacher.logits.clone().requires_grad_(requires_grad), pick(teacher.hidden_states, [0, 2, 4]),
                   pick(teacher.attentions, [1, 3]), pick(teacher.attention_scores, [1, 3]),
                   pick(teacher.values, [1, 3]), teacher.mask, dict(teacher.extras))


def _call(name: str, student: Outputs, teacher: Outputs, module=None, **params):
    entry = LOSSES[name]
    if entry.needs:
        params["layer_map"] = MAP
    if module is not None:
        params["module"] = module
    return entry.fn(student, teacher if entry.needs_teacher else None, torch.tensor([0, 1, 2]), **params)


def _equal_case(name: str, teacher: Outputs):
    """(student equal to the teacher, its loss module) for ``name``."""
    student = _student_like(teacher)
    module = None
    if name == "domain_transfer":
        module = DomainHead(H, 2, out_width=H)
        with torch.no_grad():
            rep = module(student.hidden_states[2], student.mask, student.extras["domain"])
        teacher.extras["domain_repr"] = rep
    if name == "hard_ce":
        student.logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 2]), 3).float() * 50
    return student, module


@pytest.mark.parametrize("name", REQUIRED + ["domain_transfer"])
def test_loss_zero_at_equality_positive_otherwise_and_differentiable(name):
    teacher = _teacher()
    student, module = _equal_case(name, teacher)
    assert _call(name, student, teacher, module).item() == pytest.approx(0.0, abs=1e-6)
    # a student that differs everywhere: the mapped layers of another random teacher
    moved = _student_like(_teacher(seed=1), requires_grad=True)
    moved.mask = teacher.mask
    loss = _call(name, moved, teacher, module)
    assert loss.item() > 1e-6
    loss.backward()
    grads = [t.grad for t in [moved.logits, *moved.hidden_states, *moved.attentions, *moved.attention_scores,
                              *moved.values] if t.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["dark_ce", "logit_mse", "attention_mse", "hidden_mse", "embedding_mse", "pkd",
                                  "minilm_relation", "hidden_cos"])
def test_loss_shape_mismatch_is_a_clear_error(name):
    teacher = _teacher()
    student = _student_like(teacher)
    if name in ("dark_ce", "logit_mse"):
        student.logits = torch.randn(B, 2)
    elif name in ("attention_mse", "minilm_relation"):
        student.attentions = tuple(a[:, :1] for a in student.attentions)  # one head instead of two
        student.attention_scores = tuple(a[:, :1] for a in student.attention_scores)
    else:
        student.hidden_states = tuple(h[..., :5] for h in student.hidden_states)
    with pytest.raises(ValueError, match="does not match"):
        _call(name, student, teacher)


def test_layer_losses_ignore_padding():
    """The same examples padded further (garbage in the padding) give the same losses."""
    teacher = _teacher()
    student = _student_like(teacher).map(lambda t: t + 0.1 if t.is_floating_point() else t)

    def pad(o: Outputs, extra: int, fill: float) -> Outputs:
        def p(t):
            if not t.is_floating_point() or t.dim() < 3:
                return t
            if t.dim() == 3:  # (B, L, H)
                return torch.cat([t, torch.full((t.shape[0], extra, t.shape[2]), fill)], 1)
            t = torch.cat([t, torch.full((*t.shape[:2], extra, t.shape[3]), fill)], 2)
            return torch.cat([t, torch.full((*t.shape[:3], extra), fill)], 3)
        out = o.map(p)
        out.mask = torch.cat([o.mask, torch.zeros(B, extra, dtype=torch.long)], 1)
        return out

    for name, params in [("attention_mse", {}), ("attention_mse", {"target": "probs"}), ("hidden_mse", {}),
                         ("embedding_mse", {}), ("minilm_relation", {}), ("hidden_cos", {}),
                         ("hidden_cos", {"top_only": False})]:
        base = _call(name, student, teacher, **params)
        padded = _call(name, pad(student, 3, 7.0), pad(teacher, 3, 0.0), **params)
        assert padded.item() == pytest.approx(base.item(), rel=1e-5), name


def test_weights_scale_per_example_terms():
    teacher = _teacher()
    student = _student_like(teacher).map(lambda t: t + 0.2 if t.is_floating_point() else t)
    for name in ["dark_ce", "hidden_mse", "attention_mse", "hidden_cos"]:
        plain = _call(name, student, teacher)
        assert _call(name, student, teacher, weights=torch.ones(B)).item() == pytest.approx(plain.item(), rel=1e-6)
        only_first = _call(name, student, teacher, weights=torch.tensor([3.0, 0.0, 0.0]))
        first = _call(name, Outputs(student.logits[:1], *(None if x is None else tuple(t[:1] for t in x) for x in
                                    (student.hidden_states, student.attentions, student.attention_scores,
                                     student.values)), student.mask[:1]),
                      Outputs(teacher.logits[:1], *(tuple(t[:1] for t in x) for x in
                              (teacher.hidden_states, teacher.attentions, teacher.attention_scores, teacher.values)),
                              teacher.mask[:1]))
        assert only_first.item() == pytest.approx(first.item(), rel=1e-5)


def test_pkd_and_minilm_formulas_by_hand():
    teacher = _teacher()
    student = _student_like(teacher).map(lambda t: t * 1.5 + 0.2 if t.is_floating_point() else t)
    # pkd: skips the top pair -> only teacher layer 2 vs student layer 1, [CLS] rows
    hs, ht = student.hidden_states[1][:, 0], teacher.hidden_states[2][:, 0]
    want = ((hs / hs.norm(dim=-1, keepdim=True) - ht / ht.norm(dim=-1, keepdim=True)) ** 2).sum(-1).mean()
    assert _call("pkd", student, teacher).item() == pytest.approx(want.item(), rel=1e-5)
    # minilm on an unpadded example: row-mean KL of attentions plus value relations
    one_t = teacher.map(lambda t: t[:1])
    one_s = student.map(lambda t: t[:1])
    p, q = one_t.attentions[3], one_s.attentions[1]
    kl_att = (p * (p.log() - q.log())).sum(-1).mean()
    vt = one_t.values[3].view(1, L, HEADS, H // HEADS).transpose(1, 2)
    vs = one_s.values[1].view(1, L, HEADS, H // HEADS).transpose(1, 2)
    rt = torch.softmax(vt @ vt.transpose(-1, -2) / (H // HEADS) ** 0.5, -1)
    rs = torch.softmax(vs @ vs.transpose(-1, -2) / (H // HEADS) ** 0.5, -1)
    kl_vr = (rt * (rt.log() - rs.log())).sum(-1).mean()
    got = LOSSES["minilm_relation"].fn(one_s, one_t, None, layer_map=MAP)
    assert got.item() == pytest.approx((kl_att + kl_vr).item(), rel=1e-4)


def test_hidden_cos_by_hand_and_scale_free():
    teacher = _teacher()
    student = _student_like(teacher).map(lambda t: t * 1.5 + 0.2 if t.is_floating_point() else t)
    # top pair only (teacher layer 4 vs student layer 2), mean over each example's real tokens
    hs, ht, mask = student.hidden_states[2], teacher.hidden_states[4], teacher.mask.float()
    cos = (hs * ht).sum(-1) / (hs.norm(dim=-1) * ht.norm(dim=-1))
    want = (((1 - cos) * mask).sum(-1) / mask.sum(-1)).mean()
    assert _call("hidden_cos", student, teacher).item() == pytest.approx(want.item(), rel=1e-5)
    both = _call("hidden_cos", student, teacher, top_only=False)
    hs1, ht1 = student.hidden_states[1], teacher.hidden_states[2]
    cos1 = (hs1 * ht1).sum(-1) / (hs1.norm(dim=-1) * ht1.norm(dim=-1))
    want1 = (((1 - cos1) * mask).sum(-1) / mask.sum(-1)).mean()
    assert both.item() == pytest.approx((want + want1).item(), rel=1e-5)
    # scaling the student's states changes nothing; pointing them the other way gives 2
    scaled = _student_like(teacher).map(lambda t: t * 3.0 if t.is_floating_point() else t)
    assert _call("hidden_cos", scaled, teacher).item() == pytest.approx(0.0, abs=1e-6)
    flipped = _student_like(teacher).map(lambda t: -t if t.is_floating_point() else t)
    assert _call("hidden_cos", flipped, teacher).item() == pytest.approx(2.0, rel=1e-5)


def test_hidden_cos_projects_only_when_widths_differ(tiny_model_dir):
    teacher = models.build_teacher(2, tiny_model_dir)
    same = Distiller(models.build_student(2, tiny_model_dir), {"hidden_cos": 1, "dark_ce": 1}, teacher=teacher)
    assert isinstance(same.modules["hidden_cos"], torch.nn.Identity) and same.teacher_needs().hidden_states == {4}
    wider = Distiller(models.build_student(2, tiny_model_dir), {"hidden_cos": 1}, teacher=teacher,
                      teacher_hidden_size=48)
    assert wider.modules["hidden_cos"].weight.shape == (48, 32)


def test_layer_map_uniform_parse_and_errors():
    assert LayerMap.uniform(6, 2).pairs == ((3, 1), (6, 2)) and str(LayerMap.uniform(12, 4)) == "3:1,6:2,9:3,12:4"
    assert LayerMap.parse("6:2, 3:1") == LayerMap.parse({3: 1, 6: 2}) == LayerMap(((3, 1), (6, 2)))
    assert LayerMap.parse("3:1,6:2").top == (6, 2)
    with pytest.raises(ConfigError, match="teacher:student"):
        LayerMap.parse("3-1")
    with pytest.raises(ConfigError, match="mapped twice"):
        LayerMap.parse("3:1,4:1")
    with pytest.raises(ConfigError, match="the student has 2 layers"):
        LayerMap.resolve("3:1,6:3", 6, 2)


def test_parse_objective_forms():
    assert parse_objective('{"attention_mse": 1, "hidden_mse": 1, "dark_ce": 1}') == L2A
    assert parse_objective("attention_mse=1,hidden_mse=1,dark_ce=1") == L2A
    assert parse_objective("dark_ce,hard_ce=0.5") == {"dark_ce": 1.0, "hard_ce": 0.5}
    with pytest.raises(ConfigError, match="unknown KD loss"):
        parse_objective("attn=1")


# ----------------------------------------------------------------------------- real (tiny) models

@pytest.fixture
def toy(toy_task, tiny_model_dir):
    task = load_task(str(toy_task), shots=8, seed=0)
    tok = models.load_tokenizer(tiny_model_dir)
    return task, encode(task.train, tok, task.spec, 32)


def _no_dropout(model):
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def test_probe_matches_eager_attention_and_value_projection(tiny_model_dir, toy):
    _, train = toy
    model = models.build_teacher(2, tiny_model_dir, attentions=True).eval()
    batch = train.batch(range(6))
    needs = Needs.of(hidden_states=[0, 4], attentions=[1, 4], attention_scores=[4], values=[2])
    with torch.no_grad():
        out = model_outputs(model, batch, needs)
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"], output_attentions=True, output_hidden_states=True)
        layer = models.encoder_layers(model)[1]
        value = layer.attention.self.value(ref.hidden_states[1])
    assert out.hidden_states[1] is None and torch.allclose(out.hidden_states[4], ref.hidden_states[4])
    real = batch["attention_mask"][:, None, :, None].bool().expand_as(ref.attentions[0])
    for i in (0, 3):  # padded query rows differ by definition (HF still softmaxes them)
        assert torch.allclose(out.attentions[i][real], ref.attentions[i][real], atol=1e-6)
    assert torch.allclose(out.values[1], value, atol=1e-6) and out.values[0] is None
    assert torch.allclose(torch.softmax(out.attention_scores[3].masked_fill(batch["attention_mask"][:, None, None, :] == 0,
                                                                            -1e9), -1), out.attentions[3], atol=1e-6)


def test_cache_stores_only_mapped_layers_and_repads_to_the_batch(tiny_model_dir, toy):
    _, train = toy
    teacher = models.build_teacher(2, tiny_model_dir)
    student = models.build_student(2, tiny_model_dir)
    distiller = Distiller(student, {**L2A, "embedding_mse": 1, "minilm_relation": 1}, teacher=teacher)
    needs = distiller.teacher_needs()
    assert needs == Needs.of(hidden_states=[0, 2, 4], attention_scores=[2, 4], attentions=[4], values=[4])
    cache = TeacherCache.from_model(teacher, train, needs, batch_size=5, dtype="float32")
    assert cache.stored() == needs and cache.num_layers == 4 and cache.hidden_size == 32
    half = TeacherCache.from_model(teacher, train, needs, batch_size=5)
    assert half.nbytes < cache.nbytes
    idx = [3, 0, 7]
    batch = train.batch(idx)
    looked_up = cache[batch["index"]]
    assert looked_up.mask.shape == batch["attention_mask"].shape and torch.equal(looked_up.mask, batch["attention_mask"])
    teacher.eval()
    with torch.no_grad():
        live = model_outputs(teacher, batch, needs)
    m = batch["attention_mask"].bool()
    assert torch.allclose(looked_up.hidden_states[2][m], live.hidden_states[2][m], atol=1e-5)
    assert looked_up.hidden_states[2][~m].abs().sum() == 0 and looked_up.hidden_states[1] is None
    block = (m[:, None, :, None] & m[:, None, None, :]).expand_as(live.attention_scores[3])
    assert torch.allclose(looked_up.attention_scores[3][block], live.attention_scores[3][block], atol=1e-5)
    # the distiller's losses are the same from the cache and from the live teacher
    torch.manual_seed(0)
    from_cache = distiller.losses(batch, cache)
    torch.manual_seed(0)
    from_live = distiller.losses(batch, teacher)
    for k in from_cache:
        assert from_cache[k].item() == pytest.approx(from_live[k].item(), rel=1e-4, abs=1e-6), k
    with torch.no_grad():  # float16 storage changes the loss very little
        torch.manual_seed(0)
        assert distiller.losses(batch, half)["loss"].item() == pytest.approx(from_live["loss"].item(), rel=1e-2)
    logits_only = TeacherCache.from_model(teacher, train)
    with pytest.raises(ValueError, match="lacks layers"):
        distiller.losses(batch, logits_only)


def test_cache_save_load_round_trip(tiny_model_dir, toy, tmp_path):
    _, train = toy
    teacher = models.build_teacher(2, tiny_model_dir)
    cache = TeacherCache.from_model(teacher, train, Needs.of(hidden_states=[1], attention_scores=[2]))
    cache.save(tmp_path / "c.pt")
    back = TeacherCache.load(tmp_path / "c.pt")
    idx = torch.tensor([1, 5])
    a, b = cache[idx], back[idx]
    assert torch.equal(a.hidden_states[1], b.hidden_states[1]) and torch.equal(a.attention_scores[1], b.attention_scores[1])


def test_distiller_projections_are_trained_and_saved(tiny_model_dir, toy, tmp_path):
    _, train = toy
    teacher = models.build_teacher(2, tiny_model_dir)
    student = models.build_student(2, tiny_model_dir)
    distiller = Distiller(student, {"hidden_mse": 1, "embedding_mse": 1, "dark_ce": 1}, teacher=teacher, lr=1e-2)
    assert set(distiller.modules) == {"hidden_mse", "embedding_mse"}
    optimised = {id(p) for g in distiller.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in optimised for p in distiller.modules.parameters())
    before = distiller.modules["hidden_mse"].weight.detach().clone()
    cache = TeacherCache.from_model(teacher, train, distiller.teacher_needs())
    terms = distiller.step(train.batch(range(8)), cache)
    assert set(terms) == {"hidden_mse", "embedding_mse", "dark_ce", "loss"}
    assert not torch.equal(before, distiller.modules["hidden_mse"].weight)
    path = distiller.save_modules(tmp_path / "kd_modules.pt")
    other = Distiller(models.build_student(2, tiny_model_dir), {"hidden_mse": 1, "embedding_mse": 1, "dark_ce": 1},
                      teacher=teacher)
    other.load_modules(path)
    assert torch.equal(other.modules["hidden_mse"].weight, distiller.modules["hidden_mse"].weight)


def test_distiller_refuses_layer_losses_for_small_students(tiny_model_dir):
    student = models.build_small_student("bilstm", 2, tiny_model_dir)
    with pytest.raises(ConfigError, match="read transformer layers"):
        Distiller(student, L2A, teacher_layers=4)


# ----------------------------------------------------------------------------- trainers

def _pair(tiny_model_dir):
    torch.manual_seed(0)
    teacher = _no_dropout(models.build_teacher(2, tiny_model_dir))
    student = _no_dropout(models.build_student(2, tiny_model_dir))
    return teacher, student


@pytest.mark.parametrize("mode", ["isolated", "shared_grad", "loss_sum"])
def test_cotrain_gradient_isolation(mode, tiny_model_dir, toy):
    _, train = toy
    teacher, student = _pair(tiny_model_dir)
    batch = train.batch(range(8))
    extra = teacher.parameters() if mode == "loss_sum" else ()
    distiller = Distiller(student, {"dark_ce": 1, "hard_ce": 1}, teacher=teacher, extra_parameters=extra)
    trainer = CoTrainer(teacher, student, mode, distiller, TrainConfig(), total=10)
    trainer.backward(batch)
    got = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in teacher.parameters()]
    # the gradient of the teacher's own loss alone
    teacher.zero_grad(set_to_none=True)
    label_only = torch.autograd.grad(hard_ce(model_outputs(teacher, batch), None, batch["labels"]),
                                     list(teacher.parameters()), allow_unused=True)
    same = all(torch.allclose(g, torch.zeros_like(g) if r is None else r, atol=1e-7) for g, r in zip(got, label_only))
    assert same == (mode == "isolated")
    # and over a real step: isolated co-training moves the teacher exactly as training on L_T alone
    if mode == "isolated":
        t2, s2 = _pair(tiny_model_dir)
        d2 = Distiller(s2, {"dark_ce": 1, "hard_ce": 1}, teacher=t2)
        alone = copy.deepcopy(t2)
        CoTrainer(t2, s2, mode, d2, TrainConfig(), total=10).step(batch)
        from augrl.kd import make_optimizer

        opt, sched = make_optimizer(alone.parameters(), TrainConfig().lr, TrainConfig().weight_decay, 10, 0.1)
        alone.train()
        hard_ce(model_outputs(alone, batch), None, batch["labels"]).backward()
        nn.utils.clip_grad_norm_(alone.parameters(), TrainConfig().grad_clip)
        opt.step()
        assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(t2.parameters(), alone.parameters()))


def test_cotrain_shared_grad_changes_the_teacher_through_the_student_loss(tiny_model_dir, toy):
    """With the teacher's own loss switched off, only the student's loss can move the teacher."""
    _, train = toy
    batch = train.batch(range(8))
    for mode, moves in (("isolated", False), ("shared_grad", True)):
        teacher, student = _pair(tiny_model_dir)
        before = [p.detach().clone() for p in teacher.parameters()]
        distiller = Distiller(student, {"dark_ce": 1, "hard_ce": 1}, teacher=teacher)
        CoTrainer(teacher, student, mode, distiller, TrainConfig(lr=1e-2), total=10, teacher_weight=0.0).step(batch)
        changed = any(not torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
        assert changed == moves, mode


def test_momentum_formula_by_hand():
    ps, pt = nn.Parameter(torch.tensor([1.0, 1.0])), nn.Parameter(torch.tensor([1.0, 1.0]))
    ps.grad, pt.grad = torch.tensor([2.0, -1.0]), torch.tensor([4.0, 3.0])
    momentum_gradients([("w", ps, pt)], beta=0.25)
    assert torch.equal(ps.grad, torch.tensor([0.25 * 4 + 0.75 * 2, 0.25 * 3 + 0.75 * -1]))


def test_newsbert_shares_the_head_and_mixes_gradients_exactly(tiny_model_dir, toy):
    _, train = toy
    torch.manual_seed(0)
    teacher = _no_dropout(models.build_teacher(2, tiny_model_dir))
    student = build_shared_student(teacher, 2)
    assert student.classifier is teacher.classifier
    assert student.classifier.weight.data_ptr() == teacher.classifier.weight.data_ptr()
    assert student.bert.embeddings.word_embeddings.weight is not teacher.bert.embeddings.word_embeddings.weight
    assert torch.equal(student.bert.encoder.layer[1].output.dense.weight, teacher.bert.encoder.layer[1].output.dense.weight)
    beta = 0.3
    distiller = Distiller(student, {"dark_ce": 1, "hard_ce": 1}, teacher=teacher)
    trainer = NewsBertTrainer(teacher, student, distiller, beta, TrainConfig(), total=10)
    batch = train.batch(range(8))
    trainer.backward(batch)
    mixed = {name: p.grad.clone() for name, p, _ in trainer.pairs}
    # hand computation: g_t from the teacher's label loss, g_s from the student's loss
    t_params = dict(teacher.named_parameters())
    teacher_out = model_outputs(teacher, batch)
    g_t = torch.autograd.grad(hard_ce(teacher_out, None, batch["labels"]), list(t_params.values()), allow_unused=True)
    g_t = dict(zip(t_params, g_t))
    s_named = [(n, p) for n, p, _ in trainer.pairs]
    student_loss = distiller.losses(batch, teacher_out.detach())["loss"]
    g_s = dict(zip([n for n, _ in s_named], torch.autograd.grad(student_loss, [p for _, p in s_named], allow_unused=True)))
    for name, _, p_t in trainer.pairs:
        t_name = next(k for k, v in t_params.items() if v is p_t)
        gt = g_t[t_name] if g_t[t_name] is not None else torch.zeros_like(mixed[name])
        gs = g_s[name] if g_s[name] is not None else torch.zeros_like(mixed[name])
        assert torch.allclose(mixed[name], beta * gt + (1 - beta) * gs, atol=1e-6), name
    layer0 = [n for n, _, p_t in trainer.pairs if "encoder.layer.1." in n]
    assert layer0 and all(t is t_params[n] for n, _, t in trainer.pairs if n in layer0)  # layer 1 <-> layer 1


def test_metakd_prototype_scores_and_expertise_by_hand():
    # domain 0: class 0 at (1,0),(1,0) ; class 1 at (0,1)   domain 1: class 0 at (0,1) ; class 1 at (0,1)
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 0, 1])
    domains = torch.tensor([0, 0, 0, 1, 1])
    t = prototype_scores(emb, labels, domains, alpha=0.7)
    # instance 0: own prototype (1,0) -> cos 1; other domain's class-0 prototype (0,1) -> cos 0
    assert t[0].item() == pytest.approx(0.7 * 1 + 0.3 * 0)
    # instance 2 (domain 0, class 1): own (0,1) -> 1; domain 1 class 1 (0,1) -> 1
    assert t[2].item() == pytest.approx(1.0)
    # instance 3 (domain 1, class 0): own (0,1) -> 1; domain 0 class 0 (1,0) -> 0
    assert t[3].item() == pytest.approx(0.7)
    probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.0, 1.0], [0.3, 0.7]])
    lam = expertise_weights(t, probs, labels)
    want = [(1 + t[i]) / (1 + torch.exp((probs[i, labels[i]] - 1) ** 2)) for i in range(5)]
    assert torch.allclose(lam, torch.stack(want))
    assert lam[0].item() == pytest.approx((1 + 0.7) / (1 + torch.exp(torch.tensor(0.01)).item()))


def test_multi_teacher_prob_combination_is_what_dark_ce_sees():
    z1, z2, T = torch.randn(4, 3), torch.randn(4, 3), 2.0
    combined = combine_logits([z1, z2], torch.tensor([3.0, 1.0]), "prob", T)
    want = 0.75 * torch.softmax(z1 / T, -1) + 0.25 * torch.softmax(z2 / T, -1)
    assert torch.allclose(torch.softmax(combined / T, -1), want, atol=1e-6)
    assert torch.allclose(combine_logits([z1, z2], torch.ones(2), "logit", T), (z1 + z2) / 2)


def test_rco_route_schedule():
    assert anchor_epochs(10, 3) == [3, 7] and anchor_epochs(10, 1) == [] and anchor_epochs(1, 3) == []
    assert [stage_of(s, 9, 3) for s in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
