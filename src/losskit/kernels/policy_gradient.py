r"""Fused NumPy fast path of ``grpo_loss`` (:mod:`losskit.losses.policy_gradient`).

The driver checks the options and the arrays, finds the tokens per sequence :math:`n_b`
(the mask's row sums, which the mean of the ``bnpo``/``dapo``/``cispo`` variants divides
by) and runs the numba kernel (:mod:`losskit.kernels.policy_gradient_numba`: one sweep
over the sequences, value and scaled gradient together, every variant and both
importance samplings). Covered: float32 and float64 ``per_token_logps`` (2-D,
C-contiguous, not empty); ``mask``, ``old_per_token_logps`` and ``ref_per_token_logps``
NumPy arrays of its shape (or None for the last two), ``advantages`` of shape (B,), each
of a real dtype (cast to the log-probabilities' dtype like the generic path); every
reduction; ``out=``. Not covered (``NotImplemented``; the generic path answers, with its
own errors): ``sample_weight``, an invalid option or input (a mask outside [0, 1], a
shape that differs), and calls without numba (the generic path is NumPy-vectorised).
"""

from __future__ import annotations

import math

import numpy as np

from . import fast_paths as _fp
from .pointwise import number
from .fast_paths import STATS, _gradient_target, _kernel, _out_ok, _result, _scale

__all__ = ["grpo_loss"]

_VARIANTS = {"grpo": 0, "bnpo": 1, "dr_grpo": 2, "dapo": 3, "cispo": 4}


def _array(x, shape, dt):
    """``x`` cast to ``dt``, C-contiguous, of exactly ``shape``, or None."""
    if type(x) is not np.ndarray or x.shape != shape or x.dtype.kind not in "biuf":
        return None
    return np.ascontiguousarray(x, dtype=dt)


def grpo_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    """``grpo_loss``: every variant, importance sampling and valid option."""
    if sample_weight is not None or len(arrays) != 5:
        return NotImplemented
    lp, mask, adv, old, ref = arrays
    if type(lp) is not np.ndarray or lp.ndim != 2:
        return NotImplemented
    dt = _fp._float_prediction(lp)
    if dt is None:
        return NotImplemented
    variant, sampling = opts["variant"], opts["importance_sampling"]
    if type(variant) is not str or variant not in _VARIANTS or type(sampling) is not str \
            or sampling not in ("token", "sequence"):
        return NotImplemented
    code = _VARIANTS[variant]
    sequence = sampling == "sequence"
    el = number(0.0, 1.0)(opts["epsilon_low"])
    eh = number(0.0, math.inf, lo_open=variant == "cispo")(opts["epsilon_high"])
    beta = number(0.0, math.inf)(opts["beta"])
    max_len = opts["max_completion_length"]
    if (el is None or eh is None or beta is None or (sequence and variant == "cispo")
            or (max_len is None and variant == "dr_grpo")
            or (max_len is not None and (type(max_len) is not int or max_len < 1))):
        return NotImplemented
    need_grad = want != "value"
    if need_grad and out is not None and not _out_ok(out, lp):
        return NotImplemented
    nb = _fp.family_numba("policy_gradient_numba")
    if nb is None:
        return NotImplemented
    shape = lp.shape
    m = _array(mask, shape, dt)
    a = _array(adv, shape[:1], dt)
    o = None if old is None else _array(old, shape, dt)
    r = None if ref is None else _array(ref, shape, dt)
    if m is None or a is None or (old is not None and o is None) \
            or (ref is not None and r is None):
        return NotImplemented
    n = np.empty(shape[0], dtype=np.float64)  # tokens per sequence
    if _kernel(nb, nb.mask_row_sums, m, n) is None:
        return NotImplemented
    rows = shape[0]
    # the mean: over the sequences (grpo, dr_grpo) or over every token of the batch
    scale = _scale(reduction, rows if code in (0, 2) else float(n.sum()), rows)
    g, copy_to = _gradient_target(need_grad, out, lp, [x for x in arrays if x is not None])
    values = np.empty(rows, dtype=np.float64)
    kernel = nb.grpo_rows_parallel if lp.size >= _fp.PARALLEL_MIN else nb.grpo_rows_serial
    dummy = _fp._DUMMY2[dt.char]
    bad = _kernel(nb, kernel, lp, m, a, dummy if o is None else o, o is not None,
                  dummy if r is None else r, r is not None, n, code, sequence, el, eh, beta,
                  0.0 if max_len is None else 1.0 / max_len,
                  1.0 if scale is None else scale, need_grad, values,
                  g if need_grad else dummy)
    if bad is None or bad:
        return NotImplemented  # numba cannot compile it here, or the generic path raises
    STATS[loss.name, "numba"] += 1
    total = float(values.sum())
    if scale == 0.0:
        total = 0.0  # a mean over nothing
    return _result(want, reduction, dt, total, values, scale, g, copy_to)
