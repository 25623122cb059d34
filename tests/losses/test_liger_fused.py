"""The losses fused with the output layer against Liger-Kernel 0.8.5's own modules.

``LigerFusedLinear{DPO,SimPO,ORPO,CPO,KTO,GRPO,JSD}Loss`` from ``liger_kernel.chunked_loss``
(plain PyTorch, run on the CPU with ``compiled=False``; the ``liger`` fixture loads them
without the package's Triton kernels), on the same tensors, with each module's own
configuration translated into losskit's options. Liger takes the log-softmax in float32
even for float64 inputs, so the comparisons hold to float32 rounding. The written-out
formulas of ``test_linear_preference.py``, ``test_linear_policy_gradient.py`` and
``test_linear_distillation.py`` check the same losses in float64 where Liger is not
installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk

torch = pytest.importorskip("torch")

B, T, D, V = 2, 6, 8, 20
RTOL, ATOL = 2e-5, 2e-6


def _tensors(seed, S):
    r = np.random.default_rng(seed)
    h = torch.tensor(r.normal(size=(S, T, D)), requires_grad=True)
    W = torch.tensor(r.normal(size=(V, D)) / 2, requires_grad=True)
    b = torch.tensor(r.normal(size=V) / 4, requires_grad=True)
    y = r.integers(0, V, size=(S, T))
    y[:, :2] = -100
    y[1, 4:] = -100
    rh = torch.tensor(r.normal(size=(S, T, D)))
    rW = torch.tensor(r.normal(size=(V, D)) / 2)
    return h, W, b, torch.tensor(y), rh, rW


def _compare(liger_value, h, W, b, ours):
    """``liger_value``'s backward against losskit's value and closed-form gradients (each
    from zeroed ``.grad``)."""
    for t in (h, W, b):
        t.grad = None
    liger_value.backward()
    want = [t.grad.clone() for t in (h, W, b)]
    for t in (h, W, b):
        t.grad = None
    v = ours()
    v.backward()
    np.testing.assert_allclose(v.item(), liger_value.item(), rtol=RTOL, atol=ATOL)
    for t, w in zip((h, W, b), want):
        np.testing.assert_allclose(t.grad.numpy(), w.numpy(), rtol=RTOL, atol=ATOL)
        t.grad = None


@pytest.mark.parametrize("config", [
    {"loss_type": "sigmoid"},
    {"loss_type": "sigmoid", "compute_nll_loss": True, "alpha": 0.5, "average_log_prob": True},
    {"loss_type": "hinge", "beta": 0.5},
    {"loss_type": "robust", "label_smoothing": 0.2},
    {"loss_type": "apo_zero"},
    {"loss_type": "discopop", "discopop_tau": 0.5},
])
@pytest.mark.parametrize("with_ref", [True, False])
def test_dpo_module(liger, config, with_ref):
    h, W, b, y, rh, rW = _tensors(0, 2 * B)
    module = liger.dpo.LigerFusedLinearDPOLoss(compiled=False, use_ref_model=with_ref,
                                               **config)
    ref_args = (rh, rW) if with_ref else ()
    value, _ = module(W, h, y, b, *ref_args)
    opts = {"variant": config["loss_type"], "beta": config.get("beta", 0.1),
            "average_log_prob": config.get("average_log_prob", False),
            "nll_alpha": config.get("alpha", 1.0) if config.get("compute_nll_loss") else 0.0}
    for k in ("label_smoothing", "discopop_tau"):
        if k in config:
            opts[k] = config[k]
    _compare(value, h, W, b,
             lambda: lk.linear_preference_loss(h, W, y, b, *ref_args, loss="dpo", **opts))


def test_simpo_orpo_cpo_modules_with_their_defaults(liger):
    """Liger's SimPO and ORPO average the log-probabilities and add the NLL term (alpha 1);
    CPO sums them and adds the NLL term."""
    h, W, b, y, _, _ = _tensors(1, 2 * B)
    value, *_ = liger.simpo.LigerFusedLinearSimPOLoss(compiled=False, gamma=0.3)(W, h, y, b)
    _compare(value, h, W, b, lambda: lk.linear_preference_loss(
        h, W, y, b, loss="simpo", gamma=0.3, average_log_prob=True, nll_alpha=1.0))
    value, *_ = liger.orpo.LigerFusedLinearORPOLoss(compiled=False, beta=0.2)(W, h, y, b)
    _compare(value, h, W, b, lambda: lk.linear_preference_loss(
        h, W, y, b, loss="orpo", beta=0.2, average_log_prob=True, nll_alpha=1.0))
    value, *_ = liger.cpo.LigerFusedLinearCPOLoss(compiled=False, label_smoothing=0.1)(
        W, h, y, b)
    _compare(value, h, W, b, lambda: lk.linear_preference_loss(
        h, W, y, b, loss="cpo", label_smoothing=0.1, nll_alpha=1.0))


@pytest.mark.parametrize("with_ref,kl", [(True, None), (True, 0.2), (False, None)])
def test_kto_module(liger, with_ref, kl):
    h, W, b, y, rh, rW = _tensors(2, 2 * B)
    desirable = torch.tensor([True, False, False, True])
    module = liger.kto.LigerFusedLinearKTOLoss(compiled=False, use_ref_model=with_ref)
    ref = {"ref_input": rh, "ref_weight": rW} if with_ref else {}
    value, *_ = module(h, W, y, b, preference_labels=desirable,
                       kl=None if kl is None else torch.tensor(kl, dtype=torch.float64),
                       **ref)
    ours = {"ref_hidden": rh, "ref_weight": rW} if with_ref else {}
    if kl is not None:
        ours["kl"] = kl
    _compare(value, h, W, b, lambda: lk.linear_preference_loss(
        h, W, y, b, loss="kto", desirable=desirable, **ours))


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_grpo_module(liger, loss_type, level):
    h, W, b, _, rh, rW = _tensors(3, B)
    r = np.random.default_rng(4)
    y = torch.tensor(r.integers(0, V, size=(B, T)))
    mask = torch.tensor((np.arange(T)[None, :] < np.array([[T], [T - 2]])).astype(np.int64))
    adv = torch.tensor([0.8, -0.5], dtype=torch.float64)
    old = torch.tensor(-np.abs(r.normal(size=(B, T))) - 2.0)
    module = liger.grpo.LigerFusedLinearGRPOLoss(
        beta=0.04, loss_type=loss_type, importance_sampling_level=level, compiled=False,
        use_ref_model=True, temperature=0.9, max_completion_length=T)
    value, _ = module(h, W, y, mask, adv, b, old_per_token_logps=old, ref_input=rh,
                      ref_weight=rW)
    _compare(value, h, W, b, lambda: lk.linear_grpo_loss(
        h, W, y, mask, adv, b, old_per_token_logps=old, ref_hidden=rh, ref_weight=rW,
        beta=0.04, variant=loss_type, importance_sampling=level, temperature=0.9,
        max_completion_length=T))


@pytest.mark.parametrize("beta,temperature", [(0.5, 1.0), (0.0, 2.0), (1.0, 1.0),
                                              (0.3, 0.7)])
def test_jsd_module(liger, beta, temperature):
    h, W, b, y, th, tW = _tensors(5, B)
    hs = h.detach().reshape(-1, D).requires_grad_(True)
    ts = th.reshape(-1, D)
    labels = y.reshape(-1)
    module = liger.jsd.LigerFusedLinearJSDLoss(
        weight_hard_loss=0.3, weight_soft_loss=0.7, beta=beta, temperature=temperature,
        compiled=False)
    value = module(hs, W, ts, tW, labels, b)
    _compare(value, hs, W, b, lambda: lk.linear_generalized_jsd(
        hs, W, ts, tW, labels, b, beta=beta, temperature=temperature, weight_hard_loss=0.3,
        weight_soft_loss=0.7))
