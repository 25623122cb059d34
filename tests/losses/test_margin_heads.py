"""ArcFace and CosFace heads against pytorch-metric-learning (values, and its autograd
gradients for the features and for its class-weight matrix), InsightFace's easy margin
written out in torch, the blocked kernel against one block, weights and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import losskit as lk
from losskit.kernels import mining

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_metric_learning")
from pytorch_metric_learning import losses  # noqa: E402

RNG = np.random.default_rng(0)
N, D, C = 10, 5, 4
X = RNG.normal(size=(N, D))
Y = RNG.integers(0, C, size=N)


def _pml(cls, **kw):
    torch.manual_seed(0)
    loss = cls(num_classes=C, embedding_size=D, **kw).double()
    xt = torch.tensor(X, requires_grad=True)
    v = loss(xt, torch.tensor(Y))
    v.backward()
    # pml's W is (D, C): losskit's weight is its transpose (one row per class)
    return (v.item(), xt.grad.numpy(), loss.W.grad.numpy().T,
            loss.W.detach().numpy().T.copy())


# 28.6 degrees (pml's default), 60 degrees and 80 degrees with scale 4: the angles of the
# true classes then pass pi - m, where the cos(theta) - m sin(m) branch takes over
@pytest.mark.parametrize("deg,scale", [(28.6, 64.0), (60.0, 4.0), (80.0, 4.0)])
def test_arcface_equals_pml(deg, scale):
    v, gx, gw, W = _pml(losses.ArcFaceLoss, margin=deg, scale=scale)
    ours, (ox, ow) = lk.arcface_loss.value_and_grad(X, W, Y, margin=math.radians(deg),
                                                    scale=scale, wrt="all")
    np.testing.assert_allclose(ours, v, rtol=1e-12)
    np.testing.assert_allclose(ox, gx, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(ow, gw, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("m,scale", [(0.35, 64.0), (0.1, 8.0)])
def test_cosface_equals_pml(m, scale):
    v, gx, gw, W = _pml(losses.CosFaceLoss, margin=m, scale=scale)
    ours, (ox, ow) = lk.cosface_loss.value_and_grad(X, W, Y, margin=m, scale=scale,
                                                    wrt="all")
    np.testing.assert_allclose(ours, v, rtol=1e-12)
    np.testing.assert_allclose(ox, gx, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(ow, gw, rtol=1e-9, atol=1e-13)


def test_arcface_easy_margin_is_insightfaces():
    """InsightFace's ArcMarginProduct(easy_margin=True): phi where cos > 0, else cos."""
    W = RNG.normal(size=(C, D))
    xt = torch.tensor(X, requires_grad=True)
    wt = torch.tensor(W, requires_grad=True)
    F = torch.nn.functional
    cos = F.normalize(xt) @ F.normalize(wt).T
    yt = torch.tensor(Y)
    cy = cos.gather(1, yt[:, None])
    phi = cy * math.cos(0.5) - torch.sqrt((1 - cy ** 2).clamp(0, 1)) * math.sin(0.5)
    phi = torch.where(cy > 0, phi, cy)
    ref = F.cross_entropy(8.0 * cos.scatter(1, yt[:, None], phi), yt, reduction="sum")
    ref.backward()
    v, (gx, gw) = lk.arcface_loss.value_and_grad(X, W, Y, scale=8.0, easy_margin=True,
                                                 reduction="sum", wrt="all")
    np.testing.assert_allclose(v, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("loss", [lk.arcface_loss, lk.cosface_loss], ids=lambda c: c.name)
def test_blocks_and_weights(loss, monkeypatch):
    W = RNG.normal(size=(C, D))
    sw = np.linspace(0.0, 2.0, N)
    ref = loss.value_and_grad(X, W, Y, sample_weight=sw, wrt="all", scale=8.0)
    monkeypatch.setattr(mining, "BLOCK_ELEMENTS", 9)  # blocks of 2 rows
    got = loss.value_and_grad(X, W, Y, sample_weight=sw, wrt="all", scale=8.0)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
    for a, b in zip(got[1], ref[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    monkeypatch.undo()
    # the weight gradient of the weighted mean is the weighted sum of the rows' gradients
    rows = [loss.grad(X[i:i + 1], W, Y[i:i + 1], wrt="weight", scale=8.0) for i in range(N)]
    np.testing.assert_allclose(ref[1][1], sum(s * r for s, r in zip(sw, rows)) / sw.sum(),
                               rtol=1e-10, atol=1e-14)


def test_errors_name_the_argument():
    W = np.eye(C, D)
    with pytest.raises(ValueError, match="`weight`.*\\(C, 5\\)"):
        lk.arcface_loss(X, W[:, :3], Y)
    with pytest.raises(ValueError, match="`labels`.*\\[0, 3\\]"):
        lk.cosface_loss(X, W, Y + C)
    with pytest.raises(TypeError, match="`labels`.*integer"):
        lk.cosface_loss(X, W, Y.astype(float))
    with pytest.raises(TypeError, match="`weight`.*dtype"):
        lk.arcface_loss(X, W.astype(np.float32), Y)
    with pytest.raises(ValueError, match="`margin`"):
        lk.arcface_loss(X, W, Y, margin=2.0)
    with pytest.raises(ValueError, match="`scale`"):
        lk.cosface_loss(X, W, Y, scale=0.0)
