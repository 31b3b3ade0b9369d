"""Numba kernels against their NumPy twins, against minattn.steps and against finite differences.

Every comparison is relative to the largest magnitude of the expected array:
1e-10 in float64, 2e-5 in float32. Inputs are random and non-zero; expected
values never come from the code under test.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minattn import numerical_gradient, steps

TOL = {np.float64: 1e-10, np.float32: 2e-5}


def assert_close(actual, expected, dtype, what="", tol=None):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    err = np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30)
    tol = TOL[dtype] if tol is None else tol
    assert err < tol, f"{what}: error {err:.2e} relative to max |expected|"


def inputs(B, Ck, C, N, dtype, seed=0, spread=1.0):
    """query, key (B, Ck, N), value, dout (B, C, N): random normal, query scaled by ``spread``."""
    rng = np.random.default_rng(seed)
    q = spread * rng.standard_normal((B, Ck, N))
    k, v, dout = (rng.standard_normal(s) for s in ((B, Ck, N), (B, C, N), (B, C, N)))
    return [a.astype(dtype) for a in (q, k, v, dout)]


def dense_attention(q, k, v, scale, dout):
    """The article's steps composed (minattn.steps, float64): out, dq, dk, dv and lse."""
    q, k, v, dout = (a.astype(np.float64) for a in (q, k, v, dout))
    energy, c_e = steps.energy_forward(q, k)
    scaled, c_s = steps.scale_forward(energy, scale)
    attention, c_a = steps.softmax_forward(scaled)
    out, c_w = steps.weighted_sum_forward(v, attention)
    dv, dattention = steps.weighted_sum_backward(dout, c_w)
    dq, dk = steps.energy_backward(
        steps.scale_backward(steps.softmax_backward(dattention, c_a), c_s), c_e
    )
    top = scaled.max(axis=-1)
    lse = top + np.log(np.exp(scaled - top[..., None]).sum(axis=-1))
    return out, dq, dk, dv, lse


DTYPES = [np.float64, np.float32]
# N: 1, below one key block, KEY_BLOCK + 1 and a few blocks plus a remainder; B > 1; Ck 1, 2, 8
SHAPES = [(1, 1, 3, 1), (2, 2, 5, 37), (3, 8, 16, 513), (2, 1, 8, 1100), (1, 8, 64, 2050)]


# ---------------------------------------------------------------- streaming attention


@pytest.mark.parametrize("threads", ["all", "one"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-Ck{}-C{}-N{}".format(*s))
def test_streaming_attention_matches_steps_and_numpy_twin(
    numba_kernels, monkeypatch, shape, dtype, threads
):
    K = numba_kernels
    # small problems normally run on one thread; test both paths at every size
    monkeypatch.setattr(K, "SERIAL_WORK", 0 if threads == "all" else 2**62)
    B, Ck, C, N = shape
    q, k, v, dout = inputs(B, Ck, C, N, dtype, seed=N)
    scale = Ck**-0.5
    out_e, dq_e, dk_e, dv_e, lse_e = dense_attention(q, k, v, scale, dout)

    out, lse = K.attention_forward(q, k, v, scale)
    assert_close(out, out_e.astype(dtype), dtype, "out")
    assert_close(lse, lse_e.astype(dtype), dtype, "lse")
    grads = K.attention_backward(dout, q, k, v, out, lse, scale)
    for name, g, e in zip(("dquery", "dkey", "dvalue"), grads, (dq_e, dk_e, dv_e), strict=True):
        assert_close(g, e.astype(dtype), dtype, name)

    out_n, lse_n = K.attention_forward_numpy(q, k, v, scale, block=100)
    assert_close(out_n, out_e.astype(dtype), dtype, "numpy twin: out")
    assert_close(lse_n, lse_e.astype(dtype), dtype, "numpy twin: lse")
    twin = K.attention_backward_numpy(dout, q, k, v, out_n, lse_n, scale, block=100)
    for name, g, e in zip(("dquery", "dkey", "dvalue"), twin, (dq_e, dk_e, dv_e), strict=True):
        assert_close(g, e.astype(dtype), dtype, "numpy twin: " + name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_streaming_attention_with_peaked_softmax(numba_kernels, dtype):
    """Scores in the hundreds: exp overflows without the running max, most weights underflow.

    A float32 score of 300 is only known to 300 * 6e-8 = 2e-5, and exp turns that
    absolute error into a relative one, so float32 gets 10x its usual tolerance here.
    """
    q, k, v, dout = inputs(2, 8, 16, 700, dtype, seed=5, spread=40.0)
    tol = TOL[dtype] * (10 if dtype == np.float32 else 1)
    out_e, dq_e, dk_e, dv_e, _ = dense_attention(q, k, v, 1.0, dout)
    out, lse = numba_kernels.attention_forward(q, k, v, 1.0)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(lse))
    assert_close(out, out_e.astype(dtype), dtype, "out", tol)
    grads = numba_kernels.attention_backward(dout, q, k, v, out, lse, 1.0)
    for name, g, e in zip(("dquery", "dkey", "dvalue"), grads, (dq_e, dk_e, dv_e), strict=True):
        assert_close(g, e.astype(dtype), dtype, name, tol)


def test_streaming_attention_matches_finite_differences(numba_kernels):
    """The backward against central differences of L = sum(out * w), with no other code involved."""
    K = numba_kernels
    q, k, v, w = inputs(2, 2, 3, 9, np.float64, seed=11)
    args = dict(query=q, key=k, value=v)

    def loss(name, x):
        return np.sum(K.attention_forward(**{**args, name: x}, scale=0.7)[0] * w)

    out, lse = K.attention_forward(q, k, v, 0.7)
    grads = K.attention_backward(w, q, k, v, out, lse, 0.7)
    for name, g in zip(("query", "key", "value"), grads, strict=True):
        numeric = numerical_gradient(lambda x, name=name: loss(name, x), args[name])
        err = np.abs(g - numeric).max() / np.abs(numeric).max()
        assert err < 1e-7, f"d{name}: error {err:.2e}"


def test_streaming_attention_leaves_inputs_alone_and_checks_them(numba_kernels):
    K = numba_kernels
    arrays = inputs(2, 2, 4, 30, np.float64)
    copies = [a.copy() for a in arrays]
    q, k, v, dout = arrays
    out, lse = K.attention_forward(q, k, v, 0.5)
    K.attention_backward(dout, q, k, v, out, lse, 0.5)
    for a, c in zip(arrays, copies, strict=True):
        np.testing.assert_array_equal(a, c)
    with pytest.raises(ValueError, match="query: expected a 3-D array .* got shape"):
        K.attention_forward(q[0], k, v, 0.5)
    with pytest.raises(TypeError, match="key: expected dtype float64 like query"):
        K.attention_forward(q, k.astype(np.float32), v, 0.5)
    with pytest.raises(TypeError, match="query: expected float32 or float64, got int64"):
        K.attention_forward(q.astype(np.int64), k, v, 0.5)
    with pytest.raises(ValueError, match="value: expected B = 2 and N = 30"):
        K.attention_forward(q, k, v[:, :, :20], 0.5)
    with pytest.raises(ValueError, match="key: expected the shape of query"):
        K.attention_forward(q, k[:, :1], v, 0.5)
    with pytest.raises(ValueError, match="lse: expected shape"):
        K.attention_backward(dout, q, k, v, out, lse[:, :3], 0.5)


def test_streaming_memory_is_linear_in_n():
    """N = 20000: one float32 N x N matrix would be 1.6 GB; the whole pass must stay far below.

    Runs in a subprocess, so the peak RSS belongs to this computation alone.
    """
    code = textwrap.dedent(
        """
        import resource, numpy as np
        from minattn import kernels
        q = np.ones((1, 1, 20000), np.float32); v = np.ones((1, 4, 20000), np.float32)
        kernels.attention_forward(q[:, :, :10], q[:, :, :10], v[:, :, :10], 1.0)  # JIT/cache
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out, lse = kernels.attention_forward(q, q, v, 1.0)
        kernels.attention_backward(v, q, q, v, out, lse, 1.0)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout.split()[-1]) < 64, f"peak RSS grew by {run.stdout.split()[-1]} MiB"


# ---------------------------------------------------------------- the steps as loops


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", [(1, 1, 3, 1), (2, 2, 5, 37), (3, 8, 4, 300)], ids=str)
def test_step_kernels_match_twins_and_steps(numba_kernels, shape, dtype):
    K = numba_kernels
    B, Ck, C, N = shape
    q, k, v, dout = inputs(B, Ck, C, N, dtype, seed=3)
    rng = np.random.default_rng(4)
    d_nn = rng.standard_normal((B, N, N)).astype(dtype)  # an upstream gradient of shape (N, N)
    scale = Ck**-0.5
    q64, k64, v64, dout64, d64 = (a.astype(np.float64) for a in (q, k, v, dout, d_nn))

    energy_e = steps.scale_forward(steps.energy_forward(q64, k64)[0], scale)[0]
    energy = K.energy_numba(q, k, scale)
    assert_close(energy, energy_e.astype(dtype), dtype, "energy_numba")
    assert_close(K.energy_blas(q, k, scale), energy_e.astype(dtype), dtype, "energy_blas")

    dq_e, dk_e = steps.energy_backward(steps.scale_backward(d64, scale), (q64, k64))
    for got, twin, e, name in zip(
        K.energy_backward_numba(d_nn, q, k, scale),
        K.energy_backward_numpy(d_nn, q, k, scale),
        (dq_e, dk_e),
        ("dquery", "dkey"),
        strict=True,
    ):
        assert_close(got, e.astype(dtype), dtype, "energy_backward_numba " + name)
        assert_close(twin, e.astype(dtype), dtype, "energy_backward_numpy " + name)

    attention_e = steps.softmax_forward(energy_e)[0]
    attention = K.softmax_numba(energy)
    assert_close(attention, attention_e.astype(dtype), dtype, "softmax_numba")
    assert_close(K.softmax_numpy(energy), attention_e.astype(dtype), dtype, "softmax_numpy")
    dsoft_e = steps.softmax_backward(d64, attention_e)
    assert_close(
        K.softmax_backward_numba(d_nn, attention), dsoft_e.astype(dtype), dtype, "dsoftmax"
    )
    assert_close(K.softmax_backward_numpy(d_nn, attention), dsoft_e.astype(dtype), dtype, "twin")

    out_e = steps.weighted_sum_forward(v64, attention_e)[0]
    assert_close(K.weighted_sum_numba(v, attention), out_e.astype(dtype), dtype, "weighted_sum")
    assert_close(K.weighted_sum_numpy(v, attention), out_e.astype(dtype), dtype, "twin")
    dv_e, da_e = steps.weighted_sum_backward(dout64, (v64, attention.astype(np.float64)))
    for got, twin, e, name in zip(
        K.weighted_sum_backward_numba(dout, v, attention),
        K.weighted_sum_backward_numpy(dout, v, attention),
        (dv_e, da_e),
        ("dvalue", "dattention"),
        strict=True,
    ):
        assert_close(got, e.astype(dtype), dtype, "weighted_sum_backward_numba " + name)
        assert_close(twin, e.astype(dtype), dtype, "weighted_sum_backward_numpy " + name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", [(1, 3, 1, 1, 1), (2, 12, 5, 7, 9), (3, 8, 16, 33, 20)], ids=str)
def test_conv1x1_kernels_match_steps(numba_kernels, shape, dtype):
    """Step 1 without BLAS against minattn.steps; channel counts not multiples of 4, N > 512."""
    B, C_in, C_out, h, w = shape
    rng = np.random.default_rng(7)
    x = rng.standard_normal((B, C_in, h, w)).astype(dtype)
    weight = rng.standard_normal((C_out, C_in, 1, 1)).astype(dtype)
    bias = rng.standard_normal(C_out).astype(dtype)
    dout = rng.standard_normal((B, C_out, h, w)).astype(dtype)
    out_e, cache = steps.conv1x1_forward(*(a.astype(np.float64) for a in (x, weight, bias)))
    grads_e = steps.conv1x1_backward(dout.astype(np.float64), cache)
    out, cache_k = numba_kernels.conv1x1_forward_numba(x, weight, bias)
    assert_close(out, out_e.astype(dtype), dtype)
    grads = numba_kernels.conv1x1_backward_numba(dout, cache_k)
    for name, g, e in zip(("dx", "dweight", "dbias"), grads, grads_e, strict=True):
        assert_close(g, e.astype(dtype), dtype, name)


def test_energy_python_loop_matches_einsum(numba_kernels):
    q, k, _, _ = inputs(2, 3, 1, 7, np.float64, seed=9)
    expected = np.einsum("bci,bcj->bij", q, k) * 0.25
    assert_close(numba_kernels.energy_python(q, k, 0.25), expected, np.float64, "energy_python")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_polynomial_exp_matches_numpy(numba_kernels, dtype):
    x = -np.abs(np.random.default_rng(0).standard_normal(5000) * 30).astype(dtype)
    x[:4] = [0.0, -1e-30, -87.0, -700.0]
    got = numba_kernels.exp_numba(x)
    expected = np.exp(x.astype(np.float64))
    rel = np.abs(got - expected) / np.maximum(expected, np.finfo(dtype).tiny)
    ulp = np.finfo(dtype).eps
    big = expected > np.finfo(dtype).tiny * 1e4  # away from the clamp near underflow
    assert rel[big].max() < 4 * ulp, rel[big].max() / ulp
    assert np.all(got >= 0) and np.all(got[~big] < 1e-30)


def test_kernels_run_as_plain_python_with_jit_disabled():
    """NUMBA_DISABLE_JIT=1 runs the kernels' source as Python: the code, not LLVM's output."""
    code = textwrap.dedent(
        """
        import numpy as np
        from minattn import kernels as K, steps
        rng = np.random.default_rng(0)
        q, k = rng.standard_normal((2, 2, 2, 7))
        v, dout = rng.standard_normal((2, 2, 3, 7))
        out, lse = K.attention_forward(q, k, v, 0.6)
        out_n, lse_n = K.attention_forward_numpy(q, k, v, 0.6)
        errs = [abs(out - out_n).max(), abs(lse - lse_n).max()]
        g = K.attention_backward(dout, q, k, v, out, lse, 0.6)
        g_n = K.attention_backward_numpy(dout, q, k, v, out, lse, 0.6)
        errs += [abs(a - b).max() for a, b in zip(g, g_n)]
        e = K.energy_numba(q, k, 0.6)
        a = K.softmax_numba(e)
        errs.append(abs(e - K.energy_blas(q, k, 0.6)).max())
        errs.append(abs(a - K.softmax_numpy(e)).max())
        errs.append(abs(K.weighted_sum_numba(v, a) - K.weighted_sum_numpy(v, a)).max())
        x4, w4 = rng.standard_normal((2, 3, 2, 3)), rng.standard_normal((5, 3, 1, 1))
        b4 = rng.standard_normal(5)
        y4, c4 = steps.conv1x1_forward(x4, w4, b4)
        errs.append(abs(K.conv1x1_forward_numba(x4, w4, b4)[0] - y4).max())
        g4 = zip(K.conv1x1_backward_numba(y4, c4), steps.conv1x1_backward(y4, c4))
        errs += [abs(a - b).max() for a, b in g4]
        pairs = [
            (K.energy_backward_numba(e, q, k, 0.6), K.energy_backward_numpy(e, q, k, 0.6)),
            (K.weighted_sum_backward_numba(dout, v, a), K.weighted_sum_backward_numpy(dout, v, a)),
            ((K.softmax_backward_numba(e, a),), (K.softmax_backward_numpy(e, a),)),
        ]
        errs += [abs(x - y).max() for got, twin in pairs for x, y in zip(got, twin)]
        print(max(errs))
        """
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert float(run.stdout.split()[-1]) < 1e-12


def test_bench_prints_a_table_with_every_backend(capsys):
    """A tiny ``minattn bench`` run end to end: workers, table, ratios, header settings."""
    from minattn import bench

    assert bench.main(["--configs", "1,8,4,4,1", "--dtype", "float32", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "OPENBLAS_CORETYPE=" in out and "NUMBA_NUM_THREADS=" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("(1,8,4,4,1)")]
    assert {r[3] for r in rows} >= {"numpy", "numba", "matmul"}
    assert "failed" not in out
    if "torch rows skipped" not in out:  # torch installed: its row and the ratios against it
        assert "torch" in {r[3] for r in rows}
        numba_row = next(r for r in rows if r[3] == "numba")
        assert float(numba_row[6]) > 0  # t/torch
