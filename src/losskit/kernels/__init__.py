"""Fused CPU kernels for plain NumPy arrays: the fast paths of the hot losses.

``fast_paths``      per-loss fused implementations and the engine choice (numba or NumPy);
                    each registers with :mod:`losskit.core.dispatch` through its loss module
``numba_kernels``   the numba kernels (compiled on first use; the ``fast`` extra)
``gradient_cache``  reuse of large gradient buffers between training steps

The generic Array-API kernels (each loss's ``_compute`` in :mod:`losskit.losses`) are the
reference; these must equal them up to rounding.
"""

from .gradient_cache import clear_gradient_cache

__all__ = ["clear_gradient_cache"]
