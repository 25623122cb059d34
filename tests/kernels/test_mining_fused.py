"""The in-batch metric-learning losses on NumPy with numba (``mining._fused_terms``):
each block of anchors runs one pass of ``losskit.kernels.mining_numba.contrastive_block``
over its pairs and one matrix product per component for the gradient, the coefficients
symmetrised; or of ``triplet_hard_block`` (``batch_triplet_loss(mining="hard")``), which
adds the gradient of the hardest pairs (ties shared) straight into their rows; or of
``triplet_all_block`` (``mining="all"`` / ``"semihard"``, every pair of a positive and a
negative enumerated), ``multi_similarity_block`` and ``circle_block``, whose coefficients
go through the generic block's two matrix products. They must equal the losses' array formulas (the fast paths
off) for both dtypes, both distances, with and without normalisation, other margins, both
averages, every reduction, sample weights (one of them 0), blocks of rows, tied hardest
pairs and (contrastive) a NaN embedding. Expected values come from the array formulas, which
tests/losses/test_metric_mining.py checks against pytorch-metric-learning itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from losskit.core import dispatch
from losskit.kernels import fast_paths, mining
from engines import assert_same, fast_paths_on

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    fast_paths_on(monkeypatch)  # (also under LOSSKIT_DISABLE_NUMBA=1)

RNG = np.random.default_rng(20261208)
LOSS = lk.batch_contrastive_loss


def _both(arrays, loss=LOSS, **kw):
    saved = dispatch.ENABLED
    try:
        dispatch.ENABLED = True
        fused = loss.value_and_grad(*arrays, **kw)
        dispatch.ENABLED = False
        ref = loss.value_and_grad(*arrays, **kw)
    finally:
        dispatch.ENABLED = saved
    return fused, ref


def _same(fused, ref, dtype):
    assert_same(np.asarray(fused[0]), np.asarray(ref[0]), dtype)
    assert_same(fused[1], ref[1], dtype)


def _counted(monkeypatch):
    """A list that grows by one each time the fused path takes a call."""
    calls = []
    fused = mining._fused_terms

    def counting(*a, **k):
        result = fused(*a, **k)
        if result is not None:
            calls.append(1)
        return result

    monkeypatch.setattr(mining, "_fused_terms", counting)
    return calls


def _batch(dtype, n=40, dim=6):
    # (no duplicate embeddings: their distance is rounding noise, sqrt(eps) relative,
    # and the coefficient 1 / D amplifies it in both paths, each differently)
    x = RNG.normal(size=(n, dim)).astype(dtype)
    y = RNG.integers(0, 4, size=n)
    return x, y


HARD = lk.batch_triplet_loss
MS = lk.multi_similarity_loss
CIRCLE = lk.circle_loss
CONFIGS = [(LOSS, {}), (LOSS, {"distance": "cosine"}), (LOSS, {"normalize": False}),
           (LOSS, {"normalize": False, "pos_margin": 0.5, "neg_margin": 3.0}),
           (LOSS, {"distance": "cosine", "pos_margin": 0.2, "neg_margin": 0.7}),
           (LOSS, {"average": "all"}),
           (HARD, {"mining": "hard"}), (HARD, {"mining": "hard", "distance": "cosine"}),
           (HARD, {"mining": "hard", "normalize": False, "margin": 0.5}),
           (HARD, {"mining": "hard", "average": "all", "margin": 0.01}),
           (HARD, {}), (HARD, {"mining": "semihard", "margin": 0.5}),
           (HARD, {"distance": "cosine", "average": "all"}),
           (HARD, {"mining": "semihard", "distance": "cosine", "normalize": False}),
           (MS, {}), (MS, {"alpha": 1.0, "beta": 10.0, "base": 0.2, "average": "nonzero"}),
           (CIRCLE, {}), (CIRCLE, {"detach_weights": False, "margin": 0.25, "gamma": 10.0})]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss,kw", CONFIGS,
                         ids=["default", "cosine", "raw", "raw-margins", "cosine-margins",
                              "all", "hard", "hard-cosine", "hard-raw", "hard-all",
                              "triplets", "semihard", "triplets-cosine", "semihard-cosine",
                              "ms",
                              "ms-options", "circle", "circle-exact"])
def test_fused_blocks_equal_the_array_formulas(loss, kw, dtype, monkeypatch):
    x, y = _batch(dtype)
    sw = RNG.uniform(0, 2, size=len(y))
    sw[3] = 0.0
    calls = _counted(monkeypatch)
    monkeypatch.setattr(mining, "BLOCK_ELEMENTS", 40 * 7)  # blocks of 7 rows
    for reduction in ("none", "sum", "mean"):
        _same(*_both((x, y), loss, reduction=reduction, **kw), dtype)
        _same(*_both((x, y), loss, reduction=reduction, sample_weight=sw, **kw), dtype)
    assert len(calls) == 6  # every call with the fast paths on took the fused path


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_hard_triplet_ties_share_the_gradient_as_the_array_formulas(distance, monkeypatch):
    """Anchor 0 at (1, 0) with two positives at (0, +-1) and two negatives at
    (0.6, +-0.8): mirror images, so both hardest pairs are exact ties, which share the
    hinge's gradient (the reference's mirrored rows show it)."""
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [0.6, 0.8], [0.6, -0.8]])
    y = np.array([0, 0, 0, 1, 1])
    calls = _counted(monkeypatch)
    for reduction in ("none", "mean"):
        fused, ref = _both((x, y), HARD, mining="hard", margin=2.0, distance=distance,
                           reduction=reduction)
        _same(fused, ref, np.float64)
        # the tied rows are mirror images of each other, both non-zero
        for a, b in ((1, 2), (3, 4)):
            np.testing.assert_allclose(ref[1][a], ref[1][b] * [1, -1], atol=1e-12)
            assert np.any(ref[1][a] != 0)
    assert len(calls) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_value_alone_and_unsigned_labels(dtype, monkeypatch):
    x, y = _batch(dtype)
    calls = _counted(monkeypatch)
    saved = dispatch.ENABLED
    try:
        fused = LOSS(x, y.astype(np.uint8), reduction="none")
        dispatch.ENABLED = False
        ref = LOSS(x, y, reduction="none")
    finally:
        dispatch.ENABLED = saved
    assert_same(fused, ref, dtype)
    assert calls == [1]


def test_nan_embedding_gives_the_array_formulas_nans(monkeypatch):
    """The contrastive kernel follows the array formulas' NaN rules; the others leave a
    batch with a non-finite embedding to them."""
    x, y = _batch(np.float64)
    x[2, 0] = np.nan
    calls = _counted(monkeypatch)
    for loss, kw in ((LOSS, {}), (LOSS, {"distance": "cosine"}), (HARD, {"mining": "hard"}),
                     (MS, {}), (CIRCLE, {})):
        for reduction in ("none", "mean"):
            fused, ref = _both((x, y), loss, reduction=reduction, **kw)
            _same(fused, ref, np.float64)
            if loss is LOSS:  # (the case the kernel itself computes)
                assert np.isnan(ref[1]).any()
    assert len(calls) == 4


def test_declined_calls_take_the_array_formulas(monkeypatch):
    """Float labels, non-finite sample weights and (all or semi-hard triplets) a class
    larger than ``MAX_POSITIVES`` are left to the array formulas (their NaN and inf
    rules, their sort); the result is theirs."""
    x, y = _batch(np.float64)
    calls = _counted(monkeypatch)
    sw = np.ones(len(y))
    sw[0] = np.inf
    for arrays, kw in (((x, y.astype(np.float64)), {}), ((x, y), {"sample_weight": sw})):
        fused, ref = _both(arrays, **kw)
        np.testing.assert_array_equal(fused[1], ref[1])
        np.testing.assert_array_equal(fused[0], ref[0])
    monkeypatch.setattr(mining, "MAX_POSITIVES", int(np.bincount(y).max()) - 1)
    for kw in ({}, {"mining": "semihard"}):
        fused, ref = _both((x, y), HARD, **kw)
        np.testing.assert_array_equal(fused[1], ref[1])
    assert calls == []


def test_kernels_numba_cannot_compile_leave_the_call_to_the_array_formulas(monkeypatch):
    """Where numba cannot compile a kernel (``fast_paths._kernel`` answers None) the
    fused path answers None at the first block and the array formulas run."""
    x, y = _batch(np.float64)
    asked = []
    monkeypatch.setattr(fast_paths, "_kernel", lambda nb, kernel, *a: asked.append(1))
    calls = _counted(monkeypatch)
    for loss, kw in ((LOSS, {}), (HARD, {"mining": "hard"}), (HARD, {}), (MS, {}),
                     (CIRCLE, {})):
        fused, ref = _both((x, y), loss, **kw)
        np.testing.assert_array_equal(fused[0], ref[0])
        np.testing.assert_array_equal(fused[1], ref[1])
    assert len(asked) == 5 and calls == []


def test_fused_gradients_equal_finite_differences():
    """The gradient of the fused path against central differences of its own value (a
    batch with no pair near a kink: every distance at least 0.05 from the margins)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 3))
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    sw = rng.uniform(0.5, 2.0, size=9)
    for loss, kw in ((LOSS, {"pos_margin": 0.1, "neg_margin": 1.2}),
                     (LOSS, {"distance": "cosine"}), (HARD, {"mining": "hard", "margin": 1.0}),
                     (HARD, {"mining": "hard", "distance": "cosine", "margin": 1.0}),
                     (HARD, {"margin": 0.7}), (HARD, {"mining": "semihard", "margin": 1.0}),
                     (MS, {}), (CIRCLE, {"detach_weights": False, "gamma": 8.0})):
        f = lambda z: float(loss(z, y, sample_weight=sw, **kw))  # noqa: E731
        _, g = loss.value_and_grad(x, y, sample_weight=sw, **kw)
        num = np.zeros_like(x)
        h = 1e-6
        for idx in np.ndindex(*x.shape):
            e = np.zeros_like(x)
            e[idx] = h
            num[idx] = (f(x + e) - f(x - e)) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("loss,kw", [(LOSS, {"normalize": False}),
                                     (HARD, {"mining": "hard", "normalize": False}),
                                     (MS, {}), (CIRCLE, {})],
                         ids=["contrastive", "hard", "ms", "circle"])
def test_float16_strided_read_only_and_empty_inputs(loss, kw, monkeypatch):
    """float16 embeddings (computed in float32), a strided read-only view, an empty
    batch: the array formulas' results."""
    x, y = _batch(np.float64, n=30, dim=12)
    calls = _counted(monkeypatch)
    half = x.astype(np.float16)
    fused, ref = _both((half, y), loss, **kw)
    for a, b in zip(fused, ref):  # float16 results of float32 arithmetic: an ulp apart
        assert a.dtype == b.dtype == np.float16
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3 * float(np.abs(b).max()))
    view = x[:, ::2]
    view.flags.writeable = False
    assert not view.flags.c_contiguous
    _same(*_both((view, y), loss, **kw), np.float64)
    assert len(calls) == 2
    for reduction in ("none", "mean"):
        fused, ref = _both((x[:0], y[:0]), loss, reduction=reduction, **kw)
        _same(fused, ref, np.float64)


def test_concurrent_calls_from_threads():
    """Five threads, each a different kernel and batch, six calls each: every result is
    the one computed before the threads started (the kernels share no buffers)."""
    import threading

    kernels = [(LOSS, {}), (HARD, {"mining": "hard"}), (HARD, {}), (MS, {}), (CIRCLE, {})]
    jobs = [(loss, kw, _batch(np.float32, n=300 + 10 * k, dim=8))
            for k, (loss, kw) in enumerate(kernels)]
    expected = [loss.value_and_grad(*arrays, **kw) for loss, kw, arrays in jobs]
    errors = []

    def work(k):
        loss, kw, arrays = jobs[k]
        for _ in range(6):
            try:
                got = loss.value_and_grad(*arrays, **kw)
                np.testing.assert_array_equal(got[0], expected[k][0])
                np.testing.assert_array_equal(got[1], expected[k][1])
            except AssertionError as exc:  # pragma: no cover - reported below
                errors.append(f"{loss.name}: {exc}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(jobs) == 5 and not errors


@pytest.mark.parametrize("mining", ["all", "semihard"])
def test_exact_ties_of_all_and_semihard_triplets(mining, monkeypatch):
    """Anchor 0 at 0 with its positive at 1 and negatives at 1.5 (a hinge of exactly 0
    with margin 0.5: not active, not counted) and at -1 (as far as the positive: not
    semi-hard); exact distances on a line. The averages over the active triplets must
    be the array formulas'."""
    x = np.array([[0.0], [1.0], [1.5], [-1.0], [-3.0], [2.5]])
    y = np.array([0, 0, 1, 1, 2, 2])
    calls = _counted(monkeypatch)
    for reduction in ("mean", "none"):
        fused, ref = _both((x, y), HARD, mining=mining, margin=0.5, normalize=False,
                           reduction=reduction, average="nonzero")
        _same(fused, ref, np.float64)
    assert len(calls) == 2
