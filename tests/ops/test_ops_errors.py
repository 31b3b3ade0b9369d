"""Every step function's bad input (steps, resize, layers, batchnorm, regions): a ValueError or
TypeError naming the argument, what came and what was expected; every backward refusing a dout
of the wrong shape."""

import numpy as np
import pytest
from helpers import bn_args, rand

from minattn import batchnorm, layers, regions, resize, steps

# ---------------------------------------------------------------- steps and resize

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


# ---------------------------------------------------------------- the family's layers


LAYER_ERRORS = [
    ("channel_energy_forward", dict(x=rand(2, 3, 4, 5)), "x must have shape (B, C, N)"),
    ("rowmax_minus_forward", dict(energy=rand(4, 4)), "energy must have shape"),
    (
        "channel_weighted_sum_forward",
        dict(attention=rand(2, 3, 3), value=rand(2, 4, 6)),
        "value has shape (2, 4, 6) but must have shape (B, C, N) with C=3",
    ),
    (
        "channel_weighted_sum_forward",
        dict(attention=rand(2, 3, 4), value=rand(2, 3, 6)),
        "attention has shape (2, 3, 4) but must have shape (B, C, C) with C=3",
    ),
    ("global_avg_pool_forward", dict(x=rand(2, 3, 4)), "x must have shape (B, C, H, W)"),
    (
        "linear_forward",
        dict(x=rand(3, 5), weight=rand(5, 4)),
        "weight has shape (5, 4) but must have shape (F_out, F_in) with F_in=5",
    ),
    (
        "linear_forward",
        dict(x=rand(3, 5), weight=rand(4, 5), bias=rand(5)),
        "bias has shape (5,) but must have shape (F_out) with F_out=4",
    ),
    (
        "channel_gate_forward",
        dict(x=rand(2, 3, 4, 4), gate=rand(2, 4)),
        "gate has shape (2, 4) but must have shape (B, C) with C=3",
    ),
    ("channel_gate_forward", dict(x=rand(2, 3, 4, 4), gate=rand(2, 3, 1)), "gate must have shape"),
    ("centre_forward", dict(x=rand(2, 3)), "x must have shape (B, C, N)"),
    ("unit_norm_forward", dict(x=rand(2, 3, 4, 4)), "x must have shape (B, C, N)"),
]


@pytest.mark.parametrize("name, args, message", LAYER_ERRORS, ids=[b[0] for b in LAYER_ERRORS])
def test_layers_bad_shapes_raise_a_clear_error(name, args, message):
    with pytest.raises(ValueError) as err:
        getattr(layers, name)(**args)
    assert message in str(err.value)


def test_relu_and_sigmoid_refuse_a_list():
    for f in (layers.relu_forward, layers.sigmoid_forward):
        with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
            f([1.0, -1.0])


# step -> (the arguments of a forward that works, a dout of the wrong shape for its output)
LAYER_BAD_DOUTS = {
    "channel_energy": (dict(x=rand(2, 4, 7)), rand(2, 4, 5)),
    "rowmax_minus": (dict(energy=rand(2, 5, 5)), rand(2, 5, 4)),
    "channel_weighted_sum": (
        dict(attention=rand(2, 4, 4), value=rand(2, 4, 6, seed=1)),
        rand(2, 4, 5),
    ),
    "global_avg_pool": (dict(x=rand(2, 3, 4, 5)), rand(2, 4)),
    "linear": (dict(x=rand(3, 5), weight=rand(4, 5, seed=1)), rand(3, 3)),
    "relu": (dict(x=rand(3, 7)), rand(7, 3)),
    "sigmoid": (dict(x=rand(3, 7)), rand(3, 7, 1)),
    "channel_gate": (dict(x=rand(2, 3, 4, 5), gate=rand(2, 3, seed=1)), rand(2, 3, 5, 4)),
    "centre": (dict(x=rand(2, 5, 6)), rand(2, 6, 5)),
    "unit_norm": (dict(x=rand(2, 5, 6)), rand(2, 5, 7)),
}


@pytest.mark.parametrize("case", LAYER_BAD_DOUTS)
def test_layers_backward_refuses_a_dout_of_the_wrong_shape(case):
    args, bad_dout = LAYER_BAD_DOUTS[case]
    _, cache = getattr(layers, f"{case}_forward")(**args)
    with pytest.raises(ValueError, match="dout"):
        getattr(layers, f"{case}_backward")(bad_dout, cache)


# ---------------------------------------------------------------- BatchNorm2d


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(x=np.zeros((2, 3, 4))), r"x must have shape \(B, C, H, W\)"),
        (dict(weight=np.ones(4)), r"weight has shape \(4,\) but must have shape \(C\) with C=3"),
        (dict(bias=np.ones((3, 1))), r"bias must have shape \(C\)"),
        (dict(running_mean=np.ones(2)), r"running_mean has shape \(2,\)"),
        (dict(running_var=np.ones(5)), r"running_var has shape \(5,\)"),
        (dict(x=[[[[1.0]]]]), r"x must be a numpy.ndarray"),
    ],
)
def test_batchnorm_bad_shapes_are_named(change, match):
    args = {**bn_args((2, 3, 2, 2)), **change}
    with pytest.raises((ValueError, TypeError), match=match):
        batchnorm.batchnorm_forward(**args)


def test_batchnorm_one_value_per_channel_cannot_train():
    args = bn_args((1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3, 1, 1\)"):
        batchnorm.batchnorm_forward(**args, training=True)
    batchnorm.batchnorm_forward(**args, training=False)  # evaluation needs no batch statistics


def test_batchnorm_backward_checks_dout_shape():
    _, cache = batchnorm.batchnorm_forward(**bn_args((2, 3, 2, 2)))
    with pytest.raises(ValueError, match="dout has shape"):
        batchnorm.batchnorm_backward(np.ones((2, 3, 2, 3)), cache)


# ---------------------------------------------------------------- pairs and regions


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: regions.pair_concat_forward(rand(2, 3, 4, 4), rand(2, 3, 4, 5)),
            r"x2 has shape \(2, 3, 4, 5\) but must have shape \(B, C, H, W\) with W=4",
        ),
        (
            lambda: regions.pair_concat_forward(rand(2, 3, 4, 4), rand(1, 3, 4, 4)),
            r"x2 has shape \(1, 3, 4, 4\).*B=2",
        ),
        (lambda: regions.pair_concat_forward(rand(3, 4, 4), rand(3, 4, 4)), r"x1 must have shape"),
        (lambda: regions.pair_split_forward(rand(1, 2, 3, 5)), r"x has odd width 5"),
        (lambda: regions.region_split_forward(rand(1, 2, 4, 7), 1), r"x has odd width 7"),
        (
            lambda: regions.region_split_forward(rand(1, 2, 6, 8), 4),
            r"x has height 6 .* scale=4 does not divide",
        ),
        (
            lambda: regions.region_split_forward(rand(1, 2, 4, 12), 4),
            r"x has width of each image 6 .* scale=4 does not divide",
        ),
        (lambda: regions.region_split_forward(rand(1, 2, 4, 8), 0), r"scale must be >= 1, got 0"),
        (lambda: regions.region_split_forward(rand(1, 2, 4, 8), 2.0), r"scale must be an int"),
        (
            lambda: regions.region_merge_forward(rand(8, 3, 8), 2, 4, 12),
            r"regions has shape \(8, 3, 8\).*\(k \* 4, C, 12\)",
        ),
        (
            lambda: regions.region_merge_forward(rand(7, 3, 8), 2, 4, 8),
            r"regions has shape \(7, 3, 8\)",
        ),
        (lambda: regions.region_merge_forward(rand(8, 3, 8), 2, 4, 9), r"width=9 must split"),
        (
            lambda: regions.concat_channels_forward([rand(2, 3, 2, 2), rand(2, 1, 2, 3)]),
            r"maps\[1\] has shape \(2, 1, 2, 3\).*W=2",
        ),
        (lambda: regions.concat_channels_forward([]), r"maps must be a non-empty list"),
    ],
)
def test_regions_bad_shapes_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_regions_backward_checks_dout_shape():
    _, cache = regions.region_split_forward(rand(2, 3, 4, 8), 2)
    with pytest.raises(ValueError, match="dout has shape"):
        regions.region_split_backward(rand(8, 3, 6), cache)
    _, cache = regions.pair_concat_forward(rand(1, 2, 2, 2), rand(1, 2, 2, 2))
    with pytest.raises(ValueError, match="dout has shape"):
        regions.pair_concat_backward(rand(1, 2, 2, 5), cache)
