r"""Noise-robust classification: generalized cross-entropy, between cross-entropy and MAE.

Zhang and Sabuncu's :math:`\mathcal{L}_q = (1 - p_y^q) / q` on predicted probabilities:
:math:`q \to 0` gives cross-entropy :math:`-\log p_y` (fast to fit, but it chases noisy
labels), :math:`q = 1` gives :math:`1 - p_y`, the mean absolute error of the probability
vector up to a factor 2 (robust to label noise, slow to fit).
"""

from __future__ import annotations

from ..core.dispatch import register_fast_path
from ..core.loss import Loss, Terms, fill_doc, register
from ..core.primitives import _weighted
from ..core.validation import check_in_range, check_scalar
from ..kernels import rows
from .cross_entropy import CLASS_TARGET_DOC, class_target

__all__ = ["generalized_cross_entropy"]

_INF = float("inf")


def _gce_curvature(xp, p, pos, logp, qq):
    r"""The second derivative of :math:`(1 - p^q)/q`: :math:`(1 - q)\, p^{q - 2}`, ``inf``
    at :math:`p = 0` (``pos`` is :math:`p > 0`, ``logp`` the log where it is), 0
    everywhere at :math:`q = 1`; NaN propagates."""
    if qq == 1.0:
        out = xp.zeros_like(p)
    else:
        out = xp.where(pos, (1.0 - qq) * xp.exp((qq - 2.0) * logp), xp.full_like(p, _INF))
    return xp.where(xp.isnan(p), p, out)


class GeneralizedCrossEntropy(Loss):
    r"""Generalized cross-entropy :math:`\ell = (1 - p_y^q) / q` of predicted probabilities.

    The loss of Zhang and Sabuncu [1]_ for training with noisy labels, as Keras's
    ``CategoricalGeneralizedCrossEntropy`` (probabilities in, integer labels; its
    ``q=0.5`` default is losskit's too). Probability targets give
    :math:`\sum_c t_c (1 - p_c^q) / q`.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Probabilities in [0, 1] (a softmax output); the class axis is ``axis``.
    {target_doc}
    q : float in (0, 1], default 0.5
        Towards 0 the loss behaves like cross-entropy, at 1 like the mean absolute error.
    {common_parameters}

    Notes
    -----
    With the target coefficients :math:`a_{nc}` of ``cross_entropy`` (one-hot times the
    class weight, 0 for an ignored label; or :math:`w_c t_{nc}`):

    .. math::

        \ell_n = \sum_c a_{nc} \frac{1 - p_{nc}^q}{q}, \qquad
        \frac{\partial \ell_n}{\partial p_{nc}} = -a_{nc}\, p_{nc}^{q - 1}, \qquad
        \frac{\partial^2 \ell_n}{\partial p_{nc}^2} = (1 - q)\, a_{nc}\, p_{nc}^{q - 2}

    No clamp is needed: the value is finite on all of [0, 1]. The derivative is infinite
    at :math:`p_{nc} = 0` for :math:`q < 1` (where :math:`a_{nc} > 0`), and so is the
    second derivative (the Hessian is diagonal: each term reads its own probability); a
    class with :math:`a_{nc} = 0` contributes nothing, not even there. At :math:`q = 1`
    the loss is linear in :math:`p` and its Hessian 0. By the chain rule through a
    softmax :math:`p = \operatorname{softmax}(z)` the logit gradient is
    :math:`p_y^q (p - e_y)`: cross-entropy's, weighted by :math:`p_y^q`, which is why
    confidently wrong (possibly mislabelled) examples pull less.

    References
    ----------
    .. [1] Z. Zhang, M. R. Sabuncu, "Generalized Cross Entropy Loss for Training Deep
       Neural Networks with Noisy Labels", NeurIPS 2018, arXiv:1805.07836.

    Examples
    --------
    :math:`p_y = 0.25`, :math:`q = 0.5`: :math:`(1 - 0.5) / 0.5 = 1`, derivative
    :math:`-0.25^{-0.5} = -2`.

    >>> import numpy as np, losskit as lk
    >>> p = np.array([[0.25, 0.75]]); y = np.array([0])
    >>> float(lk.generalized_cross_entropy(p, y))
    1.0
    >>> lk.generalized_cross_entropy.grad(p, y)
    array([[-2.,  0.]])
    """

    name = "generalized_cross_entropy"
    family = "classification"
    prediction = "probabilities"
    target = "integer labels or class probabilities"
    formula = r"\ell = \frac{1 - p_y^q}{q}"
    gradient_formula = r"\frac{\partial \ell}{\partial p_c} = -[c = y]\, p_y^{q - 1}"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial p_c^2} = [c = y]\,(1 - q)\, p_y^{q - 2}"
    second_order = "diagonal"
    when_to_use = (
        "Classification with noisy labels (crowd-sourced or web-scraped data): with q "
        "between 0 and 1 it trades cross-entropy's fast fitting for the robustness of the "
        "mean absolute error, so confidently mislabelled examples pull the model less. "
        "q = 0.7 is the paper's choice on CIFAR."
    )
    references = ("Zhang and Sabuncu, Generalized Cross Entropy Loss for Training Deep "
                  "Neural Networks with Noisy Labels, NeurIPS 2018, arXiv:1805.07836",)

    def _compute(self, ctx, prediction, target, *, need_grad, q=0.5, axis=-1,
                 class_weight=None, ignore_index=None):
        xp = ctx.xp
        qq = check_scalar("q", q, lo=0.0, hi=1.0, lo_open=True)
        check_in_range(xp, "prediction", prediction, 0.0, 1.0,
                       hint="generalized_cross_entropy expects probabilities; apply a "
                            "softmax to logits first")
        ct = class_target(ctx, prediction, target, axis=axis, class_weight=class_weight,
                          ignore_index=ignore_index)
        if ct.labels is not None:  # integer labels: only the label's entry of a row counts
            return self._labels(xp, ct, prediction, qq, need_grad, ctx.wants_hessian)
        a = ct.coef
        p = prediction
        pos = p > 0
        logp = xp.log(xp.where(pos, p, xp.ones_like(p)))
        pq = xp.where(pos, xp.exp(qq * logp), xp.zeros_like(p))  # p^q, 0^q = 0
        pq = xp.where(xp.isnan(p), p, pq)
        value = xp.sum(_weighted(xp, a, (1.0 - pq) / qq), axis=ct.axis)
        grad = None
        if need_grad:
            if qq == 1.0:
                d = xp.ones_like(p)
            else:  # p^(q-1): inf at p = 0
                d = xp.where(pos, xp.exp((qq - 1.0) * logp), xp.full_like(p, _INF))
                d = xp.where(xp.isnan(p), p, d)
            grad = 0.0 - _weighted(xp, a, d)  # 0.0 -: no -0 entries
            if ctx.wants_hessian:
                hess = _weighted(xp, a, _gce_curvature(xp, p, pos, logp, qq))
                return Terms(value, grad, ct.weight, ct.expand, hess=hess)
        return Terms(value, grad, ct.weight, ct.expand)


    @staticmethod
    def _labels(xp, ct, prediction, qq, need_grad, wants_hessian=False):
        """The same value and gradient from each row's label entry p_y alone (a gather, no
        power of the whole (N, K) array)."""
        wy = ct.expand(ct.label_weight)
        py = ct.pick(xp, prediction)  # keepdims along the class axis
        pos = py > 0
        logp = xp.log(xp.where(pos, py, xp.ones_like(py)))
        pq = xp.where(pos, xp.exp(qq * logp), xp.zeros_like(py))
        pq = xp.where(xp.isnan(py), py, pq)
        value = xp.squeeze(_weighted(xp, wy, (1.0 - pq) / qq), axis=ct.axis)
        grad = None
        if need_grad:
            if qq == 1.0:
                d = xp.ones_like(py)
            else:
                d = xp.where(pos, xp.exp((qq - 1.0) * logp), xp.full_like(py, _INF))
                d = xp.where(xp.isnan(py), py, d)
            row = 0.0 - _weighted(xp, wy, d)
            grad = xp.where(ct.hit(), row, xp.zeros_like(prediction))
            if wants_hessian:
                row = _weighted(xp, wy, _gce_curvature(xp, py, pos, logp, qq))
                hess = xp.where(ct.hit(), row, xp.zeros_like(prediction))
                return Terms(value, grad, ct.weight, ct.expand, hess=hess)
        return Terms(value, grad, ct.weight, ct.expand)


GeneralizedCrossEntropy.__doc__ = fill_doc(GeneralizedCrossEntropy.__doc__,
                                           target_doc=CLASS_TARGET_DOC)

generalized_cross_entropy = register(GeneralizedCrossEntropy())
register_fast_path(GeneralizedCrossEntropy, rows.generalized_cross_entropy)
