"""grpo_loss against TRL's and Liger-Kernel's GRPO loss written out in torch.

The reference below is the loss of TRL's ``GRPOTrainer._compute_loss``
(huggingface/trl, ``trl/trainer/grpo_trainer.py``) and of Liger-Kernel's
``LigerFusedLinearGRPOFunction.ppo_loss_fn`` (linkedin/Liger-Kernel,
``src/liger_kernel/chunked_loss/grpo_loss.py``), in plain torch: autograd of it gives the
expected gradients (CISPO's capped weight detached as there). Neither library is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk

torch = pytest.importorskip("torch")

VARIANTS = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo")
LMAX = 7


def trl_grpo(logp, mask, adv, old, ref, *, variant, level="token", el=0.2, eh=0.2,
             beta=0.04, lmax=LMAX):
    """TRL / Liger: the reduced loss (their one number)."""
    a = adv.unsqueeze(1)
    old = logp.detach() if old is None else old
    log_ratio = logp - old
    if level == "token":
        log_w = log_ratio
    else:
        log_w = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef_1 = torch.exp(log_w)
    if variant == "cispo":
        per_token = -torch.clamp(coef_1, max=eh).detach() * a * logp
    else:
        coef_2 = torch.clamp(coef_1, 1 - el, 1 + eh)
        per_token = -torch.min(coef_1 * a, coef_2 * a)
    if beta != 0.0 and ref is not None:
        per_token = per_token + beta * (torch.exp(ref - logp) - (ref - logp) - 1)
    masked = per_token * mask
    if variant == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / logp.shape[0]
    if variant == "dr_grpo":
        return masked.sum() / (logp.shape[0] * lmax)
    return masked.sum() / mask.sum().clamp(min=1.0)


def inputs(seed=0, b=5, t=6):
    """Ratios on both sides of the clipping range and of CISPO's cap 1.1, both signs of
    the advantage, one all-masked sequence."""
    rng = np.random.default_rng(seed)
    logp = -rng.uniform(0.1, 3.0, size=(b, t))
    delta = rng.choice([-0.6, -0.1, 0.0, 0.15, 0.6], size=(b, t)) + rng.uniform(
        -0.02, 0.02, size=(b, t))
    old = logp - delta
    ref = logp + rng.normal(scale=0.4, size=(b, t))
    lengths = np.array([t, 3, 0, 1, t - 1])[:b]
    mask = (np.arange(t) < lengths[:, None]).astype(float)
    adv = np.array([1.3, -0.7, 0.9, 0.4, -1.1])[:b]
    return logp, mask, adv, old, ref


def torch_value_and_grad(arrays, **kw):
    logp, mask, adv, old, ref = [None if a is None else torch.tensor(a, dtype=torch.float64)
                                 for a in arrays]
    logp.requires_grad_(True)
    v = trl_grpo(logp, mask, adv, old, ref, **kw)
    v.backward()
    return v.item(), logp.grad.numpy()


def options(variant, level="token", el=0.2, eh=0.2, beta=0.04):
    return dict(variant=variant, importance_sampling=level, epsilon_low=el,
                epsilon_high=eh, beta=beta, max_completion_length=LMAX)


# cispo at the sequence level is refused, as Liger-Kernel does (test_errors)
COMBOS = [(v, lv) for v in VARIANTS for lv in ("token", "sequence")
          if (v, lv) != ("cispo", "sequence")]


@pytest.mark.parametrize("variant, level", COMBOS)
def test_value_and_gradient_match_trl_and_liger(variant, level):
    eh = 1.1 if variant == "cispo" else 0.28
    arrays = inputs()
    ref_v, ref_g = torch_value_and_grad(arrays, variant=variant, level=level, eh=eh)
    v, g = lk.grpo_loss.value_and_grad(*arrays, **options(variant, level, eh=eh))
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-15)
    assert np.any(g == 0) and not np.all(g[arrays[1] > 0] == 0)


def test_the_per_sequence_values_and_their_reductions():
    """"none" is the documented per-sequence value; "mean" divides by the token count for
    the token-normalised variants, by B for grpo and dr_grpo."""
    logp, mask, adv, old, ref = inputs(1)
    L = torch.tensor(logp)
    a = torch.tensor(adv)[:, None]
    c1 = torch.exp(L - torch.tensor(old))
    per_token = -torch.min(c1 * a, torch.clamp(c1, 0.8, 1.2) * a) + 0.04 * (
        torch.exp(torch.tensor(ref) - L) - (torch.tensor(ref) - L) - 1)
    sums = (per_token * torch.tensor(mask)).sum(-1).numpy()
    n = mask.sum(1)
    expected = {"grpo": sums / np.maximum(n, 1), "dr_grpo": sums / LMAX, "dapo": sums,
                "bnpo": sums}
    for variant, none in expected.items():
        opts = options(variant)
        np.testing.assert_allclose(lk.grpo_loss(logp, mask, adv, old, ref, reduction="none",
                                                **opts), none, rtol=1e-12)
        den = n.sum() if variant in ("dapo", "bnpo") else len(n)
        np.testing.assert_allclose(lk.grpo_loss(logp, mask, adv, old, ref, **opts),
                                   none.sum() / den, rtol=1e-12)
        np.testing.assert_allclose(lk.grpo_loss(logp, mask, adv, old, ref,
                                                reduction="batchmean", **opts),
                                   none.sum() / len(n), rtol=1e-12)


def test_blocks_of_rows_add_up_to_the_whole_batch():
    """The per-sequence values and weights carry the normaliser: streaming the rows in
    blocks gives the loss of the whole batch (dapo: over the batch's token count)."""
    from losskit.evaluate import evaluate

    arrays = inputs(9)
    for variant in ("grpo", "dapo"):
        res = evaluate(lk.grpo_loss, *arrays, options=options(variant), chunk_size=2)
        np.testing.assert_allclose(res.value, lk.grpo_loss(*arrays, **options(variant)),
                                   rtol=1e-12)


@pytest.mark.parametrize("variant", ["grpo", "dapo", "cispo"])
def test_without_old_and_reference_log_probabilities(variant):
    """old None: the ratio is 1 (old = logp detached); ref None: no KL term."""
    logp, mask, adv, _, _ = inputs(2)
    ref_v, ref_g = torch_value_and_grad((logp, mask, adv, None, None), variant=variant,
                                        eh=1.1 if variant == "cispo" else 0.2)
    opts = options(variant, eh=1.1 if variant == "cispo" else 0.2)
    v, g = lk.grpo_loss.value_and_grad(logp, mask, adv, **opts)
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        lk.grpo_loss(logp, mask, adv, ref_per_token_logps=None, **opts), v, rtol=1e-14)


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("variant", ["grpo", "bnpo", "dr_grpo"])
def test_gradient_matches_finite_differences(variant, level):
    rng = np.random.default_rng(3)
    logp = -rng.uniform(0.1, 3.0, size=(3, 4))
    old = logp - rng.choice([-0.5, 0.05, 0.5], size=(3, 1)) - rng.uniform(-0.02, 0.02, (3, 4))
    ref = logp + rng.normal(scale=0.3, size=(3, 4))
    mask = np.array([[1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=float)
    adv = np.array([0.8, 1.0, -1.2])
    res = lk.gradcheck(lk.grpo_loss, logp, mask, adv, old, ref, **options(variant, level))
    assert res.ok and res.kinks == 0, res


def test_cispo_gradient_is_finite_differences_when_the_weight_is_constant():
    """With old None the capped weight min(1, eps_high) is a constant: the detached
    gradient is then the derivative of the value."""
    logp, mask, adv, _, ref = inputs(4)
    res = lk.gradcheck(lk.grpo_loss, logp, mask, adv, None, ref, variant="cispo",
                       epsilon_high=0.7)
    assert res.ok, res


@pytest.mark.parametrize("variant, level", COMBOS)
def test_all_masked_sequences_give_zero_and_a_zero_gradient(variant, level):
    logp, _, adv, old, ref = inputs(5)
    logp[:, -1] = -np.inf  # padding log-probabilities may be anything under the mask
    mask = np.zeros_like(logp)
    for reduction in ("mean", "sum", "none"):
        v, g = lk.grpo_loss.value_and_grad(logp, mask, adv, old, ref, reduction=reduction,
                                           **options(variant, level))
        assert np.all(v == 0) and np.all(g == 0), reduction
    # one all-masked sequence in a batch: its value is 0, its gradient 0, nothing NaN
    mask[0, :3] = 1.0
    v, g = lk.grpo_loss.value_and_grad(logp, mask, adv, old, ref, reduction="none",
                                       **options(variant, level))
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
    assert np.all(v[1:] == 0) and np.all(g[1:] == 0) and np.all(g[0, 3:] == 0)


def test_extreme_log_probabilities():
    """Log-probabilities of 0 (certain tokens) and very negative ones stay finite."""
    logp = np.array([[0.0, -1e4, -50.0], [0.0, 0.0, -1e3]])
    mask = np.ones_like(logp)
    adv = np.array([1.0, -2.0])
    ref = logp + np.array([[0.0, 0.5, -0.5], [-3.0, 0.0, 1.0]])
    v, g = lk.grpo_loss.value_and_grad(logp, mask, adv, logp, ref, beta=1.0)
    assert np.isfinite(v) and np.all(np.isfinite(g))
    ref_v, ref_g = torch_value_and_grad((logp, mask, adv, logp, ref), variant="dapo",
                                        beta=1.0)
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
    np.testing.assert_allclose(g, ref_g, rtol=1e-12)
    # beta extremes: 0 drops the KL term entirely; a large beta is the KL term's scale
    v0 = lk.grpo_loss(logp, mask, adv, None, ref, beta=0.0)
    np.testing.assert_allclose(v0, lk.grpo_loss(logp, mask, adv), rtol=1e-15)
    kl = (np.exp(ref - logp) - (ref - logp) - 1).mean()
    np.testing.assert_allclose(lk.grpo_loss(logp, mask, adv, None, ref, beta=1e6),
                               v0 + 1e6 * kl, rtol=1e-12)


def test_a_bool_mask_is_a_0_1_mask():
    logp, mask, adv, old, ref = inputs(6)
    np.testing.assert_array_equal(lk.grpo_loss.grad(logp, mask > 0, adv, old, ref),
                                  lk.grpo_loss.grad(logp, mask, adv, old, ref))


def test_torch_inputs():
    logp, mask, adv, old, ref = inputs(7)
    T = [torch.tensor(a) for a in (logp, mask, adv, old, ref)]
    np.testing.assert_allclose(lk.grpo_loss.grad(*T).numpy(),
                               lk.grpo_loss.grad(logp, mask, adv, old, ref), rtol=1e-14)


def test_errors():
    logp, mask, adv, old, ref = inputs(8)
    f = lk.grpo_loss
    with pytest.raises(ValueError, match="2-D"):
        f(logp[0], mask[0], adv)
    with pytest.raises(ValueError, match="mask"):
        f(logp, mask[:, :-1], adv)
    with pytest.raises(ValueError, match="advantages"):
        f(logp, mask, adv[:-1])
    with pytest.raises(ValueError, match="old_per_token_logps"):
        f(logp, mask, adv, old[:, :2])
    with pytest.raises(ValueError, match="ref_per_token_logps"):
        f(logp, mask, adv, old, ref[:-1])
    with pytest.raises(ValueError, match="`mask`"):
        f(logp, 2 * mask, adv)
    with pytest.raises(ValueError, match="`variant` must be one of"):
        f(logp, mask, adv, variant="ppo")
    with pytest.raises(ValueError, match="`importance_sampling` must be one of"):
        f(logp, mask, adv, importance_sampling="group")
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="`epsilon_low` must lie in"):
            f(logp, mask, adv, epsilon_low=bad)
    with pytest.raises(ValueError, match="`epsilon_high` must lie in"):
        f(logp, mask, adv, epsilon_high=-0.2)
    with pytest.raises(ValueError, match="`epsilon_high` must lie in"):
        f(logp, mask, adv, variant="cispo", epsilon_high=0.0)
    with pytest.raises(ValueError, match="`epsilon_high` must be finite"):
        f(logp, mask, adv, epsilon_high=float("inf"))
    with pytest.raises(ValueError, match="`beta` must lie in"):
        f(logp, mask, adv, beta=-1.0)
    with pytest.raises(ValueError, match="max_completion_length"):
        f(logp, mask, adv, variant="dr_grpo")
    with pytest.raises(ValueError, match="`max_completion_length` must be >= 1"):
        f(logp, mask, adv, variant="dr_grpo", max_completion_length=0)
    with pytest.raises(ValueError, match="sequence.*cispo"):
        f(logp, mask, adv, variant="cispo", importance_sampling="sequence")
    with pytest.raises(ValueError, match="`wrt`"):
        f.grad(logp, mask, adv, old, wrt="old_per_token_logps")
