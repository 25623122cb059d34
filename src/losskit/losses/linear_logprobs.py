r"""The log-probability of each target token under a linear head, without the logits.

Every sequence-level loss of language-model fine-tuning (DPO and its relatives, GRPO) starts
from the same numbers: the log-probability the model gives to each token of a completion,
:math:`\log\operatorname{softmax}(W h_t + b)_{y_t}`. :data:`linear_token_logprobs` computes
them from the head's input, its weight and bias, in the blocks of
:mod:`losskit.losses.linear_cross_entropy` (the N x V logits never exist), and its gradient
for any cotangent: ``grad(..., sample_weight=c, reduction="sum")`` is the vector-Jacobian
product :math:`\sum_t c_t\, \partial \log p_t / \partial(h, W, b)`, of any sign, in three
matrix products per block. In PyTorch and JAX the framework adapters run that product as the
backward of ``reduction="none"``.

The log-probability is minus the per-token cross-entropy, so this loss is
``linear_cross_entropy`` with the sign of its rows turned round and Liger-Kernel's
``ignore_index=-100`` convention (an ignored token's log-probability is 0).
"""

from __future__ import annotations

from ..core.arrays import as_array, without_autograd
from ..core.loss import register, vjp_weights
from ..core.validation import _dtype_name, check_floating, check_scalar
from .linear_cross_entropy import LinearCrossEntropy

__all__ = ["linear_token_logprobs"]


class LinearTokenLogprobs(LinearCrossEntropy):
    r"""Log-probability of each target token under a linear output layer.

    ``linear_token_logprobs(hidden, weight, targets, bias)`` equals
    ``log_softmax((hidden @ weight.T + bias) / temperature)`` gathered at ``targets`` (0 where
    a target equals ``ignore_index``), computed in blocks of rows so that the (N, V) logits
    are never held at once, with closed-form gradients for ``hidden``, ``weight`` and
    ``bias``.

    Parameters
    ----------
    hidden : floating array of shape (N, d) or (..., d)
        The features entering the output layer, one row per token (``(B, T, d)`` for a
        batch of sequences).
    weight : floating array of shape (V, d)
        The layer's weight (``torch.nn.Linear`` layout: the logits are
        ``hidden @ weight.T + bias``), dtype of ``hidden``.
    targets : integer array of shape (...)
        The token whose log-probability is taken: ``hidden``'s shape without its last
        axis, values in ``[0, V)`` or ``ignore_index``.
    bias : floating array of shape (V,), optional
        The layer's bias; ``None`` for a layer without one.
    ignore_index : int or None, default -100
        Targets equal to it give 0 and take no part in the gradients or in the mean's
        denominator (the convention of PyTorch, TRL and Liger-Kernel).
    temperature : float > 0, default 1
        The logits are divided by it before the softmax (sampling temperature of an RL
        rollout, as Liger-Kernel's GRPO takes it).
    chunk_size : int, optional
        Rows per block (see ``linear_cross_entropy``).
    {common_parameters}

    ``reduction`` defaults to ``"none"``: one log-probability per token. ``sample_weight``
    may have any sign here (it is the cotangent of a vector-Jacobian product).

    Returns
    -------
    value : array
        ``targets``' shape for ``reduction="none"``; 0-d otherwise (``"mean"`` averages
        over the tokens not ignored).
    grad : array or tuple
        ``wrt=`` ``"hidden"`` (default), ``"weight"``, ``"bias"``, a tuple or ``"all"``.

    Notes
    -----
    With :math:`z_t = (W h_t + b)/\tau` and :math:`p_t = \operatorname{softmax}(z_t)`:

    .. math::

        \log p_{t, y_t} = z_{t, y_t} - \operatorname{logsumexp}(z_t), \qquad
        \frac{\partial \log p_{t, y_t}}{\partial z_t} = e_{y_t} - p_t

    and with cotangents :math:`c_t` and :math:`g_t = c_t (e_{y_t} - p_t)/\tau`:
    :math:`\partial/\partial h_t = W^\top g_t`, :math:`\partial/\partial W = \sum_t g_t h_t^\top`,
    :math:`\partial/\partial b = \sum_t g_t`.

    References
    ----------
    .. [1] P.-L. Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM Training",
       arXiv:2410.10989, 2024 (per-token log-probabilities of the chunked preference and
       GRPO losses).

    Examples
    --------
    An identity layer with ``hidden = [ln 3, 0]``: the softmax is ``[3/4, 1/4]``.

    >>> import numpy as np, losskit as lk
    >>> h = np.array([[np.log(3.0), 0.0], [0.0, 0.0]]); W = np.eye(2)
    >>> lk.linear_token_logprobs(h, W, np.array([0, -100])).round(4)
    array([-0.2877,  0.    ])
    >>> lk.linear_token_logprobs.grad(h, W, np.array([0, -100]), reduction="sum")
    array([[ 0.25, -0.25],
           [ 0.  ,  0.  ]])
    """

    name = "linear_token_logprobs"
    family = "language_models"
    prediction = "hidden features (the input of the output layer)"
    target = "integer target tokens"
    formula = r"\log p_y = (W h + b)_y - \operatorname{logsumexp}(W h + b)"
    gradient_formula = (
        r"\frac{\partial \log p_y}{\partial h} = W^\top g, \quad "
        r"\frac{\partial \log p_y}{\partial W} = g\,h^\top, \quad "
        r"\frac{\partial \log p_y}{\partial b} = g, \quad "
        r"g = e_y - \operatorname{softmax}(W h + b)")
    when_to_use = (
        "The per-token log-probabilities of a language model's completions, the input of "
        "every sequence-level fine-tuning loss (DPO, SimPO, KTO, GRPO), straight from the "
        "output layer's input without the N x V logits; its gradient for any cotangent is "
        "the backward of such a loss through the head."
    )
    references = (
        ("Hsu et al., Liger Kernel: Efficient Triton Kernels for LLM Training, "
         "arXiv:2410.10989"),
    )
    inputs = ("hidden", "weight", "targets", "bias")
    optional_inputs = ("bias",)
    differentiable = ("hidden", "weight", "bias")
    _sign = -1.0

    def _compute(self, ctx, hidden, weight, targets, bias, *, need_grad, ignore_index=-100,
                 temperature=1.0, chunk_size=None):
        """Declares the options; the work is in the inherited ``_pipeline``."""
        raise NotImplementedError("LinearTokenLogprobs runs its own _pipeline")

    def _temperature(self, opts) -> float:
        return check_scalar("temperature", opts["temperature"], lo=0.0, lo_open=True)

    def _sample_weight(self, ctx, sample_weight, shape):
        with vjp_weights():  # a cotangent: any sign
            return super()._sample_weight(ctx, sample_weight, shape)


linear_token_logprobs = register(LinearTokenLogprobs(reduction="none"))


# ---------------------------------------------------------------------------- shared by the
# sequence-level losses fused with the output layer (linear_preference, linear_policy_gradient)
def output_layer(ctx, h, weight, bias, wname="weight", bname="bias"):
    """The weight and bias of an output layer for the hidden states ``h``, checked (shape
    (V, d), the dtype of ``h``) and in the work dtype."""
    xp, loss = ctx.xp, ctx.loss
    W = without_autograd(as_array(weight, xp, name=wname, loss=loss))
    check_floating(xp, wname, W, loss=loss)
    d = h.shape[-1]
    if W.ndim != 2 or W.shape[1] != d or W.shape[0] == 0:
        raise ValueError(f"`{wname}` of {loss} must have shape (V, d) with d = {d}, the last "
                         f"axis of the hidden states {tuple(h.shape)} (torch.nn.Linear "
                         f"layout); got {tuple(W.shape)}")
    if W.dtype != h.dtype:
        raise TypeError(f"`{wname}` of {loss} must have the dtype of the hidden states "
                        f"({_dtype_name(h.dtype)}); got {_dtype_name(W.dtype)}")
    b = None
    if bias is not None:
        b = without_autograd(as_array(bias, xp, name=bname, loss=loss))
        if tuple(b.shape) != (W.shape[0],) or b.dtype != h.dtype:
            raise ValueError(f"`{bname}` of {loss} must have shape ({W.shape[0]},) and the "
                             f"dtype {_dtype_name(h.dtype)}; got {tuple(b.shape)} "
                             f"{_dtype_name(b.dtype)}")
    if ctx.work != h.dtype:
        W = xp.astype(W, ctx.work)
        b = None if b is None else xp.astype(b, ctx.work)
    return W, b


def reference_logprobs(ctx, h, y, ref_hidden, ref_weight, ref_bias, head):
    """The reference model's per-token log-probabilities of the targets ``y`` (no
    gradients), from its hidden states and output layer; None without a reference model.
    ``head``: ``linear_token_logprobs``' options."""
    loss = ctx.loss
    if ref_hidden is None and ref_weight is None:
        if ref_bias is not None:
            raise ValueError(f"{loss}(): `ref_bias` needs `ref_hidden` and `ref_weight`")
        return None
    if ref_hidden is None or ref_weight is None:
        raise ValueError(f"{loss}(): a reference model needs both `ref_hidden` and "
                         "`ref_weight`")
    xp = ctx.xp
    rh = without_autograd(as_array(ref_hidden, xp, name="ref_hidden", loss=loss))
    if rh.ndim != h.ndim or tuple(rh.shape[:-1]) != tuple(h.shape[:-1]):
        raise ValueError(f"`ref_hidden` of {loss} must have the shape of `hidden` "
                         f"{tuple(h.shape)} but for its last axis (the reference's d); got "
                         f"{tuple(rh.shape)}")
    rW, rb = output_layer(ctx, rh, ref_weight, ref_bias, "ref_weight", "ref_bias")
    return linear_token_logprobs._pipeline((rh, rW, y, rb), "none", None, head, "value", None)
