"""exp and max over a row, rebuilt from operations that have SIMD instructions.

Two loops over every score would not vectorise as written: Numba's ``math.exp``
is a scalar libm call (no SVML in the llvmlite wheels) and its float ``max()``
carries NaN checks that keep LLVM from building a SIMD max. Both are rebuilt
here, partly on the bits of the floats (what ``x.view(np.int32)`` does to an
array). Four tiny LLVM intrinsics give those bit views and the dtype test inside
compiled code; with NUMBA_DISABLE_JIT=1 the plain NumPy versions below stand in.
NumPy twin of everything here: ``np.exp`` and ``np.max``.
"""

import numpy as np
from llvmlite import ir
from numba.core import config, types
from numba.extending import intrinsic

from .jit import EXP_FASTMATH, kernel

if config.DISABLE_JIT:

    def _pow2(k):
        """2 ** k for a float k holding an integer."""
        return np.ldexp(type(k)(1), int(k))

    def _float_bits(x):
        """The bits of a float32 (float64) as an int32 (int64)."""
        return np.asarray(x).view(np.int32 if x.dtype == np.float32 else np.int64)[()]

    def _bits_float(b):
        """The inverse of ``_float_bits``."""
        return np.asarray(b).view(np.float32 if b.dtype == np.int32 else np.float64)[()]

    def _single(x):
        """True for a float32 x."""
        return np.asarray(x).dtype == np.float32

else:

    @intrinsic
    def _pow2(typingctx, k):
        """2 ** k for a float k holding an integer in [-126, 127] (float32) or [-1022, 1023].

        The integer k + bias, shifted into the exponent field, *is* the float 2 ** k.
        Convert, add, shift and reinterpret are single SIMD instructions; ``ldexp``
        or ``2.0 ** k`` would be a scalar call.
        """
        if not isinstance(k, types.Float):
            return None
        width = k.bitwidth
        mantissa_bits, bias = (23, 127) if width == 32 else (52, 1023)

        def codegen(context, builder, signature, args):
            int_type = ir.IntType(width)
            n = builder.fptosi(args[0], int_type)
            bits = builder.shl(builder.add(n, int_type(bias)), int_type(mantissa_bits))
            return builder.bitcast(bits, args[0].type)

        return k(k), codegen

    @intrinsic
    def _float_bits(typingctx, x):
        """The bits of a float32 (float64) as an int32 (int64): a free reinterpretation."""
        if not isinstance(x, types.Float):
            return None
        int_type = types.int32 if x.bitwidth == 32 else types.int64

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(x.bitwidth))

        return int_type(x), codegen

    @intrinsic
    def _bits_float(typingctx, b):
        """The inverse of ``_float_bits``."""
        if b not in (types.int32, types.int64):
            return None
        float_type = types.float32 if b.bitwidth == 32 else types.float64

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(float_type))

        return float_type(b), codegen

    @intrinsic
    def _single(typingctx, x):
        """True for a float32 x, as a constant: the compiler keeps only that dtype's branch."""
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, signature, args):
            return context.get_constant(types.boolean, x.bitwidth == 32)

        return types.boolean(x), codegen


@kernel
def _row_max(row, n):
    """max(row[:n]) for n >= 1 and finite values, by two integer reductions (they vectorise).

    Read as signed integers, the bits of floats >= 0 sort like the floats, and the
    bits of floats < 0 sort in reverse (sign bit set, then magnitude). So the
    largest float is the one with the largest bits if those are >= 0 (some float
    is >= 0), else the one with the smallest bits (all negative: smallest magnitude).
    """
    hi = lo = _float_bits(row[0])
    for j in range(n):
        b = _float_bits(row[j])
        hi = max(hi, b)
        lo = min(lo, b)
    return _bits_float(hi if hi >= 0 else lo)


@kernel(fastmath=EXP_FASTMATH)
def _exp_shifted(row, shift, n):
    """row[:n] <- exp(row[:n] - shift). row: (>= n,); for row <= shift.

    exp(x) = 2**k * exp(r) with k = round(x / ln 2) and |r| <= ln(2) / 2; exp(r)
    by its Taylor polynomial, 2**k from the exponent bits. Every operation has a
    SIMD instruction. ln 2 is split into a short head (k * head is exact) and a
    tail, so r stays accurate for large k.

    The polynomial's degree follows the dtype: 7 for float32 (truncation error
    r**8 / 8! < 6e-9, a twentieth of float32's half-ulp) and 12 for float64 (below
    2e-16). It is evaluated in Estrin's scheme, pairs first, c0 + c1 r, c2 + c3 r,
    ..., then pairs of pairs with r**2, r**4, r**8: the same result as Horner's
    rule to rounding, but a chain of 4-5 dependent operations instead of 7-12,
    so the core works on several SIMD vectors at once instead of waiting on one.
    """
    T = row.dtype.type
    lowest = T(-87.0) if _single(T(0.0)) else T(-708.0)  # exp(lowest) is still normal
    log2e = T(1.4426950408889634)
    ln2_head = T(0.693145751953125)  # 16 significant bits: k * ln2_head is exact
    ln2_tail = T(1.4286068203094173e-06)  # ln 2 - ln2_head
    for j in range(n):
        x = row[j] - shift
        x = x if x > lowest else lowest  # also turns -inf into a tiny finite weight
        k = np.floor(x * log2e + T(0.5))
        r = (x - k * ln2_head) - k * ln2_tail
        r2 = r * r
        r4 = r2 * r2
        # sum_{i <= 7} r**i / i!, then the float64 terms up to r**12 / 12!
        p01 = T(1.0) + r
        p23 = T(1.0 / 2.0) + T(1.0 / 6.0) * r
        p45 = T(1.0 / 24.0) + T(1.0 / 120.0) * r
        p67 = T(1.0 / 720.0) + T(1.0 / 5040.0) * r
        p = (p01 + r2 * p23) + r4 * (p45 + r2 * p67)
        if not _single(T(0.0)):
            p89 = T(1.0 / 40320.0) + T(1.0 / 362880.0) * r
            p1011 = T(1.0 / 3628800.0) + T(1.0 / 39916800.0) * r
            p12 = T(1.0 / 479001600.0)
            p += (r4 * r4) * ((p89 + r2 * p1011) + r4 * p12)
        row[j] = p * _pow2(k)


@kernel
def exp_numba(x):
    """Elementwise exp(x) for x <= 0 through ``_exp_shifted``; its NumPy twin is ``np.exp``.

    x: any shape, float32 or float64 -> same shape and dtype.
    """
    out = x.copy().reshape(-1)
    _exp_shifted(out, x.dtype.type(0.0), out.size)
    return out.reshape(x.shape)
