"""The saturation experiment (digest section 3) and the digest's worked-number checks.

Expected numbers come from the seeds digest (287 and 53 updates; step 1: a = 0.9,
loss 0.08, gradient 0.036, w = 2.1900) or from the mathematics, and the trajectories
are replayed independently in torch float64 autograd (style guide section 14).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import losskit as lk
from losskit.lab import digest
from losskit.lab.experiments import accuracy_vs_loss, saturation

LN9 = math.log(9.0)


# --------------------------------------------------------------------------- the digest's numbers
def test_update_counts_from_the_digest():
    # digest section 3: "With MSE it takes 287 updates", cross-entropy "converges in 53 updates"
    mse, ce = saturation("mse"), saturation("cross_entropy")
    assert mse.updates == 287 and mse.converged
    assert ce.updates == 53 and ce.converged


def test_step_one_numbers_from_the_digest():
    s = saturation("mse").trajectory[0]
    assert s.step == 1
    assert s.w == LN9 and s.b == 0.0
    # sigmoid(ln 9) = 9 / (9 + 1) = 0.9; loss 1/2 (0.9 - 0.5)^2 = 0.08
    assert s.a == pytest.approx(0.9, abs=1e-15)
    assert s.loss == pytest.approx(0.08, abs=1e-15)
    assert s.mse == s.loss
    # gradient (a - y) a (1 - a) x = 0.4 * 0.9 * 0.1 = 0.036
    assert s.grad == pytest.approx(0.036, abs=1e-15)
    # w = ln 9 - 0.2 * 0.036, printed 2.1900
    assert s.w_next == pytest.approx(LN9 - 0.2 * 0.036, abs=1e-15)
    assert round(s.w_next, 4) == 2.19
    assert s.b_next == 0.0


def test_source_printed_next_step_is_for_a_step_of_one():
    # digest: the source's 2.161 and 0.8967 are the arithmetic of eta = 1.0, not 0.2
    s2 = saturation("mse", lr=1.0).trajectory[1]
    assert round(s2.w, 3) == 2.161
    assert round(s2.a, 4) == 0.8967


def test_stopping_rule_and_protocol():
    for loss in ("mse", "cross_entropy"):
        r = saturation(loss)
        steps = r.trajectory
        assert [s.step for s in steps] == list(range(1, r.updates + 1))
        # the bias is not trained in the sources' protocol
        assert all(s.b == 0.0 and s.b_next == 0.0 for s in steps) and r.final_b == 0.0
        # the parameters chain: each update starts where the previous one ended
        assert all(a.w_next == b.w for a, b in zip(steps, steps[1:]))
        assert steps[-1].w_next == r.final_w
        # every update was taken at or above the threshold; the end state is below it
        assert all(s.mse >= r.threshold for s in steps)
        assert r.final_mse < r.threshold
        assert r.final_mse == pytest.approx(0.5 * (r.final_a - 0.5) ** 2, rel=1e-14)


def test_max_steps_stops_unconverged():
    r = saturation("mse", max_steps=10)
    assert r.updates == 10 and not r.converged
    assert r.final_mse >= r.threshold


def test_mse_gradient_carries_the_sigmoid_derivative():
    for s in saturation("mse").trajectory:
        assert s.dloss_dz == pytest.approx((s.a - 0.5) * s.a * (1 - s.a), rel=1e-13)
        assert s.grad == s.dloss_dz * 1.0  # x = 1


def test_ce_gradient_wrt_z_is_a_minus_y():
    for s in saturation("cross_entropy").trajectory:
        assert s.dloss_dz == pytest.approx(s.a - 0.5, abs=1e-15)
        # the loss recorded is the binary cross-entropy -[y log a + (1-y) log(1-a)]
        assert s.loss == pytest.approx(-(0.5 * math.log(s.a) + 0.5 * math.log(1 - s.a)),
                                       rel=1e-13)
    # and the loss itself, on a grid of logits and targets: d/dz = sigmoid(z) - y
    z = np.linspace(-30.0, 30.0, 61)
    for y in (0.0, 0.3, 0.5, 1.0):
        g = lk.sigmoid_binary_cross_entropy.grad(z, np.full_like(z, y), reduction="sum")
        np.testing.assert_allclose(g, 1.0 / (1.0 + np.exp(-z)) - y, rtol=0, atol=1e-15)


def test_training_the_bias_is_a_different_protocol():
    # z = w + b then moves by 2 eta dL/dz per update: fewer updates than the digest's counts
    mse_b, ce_b = saturation("mse", train_bias=True), saturation("cross_entropy", train_bias=True)
    assert mse_b.updates < 287 and ce_b.updates < 53
    s = mse_b.trajectory[0]
    assert s.b_next == pytest.approx(-0.2 * 0.036, abs=1e-15)


@pytest.mark.parametrize("bad, match", [
    (dict(loss="hinge"), "loss"),
    (dict(lr=0.0), "lr"),
    (dict(threshold=-1.0), "threshold"),
    (dict(y=1.5), "y"),
    (dict(max_steps=-1), "max_steps"),
    (dict(w0=float("inf")), "w0"),
])
def test_bad_arguments_are_named(bad, match):
    loss = bad.pop("loss", "mse")
    with pytest.raises(ValueError, match=match):
        saturation(loss, **bad)


def test_accuracy_is_flat_while_the_loss_moves():
    r = accuracy_vs_loss()
    assert r.correct_before == r.correct_after
    assert r.accuracy_slope == 0.0
    assert r.loss_after != r.loss_before and r.loss_slope != 0.0


# --------------------------------------------------------------------------- torch float64
def _torch_replay(loss, *, train_bias, w0=LN9, b0=0.0, x=1.0, y=0.5, lr=0.2, threshold=1e-3,
                  max_steps=10_000):
    """The same neuron trained with torch float64 autograd (no losskit)."""
    torch = pytest.importorskip("torch")
    f64 = torch.float64
    w, b = torch.tensor(w0, dtype=f64), torch.tensor(b0, dtype=f64)
    target = torch.tensor(y, dtype=f64)
    steps = []
    while len(steps) <= max_steps:
        wt, bt = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
        z = wt * x + bt
        a = torch.sigmoid(z)
        mse = 0.5 * (a - target) ** 2
        if mse.item() < threshold:
            break
        if loss == "mse":
            value = mse
        else:
            value = torch.nn.functional.binary_cross_entropy_with_logits(z, target)
        value.backward()
        steps.append(dict(w=w.item(), b=b.item(), a=a.item(), loss=value.item(),
                          mse=mse.item(), grad=wt.grad.item(), grad_b=bt.grad.item()))
        with torch.no_grad():
            w = w - lr * wt.grad
            if train_bias:
                b = b - lr * bt.grad
    return steps


@pytest.mark.parametrize("train_bias", [False, True])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_one_step_matches_torch_autograd(loss, train_bias):
    # one full step: forward values, dL/dw, dL/db and the updated parameters
    ref = _torch_replay(loss, train_bias=train_bias, max_steps=1)
    s = saturation(loss, train_bias=train_bias, max_steps=1).trajectory[0]
    r = ref[0]
    for key in ("w", "b", "a", "loss", "mse", "grad", "grad_b"):
        assert getattr(s, key) == pytest.approx(r[key], rel=1e-14, abs=1e-16), key
    assert s.w_next == pytest.approx(r["w"] - 0.2 * r["grad"], rel=1e-14)
    assert s.b_next == pytest.approx(r["b"] - 0.2 * r["grad_b"] if train_bias else 0.0,
                                     abs=1e-16)


@pytest.mark.parametrize("train_bias", [False, True])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_whole_trajectory_matches_torch_autograd(loss, train_bias):
    ref = _torch_replay(loss, train_bias=train_bias)
    res = saturation(loss, train_bias=train_bias)
    assert res.updates == len(ref)
    for s, r in zip(res.trajectory, ref):
        for key in ("w", "b", "a", "loss", "mse", "grad", "grad_b"):
            assert getattr(s, key) == pytest.approx(r[key], rel=1e-10, abs=1e-14), (s.step, key)


# --------------------------------------------------------------------------- digest checks
def test_every_digest_check_agrees_or_is_skipped():
    rows = digest.run_checks()
    assert len(rows) == len(digest.CHECKS)
    failed = [r for r in rows if r.ok is False]
    assert not failed, failed
    # the rows that need no optional module all ran
    for check, row in zip(digest.CHECKS, rows):
        if check.requires is None:
            assert row.ok is True, row
        label, source_says, computes, ok = row  # unpacks as a 4-tuple
        assert source_says == check.source_says


def test_digest_rows_quote_the_source():
    printed = {r.source_says for r in digest.run_checks()}
    # section 2: 3 and 34; section 3: the step-1 numbers and the counts; section 4: KL,
    # cross-entropy; section 5: ln 1000
    for number in ("3", "34", "0.9", "0.08", "0.036", "2.1900", "287", "53", "0.763",
                   "0.160", "1.7578", "0.3681", "0.51", "2.30", "6.90775..."):
        assert number in printed, number


def test_info_rows_when_info_exists():
    pytest.importorskip("losskit.info")
    rows = [r for c, r in zip(digest.CHECKS, digest.run_checks()) if c.requires]
    assert rows and all(r.ok is True for r in rows), rows


@pytest.mark.parametrize("source_says, computed, ok", [
    ("0.763", 0.76339, True),
    ("0.763", 0.7636, False),   # rounds to 0.764
    ("0.160", 0.15985, True),
    ("2.1900", 2.190025, True),
    ("2.30", 2.302585, True),
    ("6.90775...", math.log(1000), True),   # truncated: 6.9077552...
    ("6.90775...", 6.90774, False),
    ("6.90775...", 6.907761, False),
])
def test_compare_to_printed_precision(source_says, computed, ok):
    check = digest.Check("t", "t", source_says, lambda: computed)
    assert digest.compare(check, computed) is ok


def test_exact_checks_demand_equality():
    check = digest.Check("t", "t", "287", lambda: 287, exact=True)
    assert digest.compare(check, 287.0)
    assert not digest.compare(check, 287.4)
    assert not digest.compare(check, float("nan"))


def test_failures_errors_and_skips_are_reported():
    def boom():
        raise ValueError("no")

    checks = (
        digest.Check("t", "wrong", "1.5", lambda: 2.0),
        digest.Check("t", "raises", "1.5", boom),
        digest.Check("t", "missing", "1.5", lambda: 1.5, requires="losskit._no_such_module"),
    )
    wrong, raises, missing = digest.run_checks(checks)
    assert wrong.ok is False and wrong.losskit_computes == "2.000"
    assert raises.ok is False and "ValueError" in raises.losskit_computes
    assert missing.ok is None and "skipped" in missing.losskit_computes


# --------------------------------------------------------------------------- saturation: dL/dz
def test_saturation_gradients_limits():
    from losskit.lab.experiments import saturation_gradients

    g = saturation_gradients(np.linspace(-40.0, 40.0, 801))
    far = np.abs(g.z) >= 30
    for y in (0.0, 1.0):
        # MSE's gradient (a - y) a (1 - a) dies out wherever the sigmoid saturates ...
        assert np.all(np.abs(g.mse[y][far]) < 1e-12)
        # ... while cross-entropy's tends to a - y: -1 / +1 when confidently wrong
        np.testing.assert_allclose(g.cross_entropy[y][far], g.a[far] - y, atol=1e-15)
    assert g.cross_entropy[1.0][0] == pytest.approx(-1.0, abs=1e-12)   # z = -40, y = 1
    assert g.cross_entropy[0.0][-1] == pytest.approx(1.0, abs=1e-12)   # z = +40, y = 0
    # |(a - 1) a (1 - a)| = a (1 - a)^2 is at most 4/27 (at a = 1/3): MSE never pulls hard
    assert np.abs(g.mse[1.0]).max() <= 4 / 27 + 1e-12


def test_saturation_gradients_match_torch_autograd():
    from losskit.lab.experiments import saturation_gradients

    torch = pytest.importorskip("torch")
    z_np = np.linspace(-12.0, 12.0, 97)
    g = saturation_gradients(z_np)
    for y in (0.0, 1.0):
        z = torch.tensor(z_np, dtype=torch.float64, requires_grad=True)
        (0.5 * (torch.sigmoid(z) - y) ** 2).sum().backward()
        np.testing.assert_allclose(g.mse[y], z.grad.numpy(), rtol=1e-12, atol=1e-18)
        z = torch.tensor(z_np, dtype=torch.float64, requires_grad=True)
        target = torch.full_like(z, y)
        torch.nn.functional.binary_cross_entropy_with_logits(z, target,
                                                             reduction="sum").backward()
        np.testing.assert_allclose(g.cross_entropy[y], z.grad.numpy(), rtol=1e-12, atol=1e-18)


def test_saturation_gradients_errors():
    from losskit.lab.experiments import saturation_gradients

    with pytest.raises(ValueError, match="`z` must be 1-d"):
        saturation_gradients(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="`targets`"):
        saturation_gradients(targets=(2.0,))


# --------------------------------------------------------------------------- convexity
def test_convexity_along_the_true_logit():
    from losskit.lab.experiments import convexity

    r = convexity()
    t = r.t
    # closed forms with K = 3, true class 0, other logits 0 (derived by hand):
    # CE = log(e^t + 2) - t = log(1 + 2 e^-t);
    # MSE-on-softmax = (1 - p0)^2 + 2 (1/(e^t+2))^2 = 6 / (e^t + 2)^2
    np.testing.assert_allclose(r.ce, np.log1p(2.0 * np.exp(-t)), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(r.mse_softmax, 6.0 / (np.exp(t) + 2.0) ** 2, rtol=1e-12)
    # CE is convex: no negative second difference
    assert r.ce_second.min() >= -1e-9
    # MSE-on-softmax is not: its second derivative 3 q^2 (1-q)(2-3q), q = 2/(e^t+2),
    # is negative exactly where t < 0
    assert r.mse_second.min() < -0.1
    inner = r.t_inner
    assert np.all(r.mse_second[inner < -0.2] < 0) and np.all(r.mse_second[inner > 0.2] > 0)
    q = 2.0 / (np.exp(inner) + 2.0)
    np.testing.assert_allclose(r.mse_second, 3 * q**2 * (1 - q) * (2 - 3 * q), atol=2e-4)
    assert r.nonconvex_range() == pytest.approx((-7.95, -0.05))


def test_convexity_slopes_match_torch_autograd():
    from losskit.lab.experiments import convexity

    torch = pytest.importorskip("torch")
    base, direction = np.array([0.5, -1.0, 2.0, 0.0]), np.array([1.0, -2.0, 0.5, 0.3])
    t = np.linspace(-3.0, 3.0, 13)
    r = convexity(t, num_classes=4, label=2, base=base, direction=direction)
    tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
    z = torch.tensor(base)[None, :] + tt[:, None] * torch.tensor(direction)[None, :]
    labels = torch.full((13,), 2)
    ce = torch.nn.functional.cross_entropy(z, labels, reduction="none")
    mse = ((torch.softmax(z, 1) - torch.nn.functional.one_hot(labels, 4)) ** 2).sum(1)
    np.testing.assert_allclose(r.ce, ce.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(r.mse_softmax, mse.detach().numpy(), rtol=1e-12, atol=1e-16)
    (ce_slope,) = torch.autograd.grad(ce.sum(), tt, retain_graph=True)
    (mse_slope,) = torch.autograd.grad(mse.sum(), tt)
    np.testing.assert_allclose(r.ce_slope, ce_slope.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(r.mse_slope, mse_slope.numpy(), rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_cross_entropy_is_convex_on_random_lines(seed):
    from losskit.lab.experiments import convexity

    rng = np.random.default_rng(seed)
    r = convexity(np.linspace(-6, 6, 241), num_classes=5, label=int(rng.integers(5)),
                  base=rng.normal(size=5) * 2, direction=rng.normal(size=5))
    assert r.ce_second.min() >= -1e-8


@pytest.mark.parametrize("kwargs, match", [
    (dict(t=np.array([0.0, 1.0])), "at least 3 points"),
    (dict(t=np.array([0.0, 1.0, 3.0])), "evenly spaced"),
    (dict(num_classes=1), "`num_classes` must be an int >= 2"),
    (dict(label=3), r"`label` must be a class index in \[0, 2\]"),
    (dict(base=np.zeros(4)), r"`base` must have shape \(3,\)"),
    (dict(direction=np.zeros(3)), "zero vector"),
])
def test_convexity_errors(kwargs, match):
    from losskit.lab.experiments import convexity

    with pytest.raises(ValueError, match=match):
        convexity(**kwargs)


# --------------------------------------------------------------------------- compare
def test_compare_losses_on_a_digits_subset():
    pytest.importorskip("sklearn")
    from losskit.lab.experiments import compare_losses
    from losskit.lab.training import TRAIN_LOSSES

    hs = compare_losses(subset=400, epochs=3)
    assert tuple(hs) == TRAIN_LOSSES
    for h in hs.values():
        assert h.epochs == 3 and len(h.test_accuracy) == 4
        assert all(math.isfinite(v) for v in h.train_loss)
        assert h.test_accuracy[-1] > h.test_accuracy[0]   # each loss learns something
    with pytest.raises(ValueError, match="`losses` must be one of"):
        compare_losses(subset=100, epochs=1, losses=["huber"])


def test_boosting_focal_against_lightgbm_builtin_log_loss():
    """The log-loss arm trains LightGBM's own ``binary`` model (the independent reference,
    from a raw score of 0); focal loss with gamma 0 is log loss, so its arm is the same."""
    lgb = pytest.importorskip("lightgbm")
    from sklearn.datasets import make_classification
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import train_test_split

    from losskit.lab.experiments import boosting_focal

    kw = dict(rounds=30, every=10, n_samples=3000, positives=0.1, seed=1, threads=1)
    r = boosting_focal(gamma=2.0, **kw)
    assert list(r.rounds) == [10, 20, 30]
    for table in (r.average_precision, r.roc_auc):
        for v in table.values():
            assert v.shape == (3,) and np.all((v > 0) & (v <= 1))
    X, y = make_classification(n_samples=3000, n_features=20, n_informative=6,
                               weights=[0.9], flip_y=0.01, class_sep=0.8, random_state=1)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=1, stratify=y)
    ref = lgb.train({"objective": "binary", "boost_from_average": False, "num_leaves": 15,
                     "learning_rate": 0.05, "num_threads": 1, "seed": 1, "verbose": -1,
                     "deterministic": True}, lgb.Dataset(Xtr, label=ytr), 30)
    expect = [average_precision_score(yte, ref.predict(Xte, raw_score=True,
                                                       num_iteration=k))
              for k in (10, 20, 30)]
    np.testing.assert_allclose(r.average_precision["log loss"], expect, rtol=1e-12)
    assert not np.allclose(r.log_loss["focal"], r.log_loss["log loss"])
    r0 = boosting_focal(gamma=0.0, **kw)
    np.testing.assert_allclose(r0.log_loss["focal"], r0.log_loss["log loss"], rtol=1e-9)
