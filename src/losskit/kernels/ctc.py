r"""Fused fast path of the CTC loss (:mod:`losskit.losses.ctc`).

One numba driver (:mod:`losskit.kernels.ctc_numba`) runs the log-space forward-backward
recursion of each sequence over its own :math:`T_n` frames and :math:`2 L_n + 1` states
(not the batch's padded widths), the sequences in ``prange`` from
:data:`~losskit.kernels.fast_paths.PARALLEL_MIN` elements of ``log_probs`` on (a serial
build below), and writes the gradient, already scaled by the reduction, straight into the
array returned. Arithmetic is float64, also for float32 inputs; the total is summed in
sequence order, so it does not depend on the thread count.

Covered: plain NumPy ``log_probs`` of dtype float32/float64 with 3 axes in either layout,
integer targets (padded or concatenated) and lengths, every option, every reduction
(``"mean"`` is PyTorch's: each sequence divided by its target length). Conditions (else
``NotImplemented``, and the generic path answers, errors included): no
``sample_weight``, valid lengths and labels (checked here, vectorised), options of the
exact types the generic path accepts.

Engines: numba only. With ``fast_paths.USE_NUMBA = False`` (or no working numba) the fast
path answers ``NotImplemented`` and the generic kernel runs on NumPy (one vectorised step
per frame over the whole batch).
"""

from __future__ import annotations

import numpy as np

from . import fast_paths as _fp
from .fast_paths import _F32, _F64, PARALLEL_MIN, STATS, _gradient_target, _kernel, _out_ok

__all__ = ["ctc_loss"]


def _nb():
    return _fp.family_numba("ctc_numba")


def _ints(a, shape=None):
    """``a`` as a C-contiguous int64 array when it is an integer ndarray (of ``shape``)."""
    if type(a) is not np.ndarray or a.dtype.kind not in "iu":
        return None
    if shape is not None and a.shape != shape:
        return None
    return np.ascontiguousarray(a, dtype=np.int64)


def ctc_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    """The fused CTC loss, or ``NotImplemented``."""
    if sample_weight is not None:
        return NotImplemented
    nb = _nb()
    if nb is None:
        return NotImplemented
    lp, targets, input_lengths, target_lengths = arrays
    blank, zero_inf, layout = opts["blank"], opts["zero_infinity"], opts["layout"]
    if (type(blank) is not int or type(zero_inf) is not bool
            or layout not in ("TNC", "NTC")):
        return NotImplemented
    dt = lp.dtype
    if (dt is not _F32 and dt is not _F64) or lp.ndim != 3 or lp.size == 0:
        return NotImplemented
    if not lp.flags.c_contiguous:
        lp = np.ascontiguousarray(lp)
    view = lp if layout == "TNC" else lp.transpose(1, 0, 2)  # [t, n, c]
    T, N, C = view.shape
    if not 0 <= blank < C:
        return NotImplemented
    il = _ints(input_lengths, (N,))
    tl = _ints(target_lengths, (N,))
    t = _ints(targets)
    if il is None or tl is None or t is None:
        return NotImplemented
    if il.min() < 0 or il.max() > T or tl.min() < 0:
        return NotImplemented
    if t.ndim == 2:
        if t.shape[0] != N or tl.max() > t.shape[1]:
            return NotImplemented
        width = t.shape[1]
        used = t[np.arange(width)[None, :] < tl[:, None]]
        offsets = np.arange(N, dtype=np.int64) * width
        labels = t.reshape(-1)
    elif t.ndim == 1:
        if tl.sum() != t.shape[0]:
            return NotImplemented
        used = labels = t
        offsets = np.concatenate([[0], np.cumsum(tl)[:-1]]).astype(np.int64)
    else:
        return NotImplemented
    if used.size and (used.min() < 0 or used.max() >= C or np.any(used == blank)):
        return NotImplemented
    need_grad = want != "value"
    if need_grad and out is not None and not _out_ok(out, lp):
        return NotImplemented
    if reduction == "mean":  # PyTorch's: each sequence over its target length, then / N
        scale = 1.0 / (N * np.maximum(tl, 1).astype(np.float64))
    elif reduction == "batchmean":
        scale = np.full(N, 1.0 / N)
    else:
        scale = np.ones(N)
    g, copy_to = _gradient_target(need_grad, out, lp, arrays)
    gview = (g if layout == "TNC" else g.transpose(1, 0, 2)) if need_grad else view
    values = np.empty(N, dtype=np.float64)
    kernel = nb.ctc_parallel if lp.size >= PARALLEL_MIN // 8 and N > 1 else nb.ctc_serial
    res = _kernel(nb, kernel, view, labels, offsets, tl, il, blank, zero_inf, scale, values,
                  gview, need_grad)
    if res is None and _nb() is None:  # numba could not compile it here
        return NotImplemented
    STATS[loss.name, "numba"] += 1
    if reduction == "none":
        value = values.astype(dt)
    else:
        total = 0.0
        if reduction == "sum":
            for v in values.tolist():
                total += v
        else:
            for v, s in zip(values.tolist(), scale.tolist()):
                total += v * s
        value = np.array(total, dtype=dt)
    if not need_grad:
        return value
    if copy_to is not None:
        np.copyto(copy_to, g)
        g = copy_to
    return g if want == "grad" else (value, g)
