r"""The source material's worked numbers, each recomputed with losskit.

The project was commissioned from tutorial articles on loss functions; their worked
numbers (collected in the seeds digest) are behaviour losskit must show. Each
:class:`Check` below holds what the source prints, as the source prints it, and a
callable that computes the same quantity with losskit. :func:`run_checks` compares them
to the precision of the printed digits:

* a number printed with ``d`` decimals (``"0.763"``) must round to it:
  :math:`|\text{computed} - \text{printed}| \le \tfrac12 10^{-d}`;
* a number printed with a trailing ``"..."`` (``"6.90775..."``) is a truncation: the
  computed value must start with those digits;
* counts and exact results (``"287"``, ``"34"``, ``"0"``) must be equal.

The ``losskit demo`` command prints this table, with the digest section each number is
from (:data:`SECTIONS`) and what the source material is (:data:`SOURCE_MATERIAL`,
:data:`TUTORIALS`); ``docs/sources.md`` lists the same numbers with their sources.

Examples
--------
>>> from losskit.lab.digest import run_checks
>>> rows = run_checks()
>>> row = next(r for r in rows if r.source_says == "34")
>>> row.losskit_computes, row.ok
('34', True)
>>> all(r.ok is not False for r in rows)
True
"""

from __future__ import annotations

import functools
import importlib
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from ..losses.cross_entropy import cross_entropy, sigmoid_binary_cross_entropy, softmax_cross_entropy
from ..losses.regression import mse
from .experiments import saturation

__all__ = ["Check", "Row", "CHECKS", "run_checks", "compare", "Tutorial", "TUTORIALS",
           "SOURCE_MATERIAL", "SECTIONS"]


# --------------------------------------------------------------------------- the sources
#: the source material, as the seeds digest describes it
SOURCE_MATERIAL = ("five tutorial articles on loss functions in deep learning (two in "
                   "English translation, three in Chinese; one a chapter of a well-known "
                   "NumPy neural-network course, one on the loss layer of a classic C++ "
                   "framework)")

#: the seeds digest's sections that hold worked numbers: ``Check.section`` -> title
SECTIONS = {
    "2": "Mean squared error",
    "3": "The saturation experiment",
    "4": "Cross-entropy",
    "5": "Reading a training curve",
}


@dataclass(frozen=True)
class Tutorial:
    """One source tutorial: its title, its author and/or site, the digest sections that
    draw on it."""

    title: str
    author: str
    sections: tuple[str, ...]


#: The tutorials by title and author/site. The seeds digest describes them
#: (:data:`SOURCE_MATERIAL`) without recording their titles or authors, so none is
#: named here rather than guessed; ``losskit demo`` and ``docs/sources.md`` list them
#: once they are filled in.
TUTORIALS: tuple[Tutorial, ...] = ()


# --------------------------------------------------------------------------- machinery
@dataclass(frozen=True)
class Check:
    """One worked number: where it is from, what is printed, how losskit computes it.

    ``expected`` defaults to the printed number; ``exact=True`` demands equality (counts,
    exact results). ``requires`` names an optional losskit module; when it cannot be
    imported the check is skipped (``ok=None``), not failed. ``display`` formats the
    computed value (default: the printed precision plus two digits).
    """

    section: str  # the seeds digest's section (a key of SECTIONS)
    label: str
    source_says: str
    compute: Callable[[], float]
    exact: bool = False
    expected: float | None = None
    tol: float | None = None
    requires: str | None = None
    display: Callable[[float], str] | None = None


class Row(NamedTuple):
    """One line of the comparison: unpacks as ``(label, source_says, losskit_computes, ok)``.

    ``ok`` is True (agrees), False (disagrees, or computing it raised) or None (skipped:
    an optional module is not available; ``losskit_computes`` says which).
    """

    label: str
    source_says: str
    losskit_computes: str
    ok: bool | None


def _printed(source_says: str) -> tuple[float, int, bool]:
    """``(value, decimals, truncated)`` of a printed number such as ``"6.90775..."``."""
    s = source_says.strip()
    truncated = s.endswith("...")
    s = s.rstrip(".") if truncated else s
    decimals = len(s.split(".", 1)[1]) if "." in s else 0
    return float(s), decimals, truncated


def compare(check: Check, computed: float) -> bool:
    """Does ``computed`` agree with ``check.source_says`` to the printed precision?"""
    if not math.isfinite(computed):
        return False
    if check.expected is not None:
        expected, decimals, truncated = check.expected, None, False
    else:
        expected, decimals, truncated = _printed(check.source_says)
    slack = 1e-12 * max(1.0, abs(expected))  # float noise, far below any printed digit
    if check.tol is not None:
        return abs(computed - expected) <= check.tol + slack
    if check.exact or decimals is None:
        return abs(computed - expected) <= slack
    unit = 10.0 ** -decimals
    if truncated:
        return expected - slack <= computed < expected + unit + slack
    return abs(computed - expected) <= 0.5 * unit + slack


def _format(check: Check, computed: float) -> str:
    if check.display is not None:
        return check.display(computed)
    if check.exact and float(computed).is_integer():
        return str(int(computed))
    try:
        decimals = _printed(check.source_says)[1]
    except ValueError:
        decimals = 4
    return f"{computed:.{decimals + 2}f}"


def _module_available(name: str) -> bool:
    """False only when the module does not exist; a module that exists but fails to
    import counts as available, so the check runs and reports the error."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        return exc.name != name
    except Exception:
        return True
    return True


def run_checks(checks: tuple[Check, ...] | None = None) -> list[Row]:
    """Compute every check; one :class:`Row` each, in order.

    Parameters
    ----------
    checks : tuple of Check, optional
        Defaults to :data:`CHECKS`, the digest's worked numbers.
    """
    rows = []
    for check in CHECKS if checks is None else checks:
        if check.requires is not None and not _module_available(check.requires):
            rows.append(Row(check.label, check.source_says,
                            f"skipped: {check.requires} not available", None))
            continue
        try:
            computed = float(check.compute())
        except Exception as exc:  # a failing computation is a failed check, shown
            rows.append(Row(check.label, check.source_says,
                            f"error: {type(exc).__name__}: {exc}", False))
            continue
        rows.append(Row(check.label, check.source_says, _format(check, computed),
                        compare(check, computed)))
    return rows


# --------------------------------------------------------------------------- the numbers
def _a(*values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


# section 2: linear regression x = [-2..2], y = [-3, 0, 0, 3, 4], sum of squared errors
_X = _a(-2, -1, 0, 1, 2)
_Y = _a(-3, 0, 0, 3, 4)


def _sse(w: float, b: float) -> float:
    return float(mse(w * _X + b, _Y, reduction="sum"))


# section 3: the saturation experiment (cached: several rows read the same runs)
@functools.lru_cache(maxsize=None)
def _run(loss: str, lr: float = 0.2):
    return saturation(loss, lr=lr)


# section 4: KL divergence of P = (0.9, 0.1) from Q
_P = _a(0.9, 0.1)
_Q_FLIPPED = _a(0.1, 0.9)
_Q_UNIFORM = _a(0.5, 0.5)


def _info():
    return importlib.import_module("losskit.info")


def _kl_info(q: np.ndarray, base: float) -> float:
    return float(_info().kl_divergence(_P, q, base=base))


def _kl_via_cross_entropy(q: np.ndarray, base: float) -> float:
    # D_KL(P||Q) = H(P, Q) - H(P), both as losskit.cross_entropy with soft target P
    h_pq = float(cross_entropy(q, _P, reduction="sum"))
    h_p = float(cross_entropy(_P, _P, reduction="sum"))
    return (h_pq - h_p) / math.log(base)


# section 4: the NumPy course's 10-class softmax output; the true class is 2
_T = _a(0, 0, 1, 0, 0, 0, 0, 0, 0, 0)
_Y_RIGHT = _a(0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0)
_Y_WRONG = _a(0.1, 0.05, 0.1, 0.0, 0.05, 0.1, 0.0, 0.6, 0.0, 0.0)


def _bce_grad_minus_a_minus_y() -> float:
    """max |dL/dz - (a - y)| of sigmoid BCE over a grid of logits and targets."""
    z = np.linspace(-10.0, 10.0, 21)
    worst = 0.0
    for y in (0.0, 0.25, 0.5, 1.0):
        g = sigmoid_binary_cross_entropy.grad(z, np.full_like(z, y), reduction="sum")
        a = 1.0 / (1.0 + np.exp(-z))  # the sigmoid written out, independently of losskit
        worst = max(worst, float(np.max(np.abs(g - (a - y)))))
    return worst


CHECKS: tuple[Check, ...] = (
    # ---- 2. mean squared error --------------------------------------------------------
    Check("2", "SSE of linear regression, (w, b) = (2, 1)  [mse, reduction='sum']", "3",
          lambda: _sse(2.0, 1.0), exact=True),
    Check("2", "SSE of linear regression, (w, b) = (0, 0)  [mse, reduction='sum']", "34",
          lambda: _sse(0.0, 0.0), exact=True),
    # ---- 3. the saturation experiment ---------------------------------------------------
    Check("3", "saturation step 1: a = sigmoid(ln 9)", "0.9",
          lambda: _run("mse").trajectory[0].a),
    Check("3", "saturation step 1: MSE 1/2 (a - y)^2", "0.08",
          lambda: _run("mse").trajectory[0].loss),
    Check("3", "saturation step 1: gradient (a-y) a (1-a) x", "0.036",
          lambda: _run("mse").trajectory[0].grad),
    Check("3", "saturation step 1: w = ln 9 - 0.2 * 0.036", "2.1900",
          lambda: _run("mse").trajectory[0].w_next),
    Check("3", "source's printed next step (eta = 1.0, not 0.2): w", "2.161",
          lambda: _run("mse", 1.0).trajectory[1].w),
    Check("3", "source's printed next step (eta = 1.0, not 0.2): a", "0.8967",
          lambda: _run("mse", 1.0).trajectory[1].a),
    Check("3", "updates until 1/2 (a-y)^2 < 0.001, MSE (w trained, b = 0)", "287",
          lambda: _run("mse").updates, exact=True),
    Check("3", "updates until 1/2 (a-y)^2 < 0.001, cross-entropy", "53",
          lambda: _run("cross_entropy").updates, exact=True),
    # ---- 4. cross-entropy -----------------------------------------------------------------
    Check("4", "D_KL(P||Q), P=(0.9,0.1), Q=(0.1,0.9), base 10  [info.kl_divergence]",
          "0.763", lambda: _kl_info(_Q_FLIPPED, 10.0), requires="losskit.info"),
    Check("4", "D_KL(P||Q), P=(0.9,0.1), Q=(0.5,0.5), base 10  [info.kl_divergence]",
          "0.160", lambda: _kl_info(_Q_UNIFORM, 10.0), requires="losskit.info"),
    Check("4", "D_KL(P||Q), Q=(0.1,0.9), natural log  [info.kl_divergence]", "1.7578",
          lambda: _kl_info(_Q_FLIPPED, math.e), requires="losskit.info"),
    Check("4", "D_KL(P||Q), Q=(0.5,0.5), natural log  [info.kl_divergence]", "0.3681",
          lambda: _kl_info(_Q_UNIFORM, math.e), requires="losskit.info"),
    Check("4", "D_KL(P||P) = 0: zero when the distributions match  [info.kl_divergence]",
          "0", lambda: _kl_info(_P, math.e), exact=True, requires="losskit.info"),
    Check("4", "D_KL = H(P,Q) - H(P), Q=(0.1,0.9), base 10  [cross_entropy]", "0.763",
          lambda: _kl_via_cross_entropy(_Q_FLIPPED, 10.0)),
    Check("4", "D_KL = H(P,Q) - H(P), Q=(0.5,0.5), base 10  [cross_entropy]", "0.160",
          lambda: _kl_via_cross_entropy(_Q_UNIFORM, 10.0)),
    Check("4", "cross-entropy, output 0.6 on the true class  [cross_entropy]", "0.51",
          lambda: float(cross_entropy(_Y_RIGHT, _T, reduction="sum"))),
    Check("4", "cross-entropy, output 0.1 on the true class  [cross_entropy]", "2.30",
          lambda: float(cross_entropy(_Y_WRONG, _T, reduction="sum"))),
    Check("4", "sigmoid BCE gradient wrt z, max |dL/dz - (a - y)| over 84 points", "a - y",
          _bce_grad_minus_a_minus_y, expected=0.0, tol=1e-15,
          display=lambda v: f"a - y (max diff {v:.1e})"),
    Check("4", "perfect classifier: -ln 1, logits (1e30, 0, 0)  [softmax_cross_entropy]",
          "0", lambda: float(softmax_cross_entropy(_a(1e30, 0.0, 0.0)[None, :],
                                                   np.array([0]))), exact=True),
    # ---- 5. reading a training curve ------------------------------------------------------
    Check("5", "chance level ln K, K = 1000, uniform logits  [softmax_cross_entropy]",
          "6.90775...", lambda: float(softmax_cross_entropy(np.zeros((1, 1000)),
                                                            np.array([0])))),
)
