"""Honest alternatives for the step exercises (notebooks 2 and 3): correct code unlike the
notebooks' solutions, in the styles a careful student writes (einsum, tensordot, loops,
strided views, other stable formulas), and the classic wrong ones.

Every function here was written from the exercise's text, not from the package, and is
checked against the package's own function in float64 by the tests before it is graded
(`test_honest_alternatives.py`). ``CORRECT[exercise_id]`` lists (style, {name: function});
``WRONG[exercise_id]`` lists (mistake, {name: function}, the part that must fail).
"""

from fractions import Fraction

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# ================================================================ notebook 2: forward steps


def avg_pool_einsum(x, ds):
    B, C, H, W = x.shape
    blocks = x.reshape(B, C, H // ds, ds, W // ds, ds)
    return np.einsum("bchiwj->bchw", blocks) / (ds * ds), ds


def avg_pool_strided_sum(x, ds):
    # the ds * ds pixels of every block, one strided view per offset
    total = sum(x[:, :, i::ds, j::ds] for i in range(ds) for j in range(ds))
    return total / ds**2, ds


def avg_pool_windows(x, ds):
    windows = sliding_window_view(x, (ds, ds), axis=(2, 3))[:, :, ::ds, ::ds]
    return windows.mean(axis=(-2, -1)), ds


def avg_pool_matrices(x, ds):
    # pooling is linear on rows and columns: P_h x P_w^T, each row of P averaging ds pixels
    h, w = x.shape[2] // ds, x.shape[3] // ds
    Ph = np.kron(np.eye(h, dtype=x.dtype), np.ones((1, ds), dtype=x.dtype)) / ds
    Pw = np.kron(np.eye(w, dtype=x.dtype), np.ones((1, ds), dtype=x.dtype)) / ds
    return Ph @ x @ Pw.T, ds


def avg_pool_prefix_sums(x, ds):
    # an integral image: every block sum from four corners of the 2-D prefix sums
    S = np.zeros(x.shape[:2] + (x.shape[2] + 1, x.shape[3] + 1), dtype=x.dtype)
    S[:, :, 1:, 1:] = x.cumsum(axis=2).cumsum(axis=3)
    c = S[:, :, ::ds, ::ds]
    return (c[:, :, 1:, 1:] - c[:, :, :-1, 1:] - c[:, :, 1:, :-1] + c[:, :, :-1, :-1]) / ds**2, ds


def conv1x1_einsum(x, weight, bias):
    out = np.einsum("oc,bchw->bohw", weight[:, :, 0, 0], x) + bias[None, :, None, None]
    return out, (x, weight)


def conv1x1_tensordot(x, weight, bias):
    out = np.tensordot(weight[:, :, 0, 0], x, axes=([1], [1]))  # (C_out, B, h, w)
    return out.transpose(1, 0, 2, 3) + bias[:, None, None], (x, weight)


def conv1x1_channel_loop(x, weight, bias):
    W = weight[:, :, 0, 0]
    rows = [(x * W[o][None, :, None, None]).sum(axis=1) + bias[o] for o in range(W.shape[0])]
    return np.stack(rows, axis=1), (x, weight)


def conv1x1_channels_last(x, weight, bias):
    pixels = np.moveaxis(x, 1, -1)  # (B, h, w, C_in): one channel vector per pixel
    return np.moveaxis(pixels @ weight[:, :, 0, 0].T + bias, -1, 1), (x, weight)


def flatten_reshape_tuple(x):
    return np.reshape(x, (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])), x.shape


def flatten_row_loop(x):
    return np.concatenate([x[:, :, r, :] for r in range(x.shape[2])], axis=2), x.shape


def flatten_pixel_loop(x):
    B, C, h, w = x.shape
    out = np.empty((B, C, h * w), dtype=x.dtype)
    for r in range(h):
        for c in range(w):
            out[:, :, r * w + c] = x[:, :, r, c]
    return out, x.shape


def energy_einsum(query, key):
    return np.einsum("bci,bcj->bij", query, key), (query, key)


def energy_batch_loop(query, key):
    return np.stack([q.T @ k for q, k in zip(query, key, strict=True)]), (query, key)


def energy_broadcast(query, key):
    return (query[:, :, :, None] * key[:, :, None, :]).sum(axis=1), (query, key)


def energy_swapaxes(query, key):
    return np.matmul(np.swapaxes(query, 1, 2), key), (query, key)


def scale_multiply(energy, scale):
    return np.multiply(energy, scale), scale


def scale_divide(energy, scale):
    return energy / (1 / scale), scale


def scale_in_place_copy(energy, scale):
    scaled = energy.copy()
    scaled *= scale
    return scaled, scale


def softmax_logsumexp(energy):
    # the textbook-stable log-sum-exp form: A = exp(x - logsumexp(x))
    top = energy.max(axis=-1, keepdims=True)
    lse = top + np.log(np.exp(energy - top).sum(axis=-1, keepdims=True))
    attention = np.exp(energy - lse)
    return attention, attention


def softmax_scipy(energy):
    from scipy.special import softmax

    attention = softmax(energy, axis=-1)
    return attention, attention


def softmax_row_loop(energy):
    attention = np.empty_like(energy)
    for b in range(energy.shape[0]):
        for i in range(energy.shape[1]):
            e = np.exp(energy[b, i] - energy[b, i].max())
            attention[b, i] = e / e.sum()
    return attention, attention


def softmax_pairwise(energy):
    # A_ij = 1 / sum_l exp(x_l - x_j): no shift at all; an overflow gives 1 / inf = 0
    with np.errstate(over="ignore"):
        attention = 1 / np.exp(energy[..., None, :] - energy[..., :, None]).sum(axis=-1)
    return attention, attention


def softmax_einsum_reciprocal(energy):
    e = np.exp(energy - energy.max(axis=-1, keepdims=True))
    attention = np.einsum("bij,bi->bij", e, 1 / e.sum(axis=-1))
    return attention, attention


def weighted_sum_einsum(value, attention):
    return np.einsum("bcj,bij->bci", value, attention), (value, attention)


def weighted_sum_transposed(value, attention):
    out = (attention @ value.transpose(0, 2, 1)).transpose(0, 2, 1)
    return out, (value, attention)


def weighted_sum_pixel_loop(value, attention):
    out = np.empty(value.shape, dtype=value.dtype)
    for i in range(value.shape[2]):
        out[:, :, i] = (value * attention[:, i][:, None, :]).sum(axis=-1)
    return out, (value, attention)


def unflatten_minus_one(x, h, w):
    return x.reshape(x.shape[0], x.shape[1], h, -1), x.shape


def unflatten_row_stack(x, h, w):
    return np.stack([x[:, :, r * w : (r + 1) * w] for r in range(h)], axis=2), x.shape


def unflatten_shape_tuple(x, h, w):
    return np.reshape(x, x.shape[:2] + (h, w)), x.shape


def bilinear_tent(n_in, ds, dtype=np.float64):
    # each weight is the tent 1 - |s - i| around the clamped source coordinate
    s = np.clip((np.arange(n_in * ds) + 0.5) / ds - 0.5, 0, n_in - 1)
    return np.maximum(0, 1 - np.abs(s[:, None] - np.arange(n_in)[None, :])).astype(dtype)


def bilinear_interp_identity(n_in, ds, dtype=np.float64):
    # interpolate each column of the identity: np.interp clamps at both ends
    s = (np.arange(n_in * ds) + 0.5) / ds - 0.5
    columns = [np.interp(s, np.arange(n_in), e) for e in np.eye(n_in)]
    return np.stack(columns, axis=1).astype(dtype)


def bilinear_fractions(n_in, ds, dtype=np.float64):
    M = [[Fraction(0)] * n_in for _ in range(n_in * ds)]
    for o in range(n_in * ds):
        s = max(Fraction(2 * o + 1, 2 * ds) - Fraction(1, 2), Fraction(0))
        i0 = int(s)
        M[o][i0] += 1 - (s - i0)
        M[o][min(i0 + 1, n_in - 1)] += s - i0
    return np.array([[float(v) for v in row] for row in M], dtype=dtype)


def bilinear_vectorised(n_in, ds, dtype=np.float64):
    o = np.arange(n_in * ds)
    s = np.maximum((o + 0.5) / ds - 0.5, 0.0)
    i0 = s.astype(int)
    M = np.zeros((n_in * ds, n_in), dtype=dtype)
    np.add.at(M, (o, i0), 1 - (s - i0))
    np.add.at(M, (o, np.minimum(i0 + 1, n_in - 1)), s - i0)
    return M


def upsample_kron_einsum(x, ds, mode="nearest"):
    if mode == "nearest":
        return np.kron(x, np.ones((ds, ds), dtype=x.dtype)), (ds, mode, None)
    Mh = bilinear_tent(x.shape[2], ds, x.dtype)
    Mw = bilinear_tent(x.shape[3], ds, x.dtype)
    return np.einsum("Hh,bchw,Ww->bcHW", Mh, x, Mw), (ds, mode, (Mh, Mw))


def upsample_views_tensordot(x, ds, mode="nearest"):
    B, C, h, w = x.shape
    if mode == "nearest":
        big = np.broadcast_to(x[:, :, :, None, :, None], (B, C, h, ds, w, ds))
        return big.reshape(B, C, h * ds, w * ds), (ds, mode, None)
    Mh = bilinear_interp_identity(h, ds, x.dtype)
    Mw = bilinear_interp_identity(w, ds, x.dtype)
    rows = np.tensordot(x, Mh, axes=([2], [1]))  # (B, C, w, H)
    out = np.tensordot(rows, Mw, axes=([2], [1]))  # (B, C, H, W)
    return out, (ds, mode, (Mh, Mw))


def upsample_index_loops(x, ds, mode="nearest"):
    h, w = x.shape[2:]
    if mode == "nearest":
        rows, cols = np.arange(h * ds) // ds, np.arange(w * ds) // ds
        return x[:, :, rows][:, :, :, cols], (ds, mode, None)
    Mh, Mw = bilinear_fractions(h, ds, x.dtype), bilinear_fractions(w, ds, x.dtype)
    tall = np.stack([np.tensordot(Mh[r], x, axes=([0], [2])) for r in range(h * ds)], axis=2)
    out = np.stack([tall @ Mw[c] for c in range(w * ds)], axis=3)
    return out, (ds, mode, (Mh, Mw))


def residual_ufuncs(x, f, gamma=None):
    z = np.add(x, f) if gamma is None else np.add(x, np.multiply(gamma, f))
    return z, (f, gamma)


def residual_one_line(x, f, gamma=None):
    return x + f * (1 if gamma is None else gamma[0]), (f, gamma)


def residual_in_place_copy(x, f, gamma=None):
    z = f.copy()
    if gamma is not None:
        z *= gamma
    z += x
    return z, (f, gamma)


# ================================================================ notebook 3: backward steps


def residual_back_vdot(dout, cache):
    f, gamma = cache
    if gamma is None:
        return dout, dout, None
    return dout, dout * gamma, np.array([np.vdot(dout, f)], dtype=dout.dtype)


def residual_back_einsum(dout, cache):
    f, gamma = cache
    if gamma is None:
        return dout.copy(), dout.copy(), None
    dgamma = np.einsum("bchw,bchw->", dout, f).reshape(1).astype(dout.dtype)
    return dout.copy(), gamma[0] * dout, dgamma


def residual_back_batch_loop(dout, cache):
    f, gamma = cache
    if gamma is None:
        return dout, dout, None
    total = sum(float(np.sum(dout[b] * f[b])) for b in range(dout.shape[0]))
    return dout, np.multiply(dout, gamma[0]), np.array([total], dtype=dout.dtype)


def upsample_back_einsum(dout, cache):
    ds, mode, mats = cache
    if mode == "nearest":
        B, C, H, W = dout.shape
        return np.einsum("bchiwj->bchw", dout.reshape(B, C, H // ds, ds, W // ds, ds))
    Mh, Mw = mats
    return np.einsum("Hh,bcHW,Ww->bchw", Mh, dout, Mw)


def upsample_back_views(dout, cache):
    ds, mode, mats = cache
    if mode == "nearest":
        return sum(dout[:, :, i::ds, j::ds] for i in range(ds) for j in range(ds))
    Mh, Mw = mats
    rows = np.tensordot(dout, Mh, axes=([2], [0]))  # (B, C, W, h)
    return np.tensordot(rows, Mw, axes=([2], [0]))  # (B, C, h, w)


def upsample_back_reduceat(dout, cache):
    ds, mode, mats = cache
    if mode == "nearest":
        rows = np.add.reduceat(dout, np.arange(0, dout.shape[2], ds), axis=2)
        return np.add.reduceat(rows, np.arange(0, dout.shape[3], ds), axis=3)
    Mh, Mw = mats
    return (dout.transpose(0, 1, 3, 2) @ Mh).transpose(0, 1, 3, 2) @ Mw


def unflatten_back_minus_one(dout, cache):
    return dout.reshape(cache[0], cache[1], -1)


def unflatten_back_rows(dout, cache):
    return np.concatenate([dout[:, :, r, :] for r in range(dout.shape[2])], axis=2)


def unflatten_back_copy(dout, cache):
    return np.reshape(dout.copy(), tuple(cache))


def weighted_sum_back_einsum(dout, cache):
    value, attention = cache
    return (
        np.einsum("bci,bij->bcj", dout, attention),
        np.einsum("bci,bcj->bij", dout, value),
    )


def weighted_sum_back_batch_loop(dout, cache):
    value, attention = cache
    dvalue = np.stack([d @ a for d, a in zip(dout, attention, strict=True)])
    dattention = np.stack([d.T @ v for d, v in zip(dout, value, strict=True)])
    return dvalue, dattention


def weighted_sum_back_broadcast(dout, cache):
    value, attention = cache
    dvalue = (dout[:, :, :, None] * attention[:, None, :, :]).sum(axis=2)
    dattention = (dout[:, :, :, None] * value[:, :, None, :]).sum(axis=1)
    return dvalue, dattention


def softmax_back_jacobian(dout, cache):
    # the Jacobian of every row, diag(a) - a a^T, applied by einsum (N^3: fine at this size)
    a = cache
    eye = np.eye(a.shape[-1], dtype=a.dtype)
    J = a[..., :, None] * eye - a[..., :, None] * a[..., None, :]
    return np.einsum("bij,bijk->bik", dout, J)


def softmax_back_two_terms(dout, cache):
    a = cache
    return a * dout - a * np.einsum("bij,bij->bi", a, dout)[..., None]


def softmax_back_row_loop(dout, cache):
    out = np.empty_like(dout)
    for b in range(dout.shape[0]):
        for i in range(dout.shape[1]):
            a, d = cache[b, i], dout[b, i]
            out[b, i] = a * (d - a @ d)
    return out


def scale_back_multiply(dout, cache):
    return np.multiply(dout, cache)


def scale_back_divide(dout, cache):
    return dout / (1 / cache)


def scale_back_copy(dout, cache):
    d = dout.copy()
    d *= cache
    return d


def energy_back_einsum(dout, cache):
    query, key = cache
    return np.einsum("bij,bcj->bci", dout, key), np.einsum("bij,bci->bcj", dout, query)


def energy_back_batch_loop(dout, cache):
    query, key = cache
    dquery = np.stack([k @ d.T for k, d in zip(key, dout, strict=True)])
    dkey = np.stack([q @ d for q, d in zip(query, dout, strict=True)])
    return dquery, dkey


def energy_back_swapaxes(dout, cache):
    query, key = cache
    dquery = np.swapaxes(dout @ np.swapaxes(key, 1, 2), 1, 2)
    dkey = np.swapaxes(np.swapaxes(dout, 1, 2) @ np.swapaxes(query, 1, 2), 1, 2)
    return dquery, dkey


def flatten_back_star(dout, cache):
    return dout.reshape(*cache)


def flatten_back_rows(dout, cache):
    B, C, h, w = cache
    out = np.empty(cache, dtype=dout.dtype)
    for r in range(h):
        out[:, :, r, :] = dout[:, :, r * w : (r + 1) * w]
    return out


def flatten_back_copy(dout, cache):
    return np.reshape(np.array(dout), tuple(cache))


def conv1x1_back_einsum(dout, cache):
    x, weight = cache
    W = weight[:, :, 0, 0]
    dx = np.einsum("oc,bohw->bchw", W, dout)
    dweight = np.einsum("bohw,bchw->oc", dout, x)[:, :, None, None]
    return dx, dweight, np.einsum("bohw->o", dout)


def conv1x1_back_tensordot(dout, cache):
    x, weight = cache
    dx = np.tensordot(weight[:, :, 0, 0], dout, axes=([0], [1])).transpose(1, 0, 2, 3)
    dweight = np.tensordot(dout, x, axes=([0, 2, 3], [0, 2, 3]))
    return dx, dweight.reshape(weight.shape), dout.sum(axis=(0, 2, 3))


def conv1x1_back_batch_loop(dout, cache):
    x, weight = cache
    W = weight[:, :, 0, 0]
    dx = np.empty_like(x, dtype=dout.dtype)
    dW = np.zeros(W.shape, dtype=dout.dtype)
    db = np.zeros(W.shape[0], dtype=dout.dtype)
    for b in range(x.shape[0]):
        d_b = dout[b].reshape(W.shape[0], -1)  # (C_out, N)
        x_b = x[b].reshape(W.shape[1], -1)  # (C_in, N)
        dx[b] = (W.T @ d_b).reshape(x.shape[1:])
        dW += d_b @ x_b.T
        db += d_b.sum(axis=1)
    return dx, dW[:, :, None, None], db


def avg_pool_back_kron(dout, cache):
    ds = cache
    return np.kron(dout, np.ones((ds, ds), dtype=dout.dtype)) / ds**2


def avg_pool_back_views(dout, cache):
    ds = cache
    B, C, h, w = dout.shape
    big = np.broadcast_to((dout / ds**2)[:, :, :, None, :, None], (B, C, h, ds, w, ds))
    return big.reshape(B, C, h * ds, w * ds)


def avg_pool_back_index(dout, cache):
    ds = cache
    rows = np.arange(dout.shape[2] * ds) // ds
    cols = np.arange(dout.shape[3] * ds) // ds
    return dout[:, :, rows][:, :, :, cols] * (1.0 / ds**2)


# ================================================================ the wrong ones


def softmax_overflows(energy):  # the textbook formula: inf / inf = nan for energies > 709
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(energy)
        attention = e / e.sum(axis=-1, keepdims=True)
    return attention, attention


def softmax_wrong_axis(energy):  # columns sum to 1, not rows
    e = np.exp(energy - energy.max(axis=-2, keepdims=True))
    attention = e / e.sum(axis=-2, keepdims=True)
    return attention, attention


def softmax_energy_as_cache(energy):  # right values, the wrong cache for the backward step
    attention = softmax_row_loop(energy)[0]
    return attention, energy


def energy_transposed(query, key):
    return key.transpose(0, 2, 1) @ query, (query, key)


def conv1x1_no_bias(x, weight, bias):
    return conv1x1_einsum(x, weight, np.zeros_like(bias))


def avg_pool_sum(x, ds):
    return avg_pool_einsum(x, ds)[0] * ds**2, ds


def weighted_sum_untransposed(value, attention):
    return value @ attention, (value, attention)


def flatten_column_major(x):  # pixel (r, c) at column c h + r
    return x.transpose(0, 1, 3, 2).reshape(x.shape[0], x.shape[1], -1), x.shape


def bilinear_align_corners(n_in, ds, dtype=np.float64):  # the other convention
    s = np.linspace(0, n_in - 1, n_in * ds) if n_in > 1 else np.zeros(n_in * ds)
    return np.maximum(0, 1 - np.abs(s[:, None] - np.arange(n_in)[None, :])).astype(dtype)


def residual_ignores_gamma(x, f, gamma=None):
    return x + f, (f, gamma)


def scale_backward_missing_scale(dout, cache):  # notebook 4's bug 1
    return dout


def energy_backward_transposed(dout, cache):  # notebook 4's bug 2
    query, key = cache
    return key @ dout, query @ dout.transpose(0, 2, 1)


def softmax_backward_no_row_sum(dout, cache):  # notebook 4's bug 3, notebook 3's planted one
    return cache * dout


def residual_backward_forgotten(dout, cache):  # notebook 4's bug 4
    f, gamma = cache
    return np.zeros_like(dout), gamma[0] * dout, np.array([(dout * f).sum()], dtype=dout.dtype)


def energy_backward_float64(dout, cache):  # right values, float32 comes back as float64
    q, k = (a.astype(np.float64) for a in cache)
    d = dout.astype(np.float64)
    return k @ d.transpose(0, 2, 1), q @ d


def scale_backward_in_place(dout, cache):  # right values, but writes into dout
    dout *= cache
    return dout


def conv1x1_back_bias_mean(dout, cache):  # the bias gradient averaged instead of summed
    dx, dweight, dbias = conv1x1_back_einsum(dout, cache)
    return dx, dweight, dout.mean(axis=(0, 2, 3))


def avg_pool_back_no_division(dout, cache):
    return avg_pool_back_kron(dout, cache) * cache**2


def upsample_back_nearest_mean(dout, cache):  # averages the block: the pooling's backward
    ds, mode, mats = cache
    if mode == "nearest":
        return upsample_back_einsum(dout, cache) / ds**2
    return upsample_back_einsum(dout, cache)


def weighted_sum_back_swapped(dout, cache):  # dattention transposed
    dvalue, dattention = weighted_sum_back_einsum(dout, cache)
    return dvalue, dattention.transpose(0, 2, 1)


def unflatten_wrong_order(x, h, w):
    return x.reshape(x.shape[0], x.shape[1], w, h).transpose(0, 1, 3, 2), x.shape


def flatten_back_wrong_order(dout, cache):
    B, C, h, w = cache
    return dout.reshape(B, C, w, h).transpose(0, 1, 3, 2)


def unflatten_back_wrong_order(dout, cache):
    return dout.transpose(0, 1, 3, 2).reshape(cache)


def residual_back_no_gamma(dout, cache):
    f, gamma = cache
    dgamma = None if gamma is None else np.array([(dout * f).sum()], dtype=dout.dtype)
    return dout, dout, dgamma


def upsample_align_corners(x, ds, mode="nearest"):  # bilinear with the other convention
    if mode == "nearest":
        return upsample_kron_einsum(x, ds, mode)
    Mh = bilinear_align_corners(x.shape[2], ds, x.dtype)
    Mw = bilinear_align_corners(x.shape[3], ds, x.dtype)
    return Mh @ x @ Mw.T, (ds, mode, (Mh, Mw))


CORRECT = {
    "avg_pool_forward": [
        ("einsum over a block view", avg_pool_einsum),
        ("a sum of strided views", avg_pool_strided_sum),
        ("sliding windows", avg_pool_windows),
        ("pooling matrices", avg_pool_matrices),
        ("prefix sums (an integral image)", avg_pool_prefix_sums),
    ],
    "conv1x1_forward": [
        ("einsum", conv1x1_einsum),
        ("tensordot", conv1x1_tensordot),
        ("a loop over output channels", conv1x1_channel_loop),
        ("channels last", conv1x1_channels_last),
    ],
    "flatten_forward": [
        ("reshape with a tuple", flatten_reshape_tuple),
        ("rows concatenated", flatten_row_loop),
        ("a loop over pixels", flatten_pixel_loop),
    ],
    "energy_forward": [
        ("einsum", energy_einsum),
        ("a loop over the batch", energy_batch_loop),
        ("broadcasting", energy_broadcast),
        ("swapaxes and matmul", energy_swapaxes),
    ],
    "scale_forward": [
        ("np.multiply", scale_multiply),
        ("divided by the reciprocal", scale_divide),
        ("in place on a copy", scale_in_place_copy),
    ],
    "softmax_forward": [
        ("exp(x - logsumexp(x))", softmax_logsumexp),
        ("scipy.special.softmax", softmax_scipy),
        ("a loop over rows", softmax_row_loop),
        ("1 / sum exp(x_l - x_j), no shift", softmax_pairwise),
        ("einsum with the reciprocal", softmax_einsum_reciprocal),
    ],
    "weighted_sum_forward": [
        ("einsum", weighted_sum_einsum),
        ("transposed product", weighted_sum_transposed),
        ("a loop over pixels", weighted_sum_pixel_loop),
    ],
    "unflatten_forward": [
        ("reshape with -1", unflatten_minus_one),
        ("rows stacked", unflatten_row_stack),
        ("reshape with a tuple", unflatten_shape_tuple),
    ],
    "bilinear_matrix": [
        ("the tent function", bilinear_tent),
        ("np.interp of the identity", bilinear_interp_identity),
        ("exact fractions", bilinear_fractions),
        ("vectorised with np.add.at", bilinear_vectorised),
    ],
    "upsample_forward": [
        ("np.kron; einsum", upsample_kron_einsum),
        ("a broadcast view; tensordot", upsample_views_tensordot),
        ("index arrays; loops over output rows and columns", upsample_index_loops),
    ],
    "residual_forward": [
        ("ufuncs", residual_ufuncs),
        ("one line", residual_one_line),
        ("in place on a copy", residual_in_place_copy),
    ],
    "residual_backward": [
        ("np.vdot", residual_back_vdot),
        ("einsum", residual_back_einsum),
        ("a loop over the batch", residual_back_batch_loop),
    ],
    "upsample_backward": [
        ("einsum", upsample_back_einsum),
        ("strided views; tensordot", upsample_back_views),
        ("np.add.reduceat; transposed products", upsample_back_reduceat),
    ],
    "unflatten_backward": [
        ("reshape with -1", unflatten_back_minus_one),
        ("rows concatenated", unflatten_back_rows),
        ("reshape of a copy", unflatten_back_copy),
    ],
    "weighted_sum_backward": [
        ("einsum", weighted_sum_back_einsum),
        ("a loop over the batch", weighted_sum_back_batch_loop),
        ("broadcasting", weighted_sum_back_broadcast),
    ],
    "softmax_backward": [
        ("the Jacobian by einsum", softmax_back_jacobian),
        ("two terms", softmax_back_two_terms),
        ("a loop over rows", softmax_back_row_loop),
    ],
    "scale_backward": [
        ("np.multiply", scale_back_multiply),
        ("divided by the reciprocal", scale_back_divide),
        ("in place on a copy", scale_back_copy),
    ],
    "energy_backward": [
        ("einsum", energy_back_einsum),
        ("a loop over the batch", energy_back_batch_loop),
        ("swapaxes", energy_back_swapaxes),
    ],
    "flatten_backward": [
        ("reshape(*shape)", flatten_back_star),
        ("a loop over rows", flatten_back_rows),
        ("reshape of a copy", flatten_back_copy),
    ],
    "conv1x1_backward": [
        ("einsum", conv1x1_back_einsum),
        ("tensordot", conv1x1_back_tensordot),
        ("a loop over the batch", conv1x1_back_batch_loop),
    ],
    "avg_pool_backward": [
        ("np.kron", avg_pool_back_kron),
        ("a broadcast view", avg_pool_back_views),
        ("index arrays", avg_pool_back_index),
    ],
}

WRONG = {
    "softmax_forward": [
        ("no shift: overflows", softmax_overflows, "values"),
        ("softmax over the wrong axis", softmax_wrong_axis, "values"),
        ("the energy as the cache", softmax_energy_as_cache, "values"),
    ],
    "energy_forward": [("key^T query", energy_transposed, "values")],
    "conv1x1_forward": [("no bias", conv1x1_no_bias, "values")],
    "avg_pool_forward": [("block sum, not mean", avg_pool_sum, "values")],
    "weighted_sum_forward": [("value @ attention", weighted_sum_untransposed, "values")],
    "flatten_forward": [("column-major pixels", flatten_column_major, "values")],
    "unflatten_forward": [("column-major pixels", unflatten_wrong_order, "values")],
    "bilinear_matrix": [("align_corners=True", bilinear_align_corners, "values")],
    "residual_forward": [("gamma ignored", residual_ignores_gamma, "values")],
    "upsample_forward": [("bilinear with align_corners=True", upsample_align_corners, "values")],
    "scale_backward": [
        ("missing scale (notebook 4, bug 1)", scale_backward_missing_scale, "values"),
        ("scales dout in place", scale_backward_in_place, "robust inputs"),
    ],
    "energy_backward": [
        ("transposed (notebook 4, bug 2)", energy_backward_transposed, "values"),
        ("float32 comes back as float64", energy_backward_float64, "float32"),
    ],
    "softmax_backward": [("no row sum (notebook 4, bug 3)", softmax_backward_no_row_sum, "values")],
    "residual_backward": [
        ("skip forgotten (notebook 4, bug 4)", residual_backward_forgotten, "values"),
        ("gamma forgotten in df", residual_back_no_gamma, "values"),
    ],
    "conv1x1_backward": [("bias gradient averaged", conv1x1_back_bias_mean, "values")],
    "avg_pool_backward": [("no division by ds^2", avg_pool_back_no_division, "values")],
    "upsample_backward": [("nearest averaged", upsample_back_nearest_mean, "values")],
    "weighted_sum_backward": [("dattention transposed", weighted_sum_back_swapped, "values")],
    "flatten_backward": [("column-major pixels", flatten_back_wrong_order, "values")],
    "unflatten_backward": [("column-major pixels", unflatten_back_wrong_order, "values")],
}
