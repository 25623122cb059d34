"""Cases of the Fenchel-Young losses (``sparsemax_loss``, ``multiclass_sparsemax_loss``)
for the generic suites in ``tests/catalog``.

References, all independent of losskit:

* ``multiclass_sparsemax_loss``: sparsemax written out in torch from Martins & Astudillo's
  Algorithm 1 (sort, cumulative sum, support size, threshold) and the textbook
  Fenchel-Young form :math:`\\langle z, p\\rangle - \\tfrac12\\lVert p\\rVert^2 +
  \\tfrac12\\lVert t\\rVert^2 - \\langle z, t\\rangle`, differentiated by torch autograd;
  ``optax.losses.multiclass_sparsemax_loss`` for labels, and for distributions Optax's
  ``make_fenchel_young_loss`` of the sparsemax conjugate built on
  ``optax.projections.projection_simplex``, plus :math:`\\tfrac12\\lVert t\\rVert^2`;
* ``sparsemax_loss``: sparse plus written out in torch (``sparseplus(z) - z t - t (1 - t)``,
  Blondel et al. 2020, sec. 4.4); ``optax.losses.sparsemax_loss`` for labels 0/1.
"""

from __future__ import annotations

import numpy as np

from loss_cases import Case, _jreduce, _reduce_torch, logits_soft, scores_labels
from losskit.losses.fenchel_young import multiclass_sparsemax_loss, sparsemax_loss

N, K = 6, 4


# ---------------------------------------------------------------- torch references
def torch_sparsemax(z, torch, dim=-1):
    """Martins & Astudillo's Algorithm 1 in torch (sorted scores, the support's size)."""
    z = torch.movedim(z, dim, -1)
    k = z.shape[-1]
    srt, _ = torch.sort(z, dim=-1, descending=True)
    cum = torch.cumsum(srt, dim=-1)
    ranks = torch.arange(1, k + 1, dtype=z.dtype)
    size = (1 + ranks * srt > cum).sum(dim=-1, keepdim=True)
    tau = (torch.gather(cum, -1, size - 1) - 1) / size
    return torch.movedim(torch.clamp(z - tau, min=0), -1, dim)


def t_multiclass_sparsemax(axis=-1, ignore_index=None):
    def ref(z, t, r, torch):
        p = torch_sparsemax(z, torch, dim=axis)
        keep = None
        if not t.dtype.is_floating_point:
            keep = torch.ones(t.shape, dtype=z.dtype)
            if ignore_index is not None:
                keep = (t != ignore_index).to(z.dtype)
                t = torch.where(t == ignore_index, torch.zeros_like(t), t)
            t = torch.movedim(torch.nn.functional.one_hot(t, z.shape[axis]).to(z.dtype), -1,
                              axis)
        v = ((z * p).sum(axis) - 0.5 * (p * p).sum(axis) + 0.5 * (t * t).sum(axis)
             - (z * t).sum(axis))
        if keep is not None:
            v = v * keep
            if r == "mean":
                return v.sum() / keep.sum()
        return _reduce_torch(v, r, z.shape[0])
    return ref


def t_sparsemax_binary(z, t, r, torch):
    plus = torch.where(z <= -1, torch.zeros_like(z),
                       torch.where(z >= 1, z, (z + 1) ** 2 / 4))
    return _reduce_torch(plus - z * t - t * (1 - t), r, z.shape[0])


# ---------------------------------------------------------------- jax / optax references
def j_multiclass_sparsemax(z, t, r):
    import jax.numpy as jnp
    import optax

    if jnp.issubdtype(t.dtype, jnp.integer):
        return _jreduce(optax.losses.multiclass_sparsemax_loss(z, t), r, z.shape[0])

    def conjugate(theta):  # <theta, p> - |p|^2 / 2, p the projection onto the simplex
        p = optax.projections.projection_simplex(theta)
        return jnp.dot(theta, p) - 0.5 * jnp.dot(p, p)

    fy = optax.losses.make_fenchel_young_loss(max_fun=conjugate)
    return _jreduce(fy(z, t) + 0.5 * jnp.sum(t * t, axis=-1), r, z.shape[0])


def j_sparsemax_binary(z, t, r):
    import optax
    return _jreduce(optax.losses.sparsemax_loss(z, t), r, z.shape[0])


# ---------------------------------------------------------------- inputs
def binary_scores(shape=(N, K), hard=True):
    def make(rng):
        z = rng.normal(scale=2.0, size=shape)
        t = rng.random(size=shape)
        return z, ((t > 0.5).astype(float) if hard else t)
    return make


def labels_with_ignored(shape=(N, K), ignore=-100):
    def make(rng):
        z, y = scores_labels(shape)(rng)
        y[::3] = ignore
        return z, y
    return make


def scores_labels_axis1(shape=(3, K, 5)):
    def make(rng):
        return rng.normal(scale=2.0, size=shape), rng.integers(0, shape[1], size=(3, 5))
    return make


CASES = [
    Case("multiclass_sparsemax_loss", multiclass_sparsemax_loss, scores_labels(),
         t_multiclass_sparsemax(), j_multiclass_sparsemax, on_every_backend=True),
    Case("multiclass_sparsemax_loss-soft", multiclass_sparsemax_loss, logits_soft(),
         t_multiclass_sparsemax(), j_multiclass_sparsemax),
    Case("multiclass_sparsemax_loss-K9", multiclass_sparsemax_loss, scores_labels((N, 9)),
         t_multiclass_sparsemax(), j_multiclass_sparsemax),
    Case("multiclass_sparsemax_loss-axis1", multiclass_sparsemax_loss, scores_labels_axis1(),
         t_multiclass_sparsemax(axis=1), options={"axis": 1}),
    Case("multiclass_sparsemax_loss-ignore", multiclass_sparsemax_loss, labels_with_ignored(),
         t_multiclass_sparsemax(ignore_index=-100), options={"ignore_index": -100}),
    Case("sparsemax_loss", sparsemax_loss, binary_scores(), t_sparsemax_binary,
         j_sparsemax_binary, on_every_backend=True),
    Case("sparsemax_loss-soft", sparsemax_loss, binary_scores(hard=False),
         t_sparsemax_binary),
]
