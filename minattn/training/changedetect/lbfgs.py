"""SciPy's L-BFGS-B on the training loss, with our gradient: a second opinion on it."""

from ...blas import one_blas_thread
from .loop import MARGIN
from .model import flat_grads, flat_params, set_flat_params


def fit_lbfgs(model, x1, x2, mask, maxiter=100):
    """Minimise the contrastive loss on (x1, x2, mask), full batch, by L-BFGS-B.

    A quasi-Newton line search must find the descent the gradient promises, so it soon
    stalls on a wrong gradient. Returns (scipy OptimizeResult, the loss at every function
    evaluation); the model's parameters are left at the solution.
    """
    from scipy.optimize import minimize

    history = []

    def fun(theta):
        set_flat_params(model, theta)
        loss = model.loss(x1, x2, mask, MARGIN)
        history.append(loss)
        return loss, flat_grads(model)

    with one_blas_thread():
        result = minimize(fun, flat_params(model), jac=True, method="L-BFGS-B",
                          options=dict(maxiter=maxiter))  # fmt: skip
    set_flat_params(model, result.x)
    return result, history
