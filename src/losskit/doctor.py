r"""Read a training curve: what a loss history says about the training run.

:func:`doctor` looks at the recorded training loss (and, when given, the validation loss)
and reports what a practitioner would look for first: NaN/inf values, a loss running away,
a classifier stuck at the loss of a uniform guess :math:`\ln K`, no progress at all, and
the opening gap between training and validation loss that marks overfitting. Each
finding names the step where it shows and what to try.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import array_api_compat
import numpy as np

from .core.validation import check_int, check_scalar
from .core.arrays import to_numpy

__all__ = ["doctor", "DoctorReport", "Finding", "CODES", "VERDICTS"]

#: Every finding code :func:`doctor` can report, most severe first.
CODES = ("non_finite", "diverging", "stuck_at_chance", "rising", "not_decreasing",
         "overfitting")

#: The verdicts of :attr:`DoctorReport.verdict`, and the exit status of
#: ``losskit doctor`` for each.
VERDICTS = {"healthy": 0, "warnings": 0, "failed": 1, "too_short": 3}

#: The class counts ``K`` that :func:`doctor` considers for a chance level
#: :math:`\ln K` when ``num_classes`` is not given.
GUESS_CLASSES = (2, 1000)

#: Without ``num_classes``: a plateau counts as :math:`\ln K` only when
#: :math:`|L - \ln K| \le \min(\text{GUESS\_ABS}, \text{GUESS\_REL}/K)`.
GUESS_ABS = 0.005
GUESS_REL = 0.025

@dataclass(frozen=True)
class Finding:
    r"""One thing :func:`doctor` noticed.

    Attributes
    ----------
    code : str
        Machine-readable kind, one of :data:`CODES`.
    level : {"error", "warning"}
        ``"error"``: the run is broken (NaN, divergence, stuck at chance); ``"warning"``:
        it is not learning, or not generalising, as it should.
    step : int or float
        Where it shows: the caller's step number (``steps=``/``val_steps=``), else the
        index into the history.
    message : str
        What was seen, with the numbers.
    advice : str
        What to try.
    num_classes : int or None
        For ``stuck_at_chance``: the :math:`K` whose chance level :math:`\ln K` the loss
        sits at (the one passed to :func:`doctor`, or the one it inferred); else None.
    """

    code: str
    level: str
    step: Any
    message: str
    advice: str
    num_classes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict; ``num_classes`` only for ``stuck_at_chance``."""
        out = {"code": self.code, "level": self.level, "step": self.step,
               "message": self.message, "advice": self.advice}
        if self.code == "stuck_at_chance":
            out["num_classes"] = self.num_classes
        return out

    def __str__(self) -> str:
        return (f"[{self.level}] {self.code} at step {self.step}: {self.message}\n"
                f"    advice: {self.advice}")


@dataclass(frozen=True)
class DoctorReport:
    """The findings of :func:`doctor`, errors first, then warnings, each by step.

    Iterating gives the :class:`Finding` objects; ``len(report)`` counts them and
    ``"overfitting" in report`` tests for a code. An empty report means the curve looks
    healthy, unless it was :attr:`too_short` to judge (fewer than ``min_length`` finite
    training values: one point, or none, says nothing about a trend). ``bool(report)``
    is :attr:`ok`, like ``bool`` of a gradcheck result.

    Attributes
    ----------
    findings : tuple of Finding
    num_points, num_val_points : int (``num_val_points`` None without ``val_losses``)
        Lengths of the curves, non-finite values included.
    window : int
        The moving-median width used on the training curve.
    num_classes : int or None
        As passed to :func:`doctor`.
    too_short : bool
        The training curve had fewer finite values than ``min_length``, so the trend
        checks did not run: the verdict is ``"too_short"`` unless an error was found.
    """

    findings: tuple[Finding, ...]
    num_points: int
    window: int
    num_classes: int | None = None
    num_val_points: int | None = None
    too_short: bool = False

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def __getitem__(self, i: int) -> Finding:
        return self.findings[i]

    def __contains__(self, code: object) -> bool:
        if isinstance(code, Finding):
            return code in self.findings
        return code in self.codes

    def __bool__(self) -> bool:
        return self.ok

    @property
    def ok(self) -> bool:
        """No error-level finding (warnings allowed) and a curve long enough to judge."""
        return self.verdict in ("healthy", "warnings")

    @property
    def healthy(self) -> bool:
        """No finding at all, on a curve long enough to judge."""
        return self.verdict == "healthy"

    @property
    def verdict(self) -> str:
        """``"failed"`` (an error-level finding), ``"too_short"`` (too few values to
        judge, no error), ``"warnings"`` (warnings only) or ``"healthy"`` (nothing found).

        ``losskit doctor`` exits with :data:`VERDICTS` ``[verdict]``: 0, 0, 1 or 3.
        """
        if any(f.level == "error" for f in self.findings):
            return "failed"
        if self.too_short:
            return "too_short"
        return "warnings" if self.findings else "healthy"

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes of the findings, in report order."""
        return tuple(f.code for f in self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "warning")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (Python numbers, strings, lists and dicts only)."""
        return {
            "ok": self.ok,
            "healthy": self.healthy,
            "verdict": self.verdict,
            "num_points": self.num_points,
            "num_val_points": self.num_val_points,
            "num_classes": self.num_classes,
            "window": self.window,
            "findings": [f.to_dict() for f in self.findings],
        }

    def __str__(self) -> str:
        head = f"losskit doctor: {self.num_points} training loss value" \
               f"{'s' if self.num_points != 1 else ''}"
        if self.num_val_points is not None:
            head += f", {self.num_val_points} validation"
        head += f" (smoothing window {self.window})"
        short = ("too short to judge: fewer training loss values than the trend checks "
                 "need (one point, or none, shows no trend); log more steps and run again")
        if not self.findings:
            return head + "\n" + (short if self.too_short
                                  else "no problems found: the curve looks healthy")
        n_err, n_warn = len(self.errors), len(self.warnings)
        counts = ", ".join(p for p in (
            f"{n_err} error{'s' if n_err != 1 else ''}" if n_err else "",
            f"{n_warn} warning{'s' if n_warn != 1 else ''}" if n_warn else "") if p)
        lines = [f"{head}: {counts}", *(str(f) for f in self.findings)]
        if self.too_short:
            lines.append(short.replace("too short to judge", "the trend is too short to "
                                       "judge", 1))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"DoctorReport(ok={self.ok}, codes={self.codes})"


# ----------------------------------------------------------------------------- helpers
def _g(v: float) -> str:
    return f"{v:.4g}"


def _curve(name: str, x: Any) -> np.ndarray:
    """A 1-D float64 array of real numbers (NaN/inf allowed: they are findings; empty
    allowed: it is too short to judge)."""
    if isinstance(x, (str, bytes)) or isinstance(x, dict):
        raise TypeError(f"`{name}` must be a 1-D sequence of numbers; got "
                        f"{type(x).__name__}")
    if isinstance(x, (list, tuple)):
        # a list of 0-d tensors (``losses.append(loss)``) is common: detach each one
        x = [to_numpy(v) if array_api_compat.is_array_api_obj(v) else v for v in x]
    try:
        arr = np.asarray(to_numpy(x))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a 1-D sequence of numbers; could not read "
                        f"{type(x).__name__} as an array ({exc})") from exc
    if arr.size == 0 and arr.ndim == 1:
        arr = arr.astype(np.float64)  # [] reads as float64 already; np.array([], int)
    if arr.dtype.kind not in "iuf":
        what = "booleans" if arr.dtype.kind == "b" else f"dtype {arr.dtype}"
        raise TypeError(f"`{name}` must hold real numbers; got {what}")
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D (one value per step); got shape "
                         f"{arr.shape}" + ("; flatten it explicitly if that is meant"
                                           if arr.ndim > 1 else ""))
    return arr.astype(np.float64)


def _steps(name: str, steps: Any, n: int, of: str) -> list:
    """Validated step numbers, as Python ints (or floats), strictly increasing."""
    arr = _curve(name, steps)
    if arr.size != n:
        raise ValueError(f"`{name}` must have one step per value of `{of}` ({n}); got "
                         f"{arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite numbers")
    if n > 1 and not np.all(np.diff(arr) > 0):
        i = int(np.argmax(~(np.diff(arr) > 0)))
        raise ValueError(f"`{name}` must be strictly increasing; got {_g(arr[i])} then "
                         f"{_g(arr[i + 1])} at positions {i} and {i + 1}")
    if np.all(arr == np.round(arr)):
        return [int(v) for v in arr]
    return [float(v) for v in arr]


def _auto_window(n: int) -> int:
    if n < 9:
        return 1
    w = max(3, min(101, n // 20))
    return w if w % 2 else w + 1


def _moving_median(x: np.ndarray, w: int) -> np.ndarray:
    """Centred moving median; the window is truncated at both ends (no padding bias)."""
    n = x.size
    if w <= 1 or n <= 1:
        return x.copy()
    lo = w // 2
    hi = w - 1 - lo
    padded = np.concatenate([np.full(lo, np.nan), x, np.full(hi, np.nan)])
    view = np.lib.stride_tricks.sliding_window_view(padded, w)
    out = np.empty(n, dtype=np.float64)
    chunk = max(1, 2 ** 22 // w)  # bound the temporary memory
    for s in range(0, n, chunk):
        out[s:s + chunk] = np.nanmedian(view[s:s + chunk], axis=1)
    return out


def _noise(x: np.ndarray) -> float:
    r"""Robust per-point noise level of a curve.

    From the second differences :math:`d_i = x_i - (x_{i-1} + x_{i+1})/2`, which remove
    any locally linear trend and have variance :math:`\tfrac32\sigma^2` for independent
    noise: :math:`\sigma \approx 1.4826\,\mathrm{median}|d_i| / \sqrt{1.5}`.
    """
    if x.size < 3:
        return 0.0
    d = x[1:-1] - 0.5 * (x[:-2] + x[2:])
    return float(1.4826 * np.median(np.abs(d)) / math.sqrt(1.5))


def _rebound(x: np.ndarray, s: np.ndarray, w: int, sigma: float) -> tuple:
    """How far a curve climbs back after its minimum, measured robustly.

    Returns ``(i_min, low, high, margin)``: the index of the smoothed minimum, the median
    of the raw values in a window around it, the median of the raw values at the end,
    and three standard errors of the difference of those two medians. Each window holds
    ``L = max(3, w, (n - i_min) // 3)`` values, so the levels do not rest on a few noisy
    points and the choice of the minimum biases them little.
    """
    n = x.size
    i_min = int(np.argmin(s))
    span = max(3, w, (n - i_min) // 3)
    lo = max(0, i_min - span // 2)
    low = float(np.median(x[lo:lo + span]))
    if lo + span > n - span:
        # the end window would overlap the minimum's: too close to the end to climb
        return i_min, low, low, 0.0
    high = float(np.median(x[n - span:]))
    # a median of L values has standard error 1.2533 sigma / sqrt(L)
    margin = 3.0 * 1.2533 * sigma * math.sqrt(2.0 / span)
    return i_min, low, high, margin


def _first_bad(x: np.ndarray) -> int | None:
    bad = ~np.isfinite(x)
    return int(np.argmax(bad)) if bad.any() else None


def _non_finite(x: np.ndarray, first: int, steps: list, what: str) -> Finding:
    v = x[first]
    kind = "nan" if np.isnan(v) else ("+inf" if v > 0 else "-inf")
    n_bad = int(np.count_nonzero(~np.isfinite(x)))
    more = f" (the first of {n_bad} non-finite values)" if n_bad > 1 else ""
    return Finding(
        "non_finite", "error", steps[first],
        f"the {what} loss is {kind} at step {steps[first]}{more}",
        "lower the learning rate and clip gradients (e.g. by global norm); use a "
        "numerically stable loss on logits (softmax_cross_entropy, "
        "sigmoid_binary_cross_entropy) instead of log of probabilities; check the inputs "
        "and labels for NaN/inf and the model for divisions by zero or log(0)")


_STUCK_ADVICE = ("raise the learning rate or change the weight initialisation; also check "
                 "that the labels belong to the inputs (shuffled labels give this curve), "
                 "that the loss receives logits (softmax_cross_entropy), and that gradients "
                 "reach the parameters")


def _in_band_from(inside: np.ndarray, steps: list, fallback: int) -> Any:
    """The first step from which at least 90% of the curve lies in the band."""
    m = inside.size
    suffix_frac = np.cumsum(inside[::-1])[::-1] / np.arange(m, 0, -1)
    ok_from = np.nonzero(inside & (suffix_frac >= 0.9))[0]
    return steps[int(ok_from[0])] if ok_from.size else steps[fallback]


def _guess_tolerance(k: int) -> float:
    """How close to :math:`\\ln K` a plateau must be for :func:`doctor` to name ``K``."""
    return min(GUESS_ABS, GUESS_REL / k)


def _stuck_at_chance(x: np.ndarray, s: np.ndarray, steps: list, num_classes: int | None,
                     min_length: int, chance_tol: float) -> Finding | None:
    """The ``stuck_at_chance`` finding of :func:`doctor` (its Notes give the rules)."""
    m = x.size
    if num_classes is not None:
        k = num_classes
        chance = math.log(k)
        band = chance_tol * chance
        tail = max(min_length, m // 4)
        level = float(np.median(x[m - tail:]))
        if abs(level - chance) > band:
            return None
    else:
        tail = min(m, max(min_length, m // 2))
        level = float(np.median(x[m - tail:]))
        if not level > 0.5 * math.log(GUESS_CLASSES[0]):
            return None
        k = int(round(math.exp(min(level, 50.0))))
        if not GUESS_CLASSES[0] <= k <= GUESS_CLASSES[1]:
            return None
        chance = math.log(k)
        tol = _guess_tolerance(k)
        if abs(level - chance) > tol:
            return None
        # flat: the two halves of the final stretch sit at the same level
        half = tail // 2
        early = float(np.median(x[m - tail:m - tail + half])) if half else level
        late = float(np.median(x[m - tail + half:]))
        if abs(late - early) > 2.0 * tol:
            return None
        band = chance_tol * chance
    if float(np.mean(np.abs(s[m - tail:] - chance) <= band)) < 0.9:
        return None  # only passing through ln K
    t0 = _in_band_from(np.abs(s - chance) <= band, steps, m // 2)
    if num_classes is not None:
        # inside the band, a fall between the two halves of the final stretch larger
        # than three standard errors of their medians and than 0.1% of ln K is slow
        # learning, not none
        half = tail // 2
        early = float(np.median(x[m - tail:m - tail + half]))
        late = float(np.median(x[m - tail + half:]))
        margin = max(3.0 * 1.2533 * _noise(x) * math.sqrt(2.0 / max(half, 1)),
                     1e-3 * chance)
        trend = (f", falling only slowly ({_g(early)} to {_g(late)}, medians of the two "
                 f"halves of the last {tail} steps): the model barely learns"
                 if early - late > margin else ": the model shows no sign of learning")
        message = (f"the training loss stays at {_g(level)}, within {chance_tol:.0%} of "
                   f"ln {k} = {chance:.5g}, the loss of a uniform guess over {k} classes, "
                   f"from step {t0} on{trend}")
        advice = _STUCK_ADVICE
    else:
        message = (f"the training loss stays at {level:.6g} from step {t0} on, within "
                   f"{_guess_tolerance(k):.2g} of ln {k} = {chance:.5g}: likely stuck at "
                   f"chance for {k} classes (the loss of a uniform guess over {k} "
                   "classes); the model shows no sign of learning")
        advice = (f"if the model has {k} classes, it predicts a uniform guess (pass "
                  f"num_classes={k}, --num-classes {k}, to check against ln {k}): "
                  + _STUCK_ADVICE)
    return Finding("stuck_at_chance", "error", t0, message, advice, num_classes=k)


# ----------------------------------------------------------------------------- doctor
def doctor(train_losses: Any, *, num_classes: int | None = None, val_losses: Any = None,
           steps: Any = None, val_steps: Any = None, window: int | None = None,
           min_length: int = 5, chance_tolerance: float = 0.05, diverge_factor: float = 2.0,
           rebound_fraction: float = 0.5, min_decrease: float = 0.05,
           overfit_tolerance: float = 0.05) -> DoctorReport:
    r"""Diagnose a loss curve: NaN/inf, divergence, stuck at chance, no progress, overfitting.

    Parameters
    ----------
    train_losses : 1-D sequence or array of real numbers
        The training loss, one value per logged step (any array library; NaN and inf
        allowed: they are findings; empty allowed: too short to judge).
    num_classes : int, optional
        Number of classes :math:`K \ge 2` of a single-label classifier trained with
        cross-entropy (in nats). A uniform prediction costs exactly :math:`\ln K`
        (ImageNet, :math:`K = 1000`: :math:`\ln 1000 = 6.90775`): ``stuck_at_chance``
        compares the curve with it, in a band of ``chance_tolerance``. Without it, a
        long flat plateau very close to :math:`\ln K` for some
        :math:`2 \le K \le 1000` is still reported, with that :math:`K` (see Notes).
    val_losses : 1-D sequence or array of real numbers, optional
        The validation loss. Enables ``overfitting``. Of the same length as
        ``train_losses`` (logged at the same steps), or of any length with ``val_steps=``.
    steps : 1-D sequence of numbers, optional
        The step number of each training value (strictly increasing, e.g. ``[100, 200,
        ...]`` or fractional epochs). Findings report these; default: the indices
        ``0, 1, 2, ...``.
    val_steps : 1-D sequence of numbers, optional
        The step number of each validation value, on the same scale as ``steps``.
        Required when ``val_losses`` and ``train_losses`` differ in length; default: the
        training steps.
    window : int, optional
        Width of the centred moving median that smooths the curves before the trend
        checks (truncated at the ends). Default: about 5% of the curve's length,
        ``n // 20`` made odd, between 3 and 101 (1, no smoothing, below 9 values).
    min_length : int, default 5
        Curves with fewer finite values than this only get the ``non_finite`` check, and
        are too short to judge: the report's ``verdict`` is ``"too_short"`` and its
        ``ok`` false (unless an error was found: ``"failed"``).
    chance_tolerance : float, default 0.05
        ``stuck_at_chance`` band: within ``chance_tolerance * ln K`` of :math:`\ln K`.
    diverge_factor : float, default 2.0
        ``diverging`` when the smoothed loss ends at least ``diverge_factor`` times its
        starting level (for a start :math:`s_0`: above
        :math:`s_0 + (\text{diverge\_factor} - 1)|s_0|`).
    rebound_fraction : float, default 0.5
        ``rising`` when the smoothed loss climbs back from its minimum by more than this
        fraction of the decrease it had made.
    min_decrease : float, default 0.05
        ``not_decreasing`` when the smoothed loss fell by less than this fraction of its
        starting level, start to end.
    overfit_tolerance : float, default 0.05
        ``overfitting`` when the smoothed validation loss ends more than this fraction
        above its minimum (relative to the minimum's magnitude) while training loss
        kept falling.

    Returns
    -------
    DoctorReport
        The findings (errors first); empty when the curve looks healthy (or is too short
        to judge). ``report.verdict`` is ``"healthy"``, ``"warnings"``, ``"failed"`` (an
        error-level finding) or ``"too_short"``; ``report.ok`` means healthy or warnings
        only; ``report.codes``, ``print(report)`` and ``report.to_dict()``
        (JSON-friendly) summarise it.

    Raises
    ------
    TypeError
        A curve or step list that is not real numbers; ``num_classes`` not an int.
    ValueError
        A non-1-D curve, steps of the wrong length or not strictly increasing,
        ``val_losses`` of another length without ``val_steps``, ``num_classes < 2``, or
        a threshold out of range.

    Notes
    -----
    Each curve is cut at its first non-finite value (reported as ``non_finite``); the
    finite part before it is what the other checks read. It is smoothed with a centred
    moving median of width ``window`` (robust to the spikes of minibatch losses). Below,
    :math:`s` is the smoothed curve, :math:`s_0` its start, :math:`s_\text{end}` its end,
    :math:`|s_0|` the scale, and :math:`\sigma` a robust per-step noise level,
    :math:`1.4826\,\mathrm{median}_i |x_i - (x_{i-1} + x_{i+1})/2| / \sqrt{1.5}` (second
    differences, blind to a locally linear trend). Where a curve climbs back after its
    minimum, two levels are compared: *low*, the median of :math:`L` raw values around
    the minimum of :math:`s`, and *high*, the median of the last :math:`L` raw values,
    with :math:`L = \max(3, \text{window}, \lfloor (n - i_\min)/3 \rfloor)` (no climb
    when the two windows would overlap); a climb counts only if it also exceeds three
    standard errors of that difference, :math:`3 \cdot 1.2533\,\sigma \sqrt{2/L}`, so
    noise on a plateau is not read as a trend.

    ``non_finite`` (error)
        A NaN or inf value, in the training or the validation curve; step: the first.
    ``diverging`` (error)
        :math:`s_\text{end} - s_0 > (\text{diverge\_factor} - 1)\,|s_0|` and
        :math:`> 3\sigma`: the loss ends far above where it started.
    ``rising`` (warning)
        Not diverging, but the loss fell (start to *low*) by more than
        ``min_decrease`` :math:`\cdot |s_0|` and then climbed back (*low* to *high*) by
        more than ``rebound_fraction`` of that fall.
    ``stuck_at_chance`` (error)
        The model predicts a uniform guess and does not learn. With ``num_classes``:
        over the last quarter of the curve (at least ``min_length`` values) the median
        lies within ``chance_tolerance`` :math:`\cdot \ln K` of :math:`\ln K` and at
        least 90% of :math:`s` stays in that band (a curve only passing through
        :math:`\ln K` is not stuck). Without ``num_classes``, :math:`K` is inferred,
        and more is asked, since a plateau can sit near some :math:`\ln K` by chance:
        over the last half of the curve (at least ``min_length`` values) the median
        :math:`L` has :math:`K = \mathrm{round}(e^L)` with :math:`2 \le K \le 1000`
        and :math:`|L - \ln K| \le \tau_K = \min(0.005, 0.025 / K)` nats (about
        :math:`|e^L - K| \le 0.025`: 0.005 for :math:`K \le 5`, 0.0025 for
        :math:`K = 10`, 0.00025 for :math:`K = 100`), the medians of the two halves of
        that stretch differ by at most :math:`2\tau_K` (flat, not falling through
        :math:`\ln K`), and at least 90% of :math:`s` on it lies within
        ``chance_tolerance`` :math:`\cdot \ln K`. The finding's ``num_classes`` is
        :math:`K`. On a curve that has flattened at a level unrelated to chance, this
        fires for a few percent of levels at most (the bands cover that much of the
        line); noisy plateaus at a large :math:`K` may be missed: pass
        ``num_classes`` for those.
    ``not_decreasing`` (warning)
        :math:`s_0 - s_\text{end} < \text{min\_decrease} \cdot |s_0|`. Not reported
        together with any of the three above, which explain it better.
    ``overfitting`` (warning)
        ``val_losses`` given: the validation loss climbs back (*low* to *high*) by more
        than ``overfit_tolerance`` :math:`\cdot |\text{low}|` while the smoothed training
        loss is lower at its end than at the step of that minimum (interpolated).

    The step of ``diverging`` and ``rising`` is where the rise begins: the last step at
    which :math:`s` is within ``min_decrease`` :math:`\cdot |s_0|` of its minimum. The
    step of ``stuck_at_chance`` is the first step from which at least 90% of :math:`s`
    lies in the band; of ``not_decreasing`` the first step; of ``overfitting`` the
    minimum of the smoothed validation loss, the early-stopping point.

    The advice follows the usual reading of a training curve: a loss that stays at
    :math:`\ln K` shows no sign of learning (raise the learning rate or change the
    weight initialisation); a loss heading for infinity means the learning rate is too
    high. These are heuristics: a finding is a reason to look, not a proof.

    Examples
    --------
    >>> import numpy as np
    >>> from losskit.doctor import doctor
    >>> t = np.arange(200)
    >>> healthy = 2.2 * np.exp(-t / 40) + 0.1
    >>> report = doctor(healthy, num_classes=10)
    >>> report.ok, report.codes
    (True, ())

    A classifier over 10 classes whose loss never leaves :math:`\ln 10 = 2.3026`:

    >>> rng = np.random.default_rng(0)
    >>> stuck = np.log(10) + rng.normal(0, 0.02, size=200)
    >>> report = doctor(stuck, num_classes=10)
    >>> report.codes, report.ok, report.verdict
    (('stuck_at_chance',), False, 'failed')

    Without ``num_classes``, a flat plateau at :math:`\ln 3 = 1.0986` names :math:`K`:

    >>> plateau = np.concatenate([np.linspace(2.5, np.log(3), 100), np.full(900, np.log(3))])
    >>> finding = doctor(plateau)[0]
    >>> finding.code, finding.num_classes
    ('stuck_at_chance', 3)

    One value says nothing about a trend:

    >>> doctor([2.3]).verdict
    'too_short'

    A NaN at step 37:

    >>> broken = healthy.copy()
    >>> broken[37:] = np.nan
    >>> finding = doctor(broken)[0]
    >>> finding.code, finding.level, finding.step
    ('non_finite', 'error', 37)
    """
    train = _curve("train_losses", train_losses)
    n = train.size
    train_steps = list(range(n)) if steps is None else _steps("steps", steps, n,
                                                               "train_losses")
    if num_classes is not None:
        num_classes = check_int("num_classes", num_classes, lo=2, or_none=True,
                                hint=" (ln 1 = 0: one class cannot be learned)")
    val = None
    vsteps: list = []
    if val_losses is not None:
        val = _curve("val_losses", val_losses)
        if val_steps is None:
            if val.size != n:
                raise ValueError(
                    f"`val_losses` has {val.size} values but `train_losses` has {n}: pass "
                    "val_steps= (the training step of each validation value) when they "
                    "are logged at different steps")
            vsteps = list(train_steps)
        else:
            vsteps = _steps("val_steps", val_steps, val.size, "val_losses")
    elif val_steps is not None:
        raise ValueError("`val_steps` was given without `val_losses`")
    if window is not None:
        window = check_int("window", window, lo=1, or_none=True, hint=" (1: no smoothing)")
    min_length = check_int("min_length", min_length, lo=2)
    chance_tol = check_scalar("chance_tolerance", chance_tolerance, lo=0.0, hi=1.0,
                              lo_open=True, hi_open=True)
    factor = check_scalar("diverge_factor", diverge_factor, lo=1.0, lo_open=True)
    rebound = check_scalar("rebound_fraction", rebound_fraction, lo=0.0, lo_open=True)
    min_dec = check_scalar("min_decrease", min_decrease, lo=0.0, hi=1.0, hi_open=True)
    overfit_tol = check_scalar("overfit_tolerance", overfit_tolerance, lo=0.0)

    errors: list[Finding] = []
    warnings: list[Finding] = []

    # ---------------------------------------------------------------- non-finite values
    first = _first_bad(train)
    if first is not None:
        errors.append(_non_finite(train, first, train_steps, "training"))
    finite = train[:first] if first is not None else train
    m = finite.size
    w = window if window is not None else _auto_window(m)

    s_train = None
    if m >= min_length:
        s = _moving_median(finite, w)
        s_train = s
        sigma = _noise(finite)
        s0, s_end = float(s[0]), float(s[-1])
        s_min = float(np.min(s))
        scale = abs(s0) if s0 != 0 else max(float(np.max(np.abs(s))), 1e-300)
        i_low, low, high, margin = _rebound(finite, s, w, sigma)
        drop = s0 - low
        rise = high - low

        def onset() -> Any:
            band = max(min_dec * scale, 0.0)
            near = np.nonzero(s <= s_min + band)[0]
            return train_steps[int(near[-1])]

        diverging = s_end - s0 > (factor - 1.0) * scale and s_end - s0 > 3.0 * sigma
        if diverging:
            errors.append(Finding(
                "diverging", "error", onset(),
                f"the training loss rose from {_g(s0)} to {_g(s_end)} (moving medians "
                f"over {w} steps; its first value was {_g(float(finite[0]))}), "
                f"{_g(s_end / s0) + ' times' if s0 > 0 else 'far above'} its start"
                + (", and then became non-finite" if first is not None else "")
                + ": training is diverging",
                "lower the learning rate (try 3-10 times smaller) and add gradient "
                "clipping; use a learning-rate warm-up; check the data for outliers and "
                "the loss for unstable formulas (use losses on logits)"))
        rising = (not diverging and drop > min_dec * scale and rise > rebound * drop
                  and rise > margin)
        if rising:
            t_min = train_steps[i_low]
            warnings.append(Finding(
                "rising", "warning", onset(),
                f"the training loss fell from {_g(s0)} to {_g(low)} (step {t_min}) and "
                f"climbed back to {_g(high)} (medians): {rise / drop:.0%} of its "
                "progress is lost, training has become unstable",
                "lower the learning rate or decay it (a schedule), add gradient clipping; "
                "check that the data are shuffled"))
        stuck = _stuck_at_chance(finite, s, train_steps, num_classes, min_length,
                                 chance_tol)
        if stuck is not None:
            errors.append(stuck)
        if not (diverging or rising or stuck) and s0 - s_end < min_dec * scale:
            change = (s_end - s0) / scale
            if change >= 0.0005:
                how = f"rose by {change:.1%}"
            elif change <= -0.0005:
                how = f"fell by only {-change:.1%}"
            else:
                how = "stayed flat (a change under 0.1%)"
            warnings.append(Finding(
                "not_decreasing", "warning", train_steps[0],
                f"the training loss {how} from {_g(s0)} to {_g(s_end)} (smoothed) over "
                f"{m} steps: no meaningful decrease (less than {min_dec:.0%})",
                "raise the learning rate if the curve is flat, lower it if it is noisy; "
                "check that the optimizer updates the parameters (gradients not zero, "
                "optimizer.step() called, parameters not frozen) and that the loss "
                "matches the output (logits vs probabilities)"))

    # ---------------------------------------------------------------- validation curve
    if val is not None:
        vfirst = _first_bad(val)
        if vfirst is not None:
            errors.append(_non_finite(val, vfirst, vsteps, "validation"))
        vfin = val[:vfirst] if vfirst is not None else val
        k = vfin.size
        if s_train is not None and k >= min_length:
            vw = window if window is not None else _auto_window(k)
            sv = _moving_median(vfin, vw)
            vsigma = _noise(vfin)
            i_min, v_low, v_high, v_margin = _rebound(vfin, sv, vw, vsigma)
            vscale = max(abs(v_low), 1e-300)
            t_steps = np.asarray(train_steps[:m], dtype=np.float64)
            at_min = float(np.interp(float(vsteps[i_min]), t_steps, s_train))
            t_end = float(s_train[-1])
            if (v_high - v_low > overfit_tol * vscale
                    and v_high - v_low > v_margin and t_end < at_min):
                warnings.append(Finding(
                    "overfitting", "warning", vsteps[i_min],
                    f"the validation loss bottomed out at step {vsteps[i_min]} "
                    f"({_g(v_low)}, the median around it; its lowest value "
                    f"{_g(float(np.min(vfin)))}) and rose to {_g(v_high)} (the median at "
                    f"the end, +{(v_high - v_low) / vscale:.0%}) while the training "
                    f"loss kept falling ({_g(at_min)} to {_g(t_end)}): the gap between "
                    "them is opening",
                    f"stop early: keep the parameters from step {vsteps[i_min]} (early "
                    "stopping); add regularisation (weight decay / an L2 penalty, "
                    "dropout, data augmentation) or use more training data"))

    def key(f: Finding) -> tuple:
        return (float(f.step), CODES.index(f.code))

    findings = tuple(sorted(errors, key=key)) + tuple(sorted(warnings, key=key))
    return DoctorReport(findings=findings, num_points=n, window=w,
                        num_classes=num_classes,
                        num_val_points=None if val is None else int(val.size),
                        too_short=m < min_length)
