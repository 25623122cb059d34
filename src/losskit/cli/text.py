r"""Plain-text output shared by the commands: tables, wrapping, formulas, the install hint.

Everything the commands print fits the terminal: :func:`terminal_width` is the width
(``COLUMNS``, the terminal's size, or 80 when output is not a terminal), :func:`table`
wraps chosen columns to it, :func:`fit` wraps any other line. Formulas are printed as plain
text by :func:`latex_to_text` (the LaTeX itself stays in the loss metadata and in the HTML
atlas), and :func:`signed` prints small signed numbers without a ``-0.00000``.

Examples
--------
>>> from losskit.cli.text import latex_to_text, signed, table
>>> latex_to_text(r"\frac{\partial \ell}{\partial z} = \operatorname{softmax}(z) - t")
'dL/dz = softmax(z) - t'
>>> latex_to_text(r"\ell = \tfrac12 \sum_i (y_i - t_i)^2")
'L = 1/2 sum_i (y_i - t_i)^2'
>>> signed(-2.06e-09), signed(0.125), signed(-0.0)
('-2.1e-09', '+0.12500', '0')
>>> print("\n".join(table(("name", "note"), [("mse", "squared error of each element")],
...                       width=24)))
name  note
----  ------------------
mse   squared error of
      each element
"""

from __future__ import annotations

import re
import shutil
import textwrap
from typing import Sequence

__all__ = ["table", "fit", "wrap", "terminal_width", "latex_to_text", "signed",
           "INSTALL_DEMO"]

#: how to get the optional packages the demo, the plots and the digits need
INSTALL_DEMO = "pip install 'losskit[demo]'"

#: narrowest width the commands lay their output out for
MIN_WIDTH = 20
#: narrowest a wrapped table column gets
MIN_COLUMN = 8


# --------------------------------------------------------------------------- width
def terminal_width(fallback: int = 80) -> int:
    """Columns to lay output out for: ``$COLUMNS``, else the terminal's width, else
    ``fallback`` (output to a pipe or a file), never under :data:`MIN_WIDTH`."""
    columns = shutil.get_terminal_size((fallback, 24)).columns
    return max(columns if columns > 0 else fallback, MIN_WIDTH)


def wrap(text: str, width: int, indent: str = "", subsequent: str | None = None) -> list[str]:
    """``text`` (whitespace collapsed) as lines of at most ``width`` characters."""
    subsequent = indent if subsequent is None else subsequent
    if max(len(indent), len(subsequent)) > width - MIN_COLUMN:
        indent = subsequent = ""
    return textwrap.wrap(" ".join(text.split()), width=width, initial_indent=indent,
                         subsequent_indent=subsequent, break_on_hyphens=False) \
        or [indent.rstrip()]


def fit(lines: Sequence[str], width: int) -> list[str]:
    """Every line at most ``width`` long: longer ones wrapped, continuation lines indented
    two more than the line's own indent."""
    out = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[:len(line) - len(line.lstrip())]
        out += wrap(line, width, indent, indent + "  ")
    return out


# --------------------------------------------------------------------------- tables
def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int | None = None,
          wrap: Sequence[int] | None = None) -> list[str]:
    """Plain-text columns, left aligned, two spaces apart (ASCII only).

    With ``width``, the columns listed in ``wrap`` (default: the last) are narrowed, the
    widest first, until the table fits; their cells (headers included) then wrap onto
    more lines. A table that cannot fit (its other columns are too wide) is left wider.
    """
    return [line for block in table_blocks(headers, rows, width=width, wrap=wrap)
            for line in block]


def table_blocks(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                 width: int | None = None,
                 wrap: Sequence[int] | None = None) -> list[list[str]]:
    """:func:`table` as blocks of lines: ``[header lines, [rule], row 1 lines, ...]``."""
    ncol = len(headers)
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    if width is not None:
        wrappable = sorted({i % ncol for i in ((ncol - 1,) if wrap is None else wrap)})
        while sum(widths) + 2 * (ncol - 1) > width:
            narrowable = [i for i in wrappable if widths[i] > MIN_COLUMN]
            if not narrowable:
                break
            widths[max(narrowable, key=lambda i: widths[i])] -= 1

    def block(cells) -> list[str]:
        columns = [[c] if len(c) <= w else textwrap.wrap(c, w, break_on_hyphens=False) or [""]
                   for c, w in zip(cells, widths)]
        height = max(len(col) for col in columns)
        return ["  ".join((col[k] if k < len(col) else "").ljust(w)
                          for col, w in zip(columns, widths)).rstrip()
                for k in range(height)]

    rule = "  ".join("-" * w for w in widths)
    return [block(headers), [rule], *(block(r) for r in rows)]


# --------------------------------------------------------------------------- numbers
def signed(value: float, decimals: int = 5) -> str:
    """A signed fixed-point number, ``+0.12500``; one that would print as zero is shown in
    scientific notation (``-2.1e-09``), and zero itself as ``0``: never ``-0.00000``."""
    value = float(value)
    if value == 0.0:
        return "0"
    text = f"{value:+.{decimals}f}"
    return f"{value:+.1e}" if float(text) == 0.0 else text


# --------------------------------------------------------------------------- LaTeX -> text
_GREEK = {name: name for name in (
    "alpha", "beta", "gamma", "delta", "zeta", "eta", "theta", "iota", "kappa", "lambda",
    "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega",
    "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi",
    "Omega")}
_GREEK.update(epsilon="eps", varepsilon="eps", vartheta="theta", varrho="rho",
              varphi="phi", varsigma="sigma", varpi="pi")

# written as their name; a fraction right after one is put in its parentheses
_FUNCTIONS = {"log", "ln", "exp", "sin", "cos", "tan", "sinh", "cosh", "tanh", "max",
              "min", "sup", "inf", "det", "arg", "lim", "sgn"}
_BIG_OPERATORS = {"sum": "sum", "prod": "prod", "int": "integral"}
_SYMBOLS = {
    "ell": "L", "ne": "!=", "neq": "!=", "le": "<=", "leq": "<=", "ge": ">=", "geq": ">=",
    "cap": "intersect", "cup": "union", "top": "T", "cdot": "*", "times": "x",
    "infty": "inf", "to": "->", "rightarrow": "->", "approx": "~", "sim": "~",
    "propto": "~", "equiv": "==", "pm": "+/-", "in": "in", "mid": "|", "ldots": "...",
    "cdots": "...", "dots": "...", "langle": "<", "rangle": ">", "lvert": "|",
    "rvert": "|", "vert": "|", "Vert": "||", "nabla": "grad",
    "circ": "o", "odot": "*", "otimes": "x", "prime": "'",
}
_TEXT_ARGUMENT = {"mathrm", "text", "textrm", "mathcal", "mathbf",
                  "mathit", "mathsf", "mathbb", "boldsymbol", "vec", "textit", "textbf"}
_DROPPED = {"left", "right", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "big",
            "Big", "bigg", "Bigg", "displaystyle", "textstyle", "limits", "nolimits"}
_ACCENTS = {"bar": "_bar", "hat": "_hat", "tilde": "_tilde", "dot": "_dot"}
_WORDLIKE = ("word", "frac", "bigop", "prefix")


def _tokenize(latex: str) -> list:
    """Nested lists: ``("cmd", name)``, ``("sym", char)`` (``\\,``, ``\\_``, ``\\\\``),
    ``("chr", char)``; a ``{...}`` group is a list. Spaces are kept (TeX drops those
    after a command word; in plain text they separate ``log y``), except after ``d``
    and ``||``, see :class:`_Text`."""
    stack: list[list] = [[]]
    i, n = 0, len(latex)
    while i < n:
        c = latex[i]
        if c == "\\" and i + 1 < n:
            j = i + 1
            while j < n and latex[j].isalpha():
                j += 1
            if j > i + 1:
                stack[-1].append(("cmd", latex[i + 1:j]))
                i = j
            else:
                stack[-1].append(("sym", latex[i + 1]))
                i += 2
        elif c == "{":
            stack.append([])
            i += 1
        elif c == "}":
            if len(stack) > 1:
                group = stack.pop()
                stack[-1].append(group)
            i += 1
        else:
            stack[-1].append(("chr", c))
            i += 1
    while len(stack) > 1:  # unbalanced: close what is open
        group = stack.pop()
        stack[-1].append(group)
    return stack[0]


def _argument(tokens: list, i: int) -> tuple[list, int]:
    """The argument starting at ``tokens[i]`` (spaces skipped): a group's contents or
    one token; and the index after it."""
    while i < len(tokens) and tokens[i] == ("chr", " "):
        i += 1
    if i >= len(tokens):
        return [], i
    tok = tokens[i]
    return (tok if isinstance(tok, list) else [tok]), i + 1


def _enclosed(s: str) -> bool:
    """Is ``s`` one bracketed whole: ``(x_1, x_2)``, ``[..]``, ``|b|`` or ``||v||``?"""
    if len(s) >= 2 and s[0] == "|" and s[-1] == "|":
        bars = s.count("|")
        return bars == 2 or (bars == 4 and s.startswith("||") and s.endswith("||"))
    pairs = {"(": ")", "[": "]"}
    if not s or s[0] not in pairs or s[-1] != pairs[s[0]]:
        return False
    depth = 0
    for k, c in enumerate(s):
        depth += c in "(["
        depth -= c in ")]"
        if depth == 0 and k < len(s) - 1:
            return False
    return True


def _atomic(s: str) -> bool:
    """One operand: no space, operator or comma outside brackets (``2p_c``,
    ``(w - w^g)^2``, ``max(v, eps)``), or one ``|...|``; not a leading minus."""
    if _enclosed(s):
        return True
    if not s or s[0] in "+-":
        return False
    depth = 0
    closed = False  # the last character was a bracket closing at depth 0
    for c in s:
        if depth == 0 and closed and c not in "^_'":
            return False  # a product after a bracket: (1-p)(2-p), (a + b)c
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif depth == 0 and (c in " +-/=,<>|;" or c == "{"):
            return False
        closed = c in ")]" and depth == 0
    return depth == 0


def _group(s: str) -> str:
    """``s`` in parentheses unless it is one atom."""
    return s if _atomic(s) else f"({s})"


class _Text:
    """Plain text built piece by piece, spaced where juxtaposition needs it."""

    def __init__(self):
        self.text = ""
        self.last = "text"  # kind of the last piece: text, word, frac, bigop, prefix

    def add(self, piece: str, kind: str = "text") -> None:
        if not piece or (self.last == "prefix" and not piece.strip()):
            return  # "\partial \ell" is dL, "\lVert x" is ||x
        if kind == "script":  # glued to what it belongs to; keeps that kind
            self.text = self.text.rstrip() + piece
            return
        tail = self.text[-1:]
        space = False
        if kind in _WORDLIKE and self.last != "prefix":
            space = bool(re.match(r"[A-Za-z0-9)\]'*]", tail))
        elif kind == "text" and self.last in ("word", "frac", "bigop"):
            space = bool(re.match(r"[A-Za-z0-9]", piece)) or (
                self.last in ("frac", "bigop") and piece[0] in "([")
        if space and tail != " ":
            self.text += " "
        self.text += piece
        self.last = kind


def _render(tokens: list) -> str:
    out = _Text()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if isinstance(tok, list):
            out.add(_render(tok), "word" if tok and tok[0][0] == "cmd" else "text")
            continue
        kind, val = tok
        if kind == "chr":
            if val in "^_":
                arg, i = _argument(tokens, i)
                out.add(val + _script(_render(arg)), "script")
            else:
                out.add(val)
        elif kind == "sym":
            if val in ",;: ":
                out.add(" ")
            elif val in "{}_|%&#$":
                out.add(val)
            # \! (negative space) and \\ (a row break outside an environment): nothing
        else:
            i = _command(val, tokens, i, out)
    text = re.sub(r"\s+", " ", out.text)
    text = re.sub(r"([(\[])\s+", r"\1", text)
    return re.sub(r"\s+([)\],])", r"\1", text).strip()


def _script(s: str) -> str:
    return s if re.fullmatch(r"[A-Za-z0-9.*']+", s) else f"({s})"


def _fraction(num: list, den: list) -> str:
    def strip(tokens):
        while tokens and tokens[0] == ("chr", " "):
            tokens = tokens[1:]
        while tokens and tokens[-1] == ("chr", " "):
            tokens = tokens[:-1]
        return tokens

    n, d = strip(num), strip(den)
    if n[:1] == [("cmd", "partial")] and d[:1] == [("cmd", "partial")]:  # dL/dy
        if len(n) > 1 and n[1] == ("chr", "^"):  # d^2 L/dy^2, d^2 L/(dz dz^T)
            power, j = _argument(n, 2)
            below = "d" + _render(d[1:]).strip()
            if " " in below:
                below = f"({below})"
            return f"d^{_script(_render(power))} {_render(n[j:]).strip()}/{below}"
        return f"d{_group(_render(n[1:]))}/d{_group(_render(d[1:]))}"
    return f"{_group(_render(num))}/{_group(_render(den))}"


def _function(name: str, tokens: list, i: int, out: _Text) -> int:
    r"""A function's name; a fraction right after it goes in its parentheses:
    ``\log\frac{a}{b}`` is ``log(a/b)``."""
    j = i
    while j < len(tokens) and tokens[j] == ("chr", " "):
        j += 1
    if j < len(tokens) and tokens[j] in (("cmd", "frac"), ("cmd", "tfrac"), ("cmd", "dfrac")):
        num, j = _argument(tokens, j + 1)
        den, j = _argument(tokens, j)
        out.add(f"{name}({_fraction(num, den)})", "word")
        return j
    out.add(name, "word")
    return i


def _command(name: str, tokens: list, i: int, out: _Text) -> int:
    """Render the command ``name`` whose arguments start at ``tokens[i]``; the next index."""
    if name in ("frac", "tfrac", "dfrac"):
        num, i = _argument(tokens, i)
        den, i = _argument(tokens, i)
        out.add(_fraction(num, den), "frac")
    elif name in _FUNCTIONS:
        return _function(name, tokens, i, out)
    elif name == "operatorname":
        arg, i = _argument(tokens, i)
        return _function(_render(arg), tokens, i, out)
    elif name in _BIG_OPERATORS:
        out.add(_BIG_OPERATORS[name], "bigop")
    elif name == "partial":
        out.add("d", "prefix")
    elif name == "sqrt":
        arg, i = _argument(tokens, i)
        out.add(f"sqrt({_render(arg)})", "word")
    elif name in _TEXT_ARGUMENT:
        arg, i = _argument(tokens, i)
        out.add(_render(arg) if name not in ("text", "textrm", "textit", "textbf")
                else _render_text(arg), "word")
    elif name in _ACCENTS:
        arg, i = _argument(tokens, i)
        out.add(_render(arg) + _ACCENTS[name], "word")
    elif name == "lVert":
        out.add("||", "prefix")
    elif name == "rVert":
        out.text = out.text.rstrip()
        out.add("||")
    elif name == "begin":
        env, i = _argument(tokens, i)
        env_name = _render(env)
        body = []
        while i < len(tokens) and tokens[i] != ("cmd", "end"):
            body.append(tokens[i])
            i += 1
        _, i = _argument(tokens, i + 1)  # \end's {name}
        out.add(_environment(env_name, body), "word")
    elif name in _DROPPED:
        pass
    elif name in ("quad", "qquad"):
        out.add(" ")
    elif name in _GREEK:
        out.add(_GREEK[name], "word")
    elif name in _SYMBOLS:
        symbol = _SYMBOLS[name]
        out.add(symbol, "word" if symbol[0].isalpha() else "text")
    else:  # an unknown command: its name, never a backslash
        out.add(name, "word")
    return i


def _render_text(tokens: list) -> str:
    """The argument of ``\\text``: spaces kept at its ends (they separate words)."""
    inner = _render(tokens)
    flat = [t for t in tokens if not isinstance(t, list)]
    lead = " " if flat[:1] == [("chr", " ")] else ""
    trail = " " if flat[-1:] == [("chr", " ")] else ""
    return lead + inner + trail


def _environment(name: str, body: list) -> str:
    rows, cells, cell = [], [], []
    for tok in body + [("sym", "\\")]:
        if tok == ("chr", "&"):
            cells.append(_render(cell))
            cell = []
        elif tok == ("sym", "\\"):
            cells.append(_render(cell))
            cell = []
            if any(cells):
                rows.append(cells)
            cells = []
        else:
            cell.append(tok)
    if name == "cases":
        return "{ " + "; ".join(f"{r[0]} if {r[1]}" if len(r) > 1 else r[0]
                                for r in rows) + " }"
    return "[" + ", ".join("[" + ", ".join(r) + "]" for r in rows) + "]"


def latex_to_text(latex: str) -> str:
    r"""A LaTeX formula as readable plain text for the terminal (ASCII only).

    ``\frac{a}{b}`` becomes ``a/b`` (each side parenthesised unless it is one atom) and
    ``\frac{\partial \ell}{\partial y}`` becomes ``dL/dy``; ``\ell`` is ``L``;
    ``\sum_i`` is ``sum_i``; Greek letters are their names (``\varepsilon`` is ``eps``);
    ``\log``, ``\max``, ``\operatorname{softmax}`` and ``\mathrm{IoU}`` are their names;
    ``\left``/``\right`` and spacing commands go; ``\lVert x \rVert`` is ``||x||``;
    ``x^{a b}`` is ``x^(a b)``; ``\begin{cases} a & c \\ b & d \end{cases}`` is
    ``{ a if c; b if d }`` and a matrix is ``[[a, b], [c, d]]``. No backslash remains.
    """
    return _render(_tokenize(latex))
