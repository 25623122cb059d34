r"""Tiny training harnesses that show, with numbers, why the loss matters.

Everything here is built from losskit's own primitives and the losses'
``value_and_grad``; the chain rule is written out by hand, one forward line next to
its local derivative (the micrograd way), so every number can be followed on paper.
NumPy only, float64.

The saturation experiment
-------------------------
One sigmoid neuron, one input (the sources' set-up, digest section 3):

.. math::

    z = w x + b, \qquad a = \sigma(z), \qquad
    \text{MSE: } L = \tfrac12 (a - y)^2, \qquad
    \text{CE: } L = -[y \log a + (1 - y) \log (1 - a)]

with :math:`x = 1`, :math:`w_0 = \ln 9` (so :math:`a_0 = 0.9`), :math:`b = 0`, target
:math:`y = 0.5` and learning rate :math:`\eta = 0.2`. By the chain rule

.. math::

    \frac{\partial L}{\partial w} = \frac{\partial L}{\partial a}
        \frac{\partial a}{\partial z} \frac{\partial z}{\partial w}
    = \begin{cases} (a - y)\, a (1 - a)\, x & \text{MSE} \\
                    (a - y)\, x & \text{CE (the } a(1-a) \text{ cancels)} \end{cases}

so MSE learns slowly where the sigmoid saturates and cross-entropy does not.

**The protocol that reproduces the sources' counts** (found by experiment, see the
tests): only the weight :math:`w` is trained, the bias stays at :math:`b = 0`; before
each update the MSE value :math:`\tfrac12 (a - y)^2` is computed (for both losses) and
training stops as soon as it is below ``threshold = 0.001``; ``updates`` counts the
gradient steps taken, so the ``updates``-th step is the first to bring the MSE under the
threshold. This gives **287** updates for MSE and **53** for cross-entropy. Training
the bias as well (``train_bias=True``) doubles the effective step, :math:`z = w + b`
moves by :math:`2\eta\,\partial L/\partial z` per update, and gives 143 and 26 instead.

Step 1 (MSE): :math:`a = 0.9`, :math:`L = 0.08`,
:math:`\partial L/\partial w = 0.4 \cdot 0.9 \cdot 0.1 = 0.036`,
:math:`w \leftarrow \ln 9 - 0.2 \cdot 0.036 = 2.1900`.

Examples
--------
>>> from losskit.experiments import saturation
>>> mse, ce = saturation("mse"), saturation("cross_entropy")
>>> mse.updates, ce.updates
(287, 53)
>>> s = mse.trajectory[0]
>>> round(s.a, 4), round(s.loss, 4), round(s.grad, 4), round(s.w_next, 4)
(0.9, 0.08, 0.036, 2.19)
>>> round(ce.trajectory[0].dloss_dz, 4)   # a - y = 0.9 - 0.5
0.4
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._classification import sigmoid_binary_cross_entropy
from ._primitives import sigmoid
from ._regression import l2_loss
from ._validation import check_choice, check_scalar

__all__ = [
    "SATURATION_LOSSES",
    "SaturationStep",
    "SaturationResult",
    "saturation",
    "AccuracyVsLoss",
    "accuracy_vs_loss",
]

SATURATION_LOSSES = ("mse", "cross_entropy")


def _f64(v: float) -> np.ndarray:
    """A 0-d float64 array: what losskit's primitives and losses take."""
    return np.asarray(v, dtype=np.float64)


@dataclass(frozen=True)
class SaturationStep:
    """One gradient-descent update of the one-neuron experiment.

    ``w``, ``b`` are the parameters the forward pass used (before the update);
    ``w_next``, ``b_next`` the parameters after it.
    """

    step: int  # 1-based update number
    w: float
    b: float
    z: float  # w x + b
    a: float  # sigmoid(z)
    loss: float  # the training loss at (w, b): MSE 1/2 (a-y)^2 or binary CE
    mse: float  # 1/2 (a - y)^2, the stopping criterion (same as loss for MSE)
    dloss_dz: float  # dL/dz: (a-y) a (1-a) for MSE, a - y for CE
    grad: float  # dL/dw = dL/dz * x
    grad_b: float  # dL/db = dL/dz (applied only when train_bias=True)
    w_next: float
    b_next: float


@dataclass(frozen=True)
class SaturationResult:
    """The outcome of :func:`saturation`: the settings, every update and the end state."""

    loss: str
    updates: int  # gradient steps taken until 1/2 (a-y)^2 < threshold
    converged: bool  # False when max_steps ran out first
    trajectory: tuple[SaturationStep, ...]  # one entry per update
    final_w: float
    final_b: float
    final_a: float
    final_loss: float
    final_mse: float
    w0: float
    b0: float
    x: float
    y: float
    lr: float
    threshold: float
    train_bias: bool

    def milestones(self, every: int = 50) -> list[SaturationStep]:
        """Step 1, every ``every``-th step and the last step (no repeats), for a summary."""
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"`every` must be a positive int; got {every!r}")
        picked = [s for s in self.trajectory
                  if s.step == 1 or s.step % every == 0 or s.step == self.updates]
        return picked


def _forward_backward(loss: str, w: float, b: float, x: float, y: float):
    """One forward pass with each local derivative beside it, then the chain rule.

    Returns ``(z, a, L, mse, dL/dz, dL/dw, dL/db)`` as Python floats.
    """
    # ---- forward ----------------------------------- local derivative ----------
    z = w * x + b                                  # dz/dw = x,  dz/db = 1
    a = float(sigmoid(_f64(z)))                    # da/dz = a (1 - a)
    da_dz = a * (1.0 - a)
    # the stopping criterion, 1/2 (a - y)^2, for both losses (losskit's l2_loss)
    mse, dmse_da = l2_loss.value_and_grad(_f64(a), _f64(y), reduction="sum")
    if loss == "mse":
        L, dL_da = mse, dmse_da                    # dL/da = a - y
        # ---- backward: chain rule through the sigmoid (the saturating factor) ----
        dL_dz = float(dL_da) * da_dz               # dL/dz = (a - y) a (1 - a)
    else:
        # binary CE from the logit z: losskit's kernel gives dL/dz = sigmoid(z) - y
        L, dL_dz = sigmoid_binary_cross_entropy.value_and_grad(_f64(z), _f64(y),
                                                               reduction="sum")
        dL_dz = float(dL_dz)                       # = a - y: a (1 - a) has cancelled
    dL_dw = dL_dz * x                              # dz/dw = x
    dL_db = dL_dz * 1.0                            # dz/db = 1
    return z, a, float(L), float(mse), dL_dz, dL_dw, dL_db


def saturation(loss: str = "mse", *, w0: float = math.log(9.0), b0: float = 0.0,
               x: float = 1.0, y: float = 0.5, lr: float = 0.2, threshold: float = 1e-3,
               train_bias: bool = False, max_steps: int = 10_000) -> SaturationResult:
    r"""Train one sigmoid neuron by plain gradient descent until :math:`\tfrac12(a-y)^2 < `
    ``threshold``: the sources' saturation experiment.

    Parameters
    ----------
    loss : {"mse", "cross_entropy"}
        ``"mse"``: :math:`L = \tfrac12 (a - y)^2` (``losskit.l2_loss``, whose gradient is
        then multiplied by :math:`\sigma'(z) = a(1-a)`); ``"cross_entropy"``: binary
        cross-entropy of the logit (``losskit.sigmoid_binary_cross_entropy``, gradient
        :math:`a - y` with respect to :math:`z`).
    w0, b0 : float
        Initial weight and bias (default :math:`\ln 9` and 0, so :math:`a_0 = 0.9`).
    x, y : float
        The single input and its target.
    lr : float
        Learning rate :math:`\eta > 0`.
    threshold : float
        Stop once the MSE value :math:`\tfrac12 (a - y)^2` is below it (checked before every
        update, for both losses, so the counts compare like with like).
    train_bias : bool, default False
        Also update :math:`b`. The sources' counts (287 and 53) hold with the bias fixed.
    max_steps : int
        Give up after this many updates (``converged=False``).

    Returns
    -------
    SaturationResult
        ``updates`` (the number of gradient steps), ``converged``, the ``trajectory``
        (one :class:`SaturationStep` per update) and the final state.

    Examples
    --------
    >>> from losskit.experiments import saturation
    >>> saturation("mse").updates, saturation("cross_entropy").updates
    (287, 53)
    >>> saturation("mse", train_bias=True).updates   # bias trained too: not the sources' set-up
    143
    """
    check_choice("loss", loss, SATURATION_LOSSES)
    w = check_scalar("w0", w0)
    b = check_scalar("b0", b0)
    x = check_scalar("x", x)
    y = check_scalar("y", y, lo=0.0, hi=1.0)
    lr = check_scalar("lr", lr, lo=0.0, lo_open=True)
    threshold = check_scalar("threshold", threshold, lo=0.0, lo_open=True)
    for name, v in (("w0", w), ("b0", b), ("x", x), ("lr", lr)):
        if not math.isfinite(v):
            raise ValueError(f"`{name}` must be finite; got {v!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 0:
        raise ValueError(f"`max_steps` must be a non-negative int; got {max_steps!r}")
    if not isinstance(train_bias, bool):
        raise TypeError(f"`train_bias` must be a bool; got {type(train_bias).__name__}")

    trajectory: list[SaturationStep] = []
    converged = False
    while True:
        z, a, L, mse, dL_dz, dL_dw, dL_db = _forward_backward(loss, w, b, x, y)
        if mse < threshold:
            converged = True
            break
        if len(trajectory) >= max_steps:
            break
        # ---- update: new = old - learning_rate * gradient -----------------------
        w_next = w - lr * dL_dw
        b_next = b - lr * dL_db if train_bias else b
        trajectory.append(SaturationStep(
            step=len(trajectory) + 1, w=w, b=b, z=z, a=a, loss=L, mse=mse, dloss_dz=dL_dz,
            grad=dL_dw, grad_b=dL_db, w_next=w_next, b_next=b_next))
        w, b = w_next, b_next

    return SaturationResult(
        loss=loss, updates=len(trajectory), converged=converged,
        trajectory=tuple(trajectory), final_w=w, final_b=b, final_a=a, final_loss=L,
        final_mse=mse, w0=float(w0), b0=float(b0), x=x, y=y, lr=lr, threshold=threshold,
        train_bias=train_bias)


# --------------------------------------------------------------------------- accuracy
@dataclass(frozen=True)
class AccuracyVsLoss:
    """Accuracy and loss of a logistic model before and after nudging its weight."""

    correct_before: int
    correct_after: int
    n: int
    loss_before: float
    loss_after: float
    delta: float

    @property
    def accuracy_slope(self) -> float:
        """Finite-difference slope of the accuracy in the weight (0 almost everywhere)."""
        return (self.correct_after - self.correct_before) / self.n / self.delta

    @property
    def loss_slope(self) -> float:
        """Finite-difference slope of the loss in the weight (non-zero: a usable signal)."""
        return (self.loss_after - self.loss_before) / self.delta


def accuracy_vs_loss(w: float = 0.5, b: float = 0.0, *, delta: float = 1e-3, n: int = 100,
                     seed: int = 0) -> AccuracyVsLoss:
    r"""Why not train on accuracy: a small weight change leaves it flat, the loss moves.

    A one-feature logistic classifier :math:`p = \sigma(w x + b)` on ``n`` fixed points
    (``x`` standard normal, label 1 where :math:`x + 0.8\,\varepsilon > 0`, from a seeded
    generator). Nudging :math:`w` by ``delta`` changes no decision, so the accuracy (and
    its derivative) stays put, while the mean binary cross-entropy
    (``losskit.sigmoid_binary_cross_entropy``) changes continuously.

    Examples
    --------
    >>> from losskit.experiments import accuracy_vs_loss
    >>> r = accuracy_vs_loss()
    >>> r.correct_before == r.correct_after, r.accuracy_slope, r.loss_slope != 0
    (True, 0.0, True)
    """
    delta = check_scalar("delta", delta, lo=0.0, lo_open=True)
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal(n)
    labels = (xs + 0.8 * rng.standard_normal(n) > 0).astype(np.float64)

    def evaluate(weight: float):
        z = weight * xs + b
        correct = int(np.sum((z > 0) == (labels == 1)))
        value = float(sigmoid_binary_cross_entropy(z, labels))
        return correct, value

    c0, l0 = evaluate(w)
    c1, l1 = evaluate(w + delta)
    return AccuracyVsLoss(c0, c1, n, l0, l1, delta)
