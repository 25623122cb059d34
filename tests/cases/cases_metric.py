"""Cases of the metric-learning losses (contrastive, triplet_margin, margin_ranking,
cosine_embedding) for the generic suites in ``test_losses.py`` and ``test_backends.py``.

References: ``torch.nn.functional`` directly (triplet_margin_loss, margin_ranking_loss,
cosine_embedding_loss; pairwise_distance with ``eps=0`` for Hadsell et al.'s contrastive
loss, which torch does not ship), and the published formulas written out in
jax.numpy. Nothing here comes from losskit.

The generators keep every input away from the kinks: hinge arguments at least 0.05 from
0, no zero components of a difference for ``p = 1``, no ties of the largest components
for ``p = inf``, and distances well away from 0.
"""

from __future__ import annotations

import math

import numpy as np

from loss_cases import Case, _jreduce, _reduce_torch
from losskit.losses.metric_learning import contrastive, cosine_embedding, margin_ranking, triplet_margin

N, D = 6, 4
INF = math.inf


# ---------------------------------------------------------------- input generators
def _away_from_zero(v, gap=0.05):
    """Components of ``v`` pushed at least ``gap`` away from 0 (the kink of |v_i|)."""
    return np.where(np.abs(v) < gap, np.sign(v + (v == 0)) * 2 * gap, v)


def pair_inputs(shape=(N, D), margin=1.0, p=2.0, labels=(1.0, 0.0), cosine=False):
    """Two embeddings and a label per pair; both labels occur. For the contrastive loss the
    distance stays away from 0; for the cosine loss, cos - margin away from 0."""
    def make(rng):
        x1 = rng.normal(size=shape)
        diff = _away_from_zero(rng.normal(scale=0.6, size=shape))
        x2 = x1 - diff
        t = np.where(rng.random(size=shape[:-1]) > 0.5, labels[0], labels[1])
        t.flat[0], t.flat[-1] = labels[0], labels[1]
        if cosine:  # keep cos(x1, x2) at least 0.05 away from the margin
            x2 = rng.normal(size=shape)
            c = (x1 * x2).sum(-1) / np.linalg.norm(x1, axis=-1) / np.linalg.norm(x2, axis=-1)
            bad = np.abs(c - margin) < 0.05
            x2 = np.where(bad[..., None], -x2, x2)
        return x1, x2, t
    return make


def triplet_inputs(shape=(N, D), margin=1.0, p=2.0, eps=1e-6, swap=False):
    """Anchor, positive, negative with a mix of active and satisfied triplets, the hinge
    argument at least 0.05 away from 0, differences without zero components and (for the
    swap) the two negative distances clearly different."""
    def make(rng):
        a = rng.normal(size=shape)
        pos = a - _away_from_zero(rng.normal(scale=0.5, size=shape))
        scale = np.linspace(0.3, 2.5, math.prod(shape[:-1])).reshape(shape[:-1] + (1,))
        neg = a - _away_from_zero(rng.normal(size=shape)) * scale

        def dist(x, y):
            return np.linalg.norm(x - y + eps, ord=p, axis=-1)
        d_neg = dist(a, neg)
        if swap:
            d_neg = np.minimum(d_neg, dist(pos, neg))
            # no near-ties of d(a, n) and d(p, n)
            assert np.all(np.abs(dist(a, neg) - dist(pos, neg)) > 1e-3)
        slack = margin + dist(a, pos) - d_neg
        # push a near-kink negative further out (its triplet becomes clearly satisfied)
        bad = np.abs(slack) < 0.05
        neg = np.where(bad[..., None], a + 3.0 * (neg - a), neg)
        return a, pos, neg
    return make


def ranking_inputs(shape=(N,), margin=0.0):
    def make(rng):
        x1 = rng.normal(size=shape)
        x2 = rng.normal(size=shape)
        y = np.where(rng.random(size=shape) > 0.5, 1.0, -1.0)
        slack = margin - y * (x1 - x2)
        x1 = np.where(np.abs(slack) < 0.05, x1 + 0.2 * np.sign(x1 - x2 + (x1 == x2)), x1)
        return x1, x2, y
    return make


# ---------------------------------------------------------------- torch references
def t_contrastive(margin=1.0, p=2.0):
    """Hadsell et al. 2006 with 1 = similar and the 1/2, on torch's pairwise distance."""
    def ref(x1, x2, t, r, torch):
        F = torch.nn.functional
        d = F.pairwise_distance(x1, x2, p=p, eps=0.0)
        t = t.to(d.dtype)
        v = t * 0.5 * d ** 2 + (1 - t) * 0.5 * F.relu(margin - d) ** 2
        return _reduce_torch(v, r, x1.shape[0])
    return ref


def t_triplet(**kw):
    def ref(a, p, n, r, torch):
        v = torch.nn.functional.triplet_margin_loss(a, p, n, reduction="none", **kw)
        return _reduce_torch(v, r, a.shape[0])
    return ref


def t_ranking(margin=0.0):
    def ref(x1, x2, y, r, torch):
        v = torch.nn.functional.margin_ranking_loss(x1, x2, y, margin=margin, reduction="none")
        return _reduce_torch(v, r, x1.shape[0])
    return ref


def t_cosine(margin=0.0):
    def ref(x1, x2, y, r, torch):
        v = torch.nn.functional.cosine_embedding_loss(x1, x2, y, margin=margin,
                                                      reduction="none")
        return _reduce_torch(v, r, x1.shape[0])
    return ref


# ---------------------------------------------------------------- jax references
def _jnorm(v, p):
    import jax.numpy as jnp
    return jnp.linalg.norm(v, ord=p, axis=-1)


def j_contrastive(margin=1.0, p=2.0):
    def ref(x1, x2, t, r):
        import jax.numpy as jnp
        d = _jnorm(x1 - x2, p)
        v = t * d ** 2 / 2 + (1 - t) * jnp.maximum(margin - d, 0.0) ** 2 / 2
        return _jreduce(v, r, x1.shape[0])
    return ref


def j_triplet(margin=1.0, p=2.0, eps=1e-6, swap=False):
    def ref(a, pos, neg, r):
        import jax.numpy as jnp
        d_ap = _jnorm(a - pos + eps, p)
        d_an = _jnorm(a - neg + eps, p)
        if swap:
            d_an = jnp.minimum(d_an, _jnorm(pos - neg + eps, p))
        return _jreduce(jnp.maximum(margin + d_ap - d_an, 0.0), r, a.shape[0])
    return ref


def j_ranking(margin=0.0):
    def ref(x1, x2, y, r):
        import jax.numpy as jnp
        return _jreduce(jnp.maximum(-y * (x1 - x2) + margin, 0.0), r, x1.shape[0])
    return ref


def j_cosine(margin=0.0):
    """torch's formula: the squared norms each get 1e-12 before the square root."""
    def ref(x1, x2, y, r):
        import jax.numpy as jnp
        c = jnp.sum(x1 * x2, -1) / jnp.sqrt((jnp.sum(x1 * x1, -1) + 1e-12)
                                            * (jnp.sum(x2 * x2, -1) + 1e-12))
        v = jnp.where(y == 1, 1 - c, jnp.maximum(c - margin, 0.0))
        return _jreduce(v, r, x1.shape[0])
    return ref


CASES = [
    Case("contrastive", contrastive, pair_inputs(), t_contrastive(), j_contrastive(),
         on_every_backend=True),
    Case("contrastive-margin2-p1", contrastive, pair_inputs(margin=2.0, p=1.0),
         t_contrastive(margin=2.0, p=1.0), j_contrastive(margin=2.0, p=1.0),
         options={"margin": 2.0, "p": 1.0}),
    Case("contrastive-p3", contrastive, pair_inputs(margin=1.5, p=3.0),
         t_contrastive(margin=1.5, p=3.0), j_contrastive(margin=1.5, p=3.0),
         options={"margin": 1.5, "p": 3.0}),
    Case("contrastive-pinf-3d", contrastive, pair_inputs(shape=(3, 2, D)),
         t_contrastive(p=INF), j_contrastive(p=INF), options={"p": INF}),
    Case("triplet_margin", triplet_margin, triplet_inputs(), t_triplet(), j_triplet(),
         on_every_backend=True),
    Case("triplet_margin-swap", triplet_margin, triplet_inputs(swap=True),
         t_triplet(swap=True), j_triplet(swap=True), options={"swap": True}),
    Case("triplet_margin-p1-margin", triplet_margin, triplet_inputs(margin=0.5, p=1.0),
         t_triplet(margin=0.5, p=1.0), j_triplet(margin=0.5, p=1.0),
         options={"margin": 0.5, "p": 1.0}),
    Case("triplet_margin-pinf-swap-eps", triplet_margin,
         triplet_inputs(p=INF, eps=0.1, swap=True),
         t_triplet(p=INF, eps=0.1, swap=True), j_triplet(p=INF, eps=0.1, swap=True),
         options={"p": INF, "eps": 0.1, "swap": True}),
    Case("triplet_margin-p3-3d", triplet_margin, triplet_inputs(shape=(2, 3, D), p=3.0),
         t_triplet(p=3.0), j_triplet(p=3.0), options={"p": 3.0}),
    Case("margin_ranking", margin_ranking, ranking_inputs(), t_ranking(), j_ranking(),
         on_every_backend=True),
    Case("margin_ranking-margin-2d", margin_ranking, ranking_inputs((N, 3), margin=0.5),
         t_ranking(0.5), j_ranking(0.5), options={"margin": 0.5}),
    Case("cosine_embedding", cosine_embedding, pair_inputs(labels=(1.0, -1.0), cosine=True,
                                                           margin=0.0),
         t_cosine(), j_cosine(), on_every_backend=True),
    Case("cosine_embedding-margin", cosine_embedding,
         pair_inputs(labels=(1.0, -1.0), cosine=True, margin=-0.3),
         t_cosine(-0.3), j_cosine(-0.3), options={"margin": -0.3}),
]
