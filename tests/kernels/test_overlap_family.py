"""The overlap fast paths (``losskit.kernels.overlap``) against the generic kernels.

dice_loss, tversky_loss and jaccard_loss: every fused result must equal the generic
path's (fast paths off), up to rounding, for every reduction, both float dtypes, every
mode and activation, ``squared``, ``smooth``, ``ignore_index``, empty masks, ``out=``,
read-only and non-contiguous inputs, sizes on both sides of the parallel threshold and
concurrent calls; and the fast path must really be the one that answered. Expected values
come from the generic path, and for the kernel's in-place path (probabilities with a mask)
from the definitions written out in NumPy (:func:`reference`, itself checked against
finite differences); that path must also allocate nothing of the data's size.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import losskit as lk
from losskit.core import dispatch
from losskit.kernels import fast_paths as _fast
from engines import call as _call, fused as fast, generic

pytest.importorskip("numba")

REDUCTIONS = ("none", "sum", "mean", "batchmean")
DTYPES = (np.float32, np.float64)
LOSSES = ("dice_loss", "tversky_loss", "jaccard_loss")


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    monkeypatch.setattr(dispatch, "ENABLED", True)
    monkeypatch.setattr(_fast, "USE_NUMBA", True)


def close(got, expected, dtype):
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            close(g, e, dtype)
        return
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if dtype == np.float32:
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-6)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


def inputs(shape, dtype, rng, act, target):
    """(prediction, target): probabilities or logits; a 0/1 mask, a soft mask or labels."""
    z = rng.normal(size=shape).astype(dtype)
    if act is False:
        z = (1.0 / (1.0 + np.exp(-z))).astype(dtype)
    if target == "labels":
        t = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
    elif target == "soft":
        t = rng.random(size=shape)
    else:
        t = (rng.random(size=shape) > 0.6).astype(np.uint8)
    return z, t


OPTIONS = {
    "dice_loss": [{}, {"squared": True}, {"smooth": 0.0}],
    "tversky_loss": [{}, {"alpha": 0.3, "beta": 0.7, "smooth": 0.5}, {"alpha": 0.0,
                                                                        "smooth": 0.0}],
    "jaccard_loss": [{}, {"squared": True, "smooth": 0.0}],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act,target", [(False, "mask"), (False, "soft"),
                                        ("sigmoid", "mask"), ("softmax", "labels"),
                                        ("softmax", "soft")])
@pytest.mark.parametrize("name", LOSSES)
def test_equals_generic(name, act, target, dtype):
    loss = getattr(lk, name)
    rng = np.random.default_rng(0)
    z, t = inputs((3, 4, 5, 7), dtype, rng, act, target)
    for opts in OPTIONS[name]:
        for mode in ("per_class", "global"):
            kw = dict(opts, mode=mode, from_logits=act)
            for reduction in REDUCTIONS:
                exp = generic(loss, z, t, reduction=reduction, **kw)
                close(fast(loss, z, t, reduction=reduction, **kw), exp, dtype)
            close(fast(loss, z, t, want="value", **kw), generic(loss, z, t, want="value",
                                                                **kw), dtype)


@pytest.mark.parametrize("name", LOSSES)
def test_layouts_axis_none_and_two_d(name):
    loss = getattr(lk, name)
    rng = np.random.default_rng(1)
    z, t = inputs((4, 6, 5), np.float64, rng, "sigmoid", "mask")
    close(fast(loss, z, t, axis=None, from_logits="sigmoid"),
          generic(loss, z, t, axis=None, from_logits="sigmoid"), np.float64)
    z, t = inputs((5, 3), np.float64, rng, "softmax", "labels")
    for axis in (1, -1):
        close(fast(loss, z, t, axis=axis, from_logits="softmax"),
              generic(loss, z, t, axis=axis, from_logits="softmax"), np.float64)
    z, t = inputs((7,), np.float64, rng, False, "mask")
    close(fast(loss, z, t, axis=None), generic(loss, z, t, axis=None), np.float64)
    # channels-last is the generic path's
    z, t = inputs((2, 5, 3), np.float64, rng, "softmax", "soft")
    close(fast(loss, z, t, axis=-1, from_logits="softmax", answered=False),
          generic(loss, z, t, axis=-1, from_logits="softmax"), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_ignore_index_and_empty_masks(name, dtype):
    loss = getattr(lk, name)
    rng = np.random.default_rng(2)
    z, t = inputs((3, 4, 6, 5), dtype, rng, "softmax", "labels")
    t[0, :2] = 255
    t[1] = 255  # a whole sample ignored
    t[2][t[2] == 3] = 0  # class 3 absent from sample 2
    for act in ("softmax", "sigmoid"):
        for smooth in (0.0, 1.0):
            for mode in ("per_class", "global"):
                kw = dict(from_logits=act, ignore_index=255, smooth=smooth, mode=mode)
                close(fast(loss, z, t, reduction="none", **kw),
                      generic(loss, z, t, reduction="none", **kw), dtype)
    p = np.zeros((2, 3, 4, 4), dtype)
    m = np.zeros((2, 3, 4, 4), dtype)
    p[1, 0] = 0.5
    m[1, 1] = 1.0
    for smooth in (0.0, 1.0):
        for mode in ("per_class", "global"):
            close(fast(loss, p, m, smooth=smooth, mode=mode, reduction="none"),
                  generic(loss, p, m, smooth=smooth, mode=mode, reduction="none"), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["softmax", "sigmoid"])
def test_above_the_parallel_threshold(act, dtype):
    rng = np.random.default_rng(3)
    shape = (3, 4, 90, 130)  # 140400 elements, several blocks per sample, a partial one
    assert np.prod(shape) >= _fast.PARALLEL_MIN
    z, t = inputs(shape, dtype, rng, act, "labels")
    for name in LOSSES:
        loss = getattr(lk, name)
        close(fast(loss, z, t, from_logits=act, reduction="mean"),
              generic(loss, z, t, from_logits=act, reduction="mean"), dtype)


@pytest.mark.parametrize("shape", [(5, 4, 10, 20), (700, 4, 7, 9)])
def test_small_maps_packed_several_samples_per_block(shape):
    """Samples of at most half a scratch block go through it several at a time: 2 per
    block with a partial last block (serial build), 8 per block in items of several
    samples (parallel build); every activation and target form, ``ignore_index``, both
    modes, against the generic path, and the three target forms bit-identical."""
    rng = np.random.default_rng(11)
    assert (np.prod(shape) >= _fast.PARALLEL_MIN) == (shape[0] == 700)
    for name in LOSSES:
        loss = getattr(lk, name)
        for act, target in (("softmax", "labels"), ("sigmoid", "mask"), (False, "soft")):
            z, t = inputs(shape, np.float64, rng, act, target)
            if act is False:
                z = probabilities(shape, np.float64, rng)
            for mode in ("per_class", "global"):
                kw = dict(from_logits=act, mode=mode, reduction="none")
                close(fast(loss, z, t, **kw), generic(loss, z, t, **kw), np.float64)
        z, lab = inputs(shape, np.float32, rng, "softmax", "labels")
        lab[1, 0] = 255
        kw = dict(from_logits="softmax", ignore_index=255, reduction="none")
        close(fast(loss, z, lab, **kw), generic(loss, z, lab, **kw), np.float32)
        lab[lab == 255] = 0
        onehot = np.moveaxis(np.eye(shape[1], dtype=np.float32)[lab], -1, 1)
        kw = dict(from_logits="softmax", reduction="none")
        results = [fast(loss, z, t, **kw) for t in (lab, onehot, onehot.astype(bool))]
        for other in results[1:]:
            for a, b in zip(results[0], other):
                np.testing.assert_array_equal(a, b)


def test_nan_and_infinite_inputs():
    rng = np.random.default_rng(4)
    z, t = inputs((2, 3, 4, 4), np.float64, rng, "sigmoid", "mask")
    z[0, 1, 2, 2] = np.nan
    z[1, 0, 0, 0] = np.inf
    z[1, 2, 0, 1] = -np.inf
    with np.errstate(all="ignore"):
        close(fast(lk.dice_loss, z, t, from_logits="sigmoid", reduction="none"),
              generic(lk.dice_loss, z, t, from_logits="sigmoid", reduction="none"),
              np.float64)
        # softmax logits with NaN/inf: the generic path's edge rules
        lab = rng.integers(0, 3, size=(2, 4, 4))
        close(fast(lk.dice_loss, z, lab, from_logits="softmax", answered=False),
              generic(lk.dice_loss, z, lab, from_logits="softmax"), np.float64)
    p = np.full((2, 2, 3), 0.5)
    p[0, 0, 0] = np.nan
    close(fast(lk.jaccard_loss, p, (p > 0.4).astype(float), reduction="none"),
          generic(lk.jaccard_loss, p, (p > 0.4).astype(float), reduction="none"), np.float64)


def test_out_read_only_and_non_contiguous():
    rng = np.random.default_rng(5)
    z, t = inputs((2, 3, 4, 5), np.float32, rng, "softmax", "labels")
    exp = generic(lk.tversky_loss, z, t, want="grad", from_logits="softmax")
    out = np.empty_like(z)
    assert fast(lk.tversky_loss, z, t, want="grad", out=out, from_logits="softmax") is out
    close(out, exp, np.float32)
    strided = np.zeros((2, 3, 4, 10), np.float32)[..., ::2]
    got = fast(lk.tversky_loss, z, t, out=strided, from_logits="softmax")
    assert got[1] is strided
    close(strided, exp, np.float32)
    z2 = z.copy()
    assert fast(lk.tversky_loss, z2, t, want="grad", out=z2, from_logits="softmax") is z2
    close(z2, exp, np.float32)
    zn = np.zeros((2, 3, 4, 10), np.float32)
    zn[..., ::2] = z
    zn = zn[..., ::2]
    tr = t.copy()
    tr.flags.writeable = False
    zr = z.copy()
    zr.flags.writeable = False
    for a, b in ((zn, t), (zr, tr)):
        close(fast(lk.tversky_loss, a, b, from_logits="softmax"),
              generic(lk.tversky_loss, a, b, from_logits="softmax"), np.float32)


def test_empty_batch_and_invalid_inputs_take_the_generic_path():
    z = np.zeros((0, 3, 4))
    t = np.zeros((0, 4), np.int64)
    for reduction in REDUCTIONS:
        close(fast(lk.dice_loss, z, t, from_logits="softmax", reduction=reduction,
                   answered=False),
              generic(lk.dice_loss, z, t, from_logits="softmax", reduction=reduction),
              np.float64)
    p = np.full((2, 3, 4), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lk.dice_loss(p * 3, (p > 0).astype(float))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lk.dice_loss(p, p * 3)
    with pytest.raises(ValueError, match="class indices"):
        lk.dice_loss(p, np.full((2, 4), 3), from_logits="softmax")
    with pytest.raises(ValueError, match="ignore_index"):
        lk.dice_loss(p, p, ignore_index=1)
    with pytest.raises(ValueError, match="softmax"):
        lk.dice_loss(p, p, axis=None, from_logits="softmax")


def test_numpy_engine_and_sample_weight_fall_back(monkeypatch):
    rng = np.random.default_rng(6)
    z, t = inputs((2, 3, 4), np.float64, rng, "sigmoid", "mask")
    w = np.array([1.0, 2.0])
    close(fast(lk.dice_loss, z, t, from_logits="sigmoid", sample_weight=w, answered=False),
          generic(lk.dice_loss, z, t, from_logits="sigmoid", sample_weight=w), np.float64)
    monkeypatch.setattr(_fast, "USE_NUMBA", False)
    close(fast(lk.dice_loss, z, t, from_logits="sigmoid", answered=False),
          generic(lk.dice_loss, z, t, from_logits="sigmoid"), np.float64)


def test_concurrent_calls():
    rng = np.random.default_rng(7)
    jobs = []
    for k in range(6):
        shape = (2, 4, 150 + k, 120) if k % 2 else (2, 3, 5 + k, 6)
        z, t = inputs(shape, np.float32, rng, "softmax", "labels")
        jobs.append(((z, t), generic(lk.dice_loss, z, t, from_logits="softmax")))
    results = [None] * len(jobs)

    def work(i):
        for _ in range(3):
            results[i] = lk.dice_loss.value_and_grad(*jobs[i][0], from_logits="softmax")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for (_, exp), got in zip(jobs, results):
        close(got, exp, np.float32)


# --------------------------------------------------------------------------- in-place path
# Probabilities with a mask target are read in place by the kernel (the mask in its own
# dtype), in every decomposition of the work: one item for the whole call (serial build),
# whole samples per item and samples cut into spans (parallel build). Expected values come
# from the definitions, written out below in NumPy (float64), not from losskit.


def reference(name, p, t, mode="per_class", smooth=1.0, squared=False, alpha=0.5, beta=0.5):
    """(per-sample values, gradient of their sum) from the definitions: dice
    1 - (2I + s)/(P + T + s), Jaccard 1 - (I + s)/(P + T - I + s), Tversky
    1 - (I + s)/(I + a(P - I) + b(T - I) + s), with I = sum p t, P = sum p (p^2 when
    squared), T = sum t (t^2), over the positions of each class (or of the whole sample
    in "global" mode), averaged over the classes."""
    p = np.asarray(p, np.float64)
    t = np.asarray(t, np.float64)
    n, c = p.shape[:2]
    p3 = p.reshape(n, c, -1)
    t3 = t.reshape(n, c, -1)
    axes = (2,) if mode == "per_class" else (1, 2)
    I = (p3 * t3).sum(axes, keepdims=True)
    P = (p3 * p3 if squared else p3).sum(axes, keepdims=True)
    T = (t3 * t3 if squared else t3).sum(axes, keepdims=True)
    dP = 2 * p3 if squared else np.ones_like(p3)
    if name == "dice_loss":
        num, den = 2 * I + smooth, P + T + smooth
        dnum, dden = 2 * t3, dP
    elif name == "jaccard_loss":
        num, den = I + smooth, P + T - I + smooth
        dnum, dden = t3, dP - t3
    else:
        num = I + smooth
        den = I + alpha * (P - I) + beta * (T - I) + smooth
        dnum, dden = t3, t3 + alpha * (dP - t3) - beta * t3
    groups = c if mode == "per_class" else 1
    values = (1 - num / den).reshape(n, -1).sum(1) / groups
    grad = -(dnum * den - num * dden) / den**2 / groups
    return values, grad.reshape(p.shape)


def probabilities(shape, dtype, rng):
    z = rng.normal(size=shape)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(dtype)


def test_reference_against_finite_differences():
    rng = np.random.default_rng(10)
    p = probabilities((2, 3, 4), np.float64, rng)
    t = (rng.random((2, 3, 4)) > 0.5).astype(np.float64)
    for name, kw in (("dice_loss", {"squared": True}), ("jaccard_loss", {"mode": "global"}),
                     ("tversky_loss", {"alpha": 0.3, "beta": 0.7, "smooth": 0.5})):
        _, grad = reference(name, p, t, **kw)
        fd = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            d = np.zeros_like(p)
            d[i] = 1e-6
            fd[i] = (reference(name, p + d, t, **kw)[0].sum()
                     - reference(name, p - d, t, **kw)[0].sum()) / 2e-6
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


SHAPES = {
    "serial": (5, 3, 6, 7),
    "two_d": (32, 10),  # one position per class (S = 1)
    "whole_samples": (16, 2, 64, 64),  # parallel, several whole samples per item
    "spans": (1, 3, 256, 256),  # parallel, one sample cut into spans
}


@pytest.mark.parametrize("layout", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_targets_against_the_definitions(layout, dtype):
    rng = np.random.default_rng(11)
    shape = SHAPES[layout]
    p = probabilities(shape, dtype, rng)
    t = (rng.random(shape) > 0.6).astype(dtype)
    n = shape[0]
    cases = [("dice_loss", {}), ("dice_loss", {"squared": True, "mode": "global"}),
             ("jaccard_loss", {"squared": True, "smooth": 0.0}),
             ("tversky_loss", {"alpha": 0.3, "beta": 0.7, "smooth": 0.5, "mode": "global"})]
    for name, kw in cases:
        values, grad = reference(name, p, t, **kw)
        v, g = fast(getattr(lk, name), p, t, reduction="none", **kw)
        close(v, values.astype(dtype), dtype)
        close(g, grad.astype(dtype), dtype)
        v, g = fast(getattr(lk, name), p, t, reduction="mean", **kw)
        close(v, np.asarray(values.mean(), dtype), dtype)
        close(g, (grad / n).astype(dtype), dtype)
        v = fast(getattr(lk, name), p, t, want="value", reduction="sum", **kw)
        close(v, np.asarray(values.sum(), dtype), dtype)


@pytest.mark.parametrize("mask_dtype",
                         [np.bool_, np.uint8, np.float32, np.float64, np.int64])
def test_mask_dtypes(mask_dtype):
    """Masks of any real dtype, read in place (bool, uint8, float32, float64) or cast
    first (others), give the loss of the same mask in the prediction's dtype."""
    rng = np.random.default_rng(12)
    for shape in ((3, 4, 5, 6), (2, 4, 128, 130)):
        p = probabilities(shape, np.float32, rng)
        m = rng.random(shape) > 0.5
        t = m.astype(mask_dtype)
        values, grad = reference("jaccard_loss", p, m)
        v, g = fast(lk.jaccard_loss, p, t, reduction="none")
        close(v, values.astype(np.float32), np.float32)
        close(g, grad.astype(np.float32), np.float32)
    # a float64 soft mask is cast to float32 (as the generic path does) before the sums
    p = probabilities((2, 3, 8), np.float32, rng)
    t = rng.random((2, 3, 8))
    values, grad = reference("dice_loss", p, t.astype(np.float32))
    v, g = fast(lk.dice_loss, p, t, reduction="none")
    close(v, values.astype(np.float32), np.float32)
    close(g, grad.astype(np.float32), np.float32)


@pytest.mark.parametrize("layout", SHAPES)
def test_invalid_entries_found_by_the_kernel(layout):
    """Out-of-range probabilities or mask entries, anywhere (here the last entry, so in the
    last item of every decomposition), send the call to the generic path, which raises."""
    rng = np.random.default_rng(13)
    shape = SHAPES[layout]
    p = probabilities(shape, np.float32, rng)
    t = (rng.random(shape) > 0.5).astype(np.uint8)
    last = (-1,) * len(shape)
    bad_p = p.copy()
    bad_p[last] = 1.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lk.dice_loss.value_and_grad(bad_p, t)
    bad_t = t.astype(np.float32)
    bad_t[last] = -0.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lk.dice_loss.value_and_grad(p, bad_t)
    bad_t = t.copy()
    bad_t[last] = 2
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lk.tversky_loss(p, bad_t, reduction="none")


@pytest.mark.parametrize("mask_dtype", [np.float32, np.uint8, np.bool_])
def test_memory_of_one_call(mask_dtype):
    """One call allocates the gradient and next to nothing else; with ``out=`` next to
    nothing at all (no cast or copy of the mask, no scratch of the data's size)."""
    import tracemalloc

    from losskit.kernels import clear_gradient_cache

    rng = np.random.default_rng(14)
    shape = (16, 4, 64, 128)  # 2 MiB of float32, parallel build
    p = probabilities(shape, np.float32, rng)
    t = (rng.random(shape) > 0.5).astype(mask_dtype)
    out = np.empty_like(p)
    exp = reference("dice_loss", p, t)[1] / shape[0]
    for kw in ({}, {"out": out}):
        fast(lk.dice_loss, p, t, **kw)  # compiled
        clear_gradient_cache()
        tracemalloc.start()
        try:
            v, g = fast(lk.dice_loss, p, t, **kw)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        close(g, exp.astype(np.float32), np.float32)
        assert peak <= (0 if kw else p.nbytes) + (64 << 10), peak
    assert g is out


# --------------------------------------------------------------------------- other indexes
# focal Tversky (the loss (1 - R)^gamma of a ratio), the generalised Dice (one index over
# the inverse-volume weighted class sums) and MCC (the Matthews correlation of the sums)
KINDS = {
    "focal_tversky_loss": [{}, {"gamma": 1.0}, {"gamma": 2.5, "alpha": 0.5, "beta": 0.5,
                                                "smooth": 0.0}],
    "generalized_dice_loss": [{}, {"weight_type": "simple", "smooth": 0.0},
                              {"weight_type": "uniform", "smooth": 1.0}],
    "mcc_loss": [{}, {"eps": 0.0}],
}


def _modes(loss):
    return ("per_class", "global") if "mode" in loss.option_defaults() else (None,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act,target", [(False, "mask"), (False, "soft"),
                                        ("sigmoid", "mask"), ("softmax", "labels")])
@pytest.mark.parametrize("name", list(KINDS))
def test_other_indexes_equal_generic(name, act, target, dtype):
    loss = getattr(lk, name)
    rng = np.random.default_rng(10)
    z, t = inputs((3, 4, 5, 7), dtype, rng, act, target)
    if target == "labels":
        t[2][t[2] == 1] = 0  # a class absent from a sample (its weight, an empty group)
    for opts in KINDS[name]:
        for mode in _modes(loss):
            kw = dict(opts, from_logits=act, **({} if mode is None else {"mode": mode}))
            for reduction in ("none", "mean"):  # (the reductions: test_equals_generic)
                close(fast(loss, z, t, reduction=reduction, **kw),
                      generic(loss, z, t, reduction=reduction, **kw), dtype)
            close(fast(loss, z, t, want="value", **kw),
                  generic(loss, z, t, want="value", **kw), dtype)


@pytest.mark.parametrize("name", list(KINDS))
def test_other_indexes_ignore_index_empty_masks_and_parallel_sizes(name):
    loss = getattr(lk, name)
    rng = np.random.default_rng(11)
    z, t = inputs((3, 4, 6, 5), np.float64, rng, "softmax", "labels")
    t[0, :2] = 255
    t[1] = 255  # a whole sample ignored
    kw = dict(from_logits="softmax", ignore_index=255, reduction="none")
    # MCC's true negatives need the count of kept positions: the generic path's
    close(fast(loss, z, t, answered=name != "mcc_loss", **kw), generic(loss, z, t, **kw),
          np.float64)
    p = np.zeros((2, 3, 4, 4))
    m = np.zeros((2, 3, 4, 4))
    p[1, 0] = 0.5
    m[1, 1] = 1.0  # empty masks and empty predictions
    for mode in _modes(loss):
        kw = {} if mode is None else {"mode": mode}
        close(fast(loss, p, m, reduction="none", **kw),
              generic(loss, p, m, reduction="none", **kw), np.float64)
    z, t = inputs((3, 4, 90, 130), np.float32, rng, "sigmoid", "mask")
    close(fast(loss, z, t, from_logits="sigmoid"), generic(loss, z, t, from_logits="sigmoid"),
          np.float32)
    z, t = inputs((4, 6, 5), np.float64, rng, False, "mask")
    if name != "generalized_dice_loss":  # (no class axis: the generic path's)
        close(fast(loss, z, t, axis=None), generic(loss, z, t, axis=None), np.float64)
    out = np.empty_like(z)
    v, g = fast(loss, z, t, out=out)
    assert g is out
    close(g, generic(loss, z, t)[1], np.float64)


def test_a_subnormal_denominator_takes_the_generic_path():
    """Squared maps of 1e-155 make the denominator subnormal: 1 / den overflows, so the
    kernel declines and the generic path's elementwise division answers (a finite
    gradient, found by hypothesis in tests/losses/test_overlap.py)."""
    p = np.array([[[0.0]]])
    t = np.array([[[7.35350144e-155]]])
    v, g = fast(lk.dice_loss, p, t, smooth=0.0, squared=True, reduction="none",
                answered=False)
    close((v, g), generic(lk.dice_loss, p, t, smooth=0.0, squared=True, reduction="none"),
          np.float64)
    assert np.all(np.isfinite(g))
