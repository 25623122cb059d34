r"""
Reading a training curve with ``doctor``
========================================

A loss curve is the first thing to look at when training goes wrong, and the classic
failures have recognisable shapes. With :math:`K` classes and an uninformed model the
cross-entropy starts at :math:`\ln K` (:math:`\ln 10 = 2.303` for the digits):

* a loss that **stays near** :math:`\ln K` shows no sign of learning: the learning rate is
  too small, or the initialisation is wrong;
* a loss that **heads for infinity** means training diverges: the learning rate is too
  large;
* a training loss that keeps falling while the **validation loss climbs back** means the
  model is overfitting: stop earlier, regularise, or get more data.

:func:`losskit.doctor` reads a recorded history and reports these findings, each with the
step where it shows and advice. Here we record four real training runs of a small neural
network on scikit-learn's digits, one healthy and three broken, and ask it.
"""

# %%
# The data and the network
# ------------------------
# A 70/30 split of the digits, standardised (``losskit.lab.training.load_digits``). The network has one hidden layer of 64 ReLU
# units; the forward and backward passes are written out in NumPy, and the loss and its
# gradient with respect to the scores come from ``lk.softmax_cross_entropy.value_and_grad``.
import matplotlib.pyplot as plt
import numpy as np

import losskit as lk
from losskit.lab.training import load_digits

digits = load_digits(test_fraction=0.3, seed=0)
X_train, X_val, y_train, y_val = digits.x_train, digits.x_test, digits.y_train, digits.y_test
NUM_CLASSES = digits.num_classes


def init_params(seed, hidden=64):
    rng = np.random.default_rng(seed)
    return {"W1": rng.normal(0.0, np.sqrt(2.0 / 64), size=(64, hidden)),  # He initialisation
            "b1": np.zeros(hidden),
            "W2": rng.normal(0.0, 0.01, size=(hidden, NUM_CLASSES)),  # small: starts near ln 10
            "b2": np.zeros(NUM_CLASSES)}


def forward(params, x):
    hidden = np.maximum(x @ params["W1"] + params["b1"], 0.0)
    return hidden, hidden @ params["W2"] + params["b2"]


def train(lr, steps, *, n_train=None, batch_size=64, val_every=10, seed=0):
    """SGD on mini-batches; returns the training loss of every step and the validation
    loss (whole validation set) every ``val_every`` steps, with those steps."""
    rng = np.random.default_rng(seed)
    params = init_params(seed)
    x_all, y_all = X_train[:n_train], y_train[:n_train]
    train_losses, val_losses, val_steps = [], [], []
    for step in range(steps):
        if step % val_every == 0:
            val_losses.append(float(lk.softmax_cross_entropy(forward(params, X_val)[1], y_val)))
            val_steps.append(step)
        batch = rng.choice(len(y_all), size=min(batch_size, len(y_all)), replace=False)
        x = x_all[batch]
        hidden, scores = forward(params, x)
        loss, d_scores = lk.softmax_cross_entropy.value_and_grad(scores, y_all[batch])
        train_losses.append(float(loss))
        d_hidden = (d_scores @ params["W2"].T) * (hidden > 0)  # back through the ReLU
        params["W2"] -= lr * (hidden.T @ d_scores)
        params["b2"] -= lr * d_scores.sum(axis=0)
        params["W1"] -= lr * (x.T @ d_hidden)
        params["b1"] -= lr * d_hidden.sum(axis=0)
    return np.array(train_losses), np.array(val_losses), np.array(val_steps)


# %%
# Four runs
# ---------
# * **healthy**: learning rate 0.05, mini-batches of 64, 600 steps;
# * **learning rate too small**: :math:`10^{-4}`, otherwise the same;
# * **learning rate too large**: 3.0, otherwise the same. The weights blow up; NumPy
#   would warn about the overflow in the matrix products, which we silence for this run
#   only (``np.errstate``) so that the history is recorded to the end, as a framework
#   would record it;
# * **overfitting**: only 60 training images, all in every step (full batch), learning
#   rate 0.5, 3000 steps.
with np.errstate(over="ignore", invalid="ignore"):
    too_large = train(3.0, 600)
runs = {
    "healthy (lr 0.05)": train(0.05, 600),
    "learning rate too small (lr 1e-4)": train(1e-4, 600),
    "learning rate too large (lr 3)": too_large,
    "overfitting (60 training images, lr 0.5)": train(0.5, 3000, n_train=60, batch_size=60),
}

# %%
# Ask the doctor
# --------------
# ``lk.doctor`` takes the training losses, optionally the validation losses (here logged
# every 10 steps, so their steps go in ``val_steps``), and the number of classes, which
# fixes the chance level :math:`\ln 10`. ``print(report)`` lists the findings; each one is
# also an object with ``code``, ``level``, ``step``, ``message`` and ``advice``.
reports = {}
for name, (train_losses, val_losses, val_steps) in runs.items():
    report = lk.doctor(train_losses, val_losses=val_losses, val_steps=val_steps,
                       num_classes=NUM_CLASSES)
    reports[name] = report
    print(f"=== {name}: verdict {report.verdict!r}, codes {report.codes}")
    print(report)
    print()

# %%
# The curves, with the findings
# -----------------------------
# The raw mini-batch losses are noisy (light), which is why ``doctor`` smooths them with a
# moving median before it judges a trend. A vertical line marks the step of each finding.
# Read each panel against its report above:
#
# * the healthy curve falls from :math:`\ln 10` and flattens; the validation loss follows;
# * the too-small learning rate leaves the loss near :math:`\ln 10`. It is not perfectly
#   flat (it drifts down by a few hundredths over the 600 steps, printed below), but it
#   stays within 5% of :math:`\ln 10`, the band ``doctor`` uses: at this pace the run would
#   need many thousands of steps to get anywhere;
# * the too-large one sends it up by orders of magnitude (note the log scale);
# * with 60 training images the training loss goes to almost 0 while the validation loss
#   turns back up after its minimum (this panel's vertical axis is cut at 1 to show it).
#   The step ``doctor`` reports is the minimum of the *smoothed* validation curve, the
#   early-stopping point; the raw minimum, printed below, is a few validation points away.
#   The two levels it quotes are medians of windows of raw values around the minimum and
#   at the end (robust to noise, marked "medians"), not single raw values.
fig, axes = plt.subplots(2, 2, figsize=(12, 8), layout="constrained")
for ax, (name, (train_losses, val_losses, val_steps)) in zip(axes.flat, runs.items()):
    steps = np.arange(len(train_losses))
    ax.plot(steps, train_losses, color="tab:blue", alpha=0.35, lw=0.8,
            label="training loss (mini-batch)")
    ax.plot(val_steps, val_losses, color="tab:orange", lw=2, label="validation loss")
    ax.axhline(np.log(NUM_CLASSES), color="grey", ls="--", lw=1, label="ln 10 (chance)")
    for finding in reports[name]:
        ax.axvline(finding.step, color="tab:red", lw=1.5)
        ax.annotate(f"{finding.code}\n(step {finding.step})", (finding.step, 0.5),
                    xycoords=("data", "axes fraction"), xytext=(4, 0),
                    textcoords="offset points", color="tab:red", fontsize="small")
    if np.nanmax(train_losses) > 100:
        ax.set_yscale("log")
        legend_place = "lower right"
    else:
        overfit = name.startswith("overfitting")
        ax.set_ylim(0.0, 1.0 if overfit else 2.5)
        legend_place = "upper right" if overfit else "center right"
    ax.set(xlabel="training step", ylabel="cross-entropy (nats)",
           title=f"{name}: {reports[name].verdict}")
    ax.legend(loc=legend_place, fontsize="small")
plt.show()

# %%
# A few numbers behind the findings
# ---------------------------------
train_losses, val_losses, val_steps = runs["overfitting (60 training images, lr 0.5)"]
best = int(np.argmin(val_losses))
print(f"overfitting run: validation loss lowest at step {val_steps[best]} "
      f"({val_losses[best]:.3f}), {val_losses[-1]:.3f} at the end; "
      f"last training loss {train_losses[-1]:.5f}")
train_losses = runs["learning rate too large (lr 3)"][0]
print(f"too-large run: training loss {train_losses[0]:.3f} at step 0, "
      f"{train_losses[-1]:.3g} at step {len(train_losses) - 1}")
train_losses = runs["learning rate too small (lr 1e-4)"][0]
print(f"too-small run: median of the last 100 losses {np.median(train_losses[-100:]):.3f} "
      f"(ln 10 = {np.log(10):.3f})")

# %%
# What to remember
# ----------------
# Always log the loss, and the validation loss too. A curve that stays at :math:`\ln K`,
# one that explodes and one whose validation part turns upwards each point to a
# different fix: raise the learning rate, lower it, stop early or regularise.
# ``lk.doctor`` (and ``losskit doctor history.csv --num-classes 10`` on the command line)
# checks for these shapes, and for NaN or inf values; its findings are heuristics, reasons
# to look, not proofs.
