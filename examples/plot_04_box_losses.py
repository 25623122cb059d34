r"""
The IoU family of box losses on one pair of boxes
=================================================

A detector predicts boxes :math:`(x_1, y_1, x_2, y_2)`; the IoU losses compare a predicted
box with its target through their overlap,
:math:`\mathrm{IoU} = |B \cap B^g| / |B \cup B^g|`, and :math:`\ell_{IoU} = 1 - \mathrm{IoU}`.
Plain IoU has a flaw that the later members of the family each repair in their own way:
when the boxes do not overlap, IoU is 0 *whatever their distance*, so its gradient is 0
and a far-away prediction gets no signal. GIoU adds the empty part of the smallest
enclosing box, DIoU the distance between the centres, CIoU also the aspect ratio, EIoU the
width and height, SIoU the direction of the offset, MPDIoU the corner distances, WIoU a
distance-based weight; Inner-IoU computes the IoU of scaled copies of the boxes and
Focal-EIoU weights EIoU by the overlap.

This example moves one predicted box across one target and reads every loss of the family,
``lk.catalog("boxes")``, with its closed-form gradient.
"""

# %%
# The family
# ----------
# Every box loss of the catalog, with the first sentence of its ``when_to_use``.
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import losskit as lk

box_losses = lk.catalog("boxes")
for loss in box_losses:
    print(f"{loss.name:16s} {loss.when_to_use.split(': ')[0].split('. ')[0]}")

# MPDIoU normalises its corner distances by the image size: give it one.
OPTIONS = {"mpdiou_loss": {"image_size": (20.0, 12.0)}}

# %%
# The boxes
# ---------
# The target is 4 wide and 3 high. The prediction has the same size and slides
# horizontally, its centre 0.5 above the target's (so that the offset is never purely
# along one axis), from 8 to the left of the target to 8 to the right. All 401 positions
# go into one call of each loss, as a batch of shape ``(401, 4)``, with
# ``reduction="none"`` to get one value per position.
target_box = np.array([8.0, 4.0, 12.0, 7.0])
shifts = np.linspace(-8.0, 8.0, 401)
predicted = target_box + np.array([1.0, 0.0, 1.0, 0.0]) * shifts[:, None] + [0.0, 0.5, 0.0, 0.5]
targets = np.broadcast_to(target_box, predicted.shape).copy()

fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
ax.add_patch(Rectangle(target_box[:2], 4, 3, fill=False, lw=2.5, ec="k", label="target"))
for shift, colour in ((-6.0, "tab:red"), (-2.0, "tab:orange"), (0.0, "tab:green")):
    x1, y1, x2, y2 = target_box + [shift, 0.5, shift, 0.5]
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ls="--", lw=1.5,
                           ec=colour, label=f"prediction, shift {shift:+g}"))
ax.set(xlim=(0, 20), ylim=(2, 9), aspect="equal", xlabel="x", ylabel="y",
       title="The target and three positions of the sliding prediction")
ax.legend(loc="upper right", fontsize="small")
plt.show()

# %%
# Value and gradient along the slide
# ----------------------------------
# Left: each loss against the horizontal shift. Right: the derivative of each loss with
# respect to the shift, which is the sum of the gradient's :math:`x_1` and :math:`x_2`
# components (moving the box moves both). Notice:
#
# * ``iou_loss`` is exactly 1 once the boxes no longer overlap (:math:`|{\rm shift}| \ge
#   4`), and its gradient is exactly 0 there; so is ``inner_iou_loss``'s, even earlier
#   (its scaled-down boxes stop overlapping first), and ``focal_eiou_loss`` is 0 there:
#   its weight :math:`\mathrm{IoU}^\gamma` vanishes.
# * the losses with a distance or enclosing-box term keep rising with the distance, so
#   their gradient still points the prediction towards the target.
# * the boxes have the same size, so CIoU's aspect term and EIoU's width and height terms
#   are 0: along this slide both coincide with DIoU (their lines lie on top of each other).
# * at shift 0 the boxes are aligned in :math:`x`: every loss has a minimum there (the
#   lowest value along the slide for all but ``focal_eiou_loss``, which is 0 far away), a
#   kink where the derivative jumps from negative to positive.
values, slopes = {}, {}
for loss in box_losses:
    value, grad = loss.value_and_grad(predicted, targets, reduction="none",
                                      **OPTIONS.get(loss.name, {}))
    values[loss.name] = value
    slopes[loss.name] = grad[:, 0] + grad[:, 2] + 0.0  # d loss / d shift (+ 0.0: no -0.0)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
styles = ["-", "--", "-.", ":"]
for i, loss in enumerate(box_losses):
    ax1.plot(shifts, values[loss.name], ls=styles[i % 4], label=loss.name)
    ax2.plot(shifts, slopes[loss.name], ls=styles[i % 4], label=loss.name)
for ax in (ax1, ax2):
    ax.axvspan(-8, -4, color="grey", alpha=0.12)
    ax.axvspan(4, 8, color="grey", alpha=0.12)
    ax.set_xlabel("horizontal shift of the prediction (grey: no overlap)")
ax1.set(ylabel="loss", title="Box losses as the prediction slides across the target")
ax2.set(ylabel="d loss / d shift", title="Their derivative along the slide")
ax2.axhline(0.0, color="k", lw=0.5)
fig.legend(*ax1.get_legend_handles_labels(), loc="outside lower center", ncol=5,
           fontsize="small")
plt.show()

# %%
# The numbers at the three positions drawn above:
at = {s: int(np.argmin(np.abs(shifts - s))) for s in (-6.0, -2.0, 0.0)}
print(f"{'loss':16s}" + "".join(f"  shift {s:+g}: value  slope" for s in at))
for loss in box_losses:
    print(f"{loss.name:16s}" + "".join(
        f"   {values[loss.name][i]:12.4f} {slopes[loss.name][i]:+7.4f}" for i in at.values()))

# %%
# Changing the shape instead of the position
# ------------------------------------------
# Now the prediction keeps the target's centre and height but its width is the target's
# times a factor from 1/4 to 4. IoU reacts only through the overlap; CIoU's aspect-ratio
# term, EIoU's width term, SIoU's shape cost and MPDIoU's corner distances add their own
# penalty. At factor 1, the target itself, every loss is 0 up to the ``eps=1e-7`` that the
# box losses add to their denominators (torchvision's convention): the :math:`10^{-8}`
# printed below.
factors = np.geomspace(0.25, 4.0, 201)
cx, cy, w_t, h_t = 10.0, 5.5, 4.0, 3.0
widths = w_t * factors
resized = np.stack([cx - widths / 2, np.full_like(widths, cy - h_t / 2),
                    cx + widths / 2, np.full_like(widths, cy + h_t / 2)], axis=1)
targets = np.broadcast_to(target_box, resized.shape).copy()

fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
for i, loss in enumerate(box_losses):
    value = loss(resized, targets, reduction="none", **OPTIONS.get(loss.name, {}))
    ax.semilogx(factors, value, ls=styles[i % 4], label=loss.name)
    print(f"{loss.name:16s} width x0.5: {value[np.argmin(np.abs(factors - 0.5))]:.4f}   "
          f"x1: {value[np.argmin(np.abs(factors - 1.0))]:.2e}   "
          f"x2: {value[np.argmin(np.abs(factors - 2.0))]:.4f}")
ax.set(xlabel="predicted width / target width (log scale; same centre and height)",
       ylabel="loss", title="Box losses against a wrong width")
ax.set_xticks([0.25, 0.5, 1.0, 2.0, 4.0], labels=["1/4", "1/2", "1", "2", "4"])
ax.set_xticks([], minor=True)
ax.legend(fontsize="small", ncol=2, loc="upper center")
plt.show()

# %%
# What to remember
# ----------------
# Use plain IoU loss only where predictions already overlap their targets; otherwise pick
# a member with a term that does not vanish for disjoint boxes (GIoU, DIoU, CIoU, EIoU,
# SIoU, MPDIoU, WIoU). The members differ in *which* mismatch they penalise beyond the
# overlap: centre distance, aspect ratio, absolute size, direction, corners. Every loss's
# page in this documentation gives its formula and gradient.
