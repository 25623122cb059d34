"""Which implementation answers a call: the fused kernels or the generic path.

The kernel-family tests compare every fused kernel with the generic Array-API path (the
reference) and check that the fused kernel really answered (``fast_paths.STATS`` counts
the calls each engine answered, per loss).
"""

from __future__ import annotations

import threading

import numpy as np

from losskit.core import dispatch
from losskit.kernels import fast_paths

__all__ = ["call", "generic", "fused", "tolerances", "assert_same", "check",
           "run_concurrently", "fast_paths_on"]


def fast_paths_on(monkeypatch, numba=True):
    """The fast paths on for one test (numba's too when ``numba``), whatever the
    ``LOSSKIT_DISABLE_*`` variables say: the kernel-family modules' autouse fixture."""
    monkeypatch.setattr(dispatch, "ENABLED", True)
    monkeypatch.setattr(fast_paths, "USE_NUMBA", numba)


def call(loss, arrays, want, kw):
    """``loss(...)``, ``loss.grad(...)``, ``loss.value_and_grad(...)`` (want "both"),
    ``loss.hessian(...)`` or ``loss.grad_and_hessian(...)``."""
    if want == "value":
        return loss(*arrays, **kw)
    if want == "grad":
        return loss.grad(*arrays, **kw)
    if want == "hessian":
        return loss.hessian(*arrays, **kw)
    if want == "grad_and_hessian":
        return loss.grad_and_hessian(*arrays, **kw)
    return loss.value_and_grad(*arrays, **kw)


def generic(loss, *arrays, want="both", **kw):
    """The generic (reference) path: fast paths switched off."""
    saved = dispatch.ENABLED
    dispatch.ENABLED = False
    try:
        return call(loss, arrays, want, kw)
    finally:
        dispatch.ENABLED = saved


def fused(loss, *arrays, engine="numba", want="both", answered=True, **kw):
    """The call as the pipeline routes it, asserting that ``engine``'s fused kernel
    answered (``answered=False``: that it did not, so the generic path did)."""
    key = (loss.name, engine)
    before = fast_paths.STATS[key]
    result = call(loss, arrays, want, kw)
    assert fast_paths.STATS[key] == before + answered, (
        f"the {engine} fused kernel {'did not answer' if answered else 'answered'}")
    return result


def tolerances(dtype):
    """(rtol, atol) of a fused result against the generic path in ``dtype``."""
    return (1e-5, 1e-6) if np.dtype(dtype) == np.float32 else (1e-12, 1e-13)


def assert_same(got, ref, dtype):
    """Same type, dtype and shape; the same numbers up to rounding (inf and NaN exactly)."""
    rtol, atol = tolerances(dtype)
    assert type(got) is np.ndarray and got.dtype == ref.dtype == dtype
    assert got.shape == ref.shape
    scale = max(1.0, float(np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0)))
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol * scale, equal_nan=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref))


def check(loss, arrays, engine, dtype, **kw):
    """value_and_grad, the value alone and the gradient alone of ``engine``'s fused kernel
    equal the generic path; the separate entry points equal the fused one exactly (same
    kernel). Returns the fused (value, gradient)."""
    v0, g0 = generic(loss, *arrays, **kw)
    v1, g1 = fused(loss, *arrays, engine=engine, **kw)
    assert_same(v1, v0, dtype)
    assert_same(g1, g0, dtype)
    np.testing.assert_array_equal(fused(loss, *arrays, engine=engine, want="value", **kw), v1)
    np.testing.assert_array_equal(fused(loss, *arrays, engine=engine, want="grad", **kw), g1)
    return v1, g1


def run_concurrently(fn, inputs, repeats=5):
    """``fn(*inputs[i])`` from one thread per input, ``repeats`` times each, all threads
    at once; the last result of each thread, in the order of ``inputs``."""
    results = [None] * len(inputs)

    def work(i):
        for _ in range(repeats):
            results[i] = fn(*inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return results
