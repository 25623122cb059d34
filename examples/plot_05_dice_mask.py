r"""
Dice loss on a synthetic segmentation mask
==========================================

Segmentation predicts, for every pixel, the probability that it belongs to the object.
The soft Dice loss compares the predicted map :math:`p` with the target mask :math:`t` as
sets, through their overlap:

.. math::

    \ell = 1 - \frac{2 \sum_i p_i t_i + s}{\sum_i p_i + \sum_i t_i + s}

(``lk.dice_loss``; :math:`s` is a smoothing constant, 1 by default). It is one minus the
F1 score of the soft pixel counts. Unlike a per-pixel loss, its value does not depend on
how much background surrounds the object, which is why it is popular for small
structures in medical images.

Here the target is a disk, the prediction a blurred disk shifted off-centre, and we look
at the loss, at its gradient map, and at what happens to it and to pixel-wise binary
cross-entropy when the background grows.
"""

# %%
# A mask and a prediction
# -----------------------
# A 64x64 target: a disk of radius 14 at the centre. The model's output is given as logits,
# :math:`z = (14 - d) / 2` with :math:`d` the distance to a centre shifted by (5, 3)
# pixels, so :math:`p = \sigma(z)` is a disk of the right size, in the wrong place, with
# soft edges.
import matplotlib.pyplot as plt
import numpy as np

import losskit as lk


def disk_scene(size, radius=14.0, shift=(5.0, 3.0), softness=2.0):
    """Target disk at the centre of a size x size image; logits of a shifted soft disk."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    c = size / 2
    target = ((xx - c) ** 2 + (yy - c) ** 2 <= radius ** 2).astype(np.float64)
    logits = (radius - np.hypot(xx - c - shift[0], yy - c - shift[1])) / softness
    return target, logits


target, logits = disk_scene(64)
prob = lk.sigmoid(logits)

# the loss takes a batch: shape (N, H, W), no class axis (axis=None)
value, grad_p = lk.dice_loss.value_and_grad(prob[None], target[None], axis=None)
grad_p = grad_p[0]
overlap = 2 * np.sum(prob * target) / (prob.sum() + target.sum())
print(f"target pixels {int(target.sum())}, predicted mass {prob.sum():.1f}, "
      f"Dice coefficient {overlap:.4f}")
print(f"Dice loss {float(value):.4f}")

# %%
# The gradient of the Dice loss has only two values
# -------------------------------------------------
# Writing :math:`I = \sum p t` and :math:`D = \sum p + \sum t + s`,
#
# .. math::
#
#     \frac{\partial \ell}{\partial p_i} = \frac{(2I + s) - 2 t_i D}{D^2},
#
# which depends on the pixel only through :math:`t_i`: one negative value on the object
# (raise :math:`p` there) and one positive value on the background (lower it), *whatever
# the prediction at that pixel*. Through the sigmoid (``from_logits="sigmoid"``, the
# gradient with respect to the logits) it is multiplied by :math:`p(1-p)`, so it lives on
# the predicted edge. Binary cross-entropy's logit gradient :math:`p - t` is, by contrast,
# "how wrong is this pixel".
print("distinct values of dL/dp:", np.unique(np.round(grad_p, 10)))
_, grad_z = lk.dice_loss.value_and_grad(logits[None], target[None], axis=None,
                                        from_logits="sigmoid")
bce, grad_bce = lk.sigmoid_binary_cross_entropy.value_and_grad(logits, target)
print(f"pixel-wise binary cross-entropy (mean) {float(bce):.4f}")


def show_signed(ax, image, title):
    limit = np.abs(image).max()
    im = ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.contour(target, levels=[0.5], colors="k", linewidths=0.8)
    ax.set(title=title, xticks=[], yticks=[])
    fig.colorbar(im, ax=ax, shrink=0.8, format="%.0e")


fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), layout="constrained")
axes[0, 0].imshow(target, cmap="gray")
axes[0, 0].set(title="target mask t", xticks=[], yticks=[])
im = axes[0, 1].imshow(prob, cmap="viridis", vmin=0, vmax=1)
axes[0, 1].contour(target, levels=[0.5], colors="w", linewidths=0.8)
axes[0, 1].set(title="prediction p = sigmoid(z) (white: target edge)", xticks=[], yticks=[])
fig.colorbar(im, ax=axes[0, 1], shrink=0.8)
axes[0, 2].imshow(np.stack([target, prob, np.zeros_like(prob)], axis=-1))
axes[0, 2].set(title="overlay: red target, green prediction", xticks=[], yticks=[])
show_signed(axes[1, 0], grad_p, "Dice: dL/dp (two values)")
show_signed(axes[1, 1], grad_z[0], "Dice: dL/dz through the sigmoid")
show_signed(axes[1, 2], grad_bce, "binary cross-entropy: dL/dz = (p - t) / N")
fig.suptitle(f"Dice loss {float(value):.3f} on a shifted, blurred prediction "
             "(red: lower p, blue: raise p; black line: target edge)")
plt.show()

# %%
# More background, same Dice
# ---------------------------
# Put the same object and the same prediction in larger and larger images and slide the
# prediction away from the target. Dice sums over the object and the prediction, so the
# empty background adds (almost) nothing to it: its curve is the same for every image size.
# The *mean* binary cross-entropy averages over all pixels, most of them easy background,
# so the same mistake costs less and less as the image grows: on a small object in a large
# image, a per-pixel mean loss is dominated by the background.
sizes = (64, 128, 256)
offsets = np.arange(0.0, 31.0, 2.0)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for size in sizes:
    dice_curve, bce_curve = [], []
    for dx in offsets:
        t, z = disk_scene(size, shift=(dx, 0.0))
        dice_curve.append(float(lk.dice_loss(z[None], t[None], axis=None, from_logits="sigmoid")))
        bce_curve.append(float(lk.sigmoid_binary_cross_entropy(z, t)))
    ax1.plot(offsets, dice_curve, "o-", ms=3, label=f"{size} x {size} image")
    ax2.plot(offsets, bce_curve, "o-", ms=3, label=f"{size} x {size} image")
    print(f"{size:3d} x {size:<3d}  offset 10 px: Dice loss {dice_curve[5]:.4f}, "
          f"mean BCE {bce_curve[5]:.4f}")
ax1.set(xlabel="offset of the prediction (pixels)", ylabel="Dice loss",
        title="Dice loss: the background does not count")
ax2.set(xlabel="offset of the prediction (pixels)", ylabel="mean binary cross-entropy",
        title="Mean BCE: diluted by the background")
ax1.legend()
ax2.legend()
plt.show()

# %%
# What to remember
# ----------------
# Dice measures overlap, so it is indifferent to the number of background pixels, a
# strength for small objects. Its gradient is a global quantity (two values over the whole
# image, set by the current overlap), not a per-pixel error signal, and it saturates once
# prediction and target no longer overlap (the curves of the left panel flatten towards 1).
# In practice it is often combined with a per-pixel loss: Dice for the overlap, binary
# cross-entropy for a well-behaved per-pixel gradient. ``lk.tversky_loss`` and
# ``lk.jaccard_loss`` are its relatives.
