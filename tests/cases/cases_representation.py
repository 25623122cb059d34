"""Cases of the representation losses (info_nce, clip_loss, siglip_loss, supcon_loss) for
the generic suites of ``tests/catalog``.

References, written out in torch (and JAX for the two-tower losses) from the published
code, with torch autograd / jax.grad for the gradients:

* NT-Xent: SimCLR's symmetric 2N loss (Chen et al. 2020, Algorithm 1): the 2N x 2N
  cosine similarities over the temperature, the diagonal left out, a cross-entropy per
  row whose class is the other view; a pair's value is the mean of its two rows;
* CLIP: open_clip's ``ClipLoss`` (``src/open_clip/loss.py``): ``logit_scale * img @
  txt.T`` on normalised features, ``(CE(logits, arange) + CE(logits.T, arange)) / 2``,
  here per pair, with ``logit_scale = exp(log_scale)`` as the model computes it;
* SigLIP: big_vision's ``big_vision/trainers/proj/image_text/siglip.py``: ``logits * t +
  b``, ``loglik = log_sigmoid((2 eye - 1) * logits)``, ``nll = -sum(loglik, -1)``, here
  per image, with ``t = exp(log_scale)`` (``two_towers.py``: ``out["t"] = exp(t)``);
* SupCon: HobbitLong/SupContrast ``losses.py`` (``SupConLoss.forward``) line by line
  (views unbound into the contrast set, the self-contrast mask, the max shift, anchors
  without positives at 0), the anchors' values averaged per example.

The generators keep the batch small (N <= 8). Nothing here comes from losskit.
"""

from __future__ import annotations

import math

import numpy as np

from loss_cases import Case, _reduce_torch
from losskit.losses.self_supervised import clip_loss, info_nce, siglip_loss, supcon_loss

N, D = 6, 4


# ---------------------------------------------------------------- input generators
def two_views(n=N, d=D):
    def make(rng):
        z1 = rng.normal(size=(n, d))
        return z1, z1 + 0.7 * rng.normal(size=(n, d))
    return make


def two_towers(n=N, d=D, bias=False):
    def make(rng):
        img = rng.normal(size=(n, d))
        txt = img + 0.8 * rng.normal(size=(n, d))
        out = (img, txt, np.array(math.log(4.0) + 0.1 * rng.normal()))
        if bias:
            out += (np.array(-1.0 + 0.1 * rng.normal()),)
        return out
    return make


def labelled_views(n=N, views=2, d=D):
    def make(rng):
        f = rng.normal(size=(n, views, d)) if views else rng.normal(size=(n, d))
        y = np.arange(n) % 3  # every class twice: every anchor has a positive
        return f, y
    return make


# ---------------------------------------------------------------- torch references
def t_info_nce(temperature=0.1):
    def ref(z1, z2, r, torch):
        F = torch.nn.functional
        n = z1.shape[0]
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        s = z @ z.T / temperature
        s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool), -math.inf)
        pos = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        rows = F.cross_entropy(s, pos, reduction="none")
        return _reduce_torch((rows[:n] + rows[n:]) / 2, r, n)
    return ref


def t_clip(img, txt, log_scale, r, torch):
    F = torch.nn.functional
    logits = log_scale.exp() * F.normalize(img, dim=1) @ F.normalize(txt, dim=1).T
    labels = torch.arange(img.shape[0])
    v = (F.cross_entropy(logits, labels, reduction="none")
         + F.cross_entropy(logits.T, labels, reduction="none")) / 2
    return _reduce_torch(v, r, img.shape[0])


def t_siglip(img, txt, log_scale, bias, r, torch):
    F = torch.nn.functional
    logits = F.normalize(img, dim=1) @ F.normalize(txt, dim=1).T
    logits = logits * log_scale.exp() + bias
    m1_diag1 = 2 * torch.eye(img.shape[0], dtype=logits.dtype) - 1
    nll = -F.logsigmoid(m1_diag1 * logits).sum(-1)
    return _reduce_torch(nll, r, img.shape[0])


def t_supcon(temperature=0.1, base_temperature=0.07, contrast_mode="all"):
    def ref(features, labels, r, torch):
        F = torch.nn.functional
        f = F.normalize(features, dim=-1)
        if f.ndim == 2:
            f = f[:, None, :]
        bsz, views = f.shape[:2]
        mask = (labels[:, None] == labels[None, :]).to(f.dtype)
        contrast = torch.cat(torch.unbind(f, dim=1), dim=0)
        if contrast_mode == "one":
            anchor, anchor_count = f[:, 0], 1
        else:
            anchor, anchor_count = contrast, views
        adc = anchor @ contrast.T / temperature
        logits = adc - adc.max(dim=1, keepdim=True)[0].detach()
        mask = mask.repeat(anchor_count, views)
        logits_mask = torch.ones_like(mask)
        idx = torch.arange(bsz * anchor_count)
        logits_mask[idx, idx] = 0
        mask = mask * logits_mask
        exp_logits = torch.exp(logits) * logits_mask
        log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
        pairs = mask.sum(1)
        pairs = torch.where(pairs < 1e-6, 1, pairs)
        mean_log_prob_pos = (mask * log_prob).sum(1) / pairs
        loss = -(temperature / base_temperature) * mean_log_prob_pos
        per_example = loss.view(anchor_count, bsz).mean(0)
        return _reduce_torch(per_example, r, bsz)
    return ref


# ---------------------------------------------------------------- JAX references
def j_clip(img, txt, log_scale, r):
    import jax.numpy as jnp
    import optax

    def unit(x):
        return x / jnp.linalg.norm(x, axis=1, keepdims=True)
    logits = jnp.exp(log_scale) * unit(img) @ unit(txt).T
    labels = jnp.arange(img.shape[0])
    ce = optax.losses.softmax_cross_entropy_with_integer_labels
    v = (ce(logits, labels) + ce(logits.T, labels)) / 2
    return jnp.sum(v) if r == "sum" else jnp.mean(v)


def j_siglip(img, txt, log_scale, bias, r):
    import jax
    import jax.numpy as jnp

    def unit(x):
        return x / jnp.linalg.norm(x, axis=1, keepdims=True)
    logits = jnp.dot(unit(img), unit(txt).T) * jnp.exp(log_scale) + bias
    eye = jnp.eye(img.shape[0])
    m1_diag1 = -jnp.ones_like(logits) + 2 * eye
    nll = -jnp.sum(jax.nn.log_sigmoid(m1_diag1 * logits), axis=-1)
    return jnp.sum(nll) if r == "sum" else jnp.mean(nll)


CASES = [
    Case("info_nce", info_nce, two_views(), t_info_nce(0.5), options={"temperature": 0.5},
         on_every_backend=True),
    Case("info_nce-blocks", info_nce, two_views(n=5), t_info_nce(0.2),
         options={"temperature": 0.2, "chunk_size": 3}),
    Case("clip_loss", clip_loss, two_towers(), t_clip, j_clip, on_every_backend=True),
    Case("clip_loss-blocks", clip_loss, two_towers(n=7), t_clip,
         options={"chunk_size": 2}),
    Case("siglip_loss", siglip_loss, two_towers(bias=True), t_siglip, j_siglip,
         on_every_backend=True),
    Case("siglip_loss-blocks", siglip_loss, two_towers(n=5, bias=True), t_siglip,
         options={"chunk_size": 2}),
    Case("supcon_loss", supcon_loss, labelled_views(), t_supcon(0.5, 0.07),
         options={"temperature": 0.5}, on_every_backend=True),
    Case("supcon_loss-one-blocks", supcon_loss, labelled_views(views=3),
         t_supcon(0.3, 0.3, "one"),
         options={"temperature": 0.3, "base_temperature": 0.3, "contrast_mode": "one",
                  "chunk_size": 4}),
    Case("supcon_loss-2d", supcon_loss, labelled_views(views=0), t_supcon(0.5, 0.5),
         options={"temperature": 0.5, "base_temperature": 0.5}),
]

for _c in CASES:
    _c.coupled = True  # every example is a negative of the others (see Case.coupled)
