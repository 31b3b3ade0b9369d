"""BatchNorm2d (minattn.batchnorm): finite differences in both modes, the reference twin,
properties that follow from the definition, torch's F.batch_norm, no mutation (bad input:
test_ops_errors.py)."""

import numpy as np
import pytest
from helpers import bn_args

from minattn import batchnorm, numerical_gradient
from minattn.ops.reference import batchnorm as ref_batchnorm

RTOL = 1e-7
SHAPES = [(2, 3, 4, 5), (1, 2, 1, 3), (3, 1, 2, 2), (4, 2, 1, 1)]


def fd_errors(args, training, seed=99):
    """batchnorm_backward against central differences of L = sum(y * dout), per argument."""
    dout = np.random.default_rng(seed).standard_normal(args["x"].shape)
    (_, _, _), cache = batchnorm.batchnorm_forward(**args, training=training)
    grads = dict(
        zip(("x", "weight", "bias"), batchnorm.batchnorm_backward(dout, cache), strict=True)
    )
    errors = {}
    for name, analytic in grads.items():

        def loss(v, name=name):
            return np.sum(
                batchnorm.batchnorm_forward(**{**args, name: v}, training=training)[0][0] * dout
            )

        numeric = numerical_gradient(loss, args[name])
        errors[name] = np.abs(analytic - numeric).max() / max(np.abs(numeric).max(), 1e-3)
    return errors


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_matches_finite_differences(shape, training):
    errors = fd_errors(bn_args(shape), training)
    assert max(errors.values()) < RTOL, errors


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reference_agrees_with_vectorised(shape, training):
    args = bn_args(shape, seed=1)
    out, cache = batchnorm.batchnorm_forward(**args, training=training)
    ref_out, ref_cache = ref_batchnorm.batchnorm_forward(**args, training=training)
    for a, b in zip(out, ref_out, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    dout = np.random.default_rng(5).standard_normal(shape)
    grads = batchnorm.batchnorm_backward(dout, cache)
    ref_grads = ref_batchnorm.batchnorm_backward(dout, ref_cache)
    for a, b in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_training_output_is_normalised_per_channel():
    # from the definition alone: with weight 1 and bias 0 every channel of y has mean 0 and
    # (biased) variance var / (var + eps) over batch and pixels
    args = bn_args((3, 4, 5, 6), seed=2)
    args.update(weight=np.ones(4), bias=np.zeros(4))
    (y, _, _), _ = batchnorm.batchnorm_forward(**args, training=True)
    var = args["x"].var(axis=(0, 2, 3))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-14)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), var / (var + 1e-5), rtol=1e-12)


def test_running_statistics_use_momentum_and_the_unbiased_variance():
    args = bn_args((2, 3, 4, 5), seed=3)
    x = args["x"]
    (_, mean, var), _ = batchnorm.batchnorm_forward(**args, training=True, momentum=0.25)
    np.testing.assert_allclose(mean, 0.75 * args["running_mean"] + 0.25 * x.mean(axis=(0, 2, 3)))
    unbiased = x.transpose(1, 0, 2, 3).reshape(3, -1).var(axis=1, ddof=1)
    np.testing.assert_allclose(var, 0.75 * args["running_var"] + 0.25 * unbiased)


def test_eval_mode_is_the_affine_map_of_the_running_statistics():
    args = bn_args((2, 3, 2, 2), seed=4)
    (y, mean, var), _ = batchnorm.batchnorm_forward(**args, training=False)
    rm, rv = args["running_mean"][:, None, None], args["running_var"][:, None, None]
    expected = args["weight"][:, None, None] * (args["x"] - rm) / np.sqrt(rv + 1e-5)
    np.testing.assert_allclose(y, expected + args["bias"][:, None, None], rtol=1e-13)
    np.testing.assert_array_equal(mean, args["running_mean"])
    np.testing.assert_array_equal(var, args["running_var"])
    assert mean is not args["running_mean"] and var is not args["running_var"]


def test_training_gradient_sums_to_zero_per_channel():
    # y does not change when a channel of x is shifted, so dx sums to 0 over each channel
    args = bn_args((2, 3, 3, 3), seed=6)
    _, cache = batchnorm.batchnorm_forward(**args, training=True)
    dx, _, _ = batchnorm.batchnorm_backward(
        np.random.default_rng(0).standard_normal((2, 3, 3, 3)), cache
    )
    np.testing.assert_allclose(dx.sum(axis=(0, 2, 3)), 0, atol=1e-12)


@pytest.mark.parametrize("module", [batchnorm, ref_batchnorm], ids=["numpy", "reference"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_inputs_are_not_modified(module, training):
    args = bn_args((2, 3, 2, 3), seed=7)
    saved = {k: v.copy() for k, v in args.items()}
    (y, _, _), cache = module.batchnorm_forward(**args, training=training)
    dout = np.random.default_rng(1).standard_normal(y.shape)
    dout_saved = dout.copy()
    module.batchnorm_backward(dout, cache)
    for k, v in args.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)
    np.testing.assert_array_equal(dout, dout_saved)


def test_float32_stays_float32():
    args = {k: v.astype(np.float32) for k, v in bn_args((2, 3, 2, 2), seed=8).items()}
    for training in (True, False):
        out, cache = batchnorm.batchnorm_forward(**args, training=training)
        assert all(a.dtype == np.float32 for a in out)
        grads = batchnorm.batchnorm_backward(np.ones((2, 3, 2, 2), np.float32), cache)
        assert all(g.dtype == np.float32 for g in grads)


# ---------------------------------------------------------------- torch


@pytest.mark.parametrize("momentum", [0.1, 0.3])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_agrees_with_torch(shape, training, momentum):
    torch = pytest.importorskip("torch", reason="torch is the oracle for BatchNorm2d")
    args = bn_args(shape, seed=9)
    dout = np.random.default_rng(10).standard_normal(shape)
    (y, mean, var), cache = batchnorm.batchnorm_forward(
        **args, training=training, momentum=momentum
    )
    dx, dweight, dbias = batchnorm.batchnorm_backward(dout, cache)

    bn = torch.nn.BatchNorm2d(shape[1], momentum=momentum).double()
    bn.train(training)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name).copy_(torch.from_numpy(args[name]))
    xt = torch.tensor(args["x"], requires_grad=True)
    yt = bn(xt)
    yt.backward(torch.from_numpy(dout))

    def rel(a, b):
        b = b.detach().numpy()
        return np.abs(a - b).max() / np.abs(b).max()

    assert rel(y, yt) < 1e-13
    assert rel(mean, bn.running_mean) < 1e-13
    assert rel(var, bn.running_var) < 1e-13
    assert rel(dx, xt.grad) < 1e-10
    assert rel(dweight, bn.weight.grad) < 1e-12
    assert rel(dbias, bn.bias.grad) < 1e-12
