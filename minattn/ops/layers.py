"""The steps the rest of the attention family adds, each a forward/backward pair.

Same style as `minattn.steps`: ``out, cache = step_forward(...)`` and
``grads = step_backward(dout, cache)``, shapes in every docstring, B batch, C channels,
N = H * W pixels. The literal-loop twins are in `minattn.reference.layers`.

    channel attention (DANet's CAM)
        channel_energy           E = X X^T                      (B, C, N) -> (B, C, C)
        rowmax_minus             max_k E[i, k] - E[i, j]        (B, C, C) -> (B, C, C)
        channel_weighted_sum     out = A X                      (B, C, C), (B, C, N) -> (B, C, N)
    squeeze-and-excitation (SENet's SELayer)
        global_avg_pool          mean over H, W                 (B, C, H, W) -> (B, C)
        linear                   x W^T (+ b), torch's layout    (B, F_in) -> (B, F_out)
        relu, sigmoid            elementwise                    any shape
        channel_gate             x * s[:, :, None, None]        (B, C, H, W), (B, C) -> (B, C, H, W)
    covariance attention (the article's sentence taken literally)
        centre                   subtract each pixel's mean over its C channel values
        unit_norm                divide each pixel's vector by its length (for correlation)

With `centre` and the article's own `energy` step, the pixel covariance is
``energy(xc, xc) / (C - 1)``: see `minattn.covariance` for what the samples are.
"""

import numpy as np

from ..validate import validate_shapes


def _any_shape(x):
    """A validate_shapes spec for elementwise steps: as many axes as x has, any sizes."""
    return " ".join(f"d{i}" for i in range(np.ndim(x)))


def _validate_same_shape(dout, x, name="x"):
    """dout must have the shape of the forward's input."""
    validate_shapes(**{name: (x, _any_shape(x)), "dout": (dout, _any_shape(x))})


# ================================================================ channel attention (DANet CAM)


def channel_energy_forward(x):
    """Channel against channel: E[i, j] = sum_n x[i, n] x[j, n], i.e. E = X X^T.

    x: (B, C, N) -> energy: (B, C, C), symmetric; E[i, i] = |x_i|^2.
    DANet's CAM: ``torch.bmm(x.view(B, C, -1), x.view(B, C, -1).permute(0, 2, 1))``.
    Where the article's energy compares *pixels* (N x N), this one compares *channels*.
    cache: x.
    """
    validate_shapes(x=(x, "B C N"))
    return x @ x.transpose(0, 2, 1), x


def channel_energy_backward(dout, cache):
    """dout: (B, C, C) -> dx: (B, C, N).

    x appears on both sides of the product, so it collects two gradients:
    dx = dE X + dE^T X (not 2 dE X: dout need not be symmetric).
    """
    x = cache
    validate_shapes(x=(x, "B C N"), dout=(dout, "B C C"))
    return (dout + dout.transpose(0, 2, 1)) @ x


def rowmax_minus_forward(energy):
    """DANet's row-max trick: out[i, j] = max_k E[i, k] - E[i, j].

    energy: (B, C, C) -> (B, C, C), every entry >= 0, zero at each row's maximum.
    A softmax ignores a constant added to a row, so softmax(rowmax - E) = softmax(-E):
    the trick flips the sign of the energy (see `minattn.channel`).
    cache: (where each row's maximum is, energy.shape).
    """
    validate_shapes(energy=(energy, "B M N"))
    arg = energy.argmax(axis=-1)  # (B, M): where each row's maximum is
    rowmax = np.take_along_axis(energy, arg[..., None], axis=-1)  # (B, M, 1)
    return rowmax - energy, (arg, energy.shape)


def rowmax_minus_backward(dout, cache):
    """dout: (B, C, C) -> denergy: (B, C, C).

    -dout for the "- E[i, j]" term, plus the row's total sum_j dout[i, j] at the
    position of the maximum, which is the only entry the max depends on (as torch's
    ``max(dim)`` backward; ties go to the first index, as np.argmax).
    """
    arg, shape = cache
    validate_shapes(dout=(dout, " ".join(map(str, shape))))
    denergy = -dout
    b, i = np.indices(arg.shape)
    denergy[b, i, arg] += dout.sum(axis=-1)
    return denergy


def channel_weighted_sum_forward(attention, value):
    """Each output channel is a weighted sum of the input channels: out[i] = sum_j A[i, j] v[j].

    attention: (B, C, C); value: (B, C, N) -> out: (B, C, N).
    DANet's CAM: ``torch.bmm(attention, proj_value)`` (pixels keep their place; channels mix).
    cache: (attention, value).
    """
    validate_shapes(attention=(attention, "B C C"), value=(value, "B C N"))
    return attention @ value, (attention, value)


def channel_weighted_sum_backward(dout, cache):
    """dout: (B, C, N) -> (dattention (B, C, C), dvalue (B, C, N))."""
    attention, value = cache
    validate_shapes(attention=(attention, "B C C"), value=(value, "B C N"), dout=(dout, "B C N"))
    return dout @ value.transpose(0, 2, 1), attention.transpose(0, 2, 1) @ dout


# ================================================================ squeeze-and-excitation (SENet)


def global_avg_pool_forward(x):
    """Squeeze: each channel's mean over all pixels. x: (B, C, H, W) -> (B, C).

    torch: ``nn.AdaptiveAvgPool2d(1)(x).view(B, C)``.
    cache: x.shape.
    """
    validate_shapes(x=(x, "B C H W"))
    return x.mean(axis=(2, 3)), x.shape


def global_avg_pool_backward(dout, cache):
    """dout: (B, C) -> dx: (B, C, H, W); every pixel got 1 / (H W) of the channel's gradient."""
    B, C, H, W = cache
    validate_shapes(dout=(dout, f"{B} {C}"))
    return np.broadcast_to((dout / (H * W))[:, :, None, None], cache).copy()


def linear_forward(x, weight, bias=None):
    """A fully connected layer, out = x W^T + b, with torch's ``nn.Linear`` weight layout.

    x: (B, F_in); weight: (F_out, F_in); bias: (F_out,) or None -> out: (B, F_out).
    cache: (x, weight, whether there is a bias).
    """
    validate_shapes(x=(x, "B F_in"), weight=(weight, "F_out F_in"))
    out = x @ weight.T
    if bias is not None:
        validate_shapes(weight=(weight, "F_out F_in"), bias=(bias, "F_out"))
        out = out + bias
    return out, (x, weight, bias is not None)


def linear_backward(dout, cache):
    """dout: (B, F_out) -> (dx (B, F_in), dweight (F_out, F_in), dbias (F_out,) or None)."""
    x, weight, has_bias = cache
    validate_shapes(x=(x, "B F_in"), weight=(weight, "F_out F_in"), dout=(dout, "B F_out"))
    return dout @ weight, dout.T @ x, dout.sum(axis=0) if has_bias else None


def relu_forward(x):
    """max(x, 0), elementwise; any shape.

    cache: x.
    """
    validate_shapes(x=(x, _any_shape(x)))
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """dout -> dx = dout where x > 0, else 0 (at exactly 0 the gradient is 0, as torch)."""
    x = cache
    _validate_same_shape(dout, x)
    return np.where(x > 0, dout, 0)


def sigmoid_forward(x):
    """1 / (1 + exp(-x)), elementwise; any shape.

    Computed as exp(-log(1 + exp(-x))) with np.logaddexp, which never overflows:
    the plain formula overflows exp(-x) for x < -710 in float64 (-88 in float32).
    cache: the output.
    """
    validate_shapes(x=(x, _any_shape(x)))
    s = np.exp(-np.logaddexp(0, -x))
    return s, s


def sigmoid_backward(dout, cache):
    """dout -> dx = dout * s (1 - s), from the output s the forward kept."""
    s = cache
    _validate_same_shape(dout, s, "s")
    return dout * s * (1 - s)


def channel_gate_forward(x, gate):
    """Excite: scale every channel by its gate, out[b, c] = x[b, c] * gate[b, c].

    x: (B, C, H, W); gate: (B, C) -> out: (B, C, H, W).
    torch (SENet): ``x * y.expand_as(x)`` with y = gate.view(B, C, 1, 1).
    cache: (x, gate).
    """
    validate_shapes(x=(x, "B C H W"), gate=(gate, "B C"))
    return x * gate[:, :, None, None], (x, gate)


def channel_gate_backward(dout, cache):
    """dout: (B, C, H, W) -> (dx (B, C, H, W), dgate (B, C))."""
    x, gate = cache
    validate_shapes(x=(x, "B C H W"), gate=(gate, "B C"), dout=(dout, "B C H W"))
    return dout * gate[:, :, None, None], (dout * x).sum(axis=(2, 3))


# ================================================================ covariance attention


def centre_forward(x):
    """Subtract each pixel's mean over its C channel values.

    x: (B, C, N) -> (B, C, N) with out[:, :, n].mean() == 0 for every pixel n.
    Pixel n is the random variable, its C channel values are its samples: after
    centring, xc^T xc / (C - 1) is their covariance matrix, np.cov(x[b].T).
    cache: x.shape.
    """
    validate_shapes(x=(x, "B C N"))
    return x - x.mean(axis=1, keepdims=True), x.shape


def centre_backward(dout, cache):
    """dout: (B, C, N) -> dx: (B, C, N), i.e. dout centred the same way.

    out = (I - 1 1^T / C) x per pixel, and that matrix is symmetric.
    """
    validate_shapes(dout=(dout, " ".join(map(str, cache))))
    return dout - dout.mean(axis=1, keepdims=True)


def unit_norm_forward(x, eps=1e-12):
    """Divide each pixel's vector by its length: out[:, n] = x[:, n] / max(|x[:, n]|, eps).

    x: (B, C, N) -> (B, C, N), columns of length 1 (or 0 where x is 0).
    torch: ``F.normalize(x, dim=1, eps=eps)``. After `centre`, the inner products of
    these columns are correlation coefficients, np.corrcoef(x[b].T); the eps keeps a
    pixel whose C values are all equal (zero variance) at 0 where np.corrcoef gives NaN.
    cache: (out, norm, eps).
    """
    validate_shapes(x=(x, "B C N"))
    norm = np.maximum(np.sqrt((x * x).sum(axis=1, keepdims=True)), eps)  # (B, 1, N)
    out = x / norm
    return out, (out, norm, eps)


def unit_norm_backward(dout, cache):
    """dout: (B, C, N) -> dx: (B, C, N).

    Where |x| > eps, z = x / |x| and dx = (dout - z (z . dout)) / |x|: the part of dout
    along z is removed, since stretching x does not change z. Where the eps floor was
    used, the norm is a constant and dx = dout / eps.
    """
    out, norm, eps = cache
    validate_shapes(out=(out, "B C N"), dout=(dout, "B C N"))
    radial = np.where(norm > eps, (out * dout).sum(axis=1, keepdims=True), 0)
    return (dout - out * radial) / norm
