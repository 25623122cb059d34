r"""
MSE against cross-entropy on the digits
=======================================

A softmax classifier (softmax regression: one linear layer from the 64 pixels of an 8x8
image to 10 class scores) trained on scikit-learn's handwritten digits twice, with the
same data, initial weights, learning rate and number of steps, once with each loss:

* **softmax cross-entropy** of the scores :math:`z`, ``lk.softmax_cross_entropy``, whose
  gradient is :math:`\partial L/\partial z = (\operatorname{softmax}(z) - \text{onehot})/N`;
* **squared error of the softmax output** against the one-hot label,
  :math:`\frac1N \sum_n \lVert p_n - t_n \rVert^2` with :math:`p = \operatorname{softmax}(z)`,
  ``lk.mse`` on ``lk.softmax(z)``. Its gradient passes through the softmax Jacobian
  :math:`\partial p_i / \partial z_j = p_i (\delta_{ij} - p_j)`, which vanishes when the
  softmax saturates: the multi-class version of :doc:`the saturation experiment
  <plot_01_saturation>`.

Training is plain full-batch gradient descent written in NumPy; losskit supplies the loss
values and the gradients with respect to the scores (``.value_and_grad``), and the chain
rule to the weights is one matrix product.
"""

# %%
# The data
# --------
# 1797 images ship with scikit-learn (no download). ``losskit.lab.training.load_digits``
# shuffles them with a seed, holds out 25% for testing, and standardises the pixels with
# the training set's mean and standard deviation.
import matplotlib.pyplot as plt
import numpy as np

import losskit as lk
from losskit.lab.training import load_digits

digits = load_digits(test_fraction=0.25, seed=0)
X_train, X_test, y_train, y_test = digits.x_train, digits.x_test, digits.y_train, digits.y_test
num_classes = digits.num_classes
print(f"train {X_train.shape}, test {X_test.shape}, {num_classes} classes")

# %%
# The two loss heads
# ------------------
# Each takes the scores ``z`` of a batch and the integer labels, and returns the mean loss
# and :math:`\partial L/\partial z`. For the squared error on the softmax, losskit gives
# :math:`\partial L/\partial p = 2(p - t)/N` (``reduction="batchmean"``: summed over the
# classes, averaged over the examples); multiplying by the softmax Jacobian is the
# vector-Jacobian product :math:`\partial L/\partial z_j = p_j (g_j - \sum_i g_i p_i)`.


def cross_entropy_head(z, labels):
    return lk.softmax_cross_entropy.value_and_grad(z, labels)


def mse_softmax_head(z, labels):
    p = lk.softmax(z, axis=1)
    onehot = np.eye(num_classes)[labels]
    value, d_p = lk.mse.value_and_grad(p, onehot, reduction="batchmean")
    d_z = p * (d_p - np.sum(d_p * p, axis=1, keepdims=True))  # through the softmax Jacobian
    return value, d_z


HEADS = {"softmax cross-entropy": cross_entropy_head, "MSE on the softmax": mse_softmax_head}

# %%
# The training loop
# -----------------
# Scores :math:`z = XW + b`; the gradient of the loss with respect to the weights is
# :math:`X^T \partial L/\partial z` and with respect to the bias the column sums of
# :math:`\partial L/\partial z`. Every step records the training loss and the test accuracy.


def train(head, *, init_scale, lr=0.5, steps=300, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(0.0, init_scale, size=(X_train.shape[1], num_classes))
    b = np.zeros(num_classes)
    losses, accuracy = [], []
    for step in range(steps + 1):
        value, d_z = head(X_train @ W + b, y_train)  # forward: the loss and dL/dz
        losses.append(float(value))
        accuracy.append(float(np.mean(np.argmax(X_test @ W + b, axis=1) == y_test)))
        if step < steps:
            W -= lr * (X_train.T @ d_z)              # backward: chain rule to the weights
            b -= lr * d_z.sum(axis=0)
    return np.array(losses), np.array(accuracy)


# %%
# Two starting points: small weights (every class about equally likely, the usual
# initialisation) and large weights (standard deviation 1, so the initial model is
# confidently wrong on most images). Same seed, so both losses start from the same weights.
inits = {"small initial weights (std 0.01)": 0.01, "large initial weights (std 1)": 1.0}
results = {(init, name): train(head, init_scale=scale)
           for init, scale in inits.items() for name, head in HEADS.items()}


def first_step_reaching(acc, level=0.9):
    hit = np.nonzero(acc >= level)[0]
    return f"step {hit[0]}" if hit.size else "never"


for (init, name), (losses, acc) in results.items():
    print(f"{init:34s} {name:22s} test accuracy {acc[-1]:.3f} after {len(acc) - 1} steps, "
          f"90% reached: {first_step_reaching(acc)}")

# %%
# Learning curves
# ---------------
# The two losses are on different scales, so the top row shows each training loss divided
# by its own starting value. From small weights both learn; cross-entropy gets there in
# fewer steps. From large weights the difference is dramatic: cross-entropy recovers
# within about a hundred steps, while MSE on the softmax is still far behind after 300.
colours = {"softmax cross-entropy": "tab:blue", "MSE on the softmax": "tab:red"}
fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True, layout="constrained")
for col, init in enumerate(inits):
    for name in HEADS:
        losses, acc = results[init, name]
        axes[0, col].plot(losses / losses[0], color=colours[name], label=name)
        axes[1, col].plot(acc, color=colours[name], label=name)
    axes[0, col].set(title=init, ylabel="training loss / its value at step 0")
    axes[1, col].set(xlabel="gradient-descent step", ylabel="test accuracy", ylim=(0, 1))
    axes[1, col].axhline(0.9, color="grey", ls="--", lw=1)
    axes[0, col].legend()
    axes[1, col].legend(loc="lower right")
fig.suptitle("Softmax regression on the digits, full-batch gradient descent, lr = 0.5")
plt.show()

# %%
# Why: the gradient of one example
# --------------------------------
# Take the large initialisation and, for every training image the model gets wrong, the
# size of the gradient of that image's own loss with respect to its scores
# (``reduction="sum"`` keeps each example's gradient unscaled). On the horizontal axis:
# how far the softmax is from saturated, :math:`1 - \max_j p_j`.
#
# Cross-entropy's gradient :math:`p - t` has a norm between 1 and :math:`\sqrt 2` for a
# wrong prediction, however confident: the worse the prediction, the firmer the push.
# The MSE gradient carries the softmax Jacobian :math:`p_i(\delta_{ij} - p_j)`, which
# vanishes as the softmax saturates, so it falls roughly in proportion to
# :math:`1 - \max_j p_j`: the images the model is most confidently wrong about contribute
# the least.
rng = np.random.default_rng(0)  # the same weights the large-initialisation runs started from
W0 = rng.normal(0.0, inits["large initial weights (std 1)"], size=(X_train.shape[1], num_classes))
z0 = X_train @ W0  # the bias starts at 0
p0 = lk.softmax(z0, axis=1)
_, g_ce = lk.softmax_cross_entropy.value_and_grad(z0, y_train, reduction="sum")
_, d_p = lk.mse.value_and_grad(p0, np.eye(num_classes)[y_train], reduction="sum")
g_mse = p0 * (d_p - np.sum(d_p * p0, axis=1, keepdims=True))
norm_ce, norm_mse = np.linalg.norm(g_ce, axis=1), np.linalg.norm(g_mse, axis=1)

wrong = np.argmax(z0, axis=1) != y_train
distance = 1.0 - p0.max(axis=1)
confident = wrong & (distance < 1e-3)
print(f"{wrong.mean():.0%} of the training images are misclassified at this start; "
      f"{confident.mean():.0%} with a top probability above 0.999")
print("median gradient norm on those confidently wrong images: "
      f"cross-entropy {np.median(norm_ce[confident]):.3f}, "
      f"MSE on the softmax {np.median(norm_mse[confident]):.2e}")

shown = wrong & (distance > 0)  # a top probability that rounds to exactly 1 has no log
fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
ax.loglog(distance[shown], norm_ce[shown], ".", ms=3, color="tab:blue",
          label="softmax cross-entropy")
ax.loglog(distance[shown], norm_mse[shown], ".", ms=3, color="tab:red",
          label="MSE on the softmax")
ax.set(xlabel="1 - max_j p_j: distance of the softmax from saturation (log scale)",
       ylabel="|| dL/dz || of the image (log scale)",
       title="Misclassified training images at the large initialisation")
ax.legend()
plt.show()

# %%
# What to remember
# ----------------
# With a softmax output, train with cross-entropy. The squared error of the probabilities
# is a valid loss (it is even bounded and has the same minimum), but its gradient goes
# through the softmax's saturating Jacobian: an example the model is confidently wrong
# about gets almost no gradient, so learning from a bad start is slow. The harness behind
# ``losskit demo`` (:func:`losskit.lab.experiments.compare_losses`) makes the same
# comparison with mini-batches and adds the multiclass hinge.
