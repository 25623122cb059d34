r"""Fused NumPy fast paths of the token-level distillation losses
(:mod:`losskit.losses.distillation`): ``generalized_jsd`` and ``tvd_loss``.

One driver, :func:`_run`, runs the numba row kernel of the loss
(:mod:`losskit.kernels.distillation_numba`: the generalized JSD row kernel that
``linear_generalized_jsd`` uses, with no hard loss, and the TVD kernel) over all rows in
one parallel sweep, with each row's factor (the reduction's scale, 0 for an ignored
token): each thread copies a row into the gradient (or a scratch row) and the teacher's
into a scratch row, and turns them into the row's value and gradient. The driver handles
the targets' ``ignore_index``, the reductions and ``out=`` once. Peak memory beyond the
gradient: a few rows per thread and two numbers per token.

A token whose row the kernel cannot take (a NaN or infinite maximum, a result that is
not finite, such as a row with ``-inf`` logits under the generalized JSD) is redone with
the loss's own generic kernel (the exact log-space formulas), rows that take no part get
exactly 0. Covered: float32 and float64 student logits (C-contiguous, not empty), floating
teacher logits of the same shape (cast to the student's dtype), targets ``None`` or
integers of the token shape with every label in ``[0, V)`` or equal to an integer
``ignore_index``, the options the generic path accepts, every reduction. Not covered
(``NotImplemented``: the generic path answers, with its own errors): ``sample_weight``,
anything invalid, and calls without numba (the generic path is NumPy-vectorised).
"""

from __future__ import annotations

import math

import numpy as np

from . import fast_paths as _fp
from .pointwise import number
from .fast_paths import STATS, _gradient_target, _kernel, _out_ok, _result, _scale

__all__ = ["generalized_jsd", "tvd_loss"]


def _keep(y, rows_shape, v, ignore):
    """The tokens that take part, flat bool (None: all), or False when the targets are
    not covered (another shape or dtype, a label out of range)."""
    if y is None:
        return None
    if type(y) is not np.ndarray or y.dtype.kind not in "iu" or y.shape != rows_shape:
        return False
    if ignore is not None and (type(ignore) is not int or isinstance(ignore, bool)):
        return False
    yf = y.reshape(-1)
    keep = None if ignore is None else yf != ignore
    inside = (yf >= 0) & (yf < v)
    if not (inside.all() if keep is None else (inside | ~keep).all()):
        return False
    return keep


def _run(loss, name, arrays, reduction, sample_weight, opts, want, out, params):
    if sample_weight is not None or len(arrays) != 3:
        return NotImplemented
    zs, zt, y = arrays
    if type(zs) is not np.ndarray or type(zt) is not np.ndarray:
        return NotImplemented
    dt = _fp._float_prediction(zs)
    if dt is None or zs.ndim == 0 or zt.shape != zs.shape or zt.dtype.kind != "f":
        return NotImplemented
    need_grad = want != "value"
    if need_grad and out is not None and not _out_ok(out, zs):
        return NotImplemented
    nb = _fp.family_numba("distillation_numba")
    if nb is None:
        return NotImplemented
    v = zs.shape[-1]
    rows_shape = zs.shape[:-1]
    n = zs.size // v
    keep = _keep(y, rows_shape, v, opts["ignore_index"])
    if keep is False:
        return NotImplemented
    count = n if keep is None else int(np.count_nonzero(keep))
    scale = _scale(reduction, count, rows_shape[0] if rows_shape else 1)
    rf = np.full(n, 1.0 if scale is None else scale, dtype=dt)
    if keep is not None:
        rf[~keep] = 0.0
    z2 = zs.reshape(n, v)
    t2 = zt.reshape(n, v)
    if t2.dtype != dt or not t2.flags.c_contiguous:
        t2 = np.ascontiguousarray(t2, dtype=dt)  # cast like the generic path
    g, copy_to = _gradient_target(need_grad, out, zs, (zs, zt))
    g2 = g.reshape(n, v) if need_grad else None
    values = np.empty(n, dtype=np.float64)
    kernel = getattr(nb, f"{name}_block_parallel" if zs.size >= _fp.PARALLEL_MIN
                     else f"{name}_block_serial")
    if _kernel(nb, kernel, z2, t2, g2 if need_grad else _fp._DUMMY2[dt.char], rf,
               need_grad, *params, values) is None:
        return NotImplemented  # numba cannot compile it here
    bad = ~np.isfinite(values)
    if keep is not None:
        bad &= keep
    if bad.any():  # the exact log-space formulas of the generic kernel for those rows
        _redo(loss, z2, t2, bad, opts, values, g2, rf)
    if keep is not None and not keep.all():
        values[~keep] = 0.0
        if need_grad:
            g2[~keep] = 0.0  # exactly 0, also where a row is infinite or NaN
    total = float(values.sum())
    STATS[loss.name, "numba"] += 1
    if reduction in ("mean", "batchmean") and scale == 0.0:
        total = 0.0
    return _result(want, reduction, dt, total, values.reshape(rows_shape), scale, g,
                   copy_to)


def _redo(loss, z2, t2, bad, opts, values, g2, rf):
    """Rows ``bad`` with the loss's generic kernel (its values and, times the row factors,
    its gradient)."""
    idx = np.flatnonzero(bad)
    zs = z2[idx]
    zt = t2[idx].astype(zs.dtype)
    ctx = _fp.numpy_context(loss, zs.dtype)
    kw = {k: opts[k] for k in opts if k != "ignore_index"}
    with np.errstate(all="ignore"):
        terms = loss._compute(ctx, zs, zt, None, need_grad=g2 is not None, **kw)
    values[idx] = np.asarray(terms.value, dtype=np.float64)
    if g2 is not None:
        g2[idx] = np.asarray(terms.grad) * rf[idx][:, None]


def generalized_jsd(loss, arrays, reduction, sample_weight, opts, want, out):
    """``generalized_jsd``: every ``beta`` in [0, 1] and finite ``temperature > 0``."""
    beta = number(0.0, 1.0)(opts["beta"])
    temp = number(0.0, math.inf, lo_open=True)(opts["temperature"])
    if beta is None or temp is None:
        return NotImplemented
    return _run(loss, "jsd_copy", arrays, reduction, sample_weight, opts, want, out,
                (beta, temp))


def tvd_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    """``tvd_loss``: no options besides ``ignore_index``."""
    return _run(loss, "tvd", arrays, reduction, sample_weight, opts, want, out, ())
