r"""losskit inside PyTorch training: the closed-form gradient as the backward.

Calling any loss on PyTorch tensors runs it as one operator, ``losskit::value_and_grad``
(a :func:`torch.library.custom_op` with a fake implementation and a vmap rule), which
computes the value and, when an input requires grad, the closed-form gradient in the same
pass. An :class:`torch.autograd.Function` (with ``setup_context``, as ``torch.func``
requires) hands that saved gradient to autograd: the backward is
``grad_output * gradient``, nothing is differentiated through the forward code. So:

* ``loss = lk.softmax_cross_entropy(logits, labels); loss.backward()`` uses
  ``softmax(z) - onehot``, also where autodiff of the forward would give NaN (an identical
  contrastive pair, a ``-inf`` logit under focal loss, a zero triplet distance);
* every differentiable input gets its gradient (``loss.differentiable``: triplet's anchor,
  positive and negative, gaussian_nll's ``var``, linear_cross_entropy's hidden, weight and
  bias); targets, labels and weights get none;
* ``torch.compile(fullgraph=True)`` sees one opaque operator (no graph break: the checks
  run inside it, on real tensors), and ``torch.func.grad``/``vmap`` work (per-sample
  gradients: ``vmap(grad(f))``);
* what would need second derivatives or forward mode raises a clear error, never a
  silent zero: a second backward through a gradient taken with ``create_graph=True`` (a
  gradient penalty), nested ``torch.func.grad``/``jacrev``, ``torch.func.jvp``,
  ``jacfwd``, ``hessian`` and forward-AD dual tensors (the gradient is closed-form, not
  a graph).

CPU tensors (float32/float64/float16) go to the NumPy engines zero-copy
(``tensor.numpy()`` views in, ``torch.from_numpy`` out: the fused kernels of
:mod:`losskit.kernels`); other devices and dtypes (CUDA, bfloat16) run the generic
Array-API path with torch operations on the tensors' own device.

``reduction="none"``: the backward of per-example values with an upstream gradient
``v`` is the gradient of ``sum(v * loss)``, computed by a second call with
``sample_weight=v`` (times any ``sample_weight`` given) and ``reduction="sum"``.

``validate=False`` skips the checks that read tensor values. Then an out-of-range label, a
probability outside [0, 1] or a box with x2 < x1 cannot raise: the result is NaN
(:mod:`losskit.core.validation`'s deferred checks), never a different number. Tensors off
the CPU (CUDA) are always checked that way, on their device: reading a value back to raise
would be a host synchronisation in every training step. Nothing on the path of a call or
its backward reads a value back there (tested on ``meta`` tensors, which have none).

``.grad(...)`` and ``.value_and_grad(...)`` on tensors return plain tensors (no autograd
graph is recorded) from the same operator; ``out=`` may be a leaf that requires grad
(its ``.grad`` is not touched: the gradient is written into its data).

:class:`Loss` wraps any loss as a ``torch.nn.Module`` criterion.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import array_api_compat
import numpy as np
import torch

from .core.arrays import quiet
from .core.loss import Loss as _Loss
from .core.loss import check_out, cotangent_weights, vjp_weights

__all__ = ["Loss", "call"]

# ----------------------------------------------------------------------------- the losses
# the operator takes strings, tensors and numbers; a loss object is named by a key
_LOSSES: dict[str, _Loss] = {}


@torch._dynamo.assume_constant_result
def _key(loss: _Loss) -> str:
    """The operator's name for ``loss``, registered on first use (kept alive: the key stays
    valid). Under ``torch.compile`` Dynamo runs this at trace time and puts the string in the
    graph: a traced dict store would be replayed only after the graph, too late for the
    operator's fake implementation, which looks the loss up while tracing."""
    key = f"{loss.name}@{id(loss):x}"
    _LOSSES.setdefault(key, loss)  # one atomic store under the GIL
    return key


# ----------------------------------------------------------------------------- options
def _encode(options: dict, sample_weight) -> tuple[str, list]:
    """(static options as text, the tensor-valued options in order).

    Static values (numbers, strings, None, booleans, tuples/lists of them) are written
    with ``repr`` and read back with ``ast.literal_eval``; a tensor or array option
    (``class_weight``, ``pos_weight``, ``sample_weight``) travels as a tensor.
    """
    tensors = []
    parts = []
    items = list(options.items())
    if sample_weight is not None:
        items.append(("sample_weight", sample_weight))
    for name, value in items:
        if isinstance(value, (torch.Tensor, np.ndarray)):
            parts.append(f"{name!r}: _T({len(tensors)})")
            tensors.append(value)
        else:
            parts.append(f"{name!r}: {_literal(name, value)}")
    return "{" + ", ".join(parts) + "}", tensors


def _literal(name, value) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_literal(name, v) for v in value)
        return f"({inner},)" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, float):
        if math.isnan(value):
            return "_F('nan')"
        if math.isinf(value):
            return "_F('inf')" if value > 0 else "_F('-inf')"
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    raise TypeError(f"option `{name}` must be a number, a string, None, a tuple/list of "
                    f"these, or an array; got {type(value).__name__}")


_DECODED: dict[str, Any] = {}


def _decode(text: str, tensors: list) -> dict:
    code = _DECODED.get(text)
    if code is None:
        code = _DECODED[text] = compile(text, "<losskit options>", "eval")
    return eval(code, {"__builtins__": {}, "_T": tensors.__getitem__, "_F": float})


# ----------------------------------------------------------------------------- the operator
def _plain_cpu(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype not in (torch.bfloat16, torch.complex32)


def _to_tensor(a, like: torch.Tensor) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        if a.flags.writeable and a.flags.c_contiguous and a.dtype.isnative:
            t = torch.from_numpy(a)
        else:
            t = torch.from_numpy(np.ascontiguousarray(a).copy())
        return t if like.device.type == "cpu" else t.to(like.device)
    return a


def _fresh(t: torch.Tensor, inputs) -> torch.Tensor:
    """An operator's output must not alias an input: copy in the rare case it would."""
    ptr = t.untyped_storage().data_ptr()
    if ptr and any(ptr == x.untyped_storage().data_ptr() for x in inputs):
        return t.clone()
    return t


def _run(key: str, inputs: list[torch.Tensor], tensor_options: list[torch.Tensor],
         options: str, reduction: str, wrt: list[int], validate: bool, present: list[int]):
    loss = _LOSSES[key]
    opts = _decode(options, tensor_options)
    sample_weight = opts.pop("sample_weight", None)
    # the backward of reduction "none": the upstream gradient, a cotangent of the values
    cotangent = opts.pop("__cotangent__", None)
    arrays: list[Any] = [None] * len(loss.inputs)
    for slot, t in zip(present, inputs):
        arrays[slot] = t
    if all(_plain_cpu(t) for t in (*inputs, *tensor_options)):
        arrays = [a.numpy() if a is not None else None for a in arrays]
        opts = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in opts.items()}
        if sample_weight is not None:
            sample_weight = sample_weight.numpy()
        if cotangent is not None:
            cotangent = cotangent.numpy()
    vjp = cotangent is not None
    if vjp:  # sum(cotangent * loss): the cotangent (times any sample weight) as weights
        sample_weight = cotangent_weights(array_api_compat.array_namespace(cotangent),
                                          cotangent, sample_weight)
    names = tuple(loss.inputs[i] for i in wrt)
    want = "both" if names else "value"
    with quiet(), (vjp_weights() if vjp else contextlib.nullcontext()):
        result = loss._checked_pipeline(validate, tuple(arrays), reduction, sample_weight,
                                        opts, want, names or None)
    value, grads = (result, ()) if want == "value" else result
    like = inputs[0]
    out = [_to_tensor(value, like)]
    out += [_to_tensor(g, like) for g in grads]
    return [_fresh(t, inputs) for t in out]


@torch.library.custom_op("losskit::value_and_grad", mutates_args=())
def _value_and_grad(key: str, inputs: list[torch.Tensor], tensor_options: list[torch.Tensor],
                    options: str, reduction: str, wrt: list[int], validate: bool,
                    present: list[int]) -> list[torch.Tensor]:
    """``[value, gradient of each input in wrt]`` of the loss named by ``key``."""
    return _run(key, inputs, tensor_options, options, reduction, wrt, validate, present)


def _plain_eager(inputs, tensor_options) -> bool:
    """Whether nothing traces or transforms this call: no ``torch.compile``, no
    ``torch.func`` transform, no dispatch or function mode (``make_fx``, FakeTensor,
    ``torch.device`` contexts), plain tensors only (no functorch wrapper left over from a
    finished transform)."""
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    return (not torch.compiler.is_compiling()
            and torch._C._len_torch_dispatch_stack() == 0
            and not torch._C._is_torch_function_mode_enabled()
            and not torch._C._functorch.get_interpreter_stack()
            and all(type(t) is torch.Tensor and not wrapped(t)
                    for t in (*inputs, *tensor_options)))


def _operator(key, inputs, tensor_options, options, reduction, wrt, validate, present):
    """The operator ``losskit::value_and_grad``, or, in plain eager mode, its body.

    The operator is what ``torch.compile``, ``torch.func`` and fake tensors need. Called
    eagerly it costs about 0.1-0.2 ms per call in the custom op's Python dispatch (an
    ``inspect`` signature bind and a redispatch on every call), a multiple of a small
    loss's own time; eager calls on plain tensors run the same body directly."""
    if _plain_eager(inputs, tensor_options):
        return _run(key, inputs, tensor_options, options, reduction, wrt, validate, present)
    return _value_and_grad(key, inputs, tensor_options, options, reduction, wrt, validate,
                           present)


@_value_and_grad.register_fake
def _value_and_grad_fake(key, inputs, tensor_options, options, reduction, wrt, validate,
                         present):
    loss = _LOSSES[key]
    like = inputs[0]
    if reduction == "none":
        shape = _none_shape(loss, inputs, tensor_options, options, present)
        value = like.new_empty(shape)
    else:
        value = like.new_empty(())
    slot = {s: i for i, s in enumerate(present)}
    return [value] + [torch.empty_like(inputs[slot[i]]) for i in wrt]


def _none_shape(loss, inputs, tensor_options, options, present):
    """The shape of the per-example values, from the same call on tiny CPU stand-ins.

    A loss's unreduced shape depends only on its inputs' shapes and options; computing it
    on a copy of zeros of the same shapes would cost their memory, so the stand-ins share
    one zero element (``expand``)."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    # real tensors: the fake implementation runs inside the tracer's fake mode, which
    # would make the stand-ins fake too (and fake tensors have no NumPy view); symbolic
    # sizes (torch.compile(dynamic=True)) as numbers: the values' shape then specialises
    # on them (a recompilation per new shape with reduction "none", never a wrong shape)
    def sizes(t):
        return tuple(int(d) for d in t.shape)

    with unset_fake_temporarily():
        stand = [torch.zeros((), dtype=t.dtype).expand(sizes(t)) for t in inputs]
        topts = [torch.zeros((), dtype=t.dtype).expand(sizes(t)) for t in tensor_options]
        value = _run(_key(loss), stand, topts, options, "none", [], False, present)[0]
    return value.shape


def _vmap_rule(info, in_dims, key, inputs, tensor_options, options, reduction, wrt, validate,
               present):
    """vmap: the operator once per batch entry (each entry is one independent call)."""
    dims_in, dims_opt = in_dims[1], in_dims[2]
    results = []
    for b in range(info.batch_size):
        xs = [x if d is None else x.select(d, b) for x, d in zip(inputs, dims_in)]
        os_ = [x if d is None else x.select(d, b) for x, d in zip(tensor_options, dims_opt)]
        results.append(_value_and_grad(key, xs, os_, options, reduction, wrt, validate,
                                       present))
    stacked = [torch.stack([r[k] for r in results]) for k in range(len(results[0]))]
    return stacked, [0] * len(stacked)


torch.library.register_vmap(_value_and_grad, _vmap_rule)


# ----------------------------------------------------------------------------- autograd
def _first_order(backward):
    """``once_differentiable`` with losskit's message, also where no input requires grad.

    The backward runs without recording a graph. Under ``create_graph=True`` (a gradient
    penalty, ``torch.autograd.grad`` of a gradient) torch's own ``once_differentiable``
    marks the gradients only when the upstream gradient requires grad; for ``loss.backward``
    it does not, and the gradient came back detached: a penalty on it would add nothing,
    silently. Here every gradient returned under ``create_graph=True`` carries a node that
    raises this error if anything differentiates it again."""

    @functools.wraps(backward)
    def wrapper(ctx, *args):
        with torch.no_grad():
            outputs = backward(ctx, *args)
        if (not torch.is_grad_enabled() or all(o is None for o in outputs)
                or torch._C._functorch.get_interpreter_stack()):
            # (under torch.func transforms a derivative of this one is refused at the
            # call instead: see _refuse_unrecorded_derivatives)
            return outputs
        name = ctx.args[0].rpartition("@")[0]
        err = torch._C._functions.DelayedError(
            (f"losskit: the backward of {name} is its closed-form first derivative; "
             "differentiating that gradient again (create_graph=True and a second backward, "
             "gradient penalties, torch.func.hessian) needs second derivatives, which "
             "losskit does not provide yet. Use a PyTorch loss for that term."
             ).encode(), len(outputs))

        def fake_requires_grad(t):
            if t is not None:
                t = t.detach()
                t.requires_grad = True
            return t

        return err(*[fake_requires_grad(t) for t in outputs])

    return wrapper


class _ClosedForm(torch.autograd.Function):
    """The operator as an autograd node whose backward is the saved closed-form gradient."""

    generate_vmap_rule = True

    @staticmethod
    def forward(key, tensor_options, options, reduction, wrt, validate, present, *inputs):
        return tuple(_operator(key, list(inputs), tensor_options, options,
                               reduction, [] if reduction == "none" else wrt, validate,
                               present))

    @staticmethod
    def setup_context(ctx, inputs, output):
        key, tensor_options, options, reduction, wrt, validate, present = inputs[:7]
        ctx.args = (key, options, reduction, wrt, validate, present)
        ctx.set_materialize_grads(False)  # no zeros for the gradient outputs nobody uses
        ctx.n_inputs = len(inputs) - 7
        if reduction == "none":
            ctx.tensor_options = tensor_options
            ctx.save_for_backward(*inputs[7:])
        else:
            ctx.mark_non_differentiable(*output[1:])
            ctx.save_for_backward(*output[1:])

    @staticmethod
    @_first_order
    def backward(ctx, grad_value, *unused):
        key, options, reduction, wrt, validate, present = ctx.args
        slot = {s: i for i, s in enumerate(present)}
        if grad_value is None:  # the value was not used
            return (None,) * (7 + ctx.n_inputs)
        if reduction == "none":
            grads = _none_backward(key, list(ctx.saved_tensors), ctx.tensor_options, options,
                                   wrt, present, grad_value)
        elif _is_one(grad_value):  # loss.backward(): the saved gradient as it is
            grads = list(ctx.saved_tensors)
        else:
            grads = [grad_value * g for g in ctx.saved_tensors]
        result: list[Any] = [None] * ctx.n_inputs
        for i, g in zip(wrt, grads):
            result[slot[i]] = g
        return (None,) * 7 + tuple(result)


#: ``torch.autograd.Function.apply`` without its per-call signature binding (plain eager
#: calls only: torch.compile and torch.func go through ``_ClosedForm.apply``)
_C_APPLY = super(torch.autograd.Function, _ClosedForm).apply


def _refuse_unrecorded_derivatives(name: str, want: str, inputs) -> None:
    """Refuse, with the reason, the transforms that would differentiate what losskit does
    not record, which would otherwise come back as a zero derivative, silently:

    * forward mode (``torch.func.jvp``, ``jacfwd``, ``hessian``, dual tensors of
      ``torch.autograd.forward_ad``): the operator has no forward-mode rule (a custom
      ``jvp`` would keep Dynamo from tracing the autograd function);
    * ``torch.func.grad`` of ``torch.func.grad`` (``jacrev`` of ``jacrev``): the inner
      backward is the closed-form first derivative; a derivative of it is second order;
    * ``.grad()``/``.value_and_grad()`` under ``torch.func.grad``: their gradient is a
      plain tensor, not a graph.

    One call into functorch's interpreter stack (and, inside a forward-AD level, a look
    at the inputs' tangents); skipped under ``torch.compile``, whose tracing has no such
    levels."""
    stack = torch._C._functorch.get_interpreter_stack() or ()
    kinds = [level.key() for level in stack]
    types = torch._C._functorch.TransformType
    dual = torch.autograd.forward_ad._current_level >= 0 and any(
        torch.autograd.forward_ad.unpack_dual(t).tangent is not None for t in inputs)
    if types.Jvp in kinds or dual:
        raise NotImplementedError(
            f"losskit: forward-mode differentiation (torch.func.jvp, jacfwd, hessian, "
            f"forward_ad dual tensors) of {name} is not supported: losskit's autograd rule "
            "is the closed-form reverse-mode gradient. Use backward(), torch.func.grad, "
            "vjp or jacrev.")
    n_grad = kinds.count(types.Grad)
    if want == "value" and n_grad >= 2:
        raise NotImplementedError(
            f"losskit: {name} under nested torch.func.grad/jacrev: the inner backward is "
            "losskit's closed-form first derivative, and a derivative of it needs second "
            "derivatives, which losskit does not provide yet. Use a PyTorch loss for "
            "second-order terms.")
    if want != "value" and n_grad >= 1:
        raise NotImplementedError(
            f"losskit: {name}.grad()/.value_and_grad() under torch.func.grad/jacrev: the "
            "gradient they return is a plain tensor (no graph is recorded), and a "
            "derivative of it needs second derivatives, which losskit does not provide "
            f"yet. For the first derivative, differentiate {name}(...) itself.")


def _is_one(grad_value) -> bool:
    """Whether the upstream gradient is a plain eager CPU scalar 1 (``loss.backward()``):
    then the saved gradient is the answer and the multiplication (a pass over it and a new
    buffer) is skipped. Under torch.compile and torch.func the product is always taken."""
    return (type(grad_value) is torch.Tensor and grad_value.device.type == "cpu"
            and grad_value.ndim == 0 and not torch.compiler.is_compiling()
            and not torch._C._functorch.is_functorch_wrapped_tensor(grad_value)
            and grad_value.item() == 1.0)


def _none_backward(key, inputs, tensor_options, options, wrt, present, grad_value):
    """The vector-Jacobian product of the per-example values: the gradient of
    ``sum(grad_value * loss)``, i.e. the loss with ``sample_weight=grad_value`` (times any
    sample weight, of any sign) summed. The upstream gradient joins the tensor options as
    ``__cotangent__`` by editing the options' text (no evaluation here: under
    ``torch.compile`` this function is traced, and the operator decodes the text)."""
    sep = ", " if options != "{}" else ""
    text = f"{options[:-1]}{sep}'__cotangent__': _T({len(tensor_options)})}}"
    out = _operator(key, inputs, [*tensor_options, grad_value], text, "sum", wrt, False,
                    present)
    return out[1:]


# ----------------------------------------------------------------------------- entry point
def _as_tensor(a, like: torch.Tensor):
    if a is None or isinstance(a, torch.Tensor):
        return a
    if isinstance(a, (np.ndarray, list, tuple, int, float, np.generic)):
        return torch.as_tensor(np.asarray(a), device=like.device)
    return a


def call(loss: _Loss, arrays, reduction, sample_weight, options, want, wrt, out, validate):
    """The loss on PyTorch tensors (found by :func:`losskit.core.dispatch.framework_hook`).

    ``want``: "value" (a tensor with the closed-form backward when an input requires
    grad), "grad" or "both" (plain tensors, no graph).
    """
    names = loss.inputs
    if len(arrays) > len(names):
        raise TypeError(f"{loss.name}() takes {len(names)} arrays ({', '.join(names)}); "
                        f"got {len(arrays)}")
    if reduction is None:
        reduction = loss._defaults.get("reduction", "mean")
    if not isinstance(reduction, str):
        from .core.validation import check_choice
        from .core.loss import REDUCTIONS

        check_choice("reduction", reduction, REDUCTIONS)
    pred = arrays[0]
    if any(a is not None and not isinstance(a, torch.Tensor) for a in (*arrays, sample_weight)):
        # arrays of two libraries: the pipeline says which argument is which
        with quiet():
            return loss._pipeline(tuple(arrays), reduction, sample_weight, options, want, wrt,
                                  out)
    tensors = list(arrays)
    present = [i for i, t in enumerate(tensors) if t is not None]
    inputs = [tensors[i] for i in present]
    opts = {k: (_as_tensor(v, pred) if isinstance(v, np.ndarray) else v)
            for k, v in options.items()}
    text, tensor_options = _encode(opts, _as_tensor(sample_weight, pred)
                                   if sample_weight is not None else None)
    key = _key(loss)
    if not torch.compiler.is_compiling():
        _refuse_unrecorded_derivatives(loss.name, want, inputs)

    if want == "value":
        diff = [i for i in present if names[i] in loss.differentiable]
        need = torch.is_grad_enabled() and any(tensors[i].requires_grad for i in diff)
        if not need:
            return _operator(key, inputs, tensor_options, text, reduction, [],
                             validate, present)[0]
        wrt_idx = [i for i in diff if tensors[i].requires_grad]
        apply = _ClosedForm.apply
        if _plain_eager(inputs, tensor_options):
            # Function.apply binds its arguments with inspect.signature on every call
            # (for functorch); eagerly, with every argument positional, the C apply
            # under it does the same work
            apply = _C_APPLY
        return apply(key, tensor_options, text, reduction, wrt_idx, validate, present,
                     *inputs)[0]

    wrt_names, as_tuple = loss._wrt_names(wrt)
    if wrt != "all":  # an optional differentiable input left out has no gradient to give
        for n in wrt_names:
            i = names.index(n)
            if n in loss.optional_inputs and (i >= len(arrays) or arrays[i] is None):
                raise ValueError(f"{loss.name}(): wrt={n!r} needs a `{n}`; got {n}=None "
                                 f"(a layer without a {n} has no {n} gradient)")
    wanted = [names.index(n) for n in wrt_names]
    wrt_idx = [i for i in wanted if i in present]
    detached = [t.detach() for t in inputs]
    with torch.no_grad():
        result = _operator(key, detached, [t.detach() for t in tensor_options], text,
                           reduction, wrt_idx, validate, present)
    value, grads = result[0], dict(zip(wrt_idx, result[1:]))
    gs = [grads.get(i) for i in wanted]
    if out is not None:
        if as_tuple:
            raise TypeError(f"{loss.name}(): `out` takes one gradient, but wrt={wrt!r} "
                            "returns a tuple of gradients; leave `out` out")
        import array_api_compat

        check_out(out, tuple(gs[0].shape), gs[0].dtype, array_api_compat.array_namespace(gs[0]),
                  wrt_names[0])
        with torch.no_grad():
            out.detach().copy_(gs[0])
        gs[0] = out
    grad = tuple(gs) if as_tuple else gs[0]
    return grad if want == "grad" else (value, grad)


# ----------------------------------------------------------------------------- nn.Module
class Loss(torch.nn.Module):
    """A losskit loss as a PyTorch criterion: ``losskit.torch.Loss(lk.huber, delta=0.5)``.

    ``forward(prediction, target, ...)`` takes the loss's arrays in losskit's order
    (prediction first, as PyTorch's criteria do) and returns its value; the backward is the
    loss's closed-form gradient. ``reduction`` (default ``"mean"``) and every option of
    the loss are fixed at construction and shown by ``repr``; ``sample_weight`` (and
    options) may also be passed per call to ``forward``.

    >>> import torch, losskit as lk, losskit.torch
    >>> criterion = losskit.torch.Loss(lk.softmax_cross_entropy, label_smoothing=0.1)
    >>> criterion
    Loss(softmax_cross_entropy, reduction='mean', label_smoothing=0.1)
    >>> z = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    >>> criterion(z, torch.tensor([0, 1])).backward()
    >>> z.grad.shape
    torch.Size([2, 2])
    """

    def __init__(self, loss: _Loss, *, reduction: str = "mean", validate: bool = True,
                 **options):
        super().__init__()
        if not isinstance(loss, _Loss):
            raise TypeError(f"`loss` must be a losskit loss (such as lk.mse); got "
                            f"{type(loss).__name__}")
        known = loss.option_defaults()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(loss._unknown_message(set(unknown)))
        from .core.loss import REDUCTIONS
        from .core.validation import check_choice

        check_choice("reduction", reduction, REDUCTIONS)
        if not isinstance(validate, bool):
            raise TypeError(f"`validate` must be True or False; got {validate!r}")
        self.loss = loss
        self.reduction = reduction
        self.validate = validate
        self.options = dict(options)

    def forward(self, *arrays, sample_weight=None, **options):
        return self.loss(*arrays, reduction=self.reduction, sample_weight=sample_weight,
                         validate=self.validate, **{**self.options, **options})

    def extra_repr(self) -> str:
        parts = [self.loss.name, f"reduction={self.reduction!r}"]
        if not self.validate:
            parts.append("validate=False")
        parts += [f"{k}={v!r}" for k, v in self.options.items()]
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"Loss({self.extra_repr()})"
