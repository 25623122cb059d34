"""Cases of the classification catalog (focal, Poly-1, Brier), the squared hinge and the
divergence losses (KL, distillation KL, Jensen-Shannon) for the generic suites in
``test_losses.py`` and ``test_backends.py``.

References, all independent of losskit:

* ``sigmoid_focal_loss``: torchvision's ``ops.sigmoid_focal_loss`` formula written out in
  torch (``p_t = p t + (1-p)(1-t)``, ``ce * (1 - p_t) ** gamma``, ``alpha_t`` only when
  ``alpha >= 0``), and ``optax.losses.sigmoid_focal_loss``;
* ``softmax_focal_loss``: Lin et al.'s :math:`-\\alpha_y (1-p_y)^\\gamma \\log p_y` written
  out in torch and jax.numpy from ``log_softmax``, with PyTorch's weighted-mean rule;
* ``poly_loss``: ``torch.nn.functional.cross_entropy`` plus the paper's
  :math:`\\varepsilon (1 - p_t)` written in torch, and ``optax.losses.poly_loss_cross_entropy``;
* ``brier_score``: the definition in torch/jax (scikit-learn is checked in the test file);
* ``squared_hinge``: ``torch.clamp(m - t s, min=0) ** 2``; ``optax.losses.hinge_loss`` squared;
* ``kl_divergence``: ``torch.nn.functional.kl_div`` (elementwise, summed over the class
  axis) and ``optax.losses.kl_divergence`` / ``kl_divergence_with_log_targets``;
* ``softmax_kl_divergence``: ``F.kl_div(F.log_softmax(z / T), F.softmax(t / T)) * T**2``
  (Hinton et al.), and the same with optax;
* ``js_divergence``: the definition with the mixture ``m = (p + q) / 2`` in torch and jax.
"""

from __future__ import annotations

import numpy as np

from loss_cases import (Case, _jreduce, _reduce_torch, binary_logits, hinge_inputs,
                        logits_labels, logits_soft)
from losskit.losses.divergence import js_divergence, kl_divergence, softmax_kl_divergence
from losskit.losses.focal import poly_loss, sigmoid_focal_loss, softmax_focal_loss
from losskit.losses.margin import squared_hinge
from losskit.losses.brier_score import brier_score

N, K = 6, 4
CW = [0.5, 2.0, 1.0, 3.0]
ALPHA = [0.25, 1.0, 0.5, 2.0]


def _reduce(v, r, n, denom=None):
    """torch reduction; ``denom`` replaces the count for a weighted mean."""
    if r == "mean" and denom is not None:
        return v.sum() / denom
    return _reduce_torch(v, r, n)


# ---------------------------------------------------------------- input generators
def logits_pair(shape=(N, K)):
    """Student and teacher logits."""
    def make(rng):
        return rng.normal(scale=2.0, size=shape), rng.normal(scale=2.0, size=shape)
    return make


def logits_teacher_probs(shape=(N, K)):
    def make(rng):
        return rng.normal(scale=2.0, size=shape), rng.dirichlet(np.ones(shape[-1]) * 2.0,
                                                                size=shape[:-1])
    return make


def _simplex(rng, shape, axis=-1, lo=0.05):
    """Distributions along ``axis`` with every entry >= lo (away from 0 and 1)."""
    k = shape[axis]
    rest = tuple(np.delete(shape, axis))
    d = lo + (1 - k * lo) * rng.dirichlet(np.ones(k) * 2.0, size=rest)
    return np.moveaxis(d, -1, axis)


def logq_p(shape=(N, K), axis=-1, log_target=False):
    def make(rng):
        q, p = _simplex(rng, shape, axis), _simplex(rng, shape, axis)
        return np.log(q), (np.log(p) if log_target else p)
    return make


def map_pair(shape=(N, 3, 4), log=True):
    """Distributions over the axes (1, 2) together (a spatial map): log q (or q) and p."""
    def make(rng):
        flat = (shape[0], shape[1] * shape[2])
        q, p = (_simplex(rng, flat).reshape(shape) for _ in range(2))
        return (np.log(q) if log else q), p
    return make


def q_p(shape=(N, K)):
    def make(rng):
        return _simplex(rng, shape), _simplex(rng, shape)
    return make


def probs_labels(shape=(N, K), ignore=None):
    def make(rng):
        p = _simplex(rng, shape)
        y = rng.integers(0, shape[-1], size=shape[:-1])
        if ignore is not None:
            y.flat[::3] = ignore
        return p, y
    return make


# ---------------------------------------------------------------- sigmoid focal
def torchvision_sigmoid_focal(z, t, gamma=2.0, alpha=0.25):
    """torchvision.ops.sigmoid_focal_loss on torch tensors, reduction "none": its
    documented formula written out (torchvision is not installable beside torch 2.13).
    ``alpha`` None or negative: no alpha weighting."""
    import torch

    p = torch.sigmoid(z)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(z, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha is not None and alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


def t_sigmoid_focal(gamma=2.0, alpha=0.25):
    def ref(z, t, r, torch):
        return _reduce(torchvision_sigmoid_focal(z, t, gamma, alpha), r, z.shape[0])
    return ref


def j_sigmoid_focal(gamma=2.0, alpha=0.25):
    def ref(z, t, r):
        import optax
        a = alpha if alpha is not None and alpha >= 0 else None
        return _jreduce(optax.losses.sigmoid_focal_loss(z, t, alpha=a, gamma=gamma), r,
                        z.shape[0])
    return ref


# ---------------------------------------------------------------- softmax focal / poly
def _class_shape(ndim, ax, k):
    return tuple(k if i == ax else 1 for i in range(ndim))


def t_softmax_focal(gamma=2.0, alpha=None, class_weight=None, ignore_index=None, axis=-1):
    def ref(z, t, r, torch):
        ax = axis % z.ndim
        k = z.shape[ax]
        logp = torch.log_softmax(z, dim=ax)
        fl = -((1 - logp.exp()) ** gamma) * logp
        if alpha is not None:
            fl = fl * torch.as_tensor(alpha, dtype=z.dtype).reshape(
                _class_shape(z.ndim, ax, k) if np.ndim(alpha) else ())
        cw = None if class_weight is None else torch.as_tensor(class_weight, dtype=z.dtype)
        if t.dtype.is_floating_point:
            a = t if cw is None else t * cw.reshape(_class_shape(z.ndim, ax, k))
            return _reduce((a * fl).sum(ax), r, z.shape[0])
        valid = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else \
            t != ignore_index
        tt = torch.where(valid, t, torch.zeros_like(t))
        picked = torch.gather(fl, ax, tt.unsqueeze(ax)).squeeze(ax)
        w = valid.to(z.dtype) if cw is None else cw[tt] * valid
        return _reduce(picked * w, r, z.shape[0], denom=w.sum())
    return ref


def j_softmax_focal(gamma=2.0):
    def ref(z, t, r):
        import jax
        import jax.numpy as jnp
        logp = jax.nn.log_softmax(z, axis=-1)
        fl = -((1 - jnp.exp(logp)) ** gamma) * logp
        if jnp.issubdtype(t.dtype, jnp.integer):
            v = jnp.take_along_axis(fl, t[..., None], axis=-1)[..., 0]
        else:
            v = jnp.sum(t * fl, axis=-1)
        return _jreduce(v, r, z.shape[0])
    return ref


def t_poly(epsilon=1.0, class_weight=None, ignore_index=None, label_smoothing=0.0, axis=-1):
    """F.cross_entropy + epsilon * sum_c a_c (1 - p_c), the paper's Poly-1."""
    def ref(z, t, r, torch):
        F = torch.nn.functional
        ax = axis % z.ndim
        k = z.shape[ax]
        cshape = _class_shape(z.ndim, ax, k)
        kw = {"label_smoothing": label_smoothing}
        cw = None
        if class_weight is not None:
            cw = torch.as_tensor(class_weight, dtype=z.dtype)
            kw["weight"] = cw
        if ignore_index is not None:
            kw["ignore_index"] = ignore_index
        soft = t.dtype.is_floating_point
        zm = torch.movedim(z, ax, 1)
        tm = torch.movedim(t, ax, 1) if soft else t
        ce = F.cross_entropy(zm, tm, reduction="none", **kw)
        p = torch.softmax(z, dim=ax)
        wvec = torch.ones(k, dtype=z.dtype) if cw is None else cw
        if soft:
            a = ((1 - label_smoothing) * t + label_smoothing / k) * wvec.reshape(cshape)
            denom = None
        else:
            valid = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else \
                t != ignore_index
            tt = torch.where(valid, t, torch.zeros_like(t))
            onehot = torch.movedim(F.one_hot(tt, k).to(z.dtype), -1, ax)
            keep = valid.to(z.dtype).unsqueeze(ax)
            a = ((1 - label_smoothing) * onehot * wvec[tt].unsqueeze(ax)
                 + label_smoothing / k * wvec.reshape(cshape)) * keep
            denom = (wvec[tt] * valid).sum()
        v = ce + epsilon * (a * (1 - p)).sum(ax)
        return _reduce(v, r, z.shape[0], denom=denom)
    return ref


def j_poly(epsilon=1.0):
    def ref(z, t, r):
        import jax
        import jax.numpy as jnp
        import optax
        if jnp.issubdtype(t.dtype, jnp.integer):
            t = jax.nn.one_hot(t, z.shape[-1], dtype=z.dtype)
        return _jreduce(optax.losses.poly_loss_cross_entropy(z, t, epsilon=epsilon), r,
                        z.shape[0])
    return ref


# ---------------------------------------------------------------- brier / squared hinge
def t_brier(ignore_index=None):
    def ref(y, t, r, torch):
        if t.dtype.is_floating_point:
            return _reduce(((y - t) ** 2).sum(-1), r, y.shape[0])
        valid = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else \
            t != ignore_index
        tt = torch.where(valid, t, torch.zeros_like(t))
        onehot = torch.nn.functional.one_hot(tt, y.shape[-1]).to(y.dtype)
        v = ((y - onehot) ** 2).sum(-1) * valid
        return _reduce(v, r, y.shape[0], denom=valid.sum())
    return ref


def j_brier(y, t, r):
    import jax
    import jax.numpy as jnp
    onehot = jax.nn.one_hot(t, y.shape[-1], dtype=y.dtype)
    return _jreduce(jnp.sum((y - onehot) ** 2, axis=-1), r, y.shape[0])


def t_squared_hinge(margin=1.0):
    def ref(s, t, r, torch):
        return _reduce(torch.clamp(margin - t * s, min=0.0) ** 2, r, s.shape[0])
    return ref


def j_squared_hinge(s, t, r):
    import optax
    return _jreduce(optax.losses.hinge_loss(s, t) ** 2, r, s.shape[0])


# ---------------------------------------------------------------- divergences
def t_kl(log_prediction=True, log_target=False, axis=-1):
    def ref(pred, t, r, torch):
        inp = pred if log_prediction else torch.log(pred)
        v = torch.nn.functional.kl_div(inp, t, reduction="none", log_target=log_target)
        return _reduce(v.sum(axis), r, pred.shape[0])
    return ref


def j_kl_axes(axes):
    def ref(logq, p, r):
        import jax.numpy as jnp
        from jax.scipy.special import xlogy
        return _jreduce(jnp.sum(xlogy(p, p) - p * logq, axis=axes), r, logq.shape[0])
    return ref


def t_softmax_kl_axes(axes):
    def ref(z, t, r, torch):
        def log_softmax(x):  # over several axes at once
            return x - torch.logsumexp(x, dim=axes, keepdim=True)
        v = torch.nn.functional.kl_div(log_softmax(z), log_softmax(t), reduction="none",
                                       log_target=True).sum(axes)
        return _reduce(v, r, z.shape[0])
    return ref


def t_js_axes(axes):
    def ref(q, p, r, torch):
        m = 0.5 * (p + q)
        v = 0.5 * (p * (torch.log(p) - torch.log(m))).sum(axes) + \
            0.5 * (q * (torch.log(q) - torch.log(m))).sum(axes)
        return _reduce(v, r, q.shape[0])
    return ref


def j_kl(log_target=False):
    def ref(logq, t, r):
        import optax
        fn = optax.losses.kl_divergence_with_log_targets if log_target else \
            optax.losses.kl_divergence
        return _jreduce(fn(logq, t), r, logq.shape[0])
    return ref


def t_softmax_kl(temperature=1.0, target_is_logits=True, scale=True):
    def ref(z, t, r, torch):
        F = torch.nn.functional
        T = temperature
        tgt = F.softmax(t / T, dim=-1) if target_is_logits else t
        v = F.kl_div(F.log_softmax(z / T, dim=-1), tgt, reduction="none").sum(-1)
        return _reduce(v * (T * T if scale else 1.0), r, z.shape[0])
    return ref


def j_softmax_kl(temperature=1.0, scale=True):
    def ref(z, t, r):
        import jax
        import optax
        T = temperature
        v = optax.losses.kl_divergence(jax.nn.log_softmax(z / T, axis=-1),
                                       jax.nn.softmax(t / T, axis=-1))
        return _jreduce(v * (T * T if scale else 1.0), r, z.shape[0])
    return ref


def t_js(q, p, r, torch):
    m = 0.5 * (p + q)
    v = 0.5 * (p * (torch.log(p) - torch.log(m))).sum(-1) + \
        0.5 * (q * (torch.log(q) - torch.log(m))).sum(-1)
    return _reduce(v, r, q.shape[0])


def j_js(q, p, r):
    import jax.numpy as jnp
    m = 0.5 * (p + q)
    v = 0.5 * jnp.sum(p * jnp.log(p / m), -1) + 0.5 * jnp.sum(q * jnp.log(q / m), -1)
    return _jreduce(v, r, q.shape[0])


CASES = [
    # ---- sigmoid focal
    Case("sigmoid_focal", sigmoid_focal_loss, binary_logits(hard=True), t_sigmoid_focal(),
         j_sigmoid_focal(), on_every_backend=True),
    Case("sigmoid_focal-soft", sigmoid_focal_loss, binary_logits(), t_sigmoid_focal(),
         j_sigmoid_focal()),
    Case("sigmoid_focal-gamma0.5-noalpha", sigmoid_focal_loss, binary_logits(hard=True),
         t_sigmoid_focal(gamma=0.5, alpha=None), j_sigmoid_focal(gamma=0.5, alpha=None),
         options={"gamma": 0.5, "alpha": None}),
    Case("sigmoid_focal-gamma1.5-alpha-negative-3d", sigmoid_focal_loss,
         binary_logits((3, 2, 5)), t_sigmoid_focal(gamma=1.5, alpha=-1.0),
         j_sigmoid_focal(gamma=1.5, alpha=-1.0), options={"gamma": 1.5, "alpha": -1.0}),
    Case("sigmoid_focal-gamma0", sigmoid_focal_loss, binary_logits(),
         t_sigmoid_focal(gamma=0.0, alpha=0.6), j_sigmoid_focal(gamma=0.0, alpha=0.6),
         options={"gamma": 0.0, "alpha": 0.6}),
    # ---- softmax focal
    Case("softmax_focal", softmax_focal_loss, logits_labels(), t_softmax_focal(),
         j_softmax_focal(), on_every_backend=True),
    Case("softmax_focal-soft", softmax_focal_loss, logits_soft(), t_softmax_focal(),
         j_softmax_focal()),
    Case("softmax_focal-gamma0.5", softmax_focal_loss, logits_labels(),
         t_softmax_focal(gamma=0.5), j_softmax_focal(gamma=0.5), options={"gamma": 0.5}),
    Case("softmax_focal-alpha-weight-ignore", softmax_focal_loss,
         logits_labels(ignore=-100),
         t_softmax_focal(alpha=ALPHA, class_weight=CW, ignore_index=-100),
         options={"alpha": ALPHA, "class_weight": CW, "ignore_index": -100}),
    Case("softmax_focal-alpha-scalar-soft-weight", softmax_focal_loss, logits_soft(),
         t_softmax_focal(gamma=1.5, alpha=0.25, class_weight=CW),
         options={"gamma": 1.5, "alpha": 0.25, "class_weight": CW}),
    Case("softmax_focal-axis1-gamma3", softmax_focal_loss, logits_labels((3, K, 5), axis=1),
         t_softmax_focal(gamma=3.0, axis=1), options={"gamma": 3.0, "axis": 1}),
    # ---- poly-1
    Case("poly_loss", poly_loss, logits_labels(), t_poly(), j_poly(),
         on_every_backend=True),
    Case("poly_loss-soft-eps2", poly_loss, logits_soft(), t_poly(epsilon=2.0),
         j_poly(epsilon=2.0), options={"epsilon": 2.0}),
    Case("poly_loss-eps-minus1", poly_loss, logits_labels(), t_poly(epsilon=-1.0),
         j_poly(epsilon=-1.0), options={"epsilon": -1.0}),
    Case("poly_loss-all", poly_loss, logits_labels(ignore=-1),
         t_poly(epsilon=0.5, class_weight=CW, ignore_index=-1, label_smoothing=0.1),
         options={"epsilon": 0.5, "class_weight": CW, "ignore_index": -1,
                  "label_smoothing": 0.1}),
    Case("poly_loss-soft-weight-smooth", poly_loss, logits_soft(),
         t_poly(epsilon=1.5, class_weight=CW, label_smoothing=0.2),
         options={"epsilon": 1.5, "class_weight": CW, "label_smoothing": 0.2}),
    Case("poly_loss-axis1", poly_loss, logits_labels((3, K, 5), axis=1),
         t_poly(axis=1), options={"axis": 1}),
    # ---- brier
    Case("brier_score", brier_score, probs_labels(), t_brier(), j_brier,
         on_every_backend=True),
    Case("brier_score-soft", brier_score, q_p(), t_brier()),
    Case("brier_score-ignore", brier_score, probs_labels(ignore=-100),
         t_brier(ignore_index=-100), options={"ignore_index": -100}),
    # ---- squared hinge
    Case("squared_hinge", squared_hinge, hinge_inputs(), t_squared_hinge(), j_squared_hinge,
         on_every_backend=True),
    Case("squared_hinge-margin", squared_hinge, hinge_inputs(), t_squared_hinge(margin=2.5),
         options={"margin": 2.5}),
    # ---- KL
    Case("kl_divergence", kl_divergence, logq_p(), t_kl(), j_kl(), on_every_backend=True),
    Case("kl_divergence-probs", kl_divergence, q_p(), t_kl(log_prediction=False),
         options={"log_prediction": False}),
    Case("kl_divergence-log_target", kl_divergence, logq_p(log_target=True),
         t_kl(log_target=True), j_kl(log_target=True), options={"log_target": True}),
    Case("kl_divergence-axis1", kl_divergence, logq_p((3, K, 5), axis=1), t_kl(axis=1),
         options={"axis": 1}),
    Case("kl_divergence-axes12", kl_divergence, map_pair(), t_kl(axis=(1, 2)),
         j_kl_axes((1, 2)), options={"axis": (1, 2)}),
    # ---- distillation
    Case("softmax_kl", softmax_kl_divergence, logits_pair(), t_softmax_kl(),
         j_softmax_kl(), on_every_backend=True),
    Case("softmax_kl-T4", softmax_kl_divergence, logits_pair(), t_softmax_kl(4.0),
         j_softmax_kl(4.0), options={"temperature": 4.0}),
    Case("softmax_kl-T2-unscaled", softmax_kl_divergence, logits_pair(),
         t_softmax_kl(2.0, scale=False), j_softmax_kl(2.0, scale=False),
         options={"temperature": 2.0, "scale_by_temperature_squared": False}),
    Case("softmax_kl-T3-probs", softmax_kl_divergence, logits_teacher_probs(),
         t_softmax_kl(3.0, target_is_logits=False),
         options={"temperature": 3.0, "target_is_logits": False}),
    Case("softmax_kl-axes12", softmax_kl_divergence, logits_pair((N, 3, 4)),
         t_softmax_kl_axes((1, 2)), options={"axis": (2, 1)}),
    # ---- JS
    Case("js_divergence", js_divergence, q_p(), t_js, j_js, on_every_backend=True),
    Case("js_divergence-axes12", js_divergence, map_pair(log=False), t_js_axes((1, 2)),
         options={"axis": (-1, 1)}),
]
