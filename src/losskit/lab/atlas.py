r"""The loss atlas: one self-contained HTML page with every loss of the catalog.

:func:`build_atlas` writes a single ``.html`` file that opens offline in any browser and
loads nothing from anywhere: the CSS is inline, the curves are inline SVG drawn here
from losskit's own values and closed-form gradients, and each formula is shown as its
LaTeX source (in ``<code>``) under an image rendered with matplotlib's mathtext (a
base64 PNG; formulas mathtext cannot typeset, such as ``cases`` environments, keep only
their source).

Per loss: its name and aliases, family, what its prediction and target are, formula and
gradient formula, when to use it, its options with their defaults, its references, and
the value and gradient against the prediction for a representative target, the same
curves ``losskit explain NAME --plot`` draws (:func:`losskit.lab.plots.loss_curve`); for
divergences, one example of two classes against the target distribution (0.8, 0.2).
Losses with no meaningful 1-D curve (boxes, masks, embeddings) say why instead.

A final section holds the two lessons of :mod:`losskit.lab.experiments`: the saturation of
MSE after a sigmoid (:math:`\partial L/\partial z` of MSE and cross-entropy against the
pre-activation :math:`z`) and the convexity of softmax cross-entropy against MSE on the
softmax output along one logit.

matplotlib (the ``demo`` extra) is needed for the formula images only; without it the
formulas are shown as source.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["build_atlas", "atlas_html", "svg_plot", "Series"]

# Okabe-Ito colours, as in losskit.lab.plots
_BLUE, _ORANGE, _GREEN, _RED, _GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#777777"

#: the order of the families on the page (others follow, alphabetically)
_FAMILY_ORDER = ("regression", "classification", "margin", "divergence", "overlap",
                 "metric_learning", "representation", "ranking", "sequence", "boxes")

_FAMILY_TITLES = {
    "regression": "Regression",
    "classification": "Classification",
    "margin": "Margin (hinge) losses",
    "divergence": "Divergences",
    "metric_learning": "Metric learning",
    "representation": "Representation learning (contrastive)",
    "ranking": "Ranking (learning to rank)",
    "sequence": "Sequences (CTC)",
    "overlap": "Overlap (segmentation)",
    "boxes": "Bounding boxes",
}


# ----------------------------------------------------------------------------- SVG plots
@dataclass(frozen=True)
class Series:
    """One line of an :func:`svg_plot`."""

    y: Any
    colour: str = _BLUE
    label: str = ""
    dashed: bool = False
    x: Any = None  # default: the plot's x


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * power >= raw:
            return m * power
    return 10.0 * power  # pragma: no cover


def _ticks(lo: float, hi: float) -> tuple[float, float, list[float]]:
    """A padded range and round tick values covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-12 * max(1.0, abs(lo), abs(hi)):
        pad = max(abs(lo) * 0.1, 0.5)
        lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo)
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    n = int(round((stop - start) / step))
    return start, stop, [start + i * step for i in range(n + 1)]


def _fmt(v: float) -> str:
    if abs(v) < 1e-12:
        return "0"
    text = f"{v:.4g}"
    return text.replace("-", "\u2212")


def _num(v, *, sign: bool = True) -> str:
    """A table number: 5 decimals, or 3 significant digits when it is tiny."""
    v = float(v)
    plus = "+" if sign else ""
    if v != 0 and abs(v) < 1e-3:
        return f"{v:{plus}.2e}"
    return f"{v:{plus}.5f}"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def svg_plot(x, series: Sequence[Series], *, title: str = "", xlabel: str = "",
             ylabel: str = "", width: int = 440, height: int = 290, zero_line: bool = True,
             shade: tuple[float, float] | None = None, shade_label: str = "",
             legend: str = "upper right") -> str:
    """A line plot as an inline ``<svg>`` element (no scripts, no external references).

    Non-finite points break a line instead of stretching the axes. ``shade`` draws a
    band over an x-interval. The SVG scales with its container (``viewBox``).

    >>> from losskit.lab.atlas import Series, svg_plot
    >>> svg = svg_plot([0, 1, 2], [Series([0, 1, 4], label="y = x^2")], title="square")
    >>> svg.startswith("<svg") and "polyline" in svg and "square" in svg
    True
    """
    x = np.asarray(x, dtype=np.float64)
    left, right, top, bottom = 62, 14, 30 if title else 12, 46 if xlabel else 28
    pw, ph = width - left - right, height - top - bottom
    xs = [np.asarray(s.x if s.x is not None else x, dtype=np.float64) for s in series]
    ys = [np.asarray(s.y, dtype=np.float64) for s in series]
    finite_y = np.concatenate([y[np.isfinite(y)] for y in ys] or [np.zeros(0)])
    finite_x = np.concatenate([v[np.isfinite(v)] for v in xs] or [np.zeros(0)])
    x0, x1 = (float(finite_x.min()), float(finite_x.max())) if finite_x.size else (0.0, 1.0)
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    y0, y1, yticks = _ticks(float(finite_y.min()) if finite_y.size else 0.0,
                            float(finite_y.max()) if finite_y.size else 1.0)
    _, _, xticks = _ticks(x0, x1)
    xticks = [t for t in xticks if x0 - 1e-9 * (x1 - x0) <= t <= x1 + 1e-9 * (x1 - x0)]

    def sx(v):
        return left + (v - x0) / (x1 - x0) * pw

    def sy(v):
        return top + (y1 - v) / (y1 - y0) * ph

    out = [f'<svg viewBox="0 0 {width} {height}" class="plot" role="img" '
           f'aria-label="{_e(title or ylabel)}">']
    out.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>')
    if shade is not None:
        a, b = max(shade[0], x0), min(shade[1], x1)
        if b > a:
            out.append(f'<rect x="{sx(a):.1f}" y="{top}" width="{sx(b) - sx(a):.1f}" '
                       f'height="{ph}" fill="{_ORANGE}" fill-opacity="0.13"/>')
    for t in yticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
                   'stroke="#e4e4e4" stroke-width="1"/>')
        out.append(f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end" '
                   f'class="tick">{_fmt(t)}</text>')
    for t in xticks:
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{top + ph}" '
                   'stroke="#e4e4e4" stroke-width="1"/>')
        out.append(f'<text x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle" '
                   f'class="tick">{_fmt(t)}</text>')
    if zero_line and y0 < 0 < y1:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" '
                   f'stroke="{_GREY}" stroke-width="1"/>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" '
               'stroke="#333" stroke-width="1"/>')
    for s, xv, yv in zip(series, xs, ys):
        ok = np.isfinite(xv) & np.isfinite(yv)
        dash = ' stroke-dasharray="7 4"' if s.dashed else ""
        i, n = 0, xv.size
        while i < n:  # one polyline per run of finite points
            if not ok[i]:
                i += 1
                continue
            j = i
            while j < n and ok[j]:
                j += 1
            pts = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(xv[i:j], yv[i:j]))
            out.append(f'<polyline points="{pts}" fill="none" stroke="{s.colour}" '
                       f'stroke-width="2.2" stroke-linejoin="round"{dash}/>')
            i = j
    labelled = [s for s in series if s.label]
    if shade_label and shade is not None:
        labelled = labelled + [Series([], _ORANGE, shade_label)]
    if labelled:
        row = 16
        box_w = min(pw - 8, 12 + 30 + 6.3 * max(len(s.label) for s in labelled))
        box_h = 8 + row * len(labelled)
        bx = left + pw - box_w - 6 if legend.endswith("right") else left + 6
        by = top + 6 if legend.startswith("upper") else top + ph - box_h - 6
        out.append(f'<rect x="{bx:.1f}" y="{by}" width="{box_w:.1f}" height="{box_h}" '
                   'fill="#fff" fill-opacity="0.9" stroke="#ccc"/>')
        for k, s in enumerate(labelled):
            ly = by + 4 + row * k + row / 2
            if not len(s.y) and shade_label and s.label == shade_label:
                out.append(f'<rect x="{bx + 6:.1f}" y="{ly - 5:.1f}" width="26" height="10" '
                           f'fill="{_ORANGE}" fill-opacity="0.25"/>')
            else:
                dash = ' stroke-dasharray="7 4"' if s.dashed else ""
                out.append(f'<line x1="{bx + 6:.1f}" x2="{bx + 32:.1f}" y1="{ly:.1f}" '
                           f'y2="{ly:.1f}" stroke="{s.colour}" stroke-width="2.2"{dash}/>')
            out.append(f'<text x="{bx + 38:.1f}" y="{ly + 4:.1f}" class="legend">'
                       f'{_e(s.label)}</text>')
    if title:
        out.append(f'<text x="{left + pw / 2:.1f}" y="{top - 10}" text-anchor="middle" '
                   f'class="title">{_e(title)}</text>')
    if xlabel:
        out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" '
                   f'class="label">{_e(xlabel)}</text>')
    if ylabel:
        cy = top + ph / 2
        out.append(f'<text x="14" y="{cy:.1f}" text-anchor="middle" class="label" '
                   f'transform="rotate(-90 14 {cy:.1f})">{_e(ylabel)}</text>')
    out.append("</svg>")
    return "".join(out)


# ----------------------------------------------------------------------------- formulas
_MATHTEXT_FIXES = (
    (r"\tfrac", r"\frac"), (r"\dfrac", r"\frac"),
    (r"\lVert", r"\Vert"), (r"\rVert", r"\Vert"),
    (r"\bigl", ""), (r"\bigr", ""), (r"\Bigl", ""), (r"\Bigr", ""),
    (r"\biggl", ""), (r"\biggr", ""), (r"\top", "T"),
)


def _mathtext_source(tex: str) -> str:
    out = tex
    for old, new in _MATHTEXT_FIXES:
        out = out.replace(old, new)
    out = re.sub(r"\\operatorname\{([^{}]*)\}", r"\\mathrm{\1}", out)
    out = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", out)  # \frac12: braces needed
    return out


def formula_png(tex: str, *, dpi: int = 130) -> bytes | None:
    """``tex`` typeset by matplotlib's mathtext as PNG bytes; None where it cannot be.

    mathtext knows a large subset of LaTeX math but not environments (``cases``) or line
    breaks; those formulas are shown as source only.
    """
    if "\\begin" in tex or "\\\\" in tex:
        return None
    try:
        from matplotlib import mathtext
    except ImportError:
        return None
    buf = io.BytesIO()
    try:
        mathtext.math_to_image(f"${_mathtext_source(tex)}$", buf, dpi=dpi, format="png")
    except Exception:  # a parse error: mathtext raises several kinds
        return None
    return buf.getvalue()


def _formula_block(title: str, tex: str, css_id: str) -> str:
    png = formula_png(tex)
    img = ""
    if png is not None:
        data = base64.b64encode(png).decode("ascii")
        img = (f'<div class="rendered"><img src="data:image/png;base64,{data}" '
               f'alt="{_e(tex)}"></div>')
    else:
        img = '<div class="rendered none">(shown as LaTeX source only)</div>'
    return (f'<div class="formula" id="{css_id}"><div class="ftitle">{_e(title)}</div>{img}'
            f'<code class="latex">{_e(tex)}</code></div>')


#: what each ``second_order`` says, in the atlas
SECOND_ORDER_WORDS = {
    "diagonal": "diagonal (each element's own second derivative)",
    "dense": "dense (couples the elements of a row: .hessian is the diagonal, .hvp the "
             "exact product)",
    "zero": "zero almost everywhere (piecewise linear; undefined at the kinks)",
}


def _hessian_block(loss, name: str) -> str:
    """The Hessian's formula and structure, or a line saying there is none."""
    if not loss.second_order:
        return ('<div class="formula nohessian"><div class="ftitle">Hessian</div>'
                '<div class="rendered none">no closed-form Hessian (the prediction is not '
                'per element or per row)</div></div>')
    block = _formula_block(f"Hessian: {SECOND_ORDER_WORDS[loss.second_order]}",
                           loss.hessian_formula, f"hessian-{_e(name)}")
    return block


# ----------------------------------------------------------------------------- curves
def _curve_block(loss) -> tuple[str, bool]:
    from .plots import loss_curve_or_reason

    curve, reason = loss_curve_or_reason(loss)
    if curve is None:
        return (f'<p class="nocurve"><strong>No curve.</strong> {_e(_capital(reason))}.</p>',
                False)
    value = svg_plot(curve.x, [Series(curve.value, _BLUE)], title=f"{loss.name}: value",
                     xlabel=curve.xlabel, ylabel="loss")
    grad = svg_plot(curve.x, [Series(curve.grad, _RED)],
                    title=f"{loss.name}: gradient (closed form)", xlabel=curve.xlabel,
                    ylabel=curve.ylabel)
    caption = (f"Value and closed-form gradient against the prediction ({curve.setting}); "
               "the same curves as <code>losskit explain "
               f"{_e(loss.name)} --plot</code>.")
    return (f'<figure class="curves"><div class="panels">{value}{grad}</div>'
            f"<figcaption>{caption}</figcaption></figure>", True)


def _capital(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:]


# ----------------------------------------------------------------------------- text
def _inline(text: str) -> str:
    """Docstring markup to HTML: ``:math:`x```, double backticks and *emphasis*."""
    out = []
    pattern = re.compile(r":[a-z]+:`([^`]*)`|``([^`]*)``|\*([^*\s][^*]*)\*")
    pos = 0
    for m in pattern.finditer(text):
        out.append(_e(text[pos:m.start()]))
        if m.group(1) is not None or m.group(2) is not None:
            out.append(f"<code>{_e(m.group(1) if m.group(1) is not None else m.group(2))}"
                       "</code>")
        else:
            out.append(f"<em>{_e(m.group(3))}</em>")
        pos = m.end()
    out.append(_e(text[pos:]))
    return "".join(out)


def _summary(loss) -> str:
    from ..core.docstrings import summary

    return summary(type(loss).__doc__)


def _no_urls(text: str) -> str:
    """A reference's text with any web address written without its scheme."""
    return re.sub(r"https?://", "", text)


def _loss_article(loss) -> tuple[str, bool]:
    from ..core.docstrings import option_notes
    from ..core.loss import REDUCTIONS

    info = loss.info()
    name = loss.name
    aliases = (f' <span class="aliases">alias{"es" if len(info["aliases"]) > 1 else ""}: '
               f'{", ".join(_e(a) for a in info["aliases"])}</span>' if info["aliases"] else "")
    facts = [
        ("family", _e(loss.family)),
        ("prediction", _e(loss.prediction)),
        ("target", _e(loss.target)),
        ("inputs", _e(", ".join(info["inputs"]))),
        ("differentiable", _e(", ".join(info["differentiable"]))),
    ]
    options = [("reduction", repr("mean"), "one of " + ", ".join(REDUCTIONS)),
               ("sample_weight", "None", "non-negative weight per example")]
    notes = option_notes(type(loss).__doc__)
    options += [(k, repr(v), notes.get(k, "")) for k, v in info["options"].items()]
    rows = "".join(f"<tr><td><code>{_e(k)}</code></td><td><code>{_e(v)}</code></td>"
                   f"<td>{_inline(n)}</td></tr>" for k, v, n in options)
    curve, has_curve = _curve_block(loss)
    refs = ""
    if info["references"]:
        refs = ("<h4>References</h4><ul class=\"refs\">"
                + "".join(f"<li>{_e(_no_urls(r))}</li>" for r in info["references"])
                + "</ul>")
    args = ", ".join(info["inputs"])
    body = f"""
<article class="loss" id="loss-{_e(name)}" data-family="{_e(loss.family)}">
<h3><a class="anchor" href="#loss-{_e(name)}">{_e(name)}</a>{aliases}</h3>
<p class="summary">{_inline(_summary(loss))}</p>
<dl class="facts">{"".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)}</dl>
<div class="formulas">
{_formula_block("loss", loss.formula, f"formula-{_e(name)}")}
{_formula_block("gradient", loss.gradient_formula, f"gradient-{_e(name)}")}
{_hessian_block(loss, name)}
</div>
<h4>When to use</h4>
<p class="when">{_inline(loss.when_to_use)}</p>
{curve}
<h4>Options (keyword-only) and defaults</h4>
<table class="options"><thead><tr><th>option</th><th>default</th><th>note</th></tr></thead>
<tbody>{rows}</tbody></table>
<p class="usage"><code>value, grad = lk.{_e(name)}.value_and_grad({_e(args)})</code></p>
{refs}
</article>"""
    return body, has_curve


# ----------------------------------------------------------------------------- experiments
def _experiments_section() -> str:
    from .experiments import convexity, saturation, saturation_gradients

    g = saturation_gradients()
    mse_run, ce_run = saturation("mse"), saturation("cross_entropy")
    sat_svg = svg_plot(
        g.z,
        [Series(g.mse[1.0], _ORANGE, "MSE, y = 1: (a\u2212y) a (1\u2212a)"),
         Series(g.cross_entropy[1.0], _BLUE, "cross-entropy, y = 1: a \u2212 y"),
         Series(g.mse[0.0], _ORANGE, "MSE, y = 0", dashed=True),
         Series(g.cross_entropy[0.0], _BLUE, "cross-entropy, y = 0", dashed=True)],
        title="dL/dz for a sigmoid output a = \u03c3(z)", xlabel="pre-activation z",
        ylabel="dL/dz", width=640, height=360, legend="upper left")
    picks = (-10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0)
    rows = []
    for zv in picks:
        i = int(np.abs(g.z - zv).argmin())
        rows.append(f"<tr><td>{_fmt(float(g.z[i]))}</td><td>{_num(g.a[i], sign=False)}</td>"
                    f"<td>{_num(g.mse[1.0][i])}</td>"
                    f"<td>{_num(g.cross_entropy[1.0][i])}</td></tr>")
    r = convexity()
    span = r.nonconvex_range()
    along = "t = logit of the true class (others 0)"
    conv_v = svg_plot(r.t, [Series(r.ce, _BLUE, "softmax cross-entropy (convex)"),
                            Series(r.mse_softmax, _ORANGE, "MSE on softmax (not convex)")],
                      title="loss along one logit", xlabel=along, ylabel="loss")
    conv_s = svg_plot(r.t_inner, [Series(r.ce_second, _BLUE, "cross-entropy"),
                                  Series(r.mse_second, _ORANGE, "MSE on softmax")],
                      title="second differences (\u2248 second derivative)", xlabel=along,
                      ylabel="(f(t+h) \u2212 2f(t) + f(t\u2212h)) / h\u00b2",
                      shade=span,
                      shade_label="MSE curves down" if span else "", legend="upper right")
    span_text = (f"MSE on the softmax curves downwards for t in [{span[0]:g}, {span[1]:g}]"
                 if span else "no negative second difference was found")
    return f"""
<section class="family" id="experiments">
<h2>Experiments</h2>
<article class="experiment" id="experiment-saturation">
<h3>Saturation: why MSE after a sigmoid learns slowly</h3>
<p>One sigmoid output <code>a = σ(z)</code>. By the chain rule the squared error
<code>½ (a − y)²</code> has <code>dL/dz = (a − y) a (1 − a)</code>, while the binary
cross-entropy of the logit has <code>dL/dz = a − y</code>: the factor <code>a (1 − a)</code>
cancels. Where the sigmoid saturates (<code>|z|</code> large) MSE's gradient vanishes
<em>even when the output is completely wrong</em> (target 1 at <code>z → −∞</code>), while
cross-entropy's stays near <code>−1</code>. Computed with <code>lk.l2_loss.grad</code>
(chained through <code>σ'(z) = a (1 − a)</code>) and
<code>lk.sigmoid_binary_cross_entropy.grad</code>.</p>
<figure class="wide">{sat_svg}<figcaption>dL/dz against z, targets 1 (solid) and 0
(dashed).</figcaption></figure>
<table class="numbers"><thead><tr><th>z</th><th>a = σ(z)</th><th>MSE dL/dz, y = 1</th>
<th>cross-entropy dL/dz, y = 1</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
<p>Trained on one neuron (x = 1, w₀ = ln 9, target y = 0.5, learning rate 0.2) until
<code>½ (a − y)² &lt; 0.001</code>: MSE needs <strong>{mse_run.updates}</strong> updates,
cross-entropy <strong>{ce_run.updates}</strong>.</p>
</article>
<article class="experiment" id="experiment-convexity">
<h3>Convexity: cross-entropy vs MSE on the softmax</h3>
<p>One example with 3 classes, true class 0; the true class's logit <code>t</code> moves
from −8 to 8, the other logits stay 0. Softmax cross-entropy
<code>logsumexp(z) − z_y</code> is convex in the logits (its Hessian
<code>diag(p) − p pᵀ</code> is positive semi-definite); the squared error of the
probabilities <code>‖softmax(z) − e_y‖²</code> is bounded and flattens out as
<code>t → −∞</code>, so it must curve downwards there: {span_text}, a plateau for
gradient descent. Smallest second difference: cross-entropy
<strong>{float(r.ce_second.min()):+.3e}</strong>, MSE on softmax
<strong>{float(r.mse_second.min()):+.3e}</strong> (step h = {r.t[1] - r.t[0]:g}).</p>
<figure class="curves"><div class="panels">{conv_v}{conv_s}</div>
<figcaption>Left: both losses along the line. Right: their second differences; the
shaded band is where MSE on the softmax is not convex.</figcaption></figure>
</article>
</section>"""


# ----------------------------------------------------------------------------- the page
_CSS = """
:root { --ink: #1d1d1f; --muted: #5a5a60; --line: #d9d9de; --accent: #0072B2;
        --bg: #fafafa; --card: #ffffff; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans",
       Helvetica, Arial, sans-serif; color: var(--ink); background: var(--bg); }
header.top { background: #12304a; color: #fff; padding: 28px 40px 22px; }
header.top h1 { margin: 0 0 6px; font-size: 30px; }
header.top p { margin: 4px 0; max-width: 70em; color: #dce6ef; }
header.top code { background: rgba(255, 255, 255, .16); color: #fff; }
.layout { display: flex; align-items: flex-start; }
nav#contents { position: sticky; top: 0; flex: 0 0 250px; max-height: 100vh; overflow: auto;
               padding: 18px 12px 30px 24px; font-size: 14px; border-right: 1px solid var(--line);
               background: #f2f3f5; }
nav#contents h2 { font-size: 15px; margin: 8px 0 4px; }
nav#contents ul { list-style: none; margin: 0 0 8px; padding: 0 0 0 8px; }
nav#contents a { color: var(--accent); text-decoration: none; }
nav#contents a:hover { text-decoration: underline; }
main { flex: 1; min-width: 0; padding: 10px 36px 60px; }
section.family > h2 { font-size: 24px; margin: 34px 0 12px; padding-bottom: 4px;
                      border-bottom: 2px solid var(--accent); }
article { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
          padding: 16px 24px 10px; margin: 0 0 22px; }
article h3 { margin: 0 0 4px; font-size: 21px; font-family: "DejaVu Sans Mono", Menlo,
             Consolas, monospace; }
article.experiment h3 { font-family: inherit; }
article h4 { margin: 16px 0 6px; font-size: 15px; color: var(--muted);
             text-transform: uppercase; letter-spacing: .04em; }
a.anchor { color: inherit; text-decoration: none; }
.aliases { font-size: 14px; font-weight: normal; color: var(--muted); margin-left: 10px;
           font-family: inherit; }
.summary { margin: 2px 0 10px; font-size: 17px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px;
           margin: 8px 0 12px; font-size: 15px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.formulas { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.formula { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
           background: #fcfcfd; min-width: 0; }
.ftitle { font-size: 13px; color: var(--muted); text-transform: uppercase;
          letter-spacing: .04em; }
.rendered { overflow-x: auto; padding: 4px 0; }
.rendered img { max-width: 100%; height: auto; }
.rendered.none { font-size: 13px; color: var(--muted); font-style: italic; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.88em;
       background: #f0f1f4; padding: 1px 4px; border-radius: 3px; }
code.latex { display: block; white-space: pre-wrap; word-break: break-word; margin-top: 4px;
             font-size: 12.5px; color: #333; }
figure { margin: 12px 0; }
.panels { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
svg.plot { width: 100%; height: auto; display: block; border: 1px solid #eee;
           font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
svg.plot .tick { font-size: 11px; fill: #444; }
svg.plot .label { font-size: 12px; fill: #222; }
svg.plot .title { font-size: 13px; font-weight: bold; fill: #111; }
svg.plot .legend { font-size: 11px; fill: #222; }
figure.wide svg.plot { max-width: 760px; }
figcaption { font-size: 14px; color: var(--muted); margin-top: 4px; }
p.nocurve { background: #fff7e6; border-left: 4px solid #E69F00; padding: 8px 12px;
            margin: 12px 0; font-size: 15px; }
table { border-collapse: collapse; font-size: 14px; margin: 4px 0 10px; }
th, td { text-align: left; padding: 3px 14px 3px 0; border-bottom: 1px solid #ececf0;
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
table.numbers td { font-family: "DejaVu Sans Mono", Menlo, monospace; }
.refs { margin: 0 0 8px; padding-left: 20px; font-size: 14px; }
.usage { font-size: 14px; }
footer { color: var(--muted); font-size: 13px; padding: 20px 40px 40px; }
@media (max-width: 1000px) {
  .layout { display: block; }
  nav#contents { position: static; max-height: none; border-right: 0; }
  .formulas, .panels { grid-template-columns: 1fr; }
}
"""


def atlas_html(*, family: str | None = None) -> str:
    """The atlas page as a string (see :func:`build_atlas`)."""
    from ..core import __version__
    from ..core.loss import catalog

    losses = catalog(family)
    families: dict[str, list] = {}
    rank = {f: i for i, f in enumerate(_FAMILY_ORDER)}
    for loss in sorted(losses, key=lambda x: (rank.get(x.family, len(rank)), x.family)):
        families.setdefault(loss.family, []).append(loss)
    nav, sections = [], []
    curves = 0
    for fam, members in families.items():
        title = _FAMILY_TITLES.get(fam, fam.replace("_", " ").capitalize())
        nav.append(f'<h2><a href="#family-{_e(fam)}">{_e(title)}</a></h2><ul>'
                   + "".join(f'<li><a href="#loss-{_e(m.name)}">{_e(m.name)}</a></li>'
                             for m in members) + "</ul>")
        articles = []
        for loss in members:
            body, has_curve = _loss_article(loss)
            curves += has_curve
            articles.append(body)
        sections.append(f'<section class="family" id="family-{_e(fam)}">'
                        f"<h2>{_e(title)} <small>({len(members)})</small></h2>"
                        + "".join(articles) + "</section>")
    nav.append('<h2><a href="#experiments">Experiments</a></h2><ul>'
               '<li><a href="#experiment-saturation">saturation</a></li>'
               '<li><a href="#experiment-convexity">convexity</a></li></ul>')
    scope = f" of the family <code>{_e(family)}</code>" if family else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="losskit {_e(__version__)}">
<title>losskit atlas</title>
<style>{_CSS}</style>
</head>
<body>
<header class="top">
<h1>losskit atlas</h1>
<p>Every loss in losskit's catalog{scope} ({len(losses)} losses, {curves} with curves):
what it takes, its formula and closed-form gradient, when to use it, its options, and its
value and gradient drawn from losskit itself. Then two experiments: saturation and
convexity.</p>
<p>Formulas are given as LaTeX source under each rendered image. This page is
self-contained: it loads nothing from the network.</p>
</header>
<div class="layout">
<nav id="contents" aria-label="contents">{"".join(nav)}</nav>
<main>
{"".join(sections)}
{_experiments_section()}
</main>
</div>
<footer>Generated by <code>losskit atlas</code> (losskit {_e(__version__)}).</footer>
</body>
</html>
"""


def build_atlas(path, *, family: str | None = None) -> str:
    """Write the atlas to ``path`` (an ``.html`` file) and return the path.

    ``family`` keeps only the losses of one family (``lk.catalog(family)``). The folder
    is created if needed. A suffix other than ``.html``/``.htm`` is a ``ValueError``.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from losskit.lab.atlas import build_atlas
    >>> out = build_atlas(Path(tempfile.mkdtemp()) / "atlas.html", family="margin")
    >>> text = Path(out).read_text(encoding="utf-8")
    >>> 'id="loss-hinge"' in text and 'id="experiment-saturation"' in text
    True
    """
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() not in (".html", ".htm"):
        raise ValueError(f"the atlas is an HTML page: the file name must end in .html; got "
                         f"{path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder; give the name of the .html file to write")
    page = atlas_html(family=family)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
