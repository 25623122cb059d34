r"""Lovász losses: convex surrogates of the Jaccard (IoU) loss, by sorting the errors.

The Jaccard loss :math:`\Delta_J(\mathbf{m}) = |M| / |\{y = 1\} \cup M|` of a set of
mispredicted pixels :math:`M` is submodular; its Lovász extension :math:`\bar\Delta_J`
(Berman, Rannen Triki and Blaschko 2018) is a convex, piecewise-linear function of a vector
of non-negative pixel errors :math:`\mathbf{m}` that agrees with :math:`\Delta_J` on 0/1
vectors. With the errors sorted in decreasing order, :math:`m_{\pi_1} \ge m_{\pi_2} \ge
\dots`, and :math:`\mathbf{y}` the 0/1 foreground (ground truth) of the group:

.. math::

    \bar\Delta_J(\mathbf{m}) = \sum_{k=1}^{P} m_{\pi_k}\, g_k, \qquad
    g_k = J_k - J_{k-1}, \qquad
    J_k = 1 - \frac{|y| - \sum_{j \le k} y_{\pi_j}}{|y| + \sum_{j \le k} (1 - y_{\pi_j})},
    \quad J_0 = 0

(:math:`J_k` is the Jaccard loss of predicting the :math:`k` largest errors wrong:
Berman's ``lovasz_grad``). The value is the same for every order of tied errors.

**Gradient.** The loss is linear in :math:`\mathbf{m}` while the sort order is fixed, so
its gradient is :math:`\partial \bar\Delta_J / \partial m_i = g_{\operatorname{rank}(i)}`
with the order of the current errors held fixed: the gradient PyTorch or JAX autodiff of
Berman's code gives almost everywhere (everywhere except at ties between errors, where
the function has a kink and any tie order gives a valid subgradient; the sort here is
stable, so ties are taken in index order). Chained with the errors' own derivatives below.

**Ignored pixels** (``ignore_index``) are removed from the group before sorting, as in
Berman's ``flatten_*`` helpers: they count in neither :math:`|y|` nor the union, and get
a zero gradient. A group without any pixel left costs 0.

**Layout.** As for the overlap losses: axis 0 is the batch. ``per_image=True`` gives one
loss per image, ``reduction="none"`` returns shape ``(N,)`` and ``"mean"`` is Berman's
mean over images; ``per_image=False`` pools the whole batch into one group (per class) and
the unreduced loss is 0-d (one number for the batch; a ``sample_weight`` must then be one
number).
"""

from __future__ import annotations

import math
from typing import Any

from ..core.arrays import numbers_on
from ..core.dispatch import register_fast_path
from ..core.loss import Loss, Terms, register
from ..core.primitives import _softmax
from ..core.validation import (
    check_in_range,
    check_integer,
    check_labels,
    check_numeric,
    check_same_shape,
    check_two_values,
)
from ..kernels import lovasz as _fused
from .overlap import _activation, _class_axis, _flag

__all__ = ["lovasz_hinge", "lovasz_softmax"]

_INF = float("inf")


def _gather(xp, x, idx):
    """``x[g, idx[g, k]]`` for 2-d ``x`` and ``idx`` (a gather along axis 1)."""
    if hasattr(xp, "take_along_axis"):
        return xp.take_along_axis(x, idx, axis=1)
    g, m = x.shape  # Dask: one flat take with row offsets
    offsets = xp.reshape(xp.arange(g, dtype=idx.dtype) * m, (g, 1))
    flat = xp.take(xp.reshape(x, (-1,)), xp.reshape(idx + offsets, (-1,)))
    return xp.reshape(flat, (g, m))


def lovasz_weights(xp, errors, fg, valid):
    r"""The Lovász gradient :math:`g_{\operatorname{rank}(i)}` of every entry of each row.

    ``errors`` and ``fg`` (0/1, floating) have shape ``(G, P)``: one group per row;
    ``valid`` (bool, same shape, or None) marks the entries that take part. Returns the
    weights in the original order (0 at invalid entries), so that the Lovász extension of
    row :math:`r` is ``sum(errors[r] * weights[r])`` and its gradient is ``weights[r]``.
    """
    g, p = errors.shape
    if p == 0 or g == 0:
        return xp.zeros_like(errors)
    if valid is not None:  # invalid entries last, as background: they change no J_k
        errors = xp.where(valid, errors, xp.full_like(errors, -_INF))
        fg = xp.where(valid, fg, xp.zeros_like(fg))
    order = xp.argsort(-errors, axis=1, stable=True)  # decreasing errors, ties in index order
    y = _gather(xp, fg, order)
    total = xp.sum(y, axis=1, keepdims=True)
    inter = total - xp.cumulative_sum(y, axis=1)
    union = total + xp.cumulative_sum(1.0 - y, axis=1)  # >= 1 at every position
    jac = 1.0 - inter / union
    step = jac - xp.concat([xp.zeros_like(jac[:, :1]), jac[:, :-1]], axis=1)
    weights = _gather(xp, step, xp.argsort(order, axis=1, stable=True))
    if valid is not None:
        weights = xp.where(valid, weights, xp.zeros_like(weights))
    return weights


def _per_image(per_image, name):
    return _flag("per_image", per_image, name)


def _pooled_refusal(options, *, default):
    """losskit.evaluate streams a Lovász loss only per image: pooled, the batch is sorted
    as one group."""
    if options.get("per_image", default) is True:
        return None
    return ("with per_image=False the loss pools the whole batch before sorting, so it is "
            "not a sum over blocks of rows")


class LovaszHinge(Loss):
    r"""Lovász hinge loss for binary segmentation (Berman et al.), from logits.

    The Lovász extension of the Jaccard loss applied to the hinge errors
    :math:`m_i = \max(0, 1 - s_i z_i)` of the logits :math:`z`, with signs
    :math:`s_i = 2 y_i - 1`: a convex surrogate that optimises the foreground IoU directly.
    See the module notes for the sort, the gradient and the layout.

    Parameters
    ----------
    prediction : floating array, ``(N, *spatial)``
        Logits (scores, unbounded; 0 is the decision boundary) of the foreground. Axis 0 is
        the batch.
    target : array of the prediction's shape
        Binary labels: 0/1 (integer, bool or floating), 1 the foreground.
    per_image : bool, default True
        True: one loss per image (Berman's default for ``lovasz_hinge``); the mean over
        images is ``reduction="mean"``. False: one loss of the whole batch pooled (a 0-d
        unreduced loss).
    ignore_index : int, optional
        With integer labels: pixels labelled so are removed before sorting (Berman's
        ``ignore``); they get a zero gradient.
    {common_parameters}

    Notes
    -----
    For one group (an image, or the batch with ``per_image=False``), with the errors
    :math:`e_i = 1 - s_i z_i` and the Lovász weights :math:`g` of the sorted errors
    (module notes):

    .. math::

        \ell = \sum_{k} \max(0, e_{\pi_k})\, g_k, \qquad
        \frac{\partial \ell}{\partial z_i} = -s_i\, [e_i > 0]\, g_{\operatorname{rank}(i)},
        \qquad \frac{\partial^2 \ell}{\partial z_i \partial z_j} = 0

    with the sort order held fixed (the gradient autodiff of the reference code gives,
    ReLU's derivative 0 at 0 included). The loss is piecewise linear in the logits, so its
    Hessian is 0 almost everywhere and undefined at the kinks (ties between errors, an
    error of exactly 0); ``hessian`` returns zeros. A Newton step (gradient boosting)
    cannot use it: as for XGBoost's ``reg:absoluteerror`` and LightGBM's ``l1``, which
    take a Hessian of 1 (times the sample weight) for their piecewise-linear losses, a
    custom objective would pass a constant positive Hessian instead. This is Berman's ``lovasz_hinge``
    (``pytorch/lovasz_losses.py``): the errors are sorted before the ReLU, and the
    weights come from the labels in that order. With a single pixel the loss is the hinge
    of a foreground pixel, :math:`\max(0, 1 - z)`, and :math:`\max(0, 1 + z)` of a
    background one.

    References
    ----------
    .. [1] M. Berman, A. Rannen Triki, M. B. Blaschko, "The Lovász-Softmax loss: A
       tractable surrogate for the optimization of the intersection-over-union measure in
       neural networks", CVPR 2018, arXiv:1705.08790.
    .. [2] J. Yu, M. B. Blaschko, "Learning submodular losses with the Lovász hinge",
       ICML 2015.

    Examples
    --------
    Two foreground pixels. Errors :math:`1 - z = (0, 1.5)`; sorted decreasing, the labels
    are (1, 1): :math:`J = (1/2, 1)`, :math:`g = (1/2, 1/2)` and the loss is
    :math:`1.5 \cdot 1/2 = 0.75`.

    >>> import numpy as np, losskit as lk
    >>> z = np.array([[1.0, -0.5]]); y = np.array([[1, 1]])
    >>> float(lk.lovasz_hinge(z, y))
    0.75
    >>> lk.lovasz_hinge.grad(z, y)
    array([[ 0. , -0.5]])
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "lovasz_hinge"
    family = "overlap"
    prediction = "logits"
    target = "binary labels 0/1 of the prediction's shape"
    formula = (r"\ell = \sum_k \max(0, 1 - s_{\pi_k} z_{\pi_k})\,\bigl(J_k - J_{k-1}\bigr),"
               r"\quad s = 2y - 1")
    gradient_formula = (r"\frac{\partial \ell}{\partial z_i} = -s_i\,[1 - s_i z_i > 0]\,"
                        r"\bigl(J_{\operatorname{rank}(i)} - J_{\operatorname{rank}(i)-1}"
                        r"\bigr)")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial z_i \partial z_j} = 0\ "
                       r"(\text{no ties of the errors}, 1 - s_i z_i \ne 0)")
    second_order = "zero"
    when_to_use = (
        "Binary segmentation evaluated by the foreground IoU (Jaccard index): the Lovász "
        "hinge is a convex surrogate of the Jaccard loss of the thresholded logits, so it "
        "optimises the metric itself rather than a per-pixel proxy; often used to fine-tune "
        "a model first trained with binary cross-entropy."
    )
    references = (
        "Berman, Rannen Triki, Blaschko, The Lovász-Softmax loss: A tractable surrogate for "
        "the optimization of the intersection-over-union measure in neural networks, CVPR "
        "2018, arXiv:1705.08790",
        "Yu and Blaschko, Learning submodular losses with the Lovász hinge, ICML 2015",
    )

    def streaming_refusal(self, options):
        return _pooled_refusal(options, default=True)

    def _compute(self, ctx, prediction, target, *, need_grad, per_image=True,
                 ignore_index=None):
        return self._terms(ctx, prediction, target, need_grad, per_image, ignore_index)

    def _terms(self, ctx, prediction, target, need_grad, per_image, ignore_index,
               weights_of=lovasz_weights):
        """The loss, stated once; ``weights_of`` computes the Lovász weights (the fused
        NumPy path, :mod:`losskit.kernels.lovasz`, passes its sort)."""
        xp = ctx.xp
        z = prediction
        pooled = not _per_image(per_image, self.name)
        ignore_index = check_integer("ignore_index", ignore_index, loss=self.name,
                                     or_none=True)
        if z.ndim == 0:
            raise ValueError(f"`prediction` of {self.name} needs a batch axis (axis 0): shape "
                             "(N, *spatial); got a 0-d array")
        y = ctx.asarray(target, "target")
        check_numeric(xp, "target", y)
        check_same_shape("prediction", z.shape, "target", y.shape)
        valid = None
        if xp.isdtype(y.dtype, "integral"):
            check_labels(xp, "target", y, 2, ignore_index=ignore_index)
            if ignore_index is not None:
                valid = y != ignore_index
                y = xp.where(valid, y, xp.zeros_like(y))
        else:
            if ignore_index is not None:
                raise ValueError(f"`ignore_index` of {self.name} applies to integer labels "
                                 f"only; `target` has dtype {y.dtype}")
            check_two_values(xp, "target", y, (0.0, 1.0), loss=self.name,
                             meaning="binary labels 0/1")
        y = xp.astype(y, ctx.work)
        shape = tuple(z.shape)
        size = math.prod(shape[1:])  # pixels per image
        rows = (1, shape[0] * size) if pooled else (shape[0], size)
        zz = xp.reshape(z, rows)
        yy = xp.reshape(y, rows)
        vv = None if valid is None else xp.reshape(valid, rows)
        signs = 2.0 * yy - 1.0
        errors = 1.0 - zz * signs
        active = errors > 0
        hinge = xp.where(active, errors, xp.zeros_like(errors))
        weights = weights_of(xp, errors, yy, vv)
        if vv is not None:
            hinge = xp.where(vv, hinge, xp.zeros_like(hinge))
        value = xp.sum(hinge * weights, axis=1)
        if pooled:
            value = xp.reshape(value, ())
        grad = None
        if need_grad:
            g = xp.where(active, -signs * weights, xp.zeros_like(weights))
            grad = xp.reshape(g, shape)
        # piecewise linear in z (linear errors, a ReLU, weights constant between ties)
        hess = xp.zeros_like(z) if ctx.wants_hessian else None
        if pooled:
            return Terms(value, grad, hess=hess)
        bshape = (shape[0],) + (1,) * (z.ndim - 1)
        return Terms(value, grad, None, lambda a: xp.reshape(a, bshape), hess=hess)


class LovaszSoftmax(Loss):
    r"""Lovász-Softmax loss for multi-class segmentation (Berman et al.).

    For each class :math:`c`, the Lovász extension of the Jaccard loss of that class
    applied to the errors :math:`m_{ic} = |[y_i = c] - p_{ic}|` of the class probabilities;
    the loss is the mean over the classes counted (by default those present in the
    target). A convex surrogate of the mean IoU over classes. See the module notes for the
    sort, the gradient and the layout.

    Parameters
    ----------
    prediction : floating array, ``(N, C, *spatial)`` (or with the classes on ``axis``)
        Class probabilities (a softmax output, as in Berman's ``lovasz_softmax``), or
        logits with ``from_logits="softmax"``. Axis 0 is the batch.
    target : integer array, ``(N, *spatial)``
        Class labels in [0, C): the prediction's shape without the class axis.
    classes : "present", "all" or sequence of int, default "present"
        The classes averaged: those occurring in the group's target (Berman's default),
        all C classes, or the listed ones (present or not).
    per_image : bool, default False
        False (Berman's default for ``lovasz_softmax``): the whole batch is one group per
        class and the unreduced loss is 0-d. True: one loss per image (then the mean over
        images is ``reduction="mean"``; an image with no class counted costs 0).
    axis : int, default 1
        The class axis (not 0): 1 for ``(N, C, *spatial)``, -1 for ``(N, *spatial, C)``.
    from_logits : {False, "softmax"}, default False
        False: ``prediction`` holds probabilities (checked to lie in [0, 1]).
        ``"softmax"``: logits, :math:`p = \operatorname{softmax}(z)` along ``axis``; the
        gradient is then with respect to the logits.
    ignore_index : int, optional
        Pixels labelled so are removed before sorting (Berman's ``ignore``); zero gradient.
    {common_parameters}

    Notes
    -----
    For one group (an image, or the batch) and the set :math:`\mathcal{C}` of classes
    counted, with the Lovász weights :math:`g^{(c)}` of the errors of class :math:`c`
    sorted in decreasing order (module notes):

    .. math::

        \ell = \frac{1}{|\mathcal{C}|} \sum_{c \in \mathcal{C}} \sum_k m_{\pi_k c}\,
        g^{(c)}_k, \qquad
        \frac{\partial \ell}{\partial p_{ic}} = \frac{[c \in \mathcal{C}]}{|\mathcal{C}|}
        \operatorname{sign}(p_{ic} - [y_i = c])\, g^{(c)}_{\operatorname{rank}(i)}

    with the sort order held fixed (and :math:`\operatorname{sign}(0) = 0`, the derivative
    autodiff gives for :math:`|x|` at 0). With ``from_logits="softmax"``,
    :math:`\partial \ell / \partial z_c = p_c (g_c - \sum_k p_k g_k)`.

    **Second order.** The loss is piecewise linear in the probabilities: with
    ``from_logits=False`` its Hessian is 0 almost everywhere (undefined at ties of the
    errors and where :math:`p_{ic} = [y_i = c]`) and ``hessian``/``hvp`` return zeros.
    With ``from_logits="softmax"`` the softmax is not linear, so the Hessian with respect
    to the logits is that of :math:`g \cdot \operatorname{softmax}(z)` with :math:`g =
    \partial \ell / \partial p` held fixed, which couples the classes of each pixel
    (hence ``second_order = "dense"``):

    .. math::

        \frac{\partial^2 \ell}{\partial z_c \partial z_k} = \sum_a g_a
        \frac{\partial^2 p_a}{\partial z_c \partial z_k}, \qquad
        \frac{\partial^2 \ell}{\partial z_c^2} = p_c (1 - 2 p_c)
        \Bigl(g_c - \sum_a p_a g_a\Bigr)

    (not positive semi-definite: the Lovász extension is convex in the errors, not in the
    logits). An empty
    :math:`\mathcal{C}` costs 0. This is Berman's ``lovasz_softmax``
    (``pytorch/lovasz_losses.py``) for ``(N, C, *spatial)`` probabilities; Berman's
    single-channel (sigmoid) variant is not offered (use ``lovasz_hinge`` for binary
    maps).

    References
    ----------
    .. [1] M. Berman, A. Rannen Triki, M. B. Blaschko, "The Lovász-Softmax loss: A
       tractable surrogate for the optimization of the intersection-over-union measure in
       neural networks", CVPR 2018, arXiv:1705.08790.

    Examples
    --------
    Two pixels, both of class 0, predicted with :math:`p_{\cdot 0} = (0.8, 0.6)`. Class 0's
    errors are (0.2, 0.4); sorted decreasing, its labels are (1, 1): :math:`g = (1/2, 1/2)`,
    loss 0.3. Class 1 is absent from the target and not counted.

    >>> import numpy as np, losskit as lk
    >>> p = np.array([[[0.8, 0.6], [0.2, 0.4]]]); y = np.array([[0, 0]])
    >>> round(float(lk.lovasz_softmax(p, y)), 12)
    0.3
    >>> round(float(lk.lovasz_softmax(p, y, classes="all")), 12)  # class 1: 0.4 * 1
    0.35
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "lovasz_softmax"
    family = "overlap"
    prediction = "probabilities"
    target = "integer class labels (the prediction's shape without the class axis)"
    formula = (r"\ell = \frac{1}{|\mathcal{C}|}\sum_{c \in \mathcal{C}} \sum_k "
               r"\bigl|[y_{\pi_k} = c] - p_{\pi_k c}\bigr|\,\bigl(J^{(c)}_k - "
               r"J^{(c)}_{k-1}\bigr)")
    gradient_formula = (r"\frac{\partial \ell}{\partial p_{ic}} = \frac{1}{|\mathcal{C}|}"
                        r"\operatorname{sign}(p_{ic} - [y_i = c])\,\bigl(J^{(c)}_"
                        r"{\operatorname{rank}(i)} - J^{(c)}_{\operatorname{rank}(i)-1}"
                        r"\bigr)")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial z_c \partial z_k} = \sum_a g_a "
                       r"\frac{\partial^2 p_a}{\partial z_c \partial z_k},\ g = \frac{\partial"
                       r" \ell}{\partial p}\ \text{(logits; 0 with respect to probabilities)}")
    second_order = "dense"
    when_to_use = (
        "Multi-class semantic segmentation evaluated by mean IoU: the Lovász-Softmax loss is "
        "a convex surrogate of the per-class Jaccard loss of the softmax output, so it "
        "targets the benchmark metric directly; commonly added to (or used to fine-tune "
        "after) cross-entropy training."
    )
    references = (
        "Berman, Rannen Triki, Blaschko, The Lovász-Softmax loss: A tractable surrogate for "
        "the optimization of the intersection-over-union measure in neural networks, CVPR "
        "2018, arXiv:1705.08790",
    )
    def streaming_refusal(self, options):
        return _pooled_refusal(options, default=False)

    def _compute(self, ctx, prediction, target, *, need_grad, classes="present",
                 per_image=False, axis=1, from_logits=False, ignore_index=None):
        return self._terms(ctx, prediction, target, need_grad, classes, per_image, axis,
                           from_logits, ignore_index)

    def _terms(self, ctx, prediction, target, need_grad, classes, per_image, axis,
               from_logits, ignore_index, weights_of=lovasz_weights):
        """The loss, stated once; ``weights_of`` as in :meth:`LovaszHinge._terms`."""
        xp = ctx.xp
        pooled = not _per_image(per_image, self.name)
        act = _activation(from_logits, self.name)
        if act == "sigmoid":
            raise ValueError(f"`from_logits` of {self.name} must be False or 'softmax'; got "
                             "'sigmoid' (use lovasz_hinge for binary maps)")
        ignore_index = check_integer("ignore_index", ignore_index, loss=self.name,
                                     or_none=True)
        if prediction.ndim < 2:
            raise ValueError(f"`prediction` of {self.name} needs a batch axis and a class "
                             f"axis: shape (N, C, *spatial); got shape "
                             f"{tuple(prediction.shape)}")
        if axis is None:
            raise ValueError(f"`axis` of {self.name} must name the class axis (an int); got "
                             "None (use lovasz_hinge for binary maps)")
        ax = _class_axis(axis, tuple(prediction.shape), self.name)
        shape = tuple(prediction.shape)
        k = shape[ax]
        selected = _classes(classes, k, self.name)
        if act is None:
            check_in_range(xp, "prediction", prediction, 0.0, 1.0,
                           hint=f"{self.name} expects probabilities; for logits pass "
                                "from_logits='softmax'")
            p = prediction
        else:
            p = _softmax(xp, prediction, axis=ax)
        y = ctx.asarray(target, "target")
        check_numeric(xp, "target", y)
        label_shape = shape[:ax] + shape[ax + 1:]
        if not xp.isdtype(y.dtype, "integral") or tuple(y.shape) != label_shape:
            raise ValueError(
                f"`target` of {self.name} must be integer class labels of shape "
                f"{label_shape} (`prediction` {shape} without its class axis {ax}); got "
                f"{y.dtype} of shape {tuple(y.shape)}")
        check_labels(xp, "target", y, k, ignore_index=ignore_index)

        # (N, C, S): classes on axis 1, the spatial positions flattened
        pm = xp.moveaxis(p, ax, 1)
        moved = tuple(pm.shape)
        n = shape[0]
        s = math.prod(label_shape[1:])  # pixels per image
        p3 = xp.reshape(pm, (n, k, s))
        y2 = xp.reshape(y, (n, s))
        classes_col = xp.reshape(xp.arange(k, device=ctx.device), (1, k, 1))
        hit = xp.expand_dims(y2, axis=1) == classes_col  # (N, C, S)
        valid = None
        if ignore_index is not None:
            valid = xp.broadcast_to(xp.expand_dims(y2 != ignore_index, axis=1), (n, k, s))
            hit = hit & valid
        fg = xp.astype(hit, ctx.work)

        def rows(a):  # (N, C, S) -> (groups, pixels)
            if pooled:
                return xp.reshape(xp.permute_dims(a, (1, 0, 2)), (k, n * s))
            return xp.reshape(a, (n * k, s))

        pr, fr = rows(p3), rows(fg)
        vr = None if valid is None else rows(valid)
        diff = pr - fr
        errors = xp.abs(diff)
        weights = weights_of(xp, errors, fr, vr)
        per_class = xp.sum(errors * weights, axis=1)  # (G,)
        if selected == "present":
            counted = xp.astype(xp.sum(fr, axis=1) > 0, ctx.work)
        else:
            counted = numbers_on(xp, selected, dtype=ctx.work, device=ctx.device)
            if not pooled:
                counted = xp.reshape(xp.broadcast_to(xp.reshape(counted, (1, k)), (n, k)),
                                     (n * k,))
        lead = (1, k) if pooled else (n, k)
        counted = xp.reshape(counted, lead)
        howmany = xp.sum(counted, axis=1, keepdims=True)
        share = counted / xp.where(howmany > 0, howmany, xp.ones_like(howmany))  # (., k)
        value = xp.sum(share * xp.reshape(per_class, lead), axis=1)
        if pooled:
            value = xp.reshape(value, ())
        grad = None
        if need_grad:
            g = xp.sign(diff) * weights
            if vr is not None:
                g = xp.where(vr, g, xp.zeros_like(g))
            if pooled:  # (C, N*S) -> (N, C, S)
                g = g * xp.reshape(share, (k, 1))
                g = xp.permute_dims(xp.reshape(g, (k, n, s)), (1, 0, 2))
            else:
                g = xp.reshape(g * xp.reshape(share, (n * k, 1)), (n, k, s))
            g = xp.moveaxis(xp.reshape(g, moved), 1, ax)
            hess = hvp = None
            if ctx.wants_hessian:
                hess, hvp = _softmax_curvature(xp, p if act else None, g, ctx.vector, ax)
            if act == "softmax":  # J^T g = p * (g - <p, g>) along the class axis
                g = p * (g - xp.sum(p * g, axis=ax, keepdims=True))
            grad = g
        else:
            hess = hvp = None
        if pooled:
            return Terms(value, grad, hess=hess, hvp=hvp)
        bshape = (n,) + (1,) * (prediction.ndim - 1)
        return Terms(value, grad, None, lambda a: xp.reshape(a, bshape), hess=hess, hvp=hvp)


def _softmax_curvature(xp, p, g, vector, ax):
    r"""Second order of a loss that is piecewise linear in the probabilities ``p``, with
    the gradient ``g`` with respect to ``p`` (constant between the kinks): with ``p`` given
    (``p = softmax(z)`` along ``ax``) the Hessian with respect to ``z`` is
    :math:`\sum_a g_a \nabla^2 p_a`, whose product with ``v`` is the derivative of
    :math:`J^\top g = p \odot (g - \langle p, g\rangle)` along ``v``:
    :math:`\dot p \odot (g - \langle p, g\rangle) - p\,\langle \dot p, g\rangle` with
    :math:`\dot p = J v = p \odot (v - \langle p, v\rangle)`; its diagonal is
    :math:`p (1 - 2p) (g - \langle p, g\rangle)`. ``p`` None (probabilities given): 0."""
    if p is None:
        zero = xp.zeros_like(g)
        return zero, (None if vector is None else zero)
    centred = g - xp.sum(p * g, axis=ax, keepdims=True)
    diag = p * (1.0 - 2.0 * p) * centred
    if vector is None:
        return diag, None
    dp = p * (vector - xp.sum(p * vector, axis=ax, keepdims=True))
    return diag, dp * centred - p * xp.sum(dp * g, axis=ax, keepdims=True)


def _classes(classes: Any, k: int, loss: str):
    """``"present"``, or a 0/1 list of length ``k`` marking the classes counted."""
    if isinstance(classes, str):
        if classes == "present":
            return "present"
        if classes == "all":
            return [1.0] * k
        raise ValueError(f"`classes` of {loss} must be 'present', 'all' or a sequence of "
                         f"class indices; got {classes!r}")
    try:
        items = list(classes)
    except TypeError:
        raise TypeError(f"`classes` of {loss} must be 'present', 'all' or a sequence of "
                        f"class indices; got {type(classes).__name__}") from None
    marks = [0.0] * k
    for c in items:
        if isinstance(c, bool) or not isinstance(c, int) and not hasattr(c, "__index__"):
            raise TypeError(f"`classes` of {loss} must hold integer class indices; got {c!r}")
        c = int(c)
        if not 0 <= c < k:
            raise ValueError(f"`classes` of {loss} must hold class indices in [0, {k - 1}] "
                             f"(C={k} from the class axis); got {c}")
        marks[c] = 1.0
    return marks


lovasz_hinge = register(LovaszHinge())
lovasz_softmax = register(LovaszSoftmax())


# the fused NumPy paths (losskit.kernels.lovasz): the same _terms with the Lovász weights
# of a numba radix sort instead of two stable argsorts
register_fast_path(LovaszHinge, _fused.lovasz_hinge)
register_fast_path(LovaszSoftmax, _fused.lovasz_softmax)
