"""linear_cross_entropy: softmax cross-entropy of a linear layer, chunked over rows.

References, never losskit's own output for this loss:

* ``softmax_cross_entropy`` of the explicit logits ``h @ W.T + b`` (tested on its own
  against PyTorch) with its logit gradient ``G`` chained by hand: ``G @ W``, ``G.T @ h``,
  ``G.sum(0)``;
* PyTorch autograd through ``F.cross_entropy(F.linear(h, W, b), y, ...)``, and through
  PyTorch 2.13's own chunked ``F.linear_cross_entropy``;
* central finite differences (``lk.gradcheck``) for all three differentiable inputs;
* the documented semantics written out independently (weighted means, repeats).

Sizes are small (N = 64, d = 32, V = 300) with chunk sizes and weight-gradient pieces
that divide neither N nor V, so every block boundary is crossed.
"""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import losskit as lk
from losskit.losses import linear_cross_entropy as _linear_ce
from losskit.losses.linear_cross_entropy import linear_cross_entropy as lce

torch = pytest.importorskip("torch")
F = torch.nn.functional

N, D, V = 64, 32, 300
REDUCTIONS = ("none", "sum", "mean", "batchmean")
OPTIONS = {
    "plain": {},
    "ignore": {"ignore_index": -100},
    "smooth": {"label_smoothing": 0.2},
    "weight": {"class_weight": "cw"},
    "all": {"class_weight": "cw", "ignore_index": -100, "label_smoothing": 0.15},
}


# every RuntimeWarning (NumPy's overflow, invalid value, ...) fails the test
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@pytest.fixture(autouse=True)
def _small_pieces(monkeypatch):
    """Weight-gradient pieces of 37 rows: 300 = 8 * 37 + 4, a ragged last piece."""
    monkeypatch.setattr(_linear_ce, "_WEIGHT_GRAD_ROWS", 37)


def make(seed=0, n=N, d=D, v=V, ignore=False, scale=0.4):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(n, d))
    W = rng.normal(size=(v, d)) * scale
    b = rng.normal(size=v)
    y = rng.integers(0, v, size=n)
    if ignore:
        y[::5] = -100
    cw = rng.uniform(0.2, 2.0, size=v)
    return h, W, y, b, cw


def resolve(opts, cw):
    return {k: (cw if val == "cw" else val) for k, val in opts.items()}


def chained(h, W, y, b, *, reduction="mean", sample_weight=None, **opts):
    """softmax_cross_entropy of the explicit logits, its gradient chained by hand."""
    d = W.shape[1]
    z = h @ W.T + (0.0 if b is None else b)
    v, g = lk.softmax_cross_entropy.value_and_grad(z, y, reduction=reduction,
                                                   sample_weight=sample_weight, **opts)
    g2 = g.reshape(-1, W.shape[0])
    return v, (g2 @ W).reshape(h.shape), g2.T @ h.reshape(-1, d), g2.sum(axis=0)


def torch_ref(h, W, y, b, *, reduction="mean", sample_weight=None, class_weight=None,
              ignore_index=None, label_smoothing=0.0, dtype=torch.float64):
    """Value and autograd gradients of F.cross_entropy(F.linear(h, W, b), y).

    With sample weights the documented semantics are written out: per-example losses
    times s_n, and the mean divides by sum_n s_n w_{y_n} over labels not ignored.
    """
    th = torch.tensor(h, dtype=dtype, requires_grad=True)
    tW = torch.tensor(W, dtype=dtype, requires_grad=True)
    tb = None if b is None else torch.tensor(b, dtype=dtype, requires_grad=True)
    ty = torch.as_tensor(y)
    kw = {"label_smoothing": label_smoothing,
          "ignore_index": -100 if ignore_index is None else ignore_index}
    cw = None if class_weight is None else torch.tensor(class_weight, dtype=dtype)
    z = F.linear(th, tW, tb)
    n = h.shape[0]
    if sample_weight is None:
        if reduction == "batchmean":
            v = F.cross_entropy(z, ty, weight=cw, reduction="sum", **kw) / n
        else:
            v = F.cross_entropy(z, ty, weight=cw, reduction=reduction, **kw)
    else:
        s = torch.tensor(sample_weight, dtype=dtype)
        per = F.cross_entropy(z, ty, weight=cw, reduction="none", **kw) * s
        keep = (ty != kw["ignore_index"]).to(dtype)
        wy = keep if cw is None else keep * cw[torch.where(keep > 0, ty, 0)]
        v = {"none": per, "sum": per.sum(), "batchmean": per.sum() / n,
             "mean": per.sum() / (s * wy).sum()}[reduction]
    (v.sum() if reduction == "none" else v).backward()
    grads = [th.grad.numpy(), tW.grad.numpy(), None if tb is None else tb.grad.numpy()]
    return v.detach().numpy(), grads


def assert_all_close(got, ref, rtol, atol=0.0):
    for i, (a, r) in enumerate(zip(got, ref)):
        if r is None:
            assert a is None, i
            continue
        a = np.asarray(a)
        assert a.shape == np.shape(r), (i, a.shape, np.shape(r))
        np.testing.assert_allclose(a, r, rtol=rtol, atol=atol, err_msg=f"output {i}")


# ------------------------------------------------------------------ against the explicit logits
@pytest.mark.parametrize("chunk_size", [None, 7, 64, 1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opt", list(OPTIONS))
def test_equals_softmax_cross_entropy_of_the_logits_chained_by_hand(opt, reduction,
                                                                   chunk_size):
    h, W, y, b, cw = make(ignore="ignore_index" in OPTIONS[opt])
    opts = resolve(OPTIONS[opt], cw)
    v, grads = lce.value_and_grad(h, W, y, b, wrt="all", reduction=reduction,
                                  chunk_size=chunk_size, **opts)
    ref = chained(h, W, y, b, reduction=reduction, **opts)
    assert v.dtype == np.float64 and v.shape == ref[0].shape
    assert_all_close((v, *grads), ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("chunk_size", [None, 9])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opt", ["plain", "all"])
def test_sample_weights_equal_the_chained_reference(opt, reduction, chunk_size):
    h, W, y, b, cw = make(seed=1, ignore=opt == "all")
    opts = resolve(OPTIONS[opt], cw)
    sw = np.random.default_rng(5).uniform(0.0, 2.0, size=N)
    sw[[3, 10]] = 0.0
    v, grads = lce.value_and_grad(h, W, y, b, wrt="all", reduction=reduction,
                                  sample_weight=sw, chunk_size=chunk_size, **opts)
    ref = chained(h, W, y, b, reduction=reduction, sample_weight=sw, **opts)
    assert_all_close((v, *grads), ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opt", list(OPTIONS))
def test_value_and_grads_match_torch_autograd(opt, reduction):
    h, W, y, b, cw = make(seed=2, ignore="ignore_index" in OPTIONS[opt])
    opts = resolve(OPTIONS[opt], cw)
    v, grads = lce.value_and_grad(h, W, y, b, wrt="all", reduction=reduction, chunk_size=11,
                                  **opts)
    ref_v, ref_g = torch_ref(h, W, y, b, reduction=reduction, **opts)
    assert_all_close((v, *grads), (ref_v, *ref_g), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("reduction", ["sum", "mean", "batchmean"])
def test_sample_weights_match_the_written_out_torch_semantics(reduction):
    h, W, y, b, cw = make(seed=3, ignore=True)
    sw = np.random.default_rng(6).uniform(0.0, 3.0, size=N)
    opts = {"class_weight": cw, "ignore_index": -100, "label_smoothing": 0.1}
    v, grads = lce.value_and_grad(h, W, y, b, wrt="all", reduction=reduction, sample_weight=sw,
                                  chunk_size=13, **opts)
    ref_v, ref_g = torch_ref(h, W, y, b, reduction=reduction, sample_weight=sw, **opts)
    assert_all_close((v, *grads), (ref_v, *ref_g), rtol=1e-9, atol=1e-13)


def test_without_bias_matches_torch():
    h, W, y, _, _ = make(seed=4)
    v, (gh, gw, gb) = lce.value_and_grad(h, W, y, wrt="all", chunk_size=10)
    ref_v, ref_g = torch_ref(h, W, y, None)
    assert gb is None
    assert_all_close((v, gh, gw), (ref_v, *ref_g[:2]), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_torch_own_chunked_linear_cross_entropy(reduction, weighted):
    """PyTorch 2.13's F.linear_cross_entropy with its chunked path (7 rows per chunk)."""
    if not hasattr(F, "linear_cross_entropy"):
        pytest.skip("torch.nn.functional.linear_cross_entropy needs PyTorch >= 2.13")
    from torch.nn import LinearCrossEntropyOptions

    h, W, y, b, cw = make(seed=5, ignore=True)
    th, tW, tb = (torch.tensor(a, requires_grad=True) for a in (h, W, b))
    options = LinearCrossEntropyOptions(batch_chunk_size=7, chunking_method=None)
    weight = torch.tensor(cw) if weighted else None
    ref = F.linear_cross_entropy(th, tW, torch.as_tensor(y), linear_bias=tb, weight=weight,
                                 reduction=reduction, ignore_index=-100, options=options)
    (ref.sum() if reduction == "none" else ref).backward()
    v, grads = lce.value_and_grad(h, W, y, b, wrt="all", reduction=reduction, chunk_size=9,
                                  ignore_index=-100, class_weight=cw if weighted else None)
    assert_all_close((v, *grads), (ref.detach().numpy(), th.grad.numpy(), tW.grad.numpy(),
                                   tb.grad.numpy()), rtol=1e-9, atol=1e-13)


# ------------------------------------------------------------------ finite differences
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("opt", ["plain", "all"])
def test_gradients_match_finite_differences(opt, reduction):
    h, W, y, b, cw = make(seed=6, n=5, d=3, v=7, ignore=opt == "all", scale=1.0)
    opts = resolve(OPTIONS[opt], cw)
    if opt == "all":
        y[0] = 2  # y[::5] = -100 ignored the first row: keep one ignored row, row 0 active
        y[3] = -100
    for k, name in ((0, "hidden"), (1, "weight"), (3, "bias")):
        res = lk.gradcheck(lce, h, W, y, b, wrt=k, reduction=reduction, chunk_size=2, **opts)
        assert res.ok, f"{name}: {res}"
        assert res.kinks == 0, name


def test_finite_differences_with_sample_weights_and_no_bias():
    h, W, y, _, cw = make(seed=7, n=6, d=4, v=5, scale=1.0)
    sw = np.array([0.5, 0.0, 2.0, 1.0, 1.5, 0.25])
    for k in (0, 1):
        res = lk.gradcheck(lce, h, W, y, wrt=k, sample_weight=sw, class_weight=cw,
                           label_smoothing=0.3, chunk_size=4)
        assert res.ok, res


# ------------------------------------------------------------------ identities and properties
def test_reduction_identities():
    h, W, y, b, _ = make(seed=8)
    none_v, none_g = lce.value_and_grad(h, W, y, b, wrt="all", reduction="none", chunk_size=5)
    sum_v, sum_g = lce.value_and_grad(h, W, y, b, wrt="all", reduction="sum", chunk_size=5)
    mean_v, mean_g = lce.value_and_grad(h, W, y, b, wrt="all", chunk_size=5)
    np.testing.assert_allclose(sum_v, none_v.sum(), rtol=1e-12)
    np.testing.assert_allclose(mean_v, sum_v / N, rtol=1e-12)
    for gn, gs, gm in zip(none_g, sum_g, mean_g):
        np.testing.assert_array_equal(gn, gs)  # "none" differentiates the sum
        np.testing.assert_allclose(gm, gs / N, rtol=1e-12, atol=1e-16)
    # the entry points agree with the fused one
    np.testing.assert_array_equal(lce(h, W, y, b, chunk_size=5), mean_v)
    np.testing.assert_array_equal(lce.grad(h, W, y, b, chunk_size=5), mean_g[0])
    np.testing.assert_array_equal(lce.grad(h, W, y, b, wrt="weight", chunk_size=5), mean_g[1])
    gw, gb = lce.grad(h, W, y, b, wrt=("weight", "bias"), chunk_size=5)
    np.testing.assert_array_equal(gw, mean_g[1])
    np.testing.assert_array_equal(gb, mean_g[2])


def test_integer_sample_weights_equal_repeated_examples():
    h, W, y, b, cw = make(seed=9, ignore=True)
    reps = np.arange(N) % 3
    opts = {"class_weight": cw, "ignore_index": -100, "label_smoothing": 0.1}
    for red in ("sum", "mean"):
        v, g = lce.value_and_grad(h, W, y, b, wrt="all", reduction=red, sample_weight=reps,
                                  chunk_size=8, **opts)
        rv, rg = lce.value_and_grad(np.repeat(h, reps, axis=0), W, np.repeat(y, reps), b,
                                    wrt="all", reduction=red, chunk_size=8, **opts)
        np.testing.assert_allclose(v, rv, rtol=1e-10)
        np.testing.assert_allclose(g[1], rg[1], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(g[2], rg[2], rtol=1e-10, atol=1e-14)
        summed = np.zeros_like(h)
        np.add.at(summed, np.repeat(np.arange(N), reps), rg[0])
        np.testing.assert_allclose(g[0], summed, rtol=1e-10, atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), d=st.integers(0, 5), v=st.integers(1, 23),
       chunk=st.integers(1, 13), pieces=st.integers(1, 9), seed=st.integers(0, 2**16),
       smoothing=st.sampled_from([0.0, 0.3]))
def test_blocks_and_pieces_do_not_change_the_result(n, d, v, chunk, pieces, seed, smoothing):
    """Any chunk size and weight-gradient piece size gives the one-block result."""
    rng = np.random.default_rng(seed)
    h, W, b = rng.normal(size=(n, d)), rng.normal(size=(v, d)), rng.normal(size=v)
    y = rng.integers(0, v, size=n)
    one = lce.value_and_grad(h, W, y, b, wrt="all", chunk_size=n, label_smoothing=smoothing)
    old = _linear_ce._WEIGHT_GRAD_ROWS
    try:
        _linear_ce._WEIGHT_GRAD_ROWS = pieces
        for xp_h, xp_W, xp_y, xp_b, back in _numpy_and_strict(h, W, y, b):
            got = lce.value_and_grad(xp_h, xp_W, xp_y, xp_b, wrt="all", chunk_size=chunk,
                                     label_smoothing=smoothing)
            assert_all_close([back(got[0])] + [back(g) for g in got[1]],
                             (one[0], *one[1]), rtol=1e-11, atol=1e-13)
    finally:
        _linear_ce._WEIGHT_GRAD_ROWS = old


def _numpy_and_strict(h, W, y, b):
    out = [(h, W, y, b, np.asarray)]
    try:
        import array_api_strict as xps
    except ImportError:  # pragma: no cover
        return out
    out.append((xps.asarray(h), xps.asarray(W), xps.asarray(y), xps.asarray(b), np.asarray))
    return out


def test_logit_gradient_rows_sum_to_zero_so_bias_gradient_sums_to_zero():
    # sum_c G_nc = A_n - A_n = 0 for every row: the bias gradient sums to 0
    h, W, y, b, cw = make(seed=10)
    gb = lce.grad(h, W, y, b, wrt="bias", class_weight=cw, label_smoothing=0.2, chunk_size=6)
    assert abs(gb.sum()) < 1e-14


def test_shift_invariance_of_the_bias():
    # softmax is invariant to adding a constant to every logit: the value does not change
    h, W, y, b, _ = make(seed=11)
    np.testing.assert_allclose(lce(h, W, y, b + 123.0, chunk_size=7), lce(h, W, y, b),
                               rtol=1e-12)


# ------------------------------------------------------------------ edge cases
def test_hand_computed_example():
    # identity layer: logits [ln 3, 0], softmax [3/4, 1/4]; label 0 costs ln(4/3)
    h = np.array([[math.log(3.0), 0.0]])
    v, (gh, gw, gb) = lce.value_and_grad(h, np.eye(2), np.array([0]), np.zeros(2), wrt="all")
    assert float(v) == pytest.approx(math.log(4.0 / 3.0), rel=1e-15)
    np.testing.assert_allclose(gh, [[-0.25, 0.25]], rtol=1e-15)
    np.testing.assert_allclose(gw, [[-0.25 * math.log(3.0), 0.0], [0.25 * math.log(3.0), 0.0]],
                               rtol=1e-15)
    np.testing.assert_allclose(gb, [-0.25, 0.25], rtol=1e-15)


def test_mean_over_nothing_is_zero_with_zero_gradients():
    h, W, y, b, _ = make(seed=12)
    y_all = np.full(N, -100)
    v, (gh, gw, gb) = lce.value_and_grad(h, W, y_all, b, wrt="all", ignore_index=-100)
    assert float(v) == 0.0
    assert not gh.any() and not gw.any() and not gb.any()
    v, (gh, gw, gb) = lce.value_and_grad(h, W, y, b, wrt="all", sample_weight=np.zeros(N))
    assert float(v) == 0.0 and not gh.any() and not gw.any() and not gb.any()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_batch(reduction):
    h, W, _, b, _ = make(seed=13)
    v, (gh, gw, gb) = lce.value_and_grad(h[:0], W, np.zeros(0, dtype=int), b, wrt="all",
                                         reduction=reduction)
    assert v.shape == ((0,) if reduction == "none" else ())
    assert gh.shape == (0, D) and gw.shape == (V, D) and gb.shape == (V,)
    assert not gw.any() and not gb.any()
    if reduction != "none":
        assert float(v) == 0.0


# ------------------------------------------------------------------ backends and dtypes
def _backends():
    out = [("torch", torch.as_tensor, lambda a: a.detach().cpu().numpy())]
    if torch.cuda.is_available():  # pragma: no cover - on a GPU machine
        out.append(("torch-cuda", lambda a: torch.as_tensor(a, device="cuda"),
                    lambda a: a.detach().cpu().numpy()))
    try:
        import jax.numpy as jnp

        out.append(("jax", jnp.asarray, np.asarray))
    except ImportError:  # pragma: no cover
        pass
    try:
        import array_api_strict as xps

        out.append(("array_api_strict", xps.asarray, np.asarray))
    except ImportError:  # pragma: no cover
        pass
    try:
        import dask.array as da

        out.append(("dask", lambda a: da.from_array(a, chunks=16),
                    lambda a: np.asarray(a.compute())))
    except ImportError:  # pragma: no cover
        pass
    return out


BACKENDS = _backends()
# NumPy and the libraries with eager arrays on this machine's CPU
CONVERTERS = [("numpy", np.asarray, np.asarray)] + [
    b for b in BACKENDS if b[0] in ("torch", "array_api_strict", "jax")]


@pytest.mark.parametrize("name,to,back", CONVERTERS, ids=[c[0] for c in CONVERTERS])
@pytest.mark.parametrize("how", ["ignored", "zero weight"])
def test_removed_examples_contribute_exactly_zero_even_if_nan(how, name, to, back):
    h, W, y, b, _ = make(seed=14)
    h[4] = np.nan
    h[7, 0] = np.inf
    kw = {}
    if how == "ignored":
        y[[4, 7]] = -100
        kw["ignore_index"] = -100
    else:
        sw = np.ones(N)
        sw[[4, 7]] = 0.0
        kw["sample_weight"] = to(sw)
    v, grads = lce.value_and_grad(to(h), to(W), to(y), to(b), wrt="all", reduction="sum",
                                  chunk_size=5, label_smoothing=0.1, **kw)
    v, (gh, gw, gb) = back(v), [back(g) for g in grads]
    keep = np.setdiff1d(np.arange(N), [4, 7])
    rv, (rgh, rgw, rgb) = lce.value_and_grad(h[keep], W, y[keep], b, wrt="all",
                                             reduction="sum", label_smoothing=0.1)
    assert gb.shape == rgb.shape == (V,)
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    np.testing.assert_allclose(gw, rgw, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb, rgb, rtol=1e-12, atol=1e-15)
    assert not gh[[4, 7]].any()
    np.testing.assert_allclose(gh[keep], rgh, rtol=1e-12, atol=1e-15)


def test_nan_in_a_kept_example_propagates():
    h, W, y, b, _ = make(seed=15)
    h[3, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        v, gw = lce.value_and_grad(h, W, y, b, wrt="weight", chunk_size=8)
    assert np.isnan(v) and np.isnan(gw).any()


def test_minus_inf_bias_masks_a_class():
    # a class with bias -inf has probability 0: the loss is that of the other classes
    h, W, y, b, _ = make(seed=16)
    y = np.where(y == 5, 6, y)
    b_masked = b.copy()
    b_masked[5] = -np.inf
    v, (gh, gw, gb) = lce.value_and_grad(h, W, y, b_masked, wrt="all", chunk_size=7)
    keep = np.setdiff1d(np.arange(V), [5])
    y_small = np.searchsorted(keep, y)
    rv, (rgh, rgw, rgb) = lce.value_and_grad(h, W[keep], y_small, b[keep], wrt="all")
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    np.testing.assert_allclose(gh, rgh, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(gw[keep], rgw, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(gb[keep], rgb, rtol=1e-11, atol=1e-15)
    assert not gw[5].any() and gb[5] == 0.0


def test_large_logits_are_exact():
    # logits of order 1e4: softmax_cross_entropy of the explicit logits is stable; so is this
    h, W, y, b, _ = make(seed=17)
    h = h * 3000.0
    v, grads = lce.value_and_grad(h, W, y, b, wrt="all", chunk_size=9, label_smoothing=0.1)
    ref = chained(h, W, y, b, label_smoothing=0.1)
    assert np.isfinite(v) and all(np.isfinite(g).all() for g in grads)
    assert_all_close((v, *grads), ref, rtol=1e-9, atol=1e-10)


def test_leading_axes_are_batch_axes():
    h, W, y, b, _ = make(seed=18)
    h3, y3 = h.reshape(4, 16, D), y.reshape(4, 16)
    v, (gh, gw, gb) = lce.value_and_grad(h3, W, y3, b, wrt="all", reduction="none",
                                         chunk_size=6)
    rv, (rgh, rgw, rgb) = lce.value_and_grad(h, W, y, b, wrt="all", reduction="none")
    assert v.shape == (4, 16) and gh.shape == (4, 16, D)
    np.testing.assert_allclose(v.reshape(-1), rv, rtol=1e-12)
    np.testing.assert_allclose(gh.reshape(N, D), rgh, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gw, rgw, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb, rgb, rtol=1e-12, atol=1e-15)
    # batchmean divides by the first axis (4 sequences), mean by the 64 tokens
    s = lce(h, W, y, b, reduction="sum")
    np.testing.assert_allclose(lce(h3, W, y3, b, reduction="batchmean"), s / 4, rtol=1e-12)
    np.testing.assert_allclose(lce(h3, W, y3, b), s / N, rtol=1e-12)
    sw = np.arange(4.0)  # one weight per sequence
    np.testing.assert_allclose(lce(h3, W, y3, b, reduction="sum", sample_weight=sw),
                               (lce(h3, W, y3, b, reduction="none") * sw[:, None]).sum(),
                               rtol=1e-12)


def test_a_single_example():
    h, W, y, b, _ = make(seed=19)
    v = lce(h[0], W, y[0], b)
    assert v.shape == ()
    np.testing.assert_allclose(v, lce(h[:1], W, y[:1], b), rtol=1e-14)
    with pytest.raises(ValueError, match="batchmean.*single example"):
        lce(h[0], W, y[0], b, reduction="batchmean")


def test_no_features():
    # d = 0: the logits are the bias alone
    _, _, y, b, _ = make(seed=20)
    v, (gh, gw, gb) = lce.value_and_grad(np.zeros((N, 0)), np.zeros((V, 0)), y, b, wrt="all")
    rv, g = lk.softmax_cross_entropy.value_and_grad(np.tile(b, (N, 1)), y)
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    np.testing.assert_allclose(gb, g.sum(axis=0), rtol=1e-12, atol=1e-15)
    assert gh.shape == (N, 0) and gw.shape == (V, 0)


def test_bias_positional_or_keyword_and_defaults_copy():
    h, W, y, b, _ = make(seed=21)
    np.testing.assert_array_equal(lce(h, W, y, b), lce(h, W, y, bias=b))
    smoothed = type(lce)(label_smoothing=0.2, reduction="sum", chunk_size=5)
    np.testing.assert_allclose(smoothed(h, W, y, b),
                               lce(h, W, y, b, label_smoothing=0.2, reduction="sum"),
                               rtol=1e-12)


def test_out_receives_the_gradient():
    h, W, y, b, _ = make(seed=22)
    ref_h, ref_w = lce.grad(h, W, y, b, wrt=("hidden", "weight"))
    out_h, out_w = np.empty_like(h), np.full_like(W, np.nan)
    assert lce.grad(h, W, y, b, out=out_h, chunk_size=7) is out_h
    _, g = lce.value_and_grad(h, W, y, b, wrt="weight", out=out_w, chunk_size=7)
    assert g is out_w
    np.testing.assert_allclose(out_h, ref_h, rtol=1e-12)
    np.testing.assert_allclose(out_w, ref_w, rtol=1e-12)
    tout = torch.empty(N, D, dtype=torch.float64)
    assert lce.grad(torch.as_tensor(h), torch.as_tensor(W), torch.as_tensor(y),
                    torch.as_tensor(b), out=tout) is tout
    np.testing.assert_allclose(tout.numpy(), ref_h, rtol=1e-12, atol=1e-16)
    # a non-contiguous out (a transposed view) and a (..., d) hidden are filled by copying
    out_t = np.empty((D, N)).T
    lce.grad(h, W, y, b, out=out_t, chunk_size=7)
    np.testing.assert_allclose(out_t, ref_h, rtol=1e-12)
    out3 = np.empty((4, 16, D))
    lce.grad(h.reshape(4, 16, D), W, y.reshape(4, 16), b, out=out3)
    np.testing.assert_allclose(out3.reshape(N, D), ref_h, rtol=1e-12)
    # out may be an input: it is overwritten only once every read of it is done
    h2, W2 = h.copy(), W.copy()
    assert lce.grad(h2, W, y, b, out=h2, chunk_size=7) is h2
    np.testing.assert_allclose(h2, ref_h, rtol=1e-12)
    lce.grad(h, W2, y, b, wrt="weight", out=W2, chunk_size=7, label_smoothing=0.0)
    np.testing.assert_allclose(W2, ref_w, rtol=1e-12)
    tW2 = torch.tensor(W)
    lce.grad(torch.as_tensor(h), tW2, torch.as_tensor(y), torch.as_tensor(b), wrt="weight",
             out=tW2, chunk_size=7)
    np.testing.assert_allclose(tW2.numpy(), ref_w, rtol=1e-12, atol=1e-16)
    with pytest.raises(TypeError, match="`out` takes one gradient"):
        lce.grad(h, W, y, b, wrt="all", out=out_h)
    with pytest.raises(ValueError, match=r"`out` must have the gradient's shape \(300, 32\)"):
        lce.grad(h, W, y, b, wrt="weight", out=out_h)


def test_inputs_are_not_written():
    h, W, y, b, cw = make(seed=23)
    arrays = [a.copy() for a in (h, W, y, b)]
    for a in arrays:
        a.setflags(write=False)
    lce.value_and_grad(*arrays, wrt="all", chunk_size=7, label_smoothing=0.1, class_weight=cw)
    for a, ref in zip(arrays, (h, W, y, b)):
        np.testing.assert_array_equal(a, ref)


# ------------------------------------------------------------------ memory: no (N, V) array
def _traced_peak(fn):
    """tracemalloc's peak over one call of ``fn``, after an untraced call: the first call
    may compile a numba kernel, whose Python objects tracemalloc would count."""
    fn()
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_logits_never_exist_at_once(monkeypatch, smoothing):
    """N=512, V=8192, d=64 float64: the logits would be 32 MiB; blocks of 16 rows are 1 MiB."""
    monkeypatch.setattr(_linear_ce, "_WEIGHT_GRAD_ROWS", 1024)
    n, d, v = 512, 64, 8192
    rng = np.random.default_rng(24)
    h, W = rng.normal(size=(n, d)), rng.normal(size=(v, d)) * 0.1
    b, y = rng.normal(size=v), rng.integers(0, v, size=n)
    logits = n * v * 8
    peak, (val, grads) = _traced_peak(lambda: lce.value_and_grad(
        h, W, y, b, wrt="all", chunk_size=16, label_smoothing=smoothing))
    grad_bytes = sum(g.nbytes for g in grads)
    # the gradients, one 16-row block (1 MiB), the 1024-row piece buffer (0.5 MiB), vectors
    assert peak - grad_bytes < 2.5 * 2**20, (peak - grad_bytes) / 2**20
    assert peak < logits / 4
    # the default block size follows _BLOCK_BYTES
    monkeypatch.setattr(_linear_ce, "_BLOCK_BYTES", 2**20)
    peak, (val2, _) = _traced_peak(lambda: lce.value_and_grad(
        h, W, y, b, wrt="all", label_smoothing=smoothing))
    assert peak - grad_bytes < 2.5 * 2**20, (peak - grad_bytes) / 2**20
    np.testing.assert_allclose(val2, val, rtol=1e-12)
    # the value alone needs no gradient buffers at all
    peak, _ = _traced_peak(lambda: lce(h, W, y, b, label_smoothing=smoothing))
    assert peak < 1.5 * 2**20


def test_the_functional_path_holds_blocks_not_logits(monkeypatch):
    xps = pytest.importorskip("array_api_strict")
    monkeypatch.setattr(_linear_ce, "_WEIGHT_GRAD_ROWS", 1024)
    n, d, v = 512, 64, 8192
    rng = np.random.default_rng(25)
    arrays = (rng.normal(size=(n, d)), rng.normal(size=(v, d)) * 0.1, rng.integers(0, v, n),
              rng.normal(size=v))
    conv = [xps.asarray(a) for a in arrays]
    peak, (val, grads) = _traced_peak(lambda: lce.value_and_grad(*conv, wrt="all",
                                                                 chunk_size=16))
    grad_bytes = sum(math.prod(g.shape) * 8 for g in grads)
    # blocks of 1 MiB (a few temporaries), and while the pieces are joined a second copy
    # of the 4 MiB weight gradient
    assert peak - grad_bytes < 4 * 2**20 + 8 * 2**20, (peak - grad_bytes) / 2**20
    assert peak < n * v * 8 / 2
    np.testing.assert_allclose(np.asarray(val), lce(*arrays), rtol=1e-12)


@pytest.mark.parametrize("name,to,back", BACKENDS, ids=[b[0] for b in BACKENDS])
def test_every_backend_gives_the_numpy_result_in_its_own_arrays(name, to, back):
    h, W, y, b, cw = make(seed=26, ignore=True)
    sw = np.random.default_rng(7).uniform(0.0, 2.0, size=N)
    opts = {"ignore_index": -100, "label_smoothing": 0.1}
    ref_v, ref_g = lce.value_and_grad(h, W, y, b, wrt="all", sample_weight=sw,
                                      class_weight=cw, chunk_size=25, **opts)
    v, g = lce.value_and_grad(to(h), to(W), to(y), to(b), wrt="all", sample_weight=to(sw),
                              class_weight=to(cw), chunk_size=25, **opts)
    kind = type(to(h))
    assert isinstance(v, kind) and all(isinstance(gi, kind) for gi in g)
    assert all(str(x.dtype).endswith("float64") for x in (v, *g))
    assert_all_close([back(v)] + [back(gi) for gi in g], (ref_v, *ref_g), rtol=1e-12,
                     atol=1e-15)
    if name.startswith("torch"):
        assert v.device == g[0].device == to(h).device


@pytest.mark.parametrize("name,to,back", CONVERTERS, ids=[c[0] for c in CONVERTERS])
def test_partial_requests_empty_batches_and_no_bias_on_every_path(name, to, back):
    h, W, y, b, cw = make(seed=34)
    opts = {"class_weight": to(cw), "label_smoothing": 0.1, "chunk_size": 25}
    ref_v, ref_g = lce.value_and_grad(h, W, y, b, wrt="all", class_weight=cw,
                                      label_smoothing=0.1)
    np.testing.assert_allclose(back(lce(to(h), to(W), to(y), to(b), **opts)), ref_v,
                               rtol=1e-12)
    gw, gb = lce.grad(to(h), to(W), to(y), to(b), wrt=("weight", "bias"), **opts)
    np.testing.assert_allclose(back(gw), ref_g[1], rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(back(gb), ref_g[2], rtol=1e-11, atol=1e-15)
    _, (gh, gw, gb) = lce.value_and_grad(to(h), to(W), to(y), wrt="all", **opts)
    _, (rgh, rgw, _) = lce.value_and_grad(h, W, y, wrt="all", class_weight=cw,
                                          label_smoothing=0.1)
    assert gb is None
    np.testing.assert_allclose(back(gh), rgh, rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(back(gw), rgw, rtol=1e-11, atol=1e-15)
    v, (gh, gw, gb) = lce.value_and_grad(to(h[:0]), to(W), to(y[:0]), to(b), wrt="all",
                                         **opts)
    assert float(back(v)) == 0.0 and tuple(gh.shape) == (0, D)
    assert not back(gw).any() and not back(gb).any()


def test_jax_compiles_to_a_loop_that_holds_blocks_not_logits(monkeypatch):
    """XLA's own memory plan for the jitted call: a few blocks, never the (N, V) logits."""
    jax = pytest.importorskip("jax")
    monkeypatch.setattr(_linear_ce, "_WEIGHT_GRAD_ROWS", 2048)
    import jax.numpy as jnp

    n, d, v = 512, 64, 8192
    args = (jnp.zeros((n, d), jnp.float32), jnp.zeros((v, d), jnp.float32),
            jnp.zeros(n, jnp.int32), jnp.zeros(v, jnp.float32))
    compiled = jax.jit(lambda *a: lce.value_and_grad(*a, wrt="all", chunk_size=16,
                                                     label_smoothing=0.1)).lower(*args).compile()
    plan = compiled.memory_analysis()
    if plan is None:  # pragma: no cover - a backend without the analysis
        pytest.skip("no memory analysis on this JAX backend")
    # blocks of 16 x 8192 floats are 0.5 MiB; the weight gradient is 2 MiB
    logits = n * v * 4
    assert plan.temp_size_in_bytes < logits / 4, plan.temp_size_in_bytes / 2**20


def test_torch_inputs_that_require_grad_are_read_not_recorded():
    h, W, y, b, cw = make(seed=27)
    th, tW, tb, tcw = (torch.tensor(a, requires_grad=True) for a in (h, W, b, cw))
    v, g = lce.value_and_grad(th, tW, torch.as_tensor(y), tb, wrt="all", chunk_size=7,
                              label_smoothing=0.1, class_weight=tcw,
                              sample_weight=torch.ones(N, dtype=torch.float64,
                                                       requires_grad=True))
    assert not v.requires_grad and not any(gi.requires_grad for gi in g)
    np.testing.assert_allclose(g[1].numpy(), lce.grad(h, W, y, b, wrt="weight",
                                                      label_smoothing=0.1, class_weight=cw),
                               rtol=1e-12, atol=1e-16)


def test_jax_jit_traces_the_blocks():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    h, W, y, b, cw = make(seed=28, ignore=True)
    opts = {"ignore_index": -100, "label_smoothing": 0.2, "chunk_size": 25}

    @jax.jit
    def f(h, W, y, b, cw):
        return lce.value_and_grad(h, W, y, b, wrt="all", class_weight=cw, **opts)

    v, g = f(*(jnp.asarray(a) for a in (h, W, y, b, cw)))
    ref_v, ref_g = lce.value_and_grad(h, W, y, b, wrt="all", class_weight=cw, **opts)
    assert_all_close([np.asarray(v)] + [np.asarray(gi) for gi in g], (ref_v, *ref_g),
                     rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name,to,back", [b for b in BACKENDS if b[0] != "dask"] + [
    ("numpy", np.asarray, np.asarray)], ids=[b[0] for b in BACKENDS if b[0] != "dask"] + [
    "numpy"])
def test_float32_in_float32_out_close_to_float64(name, to, back):
    h, W, y, b, _ = make(seed=29)
    ref_v, ref_g = torch_ref(h, W, y, b, label_smoothing=0.1)
    f32 = [a.astype(np.float32) for a in (h, W, b)]
    v, g = lce.value_and_grad(to(f32[0]), to(f32[1]), to(y), to(f32[2]), wrt="all",
                              chunk_size=25, label_smoothing=0.1)
    assert all(str(x.dtype).endswith("float32") for x in (v, *g))
    np.testing.assert_allclose(back(v), ref_v, rtol=1e-5)
    for gi, ri in zip(g, ref_g):
        gi = back(gi).astype(np.float64)
        assert np.linalg.norm(gi - ri) <= 1e-5 * np.linalg.norm(ri)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32_and_returned_as_is(dtype_name):
    dtype = getattr(torch, dtype_name)
    h, W, y, b, _ = make(seed=30)
    th, tW, tb = (torch.tensor(a, dtype=dtype) for a in (h, W, b))
    v, g = lce.value_and_grad(th, tW, torch.as_tensor(y), tb, wrt="all", chunk_size=7)
    assert v.dtype == dtype and all(gi.dtype == dtype for gi in g)
    # reference: float32 autograd on the same (rounded) half-precision inputs
    ref_v, ref_g = torch_ref(th.float().numpy(), tW.float().numpy(), y, tb.float().numpy(),
                             dtype=torch.float32)
    tol = 1e-2 if dtype_name == "bfloat16" else 2e-3
    np.testing.assert_allclose(float(v), float(ref_v), rtol=tol)
    for gi, ri in zip(g, ref_g):
        gi = gi.float().numpy()
        assert np.linalg.norm(gi - ri) <= tol * np.linalg.norm(ri)


# ------------------------------------------------------------------ errors
def test_shape_errors_name_the_argument_and_both_shapes():
    h, W, y, b, _ = make(seed=31)
    with pytest.raises(ValueError, match=r"^`weight` must have shape \(V, d\) with d = 32, the "
                                         r"last axis of `hidden` \(64, 32\); got \(300, 31\)$"):
        lce(h, W[:, :31], y, b)
    with pytest.raises(ValueError, match=r"got \(32, 300\); the layout is \(num_classes, "
                                         r"features\) like torch.nn.Linear.weight: pass "
                                         r"weight.T$"):
        lce(h, np.ascontiguousarray(W.T), y, b)
    with pytest.raises(ValueError, match=r"^`weight` of linear_cross_entropy must have shape "
                                         r"\(V, d\) = \(num_classes, features\).*got shape "
                                         r"\(300, 32, 1\)$"):
        lce(h, W[..., None], y, b)
    with pytest.raises(ValueError, match=r"^`bias` must have shape \(V,\) = \(300,\), one "
                                         r"entry per row of `weight` \(300, 32\); got "
                                         r"\(299,\)$"):
        lce(h, W, y, b[:-1])
    with pytest.raises(ValueError, match=r"^`labels` must have the shape of `hidden` \(64, 32\) "
                                         r"without its last \(feature\) axis, \(64,\); got "
                                         r"\(63,\)$"):
        lce(h, W, y[:-1], b)
    with pytest.raises(ValueError, match=r"got \(64, 1\); squeeze the last axis of `labels`"):
        lce(h, W, y[:, None], b)
    with pytest.raises(ValueError, match=r"^`hidden` of linear_cross_entropy must have shape "
                                         r"\(N, d\) or \(\.\.\., d\).*got a 0-d array$"):
        lce(np.float64(1.0), W, y, b)
    with pytest.raises(ValueError, match=r"^`weight` of linear_cross_entropy must have at "
                                         r"least one row \(class\); got shape \(0, 32\)$"):
        lce(h, W[:0], y, b[:0])
    with pytest.raises(ValueError, match=r"^`class_weight` must have one weight per class: "
                                         r"shape \(300,\) \(the rows of `weight`\); got "
                                         r"\(4,\)$"):
        lce(h, W, y, b, class_weight=np.ones(4))
    with pytest.raises(ValueError, match=r"`sample_weight` of linear_cross_entropy must be a "
                                         r"number or have the shape of the unreduced loss \(64,\)"):
        lce(h, W, y, b, sample_weight=np.ones(3))


def test_dtype_and_value_errors():
    h, W, y, b, _ = make(seed=32)
    with pytest.raises(TypeError, match=r"^`hidden` of `linear_cross_entropy` must have a "
                                        r"floating dtype .*got int64"):
        lce(h.astype(np.int64), W, y, b)
    with pytest.raises(TypeError, match=r"^`weight` must have the dtype of `hidden` \(float32\)"
                                        r"; got float64. Convert one of them explicitly$"):
        lce(h.astype(np.float32), W, y, b.astype(np.float32))
    with pytest.raises(TypeError, match=r"^`bias` must have the dtype of `hidden` \(float64\); "
                                        r"got float32"):
        lce(h, W, y, b.astype(np.float32))
    with pytest.raises(TypeError, match=r"^`labels` of linear_cross_entropy must be integer "
                                        r"class indices; got dtype float64"):
        lce(h, W, y.astype(float), b)
    with pytest.raises(ValueError, match=r"^`labels` must hold class indices in \[0, 299\] "
                                         r"\(num_classes=300 from the class axis\); got 300$"):
        lce(h, W, np.where(y == y[0], 300, y), b)
    with pytest.raises(ValueError, match=r"pass ignore_index=-100"):
        lce(h, W, np.where(y == y[0], -100, y), b)
    with pytest.raises(ValueError, match=r"^`label_smoothing` must lie in \[0, 1\]; got 1.5$"):
        lce(h, W, y, b, label_smoothing=1.5)
    with pytest.raises(TypeError, match=r"^`ignore_index` of linear_cross_entropy must be an int or None; got 1.0$"):
        lce(h, W, y, b, ignore_index=1.0)
    with pytest.raises(ValueError, match=r"^`chunk_size` must be a positive int \(rows per "
                                         r"block\); got 0$"):
        lce(h, W, y, b, chunk_size=0)
    with pytest.raises(TypeError, match=r"^`chunk_size` must be a positive int \(rows per "
                                        r"block\) or None; got 2.5$"):
        lce(h, W, y, b, chunk_size=2.5)
    with pytest.raises(ValueError, match=r"^`class_weight` must lie in \[0, inf\]"):
        lce(h, W, y, b, class_weight=-np.ones(V))
    with pytest.raises(ValueError, match=r"^`reduction` must be one of"):
        lce(h, W, y, b, reduction="avg")
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'axis'"):
        lce(h, W, y, b, axis=-1)


def test_wrt_errors_and_missing_arrays():
    h, W, y, b, _ = make(seed=33)
    with pytest.raises(ValueError, match=r"^`wrt` of linear_cross_entropy must be one of "
                                         r"'hidden', 'weight', 'bias', 'all'; got 'labels'$"):
        lce.grad(h, W, y, b, wrt="labels")
    with pytest.raises(ValueError, match=r"wrt='bias' needs a `bias`; got bias=None"):
        lce.grad(h, W, y, wrt="bias")
    with pytest.raises(TypeError, match=r"`weight` must be an array; got None"):
        lce(h, None, y)
    with pytest.raises(TypeError, match=r"must come from one array library; `hidden` is a "
                                        r"torch.Tensor, `weight` is a numpy.ndarray"):
        lce(torch.as_tensor(h), W, torch.as_tensor(y))


# ------------------------------------------------------------------ metadata
def test_metadata_and_catalog():
    assert lce.name == "linear_cross_entropy"
    assert lce.inputs == ("hidden", "weight", "labels", "bias")
    assert lce.differentiable == ("hidden", "weight", "bias")
    assert lce in lk.catalog(family="classification")
    info = lce.info()
    assert info["options"] == {"class_weight": None, "ignore_index": None,
                               "label_smoothing": 0.0, "z_loss": 0.0,
                               "chunk_size": None}
    assert len(lce.when_to_use) > 80 and lce.formula and lce.gradient_formula
    assert "arXiv:2410.10989" in lce.__doc__ and ".. math::" in lce.__doc__
    if hasattr(lk, "linear_cross_entropy"):
        assert lk.linear_cross_entropy is lce


# ------------------------------------------------------------------ the numba softmax step
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", sorted(OPTIONS))
def test_the_numba_softmax_step_equals_the_numpy_one(monkeypatch, dtype, opt):
    """NumPy blocks take a fused numba kernel for max, exp, sum and the gradient scaling;
    it must give what NumPy's ufuncs give, rows with +inf, NaN and only -inf included."""
    pytest.importorskip("numba")
    from losskit.kernels import fast_paths as _fast
    from losskit.kernels import numba_kernels as _fast_numba

    calls = []

    def spy_on(name):
        real = getattr(_fast_numba, name)

        def spy(*args):
            calls.append(args[0].shape)
            return real(*args)

        monkeypatch.setattr(_fast_numba, name, spy)

    spy_on("softmax_block_parallel")  # large blocks
    spy_on("softmax_block_serial")  # these small ones
    h, W, y, b, cw = make(seed=21, ignore="ignore" in opt or opt == "all")
    b = b.copy()
    b[3] = np.inf  # every row's maximum is +inf: NaN softmax rows
    h[5] = np.nan
    b_rows = (h.astype(dtype), W.astype(dtype), y, b.astype(dtype))
    kw = resolve(OPTIONS[opt], cw.astype(dtype))
    for bias in (b_rows[3], np.full(V, -np.inf, dtype=dtype), None):
        arrays = (*b_rows[:3], bias)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's inf - inf
            calls.clear()
            fused = lce.value_and_grad(*arrays, wrt="all", reduction="none", chunk_size=7,
                                       **kw)
            assert calls, "the numba kernel did not run"
            monkeypatch.setattr(_fast, "USE_NUMBA", False)
            calls.clear()
            plain = lce.value_and_grad(*arrays, wrt="all", reduction="none", chunk_size=7,
                                       **kw)
            assert not calls
            monkeypatch.setattr(_fast, "USE_NUMBA", True)
        rtol = 2e-5 if dtype == np.float32 else 1e-12
        for a, e in zip((fused[0], *fused[1]), (plain[0], *plain[1])):
            if e is None:
                assert a is None
                continue
            assert a.dtype == e.dtype and a.shape == e.shape
            np.testing.assert_array_equal(np.isnan(a), np.isnan(e))
            np.testing.assert_allclose(a, e, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_ignored_rows_are_skipped_and_read_nothing(lib):
    """With ignored labels the in-place blocks hold the other rows only: an ignored row's
    hidden state is never multiplied (inf or NaN there changes nothing), its value and
    hidden gradient are exactly 0, and everything equals the chained softmax CE of the
    kept rows alone (out= included)."""
    h, W, y, b, cw = make(seed=31, ignore=True)
    ign = y == -100
    h_bad = h.copy()
    h_bad[np.flatnonzero(ign)[0]] = np.inf
    h_bad[np.flatnonzero(ign)[1]] = np.nan
    opts = {"class_weight": cw, "label_smoothing": 0.1, "z_loss": 1e-3}
    keep = ~ign
    # the reference: the kept rows only, through the explicit logits (sum: the same total)
    z = h[keep] @ W.T + b
    v_ref, g_ref = lk.softmax_cross_entropy.value_and_grad(z, y[keep], reduction="none",
                                                           **opts)
    gh_ref = np.zeros_like(h)
    gh_ref[keep] = g_ref @ W
    gw_ref = g_ref.T @ h[keep]
    conv = (lambda a: torch.as_tensor(a)) if lib == "torch" else (lambda a: a)
    back = (lambda a: a.numpy()) if lib == "torch" else np.asarray
    out_h = conv(np.full_like(h, 7.0))
    v, (gh, gw, gb) = lce.value_and_grad(conv(h_bad), conv(W), conv(y), conv(b),
                                         reduction="none", ignore_index=-100,
                                         wrt="all", chunk_size=9, **opts)
    v = back(v)
    assert np.all(v[ign] == 0.0) and np.all(back(gh)[ign] == 0.0)
    np.testing.assert_allclose(v[keep], v_ref, rtol=1e-12)
    np.testing.assert_allclose(back(gh), gh_ref, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(back(gw), gw_ref, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(back(gb), g_ref.sum(axis=0), rtol=1e-11, atol=1e-14)
    assert lce.grad(conv(h_bad), conv(W), conv(y), conv(b), reduction="none",
                    ignore_index=-100, out=out_h, **opts) is out_h
    np.testing.assert_allclose(back(out_h), gh_ref, rtol=1e-11, atol=1e-14)
    # every row ignored: zeros, no block at all
    y_none = np.full_like(y, -100)
    v0, (gh0, gw0) = lce.value_and_grad(conv(h_bad), conv(W), conv(y_none), conv(b),
                                        reduction="sum", wrt=("hidden", "weight"),
                                        ignore_index=-100)
    assert float(v0) == 0.0
    assert not np.any(back(gh0)) and not np.any(back(gw0))


def test_ignored_rows_never_reach_the_blocks(monkeypatch):
    """The blocks (and so the matrix products) see the kept rows only."""
    seen = []
    inner = _linear_ce._blocks_inplace

    def spy(ctx, lib, h, *args):
        seen.append(h.shape[0])
        return inner(ctx, lib, h, *args)

    monkeypatch.setattr(_linear_ce, "_blocks_inplace", spy)
    h, W, y, b, _ = make(seed=32, ignore=True)
    lce.value_and_grad(h, W, y, b, ignore_index=-100, wrt="all")
    lce.value_and_grad(torch.as_tensor(h), torch.as_tensor(W), torch.as_tensor(y),
                       torch.as_tensor(b), ignore_index=-100, wrt="all")
    lce.value_and_grad(h, W, np.abs(y) % V, b, ignore_index=-100, wrt="all")
    assert seen == [int(np.sum(y != -100))] * 2 + [N]
