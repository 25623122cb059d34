r"""A minimal NumPy training harness: softmax classifiers trained with losskit's losses.

Not a framework: about a page of NumPy that a student can read top to bottom. Every
layer writes its forward line next to its local derivative (the micrograd way), the
backward pass is the chain rule applied layer by layer in reverse, and the loss enters
only through losskit's ``value_and_grad`` and primitives: the gradient of the loss with
respect to the scores is where back-propagation starts.

The pieces
----------
* :func:`load_digits` / :func:`split_dataset`: scikit-learn's bundled 8x8 digits (no
  download), a train/test split fixed by a seed, features standardised with the
  training set's mean and standard deviation.
* :class:`Linear`, :class:`ReLU` and :class:`Sequential`; :func:`linear_classifier`
  (softmax regression) and :func:`mlp` (one hidden ReLU layer).
* Loss heads, ``head(scores, labels) -> (value, dL/dscores)``, the mean over the batch:

  ``"cross_entropy"``
      ``lk.softmax_cross_entropy`` of the scores (logits):
      :math:`\partial L/\partial z = (\operatorname{softmax}(z) - \text{onehot}) / N`.
  ``"mse_softmax"``
      squared error of the softmax output against the one-hot target, summed over the
      classes: :math:`L = \frac1N \sum_n \lVert p_n - t_n \rVert^2` with
      :math:`p = \operatorname{softmax}(z)` (``lk.softmax``, then ``lk.mse``). The chain
      rule goes through the softmax Jacobian, written out:
      :math:`\partial p_i / \partial z_j = p_i (\delta_{ij} - p_j)`.
  ``"multiclass_hinge"``
      ``lk.multiclass_hinge`` of the scores (Weston-Watkins, margin 1).

* :class:`SGD` (optionally with momentum), mini-batches drawn by a seeded generator,
  and :func:`train`, which records a :class:`History` (train loss, train and test
  accuracy after every epoch, and at epoch 0 before any update).

Examples
--------
The three heads at one tiny batch (2 examples, 3 classes):

>>> import numpy as np
>>> from losskit.lab.training import HEADS
>>> z = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]); y = np.array([0, 2])
>>> loss, dz = HEADS["cross_entropy"](z, y)
>>> round(float(loss), 4)      # (ln(e^2 + 2) - 2 + ln 3) / 2
0.6691
>>> loss, dz = HEADS["multiclass_hinge"](z, y)
>>> float(loss), dz.tolist()   # example 1 is past the margin; example 2 violates it twice
(1.0, [[0.0, 0.0, 0.0], [0.5, 0.5, -1.0]])
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..losses.cross_entropy import softmax_cross_entropy
from ..losses.margin import multiclass_hinge
from ..core.primitives import softmax
from ..losses.regression import mse
from ..core.progress import ProgressBar
from ..core.validation import check_choice, check_scalar

__all__ = [
    "TRAIN_LOSSES",
    "LOSS_TITLES",
    "Split",
    "split_dataset",
    "load_digits",
    "Linear",
    "ReLU",
    "Sequential",
    "MODELS",
    "make_model",
    "linear_classifier",
    "mlp",
    "softmax_jacobian",
    "cross_entropy_head",
    "mse_softmax_head",
    "multiclass_hinge_head",
    "HEADS",
    "SGD",
    "History",
    "evaluate",
    "train",
    "check_gradients",
    "ProgressBar",
]

#: The losses the harness trains with, in the order the demo shows them.
TRAIN_LOSSES = ("cross_entropy", "mse_softmax", "multiclass_hinge")
#: Human-readable names for tables and plots.
LOSS_TITLES = {
    "cross_entropy": "softmax cross-entropy",
    "mse_softmax": "MSE on softmax",
    "multiclass_hinge": "multiclass hinge",
}
MODELS = ("linear", "mlp")


def _positive_int(name: str, value, *, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < (0 if zero else 1):
        kind = "non-negative" if zero else "positive"
        raise ValueError(f"`{name}` must be a {kind} int; got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Split:
    """A train/test split with standardised features.

    ``x_*`` are float64 arrays ``(n, d)``; ``y_*`` integer labels ``(n,)``; ``mean`` and
    ``scale`` are the training-set statistics the features were standardised with
    (``scale`` is 1 where a feature is constant in the training set).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: np.ndarray
    scale: np.ndarray
    name: str = ""

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])


def split_dataset(x, y, *, test_fraction: float = 0.25, seed: int = 0,
                  num_classes: int | None = None, name: str = "") -> Split:
    r"""Shuffle with a seeded generator, hold out ``test_fraction``, standardise.

    The features are standardised with the *training* statistics only (the test set
    must not leak into them): :math:`x' = (x - \mu_{train}) / s_{train}`, with
    :math:`s = 1` for a feature that is constant in the training set (digits has pixels
    that are always 0).

    Examples
    --------
    >>> import numpy as np
    >>> from losskit.lab.training import split_dataset
    >>> s = split_dataset(np.arange(20.0).reshape(10, 2), np.arange(10) % 2, test_fraction=0.2)
    >>> s.x_train.shape, s.x_test.shape
    ((8, 2), (2, 2))
    >>> bool(np.allclose(s.x_train.mean(axis=0), 0)), bool(np.allclose(s.x_train.std(axis=0), 1))
    (True, True)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2:
        raise ValueError(f"`x` must be 2-d (examples, features); got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"`y` must have shape ({x.shape[0]},) to match `x` {x.shape}; "
                         f"got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"`y` must hold integer class labels; got dtype {y.dtype}")
    test_fraction = check_scalar("test_fraction", test_fraction, lo=0.0, hi=1.0,
                                 lo_open=True, hi_open=True)
    n = x.shape[0]
    n_test = int(round(n * test_fraction))
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"`test_fraction`={test_fraction} leaves {n_test} of {n} examples "
                         "for testing; both parts need at least one")
    order = np.random.default_rng(seed).permutation(n)
    test, tr = order[:n_test], order[n_test:]
    mean = x[tr].mean(axis=0)
    std = x[tr].std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    return Split((x[tr] - mean) / scale, y[tr].astype(np.int64),
                 (x[test] - mean) / scale, y[test].astype(np.int64), k, mean, scale, name)


def load_digits(*, test_fraction: float = 0.25, seed: int = 0,
                subset: int | None = None) -> Split:
    """scikit-learn's bundled handwritten digits (1797 images of 8x8 pixels, 10 classes).

    No download: the data ship with scikit-learn (``pip install 'losskit[demo]'``).
    ``subset`` keeps only the first ``subset`` examples of a seeded shuffle (for quick
    tests), before splitting.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError("the digits dataset needs scikit-learn: "
                          "pip install 'losskit[demo]'") from exc
    data = _sk_load_digits()
    x, y = data.data, data.target
    if subset is not None:
        subset = _positive_int("subset", subset)
        keep = np.random.default_rng(seed).permutation(len(y))[:subset]
        x, y = x[keep], y[keep]
    return split_dataset(x, y, test_fraction=test_fraction, seed=seed, num_classes=10,
                         name="digits")


# --------------------------------------------------------------------------- layers
class Linear:
    r"""Affine layer :math:`\text{out} = x W + b`, ``W`` of shape ``(n_in, n_out)``.

    Initialised :math:`W \sim \mathcal N(0, \text{gain}/n_\text{in})`, :math:`b = 0`.
    """

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, *,
                 gain: float = 1.0):
        self.params = {"W": rng.normal(0.0, math.sqrt(gain / n_in), size=(n_in, n_out)),
                       "b": np.zeros(n_out)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._x = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return x @ self.params["W"] + self.params["b"]  # d out/dW = x, d out/db = 1, d out/dx = W

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        self.grads["W"] = self._x.T @ d_out            # dL/dW = x^T dL/dout (summed over the batch)
        self.grads["b"] = d_out.sum(axis=0)            # dL/db = sum_n dL/dout_n
        return d_out @ self.params["W"].T              # dL/dx = dL/dout W^T


class ReLU:
    r""":math:`\text{out} = \max(x, 0)`; local derivative :math:`[x > 0]` (0 at the kink)."""

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self._on = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._on = x > 0
        return np.where(self._on, x, 0.0)              # d out/dx = [x > 0]

    def backward(self, d_out: np.ndarray) -> np.ndarray:
        return np.where(self._on, d_out, 0.0)          # dL/dx = dL/dout [x > 0]


class Sequential:
    """Layers applied in order; ``backward`` runs them in reverse (the chain rule)."""

    def __init__(self, *layers):
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, d_scores: np.ndarray) -> None:
        for layer in reversed(self.layers):
            d_scores = layer.backward(d_scores)

    def parameters(self) -> list[tuple[dict, str]]:
        """``(layer.params, key)`` pairs, so an optimiser can update them in place."""
        return [(layer.params, k) for layer in self.layers for k in layer.params]

    def gradients(self) -> list[np.ndarray]:
        """The gradients, in the order of :meth:`parameters` (valid after ``backward``)."""
        return [layer.grads[k] for layer in self.layers for k in layer.params]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.forward(x), axis=1)


def linear_classifier(n_in: int, n_classes: int, *, seed: int = 0) -> Sequential:
    """Softmax regression: one :class:`Linear` layer from features to class scores."""
    rng = np.random.default_rng(seed)
    return Sequential(Linear(n_in, n_classes, rng))


def mlp(n_in: int, n_classes: int, *, hidden: int = 32, seed: int = 0) -> Sequential:
    """One hidden ReLU layer: ``Linear -> ReLU -> Linear`` (He initialisation)."""
    rng = np.random.default_rng(seed)
    return Sequential(Linear(n_in, hidden, rng, gain=2.0), ReLU(), Linear(hidden, n_classes, rng))


def make_model(model: str, n_in: int, n_classes: int, *, seed: int = 0,
               hidden: int = 32) -> Sequential:
    """``"linear"`` (:func:`linear_classifier`) or ``"mlp"`` (:func:`mlp`)."""
    check_choice("model", model, MODELS)
    if model == "linear":
        return linear_classifier(n_in, n_classes, seed=seed)
    return mlp(n_in, n_classes, hidden=hidden, seed=seed)


# --------------------------------------------------------------------------- loss heads
def softmax_jacobian(p: np.ndarray) -> np.ndarray:
    r"""Per example, :math:`J_{ij} = \partial p_i / \partial z_j = p_i(\delta_{ij} - p_j)`.

    ``p`` of shape ``(N, K)`` gives ``(N, K, K)``: :math:`\operatorname{diag}(p) - p p^T`.

    >>> import numpy as np
    >>> from losskit.lab.training import softmax_jacobian
    >>> softmax_jacobian(np.array([[0.5, 0.5]])).tolist()
    [[[0.25, -0.25], [-0.25, 0.25]]]
    """
    return p[:, :, None] * np.eye(p.shape[1]) - p[:, :, None] * p[:, None, :]


def cross_entropy_head(scores: np.ndarray, labels: np.ndarray):
    """Mean softmax cross-entropy of the scores; gradient ``(softmax - onehot) / N``."""
    return softmax_cross_entropy.value_and_grad(scores, labels)


def mse_softmax_head(scores: np.ndarray, labels: np.ndarray):
    r"""Squared error of the softmax output, summed over classes, mean over the batch.

    Forward, each line with its local derivative; backward by the chain rule through the
    softmax Jacobian (:func:`softmax_jacobian`). The factor :math:`p_i(\delta_{ij} - p_j)`
    is what makes this loss learn slowly where the softmax saturates.
    """
    n, k = scores.shape
    onehot = np.eye(k)[labels]
    p = softmax(scores, axis=1)                        # dp_i/dz_j = p_i (delta_ij - p_j)
    # "batchmean": sum over all N*K elements, divided by N (the batch size)
    value, d_p = mse.value_and_grad(p, onehot, reduction="batchmean")  # dL/dp = 2 (p - t) / N
    jac = softmax_jacobian(p)                          # (N, K, K): jac[n, i, j] = dp_i/dz_j
    d_scores = np.einsum("ni,nij->nj", d_p, jac)       # dL/dz_j = sum_i dL/dp_i dp_i/dz_j
    return value, d_scores


def multiclass_hinge_head(scores: np.ndarray, labels: np.ndarray):
    """Mean Weston-Watkins hinge of the scores (margin 1)."""
    return multiclass_hinge.value_and_grad(scores, labels)


HEADS: dict[str, Callable] = {
    "cross_entropy": cross_entropy_head,
    "mse_softmax": mse_softmax_head,
    "multiclass_hinge": multiclass_hinge_head,
}


# --------------------------------------------------------------------------- optimiser
class SGD:
    r"""Stochastic gradient descent, optionally with (heavy-ball) momentum.

    :math:`v \leftarrow \mu v - \eta g`, :math:`\theta \leftarrow \theta + v`; with
    :math:`\mu = 0` this is plain :math:`\theta \leftarrow \theta - \eta g`.
    """

    def __init__(self, model: Sequential, *, lr: float = 0.03, momentum: float = 0.0):
        self.lr = check_scalar("lr", lr, lo=0.0, lo_open=True)
        self.momentum = check_scalar("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
        self.model = model
        self.velocity = [np.zeros_like(store[k]) for store, k in model.parameters()]

    def step(self) -> None:
        for (store, k), g, v in zip(self.model.parameters(), self.model.gradients(),
                                    self.velocity):
            v *= self.momentum
            v -= self.lr * g
            store[k] = store[k] + v


# --------------------------------------------------------------------------- training loop
@dataclass
class History:
    """What :func:`train` records; index ``e`` of each list is after epoch ``e`` (0: start)."""

    loss: str
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def epochs(self) -> int:
        return len(self.train_loss) - 1

    def epochs_to(self, accuracy: float) -> int | None:
        """First epoch after which the test accuracy is at least ``accuracy`` (None: never)."""
        for epoch, acc in enumerate(self.test_accuracy):
            if acc >= accuracy:
                return epoch
        return None


def evaluate(model: Sequential, head: Callable, x: np.ndarray, y: np.ndarray):
    """``(mean loss, accuracy)`` of the model on ``(x, y)``, without updating anything."""
    scores = model.forward(x)
    value, _ = head(scores, y)
    return float(value), float(np.mean(np.argmax(scores, axis=1) == y))


def train(data: Split, loss: str = "cross_entropy", *, model: str = "linear",
          epochs: int = 30, lr: float = 0.03, momentum: float = 0.0, batch_size: int = 32,
          hidden: int = 32, seed: int = 0, progress: "ProgressBar | None" = None) -> History:
    """Train a fresh model on ``data`` with mini-batch SGD; return its :class:`History`.

    The same ``seed`` gives the same initial weights and the same mini-batch order for
    every loss, so the losses are compared like with like.

    Examples
    --------
    >>> import numpy as np
    >>> from losskit.lab.training import split_dataset, train
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 2)); y = (x[:, 0] + x[:, 1] > 0).astype(int)
    >>> h = train(split_dataset(x, y), "cross_entropy", epochs=20, lr=0.3)
    >>> h.epochs, len(h.test_accuracy), h.test_accuracy[-1] > 0.9
    (20, 21, True)
    """
    check_choice("loss", loss, TRAIN_LOSSES)
    epochs = _positive_int("epochs", epochs, zero=True)
    batch_size = _positive_int("batch_size", batch_size)
    head = HEADS[loss]
    net = make_model(model, data.num_features, data.num_classes, seed=seed, hidden=hidden)
    opt = SGD(net, lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    history = History(loss)
    start = time.perf_counter()

    def record():
        tr_loss, tr_acc = evaluate(net, head, data.x_train, data.y_train)
        _, te_acc = evaluate(net, head, data.x_test, data.y_test)
        history.train_loss.append(tr_loss)
        history.train_accuracy.append(tr_acc)
        history.test_accuracy.append(te_acc)

    record()
    n = data.x_train.shape[0]
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        for lo in range(0, n, batch_size):
            batch = order[lo:lo + batch_size]
            scores = net.forward(data.x_train[batch])            # forward
            _, d_scores = head(scores, data.y_train[batch])      # the loss and dL/dscores
            net.backward(d_scores)                               # the chain rule, in reverse
            opt.step()                                           # theta -= lr * grad
        record()
        if progress is not None:
            progress.update(epoch, f"loss {history.train_loss[-1]:.4f}  "
                                   f"test acc {history.test_accuracy[-1]:.3f}")
    history.seconds = time.perf_counter() - start
    if progress is not None:
        progress.close()
    return history


# --------------------------------------------------------------------------- self-check
def check_gradients(data: Split, loss: str = "cross_entropy", *, model: str = "linear",
                    n: int = 16, hidden: int = 8, seed: int = 0) -> dict:
    """The harness's backward pass against central differences (``losskit.gradcheck``).

    A fresh model, the first ``n`` training examples; every parameter array is checked in
    float64. Returns ``{"<layer>.<param>": GradcheckResult}`` (``bool(result)`` is ``ok``).

    Examples
    --------
    >>> import numpy as np
    >>> from losskit.lab.training import split_dataset, check_gradients
    >>> rng = np.random.default_rng(0)
    >>> data = split_dataset(rng.normal(size=(40, 3)), rng.integers(0, 3, size=40))
    >>> res = check_gradients(data, "mse_softmax", model="mlp", hidden=4)
    >>> sorted(res), all(res.values())
    (['0.W', '0.b', '2.W', '2.b'], True)
    """
    from ..gradcheck import gradcheck

    check_choice("loss", loss, TRAIN_LOSSES)
    head = HEADS[loss]
    net = make_model(model, data.num_features, data.num_classes, seed=seed, hidden=hidden)
    n = _positive_int("n", n)
    x, y = data.x_train[:n], data.y_train[:n]
    results = {}
    index = 0
    for li, layer in enumerate(net.layers):
        for key in layer.params:
            results[f"{li}.{key}"] = _check_one(net, head, x, y, layer.params, key, index,
                                                gradcheck)
            index += 1
    return results


def _check_one(net, head, x, y, store, key, index, gradcheck):
    original = store[key]

    def value(theta):
        store[key] = theta
        try:
            return float(head(net.forward(x), y)[0])
        finally:
            store[key] = original

    def grad(theta):
        store[key] = theta
        try:
            _, d_scores = head(net.forward(x), y)
            net.backward(d_scores)
            return net.gradients()[index]
        finally:
            store[key] = original

    return gradcheck(value, original.copy(), grad=grad)
