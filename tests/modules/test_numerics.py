"""Numerics at the edges, inputs never modified, any memory layout, determinism."""

import subprocess
import sys

import numpy as np
import pytest
from helpers import random_module

from minattn import BAM, gradcheck, steps
from minattn.backend import BACKENDS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("magnitude", [1.0, 1e2, 1e4])
def test_softmax_is_finite_and_correct_for_large_energies(dtype, magnitude):
    rng = np.random.default_rng(0)
    energy = (magnitude * rng.uniform(-1, 1, size=(2, 5, 7))).astype(dtype)
    attention, cache = steps.softmax_forward(energy)
    assert attention.dtype == dtype and np.isfinite(attention).all()
    # against the definition evaluated in extended precision with the shift done by hand
    e = energy.astype(np.longdouble)
    expected = np.exp(e - e.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(attention, expected.astype(np.float64), rtol=tol, atol=tol)
    denergy = steps.softmax_backward(rng.standard_normal(energy.shape).astype(dtype), cache)
    assert np.isfinite(denergy).all()


def test_rows_of_equal_energies_give_uniform_attention():
    for value in (0.0, -3e4, 1e4):
        attention, _ = steps.softmax_forward(np.full((1, 3, 5), value))
        np.testing.assert_array_equal(attention, np.full((1, 3, 5), 0.2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_pooled_pixel(backend):
    """N = 1: the one pixel attends to itself with weight 1; out = value of the pooled map."""
    bam = random_module(8, 4, backend=backend, use_gamma=True)
    x = np.random.default_rng(1).standard_normal((2, 8, 4, 4))
    y = bam.forward(x)
    pooled = x.mean(axis=(2, 3))  # (B, C)
    W, b = bam.params["value_conv.weight"][:, :, 0, 0], bam.params["value_conv.bias"]
    value = pooled @ W.T + b
    np.testing.assert_allclose(y, x + 0.8 * value[:, :, None, None], rtol=1e-12)
    if bam.attention is not None:
        np.testing.assert_array_equal(bam.attention, np.ones((2, 1, 1)))
    bam.backward(np.ones_like(y))
    # one key: the softmax is constant, so query and key get no gradient (up to rounding)
    assert np.abs(bam.grads["query_conv.weight"]).max() < 1e-14
    assert gradcheck(bam, x).ok


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1e-30, 1e-8, 1e8, 1e15])
def test_tiny_and_huge_inputs_stay_finite(dtype, scale):
    bam = random_module(16, 2, dtype=dtype, use_gamma=True)
    x = (scale * np.random.default_rng(2).standard_normal((1, 16, 4, 4))).astype(dtype)
    y = bam.forward(x)
    dx = bam.backward(np.ones_like(y))
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert all(np.isfinite(g).all() for g in bam.grads.values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_are_never_modified(backend):
    bam = random_module(8, 2, backend=backend)
    x = np.random.default_rng(3).standard_normal((2, 8, 4, 6))
    dy = np.random.default_rng(4).standard_normal(x.shape)
    x0, dy0 = x.copy(), dy.copy()
    sd = bam.state_dict()
    bam.load_state_dict(sd)
    sd0 = {k: v.copy() for k, v in sd.items()}
    bam.forward(x)
    bam.backward(dy)
    bam.attention_maps(x, [(1, 1)])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)
    for k in sd:
        np.testing.assert_array_equal(sd[k], sd0[k])


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_only_views_and_fortran_order_give_the_same_results(backend):
    bam = random_module(8, 2, backend=backend)
    rng = np.random.default_rng(5)
    base = rng.standard_normal((2, 8, 4, 6))
    dy = rng.standard_normal(base.shape)
    y = bam.forward(base)
    dx = bam.backward(dy)
    grads = {k: v.copy() for k, v in bam.grads.items()}

    read_only = base.copy()
    read_only.flags.writeable = False
    wide = rng.standard_normal((2, 8, 4, 12))
    wide[..., ::2] = base  # a strided view: every other column
    transposed = np.ascontiguousarray(base.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    for variant in (read_only, wide[..., ::2], transposed, np.asfortranarray(base)):
        for dy_variant in (dy, np.asfortranarray(dy)):
            np.testing.assert_allclose(bam.forward(variant), y, rtol=1e-13, atol=1e-13)
            np.testing.assert_allclose(bam.backward(dy_variant), dx, rtol=1e-13, atol=1e-13)
            for k in grads:
                np.testing.assert_allclose(bam.grads[k], grads[k], rtol=1e-12, atol=1e-13)


def test_same_seed_same_outputs_across_backends():
    x = np.random.default_rng(6).standard_normal((1, 8, 4, 4))
    ys = [BAM(8, 2, seed=11, backend=b).forward(x) for b in BACKENDS]
    for y in ys[1:]:
        np.testing.assert_allclose(y, ys[0], rtol=1e-12)
    np.testing.assert_array_equal(BAM(8, 2, seed=11).forward(x), ys[1])  # bitwise, same backend


def test_a_generator_seed_is_used_as_given():
    a = BAM(8, 2, seed=np.random.default_rng(5))
    b = BAM(8, 2, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(a.params["value_conv.weight"], b.params["value_conv.weight"])


def test_same_seed_same_outputs_across_processes():
    code = (
        "import numpy as np, minattn, hashlib;"
        "x = np.random.default_rng(0).standard_normal((1, 16, 8, 8));"
        "b = minattn.BAM(16, 2, seed=7); y = b(x); dx = b.backward(x);"
        "print(hashlib.sha256(y.tobytes() + dx.tobytes()).hexdigest())"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout and len(runs[0].stdout.strip()) == 64


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_backward_is_identical(backend):
    bam = random_module(8, 2, backend=backend, use_gamma=True)
    x = np.random.default_rng(7).standard_normal((2, 8, 4, 4))
    dy = np.random.default_rng(8).standard_normal(x.shape)
    bam.forward(x)
    dx1 = bam.backward(dy)
    g1 = {k: v.copy() for k, v in bam.grads.items()}
    dx2 = bam.backward(dy)
    np.testing.assert_array_equal(dx1, dx2)
    for k in g1:
        np.testing.assert_array_equal(g1[k], bam.grads[k])


def test_float32_error_against_float64_is_small():
    """The figures in docs/numerics.md come from this comparison (BAM(64, 2), 32 x 32 input)."""
    m64 = random_module(64, 2, seed=9, use_gamma=True)
    m32 = BAM(64, 2, dtype=np.float32, use_gamma=True)
    m32.load_state_dict(m64.state_dict())
    rng = np.random.default_rng(10)
    x, dy = rng.standard_normal((2, 64, 32, 32)), rng.standard_normal((2, 64, 32, 32))
    y64, y32 = m64.forward(x), m32.forward(x.astype(np.float32))
    dx64, dx32 = m64.backward(dy), m32.backward(dy.astype(np.float32))

    def err(a, b):
        return np.abs(a.astype(np.float64) - b).max() / np.abs(b).max()

    assert err(y32, y64) < 1e-6
    assert err(dx32, dx64) < 1e-6
    for k in m64.grads:
        if k != "key_conv.bias":  # exactly zero in theory: compare on the dx scale
            assert err(m32.grads[k], m64.grads[k]) < 1e-4, k
