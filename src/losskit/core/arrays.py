"""Array-library plumbing: one namespace for every backend.

Every kernel in losskit is written once against the Python Array API standard and
receives its namespace ``xp`` from :func:`namespace`.  NumPy, PyTorch, JAX, CuPy,
Dask and array-api-strict arrays all work; results stay in the caller's array type
and on the caller's device.

Nothing here imports torch, jax, cupy or dask: ``import losskit`` stays light.
"""

from __future__ import annotations

import contextvars
import math
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "index_dtype",
    "without_autograd",
    "namespace",
    "as_array",
    "device_of",
    "can_inspect",
    "readable",
    "numbers_on",
    "with_known_sizes",
    "compute_dtype",
    "is_floating",
    "to_float",
    "to_numpy",
    "ensure_array",
    "quiet",
]


def _is_array(x: Any) -> bool:
    return array_api_compat.is_array_api_obj(x) and not isinstance(x, (int, float, complex, bool))


def namespace(*arrays: Any):
    """Array-API namespace shared by ``arrays`` (``None`` and Python scalars ignored).

    Lists, tuples and Python scalars do not decide the namespace; with no array at all
    the namespace is NumPy's.
    """
    real = [a for a in arrays if a is not None and _is_array(a)]
    if not real:
        return array_api_compat.array_namespace(np.empty(0))
    try:
        return array_api_compat.array_namespace(*real)
    except TypeError as exc:
        kinds = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in real})
        raise TypeError(
            "all array arguments must come from one array library; got " + ", ".join(kinds)
        ) from exc


def device_of(x: Any):
    """The device of ``x`` (``None`` for things that are not arrays)."""
    if x is None or not _is_array(x):
        return None
    return array_api_compat.device(x)


def as_array(x: Any, xp, *, device=None, name: str = "argument", loss: str | None = None):
    """``x`` as an array of namespace ``xp`` on ``device``.

    Arrays of ``xp`` pass through untouched; lists, tuples, Python scalars and NumPy
    arrays (when ``xp`` is not NumPy) are converted. Errors name the argument (and the
    ``loss`` it was given to).
    """
    if x is None:
        return None
    arg = f"`{name}` of {loss}" if loss else f"`{name}`"
    if _is_array(x):
        try:
            if array_api_compat.array_namespace(x) is xp:
                return x
        except TypeError:
            pass
        if not array_api_compat.is_numpy_array(x):
            raise TypeError(
                f"{arg} is a {type(x).__module__}.{type(x).__name__}, but the other "
                f"arguments are {xp.__name__.replace('array_api_compat.', '')} arrays: pass "
                "arrays of one library"
            )
    if isinstance(x, str) or (isinstance(x, (list, tuple)) and any(isinstance(v, str) for v in x)):
        what = "a string" if isinstance(x, str) else f"{type(x).__name__} of strings"
        raise TypeError(f"{arg} must be numeric array-like (an array, a number or nested "
                        f"lists of numbers); got {what} {x!r:.40}")
    if isinstance(x, np.ndarray) and x.dtype == object:
        raise TypeError(f"{arg} must be a numeric array; got dtype object")
    try:
        arr = np.asarray(x)
    except ValueError as exc:
        if "inhomogeneous" in str(exc) or "sequence" in str(exc):
            raise ValueError(
                f"{arg} is ragged: its nested lists have different lengths or depths, so it "
                f"is not a rectangular array ({exc}). Pad it to one shape, or pass an "
                "array") from None
        raise ValueError(f"{arg} cannot be read as an array: {exc}") from None
    except TypeError as exc:
        raise TypeError(f"{arg} must be a numeric array-like; got {type(x).__name__}: "
                        f"{exc}") from None
    if arr.dtype.kind not in "biuf":
        what = "strings" if arr.dtype.kind in "SU" else f"dtype {arr.dtype}"
        raise TypeError(f"{arg} must be numeric; got {what}")
    if arr.dtype.kind == "f" and not _is_array(x) and arr.dtype != np.float64:
        arr = arr.astype(np.float64)
    if array_api_compat.is_numpy_namespace(xp):
        return arr
    if device is None:
        return xp.asarray(arr)
    if arr.ndim == 0 and array_api_compat.is_torch_namespace(xp) and \
            getattr(device, "type", "cpu") != "cpu":
        # a number, filled on the device (see numbers_on: no host-to-device copy)
        return xp.full((), arr.item(), dtype=getattr(xp, arr.dtype.name), device=device)
    return xp.asarray(arr, device=device)


_INSPECT: contextvars.ContextVar[bool] = contextvars.ContextVar("losskit_inspect", default=True)


class unchecked:
    """Inside: no check reads array values (``validate=False`` of every loss).

    Shapes, dtypes and options are still checked; label ranges, probability ranges,
    non-negative weights and box orders are not. (A class, not a generator: entered on
    every ``validate=False`` call, it costs a fraction of a microsecond.)
    """

    __slots__ = ("_token",)

    def __enter__(self):
        self._token = _INSPECT.set(False)

    def __exit__(self, *exc):
        _INSPECT.reset(self._token)
        return False


def with_known_sizes(x):
    """``x``; a Dask array whose shape holds unknown sizes (NaN, as boolean masking leaves
    them) with its chunk sizes computed (Dask's ``compute_chunk_sizes``: one pass over
    what the array depends on), for the code that needs the sizes as numbers, and the
    chunks that masking emptied merged away (blocks of no rows trip Dask's block-wise
    concatenation). On a new array object over the same graph: the caller's array is
    not changed."""
    if array_api_compat.is_dask_array(x) and any(math.isnan(d) for d in x.shape):
        x = type(x)(x.dask, x.name, x.chunks, meta=x._meta)
        x.compute_chunk_sizes()
        if any(0 in c and len(c) > 1 for c in x.chunks):
            x = x.rechunk(tuple(tuple(n for n in c if n) or (0,) for c in x.chunks))
    return x


def numbers_on(xp, values, *, dtype, device):
    """The Python numbers ``values`` as a 1-d array of ``dtype`` on ``device``.

    On a PyTorch device other than the CPU each entry is filled on the device: a tensor
    made from host data (``torch.tensor``, ``torch.asarray``) is a host-to-device copy that
    waits for everything queued on the device, a stall in every training step. Elsewhere
    ``xp.asarray``."""
    if array_api_compat.is_torch_namespace(xp) and getattr(device, "type", "cpu") != "cpu":
        values = list(values)
        if len(set(values)) <= 1:
            return xp.full((len(values),), values[0] if values else 0, dtype=dtype,
                           device=device)
        return xp.stack([xp.full((), v, dtype=dtype, device=device) for v in values])
    return xp.asarray(values, dtype=dtype, device=device)


def can_inspect(x: Any) -> bool:
    """Whether the values of ``x`` can be read now, cheaply, for validation.

    False inside :func:`unchecked` (``validate=False``) and wherever :func:`readable` is
    False; True for NumPy, CuPy, CPU PyTorch, array-api-strict and concrete JAX arrays.
    Where it is False, the value checks are deferred: an invalid value makes the result
    NaN (:mod:`losskit.core.validation`).
    """
    return x is not None and _INSPECT.get() and readable(x)


def readable(x: Any) -> bool:
    """Whether the values of the array ``x`` can be read back now without stalling
    anything: False for Dask arrays (lazy), JAX tracers (inside ``jax.jit``/``grad``) and
    PyTorch tensors that are not on the CPU (CUDA and other devices: each read would be a
    host synchronisation, which a training step must not have; meta and fake tensors have
    no values). Value checks and shortcuts that depend on values (skipping ignored rows)
    ask it."""
    if array_api_compat.is_dask_array(x):
        return False
    if array_api_compat.is_jax_array(x):
        try:
            import jax

            return not isinstance(x, jax.core.Tracer)
        except Exception:  # pragma: no cover - jax internals moved
            return False
    if array_api_compat.is_torch_array(x):
        # torch.compile tracing hands over fake tensors whose values cannot be read
        return (x.device.type == "cpu"
                and type(x).__name__ not in ("FakeTensor", "FunctionalTensor"))
    return True


def is_floating(xp, x) -> bool:
    return xp.isdtype(x.dtype, "real floating")


def without_autograd(x):
    """``x`` without PyTorch autograd history (a loss that computes its own gradients works
    on the detached tensor); any other array unchanged."""
    if array_api_compat.is_torch_array(x) and x.requires_grad:
        return x.detach()
    return x


def index_dtype(xp):
    """The library's default integer dtype, for indices (int32 in JAX without x64, where
    asking for int64 warns and truncates; int64 elsewhere)."""
    try:
        return xp.__array_namespace_info__().default_dtypes()["integral"]
    except (AttributeError, KeyError, TypeError):  # pragma: no cover - an older namespace
        return xp.int64


def compute_dtype(xp, dtype):
    """The dtype arithmetic runs in: float16/bfloat16 are accumulated in float32."""
    if dtype == xp.float32 or dtype == xp.float64:
        return dtype
    return xp.float32


def to_float(x) -> float:
    """A 0-d array (of any library) as a Python float; only for inspectable arrays."""
    if array_api_compat.is_torch_array(x):
        return float(x.detach().cpu().item())
    if hasattr(x, "__float__"):
        try:
            return float(x)
        except TypeError:
            pass
    return float(np.asarray(x))


def to_numpy(x) -> np.ndarray:
    """Any array (or array-like) as a NumPy array, moving it to the host if needed."""
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_dask_array(x):
        return np.asarray(x.compute())
    if _is_array(x) and not isinstance(x, np.ndarray):
        try:
            return np.asarray(x)
        except Exception:
            return np.from_dlpack(x)
    return np.asarray(x)


def _error_state_variable():
    """NumPy 2's floating-point error-state context variable and its constructor, or
    ``(None, None)`` where they are not what :class:`_Quiet` expects (NumPy 1.x, or
    private names that moved or changed): tried once here, np.errstate otherwise."""
    try:
        from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj

        token = _extobj_contextvar.set(_make_extobj(all="ignore"))
        try:
            works = set(np.geterr().values()) == {"ignore"}
        finally:
            _extobj_contextvar.reset(token)
    except Exception:  # noqa: BLE001 - any failure: the public np.errstate
        return None, None
    return (_extobj_contextvar, _make_extobj) if works else (None, None)


_extobj_contextvar, _make_extobj = _error_state_variable()


class _Quiet:
    """``np.errstate(all="ignore")`` for NumPy 2 without its generality: the context
    variable NumPy reads set and reset directly (0.35 us against 1.1 us per use, in a
    call of 5-10 us). Per use a new object (the token is per entry, so threads and nested
    uses are safe, as with np.errstate)."""

    __slots__ = ("_token",)

    def __enter__(self):
        self._token = _extobj_contextvar.set(_make_extobj(all="ignore"))
        return self

    def __exit__(self, *exc_info):
        _extobj_contextvar.reset(self._token)


def quiet():
    """Silence NumPy's floating-point warnings inside a kernel.

    Infinite and NaN inputs are legitimate (``-inf`` logits, NaN that must propagate):
    their results are defined by the formulas and tested, so ``inf - inf`` inside a
    branch that is masked away afterwards must not warn. Other libraries do not warn.
    """
    if _extobj_contextvar is not None:
        return _Quiet()
    return np.errstate(invalid="ignore", divide="ignore", over="ignore", under="ignore")


def ensure_array(x):
    """NumPy reductions return scalars (``np.float64``); the contract is a 0-d array."""
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def finfo_eps(xp, dtype) -> float:
    """Machine epsilon of ``dtype`` (float16 and bfloat16 included)."""
    return float(xp.finfo(dtype).eps)


LN2 = math.log(2.0)
