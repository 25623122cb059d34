"""Benchmark: value + gradient of EVERY catalog loss on the CPU, losskit vs PyTorch vs JAX.

One command (the table of the "Fused kernels for the whole catalog" issue)::

    python benchmarks/catalog.py --out benchmarks/CATALOG.md            # realistic sizes
    python benchmarks/catalog.py --scale 0.25 --out benchmarks/CATALOG.md  # 1/4 of them
    python benchmarks/catalog.py --quick                                # smoke run, < 2 min

Not part of the test suite. It iterates ``lk.catalog()``: every registered loss must have a
case in ``CASES`` below, else the script stops before timing anything (a new loss is then
benchmarked as soon as its case is written). Per family a realistic size (``--scale``
multiplies the batch dimension of each):

==================================  ======================================================
family (kind)                       size at ``--scale 1``
==================================  ======================================================
regression, pointwise classification  10M float32 elements (``(10_000_000,)``)
and margin losses (pointwise)
class-axis losses (row)             ``(4096, 1000)`` logits / probabilities, int labels
metric learning (row)               ``(65536, 128)`` embeddings (``margin_ranking``: the
                                    same ``(65536, 128)`` scores, pointwise)
overlap (dice, jaccard, tversky)    ``(16, 4, 128, 128)`` probabilities, one-hot masks
boxes                               1M box pairs ``(1_000_000, 4)``, ``x2 > x1``, ``y2 > y1``
linear_cross_entropy (matmul)       N 4096, d 256, V 8192 (+ bias), gradients of all three
ranking (list)                      ``(4096, 64)``: 4096 lists of 64 items, grades 0..4
sequence (ctc_loss)                 T 200, N 32, C 50, S 40 (``(T, N, C)`` log-probabilities)
language_models (grpo_loss)         B 256 completions, T 1024 tokens (log-probabilities,
                                    mask, advantages, old and reference log-probabilities)
representation (similarity)         N 4096 pairs, d 256 (``info_nce``: the 2N x 2N matrix;
                                    ``supcon_loss``: 2 views, 512 classes); gradients of
                                    every differentiable input
==================================  ======================================================

Contenders, all in **one process** with calls **interleaved** (repeat r calls every
contender once, the order rotated by r) as in ``benchmarks/run.py``:

* ``losskit``: ``loss.value_and_grad(*arrays, **options)`` on NumPy float32 (the default
  engine: numba fast paths where a loss has one, else the generic Array-API pipeline);
* ``losskit out=``: the same with the gradient written into a preallocated array (memory
  column; not for ``linear_cross_entropy``, whose ``wrt="all"`` returns three gradients);
* ``torch``: PyTorch's native loss where it has one (``F.mse_loss``, ``F.cross_entropy``,
  ``F.multi_margin_loss * K``, ...), its convention translated so that the number is the
  same loss; else PyTorch autograd of the formula written out here (the source of each
  formula is cited next to it, e.g. torchvision's box losses); forward + ``.backward()``,
  ``torch.set_num_threads(2)``, gradients of the same inputs as losskit's;
* ``jax``: ``jax.jit(jax.value_and_grad(optax loss))`` where Optax has the loss, inputs
  already on the device, ``block_until_ready``.

Before timing, each loss's value is checked against PyTorch's (and JAX's) at the (32, 10)
size and at the timed size: ``|losskit - torch| <= 1e-4 |torch|`` or the script stops
(a wrong convention mapping fails loudly); the relative error of the gradient
(``||g - g_torch|| / ||g_torch||``) is reported.

Numbers: medians of ``--repeats`` (default 5) interleaved calls after two warm-up calls;
**x floor** = median / (bytes of the inputs read once + the gradient written once, over
the ``np.copyto`` bandwidth measured in the same process, see ``run.bandwidth_gbs``);
**peak extra** = ``tracemalloc``'s peak over one call with losskit's gradient cache emptied
first (NumPy reports its allocations to tracemalloc; the returned gradient counts), and
the same for the ``out=`` call; **small** = one ``value_and_grad`` call at (32, 10)
(boxes (32, 4); ``linear_cross_entropy`` N 32, d 16, V 10), the mean of a batch of 200
calls, median over the repeats.

Targets (the issue's, checked in the same run): every loss <= 0.5x PyTorch's time; x floor
<= 3 for the pointwise and row kinds; peak extra <= the gradient's bytes and ~0 (< 1% of
the gradient) with ``out=``; small call <= 10 us. Each miss is listed with the
measurements that explain it: which losskit path ran (``fused`` = a registered NumPy fast
path accepted the call; ``generic`` = the Array-API pipeline), the time of the call with
``validate=False`` (the value-reading checks skipped), PyTorch's own x floor, and for an
x floor miss the arithmetic alone: the same call on a leading slice of the rows (at most
1 MiB of the first input and a quarter of its rows) repeated in cache, scaled to the full
size; above 3x the floor too, the formula's arithmetic (its transcendental functions, a
row's sort) and not the memory traffic sets the time.

The script re-runs itself in a subprocess with ``OMP_WAIT_POLICY=PASSIVE`` (see
``benchmarks/run.py``: PyTorch's and numba's OpenMP threads otherwise spin against each
other on two cores); ``--omp-wait-policy ''`` leaves it alone. Options: ``--scale``,
``--repeats``, ``--quick`` (scale 0.01, 2 repeats), ``--losses mse,giou_loss`` (some
losses only), ``--no-jax``, ``--json PATH`` (also write the raw numbers),
``--from-json PATH`` (re-render the markdown of a saved run without timing anything).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024.0 * 1024.0
TORCH_LIMIT, FLOOR_LIMIT, SMALL_LIMIT_S = 0.5, 3.0, 10e-6
SMALL_INNER = 200
SLACK_MIB = 64 / 1024  # peak-memory slack: the call's own Python objects


# ---------------------------------------------------------------------------- inputs
class Gen:
    """Valid float32 inputs of each kind, from one seeded generator."""

    def __init__(self, seed=0):
        import numpy as np

        self.np = np
        self.rng = np.random.default_rng(seed)

    def normal(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape, dtype=self.np.float32) * scale).astype(
            self.np.float32)

    def uniform(self, lo, hi, *shape):
        return self.rng.uniform(lo, hi, size=shape).astype(self.np.float32)

    def binary(self, *shape):
        return (self.rng.random(shape) > 0.5).astype(self.np.float32)

    def signs(self, *shape):
        return self.binary(*shape) * 2 - 1

    def labels(self, n, k):
        return self.rng.integers(0, k, size=n).astype(self.np.int64)

    def softmax(self, *shape, axis=-1):
        z = self.normal(*shape)
        e = self.np.exp(z - z.max(axis=axis, keepdims=True))
        return (e / e.sum(axis=axis, keepdims=True)).astype(self.np.float32)

    def log_softmax(self, *shape):
        z = self.normal(*shape)
        m = z.max(axis=-1, keepdims=True)
        return (z - m - self.np.log(self.np.exp(z - m).sum(-1, keepdims=True))).astype(
            self.np.float32)

    def boxes(self, n):
        """(prediction, target) box pairs: targets in a 640 x 640 image, predictions the
        targets with their corners moved by up to 20% of the sides (so most pairs overlap),
        x2 > x1 and y2 > y1."""
        np = self.np
        xy = self.uniform(0, 560, n, 2)
        wh = self.uniform(4, 80, n, 2)
        t = np.concatenate([xy, xy + wh], axis=1)
        jitter = self.uniform(-0.2, 0.2, n, 4) * np.concatenate([wh, wh], axis=1)
        p = t + jitter
        lo = np.minimum(p[:, :2], p[:, 2:] - 1.0)
        p = np.concatenate([lo, np.maximum(p[:, 2:], lo + 1.0)], axis=1)
        return p.astype(np.float32), t.astype(np.float32)

    def onehot_masks(self, n, c, *spatial):
        np = self.np
        lab = self.rng.integers(0, c, size=(n, *spatial))
        return np.moveaxis(np.eye(c, dtype=np.float32)[lab], -1, 1).copy()


def sizes(scale: float) -> dict:
    def s(x, lo=1):
        return max(lo, int(round(x * scale)))

    return {"pointwise": s(10_000_000, 1000), "rows": s(4096, 8), "classes": 1000,
            "overlap_n": s(16), "boxes": s(1_000_000, 64), "emb_n": s(65536, 16),
            "emb_d": 128, "lce": (s(4096, 8), 256, 8192), "rank_n": s(4096, 8),
            "rep": (s(4096, 8), 256)}


# ---------------------------------------------------------------------------- the cases
# A case builder takes (Gen, sizes dict, small: bool) and returns a dict:
#   arrays  : losskit's positional NumPy inputs (the first is the prediction)
#   options : losskit keyword options (e.g. image_size=); also used by the references
#   wrt     : losskit's wrt= (None: the prediction only)
#   grad_of : indices of the arrays PyTorch differentiates (the same inputs as ``wrt``)
#   torch   : f(*tensors) -> scalar tensor;  torch_src: what it is (native or written out)
#   jax     : f(*jax arrays) -> scalar, or None;  jax_src
#   kind    : "pointwise" | "row" | "overlap" | "boxes" | "matmul"
CASES: dict = {}


def case(*names):
    def deco(fn):
        for n in names:
            CASES[n] = fn
        return fn
    return deco


def _F():
    import torch.nn.functional as F
    return F


def _optax():
    import optax
    return optax


def _jnp():
    import jax.numpy as jnp
    return jnp


def _pw(g, sz, small):
    return (32, 10) if small else (sz["pointwise"],)


def _rows(sz, small):
    return (32, 10) if small else (sz["rows"], sz["classes"])


# ----- regression (pointwise)
@case("mse", "l2_loss", "mae", "huber", "smooth_l1", "log_cosh", "quantile")
def _regression(name, g, sz, small):
    shape = _pw(g, sz, small)
    F = _F()
    y, t = g.normal(*shape), g.normal(*shape)
    import torch

    jax_fn, jax_src = None, ""
    if name == "mse":
        tf, src = F.mse_loss, "F.mse_loss"
        jax_fn, jax_src = (lambda a, b: _optax().losses.squared_error(a, b).mean()), \
            "optax.squared_error(...).mean()"
    elif name == "l2_loss":
        tf, src = (lambda a, b: 0.5 * F.mse_loss(a, b)), "0.5 * F.mse_loss"
        jax_fn, jax_src = (lambda a, b: _optax().losses.l2_loss(a, b).mean()), \
            "optax.l2_loss(...).mean()"
    elif name == "mae":
        tf, src = F.l1_loss, "F.l1_loss"
    elif name == "huber":
        tf, src = (lambda a, b: F.huber_loss(a, b, delta=1.0)), "F.huber_loss(delta=1)"
        jax_fn, jax_src = (lambda a, b: _optax().losses.huber_loss(a, b, delta=1.0).mean()), \
            "optax.huber_loss(delta=1).mean()"
    elif name == "smooth_l1":
        tf, src = (lambda a, b: F.smooth_l1_loss(a, b, beta=1.0)), "F.smooth_l1_loss(beta=1)"
        jax_fn, jax_src = (lambda a, b: _optax().losses.huber_loss(a, b, delta=1.0).mean()), \
            "optax.huber_loss(delta=1).mean() (= smooth L1, beta 1)"
    elif name == "log_cosh":
        def tf(a, b):  # optax.log_cosh's stable formula written out: d + softplus(-2d) - log 2
            d = a - b
            return (d + F.softplus(-2.0 * d) - math.log(2.0)).mean()
        src = "written out (optax.losses.log_cosh's formula)"
        jax_fn, jax_src = (lambda a, b: _optax().losses.log_cosh(a, b).mean()), \
            "optax.log_cosh(...).mean()"
    else:  # quantile (pinball), q = 0.5
        def tf(a, b):  # Koenker and Bassett 1978: max(q e, (q - 1) e), e = t - y
            e = b - a
            return torch.maximum(0.5 * e, -0.5 * e).mean()
        src = "written out (pinball loss, Koenker & Bassett 1978)"
    return {"arrays": (y, t), "torch": tf, "torch_src": src, "jax": jax_fn,
            "jax_src": jax_src, "kind": "pointwise"}


@case("poisson_nll")
def _poisson(name, g, sz, small):
    shape = _pw(g, sz, small)
    x = g.normal(*shape, scale=0.5)
    t = g.rng.poisson(2.0, size=shape).astype("float32")
    F = _F()
    return {"arrays": (x, t), "kind": "pointwise",
            "torch": lambda a, b: F.poisson_nll_loss(a, b, log_input=True, full=False),
            "torch_src": "F.poisson_nll_loss(log_input=True, full=False)"}


@case("gaussian_nll")
def _gaussian(name, g, sz, small):
    shape = _pw(g, sz, small)
    mu, t, var = g.normal(*shape), g.normal(*shape), g.uniform(0.1, 2.0, *shape)
    F = _F()
    return {"arrays": (mu, t, var), "kind": "pointwise",
            "torch": lambda a, b, v: F.gaussian_nll_loss(a, b, v, full=False, eps=1e-6),
            "torch_src": "F.gaussian_nll_loss(full=False, eps=1e-6)"}


@case("pseudo_huber", "msle", "mape")
def _relative(name, g, sz, small):
    shape = _pw(g, sz, small)
    import torch

    jax_fn, jax_src = None, ""
    if name == "pseudo_huber":
        y, t = g.normal(*shape), g.normal(*shape)

        def tf(a, b):  # Charbonnier et al. 1994 (XGBoost reg:pseudohubererror), delta 1
            d = a - b
            return (torch.sqrt(1 + d * d) - 1).mean()
        src = "written out (pseudo-Huber, delta 1)"
    elif name == "msle":
        y, t = g.uniform(0.0, 5.0, *shape), g.uniform(0.0, 5.0, *shape)

        def tf(a, b):  # scikit-learn's mean_squared_log_error
            return ((torch.log1p(a) - torch.log1p(b)) ** 2).mean()
        src = "written out (log1p(y) - log1p(t))^2"
    else:
        y, t = g.uniform(0.5, 5.0, *shape), g.uniform(0.5, 5.0, *shape)
        eps = 2.220446049250313e-16  # float64 machine epsilon, as scikit-learn

        def tf(a, b):  # scikit-learn's mean_absolute_percentage_error
            return (torch.abs(a - b) / torch.clamp(torch.abs(b), min=eps)).mean()
        src = "written out (|y - t| / max(|t|, eps))"
    return {"arrays": (y, t), "torch": tf, "torch_src": src, "jax": jax_fn,
            "jax_src": jax_src, "kind": "pointwise"}


@case("tweedie_deviance", "gamma_deviance")
def _deviance(name, g, sz, small):
    shape = _pw(g, sz, small)
    import torch

    r = g.normal(*shape, scale=0.5)
    if name == "gamma_deviance":
        t = g.uniform(0.1, 4.0, *shape)

        def tf(a, b):  # McCullagh and Nelder: t/mu - log(t/mu) - 1, mu = exp(r)
            return (b * torch.exp(-a) + a - torch.log(b) - 1).mean()
        src = "written out (half Gamma deviance, log link)"
    else:
        t = g.uniform(0.0, 4.0, *shape)
        p = 1.5

        def tf(a, b):  # half Tweedie deviance, power 1.5, log link (scikit-learn's)
            return (b ** (2 - p) / ((1 - p) * (2 - p)) - b * torch.exp((1 - p) * a) / (1 - p)
                    + torch.exp((2 - p) * a) / (2 - p)).mean()
        src = "written out (half Tweedie deviance, power 1.5, log link)"
    return {"arrays": (r, t), "torch": tf, "torch_src": src, "jax": None, "jax_src": "",
            "kind": "pointwise"}


# ----- pointwise classification and margin
@case("binary_cross_entropy", "sigmoid_binary_cross_entropy", "sigmoid_focal_loss", "hinge",
      "squared_hinge")
def _pointwise_cls(name, g, sz, small):
    shape = _pw(g, sz, small)
    F = _F()
    import torch

    jax_fn, jax_src = None, ""
    t = g.binary(*shape)
    if name == "binary_cross_entropy":
        y = g.uniform(0.01, 0.99, *shape)
        tf, src = F.binary_cross_entropy, "F.binary_cross_entropy"
    elif name == "sigmoid_binary_cross_entropy":
        y = g.normal(*shape)
        tf, src = F.binary_cross_entropy_with_logits, "F.binary_cross_entropy_with_logits"
        jax_fn = lambda a, b: _optax().losses.sigmoid_binary_cross_entropy(a, b).mean()  # noqa
        jax_src = "optax.sigmoid_binary_cross_entropy(...).mean()"
    elif name == "sigmoid_focal_loss":
        y = g.normal(*shape)

        def tf(z, tt):  # torchvision.ops.sigmoid_focal_loss (gamma 2, alpha 0.25) written out
            p = torch.sigmoid(z)
            ce = F.binary_cross_entropy_with_logits(z, tt, reduction="none")
            p_t = p * tt + (1 - p) * (1 - tt)
            return ((0.25 * tt + 0.75 * (1 - tt)) * ce * (1 - p_t) ** 2).mean()
        src = "written out (torchvision/ops/focal_loss.py)"
        jax_fn = lambda a, b: _optax().losses.sigmoid_focal_loss(a, b, alpha=0.25, gamma=2.0).mean()  # noqa
        jax_src = "optax.sigmoid_focal_loss(alpha=0.25, gamma=2).mean()"
    else:
        y = g.normal(*shape)
        t = t * 2 - 1
        if name == "hinge":
            def tf(s, tt):  # Cortes & Vapnik: max(0, 1 - t s)
                return torch.clamp(1.0 - tt * s, min=0.0).mean()
            jax_fn = lambda a, b: _optax().losses.hinge_loss(a, b).mean()  # noqa
            jax_src = "optax.hinge_loss(...).mean()"
        else:
            def tf(s, tt):  # LIBLINEAR's L2-SVM: max(0, 1 - t s)^2
                return (torch.clamp(1.0 - tt * s, min=0.0) ** 2).mean()
        src = "written out (max(0, 1 - t s)" + ("^2" if name == "squared_hinge" else "") + ")"
    return {"arrays": (y, t), "torch": tf, "torch_src": src, "jax": jax_fn,
            "jax_src": jax_src, "kind": "pointwise"}


# ----- class-axis (row) losses
@case("softmax_cross_entropy", "cross_entropy", "nll_loss", "poly_loss", "softmax_focal_loss",
      "brier_score", "multiclass_hinge")
def _class_axis(name, g, sz, small):
    n, k = _rows(sz, small)
    F = _F()
    import torch

    y = g.labels(n, k)
    jax_fn, jax_src, extra = None, "", ()
    if name == "softmax_cross_entropy":
        z = g.normal(n, k)
        tf, src = F.cross_entropy, "F.cross_entropy"
        jax_fn = lambda a, b: _optax().losses.softmax_cross_entropy_with_integer_labels(a, b).mean()  # noqa
        jax_src = "optax.softmax_cross_entropy_with_integer_labels(...).mean()"
    elif name == "cross_entropy":
        z = g.softmax(n, k)
        tf, src = (lambda p, yy: F.nll_loss(torch.log(p), yy)), "F.nll_loss(torch.log(p), y)"
    elif name == "nll_loss":
        z = g.log_softmax(n, k)
        tf, src = F.nll_loss, "F.nll_loss"
    elif name == "poly_loss":
        z = g.normal(n, k)

        def tf(zz, yy):  # Leng et al. 2022, Poly-1 (epsilon 1): CE + eps (1 - p_y)
            ce = F.cross_entropy(zz, yy, reduction="none")
            return (ce + 1.0 * (1.0 - torch.exp(-ce))).mean()
        src = "written out (PolyLoss paper's Poly-1 code: CE + eps (1 - p_t))"
        onehot = g.np.eye(k, dtype=g.np.float32)[y]
        extra = ("onehot", onehot)
        jax_fn = lambda a, oh: _optax().losses.poly_loss_cross_entropy(a, oh, epsilon=1.0).mean()  # noqa
        jax_src = "optax.poly_loss_cross_entropy(epsilon=1, one-hot labels).mean()"
    elif name == "softmax_focal_loss":
        z = g.normal(n, k)

        def tf(zz, yy):  # Lin et al. 2017 eq. 5 on softmax, gamma 2, no alpha
            lp = F.log_softmax(zz, dim=-1).gather(1, yy[:, None])[:, 0]
            return (-(1.0 - torch.exp(lp)) ** 2 * lp).mean()
        src = "written out (Lin et al. 2017, -(1 - p_y)^2 log p_y)"
    elif name == "brier_score":
        z = g.softmax(n, k)

        def tf(p, yy):  # Brier 1950: sum_c (p_c - onehot_c)^2, mean over rows
            return ((p - F.one_hot(yy, p.shape[1]).to(p.dtype)) ** 2).sum(1).mean()
        src = "written out (Brier 1950: sum_c (p_c - 1[c = y])^2)"
    else:  # multiclass_hinge (Weston-Watkins sum; PyTorch divides by K)
        z = g.normal(n, k)
        tf, src = (lambda s, yy: F.multi_margin_loss(s, yy, margin=1.0) * s.shape[1]), \
            "F.multi_margin_loss * K"
    out = {"arrays": (z, y), "torch": tf, "torch_src": src, "jax": jax_fn,
           "jax_src": jax_src, "kind": "row"}
    if extra:
        out["jax_arrays"] = (z, extra[1])
    return out


# ----- perceptrons, soft margins, hinge embedding, multi-label, FL*, generalized CE
@case("perceptron", "soft_margin", "hinge_embedding", "asymmetric_loss",
      "sigmoid_focal_loss_star")
def _pointwise_margin_multilabel(name, g, sz, small):
    shape = _pw(g, sz, small)
    F = _F()
    import torch

    jax_fn, jax_src = None, ""
    y = g.normal(*shape, scale=2.0)
    if name == "perceptron":
        t = g.signs(*shape)
        tf, src = (lambda s, tt: torch.clamp(-tt * s, min=0.0).mean()), \
            "written out (max(0, -t s))"
        jax_fn = lambda a, b: _optax().losses.perceptron_loss(a, b).mean()  # noqa
        jax_src = "optax.perceptron_loss(...).mean()"
    elif name == "soft_margin":
        t = g.signs(*shape)
        tf, src = F.soft_margin_loss, "F.soft_margin_loss"
    elif name == "hinge_embedding":
        y = g.uniform(0.0, 2.0, *shape)
        t = g.signs(*shape)
        tf, src = F.hinge_embedding_loss, "F.hinge_embedding_loss"
    elif name == "asymmetric_loss":
        t = g.binary(*shape)

        def tf(x, yy):  # Alibaba-MIIL/ASL losses.py AsymmetricLoss (4, 1, 0.05, 1e-8)
            p = torch.sigmoid(x)
            neg = (1 - p + 0.05).clamp(max=1)
            loss = yy * torch.log(p.clamp(min=1e-8)) + (1 - yy) * torch.log(neg.clamp(min=1e-8))
            pt = p * yy + neg * (1 - yy)
            return (-loss * torch.pow(1 - pt, 1.0 * yy + 4.0 * (1 - yy))).mean()
        src = "written out (Alibaba-MIIL/ASL AsymmetricLoss, weight not detached)"
    else:  # sigmoid_focal_loss_star (gamma 1, no alpha)
        t = g.binary(*shape)
        tf = lambda z, tt: (-F.logsigmoid(z * (2 * tt - 1))).mean()  # noqa
        src = "written out (fvcore sigmoid_focal_loss_star, gamma 1)"
    return {"arrays": (y, t), "torch": tf, "torch_src": src, "jax": jax_fn,
            "jax_src": jax_src, "kind": "pointwise"}


@case("multiclass_perceptron", "generalized_cross_entropy", "multilabel_soft_margin",
      "multilabel_margin")
def _row_margin_multilabel(name, g, sz, small):
    n, k = _rows(sz, small)
    F = _F()
    import torch

    jax_fn, jax_src = None, ""
    if name == "multiclass_perceptron":
        z, y = g.normal(n, k), g.labels(n, k)
        tf = lambda s, yy: (s.max(1).values - s.gather(1, yy[:, None])[:, 0]).mean()  # noqa
        src = "written out (max_k s_k - s_y)"
        jax_fn = lambda a, b: _optax().losses.multiclass_perceptron_loss(a, b).mean()  # noqa
        jax_src = "optax.multiclass_perceptron_loss(...).mean()"
    elif name == "generalized_cross_entropy":
        z, y = g.softmax(n, k), g.labels(n, k)
        tf = lambda p, yy: ((1 - p.gather(1, yy[:, None])[:, 0] ** 0.5) / 0.5).mean()  # noqa
        src = "written out (Keras categorical_generalized_cross_entropy, q 0.5)"
    elif name == "multilabel_soft_margin":
        z, y = g.normal(n, k), g.binary(n, k)
        tf, src = F.multilabel_soft_margin_loss, "F.multilabel_soft_margin_loss"
    else:  # multilabel_margin: the generic kernel is O(N K^2); 64 classes keep it in memory
        k = min(k, 64)
        z = g.normal(n, k)
        y = g.np.full((n, k), -1, dtype=g.np.int64)
        y[:, :3] = g.rng.integers(0, k, size=(n, 3))
        tf, src = F.multilabel_margin_loss, "F.multilabel_margin_loss (K = 64)"
    return {"arrays": (z, y), "torch": tf, "torch_src": src, "jax": jax_fn,
            "jax_src": jax_src, "kind": "row"}


@case("kl_divergence", "softmax_kl_divergence", "js_divergence")
def _divergence(name, g, sz, small):
    n, k = _rows(sz, small)
    F = _F()
    import torch

    jax_fn, jax_src = None, ""
    if name == "kl_divergence":
        q, p = g.log_softmax(n, k), g.softmax(n, k)
        tf = lambda lq, pp: F.kl_div(lq, pp, reduction="batchmean")  # noqa
        src = "F.kl_div(reduction='batchmean')"
        jax_fn = lambda a, b: _optax().losses.kl_divergence(a, b).mean()  # noqa
        jax_src = "optax.kl_divergence(...).mean()"
    elif name == "softmax_kl_divergence":
        q, p = g.normal(n, k), g.normal(n, k)
        tf = lambda z, t: F.kl_div(F.log_softmax(z, -1), F.softmax(t, -1), reduction="batchmean")  # noqa
        src = "F.kl_div(log_softmax(z), softmax(t), 'batchmean') (Hinton et al., T = 1)"

        def jax_fn(a, b):
            import jax
            return _optax().losses.kl_divergence(jax.nn.log_softmax(a), jax.nn.softmax(b)).mean()
        jax_src = "optax.kl_divergence(log_softmax(z), softmax(t)).mean()"
    else:
        q, p = g.softmax(n, k), g.softmax(n, k)

        def tf(pp, qq):  # Lin 1991: (KL(p || m) + KL(q || m)) / 2, m = (p + q) / 2
            m = 0.5 * (pp + qq)
            return (0.5 * (pp * torch.log(pp / m) + qq * torch.log(qq / m)).sum(1)).mean()
        src = "written out (Lin 1991: (KL(p||m) + KL(q||m)) / 2)"
    return {"arrays": (q, p), "torch": tf, "torch_src": src, "jax": jax_fn,
            "jax_src": jax_src, "kind": "row"}


# ----- Fenchel-Young: sparsemax (row) and its binary twin (pointwise)
@case("multiclass_sparsemax_loss", "sparsemax_loss")
def _sparsemax(name, g, sz, small):
    import torch

    if name == "sparsemax_loss":
        shape = _pw(g, sz, small)
        z, t = g.normal(*shape, scale=2.0), g.binary(*shape)

        def tf(s, tt):  # Blondel et al. 2020 sec. 4.4: sparseplus(z) - z t (t in {0, 1})
            plus = torch.where(s <= -1, torch.zeros_like(s),
                               torch.where(s >= 1, s, (s + 1) ** 2 / 4))
            return (plus - s * tt).mean()
        jax_fn = lambda a, b: _optax().losses.sparsemax_loss(a, b).mean()  # noqa
        return {"arrays": (z, t), "torch": tf, "jax": jax_fn, "kind": "pointwise",
                "torch_src": "written out (sparse plus, Blondel et al. 2020 sec. 4.4)",
                "jax_src": "optax.sparsemax_loss(...).mean()"}
    n, k = _rows(sz, small)
    z, y = g.normal(n, k, scale=2.0), g.labels(n, k)

    def tf(s, yy):  # Martins & Astudillo 2016: Algorithm 1, then eq. 18 as <s, p - e_y> + ...
        srt, _ = torch.sort(s, dim=1, descending=True)
        cum = torch.cumsum(srt, dim=1)
        ranks = torch.arange(1, s.shape[1] + 1, dtype=s.dtype)
        size = (1 + ranks * srt > cum).sum(1, keepdim=True)
        tau = (cum.gather(1, size - 1) - 1) / size
        p = torch.clamp(s - tau, min=0)
        sy = s.gather(1, yy[:, None])[:, 0]
        return ((s * p).sum(1) - 0.5 * (p * p).sum(1) + 0.5 - sy).mean()
    jax_fn = lambda a, b: _optax().losses.multiclass_sparsemax_loss(a, b).mean()  # noqa
    return {"arrays": (z, y), "torch": tf, "jax": jax_fn, "kind": "row",
            "torch_src": "written out (sparsemax by sorting, Martins & Astudillo 2016)",
            "jax_src": "optax.multiclass_sparsemax_loss(...).mean()"}


# ----- metric learning
@case("contrastive", "cosine_embedding", "triplet_margin", "margin_ranking")
def _metric(name, g, sz, small):
    n, d = (32, 10) if small else (sz["emb_n"], sz["emb_d"])
    F = _F()
    import torch

    jax_fn, jax_src, kind = None, "", "row"
    x1 = g.normal(n, d)
    x2 = (x1 + g.normal(n, d, scale=0.1)).astype("float32")  # distances near the margin
    if name == "contrastive":
        t = g.binary(n)

        def tf(a, b, tt):  # Hadsell et al. 2006: t d^2 / 2 + (1 - t) max(0, m - d)^2 / 2
            dist = torch.linalg.vector_norm(a - b, dim=1)
            return (tt * 0.5 * dist ** 2 + (1 - tt) * 0.5 * torch.clamp(1.0 - dist, min=0) ** 2).mean()
        arrays, src = (x1, x2, t), "written out (Hadsell, Chopra, LeCun 2006)"
    elif name == "cosine_embedding":
        t = g.signs(n)
        x2 = g.normal(n, d)
        tf, src = (lambda a, b, tt: F.cosine_embedding_loss(a, b, tt, margin=0.0)), \
            "F.cosine_embedding_loss(margin=0)"
        arrays = (x1, x2, t)
    elif name == "triplet_margin":
        neg = (x1 + g.normal(n, d, scale=0.12)).astype("float32")
        tf = lambda a, p, ng: F.triplet_margin_loss(a, p, ng, margin=1.0, p=2.0, eps=1e-6)  # noqa
        src = "F.triplet_margin_loss(margin=1, p=2, eps=1e-6)"
        arrays = (x1, x2, neg)
        jax_fn = lambda a, p, ng: _optax().losses.triplet_margin_loss(a, p, ng, margin=1.0, eps=1e-6).mean()  # noqa
        jax_src = "optax.triplet_margin_loss(margin=1, eps=1e-6).mean()"
    else:  # margin_ranking: same-shape scores, pointwise
        x2 = g.normal(n, d)
        t = g.signs(n, d)
        tf, src = (lambda a, b, tt: F.margin_ranking_loss(a, b, tt, margin=0.0)), \
            "F.margin_ranking_loss(margin=0)"
        arrays, kind = (x1, x2, t), "pointwise"
    return {"arrays": arrays, "torch": tf, "torch_src": src, "jax": jax_fn,
            "jax_src": jax_src, "kind": kind}


# ----- sequences
@case("ctc_loss")
def _ctc(name, g, sz, small):
    import numpy as np

    t, c, s = (20, 10, 5) if small else (200, 50, 40)
    n = 4 if small else max(1, round(32 * sz["rows"] / 4096))  # 32 at --scale 1
    lp = g.log_softmax(t, n, c)  # (T, N, C): PyTorch's layout
    y = g.rng.integers(1, c, size=(n, s)).astype(np.int64)  # blank 0 never a label
    tl = g.rng.integers(s // 2, s + 1, size=n).astype(np.int64)
    il = g.rng.integers(t * 3 // 4, t + 1, size=n).astype(np.int64)  # 2 S + 1 <= T: feasible
    F = _F()

    def jf(z, yy, ii, tt):  # Optax: batch first, paddings 1.0; PyTorch's mean by hand
        jnp = _jnp()
        zp = (jnp.arange(t)[None, :] >= ii[:, None]).astype(z.dtype)
        yp = (jnp.arange(s)[None, :] >= tt[:, None]).astype(z.dtype)
        v = _optax().losses.ctc_loss(z, zp, jnp.where(yp > 0, 0, yy), yp)
        return jnp.mean(v / jnp.maximum(tt, 1))
    return {"arrays": (lp, y, il, tl), "torch": lambda a, yy, ii, tt: F.ctc_loss(a, yy, ii, tt),
            "torch_src": "F.ctc_loss (mean: each sequence over its target length)",
            "jax": jf, "jax_arrays": (np.ascontiguousarray(lp.transpose(1, 0, 2)), y, il, tl),
            "jax_src": "optax.ctc_loss (N, T, C), paddings from the lengths", "kind": "sequence"}


# ----- ranking
@case("pairwise_logistic_loss", "lambdarank_loss", "ranking_softmax_loss", "listmle_loss")
def _ranking(name, g, sz, small):
    n, length = (32, 10) if small else (sz["rank_n"], 64)
    import torch

    F = _F()
    s = g.normal(n, length)
    y = g.rng.integers(0, 5, size=(n, length)).astype("float32")  # grades 0..4
    jax_fn, jax_src = None, ""

    def pairs(yy):
        return (yy[:, :, None] > yy[:, None, :]).to(yy.dtype)

    if name == "pairwise_logistic_loss":
        def tf(ss, yy):  # Burges et al. 2005: sum over y_i > y_j of log(1 + e^-(s_i - s_j))
            return (F.softplus(ss[:, None, :] - ss[:, :, None]) * pairs(yy)).sum((1, 2)).mean()
        src = "written out (RankNet, Burges et al. 2005), L x L pairs"
    elif name == "lambdarank_loss":
        def tf(ss, yy):  # Burges 2010: |dNDCG_ij| (fixed) times the RankNet pair loss
            with torch.no_grad():
                pos = torch.empty_like(ss)
                order = torch.argsort(-ss, dim=1, stable=True)
                ranks = torch.arange(1, ss.shape[1] + 1, dtype=ss.dtype).expand_as(ss)
                pos.scatter_(1, order, ranks)
                gain = torch.exp2(yy) - 1
                disc = 1 / torch.log2(1 + pos)
                ideal = torch.sort(gain, dim=1, descending=True).values
                idcg = (ideal / torch.log2(1 + ranks)).sum(1, keepdim=True)
                w = ((gain[:, :, None] - gain[:, None, :]).abs()
                     * (disc[:, :, None] - disc[:, None, :]).abs() / idcg[:, :, None])
            return (F.softplus(ss[:, None, :] - ss[:, :, None]) * w * pairs(yy)).sum((1, 2)).mean()
        src = "written out (LambdaRank, Burges 2010), L x L pairs"
    elif name == "ranking_softmax_loss":
        def tf(ss, yy):  # Cao et al. 2007 / Optax: -sum y log softmax(s)
            return -(yy * F.log_softmax(ss, dim=1)).sum(1).mean()
        src = "written out (-sum y log_softmax(s), as Optax)"
        jax_fn = lambda a, b: _optax().losses.ranking_softmax_loss(a, b)  # noqa
        jax_src = "optax.ranking_softmax_loss"
    else:
        def tf(ss, yy):  # Xia et al. 2008: Plackett-Luce NLL of the label-sorted order
            order = torch.argsort(-yy, dim=1, stable=True)
            so = torch.gather(ss, 1, order)
            tail = torch.logcumsumexp(so.flip(1), dim=1).flip(1)
            return (tail - so).sum(1).mean()
        src = "written out (ListMLE, Xia et al. 2008), sort + logcumsumexp"
    return {"arrays": (s, y), "torch": tf, "torch_src": src, "jax": jax_fn,
            "jax_src": jax_src, "kind": "list"}


# ----- overlap
@case("dice_loss", "jaccard_loss", "tversky_loss")
def _overlap(name, g, sz, small):
    shape = (32, 10) if small else (sz["overlap_n"], 4, 128, 128)
    p = g.softmax(*shape, axis=1)
    t = g.onehot_masks(shape[0], shape[1], *shape[2:])
    axes = tuple(range(2, len(shape)))

    def sums(pp, tt):
        if not axes:
            return pp * tt, pp, tt
        return (pp * tt).sum(axes), pp.sum(axes), tt.sum(axes)

    # MONAI DiceLoss / TverskyLoss (smooth_nr = smooth_dr = 1, batch=False, mean over (N, C))
    # written out; Jaccard: Rahman & Wang 2016, (I + s) / (P + T - I + s)
    if name == "dice_loss":
        def tf(pp, tt):
            i, ps, ts = sums(pp, tt)
            return (1 - (2 * i + 1) / (ps + ts + 1)).mean()
        src = "written out (MONAI DiceLoss, smooth 1)"
    elif name == "jaccard_loss":
        def tf(pp, tt):
            i, ps, ts = sums(pp, tt)
            return (1 - (i + 1) / (ps + ts - i + 1)).mean()
        src = "written out (Rahman & Wang 2016 soft IoU, smooth 1)"
    else:
        def tf(pp, tt):
            i, ps, ts = sums(pp, tt)
            return (1 - (i + 1) / (i + 0.5 * (ps - i) + 0.5 * (ts - i) + 1)).mean()
        src = "written out (MONAI TverskyLoss, alpha = beta = 0.5, smooth 1)"
    return {"arrays": (p, t), "torch": tf, "torch_src": src, "jax": None, "jax_src": "",
            "kind": "overlap"}


# ----- overlap, part 2 (focal Tversky, generalised Dice, MCC) and the Lovasz losses
@case("focal_tversky_loss", "generalized_dice_loss", "mcc_loss", "lovasz_hinge",
      "lovasz_softmax")
def _overlap2(name, g, sz, small):
    import torch

    shape = (2, 4, 8, 8) if small else (sz["overlap_n"], 4, 128, 128)
    n, c = shape[:2]
    axes = tuple(range(2, len(shape)))
    lab = g.rng.integers(0, c, size=(n, *shape[2:])).astype(g.np.int64)

    def lovasz_grad(y):  # Berman's lovasz_grad on rows of sorted 0/1 labels
        tot = y.sum(1, keepdim=True)
        jac = 1 - (tot - y.cumsum(1)) / (tot + (1 - y).cumsum(1))
        return torch.cat([jac[:, :1], jac[:, 1:] - jac[:, :-1]], 1)

    if name == "lovasz_hinge":  # Berman et al. pytorch/lovasz_losses.py, per image, rows
        z = g.normal(n, *shape[2:])
        y = (lab > 0).astype(g.np.int64)

        def tf(zz, yy):
            zz, yy = zz.reshape(n, -1), yy.reshape(n, -1).to(zz.dtype)
            err, perm = torch.sort(1 - zz * (2 * yy - 1), dim=1, descending=True)
            return (torch.relu(err) * lovasz_grad(torch.gather(yy, 1, perm))).sum(1).mean()
        return {"arrays": (z, y), "grad_of": (0,), "torch": tf, "torch_src":
                "written out (Berman et al. lovasz_hinge, rows sorted at once)", "jax": None,
                "jax_src": "", "kind": "overlap"}
    p = g.softmax(*shape, axis=1)
    if name == "lovasz_softmax":  # per_image=False, classes="present"

        def tf(pp, yy):
            pp = pp.movedim(1, 0).reshape(c, -1)
            fg = (yy.reshape(1, -1) == torch.arange(c)[:, None]).to(pp.dtype)
            err, perm = torch.sort((fg - pp).abs(), dim=1, descending=True)
            per = (err * lovasz_grad(torch.gather(fg, 1, perm))).sum(1)
            present = fg.sum(1) > 0
            return per[present].mean()
        return {"arrays": (p, lab), "grad_of": (0,), "torch": tf, "torch_src":
                "written out (Berman et al. lovasz_softmax, classes sorted at once)",
                "jax": None, "jax_src": "", "kind": "overlap"}
    t = g.onehot_masks(n, c, *shape[2:])
    if name == "focal_tversky_loss":  # Abraham & Khan 2019: (1 - T)^0.75, a 0.3, b 0.7
        def tf(pp, tt):
            i, ps, ts = (pp * tt).sum(axes), pp.sum(axes), tt.sum(axes)
            tv = (i + 1) / (i + 0.3 * (ps - i) + 0.7 * (ts - i) + 1)
            return ((1 - tv) ** 0.75).mean()
        src = "written out (Abraham & Khan 2019, per class, smooth 1)"
    elif name == "generalized_dice_loss":  # MONAI GeneralizedDiceLoss, w = 1 / V^2
        def tf(pp, tt):
            i, ps, ts = (pp * tt).sum(axes), pp.sum(axes), tt.sum(axes)
            w = 1 / ts ** 2  # every class present at this size
            return (1 - (2 * (w * i).sum(1) + 1e-5) / ((w * (ps + ts)).sum(1) + 1e-5)).mean()
        src = "written out (MONAI GeneralizedDiceLoss, w_type square)"
    else:  # smp MCCLoss per example and class, eps 1e-5
        def tf(pp, tt):
            tp = (pp * tt).sum(axes) + 1e-5
            fp = (pp * (1 - tt)).sum(axes) + 1e-5
            fn = ((1 - pp) * tt).sum(axes) + 1e-5
            tn = ((1 - pp) * (1 - tt)).sum(axes) + 1e-5
            mcc = (tp * tn - fp * fn) / torch.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
            return (1 - mcc).mean()
        src = "written out (smp MCCLoss counts, per example and class)"
    return {"arrays": (p, t), "torch": tf, "torch_src": src, "jax": None, "jax_src": "",
            "kind": "overlap"}


# ----- boxes
def _box_parts(p, t, eps=1e-7):
    """torchvision/ops/_utils.py _loss_inter_union and the enclosing box, written out."""
    import torch

    x1, y1, x2, y2 = p.unbind(-1)
    a1, b1, a2, b2 = t.unbind(-1)
    xk1, yk1 = torch.max(x1, a1), torch.max(y1, b1)
    xk2, yk2 = torch.min(x2, a2), torch.min(y2, b2)
    inter = torch.zeros_like(x1)
    mask = (yk2 > yk1) & (xk2 > xk1)
    inter = torch.where(mask, (xk2 - xk1) * (yk2 - yk1), inter)
    union = (x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter
    iou = inter / (union + eps)
    cw = torch.max(x2, a2) - torch.min(x1, a1)
    ch = torch.max(y2, b2) - torch.min(y1, b1)
    dx = 0.5 * (x1 + x2 - a1 - a2)
    dy = 0.5 * (y1 + y2 - b1 - b2)
    return dict(x1=x1, y1=y1, x2=x2, y2=y2, a1=a1, b1=b1, a2=a2, b2=b2, inter=inter,
                union=union, iou=iou, cw=cw, ch=ch, dx=dx, dy=dy, w=x2 - x1, h=y2 - y1,
                wg=a2 - a1, hg=b2 - b1)


def _box_torch(name):
    import torch

    eps = 1e-7

    def diou_terms(q):
        c2 = q["cw"] ** 2 + q["ch"] ** 2 + eps
        return 1 - q["iou"] + (q["dx"] ** 2 + q["dy"] ** 2) / c2

    def eiou(q):
        return (diou_terms(q) + (q["w"] - q["wg"]) ** 2 / (q["cw"] ** 2 + eps)
                + (q["h"] - q["hg"]) ** 2 / (q["ch"] ** 2 + eps))

    def f(p, t):
        q = _box_parts(p, t, eps)
        if name == "iou_loss":
            v = 1 - q["iou"]
        elif name == "giou_loss":  # torchvision/ops/giou_loss.py
            area_c = q["cw"] * q["ch"]
            v = 1 - (q["iou"] - (area_c - q["union"]) / (area_c + eps))
        elif name == "diou_loss":  # torchvision/ops/diou_loss.py
            v = diou_terms(q)
        elif name == "ciou_loss":  # torchvision/ops/ciou_loss.py (alpha under no_grad)
            v_ = (4 / math.pi ** 2) * (torch.atan(q["wg"] / q["hg"]) - torch.atan(q["w"] / q["h"])) ** 2
            with torch.no_grad():
                alpha = v_ / (1 - q["iou"] + v_ + eps)
            v = diou_terms(q) + alpha * v_
        elif name == "eiou_loss":  # Zhang et al. 2022, eq. 8
            v = eiou(q)
        elif name == "focal_eiou_loss":  # Zhang et al. 2022: IoU^gamma (detached) * EIoU
            v = q["iou"].detach() ** 0.5 * eiou(q)
        elif name == "siou_loss":  # Gevorgyan 2022, theta 4 (losskit's docstring form)
            dx, dy = q["dx"], q["dy"]
            lam = 2 * dx.abs() * dy.abs() / (dx ** 2 + dy ** 2)
            rx, ry = dx ** 2 / (q["cw"] ** 2 + eps), dy ** 2 / (q["ch"] ** 2 + eps)
            gam = 2 - lam
            dist = 2 - torch.exp(-gam * rx) - torch.exp(-gam * ry)
            ow = (q["w"] - q["wg"]).abs() / (torch.max(q["w"], q["wg"]) + eps)
            oh = (q["h"] - q["hg"]).abs() / (torch.max(q["h"], q["hg"]) + eps)
            shape = (1 - torch.exp(-ow)) ** 4 + (1 - torch.exp(-oh)) ** 4
            v = 1 - q["iou"] + 0.5 * (dist + shape)
        elif name == "wiou_loss":  # Tong et al. 2023 v1: exp(rho^2 / (Wg^2 + Hg^2)*) (1 - IoU)
            c2 = (q["cw"] ** 2 + q["ch"] ** 2 + eps).detach()
            v = torch.exp((q["dx"] ** 2 + q["dy"] ** 2) / c2) * (1 - q["iou"])
        elif name == "mpdiou_loss":  # Ma & Xu 2023, image 640 x 640
            d1 = (q["x1"] - q["a1"]) ** 2 + (q["y1"] - q["b1"]) ** 2
            d2 = (q["x2"] - q["a2"]) ** 2 + (q["y2"] - q["b2"]) ** 2
            v = 1 - q["iou"] + (d1 + d2) / (640.0 ** 2 + 640.0 ** 2)
        elif name == "inner_iou_loss":  # Zhang, Xu & Zhang 2023, ratio 0.75
            a, b = 0.5 * (1 + 0.75), 0.5 * (1 - 0.75)

            def inner(x):
                x1, y1, x2, y2 = x.unbind(-1)
                return torch.stack([a * x1 + b * x2, a * y1 + b * y2,
                                    b * x1 + a * x2, b * y1 + a * y2], -1)
            v = 1 - _box_parts(inner(p), inner(t), eps)["iou"]
        else:
            raise KeyError(name)
        return v.mean()
    return f


_BOX_SRC = {
    "iou_loss": "written out (1 - IoU, torchvision's intersection rule)",
    "giou_loss": "written out (torchvision/ops/giou_loss.py)",
    "diou_loss": "written out (torchvision/ops/diou_loss.py)",
    "ciou_loss": "written out (torchvision/ops/ciou_loss.py)",
    "eiou_loss": "written out (Zhang et al. 2022, arXiv:2101.08158)",
    "focal_eiou_loss": "written out (Zhang et al. 2022, IoU^0.5 detached x EIoU)",
    "siou_loss": "written out (Gevorgyan 2022, arXiv:2205.12740, theta 4)",
    "wiou_loss": "written out (Tong et al. 2023 v1, arXiv:2301.10051)",
    "mpdiou_loss": "written out (Ma & Xu 2023, arXiv:2307.07662, 640 x 640)",
    "inner_iou_loss": "written out (Zhang, Xu & Zhang 2023, arXiv:2311.02877, ratio 0.75)",
}


@case(*_BOX_SRC)
def _boxes(name, g, sz, small):
    p, t = g.boxes(32 if small else sz["boxes"])
    options = {"image_size": (640.0, 640.0)} if name == "mpdiou_loss" else {}
    return {"arrays": (p, t), "options": options, "torch": _box_torch(name),
            "torch_src": _BOX_SRC[name], "jax": None, "jax_src": "", "kind": "boxes"}


# ----- linear cross-entropy
# ----- in-batch metric learning and margin heads: N 4096, d 128 (batch and embedding
# sizes of re-identification and face recognition), 512 classes of 8 (P x K batches).
# PyTorch contender: pytorch-metric-learning itself (installed beside torch) where it can
# run at this size; its triplet loss over *all* triplets enumerates them (here 117M index
# triples, gigabytes), so the timed triplet case is the batch-hard one (BatchHardMiner).
# The margin heads are written out in torch (pml's ArcFaceLoss/CosFaceLoss own their W).
@case("batch_triplet_loss", "batch_contrastive_loss", "multi_similarity_loss", "circle_loss",
      "arcface_loss", "cosface_loss")
def _metric_batch(name, g, sz, small):
    import numpy as np
    import torch

    F = _F()
    n, d = (32, 10) if small else (max(16, int(round(4096 * sz["rows"] / 4096))), 128)
    per_class = 8
    x = g.normal(n, d)
    y = (np.arange(n) // per_class).astype(np.int64)
    g.rng.shuffle(y)
    if name in ("arcface_loss", "cosface_loss"):
        classes = 10 if small else 1000
        W = g.normal(classes, d)
        y = g.labels(n, classes)
        margin = 0.5 if name == "arcface_loss" else 0.35

        def tf(xx, ww, yy):  # Deng et al. 2019 / Wang et al. 2018, as pml's LargeMarginSoftmax
            c = F.normalize(xx) @ F.normalize(ww).T
            cy = c.gather(1, yy[:, None])[:, 0]
            if name == "cosface_loss":
                psi = cy - margin
            else:
                th = torch.acos(cy.clamp(-1, 1))
                psi = torch.where(th <= math.pi - margin, torch.cos(th + margin),
                                  torch.cos(th) - margin * math.sin(margin))
            z = 64.0 * c.scatter(1, yy[:, None], psi[:, None])
            return F.cross_entropy(z, yy)
        return {"arrays": (x, W, y), "wrt": "all", "grad_of": (0, 1), "torch": tf,
                "options": {"margin": margin},
                "torch_src": "written out (pml's ArcFaceLoss/CosFaceLoss formula)",
                "jax": None, "jax_src": "", "kind": "matmul"}
    from pytorch_metric_learning import losses as pml_losses, miners as pml_miners

    options = {}
    if name == "batch_triplet_loss":
        options = {"margin": 0.05, "mining": "hard"}
        loss_obj, miner = pml_losses.TripletMarginLoss(margin=0.05), pml_miners.BatchHardMiner()
        src = "pml TripletMarginLoss(0.05) + BatchHardMiner"
    else:
        loss_obj, miner = {"batch_contrastive_loss": pml_losses.ContrastiveLoss,
                           "multi_similarity_loss": pml_losses.MultiSimilarityLoss,
                           "circle_loss": pml_losses.CircleLoss}[name](), None
        src = f"pml {type(loss_obj).__name__}()"

    def tf(xx, yy):
        return loss_obj(xx, yy, miner(xx, yy) if miner is not None else None)
    return {"arrays": (x, y), "torch": tf, "torch_src": src, "options": options,
            "jax": None, "jax_src": "", "kind": "matmul"}


@case("linear_cross_entropy")
def _linear_ce(name, g, sz, small):
    n, d, v = (32, 16, 10) if small else sz["lce"]
    h, W = g.normal(n, d), g.normal(v, d, scale=1.0 / math.sqrt(d))
    b, y = g.normal(v, scale=0.1), g.labels(n, v)
    F = _F()

    def tf(hh, ww, yy, bb):
        from torch.nn import LinearCrossEntropyOptions
        return F.linear_cross_entropy(hh, ww, yy, linear_bias=bb,
                                      options=LinearCrossEntropyOptions())

    def jax_fn(hh, ww, yy, bb):
        return _optax().losses.softmax_cross_entropy_with_integer_labels(hh @ ww.T + bb, yy).mean()

    def gemms():  # the compute floor: the three products any exact method needs
        z = h @ W.T
        return z @ W, z.T @ h

    return {"arrays": (h, W, y, b), "wrt": "all", "grad_of": (0, 1, 3), "torch": tf,
            "gemm_floor": gemms,
            "torch_src": "F.linear_cross_entropy (PyTorch 2.13's chunked version)",
            "jax": jax_fn, "jax_src": "optax softmax CE of h @ W.T + b (full logits)",
            "kind": "matmul"}


# ----- representation (contrastive losses over the batch's similarity matrix)
@case("info_nce", "clip_loss", "siglip_loss", "supcon_loss")
def _representation(name, g, sz, small):
    n, d = (32, 16) if small else sz["rep"]
    import numpy as np
    import torch

    F = _F()
    a = g.normal(n, d)
    b = (a + g.normal(n, d)).astype("float32")  # positives correlated with their anchor
    scale = np.array(math.log(10.0), dtype=np.float32)
    bias = np.array(-5.0, dtype=np.float32)

    def unit(x):
        return F.normalize(x, dim=1)
    if name == "info_nce":  # SimCLR's NT-Xent (Chen et al. 2020), 2N x 2N, tau 0.1
        def tf(x1, x2):
            z = unit(torch.cat([x1, x2]))
            s = (z @ z.T / 0.1).masked_fill(torch.eye(2 * n, dtype=torch.bool), -math.inf)
            return F.cross_entropy(s, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
        arrays, grad_of, src = (a, b), (0, 1), "written out (SimCLR NT-Xent, full 2N x 2N)"
    elif name == "clip_loss":  # open_clip ClipLoss: (CE(L, i) + CE(L.T, i)) / 2
        def tf(x1, x2, th):
            logits = th.exp() * unit(x1) @ unit(x2).T
            lab = torch.arange(n)
            return (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2
        arrays, grad_of, src = (a, b, scale), (0, 1, 2), "written out (open_clip ClipLoss)"
    elif name == "siglip_loss":  # big_vision siglip.py: -sum log_sigmoid(y L) / N
        def tf(x1, x2, th, bb):
            logits = unit(x1) @ unit(x2).T * th.exp() + bb
            return -F.logsigmoid((2 * torch.eye(n) - 1) * logits).sum() / n
        arrays, grad_of = (a, b, scale, bias), (0, 1, 2, 3)
        src = "written out (big_vision SigLIP)"
    else:  # HobbitLong/SupContrast losses.py, 2 views, 512 classes
        feats = np.ascontiguousarray(np.stack([a, b], axis=1))
        y = (np.arange(n) % 512).astype(np.int64)

        def tf(f, yy):
            f = F.normalize(f, dim=-1)
            mask = (yy[:, None] == yy[None, :]).to(f.dtype).repeat(2, 2)
            c = torch.cat(torch.unbind(f, dim=1), dim=0)
            adc = c @ c.T / 0.1
            logits = adc - adc.max(1, keepdim=True)[0].detach()
            keep = 1 - torch.eye(2 * n, dtype=f.dtype)
            mask = mask * keep
            lp = logits - torch.log((torch.exp(logits) * keep).sum(1, keepdim=True))
            return (-(0.1 / 0.07) * (mask * lp).sum(1) / mask.sum(1).clamp(min=1)).mean()
        arrays, grad_of = (feats, y), (0,)
        src = "written out (HobbitLong/SupContrast SupConLoss)"
    return {"arrays": arrays, "wrt": "all" if len(grad_of) > 1 else None, "grad_of": grad_of,
            "torch": tf, "torch_src": src, "jax": None, "jax_src": "", "kind": "similarity"}


# ----- language models (policy gradient)
@case("grpo_loss")
def _grpo(name, g, sz, small):
    import numpy as np

    b, t = (32, 10) if small else (max(1, round(256 * sz["rows"] / 4096)), 1024)
    logp = -g.uniform(0.05, 4.0, b, t)
    old = (logp + g.normal(b, t, scale=0.1)).astype(np.float32)
    ref = (logp + g.normal(b, t, scale=0.3)).astype(np.float32)
    lengths = g.rng.integers(1, t + 1, size=b)
    mask = (np.arange(t) < lengths[:, None]).astype(np.float32)
    adv = g.normal(b)

    def tf(lp, m, a, o, r):  # TRL GRPOTrainer._compute_loss / Liger grpo_loss.py, "dapo"
        import torch
        c1 = torch.exp(lp - o)
        c2 = torch.clamp(c1, 0.8, 1.2)
        per_token = -torch.min(c1 * a[:, None], c2 * a[:, None])
        per_token = per_token + 0.04 * (torch.exp(r - lp) - (r - lp) - 1)
        return (per_token * m).sum() / m.sum().clamp(min=1.0)
    return {"arrays": (logp, mask, adv, old, ref), "torch": tf,
            "torch_src": "written out (TRL GRPOTrainer / Liger-Kernel, loss_type dapo)",
            "jax": None, "jax_src": "", "kind": "sequence"}


# ----- language models (reference-free and unpaired preferences, per sequence)
@case("simpo_loss", "cpo_loss", "orpo_loss", "kto_loss")
def _preference_odds(name, g, sz, small):
    import numpy as np

    n = 32 if small else sz["pointwise"] // 10  # 1M sequences (pairs) at --scale 1
    c = -g.uniform(0.05, 3.0, n)
    r = -g.uniform(0.05, 3.0, n)
    # Liger-Kernel src/liger_kernel/chunked_loss/{simpo,cpo,orpo,kto}_loss.py,
    # preference_loss_fn, written out (default options)
    if name == "kto_loss":
        d = g.rng.random(n) > 0.5

        def tf(lp, dd, ref):  # 1 - sigmoid(beta (logp - ref) m), m = +-1; / N
            import torch
            m = torch.where(dd, 1.0, -1.0)
            return (1 - torch.sigmoid(0.1 * (lp - ref) * m)).sum() / lp.shape[0]
        return {"arrays": (c, d, r), "torch": tf, "kind": "pointwise",
                "torch_src": "written out (Liger-Kernel kto_loss.py)", "jax": None,
                "jax_src": ""}

    def tf(cc, rr):
        import torch
        F = torch.nn.functional
        if name == "orpo_loss":
            lo = (cc - rr) - (torch.log1p(-torch.exp(cc)) - torch.log1p(-torch.exp(rr)))
            return -0.1 * F.logsigmoid(lo).sum() / cc.shape[0]
        z = 0.1 * (cc - rr) - (0.5 if name == "simpo_loss" else 0.0)
        return -F.logsigmoid(z).sum() / cc.shape[0]
    return {"arrays": (c, r), "torch": tf, "kind": "pointwise", "wrt": "all",
            "grad_of": (0, 1), "torch_src": f"written out (Liger-Kernel {name[:-5]}_loss.py)",
            "jax": None, "jax_src": ""}


# ----- language models (token-level distillation, student vs teacher logits)
@case("generalized_jsd", "tvd_loss")
def _distillation(name, g, sz, small):
    import numpy as np

    n, k = _rows(sz, small)
    zs, zt = g.normal(n, k), g.normal(n, k)
    y = g.rng.integers(0, k, size=n)

    def tf(a, b, yy):  # Liger-Kernel jsd_loss.py / ops/tvd.py, written out (beta 0.5)
        import torch
        F = torch.nn.functional
        s, t = F.log_softmax(a, -1), F.log_softmax(b, -1)
        if name == "tvd_loss":
            return 0.5 * (s.exp() - t.exp()).abs().sum(-1).mean()
        log_m = torch.logsumexp(torch.stack([s + np.log(0.5), t + np.log(0.5)]), 0)
        return (0.5 * F.kl_div(log_m, t, reduction="none", log_target=True)
                + 0.5 * F.kl_div(log_m, s, reduction="none", log_target=True)).sum(-1).mean()
    return {"arrays": (zs, zt, y), "torch": tf, "kind": "row",
            "torch_src": f"written out (Liger-Kernel {'ops/tvd.py' if name == 'tvd_loss' else 'jsd_loss.py'})",
            "jax": None, "jax_src": ""}


# ----- language models (DPO: preference pairs with a reference model, per sequence)
@case("dpo_loss")
def _dpo(name, g, sz, small):
    n = 32 if small else sz["pointwise"] // 10  # 1M pairs at --scale 1
    c = -g.uniform(5.0, 300.0, n)
    r = -g.uniform(5.0, 300.0, n)
    rc = c + g.normal(n, scale=2.0)
    rr = r + g.normal(n, scale=2.0)

    def tf(cc, rj, a, b):  # TRL DPOTrainer._compute_loss / Liger dpo_loss.py, "sigmoid"
        import torch
        z = 0.1 * ((cc - a) - (rj - b))
        return -torch.nn.functional.logsigmoid(z).mean()
    return {"arrays": (c, r, rc, rr), "torch": tf, "kind": "pointwise", "wrt": "all",
            "grad_of": (0, 1), "torch_src": "written out (TRL DPOTrainer / Liger-Kernel dpo_loss.py)",
            "jax": None, "jax_src": ""}


# ----- language models fused with the output layer (tokens x d x V products)
@case("linear_token_logprobs", "linear_preference_loss")
def _linear_head(name, g, sz, small):
    n, d, v = (32, 16, 10) if small else sz["lce"]
    B = 2
    T = max(1, n // (2 * B))  # 2B sequences of T tokens: linear_cross_entropy's tokens
    h = g.normal(2 * B, T, d)
    W = g.normal(v, d, scale=1.0 / math.sqrt(d))
    b = g.normal(v, scale=0.1)
    y = g.labels(2 * B * T, v).reshape(2 * B, T)
    y[:, : max(1, T // 4)] = -100  # the prompt
    F = _F()

    def token_logps(hh, ww, yy, bb):
        import torch
        lp = torch.log_softmax(F.linear(hh, ww, bb), -1)
        keep = yy != -100
        return lp.gather(-1, torch.where(keep, yy, 0)[..., None])[..., 0] * keep

    def gemms():  # the compute floor: the three products of the trained head
        z = h.reshape(-1, d) @ W.T
        return z @ W, z.T @ h.reshape(-1, d)

    if name == "linear_token_logprobs":
        return {"arrays": (h, W, y, b), "wrt": "all", "grad_of": (0, 1, 3),
                "options": {"reduction": "sum"}, "gemm_floor": gemms,
                "torch": lambda hh, ww, yy, bb: token_logps(hh, ww, yy, bb).sum(),
                "torch_src": "written out (log_softmax of F.linear, gathered)",
                "kind": "matmul"}
    rh, rW = g.normal(2 * B, T, d), g.normal(v, d, scale=1.0 / math.sqrt(d))

    def tf(hh, ww, yy, bb, rhh, rww):  # Liger's chunk_forward + dpo preference_loss_fn
        import torch
        s = token_logps(hh, ww, yy, bb).sum(-1)
        with torch.no_grad():
            rs = token_logps(rhh, rww, yy, None).sum(-1)
        z = 0.1 * ((s[:B] - rs[:B]) - (s[B:] - rs[B:]))
        return -F.logsigmoid(z).mean()
    return {"arrays": (h, W, y, b, rh, rW), "wrt": "all", "grad_of": (0, 1, 3),
            "gemm_floor": gemms, "torch": tf, "kind": "matmul",
            "torch_src": "written out (Liger-Kernel fused_linear_preference.py, full logits)"}


@case("linear_grpo_loss", "linear_generalized_jsd")
def _linear_head_rl(name, g, sz, small):
    n, d, v = (32, 16, 10) if small else sz["lce"]
    B = 4
    T = max(4, n // B)
    h = g.normal(B, T, d)
    W = g.normal(v, d, scale=1.0 / math.sqrt(d))
    b = g.normal(v, scale=0.1)
    y = g.labels(B * T, v).reshape(B, T)
    F = _F()

    def gemms():  # the compute floor: the three products of the trained head
        z = h.reshape(-1, d) @ W.T
        return z @ W, z.T @ h.reshape(-1, d)

    if name == "linear_grpo_loss":
        import numpy as np
        mask = (np.arange(T)[None, :] < np.array([T, T - T // 4, T // 2, T])[:, None]
                ).astype("float32")
        adv = g.normal(B)

        def tf(hh, ww, yy, mm, aa, bb):  # Liger fused_linear_ppo / grpo_loss.py, "dapo"
            import torch
            lp = torch.log_softmax(F.linear(hh, ww, bb), -1).gather(-1, yy[..., None])[..., 0]
            ratio = torch.exp(lp - lp.detach())
            a = aa[:, None]
            per = -torch.min(ratio * a, torch.clamp(ratio, 0.8, 1.2) * a)
            return (per * mm).sum() / mm.sum()
        return {"arrays": (h, W, y, mask, adv, b), "wrt": "all", "grad_of": (0, 1, 5),
                "gemm_floor": gemms, "torch": tf, "kind": "matmul",
                "torch_src": "written out (Liger-Kernel fused_linear_ppo.py, full logits)"}
    th, tW = g.normal(B, T, d), g.normal(v, d, scale=1.0 / math.sqrt(d))
    y[:, :2] = -100

    def tj(hh, ww, thh, tww, yy, bb):  # Liger jsd_loss.py + fused_linear_distillation.py
        import torch
        s = F.linear(hh, ww, bb).reshape(-1, v)
        t = F.linear(thh, tww).reshape(-1, v)
        lab = yy.reshape(-1)
        keep = lab != -100
        ls, lt = torch.log_softmax(s, -1), torch.log_softmax(t, -1)
        lm = torch.logsumexp(torch.stack([ls + math.log(0.5), lt + math.log(0.5)]), 0)
        jsd = 0.5 * (F.kl_div(lm, lt, reduction="none", log_target=True).sum(-1)
                     + F.kl_div(lm, ls, reduction="none", log_target=True).sum(-1))
        hard = F.cross_entropy(s, lab, ignore_index=-100, reduction="none")
        return ((0.5 * hard + 0.5 * jsd) * keep).sum() / keep.sum()
    return {"arrays": (h, W, th, tW, y, b), "wrt": "all", "grad_of": (0, 1, 5),
            "gemm_floor": gemms, "torch": tj, "kind": "matmul",
            "torch_src": "written out (Liger-Kernel jsd_loss.py, full logits)"}


# ---------------------------------------------------------------------------- contenders
def build(name, g, sz, small):
    c = CASES[name](name, g, sz, small)
    c.setdefault("options", {})
    c.setdefault("wrt", None)
    c.setdefault("grad_of", (0,))
    c.setdefault("jax", None)
    c.setdefault("jax_src", "")
    c["name"] = name
    return c


def losskit_fns(loss, c):
    import numpy as np

    arrays, opts, wrt = c["arrays"], c["options"], c["wrt"]
    kw = dict(opts)
    if wrt is not None:
        kw["wrt"] = wrt

    def plain():
        return loss.value_and_grad(*arrays, **kw)

    def unchecked():
        return loss.value_and_grad(*arrays, validate=False, **kw)

    out_fn = None
    if wrt is None:
        out = np.empty_like(arrays[0])

        def out_fn():
            return loss.value_and_grad(*arrays, out=out, **kw)
    return plain, out_fn, unchecked


def grad_nbytes(c):
    if c["wrt"] is None:
        return c["arrays"][0].nbytes
    return sum(c["arrays"][i].nbytes for i in c["grad_of"])


def losskit_path(loss, c) -> str:
    """'fused' if a registered NumPy fast path accepts this call, else 'generic'."""
    from losskit.core import dispatch

    fast = dispatch.fast_path_for(type(loss))
    if fast is None and c["kind"] in ("matmul", "similarity"):
        return "own blocked kernel"
    if fast is None or not dispatch.ENABLED:
        return "generic"
    wrt = {}
    if c["wrt"] is not None and tuple(loss.differentiable) != (loss.differentiable[0],):
        if not getattr(fast, "takes_wrt", False):
            # wrt="all" of several inputs does not take the per-prediction fast path
            # entry; the loss may still fuse internally
            return "own (wrt=all)"
        wrt = {"wrt": tuple(range(len(loss.differentiable)))}
    try:
        opts = {k: c["options"].get(k, v) for k, v in loss.option_defaults().items()}
        arrays = tuple(c["arrays"]) + (None,) * (len(loss.inputs) - len(c["arrays"]))
        r = fast(loss, arrays, "mean", None, opts, "both", None, **wrt)
        return "generic (fast path declined)" if r is NotImplemented else "fused"
    except Exception as e:  # noqa: BLE001 - internal API under rewrite: report, do not fail
        return f"unknown ({type(e).__name__})"


def torch_fn(c):
    import torch

    tensors = [torch.from_numpy(a) for a in c["arrays"]]
    leaves = []
    for i in c["grad_of"]:
        tensors[i] = tensors[i].detach().requires_grad_(True)
        leaves.append(tensors[i])
    f = c["torch"]

    def fn():
        for t in leaves:
            t.grad = None
        v = f(*tensors)
        v.backward()
        return v.detach(), [t.grad for t in leaves]
    return fn


def jax_fn(c):
    if c["jax"] is None:
        return None
    import jax
    import jax.numpy as jnp

    arrays = c.get("jax_arrays", c["arrays"])
    argnums = tuple(c["grad_of"]) if c["wrt"] is not None else 0
    f = jax.jit(jax.value_and_grad(c["jax"], argnums=argnums))
    dev = [jax.device_put(jnp.asarray(a)) for a in arrays]

    def fn():
        return jax.block_until_ready(f(*dev))
    return fn


def _rel(a, b):
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / den) if den > 0 else float(np.linalg.norm(a - b))


def check_match(loss, c, where):
    """Assert losskit's value equals PyTorch's (and JAX's) within 1e-4 relative."""
    plain, _, _ = losskit_fns(loss, c)
    v, gr = plain()
    tv, tg = torch_fn(c)()
    tv = float(tv)
    lk_v = float(v)
    if not abs(lk_v - tv) <= 1e-4 * max(abs(tv), 1e-30):
        raise AssertionError(
            f"{c['name']} ({where}): losskit {lk_v!r} != torch {tv!r} ({c['torch_src']}); "
            "the benchmark's convention mapping is wrong (or the kernel is)")
    lk_g = gr if isinstance(gr, tuple) else (gr,)
    gerr = max(_rel(a, b.numpy()) for a, b in zip(lk_g, tg))
    jerr = None
    jf = jax_fn(c)
    if jf is not None:
        jv = float(jf()[0])
        if not abs(lk_v - jv) <= 1e-4 * max(abs(jv), 1e-30):
            raise AssertionError(f"{c['name']} ({where}): losskit {lk_v!r} != jax {jv!r} "
                                 f"({c['jax_src']})")
        jerr = abs(lk_v - jv) / max(abs(jv), 1e-30)
    return abs(lk_v - tv) / max(abs(tv), 1e-30), gerr, jerr


def _timeit(contenders, repeats, inner=1):
    times = {name: [] for name, _ in contenders}
    for _, fn in contenders:  # warm-up: compilation, caches, first-touch pages
        fn()
        fn()
    for r in range(repeats):
        k = r % len(contenders)
        for name, fn in contenders[k:] + contenders[:k]:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner)
    return times


def child(args):
    import numpy as np

    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch

    import losskit as lk
    from losskit.kernels import fast_paths as _fast
    from losskit.kernels import gradient_cache
    from run import bandwidth_gbs, peak_extra, quantiles

    torch.set_num_threads(2)
    losses = lk.catalog()
    missing = [l.name for l in losses if l.name not in CASES]
    if missing:
        raise SystemExit(f"benchmarks/catalog.py has no case for {missing}: add one to CASES")
    if args.losses:
        wanted = args.losses.split(",")
        unknown = set(wanted) - {l.name for l in losses}
        if unknown:
            raise SystemExit(f"unknown losses {sorted(unknown)}")
        losses = [l for l in losses if l.name in wanted]
    info = {"load_before": os.getloadavg(), "python": platform.python_version(),
            "numpy": np.__version__, "cpus": os.cpu_count(), "engine": _fast.engine(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""), "scale": args.scale,
            "repeats": args.repeats}
    for mod in ("numba", "torch", "jax", "optax"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    bw, bw1, bw2 = bandwidth_gbs(np)
    info.update(bandwidth_gbs=bw, bandwidth_1t=bw1, bandwidth_2t=bw2)
    sz = sizes(args.scale)
    results = []
    for loss in losses:
        t_start = time.perf_counter()
        g = Gen(0)
        small_c = build(loss.name, g, sz, True)
        if args.no_jax:
            small_c["jax"] = None
        v_small, g_small, j_small = check_match(loss, small_c, "(32, 10)")
        c = build(loss.name, g, sz, False)
        if args.no_jax:
            c["jax"] = None
        v_big, g_big, j_big = check_match(loss, c, "timed size")
        plain, out_fn, unchecked = losskit_fns(loss, c)
        contenders = [("losskit", plain)]
        if out_fn is not None:
            contenders.append(("losskit out=", out_fn))
        contenders.append(("torch", torch_fn(c)))
        jf = jax_fn(c)
        if jf is not None:
            contenders.append(("jax", jf))
        if c.get("gemm_floor") is not None:
            contenders.append(("gemm floor", c["gemm_floor"]))
        times = _timeit(contenders, args.repeats)
        med = {k: quantiles(v)[0] for k, v in times.items()}
        iqr = {k: list(quantiles(v)[1:]) for k, v in times.items()}
        # memory: one call each with the gradient cache emptied first
        clear = gradient_cache.clear_gradient_cache
        trace, rss = peak_extra(plain, traced=True, before=clear)
        trace_out = rss_out = None
        if out_fn is not None:
            trace_out, rss_out = peak_extra(out_fn, traced=True, before=clear)
        clear()
        # the small call
        sp, _, su = losskit_fns(loss, small_c)
        st = _timeit([("small", sp), ("small unchecked", su)], max(args.repeats, 3),
                     inner=SMALL_INNER)
        # the arithmetic alone: the same call on a leading slice of at most 1 MiB of the
        # first input (and a quarter of its rows),
        # repeated (its inputs and gradient stay in cache), scaled to the full size
        in_cache = None
        if c["kind"] in ("pointwise", "row"):
            n0 = c["arrays"][0].shape[0]
            k = max(1, min(n0 // 4, int(n0 * MiB / c["arrays"][0].nbytes)))
            if k < n0 and all(a.shape[:1] == (n0,) for a in c["arrays"]):
                sliced = dict(c, arrays=[a[:k] for a in c["arrays"]])
                sp, _, _ = losskit_fns(loss, sliced)
                ct = _timeit([("slice", sp)], max(args.repeats, 3), inner=20)
                in_cache = quantiles(ct["slice"])[0] * n0 / k
        path = losskit_path(loss, c)
        small_path = losskit_path(loss, small_c)
        arrays_bytes = sum(a.nbytes for a in c["arrays"])
        gbytes = grad_nbytes(c)
        floor = (arrays_bytes + gbytes) / (bw * 1e9)
        res = {
            "name": loss.name, "family": loss.family, "kind": c["kind"],
            "shape": " x ".join(str(tuple(a.shape)) for a in c["arrays"][:1]) + (
                f", V {c['arrays'][1].shape[0]}" if c["kind"] == "matmul" else ""),
            "median": med, "iqr": iqr, "floor_s": floor, "bytes": arrays_bytes + gbytes,
            "grad_mib": gbytes / MiB, "trace_mib": trace, "rss_mib": rss,
            "trace_out_mib": trace_out, "rss_out_mib": rss_out,
            "small_s": quantiles(st["small"])[0],
            "small_unchecked_s": quantiles(st["small unchecked"])[0],
            "small_shape": tuple(small_c["arrays"][0].shape),
            "path": path, "small_path": small_path,
            "torch_src": c["torch_src"], "jax_src": c["jax_src"] if jf is not None else "",
            "value_err": {"small": v_small, "big": v_big, "jax": j_big},
            "grad_err": {"small": g_small, "big": g_big},
            "in_cache_s": in_cache,
            "wall_s": time.perf_counter() - t_start,
        }
        results.append(res)
        print(f"  {loss.name:30s} lk {med['losskit'] * 1e3:8.2f} ms  torch "
              f"{med['torch'] * 1e3:8.2f} ms  x{med['losskit'] / med['torch']:.2f}"
              + (f"  jax {med['jax'] * 1e3:8.2f} ms" if "jax" in med else "")
              + f"  small {res['small_s'] * 1e6:.1f} us  [{path}]  ({res['wall_s']:.0f} s)",
              flush=True)
        del c, contenders, plain, out_fn, unchecked, jf
    info["load_after"] = os.getloadavg()
    Path(args.json_out).write_text(json.dumps({"info": info, "results": results}))


# ---------------------------------------------------------------------------- report
def _ms(s):
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.2f} s"


def evaluate(r):
    """(cells, misses): the target checks of one result, each miss with its reason."""
    med = r["median"]
    lk_t, th = med["losskit"], med["torch"]
    ratio = lk_t / th
    misses = []
    path = r["path"]
    fl = lk_t / r["floor_s"]
    t_fl = th / r["floor_s"]
    if ratio > TORCH_LIMIT:
        why = (f"{_ms(lk_t)} vs torch {_ms(th)} = {ratio:.2f}x; "
               f"losskit at {fl:.1f}x the memory-traffic floor, torch at {t_fl:.1f}x")
        gemm = med.get("gemm floor")
        if gemm is not None:
            why += (f"; the three NumPy matrix products of the same shapes (logits, hidden "
                    f"and weight gradients; no exact method does fewer) take {_ms(gemm)} "
                    f"alone: losskit at {lk_t / gemm:.2f}x them, 0.5x torch = "
                    f"{_ms(0.5 * th)} is {0.5 * th / gemm:.2f}x them")
        if fl <= 1.5 * TORCH_LIMIT * t_fl and fl < 2.0:
            why += (f" (0.5x torch needs {0.5 * t_fl:.2f}x the floor: torch is already "
                    "near the memory bound)")
        misses.append(("<= 0.5x torch", why))
    if r["kind"] in ("pointwise", "row") and fl > FLOOR_LIMIT:
        why = (f"{_ms(lk_t)} = {fl:.1f}x the floor {_ms(r['floor_s'])} "
               f"({r['bytes'] / MiB:.0f} MiB moved)")
        cached = r.get("in_cache_s")
        if cached is not None:
            why += (f"; on a slice in cache (at most 1 MiB), scaled to the full size, "
                    f"{_ms(cached)} = {cached / r['floor_s']:.1f}x the floor: " + (
                        "the arithmetic alone exceeds 3x the memory traffic (compute-bound)"
                        if cached > FLOOR_LIMIT * r["floor_s"] else
                        "the arithmetic fits, the memory traffic does not"))
        misses.append(("<= 3x floor", why))
    g = r["grad_mib"]
    slack = max(0.01 * g, SLACK_MIB)  # Python objects of the call itself
    if r["trace_mib"] is None or r["trace_mib"] > g + slack:
        misses.append(("peak extra <= gradient",
                       f"tracemalloc peak {r['trace_mib']:.1f} MiB (RSS {r['rss_mib']:.1f}) "
                       f"vs gradient {g:.1f} MiB: {r['trace_mib'] / g:.1f}x"
                       + (" (the gradients + one block of logits, 64 MiB by default; "
                          "`chunk_size` trades it for time, see docs/performance.md)"
                          if r["kind"] == "matmul" else "")))
    if r["trace_out_mib"] is not None and r["trace_out_mib"] > slack:
        misses.append(("0 with out=",
                       f"out= call still allocates {r['trace_out_mib']:.1f} MiB "
                       f"({r['trace_out_mib'] / g:.2f}x the gradient)"))
    if r["small_s"] > SMALL_LIMIT_S:
        misses.append(("small <= 10 us",
                       f"{r['small_s'] * 1e6:.1f} us at {tuple(r['small_shape'])}; with "
                       f"validate=False {r['small_unchecked_s'] * 1e6:.1f} us"
                       + ("" if r["small_path"] == path else f"; path: {r['small_path']}")))
    return misses


def report(data, command) -> str:
    info, results = data["info"], data["results"]
    L = ["# losskit catalog benchmark: value + gradient of every loss on the CPU", "",
         f"Command: `{command}`", "",
         f"Generated on {time.strftime('%Y-%m-%d %H:%M')}: {info['cpus']} CPUs "
         f"({platform.processor() or platform.machine()}), Python {info['python']}, NumPy "
         f"{info['numpy']}, numba {info['numba']}, PyTorch {info['torch']} (2 threads), JAX "
         f"{info['jax']}, Optax {info['optax']}; losskit fast-path engine {info['engine']}; "
         f"`OMP_WAIT_POLICY={info['omp_wait_policy']}`; scale {info['scale']} of the realistic "
         f"sizes, {info['repeats']} interleaved repeats (medians). Copy bandwidth "
         f"{info['bandwidth_gbs']:.1f} GB/s (read + write; one thread "
         f"{info['bandwidth_1t']:.1f}, two {info['bandwidth_2t']:.1f}). Load average before "
         f"{info['load_before'][0]:.2f}, after {info['load_after'][0]:.2f} (shared "
         "machine).", "",
         "Method: see the docstring of `benchmarks/catalog.py`. *x torch*, *x jax*: losskit's "
         "median over theirs; *x floor*: losskit's median over (inputs read once + gradient "
         "written once) / bandwidth (target <= 3 for the pointwise and row kinds only); "
         "*peak extra*: tracemalloc peak of one call (gradient cache emptied first) / of the "
         "`out=` call, against the gradient's size (slack: 1% of it or 64 KiB); *small*: one call at (32, 10) "
         "(boxes (32, 4), linear CE N 32 d 16 V 10); *path*: `fused` = a NumPy fast path "
         "took the call, `generic` = the Array-API pipeline.", "",
         "| loss | family (kind) | size | losskit | x torch | x jax | x floor | "
         "peak extra / out= / grad MiB | small us | path | targets met? |",
         "|---|---|---|---:|---:|---:|---:|---|---:|---|---|"]
    all_misses = []
    for r in results:
        med = r["median"]
        misses = evaluate(r)
        all_misses += [(r["name"], t, w) for t, w in misses]
        xj = f"{med['losskit'] / med['jax']:.2f}" if "jax" in med else ""
        fl = med["losskit"] / r["floor_s"]
        fl_s = f"{fl:.1f}" if r["kind"] in ("pointwise", "row") else f"({fl:.1f})"
        mem = (f"{r['trace_mib']:.1f} / "
               + ("n/a" if r["trace_out_mib"] is None else f"{r['trace_out_mib']:.1f}")
               + f" / {r['grad_mib']:.1f}")
        met = "yes" if not misses else "**no**: " + ", ".join(t for t, _ in misses)
        L.append(f"| {r['name']} | {r['family']} ({r['kind']}) | {r['shape']} | "
                 f"{_ms(med['losskit'])} | {med['losskit'] / med['torch']:.2f} | {xj} | "
                 f"{fl_s} | {mem} | {r['small_s'] * 1e6:.1f} | {r['path']} | {met} |")
    n_torch = sum(1 for r in results
                  if r["median"]["losskit"] / r["median"]["torch"] <= TORCH_LIMIT)
    L += ["", f"**{n_torch} of {len(results)}** losses at <= 0.5x PyTorch's time; "
          f"{len(results) - len({m[0] for m in all_misses})} of {len(results)} meet every "
          "target. x floor in parentheses: no floor target for that kind.", "",
          "Above 0.5x PyTorch's time: " + (", ".join(
              f"`{r['name']}` ({r['median']['losskit'] / r['median']['torch']:.2f}x)"
              for r in results if r["median"]["losskit"] / r["median"]["torch"] > TORCH_LIMIT)
              or "none") + ".", "",
          "## Missed targets, with the measurement", ""]
    if not all_misses:
        L.append("None.")
    for r in results:
        mine = [(t, w) for n, t, w in all_misses if n == r["name"]]
        if mine:
            L.append(f"* `{r['name']}` (path: {r['path']}): "
                     + "; ".join(f"**{t}**: {w}" for t, w in mine))
    L += ["", "## Contenders and value checks", "",
          "Values checked before timing (|losskit - torch| <= 1e-4 relative, else the run "
          "stops); gradient error = ||g - g_torch|| / ||g_torch|| at the timed size.", "",
          "| loss | PyTorch contender | JAX contender | value rel. err | grad rel. err | "
          "torch median | jax median |", "|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        med = r["median"]
        L.append(f"| {r['name']} | {r['torch_src']} | {r['jax_src'] or '(none in Optax)'} | "
                 f"{r['value_err']['big']:.1e} | {r['grad_err']['big']:.1e} | "
                 f"{_ms(med['torch'])} | {_ms(med['jax']) if 'jax' in med else ''} |")
    return "\n".join(L) + "\n"


def _render(data, command):
    text = report(data, command)
    if "wall_s" in data["info"]:
        text = text.replace("\n\nMethod:",
                            f" Wall time {data['info']['wall_s']:.0f} s.\n\nMethod:", 1)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="markdown file (default: print only)")
    parser.add_argument("--json", default=None, help="also write the raw numbers here")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="scale 0.01, 2 repeats")
    parser.add_argument("--losses", default="", help="comma-separated loss names")
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--omp-wait-policy", default="PASSIVE")
    parser.add_argument("--from-json", default=None,
                        help="re-render the table of a run saved with --json (no timing)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.repeats = min(args.scale, 0.01), min(args.repeats, 2)
    if args.child:
        child(args)
        return 0
    command = "python " + " ".join(["benchmarks/catalog.py", *(argv if argv is not None
                                                                 else sys.argv[1:])])
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        text = _render(data, data["info"].get("command", command))
        if args.out:
            Path(args.out).write_text(text)
        print(text)
        return 0
    env = dict(os.environ)
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(key, None)
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "catalog.json")
        cmd = [sys.executable, __file__, "--child", "--json-out", path, "--scale",
               str(args.scale), "--repeats", str(args.repeats), "--losses", args.losses] + (
                   ["--no-jax"] if args.no_jax else [])
        subprocess.run(cmd, env=env, check=True)
        data = json.loads(Path(path).read_text())
    data["info"]["wall_s"] = time.perf_counter() - t0
    data["info"]["command"] = command
    text = _render(data, command)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=1))
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
