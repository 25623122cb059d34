r"""Blocked similarity-matrix kernels of the in-batch metric-learning losses.

The losses of :mod:`losskit.losses.metric_mining` and :mod:`losskit.losses.margin_heads`
compare every embedding of a batch with every other one (or with every class vector).
These kernels compute them **a block of rows at a time**: for anchors ``r0:r1`` the
``(B, N)`` similarities :math:`S = U_{r_0:r_1} U^\top` (one matrix product), the distances
derived from them, each anchor's terms, and the coefficients :math:`C = \partial L /
\partial D` (or :math:`\partial L / \partial S`) of the block, which two more matrix
products turn into the gradient of the rows and of the columns. On NumPy the block has at
most :data:`BLOCK_ELEMENTS` entries, so no ``N x N`` matrix ever exists; on the other
libraries (PyTorch, JAX, CuPy, ...) the whole batch is one block, written with Array-API
calls only (jit-friendly: no shape depends on a value).

Distances. With :math:`u_i` the (normalised) embeddings:

* ``"euclidean"``: :math:`D_{ij} = \sqrt{\max(0, \lVert u_i\rVert^2 + \lVert u_j\rVert^2 -
  2 S_{ij})}`, whose gradient is :math:`(u_i - u_j) / D_{ij}` (0 where :math:`D_{ij} = 0`,
  the subgradient PyTorch's ``cdist`` uses);
* ``"cosine"``: :math:`D_{ij} = 1 - S_{ij}` on unit vectors.

Triplets over all (or the semi-hard) positive-negative pairs of an anchor are summed in
:math:`O(N \log N)` per anchor, never enumerated: the keys :math:`D_{ap} + m` of the
positives and :math:`D_{an}` of the negatives are sorted together (one stable
``argsort``), and prefix sums give, for each positive, the number and the sum of the
distances of the negatives inside its margin, hence the anchor's sum of hinge terms and
the coefficient of every distance. Ties are broken towards the zero hinge (a term that is
exactly 0 is neither counted nor differentiated).

Normalisation (``u = x / \max(\lVert x \rVert, \varepsilon)``, as
``torch.nn.functional.normalize``) is differentiated at the end:
:math:`\partial L / \partial x = (g - u (u \cdot g)) / \lVert x \rVert` (``g / \varepsilon``
below :math:`\varepsilon`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import array_api_compat
import numpy as np

__all__ = ["BLOCK_ELEMENTS", "block_rows", "normalize_rows", "normalize_backward",
           "block_row_gradient", "block_gradient", "embedding_terms",
           "margin_head_terms"]

#: the largest block of the (anchors x batch) matrices on NumPy (float64: 2 MiB each; the
#: sort of the triplet sums works on a quarter of it, its keys being 2 or 3 rows wide)
BLOCK_ELEMENTS = 1 << 18


def block_rows(xp, n_rows: int, n_cols: int, budget: int | None = None) -> int:
    """Rows per block: all of them off NumPy, else at most ``budget / n_cols``."""
    if not array_api_compat.is_numpy_namespace(xp) or n_rows == 0:
        return max(n_rows, 1)
    budget = BLOCK_ELEMENTS if budget is None else budget
    return max(1, min(n_rows, budget // max(n_cols, 1)))


def _col(a):
    return a[:, None]


def _row(a):
    return a[None, :]


def normalize_rows(xp, x, eps: float):
    """``(u, norm, clamped norm)``: the rows divided by ``max(||x||, eps)``."""
    n = xp.sqrt(xp.sum(x * x, axis=-1))
    nc = xp.where(n > eps, n, xp.full_like(n, eps))
    return x / _col(nc), n, nc


def normalize_backward(xp, g, u, n, nc, eps: float):
    """The gradient with respect to ``x`` of a function of ``u = x / max(||x||, eps)``."""
    through = n > eps
    dot = xp.where(through, xp.sum(u * g, axis=-1), xp.zeros_like(n))
    return (g - _col(dot) * u) / _col(nc)


def block_row_gradient(xp, k, u, ub, euclidean: bool):
    r"""The gradient of a block's pair terms for the block's rows, from its coefficients
    ``k`` (B, N): with the Euclidean distance (``k`` the coefficients of :math:`D` times
    :math:`1/D`) :math:`\sum_j K_{ij}(u_i - u_j)`; else (``k`` the coefficients of
    :math:`S`) ``K U``."""
    if euclidean:
        return _col(xp.sum(k, axis=1)) * ub - xp.matmul(k, u)
    return xp.matmul(k, u)


def block_gradient(xp, k, u, ub, euclidean: bool):
    r"""``(rows, columns)``: :func:`block_row_gradient` and the gradient for every
    column, :math:`\sum_i K_{ij}(u_j - u_i)` (Euclidean) or :math:`K^\top U_b`."""
    rows = block_row_gradient(xp, k, u, ub, euclidean)
    if euclidean:
        return rows, _col(xp.sum(k, axis=0)) * u - xp.matmul(k.T, ub)
    return rows, xp.matmul(k.T, ub)


def _count(xp, mask, dtype):
    return xp.sum(xp.astype(mask, dtype), axis=-1)


def _safe_div(xp, a, b):
    ok = b != 0
    return xp.where(ok, a / xp.where(ok, b, xp.ones_like(b)), xp.zeros_like(a))


# ---------------------------------------------------------------------------- blocks
def _masked_lse(xp, z, mask):
    """Row log-sum-exp of ``z`` over ``mask`` (``-inf`` for an empty row) and the softmax
    over the mask (0 off it)."""
    neg = xp.full_like(z, -math.inf)
    zm = xp.where(mask, z, neg)
    m = xp.max(zm, axis=-1) if z.shape[-1] else xp.zeros(z.shape[:-1], dtype=z.dtype,
                                                                 device=array_api_compat.device(z))
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    e = xp.where(mask, xp.exp(z - _col(m)), xp.zeros_like(z))
    s = xp.sum(e, axis=-1)
    ok = s > 0
    lse = xp.where(ok, xp.log(xp.where(ok, s, xp.ones_like(s))) + m,
                   xp.full_like(s, -math.inf))
    return lse, _safe_div(xp, e, _col(s))


def _lse_with_zero(xp, z, mask):
    """``log(1 + sum_{mask} exp(z))`` per row and its gradient (the softmax with the
    extra zero logit), stably."""
    zm = xp.where(mask, z, xp.full_like(z, -math.inf))
    m = xp.max(zm, axis=-1) if z.shape[-1] else xp.zeros(z.shape[:-1], dtype=z.dtype,
                                                                 device=array_api_compat.device(z))
    m = xp.where(m > 0, m, xp.zeros_like(m))  # also for NaN-free empty rows
    e = xp.where(mask, xp.exp(z - _col(m)), xp.zeros_like(z))
    total = xp.exp(-m) + xp.sum(e, axis=-1)
    return m + xp.log(total), e / _col(total)


def _triplet_sorted(xp, d, pos, neg, margin: float, semihard: bool, need_grad: bool):
    """Sum over the anchor's (positive, negative) pairs of ``max(0, d_ap + m - d_an)``
    (``semihard``: only pairs with ``d_an > d_ap``), by one sort per row.

    Returns ``(value, nonzero count, count, coefficient of d)``. On NumPy the prefix sums
    of float32 distances run in float64 (each term is a difference of two such sums).
    """
    back = None
    if array_api_compat.is_numpy_namespace(xp) and d.dtype == np.float32:
        back, d = d.dtype, d.astype(np.float64)
    out = _triplet_sorted_core(xp, d, pos, neg, margin, semihard, need_grad)
    if back is None:
        return out
    return tuple(None if a is None else a.astype(back) for a in out)


def _triplet_sorted_core(xp, d, pos, neg, margin, semihard, need_grad):
    dt = d.dtype
    inf = xp.full_like(d, math.inf)
    zero = xp.zeros_like(d)
    pf = xp.astype(pos, dt)
    nf = xp.astype(neg, dt)
    dneg = xp.where(neg, d, zero)
    # concatenation order breaks ties of the stable sort: [hi, neg, lo]
    keys = [xp.where(pos, d + margin, inf), xp.where(neg, d, inf)]
    f_hi = [pf, zero]
    f_neg = [zero, nf]
    v_neg = [zero, dneg]
    if semihard:
        keys.append(xp.where(pos, d, inf))
        f_hi.append(zero)
        f_neg.append(zero)
        v_neg.append(zero)
        f_lo = xp.concat([zero, zero, pf], axis=1)
    keys = xp.concat(keys, axis=1)
    order = xp.argsort(keys, axis=1, stable=True)

    def srt(a):
        return xp.take_along_axis(a, order, axis=1)

    s_neg = srt(xp.concat(f_neg, axis=1))
    s_val = srt(xp.concat(v_neg, axis=1))
    neg_before = xp.cumulative_sum(s_neg, axis=1) - s_neg
    sum_before = xp.cumulative_sum(s_val, axis=1) - s_val
    inv = xp.argsort(order, axis=1)

    def unsort(a):
        return xp.take_along_axis(a, inv, axis=1)

    n = d.shape[1]
    nb = unsort(neg_before)
    sb = unsort(sum_before)
    cnt = nb[:, :n]
    tot = sb[:, :n]
    if semihard:
        cnt = cnt - nb[:, 2 * n:]
        tot = tot - sb[:, 2 * n:]
    cnt = xp.where(pos, cnt, zero)
    term = xp.where(pos, cnt * (d + margin) - tot, zero)
    # a hinge term is >= 0: rounding of the prefix sums must not make it negative
    value = xp.sum(xp.where(term > 0, term, zero), axis=1)
    nonzero = xp.sum(cnt, axis=1)
    if semihard:
        count = nonzero
    else:
        count = _count(xp, pos, dt) * _count(xp, neg, dt)
    if not need_grad:
        return value, nonzero, count, None
    s_hi = srt(xp.concat(f_hi, axis=1))
    hi_before = unsort(xp.cumulative_sum(s_hi, axis=1) - s_hi)[:, n:2 * n]
    if semihard:
        s_lo = srt(f_lo)
        lo_before = unsort(xp.cumulative_sum(s_lo, axis=1) - s_lo)[:, n:2 * n]
        inside = lo_before - hi_before
    else:
        inside = _col(_count(xp, pos, dt)) - hi_before
    coef = cnt - xp.where(neg, inside, zero)
    return value, nonzero, count, coef


def _triplet_broadcast(xp, d, pos, neg, margin: float, semihard: bool, need_grad: bool):
    """The same sums by an explicit (B, N, N) broadcast (namespaces without
    ``take_along_axis``, e.g. Dask)."""
    dt = d.dtype
    t = d[:, :, None] + margin - d[:, None, :]  # [a, p, n]
    sel = pos[:, :, None] & neg[:, None, :]
    if semihard:
        sel = sel & (d[:, None, :] > d[:, :, None])
    act = sel & (t > 0)
    zero = xp.zeros_like(t)
    value = xp.sum(xp.sum(xp.where(act, t, zero), axis=2), axis=1)
    actf = xp.astype(act, dt)
    nonzero = xp.sum(xp.sum(actf, axis=2), axis=1)
    count = nonzero if semihard else _count(xp, pos, dt) * _count(xp, neg, dt)
    if not need_grad:
        return value, nonzero, count, None
    coef = xp.sum(actf, axis=2) - xp.sum(actf, axis=1)
    return value, nonzero, count, coef


def _triplet_hard(xp, d, pos, neg, margin: float, need_grad: bool):
    dt = d.dtype
    zero = xp.zeros_like(d)
    valid = xp.any(pos, axis=1) & xp.any(neg, axis=1)
    if d.shape[1]:
        dmax = xp.max(xp.where(pos, d, xp.full_like(d, -math.inf)), axis=1)
        dmin = xp.min(xp.where(neg, d, xp.full_like(d, math.inf)), axis=1)
    else:
        dmax = dmin = xp.zeros(d.shape[:1], dtype=dt, device=array_api_compat.device(d))
    zr = xp.zeros_like(dmax)
    s = xp.where(valid, dmax - dmin + margin, zr)
    active = ((s > 0) | xp.isnan(s)) & valid
    value = xp.where(active, s, zr)
    nonzero = xp.astype(value > 0, dt)
    count = xp.astype(valid, dt)
    if not need_grad:
        return value, nonzero, count, None
    hp = pos & (d == _col(dmax))
    hn = neg & (d == _col(dmin))
    hpf = xp.astype(hp, dt)
    hnf = xp.astype(hn, dt)
    coef = _safe_div(xp, hpf, _col(xp.sum(hpf, axis=1))) - _safe_div(
        xp, hnf, _col(xp.sum(hnf, axis=1)))  # ties share the gradient equally
    coef = xp.where(_col(active), coef, zero)
    return value, nonzero, count, coef


def _block_components(xp, kind, s, d, pos, neg, opts, need_grad):
    """Per component: ``(value, nonzero, count, coefficient)``; the coefficient is of
    ``d`` (``on="d"``) or of ``s`` (``on="s"``)."""
    dt = s.dtype
    zero = xp.zeros_like(s)
    if kind == "triplet":
        mining, m = opts["mining"], opts["margin"]
        if mining == "hard":
            return "d", [_triplet_hard(xp, d, pos, neg, m, need_grad)]
        fn = _triplet_sorted if hasattr(xp, "take_along_axis") else _triplet_broadcast
        return "d", [fn(xp, d, pos, neg, m, mining == "semihard", need_grad)]
    if kind == "contrastive":
        mp, mn = opts["pos_margin"], opts["neg_margin"]
        tp = d - mp
        ap = pos & ((tp > 0) | xp.isnan(tp))
        tn = mn - d
        an = neg & ((tn > 0) | xp.isnan(tn))
        vp = xp.where(ap, tp, zero)
        vn = xp.where(an, tn, zero)
        out = []
        for v, act, mask, sign in ((vp, ap, pos, 1.0), (vn, an, neg, -1.0)):
            coef = None
            if need_grad:
                coef = xp.astype(act, dt)
                coef = coef if sign > 0 else -coef
            out.append((xp.sum(v, axis=1), _count(xp, act, dt), _count(xp, mask, dt), coef))
        return "d", out
    if kind == "multi_similarity":
        a, b, lam = opts["alpha"], opts["beta"], opts["base"]
        lp, wp = _lse_with_zero(xp, -a * (s - lam), pos)
        ln, wn = _lse_with_zero(xp, b * (s - lam), neg)
        value = lp / a + ln / b
        coef = (wn - wp) if need_grad else None
        return "s", [(value, xp.astype(value > 0, dt), xp.ones_like(value), coef)]
    if kind == "circle":
        m, gamma, detach = opts["margin"], opts["gamma"], opts["detach_weights"]
        op, dp, on, dn = 1.0 + m, 1.0 - m, -m, m
        ap_raw = op - s
        an_raw = s - on
        ap = xp.where(ap_raw > 0, ap_raw, zero)
        an = xp.where(an_raw > 0, an_raw, zero)
        zp = -gamma * ap * (s - dp)
        zn = gamma * an * (s - dn)
        lse_p, sp = _masked_lse(xp, zp, pos)
        lse_n, sn = _masked_lse(xp, zn, neg)
        valid = xp.any(pos, axis=1) & xp.any(neg, axis=1)
        zr = xp.zeros(valid.shape, dtype=dt, device=array_api_compat.device(valid))
        big = xp.where(valid, lse_p + lse_n, zr)
        value = xp.where(valid, xp.maximum(big, zr) + xp.log1p(xp.exp(-xp.abs(big))), zr)
        coef = None
        if need_grad:
            if detach:
                dzp, dzn = -gamma * ap, gamma * an
            else:
                dzp = -gamma * (ap - (s - dp) * xp.astype(ap_raw > 0, dt))
                dzn = gamma * (an + (s - dn) * xp.astype(an_raw > 0, dt))
            e = xp.exp(-xp.abs(big))
            sig = xp.where(big >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            sig = xp.where(valid, sig, zr)
            coef = _col(sig) * (sp * dzp + sn * dzn)
        return "s", [(value, xp.astype(value > 0, dt), xp.ones_like(value), coef)]
    raise ValueError(f"unknown kind {kind!r}")  # pragma: no cover


def embedding_terms(xp, x, labels, sw, *, kind: str, opts: dict, distance: str,
                    normalize: bool, need_grad: bool, eps: float = 1e-12, rows=None):
    """Per-anchor terms of an in-batch loss of the embeddings ``x`` (N, D).

    Returns ``(components, grads)``: per component ``(value, nonzero, count)`` arrays of
    shape (N,), and (``need_grad``) per component the gradient with respect to ``x`` of
    ``sum_i sw_i value_i`` (``sw`` None: 1).
    """
    n_rows, dim = x.shape
    use_norm = normalize or distance == "cosine" or kind in ("multi_similarity", "circle")
    if use_norm:
        u, nrm, nrmc = normalize_rows(xp, x, eps)
    else:
        u = x
    sq = xp.sum(u * u, axis=-1)
    dt = x.dtype
    fused = _fused_terms(xp, kind, u, sq, labels, sw, opts, distance, need_grad, rows)
    if fused is not None:
        comps, grads = fused
        if need_grad and use_norm:
            grads = [normalize_backward(xp, g, u, nrm, nrmc, eps) for g in grads]
        return comps, grads
    sorting = kind == "triplet" and opts.get("mining") != "hard"
    rows = rows or block_rows(xp, n_rows, n_rows,
                              BLOCK_ELEMENTS // 4 if sorting else BLOCK_ELEMENTS)
    numpy_blocks = rows < n_rows
    dev = array_api_compat.device(x)
    cols = xp.arange(n_rows, device=dev)
    comps, grads = None, None
    for r0 in range(0, max(n_rows, 1), rows):
        r1 = min(n_rows, r0 + rows)
        ub = u[r0:r1, ...] if numpy_blocks else u
        s = xp.matmul(ub, u.T)
        same = _col(labels[r0:r1] if numpy_blocks else labels) == _row(labels)
        eye = _col(cols[r0:r1] if numpy_blocks else cols) == _row(cols)
        pos = same & ~eye
        neg = ~same
        if distance == "euclidean":
            sqb = sq[r0:r1] if numpy_blocks else sq
            d2 = _col(sqb) + _row(sq) - 2.0 * s
            d = xp.sqrt(xp.where(d2 > 0, d2, xp.zeros_like(d2)))
            d = xp.where(eye, xp.zeros_like(d), d)
        else:
            d = 1.0 - s
        on, parts = _block_components(xp, kind, s, d, pos, neg, opts, need_grad)
        inv_d = None
        if need_grad and on == "d" and distance == "euclidean":
            # d D_ij / d u_i = (u_i - u_j) / D_ij, 0 on the diagonal and where D_ij = 0
            ok = (d > 0) & ~eye
            inv_d = xp.where(ok, 1.0 / xp.where(ok, d, xp.ones_like(d)), xp.zeros_like(d))
        if comps is None:
            if numpy_blocks:
                comps = [tuple(np.empty(n_rows, dtype=dt) for _ in range(3)) for _ in parts]
                if need_grad:
                    grads = [np.zeros((n_rows, dim), dtype=dt) for _ in parts]
            else:
                comps, grads = [], [] if need_grad else None
        for k, (value, nonzero, count, coef) in enumerate(parts):
            if numpy_blocks:
                comps[k][0][r0:r1] = value
                comps[k][1][r0:r1] = nonzero
                comps[k][2][r0:r1] = count
            else:
                comps.append((value, nonzero, count))
            if not need_grad:
                continue
            if sw is not None:
                w = _col(sw[r0:r1] if numpy_blocks else sw)
                coef = w * xp.where(w == 0, xp.zeros_like(coef), coef)
            if inv_d is not None:
                g_rows, g_cols = block_gradient(xp, coef * inv_d, u, ub, True)
            else:
                c_s = -coef if on == "d" else coef  # cosine distance 1 - S
                g_rows, g_cols = block_gradient(xp, c_s, u, ub, False)
            if numpy_blocks:
                grads[k][r0:r1] += g_rows
                grads[k] += g_cols
            else:
                grads.append(g_rows + g_cols)
        if n_rows == 0:
            break
    if need_grad and use_norm:
        grads = [normalize_backward(xp, g, u, nrm, nrmc, eps) for g in grads]
    return comps, grads


#: the largest class of a batch (positives of an anchor + 1) for which
#: ``batch_triplet_loss(mining="all" / "semihard")`` enumerates the pairs (``O(P N)`` per
#: anchor) instead of sorting (``O(N log N)``, the array formulas)
MAX_POSITIVES = 128


def _fused_terms(xp, kind, u, sq, labels, sw, opts, distance, need_grad, rows):
    """:func:`embedding_terms` on NumPy with numba (:mod:`losskit.kernels.mining_numba`):
    per block one matrix product for the similarities and fused passes over the pairs
    (:func:`_contrastive_blocks`, :func:`_hard_triplet_blocks`,
    :func:`_coefficient_blocks`). None where it does not apply: another loss or library,
    numba off, labels that are not integers, sample weights that are not all finite, an
    empty batch; all but the contrastive loss also need squared norms below 1e30 (the
    array formulas' NaN and overflow rules then hold), all and semi-hard triplets classes
    of at most :data:`MAX_POSITIVES`."""
    from ..core import dispatch
    from . import fast_paths

    mining = opts.get("mining") if kind == "triplet" else None
    n_rows = u.shape[0]
    if (kind not in ("contrastive", "triplet", "multi_similarity", "circle")
            or not array_api_compat.is_numpy_namespace(xp)
            or not dispatch.ENABLED or n_rows == 0 or u.dtype.char not in "fd"
            or labels.dtype.kind not in "iu"
            or (sw is not None and not np.all(np.isfinite(sw)))
            or (kind != "contrastive" and not np.all(sq < 1e30))
            or (mining in ("all", "semihard")
                and np.unique(labels, return_counts=True)[1].max() > MAX_POSITIVES)):
        return None
    nb = fast_paths.family_numba("mining_numba")
    if nb is None:
        return None
    run = functools.partial(fast_paths._kernel, nb)  # None where numba cannot compile
    # the kernel (the first block is where that shows): the array formulas then run
    a = _FusedArgs(u=np.ascontiguousarray(u), sq=np.ascontiguousarray(sq),
                   labels=np.ascontiguousarray(labels, dtype=np.int64),
                   w=(np.ones(n_rows, dtype=np.float64) if sw is None else
                      np.asarray(sw, dtype=np.float64)),
                   euclidean=distance == "euclidean", need_grad=need_grad,
                   rows=rows or block_rows(xp, n_rows, n_rows))
    if kind == "contrastive":
        return _contrastive_blocks(nb, run, a, float(opts["pos_margin"]),
                                   float(opts["neg_margin"]))
    if mining == "hard":
        return _hard_triplet_blocks(nb, run, a, float(opts["margin"]))
    if kind == "triplet":  # every (positive, negative) pair, the coefficients of D
        scratch = (*(np.empty(n_rows, dtype=np.float64) for _ in range(3)),
                   np.empty(n_rows, dtype=np.int64), np.empty(n_rows, dtype=np.float64))
        args = (a.sq, a.labels, a.w)
        tail = (float(opts["margin"]), a.euclidean, mining == "semihard", need_grad)

        def block(k, r0, stats):
            return run(nb.triplet_all_block, k, *args, r0, *tail, stats, *scratch)
        return _coefficient_blocks(a, block, a.euclidean)
    if kind == "multi_similarity":
        kernel = nb.multi_similarity_block
        tail = (float(opts["alpha"]), float(opts["beta"]), float(opts["base"]), need_grad)
    else:
        kernel = nb.circle_block
        tail = (float(opts["margin"]), float(opts["gamma"]), bool(opts["detach_weights"]),
                need_grad)

    def block(k, r0, stats):
        return run(kernel, k, a.labels, a.w, r0, *tail, stats)
    return _coefficient_blocks(a, block, False)


@dataclasses.dataclass
class _FusedArgs:
    """What every fused block reads: the (normalised) embeddings, their squared norms,
    int64 labels, the anchors' weights (float64, ones without sample weights), the
    distance, whether the gradient is wanted and the rows per block."""

    u: np.ndarray
    sq: np.ndarray
    labels: np.ndarray
    w: np.ndarray
    euclidean: bool
    need_grad: bool
    rows: int


def _blocks(a):
    """``(r0, r1)`` of each block of anchors."""
    n = a.u.shape[0]
    return ((r0, min(n, r0 + a.rows)) for r0 in range(0, n, a.rows))


def _components(stats, dt, columns):
    """Per component ``(value, nonzero, count)`` in ``dt`` from the float64 ``stats``."""
    return [tuple(stats[:, c].astype(dt) for c in cols) for cols in columns]


def _contrastive_blocks(nb, run, a, pos_margin, neg_margin):
    """``batch_contrastive_loss``: its pair coefficients are symmetric, so
    ``contrastive_block`` writes :math:`K_{ij} = A_{ij}(w_i + w_j)` and the gradient of
    the block's rows is one product per component, final for those rows (no columns'
    products, nothing accumulated over the blocks)."""
    u, dt = a.u, a.u.dtype
    n_rows, dim = u.shape
    stats = np.empty((n_rows, 6), dtype=np.float64)
    grads = [np.empty((n_rows, dim), dtype=dt) for _ in range(2)] if a.need_grad else None
    k_neg = np.empty((min(a.rows, n_rows), n_rows) if a.need_grad else (1, 1), dtype=dt)
    for r0, r1 in _blocks(a):
        ub = u[r0:r1]
        k_pos = ub @ u.T
        kn = k_neg[: r1 - r0] if a.need_grad else k_neg
        if run(nb.contrastive_block, k_pos, a.sq, a.labels, a.w, r0, pos_margin,
               neg_margin, a.euclidean, a.need_grad, kn, stats[r0:r1]) is None:
            return None
        if not a.need_grad:
            continue
        for g, k in ((grads[0], k_pos), (grads[1], kn)):
            g[r0:r1] = block_row_gradient(np, k, u, ub, a.euclidean)
    return _components(stats, dt, ((0, 2, 4), (1, 3, 5))), grads


def _hard_triplet_blocks(nb, run, a, margin):
    """``batch_triplet_loss(mining="hard")``: ``triplet_hard_block`` adds the gradient of
    each anchor's hardest pairs straight into their rows (no coefficient matrix)."""
    u, dt = a.u, a.u.dtype
    n_rows, dim = u.shape
    stats = np.empty((n_rows, 3), dtype=np.float64)
    g = np.zeros((n_rows, dim) if a.need_grad else (1, 1), dtype=dt)
    for r0, r1 in _blocks(a):
        if run(nb.triplet_hard_block, u[r0:r1] @ u.T, a.sq, a.labels, a.w, r0, margin,
               a.euclidean, a.need_grad, u, g, stats[r0:r1]) is None:
            return None
    return _components(stats, dt, ((0, 1, 2),)), ([g] if a.need_grad else None)


def _coefficient_blocks(a, block, euclidean):
    """One component whose kernel ``block(k, r0, stats)`` writes the coefficients over
    the block's similarities ``k``: the rows' and the columns' products of
    :func:`block_gradient`, as the generic block."""
    u, dt = a.u, a.u.dtype
    n_rows, dim = u.shape
    stats = np.empty((n_rows, 3), dtype=np.float64)
    g = np.zeros((n_rows, dim), dtype=dt) if a.need_grad else None
    for r0, r1 in _blocks(a):
        ub = u[r0:r1]
        k = ub @ u.T
        if block(k, r0, stats[r0:r1]) is None:
            return None
        if a.need_grad:
            g_rows, g_cols = block_gradient(np, k, u, ub, euclidean)
            g[r0:r1] += g_rows
            g += g_cols
    return _components(stats, dt, ((0, 1, 2),)), ([g] if a.need_grad else None)


def _ce_kernels(xp, dt):
    """The numba softmax cross-entropy kernels (``numba_kernels``) for NumPy blocks of
    float32/float64, or None (another library, numba off or missing, the fast paths off:
    the array formulas of :func:`margin_head_terms` then run)."""
    from ..core import dispatch
    from . import fast_paths

    if (not array_api_compat.is_numpy_namespace(xp) or not dispatch.ENABLED
            or np.dtype(dt).char not in "fd"):
        return None
    return fast_paths._nb()


def _margin_ce_block(nb, c, labels, psi, dpsi, scale, need_grad):
    """The margin head's cross-entropy of a NumPy block of cosines ``c`` (overwritten):
    the logits ``scale * c`` with each row's target replaced by ``scale * psi`` go through
    the softmax CE kernel, whose gradient ``scale * (p - onehot)`` is the head's once its
    target entries are multiplied by ``dpsi``. Returns (per-row values, gradient or None),
    or None where numba cannot compile the kernel."""
    from .fast_paths import _kernel

    n = c.shape[0]
    rows = np.arange(n)
    y = np.ascontiguousarray(labels, dtype=np.intp)
    c *= c.dtype.type(scale)
    c[rows, y] = scale * psi
    g = np.empty_like(c) if need_grad else nb.scratch_rows(n, c.shape[1], c.dtype)
    values = np.empty(n, dtype=np.float64)
    # the serial build: between the blocks' matrix products, whose BLAS threads still
    # spin, a parallel loop would fight them for the cores (measured 10x slower)
    res = _kernel(nb, nb.softmax_ce_serial, c, y, False, 0, False, scale, g, values,
                  need_grad)
    if res is None:  # numba cannot compile it here (``c`` is overwritten all the same)
        return None
    if need_grad:
        g[rows, y] *= dpsi
    return values.astype(c.dtype), (g if need_grad else None)


def margin_head_terms(xp, feats, weight, labels, sw, *, kind: str, scale: float,
                      margin: float, easy_margin: bool, need_grad: bool, eps: float = 1e-12,
                      rows=None):
    """Per-example cross-entropy of an ArcFace / CosFace head and (``need_grad``) the
    gradients of ``sum_i sw_i loss_i`` with respect to ``feats`` and ``weight``."""
    n_rows, dim = feats.shape
    n_cls = weight.shape[0]
    dt = feats.dtype
    u, nu, nuc = normalize_rows(xp, feats, eps)
    w, nw, nwc = normalize_rows(xp, weight, eps)
    rows = rows or block_rows(xp, n_rows, n_cls)
    numpy_blocks = rows < n_rows
    classes = xp.arange(n_cls, device=array_api_compat.device(feats))
    values, g_u_parts = [], []
    g_w = None
    cos_m, sin_m = math.cos(margin), math.sin(margin)
    tiny = math.sqrt(float(xp.finfo(dt).eps))
    ce = _ce_kernels(xp, dt)
    for r0 in range(0, max(n_rows, 1), rows):
        r1 = min(n_rows, r0 + rows)
        ub = u[r0:r1, ...] if numpy_blocks else u
        yb = labels[r0:r1] if numpy_blocks else labels
        c = xp.matmul(ub, w.T)
        if ce is not None:  # (NumPy: a gather, no one-hot mask of the block)
            cy = c[np.arange(c.shape[0]), yb]
        else:
            hot = _col(yb) == _row(classes)
            cy = xp.sum(xp.where(hot, c, xp.zeros_like(c)), axis=1)
        if kind == "cosface":
            psi = cy - margin
            dpsi = xp.ones_like(cy)
        else:
            inside = (cy >= -1.0) & (cy <= 1.0)
            cc = xp.clip(cy, -1.0, 1.0)
            sin_t = xp.sqrt(xp.clip(1.0 - cc * cc, 0.0, 1.0))
            cos_tm = cc * cos_m - sin_t * sin_m  # cos(theta + m)
            d_tm = cos_m + cc * sin_m / xp.where(sin_t > tiny, sin_t, xp.full_like(sin_t, tiny))
            if easy_margin:
                use = cc > 0
                other, d_other = cy, xp.ones_like(cy)
            else:
                # theta <= pi - m  <=>  cos(theta) >= cos(pi - m) = -cos(m)
                use = cc >= -cos_m
                other, d_other = cc - margin * sin_m, xp.astype(inside, dt)
            psi = xp.where(use, cos_tm, other)
            dpsi = xp.where(use, d_tm * xp.astype(inside, dt), d_other)
        fused = None
        if ce is not None:  # NumPy with numba: the softmax CE kernel on the block
            fused = _margin_ce_block(ce, c, yb, psi, dpsi, scale, need_grad)
            if fused is None:  # numba cannot compile it: the array formulas from here on
                ce, c = None, xp.matmul(ub, w.T)  # (the attempt overwrote the block)
                hot = _col(yb) == _row(classes)
        if fused is not None:
            value, gc = fused
            values.append(value)
            if not need_grad:
                continue
        else:
            z = scale * xp.where(hot, _col(psi), c)
            mx = xp.max(z, axis=1)
            e = xp.exp(z - _col(mx))
            tot = xp.sum(e, axis=1)
            values.append(xp.log(tot) + mx - scale * psi)
            if not need_grad:
                continue
            p = e / _col(tot)
            gc = scale * xp.where(hot, (p - 1.0) * _col(dpsi), p)
        if sw is not None:
            wb = _col(sw[r0:r1] if numpy_blocks else sw)
            gc = wb * xp.where(wb == 0, xp.zeros_like(gc), gc)
        g_u_parts.append(xp.matmul(gc, w))
        gw = xp.matmul(gc.T, ub)
        g_w = gw if g_w is None else g_w + gw
        if n_rows == 0:
            break
    value = values[0] if len(values) == 1 else xp.concat(values, axis=0)
    if not need_grad:
        return value, None, None
    g_u = g_u_parts[0] if len(g_u_parts) == 1 else xp.concat(g_u_parts, axis=0)
    return (value, normalize_backward(xp, g_u, u, nu, nuc, eps),
            normalize_backward(xp, g_w, w, nw, nwc, eps))
