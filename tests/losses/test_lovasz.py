"""lovasz_hinge and lovasz_softmax (Berman, Rannen Triki and Blaschko 2018).

The reference is the authors' own code, bermanmaxim/LovaszSoftmax ``pytorch/lovasz_losses.py``
(``lovasz_grad``, ``lovasz_hinge``, ``lovasz_softmax`` and their ``flatten_*`` helpers),
written out below in torch: values and autograd gradients (the gradient with the sort
order held fixed) are compared for both ``per_image`` settings, ``ignore`` and each
``classes`` choice. Berman casts the labels to float32 inside ``lovasz_grad``; here they
keep the errors' float64, so the comparison is exact. Also: the extension equals the
Jaccard loss of hard predictions (scikit-learn's ``jaccard_score``), finite differences of
the pooled variant (the catalog cases cover ``per_image=True``) and every error message.
No expected number comes from losskit.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from losskit.losses.lovasz import lovasz_hinge, lovasz_softmax

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


# ------------------------------------------------------------------ Berman's code, written out
def _lovasz_grad(gt_sorted):
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if p > 1:  # cover 1-pixel case
        jaccard = torch.cat([jaccard[:1], jaccard[1:p] - jaccard[0:-1]])
    return jaccard


def _hinge_flat(logits, labels):
    if len(labels) == 0:  # only void pixels, the gradients should be 0
        return logits.sum() * 0.0
    signs = 2.0 * labels.double() - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    grad = _lovasz_grad(labels[perm].double())
    return torch.dot(F.relu(errors_sorted), grad)


def _flat_binary(scores, labels, ignore):
    scores, labels = scores.reshape(-1), labels.reshape(-1)
    if ignore is None:
        return scores, labels
    valid = labels != ignore
    return scores[valid], labels[valid]


def berman_hinge(logits, labels, per_image=True, ignore=None):
    if per_image:
        losses = [_hinge_flat(*_flat_binary(lg, lb, ignore)) for lg, lb in zip(logits, labels)]
        return sum(losses) / len(losses)
    return _hinge_flat(*_flat_binary(logits, labels, ignore))


def _softmax_flat(probas, labels, classes="present"):
    if probas.numel() == 0:
        return probas.sum() * 0.0
    C = probas.size(1)
    losses = []
    for c in (list(range(C)) if classes in ("all", "present") else classes):
        fg = (labels == c).double()
        if classes == "present" and fg.sum() == 0:
            continue
        errors = (fg - probas[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, 0, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[perm])))
    return sum(losses) / len(losses) if losses else probas.sum() * 0.0  # mean(empty) = 0


def _flat_probas(probas, labels, ignore):
    C = probas.size(1)
    probas = probas.movedim(1, -1).reshape(-1, C)
    labels = labels.reshape(-1)
    if ignore is None:
        return probas, labels
    valid = labels != ignore
    return probas[valid], labels[valid]


def berman_softmax(probas, labels, classes="present", per_image=False, ignore=None):
    if per_image:
        losses = [_softmax_flat(*_flat_probas(p[None], lb[None], ignore), classes=classes)
                  for p, lb in zip(probas, labels)]
        return sum(losses) / len(losses)
    return _softmax_flat(*_flat_probas(probas, labels, ignore), classes=classes)


def _torch_value_and_grad(fn, x, y, **kw):
    xt = torch.tensor(x, requires_grad=True)
    v = fn(xt, torch.as_tensor(y), **kw)
    v.backward()
    return v.item(), xt.grad.numpy()


# ------------------------------------------------------------------ inputs
def _binary(seed=0, shape=(3, 5, 4)):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=shape)
    y = rng.integers(0, 2, size=shape)
    y[1] = 0  # an image without foreground
    y[0, 0, :3] = 255
    return z, y


def _multi(seed=1, shape=(3, 4, 5, 6)):
    rng = np.random.default_rng(seed)
    p = np.moveaxis(rng.dirichlet(np.ones(shape[1]), size=(shape[0],) + shape[2:]), -1, 1)
    y = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    y[y == 3] = 2  # class 3 absent everywhere
    y[0, 0, :2] = -1
    return p, y


# ------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("ignore", [None, 255])
def test_hinge_equals_berman_value_and_autograd(per_image, ignore):
    z, y = _binary()
    if ignore is None:
        y = np.where(y == 255, 1, y)
    ref_v, ref_g = _torch_value_and_grad(berman_hinge, z, y, per_image=per_image,
                                         ignore=ignore)
    v, g = lovasz_hinge.value_and_grad(z, y, per_image=per_image, ignore_index=ignore)
    np.testing.assert_allclose(v, ref_v, rtol=1e-13)
    np.testing.assert_allclose(g, ref_g, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("classes", ["present", "all", [0, 3]])
def test_softmax_equals_berman_value_and_autograd(per_image, classes):
    p, y = _multi()
    ref_v, ref_g = _torch_value_and_grad(berman_softmax, p, y, classes=classes,
                                         per_image=per_image, ignore=-1)
    v, g = lovasz_softmax.value_and_grad(p, y, classes=classes, per_image=per_image,
                                         ignore_index=-1)
    np.testing.assert_allclose(v, ref_v, rtol=1e-13)
    np.testing.assert_allclose(g, ref_g, rtol=1e-13, atol=1e-16)


def test_softmax_from_logits_and_channels_last_equal_the_probabilities():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(2, 3, 4, 5))
    y = rng.integers(0, 3, size=(2, 4, 5))
    zt = torch.tensor(z, requires_grad=True)
    ref = berman_softmax(torch.softmax(zt, 1), torch.as_tensor(y), per_image=True)
    ref.backward()
    v, g = lovasz_softmax.value_and_grad(z, y, from_logits="softmax", per_image=True)
    np.testing.assert_allclose(v, ref.item(), rtol=1e-13)
    np.testing.assert_allclose(g, zt.grad.numpy(), rtol=1e-12, atol=1e-16)
    last = np.moveaxis(z, 1, -1)
    v2, g2 = lovasz_softmax.value_and_grad(last, y, from_logits="softmax", per_image=True,
                                           axis=-1)
    np.testing.assert_allclose(v2, v, rtol=1e-14)
    np.testing.assert_allclose(g2, np.moveaxis(g, 1, -1), rtol=1e-14, atol=1e-17)


# ------------------------------------------------------------------ mathematics
def test_on_hard_predictions_the_extension_is_the_jaccard_loss():
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=(1, 30))
    y[y == 2] = 0  # class 2 absent: not counted with classes="present"
    pred = np.where(rng.random(size=y.shape) < 0.6, y, rng.integers(0, 4, size=y.shape))
    p = np.moveaxis(np.eye(4)[pred], -1, 1)  # (1, 4, 30), one-hot: errors 0 or 1
    present = sorted(set(y.ravel().tolist()))
    iou = jaccard_score(y.ravel(), pred.ravel(), labels=present, average=None)
    np.testing.assert_allclose(lovasz_softmax(p, y), np.mean(1 - iou), rtol=1e-14)
    # binary: the hinge errors of logits +-1 are 0 or 2, so the loss is twice 1 - IoU
    yb = (y > 0).astype(int)
    zb = np.where(pred > 0, 1.0, -1.0)
    iou_b = jaccard_score(yb.ravel(), (zb > 0).ravel().astype(int))
    np.testing.assert_allclose(lovasz_hinge(zb, yb), 2 * (1 - iou_b), rtol=1e-14)


def test_one_pixel_is_the_hinge_and_ties_do_not_change_the_value():
    z = np.array([[0.3], [-0.2]])
    y = np.array([[1], [0]])
    np.testing.assert_allclose(lovasz_hinge(z, y, reduction="none"), [0.7, 0.8], rtol=1e-15)
    np.testing.assert_allclose(lovasz_hinge.grad(z, y, reduction="none"), [[-1.0], [1.0]])
    # equal errors in another order: the same value (the extension ignores tie order)
    zt, yt = np.array([[0.5, 0.5, -0.5, 2.0]]), np.array([[1, 1, 0, 1]])
    perm = [3, 2, 0, 1]
    np.testing.assert_allclose(lovasz_hinge(zt, yt), lovasz_hinge(zt[:, perm], yt[:, perm]),
                               rtol=1e-15)


@pytest.mark.parametrize("name", ["lovasz_hinge", "lovasz_softmax"])
def test_pooled_gradient_matches_finite_differences(name):
    if name == "lovasz_hinge":
        x, y = _binary(4)
        opts = {"per_image": False, "ignore_index": 255}
    else:
        x, y = _multi(5, shape=(2, 3, 3, 4))
        opts = {"per_image": False, "ignore_index": -1, "classes": "all"}
    res = lk.gradcheck(getattr(lk, name), x, y, **opts)
    assert res.ok, res


def test_pooled_loss_is_one_number_for_the_batch():
    p, y = _multi()
    v = lovasz_softmax(p, y, reduction="none", ignore_index=-1)
    assert v.shape == ()
    for red in ("sum", "mean", "batchmean"):
        np.testing.assert_allclose(lovasz_softmax(p, y, reduction=red, ignore_index=-1), v)
    np.testing.assert_allclose(lovasz_softmax(p, y, sample_weight=2.0, reduction="sum",
                                              ignore_index=-1), 2 * v)
    with pytest.raises(ValueError, match="`sample_weight` of lovasz_softmax must be a number "
                                         r"or have the shape of the unreduced loss \(\)"):
        lovasz_softmax(p, y, sample_weight=np.ones(3), ignore_index=-1)
    z, yb = _binary()
    assert lovasz_hinge(z, yb, per_image=False, ignore_index=255, reduction="none").shape == ()


def test_every_pixel_ignored_costs_nothing():
    z = np.ones((2, 3))
    y = np.full((2, 3), 9)
    v, g = lovasz_hinge.value_and_grad(z, y, ignore_index=9)
    assert float(v) == 0.0 and not np.any(g)
    p = np.full((2, 2, 3), 0.5)
    v, g = lovasz_softmax.value_and_grad(p, y, ignore_index=9, per_image=True)
    assert float(v) == 0.0 and not np.any(g)


def test_torch_and_jax_autodiff_give_the_closed_form_gradient():
    jax = pytest.importorskip("jax")
    p, y = _multi(6, shape=(2, 3, 3, 4))
    ref = lovasz_softmax.grad(p, y, ignore_index=-1)
    pt = torch.tensor(p, requires_grad=True)
    lovasz_softmax(pt, torch.as_tensor(y), ignore_index=-1).backward()
    np.testing.assert_allclose(pt.grad.numpy(), ref, rtol=1e-14, atol=1e-17)
    gj = jax.jit(jax.grad(lambda a: lovasz_softmax(a, y, ignore_index=-1)))(p)
    np.testing.assert_allclose(np.asarray(gj), ref, rtol=1e-14, atol=1e-17)


def test_metadata():
    for loss in (lovasz_hinge, lovasz_softmax):
        assert loss.family == "overlap" and "arXiv:1705.08790" in loss.references[0]
        assert len(loss.when_to_use) > 80 and "partial" in loss.gradient_formula
    assert lovasz_hinge.info()["options"] == {"per_image": True, "ignore_index": None}
    assert lovasz_softmax.info()["options"]["per_image"] is False
    assert lovasz_softmax.info()["options"]["classes"] == "present"


# ------------------------------------------------------------------ errors
def test_errors_name_the_argument():
    z, y = _binary()
    with pytest.raises(ValueError, match=r"`target` must hold class indices in \[0, 1\]"):
        lovasz_hinge(z, y)
    with pytest.raises(ValueError, match="`target` of lovasz_hinge must hold binary labels"):
        lovasz_hinge(z, np.full(z.shape, 0.5))
    with pytest.raises(ValueError, match="`ignore_index` of lovasz_hinge applies to integer"):
        lovasz_hinge(z, np.zeros(z.shape), ignore_index=0)
    with pytest.raises(TypeError, match="`per_image` of lovasz_hinge must be True or False"):
        lovasz_hinge(z, np.zeros(z.shape, int), per_image=1)
    p, y = _multi()
    with pytest.raises(ValueError, match="`classes` of lovasz_softmax must be 'present'"):
        lovasz_softmax(p, y, ignore_index=-1, classes="some")
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\].*got 4"):
        lovasz_softmax(p, y, ignore_index=-1, classes=[0, 4])
    with pytest.raises(TypeError, match="`classes` of lovasz_softmax must hold integer"):
        lovasz_softmax(p, y, ignore_index=-1, classes=[0.5])
    with pytest.raises(ValueError, match="must be False or 'softmax'; got 'sigmoid'"):
        lovasz_softmax(p, y, ignore_index=-1, from_logits="sigmoid")
    with pytest.raises(ValueError, match="must be integer class labels of shape"):
        lovasz_softmax(p, np.moveaxis(np.eye(4)[np.maximum(y, 0)], -1, 1))
    with pytest.raises(ValueError, match="`axis` of lovasz_softmax must name the class axis"):
        lovasz_softmax(p, y, ignore_index=-1, axis=None)
    with pytest.raises(ValueError, match="expects probabilities; for logits pass"):
        lovasz_softmax(p * 3, y, ignore_index=-1)
