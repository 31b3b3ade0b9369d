"""The checking tools' bad arguments (gradcheck, numerical_gradient, compare_steps): a
ValueError or TypeError naming the argument, what came and what was expected."""

import numpy as np
import pytest
from helpers import rand, random_module

from minattn import BAM, compare_steps, gradcheck, numerical_gradient, steps


def test_gradcheck_errors():
    bam = BAM(16, 2)
    x = rand(1, 16, 8, 8)
    with pytest.raises(TypeError, match="module must have forward.*no 'forward'"):
        gradcheck(object(), x)
    with pytest.raises(ValueError, match="eps must be a positive number, got 0"):
        gradcheck(bam, x, eps=0)
    with pytest.raises(ValueError, match="max_elements must be >= 1, got 0"):
        gradcheck(bam, x, max_elements=0)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        gradcheck(bam, [1.0])
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        numerical_gradient(np.sum, 3.0)


def test_compare_steps_rejects_unknown_names_and_leaves_its_arguments_alone():
    bam = random_module(8, 2)
    X = rand(2, 8, 4, 6, seed=3)
    with pytest.raises(ValueError, match="softmax_backwards.*valid names.*softmax_backward"):
        compare_steps(bam, X, replace={"softmax_backwards": steps.softmax_backward})
    with pytest.raises(TypeError, match="must be a function"):
        compare_steps(bam, X, replace={"softmax_backward": 3})
    x, before = X.copy(), bam.state_dict()
    compare_steps(bam, x, replace={"softmax_backward": steps.softmax_backward})
    np.testing.assert_array_equal(x, X)
    for k, v in before.items():
        np.testing.assert_array_equal(bam.params[k], v)
