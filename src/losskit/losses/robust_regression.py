r"""Robust regression losses: Huber, smooth L1, pseudo-Huber, log-cosh and the quantile (pinball) loss.

Each kernel returns the elementwise loss of the residual and its elementwise derivative
with respect to the prediction :math:`y`. Huber and smooth L1 are written through the
split :math:`q = \min(|d|, \delta)` (the quadratic part) and :math:`|d| - q` (the linear
part), so that neither branch is ever evaluated where it does not apply: the value is
finite for residuals as large as 1e300 and the gradient is exact on both sides of the
kink. Log-cosh is formed without ``cosh`` (which overflows past :math:`|d| \approx 710`)
and without the cancellation of :math:`\log(e^d + e^{-d}) - \log 2` near :math:`d = 0`.

Sample weights (``sample_weight=``) multiply each example's loss; ``reduction="mean"``
then divides by the sum of the weights. PyTorch's ``weight=`` (where it exists) divides
by the number of elements instead: each docstring says how to reproduce it.
"""

from __future__ import annotations

import math

from ..core.arrays import numbers_on
from ..core.dispatch import register_fast_path
from ..core.formula import (Formula, expm1, exp, isnan, log1p_unit, maximum, minimum, sign,
                            sqrt, where)
from ..kernels import pointwise
from ..core.loss import Loss, Terms, register
from ..core.validation import check_numeric, check_same_shape, check_scalar

__all__ = ["huber", "smooth_l1", "pseudo_huber", "log_cosh", "quantile", "pinball"]

_INF = float("inf")
_LN2 = math.log(2.0)


# --------------------------------------------------------------------------- the formulas
# Each is the loss's pointwise math, stated once (losskit.core.formula): the generic
# kernels below evaluate it on any array library, the fused NumPy kernel
# (losskit.kernels.pointwise) compiles the same function with numba.
def _huber(y, t, delta):
    d = y - t
    a = abs(d)
    q = minimum(a, delta)  # NaN propagates through minimum
    return 0.5 * (q * q) + delta * (a - q), sign(d) * q


def _smooth_l1(y, t, beta):
    d = y - t
    a = abs(d)
    if beta == 0:  # the limit beta -> 0: plain absolute error, no 0/0
        return a, sign(d)
    q = minimum(a, beta)  # NaN propagates through minimum
    r = q / beta  # min(|d| / beta, 1)
    return 0.5 * (r * q) + (a - q), sign(d) * r  # a - q is exactly 0 on the quadratic side


def _pseudo_huber(y, t, delta):
    d = y - t
    a = abs(d) / delta  # |s|, s = d / delta
    big = a > 1.0
    inv = where(big, 1.0 / where(big, a, 1.0), a)  # min(|s|, 1/|s|): no overflow below
    root = sqrt(1.0 + inv * inv)  # sqrt(1 + s^2) = |s| root (big) or root
    # delta^2 (sqrt(1 + s^2) - 1) = delta |d| |s| / (1 + sqrt(1 + s^2)): no cancellation
    ratio = where(big, 1.0 / (inv + root), a / (1.0 + root))
    grad = where(big, delta * sign(d), d) / root  # d / sqrt(1 + s^2)
    return delta * abs(d) * ratio, grad


def _log_cosh(y, t):
    d = y - t
    a = abs(d)
    small = a < 1.0  # NaN goes to the large branch and propagates there
    u = expm1(-a)  # e^{-a} - 1, relative-exact near 0
    # e^{-a} as 1 + u: one transcendental function fewer; its absolute error (an ulp of 1)
    # costs the value at most about 2 ulp (v enters as u^2 / 2v below 1, as log1p(v^2)
    # above, where v < 0.37 and the value exceeds 0.43)
    v = 1.0 + u
    w = u * (2.0 + u)  # e^{-2a} - 1
    th = -w / (2.0 + w)  # tanh a
    # cosh a - 1 = u^2 / (2 e^{-a}) below 1, log(2 cosh a) = a + log1p(e^{-2a}) above:
    # one log1p of the argument of the branch taken (double where: no division by 0)
    arg = where(small, (u * u) / (2.0 * where(small, v, 1.0)), v * v)
    lg = log1p_unit(arg)  # arg in [0, 0.55): u in (-0.64, 0] below 1, v <= e^-1 above
    # the value ends in a select (bit-identical to adding where(small, 0, a - log 2)), so
    # that XLA on the CPU computes it in one loop (whose result it still writes out once
    # for its XNNPACK sum, which takes no transcendental functions; Optax's too); the
    # gradient takes its sign as a factor (equal to where(d < 0, -th, th)): th is read
    # once, so XLA fuses its division into the gradient's loop instead of writing it out
    return where(small, lg, (a - _LN2) + lg), sign(d) * th


def _quantile(y, t, q):
    d = t - y
    value = maximum(q * d, (q - 1.0) * d)  # NaN propagates
    # -q below the target, 1 - q above, 0 at the kink; 0 * d keeps NaN
    return value, where(d > 0, -q, where(d < 0, 1.0 - q, 0.0 * d))


# the second derivatives with respect to the prediction (d^2 value / dy^2), per element.
# At a kink of the gradient (|d| = delta of Huber, |d| = beta of smooth L1) the quadratic
# side's value is used; NaN propagates, an infinite residual on the linear side gives 0
def _huber_hessian(y, t, delta):
    d = y - t
    return where(abs(d) <= delta, 1.0, where(isnan(d), d, 0.0))


def _smooth_l1_hessian(y, t, beta):
    d = y - t
    if beta == 0:  # the absolute error: 0 away from the kink d = 0
        return where(isnan(d), d, 0.0)
    return where(abs(d) <= beta, 1.0 / beta, where(isnan(d), d, 0.0))


def _pseudo_huber_hessian(y, t, delta):
    # (1 + s^2)^{-3/2}, s = d / delta: 1 / root^3 for |s| <= 1, and (1/|s|)^3 / root^3
    # with root = sqrt(1 + 1/s^2) beyond (no overflow of s^2; 0 at |d| = inf)
    a = abs(y - t) / delta
    big = a > 1.0
    inv = where(big, 1.0 / where(big, a, 1.0), a)  # min(|s|, 1/|s|)
    root = sqrt(1.0 + inv * inv)
    c = 1.0 / (root * root * root)
    return where(big, (inv * inv * inv) * c, c)


def _log_cosh_hessian(y, t):
    # sech^2 d = 1 - tanh^2 d = 4 e^{-2a} / (1 + e^{-2a})^2, a = |d|: no cancellation of
    # 1 - tanh^2 for large |d| (where it would be 0 instead of 4 e^{-2a}), 0 at |d| = inf
    v = exp(-abs(y - t))
    v2 = v * v
    den = 1.0 + v2
    return 4.0 * v2 / (den * den)


def _quantile_hessian(y, t, q):
    d = t - y
    return where(isnan(d), d, 0.0)  # 0 away from the kink y = t, where it does not exist


HUBER = Formula(_huber, hessian=_huber_hessian)
SMOOTH_L1 = Formula(_smooth_l1, hessian=_smooth_l1_hessian)
PSEUDO_HUBER = Formula(_pseudo_huber, hessian=_pseudo_huber_hessian)
LOG_COSH = Formula(_log_cosh, hessian=_log_cosh_hessian)
QUANTILE = Formula(_quantile, hessian=_quantile_hessian)


class Huber(Loss):
    r"""Huber loss: quadratic for residuals up to ``delta``, linear beyond.

    Parameters
    ----------
    prediction : array of shape (*), floating
        Real-valued predictions :math:`y`.
    target : array of the same shape
        Real-valued targets :math:`t`. Nothing is broadcast: ``(N, 1)`` against ``(N,)``
        is an error.
    delta : float, default 1
        The threshold :math:`\delta > 0` (finite) where the loss turns from quadratic to
        linear.
    {common_parameters}

    Notes
    -----
    With the residual :math:`d = y - t`:

    .. math::

        \ell = \begin{cases} \tfrac12 d^2 & |d| \le \delta \\
                             \delta\,(|d| - \tfrac12 \delta) & |d| > \delta \end{cases}
        \qquad
        \frac{\partial \ell}{\partial y} = \operatorname{clip}(d, -\delta, \delta)
        = \operatorname{sign}(d)\min(|d|, \delta),
        \qquad
        \frac{\partial^2 \ell}{\partial y^2} = [|d| \le \delta]

    It is computed as :math:`\tfrac12 q^2 + \delta (|d| - q)` with
    :math:`q = \min(|d|, \delta)`, which is the same function, never squares a large
    residual (finite for :math:`|d| = 10^{300}`), and whose derivative is continuous, so
    the gradient at the kink :math:`|d| = \delta` is exactly :math:`\pm\delta`. The
    second derivative jumps there from 1 to 0; ``hessian`` gives the quadratic side's 1.
    This is PyTorch's ``huber_loss(..., delta=delta)`` and Optax's ``huber_loss``
    (unreduced: ``reduction="none"``). ``huber(delta=b) / b`` is ``smooth_l1(beta=b)``.

    PyTorch's ``huber_loss(y, t, weight=w, reduction="mean")`` multiplies elementwise
    and divides by the **number of elements**: it equals
    ``huber(y, t, sample_weight=w, reduction="sum") / y.size`` (``"none"`` and ``"sum"``
    agree directly), whereas losskit's weighted ``"mean"`` divides by ``w.sum()``.

    References
    ----------
    .. [1] P. J. Huber, "Robust estimation of a location parameter", Annals of
       Mathematical Statistics 35(1), 1964, doi:10.1214/aoms/1177703732.

    Examples
    --------
    Residuals 0.5 (quadratic: 0.5 * 0.25) and 3 (linear: 1 * (3 - 0.5)):

    >>> import numpy as np, losskit as lk
    >>> lk.huber(np.array([0.5, 3.0]), np.array([0.0, 0.0]), reduction="none")
    array([0.125, 2.5  ])
    >>> lk.huber.grad(np.array([0.5, 3.0]), np.array([0.0, 0.0]), reduction="sum")
    array([0.5, 1. ])
    """

    name = "huber"
    family = "regression"
    prediction = "real"
    target = "real, same shape"
    formula = (r"\ell = \begin{cases} \tfrac12 d^2 & |d| \le \delta \\ "
               r"\delta (|d| - \tfrac12 \delta) & |d| > \delta \end{cases},\ d = y - t")
    gradient_formula = (r"\frac{\partial \ell}{\partial y} = "
                        r"\operatorname{clip}(y - t, -\delta, \delta)")
    hessian_formula = r"\frac{\partial^2 \ell}{\partial y^2} = [|y - t| \leq \delta]"
    second_order = "diagonal"
    when_to_use = (
        "Regression with occasional outliers: small residuals are penalised quadratically "
        "(like mse, smooth near the optimum) and residuals beyond delta only linearly (like "
        "mae), so a few wild targets cannot dominate the gradient, which is bounded by "
        "delta. Choose delta around the noise level you still trust."
    )
    references = ("Huber, Robust estimation of a location parameter, 1964, "
                  "doi:10.1214/aoms/1177703732",)


    def _compute(self, ctx, prediction, target, *, need_grad, delta=1.0):
        xp = ctx.xp
        b = check_scalar("delta", delta, lo=0.0, hi=_INF, lo_open=True, hi_open=True)
        t = self._real_target(ctx, prediction, target)
        value, grad = HUBER.on(xp)(prediction, t, b)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(HUBER, prediction, t, b))


class SmoothL1(Loss):
    r"""Smooth L1 loss (Fast R-CNN): quadratic below ``beta``, absolute error beyond.

    Parameters
    ----------
    prediction : array of shape (*), floating
    target : array of the same shape
    beta : float, default 1
        The threshold :math:`\beta \ge 0` (finite). ``beta=0`` is exactly the absolute
        error ``mae`` (value :math:`|d|`, subgradient 0 at :math:`d = 0`).
    {common_parameters}

    Notes
    -----
    With :math:`d = y - t`:

    .. math::

        \ell = \begin{cases} \dfrac{d^2}{2\beta} & |d| < \beta \\
                             |d| - \tfrac12 \beta & |d| \ge \beta \end{cases}
        \qquad
        \frac{\partial \ell}{\partial y} = \operatorname{clip}(d / \beta, -1, 1),
        \qquad
        \frac{\partial^2 \ell}{\partial y^2} = \frac{[|d| \le \beta]}{\beta}

    The second derivative jumps from :math:`1/\beta` to 0 at :math:`|d| = \beta`;
    ``hessian`` gives the quadratic side's :math:`1/\beta` there, and 0 everywhere for
    ``beta=0`` (the absolute error, whose Hessian is undefined at :math:`d = 0`).
    Computed as :math:`\tfrac12 (q/\beta)\,q + (|d| - q)` with :math:`q = \min(|d|, \beta)`;
    for :math:`\beta = 0` the limit :math:`|d|` with gradient :math:`\operatorname{sign}(d)`
    is used instead of forming :math:`0/0`. This is PyTorch's ``smooth_l1_loss(...,
    beta=beta)``; ``smooth_l1(beta=b)`` equals ``huber(delta=b) / b``.

    PyTorch's ``smooth_l1_loss`` has no ``weight=``; the weighted loss
    ``(w * smooth_l1_loss(y, t, reduction="none")).sum() / w.sum()`` is
    ``smooth_l1(y, t, sample_weight=w)``, and dividing by the number of elements instead
    is ``smooth_l1(y, t, sample_weight=w, reduction="sum") / y.size``.

    References
    ----------
    .. [1] R. Girshick, "Fast R-CNN", ICCV 2015, arXiv:1504.08083.

    Examples
    --------
    With beta = 2: residual 1 gives 1 / (2 * 2) = 0.25, residual 3 gives 3 - 1 = 2.

    >>> import numpy as np, losskit as lk
    >>> lk.smooth_l1(np.array([1.0, 3.0]), np.array([0.0, 0.0]), beta=2.0, reduction="none")
    array([0.25, 2.  ])
    >>> lk.smooth_l1.grad(np.array([1.0, 3.0]), np.array([0.0, 0.0]), beta=2.0,
    ...                   reduction="sum")
    array([0.5, 1. ])
    """

    name = "smooth_l1"
    family = "regression"
    prediction = "real"
    target = "real, same shape"
    formula = (r"\ell = \begin{cases} d^2 / (2\beta) & |d| < \beta \\ "
               r"|d| - \tfrac12 \beta & |d| \ge \beta \end{cases},\ d = y - t")
    gradient_formula = (r"\frac{\partial \ell}{\partial y} = "
                        r"\operatorname{clip}((y - t) / \beta, -1, 1)")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial y^2} = "
                       r"\frac{[|y - t| \leq \beta]}{\beta}\ (0\ \text{for}\ \beta = 0)")
    second_order = "diagonal"
    when_to_use = (
        "Bounding-box and other regression where outliers should cost linearly but the "
        "optimum should stay smooth: the gradient is at most 1 in size (like mae) but "
        "shrinks to 0 near a perfect prediction (like mse). It is the Huber loss divided "
        "by its threshold, the convention of Fast R-CNN and detection libraries."
    )
    references = ("Girshick, Fast R-CNN, ICCV 2015, arXiv:1504.08083",)

    def _compute(self, ctx, prediction, target, *, need_grad, beta=1.0):
        xp = ctx.xp
        b = check_scalar("beta", beta, lo=0.0, hi=_INF, hi_open=True)
        t = self._real_target(ctx, prediction, target)
        value, grad = SMOOTH_L1.on(xp)(prediction, t, b)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(SMOOTH_L1, prediction, t, b))


class PseudoHuber(Loss):
    r"""Pseudo-Huber loss: a smooth Huber, quadratic near 0 and asymptotically linear.

    Parameters
    ----------
    prediction : array of shape (*), floating
    target : array of the same shape
    delta : float, default 1
        The scale :math:`\delta > 0` (finite) where the loss turns from quadratic to
        linear; the slope far out is :math:`\delta`.
    {common_parameters}

    Notes
    -----
    With :math:`d = y - t`:

    .. math::

        \ell = \delta^2 \left(\sqrt{1 + (d/\delta)^2} - 1\right), \qquad
        \frac{\partial \ell}{\partial y} = \frac{d}{\sqrt{1 + (d/\delta)^2}}, \qquad
        \frac{\partial^2 \ell}{\partial y^2} = \left(1 + (d/\delta)^2\right)^{-3/2}

    :math:`\ell \approx d^2/2` for :math:`|d| \ll \delta` and
    :math:`\approx \delta (|d| - \delta)` for :math:`|d| \gg \delta`; unlike
    ``huber`` every derivative is continuous. It is computed as
    :math:`\delta |d|\,|s| / (1 + \sqrt{1 + s^2})` with :math:`s = d/\delta` and the
    square root taken as :math:`|s| \sqrt{1 + s^{-2}}` for :math:`|s| > 1`: no
    cancellation near 0 (the textbook form loses every digit for
    :math:`|d| < 10^{-8}\delta`) and no overflow of :math:`s^2` (finite at
    :math:`|d| = 10^{300}`). XGBoost's ``reg:pseudohubererror`` objective
    (``huber_slope=delta``) uses this value and gradient.

    References
    ----------
    .. [1] P. Charbonnier, L. Blanc-Féraud, G. Aubert, M. Barlaud, "Two deterministic
       half-quadratic regularization algorithms for computed imaging", ICIP 1994,
       doi:10.1109/ICIP.1994.413553.
    .. [2] R. Hartley, A. Zisserman, *Multiple View Geometry in Computer Vision*, 2nd ed.,
       Cambridge University Press 2004, sec. A6.8.

    Examples
    --------
    :math:`d = 3/4`, :math:`\delta = 1`: :math:`\sqrt{1 + 9/16} - 1 = 5/4 - 1 = 0.25`, and
    the gradient :math:`(3/4)/(5/4) = 0.6`.

    >>> import numpy as np, losskit as lk
    >>> lk.pseudo_huber(np.array([0.75]), np.array([0.0]), reduction="none")
    array([0.25])
    >>> lk.pseudo_huber.grad(np.array([0.75]), np.array([0.0]))
    array([0.6])
    """

    name = "pseudo_huber"
    family = "regression"
    prediction = "real"
    target = "real, same shape"
    formula = r"\ell = \delta^2 \left(\sqrt{1 + ((y - t)/\delta)^2} - 1\right)"
    gradient_formula = (r"\frac{\partial \ell}{\partial y} = "
                        r"\frac{y - t}{\sqrt{1 + ((y - t)/\delta)^2}}")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial y^2} = "
                       r"\left(1 + ((y - t)/\delta)^2\right)^{-3/2}")
    second_order = "diagonal"
    when_to_use = (
        "Regression with outliers when the loss must be smooth everywhere (second-order "
        "optimisers, gradient boosting with Hessians): it behaves like Huber, quadratic "
        "near 0 and linear beyond delta, but with no kink in its derivative. The gradient "
        "is bounded by delta."
    )
    references = (
        "Charbonnier et al., Two deterministic half-quadratic regularization algorithms "
        "for computed imaging, ICIP 1994, doi:10.1109/ICIP.1994.413553",
        "Hartley and Zisserman, Multiple View Geometry in Computer Vision, 2004, sec. A6.8",
    )

    def _compute(self, ctx, prediction, target, *, need_grad, delta=1.0):
        xp = ctx.xp
        b = check_scalar("delta", delta, lo=0.0, hi=_INF, lo_open=True, hi_open=True)
        t = self._real_target(ctx, prediction, target)
        value, grad = PSEUDO_HUBER.on(xp)(prediction, t, b)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(PSEUDO_HUBER, prediction, t, b))


class LogCosh(Loss):
    r"""Log-cosh loss :math:`\ell = \log\cosh(y - t)`, computed without overflow.

    Parameters
    ----------
    prediction : array of shape (*), floating
    target : array of the same shape
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \log\cosh d, \qquad \frac{\partial \ell}{\partial y} = \tanh d,
        \qquad \frac{\partial^2 \ell}{\partial y^2} = \operatorname{sech}^2 d
        = \frac{4 e^{-2|d|}}{(1 + e^{-2|d|})^2}, \qquad d = y - t

    It behaves like :math:`d^2/2` for small residuals and like :math:`|d| - \log 2` for
    large ones, and is smooth everywhere (a twice differentiable Huber). ``cosh`` itself
    overflows for :math:`|d| > 710` (float64), so with :math:`a = |d|` the kernel uses

    .. math::

        \log\cosh d = \begin{cases}
            \operatorname{log1p}\!\left(\dfrac{u^2}{2 e^{-a}}\right),\
            u = \operatorname{expm1}(-a) & a < 1 \\
            a - \log 2 + \operatorname{log1p}(e^{-2a}) & a \ge 1 \end{cases},
        \qquad \tanh a = \frac{-w}{2 + w},\ w = u (2 + u) = e^{-2a} - 1

    The second line is the softplus form :math:`\log(e^{d} + e^{-d}) - \log 2` of Optax's
    ``log_cosh`` (finite at :math:`|d| = 10^{300}`); the first avoids its cancellation
    near 0, where it would lose all relative accuracy (:math:`\ell \approx d^2/2`). One
    exponential and one ``expm1`` give both lines and the gradient.

    References
    ----------
    .. [1] R. Neuneier, H. G. Zimmermann, "How to train neural networks", in *Neural
       Networks: Tricks of the Trade*, LNCS 1524, Springer 1998,
       doi:10.1007/3-540-49430-8_18.
    .. [2] P. Chen, G. Chen, S. Zhang, "Log hyperbolic cosine loss improves variational
       auto-encoder", 2019, https://openreview.net/forum?id=rkglvsC9Ym.

    Examples
    --------
    At :math:`d = \ln 2`: :math:`\cosh d = (2 + 1/2)/2 = 1.25` and
    :math:`\tanh d = (2 - 1/2)/(2 + 1/2) = 0.6`.

    >>> import numpy as np, losskit as lk
    >>> y, t = np.array([np.log(2.0)]), np.array([0.0])
    >>> round(float(lk.log_cosh(y, t)), 15), round(float(np.log(1.25)), 15)   # to 1 ulp
    (0.223143551314210, 0.223143551314210)
    >>> lk.log_cosh.grad(y, t)
    array([0.6])
    """

    name = "log_cosh"
    family = "regression"
    prediction = "real"
    target = "real, same shape"
    formula = r"\ell = \log\cosh(y - t)"
    gradient_formula = r"\frac{\partial \ell}{\partial y} = \tanh(y - t)"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial y^2} = \operatorname{sech}^2(y - t)"
    second_order = "diagonal"
    when_to_use = (
        "Regression that should act like mse for small errors and like mae for large ones, "
        "with a loss that is smooth everywhere (twice differentiable, no threshold to "
        "choose, unlike Huber). The gradient tanh(d) is bounded by 1, so outliers cannot "
        "blow up training."
    )
    references = (
        "Neuneier and Zimmermann, How to train neural networks, 1998, "
        "doi:10.1007/3-540-49430-8_18",
        "Chen, Chen and Zhang, Log hyperbolic cosine loss improves variational "
        "auto-encoder, 2019",
    )

    def _compute(self, ctx, prediction, target, *, need_grad):
        t = self._real_target(ctx, prediction, target)
        value, grad = LOG_COSH.on(ctx.xp)(prediction, t)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(LOG_COSH, prediction, t))


class Quantile(Loss):
    r"""Quantile (pinball) loss: under-prediction costs :math:`q`, over-prediction :math:`1-q`.

    Minimising its mean over :math:`y` gives the :math:`q`-quantile of the targets.

    Parameters
    ----------
    prediction : array of shape (*), floating
        The predicted :math:`q`-quantile :math:`y`.
    target : array of the same shape
        Observed values :math:`t`.
    q : float or sequence of floats, default 0.5
        The quantile level, in the open interval (0, 1). A sequence of :math:`Q` levels
        (a list, tuple or 1-d array) trains a multi-quantile head: ``prediction`` then
        has a last axis of length :math:`Q`, column :math:`j` predicting level
        :math:`q_j`, and ``target`` has either that shape or the prediction's shape
        without the last axis (one target for every level).
    {common_parameters}

    Notes
    -----
    With the residual taken as **target minus prediction**, :math:`d' = t - y`
    (positive when the prediction is too low):

    .. math::

        \ell = \max(q\,d',\ (q - 1)\,d') = \begin{cases} q\,(t - y) & y < t \\
                                                   (1 - q)\,(y - t) & y \ge t \end{cases}
        \qquad
        \frac{\partial \ell}{\partial y} = \begin{cases} -q & y < t \\
                                              1 - q & y > t \\ 0 & y = t \end{cases}
        \qquad
        \frac{\partial^2 \ell}{\partial y^2} = 0 \quad (y \ne t)

    At the kink :math:`y = t` any value in :math:`[-q, 1 - q]` is a subgradient; 0 is
    used (it lies in that interval for every :math:`q`, and makes ``quantile(q=0.5)``
    exactly half of ``mae``, value and gradient). This is the convention of
    scikit-learn's ``mean_pinball_loss(t, y, alpha=q)`` (its mean is
    ``reduction="mean"``) and of Koenker and Bassett's check function
    :math:`\rho_q(t - y)`.

    The loss is piecewise linear in :math:`y`: its Hessian is 0 almost everywhere and
    undefined at the kink :math:`y = t`, and ``hessian`` returns zeros. Gradient boosting
    works around it: XGBoost's ``reg:quantileerror`` uses a Hessian of 1 (times the sample
    weight) and then refits each leaf's value by the weighted quantile of its residuals;
    LightGBM's ``quantile`` likewise uses Hessian 1 and renews the leaf outputs by
    percentiles.

    With several levels the unreduced loss has the prediction's shape (one value per
    level), ``"mean"`` averages over every element, levels included, and for ``(N, Q)``
    predictions ``reduction="batchmean"`` is the sum over the levels averaged over the
    examples, the quantile loss of the Temporal Fusion Transformer (Lim et al. 2021).

    PyTorch has no quantile loss; sample weights give
    :math:`\sum_n s_n \ell_n / \sum_n s_n` with ``reduction="mean"``, as
    ``mean_pinball_loss(..., sample_weight=s)`` does.

    References
    ----------
    .. [1] R. Koenker, G. Bassett, "Regression quantiles", Econometrica 46(1), 1978,
       doi:10.2307/1913643.

    Examples
    --------
    The 0.9-quantile: predicting 1 for a target 2 (too low by 1) costs 0.9, predicting 3
    (too high by 1) costs 0.1.

    >>> import numpy as np, losskit as lk
    >>> y, t = np.array([1.0, 3.0]), np.array([2.0, 2.0])
    >>> lk.quantile(y, t, q=0.9, reduction="none")
    array([0.9, 0.1])
    >>> lk.quantile.grad(y, t, q=0.9, reduction="sum")
    array([-0.9,  0.1])
    """

    name = "quantile"
    aliases = ("pinball",)
    family = "regression"
    prediction = "real"
    target = "real, same shape"
    formula = r"\ell = \max(q (t - y), (q - 1)(t - y))"
    gradient_formula = (r"\frac{\partial \ell}{\partial y} = -q\,[y < t] + (1 - q)\,[y > t]")
    hessian_formula = r"\frac{\partial^2 \ell}{\partial y^2} = 0\ (y \ne t)"
    second_order = "zero"
    when_to_use = (
        "Predicting a quantile rather than the mean: q = 0.5 gives the median (half the mae), "
        "q = 0.9 a value the target stays below 90% of the time. Train one output per level "
        "for prediction intervals. Under-prediction costs q per unit and over-prediction "
        "1 - q, so the loss is asymmetric for q other than 0.5."
    )
    references = ("Koenker and Bassett, Regression quantiles, Econometrica 1978, "
                  "doi:10.2307/1913643",)

    def _compute(self, ctx, prediction, target, *, need_grad, q=0.5):
        xp = ctx.xp
        levels = _quantile_levels(q)
        if levels is None:
            level = check_scalar("q", q, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
            t = self._real_target(ctx, prediction, target)
        else:  # a multi-quantile head: one column per level on the last axis
            shape = tuple(prediction.shape)
            if not shape or shape[-1] != len(levels):
                raise ValueError(
                    f"`prediction` of quantile must have a last axis of length len(q) = "
                    f"{len(levels)} (one column per quantile level); got shape {shape}")
            t = ctx.asarray(target, "target")
            check_numeric(xp, "target", t)
            if tuple(t.shape) == shape[:-1]:  # one target for every level
                t = xp.broadcast_to(xp.expand_dims(t, axis=-1), shape)
            else:
                check_same_shape("prediction", shape, "target", tuple(t.shape),
                                 hint=f"Or {shape[:-1]}: one target for every quantile level")
            if t.dtype != ctx.work:
                t = xp.astype(t, ctx.work)
            level = numbers_on(xp, levels, dtype=ctx.work, device=ctx.device)
        value, grad = QUANTILE.on(xp)(prediction, t, level)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(QUANTILE, prediction, t, level))


def _quantile_levels(q):
    """A sequence of levels (list, tuple or 1-d array) as a tuple of floats in (0, 1);
    None for a single level (a number or a 0-d array)."""
    if isinstance(q, (list, tuple)):
        seq = list(q)
    elif getattr(q, "ndim", 0) == 1:
        seq = q.tolist()
    else:
        return None
    if not seq:
        raise ValueError("`q` must hold at least one quantile level; got an empty sequence")
    return tuple(check_scalar("q", v, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
                 for v in seq)


huber = register(Huber())
smooth_l1 = register(SmoothL1())
pseudo_huber = register(PseudoHuber())
log_cosh = register(LogCosh())
quantile = pinball = register(Quantile())

# fused NumPy kernels (losskit.kernels.pointwise: the formulas above), consulted by the pipeline
register_fast_path(Huber, pointwise.fast_path(
    HUBER, {"delta": pointwise.number(0.0, lo_open=True)}))
register_fast_path(SmoothL1, pointwise.fast_path(SMOOTH_L1, {"beta": pointwise.number(0.0)}))
register_fast_path(PseudoHuber, pointwise.fast_path(
    PSEUDO_HUBER, {"delta": pointwise.number(0.0, lo_open=True)}))
register_fast_path(LogCosh, pointwise.fast_path(LOG_COSH))
register_fast_path(Quantile, pointwise.fast_path(
    QUANTILE, {"q": pointwise.number(0.0, 1.0, lo_open=True, hi_open=True)}))
