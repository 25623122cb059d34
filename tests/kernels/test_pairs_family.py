"""The pair/triplet fast paths (``losskit.kernels.pairs``) against the generic kernels.

contrastive, triplet_margin, cosine_embedding and margin_ranking: every fused result must
equal the generic path's (fast paths off), up to rounding, for every reduction, both
float dtypes, ``out=``, read-only and non-contiguous inputs, empty batches, identical
pairs, NaN/inf rows, sizes on both sides of the parallel threshold and concurrent calls;
and the fast path must really be the one that answered (``fast_paths.STATS``). Expected
values come from the generic path only.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import losskit as lk
from losskit.kernels import fast_paths as _fast
from losskit.kernels import pairs
from engines import call as _call, fused as fast, generic, fast_paths_on

pytest.importorskip("numba")

REDUCTIONS = ("none", "sum", "mean", "batchmean")
DTYPES = (np.float32, np.float64)


@pytest.fixture(autouse=True)
def _fast_paths_on(monkeypatch):
    fast_paths_on(monkeypatch)


def close(got, expected, dtype):
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected)
        for g, e in zip(got, expected):
            close(g, e, dtype)
        return
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    if dtype == np.float32:
        scale = max(1.0, float(np.nanmax(np.abs(expected), initial=0.0,
                                         where=np.isfinite(expected))))
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6 * scale)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)


def make(name, shape, dtype, rng, **kw):
    """Inputs of one loss: embeddings (and labels with both values)."""
    x = [rng.normal(size=shape).astype(dtype) for _ in range(3)]
    lead = shape if name == "margin_ranking" else shape[:-1]
    u = rng.random(size=lead) > 0.5
    if name == "contrastive":
        return x[0], x[1], u.astype(np.int64)
    if name == "triplet_margin":
        return x[0], x[1], x[2]
    return x[0], x[1], np.where(u, 1.0, -1.0)


CONFIGS = [
    ("contrastive", {}),
    ("contrastive", {"margin": 3.0}),
    ("contrastive", {"p": 1.0}),
    ("contrastive", {"p": 3.0, "margin": 2.0}),
    ("contrastive", {"p": float("inf")}),
    ("triplet_margin", {}),
    ("triplet_margin", {"swap": True}),
    ("triplet_margin", {"p": 1.0, "margin": 2.0}),
    ("triplet_margin", {"p": float("inf"), "swap": True}),
    ("triplet_margin", {"p": 1.5, "eps": 0.0}),
    ("cosine_embedding", {}),
    ("cosine_embedding", {"margin": 0.3, "eps": 0.0}),
    ("margin_ranking", {}),
    ("margin_ranking", {"margin": 0.5}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kw", CONFIGS)
def test_equals_generic_every_reduction(name, kw, dtype):
    loss = getattr(lk, name)
    rng = np.random.default_rng(0)
    args = make(name, (37, 9), dtype, rng)
    for reduction in REDUCTIONS:
        for want in ("value", "grad", "both"):
            exp = generic(loss, *args, want=want, reduction=reduction, **kw)
            close(fast(loss, *args, want=want, reduction=reduction, **kw), exp, dtype)


@pytest.mark.parametrize("name", ["contrastive", "triplet_margin", "cosine_embedding",
                                  "margin_ranking"])
def test_shapes_single_example_and_batch_axes(name):
    loss = getattr(lk, name)
    rng = np.random.default_rng(1)
    for shape in [(5,), (2, 3, 4), (1, 1)]:
        args = make(name, shape, np.float64, rng)
        for reduction in REDUCTIONS:
            close(fast(loss, *args, reduction=reduction),
                  generic(loss, *args, reduction=reduction), np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kw", [("contrastive", {}), ("triplet_margin", {"swap": True}),
                                     ("cosine_embedding", {}), ("margin_ranking", {})])
def test_above_the_parallel_threshold(name, kw, dtype):
    loss = getattr(lk, name)
    rng = np.random.default_rng(2)
    shape = (_fast.PARALLEL_MIN // 64 + 3, 64)
    if name == "margin_ranking":
        shape = (_fast.PARALLEL_MIN + 5,)
    args = make(name, shape, dtype, rng)
    for reduction in ("none", "mean"):
        close(fast(loss, *args, reduction=reduction, **kw),
              generic(loss, *args, reduction=reduction, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_identical_pairs_and_zero_vectors(dtype):
    """d = 0: the subgradient 0 (contrastive, triplet with eps=0), the eps edge of the
    triplet (eps > 0: d = eps ||1||), zero vectors of the cosine (eps and eps=0)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 5)).astype(dtype)
    y = x.copy()
    y[::2] = rng.normal(size=(3, 5))
    t01 = np.array([1, 0, 1, 0, 0, 1])
    for p in (1.0, 2.0, 3.0, float("inf")):
        for reduction in ("none", "sum"):
            close(fast(lk.contrastive, x, x, t01, p=p, reduction=reduction),
                  generic(lk.contrastive, x, x, t01, p=p, reduction=reduction), dtype)
            close(fast(lk.contrastive, x, y, t01, p=p, reduction=reduction),
                  generic(lk.contrastive, x, y, t01, p=p, reduction=reduction), dtype)
            for eps in (0.0, 1e-6):
                for swap in (False, True):
                    kw = dict(p=p, eps=eps, swap=swap, reduction=reduction)
                    close(fast(lk.triplet_margin, x, x, y, **kw),
                          generic(lk.triplet_margin, x, x, y, **kw), dtype)
                    close(fast(lk.triplet_margin, x, y, y, **kw),
                          generic(lk.triplet_margin, x, y, y, **kw), dtype)
                    close(fast(lk.triplet_margin, x, x, x, **kw),
                          generic(lk.triplet_margin, x, x, x, **kw), dtype)
    z = x.copy()
    z[1] = 0
    pm = np.array([1, -1, 1, -1, 1, -1])
    for eps in (1e-12, 0.0):
        for a, b in ((z, y), (y, z), (z, z)):
            close(fast(lk.cosine_embedding, a, b, pm, eps=eps, reduction="sum"),
                  generic(lk.cosine_embedding, a, b, pm, eps=eps, reduction="sum"), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_rows(dtype):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 4)).astype(dtype)
    y = rng.normal(size=(5, 4)).astype(dtype)
    w = rng.normal(size=(5, 4)).astype(dtype)
    x[1, 2] = np.nan
    x[2, 0] = np.inf
    y[3, 1] = -np.inf
    w[4, :] = np.inf
    t01 = np.array([1, 0, 1, 0, 0])
    pm = np.array([1, -1, 1, -1, -1])
    with np.errstate(all="ignore"):
        for p in (1.0, 2.0, float("inf"), 3.0):
            close(fast(lk.contrastive, x, y, t01, p=p, reduction="none"),
                  generic(lk.contrastive, x, y, t01, p=p, reduction="none"), dtype)
            for swap in (False, True):
                close(fast(lk.triplet_margin, x, y, w, p=p, swap=swap, reduction="none"),
                      generic(lk.triplet_margin, x, y, w, p=p, swap=swap, reduction="none"),
                      dtype)
        close(fast(lk.cosine_embedding, x, y, pm, reduction="none"),
              generic(lk.cosine_embedding, x, y, pm, reduction="none"), dtype)
        close(fast(lk.margin_ranking, x, y, np.where(x > 0, 1, -1), reduction="none"),
              generic(lk.margin_ranking, x, y, np.where(x > 0, 1, -1), reduction="none"),
              dtype)


def test_out_is_written_in_place_and_may_alias_or_be_strided():
    rng = np.random.default_rng(5)
    a, p, n = make("triplet_margin", (11, 6), np.float64, rng)
    exp = generic(lk.triplet_margin, a, p, n, want="grad", reduction="sum")
    out = np.empty_like(a)
    got = fast(lk.triplet_margin, a, p, n, want="grad", reduction="sum", out=out)
    assert got is out
    close(out, exp, np.float64)
    big = np.zeros((11, 12))
    strided = big[:, ::2]
    got = fast(lk.triplet_margin, a, p, n, want="both", reduction="sum", out=strided)
    assert got[1] is strided
    close(strided, exp, np.float64)
    a2 = a.copy()
    got = fast(lk.triplet_margin, a2, p, n, want="grad", reduction="sum", out=a2)
    assert got is a2
    close(a2, exp, np.float64)
    x1, x2, t = make("cosine_embedding", (11, 6), np.float32, rng)
    exp = generic(lk.cosine_embedding, x1, x2, t, want="grad")
    x2c = x2.copy()
    close(fast(lk.cosine_embedding, x1, x2c, t, want="grad", out=x2c), exp, np.float32)


def test_read_only_and_non_contiguous_inputs():
    rng = np.random.default_rng(6)
    for name in ("contrastive", "triplet_margin", "cosine_embedding"):
        loss = getattr(lk, name)
        big = [rng.normal(size=(8, 10)) for _ in range(3)]
        args = [b[:, ::2] for b in big]  # non-contiguous
        lead = rng.random(8) > 0.5
        if name != "triplet_margin":
            args[2] = (lead.astype(float) if name == "contrastive"
                       else np.where(lead, 1, -1))[::1]
        close(fast(loss, *args), generic(loss, *args), np.float64)
        ro = [np.array(a) for a in args]
        for a in ro:
            a.flags.writeable = False
        close(fast(loss, *ro), generic(loss, *ro), np.float64)


@pytest.mark.parametrize("name", ["contrastive", "triplet_margin", "cosine_embedding",
                                  "margin_ranking"])
def test_empty_batches_fall_back_and_agree(name):
    loss = getattr(lk, name)
    rng = np.random.default_rng(7)
    args = make(name, (0, 4), np.float64, rng)
    for reduction in REDUCTIONS:
        got = fast(loss, *args, reduction=reduction, answered=False)
        close(got, generic(loss, *args, reduction=reduction), np.float64)


def test_other_wrt_from_the_drivers():
    """The drivers state every differentiable input's gradient (wrt= an index)."""
    rng = np.random.default_rng(8)
    opts = {"margin": 1.0, "p": 2.0, "eps": 1e-6, "swap": True}
    for p in (2.0, 1.0):
        opts["p"] = p
        a, pos, neg = make("triplet_margin", (9, 5), np.float64, rng)
        for i, name in enumerate(("anchor", "positive", "negative")):
            got = pairs.triplet_margin(lk.triplet_margin, (a, pos, neg), "mean", None, opts,
                                       "grad", None, wrt=i)
            close(got, generic(lk.triplet_margin, a, pos, neg, want="grad", wrt=name,
                               **opts), np.float64)
    for name, mod_fn, kw in (("contrastive", pairs.contrastive, {"margin": 1.0, "p": 2.0}),
                             ("cosine_embedding", pairs.cosine_embedding,
                              {"margin": 0.0, "eps": 1e-12}),
                             ("margin_ranking", pairs.margin_ranking, {"margin": 0.2})):
        loss = getattr(lk, name)
        args = make(name, (9, 5), np.float64, rng)
        got = mod_fn(loss, args, "sum", None, kw, "grad", None, wrt=1)
        close(got, generic(loss, *args, want="grad", wrt="x2", reduction="sum", **kw),
              np.float64)


WRTS = [("triplet_margin", "all"), ("triplet_margin", ("negative", "anchor")),
        ("triplet_margin", "positive"), ("triplet_margin", ("positive",)),
        ("contrastive", "all"), ("contrastive", "x2"), ("cosine_embedding", "all"),
        ("margin_ranking", ("x2", "x1"))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name,wrt", WRTS)
def test_every_wrt_is_answered_by_the_fused_driver_in_one_sweep(name, wrt, reduction, dtype):
    """wrt="all" (what the PyTorch adapter asks when every input requires grad), a tuple
    or another single input: the fused driver answers, equal to the generic path."""
    loss = getattr(lk, name)
    rng = np.random.default_rng(9)
    shape = (300, 3) if name == "margin_ranking" else (300, 6)
    args = make(name, shape, dtype, rng)
    got = fast(loss, *args, want="both", wrt=wrt, reduction=reduction)
    close(got, generic(loss, *args, want="both", wrt=wrt, reduction=reduction), dtype)
    got = fast(loss, *args, want="grad", wrt=wrt)
    close(got, generic(loss, *args, want="grad", wrt=wrt), dtype)


def test_a_tuple_wrt_with_out_runs_the_generic_path():
    rng = np.random.default_rng(9)
    a, p, n = make("triplet_margin", (4, 3), np.float64, rng)
    with pytest.raises(TypeError, match="`out` takes one gradient"):
        fast(lk.triplet_margin, a, p, n, want="grad", wrt="all", out=np.empty_like(a),
             answered=False)


def test_invalid_inputs_raise_the_generic_errors():
    rng = np.random.default_rng(10)
    x1, x2, _ = make("contrastive", (4, 3), np.float64, rng)
    for bad in (np.array([1, 2, 0, 1]), np.array([1.0, np.nan, 0, 1])):
        with pytest.raises(ValueError, match="1 \\(similar pair\\) or 0"):
            lk.contrastive(x1, x2, bad)
    with pytest.raises(ValueError, match="-1"):
        lk.cosine_embedding(x1, x2, np.array([1, 0, 1, -1]))
    with pytest.raises(TypeError, match="dtype"):
        lk.triplet_margin(x1, x2.astype(np.float32), x2)
    with pytest.raises(ValueError, match="margin"):
        lk.contrastive(x1, x2, np.array([1, 0, 1, 0]), margin=-1.0)


def test_options_not_covered_and_numpy_engine_fall_back(monkeypatch):
    rng = np.random.default_rng(11)
    x1, x2, t = make("contrastive", (4, 3), np.float64, rng)
    exp = generic(lk.contrastive, x1, x2, t, margin=float("inf"))
    close(fast(lk.contrastive, x1, x2, t, margin=float("inf"), answered=False), exp,
          np.float64)
    w = np.ones(4)
    close(fast(lk.contrastive, x1, x2, t, sample_weight=w, answered=False),
          generic(lk.contrastive, x1, x2, t, sample_weight=w), np.float64)
    monkeypatch.setattr(_fast, "USE_NUMBA", False)
    close(fast(lk.contrastive, x1, x2, t, answered=False), generic(lk.contrastive, x1, x2, t),
          np.float64)


def test_concurrent_calls():
    rng = np.random.default_rng(12)
    jobs = []
    for k in range(8):
        shape = (_fast.PARALLEL_MIN // 32 + k, 32) if k % 2 else (50 + k, 7)
        args = make("triplet_margin", shape, np.float32, rng)
        jobs.append((args, generic(lk.triplet_margin, *args, reduction="sum")))
    results = [None] * len(jobs)

    def work(i):
        for _ in range(3):
            results[i] = lk.triplet_margin.value_and_grad(*jobs[i][0], reduction="sum")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for (args, exp), got in zip(jobs, results):
        close(got, exp, np.float32)


# ------------------------------------------------------------------ independent references
# The tests below take their expected values from PyTorch's autograd (float64) or from the
# mathematics, not from losskit.
torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_value_and_grads(name, arrays, reduction, kw, diff):
    """PyTorch's loss (the convention losskit documents) and autograd gradients, float64."""
    ts = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=i in diff)
          for i, a in enumerate(arrays)]
    if name == "margin_ranking":
        v = F.margin_ranking_loss(ts[0], ts[1], ts[2], margin=kw.get("margin", 0.0),
                                  reduction="none")
    elif name == "cosine_embedding":
        v = F.cosine_embedding_loss(ts[0], ts[1], ts[2], margin=kw.get("margin", 0.0),
                                    reduction="none")
    elif name == "triplet_margin":
        v = F.triplet_margin_loss(ts[0], ts[1], ts[2], margin=kw.get("margin", 1.0),
                                  p=kw.get("p", 2.0), eps=kw.get("eps", 1e-6),
                                  swap=kw.get("swap", False), reduction="none")
    else:  # contrastive (Hadsell et al.): t d^2 / 2 + (1 - t) max(0, m - d)^2 / 2
        d = F.pairwise_distance(ts[0], ts[1], p=kw.get("p", 2.0), eps=0.0)
        t, m = ts[2], kw.get("margin", 1.0)
        v = t * d ** 2 / 2 + (1 - t) * F.relu(m - d) ** 2 / 2
    if reduction == "none":
        total = v.sum()
    elif reduction == "sum":
        total = v = v.sum()
    elif reduction == "mean":
        total = v = v.mean()
    else:  # batchmean: the first axis of the unreduced loss
        total = v = v.sum() / ts[0].shape[0]
    total.backward()
    return v.detach().numpy(), tuple(ts[i].grad.numpy() for i in diff)


def _close_to_torch(got, expected, dtype):
    rtol, atol = (2e-5, 2e-6) if dtype == np.float32 else (1e-10, 1e-13)
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["contrastive", "triplet_margin", "cosine_embedding",
                                  "margin_ranking"])
def test_wrt_all_gives_every_gradient_equal_to_torch(name, reduction, dtype):
    """Both (all three) gradients from the one fused sweep, below and above the parallel
    threshold, against PyTorch's autograd."""
    loss = getattr(lk, name)
    rng = np.random.default_rng(20)
    k = len(loss.differentiable)
    for shape in ((37, 9), (_fast.PARALLEL_MIN // 16 + 5, 16)):
        args = make(name, shape, dtype, rng)
        if name == "contrastive":  # labels as floats for torch's arithmetic
            args = (args[0], args[1], args[2].astype(dtype))
        value, grads = fast(loss, *args, wrt="all", reduction=reduction)
        assert isinstance(grads, tuple) and len(grads) == k
        assert value.dtype == dtype and all(g.dtype == dtype for g in grads)
        ev, eg = _torch_value_and_grads(name, args, reduction, {}, tuple(range(k)))
        _close_to_torch(value, ev, dtype)
        for g, e in zip(grads, eg):
            _close_to_torch(g, e, dtype)


@pytest.mark.parametrize("name", ["contrastive", "triplet_margin", "cosine_embedding",
                                  "margin_ranking"])
def test_the_value_does_not_depend_on_the_thread_count_or_the_build(name):
    """Fixed blocks: the partial sums, and so the value, are bit for bit the same on one
    thread, on every thread, and in the serial build; and equal to torch's."""
    numba = pytest.importorskip("numba")
    loss = getattr(lk, name)
    rng = np.random.default_rng(21)
    shape = (_fast.PARALLEL_MIN // 32 + 7, 32) if name != "margin_ranking" else (
        _fast.PARALLEL_MIN // 8 + 3, 8)
    args = make(name, shape, np.float32, rng)
    saved = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            results.append(fast(loss, *args, reduction="sum"))
    finally:
        numba.set_num_threads(saved)
    for r in results[1:]:
        np.testing.assert_array_equal(r[0], results[0][0])
        np.testing.assert_array_equal(r[1], results[0][1])
    # the serial build of the same driver gives the same total, bit for bit
    nb = pairs._nb()
    x = [np.ascontiguousarray(a, dtype=np.float32) for a in args]
    dummy1, dummy2 = np.empty(0, np.float32), np.empty((1, 1), np.float32)
    totals = []
    for build in ("parallel", "serial"):
        if name == "margin_ranking":
            res = getattr(nb, "ranking_" + build)(x[0].reshape(-1), x[1].reshape(-1),
                                                  x[2].reshape(-1), 0.0, 1.0, dummy1, dummy1,
                                                  0, dummy1, False)
        elif name == "contrastive":
            res = getattr(nb, "contrastive_" + build)(x[0], x[1], x[2], 1.0, 2.0, 0.0, 1.0,
                                                      dummy2, dummy2, 0, dummy1)
        elif name == "cosine_embedding":
            res = getattr(nb, "cosine_" + build)(x[0], x[1], x[2], 0.0, 1e-12, 1.0, dummy2,
                                                 dummy2, 0, dummy1)
        else:
            res = getattr(nb, "triplet_" + build)(x[0], x[1], x[2], 1.0, 2.0, 1e-6, False,
                                                  0.0, 1.0, dummy2, dummy2, dummy2, 0, dummy1)
        assert res[0] == 0
        totals.append(res[1])
    assert totals[0] == totals[1]
    assert np.float32(totals[0]) == results[0][0]
    ev, _ = _torch_value_and_grads(name, args, "sum", {}, (0,))
    np.testing.assert_allclose(float(results[0][0]), ev, rtol=2e-6)


@pytest.mark.parametrize("name", ["contrastive", "triplet_margin", "cosine_embedding",
                                  "margin_ranking"])
def test_memory_gradient_only_and_nothing_with_out(name):
    """tracemalloc (NumPy and numba's allocations both report to it): a call allocates its
    gradient(s) and, with out=, nothing of their size; the slack (per-block scratch, the
    call's own objects) is benchmarks/catalog.py's, max(1% of the gradient, 64 KiB). No
    float64 copy of the rows' values for mean/sum: at (16384, 64) that alone would be
    128 KiB, at (2048, 1024) of scores 16 MiB."""
    import tracemalloc

    from losskit.kernels import clear_gradient_cache

    loss = getattr(lk, name)
    rng = np.random.default_rng(22)
    shape = (16384, 64) if name != "margin_ranking" else (2048, 1024)
    args = make(name, shape, np.float32, rng)
    args = tuple(np.ascontiguousarray(a, dtype=np.float32) for a in args)
    grad_bytes = args[0].nbytes
    slack = max(0.01 * grad_bytes, 64 * 1024)
    out = np.empty_like(args[0])
    fast(loss, *args, out=out)  # compiled, warm
    k = len(loss.differentiable)
    for kw, limit in (({"out": out}, slack),
                      ({}, grad_bytes + slack),
                      ({"wrt": "all"}, k * grad_bytes + slack)):
        clear_gradient_cache()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            result = fast(loss, *args, **kw)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        assert peak <= limit, (sorted(kw), peak, limit)
        del result
    clear_gradient_cache()


@pytest.mark.parametrize("dtype", DTYPES)
def test_margin_ranking_elementwise_by_hand(dtype):
    """max(0, m - y (x1 - x2)) and -+y where active, across block boundaries (a block is
    numba_kernels.BLOCK elements), with NaN: by hand."""
    rng = np.random.default_rng(23)
    nb = pairs._nb()
    n = 2 * nb.BLOCK + 17
    x1 = rng.normal(size=n).astype(dtype)
    x2 = rng.normal(size=n).astype(dtype)
    y = np.where(rng.random(n) > 0.5, 1.0, -1.0).astype(dtype)
    x1[nb.BLOCK + 3] = np.nan
    m = dtype(0.25)
    s = m - y * (x1 - x2)
    with np.errstate(invalid="ignore"):
        active = (s > 0) | np.isnan(s)
        v = np.where(active, s, 0).astype(dtype)
        g1 = np.where(active, -y, 0).astype(dtype)
    g1[np.isnan(v)] = np.nan
    for reduction, scale in (("none", 1.0), ("sum", 1.0), ("mean", 1.0 / n)):
        value, (d1, d2) = fast(lk.margin_ranking, x1, x2, y, margin=0.25, wrt="all",
                               reduction=reduction)
        exp = v if reduction == "none" else np.float64(np.nansum(v, dtype=np.float64)) * (
            np.nan if np.isnan(v).any() else 1.0) * scale
        np.testing.assert_array_equal(np.isnan(value), np.isnan(exp))
        np.testing.assert_array_equal(d1, g1 * dtype(scale))
        np.testing.assert_array_equal(d2, dtype(0) - g1 * dtype(scale))
        if reduction == "none":
            np.testing.assert_array_equal(value, v)
    # a label other than +-1 in a later block: the generic path raises
    bad = y.copy()
    bad[nb.BLOCK + 9] = 0
    out = np.empty_like(x1)
    with pytest.raises(ValueError, match="-1"):
        lk.margin_ranking.value_and_grad(x1, x2, bad, out=out)


def test_float64_tiny_and_huge_distances_take_the_exact_branch():
    """Squared distances below 2^-960 (underflow) or beyond the float64 range go to the
    exact (scaled) norm: the results are the mathematics' at any scale."""
    rng = np.random.default_rng(24)
    u, v = rng.normal(size=(2, 6, 5))
    w = u - v
    unit = w / np.linalg.norm(w, axis=1, keepdims=True)
    for s in (1e-160, 1e-170, 1.0):  # dissimilar pairs, margin 1: scale invariant grads
        d = s * np.linalg.norm(w, axis=1)
        h = np.maximum(1.0 - d, 0.0)
        value, g = fast(lk.contrastive, u * s, v * s, np.zeros(6), margin=1.0,
                        reduction="none")
        np.testing.assert_allclose(value, 0.5 * h ** 2, rtol=1e-13)
        np.testing.assert_allclose(g, -h[:, None] * unit, rtol=1e-12, atol=1e-300)
        _, ga = fast(lk.triplet_margin, u * s, u * s, v * s, eps=0.0, margin=1.0,
                     reduction="sum")
        # d(a, p) = 0 (subgradient 0); active where 1 - d(a, n) > 0: -(a - n)/d(a, n)
        np.testing.assert_allclose(ga, -unit * (d < 1.0)[:, None], rtol=1e-12, atol=1e-300)
    big = 1e160  # squared distances overflow: similar pairs, d^2 / 2 = inf, grad x1 - x2
    with np.errstate(over="ignore"):
        value, g = fast(lk.contrastive, u * big, v * big, np.ones(6), reduction="sum")
    assert value == np.inf
    np.testing.assert_allclose(g, w * big, rtol=1e-13)


def test_a_configured_copy_and_explicit_options_are_parsed_not_cached():
    """The parsed options of a loss's defaults are kept; a copy with other defaults, and
    options given per call, are read on every call (by hand: margin ranking, d = 0)."""
    x = np.zeros((3, 4))
    y = np.ones((3, 4))
    for margin in (0.5, 2.0, 0.5):
        copy = type(lk.margin_ranking)(margin=margin, reduction="sum")
        np.testing.assert_array_equal(fast(copy, x, x, y, want="value"), 12 * margin)
        np.testing.assert_array_equal(
            fast(lk.margin_ranking, x, x, y, margin=margin, reduction="sum", want="value"),
            12 * margin)
        np.testing.assert_array_equal(
            fast(lk.margin_ranking, x, x, y, reduction="sum", want="value"), 0.0)
