"""Pooling and the resize as literal loops: the twin of `minattn.resize`."""

import numpy as np

# ---------------------------------------------------------------- pooling and resize


def avg_pool_forward(x, ds):
    """out[b, ch, r, c] = mean of x[b, ch, r*ds : (r+1)*ds, c*ds : (c+1)*ds]."""
    B, C, H, W = x.shape
    h, w = H // ds, W // ds
    out = np.zeros((B, C, h, w), dtype=x.dtype)
    for b, ch, r, c in np.ndindex(B, C, h, w):
        total = 0.0
        for dr in range(ds):
            for dc in range(ds):
                total += x[b, ch, r * ds + dr, c * ds + dc]
        out[b, ch, r, c] = total / (ds * ds)
    return out, ds


def avg_pool_backward(dout, cache):
    ds = cache
    B, C, h, w = dout.shape
    dx = np.zeros((B, C, h * ds, w * ds), dtype=dout.dtype)
    for b, ch, r, c in np.ndindex(B, C, h, w):
        for dr in range(ds):
            for dc in range(ds):
                dx[b, ch, r * ds + dr, c * ds + dc] = dout[b, ch, r, c] / (ds * ds)
    return dx


def _source(o, n_in, ds):
    """Source of output pixel o as PyTorch bilinear, align_corners=False: (i0, i1, weight of i1)."""
    s = max((o + 0.5) / ds - 0.5, 0.0)
    i0 = int(s)
    return i0, min(i0 + 1, n_in - 1), s - i0


def upsample_forward(x, ds, mode="nearest"):
    """Each output pixel (R, C) reads input pixels the way F.interpolate does."""
    B, Ch, h, w = x.shape
    out = np.zeros((B, Ch, h * ds, w * ds), dtype=x.dtype)
    for b, ch, R, C in np.ndindex(out.shape):
        if mode == "nearest":
            out[b, ch, R, C] = x[b, ch, R // ds, C // ds]
        else:
            r0, r1, fr = _source(R, h, ds)
            c0, c1, fc = _source(C, w, ds)
            out[b, ch, R, C] = (
                (1 - fr) * (1 - fc) * x[b, ch, r0, c0]
                + (1 - fr) * fc * x[b, ch, r0, c1]
                + fr * (1 - fc) * x[b, ch, r1, c0]
                + fr * fc * x[b, ch, r1, c1]
            )
    return out, (ds, mode, (h, w))


def upsample_backward(dout, cache):
    """Each output pixel hands its gradient back to the pixels it read, by the same weights."""
    ds, mode, (h, w) = cache
    B, Ch = dout.shape[:2]
    dx = np.zeros((B, Ch, h, w), dtype=dout.dtype)
    for b, ch, R, C in np.ndindex(dout.shape):
        g = dout[b, ch, R, C]
        if mode == "nearest":
            dx[b, ch, R // ds, C // ds] += g
        else:
            r0, r1, fr = _source(R, h, ds)
            c0, c1, fc = _source(C, w, ds)
            dx[b, ch, r0, c0] += (1 - fr) * (1 - fc) * g
            dx[b, ch, r0, c1] += (1 - fr) * fc * g
            dx[b, ch, r1, c0] += fr * (1 - fc) * g
            dx[b, ch, r1, c1] += fr * fc * g
    return dx
