r"""Numba kernel of the Lovász weights (imported lazily by :mod:`losskit.kernels.lovasz`).

:func:`weights_parallel` / :func:`weights_serial`: per row (a group of
:func:`losskit.losses.lovasz.lovasz_weights`, rows in ``prange``), the order of decreasing
errors with ties in index order, by a stable LSD radix sort of the errors' bits (8-bit
digits, a digit that every key shares skipped; :math:`-0` read as :math:`+0`; the entries
that take no part last), then the Lovász gradient :math:`J_k - J_{k-1}` with
:math:`J_k = 1 - (T - \sum_{j \le k} y_j) / (T + \sum_{j \le k} (1 - y_j))`, in the
errors' dtype with the generic formula's operations (so float32 weights are the generic
path's, bit for bit), scattered back to the entries' positions (0 where none takes part).
A NaN error sends the call back to the caller (the generic path's ordering rules).
"""

from __future__ import annotations

import numpy as np
from numba import prange
from numba.core.errors import NumbaError

from .numba_kernels import _bits_from_f32, _bits_from_f64, _builds, _by_float_type, _like

__all__ = ["weights_parallel", "weights_serial", "NumbaError"]


def _desc_key32(x):
    i = _bits_from_f32(x)
    k = i ^ ((i >> np.int32(31)) & np.int32(0x7FFFFFFF))  # signed, increasing with e
    return np.uint64(0xFFFFFFFF) - np.uint64(np.int64(k) + np.int64(2147483648))


def _desc_key64(x):
    i = _bits_from_f64(x)
    k = i ^ ((i >> np.int64(63)) & np.int64(0x7FFFFFFFFFFFFFFF))
    return ~(np.uint64(k) ^ (np.uint64(1) << np.uint64(63)))


#: an unsigned key that decreases as the float increases (a radix sort's key)
_desc_key = _by_float_type(_desc_key32, _desc_key64, inline="always")


def _weights(errors, fg, valid, has_valid, passes, out):
    """Rows of ``errors``, ``fg`` (0/1, the errors' dtype) and ``valid`` (bool, read with
    ``has_valid``): the Lovász weights into ``out``; returns the number of NaN errors.
    ``passes``: the bytes of the errors' dtype (the radix sort's digits)."""
    rows, p = errors.shape
    nan = np.zeros(rows, dtype=np.int64)
    for r in prange(rows):
        ukey = np.empty(p, dtype=np.uint64)
        utmp = np.empty(p, dtype=np.uint64)
        idx = np.empty(p, dtype=np.int64)
        itmp = np.empty(p, dtype=np.int64)
        count = np.empty(256, dtype=np.int64)
        bad = 0
        for i in range(p):
            e = errors[r, i] + _like(errors[r, i], 0.0)  # -0 -> +0: one key for zero
            if has_valid and not valid[r, i]:
                e = _like(e, -np.inf)
            bad += 1 if e != e else 0
            ukey[i] = _desc_key(e)  # decreasing errors first
            idx[i] = i
        if bad:
            nan[r] = bad
            continue
        for d in range(passes):
            shift = np.uint64(8 * d)
            for c in range(256):
                count[c] = 0
            for i in range(p):
                count[(ukey[i] >> shift) & np.uint64(255)] += 1
            if p and count[(ukey[0] >> shift) & np.uint64(255)] == p:
                continue  # every key has this digit
            pos = 0
            for c in range(256):
                k = count[c]
                count[c] = pos
                pos += k
            for i in range(p):
                c = (ukey[i] >> shift) & np.uint64(255)
                j = count[c]
                count[c] = j + 1
                utmp[j] = ukey[i]
                itmp[j] = idx[i]
            ukey, utmp = utmp, ukey
            idx, itmp = itmp, idx
        one = _like(errors[r, 0], 1.0)
        total = 0.0
        for i in range(p):
            if not has_valid or valid[r, i]:
                total += fg[r, i]
        tot = _like(one, total)
        cum_y = _like(one, 0.0)
        cum_n = _like(one, 0.0)
        prev = _like(one, 0.0)
        for k in range(p):
            i = idx[k]
            ok = (not has_valid) or valid[r, i]
            y = fg[r, i] if ok else _like(one, 0.0)
            cum_y += y
            cum_n += one - y
            jac = one - (tot - cum_y) / (tot + cum_n)
            out[r, i] = jac - prev if ok else _like(one, 0.0)
            prev = jac
    bad = 0
    for r in range(rows):
        bad += nan[r]
    return bad


weights_parallel, weights_serial = _builds(_weights)
