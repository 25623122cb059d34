r"""Overlap losses for segmentation: soft Dice, Tversky and Jaccard (soft IoU), the focal
Tversky loss, the generalised Dice loss and the Matthews correlation (MCC) loss.

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

**Second order.** The index of a group couples every element of the group, so the
Hessian is dense within each group (and 0 between groups): ``second_order = "dense"``,
``hessian`` is its exact diagonal and ``hvp`` the exact product. By the quotient rule,
with :math:`r_i = \partial R / \partial p_i`,

.. math::

    \frac{\partial^2 (1 - R)}{\partial p_i \partial p_j}
        = \frac{[i = j]\,(R\,\partial_i^2 \mathrm{den} - \partial_i^2 \mathrm{num})
          + r_i\,\partial_j \mathrm{den} + \partial_i \mathrm{den}\,r_j}{\mathrm{den}},

a diagonal plus a rank-2 term per group, so the product costs two sums per group.
``log_loss`` and the focal power chain as :math:`\phi''(R)\,r r^\top + \phi'(R)\,
\nabla^2 R`; class weights and the 1/C of ``"per_class"`` scale each group. With
``from_logits`` the activation adds its own curvature,
:math:`\nabla_z^2 \ell = J^\top \nabla_p^2 \ell\, J + \sum_c (\partial \ell / \partial p_c)
\nabla_z^2 p_c` (:math:`J` the Jacobian of the sigmoid or of the softmax along the class
axis). Where an index is defined by convention (a zero denominator) the Hessian is 0, as
the gradient; below the log loss's floor too.

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

**Options of part 2.** ``class_weight`` (Dice, Tversky, Jaccard, focal Tversky) weights
the per-class losses, MONAI's ``weight``; ``log_loss=True`` (Dice, Tversky, Jaccard) scores
an index :math:`R` by :math:`-\log R`, smp's ``log_loss``. ``focal_tversky_loss`` raises
each Tversky loss to a power :math:`\gamma` (a loss of its own, so that it is found by
name); ``generalized_dice_loss`` pools the classes of an example into one index with
inverse-volume weights; ``mcc_loss`` also counts true negatives. The Lovász losses, convex
surrogates of the Jaccard loss by sorting, are in :mod:`losskit.losses.lovasz`.

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

from dataclasses import dataclass, replace
from typing import Any, Callable

from ..core.dispatch import register_fast_path, unless_set
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

__all__ = ["dice_loss", "tversky_loss", "jaccard_loss", "focal_tversky_loss",
           "generalized_dice_loss", "generalized_dice", "mcc_loss"]

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
               need_grad: bool, *, weight=None, focus=None, empty: float = 1.0,
               d2den: Callable | None = None, curvature: Callable | None = None) -> Terms:
        """Per-example loss and gradient from the index ``num / den`` of each group.

        ``dnum()``/``dden()`` give the elementwise derivatives with respect to ``p``.
        ``weight``: class weights broadcasting along the class axis (per-class mode).
        ``focus``: None (the loss of a group is ``1 - R``), ``("log",)`` (``-log R``,
        :math:`R` floored at ``LOG_FLOOR``) or ``("power", gamma)`` (``(1 - R)^gamma``).
        ``empty``: the index of a group whose denominator is 0 (gradient 0 there).

        Second order (``ctx.wants_hessian``): ``d2den()`` is the elementwise second
        derivative of ``den`` (None: ``den`` is linear in ``p``; ``num`` always is). An
        index that is not the ratio of two sums (MCC) passes ``curvature(index)`` instead,
        returning ``(ds, d2s, gR, HR)`` in the form of :func:`_ratio_curvature`.
        """
        xp = ctx.xp
        ndim = m.z.ndim
        ok = den != 0  # True for NaN: it propagates
        safe = xp.where(ok, den, xp.ones_like(den))
        fill = xp.ones_like(num) if empty == 1.0 else xp.zeros_like(num)
        index = xp.where(ok, num / safe, fill)  # 0/0 (both empty) := empty
        per_group, slope = _focused(xp, focus, index)
        if weight is not None:
            per_group = per_group * weight
            slope = weight if slope is None else slope * weight
        value = xp.sum(per_group, axis=tuple(range(1, ndim))) if ndim > 1 else per_group
        if m.groups > 1:
            value = value / m.groups
        bshape = (m.n,) + (1,) * (ndim - 1)

        def expand(a):
            return xp.reshape(a, bshape)

        grad = None
        if need_grad:
            g = (index * dden() - dnum()) / safe
            if slope is not None:
                g = g * slope
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
        terms = Terms(value, grad, None, expand)
        if ctx.wants_hessian:
            if curvature is None:
                ds, d2s, g_r, h_r = _ratio_curvature(xp, index, safe, dnum(), dden(),
                                                     None if d2den is None else d2den())
            else:
                ds, d2s, g_r, h_r = curvature(index)
            # the group's loss phi(R), times its class weight and 1/C, as a function of
            # the sums: gradient phi' gR, Hessian phi'' gR gR^T + phi' HR
            d1, d2 = _focused_second(xp, focus, index)
            c = 1.0 / m.groups if weight is None else weight / m.groups
            zero = xp.zeros_like(index)
            d1 = xp.where(ok, d1 * c, zero)
            d2 = xp.where(ok, d2 * c, zero)
            k = len(ds)
            g_l = [d1 * g_r[a] for a in range(k)]
            h_l = [[d2 * g_r[a] * g_r[b] + (0.0 if h_r[a][b] is None else d1 * h_r[a][b])
                    for b in range(k)] for a in range(k)]
            terms.hess, terms.hvp = _sums_second_order(xp, m, ds, d2s, g_l, h_l, ctx.vector)
        return terms

    def _class_weight(self, ctx, class_weight, m: _Maps, mode):
        """``class_weight`` as an array broadcasting along the class axis, or None."""
        if class_weight is None:
            return None
        xp = ctx.xp
        if m.ax is None or mode != "per_class":
            raise ValueError(
                f"`class_weight` of {self.name} weights the per-class losses: it needs "
                f"mode='per_class' and a class axis; got mode={mode!r}, axis="
                f"{'None' if m.ax is None else m.ax}")
        k = m.z.shape[m.ax]
        cw = ctx.asarray(class_weight, "class_weight")
        check_numeric(xp, "class_weight", cw, bool_ok=False)
        if tuple(cw.shape) != (k,):
            raise ValueError(
                f"`class_weight` of {self.name} must have one weight per class: shape ({k},) "
                f"(the size of the class axis {m.ax} of `prediction`); got {tuple(cw.shape)}")
        cw = xp.astype(cw, ctx.work)
        check_in_range(xp, "class_weight", cw, 0.0, float("inf"),
                       hint="weights must be non-negative and finite")
        return xp.reshape(cw, tuple(k if i == m.ax else 1 for i in range(m.z.ndim)))


#: ``log_loss=True``: the index is floored here before its logarithm (smp's ``eps``)
LOG_FLOOR = 1e-7


def _focused(xp, focus, index):
    """The loss of each group from its index and the derivative of that loss with
    respect to ``1 - index`` (None for 1)."""
    if focus is None:
        return 1.0 - index, None
    if focus[0] == "log":  # -log R: d/d(1 - R) = 1/R; floored as smp's clamp_min(eps)
        low = index < LOG_FLOOR
        clipped = xp.where(low, xp.full_like(index, LOG_FLOOR), index)
        return -xp.log(clipped), xp.where(low, xp.zeros_like(index), 1.0 / clipped)
    gamma = focus[1]  # (1 - R)^gamma: d/d(1 - R) = gamma (1 - R)^(gamma - 1)
    base = 1.0 - index
    base = xp.where(base < 0, xp.zeros_like(base), base)  # rounding below 0
    if gamma == 1.0:
        return base, None
    zero = base == 0
    safe = xp.where(zero, xp.ones_like(base), base)
    return base ** gamma, xp.where(zero, xp.zeros_like(base), gamma * safe ** (gamma - 1.0))


def _focused_second(xp, focus, index):
    """``(phi'(R), phi''(R))`` of the loss ``phi`` of a group's index ``R`` (``focus`` as in
    :func:`_focused`, with the same conventions: 0 below the log's floor and, for
    ``(1 - R)^gamma``, where ``R = 1``, unless ``gamma = 2``: the constant 2 there)."""
    if focus is None:  # 1 - R
        return -xp.ones_like(index), xp.zeros_like(index)
    if focus[0] == "log":  # -log R: -1/R and 1/R^2
        low = index < LOG_FLOOR
        inv = 1.0 / xp.where(low, xp.ones_like(index), index)
        zero = xp.zeros_like(index)
        return xp.where(low, zero, -inv), xp.where(low, zero, inv * inv)
    gamma = focus[1]  # (1 - R)^gamma: -gamma b^(gamma - 1) and gamma (gamma - 1) b^(gamma - 2)
    base = 1.0 - index
    base = xp.where(base < 0, xp.zeros_like(base), base)
    zero = base == 0
    safe = xp.where(zero, xp.ones_like(base), base)
    at_zero = 2.0 if gamma == 2.0 else 0.0
    d1 = xp.where(zero, xp.zeros_like(base), -gamma * safe ** (gamma - 1.0))
    d2 = xp.where(zero, xp.full_like(base, at_zero),
                  gamma * (gamma - 1.0) * safe ** (gamma - 2.0))
    return d1, d2


# Second order of the overlap family. Every index R of a group (an example, or an example
# and class) is a smooth function of a few sums over the group, S_k = sum_i s_k(p_i), each
# of an elementwise function s_k (linear in p, or p^2 with ``squared``). With the
# derivatives F_k = dR/dS_k and F_kl = d2R/dS_k dS_l of the group (constants of the group):
#
#     dR/dp_i        = sum_k F_k s_k'(p_i)
#     d2R/dp_i dp_j  = sum_kl F_kl s_k'(p_i) s_l'(p_j) + [i = j] sum_k F_k s_k''(p_i)
#
# a diagonal plus a rank-K term inside each group (and 0 between groups), so the exact
# Hessian-vector product costs K sums per group. The loss phi(R) of the group (1 - R,
# -log R or (1 - R)^gamma, times its class weight and 1/C) chains as
# d2 phi = phi'' dR dR^T + phi' d2R. For the ratios R = N / D (Dice, Tversky, Jaccard,
# generalised Dice), K = 2 with S_N = N, S_D = D (the smoothing is a constant of either):
#
#     F_N = 1/D,  F_D = -R/D,  F_NN = 0,  F_ND = -1/D^2,  F_DD = 2R/D^2
#
# (the quotient rule twice: d(1/D) = -dD/D^2, d(-N/D^2) = -dN/D^2 + 2N dD/D^3), that is
# d2R/dp_i dp_j = [i = j](n_i'' - R d_i'')/D - (r_i d_j' + d_i' r_j)/D with r_i = dR/dp_i.
# MCC is written over x = sum p t and y = sum p (``MCCLoss``). An activation chains as
# H_z = J^T H_p J + sum_c (dl/dp_c) d2p_c/dz2 with its Jacobian J.
def _ratio_curvature(xp, index, safe, dnum, dden, d2den):
    """``(ds, d2s, gR, HR)`` of the ratio ``R = N / D``: the elementwise derivatives of
    the two sums (numerator, denominator) and their second derivatives (None: linear),
    and the group's first and second derivatives of R with respect to the sums
    (None: 0)."""
    inv = 1.0 / safe
    inv2 = inv * inv
    return ((dnum, dden), (None, d2den), (inv, -index * inv),
            ((None, -inv2), (-inv2, 2.0 * index * inv2)))


def _sums_second_order(xp, m: _Maps, ds, d2s, g_l, h_l, vector):
    """The Hessian's diagonal and product with ``vector`` with respect to the raw
    prediction of a loss whose group values depend on the sums ``S_k = total(s_k(p))``:
    ``ds``/``d2s`` the elementwise ``s_k'``/``s_k''`` (None: 0), ``g_l``/``h_l`` the
    gradient and Hessian of the groups' losses with respect to the sums (group-shaped),
    then chained through the activation."""
    keep = m.keep

    def masked(a):
        if a is None:
            return None
        a = a * xp.ones_like(m.p)
        return a if keep is None else xp.where(keep, a, xp.zeros_like(a))

    ds = [masked(d) for d in ds]
    d2s = [masked(d) for d in d2s]
    k = len(ds)
    # with respect to p: H_p = diag(dg) + sum_kl h_kl s_k' s_l'^T within each group
    dg = xp.zeros_like(m.p)
    for a in range(k):
        if d2s[a] is not None:
            dg = dg + g_l[a] * d2s[a]
    gp = sum(g_l[a] * ds[a] for a in range(k))  # dl/dp
    diag_p = dg + sum(h_l[a][b] * ds[a] * ds[b] for a in range(k) for b in range(k))

    def hvp_p(u):
        dots = [m.total(xp, ds[b] * u) for b in range(k)]
        return dg * u + sum(ds[a] * sum(h_l[a][b] * dots[b] for b in range(k))
                            for a in range(k))

    v = vector
    if m.act is None:
        diag, hv = diag_p, (None if v is None else hvp_p(v))
    elif m.act == "sigmoid":  # p' = s(z) s(-z), p'' = p' (s(-z) - s(z)), exact in the tails
        sm = _sigmoid(xp, -m.z)
        d1 = m.a * sm
        d2 = d1 * (sm - m.a)
        diag = d1 * d1 * diag_p + gp * d2
        hv = None if v is None else d1 * hvp_p(d1 * v) + gp * d2 * v
    else:  # softmax along the class axis: J = diag(a) - a a^T (symmetric)
        a, ax = m.a, m.ax

        def jac(u):
            return a * (u - xp.sum(a * u, axis=ax, keepdims=True))

        centred = gp - xp.sum(a * gp, axis=ax, keepdims=True)
        # sum_c g_c d2a_c/dz_i dz_j applied to u: d(J^T g)[u] = (Ju) (g - <a,g>) - a <Ju, g>;
        # its diagonal a (1 - 2a) (g - <a, g>)
        curv = a * (1.0 - 2.0 * a) * centred
        # diag(J H_p J)_c with column J e_c = a * (e_c - a_c): a block of H_p over the
        # classes of one position that is diagonal (per-class groups) contributes
        # a_c^2 (h_c (1 - 2 a_c) + sum_k a_k^2 h_k); a rank-K term within one group
        # (classes pooled) contributes sum_kl h_kl (J s_k')_c (J s_l')_c
        per_class = ax not in m.axes
        h = diag_p if per_class else dg
        diag = a * a * (h * (1.0 - 2.0 * a) + xp.sum(a * a * h, axis=ax, keepdims=True))
        if not per_class:
            js = [jac(ds[b]) for b in range(k)]
            diag = diag + sum(h_l[i][j] * js[i] * js[j] for i in range(k) for j in range(k))
        diag = diag + curv
        hv = None
        if v is not None:
            dp = jac(v)
            if keep is not None:
                dp = xp.where(keep, dp, xp.zeros_like(dp))
            hv = jac(hvp_p(dp)) + dp * centred - a * xp.sum(dp * gp, axis=ax, keepdims=True)
    if keep is not None:
        diag = xp.where(keep, diag, xp.zeros_like(diag))
        if hv is not None:
            hv = xp.where(keep, hv, xp.zeros_like(hv))
    return diag, hv


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

_WEIGHT_DOC = """\
class_weight : array of shape (C,), optional
    Non-negative weight :math:`w_c` per class (``mode="per_class"`` with a class axis
    only): the example's loss is :math:`\\frac{1}{C}\\sum_c w_c \\ell_c`, the class losses
    weighted and divided by C (not by :math:`\\sum_c w_c`), as MONAI's ``DiceLoss(weight=)``.
    The gradient of class :math:`c` is scaled by :math:`w_c`."""

_LOG_DOC = """\
log_loss : bool, default False
    Score each index :math:`R` by :math:`-\\log R` instead of :math:`1 - R` (smp's
    ``log_loss=True``): :math:`\\partial(-\\log R)/\\partial p_i = -R^{-1}\\,\\partial R/
    \\partial p_i`, steeper than :math:`1 - R` when the overlap is poor. :math:`R` is floored
    at :math:`10^{-7}` (smp's ``eps``) before the logarithm; below the floor the loss is
    :math:`-\\log 10^{-7} \\approx 16.1` with a zero gradient (reachable only with
    ``smooth=0``)."""

_CHAIN_DOC = """\
With ``from_logits="sigmoid"`` the gradient is
:math:`\\partial \\ell/\\partial z_i =
\\partial \\ell/\\partial p_i\\,\\sigma(z_i)\\sigma(-z_i)`; with ``"softmax"`` along the class
axis,
:math:`\\partial \\ell/\\partial z_c = p_c\\,(g_c - \\sum_k p_k g_k)`, :math:`g = \\partial
\\ell/\\partial p`. In ``"per_class"`` mode both value and gradient are divided by C.
The Hessian with respect to the logits is
:math:`J^\\top (\\nabla_p^2 \\ell) J + \\sum_c g_c \\nabla_z^2 p_c` (module notes); for the
sigmoid :math:`\\sigma'' = \\sigma'\\,(1 - 2\\sigma)`."""


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
    {weight_doc}
    {log_doc}
    {common_parameters}

    Notes
    -----
    For one index (an example, or an example and class), with :math:`q_i = p_i` or
    :math:`p_i^2` and :math:`r_i = t_i` or :math:`t_i^2` (``squared``):

    .. math::

        D = \frac{2\sum_i p_i t_i + s}{\sum_i q_i + \sum_i r_i + s}, \qquad \ell = 1 - D,
        \qquad
        \frac{\partial \ell}{\partial p_i} = \frac{D\,q_i' - 2 t_i}
            {\sum_j q_j + \sum_j r_j + s},

        \frac{\partial^2 \ell}{\partial p_i \partial p_j} = \frac{[i = j]\, D\, q_i''
            + d_i q_j' + q_i' d_j}{\sum_k q_k + \sum_k r_k + s}, \qquad
        d_i = \frac{\partial D}{\partial p_i}

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
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial p_i \partial p_j} = "
                       r"\frac{r_i + r_j}{\sum_k (p_k + t_k) + s},\ "
                       r"r_i = \frac{2 t_i - D}{\sum_k (p_k + t_k) + s}")
    second_order = "dense"
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
                 mode="per_class", axis=1, from_logits=False, ignore_index=None,
                 class_weight=None, log_loss=False):
        xp = ctx.xp
        s = _finite_non_negative("smooth", smooth)
        sq = _flag("squared", squared, self.name)
        focus = ("log",) if _flag("log_loss", log_loss, self.name) else None
        m = self._maps(ctx, prediction, target, mode=mode, axis=axis, from_logits=from_logits,
                       ignore_index=ignore_index)
        w = self._class_weight(ctx, class_weight, m, mode)
        p, t = m.p, m.t
        inter = m.total(xp, p * t)
        size = m.total(xp, p * p + t * t) if sq else m.total(xp, p + t)
        return self._terms(ctx, m, 2.0 * inter + s, size + s,
                           lambda: 2.0 * t,
                           (lambda: 2.0 * p) if sq else (lambda: xp.ones_like(p)),
                           need_grad, weight=w, focus=focus,
                           d2den=(lambda: xp.full_like(p, 2.0)) if sq else None)


class TverskyLoss(_OverlapLoss):
    r"""Tversky loss :math:`1 - (TP + s) / (TP + \alpha FP + \beta FN + s)`.

    The Dice loss with separate weights on false positives (:math:`\alpha`) and false
    negatives (:math:`\beta`): :math:`\beta > \alpha` trades precision for recall, which
    helps with small, rare structures. See the module notes for the layout and modes; the
    focal variant :math:`(1 - T)^\gamma` is ``focal_tversky_loss``.

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
    {weight_doc}
    {log_doc}
    {common_parameters}

    Notes
    -----
    For one index, with :math:`TP = \sum_i p_i t_i`:

    .. math::

        T = \frac{TP + s}{TP + \alpha FP + \beta FN + s}, \qquad \ell = 1 - T, \qquad
        \frac{\partial \ell}{\partial p_i} =
            \frac{T\,\bigl(t_i + \alpha (1 - t_i) - \beta t_i\bigr) - t_i}
                 {TP + \alpha FP + \beta FN + s},

        \frac{\partial^2 \ell}{\partial p_i \partial p_j} = \frac{d_i c_j + c_i d_j}
            {TP + \alpha FP + \beta FN + s}, \qquad c_i = t_i + \alpha (1 - t_i) - \beta
            t_i, \qquad d_i = \frac{\partial T}{\partial p_i}

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
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial p_i \partial p_j} = "
                       r"\frac{r_i c_j + c_i r_j}{TP + \alpha\,FP + \beta\,FN + s},\ "
                       r"c_i = t_i + \alpha(1 - t_i) - \beta t_i,\ "
                       r"r_i = \frac{t_i - T c_i}{TP + \alpha\,FP + \beta\,FN + s}")
    second_order = "dense"
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
                 smooth=1.0, mode="per_class", axis=1, from_logits=False, ignore_index=None,
                 class_weight=None, log_loss=False):
        focus = ("log",) if _flag("log_loss", log_loss, self.name) else None
        return self._tversky(ctx, prediction, target, need_grad, alpha, beta, smooth, mode,
                             axis, from_logits, ignore_index, class_weight, focus)

    def _tversky(self, ctx, prediction, target, need_grad, alpha, beta, smooth, mode, axis,
                 from_logits, ignore_index, class_weight, focus):
        xp = ctx.xp
        a = _finite_non_negative("alpha", alpha)
        b = _finite_non_negative("beta", beta)
        s = _finite_non_negative("smooth", smooth)
        m = self._maps(ctx, prediction, target, mode=mode, axis=axis, from_logits=from_logits,
                       ignore_index=ignore_index)
        w = self._class_weight(ctx, class_weight, m, mode)
        p, t = m.p, m.t
        pt = p * t
        tp = m.total(xp, pt)
        # one sum for TP + a FP + b FN = sum(pt + a (p - pt) + b (t - pt)), each term >= 0
        den = m.total(xp, pt + a * (p - pt) + b * (t - pt))
        return self._terms(ctx, m, tp + s, den + s,
                           lambda: t,
                           lambda: t + a * (1.0 - t) - b * t,
                           need_grad, weight=w, focus=focus)


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
    {weight_doc}
    {log_doc}
    {common_parameters}

    Notes
    -----
    For one index, with :math:`q_i = p_i` or :math:`p_i^2` and :math:`r_i = t_i` or
    :math:`t_i^2` (``squared``) and the union :math:`U = \sum_i (q_i + r_i - p_i t_i)`:

    .. math::

        J = \frac{\sum_i p_i t_i + s}{U + s}, \qquad \ell = 1 - J, \qquad
        \frac{\partial \ell}{\partial p_i} = \frac{J\,(q_i' - t_i) - t_i}{U + s},

        \frac{\partial^2 \ell}{\partial p_i \partial p_j} = \frac{[i = j]\, J q_i''
            + d_i (q_j' - t_j) + (q_i' - t_i) d_j}{U + s}, \qquad
            d_i = \frac{\partial J}{\partial p_i}

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
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial p_i \partial p_j} = "
                       r"\frac{r_i (1 - t_j) + (1 - t_i) r_j}{U + s},\ "
                       r"r_i = \frac{t_i - J (1 - t_i)}{U + s}")
    second_order = "dense"
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
                 mode="per_class", axis=1, from_logits=False, ignore_index=None,
                 class_weight=None, log_loss=False):
        xp = ctx.xp
        s = _finite_non_negative("smooth", smooth)
        sq = _flag("squared", squared, self.name)
        focus = ("log",) if _flag("log_loss", log_loss, self.name) else None
        m = self._maps(ctx, prediction, target, mode=mode, axis=axis, from_logits=from_logits,
                       ignore_index=ignore_index)
        w = self._class_weight(ctx, class_weight, m, mode)
        p, t = m.p, m.t
        pt = p * t
        inter = m.total(xp, pt)
        # the union summed from non-negative terms: p + t(1 - p) (or p^2 + t^2 - pt)
        union = m.total(xp, (p * p + t * t if sq else p + t) - pt)
        return self._terms(ctx, m, inter + s, union + s,
                           lambda: t,
                           (lambda: 2.0 * p - t) if sq else (lambda: 1.0 - t),
                           need_grad, weight=w, focus=focus,
                           d2den=(lambda: xp.full_like(p, 2.0)) if sq else None)


class FocalTverskyLoss(TverskyLoss):
    r"""Focal Tversky loss :math:`(1 - T)^\gamma` of the Tversky index :math:`T`.

    The Tversky loss of each class raised to the power :math:`\gamma` (Abraham and Khan):
    :math:`\gamma < 1` keeps the gradient large when the index is already good (it focuses
    on the hard, small structures whose index stays low for long), :math:`\gamma = 1` is
    ``tversky_loss``. See the module notes for the layout and modes.

    Parameters
    ----------
    {shared_doc}
    alpha : float >= 0, default 0.3
        Weight of the soft false positives :math:`FP = \sum p (1 - t)`.
    beta : float >= 0, default 0.7
        Weight of the soft false negatives :math:`FN = \sum (1 - p) t` (Abraham and Khan's
        setting favours recall: their "alpha = 0.7" is the weight of the false negatives).
    gamma : float > 0, default 0.75
        The exponent :math:`\gamma`. Abraham and Khan write the loss as
        :math:`(1 - T)^{1/\gamma'}` with :math:`\gamma' \in [1, 3]` and use
        :math:`\gamma' = 4/3`, which is the default ``gamma = 0.75`` here.
    smooth : float >= 0, default 1
        :math:`s`, added once to the numerator and once to the denominator.
    {weight_doc}
    {common_parameters}

    Notes
    -----
    For one index (an example, or an example and class) with the Tversky index
    :math:`T = (TP + s) / (TP + \alpha FP + \beta FN + s)`:

    .. math::

        \ell = (1 - T)^\gamma, \qquad
        \frac{\partial \ell}{\partial p_i} = \gamma (1 - T)^{\gamma - 1}\,
            \frac{T\,\bigl(t_i + \alpha (1 - t_i) - \beta t_i\bigr) - t_i}
                 {TP + \alpha FP + \beta FN + s},

        \frac{\partial^2 \ell}{\partial p_i \partial p_j} = \gamma (\gamma - 1)
            (1 - T)^{\gamma - 2} d_i d_j + \gamma (1 - T)^{\gamma - 1}
            \frac{d_i c_j + c_i d_j}{TP + \alpha FP + \beta FN + s}

    (:math:`c_i = t_i + \alpha (1 - t_i) - \beta t_i`, :math:`d_i = \partial T / \partial
    p_i`) and in ``"per_class"`` mode the example's loss is the mean of the C class losses
    (Abraham and Khan sum them; the mean keeps the loss in [0, 1]). Where :math:`T = 1`
    the gradient is defined as 0 (for :math:`\gamma < 1` the slope is unbounded there; it
    is the minimum), and so is the Hessian's first term unless :math:`\gamma = 2` (then
    its factor is 2; for :math:`\gamma < 2` it is unbounded there). segmentation_models_pytorch's ``TverskyLoss(gamma=)`` raises the mean
    over classes of the batch-pooled losses to the power instead: the same number with one
    class (or ``mode="global"``) after folding the batch (module notes).

    {chain_doc}

    References
    ----------
    .. [1] N. Abraham, N. M. Khan, "A Novel Focal Tversky loss function with improved
       Attention U-Net for lesion segmentation", ISBI 2019, arXiv:1810.07842.
    .. [2] S. S. M. Salehi, D. Erdogmus, A. Gholipour, "Tversky loss function for image
       segmentation using 3D fully convolutional deep networks", MLMI 2017,
       arXiv:1706.05721.

    Examples
    --------
    :math:`TP = 2`, :math:`FP = 1`, :math:`FN = 0`: :math:`1 - T = 0.3 / 2.3`, raised to
    the power 0.75:

    >>> import numpy as np, losskit as lk
    >>> p = np.array([[1.0, 1.0, 1.0, 0.0]]); t = np.array([[1.0, 1.0, 0.0, 0.0]])
    >>> v = lk.focal_tversky_loss(p, t, smooth=0.0, axis=None)
    >>> round(float(v), 6), round((0.3 / 2.3) ** 0.75, 6)
    (0.217043, 0.217043)
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "focal_tversky_loss"
    formula = (r"\ell = \Bigl(1 - \frac{TP + s}{TP + \alpha\,FP + \beta\,FN + s}"
               r"\Bigr)^{\gamma}")
    gradient_formula = (r"\frac{\partial \ell}{\partial p_i} = \gamma (1 - T)^{\gamma - 1}"
                        r"\frac{T\,(t_i + \alpha(1 - t_i) - \beta t_i) - t_i}"
                        r"{TP + \alpha\,FP + \beta\,FN + s}")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial p_i \partial p_j} = "
                       r"\gamma(\gamma - 1)(1 - T)^{\gamma - 2} r_i r_j + \gamma (1 - T)^"
                       r"{\gamma - 1} \frac{r_i c_j + c_i r_j}{TP + \alpha\,FP + \beta\,FN + s},"
                       r"\ c_i = t_i + \alpha(1 - t_i) - \beta t_i,\ r_i = \frac{t_i - T c_i}"
                       r"{TP + \alpha\,FP + \beta\,FN + s}")
    when_to_use = (
        "Segmentation of small lesions or thin structures with heavy class imbalance: the "
        "Tversky index with beta > alpha favours recall, and the focal exponent gamma < 1 "
        "keeps pushing on the classes whose overlap is already fair but not yet good, "
        "where the plain Tversky or Dice loss flattens out."
    )
    references = (
        "Abraham and Khan, A Novel Focal Tversky loss function with improved Attention "
        "U-Net for lesion segmentation, ISBI 2019, arXiv:1810.07842",
        "Salehi, Erdogmus, Gholipour, Tversky loss function for image segmentation, MLMI "
        "2017, arXiv:1706.05721",
    )

    def _compute(self, ctx, prediction, target, *, need_grad, alpha=0.3, beta=0.7,
                 gamma=0.75, smooth=1.0, mode="per_class", axis=1, from_logits=False,
                 ignore_index=None, class_weight=None):
        g = check_scalar("gamma", gamma, lo=0.0, hi=float("inf"), lo_open=True, hi_open=True)
        return self._tversky(ctx, prediction, target, need_grad, alpha, beta, smooth, mode,
                             axis, from_logits, ignore_index, class_weight, ("power", g))


WEIGHT_TYPES = ("square", "simple", "uniform")


class GeneralizedDiceLoss(_OverlapLoss):
    r"""Generalised Dice loss: one Dice index over the classes, each weighted by
    :math:`w_c = 1 / (\sum_i t_{ic})^2`.

    Sudre et al.'s loss for unbalanced segmentation: the class sums of intersection and
    size are weighted by the inverse square of the class's volume in the target before
    one ratio is formed, so a small class counts as much as a large one. One value per
    example. See the module notes for the layout.

    Parameters
    ----------
    {shared_doc}
    smooth : float >= 0, default 1e-5
        :math:`s`, added once to the numerator and once to the denominator (MONAI's
        default ``smooth_nr = smooth_dr = 1e-5``; the weighted sums are of the order of
        1 / volume, so a smoothing of 1 would swamp them).
    weight_type : {"square", "simple", "uniform"}, default "square"
        :math:`w_c = 1/V_c^2` (Sudre et al.), :math:`1/V_c` or 1, with :math:`V_c =
        \sum_i t_{ic}` the class's volume in the example's target (MONAI's ``w_type``).
    {common_parameters}

    Notes
    -----
    For one example, with the per-class sums :math:`I_c = \sum_i p_{ic} t_{ic}` and
    :math:`S_c = \sum_i (p_{ic} + t_{ic})`:

    .. math::

        G = \frac{2 \sum_c w_c I_c + s}{\sum_c w_c S_c + s}, \qquad \ell = 1 - G, \qquad
        \frac{\partial \ell}{\partial p_{ic}} = w_c\,\frac{G - 2 t_{ic}}
            {\sum_k w_k S_k + s},

        \frac{\partial^2 \ell}{\partial p_{ic} \partial p_{jk}} =
            \frac{d_{ic} w_k + w_c d_{jk}}{\sum_k w_k S_k + s}, \qquad
            d_{ic} = \frac{\partial G}{\partial p_{ic}}.

    The weights depend on the target only and are constants for the gradient. A class
    absent from an example's target (:math:`V_c = 0`, an infinite weight) takes the
    largest weight of the example's present classes, as MONAI does (MONAI's
    ``GeneralizedDiceLoss(batch=False)``: infinite weights are replaced by the row's
    maximum finite weight); if no class is present every weight is 0, and the loss is
    then 0 (:math:`G = s/s`, or the empty index 1 at :math:`s = 0`, with a zero
    gradient). Ignored positions (``ignore_index``) count in no sum and no volume.
    MONAI's ``GeneralizedDiceLoss(smooth_nr=s, smooth_dr=s, w_type=...)`` with
    ``reduction="mean"`` equals this loss with ``reduction="mean"``; its ``batch=True``
    is the folded batch (module notes).

    {chain_doc}

    References
    ----------
    .. [1] C. H. Sudre, W. Li, T. Vercauteren, S. Ourselin, M. J. Cardoso, "Generalised
       Dice overlap as a deep learning loss function for highly unbalanced
       segmentations", DLMIA 2017, arXiv:1707.03237.
    .. [2] W. R. Crum, O. Camara, D. L. G. Hill, "Generalized overlap measures for
       evaluation and validation in medical image analysis", IEEE TMI 25(11), 2006,
       doi:10.1109/TMI.2006.880587.

    Examples
    --------
    Class 0 covers 3 pixels (:math:`w_0 = 1/9`), class 1 one pixel (:math:`w_1 = 1`):
    :math:`I = (2, 1)`, :math:`S = (5, 3)`, so :math:`G = 2 (2/9 + 1) / (5/9 + 3) = 22/32`
    and the loss is :math:`10/32 = 0.3125`.

    >>> import numpy as np, losskit as lk
    >>> p = np.array([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]])
    >>> t = np.array([[[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    >>> float(lk.generalized_dice_loss(p, t, smooth=0.0))
    0.3125
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "generalized_dice_loss"
    aliases = ("generalized_dice",)
    prediction = "probabilities"
    formula = (r"\ell = 1 - \frac{2\sum_c w_c \sum_i p_{ic} t_{ic} + s}"
               r"{\sum_c w_c \sum_i (p_{ic} + t_{ic}) + s}, \quad "
               r"w_c = \Bigl(\sum_i t_{ic}\Bigr)^{-2}")
    gradient_formula = (r"\frac{\partial \ell}{\partial p_{ic}} = w_c\,\frac{G - 2 t_{ic}}"
                        r"{\sum_k w_k \sum_i (p_{ik} + t_{ik}) + s}")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial p_{ic} \partial p_{jk}} = "
                       r"\frac{r_{ic} w_k + w_c r_{jk}}{\sum_k w_k \sum_i (p_{ik} + t_{ik}) + s},"
                       r"\ r_{ic} = w_c \frac{2 t_{ic} - G}{\sum_k w_k \sum_i (p_{ik} + t_{ik})"
                       r" + s}")
    second_order = "dense"
    when_to_use = (
        "Multi-class segmentation with very unequal class volumes (tumour sub-regions, small "
        "organs next to large ones): the inverse-volume weights make every class count "
        "about equally in one overlap ratio, which trains more stably than averaging "
        "per-class Dice losses of tiny classes."
    )
    references = (
        "Sudre et al., Generalised Dice overlap as a deep learning loss function for highly "
        "unbalanced segmentations, DLMIA 2017, arXiv:1707.03237",
        "Crum, Camara, Hill, Generalized overlap measures for evaluation and validation in "
        "medical image analysis, IEEE TMI 2006, doi:10.1109/TMI.2006.880587",
    )

    def _compute(self, ctx, prediction, target, *, need_grad, smooth=1e-5,
                 weight_type="square", axis=1, from_logits=False, ignore_index=None):
        xp = ctx.xp
        s = _finite_non_negative("smooth", smooth)
        check_choice("weight_type", weight_type, WEIGHT_TYPES)
        m = self._maps(ctx, prediction, target, mode="per_class", axis=axis,
                       from_logits=from_logits, ignore_index=ignore_index)
        p, t = m.p, m.t
        volume = m.total(xp, t)  # per example and class
        present = volume > 0
        safe = xp.where(present, volume, xp.ones_like(volume))
        if weight_type == "square":
            w = 1.0 / (safe * safe)
        elif weight_type == "simple":
            w = 1.0 / safe
        else:
            w = xp.ones_like(volume)
        w = xp.where(present, w, xp.zeros_like(w))
        if m.ax is not None and m.z.shape[m.ax] > 0:  # absent classes: the largest weight
            w = xp.where(present, w, xp.max(w, axis=m.ax, keepdims=True))
        whole = tuple(range(1, m.z.ndim))
        inter = m.total(xp, p * t) * w
        size = m.total(xp, p + t) * w
        if whole:
            inter = xp.sum(inter, axis=whole, keepdims=True)
            size = xp.sum(size, axis=whole, keepdims=True)
        one = replace(m, groups=1, axes=whole)
        return self._terms(ctx, one, 2.0 * inter + s, size + s,
                           lambda: 2.0 * w * t,
                           lambda: w * xp.ones_like(p),
                           need_grad)


class MCCLoss(_OverlapLoss):
    r"""Matthews correlation loss :math:`1 - \mathrm{MCC}` of the soft confusion counts.

    The Matthews correlation coefficient of soft counts (Abhishek and Hamarneh): unlike the
    Dice and Jaccard indices it also rewards true negatives, so it penalises false
    positives on the background and stays informative when the foreground is tiny or
    absent. See the module notes for the layout and modes.

    Parameters
    ----------
    {shared_doc}
    eps : float >= 0, default 1e-5
        :math:`\epsilon`, added to each of the four counts (smp's ``MCCLoss(eps=)``). With
        :math:`\epsilon = 0` an index whose denominator is 0 (a constant target or a
        constant hard prediction) is defined as :math:`\mathrm{MCC} = 0` (scikit-learn's
        ``matthews_corrcoef`` convention): loss 1, gradient 0.
    {common_parameters}

    Notes
    -----
    For one index, with :math:`TP = \sum_i p_i t_i + \epsilon`,
    :math:`FP = \sum_i p_i (1 - t_i) + \epsilon`, :math:`FN = \sum_i (1 - p_i) t_i +
    \epsilon`, :math:`TN = \sum_i (1 - p_i)(1 - t_i) + \epsilon` and
    :math:`A = TP + FP`, :math:`B = TP + FN`, :math:`C = TN + FP`, :math:`D = TN + FN`:

    .. math::

        M = \frac{TP \cdot TN - FP \cdot FN}{\sqrt{A B C D}}, \qquad \ell = 1 - M,
        \qquad \frac{\partial \ell}{\partial p_i} = -\frac{t_i C - (1 - t_i) B}
            {\sqrt{ABCD}} + \frac{M}{2}\Bigl(\frac{1}{A} - \frac{1}{D}\Bigr)

    (:math:`B` and :math:`C` do not depend on :math:`p`; :math:`\partial A/\partial p_i =
    1`, :math:`\partial D/\partial p_i = -1`). :math:`M` is a function of the two sums
    :math:`x = \sum_i p_i t_i` and :math:`y = \sum_i p_i` (its numerator is linear in
    them), so the Hessian is of rank 2 within an index:

    .. math::

        \frac{\partial^2 \ell}{\partial p_i \partial p_j} = -M_{xy} (t_i + t_j) - M_{yy},
        \qquad M_{xy} = \frac{(A + D)\,\lambda}{\sqrt{ABCD}}, \qquad
        M_{yy} = -\frac{2 B \lambda}{\sqrt{ABCD}} + M \Bigl(\lambda^2 + \frac{1}{2A^2}
        + \frac{1}{2D^2}\Bigr)

    with :math:`\lambda = (1/D - 1/A)/2`. :math:`0 \le \ell \le 2`. On 0/1 maps with
    :math:`\epsilon = 0`, :math:`M` is scikit-learn's ``matthews_corrcoef``. Ignored
    positions (``ignore_index``) count in none of the four sums. smp's ``MCCLoss`` pools
    the whole batch into one binary index: ``mcc_loss(p.reshape(1, -1),
    t.reshape(1, -1), axis=None, reduction="sum")``.

    {chain_doc}

    References
    ----------
    .. [1] K. Abhishek, G. Hamarneh, "Matthews Correlation Coefficient Loss for Deep
       Convolutional Networks: Application to Skin Lesion Segmentation", ISBI 2021,
       arXiv:2010.13454.
    .. [2] B. W. Matthews, "Comparison of the predicted and observed secondary structure of
       T4 phage lysozyme", Biochimica et Biophysica Acta 405(2), 1975,
       doi:10.1016/0005-2795(75)90109-9.

    Examples
    --------
    :math:`TP = 1`, :math:`FP = 1`, :math:`FN = 0`, :math:`TN = 2`:
    :math:`M = 2 / \sqrt{2 \cdot 1 \cdot 3 \cdot 2} = 1/\sqrt{3}`.

    >>> import numpy as np, losskit as lk
    >>> p = np.array([[1.0, 1.0, 0.0, 0.0]]); t = np.array([[1.0, 0.0, 0.0, 0.0]])
    >>> round(float(lk.mcc_loss(p, t, eps=0.0, axis=None)), 6), round(1 - 3 ** -0.5, 6)
    (0.42265, 0.42265)
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "mcc_loss"
    prediction = "probabilities"
    formula = (r"\ell = 1 - \frac{TP \cdot TN - FP \cdot FN}"
               r"{\sqrt{(TP + FP)(TP + FN)(TN + FP)(TN + FN)}}")
    gradient_formula = (r"\frac{\partial \ell}{\partial p_i} = -\frac{t_i (TN + FP) - "
                        r"(1 - t_i)(TP + FN)}{\sqrt{(TP + FP)(TP + FN)(TN + FP)(TN + FN)}}"
                        r" + \frac{M}{2}\Bigl(\frac{1}{TP + FP} - \frac{1}{TN + FN}\Bigr)")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial p_i \partial p_j} = -\bigl(M_{xy}"
                       r" (t_i + t_j) + M_{yy}\bigr),\ M_{xy} = \frac{(A + D)\lambda}"
                       r"{\sqrt{ABCD}},\ M_{yy} = -\frac{2 B \lambda}{\sqrt{ABCD}} + M\Bigl("
                       r"\lambda^2 + \frac{1}{2 A^2} + \frac{1}{2 D^2}\Bigr),\ \lambda = "
                       r"\frac{1}{2}\Bigl(\frac{1}{D} - \frac{1}{A}\Bigr)")
    second_order = "dense"
    when_to_use = (
        "Binary segmentation (skin lesions, defects) where both false positives on the "
        "background and false negatives matter: the Matthews correlation uses all four "
        "confusion counts, so unlike Dice it penalises over-segmentation of a large "
        "background and remains meaningful for images with little or no foreground."
    )
    references = (
        "Abhishek and Hamarneh, Matthews Correlation Coefficient Loss for Deep "
        "Convolutional Networks, ISBI 2021, arXiv:2010.13454",
        "Matthews, Comparison of the predicted and observed secondary structure of T4 "
        "phage lysozyme, 1975, doi:10.1016/0005-2795(75)90109-9",
    )

    def _compute(self, ctx, prediction, target, *, need_grad, eps=1e-5, mode="per_class",
                 axis=1, from_logits=False, ignore_index=None):
        xp = ctx.xp
        e = _finite_non_negative("eps", eps)
        m = self._maps(ctx, prediction, target, mode=mode, axis=axis, from_logits=from_logits,
                       ignore_index=ignore_index)
        p, t = m.p, m.t
        pt = p * t
        u = (1.0 - p) * (1.0 - t)
        if m.keep is not None:
            u = xp.where(m.keep, u, xp.zeros_like(u))
        tp = m.total(xp, pt) + e
        fp = m.total(xp, p - pt) + e
        fn = m.total(xp, t - pt) + e
        tn = m.total(xp, u) + e
        a, b, c, d = tp + fp, tp + fn, tn + fp, tn + fn
        den = xp.sqrt(a * b * c * d)
        ok = den != 0

        def dden():
            sa = xp.where(ok, a, xp.ones_like(a))
            sd = xp.where(ok, d, xp.ones_like(d))
            return (0.5 * den) * (1.0 / sa - 1.0 / sd) * xp.ones_like(p)

        def curvature(index):
            # M = num(x, y) u(y) over the sums x = sum p t, y = sum p (B, C constant):
            # num = TP TN - FP FN is linear, d num/dx = A + D, d num/dy = -B, and
            # u = (ABCD)^(-1/2) with A = y + 2e, D = (kept count) - y + 2e has
            # u' = u lam, lam = -(1/A - 1/D)/2, u'' = u (lam^2 + lam'), lam' = (1/A^2 +
            # 1/D^2)/2. So M_x = (A + D) u, M_y = -B u + M lam, M_xx = 0,
            # M_xy = (A + D) u lam, M_yy = -2 B u lam + M (lam^2 + lam').
            one = xp.ones_like(den)
            u = 1.0 / xp.where(ok, den, one)
            ia = 1.0 / xp.where(ok, a, one)
            id_ = 1.0 / xp.where(ok, d, one)
            lam = -0.5 * (ia - id_)
            dlam = 0.5 * (ia * ia + id_ * id_)
            tot = (a + d) * u
            return ((t, xp.ones_like(p)), (None, None),
                    (tot, -b * u + index * lam),
                    ((None, tot * lam), (tot * lam, -2.0 * b * u * lam
                                         + index * (lam * lam + dlam))))

        return self._terms(ctx, m, tp * tn - fp * fn, den,
                           lambda: t * c - (1.0 - t) * b,
                           dden, need_grad, empty=0.0, curvature=curvature)


for _cls in (DiceLoss, TverskyLoss, JaccardLoss, FocalTverskyLoss, GeneralizedDiceLoss,
             MCCLoss):
    _cls.__doc__ = fill_doc(_cls.__doc__, shared_doc=_SHARED_DOC, chain_doc=_CHAIN_DOC,
                            weight_doc=_WEIGHT_DOC, log_doc=_LOG_DOC)

dice_loss = register(DiceLoss())
tversky_loss = register(TverskyLoss())
jaccard_loss = register(JaccardLoss())
focal_tversky_loss = register(FocalTverskyLoss())
generalized_dice_loss = generalized_dice = register(GeneralizedDiceLoss())
mcc_loss = register(MCCLoss())

# fused NumPy kernels (losskit.kernels.overlap), consulted by the pipeline
# (class weights and the log loss take the generic path)
register_fast_path(DiceLoss, unless_set(_overlap_kernels.dice_loss, "class_weight", "log_loss"))
register_fast_path(TverskyLoss, unless_set(_overlap_kernels.tversky_loss, "class_weight",
                                           "log_loss"))
register_fast_path(JaccardLoss, unless_set(_overlap_kernels.jaccard_loss, "class_weight",
                                           "log_loss"))
register_fast_path(FocalTverskyLoss, unless_set(_overlap_kernels.focal_tversky_loss,
                                                "class_weight"))
register_fast_path(GeneralizedDiceLoss, _overlap_kernels.generalized_dice_loss)
register_fast_path(MCCLoss, _overlap_kernels.mcc_loss)
