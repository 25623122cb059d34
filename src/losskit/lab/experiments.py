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

More lessons, each returning its numbers (``losskit experiment NAME`` draws them)
-------------------------------------------------------------------------------
* :func:`saturation_gradients`: :math:`\partial L/\partial z` of MSE and cross-entropy
  against the pre-activation of a sigmoid output, for targets 0 and 1.
* :func:`convexity`: MSE on the softmax output (not convex) against softmax
  cross-entropy (convex) along a line in logit space, with second differences.
* :func:`compare_losses`: a softmax classifier trained on the digits with softmax
  cross-entropy, MSE on the softmax and the multiclass hinge
  (:mod:`losskit.lab.training`).
* :func:`accuracy_vs_loss`: why accuracy gives no gradient and the loss does.

Examples
--------
>>> from losskit.lab.experiments import saturation
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

from ..losses.cross_entropy import sigmoid_binary_cross_entropy, softmax_cross_entropy
from ..core.primitives import sigmoid, softmax
from ..losses.regression import l2_loss, mse
from ..core.validation import check_choice, check_scalar

__all__ = [
    "SATURATION_LOSSES",
    "SaturationStep",
    "SaturationResult",
    "saturation",
    "AccuracyVsLoss",
    "accuracy_vs_loss",
    "SaturationGradients",
    "saturation_gradients",
    "ConvexityResult",
    "convexity",
    "compare_losses",
    "BoostingResult",
    "boosting_focal",
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
    >>> from losskit.lab.experiments import saturation
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
    >>> from losskit.lab.experiments import accuracy_vs_loss
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


# --------------------------------------------------------------------------- saturation: dL/dz
@dataclass(frozen=True)
class SaturationGradients:
    r""":math:`\partial L/\partial z` of one sigmoid output :math:`a = \sigma(z)`, on a grid.

    ``mse[y]`` is the gradient of :math:`\tfrac12 (a - y)^2` (``losskit.l2_loss``, chained
    through :math:`\sigma'(z) = a(1-a)`), ``cross_entropy[y]`` the gradient of the binary
    cross-entropy of the logit (``losskit.sigmoid_binary_cross_entropy``), for the
    targets ``y`` in ``targets``.
    """

    z: np.ndarray
    a: np.ndarray
    targets: tuple[float, ...]
    mse: dict
    cross_entropy: dict


def saturation_gradients(z=None, *, targets=(0.0, 1.0)) -> SaturationGradients:
    r"""Why MSE after a sigmoid learns slowly: :math:`\partial L/\partial z` against :math:`z`.

    .. math::

        \text{MSE: } \frac{\partial L}{\partial z} = (a - y)\, a (1 - a), \qquad
        \text{CE: } \frac{\partial L}{\partial z} = a - y.

    Where the sigmoid saturates (:math:`|z|` large) the factor :math:`a(1-a)` sends the
    MSE gradient to 0 *even when the output is completely wrong* (target 1 at
    :math:`z \to -\infty`), while the cross-entropy gradient tends to :math:`a - y = -1`.

    Examples
    --------
    >>> import numpy as np
    >>> from losskit.lab.experiments import saturation_gradients
    >>> g = saturation_gradients(np.array([-10.0, 0.0, 10.0]))
    >>> [round(float(v), 5) for v in g.mse[1.0]]            # target 1: vanishes at z = -10
    [-5e-05, -0.125, -0.0]
    >>> [round(float(v), 5) for v in g.cross_entropy[1.0]]  # a - 1: about -1 at z = -10
    [-0.99995, -0.5, -5e-05]
    """
    z = np.linspace(-10.0, 10.0, 401) if z is None else np.asarray(z, dtype=np.float64)
    if z.ndim != 1:
        raise ValueError(f"`z` must be 1-d; got shape {z.shape}")
    a = sigmoid(z)                                   # da/dz = a (1 - a)
    mse_grads, ce_grads = {}, {}
    for y in targets:
        y = check_scalar("targets", y, lo=0.0, hi=1.0)
        t = np.full_like(z, y)
        dl_da = l2_loss.grad(a, t, reduction="sum")  # dL/da = a - y, one element each
        mse_grads[y] = dl_da * a * (1.0 - a)         # chain rule: dL/dz = dL/da * da/dz
        ce_grads[y] = sigmoid_binary_cross_entropy.grad(z, t, reduction="sum")  # a - y
    return SaturationGradients(z, a, tuple(float(y) for y in targets), mse_grads, ce_grads)


# --------------------------------------------------------------------------- convexity
@dataclass(frozen=True)
class ConvexityResult:
    r"""Softmax cross-entropy and MSE-on-softmax along the line :math:`z(t) = z_0 + t d`.

    ``ce`` and ``mse_softmax`` are the losses (one example), ``*_slope`` their exact
    derivatives along the line (losskit's gradients dotted with ``direction``), and
    ``*_second`` the second differences
    :math:`\Delta^2 f_i = (f_{i+1} - 2 f_i + f_{i-1}) / h^2` at the interior points
    ``t[1:-1]`` (a convex function has none below 0).
    """

    t: np.ndarray
    base: np.ndarray
    direction: np.ndarray
    label: int
    ce: np.ndarray
    mse_softmax: np.ndarray
    ce_slope: np.ndarray
    mse_slope: np.ndarray
    ce_second: np.ndarray
    mse_second: np.ndarray

    @property
    def t_inner(self) -> np.ndarray:
        """The points the second differences belong to (``t[1:-1]``)."""
        return self.t[1:-1]

    def nonconvex_range(self, tol: float = 1e-9):
        """``(t_min, t_max)`` of the points where MSE-on-softmax curves down (``None``: none)."""
        neg = self.t_inner[self.mse_second < -tol]
        return (float(neg.min()), float(neg.max())) if neg.size else None


def _mse_softmax_one_hot(z: np.ndarray, label: int):
    """Per row: :math:`\\lVert \\operatorname{softmax}(z) - e_y \\rVert^2` and its gradient in z."""
    k = z.shape[1]
    onehot = np.zeros_like(z)
    onehot[:, label] = 1.0
    p = softmax(z, axis=1)                                       # dp_i/dz_j = p_i (d_ij - p_j)
    per_element = mse(p, onehot, reduction="none")               # (p - t)^2
    d_p = mse.grad(p, onehot, reduction="sum")                   # 2 (p - t)
    jac = p[:, :, None] * np.eye(k) - p[:, :, None] * p[:, None, :]
    d_z = np.einsum("ni,nij->nj", d_p, jac)                      # chain rule through softmax
    return per_element.sum(axis=1), d_z


def convexity(t=None, *, num_classes: int = 3, label: int = 0, base=None,
              direction=None) -> ConvexityResult:
    r"""Is the loss convex in the logits? Cross-entropy yes, MSE on the softmax no.

    One example with ``num_classes`` classes and true class ``label``; the logits move
    along :math:`z(t) = z_0 + t\,d` (default: :math:`z_0 = 0`, :math:`d = e_{label}`, i.e.
    only the true class's logit changes). Softmax cross-entropy
    :math:`\operatorname{logsumexp}(z) - z_y` is convex in :math:`z` (its Hessian
    :math:`\operatorname{diag}(p) - p p^T` is positive semi-definite), so it is convex on
    every line. The squared error of the probabilities,
    :math:`\lVert \operatorname{softmax}(z) - e_y \rVert^2`, is bounded and flattens out as
    the true class's logit goes to :math:`-\infty`, so it must curve downwards there: it is
    not convex, and gradient descent on it can stall on a plateau.

    Along the default line with :math:`K = 3`, writing :math:`q = 1 - p_y`, MSE-on-softmax
    is :math:`f = \tfrac32 q^2` and :math:`f'' = 3 q^2 (1 - q)(2 - 3q)`: negative exactly
    where :math:`q > 2/3`, i.e. :math:`t < 0` (there :math:`p_y = e^t / (e^t + 2) < 1/3`).
    Cross-entropy's :math:`f'' = p_y (1 - p_y) > 0` everywhere.

    Examples
    --------
    >>> from losskit.lab.experiments import convexity
    >>> r = convexity()          # t from -8 to 8 in steps of 0.05
    >>> bool(r.ce_second.min() >= 0), bool(r.mse_second.min() < 0)
    (True, True)
    >>> r.nonconvex_range()      # the interior grid points with t < 0
    (-7.95, -0.05)
    """
    t = np.linspace(-8.0, 8.0, 321) if t is None else np.asarray(t, dtype=np.float64)
    if t.ndim != 1 or t.size < 3:
        raise ValueError(f"`t` must be 1-d with at least 3 points; got shape {t.shape}")
    steps = np.diff(t)
    if not (np.all(steps > 0) and np.allclose(steps, steps[0], rtol=1e-9, atol=0)):
        raise ValueError("`t` must be increasing and evenly spaced (second differences)")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2; got {num_classes!r}")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
        raise ValueError(f"`label` must be a class index in [0, {num_classes - 1}]; "
                         f"got {label!r}")
    k = num_classes
    z0 = np.zeros(k) if base is None else np.asarray(base, dtype=np.float64)
    if direction is None:
        d = np.zeros(k)
        d[label] = 1.0
    else:
        d = np.asarray(direction, dtype=np.float64)
    for name, v in (("base", z0), ("direction", d)):
        if v.shape != (k,):
            raise ValueError(f"`{name}` must have shape ({k},) (num_classes={k}); "
                             f"got {v.shape}")
    if not np.any(d != 0):
        raise ValueError("`direction` must not be the zero vector")

    z = z0[None, :] + t[:, None] * d[None, :]                     # (n, K): one point per row
    labels = np.full(t.shape, label)
    ce = softmax_cross_entropy(z, labels, reduction="none")
    ce_grad = softmax_cross_entropy.grad(z, labels, reduction="sum")  # softmax - onehot
    ms, ms_grad = _mse_softmax_one_hot(z, label)
    h = steps[0]

    def second(f):
        return (f[2:] - 2.0 * f[1:-1] + f[:-2]) / h**2

    return ConvexityResult(t, z0, d, label, ce, ms, ce_grad @ d, ms_grad @ d,
                           second(ce), second(ms))


# --------------------------------------------------------------------------- compare
def compare_losses(data=None, *, losses=None, model: str = "linear", epochs: int = 30,
                   lr: float = 0.03, momentum: float = 0.0, batch_size: int = 32,
                   seed: int = 0, subset: int | None = None, progress: bool | None = False):
    """Train the same softmax classifier on digits with each loss; ``{loss: History}``.

    The same initial weights, mini-batch order and learning rate for every loss (see
    :mod:`losskit.lab.training`). ``data`` defaults to :func:`losskit.lab.training.load_digits`
    (``subset`` examples of it, if given). ``progress``: ``None`` shows a bar on a
    terminal, ``True`` always, ``False`` never.
    """
    from .training import LOSS_TITLES, TRAIN_LOSSES, ProgressBar, load_digits, train

    if data is None:
        data = load_digits(seed=seed, subset=subset)
    losses = TRAIN_LOSSES if losses is None else tuple(losses)
    for loss in losses:
        check_choice("losses", loss, TRAIN_LOSSES)
    width = max(len(LOSS_TITLES[loss]) for loss in losses)
    histories = {}
    for loss in losses:
        bar = None
        if progress is not False:
            bar = ProgressBar(epochs, LOSS_TITLES[loss].ljust(width), enabled=progress)
        histories[loss] = train(data, loss, model=model, epochs=epochs, lr=lr,
                                momentum=momentum, batch_size=batch_size, seed=seed,
                                progress=bar)
    return histories


# --------------------------------------------------------------------------- boosting
@dataclass
class BoostingResult:
    """LightGBM trained with log loss and with focal loss on one imbalanced problem.

    ``rounds``: the boosting rounds at which the test set was scored; per objective
    (``"log loss"``, ``"focal"``) the test average precision (the area under the
    precision-recall curve, the usual score when positives are rare), ROC AUC and log
    loss of :math:`\\sigma(\\text{raw score})` at those rounds.
    """

    rounds: np.ndarray
    average_precision: dict
    roc_auc: dict
    log_loss: dict
    gamma: float
    positive_rate: float
    n_train: int
    n_test: int
    learning_rate: float
    num_leaves: int

    def best(self, objective: str) -> tuple[int, float]:
        """(round, average precision) of the best test average precision."""
        ap = self.average_precision[objective]
        i = int(np.argmax(ap))
        return int(self.rounds[i]), float(ap[i])


#: the objectives of :func:`boosting_focal`, by label: (loss, options)
BOOSTING_OBJECTIVES = {"log loss": ("sigmoid_binary_cross_entropy", {}),
                       "focal": ("sigmoid_focal_loss", {"alpha": None})}


def boosting_focal(*, gamma: float = 2.0, rounds: int = 300, learning_rate: float = 0.05,
                   num_leaves: int = 15, n_samples: int = 20000, positives: float = 0.03,
                   every: int = 10, seed: int = 0, threads: int = 2) -> BoostingResult:
    """Gradient boosting with focal loss against plain log loss, on rare positives.

    scikit-learn's ``make_classification`` (``n_samples`` rows, 20 features, a fraction
    ``positives`` of positives, 1% of labels flipped) is split in half, stratified; LightGBM
    trains one model per objective of :mod:`losskit.gbdt` (``sigmoid_binary_cross_entropy``
    and ``sigmoid_focal_loss(gamma=gamma, alpha=None)``: the focusing term alone, without
    Lin et al.'s class weight; exact gradients and Hessians), with the same
    trees' settings, and the test half is scored every ``every`` rounds. Needs LightGBM and
    scikit-learn.

    Focal loss [Lin et al. 2017] down-weights the examples the model already gets right,
    :math:`(1 - p_t)^\\gamma`, to spend capacity on the hard ones; whether that beats log loss
    is an empirical question the numbers answer for this problem (and its scores are
    not calibrated probabilities, which the test log loss shows).
    """
    import lightgbm as lgb
    from sklearn.datasets import make_classification
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    from ..gbdt import lightgbm_objective

    gamma = check_scalar("gamma", gamma, lo=0.0)
    X, y = make_classification(n_samples=n_samples, n_features=20, n_informative=6,
                               weights=[1.0 - positives], flip_y=0.01, class_sep=0.8,
                               random_state=seed)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=seed,
                                          stratify=y)
    params = {"num_leaves": num_leaves, "learning_rate": learning_rate,
              "num_threads": threads, "seed": seed, "verbose": -1, "deterministic": True}
    checkpoints = np.arange(every, rounds + 1, every)
    ap, auc, ll = {}, {}, {}
    for label, (loss, options) in BOOSTING_OBJECTIVES.items():
        if loss == "sigmoid_focal_loss":
            options = dict(options, gamma=gamma)
        booster = lgb.train({**params, "objective": lightgbm_objective(loss, **options)},
                            lgb.Dataset(Xtr, label=ytr), rounds)
        scores = [booster.predict(Xte, raw_score=True, num_iteration=int(r))
                  for r in checkpoints]
        ap[label] = np.array([average_precision_score(yte, s) for s in scores])
        auc[label] = np.array([roc_auc_score(yte, s) for s in scores])
        ll[label] = np.array([float(sigmoid_binary_cross_entropy(s, yte.astype(float)))
                              for s in scores])
    return BoostingResult(checkpoints, ap, auc, ll, gamma, float(np.mean(y)), len(ytr),
                          len(yte), learning_rate, num_leaves)
