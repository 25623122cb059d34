r"""Divergence losses: KL divergence, distillation KL on logits, Jensen-Shannon.

These are the *losses* (prediction first, with reductions, sample weights and a
closed-form gradient). The textbook quantities, true distribution first and with a
``base=``, are in :mod:`losskit.info`: ``lk.info.kl_divergence(p, q)`` equals
``lk.kl_divergence(q, p, log_prediction=False, reduction="none")`` for distributions.

Throughout, the prediction is the model's distribution :math:`q` and the target the
reference :math:`p`, and the loss is :math:`D_{\mathrm{KL}}(p \,\|\, q)`: the
divergence that cross-entropy minimises (:math:`H(p, q) = H(p) + D_{\mathrm{KL}}(p\|q)`).
The per-example value sums over the class axis, so for ``(N, K)`` inputs
``reduction="mean"`` divides by :math:`N`: it *is* the batch mean of the divergence
(PyTorch's ``kl_div`` is elementwise, and its ``reduction="mean"`` divides by
:math:`N K`, which is not a KL divergence; PyTorch recommends ``"batchmean"``).
:math:`0 \log 0 = 0` everywhere; a class with :math:`p_c > 0` and :math:`q_c = 0`
costs ``+inf``. The inputs are not checked to sum to 1 (nor renormalised): the formulas
are evaluated as given, as PyTorch and Optax do.
"""

from __future__ import annotations

import math

from ..core.dispatch import register_fast_path
from ..core.loss import Loss, Terms, register
from ..kernels import rows
from .cross_entropy import normalize_axis
from ..core.primitives import _safe_log, _softmax_and_neg_log, _softmax_hessian
from ..core.validation import check_in_range, check_scalar

__all__ = ["kl_divergence", "softmax_kl_divergence", "js_divergence"]

_INF = float("inf")
_NAN = float("nan")


def _bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False; got {value!r}")
    return value


def _class_axis(ctx, prediction, axis):
    """The distribution's axis (an int) or axes (a sorted tuple), and the map that puts the
    per-example shape back into the prediction's."""
    if isinstance(axis, (tuple, list)):
        if not axis:
            raise ValueError(f"`axis` of {ctx.loss} must name at least one axis; got "
                             f"{axis!r}")
        axes = tuple(sorted(normalize_axis(prediction.ndim, a, ctx.loss) for a in axis))
        if len(set(axes)) != len(axes):
            raise ValueError(f"`axis` of {ctx.loss} names an axis twice: {tuple(axis)!r} "
                             f"for a {prediction.ndim}-d `prediction`")
        kept = tuple(1 if i in axes else n for i, n in enumerate(prediction.shape))

        def expand_axes(a):
            return ctx.xp.reshape(a, kept)

        return (axes[0] if len(axes) == 1 else axes), expand_axes
    ax = normalize_axis(prediction.ndim, axis, ctx.loss)

    def expand(a):
        return ctx.xp.expand_dims(a, axis=ax)

    return ax, expand


def _nan_where(xp, out, *arrays):
    """``out`` with NaN wherever one of ``arrays`` is NaN (0 log 0 masks would hide it)."""
    nan = xp.isnan(arrays[0])
    for a in arrays[1:]:
        nan = nan | xp.isnan(a)
    return xp.where(nan, xp.full_like(out, _NAN), out)


def _kl_terms(xp, p, log_p, log_q):
    r"""p (log p - log q) elementwise: 0 where p = 0, +inf where p > 0 and q = 0."""
    pos = p > 0
    zero = xp.zeros_like(p)
    diff = xp.where(pos, log_p, zero) - xp.where(pos, log_q, zero)
    return _nan_where(xp, xp.where(pos, p * diff, zero), p, log_q)


# ----------------------------------------------------------------------------- KL
class KLDivergence(Loss):
    r"""KL divergence loss :math:`D_{\mathrm{KL}}(p \,\|\, q) = \sum_c p_c \log(p_c / q_c)`.

    The prediction is the model's distribution :math:`q`, **as log-probabilities by
    default** (the output of ``log_softmax``; PyTorch's ``kl_div`` and Optax's
    ``kl_divergence`` take the same), the target the reference distribution :math:`p`.
    ``lk.kl_divergence(log_q, p, reduction="batchmean")`` equals PyTorch's
    ``F.kl_div(log_q, p, reduction="batchmean")``; for ``(N, K)`` inputs losskit's default
    ``"mean"`` is the same number, because one example's value is already the sum over
    the class axis (PyTorch's ``"mean"`` divides by :math:`N K` instead: that is the
    pitfall its documentation warns about).

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        The model's :math:`\log q`, or :math:`q` itself in [0, 1] with
        ``log_prediction=False``. In log space any real value (and ``-inf``) is accepted,
        as PyTorch's ``kl_div`` and Optax's ``kl_divergence`` do: the value and the
        gradient :math:`-p` are defined for every :math:`\log q`.
    target : floating array of the same shape
        The reference :math:`p` in [0, 1], or :math:`\log p` (<= 0) with
        ``log_target=True``.
    axis : int or tuple of ints, default -1
        The class axis: one example's value is the sum over it. A tuple names several
        axes that together hold one distribution (a spatial map ``(H, W)``, say).
    log_prediction : bool, default True
        Whether ``prediction`` holds log-probabilities.
    log_target : bool, default False
        Whether ``target`` holds log-probabilities (PyTorch's ``log_target``; Optax's
        ``kl_divergence_with_log_targets``): exact where :math:`p` would underflow.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell_n = \sum_c p_{nc} \bigl(\log p_{nc} - \log q_{nc}\bigr), \qquad
        \frac{\partial \ell_n}{\partial \log q_{nc}} = -p_{nc}, \qquad
        \frac{\partial \ell_n}{\partial q_{nc}} = -\frac{p_{nc}}{q_{nc}}, \qquad
        \frac{\partial^2 \ell_n}{\partial q_{nc}^2} = \frac{p_{nc}}{q_{nc}^2}

    (the second for ``log_prediction=True``, the third for ``False``: then
    :math:`p_c = 0` gives 0 and :math:`p_c > 0 = q_c` gives ``-inf``). The Hessian is
    diagonal: 0 in log space (the loss is linear in :math:`\log q`), and
    :math:`p_c / q_c^2` for probabilities (``inf`` where :math:`p_c > 0 = q_c`). The gradient is
    the partial derivative of the formula as written, with no simplex constraint; the
    entropy term :math:`\sum p \log p` does not depend on the prediction, so the
    gradient is the cross-entropy's. :math:`0 \log 0 = 0`, also where :math:`q_c = 0`
    (PyTorch gives NaN for a 0 target against a ``-inf`` log-prediction); NaN
    propagates. The inputs are not checked to sum to 1 and are never renormalised.

    See Also
    --------
    losskit.info.kl_divergence : the textbook :math:`D_{\mathrm{KL}}(p \| q)`, true
        distribution first, with ``base=`` and normalisation checks, no gradient.
    softmax_kl_divergence : the same divergence between two softmaxes of logits
        (distillation).

    References
    ----------
    .. [1] S. Kullback, R. A. Leibler, "On Information and Sufficiency", Ann. Math.
       Statist. 22(1), 1951, doi:10.1214/aoms/1177729694.

    Examples
    --------
    :math:`p = (0.9, 0.1)` against :math:`q = (0.5, 0.5)`:
    :math:`0.9 \ln 1.8 + 0.1 \ln 0.2 = 0.3681` nats.

    >>> import numpy as np, losskit as lk
    >>> q = np.array([[0.5, 0.5]]); p = np.array([[0.9, 0.1]])
    >>> round(float(lk.kl_divergence(np.log(q), p)), 4)
    0.3681
    >>> round(float(lk.kl_divergence(q, p, log_prediction=False)), 4)
    0.3681
    >>> lk.kl_divergence.grad(np.log(q), p)   # -p
    array([[-0.9, -0.1]])
    """

    name = "kl_divergence"
    family = "divergence"
    prediction = "log-probabilities (probabilities with log_prediction=False)"
    target = "probabilities (log-probabilities with log_target=True), same shape"
    formula = r"\ell = \sum_c p_c \left(\log p_c - \log q_c\right)"
    gradient_formula = (r"\frac{\partial \ell}{\partial \log q_c} = -p_c,\ "
                        r"\frac{\partial \ell}{\partial q_c} = -\frac{p_c}{q_c}")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial (\log q_c)^2} = 0,\ "
                       r"\frac{\partial^2 \ell}{\partial q_c^2} = \frac{p_c}{q_c^2}")
    second_order = "diagonal"
    when_to_use = (
        "Matching a predicted distribution to a target distribution that is itself soft "
        "(distillation targets, label distributions, variational objectives). For one-hot "
        "targets it equals cross-entropy minus the target entropy (0), so prefer "
        "softmax_cross_entropy there; from logits on both sides use softmax_kl_divergence."
    )
    references = ("Kullback and Leibler, On Information and Sufficiency, 1951, "
                  "doi:10.1214/aoms/1177729694",)

    def _compute(self, ctx, prediction, target, *, need_grad, axis=-1, log_prediction=True,
                 log_target=False):
        xp = ctx.xp
        log_prediction = _bool("log_prediction", log_prediction)
        log_target = _bool("log_target", log_target)
        ax, expand = _class_axis(ctx, prediction, axis)
        t = self._real_target(ctx, prediction, target)
        if log_prediction:  # any real log q (PyTorch's and Optax's convention)
            log_q = prediction
        else:
            check_in_range(xp, "prediction", prediction, 0.0, 1.0,
                           hint="with log_prediction=False the prediction holds "
                                "probabilities")
            log_q = _safe_log(xp, prediction)
        if log_target:
            check_in_range(xp, "target", t, -_INF, 0.0,
                           hint="with log_target=True the target holds log-probabilities")
            p, log_p = xp.exp(t), t
        else:
            check_in_range(xp, "target", t, 0.0, 1.0,
                           hint="the target holds probabilities (log_target=True for "
                                "log-probabilities)")
            p, log_p = t, _safe_log(xp, t)
        value = xp.sum(_kl_terms(xp, p, log_p, log_q), axis=ax)
        grad = hess = None
        if need_grad:
            if log_prediction:
                grad = _nan_where(xp, -p, prediction)
                if ctx.wants_hessian:  # linear in log q
                    hess = _nan_where(xp, xp.zeros_like(prediction), p, prediction)
            else:
                q = prediction
                pos, ok = p > 0, q > 0
                safe_q = xp.where(ok, q, xp.ones_like(q))
                ratio = xp.where(pos & ok, p / safe_q, xp.full_like(q, _INF))
                grad = xp.where(pos, -ratio, xp.zeros_like(q))
                grad = _nan_where(xp, grad, p, q)
                if ctx.wants_hessian:  # p / q^2 as (p / q) / q: inf where p > 0 = q
                    hess = xp.where(pos, xp.where(ok, ratio / safe_q, ratio),
                                    xp.zeros_like(q))
                    hess = _nan_where(xp, hess, p, q)
        return Terms(value, grad, None, expand, hess=hess)


# ----------------------------------------------------------------------------- distillation
class SoftmaxKLDivergence(Loss):
    r"""Distillation loss: :math:`T^2\, D_{\mathrm{KL}}(\operatorname{softmax}(t/T) \,\|\,
    \operatorname{softmax}(z/T))` from student logits :math:`z` and teacher logits :math:`t`.

    Hinton et al.'s knowledge distillation [1]_: the student matches the teacher's
    softened distribution at temperature :math:`T`. Both softmaxes are formed in log
    space, so huge and ``-inf`` logits are exact.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Student logits :math:`z`.
    target : floating array of the same shape
        Teacher logits :math:`t` (default), or the teacher's probabilities with
        ``target_is_logits=False`` (taken as given: the temperature is then applied to
        the student only).
    temperature : float > 0, default 1
        The softmax temperature :math:`T`; larger values soften both distributions.
    target_is_logits : bool, default True
        Whether ``target`` holds logits (else probabilities in [0, 1]).
    scale_by_temperature_squared : bool, default True
        Multiply by :math:`T^2`, as Hinton et al. recommend: the soft-target gradient
        scales as :math:`1/T^2` (it is :math:`(q - p)/T` and :math:`q - p` itself shrinks
        like :math:`1/T`), so the factor keeps its size comparable to a hard-label
        cross-entropy's when both are mixed and :math:`T` is changed. ``False`` gives the
        plain :math:`D_{\mathrm{KL}}` of the two tempered softmaxes.
    axis : int or tuple of ints, default -1
        The class axis; a tuple names several axes that together hold one distribution
        (the softmax runs over all of them).
    {common_parameters}

    Notes
    -----
    With :math:`q = \operatorname{softmax}(z/T)`, :math:`p = \operatorname{softmax}(t/T)`
    and :math:`s = T^2` (or 1 without the scaling):

    .. math::

        \ell_n = s \sum_c p_{nc} \bigl(\log p_{nc} - \log q_{nc}\bigr), \qquad
        \frac{\partial \ell_n}{\partial z_{nc}} = \frac{s}{T}\,\bigl(q_{nc} - p_{nc}\bigr)
        = T\,(q_{nc} - p_{nc}) \text{ with } s = T^2

    (the softmax cross-entropy's "prediction minus target", times :math:`1/T` from the
    chain rule through :math:`z/T`), and the Hessian, dense along the class axis (or
    axes):

    .. math::

        \frac{\partial^2 \ell_n}{\partial z_n \partial z_n^\top} = \frac{s}{T^2}
            \bigl(\operatorname{diag} q_n - q_n q_n^\top\bigr)

    (:math:`\operatorname{diag} q - q q^\top` with :math:`s = T^2`), independent of the
    teacher. The value equals PyTorch's
    ``F.kl_div(F.log_softmax(z / T), F.softmax(t / T), reduction="batchmean") * T**2``
    for ``(N, K)`` inputs with ``reduction="mean"`` or ``"batchmean"``. A teacher class
    with probability 0 costs nothing; a student ``-inf`` logit where the teacher has
    mass costs ``+inf``.

    References
    ----------
    .. [1] G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
       Network", NIPS Deep Learning Workshop 2014, arXiv:1503.02531.

    Examples
    --------
    Equal student logits (:math:`q = (1/2, 1/2)`) against a teacher with :math:`p = (0.8,
    0.2)` (logits :math:`(\ln 4, 0)`) at :math:`T = 1`: the gradient is
    :math:`q - p = (-0.3, 0.3)`.

    >>> import numpy as np, losskit as lk
    >>> z = np.array([[0.0, 0.0]]); t = np.array([[np.log(4.0), 0.0]])
    >>> lk.softmax_kl_divergence.grad(z, t)
    array([[-0.3,  0.3]])
    >>> v = lk.softmax_kl_divergence(z, t)   # 0.8 ln 1.6 + 0.2 ln 0.4
    >>> bool(np.isclose(v, 0.8 * np.log(1.6) + 0.2 * np.log(0.4)))
    True
    """

    name = "softmax_kl_divergence"
    family = "divergence"
    prediction = "logits"
    target = "teacher logits (or probabilities with target_is_logits=False), same shape"
    formula = (r"\ell = T^2 \sum_c p_c \left(\log p_c - \log q_c\right),\ "
               r"q = \operatorname{softmax}(z/T),\ p = \operatorname{softmax}(t/T)")
    gradient_formula = r"\frac{\partial \ell}{\partial z} = T\,(q - p)"
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial z \partial z^\top} = "
                       r"\operatorname{diag} q - q q^\top")
    second_order = "dense"
    when_to_use = (
        "Knowledge distillation: train a student on a teacher's softened output "
        "distribution, usually mixed with the hard-label cross-entropy. A temperature T > 1 "
        "exposes the teacher's 'dark knowledge' (the relative sizes of wrong-class "
        "probabilities); the T^2 factor keeps the gradient scale independent of T."
    )
    references = ("Hinton, Vinyals, Dean, Distilling the Knowledge in a Neural Network, "
                  "arXiv:1503.02531",)

    def _compute(self, ctx, prediction, target, *, need_grad, temperature=1.0,
                 target_is_logits=True, scale_by_temperature_squared=True, axis=-1):
        xp = ctx.xp
        temp = check_scalar("temperature", temperature, lo=0.0, lo_open=True)
        if math.isinf(temp):
            raise ValueError(f"`temperature` must be finite and positive; got {temperature!r}")
        target_is_logits = _bool("target_is_logits", target_is_logits)
        scaled = _bool("scale_by_temperature_squared", scale_by_temperature_squared)
        ax, expand = _class_axis(ctx, prediction, axis)
        t = self._real_target(ctx, prediction, target)
        zt = prediction if temp == 1.0 else prediction / temp
        q, neg_log_q = _softmax_and_neg_log(xp, zt, axis=ax)
        if target_is_logits:
            tt = t if temp == 1.0 else t / temp
            p, neg_log_p = _softmax_and_neg_log(xp, tt, axis=ax)
            log_p = -neg_log_p
        else:
            check_in_range(xp, "target", t, 0.0, 1.0,
                           hint="with target_is_logits=False the target holds the teacher's "
                                "probabilities")
            p, log_p = t, _safe_log(xp, t)
        scale = temp * temp if scaled else 1.0
        value = xp.sum(_kl_terms(xp, p, log_p, -neg_log_q), axis=ax)
        if scale != 1.0:
            value = scale * value
        grad = hess = hvp = None
        if need_grad:
            # d/dz of -sum_c p_c log q_c is ((sum_c p_c) q - p) / T: teacher logits give a
            # p of sum 1; given probabilities are taken as they are (their sum kept)
            mass = 1.0 if target_is_logits else xp.sum(p, axis=ax, keepdims=True)
            grad = q - p if target_is_logits else mass * q - p
            factor = scale / temp
            if factor != 1.0:
                grad = factor * grad
            if ctx.wants_hessian:  # (s / T^2) (sum p) (diag q - q q^T) along the class axes
                hess, hvp = _softmax_hessian(xp, q, (scale / (temp * temp)) * mass,
                                             ctx.vector, ax)
        return Terms(value, grad, None, expand, hess=hess, hvp=hvp)


# ----------------------------------------------------------------------------- JS
def _half_js(xp, a, s):
    """a log(2a / s) elementwise (s = a + b), 0 where a = 0; the ratio lies in (0, 2]."""
    pos = a > 0
    one = xp.ones_like(a)
    r = xp.where(pos, 2.0 * a, one) / xp.where(pos, s, one)
    return xp.where(pos, a * xp.log(r), xp.zeros_like(a))


class JSDivergence(Loss):
    r"""Jensen-Shannon divergence loss between predicted and target probabilities.

    :math:`\mathrm{JS}(p, q) = \tfrac12 D_{\mathrm{KL}}(p \| m) + \tfrac12
    D_{\mathrm{KL}}(q \| m)` with :math:`m = (p + q)/2`: symmetric, bounded by
    :math:`\ln 2`, and finite even where one distribution puts zero mass, unlike KL.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Predicted probabilities :math:`q` in [0, 1].
    target : floating array of the same shape
        Target probabilities :math:`p` in [0, 1].
    axis : int or tuple of ints, default -1
        The class axis: one example's value is the sum over it. A tuple names several
        axes that together hold one distribution (a spatial map ``(H, W)``, say).
    {common_parameters}

    Notes
    -----
    .. math::

        \ell_n = \frac12 \sum_c \Bigl[p_{nc} \log\frac{2 p_{nc}}{p_{nc} + q_{nc}}
                 + q_{nc} \log\frac{2 q_{nc}}{p_{nc} + q_{nc}}\Bigr], \qquad
        \frac{\partial \ell_n}{\partial q_{nc}}
            = \frac12 \log\frac{2 q_{nc}}{p_{nc} + q_{nc}}, \qquad
        \frac{\partial^2 \ell_n}{\partial q_{nc}^2}
            = \frac{p_{nc}}{2\, q_{nc} (p_{nc} + q_{nc})}

    (the terms :math:`-\tfrac12 p/(p+q)`, :math:`\tfrac12` and :math:`-\tfrac12 q/(p+q)`
    of the product rule cancel). :math:`0 \log 0 = 0`. Where :math:`p_c = 0` the
    gradient is :math:`\tfrac12 \ln 2` (also at :math:`q_c = 0`, the one-sided
    derivative); where :math:`q_c = 0 < p_c` it is ``-inf`` (the value's slope there).
    The Hessian is diagonal; its entries are 0 where :math:`p_c = 0` and ``inf`` where
    :math:`q_c = 0 < p_c`.
    The gradient is the partial derivative of the formula as written, with no simplex
    constraint. Natural logarithm: divide by :math:`\ln 2` for bits.

    See Also
    --------
    losskit.info.js_divergence : the textbook quantity with ``base=``, no gradient.

    References
    ----------
    .. [1] J. Lin, "Divergence measures based on the Shannon entropy", IEEE Trans. Inf.
       Theory 37(1), 1991, doi:10.1109/18.61115.

    Examples
    --------
    Disjoint distributions reach the bound :math:`\ln 2`:

    >>> import numpy as np, losskit as lk
    >>> float(lk.js_divergence(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])))
    0.6931471805599453
    """

    name = "js_divergence"
    family = "divergence"
    prediction = "probabilities"
    target = "probabilities, same shape"
    formula = (r"\ell = \tfrac12 \sum_c \left[p_c \log\frac{2p_c}{p_c+q_c} "
               r"+ q_c \log\frac{2q_c}{p_c+q_c}\right]")
    gradient_formula = r"\frac{\partial \ell}{\partial q_c} = \tfrac12 \log\frac{2q_c}{p_c+q_c}"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial q_c^2} = \frac{p_c}{2 q_c (p_c + q_c)}"
    second_order = "diagonal"
    when_to_use = (
        "A symmetric, bounded alternative to the KL divergence between a predicted and a "
        "target distribution: finite when the supports differ (KL is infinite there), and "
        "at most ln 2 per example. It is the divergence behind the original GAN objective; "
        "its gradient vanishes when the distributions are far apart, so it is a weak "
        "training signal from a poor start."
    )
    references = ("Lin, Divergence measures based on the Shannon entropy, 1991, "
                  "doi:10.1109/18.61115",)

    def _compute(self, ctx, prediction, target, *, need_grad, axis=-1):
        xp = ctx.xp
        ax, expand = _class_axis(ctx, prediction, axis)
        check_in_range(xp, "prediction", prediction, 0.0, 1.0,
                       hint="js_divergence expects probabilities (use losskit.softmax on "
                            "logits first)")
        p = self._probability_target(ctx, prediction, target)
        q = prediction
        s = p + q
        terms = 0.5 * (_half_js(xp, p, s) + _half_js(xp, q, s))
        value = xp.sum(_nan_where(xp, terms, p, q), axis=ax)
        grad = None
        if need_grad:
            ok = s > 0
            r = xp.where(ok, 2.0 * q / xp.where(ok, s, xp.ones_like(s)),
                         xp.full_like(s, 2.0))  # p = q = 0: the one-sided slope ln 2 / 2
            grad = _nan_where(xp, 0.5 * _safe_log(xp, r), p, q)
            if ctx.wants_hessian:
                # (1/2) (1/q - 1/(p + q)) = (1/2) (p / s) / q: the ratio p / s <= 1 first,
                # so tiny p and q do not underflow q s; inf where q = 0 < p, 0 where p = 0
                pos, okq = p > 0, q > 0
                frac = xp.where(ok, p / xp.where(ok, s, xp.ones_like(s)), xp.zeros_like(s))
                curv = xp.where(okq, 0.5 * frac / xp.where(okq, q, xp.ones_like(q)),
                                xp.full_like(q, _INF))
                hess = _nan_where(xp, xp.where(pos, curv, xp.zeros_like(q)), p, q)
                return Terms(value, grad, None, expand, hess=hess)
        return Terms(value, grad, None, expand)


kl_divergence = register(KLDivergence())
softmax_kl_divergence = register(SoftmaxKLDivergence())
js_divergence = register(JSDivergence())

# fused NumPy kernels (losskit.kernels.rows), consulted by the pipeline
register_fast_path(KLDivergence, rows.kl_divergence)
register_fast_path(SoftmaxKLDivergence, rows.softmax_kl_divergence)
register_fast_path(JSDivergence, rows.js_divergence)
