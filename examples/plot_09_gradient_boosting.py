r"""
Gradient boosting with a losskit objective: focal loss on rare positives
========================================================================

A gradient-boosting library grows each tree from the gradient :math:`g_i` and the Hessian
:math:`h_i` of the loss with respect to each row's raw score: a leaf's value is the Newton
step :math:`-\sum g_i / (\sum h_i + \lambda)`. ``losskit.gbdt`` hands any losskit loss with a
Hessian to XGBoost, LightGBM or CatBoost, gradient and Hessian in closed form.

Here LightGBM learns a problem with 3.5% positives twice: with log loss
(``sigmoid_binary_cross_entropy``, the same trees as LightGBM's own ``binary`` objective)
and with focal loss (``sigmoid_focal_loss``, :math:`\gamma = 2`, no class weight), whose
factor :math:`(1 - p_t)^\gamma` shrinks the gradient *and* the Hessian of the rows the model
already gets right.
"""

# %%
# Gradient and Hessian of the two losses
# --------------------------------------
# For a positive row (:math:`t = 1`) as a function of its raw score. Focal loss's Hessian
# turns negative for confident rows: the loss is not convex there.
import matplotlib.pyplot as plt
import numpy as np

import losskit as lk

z = np.linspace(-6, 6, 241)
t = np.ones_like(z)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for loss, options, label in [(lk.sigmoid_binary_cross_entropy, {}, "log loss"),
                             (lk.sigmoid_focal_loss, {"gamma": 2.0, "alpha": None},
                              "focal, gamma 2")]:
    g, h = loss.grad_and_hessian(z, t, reduction="none", **options)
    ax1.plot(z, g, lw=2, label=label)
    ax2.plot(z, h, lw=2, label=label)
ax1.set(title="gradient (t = 1)", xlabel="raw score z")
ax2.set(title="Hessian (t = 1)", xlabel="raw score z")
ax2.axhline(0.0, color="grey", lw=0.8)
ax1.legend()
plt.show()

# %%
# Training LightGBM with both objectives
# --------------------------------------
# :func:`losskit.lab.experiments.boosting_focal` (``losskit experiment boosting``) trains
# one LightGBM model per objective with ``losskit.gbdt.lightgbm_objective`` and scores a
# held-out half every 10 rounds.
from losskit.lab.experiments import boosting_focal

result = boosting_focal(rounds=200, threads=1)
for name in result.average_precision:
    best_round, best = result.best(name)
    print(f"{name:9s} best test average precision {best:.4f} (round {best_round}); "
          f"test log loss at the end {result.log_loss[name][-1]:.4f}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for name in result.average_precision:
    ax1.plot(result.rounds, result.average_precision[name], lw=2, label=name)
    ax2.plot(result.rounds, result.log_loss[name], lw=2, label=name)
ax1.set(title="test average precision", xlabel="boosting round")
ax2.set(title="test log loss of sigmoid(score)", xlabel="boosting round")
ax1.legend()
plt.show()

# %%
# Focal loss ranks the rare positives about as well as log loss here, and its scores are
# not calibrated probabilities: its test log loss stays well above log loss's. The
# objective is one line, the same for XGBoost (``lk.gbdt.xgboost_objective``) and CatBoost
# (``lk.gbdt.catboost_objective``).
