"""linear_token_logprobs and linear_preference_loss: the LM head fused with the per-token
log-probabilities and with the sequence-level preference losses.

References, written out in torch with autograd through the full logits (which the fused
losses never form): ``log_softmax(hidden @ weight.T + bias)`` gathered at the targets, the
ignored positions masked, summed (or averaged) per sequence as Liger-Kernel's
``LigerFusedLinearPreferenceBase.chunk_forward`` / ``LigerFusedLinearUnpairedPreferenceBase
.chunk_forward`` do (``src/liger_kernel/chunked_loss/fused_linear_preference.py``,
``fused_linear_unpaired_preference.py``, v0.8.5), the NLL term as its ``_compute_loss``
(cross-entropy summed over the chosen tokens, divided by the chosen tokens of the whole
batch, times ``alpha``), then each module's ``preference_loss_fn`` as written out in
``tests/cases/cases_preference*.py`` (mean over pairs / sequences). Expected numbers never
come from losskit.
"""

from __future__ import annotations

import numpy as np
import pytest

import loss_cases  # noqa: F401  (the cases' shared helpers first)
import losskit as lk
from cases_preference import trl_dpo
from cases_preference_odds import t_cpo, t_kto, t_orpo, t_simpo

torch = pytest.importorskip("torch")

B, T, D, V = 3, 5, 4, 9


def _arrays(seed=0, paired=True, bias=True):
    r = np.random.default_rng(seed)
    S = 2 * B if paired else B
    h = r.normal(size=(S, T, D))
    W = r.normal(size=(V, D))
    b = r.normal(size=V) if bias else None
    y = r.integers(0, V, size=(S, T))
    y[:, 0] = -100  # the prompt
    y[1, 3:] = -100  # padding
    rh = r.normal(size=(S, T, D))
    rW = r.normal(size=(V, D))
    return h, W, b, y, rh, rW


def _token_logps(H, Wt, Bt, y, torch_=torch):
    logits = H @ Wt.T + (0 if Bt is None else Bt)
    lp = torch_.log_softmax(logits, -1)
    keep = torch_.tensor(y != -100)
    yy = torch_.tensor(np.where(y == -100, 0, y))
    return lp.gather(-1, yy[..., None])[..., 0] * keep, keep


def _seq(tok, keep, average):
    s = tok.sum(-1)
    return s / keep.sum(-1) if average else s


def _reference(kind, h, W, b, y, rh=None, rW=None, average=False, alpha=0.0, reduction="mean",
               desirable=None, sample_weight=None, **opts):
    H = torch.tensor(h, requires_grad=True)
    Wt = torch.tensor(W, requires_grad=True)
    Bt = None if b is None else torch.tensor(b, requires_grad=True)
    tok, keep = _token_logps(H, Wt, Bt, y)
    s = _seq(tok, keep, average)
    ref = None
    if rh is not None:
        with torch.no_grad():
            rtok, _ = _token_logps(torch.tensor(rh), torch.tensor(rW), None, y)
            ref = _seq(rtok, keep, average)
    n = s.shape[0] // 2
    if kind == "kto":
        args = (s, torch.tensor(desirable)) + ((ref,) if ref is not None else ())
        per = t_kto(**opts)(*args, "none", torch)
    elif kind == "dpo":
        lengths = keep.sum(-1).to(s.dtype)
        rc, rr = (ref[:n], ref[n:]) if ref is not None else (None, None)
        per = trl_dpo(**opts)(s[:n], s[n:], rc, rr, lengths[:n], lengths[n:], "none", torch)
    else:
        fn = {"simpo": t_simpo, "orpo": t_orpo, "cpo": t_cpo}[kind]
        per = fn(**opts)(s[:n], s[n:], "none", torch)
    if alpha:
        nll_sum = -(tok[:n]).sum(-1)
        per = per + alpha * n * nll_sum / keep[:n].sum()
    w = torch.ones_like(per) if sample_weight is None else torch.tensor(sample_weight)
    if reduction == "none":
        out = per
        out_sum = (per * w).sum()
    elif reduction == "sum":
        out = out_sum = (per * w).sum()
    else:
        out = out_sum = (per * w).sum() / w.sum()
    out_sum.backward()
    grads = [H.grad.numpy(), Wt.grad.numpy(), None if Bt is None else Bt.grad.numpy()]
    return out.detach().numpy(), grads


CONFIGS = [
    ("dpo", {}, {}),
    ("dpo", {"ref": True}, {"beta": 0.5}),
    ("dpo", {"ref": True, "average": True}, {"variant": "hinge"}),
    ("dpo", {"ref": True}, {"variant": "ipo"}),
    ("dpo", {"alpha": 1.0}, {"variant": "sigmoid_norm"}),
    ("dpo", {"ref": True}, {"variant": "robust", "label_smoothing": 0.2}),
    ("simpo", {"average": True, "alpha": 1.0}, {}),
    ("simpo", {}, {"gamma": 1.0, "label_smoothing": 0.1}),
    ("orpo", {"average": True, "alpha": 1.0}, {}),
    ("cpo", {"alpha": 1.0}, {"beta": 0.3}),
    ("kto", {"ref": True}, {}),
    ("kto", {"average": True}, {"kl": 0.1}),
]


def _call(kind, setup, opts, h, W, b, y, rh, rW, desirable, **kw):
    arrays = (h, W, y, b) + ((rh, rW) if setup.get("ref") else ())
    extra = dict(opts)
    if kind != "dpo" or opts:
        extra["loss"] = kind
    if kind == "kto":
        extra["desirable"] = desirable
    return lk.linear_preference_loss.value_and_grad(
        *arrays, average_log_prob=setup.get("average", False),
        nll_alpha=setup.get("alpha", 0.0), wrt="all", **extra, **kw)


@pytest.mark.parametrize("kind,setup,opts", CONFIGS,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(CONFIGS)])
@pytest.mark.parametrize("reduction", ["mean", "none", "sum"])
def test_value_and_gradients_equal_the_full_logits_reference(kind, setup, opts, reduction):
    paired = kind != "kto"
    h, W, b, y, rh, rW = _arrays(paired=paired)
    desirable = np.array([True, False, True])
    sw = np.array([0.5, 2.0, 1.0]) if reduction != "none" else None
    want_v, want_g = _reference(kind, h, W, b, y, rh if setup.get("ref") else None, rW,
                                setup.get("average", False), setup.get("alpha", 0.0),
                                reduction, desirable, sw, **opts)
    for chunk in (None, 1, 2):
        v, g = _call(kind, setup, opts, h, W, b, y, rh, rW, desirable,
                     reduction=reduction, sample_weight=sw, chunk_size=chunk)
        np.testing.assert_allclose(v, want_v, rtol=1e-10, atol=1e-12)
        for got, want in zip(g, want_g):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_the_one_pass_and_the_two_pass_engines_agree_in_float32():
    """NumPy runs the blocks of whole pairs in one pass; array-api-strict the two passes."""
    xps = pytest.importorskip("array_api_strict")
    h, W, b, y, rh, rW = (a.astype(np.float32) if a.dtype == np.float64 else a
                          for a in _arrays(seed=3))
    v, g = lk.linear_preference_loss.value_and_grad(h, W, y, b, rh, rW, nll_alpha=0.5,
                                                    wrt="all")
    conv = [xps.asarray(a) for a in (h, W, y, b, rh, rW)]
    v2, g2 = lk.linear_preference_loss.value_and_grad(*conv[:4], *conv[4:], nll_alpha=0.5,
                                                      wrt="all")
    np.testing.assert_allclose(v, np.asarray(v2), rtol=1e-5)
    for a, c in zip(g, g2):
        np.testing.assert_allclose(a, np.asarray(c), rtol=2e-4, atol=1e-6)


def test_finite_differences_of_the_hidden_states():
    h, W, b, y, rh, rW = _arrays(seed=5)
    g = lk.linear_preference_loss.grad(h, W, y, b, rh, rW, nll_alpha=0.3)
    eps = 1e-6
    for idx in [(0, 2, 1), (4, 1, 3), (2, 4, 0)]:
        hp, hm = h.copy(), h.copy()
        hp[idx] += eps
        hm[idx] -= eps
        fd = (lk.linear_preference_loss(hp, W, y, b, rh, rW, nll_alpha=0.3)
              - lk.linear_preference_loss(hm, W, y, b, rh, rW, nll_alpha=0.3)) / (2 * eps)
        assert abs(g[idx] - fd) < 1e-7


def test_a_sequence_without_targets_gets_no_gradient():
    h, W, b, y, rh, rW = _arrays(seed=1)
    y[2] = -100  # chosen sequence of pair 2: no target token at all
    for average in (False, True):
        v, gh = lk.linear_preference_loss.value_and_grad(h, W, y, b, average_log_prob=average)
        assert np.isfinite(v)
        assert np.all(gh[2] == 0.0)
        assert np.all(gh[0, 0] == 0.0)  # an ignored position


def test_torch_backward_equals_the_reference():
    h, W, b, y, rh, rW = _arrays(seed=2)
    want_v, want_g = _reference("dpo", h, W, b, y, rh, rW, alpha=1.0)
    H = torch.tensor(h, requires_grad=True)
    Wt = torch.tensor(W, requires_grad=True)
    Bt = torch.tensor(b, requires_grad=True)
    v = lk.linear_preference_loss(H, Wt, torch.tensor(y), Bt, torch.tensor(rh),
                                  torch.tensor(rW), nll_alpha=1.0)
    (2.0 * v).backward()
    np.testing.assert_allclose(v.item(), want_v, rtol=1e-10)
    for t, want in zip((H, Wt, Bt), want_g):
        np.testing.assert_allclose(t.grad.numpy(), 2.0 * want, rtol=1e-9, atol=1e-12)


def test_jax_grad_equals_the_reference():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    h, W, b, y, rh, rW = _arrays(seed=4)
    want_v, want_g = _reference("simpo", h, W, b, y, average=True, alpha=1.0)
    f = lambda h_, w_, b_: lk.linear_preference_loss(  # noqa: E731
        h_, w_, jnp.asarray(y), b_, loss="simpo", average_log_prob=True, nll_alpha=1.0)
    v, g = jax.value_and_grad(f, argnums=(0, 1, 2))(jnp.asarray(h), jnp.asarray(W),
                                                    jnp.asarray(b))
    np.testing.assert_allclose(float(v), want_v, rtol=1e-10)
    for a, want in zip(g, want_g):
        np.testing.assert_allclose(np.asarray(a), want, rtol=1e-9, atol=1e-12)


def test_token_logprobs_vjp_for_any_cotangent():
    r = np.random.default_rng(7)
    h, W, b = r.normal(size=(2, 6, D)), r.normal(size=(V, D)), r.normal(size=V)
    y = r.integers(0, V, size=(2, 6))
    y[0, :2] = -100
    c = r.normal(size=(2, 6))  # cotangents of both signs
    for t in (1.0, 0.7):
        H = torch.tensor(h, requires_grad=True)
        Wt = torch.tensor(W, requires_grad=True)
        Bt = torch.tensor(b, requires_grad=True)
        tok, _ = _token_logps(H / t, Wt, Bt / t, y)
        (tok * torch.tensor(c)).sum().backward()
        v = lk.linear_token_logprobs(h, W, y, b, temperature=t)
        g = lk.linear_token_logprobs.grad(h, W, y, b, temperature=t, sample_weight=c,
                                          reduction="sum", wrt="all", chunk_size=5)
        np.testing.assert_allclose(v, tok.detach().numpy(), rtol=1e-12, atol=1e-14)
        assert np.all(v[0, :2] == 0.0)
        for a, x in zip(g, (H, Wt, Bt)):
            np.testing.assert_allclose(a, x.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("call,match", [
    (lambda h, W, b, y: lk.linear_preference_loss(h[:5], W, y[:5]), "even number"),
    (lambda h, W, b, y: lk.linear_preference_loss(h, W, y[:, :2]), "`targets` must have"),
    (lambda h, W, b, y: lk.linear_preference_loss(h[0], W, y[0]), "must have shape"),
    (lambda h, W, b, y: lk.linear_preference_loss(h, W, y, loss="kto"), "needs `desirable`"),
    (lambda h, W, b, y: lk.linear_preference_loss(h, W, y, gamma=1.0), "'gamma' is not an"),
    (lambda h, W, b, y: lk.linear_preference_loss(h, W, y, loss="ipo"), "`loss` must be one"),
    (lambda h, W, b, y: lk.linear_preference_loss(h, W, y, ref_bias=b), "`ref_bias` needs"),
    (lambda h, W, b, y: lk.linear_preference_loss(h, W, y, ref_hidden=h), "needs both"),
    (lambda h, W, b, y: lk.linear_preference_loss(h, W.T, y), "`weight` of linear_preference_loss must have"),
    (lambda h, W, b, y: lk.linear_preference_loss(h[:3], W, y[:3], loss="kto", nll_alpha=1.0,
                                                  desirable=np.ones(3, bool)), "nll_alpha"),
    (lambda h, W, b, y: lk.linear_preference_loss(h, W, y, nll_alpha=-1.0), "nll_alpha"),
])
def test_errors_name_the_argument(call, match):
    h, W, b, y, _, _ = _arrays()
    with pytest.raises((ValueError, TypeError), match=match):
        call(h, W, b, y)


def test_token_logprobs_backward_in_torch_and_jax_for_a_cotangent():
    """reduction="none" on tensors / JAX arrays: the backward of per-token values is the
    closed-form vector-Jacobian product (the adapters' second call with signed weights)."""
    r = np.random.default_rng(8)
    h, W, b = r.normal(size=(2, 6, D)), r.normal(size=(V, D)), r.normal(size=V)
    y = r.integers(0, V, size=(2, 6))
    y[1, 4:] = -100
    c = r.normal(size=(2, 6))
    H, Wt, Bt = (torch.tensor(a, requires_grad=True) for a in (h, W, b))
    tok, _ = _token_logps(H, Wt, Bt, y)
    (tok * torch.tensor(c)).sum().backward()
    want = [t.grad.numpy().copy() for t in (H, Wt, Bt)]
    for t in (H, Wt, Bt):
        t.grad = None
    got = lk.linear_token_logprobs(H, Wt, torch.tensor(y), Bt)
    (got * torch.tensor(c)).sum().backward()
    for t, w in zip((H, Wt, Bt), want):
        np.testing.assert_allclose(t.grad.numpy(), w, rtol=1e-10, atol=1e-13)
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    _, vjp = jax.vjp(lambda h_, w_, b_: lk.linear_token_logprobs(h_, w_, jnp.asarray(y), b_),
                     jnp.asarray(h), jnp.asarray(W), jnp.asarray(b))
    for a, w in zip(vjp(jnp.asarray(c)), want):
        np.testing.assert_allclose(np.asarray(a), w, rtol=1e-10, atol=1e-13)


def test_torch_compile_fullgraph_equals_eager():
    r = np.random.default_rng(9)
    h = torch.tensor(r.normal(size=(4, 5, 6)), requires_grad=True)
    W = torch.tensor(r.normal(size=(9, 6)), requires_grad=True)
    y = torch.tensor(r.integers(0, 9, size=(4, 5)))

    def f(h_, w_, y_):
        return lk.linear_preference_loss(h_, w_, y_, loss="simpo", average_log_prob=True,
                                         nll_alpha=1.0)

    compiled = torch.compile(f, fullgraph=True, backend="eager")(h, W, y)
    compiled.backward()
    g = h.grad.clone()
    h.grad = None
    eager = f(h, W, y)
    eager.backward()
    assert float(compiled) == float(eager)
    torch.testing.assert_close(g, h.grad, rtol=0, atol=0)


@pytest.mark.parametrize("call", [
    lambda h, W, y: lk.linear_cross_entropy.grad(h, W, y, wrt="bias"),
    lambda h, W, y: lk.linear_token_logprobs.grad(h, W, y, wrt="bias"),
    lambda h, W, y: lk.linear_generalized_jsd.grad(h, W, h, W, y, wrt="student_bias"),
])
def test_torch_wrt_an_optional_input_left_out_is_an_error(call):
    r = np.random.default_rng(0)
    h, W = torch.tensor(r.normal(size=(6, 4))), torch.tensor(r.normal(size=(9, 4)))
    y = torch.tensor(r.integers(0, 9, size=6))
    with pytest.raises(ValueError, match="bias=None"):
        call(h, W, y)


def test_torch_backward_of_the_per_pair_values():
    """reduction="none": the backward of the per-pair values for a signed upstream gradient
    (the adapter's second call with the cotangent as sample weights)."""
    h, W, b, y, rh, rW = _arrays(seed=6)
    c = np.array([0.7, -1.3, 0.4])
    H, Wt, Bt = (torch.tensor(a, requires_grad=True) for a in (h, W, b))
    tok, keep = _token_logps(H, Wt, Bt, y)
    s = tok.sum(-1)
    with torch.no_grad():
        rtok, _ = _token_logps(torch.tensor(rh), torch.tensor(rW), None, y)
        rs = rtok.sum(-1)
    per = trl_dpo()(s[:B], s[B:], rs[:B], rs[B:], None, None, "none", torch)
    (per * torch.tensor(c)).sum().backward()
    want = [t.grad.numpy().copy() for t in (H, Wt, Bt)]
    for t in (H, Wt, Bt):
        t.grad = None
    got = lk.linear_preference_loss(H, Wt, torch.tensor(y), Bt, torch.tensor(rh),
                                    torch.tensor(rW), reduction="none")
    np.testing.assert_allclose(got.detach().numpy(), per.detach().numpy(), rtol=1e-12)
    (got * torch.tensor(c)).sum().backward()
    for t, w in zip((H, Wt, Bt), want):
        np.testing.assert_allclose(t.grad.numpy(), w, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_ignored_tokens_never_reach_the_blocks(monkeypatch, lib):
    """The one-pass blocks hold the kept tokens only, still whole pairs per block: a pair
    whose two sequences are all prompt makes an empty block (chunk_size=1), and values and
    gradients equal the full-logits reference."""
    from losskit.losses import linear_cross_entropy as _lce

    seen = []
    inner = _lce._blocks_inplace

    def spy(ctx, lib_, h, W, b, rows, row_factor, wanted, nb, dest):
        if callable(row_factor):
            seen.append((h.shape[0], list(nb) if not isinstance(nb, int) else nb))
        return inner(ctx, lib_, h, W, b, rows, row_factor, wanted, nb, dest)

    monkeypatch.setattr(_lce, "_blocks_inplace", spy)
    h, W, b, y, rh, rW = _arrays(seed=7)
    y[[1, 1 + B]] = -100  # pair 1: chosen and rejected without any target
    want_v, want_g = _reference("dpo", h, W, b, y, rh, rW)
    conv = (lambda a: torch.as_tensor(a)) if lib == "torch" else (lambda a: a)
    v, g = lk.linear_preference_loss.value_and_grad(
        conv(h), conv(W), conv(y), conv(b), conv(rh), conv(rW), wrt="all", chunk_size=1)
    (rows_seen, spans), = seen
    kept = int(np.sum(y != -100))
    assert rows_seen == kept and spans[1][0] == spans[1][1]  # pair 1: an empty block
    assert spans[0][0] == 0 and spans[-1][1] == kept
    np.testing.assert_allclose(np.asarray(v), want_v, rtol=1e-10)
    for got, want in zip(g, want_g):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-9, atol=1e-12)
    assert np.all(np.asarray(g[0])[[1, 1 + B]] == 0.0)
