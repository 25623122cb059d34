"""OpInfo-lite: one entry per loss configuration, with an independent reference.

Every ``Case`` names a losskit loss, the options it is called with, a generator of
sample inputs (NumPy float64, kept away from clamps and kinks so finite differences are
meaningful), and references written with PyTorch and with JAX/Optax. The references
are the *other libraries'* definitions with the convention translated explicitly; no
expected number here comes from losskit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import losskit as lk

N, K = 6, 4


def _reduce_torch(v, reduction, n):
    if reduction == "none":
        return v
    if reduction == "sum":
        return v.sum()
    if reduction == "batchmean":
        return v.sum() / n
    return v.mean()


@dataclass
class Case:
    """One loss configuration.

    ``make(rng)`` returns the loss's positional arrays (``loss.inputs``, NumPy float64 or
    integer labels). ``torch_ref(*arrays, reduction, torch)`` and
    ``jax_ref(*arrays, reduction)`` compute the same reduced value with the other library,
    so that autodiff there gives the reference gradients for ``loss.differentiable``.
    """

    id: str
    loss: Any
    make: Callable[[np.random.Generator], tuple]
    torch_ref: Callable
    jax_ref: Callable | None = None
    options: dict = field(default_factory=dict)
    kinky: bool = False  # inputs may sit near a kink: use the kink-aware check
    #: relative tolerance against the references in float64 / float32
    rtol64: float = 1e-6
    rtol32: float = 1e-4
    #: run this case on every array backend too (one representative case per loss)
    on_every_backend: bool = False
    #: each example's loss depends on the other examples of the batch (contrastive
    #: losses: they are its negatives), so an integer sample weight is not the same as
    #: repeating the example
    coupled: bool = False
    #: ``reduction="mean"`` averages the loss's terms (its pairs or triplets, e.g. over the
    #: non-zero ones), not the examples: mean != sum / N (the loss's own tests check it)
    mean_of_terms: bool = False

    def inputs(self, seed=0):
        return tuple(self.make(np.random.default_rng(seed)))


# ---------------------------------------------------------------- input generators
def real_pair(shape=(N, 3)):
    def make(rng):
        return rng.normal(size=shape), rng.normal(size=shape)
    return make


def logits_labels(shape=(N, K), axis=-1, ignore=None, scale=2.0):
    def make(rng):
        z = rng.normal(scale=scale, size=shape)
        lshape = list(shape)
        k = lshape.pop(axis)
        y = rng.integers(0, k, size=tuple(lshape))
        if ignore is not None:
            y.flat[::3] = ignore
        return z, y
    return make


def logits_soft(shape=(N, K), axis=-1):
    def make(rng):
        z = rng.normal(scale=2.0, size=shape)
        t = rng.dirichlet(np.ones(shape[axis]), size=tuple(np.delete(shape, axis)))
        return z, np.moveaxis(t, -1, axis)
    return make


def probs_labels(shape=(N, K), ignore=None):
    def make(rng):
        p = rng.dirichlet(np.ones(shape[-1]) * 2.0, size=shape[:-1])
        p = 0.05 + 0.8 * p  # away from the clamp (not normalised: cross_entropy does not care)
        y = rng.integers(0, shape[-1], size=shape[:-1])
        if ignore is not None:
            y.flat[::3] = ignore
        return p, y
    return make


def probs_soft(shape=(N, K)):
    def make(rng):
        p = 0.05 + 0.9 * rng.random(size=shape)
        t = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
        return p, t
    return make


def logprobs_labels(shape=(N, K), ignore=None):
    def make(rng):
        z = rng.normal(size=shape)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        y = rng.integers(0, shape[-1], size=shape[:-1])
        if ignore is not None:
            y.flat[::3] = ignore
        return logp, y
    return make


def binary_probs(shape=(N, K)):
    def make(rng):
        return 0.05 + 0.9 * rng.random(size=shape), rng.random(size=shape)
    return make


def binary_logits(shape=(N, K), hard=False):
    def make(rng):
        t = rng.random(size=shape)
        if hard:
            t = (t > 0.5).astype(float)
        return rng.normal(scale=3.0, size=shape), t
    return make


def hinge_inputs(shape=(N, 3)):
    def make(rng):
        s = rng.normal(scale=2.0, size=shape)
        t = np.where(rng.random(size=shape) > 0.5, 1.0, -1.0)
        # keep t*s away from the margin 1 (the kink) by at least 0.05
        ts = t * s
        s = np.where(np.abs(ts - 1.0) < 0.05, s + 0.2 * t, s)
        return s, t
    return make


def scores_labels(shape=(N, K)):
    def make(rng):
        s = rng.normal(scale=2.0, size=shape)
        y = rng.integers(0, shape[-1], size=shape[:-1])
        return s, y
    return make


# ---------------------------------------------------------------- references (torch)
def t_mse(p, t, r, torch):
    return _reduce_torch(torch.nn.functional.mse_loss(p, t, reduction="none"), r, p.shape[0])


def t_l2(p, t, r, torch):
    return _reduce_torch(0.5 * torch.nn.functional.mse_loss(p, t, reduction="none"), r, p.shape[0])


def t_mae(p, t, r, torch):
    return _reduce_torch(torch.nn.functional.l1_loss(p, t, reduction="none"), r, p.shape[0])


def t_ce_logits(**kw):
    """torch.nn.functional.cross_entropy with torch's own reductions (weighted mean)."""
    axis = kw.pop("axis", -1)
    torch_kw = {}
    if "class_weight" in kw:
        torch_kw["weight"] = kw["class_weight"]
    if "ignore_index" in kw:
        torch_kw["ignore_index"] = kw["ignore_index"]
    if "label_smoothing" in kw:
        torch_kw["label_smoothing"] = kw["label_smoothing"]

    def ref(p, t, r, torch):
        kw2 = dict(torch_kw)
        if "weight" in kw2:
            kw2["weight"] = torch.as_tensor(kw2["weight"], dtype=p.dtype)
        if axis != 1:
            p = torch.movedim(p, axis if axis >= 0 else p.ndim + axis, 1)
            if t.dtype.is_floating_point:
                t = torch.movedim(t, axis if axis >= 0 else t.ndim + axis, 1)
        if r == "batchmean":
            return torch.nn.functional.cross_entropy(p, t, reduction="sum", **kw2) / p.shape[0]
        return torch.nn.functional.cross_entropy(p, t, reduction=r, **kw2)
    return ref


def t_nll(**kw):
    torch_kw = {}
    if "ignore_index" in kw:
        torch_kw["ignore_index"] = kw["ignore_index"]

    def ref(p, t, r, torch):
        kw2 = dict(torch_kw)
        if "class_weight" in kw:
            kw2["weight"] = torch.as_tensor(kw["class_weight"], dtype=p.dtype)
        if r == "batchmean":
            return torch.nn.functional.nll_loss(p, t, reduction="sum", **kw2) / p.shape[0]
        return torch.nn.functional.nll_loss(p, t, reduction=r, **kw2)
    return ref


def t_ce_probs(**kw):
    def ref(p, t, r, torch):
        kw2 = {}
        if "class_weight" in kw:
            kw2["weight"] = torch.as_tensor(kw["class_weight"], dtype=p.dtype)
        if "ignore_index" in kw:
            kw2["ignore_index"] = kw["ignore_index"]
        logp = torch.log(p)
        if t.dtype.is_floating_point:  # soft targets: sum over classes, mean over N
            v = -(t * logp).sum(-1)
            return _reduce_torch(v, r, p.shape[0])
        if r == "batchmean":
            return torch.nn.functional.nll_loss(logp, t, reduction="sum", **kw2) / p.shape[0]
        return torch.nn.functional.nll_loss(logp, t, reduction=r, **kw2)
    return ref


def t_bce(p, t, r, torch):
    if r == "batchmean":
        return torch.nn.functional.binary_cross_entropy(p, t, reduction="sum") / p.shape[0]
    return torch.nn.functional.binary_cross_entropy(p, t, reduction=r)


def t_bce_logits(**kw):
    def ref(p, t, r, torch):
        kw2 = {}
        if "pos_weight" in kw:
            kw2["pos_weight"] = torch.as_tensor(kw["pos_weight"], dtype=p.dtype)
        if r == "batchmean":
            return torch.nn.functional.binary_cross_entropy_with_logits(
                p, t, reduction="sum", **kw2) / p.shape[0]
        return torch.nn.functional.binary_cross_entropy_with_logits(p, t, reduction=r, **kw2)
    return ref


def t_hinge(margin=1.0):
    def ref(p, t, r, torch):
        return _reduce_torch(torch.clamp(margin - t * p, min=0.0), r, p.shape[0])
    return ref


def t_multiclass_hinge(margin=1.0, class_weight=None):
    """torch multi_margin_loss divides by K: multiply back; weighted mean by sum of w_y."""
    def ref(p, t, r, torch):
        k = p.shape[-1]
        v = torch.nn.functional.multi_margin_loss(p, t, margin=margin, reduction="none") * k
        if class_weight is None:
            return _reduce_torch(v, r, p.shape[0])
        w = torch.as_tensor(class_weight, dtype=p.dtype)[t]
        v = v * w
        if r == "mean":
            return v.sum() / w.sum()
        return _reduce_torch(v, r, p.shape[0])
    return ref


# ---------------------------------------------------------------- references (jax / optax)
def _jreduce(v, r, n):
    import jax.numpy as jnp
    if r == "none":
        return v
    if r == "sum":
        return jnp.sum(v)
    if r == "batchmean":
        return jnp.sum(v) / n
    return jnp.mean(v)


def j_optax(fn_name, *, transform=None):
    def ref(p, t, r):
        import optax
        v = getattr(optax.losses, fn_name)(p, t)
        if transform is not None:
            v = transform(v)
        return _jreduce(v, r, p.shape[0])
    return ref


def j_sigmoid_bce(p, t, r):
    import optax
    return _jreduce(optax.losses.sigmoid_binary_cross_entropy(p, t), r, p.shape[0])


def j_ce_probs(p, t, r):
    import jax.numpy as jnp
    if jnp.issubdtype(t.dtype, jnp.integer):
        v = -jnp.take_along_axis(jnp.log(p), t[..., None], axis=-1)[..., 0]
    else:
        v = -jnp.sum(t * jnp.log(p), axis=-1)
    return _jreduce(v, r, p.shape[0])


def j_bce(p, t, r):
    import jax.numpy as jnp
    return _jreduce(-(t * jnp.log(p) + (1 - t) * jnp.log1p(-p)), r, p.shape[0])


def j_mae(p, t, r):
    import jax.numpy as jnp
    return _jreduce(jnp.abs(p - t), r, p.shape[0])


def j_hinge(p, t, r):
    import optax
    return _jreduce(optax.losses.hinge_loss(p, t), r, p.shape[0])


def j_nll(p, t, r):
    import jax.numpy as jnp
    return _jreduce(-jnp.take_along_axis(p, t[..., None], axis=-1)[..., 0], r, p.shape[0])


def j_multiclass_hinge(p, t, r):
    import jax.numpy as jnp
    correct = jnp.take_along_axis(p, t[:, None], axis=-1)
    viol = jnp.maximum(p - correct + 1.0, 0.0)
    viol = jnp.where(jnp.arange(p.shape[-1])[None, :] == t[:, None], 0.0, viol)
    return _jreduce(viol.sum(-1), r, p.shape[0])


CW = [0.5, 2.0, 1.0, 3.0]

CASES = [
    Case("mse", lk.mse, real_pair(), t_mse, j_optax("squared_error")),
    Case("mse-3d", lk.mse, real_pair((3, 2, 5)), t_mse, j_optax("squared_error")),
    Case("l2_loss", lk.l2_loss, real_pair(), t_l2, j_optax("l2_loss")),
    Case("mae", lk.mae, real_pair(), t_mae, j_mae, kinky=True),
    Case("softmax_ce", lk.softmax_cross_entropy, logits_labels(), t_ce_logits(),
         j_optax("softmax_cross_entropy_with_integer_labels")),
    Case("softmax_ce-soft", lk.softmax_cross_entropy, logits_soft(), t_ce_logits(),
         j_optax("softmax_cross_entropy")),
    Case("softmax_ce-weight", lk.softmax_cross_entropy, logits_labels(),
         t_ce_logits(class_weight=CW), options={"class_weight": CW}),
    Case("softmax_ce-ignore", lk.softmax_cross_entropy, logits_labels(ignore=-100),
         t_ce_logits(ignore_index=-100), options={"ignore_index": -100}),
    Case("softmax_ce-ignore-in-range", lk.softmax_cross_entropy, logits_labels(ignore=0),
         t_ce_logits(ignore_index=0), options={"ignore_index": 0}),
    Case("softmax_ce-smooth", lk.softmax_cross_entropy, logits_labels(),
         t_ce_logits(label_smoothing=0.2), options={"label_smoothing": 0.2}),
    Case("softmax_ce-all", lk.softmax_cross_entropy, logits_labels(ignore=-1),
         t_ce_logits(class_weight=CW, ignore_index=-1, label_smoothing=0.15),
         options={"class_weight": CW, "ignore_index": -1, "label_smoothing": 0.15}),
    Case("softmax_ce-soft-weight-smooth", lk.softmax_cross_entropy, logits_soft(),
         t_ce_logits(class_weight=CW, label_smoothing=0.1),
         options={"class_weight": CW, "label_smoothing": 0.1}),
    Case("softmax_ce-axis1", lk.softmax_cross_entropy, logits_labels((3, K, 5), axis=1),
         t_ce_logits(axis=1), options={"axis": 1}),
    Case("softmax_ce-axis1-weight-ignore", lk.softmax_cross_entropy,
         logits_labels((3, K, 5), axis=1, ignore=-100),
         t_ce_logits(axis=1, class_weight=CW, ignore_index=-100),
         options={"axis": 1, "class_weight": CW, "ignore_index": -100}),
    Case("cross_entropy", lk.cross_entropy, probs_labels(), t_ce_probs(), j_ce_probs),
    Case("cross_entropy-soft", lk.cross_entropy, probs_soft(), t_ce_probs(), j_ce_probs),
    Case("cross_entropy-weight-ignore", lk.cross_entropy, probs_labels(ignore=-100),
         t_ce_probs(class_weight=CW, ignore_index=-100),
         options={"class_weight": CW, "ignore_index": -100}),
    Case("nll_loss", lk.nll_loss, logprobs_labels(), t_nll(), j_nll),
    Case("nll_loss-weight-ignore", lk.nll_loss, logprobs_labels(ignore=-100),
         t_nll(class_weight=CW, ignore_index=-100),
         options={"class_weight": CW, "ignore_index": -100}),
    Case("binary_cross_entropy", lk.binary_cross_entropy, binary_probs(), t_bce, j_bce),
    Case("sigmoid_bce", lk.sigmoid_binary_cross_entropy, binary_logits(), t_bce_logits(),
         j_sigmoid_bce),
    Case("sigmoid_bce-hard", lk.sigmoid_binary_cross_entropy, binary_logits(hard=True),
         t_bce_logits(), j_sigmoid_bce),
    Case("sigmoid_bce-pos_weight", lk.sigmoid_binary_cross_entropy, binary_logits(),
         t_bce_logits(pos_weight=[1.0, 2.0, 0.5, 3.0]),
         options={"pos_weight": [1.0, 2.0, 0.5, 3.0]}),
    Case("sigmoid_bce-pos_weight-scalar", lk.sigmoid_binary_cross_entropy, binary_logits(),
         t_bce_logits(pos_weight=2.5), options={"pos_weight": 2.5}),
    Case("hinge", lk.hinge, hinge_inputs(), t_hinge(), j_hinge),
    Case("hinge-margin", lk.hinge, hinge_inputs(), t_hinge(margin=0.5),
         options={"margin": 0.5}, kinky=True),
    Case("multiclass_hinge", lk.multiclass_hinge, scores_labels(), t_multiclass_hinge(),
         j_multiclass_hinge, kinky=True),
    Case("multiclass_hinge-weight", lk.multiclass_hinge, scores_labels(),
         t_multiclass_hinge(class_weight=CW), options={"class_weight": CW}, kinky=True),
    Case("multiclass_hinge-margin", lk.multiclass_hinge, scores_labels(),
         t_multiclass_hinge(margin=2.0), options={"margin": 2.0}, kinky=True),
]

REDUCTIONS = ("none", "sum", "mean", "batchmean")


def _collect_family_cases():
    """Cases of the other loss families live in ``tests/cases/cases_<family>.py`` (``CASES``)."""
    import importlib
    import pathlib

    for path in sorted(pathlib.Path(__file__).parent.glob("cases_*.py")):
        CASES.extend(importlib.import_module(path.stem).CASES)


_collect_family_cases()
CASE_IDS = [c.id for c in CASES]


def _first_case_of_every_loss():
    seen, out = set(), []
    for c in CASES:
        if c.loss.name not in seen:
            seen.add(c.loss.name)
            out.append(c)
    return out


#: the first case of every loss (one per catalog loss that has cases)
ONE_PER_LOSS = _first_case_of_every_loss()
