"""losskit.gbdt: custom objectives that train the same models as the libraries' built-in
objectives (XGBoost, LightGBM, CatBoost) on scikit-learn datasets, the Hessian conventions,
the metrics, and the errors. The built-in objectives are the independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest

import losskit as lk
from losskit import gbdt

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
datasets = pytest.importorskip("sklearn.datasets")

ROUNDS = 10
# CatBoost tries to compile Python objectives with numba and says when it cannot
pytestmark = pytest.mark.filterwarnings("ignore:Can't optimze method")


@pytest.fixture(scope="module")
def data():
    Xb, yb = datasets.load_breast_cancer(return_X_y=True)
    Xr, yr = datasets.load_diabetes(return_X_y=True)
    Xm, ym = datasets.load_iris(return_X_y=True)
    return {"binary": (Xb, yb), "regression": (Xr, yr), "positive": (Xr, yr / 100.0),
            "counts": (Xr, np.round(yr / 50.0)), "multiclass": (Xm, ym)}


# ------------------------------------------------------------------------------ XGBoost
XGB_COMMON = {"tree_method": "hist", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}

# (built-in objective and its parameters, data, losskit loss and objective options,
#  base_score of the built-in run (a probability or a mean: XGBoost maps it to a margin
#  by the objective's link) and of the custom run (a raw margin: no link))
XGB_CASES = {
    "binary:logistic": ({"objective": "binary:logistic"}, "binary",
                        ("sigmoid_binary_cross_entropy", {"convention": "xgboost"}), 0.5, 0.0),
    "reg:squarederror": ({"objective": "reg:squarederror"}, "regression", ("l2_loss", {}),
                         0.0, 0.0),
    "reg:pseudohubererror": ({"objective": "reg:pseudohubererror", "huber_slope": 0.5},
                             "positive", ("pseudo_huber", {"delta": 0.5}), 0.0, 0.0),
    "count:poisson": ({"objective": "count:poisson", "max_delta_step": 0.0}, "counts",
                      ("poisson_nll", {}), 1.0, 0.0),
    "reg:tweedie": ({"objective": "reg:tweedie", "tweedie_variance_power": 1.5}, "counts",
                    ("tweedie_deviance", {"power": 1.5}), 1.0, 0.0),
    "reg:gamma": ({"objective": "reg:gamma"}, "positive", ("gamma_deviance", {}), 1.0, 0.0),
    "multi:softprob": ({"objective": "multi:softprob", "num_class": 3}, "multiclass",
                       ("softmax_cross_entropy", {"convention": "xgboost"}), 0.5, 0.5),
}


def _xgb_pair(builtin, custom_obj, base_b, base_c, X, y, weight=None):
    d = xgb.DMatrix(X, label=y, weight=weight)
    params = {**XGB_COMMON, **builtin}
    b = xgb.train({**params, "base_score": base_b}, d, ROUNDS)
    c_params = {k: v for k, v in params.items() if k != "objective"}
    c = xgb.train({**c_params, "base_score": base_c, "disable_default_eval_metric": 1}, d,
                  ROUNDS, obj=custom_obj)
    return b.predict(d, output_margin=True), c.predict(d, output_margin=True)


@pytest.mark.parametrize("name", list(XGB_CASES))
def test_xgboost_objective_trains_the_builtin_model(data, name):
    builtin, which, (loss, opts), base_b, base_c = XGB_CASES[name]
    X, y = data[which]
    pb, pc = _xgb_pair(builtin, gbdt.xgboost_objective(loss, **opts), base_b, base_c, X, y)
    assert np.ptp(pb) > 0.5  # the model learned something
    # XGBoost keeps margins in float32: equal to its rounding
    np.testing.assert_allclose(pc, pb, rtol=0, atol=1e-6)


def test_xgboost_sample_weights_and_poisson_max_delta_step(data):
    X, y = data["binary"]
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    obj = gbdt.xgboost_objective("sigmoid_binary_cross_entropy", convention="xgboost")
    pb, pc = _xgb_pair({"objective": "binary:logistic"}, obj, 0.5, 0.0, X, y, weight=w)
    np.testing.assert_allclose(pc, pb, rtol=0, atol=1e-6)
    # count:poisson's max_delta_step 0.7 (its default) scales the Hessian by e^0.7 (and,
    # as a booster parameter, bounds the leaf values of both runs)
    X, y = data["counts"]
    obj = gbdt.xgboost_objective("poisson_nll", hessian_scale=math.exp(0.7))
    pb, pc = _xgb_pair({"objective": "count:poisson", "max_delta_step": 0.7}, obj, 1.0, 0.0,
                       X, y)
    np.testing.assert_allclose(pc, pb, rtol=0, atol=1e-6)


def test_xgboost_sklearn_estimator_with_objective_and_metric(data):
    X, y = data["binary"]
    obj = gbdt.xgboost_objective("sigmoid_binary_cross_entropy", convention="xgboost")
    metric = gbdt.xgboost_metric("sigmoid_binary_cross_entropy")
    common = dict(n_estimators=ROUNDS, max_depth=3, learning_rate=0.3, n_jobs=1,
                  random_state=0, tree_method="hist")
    ref = xgb.XGBClassifier(objective="binary:logistic", base_score=0.5,
                            eval_metric="logloss", **common)
    ref.fit(X, y, eval_set=[(X, y)], verbose=False)
    mine = xgb.XGBRegressor(objective=obj, base_score=0.0, eval_metric=metric, **common)
    mine.fit(X, y, eval_set=[(X, y)], verbose=False)
    margin_ref = ref.predict(X, output_margin=True)
    np.testing.assert_allclose(mine.predict(X, output_margin=True), margin_ref, atol=1e-6)
    # the metric (mean log loss of the margins) follows XGBoost's logloss of probabilities
    ours = mine.evals_result()["validation_0"]["sigmoid_binary_cross_entropy"]
    theirs = ref.evals_result()["validation_0"]["logloss"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


# ----------------------------------------------------------------------------- LightGBM
LGB_COMMON = {"num_leaves": 8, "learning_rate": 0.3, "num_threads": 1, "seed": 0,
              "verbose": -1, "boost_from_average": False, "deterministic": True}

LGB_CASES = {
    "binary": ({"objective": "binary"}, "binary",
               ("sigmoid_binary_cross_entropy", {})),
    "regression": ({"objective": "regression"}, "regression", ("l2_loss", {})),
    "poisson": ({"objective": "poisson", "poisson_max_delta_step": 0.7}, "counts",
                ("poisson_nll", {"hessian_scale": math.exp(0.7)})),
    "tweedie": ({"objective": "tweedie", "tweedie_variance_power": 1.5}, "counts",
                ("tweedie_deviance", {"power": 1.5})),
    "multiclass": ({"objective": "multiclass", "num_class": 3}, "multiclass",
                   ("softmax_cross_entropy", {"convention": "lightgbm"})),
}


def _lgb_pair(builtin, custom_obj, X, y, weight=None):
    b = lgb.train({**LGB_COMMON, **builtin}, lgb.Dataset(X, label=y, weight=weight), ROUNDS)
    c = lgb.train({**LGB_COMMON, **builtin, "objective": custom_obj},
                  lgb.Dataset(X, label=y, weight=weight), ROUNDS)
    return b.predict(X, raw_score=True), c.predict(X, raw_score=True)


@pytest.mark.parametrize("name", list(LGB_CASES))
def test_lightgbm_objective_trains_the_builtin_model(data, name):
    builtin, which, (loss, opts) = LGB_CASES[name]
    X, y = data[which]
    pb, pc = _lgb_pair(builtin, gbdt.lightgbm_objective(loss, **opts), X, y)
    assert np.ptp(pb) > 0.5
    np.testing.assert_allclose(pc, pb, rtol=0, atol=1e-6)


def test_lightgbm_weights_estimator_and_metric(data):
    X, y = data["binary"]
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y))
    pb, pc = _lgb_pair({"objective": "binary"},
                       gbdt.lightgbm_objective("sigmoid_binary_cross_entropy"), X, y, w)
    np.testing.assert_allclose(pc, pb, rtol=0, atol=1e-6)
    # the scikit-learn estimator: objective(y_true, y_pred, weight) and eval_metric
    est = lgb.LGBMRegressor(objective=gbdt.lightgbm_objective("sigmoid_binary_cross_entropy"),
                            n_estimators=ROUNDS, num_leaves=8, learning_rate=0.3, n_jobs=1,
                            random_state=0, verbose=-1, boost_from_average=False,
                            deterministic=True)
    est.fit(X, y, sample_weight=w, eval_set=[(X, y)], eval_sample_weight=[w],
            eval_metric=gbdt.lightgbm_metric("sigmoid_binary_cross_entropy"))
    np.testing.assert_allclose(est.predict(X, raw_score=True), pb, atol=1e-6)
    # the metric is the weighted mean log loss, written out
    z = est.predict(X, raw_score=True)
    expect = np.sum(w * (np.logaddexp(0.0, z) - y * z)) / np.sum(w)
    got = est.evals_result_["training"]["sigmoid_binary_cross_entropy"][-1]
    np.testing.assert_allclose(got, expect, rtol=1e-7)  # LightGBM logs float32-rounded values


# ----------------------------------------------------------------------------- CatBoost
@pytest.mark.parametrize("kind", ["Logloss", "RMSE"])
def test_catboost_objective_trains_the_builtin_model(data, kind):
    cb = pytest.importorskip("catboost")
    common = dict(iterations=ROUNDS, depth=3, learning_rate=0.3, random_seed=0,
                  thread_count=1, verbose=False, boost_from_average=False,
                  bootstrap_type="No", random_strength=0, leaf_estimation_iterations=1,
                  leaf_estimation_method="Newton", allow_writing_files=False)
    if kind == "Logloss":
        X, y = data["binary"]
        loss, Model = "sigmoid_binary_cross_entropy", cb.CatBoostClassifier
    else:
        X, y = data["regression"]
        loss, Model = "l2_loss", cb.CatBoostRegressor
    b = Model(loss_function=kind, **common).fit(X, y)
    c = Model(loss_function=gbdt.catboost_objective(loss),
              eval_metric=gbdt.catboost_metric(loss), **common).fit(X, y)
    pb = b.predict(X, prediction_type="RawFormulaVal")
    pc = c.predict(X, prediction_type="RawFormulaVal")
    assert np.ptp(pb) > 0.5
    np.testing.assert_allclose(pc, pb, rtol=0, atol=1e-6)


def test_catboost_multiclass_derivatives_are_the_negated_softmax_hessian():
    obj = gbdt.catboost_objective("softmax_cross_entropy")
    z = np.array([0.5, -1.0, 2.0])
    der1, der2 = obj.calc_ders_multi(z.tolist(), 2.0, 2.0)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(der1, -2.0 * (p - np.eye(3)[2]), rtol=1e-12)
    np.testing.assert_allclose(der2, -2.0 * (np.diag(p) - np.outer(p, p)), rtol=1e-12,
                               atol=1e-15)
    pairs = gbdt.catboost_objective("l2_loss").calc_ders_range([1.0, 3.0], [0.0, 1.0], None)
    assert pairs == [(-1.0, -1.0), (-2.0, -1.0)]


# ---------------------------------------------------------------- conventions and errors
def test_hessian_conventions_written_out():
    z = np.array([[0.2, -1.0, 1.5], [3.0, 0.0, -2.0]])
    y = np.array([2.0, 0.0])
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    onehot = np.eye(3)[y.astype(int)]
    for conv, factor in [("exact", 1.0), ("xgboost", 2.0), ("lightgbm", 1.5)]:
        g, h = gbdt.xgboost_objective("softmax_cross_entropy", convention=conv)(y, z)
        np.testing.assert_allclose(g, p - onehot, rtol=1e-12)
        np.testing.assert_allclose(h, factor * p * (1 - p), rtol=1e-12)
    # XGBoost's floor: a saturated sigmoid keeps a Hessian of 1e-16
    _, h = gbdt.xgboost_objective("sigmoid_binary_cross_entropy", convention="xgboost")(
        np.array([1.0]), np.array([60.0]))
    assert h[0] == 1e-16
    # a piecewise-linear loss gets the weights as its Hessian (XGBoost's absoluteerror)
    g, h = gbdt.lightgbm_objective("mae")(np.array([0.0, 1.0]), np.array([1.0, 1.5]),
                                          np.array([2.0, 3.0]))
    np.testing.assert_array_equal(g, [2.0, 3.0])
    np.testing.assert_array_equal(h, [2.0, 3.0])


def test_gbdt_errors():
    with pytest.raises(ValueError, match="no loss is named 'nope'"):
        gbdt.xgboost_objective("nope")
    with pytest.raises(ValueError, match="has no Hessian"):
        gbdt.lightgbm_objective("ciou_loss")
    with pytest.raises(ValueError, match="`convention`"):
        gbdt.xgboost_objective("l2_loss", convention="catboost")
    with pytest.raises(ValueError, match="`hessian_scale`"):
        gbdt.xgboost_objective("l2_loss", hessian_scale=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        gbdt.xgboost_objective("huber", delat=1.0)
    obj = gbdt.xgboost_objective("softmax_cross_entropy")
    with pytest.raises(ValueError, match="class indices"):
        obj(np.array([0.5, 1.0]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(N, K\)"):
        obj(np.array([0.0, 1.0, 1.0]), np.zeros(2))
    with pytest.raises(ValueError, match="sample weights"):
        gbdt.xgboost_objective("l2_loss")(np.zeros(3), np.zeros(3), sample_weight=np.ones(2))
    assert repr(gbdt.lightgbm_objective("huber", delta=2.0)) == \
        "LightGBMObjective('huber', convention='exact', delta=2.0)"
