r"""Relative regression errors: the squared logarithmic error and the absolute percentage error.

Both measure an error relative to the size of the target, for targets spanning orders of
magnitude (prices, counts, demand): ``msle`` compares :math:`\log(1 + y)` with
:math:`\log(1 + t)`, ``mape`` divides the absolute error by :math:`|t|`. Keras and
scikit-learn differ in how they keep the logarithm and the division finite; each loss has
the option that gives either library's number (see the docstrings and
``docs/conventions.md``).
"""

from __future__ import annotations

from ..core.dispatch import register_fast_path
from ..core.formula import Formula, isnan, log1p, maximum, sign, where
from ..core.loss import Loss, Terms, register
from ..core.validation import check_in_range, check_scalar
from ..kernels import pointwise

__all__ = ["msle", "mean_squared_logarithmic_error", "mape",
           "mean_absolute_percentage_error"]

_INF = float("inf")
#: scikit-learn's epsilon of ``mean_absolute_percentage_error``: float64's machine epsilon
_F64_EPS = 2.220446049250313e-16


# --------------------------------------------------------------------------- the formulas
def _msle(y, t, clip):
    yc = maximum(y, clip)  # clip = -inf: no clip (NaN propagates through maximum)
    d = log1p(yc) - log1p(maximum(t, clip))
    # 0 below the clip (the prediction does not move the loss there), NaN propagates
    return d * d, where(y < clip, 0.0, 2.0 * d / (1.0 + yc))


def _msle_ok(y, t, clip):
    """Without a clip both sides must exceed -1 (NaN passes: it propagates)."""
    if clip > -1.0:
        return (y == y) | isnan(y)
    return ((y > -1.0) | isnan(y)) & ((t > -1.0) | isnan(t))


def _mape(y, t, epsilon, percent):
    scale = 100.0 if percent else 1.0
    d = y - t
    den = maximum(abs(t), epsilon)
    return scale * (abs(d) / den), (scale * sign(d)) / den


def _msle_hessian(y, t, clip):
    # d/dy of 2 d / (1 + y'): 2 (1 - d) / (1 + y')^2 from the clip on, 0 below it (the
    # side the gradient takes at y = clip); divided twice: (1 + y')^2 never underflows
    yc = maximum(y, clip)
    d = log1p(yc) - log1p(maximum(t, clip))
    u = 1.0 + yc
    return where(y < clip, 0.0, (2.0 * (1.0 - d) / u) / u)


def _mape_hessian(y, t, epsilon, percent):
    d = y - t
    return where(isnan(d), d, 0.0)  # 0 away from the kink y = t, where it does not exist


MSLE = Formula(_msle, hessian=_msle_hessian)
MSLE_OK = Formula(_msle_ok)
MAPE = Formula(_mape, hessian=_mape_hessian)


class MeanSquaredLogarithmicError(Loss):
    r"""Squared logarithmic error :math:`\ell = (\log(1 + y) - \log(1 + t))^2`.

    Parameters
    ----------
    prediction : array of shape (*), floating
        Predictions :math:`y > -1` (or any real with ``clip``).
    target : array of the same shape
        Targets :math:`t > -1` (or any real with ``clip``).
    clip : float or None, default None
        ``None`` (scikit-learn's ``mean_squared_log_error``): no clip; a prediction or
        target at or below -1 is an error. A number :math:`c > -1` (Keras's
        ``MeanSquaredLogarithmicError`` uses :math:`c = 10^{-7}`): both sides are first
        raised to at least :math:`c`, :math:`y' = \max(y, c)`, :math:`t' = \max(t, c)`,
        and the gradient is 0 where :math:`y < c`.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \left(\log(1 + y') - \log(1 + t')\right)^2, \qquad
        \frac{\partial \ell}{\partial y} = \frac{2 (\log(1 + y') - \log(1 + t'))}{1 + y'}
        \,[y \ge c], \qquad
        \frac{\partial^2 \ell}{\partial y^2} = \frac{2 (1 - \log(1 + y') + \log(1 + t'))}
        {(1 + y')^2}\,[y \ge c]

    with ``log1p`` on both sides. It is the squared error of :math:`\log(1 + \cdot)`: a
    miss by a factor costs about the same at every scale, and under-prediction costs
    more than over-prediction by the same amount. Keras computes
    :math:`\log(\max(y, c) + 1)`; it agrees with ``log1p`` to within rounding.

    References
    ----------
    .. [1] scikit-learn, ``sklearn.metrics.mean_squared_log_error``, User Guide sec. 3.4.6.

    Examples
    --------
    :math:`y = e - 1` against :math:`t = 0`: :math:`(1 - 0)^2 = 1`, gradient
    :math:`2 \cdot 1 / e`.

    >>> import numpy as np, losskit as lk
    >>> y, t = np.array([np.e - 1.0]), np.array([0.0])
    >>> float(lk.msle(y, t))
    1.0
    >>> lk.msle.grad(y, t).round(6), round(2 / np.e, 6)
    (array([0.735759]), 0.735759)
    """

    name = "msle"
    aliases = ("mean_squared_logarithmic_error",)
    family = "regression"
    prediction = "real > -1"
    target = "real > -1, same shape"
    formula = r"\ell = (\log(1 + y) - \log(1 + t))^2"
    gradient_formula = (r"\frac{\partial \ell}{\partial y} = "
                        r"\frac{2 (\log(1 + y) - \log(1 + t))}{1 + y}")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial y^2} = "
                       r"\frac{2 (1 - \log(1 + y) + \log(1 + t))}{(1 + y)^2}")
    second_order = "diagonal"
    when_to_use = (
        "Regression of non-negative quantities spanning orders of magnitude (prices, "
        "counts, demand) where relative errors matter: a miss by a factor costs about the "
        "same for small and large targets, and under-predicting costs more than "
        "over-predicting. Kaggle's RMSLE is its square root."
    )
    references = ("scikit-learn, sklearn.metrics.mean_squared_log_error",)

    def _compute(self, ctx, prediction, target, *, need_grad, clip=None):
        xp = ctx.xp
        t = self._real_target(ctx, prediction, target)
        if clip is None:
            c = -_INF
            hint = "log(1 + x) needs x > -1; pass clip=1e-7 for Keras's clip instead"
            check_in_range(xp, "prediction", prediction, -1.0, _INF, lo_open=True, hint=hint)
            check_in_range(xp, "target", t, -1.0, _INF, lo_open=True, hint=hint)
        else:
            c = check_scalar("clip", clip, lo=-1.0, hi=_INF, lo_open=True, hi_open=True)
        value, grad = MSLE.on(xp)(prediction, t, c)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(MSLE, prediction, t, c))


class MeanAbsolutePercentageError(Loss):
    r"""Absolute percentage error :math:`\ell = |y - t| / \max(|t|, \epsilon)`.

    Parameters
    ----------
    prediction : array of shape (*), floating
    target : array of the same shape
    epsilon : float, default 2.220446049250313e-16
        The floor of the denominator, :math:`\epsilon > 0`. The default is
        scikit-learn's (float64's machine epsilon, whatever the input's dtype); Keras uses
        ``keras.config.epsilon()``, :math:`10^{-7}`.
    percent : bool, default False
        Multiply by 100 (Keras's ``MeanAbsolutePercentageError``); ``False`` gives the
        fraction, as scikit-learn's ``mean_absolute_percentage_error``.
    {common_parameters}

    Notes
    -----
    With :math:`s = 100` if ``percent`` else 1:

    .. math::

        \ell = s\,\frac{|y - t|}{\max(|t|, \epsilon)}, \qquad
        \frac{\partial \ell}{\partial y} = s\,\frac{\operatorname{sign}(y - t)}
        {\max(|t|, \epsilon)}, \qquad
        \frac{\partial^2 \ell}{\partial y^2} = 0 \quad (y \ne t)

    with the subgradient 0 at :math:`y = t` (as ``mae``). The loss is piecewise linear in
    :math:`y`: its Hessian is 0 almost everywhere and undefined at the kink, and
    ``hessian`` returns zeros. It is the absolute error weighted by
    :math:`s / \max(|t|, \epsilon)`, so gradient boosting treats it as such: XGBoost's
    ``reg:absoluteerror`` with those sample weights uses a Hessian of 1 times the weight
    and refits each leaf's value by the weighted median of its residuals (LightGBM's
    ``mape`` objective likewise uses Hessian 1 and renews the leaf outputs by weighted
    percentiles). A target of 0 makes the
    denominator :math:`\epsilon`: the loss is huge unless the prediction is exactly 0,
    which is why MAPE suits strictly positive targets. Minimising it favours
    under-prediction (an over-prediction can cost more than 100%, an under-prediction of
    a positive target at most 100%).

    References
    ----------
    .. [1] A. de Myttenaere, B. Golden, B. Le Grand, F. Rossi, "Mean absolute percentage
       error for regression models", Neurocomputing 192, 2016,
       doi:10.1016/j.neucom.2015.12.114.

    Examples
    --------
    Predicting 90 and 330 for 100 and 300: 10% and 10%.

    >>> import numpy as np, losskit as lk
    >>> y, t = np.array([90.0, 330.0]), np.array([100.0, 300.0])
    >>> lk.mape(y, t, reduction="none")
    array([0.1, 0.1])
    >>> float(lk.mape(y, t, percent=True))
    10.0
    """

    name = "mape"
    aliases = ("mean_absolute_percentage_error",)
    family = "regression"
    prediction = "real"
    target = "real, same shape (non-zero, ideally positive)"
    formula = r"\ell = \frac{|y - t|}{\max(|t|, \epsilon)}"
    gradient_formula = (r"\frac{\partial \ell}{\partial y} = "
                        r"\frac{\operatorname{sign}(y - t)}{\max(|t|, \epsilon)}")
    hessian_formula = r"\frac{\partial^2 \ell}{\partial y^2} = 0\ (y \ne t)"
    second_order = "zero"
    when_to_use = (
        "Regression judged by relative error on strictly positive targets (forecasting "
        "demand, sales): each error is a fraction of its target, so series of different "
        "scales weigh the same. Undefined near zero targets and biased towards "
        "under-prediction; msle or a Tweedie/Gamma deviance are often better to train on."
    )
    references = ("de Myttenaere et al., Mean absolute percentage error for regression "
                  "models, Neurocomputing 2016, doi:10.1016/j.neucom.2015.12.114",)

    def _compute(self, ctx, prediction, target, *, need_grad, epsilon=_F64_EPS,
                 percent=False):
        xp = ctx.xp
        e = check_scalar("epsilon", epsilon, lo=0.0, hi=_INF, lo_open=True, hi_open=True)
        if not isinstance(percent, bool):
            raise TypeError(f"`percent` must be True or False; got {percent!r}")
        t = self._real_target(ctx, prediction, target)
        value, grad = MAPE.on(xp)(prediction, t, e, percent)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(MAPE, prediction, t, e, percent))


msle = mean_squared_logarithmic_error = register(MeanSquaredLogarithmicError())
mape = mean_absolute_percentage_error = register(MeanAbsolutePercentageError())


def _clip(v):
    """The fast path's validator of ``clip``: None is no clip (-inf), else a number > -1."""
    return -_INF if v is None else pointwise.number(-1.0, lo_open=True)(v)


# fused NumPy kernels (losskit.kernels.pointwise: the formulas above)
register_fast_path(MeanSquaredLogarithmicError,
                   pointwise.fast_path(MSLE, {"clip": _clip}, check=MSLE_OK))
register_fast_path(MeanAbsolutePercentageError, pointwise.fast_path(
    MAPE, {"epsilon": pointwise.number(0.0, lo_open=True), "percent": pointwise.flag}))
