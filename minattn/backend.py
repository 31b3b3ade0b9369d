"""Backends: which function runs each step, chosen once when a module is built.

    "reference"  every step as literal loops (`minattn.reference`); slow, for checking
    "numpy"      every step vectorised (`minattn.steps`, `minattn.resize`, ...)
    "numba"      the numpy steps, but BLAS-free 1x1 convolutions, and steps 3-5 fused into
                 a streaming kernel (`minattn.kernels`) that never holds the N x N matrix

A backend is an `Ops` table: one attribute per step function, named as in the step
files (``ops.softmax_forward``, ``ops.conv1x1_backward``, ...), plus
``fused_attention_forward`` / ``fused_attention_backward`` (None where there is no fused
kernel). Modules call every step through their table, so a trace or a student's own
function can stand in for any step by name.

`attend_forward` / `attend_backward` compose steps 3-5 and are the only place that
knows a fused kernel exists.
"""

import types
from typing import NamedTuple

import numpy as np

from .ops import batchnorm, layers, reference, regions, resize, steps

BACKENDS = ("reference", "numpy", "numba")
FAST_BACKENDS = ("numpy", "numba")  # all but the literal loops, which take minutes beyond toy sizes

# Each vectorised step file, and its literal twin in minattn.reference (same names).
# A new step file joins both lists.
STEP_FILES = (steps, resize, layers, batchnorm, regions)
REFERENCE_FILES = (
    reference.steps,
    reference.resize,
    reference.layers,
    reference.batchnorm,
    reference.regions,
)


class Ops(types.SimpleNamespace):
    """One backend's step functions, by name."""

    def step_names(self):
        """Names of the step functions (what `minattn.compare_steps` can replace)."""
        return sorted(n for n, f in vars(self).items() if n.endswith(_SUFFIXES) and f)


_SUFFIXES = ("_forward", "_backward")


def _step_functions(files):
    """Every ``*_forward`` / ``*_backward`` function of the given files."""
    return {
        name: f
        for file in files
        for name, f in vars(file).items()
        if name.endswith(_SUFFIXES) and callable(f)
    }


def ops_for(backend, *, fused=True):
    """The `Ops` table of a backend; ``fused=False`` leaves steps 3-5 unfused on numba."""
    if backend == "reference":
        return Ops(name=backend, **_fused(None), **_step_functions(REFERENCE_FILES))
    functions = _step_functions(STEP_FILES)
    if backend == "numpy":
        return Ops(name=backend, **_fused(None), **functions)
    if backend == "numba":
        from . import kernels

        # no threaded BLAS anywhere on this backend: OpenBLAS's spinning idle threads would
        # hold the cores the attention kernels are about to use (docs/kernels.md); the
        # kernels' own tile products call BLAS on one thread per kernel thread
        functions.update(
            conv1x1_forward=kernels.conv1x1_forward_numba,
            conv1x1_backward=kernels.conv1x1_backward_numba,
        )
        return Ops(name=backend, **_fused(kernels if fused else None), **functions)
    raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")


class FusedCache(NamedTuple):
    """What the streaming kernel keeps: its inputs, its output and each query's log-sum-exp."""

    query: np.ndarray  # (B, Ck, N)
    key: np.ndarray  # (B, Ck, N)
    value: np.ndarray  # (B, C, N)
    out: np.ndarray  # (B, C, N)
    lse: np.ndarray  # (B, N): log sum_j exp(scale * energy[i, j])
    scale: float


class AttendCache(NamedTuple):
    """What steps 3-5 keep for the backward: the caches of the four steps, or the fused
    kernel's (the other is None); ``attention`` is the (B, N, N) softmax, or None when the
    fused kernel ran and never formed it."""

    steps: tuple | None  # (energy, scale or None, softmax, weighted sum) caches
    fused: FusedCache | None
    attention: np.ndarray | None


def _fused(kernels):
    if kernels is None:
        return {"fused_attention_forward": None, "fused_attention_backward": None}

    def fused_attention_forward(query, key, value, scale):
        """Steps 3-5 in one streaming pass: (B, Ck, N) x2, (B, C, N) -> out (B, C, N).

        Keeps only the per-query log-sum-exp of the energies; never the N x N matrix.
        """
        out, lse = kernels.attention_forward(query, key, value, scale)
        return out, FusedCache(query, key, value, out, lse, scale)

    def fused_attention_backward(dout, cache):
        """dout (B, C, N) -> (dquery, dkey, dvalue), recomputing attention block by block."""
        query, key, value, out, lse, scale = cache
        return kernels.attention_backward(dout, query, key, value, out, lse, scale)

    return {
        "fused_attention_forward": fused_attention_forward,
        "fused_attention_backward": fused_attention_backward,
    }


# ---------------------------------------------------------------- steps 3-5, composed


def attend_forward(ops, query, key, value, scale):
    """Steps 3-5: energy, scale, softmax, weighted sum.

    query, key: (B, Ck, N); value: (B, C, N) -> out (B, C, N), cache.
    ``scale`` None skips step 4 (DANet's and SAGAN's attention have none).
    The cache is an `AttendCache`; its ``attention`` is the (B, N, N) softmax, or None when
    the fused kernel ran.
    """
    if ops.fused_attention_forward is not None:
        out, c_fused = ops.fused_attention_forward(query, key, value, scale or 1.0)
        return out, AttendCache(steps=None, fused=c_fused, attention=None)
    energy, c_e = ops.energy_forward(query, key)  # step 3: (B, N, N)
    c_s = None
    if scale is not None:
        energy, c_s = ops.scale_forward(energy, scale)  # step 4
    attention, c_a = ops.softmax_forward(energy)  # step 3: rows sum to 1
    out, c_w = ops.weighted_sum_forward(value, attention)  # step 5: (B, C, N)
    return out, AttendCache(steps=(c_e, c_s, c_a, c_w), fused=None, attention=attention)


def attend_backward(ops, dout, cache):
    """dout: (B, C, N) -> (dquery (B, Ck, N), dkey (B, Ck, N), dvalue (B, C, N))."""
    if cache.fused is not None:
        return ops.fused_attention_backward(dout, cache.fused)
    c_e, c_s, c_a, c_w = cache.steps
    dvalue, dattention = ops.weighted_sum_backward(dout, c_w)  # step 5
    denergy = ops.softmax_backward(dattention, c_a)  # step 3: softmax
    if c_s is not None:
        denergy = ops.scale_backward(denergy, c_s)  # step 4
    dquery, dkey = ops.energy_backward(denergy, c_e)  # step 3: energy
    return dquery, dkey, dvalue


def attention_rows(ops, query, key, scale):
    """Attention rows of M chosen queries: query (B, Ck, M), key (B, Ck, N) -> (B, M, N).

    Steps 3-4 and the softmax on M rows only, so no backend forms N x N here.
    """
    energy, _ = ops.energy_forward(query, key)
    if scale is not None:
        energy, _ = ops.scale_forward(energy, scale)
    attention, _ = ops.softmax_forward(energy)
    return attention


# ---------------------------------------------------------------- tracing


class TracedOps:
    """An `Ops` table whose every step reports its output arrays to ``trace(name, array)``.

    Names are ``<function>#<k>`` for the k-th call of a function, with ``.<i>`` for the
    i-th array when it returns several; ``counts`` is shared by all modules of one trace.
    Where ``labels`` names a call in the article's words, the name reads
    ``"step 3: energy (energy_forward#1)"``.
    """

    def __init__(self, ops, trace, counts, labels):
        self._ops, self._trace, self._counts, self._labels = ops, trace, counts, labels

    def __getattr__(self, name):
        f = getattr(self._ops, name)
        if not (name.endswith(_SUFFIXES) and callable(f)):
            return f

        def traced(*args, **kwargs):
            result = f(*args, **kwargs)
            self._counts[name] = k = self._counts.get(name, 0) + 1
            call = f"{name}#{k}"
            if call in self._labels:
                call = f"{self._labels[call]} ({call})"
            out = result[0] if name.endswith("_forward") else result  # forward: (out, cache)
            for suffix, a in _arrays(out):
                self._trace(call + suffix, a)
            return result

        return traced


def _arrays(out):
    """(suffix, array) pairs of a step's output: one array, or a tuple of them (None skipped)."""
    if isinstance(out, tuple):
        return [(f".{i}", a) for i, a in enumerate(out) if a is not None]
    return [("", out)]
