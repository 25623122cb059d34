"""``losskit.keras.Loss``: a Keras 3 loss in Keras's ``(y_true, y_pred)`` order.

Each backend runs in a fresh process (Keras fixes its backend at import). References are
Keras's built-in losses, trained from the same initial weights on the same batches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import losskit as lk

keras = pytest.importorskip("keras")
SRC = Path(__file__).resolve().parents[2] / "src"

FIT = r"""
import json, sys
import numpy as np
import keras
import losskit as lk, losskit.keras
from sklearn.datasets import load_digits

X, y = load_digits(return_X_y=True)
X = (X[:512] / 16.0).astype("float32"); y = y[:512].astype("float32")
onehot = np.eye(10, dtype="float32")[y.astype(int)]
which = sys.argv[1]

def model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="tanh"),
                             keras.layers.Dense(10)])

cases = {
  "sparse": (losskit.keras.Loss(lk.softmax_cross_entropy),
             keras.losses.SparseCategoricalCrossentropy(from_logits=True), y),
  "sparse_column": (losskit.keras.Loss(lk.softmax_cross_entropy),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True), y[:, None]),
  "onehot_smoothed": (losskit.keras.Loss(lk.softmax_cross_entropy, label_smoothing=0.1),
                      keras.losses.CategoricalCrossentropy(from_logits=True,
                                                           label_smoothing=0.1), onehot),
  "mse": (losskit.keras.Loss(lk.mse), keras.losses.MeanSquaredError(), onehot),
  "huber": (losskit.keras.Loss(lk.huber, delta=0.5), keras.losses.Huber(delta=0.5), onehot),
  "bce_logits": (losskit.keras.Loss(lk.sigmoid_binary_cross_entropy),
                 keras.losses.BinaryCrossentropy(from_logits=True), onehot),
  "hinge": (losskit.keras.Loss(lk.hinge), keras.losses.Hinge(), 2.0 * onehot - 1.0),
  "log_cosh": (losskit.keras.Loss(lk.log_cosh), keras.losses.LogCosh(), onehot),
}
ours, theirs, target = cases[which]
w = np.linspace(0.5, 1.5, len(X)).astype("float32")
out = {}
for label, loss in (("ours", ours), ("theirs", theirs)):
    m = model()
    m.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=loss)
    h = m.fit(X, target, sample_weight=w, batch_size=32, epochs=3, shuffle=False, verbose=0)
    out[label] = [float(v) for v in h.history["loss"]]
# serialisation round trip
cfg = keras.losses.serialize(ours)
back = keras.losses.deserialize(cfg)
out["roundtrip"] = [back.loss.name, back.options, type(back).__name__]
print(json.dumps(out))
"""


def _fit(backend, which):
    env = dict(os.environ, KERAS_BACKEND=backend,
               PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH"))
                                          if p))
    proc = subprocess.run([sys.executable, "-c", FIT, which], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("which", ["sparse", "sparse_column", "onehot_smoothed", "mse", "huber",
                                   "bce_logits", "hinge", "log_cosh"])
def test_fit_equals_the_keras_builtin(backend, which):
    pytest.importorskip(backend)
    pytest.importorskip("sklearn")
    out = _fit(backend, which)
    assert out["ours"][-1] < out["ours"][0]  # it trained
    np.testing.assert_allclose(out["ours"], out["theirs"], rtol=0, atol=1e-5)
    assert out["roundtrip"][0] == {"sparse": "softmax_cross_entropy",
                                   "sparse_column": "softmax_cross_entropy",
                                   "onehot_smoothed": "softmax_cross_entropy",
                                   "mse": "mse", "huber": "huber",
                                   "bce_logits": "sigmoid_binary_cross_entropy",
                                   "hinge": "hinge", "log_cosh": "log_cosh"}[which]
    assert out["roundtrip"][2] == "Loss"


def test_call_order_labels_and_config_in_process():
    import losskit.keras as lkk

    loss = lkk.Loss(lk.softmax_cross_entropy)
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype="float32")
    labels = np.array([0.0, 1.0], dtype="float32")  # Keras hands sparse labels as floats
    expected = np.mean([np.log(np.exp(r).sum()) - r[i] for r, i in zip(logits, (0, 1))])
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-6)
    np.testing.assert_allclose(float(loss(labels[:, None], logits)), expected, rtol=1e-6)
    # losses whose target is class indices only: float labels are cast whatever the shape
    z = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.3]], dtype="float32")
    padded = np.array([[2, 0, -1], [1, -1, -1]])
    np.testing.assert_allclose(
        float(lkk.Loss(lk.multilabel_margin)(padded.astype("float32"), z)),
        float(lk.multilabel_margin(z, padded)), rtol=1e-6)
    feats = np.random.default_rng(0).normal(size=(4, 2, 3)).astype("float32")
    groups = np.array([0, 1, 0, 1])
    np.testing.assert_allclose(
        float(lkk.Loss(lk.supcon_loss)(groups.astype("float32"), feats)),
        float(lk.supcon_loss(feats, groups, reduction="none").mean()), rtol=1e-5)
    config = loss.get_config()
    again = lkk.Loss.from_config(config)
    assert again.loss is lk.softmax_cross_entropy and again.name == "softmax_cross_entropy"
    assert lkk.Loss("huber", delta=0.5).options == {"delta": 0.5}
    with pytest.raises(TypeError, match="label_smothing"):
        lkk.Loss(lk.softmax_cross_entropy, label_smothing=0.1)
    with pytest.raises(TypeError, match="losskit loss"):
        lkk.Loss(keras.losses.MeanSquaredError())
    with pytest.raises(ValueError):
        lkk.Loss("no_such_loss")
