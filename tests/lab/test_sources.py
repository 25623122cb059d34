"""docs/sources.md lists every number the demo reproduces, with where it comes from."""

from __future__ import annotations

import re
from pathlib import Path

from losskit.lab import digest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "sources.md"


def _rows():
    """The cells of every markdown table row of the page."""
    rows = []
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s:|-]+\|$", line):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_every_reproduced_number_is_listed_with_its_section():
    rows = _rows()
    for check in digest.CHECKS:
        matches = [r for r in rows if f"`{check.source_says}`" in r]
        assert matches, f"{check.source_says} ({check.label}) is not in docs/sources.md"
        assert any(cell.startswith(f"§{check.section} ") for r in matches for cell in r), (
            check.source_says, check.section)


def test_page_has_one_row_per_check_in_order():
    numbers = [r[1] for r in _rows() if r and r[0].isdigit()]
    assert numbers == [f"`{c.source_says}`" for c in digest.CHECKS]


def test_page_names_the_source_material_and_sections():
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert "five tutorial articles" in text and "seeds digest" in text
    for number, title in digest.SECTIONS.items():
        assert f"§{number} {title}" in text, title
    for tutorial in digest.TUTORIALS:
        assert tutorial.title in text and tutorial.author in text


def test_every_check_has_a_known_section():
    for check in digest.CHECKS:
        assert check.section in digest.SECTIONS, check
