"""Optional inputs of a loss (``Loss.optional_inputs``): left out, None, or by keyword,
on NumPy and through the framework adapters. A toy loss (not registered in the catalog):
squared error of ``prediction - target - offset``, the offset 0 when it is None."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from losskit.core.loss import Loss, Terms


class _Shifted(Loss):
    name = "shifted_squared_error_for_tests"
    family = "regression"
    inputs = ("prediction", "target", "offset")
    optional_inputs = ("offset",)

    def _compute(self, ctx, prediction, target, offset, *, need_grad, scale=1.0):
        t = ctx.asarray(target, "target")
        d = prediction - t
        if offset is not None:
            d = d - ctx.asarray(offset, "offset")
        return Terms(scale * d * d, 2.0 * scale * d if need_grad else None)


shifted = _Shifted()
Y = np.array([1.0, 2.0, 4.0])
T = np.array([0.0, 1.0, 1.0])
O = np.array([0.5, 0.5, 1.0])


def test_left_out_none_and_keyword():
    plain = np.mean((Y - T) ** 2)
    assert float(shifted(Y, T)) == pytest.approx(plain)
    assert float(shifted(Y, T, None)) == pytest.approx(plain)
    with_offset = np.mean((Y - T - O) ** 2)
    assert float(shifted(Y, T, O)) == pytest.approx(with_offset)
    assert float(shifted(Y, T, offset=O, scale=2.0)) == pytest.approx(2 * with_offset)
    np.testing.assert_allclose(shifted.grad(Y, T, offset=O), 2 * (Y - T - O) / 3)
    sig = inspect.signature(shifted)
    assert sig.parameters["offset"].default is None
    assert sig.parameters["target"].kind is inspect.Parameter.POSITIONAL_ONLY


def test_a_required_input_is_still_required():
    with pytest.raises(TypeError, match="takes 3 arrays"):
        shifted(Y)
    with pytest.raises(TypeError, match="`target` must be an array; got None"):
        shifted(Y, None)


def test_left_out_through_the_adapters():
    torch = pytest.importorskip("torch")
    y = torch.tensor(Y, requires_grad=True)
    v = shifted(y, torch.tensor(T))
    v.backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * (Y - T) / 3)
    jnp = pytest.importorskip("jax.numpy")
    import jax

    g = jax.grad(lambda a: shifted(a, jnp.asarray(T), offset=jnp.asarray(O)))(jnp.asarray(Y))
    np.testing.assert_allclose(np.asarray(g), 2 * (Y - T - O) / 3, rtol=1e-6)
