"""The NumPy training harness (``losskit.lab.training``).

References are independent: torch float64 autograd of the same network written with
torch.nn.functional (the style guide's section 14, micrograd's ``test_engine.py``),
``torch.optim.SGD`` for the optimiser, and the known property of the digits dataset that
a linear softmax classifier generalises to well over 90% accuracy.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from losskit.lab import training
from losskit.lab.training import (
    HEADS,
    SGD,
    TRAIN_LOSSES,
    History,
    Linear,
    ProgressBar,
    check_gradients,
    linear_classifier,
    load_digits,
    mlp,
    softmax_jacobian,
    split_dataset,
    train,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional
f64 = torch.float64


# --------------------------------------------------------------------------- torch references
def _torch_loss(loss, scores, labels):
    """The three losses written from their published formulas in torch (no losskit)."""
    y = torch.as_tensor(labels)
    if loss == "cross_entropy":
        return F.cross_entropy(scores, y)
    if loss == "mse_softmax":
        onehot = F.one_hot(y, scores.shape[1]).to(f64)
        return ((torch.softmax(scores, dim=1) - onehot) ** 2).sum(dim=1).mean()
    # Weston-Watkins: sum over j != y of max(0, s_j - s_y + 1), mean over the batch
    true = scores.gather(1, y[:, None])
    margins = torch.clamp(scores - true + 1.0, min=0.0)
    margins = margins * (1.0 - F.one_hot(y, scores.shape[1]).to(f64))
    return margins.sum(dim=1).mean()


def _torch_params(net):
    return [torch.tensor(store[key], dtype=f64, requires_grad=True)
            for store, key in net.parameters()]


def _torch_forward(params, x, model):
    x = torch.as_tensor(x, dtype=f64)
    if model == "linear":
        w, b = params
        return x @ w + b
    w1, b1, w2, b2 = params
    return torch.relu(x @ w1 + b1) @ w2 + b2


def _batch(n=7, d=5, k=4, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)  # every class present
    return x, y


def _model(model, d, k, seed=1):
    return linear_classifier(d, k, seed=seed) if model == "linear" else mlp(d, k, hidden=6,
                                                                           seed=seed)


# --------------------------------------------------------------------------- one step
@pytest.mark.parametrize("model", ["linear", "mlp"])
@pytest.mark.parametrize("loss", TRAIN_LOSSES)
def test_one_step_gradients_match_torch_autograd(loss, model):
    x, y = _batch()
    net = _model(model, 5, 4)
    params = _torch_params(net)

    scores = net.forward(x)
    value, d_scores = HEADS[loss](scores, y)
    net.backward(d_scores)

    ref_scores = _torch_forward(params, x, model)
    ref = _torch_loss(loss, ref_scores, y)
    ref.backward()
    np.testing.assert_allclose(scores, ref_scores.detach().numpy(), rtol=1e-13, atol=1e-14)
    assert float(value) == pytest.approx(ref.item(), rel=1e-13)
    for g, p in zip(net.gradients(), params):
        assert g.shape == p.shape
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-11, atol=1e-14)
    # the gradient is not trivially zero: the test can fail
    assert max(float(np.abs(g).max()) for g in net.gradients()) > 1e-3


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_matches_torch_optim(momentum):
    x, y = _batch(n=12)
    net = _model("mlp", 5, 4)
    params = _torch_params(net)
    opt = SGD(net, lr=0.1, momentum=momentum)
    ref_opt = torch.optim.SGD(params, lr=0.1, momentum=momentum)
    rng = np.random.default_rng(0)
    for _ in range(4):
        batch = rng.permutation(12)[:6]
        _, d_scores = HEADS["cross_entropy"](net.forward(x[batch]), y[batch])
        net.backward(d_scores)
        opt.step()
        ref_opt.zero_grad()
        _torch_loss("cross_entropy", _torch_forward(params, x[batch], "mlp"), y[batch]).backward()
        ref_opt.step()
    for (store, key), p in zip(net.parameters(), params):
        np.testing.assert_allclose(store[key], p.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_softmax_jacobian_matches_torch():
    z = np.array([[0.3, -1.2, 2.0, 0.0], [5.0, 5.0, -3.0, 1.0]])
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    jac = softmax_jacobian(p)
    for n in range(2):
        ref = torch.autograd.functional.jacobian(lambda v: torch.softmax(v, 0),
                                                 torch.tensor(z[n], dtype=f64))
        np.testing.assert_allclose(jac[n], ref.numpy(), rtol=1e-13, atol=1e-16)


def test_relu_gradient_is_zero_below_the_kink():
    layer = training.ReLU()
    out = layer.forward(np.array([[-1.0, 0.0, 2.0]]))
    assert out.tolist() == [[0.0, 0.0, 2.0]]
    assert layer.backward(np.array([[5.0, 5.0, 5.0]])).tolist() == [[0.0, 0.0, 5.0]]


# --------------------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return load_digits()


def test_linear_softmax_classifier_on_digits_beats_90_percent(digits):
    # a known property of the 8x8 digits: a linear (multinomial logistic) model reaches
    # well over 90% test accuracy
    h = train(digits, "cross_entropy", model="linear", epochs=30)
    assert h.test_accuracy[-1] > 0.90
    assert h.train_loss[-1] < h.train_loss[0]
    assert h.epochs_to(0.9) is not None
    # at the start (random weights) it is near chance, 10%
    assert h.test_accuracy[0] < 0.3


def test_digits_split(digits):
    n_train, n_test = len(digits.y_train), len(digits.y_test)
    assert n_train + n_test == 1797 and n_test == round(0.25 * 1797)
    assert digits.num_classes == 10 and digits.num_features == 64
    # standardised with the training statistics: mean 0, std 1 (or 0 for constant pixels)
    np.testing.assert_allclose(digits.x_train.mean(0), 0.0, atol=1e-12)
    std = digits.x_train.std(0)
    assert np.all((np.abs(std - 1) < 1e-12) | (std == 0)) and np.any(std == 0)
    # the split is fixed by the seed and changes with it
    again = load_digits()
    np.testing.assert_array_equal(again.y_test, digits.y_test)
    assert not np.array_equal(load_digits(seed=1).y_test, digits.y_test)


def test_subset(digits):
    small = load_digits(subset=200)
    assert len(small.y_train) + len(small.y_test) == 200


def test_same_initial_model_for_every_loss(digits):
    small = load_digits(subset=300)
    hs = {loss: train(small, loss, epochs=1) for loss in TRAIN_LOSSES}
    # epoch 0 is the shared initial model: same accuracies
    assert len({h.test_accuracy[0] for h in hs.values()}) == 1
    assert len({h.train_accuracy[0] for h in hs.values()}) == 1
    # and training is deterministic for a seed
    again = train(small, "mse_softmax", epochs=1)
    assert again.train_loss == hs["mse_softmax"].train_loss


@pytest.mark.parametrize("loss", TRAIN_LOSSES)
@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_check_gradients_passes(loss, model):
    x, y = _batch(n=20, d=4, k=3)
    data = split_dataset(x, y)
    results = check_gradients(data, loss, model=model, n=6, hidden=5)
    assert all(results.values()), results


def test_check_gradients_catches_a_wrong_backward(monkeypatch):
    x, y = _batch(n=20, d=4, k=3)
    data = split_dataset(x, y)
    original = Linear.backward

    def off_by_a_bit(self, d_out):
        dx = original(self, d_out)
        self.grads["W"] = self.grads["W"] * 1.01
        return dx

    monkeypatch.setattr(Linear, "backward", off_by_a_bit)
    results = check_gradients(data, "cross_entropy", n=6)
    assert not results["0.W"] and results["0.b"]


# --------------------------------------------------------------------------- small parts
def test_split_uses_training_statistics_only():
    x = np.array([[0.0], [2.0], [4.0], [100.0]])
    y = np.array([0, 1, 0, 1])
    s = split_dataset(x, y, test_fraction=0.25, seed=0)
    train_raw = s.x_train * s.scale + s.mean
    assert s.mean[0] == pytest.approx(train_raw.mean())
    assert s.scale[0] == pytest.approx(train_raw.std())


def test_history_epochs_to():
    h = History("cross_entropy", train_loss=[3, 2, 1, 0.5], test_accuracy=[0.1, 0.85, 0.9, 0.95])
    assert h.epochs == 3
    assert h.epochs_to(0.9) == 2 and h.epochs_to(0.5) == 1 and h.epochs_to(0.99) is None


def test_progress_bar_writes_only_when_enabled():
    buf = io.StringIO()  # not a terminal: disabled by default
    bar = ProgressBar(4, "ce", stream=buf)
    bar.update(2, "x")
    bar.close()
    assert buf.getvalue() == ""
    buf = io.StringIO()
    bar = ProgressBar(4, "ce", stream=buf, enabled=True, width=8)
    bar.update(2, "loss 1.0")
    bar.update(4)
    bar.close()
    text = buf.getvalue()
    assert "\rce [####....] 2/4 loss 1.0" in text
    assert "[########] 4/4" in text and text.endswith("\n")


def test_train_reports_progress_per_epoch():
    x, y = _batch(n=30, d=3, k=3)
    buf = io.StringIO()
    train(split_dataset(x, y), "cross_entropy", epochs=3,
          progress=ProgressBar(3, "t", stream=buf, enabled=True))
    assert buf.getvalue().count("\r") == 3 and "3/3" in buf.getvalue()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(loss="hinge"), ValueError, "`loss` must be one of"),
    (dict(epochs=-1), ValueError, "`epochs` must be a non-negative int"),
    (dict(batch_size=0), ValueError, "`batch_size` must be a positive int"),
    (dict(model="cnn"), ValueError, "`model` must be one of 'linear', 'mlp'"),
    (dict(lr=0.0), ValueError, "`lr` must lie in"),
    (dict(momentum=1.0), ValueError, "`momentum` must lie in"),
])
def test_train_errors(kwargs, exc, match):
    x, y = _batch(n=20)
    with pytest.raises(exc, match=match):
        train(split_dataset(x, y), **kwargs)


@pytest.mark.parametrize("x, y, kwargs, match", [
    (np.zeros(5), np.zeros(5, int), {}, "`x` must be 2-d"),
    (np.zeros((5, 2)), np.zeros(4, int), {}, r"`y` must have shape \(5,\)"),
    (np.zeros((5, 2)), np.zeros(5), {}, "integer class labels"),
    (np.zeros((5, 2)), np.zeros(5, int), dict(test_fraction=1.5), "`test_fraction`"),
    (np.zeros((2, 2)), np.zeros(2, int), dict(test_fraction=0.1), "both parts"),
])
def test_split_errors(x, y, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        split_dataset(x, y, **kwargs)


def test_load_digits_without_sklearn(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'losskit\[demo\]'"):
        load_digits()
