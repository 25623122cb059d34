"""Which implementation answers a call: the fused kernels or the generic path.

The kernel-family tests compare every fused kernel with the generic Array-API path (the
reference) and check that the fused kernel really answered (``fast_paths.STATS`` counts
the calls each engine answered, per loss).
"""

from __future__ import annotations

from losskit.core import dispatch
from losskit.kernels import fast_paths

__all__ = ["call", "generic", "fused"]


def call(loss, arrays, want, kw):
    """``loss(...)``, ``loss.grad(...)`` or ``loss.value_and_grad(...)``."""
    if want == "value":
        return loss(*arrays, **kw)
    if want == "grad":
        return loss.grad(*arrays, **kw)
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
