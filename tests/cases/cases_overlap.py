"""Overlap losses (dice_loss, tversky_loss, jaccard_loss) for the generic suite.

The references are written here from the published formulas, in the layout MONAI and
segmentation_models_pytorch use (classes on axis 1, sums over the flattened spatial axes,
then a mean over classes): Milletari et al. 2016 (Dice, squared denominator), Sudre et al.
2017 (Dice, plain sums), Salehi et al. 2017 (Tversky: TP, FP = sum p(1-t), FN = sum (1-p)t),
Rahman and Wang 2016 (soft IoU). Channels-last softmax cases are also checked against
``optax.losses.dice_loss``, whose (alpha, beta, smooth) index is Tversky's. No expected
number comes from losskit.
"""

from __future__ import annotations

import numpy as np

from loss_cases import Case, _jreduce, _reduce_torch
from losskit.losses.overlap import dice_loss, jaccard_loss, tversky_loss

N, C, H, W = 4, 3, 4, 3


# ---------------------------------------------------------------- input generators
def _probs(rng, shape):
    return 0.05 + 0.9 * rng.random(size=shape)


def _onehot_np(labels, k, axis):
    return np.moveaxis(np.eye(k)[labels], -1, axis)


def seg_probs(shape=(N, C, H, W), axis=1, soft=False):
    """Probabilities and a one-hot (or soft, [0, 1]) target of the same shape."""
    def make(rng):
        p = _probs(rng, shape)
        if axis is None:
            t = rng.random(size=shape) if soft else (rng.random(size=shape) > 0.5) * 1.0
            return p, t
        if soft:
            return p, rng.random(size=shape)
        ax = axis % len(shape)
        lshape = shape[:ax] + shape[ax + 1:]
        return p, _onehot_np(rng.integers(0, shape[ax], size=lshape), shape[ax], ax)
    return make


def seg_logits(shape=(N, C, H, W), axis=1):
    def make(rng):
        z = rng.normal(scale=2.0, size=shape)
        if axis is None:
            return z, (rng.random(size=shape) > 0.5) * 1.0
        ax = axis % len(shape)
        lshape = shape[:ax] + shape[ax + 1:]
        return z, _onehot_np(rng.integers(0, shape[ax], size=lshape), shape[ax], ax)
    return make


def seg_labels(shape=(N, C, H, W), logits=False, ignore=None):
    """Probabilities (or logits) with classes on axis 1 and integer labels (N, H, W)."""
    def make(rng):
        x = rng.normal(scale=2.0, size=shape) if logits else _probs(rng, shape)
        y = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
        if ignore is not None:
            y.flat[::4] = ignore
        return x, y
    return make


# ---------------------------------------------------------------- references
def _index(kind, p, t, tp, s, squared, alpha, beta, sum_):
    """The published overlap index of maps flattened to (N, G, M), summed over the last axis."""
    if kind == "dice":
        size = sum_(p ** 2) + sum_(t ** 2) if squared else sum_(p) + sum_(t)
        return (2 * tp + s) / (size + s)
    if kind == "tversky":
        fp, fn = sum_(p * (1 - t)), sum_((1 - p) * t)
        return (tp + s) / (tp + alpha * fp + beta * fn + s)
    size = sum_(p ** 2) + sum_(t ** 2) if squared else sum_(p) + sum_(t)
    return (tp + s) / (size - tp + s)


def t_overlap(kind, *, smooth=1.0, squared=False, alpha=0.5, beta=0.5, mode="per_class",
              axis=1, from_logits=False, ignore_index=None):
    def ref(p, t, r, torch):
        n = p.shape[0]
        if from_logits == "sigmoid":
            p = torch.sigmoid(p)
        elif from_logits == "softmax":
            p = torch.softmax(p, dim=axis)
        if axis is None:
            p, t = p.unsqueeze(1), t.unsqueeze(1)
        else:
            p = torch.movedim(p, axis, 1)
            if t.dtype.is_floating_point:
                t = torch.movedim(t, axis, 1)
            else:  # labels: one-hot on axis 1, ignored positions dropped from both maps
                k = p.shape[1]
                keep = torch.ones_like(t, dtype=torch.bool) if ignore_index is None \
                    else t != ignore_index
                safe = torch.where(keep, t, torch.zeros_like(t))
                t = torch.movedim(torch.nn.functional.one_hot(safe, k), -1, 1).to(p.dtype)
                t = t * keep.unsqueeze(1)
                p = p * keep.unsqueeze(1)
        groups = 1 if mode == "global" else p.shape[1]
        p = p.reshape(n, groups, -1)
        t = t.reshape(n, groups, -1)
        tp = (p * t).sum(-1)
        idx = _index(kind, p, t, tp, smooth, squared, alpha, beta, lambda x: x.sum(-1))
        return _reduce_torch((1 - idx).mean(1), r, n)
    return ref


def j_overlap(kind, *, smooth=1.0, squared=False, alpha=0.5, beta=0.5, mode="per_class",
              axis=1, from_logits=False):
    def ref(p, t, r):
        import jax
        import jax.numpy as jnp
        n = p.shape[0]
        if from_logits == "sigmoid":
            p = jax.nn.sigmoid(p)
        elif from_logits == "softmax":
            p = jax.nn.softmax(p, axis=axis)
        if axis is None:
            p, t = p[:, None], t[:, None]
        else:
            p, t = jnp.moveaxis(p, axis, 1), jnp.moveaxis(t, axis, 1)
        groups = 1 if mode == "global" else p.shape[1]
        p = p.reshape(n, groups, -1)
        t = t.reshape(n, groups, -1)
        tp = (p * t).sum(-1)
        idx = _index(kind, p, t, tp, smooth, squared, alpha, beta, lambda x: x.sum(-1))
        return _jreduce((1 - idx).mean(1), r, n)
    return ref


def j_optax_tversky(*, alpha, beta, smooth):
    """optax.losses.dice_loss on channels-last logits: per example, mean over classes."""
    def ref(z, t, r):
        import optax
        v = optax.losses.dice_loss(z, t, alpha=alpha, beta=beta, smooth=smooth)
        return _jreduce(v, r, z.shape[0])
    return ref


LAST = (N, H, W, C)

CASES = [
    # ------------------------------------------------------------ dice_loss
    Case("dice", dice_loss, seg_probs(), t_overlap("dice"), j_overlap("dice"),
         on_every_backend=True),
    Case("dice-soft-target", dice_loss, seg_probs(soft=True), t_overlap("dice"),
         j_overlap("dice")),
    Case("dice-squared-vnet", dice_loss, seg_probs(), t_overlap("dice", squared=True,
                                                                smooth=0.5),
         j_overlap("dice", squared=True, smooth=0.5),
         options={"squared": True, "smooth": 0.5}),
    Case("dice-smooth0", dice_loss, seg_probs(soft=True), t_overlap("dice", smooth=0.0),
         options={"smooth": 0.0}),
    Case("dice-global", dice_loss, seg_probs(), t_overlap("dice", mode="global"),
         j_overlap("dice", mode="global"), options={"mode": "global"}),
    Case("dice-binary-no-class-axis", dice_loss, seg_probs((N, 5, 4), axis=None),
         t_overlap("dice", axis=None), j_overlap("dice", axis=None), options={"axis": None}),
    Case("dice-sigmoid-multilabel", dice_loss, seg_logits(),
         t_overlap("dice", from_logits="sigmoid"), j_overlap("dice", from_logits="sigmoid"),
         options={"from_logits": "sigmoid"}),
    # optax's (alpha = beta = 1/2, smooth = s/2) index is Dice with smoothing s
    Case("dice-softmax-channels-last", dice_loss, seg_logits(LAST, axis=-1),
         t_overlap("dice", axis=-1, from_logits="softmax"),
         j_optax_tversky(alpha=0.5, beta=0.5, smooth=0.5),
         options={"axis": -1, "from_logits": "softmax"}),
    Case("dice-labels", dice_loss, seg_labels(), t_overlap("dice")),
    Case("dice-labels-softmax-ignore", dice_loss, seg_labels(logits=True, ignore=255),
         t_overlap("dice", from_logits="softmax", ignore_index=255),
         options={"from_logits": "softmax", "ignore_index": 255}),
    # ------------------------------------------------------------ tversky_loss
    Case("tversky", tversky_loss, seg_probs(),
         t_overlap("tversky", alpha=0.3, beta=0.7), j_overlap("tversky", alpha=0.3, beta=0.7),
         options={"alpha": 0.3, "beta": 0.7}, on_every_backend=True),
    Case("tversky-soft-target-smooth0", tversky_loss, seg_probs(soft=True),
         t_overlap("tversky", alpha=0.8, beta=0.4, smooth=0.0),
         j_overlap("tversky", alpha=0.8, beta=0.4, smooth=0.0),
         options={"alpha": 0.8, "beta": 0.4, "smooth": 0.0}),
    Case("tversky-softmax-channels-last", tversky_loss, seg_logits(LAST, axis=-1),
         t_overlap("tversky", alpha=0.2, beta=0.8, smooth=0.7, axis=-1,
                   from_logits="softmax"),
         j_optax_tversky(alpha=0.2, beta=0.8, smooth=0.7),
         options={"alpha": 0.2, "beta": 0.8, "smooth": 0.7, "axis": -1,
                  "from_logits": "softmax"}),
    Case("tversky-global-sigmoid", tversky_loss, seg_logits(),
         t_overlap("tversky", alpha=0.6, beta=0.9, mode="global", from_logits="sigmoid"),
         j_overlap("tversky", alpha=0.6, beta=0.9, mode="global", from_logits="sigmoid"),
         options={"alpha": 0.6, "beta": 0.9, "mode": "global", "from_logits": "sigmoid"}),
    Case("tversky-labels-ignore", tversky_loss, seg_labels(ignore=-1),
         t_overlap("tversky", alpha=0.3, beta=0.7, ignore_index=-1),
         options={"alpha": 0.3, "beta": 0.7, "ignore_index": -1}),
    # ------------------------------------------------------------ jaccard_loss
    Case("jaccard", jaccard_loss, seg_probs(), t_overlap("jaccard"), j_overlap("jaccard"),
         on_every_backend=True),
    Case("jaccard-soft-target-smooth0", jaccard_loss, seg_probs(soft=True),
         t_overlap("jaccard", smooth=0.0), j_overlap("jaccard", smooth=0.0),
         options={"smooth": 0.0}),
    Case("jaccard-squared", jaccard_loss, seg_probs(soft=True),
         t_overlap("jaccard", squared=True, smooth=0.25),
         j_overlap("jaccard", squared=True, smooth=0.25),
         options={"squared": True, "smooth": 0.25}),
    Case("jaccard-global-binary", jaccard_loss, seg_probs((N, 6), axis=None),
         t_overlap("jaccard", axis=None, mode="global"),
         j_overlap("jaccard", axis=None, mode="global"),
         options={"axis": None, "mode": "global"}),
    Case("jaccard-channels-last-softmax", jaccard_loss, seg_logits(LAST, axis=-1),
         t_overlap("jaccard", axis=-1, from_logits="softmax"),
         j_overlap("jaccard", axis=-1, from_logits="softmax"),
         options={"axis": -1, "from_logits": "softmax"}),
    Case("jaccard-labels-ignore-in-range", jaccard_loss, seg_labels(ignore=0),
         t_overlap("jaccard", ignore_index=0), options={"ignore_index": 0}),
]
