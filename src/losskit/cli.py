r"""The ``losskit`` command line.

``losskit demo`` recomputes the source material's worked numbers and reruns the
saturation experiment; ``losskit list`` prints the catalog of losses. Nothing here
touches the network, and every command finishes in about a second.

Examples
--------
>>> from losskit.cli import main
>>> main(["list", "--family", "regression"])  # doctest: +ELLIPSIS
name...prediction...family...formula
...
mse...real...regression...\ell = (y - t)^2
0
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]

_EPILOG = """\
examples:
  losskit demo               worked numbers of the sources, then MSE vs cross-entropy
                             on one sigmoid neuron (287 vs 53 updates)
  losskit demo --every 25    the same, with every 25th step of the trajectories
  losskit list               the catalog: every loss, its input and its formula
  losskit list --family regression
  python -m losskit demo     the same without the console script

exit status: 0 on success; 1 when a worked number does not agree; 2 on a usage error.
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain-text columns, left aligned, two spaces apart (ASCII only)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _ok_text(ok: bool | None) -> str:
    return {True: "ok", False: "FAIL", None: "skip"}[ok]


# --------------------------------------------------------------------------- commands
def _cmd_demo(args: argparse.Namespace) -> int:
    from .digest import run_checks
    from .experiments import saturation

    out = []
    rows = run_checks()
    out.append("Worked numbers of the source material, recomputed with losskit")
    out.append("")
    out += _table(("check", "source says", "losskit computes", "ok"),
                  [(r.label, r.source_says, r.losskit_computes, _ok_text(r.ok)) for r in rows])
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
    out.append("Saturation: one sigmoid neuron, x = 1, w0 = ln 9, b = 0 (fixed), y = 0.5, "
               "eta = 0.2,")
    out.append("plain gradient descent on w until 1/2 (a - y)^2 < 0.001")
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
            ("step", "w", "a", "loss", "1/2(a-y)^2", "dL/dw", "w next"), table_rows)]
    if not (mse.converged and ce.converged):
        out.append("")
        out.append("FAIL: the saturation experiment did not converge")
    print("\n".join(out))
    ok = not failed and not skipped and mse.converged and ce.converged
    return 0 if ok else 1


def _cmd_list(args: argparse.Namespace) -> int:
    from . import catalog

    losses = catalog(args.family)
    rows = [(loss.name, loss.prediction, loss.family, loss.formula) for loss in losses]
    print("\n".join(_table(("name", "prediction", "family", "formula"), rows)))
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``losskit`` command (subcommands ``demo`` and ``list``)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="losskit",
        description="Loss functions with exact closed-form gradients: worked examples and "
                    "the catalog.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"losskit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                title="commands")

    demo = sub.add_parser(
        "demo", help="recompute the sources' worked numbers; MSE vs CE saturation",
        description="Print each worked number of the source material next to what losskit "
                    "computes, then the saturation experiment (one sigmoid neuron trained "
                    "with MSE and with cross-entropy). Exit status 1 if any number disagrees.",
        epilog="example:\n  losskit demo --every 25",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_argument("--every", type=_positive_int, default=50, metavar="N",
                      help="show every N-th step of the trajectories (default: 50)")
    demo.set_defaults(func=_cmd_demo)

    lst = sub.add_parser(
        "list", help="print the catalog of losses",
        description="Print every loss: its name, what its prediction is, its family and "
                    "its formula (LaTeX).",
        epilog="examples:\n  losskit list\n  losskit list --family classification",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    lst.add_argument("--family", default=None,
                     help="only the losses of this family (e.g. regression, classification)")
    lst.set_defaults(func=_cmd_list)
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
        print("\nlosskit: error: a command is required (demo, list)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except ValueError as exc:  # e.g. an unknown --family: say so, no traceback
        print(f"losskit {args.command}: error: {exc}", file=sys.stderr)
        return 2
