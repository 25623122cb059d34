r"""Regression losses: squared error, the tutorials' half squared error, absolute error.

Each kernel returns the elementwise loss of the residual :math:`d = y - t` and its
elementwise derivative with respect to the prediction :math:`y`.
"""

from __future__ import annotations

from ..core.dispatch import register_fast_path, with_second_order
from ..core.formula import Formula, sign
from ..kernels import fast_paths, pointwise
from ..core.loss import Loss, Terms, register

__all__ = ["mse", "mean_squared_error", "l2_loss", "mae", "mean_absolute_error"]


# the pointwise math, stated once (losskit.core.formula); the fused kernels of these three
# stay the hand-tuned ones of losskit.kernels.fast_paths (as fast as the pointwise driver)
def _mse(y, t):
    d = y - t
    return d * d, 2 * d


def _l2_loss(y, t):
    d = y - t
    return 0.5 * (d * d), d


def _mae(y, t):
    d = y - t
    return abs(d), sign(d)


def _mse_hessian(y, t):
    return 2.0 + 0.0 * (y - t)  # 2 everywhere (NaN stays NaN)


def _l2_loss_hessian(y, t):
    return 1.0 + 0.0 * (y - t)


def _mae_hessian(y, t):
    return 0.0 * (y - t)  # 0 away from the kink y = t, where it does not exist


MSE = Formula(_mse, hessian=_mse_hessian)
L2_LOSS = Formula(_l2_loss, hessian=_l2_loss_hessian)
MAE = Formula(_mae, hessian=_mae_hessian)


class MeanSquaredError(Loss):
    r"""Squared error :math:`\ell = (y - t)^2`, averaged by default (the *mean squared error*).

    Parameters
    ----------
    prediction : array of shape (*), floating
        Real-valued predictions :math:`y`.
    target : array of the same shape
        Real-valued targets :math:`t`. Nothing is broadcast: ``(N, 1)`` against ``(N,)``
        is an error.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell_n = (y_n - t_n)^2, \qquad \frac{\partial \ell_n}{\partial y_n} = 2 (y_n - t_n)

    PyTorch's ``mse_loss`` and Keras' ``MeanSquaredError`` use the same per-element loss;
    Optax's ``squared_error`` is the unreduced version (``reduction="none"``).

    References
    ----------
    .. [1] C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer 2006, sec. 1.1.

    Examples
    --------
    The digest's linear regression: x = [-2, -1, 0, 1, 2], y = [-3, 0, 0, 3, 4]; with
    (w, b) = (2, 1) the sum of squared errors is 3, with (0, 0) it is 34.

    >>> import numpy as np, losskit as lk
    >>> x = np.array([-2., -1., 0., 1., 2.]); y = np.array([-3., 0., 0., 3., 4.])
    >>> float(lk.mse(2 * x + 1, y, reduction="sum")), float(lk.mse(0 * x, y, reduction="sum"))
    (3.0, 34.0)
    >>> lk.mse.grad(np.array([1., 2.]), np.array([0., 0.]))   # 2 (y - t) / N
    array([1., 2.])
    """

    name = "mse"
    aliases = ("mean_squared_error",)
    family = "regression"
    prediction = "real"
    target = "real, same shape"
    formula = r"\ell = (y - t)^2"
    gradient_formula = r"\frac{\partial \ell}{\partial y} = 2 (y - t)"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial y^2} = 2"
    second_order = "diagonal"
    when_to_use = (
        "Regression with roughly Gaussian noise, where large errors should cost "
        "quadratically more. Sensitive to outliers (use mae or Huber then). Avoid it after a "
        "sigmoid or softmax output: the activation's derivative multiplies the gradient and "
        "learning stalls exactly when the prediction is most wrong (use cross-entropy)."
    )
    references = ("Bishop, Pattern Recognition and Machine Learning, 2006, sec. 1.1",)


    def _compute(self, ctx, prediction, target, *, need_grad):
        t = self._real_target(ctx, prediction, target)
        value, grad = MSE.on(ctx.xp)(prediction, t)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(MSE, prediction, t))


class HalfSquaredError(Loss):
    r"""Half squared error :math:`\ell = \tfrac12 (y - t)^2`: the tutorials' convention.

    The ½ cancels the 2 of the derivative, so the gradient is just the residual.
    With ``reduction="sum"`` it is the tutorials' ``0.5 * np.sum((y - t)**2)``; with
    ``reduction="batchmean"`` on ``(N, D)`` predictions it is the classic C++ framework's
    Euclidean loss :math:`\frac{1}{2N}\sum_n \lVert y_n - t_n \rVert^2`.

    Parameters
    ----------
    prediction : array of shape (*), floating
    target : array of the same shape
    {common_parameters}

    Notes
    -----
    .. math::

        \ell_n = \tfrac12 (y_n - t_n)^2, \qquad \frac{\partial \ell_n}{\partial y_n} = y_n - t_n,
        \qquad \frac{\partial^2 \ell_n}{\partial y_n^2} = 1

    Optax's ``l2_loss`` is the unreduced version; the ½ follows Bishop, not ESL.

    References
    ----------
    .. [1] C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer 2006, eq. 1.2.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> y = np.array([[1., 2.], [3., 4.]]); t = np.zeros((2, 2))
    >>> float(lk.l2_loss(y, t, reduction="sum"))         # 0.5 * (1 + 4 + 9 + 16)
    15.0
    >>> float(lk.l2_loss(y, t, reduction="batchmean"))   # 1/(2N) sum ||y - t||^2, N = 2
    7.5
    """

    name = "l2_loss"
    family = "regression"
    prediction = "real"
    target = "real, same shape"
    formula = r"\ell = \tfrac{1}{2} (y - t)^2"
    gradient_formula = r"\frac{\partial \ell}{\partial y} = y - t"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial y^2} = 1"
    second_order = "diagonal"
    when_to_use = (
        "The same model as mse with the factor 1/2 that makes the gradient the plain "
        "residual y - t: the convention of most textbooks and of the tutorials' code. Use "
        "reduction='sum' for 1/2 sum (y - t)^2 and 'batchmean' for the Euclidean loss "
        "1/(2N) sum ||y - t||^2."
    )
    references = ("Bishop, Pattern Recognition and Machine Learning, 2006, eq. 1.2",)


    def _compute(self, ctx, prediction, target, *, need_grad):
        t = self._real_target(ctx, prediction, target)
        value, grad = L2_LOSS.on(ctx.xp)(prediction, t)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(L2_LOSS, prediction, t))


class MeanAbsoluteError(Loss):
    r"""Absolute error :math:`\ell = |y - t|`, averaged by default (*mean absolute error*).

    Parameters
    ----------
    prediction : array of shape (*), floating
    target : array of the same shape
    {common_parameters}

    Notes
    -----
    .. math::

        \ell_n = |y_n - t_n|, \qquad
        \frac{\partial \ell_n}{\partial y_n} = \operatorname{sign}(y_n - t_n), \qquad
        \frac{\partial^2 \ell_n}{\partial y_n^2} = 0 \quad (y_n \ne t_n)

    At the kink :math:`y = t` the subgradient 0 is used (as PyTorch's ``l1_loss``).
    The Hessian is 0 almost everywhere and undefined at the kink; ``hessian`` returns
    zeros. Gradient boosting cannot take a Newton step on it: XGBoost's
    ``reg:absoluteerror`` uses a Hessian of 1 (times the sample weight) and then refits
    each leaf's value by the weighted median of its residuals, and LightGBM's ``l1``
    likewise uses Hessian 1 and renews the leaf outputs by percentiles.

    References
    ----------
    .. [1] T. Hastie, R. Tibshirani, J. Friedman, *The Elements of Statistical Learning*,
       2nd ed., Springer 2009, sec. 10.6.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> float(lk.mae(np.array([1., 2., 3.]), np.array([1., 0., 5.])))   # (0 + 2 + 2) / 3
    1.3333333333333333
    >>> lk.mae.grad(np.array([1., 2., 3.]), np.array([1., 0., 5.]), reduction="sum")
    array([ 0.,  1., -1.])
    """

    name = "mae"
    aliases = ("mean_absolute_error",)
    family = "regression"
    prediction = "real"
    target = "real, same shape"
    formula = r"\ell = |y - t|"
    gradient_formula = r"\frac{\partial \ell}{\partial y} = \operatorname{sign}(y - t)"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial y^2} = 0\ (y \ne t)"
    second_order = "zero"
    when_to_use = (
        "Regression robust to outliers: every unit of error costs the same, so a few wild "
        "targets do not dominate. Estimates the conditional median. The gradient has constant "
        "size, which can make the last steps of training jittery (Huber blends the two)."
    )
    references = ("Hastie, Tibshirani, Friedman, The Elements of Statistical Learning, 2009",)


    def _compute(self, ctx, prediction, target, *, need_grad):
        t = self._real_target(ctx, prediction, target)
        value, grad = MAE.on(ctx.xp)(prediction, t)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(MAE, prediction, t))


mse = mean_squared_error = register(MeanSquaredError())
l2_loss = register(HalfSquaredError())
mae = mean_absolute_error = register(MeanAbsoluteError())

# fused NumPy kernels (losskit.kernels.fast_paths), consulted by the pipeline
# (second order: the pointwise family's fused gradient-and-Hessian kernel of the formulas)
register_fast_path(MeanSquaredError, with_second_order(
    fast_paths.regression, pointwise.fast_path(MSE).second_order))
register_fast_path(HalfSquaredError, with_second_order(
    fast_paths.regression, pointwise.fast_path(L2_LOSS).second_order))
register_fast_path(MeanAbsoluteError, fast_paths.regression)
