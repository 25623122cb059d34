r"""A linear layer fused with softmax cross-entropy: the (N, V) logits never exist at once.

For a language model's output head the logits :math:`Z = H W^\top + b` are the largest
array of the whole step: 4096 tokens times a 65536-word vocabulary is 1 GiB in float32,
and autodiff keeps two or three such arrays alive. :data:`linear_cross_entropy` takes the
head's *input* (the hidden features), its weight and bias, and the integer labels, and
returns exactly ``softmax_cross_entropy(hidden @ weight.T + bias, labels)`` with its
closed-form gradients for the hidden features, the weight and the bias, while holding
only one block of rows of the logits at a time.

**Algorithm.** The examples are processed in blocks of ``chunk_size`` rows, each against
the whole vocabulary (the approach of Liger Kernel's fused linear cross-entropy [1]_;
Cut Cross-Entropy [2]_ is a GPU kernel for the same problem). For a block of rows
:math:`H_B`:

1. :math:`Z_B = H_B W^\top + b` (one matrix product), shifted by its row maxima;
2. the value of each row from :math:`\log\sum_c e^{z_c - m}` and the shifted logit of
   its label, before anything else overwrites the block;
3. the block becomes the gradient of the loss with respect to its logits,
   :math:`G_B = r\,(A\,\operatorname{softmax}(Z_B) - a)`, with every reduction and sample
   weight already folded into the row factor :math:`r`;
4. :math:`\partial L/\partial H_B = G_B W`, :math:`\partial L/\partial W \mathrel{+}=
   G_B^\top H_B` and :math:`\partial L/\partial b \mathrel{+}= \sum_n G_{B,n}`.

That is the minimum of three matrix products of size :math:`N \times V \times d`: the
logits are never recomputed (a vocabulary-chunked online softmax needs a fourth product,
because :math:`\partial L/\partial W` needs every row's final normaliser). The
label-smoothing part of the target, :math:`\tfrac{\varepsilon}{V} w_c`, is handled in
closed form instead of inside the block: :math:`\sum_c w_c z_{nc} = h_n \cdot u + w\cdot b`
with :math:`u = W^\top w`, and its gradient contributions are rank-one.

**Backends.** NumPy and PyTorch arrays (CPU or GPU) run a path that reuses one block
buffer in place (``out=`` products, an in-place ``exp``; PyTorch accumulates the weight
gradient with ``addmm_``, NumPy through a buffer of 2048 weight rows). JAX arrays run the
blocks as one ``lax.scan`` inside ``jax.jit`` (eagerly or inside the caller's ``jit``): an
unrolled loop would let XLA schedule every block's logits at once. Every other Array-API
library (CuPy, Dask, array-api-strict) runs the same algorithm as a plain functional loop;
its weight gradient is gathered in pieces of weight rows and concatenated at the end.
PyTorch inputs are detached: no autograd graph is recorded (the gradients are what this
loss returns). Float16/bfloat16 inputs are computed in float32, on float32 copies of
``hidden`` and ``weight``.

**Memory.** Beyond the inputs and the returned gradients, the in-place path holds one block
of ``chunk_size`` x V logits (by default as many rows as fit 64 MiB), a 2048 x d buffer
(NumPy) and vectors of length N, V and d: for N = 4096, d = 1024, V = 65536 in float32 about
75 MiB, where the logits alone would be 1 GiB (see ``benchmarks/linear_ce.py``). JAX's
compiled loop holds blocks of 32 MiB of logits by default, but XLA (on the CPU) also keeps a
second weight-gradient-sized buffer for the loop's carry: about 300 MiB at that size.
The plain functional path holds a few temporaries of one block (16 MiB of logits by
default) and, while the pieces of the weight gradient are joined, a second copy of it.

**Precision.** Every product and sum runs in the compute dtype (float32 for float32
input), as the naive ``softmax(h @ W.T + b)`` would; the results agree with it to float32
rounding (relative differences of 1e-7 to 5e-7 at the benchmark's size).

References
----------
.. [1] P.-L. Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM Training",
   arXiv:2410.10989, 2024 (fused linear cross-entropy, chunked over rows).
.. [2] E. Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models",
   ICLR 2025, arXiv:2411.09009.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from ..core import dispatch
from ..kernels import fast_paths
from ..core.loss import (Context, Loss, check_out, reduced_value, register,
                         returned_gradients)
from ..core.primitives import _safe_log, _weighted
from ..core.validation import (
    check_integer,
    _dtype_name,
    check_floating,
    check_in_range,
    check_labels,
    check_numeric,
    check_scalar,
    deferred_checks,
)
from ..core.arrays import (as_array, compute_dtype, device_of, readable,
                           without_autograd)

__all__ = ["linear_cross_entropy"]

#: default size of one block of logits on the in-place (NumPy, PyTorch) path, in bytes
_BLOCK_BYTES = 64 * 2**20
#: the same for JAX's compiled loop (XLA keeps about two blocks of temporaries)
_JAX_BLOCK_BYTES = 32 * 2**20
#: the same for the functional path of the other libraries (about four temporaries)
_FUNCTIONAL_BLOCK_BYTES = 16 * 2**20
#: weight rows per piece of the weight gradient (NumPy's accumulation buffer, the
#: functional path's pieces)
_WEIGHT_GRAD_ROWS = 2048

_INF = float("inf")


# ---------------------------------------------------------------------------- per-row data
@dataclass
class _Rows:
    r"""What every block needs to know about its rows and classes (vectors, compute dtype).

    With class weights :math:`w_c` (1 without), smoothing :math:`\varepsilon`, V classes
    and keep :math:`k_n` (0 for an ignored label), the target coefficients are
    :math:`a_{nc} = a^y_n [c = y_n] + a^s_n w_c` with :math:`a^y_n = (1-\varepsilon) k_n
    w_{y_n}` and :math:`a^s_n = \tfrac{\varepsilon}{V} k_n`; their row total is
    :math:`A_n = a^y_n + a^s_n \sum_c w_c`.
    """

    labels: Any  # the labels, ignored ones replaced by 0 (safe indices)
    a_label: Any  # a^y_n
    total: Any  # A_n
    weight: Any  # the mean's denominator weight k_n w_{y_n}
    a_smooth: Any = None  # a^s_n; None without smoothing
    class_weight: Any = None  # w_c (V,); None without class weights
    class_total: Any = None  # sum_c w_c (a float or a 0-d array)
    wsum_logits: Any = None  # sum_c w_c z_nc = h_n . u + w . b (only with smoothing)
    u: Any = None  # u = W^T w (d,) (only with smoothing)
    z_coef: Any = None  # 2 zeta w_n, the z-loss's gradient factor of lse; None without it
    keep: Any = None  # k_n (1, 0 for an ignored label); None when no label is ignored

    def take(self, xp, idx) -> _Rows:
        """The rows ``idx`` (every per-row field; the per-class ones as they are)."""
        per_row = ("labels", "a_label", "total", "weight", "a_smooth", "wsum_logits",
                   "z_coef", "keep")
        return dataclasses.replace(self, **{
            f: xp.take(getattr(self, f), idx, axis=0) for f in per_row
            if getattr(self, f) is not None})


def _class_sum(xp, class_weight, v):
    """sum_c w_c v_c with 0 * inf = 0 (w = 1 without class weights)."""
    if class_weight is None:
        return xp.sum(v)
    return xp.sum(_weighted(xp, class_weight, v))


# ---------------------------------------------------------------------------- the loss
class LinearCrossEntropy(Loss):
    r"""Softmax cross-entropy of a linear layer's output, without forming the logits.

    ``linear_cross_entropy(hidden, weight, labels, bias)`` equals
    ``softmax_cross_entropy(hidden @ weight.T + bias, labels)`` (same options, same
    reductions, same edge cases), and its gradients are those of the logits chained
    through the layer, but the (N, V) logits are only ever held one block of rows at a
    time. For language-model heads with a large vocabulary V.

    Parameters
    ----------
    hidden : floating array of shape (N, d) or (..., d)
        The features entering the last linear layer, one row per example (token).
    weight : floating array of shape (V, d)
        The layer's weight in PyTorch's ``nn.Linear`` / ``F.linear`` layout
        (``out_features, in_features``): the logits are ``hidden @ weight.T + bias``.
        Same dtype as ``hidden``.
    labels : integer array of shape (N,) or (...)
        Class indices in ``[0, V)``: ``hidden``'s shape without its last axis.
    bias : floating array of shape (V,), optional
        The layer's bias (positional or keyword); ``None`` for a layer without one.
    class_weight : array of shape (V,), optional
        Non-negative weight per class, as in ``softmax_cross_entropy``.
    ignore_index : int, optional
        Labels equal to it contribute nothing, not even to the mean's denominator. On
        NumPy and PyTorch their rows are left out of the blocks (value and hidden
        gradient 0 there, their hidden states never read): a prompt's tokens cost no
        matrix product.
    label_smoothing : float in [0, 1], default 0
        Mix the target with the uniform distribution: :math:`(1-\varepsilon) e_y +
        \varepsilon/V`.
    z_loss : float >= 0, default 0
        Coefficient :math:`\zeta` of the auxiliary z-loss :math:`\zeta\,w_n
        \operatorname{logsumexp}(z_n)^2` (PaLM; Liger-Kernel's ``lse_square_scale``), as in
        ``softmax_cross_entropy``: its gradient :math:`2\zeta w_n \operatorname{lse}\,
        \operatorname{softmax}(z_n)` joins each block's gradient in the same products.
    chunk_size : int, optional
        Rows (examples) per block. Default: as many as fit 64 MiB of logits in the
        compute dtype on NumPy and PyTorch (32 MiB on JAX, 16 MiB on other libraries; see
        the module notes); smaller saves memory, larger makes bigger matrix products.
    {common_parameters}

    Returns
    -------
    value : array
        0-d for a reduced loss, ``labels``' shape for ``reduction="none"``.
    grad : array or tuple
        ``.grad``/``.value_and_grad`` take ``wrt=`` one of ``"hidden"`` (the default),
        ``"weight"``, ``"bias"``, a tuple of them, or ``"all"``: the tuple
        ``(d hidden, d weight, d bias)``, whose last entry is ``None`` without a bias.
        Each gradient has its input's shape and dtype.

    Raises
    ------
    ValueError
        Shapes that do not fit together (each named with both shapes), labels outside
        ``[0, V)``, ``wrt="bias"`` without a bias, a bad option value.
    TypeError
        A non-floating ``hidden``/``weight``/``bias``, dtypes that differ, non-integer
        labels, arrays of several libraries.

    Notes
    -----
    With :math:`z_n = W h_n + b`, class weights :math:`w_c`, smoothing
    :math:`\varepsilon` and the coefficients :math:`a_{nc}` of ``softmax_cross_entropy``
    (:math:`a_{nc} = (1-\varepsilon) w_{y_n} [c = y_n] + \tfrac{\varepsilon}{V} w_c`, 0 for
    an ignored label) and :math:`A_n = \sum_c a_{nc}`:

    .. math::

        \ell_n = \sum_c a_{nc}\,\bigl(\operatorname{logsumexp}(z_n) - z_{nc}\bigr), \qquad
        G_{nc} = \frac{\partial \ell_n}{\partial z_{nc}}
               = A_n \operatorname{softmax}(z_n)_c - a_{nc}

    .. math::

        \frac{\partial L}{\partial H} = G\,W, \qquad
        \frac{\partial L}{\partial W} = G^\top H, \qquad
        \frac{\partial L}{\partial b} = \sum_n G_{n\cdot}

    where the rows of :math:`G` carry the reduction's factor and the sample weights
    (the mean divides by :math:`\sum_n s_n w_{y_n}` over labels not ignored, and a mean
    over nothing is 0 with zero gradients). An example with sample weight 0 or an ignored
    label contributes exactly 0 to the value and every gradient, even if its features are
    NaN or infinite. Non-finite logits elsewhere give NaN as in ``softmax_cross_entropy``;
    a ``-inf`` bias masks a class (probability 0).

    Compared with PyTorch 2.13's ``torch.nn.functional.linear_cross_entropy``: the same
    weight layout, values and gradients; its chunked path has no label smoothing and no
    sample weights, and its ``ignore_index`` defaults to -100 (losskit's to ``None``:
    every label must then be a class).

    References
    ----------
    .. [1] P.-L. Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM Training",
       arXiv:2410.10989, 2024.
    .. [2] E. Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models",
       ICLR 2025, arXiv:2411.09009.

    Examples
    --------
    An identity layer turns ``hidden = [ln 3, 0]`` into the logits ``[ln 3, 0]``, whose
    softmax is ``[3/4, 1/4]``: label 0 costs :math:`-\ln(3/4) = 0.2877` and the
    gradient with respect to the logits is ``[3/4 - 1, 1/4]``.

    >>> import numpy as np, losskit as lk
    >>> h = np.array([[np.log(3.0), 0.0]]); W = np.eye(2); b = np.zeros(2)
    >>> y = np.array([0])
    >>> round(float(lk.linear_cross_entropy(h, W, y, b)), 4)
    0.2877
    >>> gh, gW, gb = lk.linear_cross_entropy.grad(h, W, y, b, wrt="all")
    >>> gh   # G @ W
    array([[-0.25,  0.25]])
    >>> gb   # the rows of G summed
    array([-0.25,  0.25])
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "linear_cross_entropy"
    family = "classification"
    prediction = "hidden features (the input of the last linear layer)"
    target = "integer labels"
    formula = (r"\ell = \operatorname{logsumexp}(W h + b) - (W h + b)_y")
    gradient_formula = (
        r"\frac{\partial \ell}{\partial h} = W^\top g, \quad "
        r"\frac{\partial \ell}{\partial W} = g\,h^\top, \quad "
        r"\frac{\partial \ell}{\partial b} = g, \quad "
        r"g = \operatorname{softmax}(W h + b) - e_y")
    when_to_use = (
        "Training a classifier whose last layer is linear and whose number of classes is "
        "large, above all a language model's output head (vocabularies of 32k-256k words): "
        "it gives softmax_cross_entropy of the layer's logits and the gradients for the "
        "hidden features, the weight and the bias, without ever holding the N x V logits "
        "(gigabytes for a few thousand tokens), in blocks of rows and three matrix "
        "products. For small class counts the plain softmax_cross_entropy is as good."
    )
    references = (
        ("Hsu et al., Liger Kernel: Efficient Triton Kernels for LLM Training, "
         "arXiv:2410.10989"),
        ("Wijmans et al., Cut Your Losses in Large-Vocabulary Language Models, "
         "arXiv:2411.09009"),
        "Goodfellow, Bengio, Courville, Deep Learning, 2016, sec. 6.2.2.3",
    )
    inputs = ("hidden", "weight", "labels", "bias")
    optional_inputs = ("bias",)
    differentiable = ("hidden", "weight", "bias")

    def _compute(self, ctx, hidden, weight, labels, bias, *, need_grad, class_weight=None,
                 ignore_index=None, label_smoothing=0.0, z_loss=0.0, chunk_size=None):
        """Declares the options (read by ``option_defaults``); the work is in ``_pipeline``.

        The base pipeline expects per-example gradients that sample weights can scale
        afterwards; the weight and bias gradients here are sums over examples, so the
        sample weights and the reduction are folded into the rows before the products.
        """
        raise NotImplementedError("LinearCrossEntropy runs its own _pipeline")

    # ------------------------------------------------------------------ the pipeline
    def _pipeline(self, arrays, reduction, sample_weight, options, want, wrt, out=None):
        hidden, weight, labels, bias = arrays
        xp, reduction, sample_weight, opts, need_grad, wrt_names, as_tuple = \
            self._own_pipeline_setup(arrays, reduction, sample_weight, options, want, wrt, out,
                                     optional=("bias",))
        if bias is None and "bias" in wrt_names and wrt != "all":
            raise ValueError(f"{self.name}(): wrt='bias' needs a `bias`; got bias=None "
                             "(a layer without a bias has no bias gradient)")

        h = without_autograd(as_array(hidden, xp, name="hidden", loss=self.name))
        hidden_shape = tuple(h.shape)
        check_floating(xp, "hidden", h, loss=self.name)
        dtype = h.dtype
        work = compute_dtype(xp, dtype)
        device = device_of(h)
        ctx = Context(xp=xp, dtype=dtype, work=work, device=device, loss=self.name)
        with deferred_checks() as pending:  # value checks that could not read values
            h, W, b, y = self._check_arrays(ctx, h, weight, bias, labels)
        lead = tuple(y.shape)
        n_rows = math.prod(lead)
        d = h.shape[-1]
        V = W.shape[0]
        h = xp.reshape(h, (n_rows, d))
        y = xp.reshape(y, (n_rows,))

        rows = self._rows(ctx, h, W, b, y, V, opts)
        # a temperature divides the logits: z / t = (h / t) W^T + b / t; the hidden and bias
        # gradients then take the factor 1 / t once more (the weight's comes with h / t)
        t = self._temperature(opts)
        if t != 1.0:
            h = h / t
            b = None if b is None else b / t
        sw, scale, more = rows_reduction(self, ctx, reduction, sample_weight, lead,
                                         rows.weight, "hidden", hidden_shape)
        pending += more

        grads_wanted = set(wrt_names) if need_grad else set()
        if bias is None:
            grads_wanted.discard("bias")
        row_factor = None
        if grads_wanted:
            row_factor = xp.ones((n_rows,), dtype=work, device=device) if sw is None else sw
            if scale is not None:
                row_factor = row_factor * scale
            if self._sign != 1.0:
                row_factor = -row_factor
        block_rows = self._block_rows(opts["chunk_size"], n_rows, V, work, xp)
        shapes = {"hidden": hidden_shape, "weight": (V, d), "bias": (V,)}
        dest = direct_out(xp, out if need_grad else None, wrt_names, shapes, dtype, work,
                          (hidden, weight, bias))

        value, g = _kernel(ctx, h, W, b, rows, row_factor, grads_wanted, block_rows, dest)
        if self._sign != 1.0:
            value = -value
        if t != 1.0:
            g = _divide_gradients(xp, g, t)

        if sw is not None:
            value = _weighted(xp, sw, value)  # a zero weight removes the example
        total_value = reduced_value(xp, xp.reshape(value, lead) if reduction == "none"
                                    else value, reduction, scale, dtype, pending)
        if not need_grad:
            return total_value
        grad = returned_gradients(xp, g, wrt_names, shapes, dtype, pending, out=out,
                                  written=dest.get(wrt_names[0]), as_tuple=as_tuple)
        if want == "grad":
            return grad
        return total_value, grad

    #: -1 for a loss whose per-row value is minus this one's (the log-probability of the
    #: label, :class:`losskit.losses.linear_logprobs.LinearTokenLogprobs`)
    _sign = 1.0

    def _temperature(self, opts) -> float:
        """The divisor of the logits (1: none; this loss has no such option)."""
        return 1.0

    # ------------------------------------------------------------------ validation
    def _check_arrays(self, ctx, h, weight, bias, labels):
        xp = ctx.xp
        if h.ndim == 0:
            raise ValueError(f"`hidden` of {self.name} must have shape (N, d) or (..., d), "
                             "one feature vector per example; got a 0-d array")
        d = h.shape[-1]
        W = without_autograd(as_array(weight, xp, name="weight", loss=self.name))
        check_floating(xp, "weight", W, loss=self.name)
        if W.ndim != 2:
            raise ValueError(
                f"`weight` of {self.name} must have shape (V, d) = (num_classes, features), "
                f"the layout of torch.nn.Linear.weight; got shape {tuple(W.shape)}")
        if W.shape[1] != d:
            msg = (f"`weight` must have shape (V, d) with d = {d}, the last axis of `hidden` "
                   f"{tuple(h.shape)}; got {tuple(W.shape)}")
            if W.shape[0] == d:
                msg += ("; the layout is (num_classes, features) like torch.nn.Linear.weight: "
                        "pass weight.T")
            raise ValueError(msg)
        V = W.shape[0]
        if V == 0:
            raise ValueError(f"`weight` of {self.name} must have at least one row (class); "
                             f"got shape {tuple(W.shape)}")
        if W.dtype != h.dtype:
            raise TypeError(f"`weight` must have the dtype of `hidden` ({_dtype_name(h.dtype)})"
                            f"; got {_dtype_name(W.dtype)}. Convert one of them explicitly")
        b = None
        if bias is not None:
            b = without_autograd(as_array(bias, xp, name="bias", loss=self.name))
            check_floating(xp, "bias", b, loss=self.name)
            if tuple(b.shape) != (V,):
                raise ValueError(f"`bias` must have shape (V,) = ({V},), one entry per row of "
                                 f"`weight` {tuple(W.shape)}; got {tuple(b.shape)}")
            if b.dtype != h.dtype:
                raise TypeError(f"`bias` must have the dtype of `hidden` "
                                f"({_dtype_name(h.dtype)}); got {_dtype_name(b.dtype)}. "
                                "Convert one of them explicitly")
        lab = self.inputs[2]  # "labels" ("targets" for the token log-probabilities)
        y = ctx.asarray(labels, lab)
        if not xp.isdtype(y.dtype, "integral"):
            raise TypeError(f"`{lab}` of {self.name} must be integer class indices; got dtype "
                            f"{_dtype_name(y.dtype)} (probability targets would need the "
                            "full logits: use softmax_cross_entropy for them)")
        expected = tuple(h.shape[:-1])
        if tuple(y.shape) != expected:
            msg = (f"`{lab}` must have the shape of `hidden` {tuple(h.shape)} without its "
                   f"last (feature) axis, {expected}; got {tuple(y.shape)}")
            if tuple(y.shape) == expected + (1,):
                msg += f"; squeeze the last axis of `{lab}` explicitly"
            raise ValueError(msg)
        work = ctx.work
        if h.dtype != work:  # float16/bfloat16: computed in float32
            h = xp.astype(h, work)
            W = xp.astype(W, work)
            b = None if b is None else xp.astype(b, work)
        return h, W, b, y

    def _rows(self, ctx, h, W, b, y, V, opts) -> _Rows:
        xp = ctx.xp
        work = ctx.work
        ignore_index = opts["ignore_index"]
        ignore_index = check_integer("ignore_index", ignore_index, loss=ctx.loss,
                                     or_none=True)
        smoothing = check_scalar("label_smoothing", opts.get("label_smoothing", 0.0),
                                 lo=0.0, hi=1.0)
        check_labels(xp, self.inputs[2], y, V, ignore_index=ignore_index)
        cw = opts.get("class_weight")
        if cw is not None:
            cw = ctx.asarray(cw, "class_weight")
            check_numeric(xp, "class_weight", cw, bool_ok=False)
            if tuple(cw.shape) != (V,):
                raise ValueError(f"`class_weight` must have one weight per class: shape ({V},) "
                                 f"(the rows of `weight`); got {tuple(cw.shape)}")
            cw = without_autograd(xp.astype(cw, work))
            check_in_range(xp, "class_weight", cw, 0.0, _INF,
                           hint="weights must be non-negative")
        labels = y
        if ignore_index is not None:
            keep_b = labels != ignore_index
            labels = xp.where(keep_b, labels, xp.zeros_like(labels))
            keep = xp.astype(keep_b, work)
        else:
            keep = xp.ones(labels.shape, dtype=work, device=ctx.device)
        weight = keep if cw is None else keep * xp.take(cw, labels, axis=0)
        a_label = (1.0 - smoothing) * weight
        rows = _Rows(labels=labels, a_label=a_label, total=a_label, weight=weight,
                     class_weight=cw, keep=keep if ignore_index is not None else None)
        zeta = check_scalar("z_loss", opts.get("z_loss", 0.0), lo=0.0)
        if not math.isfinite(zeta):
            raise ValueError(f"`z_loss` must be finite; got {zeta!r}")
        if zeta > 0:
            rows.z_coef = (2.0 * zeta) * weight
        if smoothing > 0:
            rows.a_smooth = (smoothing / V) * keep
            rows.class_total = float(V) if cw is None else xp.sum(cw)
            rows.total = a_label + rows.a_smooth * rows.class_total
            # sum_c w_c z_nc = h_n . u + w . b with u = W^T w: no pass over the logits
            u = xp.sum(W, axis=0) if cw is None else xp.matmul(cw[None, :], W)[0, :]
            wsum_logits = xp.matmul(h, u[:, None])[:, 0]
            if b is not None:
                wsum_logits = wsum_logits + _class_sum(xp, cw, b)
            rows.u, rows.wsum_logits = u, wsum_logits
        return rows

    @staticmethod
    def _block_rows(chunk_size, n_rows, V, work, xp) -> int:
        if chunk_size is not None:
            try:
                chunk_size = check_integer("chunk_size", chunk_size)
            except TypeError:
                raise TypeError("`chunk_size` must be a positive int (rows per block) or None; "
                                f"got {chunk_size!r}") from None
            if chunk_size < 1:
                raise ValueError(f"`chunk_size` must be a positive int (rows per block); got "
                                 f"{chunk_size}")
            return max(1, min(chunk_size, n_rows))
        itemsize = 8 if work == xp.float64 else 4
        if _inplace_library(xp):
            budget = _BLOCK_BYTES
        elif array_api_compat.is_jax_namespace(xp):
            budget = _JAX_BLOCK_BYTES
        else:
            budget = _FUNCTIONAL_BLOCK_BYTES
        return max(1, min(budget // (V * itemsize), n_rows))


# ---------------------------------------------------------------------------- kernels
def rows_reduction(loss, ctx, reduction, sample_weight, lead, row_weight, first_input,
                   input_shape):
    """The sample weights (``lead``'s shape, or ``(N_first,)`` for every row of each
    example; flattened to the rows) and the reduction's factor for the sum of the rows'
    weighted values: None (``"none"``, ``"sum"``), 1/batch (``"batchmean"``) or the mean's
    1/sum of ``sample_weight * row_weight`` (0 for a mean over nothing; a NaN total
    propagates). Returns ``(sw, scale, pending)`` with the deferred checks of the weights.
    Shared by the losses fused with a linear layer."""
    xp = ctx.xp
    n_rows = math.prod(lead)
    sw = None
    with deferred_checks() as pending:
        if sample_weight is not None:
            sw = xp.reshape(without_autograd(loss._sample_weight(ctx, sample_weight, lead)),
                            (n_rows,))
    if reduction in ("none", "sum"):
        return sw, None, pending
    if reduction == "batchmean":
        if len(lead) == 0:
            raise ValueError(
                f"{loss.name}(): reduction='batchmean' divides by the batch size, the first "
                f"axis of `{first_input}`, but it holds a single example (shape "
                f"{input_shape}); use 'mean' or 'sum'")
        return sw, (1.0 / lead[0] if lead[0] else 0.0), pending
    total = xp.sum(row_weight if sw is None else _weighted(xp, sw, row_weight))
    ok = total != 0
    scale = xp.where(ok, 1.0 / xp.where(ok, total, xp.ones_like(total)), xp.zeros_like(total))
    return sw, scale, pending


def kept_rows(xp, keep):
    """The indices of the rows whose ``keep`` is not 0, when some row's is (the in-place
    block paths then compute only those: an ignored token, a prompt's say, costs no matrix
    product), else None. Reads values back: None where that would stall (a CUDA tensor, see
    :func:`~losskit.core.arrays.readable`), and every row is computed, an ignored one with
    weight 0. Shared by the losses fused with a linear layer."""
    kept = keep != 0
    if keep.shape[0] == 0 or not readable(keep) or bool(xp.all(kept)):
        return None
    return xp.nonzero(kept)[0]


def scattered_rows(xp, idx, part, n_rows, dest=None):
    """An array of ``n_rows`` rows (``dest`` when given) holding ``part``'s rows at ``idx``
    and 0 elsewhere (NumPy and PyTorch: written in place)."""
    full = dest
    if full is None:
        full = xp.zeros((n_rows, *part.shape[1:]), dtype=part.dtype, device=device_of(part))
    else:
        full[...] = 0
    full[idx] = part
    return full


def on_kept_rows(xp, idx, n_rows, dest, hidden, blocks):
    """``blocks(dest)`` run on the rows ``idx`` of ``n_rows`` (the caller's closure takes
    its inputs' rows), with ``dest`` less the hidden gradient's ``out=``: returns its
    per-row values and gradients with the values and the hidden gradient (named
    ``hidden``) back on all rows, 0 on the others, the latter into ``dest[hidden]`` when
    given. Shared by the losses fused with a linear layer."""
    value, g = blocks({k: v for k, v in dest.items() if k != hidden})
    value = scattered_rows(xp, idx, value, n_rows)
    if g.get(hidden) is not None:
        g = {**g, hidden: scattered_rows(xp, idx, g[hidden], n_rows, dest.get(hidden))}
    return value, g


def direct_out(xp, out, wrt_names, shapes, dtype, work, inputs) -> dict:
    """``out=`` checked for the (single) gradient ``wrt_names[0]``; ``{name: out}`` when the
    in-place block kernel can write into it directly (a C-contiguous 2-d array of the
    compute dtype that shares no memory with an input), else ``{}`` (the gradient is
    copied into it at the end, :func:`losskit.core.loss.returned_gradients`)."""
    if out is None:
        return {}
    (target,) = wrt_names
    check_out(out, shapes[target], dtype, xp, target)
    if (work == dtype and out.ndim == 2 and _contiguous(out)
            and not any(_may_alias(out, a) for a in inputs)):
        return {target: out}
    return {}


def _contiguous(x) -> bool:
    """Whether ``x`` is a C-contiguous NumPy array or PyTorch tensor (``out=`` targets)."""
    if isinstance(x, np.ndarray):
        return bool(x.flags.c_contiguous)
    if array_api_compat.is_torch_array(x):
        return bool(x.is_contiguous())
    return False


def _may_alias(out, x) -> bool:
    """Whether ``out`` may share memory with the input ``x`` (then it is filled at the end)."""
    if x is None:
        return False
    if isinstance(out, np.ndarray) and isinstance(x, np.ndarray):
        return bool(np.may_share_memory(out, x))
    if array_api_compat.is_torch_array(out) and array_api_compat.is_torch_array(x):
        return out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    return False


def _zero_inactive(xp, z, act) -> bool:
    """The rows of the block ``z`` whose ``act`` is False set to exactly 0 (even where the
    row is inf or NaN), in place; whether some row may be inactive. Where ``act`` cannot be
    read without a host synchronisation (CUDA), a masked fill that reads nothing."""
    if not readable(act):
        z.masked_fill_(~act[:, None], 0.0)  # torch: the only such in-place library
        return True
    if bool(xp.all(act)):
        return False
    z[~act] = 0.0
    return True


def _inplace_library(xp):
    """``"numpy"`` or ``"torch"`` when the in-place path serves ``xp``, else ``None``."""
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    return None


def _safe_row_max(xp, z):
    """Row maxima, replaced by 0 where not finite (as ``losskit.core.primitives._safe_max``)."""
    m = xp.max(z, axis=1)
    return xp.where(xp.isfinite(m), m, xp.zeros_like(m))


def _block_values(xp, total, a_label, log_s, shifted_label, m, a_smooth=None,
                  wsum_logits=None, class_total=None, z_coef=None):
    r""":math:`\ell_n = A \log S + a^y (m - z_y) + a^s \sum_c w_c (m - z_c)`, 0 * inf = 0.

    ``log_s`` is :math:`\log \sum_c e^{z_c - m}` and ``shifted_label`` :math:`z_y - m`;
    the other arguments are the block's rows of the :class:`_Rows` vectors.
    """
    value = _weighted(xp, total, log_s) - _weighted(xp, a_label, shifted_label)
    if a_smooth is not None:
        value = value - _weighted(xp, a_smooth, wsum_logits - m * class_total)
    if z_coef is not None:  # the z-loss zeta w lse^2 (0 for a row that takes no part)
        lse = m + log_s
        value = value + _weighted(xp, 0.5 * z_coef, lse * lse)
    return value


def _row_values(xp, rows, lo, hi, log_s, shifted_label, m):
    """:func:`_block_values` for rows ``lo:hi``."""
    smooth = {}
    if rows.a_smooth is not None:
        smooth = {"a_smooth": rows.a_smooth[lo:hi], "wsum_logits": rows.wsum_logits[lo:hi],
                  "class_total": rows.class_total}
    if rows.z_coef is not None:
        smooth["z_coef"] = rows.z_coef[lo:hi]
    return _block_values(xp, rows.total[lo:hi], rows.a_label[lo:hi], log_s, shifted_label, m,
                         **smooth)


def _kernel(ctx, h, W, b, rows, row_factor, wanted, block_rows, dest):
    xp = ctx.xp
    lib = _inplace_library(xp)
    if lib is not None:
        idx = None if rows.keep is None else kept_rows(xp, rows.keep)
        if idx is None:
            return _blocks_inplace(ctx, lib, h, W, b, rows, row_factor, wanted, block_rows,
                                   dest)
        # ignored labels: the blocks hold the other rows only (an ignored row's value and
        # gradient are 0 whatever its hidden state)
        return on_kept_rows(xp, idx, h.shape[0], dest, "hidden", lambda sub: _blocks_inplace(
            ctx, lib, xp.take(h, idx, axis=0), W, b, rows.take(xp, idx),
            None if row_factor is None else xp.take(row_factor, idx, axis=0), wanted,
            block_rows, sub))
    if array_api_compat.is_jax_namespace(ctx.xp):
        return _blocks_jax(ctx, h, W, b, rows, row_factor, wanted, block_rows)
    return _blocks_functional(ctx, h, W, b, rows, row_factor, wanted, block_rows)


def _softmax_block_kernel(lib, buf):
    """The numba kernel for the softmax step of a NumPy block, or None (another library,
    numba missing or switched off: ``LOSSKIT_DISABLE_NUMBA`` / ``LOSSKIT_DISABLE_FAST``).

    It is called as ``kernel(*args)`` and returns True, or None when numba cannot compile
    it here (the block is then done with NumPy's ufuncs, untouched by the kernel).
    """
    if lib != "numpy" or not dispatch.ENABLED or buf.dtype.char not in "fd":
        return None
    nb = fast_paths._nb()
    if nb is None:
        return None
    # a small block on one thread: waking the pool costs more than it saves (and on a
    # busy machine a parallel call waits for a core)
    kernel = (nb.softmax_block_parallel if buf.size >= fast_paths.PARALLEL_MIN
              else nb.softmax_block_serial)
    return functools.partial(fast_paths._kernel, nb, kernel)


def _row_factors(xp, rows, row_factor):
    """Per-row multipliers of the block gradient, 0 for rows that take no part.

    ``G = p_factor / S * exp(z - m) - label_factor * e_y - smooth_factor * w``; a row is
    active when its factor ``r`` and its total coefficient ``A`` are both non-zero.
    """
    zero = xp.zeros_like(row_factor)
    active = (row_factor != 0) & (rows.total != 0)
    p_factor = xp.where(active, row_factor * rows.total, zero)
    label_factor = xp.where(active, row_factor * rows.a_label, zero)
    smooth_factor = None
    if rows.a_smooth is not None:
        smooth_factor = xp.where(active, row_factor * rows.a_smooth, zero)
    return active, p_factor, label_factor, smooth_factor


def _z_factor(xp, active, row_factor, z_coef, lse):
    r"""The z-loss's part of a block's softmax factor, :math:`r\,2\zeta w\,\mathrm{lse}`
    (0 for a row that takes no part, even with an infinite logsumexp)."""
    return xp.where(active, row_factor * z_coef * lse, xp.zeros_like(lse))


def _block_factors(xp, rows, lo, hi, row_factor):
    """:func:`_row_factors` for the rows ``lo:hi`` (no smoothing): ``(active, p_factor,
    label_factor)`` of the block."""
    total = rows.total[lo:hi]
    zero = xp.zeros_like(row_factor)
    active = (row_factor != 0) & (total != 0)
    return (active, xp.where(active, row_factor * total, zero),
            xp.where(active, row_factor * rows.a_label[lo:hi], zero))


def _block_products(lib, z, W, WT, hb, gh_rows, gb, gw, gw_out, tmp, want_w):
    """The products of one block's logit gradient ``z`` (k, V), in place (NumPy, PyTorch):
    its hidden rows ``gh_rows = z W`` (when given), the bias gradient ``gb + sum(z)`` (when
    ``gb`` is given) and the weight gradient ``gw + z^T hb`` (``gw`` None: the first block
    writes it, into ``gw_out`` when given; ``tmp``: NumPy's buffer of weight rows). Returns
    ``(gb, gw)``. Shared by every loss fused with a linear layer."""
    if lib == "torch":
        import torch as native
    else:
        native = np
    V, d = W.shape
    if gh_rows is not None:
        if lib == "numpy":
            # (W^T G^T)^T: OpenBLAS runs this orientation up to 2-3x faster than G W
            # (whose K = V is the longest axis) on a busy 2-core machine
            native.matmul(WT, z.T, out=gh_rows.T)
        else:
            native.matmul(z, W, out=gh_rows)
    if gb is not None:
        gb = gb + z.sum(axis=0) if lib == "numpy" else gb + native.sum(z, dim=0)
    if not want_w:
        return gb, gw
    if lib == "torch":
        if gw is None:
            gw = native.matmul(z.T, hb, out=gw_out)
        else:
            gw.addmm_(z.T, hb)
        return gb, gw
    # NumPy's matmul cannot accumulate: a few thousand weight rows at a time (also keeps
    # OpenBLAS from packing all V rows of z.T at once)
    first = gw is None
    if first:
        gw = np.empty((V, d), dtype=z.dtype) if gw_out is None else gw_out
    for c0 in range(0, V, _WEIGHT_GRAD_ROWS):
        c1 = min(c0 + _WEIGHT_GRAD_ROWS, V)
        if first:
            native.matmul(z[:, c0:c1].T, hb, out=gw[c0:c1])
        else:
            t = tmp[:c1 - c0]
            native.matmul(z[:, c0:c1].T, hb, out=t)
            native.add(gw[c0:c1], t, out=gw[c0:c1])
    return gb, gw


def _blocks_inplace(ctx, lib, h, W, b, rows, row_factor, wanted, nb, dest):
    """NumPy and PyTorch: one block buffer reused in place, three products per block.

    ``dest`` may hold the caller's ``out=`` array for the hidden or the weight gradient,
    which is then written directly. ``row_factor`` may be a function
    ``row_factor(lo, hi, values)`` of a block's per-row values, called once they are known
    and before the block becomes its gradient: the sequence-level losses of
    :mod:`losskit.losses.linear_preference`, whose blocks hold whole sequences, get their
    gradient in the same three products (no label smoothing then). ``nb``: rows per
    block, or the blocks' ``(lo, hi)`` row ranges (consecutive, covering every row).
    """
    xp, work, dev = ctx.xp, ctx.work, ctx.device
    if lib == "torch":
        import torch as native
    else:
        import numpy as native
    n_rows, d = h.shape
    V = W.shape[0]
    want_h, want_w, want_b = ("hidden" in wanted), ("weight" in wanted), ("bias" in wanted)
    labels = xp.astype(rows.labels, xp.int64)  # index dtype for both libraries
    spans = (nb if not isinstance(nb, int)
             else [(lo, min(lo + nb, n_rows)) for lo in range(0, n_rows, nb)])
    buf = xp.empty((max((hi - lo for lo, hi in spans), default=0), V), dtype=work,
                   device=dev)
    WT = W.T
    values = []
    gh = dest.get("hidden")
    if want_h and gh is None:
        gh = xp.empty((n_rows, d), dtype=work, device=dev)
    gw_out = dest.get("weight")
    gw = None
    gb = xp.zeros((V,), dtype=work, device=dev) if want_b else None
    grouped = callable(row_factor)
    # the block's gradient waits for its values: row factors from them, or the z-loss's
    # term of the logsumexp
    deferred = grouped or rows.z_coef is not None
    if wanted and not grouped:
        active, p_factor, label_factor, smooth_factor = _row_factors(xp, rows, row_factor)
        all_active = readable(active) and bool(xp.all(active))
        h_eff = h if all_active else xp.where(active[:, None], h, xp.zeros_like(h))
    elif grouped:  # per block, below
        all_active, h_eff, smooth_factor = False, h, None
    if want_w and lib == "numpy":
        tmp = xp.empty((min(_WEIGHT_GRAD_ROWS, V), d), dtype=work, device=dev)
    kernel = _softmax_block_kernel(lib, buf)
    for lo, hi in spans:
        k = hi - lo
        z = buf[:k]
        native.matmul(h[lo:hi], WT, out=z)
        if b is not None:
            native.add(z, b, out=z)
        ar = xp.arange(k, device=dev)
        yb = labels[lo:hi]
        fused = False
        if kernel is not None:  # the fused, multithreaded softmax step (numba)
            log_s, shifted_label, m = (np.empty(k, dtype=z.dtype) for _ in range(3))
            direct = bool(wanted) and not deferred  # G in the same sweep
            fused = kernel(z, yb, p_factor[lo:hi] if direct else log_s,
                           label_factor[lo:hi] if direct else log_s, direct, log_s,
                           shifted_label, m)
            kernel = kernel if fused else None
        if fused:
            values.append(_row_values(xp, rows, lo, hi, log_s, shifted_label, m))
            if not wanted:
                continue
        else:
            m = _safe_row_max(xp, z)
            native.subtract(z, m[:, None], out=z)
            shifted_label = z[ar, yb]  # a copy: read before the block is overwritten
            native.exp(z, out=z)
            s = xp.sum(z, axis=1)
            values.append(_row_values(xp, rows, lo, hi, _safe_log(xp, s), shifted_label, m))
            if not wanted:
                continue
            if not deferred:
                # the block becomes G = r (A softmax - a) (the smoothing part is added after)
                native.multiply(z, (p_factor[lo:hi] / s)[:, None], out=z)
                z[ar, yb] = z[ar, yb] - label_factor[lo:hi]
        if deferred:  # z holds exp(z - m): the factors now that the block's values are known
            if fused:
                s = np.exp(log_s)
            else:
                log_s = _safe_log(xp, s)
            if grouped:
                rf = row_factor(lo, hi, values[-1])
                act, pf, lf = _block_factors(xp, rows, lo, hi, rf)
            else:
                rf = row_factor[lo:hi]
                act, pf, lf = active[lo:hi], p_factor[lo:hi], label_factor[lo:hi]
            if rows.z_coef is not None:  # + 2 zeta w lse p
                pf = pf + _z_factor(xp, act, rf, rows.z_coef[lo:hi], m + log_s)
            native.multiply(z, (pf / s)[:, None], out=z)
            z[ar, yb] = z[ar, yb] - lf
        if grouped:
            hb = h[lo:hi]
            if _zero_inactive(xp, z, act):
                hb = xp.where(act[:, None], hb, xp.zeros_like(hb))
        else:
            hb = h_eff[lo:hi]
        if not all_active and not grouped:
            _zero_inactive(xp, z, active[lo:hi])
        gb, gw = _block_products(lib, z, W, WT, hb, gh[lo:hi] if want_h else None, gb, gw,
                                 gw_out, tmp if want_w and lib == "numpy" else None,
                                 want_w)

    del buf
    value = xp.concat(values) if values else xp.zeros((0,), dtype=work, device=dev)
    if want_w and gw is None:  # no rows at all
        gw = xp.zeros((V, d), dtype=work, device=dev)
        if gw_out is not None:
            gw_out[...] = gw
            gw = gw_out
    if wanted and smooth_factor is not None:
        # the smoothing part of G is rank one: -smooth_factor_n w_c
        cw = rows.class_weight
        if want_h:
            native.subtract(gh, smooth_factor[:, None] * rows.u[None, :], out=gh)
        if want_w:
            v = xp.matmul(smooth_factor[None, :], h_eff)[0, :]
            if cw is None:
                native.subtract(gw, v[None, :], out=gw)
            elif lib == "torch":
                gw.addr_(cw, v, alpha=-1.0)
            else:
                for c0 in range(0, V, _WEIGHT_GRAD_ROWS):
                    c1 = min(c0 + _WEIGHT_GRAD_ROWS, V)
                    native.subtract(gw[c0:c1], cw[c0:c1, None] * v[None, :],
                                    out=gw[c0:c1])
        if want_b:
            total = xp.sum(smooth_factor)
            gb = gb - (total if cw is None else cw * total)
    return value, {"hidden": gh, "weight": gw, "bias": gb}


def _divide_gradients(xp, g, t):
    """The hidden and bias gradients divided by the temperature ``t`` (in place where the
    library allows: the hidden gradient may be the caller's ``out=``)."""
    g = dict(g)
    for name in ("hidden", "bias"):
        x = g.get(name)
        if x is None:
            continue
        if _inplace_library(xp) is not None:
            x /= t
        else:
            g[name] = x / t
    return g


def _add_smoothing(xp, rows, smooth_factor, h_eff, gh, gw, gb):
    """The label-smoothing part of the gradients, rank one: ``-smooth_factor_n w_c``
    (``None`` gradients, those not wanted, stay ``None``); no array is written."""
    cw = rows.class_weight
    if gh is not None:
        gh = gh - smooth_factor[:, None] * rows.u[None, :]
    if gw is not None:
        v = xp.matmul(smooth_factor[None, :], h_eff)
        gw = gw - (v if cw is None else cw[:, None] * v)
    if gb is not None:
        total = xp.sum(smooth_factor)
        gb = gb - (total if cw is None else cw * total)
    return gh, gw, gb


def _blocks_functional(ctx, h, W, b, rows, row_factor, wanted, nb):
    """Every other Array-API library: the same blocks, no array is ever written."""
    xp, work, dev = ctx.xp, ctx.work, ctx.device
    n_rows, d = h.shape
    V = W.shape[0]
    want_h, want_w, want_b = ("hidden" in wanted), ("weight" in wanted), ("bias" in wanted)
    WT = xp.permute_dims(W, (1, 0))
    classes = xp.arange(V, device=dev)
    values, gh_parts = [], []
    pieces: list = []  # the weight gradient, in pieces of _WEIGHT_GRAD_ROWS rows
    single = nb >= n_rows
    gb = xp.zeros((V,), dtype=work, device=dev) if want_b else None
    if wanted:
        active, p_factor, label_factor, smooth_factor = _row_factors(xp, rows, row_factor)
        h_eff = xp.where(active[:, None], h, xp.zeros_like(h))
    for lo in range(0, n_rows, nb):
        hi = min(lo + nb, n_rows)
        z = xp.matmul(h[lo:hi, :], WT)
        if b is not None:
            z = z + b
        m = _safe_row_max(xp, z)
        z = z - m[:, None]
        onehot = rows.labels[lo:hi, None] == classes[None, :]
        shifted_label = xp.sum(xp.where(onehot, z, xp.zeros_like(z)), axis=1)
        e = xp.exp(z)
        del z
        s = xp.sum(e, axis=1)
        values.append(_row_values(xp, rows, lo, hi, _safe_log(xp, s), shifted_label, m))
        if not wanted:
            continue
        act = active[lo:hi, None]
        pf = p_factor[lo:hi]
        if rows.z_coef is not None:
            pf = pf + _z_factor(xp, active[lo:hi], row_factor[lo:hi], rows.z_coef[lo:hi],
                                m + _safe_log(xp, s))
        g = e * (pf / s)[:, None]
        del e
        g = g - xp.where(onehot, label_factor[lo:hi, None], xp.zeros_like(g))
        g = xp.where(act, g, xp.zeros_like(g))  # exactly 0, even where the row is inf/NaN
        if want_h:
            gh_parts.append(xp.matmul(g, W))
        if want_b:
            gb = gb + xp.sum(g, axis=0)
        if want_w:
            hb = h_eff[lo:hi, :]
            if single:
                pieces = [xp.matmul(xp.permute_dims(g, (1, 0)), hb)]
                continue
            for i, c0 in enumerate(range(0, V, _WEIGHT_GRAD_ROWS)):
                c1 = min(c0 + _WEIGHT_GRAD_ROWS, V)
                part = xp.matmul(xp.permute_dims(g[:, c0:c1], (1, 0)), hb)
                if i < len(pieces):
                    pieces[i] = pieces[i] + part
                else:
                    pieces.append(part)
    value = xp.concat(values) if values else xp.zeros((0,), dtype=work, device=dev)
    gh = gw = None
    if want_h:
        gh = xp.concat(gh_parts) if gh_parts else xp.zeros((0, d), dtype=work, device=dev)
    if want_w:
        if not pieces:
            gw = xp.zeros((V, d), dtype=work, device=dev)
        else:
            gw = pieces[0] if len(pieces) == 1 else xp.concat(pieces)
        del pieces
    if wanted and smooth_factor is not None:
        gh, gw, gb = _add_smoothing(xp, rows, smooth_factor, h_eff, gh, gw, gb)
    return value, {"hidden": gh, "weight": gw, "bias": gb}


def _blocks_jax(ctx, h, W, b, rows, row_factor, wanted, nb):
    """JAX: the blocks as one ``lax.scan`` inside one ``jax.jit``.

    An unrolled Python loop lets XLA schedule every block's logits at once (gigabytes under
    ``jit``) and eager dispatch run ahead of the computation; the scan holds one block at a
    time, and the enclosing ``jit`` (compiled once per configuration and shapes) lets the
    weight gradient be updated in place. Inside a caller's ``jit`` it is simply inlined.
    """
    import jax

    key = (nb, "hidden" in wanted, "weight" in wanted, "bias" in wanted, _WEIGHT_GRAD_ROWS)
    fn = _JAX_KERNELS.get(key)
    if fn is None:
        fn = _JAX_KERNELS[key] = jax.jit(functools.partial(
            _jax_scan, nb=nb, want_h=key[1], want_w=key[2], want_b=key[3], piece=key[4]))
    arrays = {"h": h, "W": W, "b": b, "row_factor": row_factor, "labels": rows.labels,
              "z_coef": rows.z_coef,
              "a_label": rows.a_label, "total": rows.total, "a_smooth": rows.a_smooth,
              "class_weight": rows.class_weight, "class_total": rows.class_total,
              "wsum_logits": rows.wsum_logits, "u": rows.u}
    value, gh, gw, gb = fn(arrays)
    return value, {"hidden": gh, "weight": gw, "bias": gb}


_JAX_KERNELS: dict = {}


def _jax_scan(arrays, *, nb, want_h, want_w, want_b, piece):
    from jax import lax

    h, W, b = arrays["h"], arrays["W"], arrays["b"]
    xp = array_api_compat.array_namespace(h)
    rows = _Rows(labels=arrays["labels"], a_label=arrays["a_label"], total=arrays["total"],
                 weight=None, a_smooth=arrays["a_smooth"], class_weight=arrays["class_weight"],
                 class_total=arrays["class_total"], wsum_logits=arrays["wsum_logits"],
                 u=arrays["u"], z_coef=arrays["z_coef"])
    wanted = want_h or want_w or want_b
    work = h.dtype
    n_rows, d = h.shape
    V = W.shape[0]
    n_blocks = max(1, -(-n_rows // nb))
    pad = n_blocks * nb - n_rows
    classes = xp.arange(V)
    smoothing = rows.a_smooth is not None
    smooth_factor = None
    if wanted:
        active, p_factor, label_factor, smooth_factor = _row_factors(xp, rows,
                                                                     arrays["row_factor"])
        h_eff = xp.where(active[:, None], h, xp.zeros_like(h))

    def blocks(x):
        """(N, ...) -> (n_blocks, nb, ...), padded with zeros (rows that take no part)."""
        if pad:
            x = xp.concat([x, xp.zeros((pad, *x.shape[1:]), dtype=x.dtype)])
        return xp.reshape(x, (n_blocks, nb, *x.shape[1:]))

    xs = {"h": blocks(h), "y": blocks(rows.labels), "total": blocks(rows.total),
          "a_label": blocks(rows.a_label)}
    if rows.z_coef is not None:
        xs["z_coef"] = blocks(rows.z_coef)
    if smoothing:
        xs["a_smooth"] = blocks(rows.a_smooth)
        xs["wsum_logits"] = blocks(rows.wsum_logits)
    if wanted:
        if rows.z_coef is not None:  # r 2 zeta w (0 where the row takes no part)
            xs["z_factor"] = blocks(xp.where(active, arrays["row_factor"] * rows.z_coef,
                                             xp.zeros_like(rows.z_coef)))
        xs.update(h_eff=blocks(h_eff), active=blocks(active), p_factor=blocks(p_factor),
                  label_factor=blocks(label_factor))
    carry = (xp.zeros((V, d), dtype=work) if want_w else None,
             xp.zeros((V,), dtype=work) if want_b else None)

    def nt(a, c):  # a @ c.T without materialising a transposed copy of c
        return lax.dot_general(a, c, (((1,), (1,)), ((), ())))

    def tn(a, c):  # a.T @ c
        return lax.dot_general(a, c, (((0,), (0,)), ((), ())))

    def body(carry, x):
        gw, gb = carry
        z = nt(x["h"], W)
        if b is not None:
            z = z + b
        m = _safe_row_max(xp, z)
        z = z - m[:, None]
        onehot = x["y"][:, None] == classes[None, :]
        shifted_label = xp.sum(xp.where(onehot, z, xp.zeros_like(z)), axis=1)
        e = xp.exp(z)
        s = xp.sum(e, axis=1)
        smooth = {}
        if smoothing:
            smooth = {"a_smooth": x["a_smooth"], "wsum_logits": x["wsum_logits"],
                      "class_total": rows.class_total}
        if rows.z_coef is not None:
            smooth["z_coef"] = x["z_coef"]
        value = _block_values(xp, x["total"], x["a_label"], _safe_log(xp, s), shifted_label,
                              m, **smooth)
        if not wanted:
            return carry, (value, None)
        pf = x["p_factor"]
        if rows.z_coef is not None:
            pf = pf + x["z_factor"] * (m + _safe_log(xp, s))
        g = e * (pf / s)[:, None]
        g = g - xp.where(onehot, x["label_factor"][:, None], xp.zeros_like(g))
        g = xp.where(x["active"][:, None], g, xp.zeros_like(g))
        gh = xp.matmul(g, W) if want_h else None
        if want_b:
            gb = gb + xp.sum(g, axis=0)
        if want_w:
            for c0 in range(0, V, piece):
                c1 = min(c0 + piece, V)
                gw = gw.at[c0:c1].add(tn(g[:, c0:c1], x["h_eff"]))  # in place in the loop
        return (gw, gb), (value, gh)

    (gw, gb), (values, ghs) = lax.scan(body, carry, xs)
    value = xp.reshape(values, (n_blocks * nb,))[:n_rows]
    gh = xp.reshape(ghs, (n_blocks * nb, d))[:n_rows, :] if want_h else None
    if smooth_factor is not None:
        gh, gw, gb = _add_smoothing(xp, rows, smooth_factor, h_eff, gh, gw, gb)
    return value, gh, gw, gb


linear_cross_entropy = register(LinearCrossEntropy())
