"""In-batch metric-learning losses against pytorch-metric-learning itself (values and its
autograd gradients), the blocked kernels against one block, the averaging rules, the
edges and the errors. The catalog suites (tests/catalog with tests/cases/cases_metric.py)
add torch/JAX formula references, finite differences and every backend."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import losskit as lk
from losskit.kernels import mining

torch = pytest.importorskip("torch")
pml = pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import distances, losses, miners, reducers  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 5))
Y = RNG.integers(0, 3, size=12)


def _pml(loss, miner=None, x=X, y=Y):
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y)
    v = loss(xt, yt, miner(xt, yt) if miner is not None else None)
    v.backward()
    return v.item(), xt.grad.numpy()


def _same(ours, ref):
    np.testing.assert_allclose(float(ours[0]), ref[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours[1], ref[1], rtol=1e-9, atol=1e-14)


COS = distances.CosineSimilarity
RAW = distances.LpDistance


@pytest.mark.parametrize("m", [0.05, 0.5])
@pytest.mark.parametrize("variant", ["all", "all-mean", "hard", "semihard", "cos-all",
                                     "cos-hard", "cos-semihard", "raw-all"])
def test_batch_triplet_equals_pml(variant, m):
    kw, loss_kw, miner = {"margin": m}, {"margin": m}, None
    if variant.startswith("cos"):
        kw["distance"] = "cosine"
        loss_kw["distance"] = COS()
    if variant.startswith("raw"):
        kw["normalize"] = False
        loss_kw["distance"] = RAW(normalize_embeddings=False)
    if variant.endswith("mean"):
        kw["average"] = "all"
        loss_kw["reducer"] = reducers.MeanReducer()
    dist = loss_kw.get("distance")
    if variant.endswith("hard") and "semi" not in variant:
        kw["mining"] = "hard"
        miner = miners.BatchHardMiner(**({"distance": dist} if dist else {}))
    if variant.endswith("semihard"):
        kw["mining"] = "semihard"
        miner = miners.TripletMarginMiner(margin=m, type_of_triplets="semihard",
                                          **({"distance": dist} if dist else {}))
    _same(lk.batch_triplet_loss.value_and_grad(X, Y, **kw),
          _pml(losses.TripletMarginLoss(**loss_kw), miner))


@pytest.mark.parametrize("kw,pml_kw", [
    ({}, {}),
    ({"pos_margin": 0.3, "neg_margin": 1.2}, {"pos_margin": 0.3, "neg_margin": 1.2}),
    ({"pos_margin": 0.3, "neg_margin": 1.2, "average": "all"},
     {"pos_margin": 0.3, "neg_margin": 1.2, "reducer": reducers.MeanReducer()}),
    # cosine: pml's margins are similarities, losskit's distances 1 - similarity
    ({"distance": "cosine", "pos_margin": 0.1, "neg_margin": 0.8},
     {"distance": COS(), "pos_margin": 0.9, "neg_margin": 0.2}),
])
def test_batch_contrastive_equals_pml(kw, pml_kw):
    _same(lk.batch_contrastive_loss.value_and_grad(X, Y, **kw),
          _pml(losses.ContrastiveLoss(**pml_kw)))


@pytest.mark.parametrize("kw", [{}, {"alpha": 1.0, "beta": 10.0, "base": 0.2}])
def test_multi_similarity_equals_pml(kw):
    _same(lk.multi_similarity_loss.value_and_grad(X, Y, **kw),
          _pml(losses.MultiSimilarityLoss(**kw)))


def test_multi_similarity_nonzero_average_equals_pml_avg_nonzero():
    y = Y.copy()
    y[0] = 7  # an anchor alone in its class: no positive, still negatives (value > 0)
    _same(lk.multi_similarity_loss.value_and_grad(X, y, average="nonzero"),
          _pml(losses.MultiSimilarityLoss(reducer=reducers.AvgNonZeroReducer()), y=y))


@pytest.mark.parametrize("kw", [{}, {"m": 0.25, "gamma": 16}])
def test_circle_equals_pml_with_its_detached_weights(kw):
    ours = {"margin": kw.get("m", 0.4), "gamma": kw.get("gamma", 80.0)}
    y = Y.copy()
    y[0] = 7  # an anchor without positives: 0, left out of the non-zero average
    _same(lk.circle_loss.value_and_grad(X, y, **ours), _pml(losses.CircleLoss(**kw), y=y))


def test_circle_detached_gradient_is_not_the_derivative_and_exact_one_is():
    x, y = X[:8], Y[:8]
    assert lk.gradcheck(lk.circle_loss, x, y, margin=0.25, gamma=4.0,
                        detach_weights=False).ok
    assert not lk.gradcheck(lk.circle_loss, x, y, margin=0.25, gamma=4.0).ok
    # same value either way
    assert lk.circle_loss(x, y, gamma=4.0) == lk.circle_loss(x, y, gamma=4.0,
                                                            detach_weights=False)


# ------------------------------------------------------------------ blocks
CONFIGS = [(lk.batch_triplet_loss, {"mining": "all"}),
           (lk.batch_triplet_loss, {"mining": "semihard", "distance": "cosine"}),
           (lk.batch_triplet_loss, {"mining": "hard", "normalize": False}),
           (lk.batch_contrastive_loss, {}), (lk.multi_similarity_loss, {}),
           (lk.circle_loss, {})]


@pytest.mark.parametrize("loss,kw", CONFIGS, ids=lambda c: getattr(c, "name", str(c)))
def test_blocks_of_rows_equal_one_block(loss, kw, monkeypatch):
    sw = np.linspace(0.5, 2.0, 12)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        x = X.astype(dtype)
        ref = [loss.value_and_grad(x, Y, reduction=r, sample_weight=sw, **kw)
               for r in ("none", "mean")]
        monkeypatch.setattr(mining, "BLOCK_ELEMENTS", 40)  # blocks of 3 rows (1 when sorting)
        got = [loss.value_and_grad(x, Y, reduction=r, sample_weight=sw, **kw)
               for r in ("none", "mean")]
        monkeypatch.undo()
        for (v, g), (rv, rg) in zip(got, ref):
            assert v.dtype == dtype and g.dtype == dtype
            np.testing.assert_allclose(v, rv, rtol=tol, atol=tol)
            np.testing.assert_allclose(g, rg, rtol=tol, atol=tol)


def test_numpy_never_holds_the_n_by_n_matrix(monkeypatch):
    # blocks of BLOCK_ELEMENTS entries (here 16 rows): a few dozen block-sized temporaries
    monkeypatch.setattr(mining, "BLOCK_ELEMENTS", 1 << 14)
    n = 1024
    x = np.random.default_rng(1).normal(size=(n, 4))
    y = np.arange(n) // 8
    for mining_ in ("hard", "all"):
        tracemalloc.start()
        lk.batch_triplet_loss.value_and_grad(x, y, mining=mining_)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < n * n * 8 / 3, (mining_, peak)  # a third of one N x N float64


# ------------------------------------------------------------------ averaging and weights
def _counts(y):
    same = y[:, None] == y[None, :]
    pos = same.sum(1) - 1
    neg = (~same).sum(1)
    return pos, neg


def test_reductions_and_weighted_means_of_the_terms():
    sw = np.linspace(0.0, 2.0, 12)
    none = lk.batch_triplet_loss(X, Y, margin=0.5, reduction="none")
    pos, neg = _counts(Y)
    # "all": over the P_i N_i triplets of each anchor, weighted by the anchor's weight
    np.testing.assert_allclose(
        lk.batch_triplet_loss(X, Y, margin=0.5, average="all", sample_weight=sw),
        (sw * none).sum() / (sw * pos * neg).sum(), rtol=1e-12)
    np.testing.assert_allclose(lk.batch_triplet_loss(X, Y, margin=0.5, reduction="sum"),
                               none.sum(), rtol=1e-12)
    np.testing.assert_allclose(lk.batch_triplet_loss(X, Y, margin=0.5,
                                                     reduction="batchmean"),
                               none.sum() / 12, rtol=1e-12)
    # the contrastive mean: the positive and the negative pairs averaged separately
    d = np.linalg.norm(X[:, None] / np.linalg.norm(X, axis=1)[:, None, None]
                       - X[None] / np.linalg.norm(X, axis=1)[None, :, None], axis=-1)
    same = Y[:, None] == Y[None, :]
    off = ~np.eye(12, dtype=bool)
    tp = np.where(same & off, d, 0.0)  # pos_margin 0: every positive pair counts
    tn = np.where(~same, np.maximum(1.0 - d, 0.0), 0.0)
    expected = tp.sum() / (tp > 0).sum() + tn.sum() / (tn > 0).sum()
    np.testing.assert_allclose(lk.batch_contrastive_loss(X, Y), expected, rtol=1e-12)


@pytest.mark.parametrize("loss", [lk.batch_triplet_loss, lk.batch_contrastive_loss,
                                  lk.multi_similarity_loss, lk.circle_loss],
                         ids=lambda c: c.name)
def test_a_batch_of_one_class_or_one_example_or_none_costs_zero(loss):
    for x, y in ((X[:4], np.zeros(4, int)), (X[:1], Y[:1]), (X[:0], Y[:0])):
        v, g = loss.value_and_grad(x, y)
        if loss in (lk.multi_similarity_loss, lk.batch_contrastive_loss) and len(y) == 4:
            assert v > 0  # the positive pairs still cost (no negatives needed)
            continue
        assert float(v) == 0.0 and not np.any(g) and g.shape == x.shape
    assert loss(X[:0], Y[:0], reduction="none").shape == (0,)


def test_hard_mining_ties_share_the_gradient():
    # anchor 0 at the origin: two positives at distance 1 (a tie), a negative at 0.5
    x = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 0.5]])
    y = np.array([0, 0, 0, 1])
    kw = dict(mining="hard", normalize=False, margin=1.0)
    v = lk.batch_triplet_loss(x, y, reduction="none", **kw)
    far = 2.0 + 1.0 - np.hypot(1.0, 0.5)  # anchors 1 and 2: positive at 2, negative 3
    np.testing.assert_allclose(v, [1.5, far, far, 0.0], rtol=1e-12)
    # anchor 0 alone (weights 1, 0, 0, 0): each tied positive gets half of
    # d d(0, p) / d x_p = (x_p - x_0) / 1; the negative gets -(x_3 - x_0) / 0.5
    g = lk.batch_triplet_loss.grad(x, y, reduction="sum", sample_weight=[1.0, 0, 0, 0], **kw)
    np.testing.assert_allclose(g, [[0.0, 1.0], [0.5, 0.0], [-0.5, 0.0], [0.0, -1.0]],
                               atol=1e-15)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="`embeddings`.*2-d"):
        lk.batch_triplet_loss(X[0], Y[:1])
    with pytest.raises(ValueError, match="`labels`.*shape \\(12,\\)"):
        lk.batch_triplet_loss(X, Y[:5])
    with pytest.raises(ValueError, match="`mining`"):
        lk.batch_triplet_loss(X, Y, mining="easy")
    with pytest.raises(ValueError, match="`margin`"):
        lk.batch_triplet_loss(X, Y, margin=0.0)
    with pytest.raises(ValueError, match="`average`"):
        lk.batch_contrastive_loss(X, Y, average="mean")
    with pytest.raises(ValueError, match="`distance`"):
        lk.batch_contrastive_loss(X, Y, distance="manhattan")
    with pytest.raises(TypeError, match="`embeddings`.*floating"):
        lk.multi_similarity_loss(X.astype(int), Y)
    with pytest.raises(TypeError, match="`detach_weights`"):
        lk.circle_loss(X, Y, detach_weights=1)
