"""How every loss takes its inputs and options: NumPy scalars as options, array-likes of
every input, the type check of every option whatever the variant, messages that name the
loss and the argument, and a real signature for ``inspect``, ``help()`` and IDEs.

Expected values come from the torch references of ``loss_cases`` (never from losskit);
the signature is checked against each loss's own numpydoc ``Parameters`` section.
"""

from __future__ import annotations

import inspect
import numbers
import pydoc
import re

import numpy as np
import pytest

import losskit as lk
from loss_cases import CASE_IDS, CASES

torch = pytest.importorskip("torch")

# one case per loss, the first registered (its options are the loss's typical ones)
FIRST: dict[str, object] = {}
for _c in CASES:
    FIRST.setdefault(_c.loss.name, _c)
ONE_CASE = list(FIRST.values())
ONE_IDS = list(FIRST)


def _torch_value(case, arrays, reduction="mean"):
    ts = [torch.tensor(a, dtype=torch.float64) if np.asarray(a).dtype.kind == "f"
          else torch.as_tensor(a, dtype=torch.int64) for a in arrays]
    return case.torch_ref(*ts, reduction, torch).numpy()


def _integer_options(case) -> dict:
    """Every integer-valued option of ``case`` (its own or the loss's default), plus the
    integer options whose default None can be given without changing the value."""
    loss = case.loss
    defaults = loss.option_defaults()
    found = {}
    for name, default in {**defaults, **case.options}.items():
        value = case.options.get(name, default)
        if isinstance(value, int) and not isinstance(value, bool):
            found[name] = value
    labels = [a for a in case.inputs() if np.asarray(a).dtype.kind in "iu"]
    if "ignore_index" in defaults and "ignore_index" not in found and labels:
        found["ignore_index"] = -12345  # no label equals it: the value is unchanged
    if "chunk_size" in defaults and "chunk_size" not in found:
        found["chunk_size"] = 2
    return found


INTEGER_CASES = [c for c in CASES if _integer_options(c)]


@pytest.mark.parametrize("kind", [np.int64, np.int32, np.intp, np.uint8])
@pytest.mark.parametrize("case", INTEGER_CASES, ids=[c.id for c in INTEGER_CASES])
def test_numpy_integer_scalars_are_accepted_as_options(case, kind):
    ints = _integer_options(case)
    if kind is np.uint8 and any(v < 0 for v in ints.values()):
        ints = {k: v for k, v in ints.items() if v >= 0}
        if not ints:
            pytest.skip("only negative integer options")
    arrays = case.inputs()
    options = {**case.options, **{k: kind(v) for k, v in ints.items()}}
    value, grad = case.loss.value_and_grad(*arrays, **options)
    np.testing.assert_allclose(value, _torch_value(case, arrays), rtol=case.rtol64,
                               atol=1e-12)
    assert grad.shape == np.shape(arrays[0])


class _MyInt(numbers.Integral):
    """A user's own Integral (as ``numbers.Integral`` allows): only ``__index__`` and
    ``__int__`` are needed."""

    def __init__(self, v):
        self.v = v

    def __index__(self):
        return self.v

    __int__ = __index__

    # the abstract methods of numbers.Integral, unused here
    def __abs__(self): raise NotImplementedError
    __add__ = __and__ = __ceil__ = __eq__ = __floor__ = __floordiv__ = __invert__ = __abs__
    __le__ = __lshift__ = __lt__ = __mod__ = __mul__ = __neg__ = __or__ = __pos__ = __abs__
    __pow__ = __radd__ = __rand__ = __rfloordiv__ = __rlshift__ = __rmod__ = __abs__
    __rmul__ = __ror__ = __round__ = __rpow__ = __rrshift__ = __rshift__ = __abs__
    __rtruediv__ = __rxor__ = __truediv__ = __trunc__ = __xor__ = __abs__
    __hash__ = object.__hash__


@pytest.mark.parametrize("case", [c for c in ONE_CASE if _integer_options(c)],
                         ids=[c.id for c in ONE_CASE if _integer_options(c)])
def test_any_integral_is_accepted_as_an_integer_option(case):
    arrays = case.inputs()
    options = {**case.options, **{k: _MyInt(v) for k, v in _integer_options(case).items()}}
    np.testing.assert_allclose(case.loss(*arrays, **options), _torch_value(case, arrays),
                               rtol=case.rtol64, atol=1e-12)


@pytest.mark.parametrize("bad", [True, np.bool_(False), 1.0, np.float64(-1.0), "1"])
@pytest.mark.parametrize("case", [c for c in ONE_CASE if _integer_options(c)],
                         ids=[c.id for c in ONE_CASE if _integer_options(c)])
def test_bools_floats_and_strings_are_not_integer_options(case, bad):
    arrays = case.inputs()
    for name in _integer_options(case):
        with pytest.raises(TypeError, match=f"`{name}`"):
            case.loss(*arrays, **{**case.options, name: bad})


def test_numpy_integer_axis_of_the_primitives():
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    expected = torch.softmax(torch.tensor(x), dim=-1).numpy()
    np.testing.assert_allclose(lk.softmax(x, axis=np.int64(-1)), expected, rtol=1e-12)
    np.testing.assert_allclose(lk.log_softmax(x, axis=np.int32(1)), np.log(expected),
                               rtol=1e-12)


def test_numpy_integer_options_on_torch_and_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    z = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [0.1, 0.2, 3.0]])
    y = np.array([0, -100, 2])
    ref = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y),
                                            ignore_index=-100).numpy()
    options = dict(axis=np.int64(-1), ignore_index=np.int64(-100))
    got_t = lk.softmax_cross_entropy(torch.tensor(z, requires_grad=True), torch.tensor(y),
                                     **options)
    got_j = lk.softmax_cross_entropy(jnp.asarray(z), jnp.asarray(y), **options)
    np.testing.assert_allclose(got_t.detach().numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(got_j), ref, rtol=1e-6)


# ------------------------------------------------------------------ array-likes of every input
@pytest.mark.parametrize("case", ONE_CASE, ids=ONE_IDS)
def test_every_input_may_be_a_nested_list(case):
    arrays = case.inputs()
    lists = tuple(np.asarray(a).tolist() for a in arrays)
    value, grads = case.loss.value_and_grad(*lists, wrt="all", **case.options)
    np.testing.assert_allclose(value, _torch_value(case, arrays), rtol=case.rtol64,
                               atol=1e-12)
    for g, name in zip(grads, case.loss.differentiable):
        assert np.shape(g) == np.shape(arrays[case.loss.inputs.index(name)]), name


def test_linear_cross_entropy_takes_lists():
    rng = np.random.default_rng(0)
    h, W, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
    y = np.array([0, 3, 1, 2, 2])
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(h) @ torch.tensor(W).T + torch.tensor(b), torch.tensor(y)).numpy()
    got = lk.linear_cross_entropy(h.tolist(), W.tolist(), y.tolist(), b.tolist(),
                                  chunk_size=np.int64(2))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    g = lk.linear_cross_entropy.grad(h.tolist(), W, y, b)
    assert g.shape == (5, 3)


@pytest.mark.parametrize("case", ONE_CASE, ids=ONE_IDS)
def test_a_ragged_input_names_the_loss_and_the_argument(case):
    arrays = list(case.inputs())
    for i, name in enumerate(case.loss.inputs):
        a = np.asarray(arrays[i])
        if a.ndim == 0 or a.size < 2:
            continue
        ragged = a.tolist()
        ragged[0] = [ragged[0], ragged[0]]  # one entry nested deeper than the rest
        bad = arrays[:i] + [ragged] + arrays[i + 1:]
        with pytest.raises(ValueError) as err:
            case.loss(*bad, **case.options)
        msg = str(err.value)
        assert f"`{name}`" in msg and case.loss.name in msg and "ragged" in msg, msg


@pytest.mark.parametrize("case", ONE_CASE, ids=ONE_IDS)
def test_strings_name_the_loss_and_the_argument(case):
    arrays = list(case.inputs())
    for i, name in enumerate(case.loss.inputs):
        bad = arrays[:i] + ["abc"] + arrays[i + 1:]
        with pytest.raises(TypeError) as err:
            case.loss(*bad, **case.options)
        msg = str(err.value)
        assert f"`{name}`" in msg and case.loss.name in msg, msg


def test_mse_of_strings_says_what_was_expected():
    with pytest.raises(TypeError, match=r"`prediction` of mse must be numeric array-like .*; got a string"):
        lk.mse("abc", "abd")


# ------------------------------------------------------------------ every option type-checked
def _option_probes(default):
    """Values that no option of this default's kind accepts."""
    if isinstance(default, bool):
        return ["yes", 1.5]
    if isinstance(default, str):
        return ["no-such-choice", 3]
    if isinstance(default, (int, float)):
        return ["a", True, {"x": 1}]
    return ["a", {"x": 1}]  # options defaulting to None: a string or dict is never valid


def _variants():
    """Every case, and for the losses with a variant switch, every variant: an option the
    chosen variant ignores must still be checked."""
    out = []
    for c in CASES:
        out.append((c, dict(c.options)))
    for version in (1, 2, 3):
        out.append((FIRST["wiou_loss"], {"version": version}))
    return out


VARIANTS = _variants()


@pytest.mark.parametrize("case,options", VARIANTS,
                         ids=[f"{c.id}-{sorted(o.items())}" for c, o in VARIANTS])
def test_every_option_is_type_checked_whatever_the_variant(case, options):
    arrays = case.inputs()
    for name, default in case.loss.option_defaults().items():
        if name in ("image_size",) and default is None:
            probes = ["a", {"x": 1}]
        else:
            probes = _option_probes(default)
        for bad in probes:
            with pytest.raises((TypeError, ValueError), match=f"`{name}`"):
                case.loss(*arrays, **{**options, name: bad})


def test_wiou_iou_mean_is_checked_in_version_1():
    boxes = np.array([[0.0, 0.0, 2.0, 2.0]])
    with pytest.raises(TypeError, match="`iou_mean`"):
        lk.wiou_loss(boxes, boxes + 0.5, iou_mean="a")


@pytest.mark.parametrize("name", ["pos_weight"])
def test_a_bool_is_not_a_weight(name):
    with pytest.raises(TypeError, match=f"`{name}`"):
        lk.sigmoid_binary_cross_entropy(np.zeros(3), np.ones(3), **{name: True})


def test_a_bool_is_not_a_focal_alpha():
    with pytest.raises(TypeError, match="`alpha`"):
        lk.softmax_focal_loss(np.zeros((2, 3)), np.array([0, 1]), alpha=True)


# ------------------------------------------------------------------ real signatures
def _documented_parameters(loss) -> list[str]:
    """Parameter names in the numpydoc ``Parameters`` section of the loss's docstring."""
    doc = inspect.getdoc(type(loss)) or ""
    m = re.search(r"^Parameters\n-+\n(.*?)(?:^\S[^\n]*\n-+\n|\Z)", doc, flags=re.S | re.M)
    assert m, f"{loss.name}: no Parameters section"
    names = []
    for line in m.group(1).splitlines():
        mm = re.match(r"^(\w+(?:\s*,\s*\w+)*)\s*(?::|$)", line)
        if mm and not line.startswith(" "):
            names += [n.strip() for n in mm.group(1).split(",")]
    return names


@pytest.mark.parametrize("loss", lk.catalog(), ids=[x.name for x in lk.catalog()])
def test_every_loss_has_a_real_signature(loss):
    sig = inspect.signature(loss)
    params = list(sig.parameters.values())
    n_in = len(loss.inputs)
    assert [p.name for p in params[:n_in]] == list(loss.inputs)
    # the inputs are positional (by name too where the loss allows it, as
    # linear_cross_entropy's optional `bias`)
    assert all(p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                          inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params[:n_in])
    keywords = {p.name: p for p in params[n_in:]}
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in keywords.values())
    options = loss.option_defaults()
    assert set(keywords) == set(options) | {"reduction", "sample_weight", "validate"}
    for name, default in options.items():
        assert keywords[name].default == default or (default != default), name
    # "mean" everywhere but where a loss documents another (linear_token_logprobs: "none")
    assert keywords["reduction"].default == loss._defaults.get("reduction", "mean")
    # the signature agrees with the docstring: every keyword and input is documented
    documented = set(_documented_parameters(loss))
    missing = (set(keywords) | set(loss.inputs)) - documented - {"validate"}
    assert not missing, f"{loss.name}: not in its docstring's Parameters: {sorted(missing)}"
    # and with the call: binding the signature and calling agree
    case = FIRST.get(loss.name)
    if case is not None:
        bound = sig.bind(*case.inputs(), **case.options)
        np.testing.assert_allclose(loss(*bound.args, **bound.kwargs),
                                   _torch_value(case, case.inputs()), rtol=case.rtol64,
                                   atol=1e-12)


@pytest.mark.parametrize("loss", lk.catalog(), ids=[x.name for x in lk.catalog()])
def test_grad_and_value_and_grad_signatures(loss):
    for method, extra in ((loss.grad, {"wrt", "out"}), (loss.value_and_grad, {"wrt", "out"})):
        sig = inspect.signature(method)
        names = list(sig.parameters)
        assert names[:len(loss.inputs)] == list(loss.inputs)
        assert set(names[len(loss.inputs):]) == (set(loss.option_defaults()) | extra
                                                  | {"reduction", "sample_weight",
                                                     "validate"})


def test_help_shows_the_inputs_and_options():
    text = pydoc.render_doc(lk.huber, renderer=pydoc.plaintext)
    assert re.search(r"__call__\(self, prediction, target, /, \*, delta=1\.0", text), text[:2000]
    assert re.search(r"grad\(self, prediction, target, /, \*, wrt=None, delta=1\.0", text)


def test_a_copy_with_defaults_shows_them_in_its_signature():
    sig = inspect.signature(type(lk.huber)(delta=2.5, reduction="sum"))
    assert sig.parameters["delta"].default == 2.5
    assert sig.parameters["reduction"].default == "sum"


# ------------------------------------------------------------------ family names
@pytest.mark.parametrize("spelling", ["metric learning", "Metric-Learning", " metric_learning"])
def test_a_family_may_be_named_as_the_readme_writes_it(spelling):
    names = {loss.name for loss in lk.catalog(spelling)}
    assert names >= {"contrastive", "triplet_margin", "margin_ranking", "cosine_embedding",
                     "batch_triplet_loss", "batch_contrastive_loss", "multi_similarity_loss",
                     "circle_loss", "arcface_loss", "cosface_loss"}
    assert "mse" not in names


def test_the_command_line_accepts_the_family_with_a_space(capsys):
    from losskit.cli import main

    assert main(["list", "--family", "metric learning"]) in (0, None)
    out = capsys.readouterr().out
    assert "triplet_margin" in out and "mse" not in out.split()


def test_an_unknown_family_lists_the_families():
    with pytest.raises(ValueError, match="metric_learning"):
        lk.catalog("metric")
