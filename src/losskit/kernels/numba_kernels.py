r"""Numba kernels of the fused NumPy fast paths (imported only when numba is installed).

Each kernel makes one sweep over its rows (softmax cross-entropy) or over blocks of
elements (the elementwise losses), with the rows processed in ``prange``: the inputs are
read once from memory and the gradient written once; everything else happens in cache.
Two builds of each kernel exist, ``parallel=True`` for large inputs and a serial one for
small calls, where starting the thread pool would cost more than the work; they are
compiled from two copies of the function (:func:`_builds`), since numba's on-disk cache
would otherwise hand one build's machine code to both.

``fastmath`` stays off: NaN and infinities keep their IEEE meaning, which the losses'
documented edge cases rely on. Two things make the kernels vectorise anyway:

* ``exp``, ``log`` and ``log1p`` are evaluated by :func:`_exp` (a Cody-Waite range
  reduction and a Taylor polynomial), :func:`_exp_neg` (the same for arguments <= 0,
  with one scaling factor; a minimax polynomial in float32), :func:`_log_unit` (the
  ``artanh`` series) and :func:`_log1p_unit` (a minimax polynomial in float32, the
  ``artanh`` series in float64), instead of calls into the C library, which LLVM cannot
  vectorise (PyPI's llvmlite has no SVML);
* sums and maxima use eight independent accumulators, which the SLP vectoriser packs
  into one SIMD register without reassociating any single accumulator's additions.
  Sums accumulate in float64, also for float32 inputs.

Accuracy: :func:`_exp` and :func:`_exp_neg` are within 2 ulp of the exact exponential for
float32 and float64 (polynomial error below 0.1 ulp; the rest is rounding), gradual
underflow (and, for :func:`_exp`, overflow to ``inf``) included; ``log1p`` of a number in
[0, 1] is within 2 ulp in float32 (1.92 ulp, checked on every float32) and 3 ulp in
float64 (the rounding of :math:`u/(2+u)`), and ``log`` of a number in [0, 1] uses the
exponent and :math:`2\operatorname{artanh}((m-1)/(m+1))` of the mantissa, summed to about
the same accuracy. ``tests/kernels/test_fast_paths.py`` compares every kernel with the generic Array-API
kernel.
"""

from __future__ import annotations

import math
import types as pytypes

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.errors import NumbaError
from numba.extending import intrinsic, overload

__all__ = [
    "softmax_ce_parallel", "softmax_ce_serial",
    "sigmoid_bce_parallel", "sigmoid_bce_serial",
    "regression_parallel", "regression_serial",
    "sigmoid_focal_parallel", "sigmoid_focal_serial",
    "softmax_block_parallel", "softmax_block_serial",
    "BLOCK", "SUM_ROWS", "NumbaError", "scratch_rows", "sum_rows",
]

#: elements per block of the elementwise kernels (a block's scratch stays in L1)
BLOCK = 4096

_F32, _F64 = np.float32, np.float64


# --------------------------------------------------------------------------- bit casts
@intrinsic
def _f32_from_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _bits_from_f32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def _f64_from_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _bits_from_f64(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


# --------------------------------------------------------------------------- borrowed views
@intrinsic
def _borrowed(typingctx, arr):
    """A view of the array ``arr`` without a reference count (its meminfo and parent
    NULL, as numba's ``carray`` views have), for a kernel's own use while it runs.

    numba counts references to an array atomically: every slice ``a[i]`` and every call
    of a function that takes it (one not inlined: most helpers with loops) costs a
    ``lock``-prefixed increment and decrement, 5-7 ns each here, where the work of a short
    row (10 classes) takes a few ns. On a view without a count they are a test of NULL.
    The caller's argument keeps the data alive for the whole call; a borrowed view (or a
    slice of it) must therefore never be returned or stored in anything returned.
    """
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = context.make_array(arr)(context, builder, value=args[0])
        view = context.make_array(arr)(context, builder)
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        view.parent = cgutils.get_null_value(view.parent.type)
        view.nitems = src.nitems
        view.itemsize = src.itemsize
        view.data = src.data
        view.shape = src.shape
        view.strides = src.strides
        return view._getvalue()
    return arr(arr), codegen


# --------------------------------------------------------------------------- float dispatch
def _by_float_type(f32, f64, doc="", inline="never"):
    """A function of one float that numba compiles as ``f32`` for float32 arguments and
    ``f64`` for float64 ones (float32 arithmetic stays float32, so it vectorises 8-wide);
    ``inline="always"`` inlines it into its caller in numba's own IR."""
    def stub(x):  # pragma: no cover - typed by the overload below
        raise NotImplementedError

    stub.__doc__ = doc or None

    @overload(stub, inline=inline)
    def _overload(x):
        if x == types.float32:
            return f32
        if x == types.float64:
            return f64
        return None

    return stub


# --------------------------------------------------------------------------- exp(x)
# x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so that n * ln2_hi is exact), then
# e^r by its Taylor polynomial (degree 7 in float32, 13 in float64: remainder < 0.1 ulp)
# and 2^n built from its bits, in two factors so that results below the smallest normal
# number underflow gradually and results above the largest overflow to inf, as the C
# library's exp does. x is clamped to [LO, HI], where exp is already 0 or inf.
_L2E32, _LN2HI32, _LN2LO32 = _F32(1.4426950408889634), _F32(0.693359375), _F32(-2.12194440e-4)
_MAGIC32 = _F32(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer
_MAGIC32_BITS = np.int32(0x4B400000)
_LO32, _HI32 = _F32(-104.0), _F32(100.0)  # exp(-104) < half the smallest subnormal: 0

_L2E64, _LN2HI64, _LN2LO64 = 1.4426950408889634, 6.93147180369123816490e-01, \
    1.90821492927058770002e-10
_MAGIC64 = 6755399441055744.0  # 1.5 * 2**52
_MAGIC64_BITS = np.int64(0x4338000000000000)
_LO64, _HI64 = -746.0, 750.0  # exp(-746) < half the smallest float64 subnormal: 0

_INV_FACT32 = tuple(_F32(1.0 / math.factorial(k)) for k in range(8))
_INV_FACT64 = tuple(1.0 / math.factorial(k) for k in range(14))


@njit(cache=True, inline="always")
def _taylor_exp64(r):
    """e^r for |r| <= ln2/2 by its Taylor polynomial of degree 13 (remainder < 0.1 ulp)."""
    p = _INV_FACT64[13]
    p = p * r + _INV_FACT64[12]
    p = p * r + _INV_FACT64[11]
    p = p * r + _INV_FACT64[10]
    p = p * r + _INV_FACT64[9]
    p = p * r + _INV_FACT64[8]
    p = p * r + _INV_FACT64[7]
    p = p * r + _INV_FACT64[6]
    p = p * r + _INV_FACT64[5]
    p = p * r + _INV_FACT64[4]
    p = p * r + _INV_FACT64[3]
    p = p * r + _INV_FACT64[2]
    p = p * r + _INV_FACT64[1]
    return p * r + _INV_FACT64[0]


def _exp32(x):
    xc = x if x > _LO32 else _LO32  # NaN -> LO: the integer part stays in range
    xc = xc if xc < _HI32 else _HI32
    r0 = xc if x == x else x  # NaN propagates through r
    kf = xc * _L2E32 + _MAGIC32
    n = kf - _MAGIC32
    ni = _bits_from_f32(kf) - _MAGIC32_BITS
    r = (r0 - n * _LN2HI32) - n * _LN2LO32
    p = _INV_FACT32[7]
    p = p * r + _INV_FACT32[6]
    p = p * r + _INV_FACT32[5]
    p = p * r + _INV_FACT32[4]
    p = p * r + _INV_FACT32[3]
    p = p * r + _INV_FACT32[2]
    p = p * r + _INV_FACT32[1]
    p = p * r + _INV_FACT32[0]
    n1 = ni >> np.int32(1)
    n2 = ni - n1
    s1 = _f32_from_bits((n1 + np.int32(127)) << np.int32(23))
    s2 = _f32_from_bits((n2 + np.int32(127)) << np.int32(23))
    return (p * s1) * s2


def _exp64(x):
    xc = x if x > _LO64 else _LO64
    xc = xc if xc < _HI64 else _HI64
    r0 = xc if x == x else x
    kf = xc * _L2E64 + _MAGIC64
    n = kf - _MAGIC64
    ni = _bits_from_f64(kf) - _MAGIC64_BITS
    r = (r0 - n * _LN2HI64) - n * _LN2LO64
    p = _taylor_exp64(r)
    n1 = ni >> np.int64(1)
    n2 = ni - n1
    s1 = _f64_from_bits((n1 + np.int64(1023)) << np.int64(52))
    s2 = _f64_from_bits((n2 + np.int64(1023)) << np.int64(52))
    return (p * s1) * s2


_exp = _by_float_type(_exp32, _exp64)


# --------------------------------------------------------------------------- exp(x), x <= 0
# The elementwise losses exponentiate -|z| <= 0 (or NaN) only, and there 2^n needs one factor
# instead of two: with n in [-150, 0] (float32; [-1077, 0] in float64) 2^(n + K) is a normal
# number for K = 24 (64), so e^x = (p 2^(n + K)) 2^-K, where the first product is exact and
# the second rounds once, into the subnormal range where it must (gradual underflow, as the
# C library's exp). Valid up to x = 70 (float32) and 660 (float64): a slightly positive
# argument (rounding) is fine. NaN propagates through r and p (the clamp keeps it).
# float32: minimax polynomial of degree 6 for e^r on |r| <= ln2/2, relative error 1.9e-9
# (0.03 ulp; the Taylor polynomial needs degree 7); over every float32 in [-104, 0] the
# result is within 1.06 ulp of the exact e^x. float64: the Taylor polynomial of _exp64.
_EXPK32, _EXPK64 = 24, 64
_SBIAS32 = np.int32(int(_MAGIC32_BITS) - (127 + _EXPK32))  # bits(kf) - this = n + 127 + K
_SBIAS64 = np.int64(int(_MAGIC64_BITS) - (1023 + _EXPK64))
_UNSCALE32, _UNSCALE64 = _F32(2.0 ** -_EXPK32), 2.0 ** -_EXPK64
_EXP6_32 = tuple(_F32(c) for c in (
    1.0, 1.0, 0.49999991059303284, 0.16666419804096222, 0.04166822507977486,
    0.008374815806746483, 0.0013836842263117433))


def _exp_neg32(x):
    xc = _LO32 if x < _LO32 else x  # NaN stays NaN
    kf = xc * _L2E32 + _MAGIC32
    n = kf - _MAGIC32
    r = (xc - n * _LN2HI32) - n * _LN2LO32
    p = _EXP6_32[6]
    p = p * r + _EXP6_32[5]
    p = p * r + _EXP6_32[4]
    p = p * r + _EXP6_32[3]
    p = p * r + _EXP6_32[2]
    p = p * r + _EXP6_32[1]
    p = p * r + _EXP6_32[0]
    s = _f32_from_bits((_bits_from_f32(kf) - _SBIAS32) << np.int32(23))  # 2^(n + K)
    return (p * s) * _UNSCALE32


def _exp_neg64(x):
    xc = _LO64 if x < _LO64 else x
    kf = xc * _L2E64 + _MAGIC64
    n = kf - _MAGIC64
    r = (xc - n * _LN2HI64) - n * _LN2LO64
    p = _taylor_exp64(r)
    s = _f64_from_bits((_bits_from_f64(kf) - _SBIAS64) << np.int64(52))
    return (p * s) * _UNSCALE64


_exp_neg = _by_float_type(_exp_neg32, _exp_neg64, "e^x for x <= 0 (or NaN); see above.")


# --------------------------------------------------------------------------- log1p(u), 0 <= u <= 1
# float32: u P(u), P the minimax polynomial of degree 9 for log1p(u)/u on [0, 1] (relative
# error 4.7e-9, 0.08 ulp); no division. Over every float32 in [0, 1] the result is within
# 1.92 ulp of the exact log1p (the artanh series below: 2.88 ulp). For small u it is u
# times 1 - u/2 + ..., relative-exact, subnormal u included.
# float64: log(1 + u) = 2 artanh(f), f = u / (2 + u) in [0, 1/3]: no cancellation for small
# u, and the odd series 2 f (1 + f^2/3 + f^4/5 + ...) converges like 9^-k (remainder
# < 0.1 ulp after 17 terms); the roundings of 2 + u and of the division leave 2.8 ulp.
# (A polynomial in u would need degree ~20 here: no cheaper than the division.)
_L1P9_32 = tuple(_F32(c) for c in (
    1.0, -0.4999990165233612, 0.3332996368408203, -0.24954132735729218, 0.19675931334495544,
    -0.15305569767951965, 0.10603617131710052, -0.056959159672260284, 0.019851263612508774,
    -0.0032439809292554855))
_ODD64 = tuple(1.0 / (2 * k + 1) for k in range(17))


def _log1p_unit32(x):
    p = _L1P9_32[9]
    p = p * x + _L1P9_32[8]
    p = p * x + _L1P9_32[7]
    p = p * x + _L1P9_32[6]
    p = p * x + _L1P9_32[5]
    p = p * x + _L1P9_32[4]
    p = p * x + _L1P9_32[3]
    p = p * x + _L1P9_32[2]
    p = p * x + _L1P9_32[1]
    p = p * x + _L1P9_32[0]
    return x * p


def _log1p_unit64(x):
    f = x / (2.0 + x)
    w = f * f
    p = _ODD64[16]
    p = p * w + _ODD64[15]
    p = p * w + _ODD64[14]
    p = p * w + _ODD64[13]
    p = p * w + _ODD64[12]
    p = p * w + _ODD64[11]
    p = p * w + _ODD64[10]
    p = p * w + _ODD64[9]
    p = p * w + _ODD64[8]
    p = p * w + _ODD64[7]
    p = p * w + _ODD64[6]
    p = p * w + _ODD64[5]
    p = p * w + _ODD64[4]
    p = p * w + _ODD64[3]
    p = p * w + _ODD64[2]
    p = p * w + _ODD64[1]
    p = p * w + _ODD64[0]
    return 2.0 * f * p


_log1p_unit = _by_float_type(_log1p_unit32, _log1p_unit64)


# --------------------------------------------------------------------------- log(x), 0 <= x <= 1
# x = 2^e m with m in [sqrt(1/2), sqrt(2)) (subnormals scaled up first), then
# log m = 2 artanh(f), f = (m - 1)/(m + 1), |f| <= 0.1716: the series converges like
# 0.0295^k (remainder < 0.1 ulp after 6 terms in float32, 12 in float64). 0 gives -inf.
_SQRT2_32, _TINY32, _TWO24 = _F32(1.4142135), _F32(1.1754944e-38), _F32(16777216.0)
_SQRT2_64, _TINY64, _TWO54 = 1.4142135623730951, 2.2250738585072014e-308, 18014398509481984.0
_ODDL32 = tuple(_F32(1.0 / (2 * k + 1)) for k in range(6))
_ODDL64 = tuple(1.0 / (2 * k + 1) for k in range(12))
_NINF32, _NAN32 = _F32(-np.inf), _F32(np.nan)


def _log_unit32(x):
    small = x < _TINY32
    xs = x * _TWO24 if small else x
    i = _bits_from_f32(xs)
    e = ((i >> np.int32(23)) & np.int32(0xFF)) - np.int32(127)
    e = e - np.int32(24) if small else e
    m = _f32_from_bits((i & np.int32(0x7FFFFF)) | np.int32(0x3F800000))
    big = m > _SQRT2_32
    m = m * _F32(0.5) if big else m
    e = e + np.int32(1) if big else e
    f = (m - _F32(1.0)) / (m + _F32(1.0))
    w = f * f
    p = _ODDL32[5]
    p = p * w + _ODDL32[4]
    p = p * w + _ODDL32[3]
    p = p * w + _ODDL32[2]
    p = p * w + _ODDL32[1]
    p = p * w + _ODDL32[0]
    ef = _F32(e)
    res = ef * _LN2HI32 + (ef * _LN2LO32 + _F32(2.0) * f * p)
    return res if x > _F32(0.0) else (_NINF32 if x == _F32(0.0) else _NAN32)


def _log_unit64(x):
    small = x < _TINY64
    xs = x * _TWO54 if small else x
    i = _bits_from_f64(xs)
    e = ((i >> np.int64(52)) & np.int64(0x7FF)) - np.int64(1023)
    e = e - np.int64(54) if small else e
    m = _f64_from_bits((i & np.int64(0xFFFFFFFFFFFFF)) | np.int64(0x3FF0000000000000))
    big = m > _SQRT2_64
    m = m * 0.5 if big else m
    e = e + np.int64(1) if big else e
    f = (m - 1.0) / (m + 1.0)
    w = f * f
    p = _ODDL64[11]
    p = p * w + _ODDL64[10]
    p = p * w + _ODDL64[9]
    p = p * w + _ODDL64[8]
    p = p * w + _ODDL64[7]
    p = p * w + _ODDL64[6]
    p = p * w + _ODDL64[5]
    p = p * w + _ODDL64[4]
    p = p * w + _ODDL64[3]
    p = p * w + _ODDL64[2]
    p = p * w + _ODDL64[1]
    p = p * w + _ODDL64[0]
    ef = float(e)
    res = ef * _LN2HI64 + (ef * _LN2LO64 + 2.0 * f * p)
    return res if x > 0.0 else (-np.inf if x == 0.0 else np.nan)


_log_unit = _by_float_type(_log_unit32, _log_unit64)


# --------------------------------------------------------------------------- reductions
@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _sum(a, n):
    """float64 sum of a[:n]. Only reassociation is allowed (``fastmath={"reassoc"}``), so
    that LLVM may split the sum over SIMD lanes, as NumPy's pairwise sum also reorders it;
    NaN and infinities keep their meaning."""
    s = 0.0
    for j in range(n):
        s += a[j]
    return s


#: rows per partial sum of the row kernels (softmax CE here, the row family's driver) at
#: most: the values are summed per block of rows and the blocks in order
#: (:func:`_ordered_sum`), so that the sum does not depend on the thread count and nothing
#: of the batch's size is kept
SUM_ROWS = 64


@njit(cache=True)
def sum_rows(k):
    """Rows per block of a row kernel with k classes: :data:`SUM_ROWS`, fewer for long
    rows (:data:`BLOCK` elements' worth, at least one row), so that a few long rows still
    make enough blocks for every thread (``prange`` shares out blocks); a function of k
    alone, like the sum's order."""
    return max(1, min(SUM_ROWS, BLOCK // k)) if k > 0 else SUM_ROWS


def scratch_rows(n, k, dtype):
    """The ``g`` of a row kernel called without a gradient: one scratch row of k entries
    per block of :func:`sum_rows` rows (a row function writes its softmax or terms there;
    one per block, so that parallel blocks do not share one)."""
    per = sum_rows(k)
    return np.empty(((n + per - 1) // per, k), dtype=dtype)


@njit(cache=True, error_model="numpy")
def _ordered_sum(a):
    """float64 sum of a in order (no reassociation): partial sums of blocks, whose order
    must not depend on the thread count."""
    s = 0.0
    for k in range(a.shape[0]):
        s += a[k]
    return s


@njit(cache=True, error_model="numpy")
def _outside_unit(t, n):
    """Whether t[:n] holds a number outside [0, 1] (NaN is not). A loop of its own, run
    after the block's main loop, while t is still in cache: inside the main loop the
    flag costs a fifth more, and before it the block's first read of t from memory would
    overlap with no arithmetic (10M float32 elements: about 1 ms more on two cores)."""
    outside = False
    for j in range(n):
        outside |= (t[j] < _like(t[j], 0.0)) | (t[j] > _like(t[j], 1.0))
    return outside


# The maximum through integers: flipping the magnitude bits of negative numbers makes the
# signed-integer order of the bit patterns the order of the floats (-0 < +0, +-inf at
# the ends), and an integer maximum vectorises where a float one would need fastmath.
def _max_nan32(a, n):
    key = np.int32(-2147483648)
    nan = 0
    for j in range(n):
        v = a[j]
        i = _bits_from_f32(v)
        k = i ^ ((i >> np.int32(31)) & np.int32(0x7FFFFFFF))
        key = k if k > key else key
        nan |= v != v
    return _f32_from_bits(key ^ ((key >> np.int32(31)) & np.int32(0x7FFFFFFF))), nan != 0


def _max_nan64(a, n):
    key = np.int64(-9223372036854775808)
    nan = 0
    for j in range(n):
        v = a[j]
        i = _bits_from_f64(v)
        k = i ^ ((i >> np.int64(63)) & np.int64(0x7FFFFFFFFFFFFFFF))
        key = k if k > key else key
        nan |= v != v
    return (_f64_from_bits(key ^ ((key >> np.int64(63)) & np.int64(0x7FFFFFFFFFFFFFFF))),
            nan != 0)


def _max_nan(a, n):  # pragma: no cover - typed by the overload below
    """(maximum of a[:n], whether a NaN occurred; the maximum is meaningless then)."""
    raise NotImplementedError


@overload(_max_nan)
def _max_nan_overload(a, n):
    if a.dtype == types.float32:
        return _max_nan32
    if a.dtype == types.float64:
        return _max_nan64
    return None


# --------------------------------------------------------------------------- typed constants
def _like(x, v):  # pragma: no cover - typed by the overload below
    raise NotImplementedError


@overload(_like)
def _like_overload(x, v):
    """``v`` in the floating type of ``x`` (float32 arithmetic stays float32)."""
    if x == types.float32:
        return lambda x, v: np.float32(v)
    if x == types.float64:
        return lambda x, v: np.float64(v)
    return None


# --------------------------------------------------------------------------- softmax CE
# error_model="numpy": x / 0 follows IEEE (no ZeroDivisionError check, which would stop
# vectorisation); fastmath={"contract"}: a * b + c may become one fused multiply-add, which
# rounds once instead of twice. No flag that assumes away NaN or infinities is set.
_JIT = {"cache": True, "error_model": "numpy", "fastmath": {"contract"}}


def _builds(func):
    """(parallel build, serial build) of a kernel, cached on disk apart.

    numba's cache index keys a build by signature, CPU and bytecode, not by ``parallel=``,
    and names its files after the function: two builds of one function would share one
    entry, and whichever was compiled first would answer for both (the "parallel" kernel
    ran on one thread whenever the serial build had been cached first). The parallel
    build therefore compiles a copy of the function under its own qualified name.
    """
    copy = pytypes.FunctionType(func.__code__, func.__globals__, func.__name__ + "_parallel",
                                func.__defaults__, func.__closure__)
    copy.__qualname__ = func.__qualname__ + "_parallel"
    copy.__doc__ = func.__doc__
    return njit(parallel=True, **_JIT)(copy), njit(**_JIT)(func)


@njit(**_JIT)
def _ce_row_edge(z, g, label, scale):
    """A row with a NaN, a +inf or only -inf entries: the generic kernel's formulas.

    The generic shift (the maximum, replaced by 0 when it is not finite) is 0 for every
    such row; the sum of exponentials s is then NaN, +inf or 0, so the softmax is NaN, and
    -log softmax_y = log(s) - z_y with log(0) = -inf.
    """
    k = z.shape[0]
    s = 0.0
    for j in range(k):
        s += math.exp(float(z[j]))
    log_s = math.log(s) if (s > 0.0 or s != s) else -math.inf
    for j in range(k):
        g[j] = math.nan
    return log_s - float(z[label])


@njit(**_JIT)
def _ce_row(z, g, label, scale):
    """-log softmax(z)_label (float64); writes scale * (softmax(z) - onehot) into g."""
    k = z.shape[0]
    m, nan = _max_nan(z, k)
    if nan or not math.isfinite(m):
        return _ce_row_edge(z, g, label, scale)
    zy = z[label]  # read before g is written (g may be z itself)
    for j in range(k):
        g[j] = _exp_neg(z[j] - m)  # z - m <= 0
    s = _sum(g, k)  # >= 1: the maximum contributes e^0
    c = _like(m, scale / s)
    for j in range(k):
        g[j] = g[j] * c
    g[label] -= _like(m, scale)
    return math.log(s) - float(zy - m)


@njit(**_JIT)
def _ce_row_short(z, g, label, scale):
    """:func:`_ce_row` for a short row (``SHORT_ROW`` classes or fewer): plain loops, where
    the vectorised ones would spend more on their set-up than on the row."""
    k = z.shape[0]
    m = z[0]
    nan = m != m
    for j in range(1, k):
        v = z[j]
        nan |= v != v
        m = v if v > m else m
    if nan or not math.isfinite(m):
        return _ce_row_edge(z, g, label, scale)
    zy = z[label]
    s = 0.0
    for j in range(k):
        e = _exp_neg(z[j] - m)
        g[j] = e
        s += e
    c = _like(m, scale / s)
    for j in range(k):
        g[j] = g[j] * c
    g[label] -= _like(m, scale)
    return math.log(s) - float(zy - m)


#: rows of at most this many classes take :func:`_ce_row_short`
SHORT_ROW = 16


def _softmax_ce(z, y, has_ignore, ignore, mean, scale, g, values, want_grad):
    """Softmax cross-entropy of the rows of z (N, K) with integer labels y (N,).

    First a serial pass over the labels: the number outside [0, K) that are not
    ``ignore`` (when ``has_ignore``), and the number kept; with bad labels nothing else
    is done (the caller runs the generic path, which raises). ``mean``: the gradient's
    scale is 1 / kept (0 when nothing is kept), else ``scale``. Then the rows, in blocks
    of :func:`sum_rows` in ``prange``: per-row values into ``values`` (float64) when it
    has N entries (reduction "none"; else it may be empty: the values are summed per
    block and the blocks in order, nothing of the batch's size allocated) and, when
    ``want_grad``, scale * (softmax - onehot) into g (else g holds one scratch row per
    block, the caller's: see :func:`scratch_rows`); ignored rows give 0 and a zero
    gradient row.

    Returns (bad labels, kept labels, sum of the values).
    """
    n, k = z.shape
    bad = 0
    kept = 0
    for i in range(n):
        label = y[i]
        if has_ignore and label == ignore:
            continue
        kept += 1
        if label < 0 or label >= k:
            bad += 1
    if bad:
        return bad, kept, 0.0
    if mean:
        scale = 1.0 / kept if kept else 0.0
    z, g = _borrowed(z), _borrowed(g)  # no reference counts per row (see _borrowed)
    want_values = values.shape[0] == n
    per = sum_rows(k)
    blocks = (n + per - 1) // per
    partial = np.empty(blocks, dtype=np.float64)
    for blk in prange(blocks):
        acc = 0.0
        for i in range(blk * per, min(n, (blk + 1) * per)):
            label = y[i]
            if has_ignore and label == ignore:
                if want_grad:
                    g[i, :] = 0
                v = 0.0
            else:
                gi = g[i] if want_grad else g[blk]  # else: the block's scratch row
                if k <= SHORT_ROW:
                    v = _ce_row_short(z[i], gi, label, scale)
                else:
                    v = _ce_row(z[i], gi, label, scale)
            if want_values:
                values[i] = v
            acc += v
        partial[blk] = acc
    return bad, kept, _ordered_sum(partial)


softmax_ce_parallel, softmax_ce_serial = _builds(_softmax_ce)


# --------------------------------------------------------------------------- linear CE blocks
def _softmax_block(z, labels, p_factor, label_factor, want_grad, log_s, shifted, shift):
    """The softmax step of ``linear_cross_entropy`` on a block of logits z (k, V), in place.

    Per row: m = the row maximum (0 when it is not finite, as the generic
    ``_safe_row_max``), ``shift[i] = m``, ``shifted[i] = z_y - m``,
    ``log_s[i] = log sum_c exp(z_c - m)`` (log 0 = -inf) and, when ``want_grad``,
    z becomes ``p_factor / S * exp(z - m) - label_factor * e_y``; otherwise z holds
    exp(z - m). Rows whose maximum is NaN or infinite take the C library's exp, as NumPy's
    ufuncs would. Returns True.
    """
    k, v = z.shape
    for i in prange(k):
        row = z[i]
        y = labels[i]
        m, nan = _max_nan(row, v)
        if nan or not math.isfinite(m):
            m = _like(m, 0.0)
            zy = row[y]
            s = 0.0
            for j in range(v):
                row[j] = math.exp(row[j])
                s += row[j]
        else:
            zy = row[y] - m
            for j in range(v):
                row[j] = _exp_neg(row[j] - m)  # row - m <= 0
            s = _sum(row, v)
        shift[i] = m
        shifted[i] = zy
        log_s[i] = math.log(s) if (s > 0.0 or s != s) else -math.inf
        if want_grad:
            c = _like(m, p_factor[i] / s)
            for j in range(v):
                row[j] = row[j] * c
            row[y] -= _like(m, label_factor[i])
    return True


softmax_block_parallel, softmax_block_serial = _builds(_softmax_block)


# --------------------------------------------------------------------------- sigmoid BCE
def _sigmoid_bce(z, t, pw, block, scale, g, values, partial, want_values, want_grad):
    """Elementwise BCE of logits over flat z, t (C order), in blocks of ``block``.

    ``pw`` holds the positive weight of each element of a block (``block`` is a multiple
    of the class count, so every block starts at class 0; ones without ``pos_weight``).
    Writes scale * grad into g (when want_grad), per-element values into ``values`` (when
    want_values) and per-block float64 sums into ``partial``. Returns (the number of
    blocks with a target outside [0, 1], the sum of the values); with bad targets the
    caller runs the generic path, which raises.

    With e = exp(-|z|) <= 1 (:func:`_exp_neg`), softplus(+-z) = max(+-z, 0) + log1p(e)
    (exact at huge |z|, relative-exact where tiny) and sigmoid(z) = (1 or e) / (1 + e): one
    exponential, one log1p (a polynomial in float32) and one division per element.
    """
    n = z.shape[0]
    bad = 0
    for b in prange(partial.shape[0]):
        lo = b * block
        hi = min(lo + block, n)
        m = hi - lo
        zb, tb = z[lo:hi], t[lo:hi]
        # two distinct arrays, both stored unconditionally: the loop then vectorises
        vb = values[lo:hi] if want_values else np.empty(m, dtype=z.dtype)
        gb = g[lo:hi] if want_grad else np.empty(m, dtype=z.dtype)
        sc = _like(zb[0], scale)
        for j in range(m):
            zj = zb[j]
            tj = tb[j]
            zero = _like(zj, 0.0)
            one = _like(zj, 1.0)
            pos = tj * pw[j]
            neg = one - tj
            e = _exp_neg(-abs(zj))
            l1p = _log1p_unit(e)
            sp_pos = (zj if zj > zero else zero) + l1p  # softplus(z)
            sp_neg = (-zj if zj < zero else zero) + l1p  # softplus(-z)
            # 0 * inf = 0: a perfect prediction at an infinite logit costs nothing
            vb[j] = (pos * (sp_neg if pos != zero else zero)
                     + neg * (sp_pos if neg != zero else zero))
            # sigmoid(z) = 1 / (1 + e) for z >= 0, e / (1 + e) below (NaN: the latter)
            num = one if zj >= zero else e
            gb[j] = ((pos + neg) * (num / (one + e)) - pos) * sc
        partial[b] = _sum(vb, m)
        bad += _outside_unit(tb, m)
    return bad, _sum(partial, partial.shape[0])


sigmoid_bce_parallel, sigmoid_bce_serial = _builds(_sigmoid_bce)


# --------------------------------------------------------------------------- regression
def _regression(kind, param, z, t, scale, g, values, partial, want_values, want_grad):
    """Elementwise regression losses of the residual d = z - t over flat arrays.

    kind 0: mse, d^2 and 2d; kind 1: l2_loss, d^2/2 and d; kind 2: mae, |d| and sign d;
    kind 3: huber with delta = ``param``: q^2/2 + delta (|d| - q) and sign(d) q, where
    q = min(|d|, delta). Returns the sum of the values.
    """
    n = z.shape[0]
    for b in prange(partial.shape[0]):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        m = hi - lo
        zb, tb = z[lo:hi], t[lo:hi]
        vb = values[lo:hi] if want_values else np.empty(m, dtype=z.dtype)
        gb = g[lo:hi] if want_grad else np.empty(m, dtype=z.dtype)
        zero = _like(zb[0], 0.0)
        one = _like(zb[0], 1.0)
        half = _like(zb[0], 0.5)
        delta = _like(zb[0], param)
        sc = _like(zb[0], 2.0 * scale if kind == 0 else scale)
        if kind == 3:
            for j in range(m):
                d = zb[j] - tb[j]
                a = abs(d)
                q = delta if a > delta else a  # NaN stays NaN
                vb[j] = half * (q * q) + delta * (a - q)
                gb[j] = (one if d > zero else (-one if d < zero else d)) * q * sc
        elif kind == 2:
            for j in range(m):
                d = zb[j] - tb[j]
                vb[j] = abs(d)
                gb[j] = (one if d > zero else (-one if d < zero else d)) * sc
        elif kind == 1:
            for j in range(m):
                d = zb[j] - tb[j]
                vb[j] = half * (d * d)
                gb[j] = d * sc
        else:
            for j in range(m):
                d = zb[j] - tb[j]
                vb[j] = d * d
                gb[j] = d * sc
        partial[b] = _sum(vb, m)
    return _sum(partial, partial.shape[0])


regression_parallel, regression_serial = _builds(_regression)


# --------------------------------------------------------------------------- sigmoid focal
# Notation (losskit.losses.focal): p = sigmoid(z), q = 1 - p = sigmoid(-z), s = 1 - t,
# q_t = 1 - p_t = s p + t q, alpha_t = alpha t + (1 - alpha) s, the cross-entropy
# c = t softplus(-z) + s softplus(z), and
#     loss = alpha_t q_t^gamma c,
#     grad = alpha_t [q_t^gamma (p - t) + gamma (1 - 2t) q_t^(gamma-1) p q c].
# Everything comes from one exponential e = exp(-|z|) <= 1, one division r = 1 / (1 + e)
# and one log1p(e) (the generic kernel's log-space form, which this kernel used to follow,
# takes five exponentials, a log and a log1p):
#     p = P r, q = Q r with (P, Q) = (1, e) for z >= 0, (e, 1) below (NaN: e),
#     p q = e r^2 (P Q = e),
#     p - t = (s P - t Q) r          (exact for a hard label, also where p rounds to 1),
#     q_t = (s P + t Q) r            (two terms >= 0: no cancellation, a few ulp for soft
#                                     targets too),
#     softplus(+-z) = max(+-z, 0) + log1p(e)  (exact at huge |z|, relative-exact when tiny).
# Integer gamma = 1, 2, 3 (each a literal in a loop of its own, so that the powers unroll
# and the loop vectorises): q_t^gamma and q_t^(gamma-1) p q by plain multiplication. Every
# factor lies in [0, 1] and gamma - 1 >= 0, so the products are bounded, and a partial
# product underflows only where the result does (q_t^gamma rounds to 0 where the generic
# exp(gamma log q_t) does; subnormal rounding is far below the tests' absolute tolerance).
# Any other gamma (0 < gamma < 1 above all, where q_t^(gamma-1) is unbounded as q_t -> 0,
# while q_t^(gamma-1) p q <= 1 is not): the log-space form, with
#     log q_t = log(s P + t Q) - log1p(e)
# (the generic logsumexp of log p + log s and log q + log t: its shift max(log p, log q)
# is -log1p(e) and its two exponentials are 1 and e), q_t^gamma = exp(gamma log q_t), and
#     q_t^(gamma-1) p q = exp((gamma - 1) log q_t - softplus(z) - softplus(-z)),
# exponentiated once the large terms are combined, so finite for every gamma >= 0; three
# exponentials, a log and a log1p. gamma = 0 is alpha-weighted BCE. Zero weights follow the
# generic kernel's 0 * inf = 0 rules: a target of 0 (or 1) removes an infinite softplus
# from c, a zero focal factor (q_t^gamma or q_t^(gamma-1) p q) removes c, and alpha_t = 0
# removes the loss unless it is NaN.
@njit(inline="always", **_JIT)
def _focal_element(zj, tj, npow, gm, has_alpha, al):
    """(loss, gradient) of one element, unscaled. ``npow``: 0, 1, 2 or 3 for that integer
    gamma, -1 for any gamma (log space); always a literal, so that the branches fold."""
    zero = _like(zj, 0.0)
    one = _like(zj, 1.0)
    s = one - tj
    e = _exp_neg(-abs(zj))
    r = one / (one + e)
    l1p = _log1p_unit(e)
    up = zj >= zero
    big_p = one if up else e  # p = big_p r, q = big_q r, big_p big_q = e
    big_q = e if up else one
    sp_pos = (zj if zj > zero else zero) + l1p  # softplus(z) = -log q
    sp_neg = (-zj if zj < zero else zero) + l1p  # softplus(-z) = -log p
    ce = tj * (sp_neg if tj != zero else zero) + s * (sp_pos if s != zero else zero)
    gr = (s * big_p - tj * big_q) * r  # p - t, exact for a hard label where p rounds to 1
    if npow == 0:
        loss = ce
    else:
        if npow > 0:
            qt = (s * big_p + tj * big_q) * r
            w1 = one  # q_t^(gamma-1)
            for _ in range(npow - 1):
                w1 = w1 * qt
            weight = w1 * qt
            ee = w1 * (e * r * r)  # q_t^(gamma-1) p q
        else:
            log_qt = _log_unit(s * big_p + tj * big_q) - l1p
            weight = _exp(gm * log_qt)
            ok = log_qt > _like(zj, -math.inf)  # -inf: a perfect prediction, factor 0
            safe = log_qt if ok else zero
            ee = _exp((gm - one) * safe - (sp_pos + sp_neg)) if ok else zero
        loss = weight * (ce if weight != zero else zero)
        focus = gm * (one - _like(zj, 2.0) * tj) * (ee * (ce if ee != zero else zero))
        gr = weight * gr + focus
    if has_alpha:
        alpha_t = al * tj + (one - al) * s
        loss = zero if (alpha_t == zero and loss == loss) else alpha_t * loss
        gr = alpha_t * gr
    return loss, gr


@njit(inline="always", **_JIT)
def _focal_loop(zb, tb, vb, gb, npow, gm, has_alpha, al, sc):
    for j in range(zb.shape[0]):
        loss, gr = _focal_element(zb[j], tb[j], npow, gm, has_alpha, al)
        vb[j] = loss
        gb[j] = gr * sc


@njit(**_JIT)
def _focal_block(zb, tb, vb, gb, kind, gamma, has_alpha, alpha, scale):
    """One block: values into vb, scale * gradient into gb. ``kind``: gamma when it is
    0, 1, 2 or 3, else -1; each kind has a loop of its own, compiled with its exponent.
    A function of its own (not inlined into the kernels): compiled once for both builds,
    and the parallel build's loop body stays small."""
    gm = _like(zb[0], gamma)
    al = _like(zb[0], alpha)
    sc = _like(zb[0], scale)
    if kind == 2:
        _focal_loop(zb, tb, vb, gb, 2, gm, has_alpha, al, sc)
    elif kind == 1:
        _focal_loop(zb, tb, vb, gb, 1, gm, has_alpha, al, sc)
    elif kind == 3:
        _focal_loop(zb, tb, vb, gb, 3, gm, has_alpha, al, sc)
    elif kind == 0:
        _focal_loop(zb, tb, vb, gb, 0, gm, has_alpha, al, sc)
    else:
        _focal_loop(zb, tb, vb, gb, -1, gm, has_alpha, al, sc)


def _sigmoid_focal(z, t, gamma, has_alpha, alpha, scale, g, values, partial, want_values,
                   want_grad):
    """Elementwise sigmoid focal loss over flat z, t, in blocks of ``BLOCK``, with the
    formulas above (the same function as the generic kernel's, ``losskit.losses.focal``): one
    exponential, one log1p and one division per element for gamma in {0, 1, 2, 3}.

    Returns (the number of blocks with a target outside [0, 1], the sum of the values).
    """
    n = z.shape[0]
    bad = 0
    kind = -1
    if gamma == 0.0 or gamma == 1.0 or gamma == 2.0 or gamma == 3.0:
        kind = int(gamma)
    for b in prange(partial.shape[0]):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        m = hi - lo
        zb, tb = z[lo:hi], t[lo:hi]
        vb = values[lo:hi] if want_values else np.empty(m, dtype=z.dtype)
        gb = g[lo:hi] if want_grad else np.empty(m, dtype=z.dtype)
        _focal_block(zb, tb, vb, gb, kind, gamma, has_alpha, alpha, scale)
        partial[b] = _sum(vb, m)
        bad += _outside_unit(tb, m)
    return bad, _sum(partial, partial.shape[0])


sigmoid_focal_parallel, sigmoid_focal_serial = _builds(_sigmoid_focal)
