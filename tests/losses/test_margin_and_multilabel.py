"""The perceptrons, soft margins, hinge embedding, multi-class hinge variants, multi-label
losses, FL* and generalized cross-entropy: edge values from the definitions, the peers'
behaviour at kinks, infinities and padding, the errors, and the fused kernels against the
generic path. Values and gradients against PyTorch, Optax and Keras on ordinary inputs are
in ``tests/cases/cases_margin.py`` (run by ``tests/catalog``) and
``tests/catalog/test_conventions.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import loss_cases  # noqa: F401  (first: it loads cases_margin itself)
import losskit as lk
from losskit.core import dispatch
from losskit.kernels import fast_paths as _fast
from engines import check, generic

torch = pytest.importorskip("torch")
F = torch.nn.functional

try:
    import numba  # noqa: F401

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is in the test extra
    HAVE_NUMBA = False

INF, NAN = np.inf, np.nan
RNG = np.random.default_rng(20260501)


def _torch_grad(fn, x, *rest):
    xt = torch.tensor(x, requires_grad=True)
    v = fn(xt, *[torch.as_tensor(r) for r in rest])
    v.sum().backward()
    return v.detach().numpy(), xt.grad.numpy()


# ------------------------------------------------------------------ binary margin
def test_perceptron_kink_and_infinities():
    s = np.array([0.0, INF, -INF, 2.0, NAN])
    t = np.array([1.0, 1.0, 1.0, -1.0, 1.0])
    v, g = lk.perceptron.value_and_grad(s, t, reduction="none")
    np.testing.assert_array_equal(v[:4], [0.0, 0.0, INF, 2.0])
    np.testing.assert_array_equal(g[:4], [0.0, 0.0, -1.0, 1.0])  # subgradient 0 at t s = 0
    assert np.isnan(v[4]) and np.isnan(g[4])


def test_soft_margin_is_exact_at_huge_and_infinite_scores():
    s = np.array([800.0, -800.0, INF, -INF, 40.0])
    t = np.array([1.0, 1.0, -1.0, -1.0, 1.0])
    v, g = lk.soft_margin.value_and_grad(s, t, reduction="none")
    np.testing.assert_allclose(v, [0.0, 800.0, INF, 0.0, math.exp(-40.0)], rtol=1e-15)
    np.testing.assert_allclose(g, [-0.0, -1.0, 1.0, 0.0, -math.exp(-40.0) / (1 + math.exp(-40))],
                               rtol=1e-15)
    # the same numbers as PyTorch away from overflow
    s2, t2 = np.array([30.0, -30.0, 0.5]), np.array([1.0, 1.0, -1.0])
    ref_v, ref_g = _torch_grad(lambda a, b: F.soft_margin_loss(a, b, reduction="none"), s2, t2)
    v2, g2 = lk.soft_margin.value_and_grad(s2, t2, reduction="none")
    np.testing.assert_allclose(v2, ref_v, rtol=1e-14)
    np.testing.assert_allclose(g2, ref_g, rtol=1e-14)


def test_soft_margin_equals_sigmoid_bce_of_mapped_labels():
    s = RNG.normal(size=(4, 3)) * 3
    t = np.where(RNG.random((4, 3)) > 0.5, 1.0, -1.0)
    v, g = lk.soft_margin.value_and_grad(s, t)
    rv, rg = lk.sigmoid_binary_cross_entropy.value_and_grad(s, (t + 1) / 2)
    np.testing.assert_allclose(v, rv, rtol=1e-14)
    np.testing.assert_allclose(g, rg, rtol=1e-14, atol=1e-17)


def test_hinge_embedding_matches_torch_on_negative_inputs_and_at_the_margin():
    x = np.array([-0.5, 0.3, 1.0, 1.7, -2.0])  # any real x, as PyTorch's
    t = np.array([1.0, -1.0, -1.0, -1.0, -1.0])
    v, g = lk.hinge_embedding.value_and_grad(x, t, reduction="none")
    ref_v, _ = _torch_grad(lambda a, b: F.hinge_embedding_loss(a, b, reduction="none"), x, t)
    np.testing.assert_allclose(v, ref_v, rtol=1e-15)
    np.testing.assert_array_equal(g, [1.0, -1.0, 0.0, 0.0, -1.0])  # 0 at the kink x = m


@pytest.mark.parametrize("loss", [lk.perceptron, lk.soft_margin, lk.hinge_embedding])
def test_binary_margin_labels_must_be_plus_or_minus_one(loss):
    with pytest.raises(ValueError, match=r"`target` of \w+ must hold labels -1 or \+1; got "
                                         r"also \[0\.0\]"):
        loss(np.ones(3), np.array([1.0, 0.0, -1.0]))


# ------------------------------------------------------------------ multi-class hinge
def test_multiclass_hinge_default_is_unchanged_by_the_new_options():
    s, y = RNG.normal(size=(5, 4)), RNG.integers(0, 4, size=5)
    base = lk.multiclass_hinge.value_and_grad(s, y)
    same = lk.multiclass_hinge.value_and_grad(s, y, p=1, variant="weston_watkins")
    np.testing.assert_array_equal(base[0], same[0])
    np.testing.assert_array_equal(base[1], same[1])


def test_crammer_singer_ties_share_the_gradient_as_jax_does():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    s = np.array([[1.0, 1.0, 0.0, 1.0]])
    y = np.array([2])
    g = lk.multiclass_hinge.grad(s, y, variant="crammer_singer", reduction="sum")
    ref = jax.grad(lambda a: optax.losses.multiclass_hinge_loss(a, y).sum())(s)
    np.testing.assert_allclose(g, np.asarray(ref), rtol=1e-15)
    np.testing.assert_allclose(g, [[1 / 3, 1 / 3, -1.0, 1 / 3]])


def test_multiclass_hinge_infinite_and_nan_scores():
    s = np.array([[0.0, -INF, 1.0], [INF, 0.0, 0.0], [0.0, NAN, 0.0]])
    y = np.array([0, 1, 0])
    for variant in ("weston_watkins", "crammer_singer", "categorical"):
        v, g = lk.multiclass_hinge.value_and_grad(s, y, variant=variant, reduction="none")
        assert v[0] == 2.0  # -inf on a wrong class: masked, only 1 - 0 + 1 counts
        assert v[1] == INF
        assert np.isnan(v[2]) and np.isnan(g[2]).all()
        assert np.isfinite(g[:2]).all()


def test_categorical_row_without_a_true_class():
    s = np.array([[0.5, -2.0, 1.5]])
    t = np.zeros((1, 3))
    v, g = lk.multiclass_hinge.value_and_grad(s, t, variant="categorical", p=2)
    assert float(v) == pytest.approx(2.5 ** 2)  # max(0, 1 + max_j s_j)^2
    np.testing.assert_allclose(g, [[0.0, 0.0, 5.0]])


def test_categorical_integer_labels_equal_one_hot_targets_and_ignore_rows():
    s, y = RNG.normal(size=(6, 4)), RNG.integers(0, 4, size=6)
    cw = np.array([0.5, 2.0, 1.0, 3.0])
    for red in ("none", "sum"):
        a = lk.multiclass_hinge.value_and_grad(s, y, variant="categorical", class_weight=cw,
                                               reduction=red)
        b = lk.multiclass_hinge.value_and_grad(s, np.eye(4)[y], variant="categorical",
                                               class_weight=cw, reduction=red)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-14)
        np.testing.assert_allclose(a[1], b[1], rtol=1e-14)
    y2 = y.copy()
    y2[:2] = -100
    v, g = lk.multiclass_hinge.value_and_grad(s, y2, variant="categorical", ignore_index=-100,
                                              reduction="none")
    assert not v[:2].any() and not g[:2].any()


def test_multiclass_hinge_option_errors():
    s, y = np.zeros((2, 3)), np.array([0, 1])
    with pytest.raises(ValueError, match=r"^`p` of multiclass_hinge must be 1 or 2; got 3$"):
        lk.multiclass_hinge(s, y, p=3)
    with pytest.raises(TypeError, match="`p`"):
        lk.multiclass_hinge(s, y, p=2.0)
    with pytest.raises(ValueError, match=r"^`variant` must be one of 'weston_watkins', "
                                         r"'crammer_singer', 'categorical'; got 'ww'$"):
        lk.multiclass_hinge(s, y, variant="ww")
    with pytest.raises(TypeError, match="variant='categorical'"):
        lk.multiclass_hinge(s, np.eye(3)[y], variant="crammer_singer")
    with pytest.raises(ValueError, match=r"`target` must lie in \[0, 1\]"):
        lk.multiclass_hinge(s, np.full((2, 3), 2.0), variant="categorical")
    with pytest.raises(ValueError, match=r"`class_weight` must have one weight per class"):
        lk.multiclass_hinge(s, np.eye(3)[y], variant="categorical", class_weight=[1.0, 2.0])


def test_multiclass_hinge_fast_path_declines_the_new_variants():
    s, y = RNG.normal(size=(8, 5)), RNG.integers(0, 5, size=8)
    before = sum(_fast.STATS.values())
    for kw in ({"p": 2}, {"variant": "crammer_singer"}, {"variant": "categorical"}):
        got = lk.multiclass_hinge.value_and_grad(s, y, **kw)
        ref = generic(lk.multiclass_hinge, s, y, **kw)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    assert sum(_fast.STATS.values()) == before


# ------------------------------------------------------------------ multi-class perceptron
def test_multiclass_perceptron_correct_class_among_the_best_costs_zero_with_zero_gradient():
    s = np.array([[2.0, 2.0, 1.0], [1.0, 3.0, 3.0], [INF, 0.0, 1.0]])
    y = np.array([0, 0, 0])
    v, g = lk.multiclass_perceptron.value_and_grad(s, y, reduction="none")
    np.testing.assert_array_equal(v, [0.0, 2.0, 0.0])
    np.testing.assert_array_equal(g, [[0, 0, 0], [-1.0, 0.5, 0.5], [0, 0, 0]])


# ------------------------------------------------------------------ multilabel margin
def test_multilabel_margin_reads_up_to_the_first_minus_one_and_counts_repeats():
    x = RNG.normal(size=(4, 5))
    y = np.array([[1, 1, -1, 3, 4], [-1, 2, 2, 2, 2], [0, 1, 2, 3, 4], [4, 2, -1, -1, -1]])
    ref_v, ref_g = _torch_grad(lambda a, b: F.multilabel_margin_loss(a, b, reduction="none"),
                               x, y)
    v, g = lk.multilabel_margin.value_and_grad(x, y, reduction="none")
    np.testing.assert_allclose(v, ref_v, rtol=1e-14)
    np.testing.assert_allclose(g, ref_g, rtol=1e-14, atol=1e-16)
    assert v[1] == 0.0 and v[2] == 0.0  # no true class; every class true


def test_multilabel_margin_single_example_and_margin_option():
    x, y = np.array([0.1, 0.2, 0.4, 0.8]), np.array([3, 0, -1, 1])
    assert float(lk.multilabel_margin(x, y)) == pytest.approx(0.85)
    # margin 0.5: pairs (3, 1) 0, (3, 2) 0.1, (0, 1) 0.6, (0, 2) 0.8
    assert float(lk.multilabel_margin(x, y, margin=0.5)) == pytest.approx(1.5 / 4)


def test_multilabel_margin_errors():
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match="integer class indices padded with -1"):
        lk.multilabel_margin(x, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"`target` must lie in \[-1, 2\]"):
        lk.multilabel_margin(x, np.array([[0, 3, -1], [0, -1, 0]]))
    with pytest.raises(ValueError, match="target"):
        lk.multilabel_margin(x, np.array([0, 1]))


def test_multilabel_margin_nan_poisons_its_row_only():
    x = np.array([[NAN, 0.0, 1.0], [0.0, 0.5, 1.0]])
    y = np.array([[0, -1, 0], [2, -1, 0]])
    v, g = lk.multilabel_margin.value_and_grad(x, y, reduction="none")
    assert np.isnan(v[0]) and np.isnan(g[0]).all()
    assert np.isfinite(v[1]) and np.isfinite(g[1]).all()


# ------------------------------------------------------------------ multilabel soft margin
def test_multilabel_soft_margin_reductions_against_torch_and_class_weight_errors():
    x, t = RNG.normal(size=(5, 3)), RNG.random(size=(5, 3))
    for red in ("none", "sum", "mean"):
        ref_v, ref_g = _torch_grad(
            lambda a, b: F.multilabel_soft_margin_loss(a, b, reduction=red), x, t)
        v, g = lk.multilabel_soft_margin.value_and_grad(x, t, reduction=red)
        np.testing.assert_allclose(v, ref_v, rtol=1e-14)
        np.testing.assert_allclose(g, ref_g, rtol=1e-14)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        lk.multilabel_soft_margin(x, t, class_weight=np.ones(4))
    with pytest.raises(ValueError, match="non-negative"):
        lk.multilabel_soft_margin(x, t, class_weight=-np.ones(3))


# ------------------------------------------------------------------ ASL
def test_asymmetric_loss_gradient_includes_the_focusing_weight():
    from cases_margin import asl_torch

    x, t = RNG.normal(size=(4, 6)) * 2, (RNG.random(size=(4, 6)) > 0.5).astype(float)
    g = lk.asymmetric_loss.grad(x, t, reduction="sum")
    xt = torch.tensor(x, requires_grad=True)
    asl_torch(xt, torch.tensor(t)).sum().backward()
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-12, atol=1e-15)
    # the official detached variant differs: the weight's derivative is missing there
    xd = torch.tensor(x, requires_grad=True)
    t = torch.tensor(t)
    p = torch.sigmoid(xd)
    neg = (1 - p + 0.05).clamp(max=1)
    ce = t * torch.log(p.clamp(min=1e-8)) + (1 - t) * torch.log(neg.clamp(min=1e-8))
    with torch.no_grad():
        w = torch.pow(1 - (p * t + neg * (1 - t)), 1.0 * t + 4.0 * (1 - t))
    (-(ce * w)).sum().backward()
    assert not np.allclose(g, xd.grad.numpy(), rtol=1e-3)


def test_asymmetric_loss_discards_negatives_below_the_clip_and_reduces_to_bce():
    x = np.array([np.log(0.04 / 0.96), -30.0, 30.0])  # p = 0.04 < clip
    v, g = lk.asymmetric_loss.value_and_grad(x, np.zeros(3), reduction="none")
    assert v[0] == 0.0 and g[0] == 0.0 and v[1] == 0.0
    z, t = RNG.normal(size=(3, 4)), (RNG.random(size=(3, 4)) > 0.5).astype(float)
    a = lk.asymmetric_loss.value_and_grad(z, t, gamma_pos=0.0, gamma_neg=0.0, clip=0.0,
                                          eps=0.0)
    b = lk.sigmoid_binary_cross_entropy.value_and_grad(z, t)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-13)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-12, atol=1e-16)


def test_asymmetric_loss_option_errors():
    z, t = np.zeros(3), np.ones(3)
    for name, bad in (("gamma_pos", -1.0), ("gamma_neg", INF), ("clip", 1.0), ("eps", -0.1)):
        with pytest.raises(ValueError, match=f"`{name}`"):
            lk.asymmetric_loss(z, t, **{name: bad})
    with pytest.raises(ValueError, match=r"`target` must lie in \[0, 1\]"):
        lk.asymmetric_loss(z, -t)


# ------------------------------------------------------------------ FL*
def test_focal_loss_star_gamma_one_is_logistic_and_gamma_zero_is_an_error():
    z, t = RNG.normal(size=(3, 4)) * 3, (RNG.random(size=(3, 4)) > 0.5).astype(float)
    a = lk.sigmoid_focal_loss_star.value_and_grad(z, t)
    b = lk.sigmoid_binary_cross_entropy.value_and_grad(z, t)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-13)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=1e-17)
    with pytest.raises(ValueError, match="`gamma` of sigmoid_focal_loss_star must be positive"):
        lk.sigmoid_focal_loss_star(z, t, gamma=0.0)
    with pytest.raises(ValueError, match="`alpha`"):
        lk.sigmoid_focal_loss_star(z, t, alpha=1.5)
    # a negative alpha (fvcore's -1) disables the weighting, as None does
    np.testing.assert_array_equal(lk.sigmoid_focal_loss_star(z, t, alpha=-1.0),
                                  lk.sigmoid_focal_loss_star(z, t))


# ------------------------------------------------------------------ GCE
def test_generalized_cross_entropy_limits_and_zero_probability():
    p = np.array([[0.2, 0.3, 0.5]])
    y = np.array([2])
    # q -> 0: cross-entropy; q = 1: 1 - p_y
    np.testing.assert_allclose(lk.generalized_cross_entropy(p, y, q=1e-8), -np.log(0.5),
                               rtol=1e-7)
    assert float(lk.generalized_cross_entropy(p, y, q=1.0)) == pytest.approx(0.5)
    v, g = lk.generalized_cross_entropy.value_and_grad(np.array([[0.0, 1.0]]), np.array([0]))
    assert float(v) == 2.0 and g[0, 0] == -INF and g[0, 1] == 0.0
    with pytest.raises(ValueError, match=r"`q` must lie in \(0, 1\]"):
        lk.generalized_cross_entropy(p, y, q=0.0)
    with pytest.raises(ValueError, match="expects probabilities"):
        lk.generalized_cross_entropy(p * 3, y)


def test_generalized_cross_entropy_chain_rule_through_softmax():
    """The logit gradient is p_y^q (p - e_y), the paper's eq. 5."""
    z, y, q = RNG.normal(size=(4, 5)), RNG.integers(0, 5, size=4), 0.7
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    g = lk.generalized_cross_entropy.grad(p, y, q=q, reduction="sum")
    jac = np.einsum("nc,nk->nck", p, -p) + np.einsum("nc,ck->nck", p, np.eye(5))
    gz = np.einsum("nc,nck->nk", g, jac)
    py = p[np.arange(4), y][:, None]
    np.testing.assert_allclose(gz, py ** q * (p - np.eye(5)[y]), rtol=1e-12)


# ------------------------------------------------------------------ fused == generic
POINTWISE = [
    (lk.perceptron, {}, "sign"),
    (lk.soft_margin, {}, "sign"),
    (lk.hinge_embedding, {"margin": 0.5}, "sign"),
    (lk.asymmetric_loss, {}, "binary"),
    (lk.asymmetric_loss, {"gamma_pos": 0.5, "gamma_neg": 2.0, "clip": 0.0, "eps": 1e-6},
     "prob"),
    (lk.sigmoid_focal_loss_star, {}, "binary"),
    (lk.sigmoid_focal_loss_star, {"gamma": 3.0, "alpha": 0.25}, "prob"),
]


def _inputs(kind, shape, dtype):
    z = np.asarray(RNG.normal(size=shape) * 4.0, dtype=dtype)
    if kind == "sign":
        t = np.where(RNG.random(shape) < 0.5, -1.0, 1.0)
        edges_z, edges_t = [NAN, INF, -INF, 1.0, 0.5, 0.0], [1.0, 1.0, -1.0, 1.0, -1.0, -1.0]
    elif kind == "binary":
        t = (RNG.random(shape) < 0.3).astype(float)
        edges_z, edges_t = [NAN, INF, -INF, 40.0, -40.0, 0.0], [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    else:
        t = RNG.random(shape)
        edges_z, edges_t = [NAN, INF, -INF, 40.0, -40.0, 0.0], [0.5, 1.0, 0.2, 0.9, 0.1, 0.0]
    t = t.astype(dtype)
    if z.size >= len(edges_z):
        z.reshape(-1)[:len(edges_z)] = edges_z
        t.reshape(-1)[:len(edges_t)] = edges_t
    return z, t


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("loss", "kw", "kind"), POINTWISE,
                         ids=[f"{c[0].name}-{i}" for i, c in enumerate(POINTWISE)])
def test_pointwise_fast_paths_equal_the_generic_path(monkeypatch, engine, dtype, loss, kw,
                                                     kind):
    if engine == "numba" and not HAVE_NUMBA:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(dispatch, "ENABLED", True)
    monkeypatch.setattr(_fast, "USE_NUMBA", engine == "numba")
    for shape in [(7,), (13, 5), (3000,)]:
        arrays = _inputs(kind, shape, dtype)
        for reduction in ("none", "sum", "mean"):
            check(loss, arrays, engine, dtype, reduction=reduction, **kw)
