r"""Fenchel–Young losses: sparsemax, its binary twin, and the loss of any regulariser.

A regulariser :math:`\Omega` on the probability simplex defines a prediction map, the
regularised argmax :math:`\hat y_\Omega(\theta) = \nabla\Omega^*(\theta)`, and a loss,

.. math::

    L_\Omega(\theta; t) = \Omega^*(\theta) + \Omega(t) - \langle \theta, t \rangle \ge 0,
    \qquad \nabla_\theta L_\Omega = \hat y_\Omega(\theta) - t,

zero exactly when :math:`\hat y_\Omega(\theta) = t` (Blondel, Martins & Niculae 2020).
The Shannon negentropy gives softmax and the softmax cross-entropy (less the target's
entropy); half the squared norm gives sparsemax (:func:`losskit.sparsemax`, the
Euclidean projection onto the simplex) and the sparsemax loss, whose probabilities are
exactly 0 on the classes scored below a threshold, and whose gradient stops once the
true class wins by a margin.

* ``multiclass_sparsemax_loss``: K classes, integer labels or distributions;
* ``sparsemax_loss``: binary, elementwise, the sparsemax loss of the scores
  :math:`(z, 0)`: sparse sigmoid :math:`\operatorname{clip}((z + 1)/2, 0, 1)` and
  sparse plus;
* :func:`make_fenchel_young_loss`: the loss of a regulariser given by its conjugate
  :math:`\Omega^*` and its prediction map (or ``"shannon"`` / ``"sparsemax"``); a
  factory, so its losses are not in the catalog.

For sparsemax with threshold :math:`\tau` (:math:`p = \max(\theta - \tau, 0)`), the
conjugate is :math:`\Omega^*(\theta) = \tau + \tfrac12\lVert p\rVert^2` and the loss
takes the form

.. math::

    L(\theta; t) = \tfrac12 \lVert p - t \rVert^2 + \sum_j t_j \max(\tau - \theta_j, 0),

a sum of non-negative terms computed without cancellation (the textbook
:math:`\langle\theta, p - t\rangle - \tfrac12\lVert p\rVert^2 + \tfrac12\lVert t\rVert^2`
cancels where the loss is small).
"""

from __future__ import annotations

from typing import Any, Callable

from ..core.dispatch import register_fast_path
from ..core.formula import Formula, isnan, maximum, minimum, where
from ..core.loss import Loss, Terms, fill_doc, register
from ..core.primitives import _softmax_and_neg_log, _sparsemax_parts, _weighted, _xlogy
from ..core.validation import check_choice, check_sums_to_one, same_shape
from ..kernels import pointwise, rows
from .cross_entropy import class_target

__all__ = ["sparsemax_loss", "multiclass_sparsemax_loss", "make_fenchel_young_loss"]


# --------------------------------------------------------------------------- binary
# the pointwise math of sparsemax_loss, stated once (losskit.core.formula): the generic
# kernel evaluates it on any array library, losskit.kernels.pointwise compiles it
def _sparsemax_binary(z, t):
    p = minimum(maximum(0.5 * (z + 1.0), 0.0), 1.0)  # sparse sigmoid; NaN propagates
    inside = (z > -1.0) & (z < 1.0)
    # p - t, inside as (z + 1 - 2t) / 2: for t = 1 that is (z - 1) / 2 with no rounding of
    # z + 1 first (full relative precision near z = 1, where the loss is tiny)
    d = where(inside, 0.5 * (z + (1.0 - 2.0 * t)), p - t)
    over = where(t < 1.0, (1.0 - t) * maximum(z - 1.0, 0.0), 0.0)  # 0 * inf = 0 at t = 1
    under = where(t > 0.0, t * maximum(-1.0 - z, 0.0), 0.0)
    return d * d + over + under, d


def _sparsemax_binary_hessian(z, t):
    # d (p - t) / dz: 1/2 inside (-1, 1), where p = (z + 1) / 2, 0 outside (p clipped to 0
    # or 1; at z = +-1 the second derivative jumps and does not exist); NaN propagates,
    # and infinite scores (outside) give 0
    d = z - t
    return where(isnan(d), d, where((z > -1.0) & (z < 1.0), 0.5, 0.0 * t))


def _probability_ok(z, t):
    return ((t >= 0.0) & (t <= 1.0)) | isnan(t)


SPARSEMAX_BINARY = Formula(_sparsemax_binary, hessian=_sparsemax_binary_hessian)
PROBABILITY_OK = Formula(_probability_ok)


class SparsemaxLoss(Loss):
    r"""Binary sparsemax loss, elementwise: the Fenchel–Young loss of the sparse sigmoid.

    :math:`\ell = \operatorname{sparseplus}(z)` for a target 0 and
    :math:`\operatorname{sparseplus}(-z)` for a target 1, where
    :math:`\operatorname{sparseplus}(x) = 0, (x+1)^2/4, x` for :math:`x \le -1`,
    :math:`|x| < 1`, :math:`x \ge 1`: the sigmoid cross-entropy with the softplus replaced
    by its piecewise-quadratic twin. It is exactly 0 once the score is on the right side
    by a margin of 1 (:math:`z \ge 1` for a positive), and its prediction, the sparse
    sigmoid :math:`\operatorname{clip}((z + 1)/2, 0, 1)`, reaches 0 and 1.

    Parameters
    ----------
    prediction : floating array of shape (*)
        Real-valued scores :math:`z` (logits).
    target : array of the same shape
        Targets in [0, 1]: labels 0/1 (Optax's ``sparsemax_loss``) or probabilities.
    {common_parameters}

    Notes
    -----
    With :math:`p = \operatorname{clip}((z+1)/2, 0, 1)`, the loss is the sparsemax
    (Fenchel–Young) loss of the two scores :math:`(z, 0)` against the distribution
    :math:`(t, 1 - t)`:

    .. math::

        \ell = \operatorname{sparseplus}(z) - z t - t (1 - t)
             = (p - t)^2 + (1 - t)\max(z - 1, 0) + t \max(-1 - z, 0), \qquad
        \frac{\partial \ell}{\partial z} = p - t, \qquad
        \frac{\partial^2 \ell}{\partial z^2} = \tfrac12 [\,|z| < 1\,].

    For :math:`t \in \{0, 1\}` this is Optax's :math:`\operatorname{sparseplus}(\mp z)`;
    for soft targets the term :math:`-t(1 - t)` (the regulariser
    :math:`\Omega(t, 1-t)` up to a constant) keeps the minimum at 0, reached at
    :math:`p = t`. The last form is the one computed: a sum of non-negative terms, exact
    near the minimum. The derivative is continuous (the loss is :math:`C^1`), so no
    subgradient choice is needed. The second derivative (a diagonal Hessian) is the
    sparse sigmoid's slope, 1/2 inside :math:`(-1, 1)` and 0 outside; at :math:`z = \pm 1`
    it jumps and does not exist (``hessian`` gives 0 there, the one-sided value from
    outside). Infinite scores give the limits (``inf`` on the wrong side, 0 on the right
    one); NaN propagates.

    References
    ----------
    .. [1] M. Blondel, A. F. T. Martins, V. Niculae, "Learning with Fenchel-Young
       losses", JMLR 21(35), 2020, sec. 4.4 and 6.2, arXiv:1901.02324.
    .. [2] A. F. T. Martins, R. F. Astudillo, "From softmax to sparsemax", ICML 2016,
       arXiv:1602.02068.

    Examples
    --------
    A positive at scores -1, 0, 1, 3: :math:`(1 - z)^2/4` inside :math:`(-1, 1)`, 0 from 1 on,
    :math:`-z` below -1; the gradient is :math:`p - 1 = (z - 1)/2` inside.

    >>> import numpy as np, losskit as lk
    >>> z = np.array([-3.0, 0.0, 1.0, 3.0]); t = np.ones(4)
    >>> lk.sparsemax_loss(z, t, reduction="none")
    array([3.  , 0.25, 0.  , 0.  ])
    >>> lk.sparsemax_loss.grad(z, t, reduction="sum")
    array([-1. , -0.5,  0. ,  0. ])
    """

    name = "sparsemax_loss"
    family = "classification"
    prediction = "scores (logits)"
    target = "labels 0/1 or probabilities, same shape"
    formula = (r"\ell = (p - t)^2 + (1 - t)\max(z - 1, 0) + t\max(-1 - z, 0),\ "
               r"p = \operatorname{clip}(\tfrac{z + 1}{2}, 0, 1)")
    gradient_formula = (r"\frac{\partial \ell}{\partial z} = "
                        r"\operatorname{clip}(\tfrac{z + 1}{2}, 0, 1) - t")
    hessian_formula = r"\frac{\partial^2 \ell}{\partial z^2} = \tfrac12\,[\,|z| < 1\,]"
    second_order = "diagonal"
    when_to_use = (
        "Binary or multi-label classification when predicted probabilities should be able "
        "to reach exactly 0 and 1 (the sparse sigmoid clip((z + 1) / 2, 0, 1)): examples "
        "beyond a margin of 1 cost nothing and give no gradient, as with the hinge, but the "
        "loss is smooth and its prediction is a probability. The sigmoid cross-entropy's "
        "piecewise-quadratic twin."
    )
    references = (
        "Blondel, Martins, Niculae, Learning with Fenchel-Young losses, JMLR 2020, "
        "arXiv:1901.02324",
        "Martins and Astudillo, From softmax to sparsemax, ICML 2016, arXiv:1602.02068",
    )

    def _compute(self, ctx, prediction, target, *, need_grad):
        xp = ctx.xp
        t = self._probability_target(ctx, prediction, target)
        value, grad = SPARSEMAX_BINARY.on(xp)(prediction, t)
        return Terms(value, grad if need_grad else None,
                     hess=ctx.pointwise_hessian(SPARSEMAX_BINARY, prediction, t))


# --------------------------------------------------------------------------- K classes
_SIMPLEX_HINT = ("a Fenchel-Young loss compares the prediction with a point of the "
                 "simplex; normalise the target rows")


def _simplex_target(ctx, ct):
    """The probability target of ``ct`` after checking that its rows sum to 1."""
    check_sums_to_one(ctx.xp, "target", ct.coef, ct.axis, dtype=ctx.dtype,
                      hint=_SIMPLEX_HINT)
    return ct.coef


_TARGET_DOC = """\
target : integer array of shape (N, ...) or floating array like ``prediction``
    Class labels (the shape of ``prediction`` without the class axis), or per-class target
    distributions of the prediction's shape: entries in [0, 1], every row summing to 1
    (a Fenchel–Young loss is defined for targets on the simplex).
axis : int, default -1
    The class axis of ``prediction``.
ignore_index : int, optional
    Integer targets equal to it contribute nothing, not even to the mean's denominator."""


def _sparsemax_terms(xp, prediction, ct, t, need_grad):
    """Value and gradient of the sparsemax loss from the threshold (see the module notes):
    :math:`\\tfrac12\\lVert p - t\\rVert^2 + \\sum_j t_j (\\tau - \\theta_j)_+`, gradient
    :math:`p - t`. For a label :math:`y`, :math:`p_y - 1 = -\\sum_{j \\ne y} p_j`: formed
    from the small entries, so the loss keeps its relative precision near 0."""
    ax = ct.axis
    p, u, tau = _sparsemax_parts(xp, prediction, ax)
    zero = xp.zeros_like(p)
    if t is None:  # integer labels
        hit = ct.hit()
        rest = xp.sum(xp.where(hit, zero, p), axis=ax, keepdims=True)
        d = xp.where(hit, -rest, p)
        gap = xp.maximum(tau - ct.pick(xp, u), xp.zeros_like(tau))  # (tau - theta_y)_+
        row = 0.5 * xp.sum(d * d, axis=ax) + xp.squeeze(gap, axis=ax)
        wy = ct.label_weight  # 1, or 0 where the label is ignored
        value = _weighted(xp, wy, row)
        grad = _weighted(xp, ct.expand(wy), d) if need_grad else None
        return Terms(value, grad, ct.weight, ct.expand)
    d = p - t
    gap = xp.maximum(tau - u, zero)
    value = 0.5 * xp.sum(d * d, axis=ax) + xp.sum(_weighted(xp, t, gap), axis=ax)
    return Terms(value, d if need_grad else None, None, ct.expand)


def _sparsemax_hessian(xp, prediction, ax, weight, vector):
    r"""The Jacobian of sparsemax along ``ax``, :math:`\operatorname{diag}(s) - s s^\top /
    |S|` (:math:`s` the support's indicator), times ``weight`` (broadcasting; None: 1):
    ``(diagonal, product with vector)``, the product None without a vector. Rows without
    a projection (NaN) stay NaN."""
    p = _sparsemax_parts(xp, prediction, ax)[0]
    s = xp.astype(p > 0, p.dtype)
    size = xp.sum(s, axis=ax, keepdims=True)
    inv = xp.where(size > 0, 1.0 / xp.where(size > 0, size, xp.ones_like(size)),
                   xp.zeros_like(size))
    nan = xp.isnan(p)
    diag = xp.where(nan, p, s * (1.0 - inv))
    hvp = None
    if vector is not None:
        sv = s * vector
        hvp = xp.where(nan, p, sv - s * (inv * xp.sum(sv, axis=ax, keepdims=True)))
    if weight is not None:
        diag = _weighted(xp, weight, diag)
        hvp = None if hvp is None else _weighted(xp, weight, hvp)
    return diag, hvp


class MulticlassSparsemaxLoss(Loss):
    r"""Multi-class sparsemax loss: the Fenchel–Young loss of sparsemax.

    Softmax cross-entropy's sparse counterpart: its prediction is
    :math:`p = \operatorname{sparsemax}(\theta)` (:func:`losskit.sparsemax`), exactly 0 on
    the classes scored below a threshold :math:`\tau`, and the loss (and its gradient) is
    exactly 0 once the true class's score leads every other by at least 1.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Scores :math:`\theta`; the class axis is ``axis``.
    {target_doc}
    {common_parameters}

    Notes
    -----
    With :math:`p = \max(\theta - \tau, 0)` the projection of :math:`\theta` onto the
    simplex (:math:`\tau` makes it sum to 1) and :math:`t` the one-hot label or the target
    distribution:

    .. math::

        \ell = \tfrac12\lVert p - t\rVert^2 + \sum_j t_j \max(\tau - \theta_j, 0)
             = \Omega^*(\theta) + \Omega(t) - \langle\theta, t\rangle, \qquad
        \frac{\partial \ell}{\partial \theta} = \operatorname{sparsemax}(\theta) - t,

    with :math:`\Omega(p) = \tfrac12\lVert p\rVert^2` on the simplex and
    :math:`\Omega^*(\theta) = \tau + \tfrac12\lVert p\rVert^2`. For a label :math:`y`
    this is Martins & Astudillo's
    :math:`-\theta_y + \tfrac12\sum_{j \in S}(\theta_j^2 - \tau^2) + \tfrac12` (eq. 18) and
    Optax's ``multiclass_sparsemax_loss``. The loss is convex, :math:`C^1` (its gradient
    is continuous, piecewise linear), non-negative, and 0 if and only if
    :math:`\operatorname{sparsemax}(\theta) = t`. Each row is computed on the scores
    shifted by their maximum, so huge scores keep their precision.

    The Hessian is the Jacobian of sparsemax (dense: ``hvp`` gives the exact product),
    with :math:`s` the indicator of the support :math:`S = \{j : p_j > 0\}`:

    .. math::

        \frac{\partial^2 \ell}{\partial \theta \partial \theta^\top} =
            \operatorname{diag}(s) - \frac{s s^\top}{|S|}, \qquad
        H v = s \odot \Bigl(v - \frac{\sum_{j \in S} v_j}{|S|}\Bigr),

    piecewise constant in :math:`\theta`; it jumps (and does not exist) where a score
    meets the threshold, :math:`\theta_j = \tau`. Its diagonal is
    :math:`s_j (1 - 1/|S|)`: 0 where the support is a single class (a confident row).

    Edges: a ``-inf`` score is a masked class (probability 0); at the true class it costs
    ``inf`` (gradient still :math:`p - t`); a row with a ``+inf`` or NaN score, or with
    no finite score, has no projection and gives NaN (as ``softmax_cross_entropy``).

    References
    ----------
    .. [1] A. F. T. Martins, R. F. Astudillo, "From softmax to sparsemax: a sparse model
       of attention and multi-label classification", ICML 2016, arXiv:1602.02068.
    .. [2] M. Blondel, A. F. T. Martins, V. Niculae, "Learning with Fenchel-Young
       losses", JMLR 21(35), 2020, arXiv:1901.02324.

    Examples
    --------
    Scores (1, 0.5, -1), label 0: :math:`\tau = 0.25`, :math:`p = (0.75, 0.25, 0)`, the loss
    :math:`\tfrac12(0.25^2 + 0.25^2) = 0.0625` and the gradient :math:`p - e_0`.

    >>> import numpy as np, losskit as lk
    >>> z = np.array([[1.0, 0.5, -1.0]]); y = np.array([0])
    >>> float(lk.multiclass_sparsemax_loss(z, y))
    0.0625
    >>> lk.multiclass_sparsemax_loss.grad(z, y)
    array([[-0.25,  0.25,  0.  ]])
    >>> float(lk.multiclass_sparsemax_loss(np.array([[2.0, 0.5, -1.0]]), y))  # leads by 1.5
    0.0
    """

    name = "multiclass_sparsemax_loss"
    family = "classification"
    prediction = "scores (logits)"
    target = "integer labels or class distributions"
    formula = (r"\ell = \tfrac12\lVert p - t\rVert^2 + \sum_j t_j (\tau - \theta_j)_+,\ "
               r"p = \operatorname{sparsemax}(\theta) = (\theta - \tau)_+")
    gradient_formula = r"\frac{\partial \ell}{\partial \theta} = \operatorname{sparsemax}(\theta) - t"
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial \theta \partial \theta^\top} = "
                       r"\operatorname{diag}(s) - \frac{s s^\top}{|S|},\ s_j = [p_j > 0]")
    second_order = "dense"
    when_to_use = (
        "Multi-class classification (or attention) when the predicted distribution should "
        "be sparse: sparsemax puts exactly zero probability on classes scored below a "
        "threshold, and an example whose true class leads by a margin of 1 costs nothing. "
        "Convex and smooth like softmax cross-entropy, with a hinge-like margin; also "
        "takes target distributions (multi-label rows normalised to sum to 1)."
    )
    references = (
        "Martins and Astudillo, From softmax to sparsemax, ICML 2016, arXiv:1602.02068",
        "Blondel, Martins, Niculae, Learning with Fenchel-Young losses, JMLR 2020, "
        "arXiv:1901.02324",
    )

    def _compute(self, ctx, prediction, target, *, need_grad, axis=-1, ignore_index=None):
        xp = ctx.xp
        ct = class_target(ctx, prediction, target, axis=axis, class_weight=None,
                          ignore_index=ignore_index)
        t = None if ct.labels is not None else _simplex_target(ctx, ct)
        terms = _sparsemax_terms(xp, prediction, ct, t, need_grad)
        if ctx.wants_hessian:
            weight = None if t is not None else ct.expand(ct.label_weight)
            terms.hess, terms.hvp = _sparsemax_hessian(xp, prediction, ct.axis, weight,
                                                       ctx.vector)
        return terms


# --------------------------------------------------------------------------- any regulariser
def _to_last(xp, x, ax):
    """``x`` with axis ``ax`` moved last, and the permutation that moves it back."""
    n = x.ndim
    if ax == n - 1:
        return x, None
    perm = [i for i in range(n) if i != ax] + [ax]
    back = [0] * n
    for i, j in enumerate(perm):
        back[j] = i
    return xp.permute_dims(x, tuple(perm)), tuple(back)


def _user_array(ctx, out, what: str, shape):
    """A callable's result as an array of the prediction's library and dtype, of ``shape``."""
    xp = ctx.xp
    a = ctx.asarray(out, what)
    if not same_shape(a.shape, shape):
        if what == "prediction_map":
            expected = f"an array of shape {tuple(shape)}, the scores' (class axis last)"
        else:
            expected = (f"one value per row, shape {tuple(shape)} (the scores' shape "
                        "without the class axis, which comes last)")
        raise ValueError(f"`{what}` of {ctx.loss} must return {expected}; got "
                         f"{tuple(a.shape)}")
    if not xp.isdtype(a.dtype, "real floating"):
        raise TypeError(f"`{what}` of {ctx.loss} must return floating values; got dtype "
                        f"{a.dtype}")
    return a if a.dtype == ctx.work else xp.astype(a, ctx.work)


class FenchelYoungLoss(Loss):
    r"""The Fenchel–Young loss of a regulariser :math:`\Omega` (made by
    :func:`make_fenchel_young_loss`).

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Scores :math:`\theta`; the class axis is ``axis``.
    {target_doc}
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \Omega^*(\theta) + \Omega(t) - \langle \theta, t\rangle, \qquad
        \frac{\partial \ell}{\partial \theta} = \hat y_\Omega(\theta) - t,
        \quad \hat y_\Omega = \nabla\Omega^*

    (:math:`\Omega(t)` only when the loss was given a ``regularizer``). The gradient is
    the prediction map's output minus the target: closed form, no differentiation of
    :math:`\Omega^*`.
    """

    family = "classification"
    prediction = "scores"
    target = "integer labels or class distributions"
    formula = r"\ell = \Omega^*(\theta) + \Omega(t) - \langle \theta, t \rangle"
    gradient_formula = r"\frac{\partial \ell}{\partial \theta} = \nabla\Omega^*(\theta) - t"
    when_to_use = (
        "Training a model whose output layer is a regularised argmax of your own (a "
        "structured or sparse prediction map): the Fenchel-Young loss of that map is "
        "convex in the scores, non-negative with a regulariser, and its gradient is the "
        "prediction minus the target."
    )
    references = (
        "Blondel, Martins, Niculae, Learning with Fenchel-Young losses, JMLR 2020, "
        "arXiv:1901.02324",
    )
    #: set by make_fenchel_young_loss: Omega* (rows -> values), its gradient, Omega
    _conjugate: Callable[[Any], Any] | None = None
    _prediction_map: Callable[[Any], Any] | None = None
    _regularizer: Callable[[Any], Any] | None = None

    def _compute(self, ctx, prediction, target, *, need_grad, axis=-1, ignore_index=None):
        ct = class_target(ctx, prediction, target, axis=axis, class_weight=None,
                          ignore_index=ignore_index)
        t = None if ct.labels is not None else _simplex_target(ctx, ct)
        return self._terms(ctx, prediction, ct, t, need_grad)

    def _terms(self, ctx, prediction, ct, t, need_grad):
        xp = ctx.xp
        ax = ct.axis
        zl, back = _to_last(xp, prediction, ax)
        rows_shape = tuple(zl.shape[:-1])
        conj = _user_array(ctx, type(self)._conjugate(zl), "conjugate", rows_shape)
        pred = None
        if need_grad:
            pred = _user_array(ctx, type(self)._prediction_map(zl), "prediction_map",
                               tuple(zl.shape))
            if back is not None:
                pred = xp.permute_dims(pred, back)
        if t is None:  # integer labels: <theta, e_y> = theta_y
            wy = ct.label_weight
            row = conj - xp.squeeze(ct.pick(xp, prediction), axis=ax)
            if type(self)._regularizer is not None:
                row = row + self._omega(ctx, ct.onehot, ax, rows_shape)
            value = _weighted(xp, wy, row)
            grad = None
            if need_grad:
                g = xp.where(ct.hit(), pred - 1.0, pred)
                grad = _weighted(xp, ct.expand(wy), g)
            return Terms(value, grad, ct.weight, ct.expand)
        row = conj - xp.sum(_weighted(xp, t, prediction), axis=ax)
        if type(self)._regularizer is not None:
            row = row + self._omega(ctx, t, ax, rows_shape)
        return Terms(row, pred - t if need_grad else None, None, ct.expand)

    def _omega(self, ctx, t, ax, rows_shape):
        tl, _ = _to_last(ctx.xp, t, ax)
        return _user_array(ctx, type(self)._regularizer(tl), "regularizer", rows_shape)


class ShannonFenchelYoungLoss(FenchelYoungLoss):
    r"""The Fenchel–Young loss of the Shannon negentropy (``make_fenchel_young_loss("shannon")``).

    :math:`\Omega(p) = \sum_j p_j \log p_j`, :math:`\Omega^* = \operatorname{logsumexp}`,
    prediction map softmax: the loss is the softmax cross-entropy minus the target's
    entropy, :math:`\operatorname{KL}(t \,\Vert\, \operatorname{softmax}(\theta))`; with
    integer labels it equals ``softmax_cross_entropy``.

    Parameters
    ----------
    prediction : floating array of shape (N, ..., K, ...)
        Logits :math:`\theta`; the class axis is ``axis``.
    {target_doc}
    {common_parameters}

    Notes
    -----
    .. math::

        \ell = \operatorname{logsumexp}(\theta) - \langle\theta, t\rangle + \sum_j t_j \log t_j
             = \sum_j t_j \bigl(\log t_j - \log\operatorname{softmax}(\theta)_j\bigr),
        \qquad \frac{\partial\ell}{\partial\theta} = \operatorname{softmax}(\theta) - t

    with :math:`0 \log 0 = 0`. Optax's ``make_fenchel_young_loss(logsumexp)`` leaves out
    :math:`\Omega(t) = \sum_j t_j \log t_j` (a constant in :math:`\theta`): its value is
    this loss minus that sum, with the same gradient.

    References
    ----------
    .. [1] M. Blondel, A. F. T. Martins, V. Niculae, "Learning with Fenchel-Young
       losses", JMLR 21(35), 2020, arXiv:1901.02324.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> fy = lk.make_fenchel_young_loss("shannon")
    >>> float(fy(np.log(np.array([[0.5, 0.25, 0.25]])), np.array([[0.5, 0.25, 0.25]])))
    0.0
    """

    name = "fenchel_young_loss[shannon]"
    prediction = "logits"
    formula = (r"\ell = \operatorname{logsumexp}(\theta) - \langle\theta, t\rangle "
               r"+ \sum_j t_j \log t_j")
    gradient_formula = r"\frac{\partial \ell}{\partial \theta} = \operatorname{softmax}(\theta) - t"

    def _terms(self, ctx, prediction, ct, t, need_grad):
        xp = ctx.xp
        ax = ct.axis
        p, neg_log = _softmax_and_neg_log(xp, prediction, axis=ax)
        if t is None:
            wy = ct.label_weight
            value = _weighted(xp, wy, xp.squeeze(ct.pick(xp, neg_log), axis=ax))
            grad = None
            if need_grad:
                grad = _weighted(xp, ct.expand(wy), xp.where(ct.hit(), p - 1.0, p))
            return Terms(value, grad, ct.weight, ct.expand)
        value = xp.sum(_weighted(xp, t, neg_log) + _xlogy(xp, t, t), axis=ax)
        return Terms(value, p - t if need_grad else None, None, ct.expand)


for _cls in (MulticlassSparsemaxLoss, FenchelYoungLoss, ShannonFenchelYoungLoss):
    _cls.__doc__ = fill_doc(_cls.__doc__, target_doc=_TARGET_DOC)

_SHANNON = ShannonFenchelYoungLoss()


def make_fenchel_young_loss(conjugate, prediction_map=None, *, regularizer=None,
                            name: str = "fenchel_young_loss") -> Loss:
    r"""A Fenchel–Young loss, from a regulariser's conjugate and its prediction map.

    .. math::

        \ell(\theta; t) = \Omega^*(\theta) + \Omega(t) - \langle \theta, t \rangle,
        \qquad \frac{\partial \ell}{\partial \theta} = \hat y(\theta) - t,
        \quad \hat y = \nabla\Omega^*

    The result is a :class:`~losskit.Loss` like any other (``loss(scores, target)``,
    ``.grad``, ``.value_and_grad``, every reduction, ``sample_weight``, ``axis``,
    ``ignore_index``, the PyTorch and JAX adapters), with integer labels or target
    distributions. It is not added to :func:`losskit.catalog`.

    Parameters
    ----------
    conjugate : {"shannon", "sparsemax"} or callable
        ``"shannon"``: :math:`\Omega` the negentropy, :math:`\Omega^*` logsumexp,
        prediction softmax (the loss is softmax cross-entropy minus the target's entropy).
        ``"sparsemax"``: :math:`\Omega = \tfrac12\lVert\cdot\rVert^2`, prediction
        sparsemax; returns :data:`losskit.multiclass_sparsemax_loss` itself.
        A callable: :math:`\Omega^*`, called with the scores of the caller's array library
        (class axis last, shape ``(..., K)``) and returning one value per row, shape
        ``(...)``. Optax calls it ``max_fun``. It must work on the arrays you pass
        (losskit's primitives, such as :func:`losskit.logsumexp`, work on every library).
    prediction_map : callable
        :math:`\hat y = \nabla\Omega^*`, same calling convention, returning an array of the
        scores' shape: it gives the closed-form gradient, so it is required with a callable
        ``conjugate`` (e.g. :func:`losskit.softmax` for :func:`losskit.logsumexp`).
    regularizer : callable, optional
        :math:`\Omega` of the targets (rows on the last axis, one value per row). With it
        the loss is non-negative and 0 exactly where :math:`\hat y(\theta) = t`; without
        it the value is Optax's ``make_fenchel_young_loss(conjugate)``,
        :math:`\Omega^*(\theta) - \langle\theta, t\rangle` (the same gradient: the missing
        term does not depend on :math:`\theta`).
    name : str, default "fenchel_young_loss"
        The loss's name (its ``repr``, its error messages).

    Returns
    -------
    Loss

    Notes
    -----
    Nothing checks that ``prediction_map`` is the gradient of ``conjugate``: a mismatch
    gives a gradient that is not the value's (``losskit.gradcheck`` finds it). Integer
    labels are the one-hot rows :math:`e_y`, for which :math:`\langle\theta, t\rangle =
    \theta_y`; a ``-inf`` score with target 0 contributes 0 to that product.

    References
    ----------
    .. [1] M. Blondel, A. F. T. Martins, V. Niculae, "Learning with Fenchel-Young
       losses", JMLR 21(35), 2020, arXiv:1901.02324.

    Examples
    --------
    The Shannon loss from losskit's primitives; it equals softmax cross-entropy on labels:

    >>> import numpy as np, losskit as lk
    >>> fy = lk.make_fenchel_young_loss(lk.logsumexp, lk.softmax)
    >>> z = np.array([[2.0, 1.0, 0.1]]); y = np.array([0])
    >>> bool(np.isclose(fy(z, y), lk.softmax_cross_entropy(z, y)))
    True
    >>> bool(np.allclose(fy.grad(z, y), lk.softmax(z) - np.eye(3)[y]))
    True
    """
    if isinstance(conjugate, str):
        check_choice("conjugate", conjugate, ("shannon", "sparsemax"))
        if prediction_map is not None or regularizer is not None:
            raise TypeError(f"make_fenchel_young_loss({conjugate!r}) is complete: leave "
                            "`prediction_map` and `regularizer` out (they are for a "
                            "callable `conjugate`)")
        return multiclass_sparsemax_loss if conjugate == "sparsemax" else _SHANNON
    if not callable(conjugate):
        raise TypeError("`conjugate` must be 'shannon', 'sparsemax' or a callable "
                        f"(the conjugate regulariser Omega*); got {type(conjugate).__name__}")
    if not callable(prediction_map):
        raise TypeError("`prediction_map` must be a callable, the gradient of `conjugate` "
                        "(it gives the loss's closed-form gradient); got "
                        f"{type(prediction_map).__name__}")
    if regularizer is not None and not callable(regularizer):
        raise TypeError("`regularizer` must be a callable (Omega of the target rows) or "
                        f"None; got {type(regularizer).__name__}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string; got {name!r}")
    attrs = {
        "name": name,
        "__doc__": FenchelYoungLoss.__doc__,
        "__module__": __name__,
        "_conjugate": staticmethod(conjugate),
        "_prediction_map": staticmethod(prediction_map),
        "_regularizer": None if regularizer is None else staticmethod(regularizer),
    }
    cls = type("FenchelYoungLoss", (FenchelYoungLoss,), attrs)
    cls.__qualname__ = f"make_fenchel_young_loss.<{name}>"
    return cls()


sparsemax_loss = register(SparsemaxLoss())
multiclass_sparsemax_loss = register(MulticlassSparsemaxLoss())

# fused NumPy kernels: the pointwise family (losskit.kernels.pointwise) for the binary
# loss, the row family (losskit.kernels.rows) for the K-class one
register_fast_path(SparsemaxLoss, pointwise.fast_path(SPARSEMAX_BINARY, check=PROBABILITY_OK))
register_fast_path(MulticlassSparsemaxLoss, rows.multiclass_sparsemax_loss)
