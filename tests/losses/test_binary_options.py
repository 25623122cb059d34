"""``ignore_index`` and ``label_smoothing`` of the elementwise binary losses
(``sigmoid_binary_cross_entropy``, ``sigmoid_focal_loss``; ``binary_cross_entropy`` has
label smoothing only).

References: PyTorch's ``binary_cross_entropy_with_logits`` and torchvision's
``sigmoid_focal_loss`` formula (written out here in torch: ``torchvision/ops/focal_loss.py``),
applied to the elements that are kept, with torch autograd for the gradients; finite
differences through :func:`losskit.gradcheck`. The Keras conventions of the smoothing are
in ``tests/catalog/test_conventions.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from losskit.core import dispatch

torch = pytest.importorskip("torch")
F = torch.nn.functional

IGNORE = -100


def _torchvision_focal(z, t, alpha=0.25, gamma=2.0):
    # torchvision.ops.sigmoid_focal_loss, reduction="none"
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    return (alpha * t + (1 - alpha) * (1 - t)) * loss


REFERENCES = {
    "sigmoid_binary_cross_entropy": lambda z, t: F.binary_cross_entropy_with_logits(
        z, t, reduction="none"),
    "sigmoid_focal_loss": _torchvision_focal,
}


def _data(seed=0, shape=(6, 5)):
    rng = np.random.default_rng(seed)
    z = 3.0 * rng.normal(size=shape)
    t = (rng.uniform(size=shape) > 0.6).astype(np.float64)
    ignored = rng.uniform(size=shape) < 0.3
    return z, np.where(ignored, float(IGNORE), t), ~ignored


def _reference(name, z, t, keep, reduction):
    zt = torch.tensor(z, requires_grad=True)
    per = REFERENCES[name](zt, torch.tensor(np.where(keep, t, 0.0)))
    per = per * torch.tensor(keep, dtype=torch.float64)
    value = {"none": per, "sum": per.sum(),
             "mean": per.sum() / max(int(keep.sum()), 1)}[reduction]
    value.sum().backward()
    return value.detach().numpy(), zt.grad.numpy()


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "generic"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(REFERENCES))
def test_ignore_index_drops_the_elements(name, reduction, fast):
    z, t, keep = _data()
    ref_v, ref_g = _reference(name, z, t, keep, reduction)
    saved = dispatch.ENABLED
    dispatch.ENABLED = fast
    try:
        loss = getattr(lk, name)
        v = loss(z, t, ignore_index=IGNORE, reduction=reduction)
        g = loss.grad(z, t, ignore_index=IGNORE, reduction=reduction)
    finally:
        dispatch.ENABLED = saved
    np.testing.assert_allclose(v, ref_v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g, ref_g, rtol=1e-12, atol=1e-15)
    assert np.all(g[~keep] == 0)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_ignore_index_gradient_against_finite_differences(name):
    z, t, _ = _data(seed=1, shape=(3, 4))
    loss = getattr(lk, name)
    assert lk.gradcheck(loss, z, t, ignore_index=IGNORE)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_ignore_index_on_tensors_and_under_jit(name):
    z, t, keep = _data(seed=2)
    ref_v, ref_g = _reference(name, z, t, keep, "mean")
    loss = getattr(lk, name)
    zt = torch.tensor(z, requires_grad=True)
    v = loss(zt, torch.tensor(t), ignore_index=IGNORE)
    v.backward()
    np.testing.assert_allclose(v.item(), ref_v, rtol=1e-12)
    np.testing.assert_allclose(zt.grad.numpy(), ref_g, rtol=1e-12, atol=1e-15)
    jax = pytest.importorskip("jax")
    tj = jax.numpy.asarray(t)  # captured by the jitted function
    g = jax.jit(jax.grad(lambda a: loss(a, tj, ignore_index=IGNORE)))(jax.numpy.asarray(z))
    np.testing.assert_allclose(np.asarray(g), ref_g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_everything_ignored_is_a_zero_mean_with_a_zero_gradient(name):
    z = np.ones((2, 3))
    t = np.full((2, 3), float(IGNORE))
    v, g = getattr(lk, name).value_and_grad(z, t, ignore_index=IGNORE)
    assert v == 0.0 and np.all(g == 0.0)


@pytest.mark.parametrize("name", ["sigmoid_binary_cross_entropy", "sigmoid_focal_loss",
                                  "binary_cross_entropy"])
def test_label_smoothing_is_the_smoothed_target(name):
    """s = 0.2 turns a 0/1 target into 0.1/0.9 (Keras's t (1 - s) + s / 2)."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 3))
    y = 1.0 / (1.0 + np.exp(-z))
    t = (rng.uniform(size=(4, 3)) > 0.5).astype(np.float64)
    loss = getattr(lk, name)
    x = y if name == "binary_cross_entropy" else z
    for fast in (True, False):
        saved = dispatch.ENABLED
        dispatch.ENABLED = fast
        try:
            got = loss.value_and_grad(x, t, label_smoothing=0.2)
            want = loss.value_and_grad(x, 0.1 + 0.8 * t)
        finally:
            dispatch.ENABLED = saved
        np.testing.assert_allclose(got[0], want[0], rtol=1e-14)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-14)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_option_errors(name):
    loss = getattr(lk, name)
    z, t = np.zeros((2, 2)), np.full((2, 2), 0.5)
    with pytest.raises(TypeError, match=r"^`ignore_index` of " + name +
                       r" must be an int or None; got 1\.5$"):
        loss(z, t, ignore_index=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        loss(z, t, label_smoothing=1.5)
    # a target that is neither in [0, 1] nor the ignored value is still an error
    with pytest.raises(ValueError, match=r"`target` must lie in \[0, 1\]"):
        loss(z, np.array([[0.5, -1.0], [0.0, 1.0]]), ignore_index=IGNORE)
