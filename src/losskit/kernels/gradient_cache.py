r"""Large gradient buffers reused across training steps: the page faults of a new gradient
cost as much as the loss itself at 10M float32 elements.

The fast paths (:mod:`losskit.kernels.fast_paths`) take every gradient they return without
``out=`` from :func:`fresh`. ``LOSSKIT_GRADIENT_CACHE_MIB`` bounds what is kept (default
1024; 0 turns the cache off); :func:`clear_gradient_cache` releases it.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np

__all__ = ["GradientCache", "GRADIENT_CACHE", "clear_gradient_cache", "fresh"]


#: fresh gradients from this size on are touched once per 2 MiB before a kernel runs
PREFAULT_MIN = 1 << 26
#: gradients from this size on are served by the gradient cache (below, page faults are
#: cheap: glibc reuses freed memory itself)
CACHE_MIN = 1 << 22


def _cache_limit() -> int:
    """Bytes the gradient cache may hold: ``LOSSKIT_GRADIENT_CACHE_MIB`` (default 1024)."""
    raw = os.environ.get("LOSSKIT_GRADIENT_CACHE_MIB", "").strip()
    try:
        mib = float(raw) if raw else 1024.0
    except ValueError:
        mib = 1024.0
    return max(0, int(mib * (1 << 20)))


class GradientCache:
    """Large gradient buffers, reused once the caller has dropped every reference.

    A fresh gradient of a few hundred MiB costs more in page faults (the kernel zeroes
    every new page) than the loss costs to compute; in a training loop the previous
    step's gradient of the same shape has usually been dropped by then. The cache keeps
    the buffers it handed out (at most :attr:`SLOTS` per shape and dtype, at most
    ``limit`` bytes in all, least recently used dropped first) and hands one out again
    only when nothing but the cache refers to it (``sys.getrefcount``; a view, a tensor
    from ``torch.from_numpy`` or a ``memoryview`` of the array counts as a reference), so
    a gradient the caller still holds is never overwritten. Like a memory allocator's free
    list, it cannot see a raw pointer kept without a reference (``arr.ctypes.data``).

    The price: up to ``limit`` bytes stay allocated after the gradients are gone.
    ``LOSSKIT_GRADIENT_CACHE_MIB`` (read at import; default 1024, 0 turns the cache off)
    sets the limit; :func:`clear_gradient_cache` releases what is held.
    """

    #: buffers kept per (shape, dtype): the one being returned and the previous step's
    SLOTS = 2

    def __init__(self, limit: int):
        self.limit = limit
        self._slots: dict = {}  # (shape, dtype) -> [arrays], insertion order = recency
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers held (handed out or idle)."""
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()
            self._bytes = 0

    def empty_like(self, z):
        """An uninitialised C-contiguous array of ``z``'s shape and dtype that the cache
        holds (an idle buffer, else a new one it keeps), or None: below ``CACHE_MIN``,
        above the limit, or every slot of this shape in use."""
        size = z.nbytes
        if size < CACHE_MIN or size > self.limit:
            return None
        shape, dtype = z.shape, z.dtype
        key = (shape, dtype)
        with self._lock:
            held = self._slots.pop(key, [])
            self._slots[key] = held  # most recently used
            for i in range(len(held)):
                if _idle(held, i):
                    return held[i]
            if len(held) >= self.SLOTS:
                return None  # every slot in use: an uncached array
            while self._bytes + size > self.limit and self._drop_idle():
                pass
            if self._bytes + size > self.limit:
                return None
            a = np.empty(shape, dtype=dtype)
            held.append(a)
            self._bytes += size
            return a

    def _drop_idle(self) -> bool:
        """Release the least recently used idle buffer; False when there is none."""
        for key, held in self._slots.items():
            for i in range(len(held)):
                if _idle(held, i):
                    self._bytes -= held[i].nbytes
                    del held[i]
                    if not held:
                        del self._slots[key]
                    return True
        return False


def _idle(held, i) -> bool:
    """Whether nothing but the list ``held`` refers to ``held[i]`` (the two references
    counted: the list's and ``getrefcount``'s argument)."""
    return sys.getrefcount(held[i]) == 2


#: the cache :func:`fresh` draws from
GRADIENT_CACHE = GradientCache(_cache_limit())


def clear_gradient_cache() -> None:
    """Release the gradient buffers the fast paths keep for reuse (see GradientCache)."""
    GRADIENT_CACHE.clear()


def fresh(z):
    """An uninitialised array like ``z`` (C-contiguous) for a gradient.

    Large ones come from :data:`GRADIENT_CACHE` when it has an idle buffer of this shape
    and dtype. A newly allocated large one is touched once per 2 MiB (a transparent huge
    page, which NumPy asks for) here, in one thread, so that the huge-page faults do not
    happen in the kernel's threads at once, where they stall each other. On the 2-core
    benchmark machine a (4096, 32768) float32 softmax cross-entropy took 111 ms instead
    of 134 ms that way (111 ms instead of 145 ms with
    ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``); the touch itself costs microseconds.
    """
    size = z.nbytes
    if size < CACHE_MIN and size < PREFAULT_MIN:  # a small one: neither kept nor touched
        return np.empty(z.shape, dtype=z.dtype)
    g = GRADIENT_CACHE.empty_like(z)
    if g is not None:
        return g
    g = np.empty(z.shape, dtype=z.dtype)
    if g.nbytes >= PREFAULT_MIN:
        g.reshape(-1)[:: (2 << 20) // g.itemsize] = 0
    return g
