r"""Numba kernels of the pair/triplet family (imported lazily by :mod:`losskit.kernels.pairs`).

Row drivers (:func:`_contrastive`, :func:`_triplet`, :func:`_cosine`)
    Rows of D features in fixed blocks of ``max(1, BLOCK // D)`` rows, the blocks in
    ``prange`` (the parallel build) or in order (the serial build, see
    :func:`losskit.kernels.numba_kernels._builds`). Per row, the value of the row
    (float64) and, for every differentiable input whose bit is set in ``w``, its gradient
    row (already multiplied by the reduction's ``scale``), written straight into the
    caller's gradient. Each block sums its rows' values in float64, in row order; the
    total is the sum of the block sums in block order, so it depends on neither the
    thread count nor the build. Per-row values are stored (in the input's dtype) only
    when asked for (``reduction="none"``).
:func:`_ranking` (margin_ranking, elementwise)
    The flat scores in blocks of :data:`~losskit.kernels.numba_kernels.BLOCK` elements,
    the block structure of the elementwise kernels of ``numba_kernels``: one vectorised
    loop writes the value and both gradients, then the block's values are summed in
    float64 while in cache.

Every driver checks the labels in the same sweep (a count of labels that are not one of
the loss's two values, NaN included); with any, the caller discards the result and runs
the generic path, which raises.

Each loss has a *fast branch* for the common case (``p = 2`` with squared distances in
``(ss_lo, inf)``; finite sums and r > 0 for the cosine), two sweeps over the row (sums,
then gradient) that vectorise, written out in the driver's row loop, and an *exact
branch* (``_*_exact``) that restates the generic kernel's
(:func:`losskit.losses.metric_learning._lp_norm`) formulas element by element for every
other case (``p = 1``, ``p = inf``, other degrees, a zero or tiny distance, NaN,
infinities). Sums accumulate in float64, also for float32 rows; per-element arithmetic of
the fast branch stays in the input's dtype. Row code indexes the 2-D arrays by row
(``x[i, j]``) and takes no row views: a view, or a call of a function with array
arguments per row, makes numba count references to the arrays on every row, which at
10 features costs more than the row's arithmetic.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaError

from .numba_kernels import _JIT, BLOCK, _builds, _like, _ordered_sum, _sum

__all__ = ["contrastive_parallel", "contrastive_serial", "triplet_parallel", "triplet_serial",
           "cosine_parallel", "cosine_serial", "ranking_parallel", "ranking_serial", "BLOCK",
           "NumbaError"]

# the sums: reassociation only, so that LLVM splits them over SIMD lanes (as NumPy's
# pairwise sum reorders too); NaN and infinities keep their meaning
_JIT_SUM = {"cache": True, "error_model": "numpy", "fastmath": {"contract", "reassoc"}}
# the exact branch: no contraction either, so that its float64 arithmetic is the generic
# kernel's, operation for operation (its sums run left to right, as NumPy's pairwise sum
# does for rows of fewer than 8 entries)
_JIT_EXACT = {"cache": True, "error_model": "numpy"}


# --------------------------------------------------------------------------- sums
@njit(**_JIT_SUM)
def _ss1(a, b, i, e):
    """float64 sum of (a[i] - b[i] + e)^2 (the difference rounded in the dtype)."""
    s = 0.0
    for j in range(a.shape[1]):
        v = float(a[i, j] - b[i, j] + e)
        s += v * v
    return s


@njit(**_JIT_SUM)
def _ss2(a, p, n, i, e):
    """float64 sums of (a[i] - p[i] + e)^2 and (a[i] - n[i] + e)^2 in one sweep."""
    s1 = 0.0
    s2 = 0.0
    for j in range(a.shape[1]):
        v = float(a[i, j] - p[i, j] + e)
        w = float(a[i, j] - n[i, j] + e)
        s1 += v * v
        s2 += w * w
    return s1, s2


@njit(**_JIT_SUM)
def _dots(x, y, i):
    """float64 sums of x[i] y[i], x[i]^2, y[i]^2 in one sweep."""
    s = 0.0
    aa = 0.0
    bb = 0.0
    for j in range(x.shape[1]):
        u = float(x[i, j])
        v = float(y[i, j])
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
def _norm_exact(a, b, i, e, p):
    """(||a[i] - b[i] + e||_p, ties) as the generic ``_lp_norm``: NaN in the row gives NaN
    (p != 1), inf an inf norm, 0 at v = 0; ``ties``: the count of the largest entries
    (``p = inf``, for the shared gradient)."""
    d = a.shape[1]
    if p == 1.0:
        s = 0.0
        for j in range(d):
            s += abs(float(a[i, j] - b[i, j] + e))
        return s, 1.0
    m = 0.0
    nan = False
    for j in range(d):
        v = abs(float(a[i, j] - b[i, j] + e))
        nan |= v != v
        m = v if v > m else m
    if nan:
        return math.nan, 1.0
    if p == math.inf:
        ties = 0.0
        for j in range(d):
            ties += 1.0 if abs(float(a[i, j] - b[i, j] + e)) == m else 0.0
        return m, ties
    if math.isinf(m) or m == 0.0:
        return m, 1.0
    s = 0.0
    if p == 2.0:
        for j in range(d):
            r = abs(float(a[i, j] - b[i, j] + e)) / m
            s += r * r
        return m * math.sqrt(s), 1.0
    for j in range(d):
        s += (abs(float(a[i, j] - b[i, j] + e)) / m) ** p
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
def _contrastive_exact(x1, x2, i, t, margin, p, scale, g1, g2, w1, w2):
    """Row i of contrastive by the exact branch (every p, d = 0, NaN, infinities):
    t d^2 / 2 + (1 - t) max(0, m - d)^2 / 2, d = ||x1[i] - x2[i]||_p; dl/dx1 = -dl/dx2 =
    (t d - (1 - t) max(0, m - d)) dd/dv."""
    n = x1.shape[1]
    zero = _like(x1[i, 0], 0.0)
    similar = t == 1
    d, ties = _norm_exact(x1, x2, i, zero, p)
    h = margin - d
    h = h if (h > 0.0 or h != h) else 0.0
    value = 0.5 * (d * d) if similar else 0.5 * (h * h)
    coef = d if similar else -h
    if w1 or w2:
        for j in range(n):
            gj = 0.0 if coef == 0.0 else coef * _norm_grad(float(x1[i, j] - x2[i, j]), d, p,
                                                           ties)
            gj *= scale
            if w1:
                g1[i, j] = gj
            if w2:
                g2[i, j] = 0.0 - gj
    return value


# --------------------------------------------------------------------------- triplet
@njit(**_JIT)
def _triplet_exact(a, pp, nn, i, margin, p, e, swap, scale, ga, gp, gn, wa, wp, wn):
    """Row i of triplet_margin by the exact branch (every p, zero distances, NaN,
    infinities): max(0, m + d(a, p) - d(a, n)), d(x, y) = ||x - y + eps||_p; with
    ``swap``, d(a, n) is replaced by d(p, n) when that is smaller (a tie shares the
    gradient)."""
    n = a.shape[1]
    d_ap, t_ap = _norm_exact(a, pp, i, e, p)
    d_an, t_an = _norm_exact(a, nn, i, e, p)
    d_pn, t_pn = _norm_exact(pp, nn, i, e, p) if swap else (0.0, 1.0)
    d_neg = d_pn if (swap and d_pn < d_an) else d_an
    s = margin + d_ap - d_neg
    active = s > 0.0 or s != s
    if wa or wp or wn:
        w = 1.0 if not swap else (1.0 if d_an < d_pn else (0.5 if d_an == d_pn else 0.0))
        for j in range(n):
            if not active:
                x, y, z = 0.0, 0.0, 0.0
            else:
                g_ap = _norm_grad(float(a[i, j] - pp[i, j] + e), d_ap, p, t_ap)
                g_an = w * _norm_grad(float(a[i, j] - nn[i, j] + e), d_an, p, t_an)
                g_pn = (1.0 - w) * _norm_grad(float(pp[i, j] - nn[i, j] + e), d_pn, p, t_pn) \
                    if swap else 0.0
                x, y, z = (g_ap - g_an) * scale, (0.0 - g_ap - g_pn) * scale, \
                    (g_an + g_pn) * scale
            if wa:
                ga[i, j] = x
            if wp:
                gp[i, j] = y
            if wn:
                gn[i, j] = z
    return s if active else 0.0


# --------------------------------------------------------------------------- cosine
@njit(**_JIT)
def _cosine_exact(x1, x2, i, y, margin, eps, scale, g1, g2, w1, w2):
    """Row i of cosine_embedding with a NaN or infinite sum, or r = 0 (eps = 0 and a zero
    vector), by the generic formulas, element by element: 1 - cos (y = 1) or
    max(0, cos - m) (y = -1), cos = x1.x2 / r, r = sqrt((|x1|^2 + eps)(|x2|^2 + eps));
    dcos/dx1 = x2 / r - cos x1 / A."""
    n = x1.shape[1]
    s, aa, bb = _dots(x1, x2, i)
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
    r_safe = r if ok else 1.0
    a_safe = a_sq if a_sq > 0.0 else 1.0
    b_safe = b_sq if b_sq > 0.0 else 1.0
    for j in range(n):
        u = float(x1[i, j])
        v = float(x2[i, j])
        g_1 = 0.0 if coef == 0.0 else coef * (v / r_safe - cos * u / a_safe) * scale
        g_2 = 0.0 if coef == 0.0 else coef * (u / r_safe - cos * v / b_safe) * scale
        if w1:
            g1[i, j] = g_1
        if w2:
            g2[i, j] = g_2
    return value


# --------------------------------------------------------------------------- the row drivers
# One driver per loss, all alike: the rows of x1, x2 (, x3) (N, D) in blocks of
# :func:`_rows` rows, the blocks in ``prange``. Gradients (scaled) go into g1, g2 (, g3)
# for the bits 1, 2 (, 4) of ``w`` (an unwritten one may be any 2-D dummy); per-row
# values, rounded to the dtype, into ``values`` when it has N entries (else it is a
# dummy); ``t``: the labels (N,) in the dtype. Each returns (the number of labels that
# are not one of the loss's two values, NaN included; the float64 sum of the values:
# each block's rows in order, then the blocks in order).
#
# Per block, a first loop runs every row's fast branch, written out in the loop itself,
# and leaves NaN for the rows it declines (the fast branches never give NaN); a second
# loop, only when there are such rows, runs their exact branch (a function: it is rare).
# The fast branch is not a function of its own: numba then counts references to every
# array argument on each call (inline="always" too), which at D = 10 costs as much as
# the row's arithmetic.

@njit(**_JIT)
def _block_total(vb, values, lo, want_values):
    """The float64 sum of a block's row values, in order; the values into ``values``."""
    s = 0.0
    for k in range(vb.shape[0]):
        s += vb[k]
    if want_values:
        for k in range(vb.shape[0]):
            values[lo + k] = vb[k]
    return s


@njit(**_JIT)
def _rows(x):
    """Rows per block: BLOCK elements' worth, at least one row. A function of D alone, so
    the blocks, and so the sums, do not depend on the thread count."""
    return max(1, BLOCK // x.shape[1])


def _contrastive(x1, x2, t, margin, p, ss_lo, scale, g1, g2, w, values):
    """Contrastive: fast branch for p = 2 and ss_lo < d^2 < inf (see _contrastive_exact)."""
    n = x1.shape[0]
    rows = _rows(x1)
    nblocks = (n + rows - 1) // rows
    partial = np.empty(nblocks, dtype=np.float64)
    want_values = values.shape[0] == n
    w1 = (w & 1) != 0
    w2 = (w & 2) != 0
    zero = _like(x1[0, 0], 0.0)
    bad = 0
    for b in prange(nblocks):
        lo = b * rows
        hi = min(lo + rows, n)
        vb = np.empty(hi - lo, dtype=np.float64)
        nbad = 0
        declined = 0
        for i in range(lo, hi):
            ti = t[i]
            nbad += 0 if (ti == 1 or ti == 0) else 1
            value = math.nan
            if p == 2.0:
                ss = _ss1(x1, x2, i, zero)
                if ss > ss_lo and ss < math.inf:  # 0 < d < inf, no NaN
                    d = math.sqrt(ss)
                    if ti == 1:
                        value, coef = 0.5 * (d * d), d
                    else:
                        h = margin - d
                        h = h if h > 0.0 else 0.0
                        value, coef = 0.5 * (h * h), -h
                    if w1 or w2:
                        c = _like(zero, coef / d * scale)
                        for j in range(x1.shape[1]):
                            gj = (x1[i, j] - x2[i, j]) * c
                            if w1:
                                g1[i, j] = gj
                            if w2:
                                g2[i, j] = zero - gj
            vb[i - lo] = value
            declined += 1 if value != value else 0
        if declined:
            for i in range(lo, hi):
                if vb[i - lo] != vb[i - lo]:
                    vb[i - lo] = _contrastive_exact(x1, x2, i, t[i], margin, p, scale, g1, g2,
                                                    w1, w2)
        partial[b] = _block_total(vb, values, lo, want_values)
        bad += nbad
    return bad, _ordered_sum(partial)


def _triplet(a, pp, nn, margin, p, eps, swap, ss_lo, scale, ga, gp, gn, w, values):
    """Triplet: fast branch for p = 2 and every squared distance in (ss_lo, inf) (see
    _triplet_exact); ``eps`` a Python float, rounded to the dtype here as the generic
    kernel's arithmetic does."""
    n = a.shape[0]
    d = a.shape[1]
    rows = _rows(a)
    nblocks = (n + rows - 1) // rows
    partial = np.empty(nblocks, dtype=np.float64)
    want_values = values.shape[0] == n
    wa = (w & 1) != 0
    wp = (w & 2) != 0
    wn = (w & 4) != 0
    e = _like(a[0, 0], eps)
    for b in prange(nblocks):
        lo = b * rows
        hi = min(lo + rows, n)
        vb = np.empty(hi - lo, dtype=np.float64)
        declined = 0
        for i in range(lo, hi):
            value = math.nan
            if p == 2.0:
                ss_ap, ss_an = _ss2(a, pp, nn, i, e)
                ss_pn = _ss1(pp, nn, i, e) if swap else 1.0
                if (ss_ap > ss_lo and ss_ap < math.inf and ss_an > ss_lo
                        and ss_an < math.inf and ss_pn > ss_lo and ss_pn < math.inf):
                    d_ap = math.sqrt(ss_ap)
                    d_an = math.sqrt(ss_an)
                    d_pn = math.sqrt(ss_pn) if swap else math.inf
                    s = margin + d_ap - (d_pn if d_pn < d_an else d_an)
                    active = s > 0.0
                    value = s if active else 0.0
                    if (wa or wp or wn) and not active:
                        for j in range(d):
                            if wa:
                                ga[i, j] = 0
                            if wp:
                                gp[i, j] = 0
                            if wn:
                                gn[i, j] = 0
                    elif wa or wp or wn:
                        f = 1.0 if d_an < d_pn else (0.5 if d_an == d_pn else 0.0)
                        c_ap = _like(e, scale / d_ap)
                        c_an = _like(e, scale * f / d_an)
                        c_pn = _like(e, scale * (1.0 - f) / d_pn)
                        for j in range(d):
                            v_ap = a[i, j] - pp[i, j] + e
                            v_an = a[i, j] - nn[i, j] + e
                            if wa:
                                ga[i, j] = v_ap * c_ap - v_an * c_an
                            if wp or wn:
                                t_pn = (pp[i, j] - nn[i, j] + e) * c_pn if swap else e * 0
                                if wp:
                                    gp[i, j] = -(v_ap * c_ap) - t_pn
                                if wn:
                                    gn[i, j] = v_an * c_an + t_pn
            vb[i - lo] = value
            declined += 1 if value != value else 0
        if declined:
            for i in range(lo, hi):
                if vb[i - lo] != vb[i - lo]:
                    vb[i - lo] = _triplet_exact(a, pp, nn, i, margin, p, e, swap, scale, ga,
                                                gp, gn, wa, wp, wn)
        partial[b] = _block_total(vb, values, lo, want_values)
    return 0, _ordered_sum(partial)


def _cosine(x1, x2, t, margin, eps, scale, g1, g2, w, values):
    """Cosine embedding: fast branch where the sums are finite and r > 0 (then cos is
    finite; see _cosine_exact); ``eps`` rounded to the dtype as the generic kernel's."""
    n = x1.shape[0]
    rows = _rows(x1)
    nblocks = (n + rows - 1) // rows
    partial = np.empty(nblocks, dtype=np.float64)
    want_values = values.shape[0] == n
    w1 = (w & 1) != 0
    w2 = (w & 2) != 0
    ef = float(_like(x1[0, 0], eps))
    bad = 0
    for b in prange(nblocks):
        lo = b * rows
        hi = min(lo + rows, n)
        vb = np.empty(hi - lo, dtype=np.float64)
        nbad = 0
        declined = 0
        for i in range(lo, hi):
            y = t[i]
            nbad += 0 if (y == 1 or y == -1) else 1
            value = math.nan
            s, aa, bb = _dots(x1, x2, i)
            a_sq = aa + ef
            b_sq = bb + ef
            r = math.sqrt(a_sq) * math.sqrt(b_sq)
            if r > 0.0 and r < math.inf and s - s == 0.0:  # s - s: NaN for NaN and +-inf
                cos = s / r
                similar = y == 1
                h = cos - margin
                active = h > 0.0
                value = 1.0 - cos if similar else (h if active else 0.0)
                coef = -1.0 if similar else (1.0 if active else 0.0)
                if (w1 or w2) and coef == 0.0:
                    for j in range(x1.shape[1]):
                        if w1:
                            g1[i, j] = 0
                        if w2:
                            g2[i, j] = 0
                elif w1 or w2:  # r > 0: a_sq, b_sq > 0
                    c_r = _like(x1[i, 0], coef * scale / r)
                    c_a = _like(x1[i, 0], coef * scale * cos / a_sq)
                    c_b = _like(x1[i, 0], coef * scale * cos / b_sq)
                    for j in range(x1.shape[1]):
                        if w1:
                            g1[i, j] = x2[i, j] * c_r - x1[i, j] * c_a
                        if w2:
                            g2[i, j] = x1[i, j] * c_r - x2[i, j] * c_b
            vb[i - lo] = value
            declined += 1 if value != value else 0
        if declined:
            for i in range(lo, hi):
                if vb[i - lo] != vb[i - lo]:
                    vb[i - lo] = _cosine_exact(x1, x2, i, t[i], margin, ef, scale, g1, g2, w1,
                                               w2)
        partial[b] = _block_total(vb, values, lo, want_values)
        bad += nbad
    return bad, _ordered_sum(partial)


contrastive_parallel, contrastive_serial = _builds(_contrastive)
triplet_parallel, triplet_serial = _builds(_triplet)
cosine_parallel, cosine_serial = _builds(_cosine)


# --------------------------------------------------------------------------- margin ranking
def _ranking(x1, x2, y, margin, scale, g1, g2, w, values, want_values):
    """max(0, m - y (x1 - x2)) over flat scores in blocks of BLOCK elements; dl/dx1 =
    -dl/dx2 = -y where active (NaN where the value is NaN), times ``scale``, into g1 and g2
    for the bits 1 and 2 of ``w`` (an unwritten one may be any 1-D dummy); values in the
    dtype into ``values`` when ``want_values``. Returns (the number of labels other than
    +-1, NaN included; the float64 sum of the values, by blocks)."""
    n = x1.shape[0]
    nblocks = (n + BLOCK - 1) // BLOCK
    partial = np.empty(nblocks, dtype=np.float64)
    w1 = (w & 1) != 0
    w2 = (w & 2) != 0
    bad = 0
    for b in prange(nblocks):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        m = hi - lo
        ab, bb, yb = x1[lo:hi], x2[lo:hi], y[lo:hi]
        # distinct arrays, every one stored unconditionally: the loop then vectorises
        vb = values[lo:hi] if want_values else np.empty(m, dtype=x1.dtype)
        g1b = g1[lo:hi] if w1 else np.empty(m, dtype=x1.dtype)
        g2b = g2[lo:hi] if w2 else np.empty(m, dtype=x1.dtype)
        zero = _like(ab[0], 0.0)
        one = _like(ab[0], 1.0)
        mg = _like(ab[0], margin)
        sc = _like(ab[0], scale)
        for j in range(m):
            yj = yb[j]
            s = mg - yj * (ab[j] - bb[j])
            active = (s > zero) | (s != s)
            v = s if active else zero
            g = -yj if active else zero
            g = (v if v != v else g) * sc
            vb[j] = v
            g1b[j] = g
            g2b[j] = zero - g
        partial[b] = _sum(vb, m)
        nb = 0
        for j in range(m):  # a loop of its own: the main one then still vectorises
            nb += 0 if (yb[j] == one) | (yb[j] == -one) else 1
        bad += nb
    return bad, _sum(partial, nblocks)


ranking_parallel, ranking_serial = _builds(_ranking)
