r"""Numba kernels of the fused NumPy fast paths (imported only when numba is installed).

Each kernel makes one sweep over its rows (softmax cross-entropy) or over blocks of
elements (the elementwise losses), with the rows processed in ``prange``: the inputs are
read once from memory and the gradient written once; everything else happens in cache.
Two builds of each kernel exist, ``parallel=True`` for large inputs and a serial one for
small calls, where starting the thread pool would cost more than the work.

``fastmath`` stays off: NaN and infinities keep their IEEE meaning, which the losses'
documented edge cases rely on. Two things make the kernels vectorise anyway:

* ``exp``, ``log`` and ``log1p`` are evaluated by :func:`_exp` (a Cody-Waite range
  reduction and a Taylor polynomial), :func:`_log_unit` and :func:`_log1p_unit` (the
  ``artanh`` series), instead of calls into the C library, which LLVM cannot vectorise
  (PyPI's llvmlite has no SVML);
* sums and maxima use eight independent accumulators, which the SLP vectoriser packs
  into one SIMD register without reassociating any single accumulator's additions.
  Sums accumulate in float64, also for float32 inputs.

Accuracy: :func:`_exp` is within 2 ulp of the exact exponential for float32 and
float64 (the Taylor remainder is below 0.1 ulp; the rest is rounding), gradual underflow
and overflow to ``inf`` included; ``log1p`` of a number in [0, 1] uses
:math:`2\operatorname{artanh}(u/(2+u))` and ``log`` of a number in [0, 1] the exponent
and :math:`2\operatorname{artanh}((m-1)/(m+1))` of the mantissa, summed to the same
accuracy. ``tests/test_fast.py`` compares every kernel with the generic Array-API kernel.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core.errors import NumbaError
from numba.extending import intrinsic, overload

__all__ = [
    "softmax_ce_parallel", "softmax_ce_serial",
    "sigmoid_bce_parallel", "sigmoid_bce_serial",
    "regression_parallel", "regression_serial",
    "sigmoid_focal_parallel", "sigmoid_focal_serial",
    "BLOCK", "NumbaError",
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
    p = p * r + _INV_FACT64[0]
    n1 = ni >> np.int64(1)
    n2 = ni - n1
    s1 = _f64_from_bits((n1 + np.int64(1023)) << np.int64(52))
    s2 = _f64_from_bits((n2 + np.int64(1023)) << np.int64(52))
    return (p * s1) * s2


def _exp(x):  # pragma: no cover - typed by the overload below
    raise NotImplementedError


@overload(_exp)
def _exp_overload(x):
    if x == types.float32:
        return _exp32
    if x == types.float64:
        return _exp64
    return None


# --------------------------------------------------------------------------- log1p(u), 0 <= u <= 1
# log(1 + u) = 2 artanh(f), f = u / (2 + u) in [0, 1/3]: no cancellation for small u, and
# the odd series 2 f (1 + f^2/3 + f^4/5 + ...) converges like 9^-k (remainder < 0.1 ulp
# after 7 terms in float32, 17 in float64).
_ODD32 = tuple(_F32(1.0 / (2 * k + 1)) for k in range(7))
_ODD64 = tuple(1.0 / (2 * k + 1) for k in range(17))
_TWO32 = _F32(2.0)


def _log1p_unit32(u):
    f = u / (_TWO32 + u)
    w = f * f
    p = _ODD32[6]
    p = p * w + _ODD32[5]
    p = p * w + _ODD32[4]
    p = p * w + _ODD32[3]
    p = p * w + _ODD32[2]
    p = p * w + _ODD32[1]
    p = p * w + _ODD32[0]
    return _TWO32 * f * p


def _log1p_unit64(u):
    f = u / (2.0 + u)
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


def _log1p_unit(u):  # pragma: no cover - typed by the overload below
    raise NotImplementedError


@overload(_log1p_unit)
def _log1p_unit_overload(u):
    if u == types.float32:
        return _log1p_unit32
    if u == types.float64:
        return _log1p_unit64
    return None


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


def _log_unit(x):  # pragma: no cover - typed by the overload below
    raise NotImplementedError


@overload(_log_unit)
def _log_unit_overload(x):
    if x == types.float32:
        return _log_unit32
    if x == types.float64:
        return _log_unit64
    return None


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
        g[j] = _exp(z[j] - m)
    s = _sum(g, k)  # >= 1: the maximum contributes e^0
    c = _like(m, scale / s)
    for j in range(k):
        g[j] = g[j] * c
    g[label] -= _like(m, scale)
    return math.log(s) - float(zy - m)


def _softmax_ce(z, y, has_ignore, ignore, mean, scale, g, values, want_grad):
    """Softmax cross-entropy of the rows of z (N, K) with integer labels y (N,).

    First a serial pass over the labels: the number outside [0, K) that are not
    ``ignore`` (when ``has_ignore``), and the number kept; with bad labels nothing else
    is done (the caller runs the generic path, which raises). ``mean``: the gradient's
    scale is 1 / kept (0 when nothing is kept), else ``scale``. Then the rows, in
    ``prange``: per-row values into ``values`` (float64) and, when ``want_grad``,
    scale * (softmax - onehot) into g (else g is a dummy and each row gets a scratch row);
    ignored rows give 0 and a zero gradient row.

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
    for i in prange(n):
        label = y[i]
        if has_ignore and label == ignore:
            if want_grad:
                g[i, :] = 0
            values[i] = 0.0
        else:
            gi = g[i] if want_grad else np.empty(k, dtype=z.dtype)
            values[i] = _ce_row(z[i], gi, label, scale)
    return bad, kept, _sum(values, n)


softmax_ce_parallel = njit(parallel=True, **_JIT)(_softmax_ce)
softmax_ce_serial = njit(**_JIT)(_softmax_ce)


# --------------------------------------------------------------------------- sigmoid BCE
def _sigmoid_bce(z, t, pw, block, scale, g, values, partial, want_values, want_grad):
    """Elementwise BCE of logits over flat z, t (C order), in blocks of ``block``.

    ``pw`` holds the positive weight of each element of a block (``block`` is a multiple
    of the class count, so every block starts at class 0; ones without ``pos_weight``).
    Writes scale * grad into g (when want_grad), per-element values into ``values`` (when
    want_values) and per-block float64 sums into ``partial``. Returns (the number of
    blocks with a target outside [0, 1], the sum of the values); with bad targets the
    caller runs the generic path, which raises.
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
        outside = False  # a loop of its own: inside the main loop it costs a third more
        for j in range(m):
            outside |= (tb[j] < _like(tb[j], 0.0)) | (tb[j] > _like(tb[j], 1.0))
        for j in range(m):
            zj = zb[j]
            tj = tb[j]
            zero = _like(zj, 0.0)
            one = _like(zj, 1.0)
            pos = tj * pw[j]
            neg = one - tj
            e = _exp(-abs(zj))
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
        bad += outside
    return bad, _sum(partial, partial.shape[0])


sigmoid_bce_parallel = njit(parallel=True, **_JIT)(_sigmoid_bce)
sigmoid_bce_serial = njit(**_JIT)(_sigmoid_bce)


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


regression_parallel = njit(parallel=True, **_JIT)(_regression)
regression_serial = njit(**_JIT)(_regression)


# --------------------------------------------------------------------------- sigmoid focal
def _sigmoid_focal(z, t, gamma, has_alpha, alpha, scale, g, values, partial, want_values,
                   want_grad):
    """Elementwise sigmoid focal loss over flat z, t, in blocks of ``BLOCK``: the generic
    kernel's log-space formulas (``losskit._focal``), one element at a time.

    Returns (the number of blocks with a target outside [0, 1], the sum of the values).
    """
    n = z.shape[0]
    bad = 0
    for b in prange(partial.shape[0]):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        m = hi - lo
        zb, tb = z[lo:hi], t[lo:hi]
        vb = values[lo:hi] if want_values else np.empty(m, dtype=z.dtype)
        gb = g[lo:hi] if want_grad else np.empty(m, dtype=z.dtype)
        outside = False
        for j in range(m):
            outside |= (tb[j] < _like(tb[j], 0.0)) | (tb[j] > _like(tb[j], 1.0))
        zero = _like(zb[0], 0.0)
        one = _like(zb[0], 1.0)
        two = _like(zb[0], 2.0)
        ninf = _like(zb[0], -math.inf)
        gm = _like(zb[0], gamma)
        al = _like(zb[0], alpha)
        sc = _like(zb[0], scale)
        for j in range(m):
            zj = zb[j]
            tj = tb[j]
            e = _exp(-abs(zj))
            l1p = _log1p_unit(e)
            lp = -((-zj if zj < zero else zero) + l1p)  # log sigmoid(z)
            lq = -((zj if zj > zero else zero) + l1p)  # log sigmoid(-z)
            s = one - tj
            # 0 * inf = 0 (a zero weight removes an infinite term)
            ce = tj * (-lp if tj != zero else zero) + s * (-lq if s != zero else zero)
            loss = ce
            weight = one
            log_qt = zero
            if gamma != 0.0:
                mx = lp if lp > lq else lq
                mx = mx if (mx == mx and abs(mx) < math.inf) else zero
                e1 = _exp(lp - mx)
                e2 = _exp(lq - mx)
                inner = s * (e1 if s != zero else zero) + tj * (e2 if tj != zero else zero)
                log_qt = _log_unit(inner) + mx
                weight = _exp(gm * log_qt)
                loss = weight * (ce if weight != zero else zero)
            alpha_t = al * tj + (one - al) * s
            if has_alpha:
                loss = zero if (alpha_t == zero and loss == loss) else alpha_t * loss
            vb[j] = loss
            # p - t as (1 - t) sigmoid(z) - t sigmoid(-z)
            den = one + e
            sig_p = (one if zj >= zero else e) / den
            sig_m = (one if -zj >= zero else e) / den
            gr = s * (sig_p if s != zero else zero) - tj * (sig_m if tj != zero else zero)
            if gamma != 0.0:
                ok = log_qt > ninf
                safe = log_qt if ok else zero
                expo = (gm - one) * safe + lp + lq if ok else ninf
                ee = _exp(expo)
                focus = gm * (one - two * tj) * (ee * (ce if ee != zero else zero))
                gr = weight * gr + focus
            if has_alpha:
                gr = alpha_t * gr
            gb[j] = gr * sc
        partial[b] = _sum(vb, m)
        bad += outside
    return bad, _sum(partial, partial.shape[0])


sigmoid_focal_parallel = njit(parallel=True, **_JIT)(_sigmoid_focal)
sigmoid_focal_serial = njit(**_JIT)(_sigmoid_focal)
