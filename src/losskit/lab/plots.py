r"""PNG figures for the command line: learning curves, saturation, convexity, loss curves.

Drawn with matplotlib's object-oriented API on the Agg backend (a ``Figure`` with a
``FigureCanvasAgg``): nothing touches ``pyplot``'s global state, no window opens, no
display is needed. matplotlib is optional (``pip install 'losskit[demo]'``); it is
imported only when a figure is drawn.

:func:`loss_curve` computes the data behind ``losskit explain NAME --plot``: the value
and gradient of a loss against its prediction, for a representative target, using only
the loss's own value and closed-form ``.grad``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "PlotUnavailable",
    "LossCurve",
    "loss_curve",
    "loss_curve_or_reason",
    "plot_loss_curve",
    "plot_learning_curves",
    "plot_saturation",
    "plot_convexity",
]

# colours that stay apart for colour-blind readers (Okabe-Ito)
_BLUE, _ORANGE, _GREEN, _RED, _GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#777777"
_LOSS_COLOURS = {"cross_entropy": _BLUE, "mse_softmax": _ORANGE, "multiclass_hinge": _GREEN}


class PlotUnavailable(ValueError):
    """No meaningful 1-D curve exists for this loss (the message says why)."""


def _figure(ncols: int, *, width: float = 5.2, height: float = 4.0):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # the optional extra
        raise ImportError("plotting needs matplotlib: pip install 'losskit[demo]'") from exc
    fig = Figure(figsize=(width * ncols, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _save(fig, path) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path)
    return path


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


# --------------------------------------------------------------------------- explain --plot
@dataclass(frozen=True)
class LossCurve:
    """A loss and its derivative along a one-parameter path of predictions ``x``."""

    name: str
    x: np.ndarray
    value: np.ndarray
    grad: np.ndarray
    xlabel: str
    setting: str  # the representative target and what is held fixed, in words
    ylabel: str = "d loss / d prediction"


# fixed values for extra inputs (beside the prediction and the target) that keep a 1-D curve
_FIXED_INPUTS = {"var": 1.0, "x2": 0.0}
_NUM_CLASSES = 3
#: the target of a divergence's curve: the prediction matches it at class-0 probability 0.6
_TARGET_DISTRIBUTION = (0.6, 0.2, 0.2)


def _kind(loss) -> tuple[str, str]:
    """``(kind, why_not)``: which 1-D picture fits this loss, or the reason there is none."""
    pred = loss.prediction.lower()
    target = loss.target.lower()
    for word in ("box", "embedding", "mask", "sequence", "image"):
        if word in pred:
            return "", (f"its prediction is {loss.prediction}: the value depends on several "
                        "coordinates at once, so no single 1-D curve represents it")
    if loss.family == "overlap":
        return "", ("it is an overlap (set-similarity) loss over whole masks: its value "
                    "depends on every pixel at once, so no 1-D curve represents it")
    if loss.family == "ranking":
        return "", ("it is a ranking loss over whole lists: its value depends on how the "
                    "scores of the items compare, so no 1-D curve represents it")
    extra = [n for n in loss.inputs[1:] if n != "target" and n not in _FIXED_INPUTS]
    if extra or "target" not in loss.inputs:
        return "", (f"it takes {', '.join(loss.inputs)}: no single target and prediction "
                    "pair to draw against")
    form = ""
    if pred.startswith("log-prob"):
        form = "logprob"
    elif pred.startswith("prob"):
        form = "prob"
    elif pred.startswith("logit") or pred.startswith("score"):
        form = "logit"
    if "integer labels" in target and form:
        return "multiclass_" + form, ""
    if "axis" in loss.option_defaults() and "same shape" in target and form:
        # a distribution over the class axis against a target distribution (divergences)
        return "distribution_" + form, ""
    if "same shape" in target:
        if "log-rate" in pred or "count" in target:
            return "count", ""
        if "logit" in pred or "score" in pred:
            return "binary_logit", ""
        if pred.startswith("prob"):
            return "binary_prob", ""
        if pred.startswith("real") or pred.startswith("mean"):
            return "regression", ""
    return "", (f"losskit has no representative 1-D picture for a prediction of "
                f"{loss.prediction!r} with targets {loss.target!r}")


def loss_curve(loss: Any, *, num: int = 401) -> LossCurve:
    r"""Value and gradient of ``loss`` against one prediction coordinate.

    The representative picture per kind of loss:

    * regression (real prediction): prediction :math:`y \in [-3, 3]`, target 0, so the
      x-axis is the residual :math:`y - t` (extra inputs: variance 1);
    * counts (Poisson, log-rate prediction): log-rate in :math:`[-3, 3]`, count 2;
    * binary, logits or scores: :math:`z \in [-6, 6]`, target 1 (labels :math:`\pm 1`: +1);
    * binary, probabilities: :math:`p \in [0.005, 0.995]`, target 1;
    * multi-class (3 classes, true class 0): the true class's logit :math:`z_0 \in [-6, 6]`
      with the other logits 0; for probability input :math:`p_0` with the rest shared
      equally, for log-probability input :math:`\log p_0`. The derivative shown is the
      loss's closed-form gradient dotted with the curve's direction
      :math:`\mathrm d\,\text{prediction}/\mathrm dx` (the chain rule), so it is the
      slope of the value curve beside it;
    * divergences between distributions over a class axis: the same three pictures
      against the target distribution :math:`(0.6, 0.2, 0.2)` (as logits where the target
      is teacher logits), so the minimum sits where the prediction equals it.

    Losses whose value depends on several coordinates at once (boxes, masks, embeddings)
    raise :class:`PlotUnavailable` with the reason.

    Examples
    --------
    >>> import losskit as lk
    >>> from losskit.lab.plots import loss_curve
    >>> c = loss_curve(lk.mse, num=5)
    >>> c.x.tolist(), c.value.tolist(), c.grad.tolist()
    ([-3.0, -1.5, 0.0, 1.5, 3.0], [9.0, 2.25, 0.0, 2.25, 9.0], [-6.0, -3.0, 0.0, 3.0, 6.0])
    """
    kind, why_not = _kind(loss)
    if not kind:
        raise PlotUnavailable(f"no curve for {loss.name}: {why_not}")
    k = _NUM_CLASSES
    tangent = None  # d prediction / dx for a multi-class row: the curve's direction
    if kind == "regression":
        x = np.linspace(-3.0, 3.0, num)
        pred, target = x, np.zeros_like(x)
        xlabel = "prediction y (target t = 0, so y = residual y - t)"
        setting = "target 0"
    elif kind == "count":
        x = np.linspace(-3.0, 3.0, num)
        pred, target = x, np.full_like(x, 2.0)
        xlabel = "log-rate log λ (target count 2)"
        setting = "target count 2"
    elif kind == "binary_logit":
        x = np.linspace(-6.0, 6.0, num)
        pred, target = x, np.ones_like(x)
        one = "+1" if "-1" in loss.target else "1"
        xlabel = f"{'logit' if 'logit' in loss.prediction else 'score'} (target {one})"
        setting = f"target {one}, the positive class"
    elif kind == "binary_prob":
        x = np.linspace(0.005, 0.995, num)
        pred, target = x, np.ones_like(x)
        xlabel = "predicted probability p (target 1)"
        setting = "target 1, the positive class"
    else:
        form = kind.split("_", 1)[1]
        if kind.startswith("multiclass"):
            target = np.zeros(num, dtype=np.int64)
            what = "the true class (class 0 of 3"
            setting = "3 classes, true class 0"
        else:
            p = np.array(_TARGET_DISTRIBUTION)
            tword = loss.target.lower()
            encoded = np.log(p) if ("logit" in tword or tword.startswith("log-prob")) else p
            target = np.tile(encoded, (num, 1))
            what = "class 0 (of 3"
            setting = f"target distribution {tuple(float(v) for v in p)}"
        if form == "logit":
            x = np.linspace(-6.0, 6.0, num)
            pred = np.zeros((num, k))
            pred[:, 0] = x
            tangent = np.zeros((num, k))
            tangent[:, 0] = 1.0                                  # only z_0 moves
            word = "logit" if "logit" in loss.prediction else "score"
            xlabel = f"{word} of {what}; other {word}s 0)"
        else:
            p0 = np.linspace(0.005, 0.995, num)
            probs = np.column_stack([p0] + [(1.0 - p0) / (k - 1)] * (k - 1))
            if form == "prob":
                x, pred = p0, probs
                # d/dp0 of (p0, (1-p0)/(k-1), ...) = (1, -1/(k-1), ...)
                tangent = np.column_stack([np.ones(num)] + [np.full(num, -1.0 / (k - 1))] *
                                          (k - 1))
                xlabel = f"probability of {what}; the rest shared)"
            else:
                x, pred = np.log(p0), np.log(probs)
                # x = log p0: d/dx log((1 - e^x)/(k-1)) = -p0 / (1 - p0)
                tangent = np.column_stack([np.ones(num)] + [-p0 / (1.0 - p0)] * (k - 1))
                xlabel = f"log-probability of {what}; the rest shared)"
    arrays = []
    for name in loss.inputs:
        if name == loss.inputs[0]:
            arrays.append(pred)
        elif name == "target":
            arrays.append(target)
        else:
            arrays.append(np.full(x.shape, _FIXED_INPUTS[name]))
            setting += f", {name} = {_FIXED_INPUTS[name]:g}"
    try:
        value = loss(*arrays, reduction="none")
        grad = loss.grad(*arrays, reduction="sum")
    except (ValueError, TypeError) as exc:
        raise PlotUnavailable(f"no curve for {loss.name}: the representative input was "
                              f"rejected ({exc})") from exc
    value, grad = np.asarray(value, dtype=np.float64), np.asarray(grad, dtype=np.float64)
    if tangent is not None:
        # chain rule along the curve: d loss/dx = (d loss/d prediction) . (d prediction/dx)
        grad = np.sum(grad * tangent, axis=-1)
    if value.shape != x.shape or grad.shape != x.shape:
        raise PlotUnavailable(f"no curve for {loss.name}: one value per prediction was "
                              f"expected, got shape {value.shape}")
    ylabel = "d loss / d prediction"
    if tangent is not None:
        ylabel = "d loss / dx along the curve"
    return LossCurve(loss.name, x, value, grad, xlabel, setting, ylabel)


def loss_curve_or_reason(loss: Any, *, num: int = 401) -> tuple[LossCurve | None, str]:
    """``(loss_curve(loss), "")``, or ``(None, why there is none)``: the one place that
    decides which losses have a curve, for ``losskit explain --plot``, the atlas and the
    documentation site's per-loss pages.

    >>> import losskit as lk
    >>> loss_curve_or_reason(lk.iou_loss)[1].startswith("its prediction is boxes")
    True
    """
    try:
        return loss_curve(loss, num=num), ""
    except PlotUnavailable as exc:
        reason = str(exc)
    prefix = f"no curve for {loss.name}: "
    return None, reason[len(prefix):] if reason.startswith(prefix) else reason


def plot_loss_curve(curve: LossCurve, path) -> str:
    """Two panels: the loss and its closed-form derivative against the prediction."""
    fig, (ax_v, ax_g) = _figure(2, width=4.8, height=3.6)
    ax_v.plot(curve.x, curve.value, color=_BLUE, lw=2)
    _style(ax_v, f"{curve.name}: value", curve.xlabel, "loss")
    ax_g.plot(curve.x, curve.grad, color=_RED, lw=2)
    ax_g.axhline(0.0, color=_GREY, lw=0.8)
    _style(ax_g, f"{curve.name}: gradient (closed form)", curve.xlabel, curve.ylabel)
    fig.suptitle(f"{curve.name}: {curve.setting}", fontsize=12)
    return _save(fig, path)


# --------------------------------------------------------------------------- training
def plot_learning_curves(histories: dict, path, *, title: str = "") -> str:
    """Training loss (each in its own units, log scale) and test accuracy per epoch."""
    from .training import LOSS_TITLES

    fig, (ax_l, ax_a) = _figure(2)
    for loss, h in histories.items():
        colour = _LOSS_COLOURS.get(loss)
        epochs = np.arange(len(h.train_loss))
        label = LOSS_TITLES.get(loss, loss)
        ax_l.plot(epochs, h.train_loss, color=colour, lw=2, label=label)
        reached = h.epochs_to(0.9)
        if reached is not None:
            label += f" (90% at epoch {reached})"
        ax_a.plot(epochs, np.asarray(h.test_accuracy) * 100.0, color=colour, lw=2, label=label)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_l, ax_a):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_l.set_yscale("log")
    _style(ax_l, "training loss (each loss in its own units)", "epoch", "loss (log scale)")
    ax_l.legend(fontsize=9)
    ax_a.axhline(90.0, color=_GREY, ls="--", lw=1)
    ax_a.set_ylim(0, 100)
    _style(ax_a, "test accuracy", "epoch", "accuracy (%)")
    ax_a.legend(fontsize=9, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=12)
    return _save(fig, path)


# --------------------------------------------------------------------------- boosting
def plot_boosting(result, path) -> str:
    """Test average precision and test log loss per boosting round, per objective."""
    fig, (ax_p, ax_l) = _figure(2)
    colours = {"log loss": _LOSS_COLOURS.get("cross_entropy"), "focal": "#d62728"}
    for label in result.average_precision:
        name = label if label != "focal" else f"focal (gamma {result.gamma:g})"
        ax_p.plot(result.rounds, result.average_precision[label], lw=2,
                  color=colours.get(label), label=name)
        ax_l.plot(result.rounds, result.log_loss[label], lw=2, color=colours.get(label),
                  label=name)
    ax_p.axhline(result.positive_rate, color=_GREY, ls="--", lw=1,
                 label="chance (the positive rate)")
    _style(ax_p, "test average precision (higher is better)", "boosting round",
           "average precision")
    ax_p.legend(fontsize=9, loc="lower right")
    _style(ax_l, "test log loss of sigmoid(score) (calibration)", "boosting round",
           "log loss")
    ax_l.legend(fontsize=9)
    fig.suptitle(f"LightGBM, {result.positive_rate:.1%} positives: focal loss vs log loss",
                 fontsize=12)
    return _save(fig, path)


# --------------------------------------------------------------------------- saturation
def plot_saturation(grads, mse_run, ce_run, path) -> str:
    r"""Left: :math:`\partial L/\partial z` of MSE and CE after a sigmoid, targets 0 and 1.
    Right: :math:`\tfrac12 (a - y)^2` per update in the 287 vs 53 experiment."""
    fig, (ax_g, ax_c) = _figure(2)
    styles = {0.0: "--", 1.0: "-"}
    for y in grads.targets:
        ls = styles.get(y, ":")
        ax_g.plot(grads.z, grads.mse[y], color=_ORANGE, ls=ls, lw=2,
                  label=f"MSE ½(a-y)², y = {y:g}: (a-y)a(1-a)")
        ax_g.plot(grads.z, grads.cross_entropy[y], color=_BLUE, ls=ls, lw=2,
                  label=f"cross-entropy, y = {y:g}: a - y")
    ax_g.axhline(0.0, color=_GREY, lw=0.8)
    lo = float(grads.z[0])
    ax_g.annotate("confidently wrong (y = 1, z << 0):\nMSE's gradient vanishes,\n"
                  "cross-entropy's stays near -1", xy=(lo + 1.0, -0.97),
                  xytext=(lo + 0.5, -0.55), fontsize=8,
                  arrowprops=dict(arrowstyle="->", color=_GREY))
    _style(ax_g, "dL/dz for a sigmoid output a = σ(z)", "pre-activation z", "dL/dz")
    ax_g.legend(fontsize=8, loc="upper left")

    for run, colour, name in ((mse_run, _ORANGE, "MSE"), (ce_run, _BLUE, "cross-entropy")):
        curve = [s.mse for s in run.trajectory] + [run.final_mse]
        ax_c.plot(np.arange(len(curve)), curve, color=colour, lw=2,
                  label=f"{name}: {run.updates} updates")
        ax_c.axvline(run.updates, color=colour, ls=":", lw=1)
    ax_c.axhline(run.threshold, color=_GREY, ls="--", lw=1,
                 label=f"stop: ½(a-y)² < {run.threshold:g}")
    ax_c.set_yscale("log")
    _style(ax_c, "one neuron, x = 1, w₀ = ln 9, y = 0.5, η = 0.2",
           "update", "½(a - y)² (log scale)")
    ax_c.legend(fontsize=9)
    return _save(fig, path)


# --------------------------------------------------------------------------- convexity
def plot_convexity(result, path) -> str:
    """Left: both losses along the line in logit space. Right: their second differences."""
    fig, _ = _convexity_figure(result)
    return _save(fig, path)


def _convexity_figure(result):
    """The figure of :func:`plot_convexity` and its two axes, not yet saved."""
    fig, (ax_v, ax_s) = _figure(2)
    t, ti = result.t, result.t_inner
    ax_v.plot(t, result.ce, color=_BLUE, lw=2, label="softmax cross-entropy (convex)")
    ax_v.plot(t, result.mse_softmax, color=_ORANGE, lw=2,
              label="MSE on softmax ‖p - e_y‖² (not convex)")
    along = _line_words(result)
    _style(ax_v, "loss along a line in logit space", along, "loss")
    _place_legend(ax_v, _around_minimum(t, result.mse_softmax))

    ax_s.plot(ti, result.ce_second, color=_BLUE, lw=2, label="cross-entropy")
    ax_s.plot(ti, result.mse_second, color=_ORANGE, lw=2, label="MSE on softmax")
    ax_s.axhline(0.0, color=_GREY, lw=0.8)
    span = result.nonconvex_range()
    if span is not None:
        ax_s.axvspan(span[0], span[1], color=_ORANGE, alpha=0.12,
                     label="MSE curves down (second difference < 0)")
    _style(ax_s, "second differences (f(t+h) - 2f(t) + f(t-h)) / h²", along,
           "≈ second derivative")
    _place_legend(ax_s, _around_minimum(ti, result.mse_second))
    return fig, (ax_v, ax_s)


def _around_minimum(x, y, halfwidth: int = 3) -> np.ndarray:
    """The points ``(x, y)`` of a curve at its minimum and ``halfwidth`` either side."""
    i = int(np.argmin(y))
    lo, hi = max(0, i - halfwidth), min(len(x), i + halfwidth + 1)
    return np.column_stack([x[lo:hi], y[lo:hi]])


_LEGEND_PLACES = ("upper right", "upper left", "lower left", "lower right", "center right",
                  "center left", "upper center", "lower center")


def _place_legend(ax, keep_clear, *, fontsize: float = 9):
    """Put the legend where it covers none of ``keep_clear`` (data coordinates, the points
    the panel is about) and the fewest points of the plotted lines.

    matplotlib's ``loc="best"`` weighs every artist alike and may hide the one point that
    matters (a curve's minimum); here each standard place is tried on the laid-out figure.
    Where every place covers part of a curve, the axes get headroom above the data (up to
    twice) and the upper places are tried again.
    """
    best = _try_legend_places(ax, keep_clear, _LEGEND_PLACES, fontsize)
    for _ in range(2):
        if best is not None and best[0] == 0:
            break
        bottom, top = ax.get_ylim()
        ax.set_ylim(bottom, top + 0.25 * (top - bottom))
        higher = _try_legend_places(ax, keep_clear, _LEGEND_PLACES[:2], fontsize)
        if higher is not None and (best is None or higher[0] < best[0]):
            best = higher
    return ax.legend(fontsize=fontsize, loc="best" if best is None else best[1])


def _try_legend_places(ax, keep_clear, places, fontsize):
    """``(points covered, place)`` of the place among ``places`` that covers none of
    ``keep_clear`` and the fewest line points; ``None`` if each covers a kept point."""
    fig = ax.figure
    best = None
    for loc in places:
        legend = ax.legend(fontsize=fontsize, loc=loc)
        fig.draw_without_rendering()  # the layout (constrained) settles the legend's box
        box = legend.get_window_extent()
        clear = ax.transData.transform(np.asarray(keep_clear, dtype=float))
        if any(box.contains(px, py) for px, py in clear):
            continue
        drawn = [line.get_transform().transform(line.get_xydata()) for line in ax.get_lines()]
        covered = sum(int(np.count_nonzero(
            (xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1)
            & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1))) for xy in drawn)
        if best is None or covered < best[0]:
            best = (covered, loc)
        if covered == 0:
            break
    return best


def _line_words(result) -> str:
    d = result.direction
    if np.count_nonzero(d) == 1 and d[result.label] == 1.0 and not np.any(result.base):
        return f"t = logit of the true class (others 0, K = {d.size})"
    return "t, logits z = z₀ + t·d"

