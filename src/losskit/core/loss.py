r"""The one ``Loss`` machinery every loss is built on.

A concrete loss only writes a *kernel*: ``_compute(ctx, prediction, target, **options)``
returning :class:`Terms`, the **unreduced** per-example value and its closed-form
gradient with respect to the prediction. Everything else lives here, once:

* array-library dispatch (NumPy, PyTorch, JAX, CuPy, Dask, array-api-strict) and devices;
* dtype rules (float16/bfloat16 computed in float32, the input dtype returned;
  integer predictions are an error);
* ``sample_weight``, the class/ignore weights a kernel reports, and ``reduction``;
* scaling the gradient by exactly the same reduction as the value.

Reductions, with per-example values :math:`\ell_n`, sample weights :math:`s_n` and the
kernel's denominator weights :math:`w_n` (1, 0 for an ignored target, or the class
weight :math:`c_{y_n}` of the target):

.. math::

    \text{none}: s_n \ell_n \qquad
    \text{sum}: \sum_n s_n \ell_n \qquad
    \text{mean}: \frac{\sum_n s_n \ell_n}{\sum_n s_n w_n} \qquad
    \text{batchmean}: \frac{1}{N}\sum_n s_n \ell_n

where :math:`N` is the size of the first axis of the unreduced loss (1 for a single
example, whose loss is 0-d). A mean over nothing
(an empty batch, every target ignored, every weight 0) is defined as **0 with a zero
gradient**, so a padded-out batch contributes nothing instead of poisoning training
with NaN (PyTorch returns NaN there; Optax's masked means return 0). A sample weight
of 0 removes its example entirely, even where the loss is ``inf`` or NaN.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import types
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import array_api_compat
import numpy as np

from . import dispatch
from .primitives import _weighted
from .validation import (
    same_shape,
    _dtype_name,
    check_choice,
    check_floating,
    check_in_range,
    check_integer,
    check_numeric,
    check_same_shape,
    check_scalar,
    deferred_checks,
    poison,
)
from .arrays import (as_array, compute_dtype, device_of, ensure_array, namespace, quiet,
                     unchecked, with_known_sizes, without_autograd)

__all__ = ["Loss", "Terms", "Context", "catalog", "check_out", "fill_doc", "REDUCTIONS"]

REDUCTIONS = ("none", "sum", "mean", "batchmean")

_REGISTRY: dict[str, "Loss"] = {}
#: ``option_defaults`` per class (``inspect.signature`` is too slow to run on every call)
_OPTIONS: dict[type, dict[str, Any]] = {}


@dataclass
class Context:
    """What a kernel needs to know besides its arrays."""

    xp: Any
    dtype: Any  # the caller's floating dtype
    work: Any  # the dtype arithmetic runs in
    device: Any
    loss: str

    #: second order: None (value and gradient only), True (the Hessian's diagonal is
    #: wanted: ``Terms.hess``) or the vector of a Hessian-vector product (``Terms.hvp``),
    #: an array of the prediction's shape in the work dtype
    second: Any = None

    @property
    def wants_hessian(self) -> bool:
        """Whether the kernel should fill ``Terms.hess`` (and ``Terms.hvp`` when
        :attr:`vector` is set)."""
        return self.second is not None

    @property
    def vector(self):
        """The vector of a Hessian-vector product, or None."""
        s = self.second
        return None if s is None or s is True else s

    def pointwise_hessian(self, formula, *args):
        """``formula.hessian`` (a pointwise second derivative, :class:`~losskit.core.formula.
        Formula`) on ``args`` when a Hessian is wanted, else None."""
        if self.second is None:
            return None
        return formula.hessian.on(self.xp)(*args)

    @property
    def eps(self) -> float:
        """Machine epsilon of the caller's dtype (clamps are dtype-aware)."""
        return float(self.xp.finfo(self.dtype).eps)

    def asarray(self, x, name: str):
        """``x`` as an array of the prediction's library, on its device."""
        return as_array(x, self.xp, device=self.device, name=name, loss=self.loss)


@dataclass
class Terms:
    """A kernel's answer.

    value:  per-example loss, shape ``E`` (class weights already applied).
    grad:   d value / d prediction, the prediction's shape (``None`` when not asked).
    weight: denominator weights for ``reduction="mean"``, shape ``E``; ``None`` means 1.
    expand: maps an ``E``-shaped array to one that broadcasts against the prediction.
    """

    value: Any
    grad: Any = None
    weight: Any = None
    expand: Callable[[Any], Any] = staticmethod(lambda a: a)  # type: ignore[assignment]
    #: gradients with respect to the other differentiable inputs, by name, in the same
    #: per-element layout as ``grad`` (so ``expand`` applies to them too)
    grads: dict[str, Any] | None = None
    #: per input, a map applied after weighting and reduction scaling (e.g. summing a
    #: broadcast input's gradient back to its own shape)
    finalize: dict[str, Callable[[Any], Any]] | None = None
    #: the diagonal of the Hessian of ``sum(value)`` with respect to the prediction, in the
    #: prediction's layout (only when ``ctx.wants_hessian``)
    hess: Any = None
    #: the Hessian of ``sum(value)`` times ``ctx.vector``, the prediction's layout (only
    #: when ``ctx.vector`` is set; a loss whose Hessian is diagonal may leave it None: the
    #: pipeline then multiplies ``hess`` by the vector)
    hvp: Any = None


_COMMON_PARAMETERS = """\
reduction : {"none", "sum", "mean", "batchmean"}, default "mean"
    ``"none"`` returns the per-example loss (its ``.grad`` is the gradient of the sum);
    ``"sum"``; ``"mean"`` divides by the total weight that took part (the count of
    examples when unweighted; ignored targets excluded); ``"batchmean"`` divides the sum
    by the batch size, the first axis of the unreduced loss (1 for a single example).
    A mean over nothing is 0, with a zero gradient.
sample_weight : array or float, optional
    Non-negative weight per example: the shape of the unreduced loss, ``(N,)`` to
    weight every element of each of the N examples, or one number for every element
    (it scales ``"none"`` and ``"sum"``; the weighted ``"mean"`` divides it out again).
    A weight of 0 removes the example."""


def fill_doc(doc: str, **parts: str) -> str:
    """Substitute shared docstring paragraphs for ``{name}`` placeholders.

    Each placeholder stands alone on its line; the paragraph's lines are indented like
    the placeholder, so the numpydoc sections stay aligned (SciPy's ``doccer`` idea).
    """
    lines = []
    for line in doc.split("\n"):
        stripped = line.strip()
        key = stripped[1:-1] if stripped.startswith("{") and stripped.endswith("}") else None
        if key in parts:
            indent = line[: len(line) - len(line.lstrip())]
            lines.extend(indent + p if p else p for p in parts[key].split("\n"))
        else:
            lines.append(line)
    return "\n".join(lines)


class Loss:
    """Base class: a loss with its value, exact gradient and metadata.

    Subclasses set the class attributes below and implement ``_compute``. Instances
    are callable: ``loss(prediction, target, **options)`` gives the value,
    ``loss.grad(...)`` the gradient with respect to ``prediction`` (same shape and dtype)
    and ``loss.value_and_grad(...)`` both from one pass. ``Loss(**defaults)`` makes a
    copy whose options default to ``defaults`` (like a PyTorch loss module).
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    family: ClassVar[str] = ""
    prediction: ClassVar[str] = ""
    target: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    gradient_formula: ClassVar[str] = ""
    when_to_use: ClassVar[str] = ""
    references: ClassVar[tuple[str, ...]] = ()
    #: names of the positional arrays, in order (the first is the prediction)
    inputs: ClassVar[tuple[str, ...]] = ("prediction", "target")
    #: the inputs ``.grad`` can differentiate with respect to (the first is the default)
    differentiable: ClassVar[tuple[str, ...]] = ("prediction",)
    #: inputs that may be None (their kernel says what None means, e.g. a reference-free
    #: preference loss without reference log-probabilities)
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    #: the second derivative in LaTeX (what ``hessian`` computes), for the docs, the atlas
    #: and ``losskit explain``
    hessian_formula: ClassVar[str] = ""
    #: the structure of the Hessian with respect to the prediction, what :meth:`hessian`
    #: and :meth:`hvp` give: ``"diagonal"`` (each element's loss depends on its own
    #: prediction only), ``"dense"`` (the elements of a row or of the whole input are
    #: coupled, as by a softmax: :meth:`hessian` is the diagonal, :meth:`hvp` the exact
    #: product), ``"zero"`` (piecewise linear: the Hessian is 0 wherever it exists and
    #: undefined at the kinks; :meth:`hessian` returns zeros), ``""`` (not available)
    second_order: ClassVar[str] = ""
    #: None when the loss of a batch is the sum of the losses of blocks of its rows (axis 0
    #: of every input) with the generic weighted mean, what ``losskit.evaluate`` streams;
    #: else the reason, for the error message. :meth:`streaming_refusal` reads it.
    not_streamable: ClassVar[str | None] = None
    #: whether the generic code takes Dask arrays whose sizes are unknown (NaN, left by
    #: boolean masking) as they are, lazily; False: it needs the sizes as numbers (to
    #: pair, stack or loop over rows), and such arrays get their chunk sizes computed
    #: first (:func:`~losskit.core.arrays.with_known_sizes`)
    lazy_sizes: ClassVar[bool] = True

    def streaming_refusal(self, options: dict) -> str | None:
        """Why ``losskit.evaluate`` cannot stream this loss with these options (None: it
        can). A loss whose options decide it (``per_image``) overrides this."""
        return self.not_streamable

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__doc__:
            cls.__doc__ = fill_doc(cls.__doc__, common_parameters=_COMMON_PARAMETERS)
        _OPTIONS.pop(cls, None)
        for method in _PUBLIC_METHODS:
            setattr(cls, method, _with_signature(cls, getattr(cls, method)))

    def __init__(self, **defaults):
        options = self.option_defaults()
        unknown = set(defaults) - set(options) - {"reduction", "sample_weight"}
        if unknown:
            raise TypeError(self._unknown_message(unknown))
        if "reduction" in defaults:
            check_choice("reduction", defaults["reduction"], REDUCTIONS)
        self._defaults = _python_scalars(defaults)
        if defaults:  # inspect.signature(copy) shows the copy's own defaults
            sig = inspect.signature(type(self).__call__)
            self.__signature__ = sig.replace(parameters=[
                p.replace(default=self._defaults.get(p.name, p.default))
                for p in list(sig.parameters.values())[1:]])

    # ------------------------------------------------------------------ metadata
    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """The loss-specific keyword options and their defaults."""
        return dict(cls._options())

    @classmethod
    def _options(cls) -> dict[str, Any]:
        """``option_defaults``, introspected once per class (callers must not mutate it)."""
        known = _OPTIONS.get(cls)
        if known is None:
            sig = inspect.signature(cls._compute)
            known = _OPTIONS[cls] = {
                p.name: p.default for p in sig.parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "need_grad"}
        return known

    def info(self) -> dict[str, Any]:
        """Metadata as a plain dict (for tables, docs and the command line)."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "family": self.family,
            "prediction": self.prediction,
            "target": self.target,
            "formula": self.formula,
            "gradient_formula": self.gradient_formula,
            "hessian_formula": self.hessian_formula,
            "second_order": self.second_order,
            "when_to_use": self.when_to_use,
            "inputs": list(self.inputs),
            "differentiable": list(self.differentiable),
            "options": {k: v for k, v in self.option_defaults().items()},
            "references": list(self.references),
        }

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self._defaults.items())
        return f"<losskit.{self.name}({', '.join(self.inputs)}; prediction: {self.prediction}{extra})>"

    def _unknown_message(self, unknown) -> str:
        valid = ", ".join(["reduction", "sample_weight", *self.option_defaults()])
        names = ", ".join(sorted(repr(u) for u in unknown))
        return f"{self.name}() got unexpected keyword argument(s) {names}; valid options: {valid}"

    # ------------------------------------------------------------------ kernel API
    def _compute(self, ctx: Context, prediction, *others, need_grad: bool) -> Terms:
        """Unreduced values and closed-form gradients; ``others`` are ``inputs[1:]``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers for kernels
    @staticmethod
    def _real_target(ctx: Context, prediction, target, *, name: str = "target"):
        """A real-valued target of exactly the prediction's shape, in the compute dtype."""
        xp = ctx.xp
        t = ctx.asarray(target, name)
        check_numeric(xp, name, t)
        check_same_shape("prediction", prediction.shape, name, t.shape)
        return xp.astype(t, ctx.work) if t.dtype != ctx.work else t

    @staticmethod
    def _probability_target(ctx: Context, prediction, target, *, name: str = "target"):
        t = Loss._real_target(ctx, prediction, target, name=name)
        check_in_range(ctx.xp, name, t, 0.0, 1.0, hint="targets are probabilities")
        return t

    @staticmethod
    def _binary_target(ctx: Context, prediction, target, *, ignore_index=None,
                       label_smoothing=0.0):
        """The probability target of an elementwise binary loss, with two options:

        * ``ignore_index``: target elements equal to it take no part (PyTorch's convention
          for labels, used by segmentation code for masked pixels); returned as ``keep``,
          a 0/1 array of the target's shape (``None`` without the option), which
          :meth:`_drop_ignored` applies to the loss's terms;
        * ``label_smoothing`` ``s``: Keras's binary smoothing
          :math:`t (1 - s) + s / 2`, towards 1/2.

        Returns ``(t, keep)``."""
        xp = ctx.xp
        s = check_scalar("label_smoothing", label_smoothing, lo=0.0, hi=1.0)
        ignore_index = check_integer("ignore_index", ignore_index, loss=ctx.loss,
                                     or_none=True)
        keep = None
        if ignore_index is not None:
            # converted once: the range check below runs on the work-dtype copy
            raw = Loss._real_target(ctx, prediction, target)
            ignored = raw == ignore_index
            target = xp.where(ignored, xp.zeros_like(raw), raw)
            keep = xp.astype(~ignored, ctx.work)
        t = Loss._probability_target(ctx, prediction, target)
        if s:
            t = t * (1.0 - s) + 0.5 * s
        return t, keep

    @staticmethod
    def _drop_ignored(xp, terms: Terms, keep) -> Terms:
        """``terms`` with the elements where ``keep`` is 0 removed from the value, the
        gradient and the mean's denominator."""
        if keep is None:
            return terms
        def drop(a):
            return None if a is None else xp.where(keep > 0, a, xp.zeros_like(a))

        return Terms(drop(terms.value), drop(terms.grad), keep, terms.expand,
                     hess=drop(terms.hess), hvp=drop(terms.hvp))

    # ------------------------------------------------------------------ public API
    def __call__(self, *arrays, reduction=None, sample_weight=None, validate=True, **options):
        return self._entry(arrays, reduction, sample_weight, options, "value", None, None,
                           validate)

    def grad(self, *arrays, wrt=None, reduction=None, sample_weight=None, out=None,
             validate=True, **options):
        """Gradient of the (reduced) loss with respect to ``prediction``.

        Same shape and dtype as ``prediction``; with ``reduction="none"`` it is the
        gradient of the sum of the per-example losses. Losses with several differentiable
        inputs (``loss.differentiable``) take ``wrt=`` a name, a tuple of names or
        ``"all"``, and then return a tuple.

        ``out=``: an array of the prediction's library with the gradient's shape and dtype,
        writeable (so not a JAX array). The gradient is written into it and ``out`` itself
        is returned. On NumPy's fast paths (``losskit.kernels.fast_paths``) the kernel writes into it
        directly, allocating nothing of its size; elsewhere the gradient is computed, then
        copied into ``out``. ``out`` may be one of the inputs: it is overwritten once they
        have been read. After an error its contents are unspecified.

        ``validate=False`` (also of the call and :meth:`value_and_grad`) skips the checks
        that read array values (label and probability ranges, non-negative weights, box
        order); shapes, dtypes and options are still checked.
        """
        return self._entry(arrays, reduction, sample_weight, options, "grad", wrt, out,
                           validate)

    def value_and_grad(self, *arrays, wrt=None, reduction=None, sample_weight=None,
                       out=None, validate=True, **options):
        """``(value, grad)`` from one pass; equal to ``(loss(...), loss.grad(...))``.

        ``out=`` receives the gradient, as in :meth:`grad`.
        """
        return self._entry(arrays, reduction, sample_weight, options, "both", wrt, out,
                           validate)

    def hessian(self, *arrays, reduction=None, sample_weight=None, validate=True,
                **options):
        """The diagonal of the Hessian of the (reduced) loss with respect to ``prediction``.

        Same shape and dtype as ``prediction`` and the same reduction scaling as
        :meth:`grad` (with ``reduction="none"`` it is the Hessian of the sum of the
        per-example losses): entry ``i`` is :math:`\\partial^2 L / \\partial y_i^2`, what
        gradient-boosting libraries take as the per-row Hessian. ``loss.second_order``
        says what it is: ``"diagonal"`` (the whole Hessian), ``"dense"`` (the diagonal of
        a Hessian that couples the elements of a row: use :meth:`hvp` for the exact
        products), ``"zero"`` (a piecewise-linear loss: 0 wherever the second derivative
        exists; undefined at the kinks). A loss with ``second_order == ""`` raises
        ``TypeError``. The formula is ``loss.hessian_formula``.

        Computed by the generic Array-API kernels on every array library (PyTorch tensors
        are read without their autograd history: the Hessian is a plain tensor).
        """
        return self._second_entry(arrays, reduction, sample_weight, options, "hessian",
                                  None, validate)

    def grad_and_hessian(self, *arrays, reduction=None, sample_weight=None, validate=True,
                         **options):
        """``(grad, hessian)`` from one pass: equal to ``(loss.grad(...),
        loss.hessian(...))``, the pair a gradient-boosting objective returns."""
        return self._second_entry(arrays, reduction, sample_weight, options,
                                  "grad_and_hessian", None, validate)

    def hvp(self, *arrays, vector, reduction=None, sample_weight=None, validate=True,
            **options):
        """The exact Hessian-vector product :math:`\\nabla^2_y L \\, v` of the (reduced) loss
        with respect to ``prediction``, for ``vector`` :math:`v` of the prediction's shape;
        the result has that shape and the prediction's dtype, with the reduction scaling
        of :meth:`grad`. For a loss with a diagonal Hessian it is ``hessian(...) * v``;
        for a coupled one (``second_order == "dense"``, e.g. the softmax
        cross-entropy, :math:`p \\odot v - p\\,(p \\cdot v)` per row) the product
        is formed without the Hessian matrix."""
        return self._second_entry(arrays, reduction, sample_weight, options, "hvp", vector,
                                  validate)

    def _second_entry(self, arrays, reduction, sample_weight, options, want, vector,
                      validate):
        """Every second-order call: the generic pipeline with ``ctx.second`` set."""
        if not self.second_order:
            raise TypeError(
                f"{self.name} has no Hessian in losskit yet (second_order is ''): its "
                "prediction is not per element or per row; use its closed-form gradient "
                f"(lk.{self.name}.grad) with finite differences, or autodiff of the loss")
        arrays, validate, options = self._call_prologue(arrays, validate, options)
        arrays = tuple(without_autograd(a) for a in arrays)
        if want == "hvp":
            if vector is None or not hasattr(vector, "shape"):
                raise TypeError(f"`vector` of {self.name}.hvp must be an array of the "
                                f"prediction's shape; got {type(vector).__name__}")
            vector = without_autograd(vector)
        return self._checked_pipeline(validate, arrays, reduction, sample_weight, options,
                                      want, None, None, second=True if vector is None
                                      else vector)

    def _bind_inputs(self, arrays, options):
        """``(arrays, options)`` with the inputs given by keyword (``ref_chosen_logps=x``)
        moved into ``arrays`` and trailing optional inputs left out filled with None."""
        names = self.inputs
        if len(arrays) >= len(names):
            return arrays, options
        rest = names[len(arrays):]
        if not (options and any(n in options for n in rest)) and not all(
                n in self.optional_inputs for n in rest):
            return arrays, options  # the pipeline's own error names what is missing
        options = dict(options)
        arrays = list(arrays)
        for n in rest:
            if n in options:
                arrays.append(options.pop(n))
            elif n in self.optional_inputs:
                arrays.append(None)
            else:
                raise TypeError(f"{self.name}() missing the array `{n}` (inputs: "
                                f"{', '.join(names)})")
        return tuple(arrays), options

    def _call_prologue(self, arrays, validate, options):
        """The start of every public call: ``validate`` checked (True or False), the
        options' NumPy scalars as Python ones, inputs given by keyword or left out
        (optional ones) bound. Returns ``(arrays, validate, options)``."""
        if validate is not True:
            if not isinstance(validate, (bool, np.bool_)):
                raise TypeError(f"`validate` of {self.name} must be True or False; "
                                f"got {validate!r}")
            validate = bool(validate)
        if options:
            options = _python_scalars(options)
        if len(arrays) < len(self.inputs):
            arrays, options = self._bind_inputs(arrays, options)
        return arrays, validate, options

    def _entry(self, arrays, reduction, sample_weight, options, want, wrt, out, validate):
        """Every public call: a framework's adapter (PyTorch tensors: losskit.torch, JAX
        arrays: losskit.jax, found through losskit.core.dispatch) or the pipeline, with or
        without the checks that read values."""
        arrays, validate, options = self._call_prologue(arrays, validate, options)
        if arrays and type(arrays[0]) is not np.ndarray:
            hook = dispatch.framework_hook(arrays[0])
            if hook is not None:
                return hook(self, arrays, reduction, sample_weight, options, want, wrt, out,
                            validate)
        return self._checked_pipeline(validate, arrays, reduction, sample_weight, options,
                                      want, wrt, out)

    def _checked_pipeline(self, check, arrays, reduction, sample_weight, options, want, wrt,
                          out=None, second=None):
        """The pipeline; with ``check`` False, inside :func:`unchecked` (no value reads);
        NumPy's floating-point warnings silenced (inf and NaN are defined inputs, see
        ``quiet``), also for the losses that run their own pipeline."""
        # (a loss with its own _pipeline has no second order: no `second` passed to it)
        extra = () if second is None else (second,)
        if not self.lazy_sizes and arrays and type(arrays[0]) is not np.ndarray:
            arrays = tuple(with_known_sizes(a) for a in arrays)
            sample_weight = with_known_sizes(sample_weight)
        with quiet():
            if check:
                return self._pipeline(arrays, reduction, sample_weight, options, want, wrt,
                                      out, *extra)
            with unchecked():
                return self._pipeline(arrays, reduction, sample_weight, options, want, wrt,
                                      out, *extra)

    # ------------------------------------------------------------------ the one pipeline
    def _wrt_names(self, wrt):
        if wrt is None:
            return (self.differentiable[0],), False
        if wrt == "all":
            return tuple(self.differentiable), True
        names = (wrt,) if isinstance(wrt, str) else tuple(wrt)
        for n in names:
            if n not in self.differentiable:
                choices = ", ".join(repr(d) for d in (*self.differentiable, "all"))
                raise ValueError(f"`wrt` of {self.name} must be one of {choices}; got {n!r}")
        return names, not isinstance(wrt, str)

    def _own_pipeline_setup(self, arrays, reduction, sample_weight, options, want, wrt, out,
                            *, optional=()):
        """The start of a loss's own ``_pipeline`` (one that does not run ``_compute``:
        linear_cross_entropy, the blocked similarity and mining losses): the defaults
        applied, the options and ``reduction`` checked, ``wrt`` resolved, the one array
        library found; the inputs named in ``optional`` may be None. Returns
        ``(xp, reduction, sample_weight, opts, need_grad, wrt_names, as_tuple)``."""
        names = self.inputs
        if len(arrays) != len(names):
            raise TypeError(f"{self.name}() takes {len(names)} arrays ({', '.join(names)}); "
                            f"got {len(arrays)}")
        defaults = self._defaults
        if reduction is None:
            reduction = defaults.get("reduction", "mean")
        if sample_weight is None:
            sample_weight = defaults.get("sample_weight")
        known = self.option_defaults()
        unknown = set(options) - set(known)
        if unknown:
            raise TypeError(self._unknown_message(unknown))
        opts = {k: options.get(k, defaults.get(k, v)) for k, v in known.items()}
        check_choice("reduction", reduction, REDUCTIONS)
        need_grad = want != "value"
        wrt_names, as_tuple = self._wrt_names(wrt) if need_grad else ((), False)
        if out is not None and need_grad and as_tuple:
            raise TypeError(f"{self.name}(): `out` takes one gradient, but wrt={wrt!r} "
                            "returns a tuple of gradients; leave `out` out")
        named = list(zip(names, arrays)) + [("sample_weight", sample_weight)]
        try:
            xp = namespace(*arrays, sample_weight)
        except TypeError as exc:
            kinds = ", ".join(f"`{n}` is a {type(a).__module__.split('.')[0]}."
                              f"{type(a).__name__}" for n, a in named if hasattr(a, "shape"))
            raise TypeError(f"{self.name}(): all array arguments must come from one array "
                            f"library; {kinds}. Convert them to one library first") from exc
        for n, a in named[:-1]:
            if a is None and n not in optional:
                raise TypeError(f"{self.name}(): `{n}` must be an array; got None")
        return xp, reduction, sample_weight, opts, need_grad, wrt_names, as_tuple

    def _pipeline(self, arrays, reduction, sample_weight, options, want, wrt, out=None,
                  second=None):
        names = self.inputs
        if len(arrays) != len(names):
            raise TypeError(f"{self.name}() takes {len(names)} arrays ({', '.join(names)}); "
                            f"got {len(arrays)}")
        defaults = self._defaults
        if reduction is None:
            reduction = defaults.get("reduction", "mean")
        if sample_weight is None:
            sample_weight = defaults.get("sample_weight")
        known = _OPTIONS.get(type(self))
        if known is None:
            known = self._options()
        if options:
            unknown = set(options) - set(known)
            if unknown:
                raise TypeError(self._unknown_message(unknown))
        if options or defaults:
            opts = {k: options.get(k, defaults.get(k, v)) for k, v in known.items()}
        else:
            opts = known  # read only
        if type(reduction) is not str or reduction not in REDUCTIONS:
            check_choice("reduction", reduction, REDUCTIONS)
        need_grad = want != "value"
        wrt_names, as_tuple = self._wrt_names(wrt) if need_grad else ((), False)

        # plain NumPy arrays and the gradient (if any) with respect to the prediction: the
        # fused kernel registered for this loss (losskit.core.dispatch), which answers
        # NotImplemented for what it does not cover, invalid input included (the generic
        # path then raises its own errors)
        fast = dispatch.fast_path_for(type(self)) if dispatch.ENABLED else None
        if second is not None:  # a fused second-order kernel, where the family has one
            second_fast = getattr(fast, "second_order", None)
            if second_fast is not None and second is True and type(arrays[0]) is np.ndarray:
                result = second_fast(self, arrays, reduction, sample_weight, opts, want)
                if result is not NotImplemented:
                    return result
            fast = None
        if (fast is not None and type(arrays[0]) is np.ndarray
                and (not need_grad or wrt is None
                     or (wrt_names == self.differentiable[:1]
                         and not (as_tuple and out is not None)))):
            result = fast(self, arrays, reduction, sample_weight, opts, want, out)
            if result is not NotImplemented:
                if as_tuple:  # wrt="all" (or a 1-tuple) of a loss with one differentiable input
                    return (result,) if want == "grad" else (result[0], (result[1],))
                return result
        elif (fast is not None and type(arrays[0]) is np.ndarray
              and getattr(fast, "takes_wrt", False) and not (as_tuple and out is not None)):
            index = tuple(self.differentiable.index(n) for n in wrt_names)
            result = fast(self, arrays, reduction, sample_weight, opts, want, out,
                          wrt=index if as_tuple else index[0])
            if result is not NotImplemented:
                return result

        with quiet():
            return self._generic(arrays, reduction, sample_weight, opts, want, wrt, wrt_names,
                                 as_tuple, out, second)

    def _generic(self, arrays, reduction, sample_weight, opts, want, wrt, wrt_names, as_tuple,
                 out, second=None):
        """The Array-API pipeline: validation, the kernel, weights, reduction, scaling."""
        names = self.inputs
        need_grad = want != "value"
        named = list(zip(names, arrays)) + [("sample_weight", sample_weight)]
        try:
            xp = namespace(*arrays, sample_weight)
        except TypeError as exc:  # say which argument is which library
            kinds = ", ".join(f"`{n}` is a {type(a).__module__.split('.')[0]}.{type(a).__name__}"
                              for n, a in named if hasattr(a, "shape"))
            raise TypeError(f"{self.name}(): all array arguments must come from one array "
                            f"library; {kinds}. Convert them to one library first") from exc
        for n, a in named[:-1]:
            if a is None and n not in self.optional_inputs:
                raise TypeError(f"{self.name}(): `{n}` must be an array; got None")
        pred = as_array(arrays[0], xp, name=names[0], loss=self.name)
        check_floating(xp, names[0], pred, loss=self.name)
        dtype = pred.dtype
        work = compute_dtype(xp, dtype)
        if work != dtype:
            pred = xp.astype(pred, work)
        ctx = Context(xp=xp, dtype=dtype, work=work, device=device_of(pred), loss=self.name)
        if second is not None:
            ctx.second = second if second is True else self._hvp_vector(ctx, pred, second)
        if out is not None and need_grad:
            if as_tuple:
                raise TypeError(f"{self.name}(): `out` takes one gradient, but wrt={wrt!r} "
                                "returns a tuple of gradients; leave `out` out")
            if wrt_names[0] == self.differentiable[0]:  # else checked once the shape is known
                check_out(out, tuple(pred.shape), dtype, xp, names[0])

        with deferred_checks() as pending:  # value checks that could not read values
            terms = self._compute(ctx, pred, *arrays[1:], need_grad=need_grad, **opts)
            sw = (None if sample_weight is None else
                  self._sample_weight(ctx, sample_weight, terms.value.shape))
        value, weight = terms.value, terms.weight
        grads = {}
        if need_grad:
            for n in wrt_names:
                grads[n] = terms.grad if n == self.differentiable[0] else terms.grads[n]
        if second is not None:  # second order: the Hessian's arrays are scaled like grads
            grads, wrt_names = self._second_terms(ctx, terms, grads, want)

        if sample_weight is not None:
            # a zero weight removes the example, even an inf/NaN one
            value = _weighted(xp, sw, value)
            weight = sw if weight is None else sw * weight
            grads = {n: _weighted(xp, terms.expand(sw), g) for n, g in grads.items()}

        if reduction == "none":
            scale = None
        else:
            if reduction == "sum":
                scale = None
            elif reduction == "batchmean":
                # the batch is the first axis of the unreduced loss; a 0-d loss is one example
                n = value.shape[0] if value.ndim else 1
                if n is None or n != n:  # unknown until computed (Dask after masking)
                    scale = _lazy_reciprocal(xp, value, first_axis=True)
                else:
                    scale = 1.0 / n if n else 0.0
            else:  # mean
                if weight is None:
                    count = 1
                    for d in value.shape:
                        count = count * d if d is not None else float("nan")
                    if count != count:  # unknown until computed (Dask after masking)
                        scale = _lazy_reciprocal(xp, value, first_axis=False)
                    else:
                        scale = 1.0 / count if count else 0.0
                else:
                    total = xp.sum(weight)
                    # a mean over nothing (total weight 0) is 0; a NaN total propagates
                    ok = total != 0
                    scale = xp.where(ok, 1.0 / xp.where(ok, total, xp.ones_like(total)),
                                     xp.zeros_like(total))
        value_out = reduced_value(xp, value, reduction, scale, dtype, pending)
        if not need_grad:
            return value_out
        result = []
        for n in wrt_names:
            g = grads[n]
            if scale is not None:
                if isinstance(scale, float):
                    g = g * scale if scale else xp.zeros_like(g)
                else:
                    g = xp.where(scale != 0, g * scale, xp.zeros_like(g))
            if terms.finalize and n in terms.finalize:
                g = terms.finalize[n](g)
            if g.dtype != dtype:
                g = xp.astype(g, dtype)
            if pending:
                (g,) = poison(xp, pending, g)
            result.append(g)
        if out is not None:
            g = result[0]
            check_out(out, tuple(g.shape), dtype, xp, wrt_names[0])
            if isinstance(out, np.ndarray):
                np.copyto(out, g)
            else:
                out[...] = g
            result[0] = out
        if second is not None:
            return tuple(result) if len(result) > 1 else result[0]
        grad = tuple(result) if as_tuple else result[0]
        if want == "grad":
            return grad
        return value_out, grad

    def _hvp_vector(self, ctx: Context, pred, vector):
        """``vector`` of :meth:`hvp`: an array of the prediction's library and shape, in
        the work dtype."""
        xp = ctx.xp
        v = ctx.asarray(vector, "vector")
        check_numeric(xp, "vector", v)
        check_same_shape(self.inputs[0], pred.shape, "vector", v.shape)
        return xp.astype(v, ctx.work) if v.dtype != ctx.work else v

    def _second_terms(self, ctx: Context, terms: Terms, grads: dict, want: str):
        """The arrays a second-order call returns, by name, in order."""
        hess = terms.hess
        if hess is None and not (want == "hvp" and terms.hvp is not None):
            raise NotImplementedError(f"{self.name}: the kernel returned no Hessian")
        name = self.differentiable[0]
        if want == "hessian":
            return {"#hessian": hess}, ("#hessian",)
        if want == "grad_and_hessian":
            return {name: grads[name], "#hessian": hess}, (name, "#hessian")
        hv = terms.hvp
        if hv is None:  # a diagonal Hessian
            hv = hess * ctx.vector
        return {"#hvp": hv}, ("#hvp",)

    def _sample_weight(self, ctx: Context, sample_weight, shape):
        xp = ctx.xp
        sw = ctx.asarray(sample_weight, "sample_weight")
        check_numeric(xp, "sample_weight", sw)
        shape = tuple(shape)
        if sw.ndim == 0 and len(shape):  # one weight for every element (as an array of it)
            sw = xp.broadcast_to(sw, shape)
        if not same_shape(sw.shape, shape):
            if sw.ndim == 1 and len(shape) >= 1 and sw.shape[0] == shape[0]:
                sw = xp.reshape(sw, (shape[0],) + (1,) * (len(shape) - 1))
                sw = xp.broadcast_to(sw, shape)
            else:
                first = f" or ({shape[0]},)" if len(shape) > 1 else ""
                raise ValueError(
                    f"`sample_weight` of {self.name} must be a number or have the shape of the "
                    f"unreduced loss {shape}{first}; got {tuple(sw.shape)}")
        sw = xp.astype(sw, ctx.work)
        if not _SIGNED_WEIGHTS.get():
            check_in_range(xp, "sample_weight", sw, 0.0, float("inf"),
                           hint="weights must be non-negative")
        return sw


_PUBLIC_METHODS = ("__call__", "grad", "value_and_grad", "hessian", "grad_and_hessian", "hvp")


def _with_signature(cls, func):
    """A copy of ``func`` (a public method of ``cls``) whose ``__signature__`` names the
    loss's inputs and options: ``(self, prediction, target, /, *, delta=1.0, reduction=
    'mean', sample_weight=None, validate=True)`` instead of ``(*arrays, **options)``, for
    ``inspect.signature``, ``help()``, IDEs and tab completion. The code is the same
    function's: no wrapper, no cost per call."""
    original = getattr(func, "_losskit_original", func)
    sig = inspect.signature(original)
    P = inspect.Parameter
    params = []
    for p in sig.parameters.values():
        if p.name == "self":
            params.append(p.replace(kind=P.POSITIONAL_ONLY))
        elif p.kind is P.VAR_POSITIONAL:  # *arrays: the loss's inputs, by name
            params += [P(n, P.POSITIONAL_OR_KEYWORD, default=None)
                       if n in cls.optional_inputs else P(n, P.POSITIONAL_ONLY)
                       for n in cls.inputs]
        elif p.kind is P.VAR_KEYWORD:  # **options: the loss's options, with defaults
            params += [P(n, P.KEYWORD_ONLY, default=d) for n, d in cls._options().items()]
        elif p.name == "reduction":
            params.append(p.replace(default="mean"))
        else:
            params.append(p)
    # keyword-only order: wrt, the options, then the common keywords
    head = [p for p in params if p.kind is not P.KEYWORD_ONLY]
    keywords = [p for p in params if p.kind is P.KEYWORD_ONLY]
    first = [p for p in keywords if p.name == "wrt"]
    options = [p for p in keywords if p.name in cls._options()]
    rest = [p for p in keywords if p not in first and p not in options]
    copy = types.FunctionType(original.__code__, original.__globals__, original.__name__,
                              original.__defaults__, original.__closure__)
    copy.__kwdefaults__ = original.__kwdefaults__
    copy.__doc__ = original.__doc__
    copy.__module__ = original.__module__
    copy.__qualname__ = f"{cls.__qualname__}.{original.__name__}"
    copy.__signature__ = sig.replace(parameters=head + first + options + rest)
    copy._losskit_original = original
    return copy


def reduced_value(xp, value, reduction, scale, dtype, pending):
    """The value a loss returns: the per-example ``value`` (``"none"``) or its sum times
    the reduction's ``scale`` (a float, a 0-d array, or None: nothing to divide; an array
    scale of 0, a mean over nothing, gives 0 even for an inf/NaN sum), in the caller's
    ``dtype``, poisoned by the ``pending`` deferred checks. Shared by the pipeline and the
    losses that run their own."""
    if reduction == "none":
        out = value
    else:
        out = xp.sum(value)
        if scale is not None:
            if isinstance(scale, float):
                out = out * scale
            else:
                out = xp.where(scale != 0, out * scale, xp.zeros_like(out))
    if out.dtype != dtype:
        out = xp.astype(out, dtype)
    if pending:
        (out,) = poison(xp, pending, out)
    return ensure_array(out)


def returned_gradients(xp, grads: dict, names, shapes: dict, dtype, pending, *, out=None,
                       written=None, as_tuple=False):
    """The gradients a loss that runs its own pipeline returns: ``grads[name]`` for each of
    ``names`` (None stays None: a bias the layer does not have) as arrays of
    ``shapes[name]`` and the caller's ``dtype``, poisoned by the ``pending`` deferred checks;
    ``out=`` (already checked) receives the first one unless it is ``written``, the array
    the kernel filled directly; a tuple when ``as_tuple``. Shared by the similarity losses,
    linear_cross_entropy and the losses fused with the output layer."""
    result = []
    for n in names:
        g = grads.get(n)
        if g is not None:
            g = xp.reshape(ensure_array(g), shapes[n])
            if g.dtype != dtype:
                g = xp.astype(g, dtype)
            if pending:
                (g,) = poison(xp, pending, g)
            g = ensure_array(g)
        result.append(g)
    if out is not None:
        if written is None or grads.get(names[0]) is not written:  # not computed in place
            if isinstance(out, np.ndarray):
                np.copyto(out, result[0])
            else:
                out[...] = result[0]
        result[0] = out
    return tuple(result) if as_tuple else result[0]


def _python_scalars(options: dict) -> dict:
    """``options`` with NumPy scalars as Python ones (``np.int64(-1)`` is ``-1``): every
    backend and fused kernel then sees the same option, a JAX call a static one."""
    for value in options.values():
        if isinstance(value, np.generic):
            return {k: v.item() if isinstance(v, np.generic) else v for k, v in options.items()}
    return options


def _lazy_reciprocal(xp, value, *, first_axis: bool):
    """1 / (the number of elements of ``value``, or of its first axis), computed from the
    array itself where its shape is not known yet; 0 for an empty array."""
    ones = xp.ones_like(value)
    n = xp.sum(ones)
    if first_axis:
        rest = 1
        for d in value.shape[1:]:
            rest *= d
        n = n / rest if rest else n
    ok = n != 0
    return xp.where(ok, 1.0 / xp.where(ok, n, xp.ones_like(n)), xp.zeros_like(n))


_SIGNED_WEIGHTS: contextvars.ContextVar[bool] = contextvars.ContextVar("losskit_signed_weights",
                                                                       default=False)


@contextlib.contextmanager
def vjp_weights():
    """Inside: ``sample_weight`` may be negative. The framework adapters backpropagate a
    cotangent ``v`` of per-example values as the gradient of the loss weighted by ``v``
    (any sign); only they use this."""
    token = _SIGNED_WEIGHTS.set(True)
    try:
        yield
    finally:
        _SIGNED_WEIGHTS.reset(token)


def cotangent_weights(xp, cotangent, sample_weight):
    """The ``sample_weight`` whose weighted sum has the gradient of ``sum(cotangent *
    loss)``, the vector-Jacobian product of a ``reduction="none"`` loss: the cotangent
    times the caller's own sample weights (``(N,)`` ones spread over every element of each
    example). Used with :func:`vjp_weights` by the framework adapters."""
    if sample_weight is None:
        return cotangent
    w = xp.asarray(sample_weight, dtype=cotangent.dtype)
    if tuple(w.shape) != tuple(cotangent.shape):  # (N,): every element of each example
        w = xp.reshape(w, tuple(w.shape) + (1,) * (cotangent.ndim - w.ndim))
    return cotangent * w


def check_out(out, shape, dtype, xp, name: str = "prediction") -> None:
    """``out=`` must be a writeable array of ``xp`` with the gradient's shape and dtype."""
    if array_api_compat.is_jax_array(out):
        raise TypeError("`out` cannot be a JAX array: JAX arrays are immutable; use the "
                        "returned gradient instead")
    try:
        same = hasattr(out, "shape") and array_api_compat.array_namespace(out) is xp
    except TypeError:
        same = False
    if not same:
        lib = xp.__name__.replace("array_api_compat.", "")
        raise TypeError(f"`out` must be a {lib} array like `{name}` (the gradient is written "
                        f"into it); got {type(out).__module__}.{type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"`out` must have the gradient's dtype {_dtype_name(dtype)}; got "
                        f"{_dtype_name(out.dtype)}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"`out` must have the gradient's shape {tuple(shape)}; got "
                         f"{tuple(out.shape)}")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise ValueError("`out` is read-only; pass a writeable array to receive the gradient")


def register(loss: Loss) -> Loss:
    """Add a loss instance to the catalog (under its name; aliases point to it)."""
    if loss.name in _REGISTRY:
        raise ValueError(f"a loss named {loss.name!r} is already registered")
    _REGISTRY[loss.name] = loss
    return loss


def catalog(family: str | None = None) -> list[Loss]:
    """Every registered loss, sorted by family then name (aliases not repeated).

    ``family`` selects one family; its name may be written with spaces or hyphens
    (``"metric learning"`` is ``"metric_learning"``), in any case.

    Each entry is the ``Loss`` object itself: read ``.name``, ``.formula``,
    ``.gradient_formula``, ``.prediction``, ``.when_to_use`` or ``.info()``.

    Examples
    --------
    >>> import losskit as lk
    >>> "softmax_cross_entropy" in [loss.name for loss in lk.catalog()]
    True
    """
    losses = sorted(_REGISTRY.values(), key=lambda loss: (loss.family, loss.name))
    if family is not None:
        families = sorted({loss.family for loss in losses})
        if isinstance(family, str):  # "metric learning", "Metric-Learning": metric_learning
            family = "_".join(family.strip().lower().replace("-", " ").split())
        check_choice("family", family, families)
        losses = [loss for loss in losses if loss.family == family]
    return losses
