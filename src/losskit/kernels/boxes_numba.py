r"""Numba kernels of the bounding-box (IoU) family (imported only when numba is installed).

Each box loss states its per-pair math once, as a scalar function of the eight
coordinates ``(x1, y1, x2, y2)`` of the predicted and the target box and a tuple of
options ``prm`` (see :mod:`losskit.kernels.boxes`), returning
``(value, d/dx1, d/dy1, d/dx2, d/dy2, covered)``. It mirrors the generic Array-API
kernel of :mod:`losskit.losses.boxes` term by term, the per-pair rescaling included
(:func:`_rescale`: the pair divided by a power of two near the larger side of its
enclosing box, every eps scaled with its dimension, the gradient multiplied back); the
arithmetic runs in float64 for float32 boxes too (the float32 result then rounds once,
where the generic path rounds every step). ``covered`` is False where the kernel does
not answer for the pair (an enclosing box that is infinite, or larger than the scale's
range, where the generic formulas overflow): the caller then runs the generic path.

One driver loop (:func:`_drive`) serves every loss: the boxes in blocks of
:data:`BLOCK`, the blocks in ``prange`` (parallel build) or in order (serial build);
each block's coordinates are first copied into eight float64 columns, then per box the
loss's scalar function (inlined by numba, ``inline="always"``: LLVM's inliner would leave
a call, and the loop one box at a time), which has no branch and no call into the C
library (``atan``, ``exp``, ``expm1`` are polynomials here, a power with an exponent
of :data:`POW_EXACT` is a product; the options that would need a branch, WIoU's version
and other exponents, have builds of their own), so that LLVM vectorises the loop over
the boxes; the NaN rule (a NaN coordinate
makes the pair's value and the predicted box's gradient NaN), the box-order check
(``x2 < x1`` or ``y2 < y1`` anywhere: the caller runs the generic path, which raises),
the sample weight (``0 * anything = 0``) and the reduction's factor; each block's values
are summed in float64 while they are in cache. The driver is compiled once per loss,
float type and build, from copies of :func:`_drive` whose global ``_box`` is the loss's
scalar function, under names of their own (numba's on-disk cache then keeps them apart).
"""

from __future__ import annotations

import math
import threading
import types as pytypes

import numpy as np
from numba import njit, prange

from .numba_kernels import _bits_from_f64, _exp64, _f64_from_bits, _sum

__all__ = ["kernels", "BLOCK", "KINDS", "POW_EXACT"]

#: boxes per block of the driver (one partial sum each)
BLOCK = 1024
#: boxes per pass of the driver's loops (their 13 columns, 13 KiB, stay in L1)
SUB = 128

# no fastmath flag at all, set explicitly (numba gives a callee its caller's flags when it
# sets none): a fused multiply-add rounds a * b + c once, which breaks the cancellations
# the generic formulas make exact (identical boxes: a gradient of exactly 0; a flat box
# under Inner-IoU: u1 = a x1 + b x2 equal to u2 = b x1 + a x2)
_JIT = {"cache": True, "error_model": "numpy", "fastmath": False}
_FOUR_OVER_PI2 = 4.0 / math.pi ** 2
_DBL_MAX = float(np.finfo(np.float64).max)
_NAN = float("nan")

_jit = njit(inline="always", **_JIT)


# --------------------------------------------------------------------------- pieces
@_jit
def _max(a, b):
    return a if a > b else b


@_jit
def _min(a, b):
    return a if a < b else b


@_jit
def _wmax(a, b):
    """d max(a, b) / d a: 1 above, 0 below, 1/2 at a tie (PyTorch's convention)."""
    return 1.0 if a > b else (0.5 if a == b else 0.0)


@_jit
def _sdiv(num, den):
    """num / den where den != 0, else 0."""
    return num / den if den != 0.0 else 0.0


@_jit
def _sign(x):
    return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else x)


#: the exponents :func:`_pow` forms by products (or ``sqrt``), without ``pow``
POW_EXACT = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


@_jit
def _pow(x, y, general):
    """x ** y for x >= 0 (or NaN). ``general`` (a constant of the loss's build): ``pow``;
    else y is one of :data:`POW_EXACT` (SIoU's theta 2 to 6, EIoU's gamma 0.5) and the
    power is a product (or ``sqrt``), within 2 ulp of ``pow``, by selects (``pow`` is a
    call per box, even where the vectorised loop never needs it)."""
    if general:
        return x ** y
    x2 = x * x
    x3 = x2 * x
    x4 = x2 * x2
    return (1.0 if y == 0.0 else math.sqrt(x) if y == 0.5 else x if y == 1.0 else
            x2 if y == 2.0 else x3 if y == 3.0 else x4 if y == 4.0 else
            x4 * x if y == 5.0 else x3 * x3)


# --------------------------------------------------------------------------- polynomials
# math.atan2, math.exp and math.expm1 are calls into the C library, which LLVM cannot
# vectorise (PyPI's llvmlite has no SVML): the loop over the boxes then runs one box at a
# time. The routines below are selects and arithmetic only.

#: e^x (numba_kernels._exp64: within 2 ulp, gradual underflow, overflow to inf, NaN kept)
_exp = _jit(_exp64)

# atan: Cephes' atan.c (Moshier; also Go's math.Atan): |x| reduced to [0, 0.66] by
# x -> -1/x above tan(3 pi/8) and x -> (x - 1)/(x + 1) above 0.66 (one division, by
# selects), then x + x z P(z)/Q(z), z = x^2, P of degree 4, Q monic of degree 5.
_ATAN_P = (-8.750608600031904122785e-01, -1.615753718733365076637e+01,
           -7.500855792314704667340e+01, -1.228866684490136173410e+02,
           -6.485021904942025371773e+01)
_ATAN_Q = (2.485846490142306297962e+01, 1.650270098316988542046e+02,
           4.328810604912902668951e+02, 4.853903996359136964868e+02,
           1.945506571482613964425e+02)
_T3P8 = 2.41421356237309504880  # tan(3 pi / 8)
_PIO2, _PIO4 = math.pi / 2, math.pi / 4
_MOREBITS = 6.123233995736765886130e-17  # pi/2 - float64(pi/2)


@_jit
def _atan(x):
    """atan(x) for every float64 x (+-0 and +-inf: +-0 and +-pi/2, NaN: NaN), within 1 ulp
    of the C library's atan (tests/kernels/test_boxes_family.py); selects only, so the
    loop vectorises."""
    a = abs(x)
    big = a > _T3P8
    mid = (a > 0.66) & (a <= _T3P8)
    num = -1.0 if big else (a - 1.0 if mid else a)
    den = a if big else (a + 1.0 if mid else 1.0)
    r = num / den  # NaN stays NaN; inf gives -0
    z = r * r
    p = (((_ATAN_P[0] * z + _ATAN_P[1]) * z + _ATAN_P[2]) * z + _ATAN_P[3]) * z + _ATAN_P[4]
    q = (((z + _ATAN_Q[0]) * z + _ATAN_Q[1]) * z + _ATAN_Q[2]) * z + _ATAN_Q[3]
    q = q * z + _ATAN_Q[4]
    y = r * (z * p / q) + r
    off = (_PIO2 if big else (_PIO4 if mid else 0.0))
    more = (_MOREBITS if big else (0.5 * _MOREBITS if mid else 0.0))
    y = off + (y + more)
    return math.copysign(y, x)


@_jit
def _atan2_pos(y, x):
    """atan2(y, x) for y, x >= 0 (box sides): atan(y / x), with atan2(0, 0) = 0."""
    return _atan(y / x) if (y != 0.0) | (x != 0.0) else 0.0


# 1 - e^-x = x P(x), P(x) = sum_k (-x)^k / (k + 1)!: on [0, 1] the terms fall like 1/k!
# (remainder after 18 terms below 1/20! = 4e-19, under 0.01 ulp of P >= 0.63), and Horner's
# rule with alternating terms rounds to within 2 ulp; no cancellation for small x.
_EXPM1_P = tuple((-1.0) ** k / math.factorial(k + 1) for k in range(18))


@_jit
def _one_minus_exp_neg(x):
    """1 - e^-x = -expm1(-x) for x in [0, 1] (or NaN), within 2 ulp."""
    p = _EXPM1_P[17]
    p = p * x + _EXPM1_P[16]
    p = p * x + _EXPM1_P[15]
    p = p * x + _EXPM1_P[14]
    p = p * x + _EXPM1_P[13]
    p = p * x + _EXPM1_P[12]
    p = p * x + _EXPM1_P[11]
    p = p * x + _EXPM1_P[10]
    p = p * x + _EXPM1_P[9]
    p = p * x + _EXPM1_P[8]
    p = p * x + _EXPM1_P[7]
    p = p * x + _EXPM1_P[6]
    p = p * x + _EXPM1_P[5]
    p = p * x + _EXPM1_P[4]
    p = p * x + _EXPM1_P[3]
    p = p * x + _EXPM1_P[2]
    p = p * x + _EXPM1_P[1]
    p = p * x + _EXPM1_P[0]
    return x * p


@_jit
def _rescale(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps, lo, hi):
    """The pair divided by s = 2^k, k = floor(log2 of the enclosing box's larger side)
    clamped to [lo, hi] (losses.boxes._rescale); a flat axis (all four coordinates equal)
    moved to 0. Returns the 8 scaled coordinates, eps / s^2, eps / s, 1 / s, covered."""
    cw = _max(px2, tx2) - _min(px1, tx1)
    ch = _max(py2, ty2) - _min(py1, ty1)
    m = _max(cw, ch)
    e = ((_bits_from_f64(m) >> np.int64(52)) & np.int64(0x7FF)) - np.int64(1023)
    ok = (m > 0.0) & (m <= _DBL_MAX)
    k = e if ok else np.int64(0)  # a subnormal m: -1023, below any lo
    klo, khi = np.int64(lo), np.int64(hi)
    covered = (m <= _DBL_MAX) & (k <= khi)
    k = klo if k < klo else (khi if k > khi else k)
    inv = _f64_from_bits((np.int64(1023) - k) << np.int64(52))
    fx, fy = cw == 0.0, ch == 0.0
    return ((0.0 if fx else px1) * inv, (0.0 if fy else py1) * inv,
            (0.0 if fx else px2) * inv, (0.0 if fy else py2) * inv,
            (0.0 if fx else tx1) * inv, (0.0 if fy else ty1) * inv,
            (0.0 if fx else tx2) * inv, (0.0 if fy else ty2) * inv,
            eps * inv * inv, eps * inv, inv, covered)


@_jit
def _iou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps):
    """IoU = I / (U + eps) and its gradient (4), the union U and its gradient (4)."""
    iw = _min(px2, tx2) - _max(px1, tx1)
    ih = _min(py2, ty2) - _max(py1, ty1)
    overlap = (iw > 0.0) & (ih > 0.0)
    iw = iw if overlap else 0.0
    ih = ih if overlap else 0.0
    i0 = -ih * _wmax(px1, tx1)
    i1 = -iw * _wmax(py1, ty1)
    i2 = ih * _wmax(tx2, px2)
    i3 = iw * _wmax(ty2, py2)
    inter = iw * ih
    w, h = px2 - px1, py2 - py1
    union = w * h + (tx2 - tx1) * (ty2 - ty1) - inter
    u0, u1, u2, u3 = -h - i0, -w - i1, h - i2, w - i3
    den = union + eps
    iou = inter / den
    a, b = 1.0 / den, -iou / den
    return (iou, a * i0 + b * u0, a * i1 + b * u1, a * i2 + b * u2, a * i3 + b * u3,
            union, u0, u1, u2, u3)


@_jit
def _enclosing(px1, py1, px2, py2, tx1, ty1, tx2, ty2):
    """c_w, d c_w / d (x1, x2), c_h, d c_h / d (y1, y2)."""
    cw = _max(px2, tx2) - _min(px1, tx1)
    ch = _max(py2, ty2) - _min(py1, ty1)
    return cw, -_wmax(tx1, px1), _wmax(px2, tx2), ch, -_wmax(ty1, py1), _wmax(py2, ty2)


@_jit
def _distance(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps, stop_diagonal):
    """rho^2 / c^2 (DIoU's penalty) and its gradient (c^2 held constant if asked)."""
    dx = (px1 + px2 - tx1 - tx2) * 0.5
    dy = (py1 + py2 - ty1 - ty2) * 0.5
    rho2 = dx * dx + dy * dy
    cw, cx1, cx2, ch, cy1, cy2 = _enclosing(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    c2 = cw * cw + ch * ch + eps
    term = rho2 / c2
    r = 1.0 / c2
    g0, g1, g2, g3 = r * dx, r * dy, r * dx, r * dy
    if not stop_diagonal:
        q = -term / c2
        g0 = g0 + q * (2.0 * cw * cx1)
        g1 = g1 + q * (2.0 * ch * cy1)
        g2 = g2 + q * (2.0 * cw * cx2)
        g3 = g3 + q * (2.0 * ch * cy2)
    return term, g0, g1, g2, g3


@_jit
def _inner_iou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, ratio, eps):
    """IoU of the auxiliary boxes (sides scaled by ratio about the centres) and its
    gradient with respect to the original box."""
    a, b = 0.5 * (1.0 + ratio), 0.5 * (1.0 - ratio)
    r = _iou(a * px1 + b * px2, a * py1 + b * py2, b * px1 + a * px2, b * py1 + a * py2,
             a * tx1 + b * tx2, a * ty1 + b * ty2, b * tx1 + a * tx2, b * ty1 + a * ty2, eps)
    g1, h1, g2, h2 = r[1], r[2], r[3], r[4]
    return r[0], a * g1 + b * g2, a * h1 + b * h2, b * g1 + a * g2, b * h1 + a * h2


@_jit
def _with_inner(v, g0, g1, g2, g3, iou, d0, d1, d2, d3,
                px1, py1, px2, py2, tx1, ty1, tx2, ty2, ratio, eps):
    """Inner-IoU rule L + IoU - IoU_inner (``ratio`` 0: no inner box)."""
    if ratio == 0.0:
        return v, g0, g1, g2, g3
    r = _inner_iou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, ratio, eps)
    return (v + iou - r[0], g0 + d0 - r[1], g1 + d1 - r[2], g2 + d2 - r[3],
            g3 + d3 - r[4])


@_jit
def _eiou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps):
    """EIoU value and gradient, and the IoU with its gradient."""
    r = _iou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps)
    iou, d0, d1, d2, d3 = r[0], r[1], r[2], r[3], r[4]
    dist, e0, e1, e2, e3 = _distance(px1, py1, px2, py2, tx1, ty1, tx2, ty2, eps, False)
    cw, cx1, cx2, ch, cy1, cy2 = _enclosing(px1, py1, px2, py2, tx1, ty1, tx2, ty2)
    # (s - s_g)^2 / (c_s^2 + eps) in w and in h
    den_w = cw * cw + eps
    diff_w = (px2 - px1) - (tx2 - tx1)
    wt = diff_w * diff_w / den_w
    aw, bw = 2.0 * diff_w / den_w, -wt * 2.0 * cw / den_w
    den_h = ch * ch + eps
    diff_h = (py2 - py1) - (ty2 - ty1)
    ht = diff_h * diff_h / den_h
    ah, bh = 2.0 * diff_h / den_h, -ht * 2.0 * ch / den_h
    value = 1.0 - iou + dist + wt + ht
    g0 = -d0 + e0 + (-aw + bw * cx1)
    g1 = -d1 + e1 + (-ah + bh * cy1)
    g2 = -d2 + e2 + (aw + bw * cx2)
    g3 = -d3 + e3 + (ah + bh * cy2)
    return value, g0, g1, g2, g3, iou, d0, d1, d2, d3


# --------------------------------------------------------------------------- the losses
# prm: (eps, lo, hi, inner ratio or 0, the loss's options...): 10 floats
@_jit
def iou_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    a1, b1, a2, b2, c1, d1, c2, d2, ae, le, inv, cov = _rescale(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm[0], prm[1], prm[2])
    r = _iou(a1, b1, a2, b2, c1, d1, c2, d2, ae)
    return 1.0 - r[0], -r[1] * inv, -r[2] * inv, -r[3] * inv, -r[4] * inv, cov


@_jit
def giou_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    a1, b1, a2, b2, c1, d1, c2, d2, ae, le, inv, cov = _rescale(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm[0], prm[1], prm[2])
    iou, i0, i1, i2, i3, union, u0, u1, u2, u3 = _iou(a1, b1, a2, b2, c1, d1, c2, d2, ae)
    cw, cx1, cx2, ch, cy1, cy2 = _enclosing(a1, b1, a2, b2, c1, d1, c2, d2)
    area_c = cw * ch
    k0, k1, k2, k3 = ch * cx1, cw * cy1, ch * cx2, cw * cy2
    den = area_c + ae
    pen = (area_c - union) / den
    r, q = 1.0 / den, -pen / den
    v = 1.0 - iou + pen
    g0 = -i0 + (r * k0 - r * u0 + q * k0)
    g1 = -i1 + (r * k1 - r * u1 + q * k1)
    g2 = -i2 + (r * k2 - r * u2 + q * k2)
    g3 = -i3 + (r * k3 - r * u3 + q * k3)
    v, g0, g1, g2, g3 = _with_inner(v, g0, g1, g2, g3, iou, i0, i1, i2, i3,
                                    a1, b1, a2, b2, c1, d1, c2, d2, prm[3], ae)
    return v, g0 * inv, g1 * inv, g2 * inv, g3 * inv, cov


@_jit
def diou_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    a1, b1, a2, b2, c1, d1, c2, d2, ae, le, inv, cov = _rescale(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm[0], prm[1], prm[2])
    r = _iou(a1, b1, a2, b2, c1, d1, c2, d2, ae)
    iou, i0, i1, i2, i3 = r[0], r[1], r[2], r[3], r[4]
    dist, e0, e1, e2, e3 = _distance(a1, b1, a2, b2, c1, d1, c2, d2, ae, False)
    v, g0, g1, g2, g3 = _with_inner(1.0 - iou + dist, -i0 + e0, -i1 + e1, -i2 + e2,
                                    -i3 + e3, iou, i0, i1, i2, i3,
                                    a1, b1, a2, b2, c1, d1, c2, d2, prm[3], ae)
    return v, g0 * inv, g1 * inv, g2 * inv, g3 * inv, cov


@_jit
def ciou_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    """prm[4]: stop_gradient (1.0 or 0.0); prm[0] is also alpha's eps (a pure number)."""
    a1, b1, a2, b2, c1, d1, c2, d2, ae, le, inv, cov = _rescale(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm[0], prm[1], prm[2])
    r = _iou(a1, b1, a2, b2, c1, d1, c2, d2, ae)
    iou, i0, i1, i2, i3 = r[0], r[1], r[2], r[3], r[4]
    dist, e0, e1, e2, e3 = _distance(a1, b1, a2, b2, c1, d1, c2, d2, ae, False)
    # aspect term v and its gradient (losses.boxes._aspect)
    w, h = a2 - a1, b2 - b1
    diff = _atan2_pos(c2 - c1, d2 - d1) - _atan2_pos(w, h)
    va = _FOUR_OVER_PI2 * diff * diff
    n = _max(abs(w), abs(h))
    ua, ub = _sdiv(w, n), _sdiv(h, n)
    coef = _sdiv(2.0 * _FOUR_OVER_PI2 * diff, (ua * ua + ub * ub) * n)
    dv_dw, dv_dh = -coef * ub, coef * ua
    den = 1.0 - iou + va + prm[0]
    alpha = _sdiv(va, den)
    v = 1.0 - iou + dist + alpha * va
    g0 = -i0 + e0 + alpha * -dv_dw
    g1 = -i1 + e1 + alpha * -dv_dh
    g2 = -i2 + e2 + alpha * dv_dw
    g3 = -i3 + e3 + alpha * dv_dh
    if prm[4] == 0.0:
        den2 = den * den
        p, q = _sdiv(1.0 - iou + prm[0], den2), _sdiv(va, den2)
        g0 = g0 + va * (p * -dv_dw + q * i0)
        g1 = g1 + va * (p * -dv_dh + q * i1)
        g2 = g2 + va * (p * dv_dw + q * i2)
        g3 = g3 + va * (p * dv_dh + q * i3)
    v, g0, g1, g2, g3 = _with_inner(v, g0, g1, g2, g3, iou, i0, i1, i2, i3,
                                    a1, b1, a2, b2, c1, d1, c2, d2, prm[3], ae)
    return v, g0 * inv, g1 * inv, g2 * inv, g3 * inv, cov


@_jit
def eiou_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    a1, b1, a2, b2, c1, d1, c2, d2, ae, le, inv, cov = _rescale(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm[0], prm[1], prm[2])
    v, g0, g1, g2, g3, iou, i0, i1, i2, i3 = _eiou(a1, b1, a2, b2, c1, d1, c2, d2, ae)
    v, g0, g1, g2, g3 = _with_inner(v, g0, g1, g2, g3, iou, i0, i1, i2, i3,
                                    a1, b1, a2, b2, c1, d1, c2, d2, prm[3], ae)
    return v, g0 * inv, g1 * inv, g2 * inv, g3 * inv, cov


@_jit
def _focal_eiou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, general):
    """prm[4]: gamma, prm[5]: stop_gradient; ``general``: see :func:`_pow`."""
    a1, b1, a2, b2, c1, d1, c2, d2, ae, le, inv, cov = _rescale(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm[0], prm[1], prm[2])
    e, g0, g1, g2, g3, iou, i0, i1, i2, i3 = _eiou(a1, b1, a2, b2, c1, d1, c2, d2, ae)
    gam = prm[4]
    weight = _pow(iou, gam, general)
    v = weight * e
    g0, g1, g2, g3 = weight * g0, weight * g1, weight * g2, weight * g3
    if prm[5] == 0.0 and gam != 0.0:
        c = gam * _sdiv(weight, iou) * e
        g0, g1, g2, g3 = g0 + c * i0, g1 + c * i1, g2 + c * i2, g3 + c * i3
    return v, g0 * inv, g1 * inv, g2 * inv, g3 * inv, cov


@_jit
def focal_eiou_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    """gamma in POW_EXACT."""
    return _focal_eiou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, False)


@_jit
def focal_eiou_pow_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    return _focal_eiou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, True)


@_jit
def _shape_cost(size, size_g, len_eps, th, general):
    """SIoU's (1 - e^-omega)^theta for one side and its derivative in the side."""
    big = _max(size, size_g) + len_eps
    diff = size - size_g
    om = abs(diff) / big
    d_om = _sign(diff) / big - om * _wmax(size, size_g) / big
    one_minus = _one_minus_exp_neg(om)  # om in [0, 1]
    e = _exp(-om)
    return (_pow(one_minus, th, general),
            th * _pow(one_minus, th - 1.0, general) * e * d_om)


@_jit
def _siou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, general):
    """prm[4]: theta; ``general``: see :func:`_pow`."""
    a1, b1, a2, b2, c1, d1, c2, d2, ae, le, inv, cov = _rescale(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm[0], prm[1], prm[2])
    th = prm[4]
    r = _iou(a1, b1, a2, b2, c1, d1, c2, d2, ae)
    iou, i0, i1, i2, i3 = r[0], r[1], r[2], r[3], r[4]
    cw, cx1, cx2, ch, cy1, cy2 = _enclosing(a1, b1, a2, b2, c1, d1, c2, d2)
    dx = (a1 + a2 - c1 - c2) * 0.5
    dy = (b1 + b2 - d1 - d2) * 0.5
    sx, sy = cw * cw + ae, ch * ch + ae
    rx, ry = dx * dx / sx, dy * dy / sy
    px, qx = 2.0 * dx / sx, -rx * 2.0 * cw / sx  # d rho_x = px dDX + qx d cw
    py, qy = 2.0 * dy / sy, -ry * 2.0 * ch / sy
    ax, ay = abs(dx), abs(dy)
    n = _max(ax, ay)
    u, v = _sdiv(ax, n), _sdiv(ay, n)
    q = u * u + v * v
    lam = _sdiv(2.0 * u * v, q)
    inv_q2 = _sdiv(1.0, q * q)
    n_dlam_dx = _sign(dx) * 2.0 * v * (v * v - u * u) * inv_q2
    n_dlam_dy = _sign(dy) * 2.0 * u * (u * u - v * v) * inv_q2
    gam = 2.0 - lam
    ex, ey = _exp(-gam * rx), _exp(-gam * ry)
    k_lam = ax * u * ex / sx + ay * v * ey / sy
    dist = 2.0 - ex - ey
    gx, gy = gam * ex, gam * ey
    dd0 = gx * (px * 0.5 + qx * cx1) - k_lam * (n_dlam_dx * 0.5)
    dd1 = gy * (py * 0.5 + qy * cy1) - k_lam * (n_dlam_dy * 0.5)
    dd2 = gx * (px * 0.5 + qx * cx2) - k_lam * (n_dlam_dx * 0.5)
    dd3 = gy * (py * 0.5 + qy * cy2) - k_lam * (n_dlam_dy * 0.5)
    sw, dsw = _shape_cost(a2 - a1, c2 - c1, le, th, general)
    sh, dsh = _shape_cost(b2 - b1, d2 - d1, le, th, general)
    value = 1.0 - iou + 0.5 * (dist + (sw + sh))
    g0 = -i0 + 0.5 * dd0 + 0.5 * -dsw
    g1 = -i1 + 0.5 * dd1 + 0.5 * -dsh
    g2 = -i2 + 0.5 * dd2 + 0.5 * dsw
    g3 = -i3 + 0.5 * dd3 + 0.5 * dsh
    value, g0, g1, g2, g3 = _with_inner(value, g0, g1, g2, g3, iou, i0, i1, i2, i3,
                                        a1, b1, a2, b2, c1, d1, c2, d2, prm[3], ae)
    return value, g0 * inv, g1 * inv, g2 * inv, g3 * inv, cov


@_jit
def siou_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    """theta and theta - 1 in POW_EXACT."""
    return _siou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, False)


@_jit
def siou_pow_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    return _siou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, True)


@_jit
def _wiou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, version, general):
    """prm[4]: version (1, 2, 3; also passed as the constant ``version``, which selects
    the branch at compile time), prm[5]: iou_mean, prm[6]: gamma, prm[7]: alpha,
    prm[8]: delta, prm[9]: stop_gradient (1.0 or 0.0); ``general``: see :func:`_pow`.
    One exit (no early return): the loop over the boxes then vectorises."""
    a1, b1, a2, b2, c1, d1, c2, d2, ae, le, inv, cov = _rescale(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm[0], prm[1], prm[2])
    stop = prm[9] != 0.0
    r = _iou(a1, b1, a2, b2, c1, d1, c2, d2, ae)
    iou, i0, i1, i2, i3 = r[0], r[1], r[2], r[3], r[4]
    dist, e0, e1, e2, e3 = _distance(a1, b1, a2, b2, c1, d1, c2, d2, ae, stop)
    r_wiou = _exp(dist)
    l_iou = 1.0 - iou
    v1 = r_wiou * l_iou
    a, b = r_wiou * l_iou, -r_wiou
    g0, g1, g2, g3 = a * e0 + b * i0, a * e1 + b * i1, a * e2 + b * i2, a * e3 + b * i3
    mean = prm[5]
    beta = l_iou / mean
    if version == 1.0:
        rr, dr = 1.0, 0.0
    elif version == 2.0:
        gm = prm[6]
        rr = _pow(beta, gm, general)
        dr = gm * _sdiv(rr, beta)
    else:
        al, de = prm[7], prm[8]
        log_al = math.log(al)  # the same for every box: hoisted out of the loop
        den = de * _exp((beta - de) * log_al)  # de * al ** (beta - de)
        rr = beta / den
        dr = (1.0 - beta * log_al) / den
    c = 0.0 if stop or version == 1.0 else -v1 * dr / mean
    g0, g1, g2, g3 = rr * g0 + c * i0, rr * g1 + c * i1, rr * g2 + c * i2, rr * g3 + c * i3
    return rr * v1, g0 * inv, g1 * inv, g2 * inv, g3 * inv, cov


@_jit
def wiou_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    """WIoU v1 (``version`` 1: the driver of kind "wiou" is compiled for v1 only)."""
    return _wiou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, 1.0, False)


@_jit
def wiou2_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    return _wiou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, 2.0, False)


@_jit
def wiou3_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    return _wiou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, 3.0, False)


@_jit
def wiou2_pow_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    return _wiou(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm, 2.0, True)


@_jit
def mpdiou_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    """prm[4]: the image diagonal sqrt(W^2 + H^2)."""
    a1, b1, a2, b2, c1, d1, c2, d2, ae, le, inv, cov = _rescale(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm[0], prm[1], prm[2])
    r = _iou(a1, b1, a2, b2, c1, d1, c2, d2, ae)
    iou, i0, i1, i2, i3 = r[0], r[1], r[2], r[3], r[4]
    v, g0, g1, g2, g3 = _with_inner(1.0 - iou, -i0, -i1, -i2, -i3, iou, i0, i1, i2, i3,
                                    a1, b1, a2, b2, c1, d1, c2, d2, prm[3], ae)
    # the corner term in the original coordinates, as ratios to the image diagonal
    diag = prm[4]
    r0, r1 = (px1 - tx1) / diag, (py1 - ty1) / diag
    r2, r3 = (px2 - tx2) / diag, (py2 - ty2) / diag
    v = v + (r0 * r0 + r1 * r1 + r2 * r2 + r3 * r3)
    return (v, g0 * inv + 2.0 * r0 / diag, g1 * inv + 2.0 * r1 / diag,
            g2 * inv + 2.0 * r2 / diag, g3 * inv + 2.0 * r3 / diag, cov)


@_jit
def inner_iou_box(px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm):
    """prm[3]: ratio."""
    a1, b1, a2, b2, c1, d1, c2, d2, ae, le, inv, cov = _rescale(
        px1, py1, px2, py2, tx1, ty1, tx2, ty2, prm[0], prm[1], prm[2])
    r = _inner_iou(a1, b1, a2, b2, c1, d1, c2, d2, prm[3], ae)
    return 1.0 - r[0], -r[1] * inv, -r[2] * inv, -r[3] * inv, -r[4] * inv, cov


#: the scalar function of each kind
KINDS = {"iou": iou_box, "giou": giou_box, "diou": diou_box, "ciou": ciou_box,
         "eiou": eiou_box, "focal_eiou": focal_eiou_box, "siou": siou_box,
         "wiou": wiou_box, "mpdiou": mpdiou_box, "inner_iou": inner_iou_box,
         # builds for other options (losses.boxes picks them: kernels.boxes._build)
         "focal_eiou_pow": focal_eiou_pow_box, "siou_pow": siou_pow_box,
         "wiou2": wiou2_box, "wiou2_pow": wiou2_pow_box, "wiou3": wiou3_box}


# --------------------------------------------------------------------------- the driver
def _cols(x, o, m, prm):
    """The loss of the first m boxes of the float64 columns x (8, SUB) into o (5, SUB):
    value and the four gradient components, NaN for a box with a NaN coordinate; returns
    the number of boxes the kernel cannot answer for (unordered, or not covered). No
    branch, no call: LLVM vectorises it. One build per loss (float64 columns whatever the
    input's dtype, shared by the serial and parallel drivers), so that the expensive
    compilation of the inlined loss happens once."""
    bad = 0
    for j in range(m):
        px1, py1, px2, py2 = x[0, j], x[1, j], x[2, j], x[3, j]
        tx1, ty1, tx2, ty2 = x[4, j], x[5, j], x[6, j], x[7, j]
        v, g0, g1, g2, g3, covered = _box(px1, py1, px2, py2, tx1, ty1, tx2, ty2,  # noqa: F821
                                          prm)
        nan = ((px1 != px1) | (py1 != py1) | (px2 != px2) | (py2 != py2)
               | (tx1 != tx1) | (ty1 != ty1) | (tx2 != tx2) | (ty2 != ty2))
        unordered = (px2 < px1) | (py2 < py1) | (tx2 < tx1) | (ty2 < ty1)
        bad += np.int64(unordered | (~covered & ~nan))
        o[0, j] = _NAN if nan else v
        o[1, j] = _NAN if nan else g0
        o[2, j] = _NAN if nan else g1
        o[3, j] = _NAN if nan else g2
        o[4, j] = _NAN if nan else g3
    return bad


def _drive(p, t, w, prm, scale, g, values, partial, want_values, want_grad, has_weight):
    """Boxes p, t (n, 4) of one float type; w: the weight of each box (has_weight), else
    a dummy of length 1; prm: the loss's options; scale: the reduction's factor of the
    gradient. Writes scale * grad into g (want_grad), the (weighted) values into
    ``values`` (want_values) and per-block float64 sums into ``partial``. Returns (the
    number of boxes the kernel cannot answer for: unordered or not covered, their sum).

    Per :data:`SUB` boxes of a block, three loops: the coordinates into eight float64
    columns (a structure of arrays), the loss over the columns into five columns (value,
    gradient; no branch, no call: LLVM vectorises it), then the weights, the reduction's
    factor and the stores. The columns (13 KiB) are allocated once per block."""
    n = p.shape[0]
    nbad = 0
    for b in prange(partial.shape[0]):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        x = np.empty((8, min(SUB, hi - lo)), dtype=np.float64)
        o = np.empty((5, min(SUB, hi - lo)), dtype=np.float64)
        bad = 0
        total = 0.0
        for s0 in range(lo, hi, SUB):
            m = min(SUB, hi - s0)
            for j in range(m):
                x[0, j] = np.float64(p[s0 + j, 0])
                x[1, j] = np.float64(p[s0 + j, 1])
                x[2, j] = np.float64(p[s0 + j, 2])
                x[3, j] = np.float64(p[s0 + j, 3])
                x[4, j] = np.float64(t[s0 + j, 0])
                x[5, j] = np.float64(t[s0 + j, 1])
                x[6, j] = np.float64(t[s0 + j, 2])
                x[7, j] = np.float64(t[s0 + j, 3])
            bad += _columns(x, o, m, prm)  # noqa: F821 - bound per loss (_copy)
            if has_weight:
                for j in range(m):
                    wi = np.float64(w[s0 + j])
                    z = wi == 0.0  # a zero weight removes the box, even a NaN one
                    o[0, j] = 0.0 if z else wi * o[0, j]
                    sc = wi * scale
                    o[1, j] = 0.0 if z else o[1, j] * sc
                    o[2, j] = 0.0 if z else o[2, j] * sc
                    o[3, j] = 0.0 if z else o[3, j] * sc
                    o[4, j] = 0.0 if z else o[4, j] * sc
            else:
                for j in range(m):
                    o[1, j] = o[1, j] * scale
                    o[2, j] = o[2, j] * scale
                    o[3, j] = o[3, j] * scale
                    o[4, j] = o[4, j] * scale
            if want_grad:
                for j in range(m):
                    g[s0 + j, 0] = o[1, j]
                    g[s0 + j, 1] = o[2, j]
                    g[s0 + j, 2] = o[3, j]
                    g[s0 + j, 3] = o[4, j]
            total += _sum(o[0], m)
            if want_values:
                for j in range(m):
                    values[s0 + j] = o[0, j]
        partial[b] = total
        nbad += bad
    return nbad, _sum(partial, partial.shape[0])


_KERNELS: dict = {}
_LOCK = threading.Lock()


def _copy(func, name, **bind):
    """A copy of ``func`` whose globals bind ``bind`` (the loss's pieces), named ``name``
    (numba's on-disk cache keeps builds apart by qualified name)."""
    glb = dict(func.__globals__)
    glb.update(bind)
    copy = pytypes.FunctionType(func.__code__, glb, name, func.__defaults__,
                                func.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = func.__doc__
    return copy


def kernels(kind):
    """(parallel build, serial build) of the driver for the loss ``kind`` (a key of
    :data:`KINDS`), made on first use."""
    k = _KERNELS.get(kind)
    if k is None:
        with _LOCK:
            k = _KERNELS.get(kind)
            if k is None:
                cols = njit(**_JIT)(_copy(_cols, f"_cols_{kind}", _box=KINDS[kind]))
                k = _KERNELS[kind] = tuple(
                    njit(parallel=parallel, **_JIT)(
                        _copy(_drive, f"_drive_{kind}_{build}", _columns=cols))
                    for parallel, build in ((True, "parallel"), (False, "serial")))
    return k
