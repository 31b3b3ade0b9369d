"""Hidden tests of the full-chain exercise: BAM's whole backward pass, line by line.

Notebook 3's last exercise is makemore's "backprop ninja" for attention: given every
intermediate of BAM's forward pass (`forward_intermediates`), the student writes the
backward pass one gradient per line, into a dict, in the order of `GRADIENTS`. The check
compares every gradient written so far with the package's own, in that order, like
`minattn.compare_steps` does for a module, and names the first one that differs; it
can be run after every line.
"""

import numpy as np

from ...ops import resize, steps
from .catalog import Exercise, standard_parts
from .tools import Fail, call, expect_array, frozen, snapshot, unchanged

# (name in the student's dict, the package step whose output it is, as compare_steps names it)
GRADIENTS = (
    ("dup", "residual_backward#1.1"),
    ("dgamma", "residual_backward#1.2"),
    ("dout", "upsample_backward#1"),
    ("dout2", "unflatten_backward#1"),
    ("dv2", "weighted_sum_backward#1.0"),
    ("dattention", "weighted_sum_backward#1.1"),
    ("dscaled", "softmax_backward#1"),
    ("denergy", "scale_backward#1"),
    ("dq2", "energy_backward#1.0"),
    ("dk2", "energy_backward#1.1"),
    ("dquery", "flatten_backward#1"),
    ("dkey", "flatten_backward#2"),
    ("dvalue", "flatten_backward#3"),
    ("dWq", "conv1x1_backward#1.1"),
    ("dbq", "conv1x1_backward#1.2"),
    ("dWk", "conv1x1_backward#2.1"),
    ("dbk", "conv1x1_backward#2.2"),
    ("dWv", "conv1x1_backward#3.1"),
    ("dbv", "conv1x1_backward#3.2"),
    ("dpooled", "conv1x1_backward#1.0 + #2.0 + #3.0"),
    ("dx", "residual_backward#1.0 + avg_pool_backward#1"),
)

_REF = {
    name: getattr(module, name) for module in (steps, resize) for name in vars(module)
}  # the package's functions, bound at import


def forward_intermediates(params, x, ds, interpolation="nearest", use_gamma=True):
    """BAM's forward pass with every intermediate kept: (z, fwd).

    params: BAM's state dict; x: (B, C, H, W). ``fwd`` holds the arrays by name ("x",
    "pooled", "query", "key", "value", "q2", "k2", "v2", "energy", "scaled",
    "attention", "out2", "out", "up", "z") and the settings ("params", "ds", "scale",
    "interpolation", "gamma": the (1,) array or None, "Mh", "Mw": the bilinear
    matrices or None). Notebook 3 writes the same function out line by line.
    """
    P = params
    pooled = _REF["avg_pool_forward"](x, ds)[0]
    query = _REF["conv1x1_forward"](pooled, P["query_conv.weight"], P["query_conv.bias"])[0]
    key = _REF["conv1x1_forward"](pooled, P["key_conv.weight"], P["key_conv.bias"])[0]
    value = _REF["conv1x1_forward"](pooled, P["value_conv.weight"], P["value_conv.bias"])[0]
    q2, k2, v2 = (_REF["flatten_forward"](a)[0] for a in (query, key, value))
    scale = q2.shape[1] ** -0.5
    energy = _REF["energy_forward"](q2, k2)[0]
    scaled = _REF["scale_forward"](energy, scale)[0]
    attention = _REF["softmax_forward"](scaled)[0]
    out2 = _REF["weighted_sum_forward"](v2, attention)[0]
    out = _REF["unflatten_forward"](out2, *pooled.shape[2:])[0]
    up, (_, _, mats) = _REF["upsample_forward"](out, ds, interpolation)
    gamma = P["gamma"] if use_gamma else None
    z = _REF["residual_forward"](x, up, gamma)[0]
    Mh, Mw = mats if mats is not None else (None, None)
    fwd = dict(
        x=x, pooled=pooled, query=query, key=key, value=value, q2=q2, k2=k2, v2=v2,
        energy=energy, scaled=scaled, attention=attention, out2=out2, out=out, up=up, z=z,
        params=P, ds=ds, scale=scale, interpolation=interpolation, gamma=gamma, Mh=Mh, Mw=Mw,
    )  # fmt: skip
    return z, fwd


def reference_gradients(dz, fwd):
    """Every gradient of `GRADIENTS`, computed with the package's own backward steps."""
    f, P = fwd, fwd["params"]
    g = {}
    _, g["dup"], g["dgamma"] = _REF["residual_backward"](dz, (f["up"], f["gamma"]))
    mats = None if f["Mh"] is None else (f["Mh"], f["Mw"])
    g["dout"] = _REF["upsample_backward"](g["dup"], (f["ds"], f["interpolation"], mats))
    g["dout2"] = _REF["unflatten_backward"](g["dout"], f["out2"].shape)
    g["dv2"], g["dattention"] = _REF["weighted_sum_backward"](g["dout2"], (f["v2"], f["attention"]))
    g["dscaled"] = _REF["softmax_backward"](g["dattention"], f["attention"])
    g["denergy"] = _REF["scale_backward"](g["dscaled"], f["scale"])
    g["dq2"], g["dk2"] = _REF["energy_backward"](g["denergy"], (f["q2"], f["k2"]))
    g["dquery"] = _REF["flatten_backward"](g["dq2"], f["query"].shape)
    g["dkey"] = _REF["flatten_backward"](g["dk2"], f["key"].shape)
    g["dvalue"] = _REF["flatten_backward"](g["dv2"], f["value"].shape)
    dp = []
    for p, d in (("query", "q"), ("key", "k"), ("value", "v")):
        cache = (f["pooled"], P[f"{p}_conv.weight"])
        dpart, g[f"dW{d}"], g[f"db{d}"] = _REF["conv1x1_backward"](g[f"d{p}"], cache)
        dp.append(dpart)
    g["dpooled"] = dp[0] + dp[1] + dp[2]
    g["dx"] = dz + _REF["avg_pool_backward"](g["dpooled"], f["ds"])
    return g


def random_case(rng, dtype, interpolation, use_gamma, B=2):
    """A BAM-sized problem with random non-zero parameters: (dz, fwd, description)."""
    C = int(rng.choice([6, 8]))
    ck = int(rng.integers(1, 4))
    ds = 2
    h = int(rng.integers(2, 4))
    w = h + int(rng.integers(1, 3))  # h != w
    P = {
        "query_conv.weight": rng.standard_normal((ck, C, 1, 1)) * 0.5,
        "query_conv.bias": rng.standard_normal(ck) * 0.5,
        "key_conv.weight": rng.standard_normal((ck, C, 1, 1)) * 0.5,
        "key_conv.bias": rng.standard_normal(ck) * 0.5,
        "value_conv.weight": rng.standard_normal((C, C, 1, 1)) * 0.5,
        "value_conv.bias": rng.standard_normal(C) * 0.5,
        "gamma": np.array([rng.uniform(0.5, 1.5)]),
    }
    P = {k: v.astype(dtype) for k, v in P.items()}
    x = rng.standard_normal((B, C, h * ds, w * ds)).astype(dtype)
    z, fwd = forward_intermediates(P, x, ds, interpolation, use_gamma)
    dz = rng.standard_normal(z.shape).astype(dtype)
    desc = (
        f"{np.dtype(dtype).name}, B={B}, C={C}, Ck={ck}, H={h * ds}, W={w * ds}, ds={ds}, "
        f"{interpolation}, use_gamma={use_gamma}"
    )
    return dz, fwd, desc


def compare_chain(got, expected, where="", gradients=GRADIENTS, floors=None):
    """(table lines, first failure or None): every gradient of ``gradients`` in order.

    floors: {name: scale} for gradients that are zero by mathematics (see `expect_array`);
    by default dbk's, from dkey.
    """
    if floors is None:
        # dbk is 0 by mathematics (the softmax ignores a constant per row): its size is the
        # rounding noise of the terms summed into it, those of dkey
        floors = {"dbk": np.abs(expected["dkey"]).sum(axis=(0, 2, 3)).max()}
    width = max(len(step) for _, step in gradients)
    lines = [
        f"{'gradient':11s} {'package step (compare_steps name)':{width}s} {'shape':14s} verdict"
    ]
    first = None
    for name, step in gradients:
        e = expected[name]
        shape = "None" if e is None else "x".join(map(str, e.shape))
        if not isinstance(got, dict) or name not in got:
            verdict = "not written yet"
            first = first or f"{name} is not written yet (the first gradient missing){where}"
        elif e is None:
            verdict = "ok (None)" if got[name] is None else "WRONG: must be None"
            if got[name] is not None:
                first = first or f"{name} must be None here (no gamma){where}"
        else:
            try:
                err = expect_array(
                    got[name], e, name=f"{name} ({step})", where=where, scale=floors.get(name, 0)
                )
                verdict = f"ok ({err:.0e})"
            except Fail as fail:
                verdict = "WRONG"
                first = first or f"first wrong intermediate: {fail}"
        lines.append(f"{name:11s} {step:{width}s} {shape:14s} {verdict}")
    return lines, first


class ChainFail(Fail):
    """A failure that carries the comparison table, for the notebook's check cell."""

    def __init__(self, message, table):
        super().__init__(message)
        self.table = table


def chain_parts():
    configs = (("nearest", True), ("bilinear", False), ("bilinear", True))

    def run(functions, rng, dtype, robust=False):
        fn = functions["bam_backward"]
        for interpolation, use_gamma in configs:
            dz, fwd, desc = random_case(rng, dtype, interpolation, use_gamma)
            expected = reference_gradients(dz, fwd)
            where = f" ({desc}{', read-only non-contiguous inputs' if robust else ''})"
            given = frozen((dz, fwd)) if robust else snapshot((dz, fwd))
            before = snapshot(given)
            got = call(fn, *given, name="bam_backward", where=where)
            if not isinstance(got, dict):
                raise Fail(
                    f"bam_backward must return a dict of gradients, got {type(got).__name__}"
                )
            lines, first = compare_chain(got, expected, where)
            if first:
                raise ChainFail(first, "\n".join(lines))
            if robust and not unchanged(before, given):
                raise Fail(f"bam_backward changed dz or an array of fwd in place{where}")
        return "\n".join(lines)

    def values(functions, rng):
        run(functions, rng, np.float64)
        return "all 21 gradients match in every case"

    return standard_parts(values, run)


def chain_table(bam_backward, seed=0, interpolation="bilinear", use_gamma=True):
    """The comparison table for one case, for a check cell: (text, first failure or None)."""
    rng = np.random.default_rng(seed)
    dz, fwd, desc = random_case(rng, np.float64, interpolation, use_gamma)
    expected = reference_gradients(dz, fwd)
    try:
        got = bam_backward(dz, fwd)
    except NotImplementedError:
        got = {}
    lines, first = compare_chain(got, expected, f" ({desc})")
    return "\n".join(lines), first


CHAIN = (
    Exercise(
        id="bam_backward",
        notebook="03_backward_pass",
        functions=("bam_backward",),
        points=6,
        parts=chain_parts(),
        summary="BAM's whole backward pass, one gradient per line (backprop ninja)",
        replaces=tuple(n for n in _REF if n.endswith("_backward")),
        expected_error="should be around 1e-16 for every gradient",
    ),
)
