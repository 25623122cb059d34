r"""Pointwise formulas: a loss's elementwise math, stated once, run on every engine.

A pointwise loss states its value and closed-form gradient as a plain Python function of
scalars (the design of scikit-learn's ``sklearn/_loss``: one per-element function per
loss, one loop per method), for example::

    def _huber(y, t, delta):
        d = y - t
        a = abs(d)
        q = minimum(a, delta)
        return 0.5 * (q * q) + delta * (a - q), sign(d) * q

It returns ``(value, d value / d y)`` (a formula may return further gradients after
those, for losses with several differentiable inputs). It may use arithmetic,
comparisons, ``&``/``|`` on comparisons, ``abs``, Python ``if`` on its *parameters* (never
on an array), module-level number constants and the functions this module exports:
:func:`where`, :func:`sign`, :func:`exp`, :func:`expm1`, :func:`expm1mx`, :func:`log`,
:func:`log1p`, :func:`log1p_unit`, :func:`xlogy`, :func:`sqrt`, :func:`tanh`,
:func:`maximum`, :func:`minimum`, :func:`isnan`, :func:`isfinite` and the constant
:data:`inf`. :func:`log1p_unit` is :func:`log1p` for an argument the formula knows to lie
in [0, 1] (or NaN): the same numbers, and the numba driver then skips the polynomial it
needs elsewhere. ``Formula(fn)`` then gives

* :meth:`Formula.on`: the same function evaluating elementwise on arrays of any
  Array-API namespace (NumPy, PyTorch, JAX, Dask, array-api-strict, ...). The function's
  code is rebound (``types.FunctionType(fn.__code__, globals)``) to globals in which those
  names are ``xp``-based implementations; a Python number in a branch of ``where`` (or in
  ``maximum``/``minimum``) becomes a 0-d array of the other argument's dtype and device, so
  a float32 input stays float32. At least one branch of a ``where`` must be an array.
  Cached per namespace. The generic path (``Loss._compute``) evaluates it on
  ``ctx.xp``.
* :meth:`Formula.scalar`: the same code compiled by numba as a scalar
  ``njit(inline="always")`` function, its globals rebound to numba-compilable scalar
  versions (a caller may pass faster ones, as :mod:`losskit.kernels.pointwise_numba`
  does), for one float type: every number literal of the code and every number constant
  it reads from its module become numbers of that type, so that float32 arithmetic stays
  float32 (and vectorises 8-wide) while float64 keeps its full constants. Built lazily:
  importing this module never imports numba.

NaN follows IEEE in both: comparisons with NaN are false, ``where`` picks the second
branch, ``minimum``/``maximum``/``sign`` propagate it.
"""

from __future__ import annotations

import math
import threading
import types
from typing import Any, Callable

__all__ = ["Formula", "where", "sign", "exp", "expm1", "expm1mx", "log", "log1p",
           "log1p_unit", "xlogy", "sqrt", "tanh", "maximum", "minimum", "isnan", "isfinite",
           "inf"]

#: +infinity (a number constant: a float of the input's type in the scalar builds)
inf = float("inf")

#: the names a formula may call, besides Python's own ``abs``
_FUNCTIONS = ("where", "sign", "exp", "expm1", "expm1mx", "log", "log1p", "log1p_unit",
              "xlogy", "sqrt", "tanh", "maximum", "minimum", "isnan", "isfinite")


def _reference(*args):  # pragma: no cover - placeholders, rebound by Formula
    raise TypeError("call a formula through Formula(fn).on(xp) or .scalar(): the bare "
                    "function has no array library")


# the placeholders the formulas import (``from ..core.formula import where, ...``)
where = sign = exp = expm1 = expm1mx = log = log1p = log1p_unit = xlogy = sqrt = tanh = \
    maximum = minimum = isnan = isfinite = _reference


# --------------------------------------------------------------------------- Array API
def _is_number(x) -> bool:
    """A Python int or float (not a bool, not a NumPy scalar, which acts as an array)."""
    return type(x) in (int, float)


def _xp_functions(xp) -> dict[str, Callable[..., Any]]:
    """The exported names as elementwise functions of namespace ``xp``."""
    import array_api_compat

    numpy_like = array_api_compat.is_numpy_namespace(xp)
    # PyTorch: filled on the device (torch.asarray of a number on CUDA is a host-to-device
    # copy that waits for the device's queue)
    make = xp.full if array_api_compat.is_torch_namespace(xp) else None

    def _like(s, other):
        """The Python number ``s`` as a 0-d array of ``other``'s dtype and device."""
        if make is not None:
            return make((), s, dtype=other.dtype, device=array_api_compat.device(other))
        return xp.asarray(s, dtype=other.dtype, device=array_api_compat.device(other))

    def _pair(a, b):
        if numpy_like:  # NumPy keeps a Python number "weak": the array's dtype wins
            return a, b
        if _is_number(a):
            a = _like(a, b)
        elif _is_number(b):
            b = _like(b, a)
        return a, b

    def where_(c, a, b):
        if _is_number(a) and _is_number(b):
            raise TypeError("where(): at least one branch must be an array")
        a, b = _pair(a, b)
        return xp.where(c, a, b)

    def maximum_(a, b):
        if _is_number(a) and _is_number(b):
            return max(a, b)
        return xp.maximum(*_pair(a, b))

    def minimum_(a, b):
        if _is_number(a) and _is_number(b):
            return min(a, b)
        return xp.minimum(*_pair(a, b))

    def unary(name, scalar):
        f = getattr(xp, name)

        def call(x):
            return scalar(x) if _is_number(x) else f(x)

        call.__name__ = name
        return call

    def _safe_log(s):
        keep = (s > 0) | xp.isnan(s)  # log(0) = -inf without a divide-by-zero warning
        out = xp.log(xp.where(keep, s, xp.ones_like(s)))
        return xp.where(keep, out, xp.full_like(s, -math.inf))

    def log_(x):
        if _is_number(x):
            return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)
        return xp.log(x) if numpy_like else _safe_log(x)

    def xlogy_(x, y):
        """x log y with 0 log y = 0 for every y (0 and inf included)."""
        zero = x == 0
        safe_y = where_(zero, 1.0, y) if not _is_number(y) else y
        return where_(zero, 0.0, x * log_(safe_y))

    def expm1mx_(x):
        if _is_number(x):
            return _expm1mx_number(x)
        small = abs(x) < _EXPM1MX_SERIES
        xs = xp.where(small, x, xp.zeros_like(x))
        big = xp.where(x == math.inf, x, xp.expm1(x) - x)  # e^x - x at +inf: inf, not NaN
        return xp.where(small, _expm1mx_series(xs), big)

    return {
        "where": where_,
        "sign": unary("sign", lambda x: math.copysign(1.0, x) if x else x),
        "exp": unary("exp", math.exp),
        "expm1": unary("expm1", math.expm1),
        "expm1mx": expm1mx_,
        "log": log_,
        "log1p": unary("log1p", math.log1p),
        "log1p_unit": unary("log1p", math.log1p),
        "xlogy": xlogy_,
        "sqrt": unary("sqrt", math.sqrt),
        "tanh": unary("tanh", math.tanh),
        "maximum": maximum_,
        "minimum": minimum_,
        "isnan": unary("isnan", math.isnan),
        "isfinite": unary("isfinite", math.isfinite),
    }


#: below this size ``expm1mx`` sums its Taylor series (13 terms: relative error < 1e-16)
_EXPM1MX_SERIES = 0.25


def _expm1mx_series(x):
    """e^x - 1 - x = x^2/2 (1 + x/3 (1 + x/4 (... (1 + x/12)))) for |x| < 1/4 (Horner)."""
    acc = 1.0 + x / 12.0
    for k in (11.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0):
        acc = 1.0 + (x / k) * acc
    return (0.5 * (x * x)) * acc


def _expm1mx_number(x: float) -> float:
    if abs(x) < _EXPM1MX_SERIES:
        return _expm1mx_series(x)
    return x if x == math.inf else math.expm1(x) - x


# --------------------------------------------------------------------------- numba scalars
_SCALAR_IMPLS: dict[str, Any] | None = None
_LOCK = threading.RLock()


def _scalar_functions() -> dict[str, Any]:
    """The exported names as numba scalar functions (built once, on first use)."""
    global _SCALAR_IMPLS
    with _LOCK:
        if _SCALAR_IMPLS is not None:
            return _SCALAR_IMPLS
        import numpy as np
        from numba import njit

        jit = njit(inline="always", error_model="numpy")

        @jit
        def where_(c, a, b):
            return a if c else b

        @jit
        def sign_(x):
            return np.sign(x)  # of x's type; NaN stays NaN, sign(0) = 0

        @jit
        def maximum_(a, b):
            return a if (a > b) | (a != a) else b  # NaN in either propagates

        @jit
        def minimum_(a, b):
            return a if (a < b) | (a != a) else b

        @jit
        def isnan_(x):
            return x != x

        @jit
        def isfinite_(x):
            return x - x == 0  # inf - inf and NaN are NaN

        @jit
        def exp_(x):
            return math.exp(x)

        @jit
        def expm1_(x):
            return math.expm1(x)

        @jit
        def expm1mx_(x):
            if abs(x) < _EXPM1MX_SERIES:
                acc = 1.0 + x / 12.0
                for k in (11.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0):
                    acc = 1.0 + (x / k) * acc
                return (0.5 * (x * x)) * acc
            return x if x == math.inf else math.expm1(x) - x

        @jit
        def log_(x):
            return math.log(x)  # log(0) = -inf, log(x < 0) = NaN (no exception)

        @jit
        def log1p_(x):
            return math.log1p(x)

        @jit
        def xlogy_(x, y):
            return x - x if x == 0 else x * log_(y)

        @jit
        def sqrt_(x):
            return math.sqrt(x)

        @jit
        def tanh_(x):
            return math.tanh(x)

        _SCALAR_IMPLS = {"where": where_, "sign": sign_, "maximum": maximum_,
                         "minimum": minimum_, "isnan": isnan_, "isfinite": isfinite_,
                         "exp": exp_, "expm1": expm1_, "expm1mx": expm1mx_, "log": log_,
                         "log1p": log1p_, "log1p_unit": log1p_, "xlogy": xlogy_,
                         "sqrt": sqrt_, "tanh": tanh_}
        return _SCALAR_IMPLS


def _typed_code(code: types.CodeType, cast) -> types.CodeType:
    """``code`` with every int/float literal replaced by ``cast(literal)``."""
    consts = tuple(cast(c) if _is_number(c) else c for c in code.co_consts)
    return code.replace(co_consts=consts)


# --------------------------------------------------------------------------- Formula
class Formula:
    """A pointwise formula ``fn(prediction, target, *params) -> (value, gradient, ...)``.

    ``hessian=h`` states the second derivative too: ``h(prediction, target, *params)``
    returns :math:`\\partial^2 \\ell / \\partial y^2` per element, written with the same
    functions (available as ``formula.hessian``, itself a Formula).

    ``fn`` is written with the functions of :mod:`losskit.core.formula` (see the module's
    docstring); :meth:`on` evaluates it on arrays of an Array-API namespace,
    :meth:`scalar` compiles it for numba.
    """

    __slots__ = ("fn", "name", "params", "hessian", "_on", "_scalar", "__weakref__")

    def __init__(self, fn: Callable[..., Any], name: str | None = None, *,
                 hessian: Callable[..., Any] | None = None):
        self.fn = fn
        self.name = name or fn.__name__.lstrip("_")
        #: the second derivative of the value with respect to the prediction, a Formula of
        #: the same arguments returning one number per element (None: not stated)
        self.hessian = None if hessian is None else Formula(hessian)
        code = fn.__code__
        #: the names of the parameters after the prediction and the target
        self.params = code.co_varnames[2:code.co_argcount]
        self._on: dict[Any, Callable[..., Any]] = {}
        self._scalar: dict[tuple, Any] = {}

    def __repr__(self) -> str:
        return f"Formula({self.fn.__module__}.{self.fn.__qualname__})"

    def __call__(self, xp, *args):
        """``self.on(xp)(*args)``."""
        return self.on(xp)(*args)

    def _rebind(self, impls: dict[str, Any], code=None, extra=None) -> types.FunctionType:
        fn = self.fn
        glb = dict(fn.__globals__)
        glb.update(impls)
        if extra:
            glb.update(extra)
        new = types.FunctionType(code or fn.__code__, glb, fn.__name__, fn.__defaults__,
                                 fn.__closure__)
        new.__qualname__ = fn.__qualname__
        new.__doc__ = fn.__doc__
        new.__module__ = fn.__module__
        return new

    def on(self, xp) -> Callable[..., Any]:
        """The formula on arrays of namespace ``xp`` (cached per namespace)."""
        f = self._on.get(xp)
        if f is None:
            f = self._on[xp] = self._rebind(_xp_functions(xp))
        return f

    def scalar(self, dtype: Any = "float64", impls: dict[str, Any] | None = None):
        """The formula as a numba ``njit(inline="always")`` function of scalars of ``dtype``
        (float32 or float64): its number literals and module constants are of that type.
        ``impls`` replaces some of the scalar functions (by name). Built once per
        ``(dtype, impls)``; imports numba."""
        import numpy as np

        dt = np.dtype(dtype)
        key = (dt.char, tuple(sorted((impls or {}).items(), key=lambda kv: kv[0])))
        with _LOCK:
            f = self._scalar.get(key)
            if f is not None:
                return f
            from numba import njit

            cast = dt.type
            code = _typed_code(self.fn.__code__, cast)
            # the number constants the code reads from its module (and ``inf``), typed
            glb = self.fn.__globals__
            extra = {n: cast(glb[n]) for n in code.co_names
                     if n in glb and _is_number(glb[n])}
            extra["inf"] = cast(math.inf)
            scalar_impls = dict(_scalar_functions())
            scalar_impls.update(impls or {})
            py = self._rebind(scalar_impls, code, extra)
            py.__qualname__ = f"{self.fn.__qualname__}_{dt.name}"
            f = self._scalar[key] = njit(inline="always", error_model="numpy")(py)
            return f
