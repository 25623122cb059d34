r"""The GRPO loss fused with the language model's output layer.

:data:`linear_grpo_loss` takes what Liger-Kernel's ``LigerFusedLinearGRPOLoss`` takes, the
policy's last hidden states of a batch of sampled completions, the output layer's weight
and bias, the sampled tokens, the completion mask and one advantage per completion, and
returns the GRPO loss (and its variants) with its closed-form gradients for the hidden
states, the weight and the bias. The N x V logits never exist: the per-token
log-probabilities come from :data:`~losskit.losses.linear_logprobs.linear_token_logprobs`
in blocks of rows, the loss and its gradient with respect to them from
:data:`~losskit.losses.policy_gradient.grpo_loss` (its math is stated once, there), and
the chain rule back through the head is one vector-Jacobian product of the token
log-probabilities.

**Passes.** Two passes over the head: the token log-probabilities (plus one, without
gradients, of the reference model's head when ``ref_hidden`` is given), then, when a
gradient is wanted, their vector-Jacobian product for the cotangent
:math:`\partial L / \partial \log\pi_{bt}` (computed from the ``(B, T)`` log-probabilities,
which costs nothing next to the head).
"""

from __future__ import annotations

from ..core.arrays import as_array, compute_dtype, device_of, without_autograd
from ..core.loss import Context, Loss, check_out, register, returned_gradients
from ..core.validation import (
    check_floating,
    check_labels,
    check_scalar,
    deferred_checks,
    poison,
)
from .linear_logprobs import linear_token_logprobs, output_layer, reference_logprobs
from .policy_gradient import grpo_loss

__all__ = ["linear_grpo_loss"]

#: the options passed on to ``grpo_loss``
_GRPO_OPTIONS = ("epsilon_low", "epsilon_high", "beta", "variant", "max_completion_length",
                 "importance_sampling")
#: the target of a masked token handed to ``linear_token_logprobs`` (its log-probability is
#: then 0 and it takes no part in the products)
_SKIP = -100


class LinearGRPOLoss(Loss):
    r"""GRPO (and BNPO, Dr. GRPO, DAPO, CISPO; GSPO) of a linear output layer's tokens.

    ``linear_grpo_loss(hidden, weight, targets, mask, advantages, bias)`` equals
    ``grpo_loss(logps, mask, advantages, ...)`` where ``logps`` are the log-probabilities of
    the sampled tokens under the tempered head,
    :math:`\log\pi_{bt} = \log\operatorname{softmax}\bigl((W h_{bt} + b)/\tau\bigr)_{y_{bt}}`,
    never holding the logits of more than one block of tokens. It is Liger-Kernel's
    ``LigerFusedLinearGRPOLoss`` (``src/liger_kernel/chunked_loss/grpo_loss.py`` with
    ``fused_linear_ppo.py``, v0.8.5), whose first return value is this loss with the
    default ``reduction="mean"``.

    Parameters
    ----------
    hidden : floating array of shape (B, T, d)
        The policy's last hidden states at the positions that predict the completion
        tokens (Liger's ``_input``).
    weight : floating array of shape (V, d)
        The output layer's weight (``torch.nn.Linear`` layout), dtype of ``hidden``.
    targets : integer array of shape (B, T)
        The sampled tokens (Liger's ``selected_token_ids``), in ``[0, V)`` wherever
        ``mask`` is not 0; a masked position may hold anything (e.g. -100).
    mask : array of shape (B, T), 0/1 or bool
        1 for the completion tokens that count, 0 for padding (Liger's ``attention_mask``,
        TRL's ``completion_mask``); a fractional value weights its token.
    advantages : floating array of shape (B,)
        The advantage of each completion.
    bias : floating array of shape (V,), optional
        The output layer's bias.
    old_per_token_logps : floating array (B, T), optional
        The log-probabilities under the policy that sampled the completions. None: the
        current ones, detached (the ratio is 1).
    ref_per_token_logps : floating array (B, T), optional
        The reference model's log-probabilities of the tokens, for the KL term.
    ref_hidden, ref_weight, ref_bias : arrays, optional
        Instead of ``ref_per_token_logps``: the reference model's hidden states
        ``(B, T, d_ref)`` and output layer ``(V, d_ref)``, ``(V,)``; its log-probabilities
        are computed as the policy's, with the same ``temperature`` (Liger's ``ref_input``,
        ``ref_weight``, ``ref_bias``). No gradient flows to them. Giving both
        ``ref_per_token_logps`` and ``ref_hidden`` is an error (Liger warns and takes
        ``ref_per_token_logps``). Without any reference there is no KL term (as
        ``beta=0``; Liger with ``use_ref_model=False``).
    epsilon_low, epsilon_high, beta, variant, max_completion_length, importance_sampling
        The options of :data:`~losskit.grpo_loss` (Liger's ``epsilon_low``,
        ``epsilon_high``, ``beta``, ``loss_type``, ``max_completion_length``,
        ``importance_sampling_level``), with its defaults.
    temperature : float > 0, default 1
        The logits are divided by it before the softmax (Liger's ``temperature``: the
        sampling temperature of the rollout); also for the reference head.
    chunk_size : int, optional
        Tokens per block of logits (see ``linear_cross_entropy``); by default as many as fit
        its block budget. It changes nothing but the memory (Liger's ``chunk_size``, a
        number of sequences, likewise).
    {common_parameters}

    The reductions and sample weights are ``grpo_loss``'s: ``"mean"`` is Liger's and TRL's
    number for every variant, ``"none"`` gives ``grpo_loss``'s per-sequence values
    :math:`\ell_b` (a sequence's masked token sum, times :math:`1/\max(1, n_b)` for
    ``"grpo"`` and :math:`1/T_{\max}` for ``"dr_grpo"``), and a sample weight (one per
    sequence) weights a sequence.

    Returns
    -------
    value : array
        ``(B,)`` for ``reduction="none"``; else 0-d. (Liger's module returns the pair
        ``(loss, metrics)``: the metrics, the mean KL and the clipped fraction, are not
        computed here.)
    grad : array or tuple
        ``wrt=`` ``"hidden"`` (default), ``"weight"``, ``"bias"``, a tuple of them or
        ``"all"``.

    Raises
    ------
    ValueError
        ``hidden`` not 3-D, shapes that do not match, a token outside ``[0, V)`` at an
        unmasked position, a reference given twice or half of one (``ref_weight`` without
        ``ref_hidden``), and every error of ``grpo_loss`` (mask outside [0, 1], options
        out of range, ``dr_grpo`` without ``max_completion_length``, ``cispo`` with
        sequence-level importance sampling).

    Notes
    -----
    With :math:`z_{bt} = (W h_{bt} + b)/\tau`, :math:`p_{bt} = \operatorname{softmax}(z_{bt})`
    and :math:`\log\pi_{bt} = z_{bt, y_{bt}} - \operatorname{logsumexp}(z_{bt})`, the loss is
    :math:`L = \operatorname{grpo\_loss}(\log\pi, m, A, \log\pi_{\text{old}}, q)` (see
    :data:`~losskit.grpo_loss` for the surrogate, the k3 KL term and each variant's
    normalisation). With the cotangent :math:`c_{bt} = \partial L / \partial \log\pi_{bt}`
    (``grpo_loss.grad``, the reduction and the sample weights included; 0 where
    :math:`m_{bt} = 0`) and :math:`g_{bt} = c_{bt}\,(e_{y_{bt}} - p_{bt})/\tau`:

    .. math::

        \frac{\partial L}{\partial h_{bt}} = W^\top g_{bt}, \qquad
        \frac{\partial L}{\partial W} = \sum_{b,t} g_{bt} h_{bt}^\top, \qquad
        \frac{\partial L}{\partial b} = \sum_{b,t} g_{bt}.

    A masked token, and every token of a sequence without any, gets a zero gradient.

    **Against Liger-Kernel 0.8.5.** The same loss for the options losskit has, with one
    process and without ``num_items_in_batch`` (the DAPO normaliser is then the batch's
    token count). Not here: the loss types ``"sapo"``, ``"vespo"`` and ``"luspo"``,
    INTELLECT-2's ``delta`` clamp, ``vllm_is_ratio``, the bias-corrected KL
    (``use_bias_correction_kl``), ``num_items_in_batch`` and the metrics. Liger computes
    the log-probabilities in float32 whatever the input's dtype; losskit in the input's
    compute dtype. Liger's positional order is ``bias, ref_per_token_logps,
    old_per_token_logps``; losskit's ``bias, old_per_token_logps, ref_per_token_logps``
    (``grpo_loss``'s): pass them by name.

    References
    ----------
    .. [1] Z. Shao et al., "DeepSeekMath: pushing the limits of mathematical reasoning in
       open language models", arXiv:2402.03300, 2024 (GRPO).
    .. [2] P.-L. Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM Training",
       arXiv:2410.10989, 2024 (the fused linear GRPO loss).

    Examples
    --------
    An identity layer at ``hidden = 0``: every token has probability 1/2, the ratio is 1,
    so the DAPO loss is minus the mean advantage per token.

    >>> import numpy as np, losskit as lk
    >>> h = np.zeros((1, 2, 2)); W = np.eye(2)
    >>> y = np.array([[0, 1]]); mask = np.ones((1, 2)); adv = np.array([1.0])
    >>> float(lk.linear_grpo_loss(h, W, y, mask, adv))
    -1.0
    >>> lk.linear_grpo_loss.grad(h, W, y, mask, adv)
    array([[[-0.25,  0.25],
            [ 0.25, -0.25]]])
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "linear_grpo_loss"
    family = "language_models"
    prediction = "hidden features (the input of the output layer), (B, T, d)"
    target = ("sampled tokens (B, T), mask (B, T), advantages (B,); optional bias, old and "
              "reference log-probabilities or the reference model's head")
    formula = (r"L = \operatorname{grpo\_loss}(\log\pi, m, A, \log\pi_{\text{old}}, q),\ "
               r"\log\pi_{bt} = \log\operatorname{softmax}((W h_{bt} + b)/\tau)_{y_{bt}}")
    gradient_formula = (
        r"\frac{\partial L}{\partial h_{bt}} = W^\top g_{bt},\ "
        r"\frac{\partial L}{\partial W} = \sum g_{bt} h_{bt}^\top,\ "
        r"\frac{\partial L}{\partial b} = \sum g_{bt},\ "
        r"g_{bt} = \frac{\partial L}{\partial \log\pi_{bt}} (e_{y_{bt}} - p_{bt}) / \tau")
    when_to_use = (
        "GRPO-style reinforcement learning of a language model (GRPO, DAPO, Dr. GRPO, BNPO, "
        "CISPO, GSPO) straight from the output layer's input, without the N x V logits: "
        "the drop-in for Liger-Kernel's LigerFusedLinearGRPOLoss, with closed-form "
        "gradients for the hidden states, the weight and the bias."
    )
    references = (
        "Shao et al., DeepSeekMath (GRPO), arXiv:2402.03300, 2024",
        ("Hsu et al., Liger Kernel: Efficient Triton Kernels for LLM Training, "
         "arXiv:2410.10989"),
    )
    inputs = ("hidden", "weight", "targets", "mask", "advantages", "bias",
              "old_per_token_logps", "ref_per_token_logps", "ref_hidden", "ref_weight",
              "ref_bias")
    optional_inputs = ("bias", "old_per_token_logps", "ref_per_token_logps", "ref_hidden",
                       "ref_weight", "ref_bias")
    differentiable = ("hidden", "weight", "bias")
    not_streamable = ("the output layer's weight is shared by every row, and the DAPO / "
                      "BNPO normaliser counts the tokens of the whole batch")

    def _compute(self, ctx, hidden, weight, targets, mask, advantages, bias=None,
                 old_per_token_logps=None, ref_per_token_logps=None, ref_hidden=None,
                 ref_weight=None, ref_bias=None, *, need_grad, epsilon_low=0.2,
                 epsilon_high=0.2, beta=0.04, variant="dapo", max_completion_length=None,
                 importance_sampling="token", temperature=1.0, chunk_size=None):
        """Declares the options; the work is in ``_pipeline``."""
        raise NotImplementedError("LinearGRPOLoss runs its own _pipeline")

    # ------------------------------------------------------------------ the pipeline
    def _pipeline(self, arrays, reduction, sample_weight, options, want, wrt, out=None):
        (hidden, weight, targets, mask, advantages, bias, old, ref_logps, ref_hidden,
         ref_weight, ref_bias) = arrays
        xp, reduction, sample_weight, opts, need_grad, wrt_names, as_tuple = \
            self._own_pipeline_setup(arrays, reduction, sample_weight, options, want, wrt, out,
                                     optional=self.optional_inputs)
        if bias is None and "bias" in wrt_names and wrt != "all":
            raise ValueError(f"{self.name}(): wrt='bias' needs a `bias`; got bias=None")
        temperature = check_scalar("temperature", opts["temperature"], lo=0.0, lo_open=True)

        h = without_autograd(as_array(hidden, xp, name="hidden", loss=self.name))
        check_floating(xp, "hidden", h, loss=self.name)
        if h.ndim != 3:
            raise ValueError(f"`hidden` of {self.name} must have shape (B, T, d): one row "
                             f"of hidden states per completion token; got shape "
                             f"{tuple(h.shape)}")
        B, T, d = h.shape
        dtype = h.dtype
        work = compute_dtype(xp, dtype)
        ctx = Context(xp=xp, dtype=dtype, work=work, device=device_of(h), loss=self.name)
        W, b = output_layer(ctx, h, weight, bias)
        head = {"ignore_index": _SKIP, "temperature": temperature,
                "chunk_size": opts["chunk_size"]}
        with deferred_checks() as pending:
            y = ctx.asarray(targets, "targets")
            if tuple(y.shape) != (B, T):
                raise ValueError(f"`targets` of {self.name} must have shape {(B, T)}, "
                                 f"`hidden`'s {tuple(h.shape)} without its last axis; got "
                                 f"{tuple(y.shape)}")
            if not xp.isdtype(y.dtype, "integral"):
                raise TypeError(f"`targets` of {self.name} must be integer token ids; got "
                                f"dtype {y.dtype}")
            m = ctx.asarray(mask, "mask")
            if tuple(m.shape) != (B, T):
                raise ValueError(f"`mask` of {self.name} must have shape {(B, T)}, one flag "
                                 f"per token of `targets`; got {tuple(m.shape)}")
            keep = m != 0
            check_labels(xp, "targets", xp.where(keep, y, xp.zeros_like(y)), W.shape[0],
                         ignore_index=None)
            # a masked token takes no part: its target becomes linear_token_logprobs' skip
            y = xp.where(keep, y, xp.full_like(y, _SKIP))
            ref = self._reference(ctx, h, y, ref_logps, ref_hidden, ref_weight, ref_bias,
                                  head)

        logps = linear_token_logprobs._pipeline((h, W, y, b), "none", None, head, "value",
                                                None)
        seq_arrays = (logps, mask, advantages, old, ref)
        seq_opts = {k: opts[k] for k in _GRPO_OPTIONS}
        wanted = set(wrt_names) if need_grad else set()
        if bias is None:
            wanted.discard("bias")
        grads = {}
        if wanted:
            value, cot = grpo_loss._pipeline(seq_arrays, reduction, sample_weight, seq_opts,
                                             "both", "per_token_logps")
            names = tuple(n for n in ("hidden", "weight", "bias") if n in wanted)
            got = linear_token_logprobs._pipeline((h, W, y, b), "sum", cot, head, "grad",
                                                  names)
            grads = dict(zip(names, got))
        else:
            value = grpo_loss._pipeline(seq_arrays, reduction, sample_weight, seq_opts,
                                        "value", None)
        if pending:
            (value,) = poison(xp, pending, value)
        if not need_grad:
            return value
        shapes = {"hidden": (B, T, d), "weight": tuple(W.shape), "bias": (W.shape[0],)}
        if out is not None:
            check_out(out, shapes[wrt_names[0]], dtype, xp, wrt_names[0])
        grad = returned_gradients(xp, grads, wrt_names, shapes, dtype, pending, out=out,
                                  as_tuple=as_tuple)
        return grad if want == "grad" else (value, grad)

    def _reference(self, ctx, h, y, ref_logps, ref_hidden, ref_weight, ref_bias, head):
        """The reference log-probabilities: as given, from the reference head, or None."""
        if ref_logps is not None and (ref_hidden is not None or ref_weight is not None):
            raise ValueError(f"{self.name}(): give the reference either as "
                             "`ref_per_token_logps` or as `ref_hidden` and `ref_weight`, "
                             "not both")
        from_head = reference_logprobs(ctx, h, y, ref_hidden, ref_weight, ref_bias, head)
        return ref_logps if from_head is None else from_head


linear_grpo_loss = register(LinearGRPOLoss())
