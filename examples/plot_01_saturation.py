r"""
The saturation experiment: MSE after a sigmoid learns slowly
============================================================

One neuron with a sigmoid output, one input :math:`x = 1`, weight :math:`w = \ln 9` (so the
output starts at :math:`a = \sigma(\ln 9) = 0.9`), bias 0, target :math:`y = 0.5`, learning
rate :math:`\eta = 0.2`, plain gradient descent until :math:`\tfrac12 (a - y)^2 < 0.001`.
Trained with the squared error it needs **287** updates; trained with cross-entropy, **53**.

The reason is the chain rule. With :math:`a = \sigma(z)`,

.. math::

    \text{MSE: } \frac{\partial L}{\partial z} = (a - y)\, a (1 - a), \qquad
    \text{cross-entropy: } \frac{\partial L}{\partial z} = a - y .

The factor :math:`a(1 - a)`, the sigmoid's derivative, is at most 1/4 and goes to 0 when the
output is near 0 or 1: the squared error learns slowly exactly when the neuron is most
confidently wrong. Cross-entropy's logarithm cancels it.

The experiment is :func:`losskit.lab.experiments.saturation` (also ``losskit experiment
saturation`` on the command line); it uses ``lk.l2_loss`` and
``lk.sigmoid_binary_cross_entropy`` for the losses and their gradients.
"""

# %%
# Run the experiment with both losses
# -----------------------------------
# :func:`~losskit.lab.experiments.saturation` returns the number of updates and the whole
# trajectory, one :class:`~losskit.lab.experiments.SaturationStep` per update.
import math

import matplotlib.pyplot as plt
import numpy as np

from losskit.lab.experiments import saturation, saturation_gradients

mse_run = saturation("mse")
ce_run = saturation("cross_entropy")
print(f"updates until 1/2 (a - y)^2 < {mse_run.threshold}:")
print(f"  MSE            {mse_run.updates:4d}   (final a = {mse_run.final_a:.4f})")
print(f"  cross-entropy  {ce_run.updates:4d}   (final a = {ce_run.final_a:.4f})")

# %%
# The first update, by hand
# -------------------------
# The first step of the MSE run can be checked on paper: :math:`a = 0.9`, loss
# :math:`\tfrac12 (0.9 - 0.5)^2 = 0.08`, gradient :math:`(a - y)\,a(1-a)\,x = 0.4 \cdot 0.9
# \cdot 0.1 = 0.036`, new weight :math:`\ln 9 - 0.2 \cdot 0.036 = 2.1900`. Cross-entropy's
# gradient at the same point is :math:`a - y = 0.4`, eleven times larger (it lacks the
# factor :math:`a(1-a) = 0.09`).
s, c = mse_run.trajectory[0], ce_run.trajectory[0]
print(f"MSE step 1: a = {s.a:.4f}, loss = {s.loss:.4f}, dL/dw = {s.grad:.4f}, "
      f"w: {s.w:.4f} -> {s.w_next:.4f}")
print(f"CE  step 1: a = {c.a:.4f}, dL/dz = {c.dloss_dz:.4f}, w: {c.w:.4f} -> {c.w_next:.4f}")
print(f"ratio of the two gradients at step 1: {s.dloss_dz / c.dloss_dz:.4f} = a (1 - a)")

# %%
# The two trajectories
# --------------------
# Left: the output :math:`a` moving towards the target 0.5. Right: the stopping criterion
# :math:`\tfrac12 (a - y)^2` on a log scale. Both runs start from the same point; the
# cross-entropy run takes far bigger steps at first, while the MSE run creeps.


def curves(run):
    steps = np.array([st.step for st in run.trajectory] + [run.updates + 1]) - 1
    a = np.array([st.a for st in run.trajectory] + [run.final_a])
    crit = np.array([st.mse for st in run.trajectory] + [run.final_mse])
    return steps, a, crit


fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for run, label, colour in ((mse_run, "MSE", "tab:red"), (ce_run, "cross-entropy", "tab:blue")):
    steps, a, crit = curves(run)
    ax1.plot(steps, a, color=colour, label=f"{label} ({run.updates} updates)")
    ax2.semilogy(steps, crit, color=colour, label=label)
ax1.axhline(0.5, color="grey", ls="--", lw=1, label="target y = 0.5")
ax1.set(xlabel="update", ylabel="output a = sigmoid(w x)", title="The neuron's output")
ax1.legend()
ax2.axhline(mse_run.threshold, color="grey", ls="--", lw=1, label="threshold 0.001")
ax2.set(xlabel="update", ylabel="1/2 (a - y)^2 (log scale)", title="Stopping criterion")
ax2.legend()
plt.show()

# %%
# The gradient that reaches the weight
# ------------------------------------
# :math:`\partial L / \partial z` along each run. For MSE it is the cross-entropy gradient
# :math:`a - y` multiplied by :math:`a (1 - a) \le 1/4`: at least four times smaller
# everywhere, and eleven times smaller at the start (:math:`a(1-a) = 0.09` at
# :math:`a = 0.9`). Both gradients shrink as :math:`a` approaches the target.
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for run, label, colour in ((mse_run, "MSE: (a - y) a (1 - a)", "tab:red"),
                           (ce_run, "cross-entropy: a - y", "tab:blue")):
    ax.plot([st.step for st in run.trajectory], [st.dloss_dz for st in run.trajectory],
            color=colour, label=label)
ax.set(xlabel="update", ylabel="dL/dz", title="Gradient at the pre-activation, per update")
ax.legend()
plt.show()

# %%
# Where the sigmoid saturates
# ---------------------------
# :func:`~losskit.lab.experiments.saturation_gradients` evaluates both gradients on a grid
# of pre-activations :math:`z`. Look at target 1 on the left of the plot: there the neuron
# outputs almost 0, it is *completely wrong*, and still the MSE gradient is almost 0,
# while the cross-entropy gradient stays near :math:`a - 1 = -1`. A network stuck in that
# region with MSE barely moves.
g = saturation_gradients(np.linspace(-10.0, 10.0, 401))
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
for y, style in ((1.0, "-"), (0.0, ":")):
    ax.plot(g.z, g.mse[y], "tab:red", ls=style, label=f"MSE, target {y:g}")
    ax.plot(g.z, g.cross_entropy[y], "tab:blue", ls=style, label=f"cross-entropy, target {y:g}")
ax.axhline(0.0, color="grey", lw=0.5)
ax.set(xlabel="pre-activation z (output a = sigmoid(z))", ylabel="dL/dz",
       title="Gradient of each loss through a sigmoid output")
ax.legend()
plt.show()

far = saturation_gradients(np.array([-10.0, -5.0, 0.0]))
for i, z in enumerate(far.z):
    print(f"target 1, z = {z:5.1f} (a = {far.a[i]:.5f}):  MSE dL/dz = {far.mse[1.0][i]:+.5f}, "
          f"cross-entropy dL/dz = {far.cross_entropy[1.0][i]:+.5f}")

# %%
# The more confident the start, the worse MSE gets
# ------------------------------------------------
# The same experiment from a more confident (and more wrong) first output
# :math:`a_0 = \sigma(w_0)`. Cross-entropy's count grows slowly (its gradient stays
# :math:`a - y`); the MSE count grows roughly in proportion to :math:`1 / (1 - a_0)` once
# :math:`a_0` is close to 1, because the first updates are scaled by :math:`a_0 (1 - a_0)`.
starts = np.array([0.9, 0.95, 0.99, 0.995, 0.999])
counts = {"mse": [], "cross_entropy": []}
for a0 in starts:
    w0 = math.log(a0 / (1.0 - a0))  # sigmoid(w0) = a0
    for loss in counts:
        run = saturation(loss, w0=w0, max_steps=50_000)
        counts[loss].append(run.updates)
print(" a0      MSE  cross-entropy")
for a0, m, ce in zip(starts, counts["mse"], counts["cross_entropy"]):
    print(f"{a0:5.3f}  {m:6d}  {ce:6d}")

fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
ax.loglog(1.0 - starts, counts["mse"], "o-", color="tab:red", label="MSE")
ax.loglog(1.0 - starts, counts["cross_entropy"], "s-", color="tab:blue", label="cross-entropy")
ax.invert_xaxis()
ax.set(xlabel="1 - a0 (how far the first output is from saturation)",
       ylabel="updates to reach the threshold", title="Updates needed against the starting output")
ax.legend()
plt.show()

# %%
# What to remember
# ----------------
# Pair a sigmoid (or softmax) output with cross-entropy, not with the squared error: the
# log in the loss cancels the saturating derivative of the output, so the gradient is
# "prediction minus target" and is largest when the prediction is most wrong.
# (With the bias trained as well the step on :math:`z` doubles and the counts become
# :math:`143` and :math:`26`: ``saturation(loss, train_bias=True)``.)
print("with the bias trained too:",
      saturation("mse", train_bias=True).updates, "and",
      saturation("cross_entropy", train_bias=True).updates, "updates")
