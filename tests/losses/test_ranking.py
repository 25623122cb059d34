"""Ranking losses: pairwise_logistic_loss, lambdarank_loss, ranking_softmax_loss,
listmle_loss.

Padding masks, ties, lists with nothing to rank, float32, finite differences, the torch
and JAX adapters, every error, hypothesis properties. Expected numbers come from Optax
(``optax.losses.ranking_softmax_loss`` and ``jax.grad`` of it), from the published
formulas written out in torch on the valid items only (``cases_ranking``: RankNet,
LambdaRank, ListNet/Optax, ListMLE, with torch autograd for the gradients) or from hand
derivations in the comments; never from losskit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import loss_cases  # noqa: F401  (first: it imports cases_ranking itself)
import losskit as lk
from cases_ranking import (j_ranking_softmax, lists, t_lambdarank, t_listmle, t_ranking_softmax,
                           t_ranknet)
from losskit.core import dispatch

torch = pytest.importorskip("torch")

LOSSES = [lk.pairwise_logistic_loss, lk.lambdarank_loss, lk.ranking_softmax_loss,
          lk.listmle_loss]
REFS = {"pairwise_logistic_loss": t_ranknet, "lambdarank_loss": t_lambdarank,
        "ranking_softmax_loss": t_ranking_softmax, "listmle_loss": t_listmle}
IDS = [loss.name for loss in LOSSES]
REDUCTIONS = ("none", "sum", "mean", "batchmean")
SETTINGS = settings(max_examples=40, deadline=None)

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@pytest.fixture(params=[True, False], ids=["fast", "generic"])
def fast(request):
    """Every test runs through the fused NumPy kernels and through the generic path."""
    saved = dispatch.ENABLED
    dispatch.ENABLED = request.param
    yield request.param
    dispatch.ENABLED = saved


def _torch(loss, s, y, reduction, where=None):
    """Value and autograd gradient of the torch reference."""
    st_ = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    v = REFS[loss.name](st_, torch.tensor(y, dtype=torch.float64), reduction, torch,
                        where=where)
    (v.sum() if reduction == "none" else v).backward()
    return v.detach().numpy(), st_.grad.numpy()


def _padded(rng, n=5, length=7, grades=3):
    """Lists of different lengths padded to ``length``: NaN scores and -1 labels on the
    padding, a list of one item, a list with nothing to rank, a list of padding only."""
    s, y = lists((n, length), grades=grades)(rng)
    where = np.ones((n, length), bool)
    lengths = [length, 4, 1, 5, 0][:n]
    for k, m in enumerate(lengths):
        where[k, m:] = False
    y[3, :5] = 1.0  # all equal: nothing to rank
    s[~where] = np.nan
    y[~where] = -1.0
    return s, y, where


# ------------------------------------------------------------------ references
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_padded_lists_match_the_reference_on_the_valid_items(loss, reduction, fast):
    s, y, where = _padded(np.random.default_rng(0))
    ref_v, ref_g = _torch(loss, s, y, reduction, where=where)
    v, g = loss.value_and_grad(s, y, where=where, reduction=reduction)
    np.testing.assert_allclose(v, ref_v, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g, np.nan_to_num(ref_g), rtol=1e-10, atol=1e-13)
    assert not np.any(g[~where])  # padding has no gradient (NaN scores there included)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
@pytest.mark.parametrize("shape", [(7,), (3, 2, 6), (4, 40)])
def test_shapes_match_the_reference(loss, shape, fast):
    s, y = lists(shape)(np.random.default_rng(1))
    for reduction in ("none", "mean"):
        ref_v, ref_g = _torch(loss, s, y, reduction)
        v, g = loss.value_and_grad(s, y, reduction=reduction)
        assert v.shape == ref_v.shape == shape[:-1] or reduction != "none"
        np.testing.assert_allclose(v, ref_v, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_float32(loss, fast):
    s, y, where = _padded(np.random.default_rng(2))
    ref_v, ref_g = _torch(loss, s, y, "mean", where=where)
    v, g = loss.value_and_grad(s.astype(np.float32), y.astype(np.float32), where=where)
    assert v.dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(v, ref_v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g, np.nan_to_num(ref_g), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ranking_softmax_equals_optax_with_where_and_weights(reduction, fast):
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    import jax.numpy as jnp

    rng = np.random.default_rng(3)
    s, y, where = _padded(rng)
    s = np.where(where, s, 0.0)  # Optax reads the padding's scores (a NaN would stay)
    y = np.where(where, y, 0.0)
    u = rng.uniform(0.2, 2.0, size=s.shape)
    y[4] = 0.0
    for kw in ({}, {"where": where}, {"weights": u}, {"where": where, "weights": u}):
        jkw = {k: jnp.asarray(a) for k, a in kw.items()}
        ref_v, ref_g = jax.value_and_grad(
            lambda z: jnp.sum(j_ranking_softmax(z, jnp.asarray(y), reduction, **jkw)))(
            jnp.asarray(s))
        v, g = lk.ranking_softmax_loss.value_and_grad(s, y, reduction=reduction, **kw)
        if reduction == "none":
            ref_v = j_ranking_softmax(jnp.asarray(s), jnp.asarray(y), reduction, **jkw)
        np.testing.assert_allclose(v, np.asarray(ref_v), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(g, np.asarray(ref_g), rtol=1e-12, atol=1e-14)


def test_ranking_softmax_all_zero_labels_and_empty_lists_as_optax():
    """Optax: a list of labels 0 costs 0 and counts in the mean; a list without valid
    items is left out of the mean."""
    pytest.importorskip("optax")
    import jax.numpy as jnp
    import optax

    s = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [4.0, 1.0, 0.0]])
    y = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 2.0], [1.0, 1.0, 0.0]])
    where = np.array([[True, True, True], [True, True, False], [False, False, False]])
    ref = optax.losses.ranking_softmax_loss(jnp.asarray(s), jnp.asarray(y),
                                            where=jnp.asarray(where))
    np.testing.assert_allclose(lk.ranking_softmax_loss(s, y, where=where), float(ref),
                               rtol=1e-13)
    # by hand: list 2 is -log softmax(0.3, -1)_0 = log(1 + e^-1.3), over 2 lists
    np.testing.assert_allclose(float(ref), math.log1p(math.exp(-1.3)) / 2, rtol=1e-13)
    v, g = lk.ranking_softmax_loss.value_and_grad(s, y, where=where, reduction="none")
    assert v[0] == 0 and v[2] == 0 and not g[0].any() and not g[2].any()


# ------------------------------------------------------------------ edges
@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_nothing_to_rank_costs_zero_and_counts_in_the_mean(loss, fast):
    s = np.array([[0.3, -1.2, 2.0], [1.0, 0.0, 0.5]])
    y = np.array([[2.0, 2.0, 2.0], [2.0, 0.0, 1.0]])
    v, g = loss.value_and_grad(s, y, reduction="none")
    one, g1 = loss.value_and_grad(s[1], y[1], reduction="none")
    assert v.shape == (2,) and one.shape == ()
    if loss is lk.ranking_softmax_loss:  # softmax CE against labels 2, 2, 2: not 0
        ref = 6 * np.log(np.exp(s[0]).sum()) - 2 * s[0].sum()
        np.testing.assert_allclose(v[0], ref, rtol=1e-12)
        np.testing.assert_allclose(g[0], 6 * np.exp(s[0]) / np.exp(s[0]).sum() - 2,
                                   rtol=1e-12)
        y = np.array([[0.0, 0.0, 0.0], y[1]])
        v, g = loss.value_and_grad(s, y, reduction="none")
    elif loss is lk.listmle_loss:  # the permutation of equal labels still has a likelihood
        ref = np.log(np.exp(s[0]).sum()) - s[0, 0] + np.log(np.exp(s[0, 1:]).sum()) - s[0, 1]
        np.testing.assert_allclose(v[0], ref, rtol=1e-12)
        return
    assert v[0] == 0 and not g[0].any()
    assert float(v[1]) == pytest.approx(float(one), rel=1e-13)
    mean = loss(s, y)
    np.testing.assert_allclose(mean, v.sum() / 2, rtol=1e-13)  # both lists count


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_fully_padded_lists_are_left_out_of_the_mean(loss, fast):
    s, y = lists((3, 4))(np.random.default_rng(4))
    where = np.ones_like(s, dtype=bool)
    where[1] = False
    v = loss(s, y, where=where, reduction="none")
    assert v[1] == 0
    np.testing.assert_allclose(loss(s, y, where=where), (v[0] + v[2]) / 2, rtol=1e-13)
    nothing = np.zeros_like(where)
    v, g = loss.value_and_grad(s, y, where=nothing)
    assert float(v) == 0 and not g.any()


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_padding_equals_dropping_the_items(loss, fast):
    s, y = lists((1, 6))(np.random.default_rng(5))
    where = np.array([[True, False, True, True, False, True]])
    v, g = loss.value_and_grad(s, y, where=where)
    v2, g2 = loss.value_and_grad(s[where], y[where])
    np.testing.assert_allclose(v, v2, rtol=1e-13)
    np.testing.assert_allclose(g[where], g2, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_empty_lists_and_batches(loss, fast):
    for shape in ((3, 0), (0, 4), (0,)):
        v, g = loss.value_and_grad(np.zeros(shape), np.zeros(shape), reduction="none")
        assert v.shape == shape[:-1] and g.shape == shape and not v.any()
        assert float(loss(np.zeros(shape), np.zeros(shape))) == 0.0


def test_listmle_ties_are_broken_by_index():
    """Equal labels: the earlier item is taken first (a stable sort), so swapping the
    two tied items changes the value; by hand for s = (a, b), y = (1, 1):
    log(e^a + e^b) - a."""
    s = np.array([0.5, -0.25, 1.0])
    y = np.array([1.0, 1.0, 0.0])
    expected = (np.log(np.exp(s).sum()) - s[0]) + (np.log(np.exp(s[1:]).sum()) - s[1])
    np.testing.assert_allclose(lk.listmle_loss(s, y), expected, rtol=1e-13)
    swapped = lk.listmle_loss(s[[1, 0, 2]], y)
    assert not np.isclose(swapped, expected)


def test_lambdarank_ties_of_the_scores_rank_the_earlier_item_first():
    """s = (0, 0), y = (0, 1): the tie ranks item 0 (irrelevant) first, so the relevant
    item sits at rank 2: |dNDCG| = (1 - 1/log2 3) / 1, times log 2."""
    w = 1 - 1 / math.log2(3)
    v, g = lk.lambdarank_loss.value_and_grad(np.zeros(2), np.array([0.0, 1.0]))
    np.testing.assert_allclose(v, w * math.log(2), rtol=1e-13)
    np.testing.assert_allclose(g, [w / 2, -w / 2], rtol=1e-13)
    # three items, labels (2, 1, 0) scored (0, 1, 2): every pair inverted. Ranks (3, 2, 1),
    # gains (3, 1, 0), IDCG = 3 + 1/log2 3; pair (0, 1): |3 - 1| |1/2 - 1/log2 3|, ...
    s, y = np.array([0.0, 1.0, 2.0]), np.array([2.0, 1.0, 0.0])
    d = 1 / np.log2(1 + np.array([3.0, 2.0, 1.0]))
    gain = 2 ** y - 1
    idcg = 3 + 1 / math.log2(3)
    pairs = [(0, 1), (0, 2), (1, 2)]
    ref = sum(abs(gain[i] - gain[j]) * abs(d[i] - d[j]) / idcg * math.log1p(math.exp(s[j] - s[i]))
              for i, j in pairs)
    np.testing.assert_allclose(lk.lambdarank_loss(s, y), ref, rtol=1e-13)


def test_large_scores_neither_overflow_nor_lose_precision(fast):
    s = np.array([[1000.0, 999.0, 998.0]])
    y = np.array([[2.0, 1.0, 0.0]])
    base = s - 1000.0
    for loss in LOSSES:
        v, g = loss.value_and_grad(s, y)
        v0, g0 = loss.value_and_grad(base, y)
        np.testing.assert_allclose(v, v0, rtol=1e-12)
        np.testing.assert_allclose(g, g0, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_nan_score_of_a_valid_item_makes_its_list_nan(loss, fast):
    s = np.array([[0.5, np.nan, 1.0], [0.2, 0.1, 0.0]])
    y = np.array([[1.0, 1.0, 1.0], [2.0, 1.0, 0.0]])
    v = loss(s, y, reduction="none")
    assert np.isnan(v[0]) and np.isfinite(v[1])


# ------------------------------------------------------------------ finite differences
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_gradient_matches_finite_differences_with_padding(loss, reduction, fast):
    s, y, where = _padded(np.random.default_rng(6))
    s = np.where(where, s, 0.0)
    kw = {"where": where}
    if loss is lk.ranking_softmax_loss:
        kw["weights"] = np.random.default_rng(7).uniform(0.5, 2.0, size=s.shape)
    res = lk.gradcheck(loss, s, y, reduction=reduction, **kw)
    assert res.ok and res.kinks == 0, res


# ------------------------------------------------------------------ adapters
@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_torch_autograd_gives_the_closed_form(loss):
    s, y, where = _padded(np.random.default_rng(8))
    ref_v, ref_g = _torch(loss, s, y, "mean", where=where)
    st_ = torch.tensor(np.where(where, s, 0.0), requires_grad=True)
    v = loss(st_, torch.tensor(y), where=torch.tensor(where))
    v.backward()
    np.testing.assert_allclose(v.detach().numpy(), ref_v, rtol=1e-10)
    np.testing.assert_allclose(st_.grad.numpy(), np.nan_to_num(ref_g), rtol=1e-10, atol=1e-13)
    # integer labels and reduction="none": the cotangent of every list
    st_.grad = None
    w = torch.arange(1.0, 6.0, dtype=torch.float64)
    (loss(st_, torch.tensor(y.astype(np.int64)), where=torch.tensor(where),
          reduction="none") * w).sum().backward()
    g = loss.grad(np.where(where, s, 0.0), y, where=where, reduction="sum",
                  sample_weight=w.numpy())
    np.testing.assert_allclose(st_.grad.numpy(), g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_jax_grad_and_jit_give_the_closed_form(loss):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    s, y, where = _padded(np.random.default_rng(9))
    s = np.where(where, s, 0.0)
    ref_v, ref_g = _torch(loss, s, y, "mean", where=where)
    f = jax.jit(jax.value_and_grad(lambda z, t, m: loss(z, t, where=m)))
    v, g = f(jnp.asarray(s), jnp.asarray(y), jnp.asarray(where))
    np.testing.assert_allclose(np.asarray(v), ref_v, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(g), ref_g, rtol=1e-10, atol=1e-13)
    # reduction="none" under grad: the vector-Jacobian product of every list
    w = jnp.arange(1.0, 6.0)
    g2 = jax.grad(lambda z: jnp.sum(w * loss(z, jnp.asarray(y), where=jnp.asarray(where),
                                             reduction="none")))(jnp.asarray(s))
    ref2 = loss.grad(s, y, where=where, reduction="sum", sample_weight=np.asarray(w))
    np.testing.assert_allclose(np.asarray(g2), ref2, rtol=1e-12, atol=1e-15)


def test_invalid_labels_under_jit_make_the_result_nan():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    s = jnp.asarray([[0.1, 0.2, 0.3]])
    bad = jnp.asarray([[1.0, jnp.nan, 0.0]])
    for loss in LOSSES:
        assert np.isnan(float(jax.jit(lambda z, t: loss(z, t))(s, bad)))
        # ... and with validate=False on NumPy, as the checks cannot run
        assert np.isnan(float(loss(np.asarray(s), np.asarray(bad), validate=False)))
    neg = jnp.asarray([[1.0, -1.0, 0.0]])
    assert np.isnan(float(jax.jit(lambda z, t: lk.lambdarank_loss(z, t))(s, neg)))
    assert np.isfinite(float(jax.jit(lambda z, t: lk.listmle_loss(z, t))(s, neg)))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_errors(loss):
    s, y = np.zeros((2, 3)), np.zeros((2, 3))
    with pytest.raises(ValueError, match=rf"`labels` of {loss.name} must have the shape of "
                                         r"`scores` \(2, 3\).*got \(2, 2\)"):
        loss(s, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"`scores` .* at least 1 axis"):
        loss(np.float64(1.0), np.float64(1.0))
    with pytest.raises(TypeError, match=r"`where` .* must be a boolean array .*got int64"):
        loss(s, y, where=np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"`where` .* shape of `scores` \(2, 3\); got \(3,\)"):
        loss(s, y, where=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match=r"`labels` .* must be finite"):
        loss(s, np.array([[0.0, np.nan, 1.0], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"`labels` .* must be finite"):
        loss(s, np.array([[0.0, np.inf, 1.0], [0, 0, 0]]))
    # NaN on a padding item is fine
    where = np.array([[True, False, True], [True, True, True]])
    assert np.isfinite(loss(s, np.array([[0.0, np.nan, 1.0], [0, 0, 0]]), where=where))
    with pytest.raises(TypeError, match=r"`scores`"):
        loss(np.zeros((2, 3), dtype=np.int64), y)
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*'mask'"):
        loss(s, y, mask=np.ones((2, 3), bool))


@pytest.mark.parametrize("loss", [lk.lambdarank_loss, lk.ranking_softmax_loss],
                         ids=["lambdarank_loss", "ranking_softmax_loss"])
def test_negative_labels_are_an_error_where_their_values_count(loss):
    with pytest.raises(ValueError, match=r"`labels` .* finite and non-negative"):
        loss(np.zeros(3), np.array([1.0, -1.0, 0.0]))
    # allRank's padding label -1, masked out: fine
    assert np.isfinite(loss(np.zeros(3), np.array([1.0, -1.0, 0.0]),
                            where=np.array([True, False, True])))


def test_negative_labels_are_fine_where_only_their_order_counts():
    s = np.array([0.3, -0.2, 1.0])
    for loss in (lk.pairwise_logistic_loss, lk.listmle_loss):
        np.testing.assert_allclose(loss(s, np.array([-1.0, -3.0, -2.0])),
                                   loss(s, np.array([2.0, 0.0, 1.0])), rtol=1e-14)


def test_ranking_softmax_weights_errors():
    s = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"`weights` .* shape of `scores`"):
        lk.ranking_softmax_loss(s, s, weights=np.ones(3))
    with pytest.raises(ValueError, match=r"`weights` .* non-negative"):
        lk.ranking_softmax_loss(s, s, weights=-np.ones((2, 3)))


# ------------------------------------------------------------------ properties
@st.composite
def scored_lists(draw, max_n=4, max_l=7):
    n = draw(st.integers(1, max_n))
    length = draw(st.integers(1, max_l))
    s = draw(arrays(np.float64, (n, length), elements=st.floats(-20, 20)))
    y = draw(arrays(np.float64, (n, length), elements=st.integers(0, 3).map(float)))
    where = draw(arrays(np.bool_, (n, length)))
    return s, y, where


def _distinct(s):
    """Scores in the order of ``s`` (ties by index), one apart: no rounding ties them."""
    return np.argsort(np.argsort(s, axis=-1, kind="stable"), axis=-1).astype(np.float64)


@SETTINGS
@given(scored_lists(), st.floats(-50, 50))
def test_adding_a_constant_to_a_list_changes_nothing(data, c):
    s, y, where = data
    for loss in LOSSES:
        if loss is lk.lambdarank_loss:  # the ranks must not change: well separated scores
            s = _distinct(s)
        v, g = loss.value_and_grad(s, y, where=where, reduction="none")
        v2, g2 = loss.value_and_grad(s + c, y, where=where, reduction="none")
        np.testing.assert_allclose(v2, v, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(g2, g, rtol=1e-7, atol=1e-9)
        assert np.all(v >= 0) and np.all(np.isfinite(g))
        # the gradient of every list sums to 0 (shift invariance), except ranking_softmax's
        if loss is not lk.ranking_softmax_loss:
            np.testing.assert_allclose(g.sum(-1), 0.0, atol=1e-9)


@SETTINGS
@given(scored_lists())
def test_permuting_the_items_permutes_the_gradient(data):
    """Without ties (of labels for ListMLE, of scores for LambdaRank) the order of the
    items in the array does not matter."""
    s, y, where = data
    perm = np.random.default_rng(s.shape[1]).permutation(s.shape[1])
    for loss in LOSSES:
        yy = y
        if loss is lk.listmle_loss:  # distinct labels: no tie-break involved
            yy = np.argsort(np.argsort(y + 0.01 * np.arange(y.shape[1]), axis=-1),
                            axis=-1).astype(float)
        ss = _distinct(s) if loss is lk.lambdarank_loss else s
        v, g = loss.value_and_grad(ss, yy, where=where, reduction="none")
        vp, gp = loss.value_and_grad(ss[:, perm], yy[:, perm], where=where[:, perm],
                                     reduction="none")
        np.testing.assert_allclose(vp, v, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gp, g[:, perm], rtol=1e-9, atol=1e-12)


@SETTINGS
@given(scored_lists())
def test_fast_and_generic_paths_agree(data):
    s, y, where = data
    for loss in LOSSES:
        for kw in ({}, {"where": where}):
            a = loss.value_and_grad(s, y, reduction="none", **kw)
            saved = dispatch.ENABLED
            dispatch.ENABLED = False
            try:
                b = loss.value_and_grad(s, y, reduction="none", **kw)
            finally:
                dispatch.ENABLED = saved
            np.testing.assert_allclose(a[0], b[0], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(a[1], b[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("numba_on", [True, False], ids=["numba", "no-numba"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_the_fused_kernel_answers_and_equals_the_generic_path(loss, dtype, numba_on,
                                                              monkeypatch):
    """Every list loss runs in numba sweeps where numba is on, the NumPy blocks
    otherwise."""
    from engines import check, fused
    from losskit.kernels import fast_paths

    if numba_on:
        pytest.importorskip("numba")
    monkeypatch.setattr(fast_paths, "USE_NUMBA", numba_on)
    monkeypatch.setattr(dispatch, "ENABLED", True)
    engine = "numba" if numba_on else "numpy"
    s, y, where = _padded(np.random.default_rng(11), n=5, length=40)
    s, y = np.where(where, s, 0.0).astype(dtype), np.where(where, y, 0.0)
    for kw in ({}, {"where": where}):
        for reduction in REDUCTIONS:
            check(loss, (s, y), engine, dtype, reduction=reduction, **kw)
        # labels of other dtypes (read as they are by the numba kernels), and weights
        check(loss, (s, np.round(y).astype(np.int8)), engine, dtype, **kw)
        check(loss, (s, y > 1), engine, dtype, **kw)
        # non-integer labels (ListMLE: a merge sort instead of counting), a wide grade range
        check(loss, (s, y * 0.37), engine, dtype, **kw)
        if loss.name == "listmle_loss":  # (LambdaRank's gains 2^y - 1 overflow float32)
            check(loss, (s, np.round(y * 97.0)), engine, dtype, **kw)
        if loss.name == "ranking_softmax_loss":
            w = np.random.default_rng(3).uniform(0, 2, s.shape).astype(np.float32)
            check(loss, (s, y), engine, dtype, weights=w, reduction="sum", **kw)
        # out= receives the gradient
        out = np.empty_like(s)
        v, g = fused(loss, s, y, engine=engine, out=out, **kw)
        assert g is out
    # what it leaves to the generic path: sample weights, invalid labels, NaN scores
    fused(loss, s, y, engine=engine, answered=False, sample_weight=np.ones(5))
    bad = y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="`labels`"):
        fused(loss, s, bad, engine=engine, answered=False)
    s_nan = s.copy()
    s_nan[0, 0] = np.nan
    fused(loss, s_nan, y, engine=engine, answered=False, where=where)


@pytest.mark.parametrize("loss", LOSSES, ids=IDS)
def test_the_numba_sweeps_allocate_the_gradient_only(loss, monkeypatch):
    """One call of a numba list sweep allocates the gradient and next to nothing else
    (float64 scratch rows of a few lists per thread, no float64 copy of the batch, no
    ``B x L x L`` array); with ``out=`` next to nothing at all."""
    import tracemalloc

    from losskit.kernels import clear_gradient_cache, fast_paths

    pytest.importorskip("numba")
    monkeypatch.setattr(fast_paths, "USE_NUMBA", True)
    monkeypatch.setattr(dispatch, "ENABLED", True)
    rng = np.random.default_rng(5)
    s = rng.standard_normal((4096, 64)).astype(np.float32)  # 1 MiB, the parallel builds
    y = rng.integers(0, 5, s.shape).astype(np.int64)
    out = np.empty_like(s)
    for kw in ({}, {"out": out}):
        loss.value_and_grad(s, y, **kw)  # compiled
        clear_gradient_cache()
        before = fast_paths.STATS[loss.name, "numba"]
        tracemalloc.start()
        try:
            loss.value_and_grad(s, y, **kw)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert fast_paths.STATS[loss.name, "numba"] == before + 1
        assert peak <= (0 if kw else s.nbytes) + (64 << 10), peak


@pytest.mark.parametrize("numba_on", [True, False], ids=["numba", "no-numba"])
def test_listmle_scores_far_apart(numba_on, monkeypatch):
    """Scores more than ~690 apart underflow the shifted suffix sums: the numba kernel
    then takes the exact logaddexp chain; equal to the generic path either way."""
    from engines import check
    from losskit.kernels import fast_paths

    if numba_on:
        pytest.importorskip("numba")
    monkeypatch.setattr(fast_paths, "USE_NUMBA", numba_on)
    monkeypatch.setattr(dispatch, "ENABLED", True)
    rng = np.random.default_rng(5)
    s = rng.normal(size=(6, 12)) * 500.0
    s[0, :3] = [900.0, -900.0, 0.0]
    y = rng.integers(0, 4, size=(6, 12)).astype(np.float64)
    for reduction in REDUCTIONS:
        check(lk.listmle_loss, (s, y), "numba" if numba_on else "numpy", np.float64,
              reduction=reduction)


def test_metadata():
    for loss in LOSSES:
        assert loss.family == "ranking" and loss.inputs == ("scores", "labels")
        assert "where" in loss.option_defaults()
    assert lk.ranknet_loss is lk.pairwise_logistic_loss
    assert lk.listnet_loss is lk.ranking_softmax_loss
    assert [x.name for x in lk.catalog("ranking")] == sorted(IDS)


def test_lambdarank_grades_beyond_float32_gains():
    """Grades above 127: the gains 2^y - 1 overflow float32, the weights |G_i - G_j| / IDCG
    do not; float32 scores give the float64 torch reference's value and gradient on every
    path (fused and generic)."""
    s = np.random.default_rng(7).normal(size=(3, 6))
    y = np.array([[130.0, 128.0, 0.0, 3.0, 129.0, 1.0],
                  [200.0, 0.0, 0.0, 199.0, 5.0, 2.0],
                  [2.0, 1.0, 0.0, 0.0, 3.0, 1.0]])  # an ordinary list beside them
    st = torch.tensor(s, requires_grad=True)
    ref = t_lambdarank(st, torch.tensor(y), "none", torch).sum()
    ref_v = t_lambdarank(st, torch.tensor(y), "none", torch).detach().numpy()
    ref.backward()
    for fast in (True, False):
        saved = dispatch.ENABLED
        dispatch.ENABLED = fast
        try:
            v, g = lk.lambdarank_loss.value_and_grad(s.astype(np.float32),
                                                     y.astype(np.float32), reduction="none")
        finally:
            dispatch.ENABLED = saved
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
        np.testing.assert_allclose(v, ref_v, rtol=2e-6)
        np.testing.assert_allclose(g, st.grad.numpy(), rtol=2e-5, atol=1e-7)
