"""The Torch-free reference of BatchNorm2d: literal loops, same names as `minattn.batchnorm`."""

import math

import numpy as np


def batchnorm_forward(
    x, weight, bias, running_mean, running_var, training=True, momentum=0.1, eps=1e-5
):
    """Per channel: mean and variance by summing over b, r, s; then y = w (x - mean) / std + b."""
    B, C, H, W = x.shape
    n = B * H * W
    if training and n == 1:
        raise ValueError(f"batchnorm in training mode needs more than 1 value per channel, got {n}")
    y = np.zeros_like(x)
    x_hat = np.zeros_like(x)
    inv_std = np.zeros(C, dtype=x.dtype)
    new_mean = np.zeros(C, dtype=x.dtype)
    new_var = np.zeros(C, dtype=x.dtype)
    for ch in range(C):
        if training:
            total = 0.0
            for b, r, s in np.ndindex(B, H, W):
                total += x[b, ch, r, s]
            mean = total / n
            squares = 0.0
            for b, r, s in np.ndindex(B, H, W):
                squares += (x[b, ch, r, s] - mean) ** 2
            var = squares / n  # biased, for normalising
            unbiased = squares / (n - 1)  # for the running estimate
            new_mean[ch] = (1 - momentum) * running_mean[ch] + momentum * mean
            new_var[ch] = (1 - momentum) * running_var[ch] + momentum * unbiased
        else:
            mean, var = running_mean[ch], running_var[ch]
            new_mean[ch], new_var[ch] = mean, var
        inv_std[ch] = 1.0 / math.sqrt(var + eps)
        for b, r, s in np.ndindex(B, H, W):
            x_hat[b, ch, r, s] = (x[b, ch, r, s] - mean) * inv_std[ch]
            y[b, ch, r, s] = weight[ch] * x_hat[b, ch, r, s] + bias[ch]
    return (y, new_mean, new_var), (x_hat, inv_std, weight, training)


def batchnorm_backward(dout, cache):
    """The chain rule through x_hat = (x - mean) * inv_std, with mean and var functions of x.

    dL/dx_hat = dout * w; in training mode dL/dvar and dL/dmean are summed over the channel
    and sent back to every x, since every x entered both statistics.
    """
    x_hat, inv_std, weight, training = cache
    B, C, H, W = x_hat.shape
    n = B * H * W
    dx = np.zeros_like(x_hat)
    dweight = np.zeros(C, dtype=x_hat.dtype)
    dbias = np.zeros(C, dtype=x_hat.dtype)
    for ch in range(C):
        sum_g = 0.0  # sum of dL/dx_hat
        sum_g_xhat = 0.0  # sum of dL/dx_hat * x_hat
        for b, r, s in np.ndindex(B, H, W):
            dbias[ch] += dout[b, ch, r, s]
            dweight[ch] += dout[b, ch, r, s] * x_hat[b, ch, r, s]
            g = dout[b, ch, r, s] * weight[ch]
            sum_g += g
            sum_g_xhat += g * x_hat[b, ch, r, s]
        for b, r, s in np.ndindex(B, H, W):
            g = dout[b, ch, r, s] * weight[ch]
            if training:
                # x - mean = x_hat / inv_std; dvar = sum_g_xhat * (-1/2) inv_std^2, dmean = ...
                dvar = -0.5 * sum_g_xhat * inv_std[ch] ** 2
                dmean = -sum_g * inv_std[ch]  # the dvar path through the mean sums to zero
                centred = x_hat[b, ch, r, s] / inv_std[ch]
                dx[b, ch, r, s] = g * inv_std[ch] + dvar * 2.0 * centred / n + dmean / n
            else:
                dx[b, ch, r, s] = g * inv_std[ch]
    return dx, dweight, dbias
