r"""Fused fast paths for plain NumPy inputs on the hot losses.

The generic Array-API kernels (``Loss._compute``) are the reference: they run on every
array library and define every value, gradient and edge case. For the losses a training
loop calls millions of times, this module adds a second implementation that the
pipeline (``Loss._pipeline``) tries first, through the registry of
:mod:`losskit.core.dispatch` (each loss module registers its kernel), when

* every array argument is a plain ``numpy.ndarray`` and the prediction is float32 or
  float64, C-contiguous and not empty;
* the gradient is wanted with respect to the prediction (the default ``wrt``);
* the options are ones the fast path implements (below); ``sample_weight`` is not given.

A fast path returns the final, reduced result, or ``NotImplemented`` for anything else
(another option, an unusual dtype, *any* invalid input), and the generic path then runs, so
errors and their messages are the generic path's own. The result equals the generic
path's up to rounding: sums are accumulated in float64, also for float32 inputs.

The losses of one row of the class axis (cross-entropies, divergences, the multi-class
hinge, ...) share one driver, :mod:`losskit.kernels.rows`, which imports its plumbing
from here and also takes class weights, label smoothing and ``sample_weight``.

==================================  ==========================================================
loss                                the fast path covers
==================================  ==========================================================
``softmax_cross_entropy``           integer labels, class axis last, ``ignore_index``
                                    (``class_weight``, ``label_smoothing``, soft targets and
                                    ``sample_weight``: the row family, :mod:`.rows`)
``sigmoid_binary_cross_entropy``    ``pos_weight`` (a number, or one per class; (1, K) too)
``mse``, ``l2_loss``, ``mae``       every call without ``sample_weight``
``sigmoid_focal_loss``              ``gamma`` and ``alpha`` plain numbers (``alpha=None``)
==================================  ==========================================================

Engines:

``numba`` (a dependency of losskit; when ``import numba`` works)
    One sweep over the data, rows or blocks in ``prange`` (see :mod:`losskit.kernels.numba_kernels`); a serial
    build below :data:`PARALLEL_MIN` elements, where starting threads costs more than
    the work. Kernels are compiled on first use and cached on disk (``cache=True``); if
    numba cannot compile one, the NumPy engine takes over (:func:`numba_error` says why).
``numpy`` (always available)
    In-place ufuncs on cache-sized chunks, with scratch buffers of the chunk's size:
    a few passes over data that stays in cache, no temporaries as large as the input
    (``sigmoid_focal_loss`` runs its own generic kernel chunk by chunk).

Neither allocates more than the gradient itself (plus per-example values for
``reduction="none"``); with ``out=`` the gradient is written into the caller's array.
Without ``out=``, a gradient of 4 MiB or more comes from :mod:`~losskit.kernels.gradient_cache`: the
buffer of an earlier gradient of the same shape and dtype that the caller has dropped
(a training loop's previous step), so that the kernel writes pages that already exist
instead of pages the operating system must first zero (at 10M float32 elements the
page faults cost as much as the loss itself). ``LOSSKIT_GRADIENT_CACHE_MIB`` bounds what
it keeps (default 1024; 0 turns it off); ``losskit.kernels.clear_gradient_cache()`` releases it.

Environment: ``LOSSKIT_DISABLE_FAST=1`` turns the fast paths off (every call runs the
generic kernels); ``LOSSKIT_DISABLE_NUMBA=1`` keeps them on NumPy only. Both are read
at import; tests switch the flags :data:`losskit.core.dispatch.ENABLED` and :data:`USE_NUMBA`.
:data:`STATS` counts the calls each engine answered, per loss.
"""

from __future__ import annotations

import importlib
import math
from collections import Counter

import numpy as np

from ..core import dispatch
from ..core.dispatch import env_flag as _env_flag
from .gradient_cache import fresh as _fresh

__all__ = ["USE_NUMBA", "STATS", "PARALLEL_MIN", "engine", "numba_error"]


#: whether the numba kernels may be used (``LOSSKIT_DISABLE_NUMBA=1`` at import: False)
USE_NUMBA = not _env_flag("LOSSKIT_DISABLE_NUMBA")
#: calls answered by a fast path, keyed by ``(loss name, engine)``
STATS: Counter = Counter()
#: elements from which the numba kernels run on all cores
PARALLEL_MIN = 1 << 17
#: elements per chunk of the NumPy engine (its scratch buffers stay in cache)
CHUNK = 1 << 14
#: elements up to which the NumPy engine takes its small-call forms (fewer, larger ops)
SMALL = 1 << 12

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_INTP = np.dtype(np.intp)
# placeholders for the arrays a kernel is told not to write (never written)
_DUMMY1 = {"f": np.empty(0, np.float32), "d": np.empty(0, np.float64)}
_DUMMY2 = {"f": np.empty((1, 1), np.float32), "d": np.empty((1, 1), np.float64)}

_numba_module = None  # the numba_kernels module, False when numba cannot be imported
_numba_error: str | None = None


def _nb():
    """The numba kernels module, or None (numba disabled, missing or broken)."""
    global _numba_module, _numba_error
    if not USE_NUMBA:
        return None
    if _numba_module is None:
        try:
            from . import numba_kernels
        except Exception as exc:  # ImportError, or a numba that does not match numpy
            _numba_module, _numba_error = False, f"{type(exc).__name__}: {exc}"
        else:
            _numba_module = numba_kernels
    return _numba_module or None


_FAMILY_MODULES: dict = {}  # numba module of a kernel family by name; False: not importable


def family_numba(name: str):
    """The numba module ``losskit.kernels.<name>`` of a kernel family (``"pairs_numba"``,
    ...), imported on first use; None when numba is off or missing, or the module cannot
    be imported (the family's fast path then answers NotImplemented)."""
    if _nb() is None:
        return None
    module = _FAMILY_MODULES.get(name)
    if module is None:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except Exception:  # pragma: no cover - numba imported for numba_kernels already
            module = False
        _FAMILY_MODULES[name] = module
    return module or None


def engine() -> str:
    """``"numba"``, ``"numpy"`` or ``"off"``: what a fast path would run on now."""
    if not dispatch.ENABLED:
        return "off"
    return "numba" if _nb() is not None else "numpy"


def numba_error() -> str | None:
    """Why numba could not be used (None when it imported or was never tried)."""
    return _numba_error


def _kernel(nb, kernel, *args):
    """Run a numba kernel; None if numba cannot compile it here (numba is then given up
    for the rest of the process and the NumPy engine answers)."""
    global _numba_module, _numba_error
    try:
        return kernel(*args)
    except nb.NumbaError as exc:
        _numba_module, _numba_error = False, f"{type(exc).__name__}: {exc}"
        return None


# --------------------------------------------------------------------------- shared plumbing
_ONES: dict = {}


def _ones(n, dt):
    """A read-only array of n ones of dtype dt, made once (small calls save the fill)."""
    a = _ONES.get((n, dt))
    if a is None:
        a = _ONES[n, dt] = np.ones(n, dtype=dt)
        a.flags.writeable = False
    return a


def _float_prediction(z):
    """The prediction's dtype when the fast path can take it, else None."""
    dt = z.dtype
    if (dt is not _F32 and dt is not _F64) or not z.flags.c_contiguous or z.size == 0:
        return None
    return dt


def _same_shape_target(t, z, dt):
    """A target of exactly z's shape, cast like the generic path (``astype(work)``)."""
    if type(t) is not np.ndarray or t.shape != z.shape:
        return None
    if t.dtype is not dt:
        if t.dtype.kind not in "biuf":
            return None
        t = t.astype(dt, order="C")
    elif not t.flags.c_contiguous:
        t = np.ascontiguousarray(t)
    return t


def _out_ok(out, z):
    """Whether ``out`` is a usable gradient buffer (else the generic path raises)."""
    return (type(out) is np.ndarray and out.shape == z.shape and out.dtype is z.dtype
            and out.flags.writeable)


def _gradient_target(need_grad, out, z, inputs):
    """(array the kernel writes the gradient into, ``out`` when it must be copied there).

    The kernels write ``out`` directly unless it is not C-contiguous or shares memory with
    an input (the gradient is then computed aside and copied, so inputs are read intact).
    """
    if not need_grad:
        return None, None
    if out is None:
        return _fresh(z), None
    if not out.flags.c_contiguous or any(np.may_share_memory(out, a) for a in inputs):
        return _fresh(z), out
    return out, None


class _Elementwise:
    """The arrays of an elementwise fast-path call, prepared once (see :func:`_elementwise`).

    ``zf``, ``tf``: the prediction and the target, flat; ``gf``, ``vf``: the flat gradient
    and per-element values the kernel writes, or a dummy when not wanted; ``scale``: the
    reduction's factor (1.0 for "none"/"sum").
    """

    __slots__ = ("z", "dt", "need_grad", "scale", "g", "copy_to", "values", "zf", "tf",
                 "gf", "vf")

    def run_numba(self, nb, kernels, block, *head):
        """Run ``kernels`` (parallel build, serial build) on blocks of ``block`` elements,
        as ``kernel(*head, scale, g, values, partial sums, want values, want grad)``:
        the kernel's result, or None when numba cannot compile it here."""
        n = self.zf.shape[0]
        partial = np.empty(-(-n // block), dtype=np.float64)
        kernel = kernels[0] if n >= PARALLEL_MIN else kernels[1]
        return _kernel(nb, kernel, *head, self.scale, self.gf, self.vf, partial,
                       self.values is not None, self.need_grad)

    def result(self, want, reduction, total):
        return _result(want, reduction, self.dt, total, self.values,
                       None if reduction in ("none", "sum") else self.scale, self.g,
                       self.copy_to)


def _elementwise(arrays, reduction, sample_weight, want, out, target_as_is=False):
    """The common start of the elementwise fast paths (prediction and target of one
    shape): an :class:`_Elementwise`, or None when the call is not theirs to answer.
    ``target_as_is``: a C-contiguous target of the prediction's shape is kept in its own
    dtype (else cast to the prediction's, see :func:`_same_shape_target`).

    Every small call runs it, so the usual case (float32/64 C-contiguous arrays of one
    dtype, a fresh gradient) is written out here, the first lines of
    :func:`_float_prediction`, :func:`_same_shape_target` and :func:`_gradient_target`
    without their calls (0.3-0.6 us of a 6-10 us call, measured); anything else goes
    through those helpers."""
    if sample_weight is not None:
        return None
    z, t = arrays
    dt = z.dtype
    if (dt is not _F32 and dt is not _F64) or not z.flags.c_contiguous or z.size == 0:
        return None
    if not (type(t) is np.ndarray and (t.dtype is dt or target_as_is) and t.shape == z.shape
            and t.flags.c_contiguous):
        t = _same_shape_target(t, z, dt)
        if t is None:
            return None
    need_grad = want != "value"
    e = _Elementwise()
    e.z, e.dt, e.need_grad = z, dt, need_grad
    scale = _scale(reduction, z.size, z.shape[0] if z.ndim else 1)
    e.scale = 1.0 if scale is None else scale
    dummy = _DUMMY1[dt.char]
    if not need_grad:
        e.g = e.copy_to = None
        e.gf = dummy
    else:
        if out is None:
            e.g, e.copy_to = _fresh(z), None
        elif _out_ok(out, z):
            e.g, e.copy_to = _gradient_target(need_grad, out, z, arrays)
        else:
            return None
        e.gf = e.g.reshape(-1)
    if reduction == "none":
        e.values = np.empty(z.shape, dtype=dt)
        e.vf = e.values.reshape(-1)
    else:
        e.values, e.vf = None, dummy
    e.zf, e.tf = z.reshape(-1), t.reshape(-1)
    return e


def _scale(reduction, count, batch):
    """The factor of the reduction (``None`` for "none"/"sum": nothing to divide).

    ``count``: the examples that take part (the mean's denominator); ``batch``: the first
    axis of the unreduced loss, 1 when it is 0-d (the batchmean's denominator).
    """
    if reduction == "mean":
        return 1.0 / count if count else 0.0
    if reduction == "batchmean":
        return 1.0 / batch if batch else 0.0
    return None


def _result(want, reduction, dt, total, values, scale, g, copy_to):
    """Assemble what the pipeline returns: the value, the gradient or both."""
    if reduction == "none":
        value = values.astype(dt, copy=False)
    else:
        value = np.array(total if scale is None else total * scale, dtype=dt)
    if want == "value":
        return value
    if copy_to is not None:
        np.copyto(copy_to, g)
        g = copy_to
    return g if want == "grad" else (value, g)


# --------------------------------------------------------------------------- softmax CE
def plain_integer_labels(z, y, opts, *, any_layout=False):
    """The prediction's dtype when a softmax cross-entropy call is the plain one the tuned
    kernels take (a non-empty float32/float64 NumPy prediction, C-contiguous unless
    ``any_layout``, with the class axis last, integer labels of the other axes' shape, no
    class weights, no smoothing, an int ``ignore_index`` or none), else None."""
    if any_layout:
        dt = z.dtype if (type(z) is np.ndarray and z.size
                         and (z.dtype is _F32 or z.dtype is _F64)) else None
    else:
        dt = _float_prediction(z)
    axis, ignore = opts["axis"], opts["ignore_index"]
    smoothing = opts["label_smoothing"]
    if (dt is None or z.ndim == 0 or type(y) is not np.ndarray or y.dtype.kind not in "iu"
            or (y.dtype.kind == "u" and y.dtype.itemsize == 8)  # would wrap around in intp
            or opts["class_weight"] is not None
            or type(axis) is not int or (axis != -1 and axis != z.ndim - 1)
            or (ignore is not None and type(ignore) is not int)
            or type(smoothing) not in (int, float) or smoothing != 0
            or y.shape != z.shape[:-1]):
        return None
    return dt


def softmax_cross_entropy(loss, arrays, reduction, sample_weight, opts, want, out):
    """Integer labels along the last axis, ``ignore_index``; nothing else."""
    if sample_weight is not None:
        return NotImplemented
    z, y = arrays
    dt = plain_integer_labels(z, y, opts)
    if dt is None:
        return NotImplemented
    ignore = opts["ignore_index"]
    need_grad = want != "value"
    if need_grad and out is not None and not _out_ok(out, z):
        return NotImplemented
    k = z.shape[-1]
    z2 = z if z.ndim == 2 else z.reshape(-1, k)
    labels = y if y.ndim == 1 else y.reshape(-1)
    if labels.dtype is not _INTP or not labels.flags.c_contiguous:
        if ignore is not None and not np.can_cast(np.min_scalar_type(ignore), _INTP):
            return NotImplemented
        labels = np.ascontiguousarray(labels, dtype=_INTP)
    has_ignore = ignore is not None
    ign = ignore if has_ignore else 0
    if has_ignore and not -(1 << 63) <= ign < (1 << 63):
        return NotImplemented
    nb = _nb()
    batch = y.shape[0] if y.ndim else 1
    g, copy_to = _gradient_target(need_grad, out, z, arrays)
    # per-row values only when they are the result (the kernel sums blocks of rows)
    n = z2.shape[0]
    values = np.empty(n if reduction == "none" else 0, dtype=np.float64)
    res = None
    if nb is not None:
        g2 = ((g if z.ndim == 2 else g.reshape(z2.shape)) if need_grad
              else nb.scratch_rows(n, k, dt))
        kernel = nb.softmax_ce_parallel if z.size >= PARALLEL_MIN else nb.softmax_ce_serial
        res = _kernel(nb, kernel, z2, labels, has_ignore, ign, reduction == "mean",
                      1.0 / batch if reduction == "batchmean" else 1.0, g2, values, need_grad)
    if res is not None:
        bad, kept, total = res
        if bad:
            return NotImplemented  # the generic path raises the label error
        scale = _scale(reduction, kept, batch)
        STATS["softmax_cross_entropy", "numba"] += 1
    else:
        if values.shape[0] != n:
            values = np.empty(n, dtype=np.float64)  # the NumPy engine's per-row values
        # labels as unsigned: a negative one is huge, so one comparison finds both sides
        unsigned = labels.view(np.uintp)
        if has_ignore:
            keep = labels != ign
            kept = int(np.count_nonzero(keep))
            outside = ((unsigned >= k) & keep).any()
        else:
            kept = labels.shape[0]
            outside = unsigned.max() >= k
        if outside:
            return NotImplemented  # the generic path raises the label error
        scale = _scale(reduction, kept, batch)
        with np.errstate(all="ignore"):  # e.g. -3e38 - 3e38 overflows, as in the generic
            _softmax_ce_numpy(z2, labels, has_ignore, ign, 1.0 if scale is None else scale,
                              g.reshape(z2.shape) if need_grad else None, values)
        total = float(np.add.reduce(values))
        STATS["softmax_cross_entropy", "numpy"] += 1
    return _result(want, reduction, dt, total,
                   values.reshape(y.shape) if values.shape[0] == n else values, scale, g,
                   copy_to)


_ARANGES: dict = {}


def _arange(n):
    """np.arange(n) (intp, read-only), made once per n for small n."""
    a = _ARANGES.get(n)
    if a is None:
        a = np.arange(n)
        if n <= 4096:
            a.flags.writeable = False
            if len(_ARANGES) > 64:
                _ARANGES.clear()
            _ARANGES[n] = a
    return a


def _softmax_ce_numpy(z, y, has_ignore, ignore, scale, g, values):
    """The NumPy engine: the generic kernel's formulas on chunks of rows, in place."""
    n, k = z.shape
    dt = z.dtype
    rows = max(1, 4 * CHUNK // k)  # 256 KiB of float32 rows: they stay in cache
    scratch = np.empty((min(rows, n), k), dtype=dt) if g is None else None
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        zb = z[r0:r1]
        yb = y[r0:r1]
        gb = g[r0:r1] if g is not None else scratch[: r1 - r0]
        idx = _arange(r1 - r0)
        keep = yb != ignore if has_ignore else None
        yk = yb if keep is None else np.where(keep, yb, 0)
        m = zb.max(axis=1, keepdims=True)  # NaN propagates into m, as np.max does
        finite = np.isfinite(m)
        all_finite = finite.all()
        if not all_finite:
            m = np.where(finite, m, 0)
        np.subtract(zb, m, out=gb)
        shifted_y = gb[idx, yk].astype(np.float64)
        np.exp(gb, out=gb)
        s = gb.sum(axis=1).astype(np.float64)  # pairwise, in the dtype, as the generic
        if all_finite and keep is None:  # every row's maximum finite: 1 <= s <= K
            vb = np.log(s)
            vb -= shifted_y
            if g is not None:
                np.multiply(gb, (scale / s).astype(dt)[:, None], out=gb)
                gb[idx, yk] -= dt.type(scale)
            values[r0:r1] = vb
            continue
        # rows of NaN, +inf or only -inf, ignored labels: the generic rules
        _softmax_ce_rows_numpy(gb, idx, yk, keep, s, shifted_y, scale, g is not None,
                               values[r0:r1])


def _softmax_ce_rows_numpy(gb, idx, yk, keep, s, shifted_y, scale, want_grad, values):
    """The rest of a block of :func:`_softmax_ce_numpy` with a row whose maximum is not
    finite or an ignored label: gb holds exp(z - shift), s its row sums (float64)."""
    dt = gb.dtype
    ok = (s > 0) & (s < np.inf)
    log_s = np.log(np.where((s > 0) | np.isnan(s), s, 1.0))
    log_s[~((s > 0) | np.isnan(s))] = -np.inf
    vb = log_s - shifted_y
    if want_grad:
        factor = (scale / np.where(ok, s, 1.0)).astype(dt)
        np.multiply(gb, factor[:, None], out=gb)
        gb[idx, yk] -= dt.type(scale)
        if not ok.all():
            gb[~ok] = np.nan
        if keep is not None and not keep.all():
            gb[~keep] = 0
    if keep is not None:
        vb = np.where(keep, vb, 0.0)
    values[...] = vb


# --------------------------------------------------------------------------- sigmoid BCE
def _pos_weight(pw, k, dt, ndim):
    """``pos_weight`` as a float array of shape (1,) or (k,), or None when unusual (the
    generic path takes any other broadcastable shape, such as (N, K) or (N, 1))."""
    if type(pw) in (int, float):
        arr = np.asarray(pw)
    elif type(pw) is np.ndarray or type(pw) in (list, tuple):
        arr = np.asarray(pw)
        if arr.dtype.kind not in "biuf" or arr.ndim > ndim:
            return None  # the generic path says what is wrong
        if arr.ndim > 1 and all(d == 1 for d in arr.shape[:-1]):
            arr = arr.reshape(arr.shape[-1])  # (1, K) or (1, 1): the same weights
        if not (arr.ndim == 0 or arr.shape == (k,) or arr.shape == (1,)):
            return None
    else:
        return None
    arr = arr.astype(dt).reshape(-1)
    if (arr < 0).any():  # NaN passes, as in the generic check
        return None
    return arr


def sigmoid_binary_cross_entropy(loss, arrays, reduction, sample_weight, opts, want, out):
    """Any shape; ``pos_weight`` scalar or per class along the last axis."""
    e = _elementwise(arrays, reduction, sample_weight, want, out)
    if e is None:
        return NotImplemented
    z, dt = e.z, e.dt
    k = z.shape[-1] if z.ndim else 1
    pw = opts["pos_weight"]
    if pw is not None:
        pw = _pos_weight(pw, k, dt, z.ndim)
        if pw is None:
            return NotImplemented
    nb = _nb()
    n = e.zf.shape[0]
    if nb is not None:
        per_class = pw is not None and pw.shape[0] > 1
        block = k * max(1, nb.BLOCK // k) if per_class else nb.BLOCK
        block = min(block, n)
        if pw is None:
            pwb = _ones(nb.BLOCK, dt)[:block]
        elif per_class:
            pwb = np.tile(pw, block // k)
        else:
            pwb = np.full(block, pw[0], dtype=dt)
        res = e.run_numba(nb, (nb.sigmoid_bce_parallel, nb.sigmoid_bce_serial), block,
                          e.zf, e.tf, pwb, block)
        nb = None if res is None else nb
    if nb is not None:
        bad, total = res
        engine_name = "numba"
    else:
        with np.errstate(all="ignore"):
            total, bad = _sigmoid_bce_numpy(
                e.zf, e.tf, pw, k, e.scale, e.gf if e.need_grad else None,
                e.vf if e.values is not None else None)
        engine_name = "numpy"
    if bad:
        return NotImplemented  # targets outside [0, 1]: the generic path raises
    STATS["sigmoid_binary_cross_entropy", engine_name] += 1
    return e.result(want, reduction, total)


sigmoid_binary_cross_entropy.elementwise = True  # (losskit.core.dispatch.register_fast_path)


def _sigmoid_bce_numpy(z, t, pw, k, scale, g, values):
    """The NumPy engine on flat chunks: (float64 sum of the values, whether a target lies
    outside [0, 1]; NaN does not, it propagates).

    The generic kernel's formulas, rearranged without ``np.where`` (slow) where the
    chunk's logits are all finite: the sigmoid's numerator ``1 if z >= 0 else e`` is
    ``max(e, z >= 0)`` (``e <= 1``), and the ``0 * inf = 0`` guards of the value are only
    needed at infinite logits.
    """
    n = z.shape[0]
    dt = z.dtype
    if pw is None and n <= SMALL and np.isfinite(z).all():
        return _sigmoid_bce_small(z, t, scale, g, values)
    per_class = pw is not None and pw.shape[0] > 1
    # a chunk starts at class 0 when pos_weight is per class (whole rows; one row at least)
    chunk = min((CHUNK - CHUNK % k if k <= CHUNK else k) if per_class else CHUNK, n)
    e_, l_, a_, b_, p_, q_ = (np.empty(chunk, dtype=dt) for _ in range(6))
    mask_ = np.empty(chunk, dtype=bool)
    pwb = None if pw is None else (np.tile(pw, chunk // k) if per_class else pw[0])
    zero, one = dt.type(0.0), dt.type(1.0)
    total = 0.0
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        m = hi - lo
        zc, tc = z[lo:hi], t[lo:hi]
        if np.fmin.reduce(tc) < 0 or np.fmax.reduce(tc) > 1:
            return 0.0, True
        e, l1p, a, b, neg, mask = e_[:m], l_[:m], a_[:m], b_[:m], q_[:m], mask_[:m]
        np.abs(zc, out=e)
        np.negative(e, out=e)
        np.exp(e, out=e)  # e = exp(-|z|)
        np.log1p(e, out=l1p)
        if pwb is None:
            pos = tc
        else:
            pos = p_[:m]
            np.multiply(tc, pwb if np.ndim(pwb) == 0 else pwb[:m], out=pos)
        np.subtract(one, tc, out=neg)
        # value: pos softplus(-z) + neg softplus(z), softplus(+-z) = max(+-z, 0) + log1p(e)
        np.maximum(zc, zero, out=a)
        np.add(a, l1p, out=a)  # softplus(z)
        np.minimum(zc, zero, out=b)
        np.subtract(l1p, b, out=b)  # softplus(-z)
        if np.isfinite(zc).all():
            np.multiply(pos, b, out=b)
            np.multiply(neg, a, out=a)
        else:  # 0 * inf = 0: a perfect prediction at an infinite logit costs nothing
            b[...] = np.where(pos == 0, zero, pos * b)
            a[...] = np.where(neg == 0, zero, neg * a)
        np.add(a, b, out=a)
        if values is not None:
            values[lo:hi] = a
        total += float(np.add.reduce(a, dtype=np.float64))
        if g is not None:
            gc = g[lo:hi]
            # (pos + neg) sigmoid(z) - pos, sigmoid(z) = (1 if z >= 0 else e) / (1 + e)
            np.greater_equal(zc, zero, out=mask)
            np.maximum(e, mask, out=b)  # NaN stays NaN
            np.add(one, e, out=a)
            np.divide(b, a, out=b)
            np.add(pos, neg, out=gc)
            np.multiply(gc, b, out=gc)
            np.subtract(gc, pos, out=gc)
            if scale != 1.0:
                np.multiply(gc, dt.type(scale), out=gc)
    return total, False


def _sigmoid_bce_small(z, t, scale, g, values):
    """:func:`_sigmoid_bce_numpy` for a small call with finite logits and no
    ``pos_weight``: the same formulas in fewer operations (temporaries of a few KiB cost
    less than the calls that would avoid them). The value
    ``t softplus(-z) + (1 - t) softplus(z)`` is ``max(z, 0) - t z + log1p(e)``."""
    if np.fmin.reduce(t) < 0 or np.fmax.reduce(t) > 1:
        return 0.0, True
    e = np.exp(-np.abs(z))
    v = np.maximum(z, 0)
    v -= t * z
    v += np.log1p(e)
    if values is not None:
        values[...] = v
    if g is not None:
        sig = np.maximum(e, z >= 0)  # 1 or e: the numerator of the sigmoid
        sig /= 1 + e
        sig -= t
        np.multiply(sig, z.dtype.type(scale), out=g)
    return float(np.add.reduce(v, dtype=np.float64)), False


# --------------------------------------------------------------------------- regression
_REGRESSION_KIND = {"mse": 0, "l2_loss": 1, "mae": 2, "huber": 3}


def _finite_number(v, lo, lo_open):
    """``v`` as a float when it is a plain finite real number above ``lo``, else None."""
    if type(v) not in (int, float):
        return None
    v = float(v)
    if not (v > lo if lo_open else v >= lo) or v == float("inf"):
        return None
    return v


def regression(loss, arrays, reduction, sample_weight, opts, want, out):
    """mse, l2_loss, mae and huber: any shape, any reduction."""
    param = 0.0
    if "delta" in opts:  # huber
        param = _finite_number(opts["delta"], 0.0, lo_open=True)
        if param is None:
            return NotImplemented
    kind = _REGRESSION_KIND.get(loss.name)
    e = None if kind is None else _elementwise(arrays, reduction, sample_weight, want, out)
    if e is None:
        return NotImplemented
    nb = _nb()
    total = None
    if nb is not None:
        total = e.run_numba(nb, (nb.regression_parallel, nb.regression_serial), nb.BLOCK,
                            kind, param, e.zf, e.tf)
    if total is not None:
        STATS[loss.name, "numba"] += 1
    else:
        with np.errstate(all="ignore"):
            total = _regression_numpy(kind, param, e.zf, e.tf, e.scale,
                                      e.gf if e.need_grad else None,
                                      e.vf if e.values is not None else None)
        STATS[loss.name, "numpy"] += 1
    return e.result(want, reduction, total)


regression.elementwise = True  # (losskit.core.dispatch.register_fast_path)


def _regression_numpy(kind, param, z, t, scale, g, values):
    n = z.shape[0]
    dt = z.dtype
    chunk = min(CHUNK, n)
    buf = np.empty(chunk, dtype=dt)
    sums = []
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        d = buf[: hi - lo]
        np.subtract(z[lo:hi], t[lo:hi], out=d)
        if kind == 3:  # huber, as the generic kernel: q = min(|d|, delta)
            a = np.abs(d)
            q = np.minimum(a, dt.type(param))
            v = dt.type(0.5) * (q * q) + dt.type(param) * (a - q)
            if g is not None:
                np.sign(d, out=g[lo:hi])
                g[lo:hi] *= q
                g[lo:hi] *= dt.type(scale)
        elif kind == 2:
            v = np.abs(d)
            if g is not None:
                np.sign(d, out=g[lo:hi])
                g[lo:hi] *= dt.type(scale)
        else:
            v = d * d
            if kind == 1:
                v *= dt.type(0.5)
            if g is not None:
                np.multiply(d, dt.type(2.0 * scale if kind == 0 else scale), out=g[lo:hi])
        if values is not None:
            values[lo:hi] = v
        sums.append(float(v.sum(dtype=np.float64)))
    return math.fsum(sums)


# --------------------------------------------------------------------------- sigmoid focal
def sigmoid_focal_loss(loss, arrays, reduction, sample_weight, opts, want, out):
    """Any shape; ``gamma`` and ``alpha`` as plain numbers (``alpha=None`` too)."""
    gamma = _finite_number(opts["gamma"], 0.0, lo_open=False)
    alpha = opts["alpha"]
    if gamma is None or (alpha is not None and (
            type(alpha) not in (int, float) or not -float("inf") < alpha <= 1.0)):
        return NotImplemented
    has_alpha = alpha is not None and alpha >= 0  # a negative alpha disables the weighting
    e = _elementwise(arrays, reduction, sample_weight, want, out)
    if e is None:
        return NotImplemented
    nb = _nb()
    res = None
    if nb is not None:
        res = e.run_numba(nb, (nb.sigmoid_focal_parallel, nb.sigmoid_focal_serial), nb.BLOCK,
                          e.zf, e.tf, gamma, has_alpha, float(alpha) if has_alpha else 0.0)
    if res is not None:
        bad, total = res
        if bad:
            return NotImplemented  # targets outside [0, 1]: the generic path raises
        engine_name = "numba"
    else:
        total = _chunked_generic(loss, e.zf, e.tf, opts, e.scale,
                                 e.gf if e.need_grad else None,
                                 e.vf if e.values is not None else None)
        if total is None:
            return NotImplemented
        engine_name = "numpy"
    STATS[loss.name, engine_name] += 1
    return e.result(want, reduction, total)


sigmoid_focal_loss.elementwise = True  # (losskit.core.dispatch.register_fast_path)


def numpy_context(loss, dtype):
    """A ``Context`` for running ``loss._compute`` (or a loss's own formulas) on NumPy
    arrays of ``dtype`` inside a fast path: the loss's generic math as the NumPy engine."""
    import array_api_compat

    from ..core.loss import Context

    return Context(xp=array_api_compat.array_namespace(np.empty(0, dtype)), dtype=dtype,
                   work=dtype, device="cpu", loss=loss.name)


def _chunked_generic(loss, z, t, opts, scale, g, values):
    """The NumPy engine of an elementwise loss: its own generic kernel on flat chunks.

    The same formulas as the generic path, with temporaries of a chunk's size only.
    Returns the float64 sum of the values, or None when a chunk raised (the generic path
    then reruns on the whole array, so that the message describes all of it).
    """
    ctx = numpy_context(loss, z.dtype)
    n = z.shape[0]
    total = 0.0
    with np.errstate(all="ignore"):
        for lo in range(0, n, CHUNK):
            hi = min(lo + CHUNK, n)
            try:
                terms = loss._compute(ctx, z[lo:hi], t[lo:hi], need_grad=g is not None, **opts)
            except (TypeError, ValueError):
                return None
            if values is not None:
                values[lo:hi] = terms.value
            if g is not None:
                np.multiply(terms.grad, z.dtype.type(scale), out=g[lo:hi])
            total += float(np.sum(terms.value, dtype=np.float64))
    return total
