"""losskit on PyTorch tensors: the closed-form gradient as the backward (``losskit.torch``).

References are independent: torch autograd of each case's PyTorch reference
(``loss_cases``: the other library's formula with the convention translated), PyTorch's own
losses, ``torch.autograd.gradcheck`` (finite differences), and loops against ``vmap``.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import losskit as lk
from loss_cases import CASE_IDS, CASES, ONE_PER_LOSS

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import losskit.torch as lkt  # noqa: E402

CLOSED_FORM = "_ClosedFormBackward"


def _is_float(a):
    return np.asarray(a).dtype.kind == "f"


def _tensors(case, arrays, dtype=torch.float64, grad=True):
    out = []
    for name, a in zip(case.loss.inputs, arrays):
        if _is_float(a):
            out.append(torch.tensor(a, dtype=dtype,
                                    requires_grad=grad and name in case.loss.differentiable))
        else:
            out.append(torch.as_tensor(a, dtype=torch.int64))
    return out


def _options(options):
    return {k: torch.tensor(v, dtype=torch.float64) if isinstance(v, list) else v
            for k, v in options.items()}


def _reference(case, arrays, reduction, upstream=None):
    ts = _tensors(case, arrays)
    v = case.torch_ref(*ts, reduction, torch)
    (v if upstream is None else (v * upstream).sum()).backward()
    return v.detach(), [ts[case.loss.inputs.index(n)].grad for n in case.loss.differentiable]


def _ours(case, arrays, reduction, upstream=None):
    ts = _tensors(case, arrays)
    v = case.loss(*ts, reduction=reduction, **_options(case.options))
    assert type(v.grad_fn).__name__ == CLOSED_FORM, "the backward is not losskit's"
    (v if upstream is None else (v * upstream).sum()).backward()
    return v.detach(), [ts[case.loss.inputs.index(n)].grad for n in case.loss.differentiable]


# ------------------------------------------------------------------ every loss, every input
@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_backward_is_the_closed_form_and_equals_torch_autograd(case, reduction):
    arrays = case.inputs(seed=3)
    ref_v, ref_g = _reference(case, arrays, reduction)
    v, g = _ours(case, arrays, reduction)
    torch.testing.assert_close(v, ref_v, rtol=case.rtol64, atol=1e-12)
    for name, gi, ri in zip(case.loss.differentiable, g, ref_g):
        assert gi is not None, f"{name} got no gradient"
        torch.testing.assert_close(gi, ri, rtol=case.rtol64, atol=1e-12, msg=name)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reduction_none_backward_with_an_upstream_gradient(case):
    arrays = case.inputs(seed=4)
    ref_v = case.torch_ref(*_tensors(case, arrays, grad=False), "none", torch)
    upstream = torch.linspace(-1.0, 2.0, ref_v.numel(), dtype=torch.float64).reshape(ref_v.shape)
    ref_v, ref_g = _reference(case, arrays, "none", upstream)
    v, g = _ours(case, arrays, "none", upstream)
    torch.testing.assert_close(v, ref_v, rtol=case.rtol64, atol=1e-12)
    for name, gi, ri in zip(case.loss.differentiable, g, ref_g):
        torch.testing.assert_close(gi, ri, rtol=case.rtol64, atol=1e-12, msg=name)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_torch_gradcheck(case):
    arrays = case.inputs(seed=6)
    ts = _tensors(case, arrays)
    diff = [i for i, n in enumerate(case.loss.inputs) if n in case.loss.differentiable]
    opts = _options(case.options)

    def f(*xs):
        full = list(ts)
        for i, x in zip(diff, xs):
            full[i] = x
        return case.loss(*full, **opts)

    assert torch.autograd.gradcheck(f, tuple(ts[i] for i in diff))


def test_float32_backward_matches_torch():
    torch.manual_seed(0)
    z = torch.randn(64, 10, requires_grad=True)
    y = torch.randint(0, 10, (64,))
    lk.softmax_cross_entropy(z, y, label_smoothing=0.1).backward()
    z2 = z.detach().clone().requires_grad_()
    F.cross_entropy(z2, y, label_smoothing=0.1).backward()
    assert z.grad.dtype == torch.float32
    torch.testing.assert_close(z.grad, z2.grad, rtol=1e-5, atol=1e-7)


def test_no_grad_calls_and_plain_tensors_return_plain_values():
    z = torch.randn(4, 3, dtype=torch.float64)
    v = lk.softmax_cross_entropy(z, torch.tensor([0, 1, 2, 0]))
    assert v.grad_fn is None and not v.requires_grad
    zg = z.clone().requires_grad_()
    with torch.no_grad():
        assert lk.softmax_cross_entropy(zg, torch.tensor([0, 1, 2, 0])).grad_fn is None


def test_targets_and_weights_get_no_gradient():
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    t = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)
    lk.sigmoid_binary_cross_entropy(z, t).backward()
    assert z.grad is not None and t.grad is None


# ------------------------------------------------------------------ where autodiff gives NaN
def test_contrastive_identical_pair_has_the_finite_closed_form_gradient():
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    lk.contrastive(x, x2, torch.tensor([1.0], dtype=torch.float64)).backward()
    # similar pair at distance 0: the loss d^2/2 has gradient d * unit = 0
    assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(x2.grad, torch.zeros_like(x2))
    # a siamese layer stays finite after one SGD step
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).double()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    a = torch.randn(4, 3, dtype=torch.float64)
    lk.contrastive(net(a), net(a), torch.ones(4, dtype=torch.float64)).backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_softmax_focal_with_a_masked_class_is_finite():
    z = torch.tensor([[2.0, -float("inf"), 0.5]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0])
    lk.softmax_focal_loss(z, y, gamma=2.0).backward()
    expected = lk.softmax_focal_loss.grad(z.detach().numpy(), y.numpy(), gamma=2.0)
    assert torch.isfinite(z.grad).all()
    np.testing.assert_allclose(z.grad.numpy(), expected, rtol=1e-12)
    assert z.grad[0, 1] == 0.0


def test_triplet_with_eps0_and_anchor_equal_positive_is_finite():
    a = torch.tensor([[1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    p = a.detach().clone().requires_grad_()
    n = torch.tensor([[1.5, 2.0]], dtype=torch.float64, requires_grad=True)
    lk.triplet_margin(a, p, n, eps=0.0).backward()
    for t in (a, p, n):
        assert torch.isfinite(t.grad).all()
    # d(a,p) = 0 (subgradient 0), d(a,n) = 0.5 < margin: only the negative term acts
    torch.testing.assert_close(a.grad, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(n.grad, torch.tensor([[-1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(p.grad, torch.zeros_like(p))


# ------------------------------------------------------------------ linear_cross_entropy
def test_linear_cross_entropy_backward_for_hidden_weight_and_bias():
    torch.manual_seed(1)
    h = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(11, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 11, (8,))
    v = lk.linear_cross_entropy(h, w, y, b)
    assert v.requires_grad and type(v.grad_fn).__name__ == CLOSED_FORM
    v.backward()
    h2, w2, b2 = (t.detach().clone().requires_grad_() for t in (h, w, b))
    ref = F.cross_entropy(h2 @ w2.T + b2, y)
    ref.backward()
    torch.testing.assert_close(v.detach(), ref.detach())
    for ours, theirs in ((h, h2), (w, w2), (b, b2)):
        torch.testing.assert_close(ours.grad, theirs.grad)
    # without a bias, and only the weight requiring grad
    w.grad = None
    lk.linear_cross_entropy(h.detach(), w, y).backward()
    w3 = w.detach().clone().requires_grad_()
    F.cross_entropy(h.detach() @ w3.T, y).backward()
    torch.testing.assert_close(w.grad, w3.grad)


# ------------------------------------------------------------------ .grad and out=
def test_grad_records_no_graph_and_out_may_be_a_leaf_that_requires_grad():
    z = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    g = lk.softmax_cross_entropy.grad(z, y)
    assert not g.requires_grad and g.grad_fn is None
    expected = (torch.softmax(z.detach(), -1) - F.one_hot(y, 3)) / 4
    torch.testing.assert_close(g, expected)
    out = torch.zeros(4, 3, requires_grad=True)
    r = lk.softmax_cross_entropy.grad(z, y, out=out)
    assert r is out
    torch.testing.assert_close(out.detach(), expected)
    v, (ga, gp, gn) = lk.triplet_margin.value_and_grad(
        torch.randn(3, 2), torch.randn(3, 2), torch.randn(3, 2), wrt="all")
    assert ga.shape == gp.shape == gn.shape == (3, 2) and v.ndim == 0


def test_cpu_tensors_take_the_fused_kernels():
    from losskit.kernels import fast_paths

    z = torch.randn(32, 10)
    y = torch.randint(0, 10, (32,))
    before = sum(n for (name, _), n in fast_paths.STATS.items()
                 if name == "softmax_cross_entropy")
    lk.softmax_cross_entropy(z.requires_grad_(), y).backward()
    after = sum(n for (name, _), n in fast_paths.STATS.items()
                if name == "softmax_cross_entropy")
    assert after == before + 1


# ------------------------------------------------------------------ compile and torch.func
COMPILED = ONE_PER_LOSS + [c for c in CASES if c.id in ("sigmoid_bce-pos_weight",
                                                          "softmax_ce-soft")]


@pytest.mark.slow
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case", COMPILED, ids=[c.id for c in COMPILED])
def test_compile_fullgraph_equals_eager(case, reduction):
    """Every loss inside ``torch.compile(fullgraph=True)`` (Dynamo, AOTAutograd, Inductor),
    value and backward equal to eager; reduction "none" through an upstream gradient."""
    arrays = case.inputs(seed=7)
    opts = _options(case.options)
    eager_ts = _tensors(case, arrays)
    compiled_ts = _tensors(case, arrays)
    torch._dynamo.reset()

    def f(*ts):
        if reduction == "none":
            v = case.loss(*ts, reduction="none", **opts)
            return (v * torch.linspace(0.5, 1.5, v.numel(), dtype=v.dtype).reshape(
                v.shape)).sum()
        return case.loss(*ts, **opts)

    ve = f(*eager_ts)
    ve.backward()
    vc = torch.compile(f, fullgraph=True)(*compiled_ts)
    vc.backward()
    torch.testing.assert_close(vc, ve)
    for a, b in zip(eager_ts, compiled_ts):
        if a.requires_grad:
            torch.testing.assert_close(b.grad, a.grad)


@pytest.mark.slow
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_compile_with_dynamic_shapes_over_several_batch_sizes(reduction):
    """``torch.compile(dynamic=True)``: symbolic batch sizes (reduction "none" specialises
    the values' shape on them: recompiled per size, never a wrong shape)."""
    torch._dynamo.reset()
    f = torch.compile(lambda z, y: (lk.softmax_cross_entropy(z, y, reduction=reduction)
                                    * 1.5).sum(), fullgraph=True, dynamic=True)
    for n in (8, 12, 20):
        z = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, 5, (n,))
        v = f(z, y)
        v.backward()
        z2 = z.detach().clone().requires_grad_()
        ref = (F.cross_entropy(z2, y, reduction=reduction) * 1.5).sum()
        ref.backward()
        torch.testing.assert_close(v, ref)
        torch.testing.assert_close(z.grad, z2.grad)


@pytest.mark.slow
def test_compile_fullgraph_as_the_first_call_of_a_fresh_process(tmp_path):
    """The first losskit call of a process inside ``torch.compile(fullgraph=True)``: the
    adapter is imported and the loss registered while Dynamo traces. Against
    ``F.cross_entropy`` and its autograd."""
    import subprocess
    import sys

    script = tmp_path / "first_call.py"
    script.write_text(
        "import torch, torch.nn.functional as F, losskit as lk\n"
        "torch.manual_seed(0)\n"
        "z = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)\n"
        "y = torch.randint(0, 5, (8,))\n"
        "f = torch.compile(lambda a, b: lk.softmax_cross_entropy(a, b, label_smoothing=0.1),"
        " fullgraph=True)\n"
        "v = f(z, y)\n"
        "v.backward()\n"
        "r = z.detach().clone().requires_grad_()\n"
        "ref = F.cross_entropy(r, y, label_smoothing=0.1)\n"
        "ref.backward()\n"
        "torch.testing.assert_close(v, ref)\n"
        "torch.testing.assert_close(z.grad, r.grad)\n"
        "print('closed form:', type(v.grad_fn).__name__)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "closed form:" in proc.stdout


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "sigmoid_binary_cross_entropy",
                                  "mse", "huber"])
def test_vmap_grad_per_sample_gradients_equal_a_loop(name):
    torch.manual_seed(2)
    loss = getattr(lk, name)
    z = torch.randn(5, 4, dtype=torch.float64)
    if name == "softmax_cross_entropy":
        t = torch.randint(0, 4, (5,))
    else:
        t = torch.rand(5, 4, dtype=torch.float64)
    from torch.func import grad, vmap

    per_sample = vmap(grad(lambda zi, ti: loss(zi[None], ti[None])))(z, t)
    loop = torch.stack([_single_grad(loss, z[i:i + 1], t[i:i + 1])[0] for i in range(5)])
    torch.testing.assert_close(per_sample, loop)


@pytest.mark.parametrize("case", ONE_PER_LOSS, ids=[c.id for c in ONE_PER_LOSS])
def test_vmap_grad_over_a_batch_of_problems_equals_a_loop(case):
    """``vmap(grad(loss))`` over two whole problems stacked on a new leading axis (every
    input batched) equals each problem's own backward."""
    from torch.func import grad, vmap

    a1, a2 = case.inputs(seed=7), case.inputs(seed=8)
    t1, t2 = _tensors(case, a1, grad=False), _tensors(case, a2, grad=False)
    stacked = [torch.stack([x, y]) for x, y in zip(t1, t2)]
    opts = _options(case.options)
    d = case.loss.inputs.index(case.loss.differentiable[0])

    def f(x, *rest):
        full = list(rest)
        full.insert(d, x)
        return case.loss(*full, **opts)

    per_problem = vmap(grad(f))(stacked[d], *[s for i, s in enumerate(stacked) if i != d])
    for b, ts in enumerate((t1, t2)):
        x = ts[d].clone().requires_grad_()
        full = list(ts)
        full[d] = x
        case.loss(*full, **opts).backward()
        torch.testing.assert_close(per_problem[b], x.grad)


def test_vjp_and_jacrev_of_per_example_values_equal_torch():
    from torch.func import jacrev, vjp

    torch.manual_seed(3)
    z = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    cw = torch.rand(4, dtype=torch.float64)
    v = torch.linspace(-1.0, 2.0, 6, dtype=torch.float64)

    def ours(a):
        return lk.softmax_cross_entropy(a, y, reduction="none", class_weight=cw)

    def ref(a):
        return F.cross_entropy(a, y, weight=cw, reduction="none")

    torch.testing.assert_close(vjp(ours, z)[1](v)[0], vjp(ref, z)[1](v)[0])
    torch.testing.assert_close(jacrev(ours)(z), jacrev(ref)(z))


def _single_grad(loss, z, t):
    z = z.detach().clone().requires_grad_()
    loss(z, t).backward()
    return z.grad


# ------------------------------------------------------------------ validate=
def test_validation_runs_on_eager_cpu_calls_and_validate_false_skips_it():
    z = torch.randn(3, 4, requires_grad=True)
    bad = torch.tensor([0, 1, 7])
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\].*got 7"):
        lk.softmax_cross_entropy(z, bad)
    # unchecked, an out-of-range label is NaN (value and gradient), never a dropped label
    v = lk.softmax_cross_entropy(z, bad, validate=False)
    v.backward()
    assert torch.isnan(v) and torch.isnan(z.grad).all()
    for label in (-1, 4):
        for reduction in ("none", "sum"):
            v = lk.softmax_cross_entropy(z.detach(), torch.tensor([0, 1, label]),
                                         reduction=reduction, validate=False)
            assert torch.isnan(v).any(), (label, reduction)
    t = torch.tensor([[0.5, 1.5, 0.0, 0.0]] * 3)
    with pytest.raises(ValueError, match="target"):
        lk.sigmoid_binary_cross_entropy(z, t)
    # without the checks a target outside [0, 1] makes the result NaN, not a number
    v = lk.sigmoid_binary_cross_entropy(z, t, validate=False)
    assert torch.isnan(v)
    good = torch.rand(3, 4)
    torch.testing.assert_close(lk.sigmoid_binary_cross_entropy(z, good, validate=False).detach(),
                               F.binary_cross_entropy_with_logits(z.detach(), good))
    with pytest.raises(TypeError, match="validate"):
        lk.mse(z, z.detach(), validate="no")


def test_eager_calls_and_the_registered_operator_agree():
    """Plain eager calls run the operator's body directly (no custom-op dispatch); inside a
    torch function mode (``with torch.device(...)``) the registered operator runs. Same
    numbers, same closed-form backward."""
    torch.manual_seed(5)
    y = torch.randint(0, 6, (7,))
    results = []
    for mode in (None, torch.device("cpu")):
        z = torch.randn(7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                        requires_grad=True)
        with mode if mode is not None else contextlib.nullcontext():
            v = lk.softmax_cross_entropy(z, y, label_smoothing=0.1)
            assert type(v.grad_fn).__name__ == CLOSED_FORM
            v.backward()
            results.append((v.detach(), z.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)
    ref = F.cross_entropy(z.detach(), y, label_smoothing=0.1)
    torch.testing.assert_close(results[0][0], ref)


# ------------------------------------------------------------------ second order: refused
def test_create_graph_gives_the_gradient_and_refuses_a_second_backward():
    """A gradient penalty on losskit's gradient would need its second derivative: the
    second backward raises, rather than adding zero silently."""
    torch.manual_seed(4)
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    (g,) = torch.autograd.grad(lk.softmax_cross_entropy(z, y), z, create_graph=True)
    z2 = z.detach().clone().requires_grad_()
    (g_ref,) = torch.autograd.grad(F.cross_entropy(z2, y), z2)
    torch.testing.assert_close(g.detach(), g_ref)  # first order: unchanged
    assert g.requires_grad  # not silently detached
    with pytest.raises(RuntimeError, match="second derivatives"):
        (g ** 2).sum().backward()


def test_nested_func_grad_and_forward_mode_are_refused():
    x = torch.randn(3, dtype=torch.float64)
    t = torch.zeros(3, dtype=torch.float64)

    def f(b):
        return lk.mse(b, t)

    # one level works (the gradient of the mean squared error: 2 (x - t) / n)
    torch.testing.assert_close(torch.func.grad(f)(x), 2 * x / 3)
    with pytest.raises(NotImplementedError, match="nested torch.func.grad"):
        torch.func.grad(lambda a: torch.func.grad(f)(a).sum())(x)
    with pytest.raises(NotImplementedError, match="nested torch.func.grad"):
        torch.func.jacrev(torch.func.jacrev(f))(x)
    # forward mode: refused, rather than a tangent of zero
    ones = torch.ones(3, dtype=torch.float64)
    with pytest.raises(NotImplementedError, match="forward-mode"):
        torch.func.jvp(f, (x,), (ones,))
    with pytest.raises(NotImplementedError, match="forward-mode"):
        torch.func.jacfwd(f)(x)
    with pytest.raises(NotImplementedError, match="forward-mode"):
        torch.func.hessian(f)(x)
    fwAD = torch.autograd.forward_ad
    with fwAD.dual_level():
        with pytest.raises(NotImplementedError, match="forward-mode"):
            f(fwAD.make_dual(x, ones))
        f(x)  # no tangent: a plain call
    # .grad() returns a plain tensor: differentiating it is refused too
    with pytest.raises(NotImplementedError, match="plain tensor"):
        torch.func.grad(lambda a: lk.mse.grad(a, t).sum())(x)
    # vmap of .grad() (per-sample gradients) is not differentiation: it works
    rows = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(torch.func.vmap(lambda r: lk.mse.grad(r, t))(rows),
                               2 * rows / 3)


# ------------------------------------------------------------------ the nn.Module criterion
def test_module_criterion_in_place_of_cross_entropy_loss():
    crit = lkt.Loss(lk.softmax_cross_entropy, label_smoothing=0.1)
    assert isinstance(crit, torch.nn.Module)
    assert repr(crit) == "Loss(softmax_cross_entropy, reduction='mean', label_smoothing=0.1)"
    torch.manual_seed(3)
    z = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (6,))
    crit(z, y).backward()
    z2 = z.detach().clone().requires_grad_()
    torch.nn.CrossEntropyLoss(label_smoothing=0.1)(z2, y).backward()
    torch.testing.assert_close(z.grad, z2.grad)
    s = lkt.Loss(lk.mse, reduction="sum")
    torch.testing.assert_close(s(torch.ones(3), torch.zeros(3)), torch.tensor(3.0))
    with pytest.raises(TypeError, match="label_smothing"):
        lkt.Loss(lk.softmax_cross_entropy, label_smothing=0.1)
    with pytest.raises(ValueError, match="reduction"):
        lkt.Loss(lk.mse, reduction="avg")
    with pytest.raises(TypeError, match="losskit loss"):
        lkt.Loss(torch.nn.MSELoss())


def test_module_criterion_passes_validate():
    bad = torch.tensor([0.5, 1.5])  # a probability target above 1
    z = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="target"):
        lkt.Loss(lk.sigmoid_binary_cross_entropy)(z, bad)
    crit = lkt.Loss(lk.sigmoid_binary_cross_entropy, validate=False)
    assert repr(crit) == "Loss(sigmoid_binary_cross_entropy, reduction='mean', validate=False)"
    # unchecked, as the loss's own validate=False: NaN for the bad target, never a number
    assert torch.isnan(crit(z, bad))
    good = torch.tensor([0.25, 1.0], dtype=torch.float64)
    torch.testing.assert_close(crit(z, good).detach(),
                               F.binary_cross_entropy_with_logits(z.detach(), good))
    with pytest.raises(TypeError, match="validate"):
        lkt.Loss(lk.mse, validate="no")


@pytest.mark.slow
def test_mlp_on_digits_trains_like_f_cross_entropy():
    sklearn = pytest.importorskip("sklearn.datasets")
    X, y = sklearn.load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float64)
    y = torch.as_tensor(y)

    def train(loss_fn):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(),
                                  torch.nn.Linear(32, 10)).double()
        opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
        for step in range(200):
            idx = torch.arange(step * 64, step * 64 + 64) % len(X)
            opt.zero_grad()
            loss_fn(net(X[idx]), y[idx]).backward()
            opt.step()
        return [p.detach() for p in net.parameters()], loss_fn(net(X), y).item()

    ours, our_loss = train(lk.softmax_cross_entropy)
    theirs, their_loss = train(F.cross_entropy)
    assert our_loss < np.log(10) / 3  # it trained: chance is ln 10
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


# ------------------------------------------------------------------ off the CPU
# Tensors off the CPU (CUDA) run the generic array code with torch operations on their
# device, value checks deferred (NaN), nothing read back to the host. Without a GPU two
# tests stand in for it: the same code on CPU tensors (numbers, against the references)
# and on ``meta`` tensors, which have no values: any read back (``.item()``, ``bool``,
# ``.tolist()``, a data-dependent shape) raises there, as does a tensor made on another
# device. On a machine with CUDA, TestCuda runs every case on the GPU.
def _device_tensors(case, arrays, device, dtype):
    out = []
    for name, a in zip(case.loss.inputs, arrays):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            t = torch.tensor(a, dtype=dtype).to(device)
            t.requires_grad_(name in case.loss.differentiable)
        elif a.dtype.kind == "b":
            t = torch.tensor(a).to(device)
        else:
            t = torch.as_tensor(a, dtype=torch.int64).to(device)
        out.append(t)
    return out


def _device_options(options, device, dtype):
    # quantile's levels `q` fix the output's shape: a hyperparameter, passed as numbers
    return {k: torch.tensor(v, dtype=dtype).to(device) if isinstance(v, list) and k != "q"
            else v for k, v in options.items()}


def _device_call(case, arrays, device, dtype, reduction, upstream=None):
    """value, the gradients of the differentiable inputs (backward), and ``.grad(wrt="all")``
    with the call's options, on ``device``."""
    ts = _device_tensors(case, arrays, device, dtype)
    opts = _device_options(case.options, device, dtype)
    v = case.loss(*ts, reduction=reduction, **opts)
    assert type(v.grad_fn).__name__ == CLOSED_FORM
    (v if upstream is None else (v * upstream.to(device)).sum()).backward()
    grads = [ts[case.loss.inputs.index(n)].grad for n in case.loss.differentiable]
    plain = case.loss.grad(*[t.detach() for t in ts], reduction=reduction, wrt="all", **opts)
    return v.detach(), grads, plain


@pytest.fixture
def generic_torch_path(monkeypatch):
    """CPU tensors take the path of tensors off the CPU: torch operations, no NumPy."""
    import losskit.torch as adapter

    monkeypatch.setattr(adapter, "_plain_cpu", lambda t: False)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_the_path_off_the_cpu_equals_the_references(case, generic_torch_path):
    arrays = case.inputs(seed=5)
    ref_v, ref_g = _reference(case, arrays, "mean")
    # unchecked: value checks deferred, as they are on CUDA
    ts = _device_tensors(case, arrays, "cpu", torch.float64)
    v = case.loss(*ts, validate=False, **_device_options(case.options, "cpu", torch.float64))
    assert type(v.grad_fn).__name__ == CLOSED_FORM
    v.backward()
    torch.testing.assert_close(v.detach(), ref_v, rtol=case.rtol64, atol=1e-12)
    for name, ri in zip(case.loss.differentiable, ref_g):
        gi = ts[case.loss.inputs.index(name)].grad
        assert gi is not None, f"{name} got no gradient"
        torch.testing.assert_close(gi, ri, rtol=case.rtol64, atol=1e-12, msg=name)


def test_the_path_off_the_cpu_gives_nan_for_a_bad_label_and_reads_nothing_back(
        generic_torch_path):
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    v = lk.softmax_cross_entropy(z, torch.tensor([0, 1, 4]), validate=False)
    v.backward()
    assert torch.isnan(v) and torch.isnan(z.grad).all()
    # meta tensors: the checks of a default (validated) call must not read values
    zm = torch.empty(3, 4, device="meta", requires_grad=True)
    vm = lk.softmax_cross_entropy(zm, torch.empty(3, dtype=torch.int64, device="meta"))
    vm.backward()
    assert vm.device.type == "meta" and zm.grad.shape == (3, 4)


@contextlib.contextmanager
def _no_host_data_sent(monkeypatch):
    """Fails a tensor made from host data (numbers, lists, NumPy arrays) on a device other
    than the CPU: on CUDA that is a host-to-device copy that waits for the device's queue
    (``torch.full`` fills on the device instead). Dispatch modes do not see these."""
    made = []
    for name in ("asarray", "tensor", "as_tensor"):
        original = getattr(torch, name)

        def spy(data, *args, _original=original, _name=name, **kwargs):
            device = kwargs.get("device")
            if device is not None and torch.device(device).type != "cpu" and \
                    not isinstance(data, torch.Tensor):
                made.append(f"torch.{_name}({type(data).__name__}, device={device})")
            return _original(data, *args, **kwargs)

        monkeypatch.setattr(torch, name, spy)
    try:
        yield
    finally:
        monkeypatch.undo()
    assert not made, made


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_nothing_reads_a_value_back_off_the_cpu(case, monkeypatch):
    """Every case on ``meta`` tensors, validated (the default), float32: the call, its
    backward for reduction "mean" and "none", and ``.grad``; every result on the device
    with the shape and dtype of the same call on the CPU; no host data sent to the device
    (options given as numbers stay numbers)."""
    arrays = case.inputs(seed=5)
    for reduction in ("mean", "none"):
        with _no_host_data_sent(monkeypatch):
            v, grads, plain = _device_call(case, arrays, "meta", torch.float32, reduction,
                                           None if reduction == "mean" else
                                           torch.ones((), device="meta"))
        cv, cgrads, cplain = _device_call(case, arrays, "cpu", torch.float32, reduction,
                                          None if reduction == "mean" else torch.tensor(1.0))
        assert v.device.type == "meta" and (v.shape, v.dtype) == (cv.shape, cv.dtype)
        for name, g, cg in zip(case.loss.differentiable, grads, cgrads):
            assert g is not None and g.device.type == "meta", name
            assert (g.shape, g.dtype) == (cg.shape, cg.dtype), name
        for g, cg in zip(plain, cplain):
            assert g.device.type == "meta" and (g.shape, g.dtype) == (cg.shape, cg.dtype)


def _lm_head_calls(poisoned=False):
    """The losses fused with the output layer (not in CASES): name -> (arrays, options),
    small, with ignored targets; ``poisoned``: inf/NaN hidden states on the ignored rows
    (never read: value and gradients stay finite)."""
    r = np.random.default_rng(0)
    V, D = 9, 4
    y6 = r.integers(0, V, 6)
    y6[1] = -100
    y23 = r.integers(0, V, (2, 3))
    y23[0, 0] = -100
    y43 = r.integers(0, V, (4, 3))
    y43[:, 0] = -100
    h6, h23, h43 = r.normal(size=(6, D)), r.normal(size=(2, 3, D)), r.normal(size=(4, 3, D))
    ht6 = r.normal(size=(6, 5))
    if poisoned:
        h6[1], ht6[1], h23[0, 0], h43[:, 0] = np.nan, np.inf, np.inf, np.nan

    def w(*shape):
        return r.normal(size=shape)

    return {
        "linear_cross_entropy": ([h6, w(V, D), y6, w(V)], {"ignore_index": -100}),
        "linear_token_logprobs": ([h23, w(V, D), y23, w(V)], {}),
        "linear_generalized_jsd": ([h6, w(V, D), ht6, w(V, 5), y6, w(V), w(V)], {}),
        "linear_grpo_loss": ([w(2, 3, D), w(V, D), r.integers(0, V, (2, 3)),
                              np.array([[1, 1, 0], [1, 1, 1]]), w(2), w(V)], {}),
        "linear_preference_loss": ([h43, w(V, D), y43, w(V), w(4, 3, D), w(V, D)], {}),
    }


def _lm_head_call(name, arrays, options, device, dtype):
    loss = getattr(lk, name)
    ts = []
    for n, a in zip(loss.inputs, arrays):
        a = np.asarray(a)
        t = torch.tensor(a, dtype=dtype if a.dtype.kind == "f" else None).to(device)
        ts.append(t.requires_grad_() if n in loss.differentiable else t)
    v = loss(*ts, **options)
    assert type(v.grad_fn).__name__ == CLOSED_FORM
    upstream = torch.linspace(0.5, 1.5, v.numel(), dtype=v.dtype).reshape(v.shape)
    (v * upstream.to(device)).sum().backward()
    return v.detach(), [t.grad for t in ts if t.requires_grad]


@pytest.mark.parametrize("name", sorted(_lm_head_calls()))
def test_lm_head_losses_read_nothing_back_off_the_cpu(name, monkeypatch):
    arrays, options = _lm_head_calls()[name]
    with _no_host_data_sent(monkeypatch):
        v, grads = _lm_head_call(name, arrays, options, "meta", torch.float32)
    cv, cgrads = _lm_head_call(name, arrays, options, "cpu", torch.float32)
    assert v.device.type == "meta" and v.shape == cv.shape
    assert [(g.device.type, g.shape) for g in grads] == [("meta", g.shape) for g in cgrads]


@pytest.mark.parametrize("poisoned", [False, True])
@pytest.mark.parametrize("name", sorted(_lm_head_calls()))
def test_lm_head_losses_off_the_cpu_equal_the_cpu_path(name, poisoned, monkeypatch):
    """Off the CPU the LM-head blocks compute ignored rows with weight 0 (no skipping, which
    would read the targets back): the same numbers as the CPU path that skips them, also
    where the ignored rows' hidden states are inf or NaN. (The CPU path is tested against
    torch and Liger references in tests/losses/test_linear_*.py.)"""
    import losskit.losses.linear_cross_entropy as lce
    import losskit.losses.linear_distillation as ldist

    arrays, options = _lm_head_calls(poisoned)[name]
    want_v, want_g = _lm_head_call(name, arrays, options, "cpu", torch.float64)
    import losskit.torch as adapter

    monkeypatch.setattr(adapter, "_plain_cpu", lambda t: False)
    for module in (lce, ldist):
        monkeypatch.setattr(module, "readable", lambda x: False)
    v, grads = _lm_head_call(name, arrays, options, "cpu", torch.float64)
    torch.testing.assert_close(v, want_v, rtol=1e-10, atol=1e-12)
    assert torch.isfinite(v).all()
    for g, wg in zip(grads, want_g):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, wg, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_lm_head_calls()))
def test_lm_head_losses_compile_fullgraph_equal_eager(name):
    arrays, options = _lm_head_calls()[name]
    want_v, want_g = _lm_head_call(name, arrays, options, "cpu", torch.float64)
    loss = getattr(lk, name)
    ts = []
    for n, a in zip(loss.inputs, arrays):
        a = np.asarray(a)
        t = torch.tensor(a, dtype=torch.float64 if a.dtype.kind == "f" else None)
        ts.append(t.requires_grad_() if n in loss.differentiable else t)
    torch._dynamo.reset()

    def f(*xs):
        v = loss(*xs, **options)
        return (v * torch.linspace(0.5, 1.5, v.numel(), dtype=v.dtype).reshape(v.shape)).sum()

    torch.compile(f, fullgraph=True)(*ts).backward()
    for g, wg in zip([t.grad for t in ts if t.requires_grad], want_g):
        torch.testing.assert_close(g, wg, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
class TestCuda:
    """On a GPU: every case, forward and backward, with CUDA's synchronisation debug mode
    set to raise, equal to the independent references computed on the CPU."""

    @pytest.fixture(autouse=True)
    def _no_synchronisation(self):
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")

    def test_every_case_on_the_device_without_synchronising(self):
        # one test for all cases (a machine without CUDA reports one skip, not hundreds)
        failed = []
        for case in CASES:
            try:
                self._one_case(case)
            except Exception as exc:  # collected: every failing case is reported
                failed.append(f"{case.id}: {type(exc).__name__}: {exc}"[:300])
            finally:
                torch.cuda.set_sync_debug_mode("error")
        assert not failed, "\n".join(failed)

    @staticmethod
    def _one_case(case):
        arrays = case.inputs(seed=5)
        torch.cuda.set_sync_debug_mode("default")
        ref_v, ref_g = _reference(case, arrays, "mean")
        ts = _device_tensors(case, arrays, "cuda", torch.float64)
        opts = _device_options(case.options, "cuda", torch.float64)
        torch.cuda.set_sync_debug_mode("error")
        v = case.loss(*ts, **opts)
        assert v.device.type == "cuda" and type(v.grad_fn).__name__ == CLOSED_FORM
        v.backward()
        torch.cuda.set_sync_debug_mode("default")
        torch.testing.assert_close(v.detach().cpu(), ref_v, rtol=case.rtol64, atol=1e-12)
        for name, ri in zip(case.loss.differentiable, ref_g):
            gi = ts[case.loss.inputs.index(name)].grad
            assert gi is not None and gi.device.type == "cuda", name
            torch.testing.assert_close(gi.cpu(), ri, rtol=case.rtol64, atol=1e-12, msg=name)

    @pytest.mark.parametrize("name", sorted(_lm_head_calls()))
    def test_lm_head_losses_on_the_device_without_synchronising(self, name):
        arrays, options = _lm_head_calls(poisoned=True)[name]
        want_v, want_g = _lm_head_call(name, arrays, options, "cpu", torch.float64)
        v, grads = _lm_head_call(name, arrays, options, "cuda", torch.float64)
        torch.cuda.set_sync_debug_mode("default")
        torch.testing.assert_close(v.cpu(), want_v, rtol=1e-10, atol=1e-12)
        for g, wg in zip(grads, want_g):
            torch.testing.assert_close(g.cpu(), wg, rtol=1e-10, atol=1e-12)

    def test_backward_on_the_device_equals_f_cross_entropy(self):
        z = torch.randn(16, 7, device="cuda", requires_grad=True)
        y = torch.randint(0, 7, (16,), device="cuda")
        v = lk.softmax_cross_entropy(z, y)
        assert v.device.type == "cuda"
        v.backward()
        z2 = z.detach().clone().requires_grad_()
        F.cross_entropy(z2, y).backward()
        torch.testing.assert_close(z.grad, z2.grad)

    def test_a_bad_label_on_the_device_is_nan_not_an_error(self):
        z = torch.randn(3, 4, device="cuda", requires_grad=True)
        v = lk.softmax_cross_entropy(z, torch.tensor([0, 1, 4], device="cuda"))
        v.backward()
        torch.cuda.set_sync_debug_mode("default")
        assert torch.isnan(v).item() and torch.isnan(z.grad).all().item()


def test_retained_graph_backward_twice_accumulates_twice():
    # the saved gradient is handed to autograd as it is when the upstream gradient is 1:
    # a second backward must still see it unchanged
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0])
    v = lk.softmax_cross_entropy(z, y)
    v.backward(retain_graph=True)
    first = z.grad.clone()
    v.backward(retain_graph=True)
    v.backward()
    torch.testing.assert_close(z.grad, 3 * first)
    expected = (torch.softmax(z.detach(), -1) - F.one_hot(y, 3)) / 4
    torch.testing.assert_close(first, expected)
