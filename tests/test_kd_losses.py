import pytest
import torch

from augrl.errors import ConfigError
from augrl.kd import LOSSES, Outputs, register_loss, validate_objective


@pytest.mark.parametrize("name", ["dark_ce", "logit_mse"])
def test_teacher_losses_zero_at_equality_positive_otherwise(name):
    torch.manual_seed(0)
    t = torch.randn(4, 3)
    fn = LOSSES[name].fn
    assert fn(Outputs(t.clone()), Outputs(t), None).item() == pytest.approx(0.0, abs=1e-6)
    s = torch.randn(4, 3, requires_grad=True)
    loss = fn(Outputs(s), Outputs(t), None)
    assert loss.item() > 0
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="does not match"):
        fn(Outputs(torch.randn(4, 2)), Outputs(t), None)


def test_dark_ce_equals_soft_cross_entropy_minus_teacher_entropy():
    torch.manual_seed(1)
    s, t, T = torch.randn(5, 3), torch.randn(5, 3), 2.0
    p = torch.softmax(t / T, -1)
    soft_ce = -(p * torch.log_softmax(s / T, -1)).sum(-1).mean()
    entropy = -(p * torch.log(p)).sum(-1).mean()
    got = LOSSES["dark_ce"].fn(Outputs(s), Outputs(t), None, temperature=T)
    assert got.item() == pytest.approx((T ** 2 * (soft_ce - entropy)).item(), rel=1e-5)


def test_hard_ce_classification_and_regression():
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert LOSSES["hard_ce"].fn(Outputs(logits), None, torch.tensor([0, 1])).item() < 1e-6
    assert LOSSES["hard_ce"].fn(Outputs(logits), None, torch.tensor([1, 0])).item() > 10
    pred = torch.tensor([[1.0], [3.0]])
    assert LOSSES["hard_ce"].fn(Outputs(pred), None, torch.tensor([1.0, 2.0])).item() == pytest.approx(0.5)
    assert not LOSSES["hard_ce"].needs_teacher


def test_register_loss_and_objective_validation():
    @register_loss("test_l1", overwrite=True)
    def l1(student, teacher, labels):
        return (student.logits - teacher.logits).abs().mean()

    assert "test_l1" in LOSSES
    with pytest.raises(ConfigError, match="already registered"):
        register_loss("test_l1", l1)
    assert validate_objective({"test_l1": 1, "dark_ce": 0}) == {"test_l1": 1.0}
    with pytest.raises(ConfigError, match="unknown KD loss 'nope'"):
        validate_objective({"nope": 1})
    with pytest.raises(ConfigError, match=">= 0"):
        validate_objective({"dark_ce": -1})
