"""minattn.losses: finite differences, PyTorch, stability, errors."""

import numpy as np
import pytest

from minattn import losses, numerical_gradient, rel_error

RNG = np.random.default_rng(7)


def distance_and_mask(shape=(2, 5, 6), margin=2.0, seed=0):
    """Random distances in [0, 2 margin], none within 0.05 of the hinge's kink at the margin."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(0, 2 * margin, size=shape)
    d = np.where(np.abs(d - margin) < 0.05, d + 0.1, d)
    changed = rng.random(shape) < 0.3
    return d, changed


CASES = {
    "mse": lambda rng: (rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))),
    "bce_with_logits": lambda rng: (3 * rng.standard_normal((3, 4, 5)), rng.random((3, 4, 5))),
    "contrastive": lambda rng: distance_and_mask(seed=int(rng.integers(100))),
}


def pair(name):
    return getattr(losses, f"{name}_forward"), getattr(losses, f"{name}_backward")


@pytest.mark.parametrize("name", CASES)
def test_backward_matches_finite_differences(name):
    forward, backward = pair(name)
    x, other = CASES[name](np.random.default_rng(1))
    dloss = 1.7  # an upstream gradient other than 1 also checks the chain rule
    _, cache = forward(x, other)
    analytic = backward(dloss, cache)
    # eps 1e-5, not 1e-6: the loss is O(1) and its rounding (1e-16) over 2 eps would be
    # 5e-11, which is 1e-7 of the smallest gradients here (the loss is a mean of 60 terms)
    numeric = numerical_gradient(lambda z: dloss * forward(z, other)[0], x, eps=1e-5)
    assert analytic.shape == x.shape
    assert rel_error(analytic, numeric) < 1e-7


@pytest.mark.parametrize("name", CASES)
def test_one_call_form_is_forward_then_backward(name):
    forward, backward = pair(name)
    x, other = CASES[name](np.random.default_rng(2))
    loss, grad = getattr(losses, f"{name}_loss")(x, other)
    loss2, cache = forward(x, other)
    assert loss == loss2
    np.testing.assert_array_equal(grad, backward(1.0, cache))


@pytest.mark.parametrize("name", CASES)
def test_inputs_not_modified(name):
    forward, backward = pair(name)
    x, other = CASES[name](np.random.default_rng(3))
    x0, other0 = x.copy(), other.copy()
    _, cache = forward(x, other)
    backward(1.0, cache)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(other, other0)


def test_contrastive_by_hand():
    # two unchanged pixels at distances 1 and 3, one changed at 0.5 (margin 2):
    # pull = (1 + 9) / (2 + 1e-4), push = (2 - 0.5)^2 / (1 + 1e-4)
    d = np.array([1.0, 3.0, 0.5])
    changed = np.array([False, False, True])
    loss, grad = losses.contrastive_loss(d, changed, margin=2.0)
    assert loss == pytest.approx(10 / 2.0001 + 2.25 / 1.0001, rel=1e-14)
    np.testing.assert_allclose(grad, [2 / 2.0001, 6 / 2.0001, -3 / 1.0001], rtol=1e-14)
    # a changed pixel beyond the margin costs nothing and gets no gradient
    loss, grad = losses.contrastive_loss(np.array([5.0]), np.array([True]))
    assert loss == 0 and grad[0] == 0


def test_contrastive_classes_are_averaged_separately():
    # doubling the number of unchanged pixels (same distances) leaves the loss as it was
    d, changed = distance_and_mask((40,))
    loss = losses.contrastive_forward(d, changed)[0]
    d2 = np.concatenate([d, d[~changed]])
    c2 = np.concatenate([changed, np.zeros((~changed).sum(), bool)])
    assert losses.contrastive_forward(d2, c2)[0] == pytest.approx(loss, rel=1e-5)


def test_bce_is_stable_for_large_logits():
    z = np.array([1000.0, -1000.0, 800.0, -800.0, 0.0])
    t = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    loss, grad = losses.bce_with_logits_loss(z, t)
    # wrong-sign logits cost |z| each, right-sign ones nothing, z = 0 costs log 2
    assert loss == pytest.approx((1000 + 1000 + np.log(2)) / 5, rel=1e-14)
    np.testing.assert_allclose(grad, np.array([1, -1, 0, 0, -0.5]) / 5, atol=1e-300)


def test_float32_stays_float32():
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    t = RNG.random((4, 3)).astype(np.float32)
    assert losses.mse_loss(x, t)[1].dtype == np.float32
    assert losses.bce_with_logits_loss(x, t)[1].dtype == np.float32
    assert losses.contrastive_loss(np.abs(x), t > 0.5)[1].dtype == np.float32


# ---------------------------------------------------------------- PyTorch


def test_agree_with_pytorch():
    torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch oracle")
    import torch.nn.functional as F
    from torch_ports import BCL, stanet_label

    rng = np.random.default_rng(4)

    def check(ours, theirs_fn, x, other):
        loss, grad = ours(x, other)
        xt = torch.tensor(x, requires_grad=True)
        lt = theirs_fn(xt)
        lt.backward()
        assert abs(loss - lt.item()) <= 1e-10 * abs(lt.item())
        assert np.abs(grad - xt.grad.numpy()).max() <= 1e-10 * np.abs(xt.grad.numpy()).max()

    x, t = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    check(losses.mse_loss, lambda xt: F.mse_loss(xt, torch.tensor(t)), x, t)
    z, p = 5 * rng.standard_normal((2, 3, 4, 5)), rng.random((2, 3, 4, 5))
    check(
        losses.bce_with_logits_loss,
        lambda zt: F.binary_cross_entropy_with_logits(zt, torch.tensor(p)),
        z,
        p,
    )
    for seed in range(3):
        d, changed = distance_and_mask((2, 8, 8), seed=seed)
        label = stanet_label(changed)
        check(losses.contrastive_loss, lambda dt, label=label: BCL(2.0)(dt, label), d, changed)
    # a batch with no changed pixel at all: STANet's 1e-4 keeps the division finite
    d, _ = distance_and_mask((2, 8, 8))
    changed = np.zeros(d.shape, bool)
    check(losses.contrastive_loss, lambda dt: BCL(2.0)(dt, stanet_label(changed)), d, changed)


# ---------------------------------------------------------------- errors


def test_errors_name_the_argument():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="pred and target must have the same shape"):
        losses.mse_forward(x, np.ones((3, 2)))
    with pytest.raises(TypeError, match="pred must be a numpy.ndarray"):
        losses.mse_forward([1.0], x)
    with pytest.raises(TypeError, match="same dtype"):
        losses.mse_forward(x, x.astype(np.float32))
    with pytest.raises(ValueError, match=r"target must lie in \[0, 1\]"):
        losses.bce_with_logits_forward(x, 2 * x)
    with pytest.raises(TypeError, match="changed must be a bool"):
        losses.contrastive_forward(x, np.ones((2, 3)))
    with pytest.raises(ValueError, match="changed must have the shape of distance"):
        losses.contrastive_forward(x, np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="distance must be >= 0"):
        losses.contrastive_forward(-x, np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="margin must be a number > 0"):
        losses.contrastive_forward(x, np.ones((2, 3), bool), margin=0)
    with pytest.raises(ValueError, match="contains 1 NaN"):
        losses.mse_forward(np.array([np.nan, 1.0]), np.ones(2))
    _, cache = losses.mse_forward(x, x)
    with pytest.raises(TypeError, match="dloss must be a finite number"):
        losses.mse_backward(np.ones(3), cache)
