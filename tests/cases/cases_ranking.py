"""Cases of the ranking losses (pairwise_logistic_loss, lambdarank_loss,
ranking_softmax_loss, listmle_loss) for the generic suites of ``tests/catalog``.

References: Optax's ``ranking_softmax_loss`` (JAX), and the published formulas written
out in torch, list by list, on the valid items only, with torch autograd for the
gradients:

* RankNet (Burges et al. 2005): the binary cross-entropy of ``s_i - s_j`` against the
  target probability 1 for every pair with ``y_i > y_j``, summed per list;
* LambdaRank (Burges 2010, "From RankNet to LambdaRank to LambdaMART", section 4): the
  same pairs weighted by ``|G_i - G_j| |1/log2(1 + r_i) - 1/log2(1 + r_j)| / IDCG`` with
  ``G = 2^y - 1``, ``r`` the ranks of the current scores (a stable sort, descending) and
  the weights computed from detached scores (held fixed, as LambdaRank does);
* ListNet's top-one loss with the labels as the target (Cao et al. 2007), as Optax
  defines it: ``-sum(y * log_softmax(s))``;
* ListMLE (Xia et al. 2008): the Plackett-Luce negative log-likelihood of the
  permutation that sorts the labels descending (a stable sort), with a reversed
  ``logcumsumexp`` (as allRank's ``listMLE`` without its ``eps``).

Each reduces the per-list values like losskit: the mean over the lists that have at
least one valid item. Nothing here comes from losskit.
"""

from __future__ import annotations

import numpy as np

from loss_cases import Case
from losskit.losses.ranking import (lambdarank_loss, listmle_loss, pairwise_logistic_loss,
                                    ranking_softmax_loss)

N, L = 6, 5


# ---------------------------------------------------------------- input generators
def lists(shape=(N, L), grades=4, ties=True):
    """Scores (normal, no two within 0.05 of each other in a list, so that the ranks of
    LambdaRank stay put under finite differences) and graded labels 0 .. grades-1, every
    list with at least two different labels."""
    def make(rng):
        s = rng.normal(scale=1.5, size=shape)
        flat = s.reshape(-1, shape[-1])
        for row in flat:
            order = np.argsort(row)
            gaps = np.diff(row[order])
            for k in np.nonzero(gaps < 0.05)[0]:
                row[order[k + 1:]] += 0.05
        y = rng.integers(0, grades, size=shape).astype(np.float64)
        y2 = y.reshape(-1, shape[-1])
        y2[:, 0], y2[:, -1] = grades - 1, 0  # something to rank in every list
        if not ties:
            y2[:] = np.argsort(rng.random(size=y2.shape), axis=-1)
        return flat.reshape(shape), y2.reshape(shape)
    return make


# ---------------------------------------------------------------- torch references
def _per_list(fn):
    """A torch reference from a function of one list's valid (scores, labels)."""
    def ref(s, y, r, torch, where=None):
        L_ = s.shape[-1]
        s2, y2 = s.reshape(-1, L_), y.reshape(-1, L_).to(s.dtype)
        w2 = (torch.ones_like(s2, dtype=torch.bool) if where is None
              else torch.as_tensor(np.asarray(where)).reshape(-1, L_))
        values = []
        for k in range(s2.shape[0]):
            keep = torch.nonzero(w2[k]).flatten()
            values.append(fn(s2[k][keep], y2[k][keep], torch) if len(keep)
                          else s2[k][keep].sum())  # no valid item: 0
        v = torch.stack(values).reshape(s.shape[:-1]) if values else s.sum(-1)
        if r == "none":
            return v
        if r == "sum":
            return v.sum()
        if r == "batchmean":
            return v.sum() / (s.shape[0] if s.ndim > 1 else 1)
        count = w2.any(-1).sum()
        return v.sum() / count if count > 0 else v.sum() * 0.0
    return ref


def _ranknet(s, y, torch):
    F = torch.nn.functional
    i, j = torch.nonzero(y[:, None] > y[None, :], as_tuple=True)
    diff = s[i] - s[j]
    return F.binary_cross_entropy_with_logits(diff, torch.ones_like(diff), reduction="sum")


def _lambdarank(s, y, torch):
    F = torch.nn.functional
    n = s.shape[0]
    order = torch.argsort(-s.detach(), stable=True)
    rank = torch.empty(n, dtype=s.dtype)
    rank[order] = torch.arange(1, n + 1, dtype=s.dtype)
    gain = 2.0 ** y - 1.0
    ideal = torch.sort(gain, descending=True).values
    idcg = (ideal / torch.log2(torch.arange(2, n + 2, dtype=s.dtype))).sum()
    if idcg == 0:
        return s.sum() * 0.0
    disc = 1.0 / torch.log2(1.0 + rank)
    i, j = torch.nonzero(y[:, None] > y[None, :], as_tuple=True)
    delta = (gain[i] - gain[j]).abs() * (disc[i] - disc[j]).abs() / idcg
    return -(delta.detach() * F.logsigmoid(s[i] - s[j])).sum()


def _softmax(s, y, torch):
    return -(y * torch.log_softmax(s, dim=-1)).sum()


def _listmle(s, y, torch):
    order = torch.argsort(-y, stable=True)
    ss = s[order]
    tail = torch.logcumsumexp(ss.flip(0), dim=0).flip(0)  # log sum_{m >= k} exp(s_pi(m))
    return (tail - ss).sum()


t_ranknet = _per_list(_ranknet)
t_lambdarank = _per_list(_lambdarank)
t_ranking_softmax = _per_list(_softmax)
t_listmle = _per_list(_listmle)


# ---------------------------------------------------------------- JAX (Optax)
def j_ranking_softmax(s, y, r, where=None, weights=None):
    import jax.numpy as jnp
    import optax

    v = optax.losses.ranking_softmax_loss(s, y, where=where, weights=weights,
                                          reduce_fn=None)
    if r == "none":
        return v
    if r == "sum":
        return jnp.sum(v)
    if r == "batchmean":
        return jnp.sum(v) / s.shape[0]
    return optax.losses.ranking_softmax_loss(s, y, where=where, weights=weights)


CASES = [
    Case("pairwise_logistic_loss", pairwise_logistic_loss, lists(), t_ranknet,
         on_every_backend=True),
    Case("pairwise_logistic_loss-3d", pairwise_logistic_loss, lists((2, 3, 4)), t_ranknet),
    Case("lambdarank_loss", lambdarank_loss, lists(), t_lambdarank, on_every_backend=True),
    Case("lambdarank_loss-distinct", lambdarank_loss, lists(ties=False), t_lambdarank),
    Case("ranking_softmax_loss", ranking_softmax_loss, lists(), t_ranking_softmax,
         j_ranking_softmax, on_every_backend=True),
    Case("ranking_softmax_loss-3d", ranking_softmax_loss, lists((2, 3, 4)),
         t_ranking_softmax, j_ranking_softmax),
    Case("listmle_loss", listmle_loss, lists(), t_listmle, on_every_backend=True),
    Case("listmle_loss-distinct", listmle_loss, lists(ties=False), t_listmle),
]
