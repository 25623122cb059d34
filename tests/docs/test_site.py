"""The documentation site: built with the README's command, read as a user reads it.

One build per test session (``sphinx-build -W --keep-going -b html docs OUT``: warnings
are errors), from a copy of `docs/` and `examples/` into a temporary folder. Then:

* static checks over every built page: a page per loss of ``lk.catalog()`` with its name as
  title, formula, options and plot (or the reason it has none); ``losses/index.html`` links
  every loss; every internal link and ``#anchor`` resolves; no ``<script>``, stylesheet,
  font, icon or image comes from the network (HTML and the CSS it loads);
* the browser: headless Chromium (Debian's ``chromium``, driven by Playwright) opens the
  index, a loss page and a gallery page from ``file://`` with every non-``file:`` request
  aborted and recorded, and checks that MathJax typeset the math (no raw ``\\frac``
  left), every image loaded, nothing was logged to the console as an error, and that the
  search page finds ``sigmoid_focal_loss`` for "focal".

Skipped with the reason where the ``docs`` extra (Sphinx), Playwright or Chromium is
missing; ``.ci/run`` installs Chromium, so CI runs all of it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

pytestmark = pytest.mark.slow  # one Sphinx build (about 30 s) and a browser

_DOCS_EXTRA = ("sphinx", "pydata_sphinx_theme", "numpydoc", "sphinx_gallery",
               "sphinx_copybutton", "myst_parser", "matplotlib")


def _missing_docs_extra() -> list[str]:
    return [m for m in _DOCS_EXTRA if importlib.util.find_spec(m) is None]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The built site. Under pytest-xdist the workers share one build: the first to get
    here builds it, under a lock, into the run's common temporary folder; the others wait
    for it and read it."""
    import fcntl

    missing = _missing_docs_extra()
    if missing:
        pytest.skip(f"the docs extra is not installed ({', '.join(missing)} missing): "
                    "pip install -e '.[docs]'")
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    out = root / "docs-site"
    with open(root / "docs-site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (out / "built").is_file():
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                _build(out)
                (out / "built").write_text("ok")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out / "html"


def _build(out: Path) -> None:
    # a private copy of the sources: the build writes generated pages next to them (the
    # loss pages, the gallery), which must not race a build of the working tree or of
    # another test worker
    generated = shutil.ignore_patterns("_build", "losses", "generated", "auto_examples",
                                       "sg_execution_times.rst", "__pycache__")
    shutil.copytree(DOCS, out / "docs", ignore=generated)
    shutil.copytree(ROOT / "examples", out / "examples", ignore=generated)
    html, doctrees = out / "html", out / "doctrees"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
         "-d", str(doctrees), str(out / "docs"), str(html)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": ""})
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "build succeeded" in log
    assert not re.search(r"\bWARNING\b", log), log[-4000:]


# --------------------------------------------------------------------------- HTML parsing
class _Page(HTMLParser):
    """The links, resources, ids and title of one HTML file."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []  # <a href>
        self.resources: list[tuple[str, str]] = []  # (tag, url) the page loads
        self.ids: set[str] = set()
        self.h1 = ""
        self._in_h1 = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed") and a.get("src"):
            self.resources.append((tag, a["src"]))
        if tag == "link" and a.get("href"):
            rel = (a.get("rel") or "").lower()
            if rel not in ("index", "search", "next", "prev", "canonical"):
                self.resources.append((f"link rel={rel}", a["href"]))
        if tag == "h1":
            self._in_h1 = True

    def handle_endtag(self, tag):
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._in_h1:
            self.h1 += data
        self.text.append(data)


_PARSED: dict[Path, _Page] = {}


def _parse(path: Path) -> _Page:
    if path not in _PARSED:
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        _PARSED[path] = page
    return _PARSED[path]


def _is_remote(url: str) -> bool:
    return url.startswith("//") or urlsplit(url).scheme not in ("", "file", "data", "blob")


# --------------------------------------------------------------------------- static checks
def test_a_page_per_loss_with_formula_options_and_plot(site):
    import losskit as lk

    losses = lk.catalog()
    assert len(losses) >= 40
    for loss in losses:
        path = site / "losses" / f"{loss.name}.html"
        assert path.is_file(), f"no page for {loss.name}"
        html = path.read_text(encoding="utf-8")
        page = _parse(path)
        assert page.h1.strip().rstrip("#¶").strip() == loss.name
        assert html.count('class="math') >= 2, f"{loss.name}: formula and gradient"
        assert "Formula" in html and "Gradient" in html and "When to use" in html
        for option in loss.option_defaults():
            assert f"<span class=\"pre\">{option}</span>" in html, (loss.name, option)
        plots = [src for tag, src in page.resources
                 if tag == "img" and src.endswith(f"/{loss.name}.png")]
        if plots:
            assert (path.parent / plots[0]).resolve().stat().st_size > 5000
        else:  # boxes, masks, embeddings: the reason is on the page
            assert "No 1-D curve" in html, f"{loss.name}: neither a plot nor a reason"
        for alias in loss.info()["aliases"]:
            assert alias in html


def test_the_loss_index_links_every_loss_by_family(site):
    import losskit as lk

    page = _parse(site / "losses" / "index.html")
    linked = {urldefrag(h)[0] for h in page.links}
    for loss in lk.catalog():
        assert f"{loss.name}.html" in linked, loss.name
        # the family's label, as docutils spells ids (``metric_learning`` -> ``metric-learning``)
        assert re.sub(r"[^a-z0-9]+", "-", f"family-{loss.family}") in page.ids


def test_the_api_reference_and_guides_exist(site):
    text = " ".join(_parse(site / "api" / "index.html").text)
    for name in ("losskit.Loss", "losskit.catalog", "losskit.info", "losskit.gradcheck",
                 "losskit.doctor", "losskit.lab.experiments", "losskit.torch.Loss",
                 "losskit.jax.call", "losskit.keras.Loss"):
        assert name in text, name
    for page in ("guide/choosing", "guide/pytorch", "guide/jax", "guide/keras", "conventions",
                 "performance"):
        assert (site / f"{page}.html").is_file(), page
    choosing = " ".join(_parse(site / "guide" / "choosing.html").text)
    assert "287" in choosing and "53" in choosing  # the saturation experiment's numbers
    gallery = sorted((site / "auto_examples").glob("plot_*.html"))
    assert len(gallery) >= 8
    for path in gallery:
        images = [s for t, s in _parse(path).resources if t == "img" and "sphx_glr" in s]
        assert images, f"{path.name}: no plot"


def test_every_internal_link_and_anchor_resolves(site):
    broken = []
    for path in sorted(site.rglob("*.html")):
        for href in _parse(path).links:
            if _is_remote(href) or href.startswith(("mailto:", "javascript:")):
                continue
            target, fragment = urldefrag(href)
            target_path = (path.parent / unquote(target)).resolve() if target else path
            if target_path.is_dir():
                target_path = target_path / "index.html"
            if not target_path.exists():
                broken.append(f"{path.relative_to(site)} -> {href}")
            elif fragment and target_path.suffix == ".html" and \
                    unquote(fragment) not in _parse(target_path).ids:
                broken.append(f"{path.relative_to(site)} -> {href} (no such anchor)")
    assert not broken, "\n".join(broken[:30])


def test_nothing_is_loaded_from_the_network(site):
    remote = []
    for path in sorted(site.rglob("*.html")):
        for tag, url in _parse(path).resources:
            if _is_remote(url):
                remote.append(f"{path.relative_to(site)}: <{tag}> {url}")
    for css in sorted(site.rglob("*.css")):
        for url in re.findall(r"(?:url\(\s*['\"]?|@import\s+['\"])([^'\")\s]+)",
                              css.read_text(encoding="utf-8", errors="replace")):
            if _is_remote(url):
                remote.append(f"{css.relative_to(site)}: {url}")
    assert not remote, "\n".join(remote[:30])
    # MathJax is a bundled copy, referenced by a relative path
    page = _parse(site / "losses" / "js_divergence.html")
    mathjax = [u for t, u in page.resources if t == "script" and "mathjax" in u.lower()]
    assert mathjax and not any(_is_remote(u) for u in mathjax)
    assert (site / "losses" / mathjax[0].split("?")[0]).resolve().is_file()


# --------------------------------------------------------------------------- the browser
@pytest.fixture(scope="module")
def browser():
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (the test extra has it: pip install -e '.[test]')")
    executable = _chromium()
    if executable is None:
        pytest.skip("no chromium binary: apt-get install chromium (Debian's package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def served(site):
    """The site over HTTP on the loopback address (Sphinx's search fetches the pages it
    lists, which a browser refuses to do from ``file://``)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _open(browser, url: str, allowed_origin: str | None = None):
    """The page at ``url`` with the network blocked (everything but ``file:``, ``data:``,
    ``blob:`` and ``allowed_origin``): returns (page, blocked requests, console errors)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []
    errors: list[str] = []

    def route(r):
        url = r.request.url
        if urlsplit(url).scheme in ("file", "data", "blob") or (
                allowed_origin and url.startswith(allowed_origin + "/")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.goto(url, wait_until="load")
    return page, blocked, errors


_TYPESET = """async () => {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
        await MathJax.startup.promise;
    }
    return {
        containers: document.querySelectorAll('mjx-container').length,
        raw: document.querySelectorAll('div.math, span.math').length,
        text: document.body.innerText,
    };
}"""

_IMAGES = """async () => {
    const images = Array.from(document.images);
    await Promise.all(images.map(i => i.complete ? null : new Promise(
        r => { i.onload = r; i.onerror = r; })));
    return images.map(i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight]);
}"""


@pytest.mark.parametrize("where", ["index.html", "losses/js_divergence.html",
                                   "auto_examples/plot_01_saturation.html",
                                   "losses/index.html"])
def test_pages_render_offline_in_chromium(site, browser, where):
    page, blocked, errors = _open(browser, (site / where).as_uri())
    try:
        math = page.evaluate(_TYPESET)
        images = page.evaluate(_IMAGES)
        title = page.title()
    finally:
        page.context.close()
    assert not blocked, f"requests to the network: {blocked}"
    assert not errors, "\n".join(errors)
    assert title.strip()
    for token in ("\\frac", "\\(", "\\[", "\\mathrm", "\\sum", "\\log"):
        assert token not in math["text"], f"raw TeX {token!r} left on {where}"
    if where == "losses/js_divergence.html":
        assert math["containers"] >= 2  # the formula and the gradient, typeset
        assert "\\frac" in Path(site / where).read_text(encoding="utf-8")  # there was TeX
    for src, width, height in images:
        assert width > 0 and height > 0, f"{where}: image {src} did not load"
    if where not in ("index.html", "losses/index.html"):
        assert images, f"{where}: no plot on the page"


def test_search_finds_the_focal_loss(served, browser):
    page, blocked, errors = _open(browser, f"{served}/search.html?q=focal", served)
    try:
        # results are listed one by one; the summary line says when the search finished
        page.wait_for_function(
            "() => /Search finished/.test(document.body.innerText)", timeout=60_000)
        hits = page.eval_on_selector_all("#search-results li a, ul.search li a",
                                         "as => as.map(a => [a.textContent, a.href])")
    finally:
        page.context.close()
    assert not blocked, f"requests to the network: {blocked}"
    assert not errors, "\n".join(errors)
    assert any("sigmoid_focal_loss" in text or href.split("#")[0].endswith(
        "losses/sigmoid_focal_loss.html") for text, href in hits), hits
