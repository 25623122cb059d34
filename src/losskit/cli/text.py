"""Plain-text output shared by the commands: aligned tables and the install hint."""

from __future__ import annotations

from typing import Sequence

__all__ = ["table", "INSTALL_DEMO"]

#: how to get the optional packages the demo, the plots and the digits need
INSTALL_DEMO = "pip install 'losskit[demo]'"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Plain-text columns, left aligned, two spaces apart (ASCII only)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]
