r"""Distillation through the language-model heads: the (N, V) logits never exist at once.

:data:`linear_generalized_jsd` takes the student's and the teacher's *hidden* features
and output-head weights, and the target tokens, and returns Liger-Kernel's fused linear
JSD distillation loss [1]_: per token a hard loss (cross-entropy of the student's logits
with the target token) and a soft loss (the generalized Jensen-Shannon divergence,
:data:`~losskit.losses.distillation.generalized_jsd`, of the two softmaxes at temperature
:math:`T`), with the closed-form gradients for the student's hidden features, weight and
bias. The logits :math:`Z_s = H_s W_s^\top + b_s` and :math:`Z_t = H_t W_t^\top + b_t`
are only held one block of rows at a time.

**Algorithm.** For a block of rows: the two logit blocks (two matrix products), the
block's per-token values and the gradient :math:`G` with respect to the student's logits
(written over the student block), then :math:`\partial L/\partial H_s = G W_s`,
:math:`\partial L/\partial W_s \mathrel{+}= G^\top H_s` and :math:`\partial L/\partial
b_s \mathrel{+}= \sum_n G_n`: four products of size :math:`N \times V \times d` in all,
as the naive autodiff of the full logits, but never more than two blocks of logits.

**Backends.** NumPy and PyTorch arrays run the blocks in place: ``out=`` products into
two reused block buffers and, for the softmaxes and the divergence, one multithreaded
numba kernel per block (NumPy float32/float64 with numba installed:
:mod:`losskit.kernels.distillation_numba`), else in-place ufuncs on tiles of rows small
enough to stay in the CPU cache (NumPy without numba, or ``LOSSKIT_DISABLE_NUMBA``;
larger tiles on PyTorch).
Its mixture is :math:`\log((1-\beta) P + \beta Q)` (rows with a non-finite value, such as
``-inf`` logits that mask words, are redone with the exact log-space arithmetic of
``generalized_jsd``). Every other Array-API library (JAX, array-api-strict, Dask, CuPy)
runs the same blocks as a plain functional loop over ``generalized_jsd``'s helpers; under
``jax.jit`` that loop is unrolled, so XLA may hold several blocks at once. PyTorch inputs
are detached (the gradients are what this loss returns; the ``losskit.torch`` adapter
makes them the backward). Float16/bfloat16 inputs are computed in float32.

**Memory.** Beyond the inputs and the returned gradients: two blocks of ``chunk_size`` x V
logits (by default as many rows as fit 64 MiB each), on NumPy three or four tiles of 512 KiB
(float32) and a 2048 x d buffer for the weight gradient, and vectors of length N and V.

**Speed.** On NumPy in float32 (``benchmarks/lm_head.py``, two cores) the value and the
three gradients take 1.2-1.35 times as long as the four matrix products alone at the
machine's best product rate, and about 0.4 times as long as Liger-Kernel's chunked module.

References
----------
.. [1] P.-L. Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM Training",
   arXiv:2410.10989, 2024; ``src/liger_kernel/chunked_loss/jsd_loss.py`` and
   ``fused_linear_distillation.py``.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..core import dispatch
from ..core.arrays import as_array, compute_dtype, device_of, readable, without_autograd
from ..core.loss import Context, Loss, reduced_value, register, returned_gradients
from ..core.primitives import _log_softmax, _weighted
from ..core.validation import (
    _dtype_name,
    check_floating,
    check_integer,
    check_labels,
    check_scalar,
    deferred_checks,
)
from ..kernels import fast_paths
from .distillation import _jsd_terms
from .linear_cross_entropy import (
    _WEIGHT_GRAD_ROWS,
    _block_products,
    direct_out,
    kept_rows,
    on_kept_rows,
    rows_reduction,
    LinearCrossEntropy,
    _inplace_library,
    _safe_row_max,
)

__all__ = ["linear_generalized_jsd"]

#: elements of one tile of the NumPy path's elementwise work (its three float32 buffers,
#: 512 KiB each, stay in a 2 MiB L2 cache)
_TILE_ELEMENTS = 1 << 17
#: the same on PyTorch (devices: fewer, larger operations)
_TORCH_TILE_ELEMENTS = 1 << 22


class LinearGeneralizedJSD(Loss):
    r"""Liger-Kernel's fused linear JSD distillation loss, without forming the logits.

    With the student's logits :math:`z_s = W_s h_s + b_s`, the teacher's
    :math:`z_t = W_t h_t + b_t` and the target token :math:`y` of each token:

    .. math::

        \ell = w_{\mathrm{hard}}\,\bigl(\operatorname{logsumexp}(z_s) - z_{s,y}\bigr)
             + w_{\mathrm{soft}}\,\operatorname{JSD}_\beta\bigl(\operatorname{softmax}(z_s/T),
               \operatorname{softmax}(z_t/T)\bigr)

    where :math:`\operatorname{JSD}_\beta` is :data:`generalized_jsd`'s divergence
    (:math:`\beta = 0`: :math:`D_{\mathrm{KL}}(Q\|P)`, :math:`\beta = 1`:
    :math:`D_{\mathrm{KL}}(P\|Q)`). The hard loss uses the student's logits *without* the
    temperature and nothing is multiplied by :math:`T^2`, as Liger-Kernel. Tokens whose
    target is ``ignore_index`` contribute 0; ``reduction="mean"`` divides by the number of
    the others (Liger-Kernel's ``num_valid_tokens``, 0 for none), which is
    ``LigerFusedLinearJSDLoss``'s value.

    Parameters
    ----------
    student_hidden : floating array of shape (N, d_s) or (..., d_s)
        The student's features entering its output head (differentiated).
    student_weight : floating array of shape (V, d_s)
        The student head's weight, ``torch.nn.Linear`` layout (differentiated).
    teacher_hidden : floating array of shape (N, d_t) or (..., d_t)
        The teacher's features, same leading shape (held fixed); ``d_t`` may differ.
    teacher_weight : floating array of shape (V, d_t)
        The teacher head's weight (held fixed), the same vocabulary V.
    targets : integer array of shape (N,) or (...)
        The target tokens, ``student_hidden``'s shape without its last axis.
    student_bias, teacher_bias : floating arrays of shape (V,), optional
        The heads' biases (``student_bias`` is differentiated).
    beta : float in [0, 1], default 0.5
        The generalized JSD's interpolation.
    temperature : float > 0, default 1
        Divides both logits for the soft loss only.
    weight_hard_loss, weight_soft_loss : float, default 0.5
        The weights of the cross-entropy and of the divergence.
    ignore_index : int or None, default -100
        The target value of the tokens that take no part (prompt, padding). On NumPy and
        PyTorch their rows are left out of the blocks: they cost no matrix product.
    chunk_size : int, optional
        Rows (tokens) per block. Default: as many as fit 64 MiB of logits per block on
        NumPy and PyTorch (16 MiB on the other libraries).
    {common_parameters}

    Returns
    -------
    value : array
        0-d for a reduced loss, ``targets``' shape for ``reduction="none"``.
    grad : array or tuple
        ``wrt=`` ``"student_hidden"`` (the default), ``"student_weight"``,
        ``"student_bias"``, a tuple of them, or ``"all"``: ``(d student_hidden,
        d student_weight, d student_bias)``, the last ``None`` without a bias.

    Raises
    ------
    ValueError
        Shapes that do not fit together (each named), targets outside ``[0, V)``, a
        vocabulary that differs between the two heads, ``wrt="student_bias"`` without a
        bias, a bad option value.
    TypeError
        A non-floating array, dtypes that differ from ``student_hidden``'s, non-integer
        targets, arrays of several libraries.

    Notes
    -----
    With :math:`P = \operatorname{softmax}(z_s / T)`, :math:`P^{(1)} =
    \operatorname{softmax}(z_s)` and :math:`g_{\mathrm{JSD}}` the gradient of
    ``generalized_jsd`` with respect to the student's logits,

    .. math::

        G_n = \frac{\partial \ell_n}{\partial z_{s,n}}
            = w_{\mathrm{hard}}\,(P^{(1)}_n - e_{y_n}) + w_{\mathrm{soft}}\, g_{\mathrm{JSD},n},
        \qquad
        \frac{\partial L}{\partial H_s} = G W_s, \quad
        \frac{\partial L}{\partial W_s} = G^\top H_s, \quad
        \frac{\partial L}{\partial b_s} = \sum_n G_n

    with the reduction's factor and the sample weights folded into the rows of :math:`G`.
    Liger-Kernel pads the student's logits with zeros when the teacher's vocabulary is
    larger; here both heads must have the same V.

    References
    ----------
    .. [1] Liger-Kernel, ``src/liger_kernel/chunked_loss/jsd_loss.py``
       (``LigerFusedLinearJSDLoss``) and ``fused_linear_distillation.py``.
    .. [2] R. Agarwal et al., "On-Policy Distillation of Language Models" (GKD),
       arXiv:2306.13649.

    Examples
    --------
    A student identical to its teacher has no divergence: only the hard loss remains,
    :math:`\tfrac12 \ln 2` for two equal logits.

    >>> import numpy as np, losskit as lk
    >>> h = np.array([[1.0]]); W = np.array([[1.0], [1.0]]); y = np.array([0])
    >>> round(float(lk.linear_generalized_jsd(h, W, h, W, y)), 6)   # ln(2) / 2
    0.346574
    >>> lk.linear_generalized_jsd.grad(h, W, h, W, y, wrt="student_weight")
    array([[-0.25],
           [ 0.25]])
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "linear_generalized_jsd"
    family = "language_models"
    prediction = "student hidden features (the input of the student's output head)"
    target = "teacher hidden features and head; target tokens"
    formula = (r"\ell = w_h (\operatorname{logsumexp}(z_s) - z_{s,y}) + w_s\,"
               r"\operatorname{JSD}_\beta(\operatorname{softmax}(z_s/T),"
               r"\operatorname{softmax}(z_t/T)),\ z = W h + b")
    gradient_formula = (
        r"\frac{\partial \ell}{\partial h_s} = W_s^\top g, \quad "
        r"\frac{\partial \ell}{\partial W_s} = g\,h_s^\top, \quad "
        r"\frac{\partial \ell}{\partial b_s} = g, \quad "
        r"g = w_h (\operatorname{softmax}(z_s) - e_y) + w_s\, "
        r"\partial \operatorname{JSD}_\beta / \partial z_s")
    when_to_use = (
        "Distilling a language model whose vocabulary is large: the student's and the "
        "teacher's output heads and the generalized JSD (beta 0: forward KL, beta 1: "
        "reverse KL) plus the cross-entropy with the target tokens, as Liger-Kernel's "
        "LigerFusedLinearJSDLoss, with the gradients for the student's hidden features, "
        "head weight and bias, without holding the N x V logits of either model.")
    references = (
        "Liger-Kernel, src/liger_kernel/chunked_loss/jsd_loss.py",
        ("Hsu et al., Liger Kernel: Efficient Triton Kernels for LLM Training, "
         "arXiv:2410.10989"),
        "Agarwal et al., On-Policy Distillation of Language Models (GKD), arXiv:2306.13649",
    )
    inputs = ("student_hidden", "student_weight", "teacher_hidden", "teacher_weight",
              "targets", "student_bias", "teacher_bias")
    optional_inputs = ("student_bias", "teacher_bias")
    differentiable = ("student_hidden", "student_weight", "student_bias")

    def _compute(self, ctx, student_hidden, student_weight, teacher_hidden, teacher_weight,
                 targets, student_bias, teacher_bias, *, need_grad, beta=0.5,
                 temperature=1.0, weight_hard_loss=0.5, weight_soft_loss=0.5,
                 ignore_index=-100, chunk_size=None):
        """Declares the options (read by ``option_defaults``); the work is in ``_pipeline``
        (the weight and bias gradients are sums over tokens: sample weights and the
        reduction are folded into the rows before the products)."""
        raise NotImplementedError("LinearGeneralizedJSD runs its own _pipeline")

    # ------------------------------------------------------------------ the pipeline
    def _pipeline(self, arrays, reduction, sample_weight, options, want, wrt, out=None):
        hs_in, ws_in, ht_in, wt_in, targets, bs_in, bt_in = arrays
        xp, reduction, sample_weight, opts, need_grad, wrt_names, as_tuple = \
            self._own_pipeline_setup(arrays, reduction, sample_weight, options, want, wrt,
                                     out, optional=("student_bias", "teacher_bias"))
        if bs_in is None and "student_bias" in wrt_names and wrt != "all":
            raise ValueError(f"{self.name}(): wrt='student_bias' needs a `student_bias`; got "
                             "student_bias=None (a head without a bias has no bias gradient)")
        beta = check_scalar("beta", opts["beta"], lo=0.0, hi=1.0)
        temp = check_scalar("temperature", opts["temperature"], lo=0.0, lo_open=True)
        if math.isinf(temp):
            raise ValueError(f"`temperature` must be finite; got {opts['temperature']!r}")
        w_hard = check_scalar("weight_hard_loss", opts["weight_hard_loss"])
        w_soft = check_scalar("weight_soft_loss", opts["weight_soft_loss"])
        for name, v in (("weight_hard_loss", w_hard), ("weight_soft_loss", w_soft)):
            if math.isinf(v):
                raise ValueError(f"`{name}` must be finite; got {v!r}")
        ignore = check_integer("ignore_index", opts["ignore_index"], loss=self.name,
                               or_none=True)

        hs = without_autograd(as_array(hs_in, xp, name="student_hidden", loss=self.name))
        check_floating(xp, "student_hidden", hs, loss=self.name)
        hidden_shape = tuple(hs.shape)
        dtype = hs.dtype
        work = compute_dtype(xp, dtype)
        device = device_of(hs)
        ctx = Context(xp=xp, dtype=dtype, work=work, device=device, loss=self.name)
        with deferred_checks() as pending:  # value checks that could not read values
            hs, Ws, ht, Wt, y, bs, bt = self._check_arrays(ctx, hs, ws_in, ht_in, wt_in,
                                                           targets, bs_in, bt_in)
            lead = tuple(y.shape)
            n_rows = math.prod(lead)
            V, d = Ws.shape
            check_labels(xp, "targets", y, V, ignore_index=ignore)
        hs = xp.reshape(hs, (n_rows, d))
        ht = xp.reshape(ht, (n_rows, Wt.shape[1]))
        y = xp.reshape(y, (n_rows,))
        if ignore is not None:
            keep_b = y != ignore
            y = xp.where(keep_b, y, xp.zeros_like(y))  # safe indices
            keep = xp.astype(keep_b, work)
        else:
            keep = xp.ones((n_rows,), dtype=work, device=device)

        sw, scale, more = rows_reduction(self, ctx, reduction, sample_weight, lead, keep,
                                         "student_hidden", hidden_shape)
        pending += more

        wanted = set(wrt_names) if need_grad else set()
        if bs is None:
            wanted.discard("student_bias")
        row_factor = None
        if wanted:
            row_factor = keep if sw is None else _weighted(xp, sw, keep)
            if scale is not None:
                row_factor = row_factor * scale
        block_rows = LinearCrossEntropy._block_rows(opts["chunk_size"], n_rows, V, work, xp)
        shapes = {"student_hidden": hidden_shape, "student_weight": (V, d),
                  "student_bias": (V,)}
        dest = direct_out(xp, out if need_grad else None, wrt_names, shapes, dtype, work,
                          arrays)

        spec = _Spec(beta=beta, temp=temp, w_hard=w_hard, w_soft=w_soft)
        # in place (NumPy, CPU torch); off the CPU the blocks' shortcuts (skipped rows,
        # redone non-finite rows) would read values back: the functional blocks
        lib = _inplace_library(xp) if readable(hs) else None
        idx = kept_rows(xp, keep) if lib is not None and ignore is not None else None
        if idx is not None:  # ignored targets: the blocks hold the other rows only
            def take(a):
                return None if a is None else xp.take(a, idx, axis=0)

            value, g = on_kept_rows(xp, idx, n_rows, dest, "student_hidden",
                                    lambda sub: _blocks_inplace(
                                        ctx, lib, take(hs), Ws, bs, take(ht), Wt, bt, take(y),
                                        take(keep), take(row_factor), wanted, block_rows,
                                        spec, sub))
        elif lib is not None:
            value, g = _blocks_inplace(ctx, lib, hs, Ws, bs, ht, Wt, bt, y, keep, row_factor,
                                       wanted, block_rows, spec, dest)
        else:
            value, g = _blocks_functional(ctx, hs, Ws, bs, ht, Wt, bt, y, keep, row_factor,
                                          wanted, block_rows, spec)

        value = xp.where(keep > 0, value, xp.zeros_like(value))
        if sw is not None:
            value = _weighted(xp, sw, value)
        total_value = reduced_value(xp, xp.reshape(value, lead) if reduction == "none"
                                    else value, reduction, scale, dtype, pending)
        if not need_grad:
            return total_value
        grad = returned_gradients(xp, g, wrt_names, shapes, dtype, pending, out=out,
                                  written=dest.get(wrt_names[0]), as_tuple=as_tuple)
        if want == "grad":
            return grad
        return total_value, grad

    # ------------------------------------------------------------------ validation
    def _check_arrays(self, ctx, hs, ws_in, ht_in, wt_in, targets, bs_in, bt_in):
        xp, name = ctx.xp, self.name
        if hs.ndim == 0:
            raise ValueError(f"`student_hidden` of {name} must have shape (N, d) or (..., d), "
                             "one feature vector per token; got a 0-d array")
        lead = tuple(hs.shape[:-1])

        def floating(label, x):
            a = without_autograd(as_array(x, xp, name=label, loss=name))
            check_floating(xp, label, a, loss=name)
            if a.dtype != hs.dtype:
                raise TypeError(f"`{label}` of {name} must have the dtype of `student_hidden` "
                                f"({_dtype_name(hs.dtype)}); got {_dtype_name(a.dtype)}. "
                                "Convert one of them explicitly")
            return a

        def head(label, x, features, of):
            W = floating(label, x)
            if W.ndim != 2 or W.shape[1] != features:
                msg = (f"`{label}` of {name} must have shape (V, d) = (vocabulary, features) "
                       f"with d = {features}, the last axis of `{of}`; got "
                       f"{tuple(W.shape)}")
                if W.ndim == 2 and W.shape[0] == features:
                    msg += ("; the layout is (vocabulary, features) like "
                            "torch.nn.Linear.weight: pass the weight's transpose")
                raise ValueError(msg)
            if W.shape[0] == 0:
                raise ValueError(f"`{label}` of {name} must have at least one row (word); got "
                                 f"shape {tuple(W.shape)}")
            return W

        Ws = head("student_weight", ws_in, hs.shape[-1], "student_hidden")
        V = Ws.shape[0]
        ht = floating("teacher_hidden", ht_in)
        if ht.ndim == 0 or tuple(ht.shape[:-1]) != lead:
            raise ValueError(f"`teacher_hidden` of {name} must have the leading shape of "
                             f"`student_hidden` {tuple(hs.shape)}, (..., d_t) with (...) = "
                             f"{lead}; got {tuple(ht.shape)}")
        Wt = head("teacher_weight", wt_in, ht.shape[-1], "teacher_hidden")
        if Wt.shape[0] != V:
            raise ValueError(f"`teacher_weight` of {name} must have the student's vocabulary "
                             f"V = {V} rows (`student_weight` {tuple(Ws.shape)}); got "
                             f"{tuple(Wt.shape)} (Liger-Kernel pads a smaller student "
                             "vocabulary with zero logits; pad the student's head instead)")

        def bias(label, x):
            if x is None:
                return None
            b = floating(label, x)
            if tuple(b.shape) != (V,):
                raise ValueError(f"`{label}` of {name} must have shape (V,) = ({V},), one "
                                 f"entry per word; got {tuple(b.shape)}")
            return b

        bs, bt = bias("student_bias", bs_in), bias("teacher_bias", bt_in)
        y = ctx.asarray(targets, "targets")
        if not xp.isdtype(y.dtype, "integral"):
            raise TypeError(f"`targets` of {name} must be integer token ids; got dtype "
                            f"{_dtype_name(y.dtype)}")
        if tuple(y.shape) != lead:
            msg = (f"`targets` of {name} must have the shape of `student_hidden` "
                   f"{tuple(hs.shape)} without its last (feature) axis, {lead}; got "
                   f"{tuple(y.shape)}")
            if tuple(y.shape) == lead + (1,):
                msg += "; squeeze the last axis of `targets` explicitly"
            raise ValueError(msg)
        work = ctx.work
        if hs.dtype != work:  # float16/bfloat16: computed in float32
            hs, Ws, ht, Wt = (xp.astype(a, work) for a in (hs, Ws, ht, Wt))
            bs = None if bs is None else xp.astype(bs, work)
            bt = None if bt is None else xp.astype(bt, work)
        return hs, Ws, ht, Wt, y, bs, bt


class _Spec:
    """The loss's scalar options."""

    __slots__ = ("beta", "temp", "w_hard", "w_soft")

    def __init__(self, *, beta, temp, w_hard, w_soft):
        self.beta, self.temp, self.w_hard, self.w_soft = beta, temp, w_hard, w_soft


# ---------------------------------------------------------------------------- one tile
def _tile_functional(xp, dev, zs, zt, y, spec, need_grad):
    """Per-token values and the gradient with respect to the student's logits (unweighted)
    of a block of logits, from ``generalized_jsd``'s helpers: ``(value (k,), G or None)``."""
    T, wh, ws = spec.temp, spec.w_hard, spec.w_soft
    V = zs.shape[1]
    s = _log_softmax(xp, zs if T == 1.0 else zs / T)
    t = _log_softmax(xp, zt if T == 1.0 else zt / T)
    p = xp.exp(s)
    value, grad = _jsd_terms(xp, s, t, spec.beta, T, need_grad, p=p)
    value = ws * value
    if need_grad:
        grad = ws * grad
    if wh != 0.0:
        s1 = s if T == 1.0 else _log_softmax(xp, zs)
        onehot = y[:, None] == xp.arange(V, device=dev)[None, :]
        zero = xp.zeros_like(s1)
        value = value - wh * xp.sum(xp.where(onehot, s1, zero), axis=1)
        if need_grad:  # the softmax cross-entropy's gradient, softmax(z_s) - e_y
            p1 = p if T == 1.0 else xp.exp(s1)
            grad = grad + wh * (p1 - xp.astype(onehot, p1.dtype))
    return value, grad


def _tile_inplace(native, xp, zs, zt, y, rf, spec, P, Q, P1):
    """The same as :func:`_tile_functional` for NumPy/PyTorch, in place: ``zs`` (k, V)
    becomes ``rf * G`` (when ``rf`` is not None) and ``zt`` is scratch, as are the tile
    buffers ``P``, ``Q`` and ``P1`` (``P1``: the hard loss's softmax for ``T != 1``, else
    log M for ``0 < beta < 1``; None when neither is needed). Returns the values.

    With the rows shifted by their maxima (:math:`z' = z - m`), :math:`S = \\sum e^{z'}`,
    :math:`s = z' - \\log S` and :math:`t` alike: :math:`D_{KL}(Q\\|P) = \\sum_c Q_c
    (z'_t - z'_s) - \\log S_t + \\log S_s` and, with :math:`\\log M` and :math:`r' = z'_s
    - \\log M` (the gradient's :math:`r` up to the row constant :math:`\\log S_s`, which
    the centring removes), the mixture's terms. ``log M`` is not formed in log space:
    rows that come out non-finite are redone by the caller with the exact helpers.
    """
    T, wh, ws, b = spec.temp, spec.w_hard, spec.w_soft, spec.beta
    k = zs.shape[0]
    want = rf is not None
    P, Q = P[:k], Q[:k]
    ms = _safe_row_max(xp, zs)
    native.subtract(zs, ms[:, None], out=zs)
    ar = xp.arange(k, device=device_of(zs))
    zy = zs[ar, y]  # a copy (z_y - m), read before the block is overwritten
    mt = _safe_row_max(xp, zt)
    native.subtract(zt, mt[:, None], out=zt)
    value = None
    p1_coef = None
    hard_p1 = wh != 0.0 and T != 1.0  # the hard loss needs its own softmax, in P1
    if hard_p1:
        P1 = P1[:k]
        native.exp(zs, out=P1)
        s1 = xp.sum(P1, axis=1)
        value = wh * (xp.log(s1) - zy)
        if want:
            p1_coef = (rf * wh) / s1
    if T != 1.0:
        native.multiply(zs, 1.0 / T, out=zs)
        native.multiply(zt, 1.0 / T, out=zt)
    native.exp(zs, out=P)
    S = xp.sum(P, axis=1)
    native.exp(zt, out=Q)
    Sq = xp.sum(Q, axis=1)
    log_s, log_sq = xp.log(S), xp.log(Sq)
    native.multiply(P, (1.0 / S)[:, None], out=P)
    native.multiply(Q, (1.0 / Sq)[:, None], out=Q)
    if wh != 0.0 and T == 1.0:
        value = wh * (log_s - zy)
    # per row, G = P * (coef * (x - centre) + hard) + q_coef * Q (+ p1_coef * P1 - hard e_y)
    q_coef = None
    if b == 0.0:  # KL(Q || P) = sum Q (z'_t - z'_s) + log S - log S_t
        native.subtract(zt, zs, out=zt)
        native.multiply(zt, Q, out=zt)
        jsd = xp.sum(zt, axis=1) + log_s - log_sq
        x = None
        if want:
            q_coef = -(rf * ws) / T
    else:
        if b == 1.0:  # KL(P || Q) = sum P (z'_s - z'_t) - log S + log S_t; r = z'_s - z'_t
            native.subtract(zs, zt, out=zs)
            native.multiply(zs, P, out=zt)
            centre = xp.sum(zt, axis=1)
            jsd = centre - log_s + log_sq
        else:  # M = P + b (Q - P); r' = z'_s - log M
            L = xp.empty_like(P) if hard_p1 else P1[:k]
            native.subtract(Q, P, out=L)
            native.multiply(L, b, out=L)
            native.add(L, P, out=L)
            _clamp_min(native, L, _tiny(L))  # p = q = 0: M = 0, whose terms are 0
            native.log(L, out=L)
            native.subtract(zt, L, out=zt)
            native.multiply(zt, Q, out=zt)
            a_t = xp.sum(zt, axis=1)
            native.subtract(zs, L, out=zs)
            native.multiply(zs, P, out=Q)
            centre = xp.sum(Q, axis=1)
            jsd = b * (a_t - log_sq) + (1.0 - b) * (centre - log_s)
        x = zs
    value = ws * jsd if value is None else value + ws * jsd
    if not want:
        return value
    hard = rf * wh if (wh != 0.0 and T == 1.0) else None
    if x is None:  # beta = 0: G = (hard + rf ws / T) P - rf ws / T Q
        c = (rf * ws) / T if hard is None else hard + (rf * ws) / T
        native.multiply(P, c[:, None], out=zs)
    else:
        coef = (rf * ws * (1.0 if b == 1.0 else 1.0 - b)) / T
        shift = -coef * centre if hard is None else hard - coef * centre
        native.multiply(zs, coef[:, None], out=zs)
        native.add(zs, shift[:, None], out=zs)
        native.multiply(zs, P, out=zs)
    if q_coef is not None:
        native.multiply(Q, q_coef[:, None], out=Q)
        native.add(zs, Q, out=zs)
    if p1_coef is not None:
        native.multiply(P1, p1_coef[:, None], out=P1)
        native.add(zs, P1, out=zs)
    if wh != 0.0:
        zs[ar, y] = zs[ar, y] - rf * wh
    return value


def _clamp_min(native, x, lo):
    """``x = max(x, lo)`` in place."""
    if native is np:
        np.maximum(x, lo, out=x)
    else:
        x.clamp_(min=lo)


def _tiny(x):
    """The smallest normal number of ``x``'s dtype (a Python float)."""
    if isinstance(x, np.ndarray):
        return float(np.finfo(x.dtype).tiny)
    import torch

    return float(torch.finfo(x.dtype).tiny)


def _jsd_block_kernel(lib, buf):
    """The numba kernel for the elementwise step of a NumPy block
    (:mod:`losskit.kernels.distillation_numba`), or None (another library, numba missing or
    switched off: ``LOSSKIT_DISABLE_NUMBA`` / ``LOSSKIT_DISABLE_FAST``).

    It is called as ``kernel(*args)`` and returns True, or None when numba cannot compile
    it here (the block is then done with :func:`_tile_inplace`, untouched by the kernel).
    """
    if lib != "numpy" or not dispatch.ENABLED or buf.dtype.char not in "fd":
        return None
    nb = fast_paths.family_numba("distillation_numba")
    if nb is None:
        return None
    # a small block on one thread: waking the pool costs more than it saves
    kernel = (nb.jsd_block_parallel if buf.size >= fast_paths.PARALLEL_MIN
              else nb.jsd_block_serial)
    return functools.partial(fast_paths._kernel, nb, kernel)


# ---------------------------------------------------------------------------- the blocks
def _blocks_inplace(ctx, lib, hs, Ws, bs, ht, Wt, bt, y, keep, rf, wanted, nb, spec, dest):
    """NumPy and PyTorch: two reused block buffers, four products per block."""
    xp, work, dev = ctx.xp, ctx.work, ctx.device
    if lib == "torch":
        import torch as native
    else:
        native = np
    n_rows, d = hs.shape
    V = Ws.shape[0]
    want_h = "student_hidden" in wanted
    want_w = "student_weight" in wanted
    want_b = "student_bias" in wanted
    y = xp.astype(y, xp.int64)
    k0 = min(nb, n_rows)
    Zs = xp.empty((k0, V), dtype=work, device=dev)
    Zt = xp.empty((k0, V), dtype=work, device=dev)
    tile = max(1, min(k0, (_TILE_ELEMENTS if lib == "numpy" else _TORCH_TILE_ELEMENTS) // V))
    P = xp.empty((tile, V), dtype=work, device=dev)
    Q = xp.empty((tile, V), dtype=work, device=dev)
    P1 = (xp.empty((tile, V), dtype=work, device=dev)
          if spec.temp != 1.0 and spec.w_hard != 0.0 or 0.0 < spec.beta < 1.0 else None)
    WsT, WtT = Ws.T, Wt.T
    values = []
    gh = dest.get("student_hidden")
    if want_h and gh is None:
        gh = xp.empty((n_rows, d), dtype=work, device=dev)
    gw_out = dest.get("student_weight")
    gw = None
    gb = xp.zeros((V,), dtype=work, device=dev) if want_b else None
    if wanted:
        active = rf != 0
        all_active = bool(xp.all(active))
        hs_eff = hs if all_active else xp.where(active[:, None], hs, xp.zeros_like(hs))
    tmp = None
    if want_w and lib == "numpy":
        tmp = xp.empty((min(_WEIGHT_GRAD_ROWS, V), d), dtype=work, device=dev)
    kernel = _jsd_block_kernel(lib, Zs)
    if kernel is not None:
        y = np.ascontiguousarray(y)
        rf_c = np.ascontiguousarray(rf, dtype=work) if wanted else None
        # the biases are added by the kernel (an empty array: none)
        bs_c, bt_c = (np.empty(0, dtype=work) if b is None else np.ascontiguousarray(b)
                      for b in (bs, bt))
    for lo in range(0, n_rows, nb):
        hi = min(lo + nb, n_rows)
        k = hi - lo
        zs, zt = Zs[:k], Zt[:k]
        native.matmul(hs[lo:hi], WsT, out=zs)
        native.matmul(ht[lo:hi], WtT, out=zt)
        value = None
        if kernel is not None:  # the fused, multithreaded elementwise step (numba)
            value = np.empty(k, dtype=zs.dtype)
            if not kernel(zs, zt, bs_c, bt_c, y[lo:hi], rf_c[lo:hi] if wanted else value,
                          bool(wanted), float(spec.beta), float(spec.temp),
                          float(spec.w_hard), float(spec.w_soft), value):
                kernel = value = None  # numba cannot compile it here: the NumPy tiles
        if value is None:  # (compiling failed before the kernel wrote anything)
            if bs is not None:
                native.add(zs, bs, out=zs)
            if bt is not None:
                native.add(zt, bt, out=zt)
            vals = []
            for a in range(0, k, tile):
                c = min(a + tile, k)
                vals.append(_tile_inplace(native, xp, zs[a:c], zt[a:c], y[lo + a:lo + c],
                                          rf[lo + a:lo + c] if wanted else None, spec, P, Q,
                                          P1))
            value = xp.concat(vals) if len(vals) > 1 else vals[0]
        bad = ~xp.isfinite(value) & (keep[lo:hi] > 0)
        if bool(xp.any(bad)):  # non-finite logits: redo those rows with the exact helpers
            idx = xp.nonzero(bad)[0]
            zsr = xp.matmul(xp.take(hs[lo:hi], idx, axis=0), WsT)
            ztr = xp.matmul(xp.take(ht[lo:hi], idx, axis=0), WtT)
            if bs is not None:
                zsr = zsr + bs
            if bt is not None:
                ztr = ztr + bt
            v2, g2 = _tile_functional(xp, dev, zsr, ztr, xp.take(y[lo:hi], idx), spec,
                                      bool(wanted))
            value[idx] = v2
            if wanted:
                zs[idx] = g2 * xp.take(rf[lo:hi], idx)[:, None]
        values.append(value)
        if not wanted:
            continue
        hb = hs_eff[lo:hi]
        if not all_active:
            act = active[lo:hi]
            if not bool(xp.all(act)):
                zs[~act] = 0.0  # exactly 0, even where the row is inf or NaN
        gb, gw = _block_products(lib, zs, Ws, WsT, hb, gh[lo:hi] if want_h else None, gb,
                                 gw, gw_out, tmp if want_w and lib == "numpy" else None,
                                 want_w)
    del Zs, Zt, P, Q, P1
    value = xp.concat(values) if values else xp.zeros((0,), dtype=work, device=dev)
    if want_w and gw is None:  # no rows at all
        gw = xp.zeros((V, d), dtype=work, device=dev)
        if gw_out is not None:
            gw_out[...] = gw
            gw = gw_out
    if want_h and n_rows == 0:
        gh = xp.zeros((0, d), dtype=work, device=dev) if gh is None else gh
    return value, {"student_hidden": gh, "student_weight": gw, "student_bias": gb}


def _blocks_functional(ctx, hs, Ws, bs, ht, Wt, bt, y, keep, rf, wanted, nb, spec):
    """Every other Array-API library: the same blocks, no array is ever written."""
    xp, work, dev = ctx.xp, ctx.work, ctx.device
    n_rows, d = hs.shape
    V = Ws.shape[0]
    want_h = "student_hidden" in wanted
    want_w = "student_weight" in wanted
    want_b = "student_bias" in wanted
    WsT = xp.permute_dims(Ws, (1, 0))
    WtT = xp.permute_dims(Wt, (1, 0))
    values, gh_parts = [], []
    gw = xp.zeros((V, d), dtype=work, device=dev) if want_w else None
    gb = xp.zeros((V,), dtype=work, device=dev) if want_b else None
    if wanted:
        active = rf != 0
        hs_eff = xp.where(active[:, None], hs, xp.zeros_like(hs))
    for lo in range(0, n_rows, nb):
        hi = min(lo + nb, n_rows)
        zs = xp.matmul(hs[lo:hi, :], WsT)
        if bs is not None:
            zs = zs + bs
        zt = xp.matmul(ht[lo:hi, :], WtT)
        if bt is not None:
            zt = zt + bt
        value, g = _tile_functional(xp, dev, zs, zt, y[lo:hi], spec, bool(wanted))
        del zs, zt
        values.append(value)
        if not wanted:
            continue
        g = xp.where(active[lo:hi, None], g * rf[lo:hi, None], xp.zeros_like(g))
        if want_h:
            gh_parts.append(xp.matmul(g, Ws))
        if want_b:
            gb = gb + xp.sum(g, axis=0)
        if want_w:
            gw = gw + xp.matmul(xp.permute_dims(g, (1, 0)), hs_eff[lo:hi, :])
    value = xp.concat(values) if values else xp.zeros((0,), dtype=work, device=dev)
    gh = None
    if want_h:
        gh = xp.concat(gh_parts) if gh_parts else xp.zeros((0, d), dtype=work, device=dev)
    return value, {"student_hidden": gh, "student_weight": gw, "student_bias": gb}


linear_generalized_jsd = register(LinearGeneralizedJSD())
