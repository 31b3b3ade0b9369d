"""Every module's bad input: a ValueError or TypeError naming the argument, what came, what
was expected. Bad construction, bad input, backward before forward, a bad state_dict, bad
attention_maps queries and overflow, for BAM, the module base, PositionAttention,
ChannelAttention, SqueezeExcitation, CovarianceAttention, and STANet's PAM and CDSA."""

import numpy as np
import pytest
from helpers import MODULES, build, rand, random_cdsa, random_module, random_pam

import minattn
from minattn import BAM
from minattn.modules.cdsa import CDSA
from minattn.modules.pam import PAM

# ---------------------------------------------------------------- BAM


def x_of(shape=(1, 16, 8, 8), dtype=np.float64):
    return rand(*shape).astype(dtype)


# (constructor kwargs, exception, words the message must contain)
BAD_CONSTRUCTORS = {
    "in_dim < 8, no key_channels": (dict(in_dim=4), ValueError, ["in_dim=4", "key_channels"]),
    "in_dim zero": (dict(in_dim=0, key_channels=1), ValueError, ["in_dim", ">= 1", "0"]),
    "in_dim negative": (dict(in_dim=-8), ValueError, ["in_dim", "-8"]),
    "in_dim float": (dict(in_dim=16.0), TypeError, ["in_dim", "int", "float"]),
    "ds zero": (dict(in_dim=16, ds=0), ValueError, ["ds", ">= 1", "0"]),
    "ds negative": (dict(in_dim=16, ds=-2), ValueError, ["ds", "-2"]),
    "ds bool": (dict(in_dim=16, ds=True), TypeError, ["ds", "bool"]),
    "key_channels zero": (dict(in_dim=16, key_channels=0), ValueError, ["key_channels", "0"]),
    "unknown backend": (
        dict(in_dim=16, backend="cuda"),
        ValueError,
        ["backend", "'cuda'", "numba"],
    ),
    "unknown interpolation": (
        dict(in_dim=16, interpolation="bicubic"),
        ValueError,
        ["interpolation", "'bicubic'", "bilinear"],
    ),
    "integer dtype": (dict(in_dim=16, dtype=np.int32), TypeError, ["dtype", "int32", "float64"]),
    "complex dtype": (dict(in_dim=16, dtype=np.complex128), TypeError, ["dtype", "complex128"]),
    "float16 dtype": (dict(in_dim=16, dtype=np.float16), TypeError, ["dtype", "float16"]),
    "use_gamma not bool": (dict(in_dim=16, use_gamma="yes"), TypeError, ["use_gamma", "'yes'"]),
    "seed string": (dict(in_dim=16, seed="abc"), TypeError, ["seed", "'abc'"]),
}


@pytest.mark.parametrize("case", BAD_CONSTRUCTORS)
def test_constructor_errors(case):
    kwargs, exc, words = BAD_CONSTRUCTORS[case]
    with pytest.raises(exc) as info:
        BAM(**kwargs)
    for w in words:
        assert w in str(info.value), f"{w!r} not in: {info.value}"


def _nan():
    x = x_of()
    x[0, 3, 2, 1] = np.nan
    return x


def _inf():
    x = x_of()
    x[0, 0, 0, 0] = -np.inf
    return x


# (input, exception, words); the module is BAM(16, ds=2, dtype=float64)
BAD_INPUTS = {
    "3-D": (x_of((16, 8, 8)), ValueError, ["x", "4-D", "(16, 8, 8)"]),
    "5-D": (x_of((1, 1, 16, 8, 8)), ValueError, ["x", "4-D"]),
    "wrong channels": (
        x_of((1, 8, 8, 8)),
        ValueError,
        ["8 channels", "in_dim=16", "(B, 16, H, W)"],
    ),
    "H not multiple of ds": (x_of((1, 16, 7, 8)), ValueError, ["H=7", "ds=2", "6 or 8", "crop"]),
    "W not multiple of ds": (x_of((1, 16, 8, 9)), ValueError, ["W=9", "ds=2", "8 or 10"]),
    "H smaller than ds": (x_of((1, 16, 1, 8)), ValueError, ["H=1", "ds=2", "H=2"]),
    "empty batch": (x_of((0, 16, 8, 8)), ValueError, ["x", "empty", "(0, 16, 8, 8)"]),
    "list": ([[[[0.0]]]], TypeError, ["x", "numpy.ndarray", "list", "np.asarray"]),
    "integer image": (np.zeros((1, 16, 8, 8), np.uint8), TypeError, ["x", "uint8", "astype"]),
    "bool": (np.zeros((1, 16, 8, 8), bool), TypeError, ["x", "bool"]),
    "complex": (np.zeros((1, 16, 8, 8), complex), TypeError, ["x", "complex"]),
    "float32 into float64 module": (
        x_of(dtype=np.float32),
        TypeError,
        ["x", "float32", "float64", "astype"],
    ),
    "NaN": (_nan(), ValueError, ["x", "1 NaN", "finite"]),
    "infinity": (_inf(), ValueError, ["x", "1 infinite", "finite"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_forward_errors(case):
    x, exc, words = BAD_INPUTS[case]
    bam = BAM(16, 2, seed=0)
    with pytest.raises(exc) as info:
        bam.forward(x)
    for w in words:
        assert w in str(info.value), f"{w!r} not in: {info.value}"
    with pytest.raises(exc):  # attention_maps checks x the same way
        bam.attention_maps(x, [(0, 0)])


def test_backward_before_forward():
    with pytest.raises(ValueError, match=r"forward\(x\) first"):
        BAM(16, 2).backward(x_of())


def test_backward_with_another_shape():
    bam = BAM(16, 2)
    bam.forward(x_of())
    with pytest.raises(ValueError, match=r"dy has shape \(1, 16, 4, 8\), expected \(1, 16, 8, 8\)"):
        bam.backward(x_of((1, 16, 4, 8)))
    with pytest.raises(TypeError, match="dy has dtype float32"):
        bam.backward(x_of(dtype=np.float32))
    dy = x_of()
    dy[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="dy contains 1 NaN"):
        bam.backward(dy)


def test_load_state_dict_clears_the_cache():
    bam = BAM(16, 2)
    bam.forward(x_of())
    bam.load_state_dict(bam.state_dict())
    with pytest.raises(ValueError, match="forward"):
        bam.backward(x_of())


def test_state_dict_missing_extra_and_misshapen():
    bam = BAM(16, 2, seed=0)
    sd = bam.state_dict()
    del sd["gamma"]
    with pytest.raises(ValueError, match=r"missing \['gamma'\]"):
        bam.load_state_dict(sd)
    sd = {**bam.state_dict(), "pool.weight": np.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected \['pool.weight'\]"):
        bam.load_state_dict(sd)
    sd = bam.state_dict()
    sd["value_conv.bias"] = np.zeros(15)
    with pytest.raises(ValueError, match=r"value_conv.bias.*\(15,\), expected \(16,\)"):
        bam.load_state_dict(sd)
    with pytest.raises(TypeError, match="state_dict must be a dict"):
        bam.load_state_dict([("gamma", np.zeros(1))])


def test_state_dict_of_another_in_dim():
    with pytest.raises(
        ValueError, match=r"query_conv.weight.*\(4, 32, 1, 1\), expected \(2, 16, 1, 1\)"
    ):
        BAM(16, 2).load_state_dict(BAM(32, 2).state_dict())


def test_state_dict_with_nan_or_wrong_type():
    bam = BAM(16, 2)
    sd = bam.state_dict()
    sd["gamma"] = np.array([np.nan])
    with pytest.raises(ValueError, match=r"state_dict\['gamma'\] contains 1 NaN"):
        bam.load_state_dict(sd)
    sd["gamma"] = np.array(["a"])
    with pytest.raises(TypeError, match=r"state_dict\['gamma'\].*float"):
        bam.load_state_dict(sd)


def test_state_dict_failure_leaves_the_module_unchanged():
    bam = BAM(16, 2, seed=0)
    before = bam.state_dict()
    sd = BAM(16, 2, seed=1).state_dict()
    sd["gamma"] = np.zeros(2)
    with pytest.raises(ValueError):
        bam.load_state_dict(sd)
    for k, v in bam.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_attention_maps_bad_queries():
    bam = BAM(16, 2)
    with pytest.raises(ValueError, match=r"\(row=8, col=0\) lies outside .* H=8, W=8"):
        bam.attention_maps(x_of(), [(8, 0)])
    with pytest.raises(ValueError, match="at least one"):
        bam.attention_maps(x_of(), [])
    with pytest.raises(TypeError, match=r"\(row, col\) pairs"):
        bam.attention_maps(x_of(), [3])


def test_overflow_is_an_error_not_a_nan():
    bam = BAM(16, 2, seed=0, dtype=np.float32)
    with pytest.raises(ValueError, match="not finite.*overflows float32.*float64"):
        bam.forward(x_of(dtype=np.float32) * np.float32(1e20))


# ---------------------------------------------------------------- the module base, through BAM


def test_load_state_dict_changes_nothing_on_failure():
    bam = random_module(8, 2)
    before = bam.state_dict()
    sd = random_module(8, 2, seed=5).state_dict()
    sd["value_conv.bias"] = np.zeros(3)
    with pytest.raises(ValueError, match="value_conv.bias"):
        bam.load_state_dict(sd)
    for k, v in before.items():
        np.testing.assert_array_equal(bam.params[k], v)


def test_a_float64_parameter_in_a_float32_module_is_an_error_not_a_silent_upcast():
    bam = random_module(8, 2, dtype=np.float32)
    bam.params["gamma"] = np.array([0.5])  # float64, rebinding the entry
    with pytest.raises(TypeError, match=r"params\['gamma'\] is float64.*float32"):
        bam.forward(rand(2, 8, 4, 6, seed=3).astype(np.float32))


# ---------------------------------------------------------------- DANet, SE and covariance


@pytest.mark.parametrize("name", MODULES)
def test_bad_input_raises_a_clear_error(name):
    module, x = build(name)
    C = x.shape[1]
    with pytest.raises(ValueError, match=r"x must be 4-D, got shape"):
        module.forward(x[0])
    with pytest.raises(ValueError, match=rf"x has {C + 1} channels .* expected shape \(B, {C}, H"):
        module.forward(np.zeros((1, C + 1, 3, 3)))
    with pytest.raises(TypeError, match="x must be a float32 or float64 array, got non-floating"):
        module.forward(np.ones(x.shape, dtype=np.int64))
    with pytest.raises(TypeError, match="x has dtype float32 but the module computes in float64"):
        module.forward(x.astype(np.float32))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x contains 1 NaN"):
        module.forward(bad)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        module.forward(x.tolist())
    fresh = MODULES[name][0]()
    with pytest.raises(ValueError, match=r"call forward\(x\) first"):
        fresh.backward(x)
    module.forward(x)
    with pytest.raises(ValueError, match="dy has shape"):
        module.backward(x[:1])
    with pytest.raises(ValueError, match="state_dict keys do not match: missing"):
        module.load_state_dict({})


def test_danet_se_covariance_constructor_errors():
    with pytest.raises(ValueError, match=r"in_dim=7 gives in_dim // 8 = 0 .*key_channels"):
        minattn.PositionAttention(7)
    assert minattn.PositionAttention(7, key_channels=2).key_channels == 2
    with pytest.raises(ValueError, match=r"reduction=16 is larger than channels=8.*reduction <= 8"):
        minattn.SqueezeExcitation(8)
    with pytest.raises(ValueError, match="reduction must be >= 1, got 0"):
        minattn.SqueezeExcitation(8, reduction=0)
    with pytest.raises(TypeError, match="reduction must be an int, got float 2.0"):
        minattn.SqueezeExcitation(8, reduction=2.0)
    assert minattn.SqueezeExcitation(8, reduction=8).hidden == 1
    with pytest.raises(ValueError, match="in_dim must be >= 2, got 1"):
        minattn.CovarianceAttention(1)
    with pytest.raises(ValueError, match="kind must be one of 'covariance', 'correlation'"):
        minattn.CovarianceAttention(4, kind="cov")
    for scale in (0.0, -1.0, float("nan"), "2", True):
        with pytest.raises(ValueError, match="scale must be a finite number > 0"):
            minattn.CovarianceAttention(4, scale=scale)
    for cls in (minattn.PositionAttention, minattn.ChannelAttention, minattn.CovarianceAttention):
        with pytest.raises(ValueError, match="backend must be one of"):
            cls(8, backend="cuda")
        with pytest.raises(TypeError, match="dtype must be np.float32 or np.float64"):
            cls(8, dtype=np.int32)
        with pytest.raises(TypeError, match="seed must be None"):
            cls(8, seed=-1)


# ---------------------------------------------------------------- STANet's PAM and CDSA


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: PAM(8, 16), ValueError, r"in_channels=8 and out_channels=16 differ.*STANet"),
        (lambda: PAM(4, 4), ValueError, r"out_channels // 8 = 0.*key_channels"),
        (lambda: PAM(8, 8, sizes=()), ValueError, r"sizes must name at least one scale"),
        (lambda: PAM(8, 8, sizes=2), TypeError, r"sizes must be a list or tuple of ints"),
        (lambda: PAM(8, 8, sizes=(1, 0)), ValueError, r"each of sizes must be >= 1, got 0"),
        (lambda: PAM(8, 8, ds=0), ValueError, r"ds must be >= 1, got 0"),
        (lambda: PAM(8, 8, key_channels=0), ValueError, r"key_channels must be >= 1"),
        (lambda: PAM(8, 8, backend="cuda"), ValueError, r"backend must be one of"),
        (lambda: PAM(8, 8, dtype=np.int32), TypeError, r"dtype must be np.float32 or np.float64"),
        (lambda: CDSA(8, mode="CAM"), ValueError, r"mode must be one of 'BAM', 'PAM'; got 'CAM'"),
        (lambda: CDSA(4, mode="BAM"), ValueError, r"in_dim=4 gives in_dim // 8 = 0"),
        (lambda: CDSA(4, mode="PAM"), ValueError, r"out_channels // 8 = 0"),
        (lambda: CDSA(8, ds=0), ValueError, r"ds must be >= 1, got 0"),
        (lambda: CDSA(8.0), TypeError, r"in_c must be an int"),
    ],
)
def test_bad_construction(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "module, x, error, match",
    [
        (
            lambda: PAM(8, 8),
            rand(1, 8, 4, 7),
            ValueError,
            r"x has odd width 7.*image pair side by side",
        ),
        (lambda: PAM(8, 8), rand(1, 6, 4, 8), ValueError, r"x has 6 channels.*built for 8"),
        (lambda: PAM(8, 8), rand(8, 4, 8), ValueError, r"x must be 4-D"),
        (
            lambda: PAM(8, 8, (1, 4)),
            rand(1, 8, 6, 16),
            ValueError,
            r"x has height H=6 .* not a multiple of 4: at scale 4 .* equal regions",
        ),
        (
            lambda: PAM(8, 8, (1, 2)),
            rand(1, 8, 4, 6),
            ValueError,
            r"x has width W of each image=3 .* not a multiple of 2",
        ),
        (
            lambda: PAM(8, 8, (1,), 2),
            rand(1, 8, 4, 6),
            ValueError,
            r"width W of each image=3 .* not a multiple of 2: the map pooled by ds=2",
        ),
        (lambda: PAM(8, 8, (2,), 2), rand(1, 8, 6, 8), ValueError, r"height H=6 .* multiple of 4"),
        (lambda: PAM(8, 8), rand(1, 8, 4, 8).astype(np.float32), TypeError, r"x has dtype float32"),
        (lambda: PAM(8, 8), np.full((1, 8, 2, 2), np.nan), ValueError, r"x contains 32 NaN"),
        (lambda: PAM(8, 8), rand(1, 8, 4, 8).astype(int), TypeError, r"non-floating"),
    ],
)
def test_bad_input_to_pam(module, x, error, match):
    with pytest.raises(error, match=match):
        module().forward(x)


@pytest.mark.parametrize(
    "module, x1, x2, error, match",
    [
        (
            lambda: CDSA(8),
            rand(1, 8, 4, 4),
            rand(1, 8, 4, 5),
            ValueError,
            r"x1 has shape \(1, 8, 4, 4\) and x2 has shape \(1, 8, 4, 5\).*one shape",
        ),
        (lambda: CDSA(8), rand(1, 8, 4, 4), rand(2, 8, 4, 4), ValueError, r"must have one shape"),
        (lambda: CDSA(8), rand(1, 6, 4, 4), rand(1, 6, 4, 4), ValueError, r"6 channels.*in_c=8"),
        (lambda: CDSA(8), rand(8, 4, 4), rand(8, 4, 4), ValueError, r"x1 must be 4-D"),
        (
            lambda: CDSA(8),
            rand(1, 8, 4, 4),
            np.ones((1, 8, 4, 4), int),
            TypeError,
            r"x2 must be a float",
        ),
        (lambda: CDSA(8), rand(1, 8, 4, 4), [[1.0]], TypeError, r"x2 must be a numpy.ndarray"),
        (
            lambda: CDSA(8, 2, "BAM"),
            rand(1, 8, 3, 4),
            rand(1, 8, 3, 4),
            ValueError,
            r"height H=3 .* not a multiple of ds=2",
        ),
        (
            lambda: CDSA(8, 4, "BAM"),
            rand(1, 8, 4, 3),
            rand(1, 8, 4, 3),
            ValueError,
            r"pair width 2W=6 .* not a multiple of ds=4",
        ),
        (
            lambda: CDSA(8, 1, "PAM"),
            rand(1, 8, 8, 4),
            rand(1, 8, 8, 4),
            ValueError,
            r"x1 and x2 have width W of each image=4 .* not a multiple of 8: at scale 8",
        ),
        (
            lambda: CDSA(8, 2, "PAM"),
            rand(1, 8, 8, 16),
            rand(1, 8, 8, 16),
            ValueError,
            r"height H=8 .* not a multiple of 16",
        ),
        (
            lambda: CDSA(8),
            rand(1, 8, 2, 2),
            np.full((1, 8, 2, 2), np.inf),
            ValueError,
            r"x2 contains 0 NaN and 32 infinite",
        ),
        (
            lambda: CDSA(8),
            rand(1, 8, 2, 2),
            rand(1, 8, 2, 2).astype(complex),
            TypeError,
            r"x2 must be a float32 or float64 array, got complex",
        ),
        (
            lambda: CDSA(8, dtype=np.float32),
            rand(1, 8, 2, 2).astype(np.float32),
            rand(1, 8, 2, 2),
            TypeError,
            r"x2 has dtype float64 but the module computes in float32",
        ),
    ],
)
def test_bad_input_to_cdsa(module, x1, x2, error, match):
    with pytest.raises(error, match=match):
        module().forward(x1, x2)


def test_bad_backward_and_state_dict():
    pam = random_pam()
    with pytest.raises(ValueError, match=r"backward\(\) needs the cache.*forward\(x\)"):
        pam.backward(rand(2, 8, 2, 4))
    pam.forward(rand(2, 8, 2, 4))
    with pytest.raises(ValueError, match=r"dy has shape \(2, 8, 2, 2\), expected \(2, 8, 2, 4\)"):
        pam.backward(rand(2, 8, 2, 2))
    cdsa = random_cdsa(8, 1, "BAM")
    cdsa.forward(rand(1, 8, 2, 2), rand(1, 8, 2, 2))
    with pytest.raises(TypeError, match=r"takes 2 gradient\(s\) \(dy1, dy2\), got 1"):
        cdsa.backward(rand(1, 8, 2, 2))
    with pytest.raises(TypeError, match=r"takes 2 input\(s\) \(x1, x2\), got 1"):
        cdsa.forward(rand(1, 8, 2, 4))
    with pytest.raises(ValueError, match=r"dy2 has shape \(1, 8, 2, 4\), expected \(1, 8, 2, 2\)"):
        cdsa.backward(rand(1, 8, 2, 2), rand(1, 8, 2, 4))
    with pytest.raises(ValueError, match=r"backend must be one of"):
        CDSA(8, backend="torch")
    sd = pam.state_dict()
    del sd["stages.1.f_key.1.running_var"]
    with pytest.raises(ValueError, match=r"missing \['stages.1.f_key.1.running_var'\]"):
        pam.load_state_dict(sd)
    sd = pam.state_dict()
    sd["stages.0.f_value.bias"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"state_dict\['stages.0.f_value.bias'\] has shape \(3,\)"):
        pam.load_state_dict(sd)
    sd = pam.state_dict()
    sd["stages.0.extra"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected \['stages.0.extra'\]"):
        pam.load_state_dict(sd)
