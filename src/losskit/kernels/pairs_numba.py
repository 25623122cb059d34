r"""Numba kernels of the pair/triplet family (imported lazily by :mod:`losskit.kernels.pairs`).

One driver, :func:`_pairs`, walks the rows of D features (``prange`` in the parallel build,
a plain loop in the serial one, see :func:`losskit.kernels.numba_kernels._builds`) and
calls the loss's per-row function, which states that loss's math once: the value of the
row (float64) and, for every differentiable input whose flag is set, its gradient row
(already multiplied by the reduction's ``scale``).

Each row function has a *fast branch* for the common case (``p = 2`` with a positive,
finite squared distance; a finite cosine), two sweeps over the row (sums, then gradient)
that vectorise, and an *exact branch* that restates the generic kernel's
(:func:`losskit.losses.metric_learning._lp_norm`) formulas element by element for every
other case (``p = 1``, ``p = inf``, other degrees, a zero distance, NaN, infinities).
Sums accumulate in float64, also for float32 rows; per-element arithmetic of the fast
branch stays in the input's dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaError

from .numba_kernels import _JIT, _builds, _like

__all__ = ["pairs_parallel", "pairs_serial", "CONTRASTIVE", "TRIPLET", "COSINE", "RANKING",
           "NumbaError"]

CONTRASTIVE, TRIPLET, COSINE, RANKING = 0, 1, 2, 3

# the sums: reassociation only, so that LLVM splits them over SIMD lanes (as NumPy's
# pairwise sum reorders too); NaN and infinities keep their meaning
_JIT_SUM = {"cache": True, "error_model": "numpy", "fastmath": {"contract", "reassoc"}}
# the exact branch: no contraction either, so that its float64 arithmetic is the generic
# kernel's, operation for operation (its sums run left to right, as NumPy's pairwise sum
# does for rows of fewer than 8 entries)
_JIT_EXACT = {"cache": True, "error_model": "numpy"}


# --------------------------------------------------------------------------- sums
@njit(**_JIT_SUM)
def _ss1(a, b, e):
    """float64 sum of (a - b + e)^2 (the difference rounded in the dtype)."""
    s = 0.0
    for j in range(a.shape[0]):
        v = float(a[j] - b[j] + e)
        s += v * v
    return s


@njit(**_JIT_SUM)
def _ss2(a, p, n, e):
    """float64 sums of (a - p + e)^2 and (a - n + e)^2 in one sweep."""
    s1 = 0.0
    s2 = 0.0
    for j in range(a.shape[0]):
        v = float(a[j] - p[j] + e)
        w = float(a[j] - n[j] + e)
        s1 += v * v
        s2 += w * w
    return s1, s2


@njit(**_JIT_SUM)
def _dots(x, y):
    """float64 sums of x y, x^2, y^2 in one sweep."""
    s = 0.0
    aa = 0.0
    bb = 0.0
    for j in range(x.shape[0]):
        u = float(x[j])
        v = float(y[j])
        s += u * v
        aa += u * u
        bb += v * v
    return s, aa, bb


# --------------------------------------------------------------------------- exact L_p norm
@njit(**_JIT)
def _sign(v):
    if v > 0.0:
        return 1.0
    if v < 0.0:
        return -1.0
    return v  # 0 or NaN


@njit(**_JIT_EXACT)
def _norm_exact(a, b, e, p):
    """(||a - b + e||_p, ties) as the generic ``_lp_norm``: NaN in the row gives NaN
    (p != 1), inf an inf norm, 0 at v = 0; ``ties``: the count of the largest entries
    (``p = inf``, for the shared gradient)."""
    d = a.shape[0]
    if p == 1.0:
        s = 0.0
        for j in range(d):
            s += abs(float(a[j] - b[j] + e))
        return s, 1.0
    m = 0.0
    nan = False
    for j in range(d):
        v = abs(float(a[j] - b[j] + e))
        nan |= v != v
        m = v if v > m else m
    if nan:
        return math.nan, 1.0
    if p == math.inf:
        ties = 0.0
        for j in range(d):
            ties += 1.0 if abs(float(a[j] - b[j] + e)) == m else 0.0
        return m, ties
    if math.isinf(m) or m == 0.0:
        return m, 1.0
    s = 0.0
    if p == 2.0:
        for j in range(d):
            r = abs(float(a[j] - b[j] + e)) / m
            s += r * r
        return m * math.sqrt(s), 1.0
    for j in range(d):
        s += (abs(float(a[j] - b[j] + e)) / m) ** p
    return m * s ** (1.0 / p), 1.0


@njit(**_JIT_EXACT)
def _norm_grad(v, d, p, ties):
    """d||v||_p / dv_j for one entry v_j (float64), the generic kernel's rules: sign(v) for
    p = 1; the sign of the largest entries shared between ties for p = inf; 0 at v = 0;
    along the infinite entries for an infinite norm; NaN for a NaN row."""
    if p == 1.0:
        return _sign(v)
    if d != d:
        return math.nan
    if p == math.inf:
        return _sign(v) * (1.0 if abs(v) == d else 0.0) / ties
    if d == 0.0:
        return 0.0
    if math.isinf(d):
        return _sign(v) * (1.0 if math.isinf(v) else 0.0)
    r = abs(v) / d
    return _sign(v) * (r if p == 2.0 else r ** (p - 1.0))


# --------------------------------------------------------------------------- contrastive
@njit(**_JIT)
def _contrastive_row(x1, x2, t, margin, p, lo, hi, scale, g1, g2, w1, w2):
    """t d^2 / 2 + (1 - t) max(0, m - d)^2 / 2, d = ||x1 - x2||_p; dl/dx1 = -dl/dx2 =
    (t d - (1 - t) max(0, m - d)) dd/dv."""
    n = x1.shape[0]
    zero = _like(x1[0], 0.0)
    similar = t == 1
    if p == 2.0:
        ss = _ss1(x1, x2, zero)
        if ss > lo and ss < hi:  # the fast branch: 0 < d < inf, no NaN
            d = math.sqrt(ss)
            if similar:
                value, coef = 0.5 * (d * d), d
            else:
                h = margin - d
                h = h if h > 0.0 else 0.0
                value, coef = 0.5 * (h * h), -h
            if w1 or w2:
                c = _like(zero, coef / d * scale)
                for j in range(n):
                    gj = (x1[j] - x2[j]) * c
                    if w1:
                        g1[j] = gj
                    if w2:
                        g2[j] = zero - gj
            return value
    d, ties = _norm_exact(x1, x2, zero, p)
    h = margin - d
    h = h if (h > 0.0 or h != h) else 0.0
    value = 0.5 * (d * d) if similar else 0.5 * (h * h)
    coef = d if similar else -h
    if w1 or w2:
        for j in range(n):
            gj = 0.0 if coef == 0.0 else coef * _norm_grad(float(x1[j] - x2[j]), d, p, ties)
            gj *= scale
            if w1:
                g1[j] = gj
            if w2:
                g2[j] = 0.0 - gj
    return value


# --------------------------------------------------------------------------- triplet
@njit(**_JIT)
def _triplet_row(a, pp, nn, margin, p, e, swap, lo, hi, scale, ga, gp, gn, wa, wp, wn):
    """max(0, m + d(a, p) - d(a, n)), d(x, y) = ||x - y + eps||_p; with ``swap``,
    d(a, n) is replaced by d(p, n) when that is smaller (a tie shares the gradient)."""
    n = a.shape[0]
    want = wa or wp or wn
    if p == 2.0:
        ss_ap, ss_an = _ss2(a, pp, nn, e)
        ss_pn = _ss1(pp, nn, e) if swap else 1.0
        if (ss_ap > lo and ss_ap < hi and ss_an > lo and ss_an < hi
                and ss_pn > lo and ss_pn < hi):  # the fast branch
            d_ap = math.sqrt(ss_ap)
            d_an = math.sqrt(ss_an)
            d_pn = math.sqrt(ss_pn) if swap else math.inf
            s = margin + d_ap - (d_pn if d_pn < d_an else d_an)
            active = s > 0.0
            if want:
                if not active:
                    for j in range(n):
                        if wa:
                            ga[j] = 0
                        if wp:
                            gp[j] = 0
                        if wn:
                            gn[j] = 0
                else:
                    w = 1.0 if d_an < d_pn else (0.5 if d_an == d_pn else 0.0)
                    c_ap = _like(e, scale / d_ap)
                    c_an = _like(e, scale * w / d_an)
                    c_pn = _like(e, scale * (1.0 - w) / d_pn)
                    for j in range(n):
                        v_ap = a[j] - pp[j] + e
                        v_an = a[j] - nn[j] + e
                        if wa:
                            ga[j] = v_ap * c_ap - v_an * c_an
                        if wp or wn:
                            t_pn = (pp[j] - nn[j] + e) * c_pn if swap else e * 0
                            if wp:
                                gp[j] = -(v_ap * c_ap) - t_pn
                            if wn:
                                gn[j] = v_an * c_an + t_pn
            return s if active else 0.0
    d_ap, t_ap = _norm_exact(a, pp, e, p)
    d_an, t_an = _norm_exact(a, nn, e, p)
    d_pn, t_pn = _norm_exact(pp, nn, e, p) if swap else (0.0, 1.0)
    d_neg = d_pn if (swap and d_pn < d_an) else d_an
    s = margin + d_ap - d_neg
    active = s > 0.0 or s != s
    if want:
        w = 1.0 if not swap else (1.0 if d_an < d_pn else (0.5 if d_an == d_pn else 0.0))
        for j in range(n):
            if not active:
                x, y, z = 0.0, 0.0, 0.0
            else:
                g_ap = _norm_grad(float(a[j] - pp[j] + e), d_ap, p, t_ap)
                g_an = w * _norm_grad(float(a[j] - nn[j] + e), d_an, p, t_an)
                g_pn = (1.0 - w) * _norm_grad(float(pp[j] - nn[j] + e), d_pn, p, t_pn) \
                    if swap else 0.0
                x, y, z = (g_ap - g_an) * scale, (0.0 - g_ap - g_pn) * scale, \
                    (g_an + g_pn) * scale
            if wa:
                ga[j] = x
            if wp:
                gp[j] = y
            if wn:
                gn[j] = z
    return s if active else 0.0


# --------------------------------------------------------------------------- cosine
@njit(**_JIT)
def _cosine_row(x1, x2, y, margin, eps, scale, g1, g2, w1, w2):
    """1 - cos (y = 1) or max(0, cos - m) (y = -1), cos = x1.x2 / sqrt((|x1|^2 + eps)
    (|x2|^2 + eps)); dcos/dx1 = x2 / r - cos x1 / A."""
    n = x1.shape[0]
    s, aa, bb = _dots(x1, x2)
    a_sq = aa + eps
    b_sq = bb + eps
    r = math.sqrt(a_sq) * math.sqrt(b_sq)
    ok = r > 0.0
    nan = r != r or s != s
    cos = s / (r if ok else 1.0) if (ok or nan) else 0.0
    similar = y == 1
    h = cos - margin
    active = h > 0.0 or h != h
    value = 1.0 - cos if similar else (h if active else 0.0)
    if not (w1 or w2):
        return value
    coef = -1.0 if similar else (1.0 if active else 0.0)
    if not (ok or nan):
        coef = 0.0
    if coef == 0.0:
        for j in range(n):
            if w1:
                g1[j] = 0
            if w2:
                g2[j] = 0
        return value
    r_safe = r if ok else 1.0
    a_safe = a_sq if a_sq > 0.0 else 1.0
    b_safe = b_sq if b_sq > 0.0 else 1.0
    if math.isfinite(r) and math.isfinite(s) and r_safe > 0.0:  # the fast branch
        c_r = _like(x1[0], coef * scale / r_safe)
        c_a = _like(x1[0], coef * scale * cos / a_safe)
        c_b = _like(x1[0], coef * scale * cos / b_safe)
        for j in range(n):
            if w1:
                g1[j] = x2[j] * c_r - x1[j] * c_a
            if w2:
                g2[j] = x1[j] * c_r - x2[j] * c_b
        return value
    for j in range(n):  # NaN or infinite sums: the generic formula, element by element
        u = float(x1[j])
        v = float(x2[j])
        if w1:
            g1[j] = coef * (v / r_safe - cos * u / a_safe) * scale
        if w2:
            g2[j] = coef * (u / r_safe - cos * v / b_safe) * scale
    return value


# --------------------------------------------------------------------------- margin ranking
@njit(**_JIT)
def _ranking_row(x1, x2, y, margin, scale, g1, g2, w1, w2):
    """max(0, m - y (x1 - x2)) of a row of one score; dl/dx1 = -dl/dx2 = -y where active."""
    s = _like(y, margin) - y * (x1[0] - x2[0])
    active = s > 0 or s != s
    value = s if active else _like(y, 0.0)
    g = -y if active else _like(y, 0.0)
    if value != value:
        g = value
    g = g * _like(y, scale)
    if w1:
        g1[0] = g
    if w2:
        g2[0] = _like(y, 0.0) - g
    return float(value)


# --------------------------------------------------------------------------- the driver
def _pairs(kind, x1, x2, x3, t, margin, p, e, swap, lo, hi, scale, g1, g2, g3, w1, w2, w3,
           values):
    """The rows of x1, x2 (, x3) (N, D) of the loss ``kind``: per-row values (float64) into
    ``values``, gradients (scaled) into g1, g2, g3 where w1, w2, w3 (else they are (N, 0)
    dummies). ``t``: the labels (N,) in the dtype (unread for the triplet).

    First a serial pass over the labels: the number that are not one of the loss's two
    values (NaN included); with any, nothing else is done (the caller runs the generic
    path, which raises). Returns (bad labels, float64 sum of the values).
    """
    n = x1.shape[0]
    bad = 0
    if kind != TRIPLET:
        other = 0.0 if kind == CONTRASTIVE else -1.0
        for i in range(n):
            ti = t[i]
            if not (ti == 1 or ti == other):
                bad += 1
    if bad:
        return bad, 0.0
    for i in prange(n):
        if kind == CONTRASTIVE:
            values[i] = _contrastive_row(x1[i], x2[i], t[i], margin, p, lo, hi, scale,
                                         g1[i], g2[i], w1, w2)
        elif kind == TRIPLET:
            values[i] = _triplet_row(x1[i], x2[i], x3[i], margin, p, e, swap, lo, hi, scale,
                                     g1[i], g2[i], g3[i], w1, w2, w3)
        elif kind == COSINE:
            values[i] = _cosine_row(x1[i], x2[i], t[i], margin, float(e), scale, g1[i], g2[i],
                                    w1, w2)
        else:
            values[i] = _ranking_row(x1[i], x2[i], t[i], margin, scale, g1[i], g2[i], w1, w2)
    s = 0.0
    for i in range(n):
        s += values[i]
    return 0, s


pairs_parallel, pairs_serial = _builds(_pairs)
