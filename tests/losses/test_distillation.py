"""generalized_jsd and tvd_loss beyond the catalog cases: no targets (every token), masked
vocabulary entries, extreme logits, all tokens ignored, Liger-Kernel's TVD on the two
softmaxes, and the errors. References are Liger-Kernel's formulas written out in torch
(``src/liger_kernel/chunked_loss/jsd_loss.py``, ``src/liger_kernel/ops/tvd.py``)."""

from __future__ import annotations

import numpy as np
import pytest

import loss_cases  # noqa: F401  (first: it loads the case modules itself)
import losskit as lk
from cases_distillation import t_jsd, t_tvd

torch = pytest.importorskip("torch")


def _ref_value_and_grad(ref, zs, zt, y, reduction="mean"):
    a = torch.tensor(zs, requires_grad=True)
    v = ref(a, torch.tensor(zt), torch.as_tensor(y), reduction, torch)
    v.backward()
    return v.detach().numpy(), a.grad.numpy()


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_jsd_without_targets_is_the_mean_over_every_token(beta):
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    all_tokens = np.zeros(5, dtype=np.int64)  # no ignored token: Liger's target=None
    rv, rg = _ref_value_and_grad(t_jsd(beta), zs, zt, all_tokens)
    v, g = lk.generalized_jsd.value_and_grad(zs, zt, beta=beta)
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    np.testing.assert_allclose(g, rg, rtol=1e-10, atol=1e-15)


def test_tvd_is_ligers_batchmean_of_the_two_softmaxes():
    rng = np.random.default_rng(1)
    zs, zt = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    y = np.array([1, -100, 3, 0])
    p, q = torch.softmax(torch.tensor(zs), -1), torch.softmax(torch.tensor(zt), -1)
    keep = torch.tensor(y) != -100
    # LigerTVDLoss(reduction="batchmean"): sum over the valid rows of 0.5 |p - q|, / rows
    liger = (0.5 * (p - q).abs().sum(-1))[keep].sum() / keep.sum()
    np.testing.assert_allclose(lk.tvd_loss(zs, zt, y), liger.numpy(), rtol=1e-12)
    rv, rg = _ref_value_and_grad(t_tvd, zs, zt, y)
    np.testing.assert_allclose(lk.tvd_loss.grad(zs, zt, y), rg, rtol=1e-10, atol=1e-15)


def test_masked_vocabulary_and_extreme_logits():
    zs = np.array([[2.0, -np.inf, 0.5, 1e4], [0.0, -np.inf, -1e4, 3.0]])
    zt = np.array([[1.0, -np.inf, 0.0, 1e4 - 1.0], [-1.0, -np.inf, 0.0, 2.0]])
    for beta in (0.0, 0.4, 1.0):
        v, g = lk.generalized_jsd.value_and_grad(zs, zt, beta=beta, reduction="none")
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
        assert np.all(g[:, 1] == 0.0)  # a masked entry has no probability and no gradient
        # the finite entries against the same formula on the vocabulary without it
        keep = [0, 2, 3]
        ref = t_jsd(beta)(torch.tensor(zs[:, keep], requires_grad=True),
                          torch.tensor(zt[:, keep]), torch.zeros(2, dtype=torch.int64),
                          "none", torch)
        np.testing.assert_allclose(v, ref.detach().numpy(), rtol=1e-9, atol=1e-12)
    v, g = lk.tvd_loss.value_and_grad(zs, zt, reduction="none")
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)) and np.all(g[:, 1] == 0.0)
    # the same distribution: 0 with a zero gradient
    v, g = lk.generalized_jsd.value_and_grad(zs, zs)
    assert float(v) == 0.0 and not np.any(g)


def test_every_token_ignored_gives_zero_and_no_gradient():
    zs, zt = np.ones((2, 3, 4)), np.zeros((2, 3, 4))
    y = np.full((2, 3), -100)
    for loss in (lk.generalized_jsd, lk.tvd_loss):
        v, g = loss.value_and_grad(zs, zt, y)
        assert float(v) == 0.0 and not np.any(g)


def test_errors():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="`beta`"):
        lk.generalized_jsd(z, z, beta=1.5)
    with pytest.raises(ValueError, match="`temperature`"):
        lk.generalized_jsd(z, z, temperature=0.0)
    with pytest.raises(ValueError, match="`teacher_logits`"):
        lk.generalized_jsd(z, np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"`targets` of tvd_loss must have .* \(2,\)"):
        lk.tvd_loss(z, z, np.zeros(3, dtype=int))
    with pytest.raises(TypeError, match="`targets` of tvd_loss must be integer"):
        lk.tvd_loss(z, z, np.zeros(2))
    with pytest.raises(ValueError, match="targets"):
        lk.tvd_loss(z, z, np.array([0, 7]))  # a token id outside the vocabulary
    with pytest.raises(ValueError, match="vocabulary axis"):
        lk.tvd_loss(np.float64(1.0), np.float64(1.0))
