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


# ================================================================ in-batch losses
# batch_triplet_loss, batch_contrastive_loss, multi_similarity_loss, circle_loss,
# arcface_loss, cosface_loss. References: the published formulas written out on the full
# (N, N) and (N, N, N) arrays in torch and in jax.numpy (every triplet enumerated), with
# the averaging of pytorch-metric-learning (the mean over the non-zero terms, or over all
# terms); the tests of tests/losses/test_metric_mining.py compare with that library itself.
# Eight embeddings of three classes, in general position (no ties, no term at a kink).
from losskit.losses.margin_heads import arcface_loss, cosface_loss  # noqa: E402
from losskit.losses.metric_mining import (batch_contrastive_loss, batch_triplet_loss,  # noqa: E402
                                          circle_loss, multi_similarity_loss)

NB, DB, CB = 8, 4, 3


def batch_inputs(rng):
    x = rng.normal(size=(NB, DB))
    y = rng.permutation(np.arange(NB) % CB)
    return x, y


def head_inputs(rng):
    x = rng.normal(size=(NB, DB))
    w = rng.normal(size=(CB, DB))
    y = rng.permutation(np.arange(NB) % CB)
    return x, w, y


class _T:
    """The few array operations the references need, in torch."""

    @staticmethod
    def lib():
        import torch
        return torch

    @staticmethod
    def sum(a, ax):
        return a.sum(ax)

    @staticmethod
    def amax(a, ax):
        return a.amax(ax)

    @staticmethod
    def amin(a, ax):
        return a.amin(ax)

    @staticmethod
    def eye(n, like):
        import torch
        return torch.eye(n, dtype=torch.bool)

    @staticmethod
    def f(mask, like):
        return mask.to(like.dtype)

    @staticmethod
    def detach(a):
        return a.detach()


class _J:
    @staticmethod
    def lib():
        import jax.numpy as jnp
        return jnp

    @staticmethod
    def sum(a, ax):
        return a.sum(ax)

    @staticmethod
    def amax(a, ax):
        return a.max(ax)

    @staticmethod
    def amin(a, ax):
        return a.min(ax)

    @staticmethod
    def eye(n, like):
        import jax.numpy as jnp
        return jnp.eye(n, dtype=bool)

    @staticmethod
    def f(mask, like):
        return mask.astype(like.dtype)

    @staticmethod
    def detach(a):
        import jax
        return jax.lax.stop_gradient(a)


def _unit(o, x):
    L = o.lib()
    n = L.sqrt(o.sum(x * x, -1))
    return x / L.where(n > 1e-12, n, 1e-12 + 0 * n)[:, None]


def _dist(o, u, distance):
    """Euclidean distances from explicit differences (the diagonal kept out of the sqrt)."""
    L = o.lib()
    if distance == "cosine":
        return 1.0 - u @ u.T
    diff = u[:, None, :] - u[None, :, :]
    sq = o.sum(diff * diff, -1)
    eye = o.eye(u.shape[0], u)
    return L.where(eye, 0 * sq, L.sqrt(L.where(eye, 1.0 + 0 * sq, sq)))


def _masks(o, y, like):
    same = y[:, None] == y[None, :]
    eye = o.eye(y.shape[0], like)
    return same & ~eye, ~same


def _reduce_terms(o, per_anchor, parts, r, average):
    """none/sum/batchmean of the per-anchor sums; mean: each part's terms over its count
    (non-zero terms or all terms), the parts' means added (pytorch-metric-learning)."""
    n = per_anchor.shape[0]
    if r == "none":
        return per_anchor
    if r == "sum":
        return o.sum(per_anchor, 0)
    if r == "batchmean":
        return o.sum(per_anchor, 0) / n
    out = 0.0
    for terms, selected in parts:
        count = o.f((terms > 0) if average == "nonzero" else selected, terms).sum()
        out = out + terms.sum() / count
    return out


def ref_triplet(o, margin=0.2, mining="all", distance="euclidean", normalize=True,
                average="nonzero"):
    def ref(x, y, r, *rest):
        L = o.lib()
        u = _unit(o, x) if normalize or distance == "cosine" else x
        d = _dist(o, u, distance)
        pos, neg = _masks(o, y, d)
        if mining == "hard":
            big = 1e9
            dp = o.amax(L.where(pos, d, -big + 0 * d), 1)
            dn = o.amin(L.where(neg, d, big + 0 * d), 1)
            t = dp - dn + margin
            sel = pos.any(1) & neg.any(1)
            terms = L.where(sel & (t > 0), t, 0 * t)
            return _reduce_terms(o, terms, [(terms, sel)], r, average)
        t = d[:, :, None] - d[:, None, :] + margin  # [a, p, n]
        sel = pos[:, :, None] & neg[:, None, :]
        if mining == "semihard":
            # pytorch-metric-learning's TripletMarginMiner: 0 < d_an - d_ap <= margin
            sel = sel & (d[:, None, :] > d[:, :, None]) & (t > 0)
        terms = L.where(sel & (t > 0), t, 0 * t)
        return _reduce_terms(o, o.sum(o.sum(terms, 2), 1), [(terms, sel)], r, average)
    return ref


def ref_contrastive(o, pos_margin=0.0, neg_margin=1.0, distance="euclidean",
                    normalize=True, average="nonzero"):
    def ref(x, y, r, *rest):
        L = o.lib()
        u = _unit(o, x) if normalize or distance == "cosine" else x
        d = _dist(o, u, distance)
        pos, neg = _masks(o, y, d)
        tp = L.where(pos & (d > pos_margin), d - pos_margin, 0 * d)
        tn = L.where(neg & (d < neg_margin), neg_margin - d, 0 * d)
        return _reduce_terms(o, o.sum(tp + tn, 1), [(tp, pos), (tn, neg)], r, average)
    return ref


def ref_ms(o, alpha=2.0, beta=50.0, base=0.5, average="all"):
    def ref(x, y, r, *rest):
        L = o.lib()
        u = _unit(o, x)
        s = u @ u.T
        pos, neg = _masks(o, y, s)
        ep = L.where(pos, L.exp(-alpha * (s - base)), 0 * s)
        en = L.where(neg, L.exp(beta * (s - base)), 0 * s)
        v = L.log(1 + o.sum(ep, 1)) / alpha + L.log(1 + o.sum(en, 1)) / beta
        return _reduce_terms(o, v, [(v, v == v)], r, average)
    return ref


def ref_circle(o, margin=0.4, gamma=80.0, average="nonzero", detach_weights=False):
    """Sun et al. 2020 eq. 4 with the exact derivative (no weights held constant)."""
    def ref(x, y, r, *rest):
        L = o.lib()
        u = _unit(o, x)
        s = u @ u.T
        pos, neg = _masks(o, y, s)
        ap = L.where(1 + margin - s > 0, 1 + margin - s, 0 * s)
        an = L.where(s + margin > 0, s + margin, 0 * s)
        sp = L.where(pos, L.exp(-gamma * ap * (s - 1 + margin)), 0 * s)
        sn = L.where(neg, L.exp(gamma * an * (s - margin)), 0 * s)
        z = L.log(o.sum(sp, 1)) + L.log(o.sum(sn, 1))
        v = L.log(1 + L.exp(z))
        return _reduce_terms(o, v, [(v, v == v)], r, average)
    return ref


def ref_head(o, kind, scale=64.0, margin=0.5, easy_margin=False):
    """Deng et al. 2019 (ArcFace; the cos(theta) - m sin m branch beyond pi - m, as
    InsightFace) and Wang et al. 2018 (CosFace): cross-entropy of the margin logits."""
    def ref(x, w, y, r, *rest):
        L = o.lib()
        c = _unit(o, x) @ _unit(o, w).T
        hot = y[:, None] == L.arange(w.shape[0])[None, :]
        cy = o.sum(L.where(hot, c, 0 * c), 1)
        if kind == "cosface":
            psi = cy - margin
        else:
            theta = L.arccos(cy)
            arc = L.cos(theta + margin)
            if easy_margin:
                psi = L.where(cy > 0, arc, cy)
            else:
                psi = L.where(theta <= math.pi - margin, arc, cy - margin * math.sin(margin))
        z = scale * L.where(hot, psi[:, None], c)
        m = o.detach(o.amax(z, 1))
        v = L.log(o.sum(L.exp(z - m[:, None]), 1)) + m - scale * psi
        n = v.shape[0]
        return {"none": v, "sum": v.sum(), "batchmean": v.sum() / n, "mean": v.sum() / n}[r]
    return ref


def _pair(fn, **kw):
    """(torch reference, jax reference) of one reference builder."""
    t = fn(_T, **kw)
    j = fn(_J, **kw)
    return (lambda *a: t(*a[:-1])), (lambda *a: j(*a))


def _head_pair(kind, **kw):
    t = ref_head(_T, kind, **kw)
    j = ref_head(_J, kind, **kw)
    return (lambda *a: t(*a[:-1])), (lambda *a: j(*a))


def _batch_case(id, loss, fn, options, **flags):
    t, j = _pair(fn, **options)
    return Case(id, loss, batch_inputs, t, j, options=options, coupled=True,
                mean_of_terms=True, **flags)


CASES += [
    _batch_case("batch_triplet_loss", batch_triplet_loss, ref_triplet, {},
                on_every_backend=True),
    _batch_case("batch_triplet_loss-hard-cosine", batch_triplet_loss, ref_triplet,
                {"mining": "hard", "distance": "cosine", "margin": 0.3}),
    _batch_case("batch_triplet_loss-semihard-raw-all", batch_triplet_loss, ref_triplet,
                {"mining": "semihard", "margin": 1.0, "normalize": False, "average": "all"}),
    _batch_case("batch_contrastive_loss", batch_contrastive_loss, ref_contrastive, {},
                on_every_backend=True),
    _batch_case("batch_contrastive_loss-cosine-all", batch_contrastive_loss, ref_contrastive,
                {"distance": "cosine", "pos_margin": 0.2, "neg_margin": 0.9,
                 "average": "all"}),
    _batch_case("multi_similarity_loss", multi_similarity_loss, ref_ms, {},
                on_every_backend=True),
    _batch_case("multi_similarity_loss-nonzero", multi_similarity_loss, ref_ms,
                {"alpha": 1.0, "beta": 5.0, "base": 0.1, "average": "nonzero"}),
    _batch_case("circle_loss-exact", circle_loss, ref_circle,
                {"margin": 0.25, "gamma": 16.0, "detach_weights": False},
                on_every_backend=True),
]
for _id, _loss, _kind, _opts, _flags in (
        ("arcface_loss", arcface_loss, "arcface", {"scale": 8.0, "margin": 0.5},
         {"on_every_backend": True}),
        ("arcface_loss-wide-margin", arcface_loss, "arcface", {"scale": 4.0, "margin": 1.4},
         {}),
        ("arcface_loss-easy", arcface_loss, "arcface",
         {"scale": 8.0, "margin": 0.3, "easy_margin": True}, {}),
        ("cosface_loss", cosface_loss, "cosface", {"scale": 8.0, "margin": 0.35},
         {"on_every_backend": True})):
    _t, _j = _head_pair(_kind, **_opts)
    # coupled: the class weights are shared by every row (not repeated with them)
    CASES.append(Case(_id, _loss, head_inputs, _t, _j, options=_opts, coupled=True,
                      **_flags))
