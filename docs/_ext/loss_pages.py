"""Sphinx extension: one page per loss of ``lk.catalog()``, written at build time.

Every page is made from the registry and the loss's own docstring, the sources that
``losskit explain`` and ``losskit atlas`` use too (``Loss.info()``, the LaTeX of
``.formula`` and ``.gradient_formula``, ``.when_to_use``, the docstring's summary,
Parameters and Examples through :mod:`losskit.core.docstrings`, the value/gradient curve
of :func:`losskit.lab.plots.loss_curve_or_reason` drawn by
:func:`losskit.lab.plots.plot_loss_curve`), plus the loss's row of
``docs/conventions.md`` (how to get the same number from PyTorch, Keras and Optax). A new
loss in the registry gets its page, its line in ``losses/index`` and its plot with no
hand work.

Files are rewritten only when their text changes, so an incremental build rereads only
the pages whose loss changed.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from sphinx.application import Sphinx

FAMILY_TITLES = {
    "regression": "Regression",
    "classification": "Classification",
    "margin": "Margin",
    "divergence": "Divergences",
    "overlap": "Overlap (segmentation)",
    "boxes": "Bounding boxes",
    "metric_learning": "Metric learning",
    "representation": "Representation learning (contrastive)",
    "ranking": "Ranking (learning to rank)",
    "sequence": "Sequences (CTC)",
}
COMMON_OPTIONS = ("reduction", "sample_weight", "validate")


# --------------------------------------------------------------------------- text helpers
def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _write_bytes_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _heading(text: str, char: str) -> str:
    return f"{text}\n{char * len(text)}\n"


def _indent(text: str, by: str = "   ") -> str:
    return "\n".join(by + line if line.strip() else "" for line in text.splitlines())


def _escape_rst(text: str) -> str:
    """Plain text safe in reStructuredText (no accidental emphasis, substitution or
    reference)."""
    return re.sub(r"([\\*|_`])", r"\\\1", text)


def markdown_cell_to_rst(cell: str) -> str:
    r"""One cell of docs/conventions.md's table (Markdown: ``code``, **bold**) as inline
    reStructuredText.

    >>> markdown_cell_to_rst("`f(y)` = `g(y)` (any **mean**)s")
    '``f(y)`` = ``g(y)`` (any **mean**)s'
    >>> markdown_cell_to_rst("`a`b and x_ *y*")
    '``a``\\ b and x\\_ \\*y\\*'
    """
    tokens: list[tuple[bool, str]] = []  # (is inline markup, rst text)
    for part in re.split(r"(`[^`]*`)", cell):
        if len(part) >= 2 and part.startswith("`") and part.endswith("`"):
            if part[1:-1]:
                tokens.append((True, f"``{part[1:-1]}``"))
            continue
        for piece in re.split(r"(\*\*[^*]+\*\*)", part):
            if len(piece) > 4 and piece.startswith("**") and piece.endswith("**"):
                tokens.append((True, f"**{_escape_rst(piece[2:-2])}**"))
            elif piece:
                tokens.append((False, _escape_rst(piece)))
    out = ""
    prev_markup = False
    for markup, text in tokens:
        # inline markup must be separated from a word by a space, or an escaped one
        if out and ((prev_markup and re.match(r"[\w(]", text)) or
                    (markup and re.search(r"[\w)]$", out))):
            out += "\\ "
        out += text
        prev_markup = markup
    return out


def conventions_rows(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """``(library names, {loss name: [one cell per library]})`` from the table of
    docs/conventions.md whose first column is the loss name."""
    header: list[str] = []
    rows: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if cells and cells[0] == "loss":
            header = cells[1:]
            continue
        m = re.fullmatch(r"`([a-z0-9_]+)`", cells[0]) if cells else None
        if m and header and len(cells) == len(header) + 1:
            rows[m.group(1)] = cells[1:]
    return header, rows


# --------------------------------------------------------------------------- one page
def _options_table(loss) -> str:
    from losskit.core.docstrings import parameter_notes, parameter_types

    doc = type(loss).__doc__
    notes, types = parameter_notes(doc), parameter_types(doc)
    defaults = loss.option_defaults()
    names = list(defaults) + [n for n in COMMON_OPTIONS if n in notes and n not in defaults]
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 18 22 60", "",
             "   * - option", "     - default", "     - meaning"]
    for name in names:
        default = defaults.get(name, _common_default(name))
        lines += [f"   * - ``{name}``", f"     - ``{default!r}``",
                  "     - " + (notes.get(name) or _escape_rst(types.get(name, "")) or "")]
    return "\n".join(lines) + "\n"


def _common_default(name: str):
    return {"reduction": "mean", "sample_weight": None, "validate": True}.get(name)


def _curve(loss, plots_dir: Path) -> str:
    from losskit.lab.plots import loss_curve_or_reason, plot_loss_curve

    curve, reason = loss_curve_or_reason(loss)
    if curve is None:
        return (f"No 1-D curve: {_escape_rst(reason.rstrip('.'))}. The gallery draws such "
                "losses on examples of their own (:doc:`/auto_examples/index`).\n")
    png = plots_dir / f"{loss.name}.png"
    tmp = plots_dir / f".{loss.name}.tmp.png"
    plot_loss_curve(curve, tmp)
    _write_bytes_if_changed(png, tmp.read_bytes())
    tmp.unlink()
    return (f".. figure:: _plots/{loss.name}.png\n"
            f"   :alt: value and gradient of {loss.name}\n"
            "   :width: 100%\n\n"
            f"   Value and closed-form gradient against the prediction ({curve.setting}); "
            f"the same curves as ``losskit explain {loss.name} --plot``.\n")


def loss_page(loss, plots_dir: Path, libraries: list[str], row: list[str] | None) -> str:
    from losskit.core.docstrings import section, summary

    info = loss.info()
    doc = type(loss).__doc__
    out = [f".. _loss-{loss.name}:\n", _heading(loss.name, "=")]
    facts = [("family", f":ref:`{FAMILY_TITLES.get(loss.family, loss.family)} "
                        f"<family-{loss.family}>`"),
             ("aliases", ", ".join(f"``{a}``" for a in info["aliases"]) or "none"),
             ("prediction", _escape_rst(loss.prediction)),
             ("target", _escape_rst(loss.target)),
             ("inputs", ", ".join(f"``{n}``" for n in info["inputs"])),
             ("differentiable", ", ".join(f"``{n}``" for n in info["differentiable"]))]
    out.append("\n".join(f":{k}: {v}" for k, v in facts) + "\n")
    out.append(summary(doc) + "\n")
    out.append(_heading("Formula", "-"))
    out.append(".. math::\n\n" + _indent(loss.formula) + "\n")
    out.append(_heading("Gradient", "-"))
    out.append(".. math::\n\n" + _indent(loss.gradient_formula) + "\n")
    out.append(_heading("When to use", "-"))
    out.append(loss.when_to_use + "\n")
    out.append(_heading("Options", "-"))
    out.append("Keyword-only, after the positional inputs "
               f"(``{', '.join(info['inputs'])}``).\n")
    out.append(_options_table(loss))
    out.append(_heading("Value and gradient", "-"))
    out.append(_curve(loss, plots_dir))
    example = section(doc, "Examples")
    if example:
        out.append(_heading("Example", "-"))
        out.append(example + "\n")
        out.append(f"Value and gradient from one pass: ``value, grad = "
                   f"lk.{loss.name}.value_and_grad({', '.join(info['inputs'])})``.\n")
    if row is not None:
        out.append(_heading("The same number in other libraries", "-"))
        out.append("From :doc:`/conventions` (each cell is checked against the library in "
                   "``tests/catalog/test_conventions.py``); ``y`` prediction, ``z`` logits, "
                   "``t`` target, ``c`` integer labels.\n")
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 14 86", "",
                 "   * - library", "     - recipe"]
        for lib, cell in zip(libraries, row):
            lines += [f"   * - {_escape_rst(lib)}", f"     - {markdown_cell_to_rst(cell)}"]
        out.append("\n".join(lines) + "\n")
    if info["references"]:
        out.append(_heading("References", "-"))
        out.append("\n".join(f"- {_escape_rst(r)}" for r in info["references"]) + "\n")
    out.append(_heading("Full docstring", "-"))
    cls = type(loss)
    signature = str(inspect.signature(loss))
    out.append(f"``lk.{loss.name}`` is an instance of this class; calling it runs the "
               "loss.\n")
    out.append(f".. autoclass:: {cls.__module__}.{cls.__qualname__}{signature}\n"
               "   :no-index:\n")
    return "\n".join(out)


def index_page(losses) -> str:
    out = [".. _loss-index:\n", _heading("Losses", "="),
           f"Every loss of ``lk.catalog()`` ({len(losses)} in all), by family. Each page "
           "gives the formula and its closed-form gradient, the options, a plot of value "
           "and gradient, an example, and how to get the same number from PyTorch, Keras "
           "and Optax. ``losskit list`` prints the same catalog in a terminal and "
           "``losskit explain NAME`` one loss.\n"]
    families: dict[str, list] = {}
    for loss in losses:
        families.setdefault(loss.family, []).append(loss)
    order = [f for f in FAMILY_TITLES if f in families] + sorted(
        f for f in families if f not in FAMILY_TITLES)
    from losskit.core.docstrings import summary

    for family in order:
        out.append(f".. _family-{family}:\n")
        out.append(_heading(FAMILY_TITLES.get(family, family), "-"))
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 24 18 58", "",
                 "   * - loss", "     - prediction", "     - summary"]
        for loss in families[family]:
            lines += [f"   * - :doc:`{loss.name}`", f"     - {_escape_rst(loss.prediction)}",
                      f"     - {summary(type(loss).__doc__)}"]
        out.append("\n".join(lines) + "\n")
    out.append(".. toctree::\n   :hidden:\n\n" +
               "\n".join(f"   {loss.name}" for f in order for loss in families[f]) + "\n")
    return "\n".join(out)


# --------------------------------------------------------------------------- the hook
def generate(app: Sphinx) -> None:
    import losskit as lk

    src = Path(app.srcdir)
    folder = src / "losses"
    plots = folder / "_plots"
    plots.mkdir(parents=True, exist_ok=True)
    libraries, rows = conventions_rows(src / "conventions.md")
    losses = sorted(lk.catalog(), key=lambda loss: loss.name)
    keep = {"index.rst"}
    for loss in losses:
        _write(folder / f"{loss.name}.rst", loss_page(loss, plots, libraries,
                                                         rows.get(loss.name)))
        keep.add(f"{loss.name}.rst")
    _write(folder / "index.rst", index_page(losses))
    for stale in folder.glob("*.rst"):
        if stale.name not in keep:
            stale.unlink()


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
