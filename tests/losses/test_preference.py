"""dpo_loss: every variant and f-divergence against TRL's formulas written out in torch
(autograd for the gradients), finite differences, edges and errors.

References: huggingface/trl ``trl/trainer/dpo_trainer.py`` (``DPOTrainer._compute_loss``)
and linkedin/Liger-Kernel ``src/liger_kernel/chunked_loss/dpo_loss.py``
(``preference_loss_fn``); the formulas are written out in ``tests/cases/cases_preference.py``
(``trl_dpo``) and, for the edges, below. Neither library is installed here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import losskit as lk
import loss_cases  # noqa: F401  (first: it imports every cases_*.py)
from cases_preference import dpo_inputs, trl_dpo

torch = pytest.importorskip("torch")
F = torch.nn.functional

VARIANTS = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair",
            "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop",
            "sigmoid_norm")
F_DIVS = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
# read the log-ratios, not the scores: TRL 1.16 refuses another f_divergence_type for them
PLAIN = ("nca_pair", "bco_pair", "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down")
SMOOTHING = {"exo_pair": 1e-3, "robust": 0.2, "aot": 0.1, "aot_unpaired": 0.05}


def _options(variant, f):
    opts = {"variant": variant, "beta": 0.3, "f_divergence": f}
    if variant in SMOOTHING:
        opts["label_smoothing"] = SMOOTHING[variant]
    if variant == "discopop":
        opts["discopop_tau"] = 0.5
    if f == "alpha_divergence":
        opts["f_alpha"] = 0.6
    return opts


def _inputs(seed=0):
    c, r, rc, rr, lc, lr = dpo_inputs(lengths=True)(np.random.default_rng(seed))
    # log-ratios of a few units: every f-divergence score stays moderate
    return c, r, c - 0.4 * (rc - c), r - 0.4 * (rr - r), lc, lr


def _torch(variant, opts, arrays, reduction="mean"):
    ref = trl_dpo(variant, **{k: v for k, v in opts.items() if k != "variant"})
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=i < 2)
          for i, a in enumerate(arrays)]
    v = ref(*ts, reduction, torch)
    v.sum().backward()
    return v.detach().numpy(), ts[0].grad.numpy(), ts[1].grad.numpy()


# the PLAIN variants refuse another divergence, as TRL 1.16 does: test_errors
COMBOS = [(v, f) for v in VARIANTS for f in F_DIVS if v not in PLAIN or f == "reverse_kl"]


@pytest.mark.parametrize("variant,f", COMBOS)
def test_every_variant_and_divergence_matches_trl(variant, f):
    opts = _options(variant, f)
    arrays = _inputs()
    for reduction in ("none", "mean"):
        rv, rgc, rgr = _torch(variant, opts, arrays, reduction)
        v, (gc, gr) = lk.dpo_loss.value_and_grad(*arrays, reduction=reduction, wrt="all",
                                                  **opts)
        np.testing.assert_allclose(v, rv, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(gc, rgc, rtol=1e-9, atol=1e-13)
        np.testing.assert_allclose(gr, rgr, rtol=1e-9, atol=1e-13)
    # finite differences of the closed-form gradient, both inputs
    if variant != "hinge":
        for wrt in (0, 1):
            assert lk.gradcheck(lk.dpo_loss, *arrays, wrt=wrt, **opts).ok


def test_mean_is_liger_sum_over_pairs():
    """Liger: ``losses.sum() / n_pairs``, n_pairs = full_target.shape[0] // 2."""
    c, r, rc, rr, _, _ = _inputs(1)
    z = 0.1 * ((c - rc) - (r - rr))
    liger = np.sum(np.logaddexp(0.0, -z)) / c.shape[0]
    assert float(lk.dpo_loss(c, r, rc, rr)) == pytest.approx(liger, rel=1e-12)


def test_reference_free_and_keywords():
    c, r, rc, rr, _, _ = _inputs(2)
    zero = np.zeros_like(c)
    np.testing.assert_allclose(lk.dpo_loss(c, r, reduction="none"),
                               lk.dpo_loss(c, r, zero, zero, reduction="none"), rtol=0)
    # only one reference given: the other is 0
    np.testing.assert_allclose(lk.dpo_loss(c, r, ref_rejected_logps=rr, reduction="none"),
                               lk.dpo_loss(c, r, zero, rr, reduction="none"), rtol=0)
    # the reference log-probabilities are constants: shifting both by the same amount as the
    # policy's leaves the loss unchanged
    np.testing.assert_allclose(lk.dpo_loss(c + 1.0, r + 1.0, rc + 1.0, rr + 1.0),
                               lk.dpo_loss(c, r, rc, rr), rtol=1e-12)


# ---------------------------------------------------------------- numerical edges
def _sigmoid_ref(z):
    return np.logaddexp(0.0, -z), -0.5 * (1.0 - np.tanh(0.5 * z))  # -sigmoid(-z)


def test_log_probabilities_near_zero_and_very_negative():
    c = np.array([0.0, -1e-12, -1e4, -5e4, 0.0])
    r = np.array([-1e4, 0.0, 0.0, -1e-300, -5e4])
    v, (gc, gr) = lk.dpo_loss.value_and_grad(c, r, beta=1.0, reduction="none", wrt="all")
    rv, rd = _sigmoid_ref(c - r)
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    np.testing.assert_allclose(gc, rd, rtol=1e-12)
    np.testing.assert_allclose(gr, -rd, rtol=1e-12)
    assert v[2] == 1e4 and gc[2] == -1.0 and v[0] == 0.0


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in ("ipo", "sppo_hard")])
def test_every_variant_finite_at_extreme_log_probabilities(variant):
    c = np.array([-1e-9, -3000.0, -1.0, -2000.0])
    r = np.array([-3000.0, -1e-9, -2000.0, -1.0])
    opts = _options(variant, "reverse_kl")
    opts["beta"] = 1.0
    lengths = np.array([3.0, 4.0, 5.0, 6.0])
    v, g = lk.dpo_loss.value_and_grad(c, r, None, None, lengths, lengths,
                                      reduction="none", wrt="all", **opts)
    assert np.all(np.isfinite(v)) and all(np.all(np.isfinite(gi)) for gi in g), (v, g)


def test_discopop_stays_finite_where_trl_overflows():
    """TRL's exp(-z) * sigmoid(z / tau) is inf * 0 at z = -1000; the limit is finite
    (tau < 1) and the value is then the logistic part, -z."""
    c, r = np.array([-1000.0, 1000.0]) - 2000.0, np.full(2, -2000.0)
    v, g = lk.dpo_loss.value_and_grad(c, r, beta=1.0, variant="discopop", discopop_tau=0.05,
                                      reduction="none")
    np.testing.assert_allclose(v, [1000.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(g, [-1.0, 0.0], atol=1e-12)
    with torch.no_grad():  # the naive product: nan at z = -1000
        z = torch.tensor(-1000.0, dtype=torch.float64)
        m = torch.sigmoid(z / 0.05)
        assert torch.isnan(-F.logsigmoid(z) * (1 - m) + torch.exp(-z) * m)


@pytest.mark.parametrize("beta", [1e-8, 1e6])
def test_beta_extremes(beta):
    c, r, rc, rr, _, _ = _inputs(3)
    z = beta * ((c - rc) - (r - rr))
    v, g = lk.dpo_loss.value_and_grad(c, r, rc, rr, beta=beta, reduction="none")
    rv, rd = _sigmoid_ref(z)
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    np.testing.assert_allclose(g, beta * rd, rtol=1e-12)


def test_alpha_divergence_clamp_and_limit():
    """TRL clamps (alpha - 1) * logratio at 80 (no gradient beyond, torch.clamp's) and
    falls back to the reverse KL for |alpha - 1| < 1e-6."""
    c, r = np.array([-1.0, -500.0]), np.array([-2.0, -3.0])
    rc, rr = np.zeros(2), np.zeros(2)
    opts = {"variant": "sigmoid", "f_divergence": "alpha_divergence", "f_alpha": 0.5}
    v, (gc, gr) = lk.dpo_loss.value_and_grad(c, r, rc, rr, reduction="none", wrt="all",
                                              **opts)
    ts = [torch.tensor(a, requires_grad=i < 2) for i, a in enumerate((c, r, rc, rr))]
    rv = trl_dpo("sigmoid", f_divergence="alpha_divergence", f_alpha=0.5)(*ts, "none", torch)
    rv.sum().backward()
    np.testing.assert_allclose(v, rv.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gc, ts[0].grad.numpy(), rtol=1e-12)
    assert gc[1] == 0.0 and np.isfinite(v[1])
    np.testing.assert_allclose(
        lk.dpo_loss(c, r, rc, rr, f_divergence="alpha_divergence", f_alpha=1.0 + 1e-7),
        lk.dpo_loss(c, r, rc, rr), rtol=0)


def test_lengths_clamp_and_are_per_pair():
    c, r = np.array([-4.0, -6.0]), np.array([-5.0, -3.0])
    lc, lr = np.array([0.0, 4.0]), np.array([2.0, 0.5])  # below 1 counts as 1
    v = lk.dpo_loss(c, r, None, None, lc, lr, variant="ipo", beta=0.5, reduction="none")
    d = c / np.array([1.0, 4.0]) - r / np.array([2.0, 1.0]) - 1.0
    np.testing.assert_allclose(v, d * d, rtol=1e-14)
    # integer lengths are fine; the other variants check them but do not read them
    li = np.array([3, 4])
    assert np.isfinite(float(lk.dpo_loss(c, r, chosen_lengths=li, rejected_lengths=li,
                                         variant="sigmoid_norm")))
    assert float(lk.dpo_loss(c, r, None, None, li, li)) == float(lk.dpo_loss(c, r))


def test_label_smoothing_bounds():
    c, r, rc, rr, _, _ = _inputs(4)
    ok = lk.dpo_loss(c, r, rc, rr, variant="robust", label_smoothing=0.4999)
    assert np.isfinite(float(ok))
    # robust at 0 is the sigmoid loss; aot at 0 and 1 are -logsigmoid(+-beta delta)
    np.testing.assert_allclose(lk.dpo_loss(c, r, rc, rr, variant="robust"),
                               lk.dpo_loss(c, r, rc, rr), rtol=1e-14)
    for eps in (0.0, 1.0):
        assert np.isfinite(float(lk.dpo_loss(c, r, rc, rr, variant="aot",
                                             label_smoothing=eps)))
    for variant, bad in (("robust", 0.5), ("robust", -0.1), ("exo_pair", 0.0),
                         ("exo_pair", 1.0), ("aot", 1.5), ("sigmoid", 0.1)):
        with pytest.raises(ValueError, match="label_smoothing"):
            lk.dpo_loss(c, r, rc, rr, variant=variant, label_smoothing=bad)


# ---------------------------------------------------------------- batch coupling (aot)
@pytest.mark.parametrize("variant", ["aot", "aot_unpaired"])
def test_aot_weighted_terms_follow_their_examples(variant):
    """With sample weights, example j's weight multiplies the term reported at j: the
    torch reference puts TRL's rank-ordered terms at those examples, then weights them."""
    c, r, rc, rr, _, _ = _inputs(5)
    w = np.linspace(0.2, 2.0, c.shape[0])
    opts = {"variant": variant, "beta": 0.3, "label_smoothing": 0.1}
    ts = [torch.tensor(a, requires_grad=i < 2) for i, a in enumerate((c, r, rc, rr))]
    per = trl_dpo(variant, beta=0.3, label_smoothing=0.1)(*ts, "none", torch)
    total = (per * torch.tensor(w)).sum()
    total.backward()
    # TRL's batch value is the plain mean of its terms, whatever the layout
    ts2 = [torch.tensor(a) for a in (c, r, rc, rr)]
    lc, lr = ts2[0] - ts2[2], ts2[1] - ts2[3]
    key = ((ts2[0] - ts2[1]).sort()[0] - (ts2[2] - ts2[3]).sort()[0] if variant == "aot"
           else lc.sort()[0] - lr.sort()[0])
    trl_mean = (-F.logsigmoid(0.3 * key) * 0.9 - F.logsigmoid(-0.3 * key) * 0.1).mean()
    assert float(lk.dpo_loss(c, r, rc, rr, **opts)) == pytest.approx(float(trl_mean),
                                                                     rel=1e-12)
    v, (gc, gr) = lk.dpo_loss.value_and_grad(c, r, rc, rr, sample_weight=w,
                                              reduction="sum", wrt="all", **opts)
    assert float(v) == pytest.approx(float(total.detach()), rel=1e-12)
    np.testing.assert_allclose(gc, ts[0].grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(gr, ts[1].grad.numpy(), rtol=1e-10)


def test_aot_empty_batch():
    e = np.zeros(0)
    for variant in ("aot", "aot_unpaired"):
        v, g = lk.dpo_loss.value_and_grad(e, e, variant=variant, wrt="all")
        assert float(v) == 0.0 and g[0].shape == (0,) and g[1].shape == (0,)


def test_zero_weight_removes_a_pair():
    """A pair left out of the batch (weight 0, e.g. an all-masked one) adds nothing, even
    with non-finite log-probabilities, and gets a zero gradient."""
    c = np.array([-3.0, -np.inf, -2.0])
    r = np.array([-4.0, -1.0, -2.5])
    w = np.array([1.0, 0.0, 1.0])
    v, (gc, gr) = lk.dpo_loss.value_and_grad(c, r, sample_weight=w, wrt="all")
    rv, rd = _sigmoid_ref(0.1 * (c[[0, 2]] - r[[0, 2]]))
    assert float(v) == pytest.approx(rv.mean(), rel=1e-14)
    assert gc[1] == 0.0 and gr[1] == 0.0


# ---------------------------------------------------------------- errors
def test_errors():
    c, r, rc, rr, lc, lr = _inputs(6)
    with pytest.raises(ValueError, match="`variant` must be one of"):
        lk.dpo_loss(c, r, variant="sft")
    with pytest.raises(ValueError, match="`f_divergence` must be one of"):
        lk.dpo_loss(c, r, f_divergence="kl")
    for variant in PLAIN:
        with pytest.raises(ValueError, match="plain log-ratios"):
            lk.dpo_loss(c, r, variant=variant, f_divergence="js_divergence")
    for variant in ("ipo", "sigmoid_norm"):
        with pytest.raises(ValueError, match="length-normalised"):
            lk.dpo_loss(c, r, rc, rr, variant=variant)
        with pytest.raises(ValueError, match="length-normalised"):
            lk.dpo_loss(c, r, rc, rr, lc, variant=variant)
    with pytest.raises(ValueError, match="`chosen_lengths` must lie in"):
        lk.dpo_loss(c, r, rc, rr, -lc, lr, variant="ipo")
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="`beta`"):
            lk.dpo_loss(c, r, beta=bad)
    with pytest.raises(ValueError, match="`discopop_tau`"):
        lk.dpo_loss(c, r, variant="discopop", discopop_tau=0.0)
    with pytest.raises(ValueError, match="must be 1-d"):
        lk.dpo_loss(c.reshape(2, 3), r.reshape(2, 3))
    with pytest.raises(ValueError, match="`rejected_logps` of dpo_loss must have the shape"):
        lk.dpo_loss(c, r[:3])
    with pytest.raises(ValueError, match="`ref_chosen_logps` of dpo_loss must have the shape"):
        lk.dpo_loss(c, r, rc[:2])
    with pytest.raises(TypeError, match="`rejected_logps` of dpo_loss must have the dtype"):
        lk.dpo_loss(c, r.astype(np.float32))
    with pytest.raises(TypeError, match="missing|takes"):
        lk.dpo_loss(c)


def test_float32_and_torch_autograd():
    c, r, rc, rr, _, _ = _inputs(7)
    v32 = lk.dpo_loss(c.astype(np.float32), r.astype(np.float32), rc, rr)
    assert v32.dtype == np.float32
    assert float(v32) == pytest.approx(float(lk.dpo_loss(c, r, rc, rr)), rel=1e-6)
    tc = torch.tensor(c, requires_grad=True)
    tr = torch.tensor(r, requires_grad=True)
    lk.dpo_loss(tc, tr, torch.tensor(rc), torch.tensor(rr), variant="bco_pair").backward()
    _, gc, gr = _torch("bco_pair", {"variant": "bco_pair"}, (c, r, rc, rr))
    np.testing.assert_allclose(tc.grad.numpy(), gc, rtol=1e-12)
    np.testing.assert_allclose(tr.grad.numpy(), gr, rtol=1e-12)
