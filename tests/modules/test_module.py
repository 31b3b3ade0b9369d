"""The shared module base, the backend table and compare_steps, exercised through BAM (bad
input: test_module_errors.py, compare_steps's bad arguments: test_checking_errors.py)."""

import numpy as np
import pytest
from helpers import random_module

import minattn
from minattn import compare_steps, gradcheck
from minattn.backend import FAST_BACKENDS, ops_for
from minattn.modules.base import Module

X = np.random.default_rng(3).standard_normal((2, 8, 4, 6))


def test_params_are_live_arrays_that_load_state_dict_writes_into():
    bam = random_module(8, 2)
    arrays = {k: id(v) for k, v in bam.params.items()}
    sd = random_module(8, 2, seed=5).state_dict()
    bam.load_state_dict(sd)
    assert {k: id(v) for k, v in bam.params.items()} == arrays
    for k in sd:
        np.testing.assert_array_equal(bam.params[k], sd[k])


def test_every_backend_table_has_the_same_step_names():
    names = {b: ops_for(b).step_names() for b in ("reference", "numpy")}
    assert names["reference"] == names["numpy"]
    assert "softmax_backward" in names["numpy"] and "conv1x1_forward" in names["numpy"]


def test_compare_steps_with_nothing_replaced_is_ok():
    report = compare_steps(random_module(8, 2), X)
    assert report.ok and report.first_mismatch is None
    assert "ok: every intermediate matches" in str(report)


BAM_STEPS = [
    "avg_pool_forward",
    "conv1x1_forward",
    "flatten_forward",
    "energy_forward",
    "scale_forward",
    "softmax_forward",
    "weighted_sum_forward",
    "unflatten_forward",
    "upsample_forward",
    "residual_forward",
    "residual_backward",
    "upsample_backward",
    "unflatten_backward",
    "weighted_sum_backward",
    "softmax_backward",
    "scale_backward",
    "energy_backward",
    "flatten_backward",
    "conv1x1_backward",
    "avg_pool_backward",
]


def _slipped(f, forward):
    """f with a 0.1% error in its (first) output array."""

    def wrong(*args, **kwargs):
        result = f(*args, **kwargs)
        if forward:
            out, cache = result
            return out * 1.001, cache
        if isinstance(result, tuple):
            return (result[0] * 1.001, *result[1:])
        return result * 1.001

    return wrong


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("name", BAM_STEPS)
def test_compare_steps_names_the_step_with_a_slip(name, backend, request):
    if backend == "numba":
        request.getfixturevalue("numba_kernels")
    bam = random_module(8, 2, use_gamma=True, backend=backend)
    f = getattr(ops_for(backend, fused=False), name)
    report = compare_steps(bam, X, replace={name: _slipped(f, name.endswith("_forward"))})
    assert not report.ok
    assert report.first_mismatch.startswith(name) or f"({name}#" in report.first_mismatch, report


class _Mix(Module):
    """Two inputs, one output: y = x1 + gamma * x2 (the residual step), for the tuple paths."""

    input_names = ("x1", "x2")

    def __init__(self):
        super().__init__()
        self.params = {"gamma": np.array([0.7])}

    def _validate_inputs(self, x1, x2):
        if x1.shape != x2.shape:
            raise ValueError(f"x1 {x1.shape} and x2 {x2.shape} differ")

    def _forward(self, x1, x2):
        y, self._cache = self.ops.residual_forward(x1, x2 * x1, self.params["gamma"])
        self._x = (x1, x2)
        return y

    def _backward(self, dy):
        x1, x2 = self._x
        dx1, df, dgamma = self.ops.residual_backward(dy, self._cache)
        self.grads = {"gamma": dgamma}
        return dx1 + df * x2, df * x1


def test_gradcheck_and_compare_steps_take_a_tuple_of_inputs():
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((2, 3, 2, 2)), rng.standard_normal((2, 3, 2, 2))
    report = gradcheck(_Mix(), (x1, x2))
    assert report.ok and [r.name for r in report.rows] == ["x1", "x2", "gamma"]
    assert compare_steps(_Mix(), (x1, x2)).ok


def test_gradcheck_catches_a_wrong_gradient_of_the_second_input():
    class Wrong(_Mix):
        def _backward(self, dy):
            dx1, dx2 = super()._backward(dy)
            return dx1, dx2 * 1.001

    x1, x2 = np.ones((1, 2, 2, 2)), np.full((1, 2, 2, 2), 2.0)
    rows = {r.name: r.ok for r in gradcheck(Wrong(), (x1, x2)).rows}
    assert rows == {"x1": True, "x2": False, "gamma": True}


def test_public_api_of_the_base():
    assert isinstance(minattn.BAM(8, 2), Module)
    assert minattn.BAM(8, 2).eval().training is False
