r"""Numba kernel of ``grpo_loss`` (imported lazily by :mod:`losskit.kernels.policy_gradient`).

:func:`grpo_rows_parallel` / :func:`grpo_rows_serial`: one sweep over the sequences (the
rows, in ``prange``) of :class:`losskit.losses.policy_gradient.GRPOLoss`'s formulas, per
token in float64: the importance ratio :math:`\rho = e^{r}` (per token, or the masked mean
of :math:`r` over the sequence for GSPO), the clipped surrogate (or CISPO's capped weight,
a constant), the k3 KL penalty :math:`e^{d} - d - 1` with :math:`d = \log\pi_\text{ref} -
\log\pi_\theta`, the masked sum per sequence times the variant's factor :math:`c_b`, and
the gradient times ``scale`` (the reduction's) in the inputs' dtype; tokens with a zero
mask contribute nothing and get a gradient of exactly 0. Returns the number of mask
entries outside [0, 1] or NaN (the caller then lets the generic path raise).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .numba_kernels import _JIT, _builds

__all__ = ["grpo_rows_parallel", "grpo_rows_serial", "mask_row_sums", "GRPO", "BNPO",
           "DR_GRPO", "DAPO", "CISPO"]

#: variant codes
GRPO, BNPO, DR_GRPO, DAPO, CISPO = 0, 1, 2, 3, 4


@njit(**_JIT)
def mask_row_sums(m, n):
    """n[b] = sum_t m[b, t] in float64 (the tokens per sequence; no temporaries).
    Returns True."""
    rows, length = m.shape
    for b in range(rows):
        acc = 0.0
        for t in range(length):
            acc += float(m[b, t])
        n[b] = acc
    return True


def _grpo_rows(lp, m, adv, old, has_old, ref, has_ref, n, variant, sequence, el, eh, beta,
               inv_max_len, scale, need_grad, values, g):
    rows, length = lp.shape
    bad = np.zeros(rows, dtype=np.int64)
    lo, hi = 1.0 - el, 1.0 + eh
    cispo = variant == CISPO
    kl_on = beta != 0.0 and has_ref
    for b in prange(rows):
        nb = n[b]
        n1 = nb if nb > 1.0 else 1.0
        a = float(adv[b])
        wrong = 0
        for t in range(length):
            mt = float(m[b, t])
            wrong += 0 if (mt >= 0.0) & (mt <= 1.0) else 1
        if wrong:
            bad[b] = wrong
            continue
        logw_row = 0.0
        if sequence and has_old:
            acc = 0.0
            for t in range(length):
                mt = float(m[b, t])
                acc += (float(lp[b, t]) - float(old[b, t])) * mt if mt != 0.0 else 0.0
            logw_row = acc / n1
        if variant == GRPO:
            c = 1.0 / n1
        elif variant == DR_GRPO:
            c = inv_max_len
        else:
            c = 1.0
        factor = nb / n1 if sequence else 1.0
        total = 0.0
        for t in range(length):
            mt = float(m[b, t])
            if mt == 0.0:
                if need_grad:
                    g[b, t] = 0.0
                continue
            x = float(lp[b, t])
            if sequence:
                logw = logw_row
            else:
                logw = x - float(old[b, t]) if has_old else 0.0
            rho = math.exp(logw)
            if cispo:
                w = rho if rho < eh or rho != rho else eh  # a constant (stop-gradient)
                per_token = -w * a * x
                d_pg = -w * a
            else:
                clipped = lo if rho < lo else (hi if rho > hi else rho)
                u, v = rho * a, clipped * a
                per_token = -(u if u < v or u != u else v)
                d_pg = 0.0 if (a > 0.0 and rho > hi) or (a < 0.0 and rho < lo) else -a * rho
            gt = factor * d_pg * mt
            total += per_token * mt
            if kl_on:
                d = float(ref[b, t]) - x
                e = math.exp(d)
                total += beta * ((e - d - 1.0) * mt)
                gt += beta * (1.0 - e) * mt
            if need_grad:
                g[b, t] = scale * (c * gt)
        values[b] = c * total
    count = 0
    for b in range(rows):
        count += bad[b]
    return count


grpo_rows_parallel, grpo_rows_serial = _builds(_grpo_rows)
