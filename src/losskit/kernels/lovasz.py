r"""Fused NumPy fast paths of the Lovász losses (:mod:`losskit.losses.lovasz`).

The losses state their math once (``LovaszHinge._terms``, ``LovaszSoftmax._terms``, on
any array library); the expensive step is the Lovász weights of each group, which the
generic :func:`~losskit.losses.lovasz.lovasz_weights` forms with two stable argsorts. The
fast paths run the same ``_terms`` on the NumPy arrays with :func:`weights` in their
place: one stable radix sort per group and the weights scattered back in one pass
(:mod:`losskit.kernels.lovasz_numba`, groups in ``prange``), equal to the generic weights
(bit for bit in float32). Covered: float32 and float64 predictions (NumPy arrays, not
empty; a strided one is copied), every option the loss accepts, every reduction,
``out=``. Not covered
(``NotImplemented``; the generic path answers, with its own errors): ``sample_weight``, a
second-order call, NaN errors, anything the loss rejects, and calls without numba.
"""

from __future__ import annotations

import numpy as np

from . import fast_paths as _fp
from .fast_paths import STATS, _gradient_target, _out_ok, _result, _scale

__all__ = ["weights", "lovasz_hinge", "lovasz_softmax"]


_NO_VALID = np.zeros((1, 1), dtype=np.bool_)


class _NaN(Exception):
    """A NaN error: the generic ordering rules apply."""


def weights(xp, errors, fg, valid):
    """:func:`losskit.losses.lovasz.lovasz_weights` of NumPy rows by the numba radix sort."""
    nb = _fp.family_numba("lovasz_numba")
    g, p = errors.shape
    out = np.empty(errors.shape, dtype=errors.dtype)
    if g == 0 or p == 0:
        out[...] = 0
        return out
    e = np.ascontiguousarray(errors)
    y = np.ascontiguousarray(fg, dtype=errors.dtype)
    v = _NO_VALID if valid is None else np.ascontiguousarray(valid)
    kernel = nb.weights_parallel if g > 1 and e.size >= _fp.PARALLEL_MIN else nb.weights_serial
    bad = _fp._kernel(nb, kernel, e, y, v, valid is not None, e.dtype.itemsize, out)
    if bad is None or bad:
        raise _NaN
    return out


def _run(loss, arrays, reduction, sample_weight, want, out, terms_of):
    if sample_weight is not None or len(arrays) != 2:
        return NotImplemented
    z, t = arrays
    if type(z) is not np.ndarray or type(t) is not np.ndarray:
        return NotImplemented
    if not z.flags.c_contiguous:
        z = np.ascontiguousarray(z)  # a strided view: one copy
    dt = _fp._float_prediction(z)
    if dt is None or _fp.family_numba("lovasz_numba") is None:
        return NotImplemented
    need_grad = want != "value"
    if need_grad and out is not None and not _out_ok(out, z):
        return NotImplemented
    ctx = _fp.numpy_context(loss, dt)
    try:
        with np.errstate(all="ignore"):
            terms = terms_of(ctx, z, t, need_grad)
    except (TypeError, ValueError, _NaN):
        return NotImplemented  # the generic path raises (or orders the NaN errors)
    value = np.asarray(terms.value)
    pooled = value.ndim == 0
    values = value.reshape(-1).astype(np.float64)
    count = values.shape[0]
    scale = _scale(reduction, count, 1 if pooled else z.shape[0])
    g, copy_to = _gradient_target(need_grad, out, z, arrays)
    if need_grad:
        if scale is None:
            np.copyto(g, terms.grad)
        else:
            np.multiply(terms.grad, dt.type(scale), out=g)
    STATS[loss.name, "numba"] += 1
    total = float(values.sum())
    if scale == 0.0:
        total = 0.0
    return _result(want, reduction, dt, total, value.astype(np.float64), scale, g, copy_to)


def lovasz_hinge(loss, arrays, reduction, sample_weight, opts, want, out):
    return _run(loss, arrays, reduction, sample_weight, want, out,
                lambda ctx, z, t, need_grad: loss._terms(
                    ctx, z, t, need_grad, opts["per_image"], opts["ignore_index"],
                    weights_of=weights))


def lovasz_softmax(loss, arrays, reduction, sample_weight, opts, want, out):
    return _run(loss, arrays, reduction, sample_weight, want, out,
                lambda ctx, z, t, need_grad: loss._terms(
                    ctx, z, t, need_grad, opts["classes"], opts["per_image"], opts["axis"],
                    opts["from_logits"], opts["ignore_index"], weights_of=weights))
