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


# ================================================================ catalog, part 2
# class_weight and log_loss on the three indices, focal_tversky_loss (Abraham & Khan 2019),
# generalized_dice_loss (Sudre et al. 2017, with MONAI's replacement of the infinite weight
# of an absent class by the example's largest weight), mcc_loss (the soft confusion counts
# of smp's losses/mcc.py, per example and class) and the Lovasz losses (Berman et al. 2018,
# pytorch/lovasz_losses.py: the torch references below are that code's loops written out,
# the JAX ones the same algorithm on rows). No expected number comes from losskit.
from losskit.losses.lovasz import lovasz_hinge, lovasz_softmax  # noqa: E402
from losskit.losses.overlap import (focal_tversky_loss, generalized_dice_loss,  # noqa: E402
                                    mcc_loss)

SMALL2 = (3, 3, 4, 4)


def _groups_torch(p, t, torch, *, mode="per_class", axis=1, from_logits=False,
                  ignore_index=None):
    """(N, G, M) maps (and the kept mask) as the overlap losses group them, in torch."""
    n = p.shape[0]
    if from_logits == "sigmoid":
        p = torch.sigmoid(p)
    elif from_logits == "softmax":
        p = torch.softmax(p, dim=axis)
    keep = None
    if axis is None:
        p, t = p.unsqueeze(1), t.unsqueeze(1)
    else:
        p = torch.movedim(p, axis, 1)
        if t.dtype.is_floating_point:
            t = torch.movedim(t, axis, 1)
        else:
            k = p.shape[1]
            keep = torch.ones_like(t, dtype=torch.bool) if ignore_index is None \
                else t != ignore_index
            safe = torch.where(keep, t, torch.zeros_like(t))
            t = torch.movedim(torch.nn.functional.one_hot(safe, k), -1, 1).to(p.dtype)
            keep = keep.unsqueeze(1).expand_as(p)
            t, p = t * keep, p * keep
    groups = 1 if mode == "global" else p.shape[1]
    keep = torch.ones_like(p) if keep is None else keep.to(p.dtype)
    return (p.reshape(n, groups, -1), t.reshape(n, groups, -1), keep.reshape(n, groups, -1))


def t_overlap2(kind, *, smooth=1.0, alpha=0.5, beta=0.5, gamma=1.0, class_weight=None,
               log_loss=False, eps=1e-5, weight_type="square", **layout):
    def ref(p, t, r, torch):
        n = p.shape[0]
        p, t, keep = _groups_torch(p, t, torch, **layout)
        tp = (p * t).sum(-1)
        if kind == "gdl":  # Sudre et al.: one weighted index per example
            vol = t.sum(-1)
            w = {"square": 1 / vol ** 2, "simple": 1 / vol, "uniform": vol ** 0}[weight_type]
            absent = torch.isinf(w)
            w = torch.where(absent, torch.zeros_like(w), w)
            w = w + absent * w.max(1, keepdim=True).values  # MONAI's replacement
            num = 2 * (w * tp).sum(1) + smooth
            return _reduce_torch(1 - num / ((w * (p.sum(-1) + vol)).sum(1) + smooth), r, n)
        if kind == "mcc":  # smp losses/mcc.py counts, one index per group
            tp = tp + eps
            fp = (p * (1 - t)).sum(-1) + eps
            fn = ((1 - p) * t).sum(-1) + eps
            tn = (keep * (1 - p) * (1 - t)).sum(-1) + eps
            den = torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
            return _reduce_torch((1 - (tp * tn - fp * fn) / den).mean(1), r, n)
        if kind == "dice":
            idx = (2 * tp + smooth) / (p.sum(-1) + t.sum(-1) + smooth)
        elif kind == "jaccard":
            idx = (tp + smooth) / (p.sum(-1) + t.sum(-1) - tp + smooth)
        else:
            fp, fn = (p * (1 - t)).sum(-1), ((1 - p) * t).sum(-1)
            idx = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
        loss = -torch.log(idx.clamp_min(1e-7)) if log_loss else (1 - idx) ** gamma
        if class_weight is not None:
            loss = loss * torch.as_tensor(class_weight, dtype=loss.dtype)
        return _reduce_torch(loss.mean(1), r, n)
    return ref


def j_overlap2(kind, *, smooth=1.0, alpha=0.5, beta=0.5, gamma=1.0, eps=1e-5):
    """JAX: probabilities and masks (N, C, *spatial), per class."""
    def ref(p, t, r):
        import jax.numpy as jnp
        n, c = p.shape[:2]
        p, t = p.reshape(n, c, -1), t.reshape(n, c, -1)
        tp, ps, ts = (p * t).sum(-1), p.sum(-1), t.sum(-1)
        if kind == "gdl":
            w = jnp.where(ts > 0, 1 / jnp.where(ts > 0, ts, 1.0) ** 2, 0.0)
            w = jnp.where(ts > 0, w, w.max(1, keepdims=True))
            v = 1 - (2 * (w * tp).sum(1) + smooth) / ((w * (ps + ts)).sum(1) + smooth)
            return _jreduce(v, r, n)
        if kind == "mcc":
            m = p.shape[-1]
            tp_, fp, fn = tp + eps, ps - tp + eps, ts - tp + eps
            tn = m - ps - ts + tp + eps
            mcc = (tp_ * tn - fp * fn) / jnp.sqrt((tp_ + fp) * (tp_ + fn) * (tn + fp) * (tn + fn))
            return _jreduce((1 - mcc).mean(1), r, n)
        idx = (tp + smooth) / (tp + alpha * (ps - tp) + beta * (ts - tp) + smooth)
        return _jreduce(((1 - idx) ** gamma).mean(1), r, n)
    return ref


def _berman_grad_torch(y, torch):
    """Berman's lovasz_grad on one row of sorted 0/1 labels (float)."""
    gts = y.sum()
    jac = 1.0 - (gts - y.cumsum(0)) / (gts + (1 - y).cumsum(0))
    if len(y) > 1:
        jac = torch.cat([jac[:1], jac[1:] - jac[:-1]])
    return jac


def t_lovasz_hinge(*, ignore_index=None):
    def ref(z, y, r, torch):
        losses = []
        for zi, yi in zip(z, y):  # per_image=True
            zi, yi = zi.reshape(-1), yi.reshape(-1)
            if ignore_index is not None:
                zi, yi = zi[yi != ignore_index], yi[yi != ignore_index]
            if len(yi) == 0:
                losses.append(zi.sum() * 0.0)
                continue
            yf = yi.to(zi.dtype)
            err, perm = torch.sort(1.0 - zi * (2 * yf - 1), descending=True)
            losses.append(torch.dot(torch.relu(err), _berman_grad_torch(yf[perm], torch)))
        return _reduce_torch(torch.stack(losses), r, z.shape[0])
    return ref


def t_lovasz_softmax(*, classes="present", from_logits=False, ignore_index=None):
    def ref(p, y, r, torch):
        if from_logits:
            p = torch.softmax(p, dim=1)
        c = p.shape[1]
        losses = []
        for pi, yi in zip(p, y):  # per_image=True
            pi, yi = pi.reshape(c, -1).T, yi.reshape(-1)
            if ignore_index is not None:
                pi, yi = pi[yi != ignore_index], yi[yi != ignore_index]
            per = []
            for k in (range(c) if classes in ("all", "present") else classes):
                fg = (yi == k).to(p.dtype)
                if classes == "present" and fg.sum() == 0:
                    continue
                err, perm = torch.sort((fg - pi[:, k]).abs(), descending=True)
                per.append(torch.dot(err, _berman_grad_torch(fg[perm], torch)))
            losses.append(sum(per) / len(per) if per else p.sum() * 0.0)
        return _reduce_torch(torch.stack(losses), r, p.shape[0])
    return ref


def _jax_lovasz_rows(err, fg):
    import jax.numpy as jnp
    order = jnp.argsort(-err, axis=1, stable=True)
    e, y = jnp.take_along_axis(err, order, 1), jnp.take_along_axis(fg, order, 1)
    tot = y.sum(1, keepdims=True)
    jac = 1.0 - (tot - jnp.cumsum(y, 1)) / (tot + jnp.cumsum(1.0 - y, 1))
    g = jnp.concatenate([jac[:, :1], jac[:, 1:] - jac[:, :-1]], 1)
    return e, g


def j_lovasz_hinge(z, y, r):
    import jax.numpy as jnp
    n = z.shape[0]
    zz, yy = z.reshape(n, -1), y.reshape(n, -1).astype(z.dtype)
    e, g = _jax_lovasz_rows(1.0 - zz * (2 * yy - 1), yy)
    return _jreduce((jnp.maximum(e, 0.0) * g).sum(1), r, n)


def j_lovasz_softmax(p, y, r):  # classes="present", per image, no ignored pixels
    import jax.numpy as jnp
    n, c = p.shape[:2]
    pp = p.reshape(n * c, -1)
    fg = (y.reshape(n, 1, -1) == jnp.arange(c)[None, :, None]).astype(p.dtype)
    fg = fg.reshape(n * c, -1)
    e, g = _jax_lovasz_rows(jnp.abs(fg - pp), fg)
    per = (e * g).sum(1).reshape(n, c)
    present = (fg.sum(1) > 0).reshape(n, c).astype(p.dtype)
    return _jreduce((per * present).sum(1) / jnp.maximum(present.sum(1), 1.0), r, n)


def seg_probs_absent(shape=SMALL2):
    """Probabilities and one-hot masks in which class 2 is absent from example 0."""
    def make(rng):
        p = _probs(rng, shape)
        lab = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
        lab[0][lab[0] == 2] = 0
        return p, _onehot_np(lab, shape[1], 1)
    return make


def hinge_maps(shape=(3, 4, 4), ignore=None):
    def make(rng):
        z = rng.normal(scale=1.5, size=shape)
        y = rng.integers(0, 2, size=shape)
        if ignore is not None:
            y.flat[::5] = ignore
        return z, y
    return make


def softmax_maps(shape=SMALL2, logits=False, ignore=None):
    def make(rng):
        z = rng.normal(scale=1.5, size=shape)
        x = z if logits else np.exp(z) / np.exp(z).sum(1, keepdims=True)
        y = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
        y[0][y[0] == 1] = 0  # class 1 absent from image 0
        if ignore is not None:
            y.flat[::5] = ignore
        return x, y
    return make


CW3 = [0.5, 2.0, 1.5]

CASES += [
    Case("dice-class_weight-log_loss", dice_loss, seg_probs(SMALL2),
         t_overlap2("dice", class_weight=CW3, log_loss=True),
         options={"class_weight": CW3, "log_loss": True}),
    Case("tversky-class_weight-labels-ignore", tversky_loss,
         seg_labels(SMALL2, logits=True, ignore=-1),
         t_overlap2("tversky", alpha=0.3, beta=0.7, class_weight=CW3, from_logits="softmax",
                    ignore_index=-1),
         options={"alpha": 0.3, "beta": 0.7, "class_weight": CW3, "from_logits": "softmax",
                  "ignore_index": -1}),
    Case("jaccard-log_loss-global-sigmoid", jaccard_loss, seg_logits(SMALL2),
         t_overlap2("jaccard", log_loss=True, mode="global", from_logits="sigmoid"),
         options={"log_loss": True, "mode": "global", "from_logits": "sigmoid"}),
    # ------------------------------------------------------------ focal_tversky_loss
    Case("focal_tversky", focal_tversky_loss, seg_probs(SMALL2),
         t_overlap2("tversky", alpha=0.3, beta=0.7, gamma=0.75),
         j_overlap2("tversky", alpha=0.3, beta=0.7, gamma=0.75), on_every_backend=True),
    Case("focal_tversky-gamma2-softmax-class_weight", focal_tversky_loss, seg_logits(SMALL2),
         t_overlap2("tversky", alpha=0.6, beta=0.4, gamma=2.0, smooth=0.5, class_weight=CW3,
                    from_logits="softmax"),
         options={"alpha": 0.6, "beta": 0.4, "gamma": 2.0, "smooth": 0.5,
                  "class_weight": CW3, "from_logits": "softmax"}),
    # ------------------------------------------------------------ generalized_dice_loss
    Case("generalized_dice", generalized_dice_loss, seg_probs_absent(),
         t_overlap2("gdl", smooth=1e-5), j_overlap2("gdl", smooth=1e-5),
         on_every_backend=True),
    Case("generalized_dice-simple-labels-softmax-ignore", generalized_dice_loss,
         seg_labels(SMALL2, logits=True, ignore=-1),
         t_overlap2("gdl", smooth=0.1, weight_type="simple", from_logits="softmax",
                    ignore_index=-1),
         options={"smooth": 0.1, "weight_type": "simple", "from_logits": "softmax",
                  "ignore_index": -1}),
    # ------------------------------------------------------------ mcc_loss
    Case("mcc", mcc_loss, seg_probs(SMALL2), t_overlap2("mcc"), j_overlap2("mcc"),
         on_every_backend=True),
    Case("mcc-global-sigmoid-eps0", mcc_loss, seg_logits(SMALL2),
         t_overlap2("mcc", eps=0.0, mode="global", from_logits="sigmoid"),
         options={"eps": 0.0, "mode": "global", "from_logits": "sigmoid"}),
    Case("mcc-labels-ignore", mcc_loss, seg_labels(SMALL2, ignore=7),
         t_overlap2("mcc", ignore_index=7), options={"ignore_index": 7}),
    # ------------------------------------------------------------ Lovasz
    Case("lovasz_hinge", lovasz_hinge, hinge_maps(), t_lovasz_hinge(), j_lovasz_hinge,
         kinky=True, on_every_backend=True),
    Case("lovasz_hinge-ignore", lovasz_hinge, hinge_maps(ignore=255),
         t_lovasz_hinge(ignore_index=255), options={"ignore_index": 255}, kinky=True),
    Case("lovasz_softmax-per_image", lovasz_softmax, softmax_maps(), t_lovasz_softmax(),
         j_lovasz_softmax, options={"per_image": True}, kinky=True, on_every_backend=True),
    Case("lovasz_softmax-per_image-logits-all-ignore", lovasz_softmax,
         softmax_maps(logits=True, ignore=-1),
         t_lovasz_softmax(classes="all", from_logits=True, ignore_index=-1),
         options={"per_image": True, "from_logits": "softmax", "classes": "all",
                  "ignore_index": -1}, kinky=True),
]
