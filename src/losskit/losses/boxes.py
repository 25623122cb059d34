r"""Bounding-box regression losses of the IoU family, each with its exact gradient.

Boxes are ``(x1, y1, x2, y2)`` on the last axis of arrays of shape ``(..., 4)``; the
prediction and the target have the same shape and the loss of each box pair has shape
``(...)``. The gradient is taken with respect to the predicted box only.

Every loss is assembled from the same few pieces, each with its local derivative, and
the chain rule is applied by hand (no autodiff, no finite differences). For the predicted
box :math:`b = (x_1, y_1, x_2, y_2)` and the target :math:`b^g`, with
:math:`[\cdot]` the indicator and ties (equal coordinates) shared half and half, as
PyTorch's ``maximum``/``minimum`` do:

* size :math:`w = x_2 - x_1`, :math:`h = y_2 - y_1`, area :math:`A = wh`, so
  :math:`\partial A/\partial(x_1, y_1, x_2, y_2) = (-h, -w, h, w)`;
* intersection :math:`I = i_w i_h` when :math:`i_w = \min(x_2, x_2^g) - \max(x_1, x_1^g)`
  and :math:`i_h` are both positive, else 0 (torchvision's rule):
  :math:`\partial I/\partial x_1 = -i_h [x_1 > x_1^g]`,
  :math:`\partial I/\partial x_2 = i_h [x_2 < x_2^g]`, and likewise in :math:`y`. Where
  a side of the overlap is exactly 0 (touching edges, a flat box) the gradient of
  :math:`I` is 0, as torchvision's masked assignment gives (a kink: 0 lies between the
  one-sided slopes; implementations that ``clamp(min=0)`` each side take the slope toward
  overlap instead; the values agree);
* union :math:`U = A + A^g - I` and :math:`\mathrm{IoU} = I / (U + \varepsilon)`:
  :math:`\partial\mathrm{IoU} = (\partial I - \mathrm{IoU}\,\partial U) / (U + \varepsilon)`;
* enclosing box :math:`c_w = \max(x_2, x_2^g) - \min(x_1, x_1^g)`:
  :math:`\partial c_w/\partial x_1 = -[x_1 < x_1^g]`, :math:`\partial c_w/\partial x_2 =
  [x_2 > x_2^g]` (and :math:`c_h` in :math:`y`), its area :math:`C = c_w c_h` and squared
  diagonal :math:`c^2 = c_w^2 + c_h^2 + \varepsilon`;
* centre offset :math:`d_x = \tfrac12 (x_1 + x_2 - x_1^g - x_2^g)`, :math:`d_y` likewise,
  :math:`\rho^2 = d_x^2 + d_y^2`, so :math:`\partial\rho^2/\partial x_1 = \partial\rho^2/
  \partial x_2 = d_x` and :math:`\partial\rho^2/\partial y_{1,2} = d_y`;
* aspect term :math:`v = \frac{4}{\pi^2}(\operatorname{atan2}(w^g, h^g) -
  \operatorname{atan2}(w, h))^2` with :math:`\partial \operatorname{atan2}(w, h) =
  (h\,\partial w - w\,\partial h)/(w^2 + h^2)`.

**Degenerate boxes** (zero width or height) are allowed and defined by torchvision's
convention: :math:`\varepsilon = 10^{-7}` (the ``eps=`` option) is added to every
denominator that can vanish, the union :math:`U + \varepsilon`, the enclosing area
:math:`C + \varepsilon` and diagonal :math:`c^2 + \varepsilon` (and, for the losses
torchvision lacks, :math:`c_w^2 + \varepsilon`, :math:`c_h^2 + \varepsilon` and
:math:`\max(w, w^g) + \varepsilon`). The aspect angle uses ``atan2``, so a point box
(:math:`w = h = 0`) has angle 0 instead of torchvision's NaN; the gradient of the angle is
0 there. ``eps=0`` gives the papers' exact formulas, undefined (NaN) where a denominator
vanishes. A box with :math:`x_2 < x_1` or :math:`y_2 < y_1` is an error (checked when the
values can be read: not under ``jax.jit`` or on Dask). A NaN coordinate makes the loss of
its box pair and the gradient of the whole predicted box NaN.

**Tiny and huge boxes.** Each pair of boxes is computed divided by a power of two
:math:`s` near the larger side of its enclosing box (exact), with every
:math:`\varepsilon` scaled by its dimension (an area's by :math:`1/s^2`, a length's by
:math:`1/s`, a pure number's not at all), and the gradient multiplied back by
:math:`1/s`. This rounds exactly as the unscaled formulas wherever those stay in range,
and keeps them in range elsewhere: the losses and gradients are exact (to the precision
of the dtype) for coordinates from far below :math:`\sqrt{\varepsilon}` up to where
the areas overflow the dtype, e.g. float32 boxes at :math:`10^{15}` or
:math:`10^{-25}`. (With :math:`\varepsilon > 0`, :math:`s` is kept where
:math:`\varepsilon/s^2` stays a normal number of at most :math:`2^{e_{max}/2}`.) Terms
that are ratios of two sides, CIoU's :math:`1/(w^2 + h^2)` and SIoU's angle, are
formed from the sides divided by the larger one, so that no side is squared twice.

**Stopped gradients.** Where a paper or its reference code stops the gradient of a term
(written :math:`x^*`), losskit's ``.grad`` does the same by default: the CIoU trade-off
:math:`\alpha` (torchvision computes it under ``no_grad``), the Focal-EIoU weight
:math:`\mathrm{IoU}^\gamma`, and the Wise-IoU enclosing-box size and focusing coefficient.
The value is unchanged; ``stop_gradient=False`` gives the exact derivative of the value
instead. Sample weights, reductions and ``"batchmean"`` work as for every losskit loss
(the batch is the first axis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..core.loss import Loss, Terms, register
from ..core.validation import (check_integer, check_numeric, check_same_shape, check_scalar,
                               defer_invalid)
from ..core.arrays import can_inspect, to_numpy
from ..core.dispatch import register_fast_path
from ..kernels.boxes import EPS as _EPS, FOUR_OVER_PI2 as _FOUR_OVER_PI2, box_fast_path, \
    exponent_range

__all__ = [
    "iou_loss",
    "giou_loss",
    "generalized_box_iou_loss",
    "diou_loss",
    "distance_box_iou_loss",
    "ciou_loss",
    "complete_box_iou_loss",
    "eiou_loss",
    "focal_eiou_loss",
    "siou_loss",
    "wiou_loss",
    "mpdiou_loss",
    "inner_iou_loss",
]

# _EPS (1e-7, torchvision's default) and _FOUR_OVER_PI2 come from losskit.kernels.boxes

_ZERO4 = (0.0, 0.0, 0.0, 0.0)
_DW = (-1.0, 0.0, 1.0, 0.0)  # d w / d (x1, y1, x2, y2)
_DH = (0.0, -1.0, 0.0, 1.0)
_DDX = (0.5, 0.0, 0.5, 0.0)  # d (centre offset in x) / d (x1, y1, x2, y2)
_DDY = (0.0, 0.5, 0.0, 0.5)


# --------------------------------------------------------------------------- pieces
@dataclass
class _Box:
    """The four coordinates of a set of boxes as separate arrays of shape ``(...)``."""

    x1: Any
    y1: Any
    x2: Any
    y2: Any

    @property
    def w(self):
        return self.x2 - self.x1

    @property
    def h(self):
        return self.y2 - self.y1


def _lin(*terms):
    """``sum_k c_k * g_k`` for gradient 4-tuples ``g_k`` and coefficients ``c_k``."""
    out = [0.0, 0.0, 0.0, 0.0]
    for c, g in terms:
        for i in range(4):
            out[i] = out[i] + c * g[i]
    return tuple(out)


def _wmax(xp, a, b):
    """d max(a, b) / d a: 1 above, 0 below, 1/2 at a tie (PyTorch's convention)."""
    one = xp.ones_like(a)
    return xp.where(a > b, one, xp.where(a == b, 0.5 * one, xp.zeros_like(a)))


def _wmin(xp, a, b):
    """d min(a, b) / d a."""
    return _wmax(xp, b, a)


def _safe_div(xp, num, den):
    """num / den where den != 0, else 0, without evaluating 0/0 (double where)."""
    ok = den != 0
    return xp.where(ok, num / xp.where(ok, den, xp.ones_like(den)), xp.zeros_like(num))


def _intersection(xp, p, t):
    """Intersection area I of boxes p, t and dI/dp (torchvision: 0 unless both sides > 0)."""
    iw = xp.minimum(p.x2, t.x2) - xp.maximum(p.x1, t.x1)
    ih = xp.minimum(p.y2, t.y2) - xp.maximum(p.y1, t.y1)
    overlap = (iw > 0) & (ih > 0)
    zero = xp.zeros_like(iw)
    iw = xp.where(overlap, iw, zero)
    ih = xp.where(overlap, ih, zero)
    grad = (-ih * _wmax(xp, p.x1, t.x1), -iw * _wmax(xp, p.y1, t.y1),
            ih * _wmin(xp, p.x2, t.x2), iw * _wmin(xp, p.y2, t.y2))
    return iw * ih, grad


def _iou(xp, p, t, eps):
    """IoU = I / (U + eps) with its gradient, and the union U with its gradient."""
    inter, d_inter = _intersection(xp, p, t)
    w, h = p.w, p.h
    union = w * h + t.w * t.h - inter
    d_union = _lin((1.0, (-h, -w, h, w)), (-1.0, d_inter))
    den = union + eps
    iou = inter / den
    d_iou = _lin((1.0 / den, d_inter), (-iou / den, d_union))
    return iou, d_iou, union, d_union


def _enclosing(xp, p, t):
    """Width and height of the smallest enclosing box, with their gradients."""
    cw = xp.maximum(p.x2, t.x2) - xp.minimum(p.x1, t.x1)
    ch = xp.maximum(p.y2, t.y2) - xp.minimum(p.y1, t.y1)
    d_cw = (-_wmin(xp, p.x1, t.x1), 0.0, _wmax(xp, p.x2, t.x2), 0.0)
    d_ch = (0.0, -_wmin(xp, p.y1, t.y1), 0.0, _wmax(xp, p.y2, t.y2))
    return cw, d_cw, ch, d_ch


def _centre_offset(p, t):
    """Offsets of the predicted centre from the target's centre (d_x, d_y)."""
    return (p.x1 + p.x2 - t.x1 - t.x2) * 0.5, (p.y1 + p.y2 - t.y1 - t.y2) * 0.5


def _diagonal(cw, d_cw, ch, d_ch, eps):
    """c^2 = c_w^2 + c_h^2 + eps and its gradient."""
    return cw * cw + ch * ch + eps, _lin((2.0 * cw, d_cw), (2.0 * ch, d_ch))


def _distance_term(xp, p, t, eps, *, stop_diagonal=False):
    """rho^2 / c^2 (DIoU's penalty) and its gradient (c^2 held constant if asked)."""
    dx, dy = _centre_offset(p, t)
    rho2 = dx * dx + dy * dy
    cw, d_cw, ch, d_ch = _enclosing(xp, p, t)
    c2, d_c2 = _diagonal(cw, d_cw, ch, d_ch, eps)
    term = rho2 / c2
    d_term = _lin((1.0 / c2, (dx, dy, dx, dy)))
    if not stop_diagonal:
        d_term = _lin((1.0, d_term), (-term / c2, d_c2))
    return term, d_term


def _unit(xp, a, b):
    """(a / n, b / n, n) with n = max(|a|, |b|); (0, 0, 0) where both are 0."""
    n = xp.maximum(xp.abs(a), xp.abs(b))
    return _safe_div(xp, a, n), _safe_div(xp, b, n), n


def _aspect(xp, p, t):
    """CIoU's aspect-ratio term v and its gradient.

    d atan2(w, h) = (h dw - w dh) / (w^2 + h^2) is formed as (h/n, -w/n) / (q n) with
    n = max(w, h) and q = (w/n)^2 + (h/n)^2 in [1, 2]: no side is squared, so tiny or huge
    boxes neither underflow nor overflow (0 for a point box)."""
    w, h = p.w, p.h
    diff = xp.atan2(t.w, t.h) - xp.atan2(w, h)
    v = _FOUR_OVER_PI2 * diff * diff
    a, b, n = _unit(xp, w, h)
    coef = _safe_div(xp, 2.0 * _FOUR_OVER_PI2 * diff, (a * a + b * b) * n)
    dv_dw, dv_dh = -coef * b, coef * a  # d v / d w, d v / d h
    return v, (-dv_dw, -dv_dh, dv_dw, dv_dh)


def _side_term(size, d_size, size_g, csize, d_csize, eps):
    """(s - s_g)^2 / (c_s^2 + eps): EIoU's width or height penalty, with its gradient."""
    den = csize * csize + eps
    diff = size - size_g
    term = diff * diff / den
    return term, _lin((2.0 * diff / den, d_size), (-term * 2.0 * csize / den, d_csize))


def _inner_box(p, ratio):
    """The auxiliary box of Inner-IoU: same centre, sides scaled by ``ratio``."""
    a, b = 0.5 * (1.0 + ratio), 0.5 * (1.0 - ratio)
    return _Box(a * p.x1 + b * p.x2, a * p.y1 + b * p.y2,
                b * p.x1 + a * p.x2, b * p.y1 + a * p.y2)


def _inner_iou(xp, p, t, ratio, eps):
    """IoU of the auxiliary boxes and its gradient with respect to the original box."""
    iou, (g1, h1, g2, h2), _, _ = _iou(xp, _inner_box(p, ratio), _inner_box(t, ratio), eps)
    a, b = 0.5 * (1.0 + ratio), 0.5 * (1.0 - ratio)
    # inner corners are linear in the corners: u1 = a x1 + b x2, u2 = b x1 + a x2
    return iou, (a * g1 + b * g2, a * h1 + b * h2, b * g1 + a * g2, b * h1 + a * h2)


# --------------------------------------------------------------------------- scaling
@dataclass
class _Pairs:
    """Box pairs rescaled for the computation (see :func:`_rescale`)."""

    p: _Box           # predicted boxes / s
    t: _Box           # target boxes / s
    nan: Any          # pairs with a NaN coordinate
    eps: float        # eps where it is a pure number (CIoU's alpha)
    area_eps: Any     # eps / s^2: eps added to an area (U, C, c^2, c_w^2, ...)
    len_eps: Any      # eps / s: eps added to a length (SIoU's max(w, w^g))
    inv_scale: Any    # 1 / s: d loss / d b = (d loss / d (b / s)) / s
    orig_p: _Box      # the boxes as given (for MPDIoU's image-size term)
    orig_t: _Box


def _exponent_range(xp, work, eps):
    """The exponents k allowed for the scale s = 2^k of a pair (shared with the fused
    kernel: :func:`losskit.kernels.boxes.exponent_range`, which says why)."""
    return exponent_range(int(xp.finfo(work).bits), eps)


def _rescale(xp, work, p, t, eps):
    """Each pair of boxes divided by a power of two s near its enclosing box's larger side.

    The losses are functions of differences of coordinates, homogeneous in them once
    every eps is scaled with its dimension (an area's eps by 1/s^2, a length's by 1/s, a
    pure number's not at all), and multiplying by a power of two is exact: the scaled
    computation rounds exactly as the unscaled one wherever that one stays in range, and
    stays in range (no side squared to 0 or to inf, no fourth power of the coordinates)
    wherever it did not. An axis along which all four coordinates are equal is moved to 0
    (exact: only their differences count), so that such flat pairs far from the origin
    cannot overflow when divided by a small scale."""
    cw = xp.maximum(p.x2, t.x2) - xp.minimum(p.x1, t.x1)
    ch = xp.maximum(p.y2, t.y2) - xp.minimum(p.y1, t.y1)
    m = xp.maximum(cw, ch)
    one = xp.ones_like(m)
    ok = (m > 0) & (m <= float(xp.finfo(work).max))  # not 0, inf or NaN: there s = 1
    k = xp.floor(xp.log2(xp.where(ok, m, one)))
    lo, hi = _exponent_range(xp, work, eps)
    k = xp.where(k < lo, xp.full_like(k, lo), xp.where(k > hi, xp.full_like(k, hi), k))
    inv = 2.0 ** (-k)
    zero = xp.zeros_like(m)
    flat_x, flat_y = cw == 0, ch == 0

    def scale(b):
        return _Box(xp.where(flat_x, zero, b.x1) * inv, xp.where(flat_y, zero, b.y1) * inv,
                    xp.where(flat_x, zero, b.x2) * inv, xp.where(flat_y, zero, b.y2) * inv)

    return scale(p), scale(t), eps * inv * inv, eps * inv, inv


# --------------------------------------------------------------------------- validation
def _check_eps(eps) -> float:
    return check_scalar("eps", eps, lo=0.0)


def _check_ratio(name: str, ratio) -> float:
    r = check_scalar(name, ratio, lo=0.0, lo_open=True)
    if math.isinf(r):
        raise ValueError(f"`{name}` must be finite; got {ratio!r}")
    return r


def _check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False; got {value!r}")
    return value


def _check_ordered(xp, name: str, box: _Box, loss: str) -> None:
    """x2 >= x1 and y2 >= y1 for every box (NaN passes); unreadable values: NaN result."""
    if not can_inspect(box.x1):
        defer_invalid((box.x2 < box.x1) | (box.y2 < box.y1))
        return
    for lo, hi, lo_n, hi_n in ((box.x1, box.x2, "x1", "x2"), (box.y1, box.y2, "y1", "y2")):
        bad = hi < lo
        if bool(xp.any(bad)):
            import numpy as np

            bad_np = np.asarray(to_numpy(bad))
            count = int(bad_np.sum())
            first = tuple(int(i) for i in np.argwhere(bad_np)[0])
            lo_v = float(np.asarray(to_numpy(lo))[first])
            hi_v = float(np.asarray(to_numpy(hi))[first])
            where = f"the first at index {first}: " if first else ""
            raise ValueError(
                f"`{name}` of {loss} must hold boxes (x1, y1, x2, y2) with {lo_n} <= {hi_n}; "
                f"{count} box{'es' if count != 1 else ''} {'have' if count != 1 else 'has'} "
                f"{hi_n} < {lo_n} ({where}{lo_n}={lo_v:g}, {hi_n}={hi_v:g}). Convert "
                "(x, y, w, h) or (cx, cy, w, h) boxes to corners first")


# --------------------------------------------------------------------------- base class
class _BoxLoss(Loss):
    """Shared plumbing: validation, unpacking, NaN rows and the ``(..., 4)`` gradient."""

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    family = "boxes"
    prediction = "boxes"
    target = "boxes (x1, y1, x2, y2), same shape"

    def _boxes(self, ctx, prediction, target, eps):
        xp = ctx.xp
        if prediction.ndim == 0 or prediction.shape[-1] != 4:
            raise ValueError(
                f"`prediction` of {self.name} must have shape (..., 4), boxes (x1, y1, x2, "
                f"y2) on the last axis; got {tuple(prediction.shape)}")
        t = ctx.asarray(target, "target")
        check_numeric(xp, "target", t)
        check_same_shape("prediction", prediction.shape, "target", t.shape,
                         hint="one target box per predicted box")
        if t.dtype != ctx.work:
            t = xp.astype(t, ctx.work)
        p = _Box(*(prediction[..., i] for i in range(4)))
        g = _Box(*(t[..., i] for i in range(4)))
        _check_ordered(xp, "prediction", p, self.name)
        _check_ordered(xp, "target", g, self.name)
        nan = xp.any(xp.isnan(prediction) | xp.isnan(t), axis=-1)
        eps = _check_eps(eps)
        ps, gs, area_eps, len_eps, inv = _rescale(xp, ctx.work, p, g, eps)
        return _Pairs(ps, gs, nan, eps, area_eps, len_eps, inv, p, g)

    @staticmethod
    def _terms(ctx, like, b, value, grad, need_grad, extra=None) -> Terms:
        """The loss terms; ``grad`` is in the rescaled coordinates, ``extra`` (a gradient
        in the original ones) is added after scaling it back."""
        xp = ctx.xp
        nan_value = xp.full_like(value, float("nan"))
        value = xp.where(b.nan, nan_value, value)
        nan = b.nan
        g = None
        if need_grad:
            zero = xp.zeros_like(value)
            grad = [gi * b.inv_scale + zero for gi in grad]  # floats become arrays
            if extra is not None:
                grad = [gi + ei for gi, ei in zip(grad, extra)]
            g = xp.stack(grad, axis=-1)
            g = xp.where(xp.expand_dims(nan, axis=-1), xp.full_like(g, float("nan")), g)
            if g.dtype != like.dtype:
                g = xp.astype(g, like.dtype)
        return Terms(value, g, expand=lambda a: xp.expand_dims(a, axis=-1))

    @staticmethod
    def _with_inner(xp, p, t, inner_ratio, eps, iou, d_iou, value, grad):
        """Inner-IoU rule: L_inner = L + IoU - IoU_inner (the penalty terms unchanged)."""
        if inner_ratio is None:
            return value, grad
        r = _check_ratio("inner_ratio", inner_ratio)
        iou_in, d_in = _inner_iou(xp, p, t, r, eps)
        return value + iou - iou_in, _lin((1.0, grad), (1.0, d_iou), (-1.0, d_in))


_COMMON = """\
prediction : floating array of shape (..., 4)
        Predicted boxes :math:`(x_1, y_1, x_2, y_2)` with :math:`x_1 \\le x_2`,
        :math:`y_1 \\le y_2`.
    target : array of the same shape
        Target boxes in the same format.
    eps : float, default 1e-7
        Added to the denominators that can vanish for degenerate boxes (torchvision's
        convention; see the module notes). ``eps=0`` gives the exact formula."""

_INNER = """\
inner_ratio : float, optional
        If given, the Inner-IoU variant (Zhang, Xu and Zhang 2023, arXiv:2311.02877): the
        :math:`1 - \\mathrm{IoU}` term uses the IoU of auxiliary boxes with the same
        centres and sides scaled by ``inner_ratio`` (``L + IoU - IoU_inner``); the penalty
        terms are unchanged."""


def _doc(cls):
    cls.__doc__ = cls.__doc__.replace("{boxes}", _COMMON).replace("{inner_option}", _INNER)
    return cls


# --------------------------------------------------------------------------- losses
@_doc
class IoULoss(_BoxLoss):
    r"""IoU loss :math:`\ell = 1 - \mathrm{IoU}(b, b^g)`.

    Parameters
    ----------
    {boxes}
    {common_parameters}

    Returns
    -------
    array
        Shape ``(...)`` with ``reduction="none"``, else 0-d. In :math:`[0, 1]`.

    Notes
    -----
    .. math::

        \ell = 1 - \frac{I}{U + \varepsilon}, \qquad
        \frac{\partial \ell}{\partial b} = -\frac{\partial I - \mathrm{IoU}\,
            (\partial A - \partial I)}{U + \varepsilon}

    with :math:`I`, :math:`U`, :math:`A` and their derivatives as in the module notes.
    The gradient is 0 for boxes that do not overlap: IoU cannot tell a near miss from a
    far one (GIoU, DIoU and the others add a penalty that can).

    References
    ----------
    .. [1] J. Yu, Y. Jiang, Z. Wang, Z. Cao, T. Huang, "UnitBox: An Advanced Object
       Detection Network", ACM MM 2016, arXiv:1608.01471 (the IoU loss, there
       :math:`-\ln \mathrm{IoU}`; :math:`1 - \mathrm{IoU}` as in [2]).
    .. [2] H. Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019,
       arXiv:1902.09630, Algorithm 2 (IoU and GIoU as losses).

    Examples
    --------
    Two 2x2 boxes overlapping in a unit square: intersection 1, union 7. Moving
    :math:`x_2` right adds 1 (the overlap's height) to :math:`I` and 2 - 1 to :math:`U`,
    so :math:`\partial\ell/\partial x_2 = -(1 - \tfrac17)/7 = -6/49`.

    >>> import numpy as np, losskit as lk
    >>> b = np.array([0., 0., 2., 2.]); g = np.array([1., 1., 3., 3.])
    >>> float(lk.iou_loss(b, g))    # 1 - 1/7
    0.8571
    >>> lk.iou_loss.grad(b, g)      # -(2, 2, 6, 6) / 49
    array([-0.0408, -0.0408, -0.1224, -0.1224])
    """

    name = "iou_loss"
    formula = r"\ell = 1 - \frac{|b \cap b^g|}{|b \cup b^g| + \varepsilon}"
    gradient_formula = (r"\frac{\partial \ell}{\partial b} = -\frac{\partial I - \mathrm{IoU}\,"
                        r"\partial U}{U + \varepsilon},\ U = A + A^g - I")
    when_to_use = (
        "Bounding-box regression where the evaluation metric is IoU: the loss is scale "
        "invariant and treats the four coordinates jointly. Its gradient vanishes when the "
        "boxes do not overlap, so use GIoU/DIoU/CIoU when predictions can start far from "
        "the target (early training, anchor-free heads)."
    )
    references = ("Yu et al., UnitBox, ACM MM 2016, arXiv:1608.01471",
                  "Rezatofighi et al., Generalized IoU, CVPR 2019, arXiv:1902.09630")

    def _compute(self, ctx, prediction, target, *, need_grad, eps=_EPS):
        xp = ctx.xp
        b = self._boxes(ctx, prediction, target, eps)
        p, t, eps = b.p, b.t, b.area_eps  # rescaled; eps of an area
        iou, d_iou, _, _ = _iou(xp, p, t, eps)
        return self._terms(ctx, prediction, b, 1.0 - iou, _lin((-1.0, d_iou)), need_grad)


@_doc
class GIoULoss(_BoxLoss):
    r"""Generalized IoU loss :math:`\ell = 1 - \mathrm{IoU} + (C - U)/C` (Rezatofighi et al.).

    Parameters
    ----------
    {boxes}
    {inner_option}
    {common_parameters}

    Returns
    -------
    array
        Shape ``(...)`` with ``reduction="none"``, else 0-d. In :math:`[0, 2)`.

    Notes
    -----
    With :math:`C = c_w c_h` the area of the smallest enclosing box:

    .. math::

        \ell = 1 - \frac{I}{U + \varepsilon} + \frac{C - U}{C + \varepsilon}, \qquad
        \frac{\partial \ell}{\partial b} = -\partial\mathrm{IoU}
            + \frac{\partial C - \partial U}{C + \varepsilon}
            - \frac{C - U}{(C + \varepsilon)^2}\,\partial C,
        \quad \partial C = c_h\,\partial c_w + c_w\,\partial c_h

    Exactly torchvision's ``generalized_box_iou_loss`` (same :math:`\varepsilon` placement);
    the paper's loss is :math:`\mathcal{L}_{GIoU} = 1 - GIoU` of its Algorithm 2. Disjoint
    boxes give :math:`\ell > 1` and a gradient that pulls them together.

    References
    ----------
    .. [1] H. Rezatofighi, N. Tsoi, J. Gwak, A. Sadeghian, I. Reid, S. Savarese,
       "Generalized Intersection over Union: A Metric and A Loss for Bounding Box
       Regression", CVPR 2019, arXiv:1902.09630, Algorithms 1 and 2.
    .. [2] H. Zhang, C. Xu, S. Zhang, "Inner-IoU: More Effective Intersection over Union
       Loss with Auxiliary Bounding Box", arXiv:2311.02877, 2023 (``inner_ratio``).

    Examples
    --------
    Disjoint boxes: IoU 0, union 2, enclosing box 3 x 1.5 (area 4.5). Moving
    :math:`x_1` right shrinks the enclosing box, so its derivative is positive.

    >>> import numpy as np, losskit as lk
    >>> b = np.array([0., 0., 1., 1.]); g = np.array([2., 0.5, 3., 1.5])
    >>> float(lk.giou_loss(b, g))    # 1 - 0 + (4.5 - 2) / 4.5
    1.5556
    >>> lk.giou_loss.grad(b, g)      # (dC - dU) / C - (C - U) dC / C^2, dC = (-1.5, -3, 0, 0)
    array([ 0.0741, -0.0741, -0.2222, -0.2222])
    """

    name = "giou_loss"
    aliases = ("generalized_box_iou_loss",)
    formula = r"\ell = 1 - \mathrm{IoU} + \frac{C - U}{C + \varepsilon}"
    gradient_formula = (r"\frac{\partial \ell}{\partial b} = -\partial\mathrm{IoU} + "
                        r"\frac{\partial C - \partial U}{C + \varepsilon} - "
                        r"\frac{(C - U)\,\partial C}{(C + \varepsilon)^2}")
    when_to_use = (
        "Box regression when predictions may not overlap their targets: the enclosing-box "
        "penalty keeps a gradient for disjoint boxes, where plain IoU has none. The loss of "
        "DETR-style detectors (with L1). Converges more slowly than DIoU/CIoU when one box "
        "contains the other, since the penalty is then 0."
    )
    references = ("Rezatofighi et al., Generalized IoU, CVPR 2019, arXiv:1902.09630",)

    def _compute(self, ctx, prediction, target, *, need_grad, eps=_EPS, inner_ratio=None):
        xp = ctx.xp
        b = self._boxes(ctx, prediction, target, eps)
        p, t, eps = b.p, b.t, b.area_eps  # rescaled; eps of an area
        iou, d_iou, union, d_union = _iou(xp, p, t, eps)
        cw, d_cw, ch, d_ch = _enclosing(xp, p, t)
        area_c = cw * ch
        d_c = _lin((ch, d_cw), (cw, d_ch))
        den = area_c + eps
        pen = (area_c - union) / den
        d_pen = _lin((1.0 / den, d_c), (-1.0 / den, d_union), (-pen / den, d_c))
        value = 1.0 - iou + pen
        grad = _lin((-1.0, d_iou), (1.0, d_pen))
        value, grad = self._with_inner(xp, p, t, inner_ratio, eps, iou, d_iou, value, grad)
        return self._terms(ctx, prediction, b, value, grad, need_grad)


@_doc
class DIoULoss(_BoxLoss):
    r"""Distance IoU loss :math:`\ell = 1 - \mathrm{IoU} + \rho^2/c^2` (Zheng et al.).

    Parameters
    ----------
    {boxes}
    {inner_option}
    {common_parameters}

    Returns
    -------
    array
        Shape ``(...)`` with ``reduction="none"``, else 0-d. In :math:`[0, 2)`.

    Notes
    -----
    With :math:`\rho` the distance between the box centres and :math:`c^2 = c_w^2 + c_h^2 +
    \varepsilon` the squared diagonal of the smallest enclosing box:

    .. math::

        \ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2}, \qquad
        \frac{\partial \ell}{\partial b} = -\partial\mathrm{IoU}
            + \frac{\partial\rho^2}{c^2} - \frac{\rho^2}{c^4}\,\partial c^2

    with :math:`\partial\rho^2 = (d_x, d_y, d_x, d_y)` and :math:`\partial c^2 = 2 c_w
    \partial c_w + 2 c_h \partial c_h`. Exactly torchvision's ``distance_box_iou_loss``.

    References
    ----------
    .. [1] Z. Zheng, P. Wang, W. Liu, J. Li, R. Ye, D. Ren, "Distance-IoU Loss: Faster and
       Better Learning for Bounding Box Regression", AAAI 2020, arXiv:1911.08287, section
       "Distance-IoU Loss" (the penalty :math:`\rho^2(b, b^{gt})/c^2`).
    .. [2] H. Zhang, C. Xu, S. Zhang, "Inner-IoU", arXiv:2311.02877, 2023 (``inner_ratio``).

    Examples
    --------
    Same 2x2 box moved by (1, 1) from (0, 0, 2, 2): IoU 1/7, centre distance^2 2,
    enclosing diagonal^2 18.

    >>> import numpy as np, losskit as lk
    >>> b = np.array([1., 1., 3., 3.]); g = np.array([0., 0., 2., 2.])
    >>> float(lk.diou_loss(b, g))    # 1 - 1/7 + 2/18
    0.9683
    """

    name = "diou_loss"
    aliases = ("distance_box_iou_loss",)
    formula = r"\ell = 1 - \mathrm{IoU} + \frac{\rho^2(b, b^g)}{c^2}"
    gradient_formula = (r"\frac{\partial \ell}{\partial b} = -\partial\mathrm{IoU} + "
                        r"\frac{\partial\rho^2}{c^2} - \frac{\rho^2}{c^4}\partial c^2")
    when_to_use = (
        "Box regression that should converge fast: the normalised centre-distance penalty "
        "pulls the centres together directly, also when one box contains the other (where "
        "GIoU's penalty vanishes). A good default among the IoU losses when aspect ratios "
        "need no special care."
    )
    references = ("Zheng et al., Distance-IoU Loss, AAAI 2020, arXiv:1911.08287",)

    def _compute(self, ctx, prediction, target, *, need_grad, eps=_EPS, inner_ratio=None):
        xp = ctx.xp
        b = self._boxes(ctx, prediction, target, eps)
        p, t, eps = b.p, b.t, b.area_eps  # rescaled; eps of an area
        iou, d_iou, _, _ = _iou(xp, p, t, eps)
        dist, d_dist = _distance_term(xp, p, t, eps)
        value = 1.0 - iou + dist
        grad = _lin((-1.0, d_iou), (1.0, d_dist))
        value, grad = self._with_inner(xp, p, t, inner_ratio, eps, iou, d_iou, value, grad)
        return self._terms(ctx, prediction, b, value, grad, need_grad)


@_doc
class CIoULoss(_BoxLoss):
    r"""Complete IoU loss :math:`\ell = 1 - \mathrm{IoU} + \rho^2/c^2 + \alpha v` (Zheng et al.).

    Parameters
    ----------
    {boxes}
    {inner_option}
    stop_gradient : bool, default True
        Treat the trade-off :math:`\alpha` as a constant in the gradient, as the paper's
        analysis and torchvision (``torch.no_grad()``) do. ``False`` differentiates
        :math:`\alpha` too (the exact derivative of the value). The value is the same.
    {common_parameters}

    Returns
    -------
    array
        Shape ``(...)`` with ``reduction="none"``, else 0-d.

    Notes
    -----
    .. math::

        \ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2} + \alpha v, \quad
        v = \frac{4}{\pi^2}\Bigl(\operatorname{atan2}(w^g, h^g) - \operatorname{atan2}(w, h)
            \Bigr)^2, \quad
        \alpha^* = \frac{v}{1 - \mathrm{IoU} + v + \varepsilon}

    .. math::

        \frac{\partial \ell}{\partial b} = \partial\ell_{DIoU} + \alpha\,\partial v,
        \qquad \frac{\partial v}{\partial w} = -\frac{8}{\pi^2}\,\Delta\theta\,
            \frac{h}{w^2 + h^2}, \quad
        \frac{\partial v}{\partial h} = \frac{8}{\pi^2}\,\Delta\theta\,\frac{w}{w^2 + h^2}

    (:math:`\Delta\theta` the difference of the two angles,
    :math:`\partial w = (-1, 0, 1, 0)`, :math:`\partial h = (0, -1, 0, 1)`); with
    ``stop_gradient=False`` the term :math:`v\,\partial\alpha`,
    :math:`\partial\alpha = ((1 - \mathrm{IoU} + \varepsilon)\,\partial v +
    v\,\partial\mathrm{IoU}) / (1 - \mathrm{IoU} + v + \varepsilon)^2`, is added.

    The value is torchvision's ``complete_box_iou_loss`` (same :math:`\varepsilon`
    placement), and so is the default gradient. The paper replaces the factor
    :math:`1/(w^2 + h^2)` by 1 in its hand-written backward pass for stability when
    :math:`w, h \in [0, 1]`; losskit, like torchvision's autograd, uses the exact factor.
    ``atan2`` makes a point box (:math:`w = h = 0`) well defined (angle 0, and a zero
    gradient of the angle) where ``atan(w/h)`` gives NaN.

    References
    ----------
    .. [1] Z. Zheng, P. Wang, W. Liu, J. Li, R. Ye, D. Ren, "Distance-IoU Loss: Faster and
       Better Learning for Bounding Box Regression", AAAI 2020, arXiv:1911.08287, section
       "Complete IoU Loss" (:math:`v`, the trade-off :math:`\alpha` and the gradient of
       :math:`v` with its :math:`1/(w^2 + h^2)` factor).
    .. [2] H. Zhang, C. Xu, S. Zhang, "Inner-IoU", arXiv:2311.02877, 2023 (``inner_ratio``).

    Examples
    --------
    Same centre and area ratio, different shape: a 4x1 box against a 2x2 one.

    >>> import numpy as np, losskit as lk
    >>> b = np.array([-2., -0.5, 2., 0.5]); g = np.array([-1., -1., 1., 1.])
    >>> iou = 2 / 6; v = 4 / np.pi**2 * (np.arctan(1) - np.arctan(4))**2
    >>> float(lk.ciou_loss(b, g)), float(1 - iou + v**2 / (1 - iou + v))
    (0.6845, 0.6845)
    """

    name = "ciou_loss"
    aliases = ("complete_box_iou_loss",)
    formula = (r"\ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2} + \alpha^* v,\ "
               r"v = \tfrac{4}{\pi^2}(\operatorname{atan}\tfrac{w^g}{h^g} - "
               r"\operatorname{atan}\tfrac{w}{h})^2,\ \alpha = \frac{v}{1 - \mathrm{IoU} + v}")
    gradient_formula = (r"\frac{\partial \ell}{\partial b} = -\partial\mathrm{IoU} + "
                        r"\partial\frac{\rho^2}{c^2} + \alpha\,\partial v,\ "
                        r"\partial v = \tfrac{8}{\pi^2}\Delta\theta\,"
                        r"\frac{w\,\partial h - h\,\partial w}{w^2 + h^2}"
                        r"\ (\alpha^*\text{ held constant})")
    when_to_use = (
        "Box regression where the shape matters as well as position and overlap (the "
        "default box loss of the YOLOv4-v8 family): DIoU plus a penalty on the difference "
        "of aspect ratios, weighted more as the overlap grows. The aspect term says nothing "
        "about the absolute width and height (EIoU penalises those directly)."
    )
    references = ("Zheng et al., Distance-IoU Loss, AAAI 2020, arXiv:1911.08287",)

    def _compute(self, ctx, prediction, target, *, need_grad, eps=_EPS, inner_ratio=None,
                 stop_gradient=True):
        xp = ctx.xp
        stop = _check_flag("stop_gradient", stop_gradient)
        b = self._boxes(ctx, prediction, target, eps)
        p, t, eps = b.p, b.t, b.area_eps  # rescaled; eps of an area
        iou, d_iou, _, _ = _iou(xp, p, t, eps)
        dist, d_dist = _distance_term(xp, p, t, eps)
        v, d_v = _aspect(xp, p, t)
        den = 1.0 - iou + v + b.eps  # alpha's eps is a pure number: not rescaled
        alpha = _safe_div(xp, v, den)
        value = 1.0 - iou + dist + alpha * v
        grad = _lin((-1.0, d_iou), (1.0, d_dist), (alpha, d_v))
        if not stop:
            d_alpha = _lin((_safe_div(xp, 1.0 - iou + b.eps, den * den), d_v),
                           (_safe_div(xp, v, den * den), d_iou))
            grad = _lin((1.0, grad), (v, d_alpha))
        value, grad = self._with_inner(xp, p, t, inner_ratio, eps, iou, d_iou, value, grad)
        return self._terms(ctx, prediction, b, value, grad, need_grad)


def _eiou_parts(xp, p, t, eps):
    """EIoU value and gradient, and the IoU with its gradient."""
    iou, d_iou, _, _ = _iou(xp, p, t, eps)
    dist, d_dist = _distance_term(xp, p, t, eps)
    cw, d_cw, ch, d_ch = _enclosing(xp, p, t)
    wt, d_wt = _side_term(p.w, _DW, t.w, cw, d_cw, eps)
    ht, d_ht = _side_term(p.h, _DH, t.h, ch, d_ch, eps)
    value = 1.0 - iou + dist + wt + ht
    grad = _lin((-1.0, d_iou), (1.0, d_dist), (1.0, d_wt), (1.0, d_ht))
    return value, grad, iou, d_iou


@_doc
class EIoULoss(_BoxLoss):
    r"""Efficient IoU loss: IoU, centre distance, and width and height differences.

    Parameters
    ----------
    {boxes}
    {inner_option}
    {common_parameters}

    Returns
    -------
    array
        Shape ``(...)`` with ``reduction="none"``, else 0-d.

    Notes
    -----
    With :math:`c_w, c_h` the width and height of the smallest enclosing box:

    .. math::

        \ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2} + \frac{(w - w^g)^2}{c_w^2 + \varepsilon}
            + \frac{(h - h^g)^2}{c_h^2 + \varepsilon}

    .. math::

        \frac{\partial \ell}{\partial b} = \partial\ell_{DIoU}
            + \frac{2 (w - w^g)\,\partial w}{c_w^2 + \varepsilon}
            - \frac{2 (w - w^g)^2 c_w\,\partial c_w}{(c_w^2 + \varepsilon)^2}
            + (\text{the same in } h)

    This is :math:`\mathcal{L}_{EIOU} = \mathcal{L}_{IOU} + \mathcal{L}_{dis} +
    \mathcal{L}_{asp}` of the paper; :math:`\varepsilon` is placed as in the
    DIoU term (torchvision's convention) and in the widely used YOLO implementations.

    References
    ----------
    .. [1] Y.-F. Zhang, W. Ren, Z. Zhang, Z. Jia, L. Wang, T. Tan, "Focal and Efficient IOU
       Loss for Accurate Bounding Box Regression", Neurocomputing 506, 2022,
       arXiv:2101.08158 (the EIOU loss).
    .. [2] H. Zhang, C. Xu, S. Zhang, "Inner-IoU", arXiv:2311.02877, 2023 (``inner_ratio``).

    Examples
    --------
    A 2x2 box against a 4x2 box with the same centre: IoU 1/2, width penalty 2^2 / 4^2.

    >>> import numpy as np, losskit as lk
    >>> b = np.array([-1., -1., 1., 1.]); g = np.array([-2., -1., 2., 1.])
    >>> float(lk.eiou_loss(b, g))    # 1 - 1/2 + 0 + 4/16 + 0
    0.75
    """

    name = "eiou_loss"
    formula = (r"\ell = 1 - \mathrm{IoU} + \frac{\rho^2}{c^2} + \frac{(w - w^g)^2}{c_w^2} + "
               r"\frac{(h - h^g)^2}{c_h^2}")
    gradient_formula = (r"\frac{\partial \ell}{\partial b} = \partial\ell_{DIoU} + "
                        r"\frac{2 (w - w^g)\partial w}{c_w^2} - "
                        r"\frac{2 (w - w^g)^2 c_w \partial c_w}{c_w^4} + (h)")
    when_to_use = (
        "Box regression that should fit width and height directly rather than only their "
        "ratio (CIoU's aspect term has no gradient toward the right size once the ratio "
        "matches): faster convergence and tighter boxes in the paper's experiments. Combine "
        "with focal weighting (focal_eiou_loss) to favour high-overlap anchors."
    )
    references = ("Zhang et al., Focal and Efficient IOU Loss, Neurocomputing 2022, "
                  "arXiv:2101.08158",)

    def _compute(self, ctx, prediction, target, *, need_grad, eps=_EPS, inner_ratio=None):
        xp = ctx.xp
        b = self._boxes(ctx, prediction, target, eps)
        p, t, eps = b.p, b.t, b.area_eps  # rescaled; eps of an area
        value, grad, iou, d_iou = _eiou_parts(xp, p, t, eps)
        value, grad = self._with_inner(xp, p, t, inner_ratio, eps, iou, d_iou, value, grad)
        return self._terms(ctx, prediction, b, value, grad, need_grad)


@_doc
class FocalEIoULoss(_BoxLoss):
    r"""Focal-EIoU loss :math:`\ell = \mathrm{IoU}^{\gamma *}\,\ell_{EIoU}` (Zhang et al.).

    Parameters
    ----------
    {boxes}
    gamma : float, default 0.5
        Focusing exponent :math:`\gamma \ge 0` (the paper's choice is 0.5; 0 gives EIoU).
    stop_gradient : bool, default True
        Treat the weight :math:`\mathrm{IoU}^\gamma` as a constant in the gradient, as the
        widely used implementations do (``iou ** gamma`` is ``.detach()``-ed before it
        multiplies the loss): it re-weights each box's EIoU gradient. ``False``
        differentiates the weight too. The value is the same.
    {common_parameters}

    Returns
    -------
    array
        Shape ``(...)`` with ``reduction="none"``, else 0-d.

    Notes
    -----
    .. math::

        \ell = \mathrm{IoU}^\gamma\,\ell_{EIoU}, \qquad
        \frac{\partial \ell}{\partial b} = \mathrm{IoU}^\gamma\,\partial\ell_{EIoU}
            \;\Bigl[+\;\gamma\,\mathrm{IoU}^{\gamma - 1}\,\ell_{EIoU}\,\partial\mathrm{IoU}
            \text{ if not stopped}\Bigr]

    The paper defines :math:`\mathcal{L}_{Focal\text{-}EIOU} = \mathrm{IOU}^\gamma
    \mathcal{L}_{EIOU}` without saying whether the weight is differentiated;
    the authors link no code, and the implementations in use (the YOLOv5/v7 forks the
    Wise-IoU paper compares with) detach it, which is losskit's default. Where
    :math:`\mathrm{IoU} = 0` the extra term is 0 (then :math:`\partial\mathrm{IoU} = 0`).
    Boxes that do not overlap get no loss and no gradient: pair it with another loss, or
    use it where the assigner guarantees overlap.

    References
    ----------
    .. [1] Y.-F. Zhang, W. Ren, Z. Zhang, Z. Jia, L. Wang, T. Tan, "Focal and Efficient IOU
       Loss for Accurate Bounding Box Regression", Neurocomputing 506, 2022,
       arXiv:2101.08158 (the Focal-EIOU loss).

    Examples
    --------
    The EIoU example (IoU 1/2, EIoU 0.75) weighted by sqrt(1/2):

    >>> import numpy as np, losskit as lk
    >>> b = np.array([-1., -1., 1., 1.]); g = np.array([-2., -1., 2., 1.])
    >>> float(lk.focal_eiou_loss(b, g))    # 0.75 * 0.5 ** 0.5
    0.5303
    """

    name = "focal_eiou_loss"
    formula = r"\ell = \mathrm{IoU}^{\gamma}\,\ell_{EIoU}"
    gradient_formula = (r"\frac{\partial \ell}{\partial b} = \mathrm{IoU}^{\gamma}\,"
                        r"\partial\ell_{EIoU}\ (\mathrm{IoU}^\gamma\text{ detached})")
    when_to_use = (
        "EIoU regression that should concentrate on anchors that already overlap well "
        "(the paper's effective example mining): low-IoU boxes, often outliers or poor "
        "anchors, are down-weighted by IoU^gamma. Not a loss for boxes that do not overlap "
        "at all (weight 0)."
    )
    references = ("Zhang et al., Focal and Efficient IOU Loss, Neurocomputing 2022, "
                  "arXiv:2101.08158",)

    def _compute(self, ctx, prediction, target, *, need_grad, gamma=0.5, eps=_EPS,
                 stop_gradient=True):
        xp = ctx.xp
        gam = check_scalar("gamma", gamma, lo=0.0)
        if math.isinf(gam):
            raise ValueError(f"`gamma` must be finite; got {gamma!r}")
        stop = _check_flag("stop_gradient", stop_gradient)
        b = self._boxes(ctx, prediction, target, eps)
        p, t, eps = b.p, b.t, b.area_eps  # rescaled; eps of an area
        eiou, d_eiou, iou, d_iou = _eiou_parts(xp, p, t, eps)
        weight = iou ** gam
        value = weight * eiou
        grad = _lin((weight, d_eiou))
        if not stop and gam != 0.0:
            dweight = gam * _safe_div(xp, weight, iou)  # gamma IoU^(gamma-1), 0 at IoU = 0
            grad = _lin((1.0, grad), (dweight * eiou, d_iou))
        return self._terms(ctx, prediction, b, value, grad, need_grad)


@_doc
class SIoULoss(_BoxLoss):
    r"""SCYLLA-IoU loss: IoU with angle-aware distance and shape costs (Gevorgyan).

    Parameters
    ----------
    {boxes}
    theta : float, default 4
        Exponent :math:`\theta \ge 1` of the shape cost (the paper uses 2 to 6, and 4).
    {inner_option}
    {common_parameters}

    Returns
    -------
    array
        Shape ``(...)`` with ``reduction="none"``, else 0-d.

    Notes
    -----
    With the centre offset :math:`(d_x, d_y)`, :math:`\sigma^2 = d_x^2 + d_y^2` and the
    enclosing box :math:`c_w \times c_h`:

    .. math::

        \Lambda = 1 - 2\sin^2\Bigl(\arcsin\frac{|d_y|}{\sigma} - \frac{\pi}{4}\Bigr)
            = \frac{2 |d_x| |d_y|}{\sigma^2}, \qquad
        \Delta = \sum_{t = x, y} \bigl(1 - e^{-(2 - \Lambda)\rho_t}\bigr), \quad
        \rho_x = \frac{d_x^2}{c_w^2 + \varepsilon}, \ \rho_y = \frac{d_y^2}{c_h^2 + \varepsilon}

    .. math::

        \Omega = \sum_{t = w, h} (1 - e^{-\omega_t})^\theta, \quad
        \omega_w = \frac{|w - w^g|}{\max(w, w^g) + \varepsilon}, \qquad
        \ell = 1 - \mathrm{IoU} + \frac{\Delta + \Omega}{2}

    Gradient, with :math:`\gamma = 2 - \Lambda`:

    .. math::

        \partial\Delta = \sum_t \gamma e^{-\gamma\rho_t}\,\partial\rho_t
            - \Bigl(\sum_t \rho_t e^{-\gamma\rho_t}\Bigr)\partial\Lambda, \quad
        \frac{\partial\Lambda}{\partial d_x} = \operatorname{sign}(d_x)
            \frac{2 |d_y| (d_y^2 - d_x^2)}{\sigma^4}, \quad
        \partial\Omega = \sum_t \theta (1 - e^{-\omega_t})^{\theta - 1} e^{-\omega_t}\,
            \partial\omega_t

    The closed form :math:`\Lambda = \sin 2\alpha` of the paper's angle cost is symmetric
    in :math:`\alpha` and :math:`\beta = \pi/2 - \alpha`, so the paper's switch between the
    two angles at :math:`\pi/4` needs no branch. At coincident centres
    (:math:`\sigma = 0`) the angle is undefined; :math:`\Lambda = 0` is used there, which
    changes nothing: :math:`\Delta = 0` and its gradient vanish at that point whatever
    :math:`\Lambda` is. :math:`\rho_t` uses the enclosing box, as the reference
    implementations (the Wise-IoU authors' code, YOLOv6, mmyolo) do.

    References
    ----------
    .. [1] Z. Gevorgyan, "SIoU Loss: More Powerful Learning for Bounding Box Regression",
       arXiv:2205.12740, 2022, "Methods" (angle cost, distance cost, shape cost, IoU cost
       and :math:`L_{box} = 1 - IoU + (\Delta + \Omega)/2`).
    .. [2] H. Zhang, C. Xu, S. Zhang, "Inner-IoU", arXiv:2311.02877, 2023 (``inner_ratio``).

    Examples
    --------
    Identical sizes, centres offset along one axis only: the angle cost is 0, so
    :math:`\gamma = 2` and :math:`\Delta = 1 - e^{-2 \cdot 1/9}` (offset 1, enclosing width 3).

    >>> import numpy as np, losskit as lk
    >>> b = np.array([1., 0., 3., 2.]); g = np.array([0., 0., 2., 2.])
    >>> float(lk.siou_loss(b, g)), float(1 - 1/3 + (1 - np.exp(-2/9)) / 2)
    (0.7663, 0.7663)
    """

    name = "siou_loss"
    formula = (r"\ell = 1 - \mathrm{IoU} + \tfrac12\Bigl(\sum_{t=x,y}(1 - e^{-(2 - \Lambda)"
               r"\rho_t}) + \sum_{t=w,h}(1 - e^{-\omega_t})^\theta\Bigr),\ "
               r"\Lambda = \frac{2|d_x||d_y|}{d_x^2 + d_y^2}")
    gradient_formula = (r"\frac{\partial \ell}{\partial b} = -\partial\mathrm{IoU} + "
                        r"\tfrac12\Bigl(\sum_t \gamma e^{-\gamma\rho_t}\partial\rho_t - "
                        r"\sum_t \rho_t e^{-\gamma\rho_t}\partial\Lambda + \sum_t \theta "
                        r"(1 - e^{-\omega_t})^{\theta-1} e^{-\omega_t}\partial\omega_t\Bigr)")
    when_to_use = (
        "Box regression that takes the direction of the mismatch into account: the angle "
        "cost first drives the centre onto the nearer axis of the target, then the distance "
        "cost finishes along it, which the paper reports trains faster and more accurately "
        "than CIoU (YOLOv6 uses it for small models)."
    )
    references = ("Gevorgyan, SIoU Loss, arXiv:2205.12740, 2022",)

    def _compute(self, ctx, prediction, target, *, need_grad, theta=4.0, eps=_EPS,
                 inner_ratio=None):
        xp = ctx.xp
        th = check_scalar("theta", theta, lo=1.0)
        if math.isinf(th):
            raise ValueError(f"`theta` must be finite; got {theta!r}")
        b = self._boxes(ctx, prediction, target, eps)
        p, t, eps = b.p, b.t, b.area_eps  # rescaled; eps of an area
        iou, d_iou, _, _ = _iou(xp, p, t, eps)
        cw, d_cw, ch, d_ch = _enclosing(xp, p, t)
        dx, dy = _centre_offset(p, t)
        # distance ratios rho_x = dx^2 / (cw^2 + eps), rho_y likewise
        sx, sy = cw * cw + eps, ch * ch + eps
        rx, ry = dx * dx / sx, dy * dy / sy
        d_rx = _lin((2.0 * dx / sx, _DDX), (-rx * 2.0 * cw / sx, d_cw))
        d_ry = _lin((2.0 * dy / sy, _DDY), (-ry * 2.0 * ch / sy, d_ch))
        # angle cost Lambda = 2 |dx| |dy| / sigma^2 (0 at coincident centres), formed from
        # u = |dx| / n, v = |dy| / n, n = max(|dx|, |dy|), q = u^2 + v^2 = sigma^2 / n^2:
        # Lambda = 2 u v / q, n dLambda/d|dx| = 2 v (v^2 - u^2) / q^2 (and in y), and
        # its coefficient (rho_x e_x + rho_y e_y) / n = |dx| u e_x / s_x + |dy| v e_y / s_y;
        # no offset is squared twice, so nothing underflows or overflows
        ax, ay = xp.abs(dx), xp.abs(dy)
        u, v, _ = _unit(xp, ax, ay)
        q = u * u + v * v
        lam = _safe_div(xp, 2.0 * u * v, q)
        inv_q2 = _safe_div(xp, xp.ones_like(q), q * q)
        n_dlam_dx = xp.sign(dx) * 2.0 * v * (v * v - u * u) * inv_q2
        n_dlam_dy = xp.sign(dy) * 2.0 * u * (u * u - v * v) * inv_q2
        n_d_lam = _lin((n_dlam_dx, _DDX), (n_dlam_dy, _DDY))
        gam = 2.0 - lam
        ex, ey = xp.exp(-gam * rx), xp.exp(-gam * ry)
        k_lam = ax * u * ex / sx + ay * v * ey / sy  # (rho_x e_x + rho_y e_y) / n
        dist = 2.0 - ex - ey
        d_dist = _lin((gam * ex, d_rx), (gam * ey, d_ry), (-k_lam, n_d_lam))
        # shape cost
        shape, d_shape = 0.0, _ZERO4
        for size, d_size, size_g in ((p.w, _DW, t.w), (p.h, _DH, t.h)):
            big = xp.maximum(size, size_g) + b.len_eps  # eps of a length
            diff = size - size_g
            om = xp.abs(diff) / big
            d_om = _lin((xp.sign(diff) / big - om * _wmax(xp, size, size_g) / big, d_size))
            e = xp.exp(-om)
            one_minus = -xp.expm1(-om)  # 1 - e^-omega, exact also for omega << 1
            shape = shape + one_minus ** th
            d_shape = _lin((1.0, d_shape), (th * one_minus ** (th - 1.0) * e, d_om))
        value = 1.0 - iou + 0.5 * (dist + shape)
        grad = _lin((-1.0, d_iou), (0.5, d_dist), (0.5, d_shape))
        value, grad = self._with_inner(xp, p, t, inner_ratio, eps, iou, d_iou, value, grad)
        return self._terms(ctx, prediction, b, value, grad, need_grad)


@_doc
class WIoULoss(_BoxLoss):
    r"""Wise-IoU loss: IoU loss scaled by a distance attention (v1) and focusing (v2, v3).

    Parameters
    ----------
    {boxes}
    version : {1, 2, 3}, default 1
        1: :math:`\mathcal{L}_{v1} = \mathcal{R}_{WIoU}\,\mathcal{L}_{IoU}`;
        2: monotonic focusing :math:`(\mathcal{L}_{IoU}^* / \overline{\mathcal{L}}_{IoU})^\gamma
        \mathcal{L}_{v1}`; 3: non-monotonic focusing :math:`r\,\mathcal{L}_{v1}` with
        :math:`r = \beta / (\delta\,\alpha^{\beta - \delta})`,
        :math:`\beta = \mathcal{L}_{IoU}^* / \overline{\mathcal{L}}_{IoU}`.
    iou_mean : float, optional
        :math:`\overline{\mathcal{L}}_{IoU} > 0`, the running mean of :math:`1 - \mathrm{IoU}`
        that the caller keeps (the paper: an exponential moving average with momentum
        :math:`m`, updated once per batch). Required for versions 2 and 3; the loss keeps no
        state.
    gamma : float, default 0.5
        Exponent of version 2 (the authors' code uses 0.5).
    alpha, delta : float, default 1.9 and 3
        Parameters of version 3 (the paper's choice for YOLOv7).
    stop_gradient : bool, default True
        Follow the paper: the enclosing-box size :math:`W_g, H_g` (and in versions 2 and
        3 the outlier degree :math:`\beta`) are detached, written :math:`^*`. ``False``
        differentiates them (the exact derivative of the value). The value is the same.
    {common_parameters}

    Returns
    -------
    array
        Shape ``(...)`` with ``reduction="none"``, else 0-d.

    Notes
    -----
    .. math::

        \mathcal{R}_{WIoU} = \exp\Bigl(\frac{\rho^2}{(W_g^2 + H_g^2 + \varepsilon)^*}\Bigr),
        \qquad \mathcal{L}_{v1} = \mathcal{R}_{WIoU}\,(1 - \mathrm{IoU}), \qquad
        \ell = r^*\,\mathcal{L}_{v1}

    .. math::

        \frac{\partial \ell}{\partial b} = r\,\mathcal{R}_{WIoU}\Bigl(
            \frac{\partial\rho^2}{W_g^2 + H_g^2 + \varepsilon}\,(1 - \mathrm{IoU})
            - \partial\mathrm{IoU}\Bigr)

    (:math:`r = 1` for version 1). With ``stop_gradient=False``,
    :math:`-\rho^2\,\partial c^2 / c^4` joins :math:`\partial\rho^2 / c^2` and
    :math:`\mathcal{L}_{v1}\,\partial r` is added, with :math:`\partial\beta =
    -\partial\mathrm{IoU} / \overline{\mathcal{L}}_{IoU}`. Since the centres lie inside
    the enclosing box, :math:`\mathcal{R}_{WIoU} \in [1, e)`. The definitions follow the
    paper (sec. III: v1, v2, v3) and its authors' code (github.com/Instinct323/wiou),
    with :math:`\varepsilon` added to the enclosing diagonal as in DIoU.

    References
    ----------
    .. [1] Z. Tong, Y. Chen, Z. Xu, R. Yu, "Wise-IoU: Bounding Box Regression Loss with
       Dynamic Focusing Mechanism", arXiv:2301.10051, 2023, sec. III.

    Examples
    --------
    The DIoU example (IoU 1/7, centre distance^2 2, enclosing diagonal^2 18):

    >>> import numpy as np, losskit as lk
    >>> b = np.array([1., 1., 3., 3.]); g = np.array([0., 0., 2., 2.])
    >>> float(lk.wiou_loss(b, g)), float(np.exp(2 / 18) * (1 - 1 / 7))
    (0.9579, 0.9579)
    """

    name = "wiou_loss"
    formula = (r"\ell = r^*\exp\Bigl(\frac{\rho^2}{(W_g^2 + H_g^2)^*}\Bigr)(1 - \mathrm{IoU})")
    gradient_formula = (r"\frac{\partial \ell}{\partial b} = r\,\mathcal{R}_{WIoU}\Bigl("
                        r"\frac{(1 - \mathrm{IoU})\,\partial\rho^2}{W_g^2 + H_g^2} - "
                        r"\partial\mathrm{IoU}\Bigr)")
    when_to_use = (
        "Box regression on data with low-quality (noisy or ambiguous) boxes: version 1 "
        "amplifies the IoU loss of ordinary anchors by their centre distance without "
        "penalising geometry further; versions 2 and 3 re-weight each box by its loss "
        "relative to a running mean, and 3 also damps outliers (the paper's best on "
        "YOLOv7). The caller maintains the running mean."
    )
    references = ("Tong et al., Wise-IoU, arXiv:2301.10051, 2023",)

    def _compute(self, ctx, prediction, target, *, need_grad, version=1, iou_mean=None,
                 gamma=0.5, alpha=1.9, delta=3.0, eps=_EPS, stop_gradient=True):
        xp = ctx.xp
        version = check_integer("version", version, loss="wiou_loss")
        if version not in (1, 2, 3):
            raise ValueError(f"`version` of wiou_loss must be 1, 2 or 3; got {version!r}")
        stop = _check_flag("stop_gradient", stop_gradient)
        # every option is checked whatever the version, also those it does not use
        gam = check_scalar("gamma", gamma, lo=0.0)
        al = check_scalar("alpha", alpha, lo=0.0, lo_open=True)
        de = check_scalar("delta", delta, lo=0.0, lo_open=True)
        _check_eps(eps)
        mean = None
        if iou_mean is not None:
            mean = check_scalar("iou_mean", iou_mean, lo=0.0, lo_open=True)
        elif version != 1:
            raise ValueError(
                f"wiou_loss version {version} needs iou_mean=, the running mean of "
                "1 - IoU that the caller keeps (e.g. an exponential moving average over "
                "batches); version 1 needs none")
        b = self._boxes(ctx, prediction, target, eps)
        p, t, eps = b.p, b.t, b.area_eps  # rescaled; eps of an area
        iou, d_iou, _, _ = _iou(xp, p, t, eps)
        dist, d_dist = _distance_term(xp, p, t, eps, stop_diagonal=stop)
        r_wiou = xp.exp(dist)
        l_iou = 1.0 - iou
        v1 = r_wiou * l_iou
        d_v1 = _lin((r_wiou * l_iou, d_dist), (-r_wiou, d_iou))
        if version == 1:
            return self._terms(ctx, prediction, b, v1, d_v1, need_grad)
        beta = l_iou / mean
        if version == 2:
            r = beta ** gam
            dr_dbeta = gam * _safe_div(xp, r, beta)  # gamma beta^(gamma-1); 0 at beta = 0
        else:
            r = beta / (de * al ** (beta - de))
            dr_dbeta = (1.0 - beta * math.log(al)) / (de * al ** (beta - de))
        grad = _lin((r, d_v1))
        if not stop:
            grad = _lin((1.0, grad), (-v1 * dr_dbeta / mean, d_iou))
        return self._terms(ctx, prediction, b, r * v1, grad, need_grad)


@_doc
class MPDIoULoss(_BoxLoss):
    r"""MPDIoU loss: IoU with the distances of the top-left and bottom-right corners.

    Parameters
    ----------
    {boxes}
    image_size : (float, float)
        Width and height :math:`(W, H)` of the input image, the normaliser of the corner
        distances. Required.
    {inner_option}
    {common_parameters}

    Returns
    -------
    array
        Shape ``(...)`` with ``reduction="none"``, else 0-d.

    Notes
    -----
    .. math::

        \ell = 1 - \mathrm{IoU} + \frac{d_1^2 + d_2^2}{W^2 + H^2}, \quad
        d_1^2 = (x_1 - x_1^g)^2 + (y_1 - y_1^g)^2, \ d_2^2 = (x_2 - x_2^g)^2 + (y_2 - y_2^g)^2

    .. math::

        \frac{\partial \ell}{\partial b} = -\partial\mathrm{IoU} + \frac{2}{W^2 + H^2}
            (x_1 - x_1^g,\ y_1 - y_1^g,\ x_2 - x_2^g,\ y_2 - y_2^g)

    :math:`\mathcal{L}_{MPDIoU} = 1 - MPDIoU` of the paper, whose corner-distance terms
    cover the centre distance and the width and height differences of DIoU/EIoU at once.

    References
    ----------
    .. [1] M. Siliang, X. Yong, "MPDIoU: A Loss for Efficient and Accurate Bounding Box
       Regression", arXiv:2307.07662, 2023.
    .. [2] H. Zhang, C. Xu, S. Zhang, "Inner-IoU", arXiv:2311.02877, 2023 (``inner_ratio``).

    Examples
    --------
    The IoU example (IoU 1/3; both corners off by 1 in x) on a 10x10 image:

    >>> import numpy as np, losskit as lk
    >>> b = np.array([0., 0., 2., 2.]); g = np.array([1., 0., 3., 2.])
    >>> float(lk.mpdiou_loss(b, g, image_size=(10, 10)))    # 1 - 1/3 + (1 + 1) / 200
    0.6767
    """

    name = "mpdiou_loss"
    formula = r"\ell = 1 - \mathrm{IoU} + \frac{d_1^2 + d_2^2}{W^2 + H^2}"
    gradient_formula = (r"\frac{\partial \ell}{\partial b} = -\partial\mathrm{IoU} + "
                        r"\frac{2\,(b - b^g)}{W^2 + H^2}")
    when_to_use = (
        "Box regression with a penalty that is simple and never degenerate: the distances of "
        "the two corners, normalised by the image size, vanish only for the exact target and "
        "separate boxes of equal aspect ratio but different size, which CIoU cannot. Needs "
        "the image size."
    )
    references = ("Ma and Xu, MPDIoU, arXiv:2307.07662, 2023",)

    def _compute(self, ctx, prediction, target, *, need_grad, image_size=None, eps=_EPS,
                 inner_ratio=None):
        xp = ctx.xp
        if image_size is None:
            raise ValueError("mpdiou_loss needs image_size=(width, height) of the input "
                             "image: the corner distances are divided by width^2 + height^2")
        if isinstance(image_size, (str, bytes)) or not hasattr(image_size, "__len__") \
                or len(image_size) != 2:
            raise ValueError("`image_size` of mpdiou_loss must be (width, height); got "
                             f"{image_size!r}")
        iw = check_scalar("image_size[0]", image_size[0], lo=0.0, lo_open=True)
        ih = check_scalar("image_size[1]", image_size[1], lo=0.0, lo_open=True)
        if math.isinf(iw) or math.isinf(ih):
            raise ValueError(f"`image_size` of mpdiou_loss must be finite; got {image_size!r}")
        diag = math.hypot(iw, ih)  # sqrt(W^2 + H^2)
        b = self._boxes(ctx, prediction, target, eps)
        p, t, eps = b.p, b.t, b.area_eps  # rescaled; eps of an area
        iou, d_iou, _, _ = _iou(xp, p, t, eps)
        value, grad = self._with_inner(xp, p, t, inner_ratio, eps, iou, d_iou, 1.0 - iou,
                                       _lin((-1.0, d_iou)))
        # the corner term is not scale-invariant: in the original coordinates, as ratios
        # to the image diagonal (so that no squared distance overflows)
        x, g = b.orig_p, b.orig_t
        r = [(a - c) / diag for a, c in ((x.x1, g.x1), (x.y1, g.y1), (x.x2, g.x2),
                                        (x.y2, g.y2))]
        value = value + (r[0] * r[0] + r[1] * r[1] + r[2] * r[2] + r[3] * r[3])
        extra = [2.0 * ri / diag for ri in r]
        return self._terms(ctx, prediction, b, value, grad, need_grad, extra=extra)


@_doc
class InnerIoULoss(_BoxLoss):
    r"""Inner-IoU loss: :math:`1 - \mathrm{IoU}` of auxiliary boxes scaled about their centres.

    Parameters
    ----------
    {boxes}
    ratio : float, default 0.75
        Scale :math:`r > 0` of the auxiliary boxes' sides (the paper: below 1 speeds up
        high-IoU samples, above 1 low-IoU ones; it suggests [0.5, 1.5]).
    {common_parameters}

    Returns
    -------
    array
        Shape ``(...)`` with ``reduction="none"``, else 0-d. In :math:`[0, 1]`.

    Notes
    -----
    The auxiliary box of :math:`b` has the same centre and sides :math:`r w \times r h`:
    its corners :math:`u_1 = a x_1 + (1 - a) x_2`, :math:`u_2 = (1 - a) x_1 + a x_2` with
    :math:`a = (1 + r)/2` (and in :math:`y`) are linear in :math:`b`, so

    .. math::

        \ell = 1 - \mathrm{IoU}(u, u^g), \qquad
        \frac{\partial \ell}{\partial x_1} = -\Bigl(a \frac{\partial\mathrm{IoU}}{\partial u_1}
            + (1 - a)\frac{\partial\mathrm{IoU}}{\partial u_2}\Bigr), \quad
        \frac{\partial \ell}{\partial x_2} = -\Bigl((1 - a)\frac{\partial\mathrm{IoU}}
            {\partial u_1} + a \frac{\partial\mathrm{IoU}}{\partial u_2}\Bigr)

    The union is :math:`r^2 (w h + w^g h^g) - I_{inner}` as in the paper. The other losses
    take ``inner_ratio=`` for Inner-GIoU, Inner-DIoU, Inner-CIoU, Inner-EIoU, Inner-SIoU
    (and Inner-MPDIoU), :math:`\mathcal{L}_{Inner\text{-}X} = \mathcal{L}_X + \mathrm{IoU}
    - \mathrm{IoU}^{inner}`.

    References
    ----------
    .. [1] H. Zhang, C. Xu, S. Zhang, "Inner-IoU: More Effective Intersection over Union
       Loss with Auxiliary Bounding Box", arXiv:2311.02877, 2023.

    Examples
    --------
    The IoU example with ratio 0.5: auxiliary boxes 1x1 centred at x = 1 and 2 do not
    overlap; with ratio 1.5 they are 3x3 with intersection 2 x 3 and union 12.

    >>> import numpy as np, losskit as lk
    >>> b = np.array([0., 0., 2., 2.]); g = np.array([1., 0., 3., 2.])
    >>> float(lk.inner_iou_loss(b, g, ratio=0.5)), float(lk.inner_iou_loss(b, g, ratio=1.5))
    (1.0, 0.5)
    """

    name = "inner_iou_loss"
    formula = (r"\ell = 1 - \mathrm{IoU}(u, u^g),\ u = "
               r"\text{the box scaled by } r \text{ about its centre}")
    gradient_formula = (r"\frac{\partial \ell}{\partial (x_1, x_2)} = -M^\top \frac{\partial "
                        r"\mathrm{IoU}}{\partial (u_1, u_2)},\ M = \begin{pmatrix} a & 1-a \\ "
                        r"1-a & a\end{pmatrix},\ a = \tfrac{1+r}{2}")
    when_to_use = (
        "IoU regression whose gradient should be tuned to the quality of the samples: a "
        "ratio below 1 makes the loss steeper for boxes that already overlap well, a ratio "
        "above 1 widens the range where low-IoU boxes still get a gradient. Use inner_ratio= "
        "on the other IoU losses to combine it with their penalties."
    )
    references = ("Zhang, Xu and Zhang, Inner-IoU, arXiv:2311.02877, 2023",)

    def _compute(self, ctx, prediction, target, *, need_grad, ratio=0.75, eps=_EPS):
        xp = ctx.xp
        r = _check_ratio("ratio", ratio)
        b = self._boxes(ctx, prediction, target, eps)
        p, t, eps = b.p, b.t, b.area_eps  # rescaled; eps of an area
        iou, d_iou = _inner_iou(xp, p, t, r, eps)
        return self._terms(ctx, prediction, b, 1.0 - iou, _lin((-1.0, d_iou)), need_grad)


iou_loss = register(IoULoss())
giou_loss = generalized_box_iou_loss = register(GIoULoss())
diou_loss = distance_box_iou_loss = register(DIoULoss())
ciou_loss = complete_box_iou_loss = register(CIoULoss())
eiou_loss = register(EIoULoss())
focal_eiou_loss = register(FocalEIoULoss())
siou_loss = register(SIoULoss())
wiou_loss = register(WIoULoss())
mpdiou_loss = register(MPDIoULoss())
inner_iou_loss = register(InnerIoULoss())

# the fused NumPy kernel of the family (losskit.kernels.boxes), consulted by the pipeline
for _cls, _kind in ((IoULoss, "iou"), (GIoULoss, "giou"), (DIoULoss, "diou"),
                    (CIoULoss, "ciou"), (EIoULoss, "eiou"), (FocalEIoULoss, "focal_eiou"),
                    (SIoULoss, "siou"), (WIoULoss, "wiou"), (MPDIoULoss, "mpdiou"),
                    (InnerIoULoss, "inner_iou")):
    register_fast_path(_cls, box_fast_path(_kind))
del _cls, _kind
