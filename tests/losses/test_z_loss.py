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


# ------------------------------------------------------------------ linear_cross_entropy
def _linear_engines():
    """The array libraries of linear_cross_entropy's three block paths (in place,
    functional, JAX's scan) that are installed here."""
    engines = [("numpy", np.asarray), ("torch", torch.tensor)]
    try:
        import array_api_strict as xps

        engines.append(("array-api-strict", xps.asarray))
    except ImportError:  # pragma: no cover
        pass
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        engines.append(("jax", jax.numpy.asarray))
    except ImportError:  # pragma: no cover
        pass
    return engines


@pytest.mark.parametrize("options", [{}, {"class_weight": True}, {"label_smoothing": 0.2}])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_linear_cross_entropy_z_loss_against_torch(options, reduction):
    """Value and the hidden, weight and bias gradients of CE + zeta w lse(h W^T + b)^2
    on the full logits in torch, on every block path, in one block and in blocks of 2."""
    rng = np.random.default_rng(0)
    N, d, V = 9, 5, 11
    h, W, b = rng.normal(size=(N, d)), rng.normal(size=(V, d)), rng.normal(size=V)
    y = rng.integers(0, V, N)
    y[3] = -100
    cw = rng.uniform(0.5, 2.0, V) if options.get("class_weight") else None
    smoothing = options.get("label_smoothing", 0.0)
    sw = rng.uniform(0.5, 2.0, N)
    H, Wt, B = (torch.tensor(a, requires_grad=True) for a in (h, W, b))
    z = H @ Wt.T + B
    keep = torch.tensor(y != -100, dtype=torch.float64)
    yy = torch.tensor(np.where(y < 0, 0, y))
    wy = keep if cw is None else keep * torch.tensor(cw)[yy]
    ce = F.cross_entropy(z, torch.tensor(y), ignore_index=-100, reduction="none",
                         weight=None if cw is None else torch.tensor(cw),
                         label_smoothing=smoothing)
    per = (ce + 0.01 * wy * torch.logsumexp(z, -1) ** 2) * torch.tensor(sw)
    total = per.sum() / (torch.tensor(sw) * wy).sum() if reduction == "mean" else per.sum()
    total.backward()
    want_v = (per if reduction == "none" else total).detach().numpy()
    for name, conv in _linear_engines():
        for chunk in (None, 2):
            kw = {"z_loss": 0.01, "ignore_index": -100, "label_smoothing": smoothing,
                  "reduction": reduction, "sample_weight": conv(sw), "chunk_size": chunk}
            if cw is not None:
                kw["class_weight"] = conv(cw)
            v, g = lk.linear_cross_entropy.value_and_grad(*(conv(a) for a in (h, W, y, b)),
                                                          wrt="all", **kw)
            np.testing.assert_allclose(np.asarray(v), want_v, rtol=1e-10, err_msg=name)
            for got, t in zip(g, (H, Wt, B)):
                np.testing.assert_allclose(np.asarray(got), t.grad.numpy(), rtol=1e-9,
                                           atol=1e-12, err_msg=name)


def test_linear_cross_entropy_z_loss_float32_fused_kernel_and_errors():
    """float32 on NumPy takes the numba softmax kernel: equal to the float64 result."""
    rng = np.random.default_rng(1)
    h, W = rng.normal(size=(64, 8)), rng.normal(size=(50, 8))
    y = rng.integers(0, 50, 64)
    v64, g64 = lk.linear_cross_entropy.value_and_grad(h, W, y, z_loss=1e-3, wrt="all")
    v32, g32 = lk.linear_cross_entropy.value_and_grad(h.astype(np.float32),
                                                      W.astype(np.float32), y, z_loss=1e-3,
                                                      wrt="all", chunk_size=16)
    np.testing.assert_allclose(v32, v64, rtol=1e-5)
    for a, c in zip(g32[:2], g64[:2]):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="z_loss"):
        lk.linear_cross_entropy(h, W, y, z_loss=-1.0)
    with pytest.raises(ValueError, match="z_loss"):
        lk.linear_cross_entropy(h, W, y, z_loss=float("inf"))
