"""The README as a new user reads it: its two commands, a catalog table that matches the
registry, short benchmark notes with the detail in docs/performance.md, and the
penalties' call signature shown and true."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import losskit as lk

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.S | re.M)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def test_readme_starts_with_exactly_two_commands():
    first = re.match(r"# losskit\n\n```bash\n(.*?)\n```", README, flags=re.S)
    assert first, "README must open with one bash block"
    lines = first.group(1).splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("losskit demo") and "pytest" in lines[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert lines[1] in ci, ".ci/run must run the README's test command"


def test_the_catalog_table_lists_every_family_and_loss_of_the_registry():
    rows = re.findall(r"^\| (\w+)[^|]* \| (.*) \|$", _section("What it is"), flags=re.M)
    table = {}
    for family, cell in rows:
        if family in {loss.family for loss in lk.catalog()}:
            # option names mentioned in parentheses are not losses
            cell = re.sub(r"\([^()]*\)", "", cell.replace("(hidden, weight, labels, bias)", ""))
            table[family] = set(re.findall(r"`(\w+)`", cell))
    registry = {}
    for loss in lk.catalog():
        registry.setdefault(loss.family, set()).add(loss.name)
    aliases = {a for loss in lk.catalog() for a in loss.aliases}
    assert set(table) == set(registry)
    for family, names in registry.items():
        assert names <= table[family], (family, names - table[family])
        assert table[family] - names <= aliases, (family, table[family] - names)


def test_benchmark_notes_are_short_and_the_detail_is_in_docs():
    perf = _section("Performance")
    assert len(perf.splitlines()) <= 0.15 * len(README.splitlines())
    assert "docs/performance.md" in perf
    detail = (ROOT / "docs" / "performance.md").read_text()
    # the detail moved, not lost: every benchmark script and result file is there
    for name in ("benchmarks/run.py", "benchmarks/torch_training.py",
                 "benchmarks/jax_training.py", "benchmarks/linear_ce.py",
                 "RESULTS.md", "TORCH.md", "JAX.md", "LINEAR_CE.md"):
        assert name in detail, name
    for link in re.findall(r"\]\(([^)#]+)\)", detail):
        if not link.startswith("http"):
            assert (ROOT / "docs" / link).resolve().exists(), link


def test_the_penalties_signature_is_shown_and_true():
    assert "lk.l1_penalty(w, strength)" in README
    assert "lk.l2_penalty(w, strength)" in README
    w = np.array([1.0, -2.0, 0.5])
    # lambda * sum |w|, lambda / 2 * sum w^2, their gradient lambda * w: the README's words
    np.testing.assert_allclose(lk.l1_penalty(w, 0.1), 0.1 * 3.5)
    np.testing.assert_allclose(lk.l2_penalty(w, 0.1), 0.05 * 5.25)
    np.testing.assert_allclose(lk.l2_penalty.grad(w, 0.1), 0.1 * w)


def test_the_atlas_browser_test_skip_is_explained_next_to_the_command():
    head = README.split("## What it is")[0]
    assert "chromium" in head.lower() and "skip" in head.lower()
