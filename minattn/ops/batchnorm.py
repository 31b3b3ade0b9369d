"""BatchNorm2d, the normalisation STANet's PAM puts after its query and key convolutions.

Per channel c, with the statistics taken over the batch and every pixel (B * H * W values):

    y[b, c, r, s] = weight[c] * (x[b, c, r, s] - mean[c]) / sqrt(var[c] + eps) + bias[c]

Training mode (PyTorch's default) normalises with the statistics of the batch itself, the
*biased* variance (divide by n), and moves the running statistics towards the batch ones:

    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)

The running variance takes the *unbiased* estimate (divide by n - 1), as torch does: it is
an estimate of the population's variance for later use, while the normalisation only
has to make this batch unit-variance. Evaluation mode normalises with the running
statistics and leaves them alone, so y is then a fixed affine map of x.

The step is pure: it never writes into its arguments. The running statistics after this
batch are outputs, ``(y, running_mean, running_var), cache = batchnorm_forward(...)``, and
the module copies them into its buffers. The backward returns gradients for x, weight
and bias only: the running statistics are not learned.

Shapes: x, y (B, C, H, W); weight, bias, running_mean, running_var (C,).
"""

import numpy as np

from ..validate import validate_shapes


def batchnorm_forward(
    x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5
):
    """BatchNorm2d in training (batch statistics) or evaluation (running statistics) mode.

    x: (B, C, H, W); weight, bias, running_mean, running_var: (C,)
    -> ((y (B, C, H, W), new running_mean (C,), new running_var (C,)), cache).
    In evaluation mode the running statistics come back unchanged (as copies).
    cache: (x_hat, inv_std, weight, training).
    """
    B, C, H, W = validate_shapes(
        x=(x, "B C H W"),
        weight=(weight, "C"),
        bias=(bias, "C"),
        running_mean=(running_mean, "C"),
        running_var=(running_var, "C"),
    ).values()
    n = B * H * W  # values per channel
    if training:
        if n == 1:
            raise ValueError(
                f"batchnorm in training mode needs more than 1 value per channel, got x of "
                f"shape {x.shape} (B * H * W = 1): its variance would be 0 / 0 (torch refuses "
                f"too); use a larger batch or map, or evaluation mode"
            )
        mean = x.mean(axis=(0, 2, 3))
        centred = x - mean[:, None, None]
        var = (centred**2).mean(axis=(0, 2, 3))  # biased: this batch is all there is
        new_mean = (1 - momentum) * running_mean + momentum * mean
        new_var = (1 - momentum) * running_var + momentum * var * (n / (n - 1))
    else:
        centred = x - running_mean[:, None, None]
        var = running_var
        new_mean, new_var = running_mean.copy(), running_var.copy()
    inv_std = 1.0 / np.sqrt(var + eps)  # (C,)
    x_hat = centred * inv_std[:, None, None]
    y = weight[:, None, None] * x_hat + bias[:, None, None]
    return (y, new_mean, new_var), (x_hat, inv_std, weight, training)


def batchnorm_backward(dout, cache):
    """dout: (B, C, H, W) = dL/dy -> (dx (B, C, H, W), dweight (C,), dbias (C,)).

    Evaluation mode: mean and var are constants, so dx = dout * weight / sqrt(var + eps).
    Training mode: every x also moved the batch mean and variance that normalised all the
    others. With g = dout * weight (the gradient reaching x_hat) and means over B, H, W:

        dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))

    the first term is the direct path, the second the path through the mean, the third
    the path through the variance. So dx sums to zero per channel and is orthogonal to
    x_hat: shifting or scaling one channel of x leaves y unchanged in training mode.
    """
    x_hat, inv_std, weight, training = cache
    validate_shapes(x_hat=(x_hat, "B C H W"), dout=(dout, "B C H W"), weight=(weight, "C"))
    dbias = dout.sum(axis=(0, 2, 3))
    dweight = (dout * x_hat).sum(axis=(0, 2, 3))
    g = dout * weight[:, None, None]
    if training:
        g = (
            g
            - g.mean(axis=(0, 2, 3), keepdims=True)
            - x_hat * (g * x_hat).mean(axis=(0, 2, 3), keepdims=True)
        )
    dx = g * inv_std[:, None, None]
    return dx, dweight, dbias
