r"""
Checking the gradient of your own loss with ``gradcheck``
=========================================================

Every loss in losskit comes with a hand-derived, closed-form gradient, and the test-suite
checks each one against finite differences with :func:`losskit.gradcheck`. The same tool
checks a loss you write yourself: give it the function, the point, and your gradient
(``grad=``); it compares your gradient with central differences

.. math::

    \hat g_i = \frac{f(x + h e_i) - f(x - h e_i)}{2h}

element by element, in float64, and tells you whether they agree, by how much, and where
the worst disagreement is.

Here the loss is the **pseudo-Huber** loss, a smooth version of the Huber loss:

.. math::

    \ell(y, t) = \delta^2 \left(\sqrt{1 + \left(\frac{y - t}{\delta}\right)^2} - 1\right),
    \qquad
    \frac{\partial \ell}{\partial y} = \frac{y - t}{\sqrt{1 + \left(\frac{y - t}{\delta}\right)^2}}

quadratic for small residuals, linear (slope :math:`\pm\delta`) for large ones.
"""

# %%
# The loss and two gradients
# --------------------------
# One gradient is right. The other has a typical slip: the square root forgotten in the
# denominator. For small residuals the two agree (both are about :math:`y - t`), so a
# quick test on a "typical" point can miss the bug.
import matplotlib.pyplot as plt
import numpy as np

import losskit as lk

DELTA = 1.0


def pseudo_huber(y, t, delta=DELTA):
    r = (y - t) / delta
    return np.sum(delta ** 2 * (np.sqrt(1.0 + r ** 2) - 1.0))


def pseudo_huber_grad(y, t, delta=DELTA):
    r = (y - t) / delta
    return (y - t) / np.sqrt(1.0 + r ** 2)


def pseudo_huber_grad_buggy(y, t, delta=DELTA):
    r = (y - t) / delta
    return (y - t) / (1.0 + r ** 2)  # the square root is missing


# %%
# Run the check
# -------------
# The point: 41 predictions whose residuals :math:`y - t` run from -5 to 5, around random
# targets. ``lk.gradcheck(fn, y, t, grad=...)`` differentiates with respect to the first
# argument (``wrt=0``) and passes the others through. ``print(result)`` explains the
# outcome; the result object holds the numbers.
rng = np.random.default_rng(0)
residual = np.linspace(-5.0, 5.0, 41)
t = rng.normal(size=residual.shape)
y = t + residual

good = lk.gradcheck(pseudo_huber, y, t, grad=pseudo_huber_grad)
bad = lk.gradcheck(pseudo_huber, y, t, grad=pseudo_huber_grad_buggy)
print(good)
print(bad)
print(f"correct gradient: ok={good.ok}, max abs error {good.max_abs_error:.1e}")
print(f"buggy gradient:   ok={bad.ok}, {bad.failed} of {residual.size} elements fail, "
      f"worst at residual {residual[bad.worst_index]:+.2f}")

# %%
# The bug only shows away from zero: the only element that passed is the one with residual
# 0. The two formulas differ by about :math:`r^3/2` for a small residual :math:`r`, so a
# check that used only residuals within :math:`\pm 0.001` would have let the buggy
# gradient through with the default tolerances:
t_small = t[:11]
y_small = t_small + np.linspace(-0.001, 0.001, 11)
print("buggy gradient checked on residuals within +-0.001 only: ok =",
      lk.gradcheck(pseudo_huber, y_small, t_small, grad=pseudo_huber_grad_buggy).ok)

# %%
# The per-element error
# ---------------------
# ``result.analytic`` and ``result.numeric`` are the two gradients; their difference is
# the error of each element. The correct gradient is off by :math:`10^{-8}` at most (the
# truncation and rounding error of the finite differences themselves); the buggy one by up
# to 0.8, growing with the residual. The dashed line is the tolerance each element must meet,
# ``atol + rtol * |numeric|`` (defaults :math:`10^{-8}` and :math:`10^{-5}`).
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
ax1.plot(residual, good.numeric, "k-", lw=3, alpha=0.3, label="central differences")
ax1.plot(residual, good.analytic, "o", ms=4, color="tab:blue", label="correct gradient")
ax1.plot(residual, bad.analytic, "s", ms=4, color="tab:red", label="buggy gradient (no sqrt)")
ax1.set(xlabel="residual y - t", ylabel="d loss / d y",
        title="Pseudo-Huber gradient: analytic against numeric")
ax1.legend()

floor = 1e-16  # a zero error cannot be drawn on a log scale
ax2.semilogy(residual, np.maximum(np.abs(good.analytic - good.numeric), floor), "o-", ms=4,
             color="tab:blue", label=f"correct gradient (ok={good.ok})")
ax2.semilogy(residual, np.maximum(np.abs(bad.analytic - bad.numeric), floor), "s-", ms=4,
             color="tab:red", label=f"buggy gradient (ok={bad.ok})")
ax2.semilogy(residual, bad.atol + bad.rtol * np.abs(bad.numeric), "k--", label="tolerance")
ax2.set(xlabel="residual y - t", ylabel="|analytic - numeric| (log scale)",
        title="Per-element error reported by gradcheck")
ax2.legend()
plt.show()

# %%
# The loss itself, next to losskit's Huber
# ----------------------------------------
# With :math:`\delta = 1`, pseudo-Huber follows ``lk.huber`` closely: quadratic near 0,
# linear far away, but smooth everywhere, while the Huber loss switches from one to the
# other at :math:`|y - t| = \delta`. ``lk.huber`` is a ``Loss``, so ``gradcheck`` finds its
# gradient by itself (``fn.grad``), and options such as ``delta`` pass through.
r = np.linspace(-4.0, 4.0, 201)
zeros = np.zeros_like(r)
huber = lk.huber(r, zeros, delta=DELTA, reduction="none")
pseudo = DELTA ** 2 * (np.sqrt(1.0 + (r / DELTA) ** 2) - 1.0)
print(lk.gradcheck(lk.huber, y, t, delta=DELTA))

fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
ax.plot(r, huber, label="lk.huber, delta = 1")
ax.plot(r, pseudo, "--", label="pseudo-Huber, delta = 1 (ours)")
ax.plot(r, 0.5 * r ** 2, ":", color="grey", label="1/2 r^2")
ax.set(xlabel="residual r = y - t", ylabel="loss", ylim=(0, 4),
       title="Pseudo-Huber: a smooth Huber loss")
ax.legend()
plt.show()

# %%
# Kinks are handled
# -----------------
# At a point where the loss has no derivative (the absolute value at 0, the hinge at its
# margin), any subgradient is a correct answer, but it need not match the central
# difference. ``gradcheck`` re-examines such an element with smaller steps and accepts a
# valid subgradient, counting it in ``kinks``. The absolute error, checked at a point with
# an exact zero residual, with the subgradient :math:`\operatorname{sign}(0) = 0`, and
# with the equally valid choice 1. The first equals the central difference (the average of
# the two one-sided slopes, 0) and passes directly; the second is accepted as a
# subgradient and counted as a kink.
y_kink = np.array([-1.0, 0.0, 2.0])
for name, g in (("sign(r)", np.sign), ("sign(r), 1 at 0", lambda r: np.where(r >= 0, 1.0, -1.0))):
    res = lk.gradcheck(lambda r: np.sum(np.abs(r)), y_kink, grad=g)
    print(f"|r| with subgradient {name:16s}: ok={res.ok}, kinks={res.kinks}")

# %%
# What to remember
# ----------------
# Before training with a loss whose gradient you derived by hand, run
# ``lk.gradcheck(loss, prediction, target, grad=your_gradient)`` at points that cover the
# whole range the loss will see, large residuals and saturated regions included, not just
# one typical point. Keep the arrays small: the check costs two evaluations of the loss
# per element.
