"""Average pooling by ``ds`` and the resize back: the parts the seven steps leave out.

The article's module attends over a pooled map (``nn.AvgPool2d(ds)``), so attention
runs on N = (H/ds)(W/ds) pixels, and then resizes the result back to H x W with
``F.interpolate``. Its comment says bilinear; without a ``mode`` the call is
nearest-neighbour. Both are here, each with its backward (its adjoint).

Shapes: x (B, C, H, W), pooled (B, C, h, w) with h = H / ds, w = W / ds.
"""

import numpy as np

from ..validate import validate_choice, validate_positive_int, validate_shapes

INTERPOLATIONS = ("nearest", "bilinear")


def block_sum(x, ds):
    """Sum of each ds x ds block: (B, C, H, W) -> (B, C, H/ds, W/ds).

    Summing the ds rows of a block first and then its ds columns reads memory in
    order; one reduction over both axes at once is about 4x slower in NumPy.
    """
    B, C, H, W = x.shape
    rows = x.reshape(B, C, H // ds, ds, W).sum(axis=3)  # (B, C, h, W)
    return rows.reshape(B, C, H // ds, W // ds, ds).sum(axis=4)


def block_repeat(x, ds):
    """Copy each pixel into a ds x ds block: (B, C, h, w) -> (B, C, h*ds, w*ds)."""
    return np.repeat(np.repeat(x, ds, axis=2), ds, axis=3)


def avg_pool_forward(x, ds):
    """Mean over each ds x ds block. x: (B, C, H, W) -> (B, C, H/ds, W/ds).

    cache: ds.
    """
    B, C, H, W = validate_shapes(x=(x, "B C H W")).values()
    if H % validate_positive_int(ds, "ds") or W % ds:
        raise ValueError(f"x has H={H}, W={W} (shape {x.shape}); both must be multiples of ds={ds}")
    return block_sum(x, ds) / ds**2, ds


def avg_pool_backward(dout, cache):
    """dout: (B, C, h, w) -> dx: (B, C, h*ds, w*ds): each input pixel got 1/ds^2 of its block.

    Pooling and nearest resizing are adjoints of each other, up to the factor ds^2.
    """
    ds = cache
    return block_repeat(dout / ds**2, ds)


def bilinear_matrix(n_in, ds, dtype=np.float64):
    """The (n_in * ds, n_in) matrix of 1-D linear interpolation, PyTorch's align_corners=False.

    Output pixel o sits at source coordinate s = (o + 0.5) / ds - 0.5 (pixel centres
    line up); s < 0 is clamped to 0 and the right neighbour is clamped to the last
    pixel, so the borders repeat the edge value. Every row has weights summing to 1.
    """
    o = np.arange(n_in * ds)
    s = np.maximum((o + 0.5) / ds - 0.5, 0.0)
    i0 = np.floor(s).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = s - i0
    M = np.zeros((n_in * ds, n_in), dtype=dtype)
    np.add.at(M, (o, i0), 1.0 - frac)
    np.add.at(M, (o, i1), frac)
    return M


def upsample_forward(x, ds, mode="nearest"):
    """Resize (B, C, h, w) -> (B, C, h*ds, w*ds), ``mode`` "nearest" or "bilinear".

    nearest: output pixel (r, c) copies input pixel (r // ds, c // ds).
    bilinear: out = M_h @ x @ M_w^T with the interpolation matrices of `bilinear_matrix`.
    cache: (ds, mode, None or the matrices (M_h, M_w)).
    """
    validate_shapes(x=(x, "B C h w"))
    validate_positive_int(ds, "ds")
    validate_choice(mode, "mode", INTERPOLATIONS)
    if mode == "nearest":
        return block_repeat(x, ds), (ds, mode, None)
    h, w = x.shape[2:]
    Mh, Mw = bilinear_matrix(h, ds, x.dtype), bilinear_matrix(w, ds, x.dtype)
    return Mh @ x @ Mw.T, (ds, mode, (Mh, Mw))


def upsample_backward(dout, cache):
    """dout: (B, C, H, W) -> dx: (B, C, H/ds, W/ds), the adjoint of the resize.

    nearest: each input pixel was copied into a ds x ds block, so it collects the
    block's sum. bilinear: the transpose of the linear map, M_h^T @ dout @ M_w.
    """
    ds, mode, mats = cache
    if mode == "nearest":
        return block_sum(dout, ds)
    Mh, Mw = mats
    return Mh.T @ dout @ Mw
