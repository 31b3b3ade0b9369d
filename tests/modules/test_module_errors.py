"""Every bad input: a ValueError or TypeError naming the argument, what came, what was expected."""

import subprocess
import sys

import numpy as np
import pytest

from minattn import BAM, gradcheck, numerical_gradient, resize, steps
from minattn.apps.cli import main


def x_of(shape=(1, 16, 8, 8), dtype=np.float64):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


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


def test_gradcheck_errors():
    bam = BAM(16, 2)
    with pytest.raises(TypeError, match="module must have forward.*no 'forward'"):
        gradcheck(object(), x_of())
    with pytest.raises(ValueError, match="eps must be a positive number, got 0"):
        gradcheck(bam, x_of(), eps=0)
    with pytest.raises(ValueError, match="max_elements must be >= 1, got 0"):
        gradcheck(bam, x_of(), max_elements=0)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        gradcheck(bam, [1.0])
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        numerical_gradient(np.sum, 3.0)


STEP_ERRORS = {
    "energy Ck mismatch": (
        lambda: steps.energy_forward(np.zeros((2, 3, 5)), np.zeros((2, 4, 5))),
        ["key", "(2, 4, 5)", "Ck=3"],
    ),
    "energy not 3-D": (
        lambda: steps.energy_forward(np.zeros((3, 5)), np.zeros((3, 5))),
        ["query", "(B, Ck, M)", "2-D"],
    ),
    "conv weight mismatch": (
        lambda: steps.conv1x1_forward(np.zeros((1, 3, 2, 2)), np.zeros((4, 2, 1, 1)), np.zeros(4)),
        ["weight", "(4, 2, 1, 1)", "C_in=3"],
    ),
    "conv weight not 1x1": (
        lambda: steps.conv1x1_forward(np.zeros((1, 3, 2, 2)), np.zeros((4, 3, 3, 3)), np.zeros(4)),
        ["weight", "(C_out, C_in, 1, 1)"],
    ),
    "conv bias mismatch": (
        lambda: steps.conv1x1_forward(np.zeros((1, 3, 2, 2)), np.zeros((4, 3, 1, 1)), np.zeros(3)),
        ["bias", "(3,)", "C_out=4"],
    ),
    "weighted sum N mismatch": (
        lambda: steps.weighted_sum_forward(np.zeros((1, 3, 5)), np.zeros((1, 4, 4))),
        ["attention", "(1, 4, 4)", "N=5"],
    ),
    "unflatten wrong h*w": (
        lambda: steps.unflatten_forward(np.zeros((1, 3, 6)), 2, 2),
        ["N=6", "h * w", "4"],
    ),
    "residual shapes": (
        lambda: steps.residual_forward(np.zeros((1, 3, 4, 4)), np.zeros((1, 3, 2, 2))),
        ["f", "(1, 3, 2, 2)", "H=4"],
    ),
    "softmax list": (lambda: steps.softmax_forward([[[1.0]]]), ["energy", "numpy.ndarray", "list"]),
    "pool not divisible": (
        lambda: resize.avg_pool_forward(np.zeros((1, 1, 5, 4)), 2),
        ["H=5", "ds=2"],
    ),
    "upsample mode": (
        lambda: resize.upsample_forward(np.zeros((1, 1, 2, 2)), 2, "area"),
        ["mode", "'area'"],
    ),
    "upsample ds": (lambda: resize.upsample_forward(np.zeros((1, 1, 2, 2)), 0), ["ds", "0"]),
}


@pytest.mark.parametrize("case", STEP_ERRORS)
def test_step_function_errors(case):
    call, words = STEP_ERRORS[case]
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    for w in words:
        assert w in str(info.value), f"{w!r} not in: {info.value}"


def test_step_backward_checks_dout():
    _, cache = steps.energy_forward(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"dout.*\(1, 3, 4\)"):
        steps.energy_backward(np.zeros((1, 3, 4)), cache)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["gradcheck", "--ds", "0"], ["ds must be >= 1, got 0"]),
        (["gradcheck", "--channels", "4"], ["in_dim=4", "key_channels"]),
        (["gradcheck", "--backend", "gpu"], ["backend", "'gpu'"]),
        (["demo", "--ds", "3"], ["H=128", "ds=3", "126 or 129"]),
        (["demo", "--photo", "lena"], ["photo must be one of", "'lena'"]),
        (
            ["demo", "--out", "/nonexistent-dir/x.png"],
            ["out=", "/nonexistent-dir", "does not exist"],
        ),
        (["demo", "--size", "0"], ["size"]),
    ],
)
def test_command_line_errors_are_one_line_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"minattn {argv[0]}: error:")
    for w in words:
        assert w in err, f"{w!r} not in: {err}"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["gradcheck", "--ds", "two"], ["invalid int value"]),  # argparse's own error
        (["gradcheck", "--height", "7"], ["not a multiple of ds=2"]),  # minattn's
    ],
)
def test_command_line_errors_in_a_real_process(argv, words):
    result = subprocess.run(
        [sys.executable, "-m", "minattn", *argv], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in result.stderr
