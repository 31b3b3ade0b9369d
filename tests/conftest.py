"""Shared fixtures.

``numba_kernels`` imports :mod:`minattn.kernels` and runs every kernel once on
tiny inputs, in float32 and float64, so each test session pays the JIT (or the
cache load) once, up front, instead of inside whichever test happens to run first.
Tests that use the Numba backend request it by name; tests that do not never
import Numba.
"""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def numba_kernels():
    """The warmed-up ``minattn.kernels`` module."""
    from minattn import kernels

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        q, k = rng.standard_normal((2, 1, 2, 5)).astype(dtype)
        v, dout = rng.standard_normal((2, 1, 3, 5)).astype(dtype)
        out, lse = kernels.attention_forward(q, k, v, 0.5)
        kernels.attention_backward(dout, q, k, v, out, lse, 0.5)
        energy = kernels.energy_numba(q, k, 0.5)
        attention = kernels.softmax_numba(energy)
        kernels.softmax_backward_numba(energy, attention)
        kernels.energy_backward_numba(energy, q, k, 0.5)
        kernels.weighted_sum_numba(v, attention)
        kernels.weighted_sum_backward_numba(dout, v, attention)
        kernels.exp_numba(-np.abs(v))
        x, w = rng.standard_normal((1, 3, 2, 5)), rng.standard_normal((2, 3, 1, 1))
        x, w = x.astype(dtype), w.astype(dtype)
        y, cache = kernels.conv1x1_forward_numba(x, w, np.zeros(2, dtype))
        kernels.conv1x1_backward_numba(y, cache)
    return kernels
