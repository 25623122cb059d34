"""Every Python code block of the README and of the documentation runs.

Collected: the fenced blocks of ``README.md`` and ``docs/**/*.md`` whose info string is
``python`` (or the MyST directive ``{code-block} python``), and the
``.. code-block:: python`` / ``.. code:: python`` directives of ``docs/**/*.rst``; never the
generated folders (``docs/_build``, ``docs/losses``, ``docs/api/generated``,
``docs/auto_examples``). Shell commands are ``bash`` blocks and are not run.

One test per block, named ``file:line`` (the line of its opening fence or directive). The
blocks of one file run in order in one namespace, as a reader goes down the page, so a block
may use the names an earlier one defined; running one test alone first runs the earlier
blocks of its file. A block that starts with ``>>>`` is a doctest: its printed output is
checked too (``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``).

Blocks run in a temporary working directory. A block that imports an optional library
(torch, jax, optax, keras, ...) is skipped where that library is missing, and so are the
later blocks of its file. A block preceded by the comment ``% test: slow`` (Markdown) or
``.. test: slow`` (reStructuredText) gets the ``slow`` mark (``torch.compile`` takes
seconds): nothing after it may depend on the names it defines, since ``-m 'not slow'``
leaves it out.
"""

from __future__ import annotations

import ast
import doctest
import importlib.util
import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATED = ("_build", "losses", "api/generated", "auto_examples")

# the libraries a block may need that losskit itself does not require
OPTIONAL = {"torch", "jax", "jaxlib", "optax", "keras", "sklearn", "scipy", "matplotlib",
            "dask", "distributed", "cupy", "pyarrow", "array_api_strict", "hypothesis",
            "xgboost", "lightgbm", "catboost"}
ADAPTERS = {"losskit.torch": "torch", "losskit.jax": "jax", "losskit.keras": "keras"}


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence or directive
    code: str
    slow: bool = False

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT).as_posix()}:{self.line}"


# --------------------------------------------------------------------------- collection
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_SLOW_MD = re.compile(r"^\s*%\s*test:\s*slow\s*$")
_SLOW_RST = re.compile(r"^\s*\.\.\s+test:\s*slow\s*$")


def _is_python(info: str) -> bool:
    words = info.strip().split()
    if not words:
        return False
    if words[0] in ("{code-block}", "{code}", "{code-cell}"):
        return len(words) > 1 and words[1] in ("python", "python3", "py")
    return words[0] in ("python", "python3", "py")


def _previous_nonblank(lines: list[str], i: int) -> str:
    for j in range(i - 1, -1, -1):
        if lines[j].strip():
            return lines[j]
    return ""


def markdown_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        body, j = [], i + 1
        while j < len(lines):
            close = re.match(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[j])
            if close:
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        if _is_python(m["info"]):
            # MyST directive options (":caption: ...") sit at the top of the body
            while body and m["info"].strip().startswith("{") and body[0].startswith(":"):
                body.pop(0)
            blocks.append(Block(path, i + 1, textwrap.dedent("\n".join(body)),
                                bool(_SLOW_MD.match(_previous_nonblank(lines, i)))))
        i = j + 1
    return blocks


_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\.[ \t]+(?:code-block|code|sourcecode)::"
                        r"[ \t]*(?P<lang>\S*)[ \t]*$")


def rst_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line)
        if not m or m["lang"] not in ("python", "python3", "py"):
            continue
        outer = len(m["indent"])
        body, j = [], i + 1
        # directive options, then the content: every line indented deeper than the directive
        while j < len(lines) and (not lines[j].strip() or
                                  len(lines[j]) - len(lines[j].lstrip()) > outer):
            body.append(lines[j])
            j += 1
        while body and body[0].strip().startswith(":"):
            body.pop(0)
        blocks.append(Block(path, i + 1, textwrap.dedent("\n".join(body)).strip("\n") + "\n",
                            bool(_SLOW_RST.match(_previous_nonblank(lines, i)))))
    return blocks


def _generated(path: Path) -> bool:
    rel = path.relative_to(DOCS).as_posix()
    return any(rel == g or rel.startswith(g + "/") for g in GENERATED) or \
        rel == "sg_execution_times.rst"


def collect() -> list[Block]:
    blocks = markdown_blocks(ROOT / "README.md")
    for path in sorted(DOCS.rglob("*")):
        if not path.is_file() or _generated(path):
            continue
        if path.suffix == ".md":
            blocks += markdown_blocks(path)
        elif path.suffix == ".rst":
            blocks += rst_blocks(path)
    return blocks


BLOCKS = collect()
BY_FILE: dict[Path, list[Block]] = {}
for _b in BLOCKS:
    BY_FILE.setdefault(_b.path, []).append(_b)


# --------------------------------------------------------------------------- running
@dataclass
class FileState:
    namespace: dict = field(default_factory=lambda: {"__name__": "__docs__"})
    outcome: dict = field(default_factory=dict)  # block line -> "ok" | "skipped: .." | "failed"
    workdir: Path | None = None


_STATE: dict[Path, FileState] = {}


def _imported_modules(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:  # a doctest block: its statements follow ">>> "
        src = "\n".join(line[4:] for line in code.splitlines()
                        if line.startswith((">>> ", "... ")))
        try:
            tree = ast.parse(src)
        except SyntaxError:
            return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _require_libraries(block: Block) -> None:
    for module in sorted(_imported_modules(block.code)):
        root = module.split(".")[0]
        if root in OPTIONAL:
            pytest.importorskip(root)
        for adapter, library in ADAPTERS.items():
            if module == adapter or module.startswith(adapter + "."):
                pytest.importorskip(library)
        if root == "keras":
            # Keras runs on the backend named by KERAS_BACKEND (the root conftest: jax)
            pytest.importorskip(os.environ.get("KERAS_BACKEND", "jax"))
        if importlib.util.find_spec(root) is None:
            pytest.skip(f"{block.name} imports {root}, which is not installed")


def _run_source(block: Block, namespace: dict) -> None:
    if block.code.lstrip().startswith(">>>"):
        parser = doctest.DocTestParser()
        test = parser.get_doctest(block.code, namespace, block.name, str(block.path),
                                  block.line)
        runner = doctest.DocTestRunner(
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        report: list[str] = []
        result = runner.run(test, out=report.append, clear_globs=False)
        namespace.update(test.globs)  # DocTest ran in a copy: keep its names for later blocks
        if result.failed:
            pytest.fail(f"doctest block {block.name} failed:\n" + "".join(report),
                        pytrace=False)
        return
    # pad so that tracebacks give the line numbers of the file itself
    code = compile("\n" * block.line + block.code, str(block.path), "exec")
    exec(code, namespace)


def _execute(block: Block, state: FileState) -> None:
    """Run one block in its file's namespace and record the outcome."""
    try:
        _require_libraries(block)
        old = Path.cwd()
        os.chdir(state.workdir)
        try:
            _run_source(block, state.namespace)
        finally:
            os.chdir(old)
    except pytest.skip.Exception as exc:
        state.outcome[block.line] = f"skipped: {exc}"
        raise
    except BaseException:
        state.outcome[block.line] = "failed"
        raise
    state.outcome[block.line] = "ok"


@pytest.mark.parametrize("block", [
    pytest.param(b, id=b.name, marks=[pytest.mark.slow] if b.slow else [])
    for b in BLOCKS])
def test_code_block_runs(block, tmp_path_factory):
    state = _STATE.get(block.path)
    if state is None:
        state = _STATE[block.path] = FileState()
        state.workdir = tmp_path_factory.mktemp(block.path.stem)
    for earlier in BY_FILE[block.path]:
        if earlier is block:
            break
        outcome = state.outcome.get(earlier.line)
        if outcome is None and not earlier.slow:
            try:  # not run yet (this test was selected alone): run it first
                _execute(earlier, state)
            except (Exception, pytest.skip.Exception, pytest.fail.Exception):
                pass  # the outcome is recorded
            outcome = state.outcome.get(earlier.line)
        if outcome == "failed":
            pytest.fail(f"an earlier block of the file failed: {earlier.name}", pytrace=False)
        if outcome is not None and outcome.startswith("skipped"):
            pytest.skip(f"an earlier block of the file was skipped: {earlier.name} "
                        f"({outcome})")
    _execute(block, state)


def test_blocks_were_found():
    names = {b.name.split(":")[0] for b in BLOCKS}
    assert "README.md" in names
    for page in ("choosing", "pytorch", "jax", "keras"):
        assert f"docs/guide/{page}.md" in names, page
    # a shell command is a bash block, never a python one
    for b in BLOCKS:
        first = b.code.strip().splitlines()[0] if b.code.strip() else ""
        assert not re.match(r"^(pip|python3? -m|losskit|sphinx-build|apt-get)\b", first), \
            f"{b.name} is a shell command in a python block"
