"""Second order for every loss that has it: ``loss.hessian``, ``grad_and_hessian`` and
``hvp`` against the Hessian of the case's independent PyTorch reference
(``torch.autograd.functional.hessian``) and against finite differences of the closed-form
gradient (``lk.gradcheck(order=2)``). Driven by ``loss_cases.CASES``."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from loss_cases import CASE_IDS, CASES

torch = pytest.importorskip("torch")

#: the families whose prediction is per element or per row: each of their losses states
#: its second order (linear_cross_entropy's prediction is the hidden features: excluded)
PER_ELEMENT_OR_ROW = ("regression", "classification", "divergence", "margin", "overlap",
                      "ranking")
SECOND = [c for c in CASES if c.loss.second_order]
SECOND_IDS = [i for c, i in zip(CASES, CASE_IDS) if c.loss.second_order]


def _torch_hessian(case, arrays, reduction):
    """The full Hessian of the torch reference with respect to the prediction, as an
    (n, n) float64 array, the other inputs held fixed."""
    rest = []
    for a in arrays[1:]:
        a = np.asarray(a)
        rest.append(torch.as_tensor(a, dtype=torch.float64 if a.dtype.kind == "f"
                                    else torch.int64))

    def f(pred):
        v = case.torch_ref(pred, *rest, reduction, torch)
        return v.sum() if reduction == "none" else v

    x = torch.tensor(arrays[0], dtype=torch.float64)
    try:
        h = torch.autograd.functional.hessian(f, x, vectorize=True)
    except RuntimeError as exc:  # multi_margin_loss, multilabel_margin_loss: no 2nd order
        if "not implemented" not in str(exc):
            raise
        pytest.skip("the torch reference has no second derivative (its backward is not "
                    "differentiable); tests/losses/test_second_order_binary_margin.py "
                    "checks these Hessians against written-out torch formulas")
    n = x.numel()
    return h.reshape(n, n).numpy(force=True)  # (a ZeroTensor for piecewise-linear refs)


def test_every_per_element_or_per_row_loss_has_second_order():
    missing = [loss.name for loss in lk.catalog() if loss.family in PER_ELEMENT_OR_ROW
               and loss.name != "linear_cross_entropy" and not loss.second_order]
    assert missing == []


@pytest.mark.parametrize("loss", lk.catalog(), ids=lambda loss: loss.name)
def test_second_order_metadata(loss):
    assert loss.second_order in ("", "diagonal", "dense", "zero")
    info = loss.info()
    assert info["second_order"] == loss.second_order
    if loss.second_order:
        assert loss.hessian_formula, "a loss with a Hessian states its formula"
    if loss.second_order == "zero":  # said in the docstring, as the metadata says
        assert "Hessian" in type(loss).__doc__


# one reduction per case, alternating (the pipeline scales the Hessian by the reduction
# as it scales the gradient, which tests/catalog/test_losses.py checks for every reduction)
REDUCED = [(c, "none" if i % 2 else "mean") for i, c in enumerate(SECOND)]


@pytest.mark.parametrize(("case", "reduction"), REDUCED, ids=SECOND_IDS)
def test_hessian_and_hvp_match_torch(case, reduction):
    arrays = case.inputs()
    loss = case.loss
    H = _torch_hessian(case, arrays, reduction)
    shape = np.shape(arrays[0])
    hess = loss.hessian(*arrays, reduction=reduction, **case.options)
    assert hess.shape == shape and hess.dtype == np.float64
    tol = dict(rtol=max(case.rtol64, 1e-7), atol=1e-10)
    np.testing.assert_allclose(hess.reshape(-1), np.diag(H), **tol)
    if loss.second_order == "zero":
        assert not np.any(hess)
    if loss.second_order == "diagonal" or loss.second_order == "zero":
        off = H - np.diag(np.diag(H))
        np.testing.assert_allclose(off, 0.0, atol=1e-10)
    v = np.random.default_rng(7).normal(size=shape)
    hv = loss.hvp(*arrays, vector=v, reduction=reduction, **case.options)
    assert hv.shape == shape
    np.testing.assert_allclose(hv.reshape(-1), H @ v.reshape(-1), **tol)
    g, h2 = loss.grad_and_hessian(*arrays, reduction=reduction, **case.options)
    np.testing.assert_allclose(g, loss.grad(*arrays, reduction=reduction, **case.options),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(h2, hess)


@pytest.mark.parametrize("case", SECOND, ids=SECOND_IDS)
def test_hessian_against_finite_differences(case):
    arrays = case.inputs(seed=3)
    result = lk.gradcheck(case.loss, *arrays, order=2, rtol=1e-4, atol=1e-6, **case.options)
    assert result.ok, str(result)


@pytest.mark.parametrize("case", [c for c in SECOND if c.on_every_backend],
                         ids=[i for c, i in zip(SECOND, SECOND_IDS) if c.on_every_backend])
def test_hessian_on_torch_and_jax_equals_numpy(case):
    jnp = pytest.importorskip("jax.numpy")
    arrays = case.inputs()
    loss = case.loss
    v = np.random.default_rng(5).normal(size=np.shape(arrays[0]))
    expect = loss.grad_and_hessian(*arrays, **case.options)
    expect_hv = loss.hvp(*arrays, vector=v, **case.options)
    as_t = [torch.tensor(a) for a in arrays]
    as_t[0].requires_grad_(True)  # read without its autograd history
    g, h = loss.grad_and_hessian(*as_t, **case.options)
    assert isinstance(h, torch.Tensor) and not h.requires_grad
    np.testing.assert_allclose(h.numpy(), expect[1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g.detach().numpy(), expect[0], rtol=1e-12, atol=1e-14)
    hv = loss.hvp(*as_t, vector=torch.tensor(v), **case.options)
    np.testing.assert_allclose(hv.numpy(), expect_hv, rtol=1e-12, atol=1e-14)
    as_j = [jnp.asarray(a.astype(np.float32) if a.dtype.kind == "f" else a)
            for a in map(np.asarray, arrays)]
    hj = loss.hessian(*as_j, **case.options)
    assert hj.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(hj), expect[1], rtol=2e-4, atol=1e-6)


def test_second_order_errors():
    z = np.zeros((2, 3))
    y = np.array([0, 1])
    with pytest.raises(TypeError, match="`vector` of softmax_cross_entropy.hvp"):
        lk.softmax_cross_entropy.hvp(z, y, vector=None)
    with pytest.raises(ValueError, match="vector"):
        lk.softmax_cross_entropy.hvp(z, y, vector=np.zeros((3, 2)))
    with pytest.raises(TypeError, match="ciou_loss has no Hessian"):
        lk.ciou_loss.hessian(np.zeros((1, 4)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="order"):
        lk.gradcheck(lk.mse, z, z, order=3)
    with pytest.raises(ValueError, match="wrt=0"):
        lk.gradcheck(lk.gaussian_nll, z, z, np.ones((2, 3)), wrt=2, order=2)
