"""Image pairs side by side, and the regions of STANet's pyramid attention.

STANet compares two images of the same place taken at different times. Its ``CDSA``
concatenates the two feature maps along width, so one attention module sees both:

    pair_concat   x1, x2 (B, C, H, W) -> x (B, C, H, 2W)     image 1 left, image 2 right
    pair_split    x (B, C, H, 2W) -> y1, y2 (B, C, H, W)

Its ``PAM`` attends within regions. At scale s each image is cut into an s x s grid of
equal cells of size (h/s) x (w/s), and region (i, j) is cell (i, j) of image 1 *together
with* cell (i, j) of image 2: every pixel attends over the pixels of its own cell in both
images, 2 (h/s) (w/s) of them, and so can look at the same place at the other time. (STANet
stacks the two halves of the width on a new last axis and cuts the s x s grid from the
(h, w) axes, so a region never straddles the seam between the images.)

    region_split  x (B, C, h, 2w) -> regions (s*s*B, C, n), n = 2 (h/s) (w/s)
    region_merge  regions (s*s*B, C, n) -> x (B, C, h, 2w)

The order is STANet's, so intermediates can be compared one to one: the regions are
stacked region-major on the batch axis (row k = (i*s + j)*B + b) and the pixels of a
region are ordered (row, column, image), image fastest (torch's ``view`` of a
(B, C, h/s, w/s, 2) block). Attention does not care about the order of the pixels
within a region, but a comparison of intermediates does.

STANet gives the last row and column of cells whatever is left over (``h // s`` rows
each, the last one up to h), and then ``torch.cat`` of regions of unequal size fails:
its PAM runs only when s divides h and w. We raise that as a clear error instead.

Finally, PAM concatenates the outputs of its scales along channels:

    concat_channels  [(B, C_1, H, W), ..., (B, C_k, H, W)] -> (B, C_1 + ... + C_k, H, W)
"""

import numpy as np

from ..validate import validate_positive_int, validate_shapes

# ---------------------------------------------------------------- the pair along width


def pair_concat_forward(x1, x2):
    """Put the pair side by side: x1, x2 (B, C, H, W) -> x (B, C, H, 2W), x1 on the left.

    STANet: ``torch.cat((x1, x2), 3)``. The two images must have one shape (a pair of
    co-registered images), or the halves would not line up with PAM's regions.
    cache: W, the width of one image.
    """
    validate_shapes(x1=(x1, "B C H W"), x2=(x2, "B C H W"))
    return np.concatenate((x1, x2), axis=3), x1.shape[3]


def pair_concat_backward(dout, cache):
    """dout: (B, C, H, 2W) -> (dx1, dx2), each (B, C, H, W): the left and right halves."""
    W = cache
    validate_shapes(dout=(dout, f"B C H {2 * W}"))
    return dout[..., :W].copy(), dout[..., W:].copy()


def pair_split_forward(x):
    """Split the pair back: x (B, C, H, 2W) -> ((y1, y2), cache), each (B, C, H, W).

    STANet: ``x[:, :, :, 0:W], x[:, :, :, W:]``.
    cache: W, the width of one image.
    """
    width = validate_shapes(x=(x, "B C H W2"))["W2"]
    _validate_even_width(x, "x")
    W = width // 2
    return (x[..., :W].copy(), x[..., W:].copy()), W


def pair_split_backward(dout, cache):
    """dout: (dy1, dy2), each (B, C, H, W) -> dx (B, C, H, 2W)."""
    W = cache
    dy1, dy2 = dout
    validate_shapes(dy1=(dy1, f"B C H {W}"), dy2=(dy2, f"B C H {W}"))
    return np.concatenate((dy1, dy2), axis=3)


# ---------------------------------------------------------------- PAM's regions


def region_split_forward(x, scale):
    """Cut the pair into scale x scale regions, each a cell of both images, flattened.

    x: (B, C, h, 2w), image 1 in columns [0, w), image 2 in [w, 2w)
    -> regions: (scale*scale*B, C, n) with n = 2 (h/scale) (w/scale); row (i*scale + j)*B + b
    holds cell (i, j) of batch item b, pixel (r, c, image) at column (r * w/scale + c) * 2 + image.
    cache: (x.shape, scale).
    """
    B, C, h, w, s = _region_grid(x, "x", scale)
    hs, ws = h // s, w // s
    # width index = image * w + j * ws + c; height index = i * hs + r
    blocks = x.reshape(B, C, s, hs, 2, s, ws)  # (b, ch, i, r, image, j, c)
    regions = blocks.transpose(2, 5, 0, 1, 3, 6, 4)  # (i, j, b, ch, r, c, image)
    return regions.reshape(s * s * B, C, hs * ws * 2), (x.shape, s)


def region_split_backward(dout, cache):
    """dout: (scale*scale*B, C, n) -> dx: (B, C, h, 2w), each region's gradient put back."""
    shape, s = cache
    B, C, h, w2 = shape
    validate_shapes(dout=(dout, f"{s * s * B} C {h * w2 // (s * s)}"))
    return _merge(dout, B, h, w2 // 2, s)


def region_merge_forward(regions, scale, height, width):
    """The inverse of region_split: regions (scale*scale*B, C, n) -> x (B, C, height, width).

    ``width`` is the width of the pair, 2w; n must be 2 (height/scale) (width/2/scale).
    STANet's merge: ``torch.cat`` of the cells along width, then rows along height, then the
    two images side by side.
    cache: (B, scale).
    """
    s = validate_positive_int(scale, "scale")
    dims = validate_shapes(regions=(regions, "R C n"))
    h = validate_positive_int(height, "height")
    w2 = validate_positive_int(width, "width")
    if w2 % 2 or h % s or (w2 // 2) % s:
        raise ValueError(
            f"height={h} and width={w2} must split into {s} x {s} equal cells of each half of "
            f"the width: need an even width, and height and width / 2 multiples of scale={s}"
        )
    n = 2 * (h // s) * (w2 // 2 // s)
    if dims["R"] % (s * s) or dims["n"] != n:
        raise ValueError(
            f"regions has shape {regions.shape}, but a pair of height {h} and width {w2} at "
            f"scale={s} gives regions of shape (k * {s * s}, C, {n}): "
            f"{s * s} regions per batch item, {n} pixels each"
        )
    B = dims["R"] // (s * s)
    return _merge(regions, B, h, w2 // 2, s), (B, s)


def region_merge_backward(dout, cache):
    """dout: (B, C, h, 2w) -> dregions: (scale*scale*B, C, n)."""
    B, s = cache
    validate_shapes(dout=(dout, f"{B} C h w2"))
    return region_split_forward(dout, s)[0]


def _merge(regions, B, h, w, s):
    C = regions.shape[1]
    hs, ws = h // s, w // s
    cells = regions.reshape(s, s, B, C, hs, ws, 2)  # (i, j, b, ch, r, c, image)
    x = cells.transpose(2, 3, 0, 4, 6, 1, 5)  # (b, ch, i, r, image, j, c)
    return x.reshape(B, C, h, 2 * w)


def _region_grid(x, name, scale):
    """Check a pair map against a scale: -> (B, C, h, w, s), w the width of one image."""
    s = validate_positive_int(scale, "scale")
    B, C, h, w2 = validate_shapes(**{name: (x, "B C h w2")}).values()
    _validate_even_width(x, name)
    w = w2 // 2
    for axis, size in (("height", h), ("width of each image", w)):
        if size % s:
            raise ValueError(
                f"{name} has {axis} {size} (shape {x.shape}), which scale={s} does not divide: "
                f"the {s} x {s} regions must have equal sizes (STANet's PAM fails with unequal "
                f"ones); use a size that is a multiple of {s}"
            )
    return B, C, h, w, s


def _validate_even_width(x, name):
    if x.shape[3] % 2:
        raise ValueError(
            f"{name} has odd width {x.shape[3]} (shape {x.shape}), but it must hold an image "
            f"pair side by side, (B, C, H, 2W): the width must be even"
        )


# ---------------------------------------------------------------- the pyramid's scales


def concat_channels_forward(maps):
    """Stack maps along channels: [(B, C_i, H, W), ...] -> (B, sum C_i, H, W).

    cache: the channel count of each map.
    """
    if not isinstance(maps, list | tuple) or not maps:
        raise TypeError(f"maps must be a non-empty list of arrays, got {type(maps).__name__}")
    validate_shapes(**{f"maps[{i}]": (m, f"B C{i} H W") for i, m in enumerate(maps)})
    return np.concatenate(maps, axis=1), tuple(m.shape[1] for m in maps)


def concat_channels_backward(dout, cache):
    """dout: (B, sum C_i, H, W) -> tuple of d maps[i], each (B, C_i, H, W)."""
    sizes = cache
    validate_shapes(dout=(dout, f"B {sum(sizes)} H W"))
    return tuple(d.copy() for d in np.split(dout, np.cumsum(sizes)[:-1], axis=1))
