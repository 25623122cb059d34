"""The fast-path registry: fused kernels that the :class:`~losskit.core.loss.Loss` pipeline
consults for plain NumPy arrays.

The pipeline knows no kernel. A loss module registers the fused implementation of one of
its losses here (``register_fast_path(MSE, fast_paths.regression)``); the pipeline asks
:func:`fast_path_for` and, when it gets one, calls it as
``kernel(loss, arrays, reduction, sample_weight, options, want, out)``. The kernel answers
``NotImplemented`` for what it does not cover (invalid input included) and the generic
Array-API path then runs. Imports point one way: losses -> kernels -> core.

A subclass inherits its parent's fast path only while it keeps the parent's ``_compute``:
a loss that states other math gets no fused kernel for the old one.

``LOSSKIT_DISABLE_FAST=1`` (read at import) sets :data:`ENABLED` to False: every call runs
the generic kernels; tests switch the flag.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

__all__ = ["ENABLED", "env_flag", "register_fast_path", "fast_path_for", "unless_set",
           "with_second_order",
           "framework_hook",
           "register_framework_adapter", "FRAMEWORK_ADAPTERS"]


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to 1/true/yes/on."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


#: whether the fast paths run at all (``LOSSKIT_DISABLE_FAST=1`` at import: False)
ENABLED = not env_flag("LOSSKIT_DISABLE_FAST")

_FAST_PATHS: dict[type, Callable[..., Any]] = {}
_RESOLVED: dict[type, Callable[..., Any] | None] = {}


def register_fast_path(loss_type: type, kernel: Callable[..., Any]) -> None:
    """Register ``kernel`` as the fused implementation of ``loss_type``'s ``_compute``.

    The pipeline calls ``kernel(loss, arrays, reduction, sample_weight, options, want,
    out)`` for the default ``wrt``; a kernel with the attribute ``takes_wrt = True`` is
    also called for any other ``wrt``, with ``wrt=`` an index into
    ``loss.differentiable`` (one gradient back) or a tuple of them (a tuple back). It
    answers ``NotImplemented`` for anything it does not cover. ``elementwise = True``
    says that the loss is elementwise (each element's value and gradient read that
    element's inputs only), which the framework adapters may use (``losskit.jax``).
    """
    _FAST_PATHS[loss_type] = kernel
    _RESOLVED.clear()


def unless_set(kernel: Callable[..., Any], *names: str) -> Callable[..., Any]:
    """``kernel`` for the calls in which the options ``names`` keep a default value
    (``None``, ``0`` or ``False``); the others decline (``NotImplemented``) and take the
    generic path. For options that a loss has and its fused kernel does not cover."""

    def unset(options):
        for name in names:
            value = options.get(name)
            if value is not None and not (type(value) in (int, float, bool) and value == 0):
                return False
        return True

    @functools.wraps(kernel)
    def covered(loss, arrays, reduction, sample_weight, options, want, out, **kw):
        if not unset(options):
            return NotImplemented
        return kernel(loss, arrays, reduction, sample_weight, options, want, out, **kw)

    second = getattr(kernel, "second_order", None)
    if second is not None:  # the fused second-order kernel declines the same calls
        def second_covered(loss, arrays, reduction, sample_weight, options, want):
            if not unset(options):
                return NotImplemented
            return second(loss, arrays, reduction, sample_weight, options, want)

        covered.second_order = second_covered
    return covered


def with_second_order(kernel: Callable[..., Any], second: Callable[..., Any] | None
                      ) -> Callable[..., Any]:
    """``kernel`` (a first-order fast path) with ``second`` as its fused second-order
    kernel (``kernel.second_order``, which the pipeline consults for ``hessian`` and
    ``grad_and_hessian``): a wrapper, so that a kernel shared by several losses keeps
    each loss's own."""
    @functools.wraps(kernel)
    def both(*args, **kw):
        return kernel(*args, **kw)

    both.second_order = second
    return both


def fast_path_for(loss_type: type) -> Callable[..., Any] | None:
    """The fused kernel for ``loss_type``, or None.

    Walks the class hierarchy up to the class that defines ``_compute``: its registered
    kernel is the answer (a subclass that overrides ``_compute`` has none of its parent's).
    """
    try:
        return _RESOLVED[loss_type]
    except KeyError:
        pass
    kernel = None
    for cls in loss_type.__mro__:
        if cls in _FAST_PATHS:
            kernel = _FAST_PATHS[cls]
            break
        if "_compute" in cls.__dict__:
            break
    _RESOLVED[loss_type] = kernel
    return kernel


# ----------------------------------------------------------------------- framework adapters
#: the loader of the adapter of each framework whose arrays get closed-form autodiff rules,
#: by the top-level package of the array's type (``"torch"``, ``"jax"``, ``"jaxlib"``).
#: A loader returns the adapter's ``call(loss, arrays, reduction, sample_weight, options,
#: want, wrt, out, validate)``. An adapter sits above the losses, so core does not import
#: it: the package's ``__init__`` registers the loaders (:func:`register_framework_adapter`)
#: and each imports its adapter on the first call with one of its arrays (``import
#: losskit`` stays free of torch). The loaders use ``import`` statements, not
#: ``importlib``: a first call inside ``torch.compile(fullgraph=True)`` imports the adapter
#: while Dynamo traces, and Dynamo follows an ``import`` statement but refuses
#: ``importlib.import_module``.
FRAMEWORK_ADAPTERS: dict[str, Callable[[], Callable[..., Any]]] = {}
_HOOKS: dict[str, Callable[..., Any]] = {}


def register_framework_adapter(root: str, loader: Callable[[], Callable[..., Any]]) -> None:
    """Route arrays whose type lives in package ``root`` to ``loader()``'s ``call``."""
    FRAMEWORK_ADAPTERS[root] = loader
    _HOOKS.pop(root, None)


def framework_hook(prediction) -> Callable[..., Any] | None:
    """The adapter's ``call`` for ``prediction``'s framework, or None (the pipeline runs)."""
    root = type(prediction).__module__.partition(".")[0]
    hook = _HOOKS.get(root)
    if hook is None and root in FRAMEWORK_ADAPTERS:
        hook = _HOOKS[root] = FRAMEWORK_ADAPTERS[root]()
    return hook
