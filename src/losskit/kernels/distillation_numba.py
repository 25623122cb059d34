r"""Numba kernels of the token-level distillation losses, one row (token) at a time.

:func:`tvd_block_parallel` / :func:`tvd_block_serial`: ``tvd_loss`` per row,
:math:`D = \tfrac12 \sum |P - Q|` and, with ``want_grad``, the gradient row
:math:`f \cdot \tfrac12 P (\sigma - \sum \sigma P)`, :math:`\sigma = \operatorname{sign}
(P - Q)` (see :class:`losskit.losses.distillation.TVDLoss`), written into ``g``;
:func:`jsd_copy_block_parallel` / :func:`jsd_copy_block_serial`: ``generalized_jsd`` per
row, the row kernel below without biases or hard loss. Both read the logits and work on
copies of each row (per-thread scratch rows: no block-sized temporaries). A row whose
maximum is NaN or infinite gets a NaN value, as below.

The elementwise step of ``linear_generalized_jsd`` (and of ``generalized_jsd``) on NumPy
blocks:

:func:`jsd_block_parallel` / :func:`jsd_block_serial` take a block of the student's and
the teacher's logits, ``zs`` and ``zt`` (k, V), and the heads' biases, and do per row what
the in-place NumPy tiles of :mod:`losskit.losses.linear_distillation` do with ufuncs, in
one ``prange`` over groups of rows (the parallel build) or in order. Per row, with :math:`m_s, m_t` the row
maxima, :math:`x = (z_s - m_s)/T`, :math:`u = (z_t - m_t)/T`, :math:`S = \sum e^x`,
:math:`S_t = \sum e^u`, :math:`P = e^x / S` and :math:`Q = e^u / S_t`:

* :math:`\beta = 0`: :math:`D = \sum Q (u - x) + \log S - \log S_t` (KL(Q||P)),
  :math:`g = (P - Q)/T`;
* :math:`\beta = 1`: with :math:`r = x - u` and :math:`c = \sum P r`,
  :math:`D = c - \log S + \log S_t` (KL(P||Q)), :math:`g = P (r - c)/T`;
* otherwise, with :math:`\log M = \log\max(P + \beta (Q - P), \text{tiny})`,
  :math:`r = x - \log M` and :math:`c = \sum P r`:
  :math:`D = \beta(\sum Q (u - \log M) - \log S_t) + (1-\beta)(c - \log S)`,
  :math:`g = (1-\beta) P (r - c)/T`;

and the hard loss :math:`\log\sum e^{z_s - m_s} - (z_{s,y} - m_s)` with its gradient
:math:`\operatorname{softmax}(z_s) - e_y` (the softmax is :math:`P` itself when
:math:`T = 1`). The row's value :math:`w_h \cdot \text{hard} + w_s D` goes to
``values``; with ``want_grad``, ``zs`` becomes :math:`f\,(w_h (\operatorname{softmax}(z_s)
- e_y) + w_s g)` with the row factor :math:`f` of ``rf``. ``zt`` is scratch.

A row whose maximum (of either block) is NaN or infinite gets a NaN value and an
unspecified gradient row: the caller redoes the rows whose value is not finite (also
those that come out non-finite here, such as rows with ``-inf`` logits) with the exact
log-space helpers, as it does for its NumPy tiles. ``exp`` and ``log`` are the vectorised
:func:`~losskit.kernels.numba_kernels._exp_neg` and ``_log_unit``; sums accumulate in
float64 (``fastmath`` off, but for contraction into fused multiply-adds and the
reassociation of the sums).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaError

from .numba_kernels import _JIT, _builds, _exp_neg, _like, _log_unit, _max_nan, _sum

__all__ = ["jsd_block_parallel", "jsd_block_serial", "tvd_block_parallel",
           "tvd_block_serial", "jsd_copy_block_parallel", "jsd_copy_block_serial",
           "NumbaError", "ROWS"]

#: rows per group of the ``prange`` (each group allocates its own scratch rows)
ROWS = 4


@njit(**_JIT)
def _jsd_row(zs, zt, bs, bt, y, f, want_grad, beta, temp, w_hard, w_soft, E, F, H):
    """One row (see the module); ``E``, ``F``, ``H`` are scratch rows of length V.
    Returns the row's value (float64; NaN for a row with a non-finite maximum)."""
    v = zs.shape[0]
    if bs.shape[0] == v:  # the biases, added while the row comes into the cache
        for j in range(v):
            zs[j] += bs[j]
    if bt.shape[0] == v:
        for j in range(v):
            zt[j] += bt[j]
    ms, nan_s = _max_nan(zs, v)
    mt, nan_t = _max_nan(zt, v)
    if nan_s or nan_t or not math.isfinite(ms) or not math.isfinite(mt):
        return math.nan
    inv_t = _like(ms, 1.0 / temp)
    zy = float(zs[y] - ms)
    hard_p1 = w_hard != 0.0 and temp != 1.0  # the hard loss's own softmax, in H
    value = 0.0
    s1 = 1.0
    if hard_p1:
        for j in range(v):
            H[j] = _exp_neg(zs[j] - ms)
        s1 = _sum(H, v)
        value = w_hard * (math.log(s1) - zy)
    for j in range(v):
        x = (zs[j] - ms) * inv_t
        u = (zt[j] - mt) * inv_t
        zs[j] = x
        zt[j] = u
        E[j] = _exp_neg(x)
        F[j] = _exp_neg(u)
    s = _sum(E, v)
    sq = _sum(F, v)
    log_s, log_sq = math.log(s), math.log(sq)
    if w_hard != 0.0 and temp == 1.0:
        value = w_hard * (log_s - zy)
    centre = 0.0
    if beta == 0.0:  # KL(Q || P) = sum Q (u - x) + log S - log S_t
        for j in range(v):
            zt[j] = F[j] * (zt[j] - zs[j])
        jsd = _sum(zt, v) / sq + log_s - log_sq
    elif beta == 1.0:  # KL(P || Q) = sum P (x - u) - log S + log S_t; r = x - u
        for j in range(v):
            r = zs[j] - zt[j]
            zs[j] = r
            F[j] = E[j] * r
        centre = _sum(F, v) / s
        jsd = centre - log_s + log_sq
    else:  # M = P + b (Q - P); r = x - log M
        b = _like(ms, beta)
        inv_s, inv_sq = _like(ms, 1.0 / s), _like(ms, 1.0 / sq)
        tiny = _like(ms, np.finfo(zs.dtype).tiny)
        for j in range(v):
            p = E[j] * inv_s
            q = F[j] * inv_sq
            m = p + b * (q - p)
            m = tiny if m < tiny else m  # p = q = 0: M = 0, whose terms are 0
            lm = _log_unit(m)
            r = zs[j] - lm
            zs[j] = r
            zt[j] = q * (zt[j] - lm)
            F[j] = p * r
        centre = _sum(F, v)
        jsd = beta * (_sum(zt, v) - log_sq) + (1.0 - beta) * (centre - log_s)
    value += w_soft * jsd
    if not want_grad:
        return value
    # G = f (w_h (softmax(z_s) - e_y) + w_s g)
    hard = f * w_hard if (w_hard != 0.0 and temp == 1.0) else 0.0  # P is softmax(z_s)
    p1 = _like(ms, f * w_hard / s1) if hard_p1 else _like(ms, 0.0)
    soft = f * w_soft / temp
    if beta == 0.0:  # G = (hard + soft) P - soft Q
        a = _like(ms, (hard + soft) / s)
        c = _like(ms, -soft / sq)
        if hard_p1:
            for j in range(v):
                zs[j] = a * E[j] + c * F[j] + p1 * H[j]
        else:
            for j in range(v):
                zs[j] = a * E[j] + c * F[j]
    else:  # G = P (coef r + hard - coef centre)
        coef = soft if beta == 1.0 else soft * (1.0 - beta)
        a1 = _like(ms, coef / s)
        a0 = _like(ms, (hard - coef * centre) / s)
        if hard_p1:
            for j in range(v):
                zs[j] = E[j] * (a1 * zs[j] + a0) + p1 * H[j]
        else:
            for j in range(v):
                zs[j] = E[j] * (a1 * zs[j] + a0)
    if w_hard != 0.0:
        zs[y] -= _like(ms, f * w_hard)
    return value


@njit(**_JIT)
def _jsd_rows(zs, zt, bs, bt, y, rf, want_grad, beta, temp, w_hard, w_soft, values, lo,
              hi):
    """Rows lo:hi of the block, with scratch rows of their own."""
    v = zs.shape[1]
    E = np.empty(v, dtype=zs.dtype)
    F = np.empty(v, dtype=zs.dtype)
    H = np.empty(v if (w_hard != 0.0 and temp != 1.0) else 1, dtype=zs.dtype)
    for i in range(lo, hi):
        f = float(rf[i]) if want_grad else 0.0
        values[i] = _jsd_row(zs[i], zt[i], bs, bt, y[i], f, want_grad, beta, temp, w_hard,
                             w_soft, E, F, H)


def _jsd_block(zs, zt, bs, bt, y, rf, want_grad, beta, temp, w_hard, w_soft, values):
    """The block of logits without their biases zs, zt (k, V) (C order), the biases bs,
    bt (V,) (an empty array: none), targets y (k,) int64, row factors rf (k,) (read only
    with ``want_grad``): per-row values into ``values`` (k,) and, with ``want_grad``, the
    weighted gradient into zs (see the module). Returns True."""
    k = zs.shape[0]
    groups = (k + ROWS - 1) // ROWS
    for g in prange(groups):
        lo = g * ROWS
        hi = min(lo + ROWS, k)
        _jsd_rows(zs, zt, bs, bt, y, rf, want_grad, beta, temp, w_hard, w_soft, values, lo,
                  hi)
    return True


jsd_block_parallel, jsd_block_serial = _builds(_jsd_block)


@njit(**_JIT)
def _tvd_row(zs, zt, f, want_grad, E, F):
    """One row of ``tvd_loss`` (see the module); ``E``, ``F`` are scratch rows."""
    v = zs.shape[0]
    ms, nan_s = _max_nan(zs, v)
    mt, nan_t = _max_nan(zt, v)
    if nan_s or nan_t or not math.isfinite(ms) or not math.isfinite(mt):
        return math.nan
    for j in range(v):
        E[j] = _exp_neg(zs[j] - ms)
        F[j] = _exp_neg(zt[j] - mt)
    inv_s = _like(ms, 1.0 / _sum(E, v))
    inv_q = _like(ms, 1.0 / _sum(F, v))
    zero = _like(ms, 0.0)
    for j in range(v):  # P and Q rounded first: no fused multiply-add in P - Q, which
        E[j] *= inv_s  # is then exactly 0 where the two rows agree
        F[j] *= inv_q
    for j in range(v):
        p = E[j]
        d = p - F[j]
        F[j] = abs(d)
        zt[j] = p if d > zero else (-p if d < zero else zero)  # P sign(P - Q)
    value = 0.5 * _sum(F, v)
    if want_grad:
        c = _like(ms, _sum(zt, v))
        h = _like(ms, 0.5 * f)
        for j in range(v):
            zs[j] = h * (zt[j] - E[j] * c)
    return value


@njit(inline="always", **_JIT)
def _copy_rows(zs, zt, i, row, T):
    """Row i of the student's logits into ``row`` and of the teacher's into ``T``."""
    for j in range(zs.shape[1]):
        row[j] = zs[i, j]
        T[j] = zt[i, j]


@njit(**_JIT)
def _tvd_rows(zs, zt, g, rf, want_grad, values, lo, hi):
    v = zs.shape[1]
    S = np.empty(v if not want_grad else 1, dtype=zs.dtype)
    T = np.empty(v, dtype=zs.dtype)
    E = np.empty(v, dtype=zs.dtype)
    F = np.empty(v, dtype=zs.dtype)
    for i in range(lo, hi):
        row = g[i] if want_grad else S
        _copy_rows(zs, zt, i, row, T)
        f = float(rf[i]) if want_grad else 0.0
        values[i] = _tvd_row(row, T, f, want_grad, E, F)


def _tvd_block(zs, zt, g, rf, want_grad, values):
    """Student and teacher logits zs, zt (n, V) (C order, one dtype; read only), row
    factors rf (n,): per-row values into ``values`` (n,) and, with ``want_grad``, the
    gradient times the row factor into g (n, V). Returns True."""
    n = zs.shape[0]
    groups = (n + ROWS - 1) // ROWS
    for b in prange(groups):
        lo = b * ROWS
        hi = min(lo + ROWS, n)
        _tvd_rows(zs, zt, g, rf, want_grad, values, lo, hi)
    return True


@njit(**_JIT)
def _jsd_copy_rows(zs, zt, g, rf, want_grad, beta, temp, values, lo, hi):
    """:func:`_jsd_row` (no biases, no hard loss) on copies of rows lo:hi: the student's
    row copied into g (or a scratch row), the teacher's into a scratch row."""
    v = zs.shape[1]
    S = np.empty(v if not want_grad else 1, dtype=zs.dtype)
    T = np.empty(v, dtype=zs.dtype)
    E = np.empty(v, dtype=zs.dtype)
    F = np.empty(v, dtype=zs.dtype)
    H = np.empty(1, dtype=zs.dtype)
    none = np.empty(0, dtype=zs.dtype)
    for i in range(lo, hi):
        row = g[i] if want_grad else S
        _copy_rows(zs, zt, i, row, T)
        f = float(rf[i]) if want_grad else 0.0
        values[i] = _jsd_row(row, T, none, none, 0, f, want_grad, beta, temp, 0.0, 1.0, E,
                             F, H)


def _jsd_copy_block(zs, zt, g, rf, want_grad, beta, temp, values):
    """``generalized_jsd`` per row of zs, zt (n, V) (C order, one dtype; read only): the
    values into ``values`` (n,) and, with ``want_grad``, the gradient times the row
    factor rf (n,) into g (n, V). Returns True."""
    n = zs.shape[0]
    groups = (n + ROWS - 1) // ROWS
    for b in prange(groups):
        lo = b * ROWS
        hi = min(lo + ROWS, n)
        _jsd_copy_rows(zs, zt, g, rf, want_grad, beta, temp, values, lo, hi)
    return True


tvd_block_parallel, tvd_block_serial = _builds(_tvd_block)
jsd_copy_block_parallel, jsd_copy_block_serial = _builds(_jsd_copy_block)
