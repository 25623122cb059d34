"""``losskit atlas OUT.html``: one self-contained page with every loss of the catalog.

The real command writes the page once (a fresh ``python -m losskit`` process); the page is
parsed for its structure (one article per catalog loss, its ids, formulas as LaTeX source,
no network references) and, where Debian's ``chromium`` is installed, rendered headless
to a screenshot that must not be blank. The curve helpers are checked against formulas.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import losskit as lk
from losskit.lab.atlas import Series, _ticks, formula_png, svg_plot
from losskit.lab.plots import loss_curve_or_reason
from losskit.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


class _Page(HTMLParser):
    """Every element with its attributes, the articles, and text by element id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.articles: dict[str, dict] = {}
        self._article = None
        self._stack: list[tuple[str, dict]] = []
        self.code_latex: dict[str, list[str]] = {}
        self._code = None
        self._formula = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "article" and "loss" in (attrs.get("class") or "").split():
            self._article = {"id": attrs["id"], "svg": 0, "nocurve": False, "img": 0,
                             "family": attrs.get("data-family")}
            self.articles[attrs["id"]] = self._article
        if self._article is not None:
            if tag == "svg":
                self._article["svg"] += 1
            if tag == "p" and "nocurve" in (attrs.get("class") or ""):
                self._article["nocurve"] = True
            if tag == "img":
                self._article["img"] += 1
        if tag == "div" and attrs.get("class") == "formula":
            self._formula = attrs["id"]
        if tag == "code" and attrs.get("class") == "latex":
            self._code = self._formula
            self.code_latex[self._code] = []

    def handle_endtag(self, tag):
        if tag == "article":
            self._article = None
        if tag == "code":
            self._code = None

    def handle_data(self, data):
        if self._code is not None:
            self.code_latex[self._code].append(data)


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    """The page written by the real command, and its parse."""
    folder = tmp_path_factory.mktemp("atlas")
    out = folder / "sub" / "atlas.html"
    proc = subprocess.run([sys.executable, "-m", "losskit", "atlas", str(out)],
                          capture_output=True, text=True, cwd=folder, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    text = out.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return out, text, page


@pytest.fixture(scope="module")
def fresh_catalog():
    """The catalog of a fresh ``import losskit`` (this process may have registered more
    losses by importing private modules, e.g. for their doctests)."""
    code = ("import json, losskit; print(json.dumps([dict(name=l.name, family=l.family, "
            "formula=l.formula, gradient_formula=l.gradient_formula, "
            "hessian_formula=l.hessian_formula, second_order=l.second_order) "
            "for l in losskit.catalog()]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [type("L", (), d) for d in json.loads(proc.stdout)]


def test_one_article_per_catalog_loss(atlas, fresh_catalog):
    _, _, page = atlas
    losses = fresh_catalog
    assert len(losses) >= 10
    assert sorted(page.articles) == sorted(f"loss-{loss.name}" for loss in losses)
    ids = [attrs["id"] for _, attrs in page.tags if "id" in attrs]
    assert len(ids) == len(set(ids)), "ids must be unique"
    for loss in losses:
        art = page.articles[f"loss-{loss.name}"]
        assert art["family"] == loss.family
        for kind in ("formula", "gradient"):
            assert f"{kind}-{loss.name}" in ids
        # each formula's LaTeX source, verbatim (the parser unescapes the entities)
        assert "".join(page.code_latex[f"formula-{loss.name}"]) == loss.formula
        assert "".join(page.code_latex[f"gradient-{loss.name}"]) == loss.gradient_formula
        # the Hessian's formula where the loss states one
        if loss.second_order:
            assert "".join(page.code_latex[f"hessian-{loss.name}"]) == loss.hessian_formula
        else:
            assert f"hessian-{loss.name}" not in ids
        # two curves (value, gradient) or a sentence saying why there are none
        assert (art["svg"] == 2) != art["nocurve"], (loss.name, art)


def test_curves_where_they_make_sense(atlas, fresh_catalog):
    _, text, page = atlas
    assert page.articles["loss-mse"]["svg"] == 2
    assert page.articles["loss-softmax_cross_entropy"]["svg"] == 2
    for loss in fresh_catalog:
        if loss.family in ("boxes", "overlap"):
            art = page.articles[f"loss-{loss.name}"]
            assert art["nocurve"] and art["svg"] == 0, loss.name
    if any(loss.family == "overlap" for loss in fresh_catalog):
        assert "no 1-D curve represents it" in text


def test_experiments_section(atlas):
    _, text, page = atlas
    ids = {attrs.get("id") for _, attrs in page.tags}
    assert {"experiments", "experiment-saturation", "experiment-convexity"} <= ids
    # the sources' numbers: 287 vs 53 updates
    assert "<strong>287</strong>" in text and "<strong>53</strong>" in text
    # dL/dz at z = -10, target 1: MSE (a-1) a (1-a), cross-entropy a - 1
    a = 1.0 / (1.0 + math.exp(10.0))
    assert f"{(a - 1) * a * (1 - a):+.2e}" in text
    assert f"{a - 1:+.5f}" in text


def test_self_contained(atlas):
    _, text, page = atlas
    assert not re.search(r"https?:", text)
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert "@import" not in text and "url(" not in text
    for tag, attrs in page.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is None:
                continue
            if key == "src":
                assert value.startswith("data:image/png;base64,"), (tag, value[:40])
            else:
                assert value.startswith("#"), (tag, value)
    anchors = {attrs["href"][1:] for tag, attrs in page.tags if tag == "a"}
    ids = {attrs.get("id") for _, attrs in page.tags}
    assert anchors <= ids, anchors - ids


def test_family_filter_and_errors(tmp_path, capsys):
    out = tmp_path / "m.html"
    assert main(["atlas", str(out), "--family", "margin"]) == 0
    page = _Page()
    page.feed(out.read_text(encoding="utf-8"))
    assert sorted(page.articles) == sorted(f"loss-{loss.name}" for loss in lk.catalog("margin"))
    capsys.readouterr()
    assert main(["atlas", str(tmp_path / "m.html"), "--family", "nope"]) == 2
    err = capsys.readouterr().err
    assert "losskit atlas: error:" in err and "regression" in err
    assert main(["atlas", str(tmp_path / "m.png")]) == 2
    assert "must be an .html file" in capsys.readouterr().err
    assert main(["atlas", "--help"]) == 0
    assert "losskit atlas atlas.html" in capsys.readouterr().out


# ----------------------------------------------------------------------------- helpers
def test_ticks_are_round_and_cover_the_range():
    assert _ticks(0.0, 4.0)[2] == [0.0, 1.0, 2.0, 3.0, 4.0]
    lo, hi, ticks = _ticks(-0.93, 0.41)
    assert lo <= -0.93 and hi >= 0.41
    assert np.allclose(np.diff(ticks), 0.5) and ticks[0] == -1.0 and ticks[-1] == 0.5
    lo, hi, ticks = _ticks(2.0, 2.0)  # a flat line still gets a range
    assert lo < 2.0 < hi


def test_svg_plot_maps_points_and_breaks_at_non_finite():
    svg = svg_plot([0.0, 1.0, 2.0, 3.0, 4.0], [Series([0.0, 1.0, np.nan, 3.0, 4.0])],
                   width=200, height=100, title="t", xlabel="x", ylabel="y")
    lines = re.findall(r'<polyline points="([^"]*)"', svg)
    assert len(lines) == 2  # the NaN splits the line
    pts = [tuple(map(float, p.split(","))) for line in lines for p in line.split()]
    xs, ys = zip(*pts)
    # x = 0 at the left edge of the plot box, x = 4 at the right; y = 4 at the top
    left, right, top = 62, 200 - 14, 30
    assert xs[0] == pytest.approx(left) and xs[-1] == pytest.approx(right)
    assert ys[-1] == pytest.approx(top) and ys[0] > ys[-1]
    # equal steps in x map to equal steps in pixels
    assert xs[1] - xs[0] == pytest.approx((right - left) / 4, abs=0.1)


def test_formula_png_renders_or_declines():
    png = formula_png(r"\ell = \tfrac12 (y - t)^2")
    if png is None:
        pytest.skip("matplotlib is not installed")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert formula_png(r"\ell = \begin{cases} a & b \\ c & d \end{cases}") is None


def test_divergence_curve_against_the_formula():
    names = {loss.name: loss for loss in lk.catalog()}
    if "kl_divergence" not in names:
        pytest.skip("kl_divergence is not in the catalog")
    curve, reason = loss_curve_or_reason(names["kl_divergence"])
    assert curve is not None, reason
    # x is log q_0 of q = (q_0, (1 - q_0)/2, (1 - q_0)/2); the target is (0.6, 0.2, 0.2)
    q0 = np.exp(curve.x)
    q1 = (1.0 - q0) / 2
    expected = 0.6 * np.log(0.6 / q0) + 2 * 0.2 * np.log(0.2 / q1)
    np.testing.assert_allclose(curve.value, expected, rtol=1e-10, atol=1e-12)
    # d/dx of that along the curve: -0.6 + 0.4 q_0 / (1 - q_0)
    np.testing.assert_allclose(curve.grad, -0.6 + 0.4 * q0 / (1.0 - q0), rtol=1e-9,
                               atol=1e-12)


def test_no_curve_reason_for_boxes():
    boxes = [loss for loss in lk.catalog() if loss.family == "boxes"]
    if not boxes:
        pytest.skip("no box loss in the catalog")
    curve, reason = loss_curve_or_reason(boxes[0])
    assert curve is None and "boxes" in reason


# ----------------------------------------------------------------------------- browser
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (apt-get install chromium)")
def test_page_renders_in_headless_chromium(atlas, tmp_path):
    mpimg = pytest.importorskip("matplotlib.image")
    out, _, _ = atlas
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1280,2000", out.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    rgb = mpimg.imread(str(shot))[..., :3]
    assert rgb.shape[:2] == (2000, 1280)
    assert float(rgb.std()) > 0.1                          # not a blank page
    dark = rgb.max(axis=2) < 0.3                           # text
    coloured = rgb.max(axis=2) - rgb.min(axis=2) > 0.3     # curves and links
    assert 0.005 < float(dark.mean()) < 0.6
    assert float(coloured.mean()) > 0.001
