r"""Classification losses: cross-entropy in its four input conventions.

* ``cross_entropy``: probabilities in, :math:`-\sum_c t_c \log y_c`;
* ``softmax_cross_entropy``: logits in, :math:`\operatorname{logsumexp}(z) - z_y`;
* ``nll_loss``: log-probabilities in, :math:`-\log p_y`;
* ``binary_cross_entropy`` / ``sigmoid_binary_cross_entropy``: one Bernoulli per element
  (binary or multi-label), probabilities or logits.

The three K-class losses share one description of the target, the coefficient matrix
:math:`a_{nc}` with :math:`\ell_n = \sum_c a_{nc}\,(-\log p_{nc})`:

* integer labels :math:`y_n`, class weights :math:`w_c`, smoothing :math:`\varepsilon`:
  :math:`a_{nc} = (1-\varepsilon)\,w_{y_n}[c = y_n] + \tfrac{\varepsilon}{K} w_c`, and the
  mean divides by :math:`\sum_n w_{y_n}` over targets that are not ignored;
* probability targets :math:`t_{nc}`: :math:`a_{nc} = w_c\,((1-\varepsilon) t_{nc} +
  \varepsilon/K)`, and the mean divides by the number of examples.

These are exactly PyTorch's ``cross_entropy`` semantics for every combination of
``weight``, ``ignore_index`` and ``label_smoothing`` (ATen ``LossNLL.cpp``), except that a
mean over no targets is 0 here, not NaN.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ..core.dispatch import register_fast_path, unless_set, with_second_order
from ..core.formula import Formula, exp, isnan, log, log1p_unit, where
from ..kernels import fast_paths, pointwise, rows
from ..core.loss import Loss, Terms, fill_doc, register
from ..core.primitives import (_softmax_hessian, _safe_log, _safe_max, _sigmoid, _softmax_and_neg_log, _softplus,
                               _weighted)
from ..core.validation import (
    check_integer,
    same_shape,
    check_in_range,
    check_labels,
    check_numeric,
    check_scalar,
)

__all__ = [
    "cross_entropy",
    "softmax_cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "sigmoid_binary_cross_entropy",
]

_INF = float("inf")


def normalize_axis(ndim: int, axis: Any, loss: str) -> int:
    """``axis`` as a non-negative index into ``ndim`` dimensions, or a clear error."""
    axis = check_integer("axis", axis, loss=loss)
    if ndim == 0:
        raise ValueError(f"`prediction` of {loss} needs a class axis; got a 0-d array")
    if not -ndim <= axis < ndim:
        raise ValueError(f"`axis` of {loss} must lie in [{-ndim}, {ndim - 1}] for a "
                         f"{ndim}-d `prediction`; got {axis}")
    return axis % ndim


class ClassTarget:
    """A K-class target, decoded once for every K-class loss.

    ``coef`` (:math:`a_{nc}`, the prediction's shape) and ``onehot`` (the masked one-hot
    of integer labels; None for soft targets) are built on first use. A loss that only
    needs the label's entry of a row reads ``labels`` and ``label_weight`` instead and
    picks it with :meth:`pick` (a gather, ``take_along_axis``) and :meth:`hit` (a
    comparison): no dense K x N one-hot is built (NumPy, PyTorch and JAX under ``jit``
    then do per-row work only where the label is concerned).
    """

    def __init__(self, coef, weight, expand, axis, onehot=None, *, build=None, labels=None,
                 label_weight=None, smoothing=0.0, smooth=None, classes=None, gather=False):
        self._coef = coef
        self.weight = weight  # denominator weight per example (None: every example counts 1)
        self.expand = expand  # per-example shape -> broadcastable to the prediction
        self.axis = axis
        self._onehot = onehot
        self._build = build  # () -> (coef, onehot), for integer labels
        #: integer labels, 0 where ignored or out of range (their label_weight is 0)
        self.labels = labels
        #: (1 - smoothing) w_{y_n}: the coefficient of the label's entry (0 when ignored)
        self.label_weight = label_weight
        self.smoothing = smoothing
        #: the smoothing's per-class part, w_c keep_n (broadcastable), or None
        self.smooth = smooth
        self._classes = classes
        #: whether :meth:`pick` gathers (else it masks and sums, e.g. on Dask)
        self.gather = gather

    def _built(self):
        if self._build is not None:
            self._coef, self._onehot = self._build()
            self._build = None

    @property
    def coef(self):
        """:math:`a_{nc}`, the prediction's shape."""
        self._built()
        return self._coef

    @property
    def onehot(self):
        """The masked one-hot of integer labels (0 where ignored), or None (soft targets)."""
        self._built()
        return self._onehot

    def hit(self):
        """Boolean, broadcastable to the prediction: the label's entry of each row (the
        entry of class 0 where the label is ignored: its label_weight is 0)."""
        return self.expand(self.labels) == self._classes

    def pick(self, xp, x):
        """``x`` at each row's label along the class axis (keepdims): a gather."""
        if self.gather:
            return xp.take_along_axis(x, xp.expand_dims(self.labels, axis=self.axis),
                                      axis=self.axis)
        return xp.sum(xp.where(self.hit(), x, xp.zeros_like(x)), axis=self.axis,
                      keepdims=True)


def class_target(ctx, prediction, target, *, axis, class_weight, ignore_index,
                 label_smoothing=0.0, soft_ok=True) -> ClassTarget:
    """Validate and decode integer-label or probability targets against ``prediction``."""
    xp = ctx.xp
    ax = normalize_axis(prediction.ndim, axis, ctx.loss)
    k = prediction.shape[ax]
    smoothing = check_scalar("label_smoothing", label_smoothing, lo=0.0, hi=1.0)
    ignore_index = check_integer("ignore_index", ignore_index, loss=ctx.loss, or_none=True)
    label_shape = tuple(prediction.shape[:ax] + prediction.shape[ax + 1:])
    bshape = tuple(k if i == ax else 1 for i in range(prediction.ndim))
    known = not any(d is None or d != d for d in prediction.shape)

    if not known:
        # Dask cannot reshape arrays of unknown chunk sizes: a new axis by indexing
        index = (slice(None),) * ax + (None,)

        def expand(a):
            return a[index]
    else:
        def expand(a):
            return xp.expand_dims(a, axis=ax)

    cw = cw1 = None
    if class_weight is not None:
        cw = ctx.asarray(class_weight, "class_weight")
        check_numeric(xp, "class_weight", cw, bool_ok=False)
        if tuple(cw.shape) != (k,):
            raise ValueError(
                f"`class_weight` must have one weight per class: shape ({k},) (the size of "
                f"axis {axis} of `prediction`); got {tuple(cw.shape)}")
        cw1 = xp.astype(cw, ctx.work)
        check_in_range(xp, "class_weight", cw1, 0.0, _INF, hint="weights must be non-negative")
        cw = xp.reshape(cw1, bshape)

    t = ctx.asarray(target, "target")
    if t.dtype == xp.bool:
        raise TypeError("`target` must be integer class labels or floating probabilities; "
                        "got bool")
    if xp.isdtype(t.dtype, "integral"):
        if not same_shape(t.shape, label_shape):
            msg = (f"integer `target` (class labels) must have the shape of `prediction` "
                   f"{tuple(prediction.shape)} without its class axis {axis}, {label_shape}; "
                   f"got {tuple(t.shape)}")
            if tuple(t.shape) == label_shape + (1,):
                msg += "; squeeze the last axis of `target` explicitly"
            raise ValueError(msg)
        check_labels(xp, "target", t, k, ignore_index=ignore_index)
        classes = xp.reshape(xp.arange(k, device=ctx.device), bshape)
        keep_b = None if ignore_index is None else t != ignore_index
        keep = None if keep_b is None else xp.astype(keep_b, ctx.work)

        def build():
            hit = expand(t) == classes
            if keep_b is not None:
                hit = hit & expand(keep_b)
            onehot = xp.astype(hit, ctx.work)
            picked = onehot if cw is None else onehot * cw
            coef = picked
            if smoothing > 0:
                smooth = xp.ones(bshape, dtype=ctx.work, device=ctx.device) if cw is None else cw
                if keep is not None:
                    smooth = smooth * expand(keep)
                coef = (1.0 - smoothing) * picked + (smoothing / k) * smooth
            return coef, onehot

        # labels that pick nothing (ignored, or out of range where they cannot be checked:
        # validate=False, jit) weigh 0, as the dense one-hot's empty rows
        valid = (t >= 0) & (t < k)
        if keep_b is not None:
            valid = valid & keep_b
        gather = known and hasattr(xp, "take_along_axis") and hasattr(xp, "take")
        if gather:
            labels = xp.where(valid, t, xp.zeros_like(t))
            if cw1 is None:
                weight = xp.astype(valid, ctx.work)
            else:
                picked_w = xp.reshape(xp.take(cw1, xp.reshape(labels, (-1,)), axis=0),
                                      label_shape)
                weight = xp.where(valid, picked_w, xp.zeros_like(picked_w))
            coef = onehot = None
            lazy = build
        else:  # the dense one-hot (Dask, libraries without take_along_axis)
            coef, onehot = build()
            labels = t
            weight = xp.sum(onehot if cw is None else onehot * cw, axis=ax)  # w_{y_n}
            lazy = None
        smooth = None
        if smoothing > 0:
            smooth = xp.ones(bshape, dtype=ctx.work, device=ctx.device) if cw is None else cw
            if keep is not None:
                smooth = smooth * expand(keep)
        label_weight = weight if smoothing == 0 else (1.0 - smoothing) * weight
        return ClassTarget(coef, weight, expand, ax, onehot, build=lazy, labels=labels,
                           label_weight=label_weight, smoothing=smoothing, smooth=smooth,
                           classes=classes, gather=gather)
    if not soft_ok:
        raise TypeError(f"`target` of {ctx.loss} must be integer class labels; got dtype "
                        f"{t.dtype}")
    if ignore_index is not None:
        raise ValueError("`ignore_index` applies to integer class labels only; `target` holds "
                         "probabilities (to drop examples, give them sample_weight 0)")
    if not same_shape(t.shape, prediction.shape):
        msg = (f"probability `target` must have the same shape as `prediction` "
               f"{tuple(prediction.shape)}; got {tuple(t.shape)}")
        if tuple(t.shape) == label_shape:
            msg += "; class labels must have an integer dtype"
        raise ValueError(msg)
    t = xp.astype(t, ctx.work)
    check_in_range(xp, "target", t, 0.0, 1.0, hint="probability targets must lie in [0, 1]")
    if smoothing > 0:
        t = (1.0 - smoothing) * t + smoothing / k
    coef = t if cw is None else t * cw
    return ClassTarget(coef, None, expand, ax)


#: the class-target parameters of every loss that takes ``class_target`` (also _focal)
CLASS_TARGET_DOC = """\
target : integer array of shape (N, ...) or floating array like ``prediction``
    Class labels (the shape of ``prediction`` without the class axis), or per-class
    target probabilities (one-hot or soft) of the prediction's shape.
axis : int, default -1
    The class axis of ``prediction``.
class_weight : array of shape (K,), optional
    Non-negative weight per class, PyTorch's semantics: an example with label :math:`y`
    is weighted by :math:`w_y` and the mean divides by :math:`\\sum_n w_{y_n}`.
ignore_index : int, optional
    Integer targets equal to it contribute nothing, not even to the mean's denominator
    (PyTorch's default is -100; losskit's is ``None``: every label must be a class)."""

_TARGET_DOC = CLASS_TARGET_DOC + """
label_smoothing : float in [0, 1], default 0
    Mix the target with the uniform distribution: :math:`(1-\\varepsilon) t + \\varepsilon/K`."""


def _softmax_ce_labels(xp, z, ct, need_grad):
    """Softmax cross-entropy of integer labels without a dense one-hot: the label's
    :math:`-\\log p_y = \\log s - (z_y - m)` is gathered (``ClassTarget.pick``), the gradient
    :math:`A p - a` subtracts the label's coefficient where ``ct.hit()``; the smoothing's
    per-class part (dense by nature) only when ``label_smoothing > 0``."""
    ax = ct.axis
    m = _safe_max(xp, z, ax, keepdims=True)
    shifted = z - m
    e = xp.exp(shifted)
    s = xp.sum(e, axis=ax, keepdims=True)
    log_s = _safe_log(xp, s)
    wy = ct.expand(ct.label_weight)
    value = _weighted(xp, wy, log_s - ct.pick(xp, shifted))
    value = xp.squeeze(value, axis=ax)
    total = wy
    if ct.smooth is not None:
        eps_k = ct.smoothing / z.shape[ax]
        smooth = eps_k * ct.smooth
        value = value + xp.sum(_weighted(xp, smooth, log_s - shifted), axis=ax)
        total = total + xp.sum(xp.zeros_like(z) + smooth, axis=ax, keepdims=True)
    grad = None
    if need_grad:
        ok = (s > 0) & (s < _INF)
        p = xp.where(ok, e / xp.where(ok, s, xp.ones_like(s)), xp.full_like(e, float("nan")))
        grad = total * p - xp.where(ct.hit(), wy, xp.zeros_like(wy))
        if ct.smooth is not None:
            grad = grad - smooth
        grad = xp.where(total == 0, xp.zeros_like(grad), grad)
    return Terms(value, grad, ct.weight, ct.expand)


def _with_z_loss(ctx, z, ct, zeta, terms, need_grad):
    """``terms`` of the softmax cross-entropy plus the z-loss :math:`\\zeta w_n
    \\operatorname{lse}(z_n)^2` (``w_n`` the example's weight, 1 without class weights, 0
    where ignored): gradient :math:`2 \\zeta w_n\\,\\mathrm{lse}\\, p`, Hessian
    :math:`2 \\zeta w_n (p p^\\top + \\mathrm{lse}\\,(\\operatorname{diag} p - p p^\\top))`."""
    xp = ctx.xp
    ax = ct.axis
    m = _safe_max(xp, z, ax, keepdims=True)
    e = xp.exp(z - m)
    s = xp.sum(e, axis=ax, keepdims=True)
    lse = m + _safe_log(xp, s)
    w = xp.ones_like(terms.value) if ct.weight is None else ct.weight
    wl = ct.expand(w)
    take = wl != 0  # an ignored example adds nothing, even with an infinite logsumexp
    zl = xp.where(take, zeta * wl * (lse * lse), xp.zeros_like(lse))
    value = terms.value + xp.squeeze(zl, axis=ax)
    grad = hess = hvp = None
    if need_grad:
        ok = (s > 0) & (s < _INF)
        p = xp.where(ok, e / xp.where(ok, s, xp.ones_like(s)), xp.full_like(e, float("nan")))
        c = xp.where(take, (2.0 * zeta) * wl, xp.zeros_like(wl))
        grad = terms.grad + xp.where(take, c * lse * p, xp.zeros_like(p))
        if ctx.wants_hessian:
            d, pv = _softmax_hessian(xp, p, c * lse, ctx.vector, ax)
            hess = terms.hess + xp.where(take, d + c * (p * p), xp.zeros_like(p))
            if ctx.vector is not None:
                extra = pv + c * p * xp.sum(p * ctx.vector, axis=ax, keepdims=True)
                hvp = terms.hvp + xp.where(take, extra, xp.zeros_like(p))
    return Terms(value, grad, ct.weight, ct.expand, hess=hess, hvp=hvp)


class SoftmaxCrossEntropy(Loss):
    r"""Softmax cross-entropy of logits: :math:`\ell = \operatorname{logsumexp}(z) - z_y`.

    The multi-class log loss computed from raw scores (logits) in log space: no softmax is
    formed for the value, so huge logits and ``-inf`` logits are exact.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Logits; the class axis is ``axis``.
    {target_doc}
    z_loss : float >= 0, default 0
        Coefficient :math:`\zeta` of the auxiliary z-loss :math:`\zeta
        \operatorname{logsumexp}(z)^2` (PaLM; Liger-Kernel's ``lse_square_scale``), which
        keeps the softmax normaliser near 1. Added to each example that takes part, with
        that example's weight (the class weight of its label; 0 where ignored), so that
        ``reduction="mean"`` averages cross-entropy plus z-loss over the same examples.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell_n = \sum_c a_{nc}\,\bigl(\operatorname{logsumexp}(z_n) - z_{nc}\bigr), \qquad
        \frac{\partial \ell_n}{\partial z_{nc}} = \Bigl(\sum_k a_{nk}\Bigr)
            \operatorname{softmax}(z_n)_c - a_{nc}

    With a one-hot target (:math:`a = e_y`) this is :math:`-\log\operatorname{softmax}(z)_y`
    with gradient :math:`\operatorname{softmax}(z) - e_y`: the "prediction minus target"
    that makes cross-entropy learn fast. See the module notes for :math:`a_{nc}`; the
    combinations of ``class_weight``, ``ignore_index`` and ``label_smoothing`` give
    PyTorch's ``F.cross_entropy`` values.

    References
    ----------
    .. [1] I. Goodfellow, Y. Bengio, A. Courville, *Deep Learning*, MIT Press 2016, sec. 6.2.2.3.
    .. [2] C. Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
       CVPR 2016, arXiv:1512.00567 (label smoothing).

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> z = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    >>> round(float(lk.softmax_cross_entropy(z, np.array([0, 1]))), 4)
    0.3185
    >>> g = lk.softmax_cross_entropy.grad(z, np.array([0, 1]), reduction="sum")
    >>> bool(np.allclose(g.sum(axis=-1), 0.0))   # softmax - onehot: rows sum to 0
    True
    >>> float(lk.softmax_cross_entropy(np.array([[1e30, 0.0]]), np.array([0])))
    0.0
    """

    name = "softmax_cross_entropy"
    family = "classification"
    prediction = "logits"
    target = "integer labels or class probabilities"
    formula = r"\ell = -\sum_c t_c \log \operatorname{softmax}(z)_c = \operatorname{logsumexp}(z) - z_y"
    gradient_formula = r"\frac{\partial \ell}{\partial z} = \operatorname{softmax}(z) - t"
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial z_c \partial z_k} = "
                       r"p_c (\delta_{ck} - p_k), \quad p = \operatorname{softmax}(z)")
    second_order = "dense"
    when_to_use = (
        "The default loss for single-label classification with K classes: the network "
        "outputs raw scores (logits) and the loss applies the softmax itself, stably. It is "
        "the negative log-likelihood of a categorical model, convex in the logits, and its "
        "gradient softmax - target never saturates. Use class_weight for imbalance, "
        "label_smoothing against over-confidence, ignore_index for padding."
    )
    references = (
        "Goodfellow, Bengio, Courville, Deep Learning, 2016, sec. 6.2.2.3",
        "Szegedy et al., Rethinking the Inception Architecture, arXiv:1512.00567",
    )


    def _compute(self, ctx, prediction, target, *, need_grad, axis=-1, class_weight=None,
                 ignore_index=None, label_smoothing=0.0, z_loss=0.0):
        xp = ctx.xp
        zeta = check_scalar("z_loss", z_loss, lo=0.0)
        if math.isinf(zeta):
            raise ValueError(f"`z_loss` must be finite; got {z_loss!r}")
        ct = class_target(ctx, prediction, target, axis=axis, class_weight=class_weight,
                          ignore_index=ignore_index, label_smoothing=label_smoothing)
        if zeta:
            terms = self._compute(ctx, prediction, target, need_grad=need_grad, axis=axis,
                                  class_weight=class_weight, ignore_index=ignore_index,
                                  label_smoothing=label_smoothing)
            return _with_z_loss(ctx, prediction, ct, zeta, terms, need_grad)
        if ct.labels is not None and not ctx.wants_hessian:
            return _softmax_ce_labels(xp, prediction, ct, need_grad)
        p, neg_log = _softmax_and_neg_log(xp, prediction, axis=ct.axis)
        value = xp.sum(_weighted(xp, ct.coef, neg_log), axis=ct.axis)
        grad = hess = hvp = None
        if need_grad:
            total = xp.sum(ct.coef, axis=ct.axis, keepdims=True)
            grad = xp.where(total == 0, xp.zeros_like(p), total * p - ct.coef)
            if ctx.wants_hessian:  # H = (sum_c a_c) (diag p - p p^T) per row
                hess, hvp = _softmax_hessian(xp, p, total, ctx.vector, ct.axis)
                # a row that takes no part (ignored) has a zero Hessian, as its gradient
                hess = xp.where(total == 0, xp.zeros_like(hess), hess)
                if hvp is not None:
                    hvp = xp.where(total == 0, xp.zeros_like(hvp), hvp)
        return Terms(value, grad, ct.weight, ct.expand, hess=hess, hvp=hvp)


class CrossEntropy(Loss):
    r"""Cross-entropy of predicted probabilities: :math:`\ell = -\sum_c t_c \log y_c`.

    The tutorials' ``-np.sum(t * np.log(y + delta))``, with the ``log 0`` guard made
    dtype-aware: probabilities are clamped below at the machine epsilon of the input dtype
    (2.2e-16 for float64, 1.2e-7 for float32, 9.8e-4 for float16), so one term costs at most
    :math:`-\log\epsilon` (36.0, 15.9, 6.9). Prefer ``softmax_cross_entropy`` on logits.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Probabilities in [0, 1] (a softmax output).
    {target_doc}
    {common_parameters}

    Notes
    -----
    .. math::

        \ell_n = -\sum_c a_{nc} \log \max(y_{nc}, \epsilon), \qquad
        \frac{\partial \ell_n}{\partial y_{nc}} =
            \begin{cases} -a_{nc} / y_{nc} & y_{nc} \ge \epsilon \\
                          0 & y_{nc} < \epsilon \end{cases}, \qquad
        \frac{\partial^2 \ell_n}{\partial y_{nc}^2} =
            \begin{cases} a_{nc} / y_{nc}^2 & y_{nc} \ge \epsilon \\
                          0 & y_{nc} < \epsilon \end{cases}

    The gradient and the (diagonal) Hessian are the exact derivatives of the clamped
    value: 0 below the clamp.

    References
    ----------
    .. [1] C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer 2006, eq. 4.108.

    Examples
    --------
    The digest's worked numbers: an output of 0.6 on the true class costs 0.51, 0.1 costs 2.30.

    >>> import numpy as np, losskit as lk
    >>> t = np.array([0., 0., 1., 0.])
    >>> round(float(lk.cross_entropy(np.array([0.1, 0.05, 0.6, 0.25]), t, reduction="sum")), 2)
    0.51
    >>> round(float(lk.cross_entropy(np.array([0.1, 0.05, 0.1, 0.75]), t, reduction="sum")), 2)
    2.3
    """

    name = "cross_entropy"
    family = "classification"
    prediction = "probabilities"
    target = "integer labels or class probabilities"
    formula = r"\ell = -\sum_c t_c \log y_c"
    gradient_formula = r"\frac{\partial \ell}{\partial y_c} = -\frac{t_c}{y_c}"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial y_c^2} = \frac{t_c}{y_c^2}"
    second_order = "diagonal"
    when_to_use = (
        "When the model already outputs probabilities (a softmax layer you cannot remove, an "
        "ensemble average, a calibrated classifier) and you want the log loss. From logits, "
        "use softmax_cross_entropy instead: it is exact where this one must clamp log(0)."
    )
    references = ("Bishop, Pattern Recognition and Machine Learning, 2006, eq. 4.108",)

    def _compute(self, ctx, prediction, target, *, need_grad, axis=-1, class_weight=None,
                 ignore_index=None, label_smoothing=0.0):
        xp = ctx.xp
        check_in_range(xp, "prediction", prediction, 0.0, 1.0,
                       hint="cross_entropy expects probabilities; pass logits to "
                            "softmax_cross_entropy")
        ct = class_target(ctx, prediction, target, axis=axis, class_weight=class_weight,
                          ignore_index=ignore_index, label_smoothing=label_smoothing)
        eps = ctx.eps
        inside = (prediction >= eps) | xp.isnan(prediction)  # NaN propagates, unclamped
        clamped = xp.where(inside, prediction, xp.full_like(prediction, eps))
        value = xp.sum(_weighted(xp, ct.coef, -xp.log(clamped)), axis=ct.axis)
        grad = hess = None
        if need_grad:
            grad = xp.where(inside, -ct.coef / clamped, xp.zeros_like(prediction))
            if ctx.wants_hessian:  # a / y^2 above the clamp, 0 below it
                hess = xp.where(inside, ct.coef / (clamped * clamped),
                                xp.zeros_like(prediction))
        return Terms(value, grad, ct.weight, ct.expand, hess=hess)


class NLLLoss(Loss):
    r"""Negative log-likelihood of log-probabilities: :math:`\ell = -\log p_y`.

    For a model whose last layer is ``log_softmax``; ``softmax_cross_entropy`` is this after
    ``log_softmax``. Same ``class_weight``/``ignore_index``/``label_smoothing`` semantics.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Log-probabilities. Any real value is accepted, as PyTorch's ``nll_loss`` and
        Optax do: the loss is linear in its input and reads only the entries the target
        selects (a log-softmax output is <= 0; nothing checks it, and nothing needs to).
    {target_doc}
    {common_parameters}

    Notes
    -----
    .. math::

        \ell_n = -\sum_c a_{nc}\, \log p_{nc}, \qquad
        \frac{\partial \ell_n}{\partial \log p_{nc}} = -a_{nc}, \qquad
        \frac{\partial^2 \ell_n}{\partial \log p_{nc}\, \partial \log p_{nk}} = 0

    The loss is linear in its input, so its Hessian is exactly 0 everywhere (there is no
    kink): ``hessian`` returns zeros. A Newton step or a gradient-boosting leaf value
    (gradient over Hessian) needs the curvature that the log-softmax contributes; take
    the second order of ``softmax_cross_entropy`` on the logits instead, whose Hessian
    is :math:`\operatorname{diag} p - p p^\top`.

    References
    ----------
    .. [1] K. P. Murphy, *Probabilistic Machine Learning: An Introduction*, MIT Press 2022,
       sec. 4.2.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> logp = np.log(np.array([[0.7, 0.2, 0.1]]))
    >>> round(float(lk.nll_loss(logp, np.array([1]))), 6)   # -ln 0.2
    1.609438
    """

    name = "nll_loss"
    family = "classification"
    prediction = "log-probabilities"
    target = "integer labels or class probabilities"
    formula = r"\ell = -\log p_y"
    gradient_formula = r"\frac{\partial \ell}{\partial \log p_c} = -[c = y]"
    hessian_formula = r"\frac{\partial^2 \ell}{\partial \log p_c\, \partial \log p_k} = 0"
    second_order = "zero"
    when_to_use = (
        "When the network ends in log_softmax (or any log-probability output) and the "
        "negative log-likelihood of the true class is wanted. Mathematically identical to "
        "softmax_cross_entropy applied to the logits before the log_softmax."
    )
    references = ("Murphy, Probabilistic Machine Learning: An Introduction, 2022, sec. 4.2",)

    def _compute(self, ctx, prediction, target, *, need_grad, axis=-1, class_weight=None,
                 ignore_index=None, label_smoothing=0.0):
        xp = ctx.xp
        ct = class_target(ctx, prediction, target, axis=axis, class_weight=class_weight,
                          ignore_index=ignore_index, label_smoothing=label_smoothing)
        # linear in the log-probabilities: the Hessian is 0 everywhere
        hess = xp.zeros_like(prediction) if ctx.wants_hessian else None
        if ct.labels is None:
            value = xp.sum(_weighted(xp, ct.coef, -prediction), axis=ct.axis)
            return Terms(value, -ct.coef if need_grad else None, ct.weight, ct.expand,
                         hess=hess)
        # integer labels: the label's entry gathered, no dense one-hot for the value
        wy = ct.expand(ct.label_weight)
        value = xp.squeeze(_weighted(xp, wy, -ct.pick(xp, prediction)), axis=ct.axis)
        grad = None
        if need_grad:
            grad = -xp.where(ct.hit(), wy, xp.zeros_like(prediction))
        if ct.smooth is not None:
            smooth = (ct.smoothing / prediction.shape[ct.axis]) * ct.smooth
            value = value + xp.sum(_weighted(xp, smooth, -prediction), axis=ct.axis)
            if need_grad:
                grad = grad - smooth
        return Terms(value, grad, ct.weight, ct.expand, hess=hess)


# the pointwise math of binary_cross_entropy, stated once (losskit.core.formula): the
# generic kernel evaluates it on any array library, losskit.kernels.pointwise compiles it
def _binary_cross_entropy(y, t, eps):
    q = 1.0 - y
    in_p = (y >= eps) | isnan(y)  # NaN propagates, unclamped
    in_q = (q >= eps) | isnan(q)
    cp = where(in_p, y, eps)
    cq = where(in_q, q, eps)
    value = -(t * log(cp) + (1.0 - t) * log(cq))
    grad = where(in_p, -t / cp, 0.0) + where(in_q, (1.0 - t) / cq, 0.0)  # 0 below the clamp
    return value, grad


def _binary_cross_entropy_hessian(y, t, eps):
    """d2 value / dy2 = t / y^2 + (1 - t) / (1 - y)^2, each term 0 below its clamp."""
    q = 1.0 - y
    in_p = (y >= eps) | isnan(y)
    in_q = (q >= eps) | isnan(q)
    cp = where(in_p, y, eps)
    cq = where(in_q, q, eps)
    return where(in_p, t / (cp * cp), 0.0) + where(in_q, (1.0 - t) / (cq * cq), 0.0)


def _sigmoid_binary_cross_entropy_hessian(z, c):
    """d2 value / dz2 of sigmoid_binary_cross_entropy: the coefficient c = w t + 1 - t
    times sigma(z) (1 - sigma(z)) = e / (1 + e)^2 with e = exp(-|z|) (0 at +-inf, no
    overflow for any z)."""
    e = exp(0.0 - abs(z))
    d = 1.0 + e
    return c * (e / (d * d))


def _sigmoid_binary_cross_entropy(z, t):
    """The plain sigmoid BCE (no pos_weight, smoothing or ignored targets) as a pointwise
    formula: softplus(z) - t z, gradient sigma(z) - t, with e = exp(-|z|) (no overflow; a
    saturated logit on its own target costs 0, not inf - inf). Its fused kernel is the
    second-order one (``grad_and_hessian`` for gradient boosting); value and gradient keep
    the hand-tuned fast path."""
    e = exp(0.0 - abs(z))
    linear = where(z >= 0.0, where(t == 1.0, 0.0, (1.0 - t) * z),
                   where(t == 0.0, 0.0, (0.0 - t) * z))
    p = where(z >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))
    return linear + log1p_unit(e), p - t  # e in (0, 1]


def _sigmoid_binary_cross_entropy_plain_hessian(z, t):
    """sigma(z) (1 - sigma(z)) = e / (1 + e)^2, e = exp(-|z|) (NaN in t propagates)."""
    e = exp(0.0 - abs(z))
    d = 1.0 + e
    return e / (d * d) + 0.0 * t


def _probability_target_ok(z, t):
    """Targets in [0, 1] (NaN passes: it propagates)."""
    return ((t >= 0.0) & (t <= 1.0)) | isnan(t)


def _binary_cross_entropy_ok(y, t, eps):
    """Predictions and targets in [0, 1] (NaN passes: it propagates)."""
    return (((y >= 0.0) & (y <= 1.0)) | isnan(y)) & (((t >= 0.0) & (t <= 1.0)) | isnan(t))


BINARY_CROSS_ENTROPY = Formula(_binary_cross_entropy,
                               hessian=_binary_cross_entropy_hessian)
SIGMOID_BINARY_CROSS_ENTROPY_HESSIAN = Formula(_sigmoid_binary_cross_entropy_hessian)
BINARY_CROSS_ENTROPY_OK = Formula(_binary_cross_entropy_ok)
SIGMOID_BINARY_CROSS_ENTROPY = Formula(_sigmoid_binary_cross_entropy,
                                       hessian=_sigmoid_binary_cross_entropy_plain_hessian)
PROBABILITY_TARGET_OK = Formula(_probability_target_ok)


class BinaryCrossEntropy(Loss):
    r"""Binary cross-entropy of probabilities, elementwise (binary or multi-label).

    :math:`\ell = -[t \log y + (1-t) \log(1-y)]`, with :math:`y` and :math:`1-y` each clamped
    below at the machine epsilon of the input dtype (so ``log 0`` never occurs; PyTorch clamps
    the log at -100 instead). Prefer ``sigmoid_binary_cross_entropy`` on logits.

    Parameters
    ----------
    prediction : floating array of shape (*)
        Probabilities in [0, 1] (a sigmoid output).
    target : array of the same shape
        Targets in [0, 1] (hard 0/1 labels or soft).
    label_smoothing : float in [0, 1], default 0
        Keras's binary label smoothing: the target becomes :math:`t (1 - s) + s / 2`.
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = -t \log \max(y, \epsilon) - (1-t) \log \max(1-y, \epsilon), \qquad
        \frac{\partial \ell}{\partial y} = -\frac{t}{y}[y \ge \epsilon]
            + \frac{1-t}{1-y}[1-y \ge \epsilon], \qquad
        \frac{\partial^2 \ell}{\partial y^2} = \frac{t}{y^2}[y \ge \epsilon]
            + \frac{1-t}{(1-y)^2}[1-y \ge \epsilon]

    For multi-label targets ``(N, K)`` the tutorials' per-sample loss is the sum over the K
    classes and the batch loss its mean over samples: ``reduction="batchmean"``.

    References
    ----------
    .. [1] C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer 2006, eq. 4.90.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> y = np.array([0.9, 0.2]); t = np.array([1., 0.])
    >>> bool(np.isclose(lk.binary_cross_entropy(y, t), -(np.log(0.9) + np.log(0.8)) / 2))
    True
    """

    name = "binary_cross_entropy"
    family = "classification"
    prediction = "probabilities"
    target = "probabilities in [0, 1], same shape"
    formula = r"\ell = -\left[t \log y + (1 - t) \log (1 - y)\right]"
    gradient_formula = r"\frac{\partial \ell}{\partial y} = \frac{y - t}{y (1 - y)}"
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial y^2} = \frac{t}{y^2} "
                       r"+ \frac{1 - t}{(1 - y)^2}")
    second_order = "diagonal"
    when_to_use = (
        "Binary or multi-label classification when the model outputs probabilities (a "
        "sigmoid per output). From logits use sigmoid_binary_cross_entropy, which is exact "
        "where this one clamps. For multi-label data (an image with a cat and a frog) each "
        "output is its own Bernoulli; reduction='batchmean' sums over labels and averages "
        "over samples."
    )
    references = ("Bishop, Pattern Recognition and Machine Learning, 2006, eq. 4.90",)

    def _compute(self, ctx, prediction, target, *, need_grad, label_smoothing=0.0):
        xp = ctx.xp
        check_in_range(xp, "prediction", prediction, 0.0, 1.0,
                       hint="binary_cross_entropy expects probabilities; pass logits to "
                            "sigmoid_binary_cross_entropy")
        t, _ = self._binary_target(ctx, prediction, target, label_smoothing=label_smoothing)
        # the clamp is the machine epsilon of the caller's dtype (float16's for a float16
        # input, computed in float32)
        value, grad = BINARY_CROSS_ENTROPY.on(xp)(prediction, t, ctx.eps)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(BINARY_CROSS_ENTROPY, prediction, t, ctx.eps))


def _broadcasts_into(small: tuple, shape: tuple) -> bool:
    """Whether an array of shape ``small`` broadcasts to ``shape`` (and not beyond it)."""
    if len(small) > len(shape):
        return False
    return all(a == 1 or a == b for a, b in zip(reversed(small), reversed(shape)))


class SigmoidBinaryCrossEntropy(Loss):
    r"""Binary cross-entropy of logits, elementwise: exact for any logit, with ``pos_weight``.

    Parameters
    ----------
    prediction : floating array of shape (*)
        Logits :math:`z`; the probability is :math:`\sigma(z)`.
    target : array of the same shape
        Targets in [0, 1] (n-hot for multi-label).
    pos_weight : float or array, optional
        Weight of the positive term (PyTorch's ``pos_weight``): above 1 favours recall,
        below 1 precision. A scalar, one weight per class along the last axis ``(K,)``, or
        any shape that broadcasts to the prediction's without changing it, as PyTorch
        allows: ``(1, K)``, ``(N, K)``, ``(N, 1)``.
    label_smoothing : float in [0, 1], default 0
        Keras's binary label smoothing: the target becomes :math:`t (1 - s) + s / 2`.
    ignore_index : int, optional
        Target elements equal to it (``-100`` in segmentation code) take no part: no
        value, no gradient, not counted by ``reduction="mean"``.
    {common_parameters}

    Notes
    -----
    With :math:`\operatorname{softplus}(x) = \log(1 + e^x)` and positive weight :math:`w`:

    .. math::

        \ell = w\,t\,\operatorname{softplus}(-z) + (1 - t)\operatorname{softplus}(z), \qquad
        \frac{\partial \ell}{\partial z} = \bigl(w t + 1 - t\bigr)\,\sigma(z) - w t, \qquad
        \frac{\partial^2 \ell}{\partial z^2} = \bigl(w t + 1 - t\bigr)\,\sigma(z)\,(1 - \sigma(z))

    With :math:`w = 1` the gradient is :math:`\sigma(z) - t`: the sigmoid's derivative has
    cancelled, so there is no saturation (the tutorials' point). The second derivative is
    formed as :math:`e / (1 + e)^2` with :math:`e = e^{-|z|}`: finite for every logit, 0 at
    :math:`\pm\infty`. Multi-label per the sources
    (sum over classes, mean over samples) is ``reduction="batchmean"``.

    References
    ----------
    .. [1] I. Goodfellow, Y. Bengio, A. Courville, *Deep Learning*, MIT Press 2016, sec. 6.2.2.2.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> z = np.array([np.log(9.0)]); t = np.array([0.5])
    >>> lk.sigmoid_binary_cross_entropy.grad(z, t)   # sigmoid(ln 9) - 0.5 = 0.9 - 0.5
    array([0.4])
    >>> float(lk.sigmoid_binary_cross_entropy(np.array([-1000.0]), np.array([1.0])))
    1000.0
    """

    name = "sigmoid_binary_cross_entropy"
    family = "classification"
    prediction = "logits"
    target = "probabilities in [0, 1], same shape"
    formula = r"\ell = -\left[t \log \sigma(z) + (1 - t) \log (1 - \sigma(z))\right]"
    gradient_formula = r"\frac{\partial \ell}{\partial z} = \sigma(z) - t"
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial z^2} = (w t + 1 - t)\, "
                       r"\sigma(z) (1 - \sigma(z))")
    second_order = "diagonal"
    when_to_use = (
        "Binary classification and multi-label classification (independent yes/no per "
        "class) from logits. Stable for any logit, and its gradient sigmoid(z) - t does not "
        "saturate, unlike MSE after a sigmoid. pos_weight rebalances rare positives."
    )
    references = ("Goodfellow, Bengio, Courville, Deep Learning, 2016, sec. 6.2.2.2",)


    def _compute(self, ctx, prediction, target, *, need_grad, pos_weight=None,
                 label_smoothing=0.0, ignore_index=None):
        xp = ctx.xp
        t, keep = self._binary_target(ctx, prediction, target, ignore_index=ignore_index,
                                      label_smoothing=label_smoothing)
        pos = t
        if pos_weight is not None:
            pw = ctx.asarray(pos_weight, "pos_weight")
            check_numeric(xp, "pos_weight", pw, bool_ok=False)
            shape = tuple(prediction.shape)
            if not _broadcasts_into(tuple(pw.shape), shape):
                raise ValueError(
                    f"`pos_weight` must broadcast to the shape of `prediction` {shape} "
                    f"without changing it (a scalar, one weight per class along the last "
                    f"axis, or a shape such as (1, K), (N, K), (N, 1)); got "
                    f"{tuple(pw.shape)}")
            pw = xp.astype(pw, ctx.work)
            check_in_range(xp, "pos_weight", pw, 0.0, _INF, hint="weights must be non-negative")
            pos = t * pw
        neg = 1.0 - t
        # 0 * inf = 0: a perfect prediction at an infinite logit costs nothing
        value = (_weighted(xp, pos, _softplus(xp, -prediction))
                 + _weighted(xp, neg, _softplus(xp, prediction)))
        grad = (pos + neg) * _sigmoid(xp, prediction) - pos if need_grad else None
        hess = None
        if ctx.wants_hessian:
            hess = SIGMOID_BINARY_CROSS_ENTROPY_HESSIAN.on(xp)(prediction, pos + neg)
        return self._drop_ignored(xp, Terms(value, grad, hess=hess), keep)


for _cls in (SoftmaxCrossEntropy, CrossEntropy, NLLLoss):
    _cls.__doc__ = fill_doc(_cls.__doc__, target_doc=_TARGET_DOC)

softmax_cross_entropy = register(SoftmaxCrossEntropy())
cross_entropy = register(CrossEntropy())
nll_loss = register(NLLLoss())
binary_cross_entropy = register(BinaryCrossEntropy())
sigmoid_binary_cross_entropy = register(SigmoidBinaryCrossEntropy())

# fused NumPy kernels (losskit.kernels.fast_paths), consulted by the pipeline
register_fast_path(SoftmaxCrossEntropy, unless_set(with_second_order(  # + the row family
    rows.softmax_cross_entropy, rows.softmax_cross_entropy_second_order), "z_loss"))
register_fast_path(NLLLoss, rows.nll_loss)
register_fast_path(CrossEntropy, rows.cross_entropy)
register_fast_path(SigmoidBinaryCrossEntropy, with_second_order(
    unless_set(fast_paths.sigmoid_binary_cross_entropy, "label_smoothing", "ignore_index"),
    unless_set(pointwise.fast_path(SIGMOID_BINARY_CROSS_ENTROPY, check=PROBABILITY_TARGET_OK),
               "label_smoothing", "ignore_index", "pos_weight").second_order))
register_fast_path(BinaryCrossEntropy, unless_set(pointwise.fast_path(
    BINARY_CROSS_ENTROPY, {"eps": pointwise.machine_eps}, check=BINARY_CROSS_ENTROPY_OK),
    "label_smoothing"))
