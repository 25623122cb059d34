r"""Preference-optimisation losses of language models, on per-sequence log-probabilities.

* :data:`dpo_loss` -- Direct Preference Optimization (Rafailov et al., 2023) and the
  variants of TRL's ``DPOTrainer`` (``loss_type``) and of Liger-Kernel's
  ``LigerFusedLinearDPOFunction.preference_loss_fn``, with TRL's f-divergence scores.

The inputs are the summed log-probabilities of each chosen and rejected completion under
the policy (and optionally under the frozen reference model), shape ``(N,)``, one entry
per preference pair; the loss is per pair, and ``reduction="mean"`` is the mean over
pairs (TRL's ``per_sequence_loss.mean()``, Liger's ``losses.sum() / n_pairs``). The
gradient is in closed form with respect to the policy's log-probabilities; the reference
ones are constants (TRL computes them under ``torch.no_grad()``).
"""

from __future__ import annotations

import math

import numpy as np

from ..core.dispatch import register_fast_path
from ..core.formula import Formula, exp, log1p_unit, maximum, where
from ..core.loss import Loss, Terms, register
from ..core.primitives import _log_sigmoid, _sigmoid, _softplus
from ..core.validation import (_dtype_name, check_choice, check_floating, check_in_range,
                               check_numeric, check_scalar, same_shape)
from ..kernels import pointwise

_LN2 = math.log(2.0)

__all__ = ["dpo_loss"]

_VARIANTS = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair",
             "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop",
             "sigmoid_norm")
_F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
#: the variants whose formula reads TRL's f-divergence scores (the others use the plain
#: log-ratios, and TRL ignores ``f_divergence_type`` for them)
#: the variants that read f-divergence scores: TRL 1.16 refuses another f_divergence_type
#: for the others (its ``f_divergence_loss_types``, less its token-level "sft")
_USES_SCORES = frozenset({"sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust",
                          "discopop"})
_USES_SMOOTHING = frozenset({"exo_pair", "robust", "aot", "aot_unpaired"})
_USES_LENGTHS = frozenset({"ipo", "sigmoid_norm"})


def _policy(ctx, x, name: str, shape):
    """The rejected policy log-probabilities: floating, the chosen ones' dtype and shape."""
    xp = ctx.xp
    arr = ctx.asarray(x, name)
    check_floating(xp, name, arr, loss=ctx.loss)
    if arr.dtype != ctx.dtype:
        raise TypeError(
            f"`{name}` of {ctx.loss} must have the dtype of `chosen_logps` "
            f"({_dtype_name(ctx.dtype)}); got {_dtype_name(arr.dtype)}. Convert one of them "
            "explicitly: its gradient is returned in that dtype")
    _check_shape(ctx, arr, name, shape)
    return arr if arr.dtype == ctx.work else xp.astype(arr, ctx.work)


def _check_shape(ctx, arr, name, shape):
    if not same_shape(arr.shape, shape):
        raise ValueError(f"`{name}` of {ctx.loss} must have the shape of `chosen_logps` "
                         f"{tuple(shape)}, one entry per preference pair; got "
                         f"{tuple(arr.shape)}. Nothing is broadcast")


def _constant(ctx, x, name: str, shape, *, lengths=False):
    """A reference log-probability or a length: numbers of the given shape, work dtype."""
    xp = ctx.xp
    arr = ctx.asarray(x, name)
    check_numeric(xp, name, arr, bool_ok=False)
    _check_shape(ctx, arr, name, shape)
    arr = arr if arr.dtype == ctx.work else xp.astype(arr, ctx.work)
    if lengths:
        check_in_range(xp, name, arr, 0.0, math.inf,
                       hint="the number of completion tokens of each sequence")
    return arr


def _scores(xp, x, f, alpha, clamp_max, need_grad):
    r"""TRL 1.16's f-divergence score :math:`s = f'(u)` of a log-ratio :math:`x = \log u`
    and :math:`ds/dx`. The additive constants matter once the length-normalised variants
    divide the scores by the lengths."""
    if f == "reverse_kl" or (f == "alpha_divergence" and abs(alpha - 1.0) < 1e-6):
        return x, (xp.ones_like(x) if need_grad else None)
    if f == "forward_kl":  # 1 - exp(-x)
        return -xp.expm1(-x), (xp.exp(-x) if need_grad else None)
    if f == "js_divergence":  # log 2 + log sigmoid(x)
        return _LN2 + _log_sigmoid(xp, x), (_sigmoid(xp, -x) if need_grad else None)
    # alpha divergence: (exp(min((alpha - 1) x, clamp_max)) - 1) / (alpha - 1)
    t = (alpha - 1.0) * x
    inside = t <= clamp_max
    tc = xp.where(inside, t, xp.full_like(t, clamp_max))
    s = xp.expm1(tc) / (alpha - 1.0)
    if not need_grad:
        return s, None
    e = xp.exp(tc)
    # torch.clamp passes the gradient at the bound itself and none beyond it
    return s, xp.where(inside | xp.isnan(t), e, xp.zeros_like(e))


def _dpo_sigmoid(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    r"""DPO's ``"sigmoid"`` term on the reverse-KL scores (the log-ratios) and its gradients
    with respect to the two policy log-probabilities: :math:`\ell = \operatorname{softplus}
    (-z)`, :math:`z = \beta((c - c_\mathrm{ref}) - (r - r_\mathrm{ref}))`,
    :math:`\partial\ell/\partial c = -\partial\ell/\partial r = -\beta\sigma(-z)`. The
    other divergences pass their scores with references of 0."""
    z = beta * ((chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps))
    e = exp(-abs(z))
    s = where(z >= 0, e, 1.0) / (1.0 + e)  # sigma(-z)
    g = -beta * s
    return maximum(-z, 0.0) + log1p_unit(e), g, 0.0 - g  # e in (0, 1]


DPO_SIGMOID = Formula(_dpo_sigmoid)


def _sorted_pairs(xp, a, b):
    """``sort(a) - sort(b)`` laid out on the examples of ``a``: entry ``j`` is the
    difference of the rank-``r`` entries, ``r`` the rank of ``a[j]``; with the index map
    ``(perm_a, perm_b)``."""
    pa = xp.argsort(a, stable=True)
    pb = xp.argsort(b, stable=True)
    d_sorted = xp.take(a, pa) - xp.take(b, pb)
    inv_a = xp.argsort(pa, stable=True)
    return xp.take(d_sorted, inv_a), pa, pb, inv_a


class DPOLoss(Loss):
    r"""Direct Preference Optimization loss and its variants, on sequence log-probabilities.

    With the policy's log-ratios against the reference model,
    :math:`\rho_w = \log\pi_\theta(y_w|x) - \log\pi_{\mathrm{ref}}(y_w|x)` (chosen) and
    :math:`\rho_l` (rejected), TRL's f-divergence scores :math:`s = f'(e^\rho)`
    (``f_divergence``; :math:`s = \rho` for the reverse KL of standard DPO) and
    :math:`z = \beta (s_w - s_l)`, the default ``variant="sigmoid"`` is

    .. math::

        \ell = -\log \sigma(z) = \operatorname{softplus}(-z)

    per preference pair, exactly TRL 1.x ``DPOTrainer`` (``loss_type``) and Liger-Kernel's
    ``LigerFusedLinearDPOFunction.preference_loss_fn`` (``loss_type``). ``reduction="mean"``
    (the default) is their mean over pairs.

    Parameters
    ----------
    chosen_logps, rejected_logps : floating arrays of shape (N,)
        Summed log-probabilities of the chosen and of the rejected completion of each pair
        under the policy (same dtype); the loss is differentiated with respect to both
        (``wrt="chosen_logps"``, the default, ``"rejected_logps"`` or ``"all"``).
    ref_chosen_logps, ref_rejected_logps : arrays of shape (N,), optional
        The same under the frozen reference model; constants of the gradient. ``None``
        (left out) is reference-free DPO: a reference log-probability of 0, as Liger's
        ``ref_chosen_logps=None`` and TRL's former ``reference_free=True``. Either may be
        left out alone.
    chosen_lengths, rejected_lengths : arrays of shape (N,), optional
        Number of completion tokens of each sequence (TRL: ``completion_mask.sum(dim=1)``),
        read by the length-normalised variants ``"ipo"`` and ``"sigmoid_norm"``, which
        require them; the other variants check them (shape, values) and do not use them,
        as TRL's trainer always has the ``completion_mask`` at hand.
        A length below 1 counts as 1 (TRL's ``clamp(min=1.0)``). They are inputs rather
        than options because they belong to each pair: they travel with the batch through
        slicing, sample weights and the framework adapters.
    beta : float, default 0.1
        :math:`\beta > 0`, the strength of the KL regularisation (for ``"ipo"`` TRL's
        :math:`\tau`, for ``"sppo_hard"`` the target margin's :math:`1/(2\beta)`).
    variant : str, default "sigmoid"
        TRL's ``loss_type`` (one at a time; combine several by summing the calls with
        weights, as TRL's ``loss_weights`` does): ``"sigmoid"``, ``"hinge"``, ``"ipo"``,
        ``"exo_pair"``, ``"nca_pair"``, ``"robust"``, ``"bco_pair"``, ``"sppo_hard"``,
        ``"aot"``, ``"aot_unpaired"``, ``"apo_zero"``, ``"apo_down"``, ``"discopop"``,
        ``"sigmoid_norm"`` (TRL's ``"sft"`` is a token-level cross entropy of the logits,
        not of these inputs: use :data:`losskit.softmax_cross_entropy`).
    label_smoothing : float, default 0
        :math:`\varepsilon`: the flip probability of ``"robust"`` (in :math:`[0, 0.5)`),
        EXO's :math:`\varepsilon` for ``"exo_pair"`` (in :math:`(0, 1)`; TRL and Liger
        refuse 0), the conservative smoothing of ``"aot"``/``"aot_unpaired"`` (in
        :math:`[0, 1]`). Another variant refuses a non-zero value (TRL would ignore it).
    discopop_tau : float, default 0.05
        DiscoPOP's temperature :math:`\tau > 0` (``"discopop"`` only).
    f_divergence : str, default "reverse_kl"
        TRL's ``f_divergence_type``: ``"reverse_kl"`` (:math:`s = \rho`),
        ``"forward_kl"`` (:math:`s = 1 - e^{-\rho}`), ``"js_divergence"``
        (:math:`s = \log 2 + \log\sigma(\rho)`), ``"alpha_divergence"``
        (:math:`s = (e^{\min((\alpha-1)\rho,\ c)} - 1)/(\alpha - 1)`, with TRL's clamp
        :math:`c = 80`, 11 for float16 inputs, and :math:`s = \rho` when
        :math:`|\alpha - 1| < 10^{-6}`), as TRL 1.16 writes them (the constants cancel in
        the difference of scores except where ``"ipo"``/``"sigmoid_norm"`` divide by the
        lengths). Only ``"sigmoid"``, ``"sigmoid_norm"``, ``"hinge"``, ``"ipo"``,
        ``"exo_pair"``, ``"robust"`` and ``"discopop"`` read the scores; the other variants
        refuse another divergence, as TRL 1.16 does.
    f_alpha : float, default 1.0
        :math:`\alpha` of ``"alpha_divergence"`` (TRL's ``f_alpha_divergence_coef``, whose
        default is 0.5: pass ``f_alpha=0.5`` to match a TRL config that leaves it out).
    {common_parameters}

    Returns
    -------
    array
        Per pair, shape ``(N,)``, with ``reduction="none"``; else 0-d.

    Raises
    ------
    ValueError
        An unknown ``variant`` or ``f_divergence``; ``beta <= 0``; ``label_smoothing``
        outside its variant's interval or given to a variant without it; lengths missing
        for ``"ipo"``/``"sigmoid_norm"``; negative lengths;
        inputs that are not 1-d or differ in shape; ``"aot"``/``"aot_unpaired"``/
        ``"apo_zero"`` with an f-divergence other than the reverse KL.
    TypeError
        Non-floating policy log-probabilities, or ``rejected_logps`` of another dtype.

    Notes
    -----
    The variants, with :math:`z = \beta(s_w - s_l)`, :math:`r_w = \beta s_w`,
    :math:`r_l = \beta s_l` and length-normalised :math:`\bar z = \beta(s_w/L_w - s_l/L_l)`:

    .. math::

        \begin{aligned}
        \text{sigmoid} &: \operatorname{softplus}(-z) \qquad
        \text{hinge} : \max(0, 1 - z) \qquad
        \text{ipo} : \bigl(s_w/L_w - s_l/L_l - \tfrac{1}{2\beta}\bigr)^2 \\
        \text{exo\_pair} &: \sigma(z)\bigl(\log\sigma(z) - \log(1-\varepsilon)\bigr)
            + \sigma(-z)\bigl(\log\sigma(-z) - \log\varepsilon\bigr) \\
        \text{nca\_pair} &: \operatorname{softplus}(-r_w) + \tfrac12\operatorname{softplus}(r_w)
            + \tfrac12\operatorname{softplus}(r_l) \qquad
        \text{bco\_pair} : \operatorname{softplus}(-r_w) + \operatorname{softplus}(r_l) \\
        \text{robust} &: \frac{(1-\varepsilon)\operatorname{softplus}(-z)
            - \varepsilon\operatorname{softplus}(z)}{1 - 2\varepsilon} \qquad
        \text{sppo\_hard} : \bigl(s_w - \tfrac{1}{2\beta}\bigr)^2
            + \bigl(s_l + \tfrac{1}{2\beta}\bigr)^2 \\
        \text{aot} &: (1-\varepsilon)\operatorname{softplus}(-\beta\delta)
            + \varepsilon\operatorname{softplus}(\beta\delta) \qquad
        \text{apo\_zero} : \sigma(-\beta\rho_w) + \sigma(\beta\rho_l) \qquad
        \text{apo\_down} : \sigma(\beta\rho_w) + \sigma(-z) \\
        \text{discopop} &: \operatorname{softplus}(-z)\,\sigma(-z/\tau)
            + e^{-z}\sigma(z/\tau) \qquad
        \text{sigmoid\_norm} : \operatorname{softplus}(-\bar z)
        \end{aligned}

    The gradient is the chain rule through the scores,
    :math:`\partial\ell/\partial\log\pi_\theta(y_w) = \partial\ell/\partial s_w \cdot
    ds/d\rho` (plus the direct :math:`\rho_w` term of ``"apo_down"``), e.g. for
    ``"sigmoid"`` with the reverse KL

    .. math::

        \frac{\partial \ell}{\partial \log\pi_\theta(y_w)}
        = -\frac{\partial \ell}{\partial \log\pi_\theta(y_l)} = -\beta\,\sigma(-z)

    Everything is evaluated in log-sigmoid/softplus form, so log-probabilities near 0 and
    very negative ones (:math:`|z|` in the thousands) give finite values and gradients
    (``"discopop"``'s :math:`e^{-z}\sigma(z/\tau)` is :math:`\exp(-z + \log\sigma(z/\tau))`,
    finite where TRL's product gives :math:`\infty \cdot 0`). ``"hinge"`` uses the
    subgradient 0 at its kink, as ``torch.relu``.

    **Per-batch quantities of TRL, and how they are handled here.**

    * ``"aot"`` sorts across the batch: :math:`\delta_k = \operatorname{sort}(\log\pi_\theta
      (y_w) - \log\pi_\theta(y_l))_k - \operatorname{sort}(\rho^{\mathrm{ref}})_k` (the
      policy's and the reference's log-ratio differences are sorted separately), and
      ``"aot_unpaired"`` :math:`\delta_k = \operatorname{sort}(\rho_w)_k -
      \operatorname{sort}(\rho_l)_k`. The examples are coupled: the term of rank
      :math:`k` is reported at the example whose policy (``"aot"``) or chosen
      (``"aot_unpaired"``) entry has rank :math:`k`, so the per-pair values are a
      permutation of TRL's and their sum and mean are TRL's batch values. Its gradient
      goes to the entries of rank :math:`k` (torch's ``sort`` backward); ties give the same
      value whichever order. A sample weight weights the term reported at that example
      (TRL refuses its own weighting, ``use_weighting``, for these two variants), and
      the loss of a slice of the batch is not the slice of the batch's loss.
    * ``"bco_pair"``: TRL before its DPO refactor (0.29) subtracted a running mean
      :math:`\delta` of the batch's rewards, kept across batches (a ``RunningMoments``
      state); TRL since then and Liger use :math:`\operatorname{softplus}(-r_w) +
      \operatorname{softplus}(r_l)` with no state, which is what this computes (for the
      old form with the reverse KL, add :math:`\delta/\beta` to both reference
      log-probabilities).
    * ``"robust"`` (Chowdhury et al.'s unbiased loss) has a **minus** before the flipped
      term, :math:`((1-\varepsilon)\operatorname{softplus}(-z) - \varepsilon
      \operatorname{softplus}(z)) / (1 - 2\varepsilon)`, unlike the conservative
      smoothing of ``"aot"`` (and of old TRL's ``"sigmoid"`` with ``label_smoothing``,
      cDPO), which adds it; :math:`\varepsilon` is a constant of the configuration, not
      estimated from the batch. ``"ipo"``/``"sigmoid_norm"``'s lengths are per pair.
      Every other variant is per pair, and the batch value is the mean.

    TRL's WPO weights (``use_weighting``) need the logits; pass them as ``sample_weight``
    (with ``reduction="mean"`` losskit then divides by their sum, TRL by the pair count:
    use ``reduction="sum"`` and divide by N for TRL's value).

    References
    ----------
    .. [1] R. Rafailov, A. Sharma, E. Mitchell, S. Ermon, C. D. Manning, C. Finn, "Direct
       Preference Optimization: Your Language Model is Secretly a Reward Model", NeurIPS
       2023, arXiv:2305.18290.
    .. [2] M. G. Azar et al., "A General Theoretical Paradigm to Understand Learning from
       Human Preferences" (IPO), AISTATS 2024, arXiv:2310.12036.
    .. [3] C. Wang, Y. Jiang, C. Yang, H. Liu, Y. Chen, "Beyond Reverse KL: Generalizing
       Direct Preference Optimization with Diverse Divergence Constraints" (f-DPO), ICLR
       2024, arXiv:2309.16240.
    .. [4] TRL, ``trl/trainer/dpo_trainer.py`` (``DPOTrainer._compute_loss``), and
       Liger-Kernel, ``src/liger_kernel/chunked_loss/dpo_loss.py``.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> c = np.array([-10.0, -12.0]); r = np.array([-11.0, -11.0])
    >>> lk.dpo_loss(c, r, beta=1.0, reduction="none")   # softplus(-(c - r)), reference-free
    array([0.31326169, 1.31326169])
    >>> lk.dpo_loss.grad(c, r, beta=1.0, reduction="sum", wrt="all")
    (array([-0.26894142, -0.73105858]), array([0.26894142, 0.73105858]))
    """

    name = "dpo_loss"
    family = "language_models"
    prediction = "policy log-probabilities of the chosen and rejected completions, (N,)"
    target = "reference log-probabilities (optional), completion lengths (optional)"
    inputs = ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps",
              "chosen_lengths", "rejected_lengths")
    differentiable = ("chosen_logps", "rejected_logps")
    optional_inputs = ("ref_chosen_logps", "ref_rejected_logps", "chosen_lengths",
                       "rejected_lengths")
    formula = (r"\ell = -\log\sigma\bigl(\beta\,[(\log\pi_\theta(y_w) - \log\pi_{ref}(y_w))"
               r" - (\log\pi_\theta(y_l) - \log\pi_{ref}(y_l))]\bigr)")
    gradient_formula = (r"\frac{\partial \ell}{\partial \log\pi_\theta(y_w)} = "
                        r"-\frac{\partial \ell}{\partial \log\pi_\theta(y_l)} = "
                        r"-\beta\,\sigma(-z)")
    when_to_use = (
        "Aligning a language model on preference pairs (a chosen and a rejected completion "
        "per prompt) without a reward model or RL: the sequence log-probabilities of the "
        "policy and of a frozen reference model are all it needs. The variants trade "
        "robustness to noisy labels (robust, exo_pair), overfitting of the margin (ipo, "
        "hinge), absolute likelihoods (nca_pair, bco_pair, apo_*) and length bias "
        "(sigmoid_norm)."
    )
    references = (
        "Rafailov et al., Direct Preference Optimization, NeurIPS 2023, arXiv:2305.18290",
        "Azar et al., A General Theoretical Paradigm to Understand Learning from Human "
        "Preferences (IPO), AISTATS 2024, arXiv:2310.12036",
        "Wang et al., Beyond Reverse KL: Generalizing DPO with Diverse Divergence "
        "Constraints, ICLR 2024, arXiv:2309.16240",
        "TRL DPOTrainer (trl/trainer/dpo_trainer.py); Liger-Kernel chunked_loss/dpo_loss.py",
    )

    def streaming_refusal(self, options):
        """aot and aot_unpaired sort the log-ratios across the whole batch: the loss of a
        block of rows is not its share of the batch's (``losskit.evaluate`` refuses them)."""
        if options.get("variant") in ("aot", "aot_unpaired"):
            return (f"variant={options['variant']!r} sorts the log-ratios across the whole "
                    "batch")
        return None

    def _compute(self, ctx, chosen_logps, rejected_logps, ref_chosen_logps=None,
                 ref_rejected_logps=None, chosen_lengths=None, rejected_lengths=None, *,
                 need_grad, beta=0.1, variant="sigmoid", label_smoothing=0.0,
                 discopop_tau=0.05, f_divergence="reverse_kl", f_alpha=1.0):
        xp = ctx.xp
        check_choice("variant", variant, _VARIANTS)
        check_choice("f_divergence", f_divergence, _F_DIVERGENCES)
        beta = check_scalar("beta", beta, lo=0.0, lo_open=True)
        if math.isinf(beta):
            raise ValueError(f"`beta` must be finite; got {beta!r}")
        tau = check_scalar("discopop_tau", discopop_tau, lo=0.0, lo_open=True)
        alpha = check_scalar("f_alpha", f_alpha)
        if math.isinf(alpha):
            raise ValueError(f"`f_alpha` must be finite; got {f_alpha!r}")
        eps = check_scalar("label_smoothing", label_smoothing)
        if variant == "robust":
            eps = check_scalar("label_smoothing", label_smoothing, lo=0.0, hi=0.5,
                               hi_open=True)
        elif variant == "exo_pair":
            if eps == 0.0:
                raise ValueError("`label_smoothing` must be > 0 for variant='exo_pair' (EXO's "
                                 "epsilon; the EXO paper recommends 1e-3)")
            eps = check_scalar("label_smoothing", label_smoothing, lo=0.0, hi=1.0,
                               lo_open=True, hi_open=True)
        elif variant in _USES_SMOOTHING:
            eps = check_scalar("label_smoothing", label_smoothing, lo=0.0, hi=1.0)
        elif eps != 0.0:
            raise ValueError(
                f"`label_smoothing` is not used by variant={variant!r} (only by 'robust', "
                f"'exo_pair', 'aot' and 'aot_unpaired'); got {label_smoothing!r}")
        if variant not in _USES_SCORES and f_divergence != "reverse_kl":
            raise ValueError(
                f"variant={variant!r} reads the plain log-ratios, not f-divergence scores "
                f"(TRL 1.16 refuses f_divergence_type for it: only "
                f"{', '.join(sorted(_USES_SCORES))} take one); got "
                f"f_divergence={f_divergence!r}")
        if variant in _USES_LENGTHS:
            if chosen_lengths is None or rejected_lengths is None:
                raise ValueError(
                    f"variant={variant!r} is length-normalised: pass `chosen_lengths` and "
                    "`rejected_lengths` (the number of completion tokens of each sequence)")

        c = chosen_logps
        shape = tuple(c.shape)
        if c.ndim != 1:
            raise ValueError(f"`chosen_logps` of {ctx.loss} must be 1-d, (N,): one summed "
                             f"log-probability per pair; got shape {shape}")
        r = _policy(ctx, rejected_logps, "rejected_logps", shape)
        # None: reference-free, a reference log-probability of 0 (Liger's choice)
        rc = (xp.zeros_like(c) if ref_chosen_logps is None else
              _constant(ctx, ref_chosen_logps, "ref_chosen_logps", shape))
        rr = (xp.zeros_like(c) if ref_rejected_logps is None else
              _constant(ctx, ref_rejected_logps, "ref_rejected_logps", shape))
        lc, lr = c - rc, r - rr
        # lengths travel with the batch (as TRL's completion_mask): checked whenever given,
        # read by the length-normalised variants only
        len_c = (None if chosen_lengths is None else
                 _constant(ctx, chosen_lengths, "chosen_lengths", shape, lengths=True))
        len_r = (None if rejected_lengths is None else
                 _constant(ctx, rejected_lengths, "rejected_lengths", shape, lengths=True))

        if variant == "aot":
            value, dd = self._aot_terms(xp, c - r, rc - rr, beta, eps, need_grad)
            return Terms(value, dd, grads={"rejected_logps": 0.0 - dd} if need_grad else None)
        if variant == "aot_unpaired":
            return self._aot_unpaired(xp, lc, lr, beta, eps, need_grad)

        clamp = 11.0 if _dtype_name(ctx.dtype) == "float16" else 80.0
        sw, dsw = _scores(xp, lc, f_divergence, alpha, clamp, need_grad)
        sl, dsl = _scores(xp, lr, f_divergence, alpha, clamp, need_grad)
        if variant in _USES_LENGTHS:
            one = xp.ones_like(c)
            len_c = xp.where(len_c < 1.0, one, len_c)  # clamp(min=1); NaN propagates
            len_r = xp.where(len_r < 1.0, one, len_r)
        value, gw, gl, direct = self._variant(xp, variant, sw, sl, lc, lr, beta, eps, tau,
                                              len_c if variant in _USES_LENGTHS else None,
                                              len_r if variant in _USES_LENGTHS else None,
                                              need_grad)
        if not need_grad:
            return Terms(value, None)
        g_c = gw * dsw if direct is None else gw * dsw + direct
        g_r = gl * dsl
        return Terms(value, g_c, grads={"rejected_logps": g_r})

    @staticmethod
    def _variant(xp, variant, sw, sl, lc, lr, beta, eps, tau, len_c, len_r, need_grad):
        """``(value, dl/ds_w, dl/ds_l, direct dl/d rho_w or None)``."""
        direct = None
        if variant == "ipo":
            d = sw / len_c - sl / len_r - 1.0 / (2.0 * beta)
            value = d * d
            if not need_grad:
                return value, None, None, None
            return value, 2.0 * d / len_c, -2.0 * d / len_r, None
        if variant == "sigmoid_norm":
            z = beta * (sw / len_c - sl / len_r)
            value = _softplus(xp, -z)
            if not need_grad:
                return value, None, None, None
            g = -beta * _sigmoid(xp, -z)
            return value, g / len_c, 0.0 - g / len_r, None
        if variant == "nca_pair":
            rw, rl = beta * sw, beta * sl
            value = _softplus(xp, -rw) + 0.5 * _softplus(xp, rw) + 0.5 * _softplus(xp, rl)
            if not need_grad:
                return value, None, None, None
            gw = beta * (0.5 * _sigmoid(xp, rw) - _sigmoid(xp, -rw))
            return value, gw, 0.5 * beta * _sigmoid(xp, rl), None
        if variant == "bco_pair":
            rw, rl = beta * sw, beta * sl
            value = _softplus(xp, -rw) + _softplus(xp, rl)
            if not need_grad:
                return value, None, None, None
            return value, -beta * _sigmoid(xp, -rw), beta * _sigmoid(xp, rl), None
        if variant == "sppo_hard":
            a = sw - 0.5 / beta
            b = sl + 0.5 / beta
            value = a * a + b * b
            if not need_grad:
                return value, None, None, None
            return value, 2.0 * a, 2.0 * b, None
        if variant == "apo_zero":
            pw, pl = _sigmoid(xp, beta * lc), _sigmoid(xp, beta * lr)
            value = _sigmoid(xp, -beta * lc) + pl
            if not need_grad:
                return value, None, None, None
            qw = _sigmoid(xp, -beta * lc)
            return value, -beta * pw * qw, beta * pl * _sigmoid(xp, -beta * lr), None

        if variant == "sigmoid":
            value, gw, gl = DPO_SIGMOID(xp, sw, sl, 0.0, 0.0, beta)
            return value, gw, gl, None
        z = beta * (sw - sl)
        if variant == "hinge":
            value = xp.maximum(1.0 - z, xp.zeros_like(z))
            if need_grad:
                active = (1.0 - z > 0) | xp.isnan(z)
                dz = xp.where(active, -xp.ones_like(z), xp.zeros_like(z))
                dz = xp.where(xp.isnan(z), z, dz)
        elif variant == "exo_pair":
            lq_w, lq_l = _log_sigmoid(xp, z), _log_sigmoid(xp, -z)
            qw, ql = _sigmoid(xp, z), _sigmoid(xp, -z)
            log_pw, log_pl = math.log1p(-eps), math.log(eps)
            # q * (log q - log p), with q log q = 0 where q = 0
            tw = xp.where(qw == 0, xp.zeros_like(z), qw * (lq_w - log_pw))
            tl = xp.where(ql == 0, xp.zeros_like(z), ql * (lq_l - log_pl))
            value = tw + tl
            # d/dz = sigma(z) sigma(-z) (z - log(1 - eps) + log(eps))
            dz = qw * ql * (z - log_pw + log_pl) if need_grad else None
        elif variant == "robust":
            value = ((1.0 - eps) * _softplus(xp, -z) - eps * _softplus(xp, z)) / (1.0 - 2.0 * eps)
            dz = ((-(1.0 - eps) * _sigmoid(xp, -z) - eps * _sigmoid(xp, z)) / (1.0 - 2.0 * eps)
                  if need_grad else None)
        elif variant == "apo_down":
            pw = _sigmoid(xp, beta * lc)
            value = pw + _sigmoid(xp, -z)
            if need_grad:
                dz = -_sigmoid(xp, z) * _sigmoid(xp, -z)
                direct = beta * pw * _sigmoid(xp, -beta * lc)
        else:  # discopop
            sp = _softplus(xp, -z)
            ls_pos, ls_neg = _log_sigmoid(xp, z / tau), _log_sigmoid(xp, -z / tau)
            m_neg = _sigmoid(xp, -z / tau)  # 1 - modulation
            e_mod = xp.exp(-z + ls_pos)  # e^{-z} sigma(z / tau)
            value = sp * m_neg + e_mod
            if need_grad:
                m_prime = xp.exp(ls_pos + ls_neg) / tau  # d sigma(z / tau) / dz
                dz = (-_sigmoid(xp, -z) * m_neg - sp * m_prime - e_mod
                      + xp.exp(-z + ls_pos + ls_neg) / tau)
        if not need_grad:
            return value, None, None, None
        return value, beta * dz, 0.0 - beta * dz, direct

    @staticmethod
    def _smoothed(xp, delta, beta, eps, need_grad):
        x = beta * delta
        value = (1.0 - eps) * _softplus(xp, -x) + eps * _softplus(xp, x)
        if not need_grad:
            return value, None
        return value, beta * (eps * _sigmoid(xp, x) - (1.0 - eps) * _sigmoid(xp, -x))

    def _aot_terms(self, xp, policy, ref, beta, eps, need_grad):
        """AOT (paired): the rank-k term at the example of rank k of ``policy``."""
        if policy.shape[0] == 0:
            return policy, (policy if need_grad else None)
        delta, _, _, _ = _sorted_pairs(xp, policy, ref)
        return self._smoothed(xp, delta, beta, eps, need_grad)

    def _aot_unpaired(self, xp, lc, lr, beta, eps, need_grad):
        """AOT (unpaired): the rank-k term at the chosen entry of rank k; the rejected
        gradient is scattered to the rejected entry of rank k after weighting (finalize)."""
        if lc.shape[0] == 0:
            return Terms(lc, lc if need_grad else None,
                         grads={"rejected_logps": lr} if need_grad else None)
        delta, pa, pb, inv_a = _sorted_pairs(xp, lc, lr)
        value, dd = self._smoothed(xp, delta, beta, eps, need_grad)
        if not need_grad:
            return Terms(value, None)
        # the rejected gradient, laid out like the value (example of the chosen rank-k
        # entry): after the sample weights it moves to the rejected rank-k entry
        inv_b = xp.argsort(pb, stable=True)
        to_rejected = xp.take(pa, inv_b)  # rejected entry j <- value entry pa[rank of j]

        def finalize(g):
            return xp.take(g, to_rejected)

        return Terms(value, dd, grads={"rejected_logps": 0.0 - dd},
                     finalize={"rejected_logps": finalize})


dpo_loss = register(DPOLoss())


# the fused NumPy kernel (losskit.kernels.pointwise) of the default variant, "sigmoid" with
# the reverse KL, on (N,) arrays of one dtype: value and both gradients from one pass; the
# other variants, the lengths and sample weights run the generic path
_FINITE = pointwise.number()
_POSITIVE = pointwise.number(0.0, lo_open=True)
_SIGMOID_FAST = pointwise.fast_path(
    DPO_SIGMOID, {"beta": _POSITIVE},
    inputs=("ref_chosen_logps", "ref_rejected_logps"), grads=("rejected_logps",),
    exact_dtype=("rejected_logps",))


def _dpo_fast_path(loss, arrays, reduction, sample_weight, opts, want, out, wrt=None):
    """DPO ``variant="sigmoid"``, ``f_divergence="reverse_kl"``, no lengths; a reference
    left out is zeros. Options the variant does not read must still be valid (the generic
    path's checks), else it answers."""
    c, r, rc, rr, len_c, len_r = arrays
    if (type(c) is not np.ndarray or c.ndim != 1 or len_c is not None or len_r is not None
            or opts["variant"] != "sigmoid" or opts["f_divergence"] != "reverse_kl"
            or type(opts["label_smoothing"]) not in (int, float)
            or opts["label_smoothing"] != 0 or _FINITE(opts["f_alpha"]) is None
            or _POSITIVE(opts["discopop_tau"]) is None):
        return NotImplemented
    zero = None
    if rc is None or rr is None:
        zero = np.zeros_like(c)
    return _SIGMOID_FAST(loss, (c, r, zero if rc is None else rc, zero if rr is None else rr),
                         reduction, sample_weight, opts, want, out, wrt)


_dpo_fast_path.takes_wrt = True
register_fast_path(DPOLoss, _dpo_fast_path)
