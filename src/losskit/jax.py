r"""losskit inside JAX: every loss differentiable with its closed-form rule.

Calling a loss on JAX arrays (or tracers: inside ``jit``, ``grad``, ``vmap``, ``lax.scan``)
runs it as a :func:`jax.custom_vjp` function: the forward pass computes the value and the
closed-form gradient of every differentiable input together (the residual), and the
backward rule is ``cotangent * gradient``. An elementwise loss (mse, Huber, sigmoid BCE,
focal, hinge, ...) computes its closed-form gradient in the backward pass instead, from
the inputs: XLA then fuses the value and the gradient into one loop each, as it does for
autodiff through Optax (see ``_elementwise``). ``jax.grad`` never differentiates losskit's
forward code: ``mae`` at the kink has gradient 0 as documented.

* Targets, labels, weights and options may come from outside the function (a closure);
  NumPy targets and weights with JAX predictions are accepted (converted), as Optax does.
* Under tracing the checks that read values cannot raise; they are deferred instead: an
  invalid label, a probability outside [0, 1] or a box with x2 < x1 makes the result NaN,
  never a different finite number. Eager calls keep raising their clear errors, and
  ``validate=False`` turns the checks off there too (the NaN rule then applies).
* ``reduction="none"``: the cotangent ``v`` of the per-example values is backpropagated
  exactly, as the gradient of ``sum(v * loss)`` (a second evaluation with
  ``sample_weight=v``).
* ``.grad(...)`` and ``.value_and_grad(...)`` on JAX arrays are the closed form itself.
* Eager calls run compiled: a call on concrete arrays runs under ``jax.jit`` (one
  executable per loss, options and input shapes; a first call on new shapes costs a
  compilation, tenths of a second, instead of seconds of op-by-op compiles, and later calls
  tens of microseconds instead of milliseconds), and ``jax.grad``/``vmap`` outside ``jit``
  compile the closed form the same way. A compiled result holding a NaN is computed again
  eagerly, so the checks raise their clear errors (a NaN input keeps its NaN); a call that
  cannot be traced (an option read as a Python number) runs eagerly.

>>> import jax, jax.numpy as jnp, losskit as lk
>>> z = jnp.array([[2.0, 0.5, -1.0]]); y = jnp.array([0])
>>> g = jax.jit(jax.grad(lambda z: lk.softmax_cross_entropy(z, y)))(z)
>>> bool(jnp.allclose(g, jax.nn.softmax(z) - jnp.eye(3)[y]))
True
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .core import dispatch
from .core.arrays import quiet
from .core.loss import Loss as _Loss
from .core.loss import cotangent_weights, vjp_weights

__all__ = ["call"]


def _traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def _to_jax(a):
    if isinstance(a, (np.ndarray, np.generic)):
        return jnp.asarray(a)
    return a


def _is_array(v) -> bool:
    return isinstance(v, (jax.Array, np.ndarray))


def _evaluate(loss, arrays, reduction, sample_weight, options, want, wrt, check, out=None):
    """The pipeline itself, with or without the checks that read values."""
    with quiet():
        return loss._checked_pipeline(check, arrays, reduction, sample_weight, options, want,
                                      wrt, out)


def _closed_form(loss: _Loss, reduction: str, static: dict, check: bool, slots: tuple,
                 diff: tuple):
    """A custom_vjp function ``f(diff_arrays, other_arrays, array_options, weight)``.

    ``slots``: the positions of the arrays present (``None`` bias left out); ``diff``: the
    positions whose gradient is wanted. Arrays are arguments, never closed over (a
    custom_vjp function may not close over tracers); the static options are.
    """
    names = loss.inputs
    wrt = tuple(names[i] for i in diff)

    def assemble(diff_arrays, other_arrays):
        full: list[Any] = [None] * len(names)
        it_d, it_o = iter(diff_arrays), iter(other_arrays)
        for i in slots:
            full[i] = next(it_d) if i in diff else next(it_o)
        return tuple(full)

    def value(diff_arrays, other_arrays, array_options, weight):
        arrays = assemble(diff_arrays, other_arrays)
        return _evaluate(loss, arrays, reduction, weight, {**static, **array_options},
                         "value", None, check)

    f = jax.custom_vjp(value)
    recompute = _elementwise(loss)

    def fwd(diff_arrays, other_arrays, array_options, weight):
        arrays = assemble(diff_arrays, other_arrays)
        opts = {**static, **array_options}
        if reduction == "none" or recompute:
            v = _evaluate(loss, arrays, reduction, weight, opts, "value", None, check)
            # (the same elements as v's: XLA computes them once, written out for its sum)
            values = (_evaluate(loss, arrays, "none", weight, opts, "value", None, check)
                      if recompute and reduction != "none" and _keeps_values(loss) else None)
            return v, (diff_arrays, other_arrays, array_options, weight, values)
        v, grads = _evaluate(loss, arrays, reduction, weight, opts, "both", wrt, check)
        return v, (grads, other_arrays, array_options, weight)

    def bwd(residual, cotangent):
        if reduction == "none":
            diff_arrays, other_arrays, array_options, weight, _ = residual
            arrays = assemble(diff_arrays, other_arrays)
            v_weight = cotangent_weights(jnp, cotangent, weight)
            with vjp_weights():
                grads = _evaluate(loss, arrays, "sum", v_weight, {**static, **array_options},
                                  "grad", wrt, False)
        else:
            if recompute:
                # the input arrays behind a barrier: XLA cannot merge this pass with the
                # forward's (see _elementwise); the options as they came (quantile's
                # levels are read as numbers)
                diff_arrays, other_arrays, array_options, weight, values = residual
                diff_arrays, other_arrays = jax.lax.optimization_barrier(
                    (diff_arrays, other_arrays))
                grads = _evaluate(loss, assemble(diff_arrays, other_arrays), reduction,
                                  weight, {**static, **array_options}, "grad", wrt, False)
                if values is not None:
                    # a test that is never true (the values are >= 0 or NaN) reads the
                    # values in the gradient's loop: XLA then writes each gradient into
                    # the values' buffer (see _keeps_values)
                    grads = tuple(jnp.where(values < 0, jnp.nan, g) for g in grads)
            else:
                grads, other_arrays, array_options, weight = residual
            grads = tuple(cotangent * g for g in grads)
        zeros = jax.tree_util.tree_map(_zero_cotangent, (other_arrays, array_options, weight))
        return (tuple(grads), *zeros)

    f.defvjp(fwd, bwd)
    return f


_CLOSED_FORMS: dict = {}


def _elementwise(loss: _Loss) -> bool:
    """Whether ``loss`` is elementwise (each element's value and gradient read that
    element only; its NumPy fast path says so: ``kernel.elementwise``). Its custom VJP then
    computes the gradient in the backward pass from the inputs, behind an optimization
    barrier, instead of keeping it from the forward pass: XLA on the CPU materialises every
    intermediate that the value's reduction and the gradient share, while two separate
    passes fuse each into one loop, as Optax's autodiff does. Measured under
    ``jax.jit(jax.value_and_grad)`` at 10M float32 elements: XLA temporaries of Huber 76 ->
    38 MiB, sigmoid focal 305 -> 86 MiB, sigmoid BCE 76 -> 48 MiB (38 with the deferred
    range check as a min and a max, losskit.core.validation), hinge 38 -> 10 MiB, and
    Huber 1.10x -> 0.78x, sigmoid focal 0.90x -> 0.68x Optax's time. For the losses over a
    class axis the shared pass is the faster one (softmax cross-entropy with labels 1.15x
    -> 2.1x Optax's time when split): they keep it."""
    fast = dispatch.fast_path_for(type(loss))
    return bool(getattr(fast, "elementwise", False))


#: Elementwise losses whose per-element values XLA on the CPU writes out before summing
#: them (its XNNPACK sum fusion does not take their operations). Measured with
#: ``jax.jit(jax.value_and_grad)`` at 10M float32 elements, jax 0.10.2, targets passed as
#: arguments, the plain recomputed backward and the kept values in the same run: every one
#: 0 MiB of XLA temporaries with the values kept (Huber, smooth L1, MAPE and log-cosh 38
#: before; pseudo-Huber, quantile and binary sparsemax 76; sigmoid focal star and SimPO
#: 114) and faster (log-cosh 54.6 -> 41.8 ms, quantile 37.3 -> 24.6 ms; the table is in
#: docs/performance.md). For the other elementwise losses XLA fuses the values into the
#: sum (MSE, Tweedie: keeping them writes them out, 0 -> 38 and 0 -> 343 MiB) or shares
#: their terms differently (sigmoid BCE, ORPO: no gain or worse); they do not keep them.
_KEEP_VALUES = frozenset({"huber", "smooth_l1", "pseudo_huber", "log_cosh", "quantile",
                          "mape", "sparsemax_loss", "sigmoid_focal_loss_star",
                          "simpo_loss"})


def _keeps_values(loss: _Loss) -> bool:
    """Whether the custom VJP of the elementwise ``loss`` keeps its per-element values
    from the forward pass and reads them in the backward pass, on the CPU only.

    XLA on the CPU writes the values of these losses out anyway (a temporary the size of
    the input) before its sum; a gradient loop that reads them can write the gradient
    into their buffer, so that the call needs no temporary, as autodiff through Optax's
    ``log_cosh`` (whose gradient reads its values). On a GPU XLA fuses the values into
    the sum, so keeping them would add a write: it does not. See :data:`_KEEP_VALUES`."""
    return loss.name in _KEEP_VALUES and jax.default_backend() == "cpu"


def _under_jit() -> bool:
    """Whether a ``jax.jit`` trace is active (JAX's own test of it; False if it moved)."""
    try:
        from jax._src.core import unsafe_am_i_under_a_jit
    except ImportError:  # pragma: no cover - JAX internals moved: compile anyway
        return False
    return unsafe_am_i_under_a_jit()


def _closed_form_key(loss: _Loss, reduction: str, static: dict, check: bool, slots: tuple,
                     diff: tuple):
    """The cache key of :func:`_closed_form` under ``jax.jit`` (so that ``jax.grad`` and
    ``vmap`` outside ``jit`` do not run the closed form op by op), or None where it is not
    compiled: the checks read values (``check``) or an option is unhashable."""
    if check or _under_jit():
        return None  # (under an outer jit a nested one only adds tracing time)
    key = (loss, reduction, tuple(sorted(static.items())), slots, diff)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _zero_cotangent(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


def call(loss: _Loss, arrays, reduction, sample_weight, options, want, wrt, out, validate):
    """The loss on JAX arrays (found by :func:`losskit.core.dispatch.framework_hook`)."""
    arrays = tuple(_to_jax(a) for a in arrays)
    sample_weight = _to_jax(sample_weight)
    options = {k: _to_jax(v) for k, v in options.items()}
    leaves = jax.tree_util.tree_leaves((arrays, sample_weight, options))
    if out is None and leaves and not any(_traced(x) for x in leaves):
        return _eager(loss, arrays, reduction, sample_weight, options, want, wrt, validate)
    return _run(loss, arrays, reduction, sample_weight, options, want, wrt, out,
                validate and not any(_traced(x) for x in leaves))


# ---------------------------------------------------------------- eager calls, compiled
# Op-by-op JAX compiles every primitive for every new shape (seconds for a first call) and
# dispatches each one (milliseconds a call). An eager call therefore runs the traced path
# under ``jax.jit``, one executable per loss, options and input structure (shapes and
# dtypes are jit's own keys); the value checks that cannot raise under tracing make the
# result NaN there, so a result with a NaN is computed again eagerly, where the checks raise
# their clear errors (or the NaN stands: a NaN input propagates). A call that cannot be
# traced (an option used as a Python number, say) runs eagerly, and its kind is remembered.
_COMPILED: dict = {}
_UNTRACEABLE = object()


def _bound(cache: dict, size: int = 512) -> None:
    """Forget the oldest compiled functions beyond ``size`` (options drawn at random would
    otherwise keep every executable alive)."""
    while len(cache) > size:
        try:
            del cache[next(iter(cache))]
        except (KeyError, RuntimeError, StopIteration):  # another thread got there first
            break


def _compiled_key(loss, arrays, reduction, sample_weight, options, want, wrt):
    if not all(a is None or isinstance(a, jax.Array) for a in arrays) or not (
            sample_weight is None or isinstance(sample_weight, jax.Array)):
        return None
    static = tuple(sorted((k, v) for k, v in options.items() if not _is_array(v)))
    if any(_is_array(v) and not isinstance(v, jax.Array) for v in options.values()):
        return None
    key = (loss, reduction, want, wrt, static, tuple(a is None for a in arrays),
           sample_weight is None, tuple(sorted(k for k, v in options.items() if _is_array(v))))
    try:
        hash(key)
    except TypeError:  # an unhashable option (a list): eager
        return None
    return key


def _compile(loss, reduction, want, wrt, static):
    def run(arrays, sample_weight, array_options):
        result = _run(loss, arrays, reduction, sample_weight, {**static, **array_options},
                      want, wrt, None, False)
        nan = [jnp.any(jnp.isnan(x)) for x in jax.tree_util.tree_leaves(result)
               if jnp.issubdtype(x.dtype, jnp.inexact)]
        return result, (jnp.any(jnp.stack(nan)) if nan else jnp.asarray(False))
    return jax.jit(run)


def _eager(loss, arrays, reduction, sample_weight, options, want, wrt, validate):
    key = _compiled_key(loss, arrays, reduction, sample_weight, options, want, wrt)
    fn = None if key is None else _COMPILED.get(key)
    if key is not None and fn is not _UNTRACEABLE:
        if fn is None:
            static = {k: v for k, v in options.items() if not _is_array(v)}
            fn = _COMPILED[key] = _compile(loss, reduction, want, wrt, static)
            _bound(_COMPILED)
        array_options = {k: v for k, v in options.items() if _is_array(v)}
        try:
            result, nan = fn(arrays, sample_weight, array_options)
        except Exception:  # noqa: BLE001 - the eager call below raises or succeeds
            result = _run(loss, arrays, reduction, sample_weight, options, want, wrt, None,
                          validate)
            _COMPILED[key] = _UNTRACEABLE  # eager succeeded where tracing failed
            return result
        if not (validate and bool(nan)):
            return result
    return _run(loss, arrays, reduction, sample_weight, options, want, wrt, None, validate)


def _run(loss, arrays, reduction, sample_weight, options, want, wrt, out, check):
    """The closed form as a custom_vjp function of the differentiable inputs (``check``:
    whether the value checks may read values)."""
    names = loss.inputs
    if want != "value" or len(arrays) != len(names) or out is not None:
        # the closed form itself (and the pipeline's own errors)
        return _evaluate(loss, arrays, reduction, sample_weight, options, want, wrt, check, out)
    if reduction is None:
        reduction = loss._defaults.get("reduction", "mean")
    if not isinstance(reduction, str):
        return _evaluate(loss, arrays, reduction, sample_weight, options, want, wrt, check)
    slots = tuple(i for i, a in enumerate(arrays) if a is not None)
    diff = tuple(i for i in slots if names[i] in loss.differentiable
                 and _is_array(arrays[i]) and jnp.issubdtype(arrays[i].dtype, jnp.floating))
    if not diff:
        return _evaluate(loss, arrays, reduction, sample_weight, options, want, wrt, check)
    static = {k: v for k, v in options.items() if not _is_array(v)}
    array_options = {k: v for k, v in options.items() if _is_array(v)}
    diff_arrays = tuple(arrays[i] for i in diff)
    other = tuple(arrays[i] for i in slots if i not in diff)
    key = _closed_form_key(loss, reduction, static, check, slots, diff)
    f = _CLOSED_FORMS.get(key) if key is not None else None
    if f is None:
        f = _closed_form(loss, reduction, static, check, slots, diff)
        if key is None:
            return f(diff_arrays, other, array_options, sample_weight)
        f = _CLOSED_FORMS[key] = jax.jit(f)
        _bound(_CLOSED_FORMS)
    if f is _UNTRACEABLE:
        f = _closed_form(loss, reduction, static, check, slots, diff)
        return f(diff_arrays, other, array_options, sample_weight)
    try:
        return f(diff_arrays, other, array_options, sample_weight)
    except Exception:  # noqa: BLE001 - not traceable under jit (a value read): plain
        result = _closed_form(loss, reduction, static, check, slots, diff)(
            diff_arrays, other, array_options, sample_weight)
        _CLOSED_FORMS[key] = _UNTRACEABLE
        return result
