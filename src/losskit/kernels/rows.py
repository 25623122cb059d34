r"""The row family of fused kernels: losses that are a function of one row of the class axis.

Cross-entropies (softmax, NLL, probabilities), the focal and Poly-1 losses, the Brier
score, the multi-class hinge and the divergences (KL, distillation KL, Jensen-Shannon)
each compute, per example, a value and a gradient from the row :math:`z_{n,:}` of the
prediction (class axis last) and the example's target: an integer label (with its class
weight, ``ignore_index`` and ``label_smoothing``) or a row of the prediction's shape
(probabilities, teacher logits). One driver, :func:`run`, does everything else once:

* it decodes the target (labels to ``intp`` with -1 for an ignored one, per-row label
  weights :math:`w_{y_n}`, class weights, a same-shape target in the prediction's dtype);
* ``sample_weight`` (the unreduced loss's shape, or ``(N,)`` for every row of an
  example), every reduction (the mean divides by :math:`\sum_n s_n w_{y_n}` for labels,
  by the sample weights' sum or the number of rows otherwise; a mean over nothing is 0
  with a zero gradient), ``out=``, float32 and float64;
* the engine: numba (:mod:`losskit.kernels.rows_numba`, imported on first use: one
  sweep over the rows, ``prange`` from :data:`~losskit.kernels.fast_paths.PARALLEL_MIN`
  elements on, float64 sums) or NumPy (the loss's own generic kernel on blocks of rows
  that stay in cache: the same formulas, vectorised, without temporaries of the input's
  size).

A loss joins the family with a :class:`RowSpec`: its row function in
:mod:`~losskit.kernels.rows_numba` (value and gradient of one row, stated once; ``None``:
the NumPy engine only), the targets it takes, and a function that turns its options into
the row function's parameters (``None`` for an option the kernel does not cover). Like
every fast path, :func:`run` returns ``NotImplemented`` for anything unusual (another
axis, an unusual dtype or option, invalid input: labels out of range, a value outside the
loss's domain, negative, NaN or infinite weights) and the generic path answers, with its
own errors.

===========================  ===================================  =========================
loss                         targets                              row function
===========================  ===================================  =========================
``softmax_cross_entropy``    labels (class_weight, ignore_index,  ``softmax_ce``
                             label_smoothing), probabilities
``nll_loss``                 the same                             ``nll``
``cross_entropy``            the same                             ``cross_entropy``
``brier_score``              labels (ignore_index), probabilities ``brier``
``multiclass_hinge``         labels (class_weight, ignore_index;  ``multiclass_hinge``
                             Weston-Watkins, p = 1)
``kl_divergence``            same shape                           ``kl``
``softmax_kl_divergence``    same shape                           ``softmax_kl``
``js_divergence``            same shape                           ``js``
``softmax_focal_loss``       labels (class_weight, ignore_index,  ``softmax_focal``
                             alpha), probabilities
``poly_loss``                labels (class_weight, ignore_index,  ``poly``
                             label_smoothing), probabilities
``multiclass_sparsemax_      labels (ignore_index), distributions ``sparsemax``
loss``                       (rows summing to 1)
``generalized_cross_         labels (class_weight, ignore_index), ``generalized_cross_
entropy``                    probabilities                        entropy``
``multiclass_perceptron``    labels (class_weight, ignore_index)  ``multiclass_perceptron``
``multilabel_margin``        class indices padded with -1, same   ``multilabel_margin``
                             shape (integers)
``multilabel_soft_margin``   same shape (class_weight)            ``multilabel_soft_margin``
===========================  ===================================  =========================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..core.validation import sums_to_one_tolerance
from . import fast_paths as _fp
from .fast_paths import (_DUMMY2, _F32, _F64, _INTP, _gradient_target, _kernel,
                         _out_ok, _result, STATS)

__all__ = ["RowSpec", "run", "softmax_cross_entropy", "nll_loss", "cross_entropy",
           "brier_score", "multiclass_hinge", "kl_divergence", "softmax_kl_divergence",
           "js_divergence", "softmax_focal_loss", "poly_loss", "multiclass_sparsemax_loss",
           "generalized_cross_entropy", "multiclass_perceptron", "multilabel_margin",
           "multilabel_soft_margin", "ROW_BLOCK"]

_EMPTY64 = np.empty(0, np.float64)
_ONE64 = np.ones(1, np.float64)
#: elements per block of rows of the NumPy engine
ROW_BLOCK = 1 << 16


@dataclass(frozen=True)
class RowSpec:
    """How a loss joins the row family.

    row:      name of its row function in ``rows_numba.ROWS`` (None: NumPy engine only)
    labels:   whether it takes integer labels (shape of the prediction without its last axis)
    same:     whether it takes a floating target of the prediction's shape
    index_target: whether that same-shape target holds integers (class indices, passed
              to the row function in the prediction's float type)
    weighted: whether the mean divides by the label weights (``Terms.weight`` of labels)
    params:   options, K, dtype -> tuple of floats for the row function, or None
    """

    row: str | None
    labels: bool
    same: bool
    weighted: bool
    params: Callable[[dict, int, Any], tuple | None]
    index_target: bool = False  # a same-shape target of integers (class indices)


# --------------------------------------------------------------------------- options
def _number(v, lo=-math.inf, hi=math.inf):
    """``v`` as a float when it is a plain real number in [lo, hi], finite; else None."""
    if type(v) not in (int, float):
        return None
    v = float(v)
    if not (lo <= v <= hi) or math.isinf(v):
        return None
    return v


def _smoothing(opts, k, dt):
    s = _number(opts.get("label_smoothing", 0.0), 0.0, 1.0)
    return None if s is None else (s,)


def _xent_params(opts, k, dt):
    s = _smoothing(opts, k, dt)
    return None if s is None else (s[0], float(np.finfo(dt).eps))


def _no_params(opts, k, dt):
    return ()


def _hinge_params(opts, k, dt):
    """Weston-Watkins with p = 1 only (the other variants and powers: the generic path)."""
    p, variant = opts.get("p", 1), opts.get("variant", "weston_watkins")
    if type(p) is not int or p != 1 or type(variant) is not str \
            or variant != "weston_watkins":
        return None
    m = _number(opts["margin"])
    return None if m is None else (m,)


def _kl_params(opts, k, dt):
    lp, lt = opts["log_prediction"], opts["log_target"]
    if type(lp) is not bool or type(lt) is not bool:
        return None
    return (float(lp), float(lt))


def _softmax_kl_params(opts, k, dt):
    temp = _number(opts["temperature"])
    tl, sc = opts["target_is_logits"], opts["scale_by_temperature_squared"]
    if temp is None or temp <= 0 or type(tl) is not bool or type(sc) is not bool:
        return None
    return (temp, float(tl), temp * temp if sc else 1.0)


def _focal_params(opts, k, dt):
    """(gamma, has_alpha, alpha_0 .. alpha_{K-1}): alpha None, a number or (K,) factors,
    rounded to the prediction's dtype as the generic path computes in it."""
    gamma = _number(opts["gamma"], 0.0)
    alpha = opts["alpha"]
    if gamma is None:
        return None
    if alpha is None:
        return (gamma, 0.0)
    if type(alpha) in (int, float):
        a = _number(alpha, 0.0)
        if a is None:
            return None
        vec = np.full(k, float(dt.type(a)))
    elif type(alpha) is np.ndarray and alpha.ndim == 0:
        vec = _weights(alpha, (), dt)
        if vec is None:
            return None
        vec = np.full(k, vec[0])
    else:
        vec = _weights(alpha, (k,), dt)
        if vec is None:
            return None
    return (gamma, 1.0, *vec.tolist())


def _poly_params(opts, k, dt):
    s = _smoothing(opts, k, dt)
    eps = _number(opts["epsilon"], -1.0)
    return None if s is None or eps is None else (s[0], eps)


def _gce_params(opts, k, dt):
    q = _number(opts.get("q", 0.5), 0.0, 1.0)
    return None if q is None or q == 0.0 else (q,)


def _margin_params(opts, k, dt):
    m = _number(opts.get("margin", 1.0))
    return None if m is None else (m,)


def _sparsemax_params(opts, k, dt):
    """(the tolerance of a target row's sum, as ``core.validation.check_sums_to_one``)"""
    return (sums_to_one_tolerance(np, dt, k),)


_SPECS = {
    "softmax_cross_entropy": RowSpec("softmax_ce", True, True, True, _smoothing),
    "nll_loss": RowSpec("nll", True, True, True, _smoothing),
    "cross_entropy": RowSpec("cross_entropy", True, True, True, _xent_params),
    "brier_score": RowSpec("brier", True, True, True, _no_params),
    "multiclass_hinge": RowSpec("multiclass_hinge", True, False, True, _hinge_params),
    "kl_divergence": RowSpec("kl", False, True, False, _kl_params),
    "softmax_kl_divergence": RowSpec("softmax_kl", False, True, False, _softmax_kl_params),
    "js_divergence": RowSpec("js", False, True, False, _no_params),
    "softmax_focal_loss": RowSpec("softmax_focal", True, True, True, _focal_params),
    "poly_loss": RowSpec("poly", True, True, True, _poly_params),
    "multiclass_sparsemax_loss": RowSpec("sparsemax", True, True, True, _sparsemax_params),
    "generalized_cross_entropy": RowSpec("generalized_cross_entropy", True, True, True,
                                         _gce_params),
    "multiclass_perceptron": RowSpec("multiclass_perceptron", True, False, True, _no_params),
    "multilabel_margin": RowSpec("multilabel_margin", False, True, False, _margin_params,
                                 index_target=True),
    "multilabel_soft_margin": RowSpec("multilabel_soft_margin", False, True, False,
                                      _no_params),
}


def _weights(v, shape, dt):
    """Class or sample weights as float64 (rounded to the prediction's dtype first, as the
    generic path computes in it), of exactly ``shape``; None when unusual or not finite
    and non-negative (the generic path raises, or propagates NaN)."""
    if type(v) is np.ndarray:
        a = v
    elif type(v) in (list, tuple):
        a = np.asarray(v)
    else:
        return None
    if a.dtype.kind not in "iuf" or a.shape != shape:
        return None
    a = a.astype(dt).astype(np.float64).reshape(-1)
    if a.size and not (np.isfinite(a).all() and a.min() >= 0):
        return None
    return a


_PAR_CACHE: dict = {}
_ZERO_LABEL = np.zeros(1, dtype=_INTP)


def _par_array(params):
    """The row function's parameters as a float64 array (made once per distinct tuple)."""
    a = _PAR_CACHE.get(params)
    if a is None:
        if len(_PAR_CACHE) > 256:
            _PAR_CACHE.clear()
        a = _PAR_CACHE[params] = np.array(params, dtype=np.float64)
        a.flags.writeable = False
    return a


def _label_weights(labels, ignore, cw, k):
    """Per-row label weights w_{y_n} (class weight or 1; 0 when ignored) for the NumPy
    engine, or None when a label that is not ignored lies outside [0, K)."""
    keep = None if ignore is None else labels != ignore
    inside = (labels >= 0) & (labels < k)
    if not (inside.all() if keep is None else (inside | ~keep).all()):
        return None
    w = cw[np.where(inside, labels, 0)] if cw.size else np.ones(labels.shape[0])
    if keep is not None:
        w[~keep] = 0.0
    return w


# --------------------------------------------------------------------------- the driver
def run(spec: RowSpec, loss, arrays, reduction, sample_weight, opts, want, out):
    """The fused value and gradient of a row-family loss, or ``NotImplemented``."""
    if len(arrays) != 2:
        return NotImplemented
    z, y = arrays
    if type(z) is not np.ndarray or type(y) is not np.ndarray:
        return NotImplemented
    dt = z.dtype
    if (dt is not _F32 and dt is not _F64) or z.ndim == 0 or z.size == 0:
        return NotImplemented
    axis = opts.get("axis", -1)
    if type(axis) is not int or (axis != -1 and axis != z.ndim - 1):
        return NotImplemented
    need_grad = want != "value"
    if need_grad and out is not None and not _out_ok(out, z):
        return NotImplemented
    k = z.shape[-1]
    params = spec.params(opts, k, dt)
    if params is None:
        return NotImplemented
    rows_shape = z.shape[:-1]
    n = z.size // k

    # ---- the target
    ignore = opts.get("ignore_index")
    cw_opt = opts.get("class_weight")
    if spec.labels and y.dtype.kind in "iu" and y.shape == rows_shape:
        if y.dtype.kind == "u" and y.dtype.itemsize == 8:
            return NotImplemented  # would wrap around in intp
        if ignore is not None and (type(ignore) is not int
                                   or not -(1 << 63) <= ignore < (1 << 63)):
            return NotImplemented
        labels = y.reshape(-1)
        if (labels.dtype is not _INTP or not labels.flags.c_contiguous
                or not labels.flags.writeable):  # one numba build for every call
            labels = np.array(labels, dtype=_INTP)
        has_t, t2 = False, _DUMMY2[dt.char]
    elif spec.same and y.shape == z.shape and (
            y.dtype.kind == "f" if not spec.index_target else
            (y.dtype.kind in "iu" and (dt is _F64 or k <= 1 << 24))):
        if ignore is not None:
            return NotImplemented  # the generic path raises
        labels = _ZERO_LABEL
        has_t = True
        if spec.index_target and y.dtype is _INTP and y.flags.c_contiguous:
            t2 = y.reshape(n, k)  # class indices read as they are: no float copy
        else:
            t2 = np.ascontiguousarray(y, dtype=dt).reshape(n, k)
    else:
        return NotImplemented
    if cw_opt is None:
        cw = _EMPTY64
    else:
        cw = _weights(cw_opt, (k,), dt)
        if cw is None:
            return NotImplemented
    if sample_weight is None:
        sw = None
    else:
        if type(sample_weight) is np.ndarray and sample_weight.ndim == 1 \
                and len(rows_shape) > 1 and sample_weight.shape[0] == rows_shape[0]:
            sample_weight = np.broadcast_to(
                sample_weight.reshape((-1,) + (1,) * (len(rows_shape) - 1)), rows_shape)
        sw = _weights(sample_weight, rows_shape, dt)
        if sw is None:
            return NotImplemented

    # ---- the reduction's scale (a weighted mean's: found by the kernel's label pass)
    batch = rows_shape[0] if rows_shape else 1
    weighted_mean = reduction == "mean" and spec.weighted and not has_t
    if reduction == "mean":
        total = float(sw.sum()) if sw is not None else float(n)
        scale = 1.0 / total if total else 0.0
    elif reduction == "batchmean":
        scale = 1.0 / batch if batch else 0.0
    else:
        scale = 1.0
    has_ignore = ignore is not None

    z2 = z if z.ndim == 2 and z.flags.c_contiguous else np.ascontiguousarray(z).reshape(n, k)
    g, copy_to = _gradient_target(need_grad, out, z, arrays)
    # per-row values only when they are the result (the kernel sums blocks of rows)
    values = np.empty(n if reduction == "none" else 0, dtype=np.float64)
    nb = _fp.family_numba("rows_numba") if spec.row is not None else None
    res = None
    if nb is not None:
        parallel, serial = nb.kernels(spec.row)
        kernel = parallel if z.size >= _fp.PARALLEL_MIN else serial
        res = _kernel(nb, kernel, z2, labels, ignore if has_ignore else 0, has_ignore, t2,
                      has_t, cw, _par_array(params), _ONE64 if sw is None else sw,
                      sw is not None, weighted_mean, scale,
                      g.reshape(n, k) if need_grad else nb.scratch_rows(n, k, dt), values,
                      need_grad)
    if res is not None:
        bad, total_value, scale = res
        if bad:
            return NotImplemented
        engine = "numba"
    else:
        if values.shape[0] != n:
            values = np.empty(n, dtype=np.float64)  # the NumPy engine's per-row values
        if not has_t:
            w = _label_weights(labels, ignore, cw, k)
            if w is None:
                return NotImplemented  # the generic path raises the label error
            if reduction == "mean" and spec.weighted:
                total = float(np.dot(w, sw)) if sw is not None else float(w.sum())
                scale = 1.0 / total if total else 0.0
        total_value = _numpy_engine(loss, z2, y, has_t, n, k, opts, sw, scale,
                                    g.reshape(n, k) if need_grad else None, values)
        if total_value is None:
            return NotImplemented
        engine = "numpy"
    STATS[loss.name, engine] += 1
    if reduction in ("mean", "batchmean"):
        if scale == 0.0:
            total_value = 0.0  # a mean over nothing
        final_scale = scale
    else:
        final_scale = None
    return _result(want, reduction, dt, total_value,
                   values.reshape(rows_shape) if values.shape[0] == n else values, final_scale,
                   g, copy_to)


def _numpy_engine(loss, z2, y, has_t, n, k, opts, sw, scale, g, values):
    """The loss's own generic kernel on blocks of rows: the float64 sum of the (sample
    weighted) values, or None when a block raised (the generic path then reruns on the
    whole input, so that its message describes all of it)."""
    from ..core.validation import deferred_checks

    dt = z2.dtype
    ctx = _fp.numpy_context(loss, dt)
    opts = dict(opts)
    if "axis" in opts:
        opts["axis"] = -1
    t = y.reshape(n, k) if has_t else y.reshape(-1)
    rows = max(1, ROW_BLOCK // k)
    total = 0.0
    with np.errstate(all="ignore"):
        for r0 in range(0, n, rows):
            r1 = min(r0 + rows, n)
            try:
                with deferred_checks() as pending:  # validate=False: failed checks recorded
                    terms = loss._compute(ctx, z2[r0:r1], t[r0:r1], need_grad=g is not None,
                                          **opts)
            except (TypeError, ValueError):
                return None
            if any(np.any(p) for p in pending):
                return None  # the generic path poisons the whole result
            v = np.asarray(terms.value, dtype=np.float64)
            if sw is not None:
                s = sw[r0:r1]
                v = np.where(s == 0, 0.0, s * v)
            values[r0:r1] = v
            total += float(v.sum())
            if g is not None:
                f = np.full(r1 - r0, scale) if sw is None else sw[r0:r1] * scale
                gb = g[r0:r1]
                np.multiply(terms.grad, f.astype(dt)[:, None], out=gb)
                zero = f == 0
                if zero.any():
                    gb[zero] = 0
    return total


# --------------------------------------------------------------------------- the losses
def _fast(name):
    spec = _SPECS[name]

    def kernel(loss, arrays, reduction, sample_weight, opts, want, out):
        return run(spec, loss, arrays, reduction, sample_weight, opts, want, out)

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = f"The row-family fast path of ``{name}`` (see :func:`run`)."
    return kernel


def softmax_cross_entropy(loss, arrays, reduction, sample_weight, opts, want, out):
    """Softmax cross-entropy: the tuned kernel of :mod:`fast_paths` for plain integer
    labels, the row family for everything else (class weights, smoothing, soft targets,
    sample weights)."""
    result = _fp.softmax_cross_entropy(loss, arrays, reduction, sample_weight, opts, want, out)
    if result is NotImplemented:
        result = run(_SPECS["softmax_cross_entropy"], loss, arrays, reduction, sample_weight,
                     opts, want, out)
    return result


def softmax_cross_entropy_second_order(loss, arrays, reduction, sample_weight, opts, want):
    """``hessian`` / ``grad_and_hessian`` of the softmax cross-entropy with plain integer
    labels along the last axis (``ignore_index``; no class weights or smoothing): the
    gradient ``p - onehot`` and the Hessian's diagonal ``p (1 - p)`` in one numba pass over
    the rows (:func:`~losskit.kernels.rows_numba.softmax_ce_second_order`), scaled by the
    reduction; an ignored row's are 0. For gradient boosting's multiclass objectives.
    Without numba, or for anything else: ``NotImplemented`` (the generic path)."""
    if (sample_weight is not None or want not in ("hessian", "grad_and_hessian")
            or len(arrays) != 2):
        return NotImplemented
    z, y = arrays
    if _fp.plain_integer_labels(z, y, opts, any_layout=True) is None:
        return NotImplemented
    ignore = opts["ignore_index"]
    nb = _fp._nb()
    if nb is None:
        return NotImplemented
    k = z.shape[-1]
    labels = y.reshape(-1).astype(np.int64, copy=False)
    keep = None if ignore is None else labels != ignore
    valid = labels if keep is None else labels[keep]
    if valid.size and (valid.min() < 0 or valid.max() >= k):
        return NotImplemented  # the generic path raises
    # column-major (N, K) scores, as LightGBM passes them (and flattens the results back
    # in that order), are read and written in place: no copy either way
    column_major = z.ndim == 2 and z.flags.f_contiguous and not z.flags.c_contiguous
    z2 = z if column_major else np.ascontiguousarray(z.reshape(-1, k))
    count = 0  # the mean's denominator: the rows that take part
    if reduction == "mean":
        count = labels.shape[0] if keep is None else int(np.count_nonzero(keep))
    scale = _fp._scale(reduction, count, z.shape[0] if z.ndim > 1 else 1)
    want_grad = want == "grad_and_hessian"
    from . import rows_numba

    if column_major:  # class-major sweeps over the C-contiguous transposes (k, n)
        kernel, zk = rows_numba.softmax_ce_second_order_columns, z2.T
    else:
        kernel, zk = rows_numba.softmax_ce_second_order, z2
    hk = _fp._fresh(zk)  # from the gradient cache, as the first-order gradients
    gk = _fp._fresh(zk) if want_grad else hk
    done = _fp._kernel(nb, kernel, zk, labels, 0 if ignore is None else ignore,
                       ignore is not None, 1.0 if scale is None else scale, gk, hk,
                       want_grad)
    if done is None:  # numba could not compile it here
        return NotImplemented
    _fp.STATS[loss.name, "numba"] += 1
    h = hk.T if column_major else hk.reshape(z.shape)
    if not want_grad:
        return h
    return (gk.T if column_major else gk.reshape(z.shape)), h


nll_loss = _fast("nll_loss")
cross_entropy = _fast("cross_entropy")
brier_score = _fast("brier_score")
multiclass_hinge = _fast("multiclass_hinge")
kl_divergence = _fast("kl_divergence")
softmax_kl_divergence = _fast("softmax_kl_divergence")
js_divergence = _fast("js_divergence")
softmax_focal_loss = _fast("softmax_focal_loss")
poly_loss = _fast("poly_loss")
multiclass_sparsemax_loss = _fast("multiclass_sparsemax_loss")
generalized_cross_entropy = _fast("generalized_cross_entropy")
multiclass_perceptron = _fast("multiclass_perceptron")
multilabel_margin = _fast("multilabel_margin")
multilabel_soft_margin = _fast("multilabel_soft_margin")
