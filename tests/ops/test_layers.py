"""The family's step functions (minattn.layers): finite differences, the reference twin,
oracles we did not write (np.cov, np.corrcoef, scipy, torch autograd), no mutation (bad
input: test_ops_errors.py)."""

import numpy as np
import pytest
from helpers import fd_check, rand

from minattn import layers, steps
from minattn.ops.reference import layers as ref_layers
from minattn.validate import as_tuple

NO_TORCH = "torch not installed: the PyTorch oracle is optional"


def away_from_zero(*shape, seed=0):
    """Random values with |v| >= 0.1, so a step of eps never crosses ReLU's kink."""
    v = rand(*shape, seed=seed)
    return v + 0.1 * np.sign(v)


def energy_with_a_clear_maximum(seed=0):
    """Energies whose row maxima beat the runner-up by far more than a finite-difference step."""
    e = rand(2, 5, 5, seed=seed)
    e[np.arange(2)[:, None], np.arange(5), [3, 0, 4, 4, 1]] += 2.0
    return e


# stem -> (make the arguments, the array arguments in the order backward returns them)
CASES = {
    "channel_energy": (lambda: dict(x=rand(2, 4, 7)), ("x",)),
    "rowmax_minus": (lambda: dict(energy=energy_with_a_clear_maximum()), ("energy",)),
    "channel_weighted_sum": (
        lambda: dict(attention=rand(2, 4, 4), value=rand(2, 4, 6, seed=1)),
        ("attention", "value"),
    ),
    "global_avg_pool": (lambda: dict(x=rand(2, 3, 4, 5)), ("x",)),
    "linear": (lambda: dict(x=rand(3, 5), weight=rand(4, 5, seed=1)), ("x", "weight")),
    "linear_bias": (
        lambda: dict(x=rand(3, 5), weight=rand(4, 5, seed=1), bias=rand(4, seed=2)),
        ("x", "weight", "bias"),
    ),
    "relu": (lambda: dict(x=away_from_zero(3, 7)), ("x",)),
    "relu_4d": (lambda: dict(x=away_from_zero(2, 3, 2, 2)), ("x",)),
    "sigmoid": (lambda: dict(x=3 * rand(3, 7)), ("x",)),
    "channel_gate": (
        lambda: dict(x=rand(2, 3, 4, 5), gate=rand(2, 3, seed=1)),
        ("x", "gate"),
    ),
    "centre": (lambda: dict(x=rand(2, 5, 6)), ("x",)),
    "unit_norm": (lambda: dict(x=rand(2, 5, 6)), ("x",)),
}


def _pair(module, case):
    stem = case.replace("_bias", "").replace("_4d", "")
    return getattr(module, f"{stem}_forward"), getattr(module, f"{stem}_backward")


def _tuple(g):
    return as_tuple(g)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", [layers, ref_layers], ids=["numpy", "reference"])
def test_step_backward_matches_finite_differences(case, impl):
    make, names = CASES[case]
    forward, backward = _pair(impl, case)
    fd_check(forward, make(), names, backward)


@pytest.mark.parametrize("case", CASES)
def test_numpy_step_agrees_with_reference(case):
    make, _ = CASES[case]
    args = make()
    (f_fast, b_fast), (f_ref, b_ref) = _pair(layers, case), _pair(ref_layers, case)
    out_fast, cache_fast = f_fast(**args)
    out_ref, cache_ref = f_ref(**args)
    np.testing.assert_allclose(out_fast, out_ref, rtol=1e-12, atol=1e-12)
    dout = rand(*out_fast.shape, seed=5)
    for a, b in zip(_tuple(b_fast(dout, cache_fast)), _tuple(b_ref(dout, cache_ref)), strict=True):
        if a is None:
            assert b is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # the caches are interchangeable: a user's backward gets the package's cache
    for a, b in zip(_tuple(b_fast(dout, cache_ref)), _tuple(b_ref(dout, cache_fast)), strict=True):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", [layers, ref_layers], ids=["numpy", "reference"])
def test_steps_never_modify_their_inputs(case, impl):
    make, _ = CASES[case]
    args = make()
    before = {k: v.copy() for k, v in args.items() if isinstance(v, np.ndarray)}
    forward, backward = _pair(impl, case)
    out, cache = forward(**args)
    dout = rand(*out.shape, seed=5)
    dout_before = dout.copy()
    backward(dout, cache)
    backward(dout, cache)  # twice: a backward that wrote into its cache would differ now
    for k, v in before.items():
        np.testing.assert_array_equal(args[k], v, err_msg=f"{case}: {k} was modified")
    np.testing.assert_array_equal(dout, dout_before, err_msg=f"{case}: dout was modified")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_steps_keep_the_dtype(case, dtype):
    make, _ = CASES[case]
    args = {k: v.astype(dtype) if isinstance(v, np.ndarray) else v for k, v in make().items()}
    forward, backward = _pair(layers, case)
    out, cache = forward(**args)
    assert out.dtype == dtype
    for g in _tuple(backward(rand(*out.shape, seed=5).astype(dtype), cache)):
        assert g is None or g.dtype == dtype


# ---------------------------------------------------------------- what the steps mean


def test_channel_energy_is_every_channel_against_every_channel():
    x = rand(2, 3, 10)
    energy, _ = layers.channel_energy_forward(x)
    for b, i, j in [(0, 0, 1), (1, 2, 2), (1, 2, 0)]:
        assert energy[b, i, j] == pytest.approx(sum(x[b, i, n] * x[b, j, n] for n in range(10)))
    np.testing.assert_allclose(energy, energy.transpose(0, 2, 1))


def test_rowmax_minus_then_softmax_is_the_softmax_of_minus_the_energy():
    """A softmax ignores a constant per row, so DANet's trick is the same as flipping the sign."""
    energy = 5 * rand(2, 6, 6)
    flipped, _ = layers.rowmax_minus_forward(energy)
    a_trick, _ = steps.softmax_forward(flipped)
    e = np.exp(-energy - (-energy).max(axis=-1, keepdims=True))
    np.testing.assert_allclose(a_trick, e / e.sum(axis=-1, keepdims=True), rtol=1e-12)
    assert (flipped >= 0).all() and (flipped.min(axis=-1) == 0).all()


def test_rowmax_minus_gradient_goes_to_the_first_maximum_on_ties():
    energy = np.array([[[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]])
    dout = np.array([[[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]]])
    for impl in (layers, ref_layers):
        out, cache = impl.rowmax_minus_forward(energy)
        np.testing.assert_array_equal(out, [[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
        np.testing.assert_array_equal(
            impl.rowmax_minus_backward(dout, cache), [[[-1.0, 5.0, -4.0], [2.0, -1.0, -1.0]]]
        )


def test_sigmoid_is_finite_and_exact_at_the_extremes():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    for impl in (layers, ref_layers):
        with np.errstate(over="raise"):
            s, _ = impl.sigmoid_forward(x)
        assert s[2] == 0.5 and s[4] == 1.0 and s[0] == 0.0
        np.testing.assert_allclose(s[1], np.exp(-40.0), rtol=1e-12)
    s32, _ = layers.sigmoid_forward(np.array([-200.0, 200.0], np.float32))
    assert s32.dtype == np.float32 and s32.tolist() == [0.0, 1.0]


def test_global_avg_pool_and_gate_are_squeeze_and_excite():
    x = rand(2, 3, 4, 5)
    pooled, _ = layers.global_avg_pool_forward(x)
    assert pooled[1, 2] == pytest.approx(x[1, 2].sum() / 20)
    gate = rand(2, 3, seed=1)
    y, _ = layers.channel_gate_forward(x, gate)
    np.testing.assert_array_equal(y[1, 2], x[1, 2] * gate[1, 2])


def pixel_energy(x, kind):
    """The covariance module's energy, composed from the steps as `CovarianceAttention` does."""
    xc, _ = layers.centre_forward(x)
    if kind == "correlation":
        z, _ = layers.unit_norm_forward(xc)
        return steps.energy_forward(z, z)[0]
    energy, _ = steps.energy_forward(xc, xc)
    return steps.scale_forward(energy, 1.0 / (x.shape[1] - 1))[0]


@pytest.mark.parametrize("shape", [(1, 5, 7), (2, 8, 12), (3, 2, 4)])
def test_pixel_covariance_is_numpys_cov_of_the_pixels(shape):
    """Pixel n is a random variable, its C channel values its samples: X is (C, N) per image,
    so np.cov(X.T) (rows are variables) is the N x N covariance the article describes."""
    x = rand(*shape) + 3.0 * rand(1, 1, shape[2], seed=1)  # pixels with different means
    cov, corr = pixel_energy(x, "covariance"), pixel_energy(x, "correlation")
    for b in range(shape[0]):
        np.testing.assert_allclose(cov[b], np.cov(x[b].T), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(corr[b], np.corrcoef(x[b].T), rtol=1e-12, atol=1e-13)


def test_pixel_correlation_agrees_with_scipy_pearsonr():
    stats = pytest.importorskip("scipy.stats", reason="scipy not installed")
    x = rand(1, 9, 5)
    corr = pixel_energy(x, "correlation")[0]
    for i, j in [(0, 1), (2, 4), (3, 3)]:
        assert corr[i, j] == pytest.approx(stats.pearsonr(x[0, :, i], x[0, :, j])[0], abs=1e-12)


def test_centre_leaves_zero_mean_and_unit_norm_leaves_unit_length():
    xc, _ = layers.centre_forward(rand(2, 5, 6) + 4.0)
    np.testing.assert_allclose(xc.mean(axis=1), 0, atol=1e-15)
    z, _ = layers.unit_norm_forward(xc)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, rtol=1e-14)


def test_unit_norm_of_a_constant_pixel_is_zero_not_nan():
    x = rand(1, 4, 3)
    x[0, :, 1] = 2.5  # every channel equal: zero variance, np.corrcoef gives NaN here
    xc, _ = layers.centre_forward(x)
    for impl in (layers, ref_layers):
        z, cache = impl.unit_norm_forward(xc)
        assert np.isfinite(z).all() and np.abs(z[0, :, 1]).max() < 1e-3
        assert np.isfinite(impl.unit_norm_backward(rand(1, 4, 3, seed=1), cache)).all()


# ---------------------------------------------------------------- PyTorch autograd


def _torch_steps(torch):
    F = torch.nn.functional
    return {
        "channel_energy": lambda x: torch.bmm(x, x.transpose(1, 2)),
        "rowmax_minus": lambda energy: (
            torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        ),
        "channel_weighted_sum": lambda attention, value: torch.bmm(attention, value),
        "global_avg_pool": lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1),
        "linear": lambda x, weight: F.linear(x, weight),
        "linear_bias": lambda x, weight, bias: F.linear(x, weight, bias),
        "relu": torch.relu,
        "relu_4d": torch.relu,
        "sigmoid": torch.sigmoid,
        "channel_gate": lambda x, gate: x * gate.view(*gate.shape, 1, 1).expand_as(x),
        "centre": lambda x: x - x.mean(dim=1, keepdim=True),
        "unit_norm": lambda x: F.normalize(x, dim=1),
    }


@pytest.mark.parametrize("case", CASES)
def test_step_agrees_with_torch_autograd(case):
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    make, names = CASES[case]
    args = make()
    forward, backward = _pair(layers, case)
    out, cache = forward(**args)
    dout = rand(*out.shape, seed=5)
    grads = _tuple(backward(dout, cache))
    targs = {k: torch.tensor(v, requires_grad=True) for k, v in args.items()}
    tout = _torch_steps(torch)[case](**targs)
    tout.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    for name, g in zip(names, grads, strict=False):
        np.testing.assert_allclose(g, targs[name].grad.numpy(), rtol=1e-10, atol=1e-12)


def test_pixel_covariance_agrees_with_torch_cov_and_corrcoef():
    torch = pytest.importorskip("torch", reason=NO_TORCH)
    x = rand(2, 6, 9)
    for kind, oracle in (("covariance", torch.cov), ("correlation", torch.corrcoef)):
        ours = pixel_energy(x, kind)
        for b in range(2):
            theirs = oracle(torch.tensor(x[b].T)).numpy()
            np.testing.assert_allclose(ours[b], theirs, rtol=1e-12, atol=1e-13)
