r"""The fast path of the pointwise family: one driver for every elementwise loss.

A pointwise loss (prediction and target of one shape, the loss of each element a function
of that element alone) states its math once, as a :class:`~losskit.core.formula.Formula`;
its generic kernel (``Loss._compute``) evaluates the formula on any Array-API namespace,
and :func:`fast_path` turns the same formula into the fused NumPy kernel that the
pipeline consults (``register_fast_path(Huber, pointwise.fast_path(HUBER, ...))``):

* ``numba`` engine (:mod:`losskit.kernels.pointwise_numba`, imported on first use): the
  formula compiled per float type and inlined into one loop over blocks, value and
  gradient in one pass, blocks in ``prange`` from :data:`~losskit.kernels.fast_paths.PARALLEL_MIN`
  elements and a serial build below;
* ``numpy`` engine (``LOSSKIT_DISABLE_NUMBA=1``, ``fast_paths.USE_NUMBA = False``, or numba
  missing): ``formula.on(numpy)`` on chunks of :data:`~losskit.kernels.fast_paths.CHUNK`
  elements, so its temporaries stay in cache.

What it covers: the prediction a float32/float64 ``numpy.ndarray`` (not empty; a
non-contiguous one is copied), the target a NumPy array of the same shape (cast to the
prediction's dtype like the generic path; read-only and non-contiguous inputs are fine),
further arrays of the same shape where the loss declares them (``inputs=``: gaussian_nll's
variance), every reduction, ``out=``, the gradient with respect to the prediction (and,
for a loss that declares them with ``grads=``, with respect to its further differentiable
inputs, any ``wrt``, several gradients from one pass), the parameters
accepted by their validators (plain Python numbers and flags) and those computed from the
prediction's dtype (:func:`of_dtype`, e.g. :data:`machine_eps`). ``sample_weight`` is **not**
covered: a weighted call runs the generic path (whose rules for zero weights, ``(N,)``
weights and the weighted mean stay in one place). Anything else, an invalid input
included (a rejected parameter, a target the loss's ``check`` refuses), gives
``NotImplemented``, and the generic path runs and raises its own error. Sums are
accumulated in float64; the plumbing (gradient buffers, ``out=``, the gradient cache,
reductions, :data:`~losskit.kernels.fast_paths.STATS`) is :mod:`~losskit.kernels.fast_paths`'s.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..core.formula import Formula
from . import fast_paths as _fast

__all__ = ["fast_path", "number", "flag", "of_dtype", "machine_eps"]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_pw_numba = None  # the pointwise_numba module, once imported


def number(lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False,
           hi_open: bool = False) -> Callable[[Any], Any]:
    """A validator: a plain finite Python number in the interval (as a float), else None."""
    def validate(v):
        if type(v) not in (int, float):
            return None
        v = float(v)
        if not math.isfinite(v):
            return None
        if (v <= lo if lo_open else v < lo) or (v >= hi if hi_open else v > hi):
            return None
        return v
    return validate


def flag(v):
    """A validator: a Python bool, else None."""
    return v if type(v) is bool else None


def of_dtype(fn: Callable[[np.dtype], float]) -> Callable[..., Any]:
    """A parameter that is no option of the loss but a function of the prediction's float
    type (float32 or float64): ``fn(dtype)`` gives its value (see :data:`machine_eps`)."""
    def from_dtype(dt):
        return fn(dt)
    from_dtype.from_dtype = True
    return from_dtype


#: the machine epsilon of the prediction's dtype (a dtype-aware clamp, as ``ctx.eps``)
machine_eps = of_dtype(lambda dt: float(np.finfo(dt).eps))


def _numba_driver():
    global _pw_numba
    if _pw_numba is None:
        from . import pointwise_numba

        _pw_numba = pointwise_numba
    return _pw_numba


def fast_path(formula: Formula, params=(), check: Formula | None = None, *,
              inputs: tuple[str, ...] = (), grads: tuple[str, ...] = (),
              exact_dtype: tuple[str, ...] = (), flag_target: bool = False
              ) -> Callable[..., Any]:
    """The fast-path kernel of the pointwise loss whose math is ``formula``.

    ``params``: the formula's parameters, a tuple of names (each a finite plain number)
    or a dict ``name -> validator`` (:func:`number`, :func:`flag`, or any function
    returning the value to use or None to decline), or :func:`of_dtype` for a parameter
    computed from the prediction's dtype (:data:`machine_eps`). ``inputs``: the names of
    further arrays of the loss (after the target), each a formula argument between the
    target and the parameters, covered when it has exactly the prediction's shape (cast
    to its dtype like the target; a bool array, or any other shape, declines).
    ``grads``: the names (``loss.differentiable``) of the inputs after the prediction
    whose gradients the formula returns after the prediction's, in that order (the
    target or any of ``inputs``); the kernel then takes every ``wrt`` over them
    (``takes_wrt``); a gradient is covered only for an input of the prediction's dtype
    (the generic path answers another). ``exact_dtype``: the names of inputs that the
    loss refuses in another dtype than the prediction's (the generic path's TypeError):
    the kernel declines them, even when only the prediction's gradient is wanted.
    ``flag_target``: the formula only tests its target (``where(target, ...)``), so a bool
    target is read as it is (as uint8) instead of through a float copy of its size.
    ``check``: a Formula of the same arguments
    returning, per element, whether the inputs are valid (False anywhere: the generic path
    runs and raises). Register the result with
    :func:`~losskit.core.dispatch.register_fast_path`.
    """
    if not isinstance(params, dict):
        params = {name: number() for name in params}
    names = tuple(params)
    inputs = tuple(inputs)
    if inputs + names != tuple(formula.params):
        raise ValueError(f"{formula!r} takes the arguments {formula.params} after the target; "
                         f"got the inputs {inputs} and the parameters {names}")
    grads = tuple(grads)
    exact_dtype = tuple(exact_dtype)
    validators = tuple(params.values())
    derived = tuple(getattr(v, "from_dtype", False) for v in validators)
    any_derived = any(derived)
    n_arrays = 2 + len(inputs)
    numba_params: dict = {}  # (values, dtype) -> numba_parameters(values, dtype)
    # (dtype, inputs, flags, outputs) -> the driver's builds: a memo of what
    # pointwise_numba.kernels would look up (0.3-0.4 us of its calls saved per call)
    built: dict = {}

    def parameters(opts):
        """The formula's parameters from the options (None: one is not covered)."""
        values = []
        for name, valid, of_dt in zip(names, validators, derived):
            if of_dt:
                values.append(valid)  # computed below, once the dtype is known
                continue
            v = valid(opts[name])
            if v is None:
                return None
            values.append(v)
        return values

    def further_inputs(arrays, z, dt, g=None):
        """The arrays after the target, flat, cast like it (None: one is not covered);
        one sharing memory with the gradient ``g`` is read from a copy."""
        extra = []
        for x in arrays[2:]:
            if type(x) is not np.ndarray or x.dtype.kind == "b":
                return None
            x = _fast._same_shape_target(x, z, dt)
            if x is None:
                return None
            if g is not None and np.may_share_memory(x, g):
                x = x.copy()  # the gradient is written over it: read a copy
            extra.append(x.reshape(-1))
        return extra

    def numba_parameters(values, dt):
        """``(p, flags)`` for the numba drivers: the parameters in ``dt`` (the flags kept
        as bools) and the flags' (index, value) pairs, fixed in the build; remembered
        for the last few dozen parameter sets (a small call's budget is microseconds)."""
        key = (*values, dt.char)
        found = numba_params.get(key)
        if found is None:
            p = tuple(v if type(v) is bool else dt.type(v) for v in values)
            found = p, tuple((i, v) for i, v in enumerate(p) if type(v) is bool)
            if len(numba_params) > 64:
                numba_params.clear()
            numba_params[key] = found
        return found

    def outputs(loss, wrt):
        """The formula's results (1: the prediction's gradient, 2 + k: that of
        ``grads[k]``) wanted for ``wrt`` (None: one of them is not the formula's)."""
        if wrt is None:
            return (1,)
        wanted = []
        for i in (wrt if type(wrt) is tuple else (wrt,)):
            name = loss.differentiable[i]
            if i == 0:
                wanted.append(1)
            elif name in grads:
                wanted.append(2 + grads.index(name))
            else:
                return None
        return tuple(wanted)

    def kernel(loss, arrays, reduction, sample_weight, opts, want, out, wrt=None):
        if sample_weight is not None or len(arrays) != n_arrays:
            return NotImplemented
        several = type(wrt) is tuple
        outs = (1,) if wrt is None or want == "value" else outputs(loss, wrt)
        if outs is None or (several and out is not None):
            return NotImplemented
        values = parameters(opts)
        if values is None:
            return NotImplemented
        z = arrays[0]
        # inputs of the prediction's dtype: those the loss requires so, and those whose
        # gradient is wanted (the gradient has the input's dtype)
        same = exact_dtype
        if want != "value" and outs != (1,):
            same = same + tuple(grads[k - 2] for k in outs if k > 1)
        for name in same:
            x = arrays[loss.inputs.index(name)]
            if type(x) is not np.ndarray or type(z) is not np.ndarray or x.dtype != z.dtype:
                return NotImplemented
        if (type(z) is np.ndarray and not z.flags.c_contiguous and z.size
                and (z.dtype is _F32 or z.dtype is _F64)):
            z = np.ascontiguousarray(z)  # a strided view: one copy, then the fused loop
        t = arrays[1]
        flags_as_is = (flag_target and type(t) is np.ndarray and t.dtype == np.bool_
                       and t.flags.c_contiguous)
        e = _fast._elementwise((z, t.view(np.uint8) if flags_as_is else t), reduction,
                               None, want, out, target_as_is=flags_as_is)
        if e is None:
            return NotImplemented
        dt = e.dt
        # (a fresh gradient shares no memory with an input: only out= is checked)
        extra = further_inputs(arrays, e.z, dt, e.g if e.need_grad and out is not None
                               else None) if n_arrays > 2 else []
        if extra is None:
            return NotImplemented
        # the gradients after the first (several wrt): fresh buffers of the prediction's kind
        gx = gxf = ()
        if e.need_grad and len(outs) > 1:
            gx = tuple(_fast._fresh(e.z) for _ in outs[1:])
            gxf = tuple(g.reshape(-1) for g in gx)
        if any_derived:
            values = [v(dt) if of_dt else v for v, of_dt in zip(values, derived)]
        nb = _fast._nb()
        res = None
        if nb is not None:
            p, flags = numba_parameters(values, dt)
            key = (dt.char, len(extra), flags, outs)
            kernels = built.get(key)
            if kernels is None:
                kernels = built[key] = _numba_driver().kernels(formula, check, dt,
                                                               len(extra), flags, outs)
            res = e.run_numba(nb, kernels, nb.BLOCK, e.zf, e.tf, *extra, *gxf, p)
        if res is not None:
            bad, total = res
            engine = "numba"
        else:
            total = _numpy_engine(formula, check, values, e, extra, outs, gxf)
            bad = total is None
            engine = "numpy"
        if bad:
            return NotImplemented  # the generic path raises
        _fast.STATS[loss.name, engine] += 1
        if not several:
            return e.result(want, reduction, total)
        value = e.result("value", reduction, total)
        gradients = (e.g, *gx)
        return gradients if want == "grad" else (value, gradients)

    def second_order(loss, arrays, reduction, sample_weight, opts, want):
        """``hessian`` or ``grad_and_hessian`` fused: gradient and Hessian in one pass
        (the formula and ``formula.hessian``); what :func:`fast_path` covers, less
        ``out=``."""
        if (sample_weight is not None or len(arrays) != n_arrays
                or want not in ("hessian", "grad_and_hessian")):
            return NotImplemented
        values = parameters(opts)
        if values is None:
            return NotImplemented
        z = arrays[0]
        dt = _fast._float_prediction(z)
        if dt is None or not z.size:
            return NotImplemented
        if not z.flags.c_contiguous:
            z = np.ascontiguousarray(z)
        t = _fast._same_shape_target(arrays[1], z, dt)
        if t is None:
            return NotImplemented
        extra = further_inputs(arrays, z, dt)
        if extra is None:
            return NotImplemented
        if any(derived):
            values = [v(dt) if of_dt else v for v, of_dt in zip(values, derived)]
        scale = _fast._scale(reduction, z.size, z.shape[0] if z.ndim else 1)
        scale = 1.0 if scale is None else scale
        want_grad = want == "grad_and_hessian"
        # (from the gradient cache, as the first-order gradients: no page faults per call)
        g = _fast._fresh(z) if want_grad else _fast._DUMMY1[dt.char]
        h = _fast._fresh(z)
        zf, tf, gf, hf = z.reshape(-1), t.reshape(-1), g.reshape(-1), h.reshape(-1)
        nb = _fast._nb()
        bad = None
        if nb is not None:
            p, flags = numba_parameters(values, dt)
            kernels = _numba_driver().second_order_kernels(formula, check, dt, len(extra),
                                                           flags)
            k = kernels[0] if zf.shape[0] >= _fast.PARALLEL_MIN else kernels[1]
            bad = _fast._kernel(nb, k, zf, tf, *extra, p, scale, gf, hf, want_grad)
            engine = "numba"
        if bad is None:
            bad = not _numpy_second_order(formula, check, values, zf, tf, extra, scale,
                                          gf if want_grad else None, hf)
            engine = "numpy"
        if bad:
            return NotImplemented  # the generic path raises
        _fast.STATS[loss.name, engine] += 1
        return h if want == "hessian" else (g, h)

    kernel.__name__ = f"{formula.name}_fast_path"
    kernel.__qualname__ = kernel.__name__
    kernel.formula = formula
    kernel.elementwise = True  # (losskit.core.dispatch.register_fast_path)
    if grads:  # every wrt over the formula's gradients (losskit.core.dispatch)
        kernel.takes_wrt = True
    if formula.hessian is not None:
        second_order.__name__ = f"{formula.name}_second_order_fast_path"
        second_order.__qualname__ = second_order.__name__
        kernel.second_order = second_order
    return kernel


def _numpy_second_order(formula, check, params, z, t, extra, scale, g, h):
    """The second-order engine without numba, on cache-sized chunks; False when ``check``
    rejects an element."""
    f = formula.on(np)
    fh = formula.hessian.on(np)
    ok = check.on(np) if check is not None else None
    dt = z.dtype
    sc = dt.type(scale)
    chunk = _fast.CHUNK
    with np.errstate(all="ignore"):
        for lo in range(0, z.shape[0], chunk):
            hi = min(lo + chunk, z.shape[0])
            args = (z[lo:hi], t[lo:hi], *(x[lo:hi] for x in extra), *params)
            if ok is not None and not np.all(ok(*args)):
                return False
            if g is not None:
                np.multiply(f(*args)[1], sc, out=g[lo:hi], casting="unsafe")
            np.multiply(fh(*args), sc, out=h[lo:hi], casting="unsafe")
    return True


def _numpy_engine(formula, check, params, e, extra=(), outs=(1,), gx=()):
    """``formula.on(numpy)`` on cache-sized chunks: the float64 sum of the values, or None
    when ``check`` rejects an element. ``outs``: the formula's results written into the
    gradient ``e.gf`` and then into the further gradients ``gx``."""
    f = formula.on(np)
    ok = check.on(np) if check is not None else None
    z, t = e.zf, e.tf
    n = z.shape[0]
    dt = e.dt
    scale = dt.type(e.scale)
    g = e.gf if e.need_grad else None
    values = e.vf if e.values is not None else None
    chunk = _fast.CHUNK
    total = 0.0
    with np.errstate(all="ignore"):
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            args = (z[lo:hi], t[lo:hi], *(x[lo:hi] for x in extra), *params)
            if ok is not None and not np.all(ok(*args)):
                return None
            r = f(*args)
            v = r[0]
            if values is not None:
                values[lo:hi] = v
            if g is not None:
                np.multiply(r[outs[0]], scale, out=g[lo:hi], casting="unsafe")
                for k, gk in zip(outs[1:], gx):
                    np.multiply(r[k], scale, out=gk[lo:hi], casting="unsafe")
            total += float(np.add.reduce(v, axis=None, dtype=np.float64))
    return total
