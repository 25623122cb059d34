r"""Numba kernel of the CTC loss (imported lazily by :mod:`losskit.kernels.ctc`).

:func:`ctc_parallel` / :func:`ctc_serial` run the forward-backward recursion of
:class:`losskit.losses.ctc.CTCLoss` per sequence, the sequences in ``prange`` (the
parallel build) or in order. Per sequence n, with its own :math:`T_n` frames and
:math:`L_n` labels (not the batch's widths), in float64, in probability space with the
forward and backward variables normalised per frame (:func:`_scaled`: one exponential per
class and frame, one logarithm per frame) or, where a frame is not finite or an emission
is below e^-600 (which products of probabilities would underflow), in log space
(:func:`_log_space`); both compute:

1. each frame's log-softmax normaliser :math:`\log\sum_c e^{x_{t,c}}` and the emission
   :math:`\log p_t(y'_s)` of every state of the extended labels, ``(T_n, 2 L_n + 1)``;
2. the forward variables :math:`\alpha` (from a virtual state before frame 0 at s = 0),
   the log-likelihood, then the backward variables :math:`\beta`;
3. the gradient row of every frame :math:`t < T_n`, ``scale_n * (p_t - gamma_t)``
   (``p_t`` the frame's softmax, ``gamma_t`` the posterior of each class), and zeros for
   the frames after :math:`T_n`; an impossible sequence gets NaN (or 0 with
   ``zero_infinity``) on its frames.

The log-probabilities and the gradient are indexed ``[t, n, c]``: the caller passes the
``(N, T, C)`` arrays of ``layout="NTC"`` as transposed views.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaError

from .numba_kernels import _JIT, _builds

__all__ = ["ctc_parallel", "ctc_serial", "NumbaError"]

_NINF = -math.inf


@njit(**_JIT)
def _lse3(a, b, c):
    """log(e^a + e^b + e^c), -inf when all three are -inf (one logarithm)."""
    m = a if a > b else b
    if c > m:
        m = c
    if m == _NINF:
        return _NINF
    return m + math.log(math.exp(a - m) + math.exp(b - m) + math.exp(c - m))


@njit(**_JIT)
def _lae(a, b):
    """log(e^a + e^b), -inf when both are -inf."""
    m = a if a > b else b
    if m == _NINF:
        return _NINF
    return m + math.log(math.exp(a - m) + math.exp(b - m))


@njit(**_JIT)
def _frame_max(lp, t, n):
    """The largest log-probability of frame t of sequence n (-inf for none; NaN skipped)."""
    m = _NINF
    for c in range(lp.shape[2]):
        v = float(lp[t, n, c])
        if v > m:
            m = v
    return m


#: below this probability (e^-600) an emission goes to the log-space recursion: the
#: scaled one multiplies probabilities, and e^-745 underflows float64
_SCALED_MIN = math.exp(-600.0)


@njit(**_JIT)
def _scaled(lp, n, ext, k, tn, blank, zero_infinity, sc, values, grad, want_grad):
    """Sequence ``n`` in probability space with per-frame scaling (Rabiner's scaled
    forward-backward): the frame's softmax once, the emissions read from it, sums and
    products in the recursions, one logarithm per frame. Returns False, having written
    nothing, when a frame is not finite or an emission is below e^-600 (the log-space
    recursion :func:`_log_space` then takes the sequence)."""
    C = lp.shape[2]
    rows = max(tn, 1)
    P = np.empty((rows, C), dtype=np.float64)
    em = np.empty((rows, k), dtype=np.float64)
    for t in range(tn):
        m = _frame_max(lp, t, n)
        if not (m > _NINF and m < math.inf):
            return False
        acc = 0.0
        for c in range(C):
            e = math.exp(float(lp[t, n, c]) - m)
            P[t, c] = e
            acc += e
        if not (acc > 0.0 and acc < math.inf):  # NaN included
            return False
        inv = 1.0 / acc
        for c in range(C):
            P[t, c] *= inv
        for s in range(k):
            em[t, s] = P[t, ext[s]]
            if not em[t, s] >= _SCALED_MIN:
                return False
    # forward: alpha_t normalised to sum 1, log-likelihood = sum of the logs of the sums
    alpha = np.empty((rows, k), dtype=np.float64)
    prev = np.zeros(k, dtype=np.float64)
    prev[0] = 1.0  # the virtual state before frame 0
    ll = 0.0
    for t in range(tn):
        tot = 0.0
        for s in range(k):
            a = prev[s]
            if s >= 1:
                a += prev[s - 1]
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                a += prev[s - 2]
            a *= em[t, s]
            alpha[t, s] = a
            tot += a
        inv = 1.0 / tot  # > 0: every state feeds itself, every emission >= e^-600
        for s in range(k):
            alpha[t, s] *= inv
            prev[s] = alpha[t, s]
        ll += math.log(tot)
    final = prev[k - 1] + prev[k - 2] if k >= 2 else prev[0]
    impossible = final == 0.0  # the final states unreachable: exactly 0
    ll = _NINF if impossible else ll + math.log(final)
    values[n] = 0.0 if (impossible and zero_infinity) else -ll
    if not want_grad:
        return True
    if impossible:
        fill = 0.0 if zero_infinity else math.nan
        for t in range(tn):
            for c in range(C):
                grad[t, n, c] = fill
        return True
    # backward, normalised per frame; the posterior of the states at frame t is
    # alpha_t beta_t / emission_t normalised to sum 1 (the scales cancel)
    beta = np.empty(k, dtype=np.float64)
    nxt = np.empty(k, dtype=np.float64)
    q = np.empty(k, dtype=np.float64)
    for t in range(tn - 1, -1, -1):
        tot = 0.0
        for s in range(k):
            if t == tn - 1:
                b = 1.0 if (s == k - 1 or s == k - 2) else 0.0
            else:
                b = nxt[s]
                if s + 1 < k:
                    b += nxt[s + 1]
                if s + 2 < k and ext[s + 2] != blank and ext[s + 2] != ext[s]:
                    b += nxt[s + 2]
            b *= em[t, s]
            beta[s] = b
            tot += b
        inv = 1.0 / tot
        z = 0.0
        for s in range(k):
            beta[s] *= inv
            r = alpha[t, s] * beta[s] / em[t, s]
            q[s] = r
            z += r
        for c in range(C):
            grad[t, n, c] = sc * P[t, c]
        f = sc / z
        for s in range(k):
            if q[s] != 0.0:
                grad[t, n, ext[s]] -= f * q[s]
        for s in range(k):
            nxt[s] = beta[s]
    return True


@njit(**_JIT)
def _log_space(lp, n, ext, k, tn, blank, zero_infinity, sc, values, grad, want_grad):
    """Sequence ``n`` in log space: every frame, whatever its range (``-inf`` classes,
    emissions below e^-600, non-finite logits)."""
    C = lp.shape[2]
    norm = np.empty(max(tn, 1), dtype=np.float64)
    lpe = np.empty((max(tn, 1), k), dtype=np.float64)
    for t in range(tn):
        m = _frame_max(lp, t, n)
        if m == _NINF or m == math.inf:  # the generic log-softmax: shift 0
            m = 0.0
        acc = 0.0
        for c in range(C):
            acc += math.exp(float(lp[t, n, c]) - m)
        norm[t] = (math.log(acc) if acc > 0.0 else _NINF) + m
        for s in range(k):
            lpe[t, s] = float(lp[t, n, ext[s]]) - norm[t]
    # forward
    alpha = np.empty((max(tn, 1), k), dtype=np.float64)
    prev = np.full(k, _NINF)
    prev[0] = 0.0  # the virtual state before frame 0
    for t in range(tn):
        for s in range(k):
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                a = _lse3(prev[s], prev[s - 1], prev[s - 2])
            elif s >= 1:
                a = _lae(prev[s], prev[s - 1])
            else:
                a = prev[s]
            alpha[t, s] = a + lpe[t, s]
        for s in range(k):
            prev[s] = alpha[t, s]
    ll = _lae(prev[k - 1], prev[k - 2]) if k >= 2 else prev[0]
    impossible = ll == _NINF
    if impossible and zero_infinity:
        values[n] = 0.0
    else:
        values[n] = -ll
    if not want_grad:
        return
    if impossible or ll != ll:
        fill = 0.0 if (impossible and zero_infinity) else math.nan
        for t in range(tn):
            for c in range(C):
                grad[t, n, c] = fill
        return
    # backward, and the gradient of frame t once beta_t is known
    beta = np.full(k, _NINF)
    nxt = np.full(k, _NINF)
    for t in range(tn - 1, -1, -1):
        for s in range(k):
            if t == tn - 1:
                b = 0.0 if (s == k - 1 or s == k - 2) else _NINF
            else:
                if s + 2 < k and ext[s + 2] != blank and ext[s + 2] != ext[s]:
                    b = _lse3(nxt[s], nxt[s + 1], nxt[s + 2])
                elif s + 1 < k:
                    b = _lae(nxt[s], nxt[s + 1])
                else:
                    b = nxt[s]
            beta[s] = b + lpe[t, s]
        for c in range(C):
            grad[t, n, c] = sc * math.exp(float(lp[t, n, c]) - norm[t])
        for s in range(k):
            e = lpe[t, s]
            if e > _NINF:
                grad[t, n, ext[s]] -= sc * math.exp(alpha[t, s] + beta[s] - e - ll)
        for s in range(k):
            nxt[s] = beta[s]


def _ctc(lp, labels, offsets, tl, il, blank, zero_infinity, scale, values, grad,
         want_grad):
    """Every sequence of the batch: ``values[n]`` (the unscaled loss) and, when
    ``want_grad``, ``grad[:, n, :]`` (already multiplied by ``scale[n]``)."""
    T = lp.shape[0]
    N = lp.shape[1]
    C = lp.shape[2]
    for n in prange(N):
        tn = il[n]
        ln = tl[n]
        k = 2 * ln + 1
        ext = np.empty(k, dtype=np.int64)
        for s in range(k):
            ext[s] = blank if s % 2 == 0 else labels[offsets[n] + s // 2]
        sc = scale[n]
        if want_grad:
            for t in range(tn, T):
                for c in range(C):
                    grad[t, n, c] = 0.0
        if not _scaled(lp, n, ext, k, tn, blank, zero_infinity, sc, values, grad,
                       want_grad):
            _log_space(lp, n, ext, k, tn, blank, zero_infinity, sc, values, grad, want_grad)


ctc_parallel, ctc_serial = _builds(_ctc)
