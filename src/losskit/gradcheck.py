r"""Check an analytic gradient against central finite differences, in float64.

:func:`gradcheck` is the routine losskit's own test-suite runs on every loss, and the
one a user runs on a loss (or any function) they wrote themselves: it compares the
closed-form gradient with central differences of the value, element by element, and is
aware of kinks (``|x|`` at 0, the hinge at its margin, ReLU at 0), where a subgradient is
a correct answer although no derivative exists.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from typing import Any, Callable

import array_api_compat
import numpy as np

from .core.validation import check_scalar
from .core.arrays import to_numpy

__all__ = ["gradcheck", "GradcheckResult"]

#: Kink-aware re-checks use a step this many times smaller (a power of two, so the
#: smaller steps are exact fractions of the first).
_REFINE = 16.0
#: How many times the step is refined for an element that fails at ``step``.
_LEVELS = 2
_F64_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True, eq=False)
class GradcheckResult:
    """The outcome of :func:`gradcheck`; ``bool(result)`` is ``result.ok``.

    Attributes
    ----------
    ok : bool
        Every element passed (directly, after refining the step, or as a subgradient at a
        kink).
    max_abs_error : float
        Largest absolute error :math:`|g_i - \\hat g_i|` against the reference each
        element was judged by (the central difference, or at a kink the distance to the
        interval of one-sided slopes, 0 inside it). ``inf`` for a non-finite analytic value.
    max_rel_error : float
        Largest :math:`|g_i - \\hat g_i| / \\max(|g_i|, |\\hat g_i|)` (0 where both are 0).
    worst_index : tuple of int, or None
        Index of the element that came closest to failing, or failed by the most: the
        largest ratio of its error to its tolerance ``atol + rtol * |reference|``.
        ``None`` for an empty array.
    analytic : numpy.ndarray
        The gradient under test, as float64, in the argument's shape.
    numeric : numpy.ndarray
        The central differences at ``step`` (before any kink handling), same shape.
    kinks : int
        Elements whose analytic value disagreed with the central difference at step
        ``step`` but were accepted because a kink lies within it: the analytic value
        is a valid subgradient (between the one-sided slopes) or matches the central
        difference at a smaller step (``step/16`` or ``step/256``).
    failed : int
        Number of elements that did not pass.
    step, rtol, atol : float
        The settings the check ran with.
    """

    ok: bool
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple | None
    analytic: np.ndarray
    numeric: np.ndarray
    kinks: int = 0
    failed: int = 0
    step: float = 1e-6
    rtol: float = 1e-5
    atol: float = 1e-8

    def __bool__(self) -> bool:
        return bool(self.ok)

    def _at_worst(self) -> str:
        if self.worst_index is None:
            return ""
        a = float(self.analytic[self.worst_index])
        n = float(self.numeric[self.worst_index])
        return f" at index {self.worst_index} (analytic {a:.6g}, numeric {n:.6g})"

    def __str__(self) -> str:
        size = self.analytic.size
        tol = f"rtol={self.rtol:g}, atol={self.atol:g}, step={self.step:g}"
        if self.worst_index is None:
            return f"gradcheck passed: nothing to check (empty argument; {tol})"
        errs = (f"max abs error {self.max_abs_error:.3g}, max rel error "
                f"{self.max_rel_error:.3g}")
        kinks = ""
        if self.kinks:
            kinks = f"; {self.kinks} element{'s' if self.kinks != 1 else ''} at a kink " \
                    "accepted as subgradient"
        if self.ok:
            return (f"gradcheck passed: {size} element{'s' if size != 1 else ''} agree with "
                    f"central differences ({errs}; worst{self._at_worst()}{kinks}; {tol})")
        return (f"gradcheck FAILED: {self.failed} of {size} element"
                f"{'s' if size != 1 else ''} disagree with central differences; worst"
                f"{self._at_worst()}; {errs}{kinks}; {tol}")

    def __repr__(self) -> str:
        return (f"GradcheckResult(ok={self.ok}, max_abs_error={self.max_abs_error:.3g}, "
                f"max_rel_error={self.max_rel_error:.3g}, worst_index={self.worst_index}, "
                f"kinks={self.kinks}, failed={self.failed})")


def _is_array(x: Any) -> bool:
    return array_api_compat.is_array_api_obj(x) and not isinstance(x, (bool, int, float, complex))


def _as_float64_or_keep(x: Any) -> Any:
    """Arrays of any library as NumPy: floating ones in float64, others (labels) as is."""
    if not _is_array(x):
        return x
    arr = np.asarray(to_numpy(x))
    if arr.dtype.kind in "f":
        return arr.astype(np.float64)
    return arr


def _differentiable(x: Any, where: str) -> np.ndarray:
    """The argument to differentiate, as a fresh float64 NumPy array."""
    if isinstance(x, (bool, np.bool_)) or isinstance(x, (int, np.integer)):
        raise TypeError(f"{where} must be floating-valued; got the integer {x!r}. "
                        f"Write it as a float (e.g. {float(x)!r})")
    if isinstance(x, (float, np.floating)):
        return np.asarray(float(x), dtype=np.float64)
    if _is_array(x):
        arr = np.asarray(to_numpy(x))
    elif isinstance(x, (list, tuple)):
        try:
            arr = np.asarray(x)
        except ValueError as exc:
            raise TypeError(f"{where} must be a float array or a (nested) list of floats; "
                            f"got a ragged {type(x).__name__}") from exc
    else:
        raise TypeError(f"{where} must be a float array, a list of floats or a float; got "
                        f"{type(x).__name__}")
    if arr.dtype.kind != "f":
        raise TypeError(
            f"{where} must be floating-valued; got dtype {arr.dtype}. Convert it explicitly "
            "(e.g. x.astype(float)): a derivative with respect to integers is undefined")
    return np.array(arr, dtype=np.float64, copy=True)


def _total(out: Any) -> float:
    """``fn``'s value as one float64 number (arrays are summed)."""
    if isinstance(out, (tuple, list, dict)) or out is None:
        raise TypeError("fn must return a number or an array (which is summed); got "
                        f"{type(out).__name__}")
    arr = np.asarray(to_numpy(out))
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"fn must return real numbers; got dtype {arr.dtype}")
    with np.errstate(all="ignore"):
        return float(np.sum(arr.astype(np.float64)))


def gradcheck(fn: Callable, *args: Any, wrt: int = 0, grad: Callable | None = None,
              step: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-8,
              order: int = 1, hessian: Callable | None = None,
              **kwargs: Any) -> GradcheckResult:
    r"""Compare an analytic gradient with central finite differences, in float64.

    Parameters
    ----------
    fn : callable
        ``fn(*args, **kwargs)`` returns a number or an array; an array is **summed** (so
        the gradient of a ``reduction="none"`` loss is the gradient of the sum, as in
        losskit's contract).
    *args
        Positional arguments of ``fn``. Arrays of any library (NumPy, PyTorch, JAX, ...)
        are converted to NumPy first: floating arrays to float64, integer and boolean
        arrays (labels) kept as they are. Python numbers, lists and other objects are
        passed through unchanged, except the argument being differentiated.
    wrt : int, default 0
        Position in ``args`` of the argument to differentiate (negative counts from the
        end). It must be a floating array, a list of floats or a float; ``fn`` and
        ``grad`` receive it as a float64 NumPy array (0-d for a float).
    grad : callable, optional
        ``grad(*args, **kwargs)`` returns the analytic gradient with respect to
        ``args[wrt]``, of its shape. Default: ``fn.grad`` (every losskit ``Loss`` has it),
        with ``wrt=`` the name of input ``wrt`` for a ``Loss`` whose ``differentiable``
        inputs include it (e.g. the ``var`` of ``gaussian_nll``); any other function with
        ``wrt != 0`` needs ``grad=``.
    step : float, default 1e-6
        Relative step: element :math:`i` moves by
        :math:`h_i = \text{step}\cdot\max(1, |x_i|)`. (Not called ``eps``: many losses
        have an ``eps`` option of their own, and it must reach them.)
    rtol, atol : float, default 1e-5, 1e-8
        Element :math:`i` passes when :math:`|g_i - \hat g_i| \le \text{atol} +
        \text{rtol}\,|\hat g_i|` (the convention of ``numpy.isclose``).
    order : {1, 2}, default 1
        2 checks the **Hessian's diagonal** instead: the analytic
        :math:`\partial^2 f / \partial x_i^2` (``hessian=``, default ``fn.hessian``)
        against central differences of the analytic gradient (``grad=``, default
        ``fn.grad``): element :math:`i` of :math:`(g(x + h_i e_i) - g(x - h_i e_i)) / 2h_i`,
        with the same tolerances and kink handling (a kink of the gradient, e.g. Huber's
        at :math:`|d| = \delta`, accepts any value between the one-sided slopes). Only
        ``wrt=0``. The result's ``analytic`` and ``numeric`` are the diagonals.
    hessian : callable, optional
        With ``order=2``: ``hessian(*args, **kwargs)`` returns the diagonal of the Hessian,
        of the argument's shape. Default: ``fn.hessian`` (a losskit ``Loss``).
    **kwargs
        Keyword arguments of ``fn`` (and ``grad``); arrays among them are converted like
        ``args``.

    Returns
    -------
    GradcheckResult
        ``ok``, ``max_abs_error``, ``max_rel_error``, ``worst_index``, the ``analytic``
        and ``numeric`` arrays and the number of ``kinks`` accepted; ``bool(result)`` is
        ``result.ok`` and ``print(result)`` explains it.

    Raises
    ------
    TypeError
        ``fn`` or ``grad`` not callable, ``fn`` without ``.grad`` and no ``grad=``, or a
        non-floating argument to differentiate.
    IndexError
        ``wrt`` outside ``args``.
    ValueError
        ``wrt != 0`` without ``grad=``, ``step`` not positive, a negative tolerance, a
        gradient of the wrong shape, or ``fn`` not finite at ``args``.

    Notes
    -----
    With :math:`f` the (summed) value and :math:`e_i` the :math:`i`-th unit vector, the
    central difference

    .. math::

        \hat g_i = \frac{f(x + h_i e_i) - f(x - h_i e_i)}{2 h_i}
                 = \frac{\partial f}{\partial x_i} + \frac{h_i^2}{6}
                   \frac{\partial^3 f}{\partial x_i^3} + O(h_i^4)

    has a truncation error of :math:`O(h^2)`, against :math:`O(h)` for a one-sided
    difference; its rounding error is about :math:`\varepsilon |f| / h`, which the
    default step of :math:`10^{-6}` balances for float64 [1]_. The steps are made exactly
    representable (:math:`(x + h) - x` is used as the step), and every evaluation is in
    float64 whatever the caller's dtype, so a float32 loss is checked through its
    float64 formula.

    **Kinks.** At a point where :math:`f` is not differentiable (``|x|`` at 0, the hinge
    at its margin, ReLU at 0) the central difference is the average of the two one-sided
    slopes and need not match a perfectly good subgradient. An element that fails the
    central test is therefore re-examined with steps 16 and 256 times smaller. At each,
    it passes if the central difference there agrees (the kink lies between the two
    steps), or if the one-sided slopes :math:`s_\pm` still disagree beyond tolerance
    *and* their gap shrank less than 4-fold with the 16-fold smaller step (for a smooth
    function the gap is :math:`h |f''|` and shrinks 16-fold; for a kink within the step it
    does not), and the analytic value lies in :math:`[\min(s_+, s_-), \max(s_+, s_-)]`,
    the valid subgradients of a one-dimensional kink. Such elements are counted in
    ``kinks``; a small error at a smooth point is not excused as a kink.
    A subgradient that happens to equal the average (``sign(0) = 0`` for ``|x|``)
    passes the plain test and is not counted.

    A non-finite analytic value where the central difference is finite fails. Where the
    central difference is not finite (a step leaves the domain of ``fn``) the element
    fails unless the analytic value is the same infinity.

    The cost is :math:`2n + 1` evaluations of ``fn`` for :math:`n` elements (up to four
    more per element re-examined): use small arrays.

    References
    ----------
    .. [1] J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed., Springer,
       2006, sec. 8.1 "Finite-difference derivative approximations".
       :doi:`10.1007/978-0-387-40065-5`

    Examples
    --------
    A user's own function and its hand-derived gradient:

    >>> import numpy as np
    >>> from losskit.gradcheck import gradcheck
    >>> def f(x):
    ...     return np.sum(x ** 3)
    >>> x = np.array([0.5, -1.0, 2.0])
    >>> result = gradcheck(f, x, grad=lambda x: 3 * x ** 2)
    >>> result.ok, result.kinks
    (True, 0)
    >>> np.round(result.numeric, 6)
    array([ 0.75,  3.  , 12.  ])

    A wrong gradient (the power rule forgotten) is caught, and the worst element named:

    >>> bad = gradcheck(f, x, grad=lambda x: 3 * x)
    >>> bad.ok, bad.worst_index, bad.failed
    (False, (1,), 3)

    ReLU has no derivative at 0; any subgradient in ``[0, 1]`` is accepted there:

    >>> relu = lambda x: np.sum(np.maximum(x, 0.0))
    >>> gradcheck(relu, np.array([0.0, 1.5]), grad=lambda x: (x > 0) * 1.0).kinks
    1

    Second order: the Hessian's diagonal against differences of the gradient (a losskit
    loss brings both, ``.grad`` and ``.hessian``):

    >>> gradcheck(f, x, grad=lambda x: 3 * x ** 2, hessian=lambda x: 6 * x, order=2).ok
    True
    >>> import losskit as lk
    >>> bool(gradcheck(lk.softmax_cross_entropy, np.array([[1., 2., 0.5]]), np.array([1]),
    ...                order=2))
    True
    """
    if not callable(fn):
        raise TypeError(f"`fn` must be callable; got {type(fn).__name__}")
    if isinstance(order, (bool, np.bool_)) or order not in (1, 2):
        raise ValueError(f"`order` must be 1 (the gradient) or 2 (the Hessian's diagonal); "
                         f"got {order!r}")
    if hessian is not None and not callable(hessian):
        raise TypeError(f"`hessian` must be callable or None; got {type(hessian).__name__}")
    if hessian is not None and order != 2:
        raise ValueError("`hessian` is checked with order=2; pass order=2 as well")
    if grad is not None and not callable(grad):
        raise TypeError(f"`grad` must be callable or None; got {type(grad).__name__}")
    if isinstance(wrt, (bool, np.bool_)):
        raise TypeError("`wrt` must be an int (the position of the argument to "
                        "differentiate); got a bool")
    try:
        wrt_i = operator.index(wrt)
    except TypeError:
        raise TypeError("`wrt` must be an int (the position of the argument to "
                        f"differentiate); got {type(wrt).__name__}") from None
    if not args:
        raise ValueError("gradcheck needs at least one positional argument: the point to "
                         "differentiate at, e.g. gradcheck(fn, x)")
    n_args = len(args)
    if not -n_args <= wrt_i < n_args:
        raise IndexError(f"`wrt` must index one of the {n_args} positional argument"
                         f"{'s' if n_args != 1 else ''} (0 to {n_args - 1}); got {wrt_i}")
    wrt_i %= n_args
    h_rel = check_scalar("step", step, lo=0.0, lo_open=True)
    if math.isinf(h_rel):
        raise ValueError(f"`step` must be finite; got {step!r}")
    rtol_f = check_scalar("rtol", rtol, lo=0.0)
    atol_f = check_scalar("atol", atol, lo=0.0)
    if order == 2 and wrt_i != 0:
        raise ValueError("order=2 checks the Hessian with respect to the first argument "
                         f"only (wrt=0); got wrt={wrt_i}")
    if grad is None and wrt_i != 0:
        # a losskit Loss differentiates any of its `differentiable` inputs: .grad(wrt=name)
        names = getattr(fn, "inputs", ())
        if wrt_i < len(names) and names[wrt_i] in getattr(fn, "differentiable", ()):
            name = names[wrt_i]
            grad = functools.partial(fn.grad, wrt=name)
    if grad is None:
        if wrt_i != 0:
            raise ValueError(
                f"wrt={wrt_i} needs grad=: `fn.grad` is the gradient with respect to the "
                f"first argument only; pass grad=, a callable returning the gradient with "
                f"respect to args[{wrt_i}]")
        grad = getattr(fn, "grad", None)
        if not callable(grad):
            raise TypeError(f"{getattr(fn, '__name__', type(fn).__name__)!s} has no `.grad` "
                            "method; pass grad=, a callable returning the analytic gradient")

    where = "the argument to differentiate" + (f" (args[{wrt_i}])" if n_args > 1 else "")
    x0 = _differentiable(args[wrt_i], where)
    base = [_as_float64_or_keep(a) for a in args]
    kw = {k: _as_float64_or_keep(v) for k, v in kwargs.items()}

    def call(f: Callable, x: np.ndarray) -> Any:
        a = list(base)
        a[wrt_i] = x.copy()
        return f(*a, **kw)

    f0 = _total(call(fn, x0))
    if not math.isfinite(f0):
        raise ValueError(f"fn(*args) is {f0} at the point being checked; gradcheck needs a "
                         "finite value there")
    if order == 2:  # differentiate the gradient, element by element
        if hessian is None:
            hessian = getattr(fn, "hessian", None)
            if not callable(hessian):
                raise TypeError(f"{getattr(fn, '__name__', type(fn).__name__)!s} has no "
                                "`.hessian` method; pass hessian=, a callable returning the "
                                "diagonal of the Hessian")
        first, grad = grad, hessian

        def component(x: np.ndarray, i: int) -> float:
            out = np.asarray(to_numpy(call(first, x)), dtype=np.float64)
            if out.shape != x0.shape:
                raise ValueError(f"the gradient has shape {out.shape}, but {where} has "
                                 f"shape {x0.shape}: they must match")
            return float(out.reshape(-1)[i])
    else:
        def component(x: np.ndarray, i: int) -> float:
            return _total(call(fn, x))
    g_raw = call(grad, x0)
    if isinstance(g_raw, (tuple, list)):
        raise TypeError("the gradient must be an array of the argument's shape; got a "
                        f"{type(g_raw).__name__} (did `grad` return (value, grad)?)")
    g = np.asarray(to_numpy(g_raw))
    if g.dtype.kind not in "biuf":
        raise TypeError(f"the gradient must be real-valued; got dtype {g.dtype}")
    g = g.astype(np.float64)
    if g.shape != x0.shape:
        raise ValueError(f"the gradient has shape {g.shape}, but {where} has shape "
                         f"{x0.shape}: they must match")

    n = x0.size
    flat0 = x0.reshape(-1)
    ga = g.reshape(-1)
    work = x0.copy()
    wflat = work.reshape(-1)

    f_at_x0 = f0
    # the differentiated quantity at x0: f(x0), or (order 2) the whole gradient, once
    if order == 2:
        g0_flat = np.asarray(to_numpy(call(first, x0)), dtype=np.float64).reshape(-1)
        base_values = {i: float(v) for i, v in enumerate(g0_flat)} if g0_flat.size == n \
            else {}
    else:
        base_values = {}

    def probe(i: int, h: float) -> tuple[float, float, float, float]:
        """(central, right slope, left slope, rounding noise) at element i, step h."""
        f0 = f_at_x0 if order == 1 else base_values.get(i)
        if f0 is None:
            f0 = base_values[i] = component(x0, i)
        xi = float(flat0[i])
        xp_, xm_ = xi + h, xi - h
        wflat[i] = xp_
        fp = component(work, i)
        wflat[i] = xm_
        fm = component(work, i)
        wflat[i] = xi
        with np.errstate(all="ignore"):
            central = (fp - fm) / (xp_ - xm_)
            right = (fp - f0) / (xp_ - xi)
            left = (f0 - fm) / (xi - xm_)
        # rounding error of a one-sided slope is about eps * |f| / h; 4x for safety
        fmax = max(abs(f0), abs(fp), abs(fm))
        noise = 4.0 * _F64_EPS * fmax / h if math.isfinite(fmax) else math.inf
        return central, right, left, noise

    numeric = np.empty(n, dtype=np.float64)
    ref = np.empty(n, dtype=np.float64)  # what each element is judged against
    abs_err = np.empty(n, dtype=np.float64)
    passed = np.zeros(n, dtype=bool)
    kinks = 0
    for i in range(n):
        h = h_rel * max(1.0, abs(float(flat0[i])))
        c, right, left, noise = probe(i, h)
        a = float(ga[i])
        numeric[i] = c
        ref[i] = c
        if not math.isfinite(c):
            passed[i] = (math.isinf(c) and a == c)
            abs_err[i] = 0.0 if passed[i] else math.inf
            continue
        if not math.isfinite(a):
            abs_err[i] = math.inf
            continue
        err = abs(a - c)
        abs_err[i] = err
        if err <= atol_f + rtol_f * abs(c):
            passed[i] = True
            continue
        # Re-examine with steps h/16 and h/256: a kink within the step, or a kink (or
        # strong curvature) that a finer step resolves.
        gap = abs(right - left)
        kink_at_h = gap > atol_f + rtol_f * max(abs(right), abs(left)) + noise
        prev_gap, hk = gap, h
        for _ in range(_LEVELS):
            hk /= _REFINE
            ck, rk, lk, nk = probe(i, hk)
            if math.isfinite(ck) and abs(a - ck) <= atol_f + rtol_f * abs(ck):
                passed[i] = True
                ref[i] = ck
                abs_err[i] = abs(a - ck)
                kinks += bool(kink_at_h)
                break
            if not (math.isfinite(rk) and math.isfinite(lk)):
                break
            gap_k = abs(rk - lk)
            tol_k = atol_f + rtol_f * max(abs(rk), abs(lk))
            # a smooth function's gap h|f''| shrinks 16-fold with the step; a kink's does not
            if gap_k > tol_k + nk and gap_k > prev_gap / 4.0:
                lo, hi = min(rk, lk), max(rk, lk)
                dist = max(lo - a, a - hi, 0.0)
                if dist <= tol_k:
                    passed[i] = True
                    kinks += 1
                    ref[i] = min(max(a, lo), hi)
                    abs_err[i] = dist
                break
            prev_gap = gap_k

    with np.errstate(all="ignore"):
        denom = np.maximum(np.abs(ga), np.abs(np.where(np.isfinite(ref), ref, 0.0)))
        finite_err = np.isfinite(abs_err)
        rel_err = np.where(abs_err == 0.0, 0.0,
                           np.where(finite_err, abs_err / np.where(denom > 0, denom, 1.0),
                                    np.inf))
        tol = atol_f + rtol_f * np.abs(np.where(np.isfinite(ref), ref, 0.0))
        score = np.where(abs_err == 0.0, 0.0,
                         abs_err / np.maximum(tol, np.finfo(np.float64).tiny))
    failed = int(n - np.count_nonzero(passed))
    if n == 0:
        worst = None
    else:
        # the failure with the largest error-to-tolerance ratio; if none failed, the
        # element closest to failing
        k = int(np.argmax(np.where(passed, -1.0, score) if failed else score))
        worst = tuple(int(j) for j in np.unravel_index(k, x0.shape))
    return GradcheckResult(
        ok=failed == 0,
        max_abs_error=float(np.max(abs_err)) if n else 0.0,
        max_rel_error=float(np.max(rel_err)) if n else 0.0,
        worst_index=worst,
        analytic=g,
        numeric=numeric.reshape(x0.shape),
        kinks=kinks,
        failed=failed,
        step=h_rel,
        rtol=rtol_f,
        atol=atol_f,
    )
