"""The article's seven steps, each a forward/backward pair in vectorised NumPy.

Read this file next to the article. Every step is a pair in the CS231n style:

    out, cache = step_forward(inputs...)
    grads      = step_backward(dout, cache)

Shapes use the article's letters: B batch, C channels of the input, Ck channels
of query and key, h x w the (pooled) feature map, N = h * w pixels.

Order of operations. The article's step 3 says "q times k transposed, then
softmax" and step 4 says "divide by sqrt(c)". Its code does energy -> scale ->
softmax, which is the correct order: scaling after the softmax would leave rows
that sum to the scale instead of 1, no longer weights, and would not temper the
softmax at all. We follow the code:

    step 1  conv1x1        x -> query, key, value          (three 1x1 convolutions)
    step 2  flatten        (B, ., h, w) -> (B, ., N)
    step 3  energy         E = query^T key                 (B, N, N), the "covariance"
    step 4  scale          E * key_channels ** -0.5
    step 3  softmax        A = row-softmax(scaled E)       (B, N, N), the attention
    step 5  weighted_sum   out = value A^T                 (B, C, N)
    step 6  unflatten      (B, C, N) -> (B, C, h, w)
    step 7  residual       z = up(out) + x   (or gamma * up(out) + x)

The average pooling by ``ds`` and the resize back, which the seven steps leave
out, live in `minattn.resize`.
"""

import numpy as np

from ..validate import validate_shapes

# ---------------------------------------------------------------- step 1: 1x1 convolutions


def conv1x1_forward(x, weight, bias):
    """Step 1: a 1x1 convolution, i.e. the same linear map applied at every pixel.

    x: (B, C_in, h, w); weight: (C_out, C_in, 1, 1); bias: (C_out,)
    -> out: (B, C_out, h, w). BAM calls this three times: query, key and value.
    cache: (x, weight).
    """
    validate_shapes(x=(x, "B C_in h w"), weight=(weight, "C_out C_in 1 1"), bias=(bias, "C_out"))
    B, C_in, h, w = x.shape
    W = weight[:, :, 0, 0]  # (C_out, C_in)
    out = W @ x.reshape(B, C_in, h * w) + bias[:, None]  # (B, C_out, N)
    return out.reshape(B, -1, h, w), (x, weight)


def conv1x1_backward(dout, cache):
    """dout: (B, C_out, h, w) -> dx (B, C_in, h, w), dweight (C_out, C_in, 1, 1), dbias (C_out,)."""
    x, weight = cache
    validate_shapes(
        x=(x, "B C_in h w"), weight=(weight, "C_out C_in 1 1"), dout=(dout, "B C_out h w")
    )
    B, C_in, h, w = x.shape
    W = weight[:, :, 0, 0]
    x3 = x.reshape(B, C_in, h * w)  # (B, C_in, N)
    d3 = dout.reshape(B, -1, h * w)  # (B, C_out, N)
    dx = (W.T @ d3).reshape(x.shape)
    dW = (d3 @ x3.transpose(0, 2, 1)).sum(axis=0)  # sum over batch and pixels
    db = d3.sum(axis=(0, 2))
    return dx, dW[:, :, None, None], db


# ---------------------------------------------------------------- step 2: reshape to matrices


def flatten_forward(x):
    """Step 2: (B, C, h, w) -> (B, C, N): each pixel becomes one column.

    cache: x.shape.
    """
    validate_shapes(x=(x, "B C h w"))
    return x.reshape(x.shape[0], x.shape[1], -1), x.shape


def flatten_backward(dout, cache):
    """dout: (B, C, N) -> dx: (B, C, h, w)."""
    return dout.reshape(cache)


# ---------------------------------------------------------------- step 3: energy


def energy_forward(query, key):
    """Step 3: the energy E[i, j] = query[:, i] . key[:, j], every pixel against every pixel.

    query, key: (B, Ck, N) -> energy: (B, N, N). (attention_maps passes only a few
    query columns, M of them, and gets (B, M, N).)
    The article calls this a covariance; it is an uncentred inner product of two
    different projections, so E is not symmetric in general.
    cache: (query, key).
    """
    validate_shapes(query=(query, "B Ck M"), key=(key, "B Ck N"))
    energy = query.transpose(0, 2, 1) @ key
    return energy, (query, key)


def energy_backward(dout, cache):
    """dout: (B, N, N) -> (dquery (B, Ck, N), dkey (B, Ck, N))."""
    query, key = cache
    validate_shapes(query=(query, "B Ck M"), key=(key, "B Ck N"), dout=(dout, "B M N"))
    dquery = key @ dout.transpose(0, 2, 1)  # dq[c, i] = sum_j k[c, j] dE[i, j]
    dkey = query @ dout  # dk[c, j] = sum_i q[c, i] dE[i, j]
    return dquery, dkey


# ---------------------------------------------------------------- step 4: scale


def scale_forward(energy, scale):
    """Step 4: multiply the energy by ``scale`` (the article's code: key_channels ** -0.5).

    energy: (B, N, N) -> (B, N, N). Without it, the dot products of Ck-dimensional
    vectors grow like sqrt(Ck) and the softmax saturates.
    cache: the scale.
    """
    validate_shapes(energy=(energy, "B M N"))
    return energy * scale, scale


def scale_backward(dout, cache):
    """dout: (B, N, N) -> denergy: (B, N, N)."""
    return dout * cache


# ---------------------------------------------------------------- step 3 (cont.): softmax


def softmax_forward(energy):
    """Step 3, second half: row softmax, A[i, :] = exp(E[i, :]) / sum_j exp(E[i, j]).

    energy: (B, N, N) -> attention: (B, N, N), each row sums to 1.
    Subtracting the row maximum first changes nothing mathematically and keeps exp
    from overflowing.
    cache: the attention itself.
    """
    validate_shapes(energy=(energy, "B M N"))
    # one new (N, N) array, then everything in place: each extra temporary is another
    # pass over memory, and at N = 1024 those passes are most of the time
    attention = energy - energy.max(axis=-1, keepdims=True)
    np.exp(attention, out=attention)
    attention *= 1 / attention.sum(axis=-1, keepdims=True)  # one divide per row, not per entry
    return attention, attention


def softmax_backward(dout, cache):
    """dout: (B, N, N) -> denergy: (B, N, N).

    The Jacobian of one row is diag(a) - a a^T; applied to a row of dout it gives
    a * (dout - sum(dout * a)), so the N x N Jacobian per row is never built.
    """
    attention = cache
    # sum_j dout[i, j] a[i, j] for every row i, as a batch of (1 x N) @ (N x 1) products:
    # BLAS, and no (N, N) temporary for dout * a
    rowdot = (dout[..., None, :] @ attention[..., :, None])[..., 0]  # (B, N, 1)
    denergy = dout - rowdot
    denergy *= attention
    return denergy


# ---------------------------------------------------------------- step 5: weighted sum


def weighted_sum_forward(value, attention):
    """Step 5: out[:, i] = sum_j attention[i, j] * value[:, j], a weighted sum of value vectors.

    value: (B, C, N); attention: (B, N, N) -> out: (B, C, N).
    The article's code: ``torch.bmm(proj_value, attention.permute(0, 2, 1))``.
    cache: (value, attention).
    """
    validate_shapes(value=(value, "B C N"), attention=(attention, "B N N"))
    return value @ attention.transpose(0, 2, 1), (value, attention)


def weighted_sum_backward(dout, cache):
    """dout: (B, C, N) -> (dvalue (B, C, N), dattention (B, N, N))."""
    value, attention = cache
    validate_shapes(value=(value, "B C N"), dout=(dout, "B C N"))
    dvalue = dout @ attention
    dattention = dout.transpose(0, 2, 1) @ value
    return dvalue, dattention


# ---------------------------------------------------------------- step 6: reshape back


def unflatten_forward(x, h, w):
    """Step 6: (B, C, N) -> (B, C, h, w).

    cache: x.shape.
    """
    if validate_shapes(x=(x, "B C N"))["N"] != h * w:
        raise ValueError(f"x has N={x.shape[2]} pixels, but h * w = {h} * {w} = {h * w}")
    return x.reshape(x.shape[0], x.shape[1], h, w), x.shape


def unflatten_backward(dout, cache):
    """dout: (B, C, h, w) -> dx: (B, C, N)."""
    return dout.reshape(cache)


# ---------------------------------------------------------------- step 7: residual


def residual_forward(x, f, gamma=None):
    """Step 7: z = f + x (the article's code), or z = gamma * f + x (SAGAN / DANet).

    x, f: (B, C, H, W); gamma: None or array of shape (1,) -> z: (B, C, H, W).
    cache: (f, gamma).
    """
    validate_shapes(x=(x, "B C H W"), f=(f, "B C H W"))
    if gamma is not None:
        validate_shapes(gamma=(gamma, "1"))
    out = x + (f if gamma is None else gamma[0] * f)
    return out, (f, gamma)


def residual_backward(dout, cache):
    """dout: (B, C, H, W) -> (dx, df, dgamma); dgamma is None when gamma was None."""
    f, gamma = cache
    if gamma is None:
        return dout, dout, None
    return dout, gamma[0] * dout, np.array([(dout * f).sum()], dtype=dout.dtype)
