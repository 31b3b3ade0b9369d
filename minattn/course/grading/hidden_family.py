"""Hidden tests of notebook 7's exercise: channel attention's backward pass, line by line.

DANet's channel module (`minattn.ChannelAttention`) in the style of notebook 3's last
exercise: given every intermediate of the forward pass (`channel_intermediates`), the
student writes each gradient on its own line, into a dict, in the order of `GRADIENTS`,
and every gradient is compared with the package's own steps, the first wrong one named.
"""

import numpy as np

from ...ops import layers, steps
from .catalog import Exercise, standard_parts
from .hidden_chain import ChainFail, compare_chain
from .tools import Fail, call, frozen, snapshot, unchanged

GRADIENTS = (
    ("dout", "residual_backward#1.1"),
    ("dgamma", "residual_backward#1.2"),
    ("dout2", "unflatten_backward#1"),
    ("dattention", "channel_weighted_sum_backward#1.0"),
    ("dX_value", "channel_weighted_sum_backward#1.1"),
    ("dflipped", "softmax_backward#1"),
    ("denergy", "rowmax_minus_backward#1"),
    ("dX_energy", "channel_energy_backward#1"),
    ("dx", "residual_backward#1.0 + flatten_backward#1"),
)

_REF = {
    name: getattr(module, name)
    for module in (steps, layers)
    for name in vars(module)
    if name.endswith(("_forward", "_backward"))
}  # the package's functions, bound at import


def channel_intermediates(x, gamma):
    """ChannelAttention's forward pass with every intermediate kept: (y, fwd).

    x: (B, C, H, W); gamma: (1,). ``fwd`` holds "x", "X" (B, C, N), "energy" (B, C, C),
    "argmax" (B, C), each row's argmax of the energy, "flipped" (rowmax - energy),
    "attention", "out2" (B, C, N), "out" (B, C, H, W), "gamma". Notebook 7 writes the same
    function out in NumPy.
    """
    B, C, H, W = x.shape
    X = _REF["flatten_forward"](x)[0]
    energy = _REF["channel_energy_forward"](X)[0]
    flipped, (arg, _) = _REF["rowmax_minus_forward"](energy)
    attention = _REF["softmax_forward"](flipped)[0]
    out2 = _REF["channel_weighted_sum_forward"](attention, X)[0]
    out = _REF["unflatten_forward"](out2, H, W)[0]
    y = _REF["residual_forward"](x, out, gamma)[0]
    fwd = dict(
        x=x, X=X, energy=energy, argmax=arg, flipped=flipped, attention=attention, out2=out2,
        out=out, gamma=gamma,
    )  # fmt: skip
    return y, fwd


def reference_gradients(dy, fwd):
    """Every gradient of `GRADIENTS`, with the package's own backward steps."""
    f, g = fwd, {}
    dx_skip, g["dout"], g["dgamma"] = _REF["residual_backward"](dy, (f["out"], f["gamma"]))
    g["dout2"] = _REF["unflatten_backward"](g["dout"], f["out2"].shape)
    g["dattention"], g["dX_value"] = _REF["channel_weighted_sum_backward"](
        g["dout2"], (f["attention"], f["X"])
    )
    g["dflipped"] = _REF["softmax_backward"](g["dattention"], f["attention"])
    g["denergy"] = _REF["rowmax_minus_backward"](g["dflipped"], (f["argmax"], f["energy"].shape))
    g["dX_energy"] = _REF["channel_energy_backward"](g["denergy"], f["X"])
    g["dx"] = dx_skip + _REF["flatten_backward"](g["dX_value"] + g["dX_energy"], f["x"].shape)
    return g


def random_case(rng, dtype, B):
    C = int(rng.integers(3, 7))
    H = int(rng.integers(2, 5))
    W = int(rng.choice([v for v in range(2, 6) if v != H]))
    # small features: energies of order 1, so the softmax is soft and every term matters
    x = (0.3 * rng.standard_normal((B, C, H, W))).astype(dtype)
    gamma = np.array([rng.uniform(0.5, 1.5)], dtype=dtype)
    y, fwd = channel_intermediates(x, gamma)
    dy = rng.standard_normal(y.shape).astype(dtype)
    return dy, fwd, f"{np.dtype(dtype).name}, B={B}, C={C}, H={H}, W={W}, gamma={gamma[0]:.3f}"


def channel_parts():
    def run(functions, rng, dtype, robust=False):
        fn = functions["channel_attention_backward"]
        for B in (2, 3, 1):
            dy, fwd, desc = random_case(rng, dtype, B)
            expected = reference_gradients(dy, fwd)
            where = f" ({desc}{', read-only non-contiguous inputs' if robust else ''})"
            given = frozen((dy, fwd)) if robust else snapshot((dy, fwd))
            before = snapshot(given)
            got = call(fn, *given, name="channel_attention_backward", where=where)
            if not isinstance(got, dict):
                raise Fail(
                    "channel_attention_backward must return a dict of gradients, "
                    f"got {type(got).__name__}"
                )
            lines, first = compare_chain(got, expected, where, GRADIENTS, floors={})
            if first:
                raise ChainFail(first, "\n".join(lines))
            if robust and not unchanged(before, given):
                raise Fail(f"channel_attention_backward changed its input in place{where}")

    def values(functions, rng):
        run(functions, rng, np.float64)
        return f"all {len(GRADIENTS)} gradients match in every case"

    return standard_parts(values, run)


FAMILY = (
    Exercise(
        id="channel_attention_backward",
        notebook="07_attention_family",
        functions=("channel_attention_backward",),
        points=4,
        parts=channel_parts(),
        summary="DANet's channel attention, backward, one gradient per line",
        replaces=tuple(n for n in _REF if n.endswith("_backward")),
        expected_error="should be around 1e-16 for every gradient",
    ),
)
