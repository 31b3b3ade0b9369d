"""STANet's PAM and CDSA on the module base: gradient checks, backends, dtypes, state_dict,
train/eval, the PyTorch ports of the originals, compare_steps, no mutation (bad input:
test_module_errors.py)."""

import numpy as np
import pytest
from helpers import rand, random_cdsa, random_pam, randomize

from minattn import compare_steps, gradcheck
from minattn.backend import BACKENDS, FAST_BACKENDS, ops_for
from minattn.modules.cdsa import CDSA
from minattn.modules.pam import PAM
from minattn.validate import as_tuple


def use_backend(backend, request):
    if backend == "numba":
        request.getfixturevalue("numba_kernels")


def run(module, inputs, douts):
    """Forward and backward; every array they produce, by name."""
    inputs = as_tuple(inputs)
    ys = module.forward(*inputs)
    ys = as_tuple(ys)
    dxs = module.backward(*douts)
    dxs = as_tuple(dxs)
    out = {f"y{i}": y for i, y in enumerate(ys)} | {f"dx{i}": d for i, d in enumerate(dxs)}
    out |= {f"grads[{k}]": g for k, g in module.grads.items()}
    out |= {f"buffers[{k}]": b.copy() for k, b in module.buffers.items()}
    return out


def worst_difference(ours, theirs):
    """max |a - b| / max |b| over arrays; gradients that are exactly zero (the key biases:
    a shift of every key adds a constant to each row of energies) compare absolutely."""
    worst = 0.0
    for name, b in theirs.items():
        a = np.asarray(ours[name], dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        scale = max(float(np.abs(b).max()), 1e-3)
        worst = max(worst, float(np.abs(a - b).max()) / scale)
    return worst


# (module factory, inputs): small enough for the reference backend
PAM_CASES = {
    "PAM s=1,2": (lambda **kw: random_pam(8, (1, 2), 1, **kw), lambda: rand(2, 8, 2, 4)),
    "PAM s=1,2 ds=2": (lambda **kw: random_pam(8, (2, 1), 2, **kw), lambda: rand(1, 8, 4, 8)),
    "CDSA BAM": (
        lambda **kw: random_cdsa(8, 1, "BAM", **kw),
        lambda: (rand(2, 8, 2, 3), rand(2, 8, 2, 3, seed=2)),
    ),
    "CDSA PAM": (
        lambda **kw: random_cdsa(8, 1, "PAM", **kw),
        lambda: (rand(1, 8, 8, 8), rand(1, 8, 8, 8, seed=2)),
    ),
}


# ---------------------------------------------------------------- gradient checks


# the literal loops take 20-400 ms a forward, so the reference backend checks a random sample
# of each array, and its CDSA PAM (0.4 s a forward) only one entry each, in training mode
# (the backends agree with each other to 1e-10 in both modes anyway)
GRADCHECK_CASES = [
    (case, backend, training)
    for case in PAM_CASES
    for backend in BACKENDS
    for training in (True, False)
    if not (case == "CDSA PAM" and backend == "reference" and not training)
]


@pytest.mark.parametrize(
    "case, backend, training",
    GRADCHECK_CASES,
    ids=[f"{c}-{b}-{'train' if t else 'eval'}" for c, b, t in GRADCHECK_CASES],
)
def test_gradcheck(case, backend, training, request):
    use_backend(backend, request)
    make, inputs = PAM_CASES[case]
    module = make(backend=backend).train(training)
    if backend == "reference":
        cap = 1 if case == "CDSA PAM" else 12
    else:
        cap = 80 if case == "CDSA PAM" else None  # CDSA PAM has 1000+ entries per input
    report = gradcheck(module, inputs(), max_elements=cap)
    assert report.ok, report
    assert report.max_rel < 1e-7


def test_gradcheck_restores_the_running_statistics():
    pam = random_pam()
    before = pam.state_dict()
    gradcheck(pam, rand(2, 8, 2, 4), max_elements=5)
    for k, v in before.items():
        np.testing.assert_array_equal(pam.state_dict()[k], v)


# ---------------------------------------------------------------- backends and dtypes


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", PAM_CASES)
def test_backends_agree(case, training, request):
    use_backend("numba", request)
    make, inputs = PAM_CASES[case]
    x = inputs()
    douts = tuple(rand(*a.shape, seed=9) for a in as_tuple(x))
    results = {b: run(make(backend=b).train(training), x, douts) for b in BACKENDS}
    for backend in FAST_BACKENDS:
        assert results[backend].keys() == results["reference"].keys()
        assert worst_difference(results[backend], results["reference"]) < 1e-10, backend


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", PAM_CASES)
def test_float32_agrees_with_float64(case, training, backend, request):
    use_backend(backend, request)
    make, inputs = PAM_CASES[case]
    x = inputs()
    x = as_tuple(x)
    m64 = make(backend=backend).train(training)
    m32 = make(backend=backend, dtype=np.float32).train(training)
    m32.load_state_dict(m64.state_dict())
    m64.load_state_dict(m32.state_dict())  # the same (float32-representable) start for both
    douts = tuple(rand(*a.shape, seed=9) for a in x)
    r64 = run(m64, x, douts)
    r32 = run(
        m32, tuple(a.astype(np.float32) for a in x), tuple(d.astype(np.float32) for d in douts)
    )
    assert all(v.dtype == np.float32 for k, v in r32.items() if "num_batches" not in k)
    # a gradient that is small or zero in exact arithmetic (the key biases; in training mode
    # also the query conv bias, whose shift BatchNorm removes) is float32 rounding noise of
    # sums of large terms: gradients compare against the largest input gradient, as BAM's
    floor = max(float(np.abs(v).max()) for k, v in r64.items() if k.startswith("dx"))
    for k, v in r64.items():
        scale = max(float(np.abs(v).max()), floor if k.startswith("grads") else 0.0)
        assert np.abs(r32[k] - v).max() / scale < 2e-5, k


# ---------------------------------------------------------------- state_dict, buffers, modes


def pam_keys(n_stages):
    keys = []
    for i in range(n_stages):
        for branch in ("f_key", "f_query"):
            keys += [f"stages.{i}.{branch}.0.{p}" for p in ("weight", "bias")]
            keys += [
                f"stages.{i}.{branch}.1.{p}"
                for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
            ]
        keys += [f"stages.{i}.f_value.weight", f"stages.{i}.f_value.bias"]
    return keys + ["conv_bn.0.weight"]


def test_state_dict_keys_and_shapes_are_stanets():
    C, Ck = 16, 2
    sd = PAM(C, C, (1, 2, 4), seed=0).state_dict()
    assert sorted(sd) == sorted(pam_keys(3))
    assert sd["stages.1.f_key.0.weight"].shape == (Ck, C, 1, 1)
    assert sd["stages.2.f_query.1.running_var"].shape == (Ck,)
    assert sd["stages.0.f_key.1.num_batches_tracked"].shape == ()
    assert sd["stages.0.f_key.1.num_batches_tracked"].dtype == np.int64
    assert sd["stages.0.f_value.weight"].shape == (C, C, 1, 1)
    assert sd["conv_bn.0.weight"].shape == (C, 3 * C, 1, 1)
    cdsa = CDSA(8, 1, "PAM", seed=0).state_dict()
    assert sorted(cdsa) == sorted("Self_Att." + k for k in pam_keys(4))
    bam = CDSA(8, 2, "BAM", seed=0).state_dict()
    assert sorted(bam) == sorted(
        "Self_Att." + k
        for k in ("query_conv.weight", "query_conv.bias", "key_conv.weight", "key_conv.bias")
        + ("value_conv.weight", "value_conv.bias", "gamma")
    )


def test_default_init_is_pytorchs():
    pam = PAM(64, 64, (1, 2), seed=0)
    P, buf = pam.params, pam.buffers
    for name in ("stages.0.f_key.0.weight", "stages.1.f_value.bias"):
        assert 0.1 < np.abs(P[name]).max() <= 1 / 8  # uniform in +-1/sqrt(64)
    assert np.abs(P["conv_bn.0.weight"]).max() <= 1 / np.sqrt(128)
    np.testing.assert_array_equal(P["stages.0.f_query.1.weight"], 1.0)
    np.testing.assert_array_equal(P["stages.0.f_query.1.bias"], 0.0)
    np.testing.assert_array_equal(buf["stages.1.f_key.1.running_mean"], 0.0)
    np.testing.assert_array_equal(buf["stages.1.f_key.1.running_var"], 1.0)
    assert buf["stages.1.f_key.1.num_batches_tracked"] == 0


def test_cdsa_init_is_stanets_weights_init():
    # STANet's weights_init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0;
    # conv biases keep PyTorch's default
    P = CDSA(64, 1, "PAM", seed=0).params
    w = np.concatenate([P[f"Self_Att.stages.{i}.f_value.weight"].ravel() for i in range(4)])
    assert abs(w.mean()) < 0.002 and 0.018 < w.std() < 0.022
    bn = np.concatenate([P[f"Self_Att.stages.{i}.f_key.1.weight"] for i in range(4)])
    assert abs(bn.mean() - 1) < 0.01 and 0.01 < bn.std() < 0.03
    np.testing.assert_array_equal(P["Self_Att.stages.3.f_query.1.bias"], 0.0)
    bias = P["Self_Att.stages.0.f_value.bias"]
    assert 0.06 < np.abs(bias).max() <= 1 / 8  # PyTorch's default, untouched
    bam = CDSA(64, 1, "BAM", seed=0).params
    assert 0.018 < bam["Self_Att.value_conv.weight"].std() < 0.022
    assert bam["Self_Att.gamma"][0] == 0.0


def test_seed_makes_init_reproducible():
    a, b = CDSA(8, 1, "PAM", seed=3).state_dict(), CDSA(8, 1, "PAM", seed=3).state_dict()
    c = CDSA(8, 1, "PAM", seed=4).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["Self_Att.conv_bn.0.weight"], c["Self_Att.conv_bn.0.weight"])


@pytest.mark.parametrize("case", PAM_CASES)
def test_state_dict_round_trip(case):
    make, inputs = PAM_CASES[case]
    x = inputs()
    x = as_tuple(x)
    a = make(seed=0).eval()
    b = make(seed=5).eval()
    b.load_state_dict(a.state_dict())
    ya, yb = a.forward(*x), b.forward(*x)
    for u, v in zip(as_tuple(ya), as_tuple(yb), strict=True):
        np.testing.assert_array_equal(u, v)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    for k, v in a.buffers.items():  # copies, not the live buffers
        assert not np.shares_memory(sa[k], v)


def test_cdsa_shares_its_arrays_with_the_inner_module():
    cdsa = random_cdsa()
    for k, v in cdsa.Self_Att.params.items():
        assert cdsa.params["Self_Att." + k] is v
    for k, v in cdsa.Self_Att.buffers.items():
        assert cdsa.buffers["Self_Att." + k] is v
    cdsa.eval()
    assert cdsa.Self_Att.training is False
    cdsa.train()
    assert cdsa.Self_Att.training is True


def test_training_forward_moves_running_statistics_and_eval_does_not():
    pam = random_pam()
    x = rand(2, 8, 2, 4)
    key = "stages.1.f_query.1."
    before = {k: v.copy() for k, v in pam.buffers.items()}
    y_train = pam.forward(x)
    assert pam.buffers[key + "num_batches_tracked"] == before[key + "num_batches_tracked"] + 1
    assert not np.array_equal(pam.buffers[key + "running_mean"], before[key + "running_mean"])
    moved = {k: v.copy() for k, v in pam.buffers.items()}
    y_eval = pam.eval().forward(x)
    for k, v in pam.buffers.items():
        np.testing.assert_array_equal(v, moved[k])
    assert not np.allclose(y_train, y_eval)  # the two modes normalise differently


def test_training_mode_ignores_the_running_statistics():
    a, b = random_pam(seed=0), random_pam(seed=0)
    for k, v in b.buffers.items():
        if "running" in k:
            v[...] = v * 3 + 1
    x = rand(2, 8, 2, 4)
    np.testing.assert_allclose(a.forward(x), b.forward(x), rtol=1e-14, atol=1e-14)


def test_attention_per_stage_and_none_on_numba(request):
    use_backend("numba", request)
    pam = random_pam(8, (1, 2))
    pam.forward(rand(2, 8, 2, 4))
    # scale 1: one region per item, all 2 * 2 * 2 = 8 pixels of the pair; scale 2: 4 regions of 2
    assert [a.shape for a in pam.attention] == [(2, 8, 8), (8, 2, 2)]
    for a in pam.attention:
        np.testing.assert_allclose(a.sum(axis=-1), 1.0)
    numba = random_pam(8, (1, 2), backend="numba")
    numba.forward(rand(2, 8, 2, 4))
    assert numba.attention is None


@pytest.mark.parametrize("s", [1, 2])
def test_a_pixel_sees_only_its_cell_in_both_images(s):
    # from the definition, not the code: at scale s (ds 1, eval mode so BatchNorm does not
    # couple the batch) changing one pixel of image 2 changes the output only in the cell
    # that contains it, in both images, and nowhere else
    pam = random_pam(8, (s,), 1).eval()
    H, W = 4, 4
    x = rand(1, 8, H, 2 * W)
    x2 = x.copy()
    x2[0, :, 1, W + 2] += 1.0  # image 2, row 1, column 2: cell (0, s - 1) at scale s
    changed = np.abs(pam.forward(x2) - pam.forward(x)).max(axis=(0, 1)) > 0  # (H, 2W)
    cell = np.zeros((H, W), bool)
    hs, ws = H // s, W // s
    i, j = 1 // hs, 2 // ws
    cell[i * hs : (i + 1) * hs, j * ws : (j + 1) * ws] = True
    np.testing.assert_array_equal(changed, np.concatenate([cell, cell], axis=1))


# ---------------------------------------------------------------- PyTorch: the originals


def torch_ports():
    torch = pytest.importorskip("torch", reason="the STANet ports run in torch")
    import originals

    return torch, originals


def randomize_torch(torch, module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.empty(p.shape, dtype=p.dtype).uniform_(-0.6, 0.6, generator=g))
            if name.endswith("1.weight"):
                p += 1.0
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, dtype=b.dtype, generator=g) * 0.5)
            elif name.endswith("running_var"):
                b.copy_(torch.empty(b.shape, dtype=b.dtype).uniform_(0.5, 1.5, generator=g))
            else:
                b.fill_(3)
    return module


def torch_run(torch, tmod, inputs, douts):
    xs = [torch.tensor(a, requires_grad=True) for a in inputs]
    ys = tmod(*xs)
    ys = as_tuple(ys)
    torch.autograd.backward(list(ys), [torch.from_numpy(d) for d in douts])
    out = {f"y{i}": y.detach().numpy() for i, y in enumerate(ys)}
    out |= {f"dx{i}": x.grad.numpy() for i, x in enumerate(xs)}
    # BAM's gamma never enters the output: torch leaves its grad None, we report zeros
    out |= {
        f"grads[{k}]": np.zeros(p.shape) if p.grad is None else p.grad.numpy()
        for k, p in tmod.named_parameters()
    }
    out |= {f"buffers[{k}]": b.numpy().copy() for k, b in tmod.named_buffers()}
    return out


ORACLE_CASES = [
    # (mode or sizes, C, ds, shape of one image or of the pair)
    ("PAM", (1,), 8, 1, (2, 8, 4, 8)),
    ("PAM", (1, 2), 8, 2, (2, 8, 8, 16)),
    ("PAM", (1, 2, 4), 16, 1, (1, 16, 8, 16)),
    ("PAM", (3, 1), 8, 2, (2, 8, 12, 24)),
    ("CDSA", "BAM", 8, 1, (2, 8, 4, 6)),
    ("CDSA", "BAM", 16, 2, (2, 16, 4, 3)),  # 2W = 6: STANet's pooling straddles the seam
    ("CDSA", "PAM", 8, 1, (2, 8, 8, 8)),
    ("CDSA", "PAM", 8, 2, (1, 8, 16, 16)),
]


def build_pair(torch, originals, kind, arg, C, ds, backend="numpy"):
    if kind == "PAM":
        tmod = originals.STANetPAM(C, C, list(arg), ds)
        ours = PAM(C, C, arg, ds, backend=backend)
    else:
        tmod = originals.STANetCDSA(C, ds, arg)
        ours = CDSA(C, ds, arg, backend=backend)
    return tmod.double(), ours


@pytest.mark.parametrize("direction", ["torch->minattn", "minattn->torch"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    "case", ORACLE_CASES, ids=lambda c: f"{c[0]}-{c[1]}-C{c[2]}-ds{c[3]}-{c[4]}"
)
def test_agrees_with_stanet(case, training, direction):
    torch, originals = torch_ports()
    kind, arg, C, ds, shape = case
    tmod, ours = build_pair(torch, originals, kind, arg, C, ds)
    if direction == "torch->minattn":
        randomize_torch(torch, tmod)
        ours.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
    else:
        randomize(ours, seed=3)
        tmod.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    tmod.train(training)
    ours.train(training)
    inputs = (rand(*shape),) if kind == "PAM" else (rand(*shape), rand(*shape, seed=2))
    n_out = 1 if kind == "PAM" else 2
    douts = tuple(rand(*shape, seed=10 + i) for i in range(n_out))
    theirs = torch_run(torch, tmod, inputs, douts)
    mine = run(ours, inputs, douts)
    assert mine.keys() == theirs.keys()
    # output, input gradients, parameter gradients and the running statistics after the forward
    assert worst_difference(mine, theirs) < 1e-10


def test_worst_torch_difference_over_several_forwards():
    # three training steps in a row: the running statistics keep agreeing
    torch, originals = torch_ports()
    tmod, ours = build_pair(torch, originals, "PAM", (1, 2), 8, 1)
    randomize_torch(torch, tmod, seed=4)
    ours.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
    for step in range(3):
        x = rand(2, 8, 4, 8, seed=20 + step)
        tmod(torch.from_numpy(x))
        ours.forward(x)
    sd = ours.state_dict()
    for k, v in tmod.state_dict().items():
        np.testing.assert_allclose(sd[k], v.numpy(), rtol=1e-12, err_msg=k)
    assert sd["stages.0.f_key.1.num_batches_tracked"] == 6


# ---------------------------------------------------------------- compare_steps


PAM_STEPS = [
    "avg_pool_forward",
    "conv1x1_forward",
    "batchnorm_forward",
    "region_split_forward",
    "energy_forward",
    "scale_forward",
    "softmax_forward",
    "weighted_sum_forward",
    "region_merge_forward",
    "upsample_forward",
    "concat_channels_forward",
    "conv1x1_backward",
    "concat_channels_backward",
    "upsample_backward",
    "region_merge_backward",
    "weighted_sum_backward",
    "softmax_backward",
    "scale_backward",
    "energy_backward",
    "region_split_backward",
    "batchnorm_backward",
    "avg_pool_backward",
]
PAIR_STEPS = [
    "pair_concat_forward",
    "pair_split_forward",
    "pair_split_backward",
    "pair_concat_backward",
]
BAM_STEPS = ["flatten_forward", "unflatten_forward", "residual_forward"]
BAM_STEPS += ["residual_backward", "unflatten_backward", "flatten_backward"]


def slipped(f, forward):
    """f with a 0.1% error in its first output array (of a tuple, if it returns several)."""

    def first_wrong(out):
        return (out[0] * 1.001, *out[1:]) if isinstance(out, tuple) else out * 1.001

    def wrong(*args, **kwargs):
        result = f(*args, **kwargs)
        if forward:
            out, cache = result
            return first_wrong(out), cache
        return first_wrong(result)

    return wrong


COMPARE_CASES = {
    "PAM": (lambda **kw: random_pam(8, (1, 2), 2, **kw), lambda: rand(2, 8, 4, 8), PAM_STEPS),
    "CDSA PAM": (
        lambda **kw: random_cdsa(8, 1, "PAM", **kw),
        lambda: (rand(1, 8, 8, 8), rand(1, 8, 8, 8, seed=2)),
        [s for s in PAM_STEPS if "pool" not in s and "upsample" not in s] + PAIR_STEPS,
    ),
    "CDSA BAM": (
        lambda **kw: random_cdsa(8, 2, "BAM", **kw),
        lambda: (rand(2, 8, 4, 4), rand(2, 8, 4, 4, seed=2)),
        ["avg_pool_forward", "conv1x1_forward", "energy_forward", "softmax_backward"]
        + ["upsample_backward", "avg_pool_backward", "conv1x1_backward"]
        + BAM_STEPS
        + PAIR_STEPS,
    ),
}


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("case", COMPARE_CASES)
def test_compare_steps_ok_with_nothing_replaced(case, backend, request):
    use_backend(backend, request)
    make, inputs, _ = COMPARE_CASES[case]
    for training in (True, False):
        module = make(backend=backend).train(training)
        before = module.state_dict()
        report = compare_steps(module, inputs())
        assert report.ok and report.first_mismatch is None, report
        after = module.state_dict()  # compare_steps leaves the running statistics alone
        assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "case, name",
    [(case, name) for case, (_, _, names) in COMPARE_CASES.items() for name in names],
)
@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_compare_steps_names_the_step_with_a_slip(case, name, backend, request):
    use_backend(backend, request)
    make, inputs, _ = COMPARE_CASES[case]
    f = getattr(ops_for(backend, fused=False), name)
    report = compare_steps(
        make(backend=backend), inputs(), replace={name: slipped(f, name.endswith("_forward"))}
    )
    assert not report.ok
    assert report.first_mismatch.startswith(name) or f"({name}#" in report.first_mismatch, report


def test_trace_names_every_step_of_a_pam_stage():
    pam = random_pam(8, (1, 2), 2)
    names = []
    pam.forward(rand(1, 8, 4, 8), trace=lambda name, a: names.append(name))
    assert names[0] == "x" and names[-1] == "y"
    # y and the running variance of stage 1's key BatchNorm, the 4th BatchNorm call
    assert "stage 1 (2 x 2): key BatchNorm (batchnorm_forward#4).0" in names
    assert "stage 1 (2 x 2): key BatchNorm (batchnorm_forward#4).2" in names
    assert "stage 1 (2 x 2): key regions (region_split_forward#6)" in names
    assert names.index("the stages side by side (concat_channels_forward#1)") > names.index(
        "stage 1 (2 x 2): resize (upsample_forward#2)"
    )
    assert names[-2] == "conv_bn (mix the stages) (conv1x1_forward#7)"


# ---------------------------------------------------------------- mutation


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", PAM_CASES)
def test_inputs_and_upstream_gradients_are_not_modified(case, training):
    make, inputs = PAM_CASES[case]
    module = make().train(training)
    x = inputs()
    x = as_tuple(x)
    saved = [a.copy() for a in x]
    ys = module.forward(*x)
    douts = tuple(rand(*y.shape, seed=4) for y in as_tuple(ys))
    dsaved = [d.copy() for d in douts]
    dxs = module.backward(*douts)
    for a, b in zip(x, saved, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(douts, dsaved, strict=True):
        np.testing.assert_array_equal(a, b)
    for d in as_tuple(dxs):  # gradients are new arrays
        assert not any(np.shares_memory(d, a) for a in (*x, *douts))
