"""The Lovász fast paths (``losskit.kernels.lovasz``) against the generic kernels.

lovasz_hinge and lovasz_softmax run their own ``_terms`` on NumPy with the Lovász weights
of a numba radix sort: the weights must equal the generic ``lovasz_weights`` (two stable
argsorts) exactly, ties and ``-0`` included, and every fused result the generic path's,
for every option, reduction and float dtype, ``out=``, ignored labels, sizes on both sides
of the parallel threshold and concurrent calls; NaN errors and invalid inputs are the
generic path's. Expected values come from the generic path only (tested against Berman
et al.'s reference formulas in tests/losses/test_lovasz.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from losskit.kernels import fast_paths as _fast
from losskit.kernels import lovasz as fused_lovasz
from losskit.losses.lovasz import lovasz_weights
from engines import assert_same, fused, generic, run_concurrently, fast_paths_on

pytest.importorskip("numba")

REDUCTIONS = ("none", "sum", "mean", "batchmean")
DTYPES = (np.float32, np.float64)
RNG = np.random.default_rng(20261207)


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    fast_paths_on(monkeypatch)


@pytest.mark.parametrize("dtype", DTYPES)
def test_radix_weights_equal_the_generic_weights_exactly(dtype):
    errors = RNG.normal(size=(5, 300)).astype(dtype)
    errors[0, :100] = np.round(errors[0, :100])  # many ties
    errors[1, ::3] = 0.0
    errors[1, 1::3] = -0.0  # -0 ties with +0
    errors[2, :5] = [np.inf, -np.inf, 1e30, -1e30, 1e-40]
    fg = (RNG.random((5, 300)) > 0.5).astype(dtype)
    fg[3] = 0.0  # no foreground
    valid = RNG.random((5, 300)) > 0.2
    for v in (None, valid):
        ref = lovasz_weights(np, errors, fg, v)
        got = fused_lovasz.weights(np, errors, fg, v)
        np.testing.assert_array_equal(got, ref)
        assert got.dtype == ref.dtype


def _hinge_cases(dtype):
    z = RNG.normal(size=(4, 9, 11)).astype(dtype)
    z[0, 0, :4] = [0.0, -0.0, 1.0, 1.0]  # ties of the errors
    y = RNG.integers(0, 2, size=z.shape)
    ignored = y.copy()
    ignored[0, :2] = 255
    return [((z, y), {}), ((z, y), {"per_image": False}), ((z, y.astype(dtype)), {}),
            ((z, ignored), {"ignore_index": 255}),
            ((z, ignored), {"ignore_index": 255, "per_image": False})]


def _softmax_cases(dtype):
    z = RNG.normal(size=(3, 4, 6, 5)).astype(dtype)
    lab = RNG.integers(0, 4, size=(3, 6, 5))
    lab[2][lab[2] == 1] = 0  # a class absent from an image
    p = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(dtype)
    ignored = lab.copy()
    ignored[0, :2] = 255
    cases = []
    for per_image in (False, True):
        for classes in ("present", "all", [0, 2]):
            kw = {"per_image": per_image, "classes": classes}
            cases += [((p, lab), kw), ((z, lab), dict(kw, from_logits="softmax")),
                      ((z, ignored), dict(kw, from_logits="softmax", ignore_index=255))]
    zl = np.moveaxis(z, 1, -1).copy()  # channels last
    cases.append(((zl, lab), {"axis": -1, "from_logits": "softmax"}))
    return cases


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["lovasz_hinge", "lovasz_softmax"])
def test_fused_equals_generic(name, dtype):
    loss = getattr(lk, name)
    cases = _hinge_cases(dtype) if name == "lovasz_hinge" else _softmax_cases(dtype)
    for arrays, kw in cases:
        for reduction in REDUCTIONS:
            v0, g0 = generic(loss, *arrays, reduction=reduction, **kw)
            v1, g1 = fused(loss, *arrays, reduction=reduction, **kw)
            assert_same(v1, v0, dtype)
            assert_same(g1, g0, dtype)


def test_parallel_sizes_and_out():
    z = RNG.normal(size=(3, 4, 200, 200)).astype(np.float32)
    lab = RNG.integers(0, 4, size=(3, 200, 200))
    for kw in ({}, {"per_image": True}):
        v0, g0 = generic(lk.lovasz_softmax, z, lab, from_logits="softmax", **kw)
        v1, g1 = fused(lk.lovasz_softmax, z, lab, from_logits="softmax", **kw)
        assert_same(v1, v0, np.float32)
        assert_same(g1, g0, np.float32)
    zh = z[:, 0]
    y = (lab > 1).astype(np.int64)
    v0, g0 = generic(lk.lovasz_hinge, zh, y)
    out = np.empty_like(zh)
    v1, g1 = fused(lk.lovasz_hinge, zh, y, out=out)
    assert g1 is out
    assert_same(v1, v0, np.float32)
    assert_same(out, g0, np.float32)


def test_what_is_not_covered_runs_the_generic_path():
    z = RNG.normal(size=(2, 5, 6))
    y = RNG.integers(0, 2, size=z.shape)
    z_nan = z.copy()
    z_nan[0, 1, 1] = np.nan  # NaN errors: the generic ordering
    before = sum(_fast.STATS.values())
    for args, kw in [((z, y), {"sample_weight": np.ones(2)}), ((z_nan, y), {}),
                     ((z.astype(np.float16), y), {})]:
        v0, g0 = lk.lovasz_hinge.value_and_grad(*args, **kw)
        v1, g1 = generic(lk.lovasz_hinge, *args, **kw)
        np.testing.assert_array_equal(v0, v1)
        np.testing.assert_array_equal(g0, g1)
    assert sum(_fast.STATS.values()) == before


def test_invalid_inputs_raise_the_generic_errors():
    z = RNG.normal(size=(2, 5, 6))
    with pytest.raises(ValueError, match="target"):
        lk.lovasz_hinge.grad(z, np.full(z.shape, 3))
    with pytest.raises(ValueError, match="target"):
        lk.lovasz_softmax.grad(z[:, :3], np.full((2, 6), 7), from_logits="softmax")
    with pytest.raises(ValueError, match="sigmoid"):
        lk.lovasz_softmax.grad(z, np.zeros((2, 6), int), from_logits="sigmoid")


def test_concurrent_calls():
    inputs = [(RNG.normal(size=(4, 30, 30)).astype(np.float32),
               RNG.integers(0, 2, size=(4, 30, 30))) for _ in range(4)]
    refs = [generic(lk.lovasz_hinge, *a) for a in inputs]
    results = run_concurrently(lk.lovasz_hinge.value_and_grad, inputs)
    for (v, g), (v0, g0) in zip(results, refs):
        assert_same(v, v0, np.float32)
        assert_same(g, g0, np.float32)
