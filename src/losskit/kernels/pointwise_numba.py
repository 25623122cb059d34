r"""The numba driver of the pointwise family (imported only when numba is installed).

One loop for every pointwise loss (:mod:`losskit.kernels.pointwise`): the flat prediction
and target in blocks of :data:`~losskit.kernels.numba_kernels.BLOCK` elements, the blocks
in ``prange`` (the parallel build) or in order (the serial build, for small calls); per
element the loss's :class:`~losskit.core.formula.Formula`, compiled by
:meth:`~losskit.core.formula.Formula.scalar` for the input's float type and inlined into
the loop, gives the value and the gradient, written once; each block's values are summed
in float64 while they are in cache (:func:`~losskit.kernels.numba_kernels._sum`). A loss
that must check its inputs (labels -1/+1, counts >= 0) gives a scalar predicate, run over
the block in a loop of its own after the main one (the main loop then still vectorises);
any element it rejects sends the call to the generic path, which raises.

``exp``, ``expm1``, ``expm1mx``, ``log``, ``log1p`` and ``tanh`` are vectorisable versions built from
the polynomial exp and log of :mod:`~losskit.kernels.numba_kernels` (a few ulp; see
below); ``sqrt`` is the hardware's.

The kernels are built per formula, float type and build, on first use; their source is
generated, so it is written to a file of losskit's cache directory named by everything the
build depends on (:mod:`~losskit.kernels.generated`), and numba caches the compiled
builds next to it: the first call of a loss with a dtype costs about a second once per
machine and losskit version, not once per process.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading

import numpy as np
from numba import njit, prange

from . import generated
from . import numba_kernels as _nk
from .numba_kernels import BLOCK, _like, _sum

__all__ = ["kernels", "second_order_kernels", "BLOCK"]

_JIT = {"error_model": "numpy", "fastmath": {"contract"}}
_F32 = np.float32


# --------------------------------------------------------------------------- vectorisable
# Replacements for the C library's expm1, log, log1p and tanh, built from the kernels'
# polynomial exp and log (numba_kernels): arithmetic and selects only, so that the loop
# around a formula vectorises. Each is a few ulp from the exact function (the tests compare
# with NumPy's at the float32 and float64 tolerances), NaN and infinities as the C library.
_EM1_32 = tuple(_F32(1.0 / math.factorial(k)) for k in range(1, 10))
_EM1_64 = tuple(1.0 / math.factorial(k) for k in range(1, 16))


def _expm1_poly_32(x):
    # (e^x - 1) / x = 1 + x/2! + x^2/3! + ... for |x| < 0.35: remainder < 0.1 ulp
    p = _EM1_32[8]
    p = p * x + _EM1_32[7]
    p = p * x + _EM1_32[6]
    p = p * x + _EM1_32[5]
    p = p * x + _EM1_32[4]
    p = p * x + _EM1_32[3]
    p = p * x + _EM1_32[2]
    p = p * x + _EM1_32[1]
    p = p * x + _EM1_32[0]
    return p


def _expm1_poly_64(x):
    p = _EM1_64[14]
    p = p * x + _EM1_64[13]
    p = p * x + _EM1_64[12]
    p = p * x + _EM1_64[11]
    p = p * x + _EM1_64[10]
    p = p * x + _EM1_64[9]
    p = p * x + _EM1_64[8]
    p = p * x + _EM1_64[7]
    p = p * x + _EM1_64[6]
    p = p * x + _EM1_64[5]
    p = p * x + _EM1_64[4]
    p = p * x + _EM1_64[3]
    p = p * x + _EM1_64[2]
    p = p * x + _EM1_64[1]
    p = p * x + _EM1_64[0]
    return p


# inlined in numba's own IR: LLVM does not inline the float64 polynomial by itself, and a
# call inside the loop stops it from vectorising (straight-line code: numba's SSA pass warns
# about a branch inside an inlined overload)
_expm1_poly = _nk._by_float_type(_expm1_poly_32, _expm1_poly_64, inline="always")


@njit(inline="always", **_JIT)
def _expm1(x):
    """e^x - 1: x times the polynomial below |x| = 0.35, else exp(x) - 1."""
    return x * _expm1_poly(x) if abs(x) < _like(x, 0.35) else _nk._exp(x) - _like(x, 1.0)


@njit(inline="always", **_JIT)
def _expm1mx(x):
    """e^x - 1 - x: below 1/4 the Taylor series of losskit.core.formula.expm1mx (its Horner
    steps written out, reciprocals for its divisions), else expm1(x) - x; both computed,
    one selected, so that the loop vectorises."""
    one = _like(x, 1.0)
    acc = one + x * _like(x, 1.0 / 12.0)
    acc = one + (x * _like(x, 1.0 / 11.0)) * acc
    acc = one + (x * _like(x, 1.0 / 10.0)) * acc
    acc = one + (x * _like(x, 1.0 / 9.0)) * acc
    acc = one + (x * _like(x, 1.0 / 8.0)) * acc
    acc = one + (x * _like(x, 1.0 / 7.0)) * acc
    acc = one + (x * _like(x, 1.0 / 6.0)) * acc
    acc = one + (x * _like(x, 1.0 / 5.0)) * acc
    acc = one + (x * _like(x, 1.0 / 4.0)) * acc
    acc = one + (x * _like(x, 1.0 / 3.0)) * acc
    series = (_like(x, 0.5) * (x * x)) * acc
    big = x if x == _like(x, math.inf) else _expm1(x) - x
    return series if abs(x) < _like(x, 0.25) else big


@njit(inline="always", **_JIT)
def _log(x):
    """log x for every x: the bit-level log of numba_kernels (any positive x), inf -> inf."""
    r = _nk._log_unit(x)
    return x if x == _like(x, math.inf) else r


@njit(inline="always", **_JIT)
def _log1p(x):
    """log1p x: the polynomial on [0, 1], else log(u) x / (u - 1) with u = 1 + x."""
    one = _like(x, 1.0)
    u = one + x
    general = _log(u) * (x / (u - one))
    general = x if (u == one) | (x == _like(x, math.inf)) else general
    return _nk._log1p_unit(x) if (x >= _like(x, 0.0)) & (x <= one) else general


@njit(inline="always", **_JIT)
def _tanh(x):
    """tanh x = -m / (2 + m), m = expm1(-2|x|): relative-exact near 0, 1 at +-inf."""
    m = _expm1(_like(x, -2.0) * abs(x))
    r = -m / (_like(x, 2.0) + m)
    return r if x >= _like(x, 0.0) else -r


@njit(inline="always", **_JIT)
def _xlogy(x, y):
    """x log y with 0 log y = 0 (NaN y included, as scipy's xlogy), on :func:`_log`."""
    return x - x if x == _like(x, 0.0) else x * _log(y)


#: the faster scalar functions this driver gives the formulas
_IMPLS = {"exp": _nk._exp, "expm1": _expm1, "expm1mx": _expm1mx, "log": _log,
          "log1p": _log1p, "log1p_unit": _nk._log1p_unit, "tanh": _tanh, "xlogy": _xlogy}
_KERNELS: dict = {}
_LOCK = threading.Lock()


def _always(*args):  # pragma: no cover - compiled
    return True


_SOURCE = """
def pointwise(z, t, {inputs}{gextra}p, scale, g, values, partial, want_values, want_grad):
    n = z.shape[0]
    bad = 0
    {unpack}
    for b in prange(partial.shape[0]):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        m = hi - lo
        zb, tb = z[lo:hi], t[lo:hi]
        {slices}
        # two distinct arrays, both stored unconditionally: the loop then vectorises
        vb = values[lo:hi] if want_values else np.empty(m, dtype=z.dtype)
        gb = g[lo:hi] if want_grad else np.empty(m, dtype=z.dtype)
        {gslices}
        sc = _like(zb[0], scale)
        for j in range(m):
            r = f(zb[j], tb[j]{xargs}{args})
            vb[j] = r[0]
            gb[j] = r[{out0}] * sc
            {gstores}
        partial[b] = _sum(vb, m)
        if HAS_CHECK:
            nb = 0
            for j in range(m):
                nb += 0 if ok(zb[j], tb[j]{xargs}{args}) else 1
            bad += nb
    return bad, _sum(partial, partial.shape[0])
"""


_SOURCE_SECOND = """
def pointwise_second(z, t, {inputs}p, scale, g, h, want_grad):
    n = z.shape[0]
    bad = 0
    {unpack}
    for b in prange(-(-n // BLOCK)):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        m = hi - lo
        zb, tb = z[lo:hi], t[lo:hi]
        {slices}
        gb = g[lo:hi] if want_grad else np.empty(m, dtype=z.dtype)
        hb = h[lo:hi]
        sc = _like(zb[0], scale)
        for j in range(m):
            r = f(zb[j], tb[j]{xargs}{args})
            gb[j] = r[1] * sc
            hb[j] = fh(zb[j], tb[j]{xargs}{args}) * sc
        if HAS_CHECK:
            nb = 0
            for j in range(m):
                nb += 0 if ok(zb[j], tb[j]{xargs}{args}) else 1
            bad += nb
    return bad
"""


def _make(f, ok, has_check, nparams, ninputs=0, flags=(), fh=None, outs=(1,), tag=""):
    """The driver loop around the scalar formula ``f`` and the predicate ``ok``, for a
    formula of ``ninputs`` further arrays (after the target) and ``nparams`` parameters
    (passed as the tuple ``p``). ``flags``: (index, bool) of the parameters that are
    flags, written into the source as constants, so that the formula's ``if`` on them
    is resolved at compile time and the loop holds only the branch taken (the other may
    call a function that does not vectorise). ``outs``: the formula's results stored in
    ``g`` and then in the further gradient arrays (arguments before ``p``), always
    written (several gradients are wanted together). Generated source: numba inlines a call with
    explicit arguments, not one with ``*p``. ``tag`` names the formula, check and float type
    (what the source's globals change); returns ``(fn, cacheable)``
    (:func:`losskit.kernels.generated.function`)."""
    fixed = dict(flags)
    unpack = "; ".join(f"p{i} = {fixed[i]!r}" if i in fixed else f"p{i} = p[{i}]"
                       for i in range(nparams)) or "pass"
    args = "".join(f", p{i}" for i in range(nparams))
    inputs = "".join(f"x{i}, " for i in range(ninputs))
    slices = "; ".join(f"x{i}b = x{i}[lo:hi]" for i in range(ninputs)) or "pass"
    xargs = "".join(f", x{i}b[j]" for i in range(ninputs))
    namespace = {"f": f, "fh": fh, "ok": ok, "HAS_CHECK": has_check, "np": np,
                 "prange": prange, "BLOCK": BLOCK, "_like": _like, "_sum": _sum}
    template = _SOURCE if fh is None else _SOURCE_SECOND
    gextra = "".join(f"g{k}, " for k in range(1, len(outs)))
    gslices = "; ".join(f"g{k}b = g{k}[lo:hi]" for k in range(1, len(outs))) or "pass"
    gstores = "; ".join(f"g{k}b[j] = r[{o}] * sc" for k, o in enumerate(outs) if k) or "pass"
    source = template.format(unpack=unpack, args=args, inputs=inputs, slices=slices,
                             xargs=xargs, gextra=gextra, gslices=gslices, gstores=gstores,
                             out0=outs[0])
    return generated.function(source, "pointwise" if fh is None else "pointwise_second",
                              namespace, tag)


def second_order_kernels(formula, check, dtype, ninputs=0, flags=()):
    """(parallel build, serial build) of the second-order driver: per element the
    gradient (the formula's) and the Hessian (``formula.hessian``), both times ``scale``,
    in one pass, as ``kernel(z, t, *inputs, p, scale, g, h, want_grad) -> rejected``;
    arguments otherwise as :func:`kernels`."""
    return _built(formula, check, dtype, ninputs, flags, second=True)


def kernels(formula, check, dtype, ninputs=0, flags=(), outs=(1,)):
    """(parallel build, serial build) of the driver for ``formula`` (and the predicate
    Formula ``check``, or None) on ``dtype`` (float32 or float64), with ``ninputs`` further
    arrays after the target (the formula's first arguments after it) and the flag
    parameters ``flags`` ((index, bool) pairs, fixed in the build) and the formula's
    results ``outs`` written as gradients (``(1,)``: the prediction's; ``(1, 2)``: also
    the next one, into an array passed after the further inputs); built once per
    combination."""
    return _built(formula, check, dtype, ninputs, flags, second=False, outs=outs)


def _built(formula, check, dtype, ninputs, flags, *, second, outs=(1,)):
    """The (parallel, serial) builds of the first- or second-order driver, once each."""
    dt = np.dtype(dtype)
    key = (second, formula, check, dt.char, ninputs, flags, outs)
    k = _KERNELS.get(key)
    if k is not None:
        return k
    with _LOCK:
        k = _KERNELS.get(key)
        if k is None:
            f = formula.scalar(dt, _IMPLS)
            fh = formula.hessian.scalar(dt, _IMPLS) if second else None
            ok = check.scalar(dt, _IMPLS) if check is not None else njit(inline="always")(
                _always)
            has_check, n = check is not None, len(formula.params) - ninputs
            tag = (f"{_identity(formula)} | check {_identity(check)} | {dt.name} | "
                   f"second {second}")
            k = []
            for parallel in (True, False):
                fn, cacheable = _make(f, ok, has_check, n, ninputs, flags, fh, outs,
                                      f"{tag} | parallel {parallel}")
                k.append(njit(parallel=parallel, cache=cacheable, **_JIT)(fn))
            k = tuple(k)
            _KERNELS[key] = k
    return k


def _identity(formula) -> str:
    """What a build reads from ``formula`` (None: no check), as text for the generated
    file's name (:mod:`losskit.kernels.generated`): its name, the bytecode, constants,
    closure values and module number constants of its function (and of its Hessian's),
    and, for a function outside losskit (whose sources the cache digest covers), its
    source file's hash; a function without a source file is named by its id, so that its
    builds are never shared between processes."""
    if formula is None:
        return "none"
    parts = [repr(formula)]
    for fn in (formula.fn, formula.hessian.fn if formula.hessian is not None else None):
        if fn is None:
            continue
        code = fn.__code__
        glb = fn.__globals__
        numbers = {n: glb[n] for n in code.co_names
                   if isinstance(glb.get(n), (int, float)) and not isinstance(glb[n], bool)}
        cells = [c.cell_contents for c in fn.__closure__ or ()]
        parts += [hashlib.sha256(code.co_code).hexdigest(), repr(code.co_consts),
                  repr(code.co_names), repr(cells), repr(numbers), _source_of(fn)]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _source_of(fn) -> str:
    """"losskit" for a function of losskit; else its source file's SHA-256, or its id."""
    path = fn.__code__.co_filename
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.abspath(path).startswith(package + os.sep):
        return "losskit"
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return f"id {id(fn)}"
