"""losskit.doctor: findings on synthetic training curves whose diagnosis is known.

Every curve here is built so that its story is known in advance (an exponential decay,
a NaN at a chosen step, exponential growth from a chosen step, a plateau at ln K, a
U-shaped validation loss with its minimum at a chosen step), and the expected numbers
come from that construction or from mathematics (ln 10 = 2.302585..., ln 1000 =
6.907755...), never from losskit.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from losskit.doctor import CODES, DoctorReport, Finding, doctor

SETTINGS = settings(max_examples=60, deadline=None)
T = np.arange(200)


def decay(n=200, start=2.3, end=0.1, tau=40.0):
    t = np.arange(n)
    return (start - end) * np.exp(-t / tau) + end


def noisy(x, rel, seed):
    return x * np.exp(np.random.default_rng(seed).normal(0.0, rel, size=x.shape))


# ----------------------------------------------------------------------- healthy
@pytest.mark.parametrize("noise", [0.0, 0.02, 0.1])
@pytest.mark.parametrize("seed", [0, 1])
def test_healthy_decay_has_no_findings(noise, seed):
    report = doctor(noisy(decay(), noise, seed))
    assert report.healthy and report.ok and bool(report)
    assert report.codes == () and len(report) == 0 and list(report) == []
    assert "healthy" in str(report)


def test_healthy_classifier_from_chance_is_not_stuck():
    # starts at ln 10 (a uniform guess) and learns: the textbook curve
    report = doctor(noisy(decay(start=math.log(10)), 0.03, 2), num_classes=10)
    assert report.healthy


def test_healthy_train_and_validation():
    train = noisy(decay(), 0.05, 3)
    val = noisy(decay(start=2.4, end=0.3), 0.05, 4)
    assert doctor(train, val_losses=val).healthy


# ----------------------------------------------------------------------- non-finite
def test_nan_at_step_37():
    x = decay()
    x[37:] = np.nan
    report = doctor(x)
    first = report[0]
    assert first.code == "non_finite" and first.level == "error" and first.step == 37
    assert not report.ok and not bool(report)
    assert "nan" in first.message and "37" in first.message
    assert "learning rate" in first.advice


def test_single_nan_and_inf_are_found():
    x = decay()
    x[37] = np.nan
    x[90] = np.inf
    report = doctor(x)
    assert report.codes[0] == "non_finite" and report[0].step == 37
    assert "first of 2" in report[0].message
    y = decay()
    y[120] = np.inf
    f = doctor(y)[0]
    assert f.step == 120 and "+inf" in f.message


def test_non_finite_validation_loss():
    val = decay(start=2.4, end=0.3)
    val[50] = np.nan
    report = doctor(decay(), val_losses=val)
    assert report.codes == ("non_finite",)
    assert "validation" in report[0].message and report[0].step == 50


# ----------------------------------------------------------------------- divergence
def test_divergence_after_a_good_start():
    # decays for 60 steps, then grows by 10% per step
    x = decay()
    x[60:] = x[60] * 1.1 ** np.arange(140)
    report = doctor(noisy(x, 0.02, 5))
    assert report.codes[0] == "diverging"
    f = report[0]
    assert f.level == "error" and not report.ok
    assert 52 <= f.step <= 68, f.step  # where it starts rising
    assert "learning rate" in f.advice and "clipping" in f.advice


def test_divergence_from_the_start():
    x = np.exp(0.05 * T)
    f = doctor(x)[0]
    assert f.code == "diverging" and f.step <= 5


def test_divergence_to_infinity():
    x = 1.0 * 1.5 ** np.arange(100, dtype=float)
    with np.errstate(over="ignore"):
        x[80:] = np.inf
    report = doctor(x)
    # errors in the order they happened: the rise first, then the overflow
    assert report.codes == ("diverging", "non_finite")
    assert report[0].step <= 5 and report[1].step == 80
    assert "non-finite" in report[0].message and "+inf" in report[1].message


def test_rebound_without_divergence_is_a_warning():
    # 2.3 -> 0.1 in 100 steps, then linearly back up to 1.5 (below 2x the start)
    x = np.concatenate([decay(100, tau=15.0), np.linspace(0.1, 1.5, 100)])
    report = doctor(x)
    assert report.codes == ("rising",)
    assert report.ok  # warnings only
    assert 90 <= report[0].step <= 110


# ----------------------------------------------------------------------- chance level
def test_stuck_at_ln_10():
    x = math.log(10) + np.random.default_rng(6).normal(0.0, 0.05, size=200)
    report = doctor(x, num_classes=10)
    assert report.codes == ("stuck_at_chance",)
    f = report[0]
    assert f.level == "error" and f.step <= 10
    assert not report.ok and not report.healthy and report.verdict == "failed"
    assert "2.3026" in f.message  # ln 10 = 2.302585...
    assert "learning rate" in f.advice and "initialisation" in f.advice


def test_stuck_at_chance_needs_num_classes():
    x = math.log(10) + np.random.default_rng(6).normal(0.0, 0.05, size=200)
    assert doctor(x).codes == ("not_decreasing",)
    assert "stuck_at_chance" not in doctor(x, num_classes=100)  # ln 100 = 4.6


def test_stuck_at_ln_1000_imagenet():
    x = 6.907755 + np.random.default_rng(7).normal(0.0, 0.1, size=500)
    f = doctor(x, num_classes=1000)[0]
    assert f.code == "stuck_at_chance" and "6.9078" in f.message


def test_stuck_after_an_initial_drop():
    # starts badly initialised at 8, falls to ln 10 by step ~60, then stays there
    x = (8 - math.log(10)) * np.exp(-T / 12.0) + math.log(10)
    report = doctor(noisy(x, 0.01, 8), num_classes=10)
    assert report.codes == ("stuck_at_chance",)
    assert 30 <= report[0].step <= 80


def _falls_then_stays(level, n=2000, plateau_from=200, start=4.0, rel_noise=0.002, seed=0):
    """Falls from ``start`` to ``level`` by step ``plateau_from``, then stays there."""
    t = np.arange(n)
    x = (start - level) * np.exp(-t / (plateau_from / 8.0)) + level  # e^-8: there by then
    return x * (1.0 + rel_noise * np.random.default_rng(seed).normal(size=n))


def test_stuck_at_chance_for_most_of_the_run_fails_the_check():
    # the curve: falls to ln 10 and stays there for 1800 of 2000 steps
    x = _falls_then_stays(math.log(10))
    report = doctor(x, num_classes=10)
    assert report.codes == ("stuck_at_chance",)
    f = report[0]
    assert f.level == "error" and not report.ok and not bool(report)
    # it enters the 5% band when (4 - ln 10) e^{-t/25} = 0.05 ln 10: t = 67.3
    t_in = 25.0 * math.log((4.0 - math.log(10)) / (0.05 * math.log(10)))
    assert abs(f.step - t_in) <= 15, (f.step, t_in)
    assert "2.3026" in f.message  # ln 10 = 2.302585...
    d = report.to_dict()
    assert d["ok"] is False and d["verdict"] == "failed"
    assert d["findings"][0]["num_classes"] == 10


@pytest.mark.parametrize("k", [2, 3, 10, 100])
def test_stuck_at_chance_without_num_classes_names_k(k):
    # no num_classes: a long plateau at ln K for a small K is reported with that K
    x = _falls_then_stays(math.log(k), start=math.log(k) + 2.0, rel_noise=1e-5)
    report = doctor(x)
    assert report.codes == ("stuck_at_chance",), str(report)
    f = report[0]
    assert f.level == "error" and not report.ok
    assert f.num_classes == k and f.to_dict()["num_classes"] == k
    assert f"{k} classes" in f.message and f"ln {k} = {math.log(k):.5g}" in f.message
    assert "likely" in f.message


def test_stuck_at_ln_2_exactly_without_num_classes():
    # a binary classifier predicting 1/2 everywhere: the loss is exactly ln 2
    report = doctor(np.concatenate([np.linspace(1.5, math.log(2), 50),
                                    np.full(450, math.log(2))]))
    assert report.codes == ("stuck_at_chance",) and report[0].num_classes == 2


@pytest.mark.parametrize("level", [math.log(10.5), math.log(3.5), 0.5, 1.5, 3.0])
def test_plateau_away_from_any_ln_k_is_not_a_chance_guess(level):
    # halfway between ln 10 and ln 11 (and other levels that are no ln K): no guess
    x = _falls_then_stays(level, start=level + 2.0, rel_noise=1e-5)
    assert "stuck_at_chance" not in doctor(x)


def test_falling_through_ln_k_without_num_classes_is_not_stuck():
    # a slow steady decline across ln 3 = 1.0986 in its second half: still learning
    i = np.arange(2000)
    x = math.log(3) + (1500 - i) * 1e-4  # the median of the last half is ln 3
    y = math.log(3) + (1750 - i) * 1e-4  # the median of the last quarter is ln 3
    assert abs(np.median(x[1000:]) - math.log(3)) < 1e-4
    assert abs(np.median(y[1500:]) - math.log(3)) < 1e-4
    for curve in (x, y):
        assert "stuck_at_chance" not in doctor(curve)
    # and a healthy decay from ln 10 through every ln K down to 0.1
    assert doctor(decay(2000, start=math.log(10), tau=300.0)).healthy


def test_passing_through_chance_is_not_stuck():
    # a steady decline from 4 to 2 crosses ln 10 = 2.30 in its last quarter, whose
    # median (2.25) lies in the 5% band: it is still learning, not stuck
    x = np.linspace(4.0, 2.0, 200)
    assert np.abs(np.median(x[150:]) - math.log(10)) < 0.05 * math.log(10)
    assert doctor(x, num_classes=10).healthy


def test_chance_tolerance_is_relative():
    x = np.full(100, 1.06 * math.log(10))  # 6% above ln 10
    assert "stuck_at_chance" not in doctor(x, num_classes=10)
    assert "stuck_at_chance" in doctor(x, num_classes=10, chance_tolerance=0.07)


# ----------------------------------------------------------------------- no progress
def test_flat_curve_is_not_decreasing():
    report = doctor(np.ones(100))
    assert report.codes == ("not_decreasing",)
    assert report[0].step == 0 and report[0].level == "warning" and report.ok


def test_slowly_rising_curve_is_not_decreasing():
    report = doctor(np.linspace(1.0, 1.5, 100))  # rises, but not to 2x the start
    assert report.codes == ("not_decreasing",)
    assert "rose" in report[0].message


def test_min_decrease_threshold():
    x = np.linspace(1.0, 0.96, 100)  # 4% decrease
    assert doctor(x).codes == ("not_decreasing",)
    assert doctor(x, min_decrease=0.03).healthy


# ----------------------------------------------------------------------- overfitting
def _u_shaped(n=200, minimum=60):
    t = np.arange(n)
    return 0.6 + 0.00015 * (t - minimum) ** 2


def test_overfitting_at_the_validation_minimum():
    train = noisy(decay(), 0.03, 9)
    val = noisy(_u_shaped(), 0.03, 10)
    report = doctor(train, val_losses=val)
    assert report.codes == ("overfitting",)
    f = report[0]
    assert f.level == "warning" and 52 <= f.step <= 68, f.step
    assert "early stopping" in f.advice and "regularisation" in f.advice
    assert report.ok  # a warning, not an error


def test_messages_quote_the_raw_values_beside_the_medians():
    """The smoothed levels are what the rules use; the messages also give the raw numbers
    a reader finds in the history: the exact minimum of a noiseless U (0.6 at step 60) and
    the first value of an exploding curve (2.3 e^0 = 2.3)."""
    t = np.arange(200)
    train = 2.3 * np.exp(-t / 30.0) + 0.01
    (f,) = doctor(train, val_losses=_u_shaped())
    assert f.code == "overfitting" and "its lowest value 0.6)" in f.message
    (g,) = doctor(2.3 * np.exp(t / 20.0))
    assert g.code == "diverging" and "its first value was 2.3)" in g.message


def test_slow_learning_near_chance_is_not_called_no_learning():
    rng = np.random.default_rng(12)
    flat = np.log(10) + rng.normal(0, 0.01, 400)
    (f,) = doctor(flat, num_classes=10)
    assert f.code == "stuck_at_chance" and "no sign of learning" in f.message
    falling = np.linspace(np.log(10), 2.22, 400) + rng.normal(0, 0.01, 400)
    (g,) = doctor(falling, num_classes=10)
    assert g.code == "stuck_at_chance"
    assert "falling only slowly" in g.message and "no sign of learning" not in g.message


def test_no_overfitting_when_training_loss_also_rises():
    val = _u_shaped()
    train = val - 0.1  # train follows val: no gap opening
    assert "overfitting" not in doctor(train, val_losses=val)


def test_overfitting_with_validation_logged_less_often():
    train = decay(1000, tau=200.0)
    vsteps = np.arange(0, 1000, 25)  # 40 validation points
    val = 0.6 + 1.5e-6 * (vsteps - 300) ** 2
    report = doctor(train, val_losses=val, val_steps=vsteps)
    assert report.codes == ("overfitting",)
    assert 250 <= report[0].step <= 350 and report[0].step % 25 == 0


def test_noisy_plateaus_raise_no_false_alarms():
    # healthy runs that converge early and then only fluctuate: a validation minimum
    # picked out of noise, or noise at the end, must not read as overfitting or rising
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        n = int(rng.choice([30, 60, 100]))
        tau = n / 15
        train = noisy(decay(n, start=2.0, end=0.1, tau=tau), 0.08, seed)
        val = noisy(decay(n, start=2.1, end=0.3, tau=tau), 0.08, 1000 + seed)
        report = doctor(train, val_losses=val)
        assert report.healthy, (seed, str(report))


# ----------------------------------------------------------------------- steps
def test_steps_map_indices_to_user_steps():
    x = decay()
    x[37:] = np.nan
    report = doctor(x, steps=1000 + 10 * T)
    assert report[0].step == 1370
    assert isinstance(report[0].step, int)
    train = noisy(decay(), 0.03, 9)
    val = noisy(_u_shaped(), 0.03, 10)
    plain = doctor(train, val_losses=val)[0].step
    assert doctor(train, val_losses=val, steps=T * 0.5)[0].step == plain * 0.5


# ----------------------------------------------------------------------- report object
def test_report_interface():
    x = decay()
    x[150:] = np.nan
    val = noisy(_u_shaped(), 0.03, 10)
    report = doctor(noisy(decay(), 0.03, 9) * np.where(np.isnan(x), np.nan, 1.0),
                    val_losses=val)
    assert isinstance(report, DoctorReport)
    assert report.codes == ("non_finite", "overfitting")
    assert "non_finite" in report and "diverging" not in report
    assert [f.code for f in report] == list(report.codes)
    assert report.errors == (report[0],) and report.warnings == (report[1],)
    assert all(isinstance(f, Finding) for f in report)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report[0].step = 3
    text = str(report)
    assert "1 error, 1 warning" in text and "[error] non_finite at step 150" in text
    assert "advice:" in text
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is False and d["num_points"] == 200 and d["num_val_points"] == 200
    assert [f["code"] for f in d["findings"]] == ["non_finite", "overfitting"]
    assert d["findings"][0]["step"] == 150
    assert repr(report) == "DoctorReport(ok=False, codes=('non_finite', 'overfitting'))"


def test_inputs_from_other_libraries_and_lists():
    torch = pytest.importorskip("torch")
    x = torch.ones(50, dtype=torch.float32)
    assert doctor(x).codes == ("not_decreasing",)
    assert doctor([2.0, 1.5, 1.0, 0.8, 0.7, 0.65]).healthy
    # losses.append(loss) without .item(): 0-d tensors that still require grad
    w = torch.tensor(1.0, requires_grad=True)
    history = [w * v for v in (2.0, 2.0, 2.0, 2.0, 2.0, 2.0)]
    assert doctor(history).codes == ("not_decreasing",)
    assert doctor(np.array([3, 2, 1, 1, 1], dtype=np.int64)).healthy


@pytest.mark.parametrize("n, window", [(5, 1), (8, 1), (9, 3), (100, 5), (200, 11),
                                       (1000, 51), (5000, 101)])
def test_automatic_window_follows_the_documented_rule(n, window):
    # ``n // 20`` made odd, between 3 and 101; 1 below 9 values
    assert doctor(np.linspace(2.0, 1.0, n)).window == window
    assert doctor(np.linspace(2.0, 1.0, n), window=7).window == 7


def test_noise_estimate_ignores_trends():
    from losskit.doctor import _noise

    rng = np.random.default_rng(11)
    line = np.linspace(5.0, 1.0, 20000)
    assert _noise(line) < 1e-12
    est = _noise(line + rng.normal(0.0, 0.3, size=line.size))
    assert abs(est - 0.3) < 0.02  # the standard deviation of the noise


def test_short_curves_only_get_the_non_finite_check():
    short = doctor([1.0, 1.0, 1.0])  # too short to call flat: not judged, not healthy
    assert short.codes == () and short.verdict == "too_short"
    assert not short.healthy and not short.ok
    nan = doctor([1.0, math.nan])
    assert nan.codes == ("non_finite",) and nan.verdict == "failed"
    assert doctor([1.0, 1.0, 1.0], min_length=3).codes == ("not_decreasing",)


@pytest.mark.parametrize("curve", [[2.3], [], np.array([0.7]), [5.0, 4.0]])
def test_one_point_and_empty_histories_are_too_short_to_judge(curve):
    report = doctor(curve, num_classes=10)
    assert report.codes == () and report.verdict == "too_short"
    assert not report.healthy and not report.ok and not bool(report)
    text = str(report)
    assert "too short to judge" in text and "healthy" not in text
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is False and d["healthy"] is False and d["verdict"] == "too_short"
    assert d["num_points"] == len(curve)


def test_verdicts():
    assert doctor(decay()).verdict == "healthy"
    assert doctor(np.ones(100)).verdict == "warnings"  # not_decreasing: ok, not healthy
    assert doctor(np.ones(100)).ok
    x = decay()
    x[40] = np.nan
    assert doctor(x).verdict == "failed"


# ----------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(train_losses=np.ones((3, 4))), ValueError, r"`train_losses` must be 1-D.*\(3, 4\)"),
    (dict(train_losses=1.0), ValueError, "`train_losses` must be 1-D"),
    (dict(train_losses="1,2,3"), TypeError, "`train_losses`"),
    (dict(train_losses=["a", "b"]), TypeError, "`train_losses`"),
    (dict(train_losses=[True, False]), TypeError, "`train_losses`.*booleans"),
    (dict(train_losses=[1 + 1j, 2j]), TypeError, "`train_losses`"),
    (dict(train_losses=[1.0, None]), TypeError, "`train_losses`"),
    (dict(val_losses=np.ones(7)), ValueError, "val_steps="),
    (dict(val_losses=np.ones((10, 1))), ValueError, "`val_losses` must be 1-D"),
    (dict(val_losses=np.ones(3), val_steps=[0, 1]), ValueError, "`val_steps`"),
    (dict(val_steps=[0, 1]), ValueError, "`val_steps`"),
    (dict(steps=np.arange(9)), ValueError, "`steps`.*10"),
    (dict(steps=[0, 1, 2, 3, 3, 5, 6, 7, 8, 9]), ValueError, "`steps` must be strictly"),
    (dict(steps=[0, 1, 2, 3, 4, 5, 6, 7, 8, math.nan]), ValueError, "`steps`"),
    (dict(num_classes=1), ValueError, "`num_classes` must be >= 2"),
    (dict(num_classes=2.5), TypeError, "`num_classes`"),
    (dict(num_classes=True), TypeError, "`num_classes`"),
    (dict(window=0), ValueError, "`window`"),
    (dict(window=2.0), TypeError, "`window`"),
    (dict(min_length=1), ValueError, "`min_length`"),
    (dict(chance_tolerance=0.0), ValueError, "`chance_tolerance`"),
    (dict(chance_tolerance=1.5), ValueError, "`chance_tolerance`"),
    (dict(diverge_factor=1.0), ValueError, "`diverge_factor`"),
    (dict(rebound_fraction=0.0), ValueError, "`rebound_fraction`"),
    (dict(min_decrease=-0.1), ValueError, "`min_decrease`"),
    (dict(overfit_tolerance="a"), TypeError, "`overfit_tolerance`"),
])
def test_errors(kwargs, exc, pattern):
    kwargs = {"train_losses": np.linspace(2.0, 1.0, 10), **kwargs}
    train = kwargs.pop("train_losses")
    with pytest.raises(exc, match=pattern):
        doctor(train, **kwargs)


def test_val_losses_of_the_same_length_need_no_steps():
    assert doctor(np.linspace(2, 1, 10), val_losses=np.linspace(2.1, 1.2, 10)).healthy


# ----------------------------------------------------------------------- properties
@SETTINGS
@given(start=st.floats(1e-3, 1e3),
       ratios=st.lists(st.floats(1e-3, 0.3), min_size=1, max_size=300))
def test_strictly_decreasing_curves_have_no_errors(start, ratios):
    x = start * np.cumprod(np.concatenate([[1.0], 1.0 - np.asarray(ratios)]))
    if x[-1] > 0.9 * x[0]:  # at least a 10% drop
        x = x * np.linspace(1.0, 0.9, x.size) ** 2  # still strictly decreasing
    assert np.all(np.diff(x) < 0) and np.all(x > 0)
    report = doctor(x)
    assert not report.errors, str(report)
    # fewer than min_length = 5 points: too short to judge, else ok
    assert report.verdict == "too_short" if x.size < 5 else report.ok, str(report)
    assert not set(report.codes) & {"diverging", "rising", "non_finite"}


@SETTINGS
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=120),
       k=st.integers(-8, 8), num_classes=st.none() | st.integers(2, 1000))
def test_findings_are_well_formed_and_scale_free(values, k, num_classes):
    x = np.asarray(values)
    report = doctor(x, num_classes=num_classes)
    for f in report:
        assert f.code in CODES and f.level in ("error", "warning")
        assert f.step in range(x.size)
        assert f.message and f.advice
    json.dumps(report.to_dict())
    levels = [f.level for f in report]
    assert levels == sorted(levels)  # errors ("error" < "warning") first
    if num_classes is None:
        # multiplying by a power of two is exact in floating point: same diagnosis,
        # except a level at ln K (an absolute number: chance), which scaling moves
        scaled = doctor(x * 2.0 ** k)
        if "stuck_at_chance" not in report and "stuck_at_chance" not in scaled:
            assert [(f.code, f.step) for f in scaled] == \
                [(f.code, f.step) for f in report]
            assert scaled.verdict == report.verdict
