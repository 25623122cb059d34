"""losskit on JAX arrays: closed-form custom_vjp rules under grad, jit, vmap and scan.

References are independent: ``jax.grad`` of each case's JAX/Optax reference where the
registry has one, torch autograd of its PyTorch reference otherwise (``loss_cases``),
Optax's own losses, and loops against ``vmap``.
"""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk
from loss_cases import CASE_IDS, CASES, ONE_PER_LOSS

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
optax = pytest.importorskip("optax")
import losskit.jax  # noqa: E402  (after the skip: it imports jax)
torch = pytest.importorskip("torch")


def _is_float(a):
    return np.asarray(a).dtype.kind == "f"


def _options(options):
    return {k: jnp.asarray(v) if isinstance(v, list) else v for k, v in options.items()}


def _torch_reference(case, arrays, reduction, upstream=None):
    ts = []
    for name, a in zip(case.loss.inputs, arrays):
        if _is_float(a):
            ts.append(torch.tensor(a, dtype=torch.float64,
                                   requires_grad=name in case.loss.differentiable))
        else:
            ts.append(torch.as_tensor(a, dtype=torch.int64))
    v = case.torch_ref(*ts, reduction, torch)
    w = None if upstream is None else torch.as_tensor(np.asarray(upstream))
    (v if w is None else (v * w).sum()).backward()
    return v.detach().numpy(), [ts[case.loss.inputs.index(n)].grad.numpy()
                                for n in case.loss.differentiable]


def _diff_positions(case):
    return [i for i, n in enumerate(case.loss.inputs) if n in case.loss.differentiable]


def _jax_grads(case, arrays, reduction, upstream=None, jit=False):
    """Value and jax.grad of losskit for every differentiable input, the targets closed over."""
    opts = _options(case.options)
    diff = _diff_positions(case)
    fixed = [jnp.asarray(a) for a in arrays]

    def f(*xs):
        full = list(fixed)
        for i, x in zip(diff, xs):
            full[i] = x
        v = case.loss(*full, reduction=reduction, **opts)
        return v if upstream is None else (v * upstream).sum()

    fn = jax.value_and_grad(f, argnums=tuple(range(len(diff))))
    if jit:
        fn = jax.jit(fn)
    v, g = fn(*(fixed[i] for i in diff))
    return np.asarray(v), [np.asarray(x) for x in g]


def _jax_grads_of_every_reduction(case, arrays, upstream):
    """Value and jax.grad of losskit for "mean", "sum" and "none" (contracted with
    ``upstream``, the cotangent of the unreduced loss) in ONE jitted function, the targets
    closed over: one compilation per case."""
    opts = _options(case.options)
    diff = _diff_positions(case)
    fixed = [jnp.asarray(a) for a in arrays]
    up = jnp.asarray(upstream)

    def loss_of(reduction):
        def f(*xs):
            full = list(fixed)
            for i, x in zip(diff, xs):
                full[i] = x
            v = case.loss(*full, reduction=reduction, **opts)
            return (v * up).sum() if reduction == "none" else v
        return jax.value_and_grad(f, argnums=tuple(range(len(diff))))

    fn = jax.jit(lambda *xs: tuple(loss_of(r)(*xs) for r in ("mean", "sum", "none")))
    out = fn(*(fixed[i] for i in diff))
    return [(np.asarray(v), [np.asarray(x) for x in g]) for v, g in out]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_grad_under_jit_with_captured_targets_equals_the_reference(case):
    """Under jit with the targets captured: the "mean" and "sum" values and gradients, and
    the gradient of "none" contracted with a non-uniform cotangent (each example's own
    upstream weight), against torch autograd of the case's reference."""
    arrays = case.inputs(seed=3)
    shape = np.shape(case.loss(*arrays, reduction="none", **case.options))
    upstream = np.linspace(-1.0, 2.0, int(np.prod(shape))).reshape(shape)
    got = _jax_grads_of_every_reduction(case, arrays, upstream)
    for reduction, (v, g) in zip(("mean", "sum", "none"), got):
        ref_v, ref_g = _torch_reference(case, arrays, reduction,
                                        upstream if reduction == "none" else None)
        if reduction != "none":
            np.testing.assert_allclose(v, ref_v, rtol=case.rtol64, atol=1e-12,
                                       err_msg=reduction)
        for name, gi, ri in zip(case.loss.differentiable, g, ref_g):
            np.testing.assert_allclose(gi, ri, rtol=case.rtol64, atol=1e-12,
                                       err_msg=f"{reduction}: {name}")


JAX_CASES = [c for c in CASES if c.jax_ref is not None]


@pytest.mark.parametrize("case", JAX_CASES, ids=[c.id for c in JAX_CASES])
def test_grad_equals_jax_grad_of_the_optax_reference(case):
    arrays = case.inputs(seed=5)
    diff = _diff_positions(case)
    ts = [jnp.asarray(a) for a in arrays]

    def ref(*xs):
        full = list(ts)
        for i, x in zip(diff, xs):
            full[i] = x
        return case.jax_ref(*full, "mean")

    ref_g = jax.grad(ref, argnums=tuple(range(len(diff))))(*(ts[i] for i in diff))
    _, g = _jax_grads(case, arrays, "mean")
    for gi, ri in zip(g, ref_g):
        np.testing.assert_allclose(gi, np.asarray(ri), rtol=case.rtol64, atol=1e-12)


def _primitives(jaxpr):
    """The primitive names of ``jaxpr``, the bodies of its ``jit`` calls inlined (losskit
    compiles its closed form as one jit call, which XLA inlines into the caller's)."""
    names = []
    for e in jaxpr.eqns:
        if e.primitive.name == "jit":
            names += _primitives(e.params["jaxpr"].jaxpr)
        else:
            names.append(e.primitive.name)
    return names


def test_the_backward_is_one_multiplication_not_the_forward():
    z = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    y = jnp.array([0, 1, 2, 0])
    jaxpr = jax.make_jaxpr(lambda z: lk.softmax_cross_entropy(z, y))(z)
    assert _primitives(jaxpr.jaxpr) == ["custom_vjp_call"]
    # under grad: the forward (value and gradient together) and one multiplication
    grad_eqns = _primitives(jax.make_jaxpr(
        jax.grad(lambda z: lk.softmax_cross_entropy(z, y)))(z).jaxpr)
    assert grad_eqns[-1] == "mul" and "custom_vjp_call" not in grad_eqns
    # mae at the kink: the documented subgradient 0, not autodiff's 1
    g = jax.grad(lambda x: lk.mae(x, jnp.zeros(3)))(jnp.zeros(3))
    np.testing.assert_array_equal(np.asarray(g), np.zeros(3))


def test_numpy_targets_and_weights_with_jax_predictions():
    z = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)))
    y = np.array([0, 1, 2, 1, 0])
    w = np.array([1.0, 2.0, 0.0, 1.0, 1.0])
    v = jax.jit(lambda z: lk.softmax_cross_entropy(z, y, sample_weight=w))(z)
    ref = (optax.softmax_cross_entropy_with_integer_labels(z, jnp.asarray(y)) * w).sum() / w.sum()
    np.testing.assert_allclose(float(v), float(ref), rtol=1e-12)


def test_invalid_values_under_jit_are_nan_and_eager_calls_raise():
    z = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4)))
    bad = jnp.array([0, 1, 9])
    assert np.isnan(float(jax.jit(lambda z: lk.softmax_cross_entropy(z, bad))(z)))
    g = jax.jit(jax.grad(lambda z: lk.softmax_cross_entropy(z, bad)))(z)
    assert np.isnan(np.asarray(g)).all()
    with pytest.raises(ValueError, match="class indices"):
        lk.softmax_cross_entropy(z, bad)
    t = jnp.full((3, 4), 1.5)
    assert np.isnan(float(jax.jit(lambda z: lk.sigmoid_binary_cross_entropy(z, t))(z)))
    # one entry out of range, below or above (the check is a min and a max), gradient too
    for v in (-0.25, 1.25):
        t1 = jnp.full((3, 4), 0.5).at[1, 2].set(v)
        f = jax.jit(jax.value_and_grad(lambda z: lk.sigmoid_binary_cross_entropy(z, t1)))
        value, grad = f(z)
        assert np.isnan(float(value)) and np.isnan(np.asarray(grad)).all()
        assert np.isnan(float(lk.sigmoid_binary_cross_entropy(
            np.asarray(z), np.asarray(t1), validate=False)))  # NumPy, unchecked: the same rule
    # an open lower bound (gamma deviance's targets > 0): 0 is out, a tiny target is in
    mu = jnp.zeros(3)
    gamma = jax.jit(lambda m, y: lk.gamma_deviance(m, y))
    assert np.isnan(float(gamma(mu, jnp.array([1.0, 0.0, 2.0]))))
    assert np.isfinite(float(gamma(mu, jnp.array([1.0, 1e-30, 2.0]))))
    boxes = jnp.array([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 1.0, 1.0]])  # second: x2 < x1
    good = jnp.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert np.isnan(float(jax.jit(lambda b: lk.giou_loss(b, good))(boxes)))
    # a valid batch under jit is finite and equal to the eager value
    y = jnp.array([0, 1, 3])
    np.testing.assert_allclose(float(jax.jit(lambda z: lk.softmax_cross_entropy(z, y))(z)),
                               float(lk.softmax_cross_entropy(z, y)), rtol=1e-12)
    # validate=False on an eager call: the same NaN rule
    assert np.isnan(float(lk.softmax_cross_entropy(z, bad, validate=False)))


def _count_pipeline_runs(monkeypatch, loss):
    """How often ``loss`` runs its Python pipeline (traced or eager), counted in a list."""
    runs = []
    pipeline = loss._pipeline

    def counted(*args, **kwargs):
        runs.append(1)
        return pipeline(*args, **kwargs)

    monkeypatch.setattr(loss, "_pipeline", counted)
    return runs


def test_eager_calls_run_compiled_and_keep_their_errors(monkeypatch):
    loss = lk.softmax_cross_entropy
    runs = _count_pipeline_runs(monkeypatch, loss)
    rng = np.random.default_rng(12)
    for seed in range(3):  # new values, same shapes: traced once, then the executable
        z = jnp.asarray(rng.normal(size=(6, 5)))
        y = jnp.asarray(rng.integers(0, 5, 6))
        v, g = loss.value_and_grad(z, y)
        ref, ref_g = jax.value_and_grad(
            lambda z: optax.softmax_cross_entropy_with_integer_labels(z, y).mean())(z)
        np.testing.assert_allclose(float(v), float(ref), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(g), np.asarray(ref_g), rtol=1e-12, atol=1e-15)
    assert len(runs) == 1
    # an invalid label: NaN in the executable, so the call runs again eagerly and raises
    with pytest.raises(ValueError, match="class indices"):
        loss.value_and_grad(z, jnp.asarray([0, 1, 2, 3, 4, 7]))
    # a NaN logit is no error: the eager run confirms the NaN
    v = loss(z.at[0, 0].set(jnp.nan), y)
    assert np.isnan(float(v))
    # jax.grad outside jit runs the closed form compiled too: traced by the first call only
    counts = []
    for _ in range(2):
        g = jax.grad(lambda z: loss(z, y, reduction="sum"))(z)
        counts.append(len(runs))
        np.testing.assert_allclose(np.asarray(g), np.asarray(
            jax.nn.softmax(z) - jax.nn.one_hot(y, 5, dtype=z.dtype)), rtol=1e-12, atol=1e-15)
    assert counts[1] == counts[0]


def test_eager_call_that_cannot_be_traced_runs_eagerly(monkeypatch):
    # an option JAX cannot trace as a Python number (a concrete array used for a shape):
    # the eager pipeline answers, and the next call goes there directly
    loss = lk.softmax_cross_entropy
    z = jnp.asarray(np.random.default_rng(13).normal(size=(4, 3)))
    y = jnp.asarray([0, 1, 2, 0])
    calls = 0

    def fails_when_traced(*args, **kwargs):
        nonlocal calls
        calls += 1
        if any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(args)):
            raise jax.errors.ConcretizationTypeError(args[0][0], "test")
        return pipeline(*args, **kwargs)

    pipeline = loss._pipeline
    monkeypatch.setattr(loss, "_pipeline", fails_when_traced)
    ref = optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
    for _ in range(2):
        np.testing.assert_allclose(float(loss(z, y)), float(ref), rtol=1e-12)
    assert calls == 3  # traced once (failed), then eager twice


def test_vmap_of_grad_gives_per_example_gradients():
    rng = np.random.default_rng(3)
    z = jnp.asarray(rng.normal(size=(6, 4)))
    y = jnp.asarray(rng.integers(0, 4, 6))
    per = jax.vmap(jax.grad(lambda zi, yi: lk.softmax_cross_entropy(zi[None], yi[None])))(z, y)
    loop = np.stack([np.asarray(jax.grad(
        lambda zi: optax.softmax_cross_entropy_with_integer_labels(zi[None], y[i:i + 1]).mean())(
        z[i])) for i in range(6)])
    np.testing.assert_allclose(np.asarray(per), loop, rtol=1e-12, atol=1e-15)


def test_scan_body_with_a_loss_and_captured_targets():
    targets = jnp.asarray(np.random.default_rng(4).normal(size=(5, 3)))

    def total(xs):
        def body(c, xt):
            x, t = xt
            return c + lk.huber(x, t, delta=0.5), None
        return jax.lax.scan(body, 0.0, (xs, targets))[0]

    xs = jnp.zeros((5, 3))
    g = jax.jit(jax.grad(total))(xs)
    ref = jax.grad(lambda xs: (optax.huber_loss(xs, targets, delta=0.5).mean(-1)).sum())(xs)
    np.testing.assert_allclose(np.asarray(g), np.asarray(ref), rtol=1e-12)


def test_linear_cross_entropy_grads_for_hidden_weight_and_bias():
    rng = np.random.default_rng(5)
    h, w, b = (jnp.asarray(rng.normal(size=s)) for s in ((8, 5), (11, 5), (11,)))
    y = jnp.asarray(rng.integers(0, 11, 8))
    g = jax.jit(jax.grad(lambda h, w, b: lk.linear_cross_entropy(h, w, y, b),
                         argnums=(0, 1, 2)))(h, w, b)
    ref = jax.grad(lambda h, w, b: optax.softmax_cross_entropy_with_integer_labels(
        h @ w.T + b, y).mean(), argnums=(0, 1, 2))(h, w, b)
    for a, r in zip(g, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=1e-10, atol=1e-14)


@pytest.mark.slow
def test_optax_training_on_digits_matches_optax_loss():
    sklearn = pytest.importorskip("sklearn.datasets")
    X, y = sklearn.load_digits(return_X_y=True)
    X = jnp.asarray(X / 16.0)
    y = jnp.asarray(y)

    def train(loss_fn):
        key = jax.random.PRNGKey(0)
        k1, k2 = jax.random.split(key)
        params = {"w1": jax.random.normal(k1, (64, 32)) * 0.1, "b1": jnp.zeros(32),
                  "w2": jax.random.normal(k2, (32, 10)) * 0.1, "b2": jnp.zeros(10)}
        opt = optax.sgd(0.5, momentum=0.9)
        state = opt.init(params)

        def objective(p, xb, yb):
            logits = jnp.tanh(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
            return loss_fn(logits, yb)

        @jax.jit
        def step(p, s, xb, yb):
            loss, g = jax.value_and_grad(objective)(p, xb, yb)
            updates, s = opt.update(g, s, p)
            return optax.apply_updates(p, updates), s, loss

        for i in range(200):
            idx = (jnp.arange(64) + 64 * i) % X.shape[0]
            params, state, _ = step(params, state, X[idx], y[idx])
        return params, float(objective(params, X, y))

    ours, our_loss = train(lk.softmax_cross_entropy)
    theirs, their_loss = train(
        lambda z, t: optax.softmax_cross_entropy_with_integer_labels(z, t).mean())
    assert our_loss < np.log(10) / 3
    assert abs(our_loss - their_loss) < 1e-5
    for k in ours:
        np.testing.assert_allclose(np.asarray(ours[k]), np.asarray(theirs[k]), atol=1e-5)


def test_linear_cross_entropy_under_grad_needs_no_more_memory_than_its_closed_form():
    n, d, v = 4096, 256, 32768  # the size; compiled only, never run
    h, w = jnp.zeros((n, d), jnp.float32), jnp.zeros((v, d), jnp.float32)
    y = jnp.zeros((n,), jnp.int32)

    def temp(f):
        analysis = jax.jit(f).lower(h, w).compile().memory_analysis()
        if analysis is None:
            pytest.skip("this JAX build reports no memory analysis")
        return analysis.temp_size_in_bytes

    by_grad = temp(jax.grad(lambda h, w: lk.linear_cross_entropy(h, w, y), argnums=(0, 1)))
    closed = temp(lambda h, w: lk.linear_cross_entropy.grad(h, w, y, wrt=("hidden", "weight")))
    naive = temp(jax.grad(lambda h, w: optax.softmax_cross_entropy_with_integer_labels(
        h @ w.T, y).mean(), argnums=(0, 1)))
    assert by_grad <= closed * 1.05 + (1 << 20)
    assert by_grad < naive / 4  # the N x V logits are never held


@pytest.mark.parametrize("case", [c for c in CASES if c.on_every_backend],
                         ids=lambda c: c.id)
def test_a_loss_marked_elementwise_has_per_element_gradients(case):
    """The JAX adapter recomputes an elementwise loss's gradient in the backward pass
    (losskit.jax._elementwise), which is right for any loss but pays only for elementwise
    ones; the mark must match the math: changing one element of the prediction changes
    that element's gradient only (the "sum" reduction, so that no mean over kept elements
    couples them)."""
    from losskit.jax import _elementwise

    arrays = case.make(np.random.default_rng(3))
    z = np.asarray(arrays[0], dtype=np.float64)
    marked = _elementwise(case.loss)
    if z.size < 2:
        pytest.skip("one element")
    g0 = case.loss.grad(*arrays, reduction="sum", **case.options)
    moved = list(arrays)
    z1 = z.copy()
    z1.flat[0] += 0.1 * (abs(z.flat[0]) + 0.1)
    moved[0] = z1
    g1 = case.loss.grad(*moved, reduction="sum", **case.options)
    others_same = np.array_equal(np.asarray(g0).ravel()[1:], np.asarray(g1).ravel()[1:])
    if marked:
        assert others_same, f"{case.loss.name} is marked elementwise but is not"
    elif case.loss.name in ("softmax_cross_entropy", "softmax_kl_divergence", "triplet_margin",
                            "dice_loss", "ranking_softmax_loss"):
        assert not others_same  # a class axis, a pair or a sample couples the elements


@pytest.mark.parametrize("name,ours,theirs", [
    ("huber", lambda z, t: lk.huber(z, t), lambda z, t: optax.huber_loss(z, t).mean()),
    ("hinge", lambda z, t: lk.hinge(z, 2 * t - 1),
     lambda z, t: optax.hinge_loss(z, 2 * t - 1).mean()),
    ("sigmoid_focal", lambda z, t: lk.sigmoid_focal_loss(z, t),
     lambda z, t: optax.losses.sigmoid_focal_loss(z, t, alpha=0.25).mean()),
    ("sigmoid_bce", lambda z, t: lk.sigmoid_binary_cross_entropy(z, t),
     lambda z, t: optax.sigmoid_binary_cross_entropy(z, t).mean()),
    ("log_cosh", lambda z, t: lk.log_cosh(z, t), lambda z, t: optax.log_cosh(z, t).mean()),
])
def test_elementwise_losses_need_no_more_xla_temporaries_than_optax(name, ours, theirs):
    """jit(value_and_grad) at 1M float32 elements, compiled only: the gradient computed in
    the backward pass (losskit.jax._elementwise) holds no more temporaries than autodiff
    through Optax's loss, with the target an argument and closed over (sigmoid BCE's
    deferred [0, 1] target check is a min and a max of the target, no mask)."""
    n = 1_000_000
    z = jnp.zeros((n,), jnp.float32)
    t = (jnp.arange(n) % 2).astype(jnp.float32)

    def temp(f, *args):
        analysis = jax.jit(jax.value_and_grad(f)).lower(*args).compile().memory_analysis()
        if analysis is None:
            pytest.skip("this JAX build reports no memory analysis")
        return analysis.temp_size_in_bytes

    slack = 1024  # a few scalars (the check's min and max)
    as_argument = temp(ours, z, t), temp(theirs, z, t)
    assert as_argument[0] <= as_argument[1] + slack, as_argument
    closed = temp(lambda z: ours(z, t), z), temp(lambda z: theirs(z, t), z)
    assert closed[0] <= closed[1] + slack, closed


def test_the_losses_that_keep_their_values_are_elementwise_catalog_losses():
    """Every name in losskit.jax._KEEP_VALUES is an elementwise loss of the catalog (a
    misspelt one would silently keep nothing), and each has a case below."""
    from losskit.jax import _KEEP_VALUES, _elementwise

    elementwise = {loss.name for loss in lk.catalog() if _elementwise(loss)}
    assert _KEEP_VALUES <= elementwise, _KEEP_VALUES - elementwise
    assert _KEEP_VALUES <= {c.loss.name for c in ONE_PER_LOSS}


@pytest.mark.parametrize("case", [c for c in ONE_PER_LOSS
                                  if c.loss.name in losskit.jax._KEEP_VALUES],
                         ids=lambda c: c.loss.name)
def test_kept_values_give_the_same_numbers_as_the_plain_backward(case, monkeypatch):
    """The losses whose custom VJP keeps their per-element values for the backward pass
    (losskit.jax._keeps_values: XLA then writes the gradient into the values' buffer) give
    the values and gradients of the plain recomputed backward (to an ulp or two), under
    jit, for the reductions mean and sum, with and without sample weights, with NaN in the
    prediction, and invalid weights still make the value NaN."""
    rng = np.random.default_rng(5)
    arrays = [jnp.asarray(a.astype(np.float32)) if np.asarray(a).dtype.kind == "f"
              else jnp.asarray(a) for a in case.make(rng)]
    z = arrays[0].at[(0,) * arrays[0].ndim].set(jnp.nan)
    n = arrays[0].shape[0]
    weight = jnp.asarray(rng.uniform(0.5, 2.0, size=n).astype(np.float32))
    plain = False

    def run(z, reduction, w):
        def f(z):
            return case.loss(z, *arrays[1:], reduction=reduction, sample_weight=w,
                             **case.options)
        assert losskit.jax._keeps_values(case.loss) is not plain
        return jax.jit(jax.value_and_grad(f))(z)

    for z_in in (arrays[0], z):
        for reduction in ("mean", "sum"):
            for w in (None, weight):
                kept = run(z_in, reduction, w)
                with monkeypatch.context() as m:
                    m.setattr(losskit.jax, "_keeps_values", lambda loss: False)
                    plain = True
                    other = run(z_in, reduction, w)
                    plain = False
                for a, b in zip(kept, other):  # (XLA may contract a product differently)
                    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=4e-7,
                                               atol=0, equal_nan=True)
    assert np.isfinite(np.asarray(run(arrays[0], "mean", None)[1])).all()
    bad = weight.at[0].set(-1.0)
    assert np.isnan(float(run(arrays[0], "mean", bad)[0]))


# ------------------------------------------------------------------ second order
def test_hessian_and_grad_of_grad_equal_optax():
    """The custom_vjp rules are jnp code, which JAX differentiates again: second
    derivatives through losskit equal those through Optax's losses."""
    z = jax.random.normal(jax.random.PRNGKey(0), (3, 4), dtype=jnp.float64)
    y = jnp.array([0, 2, 1])
    t = jnp.array([[0.0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 1, 1]])

    def ours_ce(a):
        return lk.softmax_cross_entropy(a, y)

    def optax_ce(a):
        return optax.softmax_cross_entropy_with_integer_labels(a, y).mean()

    def ours_focal(a):
        return lk.sigmoid_focal_loss(a, t, gamma=2.0, alpha=0.25, reduction="sum")

    def optax_focal(a):
        return optax.sigmoid_focal_loss(a, t, alpha=0.25, gamma=2.0).sum()

    # one transform per loss (each costs seconds of compilation): a Hessian of one, the
    # gradient of a penalty on the gradient of the other
    np.testing.assert_allclose(jax.hessian(ours_ce)(z), jax.hessian(optax_ce)(z),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        jax.grad(lambda a: jnp.sum(jax.grad(ours_focal)(a) ** 2))(z),
        jax.grad(lambda a: jnp.sum(jax.grad(optax_focal)(a) ** 2))(z), rtol=1e-10, atol=1e-12)
