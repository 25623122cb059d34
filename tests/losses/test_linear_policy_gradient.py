"""linear_grpo_loss: the GRPO loss fused with the language model's output layer.

The reference is Liger-Kernel's ``LigerFusedLinearGRPOLoss`` (linkedin/Liger-Kernel, v0.8.5)
written out in plain torch on the full logits, float64, with autograd for the expected
gradients: the per-token log-probabilities of ``LigerFusedLinearPPOBase.chunk_forward``
(``src/liger_kernel/chunked_loss/fused_linear_ppo.py``: ``log_softmax`` of the logits
divided by ``temperature``, gathered at ``selected_token_ids``; the reference head's the
same way, without gradients), then ``LigerFusedLinearGRPOFunction.ppo_loss_fn``
(``src/liger_kernel/chunked_loss/grpo_loss.py``: clipped surrogate or CISPO's detached
capped weight, the k3 KL term, each ``loss_type``'s normalisation, one process, no
``num_items_in_batch``; ``test_liger_fused.py`` runs Liger-Kernel's own module).
Expected numbers never come from losskit.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk

torch = pytest.importorskip("torch")

B, T, D, V, LMAX = 4, 5, 3, 7, 6
VARIANTS = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo")
COMBOS = [(v, lv) for v in VARIANTS for lv in ("token", "sequence")
          if (v, lv) != ("cispo", "sequence")]


def _arrays(seed=0):
    """Hidden states, head, tokens (-100 at some masked positions), a mask with an
    all-masked sequence (row 2), advantages of both signs, old log-probabilities on both
    sides of the clipping range, a reference head."""
    r = np.random.default_rng(seed)
    h = r.normal(size=(B, T, D))
    W = r.normal(size=(V, D))
    b = r.normal(size=V)
    y = r.integers(0, V, size=(B, T))
    lengths = np.array([T, 3, 0, 2])
    mask = (np.arange(T) < lengths[:, None]).astype(float)
    y[1, 4] = -100  # a masked position may hold anything
    adv = np.array([1.3, -0.7, 0.9, -1.1])
    shift = r.choice([-0.6, -0.1, 0.0, 0.15, 0.6], size=(B, T)) + r.uniform(
        -0.02, 0.02, size=(B, T))
    rh = r.normal(size=(B, T, D + 1))
    rW = r.normal(size=(V, D + 1))
    rb = r.normal(size=V)
    return dict(h=h, W=W, b=b, y=y, mask=mask, adv=adv, shift=shift, rh=rh, rW=rW, rb=rb)


def _logps(H, Wt, Bt, y, temperature):
    """fused_linear_ppo.py chunk_forward: log_softmax(logits / temperature) at the token."""
    logits = H @ Wt.T + (0 if Bt is None else Bt)
    lp = torch.log_softmax(logits / temperature, -1)
    yy = torch.tensor(np.where(y < 0, 0, y))
    return lp.gather(-1, yy[..., None])[..., 0]


def _ppo_loss_fn(logp, mask, adv, old, ref, *, variant, level, el, eh, beta, lmax):
    """grpo_loss.py LigerFusedLinearGRPOFunction.ppo_loss_fn (v0.8.5), the options above."""
    a = adv.unsqueeze(1)
    if ref is None:
        ref = logp.detach()
    old = logp.detach() if old is None else old
    log_ratio = logp - old
    if level == "token":
        log_w = log_ratio
    else:
        log_w = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef_1 = torch.exp(log_w)
    if variant == "cispo":
        per_token = -torch.clamp(coef_1, None, eh).detach() * a * logp
    else:
        coef_2 = torch.clamp(coef_1, 1 - el, 1 + eh)
        per_token = -torch.min(coef_1 * a, coef_2 * a)
    if beta != 0.0:
        per_token = per_token + beta * (torch.exp(ref - logp) - (ref - logp) - 1.0)
    if variant == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).sum() / mask.shape[0]
    if variant == "dr_grpo":
        return (per_token * mask).sum() / (mask.shape[0] * lmax)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def _reference(d, *, variant="dapo", level="token", temperature=1.0, old=True, ref="head",
               bias=True, el=0.2, eh=0.28, beta=0.04):
    """Liger's loss and the autograd gradients of hidden, weight, bias (float64)."""
    H = torch.tensor(d["h"], requires_grad=True)
    Wt = torch.tensor(d["W"], requires_grad=True)
    Bt = torch.tensor(d["b"], requires_grad=True) if bias else None
    logp = _logps(H, Wt, Bt, d["y"], temperature)
    old_lp = logp.detach() + torch.tensor(d["shift"]) if old else None
    ref_lp = None
    if ref == "head":
        with torch.no_grad():
            ref_lp = _logps(torch.tensor(d["rh"]), torch.tensor(d["rW"]),
                            torch.tensor(d["rb"]), d["y"], temperature)
    elif ref == "logps":
        ref_lp = logp.detach() - 0.5 * torch.tensor(d["shift"])
    loss = _ppo_loss_fn(logp, torch.tensor(d["mask"]), torch.tensor(d["adv"]), old_lp,
                        ref_lp, variant=variant, level=level, el=el, eh=eh, beta=beta,
                        lmax=LMAX)
    loss.backward()
    grads = [H.grad.numpy(), Wt.grad.numpy()] + ([Bt.grad.numpy()] if bias else [])
    arrays = dict(old=None if old_lp is None else old_lp.numpy(),
                  ref=None if ref != "logps" else ref_lp.numpy())
    return loss.item(), grads, arrays


def _call(d, arrays, *, variant="dapo", level="token", temperature=1.0, ref="head",
          bias=True, el=0.2, eh=0.28, beta=0.04, **kw):
    refs = (dict(ref_hidden=d["rh"], ref_weight=d["rW"], ref_bias=d["rb"]) if ref == "head"
            else dict(ref_per_token_logps=arrays["ref"]))
    return lk.linear_grpo_loss.value_and_grad(
        d["h"], d["W"], d["y"], d["mask"], d["adv"], d["b"] if bias else None,
        old_per_token_logps=arrays["old"], **refs, variant=variant,
        importance_sampling=level, temperature=temperature, epsilon_low=el,
        epsilon_high=eh, beta=beta, max_completion_length=LMAX,
        wrt=("hidden", "weight", "bias") if bias else ("hidden", "weight"), **kw)


def _check(v, g, want_v, want_g):
    np.testing.assert_allclose(v, want_v, rtol=1e-11, atol=1e-14)
    for a, w in zip(g, want_g):
        np.testing.assert_allclose(a, w, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("variant, level", COMBOS)
def test_matches_liger_on_the_full_logits(variant, level, temperature):
    """Old log-probabilities and the reference model's head, as Liger's ref_input."""
    d = _arrays(seed=1)
    eh = 1.1 if variant == "cispo" else 0.28
    want_v, want_g, arrays = _reference(d, variant=variant, level=level,
                                        temperature=temperature, eh=eh)
    v, g = _call(d, arrays, variant=variant, level=level, temperature=temperature, eh=eh)
    _check(v, g, want_v, want_g)


@pytest.mark.parametrize("old", [False, True])
@pytest.mark.parametrize("ref", ["none", "logps", "head"])
@pytest.mark.parametrize("variant, level", [("grpo", "sequence"), ("dapo", "token"),
                                            ("cispo", "token")])
def test_with_and_without_old_and_reference_log_probabilities(variant, level, ref, old):
    d = _arrays(seed=2)
    eh = 1.1 if variant == "cispo" else 0.28
    kw = dict(variant=variant, level=level, ref=ref, temperature=0.7, eh=eh, beta=0.3)
    want_v, want_g, arrays = _reference(d, old=old, **kw)
    v, g = _call(d, arrays, **kw)
    _check(v, g, want_v, want_g)


def test_without_a_bias_and_in_blocks():
    d = _arrays(seed=3)
    want_v, want_g, arrays = _reference(d, bias=False, variant="bnpo")
    for chunk in (None, 1, 7):
        v, g = _call(d, arrays, bias=False, variant="bnpo", chunk_size=chunk)
        _check(v, g, want_v, want_g)


def test_masked_tokens_and_an_all_masked_sequence_get_no_gradient():
    d = _arrays(seed=4)
    _, _, arrays = _reference(d)
    v, (gh, gW, gb) = _call(d, arrays)
    assert np.isfinite(v)
    assert np.all(gh[2] == 0.0)  # no token at all
    assert np.all(gh[1, 3:] == 0.0) and np.all(gh[3, 2:] == 0.0)  # padding
    # what a masked position holds changes nothing
    d2 = dict(d, y=np.where(d["mask"] > 0, d["y"], -7))
    v2, g2 = _call(d2, arrays)
    np.testing.assert_array_equal(v2, v)
    for a, c in zip(g2, (gh, gW, gb)):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("variant", ["grpo", "dapo", "dr_grpo"])
def test_reductions_and_sample_weights(variant):
    """"none": grpo_loss's per-sequence values (a sequence's masked token sum, over its
    token count for "grpo", over T_max for "dr_grpo"); a sample weight weights a sequence
    (for "dapo" each of its tokens), and "mean" divides by the total weight."""
    d = _arrays(seed=5)
    s = np.array([0.5, 2.0, 1.0, 1.5])
    H = torch.tensor(d["h"], requires_grad=True)
    logp = _logps(H, torch.tensor(d["W"]), torch.tensor(d["b"]), d["y"], 1.0)
    old = logp.detach() + torch.tensor(d["shift"])
    m, adv = torch.tensor(d["mask"]), torch.tensor(d["adv"])
    coef = torch.exp(logp - old)
    per_token = -torch.min(coef * adv[:, None], torch.clamp(coef, 0.8, 1.28) * adv[:, None])
    S = (per_token * m).sum(-1)
    n = m.sum(-1)
    if variant == "grpo":
        per_seq, w = S / n.clamp(min=1.0), torch.ones(B, dtype=torch.float64)
    elif variant == "dr_grpo":
        per_seq, w = S / LMAX, torch.ones(B, dtype=torch.float64)
    else:
        per_seq, w = S, n
    st = torch.tensor(s)
    want_mean = (st * per_seq).sum() / (st * w).sum()
    (gmean,) = torch.autograd.grad(want_mean, H, retain_graph=True)
    c = np.array([0.3, -1.2, 2.0, 0.7])  # an upstream gradient of any sign
    (gnone,) = torch.autograd.grad((torch.tensor(c) * st * per_seq).sum(), H)
    args = (d["h"], d["W"], d["y"], d["mask"], d["adv"], d["b"], old.numpy())
    opts = dict(variant=variant, beta=0.0, max_completion_length=LMAX, epsilon_high=0.28)
    v, g = lk.linear_grpo_loss.value_and_grad(*args, sample_weight=s, **opts)
    np.testing.assert_allclose(v, want_mean.item(), rtol=1e-11)
    np.testing.assert_allclose(g, gmean.numpy(), rtol=1e-9, atol=1e-13)
    vn = lk.linear_grpo_loss(*args, reduction="none", sample_weight=s, **opts)
    np.testing.assert_allclose(vn, (st * per_seq).detach().numpy(), rtol=1e-11, atol=1e-14)
    # torch: the backward of "none" for a cotangent of any sign
    Ht = torch.tensor(d["h"], requires_grad=True)
    targs = [torch.tensor(a) for a in args[1:]]
    vt = lk.linear_grpo_loss(Ht, *targs, reduction="none", sample_weight=torch.tensor(s),
                             **opts)
    (vt * torch.tensor(c)).sum().backward()
    np.testing.assert_allclose(vt.detach().numpy(), vn, rtol=1e-14)
    np.testing.assert_allclose(Ht.grad.numpy(), gnone.numpy(), rtol=1e-9, atol=1e-13)


def test_finite_differences():
    d = _arrays(seed=6)
    d["shift"] = d["shift"] * 0.2  # ratios inside the clipping range: smooth there
    _, _, arrays = _reference(d)
    args = (d["y"], d["mask"], d["adv"])
    kw = dict(old_per_token_logps=arrays["old"], ref_hidden=d["rh"], ref_weight=d["rW"],
              temperature=0.7, beta=0.5, variant="grpo")
    f = lambda h, W, b: float(lk.linear_grpo_loss(h, W, *args, b, **kw))  # noqa: E731
    gh, gW, gb = lk.linear_grpo_loss.grad(d["h"], d["W"], *args, d["b"], wrt="all", **kw)
    eps = 1e-5  # (old log-probabilities given: with None they move with the policy)
    for which, idx, g in [(0, (0, 2, 1), gh), (0, (3, 1, 0), gh), (1, (4, 2), gW),
                          (2, (5,), gb)]:
        plus = [d["h"].copy(), d["W"].copy(), d["b"].copy()]
        minus = [d["h"].copy(), d["W"].copy(), d["b"].copy()]
        plus[which][idx] += eps
        minus[which][idx] -= eps
        fd = (f(*plus) - f(*minus)) / (2 * eps)
        assert abs(g[idx] - fd) < 1e-8 * max(1.0, abs(fd)), (which, idx, g[idx], fd)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_backward_equals_the_reference(reduction):
    d = _arrays(seed=7)
    want_v, want_g, arrays = _reference(d, variant="grpo", temperature=0.7)
    H = torch.tensor(d["h"], requires_grad=True)
    Wt = torch.tensor(d["W"], requires_grad=True)
    Bt = torch.tensor(d["b"], requires_grad=True)
    v = lk.linear_grpo_loss(H, Wt, torch.tensor(d["y"]), torch.tensor(d["mask"]),
                            torch.tensor(d["adv"]), Bt,
                            old_per_token_logps=torch.tensor(arrays["old"]),
                            ref_hidden=torch.tensor(d["rh"]),
                            ref_weight=torch.tensor(d["rW"]), ref_bias=torch.tensor(d["rb"]),
                            variant="grpo", temperature=0.7, epsilon_high=0.28,
                            reduction=reduction)
    if reduction == "none":  # grpo: the mean over sequences of the per-sequence values
        v = v.mean()
    (2.0 * v).backward()
    np.testing.assert_allclose(v.item(), want_v, rtol=1e-11)
    for t, want in zip((H, Wt, Bt), want_g):
        np.testing.assert_allclose(t.grad.numpy(), 2.0 * want, rtol=1e-9, atol=1e-13)


def test_jax_grad_equals_the_reference():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    d = _arrays(seed=8)
    want_v, want_g, arrays = _reference(d, variant="dapo", level="sequence", ref="logps",
                                        temperature=0.7)
    f = lambda h_, w_, b_: lk.linear_grpo_loss(  # noqa: E731
        h_, w_, jnp.asarray(d["y"]), jnp.asarray(d["mask"]), jnp.asarray(d["adv"]), b_,
        jnp.asarray(arrays["old"]), jnp.asarray(arrays["ref"]), importance_sampling="sequence",
        temperature=0.7, epsilon_high=0.28)
    v, g = jax.value_and_grad(f, argnums=(0, 1, 2))(jnp.asarray(d["h"]), jnp.asarray(d["W"]),
                                                    jnp.asarray(d["b"]))
    np.testing.assert_allclose(float(v), want_v, rtol=1e-11)
    for a, want in zip(g, want_g):
        np.testing.assert_allclose(np.asarray(a), want, rtol=1e-9, atol=1e-13)


def test_registered_in_the_catalog():
    assert lk.linear_grpo_loss.family == "language_models"
    assert "linear_grpo_loss" in lk.__all__
    assert lk.linear_grpo_loss.differentiable == ("hidden", "weight", "bias")


_BAD = [
    (lambda d: dict(h=d["h"][0]), ValueError, r"`hidden` of linear_grpo_loss must have shape"),
    (lambda d: dict(y=d["y"][:, :2]), ValueError, r"`targets` of linear_grpo_loss must have"),
    (lambda d: dict(y=d["y"].astype(float)), TypeError, r"`targets` .* integer"),
    (lambda d: dict(mask=d["mask"][:2]), ValueError, r"`mask` of linear_grpo_loss must have"),
    (lambda d: dict(adv=d["adv"][:2]), ValueError, r"advantages"),
    (lambda d: dict(W=d["W"].T), ValueError, r"`weight` of linear_grpo_loss must have shape"),
    (lambda d: dict(b=d["b"][:3]), ValueError, r"`bias` of linear_grpo_loss must have shape"),
    (lambda d: dict(y=np.where(d["mask"] > 0, V, d["y"])), ValueError,
     r"`targets` must hold class indices in \[0, 6\]"),
    (lambda d: dict(mask=d["mask"] * 2), ValueError, r"`mask` must lie in \[0, 1\]"),
]


@pytest.mark.parametrize("change, error, match", _BAD)
def test_bad_shapes_and_values_raise_clear_errors(change, error, match):
    d = _arrays()
    d.update(change(d))
    with pytest.raises(error, match=match):
        lk.linear_grpo_loss(d["h"], d["W"], d["y"], d["mask"], d["adv"], d["b"])


@pytest.mark.parametrize("kw, match", [
    (lambda d: dict(ref_per_token_logps=d["mask"], ref_hidden=d["rh"], ref_weight=d["rW"]),
     "not both"),
    (lambda d: dict(ref_weight=d["rW"]), "needs both"),
    (lambda d: dict(ref_bias=d["rb"]), "`ref_bias` needs"),
    (lambda d: dict(ref_hidden=d["rh"][:2], ref_weight=d["rW"]), "`ref_hidden` of"),
    (lambda d: dict(ref_hidden=d["rh"], ref_weight=d["W"]), "`ref_weight` of"),
    (lambda d: dict(variant="dr_grpo"), "max_completion_length"),
    (lambda d: dict(variant="cispo", importance_sampling="sequence"), "cispo"),
    (lambda d: dict(variant="sapo"), "`variant` must be one of"),
    (lambda d: dict(temperature=0.0), "temperature"),
])
def test_bad_options_raise_clear_errors(kw, match):
    d = _arrays()
    with pytest.raises(ValueError, match=match):
        lk.linear_grpo_loss(d["h"], d["W"], d["y"], d["mask"], d["adv"], d["b"], **kw(d))


def test_wrt_bias_without_a_bias():
    d = _arrays()
    with pytest.raises(ValueError, match="wrt='bias' needs a `bias`"):
        lk.linear_grpo_loss.grad(d["h"], d["W"], d["y"], d["mask"], d["adv"], wrt="bias")
    g = lk.linear_grpo_loss.grad(d["h"], d["W"], d["y"], d["mask"], d["adv"], wrt="all")
    assert g[2] is None
