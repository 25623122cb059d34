r"""Policy-gradient losses of language-model fine-tuning from rewards: GRPO and its variants.

* :data:`grpo_loss`: the clipped PPO surrogate of group-relative policy optimisation with
  the k3 KL penalty towards a reference model, in the normalisations of GRPO, BNPO,
  Dr. GRPO, DAPO and CISPO, with token- or sequence-level (GSPO) importance sampling,
  as TRL's ``GRPOTrainer`` and Liger-Kernel's fused GRPO loss compute it.

The prediction is the policy's per-token log-probabilities of the sampled completions,
``(B, T)``; the gradient is with respect to them (chain it through the log-softmax of the
logits with the model's own autodiff, or use a fused linear head).
"""

from __future__ import annotations

import math

from ..core.dispatch import register_fast_path
from ..core.loss import Loss, Terms, register
from ..core.validation import (check_choice, check_in_range, check_int, check_numeric,
                               check_same_shape, check_scalar)
from ..kernels import policy_gradient as _fused

__all__ = ["grpo_loss"]

VARIANTS = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo")
IMPORTANCE_SAMPLING = ("token", "sequence")


def _float_input(ctx, x, name: str, shape, first: str = "per_token_logps"):
    """``x`` as an array of the prediction's library and compute dtype, of ``shape``."""
    xp = ctx.xp
    a = ctx.asarray(x, name)
    check_numeric(xp, name, a)
    check_same_shape(first, shape, name, a.shape)
    return xp.astype(a, ctx.work) if a.dtype != ctx.work else a


class GRPOLoss(Loss):
    r"""Group relative policy optimisation (GRPO, BNPO, Dr. GRPO, DAPO, CISPO; GSPO).

    Exactly the loss of TRL's ``GRPOTrainer._compute_loss`` and of Liger-Kernel's
    ``LigerFusedLinearGRPOFunction`` (its ``ppo_loss_fn``, checked against v0.8.5). Not
    here: Liger 0.8.5's newer options, the loss types ``"sapo"``, ``"vespo"`` and
    ``"luspo"``, INTELLECT-2's ``delta`` clamp, ``vllm_is_ratio``, the bias-corrected KL
    (``use_bias_correction_kl``) and ``num_items_in_batch``. One edge differs: a
    fractional mask whose total over the batch is below 1 (Liger clamps the ``bnpo`` /
    ``dapo`` / ``cispo`` normaliser to at least 1; losskit divides by the total).
    :data:`~losskit.linear_grpo_loss` fuses this loss with the output layer.

    Per token, with the log importance ratio :math:`r_{bt} = \log\pi_\theta - \log
    \pi_{\text{old}}` (``importance_sampling="token"``) or its masked mean over the
    sequence, :math:`r_b = \sum_t m_{bt} r_{bt} / \max(1, n_b)` with
    :math:`n_b = \sum_t m_{bt}` (``"sequence"``, GSPO), :math:`\rho = e^{r}` and the
    advantage :math:`A_b` of the sequence:

    .. math::

        L_{bt} = -\min\bigl(\rho A_b,\ \operatorname{clip}(\rho, 1 - \epsilon_l,
        1 + \epsilon_h) A_b\bigr) + \beta\,\bigl(e^{q_{bt} - \log\pi_{bt}}
        - (q_{bt} - \log\pi_{bt}) - 1\bigr)

    (:math:`q` the reference log-probabilities; the KL term is Schulman's k3 estimator of
    :math:`\mathrm{KL}(\pi_\theta \,\|\, \pi_{\text{ref}})`). ``variant="cispo"`` replaces
    the surrogate by :math:`-\operatorname{sg}[\min(\rho, \epsilon_h)]\,A_b \log\pi_{bt}`:
    the ratio itself is capped at ``epsilon_high`` (not at :math:`1 + \epsilon_h`) and
    the capped weight is detached (a stop-gradient), so it multiplies the gradient of
    :math:`\log\pi` and is never differentiated, as TRL and Liger-Kernel do.

    The variants differ in how the masked token sums :math:`S_b = \sum_t m_{bt} L_{bt}`
    are averaged over the batch; losskit's per-sequence value :math:`\ell_b` and its
    weight :math:`w_b` in ``reduction="mean"`` are chosen to give TRL's number:

    ===================  ===========================================  ======================
    variant              TRL's / Liger's loss                         :math:`\ell_b`, :math:`w_b`
    ===================  ===========================================  ======================
    grpo                 :math:`\frac1B \sum_b S_b / \max(1, n_b)`    :math:`S_b / \max(1, n_b)`, 1
    bnpo, dapo, cispo    :math:`\sum_b S_b / \max(1, \sum_b n_b)`     :math:`S_b`, :math:`n_b`
    dr_grpo              :math:`\sum_b S_b / (B\,T_{\max})`           :math:`S_b / T_{\max}`, 1
    ===================  ===========================================  ======================

    so ``reduction="mean"`` (:math:`\sum_b s_b \ell_b / \sum_b s_b w_b`) is exactly TRL's
    and Liger's number for every variant, with one process and one micro-batch (TRL's
    ``dapo`` normaliser is then the batch's token count). ``"none"`` returns the
    :math:`\ell_b` of the table (a sequence's token sum for the token-normalised variants,
    whose shares of the loss are :math:`\ell_b / \sum_b n_b`), ``"sum"`` their sum and
    ``"batchmean"`` their sum over :math:`B`: that is TRL's number for ``grpo`` and
    ``dr_grpo`` only (for ``bnpo``, ``dapo`` and ``cispo`` it is the mean token sum per
    sequence; use ``"mean"``). A sample weight :math:`s_b` weights a sequence (for the
    token-normalised variants, each of its tokens). Because the normaliser is carried by
    the weights, sums of :math:`\ell_b` and :math:`w_b` over micro-batches (or
    ``losskit.evaluate``'s blocks of rows) give the loss of the whole batch exactly.

    Parameters
    ----------
    per_token_logps : floating array (B, T)
        :math:`\log\pi_\theta` of each sampled completion token under the policy being
        trained (the differentiable input).
    mask : array (B, T), 0/1 or bool
        1 for the completion tokens that count, 0 for padding (TRL's ``completion_mask``);
        a fractional value weights its token as in TRL's and Liger's formulas.
    advantages : floating array (B,)
        The advantage of each completion (its group-normalised reward).
    old_per_token_logps : floating array (B, T), optional
        :math:`\log\pi_{\text{old}}` of the policy that sampled the completions. None: the
        current log-probabilities, detached (one update per generation), so the ratio is 1.
    ref_per_token_logps : floating array (B, T), optional
        :math:`q`, the reference model's log-probabilities. None: no KL term (as
        ``beta=0``).
    epsilon_low, epsilon_high : float, default 0.2
        The clipping range :math:`[1 - \epsilon_l, 1 + \epsilon_h]` of the ratio
        (:math:`\epsilon_l \in [0, 1]`, :math:`\epsilon_h \ge 0`; DAPO's "clip-higher"
        takes a larger :math:`\epsilon_h`). With ``variant="cispo"``, ``epsilon_high`` is
        the cap of the ratio itself (> 0; TRL suggests values such as 5) and
        ``epsilon_low`` is unused.
    beta : float, default 0.04
        Weight of the KL penalty (:math:`\ge 0`).
    variant : {"grpo", "bnpo", "dr_grpo", "dapo", "cispo"}, default "dapo"
        TRL's ``loss_type``: the normalisation of the table above (and CISPO's
        surrogate).
    max_completion_length : int, optional
        :math:`T_{\max}` of ``dr_grpo`` (required there; unused otherwise).
    importance_sampling : {"token", "sequence"}, default "token"
        TRL's ``importance_sampling_level``: one ratio per token, or GSPO's one ratio per
        sequence from the masked mean of the token log-ratios (not with ``cispo``, which
        Liger-Kernel refuses too).
    {common_parameters}

    Returns
    -------
    array
        ``(B,)`` with ``reduction="none"`` (the :math:`\ell_b` of the table); else 0-d.

    Raises
    ------
    ValueError
        A ``per_token_logps`` that is not 2-D, other shapes that do not match, a mask
        outside [0, 1], an unknown ``variant`` or ``importance_sampling``, epsilons or
        ``beta`` out of range, ``dr_grpo`` without ``max_completion_length``, and
        ``cispo`` with sequence-level importance sampling.

    Notes
    -----
    The gradient is with respect to ``per_token_logps`` only; the old and reference
    log-probabilities and the advantages are constants. Per token (token level), with
    :math:`c_b` the variant's factor of the table (:math:`1/\max(1, n_b)`, 1 or
    :math:`1/T_{\max}`):

    .. math::

        \frac{\partial \ell_b}{\partial \log\pi_{bt}} = c_b\,m_{bt}\Bigl(
        -A_b \rho_{bt}\,[\text{not clipped}] + \beta\,\bigl(1 - e^{q_{bt} -
        \log\pi_{bt}}\bigr)\Bigr)

    where the surrogate is clipped (its gradient 0) when :math:`A_b > 0,\ \rho > 1 +
    \epsilon_h` or :math:`A_b < 0,\ \rho < 1 - \epsilon_l`; on the clipping boundary
    itself the unclipped gradient is used (as PyTorch's ``min`` and ``clamp`` give).
    CISPO's surrogate has :math:`-\min(\rho_{bt}, \epsilon_h) A_b` instead, everywhere.
    At the sequence level the surrogate of sequence :math:`b` is one number
    :math:`P_b`, counted at each of its :math:`n_b` tokens, and
    :math:`\partial \rho_b / \partial \log\pi_{bt} = \rho_b\,m_{bt} / \max(1, n_b)`, so the
    surrogate part becomes :math:`-c_b\,n_b\,A_b \rho_b\,m_{bt}/\max(1, n_b)\,[\text{not
    clipped}]`. Masked tokens (:math:`m = 0`) take no part, even where their
    log-probabilities are infinite (TRL and Liger multiply by the mask and would give NaN
    there). A sequence with no token has loss 0 and a zero gradient.

    References
    ----------
    .. [1] Z. Shao et al., "DeepSeekMath: pushing the limits of mathematical reasoning in
       open language models", arXiv:2402.03300, 2024 (GRPO).
    .. [2] Q. Yu et al., "DAPO: an open-source LLM reinforcement learning system at
       scale", arXiv:2503.14476, 2025.
    .. [3] Z. Liu et al., "Understanding R1-Zero-like training: a critical perspective",
       arXiv:2503.20783, 2025 (Dr. GRPO).
    .. [4] C. Zheng et al., "Group sequence policy optimization", arXiv:2507.18071, 2025
       (GSPO).
    .. [5] MiniMax, "MiniMax-M1: scaling test-time compute efficiently with lightning
       attention", arXiv:2506.13585, 2025 (CISPO).
    .. [6] J. Schulman, "Approximating KL divergence", 2020,
       http://joschu.net/blog/kl-approx.html (the k3 estimator).

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> logp = np.log(np.array([[0.5, 0.25], [0.5, 0.5]]))
    >>> mask = np.array([[1, 1], [1, 0]])
    >>> adv = np.array([1.0, -1.0])
    >>> float(lk.grpo_loss(logp, mask, adv))          # ratio 1, no KL: -(1 + 1 - 1) / 3
    -0.3333333333333333
    >>> lk.grpo_loss(logp, mask, adv, variant="grpo", reduction="none")
    array([-1.,  1.])
    >>> lk.grpo_loss.grad(logp, mask, adv)
    array([[-0.33333333, -0.33333333],
           [ 0.33333333,  0.        ]])
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "grpo_loss"
    family = "language_models"
    prediction = "per-token log-probabilities (B, T)"
    target = "mask (B, T), advantages (B,); optional old and reference log-probabilities"
    inputs = ("per_token_logps", "mask", "advantages", "old_per_token_logps",
              "ref_per_token_logps")
    differentiable = ("per_token_logps",)
    optional_inputs = ("old_per_token_logps", "ref_per_token_logps")
    formula = (r"L_{bt} = -\min(\rho A_b, \operatorname{clip}(\rho, 1 - \epsilon_l, "
               r"1 + \epsilon_h) A_b) + \beta (e^{q - \log\pi} - (q - \log\pi) - 1),\ "
               r"\ell_b = c_b \sum_t m_{bt} L_{bt}")
    gradient_formula = (r"\frac{\partial \ell_b}{\partial \log\pi_{bt}} = c_b m_{bt} "
                        r"(-A_b \rho_{bt} [\text{not clipped}] + \beta (1 - "
                        r"e^{q_{bt} - \log\pi_{bt}}))")
    when_to_use = (
        "Reinforcement learning of a language model from scalar rewards without a value "
        "network (GRPO, DAPO, Dr. GRPO, GSPO, CISPO): sample a group of completions per "
        "prompt, turn their rewards into group-relative advantages, and train on the "
        "clipped importance-weighted surrogate with an optional KL penalty to a reference "
        "model. Choose the variant of the trainer whose numbers you want to reproduce."
    )
    references = (
        "Shao et al., DeepSeekMath (GRPO), arXiv:2402.03300, 2024",
        "Yu et al., DAPO, arXiv:2503.14476, 2025",
        "Liu et al., Understanding R1-Zero-like training (Dr. GRPO), arXiv:2503.20783, 2025",
        "Zheng et al., Group sequence policy optimization, arXiv:2507.18071, 2025",
        "MiniMax, MiniMax-M1 (CISPO), arXiv:2506.13585, 2025",
    )

    def _compute(self, ctx, per_token_logps, mask, advantages, old_per_token_logps=None,
                 ref_per_token_logps=None, *, need_grad, epsilon_low=0.2, epsilon_high=0.2,
                 beta=0.04, variant="dapo", max_completion_length=None,
                 importance_sampling="token"):
        xp = ctx.xp
        check_choice("variant", variant, VARIANTS)
        check_choice("importance_sampling", importance_sampling, IMPORTANCE_SAMPLING)
        cispo = variant == "cispo"
        el = check_scalar("epsilon_low", epsilon_low, lo=0.0, hi=1.0)
        eh = check_scalar("epsilon_high", epsilon_high, lo=0.0, lo_open=cispo)
        if math.isinf(eh):
            raise ValueError(f"`epsilon_high` must be finite; got {epsilon_high!r}")
        beta = check_scalar("beta", beta, lo=0.0)
        if math.isinf(beta):
            raise ValueError(f"`beta` must be finite; got {beta!r}")
        if max_completion_length is not None:
            max_completion_length = check_int("max_completion_length",
                                              max_completion_length, lo=1, or_none=True)
        elif variant == "dr_grpo":
            raise ValueError("grpo_loss(variant='dr_grpo') divides by B * "
                             "max_completion_length: pass `max_completion_length` (the "
                             "generation limit of the completions)")
        sequence = importance_sampling == "sequence"
        if sequence and cispo:
            raise ValueError("grpo_loss: importance_sampling='sequence' is not defined for "
                             "variant='cispo' (its capped weight is per token, as in "
                             "Liger-Kernel); use importance_sampling='token'")

        lp = per_token_logps
        if lp.ndim != 2:
            raise ValueError("`per_token_logps` of grpo_loss must be 2-D (batch, tokens); "
                             f"got shape {tuple(lp.shape)}")
        shape = tuple(lp.shape)
        m = _float_input(ctx, mask, "mask", shape)
        check_in_range(xp, "mask", m, 0.0, 1.0, hint="1 marks a completion token, 0 padding")
        adv = _float_input(ctx, advantages, "advantages", (shape[0],))
        old = (None if old_per_token_logps is None else
               _float_input(ctx, old_per_token_logps, "old_per_token_logps", shape))
        ref = (None if ref_per_token_logps is None else
               _float_input(ctx, ref_per_token_logps, "ref_per_token_logps", shape))

        keep = m != 0
        zero = xp.zeros_like(lp)
        a = adv[:, None]
        n = xp.sum(m, axis=1)  # tokens per sequence
        n1 = xp.maximum(n, xp.ones_like(n))

        # the importance ratio: per token (B, T) or per sequence (B, 1)
        if old is None:
            logw = xp.zeros_like(n)[:, None] if sequence else zero
        else:
            r = xp.where(keep, lp - old, zero)
            logw = (xp.sum(r * m, axis=1) / n1)[:, None] if sequence else r
        rho = xp.exp(logw)

        if cispo:
            w = xp.minimum(rho, xp.full_like(rho, eh))  # a constant weight (stop-gradient)
            safe_lp = xp.where(keep, lp, zero)
            per_token = -w * a * safe_lp
            d_pg = -w * a
        else:
            lo, hi = 1.0 - el, 1.0 + eh
            clipped = xp.clip(rho, lo, hi)
            per_token = -xp.minimum(rho * a, clipped * a)
            d_pg = xp.where(((a > 0) & (rho > hi)) | ((a < 0) & (rho < lo)),
                            xp.zeros_like(rho), -a * rho)
        kl = d_kl = None
        if beta != 0.0 and ref is not None:
            d = xp.where(keep, ref - lp, zero)
            e = xp.exp(d)
            kl = e - d - 1.0
            d_kl = 1.0 - e

        # the per-sequence sum of the masked token losses
        total = xp.sum(xp.where(keep, per_token * m, zero), axis=1)
        if kl is not None:
            total = total + beta * xp.sum(xp.where(keep, kl * m, zero), axis=1)
        weight = None
        if variant == "grpo":
            c = 1.0 / n1
        elif variant == "dr_grpo":
            c = xp.full_like(n, 1.0 / max_completion_length)
        else:  # bnpo, dapo, cispo: the mean over every token of the batch
            c = xp.ones_like(n)
            weight = n
        value = c * total

        def expand(v):
            return v[:, None]

        if not need_grad:
            return Terms(value, None, weight, expand)
        if sequence:  # one surrogate per sequence, counted at each of its n_b tokens
            g_tok = (n / n1)[:, None] * d_pg * m
        else:
            g_tok = d_pg * m
        if d_kl is not None:
            g_tok = g_tok + beta * d_kl * m
        g = xp.where(keep, c[:, None] * g_tok, zero)
        return Terms(value, g, weight, expand)


grpo_loss = register(GRPOLoss())

# the fused NumPy kernel (losskit.kernels.policy_gradient): one numba sweep over the
# sequences, every variant and importance sampling
register_fast_path(GRPOLoss, _fused.grpo_loss)
