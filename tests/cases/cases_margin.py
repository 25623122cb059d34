"""Cases of the margin and multi-label losses and of FL* and generalized cross-entropy,
for the generic suites in ``tests/catalog``.

References, all independent of losskit:

* ``perceptron``: ``torch.clamp(-t s, min=0)``; ``optax.losses.perceptron_loss``;
* ``soft_margin``: ``torch.nn.functional.soft_margin_loss``; Optax's sigmoid BCE of
  ``(t + 1) / 2``;
* ``hinge_embedding``: ``torch.nn.functional.hinge_embedding_loss``; its documented
  formula in jax.numpy;
* ``multiclass_hinge``: ``torch.nn.functional.multi_margin_loss`` (``p=2``) times K;
  Crammer-Singer and Keras's ``CategoricalHinge`` formula written out in torch;
  ``optax.losses.multiclass_hinge_loss``;
* ``multiclass_perceptron``: the definition in torch; ``optax.losses.multiclass_perceptron_loss``;
* ``multilabel_margin``: ``torch.nn.functional.multilabel_margin_loss``; the definition
  (with PyTorch's -1 padding) in jax.numpy;
* ``multilabel_soft_margin``: ``torch.nn.functional.multilabel_soft_margin_loss``; Optax's
  sigmoid BCE averaged over the classes;
* ``asymmetric_loss``: ``AsymmetricLoss.forward`` of Alibaba-MIIL/ASL
  (``src/loss_functions/losses.py``) written out in torch without detaching the focusing
  weight, and the same in jax.numpy;
* ``sigmoid_focal_loss_star``: fvcore's ``sigmoid_focal_loss_star``
  (``fvcore/nn/focal_loss.py``) written out in torch (fvcore is not installed here);
  ``-jax.nn.log_sigmoid`` in jax;
* ``generalized_cross_entropy``: Keras's ``categorical_generalized_cross_entropy``
  formula ``(1 - p_y ** q) / q`` written out in torch and jax.numpy.
"""

from __future__ import annotations

import numpy as np

from loss_cases import Case, _jreduce, _reduce_torch, scores_labels
import losskit as lk

N, K = 6, 4
CW = [0.5, 2.0, 1.0, 3.0]


def _reduce(v, r, n, denom=None):
    if r == "mean" and denom is not None:
        return v.sum() / denom
    return _reduce_torch(v, r, n)


# ---------------------------------------------------------------- input generators
def signed(shape=(N, 3), away=0.0):
    """Scores and labels -1/+1 with t s at least 0.05 away from ``away`` (the kink)."""
    def make(rng):
        s = rng.normal(scale=2.0, size=shape)
        t = np.where(rng.random(size=shape) > 0.5, 1.0, -1.0)
        s = np.where(np.abs(t * s - away) < 0.05, s + 0.2 * t, s)
        return s, t
    return make


def distances(shape=(N, 3), margin=1.0):
    def make(rng):
        x = 2.0 * rng.random(size=shape)
        x = np.where(np.abs(x - margin) < 0.05, x + 0.1, x)
        t = np.where(rng.random(size=shape) > 0.5, 1.0, -1.0)
        return x, t
    return make


def scores_onehot(shape=(N, K), empty_row=False):
    def make(rng):
        s = rng.normal(scale=2.0, size=shape)
        t = np.eye(shape[-1])[rng.integers(0, shape[-1], size=shape[:-1])]
        if empty_row:
            t[0] = 0.0
        return s, t
    return make


def scores_soft(shape=(N, K)):
    def make(rng):
        s = rng.normal(scale=2.0, size=shape)
        t = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
        t[1] = 0.0  # a row with no true class
        return s, t
    return make


def padded_labels(shape=(N, K)):
    """Scores and PyTorch's multilabel targets: true classes, then -1, then anything."""
    def make(rng):
        s = rng.normal(scale=2.0, size=shape)
        n, k = shape
        y = np.full(shape, -1, dtype=np.int64)
        for i in range(n):
            m = i % (k + 1)  # 0 .. K true classes
            y[i, :m] = rng.permutation(k)[:m]
            if m + 1 < k:
                y[i, m + 1:] = rng.integers(0, k, size=k - m - 1)  # after the -1: not read
        y[2, :3] = [1, 1, -1]  # a class listed twice counts twice
        return s, y
    return make


def multilabel_logits(shape=(N, K), soft=False):
    def make(rng):
        t = rng.random(size=shape)
        if not soft:
            t = (t > 0.5).astype(float)
        return rng.normal(scale=2.0, size=shape), t
    return make


def probs_labels(shape=(N, K)):
    def make(rng):
        p = 0.05 + 0.8 * rng.dirichlet(np.ones(shape[-1]) * 2.0, size=shape[:-1])
        return p, rng.integers(0, shape[-1], size=shape[:-1])
    return make


def probs_soft(shape=(N, K)):
    def make(rng):
        p = 0.05 + 0.9 * rng.random(size=shape)
        return p, rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    return make


# ---------------------------------------------------------------- binary margin
def t_perceptron(s, t, r, torch):
    return _reduce(torch.clamp(-t * s, min=0.0), r, s.shape[0])


def j_perceptron(s, t, r):
    import optax
    return _jreduce(optax.losses.perceptron_loss(s, t), r, s.shape[0])


def t_soft_margin(s, t, r, torch):
    return _reduce(torch.nn.functional.soft_margin_loss(s, t, reduction="none"), r, s.shape[0])


def j_soft_margin(s, t, r):
    import optax
    return _jreduce(optax.losses.sigmoid_binary_cross_entropy(s, (t + 1) / 2), r, s.shape[0])


def t_hinge_embedding(margin=1.0):
    def ref(x, t, r, torch):
        v = torch.nn.functional.hinge_embedding_loss(x, t, margin=margin, reduction="none")
        return _reduce(v, r, x.shape[0])
    return ref


def j_hinge_embedding(margin=1.0):
    def ref(x, t, r):
        import jax.numpy as jnp
        v = jnp.where(t == 1, x, jnp.maximum(0.0, margin - x))
        return _jreduce(v, r, x.shape[0])
    return ref


# ---------------------------------------------------------------- multi-class
def _class_weighted(v, t, r, n, class_weight, torch, dtype):
    if class_weight is None:
        return _reduce(v, r, n)
    w = torch.as_tensor(class_weight, dtype=dtype)[t]
    return _reduce(v * w, r, n, denom=w.sum())


def t_multi_margin_p2(margin=1.0, class_weight=None):
    """multi_margin_loss(p=2) divides by K: multiplied back."""
    def ref(s, t, r, torch):
        k = s.shape[-1]
        v = torch.nn.functional.multi_margin_loss(s, t, p=2, margin=margin,
                                                  reduction="none") * k
        return _class_weighted(v, t, r, s.shape[0], class_weight, torch, s.dtype)
    return ref


def t_crammer_singer(margin=1.0, p=1, class_weight=None):
    def ref(s, t, r, torch):
        k = s.shape[-1]
        onehot = torch.nn.functional.one_hot(t, k).bool()
        wrong = torch.where(onehot, torch.full_like(s, -torch.inf), s).max(-1).values
        correct = s.gather(-1, t[:, None])[:, 0]
        v = torch.clamp(margin + wrong - correct, min=0.0) ** p
        return _class_weighted(v, t, r, s.shape[0], class_weight, torch, s.dtype)
    return ref


def j_crammer_singer(s, t, r):
    import optax
    return _jreduce(optax.losses.multiclass_hinge_loss(s, t), r, s.shape[0])


def t_categorical_hinge(margin=1.0, p=1):
    """Keras's categorical_hinge: max(0, m + max((1 - t) s) - sum(t s)), powered."""
    def ref(s, t, r, torch):
        if not t.dtype.is_floating_point:
            t = torch.nn.functional.one_hot(t, s.shape[-1]).to(s.dtype)
        pos = (t * s).sum(-1)
        neg = ((1 - t) * s).max(-1).values
        return _reduce(torch.clamp(neg - pos + margin, min=0.0) ** p, r, s.shape[0])
    return ref


def j_categorical_hinge(s, t, r):
    import jax.numpy as jnp
    pos = jnp.sum(t * s, -1)
    neg = jnp.max((1 - t) * s, -1)
    return _jreduce(jnp.maximum(neg - pos + 1.0, 0.0), r, s.shape[0])


def t_multiclass_perceptron(class_weight=None):
    def ref(s, t, r, torch):
        v = s.max(-1).values - s.gather(-1, t[:, None])[:, 0]
        return _class_weighted(v, t, r, s.shape[0], class_weight, torch, s.dtype)
    return ref


def j_multiclass_perceptron(s, t, r):
    import optax
    return _jreduce(optax.losses.multiclass_perceptron_loss(s, t), r, s.shape[0])


# ---------------------------------------------------------------- multi-label
def t_multilabel_margin(x, y, r, torch):
    v = torch.nn.functional.multilabel_margin_loss(x, y, reduction="none")
    return _reduce(v, r, x.shape[0])


def j_multilabel_margin(x, y, r):
    import jax.numpy as jnp
    k = x.shape[-1]
    listed = jnp.cumsum(y < 0, axis=-1) == 0
    count = jnp.sum((y[..., :, None] == jnp.arange(k)) & listed[..., :, None], axis=-2)
    is_t = count > 0
    h = jnp.maximum(0.0, 1.0 - x[..., :, None] + x[..., None, :])
    pair = is_t[..., :, None] & ~is_t[..., None, :]
    v = jnp.sum(jnp.where(pair, h, 0.0) * count[..., :, None], axis=(-1, -2)) / k
    return _jreduce(v, r, x.shape[0])


def t_multilabel_soft_margin(class_weight=None):
    def ref(x, t, r, torch):
        w = None if class_weight is None else torch.as_tensor(class_weight, dtype=x.dtype)
        v = torch.nn.functional.multilabel_soft_margin_loss(x, t, weight=w, reduction="none")
        return _reduce(v, r, x.shape[0])
    return ref


def j_multilabel_soft_margin(x, t, r):
    import optax
    return _jreduce(optax.losses.sigmoid_binary_cross_entropy(x, t).mean(-1), r, x.shape[0])


def asl_torch(x, y, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    """AsymmetricLoss.forward of Alibaba-MIIL/ASL (src/loss_functions/losses.py), per
    element (its forward returns minus the sum), the focusing weight not detached."""
    import torch

    x_sigmoid = torch.sigmoid(x)
    xs_pos = x_sigmoid
    xs_neg = 1 - x_sigmoid
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    los_pos = y * torch.log(xs_pos.clamp(min=eps))
    los_neg = (1 - y) * torch.log(xs_neg.clamp(min=eps))
    loss = los_pos + los_neg
    if gamma_neg > 0 or gamma_pos > 0:
        pt = xs_pos * y + xs_neg * (1 - y)
        one_sided_gamma = gamma_pos * y + gamma_neg * (1 - y)
        loss = loss * torch.pow(1 - pt, one_sided_gamma)
    return -loss


def t_asl(**kw):
    def ref(x, y, r, torch):
        return _reduce(asl_torch(x, y, **kw), r, x.shape[0])
    return ref


def j_asl(gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    def ref(x, y, r):
        import jax
        import jax.numpy as jnp
        p = jax.nn.sigmoid(x)
        neg = jnp.minimum(1 - p + clip, 1.0)
        loss = y * jnp.log(jnp.maximum(p, eps)) + (1 - y) * jnp.log(jnp.maximum(neg, eps))
        pt = p * y + neg * (1 - y)
        loss = loss * (1 - pt) ** (gamma_pos * y + gamma_neg * (1 - y))
        return _jreduce(-loss, r, x.shape[0])
    return ref


# ---------------------------------------------------------------- FL*, GCE
def fvcore_focal_star(z, t, alpha=-1.0, gamma=1.0):
    """fvcore.nn.focal_loss.sigmoid_focal_loss_star, reduction "none", written out."""
    import torch

    shifted = gamma * (z * (2 * t - 1))
    loss = -torch.nn.functional.logsigmoid(shifted) / gamma
    if alpha >= 0:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    return loss


def t_focal_star(alpha=-1.0, gamma=1.0):
    def ref(z, t, r, torch):
        return _reduce(fvcore_focal_star(z, t, alpha, gamma), r, z.shape[0])
    return ref


def j_focal_star(alpha=-1.0, gamma=1.0):
    def ref(z, t, r):
        import jax
        v = -jax.nn.log_sigmoid(gamma * z * (2 * t - 1)) / gamma
        if alpha >= 0:
            v = v * (alpha * t + (1 - alpha) * (1 - t))
        return _jreduce(v, r, z.shape[0])
    return ref


def t_gce(q=0.5, class_weight=None):
    def ref(p, t, r, torch):
        if t.dtype.is_floating_point:
            return _reduce((t * (1 - p ** q) / q).sum(-1), r, p.shape[0])
        v = (1 - p.gather(-1, t[:, None])[:, 0] ** q) / q
        return _class_weighted(v, t, r, p.shape[0], class_weight, torch, p.dtype)
    return ref


def j_gce(q=0.5):
    def ref(p, t, r):
        import jax.numpy as jnp
        py = jnp.take_along_axis(p, t[:, None], axis=-1)[:, 0]
        return _jreduce((1 - py ** q) / q, r, p.shape[0])
    return ref


CASES = [
    # ---- binary
    Case("perceptron", lk.perceptron, signed(), t_perceptron, j_perceptron,
         on_every_backend=True),
    Case("soft_margin", lk.soft_margin, signed(), t_soft_margin, j_soft_margin,
         on_every_backend=True),
    Case("soft_margin-3d", lk.soft_margin, signed((3, 2, 5)), t_soft_margin, j_soft_margin),
    Case("hinge_embedding", lk.hinge_embedding, distances(), t_hinge_embedding(),
         j_hinge_embedding(), on_every_backend=True),
    Case("hinge_embedding-margin", lk.hinge_embedding, distances(margin=0.5),
         t_hinge_embedding(0.5), j_hinge_embedding(0.5), options={"margin": 0.5}),
    # ---- multi-class hinge: the new variants and p
    Case("multiclass_hinge-p2", lk.multiclass_hinge, scores_labels(), t_multi_margin_p2(),
         options={"p": 2}, kinky=True),
    Case("multiclass_hinge-p2-weight-margin", lk.multiclass_hinge, scores_labels(),
         t_multi_margin_p2(margin=2.0, class_weight=CW),
         options={"p": 2, "margin": 2.0, "class_weight": CW}, kinky=True),
    Case("multiclass_hinge-crammer_singer", lk.multiclass_hinge, scores_labels(),
         t_crammer_singer(), j_crammer_singer, options={"variant": "crammer_singer"},
         kinky=True, on_every_backend=True),
    Case("multiclass_hinge-crammer_singer-p2-weight", lk.multiclass_hinge, scores_labels(),
         t_crammer_singer(margin=0.5, p=2, class_weight=CW),
         options={"variant": "crammer_singer", "p": 2, "margin": 0.5, "class_weight": CW},
         kinky=True),
    Case("multiclass_hinge-categorical-onehot", lk.multiclass_hinge, scores_onehot(),
         t_categorical_hinge(), j_categorical_hinge, options={"variant": "categorical"},
         kinky=True, on_every_backend=True),
    Case("multiclass_hinge-categorical-labels", lk.multiclass_hinge, scores_labels(),
         t_categorical_hinge(), options={"variant": "categorical"}, kinky=True),
    Case("multiclass_hinge-categorical-soft-empty-p2", lk.multiclass_hinge, scores_soft(),
         t_categorical_hinge(margin=1.5, p=2),
         options={"variant": "categorical", "p": 2, "margin": 1.5}, kinky=True),
    # ---- multi-class perceptron
    Case("multiclass_perceptron", lk.multiclass_perceptron, scores_labels(),
         t_multiclass_perceptron(), j_multiclass_perceptron, kinky=True,
         on_every_backend=True),
    Case("multiclass_perceptron-weight", lk.multiclass_perceptron, scores_labels(),
         t_multiclass_perceptron(class_weight=CW), options={"class_weight": CW},
         kinky=True),
    # ---- multi-label
    Case("multilabel_margin", lk.multilabel_margin, padded_labels(), t_multilabel_margin,
         j_multilabel_margin, kinky=True, on_every_backend=True),
    Case("multilabel_soft_margin", lk.multilabel_soft_margin, multilabel_logits(),
         t_multilabel_soft_margin(), j_multilabel_soft_margin, on_every_backend=True),
    Case("multilabel_soft_margin-soft-weight", lk.multilabel_soft_margin,
         multilabel_logits(soft=True), t_multilabel_soft_margin(CW),
         options={"class_weight": CW}),
    Case("asymmetric_loss", lk.asymmetric_loss, multilabel_logits(), t_asl(), j_asl(),
         kinky=True, on_every_backend=True),
    Case("asymmetric_loss-soft-gammas", lk.asymmetric_loss, multilabel_logits(soft=True),
         t_asl(gamma_neg=2.5, gamma_pos=0.5, clip=0.1), j_asl(2.5, 0.5, 0.1),
         options={"gamma_neg": 2.5, "gamma_pos": 0.5, "clip": 0.1}, kinky=True),
    Case("asymmetric_loss-noclip-gamma0", lk.asymmetric_loss, multilabel_logits(),
         t_asl(gamma_neg=0.0, gamma_pos=0.0, clip=0.0), j_asl(0.0, 0.0, 0.0),
         options={"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0}),
    # ---- FL*
    Case("sigmoid_focal_loss_star", lk.sigmoid_focal_loss_star, multilabel_logits(),
         t_focal_star(), j_focal_star(), on_every_backend=True),
    Case("sigmoid_focal_loss_star-gamma4-alpha", lk.sigmoid_focal_loss_star,
         multilabel_logits(), t_focal_star(alpha=0.25, gamma=4.0),
         j_focal_star(alpha=0.25, gamma=4.0), options={"alpha": 0.25, "gamma": 4.0}),
    # ---- generalized cross-entropy
    Case("generalized_cross_entropy", lk.generalized_cross_entropy, probs_labels(), t_gce(),
         j_gce(), on_every_backend=True),
    Case("generalized_cross_entropy-q0.7-weight", lk.generalized_cross_entropy,
         probs_labels(), t_gce(q=0.7, class_weight=CW), options={"q": 0.7, "class_weight": CW}),
    Case("generalized_cross_entropy-soft-q1", lk.generalized_cross_entropy, probs_soft(),
         t_gce(q=1.0), options={"q": 1.0}),
]
