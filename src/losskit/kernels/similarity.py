r"""Blocked kernels of the similarity-matrix losses (:mod:`losskit.losses.self_supervised`).

Every loss of that module is a function of a similarity matrix :math:`S = s\,R C^\top + b`
between the rows of two embedding matrices (one of them the other for NT-Xent and
SupCon). Its gradient with respect to :math:`S` is a matrix :math:`G` of the same size,
and everything else follows from three products:

.. math::

    \frac{\partial L}{\partial R} = s\,G C, \qquad
    \frac{\partial L}{\partial C} = s\,G^\top R, \qquad
    \frac{\partial L}{\partial \log s} = s \sum_{ij} G_{ij} (R C^\top)_{ij}, \qquad
    \frac{\partial L}{\partial b} = \sum_{ij} G_{ij}.

The rows of :math:`S` are processed in blocks of ``block`` rows: a block of :math:`S` is
one product, its row values and its block of :math:`G` are computed elementwise, and the
block's contributions to both gradients are two more products, accumulated. Nothing of
size :math:`N \times N` is ever held: the memory beyond the inputs and the gradients is
a few arrays of ``block`` x N (``block_rows`` sizes them to 16 MiB each by default) and
vectors of length N. The symmetric CLIP loss also needs every column's log-sum-exp before
any block of :math:`G` can be formed: a first sweep accumulates the columns' maxima and
sums of exponentials block by block (an online log-sum-exp), so it costs one product
more than the other losses (four instead of three).

The per-row weights ``r`` that these kernels take fold the reduction's factor and the
sample weights into the rows of :math:`G` before the products (as
:mod:`losskit.losses.linear_cross_entropy` does), so that every gradient comes out
already reduced; a row of weight 0 contributes exactly nothing, even where it is NaN.

One implementation serves every Array-API library: plain functional operations on one
block at a time (NumPy's in-place accumulation of the column gradient is the only
library-specific step). On JAX the loop over blocks is unrolled under ``jit`` (the block
count is static).
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

__all__ = ["block_rows", "sweep", "column_logsumexp", "normalize_rows",
           "normalize_backward", "BLOCK_BYTES"]

#: default size of one block of the similarity matrix, in bytes (the kernels hold about
#: four arrays of that size at once)
BLOCK_BYTES = 16 * 2**20
_MAX_BLOCK = 1024

_NEG_INF = -math.inf


def block_rows(chunk_size, n_rows: int, n_cols: int, itemsize: int) -> int:
    """Rows per block: ``chunk_size`` when given, else as many rows of ``n_cols`` entries as
    fit :data:`BLOCK_BYTES` (at most 1024, at least 1)."""
    if chunk_size is not None:
        return max(1, min(chunk_size, max(n_rows, 1)))
    rows = BLOCK_BYTES // max(1, n_cols * itemsize)
    return max(1, min(rows, _MAX_BLOCK, max(n_rows, 1)))


def _is_numpy(xp) -> bool:
    return array_api_compat.is_numpy_namespace(xp)


def normalize_rows(xp, x, eps: float = 1e-12):
    r"""``(u, norm)``: :math:`u = x / \max(\lVert x \rVert_2, \varepsilon)` along the last axis
    (``torch.nn.functional.normalize``'s rule) and the clamped norms."""
    n = xp.sqrt(xp.sum(x * x, axis=-1))
    denom = xp.where(n > eps, n, xp.full_like(n, eps))
    return x / xp.expand_dims(denom, axis=-1), denom


def normalize_backward(xp, g, u, denom, eps: float = 1e-12):
    r"""The gradient with respect to :math:`x` of a function of :math:`u = x / \lVert x
    \rVert`, from its gradient ``g`` with respect to ``u``:
    :math:`(g - (g \cdot u)\,u) / \lVert x \rVert`; where the norm is at most
    :math:`\varepsilon` (the clamp is active) it is :math:`g / \varepsilon`."""
    big = xp.expand_dims(denom > eps, axis=-1)
    gu = xp.expand_dims(xp.sum(g * u, axis=-1), axis=-1)
    proj = xp.where(big, gu * u, xp.zeros_like(u))
    return (g - proj) / xp.expand_dims(denom, axis=-1)


def column_logsumexp(xp, R, C, scale, bias, nb: int):
    r"""``(row_lse, col_lse)`` of :math:`S = s\,R C^\top + b` from one sweep of row blocks:
    each block's rows are complete, the columns' maxima and sums of exponentials are
    merged block by block (an online log-sum-exp)."""
    n_rows = R.shape[0]
    n_cols = C.shape[0]
    CT = xp.permute_dims(C, (1, 0))
    col_max = None
    col_sum = None
    row_lse = []
    for lo in range(0, n_rows, nb):
        hi = min(lo + nb, n_rows)
        S = xp.matmul(R[lo:hi, ...], CT) * scale
        if bias is not None:
            S = S + bias
        m = _safe_max(xp, S, 1)
        row_lse.append(m + _safe_log(xp, xp.sum(xp.exp(S - m[:, None]), axis=1)))
        cm = _safe_max(xp, S, 0)
        if col_max is None:
            col_max = cm
            col_sum = xp.sum(xp.exp(S - cm[None, :]), axis=0)
        else:
            new = xp.maximum(col_max, cm)
            col_sum = (col_sum * xp.exp(col_max - new)
                       + xp.sum(xp.exp(S - new[None, :]), axis=0))
            col_max = new
    if col_max is None:  # no rows
        empty = xp.zeros((0,), dtype=R.dtype, device=array_api_compat.device(R))
        col = xp.full((n_cols,), _NEG_INF, dtype=R.dtype, device=array_api_compat.device(R))
        return empty, col
    return xp.concat(row_lse), col_max + _safe_log(xp, col_sum)


def _safe_max(xp, S, axis):
    """Maximum along ``axis``, 0 where it is not finite (a row of -inf, NaN handled by
    the sums)."""
    m = xp.max(S, axis=axis)
    return xp.where(xp.isfinite(m), m, xp.zeros_like(m))


def _safe_log(xp, s):
    """log(s) for s >= 0 without a warning at 0: log 0 = -inf (NaN propagates)."""
    keep = (s > 0) | xp.isnan(s)
    out = xp.log(xp.where(keep, s, xp.ones_like(s)))
    return xp.where(keep, out, xp.full_like(s, _NEG_INF))


def sweep(xp, R, C, block_fn, nb: int, *, need_grad: bool, symmetric: bool,
          extras: tuple[str, ...] = ()):
    r"""Row blocks of the raw products :math:`P = R C^\top`, each handed to
    ``block_fn(lo, hi, P_block)``, which returns ``(values, G, sums)``: the block's row
    values, :math:`\partial L / \partial P` for its rows (``None`` without gradients) and a
    dict of scalars to add up over the blocks (the keys of ``extras``).

    Returns ``(values, gR, gC, sums)``: the row values concatenated, :math:`G C`
    and :math:`G^\top R` (with ``symmetric``, ``R`` is ``C`` and ``gR`` is their sum,
    ``gC`` None), and the summed scalars.
    """
    n_rows = R.shape[0]
    n_cols = C.shape[0]
    d = R.shape[1]
    dev = array_api_compat.device(R)
    CT = xp.permute_dims(C, (1, 0))
    numpy = _is_numpy(xp)
    values = []
    gr_parts = []
    gC = xp.zeros((n_cols, d), dtype=R.dtype, device=dev) if need_grad else None
    sums: dict[str, Any] = {k: xp.zeros((), dtype=R.dtype, device=dev) for k in extras}
    tmp = None
    for lo in range(0, n_rows, nb):
        hi = min(lo + nb, n_rows)
        Rb = R[lo:hi, ...]
        P = xp.matmul(Rb, CT)
        v, G, s = block_fn(lo, hi, P)
        del P
        if v is not None:
            values.append(v)
        for k in extras:
            sums[k] = sums[k] + s[k]
        if not need_grad:
            continue
        if numpy:
            # (C^T G^T)^T: OpenBLAS runs this orientation faster than G C, whose inner
            # axis (n_cols) is the longest
            part = np.empty((hi - lo, d), dtype=R.dtype)
            np.matmul(CT, G.T, out=part.T)
            gr_parts.append(part)
            if tmp is None:
                tmp = np.empty((n_cols, d), dtype=R.dtype)
            np.matmul(G.T, Rb, out=tmp)
            gC += tmp  # in place: no new (n_cols, d) array per block
        else:
            gr_parts.append(xp.matmul(G, C))
            gC = gC + xp.matmul(xp.permute_dims(G, (1, 0)), Rb)
    value = (xp.concat(values) if values
             else xp.zeros((0,), dtype=R.dtype, device=dev))
    if not need_grad:
        return value, None, None, sums
    gR = (xp.concat(gr_parts) if gr_parts
          else xp.zeros((0, d), dtype=R.dtype, device=dev))
    if symmetric:
        return value, gR + gC, None, sums
    return value, gR, gC, sums


def masked_rows(xp, r, G):
    """``r[:, None] * G`` with the rows of weight 0 exactly 0 (even where ``G`` is NaN)."""
    rr = r[:, None]
    return xp.where(rr != 0, rr * G, xp.zeros_like(G))


def all_nonzero(xp, r) -> bool:
    """Whether every weight is non-zero, answered only where it is cheap and certain (a
    NumPy array); ``False`` elsewhere (the kernels then mask the rows of weight 0)."""
    return _is_numpy(xp) and bool(np.all(np.asarray(r) != 0))


def fill_diagonal(xp, S, lo: int, value: float, col_of=None):
    """``S`` (rows ``lo:lo + S.shape[0]`` of a matrix) with entry ``(i, col_of[i])`` set to
    ``value`` (``col_of`` None: the diagonal, column ``lo + i``). NumPy: in place."""
    b = S.shape[0]
    if _is_numpy(xp):
        ar = np.arange(b)
        S[ar, (lo + ar) if col_of is None else col_of] = value
        return S
    dev = array_api_compat.device(S)
    rows = xp.arange(lo, lo + b, device=dev) if col_of is None else col_of
    cols = xp.arange(S.shape[1], device=dev)
    return xp.where(rows[:, None] == cols[None, :], xp.full_like(S, value), S)


def add_at(xp, G, col_of, value):
    """``G`` with ``value`` (a number or one per row) added at ``(i, col_of[i])`` of every
    row. NumPy: in place."""
    if _is_numpy(xp):
        ar = np.arange(G.shape[0])
        G[ar, col_of] += value
        return G
    cols = xp.arange(G.shape[1], device=array_api_compat.device(G))
    hit = xp.astype(col_of[:, None] == cols[None, :], G.dtype)
    if not isinstance(value, (int, float)):
        value = value[:, None]
    return G + value * hit


def frobenius(xp, A, B):
    """``sum(A * B)`` (NumPy: one dot product, no temporary)."""
    if _is_numpy(xp) and A.flags.c_contiguous and B.flags.c_contiguous:
        return np.asarray(np.vdot(A, B), dtype=A.dtype)
    return xp.sum(A * B)


def scale_rows(xp, X, f):
    """``X * f[:, None]``; in place on NumPy (``X`` must be a temporary of the kernel)."""
    if _is_numpy(xp):
        X *= f[:, None]
        return X
    return X * f[:, None]
