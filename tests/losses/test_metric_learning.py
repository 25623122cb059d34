"""Metric-learning losses: contrastive, triplet_margin, margin_ranking, cosine_embedding.

Edge cases (identical embeddings, zero vectors, ties, the distance swap, single ``(D,)``
examples, empty batches, NaN), every error message, finite differences for *every*
differentiable input, hypothesis properties and metadata. Expected numbers come from
hand derivations written out in the comments, or from torch (``torch.nn.functional`` and
torch autograd), never from losskit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import loss_cases  # noqa: F401  (first: it imports cases_metric itself)
import losskit as lk
from cases_metric import CASES as METRIC_CASES
from losskit.losses import metric_learning as _metric
from losskit.losses.metric_learning import contrastive, cosine_embedding, margin_ranking, triplet_margin
from losskit.gradcheck import gradcheck

torch = pytest.importorskip("torch")
F = torch.nn.functional

NAN, INF = math.nan, math.inf
LOSSES = [contrastive, triplet_margin, margin_ranking, cosine_embedding]
SETTINGS = settings(max_examples=50, deadline=None)
REDUCTIONS = ("none", "sum", "mean", "batchmean")


# every RuntimeWarning (NumPy's overflow, invalid value, ...) fails the test
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _torch_grads(fn, *arrays, diff=(0, 1)):
    """Value of ``fn`` (summed) on float64 tensors and autograd gradients of ``diff``."""
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=i in diff)
          for i, a in enumerate(arrays)]
    v = fn(*ts)
    v.sum().backward()
    return v.detach().numpy(), tuple(ts[i].grad.numpy() for i in diff)


# ------------------------------------------------------------------ metadata and API
def test_metadata_and_catalog():
    fam = lk.catalog(family="metric_learning")
    assert {loss.name for loss in fam} >= {"contrastive", "triplet_margin", "margin_ranking",
                                           "cosine_embedding"}
    assert contrastive.inputs == ("x1", "x2", "target")
    assert contrastive.differentiable == ("x1", "x2")
    assert triplet_margin.inputs == triplet_margin.differentiable == (
        "anchor", "positive", "negative")
    assert margin_ranking.differentiable == cosine_embedding.differentiable == ("x1", "x2")
    for loss in LOSSES:
        assert loss.family == "metric_learning"
        info = loss.info()
        assert info["inputs"] == list(loss.inputs)
        assert info["differentiable"] == list(loss.differentiable)
        assert len(loss.when_to_use) > 80 and loss.formula and loss.gradient_formula
        assert loss.references and "Examples" in type(loss).__doc__
        assert "{common_parameters}" not in type(loss).__doc__
    assert triplet_margin.option_defaults() == {"margin": 1.0, "p": 2.0, "eps": 1e-6,
                                                "swap": False}
    assert cosine_embedding.option_defaults() == {"margin": 0.0, "eps": 1e-12}
    assert contrastive.option_defaults() == {"margin": 1.0, "p": 2.0}
    assert margin_ranking.option_defaults() == {"margin": 0.0}


def test_aliases_are_the_same_objects():
    assert _metric.contrastive_loss is contrastive
    assert _metric.triplet_margin_loss is triplet_margin
    assert _metric.margin_ranking_loss is margin_ranking
    assert _metric.cosine_embedding_loss is cosine_embedding


def test_public_names_are_exported():
    for name in _metric.__all__:
        assert getattr(lk, name) is getattr(_metric, name), name
        assert name in lk.__all__, name


def test_wrt_all_is_a_tuple_in_differentiable_order_and_matches_single_wrt():
    a, p, n = METRIC_CASES[4].inputs()
    assert METRIC_CASES[4].loss is triplet_margin
    g = triplet_margin.grad(a, p, n, wrt="all")
    assert isinstance(g, tuple) and len(g) == 3
    for name, gi in zip(triplet_margin.differentiable, g):
        np.testing.assert_array_equal(gi, triplet_margin.grad(a, p, n, wrt=name))
    np.testing.assert_array_equal(g[0], triplet_margin.grad(a, p, n))  # default: anchor
    g2 = triplet_margin.grad(a, p, n, wrt=("negative", "anchor"))
    np.testing.assert_array_equal(g2[0], g[2])
    np.testing.assert_array_equal(g2[1], g[0])
    with pytest.raises(ValueError, match=r"^`wrt` of contrastive must be one of 'x1', 'x2', "
                                         r"'all'; got 'target'$"):
        contrastive.grad(a, p, np.ones(a.shape[0]), wrt="target")


def test_configured_copy_uses_its_defaults():
    a, p, n = METRIC_CASES[4].inputs()
    swapped = type(triplet_margin)(swap=True, margin=0.5, reduction="sum")
    np.testing.assert_array_equal(swapped(a, p, n),
                                  triplet_margin(a, p, n, swap=True, margin=0.5,
                                                 reduction="sum"))


# ------------------------------------------------------------------ finite differences
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", METRIC_CASES, ids=[c.id for c in METRIC_CASES])
def test_every_differentiable_input_matches_finite_differences(case, reduction):
    arrays = case.inputs(seed=3)
    loss = case.loss
    for k, name in enumerate(loss.inputs):
        if name not in loss.differentiable:
            continue

        def grad(*a, _name=name, **kw):
            return loss.grad(*a, wrt=_name, **kw)

        res = gradcheck(loss, *arrays, wrt=k, grad=grad, reduction=reduction, **case.options)
        assert res.ok, f"{name}: {res}"
        assert res.kinks == 0, f"{name}: the sample inputs sit at a kink"


def test_a_wrong_gradient_would_be_caught():
    """The finite-difference test can fail: x2's gradient is not x1's."""
    x1, x2, t = METRIC_CASES[0].inputs(seed=3)
    res = gradcheck(contrastive, x1, x2, t, wrt=1,
                    grad=lambda *a, **kw: contrastive.grad(*a, wrt="x1", **kw))
    assert not res.ok


# ------------------------------------------------------------------ hand-worked numbers
def test_contrastive_hand_numbers_and_conventions():
    # pair 1 similar at distance 5: 25/2; pair 2 dissimilar at 0.5, margin 1: 0.25/2;
    # pair 3 dissimilar at distance 5 > margin: 0
    x1 = np.zeros((3, 2))
    x2 = np.array([[3.0, 4.0], [0.3, 0.4], [3.0, 4.0]])
    t = np.array([1, 0, 0])
    v, (g1, g2) = contrastive.value_and_grad(x1, x2, t, reduction="none", wrt="all")
    np.testing.assert_allclose(v, [12.5, 0.125, 0.0], rtol=1e-15)
    # d/dx1 = (t d - (1-t) max(0, m-d)) (x1-x2)/d: 5 * (-0.6,-0.8); -0.5 * (-0.6,-0.8); 0
    np.testing.assert_allclose(g1, [[-3.0, -4.0], [0.3, 0.4], [0.0, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(g2, -g1, rtol=0)
    # Keras mnist_siamese / TF Addons: y*d^2 + (1-y)*max(m-d,0)^2, no 1/2 -> twice ours
    d = np.linalg.norm(x1 - x2, axis=-1)
    keras = t * d ** 2 + (1 - t) * np.maximum(1.0 - d, 0) ** 2
    np.testing.assert_allclose(2 * v, keras, rtol=1e-15)
    # Hadsell et al.'s Y (0 = similar): ours with target = 1 - Y
    big_y = 1 - t
    hadsell = (1 - big_y) * d ** 2 / 2 + big_y * np.maximum(1.0 - d, 0) ** 2 / 2
    np.testing.assert_allclose(contrastive(x1, x2, 1 - big_y, reduction="none"), hadsell)


def test_contrastive_p1_and_pinf_hand_numbers():
    x1 = np.array([[1.0, -2.0, 0.5]]); x2 = np.zeros((1, 3))
    # p = 1: d = 3.5, similar: 3.5^2 / 2; grad = d * sign(x1 - x2)
    v, g = contrastive.value_and_grad(x1, x2, np.array([1.0]), p=1, reduction="sum")
    np.testing.assert_allclose(v, 6.125, rtol=1e-15)
    np.testing.assert_allclose(g, [[3.5, -3.5, 3.5]], rtol=1e-15)
    # p = inf: d = 2, dissimilar with margin 3: (3 - 2)^2 / 2; grad = -(3 - 2) * e_2 * sign
    v, g = contrastive.value_and_grad(x1, x2, np.array([0.0]), p=INF, margin=3.0,
                                      reduction="sum")
    np.testing.assert_allclose(v, 0.5, rtol=1e-15)
    np.testing.assert_allclose(g, [[0.0, 1.0, 0.0]], rtol=1e-15)


def test_triplet_swap_hand_numbers():
    # a = 0, p = (3, 4), n = (4, 4), eps = 0, m = 1: d(a,p) = 5, d(a,n) = sqrt 32, d(p,n) = 1
    a = np.zeros((1, 2)); p = np.array([[3.0, 4.0]]); n = np.array([[4.0, 4.0]])
    v, (ga, gp, gn) = triplet_margin.value_and_grad(a, p, n, eps=0.0, swap=True,
                                                    reduction="sum", wrt="all")
    np.testing.assert_allclose(v, 1 + 5 - 1, rtol=1e-15)   # the swap picks d(p,n) = 1
    # g(v_ap) = (a - p)/5 = (-0.6, -0.8); g(v_pn) = (p - n)/1 = (-1, 0)
    np.testing.assert_allclose(ga, [[-0.6, -0.8]], rtol=1e-15)          # g_ap
    np.testing.assert_allclose(gp, [[1.6, 0.8]], rtol=1e-15)            # -g_ap - g_pn
    np.testing.assert_allclose(gn, [[-1.0, 0.0]], rtol=1e-15, atol=0)   # g_pn
    # without the swap: 1 + 5 - sqrt 32; g(v_an) = (a - n)/sqrt 32 = -(1, 1)/sqrt 2
    v, (ga, gp, gn) = triplet_margin.value_and_grad(a, p, n, eps=0.0, reduction="sum",
                                                    wrt="all")
    np.testing.assert_allclose(v, 6 - math.sqrt(32), rtol=1e-15)
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(ga, [[-0.6 + r, -0.8 + r]], rtol=1e-14)
    np.testing.assert_allclose(gp, [[0.6, 0.8]], rtol=1e-15)
    np.testing.assert_allclose(gn, [[-r, -r]], rtol=1e-15)


def test_triplet_eps_is_added_to_the_difference_like_torch():
    a = np.array([[1.0, 2.0, 3.0]]); p = np.array([[0.5, 1.0, -1.0]]); n = np.zeros((1, 3))
    e = 0.5
    d_ap = np.linalg.norm(a - p + e, axis=-1)       # 4.8477..., not ||a - p|| + eps
    d_an = np.linalg.norm(a - n + e, axis=-1)
    expected = np.maximum(10.0 + d_ap - d_an, 0)
    np.testing.assert_allclose(triplet_margin(a, p, n, margin=10.0, eps=e, reduction="none"),
                               expected, rtol=1e-15)
    ref = F.triplet_margin_loss(*(torch.tensor(x) for x in (a, p, n)), margin=10.0, eps=e,
                                reduction="none")
    np.testing.assert_allclose(expected, ref.numpy(), rtol=1e-15)


def test_margin_ranking_and_cosine_hand_numbers():
    v, g = margin_ranking.value_and_grad(np.array([1.0, 2.0, 0.0]), np.array([2.0, 1.0, 0.0]),
                                         np.array([1, 1, -1]), margin=0.5, reduction="none",
                                         wrt="all")
    # -y (x1 - x2) + m: 1.5, -0.5 -> 0, 0.5
    np.testing.assert_allclose(v, [1.5, 0.0, 0.5], rtol=1e-15)
    np.testing.assert_allclose(g[0], [-1.0, 0.0, 1.0])   # -y where active
    np.testing.assert_allclose(g[1], [1.0, 0.0, -1.0])
    x1 = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    x2 = np.array([[1.0, 1.0], [1.0, 1.0], [-1.0, 1.0]])
    v = cosine_embedding(x1, x2, np.array([1, -1, -1]), margin=0.5, eps=0.0, reduction="none")
    c = 1 / math.sqrt(2)
    np.testing.assert_allclose(v, [1 - c, c - 0.5, 0.0], rtol=1e-15)
    # d cos / d x1 at x1 = e1, x2 = (1, 1): x2/r - c x1/|x1|^2 = (1,1)/sqrt2 - (1,0)/sqrt2
    g = cosine_embedding.grad(x1[:1], x2[:1], np.array([1]), eps=0.0, reduction="sum")
    np.testing.assert_allclose(g, [[0.0, -c]], atol=1e-16)


# ------------------------------------------------------------------ identical embeddings, d = 0
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, INF])
def test_contrastive_identical_embeddings_give_subgradient_zero(p):
    x = np.array([[0.3, -1.2, 2.0], [0.3, -1.2, 2.0]])
    t = np.array([1.0, 0.0])
    v, (g1, g2) = contrastive.value_and_grad(x, x.copy(), t, p=p, margin=2.0,
                                             reduction="none", wrt="all")
    np.testing.assert_array_equal(v, [0.0, 2.0])   # 0; m^2 / 2
    np.testing.assert_array_equal(g1, np.zeros_like(x))
    np.testing.assert_array_equal(g2, np.zeros_like(x))

    # torch autograd of the same formula gives the same subgradient 0 (never NaN)
    def ref(a, b, tt):
        d = F.pairwise_distance(a, b, p=p, eps=0.0)
        return tt * d ** 2 / 2 + (1 - tt) * F.relu(2.0 - d) ** 2 / 2
    rv, (r1, r2) = _torch_grads(ref, x, x.copy(), t)
    np.testing.assert_array_equal(v, rv)
    np.testing.assert_array_equal(g1, r1)
    np.testing.assert_array_equal(g2, r2)


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("p", [1.0, 2.0, INF])
def test_triplet_identical_embeddings_match_torch(p, swap):
    # a = p = n: every distance is ||eps (1, ..., 1)||_p, the loss is the margin; with the
    # swap d(a,n) = d(p,n) tie and the minimum's gradient is shared (as torch's min)
    x = np.array([[0.3, -1.2, 2.0], [1.0, 1.0, 1.0]])
    v, g = triplet_margin.value_and_grad(x, x.copy(), x.copy(), p=p, swap=swap,
                                         reduction="none", wrt="all")
    np.testing.assert_allclose(v, [1.0, 1.0], rtol=1e-15)
    rv, rg = _torch_grads(lambda a, b, c: F.triplet_margin_loss(a, b, c, p=p, swap=swap,
                                                                reduction="none"),
                          x, x.copy(), x.copy(), diff=(0, 1, 2))
    np.testing.assert_allclose(v, rv, rtol=1e-15)
    for gi, ri in zip(g, rg):
        assert np.all(np.isfinite(gi))
        np.testing.assert_allclose(gi, ri, rtol=1e-12, atol=1e-15)


def test_triplet_identical_embeddings_with_eps_zero_have_zero_gradient():
    x = np.array([[0.3, -1.2, 2.0]])
    v, g = triplet_margin.value_and_grad(x, x.copy(), x.copy(), eps=0.0, swap=True,
                                         reduction="sum", wrt="all")
    assert v == 1.0
    for gi in g:
        np.testing.assert_array_equal(gi, np.zeros_like(x))


def test_triplet_swap_tie_shares_the_gradient_like_torch():
    # anchor == positive, distinct negative: d(a,n) == d(p,n) exactly
    a = np.array([[0.0, 0.0]]); n = np.array([[0.3, 0.4]])
    g = triplet_margin.grad(a, a.copy(), n, swap=True, eps=0.0, reduction="sum", wrt="all")
    _, rg = _torch_grads(lambda x, y, z: F.triplet_margin_loss(x, y, z, swap=True, eps=0.0,
                                                               reduction="sum"),
                         a, a.copy(), n, diff=(0, 1, 2))
    for gi, ri in zip(g, rg):
        np.testing.assert_allclose(gi, ri, rtol=1e-15, atol=1e-16)
    # by hand: w = 1/2; g_an = g_pn = (a - n)/0.5 = (-0.6, -0.8); g_ap = 0 (distance 0)
    np.testing.assert_allclose(g[0], [[0.3, 0.4]], rtol=1e-15)    # -w g_an
    np.testing.assert_allclose(g[1], [[0.3, 0.4]], rtol=1e-15)    # -(1-w) g_pn
    np.testing.assert_allclose(g[2], [[-0.6, -0.8]], rtol=1e-15)  # w g_an + (1-w) g_pn


def test_pinf_ties_share_the_gradient_like_torch():
    x1 = np.array([[3.0, -3.0, 1.0]]); x2 = np.zeros((1, 3))
    g = contrastive.grad(x1, x2, np.array([0.0]), p=INF, margin=4.0, reduction="sum")
    # d = 3 shared by two entries: -(4 - 3) * sign * 1/2
    np.testing.assert_allclose(g, [[-0.5, 0.5, 0.0]], rtol=1e-15)

    def ref(a, b):
        d = F.pairwise_distance(a, b, p=INF, eps=0.0)
        return F.relu(4.0 - d) ** 2 / 2
    _, (r1,) = _torch_grads(ref, x1, x2, diff=(0,))
    np.testing.assert_allclose(g, r1, rtol=1e-15)


def test_cosine_identical_embeddings_match_torch():
    x = np.array([[0.3, -1.2, 2.0], [1.0, 2.0, 3.0]])
    y = np.array([1.0, -1.0])
    v, g = cosine_embedding.value_and_grad(x, x.copy(), y, margin=0.2, reduction="none",
                                           wrt="all")
    # cos = |x|^2 / (|x|^2 + 1e-12) = 1 up to 1e-13: loss ~0 and 1 - 0.2
    np.testing.assert_allclose(v, [0.0, 0.8], atol=1e-12)
    rv, rg = _torch_grads(lambda a, b, t: F.cosine_embedding_loss(a, b, t, margin=0.2,
                                                                  reduction="none"),
                          x, x.copy(), y)
    np.testing.assert_allclose(v, rv, rtol=1e-12, atol=1e-15)
    for gi, ri in zip(g, rg):
        np.testing.assert_allclose(gi, ri, rtol=1e-9, atol=1e-12)


def test_margin_ranking_equal_scores_with_margin_zero_sit_at_the_kink():
    # -y (x1 - x2) + 0 = 0: the loss is 0 and the subgradient 0 is used (torch's autograd
    # passes -y there: both lie between the one-sided slopes 0 and -y)
    v, g = margin_ranking.value_and_grad(np.array([1.0]), np.array([1.0]), np.array([1.0]),
                                         reduction="sum", wrt="all")
    assert v == 0.0
    assert g[0][0] == 0.0 and g[1][0] == 0.0
    res = gradcheck(margin_ranking, np.array([1.0]), np.array([1.0]), np.array([1.0]))
    assert res.ok and res.kinks == 1


# ------------------------------------------------------------------ zero vectors
def test_cosine_zero_vector_matches_torch_eps_handling():
    # x1 = 0: cos = 0 / sqrt(1e-12 (|x2|^2 + 1e-12)) = 0; gradient -x2 / sqrt(1e-12 B)
    x1 = np.zeros((3, 2)); x2 = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    y = np.array([1.0, -1.0, 1.0])
    v, g = cosine_embedding.value_and_grad(x1, x2, y, margin=-0.5, reduction="none",
                                           wrt="all")
    np.testing.assert_allclose(v, [1.0, 0.5, 1.0], rtol=1e-15)
    b = 5.0 + 1e-12
    np.testing.assert_allclose(g[0][0], -x2[0] / math.sqrt(1e-12 * b), rtol=1e-14)
    # torch's EPSILON is a C float: float32(1e-12) = 9.99999996e-13, which shows in the
    # zero-vector gradient at 2e-9 relative; with that eps the two agree to rounding
    assert abs(float(np.float32(1e-12)) / 1e-12 - 1) > 1e-9
    v, g = cosine_embedding.value_and_grad(x1, x2, y, margin=-0.5, reduction="none",
                                           wrt="all", eps=float(np.float32(1e-12)))
    rv, rg = _torch_grads(lambda a, b, t: F.cosine_embedding_loss(a, b, t, margin=-0.5,
                                                                  reduction="none"),
                          x1, x2, y)
    np.testing.assert_allclose(v, rv, rtol=1e-15)
    for gi, ri in zip(g, rg):
        np.testing.assert_allclose(gi, ri, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(g[0][2], [0.0, 0.0])   # both zero: nothing to follow
    np.testing.assert_array_equal(g[1][:1], [[0.0, 0.0]])  # d cos/d x2 = x1/r - ... = 0


def test_cosine_with_eps_zero_defines_zero_vectors_as_cosine_zero():
    x1 = np.zeros((2, 3)); x2 = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    v, g = cosine_embedding.value_and_grad(x1, x2, np.array([1.0, -1.0]), eps=0.0,
                                           margin=-0.25, reduction="none", wrt="all")
    np.testing.assert_array_equal(v, [1.0, 0.25])
    for gi in g:
        np.testing.assert_array_equal(gi, np.zeros_like(gi))


def test_cosine_with_eps_zero_is_scale_invariant_exactly():
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    y = np.array([1.0, -1, 1, -1, -1])
    for c in (1e-150, 3.0, 1e150):
        np.testing.assert_allclose(cosine_embedding(c * x1, x2, y, eps=0.0, margin=-1.0,
                                                    reduction="none"),
                                   cosine_embedding(x1, x2, y, eps=0.0, margin=-1.0,
                                                    reduction="none"), rtol=1e-13)


def test_norms_neither_underflow_nor_overflow():
    # tiny: ||(3, 4) 1e-200|| = 5e-200 (a naive sum of squares underflows to 0, which would
    # zero the dissimilar pair's gradient); its direction (0.6, 0.8) survives
    x1 = np.array([[3e-200, 4e-200]]); x2 = np.zeros((1, 2))
    for p in (2.0, 3.0):
        g = contrastive.grad(x1, x2, np.array([0.0]), p=p, reduction="sum")
        norm34 = (3 ** p + 4 ** p) ** (1 / p)           # ||(3, 4)||_p
        d = 1e-200 * norm34
        direction = (np.array([3.0, 4.0]) / norm34) ** (p - 1)   # sign(v) (|v| / d)^(p-1)
        np.testing.assert_allclose(g, -(1.0 - d) * direction[None], rtol=1e-14)
    # huge: d(a, p) = 5e200 and d(a, n) = 1e201: satisfied, loss 0 (not inf - inf = NaN)
    a = np.zeros((1, 2)); p = np.array([[3e200, 4e200]]); n = np.array([[6e200, 8e200]])
    v, g = triplet_margin.value_and_grad(a, p, n, reduction="sum", wrt="all")
    assert v == 0.0 and all(np.all(gi == 0) for gi in g)
    v = triplet_margin(a, n, p, reduction="sum")   # swapped: 1 + 1e201 - 5e200
    np.testing.assert_allclose(v, 5e200, rtol=1e-14)


# ------------------------------------------------------------------ shapes
def test_single_examples_are_0d_like_torch_and_a_batch_of_one():
    rng = np.random.default_rng(1)
    a, p, n = (rng.normal(size=4) for _ in range(3))
    v = triplet_margin(a, p, n, reduction="none")
    assert v.shape == ()
    ref = F.triplet_margin_loss(*(torch.tensor(x) for x in (a, p, n)), reduction="none")
    np.testing.assert_allclose(v, ref.numpy(), rtol=1e-14)
    for red in ("sum", "mean", "batchmean"):   # one example: every reduction is its loss
        np.testing.assert_allclose(triplet_margin(a, p, n, reduction=red), v, rtol=1e-15)
        np.testing.assert_allclose(triplet_margin.grad(a, p, n, reduction=red),
                                   triplet_margin.grad(a, p, n, reduction="sum"), rtol=1e-15)
    v = cosine_embedding(a, p, np.asarray(-1.0), margin=-0.5, reduction="none")
    ref = F.cosine_embedding_loss(torch.tensor(a), torch.tensor(p), torch.tensor(-1.0),
                                  margin=-0.5, reduction="none")
    assert v.shape == ()
    np.testing.assert_allclose(v, ref.numpy(), rtol=1e-14)
    assert contrastive.grad([1.0, 2.0], [0.0, 0.0], 1, reduction="batchmean").shape == (2,)


def test_margin_ranking_is_elementwise_for_any_shape():
    rng = np.random.default_rng(2)
    x1, x2 = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    y = np.where(rng.random((2, 3, 4)) > 0.5, 1.0, -1.0)
    v = margin_ranking(x1, x2, y, margin=0.1, reduction="none")
    ref = F.margin_ranking_loss(torch.tensor(x1), torch.tensor(x2), torch.tensor(y),
                                margin=0.1, reduction="none")
    np.testing.assert_allclose(v, ref.numpy(), rtol=1e-15)
    assert margin_ranking(np.float64(1.0), np.float64(0.0), 1.0, reduction="none").shape == ()


def test_empty_batch_and_empty_embedding():
    x = np.zeros((0, 3))
    for loss, inputs in ((contrastive, (x, x, np.zeros(0))),
                         (triplet_margin, (x, x, x)),
                         (cosine_embedding, (x, x, np.zeros(0)))):
        v, g = loss.value_and_grad(*inputs, wrt="all")
        assert v == 0.0 and all(gi.shape == (0, 3) for gi in g)
    # D = 0: every distance is 0 (similar: 0; dissimilar: m^2/2)
    e = np.zeros((2, 0))
    v, g = contrastive.value_and_grad(e, e, np.array([1.0, 0.0]), reduction="none")
    np.testing.assert_array_equal(v, [0.0, 0.5])
    assert g.shape == (2, 0)


def test_sample_weight_multiplies_each_pair_and_its_gradient_rows():
    x1, x2, t = METRIC_CASES[0].inputs(seed=5)
    w = np.linspace(0.0, 2.0, x1.shape[0])
    v, (g1, g2) = contrastive.value_and_grad(x1, x2, t, sample_weight=w, reduction="sum",
                                             wrt="all")
    # torch autograd of the weighted sum of Hadsell's loss
    def ref(a, b, tt):
        d = F.pairwise_distance(a, b, p=2, eps=0.0)
        return torch.tensor(w) * (tt * d ** 2 / 2 + (1 - tt) * F.relu(1.0 - d) ** 2 / 2)
    rv, (r1, r2) = _torch_grads(ref, x1, x2, t)
    np.testing.assert_allclose(v, rv.sum(), rtol=1e-12)
    np.testing.assert_allclose(g1, r1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g2, r2, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("case", METRIC_CASES[::3], ids=[c.id for c in METRIC_CASES[::3]])
def test_float32_in_float32_out_for_every_gradient(case):
    arrays = tuple(a.astype(np.float32) if a.dtype.kind == "f" else a for a in case.inputs())
    v, g = case.loss.value_and_grad(*arrays, wrt="all", **case.options)
    assert v.dtype == np.float32 and all(gi.dtype == np.float32 for gi in g)


def test_float16_torch_stays_float16():
    rng = np.random.default_rng(0)
    a, p, n = (torch.tensor(rng.normal(size=(4, 3)), dtype=torch.float16) for _ in range(3))
    v, g = triplet_margin.value_and_grad(a, p, n, wrt="all")
    assert v.dtype == torch.float16 and all(gi.dtype == torch.float16 for gi in g)
    ref = F.triplet_margin_loss(a.float(), p.float(), n.float())
    np.testing.assert_allclose(float(v), float(ref), rtol=2e-3)


def test_labels_may_be_integer_or_bool():
    x1, x2, t = METRIC_CASES[0].inputs()
    ref = contrastive(x1, x2, t, reduction="none")
    np.testing.assert_array_equal(contrastive(x1, x2, t.astype(np.int64), reduction="none"), ref)
    np.testing.assert_array_equal(contrastive(x1, x2, t.astype(bool), reduction="none"), ref)
    x1, x2, y = METRIC_CASES[9].inputs()
    np.testing.assert_array_equal(margin_ranking(x1, x2, y.astype(np.int32)),
                                  margin_ranking(x1, x2, y))


def test_a_list_for_x2_takes_x1s_dtype():
    x1 = np.array([[1.0, 2.0]], dtype=np.float32)
    v, g2 = contrastive.value_and_grad(x1, [[0.0, 0.0]], [1], wrt="x2")
    assert v.dtype == np.float32 and g2.dtype == np.float32
    np.testing.assert_allclose(v, 2.5)   # 5 / 2


# ------------------------------------------------------------------ NaN
NAN_CASES = [(case, k) for case in (METRIC_CASES[0], METRIC_CASES[5], METRIC_CASES[9],
                                     METRIC_CASES[11])
             for k in range(len(case.loss.differentiable))]


@pytest.mark.parametrize("case,which", NAN_CASES,
                         ids=[f"{c.id}-{c.loss.inputs[k]}" for c, k in NAN_CASES])
def test_nan_in_any_input_propagates_to_its_example_only(case, which):
    arrays = [a.copy() for a in case.inputs()]
    arrays[which].flat[0] = NAN   # belongs to example 0
    v, g = case.loss.value_and_grad(*arrays, reduction="none", wrt="all", **case.options)
    assert np.isnan(v[0]) and np.all(np.isfinite(v[1:]))
    for gi in g:
        assert np.all(np.isnan(gi[0])), case.id
        assert np.all(np.isfinite(gi[1:]))
    assert np.isnan(case.loss(*arrays, **case.options))


# ------------------------------------------------------------------ errors
def _pairs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 3)), rng.normal(size=(4, 3))


def test_contrastive_label_errors():
    x1, x2 = _pairs()
    with pytest.raises(ValueError, match=r"^`target` of contrastive must hold 1 \(similar "
                                         r"pair\) or 0 \(dissimilar pair\); got also \[-1.0\]\. "
                                         r"Map -1/\+1 labels with \(t \+ 1\) / 2"):
        contrastive(x1, x2, np.array([1, -1, 1, 0]))
    with pytest.raises(ValueError, match=r"got also \[0\.5\]"):
        contrastive(x1, x2, np.array([1, 0.5, 1, 0]))
    with pytest.raises(ValueError, match=r"got also \[nan\]"):
        contrastive(x1, x2, np.array([1, NAN, 1, 0]))


@pytest.mark.parametrize("loss", [cosine_embedding, margin_ranking], ids=lambda x: x.name)
def test_plus_minus_one_label_errors(loss):
    x1, x2 = _pairs()
    if loss is margin_ranking:
        x1, x2 = x1[:, 0], x2[:, 0]
    with pytest.raises(ValueError, match=rf"^`target` of {loss.name} must hold 1 \(.*\) or -1 "
                                         r"\(.*\); got also \[0\.0\]\. Map 0/1 labels with "
                                         r"2 \* t - 1$"):
        loss(x1, x2, np.array([1, 0, 1, -1]))


def test_shape_errors_name_the_arguments():
    x1, x2 = _pairs()
    with pytest.raises(ValueError, match=r"^`x2` of contrastive must have the same shape as "
                                         r"`x1` \(4, 3\); got \(4, 2\)$"):
        contrastive(x1, x2[:, :2], np.ones(4))
    with pytest.raises(ValueError, match=r"^`target` of contrastive must have shape \(4,\): "
                                         r"one label per pair, the shape of `x1` without its "
                                         r"last \(embedding\) axis; got \(4, 1\)\. Nothing is "
                                         r"broadcast$"):
        contrastive(x1, x2, np.ones((4, 1)))
    with pytest.raises(ValueError, match=r"^`negative` of triplet_margin must have the same "
                                         r"shape as `anchor` \(4, 3\); got \(3\,\)$"):
        triplet_margin(x1, x2, x2[0])
    with pytest.raises(ValueError, match=r"^`positive` of triplet_margin must have the same "
                                         r"shape as `anchor` \(4, 3\); got \(1, 3\)$"):
        triplet_margin(x1, x2[:1], x2)   # torch would broadcast; losskit does not
    with pytest.raises(ValueError, match=r"^`target` of margin_ranking must have shape "
                                         r"\(4,\), the shape of `x1`; got \(1,\)"):
        margin_ranking(x1[:, 0], x2[:, 0], np.ones(1))
    with pytest.raises(ValueError, match=r"^`x1` of cosine_embedding must have at least 1 axis "
                                         r"\(the last one holds the embedding"):
        cosine_embedding(np.float64(1.0), np.float64(1.0), np.float64(1.0))
    with pytest.raises(ValueError, match=r"^`target` of cosine_embedding must have shape \(\)"):
        cosine_embedding(x1[0], x2[0], np.ones(1))
    with pytest.raises(TypeError, match=r"^triplet_margin\(\) takes 3 arrays \(anchor, "
                                        r"positive, negative\); got 2$"):
        triplet_margin(x1, x2)


def test_dtype_errors():
    x1, x2 = _pairs()
    with pytest.raises(TypeError, match=r"^`x2` of contrastive must have the dtype of `x1` "
                                        r"\(float64\); got float32\. Convert one of them "
                                        r"explicitly"):
        contrastive(x1, x2.astype(np.float32), np.ones(4))
    with pytest.raises(TypeError, match=r"^`x1` of `cosine_embedding` must have a floating "
                                        r"dtype .*; got int64"):
        cosine_embedding(x1.astype(np.int64), x2, np.ones(4))
    with pytest.raises(TypeError, match=r"^`negative` of `triplet_margin` must have a floating "
                                        r"dtype .*; got int64"):
        triplet_margin(x1, x2, x2.astype(np.int64))
    with pytest.raises(TypeError, match=r"^contrastive\(\): all array arguments must come from "
                                        r"one array library"):
        contrastive(torch.tensor(x1), x2, torch.ones(4))


def test_option_errors():
    x1, x2 = _pairs()
    t = np.ones(4)
    with pytest.raises(ValueError, match=r"^`margin` must lie in \[0, inf\]; got -1\.0$"):
        contrastive(x1, x2, t, margin=-1.0)
    with pytest.raises(ValueError, match=r"^`margin` must lie in \(0, inf\]; got 0\.0$"):
        triplet_margin(x1, x2, x2, margin=0.0)   # torch: "margin must be greater than 0"
    with pytest.raises(ValueError, match=r"^`p` must lie in \[1, inf\]; got 0\.5$"):
        triplet_margin(x1, x2, x2, p=0.5)
    with pytest.raises(ValueError, match=r"^`p` must lie in \[1, inf\]; got nan$"):
        contrastive(x1, x2, t, p=NAN)
    with pytest.raises(ValueError, match=r"^`eps` must lie in \[0, inf\]; got -1e-06$"):
        triplet_margin(x1, x2, x2, eps=-1e-6)
    with pytest.raises(ValueError, match=r"^`eps` must lie in \[0, inf\]; got -1\.0$"):
        cosine_embedding(x1, x2, t, eps=-1.0)
    with pytest.raises(TypeError, match=r"^`swap` must be True or False; got 'yes'$"):
        triplet_margin(x1, x2, x2, swap="yes")
    with pytest.raises(ValueError, match=r"^`margin` must be finite; got inf$"):
        margin_ranking(x1[:, 0], x2[:, 0], t, margin=INF)
    with pytest.raises(TypeError, match=r"^`margin` must be a real number; got str$"):
        cosine_embedding(x1, x2, t, margin="0.1")
    with pytest.raises(TypeError, match=r"^contrastive\(\) got unexpected keyword argument\(s\) "
                                        r"'pos_margin'; valid options: reduction, "
                                        r"sample_weight, margin, p$"):
        contrastive(x1, x2, t, pos_margin=0.0)


# ------------------------------------------------------------------ properties
# three decimals: no tiny magnitudes whose powers underflow in the reference arithmetic
finite = st.floats(-10, 10, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def embeddings(draw, k=2, max_n=5, max_d=4):
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    return tuple(draw(arrays(np.float64, (n, d), elements=finite)) for _ in range(k))


def _pm1(draw, n):
    return np.where(draw(arrays(np.bool_, (n,))), 1.0, -1.0)


@SETTINGS
@given(embeddings(3), st.floats(0.01, 5.0), st.sampled_from([1.0, 2.0, 3.0, INF]),
       st.booleans())
def test_triplet_is_non_negative_and_zero_when_the_negative_is_far_enough(xs, margin, p,
                                                                          swap):
    a, pos, neg = xs
    v, g = triplet_margin.value_and_grad(a, pos, neg, margin=margin, p=p, swap=swap,
                                         reduction="none", wrt="all")
    assert np.all(v >= 0) and all(np.all(np.isfinite(gi)) for gi in g)
    # move each negative along its direction from the anchor until d(a, n) >= d(a, p) + m
    eps = 1e-6
    d_ap = np.linalg.norm(a - pos + eps, ord=p, axis=-1)
    u = neg - a
    u = np.where(np.all(u == 0, axis=-1, keepdims=True), 1.0, u)
    u = u / np.linalg.norm(u, ord=p, axis=-1, keepdims=True)
    far = a + u * (d_ap + margin + 1.0 + 2 * eps * a.shape[-1])[:, None]
    if swap:  # the positive must be far from the negative too
        far = far + u * (np.linalg.norm(pos - a, ord=p, axis=-1) + 1.0)[:, None]
    v, g = triplet_margin.value_and_grad(a, pos, far, margin=margin, p=p, swap=swap,
                                         reduction="none", wrt="all")
    np.testing.assert_array_equal(v, 0.0)
    for gi in g:
        np.testing.assert_array_equal(gi, 0.0)


@SETTINGS
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(
    arrays(np.float64, (n,), elements=finite), arrays(np.float64, (n,), elements=finite),
    arrays(np.bool_, (n,)))), st.floats(-2, 2))
def test_margin_ranking_is_symmetric_under_swapping_inputs_and_negating_y(xy, margin):
    x1, x2, b = xy
    y = np.where(b, 1.0, -1.0)
    v, (g1, g2) = margin_ranking.value_and_grad(x1, x2, y, margin=margin, reduction="none",
                                                wrt="all")
    w, (h1, h2) = margin_ranking.value_and_grad(x2, x1, -y, margin=margin, reduction="none",
                                                wrt="all")
    assert np.all(v >= 0)
    np.testing.assert_array_equal(v, w)
    np.testing.assert_array_equal(g1, h2)
    np.testing.assert_array_equal(g2, h1)
    np.testing.assert_array_equal(g1, -g2)


@SETTINGS
@given(embeddings(2), st.floats(0.0, 5.0), st.sampled_from([1.0, 2.0, 3.0, INF]),
       st.data())
def test_contrastive_is_non_negative_symmetric_and_zero_on_identical_similar_pairs(xs, m, p,
                                                                                     data):
    x1, x2 = xs
    t = data.draw(arrays(np.int64, (x1.shape[0],), elements=st.integers(0, 1)))
    v, (g1, g2) = contrastive.value_and_grad(x1, x2, t, margin=m, p=p, reduction="none",
                                             wrt="all")
    assert np.all(v >= 0) and np.all(np.isfinite(g1))
    w, (h1, h2) = contrastive.value_and_grad(x2, x1, t, margin=m, p=p, reduction="none",
                                             wrt="all")
    np.testing.assert_allclose(w, v, rtol=1e-12)
    np.testing.assert_allclose(h1, g2, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(g1, -g2, rtol=0)
    z, zg = contrastive.value_and_grad(x1, x1, np.ones_like(t), margin=m, p=p,
                                       reduction="none")
    np.testing.assert_array_equal(z, 0.0)
    np.testing.assert_array_equal(zg, 0.0)


@SETTINGS
@given(embeddings(2), st.floats(-1.0, 1.0), st.data())
def test_cosine_is_bounded_and_symmetric(xs, margin, data):
    x1, x2 = xs
    y = _pm1(data.draw, x1.shape[0])
    v, (g1, g2) = cosine_embedding.value_and_grad(x1, x2, y, margin=margin, reduction="none",
                                                  wrt="all")
    assert np.all(v >= 0) and np.all(v <= 2 + 1e-12)
    assert np.all(np.isfinite(g1)) and np.all(np.isfinite(g2))
    w, (h1, h2) = cosine_embedding.value_and_grad(x2, x1, y, margin=margin, reduction="none",
                                                  wrt="all")
    np.testing.assert_allclose(w, v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h1, g2, rtol=1e-9, atol=1e-12)
