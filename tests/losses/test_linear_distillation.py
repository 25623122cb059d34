"""linear_generalized_jsd: Liger-Kernel's fused linear JSD distillation loss, in blocks.

References, never losskit's own output for this loss:

* PyTorch autograd through the loss written out on the full logits, after
  Liger-Kernel 0.8.5's ``src/liger_kernel/chunked_loss/fused_linear_distillation.py``
  (``chunk_forward``/``_compute_loss``: the hard loss is the cross-entropy of the
  student's logits *before* the temperature, both logits are then divided by T, each
  loss is divided by the number of non-ignored targets, clamped to 1) and
  ``src/liger_kernel/chunked_loss/jsd_loss.py`` (``distillation_loss_fn``: KL(Q||P) at
  beta 0, KL(P||Q) at beta 1, else the mixture through ``logsumexp`` of the two
  log-probabilities plus ``log(1 - beta)`` and ``log(beta)``);
* central finite differences on a tiny case.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import losskit as lk
from losskit.losses import linear_distillation as _ld

torch = pytest.importorskip("torch")
F = torch.nn.functional

loss = lk.linear_generalized_jsd
N, DS, DT, V = 9, 6, 4, 13
REDUCTIONS = ("none", "sum", "mean", "batchmean")

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def make(seed=0, n=N, ignore=True, bias=True):
    r = np.random.default_rng(seed)
    a = {"hs": r.normal(size=(n, DS)), "Ws": r.normal(size=(V, DS)) * 0.7,
         "ht": r.normal(size=(n, DT)), "Wt": r.normal(size=(V, DT)) * 0.7,
         "y": r.integers(0, V, size=n),
         "bs": r.normal(size=V) if bias else None, "bt": r.normal(size=V) if bias else None}
    if ignore:
        a["y"][[1, 4]] = -100
    return a


def liger_reference(a, *, beta=0.5, T=1.0, wh=0.5, ws=0.5, ignore_index=-100,
                    reduction="mean", sample_weight=None):
    """The per-token loss of Liger's files (see the module docstring), autograd'd.

    Returns (value, (d hs, d Ws, d bs or None)) in float64."""
    hs = torch.tensor(a["hs"], requires_grad=True)
    Ws = torch.tensor(a["Ws"], requires_grad=True)
    bs = None if a["bs"] is None else torch.tensor(a["bs"], requires_grad=True)
    ht, Wt = torch.tensor(a["ht"]), torch.tensor(a["Wt"])
    y = torch.tensor(a["y"])
    zs = hs @ Ws.T + (bs if bs is not None else 0.0)
    zt = ht @ Wt.T + (torch.tensor(a["bt"]) if a["bt"] is not None else 0.0)
    hard = F.nll_loss(F.log_softmax(zs, dim=-1), y, ignore_index=ignore_index,
                      reduction="none")
    s, t = F.log_softmax(zs / T, dim=-1), F.log_softmax(zt / T, dim=-1)
    if beta == 0:
        soft = F.kl_div(s, t, reduction="none", log_target=True).sum(-1)
    elif beta == 1:
        soft = F.kl_div(t, s, reduction="none", log_target=True).sum(-1)
    else:
        log_m = torch.logsumexp(torch.stack([s + math.log(1 - beta), t + math.log(beta)]), 0)
        soft = (beta * F.kl_div(log_m, t, reduction="none", log_target=True)
                + (1 - beta) * F.kl_div(log_m, s, reduction="none", log_target=True)).sum(-1)
    keep = y != ignore_index
    per_token = torch.where(keep, wh * hard + ws * soft, torch.zeros_like(hard))
    w = torch.ones_like(per_token) if sample_weight is None else torch.tensor(sample_weight)
    if reduction == "none":  # the sample-weighted per-token values
        value = per_token * w
        total = (per_token * w).sum()
    else:
        total = (per_token * w).sum()
        if reduction == "mean":
            total = total / (keep.double() * w).sum().clamp_min(1e-300) if keep.any() \
                else total * 0
        elif reduction == "batchmean":
            total = total / per_token.shape[0]
        value = total
    total.backward()
    grads = (hs.grad.numpy(), Ws.grad.numpy(), None if bs is None else bs.grad.numpy())
    return value.detach().numpy(), grads


def ours(a, wrt="all", **kw):
    return loss.value_and_grad(a["hs"], a["Ws"], a["ht"], a["Wt"], a["y"], a["bs"], a["bt"],
                               wrt=wrt, **kw)


def assert_close(got, want, rtol=1e-10, atol=1e-12):
    v, g = got
    wv, wg = want
    np.testing.assert_allclose(v, wv, rtol=rtol, atol=atol)
    for x, w in zip(g, wg):
        if w is None:
            assert x is None
        else:
            np.testing.assert_allclose(x, w, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------- values, grads
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("T", [1.0, 2.0])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_liger_formula_under_torch_autograd(beta, T, bias):
    a = make(bias=bias)
    opts = {"beta": beta, "temperature": T, "weight_hard_loss": 0.3, "weight_soft_loss": 0.8}
    ref = liger_reference(a, beta=beta, T=T, wh=0.3, ws=0.8)
    assert_close(ours(a, **opts), ref)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_every_reduction_and_sample_weights(reduction, weighted):
    a = make(1)
    sw = np.random.default_rng(5).uniform(0.2, 2.0, size=N) if weighted else None
    ref = liger_reference(a, beta=0.3, T=1.5, reduction=reduction, sample_weight=sw)
    got = ours(a, beta=0.3, temperature=1.5, reduction=reduction, sample_weight=sw)
    assert_close(got, ref)
    if reduction == "none":
        assert got[0].shape == (N,)
        assert got[0][1] == 0.0 and got[0][4] == 0.0  # ignored tokens


def test_default_options_are_liger_defaults_and_hard_or_soft_alone():
    a = make(2)
    assert_close(ours(a), liger_reference(a))
    for wh, ws in ((1.0, 0.0), (0.0, 1.0)):
        assert_close(ours(a, weight_hard_loss=wh, weight_soft_loss=ws, temperature=3.0),
                     liger_reference(a, wh=wh, ws=ws, T=3.0))


def test_no_ignore_index_and_leading_axes():
    a = make(3, n=8, ignore=False)
    ref = liger_reference(a, beta=0.7, ignore_index=-100)
    got = loss.value_and_grad(a["hs"].reshape(2, 4, DS), a["Ws"], a["ht"].reshape(2, 4, DT),
                              a["Wt"], a["y"].reshape(2, 4), a["bs"], a["bt"], wrt="all",
                              beta=0.7, ignore_index=None)
    assert got[1][0].shape == (2, 4, DS)
    assert_close((got[0], (got[1][0].reshape(8, DS), *got[1][1:])), ref)


@pytest.mark.parametrize("chunk_size", [1, 3])
@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_blocks_equal_one_block(chunk_size, beta):
    a = make(4)
    sw = np.linspace(0.5, 1.5, N)
    one = ours(a, beta=beta, temperature=2.0, sample_weight=sw)
    assert_close(ours(a, beta=beta, temperature=2.0, sample_weight=sw, chunk_size=chunk_size),
                 one, rtol=1e-12, atol=1e-14)


def test_tiles_of_one_row_equal_one_tile(monkeypatch):
    a = make(5)
    want = ours(a, beta=0.5, temperature=2.0)
    monkeypatch.setattr(_ld, "_TILE_ELEMENTS", 1)
    assert_close(ours(a, beta=0.5, temperature=2.0), want, rtol=1e-12, atol=1e-14)


def test_finite_differences_on_a_tiny_case():
    r = np.random.default_rng(6)
    hs, Ws, bs = r.normal(size=(3, 2)), r.normal(size=(4, 2)), r.normal(size=4)
    ht, Wt = r.normal(size=(3, 3)), r.normal(size=(4, 3))
    y = np.array([1, -100, 3])
    f = dict(beta=0.3, temperature=1.7)
    gh, gW, gb = loss.grad(hs, Ws, ht, Wt, y, bs, wrt="all", **f)
    eps = 1e-6
    for x, g in ((hs, gh), (Ws, gW), (bs, gb)):
        num = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            old = x[i]
            x[i] = old + eps
            up = float(loss(hs, Ws, ht, Wt, y, bs, **f))
            x[i] = old - eps
            down = float(loss(hs, Ws, ht, Wt, y, bs, **f))
            x[i] = old
            num[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_identical_student_and_teacher_leave_only_the_hard_loss():
    a = make(7)
    v = loss(a["hs"], a["Ws"], a["hs"], a["Ws"], a["y"], a["bs"], a["bs"], beta=0.5,
             weight_hard_loss=0.0, weight_soft_loss=1.0, temperature=2.0)
    assert abs(float(v)) < 1e-14


# ---------------------------------------------------------------------------- edge cases
def test_all_tokens_ignored_give_zero_value_and_zero_gradients():
    a = make(8)
    a["y"][:] = -100
    v, (gh, gW, gb) = ours(a)
    assert float(v) == 0.0
    assert not gh.any() and not gW.any() and not gb.any()


def test_ignored_and_zero_weight_tokens_contribute_exactly_zero_even_if_nan():
    a = make(9)
    clean = ours(a, sample_weight=np.r_[np.ones(N - 1), 0.0])
    a["hs"][1] = np.nan  # ignored token
    a["ht"][N - 1] = np.inf  # token of weight 0
    got = ours(a, sample_weight=np.r_[np.ones(N - 1), 0.0])
    assert_close(got, clean, rtol=1e-13, atol=1e-15)


def test_minus_inf_teacher_bias_is_a_masked_word():
    a = make(10)
    a["y"][a["y"] == 2] = 0
    a["bt"][2] = -1e4  # exp(-1e4) = 0: Liger's kl_div gives NaN at -inf (0 * inf)
    ref = liger_reference(a, beta=0.5)
    a["bt"][2] = -np.inf  # the teacher never emits word 2: the exact (log-space) rows
    v, g = ours(a, beta=0.5)
    assert np.isfinite(float(v))
    assert_close((v, g), ref)


def test_shape_dtype_and_option_errors_name_the_argument():
    a = make(11)
    args = [a["hs"], a["Ws"], a["ht"], a["Wt"], a["y"]]

    def bad(i, x):
        return [x if j == i else v for j, v in enumerate(args)]

    with pytest.raises(ValueError, match="student_weight"):
        loss(*bad(1, a["Ws"][:, :-1]))
    with pytest.raises(ValueError, match="teacher_weight"):
        loss(*bad(3, a["Wt"][:-1]))
    with pytest.raises(ValueError, match="teacher_hidden"):
        loss(*bad(2, a["ht"][:-1]))
    with pytest.raises(ValueError, match="targets"):
        loss(*bad(4, a["y"][:-1]))
    with pytest.raises(ValueError, match="student_bias"):
        loss(*args, a["bs"][:-1])
    with pytest.raises(ValueError, match="teacher_bias"):
        loss(*args, a["bs"], a["bt"][:-1])
    with pytest.raises(TypeError, match="teacher_weight"):
        loss(*bad(3, a["Wt"].astype(np.float32)))
    with pytest.raises(TypeError, match="student_hidden"):
        loss(*bad(0, a["hs"].astype(np.int64)))
    with pytest.raises(TypeError, match="targets"):
        loss(*bad(4, a["y"].astype(np.float64)))
    with pytest.raises(ValueError, match="targets"):
        loss(*bad(4, np.full(N, V)))
    with pytest.raises(ValueError, match="beta"):
        loss(*args, beta=1.5)
    with pytest.raises(ValueError, match="temperature"):
        loss(*args, temperature=0.0)
    with pytest.raises(ValueError, match="student_bias"):
        loss.grad(*args, wrt="student_bias")
    with pytest.raises(ValueError, match="wrt"):
        loss.grad(*args, wrt="teacher_hidden")
    with pytest.raises(ValueError, match="chunk_size"):
        loss(*args, chunk_size=0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("T", [1.0, 2.0])
def test_numba_step_equals_numpy_tiles(monkeypatch, dtype, beta, T):
    # the numba kernel of the elementwise step against the NumPy tiles it replaces (the
    # fallback without numba); both are checked against Liger's formula above
    pytest.importorskip("numba")
    from losskit.core import dispatch
    from losskit.kernels import fast_paths

    monkeypatch.setattr(fast_paths, "USE_NUMBA", True)  # (also under LOSSKIT_DISABLE_NUMBA)
    monkeypatch.setattr(dispatch, "ENABLED", True)
    a = make(16)  # tokens 1 and 4 ignored
    a["hs"][1] = np.nan  # an ignored non-finite row
    a["bt"][5] = -np.inf  # a masked word: every row is redone in log space
    b = make(17, bias=False)
    cases = [{k: (None if v is None else v.astype(dtype) if v.dtype.kind == "f" else v)
              for k, v in x.items()} for x in (a, b)]
    sw = np.linspace(0.5, 1.5, N).astype(dtype)
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == np.float64 else {"rtol": 1e-5,
                                                                      "atol": 1e-7}
    for parallel_min in (fast_paths.PARALLEL_MIN, 0):  # the serial and the parallel build
        monkeypatch.setattr(fast_paths, "PARALLEL_MIN", parallel_min)
        for x in cases:
            for kw in ({}, {"weight_hard_loss": 0.0, "weight_soft_loss": 1.0},
                       {"reduction": "none", "sample_weight": sw, "chunk_size": 4}):
                assert _ld._jsd_block_kernel("numpy", np.empty((1, 1), dtype)) is not None
                got = ours(x, beta=beta, temperature=T, **kw)
                monkeypatch.setattr(dispatch, "ENABLED", False)
                assert _ld._jsd_block_kernel("numpy", np.empty((1, 1), dtype)) is None
                want = ours(x, beta=beta, temperature=T, **kw)
                monkeypatch.setattr(dispatch, "ENABLED", True)
                assert got[0].dtype == dtype  # (beta 1 with a masked word: KL = inf)
                assert_close(got, want, **tol)


def test_numba_step_that_cannot_compile_leaves_the_numpy_tiles(monkeypatch):
    pytest.importorskip("numba")
    from losskit.core import dispatch
    from losskit.kernels import distillation_numba, fast_paths

    monkeypatch.setattr(fast_paths, "USE_NUMBA", True)
    monkeypatch.setattr(dispatch, "ENABLED", True)
    a = make(18)
    want = ours(a, beta=0.5, temperature=2.0)
    monkeypatch.setattr(fast_paths, "_numba_module", fast_paths._nb())  # restored afterwards
    monkeypatch.setattr(fast_paths, "_numba_error", None)

    def broken(*args):
        raise distillation_numba.NumbaError("no LLVM for this CPU")

    monkeypatch.setattr(distillation_numba, "jsd_block_serial", broken)
    assert_close(ours(a, beta=0.5, temperature=2.0), want, rtol=1e-12, atol=1e-14)
    assert "no LLVM for this CPU" in fast_paths.numba_error()


def test_float32_and_out():
    a = make(12)
    a32 = {k: (None if v is None else v.astype(np.float32) if v.dtype.kind == "f" else v)
           for k, v in a.items()}
    v64, g64 = ours(a)
    v32, g32 = ours(a32)
    assert v32.dtype == np.float32 and all(g.dtype == np.float32 for g in g32)
    np.testing.assert_allclose(v32, v64, rtol=1e-5)
    for g, w in zip(g32, g64):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    out = np.empty_like(a["Ws"])
    got = loss.grad(a["hs"], a["Ws"], a["ht"], a["Wt"], a["y"], a["bs"], a["bt"],
                    wrt="student_weight", out=out)
    assert got is out
    np.testing.assert_allclose(out, g64[1], rtol=1e-13)


# ---------------------------------------------------------------------------- frameworks
def test_torch_backward_gives_the_same_gradients():
    a = make(13)
    _, ref = liger_reference(a, beta=0.2, T=2.0)
    hs = torch.tensor(a["hs"], requires_grad=True)
    Ws = torch.tensor(a["Ws"], requires_grad=True)
    bs = torch.tensor(a["bs"], requires_grad=True)
    v = loss(hs, Ws, torch.tensor(a["ht"]), torch.tensor(a["Wt"]), torch.tensor(a["y"]), bs,
             torch.tensor(a["bt"]), beta=0.2, temperature=2.0)
    (3.0 * v).backward()
    for t, w in zip((hs, Ws, bs), ref):
        np.testing.assert_allclose(t.grad.numpy(), 3.0 * w, rtol=1e-10, atol=1e-12)


def test_jax_grad_gives_the_same_gradients():
    jax = pytest.importorskip("jax")  # (tests/conftest.py enables float64)
    import jax.numpy as jnp

    a = make(14)
    _, ref = liger_reference(a, beta=0.6, T=1.5)
    ht, Wt, y, bt = (jnp.asarray(a[k]) for k in ("ht", "Wt", "y", "bt"))
    g = jax.grad(lambda hs, Ws, bs: loss(hs, Ws, ht, Wt, y, bs, bt, beta=0.6,
                                         temperature=1.5),
                 argnums=(0, 1, 2))(jnp.asarray(a["hs"]), jnp.asarray(a["Ws"]),
                                    jnp.asarray(a["bs"]))
    for x, w in zip(g, ref):
        np.testing.assert_allclose(np.asarray(x), w, rtol=1e-10, atol=1e-12)


def test_functional_path_matches():
    xps = pytest.importorskip("array_api_strict")
    a = make(15)
    a["bt"][3] = -np.inf
    want = ours(a, beta=0.5, temperature=2.0, chunk_size=4)
    conv = {k: None if v is None else xps.asarray(v) for k, v in a.items()}
    got = ours(conv, beta=0.5, temperature=2.0, chunk_size=4)
    assert_close((np.asarray(got[0]), tuple(np.asarray(g) for g in got[1])), want,
                 rtol=1e-12, atol=1e-14)


def test_metadata_and_catalog():
    assert loss in lk.catalog("language_models")
    assert loss.differentiable == ("student_hidden", "student_weight", "student_bias")
    assert loss.option_defaults() == {"beta": 0.5, "temperature": 1.0,
                                      "weight_hard_loss": 0.5, "weight_soft_loss": 0.5,
                                      "ignore_index": -100, "chunk_size": None}


def test_ignored_tokens_never_reach_the_blocks_and_out_gets_zero_rows(monkeypatch):
    """Ignored targets: the blocks (the four matrix products) see the other tokens only;
    the hidden gradient, also when written into ``out=``, has exact zero rows there and
    equals the Liger reference elsewhere."""
    seen = []
    inner = _ld._blocks_inplace

    def spy(ctx, lib, hs, *args):
        seen.append(hs.shape[0])
        return inner(ctx, lib, hs, *args)

    monkeypatch.setattr(_ld, "_blocks_inplace", spy)
    a = make(13)  # tokens 1 and 4 ignored
    a["ht"][4] = np.inf  # an ignored teacher row: never read
    ref_v, ref_g = liger_reference(make(13))
    out = np.full_like(a["hs"], 5.0)
    got = loss.grad(a["hs"], a["Ws"], a["ht"], a["Wt"], a["y"], a["bs"], a["bt"],
                    wrt="student_hidden", out=out)
    assert got is out and seen == [N - 2]
    assert np.all(out[[1, 4]] == 0.0)
    np.testing.assert_allclose(out, ref_g[0], rtol=1e-10, atol=1e-13)
    v = loss(a["hs"], a["Ws"], a["ht"], a["Wt"], a["y"], a["bs"], a["bt"])
    np.testing.assert_allclose(v, ref_v, rtol=1e-12)
