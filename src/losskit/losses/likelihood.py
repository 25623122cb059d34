r"""Likelihood losses for regression: Poisson and Gaussian negative log-likelihoods.

Both follow PyTorch's ``poisson_nll_loss`` and ``gaussian_nll_loss`` exactly on valid
input (the same per-element values, and ``"mean"`` over every element of the loss), with
the closed-form gradients written out. Where PyTorch gives NaN for a degenerate but
meaningful input (a zero count at rate 0) the limit is used instead, and each docstring
says so. Inputs that cannot be a rate, a count or a variance are errors.
"""

from __future__ import annotations

import math

from ..core.dispatch import register_fast_path
from ..core.formula import Formula, exp, inf, isnan, log, where, xlogy
from ..core.loss import Loss, Terms, register
from ..core.validation import check_in_range, check_numeric, check_scalar, _dtype_name
from ..kernels import pointwise

__all__ = ["poisson_nll", "gaussian_nll"]

_INF = float("inf")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


# the pointwise math of poisson_nll, stated once (losskit.core.formula): the generic kernel
# evaluates it on any array library, losskit.kernels.pointwise compiles it with numba
def _poisson_nll(x, t, log_input, full, eps):
    if log_input:
        # t * x with 0 * x = 0 (also at x = -inf, a zero count at rate 0)
        ex = exp(x)
        value = ex - where(t == 0, 0.0, t * x)
        grad = ex - t
    else:
        r = x + eps
        value = x - xlogy(t, r)
        ok = r != 0  # NaN rates go through the division and propagate
        ratio = t / where(ok, r, 1.0)
        # rate 0 with eps = 0: t / 0 is +inf for t > 0 (NaN stays NaN), 0 for t = 0
        at_zero = where(t == 0, 0.0, where(isnan(t), t, inf))
        grad = 1.0 - where(ok, ratio, at_zero)
    if full:
        big = t > 1
        ts = where(big, t, 2.0)
        stirling = ts * log(ts) - ts + 0.5 * log(ts) + _HALF_LOG_2PI
        value = value + where(big, stirling, 0.0)
    return value, grad


def _poisson_ok(x, t, log_input, full, eps):
    """Counts >= 0, and rates >= 0 with log_input=False (NaN passes: it propagates)."""
    return ((t >= 0) | isnan(t)) & (log_input | (x >= 0) | isnan(x))


def _poisson_nll_hessian(x, t, log_input, full, eps):
    # d^2 / dx^2: e^x (log_input), t / (x + eps)^2 (otherwise); the Stirling term is constant
    if log_input:
        return where(isnan(t), t, exp(x))
    r = x + eps
    ok = r != 0
    rs = where(ok, r, 1.0)
    # rate 0 with eps = 0: +inf for t > 0, 0 for t = 0 (NaN stays NaN), as the gradient
    at_zero = where(t == 0, 0.0, where(isnan(t), t, inf))
    return where(ok, (t / rs) / rs, at_zero)


POISSON_NLL = Formula(_poisson_nll, hessian=_poisson_nll_hessian)
POISSON_OK = Formula(_poisson_ok)


# the pointwise math of gaussian_nll (the variance an array broadcasting against the mean)
def _gaussian_nll(mu, t, var, full, eps):
    d = mu - t
    clamped = var < eps  # NaN is not clamped: it propagates
    vc = where(clamped, eps, var)
    r = d / vc
    value = 0.5 * (log(vc) + r * d)
    if full:
        value = value + _HALF_LOG_2PI
    # d/dmu, then d/dv: 0 below the clamp, the one-sided derivative from above at eps
    return value, r, where(clamped, 0.0, 0.5 * (1.0 / vc - r * r))


def _gaussian_ok(mu, t, var, full, eps):
    """Variances >= 0 (NaN passes: it propagates)."""
    return (var >= 0) | isnan(var)


def _gaussian_nll_hessian(mu, t, var, full, eps):
    # d^2 / dmu^2 with the variance held fixed: 1 / max(var, eps) (NaN propagates)
    d = mu - t
    vc = where(var < eps, eps, var)
    return where(isnan(d), d, 1.0 / vc)


GAUSSIAN_NLL = Formula(_gaussian_nll, hessian=_gaussian_nll_hessian)
GAUSSIAN_OK = Formula(_gaussian_ok)


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False; got {value!r}")
    return value


class PoissonNLL(Loss):
    r"""Poisson negative log-likelihood of counts, from log-rates (default) or rates.

    Parameters
    ----------
    prediction : array of shape (*), floating
        The log-rate :math:`x = \log\lambda` (``log_input=True``) or the rate
        :math:`x = \lambda \ge 0` (``log_input=False``).
    target : array of the same shape
        Observed counts :math:`t \ge 0` (integers, or non-negative reals as PyTorch
        allows).
    log_input : bool, default True
        Whether the prediction is the log of the rate.
    full : bool, default False
        Add Stirling's approximation of :math:`\log t!` for :math:`t > 1` (0 for
        :math:`t \le 1`), as PyTorch does.
    eps : float, default 1e-8
        Added to the rate inside the log when ``log_input=False`` (so a rate of 0 costs a
        finite amount); must be :math:`\ge 0` and finite. Unused with ``log_input=True``.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \begin{cases} e^{x} - t\,x & \text{log\_input} \\
                             x - t \log(x + \varepsilon) & \text{otherwise} \end{cases}
        \; + \; [\text{full}]\,[t > 1]\left(t \log t - t + \tfrac12 \log(2\pi t)\right)

    .. math::

        \frac{\partial \ell}{\partial x} = \begin{cases} e^{x} - t & \text{log\_input} \\
                                           1 - \dfrac{t}{x + \varepsilon} & \text{otherwise}
                                           \end{cases}, \qquad
        \frac{\partial^2 \ell}{\partial x^2} = \begin{cases} e^{x} & \text{log\_input} \\
                                           \dfrac{t}{(x + \varepsilon)^2} & \text{otherwise}
                                           \end{cases}

    The Stirling term does not depend on :math:`x`. This is PyTorch's
    ``poisson_nll_loss(x, t, log_input, full, eps=eps)``, and ``reduction="mean"``
    divides by the number of elements as PyTorch does. Defined edges: :math:`t\,x` and
    :math:`t \log(\cdot)` are 0 when :math:`t = 0` (a zero count at rate 0,
    :math:`x = -\infty` with ``log_input``, costs 0 where PyTorch gives NaN); with
    ``eps=0`` a positive count at rate 0 costs :math:`+\infty` with gradient
    :math:`-\infty`. Negative counts, and negative rates with ``log_input=False``, are
    errors (PyTorch accepts them silently).

    PyTorch's ``poisson_nll_loss`` has no ``weight=``: the weighted loss
    ``(w * poisson_nll_loss(x, t, reduction="none")).sum() / w.sum()`` is
    ``poisson_nll(x, t, sample_weight=w)``.

    References
    ----------
    .. [1] P. McCullagh, J. A. Nelder, *Generalized Linear Models*, 2nd ed., Chapman &
       Hall 1989, ch. 6, doi:10.1007/978-1-4899-3242-6.

    Examples
    --------
    Counts 2 and 2 at log-rates 0 and ln 2: :math:`e^0 - 0 = 1` and
    :math:`2 - 2 \ln 2 \approx 0.6137`; gradients :math:`1 - 2 = -1` and :math:`2 - 2 = 0`.

    >>> import numpy as np, losskit as lk
    >>> x, t = np.array([0.0, np.log(2.0)]), np.array([2.0, 2.0])
    >>> np.round(lk.poisson_nll(x, t, reduction="none"), 4)
    array([1.    , 0.6137])
    >>> lk.poisson_nll.grad(x, t, reduction="sum")
    array([-1.,  0.])
    """

    name = "poisson_nll"
    family = "regression"
    prediction = "log-rate (or rate with log_input=False)"
    target = "counts >= 0, same shape"
    formula = (r"\ell = e^{x} - t x\ (\text{log\_input}),\ "
               r"x - t \log(x + \varepsilon)\ (\text{otherwise})")
    gradient_formula = (r"\frac{\partial \ell}{\partial x} = e^{x} - t\ (\text{log\_input}),\ "
                        r"1 - \frac{t}{x + \varepsilon}\ (\text{otherwise})")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial x^2} = e^{x}\ (\text{log\_input}),\ "
                       r"\frac{t}{(x + \varepsilon)^2}\ (\text{otherwise})")
    second_order = "diagonal"
    when_to_use = (
        "Regression of counts (events per interval, clicks, photons) with a Poisson model: "
        "the network predicts the log of the rate (log_input=True, any real output) or the "
        "rate itself (log_input=False, after a softplus or exp). Its minimiser is the mean "
        "count, and large counts are allowed larger errors than under mse."
    )
    references = ("McCullagh and Nelder, Generalized Linear Models, 1989, "
                  "doi:10.1007/978-1-4899-3242-6",)

    def _compute(self, ctx, prediction, target, *, need_grad, log_input=True, full=False,
                 eps=1e-8):
        xp = ctx.xp
        log_input = _check_flag("log_input", log_input)
        full = _check_flag("full", full)
        e = check_scalar("eps", eps, lo=0.0, hi=_INF, hi_open=True)
        t = self._real_target(ctx, prediction, target)
        check_in_range(xp, "target", t, 0.0, _INF, hint="Poisson targets are counts")
        x = prediction
        if not log_input:
            check_in_range(xp, "prediction", x, 0.0, _INF,
                           hint="with log_input=False the prediction is a rate; pass "
                                "log-rates with log_input=True")
        value, grad = POISSON_NLL.on(xp)(x, t, log_input, full, e)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(POISSON_NLL, x, t, log_input, full, e))


class GaussianNLL(Loss):
    r"""Gaussian negative log-likelihood with a predicted mean and variance.

    Parameters
    ----------
    prediction : array of shape (*), floating
        The predicted mean :math:`\mu`.
    target : array of the same shape
        Observations :math:`t` (nothing is broadcast).
    var : array or float
        The predicted variance :math:`v \ge 0`, one of (as PyTorch allows):

        * the prediction's shape (heteroscedastic);
        * the prediction's shape without its last axis, e.g. ``(N,)`` for ``(N, D)``: one
          variance per row, shared by the last axis (homoscedastic);
        * the prediction's shape with exactly one axis of size 1 where the prediction's is
          not, e.g. ``(N, 1)`` for ``(N, D)`` or ``(B, 1, H, W)`` for ``(B, C, H, W)``:
          shared along that axis;
        * a Python float: one variance for every element.

        Any other shape is a ``ValueError``. A shared variance gets the gradient summed
        over the elements that share it, in ``var``'s own shape (0-d for a float).
    full : bool, default False
        Add the constant :math:`\tfrac12 \log 2\pi`.
    eps : float, default 1e-6
        The variance is clamped from below at :math:`\varepsilon > 0` (finite).
    {common_parameters}

    Notes
    -----
    With :math:`\bar v = \max(v, \varepsilon)` and :math:`d = \mu - t`:

    .. math::

        \ell = \tfrac12\left(\log \bar v + \frac{d^2}{\bar v}\right)
               + [\text{full}]\,\tfrac12 \log 2\pi,
        \qquad
        \frac{\partial \ell}{\partial \mu} = \frac{d}{\bar v},
        \qquad
        \frac{\partial \ell}{\partial v} = \begin{cases}
            \tfrac12\left(\dfrac{1}{v} - \dfrac{d^2}{v^2}\right) & v \ge \varepsilon \\
            0 & v < \varepsilon \end{cases},
        \qquad
        \frac{\partial^2 \ell}{\partial \mu^2} = \frac{1}{\bar v}

    ``hessian`` and ``hvp`` are second derivatives with respect to the mean only, the
    variance held fixed (as given, clamped at :math:`\varepsilon`).
    ``.grad(..., wrt="var")`` (or ``wrt="all"`` for both) is the exact derivative of the
    clamped value: 0 below the clamp, the one-sided derivative from above at
    :math:`v = \varepsilon`. PyTorch clamps under ``no_grad`` and so back-propagates
    :math:`\tfrac12(1/\bar v - d^2/\bar v^2)` there instead; above the clamp the two
    agree. The value is PyTorch's ``gaussian_nll_loss(mu, t, var, full, eps)``, and
    ``reduction="mean"`` averages over **every element** of the loss (the prediction's
    shape), as PyTorch does. A variance of 0 is clamped to ``eps``; a negative variance
    is a ``ValueError`` (PyTorch raises too); NaN propagates. Unlike PyTorch, the target
    is never broadcast.

    PyTorch's ``gaussian_nll_loss`` has no ``weight=``: the weighted loss
    ``(w * gaussian_nll_loss(mu, t, var, reduction="none")).sum() / w.sum()`` is
    ``gaussian_nll(mu, t, var, sample_weight=w)`` (``w`` of the loss's shape, or ``(N,)``).

    References
    ----------
    .. [1] D. A. Nix, A. S. Weigend, "Estimating the mean and variance of the target
       probability distribution", ICNN 1994, doi:10.1109/ICNN.1994.374138.

    Examples
    --------
    Mean 0, target 2, variance 1: :math:`\tfrac12(\log 1 + 4/1) = 2`; the gradients are
    :math:`d/v = -2` and :math:`\tfrac12(1/1 - 4/1) = -1.5`.

    >>> import numpy as np, losskit as lk
    >>> mu, t, var = np.array([0.0]), np.array([2.0]), np.array([1.0])
    >>> float(lk.gaussian_nll(mu, t, var))
    2.0
    >>> lk.gaussian_nll.grad(mu, t, var, wrt="all")
    (array([-2.]), array([-1.5]))
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "gaussian_nll"
    family = "regression"
    prediction = "real (the mean; var is the variance)"
    target = "real, same shape"
    inputs = ("prediction", "target", "var")
    differentiable = ("prediction", "var")
    formula = (r"\ell = \tfrac12 \left(\log \max(v, \varepsilon) + "
               r"\frac{(\mu - t)^2}{\max(v, \varepsilon)}\right)")
    gradient_formula = (r"\frac{\partial \ell}{\partial \mu} = \frac{\mu - t}{\bar v},\ "
                        r"\frac{\partial \ell}{\partial v} = \tfrac12 \left(\frac{1}{v} - "
                        r"\frac{(\mu - t)^2}{v^2}\right) [v \ge \varepsilon]")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial \mu^2} = "
                       r"\frac{1}{\max(v, \varepsilon)}\ (v\ \text{held fixed})")
    second_order = "diagonal"
    when_to_use = (
        "Regression where the model should also say how uncertain it is: the network "
        "predicts a mean and a variance per output, and errors on points it declares noisy "
        "cost less (at the price of the log-variance term). Use it for heteroscedastic noise "
        "or to get calibrated error bars; predict the variance through a softplus or exp."
    )
    references = ("Nix and Weigend, Estimating the mean and variance of the target "
                  "probability distribution, ICNN 1994, doi:10.1109/ICNN.1994.374138",)

    @staticmethod
    def _broadcast_rule(pred_shape, var_shape):
        """How ``var`` broadcasts against the prediction: ``("same" | "drop" | axis)``."""
        pred_shape, var_shape = tuple(pred_shape), tuple(var_shape)
        if var_shape == pred_shape:
            return "same"
        if len(pred_shape) >= 1 and var_shape == pred_shape[:-1]:
            return "drop"
        if len(var_shape) == len(pred_shape):
            diff = [k for k, (p, v) in enumerate(zip(pred_shape, var_shape)) if p != v]
            if len(diff) == 1 and var_shape[diff[0]] == 1:
                return diff[0]
        if pred_shape:
            allowed = (f"{pred_shape}, that shape without its last axis {pred_shape[:-1]}, or "
                       f"that shape with one axis of size 1 such as {pred_shape[:-1] + (1,)}")
        else:
            allowed = f"{pred_shape}"
        raise ValueError(f"`var` of gaussian_nll must have the shape of `prediction` {allowed}, "
                         f"or be a Python float; got {var_shape}")

    def _compute(self, ctx, prediction, target, var, *, need_grad, full=False, eps=1e-6):
        xp = ctx.xp
        full = _check_flag("full", full)
        e = check_scalar("eps", eps, lo=0.0, hi=_INF, lo_open=True, hi_open=True)
        t = self._real_target(ctx, prediction, target)
        shape = tuple(prediction.shape)
        scalar = isinstance(var, (int, float)) and not isinstance(var, bool)
        if var is None or isinstance(var, bool):
            raise TypeError(f"`var` of gaussian_nll must be an array or a float; got {var!r}")
        v = ctx.asarray(var, "var")
        check_numeric(xp, "var", v)
        if v.dtype == xp.bool:
            raise TypeError(f"`var` of gaussian_nll must be real-valued; got dtype "
                            f"{_dtype_name(v.dtype)}")
        if v.dtype != ctx.work:
            v = xp.astype(v, ctx.work)
        var_shape = tuple(v.shape)
        rule = "scalar" if scalar else self._broadcast_rule(shape, var_shape)
        check_in_range(xp, "var", v, 0.0, _INF,
                       hint="variances must be non-negative (0 is clamped to eps)")
        if rule == "drop":
            v = xp.reshape(v, var_shape + (1,))
        if rule != "same":
            v = xp.broadcast_to(v, shape)

        value, r, g_var = GAUSSIAN_NLL.on(xp)(prediction, t, v, full, e)
        if not need_grad:
            return Terms(value)
        hess = ctx.pointwise_hessian(GAUSSIAN_NLL, prediction, t, v, full, e)
        finalize = None
        if rule == "drop":
            finalize = {"var": lambda g: xp.sum(g, axis=-1)}
        elif rule == "scalar":
            finalize = {"var": lambda g: xp.sum(g)}
        elif rule != "same":
            finalize = {"var": lambda g, ax=rule: xp.sum(g, axis=ax, keepdims=True)}
        return Terms(value, r, grads={"var": g_var}, finalize=finalize, hess=hess)


poisson_nll = register(PoissonNLL())
gaussian_nll = register(GaussianNLL())

# the fused NumPy kernels of poisson_nll and gaussian_nll (losskit.kernels.pointwise).
# gaussian_nll's covers a variance of the prediction's shape and dtype and the gradients
# with respect to the mean and the variance (any wrt, "all" from one pass); a broadcast
# variance (a row's, an axis', one float) runs the generic path
register_fast_path(PoissonNLL, pointwise.fast_path(
    POISSON_NLL, {"log_input": pointwise.flag, "full": pointwise.flag,
                  "eps": pointwise.number(0.0)}, check=POISSON_OK))
register_fast_path(GaussianNLL, pointwise.fast_path(
    GAUSSIAN_NLL, {"full": pointwise.flag, "eps": pointwise.number(0.0, lo_open=True)},
    check=GAUSSIAN_OK, inputs=("var",), grads=("var",)))
