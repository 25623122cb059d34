r"""Numba kernel of the pairwise ranking losses (imported lazily by
:mod:`losskit.kernels.ranking`).

:func:`pair_logistic` is the pair sum of :func:`losskit.kernels.ranking._pairs` without its
``(lists, L, L)`` temporaries: per list, :math:`\sum_{ij} w_{ij}\, \mathrm{softplus}(-(s_i
- s_j))` over the pairs with :math:`y_i > y_j` (both valid), the weight
:math:`w_{ij} = 1` (RankNet, ``pairwise_logistic_loss``) or the LambdaRank weight
:math:`|G_i - G_j|\,|D_i - D_j| / \mathrm{IDCG}` from per-item gains and discounts computed
by the caller; gradient :math:`-\sum_j w_{ij} \sigma(-(s_i - s_j))` at :math:`i` and
:math:`+\sum_i` of the same at :math:`j`. Lists in ``prange``, float64 throughout.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .numba_kernels import _exp_neg

__all__ = ["pair_logistic", "softmax_lists"]


@njit(parallel=True, error_model="numpy", fastmath={"contract"})
def pair_logistic(s, y, v, has_v, gain, disc, inv, lambda_weights, need_grad, values, g):
    n, length = s.shape
    for b in prange(n):
        total = 0.0
        if need_grad:
            for i in range(length):
                g[b, i] = 0.0
        for i in range(length):
            if has_v and not v[b, i]:
                continue
            for j in range(length):
                if not (y[b, i] > y[b, j]) or (has_v and not v[b, j]):
                    continue
                w = 1.0
                if lambda_weights:
                    w = abs(gain[b, i] - gain[b, j]) * abs(disc[b, i] - disc[b, j]) * inv[b]
                    if w == 0.0:
                        continue
                d = s[b, i] - s[b, j]
                e = math.exp(-abs(d))
                total += w * ((-d if d < 0.0 else 0.0) + math.log1p(e))
                if need_grad:
                    sig = (1.0 / (1.0 + e)) if d <= 0.0 else (e / (1.0 + e))  # sigma(-d)
                    a = w * sig
                    g[b, i] -= a
                    g[b, j] += a
        values[b] = total
    return 0


@njit(parallel=True, error_model="numpy", fastmath={"contract"})
def softmax_lists(s, y, v, has_v, weights, has_w, need_grad, values, g):
    """``ranking_softmax_loss`` per list, :func:`losskit.kernels.ranking._softmax_block`'s
    formulas: Y log Z - sum_i y_i (s_i - m) and Y p - y, with m the largest valid score
    (0 for a list without one), p the softmax over the valid items, y times the weights.
    The exponentials once per item (the polynomial exp of ``numba_kernels``: the loops
    vectorise), into the gradient row as scratch."""
    n, length = s.shape
    for b in prange(n):
        e = g[b] if need_grad else np.empty(length, dtype=np.float64)
        m = -math.inf
        for i in range(length):
            ok = (not has_v) or v[b, i]
            m = s[b, i] if ok and s[b, i] > m else m
        if m == -math.inf:
            m = 0.0
        z = 0.0
        total = 0.0
        for i in range(length):
            ok = (not has_v) or v[b, i]
            ei = _exp_neg(s[b, i] - m) if ok else 0.0
            e[i] = ei
            z += ei
            total += y[b, i] * (weights[b, i] if has_w else 1.0)
        if z == 0.0:
            z = 1.0
        log_z = math.log(z)
        inv = 1.0 / z
        val = 0.0
        for i in range(length):
            yi = y[b, i] * (weights[b, i] if has_w else 1.0)
            val += yi * (log_z - (s[b, i] - m))
            e[i] = total * (e[i] * inv) - yi
        values[b] = val
    return 0
