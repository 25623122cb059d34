r"""Fused fast paths of the overlap family (:mod:`losskit.losses.overlap`).

``dice_loss``, ``tversky_loss``, ``jaccard_loss``, ``focal_tversky_loss``,
``generalized_dice_loss`` and ``mcc_loss`` share one numba driver
(:func:`losskit.kernels.overlap_numba._overlap`): per sample, the sums of :math:`p t`,
:math:`p` and :math:`t` (squares with ``squared``) per class with the activation fused,
the per-group index and, when the gradient is wanted, the gradient (the activation's
chain rule included), written while the sample is still in cache. Each loss is three
numbers of that driver: the numerator :math:`k I + s`, the denominator :math:`c_I I +
c_P P + c_T T + s` and its elementwise derivative :math:`u + v t_i + w p_i`:

================  =====  ======================  ==================================
loss              k      (c_I, c_P, c_T)          (u, v, w)
================  =====  ======================  ==================================
dice              2      (0, 1, 1)                (1, 0, 0); squared (0, 0, 2)
tversky           1      (1 - a - b, a, b)        (a, 1 - a - b, 0)
jaccard           1      (-1, 1, 1)               (1, -1, 0); squared (0, -1, 2)
focal tversky     as tversky; the loss of a group is :math:`(1 - R)^\gamma`
================  =====  ======================  ==================================

The generalised Dice (one index per sample over the class sums weighted by the inverse
volume, per-class gradient coefficients) and the MCC (the Matthews correlation of each
group from the same three sums and the group's number of positions; not with
``ignore_index``) are two other kinds of index of the same driver's step 2.

Covered: every option (``mode``, ``from_logits`` none/sigmoid/softmax, ``squared``,
``smooth``, ``alpha``/``beta``, ``ignore_index`` with integer labels, empty masks) for
the class axis 1 (``(N, C, *spatial)``; also ``(N, C)`` with ``axis=-1``) and for
``axis=None``. Not covered (``NotImplemented``; the generic path answers): a class axis
other than 1 (channels-last ``(N, *spatial, C)``), ``sample_weight``, ``class_weight`` and
``log_loss`` (declined by the registration, ``unless_set``), softmax logits
with NaN or infinities, and anything invalid (probabilities or masks outside [0, 1],
labels outside [0, C)): the generic path raises its own errors; the kernel finds them
on its way (no separate pass here). Non-contiguous or read-only inputs are copied (numba
then compiles no other layout); a mask of float32, float64, bool or uint8 is read as it
is (cast in the kernel, like the generic path's cast), one of another dtype is cast
here. So one call allocates the gradient and the per-sample values only, and nothing of
the data's size with ``out=``. Sums are float64, also for float32 maps; the results
equal the generic path's up to rounding.

Engines: numba only. With ``fast_paths.USE_NUMBA = False`` (or no working numba) these
fast paths answer ``NotImplemented`` and the generic NumPy kernels run.
"""

from __future__ import annotations

import math

import numpy as np

from . import fast_paths as _fp
from .fast_paths import PARALLEL_MIN, STATS, _float_prediction, _gradient_target, _kernel, \
    _out_ok, _result, _scale

__all__ = ["dice_loss", "tversky_loss", "jaccard_loss", "focal_tversky_loss",
           "generalized_dice_loss", "mcc_loss"]

_INTP = np.dtype(np.intp)
_MASK_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.bool_),
                np.dtype(np.uint8))

def _nb():
    """The overlap_numba module, or None (numba disabled, missing or broken)."""
    return _fp.family_numba("overlap_numba")


def _number(v):
    """A plain finite real number >= 0 as a float, else None."""
    if type(v) not in (int, float):
        return None
    v = float(v)
    return v if 0.0 <= v < math.inf else None


def _contiguous(a):
    """``a``, or a C-contiguous writeable copy (numba then compiles no other layout)."""
    flags = a.flags
    if not (flags.c_contiguous and flags.writeable):
        return np.array(a, order="C")
    return a


def _overlap(loss, arrays, reduction, sample_weight, opts, want, out, k, c_i, c_p, c_t,
             u, v, w, smooth, squared, kind=0, gamma=0.0, wtype=0):
    z, target = arrays
    if (sample_weight is not None or type(z) is not np.ndarray or z.ndim == 0
            or type(target) is not np.ndarray):
        return NotImplemented
    mode, axis, act, ignore = (opts.get("mode", "per_class"), opts["axis"],
                               opts["from_logits"], opts["ignore_index"])
    if type(mode) is not str or mode not in ("per_class", "global"):
        return NotImplemented
    if act is None or act is False:
        act_code = 0
    elif type(act) is str and act in ("sigmoid", "softmax"):
        act_code = 1 if act == "sigmoid" else 2
    else:
        return NotImplemented
    if ignore is not None and (type(ignore) is not int or not -(1 << 63) <= ignore < (1 << 63)):
        return NotImplemented
    shape = z.shape
    ndim = len(shape)
    n = shape[0]
    if axis is None:
        if act_code == 2:
            return NotImplemented  # the generic path raises
        C = 1
    elif type(axis) is not int or ndim < 2 or not -ndim <= axis < ndim or axis % ndim != 1:
        return NotImplemented
    else:
        C = shape[1]
    z = _contiguous(z)
    dt = _float_prediction(z)
    if dt is None:
        return NotImplemented
    S = z.size // (n * C)
    need_grad = want != "value"
    if need_grad and out is not None and not _out_ok(out, z):
        return NotImplemented
    nb = _nb()
    if nb is None:
        return NotImplemented
    as_is = ndim == 3 and axis is not None  # (N, C, S) already
    z3 = z if as_is else z.reshape(n, C, S)
    tdt = target.dtype
    if axis is not None and tdt.kind in "iu" and target.shape != shape:
        if target.shape != shape[:1] + shape[2:]:
            return NotImplemented
        if tdt.kind == "u" and tdt.itemsize == 8:
            return NotImplemented  # would wrap around in intp
        lab = np.ascontiguousarray(target, dtype=_INTP)
        if not lab.flags.writeable:
            lab = lab.copy()
        lab = lab.reshape(n, S)
        tm = _DUMMY3[dt.char]
        labels = True
    else:
        if ignore is not None or target.shape != shape or tdt.kind not in "biuf":
            return NotImplemented
        # read by the kernel in these dtypes (cast into its scratch rows), else cast here
        tm = _contiguous(target if tdt in _MASK_DTYPES else target.astype(dt))
        tm = tm if as_is else tm.reshape(n, C, S)
        lab = _DUMMY_LAB
        labels = False
    scale = _scale(reduction, n, n)
    g, copy_to = _gradient_target(need_grad, out, z, arrays)
    if need_grad:
        g3 = g if as_is else g.reshape(n, C, S)
    else:
        g3 = _DUMMY3[dt.char]
    values = np.empty(n, dtype=np.float64)
    if S * C * n >= PARALLEL_MIN:
        kernel, (parts, per) = nb.overlap_parallel, nb.split(n, C, S)
    else:
        kernel, parts, per = nb.overlap_serial, 1, n
    flags = (act_code | (labels and nb.LABELS) | (squared and nb.SQUARED)
             | ((mode == "per_class" or kind == nb.GENERALIZED) and nb.PER_CLASS)
             | (need_grad and nb.GRAD))
    if ignore is not None:
        flags |= nb.IGNORE
    if kind == nb.MCC and ignore is not None:
        return NotImplemented  # (its true negatives need the kept positions' count)
    count = float(S * (C if not flags & nb.PER_CLASS else 1))  # positions per group (MCC)
    res = _kernel(nb, kernel, z3, tm, lab, flags, 0 if ignore is None else ignore,
                  (k, c_i, c_p, c_t, u, v, w, smooth, 1.0 if scale is None else scale,
                   float(kind), gamma, float(wtype), count), g3, values, parts, per)
    if res is None:
        return NotImplemented
    bad, total = res
    if bad:
        return NotImplemented  # the generic path raises (or handles the softmax edge)
    STATS[loss.name, "numba"] += 1
    return _result(want, reduction, dt, total, values, scale, g, copy_to)


_DUMMY3 = {"f": np.zeros((1, 1, 1), np.float32), "d": np.zeros((1, 1, 1), np.float64)}
_DUMMY_LAB = np.zeros((1, 1), _INTP)


def _squared(opts):
    sq = opts["squared"]
    return bool(sq) if type(sq) in (bool, np.bool_) else None


def dice_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    s, sq = _number(opts["smooth"]), _squared(opts)
    if s is None or sq is None:
        return NotImplemented
    u, w = (0.0, 2.0) if sq else (1.0, 0.0)
    return _overlap(loss, arrays, reduction, sample_weight, opts, want, out,
                    2.0, 0.0, 1.0, 1.0, u, 0.0, w, s, sq)


def tversky_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    a, b, s = _number(opts["alpha"]), _number(opts["beta"]), _number(opts["smooth"])
    if a is None or b is None or s is None:
        return NotImplemented
    return _overlap(loss, arrays, reduction, sample_weight, opts, want, out,
                    1.0, 1.0 - a - b, a, b, a, 1.0 - a - b, 0.0, s, False)


def jaccard_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    s, sq = _number(opts["smooth"]), _squared(opts)
    if s is None or sq is None:
        return NotImplemented
    u, w = (0.0, 2.0) if sq else (1.0, 0.0)
    return _overlap(loss, arrays, reduction, sample_weight, opts, want, out,
                    1.0, -1.0, 1.0, 1.0, u, -1.0, w, s, sq)


def focal_tversky_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    """Tversky's index, the loss :math:`(1 - R)^\\gamma` of each group."""
    a, b, s = _number(opts["alpha"]), _number(opts["beta"]), _number(opts["smooth"])
    gamma = _number(opts["gamma"])
    if a is None or b is None or s is None or gamma is None or gamma == 0.0:
        return NotImplemented
    return _overlap(loss, arrays, reduction, sample_weight, opts, want, out,
                    1.0, 1.0 - a - b, a, b, a, 1.0 - a - b, 0.0, s, False, gamma=gamma)


_WEIGHT_TYPES = {"uniform": 0, "simple": 1, "square": 2}


def generalized_dice_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    """One Dice index over the classes weighted by the inverse volume (the sums per class
    of the driver, the weights and the per-class coefficients in its step 2)."""
    s, wt = _number(opts["smooth"]), opts["weight_type"]
    if s is None or type(wt) is not str or wt not in _WEIGHT_TYPES or opts["axis"] is None:
        return NotImplemented
    return _overlap(loss, arrays, reduction, sample_weight, opts, want, out,
                    2.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, s, False, kind=1,
                    wtype=_WEIGHT_TYPES[wt])


def mcc_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    """The Matthews correlation of each group from its sums (``eps`` as the smoothing);
    not with ``ignore_index``."""
    e = _number(opts["eps"])
    if e is None:
        return NotImplemented
    return _overlap(loss, arrays, reduction, sample_weight, opts, want, out,
                    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, e, False, kind=2)
