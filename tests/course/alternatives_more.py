"""Honest alternatives for the other exercises: the whole chain (notebook 3), the bug zoo's
predictions and readings (notebook 4), the online softmax (notebook 5) and channel
attention's backward (notebook 7); and notebook snippets whose functions need the
notebook's own globals. Same layout as `alternatives_steps`.
"""

import alternatives_steps as steps_alt
import numpy as np

# ================================================================ notebook 3: the whole chain


def bam_backward_own_steps(dz, fwd):
    # the student's own backward steps (the corpus's alternatives), one call per line
    g, P, ds, gamma, A = {}, fwd["params"], fwd["ds"], fwd["gamma"], fwd["attention"]
    dx, g["dup"], g["dgamma"] = steps_alt.residual_back_vdot(dz, (fwd["up"], gamma))
    mats = None if fwd["Mh"] is None else (fwd["Mh"], fwd["Mw"])
    g["dout"] = steps_alt.upsample_back_einsum(g["dup"], (ds, fwd["interpolation"], mats))
    g["dout2"] = steps_alt.unflatten_back_minus_one(g["dout"], fwd["out2"].shape)
    g["dv2"], g["dattention"] = steps_alt.weighted_sum_back_batch_loop(g["dout2"], (fwd["v2"], A))
    g["dscaled"] = steps_alt.softmax_back_two_terms(g["dattention"], A)
    g["denergy"] = steps_alt.scale_back_multiply(g["dscaled"], fwd["scale"])
    g["dq2"], g["dk2"] = steps_alt.energy_back_einsum(g["denergy"], (fwd["q2"], fwd["k2"]))
    for name in ("query", "key", "value"):
        d2 = g["dq2"] if name == "query" else g["dk2"] if name == "key" else g["dv2"]
        g[f"d{name}"] = steps_alt.flatten_back_star(d2, fwd[name].shape)
    parts = []
    for name, d in (("query", "q"), ("key", "k"), ("value", "v")):
        cache = (fwd["pooled"], P[f"{name}_conv.weight"])
        dp, g[f"dW{d}"], g[f"db{d}"] = steps_alt.conv1x1_back_tensordot(g[f"d{name}"], cache)
        parts.append(dp)
    g["dpooled"] = np.sum(parts, axis=0)
    g["dx"] = dx + steps_alt.avg_pool_back_views(g["dpooled"], ds)
    return g


def bam_backward_einsum(dz, fwd):
    g, P, ds, gamma, A = {}, fwd["params"], fwd["ds"], fwd["gamma"], fwd["attention"]
    g["dup"] = dz if gamma is None else np.multiply(dz, gamma)
    g["dgamma"] = None if gamma is None else np.einsum("bchw,bchw->", dz, fwd["up"]).reshape(1)
    if fwd["interpolation"] == "nearest":
        B, C, H, W = dz.shape
        g["dout"] = np.einsum("bchiwj->bchw", g["dup"].reshape(B, C, H // ds, ds, W // ds, ds))
    else:
        g["dout"] = np.einsum("Hh,bcHW,Ww->bchw", fwd["Mh"], g["dup"], fwd["Mw"])
    g["dout2"] = g["dout"].reshape(g["dout"].shape[0], g["dout"].shape[1], -1)
    g["dv2"] = np.einsum("bci,bij->bcj", g["dout2"], A)
    g["dattention"] = np.einsum("bci,bcj->bij", g["dout2"], fwd["v2"])
    rowdot = np.einsum("bij,bij->bi", g["dattention"], A)
    g["dscaled"] = A * (g["dattention"] - rowdot[..., None])
    g["denergy"] = fwd["scale"] * g["dscaled"]
    g["dq2"] = np.einsum("bij,bcj->bci", g["denergy"], fwd["k2"])
    g["dk2"] = np.einsum("bij,bci->bcj", g["denergy"], fwd["q2"])
    g["dquery"], g["dkey"], g["dvalue"] = (
        g[d].reshape(fwd[n].shape) for d, n in (("dq2", "query"), ("dk2", "key"), ("dv2", "value"))
    )
    for name, d in (("query", "q"), ("key", "k"), ("value", "v")):
        g[f"dW{d}"] = np.einsum("bohw,bchw->oc", g[f"d{name}"], fwd["pooled"])[..., None, None]
        g[f"db{d}"] = np.einsum("bohw->o", g[f"d{name}"])
    g["dpooled"] = sum(
        np.einsum("oc,bohw->bchw", P[f"{n}_conv.weight"][:, :, 0, 0], g[f"d{n}"])
        for n in ("query", "key", "value")
    )
    g["dx"] = dz + np.kron(g["dpooled"], np.ones((ds, ds), dtype=dz.dtype)) / ds**2
    return g


def bam_backward_batch_loop(dz, fwd):
    # every gradient one image at a time, then the batch sums; written in another order
    B = dz.shape[0]
    images = [_one_image(dz[b : b + 1], _image(fwd, b)) for b in range(B)]
    g = {}
    for name in images[0]:
        parts = [im[name] for im in images]
        if parts[0] is None:
            g[name] = None
        elif name in ("dgamma", "dWq", "dbq", "dWk", "dbk", "dWv", "dbv"):
            g[name] = np.sum(parts, axis=0)  # a parameter's gradient sums over the batch
        else:
            g[name] = np.concatenate(parts, axis=0)
    return {name: g[name] for name in reversed(list(g))}  # the dict's order is not graded


def _image(fwd, b):
    keep = ("params", "ds", "scale", "interpolation", "gamma", "Mh", "Mw")
    return {k: v if k in keep else v[b : b + 1] for k, v in fwd.items()}


def _one_image(dz, fwd):
    return bam_backward_einsum(dz, fwd)


# ================================================================ notebook 4: the bug zoo

BRANCH = ("query_conv.weight", "query_conv.bias", "key_conv.weight", "key_conv.bias")


def predict_missing_scale_list():
    return ["x", "query_conv.weight", "query_conv.bias", "key_conv.weight"]


def predict_missing_scale_frozen():
    return frozenset(BRANCH) - {"key_conv.bias"} | {"x"}


def predict_missing_scale_tuple():
    return tuple(name for name in ("x", *BRANCH) if name != "key_conv.bias")


def predict_all_query_key(kind):
    def predict():
        rows = ["x", *BRANCH]
        return {"list": rows, "tuple": tuple(rows), "frozenset": frozenset(rows)}[kind]

    return predict


def predict_only_x(kind):
    def predict():
        return {"list": ["x"], "tuple": ("x",), "frozenset": frozenset({"x"})}[kind]

    return predict


def predict_nothing(kind):
    def predict():
        return {"list": [], "tuple": (), "frozenset": frozenset()}[kind]

    return predict


def factor_by_dict(report):
    rows = {row.name: row for row in report.rows}
    return rows["query_conv.weight"].analytic / rows["query_conv.weight"].numeric


def factor_by_loop(report):
    for row in report.rows:
        if row.name == "query_conv.weight":
            return float(row.analytic) / float(row.numeric)
    return None


def factor_by_list(report):
    return [r.analytic / r.numeric for r in report.rows if r.name == "query_conv.weight"][0]


def explained_sqrt(bam):
    return np.sqrt(bam.key_channels)


def explained_power(bam):
    return bam.key_channels**0.5


def explained_from_scale(bam):
    return float(np.sqrt(bam.scale**-2))


def vacuous_loop(report):
    names = []
    for row in report.rows:
        if abs(row.analytic) < report.resolution and abs(row.numeric) < report.resolution:
            names.append(row.name)
    return names


def vacuous_filter(report):
    small = filter(lambda r: max(abs(r.analytic), abs(r.numeric)) < report.resolution, report.rows)
    return {r.name for r in small}


def vacuous_either(report):  # wrong: a row with one small column is not vacuous
    return {r.name for r in report.rows if min(abs(r.analytic), abs(r.numeric)) < report.resolution}


def vacuous_numpy(report):
    names = np.array([r.name for r in report.rows])
    both = np.array([[r.analytic, r.numeric] for r in report.rows])
    return set(names[np.abs(both).max(axis=1) < report.resolution].tolist())


# ================================================================ notebook 5: the online softmax


def online_query_tiles(query, key, value, scale, block=128):
    # flash-attention style: queries in tiles too, each tile streaming the keys
    B, Ck, N = query.shape
    out = np.empty((B, value.shape[1], N), dtype=query.dtype)
    lse = np.empty((B, N), dtype=query.dtype)
    for i0 in range(0, N, 64):
        q = query[:, :, i0 : i0 + 64]
        m = np.full((B, q.shape[2]), -np.inf, dtype=query.dtype)
        l = np.zeros_like(m)
        acc = np.zeros((B, value.shape[1], q.shape[2]), dtype=query.dtype)
        for j0 in range(0, N, block):
            s = np.einsum("bci,bcj->bij", q, key[:, :, j0 : j0 + block]) * scale
            m_new = np.maximum(m, s.max(axis=-1))
            p = np.exp(s - m_new[..., None])
            rescale = np.exp(m - m_new)
            l = l * rescale + p.sum(axis=-1)
            acc = acc * rescale[:, None, :] + np.einsum(
                "bcj,bij->bci", value[:, :, j0 : j0 + block], p
            )
            m = m_new
        out[:, :, i0 : i0 + 64] = acc / l[:, None, :]
        lse[:, i0 : i0 + 64] = m + np.log(l)
    return out, lse


def online_running_lse(query, key, value, scale, block=128):
    # keep the running log-sum-exp itself, and an output that is always normalised
    B, Ck, N = query.shape
    lse = np.full((B, N), -np.inf, dtype=query.dtype)
    out = np.zeros((B, value.shape[1], N), dtype=query.dtype)
    qt = np.swapaxes(query, 1, 2)
    for j0 in range(0, N, block):
        s = (qt @ key[:, :, j0 : j0 + block]) * scale  # (B, N, block)
        top = s.max(axis=-1)
        block_lse = top + np.log(np.exp(s - top[..., None]).sum(axis=-1))
        new = np.logaddexp(lse, block_lse)
        weights = np.exp(s - new[..., None])  # already divided by the new total
        out = out * np.exp(lse - new)[:, None, :] + value[:, :, j0 : j0 + block] @ np.swapaxes(
            weights, 1, 2
        )
        lse = new
    return out, lse


def online_blocks_list(query, key, value, scale, block=128):
    # the blocks first, as a list of (start, stop); state kept in a dict
    N = query.shape[2]
    state = {
        "m": np.full(query.shape[::2], -np.inf, dtype=query.dtype),
        "l": np.zeros(query.shape[::2], dtype=query.dtype),
        "acc": np.zeros((query.shape[0], value.shape[1], N), dtype=query.dtype),
    }
    for start, stop in [(j, min(j + block, N)) for j in range(0, N, block)]:
        s = np.matmul(query.transpose(0, 2, 1), key[..., start:stop]) * scale
        m = np.maximum(state["m"], s.max(axis=2))
        p = np.exp(s - m[:, :, None])
        alpha = np.exp(state["m"] - m)
        state["l"] = alpha * state["l"] + p.sum(axis=2)
        state["acc"] = alpha[:, None] * state["acc"] + np.matmul(
            value[..., start:stop], p.transpose(0, 2, 1)
        )
        state["m"] = m
    return state["acc"] / state["l"][:, None], state["m"] + np.log(state["l"])


def online_no_rescale(query, key, value, scale, block=128):  # forgets exp(m_old - m_new)
    B, Ck, N = query.shape
    m = np.full((B, N), -np.inf, dtype=query.dtype)
    l = np.zeros((B, N), dtype=query.dtype)
    acc = np.zeros((B, value.shape[1], N), dtype=query.dtype)
    for j0 in range(0, N, block):
        s = (query.transpose(0, 2, 1) @ key[:, :, j0 : j0 + block]) * scale
        m_new = np.maximum(m, s.max(axis=-1))
        p = np.exp(s - m_new[..., None])
        l = l + p.sum(axis=-1)
        acc = acc + value[:, :, j0 : j0 + block] @ p.transpose(0, 2, 1)
        m = m_new
    return acc / l[:, None, :], m + np.log(l)


def online_lse_without_max(query, key, value, scale, block=128):  # lse = log(l), no m
    out, lse = online_running_lse(query, key, value, scale, block)
    top = (np.swapaxes(query, 1, 2) @ key * scale).max(axis=-1)
    return out, lse - top


# ================================================================ notebook 7: channel attention


def channel_backward_einsum(dy, fwd):
    g, X, A, gamma = {}, fwd["X"], fwd["attention"], fwd["gamma"]
    g["dout"] = dy * gamma
    g["dgamma"] = np.einsum("bchw,bchw->", dy, fwd["out"]).reshape(1)
    g["dout2"] = g["dout"].reshape(X.shape)
    g["dattention"] = np.einsum("bin,bjn->bij", g["dout2"], X)
    g["dX_value"] = np.einsum("bij,bin->bjn", A, g["dout2"])
    rowdot = np.einsum("bij,bij->bi", g["dattention"], A)[..., None]
    g["dflipped"] = A * (g["dattention"] - rowdot)
    denergy = -g["dflipped"]
    np.put_along_axis(
        denergy,
        fwd["argmax"][..., None],
        np.take_along_axis(denergy, fwd["argmax"][..., None], axis=-1)
        + g["dflipped"].sum(axis=-1, keepdims=True),
        axis=-1,
    )
    g["denergy"] = denergy
    g["dX_energy"] = np.einsum("bij,bjn->bin", denergy, X) + np.einsum("bji,bjn->bin", denergy, X)
    g["dx"] = dy + (g["dX_value"] + g["dX_energy"]).reshape(dy.shape)
    return g


def channel_backward_without_max_term(dy, fwd):
    # the row max's term is a row sum of dflipped, zero by mathematics: leaving it out is exact
    g = channel_backward_einsum(dy, fwd)
    g["denergy"] = -g["dflipped"]
    g["dX_energy"] = (g["denergy"] + np.swapaxes(g["denergy"], 1, 2)) @ fwd["X"]
    g["dx"] = dy + (g["dX_value"] + g["dX_energy"]).reshape(dy.shape)
    return g


def channel_backward_batch_loop(dy, fwd):
    keep = ("gamma",)
    images = [
        channel_backward_einsum(
            dy[b : b + 1], {k: v if k in keep else v[b : b + 1] for k, v in fwd.items()}
        )
        for b in range(dy.shape[0])
    ]
    g = {}
    for name in images[0]:
        parts = [im[name] for im in images]
        g[name] = np.sum(parts, axis=0) if name == "dgamma" else np.concatenate(parts, axis=0)
    return g


def channel_backward_one_side(dy, fwd):  # notebook 7's slip: X on one side of X X^T only
    g = channel_backward_einsum(dy, fwd)
    g["dX_energy"] = 2 * g["denergy"] @ fwd["X"]
    g["dx"] = dy + (g["dX_value"] + g["dX_energy"]).reshape(dy.shape)
    return g


def bam_backward_shared_pooled(dz, fwd):  # forgets that pooled feeds three convolutions
    g = bam_backward_einsum(dz, fwd)
    P = fwd["params"]
    g["dpooled"] = np.einsum("oc,bohw->bchw", P["value_conv.weight"][:, :, 0, 0], g["dvalue"])
    ds = fwd["ds"]
    g["dx"] = dz + np.kron(g["dpooled"], np.ones((ds, ds), dtype=dz.dtype)) / ds**2
    return g


def bam_backward_no_skip(dz, fwd):  # forgets the skip connection in dx
    g = bam_backward_einsum(dz, fwd)
    g["dx"] = g["dx"] - dz
    return g


CORRECT = {
    "bam_backward": [
        ("the student's own step functions", bam_backward_own_steps),
        ("einsum everywhere", bam_backward_einsum),
        ("one image at a time, the dict in another order", bam_backward_batch_loop),
    ],
    "predict_missing_scale": [
        ("a list", predict_missing_scale_list),
        ("set algebra on a frozenset", predict_missing_scale_frozen),
        ("a tuple by a generator", predict_missing_scale_tuple),
    ],
    **{
        exercise: [(kind, make(kind)) for kind in ("list", "tuple", "frozenset")]
        for exercise, make in (
            ("predict_transposed", predict_all_query_key),
            ("predict_no_row_sum", predict_all_query_key),
            ("predict_residual_forgotten", predict_only_x),
            ("predict_float32", predict_nothing),
            ("predict_gamma_zero", predict_nothing),
        )
    },
    "scale_bug_factor": [
        ("a dict of rows; np.sqrt", (factor_by_dict, explained_sqrt)),
        ("a loop; a power", (factor_by_loop, explained_power)),
        ("a list; from the scale", (factor_by_list, explained_from_scale)),
    ],
    "vacuous_rows": [
        ("a loop into a list", vacuous_loop),
        ("filter", vacuous_filter),
        ("NumPy masks", vacuous_numpy),
    ],
    "online_attention_forward": [
        ("query tiles too (flash-attention style)", online_query_tiles),
        ("a running log-sum-exp", online_running_lse),
        ("blocks listed first, state in a dict", online_blocks_list),
    ],
    "channel_attention_backward": [
        ("einsum and put_along_axis", channel_backward_einsum),
        ("without the row max's term (zero by mathematics)", channel_backward_without_max_term),
        ("one image at a time", channel_backward_batch_loop),
    ],
}

WRONG = {
    "bam_backward": [
        ("dpooled from the value branch only", bam_backward_shared_pooled, "values"),
        ("dx without the skip connection", bam_backward_no_skip, "values"),
    ],
    "channel_attention_backward": [
        ("X on one side of X X^T (notebook 7)", channel_backward_one_side, "values")
    ],
    "online_attention_forward": [
        ("no rescaling when the max grows", online_no_rescale, "values"),
        ("lse without the running max", online_lse_without_max, "values"),
    ],
    "predict_missing_scale": [("with the key bias", predict_all_query_key("list"), "values")],
    "predict_transposed": [("without the key bias", predict_missing_scale_list, "values")],
    "predict_float32": [("the float64 answer", predict_all_query_key("list"), "values")],
    "scale_bug_factor": [
        ("numeric / analytic", (lambda r: 1 / factor_by_dict(r), explained_sqrt), "values")
    ],
    "vacuous_rows": [("rows below the resolution in one column only", vacuous_either, "values")],
}
