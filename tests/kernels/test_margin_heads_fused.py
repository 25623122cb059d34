"""The margin heads (arcface_loss, cosface_loss) on NumPy with numba: each block's
cross-entropy runs in the softmax CE kernel (``losskit.kernels.mining._margin_ce_block``);
it must equal the heads' array formulas (the fast paths off) for both dtypes, every
reduction, sample weights, ``easy_margin``, blocks of rows, targets at a cosine of exactly
+1 and -1, a margin that pushes the target logit far below the others, and a large scale.
Expected values come from the array formulas, tested against pytorch-metric-learning in
tests/losses/test_margin_heads.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from losskit.core import dispatch
from losskit.kernels import mining
from engines import assert_same, fast_paths_on

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    fast_paths_on(monkeypatch)  # (also under LOSSKIT_DISABLE_NUMBA=1)

RNG = np.random.default_rng(20261207)


def _both(loss, arrays, **kw):
    saved = dispatch.ENABLED
    try:
        dispatch.ENABLED = True
        fused = loss.value_and_grad(*arrays, wrt="all", **kw)
        dispatch.ENABLED = False
        ref = loss.value_and_grad(*arrays, wrt="all", **kw)
    finally:
        dispatch.ENABLED = saved
    return fused, ref


def _same(fused, ref, dtype):
    assert_same(fused[0], ref[0], dtype)
    for a, b in zip(fused[1], ref[1]):
        assert_same(a, b, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", [("arcface_loss", {}), ("arcface_loss", {"margin": 0.3,
                                                                            "scale": 30.0}),
                                     ("arcface_loss", {"easy_margin": True}),
                                     ("cosface_loss", {}), ("cosface_loss", {"margin": 0.1})])
def test_fused_block_equals_the_array_formulas(name, kw, dtype, monkeypatch):
    loss = getattr(lk, name)
    x = RNG.normal(size=(40, 16)).astype(dtype)
    w = RNG.normal(size=(9, 16)).astype(dtype)
    y = RNG.integers(0, 9, size=40)
    x[0] = w[y[0]]  # cosine +1 with the target
    x[1] = -w[y[1]]  # cosine -1
    sw = RNG.uniform(0, 2, size=40)
    sw[3] = 0.0
    monkeypatch.setattr(mining, "BLOCK_ELEMENTS", 9 * 7)  # blocks of 7 rows
    calls = []
    block = mining._margin_ce_block
    monkeypatch.setattr(mining, "_margin_ce_block",
                        lambda *a: calls.append(1) or block(*a))
    for reduction in ("none", "sum", "mean"):
        _same(*_both(loss, (x, w, y), reduction=reduction, **kw), dtype)
        _same(*_both(loss, (x, w, y), reduction=reduction, sample_weight=sw, **kw), dtype)
    assert len(calls) == 6 * 6  # the fused block ran for every block of every fused call


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_without_numba_falls_back_to_numpy(dtype, monkeypatch):
    """Where numba cannot compile the softmax CE kernel (``_kernel`` answers None), the
    block's cross-entropy is done in NumPy: the same values and gradients as the array
    formulas."""
    from losskit.kernels import fast_paths

    x = RNG.normal(size=(30, 16)).astype(dtype)
    w = RNG.normal(size=(9, 16)).astype(dtype)
    y = RNG.integers(0, 9, size=30)
    monkeypatch.setattr(mining, "BLOCK_ELEMENTS", 9 * 7)
    failed = []
    monkeypatch.setattr(fast_paths, "_kernel", lambda nb, kernel, *a: failed.append(1))
    for name in ("arcface_loss", "cosface_loss"):
        for reduction in ("none", "mean"):
            _same(*_both(getattr(lk, name), (x, w, y), reduction=reduction), dtype)
    assert failed  # the fused blocks asked the kernel and got None
