r"""Reference-free and unpaired preference losses of language models: SimPO, CPO, ORPO, KTO.

All four take **per-sequence log-probabilities** of the policy, shape ``(N,)`` (any shape
works: the losses are elementwise), already summed or averaged over each sequence's
tokens (mask the padding before that: these losses never see tokens):

* :data:`simpo_loss` -- Meng, Xia and Chen's SimPO (2024), length-averaged
  log-probabilities, no reference model, a target margin :math:`\gamma`;
* :data:`cpo_loss` -- the preference term of Xu et al.'s Contrastive Preference
  Optimization (2024): DPO without a reference model;
* :data:`orpo_loss` -- the odds-ratio term of Hong, Lee and Thorne's ORPO (2024);
* :data:`kto_loss` -- Ethayarajh et al.'s KTO (2024) on **unpaired** sequences, each
  marked desirable or not.

Each per-example value is exactly the term that Liger-Kernel's ``preference_loss_fn``
(``src/liger_kernel/chunked_loss/{simpo,cpo,orpo,kto}_loss.py``) sums, so
``reduction="mean"`` (the default) gives Liger's number: Liger divides the paired losses'
sum by ``full_target.shape[0] // 2``, the number of pairs N (its batch holds the N chosen
then the N rejected sequences), and KTO's sum by ``full_target.shape[0]``, the number of
sequences N. Liger's fused modules may add ``alpha`` times the chosen sequences' NLL
(``compute_nll_loss``); that language-modelling term is not part of these losses (add
:data:`losskit.cross_entropy` of the chosen tokens yourself).

The gradients are closed forms with respect to the policy's log-probabilities:
``.grad(..., wrt="all")`` gives both ``(d/d chosen_logps, d/d rejected_logps)`` of a paired
loss; KTO differentiates ``logps`` only (reference log-probabilities and the KL estimate
are constants, as in TRL and Liger, which detach them).
"""

from __future__ import annotations

import math

import numpy as np

from ..core.dispatch import register_fast_path
from ..core.formula import Formula, exp, expm1, log, log1p_unit, maximum, where
from ..core.loss import Loss, Terms, register
from ..core.validation import (check_floating, check_in_range, check_numeric, check_scalar,
                               check_two_values, same_shape)
from ..kernels import pointwise
from .metric_learning import _other_input

__all__ = ["simpo_loss", "cpo_loss", "orpo_loss", "kto_loss"]

_LN2 = math.log(2.0)


# ---------------------------------------------------------------------------- helpers
def _beta(beta) -> float:
    b = check_scalar("beta", beta, lo=0.0, lo_open=True)
    if math.isinf(b):
        raise ValueError(f"`beta` must be finite; got {beta!r}")
    return b


def _finite(name: str, value) -> float:
    v = check_scalar(name, value)
    if math.isinf(v):
        raise ValueError(f"`{name}` must be finite; got {value!r}")
    return v


def _smoothing(value) -> float:
    return check_scalar("label_smoothing", value, lo=0.0, hi=1.0)


def _rejected(ctx, chosen, rejected):
    return _other_input(ctx, rejected, "rejected_logps", "chosen_logps", chosen.shape)


# ---------------------------------------------------------------------------- the math
# Each loss's elementwise math, stated once as a Formula (losskit.core.formula): the
# generic path evaluates it on any array library, the fused NumPy kernel
# (losskit.kernels.pointwise) compiles it; each returns the value and the gradients with
# respect to the two policy log-probabilities (KTO: the one).
def _paired_logistic(chosen_logps, rejected_logps, beta, gamma, label_smoothing):
    """SimPO's and CPO's term: the smoothed logistic loss of z = beta (c - r) - gamma,
    ``(1 - ls) softplus(-z) + ls softplus(z)``, and its gradients ``+-beta dl/dz``,
    ``dl/dz = ls sigma(z) - (1 - ls) sigma(-z)`` (each part stable for any z)."""
    z = beta * (chosen_logps - rejected_logps) - gamma
    e = exp(-abs(z))
    l1p = log1p_unit(e)  # e in (0, 1]
    inv = 1.0 / (1.0 + e)
    up = z >= 0
    sig_neg = where(up, e * inv, inv)  # sigma(-z)
    if label_smoothing == 0.0:
        value = maximum(-z, 0.0) + l1p  # softplus(-z)
        dz = -sig_neg
    else:
        sp_pos = maximum(z, 0.0) + l1p  # softplus(z)
        value = sp_pos if label_smoothing == 1.0 else (
            (1.0 - label_smoothing) * (maximum(-z, 0.0) + l1p) + label_smoothing * sp_pos)
        dz = label_smoothing * where(up, inv, e * inv) - (1.0 - label_smoothing) * sig_neg
    g = beta * dz
    return value, g, 0.0 - g


def _orpo(chosen_logps, rejected_logps, beta):
    """ORPO's term and its two gradients (see :class:`ORPOLoss`'s notes)."""
    c, r = chosen_logps, rejected_logps
    # log(1 - e^x) as log(-expm1(x)): full precision near x = 0, where log1p(-exp(x))
    # loses every digit; far below 0 its absolute error (under an ulp of 1) stays below
    # the rounding of x - log(1 - e^x) itself (|x| > ln 2 there), and it needs no branch
    uc = 0.0 - expm1(c)  # 1 - e^c, +0 at c = 0 (the sign the gradient's division needs)
    ur = 0.0 - expm1(r)
    lc = log(uc)
    lr = log(ur)
    big = (c - lc) - (r - lr)  # the log odds ratio L
    e = exp(-abs(big))  # shared by -log sigma(L) and sigma(-L)
    sp = maximum(-big, 0.0) + log1p_unit(e)  # -log sigma(L); e in (0, 1]
    pos = big > 0
    s = where(pos, e, 1.0) / (1.0 + e)  # sigma(-L)
    # dL/dc = 1 / (1 - e^c), dL/dr = -1 / (1 - e^r). Where L > 0 the chosen term is taken
    # in log space, sigma(-L) / (1 - e^c) = exp((r - l_r) - c - sp): finite at c = 0,
    # where sigma(-L) underflows as 1 / (1 - e^c) overflows; the rejected term cannot
    # meet that (r -> 0 sends L to -inf)
    gc = -beta * where(pos, exp((r - lr) - c - sp), s / uc)
    gr = (beta * s) / ur
    return beta * sp, gc, gr


def _orpo_ok(chosen_logps, rejected_logps, beta):
    """Log-probabilities at most 0."""
    return (chosen_logps <= 0.0) & (rejected_logps <= 0.0)


def _kto(logps, desirable, ref_logps, beta, kl):
    """KTO's term sigma(-u), u = +-beta (rho - kl), and its gradient -+beta sigma(u)
    sigma(-u) (``desirable``: true/nonzero for a desirable sequence)."""
    u0 = beta * ((logps - ref_logps) - kl)
    u = where(desirable, u0, -u0)
    e = exp(-abs(u))
    inv = 1.0 / (1.0 + e)
    up = u >= 0
    value = where(up, e * inv, inv)  # sigma(-u)
    g = (beta * where(up, inv, e * inv)) * value  # beta sigma(u) sigma(-u)
    return value, where(desirable, -g, g)


def _zero_or_one(logps, desirable, ref_logps, beta, kl):
    return (desirable == 0.0) | (desirable == 1.0)


PAIRED_LOGISTIC = Formula(_paired_logistic)
ORPO = Formula(_orpo)
ORPO_OK = Formula(_orpo_ok)
KTO = Formula(_kto)
KTO_OK = Formula(_zero_or_one)


_PAIRED_PARAMETERS = """\
chosen_logps, rejected_logps : floating arrays of shape (N,)
    The policy's log-probabilities of the chosen (preferred) and the rejected sequence
    of each pair, same shape and dtype (elementwise, so any shape works)."""


# ---------------------------------------------------------------------------- losses
def _margin_terms(ctx, chosen, rejected, beta, margin, smoothing, need_grad):
    """SimPO's and CPO's terms: the smoothed logistic loss of :math:`z = \\beta (c - r) -
    \\gamma` (``margin`` :math:`\\gamma`), its gradient :math:`\\pm\\beta\\,
    \\partial\\ell/\\partial z` for the chosen and the rejected log-probabilities."""
    r = _rejected(ctx, chosen, rejected)
    value, gc, gr = PAIRED_LOGISTIC(ctx.xp, chosen, r, beta, margin, smoothing)
    if not need_grad:
        return Terms(value, None)
    return Terms(value, gc, grads={"rejected_logps": gr})


class _Paired(Loss):
    """The reference-free pair losses' inputs: the policy's log-probabilities of the
    chosen and the rejected sequence, both differentiated."""

    family = "language_models"
    prediction = "log-probabilities of the chosen sequences"
    target = "log-probabilities of the rejected sequences"
    inputs = ("chosen_logps", "rejected_logps")
    differentiable = ("chosen_logps", "rejected_logps")


class _PairedLogistic(_Paired):
    """What SimPO and CPO share: the smoothed logistic loss of a margin of the two
    policy log-probabilities (metadata, gradient)."""

    formula = (r"\ell = -(1 - \epsilon) \log\sigma(z) - \epsilon \log\sigma(-z),\ "
               r"z = \beta (c - r)")
    gradient_formula = (r"\frac{\partial \ell}{\partial c} = -\frac{\partial \ell}"
                        r"{\partial r} = \beta\,(\epsilon\,\sigma(z) - (1 - \epsilon)\,"
                        r"\sigma(-z))")


class SimPOLoss(_PairedLogistic):
    r"""SimPO: simple preference optimisation without a reference model (Meng et al. 2024).

    .. math::

        z = \beta\,(c - r) - \gamma, \qquad
        \ell = -(1 - \epsilon)\,\log\sigma(z) - \epsilon\,\log\sigma(-z)

    with :math:`c` and :math:`r` the **length-averaged** log-probabilities of the chosen
    and the rejected sequence (:math:`\frac{1}{|y|}\log\pi_\theta(y \mid x)`: the sum over
    a sequence's tokens divided by its number of tokens) and :math:`\epsilon` the label
    smoothing (the chance that a pair's preference label is flipped).

    Parameters
    ----------
    chosen_logps, rejected_logps : floating arrays of shape (N,)
        Length-averaged log-probabilities of the chosen and the rejected sequences (same
        shape and dtype; elementwise, so any shape works).
    beta : float, default 0.1
        :math:`\beta > 0`, the reward scale. Liger-Kernel's default; the SimPO paper
        tunes :math:`\beta` in 2.0--2.5 for most models (up to 10), i.e. much larger.
    gamma : float, default 0.5
        :math:`\gamma`, the target reward margin (Liger-Kernel's default); the paper's
        grid is 0.3--1.6 (later expressed as :math:`\gamma / \beta` in 0--1).
    label_smoothing : float, default 0
        :math:`\epsilon \in [0, 1]`; 0 is the paper's loss.
    {common_parameters}

    Returns
    -------
    array
        Per pair, shape (N,), with ``reduction="none"``; else 0-d.

    Raises
    ------
    ValueError
        ``beta`` not in (0, inf), ``gamma`` not finite, ``label_smoothing`` outside
        [0, 1], shapes that differ.
    TypeError
        Non-floating log-probabilities, or ``rejected_logps`` of another dtype.

    Notes
    -----
    .. math::

        \frac{\partial \ell}{\partial c} = -\frac{\partial \ell}{\partial r}
        = \beta\,\bigl(\epsilon\,\sigma(z) - (1 - \epsilon)\,\sigma(-z)\bigr)

    ``reduction="mean"`` is Liger-Kernel's ``LigerFusedLinearSimPOFunction.
    preference_loss_fn`` (its sum over the pairs divided by ``full_target.shape[0] //
    2``, the number of pairs); TRL's ``CPOTrainer(loss_type="simpo")`` computes the same
    term (with ``gamma = simpo_gamma``) on its averaged log-probabilities.

    References
    ----------
    .. [1] Y. Meng, M. Xia, D. Chen, "SimPO: Simple preference optimization with a
       reference-free reward", NeurIPS 2024, arXiv:2405.14734.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> c = np.array([-0.5, -1.0]); r = np.array([-1.5, -0.8])
    >>> lk.simpo_loss(c, r, beta=2.0, gamma=1.0, reduction="none").round(4)   # z = 1, -1.4
    array([0.3133, 1.6204])
    """

    name = "simpo_loss"
    prediction = "length-averaged log-probabilities of the chosen sequences"
    target = "length-averaged log-probabilities of the rejected sequences"
    formula = (r"\ell = -(1 - \epsilon) \log\sigma(z) - \epsilon \log\sigma(-z),\ "
               r"z = \beta (c - r) - \gamma")
    when_to_use = (
        "Preference fine-tuning of a language model from (chosen, rejected) pairs without "
        "a reference model: the reward is the length-averaged log-likelihood, so it does "
        "not favour long answers, and gamma asks for a margin. Cheaper than DPO (no "
        "reference forward pass); needs tuning of beta and gamma.")
    references = (
        "Meng, Xia, Chen, SimPO: Simple preference optimization with a reference-free "
        "reward, NeurIPS 2024, arXiv:2405.14734",
    )

    def _compute(self, ctx, chosen_logps, rejected_logps, *, need_grad, beta=0.1,
                 gamma=0.5, label_smoothing=0.0):
        return _margin_terms(ctx, chosen_logps, rejected_logps, _beta(beta),
                             _finite("gamma", gamma), _smoothing(label_smoothing), need_grad)


class CPOLoss(_PairedLogistic):
    r"""The preference term of Contrastive Preference Optimization (Xu et al. 2024).

    .. math::

        z = \beta\,(c - r), \qquad
        \ell = -(1 - \epsilon)\,\log\sigma(z) - \epsilon\,\log\sigma(-z)

    DPO's sigmoid loss with the reference model left out (a uniform reference):
    :math:`c` and :math:`r` are the policy's log-probabilities of the chosen and the
    rejected sequence, :math:`\epsilon` the label smoothing. The paper's full objective
    adds the negative log-likelihood of the chosen sequence (a behaviour-cloning term),
    which is not part of this loss.

    Parameters
    ----------
    chosen_logps, rejected_logps : floating arrays of shape (N,)
        Log-probabilities of the chosen and the rejected sequences (same shape and dtype;
        elementwise, so any shape works).
    beta : float, default 0.1
        :math:`\beta > 0`, the temperature (the paper's and Liger-Kernel's 0.1).
    label_smoothing : float, default 0
        :math:`\epsilon \in [0, 1]`; 0 is the paper's loss (cDPO-style smoothing
        otherwise, usually below 0.5).
    {common_parameters}

    Returns
    -------
    array
        Per pair, shape (N,), with ``reduction="none"``; else 0-d.

    Raises
    ------
    ValueError
        ``beta`` not in (0, inf), ``label_smoothing`` outside [0, 1], shapes that differ.
    TypeError
        Non-floating log-probabilities, or ``rejected_logps`` of another dtype.

    Notes
    -----
    .. math::

        \frac{\partial \ell}{\partial c} = -\frac{\partial \ell}{\partial r}
        = \beta\,\bigl(\epsilon\,\sigma(z) - (1 - \epsilon)\,\sigma(-z)\bigr)

    It is :data:`simpo_loss` with :math:`\gamma = 0`. ``reduction="mean"`` is
    Liger-Kernel's ``LigerFusedLinearCPOFunction.preference_loss_fn`` (its sum over the
    pairs divided by ``full_target.shape[0] // 2``, the number of pairs), and TRL's
    ``CPOTrainer`` ``loss_type="sigmoid"`` term.

    References
    ----------
    .. [1] H. Xu, A. Sharaf, Y. Chen, W. Tan, L. Shen, B. Van Durme, K. Murray, Y. J. Kim,
       "Contrastive preference optimization: pushing the boundaries of LLM performance in
       machine translation", ICML 2024, arXiv:2401.08417.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> c = np.array([-10.0, -20.0]); r = np.array([-20.0, -10.0])
    >>> lk.cpo_loss(c, r, reduction="none").round(4)   # -log sigmoid(+-1)
    array([0.3133, 1.3133])
    """

    name = "cpo_loss"
    when_to_use = (
        "Preference fine-tuning from (chosen, rejected) pairs without a reference model "
        "(CPO, first for machine translation): DPO's logistic loss on the policy's own "
        "log-probability margin, usually with an NLL term on the chosen sequences.")
    references = (
        "Xu, Sharaf, Chen, Tan, Shen, Van Durme, Murray, Kim, Contrastive preference "
        "optimization, ICML 2024, arXiv:2401.08417",
    )

    def _compute(self, ctx, chosen_logps, rejected_logps, *, need_grad, beta=0.1,
                 label_smoothing=0.0):
        return _margin_terms(ctx, chosen_logps, rejected_logps, _beta(beta), 0.0,
                             _smoothing(label_smoothing), need_grad)


class ORPOLoss(_Paired):
    r"""The odds-ratio term of ORPO, odds-ratio preference optimisation (Hong et al. 2024).

    .. math::

        L = \log\frac{\operatorname{odds}(c)}{\operatorname{odds}(r)}
        = \bigl(c - \log(1 - e^{c})\bigr) - \bigl(r - \log(1 - e^{r})\bigr), \qquad
        \ell = -\beta\,\log\sigma(L)

    with :math:`c, r \le 0` the log-probabilities of the chosen and the rejected sequence
    and :math:`\operatorname{odds}(y) = p / (1 - p)`. :math:`\log(1 - e^x)` is computed
    as ``log(-expm1(x))``, so it keeps full precision for log-probabilities near 0
    (probabilities near 1), where ``log1p(-exp(x))`` loses every digit; far below 0 its
    absolute error, under one ulp of 1, is smaller than the rounding of
    :math:`x - \log(1 - e^x)` itself. ORPO's full objective adds the NLL of the chosen
    sequence (weighted 1, with :math:`\beta` on this term), which is not part of this loss.

    Parameters
    ----------
    chosen_logps, rejected_logps : floating arrays of shape (N,)
        Log-probabilities, :math:`\le 0`, of the chosen and the rejected sequences (same
        shape and dtype; elementwise). ORPO uses length-averaged ones.
    beta : float, default 0.1
        :math:`\beta > 0`, the weight of the odds-ratio term (the paper's
        :math:`\lambda`, tuned in 0.1--1.0; Liger-Kernel's and TRL's default 0.1).
    {common_parameters}

    Returns
    -------
    array
        Per pair, shape (N,), with ``reduction="none"``; else 0-d.

    Raises
    ------
    ValueError
        Log-probabilities above 0, ``beta`` not in (0, inf), shapes that differ.
    TypeError
        Non-floating log-probabilities, or ``rejected_logps`` of another dtype.

    Notes
    -----
    .. math::

        \frac{\partial \ell}{\partial c} = \frac{-\beta\,\sigma(-L)}{1 - e^{c}},\qquad
        \frac{\partial \ell}{\partial r} = \frac{\beta\,\sigma(-L)}{1 - e^{r}}

    Where :math:`L > 0` they are evaluated in log space,
    :math:`-\beta \exp(r - c - \log(1 - e^{r}) - \operatorname{softplus}(-L))` and
    :math:`\beta \exp(r - c + \log(1 - e^{c}) - 2 \log(1 - e^{r})
    - \operatorname{softplus}(-L))`, so that
    :math:`c = 0` (probability 1) gives the loss 0 with the finite gradients
    :math:`-\beta e^{r} / (1 - e^{r})` and 0. :math:`r = 0` gives an infinite loss;
    :math:`c = r = 0` leaves the odds ratio undefined (``inf / inf``): NaN, as in
    Liger-Kernel.

    ``reduction="mean"`` is Liger-Kernel's ``LigerFusedLinearORPOFunction.
    preference_loss_fn`` loss (``-beta`` times the sum of ``logsigmoid(log_odds)``
    divided by ``full_target.shape[0] // 2``, the number of pairs), and TRL's
    ``ORPOTrainer`` ``losses`` term before it adds the NLL.

    References
    ----------
    .. [1] J. Hong, N. Lee, J. Thorne, "ORPO: Monolithic preference optimization without
       reference model", EMNLP 2024, arXiv:2403.07691.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> c = np.array([np.log(0.5), 0.0]); r = np.array([np.log(0.5), np.log(0.5)])
    >>> lk.orpo_loss(c, r, beta=1.0, reduction="none").round(4)   # log 2, then 0
    array([0.6931, 0.    ])
    """

    name = "orpo_loss"
    prediction = "log-probabilities (<= 0) of the chosen sequences"
    target = "log-probabilities (<= 0) of the rejected sequences"
    formula = (r"\ell = -\beta \log\sigma(L),\ L = (c - \log(1 - e^{c})) - "
               r"(r - \log(1 - e^{r}))")
    gradient_formula = (r"\frac{\partial \ell}{\partial c} = \frac{-\beta\,\sigma(-L)}"
                        r"{1 - e^{c}},\ \frac{\partial \ell}{\partial r} = "
                        r"\frac{\beta\,\sigma(-L)}{1 - e^{r}}")
    when_to_use = (
        "Preference fine-tuning in one stage (no SFT stage, no reference model): added to "
        "the NLL of the chosen answers, the log odds ratio penalises the rejected style "
        "mildly. Works on probabilities, so it saturates less than a log-probability "
        "margin when both sequences are unlikely.")
    references = (
        "Hong, Lee, Thorne, ORPO: Monolithic preference optimization without reference "
        "model, EMNLP 2024, arXiv:2403.07691",
    )

    def _compute(self, ctx, chosen_logps, rejected_logps, *, need_grad, beta=0.1):
        xp = ctx.xp
        b = _beta(beta)
        c = chosen_logps
        r = _rejected(ctx, c, rejected_logps)
        hint = "log-probabilities are at most 0"
        check_in_range(xp, "chosen_logps", c, -math.inf, 0.0, hint=hint)
        check_in_range(xp, "rejected_logps", r, -math.inf, 0.0, hint=hint)
        value, gc, gr = ORPO(xp, c, r, b)
        if not need_grad:
            return Terms(value, None)
        return Terms(value, gc, grads={"rejected_logps": gr})


class KTOLoss(Loss):
    r"""KTO: Kahneman--Tversky optimisation on unpaired sequences (Ethayarajh et al. 2024).

    .. math::

        \rho = \log\pi_\theta(y \mid x) - \log\pi_\text{ref}(y \mid x), \qquad
        \ell = \begin{cases} 1 - \sigma\bigl(\beta\,(\rho - z_0)\bigr) & y
        \text{ desirable} \\ 1 - \sigma\bigl(\beta\,(z_0 - \rho)\bigr) & y
        \text{ undesirable} \end{cases}

    Each sequence is marked desirable or undesirable on its own (no pairs); :math:`z_0` is
    the KL reference point (``kl``), an estimate of :math:`\mathrm{KL}(\pi_\theta \Vert
    \pi_\text{ref})` that the caller computes on mismatched completions and passes as a
    constant (TRL clamps it at 0 and detaches it). Without ``ref_logps`` the reference
    log-probabilities are 0 (:math:`\rho` is the policy's log-probability), as in
    Liger-Kernel without a reference model.

    Parameters
    ----------
    logps : floating array of shape (N,)
        The policy's log-probabilities of the sequences (elementwise, any shape).
    desirable : boolean array of the same shape
        True for a desirable sequence, False for an undesirable one (0/1 numbers are
        accepted too).
    ref_logps : floating array of the same shape, optional
        The reference model's log-probabilities; None (the default) means 0. A constant:
        not differentiated.
    beta : float, default 0.1
        :math:`\beta > 0` (the paper's and Liger-Kernel's default 0.1).
    kl : float, optional
        :math:`z_0`, the KL reference point, a finite number; None (the default) means 0,
        Liger-Kernel's ``kl=None``.
    {common_parameters}

    Returns
    -------
    array
        Per sequence, shape (N,), with ``reduction="none"``; else 0-d.

    Raises
    ------
    ValueError
        ``beta`` not in (0, inf), ``kl`` not finite, ``desirable`` values other than
        True/False (0/1), shapes that differ.
    TypeError
        Non-floating log-probabilities.

    Notes
    -----
    With :math:`m = +1` for a desirable sequence and :math:`-1` otherwise and
    :math:`u = \beta\,m\,(\rho - z_0)`, :math:`\ell = \sigma(-u)` and

    .. math::

        \frac{\partial \ell}{\partial \log\pi_\theta} = -\beta\,m\,\sigma(u)\,\sigma(-u)

    ``reduction="mean"`` is Liger-Kernel's ``LigerFusedLinearKTOFunction.
    preference_loss_fn`` (the sum divided by ``full_target.shape[0]``, the number of
    sequences). The paper's weights :math:`\lambda_D, \lambda_U` of desirable and
    undesirable examples are per-example weights: pass them as ``sample_weight``
    (TRL's ``desirable_weight`` / ``undesirable_weight``, with ``reduction="sum"`` divided
    by N for its mean).

    References
    ----------
    .. [1] K. Ethayarajh, W. Xu, N. Muennighoff, D. Jurafsky, D. Kiela, "KTO: Model
       alignment as prospect theoretic optimization", ICML 2024, arXiv:2402.01306.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> lp = np.array([-5.0, -5.0]); ref = np.array([-5.0, -15.0])
    >>> lk.kto_loss(lp, np.array([True, False]), ref, beta=0.1, reduction="none").round(4)
    array([0.5   , 0.7311])
    """

    name = "kto_loss"
    family = "language_models"
    prediction = "log-probabilities of the sequences"
    target = "desirable (True) or undesirable (False), per sequence"
    inputs = ("logps", "desirable", "ref_logps")
    optional_inputs = ("ref_logps",)
    differentiable = ("logps",)
    formula = (r"\ell = 1 - \sigma(\beta\,m\,(\rho - z_0)),\ \rho = \log\pi_\theta - "
               r"\log\pi_\mathrm{ref},\ m = \pm 1")
    gradient_formula = (r"\frac{\partial \ell}{\partial \log\pi_\theta} = -\beta\,m\,"
                        r"\sigma(u)\,\sigma(-u),\ u = \beta\,m\,(\rho - z_0)")
    when_to_use = (
        "Aligning a language model from unpaired feedback (thumbs up / thumbs down per "
        "answer) instead of preference pairs; the sigmoid value saturates, so noisy or "
        "extreme examples weigh little. Weight the desirable and undesirable classes "
        "with sample_weight when they are imbalanced.")
    references = (
        "Ethayarajh, Xu, Muennighoff, Jurafsky, Kiela, KTO: Model alignment as prospect "
        "theoretic optimization, ICML 2024, arXiv:2402.01306",
    )

    def _compute(self, ctx, logps, desirable, ref_logps=None, *, need_grad, beta=0.1,
                 kl=None):
        xp = ctx.xp
        b = _beta(beta)
        z0 = 0.0 if kl is None else _finite("kl", kl)
        d = ctx.asarray(desirable, "desirable")
        if not same_shape(d.shape, logps.shape):
            raise ValueError(f"`desirable` of {ctx.loss} must have the shape of `logps` "
                             f"{tuple(logps.shape)}; got {tuple(d.shape)}")
        if d.dtype != xp.bool:
            check_numeric(xp, "desirable", d)
            check_two_values(xp, "desirable", d, (1.0, 0.0), loss=ctx.loss,
                             meaning="True/False (1/0) per sequence")
            d = d == 1
        ref = 0.0
        if ref_logps is not None:
            ref = ctx.asarray(ref_logps, "ref_logps")
            check_floating(xp, "ref_logps", ref, loss=ctx.loss)
            if not same_shape(ref.shape, logps.shape):
                raise ValueError(f"`ref_logps` of {ctx.loss} must have the shape of `logps` "
                                 f"{tuple(logps.shape)}; got {tuple(ref.shape)}")
            ref = ref if ref.dtype == ctx.work else xp.astype(ref, ctx.work)
        value, g = KTO(xp, logps, d, ref, b, z0)
        if not need_grad:
            return Terms(value, None)
        return Terms(value, g)


simpo_loss = register(SimPOLoss())
cpo_loss = register(CPOLoss())
orpo_loss = register(ORPOLoss())
kto_loss = register(KTOLoss())


# the fused NumPy kernels (losskit.kernels.pointwise): the formulas above, value and both
# gradients from one pass, for arrays of one shape and dtype; anything else (a reference
# that is not floating, another dtype, sample weights) runs the generic path
_POSITIVE = pointwise.number(0.0, lo_open=True)
_UNIT = pointwise.number(0.0, 1.0)
_FINITE = pointwise.number()
_PAIRED_FAST = pointwise.fast_path(
    PAIRED_LOGISTIC, {"beta": _POSITIVE, "gamma": pointwise.number(),
                      "label_smoothing": _UNIT},
    grads=("rejected_logps",), exact_dtype=("rejected_logps",))
_ORPO_FAST = pointwise.fast_path(ORPO, {"beta": _POSITIVE}, check=ORPO_OK,
                                 grads=("rejected_logps",), exact_dtype=("rejected_logps",))
_KTO_FAST = pointwise.fast_path(
    KTO, {"beta": _POSITIVE, "kl": lambda v: 0.0 if v is None else _FINITE(v)},
    check=KTO_OK, inputs=("ref_logps",), flag_target=True)


def _cpo_fast_path(loss, arrays, reduction, sample_weight, opts, want, out, wrt=None):
    """CPO: SimPO's kernel with no margin."""
    return _PAIRED_FAST(loss, arrays, reduction, sample_weight, dict(opts, gamma=0.0), want,
                        out, wrt)


def _kto_fast_path(loss, arrays, reduction, sample_weight, opts, want, out):
    """KTO: a floating reference (zeros when left out), like the generic path's check."""
    logps, desirable, ref = arrays
    if type(logps) is not np.ndarray:
        return NotImplemented
    if ref is None:
        ref = np.zeros_like(logps)
    elif type(ref) is not np.ndarray or ref.dtype.kind != "f":
        return NotImplemented
    return _KTO_FAST(loss, (logps, desirable, ref), reduction, sample_weight, opts, want, out)


_cpo_fast_path.takes_wrt = True
register_fast_path(SimPOLoss, _PAIRED_FAST)
register_fast_path(CPOLoss, _cpo_fast_path)
register_fast_path(ORPOLoss, _ORPO_FAST)
register_fast_path(KTOLoss, _kto_fast_path)
