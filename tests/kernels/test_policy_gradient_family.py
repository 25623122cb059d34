"""The ``grpo_loss`` fast path (``losskit.kernels.policy_gradient``) against the generic
kernel.

Every fused result must equal the generic path's (fast paths off), up to rounding, for
every variant, both importance samplings, with and without the old and the reference
log-probabilities, every reduction, both float dtypes, boolean and fractional masks, empty
sequences, NaN log-probabilities under the mask and outside it, ``out=``, sizes on both
sides of the parallel threshold and concurrent calls; and the fast path must be the one
that answered (``fast_paths.STATS``). Expected values come from the generic path only
(whose values are tested against TRL's and Liger-Kernel's formulas in
tests/losses/test_policy_gradient.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from losskit.kernels import fast_paths as _fast
from engines import assert_same, fused, generic, run_concurrently, fast_paths_on

pytest.importorskip("numba")

REDUCTIONS = ("none", "sum", "mean", "batchmean")
RNG = np.random.default_rng(20261207)
VARIANTS = [("grpo", "token"), ("grpo", "sequence"), ("bnpo", "token"), ("dapo", "token"),
            ("dapo", "sequence"), ("dr_grpo", "token"), ("dr_grpo", "sequence"),
            ("cispo", "token")]


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    fast_paths_on(monkeypatch)


def batch(b, t, dtype, edges=True):
    lp = -RNG.uniform(0.0, 3.0, (b, t))
    mask = (RNG.random((b, t)) > 0.3).astype(float)
    adv = RNG.normal(size=b)
    old = lp + RNG.normal(size=(b, t)) * 0.3
    ref = lp + RNG.normal(size=(b, t)) * 0.3
    if edges and b >= 4:
        mask[0] = 0.0  # an empty sequence
        mask[1, ::2] = 0.5  # a fractional mask
        lp[2, mask[2] == 0] = np.nan  # NaN under padding: no effect
        adv[3] = 0.0
    return tuple(x.astype(dtype) for x in (lp, mask, adv, old, ref))


def _options(variant, sampling, t):
    kw = {"variant": variant, "importance_sampling": sampling}
    if variant == "dr_grpo":
        kw["max_completion_length"] = t
    return kw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant,sampling", VARIANTS)
def test_fused_equals_generic(variant, sampling, dtype):
    lp, mask, adv, old, ref = batch(9, 13, dtype)
    kw = _options(variant, sampling, 13)
    for arrays, extra in [((lp, mask, adv, old, ref), {}),
                          ((lp, mask, adv), {"beta": 0.0}),
                          ((lp, mask > 0, adv, old), {"epsilon_high": 0.28}),
                          ((lp, mask, adv, None, ref), {"beta": 0.1, "epsilon_low": 0.1})]:
        for reduction in REDUCTIONS:
            v0, g0 = generic(lk.grpo_loss, *arrays, reduction=reduction, **kw, **extra)
            v1, g1 = fused(lk.grpo_loss, *arrays, reduction=reduction, **kw, **extra)
            assert_same(v1, v0, dtype)
            assert_same(g1, g0, dtype)
            assert not np.any(g1[mask == 0])  # padding: exactly 0


def test_parallel_sizes_nan_and_an_all_padding_batch():
    lp, mask, adv, old, ref = batch(160, 1024, np.float32)
    lp[5, 7] = np.nan  # under the mask: NaN propagates, as in the generic path
    mask[5, 7] = 1.0
    for variant, sampling in VARIANTS:
        kw = _options(variant, sampling, 1024)
        v0, g0 = generic(lk.grpo_loss, lp, mask, adv, old, ref, **kw)
        v1, g1 = fused(lk.grpo_loss, lp, mask, adv, old, ref, **kw)
        assert_same(v1, v0, np.float32)
        assert_same(g1, g0, np.float32)
    zero = np.zeros_like(mask)  # a mean over no token is 0 with a zero gradient
    v, g = fused(lk.grpo_loss, lp, zero, adv, old, ref)
    assert float(v) == 0.0 and not np.any(g)


def test_out_and_cast_inputs():
    lp, mask, adv, old, ref = batch(6, 11, np.float64)
    ref_v, ref_g = generic(lk.grpo_loss, lp, mask, adv, old, ref)
    out = np.full(lp.shape, 3.0)
    assert fused(lk.grpo_loss, lp, mask, adv, old, ref, want="grad", out=out) is out
    assert_same(out, ref_g, np.float64)
    # a float32 advantage, an integer mask, float32 old log-probabilities: cast like it
    args = (lp, (mask > 0).astype(np.int8), adv.astype(np.float32), old.astype(np.float32))
    v0, g0 = generic(lk.grpo_loss, *args)
    v1, g1 = fused(lk.grpo_loss, *args)
    assert_same(v1, v0, np.float64)
    assert_same(g1, g0, np.float64)


def test_what_is_not_covered_runs_the_generic_path():
    lp, mask, adv, old, ref = batch(6, 11, np.float64, edges=False)
    before = sum(_fast.STATS.values())
    for args, kw in [((lp, mask, adv, old, ref), {"sample_weight": np.linspace(0, 1, 6)}),
                     ((lp.astype(np.float16), mask, adv), {}),
                     ((lp[:0], mask[:0], adv[:0]), {})]:
        v0, g0 = lk.grpo_loss.value_and_grad(*args, **kw)
        v1, g1 = generic(lk.grpo_loss, *args, **kw)
        np.testing.assert_array_equal(v0, v1)
        np.testing.assert_array_equal(g0, g1)
    assert sum(_fast.STATS.values()) == before


def test_invalid_inputs_raise_the_generic_errors():
    lp, mask, adv, old, ref = batch(4, 5, np.float32, edges=False)
    bad = mask.copy()
    bad[1, 1] = 2.0
    with pytest.raises(ValueError, match="mask"):
        lk.grpo_loss.grad(lp, bad, adv)
    bad[1, 1] = np.nan  # the generic path's rule: NaN propagates (the fast path declines)
    g = fused(lk.grpo_loss, lp, bad, adv, want="grad", answered=False)
    np.testing.assert_array_equal(g, generic(lk.grpo_loss, lp, bad, adv, want="grad"))
    with pytest.raises(ValueError, match="max_completion_length"):
        lk.grpo_loss.grad(lp, mask, adv, variant="dr_grpo")
    with pytest.raises(ValueError, match="cispo"):
        lk.grpo_loss.grad(lp, mask, adv, old, variant="cispo", importance_sampling="sequence")
    with pytest.raises(ValueError, match="advantages"):
        lk.grpo_loss.grad(lp, mask, adv[:3])


def test_concurrent_calls():
    inputs = [batch(32, 40, np.float32) for _ in range(4)]
    refs = [generic(lk.grpo_loss, *a) for a in inputs]
    results = run_concurrently(lk.grpo_loss.value_and_grad, inputs)
    for (v, g), (v0, g0) in zip(results, refs):
        assert_same(v, v0, np.float32)
        assert_same(g, g0, np.float32)


def test_memory_of_one_call():
    """One call allocates the gradient and a few numbers per sequence; with ``out=`` next
    to nothing (no cast of the mask, no (B, T) temporaries)."""
    import tracemalloc

    from losskit.kernels import clear_gradient_cache

    lp, mask, adv, old, ref = batch(128, 1024, np.float32)
    out = np.empty_like(lp)
    exp = generic(lk.grpo_loss, lp, mask, adv, old, ref, want="grad")
    for kw in ({}, {"out": out}):
        fused(lk.grpo_loss, lp, mask, adv, old, ref, **kw)  # compiled
        clear_gradient_cache()
        tracemalloc.start()
        try:
            v, g = fused(lk.grpo_loss, lp, mask, adv, old, ref, **kw)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert_same(g, exp, np.float32)
        assert peak <= (0 if kw else lp.nbytes) + (64 << 10), peak
    assert g is out
