"""Every step function: backward against central differences, and numpy against the reference."""

import numpy as np
import pytest
from helpers import fd_check, rand

from minattn import reference, resize, steps
from minattn.validate import as_tuple

CASES = {
    "conv1x1": (
        "conv1x1",
        lambda: dict(x=rand(2, 5, 3, 4), weight=rand(3, 5, 1, 1, seed=1), bias=rand(3, seed=2)),
        ("x", "weight", "bias"),
    ),
    "flatten": ("flatten", lambda: dict(x=rand(2, 3, 3, 4)), ("x",)),
    "energy": (
        "energy",
        lambda: dict(query=rand(2, 3, 7), key=rand(2, 3, 7, seed=1)),
        ("query", "key"),
    ),
    "scale": ("scale", lambda: dict(energy=rand(2, 5, 5), scale=0.37), ("energy",)),
    "softmax": ("softmax", lambda: dict(energy=3 * rand(2, 6, 6)), ("energy",)),
    "weighted_sum": (
        "weighted_sum",
        lambda: dict(value=rand(2, 4, 6), attention=rand(2, 6, 6, seed=1)),
        ("value", "attention"),
    ),
    "unflatten": ("unflatten", lambda: dict(x=rand(2, 3, 12), h=3, w=4), ("x",)),
    "residual": (
        "residual",
        lambda: dict(x=rand(2, 3, 4, 4), f=rand(2, 3, 4, 4, seed=1)),
        ("x", "f"),
    ),
    "residual_gamma": (
        "residual",
        lambda: dict(x=rand(2, 3, 4, 4), f=rand(2, 3, 4, 4, seed=1), gamma=np.array([0.7])),
        ("x", "f", "gamma"),
    ),
}
RESIZE_CASES = {
    "avg_pool ds=2": ("avg_pool", lambda: dict(x=rand(2, 3, 4, 6), ds=2), ("x",)),
    "avg_pool ds=3": ("avg_pool", lambda: dict(x=rand(1, 2, 6, 9), ds=3), ("x",)),
    "nearest ds=2": ("upsample", lambda: dict(x=rand(2, 3, 3, 2), ds=2, mode="nearest"), ("x",)),
    "nearest ds=3": ("upsample", lambda: dict(x=rand(1, 2, 2, 3), ds=3, mode="nearest"), ("x",)),
    "bilinear ds=2": ("upsample", lambda: dict(x=rand(2, 3, 3, 2), ds=2, mode="bilinear"), ("x",)),
    "bilinear ds=4": ("upsample", lambda: dict(x=rand(1, 2, 3, 4), ds=4, mode="bilinear"), ("x",)),
    "bilinear ds=1": ("upsample", lambda: dict(x=rand(1, 2, 3, 4), ds=1, mode="bilinear"), ("x",)),
}


def _pair(module, stem):
    return getattr(module, f"{stem}_forward"), getattr(module, f"{stem}_backward")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("impl", [steps, reference], ids=["numpy", "reference"])
def test_step_backward_matches_finite_differences(case, impl):
    stem, make, names = CASES[case]
    forward, backward = _pair(impl, stem)
    fd_check(forward, make(), names, backward)


@pytest.mark.parametrize("case", RESIZE_CASES)
@pytest.mark.parametrize("impl", [resize, reference], ids=["numpy", "reference"])
def test_resize_backward_matches_finite_differences(case, impl):
    stem, make, names = RESIZE_CASES[case]
    forward, backward = _pair(impl, stem)
    fd_check(forward, make(), names, backward)


@pytest.mark.parametrize("case", {**CASES, **RESIZE_CASES})
def test_numpy_step_agrees_with_reference(case):
    stem, make, names = {**CASES, **RESIZE_CASES}[case]
    fast = resize if stem in ("avg_pool", "upsample") else steps
    args = make()
    out_fast, cache_fast = _pair(fast, stem)[0](**args)
    out_ref, cache_ref = _pair(reference, stem)[0](**args)
    np.testing.assert_allclose(out_fast, out_ref, rtol=1e-12, atol=1e-12)
    dout = rand(*out_fast.shape, seed=5)
    g_fast, g_ref = (
        _pair(fast, stem)[1](dout, cache_fast),
        _pair(reference, stem)[1](dout, cache_ref),
    )
    g_fast = as_tuple(g_fast)
    g_ref = as_tuple(g_ref)
    for a, b in zip(g_fast, g_ref, strict=True):
        if a is None:
            assert b is None
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_softmax_is_stable_and_rows_sum_to_one():
    energy = np.array([[[1000.0, 1000.0, -1000.0], [0.0, 1e4, 0.0]]])
    attention, _ = steps.softmax_forward(energy)
    assert np.isfinite(attention).all()
    np.testing.assert_allclose(attention, [[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]], atol=1e-300)


def test_bilinear_matrix_matches_hand_computed_pytorch_rule():
    # 2 pixels [a, b] upsampled by 2 with align_corners=False: output centres at
    # source coordinates -0.25 (clamped to 0), 0.25, 0.75, 1.25 (right neighbour clamped).
    M = resize.bilinear_matrix(2, 2)
    expected = [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
    np.testing.assert_allclose(M, expected)


def test_nearest_copies_blocks():
    x = np.arange(4.0).reshape(1, 1, 2, 2)
    up, _ = resize.upsample_forward(x, 2, "nearest")
    assert up[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]


def test_energy_is_the_article_product():
    q, k = rand(1, 3, 5), rand(1, 3, 5, seed=1)
    energy, _ = steps.energy_forward(q, k)
    i, j = 2, 4
    assert energy[0, i, j] == pytest.approx(sum(q[0, c, i] * k[0, c, j] for c in range(3)))


# ---------------------------------------------------------------- SciPy as an independent oracle


def test_softmax_agrees_with_scipy():
    from scipy.special import softmax

    energy = np.random.default_rng(4).standard_normal((2, 5, 7)) * 30
    np.testing.assert_allclose(steps.softmax_forward(energy)[0], softmax(energy, axis=-1), 1e-13)


def test_streaming_log_sum_exp_agrees_with_scipy(numba_kernels):
    from scipy.special import logsumexp

    rng = np.random.default_rng(5)
    q, k = rng.standard_normal((2, 2, 3, 50))
    v = rng.standard_normal((2, 4, 50))
    _, lse = numba_kernels.attention_forward(q, k, v, 0.7)
    energy = 0.7 * np.einsum("bci,bcj->bij", q, k)
    np.testing.assert_allclose(lse.reshape(2, 50), logsumexp(energy, axis=-1), rtol=1e-12)


def test_bam_gradient_passes_scipy_check_grad():
    """scipy.optimize.check_grad: its own finite differences of L(x) = sum(y * dy)."""
    from helpers import random_module
    from scipy.optimize import check_grad

    bam = random_module(8, 2)
    shape = (1, 8, 4, 4)
    dy = np.random.default_rng(6).standard_normal(shape)

    def loss(flat):
        return float(np.sum(bam.forward(flat.reshape(shape)) * dy))

    def grad(flat):
        bam.forward(flat.reshape(shape))
        return bam.backward(dy).ravel()

    x0 = np.random.default_rng(7).standard_normal(np.prod(shape))
    err = check_grad(loss, grad, x0, epsilon=1e-6)
    assert err < 1e-6 * np.linalg.norm(grad(x0)), err
