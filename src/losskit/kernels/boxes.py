r"""Fused fast path of the bounding-box (IoU) family for plain NumPy inputs.

One driver, :func:`box_fast_path`, serves the ten box losses of
:mod:`losskit.losses.boxes` (``lk.catalog("boxes")``); each registers
``box_fast_path(kind)`` for its class. The per-box math of every loss is stated once,
as a numba scalar function of the eight coordinates and the options, in
:mod:`losskit.kernels.boxes_numba` (imported on first use, never by ``import losskit``);
it mirrors the generic kernel term by term, including the per-pair power-of-two
rescaling that keeps tiny and huge coordinates exact (:func:`exponent_range` is shared
with the generic path).

The fast path takes

* a float32 or float64 ``numpy.ndarray`` of shape ``(..., 4)`` (any leading shape,
  flattened; not empty; a non-contiguous one is copied first) and a target ``ndarray`` of
  the same shape (cast to the prediction's dtype, as the generic path does);
* every reduction, ``out=``, the value, the gradient or both (one pass);
* ``sample_weight`` as an ``ndarray`` of the unreduced loss's shape (or of its first
  axis), finite and non-negative;
* the losses' options as plain numbers and flags in their valid ranges.

Anything else returns ``NotImplemented`` and the generic path runs (and raises its own
errors): invalid options, boxes with ``x2 < x1`` or ``y2 < y1``, infinite coordinates,
enclosing boxes beyond the range where the generic formulas stay finite (larger than
``2**hi`` of :func:`exponent_range`, e.g. about 4.5e15 for float32 with the default
eps). A NaN coordinate gives the pair a NaN value and the predicted box a NaN gradient,
as the generic path does.

Engines: ``numba`` only. The arithmetic is float64 for float32 boxes too (the result
rounds once to float32) and the sums are float64; the loop over the boxes is vectorised
(see :mod:`losskit.kernels.boxes_numba`), with a build per loss and, where an option would
be a branch per box, per option class (:func:`_build`). The options are checked at each
call but made into the kernel's tuple once (``_PRM``). The boxes run in ``prange`` from
:func:`parallel_min_boxes` on (``fast_paths.PARALLEL_MIN / 32``: a box costs about as
much as 32 elements of an elementwise loss), serially below. Under the NumPy engine
(``fast_paths.USE_NUMBA = False``, ``LOSSKIT_DISABLE_NUMBA=1`` or numba missing) the fast
path returns ``NotImplemented``: the generic Array-API path, already vectorised over the
boxes, is the NumPy implementation.
"""

from __future__ import annotations

import math

import numpy as np

from . import fast_paths as _fp
from .fast_paths import STATS, _gradient_target, _out_ok, _result, _scale

__all__ = ["box_fast_path", "exponent_range", "parallel_min_boxes", "FOUR_OVER_PI2", "EPS"]

#: torchvision's default eps of the box losses
EPS = 1e-7
#: 4 / pi^2, the factor of CIoU's aspect term
FOUR_OVER_PI2 = 4.0 / math.pi ** 2

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_FINFO = {32: np.finfo(np.float32), 64: np.finfo(np.float64)}


def exponent_range(bits: int, eps: float) -> tuple[float, float]:
    """The exponents k allowed for the scale s = 2^k of a box pair, for a float type of
    ``bits`` (32 or 64) bits and the eps of the loss.

    s stays a normal number with a normal 1/s; with eps > 0 also eps / s^2 stays normal
    (so that eps still keeps a zero union from 0/0) and at most 2^(emax/2) (so that 1 / (U
    + eps / s^2) and its products with the scaled sides stay normal)."""
    fi = _FINFO[bits]
    emin = math.frexp(float(fi.smallest_normal))[1] - 1   # -1022, -126
    emax = math.frexp(float(fi.max))[1]                   # 1024, 128
    lo, hi = emin, emax - 2
    if 0.0 < eps < float(fi.max):
        if bits == 32:
            eps = float(np.float32(eps))  # the eps the float32 arithmetic adds
        if eps > 0.0:
            le = math.log2(eps)
            lo = max(lo, math.ceil((le - emax / 2) / 2))
            hi = min(hi, math.floor((le - emin) / 2))
    return float(lo), float(hi)


def parallel_min_boxes() -> int:
    """Boxes from which the parallel build runs (read at each call, so that
    ``fast_paths.PARALLEL_MIN`` can be changed)."""
    return max(1, _fp.PARALLEL_MIN // 32)


# --------------------------------------------------------------------------- options
def _number(v, lo=None, lo_open=False):
    """``v`` as a float when it is a plain finite real number in range, else None."""
    if type(v) not in (int, float):
        return None
    v = float(v)
    if not math.isfinite(v):
        return None
    if lo is not None and (v <= lo if lo_open else v < lo):
        return None
    return v


def _flag(v):
    return None if type(v) is not bool else (1.0 if v else 0.0)


def _inner(opts):
    """The inner ratio (0.0: none), or None when invalid."""
    r = opts.get("inner_ratio")
    return 0.0 if r is None else _number(r, 0.0, lo_open=True)


def _opts_iou(opts):
    return ()


def _opts_inner(opts):
    r = _inner(opts)
    return None if r is None else (r,)


def _opts_ciou(opts):
    r, stop = _inner(opts), _flag(opts["stop_gradient"])
    return None if r is None or stop is None else (r, stop)


def _opts_focal_eiou(opts):
    gam, stop = _number(opts["gamma"], 0.0), _flag(opts["stop_gradient"])
    return None if gam is None or stop is None else (0.0, gam, stop)


def _opts_siou(opts):
    r, th = _inner(opts), _number(opts["theta"], 1.0)
    return None if r is None or th is None else (r, th)


def _opts_wiou(opts):
    version = opts["version"]
    if type(version) is not int or version not in (1, 2, 3):
        return None
    gam = _number(opts["gamma"], 0.0)
    al = _number(opts["alpha"], 0.0, lo_open=True)
    de = _number(opts["delta"], 0.0, lo_open=True)
    stop = _flag(opts["stop_gradient"])
    mean = opts["iou_mean"]
    if mean is None:
        if version != 1:
            return None
        mean = 1.0
    else:
        mean = _number(mean, 0.0, lo_open=True)
    if None in (gam, al, de, stop, mean):
        return None
    return (0.0, float(version), mean, gam, al, de, stop)


def _opts_mpdiou(opts):
    size, r = opts["image_size"], _inner(opts)
    if type(size) not in (tuple, list) or len(size) != 2 or r is None:
        return None
    w, h = _number(size[0], 0.0, lo_open=True), _number(size[1], 0.0, lo_open=True)
    if w is None or h is None:
        return None
    return (r, math.hypot(w, h))


def _opts_inner_iou(opts):
    r = _number(opts["ratio"], 0.0, lo_open=True)
    return None if r is None else (r,)


_OPTIONS = {"iou": _opts_iou, "giou": _opts_inner, "diou": _opts_inner, "ciou": _opts_ciou,
            "eiou": _opts_inner, "focal_eiou": _opts_focal_eiou, "siou": _opts_siou,
            "wiou": _opts_wiou, "mpdiou": _opts_mpdiou, "inner_iou": _opts_inner_iou}
_NPRM = 10

def _weights(sw, vshape, dt):
    """``sample_weight`` as a flat C-contiguous array of dt, one per box, or None when the
    generic path must answer (another shape, a negative, infinite or NaN weight)."""
    if type(sw) is not np.ndarray or sw.dtype.kind not in "biuf":
        return None
    if sw.shape != vshape:
        if sw.ndim == 1 and len(vshape) >= 1 and sw.shape[0] == vshape[0]:
            sw = np.broadcast_to(sw.reshape((vshape[0],) + (1,) * (len(vshape) - 1)), vshape)
        else:
            return None
    w = np.ascontiguousarray(sw, dtype=dt).reshape(-1)
    if w.size and not bool(np.all((w >= 0) & (w < np.inf))):
        return None
    return w


_POW_EXACT = frozenset((0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0))  # boxes_numba.POW_EXACT


def _build(kind, extra):
    """The driver's kind for these options: WIoU has one per version (the version's
    branch is then compiled away); a power whose exponent is not one of ``POW_EXACT``
    (products and ``sqrt``) has a build calling ``pow``."""
    if kind == "siou":
        th = extra[1]
        return kind if th in _POW_EXACT and th - 1.0 in _POW_EXACT else "siou_pow"
    if kind == "focal_eiou":
        return kind if extra[1] in _POW_EXACT else "focal_eiou_pow"
    if kind == "wiou":
        version = extra[1]
        if version == 1.0:
            return kind
        if version == 3.0:
            return "wiou3"
        return "wiou2" if extra[3] in _POW_EXACT else "wiou2_pow"
    return kind


def box_fast_path(kind: str):
    """The fast path of the box loss ``kind`` (a key of boxes_numba.KINDS), as
    :func:`losskit.core.dispatch.register_fast_path` wants it."""
    parse = _OPTIONS[kind]

    def fast_path(loss, arrays, reduction, sample_weight, opts, want, out):
        return _run(kind, parse, loss, arrays, reduction, sample_weight, opts, want, out)

    fast_path.__name__ = f"{kind}_fast_path"
    fast_path.__qualname__ = fast_path.__name__
    return fast_path


# stand-ins for the arrays a call does not want (the kernel never writes them)
_DUMMY = {np.dtype(np.float32): (np.zeros(1, np.float32), np.zeros((1, 4), np.float32)),
          np.dtype(np.float64): (np.zeros(1, np.float64), np.zeros((1, 4), np.float64))}
_PRM: dict = {}  # (kind, bits, eps, extra) -> (prm, build), made once


def _run(kind, parse, loss, arrays, reduction, sample_weight, opts, want, out):
    z, t = arrays
    dt = z.dtype
    if ((dt is not _F32 and dt is not _F64) or z.ndim == 0 or z.shape[-1] != 4
            or z.size == 0 or type(t) is not np.ndarray or t.shape != z.shape
            or t.dtype.kind not in "biuf"):
        return NotImplemented
    eps = _number(opts["eps"], 0.0)
    extra = parse(opts)
    if eps is None or extra is None:
        return NotImplemented
    bits = 32 if dt is _F32 else 64
    key = (kind, bits, eps, extra)
    cached = _PRM.get(key)
    if cached is None:
        if bits == 32:
            eps = float(np.float32(eps))  # the eps the float32 arithmetic adds
            if math.isinf(eps):
                return NotImplemented
        lo, hi = exponent_range(bits, eps)
        prm = (eps, lo, hi) + extra
        if len(_PRM) >= 512:  # options that change at every call: keep it bounded
            _PRM.clear()
        cached = _PRM[key] = (prm + (0.0,) * (_NPRM - len(prm)), _build(kind, extra))
    prm, build = cached
    need_grad = want != "value"
    if need_grad and out is not None and not _out_ok(out, z):
        return NotImplemented
    vshape = z.shape[:-1]
    w = None
    if sample_weight is not None:
        w = _weights(sample_weight, vshape, dt)
        if w is None:
            return NotImplemented
    module = _fp.family_numba("boxes_numba")
    if module is None:
        return NotImplemented  # the NumPy engine: the generic path (see the module notes)

    n = z.size // 4
    zc = z if z.flags.c_contiguous else np.ascontiguousarray(z)
    tc = t if t.dtype is dt and t.flags.c_contiguous else np.ascontiguousarray(t, dtype=dt)
    inputs = arrays if sample_weight is None else (*arrays, sample_weight)
    g, copy_to = _gradient_target(need_grad, out, zc, inputs)
    gk = g
    if z.ndim != 2:
        zc, tc = zc.reshape(n, 4), tc.reshape(n, 4)
        if need_grad:
            gk = g.reshape(n, 4)
    values = np.empty(n, dtype=dt) if reduction == "none" else None
    if reduction == "mean" and w is not None:
        total_w = float(np.sum(w, dtype=np.float64))
        scale = 1.0 / total_w if total_w else 0.0
    else:
        scale = _scale(reduction, n, vshape[0] if vshape else 1)
    partial = np.empty(-(-n // module.BLOCK), dtype=np.float64)
    parallel, serial = module.kernels(build)
    # the dummies stand for what is not wanted: the kernel never writes them
    dummy1, dummy4 = _DUMMY[dt]
    res = _fp._kernel(_fp._nb(), parallel if n >= parallel_min_boxes() else serial,
                      zc, tc, w if w is not None else dummy1, prm,
                      1.0 if scale is None else scale,
                      gk if need_grad else dummy4,
                      values if values is not None else dummy1, partial,
                      values is not None, need_grad, w is not None)
    if res is None:
        return NotImplemented  # numba could not compile it here: the generic path
    bad, total = res
    if bad:
        return NotImplemented  # unordered boxes (the generic path raises) or not covered
    STATS[loss.name, "numba"] += 1
    return _result(want, reduction, dt, total,
                   values.reshape(vshape) if values is not None else None,
                   scale, g, copy_to)
