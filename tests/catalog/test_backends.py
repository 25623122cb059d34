"""One implementation, every array library: NumPy (also read-only), array-api-strict,
PyTorch (CPU, and CUDA where present), JAX (eager and under jit), Dask (lazy), CuPy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import losskit as lk
from loss_cases import CASE_IDS, CASES, ONE_PER_LOSS

SMALL = [c for c in CASES if c.id in {
    "mse", "l2_loss", "mae", "softmax_ce", "softmax_ce-soft", "softmax_ce-all",
    "softmax_ce-axis1-weight-ignore", "cross_entropy", "cross_entropy-weight-ignore",
    "nll_loss-weight-ignore", "binary_cross_entropy", "sigmoid_bce-pos_weight", "hinge",
    "multiclass_hinge-weight"} or c.on_every_backend]


def _convert_options(options, backend):
    out = {}
    for k, v in options.items():
        out[k] = backend.asarray(np.asarray(v, dtype=float)) if isinstance(v, list) else v
    return out


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("case", SMALL, ids=[c.id for c in SMALL])
def test_same_result_and_array_type_on_every_backend(case, reduction, backend):
    arrays = case.inputs(seed=7)
    ref_v, ref_g = case.loss.value_and_grad(*arrays, reduction=reduction, **case.options)
    v, g = case.loss.value_and_grad(*[backend.asarray(a) for a in arrays], reduction=reduction,
                                    **_convert_options(case.options, backend))
    assert backend.is_native(v) and backend.is_native(g)
    assert str(g.dtype).endswith("float64") and tuple(g.shape) == arrays[0].shape
    np.testing.assert_allclose(backend.to_numpy(v), ref_v, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(backend.to_numpy(g), ref_g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", SMALL, ids=[c.id for c in SMALL])
def test_float32_stays_float32_on_every_backend(case, backend):
    arrays = case.inputs(seed=8)
    conv = [backend.asarray(a.astype(np.float32) if a.dtype.kind == "f" else a) for a in arrays]
    v, g = case.loss.value_and_grad(*conv, **_convert_options(case.options, backend))
    assert str(v.dtype).endswith("float32") and str(g.dtype).endswith("float32")
    ref_v, ref_g = case.loss.value_and_grad(*arrays, **case.options)
    np.testing.assert_allclose(backend.to_numpy(v), ref_v, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(g), ref_g, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_half_precision_is_accumulated_in_float32_and_returned_as_is(dtype_name):
    torch = pytest.importorskip("torch")
    dtype = getattr(torch, dtype_name)
    rng = np.random.default_rng(0)
    z64 = rng.normal(size=(64, 10))
    y = rng.integers(0, 10, size=64)
    z = torch.tensor(z64, dtype=dtype)
    v, g = lk.softmax_cross_entropy.value_and_grad(z, torch.as_tensor(y))
    assert v.dtype == dtype and g.dtype == dtype
    # reference: torch in float32 on the same (rounded) half-precision logits
    zr = z.float().requires_grad_(True)
    ref = torch.nn.functional.cross_entropy(zr, torch.as_tensor(y))
    ref.backward()
    tol = 1e-2 if dtype_name == "bfloat16" else 2e-3
    np.testing.assert_allclose(float(v), float(ref.detach()), rtol=tol)
    np.testing.assert_allclose(g.float().numpy(), zr.grad.numpy(), rtol=tol, atol=tol / 10)


def test_jax_jit_traces_every_loss():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    for case in SMALL:
        arrays = case.inputs(seed=9)
        ref_v, ref_g = case.loss.value_and_grad(*arrays, **case.options)
        opts = case.options

        @jax.jit
        def f(*a, opts=opts, loss=case.loss):
            return loss.value_and_grad(*a, **opts)

        v, g = f(*[jnp.asarray(a) for a in arrays])
        np.testing.assert_allclose(np.asarray(v), ref_v, rtol=1e-12, err_msg=case.id)
        np.testing.assert_allclose(np.asarray(g), ref_g, rtol=1e-12, atol=1e-15,
                                   err_msg=case.id)


def test_dask_stays_lazy_until_computed():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(10, 3))
    y = rng.integers(0, 3, size=10)
    v, g = lk.softmax_cross_entropy.value_and_grad(da.from_array(z, chunks=4),
                                                   da.from_array(y, chunks=4))
    assert isinstance(v, da.Array) and isinstance(g, da.Array)
    np.testing.assert_allclose(v.compute(), lk.softmax_cross_entropy(z, y), rtol=1e-12)


def test_torch_result_stays_on_the_input_device_and_is_a_tensor():
    torch = pytest.importorskip("torch")
    z = torch.randn(4, 3, dtype=torch.float64)
    v = lk.softmax_cross_entropy(z, torch.tensor([0, 1, 2, 0]))
    assert isinstance(v, torch.Tensor) and v.device == z.device and v.ndim == 0


def test_python_lists_are_accepted_as_numpy():
    v = lk.mse([1.0, 2.0], [1.0, 4.0])
    assert isinstance(v, np.ndarray) and v.dtype == np.float64
    assert float(v) == 2.0  # ((0)^2 + (-2)^2) / 2


def test_import_losskit_does_not_import_torch_or_jax():
    code = ("import sys, losskit; "
            "print(any(m in sys.modules for m in ('torch', 'jax', 'dask', 'cupy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_kernels_do_not_write_into_their_inputs(case):
    arrays = case.inputs(seed=10)
    frozen = [a.copy() for a in arrays]
    for a in frozen:
        a.setflags(write=False)
    case.loss.value_and_grad(*frozen, **case.options)
    for a, b in zip(frozen, arrays):
        np.testing.assert_array_equal(a, b)


def _masked(arrays, keep, n):
    """The arrays as Dask arrays, those with the batch axis (length n) boolean-masked by
    ``keep`` (sizes unknown until computed), and the same rows kept in NumPy."""
    da = pytest.importorskip("dask.array")
    m = da.from_array(keep, chunks=max(1, n // 2))
    lazy, kept = [], []
    for a in arrays:
        a = np.asarray(a)
        if a.ndim and a.shape[0] == n:
            lazy.append(da.from_array(a, chunks=(max(1, n // 2),) + a.shape[1:])[m])
            kept.append(a[keep])
        else:
            lazy.append(da.from_array(a))
            kept.append(a)
    return lazy, kept


@pytest.mark.parametrize("case", ONE_PER_LOSS, ids=[c.id for c in ONE_PER_LOSS])
def test_every_loss_takes_dask_arrays_of_unknown_sizes(case):
    """Every loss on Dask arrays boolean-masked along the batch axis (their sizes NaN until
    computed; here a block is emptied by the mask too) equals the loss of the kept rows in
    NumPy: the losses whose code needs the sizes as numbers get them computed first
    (``lazy_sizes = False``), the others run lazily."""
    arrays = case.inputs(seed=7)
    n = np.shape(arrays[0])[0]
    keep = np.ones(n, dtype=bool)
    keep[1] = False
    lazy, kept = _masked(arrays, keep, n)
    assert any(np.isnan(a.shape[0]) for a in lazy)
    want_v, want_g = case.loss.value_and_grad(*kept, **case.options)
    v, g = case.loss.value_and_grad(*lazy, **case.options)
    assert np.isnan(lazy[0].shape[0])  # the caller's arrays are left as they were
    np.testing.assert_allclose(np.asarray(v), want_v, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(g), want_g, rtol=1e-9, atol=1e-12)


def _lm_head_arrays(name):
    r = np.random.default_rng(1)
    V, D = 9, 4
    if name == "linear_cross_entropy":
        return [r.normal(size=(6, D)), r.normal(size=(V, D)), r.integers(0, V, 6), r.normal(size=V)]
    if name == "linear_token_logprobs":
        return [r.normal(size=(4, 3, D)), r.normal(size=(V, D)), r.integers(0, V, (4, 3))]
    if name == "linear_generalized_jsd":
        return [r.normal(size=(6, D)), r.normal(size=(V, D)), r.normal(size=(6, 5)),
                r.normal(size=(V, 5)), r.integers(0, V, 6)]
    if name == "linear_grpo_loss":
        return [r.normal(size=(4, 3, D)), r.normal(size=(V, D)), r.integers(0, V, (4, 3)),
                np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]]), r.normal(size=4)]
    # chosen sequences, then rejected ones: masking rows 1 and 3 keeps one whole pair
    return [r.normal(size=(4, 3, D)), r.normal(size=(V, D)), r.integers(0, V, (4, 3))]


@pytest.mark.parametrize("name", ["linear_cross_entropy", "linear_token_logprobs",
                                  "linear_generalized_jsd", "linear_grpo_loss",
                                  "linear_preference_loss"])
def test_lm_head_losses_take_dask_arrays_of_unknown_sizes(name):
    loss = getattr(lk, name)
    arrays = _lm_head_arrays(name)
    n = arrays[0].shape[0]
    keep = np.array([True, False, True, False, True, True][:n])
    lazy, kept = _masked(arrays, keep, n)
    want_v, want_g = loss.value_and_grad(*kept, wrt="all")
    v, g = loss.value_and_grad(*lazy, wrt="all")
    np.testing.assert_allclose(np.asarray(v), want_v, rtol=1e-9, atol=1e-12)
    for gi, wi in zip(g, want_g):
        if wi is None:  # no bias given: no bias gradient
            assert gi is None
            continue
        np.testing.assert_allclose(np.asarray(gi), wi, rtol=1e-9, atol=1e-12)


def test_dask_arrays_of_unknown_chunk_sizes():
    # boolean masking leaves Dask arrays whose length is unknown until computed (nan)
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 16))
    t = rng.normal(size=(100, 16))
    y = rng.integers(0, 16, 100)
    keep = rng.random(100) > 0.5
    m = da.from_array(keep, chunks=25)
    xm, tm, ym = (da.from_array(a, chunks=25)[m] for a in (x, t, y))
    assert np.isnan(xm.shape[0])
    ref_mse = np.mean((x[keep] - t[keep]) ** 2)  # the formula on the kept rows
    np.testing.assert_allclose(float(lk.mse(xm, tm).compute()), ref_mse, rtol=1e-12)
    np.testing.assert_allclose(float(lk.mse(xm, tm, reduction="batchmean").compute()),
                               np.sum((x[keep] - t[keep]) ** 2) / keep.sum(), rtol=1e-12)
    z = x[keep]
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ref_ce = -np.mean(logp[np.arange(keep.sum()), y[keep]])
    np.testing.assert_allclose(float(lk.softmax_cross_entropy(xm, ym).compute()), ref_ce,
                               rtol=1e-12)
    g = lk.softmax_cross_entropy.grad(xm, ym).compute()
    np.testing.assert_allclose(g, (np.exp(logp) - np.eye(16)[y[keep]]) / keep.sum(),
                               rtol=1e-12, atol=1e-15)
    # a label out of range cannot be seen before computing: the result is NaN
    bad = da.from_array(np.full(100, 99), chunks=25)[m]
    assert np.isnan(float(lk.softmax_cross_entropy(xm, bad).compute()))
