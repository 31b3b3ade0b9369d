"""Numba kernels against their NumPy twins, against minattn.steps and against finite differences.

Every comparison is relative to the largest magnitude of the expected array:
1e-10 in float64, 2e-5 in float32. Inputs are random and non-zero; expected
values never come from the code under test. The subprocess tests run the
kernels as AVX2 code, with no writable cache, with 1, 2 and 7 threads, and as
plain Python (NUMBA_DISABLE_JIT=1).
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


def run_python(code, timeout=300, **env):
    """Run ``code`` in a fresh interpreter with extra environment; -> CompletedProcess."""
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr
    return run


DTYPES = [np.float64, np.float32]
# Every tile remainder: N against QUERY_BLOCK = 128 and KEY_BLOCK = 512, and against the
# smaller tiles of a small N (1, 37: one short tile; 64, 65; 200: two query tiles, one key
# tile; 513: one key more than a tile; 1100: two key tiles and a remainder), Ck against
# the 4-row register block (1, 2, 3, 5, 8), C against 4 and the 2- or 4-column block of
# the dot products (3, 5, 6, 16); B > 1 (tiles of two images).
SHAPES = [
    (1, 1, 3, 1),
    (2, 2, 5, 37),
    (1, 3, 6, 64),
    (2, 5, 6, 65),
    (2, 4, 7, 200),
    (3, 8, 16, 513),
    (2, 1, 5, 1100),
]


# ---------------------------------------------------------------- streaming attention


@pytest.mark.parametrize("threads", ["all", "one"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-Ck{}-C{}-N{}".format(*s))
def test_streaming_attention_matches_steps_and_numpy_twin(
    numba_kernels, monkeypatch, shape, dtype, threads
):
    K = numba_kernels
    # small problems normally run on one thread; test both paths at every size
    monkeypatch.setattr(K.jit, "SERIAL_WORK", 0 if threads == "all" else 2**62)
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


def test_streaming_attention_is_deterministic_for_a_thread_count(numba_kernels, monkeypatch):
    """Two runs on all threads give the same bits: every sum is added in a fixed order."""
    K = numba_kernels
    monkeypatch.setattr(K.jit, "SERIAL_WORK", 0)
    q, k, v, dout = inputs(2, 5, 6, 1500, np.float32, seed=2)
    first = K.attention_forward(q, k, v, 0.4)
    first += K.attention_backward(dout, q, k, v, *first, 0.4)
    again = K.attention_forward(q, k, v, 0.4)
    again += K.attention_backward(dout, q, k, v, *again, 0.4)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_thread_counts_agree_and_memory_does_not_grow_with_them():
    """1, 2 and 7 threads (NUMBA_NUM_THREADS=7, in a subprocess) agree to rounding; with 7
    threads the backward needs no per-thread copies of dkey/dvalue: N = 20000 raises the
    peak RSS by far less than 7 copies would take."""
    run = run_python(
        """
        import resource, numba, numpy as np
        from minattn import kernels as K
        K.jit.SERIAL_WORK = 0
        rng = np.random.default_rng(0)
        q, k = rng.standard_normal((2, 2, 3, 2100))
        v, dout = rng.standard_normal((2, 2, 7, 2100))
        results = {}
        for t in (1, 2, 7):
            numba.set_num_threads(t)
            out, lse = K.attention_forward(q, k, v, 0.5)
            results[t] = (out, lse, *K.attention_backward(dout, q, k, v, out, lse, 0.5))
        worst = max(
            float(np.abs(a - b).max() / np.abs(b).max())
            for t in (2, 7) for a, b in zip(results[t], results[1])
        )
        # memory: N = 20000, C = 64, float32; one (C, N) array is 5 MiB
        q = np.ones((1, 1, 20000), np.float32); v = np.ones((1, 64, 20000), np.float32)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out, lse = K.attention_forward(q, q, v, 1.0)
        K.attention_backward(v, q, q, v, out, lse, 1.0)
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
        print(numba.get_num_threads(), worst, grew)
        """,
        NUMBA_NUM_THREADS="7",
    )
    threads, worst, grew = run.stdout.split()
    assert int(threads) == 7
    assert float(worst) < 1e-13, f"1, 2, 7 threads differ by {worst} (relative)"
    # inputs, blocked copies, out and the three gradients: about 12 (C, N) arrays = 60 MiB;
    # per-thread copies of dkey and dvalue would add 7 x 5 MiB more than that
    assert float(grew) < 80, f"peak RSS grew by {grew} MiB"


def test_blas_runs_on_one_thread_inside_the_kernels_and_is_restored_after(numba_kernels):
    """The tile products call SciPy's BLAS from every kernel thread; while they run that
    BLAS must use one thread per call (docs/kernels.md, "Threads and BLAS"), and the
    user's setting must come back afterwards, also after an error inside."""
    from minattn import blas

    controls = blas.blas_thread_controls("scipy")
    assert controls is not None, "SciPy's OpenBLAS (its wheel) was not found in this process"
    get, set_ = controls
    before = get()
    set_(2)
    try:
        with blas.one_blas_thread("scipy"):
            with blas.one_blas_thread("scipy"):  # nested: one save, one restore
                assert get() == 1
            assert get() == 1
        assert get() == 2
        with pytest.raises(ValueError), blas.one_blas_thread("scipy"):
            raise ValueError("inside")
        assert get() == 2
    finally:
        set_(before)


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
    run = run_python(
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
    assert int(run.stdout.split()[-1]) < 64, f"peak RSS grew by {run.stdout.split()[-1]} MiB"


# ---------------------------------------------------------------- code paths and first use

SMALL_CHECK = """
    import numpy as np
    from minattn import kernels as K, steps
    K.jit.SERIAL_WORK = 0  # the threaded path too
    rng = np.random.default_rng(1)
    errs = []
    for dtype in DTYPES:
        q, k = rng.standard_normal((2, 2, 3, 600)).astype(dtype)
        v, dout = rng.standard_normal((2, 2, 6, 600)).astype(dtype)
        out, lse = K.attention_forward(q, k, v, 0.6)
        grads = K.attention_backward(dout, q, k, v, out, lse, 0.6)
        q, k, v, dout = (a.astype(np.float64) for a in (q, k, v, dout))
        out_n, lse_n = K.attention_forward_numpy(q, k, v, 0.6)
        twin = (out_n, lse_n, *K.attention_backward_numpy(dout, q, k, v, out_n, lse_n, 0.6))
        for a, b in zip((out, lse, *grads), twin):
            tol = 2e-5 if a.itemsize == 4 else 1e-10
            errs.append(float(np.abs(a - b).max() / np.abs(b).max()) / tol)
    print(K.NT_COLS, max(errs))
"""


def test_avx2_code_path_with_an_empty_cache(tmp_path):
    """The kernels compiled as AVX2 code whatever this CPU has, from an empty cache.

    NUMBA_CPU_NAME=haswell with an empty NUMBA_CPU_FEATURES makes Numba compile for
    Haswell's instruction set (AVX2, FMA, 16 vector registers), so an AVX-512 machine
    checks the AVX2 schedule too. The first compile says so on stderr, once per dtype.
    """
    run = run_python(
        SMALL_CHECK.replace("DTYPES", "(np.float32,)"),
        NUMBA_CPU_NAME="haswell",
        NUMBA_CPU_FEATURES="",
        NUMBA_CACHE_DIR=str(tmp_path),
    )
    nt_cols, worst = run.stdout.split()
    assert int(nt_cols) == 2, "the AVX2 schedule: 4 x 2 register blocks"
    assert float(worst) < 1, f"error {worst} x tolerance"
    notes = [line for line in run.stderr.splitlines() if "compiling the numba kernels" in line]
    assert len(notes) == 1 and "float32" in notes[0] and str(tmp_path) in notes[0], run.stderr


def test_numba_backend_works_without_a_writable_cache(tmp_path):
    """No place to write the cache (Numba: "no locator available"): compile in memory, say so.

    NUMBA_CACHE_DIR under a regular file cannot be created (even by root), and
    NUMBA_CACHE_LOCATOR_CLASSES keeps Numba from falling back to another directory.
    """
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = run_python(
        SMALL_CHECK.replace("DTYPES", "(np.float64,)"),
        NUMBA_CACHE_DIR=str(blocker / "cache"),
        NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator",
    )
    assert float(run.stdout.split()[-1]) < 1
    notes = [line for line in run.stderr.splitlines() if line.startswith("minattn:")]
    assert len(notes) == 1 and "in memory" in notes[0] and "NUMBA_CACHE_DIR" in notes[0]


def test_kernels_run_as_plain_python_with_jit_disabled():
    """NUMBA_DISABLE_JIT=1 runs the kernels' source as Python: the code, not LLVM's output."""
    run = run_python(
        """
        import numpy as np
        from minattn import kernels as K, steps
        K.jit.SERIAL_WORK = 0  # the threaded rounds too
        rng = np.random.default_rng(0)
        q, k = rng.standard_normal((2, 2, 2, 70))
        v, dout = rng.standard_normal((2, 2, 3, 70))
        out, lse = K.attention_forward(q, k, v, 0.6)
        out_n, lse_n = K.attention_forward_numpy(q, k, v, 0.6)
        errs = [abs(out - out_n).max(), abs(lse - lse_n).max()]
        g = K.attention_backward(dout, q, k, v, out, lse, 0.6)
        g_n = K.attention_backward_numpy(dout, q, k, v, out, lse, 0.6)
        errs += [abs(a - b).max() for a, b in zip(g, g_n)]
        x4, w4 = rng.standard_normal((2, 3, 2, 3)), rng.standard_normal((5, 3, 1, 1))
        b4 = rng.standard_normal(5)
        y4, c4 = steps.conv1x1_forward(x4, w4, b4)
        errs.append(abs(K.conv1x1_forward_numba(x4, w4, b4)[0] - y4).max())
        g4 = zip(K.conv1x1_backward_numba(y4, c4), steps.conv1x1_backward(y4, c4))
        errs += [abs(a - b).max() for a, b in g4]
        e = K.energy_numba(q[:, :, :7], k[:, :, :7], 0.6)
        a = K.softmax_numba(e)
        errs.append(abs(a - steps.softmax_forward(e)[0]).max())
        print(max(errs))
        """,
        NUMBA_DISABLE_JIT="1",
    )
    assert float(run.stdout.split()[-1]) < 1e-12


# ---------------------------------------------------------------- the steps as loops


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_step_kernels_match_the_steps(numba_kernels, dtype):
    """The loop kernels against their NumPy twins, the functions of minattn.steps."""
    K = numba_kernels
    B, Ck, C, N = 3, 3, 5, 70
    q, k, v, dout = inputs(B, Ck, C, N, dtype, seed=3)
    d_nn = np.random.default_rng(4).standard_normal((B, N, N)).astype(dtype)  # an upstream grad
    scale = Ck**-0.5
    q64, k64, v64, dout64, d64 = (a.astype(np.float64) for a in (q, k, v, dout, d_nn))

    energy_e = steps.scale_forward(steps.energy_forward(q64, k64)[0], scale)[0]
    energy = K.energy_numba(q, k, scale)
    assert_close(energy, energy_e.astype(dtype), dtype, "energy_numba")
    assert_close(K.energy_blas(q, k, scale), energy_e.astype(dtype), dtype, "energy_blas")
    dq_e, dk_e = steps.energy_backward(steps.scale_backward(d64, scale), (q64, k64))
    got = K.energy_backward_numba(d_nn, q, k, scale)
    for g, e, name in zip(got, (dq_e, dk_e), ("dquery", "dkey"), strict=True):
        assert_close(g, e.astype(dtype), dtype, "energy_backward_numba " + name)

    attention_e = steps.softmax_forward(energy_e)[0]
    attention = K.softmax_numba(energy)
    assert_close(attention, attention_e.astype(dtype), dtype, "softmax_numba")
    dsoft_e = steps.softmax_backward(d64, attention.astype(np.float64))
    dsoft = K.softmax_backward_numba(d_nn, attention)
    assert_close(dsoft, dsoft_e.astype(dtype), dtype, "softmax_backward_numba")

    out_e = steps.weighted_sum_forward(v64, attention_e)[0]
    assert_close(K.weighted_sum_numba(v, attention), out_e.astype(dtype), dtype, "weighted_sum")
    dv_e, da_e = steps.weighted_sum_backward(dout64, (v64, attention.astype(np.float64)))
    got = K.weighted_sum_backward_numba(dout, v, attention)
    for g, e, name in zip(got, (dv_e, da_e), ("dvalue", "dattention"), strict=True):
        assert_close(g, e.astype(dtype), dtype, "weighted_sum_backward_numba " + name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", [(1, 3, 1, 1, 1), (2, 12, 5, 7, 9), (3, 8, 16, 33, 20)], ids=str)
def test_conv1x1_kernels_match_steps(numba_kernels, monkeypatch, shape, dtype):
    """Step 1 without BLAS against minattn.steps; channel counts not multiples of 4, N > 512."""
    monkeypatch.setattr(numba_kernels.jit, "SERIAL_WORK", 0)  # the threaded path
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


# ---------------------------------------------------------------- the benchmark command


def test_bench_prints_a_table_with_every_row(capsys):
    """A tiny ``minattn bench`` run end to end: workers, table, ratios, header settings."""
    from minattn.apps import bench

    argv = ["--configs", "1,8,4,4,1,8", "--dtype", "float32", "--repeats", "1"]
    assert bench.main(argv) == 0  # key_channels = C = 8: SDPA's flash kernel can run
    out = capsys.readouterr().out
    assert "OPENBLAS_CORETYPE=" in out and "NUMBA_NUM_THREADS=" in out
    assert "FLOPs: B (8 N^2 Ck + 6 N^2 C)" in out and "schedule:" in out
    rows = [line for line in out.splitlines() if line.strip().startswith("1,8,4,4,1")]
    assert all(row.split()[1] == "8" for row in rows)  # the key_channels column
    names = ["numpy", "numba", "matmul n="]
    if "PyTorch rows skipped" not in out:  # torch and the worker found: article and SDPA rows
        names += ["torch article", "torch sdpa (flash)"]
    for name in names:
        assert sum(f" {name}" in row for row in rows) == 1, (name, out)
    assert "failed" not in out
