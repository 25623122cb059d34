r"""Overlap losses for segmentation: soft Dice, Tversky and Jaccard (soft IoU).

Each loss compares a predicted map :math:`p` (probabilities in [0, 1], or logits with
``from_logits=``) with a target map :math:`t` (0/1 masks, soft masks in [0, 1], or integer
class labels) through *sums* over a region, the soft counts

.. math::

    TP = \sum_i p_i t_i, \qquad FP = \sum_i p_i (1 - t_i), \qquad FN = \sum_i (1 - p_i) t_i,

and scores the overlap as an index :math:`R = \mathrm{num} / \mathrm{den}` in [0, 1]; the
loss is :math:`1 - R`. With :math:`\partial\,\mathrm{num}/\partial p_i` and
:math:`\partial\,\mathrm{den}/\partial p_i` elementwise, the exact gradient is one line for
all three:

.. math::

    \frac{\partial (1 - R)}{\partial p_i}
        = \frac{R\,\partial_i \mathrm{den} - \partial_i \mathrm{num}}{\mathrm{den}}.

**Layout.** The first axis of ``prediction`` is the batch: every example ``n`` is scored on
its own and ``reduction="none"`` returns one value per example, shape ``(N,)``, so
``sample_weight`` and the reductions act on examples. ``axis`` names the class axis:
``axis=1`` (default) for ``(N, C, *spatial)`` as in MONAI and segmentation_models_pytorch
(smp), ``axis=-1`` for channels-last ``(N, *spatial, C)`` as in Optax/Keras, and
``axis=None`` for a prediction without a class axis (binary segmentation ``(N, *spatial)``).

**Modes.** ``mode="per_class"`` (default) sums over the spatial axes of each example and
class, then averages the C per-class losses (the "macro" Dice of MONAI's ``DiceLoss``);
``mode="global"`` pools every class and position of an example into one index ("micro").
With one class (or ``axis=None``) the two coincide.

**Smoothing.** The constant :math:`s \ge 0` (``smooth``) is added once to the numerator and
once to the denominator. It keeps the index defined on empty masks and makes an empty
prediction of an empty target perfect: with :math:`s > 0` such an example costs exactly 0.
With :math:`s = 0` the index of an example (or class) whose denominator is 0 (empty
prediction *and* empty target) is **defined as 1**: loss 0, gradient 0 (no 0/0 is ever
formed). NaN in the inputs propagates as NaN.

**Matching other libraries.**

* MONAI ``DiceLoss(smooth_nr=s, smooth_dr=s)`` (``batch=False``, ``reduction="mean"``,
  probabilities or ``sigmoid=``/``softmax=``) equals ``dice_loss(p, t, smooth=s)`` (mean over
  examples of the class average is MONAI's mean over ``(N, C)``); ``squared_pred=True`` is
  ``squared=True``; ``to_onehot_y=True`` is an integer ``target`` of shape ``(N, *spatial)``;
  ``include_background=False`` is ``p[:, 1:], t[:, 1:]`` (of probabilities: MONAI takes the
  softmax *before* dropping the background); ``jaccard=True`` is
  ``jaccard_loss(p, t, smooth=s / 2)`` (MONAI doubles its Jaccard denominator); MONAI
  ``TverskyLoss(alpha, beta, smooth_nr=s, smooth_dr=s)`` is ``tversky_loss`` with the same
  numbers. Unequal ``smooth_nr``/``smooth_dr``, ``weight=`` and ``soft_label=True`` are not
  offered (with 0/1 targets ``soft_label`` changes nothing).
* ``batch=True`` (MONAI) and smp's ``DiceLoss``/``JaccardLoss``/``TverskyLoss``, which pool
  the whole batch into one index per class, are the loss of one example made of the whole
  batch: ``np.moveaxis(p, 0, 1)[None]`` (shape ``(1, C, N, *spatial)``), same for ``t``, with
  ``reduction="sum"``. smp's ``smooth`` has the meaning used here (default 0 there); smp also
  clamps the denominator at ``eps=1e-7`` and drops (zeroes) the loss of classes absent from
  the batch's target, so the numbers agree whenever every class occurs in the target.
* Optax's ``dice_loss(logits, targets, alpha=a, beta=b, smooth=s)`` (channels-last, C > 1
  classes; Optax takes a sigmoid of a single channel) is ``tversky_loss(logits, targets,
  alpha=a, beta=b, smooth=s, axis=-1, from_logits="softmax", reduction="none")``; at its
  defaults ``a = b = 1/2`` it is the Dice loss with smoothing ``2 s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..core.dispatch import register_fast_path
from ..core.loss import Loss, Terms, fill_doc, register
from ..core.primitives import _sigmoid, _softmax
from ..core.validation import (
    check_integer,
    same_shape,
    check_choice,
    check_in_range,
    check_labels,
    check_numeric,
    check_same_shape,
    check_scalar,
)
from ..kernels import overlap as _overlap_kernels

__all__ = ["dice_loss", "tversky_loss", "jaccard_loss"]

MODES = ("per_class", "global")


# --------------------------------------------------------------------------- option checks
def _finite_non_negative(name: str, value: Any) -> float:
    return check_scalar(name, value, lo=0.0, hi=float("inf"), hi_open=True)


def _flag(name: str, value: Any, loss: str) -> bool:
    if type(value).__name__ not in ("bool", "bool_"):
        raise TypeError(f"`{name}` of {loss} must be True or False; got {value!r}")
    return bool(value)


def _activation(value: Any, loss: str):
    """``from_logits``: None (probabilities), "sigmoid" or "softmax"."""
    if value is None or value is False:
        return None
    if value is True:
        raise ValueError(
            f"`from_logits` of {loss} must name the activation: 'softmax' (mutually exclusive "
            "classes along `axis`) or 'sigmoid' (binary or multi-label); got True")
    if isinstance(value, str) and value in ("sigmoid", "softmax"):
        return value
    raise ValueError(f"`from_logits` of {loss} must be False, 'sigmoid' or 'softmax'; "
                     f"got {value!r}")


def _class_axis(axis: Any, shape: tuple, loss: str):
    """``axis`` as an index in [1, ndim), or None for no class axis."""
    if axis is None:
        return None
    axis = check_integer("axis", axis, loss=loss, or_none=True)
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(
            f"`axis`={axis} of {loss} needs a class axis beside the batch axis 0, but "
            f"`prediction` has shape {shape}; pass axis=None for a prediction without a "
            "class axis")
    if not -ndim <= axis < ndim:
        raise ValueError(f"`axis` of {loss} must lie in [{-ndim}, {ndim - 1}] for a "
                         f"{ndim}-d `prediction`; got {axis}")
    ax = axis % ndim
    if ax == 0:
        raise ValueError(
            f"`axis` of {loss} names the class axis and cannot be the batch axis 0; got "
            f"{axis}. Use axis=1 for (N, C, *spatial), axis=-1 for (N, *spatial, C), or "
            "axis=None for a prediction without a class axis")
    return ax


@dataclass
class _Maps:
    """The decoded inputs of an overlap loss, shared by the three kernels."""

    p: Any  # probabilities (after the activation, 0 at ignored positions)
    t: Any  # target in [0, 1], the prediction's shape, compute dtype
    z: Any  # the raw prediction (logits when an activation is applied)
    a: Any  # the activation's output before masking (None without an activation)
    keep: Any  # bool, broadcastable to the prediction; None when nothing is ignored
    ax: int | None  # class axis
    act: str | None  # activation
    axes: tuple  # the axes summed into one index (never the batch axis)
    groups: int  # indices averaged per example (C in per_class mode, else 1)
    n: int  # batch size

    def total(self, xp, x):
        """Sum over the axes of one index, keeping dimensions (broadcasts back)."""
        return xp.sum(x, axis=self.axes, keepdims=True) if self.axes else x


class _OverlapLoss(Loss):
    """Shared decoding, reduction to per-example values and chain rule."""

    family = "overlap"
    target = "0/1 or soft masks in [0, 1] like prediction, or integer class labels"

    def _maps(self, ctx, prediction, target, *, mode, axis, from_logits,
              ignore_index) -> _Maps:
        xp = ctx.xp
        check_choice("mode", mode, MODES)
        act = _activation(from_logits, self.name)
        shape = tuple(prediction.shape)
        if prediction.ndim == 0:
            raise ValueError(
                f"`prediction` of {self.name} needs a batch axis (axis 0): shape "
                "(N, C, *spatial), (N, *spatial, C) or (N, *spatial); got a 0-d array")
        ax = _class_axis(axis, shape, self.name)
        if act == "softmax" and ax is None:
            raise ValueError(f"from_logits='softmax' of {self.name} needs a class axis; got "
                             "axis=None (use from_logits='sigmoid' for binary maps)")
        if act is None:
            check_in_range(xp, "prediction", prediction, 0.0, 1.0,
                           hint=f"{self.name} expects probabilities; for logits pass "
                                "from_logits='sigmoid' or 'softmax'")
        t, keep = self._decode_target(ctx, prediction, target, ax, ignore_index)
        if act == "sigmoid":
            a = _sigmoid(xp, prediction)
        elif act == "softmax":
            a = _softmax(xp, prediction, axis=ax)
        else:
            a = None
        p = prediction if a is None else a
        if keep is not None:  # ignored positions take no part (even NaN ones)
            p = xp.where(keep, p, xp.zeros_like(p))
        per_class = mode == "per_class" and ax is not None
        axes = tuple(i for i in range(1, prediction.ndim) if not (per_class and i == ax))
        groups = shape[ax] if per_class else 1
        return _Maps(p, t, prediction, a, keep, ax, act, axes, groups, shape[0])

    def _decode_target(self, ctx, prediction, target, ax, ignore_index):
        xp = ctx.xp
        ignore_index = check_integer("ignore_index", ignore_index, loss=ctx.loss,
                                     or_none=True)
        t = ctx.asarray(target, "target")
        check_numeric(xp, "target", t)
        shape = tuple(prediction.shape)
        integral = xp.isdtype(t.dtype, "integral")
        if integral and ax is not None and not same_shape(t.shape, shape):
            k = shape[ax]
            label_shape = shape[:ax] + shape[ax + 1:]
            if not same_shape(t.shape, label_shape):
                raise ValueError(
                    f"integer `target` of {self.name} must be class labels of shape "
                    f"{label_shape} (`prediction` {shape} without its class axis {ax}) or a 0/1 "
                    f"mask of the prediction's shape; got {tuple(t.shape)}")
            check_labels(xp, "target", t, k, ignore_index=ignore_index)
            bshape = tuple(k if i == ax else 1 for i in range(len(shape)))
            classes = xp.reshape(xp.arange(k, device=ctx.device), bshape)
            labels = xp.expand_dims(t, axis=ax)
            hit = labels == classes
            keep = None
            if ignore_index is not None:
                keep = labels != ignore_index
                hit = hit & keep
            return xp.astype(hit, ctx.work), keep
        if ignore_index is not None:
            raise ValueError(
                f"`ignore_index` of {self.name} applies to integer class labels only; `target` "
                "holds masks of the prediction's shape (zero both maps where they should not "
                "count)")
        check_same_shape("prediction", shape, "target", t.shape)
        t = xp.astype(t, ctx.work) if t.dtype != ctx.work else t
        check_in_range(xp, "target", t, 0.0, 1.0,
                       hint="targets are masks or probabilities in [0, 1]")
        return t, None

    def _terms(self, ctx, m: _Maps, num, den, dnum: Callable, dden: Callable,
               need_grad: bool) -> Terms:
        """Per-example loss and gradient from the index ``num / den`` of each group.

        ``dnum()``/``dden()`` give the elementwise derivatives with respect to ``p``.
        """
        xp = ctx.xp
        ndim = m.z.ndim
        ok = den != 0  # True for NaN: it propagates
        safe = xp.where(ok, den, xp.ones_like(den))
        index = xp.where(ok, num / safe, xp.ones_like(num))  # 0/0 (both empty) := 1
        per_group = 1.0 - index
        value = xp.sum(per_group, axis=tuple(range(1, ndim))) if ndim > 1 else per_group
        if m.groups > 1:
            value = value / m.groups
        bshape = (m.n,) + (1,) * (ndim - 1)

        def expand(a):
            return xp.reshape(a, bshape)

        grad = None
        if need_grad:
            g = (index * dden() - dnum()) / safe
            g = xp.where(ok, g, xp.zeros_like(g))
            if m.groups > 1:
                g = g / m.groups
            if m.keep is not None:
                g = xp.where(m.keep, g, xp.zeros_like(g))
            if m.act == "sigmoid":  # sigma'(z) = sigma(z) sigma(-z), exact in both tails
                g = g * (m.a * _sigmoid(xp, -m.z))
            elif m.act == "softmax":  # J^T g = s * (g - <s, g>) along the class axis
                g = m.a * (g - xp.sum(m.a * g, axis=m.ax, keepdims=True))
                if m.keep is not None:
                    g = xp.where(m.keep, g, xp.zeros_like(g))
            grad = g
        return Terms(value, grad, None, expand)


_SHARED_DOC = """\
prediction : floating array, ``(N, C, *spatial)``, ``(N, *spatial, C)`` or ``(N, *spatial)``
    Probabilities in [0, 1] (a sigmoid or softmax output), or logits with ``from_logits``.
    Axis 0 is the batch: each example is scored on its own.
target : array
    Masks in [0, 1] (0/1 or soft; floating, integer or bool) of the prediction's shape, or
    integer class labels of the prediction's shape without the class axis (one-hot
    encoded along ``axis``, like MONAI's ``to_onehot_y``).
mode : {"per_class", "global"}, default "per_class"
    ``"per_class"``: one index per example and class (sums over the spatial axes), the
    example's loss is their mean over the C classes. ``"global"``: one index per example,
    pooling every class and position.
axis : int or None, default 1
    The class axis (not 0, the batch axis): 1 for ``(N, C, *spatial)``, -1 for
    ``(N, *spatial, C)``, None when there is no class axis.
from_logits : {False, "sigmoid", "softmax"}, default False
    False: ``prediction`` holds probabilities (checked to lie in [0, 1]). ``"sigmoid"``:
    logits, :math:`p = \\sigma(z)` elementwise (binary or multi-label). ``"softmax"``: logits,
    :math:`p = \\operatorname{softmax}(z)` along ``axis`` (mutually exclusive classes). The
    gradient is then with respect to the logits (chain rule below).
ignore_index : int, optional
    With integer labels only: positions labelled so take no part (both maps are zeroed
    there; they get a zero gradient), as smp's ``ignore_index``."""

_CHAIN_DOC = """\
With ``from_logits="sigmoid"`` the gradient is
:math:`\\partial \\ell/\\partial z_i =
\\partial \\ell/\\partial p_i\\,\\sigma(z_i)\\sigma(-z_i)`; with ``"softmax"`` along the class
axis,
:math:`\\partial \\ell/\\partial z_c = p_c\\,(g_c - \\sum_k p_k g_k)`, :math:`g = \\partial
\\ell/\\partial p`. In ``"per_class"`` mode both value and gradient are divided by C."""


class DiceLoss(_OverlapLoss):
    r"""Soft Dice loss :math:`1 - (2\sum p t + s) / (\sum p + \sum t + s)`.

    One minus the soft Dice coefficient (the F1 score of soft counts) of each example, with
    the smoothing ``smooth`` in numerator and denominator. See the module notes for the
    layout, the modes and how to reproduce MONAI's and smp's numbers.

    Parameters
    ----------
    {shared_doc}
    smooth : float >= 0, default 1
        :math:`s`, added once to the numerator and once to the denominator.
    squared : bool, default False
        Sum squares in the denominator, :math:`\sum p^2 + \sum t^2`, as in V-Net
        (Milletari et al.) and MONAI's ``squared_pred``; the default sums the maps.
    {common_parameters}

    Notes
    -----
    For one index (an example, or an example and class), with :math:`q_i = p_i` or
    :math:`p_i^2` and :math:`r_i = t_i` or :math:`t_i^2` (``squared``):

    .. math::

        D = \frac{2\sum_i p_i t_i + s}{\sum_i q_i + \sum_i r_i + s}, \qquad \ell = 1 - D,
        \qquad
        \frac{\partial \ell}{\partial p_i} = \frac{D\,q_i' - 2 t_i}
            {\sum_j q_j + \sum_j r_j + s}

    with :math:`q_i' = 1` (or :math:`2 p_i`). :math:`0 \le \ell \le 1` for maps in [0, 1]
    (:math:`2pt \le p + t`). An empty prediction of an empty target costs 0; with
    :math:`s = 0` that case (denominator 0) is defined as :math:`D = 1` with a zero
    gradient: any positive prediction of an empty target then costs 1 with gradient 0, and
    no 0/0 arises. ``dice_loss`` equals ``tversky_loss`` with
    :math:`\alpha = \beta = 1/2` and half the smoothing.

    {chain_doc}

    References
    ----------
    .. [1] F. Milletari, N. Navab, S.-A. Ahmadi, "V-Net: Fully Convolutional Neural Networks
       for Volumetric Medical Image Segmentation", 3DV 2016, arXiv:1606.04797 (squared
       denominator).
    .. [2] C. H. Sudre et al., "Generalised Dice overlap as a deep learning loss function for
       highly unbalanced segmentations", DLMIA 2017, arXiv:1707.03237.

    Examples
    --------
    One example, four pixels, no class axis: :math:`\sum pt = 1.5`, :math:`\sum p = 1.5`,
    :math:`\sum t = 2`, so :math:`D = 3 / 3.5 = 6/7` and the loss is :math:`1/7`; with the
    default :math:`s = 1`, :math:`D = 4 / 4.5` and the loss is :math:`1/9`.

    >>> import numpy as np, losskit as lk
    >>> p = np.array([[1.0, 0.5, 0.0, 0.0]]); t = np.array([[1.0, 1.0, 0.0, 0.0]])
    >>> round(float(lk.dice_loss(p, t, axis=None, smooth=0.0)), 6), round(1 / 7, 6)
    (0.142857, 0.142857)
    >>> round(float(lk.dice_loss(p, t, axis=None)), 6)
    0.111111

    The gradient :math:`(D - 2t_i) / 3.5` is :math:`-16/49` on the target, :math:`12/49` off it:

    >>> lk.dice_loss.grad(p, t, axis=None, smooth=0.0) * 49
    array([[-16., -16.,  12.,  12.]])
    """

    name = "dice_loss"
    prediction = "probabilities"
    formula = r"\ell = 1 - \frac{2\sum_i p_i t_i + s}{\sum_i p_i + \sum_i t_i + s}"
    gradient_formula = (r"\frac{\partial \ell}{\partial p_i} = \frac{D - 2 t_i}"
                        r"{\sum_j p_j + \sum_j t_j + s}")
    when_to_use = (
        "Segmentation where the foreground is small (organs, lesions, cells): the Dice loss "
        "scores the overlap of predicted and true masks as a whole, so it is insensitive to "
        "the mass of easy background pixels that dominates a per-pixel cross-entropy. Often "
        "combined with cross-entropy for smoother early training; per_class mode averages "
        "over classes so that small classes count as much as large ones."
    )
    references = (
        "Milletari, Navab, Ahmadi, V-Net, 3DV 2016, arXiv:1606.04797",
        "Sudre et al., Generalised Dice overlap as a deep learning loss function, "
        "arXiv:1707.03237",
    )

    def _compute(self, ctx, prediction, target, *, need_grad, smooth=1.0, squared=False,
                 mode="per_class", axis=1, from_logits=False, ignore_index=None):
        xp = ctx.xp
        s = _finite_non_negative("smooth", smooth)
        sq = _flag("squared", squared, self.name)
        m = self._maps(ctx, prediction, target, mode=mode, axis=axis, from_logits=from_logits,
                       ignore_index=ignore_index)
        p, t = m.p, m.t
        inter = m.total(xp, p * t)
        size = m.total(xp, p * p + t * t) if sq else m.total(xp, p + t)
        return self._terms(ctx, m, 2.0 * inter + s, size + s,
                           lambda: 2.0 * t,
                           (lambda: 2.0 * p) if sq else (lambda: xp.ones_like(p)),
                           need_grad)


class TverskyLoss(_OverlapLoss):
    r"""Tversky loss :math:`1 - (TP + s) / (TP + \alpha FP + \beta FN + s)`.

    The Dice loss with separate weights on false positives (:math:`\alpha`) and false
    negatives (:math:`\beta`): :math:`\beta > \alpha` trades precision for recall, which
    helps with small, rare structures. See the module notes for the layout and modes.

    Parameters
    ----------
    {shared_doc}
    alpha : float >= 0, default 0.5
        Weight of the soft false positives :math:`FP = \sum p (1 - t)`.
    beta : float >= 0, default 0.5
        Weight of the soft false negatives :math:`FN = \sum (1 - p) t`. Salehi et al. use
        :math:`\alpha + \beta = 1` and report :math:`\beta = 0.7` as a good trade-off.
    smooth : float >= 0, default 1
        :math:`s`, added once to the numerator and once to the denominator.
    {common_parameters}

    Notes
    -----
    For one index, with :math:`TP = \sum_i p_i t_i`:

    .. math::

        T = \frac{TP + s}{TP + \alpha FP + \beta FN + s}, \qquad \ell = 1 - T, \qquad
        \frac{\partial \ell}{\partial p_i} =
            \frac{T\,\bigl(t_i + \alpha (1 - t_i) - \beta t_i\bigr) - t_i}
                 {TP + \alpha FP + \beta FN + s}

    :math:`0 \le \ell \le 1` for maps in [0, 1]. At :math:`\alpha = \beta = 1/2` the
    denominator is :math:`(\sum p + \sum t)/2 + s`, so ``tversky_loss(smooth=s)`` equals
    ``dice_loss(smooth=2 s)`` (the Dice loss exactly when :math:`s = 0`); at
    :math:`\alpha = \beta = 1` it is the Jaccard loss. A denominator of 0 (with
    :math:`s = 0`: empty maps, or an empty target with :math:`\alpha = 0`) is defined as
    :math:`T = 1`, loss 0, gradient 0.

    {chain_doc}

    References
    ----------
    .. [1] S. S. M. Salehi, D. Erdogmus, A. Gholipour, "Tversky loss function for image
       segmentation using 3D fully convolutional deep networks", MLMI 2017,
       arXiv:1706.05721.
    .. [2] A. Tversky, "Features of similarity", Psychological Review 84(4), 1977,
       doi:10.1037/0033-295X.84.4.327.

    Examples
    --------
    Three predicted pixels, two true: :math:`TP = 2`, :math:`FP = 1`, :math:`FN = 0`. The
    loss is :math:`\alpha / (2 + \alpha)`: 0.3/2.3 or, penalising false positives more,
    0.7/2.7.

    >>> import numpy as np, losskit as lk
    >>> p = np.array([[1.0, 1.0, 1.0, 0.0]]); t = np.array([[1.0, 1.0, 0.0, 0.0]])
    >>> for a in (0.3, 0.7):
    ...     v = lk.tversky_loss(p, t, alpha=a, beta=1 - a, smooth=0.0, axis=None)
    ...     print(round(float(v), 6), round(a / (2 + a), 6))
    0.130435 0.130435
    0.259259 0.259259
    """

    name = "tversky_loss"
    prediction = "probabilities"
    formula = r"\ell = 1 - \frac{TP + s}{TP + \alpha\,FP + \beta\,FN + s}"
    gradient_formula = (r"\frac{\partial \ell}{\partial p_i} = \frac{T\,(t_i + \alpha(1 - t_i)"
                        r" - \beta t_i) - t_i}{TP + \alpha\,FP + \beta\,FN + s}")
    when_to_use = (
        "Segmentation of small or rare structures where missing foreground (false negatives) "
        "is worse than over-segmenting: the Tversky index weights false positives by alpha "
        "and false negatives by beta, so beta > alpha favours recall. With alpha = beta = "
        "0.5 it is the Dice loss, with alpha = beta = 1 the Jaccard loss."
    )
    references = (
        "Salehi, Erdogmus, Gholipour, Tversky loss function for image segmentation, MLMI "
        "2017, arXiv:1706.05721",
        "Tversky, Features of similarity, Psychological Review 1977, "
        "doi:10.1037/0033-295X.84.4.327",
    )

    def _compute(self, ctx, prediction, target, *, need_grad, alpha=0.5, beta=0.5,
                 smooth=1.0, mode="per_class", axis=1, from_logits=False, ignore_index=None):
        xp = ctx.xp
        a = _finite_non_negative("alpha", alpha)
        b = _finite_non_negative("beta", beta)
        s = _finite_non_negative("smooth", smooth)
        m = self._maps(ctx, prediction, target, mode=mode, axis=axis, from_logits=from_logits,
                       ignore_index=ignore_index)
        p, t = m.p, m.t
        pt = p * t
        tp = m.total(xp, pt)
        # one sum for TP + a FP + b FN = sum(pt + a (p - pt) + b (t - pt)), each term >= 0
        den = m.total(xp, pt + a * (p - pt) + b * (t - pt))
        return self._terms(ctx, m, tp + s, den + s,
                           lambda: t,
                           lambda: t + a * (1.0 - t) - b * t,
                           need_grad)


class JaccardLoss(_OverlapLoss):
    r"""Soft Jaccard (IoU) loss :math:`1 - (I + s) / (\sum p + \sum t - I + s)`.

    One minus the soft intersection over union, :math:`I = \sum p t`. Ranks predictions as
    the Dice loss does (:math:`J = D / (2 - D)`) but penalises partial overlap more.
    See the module notes for the layout and modes.

    Parameters
    ----------
    {shared_doc}
    smooth : float >= 0, default 1
        :math:`s`, added once to the numerator and once to the denominator.
    squared : bool, default False
        Use :math:`\sum p^2 + \sum t^2 - I` as the union (MONAI's ``squared_pred``).
    {common_parameters}

    Notes
    -----
    For one index, with :math:`q_i = p_i` or :math:`p_i^2` and :math:`r_i = t_i` or
    :math:`t_i^2` (``squared``) and the union :math:`U = \sum_i (q_i + r_i - p_i t_i)`:

    .. math::

        J = \frac{\sum_i p_i t_i + s}{U + s}, \qquad \ell = 1 - J, \qquad
        \frac{\partial \ell}{\partial p_i} = \frac{J\,(q_i' - t_i) - t_i}{U + s}

    with :math:`q_i' = 1` (or :math:`2 p_i`). At :math:`s = 0`, :math:`J = D / (2 - D)` with
    :math:`D` the Dice coefficient. A denominator of 0 (:math:`s = 0`, both maps empty) is
    defined as :math:`J = 1`, loss 0, gradient 0. MONAI's ``DiceLoss(jaccard=True,
    smooth_nr=s, smooth_dr=s)`` doubles numerator and denominator: it equals this loss
    with ``smooth=s/2``.

    {chain_doc}

    References
    ----------
    .. [1] M. A. Rahman, Y. Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks
       for Image Segmentation", ISVC 2016, doi:10.1007/978-3-319-50835-1_22.
    .. [2] P. Jaccard, "The distribution of the flora in the alpine zone", New Phytologist
       11(2), 1912, doi:10.1111/j.1469-8137.1912.tb05611.x.

    Examples
    --------
    :math:`I = 1.5`, :math:`U = 1.5 + 2 - 1.5 = 2`, so :math:`J = 0.75`: the loss is 0.25
    (the Dice coefficient of the same maps is 6/7, and (6/7) / (2 - 6/7) = 0.75).

    >>> import numpy as np, losskit as lk
    >>> p = np.array([[1.0, 0.5, 0.0, 0.0]]); t = np.array([[1.0, 1.0, 0.0, 0.0]])
    >>> float(lk.jaccard_loss(p, t, axis=None, smooth=0.0))
    0.25
    """

    name = "jaccard_loss"
    prediction = "probabilities"
    formula = r"\ell = 1 - \frac{\sum_i p_i t_i + s}{\sum_i (p_i + t_i - p_i t_i) + s}"
    gradient_formula = (r"\frac{\partial \ell}{\partial p_i} = \frac{J\,(1 - t_i) - t_i}"
                        r"{\sum_j (p_j + t_j - p_j t_j) + s}")
    when_to_use = (
        "Segmentation evaluated by intersection over union (the Jaccard index, mIoU): this "
        "soft IoU optimises the metric directly and, like the Dice loss, ignores the bulk of "
        "easy background pixels. It penalises partial overlap more than Dice (J = D/(2-D)); "
        "use per_class mode for mean IoU over classes."
    )
    references = (
        "Rahman and Wang, Optimizing Intersection-Over-Union in Deep Neural Networks for "
        "Image Segmentation, ISVC 2016, doi:10.1007/978-3-319-50835-1_22",
        "Jaccard, The distribution of the flora in the alpine zone, 1912, "
        "doi:10.1111/j.1469-8137.1912.tb05611.x",
    )

    def _compute(self, ctx, prediction, target, *, need_grad, smooth=1.0, squared=False,
                 mode="per_class", axis=1, from_logits=False, ignore_index=None):
        xp = ctx.xp
        s = _finite_non_negative("smooth", smooth)
        sq = _flag("squared", squared, self.name)
        m = self._maps(ctx, prediction, target, mode=mode, axis=axis, from_logits=from_logits,
                       ignore_index=ignore_index)
        p, t = m.p, m.t
        pt = p * t
        inter = m.total(xp, pt)
        # the union summed from non-negative terms: p + t(1 - p) (or p^2 + t^2 - pt)
        union = m.total(xp, (p * p + t * t if sq else p + t) - pt)
        return self._terms(ctx, m, inter + s, union + s,
                           lambda: t,
                           (lambda: 2.0 * p - t) if sq else (lambda: 1.0 - t),
                           need_grad)


for _cls in (DiceLoss, TverskyLoss, JaccardLoss):
    _cls.__doc__ = fill_doc(_cls.__doc__, shared_doc=_SHARED_DOC, chain_doc=_CHAIN_DOC)

dice_loss = register(DiceLoss())
tversky_loss = register(TverskyLoss())
jaccard_loss = register(JaccardLoss())

# fused NumPy kernels (losskit.kernels.overlap), consulted by the pipeline
register_fast_path(DiceLoss, _overlap_kernels.dice_loss)
register_fast_path(TverskyLoss, _overlap_kernels.tversky_loss)
register_fast_path(JaccardLoss, _overlap_kernels.jaccard_loss)
