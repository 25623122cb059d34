r"""Proper scoring rules on predicted probabilities: the (multi-class) Brier score.

A proper scoring rule is minimised in expectation by the true class probabilities, so it
rewards calibration as well as accuracy. The logarithmic score is ``cross_entropy``; the
quadratic one, here, is bounded and gentle on confident mistakes.
"""

from __future__ import annotations

from ..core.dispatch import register_fast_path
from ..core.loss import Loss, Terms, register
from ..kernels import rows
from .cross_entropy import class_target
from ..core.primitives import _weighted
from ..core.validation import check_in_range

__all__ = ["brier_score"]


class BrierScore(Loss):
    r"""Multi-class Brier score :math:`\ell = \sum_c (y_c - t_c)^2` of predicted probabilities.

    The squared distance between the predicted distribution and the one-hot (or soft)
    target: Brier's original definition [1]_, in :math:`[0, 2]` per example.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Predicted probabilities :math:`y` in [0, 1] (a softmax output), class axis ``axis``.
    target : integer array of shape (N, ...) or floating array like ``prediction``
        Class labels (the shape of ``prediction`` without the class axis), or target
        probabilities in [0, 1] of the prediction's shape.
    axis : int, default -1
        The class axis: one example's value is the sum over it.
    ignore_index : int, optional
        Integer targets equal to it contribute nothing, not even to the mean's denominator.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell_n = \sum_c (y_{nc} - t_{nc})^2, \qquad
        \frac{\partial \ell_n}{\partial y_{nc}} = 2\,(y_{nc} - t_{nc}), \qquad
        \frac{\partial^2 \ell_n}{\partial y_{nc}^2} = 2

    with :math:`t_n = e_{y_n}` for a label. ``reduction="mean"`` gives the Brier score of
    a data set, :math:`\frac1N \sum_n \sum_c (y_{nc} - t_{nc})^2`: scikit-learn's
    ``brier_score_loss`` for three or more classes. For two classes scikit-learn (from
    1.7, ``scale_by_half="auto"``) halves it to :math:`\frac1N\sum_n (y_n - t_n)^2` on
    the positive-class probability, the usual binary convention in :math:`[0, 1]`: with
    ``prediction = stack([1 - y, y], axis=-1)`` this loss is **twice** that number. The
    gradient is the partial derivative with no simplex constraint (the inputs are not
    checked to sum to 1, nor renormalised).

    References
    ----------
    .. [1] G. W. Brier, "Verification of forecasts expressed in terms of probability",
       Monthly Weather Review 78(1), 1950, doi:10.1175/1520-0493(1950)078<0001:VOFEIT>2.0.CO;2.

    Examples
    --------
    A 0.7 forecast for the true class of three: :math:`0.3^2 + 0.2^2 + 0.1^2 = 0.14`.

    >>> import numpy as np, losskit as lk
    >>> y = np.array([[0.7, 0.2, 0.1]])
    >>> round(float(lk.brier_score(y, np.array([0]))), 12)
    0.14
    >>> lk.brier_score.grad(y, np.array([0]))   # 2 (y - t)
    array([[-0.6,  0.4,  0.2]])
    """

    name = "brier_score"
    family = "classification"
    prediction = "probabilities"
    target = "integer labels or class probabilities"
    formula = r"\ell = \sum_c (y_c - t_c)^2"
    gradient_formula = r"\frac{\partial \ell}{\partial y_c} = 2\,(y_c - t_c)"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial y_c^2} = 2"
    second_order = "diagonal"
    when_to_use = (
        "Evaluating or fine-tuning the calibration of predicted class probabilities: the "
        "Brier score is a strictly proper scoring rule like the log loss, but bounded "
        "(at most 2 per example), so one confident mistake cannot dominate the average. "
        "As a training loss on softmax outputs it learns more slowly than cross-entropy."
    )
    references = ("Brier, Verification of forecasts expressed in terms of probability, 1950, "
                  "doi:10.1175/1520-0493(1950)078<0001:VOFEIT>2.0.CO;2",)

    def _compute(self, ctx, prediction, target, *, need_grad, axis=-1, ignore_index=None):
        xp = ctx.xp
        check_in_range(xp, "prediction", prediction, 0.0, 1.0,
                       hint="brier_score expects probabilities (use losskit.softmax on "
                            "logits first)")
        ct = class_target(ctx, prediction, target, axis=axis, class_weight=None,
                          ignore_index=ignore_index)
        ax = ct.axis
        if ct.onehot is None:  # probability targets
            d = prediction - ct.coef
            value = xp.sum(d * d, axis=ax)
            grad = 2.0 * d if need_grad else None
            hess = 2.0 + 0.0 * d if ctx.wants_hessian else None  # NaN stays NaN
            return Terms(value, grad, None, ct.expand, hess=hess)
        d = prediction - ct.onehot
        keep = ct.weight  # 1, or 0 for an ignored label
        value = _weighted(xp, keep, xp.sum(d * d, axis=ax))
        grad = _weighted(xp, ct.expand(keep), 2.0 * d) if need_grad else None
        hess = None
        if ctx.wants_hessian:  # 2, or 0 for an ignored label
            hess = _weighted(xp, ct.expand(keep), 2.0 + 0.0 * d)
        return Terms(value, grad, ct.weight, ct.expand, hess=hess)


brier_score = register(BrierScore())

# fused NumPy kernels (losskit.kernels.rows), consulted by the pipeline
register_fast_path(BrierScore, rows.brier_score)
