"""The representation losses against their peers and their own definitions.

* pytorch-metric-learning's ``NTXentLoss`` and ``SupConLoss`` (installed beside torch):
  values and torch-autograd gradients;
* identities of the definitions: SupCon with one class per example and two views is
  NT-Xent; the blocks change nothing; a SigLIP pair by hand;
* memory: no N x N array is ever allocated on NumPy (tracemalloc);
* errors name the argument.

The reference formulas of CLIP (open_clip) and SigLIP (big_vision) are written out in
``tests/cases/cases_representation.py`` and checked by the catalog suites.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

import losskit as lk

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


# ------------------------------------------------------------------ pytorch-metric-learning
def test_info_nce_equals_pytorch_metric_learning_ntxent():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    n, d, tau = 6, 5, 0.2
    z1, z2 = RNG.normal(size=(n, d)), RNG.normal(size=(n, d))
    a, b = _t(z1), _t(z2)
    ref = pml.NTXentLoss(temperature=tau)(torch.cat([a, b]), torch.arange(n).repeat(2))
    ref.backward()
    v, (g1, g2) = lk.info_nce.value_and_grad(z1, z2, temperature=tau, wrt="all")
    np.testing.assert_allclose(v, ref.item(), rtol=1e-10)
    np.testing.assert_allclose(g1, a.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(g2, b.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_supcon_loss_equals_pytorch_metric_learning_supcon():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    x = RNG.normal(size=(9, 4))
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])  # every class at least twice
    xt = _t(x)
    ref = pml.SupConLoss(temperature=0.3)(xt, torch.as_tensor(y))
    ref.backward()
    v, g = lk.supcon_loss.value_and_grad(x, y, temperature=0.3, base_temperature=0.3)
    np.testing.assert_allclose(v, ref.item(), rtol=1e-10)
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-8, atol=1e-12)


# ------------------------------------------------------------------ identities
def test_supcon_with_one_class_per_example_is_nt_xent():
    z1, z2 = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))
    feats = np.stack([z1, z2], axis=1)
    v, g = lk.supcon_loss.value_and_grad(feats, np.arange(5), temperature=0.4,
                                         base_temperature=0.4, reduction="none")
    w, (g1, g2) = lk.info_nce.value_and_grad(z1, z2, temperature=0.4, wrt="all",
                                             reduction="none")
    np.testing.assert_allclose(v, w, rtol=1e-12)
    np.testing.assert_allclose(g, np.stack([g1, g2], axis=1), rtol=1e-10, atol=1e-14)


def test_siglip_one_pair_by_hand():
    # cos = 1, t = e^0.5, b = -1: softplus(-(t - 1)) and its derivatives
    x = np.array([[3.0, 4.0]])
    t, b = math.exp(0.5), -1.0
    v, (gi, gt, gs, gb) = lk.siglip_loss.value_and_grad(x, x, 0.5, b, wrt="all")
    logit = t + b
    sig = 1.0 / (1.0 + math.exp(logit))  # sigma(-logit)
    np.testing.assert_allclose(v, math.log1p(math.exp(-logit)), rtol=1e-14)
    np.testing.assert_allclose(gb, -sig, rtol=1e-14)
    np.testing.assert_allclose(gs, -sig * t, rtol=1e-14)
    # at cos = 1 the normalisation leaves no direction to move: the gradient is 0
    np.testing.assert_allclose(gi, 0.0, atol=1e-15)
    np.testing.assert_allclose(gt, 0.0, atol=1e-15)


@pytest.mark.parametrize("loss,make", [
    (lk.info_nce, lambda n: (RNG.normal(size=(n, 3)), RNG.normal(size=(n, 3)))),
    (lk.clip_loss, lambda n: (RNG.normal(size=(n, 3)), RNG.normal(size=(n, 3)), 1.0)),
    (lk.siglip_loss, lambda n: (RNG.normal(size=(n, 3)), RNG.normal(size=(n, 3)), 1.0, -2.0)),
    (lk.supcon_loss, lambda n: (RNG.normal(size=(n, 2, 3)), np.arange(n) % 4)),
], ids=["info_nce", "clip_loss", "siglip_loss", "supcon_loss"])
def test_blocks_of_any_size_give_the_same_result(loss, make):
    arrays = make(11)
    v, g = loss.value_and_grad(*arrays, wrt="all", reduction="none")
    for chunk in (1, 4, 100):
        vc, gc = loss.value_and_grad(*arrays, wrt="all", reduction="none", chunk_size=chunk)
        np.testing.assert_allclose(vc, v, rtol=1e-12)
        for a, b in zip(gc, g):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_a_zero_weight_removes_a_nan_anchor_term():
    z1, z2 = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3))
    img, txt = z1.copy(), z2.copy()
    w = np.array([1.0, 0.0, 1.0, 1.0])
    v, g = lk.siglip_loss.value_and_grad(img, txt, 0.0, 0.0, sample_weight=w, wrt="bias")
    # the weighted sum of the per-image values, each computed on the whole batch
    per = lk.siglip_loss(img, txt, 0.0, 0.0, reduction="none")
    np.testing.assert_allclose(v, (w * per).sum() / w.sum(), rtol=1e-12)
    assert np.isfinite(g)


# ------------------------------------------------------------------ memory
def test_no_n_by_n_array_on_numpy():
    n, d = 1024, 8
    z1 = RNG.normal(size=(n, d)).astype(np.float32)
    z2 = RNG.normal(size=(n, d)).astype(np.float32)
    full = (2 * n) ** 2 * 4  # the 2N x 2N float32 similarity matrix of NT-Xent
    tracemalloc.start()
    lk.info_nce.value_and_grad(z1, z2, wrt="all", chunk_size=64)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < full / 4, (peak, full)


# ------------------------------------------------------------------ PyTorch
def test_torch_backward_reaches_the_log_scale_and_bias():
    img, txt = _t(RNG.normal(size=(5, 3))), _t(RNG.normal(size=(5, 3)))
    s, b = _t(np.array(0.3)), _t(np.array(-1.0))
    lk.siglip_loss(img, txt, s, b).backward()
    F = torch.nn.functional
    i2, t2, s2, b2 = (x.detach().clone().requires_grad_(True) for x in (img, txt, s, b))
    logits = F.normalize(i2, dim=1) @ F.normalize(t2, dim=1).T * s2.exp() + b2
    (-F.logsigmoid((2 * torch.eye(5, dtype=logits.dtype) - 1) * logits).sum() / 5).backward()
    for x, r in ((img, i2), (txt, t2), (s, s2), (b, b2)):
        torch.testing.assert_close(x.grad, r.grad)


# ------------------------------------------------------------------ errors
def test_errors_name_the_argument():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="`z2` of info_nce must have the shape of `z1`"):
        lk.info_nce(x, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="`temperature` must lie in"):
        lk.info_nce(x, x, temperature=0.0)
    with pytest.raises(ValueError, match="`log_scale` of clip_loss must be one number"):
        lk.clip_loss(x, x, np.zeros(2))
    with pytest.raises(TypeError, match="`text` of clip_loss must have the dtype of `image`"):
        lk.clip_loss(x, x.astype(np.float32), 0.0)
    with pytest.raises(TypeError, match="`labels` of supcon_loss must be integer"):
        lk.supcon_loss(x, np.zeros(3))
    with pytest.raises(ValueError, match=r"`labels` of supcon_loss must have shape \(3,\)"):
        lk.supcon_loss(x, np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="`contrast_mode` must be one of"):
        lk.supcon_loss(x, np.zeros(3, dtype=int), contrast_mode="some")
    with pytest.raises(ValueError, match="cannot be evaluated a block of rows at a time"):
        from losskit.evaluate import evaluate
        evaluate(lk.info_nce, x, x)
