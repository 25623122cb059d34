r"""Numba kernels of the row family (:mod:`losskit.kernels.rows`; imported only when numba is
installed, on the first call that wants it).

One driver, :func:`_drive`, sweeps the rows of a prediction ``(N, K)`` (in ``prange`` for
large inputs, serially for small ones) and calls the loss's **row function** on each:

``row(z, t, has_t, label, w, cw, par, g, f) -> (value, bad)``

``z``
    the row of the prediction (K,), float32 or float64;
``t``, ``has_t``
    the row of a same-shape target (probabilities, teacher logits), or a dummy;
``label``, ``w``
    the integer label (-1: ignored) and its weight :math:`w_{y}` (the class weight, 1
    without class weights, 0 when ignored);
``cw``
    the class weights (float64, K), or an empty array;
``par``
    the loss's parameters (float64);
``g``, ``f``
    where to write :math:`f\,\partial\ell/\partial z` (a scratch row when no gradient is
    wanted) and the factor ``f`` (the reduction's scale times the sample weight).

It returns the row's value :math:`\ell_n` (float64, class weights applied) and a flag set
when an input lies outside the loss's domain (the caller then lets the generic path
answer, which raises or, with ``validate=False``, computes). The driver does the rest once:
sample weights (a zero weight removes its row, ``inf`` and NaN included), the zero
gradient of a mean over nothing, per-row values and their float64 sum.

Each loss gets its own copy of the driver (:func:`kernels`): the copy's globals bind
``_row`` to the loss's row function, so that numba inlines it, and its qualified name is
the loss's, so that the on-disk cache keeps the builds apart (see
:func:`losskit.kernels.numba_kernels._builds`).
"""

from __future__ import annotations

import math
import types as pytypes

import numpy as np
from numba import njit, prange

from .numba_kernels import (_JIT, SHORT_ROW, NumbaError, _borrowed, _ce_row,
                            _ce_row_short, _exp, _exp_neg, _like, _log1p_unit, _log_unit,
                            _max_nan, _ordered_sum, _sum, scratch_rows, sum_rows)

__all__ = ["kernels", "ROWS", "NumbaError", "scratch_rows"]

_NAN = math.nan
_INF = math.inf
_LN2 = math.log(2.0)


# --------------------------------------------------------------------------- helpers
@njit(inline="always", **_JIT)
def _zero(g):
    for j in range(g.shape[0]):
        g[j] = 0


@njit(inline="always", **_JIT)
def _safe_log(s):
    """log(s) for s >= 0 (float64): log 0 = -inf, NaN propagates."""
    return math.log(s) if (s > 0.0 or s != s) else -_INF


@njit(inline="always", **_JIT)
def _log_prob(x):
    """log(x) of a probability (float64 result); exact C-library log outside [0, 1]."""
    return float(_log_unit(x)) if (x >= 0 and x <= 1) else _safe_log(float(x))


@njit(inline="always", **_JIT)
def _exp_unshifted(x, e, k):
    """e = exp(x) by the C library (a row whose maximum is NaN or infinite: the generic
    shift 0, as NumPy's ufuncs would); returns the float64 sum."""
    s = 0.0
    for j in range(k):
        v = math.exp(float(x[j]))
        e[j] = v
        s += v
    return s


@njit(**_JIT)
def _softmax_row(x, e, temp):
    """e = exp(x / temp - shift) (x's dtype); returns (shift, s = sum of e, float64).

    The generic shift: the row maximum, 0 when it is not finite (NaN, +inf, all -inf);
    those rows take the C library's exp, as NumPy's ufuncs would.
    """
    k = x.shape[0]
    src = x
    if temp != 1.0:
        tl = _like(x[0], temp)
        for j in range(k):
            e[j] = x[j] / tl
        src = e
    m, nan = _max_nan(src, k)
    if nan or not math.isfinite(m):
        return 0.0, _exp_unshifted(src, e, k)
    for j in range(k):
        e[j] = _exp_neg(src[j] - m)
    return float(m), _sum(e, k)


@njit(inline="always", **_JIT)
def _coef(j, t, has_t, label, w, cw, has_cw, e1, e2):
    r"""The target coefficient :math:`a_{c}` of class j (see ``losses/cross_entropy.py``)."""
    c = cw[j] if has_cw else 1.0
    if has_t:
        return c * (e1 * float(t[j]) + e2)
    a = e2 * c if label >= 0 else 0.0
    if j == label:
        a += e1 * w
    return a


@njit(inline="always", **_JIT)
def _outside(x, lo, hi):
    return (x < lo) | (x > hi)


@njit(**_JIT)
def _smoothed_ce_row(z, g, label, w, e1, e2, m, f):
    r""":func:`softmax_ce_row` of a hard label with label smoothing and no class weights,
    the row maximum m finite: the coefficients :math:`a_c = w e_2 + w e_1 [c = y]` sum to
    w, so the value is :math:`w (\log s - e_2 \sum_c (z_c - m) - e_1 (z_y - m))` and the
    gradient :math:`f w (p_c - e_2) - f w e_1 [c = y]`: loops without branches (they
    vectorise) instead of a coefficient per class."""
    k = z.shape[0]
    if w == 0.0:
        _zero(g)
        return 0.0
    for j in range(k):
        g[j] = _exp_neg(z[j] - _like(z[0], m))
    s = _sum(g, k)
    zsum = _sum(z, k)
    v = w * (math.log(s) - e2 * (zsum - k * m) - e1 * (float(z[label]) - m))
    c1 = _like(z[0], f * w / s)
    c0 = _like(z[0], f * w * e2)
    py = float(g[label]) / s
    for j in range(k):
        g[j] = c1 * g[j] - c0
    g[label] = _like(z[0], f * w * (py - e2 - e1))
    return v


# --------------------------------------------------------------------------- row functions
@njit(**_JIT)
def softmax_ce_row(z, t, has_t, label, w, cw, par, g, f):
    """Softmax cross-entropy: sum_c a_c (log s - (z_c - m)); gradient A p - a."""
    k = z.shape[0]
    eps = par[0]
    if not has_t and eps == 0.0:  # hard labels: the tuned row of fast_paths
        if label < 0 or w == 0.0:
            _zero(g)
            return 0.0, 0
        if k <= SHORT_ROW:
            v = _ce_row_short(z, g, label, f * w)
        else:
            v = _ce_row(z, g, label, f * w)
        return w * v, 0
    e1, e2 = 1.0 - eps, eps / k
    has_cw = cw.shape[0] > 0
    if not has_t and not has_cw and label >= 0:  # hard labels, smoothed: a_c = w e2 + ...
        m, nan = _max_nan(z, k)
        if not nan and math.isfinite(m):
            return _smoothed_ce_row(z, g, label, w, e1, e2, float(m), f), 0
    bad = False
    if has_t:
        for j in range(k):
            bad |= _outside(t[j], 0, 1)
    shift, s = _softmax_row(z, g, 1.0)
    log_s = _safe_log(s)
    total = 0.0
    v = 0.0
    for j in range(k):
        a = _coef(j, t, has_t, label, w, cw, has_cw, e1, e2)
        total += a
        if a != 0.0:
            v += a * (log_s - (float(z[j]) - shift))
    if total == 0.0:
        _zero(g)
    else:
        inv = 1.0 / s if (s > 0.0 and s < _INF) else _NAN
        for j in range(k):
            a = _coef(j, t, has_t, label, w, cw, has_cw, e1, e2)
            g[j] = _like(z[0], f * (total * (float(g[j]) * inv) - a))
    return v, int(bad)


@njit(**_JIT)
def nll_row(z, t, has_t, label, w, cw, par, g, f):
    """NLL of log-probabilities (any real value): -sum_c a_c z_c; gradient -a. Checks
    the target only."""
    k = z.shape[0]
    eps = par[0]
    bad = False
    if has_t:
        for j in range(k):
            bad |= _outside(t[j], 0, 1)
    if not has_t and eps == 0.0:
        _zero(g)
        if label < 0 or w == 0.0:
            return 0.0, int(bad)
        g[label] = _like(z[0], -f * w)
        return w * -float(z[label]), int(bad)
    e1, e2 = 1.0 - eps, eps / k
    has_cw = cw.shape[0] > 0
    v = 0.0
    for j in range(k):
        a = _coef(j, t, has_t, label, w, cw, has_cw, e1, e2)
        if a != 0.0:
            v -= a * float(z[j])
        g[j] = _like(z[0], -f * a)
    return v, int(bad)


@njit(**_JIT)
def cross_entropy_row(z, t, has_t, label, w, cw, par, g, f):
    """Cross-entropy of probabilities: -sum_c a_c log max(y_c, eps); gradient -a / y
    inside the clamp, 0 below it. Checks y (and t) in [0, 1]."""
    k = z.shape[0]
    eps, clamp = par[0], par[1]
    bad = False
    if not has_t and eps == 0.0:  # integer labels: one log per row, a loop that vectorises
        nz = _like(z[0], -0.0 * f)  # -a / y * f with a = 0 off the label (NaN stays NaN)
        for j in range(k):
            y = z[j]
            bad |= (y < 0) | (y > 1)
            g[j] = nz if y == y else y
        if label < 0:  # ignored: every coefficient 0, as above
            return 0.0, int(bad)
        y = float(z[label])
        inside = y >= clamp or y != y
        c = y if inside else clamp
        g[label] = _like(z[0], (-w / c) * f if inside else 0.0)
        return (-w * math.log(c) if w != 0.0 else 0.0), int(bad)
    e1, e2 = 1.0 - eps, eps / k
    has_cw = cw.shape[0] > 0
    v = 0.0
    for j in range(k):
        y = float(z[j])
        bad |= _outside(y, 0.0, 1.0)
        if has_t:
            bad |= _outside(t[j], 0, 1)
        a = _coef(j, t, has_t, label, w, cw, has_cw, e1, e2)
        inside = y >= clamp or y != y
        c = y if inside else clamp
        if a != 0.0:
            v -= a * math.log(c)
        g[j] = _like(z[0], (-a / c) * f if inside else 0.0)
    return v, int(bad)


@njit(**_JIT)
def brier_row(z, t, has_t, label, w, cw, par, g, f):
    """Brier score: sum_c (y_c - t_c)^2; gradient 2 (y - t); ignored labels give 0.
    Two loops that vectorise: the squares into g as scratch, summed; then the gradient
    and the domain checks."""
    k = z.shape[0]
    if not has_t and label < 0:
        bad = False
        for j in range(k):
            bad |= _outside(z[j], 0, 1)
        _zero(g)
        return 0.0, int(bad)
    one = _like(z[0], 1.0)
    zero = _like(z[0], 0.0)
    two_f = _like(z[0], 2.0 * f)
    for j in range(k):
        tj = t[j] if has_t else (one if j == label else zero)
        d = z[j] - tj
        g[j] = d * d
    v = _sum(g, k)
    bad = False
    for j in range(k):
        tj = t[j] if has_t else (one if j == label else zero)
        bad |= _outside(z[j], 0, 1)
        if has_t:
            bad |= _outside(tj, 0, 1)
        g[j] = two_f * (z[j] - tj)
    return v, int(bad)


@njit(**_JIT)
def multiclass_hinge_row(z, t, has_t, label, w, cw, par, g, f):
    """Weston-Watkins hinge: sum_{j != y} max(0, z_j - z_y + m); see losses/margin.py for
    the infinite and NaN scores. Two loops that vectorise: the active violations into g
    as scratch, summed; then the count of active classes and the gradient."""
    k = z.shape[0]
    if label < 0 or w == 0.0:
        _zero(g)
        return 0.0, 0
    sy = z[label]
    m = _like(sy, par[0])
    c = _like(sy, w * f)
    zero = _like(sy, 0.0)
    ynan = sy != sy
    for j in range(k):
        zj = z[j]
        viol = zj - sy + m
        act = ((viol > 0) | (zj != zj) | ynan) & (j != label)
        g[j] = viol if act else zero
    v = _sum(g, k)
    nan = ynan
    count = 0
    for j in range(k):
        zj = z[j]
        viol = zj - sy + m
        nj = zj != zj
        nan |= nj
        act = ((viol > 0) | nj | ynan) & (j != label)
        count += 1 if act else 0
        g[j] = c if act else zero
    if nan:
        for j in range(k):
            g[j] = _NAN
    else:
        g[label] = -count * c
    return w * v, 0


@njit(**_JIT)
def kl_row(z, t, has_t, label, w, cw, par, g, f):
    """KL divergence sum_c p_c (log p_c - log q_c): prediction log q (or q), target p (or
    log p); gradient -p (or -p / q). 0 log 0 = 0, NaN propagates."""
    k = z.shape[0]
    log_pred, log_target = par[0] != 0.0, par[1] != 0.0
    bad = False
    v = 0.0
    if log_pred and not log_target:  # the usual call: loops that vectorise
        zero = _like(z[0], 0.0)
        fl = _like(z[0], -f)
        for j in range(k):  # the terms, into g as scratch (the row stays in cache)
            lq = z[j]
            p = t[j]
            term = p * (_log_unit(p) - lq) if p > 0 else p * zero  # 0 log 0 = 0; NaN stays
            g[j] = term if lq == lq else lq
        v = _sum(g, k)  # float64, split over SIMD lanes
        for j in range(k):  # then the gradient, and the domain checks
            lq = z[j]
            p = t[j]
            bad |= _outside(p, 0, 1)  # outside: the generic path answers
            g[j] = p * fl if lq == lq else lq
        return v, int(bad)
    for j in range(k):
        zj = z[j]
        tj = t[j]
        if log_pred:  # any real log q
            log_q = float(zj)
        else:
            bad |= _outside(zj, 0, 1)
            log_q = _log_prob(zj)
        if log_target:
            bad |= tj > 0
            p = math.exp(float(tj))
            log_p = float(tj)
        else:
            bad |= _outside(tj, 0, 1)
            p = float(tj)
            log_p = _log_prob(tj)
        nan = (p != p) | (log_q != log_q)
        term = p * (log_p - log_q) if p > 0 else 0.0
        v += _NAN if nan else term
        if log_pred:
            gj = _NAN if zj != zj else -p
        else:
            q = float(zj)
            gj = (-p / q if q > 0 else -_INF) if p > 0 else 0.0
            gj = _NAN if (p != p) | (q != q) else gj
        g[j] = _like(zj, gj * f)
    return v, int(bad)


@njit(**_JIT)
def softmax_kl_row(z, t, has_t, label, w, cw, par, g, f):
    """Distillation: scale * KL(softmax(t/T) || softmax(z/T)); gradient scale/T (q - p)
    (scale/T ((sum p) q - p) for given probabilities, whose sum need not be 1).
    The terms go into a float64 scratch row and are summed after the loop, so that the
    loop vectorises (a probability target takes the branch-free log of numba_kernels;
    one outside [0, 1] sets ``bad`` and the generic path answers)."""
    k = z.shape[0]
    temp, t_logits, scale = par[0], par[1] != 0.0, par[2]
    tl = _like(z[0], temp)
    shift_q, s_q = _softmax_row(z, g, temp)
    log_sq = _safe_log(s_q)
    inv_q = 1.0 / s_q if (s_q > 0.0 and s_q < _INF) else _NAN
    bad = False
    terms = np.empty(k, dtype=np.float64)
    factor = f * scale / temp
    if t_logits:
        pb = np.empty(k, dtype=z.dtype)
        shift_p, s_p = _softmax_row(t, pb, temp)
        log_sp = _safe_log(s_p)
        inv_p = 1.0 / s_p if (s_p > 0.0 and s_p < _INF) else _NAN
        for j in range(k):
            zt = z[j] / tl if temp != 1.0 else z[j]
            log_q = (float(zt) - shift_q) - log_sq
            tt = t[j] / tl if temp != 1.0 else t[j]
            log_p = (float(tt) - shift_p) - log_sp
            p = float(pb[j]) * inv_p
            nan = (p != p) | (log_q != log_q)
            term = p * (log_p - log_q) if p > 0 else 0.0
            terms[j] = _NAN if nan else term
            q = float(g[j]) * inv_q
            g[j] = _like(z[0], factor * (q - p))
    else:  # given probabilities keep their sum: gradient (sum p) q - p
        mass = 0.0
        for j in range(k):
            zt = z[j] / tl if temp != 1.0 else z[j]
            log_q = (float(zt) - shift_q) - log_sq
            p = float(t[j])
            bad |= _outside(p, 0.0, 1.0)
            log_p = float(_log_unit(t[j]))
            nan = (p != p) | (log_q != log_q)
            term = p * (log_p - log_q) if p > 0 else 0.0
            terms[j] = _NAN if nan else term
            mass += p
        for j in range(k):
            q = float(g[j]) * inv_q
            g[j] = _like(z[0], factor * (mass * q - float(t[j])))
    return scale * _sum(terms, k), int(bad)


@njit(**_JIT)
def js_row(z, t, has_t, label, w, cw, par, g, f):
    """Jensen-Shannon divergence of probabilities q = z, p = t with m = (p + q) / 2:
    sum_c (p_c log(p_c/m_c) + q_c log(q_c/m_c)) / 2; gradient log(q/m)/2 (ln 2 / 2 where
    p = q = 0). One loop that vectorises (three branch-free logs of numba_kernels per
    element, in the input's dtype; the terms into a float64 scratch row summed after)."""
    k = z.shape[0]
    zero = _like(z[0], 0.0)
    half = _like(z[0], 0.5)
    half_ln2 = _like(z[0], 0.5 * _LN2)
    fl = _like(z[0], f)
    terms = np.empty(k, dtype=np.float64)
    bad = False
    for j in range(k):
        q = z[j]
        p = t[j]
        bad |= _outside(q, 0, 1) | _outside(p, 0, 1)  # outside: the generic path answers
        m = (p + q) * half
        lm = _log_unit(m)
        lq = _log_unit(q)
        hp = p * (_log_unit(p) - lm) if p > 0 else p * zero  # 0 log 0 = 0; NaN propagates
        hq = q * (lq - lm) if q > 0 else q * zero
        terms[j] = float(half * (hp + hq))
        gj = half * (lq - lm) if m > 0 else (half_ln2 if m == 0 else m)
        g[j] = (gj if p == p else p) * fl
    return _sum(terms, k), int(bad)


# --------------------------------------------------------------------------- focal, Poly-1
@njit(inline="always", **_JIT)
def _log1mexp(x):
    """log(1 - e^x) for x <= 0 (float64), as ``losses/focal.py``'s: log(-expm1(x)) above
    -ln 2, log1p(-exp(x)) below; 0 gives -inf, -inf gives 0, NaN propagates."""
    if x != x:
        return x
    if x > -_LN2:
        v = -math.expm1(x)
        return math.log(v) if v > 0.0 else -_INF
    return math.log1p(-math.exp(x))


@njit(**_JIT)
def _log_softmax_row(z, e):
    r"""e = exp(z - shift) (z's dtype); returns (shift, L, inv) with
    :math:`-\log p_c = L - (z_c - \text{shift})` and :math:`p_c = e_c \cdot \text{inv}`,
    as ``losses/focal.py``'s ``_softmax_and_log``: for a finite row maximum m,
    L = log1p(sum of e over every class but the first maximum) (full relative precision
    where p_y rounds to 1); otherwise the shared kernel's shift 0, L = log s, and
    p = NaN (s = 0 or inf) or NaN propagated."""
    k = z.shape[0]
    m, nan = _max_nan(z, k)
    if nan or not math.isfinite(m):
        s = _exp_unshifted(z, e, k)
        inv = 1.0 / s if (s > 0.0 and s < _INF) else _NAN
        return 0.0, _safe_log(s), inv
    top = 0
    while z[top] != m:
        top += 1
    for j in range(k):
        e[j] = _exp_neg(z[j] - m)
    et = e[top]
    e[top] = 0
    rest = _sum(e, k)
    e[top] = et
    return float(m), math.log1p(rest), 1.0 / (1.0 + rest)


@njit(inline="always", **_JIT)
def _focal_terms(b, nl, p, gm):
    r"""(b (1-p)^g (-log p), b f) of one class with coefficient b != 0, from
    nl = -log p and p: f = (1-p)^g (g p log p / (1 - p) - 1), with the limits of
    ``SoftmaxFocalLoss._compute`` (f = -1 at g = 0, p log p / (1-p) -> -1 at p = 1 and
    0 at p = 0, NaN log p propagates)."""
    if gm == 0.0:
        return b * nl, -b
    lp = -nl
    ug = math.exp(gm * _log1mexp(lp))
    pc = 0.0 if ug == 0.0 else ug * nl
    u = -math.expm1(lp)
    ratio = lp / u if u > 0.0 else -1.0
    p_ratio = p * ratio if p > 0.0 else 0.0
    f = ug * (gm * p_ratio - 1.0)
    if lp != lp:
        f = lp
    return b * pc, b * f


@njit(**_JIT)
def softmax_focal_row(z, t, has_t, label, w, cw, par, g, f):
    r"""Softmax focal loss: sum_c b_c (1-p_c)^g (-log p_c), b = alpha * (class weight *
    one-hot, or class weight * t); gradient b_j f_j (1 - p_j) - p_j sum_{c != j} b_c f_c
    (see ``losses/focal.py``). par = (gamma, has_alpha, alpha_0 .. alpha_{K-1})."""
    k = z.shape[0]
    gm, has_alpha = par[0], par[1] != 0.0
    has_cw = cw.shape[0] > 0
    bad = False
    if has_t:
        for j in range(k):
            bad |= _outside(t[j], 0, 1)
    elif label < 0:
        _zero(g)
        return 0.0, int(bad)
    shift, big_l, inv = _log_softmax_row(z, g)
    if not has_t:
        b = w * par[2 + label] if has_alpha else w
        if b == 0.0:
            _zero(g)
            return 0.0, 0
        nl = big_l - (float(z[label]) - shift)
        py = float(g[label]) * inv
        v, bf = _focal_terms(b, nl, py, gm)
        uy = -math.expm1(-nl)
        cj = _like(z[0], -(f * inv * bf))  # in z's dtype: the loop vectorises at full width
        for j in range(k):
            g[j] = cj * g[j]
        g[label] = _like(z[0], f * (bf * uy - py * (bf - bf)))
        return v, 0
    bfs = np.empty(k, dtype=np.float64)
    v = 0.0
    total = 0.0
    mass = 0.0
    for j in range(k):
        b = float(t[j])
        if has_cw:
            b *= cw[j]
        if has_alpha:
            b *= par[2 + j]
        mass += b
        bf = 0.0
        if b != 0.0:
            nl = big_l - (float(z[j]) - shift)
            vj, bf = _focal_terms(b, nl, float(g[j]) * inv, gm)
            v += vj
        bfs[j] = bf
        total += bf
    if mass == 0.0:
        _zero(g)
        return v, int(bad)
    for j in range(k):
        pj = float(g[j]) * inv
        bf = bfs[j]
        gj = -pj * total
        if bf != 0.0:
            nl = big_l - (float(z[j]) - shift)
            gj = bf * -math.expm1(-nl) - pj * (total - bf)
        g[j] = _like(z[0], f * gj)
    return v, int(bad)


@njit(**_JIT)
def poly_row(z, t, has_t, label, w, cw, par, g, f):
    r"""Poly-1: sum_c a_c (-log p_c + eps (1 - p_c)), a the target coefficients of
    ``softmax_cross_entropy``; gradient p_j (A - a_j) - a_j (1 - p_j)
    + eps p_j ((S - a_j p_j) - a_j (1 - p_j)) (see ``losses/focal.py``).
    par = (label_smoothing, epsilon)."""
    k = z.shape[0]
    sm, eps = par[0], par[1]
    e1, e2 = 1.0 - sm, sm / k
    has_cw = cw.shape[0] > 0
    bad = False
    if has_t:
        for j in range(k):
            bad |= _outside(t[j], 0, 1)
    elif label < 0 or (sm == 0.0 and w == 0.0):  # every coefficient is 0
        _zero(g)
        return 0.0, 0
    shift, big_l, inv = _log_softmax_row(z, g)
    if not has_t and sm == 0.0:  # hard labels: one coefficient a_y = w
        a = w
        nl = big_l - (float(z[label]) - shift)
        py = float(g[label]) * inv
        uy = -math.expm1(-nl)
        v = a * nl if eps == 0.0 else a * (nl + eps * uy)
        au = a * uy
        # j != y: p_j (A - a_j) - a_j u_j + eps p_j ((S - a_j p_j) - a_j u_j), S = a p_y
        c = a if eps == 0.0 else a + eps * (a * py)
        cj = _like(z[0], f * inv * c)  # in z's dtype: the loop vectorises at full width
        for j in range(k):
            g[j] = cj * g[j]
        gy = -au
        if eps != 0.0:
            gy += eps * py * ((a * py - a * py) - au)
        g[label] = _like(z[0], f * (py * (a - a) + gy))
        return v, 0
    mass = 0.0
    s = 0.0
    v = 0.0
    for j in range(k):
        a = _coef(j, t, has_t, label, w, cw, has_cw, e1, e2)
        if a != 0.0:
            mass += a
            nl = big_l - (float(z[j]) - shift)
            pc = nl if eps == 0.0 else nl + eps * -math.expm1(-nl)
            v += a * pc
            s += a * (float(g[j]) * inv)
    if mass == 0.0:
        _zero(g)
        return v, int(bad)
    for j in range(k):
        a = _coef(j, t, has_t, label, w, cw, has_cw, e1, e2)
        pj = float(g[j]) * inv
        gj = pj * mass
        if a != 0.0:
            au = a * -math.expm1(-(big_l - (float(z[j]) - shift)))
            ap = a * pj
            gj = pj * (mass - a) - au
            if eps != 0.0:
                gj += eps * pj * ((s - ap) - au)
        elif eps != 0.0:
            gj += eps * pj * s
        g[j] = _like(z[0], f * gj)
    return v, int(bad)


# --------------------------------------------------------------------------- sparsemax
@njit(**_JIT)
def _sparsemax_threshold(z, k, buf):
    r"""(ok, tau, m) of a row: m its maximum, tau the sparsemax threshold of z - m
    (float64), so that p_j = max(z_j - m - tau, 0) sums to 1. ok is False for a row
    with a NaN or +inf entry, or without a finite one (the generic path answers: NaN).
    ``buf``: float64 scratch of K.

    Michelot's fixed point (1986) from a superset of the support: p_j <= 1 puts tau at
    -1 or above, so only the entries v_j = z_j - m > -1 can be in the support (compacted
    into ``buf``: a few for spread-out scores). Then tau = (sum_S v - 1) / |S| and
    S = {v > tau}, repeated until S stays the same; tau only increases (a superset of
    the support gives a threshold below the true one) and each pass but the last removes
    an entry, so it ends after at most |S| passes: a handful in practice (8 for 1000
    standard normal scores, all within 1 of each other), quadratic only for contrived
    rows. No sort, no allocation but ``buf``.
    """
    m, nan = _max_nan(z, k)
    m = float(m)
    if nan or m == _INF or m == -_INF:
        return False, 0.0, 0.0
    n = 0
    s = 0.0
    for j in range(k):
        v = float(z[j]) - m
        if v > -1.0:
            buf[n] = v
            n += 1
            s += v
    tau = (s - 1.0) / n
    while True:
        n2 = 0
        s = 0.0
        for i in range(n):
            v = buf[i]
            if v > tau:
                buf[n2] = v
                n2 += 1
                s += v
        if n2 == n:  # the same set: tau is its threshold
            return True, tau, m
        n = n2
        tau = (s - 1.0) / n


@njit(**_JIT)
def sparsemax_row(z, t, has_t, label, w, cw, par, g, f):
    r"""Multi-class sparsemax loss: 1/2 ||p - t||^2 + sum_j t_j max(tau - z_j, 0) with
    p = max(z - tau, 0) (see ``losses/fenchel_young.py``); gradient p - t, for a label y
    p_y - 1 = -sum_{j != y} p_j. Checks target rows in [0, 1] summing to 1 within
    par[0]; rows with a NaN or +inf score, or no finite one: the generic path."""
    k = z.shape[0]
    bad = False
    if has_t:
        s = 0.0
        for j in range(k):
            tj = float(t[j])
            bad |= _outside(tj, 0.0, 1.0)
            s += tj
        bad |= not (abs(s - 1.0) <= par[0])
    elif label < 0 or w == 0.0:
        _zero(g)
        return 0.0, 0
    ok, tau, m = _sparsemax_threshold(z, k, np.empty(k, dtype=np.float64))
    if not ok:
        _zero(g)
        return 0.0, 1
    if not has_t:
        rest = 0.0
        sq = 0.0
        for j in range(k):
            pj = float(z[j]) - m - tau
            pj = pj if pj > 0.0 else 0.0
            if j != label:
                rest += pj
                sq += pj * pj
            g[j] = _like(z[0], f * w * pj)
        g[label] = _like(z[0], -f * w * rest)
        gap = tau - (float(z[label]) - m)
        return w * (0.5 * (sq + rest * rest) + (gap if gap > 0.0 else 0.0)), 0
    sq = 0.0
    lin = 0.0
    for j in range(k):
        v = float(z[j]) - m
        pj = v - tau
        pj = pj if pj > 0.0 else 0.0
        tj = float(t[j])
        d = pj - tj
        sq += d * d
        if tj != 0.0:
            gap = tau - v
            lin += tj * (gap if gap > 0.0 else 0.0)
        g[j] = _like(z[0], f * d)
    return 0.5 * sq + lin, int(bad)


@njit(inline="always", **_JIT)
def _gce_terms(p, q):
    """((1 - p^q) / q, p^(q - 1)) in float64: 0^q = 0, 0^(q-1) = inf for q < 1 (1 at
    q = 1), NaN propagates."""
    if p != p:
        return p, p
    if p > 0.0:
        lp = math.log(p)
        return (1.0 - math.exp(q * lp)) / q, (1.0 if q == 1.0 else math.exp((q - 1.0) * lp))
    return 1.0 / q, (1.0 if q == 1.0 else math.inf)


@njit(**_JIT)
def generalized_cross_entropy_row(z, t, has_t, label, w, cw, par, g, f):
    """Generalized cross-entropy of probabilities: sum_c a_c (1 - p_c^q) / q, gradient
    -a_c p_c^(q-1); a class with a_c = 0 gives 0 (its p NaN or 0 included). Labels: one
    power per row. Checks p (and t) in [0, 1]."""
    k = z.shape[0]
    q = par[0]
    bad = False
    if not has_t:
        zero = _like(z[0], 0.0)
        for j in range(k):
            bad |= _outside(z[j], 0, 1)
            g[j] = zero
        if label < 0 or w == 0.0:
            return 0.0, int(bad)
        v, d = _gce_terms(float(z[label]), q)
        g[label] = _like(z[0], -(w * d) * f)
        return w * v, int(bad)
    has_cw = cw.shape[0] > 0
    v = 0.0
    for j in range(k):
        bad |= _outside(z[j], 0, 1) | _outside(t[j], 0, 1)
        a = _coef(j, t, has_t, label, w, cw, has_cw, 1.0, 0.0)
        # the terms in a branch (a class with a = 0 computes none), the sum after it:
        # numba's parallel build (the row inlined in prange) fails on a sum assigned in a
        # branch after the inlined early returns; with a = 0 it adds 0
        vj = 0.0
        if a != 0.0:
            vj, dj = _gce_terms(float(z[j]), q)
            g[j] = _like(z[0], -(a * dj) * f)
        else:
            g[j] = _like(z[0], 0.0)
        v += a * vj
    return v, int(bad)


@njit(**_JIT)
def multiclass_perceptron_row(z, t, has_t, label, w, cw, par, g, f):
    """Multi-class perceptron: max_c z_c - z_y (0 where the label is among the best),
    gradient 1/n on each of the n tied best classes minus e_y; a NaN score makes the row
    NaN; an ignored label or a zero weight gives 0."""
    k = z.shape[0]
    zero = _like(z[0], 0.0) if k else 0.0
    if label < 0 or w == 0.0 or k == 0:
        for j in range(k):
            g[j] = zero
        return 0.0, 0
    top = z[0]
    nan = False
    for j in range(k):
        x = z[j]
        nan |= x != x
        top = max(top, x)  # (not a select of itself: numba's parallel build fails on it)
    if nan:
        for j in range(k):
            g[j] = _like(z[0], math.nan)
        return math.nan, 0
    correct = z[label]
    if correct >= top:
        for j in range(k):
            g[j] = zero
        return 0.0, 0
    n_top = 0
    for j in range(k):
        n_top += z[j] == top
    share = _like(z[0], w * f / n_top)
    for j in range(k):
        g[j] = share if z[j] == top else zero
    g[label] = _like(z[0], -w * f)  # not among the best
    return w * (float(top) - float(correct)), 0


@njit(**_JIT)
def multilabel_margin_row(z, t, has_t, label, w, cw, par, g, f):
    """PyTorch's multi-label margin loss: (1/K) sum_{j in Y} c_j sum_{i not in Y}
    max(0, m - x_j + x_i), Y the classes listed in t before its first negative entry (c_j
    times each); a NaN score makes the row NaN; an inf - inf pair is no violation. A
    target entry that is not an integer in [-1, K) is ``bad``."""
    k = z.shape[0]
    m = par[0]
    bad = False
    for j in range(k):
        tj = t[j]
        bad |= (tj < -1) | (tj > k - 1) | (tj != math.floor(tj))
    zero = _like(z[0], 0.0) if k else 0.0
    for j in range(k):
        g[j] = zero
    if bad or k == 0:
        return 0.0, int(bad)
    count = np.zeros(k, dtype=np.float64)
    for p in range(k):
        if t[p] < 0:
            break
        count[int(t[p])] += 1.0
    nan = False
    for j in range(k):
        nan |= z[j] != z[j]
    if nan:
        for j in range(k):
            g[j] = _like(z[0], math.nan)
        return math.nan, 0
    v = 0.0
    inv_k = 1.0 / k
    for j in range(k):
        cj = count[j]
        if cj == 0.0:
            continue
        xj = float(z[j])
        pull = 0.0
        for i in range(k):
            if count[i] != 0.0:
                continue
            h = m - xj + float(z[i])
            if h > 0.0:
                v += cj * h
                pull += 1.0
                g[i] += _like(z[0], cj * inv_k * f)
        g[j] -= _like(z[0], cj * pull * inv_k * f)
    return v * inv_k, 0


@njit(**_JIT)
def multilabel_soft_margin_row(z, t, has_t, label, w, cw, par, g, f):
    """PyTorch's multi-label soft margin: (1/K) sum_c w_c [t_c softplus(-x_c) + (1 - t_c)
    softplus(x_c)] (a zero coefficient gives 0, an infinite softplus included), gradient
    w_c (sigma(x_c) - t_c) / K; softplus(+-x) = max(+-x, 0) + log1p(e^{-|x|}). Checks t
    in [0, 1]. In the input's float type."""
    k = z.shape[0]
    has_cw = cw.shape[0] > 0
    zero = _like(z[0], 0.0) if k else 0.0
    one = _like(z[0], 1.0) if k else 1.0
    scale = _like(z[0], f / k) if k else 0.0
    bad = False
    for j in range(k):  # the per-class values, into g as scratch (two loops that vectorise)
        x = z[j]
        tj = t[j]
        bad |= _outside(tj, 0, 1)
        lg = _log1p_unit(_exp_neg(-abs(x)))
        sp_pos = (x if x > zero else zero) + lg
        sp_neg = (zero - x if x < zero else zero) + lg
        a = (tj * sp_neg if tj != zero else zero) + ((one - tj) * sp_pos if tj != one else zero)
        if has_cw:
            wc = _like(x, cw[j])
            a = wc * a if wc != zero else zero
        g[j] = a
    v = _sum(g, k)
    for j in range(k):
        x = z[j]
        e = _exp_neg(-abs(x))
        sig = (one if x >= zero else e) / (one + e)
        d = (sig - t[j]) * scale
        g[j] = _like(x, cw[j]) * d if has_cw else d
    return v / k if k else 0.0, int(bad)


#: the row functions by name (``RowSpec.row`` of :mod:`losskit.kernels.rows`)
ROWS = {
    "softmax_ce": softmax_ce_row, "nll": nll_row, "cross_entropy": cross_entropy_row,
    "brier": brier_row, "multiclass_hinge": multiclass_hinge_row, "kl": kl_row,
    "softmax_kl": softmax_kl_row, "js": js_row, "softmax_focal": softmax_focal_row,
    "poly": poly_row,
    "sparsemax": sparsemax_row, "generalized_cross_entropy": generalized_cross_entropy_row,
    "multiclass_perceptron": multiclass_perceptron_row,
    "multilabel_margin": multilabel_margin_row,
    "multilabel_soft_margin": multilabel_soft_margin_row,
}


# --------------------------------------------------------------------------- the driver
@njit(inline="always", **_JIT)
def _label_weight(label, ignore, has_ignore, cw, has_cw, k):
    """(label, weight) of a raw integer label: (-1, 0) when ignored, (-2, 0) when outside
    [0, K), else (label, its class weight or 1)."""
    if has_ignore and label == ignore:
        return -1, 0.0
    if label < 0 or label >= k:
        return -2, 0.0
    return label, (cw[label] if has_cw else 1.0)


def _drive(z, labels, ignore, has_ignore, t, has_t, cw, par, sw, has_sw, weighted_mean,
           scale, g, values, want_grad):
    """Every row of z (N, K) through ``_row`` (bound per loss, see :func:`kernels`).

    Integer labels (``has_t`` False) are checked and weighted here first, before anything
    is written: a label outside [0, K) that is not ``ignore`` makes the call return at
    once with ``bad`` set. With ``weighted_mean`` the reduction's scale is computed here
    too: 1 / sum_n s_n w_{y_n} (0 for a mean over nothing). Per-row values (times the
    sample weight; 0 where it is 0) go into ``values`` when it has N entries (reduction
    "none"; else it may be empty: the values are summed per block of :func:`sum_rows`
    rows and the blocks in order, so that nothing of the batch's size is allocated); the
    gradient scaled by ``scale`` times the sample weight into g (a zero row where that
    factor is 0). Without ``want_grad``, g holds one scratch row per block (the caller's,
    so that the kernel allocates nothing per row or block). Returns (rows outside the
    domain, float64 sum of the values, the scale used).
    """
    n, k = z.shape
    # views without reference counts: a count costs more than a short row (see _borrowed)
    z, t, cw, par, g = _borrowed(z), _borrowed(t), _borrowed(cw), _borrowed(par), _borrowed(g)
    has_cw = cw.shape[0] > 0
    if not has_t:
        total = 0.0
        for i in range(n):
            li, wi = _label_weight(labels[i], ignore, has_ignore, cw, has_cw, k)
            if li == -2:
                return 1, 0.0, scale
            if weighted_mean and wi != 0.0:
                total += wi * (sw[i] if has_sw else 1.0)
        if weighted_mean:
            scale = 1.0 / total if total != 0.0 else 0.0
    want_values = values.shape[0] == n
    per = sum_rows(k)
    blocks = (n + per - 1) // per
    partial = np.empty(blocks, dtype=np.float64)
    bad = 0
    for blk in prange(blocks):
        acc = 0.0
        for i in range(blk * per, min(n, (blk + 1) * per)):
            gi = g[i] if want_grad else g[blk]  # without a gradient: the block's scratch row
            ti = t[i] if has_t else t[0]
            if has_t:
                li, wi = 0, 1.0
            else:
                li, wi = _label_weight(labels[i], ignore, has_ignore, cw, has_cw, k)
            si = sw[i] if has_sw else 1.0
            f = scale * si
            v, b = _row(z[i], ti, has_t, li, wi, cw, par, gi, f)  # noqa: F821
            bad += b
            if want_grad and f == 0.0:
                for j in range(k):
                    gi[j] = 0
            vi = 0.0 if si == 0.0 else si * v
            if want_values:
                values[i] = vi
            acc += vi
        partial[blk] = acc
    return bad, _ordered_sum(partial), scale


_KERNELS: dict = {}


def kernels(name):
    """(parallel build, serial build) of the driver bound to the row function ``name``."""
    built = _KERNELS.get(name)
    if built is None:
        scope = dict(_drive.__globals__)
        # the row function inlined into its driver (numba's IR): on the borrowed views
        # numba then optimises the call away, 70 -> 13 us for 3200 NLL rows of 10 classes
        scope["_row"] = njit(inline="always", **_JIT)(ROWS[name].py_func)
        builds = []
        for parallel in (True, False):
            qual = f"_drive_{name}_{'parallel' if parallel else 'serial'}"
            copy = pytypes.FunctionType(_drive.__code__, scope, qual, _drive.__defaults__,
                                        _drive.__closure__)
            copy.__qualname__ = qual
            copy.__doc__ = _drive.__doc__
            builds.append(njit(parallel=parallel, **_JIT)(copy))
        built = _KERNELS[name] = tuple(builds)
    return built


# --------------------------------------------------------------------------- second order
#: rows per block of :func:`softmax_ce_second_order`
SECOND_ORDER_BLOCK = 2048


@njit(parallel=True, **_JIT)
def softmax_ce_second_order(z, labels, ignore, has_ignore, scale, g, h, want_grad):
    """Gradient ``p - onehot`` and the Hessian's diagonal ``p (1 - p)`` of the softmax
    cross-entropy of ``(n, k)`` logits with integer labels, times ``scale``: blocks of
    rows in ``prange``, each in three sweeps (row maxima, the exponentials of ``z - max``
    (the polynomial exp), then ``p`` and both outputs), which keeps a short class axis
    (gradient boosting's few classes) from costing a row's worth of overhead per element.
    An ignored row's outputs are 0; a row whose softmax is undefined (a +inf or NaN
    logit, every logit -inf) is NaN throughout, as the generic path's. Labels are assumed
    in range (the caller checks)."""
    n, k = z.shape
    zero = _like(z[0, 0], 0.0)
    sc = _like(z[0, 0], scale)
    for b in prange(-(-n // SECOND_ORDER_BLOCK)):
        lo = b * SECOND_ORDER_BLOCK
        hi = min(lo + SECOND_ORDER_BLOCK, n)
        m = np.empty(hi - lo, dtype=z.dtype)
        s = np.empty(hi - lo, dtype=z.dtype)
        for r in range(lo, hi):
            mm = z[r, 0]
            for j in range(1, k):
                v = z[r, j]
                mm = v if (v > mm) | (v != v) else mm
            m[r - lo] = mm
        for r in range(lo, hi):
            mm = m[r - lo]
            acc = zero
            for j in range(k):
                e = _exp(z[r, j] - mm)
                h[r, j] = e
                acc += e
            s[r - lo] = acc
        for r in range(lo, hi):
            label = labels[r]
            skip = has_ignore and label == ignore
            mm = m[r - lo]
            ok = (mm - mm == zero) and (s[r - lo] > zero)  # a finite maximum
            inv = 1.0 / s[r - lo] if ok else _like(z[0, 0], math.nan)
            for j in range(k):
                p = h[r, j] * inv
                if want_grad:
                    g[r, j] = zero if skip else (p - 1.0 if j == label else p) * sc
                h[r, j] = zero if skip else p * (1.0 - p) * sc
    return 0


@njit(parallel=True, **_JIT)
def softmax_ce_second_order_columns(zt, labels, ignore, has_ignore, scale, gt, ht,
                                    want_grad):
    """:func:`softmax_ce_second_order` for class-major scores ``zt`` of shape ``(k, n)``
    (the transpose of column-major ``(n, k)`` scores, LightGBM's layout), writing the
    class-major ``gt`` and ``ht``: every sweep runs along the rows of a block, contiguous,
    so that it vectorises."""
    k, n = zt.shape
    zero = _like(zt[0, 0], 0.0)
    sc = _like(zt[0, 0], scale)
    nan = _like(zt[0, 0], math.nan)
    for b in prange(-(-n // SECOND_ORDER_BLOCK)):
        lo = b * SECOND_ORDER_BLOCK
        hi = min(lo + SECOND_ORDER_BLOCK, n)
        w = hi - lo
        m = zt[0, lo:hi].copy()
        for j in range(1, k):
            row = zt[j, lo:hi]
            for i in range(w):
                v = row[i]
                m[i] = v if (v > m[i]) | (v != v) else m[i]
        s = np.zeros(w, dtype=zt.dtype)
        for j in range(k):
            row = zt[j, lo:hi]
            out = ht[j, lo:hi]
            for i in range(w):
                e = _exp(row[i] - m[i])
                out[i] = e
                s[i] += e
        inv = np.empty(w, dtype=zt.dtype)
        skip = np.empty(w, dtype=np.bool_)
        for i in range(w):
            ok = (m[i] - m[i] == zero) and (s[i] > zero)  # a finite maximum
            inv[i] = 1.0 / s[i] if ok else nan
            skip[i] = has_ignore and labels[lo + i] == ignore
        for j in range(k):
            hrow = ht[j, lo:hi]
            grow = gt[j, lo:hi] if want_grad else hrow
            for i in range(w):
                p = hrow[i] * inv[i]
                if want_grad:
                    gv = (p - 1.0 if j == labels[lo + i] else p) * sc
                    grow[i] = zero if skip[i] else gv
                hv = p * (1.0 - p) * sc
                hrow[i] = zero if skip[i] else hv
    return 0
