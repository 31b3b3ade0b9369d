"""Shared fixtures.

``numba_kernels`` imports :mod:`minattn.kernels` and runs the streaming attention
and the 1x1 convolutions once on tiny inputs, in float32 and float64, so a test
session pays their compilation (or the cache load) once, up front, instead of
inside whichever test happens to run first. The teaching loops compile lazily
in the one test that uses them. Tests that do not request the fixture never
import Numba.
"""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def numba_kernels():
    """The warmed-up ``minattn.kernels`` package."""
    from minattn import kernels

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        q, k = rng.standard_normal((2, 1, 2, 5)).astype(dtype)
        v, dout = rng.standard_normal((2, 1, 3, 5)).astype(dtype)
        out, lse = kernels.attention_forward(q, k, v, 0.5)
        kernels.attention_backward(dout, q, k, v, out, lse, 0.5)
        x, w = rng.standard_normal((1, 3, 2, 5)), rng.standard_normal((2, 3, 1, 1))
        x, w = x.astype(dtype), w.astype(dtype)
        y, cache = kernels.conv1x1_forward_numba(x, w, np.zeros(2, dtype))
        kernels.conv1x1_backward_numba(y, cache)
    return kernels
