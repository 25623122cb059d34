"""Every error path of the losses, and the documented non-errors.

Errors: the exception *type* (``TypeError`` for a wrong kind or dtype, ``ValueError`` for a
wrong shape or range) and a message that names the argument and gives both what was
expected and what came (the contract in ``api.md`` and style section 7).

Non-errors: NaN propagates, an empty batch costs 0, a batch whose targets are all ignored
costs 0 with a zero gradient, float16 stays float16 with a float16-aware clamp. Expected
numbers come from the definitions written out here with NumPy/SciPy, never from losskit.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import scipy.special as sc

import losskit as lk

torch = pytest.importorskip("torch")

N, K = 4, 3
RNG = np.random.default_rng(0)
NAN = np.nan


# every RuntimeWarning (NumPy's overflow, invalid value, ...) fails the test
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


# ------------------------------------------------------------------ valid inputs per loss
def _labels():
    return np.array([0, 1, 2, 0])


def _probs():
    return sc.softmax(RNG.normal(size=(N, K)), axis=-1)


# name -> (prediction, target) that are valid for the loss
VALID = {
    "mse": lambda: (RNG.normal(size=N), RNG.normal(size=N)),
    "l2_loss": lambda: (RNG.normal(size=N), RNG.normal(size=N)),
    "mae": lambda: (RNG.normal(size=N), RNG.normal(size=N)),
    "binary_cross_entropy": lambda: (RNG.uniform(0.1, 0.9, size=N), np.array([0.0, 1, 1, 0])),
    "sigmoid_binary_cross_entropy": lambda: (RNG.normal(size=N), np.array([0.0, 1, 1, 0])),
    "hinge": lambda: (RNG.normal(size=N), np.array([1.0, -1, 1, -1])),
    "cross_entropy": lambda: (_probs(), _labels()),
    "softmax_cross_entropy": lambda: (RNG.normal(size=(N, K)), _labels()),
    "nll_loss": lambda: (np.log(_probs()), _labels()),
    "multiclass_hinge": lambda: (RNG.normal(size=(N, K)), _labels()),
}
ELEMENTWISE = ["mse", "l2_loss", "mae", "binary_cross_entropy", "sigmoid_binary_cross_entropy",
               "hinge"]
CLASS = ["cross_entropy", "softmax_cross_entropy", "nll_loss", "multiclass_hinge"]
SOFT_CLASS = ["cross_entropy", "softmax_cross_entropy", "nll_loss"]  # accept probabilities
ALL = ELEMENTWISE + CLASS

# the loss-specific keyword options each loss documents (the contract, written out here)
OPTIONS = {
    "mse": [], "l2_loss": [], "mae": [], "binary_cross_entropy": ["label_smoothing"],
    "sigmoid_binary_cross_entropy": ["pos_weight", "label_smoothing", "ignore_index"],
    "hinge": ["margin"],
    "cross_entropy": ["axis", "class_weight", "ignore_index", "label_smoothing"],
    "softmax_cross_entropy": ["axis", "class_weight", "ignore_index", "label_smoothing",
                              "z_loss"],
    "nll_loss": ["axis", "class_weight", "ignore_index", "label_smoothing"],
    "multiclass_hinge": ["margin", "p", "variant", "axis", "class_weight", "ignore_index"],
}


def loss_of(name):
    return getattr(lk, name)


def _all_entry_points(loss):
    """The three public ways to evaluate a loss: each must validate the same way."""
    return [loss, loss.grad, loss.value_and_grad]


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_n1_prediction_vs_n_target_is_a_value_error(name):
    pred, target = VALID[name]()
    for fn in _all_entry_points(loss_of(name)):
        with pytest.raises(ValueError, match=r"^`target` must have the same shape as "
                           r"`prediction` \(4, 1\); got \(4,\); squeeze the last axis of "
                           r"`prediction` explicitly"):
            fn(pred[:, None], target)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_n_prediction_vs_n1_target_is_a_value_error(name):
    pred, target = VALID[name]()
    with pytest.raises(ValueError, match=r"^`target` must have the same shape as `prediction` "
                       r"\(4,\); got \(4, 1\); squeeze the last axis of `target`"):
        loss_of(name)(pred, target[:, None])


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_other_shape_mismatch_names_both_shapes(name):
    pred, target = VALID[name]()
    with pytest.raises(ValueError, match=r"^`target` must have the same shape as `prediction` "
                       r"\(4,\); got \(3,\)$"):
        loss_of(name)(pred, target[:3])


@pytest.mark.parametrize("name", CLASS)
def test_integer_target_of_shape_n1_is_a_value_error(name):
    pred, labels = VALID[name]()
    with pytest.raises(ValueError, match=r"^integer `target` \(class labels\) must have the shape "
                       r"of `prediction` \(4, 3\) without its class axis -1, \(4,\); "
                       r"got \(4, 1\); squeeze the last axis of `target`"):
        loss_of(name)(pred, labels[:, None])


@pytest.mark.parametrize("bad_shape", [(5,), (4, 3), (2, 2)])
@pytest.mark.parametrize("name", CLASS)
def test_integer_target_of_the_wrong_shape_is_a_value_error(name, bad_shape):
    pred, _ = VALID[name]()
    labels = np.zeros(bad_shape, dtype=np.int64)
    shape = re.escape(str(bad_shape))
    with pytest.raises(ValueError, match=r"^integer `target` \(class labels\) must have the shape "
                       rf"of `prediction` \(4, 3\) without its class axis -1, \(4,\); got {shape}$"):
        loss_of(name)(pred, labels)


@pytest.mark.parametrize("name", SOFT_CLASS)
def test_probability_target_of_the_wrong_shape_is_a_value_error(name):
    pred, _ = VALID[name]()
    with pytest.raises(ValueError, match=r"^probability `target` must have the same shape as "
                       r"`prediction` \(4, 3\); got \(4, 4\)$"):
        loss_of(name)(pred, np.full((N, K + 1), 0.25))


@pytest.mark.parametrize("name", SOFT_CLASS)
def test_floating_target_with_the_shape_of_labels_hints_at_the_integer_dtype(name):
    pred, labels = VALID[name]()
    with pytest.raises(ValueError, match=r"^probability `target` must have the same shape as "
                       r"`prediction` \(4, 3\); got \(4,\); class labels must have an integer "
                       r"dtype$"):
        loss_of(name)(pred, labels.astype(np.float64))


def test_multiclass_hinge_floating_target_is_a_type_error():
    pred, labels = VALID["multiclass_hinge"]()
    with pytest.raises(TypeError, match=r"^`target` of multiclass_hinge must be integer class "
                       r"labels with variant='weston_watkins'; got dtype float64; one-hot or "
                       r"soft targets take variant='categorical' \(Keras's CategoricalHinge\)$"):
        lk.multiclass_hinge(pred, labels.astype(np.float64))


@pytest.mark.parametrize("name", CLASS)
def test_boolean_target_is_a_type_error(name):
    pred, labels = VALID[name]()
    with pytest.raises(TypeError, match=r"^`target` must be integer class labels or floating "
                       r"probabilities; got bool$"):
        loss_of(name)(pred, labels == 0)


# ------------------------------------------------------------------ labels
@pytest.mark.parametrize("bad", [3, 100])
@pytest.mark.parametrize("name", CLASS)
def test_label_too_large_is_a_value_error(name, bad):
    pred, labels = VALID[name]()
    labels[2] = bad
    with pytest.raises(ValueError, match=r"^`target` must hold class indices in \[0, 2\] "
                       rf"\(num_classes=3 from the class axis\); got {bad}$"):
        loss_of(name)(pred, labels)


@pytest.mark.parametrize("name", CLASS)
def test_negative_label_without_ignore_index_suggests_it(name):
    pred, labels = VALID[name]()
    labels[1] = -100
    for fn in _all_entry_points(loss_of(name)):
        with pytest.raises(ValueError, match=r"^`target` must hold class indices in \[0, 2\] "
                           r".*; got -100; to skip targets such as padding, pass "
                           r"ignore_index=-100$"):
            fn(pred, labels)


@pytest.mark.parametrize("name", CLASS)
def test_negative_label_other_than_ignore_index_says_it_does_not_match(name):
    pred, labels = VALID[name]()
    labels[1] = -2
    with pytest.raises(ValueError, match=r"^`target` must hold class indices in \[0, 2\] .*; "
                       r"got -2 and ignore_index=-1 does not match it$"):
        loss_of(name)(pred, labels, ignore_index=-1)


def _reference_per_example(name, pred, labels):
    """The per-example loss of integer labels, from the definitions."""
    rows = np.arange(len(labels))
    if name == "cross_entropy":
        return -np.log(pred[rows, labels])
    if name == "softmax_cross_entropy":
        return sc.logsumexp(pred, axis=-1) - pred[rows, labels]
    if name == "nll_loss":
        return -pred[rows, labels]
    if name == "multiclass_hinge":
        v = np.maximum(0.0, pred - pred[rows, labels][:, None] + 1.0)
        v[rows, labels] = 0.0
        return v.sum(axis=-1)
    raise AssertionError(name)


@pytest.mark.parametrize("ignore", [-1, -100])
@pytest.mark.parametrize("name", CLASS)
def test_negative_label_equal_to_ignore_index_is_accepted(name, ignore):
    pred, labels = VALID[name]()
    masked = labels.copy()
    masked[1] = ignore
    value, grad = loss_of(name).value_and_grad(pred, masked, ignore_index=ignore)
    keep = np.array([0, 2, 3])
    expected = _reference_per_example(name, pred[keep], labels[keep]).mean()  # mean over 3
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    assert np.all(grad[1] == 0)  # the ignored example gets no gradient


# ------------------------------------------------------------------ ranges
@pytest.mark.parametrize("name,other", [("cross_entropy", "softmax_cross_entropy"),
                                        ("binary_cross_entropy", "sigmoid_binary_cross_entropy")])
def test_probability_prediction_out_of_range_points_to_the_logits_loss(name, other):
    pred, target = VALID[name]()
    high = pred.copy()
    high.flat[1] = 1.5
    with pytest.raises(ValueError, match=r"^`prediction` must lie in \[0, 1\]; it has values "
                       rf"above 1 \(max 1\.5\): {name} expects probabilities; pass logits to "
                       rf"{other}$"):
        loss_of(name)(high, target)
    low = pred.copy()
    low.flat[2] = -0.25
    with pytest.raises(ValueError, match=r"^`prediction` must lie in \[0, 1\]; it has values "
                       rf"below 0 \(min -0\.25\): {name} expects probabilities; pass logits "
                       rf"to {other}$"):
        loss_of(name).grad(low, target)


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "generic"])
def test_nll_loss_accepts_any_real_log_input_as_pytorch_does(fast):
    """PyTorch's nll_loss (and Optax) define the loss on any real input: a positive entry
    is not an error, and the value and gradient are PyTorch's."""
    from losskit.core import dispatch

    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    pred = rng.normal(size=(6, 5)) * 3.0  # logits, not log-probabilities: half positive
    labels = rng.integers(0, 5, size=6)
    z = torch.tensor(pred, requires_grad=True)
    ref = torch.nn.functional.nll_loss(z, torch.as_tensor(labels))
    ref.backward()
    saved = dispatch.ENABLED
    dispatch.ENABLED = fast
    try:
        value, grad = lk.nll_loss.value_and_grad(pred, labels)
    finally:
        dispatch.ENABLED = saved
    np.testing.assert_allclose(value, ref.item(), rtol=1e-15)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-15)


@pytest.mark.parametrize("name", SOFT_CLASS)
@pytest.mark.parametrize("bad,side", [(1.5, r"above 1 \(max 1\.5\)"),
                                      (-0.5, r"below 0 \(min -0\.5\)")])
def test_probability_target_out_of_range_is_a_value_error(name, bad, side):
    pred, labels = VALID[name]()
    t = np.eye(K)[labels]
    t[0, 0] = bad
    with pytest.raises(ValueError, match=rf"^`target` must lie in \[0, 1\]; it has values "
                       rf"{side}: probability targets must lie in \[0, 1\]$"):
        loss_of(name)(pred, t)


@pytest.mark.parametrize("name", ["binary_cross_entropy", "sigmoid_binary_cross_entropy"])
@pytest.mark.parametrize("bad,side", [(2.0, r"above 1 \(max 2\)"),
                                      (-1.0, r"below 0 \(min -1\)")])
def test_binary_target_out_of_range_is_a_value_error(name, bad, side):
    pred, target = VALID[name]()
    target[3] = bad
    with pytest.raises(ValueError, match=rf"^`target` must lie in \[0, 1\]; it has values "
                       rf"{side}"):
        loss_of(name)(pred, target)


@pytest.mark.parametrize("name", SOFT_CLASS)
@pytest.mark.parametrize("eps", [-0.1, 1.5])
def test_label_smoothing_outside_unit_interval_is_a_value_error(name, eps):
    pred, labels = VALID[name]()
    with pytest.raises(ValueError, match=rf"^`label_smoothing` must lie in \[0, 1\]; "
                       rf"got {re.escape(repr(eps))}$"):
        loss_of(name)(pred, labels, label_smoothing=eps)


@pytest.mark.parametrize("name", SOFT_CLASS)
def test_label_smoothing_of_the_wrong_type_is_a_type_error(name):
    pred, labels = VALID[name]()
    with pytest.raises(TypeError, match=r"^`label_smoothing` must be a real number; got str$"):
        loss_of(name)(pred, labels, label_smoothing="0.1")


# ------------------------------------------------------------------ weights
@pytest.mark.parametrize("bad_shape", [(4,), (2,), (1, 3)])
@pytest.mark.parametrize("name", CLASS)
def test_class_weight_of_the_wrong_shape_names_the_expected_shape(name, bad_shape):
    pred, labels = VALID[name]()
    shape = re.escape(str(bad_shape))
    with pytest.raises(ValueError, match=r"^`class_weight` must have one weight per class: shape "
                       rf"\(3,\) .*; got {shape}$"):
        loss_of(name)(pred, labels, class_weight=np.ones(bad_shape))


@pytest.mark.parametrize("name", CLASS)
def test_negative_class_weight_is_a_value_error(name):
    pred, labels = VALID[name]()
    with pytest.raises(ValueError, match=r"^`class_weight` must lie in \[0, inf\]; it has values "
                       r"below 0 \(min -0\.5\): weights must be non-negative$"):
        loss_of(name)(pred, labels, class_weight=np.array([1.0, -0.5, 1.0]))


@pytest.mark.parametrize("bad_shape", [(4,), (3, 3), (2, 4, 3), (4, 2)])
def test_pos_weight_of_the_wrong_shape_is_a_value_error(bad_shape):
    z = RNG.normal(size=(N, K))
    t = np.full((N, K), 0.5)
    shape = re.escape(str(bad_shape))
    with pytest.raises(ValueError, match=rf"^`pos_weight` must broadcast to the shape of "
                       rf"`prediction` \(4, 3\) without changing it \(.*\); got {shape}$"):
        lk.sigmoid_binary_cross_entropy(z, t, pos_weight=np.ones(bad_shape))


def test_negative_pos_weight_is_a_value_error():
    with pytest.raises(ValueError, match=r"^`pos_weight` must lie in \[0, inf\]; it has values "
                       r"below 0 \(min -2\)"):
        lk.sigmoid_binary_cross_entropy(np.zeros((N, K)), np.zeros((N, K)),
                                        pos_weight=np.array([1.0, -2.0, 1.0]))


@pytest.mark.parametrize("name", ALL)
def test_sample_weight_of_the_wrong_shape_is_a_value_error(name):
    pred, target = VALID[name]()
    with pytest.raises(ValueError, match=rf"^`sample_weight` of {name} must be a number or have "
                       r"the shape of the unreduced loss \(4,\); got \(5,\)$"):
        loss_of(name)(pred, target, sample_weight=np.ones(N + 1))


def test_sample_weight_of_a_2d_loss_names_both_accepted_shapes():
    y = RNG.normal(size=(N, K))
    with pytest.raises(ValueError, match=r"^`sample_weight` of mse must be a number or have "
                       r"the shape of the unreduced loss \(4, 3\) or \(4,\); got \(3,\)$"):
        lk.mse(y, y, sample_weight=np.ones(K))


def test_sample_weight_of_the_per_element_shape_for_a_per_example_loss_is_an_error():
    z, labels = VALID["softmax_cross_entropy"]()
    with pytest.raises(ValueError, match=r"^`sample_weight` of softmax_cross_entropy must be a "
                       r"number or have the shape of the unreduced loss \(4,\); got \(4, 3\)$"):
        lk.softmax_cross_entropy(z, labels, sample_weight=np.ones((N, K)))


@pytest.mark.parametrize("name", ALL)
def test_negative_sample_weight_is_a_value_error(name):
    pred, target = VALID[name]()
    with pytest.raises(ValueError, match=r"^`sample_weight` must lie in \[0, inf\]; it has values "
                       r"below 0 \(min -1\): weights must be non-negative$"):
        loss_of(name).grad(pred, target, sample_weight=np.array([1.0, -1.0, 1.0, 1.0]))


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("reduction", ["avg", "Mean", "elementwise_mean", 1])
def test_unknown_reduction_lists_the_four(name, reduction):
    pred, target = VALID[name]()
    msg = (r"^`reduction` must be one of 'none', 'sum', 'mean', 'batchmean'; "
           rf"got {re.escape(repr(reduction))}$")
    for fn in _all_entry_points(loss_of(name)):
        with pytest.raises(ValueError, match=msg):
            fn(pred, target, reduction=reduction)
    with pytest.raises(ValueError, match=msg):  # also when bound as a default
        type(loss_of(name))(reduction=reduction)


@pytest.mark.parametrize("name", ALL)
def test_unknown_keyword_lists_the_valid_options(name):
    pred, target = VALID[name]()
    valid = ", ".join(["reduction", "sample_weight", *OPTIONS[name]])
    msg = (rf"^{name}\(\) got unexpected keyword argument\(s\) 'weight'; "
           rf"valid options: {re.escape(valid)}$")
    for fn in _all_entry_points(loss_of(name)):
        with pytest.raises(TypeError, match=msg):
            fn(pred, target, weight=np.ones(K))
    with pytest.raises(TypeError, match=msg):
        type(loss_of(name))(weight=1.0)


@pytest.mark.parametrize("name", ["mse", "hinge", "binary_cross_entropy"])
def test_ignore_index_on_a_loss_without_it_is_an_unknown_keyword(name):
    pred, target = VALID[name]()
    with pytest.raises(TypeError, match=rf"^{name}\(\) got unexpected keyword argument\(s\) "
                       r"'ignore_index'; valid options: reduction, sample_weight"):
        loss_of(name)(pred, target, ignore_index=-100)


@pytest.mark.parametrize("name", SOFT_CLASS)
def test_ignore_index_with_probability_targets_is_a_value_error(name):
    pred, labels = VALID[name]()
    with pytest.raises(ValueError, match=r"^`ignore_index` applies to integer class labels only; "
                       r"`target` holds probabilities \(to drop examples, give them "
                       r"sample_weight 0\)$"):
        loss_of(name)(pred, np.eye(K)[labels], ignore_index=-100)


@pytest.mark.parametrize("name", CLASS)
@pytest.mark.parametrize("bad", [1.5, True, "-100"])
def test_ignore_index_of_the_wrong_type_is_a_type_error(name, bad):
    pred, labels = VALID[name]()
    with pytest.raises(TypeError, match=rf"^`ignore_index` of {name} must be an int or None; "
                       rf"got {re.escape(repr(bad))}$"):
        loss_of(name)(pred, labels, ignore_index=bad)


@pytest.mark.parametrize("name", ["hinge", "multiclass_hinge"])
def test_margin_must_be_a_real_number(name):
    pred, target = VALID[name]()
    with pytest.raises(TypeError, match=r"^`margin` must be a real number; got str$"):
        loss_of(name)(pred, target, margin="1")
    with pytest.raises(ValueError, match=r"^`margin` must lie in .*; got nan$"):
        loss_of(name)(pred, target, margin=float("nan"))


@pytest.mark.parametrize("bad,shown", [(0.0, r"\[0\.0\]"), (0.5, r"\[0\.5\]"),
                                       (2.0, r"\[2\.0\]")])
def test_hinge_targets_must_be_plus_or_minus_one(bad, shown):
    s, t = VALID["hinge"]()
    t[1] = bad
    with pytest.raises(ValueError, match=rf"^`target` of hinge must hold labels -1 or \+1; got "
                       rf"also {shown}\. Map 0/1 labels with 2 \* t - 1$"):
        lk.hinge(s, t)


def test_hinge_with_zero_one_labels_lists_the_bad_values():
    with pytest.raises(ValueError, match=r"-1 or \+1; got also \[0\.0\]"):
        lk.hinge(np.zeros(4), np.array([0.0, 1.0, 1.0, 0.0]))


@pytest.mark.parametrize("name", CLASS)
@pytest.mark.parametrize("axis", [2, -3])
def test_axis_out_of_range_is_a_value_error(name, axis):
    pred, labels = VALID[name]()
    with pytest.raises(ValueError, match=rf"^`axis` of {name} must lie in \[-2, 1\] for a 2-d "
                       rf"`prediction`; got {axis}$"):
        loss_of(name)(pred, labels, axis=axis)


@pytest.mark.parametrize("name", CLASS)
def test_axis_of_the_wrong_type_is_a_type_error(name):
    pred, labels = VALID[name]()
    with pytest.raises(TypeError, match=rf"^`axis` of {name} must be an int; got 1\.0$"):
        loss_of(name)(pred, labels, axis=1.0)


@pytest.mark.parametrize("name", CLASS)
def test_0d_prediction_of_a_class_loss_has_no_class_axis(name):
    with pytest.raises(ValueError, match=rf"^`prediction` of {name} needs a class axis; got a "
                       r"0-d array$"):
        loss_of(name)(np.array(0.0), np.array(0))


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_batchmean_of_a_single_0d_example_is_its_loss(name):
    """A 0-d loss is one example: the batch size is 1, so batchmean equals the sum."""
    pred, target = VALID[name]()
    p0, t0 = np.asarray(pred[0]), np.asarray(target[0])
    for fn in (loss_of(name), loss_of(name).grad):
        np.testing.assert_array_equal(fn(p0, t0, reduction="batchmean"),
                                      fn(p0, t0, reduction="sum"))


@pytest.mark.parametrize("name", CLASS)
def test_batchmean_of_a_single_example_without_batch_axis_is_its_loss(name):
    pred, target = VALID[name]()
    p0, t0 = np.asarray(pred[0]), np.asarray(target[0])  # (K,) and a 0-d label
    np.testing.assert_array_equal(loss_of(name)(p0, t0, reduction="batchmean"),
                                  loss_of(name)(p0, t0, reduction="sum"))


# ------------------------------------------------------------------ dtypes and libraries
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_numpy_prediction_is_a_type_error(name, dtype):
    pred, target = VALID[name]()
    bad = (pred > 0).astype(dtype)
    dname = np.dtype(dtype).name
    for fn in _all_entry_points(loss_of(name)):
        with pytest.raises(TypeError, match=rf"^`prediction` of `{name}` must have a floating "
                           rf"dtype \(float16, bfloat16, float32 or float64\); got {dname}\. "):
            fn(bad, target)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_integer_torch_prediction_is_a_type_error(name, dtype):
    pred, target = VALID[name]()
    bad = torch.as_tensor(pred > 0).to(getattr(torch, dtype))
    with pytest.raises(TypeError, match=rf"^`prediction` of `{name}` must have a floating dtype "
                       rf".*; got {dtype}\. Convert it explicitly"):
        loss_of(name)(bad, torch.as_tensor(target))


def test_integer_prediction_of_other_libraries_is_a_type_error():
    import jax.numpy as jnp

    xps = pytest.importorskip("array_api_strict")
    for pred, target in ((jnp.asarray([1, 0], dtype=jnp.int32), jnp.asarray([1.0, 0.0])),
                         (xps.asarray([1, 0]), xps.asarray([1.0, 0.0]))):
        with pytest.raises(TypeError, match=r"^`prediction` of `mse` must have a floating dtype "
                           r".*; got int(32|64)\. "):
            lk.mse(pred, target)


@pytest.mark.parametrize("name", ALL)
def test_numpy_prediction_with_torch_target_is_a_type_error(name):
    pred, target = VALID[name]()
    with pytest.raises(TypeError, match=rf"^{name}\(\): all array arguments must come from one "
                       r"array library; `prediction` is a numpy\.ndarray, `target` is a "
                       r"torch\.Tensor"):
        loss_of(name)(pred, torch.as_tensor(target))
    with pytest.raises(TypeError, match=r"`prediction` is a torch\.Tensor, `target` is a "
                       r"numpy\.ndarray"):
        loss_of(name).grad(torch.as_tensor(pred), target)


def test_mixed_sample_weight_library_is_a_type_error():
    y = torch.zeros(N, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"one array library; `prediction` is a torch\.Tensor, "
                       r"`target` is a torch\.Tensor, `sample_weight` is a numpy\.ndarray"):
        lk.mse(y, y, sample_weight=np.ones(N))


@pytest.mark.parametrize("option", ["class_weight", "pos_weight"])
def test_mixed_weight_library_names_the_weight(option):
    z = np.zeros((N, K))
    if option == "class_weight":
        call = lambda: lk.softmax_cross_entropy(z, _labels(), class_weight=torch.ones(K))  # noqa
    else:
        call = lambda: lk.sigmoid_binary_cross_entropy(z, z, pos_weight=torch.ones(K))  # noqa
    with pytest.raises(TypeError, match=rf"^`{option}` of \w+ is a torch\.Tensor, but the other "
                       r"arguments are .*numpy arrays: pass arrays of one library$"):
        call()


@pytest.mark.parametrize("which", ["prediction", "target"])
def test_none_arguments_are_a_type_error(which):
    args = {"prediction": np.zeros(2), "target": np.zeros(2)}
    args[which] = None
    with pytest.raises(TypeError, match=rf"^mse\(\): `{which}` must be an array; got None$"):
        lk.mse(args["prediction"], args["target"])


def test_string_target_is_a_type_error():
    with pytest.raises(TypeError, match=r"^`target` of mse must be numeric array-like \(.*\); "
                       r"got a string 'abc'$"):
        lk.mse(np.zeros(3), "abc")
    with pytest.raises(TypeError, match=r"^`target` of mse must be numeric array-like \(.*\); "
                       r"got list of strings \['a', 'b'\]$"):
        lk.mse(np.zeros(2), ["a", "b"])


# ------------------------------------------------------------------ the documented non-errors
# NaN in the prediction at the target's position must give a NaN value and gradient for that
# example (and only that one): clamps and hinge masks must not turn NaN into a finite branch.
@pytest.mark.parametrize("name", ALL)
def test_nan_prediction_propagates_to_value_and_grad(name):
    pred, target = VALID[name]()
    if pred.ndim == 2:
        pred[1, target[1]] = NAN  # on the target class of example 1
    else:
        pred[1] = NAN
    loss = loss_of(name)
    v, g = loss.value_and_grad(pred, target, reduction="none")
    assert np.isnan(v[1])
    assert not np.isnan(np.delete(v, 1, axis=0)).any()  # the others are untouched
    assert np.isnan(loss(pred, target))  # and the mean is NaN
    if name == "nll_loss":
        # d(-log p_y)/d(log p) = -onehot does not depend on the prediction at all
        np.testing.assert_array_equal(g[1], -np.eye(K)[target[1]])
    else:
        assert np.isnan(g[1]).any()
        assert not np.isnan(np.delete(g, 1, axis=0)).any()


def test_nan_in_softmax_logits_poisons_only_its_row():
    z = np.array([[0.0, NAN, 1.0], [0.0, 1.0, 2.0]])  # NaN off the target class
    v, g = lk.softmax_cross_entropy.value_and_grad(z, np.array([0, 1]), reduction="none")
    assert np.isnan(v[0]) and np.isnan(g[0]).all()
    np.testing.assert_allclose(v[1], sc.logsumexp(z[1]) - 1.0, rtol=1e-14)


_EMPTY = [(n, shape) for n in ELEMENTWISE for shape in [(0,), (0, K)]] + \
    [(n, (0, K)) for n in CLASS]


def _empty_inputs(name, shape):
    pred = np.zeros(shape)
    if name in CLASS:
        if name == "nll_loss":
            pred = pred - 1.0
        return pred, np.zeros(shape[:-1], dtype=np.int64)
    if name == "hinge":
        return pred, np.ones(shape)
    return pred, np.zeros(shape)


@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean"])
@pytest.mark.parametrize("name,shape", _EMPTY, ids=[f"{n}-{len(s)}d" for n, s in _EMPTY])
def test_empty_batch_costs_zero(name, shape, reduction):
    pred, target = _empty_inputs(name, shape)
    v, g = loss_of(name).value_and_grad(pred, target, reduction=reduction)
    assert isinstance(v, np.ndarray) and v.shape == () and v.dtype == np.float64
    assert float(v) == 0.0  # not NaN: a mean over nothing is 0
    assert g.shape == shape and g.dtype == np.float64


@pytest.mark.parametrize("name,shape", _EMPTY, ids=[f"{n}-{len(s)}d" for n, s in _EMPTY])
def test_empty_batch_with_reduction_none_is_empty(name, shape):
    pred, target = _empty_inputs(name, shape)
    v, g = loss_of(name).value_and_grad(pred, target, reduction="none")
    per_example = shape[:-1] if name in CLASS else shape
    assert v.shape == per_example and g.shape == shape


@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean", "none"])
@pytest.mark.parametrize("name", CLASS)
def test_all_targets_ignored_costs_zero_with_zero_gradient(name, reduction):
    pred, _ = VALID[name]()
    labels = np.full(N, -100)
    kwargs = {"ignore_index": -100}
    v, g = loss_of(name).value_and_grad(pred, labels, reduction=reduction, **kwargs)
    np.testing.assert_array_equal(v, np.zeros(N) if reduction == "none" else 0.0)
    np.testing.assert_array_equal(g, np.zeros((N, K)))
    # with class weights and label smoothing too
    kwargs["class_weight"] = np.array([1.0, 2.0, 3.0])
    if name != "multiclass_hinge":
        kwargs["label_smoothing"] = 0.1
    v, g = loss_of(name).value_and_grad(pred, labels, reduction=reduction, **kwargs)
    assert not np.isnan(v).any()
    np.testing.assert_array_equal(g, np.zeros((N, K)))


def test_zero_sample_weights_everywhere_cost_zero():
    y, t = VALID["mse"]()
    v, g = lk.mse.value_and_grad(y, t, sample_weight=np.zeros(N))
    assert float(v) == 0.0 and np.all(g == 0)


# float16 in: each loss from its definition, on the float16-rounded inputs, in float64
def _reference_mean(name, pred, target):
    if name == "mse":
        return np.mean((pred - target) ** 2)
    if name == "l2_loss":
        return np.mean(0.5 * (pred - target) ** 2)
    if name == "mae":
        return np.mean(np.abs(pred - target))
    if name == "binary_cross_entropy":
        return np.mean(-(target * np.log(pred) + (1 - target) * np.log(1 - pred)))
    if name == "sigmoid_binary_cross_entropy":
        return np.mean(np.logaddexp(0.0, pred) - target * pred)  # softplus(z) - t z
    if name == "hinge":
        return np.mean(np.maximum(0.0, 1.0 - target * pred))
    return _reference_per_example(name, pred, target).mean()


@pytest.mark.parametrize("name", ALL)
def test_float16_in_float16_out(name):
    pred, target = VALID[name]()
    p16 = pred.astype(np.float16)
    t16 = target if target.dtype.kind == "i" else target.astype(np.float16)
    v, g = loss_of(name).value_and_grad(p16, t16)
    assert v.dtype == np.float16 and g.dtype == np.float16
    assert np.isfinite(v) and np.all(np.isfinite(g))
    expected = _reference_mean(name, p16.astype(np.float64), np.asarray(t16, dtype=np.float64)
                               if t16.dtype.kind == "f" else t16)
    np.testing.assert_allclose(float(v), expected, rtol=2e-3, atol=1e-3)


@pytest.mark.parametrize("target", ["onehot", "label"])
def test_cross_entropy_float16_clamp_at_zero_probability(target):
    # float16's machine epsilon is 2**-10 (10 explicit mantissa bits); a probability of 0 on
    # the true class is clamped there and costs -log(2**-10) = 10 ln 2 = 6.93
    expected = -math.log(2.0 ** -10)
    p = np.array([[0.0, 1.0]], dtype=np.float16)
    t = np.array([[1.0, 0.0]], dtype=np.float16) if target == "onehot" else np.array([0])
    v, g = lk.cross_entropy.value_and_grad(p, t)
    assert v.dtype == np.float16
    np.testing.assert_allclose(float(v), expected, rtol=1e-3)
    assert np.all(g == 0)  # below the clamp the clamped value is flat
    # the float32 and float64 clamps are their own epsilons, 2**-23 and 2**-52
    for dtype, bits in ((np.float32, 23), (np.float64, 52)):
        v = lk.cross_entropy(p.astype(dtype), t if target == "label" else t.astype(dtype))
        assert v.dtype == dtype
        np.testing.assert_allclose(float(v), bits * math.log(2.0), rtol=1e-6)
