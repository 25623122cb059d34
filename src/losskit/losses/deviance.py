r"""Deviances of generalised linear models on the log link: Tweedie and Gamma.

The prediction is the **raw score** :math:`r` of a model (a linear predictor, a network
output, a boosting score) and the mean is :math:`\mu = e^{r}`; the target :math:`t` is the
observed value. The loss is the *half unit deviance* :math:`\tfrac12 d(t, \mu)`: the
negative log-likelihood of the exponential-dispersion family with the terms that do not
depend on :math:`\mu` chosen so that the loss is 0 at :math:`\mu = t` and positive
elsewhere. Its gradient with respect to :math:`r` is the same as that of every other
convention (they differ by a function of :math:`t` alone):

* scikit-learn's ``HalfTweedieLoss(power)`` / ``HalfGammaLoss`` (``sklearn._loss``) drop
  the terms of :math:`t` alone: ``loss.loss(t, r) + loss.constant_to_optimal_zero(t)``
  is losskit's value, ``loss.gradient(t, r)`` its gradient;
* ``sklearn.metrics.mean_tweedie_deviance(t, np.exp(r), power=p)`` and
  ``mean_gamma_deviance`` are the full deviance, twice losskit's mean;
* XGBoost's ``reg:tweedie`` (``tweedie_variance_power=p``) and ``reg:gamma`` objectives
  use exactly this gradient, :math:`e^{(2-p) r} - t\,e^{(1-p) r}`.

Each value is computed from :math:`x = \log(t / \mu) = \log t - r` with ``expm1``, so that
it keeps its relative accuracy near the optimum, where the textbook form
:math:`t^{2-p}/((1-p)(2-p)) - t\mu^{1-p}/(1-p) + \mu^{2-p}/(2-p)` cancels to nothing.
"""

from __future__ import annotations

from ..core.dispatch import register_fast_path
from ..core.formula import Formula, exp, expm1, expm1mx, inf, isnan, log, maximum, where
from ..core.loss import Loss, Terms, register
from ..core.validation import check_in_range, check_scalar
from ..kernels import pointwise

__all__ = ["tweedie_deviance", "gamma_deviance"]

_INF = float("inf")


# --------------------------------------------------------------------------- the formulas
def _tweedie(r, t, power):
    p = power
    a = 1.0 - p
    b = 2.0 - p
    if p == 0:  # normal with a log link: (t - mu)^2 / 2, any real target
        mu = exp(r)
        d = mu - t
        return 0.5 * (d * d), d * mu
    pos = t > 0  # t = 0 (allowed for 1 <= p < 2) is the branch below; NaN propagates there
    lt = log(where(pos, t, 1.0))
    x = lt - r  # log(t / mu)
    near = abs(x) <= 1.0
    xs = where(near, x, 0.0)  # near the optimum: expm1 forms, accurate as x -> 0
    if p == 1:  # Poisson: t log(t/mu) - t + mu = t (x + e^{-x} - 1)
        # far from it: t (x - 1) + mu = mu (1 + e^{x} (x - 1)), e^{x} (x - 1) -> 0 at x = -inf
        ex = where(x > -700.0, exp(where(x > -700.0, x, 0.0)) * (x - 1.0), 0.0)
        far = where(x > 0.0, t * (x - 1.0) + exp(r), exp(r) * (1.0 + ex))
        at_pos = where(near, t * expm1mx(-xs), far)
    elif p == 2:  # Gamma: t/mu - log(t/mu) - 1 = e^x - 1 - x (no overflow but the true one)
        at_pos = expm1mx(x)
    else:
        # t^b (expm1(-b x) / b - expm1(-a x) / a) (the constants 1/(ab) - 1/a + 1/b are 0)
        # = t^b (phi(-b x) / b - phi(-a x) / a), phi(u) = e^u - 1 - u: the terms -x cancel
        at_near = exp(b * lt) * (expm1mx(-b * xs) / b - expm1mx(-a * xs) / a)
        # far from it: t^b/(ab) - t mu^a/a + mu^b/b as e^M times a sum of exponentials
        # at most 1 (M the largest exponent): inf when the true value overflows, never NaN
        e0 = b * lt
        e1 = e0 - a * x
        e2 = b * r
        m = maximum(maximum(e0, e1), e2)
        total = (where(e0 == m, 1.0, exp(e0 - m)) / (a * b)
                 - where(e1 == m, 1.0, exp(e1 - m)) / a + where(e2 == m, 1.0, exp(e2 - m)) / b)
        at_pos = where(near, at_near, exp(m) * total)
        if p > 2:  # mu = 0: t mu^a / |a| wins over mu^b / |b| (both infinite exponents)
            at_pos = where(r == -inf, inf, at_pos)
    # d/dr = mu^b - t mu^a, with the factor that can be large outside the expm1:
    # mu^b (1 - t/mu) above the target (x < 0), t^b e^{-a x} (e^{-x} - 1) below it
    if p == 2:
        g_pos = -expm1(x)  # 1 - t/mu
    else:
        em = expm1(-abs(x))
        below = t * em if p == 1 else exp(b * lt - a * x) * em  # (no 0 * inf at p = 1)
        g_pos = where(x < 0.0, exp(b * r) * -em, below)
    if p >= 2:  # t > 0 is required (the domain check refuses t <= 0); NaN propagates
        return where(pos, at_pos, t), where(pos, g_pos, t)
    eb = exp(b * r)  # t = 0: the loss mu^b / b (mu for p = 1), its derivative mu^b
    value = where(pos, at_pos, where(isnan(t), t, eb / b))
    return value, where(pos, g_pos, where(isnan(t), t, eb))


def _tweedie_ok(r, t, power):
    """The target's domain: any real for p = 0, t >= 0 for 1 <= p < 2, t > 0 for p >= 2."""
    if power == 0:
        return t == t
    if power < 2:
        return (t >= 0) | isnan(t)
    return (t > 0) | isnan(t)


def _gamma(r, t):
    pos = t > 0  # the domain check refuses t <= 0; NaN propagates
    x = log(where(pos, t, 1.0)) - r  # log(t / mu)
    value = expm1mx(x)  # t/mu - log(t/mu) - 1 = e^x - 1 - x, accurate as x -> 0
    grad = -expm1(x)  # 1 - t/mu
    return where(pos, value, t), where(pos, grad, t)


def _gamma_ok(r, t):
    return (t > 0) | isnan(t)


def _tweedie_hessian(r, t, power):
    # d^2/dr^2 = b mu^b - a t mu^a (XGBoost's reg:tweedie, scikit-learn's HalfTweedieLoss)
    p = power
    a = 1.0 - p
    b = 2.0 - p
    if p == 0:  # d/dr of (mu - t) mu: mu (2 mu - t)
        mu = exp(r)
        return mu * (2.0 * mu - t)
    if p == 1:  # d/dr of mu - t: mu, for every t >= 0
        return where(isnan(t), t, exp(r))
    pos = t > 0
    lt = log(where(pos, t, 1.0))
    x = lt - r  # log(t / mu)
    if p == 2:
        h_pos = exp(x)  # t / mu
    else:
        # as the gradient: the factor that can be large outside, a bounded one inside:
        # mu^b (b - a t/mu) above the target (x < 0), t mu^a (b mu/t - a) below it
        em = exp(-abs(x))
        h_pos = where(x < 0.0, exp(b * r) * (b - a * em), exp(b * lt - a * x) * (b * em - a))
    if p >= 2:  # t > 0 is required; NaN propagates
        return where(pos, h_pos, t)
    # t = 0: the second derivative of mu^b / b, b mu^b
    return where(pos, h_pos, where(isnan(t), t, b * exp(b * r)))


def _gamma_hessian(r, t):
    pos = t > 0
    x = log(where(pos, t, 1.0)) - r  # log(t / mu)
    return where(pos, exp(x), t)  # t / mu, XGBoost's reg:gamma Hessian


TWEEDIE = Formula(_tweedie, hessian=_tweedie_hessian)
TWEEDIE_OK = Formula(_tweedie_ok)
GAMMA = Formula(_gamma, hessian=_gamma_hessian)
GAMMA_OK = Formula(_gamma_ok)


def _check_power(power) -> float:
    p = check_scalar("power", power, lo=-_INF, hi=_INF, lo_open=True, hi_open=True)
    if p != 0 and p < 1:
        raise ValueError(f"`power` must be 0 or at least 1 (the Tweedie distributions with a "
                         f"log link that losskit supports); got {power!r}"
                         + ("" if p < 0 else ": there is no Tweedie distribution with "
                            "0 < power < 1"))
    return p


def _check_target(xp, t, p: float) -> None:
    if p == 0:
        return
    if p < 2:
        check_in_range(xp, "target", t, 0.0, _INF,
                       hint=f"Tweedie targets with 1 <= power < 2 are non-negative "
                            f"(power={p:g})")
    else:
        check_in_range(xp, "target", t, 0.0, _INF, lo_open=True,
                       hint=f"Tweedie targets with power >= 2 are positive (power={p:g})")


class TweedieDeviance(Loss):
    r"""Half Tweedie deviance on the log link: Poisson, compound Poisson-Gamma, Gamma and more.

    Parameters
    ----------
    prediction : array of shape (*), floating
        The raw score :math:`r`; the predicted mean is :math:`\mu = e^{r}`.
    target : array of the same shape
        Observed values :math:`t`: any real for ``power=0``, :math:`t \ge 0` for
        :math:`1 \le p < 2` (insurance claims, rainfall: exact zeros and positive amounts),
        :math:`t > 0` for :math:`p \ge 2`.
    power : float, default 1.5
        The Tweedie power :math:`p` of the variance function :math:`V(\mu) = \mu^p`: 0
        (normal), 1 (Poisson), between 1 and 2 (compound Poisson-Gamma), 2 (Gamma), 3
        (inverse Gaussian), or any other value :math:`\ge 1`. Values in :math:`(0, 1)`
        define no distribution and negative ones are not supported: both are errors.
    {common_parameters}

    Notes
    -----
    With :math:`\mu = e^{r}`, :math:`a = 1 - p` and :math:`b = 2 - p`, for
    :math:`p \notin \{1, 2\}`:

    .. math::

        \ell = \tfrac12 d(t, \mu) = \frac{t^{b}}{a b} - \frac{t\,\mu^{a}}{a}
               + \frac{\mu^{b}}{b},
        \qquad
        \frac{\partial \ell}{\partial r} = \mu^{b} - t\,\mu^{a}
        = e^{(2-p) r} - t\,e^{(1-p) r},
        \qquad
        \frac{\partial^2 \ell}{\partial r^2} = b\,\mu^{b} - a\,t\,\mu^{a}
        = (2-p)\,e^{(2-p) r} - (1-p)\,t\,e^{(1-p) r}

    and the limits :math:`t \log(t/\mu) - t + \mu` (:math:`p = 1`, Poisson) and
    :math:`t/\mu - \log(t/\mu) - 1` (:math:`p = 2`, Gamma), with gradients
    :math:`\mu - t` and :math:`1 - t/\mu` and second derivatives :math:`\mu` and
    :math:`t/\mu`. At :math:`t = 0` the loss is :math:`\mu^{b}/b`. The second derivative
    is :math:`t^{b}` at the optimum :math:`\mu = t`, positive for :math:`1 \le p \le 2`,
    and negative for :math:`p > 2` where :math:`\mu > (p - 1)\,t/(p - 2)` (and for
    :math:`p = 0` where :math:`\mu < t/2`). It is formed as
    :math:`\mu^{b}(b - a\,t/\mu)` above the target and :math:`t\mu^{a}(b\,\mu/t - a)`
    below it, like the gradient. The loss is 0 exactly when :math:`\mu = t`, and convex in
    :math:`r` for :math:`1 \le p \le 2`. Near the optimum (:math:`|x| \le 1`,
    :math:`x = \log t - r = \log(t/\mu)`) it is evaluated as
    :math:`t^{b}\,(\varphi(-b x)/b - \varphi(-a x)/a)` with
    :math:`\varphi(u) = e^{u} - 1 - u` (``expm1mx``, summed by its series for small
    :math:`u`): the terms :math:`-x` that make the textbook form cancel are gone, so the
    value keeps its relative accuracy as :math:`\mu \to t`. Farther out the three terms
    are summed as :math:`e^{M}` times exponentials of at most 1 (:math:`M` the largest
    exponent), so the value is infinite only where it overflows, never NaN. The gradient
    is :math:`\mu^{b}(1 - t/\mu)` above the target and
    :math:`t^{b} e^{-a x}(e^{-x} - 1)` below it, each factor bounded where the other is
    large.

    Conventions: scikit-learn's ``HalfTweedieLoss(power=p)`` (``sklearn._loss.loss``) has
    the same gradient and the value minus a term of :math:`t` alone (``loss(t, r) +
    constant_to_optimal_zero(t)`` is this value); ``mean_tweedie_deviance(t, exp(r),
    power=p)`` is twice the ``"mean"``. XGBoost's ``reg:tweedie`` objective
    (``tweedie_variance_power=p``, :math:`1 \le p < 2`) uses this gradient;
    ``tweedie_deviance(power=1)`` is ``poisson_nll`` (log input) plus a term of :math:`t`
    alone.

    References
    ----------
    .. [1] B. Jørgensen, *The Theory of Dispersion Models*, Chapman & Hall 1997, ch. 4.
    .. [2] P. McCullagh, J. A. Nelder, *Generalized Linear Models*, 2nd ed., Chapman & Hall
       1989, sec. 2.3.

    Examples
    --------
    Poisson (:math:`p = 1`) at :math:`\mu = e^0 = 1`, :math:`t = 2`:
    :math:`2 \log 2 - 2 + 1 = 0.386294...`, gradient :math:`\mu - t = -1`; a perfect
    prediction costs 0.

    >>> import numpy as np, losskit as lk
    >>> r, t = np.array([0.0, np.log(3.0)]), np.array([2.0, 3.0])
    >>> lk.tweedie_deviance(r, t, power=1, reduction="none").round(6)
    array([0.386294, 0.      ])
    >>> lk.tweedie_deviance.grad(r, t, power=1, reduction="sum").round(12)
    array([-1.,  0.])
    """

    name = "tweedie_deviance"
    family = "regression"
    prediction = "real (log of the mean)"
    target = "real, same shape (t >= 0 for 1 <= power < 2, t > 0 for power >= 2)"
    formula = (r"\ell = \frac{t^{2-p}}{(1-p)(2-p)} - \frac{t\,\mu^{1-p}}{1-p} + "
               r"\frac{\mu^{2-p}}{2-p},\ \mu = e^{r}")
    gradient_formula = r"\frac{\partial \ell}{\partial r} = e^{(2-p) r} - t\,e^{(1-p) r}"
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial r^2} = "
                       r"(2-p)\,e^{(2-p) r} - (1-p)\,t\,e^{(1-p) r}")
    second_order = "diagonal"
    when_to_use = (
        "Regression of non-negative amounts with many exact zeros and a skewed positive "
        "part (insurance claims, rainfall, sales): 1 < power < 2 is the compound "
        "Poisson-Gamma distribution. The model predicts log(mean), so the mean stays "
        "positive. power=1 is Poisson counts, power=2 Gamma (positive, multiplicative "
        "noise). The loss of scikit-learn's TweedieRegressor and XGBoost's reg:tweedie."
    )
    references = (
        "Jørgensen, The Theory of Dispersion Models, 1997",
        "McCullagh and Nelder, Generalized Linear Models, 1989",
    )

    def _compute(self, ctx, prediction, target, *, need_grad, power=1.5):
        xp = ctx.xp
        p = _check_power(power)
        t = self._real_target(ctx, prediction, target)
        _check_target(xp, t, p)
        value, grad = TWEEDIE.on(xp)(prediction, t, p)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(TWEEDIE, prediction, t, p))


class GammaDeviance(Loss):
    r"""Half Gamma deviance on the log link, for positive targets with multiplicative noise.

    Parameters
    ----------
    prediction : array of shape (*), floating
        The raw score :math:`r`; the predicted mean is :math:`\mu = e^{r}`.
    target : array of the same shape
        Observed positive values :math:`t > 0`.
    {common_parameters}

    Notes
    -----
    With :math:`\mu = e^{r}` and :math:`x = \log(t/\mu) = \log t - r`:

    .. math::

        \ell = \frac{t}{\mu} - \log\frac{t}{\mu} - 1 = e^{x} - 1 - x,
        \qquad
        \frac{\partial \ell}{\partial r} = 1 - \frac{t}{\mu} = -\operatorname{expm1}(x),
        \qquad
        \frac{\partial^2 \ell}{\partial r^2} = \frac{t}{\mu} = e^{x}

    The value is computed as :math:`\varphi(x) = e^{x} - 1 - x` by its series near 0
    (``expm1(x) - x`` would keep no digit of :math:`x^2/2` for tiny :math:`x`).
    It depends on :math:`t/\mu` only (a 10% error costs the same at every scale), is 0 at
    :math:`\mu = t` and convex in :math:`r`. It is ``tweedie_deviance(power=2)``.
    scikit-learn's ``HalfGammaLoss`` has the same gradient and the value
    :math:`r + t e^{-r}` (``loss(t, r) + constant_to_optimal_zero(t)`` is this value);
    ``mean_gamma_deviance(t, exp(r))`` is twice the ``"mean"``; XGBoost's ``reg:gamma``
    uses this gradient (and the Hessian :math:`t/\mu`).

    References
    ----------
    .. [1] P. McCullagh, J. A. Nelder, *Generalized Linear Models*, 2nd ed., Chapman & Hall
       1989, ch. 8.

    Examples
    --------
    A mean of :math:`e^0 = 1` for :math:`t = e`: :math:`e - 1 - 1 = 0.718281...`, gradient
    :math:`1 - e`.

    >>> import numpy as np, losskit as lk
    >>> r, t = np.array([0.0]), np.array([np.e])
    >>> round(float(lk.gamma_deviance(r, t)), 12), round(float(np.e - 2), 12)
    (0.718281828459, 0.718281828459)
    >>> lk.gamma_deviance.grad(r, t).round(6)
    array([-1.718282])
    """

    name = "gamma_deviance"
    family = "regression"
    prediction = "real (log of the mean)"
    target = "positive reals, same shape"
    formula = r"\ell = \frac{t}{\mu} - \log\frac{t}{\mu} - 1,\ \mu = e^{r}"
    gradient_formula = r"\frac{\partial \ell}{\partial r} = 1 - t\,e^{-r}"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial r^2} = t\,e^{-r}"
    second_order = "diagonal"
    when_to_use = (
        "Regression of positive quantities whose noise grows with their size (costs, "
        "durations, claim severities): the loss depends on the ratio t / mean only, so a "
        "10% miss costs the same for small and large targets. The model predicts "
        "log(mean). scikit-learn's GammaRegressor and XGBoost's reg:gamma."
    )
    references = ("McCullagh and Nelder, Generalized Linear Models, 1989",)

    def _compute(self, ctx, prediction, target, *, need_grad):
        xp = ctx.xp
        t = self._real_target(ctx, prediction, target)
        check_in_range(xp, "target", t, 0.0, _INF, lo_open=True,
                       hint="Gamma targets are positive")
        value, grad = GAMMA.on(xp)(prediction, t)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(GAMMA, prediction, t))


tweedie_deviance = register(TweedieDeviance())
gamma_deviance = register(GammaDeviance())


def _power(v):
    """The fast path's validator of ``power``: a plain number, 0 or at least 1."""
    p = pointwise.number()(v)
    return p if p is not None and (p == 0 or p >= 1) else None


# fused NumPy kernels (losskit.kernels.pointwise: the formulas above)
register_fast_path(TweedieDeviance, pointwise.fast_path(TWEEDIE, {"power": _power},
                                                        check=TWEEDIE_OK))
register_fast_path(GammaDeviance, pointwise.fast_path(GAMMA, check=GAMMA_OK))
