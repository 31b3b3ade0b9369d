"""The attention-free controls: what a model gains from context that compares no two pixels.

Both replace CDSA's attention in ``ChangeDetector`` and keep the rest (the learned
projection, the residual, the distance), so that a gap between them and BAM or PAM is
what the attention weights give:

``PooledContext`` (mode "pool")   BAM with its attention matrix replaced by the identity:
                                  y = x + up(value_conv(pool(x))), a ds x ds block mean
``LocalContext``  (mode "local")  a wider local receptive field: y = x + up(conv(pool(x)))
                                  with a k x k convolution over the pooled map of each view,
                                  so each pixel sees k * ds pixels across; with k = 3 it
                                  has about as many parameters as PAM (9 C^2 + C)

Each works on the two views apart (pooling blocks and convolution windows never cross from
one view into the other). Keys: ``Self_Att.value_conv.{weight,bias}`` and
``Self_Att.conv.{weight,bias}``, as the PyTorch modules they stand for would name them.
"""

import numpy as np

from ...modules.base import Module
from ...validate import validate_array, validate_positive_int, validate_seed

# ---------------------------------------------------------------- a k x k convolution


def conv_forward(x, weight, bias):
    """A k x k convolution, stride 1, zero padding k // 2 (PyTorch's Conv2d, padding="same").

    x: (B, C, H, W), weight: (O, C, k, k) with k odd, bias: (O,) -> out: (B, O, H, W).
    The k * k shifted copies of x are stacked as rows (im2col), (B, C k k, H W), so the
    convolution is one matrix product with the weight reshaped to (O, C k k).
    """
    B, C, H, W = x.shape
    cols = _windows(x, weight.shape[-1])
    out = np.matmul(weight.reshape(len(weight), -1), cols) + bias[:, None]
    return out.reshape(B, -1, H, W), (cols, weight, x.shape)


def conv_backward(dout, cache):
    """dout: (B, O, H, W) -> (dx (B, C, H, W), dweight (O, C, k, k), dbias (O,))."""
    cols, weight, shape = cache
    B, O = dout.shape[:2]
    d2 = dout.reshape(B, O, -1)
    dweight = np.einsum("bop,bqp->oq", d2, cols).reshape(weight.shape)
    dcols = np.matmul(weight.reshape(O, -1).T, d2)  # (B, C k k, H W)
    return _windows_backward(dcols, shape, weight.shape[-1]), dweight, d2.sum(axis=(0, 2))


def _windows(x, k):
    """(B, C, H, W) -> (B, C k k, H W): row (c, dy, dx) is x shifted by (dy - k//2, dx - k//2)."""
    B, C, H, W = x.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = np.stack([xp[:, :, dy : dy + H, dx : dx + W] for dy in range(k) for dx in range(k)], 2)
    return cols.reshape(B, C * k * k, H * W)


def _windows_backward(dcols, shape, k):
    """The adjoint of `_windows`: each shifted copy's gradient added back where it came from."""
    B, C, H, W = shape
    p = k // 2
    dcols = dcols.reshape(B, C, k * k, H, W)
    dxp = np.zeros((B, C, H + 2 * p, W + 2 * p), dtype=dcols.dtype)
    for i in range(k * k):
        dy, dx = divmod(i, k)
        dxp[:, :, dy : dy + H, dx : dx + W] += dcols[:, :, i]
    return dxp[:, :, p : p + H, p : p + W]


# ---------------------------------------------------------------- the controls


class _PairContext(Module):
    """Shared by the controls: y_t = x_t + up(mix(pool(x_t))) for each view t = 1, 2."""

    input_names = ("x1", "x2")
    output_names = ("y1", "y2")

    def __init__(self, in_c, ds, shape, *, backend, dtype, seed):
        super().__init__(backend=backend, dtype=dtype)
        self.in_c = validate_positive_int(in_c, "in_c")
        self.ds = validate_positive_int(ds, "ds")
        rng = np.random.default_rng(validate_seed(seed))
        fan_in = int(np.prod(shape[1:]))
        bound = 1 / np.sqrt(fan_in)  # PyTorch's Conv2d default
        name = f"Self_Att.{self.mix_name}."
        self._set_params(
            {
                name + "weight": rng.uniform(-bound, bound, shape).astype(self.dtype),
                name + "bias": rng.uniform(-bound, bound, in_c).astype(self.dtype),
            }
        )

    def __repr__(self):
        return f"{type(self).__name__}(in_c={self.in_c}, ds={self.ds}, dtype={self.dtype.name})"

    def _validate_inputs(self, x1, x2):
        validate_image_pair(x1, x2, self.in_c, self.dtype)

    def _forward(self, x1, x2):
        ops = self.ops
        B = x1.shape[0]
        x = np.concatenate([x1, x2])  # the views on the batch axis: no window crosses them
        pooled, c_pool = ops.avg_pool_forward(x, self.ds)
        context, c_mix = self._mix_forward(pooled)
        up, c_up = ops.upsample_forward(context, self.ds, "nearest")
        y, c_res = ops.residual_forward(x, up)
        self._cache = (B, c_pool, c_mix, c_up, c_res)
        return y[:B], y[B:]

    def _backward(self, dy1, dy2):
        ops = self.ops
        B, c_pool, c_mix, c_up, c_res = self._cache
        dx, dup, _ = ops.residual_backward(np.concatenate([dy1, dy2]), c_res)
        dpooled, dW, db = self._mix_backward(ops.upsample_backward(dup, c_up), c_mix)
        dx = dx + ops.avg_pool_backward(dpooled, c_pool)
        name = f"Self_Att.{self.mix_name}."
        self.grads = {name + "weight": dW, name + "bias": db}
        return dx[:B], dx[B:]


class PooledContext(_PairContext):
    """mode="pool": y = x + up(value_conv(pool(x))), BAM with the identity for attention.

    Each pooled pixel "attends" only to itself, so the model gets BAM's pooled context (the
    mean of a ds x ds block) and its value projection, but compares no pixel with another.
    """

    mix_name = "value_conv"

    def __init__(self, in_c, ds=1, *, backend="numpy", dtype=np.float64, seed=None):
        shape = (in_c, in_c, 1, 1)
        super().__init__(in_c, ds, shape, backend=backend, dtype=dtype, seed=seed)

    def _mix_forward(self, pooled):
        P = self.params
        return self.ops.conv1x1_forward(
            pooled, P["Self_Att.value_conv.weight"], P["Self_Att.value_conv.bias"]
        )

    def _mix_backward(self, dcontext, cache):
        return self.ops.conv1x1_backward(dcontext, cache)


class LocalContext(_PairContext):
    """mode="local": y = x + up(conv(pool(x))), a k x k convolution over the pooled map.

    Each pixel sees the (k * ds) x (k * ds) pixels around it in its own view, and nothing
    further: a wider window than the pool control's, with about PAM's parameter count.
    """

    mix_name = "conv"

    def __init__(self, in_c, ds=1, kernel=3, *, backend="numpy", dtype=np.float64, seed=None):
        self.kernel = validate_positive_int(kernel, "kernel")
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (a window centred on its pixel), got {kernel}")
        shape = (in_c, in_c, kernel, kernel)
        super().__init__(in_c, ds, shape, backend=backend, dtype=dtype, seed=seed)

    def _mix_forward(self, pooled):
        P = self.params
        return conv_forward(pooled, P["Self_Att.conv.weight"], P["Self_Att.conv.bias"])

    def _mix_backward(self, dcontext, cache):
        return conv_backward(dcontext, cache)


def validate_image_pair(x1, x2, channels, dtype):
    """x1, x2: one shape (B, channels, H, W), the features of the two views."""
    validate_array(x1, "x1", ndim=4, dtype=dtype)
    validate_array(x2, "x2", ndim=4, dtype=dtype)
    if x1.shape != x2.shape:
        raise ValueError(
            f"x1 and x2 must have one shape (the features of the two views), got {x1.shape} "
            f"and {x2.shape}"
        )
    if x1.shape[1] != channels:
        raise ValueError(
            f"x1 and x2 have {x1.shape[1]} channels (shape {x1.shape}), expected {channels}"
        )
