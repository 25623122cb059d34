r"""Fused NumPy fast paths of the ranking losses (:mod:`losskit.losses.ranking`).

One driver, :func:`_run`, takes the lists of a call (the last axis) in blocks that stay
in cache (the pairwise losses form ``B x L x L`` arrays: a block holds about
:data:`PAIR_BLOCK` pairs), computes each block's per-list values and gradient in
float64 and writes the gradient, scaled by the reduction, into the result. Against the
generic Array-API kernels (which form ``L x L`` comparison arrays for every loss, at
the size of the whole batch) it saves the temporaries and uses sorts where they are
cheaper:

* ``pairwise_logistic_loss``: the pair sums of the generic kernel, per block;
* ``lambdarank_loss``: ranks of the scores and the ideal DCG from stable sorts
  (``O(L log L)``), then the weighted pair sums;
* ``ranking_softmax_loss``: one softmax per list (``O(L)``);
* ``listmle_loss``: a stable sort of the labels, a reversed ``logaddexp.accumulate``
  for the log-normalisers :math:`L_k` and, for the gradient
  :math:`\sum_{k \le m} e^{s_{\pi(m)} - L_k}`, a forward one of :math:`-L_k`
  (``O(L log L)``; no ``L x L`` array).

Covered: float32 and float64 scores (C-contiguous, not empty), labels of the scores'
shape (bool, integer or floating), ``where`` of the scores' shape and dtype bool or
``None``, ``ranking_softmax_loss``'s ``weights`` of the scores' shape, every reduction.
Not covered (``NotImplemented``; the generic path answers, with its own errors):
``sample_weight``, a non-finite score on a valid item, and anything invalid (labels or
weights that are NaN, infinite or negative where that is an error, shapes or dtypes
that differ). Engine: where numba is on, every one of them runs in one sweep per list
that takes the arrays as they are, checks them and writes the scaled gradient
(:func:`_direct`; :mod:`losskit.kernels.ranking_numba`, lists in parallel, float64
scratch rows of a few lists per thread: no ``B x L x L`` arrays, no float64 copies of the
batch; lambdarank's sorts per list there too); the blocks above are the NumPy engine.
"""

from __future__ import annotations

import numpy as np

from . import fast_paths as _fp
from .fast_paths import STATS, _float_prediction, _gradient_target, _out_ok, _result, _scale

__all__ = ["pairwise_logistic_loss", "lambdarank_loss", "ranking_softmax_loss",
           "listmle_loss", "PAIR_BLOCK"]

#: pairs (list x item x item) per block of the pairwise losses
PAIR_BLOCK = 1 << 15
#: items per block of the O(L) and O(L log L) losses
ITEM_BLOCK = 1 << 15
_LN2 = float(np.log(2.0))
_EMPTY1 = np.empty(0, np.float64)
_EMPTY2 = np.empty((0, 0), np.float64)
_EMPTY_BOOL2 = np.empty((0, 0), np.bool_)


def _item_array(x, shape, *, nonnegative, valid):
    """``labels`` / ``weights`` as float64 of ``shape``, or None when the generic path
    must answer (another shape or dtype, NaN, infinite or negative on a valid item)."""
    if type(x) is not np.ndarray or x.shape != shape or x.dtype.kind not in "biuf":
        return None
    a = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(a)
        if nonnegative:
            bad |= a < 0
    if valid is not None:
        bad &= valid
        a[~valid] = 0.0
    if bad.any():
        return None
    return a


def _softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _pairs(s, w, need_grad):
    r"""Values and gradient of :math:`\sum_{ij} w_{ij} \log(1 + e^{-(s_i - s_j)})`."""
    d = s[:, :, None] - s[:, None, :]
    value = np.einsum("bij,bij->b", w, _softplus(-d))
    if not need_grad:
        return value, None
    a = w * _sigmoid(-d)
    return value, a.sum(axis=1) - a.sum(axis=2)


def _pair_mask(y, v):
    p = y[:, :, None] > y[:, None, :]
    if v is not None:
        p &= v[:, :, None] & v[:, None, :]
    return p.astype(np.float64)


def _ranknet_block(s, y, v, extra, need_grad):
    return _pairs(s, _pair_mask(y, v), need_grad)


def _stable_desc(key):
    """Positions 0 .. L-1 of every item when sorted by ``key`` descending, ties in index
    order (argsort of -key with a stable sort; -inf keys, the padding, go last)."""
    order = np.argsort(-key, axis=1, kind="stable")
    pos = np.empty_like(order)
    np.put_along_axis(pos, order, np.arange(key.shape[1])[None, :], axis=1)
    return pos


def _lambdarank_block(s, y, v, extra, need_grad):
    length = s.shape[1]
    key = s if v is None else np.where(v, s, -np.inf)
    disc = _LN2 / np.log1p(_stable_desc(key) + 1.0)  # 1 / log2(1 + rank)
    gain = np.expm1(y * _LN2)  # 0 on padding (its label is 0)
    ideal = -np.sort(-gain, axis=1)  # padding and 0 labels gain nothing: order irrelevant
    idcg = ideal @ (_LN2 / np.log1p(np.arange(1.0, length + 1.0)))
    inv = np.divide(1.0, idcg, out=np.zeros_like(idcg), where=idcg > 0)
    w = (np.abs(gain[:, :, None] - gain[:, None, :]) * np.abs(disc[:, :, None] - disc[:, None, :])
         * inv[:, None, None] * _pair_mask(y, v))
    return _pairs(s, w, need_grad)


def _softmax_block(s, y, v, weights, need_grad):
    if weights is not None:
        y = y * weights
    masked = s if v is None else np.where(v, s, -np.inf)
    m = masked.max(axis=1, keepdims=True)
    m[m == -np.inf] = 0.0
    shifted = s - m
    e = np.exp(shifted)
    if v is not None:
        e *= v
    z = e.sum(axis=1, keepdims=True)
    z[z == 0] = 1.0
    value = (y * (np.log(z) - shifted)).sum(axis=1)
    if not need_grad:
        return value, None
    return value, y.sum(axis=1, keepdims=True) * (e / z) - y


def _listmle_block(s, y, v, extra, need_grad):
    key = y if v is None else np.where(v, y, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")
    ss = np.take_along_axis(s, order, axis=1)
    vs = None if v is None else np.take_along_axis(v, order, axis=1)
    if vs is not None:
        ss = np.where(vs, ss, -np.inf)
    with np.errstate(invalid="ignore"):
        tail = np.logaddexp.accumulate(ss[:, ::-1], axis=1)[:, ::-1]  # L_k
        term = tail - ss
    if vs is not None:
        term = np.where(vs, term, 0.0)
    value = term.sum(axis=1)
    if not need_grad:
        return value, None
    neg = -tail if vs is None else np.where(vs, -tail, -np.inf)
    with np.errstate(invalid="ignore"):
        acc = np.logaddexp.accumulate(neg, axis=1)  # log sum_{k <= m} e^{-L_k}
        gs = np.exp(ss + acc) - 1.0
    if vs is not None:
        gs = np.where(vs, gs, 0.0)
    g = np.empty_like(gs)
    np.put_along_axis(g, order, gs, axis=1)
    return value, g


def _run(loss, arrays, reduction, sample_weight, opts, want, out, block_fn, *, pairwise,
         nonnegative, weights=None, direct=None, lambda_weights=False):
    if sample_weight is not None or len(arrays) != 2:
        return NotImplemented
    s, labels = arrays
    if type(s) is not np.ndarray or s.ndim == 0:
        return NotImplemented
    dt = _float_prediction(s)
    if dt is None or s.shape[-1] == 0:
        return NotImplemented
    need_grad = want != "value"
    if need_grad and out is not None and not _out_ok(out, s):
        return NotImplemented
    where = opts.get("where")
    if where is not None and (type(where) is not np.ndarray or where.dtype != np.bool_
                              or where.shape != s.shape):
        return NotImplemented
    length = s.shape[-1]
    if direct is not None:
        nb = _fp.family_numba("ranking_numba")
        if nb is not None:
            return _direct(loss, nb, direct, s, labels, where, weights, reduction, want,
                           out, arrays, lambda_weights)
    s2 = s.reshape(-1, length).astype(np.float64)
    v2 = None if where is None else where.reshape(-1, length)
    if v2 is not None and v2.all():
        v2 = None
    finite = np.isfinite(s2)
    if not (finite.all() if v2 is None else finite[v2].all()):
        return NotImplemented  # NaN or infinite scores: the generic path's rules
    if v2 is not None:
        s2[~v2] = 0.0
    y2 = _item_array(labels, s.shape, nonnegative=nonnegative,
                     valid=None if where is None else where)
    if y2 is None:
        return NotImplemented
    y2 = y2.reshape(-1, length)
    w2 = None
    if weights is not None:
        w2 = _item_array(weights, s.shape, nonnegative=True,
                         valid=None if where is None else where)
        if w2 is None:
            return NotImplemented
        w2 = w2.reshape(-1, length)
    n = s2.shape[0]
    count = n if v2 is None else int(np.count_nonzero(v2.any(axis=1)))
    batch = s.shape[0] if s.ndim > 1 else 1
    scale = _scale(reduction, count, batch)
    g, copy_to = _gradient_target(need_grad, out, s, arrays)
    g2 = g.reshape(-1, length) if need_grad else None
    values = np.empty(n, dtype=np.float64)
    rows = max(1, (PAIR_BLOCK // (length * length)) if pairwise else ITEM_BLOCK // length)
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        vb = None if v2 is None else v2[r0:r1]
        wb = None if w2 is None else w2[r0:r1]
        value, grad = block_fn(s2[r0:r1], y2[r0:r1], vb, wb, need_grad)
        values[r0:r1] = value
        if need_grad:
            if scale is not None:
                grad *= scale
            g2[r0:r1] = grad
    total = float(values.sum())
    STATS[loss.name, "numpy"] += 1
    return _result(want, reduction, dt, total, values.reshape(s.shape[:-1]), scale, g, copy_to)


def _build(nb, name, size):
    """The parallel or the serial build of kernel ``name`` for ``size`` elements."""
    return getattr(nb, f"{name}_parallel" if size >= _fp.PARALLEL_MIN else f"{name}_serial")


def _direct(loss, nb, name, s, labels, where, weights, reduction, want, out, arrays,
            lambda_weights=False):
    """The numba list kernels that take the arrays as they are (``softmax_lists``,
    ``listmle_lists``, ``pair_lists`` with or without ``lambda_weights``): no float64
    copies; the kernel checks the valid items (an invalid
    one: NotImplemented, the generic path raises) and writes the scaled gradient."""
    shape, length = s.shape, s.shape[-1]
    for x in (labels, weights):
        if x is not None and (type(x) is not np.ndarray or x.shape != shape
                              or x.dtype.kind not in "biuf"):
            return NotImplemented
    s2 = s.reshape(-1, length)
    n = s2.shape[0]
    # (bool read as uint8: numba converts no bool to a float)
    y2 = np.ascontiguousarray(labels).reshape(n, length)
    if y2.dtype.kind == "b":
        y2 = y2.view(np.uint8)
    v2 = None if where is None else np.ascontiguousarray(where).reshape(n, length)
    count = n if v2 is None else int(np.count_nonzero(v2.any(axis=1)))
    scale = _scale(reduction, count, shape[0] if s.ndim > 1 else 1)
    need_grad = want != "value"
    g, copy_to = _gradient_target(need_grad, out, s, arrays)
    g2 = g.reshape(n, length) if need_grad else _fp._DUMMY2[s.dtype.char]
    values = np.empty(n, dtype=np.float64)
    head = (s2, y2, _EMPTY_BOOL2 if v2 is None else v2, v2 is not None)
    kernel = _build(nb, name, s.size * (length if name == "pair_lists" else 1))
    if name == "pair_lists":
        head += (lambda_weights,)
    if name == "softmax_lists":
        w2 = None if weights is None else np.ascontiguousarray(weights).reshape(n, length)
        if w2 is not None and w2.dtype.kind == "b":
            w2 = w2.view(np.uint8)
        if v2 is None and w2 is None:  # the common call: a build without the selects
            kernel, head = _build(nb, "softmax_lists_plain", s.size), (s2, y2)
        else:
            head += (_EMPTY2 if w2 is None else w2, w2 is not None)
    bad = _fp._kernel(_fp._nb(), kernel, *head, need_grad, 1.0 if scale is None else scale,
                      values, g2)
    if bad is None or bad:
        return NotImplemented  # numba cannot compile it here, or the generic path raises
    STATS[loss.name, "numba"] += 1
    return _result(want, reduction, s.dtype, float(values.sum()), values.reshape(shape[:-1]),
                   scale, g, copy_to)


def pairwise_logistic_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    return _run(loss, arrays, reduction, sample_weight, opts, want, out, _ranknet_block,
                pairwise=True, nonnegative=False, direct="pair_lists")


def lambdarank_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    return _run(loss, arrays, reduction, sample_weight, opts, want, out, _lambdarank_block,
                pairwise=True, nonnegative=True, direct="pair_lists", lambda_weights=True)


def ranking_softmax_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    return _run(loss, arrays, reduction, sample_weight, opts, want, out, _softmax_block,
                pairwise=False, nonnegative=True, weights=opts.get("weights"),
                direct="softmax_lists")


def listmle_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    return _run(loss, arrays, reduction, sample_weight, opts, want, out, _listmle_block,
                pairwise=False, nonnegative=False, direct="listmle_lists")
