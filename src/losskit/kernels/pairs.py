r"""Fused fast paths of the pair/triplet family (:mod:`losskit.losses.metric_learning`).

==================================  ==========================================================
loss                                the fast path covers
==================================  ==========================================================
``contrastive``                     every ``margin`` (finite) and ``p``
``triplet_margin``                  every ``margin``, ``p``, ``eps``, ``swap``
``cosine_embedding``                every ``margin`` and ``eps`` (finite)
``margin_ranking``                  every ``margin`` (finite)
==================================  ==========================================================

The embeddings are rows of D features (the last axis; leading axes are flattened). One
numba driver per loss (:mod:`losskit.kernels.pairs_numba`) walks them in fixed blocks of
rows, the blocks in ``prange`` from :data:`~losskit.kernels.fast_paths.PARALLEL_MIN`
elements on (a serial build below), and writes the gradient of every input asked for
(``wrt``, a tuple of them too) straight into the arrays returned, from one sweep.
``margin_ranking`` is elementwise: its driver writes the value and both gradients in one
vectorised loop per block of elements. Row values are float64, summed in float64 within
each block, then the block sums in order: the result does not depend on the thread
count. Sums are float64 also for float32 inputs (the generic path sums in the dtype: the
results agree up to rounding; for float32 embeddings so large that their squares overflow
float32, the generic cosine is inf/NaN where this one is finite). Per-row values are
kept only for ``reduction="none"`` (in the dtype: they are the result), so a call
allocates its gradient and nothing of a comparable size besides, and with ``out=``
(C-contiguous, not an input) nothing of the gradient's size at all.

Conditions (else ``NotImplemented``, and the generic path answers, errors included):
plain NumPy arrays of one float dtype (float32/float64) and one shape, ``x1``
not empty (non-contiguous or read-only arrays are copied, so that numba compiles no
other layout and no read-only variant), labels of the per-row shape (any real
dtype, cast to the embeddings' dtype as the generic path does) holding only the loss's
two values (checked in the kernel's sweep), no ``sample_weight``, plain numeric options
in the generic path's ranges (one table, :data:`_OPTION_RULES`). The drivers take
``wrt=`` (an index into ``loss.differentiable``, or a tuple of them: a tuple of
gradients back), so the pipeline uses them for every ``wrt``.

Engines: numba only. With ``fast_paths.USE_NUMBA = False`` (or no working numba) these
fast paths answer ``NotImplemented`` and the generic NumPy kernels run (they are already
one vectorised pass per term; a chunked NumPy engine would gain little here).
"""

from __future__ import annotations

import math

import numpy as np

from . import fast_paths as _fp
from ..core.loss import _OPTIONS as _CLASS_OPTIONS
from .fast_paths import (_DUMMY1, _DUMMY2, _F32, _F64, PARALLEL_MIN, STATS, _fresh,
                         _gradient_target, _kernel, _out_ok, _result, _scale)

__all__ = ["contrastive", "triplet_margin", "cosine_embedding", "margin_ranking"]


def _nb():
    """The pairs_numba module, or None (numba disabled, missing or broken)."""
    return _fp.family_numba("pairs_numba")


# the fast branch of p = 2 takes squared distances above this and below inf (else the
# exact branch, the generic kernel's scaled norm): float32 rows square into float64
# without overflow or underflow; float64 squares of entries below 2^-511 lose bits to
# gradual underflow, but they are below 2^-114 of any sum above 2^-960, so only such tiny
# sums need the exact branch (which float64 rows took always before: no test needs its
# operation-for-operation equality with the generic path any more, the pipeline sends
# every wrt, "all" too, to the fused driver)
_SS_LO = {"f": 0.0, "d": 2.0 ** -960}

# the options of each loss: (slot in the parsed (margin, p, eps), name, lower bound or
# None, bound excluded, inf allowed); anything else (another type, NaN, out of range)
# sends the call to the generic path, which raises or covers it
_OPTION_RULES = {
    "contrastive": ((0, "margin", 0.0, False, False), (1, "p", 1.0, False, True)),
    "triplet_margin": ((0, "margin", 0.0, True, False), (1, "p", 1.0, False, True),
                       (2, "eps", 0.0, False, False)),
    "cosine_embedding": ((0, "margin", None, False, False), (2, "eps", 0.0, False, False)),
    "margin_ranking": ((0, "margin", None, False, False),),
}


def _number(v, lo, lo_open, allow_inf):
    """``v`` as a float when it is a plain real number in range, else None."""
    if type(v) is not float and type(v) is not int:
        return None
    v = float(v)
    if v != v or (not allow_inf and (v == math.inf or v == -math.inf)):
        return None
    if lo is not None and (v < lo or (lo_open and v == lo)):
        return None
    return v


def _parse(name, opts):
    """(margin, p, eps, swap) of the loss ``name`` from its options (p = 2, eps = 0 where
    the loss has none), or None when the fast path does not cover them."""
    parsed = [0.0, 2.0, 0.0, False]
    for slot, key, lo, lo_open, allow_inf in _OPTION_RULES[name]:
        v = _number(opts[key], lo, lo_open, allow_inf)
        if v is None:
            return None
        parsed[slot] = v
    if name == "triplet_margin":
        swap = opts["swap"]
        if type(swap) is not bool:
            return None
        parsed[3] = swap
    return tuple(parsed)


# the parsed options of a loss's own defaults, by loss name: (the defaults dict, parsed).
# The pipeline passes a loss class's option defaults (core.loss._OPTIONS, never mutated)
# itself when a call gives no options; other option dicts are parsed on every call
_PARSED_DEFAULTS: dict = {}


def _options(loss, name, opts):
    """:func:`_parse`, from :data:`_PARSED_DEFAULTS` when ``opts`` are the defaults."""
    cached = _PARSED_DEFAULTS.get(name)
    if cached is not None and cached[0] is opts:
        return cached[1]
    parsed = _parse(name, opts)
    if parsed is not None and opts is _CLASS_OPTIONS.get(type(loss)):
        _PARSED_DEFAULTS[name] = (opts, parsed)
    return parsed


def _same(x, z, dt):
    """Another embedding array: exactly z's shape and dtype, C-contiguous and writeable
    (a copy when it is not), or None."""
    if type(x) is not np.ndarray or x.dtype is not dt or x.shape != z.shape:
        return None
    flags = x.flags
    if not flags.c_contiguous or not flags.writeable:
        x = np.array(x, order="C")
    return x


def _labels(t, shape, dt):
    """Labels of exactly ``shape`` as a flat C-contiguous array of dtype dt, or None."""
    if type(t) is np.ndarray and t.dtype is dt and t.shape == shape:
        flags = t.flags
        if flags.c_contiguous and flags.writeable:  # the common case: used as it is
            return t if t.ndim == 1 else t.reshape(-1)
    if shape == () and isinstance(t, (np.generic, int, float)):  # one pair's label
        t = np.asarray(t)
    if type(t) is not np.ndarray or t.shape != shape or t.dtype.kind not in "biuf":
        return None
    t = np.array(t, dtype=dt, order="C")
    return t.reshape(-1)


def _call(loss, name, count, arrays, reduction, sample_weight, opts, want, out, wrt):
    """Every entry point: the checks, the driver of the loss ``name`` (``count`` embedding
    inputs), then the result."""
    if sample_weight is not None:
        return NotImplemented
    several = type(wrt) is tuple  # the gradients of several inputs, from one sweep
    if several:
        if out is not None or not all(0 <= i < count for i in wrt):
            return NotImplemented
    elif not 0 <= wrt < count:
        return NotImplemented
    o = _options(loss, name, opts)
    if o is None:
        return NotImplemented
    z = arrays[0]
    if type(z) is not np.ndarray:
        return NotImplemented
    dt = z.dtype
    shape = z.shape
    if (dt is not _F32 and dt is not _F64) or not shape or z.size == 0:
        return NotImplemented
    flags = z.flags
    if not flags.c_contiguous or not flags.writeable:
        z = np.array(z, order="C")
    x2 = _same(arrays[1], z, dt)
    if x2 is None:
        return NotImplemented
    ranking = count == 2 and name == "margin_ranking"
    rows_shape = shape if ranking else shape[:-1]
    if count == 3:
        x3 = _same(arrays[2], z, dt)
        if x3 is None:
            return NotImplemented
        inputs = (z, x2, x3)
    else:
        inputs = (z, x2)
        labels = _labels(arrays[2], rows_shape, dt)
        if labels is None:
            return NotImplemented
    need_grad = want != "value"
    if need_grad and out is not None and not _out_ok(out, arrays[wrt]):
        return NotImplemented
    nb = _nb()
    if nb is None:
        return NotImplemented

    n = z.size if ranking else z.size // shape[-1]
    scale = _scale(reduction, n, rows_shape[0] if rows_shape else 1)
    values = np.empty(rows_shape, dtype=dt) if reduction == "none" else None
    # the gradients: straight into out= unless it is strided or aliases an input (then
    # computed aside and copied: _gradient_target); never one of the inputs' size more
    copy_to = None
    gs = [None, None, None]
    w = 0
    if need_grad:
        for i in (wrt if several else (wrt,)):
            if out is None:
                gs[i] = _fresh(arrays[i])
            else:
                gs[i], copy_to = _gradient_target(True, out, arrays[i], inputs)
            w |= 1 << i
    margin, p, eps, swap = o
    scale_k = 1.0 if scale is None else scale
    big = z.size >= PARALLEL_MIN
    g1, g2, g3 = gs
    if ranking:
        dummy = _DUMMY1[dt.char]
        res = _kernel(nb, nb.ranking_parallel if big else nb.ranking_serial,
                      z.reshape(-1), x2.reshape(-1), labels, margin, scale_k,
                      dummy if g1 is None else g1.reshape(-1),
                      dummy if g2 is None else g2.reshape(-1), w,
                      dummy if values is None else values.reshape(-1), values is not None)
    else:
        if len(shape) != 2:  # rows of the last axis
            d = shape[-1]
            inputs = [a.reshape(n, d) for a in inputs]
            g1, g2, g3 = [None if g is None else g.reshape(n, d) for g in gs]
        dummy = _DUMMY2[dt.char]
        g1 = dummy if g1 is None else g1
        g2 = dummy if g2 is None else g2
        vf = _DUMMY1[dt.char] if values is None else values.reshape(-1)
        if count == 3:
            res = _kernel(nb, nb.triplet_parallel if big else nb.triplet_serial, inputs[0],
                          inputs[1], inputs[2], margin, p, eps, swap, _SS_LO[dt.char],
                          scale_k, g1, g2, dummy if g3 is None else g3, w, vf)
        elif name == "contrastive":
            res = _kernel(nb, nb.contrastive_parallel if big else nb.contrastive_serial,
                          inputs[0], inputs[1], labels, margin, p, _SS_LO[dt.char], scale_k,
                          g1, g2, w, vf)
        else:
            res = _kernel(nb, nb.cosine_parallel if big else nb.cosine_serial, inputs[0],
                          inputs[1], labels, margin, eps, scale_k, g1, g2, w, vf)
    if res is None:
        return NotImplemented
    bad, total = res
    if bad:
        return NotImplemented  # the generic path raises the label error
    STATS[loss.name, "numba"] += 1
    if several:
        value = _result("value", reduction, dt, total, values, scale, None, None)
        grads = tuple(gs[i] for i in wrt)
        return grads if want == "grad" else (value, grads)
    return _result(want, reduction, dt, total, values, scale, gs[wrt], copy_to)


def contrastive(loss, arrays, reduction, sample_weight, opts, want, out, wrt=0):
    """``contrastive``: every finite ``margin >= 0`` and ``p >= 1`` (inf too)."""
    return _call(loss, "contrastive", 2, arrays, reduction, sample_weight, opts, want, out,
                 wrt)


def triplet_margin(loss, arrays, reduction, sample_weight, opts, want, out, wrt=0):
    """``triplet_margin``: every finite ``margin > 0``, ``p >= 1`` (inf too), finite
    ``eps >= 0``, ``swap``."""
    return _call(loss, "triplet_margin", 3, arrays, reduction, sample_weight, opts, want,
                 out, wrt)


def cosine_embedding(loss, arrays, reduction, sample_weight, opts, want, out, wrt=0):
    """``cosine_embedding``: every finite ``margin`` and finite ``eps >= 0``."""
    return _call(loss, "cosine_embedding", 2, arrays, reduction, sample_weight, opts, want,
                 out, wrt)


def margin_ranking(loss, arrays, reduction, sample_weight, opts, want, out, wrt=0):
    """``margin_ranking``: every finite ``margin``; elementwise."""
    return _call(loss, "margin_ranking", 2, arrays, reduction, sample_weight, opts, want,
                 out, wrt)


# every driver here takes ``wrt`` (an index, or a tuple of indices into
# ``loss.differentiable``): the pipeline then uses it for any ``wrt`` (see
# ``losskit.core.dispatch.register_fast_path``)
for _f in (contrastive, triplet_margin, cosine_embedding, margin_ranking):
    _f.takes_wrt = True
