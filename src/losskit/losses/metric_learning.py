r"""Metric-learning losses: pairs, triplets and rankings of embeddings or scores.

These losses compare two or three arrays instead of a prediction and a target, so they
take several positional arrays in PyTorch's order (``loss.inputs``) and can differentiate
with respect to every embedding (``loss.differentiable``):

* :data:`contrastive` -- Hadsell, Chopra and LeCun's pair loss ``(x1, x2, target)``;
* :data:`triplet_margin` -- ``torch.nn.functional.triplet_margin_loss`` ``(anchor,
  positive, negative)``;
* :data:`margin_ranking` -- ``torch.nn.functional.margin_ranking_loss`` ``(x1, x2,
  target)`` on scores;
* :data:`cosine_embedding` -- ``torch.nn.functional.cosine_embedding_loss`` ``(x1, x2,
  target)``.

``.grad(...)`` is the gradient with respect to the first array, ``.grad(..., wrt="x2")``
with respect to another one and ``.grad(..., wrt="all")`` a tuple in
``loss.differentiable`` order. The first array decides the dtype (float32 in, float32
out); the other embeddings must have the same dtype (they are differentiated, and their
gradients come back in that dtype).

**Shapes.** Embeddings lie along the **last** axis: ``(N, D)`` gives one loss per row,
shape ``(N,)``; a single ``(D,)`` example gives a 0-d loss (as in PyTorch); further
leading axes are batch axes, ``(*, D) -> (*)``. Labels have the embeddings' shape without
the last axis. ``margin_ranking`` works on scores and is elementwise, ``(*) -> (*)``.
``reduction="batchmean"`` divides by the batch size, the first axis; a single ``(D,)``
example is a batch of one.

**Norms.** ``p`` is the degree of the :math:`L_p` distance, any real :math:`p \ge 1` or
``inf`` (``float("inf")``); ``p = 1`` and ``p = 2`` are the common ones. Degrees below 1
(which PyTorch accepts) are not norms and are rejected. Norms are computed as
:math:`M (\sum_i (|v_i| / M)^p)^{1/p}` with :math:`M = \max_i |v_i|`, so they neither
overflow nor underflow. The gradient of :math:`\lVert v \rVert_p` is
:math:`\operatorname{sign}(v_i) (|v_i| / \lVert v \rVert_p)^{p-1}`; for ``p = inf`` the
sign of the largest entries, shared equally between ties (as PyTorch's autograd does). At
:math:`v = 0` the norm has no gradient and the **subgradient 0** is used (PyTorch's
choice too), so identical embeddings never give NaN.

**Kinks.** Where a hinge :math:`\max(0, s)` sits exactly at :math:`s = 0` the subgradient
0 is used, as in :data:`losskit.hinge` (PyTorch's autograd passes the gradient of
:math:`s` there instead). Both are valid subgradients; away from the kink they agree.
"""

from __future__ import annotations

import math

import array_api_compat

from ..core.dispatch import register_fast_path
from ..core.loss import Loss, Terms, register
from ..core.primitives import _hinge_part
from ..core.validation import (same_shape, _dtype_name, check_floating, check_numeric, check_scalar,
                          check_two_values)
from ..kernels import pairs as _pairs

__all__ = [
    "contrastive",
    "contrastive_loss",
    "triplet_margin",
    "triplet_margin_loss",
    "margin_ranking",
    "margin_ranking_loss",
    "cosine_embedding",
    "cosine_embedding_loss",
]


# ---------------------------------------------------------------------------- helpers
def _check_p(p) -> float:
    """The degree of an L_p norm: a real number >= 1, or inf."""
    return check_scalar("p", p, lo=1.0)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False; got {value!r}")
    return value


def _other_input(ctx, x, name: str, first: str, first_shape):
    """A further differentiable array: floating, of the first array's dtype and shape."""
    xp = ctx.xp
    was_array = array_api_compat.is_array_api_obj(x) and not isinstance(x, (int, float, bool))
    arr = ctx.asarray(x, name)
    check_floating(xp, name, arr, loss=ctx.loss)
    if was_array and arr.dtype != ctx.dtype:
        raise TypeError(
            f"`{name}` of {ctx.loss} must have the dtype of `{first}` "
            f"({_dtype_name(ctx.dtype)}); got {_dtype_name(arr.dtype)}. Convert one of them "
            "explicitly: its gradient is returned in that dtype")
    if not same_shape(arr.shape, first_shape):
        raise ValueError(f"`{name}` of {ctx.loss} must have the same shape as `{first}` "
                         f"{tuple(first_shape)}; got {tuple(arr.shape)}")
    return arr if arr.dtype == ctx.work else xp.astype(arr, ctx.work)


def _check_embeddings(ctx, x, name: str):
    if x.ndim == 0:
        raise ValueError(
            f"`{name}` of {ctx.loss} must have at least 1 axis (the last one holds the "
            "embedding: (N, D) for a batch, (D,) for one example); got a 0-d array")


def _labels(ctx, target, shape, *, allowed: tuple[float, float], first: str, meaning: str,
            hint: str, per_pair: bool):
    """Labels of exactly ``shape`` whose values are the two ``allowed`` ones."""
    xp = ctx.xp
    t = ctx.asarray(target, "target")
    check_numeric(xp, "target", t)
    if not same_shape(t.shape, shape):
        where = (f": one label per pair, the shape of `{first}` without its last "
                 "(embedding) axis" if per_pair else f", the shape of `{first}`")
        raise ValueError(f"`target` of {ctx.loss} must have shape {tuple(shape)}{where}; got "
                         f"{tuple(t.shape)}. Nothing is broadcast")
    t = t if t.dtype == ctx.work else xp.astype(t, ctx.work)
    check_two_values(xp, "target", t, allowed, loss=ctx.loss, meaning=meaning, hint=hint)
    return t


def _lp_norm(xp, v, p: float, need_grad: bool):
    r"""``(||v||_p, d||v||_p / dv)`` along the last axis (the gradient or ``None``).

    The subgradient at :math:`v = 0` is 0; NaN in a row makes its norm and gradient NaN;
    an infinite entry makes the norm ``inf`` (the gradient then points along the
    infinite entries).
    """
    a = xp.abs(v)
    zero = xp.zeros_like(v)
    if v.shape[-1] == 0:  # an empty embedding is at distance 0
        d = xp.sum(a, axis=-1)
        return d, (zero if need_grad else None)
    if p == 1.0:
        d = xp.sum(a, axis=-1)
        return d, (xp.sign(v) if need_grad else None)
    nan_row = xp.any(xp.isnan(v), axis=-1)
    m = xp.max(a, axis=-1)
    if math.isinf(p):
        d = xp.where(nan_row, xp.full_like(m, math.nan), m)
        if not need_grad:
            return d, None
        de = xp.expand_dims(d, axis=-1)
        hit = xp.astype(a == de, v.dtype)  # the largest entries (ties share the gradient)
        count = xp.sum(hit, axis=-1, keepdims=True)
        count = xp.where(count > 0, count, xp.ones_like(count))
        g = xp.sign(v) * hit / count
        return d, xp.where(xp.isnan(de), xp.full_like(v, math.nan), g)
    # scaled: M (sum (|v_i| / M)^p)^(1/p) never overflows nor underflows
    big = xp.isinf(m)
    ok = (m > 0) & ~big  # also False for NaN: the NaN reaches the sum below
    safe_m = xp.where(ok, m, xp.ones_like(m))
    r = a / xp.expand_dims(safe_m, axis=-1)
    if p == 2.0:
        s = xp.sqrt(xp.sum(r * r, axis=-1))
    else:
        s = xp.sum(r ** p, axis=-1) ** (1.0 / p)
    d = xp.where(ok, m * s, xp.where(big, m, xp.zeros_like(m)))  # inf, or 0 at v = 0
    d = xp.where(nan_row, xp.full_like(d, math.nan), d)
    if not need_grad:
        return d, None
    de = xp.expand_dims(d, axis=-1)
    pos = (de > 0) & ~xp.isinf(de)
    ratio = a / xp.where(pos, de, xp.ones_like(de))  # |v_i| / ||v|| in [0, 1]
    ratio = xp.where(xp.isinf(de), xp.astype(xp.isinf(a), v.dtype), ratio)
    g = xp.sign(v) * (ratio if p == 2.0 else ratio ** (p - 1.0))
    g = xp.where(de == 0, zero, g)  # the subgradient 0 at v = 0
    return d, xp.where(xp.isnan(de), xp.full_like(v, math.nan), g)


def _last_axis(xp):
    def expand(a):
        return xp.expand_dims(a, axis=-1)
    return expand


def _ndim(x) -> int:
    """Number of axes of an array or a (nested) list; 0 for anything else."""
    shape = getattr(x, "shape", None)
    if shape is not None:
        return len(shape)
    depth = 0
    while isinstance(x, (list, tuple)):
        depth += 1
        if not x:
            break
        x = x[0]
    return depth


class _EmbeddingLoss(Loss):
    """A loss of embeddings along the last axis: one ``(D,)`` example has a 0-d loss, and
    ``reduction="batchmean"`` treats it as a batch of one (as for every loss)."""

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)


# ---------------------------------------------------------------------------- losses
class Contrastive(_EmbeddingLoss):
    r"""Contrastive loss of Hadsell, Chopra and LeCun (2006) for pairs of embeddings.

    With :math:`d = \lVert x_1 - x_2 \rVert_p` and a label :math:`t = 1` for a similar
    pair, :math:`t = 0` for a dissimilar one:

    .. math::

        \ell = t\,\tfrac12 d^2 + (1 - t)\,\tfrac12 \max(0, m - d)^2

    Similar pairs are pulled together; dissimilar pairs are pushed apart until they are
    at least the margin :math:`m` apart, and then cost nothing.

    Parameters
    ----------
    x1, x2 : floating arrays of shape ``(N, D)``, ``(D,)`` or ``(*, D)``
        The two embeddings of each pair (the same dtype); the embedding is the last axis.
    target : array of shape (N,) (the embeddings' shape without the last axis)
        1 for a similar pair, 0 for a dissimilar one (bool, integer or floating).
    margin : float, default 1
        The distance :math:`m \ge 0` beyond which dissimilar pairs cost nothing.
    p : float, default 2
        Degree of the distance :math:`\lVert\cdot\rVert_p`: a real :math:`p \ge 1` or
        ``inf``.
    {common_parameters}

    Returns
    -------
    array
        Per pair, shape (N,) (0-d for one ``(D,)`` pair), with ``reduction="none"``; else
        0-d. ``.grad`` has the shape of ``x1`` (``wrt="x2"`` of ``x2``).

    Raises
    ------
    ValueError
        Shapes that differ, a target that is not 0/1 or of the wrong shape, ``margin < 0``,
        ``p < 1``.
    TypeError
        Non-floating embeddings, or ``x2`` of another dtype than ``x1``.

    Notes
    -----
    With :math:`v = x_1 - x_2` and :math:`g = \partial d / \partial v`
    (:math:`g = v / d` for :math:`p = 2`, :math:`\operatorname{sign}(v)` for :math:`p = 1`):

    .. math::

        \frac{\partial \ell}{\partial x_1} = -\frac{\partial \ell}{\partial x_2}
        = \bigl(t\,d - (1 - t) \max(0, m - d)\bigr)\, g

    For :math:`p = 2` the similar term's gradient is just :math:`t\,(x_1 - x_2)`. At
    :math:`d = 0` (identical embeddings) the norm has no gradient; the subgradient
    :math:`g = 0` is used, so a dissimilar pair at distance 0 gets a zero gradient (any
    direction would do) and nothing is NaN. At :math:`d = m` the hinge is smooth (it is
    squared), so there is no kink.

    **Conventions.** The paper writes :math:`Y = 0` for *similar* pairs: its loss is this
    one with ``target = 1 - Y``. Keras' classic ``mnist_siamese`` example and TensorFlow
    Addons' ``contrastive_loss`` use ``1`` = similar like this loss but drop the
    :math:`\frac12`: their per-pair value is ``2 * contrastive(..., reduction="none")``
    (they take the distance itself as input). pytorch-metric-learning's
    ``ContrastiveLoss(pos_margin=0, neg_margin=1)`` is a different loss, a hinge on the
    *unsquared* distance, :math:`t \max(0, d - m_+) + (1 - t) \max(0, m_- - d)`, averaged
    over the pairs with a non-zero loss; it is not a rescaling of this one.

    References
    ----------
    .. [1] R. Hadsell, S. Chopra, Y. LeCun, "Dimensionality reduction by learning an
       invariant mapping", CVPR 2006, doi:10.1109/CVPR.2006.100.

    Examples
    --------
    A similar pair at distance 5 costs :math:`5^2/2`; a dissimilar pair at distance 0.5
    with margin 1 costs :math:`(1 - 0.5)^2 / 2`:

    >>> import numpy as np, losskit as lk
    >>> x1 = np.zeros((2, 2)); x2 = np.array([[3.0, 4.0], [0.3, 0.4]])
    >>> lk.contrastive(x1, x2, np.array([1, 0]), reduction="none")
    array([12.5  ,  0.125])
    >>> lk.contrastive.grad(x1, x2, np.array([1, 0]), reduction="sum")  # (t d - (1-t)(m-d)) v/d
    array([[-3. , -4. ],
           [ 0.3,  0.4]])
    """

    name = "contrastive"
    aliases = ("contrastive_loss",)
    family = "metric_learning"
    prediction = "embeddings"
    target = "1 similar / 0 dissimilar, one per pair"
    inputs = ("x1", "x2", "target")
    differentiable = ("x1", "x2")
    formula = (r"\ell = t\,\tfrac12 d^2 + (1 - t)\,\tfrac12 \max(0, m - d)^2,\ "
               r"d = \lVert x_1 - x_2 \rVert_p")
    gradient_formula = (r"\frac{\partial \ell}{\partial x_1} = -\frac{\partial \ell}"
                        r"{\partial x_2} = \bigl(t d - (1 - t)\max(0, m - d)\bigr)"
                        r"\frac{\partial d}{\partial (x_1 - x_2)}")
    when_to_use = (
        "Learning an embedding (siamese networks, dimensionality reduction, verification) "
        "from pairs labelled same/different: similar pairs are pulled together and "
        "dissimilar pairs pushed at least the margin apart. Needs only pair labels, not "
        "classes; triplet_margin ranks a positive against a negative instead, which is "
        "often easier to balance."
    )
    references = ("Hadsell, Chopra, LeCun, Dimensionality reduction by learning an "
                  "invariant mapping, CVPR 2006, doi:10.1109/CVPR.2006.100",)

    def _compute(self, ctx, x1, x2, target, *, need_grad, margin=1.0, p=2.0):
        xp = ctx.xp
        m = check_scalar("margin", margin, lo=0.0)
        p = _check_p(p)
        _check_embeddings(ctx, x1, "x1")
        x2 = _other_input(ctx, x2, "x2", "x1", x1.shape)
        t = _labels(ctx, target, x1.shape[:-1], allowed=(1.0, 0.0), first="x1",
                    meaning="1 (similar pair) or 0 (dissimilar pair)", per_pair=True,
                    hint="Map -1/+1 labels with (t + 1) / 2; Hadsell et al.'s Y (0 = "
                         "similar) is 1 - Y")
        d, g = _lp_norm(xp, x1 - x2, p, need_grad)
        similar = t == 1
        h, _ = _hinge_part(xp, m - d)
        value = xp.where(similar, 0.5 * (d * d), 0.5 * (h * h))
        if not need_grad:
            return Terms(value, None, expand=_last_axis(xp))
        coef = xp.expand_dims(xp.where(similar, d, -h), axis=-1)
        g1 = xp.where(coef == 0, xp.zeros_like(g), coef * g)  # 0 * inf-direction = 0
        return Terms(value, g1, expand=_last_axis(xp), grads={"x2": 0.0 - g1})  # no -0.0


class TripletMargin(_EmbeddingLoss):
    r"""Triplet margin loss, exactly ``torch.nn.functional.triplet_margin_loss``.

    .. math::

        \ell = \max\bigl(0,\ m + d(a, p) - d(a, n)\bigr), \qquad
        d(x, y) = \lVert x - y + \varepsilon \rVert_p

    The anchor :math:`a` must be closer to the positive :math:`p` than to the negative
    :math:`n` by the margin :math:`m`; triplets that already are cost nothing.

    Parameters
    ----------
    anchor, positive, negative : floating arrays of shape ``(N, D)``, ``(D,)`` or ``(*, D)``
        Embeddings along the last axis, all of one shape and dtype.
    margin : float, default 1
        :math:`m > 0` (PyTorch rejects :math:`m \le 0` too).
    p : float, default 2
        Degree of the distance: a real :math:`p \ge 1` or ``inf``.
    eps : float, default 1e-6
        :math:`\varepsilon \ge 0`, added to **every component of the difference** before
        the norm, as ``torch.nn.functional.pairwise_distance`` does (not to the norm).
    swap : bool, default False
        Balntas et al.'s distance swap: use :math:`\min(d(a, n), d(p, n))` as the negative
        distance, so the harder of the two negatives counts.
    {common_parameters}

    Returns
    -------
    array
        Per triplet, shape (N,) (0-d for one ``(D,)`` triplet), with ``reduction="none"``;
        else 0-d. ``.grad`` has the anchor's shape; ``wrt="positive"``, ``"negative"`` or
        ``"all"`` give the others.

    Raises
    ------
    ValueError
        Shapes that differ, ``margin <= 0``, ``p < 1``, ``eps < 0``.
    TypeError
        Non-floating embeddings, or ones of another dtype than ``anchor``; ``swap`` not a
        bool.

    Notes
    -----
    With :math:`g(v) = \partial \lVert v \rVert_p / \partial v`, :math:`v_{ap} = a - p +
    \varepsilon`, :math:`v_{an} = a - n + \varepsilon`, :math:`v_{pn} = p - n +
    \varepsilon`, and on the active set :math:`m + d(a,p) - d_- > 0`, where
    :math:`d_- = w\,d(a,n) + (1 - w)\,d(p,n)` selects the negative distance (:math:`w = 1`
    without swap):

    .. math::

        \frac{\partial \ell}{\partial a} = g(v_{ap}) - w\,g(v_{an}), \quad
        \frac{\partial \ell}{\partial p} = -g(v_{ap}) - (1 - w)\,g(v_{pn}), \quad
        \frac{\partial \ell}{\partial n} = w\,g(v_{an}) + (1 - w)\,g(v_{pn})

    and 0 elsewhere (also at the kink :math:`m + d(a,p) - d_- = 0`). With ``swap`` and a
    tie :math:`d(a,n) = d(p,n)` (e.g. :math:`a = p`) the minimum's gradient is shared,
    :math:`w = \frac12`, as in PyTorch. A distance of 0 has the subgradient 0.

    References
    ----------
    .. [1] F. Schroff, D. Kalenichenko, J. Philbin, "FaceNet: a unified embedding for face
       recognition and clustering", CVPR 2015, arXiv:1503.03832.
    .. [2] V. Balntas, E. Riba, D. Ponsa, K. Mikolajczyk, "Learning local feature
       descriptors with triplets and shallow convolutional neural networks", BMVC 2016,
       doi:10.5244/C.30.119.

    Examples
    --------
    Anchor at the origin, positive at distance 5; a negative at distance 10 is far enough,
    one at distance 1 costs :math:`1 + 5 - 1` (``eps=0`` for round numbers):

    >>> import numpy as np, losskit as lk
    >>> a = np.zeros((2, 2)); p = np.array([[3.0, 4.0], [3.0, 4.0]])
    >>> n = np.array([[6.0, 8.0], [0.0, 1.0]])
    >>> lk.triplet_margin(a, p, n, eps=0.0, reduction="none")
    array([0., 5.])
    >>> lk.triplet_margin.grad(a, p, n, eps=0.0, reduction="sum")  # row 2: (a-p)/5 - (a-n)/1
    array([[ 0. ,  0. ],
           [-0.6,  0.2]])

    With the swap, the positive's distance to the negative counts when it is smaller:
    :math:`d(a,n) = \sqrt{32}`, :math:`d(p,n) = 1`, so the loss is :math:`1 + 5 - 1`:

    >>> float(lk.triplet_margin(a[:1], p[:1], np.array([[4.0, 4.0]]), eps=0.0, swap=True))
    5.0
    """

    name = "triplet_margin"
    aliases = ("triplet_margin_loss",)
    family = "metric_learning"
    prediction = "embeddings"
    target = "none (positive and negative embeddings)"
    inputs = ("anchor", "positive", "negative")
    differentiable = ("anchor", "positive", "negative")
    formula = (r"\ell = \max(0, m + d(a, p) - d(a, n)),\ "
               r"d(x, y) = \lVert x - y + \varepsilon \rVert_p")
    gradient_formula = (r"\frac{\partial \ell}{\partial a} = g(v_{ap}) - g(v_{an}),\ "
                        r"\frac{\partial \ell}{\partial p} = -g(v_{ap}),\ "
                        r"\frac{\partial \ell}{\partial n} = g(v_{an})\ \text{where active},\ "
                        r"g(v) = \partial \lVert v \rVert_p / \partial v")
    when_to_use = (
        "Learning an embedding for retrieval, face or person re-identification, or "
        "few-shot recognition from relative judgements: an anchor must be closer to a "
        "positive than to a negative by a margin. Only the ordering matters, so no "
        "absolute distance scale is imposed; mining hard triplets (or swap=True) matters "
        "more than the loss itself."
    )
    references = (
        "Schroff, Kalenichenko, Philbin, FaceNet, CVPR 2015, arXiv:1503.03832",
        "Balntas, Riba, Ponsa, Mikolajczyk, Learning local feature descriptors with "
        "triplets and shallow convolutional neural networks, BMVC 2016, "
        "doi:10.5244/C.30.119",
    )

    def _compute(self, ctx, anchor, positive, negative, *, need_grad, margin=1.0, p=2.0,
                 eps=1e-6, swap=False):
        xp = ctx.xp
        m = check_scalar("margin", margin, lo=0.0, lo_open=True)
        if math.isinf(m):
            raise ValueError(f"`margin` must be finite; got {margin!r}")
        p = _check_p(p)
        e = check_scalar("eps", eps, lo=0.0)
        if math.isinf(e):
            raise ValueError(f"`eps` must be finite; got {eps!r}")
        swap = _check_bool("swap", swap)
        _check_embeddings(ctx, anchor, "anchor")
        pos = _other_input(ctx, positive, "positive", "anchor", anchor.shape)
        neg = _other_input(ctx, negative, "negative", "anchor", anchor.shape)
        d_ap, g_ap = _lp_norm(xp, anchor - pos + e, p, need_grad)
        d_an, g_an = _lp_norm(xp, anchor - neg + e, p, need_grad)
        if swap:
            d_pn, g_pn = _lp_norm(xp, pos - neg + e, p, need_grad)
            d_neg = xp.where(d_pn < d_an, d_pn, d_an)
        else:
            d_neg = d_an
        value, active = _hinge_part(xp, m + d_ap - d_neg)
        expand = _last_axis(xp)
        if not need_grad:
            return Terms(value, None, expand=expand)
        act = expand(active)
        zero = xp.zeros_like(anchor)
        if swap:
            # which distance is the minimum: 1 (a,n), 0 (p,n), 1/2 at a tie (as torch's min)
            one, half = xp.ones_like(d_an), xp.full_like(d_an, 0.5)
            w = expand(xp.where(d_an < d_pn, one,
                                xp.where(d_an == d_pn, half, xp.zeros_like(d_an))))
            g_neg_a = w * g_an  # contribution of d_neg through v_an
            g_neg_p = (1.0 - w) * g_pn  # ... and through v_pn
            ga = g_ap - g_neg_a
            gp = 0.0 - g_ap - g_neg_p
            gn = g_neg_a + g_neg_p
        else:
            ga, gp, gn = g_ap - g_an, 0.0 - g_ap, g_an
        ga, gp, gn = (xp.where(act, g, zero) for g in (ga, gp, gn))
        return Terms(value, ga, expand=expand, grads={"positive": gp, "negative": gn})


class MarginRanking(Loss):
    r"""Margin ranking loss, exactly ``torch.nn.functional.margin_ranking_loss``.

    .. math::

        \ell = \max\bigl(0,\ -y\,(x_1 - x_2) + m\bigr), \qquad y \in \{-1, +1\}

    :math:`y = 1` says :math:`x_1` should rank above :math:`x_2` by at least the margin
    :math:`m`, :math:`y = -1` the reverse: a pairwise hinge on score differences.

    Parameters
    ----------
    x1, x2 : floating arrays of shape (*)
        Scores of the two items of each pair (same shape and dtype); elementwise.
    target : array of the same shape
        1 if ``x1`` should rank higher, -1 if ``x2`` should.
    margin : float, default 0
        :math:`m`; with 0 only the order is enforced.
    {common_parameters}

    Returns
    -------
    array
        Elementwise, the shape of ``x1``, with ``reduction="none"``; else 0-d.

    Raises
    ------
    ValueError
        Shapes that differ (PyTorch broadcasts; losskit does not), labels other than -1/+1
        (PyTorch silently treats them as weights).
    TypeError
        Non-floating scores, or ``x2`` of another dtype than ``x1``.

    Notes
    -----
    .. math::

        \frac{\partial \ell}{\partial x_1} = -\frac{\partial \ell}{\partial x_2}
        = \begin{cases} -y & -y (x_1 - x_2) + m > 0 \\ 0 & \text{otherwise} \end{cases}

    At the kink :math:`-y (x_1 - x_2) + m = 0` the subgradient 0 is used. The loss is
    unchanged by swapping :math:`x_1` and :math:`x_2` and negating :math:`y`.

    References
    ----------
    .. [1] T. Joachims, "Optimizing search engines using clickthrough data", KDD 2002,
       doi:10.1145/775047.775067.
    .. [2] R. Herbrich, T. Graepel, K. Obermayer, "Large margin rank boundaries for
       ordinal regression", in *Advances in Large Margin Classifiers*, MIT Press 2000.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> x1 = np.array([1.0, 2.0]); x2 = np.array([2.0, 1.0]); y = np.array([1, 1])
    >>> lk.margin_ranking(x1, x2, y, margin=0.5, reduction="none")   # (1 + 0.5, -1 + 0.5 -> 0)
    array([1.5, 0. ])
    >>> lk.margin_ranking.grad(x1, x2, y, margin=0.5, wrt="all", reduction="sum")
    (array([-1.,  0.]), array([1., 0.]))
    """

    name = "margin_ranking"
    aliases = ("margin_ranking_loss",)
    family = "metric_learning"
    prediction = "scores"
    target = "labels -1/+1, same shape"
    inputs = ("x1", "x2", "target")
    differentiable = ("x1", "x2")
    formula = r"\ell = \max(0, -y (x_1 - x_2) + m)"
    gradient_formula = (r"\frac{\partial \ell}{\partial x_1} = -\frac{\partial \ell}"
                        r"{\partial x_2} = -y\,[-y (x_1 - x_2) + m > 0]")
    when_to_use = (
        "Learning to rank from pairwise preferences (RankSVM-style search ranking, "
        "recommendation, ordinal comparisons): only the order of two scores matters, and a "
        "pair stops contributing once the preferred score leads by the margin. Gives no "
        "calibrated probabilities (a logistic pairwise loss does)."
    )
    references = (
        "Joachims, Optimizing search engines using clickthrough data, KDD 2002, "
        "doi:10.1145/775047.775067",
        "Herbrich, Graepel, Obermayer, Large margin rank boundaries for ordinal "
        "regression, 2000",
    )

    def _compute(self, ctx, x1, x2, target, *, need_grad, margin=0.0):
        xp = ctx.xp
        m = check_scalar("margin", margin)
        if math.isinf(m):
            raise ValueError(f"`margin` must be finite; got {margin!r}")
        x2 = _other_input(ctx, x2, "x2", "x1", x1.shape)
        y = _labels(ctx, target, x1.shape, allowed=(1.0, -1.0), first="x1",
                    meaning="1 (x1 ranks higher) or -1 (x2 ranks higher)", per_pair=False,
                    hint="Map 0/1 labels with 2 * t - 1")
        value, active = _hinge_part(xp, m - y * (x1 - x2))
        if not need_grad:
            return Terms(value, None)
        g1 = xp.where(active, -y, xp.zeros_like(x1))
        g1 = xp.where(xp.isnan(value), value, g1)
        return Terms(value, g1, grads={"x2": 0.0 - g1})  # 0 - g: no -0.0


class CosineEmbedding(_EmbeddingLoss):
    r"""Cosine embedding loss, exactly ``torch.nn.functional.cosine_embedding_loss``.

    .. math::

        \ell = \begin{cases} 1 - \cos(x_1, x_2) & y = 1 \\
        \max(0, \cos(x_1, x_2) - m) & y = -1 \end{cases}, \qquad
        \cos(x_1, x_2) = \frac{x_1 \cdot x_2}
        {\sqrt{(\lVert x_1 \rVert^2 + \varepsilon)(\lVert x_2 \rVert^2 + \varepsilon)}}

    Similar pairs are pulled to the same direction; dissimilar ones are pushed until their
    cosine falls to the margin :math:`m`.

    Parameters
    ----------
    x1, x2 : floating arrays of shape ``(N, D)``, ``(D,)`` or ``(*, D)``
        Embeddings along the last axis (same shape and dtype).
    target : array of shape (N,) (the embeddings' shape without the last axis)
        1 for a similar pair, -1 for a dissimilar one.
    margin : float, default 0
        :math:`m`; PyTorch suggests values in :math:`[-1, 1]`, 0 to 0.5 in practice.
    eps : float, default 1e-12
        :math:`\varepsilon \ge 0`, added to each **squared** norm as PyTorch's ATen kernel
        does (its ``EPSILON = 1e-12``; ``torch.nn.functional.cosine_similarity`` uses a
        different rule). It keeps a zero vector finite: its cosine is 0. PyTorch stores
        that constant as a C ``float``, exactly ``float32(1e-12) = 9.99999996e-13``; pass
        ``eps=float(numpy.float32(1e-12))`` to reproduce its zero-vector gradients to the
        last digit (they differ from the default's by 2e-9 relative).
    {common_parameters}

    Returns
    -------
    array
        Per pair, shape (N,) (0-d for one ``(D,)`` pair), with ``reduction="none"``; else
        0-d.

    Raises
    ------
    ValueError
        Shapes that differ, labels other than -1/+1 (PyTorch silently gives 0 for them),
        ``eps < 0``.
    TypeError
        Non-floating embeddings, or ``x2`` of another dtype than ``x1``.

    Notes
    -----
    With :math:`A = \lVert x_1 \rVert^2 + \varepsilon`, :math:`B = \lVert x_2 \rVert^2 +
    \varepsilon`, :math:`r = \sqrt{A B}` and :math:`c = x_1 \cdot x_2 / r`:

    .. math::

        \frac{\partial c}{\partial x_1} = \frac{x_2}{r} - c\,\frac{x_1}{A}, \qquad
        \frac{\partial c}{\partial x_2} = \frac{x_1}{r} - c\,\frac{x_2}{B}, \qquad
        \frac{\partial \ell}{\partial x_i} = \begin{cases} -\partial c / \partial x_i & y = 1
        \\ \partial c / \partial x_i & y = -1,\ c > m \\ 0 & \text{otherwise}
        \end{cases}

    A zero vector :math:`x_1 = 0` has :math:`c = 0` but the gradient
    :math:`x_2 / \sqrt{\varepsilon B}`, about :math:`10^6` times the unit direction of
    :math:`x_2` for the default :math:`\varepsilon`: the exact gradient of PyTorch's
    formula (its autograd gives the same). With ``eps=0`` a zero vector has cosine 0 and
    the subgradient 0 is used. At the kink :math:`c = m` of a dissimilar pair the
    subgradient 0 is used.

    References
    ----------
    .. [1] PyTorch documentation, ``torch.nn.CosineEmbeddingLoss``.
    .. [2] J. Bromley, I. Guyon, Y. LeCun, E. Säckinger, R. Shah, "Signature verification
       using a 'Siamese' time delay neural network", NIPS 1993 (cosine of two embeddings
       as the similarity of a siamese pair).

    Examples
    --------
    A similar pair at 45 degrees costs :math:`1 - 1/\sqrt2`; an orthogonal dissimilar pair
    has cosine 0, at the margin 0, and costs nothing:

    >>> import numpy as np, losskit as lk
    >>> x1 = np.array([[1.0, 0.0], [1.0, 0.0]]); x2 = np.array([[1.0, 1.0], [0.0, 1.0]])
    >>> lk.cosine_embedding(x1, x2, np.array([1, -1]), reduction="none").round(4)
    array([0.2929, 0.    ])
    """

    name = "cosine_embedding"
    aliases = ("cosine_embedding_loss",)
    family = "metric_learning"
    prediction = "embeddings"
    target = "1 similar / -1 dissimilar, one per pair"
    inputs = ("x1", "x2", "target")
    differentiable = ("x1", "x2")
    formula = (r"\ell = \begin{cases} 1 - \cos(x_1, x_2) & y = 1 \\ "
               r"\max(0, \cos(x_1, x_2) - m) & y = -1 \end{cases}")
    gradient_formula = (r"\frac{\partial \cos}{\partial x_1} = \frac{x_2}{r} - "
                        r"\cos\,\frac{x_1}{\lVert x_1 \rVert^2 + \varepsilon},\ "
                        r"r = \sqrt{(\lVert x_1 \rVert^2 + \varepsilon)"
                        r"(\lVert x_2 \rVert^2 + \varepsilon)}")
    when_to_use = (
        "Learning embeddings compared by angle rather than distance (text and sentence "
        "embeddings, retrieval with normalised features): similar pairs are aligned and "
        "dissimilar ones pushed below a cosine margin. The loss ignores vector lengths, so "
        "it suits models whose embeddings are later normalised."
    )
    references = ("PyTorch documentation, torch.nn.CosineEmbeddingLoss",
                  "Bromley et al., Signature verification using a Siamese time delay "
                  "neural network, NIPS 1993")

    def _compute(self, ctx, x1, x2, target, *, need_grad, margin=0.0, eps=1e-12):
        xp = ctx.xp
        m = check_scalar("margin", margin)
        if math.isinf(m):
            raise ValueError(f"`margin` must be finite; got {margin!r}")
        e = check_scalar("eps", eps, lo=0.0)
        if math.isinf(e):
            raise ValueError(f"`eps` must be finite; got {eps!r}")
        _check_embeddings(ctx, x1, "x1")
        x2 = _other_input(ctx, x2, "x2", "x1", x1.shape)
        y = _labels(ctx, target, x1.shape[:-1], allowed=(1.0, -1.0), first="x1",
                    meaning="1 (similar pair) or -1 (dissimilar pair)", per_pair=True,
                    hint="Map 0/1 labels with 2 * t - 1")
        s = xp.sum(x1 * x2, axis=-1)
        a_sq = xp.sum(x1 * x1, axis=-1) + e
        b_sq = xp.sum(x2 * x2, axis=-1) + e
        r = xp.sqrt(a_sq) * xp.sqrt(b_sq)
        ok = r > 0
        nan = xp.isnan(r) | xp.isnan(s)
        r_safe = xp.where(ok, r, xp.ones_like(r))
        cos = xp.where(ok | nan, s / r_safe, xp.zeros_like(r))  # eps = 0, a zero vector
        similar = y == 1
        hinge, active = _hinge_part(xp, cos - m)
        value = xp.where(similar, 1.0 - cos, hinge)
        if not need_grad:
            return Terms(value, None, expand=_last_axis(xp))
        coef = xp.where(similar, -xp.ones_like(cos),
                        xp.where(active, xp.ones_like(cos), xp.zeros_like(cos)))
        coef = xp.where(ok | nan, coef, xp.zeros_like(coef))
        ex = _last_axis(xp)
        a_safe = xp.where(a_sq > 0, a_sq, xp.ones_like(a_sq))
        b_safe = xp.where(b_sq > 0, b_sq, xp.ones_like(b_sq))
        dc1 = x2 / ex(r_safe) - ex(cos) * x1 / ex(a_safe)
        dc2 = x1 / ex(r_safe) - ex(cos) * x2 / ex(b_safe)
        zero = xp.zeros_like(x1)
        c = ex(coef)
        g1 = xp.where(c == 0, zero, c * dc1)
        g2 = xp.where(c == 0, zero, c * dc2)
        return Terms(value, g1, expand=ex, grads={"x2": g2})


contrastive = contrastive_loss = register(Contrastive())
triplet_margin = triplet_margin_loss = register(TripletMargin())
margin_ranking = margin_ranking_loss = register(MarginRanking())
cosine_embedding = cosine_embedding_loss = register(CosineEmbedding())

# fused NumPy kernels (losskit.kernels.pairs), consulted by the pipeline
register_fast_path(Contrastive, _pairs.contrastive)
register_fast_path(TripletMargin, _pairs.triplet_margin)
register_fast_path(MarginRanking, _pairs.margin_ranking)
register_fast_path(CosineEmbedding, _pairs.cosine_embedding)
