r"""The parts of a numpydoc docstring that losskit's own pages reuse.

Every loss documents itself once, in its class docstring (numpydoc format). The command
line (``losskit explain``), the atlas page and the documentation site's per-loss pages
all take the summary, the meaning of each option and the example from it through the
functions here, so that no text is written twice.

>>> doc = '''Squared error.
...
...     Parameters
...     ----------
...     delta : float, default 1.0
...         Where the quadratic part ends. Must be positive.
...     reduction : str
...         How to reduce.
...
...     Examples
...     --------
...     >>> 1 + 1
...     2
...     '''
>>> summary(doc)
'Squared error.'
>>> parameter_notes(doc)["delta"]
'Where the quadratic part ends. Must be positive.'
>>> parameter_types(doc)["delta"]
'float, default 1.0'
>>> section(doc, "Examples")
'>>> 1 + 1\n2'
"""

from __future__ import annotations

import inspect
import re

__all__ = ["summary", "section", "parameter_notes", "parameter_types", "first_sentence",
           "option_notes"]

_HEADER = re.compile(r"^(\S[^\n]*)\n-{3,}[ \t]*$", re.MULTILINE)


def _clean(doc: str | None) -> str:
    return inspect.cleandoc(doc or "")


def summary(doc: str | None) -> str:
    """The docstring's first paragraph, on one line."""
    para = _clean(doc).split("\n\n")[0]
    return " ".join(para.split())


def section(doc: str | None, title: str) -> str:
    """The body of the numpydoc section ``title`` (``"Examples"``, ``"Notes"``...), dedented,
    or ``""`` where the docstring has none."""
    text = _clean(doc)
    heads = list(_HEADER.finditer(text))
    for i, m in enumerate(heads):
        if m.group(1).strip() == title:
            end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
            return inspect.cleandoc(text[m.end():end]).strip()
    return ""


def _entries(doc: str | None) -> dict[str, tuple[str, str]]:
    body = section(doc, "Parameters")
    out: dict[str, tuple[str, str]] = {}
    names: list[str] = []
    for line in body.splitlines():
        if line and not line[0].isspace():
            head, _, kind = line.partition(" : ")
            names = [n.strip() for n in head.split(",") if n.strip()]
            for name in names:
                out[name] = (kind.strip(), "")
        elif line.strip():
            for name in names:
                kind, note = out[name]
                out[name] = (kind, f"{note} {line.strip()}".strip())
    return out


def parameter_notes(doc: str | None) -> dict[str, str]:
    """``{name: description}`` from the Parameters section, each description on one line
    (several names on one line, ``a, b : float``, each get that text)."""
    return {name: note for name, (_, note) in _entries(doc).items()}


def parameter_types(doc: str | None) -> dict[str, str]:
    """``{name: type and default}``: the text after ``name :`` in the Parameters section."""
    return {name: kind for name, (kind, _) in _entries(doc).items()}


def first_sentence(text: str) -> str:
    """Up to the first full stop followed by a space (or the whole text)."""
    m = re.search(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)\.(\s|$)", text)
    return text[:m.start() + 1] if m else text


def option_notes(doc: str | None) -> dict[str, str]:
    r"""``{name: the first sentence of its description}``: the short option notes of
    ``losskit explain`` and the atlas.

    >>> option_notes("Loss.\n\nParameters\n----------\nq : float\n    The level. In (0, 1).")
    {'q': 'The level.'}
    """
    return {name: first_sentence(note) for name, note in parameter_notes(doc).items()}
