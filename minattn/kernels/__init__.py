"""Numba kernels: the article's steps as compiled loops, BLAS-free 1x1 convolutions, and a
streaming attention that never holds the N x N matrix.

This package is the only part of minattn that imports Numba; the numba backend
imports it when a module is built with ``backend="numba"``. One job per file:

- `jit.py`: how the kernels are compiled (lazily, cached when possible, with a note on
  stderr) and run on threads; the CPU's schedule (AVX2 or AVX-512);
- `simd.py`: exp and row max rebuilt from SIMD-friendly operations;
- `tiles.py`: the two register-blocked matrix products every fast kernel uses, and the tiling;
- `loops.py`: the article's steps 3-5 as loops (teaching, timing); twins in `minattn.steps`;
- `conv.py`: step 1 without BLAS (``conv1x1_forward_numba`` / ``conv1x1_backward_numba``);
- `flash.py`: the streaming attention (``attention_forward`` / ``attention_backward``) and
  its NumPy twin: FlashAttention-2's loop order, its products by BLAS (SciPy's, kept to one
  thread a call by `minattn.blas.one_blas_thread`) and by `tiles.py`.

Shapes: B batch, Ck query/key channels, C value channels, N pixels.
query, key: (B, Ck, N); value: (B, C, N); energy and attention: (B, N, N).
See docs/kernels.md for the derivations, the tile sizes and the measured speed.
"""

from .conv import PIXEL_BLOCK, conv1x1_backward_numba, conv1x1_forward_numba
from .flash import (
    KEY_BLOCK,
    QUERY_BLOCK,
    attention_backward,
    attention_backward_numpy,
    attention_forward,
    attention_forward_numpy,
)
from .jit import SCHEDULE, WIDE
from .loops import (
    energy_backward_numba,
    energy_blas,
    energy_numba,
    energy_python,
    softmax_backward_numba,
    softmax_numba,
    weighted_sum_backward_numba,
    weighted_sum_numba,
)
from .simd import exp_numba
from .tiles import NT_COLS

__all__ = [
    "KEY_BLOCK",
    "NT_COLS",
    "PIXEL_BLOCK",
    "QUERY_BLOCK",
    "SCHEDULE",
    "WIDE",
    "attention_backward",
    "attention_backward_numpy",
    "attention_forward",
    "attention_forward_numpy",
    "conv1x1_backward_numba",
    "conv1x1_forward_numba",
    "energy_backward_numba",
    "energy_blas",
    "energy_numba",
    "energy_python",
    "exp_numba",
    "softmax_backward_numba",
    "softmax_numba",
    "weighted_sum_backward_numba",
    "weighted_sum_numba",
]
