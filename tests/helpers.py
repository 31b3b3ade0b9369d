"""Helpers shared by the test files (pytest puts tests/ on sys.path)."""

import numpy as np

from minattn import BAM, numerical_gradient

RTOL = 1e-7


def random_module(C=8, ds=2, seed=0, gamma=0.8, **kwargs):
    """A BAM with random non-zero parameters everywhere, gamma included.

    gamma = 0 (its initial value) would cut the attention branch off and make
    every check of it pass vacuously.
    """
    bam = BAM(C, ds, seed=seed, **kwargs)
    sd = bam.state_dict()
    sd["gamma"][:] = gamma
    bam.load_state_dict(sd)
    return bam


def fd_check(forward, args, grad_names, backward, seed=99):
    """Check backward(dout, cache) against central differences of L = sum(forward(**args) * dout).

    args: dict of the forward's arguments; grad_names: the array arguments, in the order
    backward returns their gradients. dout is random (with ones, an error that sums to zero
    over the output would hide) and drawn from its own seed: dout = x would make some
    gradients vanish (unit_norm's). Returns the largest error, relative to the largest
    gradient entry of each argument.
    """
    rng = np.random.default_rng(seed)
    out, cache = forward(**args)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    worst = 0.0
    for name, analytic in zip(grad_names, grads, strict=False):

        def loss(v, name=name):
            return np.sum(forward(**{**args, name: v})[0] * dout)

        numeric = numerical_gradient(loss, args[name])
        scale = max(np.abs(numeric).max(), 1e-3)
        err = np.abs(analytic - numeric).max() / scale
        assert err < RTOL, f"d{name}: error {err:.2e} (relative to max |grad| {scale:.2e})"
        worst = max(worst, err)
    return worst


def randomize(module, seed=0, gain=1.0):
    """Random non-zero parameters (BatchNorm weights near 1) and running statistics, in place.

    For any module of the family; ``gain`` scales the parameters (larger energies).
    """
    rng = np.random.default_rng([seed, 11])
    for name, p in module.params.items():
        p[...] = gain * rng.uniform(-0.6, 0.6, p.shape)
        if name.endswith("1.weight"):  # PAM's BatchNorm weights
            p += 1.0
    for name, b in module.buffers.items():
        if name.endswith("running_mean"):
            b[...] = rng.normal(0.0, 0.5, b.shape)
        elif name.endswith("running_var"):
            b[...] = rng.uniform(0.5, 1.5, b.shape)
    return module
