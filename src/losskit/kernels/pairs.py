r"""Fused fast paths of the pair/triplet family (:mod:`losskit.losses.metric_learning`).

==================================  ==========================================================
loss                                the fast path covers
==================================  ==========================================================
``contrastive``                     every ``margin`` (finite) and ``p``
``triplet_margin``                  every ``margin``, ``p``, ``eps``, ``swap``
``cosine_embedding``                every ``margin`` and ``eps`` (finite)
``margin_ranking``                  every ``margin`` (finite)
==================================  ==========================================================

The embeddings are rows of D features (the last axis; leading axes are flattened), and
one numba driver (:func:`losskit.kernels.pairs_numba._pairs`) walks them: rows in
``prange`` from :data:`~losskit.kernels.fast_paths.PARALLEL_MIN` elements on, a serial
build below; the loss's per-row math is one numba function of the row vectors, which
gives the value and the gradient of each differentiable input (``margin_ranking`` is
elementwise: rows of one score). Per-row values are float64, sums float64, also for
float32 inputs (the generic path sums in the dtype: the results agree up to rounding;
for float32 embeddings so large that their squares overflow float32, the generic
cosine is inf/NaN where this one is finite).

Conditions (else ``NotImplemented``, and the generic path answers, errors included):
plain NumPy arrays of one float dtype (float32/float64) and one shape, ``x1``
not empty (non-contiguous or read-only arrays are copied, so that numba compiles no
other layout and no read-only variant), labels of the per-row shape (any real
dtype, cast to the embeddings' dtype as the generic path does) holding only the loss's
two values, no ``sample_weight``, plain numeric options in the generic path's ranges.
The pipeline calls a fast path for the default ``wrt`` only (the first differentiable
input); the drivers take ``wrt=`` (an index into ``loss.differentiable``) for direct use
and tests.

Engines: numba only. With ``fast_paths.USE_NUMBA = False`` (or no working numba) these
fast paths answer ``NotImplemented`` and the generic NumPy kernels run (they are already
one vectorised pass per term; a chunked NumPy engine would gain little here).
"""

from __future__ import annotations

import math

import numpy as np

from . import fast_paths as _fp
from .fast_paths import (PARALLEL_MIN, STATS, _float_prediction, _gradient_target, _kernel,
                         _out_ok, _result, _scale)

__all__ = ["contrastive", "triplet_margin", "cosine_embedding", "margin_ranking"]

def _nb():
    """The pairs_numba module, or None (numba disabled, missing or broken)."""
    return _fp.family_numba("pairs_numba")


# squared distances the fast branch of p = 2 takes (else the exact branch): float32 rows
# square into float64 without overflow or underflow. float64 rows always take the exact
# branch, the generic kernel's scaled norm operation for operation (bit for bit on rows
# of fewer than 8 entries, where NumPy's sums run left to right too): a gradient from
# the fast path then equals the generic path's (``wrt="all"``) exactly on small cases
_SS_RANGE = {"f": (0.0, math.inf), "d": (math.inf, math.inf)}


def _number(v, lo=None, lo_open=False, allow_inf=False):
    """``v`` as a float when it is a plain real number in range, else None."""
    if type(v) not in (int, float):
        return None
    v = float(v)
    if v != v or (math.isinf(v) and not allow_inf):
        return None
    if lo is not None and (v < lo or (lo_open and v == lo)):
        return None
    return v


def _same(x, z, dt):
    """Another embedding array: exactly z's shape and dtype, C-contiguous and writeable
    (a copy when it is not), or None."""
    if type(x) is not np.ndarray or x.dtype is not dt or x.shape != z.shape:
        return None
    if not x.flags.c_contiguous or not x.flags.writeable:
        x = np.array(x, order="C")
    return x


def _labels(t, shape, dt):
    """Labels of exactly ``shape`` as a flat C-contiguous array of dtype dt, or None."""
    if shape == () and isinstance(t, (np.generic, int, float)):  # one pair's label
        t = np.asarray(t)
    if type(t) is not np.ndarray or t.shape != shape or t.dtype.kind not in "biuf":
        return None
    if t.dtype is not dt or not t.flags.c_contiguous or not t.flags.writeable:
        t = np.array(t, dtype=dt, order="C")
    return t.reshape(-1)


def _run(loss, kind, inputs, labels, margin, p, eps, swap, reduction, want, out, wrt,
         rows_shape, arrays):
    """The common part: the driver on (n, D) rows, then the result."""
    nb = _nb()
    if nb is None:
        return NotImplemented
    x1 = inputs[0]
    dt = x1.dtype
    need_grad = want != "value"
    several = isinstance(wrt, tuple)  # the gradients of several inputs, from one sweep
    if several and out is not None:
        return NotImplemented
    if need_grad and not several and out is not None and not _out_ok(out, arrays[wrt]):
        return NotImplemented
    n = math.prod(rows_shape)
    d = x1.size // n
    x2d = [x.reshape(n, d) for x in inputs]
    while len(x2d) < 3:
        x2d.append(x2d[0])
    scale = _scale(reduction, n, rows_shape[0] if rows_shape else 1)
    dummy = np.empty((n, 0), dtype=dt)
    gs = [dummy, dummy, dummy]
    flags = [False, False, False]
    grads, copy_to = [], None
    if need_grad:
        for i in (wrt if several else (wrt,)):
            g, copy_to = _gradient_target(True, out, arrays[i], inputs)
            grads.append(g)
            gs[i] = g.reshape(n, d)
            flags[i] = True
    values = np.empty(n, dtype=np.float64)
    t = labels if labels is not None else np.empty(0, dtype=dt)
    lo, hi = _SS_RANGE[dt.char]
    kernel = nb.pairs_parallel if x1.size >= PARALLEL_MIN else nb.pairs_serial
    res = _kernel(nb, kernel, kind, x2d[0], x2d[1], x2d[2], t, margin, p, dt.type(eps),
                  swap, lo, hi, 1.0 if scale is None else scale, gs[0], gs[1], gs[2],
                  flags[0], flags[1], flags[2], values)
    if res is None:
        return NotImplemented
    bad, total = res
    if bad:
        return NotImplemented  # the generic path raises the label error
    STATS[loss.name, "numba"] += 1
    if several:
        value = _result("value", reduction, dt, total, values.reshape(rows_shape), scale,
                        None, None)
        return tuple(grads) if want == "grad" else (value, tuple(grads))
    return _result(want, reduction, dt, total, values.reshape(rows_shape), scale,
                   grads[0] if need_grad else None, copy_to)


def _embeddings(arrays, count, sample_weight, wrt):
    """The embedding arrays (x1 first), or None."""
    if sample_weight is not None or not all(0 <= w < count for w in
                                            (wrt if isinstance(wrt, tuple) else (wrt,))):
        return None
    z = arrays[0]
    if type(z) is not np.ndarray or z.ndim == 0:
        return None
    if not z.flags.c_contiguous or not z.flags.writeable:
        z = np.array(z, order="C")
    dt = _float_prediction(z)
    if dt is None:
        return None
    inputs = [z]
    for x in arrays[1:count]:
        x = _same(x, z, dt)
        if x is None:
            return None
        inputs.append(x)
    return inputs


def contrastive(loss, arrays, reduction, sample_weight, opts, want, out, wrt=0):
    """``contrastive``: every finite ``margin >= 0`` and ``p >= 1`` (inf too)."""
    margin = _number(opts["margin"], lo=0.0)
    p = _number(opts["p"], lo=1.0, allow_inf=True)
    inputs = _embeddings(arrays, 2, sample_weight, wrt)
    if margin is None or p is None or inputs is None:
        return NotImplemented
    shape = inputs[0].shape[:-1]
    labels = _labels(arrays[2], shape, inputs[0].dtype)
    if labels is None:
        return NotImplemented
    return _run(loss, 0, inputs, labels, margin, p, 0.0, False, reduction, want, out, wrt,
                shape, arrays)


def triplet_margin(loss, arrays, reduction, sample_weight, opts, want, out, wrt=0):
    """``triplet_margin``: every finite ``margin > 0``, ``p >= 1`` (inf too), finite
    ``eps >= 0``, ``swap``."""
    margin = _number(opts["margin"], lo=0.0, lo_open=True)
    p = _number(opts["p"], lo=1.0, allow_inf=True)
    eps = _number(opts["eps"], lo=0.0)
    swap = opts["swap"]
    inputs = _embeddings(arrays, 3, sample_weight, wrt)
    if margin is None or p is None or eps is None or type(swap) is not bool or inputs is None:
        return NotImplemented
    return _run(loss, 1, inputs, None, margin, p, eps, swap, reduction, want, out, wrt,
                inputs[0].shape[:-1], arrays)


def cosine_embedding(loss, arrays, reduction, sample_weight, opts, want, out, wrt=0):
    """``cosine_embedding``: every finite ``margin`` and finite ``eps >= 0``."""
    margin = _number(opts["margin"])
    eps = _number(opts["eps"], lo=0.0)
    inputs = _embeddings(arrays, 2, sample_weight, wrt)
    if margin is None or eps is None or inputs is None:
        return NotImplemented
    shape = inputs[0].shape[:-1]
    labels = _labels(arrays[2], shape, inputs[0].dtype)
    if labels is None:
        return NotImplemented
    return _run(loss, 2, inputs, labels, margin, 2.0, eps, False, reduction, want, out, wrt,
                shape, arrays)


def margin_ranking(loss, arrays, reduction, sample_weight, opts, want, out, wrt=0):
    """``margin_ranking``: every finite ``margin``; elementwise, rows of one score."""
    margin = _number(opts["margin"])
    inputs = _embeddings(arrays, 2, sample_weight, wrt)
    if margin is None or inputs is None:
        return NotImplemented
    shape = inputs[0].shape
    labels = _labels(arrays[2], shape, inputs[0].dtype)
    if labels is None:
        return NotImplemented
    return _run(loss, 3, inputs, labels, margin, 2.0, 0.0, False, reduction, want, out, wrt,
                shape, arrays)


# every driver here takes ``wrt`` (an index, or a tuple of indices into
# ``loss.differentiable``): the pipeline then uses it for any ``wrt`` (see
# ``losskit.core.dispatch.register_fast_path``)
for _f in (contrastive, triplet_margin, cosine_embedding, margin_ranking):
    _f.takes_wrt = True
