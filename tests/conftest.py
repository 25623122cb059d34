"""Shared fixtures: the array backends every loss must run on unchanged."""

from __future__ import annotations

import numpy as np
import pytest

# ``cases/`` holds the reference-case registry (``loss_cases.py`` and the ``cases_<family>.py``
# it imports at its end), importable as ``loss_cases`` (pyproject's pythonpath); it holds no
# tests, and collected on its own (--doctest-modules) a cases module would hit that cycle
collect_ignore = ["cases"]

try:  # JAX references and jax arrays in float64
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:  # pragma: no cover
    jax = None


class Backend:
    """Moves NumPy test data to one array library and back."""

    def __init__(self, name, module, to, back, lazy=False):
        self.name, self.module, self._to, self._back, self.lazy = name, module, to, back, lazy

    def asarray(self, x):
        return self._to(np.asarray(x))

    def to_numpy(self, x):
        return np.asarray(self._back(x))

    def is_native(self, x):
        import array_api_compat

        if self.name == "numpy-readonly":
            return isinstance(x, np.ndarray)
        return array_api_compat.array_namespace(x) is array_api_compat.array_namespace(
            self._to(np.zeros(1)))

    def __repr__(self):
        return self.name


def _readonly(x):
    x = np.array(x)
    x.setflags(write=False)
    return x


def _backends():
    out = [Backend("numpy", np, np.asarray, np.asarray),
           Backend("numpy-readonly", np, _readonly, np.asarray)]
    try:
        import array_api_strict as xps

        out.append(Backend("array_api_strict", xps, xps.asarray, lambda a: np.asarray(a)))
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        out.append(Backend("torch", torch, torch.as_tensor, lambda a: a.detach().cpu().numpy()))
        if torch.cuda.is_available():  # pragma: no cover - on a GPU machine
            out.append(Backend("torch-cuda", torch, lambda a: torch.as_tensor(a, device="cuda"),
                               lambda a: a.detach().cpu().numpy()))
    except ImportError:  # pragma: no cover
        pass
    if jax is not None:
        import jax.numpy as jnp

        out.append(Backend("jax", jnp, jnp.asarray, np.asarray))
    try:
        import dask.array as da

        out.append(Backend("dask", da, lambda a: da.from_array(a, chunks=2),
                           lambda a: a.compute(), lazy=True))
    except ImportError:  # pragma: no cover
        pass
    try:  # pragma: no cover - only where a GPU and CuPy exist
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        out.append(Backend("cupy", cupy, cupy.asarray, lambda a: a.get()))
    except Exception:
        pass
    return out


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def liger():
    """Liger-Kernel's ``chunked_loss`` modules (pure PyTorch, run on the CPU with
    ``compiled=False``), loaded without the package's ``__init__``, which imports its Triton
    kernels: a namespace with ``dpo``, ``simpo``, ``orpo``, ``cpo``, ``kto``, ``grpo`` and
    ``jsd`` (the loss modules). Skips where Liger-Kernel is not installed."""
    import importlib
    import importlib.util
    import sys
    import types

    pytest.importorskip("torch")
    if "liger_kernel" not in sys.modules:
        spec = importlib.util.find_spec("liger_kernel")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("Liger-Kernel is not installed (test extra liger-kernel==0.8.5)")
        pkg = types.ModuleType("liger_kernel")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["liger_kernel"] = pkg
    names = {"dpo": "dpo_loss", "simpo": "simpo_loss", "orpo": "orpo_loss", "cpo": "cpo_loss",
             "kto": "kto_loss", "grpo": "grpo_loss", "jsd": "jsd_loss"}
    return types.SimpleNamespace(**{
        k: importlib.import_module(f"liger_kernel.chunked_loss.{m}") for k, m in names.items()})
