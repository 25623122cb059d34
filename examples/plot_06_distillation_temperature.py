r"""
Distillation: what the temperature does
=======================================

In knowledge distillation (Hinton, Vinyals and Dean, 2015) a small *student* network is
trained to match the output distribution of a large *teacher*. Both softmaxes are taken
at a temperature :math:`T`:

.. math::

    p = \operatorname{softmax}(t / T), \quad q = \operatorname{softmax}(z / T), \qquad
    \ell = T^2\, D_{\mathrm{KL}}(p \,\|\, q), \qquad
    \frac{\partial \ell}{\partial z} = T\,(q - p)

with teacher logits :math:`t` and student logits :math:`z`; this is
``lk.softmax_kl_divergence(student_logits, teacher_logits, temperature=T)``. A higher
temperature softens the teacher's distribution and exposes what it "knows" beyond the top
class (which wrong classes it finds plausible); the factor :math:`T^2` keeps the size of
the gradient comparable across temperatures.

Here the teacher is a softmax classifier trained on scikit-learn's digits, and the student
the same model after only a few training steps.
"""

# %%
# A teacher and a student on the digits
# -------------------------------------
# Softmax regression trained by full-batch gradient descent with
# ``lk.softmax_cross_entropy``: 300 steps for the teacher, 3 for the student.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import losskit as lk

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, random_state=0, stratify=y)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)


def fit_softmax_regression(steps, lr=0.5, seed=0):
    rng = np.random.default_rng(seed)
    W, b = rng.normal(0.0, 0.01, size=(64, 10)), np.zeros(10)
    for _ in range(steps):
        _, d_z = lk.softmax_cross_entropy.value_and_grad(X_train @ W + b, y_train)
        W -= lr * (X_train.T @ d_z)
        b -= lr * d_z.sum(axis=0)
    return W, b


(W_t, b_t), (W_s, b_s) = fit_softmax_regression(300), fit_softmax_regression(3)
teacher, student = X_test @ W_t + b_t, X_test @ W_s + b_s
for name, logits in (("teacher", teacher), ("student", student)):
    print(f"{name}: test accuracy {np.mean(np.argmax(logits, axis=1) == y_test):.3f}")

# %%
# The softened teacher
# --------------------
# The teacher's distribution over the ten digits for one test image, at several
# temperatures. At :math:`T = 1` it is almost one-hot; as :math:`T` grows the other
# classes appear, in the teacher's order of plausibility, and the distribution tends to
# uniform (entropy :math:`\ln 10 = 2.303`) as :math:`T \to \infty`.
temperatures = (1.0, 2.0, 4.0, 8.0)
i = int(np.nonzero(y_test == 3)[0][0])  # the first "3" of the test set
fig, (ax_img, ax) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=(1, 3),
                                 layout="constrained")
ax_img.imshow(scaler.inverse_transform(X_test[i:i + 1]).reshape(8, 8), cmap="gray_r")
ax_img.set(title=f"test image {i} (label {y_test[i]})", xticks=[], yticks=[])
width = 0.2
for k, T in enumerate(temperatures):
    p = lk.softmax(teacher[i] / T)
    H = float(lk.info.entropy(p))
    ax.bar(np.arange(10) + (k - 1.5) * width, p, width, label=f"T = {T:g} (entropy {H:.2f} nats)")
    top = np.argsort(p)[::-1][:3]
    print(f"T = {T:g}: top classes {top.tolist()}, "
          f"probabilities {np.round(p[top], 3).tolist()}")
ax.set_xticks(range(10))
ax.set(xlabel="digit", ylabel="teacher probability softmax(t / T)",
       title="The teacher's distribution softened by the temperature")
ax.legend()
plt.show()

# %%
# Loss and gradient against the temperature
# -----------------------------------------
# Over the whole test set, the distillation loss and the mean size of its gradient with
# respect to the student's logits, with and without the :math:`T^2` factor
# (``scale_by_temperature_squared``). Without it, the gradient shrinks like
# :math:`1/T^2` once :math:`T` is large: the soft-target term would fade away as the
# temperature rises. With it, the gradient settles to a constant (the gradient of the
# logit-matching limit below), which is Hinton et al.'s reason for the factor: the
# relative weight of the soft-target and hard-label terms stays roughly the same when
# :math:`T` is changed.
Ts = np.geomspace(0.5, 32.0, 25)
rows = {True: [], False: []}
for T in Ts:
    for scaled in rows:
        value, grad = lk.softmax_kl_divergence.value_and_grad(
            student, teacher, temperature=T, scale_by_temperature_squared=scaled,
            reduction="sum")
        rows[scaled].append((float(value) / len(y_test),
                             float(np.mean(np.linalg.norm(grad, axis=1)))))
scaled_loss, scaled_grad = np.array(rows[True]).T
plain_loss, plain_grad = np.array(rows[False]).T

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
ax1.loglog(Ts, scaled_loss, "o-", ms=3, label="T^2 KL (the default)")
ax1.loglog(Ts, plain_loss, "s-", ms=3, label="KL (scale_by_temperature_squared=False)")
ax2.loglog(Ts, scaled_grad, "o-", ms=3, label="with T^2")
ax2.loglog(Ts, plain_grad, "s-", ms=3, label="without")
high = Ts >= 4.0
ax2.loglog(Ts[high], plain_grad[-1] * (Ts[-1] / Ts[high]) ** 2, "k:", lw=2,
           label="reference slope 1/T^2")
ax1.set(xlabel="temperature T", ylabel="mean loss per image",
        title="Distillation loss, student vs teacher")
ax2.set(xlabel="temperature T", ylabel="mean || dL/dz || per image",
        title="Size of the gradient on the student's logits")
ax1.legend()
ax2.legend()
plt.show()
for T, sg, pg in zip(Ts[::6], scaled_grad[::6], plain_grad[::6]):
    print(f"T = {T:6.2f}: mean gradient norm with T^2 {sg:.4f}, without {pg:.2e}")

# %%
# The high-temperature limit: matching logits
# -------------------------------------------
# Hinton et al. show that for large :math:`T` (and logits centred on their mean) the
# distillation loss becomes a squared error between the logits,
#
# .. math::
#
#     T^2 D_{\mathrm{KL}} \to \frac{1}{2K} \sum_c \bigl((z_c - \bar z) - (t_c - \bar t)\bigr)^2,
#
# the "logit matching" of earlier model-compression work. The numbers agree as
# :math:`T` grows:
centred = ((student - student.mean(axis=1, keepdims=True))
           - (teacher - teacher.mean(axis=1, keepdims=True)))
logit_matching = float(np.mean(np.sum(centred ** 2, axis=1) / (2 * 10)))
for T in (1.0, 10.0, 100.0, 1000.0):
    v = float(lk.softmax_kl_divergence(student, teacher, temperature=T))
    print(f"T = {T:6g}: T^2 KL = {v:.5f}   (logit-matching limit {logit_matching:.5f})")

# %%
# What to remember
# ----------------
# The temperature decides how much of the teacher's knowledge about the *wrong* classes
# reaches the student: at :math:`T = 1` the soft target is nearly the hard label, at high
# :math:`T` it approaches logit matching. Keep the :math:`T^2` factor (losskit's default)
# so that the gradient keeps its size when you change :math:`T`.
