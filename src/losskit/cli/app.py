r"""The ``losskit`` command line.

``losskit demo`` recomputes the source material's worked numbers, reruns the saturation
experiment and trains a softmax classifier on scikit-learn's digits with three losses;
``losskit experiment saturation|convexity|compare`` draws one lesson each; ``losskit
list`` prints the catalog and ``losskit explain NAME`` one loss in full. Nothing here
touches the network.

Output fits the terminal (``$COLUMNS``, else the terminal's width, else 80): tables wrap
their long columns and formulas are printed as plain text (``dL/dy = 2 (y - t)``, see
:func:`losskit.cli.text.latex_to_text`); the LaTeX stays in the loss metadata and the
HTML atlas.

Every subcommand's parser sets ``func``, a callable ``func(args) -> int`` (the exit
status); ``main`` dispatches to it. Further subcommands plug in through
``losskit.cli.tools.add_commands(subparsers)`` when that module exists. Options are
never abbreviated (``--epoch`` is an error, not ``--epochs``), and an error in a
subcommand's arguments prints that subcommand's usage.

Examples
--------
>>> from losskit.cli import main
>>> main(["list", "--family", "regression"])  # doctest: +ELLIPSIS
name...prediction...family...
...mse...real...regression...L = (y - t)^2...
0
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import sys
from typing import Sequence

from .text import INSTALL_DEMO as _INSTALL_DEMO
from .text import fit as _fit
from .text import latex_to_text
from .text import signed as _signed
from .text import table as _table
from .text import table_blocks as _table_blocks
from .text import terminal_width as _terminal_width
from .text import wrap as _wrap_to

__all__ = ["main", "build_parser"]

_EPILOG = """\
examples:
  losskit demo             the sources' worked numbers, MSE vs cross-entropy on
                           one sigmoid neuron (287 vs 53 updates), then a
                           classifier trained on the digits with three losses
                           (PNGs in ./losskit-demo)
  losskit demo --every 25  the same, with every 25th step of the trajectories
  losskit experiment saturation --out figs
  losskit experiment convexity
  losskit experiment compare --model mlp --epochs 20
  losskit list             the catalog: every loss, its input and its formula
  losskit list --family regression
  losskit explain softmax_cross_entropy --plot ce.png
  python -m losskit demo   the same without the console script

exit status: 0 on success; 1 when a check does not agree (or a needed optional
package is missing); 2 on a usage error.
"""

def _ok_text(ok: bool | None) -> str:
    return {True: "ok", False: "FAIL", None: "skip"}[ok]


def _missing(*modules: str) -> list[str]:
    """The optional packages among ``modules`` that cannot be imported."""
    import importlib

    absent = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            absent.append(name)
    return absent


def _out_dir(path: str) -> str:
    """Create the output folder; an ``OSError`` says why it cannot be."""
    os.makedirs(path, exist_ok=True)
    return path


def _progress(args) -> bool | None:
    """``None``: a progress bar when stderr is a terminal; ``False`` with --no-progress."""
    return False if args.no_progress else None


# --------------------------------------------------------------------------- demo
def _sources_paragraph(width: int) -> list[str]:
    """Where the demo's numbers come from: the tutorials (by title and author when the
    digest records them) and the digest's sections that the table's "section" names."""
    from ..lab import digest

    sections = ", ".join(f"{number} {title.lower()}" for number, title in
                         digest.SECTIONS.items())
    text = (f"The source material: {digest.SOURCE_MATERIAL}, distilled in the project's "
            f"seeds digest. Each number below is what the sources print; \"section\" is "
            f"the digest's section it is from ({sections}). docs/sources.md lists every "
            "number with its source.")
    out = _wrap_to(text, width)
    if digest.TUTORIALS:
        out += ["", "The tutorials:"]
        for tutorial in digest.TUTORIALS:
            out += _wrap_to(f'"{tutorial.title}", {tutorial.author} (digest sections '
                            f'{", ".join(tutorial.sections)})', width, "  - ", "    ")
    else:
        out += _wrap_to("(The seeds digest describes the tutorials but does not record "
                        "their titles or authors.)", width)
    return out


def _worked_numbers_and_saturation(args: argparse.Namespace) -> bool:
    """Part 1 of the demo: the digest's worked numbers and the saturation experiment."""
    from ..lab import digest
    from ..lab.experiments import saturation

    width = _terminal_width()
    out = []
    checks = digest.CHECKS
    rows = digest.run_checks(checks)
    out.append("Worked numbers of the source material, recomputed with losskit")
    out.append("")
    out += _sources_paragraph(width)
    out.append("")
    out += _table(("check", "section", "source says", "losskit computes", "ok"),
                  [(r.label, c.section, r.source_says, r.losskit_computes, _ok_text(r.ok))
                   for c, r in zip(checks, rows)], width=width, wrap=(0, 3))
    failed = [r for r in rows if r.ok is False]
    skipped = [r for r in rows if r.ok is None]
    passed = len(rows) - len(failed) - len(skipped)
    summary = f"{passed} of {len(rows)} agree"
    if failed:
        summary += f", {len(failed)} FAIL"
    if skipped:
        summary += f", {len(skipped)} could not run (a losskit module failed to import)"
    out += ["", summary, ""]

    mse, ce = saturation("mse"), saturation("cross_entropy")
    out.append("Saturation: one sigmoid neuron, x = 1, w0 = ln 9, b = 0 (fixed), y = 0.5,")
    out.append("eta = 0.2, plain gradient descent on w until 1/2 (a - y)^2 < 0.001")
    out.append(f"  MSE          1/2 (a-y)^2   dL/dz = (a-y) a (1-a):  {mse.updates} updates")
    out.append(f"  cross-entropy               dL/dz = a - y:          {ce.updates} updates")
    for res, title in ((mse, "MSE"), (ce, "cross-entropy")):
        out.append("")
        out.append(f"{title} trajectory (step 1, every {args.every} steps, the last step, final "
                   "state):")
        table_rows = [(str(s.step), f"{s.w:.4f}", f"{s.a:.4f}", f"{s.loss:.5f}",
                       f"{s.mse:.5f}", f"{s.grad:.5f}", f"{s.w_next:.4f}")
                      for s in res.milestones(args.every)]
        table_rows.append(("final", f"{res.final_w:.4f}", f"{res.final_a:.4f}",
                           f"{res.final_loss:.5f}", f"{res.final_mse:.5f}", "", ""))
        out += ["  " + line for line in _table(
            ("step", "w", "a", "loss", "1/2(a-y)^2", "dL/dw", "w next"), table_rows,
            width=width - 2)]
    if not (mse.converged and ce.converged):
        out.append("")
        out.append("FAIL: the saturation experiment did not converge")
    print("\n".join(_fit(out, width)), flush=True)
    return not failed and not skipped and mse.converged and ce.converged


def _training_summary(histories) -> list[str]:
    from ..lab.training import LOSS_TITLES

    rows = []
    for loss, h in histories.items():
        reached = h.epochs_to(0.9)
        rows.append((LOSS_TITLES[loss], f"{h.train_loss[-1]:.4f}",
                     f"{100 * h.train_accuracy[-1]:.1f}%", f"{100 * h.test_accuracy[-1]:.1f}%",
                     "never" if reached is None else str(reached)))
    return _table(("loss", "final train loss", "train acc", "test acc",
                   "epochs to 90% test acc"), rows, width=_terminal_width() - 2,
                  wrap=(4,))


def _train_description(data, args) -> list[str]:
    model = ("linear (softmax regression)" if args.model == "linear"
             else "MLP, one hidden layer of 32 ReLU units")
    return _fit([
        f"  data:  {data.x_train.shape[0]} train / {data.x_test.shape[0]} test images, "
        f"{data.num_features} standardised pixels,",
        f"         {data.num_classes} classes (split seed {args.seed})",
        f"  model: {model}; SGD lr {args.lr:g}, batch 32, {args.epochs} epochs",
        "         (the same initial weights and mini-batch order for every loss)",
    ], _terminal_width())


def _training_part(args: argparse.Namespace) -> bool:
    """Part 2 of the demo: the digits classifier with three losses. Returns ``ok``."""
    from ..lab.training import LOSS_TITLES, TRAIN_LOSSES, check_gradients, load_digits

    print("\nA softmax classifier on scikit-learn's digits, trained with three losses")
    if _missing("sklearn"):
        print("  skipped: this part needs scikit-learn and matplotlib (the `demo` extra):\n"
              f"    {_INSTALL_DEMO}")
        return True
    data = load_digits(seed=args.seed)
    out = _train_description(data, args)
    out.append("")
    out.append("  the harness's backward pass against central differences")
    out.append("  (losskit.gradcheck, 16 examples):")
    ok = True
    for loss in TRAIN_LOSSES:
        results = check_gradients(data, loss, model=args.model, seed=args.seed)
        good = all(results.values())
        ok &= good
        worst = max(r.max_rel_error for r in results.values())
        out.append(f"    {LOSS_TITLES[loss]:<22} {_ok_text(good):<4}  "
                   f"(max rel error {worst:.1e})")
    print("\n".join(_fit(out, _terminal_width())), flush=True)

    from ..lab.experiments import compare_losses

    histories = compare_losses(data, model=args.model, epochs=args.epochs, lr=args.lr,
                               seed=args.seed, progress=_progress(args))
    finite = all(math.isfinite(v) for h in histories.values() for v in h.train_loss)
    out = [""] + ["  " + line for line in _training_summary(histories)]
    out.append("  (each loss in its own units; the hinge sums up to K - 1 = 9 violations")
    out.append("   per example, so at the same learning rate it takes the largest steps)")
    if not finite:
        out.append("  FAIL: a training loss became inf or NaN (try a smaller --lr)")
    print("\n".join(_fit(out, _terminal_width())), flush=True)
    ok &= finite

    if _missing("matplotlib"):
        print(f"\n  plots skipped: they need matplotlib: {_INSTALL_DEMO}")
        return ok
    from ..lab.experiments import saturation, saturation_gradients
    from ..lab.plots import plot_learning_curves, plot_saturation

    folder = _out_dir(args.out)
    curves = plot_learning_curves(
        histories, os.path.join(folder, "learning_curves.png"),
        title=f"digits, {args.model} model, SGD lr {args.lr:g}")
    sat = plot_saturation(saturation_gradients(), saturation("mse"),
                          saturation("cross_entropy"), os.path.join(folder, "saturation.png"))
    print(f"\n  learning curves: {curves}\n  saturation:      {sat}")
    return ok


def _cmd_demo(args: argparse.Namespace) -> int:
    ok = _worked_numbers_and_saturation(args)
    ok &= _training_part(args)
    return 0 if ok else 1


# --------------------------------------------------------------------------- experiment
def _experiment_saturation(args) -> int:
    from ..lab.experiments import saturation, saturation_gradients

    g = saturation_gradients()
    picks = (-10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0)
    rows = []
    for zv in picks:
        i = int(abs(g.z - zv).argmin())
        rows.append((f"{g.z[i]:g}", f"{g.a[i]:.5f}",
                     _signed(g.mse[1.0][i]), _signed(g.cross_entropy[1.0][i]),
                     _signed(g.mse[0.0][i]), _signed(g.cross_entropy[0.0][i])))
    mse, ce = saturation("mse"), saturation("cross_entropy")
    width = _terminal_width()
    out = ["dL/dz for a sigmoid output a = sigmoid(z): MSE 1/2 (a - y)^2 gives",
           "(a - y) a (1 - a), cross-entropy gives a - y", ""]
    out += _table(("z", "a", "MSE y=1", "CE y=1", "MSE y=0", "CE y=0"), rows)
    out += ["", "at z = -10 with target 1 (confidently wrong) MSE's gradient has all but",
            "vanished; CE's is about -1.", "",
            "one neuron trained until 1/2 (a - y)^2 < 0.001:",
            f"MSE {mse.updates} updates, cross-entropy {ce.updates} updates"]
    print("\n".join(_fit(out, width)), flush=True)
    ok = mse.converged and ce.converged

    def draw(folder):
        from ..lab.plots import plot_saturation
        return [plot_saturation(g, mse, ce, os.path.join(folder, "saturation.png"))]

    return _plot_or_fail(draw, args, ok)


def _experiment_convexity(args) -> int:
    from ..lab.experiments import convexity

    r = convexity()
    span = r.nonconvex_range()
    ce_min, mse_min = float(r.ce_second.min()), float(r.mse_second.min())
    ce_convex = ce_min >= -1e-9
    mse_nonconvex = span is not None
    out = ["Loss of one example (3 classes, true class 0) as the true class's logit t",
           "moves from -8 to 8, other logits 0; second differences",
           f"(f(t+h) - 2 f(t) + f(t-h)) / h^2 with h = {r.t[1] - r.t[0]:g}:", ""]
    out += _table(("loss", "smallest second difference", "convex on this line"), [
        ("softmax cross-entropy", _sci(ce_min), "yes" if ce_convex else "NO"),
        ("MSE on softmax", _sci(mse_min), "no" if mse_nonconvex else "yes"),
    ], width=_terminal_width(), wrap=(1, 2))
    if span is not None:
        out += ["", f"MSE on softmax curves downwards for t in [{span[0]:g}, {span[1]:g}]:",
                "a bounded loss that flattens out where the true class is unlikely (a",
                "plateau for gradient descent); cross-entropy keeps a slope of about -1",
                "there and is convex everywhere."]
    ok = ce_convex and mse_nonconvex
    if not ok:
        out += ["", "FAIL: expected cross-entropy convex and MSE on softmax not convex"]
    print("\n".join(_fit(out, _terminal_width())), flush=True)

    def draw(folder):
        from ..lab.plots import plot_convexity
        return [plot_convexity(r, os.path.join(folder, "convexity.png"))]

    return _plot_or_fail(draw, args, ok)


def _sci(value: float) -> str:
    """``+1.234e-05`` in scientific notation, and zero as ``0`` (never ``-0.000e+00``)."""
    return "0" if value == 0.0 else f"{value:+.3e}"


def _experiment_compare(args) -> int:
    if _missing("sklearn"):
        print(f"losskit experiment compare: error: the digits dataset needs scikit-learn: "
              f"{_INSTALL_DEMO}", file=sys.stderr)
        return 1
    from ..lab.experiments import compare_losses
    from ..lab.training import load_digits

    data = load_digits(seed=args.seed)
    print("A softmax classifier on scikit-learn's digits, trained with three losses")
    print("\n".join(_train_description(data, args)), flush=True)
    histories = compare_losses(data, model=args.model, epochs=args.epochs, lr=args.lr,
                               seed=args.seed, progress=_progress(args))
    print("\n".join([""] + _training_summary(histories)), flush=True)
    ok = all(math.isfinite(v) for h in histories.values() for v in h.train_loss)
    if not ok:
        print("FAIL: a training loss became inf or NaN (try a smaller --lr)")

    def draw(folder):
        from ..lab.plots import plot_learning_curves
        return [plot_learning_curves(
            histories, os.path.join(folder, "compare.png"),
            title=f"digits, {args.model} model, SGD lr {args.lr:g}")]

    return _plot_or_fail(draw, args, ok)


def _plot_or_fail(draw, args, ok: bool) -> int:
    """Draw the experiment's PNGs into ``--out``, print where; the exit status."""
    if _missing("matplotlib"):
        print(f"losskit experiment: error: the plots need matplotlib: {_INSTALL_DEMO}",
              file=sys.stderr)
        return 1
    paths = draw(_out_dir(args.out))
    print("")
    for path in paths:
        print(f"wrote {path}")
    return 0 if ok else 1


def _experiment_boosting(args) -> int:
    missing = [m for m in ("lightgbm", "sklearn") if _missing(m)]
    if missing:
        print(f"losskit experiment boosting: error: it needs {' and '.join(missing)}: "
              f"{_INSTALL_DEMO}", file=sys.stderr)
        return 1
    from ..lab.experiments import boosting_focal

    r = boosting_focal(seed=args.seed)
    width = _terminal_width()
    print_wrapped = lambda text: print("\n".join(_wrap_to(text, width)))  # noqa: E731
    print_wrapped(f"LightGBM on rare positives: scikit-learn's make_classification, "
          f"{r.n_train + r.n_test:,} rows, {r.positive_rate:.1%} positive, half held out; "
          f"{r.rounds[-1]} rounds, learning rate {r.learning_rate:g}, {r.num_leaves} "
          f"leaves. Objectives from losskit.gbdt (exact gradients and Hessians): log loss "
          f"(sigmoid_binary_cross_entropy) and focal loss (sigmoid_focal_loss, gamma "
          f"{r.gamma:g}, alpha None: the focusing term alone).")
    labels = list(r.average_precision)
    rows = []
    for i, rnd in enumerate(r.rounds):
        if rnd in (10, 25, 50, 100, 200) or i == len(r.rounds) - 1:
            rows.append((str(rnd), *(f"{r.average_precision[k][i]:.4f}" for k in labels),
                         *(f"{r.roc_auc[k][i]:.4f}" for k in labels),
                         *(f"{r.log_loss[k][i]:.4f}" for k in labels)))
    short = [k.replace(" ", "") for k in labels]
    head = ("round", *(f"AP {k}" for k in short), *(f"AUC {k}" for k in short),
            *(f"LL {k}" for k in short))
    print("")
    print_wrapped("AP: test average precision (area under the precision-recall curve); "
                  "AUC: test ROC AUC; LL: test log loss of sigmoid(score).")
    print("\n".join(_table(head, rows, width=width)))
    print("")
    for k in labels:
        rnd, best = r.best(k)
        print(f"best test average precision, {k}: {best:.4f} (round {rnd})")
    print_wrapped(f"test log loss at the last round: log loss "
                  f"{r.log_loss['log loss'][-1]:.4f}, focal {r.log_loss['focal'][-1]:.4f} "
                  "(focal scores are not calibrated probabilities)")
    ok = all(math.isfinite(x) for v in r.average_precision.values() for x in v)

    def draw(folder):
        from ..lab.plots import plot_boosting
        return [plot_boosting(r, os.path.join(folder, "boosting.png"))]

    return _plot_or_fail(draw, args, ok)


_EXPERIMENTS = {
    "saturation": _experiment_saturation,
    "convexity": _experiment_convexity,
    "compare": _experiment_compare,
    "boosting": _experiment_boosting,
}


def _cmd_experiment(args: argparse.Namespace) -> int:
    return _EXPERIMENTS[args.name](args)


# --------------------------------------------------------------------------- list, explain
def _catalog_lines(losses, width: int) -> list[str]:
    """The catalog as lines of at most ``width``: one row per loss (name, prediction,
    family, formula in plain text) where that fits, else the formula on the lines below
    its row, indented."""
    rows = [(loss.name, loss.prediction, loss.family, latex_to_text(loss.formula))
            for loss in losses]
    wide = _table(("name", "prediction", "family", "formula"), rows)
    if max(len(line) for line in wide) <= width:
        return wide
    header, rule, *blocks = _table_blocks(("name", "prediction", "family"),
                                          [r[:3] for r in rows], width=width, wrap=(1, 2))
    out = header + _wrap_to("formula", width, "  ") + rule
    for block, row in zip(blocks, rows):
        out += block + _wrap_to(row[3], width, "  ", "      ")
    return _fit(out, width)


def _cmd_list(args: argparse.Namespace) -> int:
    from ..core.loss import catalog

    print("\n".join(_catalog_lines(catalog(args.family), _terminal_width())))
    return 0


def _plain(text: str) -> str:
    """Docstring markup as plain text: ``:math:`x``` becomes ``x`` in plain-text math
    (:func:`~losskit.cli.text.latex_to_text`), ````x```` becomes ``x``."""
    text = re.sub(r":math:`([^`]*)`", lambda m: latex_to_text(m.group(1)), text)
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text)
    return re.sub(r"``([^`]*)``", r"\1", text)


def _usage_lines(loss, width: int) -> list[str]:
    args = ", ".join(loss.info()["inputs"])
    call = f"  value, grad = lk.{loss.name}.value_and_grad("
    if len(call) + len(args) + 1 <= width:
        return [call + args + ")"]
    return [call] + _wrap_to(args + ")", width, "      ")


#: ``loss.second_order`` in words, for ``losskit explain``
_SECOND_ORDER = {
    "diagonal": "diagonal; lk.<loss>.hessian gives it, .grad_and_hessian both",
    "dense": "couples each row's elements; .hessian gives the diagonal, .hvp(..., vector=v) "
             "the exact product",
    "zero": "0 almost everywhere (piecewise linear), undefined at the kinks; "
            "gradient-boosting objectives use the sample weight instead",
}


def _explanation(loss, width: int = 80) -> list[str]:
    from ..core.loss import REDUCTIONS

    info = loss.info()
    doc = _plain((type(loss).__doc__ or "").strip()).splitlines()
    out = [f"{loss.name}  (family: {loss.family})"]
    if info["aliases"]:
        out += _wrap_to(f"aliases: {', '.join(info['aliases'])}", width, "", "  ")
    if doc:
        out += _wrap_to(doc[0], width)
    out += ["",
            f"prediction:  {loss.prediction}",
            f"target:      {loss.target}",
            f"inputs:      {', '.join(info['inputs'])}  "
            f"(.grad differentiates: {', '.join(info['differentiable'])})",
            "", "formula:"]
    out += _wrap_to(latex_to_text(loss.formula), width, "  ", "      ")
    out += ["gradient:"]
    out += _wrap_to(latex_to_text(loss.gradient_formula), width, "  ", "      ")
    out += ["Hessian:"]
    if loss.second_order:
        out += _wrap_to(latex_to_text(loss.hessian_formula), width, "  ", "      ")
        out += _wrap_to(f"second order: {_SECOND_ORDER[loss.second_order]}", width, "  ",
                        "    ")
    else:
        out += _wrap_to("none in closed form (the prediction is not per element or per "
                        "row)", width, "  ", "    ")
    out += _wrap_to(f"(LaTeX in lk.{loss.name}.formula, .gradient_formula and "
                    ".hessian_formula;", width, "  ", "   ")
    out += ["   `losskit atlas` renders it)"]
    out += ["", "options (keyword-only) and defaults:"]
    rows = [("reduction", repr("mean"), "one of " + ", ".join(REDUCTIONS)),
            ("sample_weight", "None", "non-negative weight per example")]
    from ..core.docstrings import option_notes

    notes = option_notes(type(loss).__doc__)
    rows += [(k, repr(v), _plain(notes.get(k, ""))) for k, v in info["options"].items()]
    out += ["  " + line for line in _table(("option", "default", "note"), rows,
                                           width=width - 2, wrap=(1, 2))[2:]]
    out += ["", "when to use:"] + _wrap_to(loss.when_to_use, width, "  ")
    if info["references"]:
        out += ["", "references:"]
        for ref in info["references"]:
            out += _wrap_to(ref, width, "  - ", "    ")
    out += ["", "usage:", "  import losskit as lk"] + _usage_lines(loss, width)
    return _fit(out, width)


def _cmd_explain(args: argparse.Namespace) -> int:
    from ..evaluate import find_loss

    try:
        loss = find_loss(args.name)
    except ValueError as exc:  # unknown name: the message suggests the closest ones
        print(f"losskit explain: error: {exc}", file=sys.stderr)
        return 2
    plot = args.plot
    if plot is not None and os.path.splitext(plot)[1].lower() not in (".png", ".svg", ".pdf"):
        print(f"losskit explain: error: --plot FILE must end in .png (or .svg/.pdf); "
              f"got {plot!r}", file=sys.stderr)
        return 2
    print("\n".join(_explanation(loss, _terminal_width())), flush=True)
    if plot is None:
        return 0
    from ..lab.plots import loss_curve_or_reason, plot_loss_curve

    curve, reason = loss_curve_or_reason(loss)
    if curve is None:
        print(f"\nplot skipped: no curve for {loss.name}: {reason}. Nothing was written "
              f"to {plot}.", file=sys.stderr)
        return 0
    if _missing("matplotlib"):
        print(f"losskit explain: error: --plot needs matplotlib: {_INSTALL_DEMO}",
              file=sys.stderr)
        return 1
    folder = os.path.dirname(plot)
    if folder:
        _out_dir(folder)
    path = plot_loss_curve(curve, plot)
    print(f"\nwrote {path}: value and gradient against the prediction ({curve.setting})")
    return 0


# --------------------------------------------------------------------------- parser
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number; got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None


def _folder(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("expected a folder name; got ''")
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
    return text


def _training_options(p: argparse.ArgumentParser, *, out_default: str) -> None:
    p.add_argument("--out", type=_folder, default=out_default, metavar="DIR",
                   help=f"folder for the PNGs (created if needed; default: {out_default})")
    p.add_argument("--epochs", type=_positive_int, default=30, metavar="N",
                   help="epochs of training per loss (default: 30)")
    p.add_argument("--model", choices=("linear", "mlp"), default="linear",
                   help="linear softmax classifier or a one-hidden-layer ReLU MLP "
                        "(default: linear)")
    p.add_argument("--lr", type=_positive_float, default=0.03, metavar="ETA",
                   help="SGD learning rate, the same for every loss (default: 0.03)")
    p.add_argument("--seed", type=_int, default=0,
                   help="seed of the split, the initial weights and the batch order "
                        "(default: 0)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is shown only when stderr is a terminal)")


def _plugin_commands():
    """``add_commands`` of ``losskit.cli.tools`` (doctor, atlas, eval), or None."""
    try:
        from .tools import add_commands
    except ModuleNotFoundError as exc:
        if exc.name == __package__ + ".tools":
            return None
        print(f"losskit: note: extra commands unavailable ({exc})", file=sys.stderr)
        return None
    except ImportError as exc:
        print(f"losskit: note: extra commands unavailable ({exc})", file=sys.stderr)
        return None
    return add_commands


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that fits the terminal: prose paragraphs of descriptions and epilogs are
    filled to its width; blocks with indented lines (examples, file formats) are kept as
    written."""

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for para in re.split(r"\n[ \t]*\n", text):
            lines = para.splitlines()
            if any(line[:1].isspace() for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append("\n".join(_wrap_to(para, max(width, 20), indent)))
        return "\n\n".join(paragraphs)


class _Parser(argparse.ArgumentParser):
    """``argparse`` with no abbreviations (``--epoch`` is an error naming it, never a
    silent ``--epochs``), unknown options answered with the closest real one, and help
    filled to the terminal's width."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        if kwargs.get("formatter_class", argparse.RawDescriptionHelpFormatter) in (
                argparse.RawDescriptionHelpFormatter, argparse.HelpFormatter):
            kwargs["formatter_class"] = _HelpFormatter
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self._unrecognized(extras)
        return namespace

    def _unrecognized(self, extras) -> None:
        message = f"unrecognized arguments: {' '.join(extras)}"
        options = [o for action in self._actions for o in action.option_strings
                   if o.startswith("--")]
        for extra in extras:
            if extra.startswith("--"):
                close = difflib.get_close_matches(extra.split("=", 1)[0], options, n=1)
                if close:
                    message += f" ({extra}: did you mean {close[0]}?)"
        self.error(message)


class _SubParser(_Parser):
    """A subcommand's parser: arguments it does not know are its error, shown with its
    own usage (argparse would hand them up to ``losskit``'s usage)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self._unrecognized(extras)
        return namespace, extras


def _list_every_command(sub) -> None:
    """``losskit --help`` lists every subcommand: one added without ``help=`` (argparse
    leaves those out) is listed with the first sentence of its description."""
    try:
        listed = {id(sub.choices[action.dest]) for action in sub._choices_actions}
        for name, parser in sub.choices.items():
            if id(parser) in listed:
                continue
            summary = (parser.description or "").strip().split("\n\n")[0]
            summary = " ".join(summary.split()).split(". ")[0].rstrip(".")
            sub._choices_actions.append(sub._ChoicesPseudoAction(name, (), summary))
            listed.add(id(parser))
    except AttributeError:  # argparse's internals changed: the listing stays argparse's
        pass


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``losskit`` command.

    Subcommands ``demo``, ``experiment``, ``list`` and ``explain``, plus those that
    ``losskit.cli.tools.add_commands(subparsers)`` adds when that module exists. Each
    subparser sets ``func``: ``func(args) -> int``, the exit status.
    """
    from ..core import __version__

    parser = _Parser(
        prog="losskit",
        description="Loss functions with exact closed-form gradients: worked examples, "
                    "experiments and the catalog.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"losskit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                parser_class=_SubParser)

    demo = sub.add_parser(
        "demo", help="the sources' worked numbers, MSE vs CE saturation, digits training",
        description="Print each worked number of the source material next to what losskit "
                    "computes and the saturation experiment (one sigmoid neuron trained with "
                    "MSE and with cross-entropy); then train a softmax classifier on "
                    "scikit-learn's bundled digits with softmax cross-entropy, MSE on the "
                    "softmax output and the multiclass hinge, print a summary table and "
                    "write learning curves (PNG). The training part needs the `demo` extra "
                    f"({_INSTALL_DEMO}); without it it is skipped with a note. Exit status 1 "
                    "if any check disagrees.",
        epilog="examples:\n"
               "  losskit demo\n"
               "  losskit demo --every 25 --out figs\n"
               "  losskit demo --model mlp --epochs 20 --no-progress",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--every", type=_positive_int, default=50, metavar="N",
                      help="show every N-th step of the trajectories (default: 50)")
    _training_options(demo, out_default="losskit-demo")
    demo.set_defaults(func=_cmd_demo)

    exp = sub.add_parser(
        "experiment",
        help="one lesson as numbers and PNGs: saturation, convexity, compare, boosting",
        description="saturation: dL/dz of MSE and cross-entropy against the pre-activation "
                    "of a sigmoid output, and the 287 vs 53 learning curves. convexity: "
                    "MSE-on-softmax (not convex) vs cross-entropy (convex) along a logit, "
                    "with second differences. compare: learning curves of the three losses "
                    "on the digits. boosting: LightGBM with focal loss vs log loss on rare "
                    "positives (losskit.gbdt objectives; only --seed and --out apply). "
                    "Each prints its numbers and writes PNGs to --out.",
        epilog="examples:\n"
               "  losskit experiment saturation\n"
               "  losskit experiment convexity --out figs\n"
               "  losskit experiment compare --model mlp --epochs 20 --lr 0.1\n"
               "  losskit experiment boosting",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    exp.add_argument("name", choices=tuple(_EXPERIMENTS), metavar="NAME",
                     help="one of: " + ", ".join(_EXPERIMENTS))
    _training_options(exp, out_default="losskit-experiments")
    exp.set_defaults(func=_cmd_experiment)

    lst = sub.add_parser(
        "list", help="print the catalog of losses",
        description="Print every loss: its name, what its prediction is, its family and "
                    "its formula (as plain text; `losskit atlas` renders the LaTeX). The "
                    "output fits the terminal's width ($COLUMNS; 80 when not a terminal).",
        epilog="examples:\n  losskit list\n  losskit list --family classification",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    lst.add_argument("--family", default=None,
                     help="only the losses of this family (e.g. regression, classification)")
    lst.set_defaults(func=_cmd_list)

    exp_ = sub.add_parser(
        "explain", help="one loss in full: formulas, inputs, options, when to use",
        description="Print a loss's formula and gradient formula (as plain text), what its "
                    "prediction and target are, its options with their defaults, when to "
                    "use it and its references. With --plot, draw its value and gradient "
                    "against the prediction for a representative target (skipped, with a "
                    "note, where no 1-D curve makes sense).",
        epilog="examples:\n"
               "  losskit explain softmax_cross_entropy\n"
               "  losskit explain huber --plot huber.png\n"
               "  losskit explain mean_squared_error      (aliases work too)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    exp_.add_argument("name", metavar="NAME", help="a loss name or alias (see `losskit list`)")
    exp_.add_argument("--plot", metavar="FILE.png", default=None,
                      help="write the value and gradient curves to this PNG")
    exp_.set_defaults(func=_cmd_explain)

    add_commands = _plugin_commands()
    if add_commands is not None:
        add_commands(sub)
    _list_every_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``losskit`` command; returns the exit status instead of exiting.

    0 on success, 1 when a check fails, 2 on a usage error (the message goes to stderr).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        commands = next(a for a in parser._actions
                        if isinstance(a, argparse._SubParsersAction)).choices
        print(f"\nlosskit: error: a command is required ({', '.join(commands)})",
              file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except ValueError as exc:  # e.g. an unknown --family: say so, no traceback
        print(f"losskit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `losskit list | head`: the reader left; exit quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except OSError as exc:  # e.g. an output folder that cannot be created
        print(f"losskit {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nlosskit {args.command}: interrupted", file=sys.stderr)
        return 130
