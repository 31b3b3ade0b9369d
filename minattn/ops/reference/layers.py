"""The attention family's steps as literal loops: the twin of `minattn.layers`.

Same names, signatures and caches; every formula one scalar at a time.
"""

import math

import numpy as np

# ================================================================ channel attention (DANet CAM)


def channel_energy_forward(x):
    """energy[b, i, j] = sum_n x[b, i, n] * x[b, j, n]."""
    B, C, N = x.shape
    energy = np.zeros((B, C, C), dtype=x.dtype)
    for b in range(B):
        for i in range(C):
            for j in range(C):
                total = 0.0
                for n in range(N):
                    total += x[b, i, n] * x[b, j, n]
                energy[b, i, j] = total
    return energy, x


def channel_energy_backward(dout, cache):
    """x[b, i, n] enters E[i, j] (as the left factor) and E[j, i] (as the right one)."""
    x = cache
    B, C, N = x.shape
    dx = np.zeros_like(x)
    for b in range(B):
        for i in range(C):
            for j in range(C):
                for n in range(N):
                    dx[b, i, n] += dout[b, i, j] * x[b, j, n]
                    dx[b, j, n] += dout[b, i, j] * x[b, i, n]
    return dx


def rowmax_minus_forward(energy):
    """out[b, i, j] = max_k energy[b, i, k] - energy[b, i, j]; the first maximum wins ties."""
    B, M, N = energy.shape
    out = np.zeros_like(energy)
    arg = np.zeros((B, M), dtype=np.intp)
    for b in range(B):
        for i in range(M):
            best = 0
            for k in range(1, N):
                if energy[b, i, k] > energy[b, i, best]:
                    best = k
            arg[b, i] = best
            for j in range(N):
                out[b, i, j] = energy[b, i, best] - energy[b, i, j]
    return out, (arg, energy.shape)


def rowmax_minus_backward(dout, cache):
    """denergy[i, j] = -dout[i, j], plus sum_k dout[i, k] at the row's maximum."""
    arg, shape = cache
    B, M, N = shape
    denergy = np.zeros(shape, dtype=dout.dtype)
    for b in range(B):
        for i in range(M):
            for j in range(N):
                denergy[b, i, j] -= dout[b, i, j]
                denergy[b, i, arg[b, i]] += dout[b, i, j]
    return denergy


def channel_weighted_sum_forward(attention, value):
    """out[b, i, n] = sum_j attention[b, i, j] * value[b, j, n]."""
    B, C, N = value.shape
    out = np.zeros_like(value)
    for b in range(B):
        for i in range(C):
            for n in range(N):
                total = 0.0
                for j in range(C):
                    total += attention[b, i, j] * value[b, j, n]
                out[b, i, n] = total
    return out, (attention, value)


def channel_weighted_sum_backward(dout, cache):
    attention, value = cache
    B, C, N = value.shape
    dattention = np.zeros_like(attention)
    dvalue = np.zeros_like(value)
    for b in range(B):
        for i in range(C):
            for j in range(C):
                for n in range(N):
                    dattention[b, i, j] += dout[b, i, n] * value[b, j, n]
                    dvalue[b, j, n] += dout[b, i, n] * attention[b, i, j]
    return dattention, dvalue


# ================================================================ squeeze-and-excitation (SENet)


def global_avg_pool_forward(x):
    """out[b, c] = (1 / HW) sum_{r, s} x[b, c, r, s]."""
    B, C, H, W = x.shape
    out = np.zeros((B, C), dtype=x.dtype)
    for b in range(B):
        for c in range(C):
            total = 0.0
            for r in range(H):
                for s in range(W):
                    total += x[b, c, r, s]
            out[b, c] = total / (H * W)
    return out, x.shape


def global_avg_pool_backward(dout, cache):
    B, C, H, W = cache
    dx = np.zeros(cache, dtype=dout.dtype)
    for b in range(B):
        for c in range(C):
            for r in range(H):
                for s in range(W):
                    dx[b, c, r, s] = dout[b, c] / (H * W)
    return dx


def linear_forward(x, weight, bias=None):
    """out[b, o] = bias[o] + sum_i weight[o, i] * x[b, i]."""
    B, F_in = x.shape
    F_out = weight.shape[0]
    out = np.zeros((B, F_out), dtype=x.dtype)
    for b in range(B):
        for o in range(F_out):
            total = 0.0 if bias is None else bias[o]
            for i in range(F_in):
                total += weight[o, i] * x[b, i]
            out[b, o] = total
    return out, (x, weight, bias is not None)


def linear_backward(dout, cache):
    x, weight, has_bias = cache
    B, F_in = x.shape
    F_out = weight.shape[0]
    dx = np.zeros_like(x)
    dweight = np.zeros_like(weight)
    dbias = np.zeros(F_out, dtype=dout.dtype)
    for b in range(B):
        for o in range(F_out):
            dbias[o] += dout[b, o]
            for i in range(F_in):
                dx[b, i] += dout[b, o] * weight[o, i]
                dweight[o, i] += dout[b, o] * x[b, i]
    return dx, dweight, dbias if has_bias else None


def relu_forward(x):
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        out[idx] = x[idx] if x[idx] > 0 else 0.0
    return out, x


def relu_backward(dout, cache):
    x = cache
    dx = np.zeros_like(dout)
    for idx in np.ndindex(x.shape):
        dx[idx] = dout[idx] if x[idx] > 0 else 0.0
    return dx


def sigmoid_forward(x):
    """s = 1 / (1 + e^-x) for x >= 0, and e^x / (1 + e^x) for x < 0 (neither overflows)."""
    s = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        v = float(x[idx])
        s[idx] = 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))
    return s, s


def sigmoid_backward(dout, cache):
    s = cache
    dx = np.zeros_like(dout)
    for idx in np.ndindex(s.shape):
        dx[idx] = dout[idx] * s[idx] * (1.0 - s[idx])
    return dx


def channel_gate_forward(x, gate):
    """out[b, c, r, s] = x[b, c, r, s] * gate[b, c]."""
    out = np.zeros_like(x)
    for b, c, r, s in np.ndindex(x.shape):
        out[b, c, r, s] = x[b, c, r, s] * gate[b, c]
    return out, (x, gate)


def channel_gate_backward(dout, cache):
    x, gate = cache
    dx = np.zeros_like(x)
    dgate = np.zeros_like(gate)
    for b, c, r, s in np.ndindex(x.shape):
        dx[b, c, r, s] = dout[b, c, r, s] * gate[b, c]
        dgate[b, c] += dout[b, c, r, s] * x[b, c, r, s]
    return dx, dgate


# ================================================================ covariance attention


def centre_forward(x):
    """out[b, c, n] = x[b, c, n] - (1 / C) sum_k x[b, k, n]."""
    B, C, N = x.shape
    out = np.zeros_like(x)
    for b in range(B):
        for n in range(N):
            mean = 0.0
            for c in range(C):
                mean += x[b, c, n]
            mean /= C
            for c in range(C):
                out[b, c, n] = x[b, c, n] - mean
    return out, x.shape


def centre_backward(dout, cache):
    """dx[c] = sum_k dout[k] d out[k] / d x[c] = dout[c] - (1 / C) sum_k dout[k]."""
    B, C, N = cache
    dx = np.zeros(cache, dtype=dout.dtype)
    for b in range(B):
        for n in range(N):
            total = 0.0
            for k in range(C):
                total += dout[b, k, n]
            for c in range(C):
                dx[b, c, n] = dout[b, c, n] - total / C
    return dx


def unit_norm_forward(x, eps=1e-12):
    """out[b, c, n] = x[b, c, n] / max(sqrt(sum_k x[b, k, n]^2), eps)."""
    B, C, N = x.shape
    out = np.zeros_like(x)
    norm = np.zeros((B, 1, N), dtype=x.dtype)
    for b in range(B):
        for n in range(N):
            total = 0.0
            for c in range(C):
                total += x[b, c, n] * x[b, c, n]
            norm[b, 0, n] = max(math.sqrt(total), eps)
            for c in range(C):
                out[b, c, n] = x[b, c, n] / norm[b, 0, n]
    return out, (out, norm, eps)


def unit_norm_backward(dout, cache):
    """With r = |x| > eps and z = x / r: d z[k] / d x[c] = (delta_kc - z[k] z[c]) / r."""
    out, norm, eps = cache
    B, C, N = out.shape
    dx = np.zeros_like(dout)
    for b in range(B):
        for n in range(N):
            r = norm[b, 0, n]
            dot = 0.0
            if r > eps:
                for k in range(C):
                    dot += out[b, k, n] * dout[b, k, n]
            for c in range(C):
                dx[b, c, n] = (dout[b, c, n] - out[b, c, n] * dot) / r
    return dx
