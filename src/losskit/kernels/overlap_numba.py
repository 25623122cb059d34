r"""Numba kernels of the overlap family (imported lazily by :mod:`losskit.kernels.overlap`).

One driver, :func:`_overlap`, for dice, Tversky and Jaccard on a prediction viewed as
``(N, C, S)`` (class axis 1, positions flattened). The work is cut into items, a sample
and a block of :data:`BLOCK` positions, run in ``prange`` (parallel build) or a loop:

1. per item, the probabilities of the block (the activation fused: none, sigmoid, or the
   softmax over the C classes of each position) and the target (a mask, or one-hot
   integer labels with ``ignore_index``), and the block's float64 sums of
   :math:`p t`, :math:`p` (or :math:`p^2`) and :math:`t` (or :math:`t^2`) per class;
2. serially, the per-(sample, group) sums (a group is a class, or the whole sample in
   ``global`` mode), the index :math:`R = \mathrm{num}/\mathrm{den}` with
   :math:`\mathrm{num} = k I + s` and :math:`\mathrm{den} = c_I I + c_P P + c_T T + s`, the
   per-sample value :math:`\sum_g (1 - R_g) / G`, and the gradient's per-group
   coefficients: :math:`\partial\ell/\partial p_i = A + B t_i + W p_i` (from
   :math:`(R\,\partial_i\mathrm{den} - \partial_i\mathrm{num}) / \mathrm{den} / G` with
   :math:`\partial_i\mathrm{num} = k t_i`, :math:`\partial_i\mathrm{den} = u + v t_i + w
   p_i`; 0 when :math:`\mathrm{den} = 0`, which defines :math:`R = 1`);
3. when the gradient is wanted, per item again: the probabilities (the softmax kept in
   the gradient buffer by the first pass; the sigmoid recomputed, its tails exact), the
   gradient with respect to :math:`p`, and the activation's chain rule, written once.

Checks counted on the way (the caller then answers NotImplemented and the generic path
raises or handles the case): probabilities outside [0, 1] (no activation), mask targets
outside [0, 1], labels outside [0, C) that are not ``ignore_index``, and, for the
softmax, a position whose logits hold NaN or an infinity (its edge rules are the generic
kernel's business).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaError

from .numba_kernels import _JIT, _builds, _exp_neg, _like

__all__ = ["overlap_parallel", "overlap_serial", "BLOCK", "NumbaError"]

#: positions per item (a block's C x BLOCK scratch stays in L1/L2)
BLOCK = 1024

_JIT_SUM = {"cache": True, "error_model": "numpy", "fastmath": {"contract", "reassoc"}}


@njit(**_JIT_SUM)
def _sums(p, t, L, squared):
    """float64 sums of p t, p (or p^2), t (or t^2) over p[:L], t[:L]."""
    i = 0.0
    a = 0.0
    b = 0.0
    if squared:
        for s in range(L):
            u = float(p[s])
            v = float(t[s])
            i += u * v
            a += u * u
            b += v * v
    else:
        for s in range(L):
            u = float(p[s])
            v = float(t[s])
            i += u * v
            a += u
            b += v
    return i, a, b


@njit(**_JIT)
def _targets(tm, lab, n, s0, L, labels, has_ignore, ign, C, tb, kb):
    """Targets (tb, C x L) and whether each position is kept (kb) of positions
    [s0, s0 + L) of sample n; returns the number of invalid entries."""
    bad = 0
    one = _like(tb[0, 0], 1.0)
    zero = _like(tb[0, 0], 0.0)
    if labels:
        lr = lab[n, s0:s0 + L]
        lb = np.empty(L, dtype=lr.dtype)
        for s in range(L):
            lv = lr[s]
            keep = not (has_ignore and lv == ign)
            kb[s] = keep
            bad += keep and (lv < 0 or lv >= C)
            lb[s] = lv if keep else -1
        for c in range(C):
            tr = tb[c]
            for s in range(L):
                tr[s] = one if lb[s] == c else zero
    else:
        for c in range(C):
            src = tm[n, c, s0:s0 + L]
            tr = tb[c]
            for s in range(L):
                v = src[s]
                tr[s] = v
                bad += (v < zero) | (v > one)
        for s in range(L):
            kb[s] = True
    return bad


@njit(**_JIT)
def _probs(z, n, s0, L, act, masked, pb, eb, kb):
    """Probabilities (pb, C x L) of positions [s0, s0 + L) of sample n (0 where not kb
    when ``masked``), for the sigmoid also e^-|z| (eb); returns the number of invalid
    entries (see the module notes)."""
    C = z.shape[1]
    bad = 0
    one = _like(z[0, 0, 0], 1.0)
    zero = _like(z[0, 0, 0], 0.0)
    if act == 0:
        for c in range(C):
            src = z[n, c, s0:s0 + L]
            pr = pb[c]
            for s in range(L):
                v = src[s]
                pr[s] = v
                bad += (v < zero) | (v > one)
    elif act == 1:
        for c in range(C):
            src = z[n, c, s0:s0 + L]
            pr = pb[c]
            er = eb[c]
            for s in range(L):
                v = src[s]
                e = _exp_neg(-abs(v))
                er[s] = e
                q = one / (one + e)
                pr[s] = q if v >= zero else e * q
    else:
        # the softmax over the classes of each position: the maximum, e^(z - m), the sum
        m = eb[0]  # scratch rows: eb[0] the maximum, eb[1] the sum
        tot = eb[1]
        src = z[n, 0, s0:s0 + L]
        for s in range(L):
            m[s] = src[s]
        for c in range(1, C):
            src = z[n, c, s0:s0 + L]
            for s in range(L):
                v = src[s]
                m[s] = v if v > m[s] else m[s]
        for s in range(L):
            ms = m[s]
            bad += not (ms - ms == zero)  # NaN or an infinity: not ours
            tot[s] = zero
        for c in range(C):
            src = z[n, c, s0:s0 + L]
            pr = pb[c]
            for s in range(L):
                e = _exp_neg(src[s] - m[s])
                pr[s] = e
                tot[s] += e
        for s in range(L):
            tot[s] = one / tot[s]
        for c in range(C):
            pr = pb[c]
            for s in range(L):
                pr[s] = pr[s] * tot[s]
    if masked:
        for c in range(C):
            pr = pb[c]
            for s in range(L):
                pr[s] = pr[s] if kb[s] else zero
    return bad


def _overlap(z, tm, lab, act, labels, has_ignore, ign, squared, per_class, k, c_i, c_p,
             c_t, u, v, w, smooth, scale, want_grad, g, values, coef):
    """Dice, Tversky or Jaccard of z (N, C, S): per-sample values (float64) into
    ``values``, the scaled gradient into g (N, C, S) when ``want_grad``; ``tm``: the mask
    target (N, C, S), or ``lab``: labels (N, S) (``labels``). ``coef`` (N, G, 3) float64
    scratch. Returns (invalid entries, sum of the values)."""
    N, C, S = z.shape
    nblk = (S + BLOCK - 1) // BLOCK
    items = N * nblk
    part = np.zeros((items, C, 3))
    badv = np.zeros(items, dtype=np.int64)
    rows = C if C > 2 else 2
    for it in prange(items):
        n = it // nblk
        s0 = (it % nblk) * BLOCK
        L = min(BLOCK, S - s0)
        pb = np.empty((C, L), dtype=z.dtype)
        tb = np.empty((C, L), dtype=z.dtype)
        eb = np.empty((rows, L), dtype=z.dtype)
        kb = np.empty(L, dtype=np.bool_)
        bad_t = _targets(tm, lab, n, s0, L, labels, has_ignore, ign, C, tb, kb)
        badv[it] = bad_t + _probs(z, n, s0, L, act, labels and has_ignore, pb, eb, kb)
        if want_grad and act == 2:  # keep the softmax for the second pass (in g)
            for c in range(C):
                gr = g[n, c, s0:s0 + L]
                pr = pb[c]
                for s in range(L):
                    gr[s] = pr[s]
        for c in range(C):
            a, b, d = _sums(pb[c], tb[c], L, squared)
            part[it, c, 0] = a
            part[it, c, 1] = b
            part[it, c, 2] = d
    bad = 0
    for it in range(items):
        bad += badv[it]
    if bad:
        return bad, 0.0
    G = C if per_class else 1
    total = 0.0
    for n in range(N):
        sums = np.zeros((G, 3))
        for j in range(nblk):
            for c in range(C):
                gc = c if per_class else 0
                for q in range(3):
                    sums[gc, q] += part[n * nblk + j, c, q]
        val = 0.0
        for gc in range(G):
            ii, pp, tt = sums[gc, 0], sums[gc, 1], sums[gc, 2]
            num = k * ii + smooth
            den = c_i * ii + c_p * pp + c_t * tt + smooth
            ok = den != 0.0  # NaN too: it propagates
            r = num / den if ok else 1.0
            val += 1.0 - r
            f = scale / den / G if ok else 0.0
            coef[n, gc, 0] = r * u * f if ok else 0.0
            coef[n, gc, 1] = (r * v - k) * f if ok else 0.0
            coef[n, gc, 2] = r * w * f if ok else 0.0
        values[n] = val / G
        total += values[n]
    if not want_grad:
        return 0, total
    for it in prange(items):
        n = it // nblk
        s0 = (it % nblk) * BLOCK
        L = min(BLOCK, S - s0)
        pb = np.empty((C, L), dtype=z.dtype)
        tb = np.empty((C, L), dtype=z.dtype)
        eb = np.empty((rows, L), dtype=z.dtype)
        kb = np.empty(L, dtype=np.bool_)
        _targets(tm, lab, n, s0, L, labels, has_ignore, ign, C, tb, kb)
        if act == 2:
            for c in range(C):
                gr = g[n, c, s0:s0 + L]
                pr = pb[c]
                for s in range(L):
                    pr[s] = gr[s]
        else:
            _probs(z, n, s0, L, act, labels and has_ignore, pb, eb, kb)
        zero = _like(z[0, 0, 0], 0.0)
        one = _like(z[0, 0, 0], 1.0)
        for c in range(C):
            gc = c if per_class else 0
            ca = _like(zero, coef[n, gc, 0])
            cb = _like(zero, coef[n, gc, 1])
            cw = _like(zero, coef[n, gc, 2])
            gr = g[n, c, s0:s0 + L]
            pr = pb[c]
            tr = tb[c]
            for s in range(L):
                gp = ca + cb * tr[s] + cw * pr[s]
                gr[s] = gp if kb[s] else zero
        if act == 1:  # sigma'(z) = sigma(z) sigma(-z) = p e / (1 + e) or p / (1 + e)
            for c in range(C):
                gr = g[n, c, s0:s0 + L]
                src = z[n, c, s0:s0 + L]
                pr = pb[c]
                er = eb[c]
                for s in range(L):
                    e = er[s]
                    q = one / (one + e)
                    sm = e * q if src[s] >= zero else q
                    gr[s] = gr[s] * (pr[s] * sm)
        elif act == 2:  # p_c (g_c - sum_k p_k g_k)
            dot = eb[0]
            for s in range(L):
                dot[s] = zero
            for c in range(C):
                gr = g[n, c, s0:s0 + L]
                pr = pb[c]
                for s in range(L):
                    dot[s] += pr[s] * gr[s]
            for c in range(C):
                gr = g[n, c, s0:s0 + L]
                pr = pb[c]
                for s in range(L):
                    gr[s] = pr[s] * (gr[s] - dot[s]) if kb[s] else zero
    return 0, total


overlap_parallel, overlap_serial = _builds(_overlap)
