r"""Custom objectives and evaluation metrics for XGBoost, LightGBM and CatBoost.

A gradient-boosting library fits each tree to the gradient :math:`g_i` and the Hessian
:math:`h_i` of the loss with respect to the raw score of each row (the margin, before
any link function): a leaf's value is the Newton step
:math:`-\sum_{i \in \text{leaf}} g_i / (\sum_{i \in \text{leaf}} h_i + \lambda)`. A custom
objective returns exactly these two arrays, unreduced and sample-weighted; that is
``loss.grad_and_hessian(raw, target, reduction="sum", sample_weight=w)``, what every
objective here computes from the loss's closed forms (in the scores' float type: XGBoost
passes float32, LightGBM and CatBoost float64), in one fused pass for the pointwise losses.

* :func:`xgboost_objective` / :func:`xgboost_metric`: callables for ``xgboost.train(obj=,
  custom_metric=)`` (``(predt, dtrain)``) and for the scikit-learn estimators
  (``XGBRegressor(objective=, eval_metric=)``: ``(y_true, y_pred, sample_weight=)``);
* :func:`lightgbm_objective` / :func:`lightgbm_metric`: for ``lightgbm.train(params=
  {"objective": ...}, feval=)`` (``(preds, train_set)``) and ``LGBMRegressor(objective=,
  eval_metric=)``;
* :func:`catboost_objective` / :func:`catboost_metric`: objects with CatBoost's
  ``calc_ders_range`` / ``calc_ders_multi`` and ``evaluate`` protocols.

Shapes: a loss with one raw score per row (binary, regression) takes ``(N,)`` scores;
a multiclass loss (the losses whose targets are integer class labels, e.g.
``softmax_cross_entropy``) takes ``(N, K)`` scores, as XGBoost (2.0+) and LightGBM (4.0+)
pass them, and its float labels are cast to integers.

**Hessian conventions** (``convention=``). ``"exact"`` (default) is the loss's own second
derivative; for a loss whose Hessian couples a row's classes (``second_order ==
"dense"``) the diagonal, as every library uses. The built-in objectives differ:

* ``"xgboost"``: ``multi:softprob``/``multi:softmax`` use :math:`2 p (1 - p)` (twice the
  diagonal of the softmax Hessian), and every XGBoost objective clips the Hessian below at
  ``1e-16``; the convention doubles a multiclass diagonal and clips (``min_hessian=1e-16``).
* ``"lightgbm"``: ``multiclass`` scales the diagonal by :math:`K / (K - 1)`.

``hessian_scale=c`` multiplies every Hessian by ``c``: XGBoost's ``count:poisson`` and
LightGBM's ``poisson`` use :math:`e^{\hat y + m}` with their ``max_delta_step`` /
``poisson_max_delta_step`` :math:`m` (0.7 by default; LightGBM refuses 0), which is
``poisson_nll`` with ``hessian_scale=math.exp(m)``.

Losses whose Hessian is 0 almost everywhere (``second_order == "zero"``: mae, quantile,
hinge, ...) would make every Newton step infinite. As XGBoost's ``reg:absoluteerror``
and LightGBM's ``l1``/``quantile`` do, the objective then uses the sample weight as the
Hessian (1 for unweighted rows): a gradient step of unit curvature. The built-in
objectives also refit each leaf by a weighted quantile of its residuals, which a custom
objective cannot do, so their predictions differ.

The libraries are imported only when a callable is called (never at ``import
losskit.gbdt``).

Examples
--------
>>> import numpy as np, losskit as lk
>>> obj = lk.gbdt.xgboost_objective("sigmoid_binary_cross_entropy")
>>> g, h = obj(np.array([1.0, 0.0]), np.array([0.0, 0.0]))   # (y_true, y_pred)
>>> g, h                                                     # sigma(z) - y, sigma(1 - sigma)
(array([-0.5,  0.5]), array([0.25, 0.25]))
"""

from __future__ import annotations

import numpy as np

from .core.loss import Loss, _REGISTRY

__all__ = ["xgboost_objective", "xgboost_metric", "lightgbm_objective", "lightgbm_metric",
           "catboost_objective", "catboost_metric", "Objective"]

CONVENTIONS = ("exact", "xgboost", "lightgbm")
#: XGBoost's floor for every Hessian (``kRtEps``-style ``1e-16f`` in its objectives)
XGBOOST_MIN_HESSIAN = 1e-16


def _loss(loss) -> Loss:
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        found = _REGISTRY.get(loss)
        if found is None:  # an alias
            found = next((x for x in _REGISTRY.values() if loss in x.aliases), None)
        if found is None:
            raise ValueError(f"`loss` must be a losskit loss or the name of one; no loss is "
                             f"named {loss!r} (see losskit.catalog())")
        return found
    raise TypeError(f"`loss` must be a losskit loss or the name of one; got "
                    f"{type(loss).__name__}")


class Objective:
    """A loss's gradient and Hessian in the shapes gradient boosting uses.

    ``objective.grad_hess(raw, labels, weight=None)`` returns ``(grad, hess)`` of
    ``raw``'s shape (float32 for float32 scores, else float64): the unreduced, sample-weighted first and second derivatives (see the
    module's docstring for ``convention`` and ``min_hessian``). The library-specific
    callables (:func:`xgboost_objective`, ...) are subclasses.
    """

    #: whether the loss must have a Hessian (not for the metrics)
    _needs_hessian = True

    def __init__(self, loss, *, convention: str = "exact", min_hessian: float | None = None,
                 hessian_scale: float = 1.0, **options):
        self.loss = _loss(loss)
        if isinstance(hessian_scale, bool) or not isinstance(hessian_scale, (int, float)) \
                or not 0 < hessian_scale < float("inf"):
            raise ValueError(f"`hessian_scale` must be a finite number > 0; got "
                             f"{hessian_scale!r}")
        self.hessian_scale = float(hessian_scale)
        if self._needs_hessian and not self.loss.second_order:
            raise ValueError(
                f"{self.loss.name} has no Hessian (second_order is ''): a gradient-boosting "
                "objective needs one; choose a loss with a per-row prediction")
        if convention not in CONVENTIONS:
            raise ValueError(f"`convention` must be one of {', '.join(map(repr, CONVENTIONS))};"
                             f" got {convention!r}")
        if min_hessian is not None:
            if isinstance(min_hessian, bool) or not isinstance(min_hessian, (int, float)) \
                    or not min_hessian >= 0:
                raise ValueError(f"`min_hessian` must be a number >= 0 or None; got "
                                 f"{min_hessian!r}")
        elif convention == "xgboost":
            min_hessian = XGBOOST_MIN_HESSIAN
        unknown = set(options) - set(self.loss.option_defaults())
        if unknown:
            raise TypeError(self.loss._unknown_message(unknown))
        self.convention = convention
        self.min_hessian = min_hessian
        self.options = options
        self.multiclass = self.loss.target.startswith("integer labels")
        self.__name__ = self.loss.name  # the metric's name in the libraries' logs

    def __deepcopy__(self, memo):
        # immutable once made; lightgbm.train deep-copies its params (the objective in
        # them): the copy is this object, not a copy of the loss
        return self

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return (f"{type(self).__name__}({self.loss.name!r}, convention={self.convention!r}"
                f"{extra})")

    def _arrays(self, raw, labels, weight):
        raw = np.asarray(raw)
        if raw.dtype != np.float32 and raw.dtype != np.float64:
            raw = raw.astype(np.float64)  # float32 scores (XGBoost's) stay float32
        labels = np.asarray(labels)
        n = raw.shape[0]
        if self.multiclass:
            if raw.ndim == 1 and n and labels.size and n % labels.size == 0:
                raw = raw.reshape(labels.size, -1)  # a flat (N * K,) array, row-major
            if raw.ndim != 2:
                raise ValueError(f"{self.loss.name} is a multiclass loss: the raw scores "
                                 f"must have shape (N, K); got {raw.shape}")
            y = labels.astype(np.int64)
            if not np.array_equal(y, labels):
                raise ValueError(f"the labels of {self.loss.name} must be class indices "
                                 "0..K-1 (whole numbers)")
            labels = y
        else:
            labels = labels.astype(raw.dtype, copy=False)
            if labels.shape != raw.shape:
                raise ValueError(f"the labels must have the raw scores' shape {raw.shape}; "
                                 f"got {labels.shape}")
        w = None
        if weight is not None:
            w = np.asarray(weight, dtype=raw.dtype)
            if w.size == 0:
                w = None
            elif w.shape != (raw.shape[0],):
                raise ValueError(f"the sample weights must have shape ({raw.shape[0]},); "
                                 f"got {w.shape}")
        return raw, labels, w

    def grad_hess(self, raw, labels, weight=None):
        """``(grad, hess)``, arrays of ``raw``'s shape and floating dtype (float32 scores,
        as XGBoost passes them, are computed in float32, as its built-in objectives do;
        anything else in float64)."""
        raw, labels, w = self._arrays(raw, labels, weight)
        loss = self.loss
        # unweighted (the fused kernels), then each row times its weight: the same
        # derivatives as the weighted sum's, a weight of 0 removing its row
        g, h = loss.grad_and_hessian(raw, labels, reduction="sum", **self.options)
        if loss.second_order == "zero":  # unit curvature (XGBoost's and LightGBM's)
            h = np.ones_like(h)
        if w is not None:
            wb = w.reshape((-1,) + (1,) * (h.ndim - 1))
            keep = wb != 0
            with np.errstate(invalid="ignore"):
                g = np.where(keep, g * wb, 0.0)
                h = np.where(keep, h * wb, 0.0)
        elif raw.ndim == 2 and loss.second_order == "dense":
            k = raw.shape[1]
            if self.convention == "xgboost":
                h *= h.dtype.type(2.0)
            elif self.convention == "lightgbm" and k > 1:
                h *= h.dtype.type(k / (k - 1.0))
        if self.hessian_scale != 1.0:
            h *= h.dtype.type(self.hessian_scale)
        if self.min_hessian is not None:
            h = np.maximum(h, self.min_hessian)
        return g, h

    def value(self, raw, labels, weight=None) -> tuple[float, float]:
        """``(weighted sum of the per-row losses, sum of the weights)``."""
        raw, labels, w = self._arrays(raw, labels, weight)
        total = float(self.loss(raw, labels, reduction="sum", sample_weight=w,
                                **self.options))
        return total, float(raw.shape[0] if w is None else np.sum(w))

    def mean(self, raw, labels, weight=None) -> float:
        """The weighted mean of the per-row losses."""
        total, count = self.value(raw, labels, weight)
        return total / count if count else 0.0


# ----------------------------------------------------------------------------- XGBoost
def _is_dmatrix(x) -> bool:
    return type(x).__name__ in ("DMatrix", "QuantileDMatrix") and hasattr(x, "get_label")


class XGBoostObjective(Objective):
    """XGBoost's custom objective: ``obj(predt, dtrain)`` (``xgboost.train(obj=...)``) or
    ``obj(y_true, y_pred, sample_weight=None)`` (the scikit-learn estimators)."""

    def __call__(self, a, b, sample_weight=None):
        if _is_dmatrix(b):
            return self.grad_hess(a, b.get_label(), b.get_weight())
        return self.grad_hess(b, a, sample_weight)


class XGBoostMetric(Objective):
    """XGBoost's custom metric, the weighted mean loss: ``metric(predt, dtrain) -> (name,
    value)`` (``xgboost.train(custom_metric=...)``) or ``metric(y_true, y_score,
    sample_weight=None) -> value`` (the estimators' ``eval_metric``). XGBoost passes raw
    margins to custom metrics when the objective is custom."""

    _needs_hessian = False

    def __call__(self, a, b, sample_weight=None):
        if _is_dmatrix(b):
            return self.__name__, self.mean(a, b.get_label(), b.get_weight())
        return self.mean(b, a, sample_weight)


def xgboost_objective(loss, *, convention: str = "exact", min_hessian: float | None = None,
                      hessian_scale: float = 1.0, **options) -> XGBoostObjective:
    """An XGBoost custom objective from a losskit loss (a loss or its name) and its options.

    Use it as ``xgboost.train(params, dtrain, obj=obj)`` or
    ``xgboost.XGBRegressor(objective=obj)``; pair it with ``base_score`` (a raw score)
    and compare raw margins (``predict(output_margin=True)``): with a custom objective
    XGBoost applies no link function. ``convention="xgboost"`` reproduces the built-in
    Hessians (``multi:softprob``'s :math:`2p(1-p)`, the ``1e-16`` floor).

    Built-in objectives and their losskit losses (same gradient and Hessian):
    ``binary:logistic`` = ``sigmoid_binary_cross_entropy``, ``reg:squarederror`` =
    ``l2_loss`` (``mse`` doubles both, which with the default ``reg_lambda=1`` grows other
    trees), ``reg:pseudohubererror`` = ``pseudo_huber(delta=huber_slope)``,
    ``count:poisson`` (``max_delta_step=0``) = ``poisson_nll``, ``reg:tweedie`` =
    ``tweedie_deviance(power=tweedie_variance_power)``, ``reg:gamma`` = ``gamma_deviance``,
    ``multi:softprob`` = ``softmax_cross_entropy`` with ``convention="xgboost"``.
    """
    return XGBoostObjective(loss, convention=convention, min_hessian=min_hessian,
                  hessian_scale=hessian_scale, **options)


def xgboost_metric(loss, **options) -> XGBoostMetric:
    """The weighted mean of a losskit loss as an XGBoost custom metric (see
    :class:`XGBoostMetric`)."""
    return XGBoostMetric(loss, **options)


# ----------------------------------------------------------------------------- LightGBM
def _is_lgb_dataset(x) -> bool:
    return type(x).__name__ == "Dataset" and hasattr(x, "get_label")


class LightGBMObjective(Objective):
    """LightGBM's custom objective: ``obj(preds, train_set)`` (``lightgbm.train(params=
    {"objective": obj})``) or ``obj(y_true, y_pred, weight)`` (the estimators)."""

    def __call__(self, a, b, weight=None):
        if _is_lgb_dataset(b):
            return self.grad_hess(a, b.get_label(), b.get_weight())
        return self.grad_hess(b, a, weight)


class LightGBMMetric(Objective):
    """LightGBM's custom metric, the weighted mean loss: ``(name, value, False)`` (lower
    is better) from ``metric(preds, eval_set)`` (``lightgbm.train(feval=...)``) or
    ``metric(y_true, y_pred, weight)`` (the estimators' ``eval_metric``)."""

    _needs_hessian = False

    def __call__(self, a, b, weight=None):
        if _is_lgb_dataset(b):
            return self.__name__, self.mean(a, b.get_label(), b.get_weight()), False
        return self.__name__, self.mean(b, a, weight), False


def lightgbm_objective(loss, *, convention: str = "exact", min_hessian: float | None = None,
                       hessian_scale: float = 1.0, **options) -> LightGBMObjective:
    """A LightGBM custom objective from a losskit loss (a loss or its name) and its options.

    With a custom objective LightGBM starts from a raw score of 0 and applies no link
    function (``predict`` returns raw scores). Built-in objectives and their losskit
    losses: ``binary`` = ``sigmoid_binary_cross_entropy``, ``regression`` = ``l2_loss``,
    ``poisson`` (``poisson_max_delta_step=0``) = ``poisson_nll``, ``tweedie`` =
    ``tweedie_deviance(power=tweedie_variance_power)``, ``multiclass`` =
    ``softmax_cross_entropy`` with ``convention="lightgbm"`` (:math:`K/(K-1)` on the
    Hessian); compare with ``boost_from_average=False``.
    """
    return LightGBMObjective(loss, convention=convention, min_hessian=min_hessian,
                  hessian_scale=hessian_scale, **options)


def lightgbm_metric(loss, **options) -> LightGBMMetric:
    """The weighted mean of a losskit loss as a LightGBM custom metric (see
    :class:`LightGBMMetric`)."""
    return LightGBMMetric(loss, **options)


# ----------------------------------------------------------------------------- CatBoost
class CatBoostObjective(Objective):
    """CatBoost's custom objective protocol. CatBoost *maximises*: its first and second
    derivatives are those of the negated loss, ``(-grad, -hess)`` per object.

    ``calc_ders_range(approxes, targets, weights)`` (one raw score per object) returns a
    list of ``(der1, der2)``; ``calc_ders_multi(approx, target, weight)`` (one object of a
    multiclass loss) returns ``(der1, der2)`` with the object's whole K x K Hessian
    (exact; the diagonal is not used there)."""

    def calc_ders_range(self, approxes, targets, weights):
        g, h = self.grad_hess(np.asarray(approxes, dtype=np.float64),
                              np.asarray(targets), weights)
        return list(zip((-g).tolist(), (-h).tolist()))

    def calc_ders_multi(self, approx, target, weight):
        z = np.asarray(approx, dtype=np.float64)
        k = z.shape[0]
        y = np.full(k, int(target))
        w = None if weight is None else np.full(k, float(weight))
        # K copies of the row, the k-th times e_k: the rows of the Hessian in one call
        zz = np.broadcast_to(z, (k, k)).copy()
        hess = self.loss.hvp(zz, y, vector=np.eye(k), reduction="sum", sample_weight=w,
                             **self.options)
        g = self.loss.grad(z[None], y[:1], reduction="sum",
                           sample_weight=None if w is None else w[:1], **self.options)[0]
        return (-g).tolist(), (-hess).tolist()


class CatBoostMetric(Objective):
    """CatBoost's custom metric protocol for the weighted mean loss (lower is better)."""

    _needs_hessian = False

    def is_max_optimal(self):
        return False

    def evaluate(self, approxes, target, weight):
        raw = np.asarray(approxes, dtype=np.float64)
        raw = raw[0] if raw.shape[0] == 1 else raw.T  # (N,) or (N, K)
        return self.value(raw, np.asarray(target), weight)

    def get_final_error(self, error, weight):
        return error / weight if weight else 0.0


def catboost_objective(loss, *, convention: str = "exact", min_hessian: float | None = None,
                       hessian_scale: float = 1.0, **options) -> CatBoostObjective:
    """A CatBoost custom objective (``CatBoostRegressor(loss_function=obj)``) from a
    losskit loss (a loss or its name) and its options. ``Logloss`` =
    ``sigmoid_binary_cross_entropy``, ``RMSE`` = ``l2_loss``; with a custom objective
    CatBoost starts from 0 (compare with ``boost_from_average=False``). Pass
    ``eval_metric=catboost_metric(...)`` too: CatBoost needs a metric for a custom
    objective."""
    return CatBoostObjective(loss, convention=convention, min_hessian=min_hessian,
                  hessian_scale=hessian_scale, **options)


def catboost_metric(loss, **options) -> CatBoostMetric:
    """The weighted mean of a losskit loss as a CatBoost custom metric."""
    return CatBoostMetric(loss, **options)

