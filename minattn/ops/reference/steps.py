"""The seven steps as literal loops: the twin of `minattn.steps`."""

import math

import numpy as np

# ---------------------------------------------------------------- step 1: 1x1 convolutions


def conv1x1_forward(x, weight, bias):
    """out[b, o, r, c] = bias[o] + sum_i weight[o, i] * x[b, i, r, c]."""
    B, C_in, h, w = x.shape
    C_out = weight.shape[0]
    out = np.zeros((B, C_out, h, w), dtype=x.dtype)
    for b in range(B):
        for o in range(C_out):
            for r in range(h):
                for c in range(w):
                    total = bias[o]
                    for i in range(C_in):
                        total += weight[o, i, 0, 0] * x[b, i, r, c]
                    out[b, o, r, c] = total
    return out, (x, weight)


def conv1x1_backward(dout, cache):
    """dx[b,i,r,c] = sum_o W[o,i] dout[b,o,r,c]; dW[o,i] = sum_{b,r,c} dout * x; db = sum dout."""
    x, weight = cache
    B, C_in, h, w = x.shape
    C_out = weight.shape[0]
    dx = np.zeros_like(x)
    dweight = np.zeros_like(weight)
    dbias = np.zeros(C_out, dtype=x.dtype)
    for b in range(B):
        for o in range(C_out):
            for r in range(h):
                for c in range(w):
                    g = dout[b, o, r, c]
                    dbias[o] += g
                    for i in range(C_in):
                        dx[b, i, r, c] += weight[o, i, 0, 0] * g
                        dweight[o, i, 0, 0] += g * x[b, i, r, c]
    return dx, dweight, dbias


# ---------------------------------------------------------------- step 2: reshape to matrices


def flatten_forward(x):
    """Pixel (r, c) becomes column n = r * w + c (row-major, as torch's .view)."""
    B, C, h, w = x.shape
    out = np.zeros((B, C, h * w), dtype=x.dtype)
    for b in range(B):
        for ch in range(C):
            for r in range(h):
                for c in range(w):
                    out[b, ch, r * w + c] = x[b, ch, r, c]
    return out, x.shape


def flatten_backward(dout, cache):
    B, C, h, w = cache
    dx = np.zeros(cache, dtype=dout.dtype)
    for b in range(B):
        for ch in range(C):
            for r in range(h):
                for c in range(w):
                    dx[b, ch, r, c] = dout[b, ch, r * w + c]
    return dx


# ---------------------------------------------------------------- step 3: energy


def energy_forward(query, key):
    """energy[b, i, j] = sum_c query[b, c, i] * key[b, c, j]; M queries against N keys."""
    B, Ck, M = query.shape
    N = key.shape[2]
    energy = np.zeros((B, M, N), dtype=query.dtype)
    for b in range(B):
        for i in range(M):
            for j in range(N):
                total = 0.0
                for c in range(Ck):
                    total += query[b, c, i] * key[b, c, j]
                energy[b, i, j] = total
    return energy, (query, key)


def energy_backward(dout, cache):
    query, key = cache
    B, Ck, M = query.shape
    N = key.shape[2]
    dquery = np.zeros_like(query)
    dkey = np.zeros_like(key)
    for b in range(B):
        for i in range(M):
            for j in range(N):
                for c in range(Ck):
                    dquery[b, c, i] += dout[b, i, j] * key[b, c, j]
                    dkey[b, c, j] += dout[b, i, j] * query[b, c, i]
    return dquery, dkey


# ---------------------------------------------------------------- step 4: scale


def scale_forward(energy, scale):
    out = np.zeros_like(energy)
    B, M, N = energy.shape
    for b in range(B):
        for i in range(M):
            for j in range(N):
                out[b, i, j] = scale * energy[b, i, j]
    return out, scale


def scale_backward(dout, cache):
    return scale_forward(dout, cache)[0]


# ---------------------------------------------------------------- step 3 (cont.): softmax


def softmax_forward(energy):
    """attention[b, i, j] = exp(e_ij - m_i) / sum_k exp(e_ik - m_i), m_i the row maximum."""
    B, M, N = energy.shape
    attention = np.zeros_like(energy)
    for b in range(B):
        for i in range(M):
            m = max(energy[b, i, j] for j in range(N))
            total = 0.0
            for j in range(N):
                attention[b, i, j] = math.exp(energy[b, i, j] - m)
                total += attention[b, i, j]
            for j in range(N):
                attention[b, i, j] /= total
    return attention, attention


def softmax_backward(dout, cache):
    """d e_ij = sum_k dout_ik * dA_ik/de_ij = a_ij * (dout_ij - sum_k dout_ik a_ik)."""
    attention = cache
    B, M, N = attention.shape
    denergy = np.zeros_like(attention)
    for b in range(B):
        for i in range(M):
            dot = 0.0
            for k in range(N):
                dot += dout[b, i, k] * attention[b, i, k]
            for j in range(N):
                denergy[b, i, j] = attention[b, i, j] * (dout[b, i, j] - dot)
    return denergy


# ---------------------------------------------------------------- step 5: weighted sum


def weighted_sum_forward(value, attention):
    """out[b, c, i] = sum_j attention[b, i, j] * value[b, c, j]."""
    B, C, N = value.shape
    out = np.zeros_like(value)
    for b in range(B):
        for c in range(C):
            for i in range(N):
                total = 0.0
                for j in range(N):
                    total += attention[b, i, j] * value[b, c, j]
                out[b, c, i] = total
    return out, (value, attention)


def weighted_sum_backward(dout, cache):
    value, attention = cache
    B, C, N = value.shape
    dvalue = np.zeros_like(value)
    dattention = np.zeros_like(attention)
    for b in range(B):
        for c in range(C):
            for i in range(N):
                for j in range(N):
                    dvalue[b, c, j] += dout[b, c, i] * attention[b, i, j]
                    dattention[b, i, j] += dout[b, c, i] * value[b, c, j]
    return dvalue, dattention


# ---------------------------------------------------------------- step 6: reshape back


def unflatten_forward(x, h, w):
    B, C, _ = x.shape
    out = np.zeros((B, C, h, w), dtype=x.dtype)
    for b in range(B):
        for ch in range(C):
            for r in range(h):
                for c in range(w):
                    out[b, ch, r, c] = x[b, ch, r * w + c]
    return out, x.shape


def unflatten_backward(dout, cache):
    B, C, N = cache
    w = dout.shape[3]
    dx = np.zeros(cache, dtype=dout.dtype)
    for b in range(B):
        for ch in range(C):
            for n in range(N):
                dx[b, ch, n] = dout[b, ch, n // w, n % w]
    return dx


# ---------------------------------------------------------------- step 7: residual


def residual_forward(x, f, gamma=None):
    g = 1.0 if gamma is None else gamma[0]
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        out[idx] = g * f[idx] + x[idx]
    return out, (f, gamma)


def residual_backward(dout, cache):
    f, gamma = cache
    g = 1.0 if gamma is None else gamma[0]
    dx = np.zeros_like(dout)
    df = np.zeros_like(dout)
    dgamma = 0.0
    for idx in np.ndindex(dout.shape):
        dx[idx] = dout[idx]
        df[idx] = g * dout[idx]
        dgamma += dout[idx] * f[idx]
    return dx, df, (None if gamma is None else np.array([dgamma], dtype=dout.dtype))
