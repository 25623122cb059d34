"""Every loss against independent references: values, gradients (torch autograd, jax.grad,
finite differences) and the reduction identities. Driven by ``loss_cases.CASES``."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from loss_cases import CASE_IDS, CASES, REDUCTIONS

torch = pytest.importorskip("torch")


def _torch_inputs(case, pred, target, dtype=torch.float64):
    p = torch.tensor(pred, dtype=dtype, requires_grad=True)
    if np.issubdtype(np.asarray(target).dtype, np.integer):
        t = torch.as_tensor(target, dtype=torch.int64)
    else:
        t = torch.tensor(target, dtype=dtype)
    return p, t


def _torch_value_and_grad(case, pred, target, reduction, dtype=torch.float64):
    p, t = _torch_inputs(case, pred, target, dtype)
    v = case.torch_ref(p, t, reduction, torch)
    (v.sum() if reduction == "none" else v).backward()
    return v.detach().numpy(), p.grad.numpy()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_value_and_grad_match_torch_float64(case, reduction):
    pred, target = case.inputs()
    ref_v, ref_g = _torch_value_and_grad(case, pred, target, reduction)
    v, g = case.loss.value_and_grad(pred, target, reduction=reduction, **case.options)
    assert v.dtype == np.float64 and g.dtype == np.float64
    assert v.shape == ref_v.shape
    assert g.shape == pred.shape
    np.testing.assert_allclose(v, ref_v, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-6, atol=1e-12)
    # the separate entry points agree with the fused one
    np.testing.assert_array_equal(case.loss(pred, target, reduction=reduction, **case.options), v)
    np.testing.assert_array_equal(case.loss.grad(pred, target, reduction=reduction,
                                                 **case.options), g)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_value_and_grad_match_torch_float32(case):
    pred, target = case.inputs(seed=1)
    ref_v, ref_g = _torch_value_and_grad(case, pred, target, "mean")
    p32 = pred.astype(np.float32)
    t32 = target.astype(np.float32) if target.dtype.kind == "f" else target
    v, g = case.loss.value_and_grad(p32, t32, **case.options)
    assert v.dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(v, ref_v, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g, ref_g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("case", [c for c in CASES if c.jax_ref is not None],
                         ids=[c.id for c in CASES if c.jax_ref is not None])
def test_value_and_grad_match_jax(case, reduction):
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    import jax.numpy as jnp

    pred, target = case.inputs(seed=2)
    jp, jt = jnp.asarray(pred, dtype=jnp.float64), jnp.asarray(target)
    ref_v, ref_g = jax.value_and_grad(lambda p: case.jax_ref(p, jt, reduction))(jp)
    v, g = case.loss.value_and_grad(pred, target, reduction=reduction, **case.options)
    np.testing.assert_allclose(v, np.asarray(ref_v), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(g, np.asarray(ref_g), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_grad_matches_finite_differences(case, reduction):
    pred, target = case.inputs(seed=3)
    res = lk.gradcheck(case.loss, pred, target, reduction=reduction, **case.options)
    assert res.ok, str(res)
    if not case.kinky:
        assert res.kinks == 0


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reduction_identities(case):
    pred, target = case.inputs(seed=4)
    opts = case.options
    none_v, none_g = case.loss.value_and_grad(pred, target, reduction="none", **opts)
    sum_v, sum_g = case.loss.value_and_grad(pred, target, reduction="sum", **opts)
    bm_v, bm_g = case.loss.value_and_grad(pred, target, reduction="batchmean", **opts)
    np.testing.assert_allclose(sum_v, none_v.sum(), rtol=1e-12)
    np.testing.assert_allclose(none_g, sum_g, rtol=1e-12)  # "none" grads the sum
    n = pred.shape[0]
    np.testing.assert_allclose(bm_v, sum_v / n, rtol=1e-12)
    np.testing.assert_allclose(bm_g, sum_g / n, rtol=1e-12)
    if "class_weight" not in opts and "ignore_index" not in opts:
        mean_v, mean_g = case.loss.value_and_grad(pred, target, reduction="mean", **opts)
        count = none_v.size
        np.testing.assert_allclose(mean_v, sum_v / count, rtol=1e-12)
        np.testing.assert_allclose(mean_g, sum_g / count, rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sample_weight_equivalences(case):
    """Integer sample weights equal repeating examples; unit weights change nothing."""
    pred, target = case.inputs(seed=5)
    opts = case.options
    n = pred.shape[0]
    ones = np.ones(n)
    for red in ("sum", "mean"):
        np.testing.assert_allclose(case.loss(pred, target, reduction=red, sample_weight=ones,
                                             **opts),
                                   case.loss(pred, target, reduction=red, **opts), rtol=1e-12)
    reps = np.arange(n) % 3  # 0, 1, 2, 0, 1, 2: zero weight drops an example
    rep_pred, rep_target = np.repeat(pred, reps, axis=0), np.repeat(target, reps, axis=0)
    for red in ("sum", "mean"):
        v, g = case.loss.value_and_grad(pred, target, reduction=red, sample_weight=reps, **opts)
        rv, rg = case.loss.value_and_grad(rep_pred, rep_target, reduction=red, **opts)
        np.testing.assert_allclose(v, rv, rtol=1e-10)
        # the gradient of a repeated example is the sum of its copies' gradients
        summed = np.zeros_like(g)
        np.add.at(summed, np.repeat(np.arange(n), reps), rg)
        np.testing.assert_allclose(g, summed, rtol=1e-10, atol=1e-14)


def test_catalog_lists_every_loss_with_metadata():
    names = {loss.name for loss in lk.catalog()}
    assert {c.loss.name for c in CASES} <= names
    for loss in lk.catalog():
        assert loss.formula and loss.gradient_formula and loss.prediction
        assert len(loss.when_to_use) > 80
        info = loss.info()
        assert info["name"] == loss.name
    assert lk.mean_squared_error is lk.mse and lk.mean_absolute_error is lk.mae


def test_loss_defaults_make_a_configured_copy():
    pred, target = CASES[4].inputs()
    smoothed = type(lk.softmax_cross_entropy)(label_smoothing=0.2, reduction="sum")
    np.testing.assert_allclose(
        smoothed(pred, target),
        lk.softmax_cross_entropy(pred, target, label_smoothing=0.2, reduction="sum"))
    with pytest.raises(TypeError, match="label_smothing"):
        type(lk.softmax_cross_entropy)(label_smothing=0.2)


def test_wrt_names_the_differentiable_inputs():
    y, t = np.array([1.0, 2.0]), np.array([0.0, 0.0])
    (g,) = lk.mse.grad(y, t, wrt="all")
    np.testing.assert_array_equal(g, lk.mse.grad(y, t))
    with pytest.raises(ValueError, match=r"^`wrt` of mse must be one of 'prediction', 'all'; "
                                         r"got 'target'$"):
        lk.mse.grad(y, t, wrt="target")


def test_wrong_number_of_arrays_is_a_type_error():
    with pytest.raises(TypeError, match=r"^mse\(\) takes 2 arrays \(prediction, target\); got 1$"):
        lk.mse(np.zeros(2))
