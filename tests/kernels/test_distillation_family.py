"""The token-level distillation fast paths (``losskit.kernels.distillation``) against the
generic kernels.

generalized_jsd and tvd_loss: every fused result must equal the generic path's (fast paths
off), up to rounding, for every reduction, both float dtypes, every ``beta`` regime (0, 1
and between), temperatures, targets with ``ignore_index``, ``out=``, read-only and
strided inputs, a teacher of another dtype, rows with ``-inf``, ``+inf`` and NaN logits,
identical student and teacher rows, sizes on both sides of the parallel threshold and
concurrent calls; and the fast path must be the one that answered
(``fast_paths.STATS``). Expected values come from the generic path only (whose values
are tested against Liger-Kernel's formulas in tests/losses/test_distillation.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from losskit.kernels import fast_paths as _fast
from engines import assert_same, fused, generic, run_concurrently, fast_paths_on

pytest.importorskip("numba")

REDUCTIONS = ("none", "sum", "mean", "batchmean")
DTYPES = (np.float32, np.float64)
RNG = np.random.default_rng(20261207)


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    fast_paths_on(monkeypatch)


def logits(n, v, dtype, edges=True):
    """Student and teacher logits (n, V) and targets with ignored tokens, with the edge
    rows: -inf entries (masked vocabulary), identical rows, a NaN, a +inf, an all -inf
    teacher row."""
    zs = RNG.normal(size=(n, v)) * 3.0
    zt = RNG.normal(size=(n, v)) * 3.0
    y = RNG.integers(0, v, size=n)
    y[::4] = -100
    if edges and n >= 8:
        zs[1, :3] = -np.inf
        zt[2, 1:4] = -np.inf
        zt[3] = zs[3]
        zs[5, 2] = np.nan
        zt[6, 0] = np.inf
        zt[7] = -np.inf
        y[5] = y[6] = y[7] = -100  # non-finite rows that take no part: exactly 0
    return zs.astype(dtype), zt.astype(dtype), y


CASES = [("generalized_jsd", {"beta": b, "temperature": t})
         for b in (0.0, 0.3, 1.0) for t in (1.0, 2.0)] + [("generalized_jsd", {}),
                                                            ("tvd_loss", {})]


def _both(name, arrays, dtype, reduction, **kw):
    loss = getattr(lk, name)
    v0, g0 = generic(loss, *arrays, reduction=reduction, **kw)
    v1, g1 = fused(loss, *arrays, engine="numba", reduction=reduction, **kw)
    assert_same(v1, v0, dtype)
    assert_same(g1, g0, dtype)
    return v1, g1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kw", CASES)
def test_fused_equals_generic(name, kw, dtype):
    zs, zt, y = logits(24, 13, dtype)
    for reduction in REDUCTIONS:
        _, g = _both(name, (zs, zt, y), dtype, reduction, **kw)
        assert not np.any(g[::4])  # ignored tokens: exactly 0 (non-finite ones too)
        finite = np.isfinite(zs).all(-1) & np.isfinite(zt).all(-1)
        _both(name, (zs[finite], zt[finite]), dtype, reduction, **kw)  # no targets
    # tokens of any leading shape; no ignore_index
    _both(name, (zs[8:].reshape(2, 8, 13), zt[8:].reshape(2, 8, 13),
                 np.abs(y[8:]).reshape(2, 8) % 13), dtype, "mean", ignore_index=None, **kw)


@pytest.mark.parametrize("name", ["generalized_jsd", "tvd_loss"])
def test_parallel_sizes_identical_rows_and_the_teacher_cast(name):
    n = _fast.PARALLEL_MIN // 100 + 3
    zs, zt, y = logits(n, 100, np.float32)
    _both(name, (zs, zt, y), np.float32, "mean")
    # identical rows: a zero divergence with a zero gradient (exactly for the TVD; the
    # JSD's kernel forms log M from P and Q: zero up to float32 rounding of log-sums)
    v, g = fused(getattr(lk, name), zs[8:], zs[8:].copy(), engine="numba", reduction="none")
    if name == "tvd_loss":
        assert np.all(v == 0) and np.all(g == 0)
    else:
        assert np.abs(v).max() < 1e-6 and np.abs(g).max() < 1e-6
    # a float64 teacher with a float32 student: cast like the generic path
    _both(name, (zs, zt.astype(np.float64), y), np.float32, "sum")


@pytest.mark.parametrize("name", ["generalized_jsd", "tvd_loss"])
def test_out_read_only_and_strided_inputs(name):
    loss = getattr(lk, name)
    zs, zt, y = logits(16, 9, np.float64)
    ref_v, ref_g = generic(loss, zs, zt, y)
    out = np.full(zs.shape, 7.0)
    assert fused(loss, zs, zt, y, want="grad", out=out) is out
    assert_same(out, ref_g, np.float64)
    zs2 = zs.copy()  # out= is the student's logits: read intact, then overwritten
    v, g = fused(loss, zs2, zt, y, out=zs2)
    assert g is zs2
    assert_same(g, ref_g, np.float64)
    ro = [a.copy() for a in (zs, zt, y)]
    for a in ro:
        a.flags.writeable = False
    assert_same(fused(loss, *ro, want="grad"), ref_g, np.float64)
    wide = np.zeros((16, 18))
    wide[:, ::2] = zt  # a strided teacher
    assert_same(fused(loss, zs, wide[:, ::2], y, want="grad"), ref_g, np.float64)


def test_what_is_not_covered_runs_the_generic_path():
    zs, zt, y = logits(12, 7, np.float64, edges=False)
    before = sum(_fast.STATS.values())
    for name in ("generalized_jsd", "tvd_loss"):
        loss = getattr(lk, name)
        for args, kw in [((zs, zt, y), {"sample_weight": np.linspace(0, 1, 12)}),
                         ((zs[:0], zt[:0], y[:0]), {}),  # empty batch
                         ((zs.astype(np.float16), zt, y), {})]:
            v0, g0 = loss.value_and_grad(*args, **kw)
            v1, g1 = generic(loss, *args, **kw)
            np.testing.assert_array_equal(v0, v1)
            np.testing.assert_array_equal(g0, g1)
    assert sum(_fast.STATS.values()) == before


def test_invalid_inputs_raise_the_generic_errors():
    zs, zt, y = logits(6, 5, np.float32, edges=False)
    for loss in (lk.generalized_jsd, lk.tvd_loss):
        with pytest.raises(ValueError, match="targets"):
            loss.grad(zs, zt, np.full(6, 5))  # a label out of range
        with pytest.raises(TypeError, match="teacher_logits"):
            loss.grad(zs, zt.astype(np.int64), y)
        with pytest.raises(ValueError):
            loss.grad(zs, zt[:, :4], y)
    with pytest.raises(ValueError, match="beta"):
        lk.generalized_jsd.grad(zs, zt, y, beta=1.5)
    with pytest.raises(ValueError, match="temperature"):
        lk.generalized_jsd.grad(zs, zt, y, temperature=0.0)


def test_concurrent_calls():
    inputs = [logits(64, 33, np.float32) for _ in range(4)]
    refs = [generic(lk.generalized_jsd, *a, beta=0.4) for a in inputs]
    results = run_concurrently(
        lambda *a: lk.generalized_jsd.value_and_grad(*a, beta=0.4), inputs)
    for (v, g), (v0, g0) in zip(results, refs):
        assert_same(v, v0, np.float32)
        assert_same(g, g0, np.float32)
