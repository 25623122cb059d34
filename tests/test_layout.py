"""The package layout: layers by role, imports pointing down only, no cycles, a lazy import.

The import graph is read from the source (``ast``), every ``import``/``from`` of a losskit
module counted, also those inside functions: a lazy import that points up is still a
dependency that points up.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import losskit as lk

SRC = Path(lk.__file__).parent
ROOT = SRC.parent.parent

#: the layers, bottom first: a module may import its own layer and those below
LAYERS = {
    "core": 0,
    "kernels": 1,
    "losses": 2,
    # tools and framework adapters: public modules at the top of the package
    "info": 3, "penalties": 3, "gradcheck": 3, "doctor": 3, "evaluate": 3,
    "torch": 3, "jax": 3, "keras": 3, "gbdt": 3,
    "lab": 4,
    "cli": 5,
    "__init__": 6, "__main__": 6,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The losskit modules ``path`` imports (absolute names)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("losskit"):
                continue
            for alias in node.names:  # `from . import info`: the submodule, if it is one
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("losskit"))
    found.discard(name)
    return {f for f in found if _exists(f)}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:]) if "." in module else Path()
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return LAYERS["__init__"]
    return LAYERS[parts[1]]


GRAPH = {_module_name(p): _imports(p) for p in sorted(SRC.rglob("*.py"))}


def test_every_module_belongs_to_a_layer():
    unknown = [m for m in GRAPH if len(m.split(".")) > 1 and m.split(".")[1] not in LAYERS]
    assert not unknown, f"modules outside the layers of tests/test_layout.py: {unknown}"


def test_imports_point_down_only():
    upward = sorted(f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
                    if _layer(t) > _layer(m) and m != "losskit")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_no_import_cycles():
    # the package __init__ re-exports everything: leave it out (its children never import it)
    graph = {m: {t for t in ts if t != "losskit"} for m, ts in GRAPH.items() if m != "losskit"}
    into_top = sorted(m for m, ts in GRAPH.items() if "losskit" in ts and m != "losskit")
    assert not into_top, f"modules that import the package itself: {into_top}"
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):  # a subpackage's __init__ is a node of its own
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_graph_is_read_correctly():
    # the checks above would pass on an empty graph: pin a few known edges
    assert "losskit.core.dispatch" in GRAPH["losskit.core.loss"]
    assert "losskit.kernels.fast_paths" in GRAPH["losskit.losses.regression"]
    assert "losskit.core.loss" in GRAPH["losskit.kernels.fast_paths"]  # a lazy import
    assert "losskit.cli.tools" in GRAPH["losskit.cli.app"]
    assert "losskit.info" in GRAPH["losskit"]  # `from . import info`


def test_every_loss_lives_in_the_losses_package_and_its_map():
    table = (SRC / "losses" / "__init__.py").read_text()
    for loss in lk.catalog():
        module = type(loss).__module__
        assert module.startswith("losskit.losses."), (loss.name, module)
        short = module.rpartition(".")[2]
        assert f"``{short}``" in table, f"{short} is missing from the map in losses/__init__"
        row = table.split(f"``{short}``", 1)[1].split("``", 1)[0]
        assert loss.name in row, f"{loss.name} is not listed on the row of {short}"


def test_the_readme_map_matches_the_tree():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout", 1)[1].split("```")[1]  # the map
    src_map, tests_map = layout.split("\ntests/\n")
    words = set(src_map.split())
    folders = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").is_file())
    for folder in folders:
        assert f"{folder}/" in words, f"README's Layout map lacks src/losskit/{folder}/"
    for mod in sorted(p.stem for p in SRC.glob("*.py") if not p.stem.startswith("_")):
        assert f"{mod}.py" in words, f"README's Layout map lacks src/losskit/{mod}.py"
    mapped = {w for w in src_map.split() if w.endswith("/") and w != "src/losskit/"}
    assert mapped <= {f"{f}/" for f in folders}, "the map names folders the tree lacks"
    tests = sorted(p.name for p in (ROOT / "tests").iterdir()
                   if p.is_dir() and not p.name.startswith((".", "_")))
    assert {w for w in tests_map.split() if w.endswith("/")} == {f"{f}/" for f in tests}


def test_import_is_lazy_about_heavy_libraries():
    code = ("import sys, json, losskit\n"
            "print(json.dumps(sorted(m for m in ('numba', 'matplotlib', 'torch', 'jax', "
            "'keras', 'scipy', 'sklearn', 'xgboost', 'lightgbm', 'pyarrow', 'dask') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []


@pytest.mark.parametrize("path", ["losskit.info", "losskit.gradcheck", "losskit.doctor",
                                  "losskit.evaluate", "losskit.penalties", "losskit.cli",
                                  "losskit.kernels", "losskit.lab.atlas"])
def test_public_module_paths_import(path):
    __import__(path)
    assert path in sys.modules
