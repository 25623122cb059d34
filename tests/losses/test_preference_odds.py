"""Reference-free and unpaired preference losses: simpo_loss, cpo_loss, orpo_loss, kto_loss.

Values and gradients against Liger-Kernel's ``preference_loss_fn`` written out in plain
torch (linkedin/Liger-Kernel, ``src/liger_kernel/chunked_loss/{simpo,cpo,orpo,kto}_loss.py``;
Liger is not installed: the formulas are copied into the test as torch expressions, with
Liger's normalisation by the number of pairs / sequences), finite differences, the edges
(log-probabilities 0 and -1e4, beta extremes, label_smoothing 0 and 1, ORPO near
probability 1 against mpmath) and every error. Expected numbers never come from losskit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import losskit as lk
from losskit.gradcheck import gradcheck

torch = pytest.importorskip("torch")
F = torch.nn.functional

N = 5


def _pairs(seed=0):
    rng = np.random.default_rng(seed)
    return -rng.uniform(0.05, 3.0, size=N), -rng.uniform(0.05, 3.0, size=N)


# ------------------------------------------------------------------ Liger's formulas
def liger_simpo(c, r, beta=0.1, gamma=0.5, label_smoothing=0.0):
    """simpo_loss.py, LigerFusedLinearSimPOFunction.preference_loss_fn (full_target holds
    the 2N chosen + rejected rows: ``full_target.shape[0] // 2`` = N)."""
    logits = beta * (c - r) - gamma
    return (-F.logsigmoid(logits) * (1 - label_smoothing)
            - F.logsigmoid(-logits) * label_smoothing).sum() / c.shape[0]


def liger_cpo(c, r, beta=0.1, label_smoothing=0.0):
    """cpo_loss.py, LigerFusedLinearCPOFunction.preference_loss_fn."""
    logits = beta * (c - r)
    return (-F.logsigmoid(logits) * (1 - label_smoothing)
            - F.logsigmoid(-logits) * label_smoothing).sum() / c.shape[0]


def liger_orpo(c, r, beta=0.1):
    """orpo_loss.py, LigerFusedLinearORPOFunction.preference_loss_fn (its first output)."""
    log_odds = (c - r) - (torch.log1p(-torch.exp(c)) - torch.log1p(-torch.exp(r)))
    return -beta * F.logsigmoid(log_odds).sum() / c.shape[0]


def liger_kto(lp, labels, ref=None, beta=0.1, kl=None):
    """kto_loss.py, LigerFusedLinearKTOFunction.preference_loss_fn (full_target: N rows)."""
    lr = lp - ref if ref is not None else lp
    mult = torch.where(labels, 1, -1)
    if kl is not None:
        losses = 1 - torch.sigmoid(beta * (lr - kl) * mult)
    else:
        losses = 1 - torch.sigmoid(beta * lr * mult)
    return losses.sum() / lp.shape[0]


def _torch_paired(fn, c, r, **kw):
    tc = torch.tensor(c, requires_grad=True)
    tr = torch.tensor(r, requires_grad=True)
    v = fn(tc, tr, **kw)
    v.backward()
    return v.item(), tc.grad.numpy(), tr.grad.numpy()


PAIRED = [
    (lk.simpo_loss, liger_simpo, {}),
    (lk.simpo_loss, liger_simpo, {"beta": 2.5, "gamma": 1.4, "label_smoothing": 0.3}),
    (lk.cpo_loss, liger_cpo, {}),
    (lk.cpo_loss, liger_cpo, {"beta": 3.0, "label_smoothing": 1.0}),
    (lk.orpo_loss, liger_orpo, {}),
    (lk.orpo_loss, liger_orpo, {"beta": 0.6}),
]


@pytest.mark.parametrize("loss,ref,opts", PAIRED)
def test_paired_mean_is_ligers_number_with_its_gradients(loss, ref, opts):
    c, r = _pairs()
    v, gc, gr = _torch_paired(ref, c, r, **opts)
    got_v, (got_c, got_r) = loss.value_and_grad(c, r, wrt="all", **opts)
    np.testing.assert_allclose(got_v, v, rtol=1e-12)
    np.testing.assert_allclose(got_c, gc, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(got_r, gr, rtol=1e-11, atol=1e-15)
    # per pair: Liger's sum over the pairs divided by N is the mean of losskit's values
    np.testing.assert_allclose(loss(c, r, reduction="none", **opts).sum() / N, v, rtol=1e-12)


@pytest.mark.parametrize("loss,ref,opts", PAIRED)
def test_paired_finite_differences(loss, ref, opts):
    c, r = _pairs(1)
    for k, name in enumerate(("chosen_logps", "rejected_logps")):
        res = gradcheck(loss, c, r, wrt=k, reduction="sum",
                        grad=lambda *a, _n=name, **kw: loss.grad(*a, wrt=_n, **kw), **opts)
        assert res.ok, (name, res)


@pytest.mark.parametrize("opts", [{}, {"beta": 0.5, "kl": 0.25}])
@pytest.mark.parametrize("with_ref", [True, False])
def test_kto_mean_is_ligers_number_with_its_gradient(opts, with_ref):
    rng = np.random.default_rng(2)
    lp = -rng.uniform(0.05, 30.0, size=6)
    ref = -rng.uniform(0.05, 30.0, size=6) if with_ref else None
    d = np.array([True, False, True, True, False, False])
    t_lp = torch.tensor(lp, requires_grad=True)
    v = liger_kto(t_lp, torch.tensor(d), None if ref is None else torch.tensor(ref), **opts)
    v.backward()
    got_v, got_g = lk.kto_loss.value_and_grad(lp, d, ref, **opts)
    np.testing.assert_allclose(got_v, v.item(), rtol=1e-12)
    np.testing.assert_allclose(got_g, t_lp.grad.numpy(), rtol=1e-11, atol=1e-15)
    res = gradcheck(lk.kto_loss, lp, d, ref, reduction="sum", **opts)
    assert res.ok, res


def test_kto_reference_none_is_zero_and_keywords_work():
    lp = np.array([-1.0, -2.0, -3.0])
    d = np.array([True, False, True])
    a = lk.kto_loss(lp, d, reduction="none")
    np.testing.assert_array_equal(a, lk.kto_loss(lp, d, np.zeros(3), reduction="none"))
    np.testing.assert_array_equal(a, lk.kto_loss(lp, d, ref_logps=None, reduction="none"))
    np.testing.assert_array_equal(lk.kto_loss(lp, d, ref_logps=lp, reduction="none"),
                                  np.full(3, 0.5))  # rho = 0: 1 - sigmoid(0)
    # 0/1 numbers as labels are the booleans
    np.testing.assert_array_equal(a, lk.kto_loss(lp, d.astype(np.float64), reduction="none"))
    # kl=None is kl=0
    np.testing.assert_array_equal(a, lk.kto_loss(lp, d, kl=0.0, reduction="none"))


def test_kto_class_weights_through_sample_weight():
    """TRL's desirable_weight / undesirable_weight: per-example weights."""
    lp, ref = np.array([-1.0, -2.0, -3.0]), np.array([-1.5, -1.0, -3.5])
    d = np.array([True, False, True])
    w = np.where(d, 1.0, 1.33)
    per = 1 - 1 / (1 + np.exp(-0.1 * (lp - ref) * np.where(d, 1, -1)))
    np.testing.assert_allclose(lk.kto_loss(lp, d, ref, sample_weight=w, reduction="sum") / 3,
                               (w * per).sum() / 3, rtol=1e-13)


# ------------------------------------------------------------------ edges
def _sigmoid(z):
    return 1 / (1 + math.exp(-z))


@pytest.mark.parametrize("loss", [lk.simpo_loss, lk.cpo_loss])
def test_logistic_edges_log_probabilities_0_and_very_negative(loss):
    c = np.array([0.0, -1e4, -1e4, 0.0])
    r = np.array([-1e4, 0.0, -1e4, 0.0])
    g = 0.5 if loss is lk.simpo_loss else 0.0
    v = loss(c, r, beta=1.0, reduction="none")
    gc, gr = loss.grad(c, r, beta=1.0, wrt="all", reduction="sum")
    # z = 1e4 - g: loss e^{-z} (0 in float64); z = -1e4 - g: loss -z
    np.testing.assert_allclose(v, [0.0, 1e4 + g, math.log1p(math.exp(g)),
                                   math.log1p(math.exp(g))], rtol=1e-15, atol=0)
    np.testing.assert_allclose(gc, [0.0, -1.0, -_sigmoid(g), -_sigmoid(g)], rtol=1e-15)
    np.testing.assert_array_equal(gr, -gc)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(gc))


@pytest.mark.parametrize("loss", [lk.simpo_loss, lk.cpo_loss])
def test_label_smoothing_bounds(loss):
    c, r = _pairs(3)
    g = 0.5 if loss is lk.simpo_loss else 0.0
    z = 2.0 * (c - r) - g
    # label_smoothing 1: the preference flipped, -log sigmoid(-z); its gradient beta sigmoid(z)
    np.testing.assert_allclose(loss(c, r, beta=2.0, label_smoothing=1.0, reduction="none"),
                               np.log1p(np.exp(z)), rtol=1e-13)
    np.testing.assert_allclose(loss.grad(c, r, beta=2.0, label_smoothing=1.0, reduction="sum"),
                               2.0 / (1 + np.exp(-z)), rtol=1e-13)
    np.testing.assert_allclose(loss(c, r, beta=2.0, label_smoothing=0.0, reduction="none"),
                               np.log1p(np.exp(-z)), rtol=1e-13)
    # 1/2 (and no margin): symmetric in z, so swapping chosen and rejected changes nothing
    half = {"beta": 2.0, "label_smoothing": 0.5, **({"gamma": 0.0} if g else {})}
    np.testing.assert_allclose(loss(c, r, reduction="none", **half),
                               loss(r, c, reduction="none", **half), rtol=1e-13)


@pytest.mark.parametrize("loss,ref", [(lk.simpo_loss, liger_simpo), (lk.cpo_loss, liger_cpo),
                                      (lk.orpo_loss, liger_orpo)])
@pytest.mark.parametrize("beta", [1e-8, 1e3])
def test_beta_extremes(loss, ref, beta):
    c, r = _pairs(4)
    v, gc, gr = _torch_paired(ref, c, r, beta=beta)
    got_v, (got_c, got_r) = loss.value_and_grad(c, r, beta=beta, wrt="all")
    np.testing.assert_allclose(got_v, v, rtol=1e-12)
    np.testing.assert_allclose(got_c, gc, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(got_r, gr, rtol=1e-10, atol=1e-300)


def test_kto_edges():
    lp = np.array([-1e4, -1e4, 0.0, 0.0])
    d = np.array([True, False, True, False])
    v = lk.kto_loss(lp, d, beta=1.0, reduction="none")
    g = lk.kto_loss.grad(lp, d, beta=1.0, reduction="sum")
    np.testing.assert_array_equal(v, [1.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(g, [0.0, 0.0, -0.25, 0.25], atol=0)  # -beta m s(u) s(-u)
    for beta in (1e-8, 1e3):
        lp2 = np.array([-0.5, -0.01])
        tl = torch.tensor(lp2, requires_grad=True)
        v = liger_kto(tl, torch.tensor([True, False]), beta=beta)
        v.backward()
        got_v, got_g = lk.kto_loss.value_and_grad(lp2, np.array([True, False]), beta=beta)
        np.testing.assert_allclose(got_v, v.item(), rtol=1e-12)
        np.testing.assert_allclose(got_g, tl.grad.numpy(), rtol=1e-10, atol=1e-300)


def _orpo_mp(c, r, beta):
    """Value and gradients (chain rule written out) of one pair in 50-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(50):
        c, r = mpmath.mpf(c), mpmath.mpf(r)

        lo = (c - mpmath.log(-mpmath.expm1(c))) - (r - mpmath.log(-mpmath.expm1(r)))
        s = 1 / (1 + mpmath.exp(lo))  # sigma(-L); d L / d c = 1 / (1 - e^c)
        return (float(beta * mpmath.log1p(mpmath.exp(-lo))),
                float(-beta * s / -mpmath.expm1(c)), float(beta * s / -mpmath.expm1(r)))


@pytest.mark.parametrize("c,r", [(-1e-12, -1e-9), (-1e-9, -1e-12), (-1e-300, -0.5),
                                 (-0.5, -1e-14), (-30.0, -1e-8), (-700.0, -800.0),
                                 (-1e4, -1e4 + 1)])
def test_orpo_full_precision_near_probability_1(c, r):
    """log1p(-exp(x)) loses every digit for x near 0; log(-expm1(x)) keeps them."""
    v, gc, gr = _orpo_mp(c, r, 0.3)
    got_v = lk.orpo_loss(np.array([c]), np.array([r]), beta=0.3, reduction="sum")
    got_c, got_r = lk.orpo_loss.grad(np.array([c]), np.array([r]), beta=0.3, wrt="all",
                                     reduction="sum")
    np.testing.assert_allclose(got_v, v, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(got_c[0], gc, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(got_r[0], gr, rtol=1e-10, atol=1e-300)


def test_orpo_float32_near_0_matches_float64():
    c = np.array([-1e-6, -2e-3, -5.0], dtype=np.float32)
    r = np.array([-3e-6, -1e-7, -6.0], dtype=np.float32)
    v32, (gc32, gr32) = lk.orpo_loss.value_and_grad(c, r, wrt="all", reduction="none")
    v64, (gc64, gr64) = lk.orpo_loss.value_and_grad(c.astype(np.float64), r.astype(np.float64),
                                                    wrt="all", reduction="none")
    assert v32.dtype == np.float32 and gc32.dtype == np.float32
    np.testing.assert_allclose(v32, v64, rtol=1e-5)
    np.testing.assert_allclose(gc32, gc64, rtol=1e-5)
    np.testing.assert_allclose(gr32, gr64, rtol=1e-5)


def test_orpo_log_probability_0():
    """c = 0 (probability 1): odds inf, loss 0, d/dc = -beta e^r / (1 - e^r), d/dr = 0;
    r = 0: loss inf, d/dr = inf; both 0: inf / inf, NaN (Liger gives NaN too)."""
    c = np.array([0.0, -1.0, 0.0])
    r = np.array([-1.0, 0.0, 0.0])
    v = lk.orpo_loss(c, r, beta=0.5, reduction="none")
    gc, gr = lk.orpo_loss.grad(c, r, beta=0.5, wrt="all", reduction="sum")
    odds = math.exp(-1.0) / (1 - math.exp(-1.0))
    assert v[0] == 0.0 and v[1] == math.inf and math.isnan(v[2])
    np.testing.assert_allclose(gc[:2], [-0.5 * odds, -0.5 / (1 - math.exp(-1.0))], rtol=1e-14)
    assert gr[0] == 0.0 and not np.signbit(gr[0]) and gr[1] == math.inf
    assert math.isnan(gc[2]) and math.isnan(gr[2])
    with torch.no_grad():  # Liger's formula at the same points
        tv = -0.5 * F.logsigmoid((torch.tensor(c) - torch.tensor(r)) - (
            torch.log1p(-torch.exp(torch.tensor(c))) - torch.log1p(-torch.exp(torch.tensor(r)))))
    np.testing.assert_array_equal(v, tv.numpy())


def test_empty_batch_is_zero_with_empty_gradients():
    e = np.zeros(0)
    for loss in (lk.simpo_loss, lk.cpo_loss, lk.orpo_loss):
        v, (gc, gr) = loss.value_and_grad(e, e, wrt="all")
        assert v == 0.0 and gc.shape == (0,) and gr.shape == (0,)
    v, g = lk.kto_loss.value_and_grad(e, np.zeros(0, dtype=bool))
    assert v == 0.0 and g.shape == (0,)


def test_reductions_follow_liger_and_the_batch():
    c, r = _pairs(5)
    per = lk.cpo_loss(c, r, reduction="none")
    assert per.shape == (N,)
    np.testing.assert_allclose(lk.cpo_loss(c, r, reduction="sum"), per.sum(), rtol=1e-14)
    np.testing.assert_allclose(lk.cpo_loss(c, r, reduction="batchmean"), per.sum() / N,
                               rtol=1e-14)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("loss", [lk.simpo_loss, lk.cpo_loss, lk.orpo_loss])
@pytest.mark.parametrize("beta", [0.0, -1.0, math.inf, math.nan])
def test_beta_must_be_positive_and_finite(loss, beta):
    c, r = _pairs()
    with pytest.raises(ValueError, match="`beta`"):
        loss(c, r, beta=beta)


def test_option_errors():
    c, r = _pairs()
    for ls in (-0.1, 1.5):
        with pytest.raises(ValueError, match="`label_smoothing` must lie in"):
            lk.simpo_loss(c, r, label_smoothing=ls)
        with pytest.raises(ValueError, match="`label_smoothing` must lie in"):
            lk.cpo_loss(c, r, label_smoothing=ls)
    with pytest.raises(ValueError, match="`gamma` must be finite"):
        lk.simpo_loss(c, r, gamma=math.inf)
    with pytest.raises(TypeError, match="`gamma` must be a real number"):
        lk.simpo_loss(c, r, gamma="0.5")
    d = np.array([True, False, True, False, True])
    with pytest.raises(ValueError, match="`kl` must be finite"):
        lk.kto_loss(c, d, kl=math.inf)
    with pytest.raises(TypeError, match="`kl` must be a real number"):
        lk.kto_loss(c, d, kl=np.ones(5))
    with pytest.raises(ValueError, match="`beta`"):
        lk.kto_loss(c, d, beta=0.0)
    with pytest.raises(TypeError, match="gamma"):
        lk.cpo_loss(c, r, gamma=0.5)  # CPO has no margin


def test_input_errors():
    c, r = _pairs()
    with pytest.raises(ValueError, match="`rejected_logps` of cpo_loss must have the same shape"):
        lk.cpo_loss(c, r[:3])
    with pytest.raises(TypeError, match="`rejected_logps` of simpo_loss must have the dtype"):
        lk.simpo_loss(c, r.astype(np.float32))
    with pytest.raises(TypeError):
        lk.orpo_loss(np.array([-1, -2]), np.array([-1, -3]))  # integers: not log-probabilities
    with pytest.raises(ValueError, match=r"`chosen_logps` must lie in \[-inf, 0\].*at most 0"):
        lk.orpo_loss(np.array([0.1, -1.0]), np.array([-1.0, -1.0]))
    with pytest.raises(ValueError, match=r"`rejected_logps` must lie in \[-inf, 0\]"):
        lk.orpo_loss(np.array([-0.1, -1.0]), np.array([-1.0, 2.0]))
    lp = np.array([-1.0, -2.0])
    with pytest.raises(ValueError, match="`desirable` of kto_loss must hold True/False"):
        lk.kto_loss(lp, np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="`desirable` of kto_loss must have the shape"):
        lk.kto_loss(lp, np.array([True]))
    with pytest.raises(ValueError, match="`ref_logps` of kto_loss must have the shape"):
        lk.kto_loss(lp, np.array([True, False]), np.zeros(3))
    with pytest.raises(TypeError):
        lk.kto_loss(lp, np.array([True, False]), np.array([1, 2]))
    with pytest.raises(ValueError, match="wrt"):
        lk.kto_loss.grad(lp, np.array([True, False]), np.zeros(2), wrt="ref_logps")


def test_metadata():
    for loss in (lk.simpo_loss, lk.cpo_loss, lk.orpo_loss, lk.kto_loss):
        assert loss.family == "language_models"
        assert loss in lk.catalog()
    assert lk.simpo_loss.option_defaults() == {"beta": 0.1, "gamma": 0.5, "label_smoothing": 0.0}
    assert lk.cpo_loss.option_defaults() == {"beta": 0.1, "label_smoothing": 0.0}
    assert lk.orpo_loss.option_defaults() == {"beta": 0.1}
    assert lk.kto_loss.option_defaults() == {"beta": 0.1, "kl": None}
    assert lk.kto_loss.differentiable == ("logps",)
    assert lk.cpo_loss.differentiable == ("chosen_logps", "rejected_logps")


@pytest.mark.parametrize("numba_on", [True, False], ids=["numba", "no-numba"])
def test_kto_reads_boolean_labels_without_a_float_copy(numba_on, monkeypatch):
    """The fused kernel reads a bool ``desirable`` as it is (uint8): with ``out=`` a call
    allocates next to nothing (a float copy of the labels would be the gradient's size),
    and the numbers are those of the same labels as float 0/1 (bit for bit) and of Liger's
    formula."""
    import tracemalloc

    from losskit.core import dispatch
    from losskit.kernels import clear_gradient_cache, fast_paths

    if numba_on:
        pytest.importorskip("numba")
    monkeypatch.setattr(fast_paths, "USE_NUMBA", numba_on)
    monkeypatch.setattr(dispatch, "ENABLED", True)
    rng = np.random.default_rng(8)
    n = 1 << 18  # 1 MiB of float32 log-probabilities, the parallel build
    lp = -rng.uniform(0.05, 3.0, n).astype(np.float32)
    ref = -rng.uniform(0.05, 3.0, n).astype(np.float32)
    d = rng.random(n) > 0.5
    out = np.empty_like(lp)
    engine = "numba" if numba_on else "numpy"
    lk.kto_loss.value_and_grad(lp, d, ref, out=out)  # compiled
    clear_gradient_cache()
    before = fast_paths.STATS["kto_loss", engine]
    tracemalloc.start()
    try:
        v, g = lk.kto_loss.value_and_grad(lp, d, ref, out=out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fast_paths.STATS["kto_loss", engine] == before + 1
    assert g is out
    if numba_on:  # (the NumPy engine works on cache-sized chunks with their temporaries)
        assert peak <= 64 << 10, peak
    v_f, g_f = lk.kto_loss.value_and_grad(lp, d.astype(np.float32), ref)
    assert float(v) == float(v_f)
    np.testing.assert_array_equal(g, g_f)
    t_lp = torch.tensor(lp.astype(np.float64), requires_grad=True)
    ref_v = liger_kto(t_lp, torch.tensor(d), torch.tensor(ref.astype(np.float64)))
    ref_v.backward()
    np.testing.assert_allclose(float(v), ref_v.item(), rtol=1e-5)
    np.testing.assert_allclose(g, t_lp.grad.numpy(), rtol=1e-4, atol=1e-12)
