"""``softmax_cross_entropy(z_loss=...)``: the PaLM z-loss (Liger-Kernel's
``lse_square_scale``), against torch autograd of the formula written out: Liger's
``liger_kernel/ops/cross_entropy.py`` adds ``lse_square_scale * lse**2`` to the loss of
every non-ignored token and divides the sum by the number of non-ignored tokens."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _reference(z, y, zeta, class_weight=None, smoothing=0.0):
    y = torch.as_tensor(y)
    keep = (y != -100).to(z.dtype)
    w = keep if class_weight is None else keep * class_weight[y.clamp(min=0)]
    ce = F.cross_entropy(z, y, weight=class_weight, ignore_index=-100, reduction="none",
                         label_smoothing=smoothing)
    return (ce + zeta * w * torch.logsumexp(z, -1) ** 2).sum() / w.sum()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_value_gradient_and_hessian_against_torch(dtype, weighted):
    rng = np.random.default_rng(3)
    z = (rng.normal(size=(7, 5)) * 3).astype(dtype)
    y = rng.integers(0, 5, 7)
    y[2] = -100
    cw = rng.uniform(0.5, 2.0, 5) if weighted else None
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    cwt = None if cw is None else torch.tensor(cw)
    ref = _reference(zt, y, 1e-2, cwt)
    ref.backward()
    kw = {"ignore_index": -100, "z_loss": 1e-2}
    if cw is not None:
        kw["class_weight"] = cw
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y, **kw)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert v.dtype == g.dtype == dtype
    np.testing.assert_allclose(v, ref.detach().numpy(), rtol=tol)
    np.testing.assert_allclose(g, zt.grad.numpy(), rtol=tol, atol=tol * 1e-2)
    if dtype == np.float64:
        H = torch.autograd.functional.hessian(
            lambda a: _reference(a, y, 1e-2, cwt), torch.tensor(z)).reshape(35, 35).numpy()
        np.testing.assert_allclose(lk.softmax_cross_entropy.hessian(z, y, **kw).ravel(),
                                   np.diag(H), rtol=1e-10, atol=1e-14)
        v_ = rng.normal(size=z.shape)
        np.testing.assert_allclose(lk.softmax_cross_entropy.hvp(z, y, vector=v_, **kw).ravel(),
                                   H @ v_.ravel(), rtol=1e-10, atol=1e-14)


def test_with_smoothing_probabilities_torch_and_jax():
    rng = np.random.default_rng(4)
    z = rng.normal(size=(4, 3))
    y = np.array([0, 2, 1, 1])
    zt = torch.tensor(z, requires_grad=True)
    ref = _reference(zt, y, 0.1, smoothing=0.2)
    ref.backward()
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y, z_loss=0.1, label_smoothing=0.2)
    np.testing.assert_allclose(v, ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-12, atol=1e-15)
    # probability targets: every row takes part
    p = np.eye(3)[y]
    np.testing.assert_allclose(lk.softmax_cross_entropy(z, p, z_loss=0.1),
                               lk.softmax_cross_entropy(z, y, z_loss=0.1), rtol=1e-12)
    # the adapters: autograd applies the closed form
    z2 = torch.tensor(z, requires_grad=True)
    lk.softmax_cross_entropy(z2, torch.tensor(y), z_loss=0.1).backward()
    np.testing.assert_allclose(z2.grad.numpy(),
                               lk.softmax_cross_entropy.grad(z, y, z_loss=0.1), rtol=1e-12)
    jax = pytest.importorskip("jax")
    gj = jax.grad(lambda a: lk.softmax_cross_entropy(a, y, z_loss=0.1))(
        jax.numpy.asarray(z, dtype="float32"))
    np.testing.assert_allclose(np.asarray(gj), lk.softmax_cross_entropy.grad(z, y, z_loss=0.1),
                               rtol=1e-4, atol=1e-6)


def test_edges_and_errors():
    z = np.array([[1e4, 0.0, -np.inf], [-np.inf, -np.inf, -np.inf]])
    y = np.array([0, -100])
    v = lk.softmax_cross_entropy(z, y, z_loss=1e-4, ignore_index=-100, reduction="none")
    np.testing.assert_allclose(v, [1e-4 * 1e8, 0.0])  # the ignored all -inf row adds 0
    g = lk.softmax_cross_entropy.grad(z, y, z_loss=1e-4, ignore_index=-100, reduction="sum")
    np.testing.assert_allclose(g, [[2e-4 * 1e4, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="`z_loss`"):
        lk.softmax_cross_entropy(z[:1], y[:1], z_loss=-1.0)
    with pytest.raises(ValueError, match="`z_loss`"):
        lk.softmax_cross_entropy(z[:1], y[:1], z_loss=float("inf"))
