"""Sphinx configuration of losskit's documentation site.

Build (the README's command): ``pip install -e '.[docs]' && sphinx-build -W --keep-going
-b html docs docs/_build/html``. The per-loss pages under ``losses/`` are generated from
the registry at build time (``_ext/loss_pages.py``); the gallery from ``../examples``.
The site loads nothing from the network: MathJax is the copy that the
``sphinx-mathjax-offline`` package bundles, the theme ships its own fonts and icons.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("KERAS_BACKEND", "jax")  # losskit.keras is documented on the jax backend
# The gallery runs on losskit's NumPy engine: the same numbers as the fused kernels (the
# kernel tests hold them to each other), without compiling every kernel family the examples
# touch when numba's cache is cold (the box example alone: 86 s cold, 2 s on NumPy).
os.environ.setdefault("LOSSKIT_DISABLE_NUMBA", "1")

import losskit  # noqa: E402

project = "losskit"
author = "the losskit developers"
copyright = "2026, the losskit developers"
release = losskit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "sphinx_copybutton",
    "sphinx_gallery.gen_gallery",
    "sphinx-mathjax-offline",
    "loss_pages",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "sources.md", "**.ipynb_checkpoints", "auto_examples/*.py",
                    "auto_examples/*.ipynb", "auto_examples/*.zip", "auto_examples/*.json",
                    "sg_execution_times.rst", "auto_examples/sg_execution_times.rst"]
templates_path = ["_templates"]

# --- API reference ---------------------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
intersphinx_mapping: dict = {}  # offline: no inventories fetched

# --- Markdown pages (docs/conventions.md, docs/performance.md, the guides) -------------
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# --- gallery ---------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "show_memory": False,
    "plot_gallery": "True",
    # the timing pages load jQuery and DataTables from a CDN: the site loads nothing remote
    "write_computation_times": False,
}

# --- HTML ------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "losskit"
html_static_path: list[str] = []
html_theme_options = {
    "navbar_end": ["theme-switcher", "navbar-icon-links"],
    "icon_links": [],
    "show_prev_next": True,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
html_copy_source = False
# an explicit mode: with none the theme logs "Got invalid theme mode" to the console
html_context = {"default_mode": "light"}


# --- roles the docstrings use ----------------------------------------------------------
def _doi_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """``:doi:`10.1000/x``` -> a link "doi:10.1000/x" to the DOI resolver (a plain anchor:
    nothing is loaded from it when the page opens)."""
    from docutils import nodes

    node = nodes.reference(rawtext, f"doi:{text}", refuri=f"https://doi.org/{text}")
    return [node], []


def setup(app):
    app.add_role("doi", _doi_role)
