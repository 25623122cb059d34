"""Every loss against independent references: values, gradients (torch autograd, jax.grad,
finite differences) and the reduction identities. Driven by ``loss_cases.CASES``."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from loss_cases import CASE_IDS, CASES, REDUCTIONS

torch = pytest.importorskip("torch")


def _is_float(a):
    return np.asarray(a).dtype.kind == "f"


def _torch_value_and_grads(case, arrays, reduction, dtype=torch.float64):
    """Value and autograd gradients of the torch reference, for ``loss.differentiable``."""
    inputs = case.loss.inputs
    ts = []
    for name, a in zip(inputs, arrays):
        if _is_float(a):
            ts.append(torch.tensor(a, dtype=dtype,
                                   requires_grad=name in case.loss.differentiable))
        else:
            ts.append(torch.as_tensor(a, dtype=torch.int64))
    v = case.torch_ref(*ts, reduction, torch)
    (v.sum() if reduction == "none" else v).backward()
    grads = tuple(ts[inputs.index(n)].grad.numpy() for n in case.loss.differentiable)
    return v.detach().numpy(), grads


def _as32(arrays):
    return tuple(a.astype(np.float32) if _is_float(a) else a for a in arrays)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_value_and_grad_match_torch_float64(case, reduction):
    arrays = case.inputs()
    ref_v, ref_g = _torch_value_and_grads(case, arrays, reduction)
    v, g = case.loss.value_and_grad(*arrays, reduction=reduction, wrt="all", **case.options)
    assert v.dtype == np.float64 and all(gi.dtype == np.float64 for gi in g)
    assert v.shape == ref_v.shape
    np.testing.assert_allclose(v, ref_v, rtol=case.rtol64, atol=1e-12)
    for name, gi, ri in zip(case.loss.differentiable, g, ref_g):
        assert gi.shape == ri.shape, name
        np.testing.assert_allclose(gi, ri, rtol=case.rtol64, atol=1e-12, err_msg=name)
    # the separate entry points agree with the fused one (to rounding: the default wrt may
    # run a fused kernel whose sums are ordered differently from the wrt="all" path)
    np.testing.assert_allclose(case.loss(*arrays, reduction=reduction, **case.options), v,
                               rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(case.loss.grad(*arrays, reduction=reduction, **case.options),
                               g[0], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_value_and_grad_match_torch_float32(case):
    arrays = case.inputs(seed=1)
    ref_v, ref_g = _torch_value_and_grads(case, arrays, "mean")
    v, g = case.loss.value_and_grad(*_as32(arrays), wrt="all", **case.options)
    assert v.dtype == np.float32 and all(gi.dtype == np.float32 for gi in g)
    np.testing.assert_allclose(v, ref_v, rtol=case.rtol32, atol=1e-6)
    for name, gi, ri in zip(case.loss.differentiable, g, ref_g):
        np.testing.assert_allclose(gi, ri, rtol=case.rtol32, atol=1e-6, err_msg=name)


JAX_CASES = [c for c in CASES if c.jax_ref is not None]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("case", JAX_CASES, ids=[c.id for c in JAX_CASES])
def test_value_and_grad_match_jax(case, reduction):
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    import jax.numpy as jnp

    arrays = case.inputs(seed=2)
    jarrays = [jnp.asarray(a, dtype=jnp.float64) if _is_float(a) else jnp.asarray(a)
               for a in arrays]
    idx = tuple(case.loss.inputs.index(n) for n in case.loss.differentiable)
    ref_v, ref_g = jax.value_and_grad(lambda *a: case.jax_ref(*a, reduction),
                                      argnums=idx)(*jarrays)
    v, g = case.loss.value_and_grad(*arrays, reduction=reduction, wrt="all", **case.options)
    np.testing.assert_allclose(v, np.asarray(ref_v), rtol=case.rtol64, atol=1e-12)
    for gi, ri in zip(g, ref_g):
        np.testing.assert_allclose(gi, np.asarray(ri), rtol=case.rtol64, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_grad_matches_finite_differences(case, reduction):
    arrays = case.inputs(seed=3)
    for k, name in enumerate(case.loss.inputs):
        if name not in case.loss.differentiable:
            continue
        # for inputs after the first, gradcheck asks the Loss for .grad(wrt=name)
        res = lk.gradcheck(case.loss, *arrays, wrt=k, reduction=reduction, **case.options)
        assert res.ok, f"{name}: {res}"
        if not case.kinky:
            assert res.kinks == 0, name


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reduction_identities(case):
    arrays = case.inputs(seed=4)
    opts = case.options
    none_v, none_g = case.loss.value_and_grad(*arrays, reduction="none", **opts)
    sum_v, sum_g = case.loss.value_and_grad(*arrays, reduction="sum", **opts)
    bm_v, bm_g = case.loss.value_and_grad(*arrays, reduction="batchmean", **opts)
    np.testing.assert_allclose(sum_v, none_v.sum(), rtol=1e-12)
    np.testing.assert_allclose(none_g, sum_g, rtol=1e-12)  # "none" grads the sum
    n = arrays[0].shape[0]
    np.testing.assert_allclose(bm_v, sum_v / n, rtol=1e-12)
    np.testing.assert_allclose(bm_g, sum_g / n, rtol=1e-12)
    # ctc_loss's mean is PyTorch's: each sequence over its target length (its own tests)
    if ("class_weight" not in opts and "ignore_index" not in opts
            and case.loss.name != "ctc_loss" and not case.mean_of_terms):
        mean_v, mean_g = case.loss.value_and_grad(*arrays, reduction="mean", **opts)
        count = none_v.size
        np.testing.assert_allclose(mean_v, sum_v / count, rtol=1e-12)
        np.testing.assert_allclose(mean_g, sum_g / count, rtol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sample_weight_equivalences(case):
    """Integer sample weights equal repeating examples; unit weights change nothing."""
    arrays = case.inputs(seed=5)
    opts = case.options
    n = arrays[0].shape[0]
    ones = np.ones(n)
    for red in ("sum", "mean"):
        np.testing.assert_allclose(case.loss(*arrays, reduction=red, sample_weight=ones, **opts),
                                   case.loss(*arrays, reduction=red, **opts), rtol=1e-12)
    reps = np.arange(n) % 3  # 0, 1, 2, 0, 1, 2: zero weight drops an example
    if case.coupled:
        # the examples are each other's negatives: a weight scales an example's own term,
        # sum_n s_n l_n (mean: over sum_n s_n), and repeating it would add negatives
        none_v = case.loss(*arrays, reduction="none", **opts)
        for red, den in (("sum", 1.0), ("mean", reps.sum())):
            if red == "mean" and case.mean_of_terms:
                continue  # a mean of terms: the loss's own tests
            v = case.loss(*arrays, reduction=red, sample_weight=reps, **opts)
            np.testing.assert_allclose(v, (reps * none_v).sum() / den, rtol=1e-12)
        return
    repeated = tuple(np.repeat(a, reps, axis=0) for a in arrays)
    for red in ("sum", "mean"):
        v, g = case.loss.value_and_grad(*arrays, reduction=red, sample_weight=reps, **opts)
        rv, rg = case.loss.value_and_grad(*repeated, reduction=red, **opts)
        np.testing.assert_allclose(v, rv, rtol=1e-10)
        # the gradient of a repeated example is the sum of its copies' gradients
        summed = np.zeros_like(g)
        np.add.at(summed, np.repeat(np.arange(n), reps), rg)
        np.testing.assert_allclose(g, summed, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_scalar_sample_weight_is_one_weight_for_every_element(case):
    """A number c weights every element: c times "none" and "sum", the weighted "mean"
    divides it out again (c = 0: a mean over nothing, 0 with a zero gradient)."""
    arrays = case.inputs(seed=6)
    opts = case.options
    for red in ("none", "sum", "mean"):
        v, g = case.loss.value_and_grad(*arrays, reduction=red, **opts)
        vc, gc = case.loss.value_and_grad(*arrays, reduction=red, sample_weight=2.5, **opts)
        c = 1.0 if red == "mean" else 2.5
        np.testing.assert_allclose(vc, c * np.asarray(v), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(gc, c * np.asarray(g), rtol=1e-12, atol=1e-15)
    v0, g0 = case.loss.value_and_grad(*arrays, sample_weight=0.0, **opts)
    assert float(v0) == 0.0 and not np.any(g0)
    with pytest.raises(ValueError, match="`sample_weight`.*non-negative"):
        case.loss(*arrays, sample_weight=-1.0, **opts)


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
    assert CASES[4].loss is lk.softmax_cross_entropy
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
