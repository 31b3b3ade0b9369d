"""The Torch-free reference of the pair and region steps: literal loops, names as `minattn.regions`.

Pixel (r, c) of image ``image`` in cell (i, j) of a pair map sits at row i * hs + r and
column image * w + j * ws + c (hs = h / s, ws = w / s, w the width of one image); in the
regions it is row (i * s + j) * B + b, column (r * ws + c) * 2 + image.
"""

import numpy as np

# ---------------------------------------------------------------- the pair along width


def pair_concat_forward(x1, x2):
    """out[..., c] = x1[..., c] for c < W, x2[..., c - W] for c >= W."""
    B, C, H, W = x1.shape
    out = np.zeros((B, C, H, 2 * W), dtype=x1.dtype)
    for b, ch, r, c in np.ndindex(B, C, H, W):
        out[b, ch, r, c] = x1[b, ch, r, c]
        out[b, ch, r, W + c] = x2[b, ch, r, c]
    return out, W


def pair_concat_backward(dout, cache):
    W = cache
    B, C, H, _ = dout.shape
    dx1 = np.zeros((B, C, H, W), dtype=dout.dtype)
    dx2 = np.zeros((B, C, H, W), dtype=dout.dtype)
    for b, ch, r, c in np.ndindex(B, C, H, W):
        dx1[b, ch, r, c] = dout[b, ch, r, c]
        dx2[b, ch, r, c] = dout[b, ch, r, W + c]
    return dx1, dx2


def pair_split_forward(x):
    """y1 = the left half of the width, y2 = the right half."""
    B, C, H, W2 = x.shape
    W = W2 // 2
    y1 = np.zeros((B, C, H, W), dtype=x.dtype)
    y2 = np.zeros((B, C, H, W), dtype=x.dtype)
    for b, ch, r, c in np.ndindex(B, C, H, W):
        y1[b, ch, r, c] = x[b, ch, r, c]
        y2[b, ch, r, c] = x[b, ch, r, W + c]
    return (y1, y2), W


def pair_split_backward(dout, cache):
    W = cache
    dy1, dy2 = dout
    B, C, H, _ = dy1.shape
    dx = np.zeros((B, C, H, 2 * W), dtype=dy1.dtype)
    for b, ch, r, c in np.ndindex(B, C, H, W):
        dx[b, ch, r, c] = dy1[b, ch, r, c]
        dx[b, ch, r, W + c] = dy2[b, ch, r, c]
    return dx


# ---------------------------------------------------------------- PAM's regions


def region_split_forward(x, scale):
    """Region (i, j) of item b gets pixel (r, c) of cell (i, j) of both images:

    regions[(i*s + j)*B + b, ch, (r*ws + c)*2 + image] = x[b, ch, i*hs + r, image*w + j*ws + c].
    """
    B, C, h, w2 = x.shape
    s, w = scale, w2 // 2
    hs, ws = h // s, w // s
    regions = np.zeros((s * s * B, C, hs * ws * 2), dtype=x.dtype)
    for i, j, b, ch, r, c, image in np.ndindex(s, s, B, C, hs, ws, 2):
        regions[(i * s + j) * B + b, ch, (r * ws + c) * 2 + image] = x[
            b, ch, i * hs + r, image * w + j * ws + c
        ]
    return regions, (x.shape, s)


def region_split_backward(dout, cache):
    shape, s = cache
    B, C, h, w2 = shape
    w = w2 // 2
    hs, ws = h // s, w // s
    dx = np.zeros(shape, dtype=dout.dtype)
    for i, j, b, ch, r, c, image in np.ndindex(s, s, B, C, hs, ws, 2):
        dx[b, ch, i * hs + r, image * w + j * ws + c] = dout[
            (i * s + j) * B + b, ch, (r * ws + c) * 2 + image
        ]
    return dx


def region_merge_forward(regions, scale, height, width):
    """The inverse of region_split:

    x[b, ch, i*hs + r, image*w + j*ws + c] = regions[(i*s + j)*B + b, ch, (r*ws + c)*2 + image].
    """
    s, h, w = scale, height, width // 2
    B, C = regions.shape[0] // (s * s), regions.shape[1]
    hs, ws = h // s, w // s
    x = np.zeros((B, C, h, 2 * w), dtype=regions.dtype)
    for i, j, b, ch, r, c, image in np.ndindex(s, s, B, C, hs, ws, 2):
        x[b, ch, i * hs + r, image * w + j * ws + c] = regions[
            (i * s + j) * B + b, ch, (r * ws + c) * 2 + image
        ]
    return x, (B, s)


def region_merge_backward(dout, cache):
    B, s = cache
    _, C, h, w2 = dout.shape
    w = w2 // 2
    hs, ws = h // s, w // s
    dregions = np.zeros((s * s * B, C, hs * ws * 2), dtype=dout.dtype)
    for i, j, b, ch, r, c, image in np.ndindex(s, s, B, C, hs, ws, 2):
        dregions[(i * s + j) * B + b, ch, (r * ws + c) * 2 + image] = dout[
            b, ch, i * hs + r, image * w + j * ws + c
        ]
    return dregions


# ---------------------------------------------------------------- the pyramid's scales


def concat_channels_forward(maps):
    """out[b, offset + ch] = map_k[b, ch], offset the channels of the maps before map k."""
    B, _, H, W = maps[0].shape
    sizes = tuple(m.shape[1] for m in maps)
    out = np.zeros((B, sum(sizes), H, W), dtype=maps[0].dtype)
    offset = 0
    for m in maps:
        for b, ch, r, c in np.ndindex(m.shape):
            out[b, offset + ch, r, c] = m[b, ch, r, c]
        offset += m.shape[1]
    return out, sizes


def concat_channels_backward(dout, cache):
    sizes = cache
    B, _, H, W = dout.shape
    grads, offset = [], 0
    for size in sizes:
        d = np.zeros((B, size, H, W), dtype=dout.dtype)
        for b, ch, r, c in np.ndindex(d.shape):
            d[b, ch, r, c] = dout[b, offset + ch, r, c]
        grads.append(d)
        offset += size
    return tuple(grads)
