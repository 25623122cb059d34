"""Benchmark: losskit.gbdt objectives against the boosting round they run in.

A custom objective is called once per boosting round; the issue's target is that the
call costs less than 10% of the round of the library's own built-in objective on the same
data. For each (library, objective) pair, on ``--rows`` rows of 20 float32 features
(a synthetic problem, the same for every pair of one kind), this measures, in one run:

* ``builtin round``: the mean time of one boosting round with the built-in objective
  (``--rounds`` rounds after a warm-up model, so that the histogram bins are built);
* ``callback``: the median time of the calls of the losskit objective inside training
  (timed around the callable itself: the labels and weights read from the library's
  dataset, the gradient and Hessian, the conversions; the median, because the first
  calls of a run also pay the page faults of the gradient buffers, which the gradient
  cache then reuses);
* ``custom round``: the mean round time with the losskit objective (the library's own
  handling of a Python objective included);

and reports ``callback / builtin round``. XGBoost uses ``tree_method="hist"``, depth 6;
LightGBM 63 leaves; both with ``--threads`` threads.

Usage::

    python benchmarks/gbdt.py --out benchmarks/GBDT.md          # 1M rows
    python benchmarks/gbdt.py --rows 200000 --rounds 5
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import losskit  # noqa: E402
from losskit import gbdt  # noqa: E402


class Timed:
    """A custom objective that records the duration of each of its calls."""

    def __init__(self, objective):
        self.objective = objective
        self.times: list[float] = []
        self.__name__ = objective.__name__

    def __deepcopy__(self, memo):  # lightgbm.train deep-copies its params
        return self

    def __call__(self, *args):
        t0 = time.perf_counter()
        out = self.objective(*args)
        self.times.append(time.perf_counter() - t0)
        return out


def _data(kind: str, rows: int, rng: np.random.Generator):
    X = rng.normal(size=(rows, 20)).astype(np.float32)
    z = X[:, 0] + 0.5 * X[:, 1] ** 2 - 0.5 * X[:, 2] * X[:, 3]
    if kind == "binary":
        y = (rng.uniform(size=rows) < 1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    elif kind == "regression":
        y = (z + rng.normal(size=rows)).astype(np.float32)
    elif kind == "counts":
        y = rng.poisson(np.exp(0.3 * z)).astype(np.float32)
    else:  # 5 classes
        y = np.digitize(z + 0.5 * rng.normal(size=rows),
                        np.quantile(z, [0.2, 0.4, 0.6, 0.8])).astype(np.float32)
    return X, y


# (label, data kind, built-in params, losskit loss and objective options)
XGB = [
    ("binary:logistic", "binary", {"objective": "binary:logistic"},
     ("sigmoid_binary_cross_entropy", {"convention": "xgboost"})),
    ("reg:squarederror", "regression", {"objective": "reg:squarederror"}, ("l2_loss", {})),
    ("reg:pseudohubererror", "regression", {"objective": "reg:pseudohubererror"},
     ("pseudo_huber", {})),
    ("count:poisson", "counts", {"objective": "count:poisson", "max_delta_step": 0.7},
     ("poisson_nll", {"hessian_scale": math.exp(0.7)})),
    ("reg:tweedie", "counts", {"objective": "reg:tweedie"},
     ("tweedie_deviance", {"power": 1.5})),
    ("multi:softprob (5 classes)", "multiclass", {"objective": "multi:softprob",
                                                  "num_class": 5},
     ("softmax_cross_entropy", {"convention": "xgboost"})),
]
LGB = [
    ("binary", "binary", {"objective": "binary"}, ("sigmoid_binary_cross_entropy", {})),
    ("regression", "regression", {"objective": "regression"}, ("l2_loss", {})),
    ("poisson", "counts", {"objective": "poisson"},
     ("poisson_nll", {"hessian_scale": math.exp(0.7)})),
    ("tweedie", "counts", {"objective": "tweedie"}, ("tweedie_deviance", {"power": 1.5})),
    ("multiclass (5 classes)", "multiclass", {"objective": "multiclass", "num_class": 5},
     ("softmax_cross_entropy", {"convention": "lightgbm"})),
]


def _xgb(X, y, builtin, objective, rounds, threads):
    import xgboost as xgb

    d = xgb.DMatrix(X, label=y)
    params = {"tree_method": "hist", "max_depth": 6, "nthread": threads, "seed": 0,
              **builtin}
    xgb.train(params, d, 1)  # warm-up: bins, threads
    t0 = time.perf_counter()
    xgb.train(params, d, rounds)
    builtin_round = (time.perf_counter() - t0) / rounds
    custom = {k: v for k, v in params.items() if k != "objective"}
    custom["disable_default_eval_metric"] = 1
    xgb.train(custom, d, 1, obj=objective)  # warm-up: the kernels compile on first use
    timed = Timed(objective)
    t0 = time.perf_counter()
    xgb.train(custom, d, rounds, obj=timed)
    custom_round = (time.perf_counter() - t0) / rounds
    return builtin_round, statistics.median(timed.times), custom_round


def _lgb(X, y, builtin, objective, rounds, threads):
    import lightgbm as lgb

    params = {"num_leaves": 63, "num_threads": threads, "seed": 0, "verbose": -1,
              **builtin}
    ds = lgb.Dataset(X, label=y, free_raw_data=False)
    lgb.train(params, ds, 1)  # warm-up: the binned dataset is built once
    t0 = time.perf_counter()
    lgb.train(params, ds, rounds)
    builtin_round = (time.perf_counter() - t0) / rounds
    lgb.train({**params, "objective": objective}, ds, 1)  # warm-up, as above
    timed = Timed(objective)
    t0 = time.perf_counter()
    lgb.train({**params, "objective": timed}, ds, rounds)
    custom_round = (time.perf_counter() - t0) / rounds
    return builtin_round, statistics.median(timed.times), custom_round


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = ap.parse_args(argv)
    import lightgbm
    import xgboost

    rng = np.random.default_rng(0)
    data = {k: _data(k, args.rows, rng) for k in ("binary", "regression", "counts",
                                                   "multiclass")}
    load = os.getloadavg()
    rows = []
    for lib, cases, run, make in (("XGBoost", XGB, _xgb, gbdt.xgboost_objective),
                                  ("LightGBM", LGB, _lgb, gbdt.lightgbm_objective)):
        for label, kind, builtin, (loss, options) in cases:
            X, y = data[kind]
            b, c, r = run(X, y, builtin, make(loss, **options), args.rounds, args.threads)
            rows.append((lib, label, f"{loss}", b, c, r))
            print(f"{lib:9s} {label:28s} builtin round {b * 1e3:8.1f} ms  callback "
                  f"{c * 1e3:7.2f} ms ({c / b:6.1%})  custom round {r * 1e3:8.1f} ms",
                  flush=True)
    after = os.getloadavg()
    lines = [
        "# Gradient-boosting objectives: callback time against the boosting round",
        "",
        f"Generated by `python benchmarks/gbdt.py --rows {args.rows} --rounds {args.rounds}"
        f"{'' if args.out is None else ' --out ' + str(args.out)}`.",
        "",
        f"- {args.rows:,} rows x 20 float32 features; XGBoost {xgboost.__version__} "
        f"(hist, depth 6), LightGBM {lightgbm.__version__} (63 leaves), {args.threads} "
        f"threads; losskit {losskit.__version__}, numpy {np.__version__}, Python "
        f"{platform.python_version()}",
        f"- load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
        f"{after[0]:.2f} {after[1]:.2f} {after[2]:.2f} (a shared machine slows every run; "
        "compare within one table)",
        f"- rounds: the mean of {args.rounds} rounds after a warm-up model; `callback`: the "
        "median call of the losskit objective inside training (labels read, gradient and "
        "Hessian, conversions); target: callback < 10% of the built-in round",
        "",
        "| library | built-in objective | losskit loss | built-in round ms | callback ms "
        "| callback / round | custom-objective round ms |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for lib, label, loss, b, c, r in rows:
        lines.append(f"| {lib} | `{label}` | `{loss}` | {b * 1e3:.1f} | {c * 1e3:.2f} | "
                     f"{c / b:.1%} | {r * 1e3:.1f} |")
    text = "\n".join(lines) + "\n"
    if args.out is not None:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
