r"""Numba kernels of the ranking losses (imported lazily by
:mod:`losskit.kernels.ranking`), one sweep per list, lists in parallel.

Each takes the caller's arrays as they are (scores float32 or float64, labels and weights
of any real dtype), checks the valid items itself, computes in float64 scratch rows of a
few lists per thread and writes the gradient, times the reduction's scale, in the scores'
dtype: :func:`_pair_lists` (``pairwise_logistic_loss``, and ``lambdarank_loss`` with its
per-list sorts), :func:`_softmax_lists` (``ranking_softmax_loss``) and
:func:`_listmle_lists` (``listmle_loss``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .numba_kernels import _builds, _exp_neg, _sum

__all__ = ["softmax_lists_parallel", "softmax_lists_serial", "softmax_lists_plain_parallel",
           "softmax_lists_plain_serial", "listmle_lists_parallel", "listmle_lists_serial",
           "pair_lists_parallel", "pair_lists_serial"]


#: lists per item of the ``prange`` of the list kernels (each item has its scratch rows)
LISTS = 32


def _softmax_lists(s, y, v, has_v, weights, has_w, need_grad, scale, values, g):
    """``ranking_softmax_loss`` per list (the rows of ``s``, any float dtype; labels and
    weights of any real dtype), :func:`losskit.kernels.ranking._softmax_block`'s formulas
    in float64: Y log Z - sum_i y_i (s_i - m) and, times ``scale``, Y p - y into ``g``
    (the scores' dtype), with m the largest valid score (0 for a list without one), p the
    softmax over the valid items, y times the weights; items outside ``v`` take no part
    (gradient 0). The exponentials once per item (the polynomial exp of
    ``numba_kernels``) into a float64 scratch row, summed by ``_sum`` (which may
    reassociate): the loops vectorise. Returns the number of lists with an invalid valid
    item (a score, label or weight that is not finite, a negative label or weight): the
    caller then lets the generic path raise."""
    n, length = s.shape
    items = (n + LISTS - 1) // LISTS
    bad = np.zeros(items, dtype=np.int64)
    for it in prange(items):
        E = np.empty(length, dtype=np.float64)
        Y = np.empty(length, dtype=np.float64)
        D = np.empty(length, dtype=np.float64)
        for b in range(it * LISTS, min(n, (it + 1) * LISTS)):
            m = -math.inf
            wrong = 0
            for i in range(length):  # (no branch but selects: the loop vectorises)
                ok = (not has_v) or v[b, i]
                si = float(s[b, i])
                yr = float(y[b, i])
                wr = float(weights[b, i]) if has_w else 1.0
                valid = ((si - si == 0.0) & (yr - yr == 0.0) & (yr >= 0.0)
                         & (wr - wr == 0.0) & (wr >= 0.0))  # finite, labels/weights >= 0
                wrong += 1 if ok and not valid else 0
                m = si if ok and si > m else m
                Y[i] = yr * wr if ok else 0.0
            if wrong:
                bad[it] += 1
                continue
            if m == -math.inf:
                m = 0.0
            for i in range(length):
                ok = (not has_v) or v[b, i]
                d = float(s[b, i]) - m
                E[i] = _exp_neg(d) if ok else 0.0
                D[i] = Y[i] * d if ok else 0.0
            z = _sum(E, length)
            total = _sum(Y, length)
            if z == 0.0:
                z = 1.0
            values[b] = total * math.log(z) - _sum(D, length)
            if need_grad:
                a = total / z
                for i in range(length):
                    g[b, i] = scale * (a * E[i] - Y[i])
    return bad.sum()


def _softmax_lists_plain(s, y, need_grad, scale, values, g):
    """:func:`_softmax_lists` without ``where`` and ``weights`` (the common call): the
    same formulas with no per-item selects or checks (the loops vectorise): a score or
    label that is NaN or infinite shows in the list's value, a negative label in the
    labels' minimum."""
    n, length = s.shape
    items = (n + LISTS - 1) // LISTS
    bad = np.zeros(items, dtype=np.int64)
    for it in prange(items):
        E = np.empty(length, dtype=np.float64)
        Y = np.empty(length, dtype=np.float64)
        D = np.empty(length, dtype=np.float64)
        for b in range(it * LISTS, min(n, (it + 1) * LISTS)):
            m = -math.inf
            y_min = math.inf
            for i in range(length):
                si = float(s[b, i])
                yr = float(y[b, i])
                m = si if si > m else m
                y_min = yr if yr < y_min else y_min
                Y[i] = yr
            for i in range(length):
                d = float(s[b, i]) - m
                E[i] = _exp_neg(d)
                D[i] = Y[i] * d
            z = _sum(E, length)
            total = _sum(Y, length)
            value = total * math.log(z) - _sum(D, length)
            # a score or label that is NaN or infinite makes the value so (z >= 1 holds
            # the largest item's 1): that check, and negative labels, instead of a pass
            if not (value - value == 0.0) or y_min < 0.0 or y_min != y_min:
                bad[it] += 1
                continue
            values[b] = value
            if need_grad:
                a = total / z
                for i in range(length):
                    g[b, i] = scale * (a * E[i] - Y[i])
    return bad.sum()


@njit(inline="always")
def _logaddexp(a, b):
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi = a if a > b else b
    return hi + math.log1p(math.exp(-abs(a - b)))


#: distinct integer labels of a list up to which ListMLE sorts it by counting
GRADES = 256


@njit(inline="always")
def _grade_order(key, k0, grades, length, order, start):
    """``order`` = a stable ascending sort of ``key`` (negated integer labels k0, k0 + 1,
    ..., k0 + grades - 1, and +inf for the items that take no part, last) by counting:
    no comparisons (a comparison sort of graded labels mispredicts most branches)."""
    for r in range(grades + 1):
        start[r] = 0
    for i in range(length):
        k = key[i]
        r = int(k - k0) if k != math.inf else grades
        start[r] += 1
    pos = 0
    for r in range(grades + 1):
        c = start[r]
        start[r] = pos
        pos += c
    for i in range(length):
        k = key[i]
        r = int(k - k0) if k != math.inf else grades
        order[start[r]] = i
        start[r] += 1


def _listmle_lists(s, y, v, has_v, need_grad, scale, values, g):
    r"""``listmle_loss`` per list, :func:`losskit.kernels.ranking._listmle_block`'s formulas
    in float64: the valid items in the order of a stable sort of the labels (descending,
    ties in index order; by counting when the labels are integers spanning fewer than
    :data:`GRADES` values, else a merge sort), :math:`L_k = \log\sum_{j \ge k} e^{s_j}`, the value
    :math:`\sum_k (L_k - s_k)` and, times ``scale``, the gradient
    :math:`e^{s_m}\sum_{k \le m} e^{-L_k} - 1` at item m (0 outside ``v``).
    :math:`L_k = M + \log S_k` from the suffix sums :math:`S_k` of :math:`e^{s_j - M}`
    (M the list's largest score): one exponential and one logarithm per item, and
    :math:`e^{s_m - L_k} = e^{s_m - M} / S_k`; a list where some :math:`S_k` falls below
    1e-300 (scores more than about 690 apart) takes a backward chain of ``logaddexp``
    instead. Returns the number of lists with a valid item whose score or label is not
    finite (the caller then lets the generic path raise)."""
    n, length = s.shape
    items = (n + LISTS - 1) // LISTS
    bad = np.zeros(items, dtype=np.int64)
    for it in prange(items):
        key = np.empty(length, dtype=np.float64)
        ss = np.empty(length, dtype=np.float64)
        tail = np.empty(length, dtype=np.float64)
        order = np.empty(length, dtype=np.int64)
        start = np.empty(GRADES + 1, dtype=np.int64)
        for b in range(it * LISTS, min(n, (it + 1) * LISTS)):
            wrong = 0
            nv = 0
            lo, hi, whole = math.inf, -math.inf, True
            for i in range(length):
                ok = (not has_v) or v[b, i]
                yi = float(y[b, i])
                si = float(s[b, i])
                wrong += 1 if ok and not ((si - si == 0.0) & (yi - yi == 0.0)) else 0
                key[i] = -yi if ok else math.inf  # invalid items last
                nv += 1 if ok else 0
                if ok:
                    lo = yi if yi < lo else lo
                    hi = yi if yi > hi else hi
                    whole &= yi == math.floor(yi)
                if need_grad and not ok:
                    g[b, i] = 0.0
            if wrong:
                bad[it] += 1
                continue
            if nv and whole and hi - lo < GRADES:
                _grade_order(key, -hi, int(hi - lo) + 1, length, order, start)
            else:
                order[:] = np.argsort(key, kind="mergesort")
            m = -math.inf
            for k in range(nv):
                sk = float(s[b, order[k]])
                ss[k] = sk
                m = sk if sk > m else m
            acc = 0.0
            exact = True
            for k in range(nv - 1, -1, -1):  # suffix sums S_k, kept in tail
                acc += math.exp(ss[k] - m)
                tail[k] = acc
                exact &= acc >= 1e-300
            if exact:
                val = 0.0
                prefix = 0.0
                for k in range(nv):
                    sk = ss[k]
                    val += (m + math.log(tail[k])) - sk
                    if need_grad:
                        prefix += 1.0 / tail[k]
                        g[b, order[k]] = scale * (math.exp(sk - m) * prefix - 1.0)
            else:
                t = -math.inf
                for k in range(nv - 1, -1, -1):
                    t = _logaddexp(t, ss[k])
                    tail[k] = t
                val = 0.0
                lacc = -math.inf
                for k in range(nv):
                    sk = ss[k]
                    val += tail[k] - sk
                    if need_grad:
                        lacc = _logaddexp(lacc, -tail[k])
                        g[b, order[k]] = scale * (math.exp(sk + lacc) - 1.0)
            values[b] = val
    return bad.sum()


_LN2 = math.log(2.0)


def _pair_lists(s, y, v, has_v, lambda_weights, need_grad, scale, values, g):
    r"""``pairwise_logistic_loss`` and (``lambda_weights``) ``lambdarank_loss`` per list on
    the caller's arrays as they are (scores float32 or float64, labels of any real
    dtype): :func:`losskit.kernels.ranking._pairs`'s pair sum over float64 scratch rows
    of one item (:math:`\sum_{y_i > y_j} w_{ij}\,\mathrm{softplus}(-(s_i - s_j))`, both
    valid, without its ``(lists, L, L)`` temporaries), with
    LambdaRank's gains :math:`2^{y_i} - 1`, discounts :math:`1 / \log_2(1 + r_i)` (:math:`r_i`
    the rank of a stable sort of the scores, descending, ties in index order) and
    :math:`1 / \mathrm{IDCG}` (0 for a list without gain) computed per list here, as
    :func:`losskit.kernels.ranking._lambdarank_block` does for a block: no float64 copy of
    the batch. The gradient, times ``scale``, into ``g`` (the scores' dtype), 0 outside
    ``v``. Returns the number of lists with a valid item whose score or label is not
    finite, or (``lambda_weights``) whose label is negative: the caller then lets the
    generic path raise."""
    n, length = s.shape
    items = (n + LISTS - 1) // LISTS
    bad = np.zeros(items, dtype=np.int64)
    for it in prange(items):
        S = np.empty(length, dtype=np.float64)
        Y = np.empty(length, dtype=np.float64)
        G = np.empty(length, dtype=np.float64)
        D = np.empty(length, dtype=np.float64)
        A = np.empty(length, dtype=np.float64)
        key = np.empty(length, dtype=np.float64)
        R = np.empty(length, dtype=np.float64)  # the discount of rank r, every list's
        for r in range(length):
            R[r] = _LN2 / math.log1p(r + 1.0)
        for b in range(it * LISTS, min(n, (it + 1) * LISTS)):
            wrong = 0
            for i in range(length):
                ok = (not has_v) or v[b, i]
                si = float(s[b, i])
                yi = float(y[b, i])
                fine = (si - si == 0.0) & (yi - yi == 0.0) & ((not lambda_weights)
                                                               | (yi >= 0.0))
                wrong += 1 if ok and not fine else 0
                S[i] = si if ok else 0.0
                Y[i] = yi if ok else 0.0
                key[i] = -si if ok else math.inf  # the items outside v rank last
                A[i] = 0.0
            if wrong:
                bad[it] += 1
                continue
            inv = 1.0
            if lambda_weights:
                order = np.argsort(key, kind="mergesort")
                for r in range(length):
                    D[order[r]] = R[r]
                for i in range(length):
                    G[i] = math.expm1(Y[i] * _LN2)
                ideal = np.sort(G)  # ascending: the best gain last
                idcg = 0.0
                for r in range(length):
                    idcg += ideal[length - 1 - r] * R[r]
                inv = 1.0 / idcg if idcg > 0.0 else 0.0
            total = 0.0
            for i in range(length):
                if has_v and not v[b, i]:
                    continue
                for j in range(length):
                    if not (Y[i] > Y[j]) or (has_v and not v[b, j]):
                        continue
                    w = 1.0
                    if lambda_weights:
                        w = abs(G[i] - G[j]) * abs(D[i] - D[j]) * inv
                        if w == 0.0:
                            continue
                    d = S[i] - S[j]
                    e = math.exp(-abs(d))
                    total += w * ((-d if d < 0.0 else 0.0) + math.log1p(e))
                    if need_grad:
                        sig = (1.0 / (1.0 + e)) if d <= 0.0 else (e / (1.0 + e))  # sigma(-d)
                        a = w * sig
                        A[i] -= a
                        A[j] += a
            values[b] = total
            if need_grad:
                for i in range(length):
                    g[b, i] = A[i] * scale
    return bad.sum()


# (parallel build, serial build) of each: small calls run on one thread (waking the
# thread pool costs more than they do)
softmax_lists_parallel, softmax_lists_serial = _builds(_softmax_lists)
softmax_lists_plain_parallel, softmax_lists_plain_serial = _builds(_softmax_lists_plain)
listmle_lists_parallel, listmle_lists_serial = _builds(_listmle_lists)
pair_lists_parallel, pair_lists_serial = _builds(_pair_lists)
