"""Helpers shared by the test files (pytest puts tests/ on sys.path): random inputs and
parameters, the per-step finite-difference checker, and the modules the tests build."""

import numpy as np

import minattn
from minattn import BAM, numerical_gradient
from minattn.modules.cdsa import CDSA
from minattn.modules.pam import PAM
from minattn.validate import as_tuple

RTOL = 1e-7


def rand(*shape, seed=0):
    """Standard normal values of the given shape, reproducible from the seed."""
    return np.random.default_rng(seed).standard_normal(shape)


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
    grads = as_tuple(grads)
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


def bn_args(shape, seed=0):
    """BatchNorm2d's arguments: random non-zero weight, bias, running mean and a running
    variance away from 0."""
    rng = np.random.default_rng(seed)
    C = shape[1]
    return dict(
        x=1.5 * rng.standard_normal(shape) + 0.7,
        weight=rng.uniform(0.5, 2.0, C) * rng.choice([-1, 1], C),
        bias=rng.standard_normal(C),
        running_mean=rng.standard_normal(C),
        running_var=rng.uniform(0.5, 2.0, C),
    )


# ---------------------------------------------------------------- DANet, SE and covariance

# name -> (build(backend, dtype, seed), input shape); shapes small enough for the loops
MODULES = {
    "position": (lambda **kw: minattn.PositionAttention(8, **kw), (2, 8, 3, 4)),
    "channel": (lambda **kw: minattn.ChannelAttention(6, **kw), (2, 6, 3, 4)),
    "se": (lambda **kw: minattn.SqueezeExcitation(8, reduction=4, **kw), (2, 8, 3, 4)),
    "covariance": (lambda **kw: minattn.CovarianceAttention(6, **kw), (2, 6, 3, 4)),
    "correlation": (
        lambda **kw: minattn.CovarianceAttention(6, kind="correlation", scale=3.0, **kw),
        (2, 6, 3, 4),
    ),
}


def random_params(module, seed=0):
    """Non-zero parameters everywhere: gamma = 0 (its initial value) would cut the
    attention branch off and every check of it would pass vacuously."""
    rng = np.random.default_rng([seed, 7])
    sd = {k: rng.uniform(-0.6, 0.6, v.shape) for k, v in module.state_dict().items()}
    if "gamma" in sd:
        sd["gamma"][:] = 0.7
    module.load_state_dict(sd)
    return module


def build(name, backend="numpy", dtype=np.float64, seed=0):
    """One of MODULES with random parameters, and an input for it."""
    make, shape = MODULES[name]
    module = random_params(make(backend=backend, dtype=dtype, seed=seed), seed)
    x = np.random.default_rng([seed, 3]).standard_normal(shape).astype(dtype)
    return module, x


# ---------------------------------------------------------------- STANet's PAM and CDSA


def randomize(module, seed=0):
    """Random non-zero parameters and buffers everywhere (BatchNorm weights near 1, running
    variances in [0.5, 1.5], a few batches tracked), so that no check passes vacuously."""
    rng = np.random.default_rng([seed, 7])
    for name, p in module.params.items():
        p[...] = rng.uniform(-0.6, 0.6, p.shape)
        if name.endswith("1.weight"):  # BatchNorm weight
            p += 1.0
    for name, b in module.buffers.items():
        if name.endswith("running_mean"):
            b[...] = rng.normal(0.0, 0.5, b.shape)
        elif name.endswith("running_var"):
            b[...] = rng.uniform(0.5, 1.5, b.shape)
        else:
            b[...] = 3
    return module


def random_pam(C=8, sizes=(1, 2), ds=1, seed=0, **kwargs):
    return randomize(PAM(C, C, sizes, ds, seed=seed, **kwargs), seed)


def random_cdsa(C=8, ds=1, mode="PAM", seed=0, **kwargs):
    return randomize(CDSA(C, ds, mode, seed=seed, **kwargs), seed)
