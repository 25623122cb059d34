"""Input checks with messages that name the argument, what was expected and what came.

``TypeError`` for a wrong kind or dtype, ``ValueError`` for a wrong shape or range.
Data-dependent checks (ranges, labels) run only on arrays whose values can be read
now (see :func:`losskit.core.arrays.can_inspect`): never on Dask arrays, JAX tracers or
PyTorch tensors off the CPU (no host synchronisation); there they are deferred: a value
that fails one makes the result NaN.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import operator
from typing import Any, Iterable

import array_api_compat
import numpy as np

from .arrays import can_inspect, compute_dtype, to_float, to_numpy

__all__ = [
    "check_floating",
    "check_same_shape",
    "check_in_range",
    "check_labels",
    "check_two_values",
    "check_choice",
    "check_scalar",
    "check_int",
    "check_integer",
    "check_log_base",
    "check_sums_to_one",
]


def _dtype_name(dtype) -> str:
    s = str(dtype)
    for prefix in ("torch.", "dtype('", "<class '"):
        s = s.replace(prefix, "")
    return s.rstrip("')>").rsplit(".", 1)[-1]  # "array_api_strict.int64" -> "int64"


def check_floating(xp, name: str, x, *, loss: str | None = None) -> None:
    """``x`` must have a real floating dtype (integer predictions are an error)."""
    if not xp.isdtype(x.dtype, "real floating"):
        where = f" of `{loss}`" if loss else ""
        raise TypeError(
            f"`{name}`{where} must have a floating dtype (float16, bfloat16, float32 or "
            f"float64); got {_dtype_name(x.dtype)}. Convert it explicitly, e.g. "
            f"`{name}.astype(float32)`; losskit never casts floating inputs silently"
        )


def check_numeric(xp, name: str, x, *, bool_ok: bool = True) -> None:
    """``x`` holds real numbers (booleans too unless ``bool_ok`` is False: a weight or a
    factor given as True is a mistake, not 1)."""
    if not (xp.isdtype(x.dtype, "real floating") or xp.isdtype(x.dtype, "integral")
            or (bool_ok and x.dtype == xp.bool)):
        raise TypeError(f"`{name}` must be real-valued; got dtype {_dtype_name(x.dtype)}")


def _unknown(d) -> bool:
    return d is None or (isinstance(d, float) and math.isnan(d))


def same_shape(a, b) -> bool:
    """Whether two shapes are equal, a dimension unknown until computed (Dask's NaN after
    boolean masking, None) matching any: it is checked where it becomes known."""
    a, b = tuple(a), tuple(b)
    if a == b:
        return True
    return len(a) == len(b) and all(x == y or _unknown(x) or _unknown(y) for x, y in zip(a, b))


def check_same_shape(pred_name: str, pred_shape, name: str, shape, *, hint: str = "") -> None:
    """Shapes must match exactly: nothing is broadcast silently."""
    if not same_shape(pred_shape, shape):
        msg = (
            f"`{name}` must have the same shape as `{pred_name}` {tuple(pred_shape)}; "
            f"got {tuple(shape)}"
        )
        if len(pred_shape) == len(shape) + 1 and pred_shape[-1] == 1:
            msg += f"; squeeze the last axis of `{pred_name}` explicitly if that is meant"
        elif len(shape) == len(pred_shape) + 1 and shape[-1] == 1:
            msg += f"; squeeze the last axis of `{name}` explicitly if that is meant"
        if hint:
            msg += f". {hint}"
        raise ValueError(msg)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


# ---------------------------------------------------------------- checks that cannot read
# Where values cannot be read now (``validate=False``, JAX tracers, Dask, torch.compile's
# fake tensors), a value check records where its input is invalid instead of raising; the
# pipeline then makes the result NaN if anything was invalid: never a silently different
# number, and no Python branch on a traced value.
_DEFERRED: contextvars.ContextVar[list | None] = contextvars.ContextVar("losskit_deferred",
                                                                        default=None)


def defer_invalid(invalid) -> None:
    """Record a boolean array, True where a value failed a check that could not raise."""
    pending = _DEFERRED.get()
    if pending is not None:
        pending.append(invalid)


@contextlib.contextmanager
def deferred_checks():
    """The scope of one loss evaluation: yields the list :func:`defer_invalid` fills."""
    pending: list = []
    token = _DEFERRED.set(pending)
    try:
        yield pending
    finally:
        _DEFERRED.reset(token)


def poison(xp, pending, *arrays):
    """``arrays`` unchanged when nothing was recorded, else NaN wherever any recorded
    check failed (the whole result: a reduced loss mixes every example)."""
    if not pending:
        return arrays
    bad = None
    for invalid in pending:
        b = xp.any(invalid)
        bad = b if bad is None else (bad | b)
    return tuple(a if a is None else
                 xp.where(bad, xp.full_like(a, float("nan")), a) for a in arrays)


def _not_folded(x):
    """``x``; a JAX array behind an optimization barrier, so that XLA does not evaluate
    a reduction of a closed-over constant at compile time (40 s instead of 5 s for the
    min and max of 10M elements)."""
    if array_api_compat.is_jax_array(x):
        import jax

        return jax.lax.optimization_barrier(x)
    return x


def check_in_range(xp, name: str, x, lo: float, hi: float, *, hint: str = "",
                   lo_open: bool = False) -> None:
    """All values of ``x`` lie in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``; NaN passes: it
    propagates as NaN)."""
    if math.prod(x.shape) == 0:
        return
    if not can_inspect(x):
        # two reductions of x itself: no boolean mask of x's size (XLA on the CPU writes
        # one out before reducing it); NaN passes (min and max propagate it)
        xr = _not_folded(x)
        bad = None
        if lo != -math.inf:  # (an infinite bound needs no reduction of its own)
            least = xp.min(xr)
            bad = (least <= lo) if lo_open else (least < lo)
        if hi != math.inf:
            above = xp.max(xr) > hi
            bad = above if bad is None else (bad | above)
        if bad is not None:
            defer_invalid(bad)
        return
    low = (x <= lo) if lo_open else (x < lo)
    # NaN is neither above nor below: it propagates to the result instead.
    below = xp.any(low)
    above = xp.any(x > hi)
    if bool(below) or bool(above):
        finite = x
        if xp.isdtype(x.dtype, "real floating"):
            finite = xp.where(xp.isnan(x), xp.zeros_like(x), x)
        lo_v, hi_v = to_float(xp.min(finite)), to_float(xp.max(finite))
        edge = f"(min {_fmt(lo_v)})"
        side = (f"values at or below {_fmt(lo)} {edge}" if lo_open else
                f"values below {_fmt(lo)} {edge}") if bool(below) else \
            f"values above {_fmt(hi)} (max {_fmt(hi_v)})"
        interval = f"({_fmt(lo)}, {_fmt(hi)}]" if lo_open else f"[{_fmt(lo)}, {_fmt(hi)}]"
        msg = f"`{name}` must lie in {interval}; it has {side}"
        if hint:
            msg += f": {hint}"
        raise ValueError(msg)


def check_labels(xp, name: str, labels, num_classes: int, *, ignore_index: int | None) -> None:
    """Integer labels lie in ``[0, num_classes)``, except those equal to ``ignore_index``."""
    if math.prod(labels.shape) == 0:
        return
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid = valid | (labels == ignore_index)
    if not can_inspect(labels):
        defer_invalid(~valid)
        return
    if not bool(xp.all(valid)):
        bad = xp.where(valid, xp.zeros_like(labels), labels)
        lo, hi = int(to_float(xp.min(bad))), int(to_float(xp.max(bad)))
        worst = lo if lo < 0 else hi
        msg = (f"`{name}` must hold class indices in [0, {num_classes - 1}] "
               f"(num_classes={num_classes} from the class axis); got {worst}")
        if worst < 0:
            msg += ("; to skip targets such as padding, pass ignore_index="
                    f"{worst}" if ignore_index is None else
                    f" and ignore_index={ignore_index} does not match it")
        raise ValueError(msg)


def check_two_values(xp, name: str, x, allowed: tuple[float, float], *, loss: str,
                     meaning: str, hint: str = "") -> None:
    """Every entry of ``x`` is one of the two ``allowed`` values (e.g. labels -1/+1).

    The message lists up to five other values found (NaN last) and ends with ``hint``.
    """
    if math.prod(x.shape) == 0:
        return
    a, b = allowed
    if not can_inspect(x):
        defer_invalid(~((x == a) | (x == b) | (x != x)))  # NaN propagates by itself
        return
    if bool(xp.all((x == a) | (x == b))):
        return
    bad = sorted({float(v) for v in to_numpy(x).ravel().tolist()} - {a, b},
                 key=lambda v: (math.isnan(v), v))[:5]
    raise ValueError(f"`{name}` of {loss} must hold {meaning}; got also {bad}. {hint}".rstrip())


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"`{name}` must be one of {choices}; got {value!r}")


def check_scalar(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False) -> float:
    """A real Python number in the given interval; returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"`{name}` must be a real number; got {type(value).__name__}")
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a real number; got {value!r}") from exc
    bad = math.isnan(v)
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else _fmt(lo)
        hi_s = "inf" if hi is None else _fmt(hi)
        raise ValueError(f"`{name}` must lie in {left}{lo_s}, {hi_s}{right}; got {value!r}")
    return v


def check_integer(name: str, value: Any, *, loss: str | None = None,
                  or_none: bool = False) -> int | None:
    """Any integer (``numbers.Integral``: Python, NumPy, a user's own; not a bool) as an
    ``int``, as NumPy and PyTorch accept them; ``None`` passes when ``or_none``."""
    if value is None and or_none:
        return None
    where = f" of {loss}" if loss else ""
    expected = "an int" + (" or None" if or_none else "")
    if not isinstance(value, (bool, np.bool_)):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(f"`{name}`{where} must be {expected}; got {value!r}")


def check_int(name: str, value: Any, *, lo: int, hint: str = "", or_none: bool = False) -> int:
    """An integer (Python or NumPy; not a bool) of at least ``lo``; returns it as ``int``.

    ``hint`` follows the bound in the range message; ``or_none`` only words the type
    message for an option whose default is None (the caller handles None itself).
    """
    expected = f"an int >= {lo}" + (" or None" if or_none else "")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be {expected}; got a bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"`{name}` must be {expected}; got {type(value).__name__} "
                        f"{value!r}") from None
    if v < lo:
        raise ValueError(f"`{name}` must be >= {lo}{hint}; got {v}")
    return v


def check_log_base(base: Any) -> float:
    """A logarithm base: positive and not 1. Returns ``ln(base)``."""
    b = check_scalar("base", base, lo=0.0, lo_open=True)
    if b == 1.0:
        raise ValueError("`base` must be positive and not 1 (log base 1 is undefined); got 1. "
                         "Use math.e for nats, 2 for bits, 10 for the tutorials' numbers")
    if math.isinf(b):
        raise ValueError("`base` must be finite; got inf")
    return math.log(b)


def sums_to_one_tolerance(xp, dtype, k: int) -> float:
    """How far a sum of ``k`` probabilities of ``dtype`` may stray from 1 by rounding.

    ``k * min(1e-2, max(1e-6, 10 * sqrt(eps)))``: about ``1e-6 * k`` for float64,
    ``3.5e-3 * k`` for float32 and ``1e-2 * k`` for float16/bfloat16.
    """
    eps = float(xp.finfo(dtype).eps)
    return k * min(1e-2, max(1e-6, 10.0 * math.sqrt(eps)))


def check_sums_to_one(xp, name: str, x, axis: int, *, dtype=None, hint: str = "") -> None:
    """Every slice of ``x`` along ``axis`` sums to 1 within rounding (NaN passes).

    The tolerance is :func:`sums_to_one_tolerance` of ``dtype`` (default ``x.dtype``; pass
    the caller's dtype when ``x`` was already upcast); the sums are taken in the compute
    dtype (float32 for float16/bfloat16). Nothing is renormalised: a slice that
    does not sum to 1 is an error that tells the caller to normalise explicitly.
    """
    if math.prod(x.shape) == 0:
        return
    tol = sums_to_one_tolerance(xp, x.dtype if dtype is None else dtype, x.shape[axis])
    work = compute_dtype(xp, x.dtype)
    s = xp.sum(x if x.dtype == work else xp.astype(x, work), axis=axis)
    dev = xp.abs(s - 1.0)
    bad = dev > tol  # NaN compares False: it propagates to the result instead
    if not can_inspect(x):
        defer_invalid(bad)
        return
    if not bool(xp.any(bad)):
        return
    flat_dev = xp.reshape(xp.where(bad, dev, xp.zeros_like(dev)), (-1,))
    worst = int(to_float(xp.argmax(flat_dev)))
    worst_sum = to_float(xp.reshape(s, (-1,))[worst])
    n_bad = int(to_float(xp.sum(xp.astype(bad, work))))
    msg = (f"`{name}` must be a probability distribution along axis {axis}: every slice must "
           f"sum to 1 (within {tol:.2g}); {n_bad} of {math.prod(s.shape)} slices do not, the "
           f"worst sums to {_fmt(worst_sum)}. "
           f"Normalise it explicitly, e.g. `{name} / {name}.sum(axis={axis}, keepdims=True)`: "
           "losskit never renormalises silently")
    if hint:
        msg += f". {hint}"
    raise ValueError(msg)
