"""PositionAttention, ChannelAttention, SqueezeExcitation and CovarianceAttention.

Per module and backend: gradcheck, backends agreeing to 1e-10, float32 against float64,
state_dict round trips, the PyTorch originals (tests/oracles/originals.py) as oracles with
weights moved both ways, compare_steps naming a planted slip, no mutation (bad input:
test_module_errors.py).
"""

import numpy as np
import pytest
from helpers import MODULES, build, random_params

import minattn
from minattn import compare_steps, gradcheck
from minattn.backend import BACKENDS, FAST_BACKENDS, ops_for

NO_TORCH = "torch not installed: the PyTorch oracle is optional"


def run(module, x, dy):
    y = module.forward(x)
    dx = module.backward(dy)
    return y, dx, {k: g.copy() for k, g in module.grads.items()}


def close(a, b, rtol, what, floor=1e-3):
    """Max difference relative to the largest entry; below ``floor`` compare absolutely
    (the key bias's gradient is zero in exact arithmetic and rounding noise in practice)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape}"
    err = np.abs(a - b).max() / max(np.abs(b).max(), floor)
    assert err < rtol, f"{what}: error {err:.2e} (relative to {np.abs(b).max():.2e})"
    return err


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "numba":
        request.getfixturevalue("numba_kernels")
    return request.param


# ---------------------------------------------------------------- gradients and backends


@pytest.mark.parametrize("name", MODULES)
def test_gradcheck_passes(name, backend):
    module, x = build(name, backend)
    report = gradcheck(module, x)
    assert report.ok, str(report)
    assert {r.name for r in report.rows} == {"x", *module.params}


@pytest.mark.parametrize("name", MODULES)
def test_backends_agree_in_float64(name, backend):
    module, x = build(name, backend)
    expected, _ = build(name, "numpy")
    dy = np.random.default_rng(11).standard_normal(x.shape)
    y, dx, grads = run(module, x, dy)
    y0, dx0, grads0 = run(expected, x, dy)
    close(y, y0, 1e-10, "y")
    close(dx, dx0, 1e-10, "dx")
    assert grads.keys() == grads0.keys() == module.params.keys()
    for k in grads:
        close(grads[k], grads0[k], 1e-10, f"grads[{k}]")


@pytest.mark.parametrize("name", MODULES)
def test_float32_agrees_with_float64(name, backend):
    m64, x = build(name, backend)
    m32, _ = build(name, backend, dtype=np.float32)
    m32.load_state_dict(m64.state_dict())
    dy = np.random.default_rng(11).standard_normal(x.shape)
    y64, dx64, g64 = run(m64, x, dy)
    y32, dx32, g32 = run(m32, x.astype(np.float32), dy.astype(np.float32))
    assert y32.dtype == dx32.dtype == np.float32
    close(y32, y64, 2e-5, "y")
    close(dx32, dx64, 2e-5, "dx")
    for k in g64:
        assert g32[k].dtype == np.float32
        # a gradient that is zero in exact arithmetic is float32 noise: measure it against dx
        close(g32[k], g64[k], 2e-5, f"grads[{k}]", floor=np.abs(dx64).max())


@pytest.mark.parametrize("name", MODULES)
def test_state_dict_round_trip(name):
    module, x = build(name)
    sd = module.state_dict()
    fresh = MODULES[name][0](seed=123)
    fresh.load_state_dict(sd)
    np.testing.assert_array_equal(fresh.forward(x), module.forward(x))
    for v in sd.values():  # copies: writing into them changes nothing
        v[...] = 0
    np.testing.assert_array_equal(fresh.forward(x), module.forward(x))
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {
        k: v.shape for k, v in module.params.items()
    }


STATE_DICT_KEYS = {
    "position": {
        "query_conv.weight": (1, 8, 1, 1),
        "query_conv.bias": (1,),
        "key_conv.weight": (1, 8, 1, 1),
        "key_conv.bias": (1,),
        "value_conv.weight": (8, 8, 1, 1),
        "value_conv.bias": (8,),
        "gamma": (1,),
    },
    "channel": {"gamma": (1,)},
    "se": {"fc.0.weight": (2, 8), "fc.2.weight": (8, 2)},
    "covariance": {"value_conv.weight": (6, 6, 1, 1), "value_conv.bias": (6,), "gamma": (1,)},
}


@pytest.mark.parametrize("name", STATE_DICT_KEYS)
def test_state_dict_keys_and_default_init(name):
    module = MODULES[name][0](seed=0)
    sd = module.state_dict()
    assert {k: v.shape for k, v in sd.items()} == STATE_DICT_KEYS[name]
    if "gamma" in sd:
        assert sd["gamma"][0] == 0  # DANet / SAGAN: the module starts as the identity
        x = np.random.default_rng(0).standard_normal(MODULES[name][1])
        np.testing.assert_array_equal(module.forward(x), x)
    for k, v in sd.items():
        if k != "gamma":  # PyTorch's default: uniform in +-1/sqrt(fan_in), never all zero
            fan_in = v.shape[1] if v.ndim > 1 else sd[k.replace("bias", "weight")].shape[1]
            assert 0 < np.abs(v).max() <= 1 / np.sqrt(fan_in)
    assert not np.array_equal(
        MODULES[name][0](seed=1).state_dict().get("value_conv.weight", 0),
        MODULES[name][0](seed=2).state_dict().get("value_conv.weight", 1),
    )


# ---------------------------------------------------------------- what each module computes


def test_channel_attention_is_the_softmax_of_minus_the_energy():
    module, x = build("channel")
    module.forward(x)
    X = x.reshape(2, 6, -1)
    E = np.einsum("bin,bjn->bij", X, X)
    expected = np.exp(-E + E.min(axis=-1, keepdims=True))
    expected /= expected.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(module.attention, expected, rtol=1e-12, atol=1e-15)
    # each channel attends most to the channel least like it
    np.testing.assert_array_equal(module.attention.argmax(-1), E.argmin(-1))


@pytest.mark.parametrize("kind, oracle", [("covariance", np.cov), ("correlation", np.corrcoef)])
def test_covariance_energy_is_numpys_cov_of_the_pixels(kind, oracle, backend):
    module = minattn.CovarianceAttention(5, kind=kind, backend=backend)
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 4)) + np.linspace(0, 3, 12).reshape(
        1, 1, 3, 4
    )  # pixels with different means
    energy = module.energy(x)
    for b in range(2):
        np.testing.assert_allclose(energy[b], oracle(x[b].reshape(5, -1).T), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["covariance", "correlation"])
def test_covariance_attention_is_the_softmax_of_the_scaled_energy(name):
    module, x = build(name)
    y = module.forward(x)
    energy = module.energy(x) * module.scale
    attention = np.exp(energy - energy.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    np.testing.assert_allclose(module.attention, attention, rtol=1e-12)
    W, b = module.params["value_conv.weight"][:, :, 0, 0], module.params["value_conv.bias"]
    value = np.einsum("oc,bcn->bon", W, x.reshape(2, 6, -1)) + b[:, None]
    out = np.einsum("bcj,bij->bci", value, attention).reshape(x.shape)
    np.testing.assert_allclose(y, 0.7 * out + x, rtol=1e-12)


def test_correlation_ignores_the_scale_of_each_pixel():
    module, x = build("correlation")
    scaled = x * np.random.default_rng(1).uniform(0.5, 3.0, (2, 1, 3, 4))  # per pixel
    np.testing.assert_allclose(module.energy(scaled), module.energy(x), rtol=1e-12, atol=1e-14)


def test_squeeze_excitation_gates_each_channel():
    module, x = build("se")
    y = module.forward(x)
    s = module.gate
    assert s.shape == (2, 8) and ((s > 0) & (s < 1)).all()
    np.testing.assert_allclose(y, x * s[:, :, None, None], rtol=1e-15)
    z = x.mean(axis=(2, 3))
    hidden = np.maximum(z @ module.params["fc.0.weight"].T, 0)
    np.testing.assert_allclose(
        s, 1 / (1 + np.exp(-hidden @ module.params["fc.2.weight"].T)), rtol=1e-12
    )


def test_position_attention_maps_are_rows_of_the_attention(backend, request):
    module, x = build("position", backend)
    reference, _ = build("position", "numpy")
    reference.forward(x)
    queries = [(0, 0), (2, 3), (1, 2)]
    maps = module.attention_maps(x, queries)
    assert maps.shape == (2, 3, 3, 4)
    rows = [r * 4 + c for r, c in queries]
    np.testing.assert_allclose(maps.reshape(2, 3, 12), reference.attention[:, rows], rtol=1e-12)


def test_numba_never_forms_the_pixel_attention(numba_kernels):
    for name in ("position", "covariance"):
        module, x = build(name, "numba")
        module.forward(x)
        assert module.attention is None
        names = []
        module.forward(x, trace=lambda n, a, names=names: names.append(n))
        assert any("fused_attention_forward#1" in n for n in names)
        assert not any("softmax" in n for n in names)


# ---------------------------------------------------------------- the PyTorch originals


torch_shapes = [(1, 8, 3, 3), (2, 16, 4, 5), (2, 32, 6, 6)]


def shape_id(shape):
    return "x".join(map(str, shape))


def _torch():
    return pytest.importorskip("torch", reason=NO_TORCH)


def torch_compare(tmod, ours, x, rtol=1e-10):
    """Output, dx and every parameter gradient of the torch module and ours, on x."""
    torch = _torch()
    dy = np.random.default_rng(5).standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = tmod(xt)
    yt.backward(torch.tensor(dy))
    y = ours.forward(x)
    dx = ours.backward(dy)
    worst = close(y, yt.detach().numpy(), rtol, "output")
    worst = max(worst, close(dx, xt.grad.numpy(), rtol, "dx"))
    tparams = dict(tmod.named_parameters())
    assert set(tparams) == set(ours.grads)
    # the key bias's gradient is zero in exact arithmetic (a shift of every key adds a
    # constant to each row of energies, which the softmax ignores): what both sides hold
    # there is rounding noise, measured against the size of the module's gradients
    floor = max(1e-3, np.abs(dx).max())
    for k, p in tparams.items():
        worst = max(worst, close(ours.grads[k], p.grad.numpy(), rtol, f"grads[{k}]", floor))
    return worst


def torch_randomized(tmod, seed):
    torch = _torch()
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in tmod.named_parameters():
            p.uniform_(-0.6, 0.6)
            if name == "gamma":
                p.fill_(0.7)
    return tmod


def both_ways(make_torch, make_ours, x, seed=0):
    """torch's weights into ours, then ours (seeded, randomised) into torch."""
    torch = _torch()
    tmod = torch_randomized(make_torch().double(), seed)
    ours = make_ours()
    ours.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
    worst = torch_compare(tmod, ours, x)
    ours = random_params(make_ours(), seed + 1)
    tmod = make_torch().double()
    tmod.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    return max(worst, torch_compare(tmod, ours, x))


@pytest.mark.parametrize("shape", torch_shapes, ids=shape_id)
def test_position_attention_matches_danet(shape, backend):
    _torch()
    from originals import DANetPositionAttention

    if backend == "reference":  # the literal loops are slow: a corner of the map will do
        shape = (*shape[:2], min(shape[2], 4), min(shape[3], 5))
    x = np.random.default_rng(1).standard_normal(shape)
    C = shape[1]
    both_ways(
        lambda: DANetPositionAttention(C),
        lambda: minattn.PositionAttention(C, backend=backend),
        x,
    )


@pytest.mark.parametrize("shape", [(1, 4, 3, 3), *torch_shapes], ids=shape_id)
def test_channel_attention_matches_danet(shape, backend):
    _torch()
    from originals import DANetChannelAttention

    if backend == "reference":  # the literal loops are slow: a corner of the map will do
        shape = (*shape[:2], min(shape[2], 4), min(shape[3], 5))
    # scaled so the C x C softmax is not one-hot (energies grow with N), or the check is vacuous
    x = 0.3 * np.random.default_rng(1).standard_normal(shape)
    C = shape[1]
    both_ways(
        lambda: DANetChannelAttention(C),
        lambda: minattn.ChannelAttention(C, backend=backend),
        x,
    )


@pytest.mark.parametrize(
    "shape, reduction",
    [((2, 16, 4, 4), 4), ((1, 32, 3, 5), 16), ((3, 8, 2, 2), 8), ((2, 6, 3, 3), 5)],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"r{v}",
)
def test_squeeze_excitation_matches_senet(shape, reduction, backend):
    _torch()
    from originals import SELayer

    x = np.random.default_rng(1).standard_normal(shape)
    C = shape[1]
    both_ways(
        lambda: SELayer(C, reduction),
        lambda: minattn.SqueezeExcitation(C, reduction, backend=backend),
        x,
    )


def torch_covariance_attention(C, kind, scale):
    """Our CovarianceAttention written in torch (it has no original), with torch.cov /
    torch.corrcoef for the energy: autograd differentiates what we derived by hand."""
    torch = _torch()

    class TorchCovarianceAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.value_conv = torch.nn.Conv2d(C, C, kernel_size=1)
            self.gamma = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            B, _, H, W = x.shape
            pixels = x.view(B, C, -1)
            stat = torch.cov if kind == "covariance" else torch.corrcoef
            energy = torch.stack([stat(pixels[b].T) for b in range(B)])  # (B, N, N)
            attention = torch.softmax(scale * energy, dim=-1)
            value = self.value_conv(x).view(B, C, -1)
            out = torch.bmm(value, attention.transpose(1, 2)).view(B, C, H, W)
            return self.gamma * out + x

    return TorchCovarianceAttention()


@pytest.mark.parametrize("kind, scale", [("covariance", 1.0), ("correlation", 4.0)])
@pytest.mark.parametrize("shape", [(1, 3, 3, 3), (2, 8, 4, 5), (2, 16, 6, 6)], ids=str)
def test_covariance_attention_matches_torch_cov(shape, kind, scale, backend):
    if backend == "reference":  # the literal loops are slow: a corner of the map will do
        shape = (*shape[:2], min(shape[2], 4), min(shape[3], 5))
    x = np.random.default_rng(1).standard_normal(shape)
    C = shape[1]
    both_ways(
        lambda: torch_covariance_attention(C, kind, scale),
        lambda: minattn.CovarianceAttention(C, kind=kind, scale=scale, backend=backend),
        x,
    )


# ---------------------------------------------------------------- compare_steps


def steps_used(name, backend):
    """The step functions a module's forward and backward call (unfused), in order."""
    module, x = build(name, backend)
    module.ops = ops_for(backend, fused=False)
    names = []

    def record(n, a):
        if "#" in n:  # "label (function#k)" or "function#k[.i]"
            names.append(n.rsplit("(", 1)[-1].split("#")[0])

    y = module.forward(x, trace=record)
    module.backward(np.ones_like(y), trace=record)
    return list(dict.fromkeys(names))


def slipped(f, forward):
    """f with a 0.1% error (plus a little, for arrays of zeros) in its first output array."""

    def wrong(*args, **kwargs):
        result = f(*args, **kwargs)
        if forward:
            out, cache = result
            return out * 1.001 + 1e-6, cache
        if isinstance(result, tuple):
            return (result[0] * 1.001 + 1e-6, *result[1:])
        return result * 1.001 + 1e-6

    return wrong


@pytest.mark.parametrize("name", MODULES)
def test_compare_steps_with_nothing_replaced_is_ok(name, backend):
    module, x = build(name, backend)
    report = compare_steps(module, x)
    assert report.ok and report.first_mismatch is None, str(report)


SLIP_CASES = [(name, step) for name in MODULES for step in steps_used(name, "numpy")]


@pytest.mark.parametrize("name, step", SLIP_CASES, ids=[f"{n}-{s}" for n, s in SLIP_CASES])
@pytest.mark.parametrize("slip_backend", FAST_BACKENDS)
def test_compare_steps_names_the_step_with_a_slip(name, step, slip_backend, request):
    if slip_backend == "numba":
        request.getfixturevalue("numba_kernels")
    module, x = build(name, slip_backend)
    f = getattr(ops_for(slip_backend, fused=False), step)
    report = compare_steps(module, x, replace={step: slipped(f, step.endswith("_forward"))})
    assert not report.ok
    first = report.first_mismatch
    assert first.startswith(step + "#") or f"({step}#" in first, str(report)


def test_every_family_step_is_used_by_some_module():
    from minattn import layers

    used = {s for name in MODULES for s in steps_used(name, "numpy")}
    mine = {n for n in vars(layers) if n.endswith(("_forward", "_backward"))}
    assert mine <= used, sorted(mine - used)


# ---------------------------------------------------------------- no mutation, one base


@pytest.mark.parametrize("name", MODULES)
def test_inputs_are_never_modified(name, backend):
    module, x = build(name, backend)
    dy = np.random.default_rng(2).standard_normal(x.shape)
    x0, dy0, sd0 = x.copy(), dy.copy(), module.state_dict()
    y = module.forward(x)
    module.backward(dy)
    y[...] = 0  # the caller owns y: writing into it must not reach the cache
    module.backward(dy)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dy, dy0)
    for k, v in module.state_dict().items():
        np.testing.assert_array_equal(v, sd0[k])


def test_modules_are_on_the_shared_base():
    from minattn.modules.base import Module

    for name in MODULES:
        module = MODULES[name][0]()
        assert isinstance(module, Module)
        assert type(module).__name__ in repr(module)
