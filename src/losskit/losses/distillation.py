r"""Token-level distillation losses on logits: the generalized Jensen-Shannon divergence
and the total variation distance between a student's and a teacher's softmax.

Both take logits of shape ``(..., V)`` (the vocabulary last) and, optionally, the target
tokens ``(...)`` whose ``ignore_index`` entries take no part (prompt and padding tokens):
an ignored token's loss is 0 with a zero gradient and ``reduction="mean"`` averages over
the tokens that take part (Liger-Kernel's ``num_valid_tokens``). The gradient is with
respect to the student's logits; the teacher's are held fixed, as in distillation.

With :math:`P = \operatorname{softmax}(z_s / T)` (student), :math:`Q =
\operatorname{softmax}(z_t / T)` (teacher), the log-probabilities :math:`s = \log P`,
:math:`t = \log Q`, everything is formed in log space, so huge and ``-inf`` logits (masked
vocabulary entries) are exact.
"""

from __future__ import annotations

import math

from ..core.dispatch import register_fast_path
from ..core.loss import Loss, Terms, register
from ..core.primitives import _log_softmax
from ..core.validation import check_integer, check_labels, check_same_shape, check_scalar
from ..kernels import distillation as _fused

__all__ = ["generalized_jsd", "tvd_loss"]


def _token_setup(ctx, student, teacher, targets, ignore_index, temperature=1.0):
    """The two log-softmaxes along the last axis, and the tokens that take part:
    ``(s, t, keep)`` (``keep`` 0/1 of the token shape, or None without targets)."""
    xp = ctx.xp
    if student.ndim == 0:
        raise ValueError(f"`student_logits` of {ctx.loss} must have a vocabulary axis "
                         "(shape (..., V)); got a 0-d array")
    zt = ctx.asarray(teacher, "teacher_logits")
    check_same_shape("student_logits", student.shape, "teacher_logits", zt.shape)
    if not xp.isdtype(zt.dtype, "real floating"):
        raise TypeError(f"`teacher_logits` of {ctx.loss} must be floating logits; got "
                        f"dtype {zt.dtype}")
    zt = xp.astype(zt, ctx.work) if zt.dtype != ctx.work else zt
    if temperature != 1.0:
        student, zt = student / temperature, zt / temperature
    s = _log_softmax(xp, student, axis=-1)
    t = _log_softmax(xp, zt, axis=-1)
    keep = None
    if targets is not None:
        ignore = check_integer("ignore_index", ignore_index, loss=ctx.loss, or_none=True)
        y = ctx.asarray(targets, "targets")
        shape = tuple(student.shape[:-1])
        if tuple(y.shape) != shape:
            raise ValueError(f"`targets` of {ctx.loss} must have the logits' shape without "
                             f"the vocabulary axis, {shape}; got {tuple(y.shape)}")
        if not xp.isdtype(y.dtype, "integral"):
            raise TypeError(f"`targets` of {ctx.loss} must be integer token ids; got dtype "
                            f"{y.dtype}")
        check_labels(xp, "targets", y, student.shape[-1], ignore_index=ignore)
        keep = xp.astype(y != ignore, ctx.work) if ignore is not None else None
    return s, t, keep


def _masked(xp, keep, value, grad):
    """Value and gradient with the ignored tokens' set to 0."""
    if keep is None:
        return value, grad
    value = xp.where(keep > 0, value, xp.zeros_like(value))
    if grad is not None:
        grad = xp.where(keep[..., None] > 0, grad, xp.zeros_like(grad))
    return value, grad


def _plogr(xp, p, a, b):
    """:math:`p\\,(a - b)` elementwise with :math:`0 (a - b) = 0` (also for ``-inf - -inf``)."""
    pos = p > 0
    return xp.where(pos, p * xp.where(pos, a - b, xp.zeros_like(a)), xp.zeros_like(p))


def _centred(xp, p, r):
    """:math:`p \\odot (r - \\sum_c p_c r_c)`, the softmax's vector-Jacobian product of
    ``r`` (0 where ``p`` is 0, whatever ``r`` is there)."""
    pr = _plogr(xp, p, r, xp.zeros_like(r))
    return pr - p * xp.sum(pr, axis=-1, keepdims=True)


def _jsd_terms(xp, s, t, b, temp, need_grad, p=None):
    """The generalized JSD of each token and its gradient with respect to the student's
    raw logits, from the log-softmaxes ``s`` (student) and ``t`` (teacher) at temperature
    ``temp`` (vocabulary last): ``(value (...), grad (..., V) or None)``. ``p`` is
    ``exp(s)`` when the caller has it. Shared with :mod:`.linear_distillation`."""
    if p is None:
        p = xp.exp(s)
    grad = None
    if b == 0.0:  # KL(Q || P)
        q = xp.exp(t)
        value = xp.sum(_plogr(xp, q, t, s), axis=-1)
        if need_grad:
            grad = (p - q) / temp
    elif b == 1.0:  # KL(P || Q)
        value = xp.sum(_plogr(xp, p, s, t), axis=-1)
        if need_grad:
            grad = _centred(xp, p, s - t) / temp
    else:
        q = xp.exp(t)
        # log M from the larger of s and t: s + log1p(b expm1(t - s)) where s >= t, else
        # t + log1p((1 - b) expm1(s - t)): exact where the two agree (r = 0, a zero
        # divergence, not a rounding error of either sign), no overflow anywhere
        up = s >= t
        d = xp.where(up, t - s, s - t)
        d = xp.where(xp.isnan(d), xp.zeros_like(d), d)  # both -inf: masked by P = Q = 0
        log_m = xp.where(up, s + xp.log1p(b * xp.expm1(d)),
                         t + xp.log1p((1.0 - b) * xp.expm1(d)))
        value = (b * xp.sum(_plogr(xp, q, t, log_m), axis=-1)
                 + (1.0 - b) * xp.sum(_plogr(xp, p, s, log_m), axis=-1))
        if need_grad:
            grad = ((1.0 - b) / temp) * _centred(xp, p, s - log_m)
    return value, grad


class _TokenDistillation(Loss):
    """What the token-level distillation losses share: their inputs and metadata."""

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    family = "language_models"
    prediction = "student logits (..., V)"
    target = "teacher logits of the same shape; optional target tokens (...)"
    inputs = ("student_logits", "teacher_logits", "targets")
    differentiable = ("student_logits",)
    optional_inputs = ("targets",)


class GeneralizedJSD(_TokenDistillation):
    r"""Generalized Jensen-Shannon divergence between a teacher's and a student's softmax.

    .. math::

        \ell = \beta\, D_{\mathrm{KL}}(Q \,\|\, M) + (1 - \beta)\, D_{\mathrm{KL}}(P \,\|\, M),
        \qquad M = (1 - \beta) P + \beta Q

    per token, with :math:`P` the student's and :math:`Q` the teacher's softmax at
    temperature :math:`T`; :math:`\beta = 0` is :math:`D_{\mathrm{KL}}(Q \| P)` (forward KL)
    and :math:`\beta = 1` is :math:`D_{\mathrm{KL}}(P \| Q)` (reverse KL), the definitions of
    Liger-Kernel's ``LigerFusedLinearJSDFunction.distillation_loss_fn`` and TRL's GKD
    (the mixture form itself tends to 0 at both ends). :math:`\beta = 1/2` is the symmetric
    Jensen-Shannon divergence, bounded by :math:`\log 2`.

    Parameters
    ----------
    student_logits : floating array of shape (..., V)
        The student's logits :math:`z_s` (differentiated).
    teacher_logits : floating array of the same shape
        The teacher's logits :math:`z_t` (held fixed).
    targets : integer array of shape (...), optional
        Target tokens; those equal to ``ignore_index`` take no part. None: every token.
    beta : float in [0, 1], default 0.5
        The interpolation :math:`\beta`.
    temperature : float > 0, default 1
        Both logits are divided by :math:`T` (no :math:`T^2` factor, as Liger-Kernel).
    ignore_index : int or None, default -100
        The target value of the tokens that take no part.
    {common_parameters}

    Notes
    -----
    With :math:`s = \log P`, :math:`r = s - \log M` and :math:`\bar r = \sum_c P_c r_c`,
    the gradient with respect to the student's logits is, for :math:`0 < \beta < 1`,

    .. math::

        \frac{\partial \ell}{\partial z_s} = \frac{1 - \beta}{T}\, P \odot (r - \bar r)

    (the terms through :math:`M` cancel: :math:`\sum_c M_c\, \partial \log M_c = 0`);
    :math:`(P - Q)/T` for :math:`\beta = 0` and :math:`P \odot (r - \bar r)/T` with
    :math:`r = s - t` for :math:`\beta = 1`. :math:`\log M` is formed from the larger of
    :math:`s` and :math:`t`, :math:`s + \operatorname{log1p}(\beta\,
    \operatorname{expm1}(t - s))` where :math:`s \ge t`, so that it is exact where the two
    distributions agree (the divergence is then exactly 0), and :math:`0 \log 0 = 0`.

    References
    ----------
    .. [1] R. Agarwal et al., "On-Policy Distillation of Language Models: Learning from
       Self-Generated Mistakes" (GKD), ICLR 2024, arXiv:2306.13649.
    .. [2] Liger-Kernel, ``src/liger_kernel/chunked_loss/jsd_loss.py``.

    Examples
    --------
    Identical distributions are 0 apart; the symmetric JSD of two point masses is
    :math:`\log 2`:

    >>> import numpy as np, losskit as lk
    >>> z = np.array([[1.0, 2.0, 0.5]])
    >>> float(lk.generalized_jsd(z, z))
    0.0
    >>> a, b = np.array([[0.0, -np.inf]]), np.array([[-np.inf, 0.0]])
    >>> round(float(lk.generalized_jsd(a, b)), 6) == round(float(np.log(2)), 6)
    True
    """

    name = "generalized_jsd"
    formula = (r"\ell = \beta\, D_{\mathrm{KL}}(Q \| M) + (1 - \beta)\, D_{\mathrm{KL}}(P \| M),"
               r"\ M = (1 - \beta) P + \beta Q")
    gradient_formula = (r"\frac{\partial \ell}{\partial z_s} = \frac{1 - \beta}{T}\, P \odot "
                        r"(r - \textstyle\sum_c P_c r_c),\ r = \log P - \log M")
    when_to_use = (
        "Distilling a language model token by token: the student matches the teacher's "
        "next-token distribution. beta = 0 is the forward KL (mode-covering, the classic "
        "distillation loss), beta = 1 the reverse KL (mode-seeking, GKD's on-policy "
        "choice), beta = 0.5 the bounded symmetric JSD. Pass the target tokens to leave "
        "prompt and padding out.")
    references = (
        "Agarwal et al., On-Policy Distillation of Language Models (GKD), arXiv:2306.13649",
        "Liger-Kernel, src/liger_kernel/chunked_loss/jsd_loss.py",
    )

    def _compute(self, ctx, student_logits, teacher_logits, targets, *, need_grad, beta=0.5,
                 temperature=1.0, ignore_index=-100):
        xp = ctx.xp
        b = check_scalar("beta", beta, lo=0.0, hi=1.0)
        temp = check_scalar("temperature", temperature, lo=0.0, lo_open=True)
        if math.isinf(temp):
            raise ValueError(f"`temperature` must be finite; got {temperature!r}")
        s, t, keep = _token_setup(ctx, student_logits, teacher_logits, targets, ignore_index,
                                  temp)
        value, grad = _jsd_terms(xp, s, t, b, temp, need_grad)
        value, grad = _masked(xp, keep, value, grad)
        return Terms(value, grad, keep, lambda a: a[..., None])


class TVDLoss(_TokenDistillation):
    r"""Total variation distance between a student's and a teacher's softmax.

    .. math::

        \ell = \tfrac12 \sum_c \lvert P_c - Q_c \rvert, \qquad
        P = \operatorname{softmax}(z_s),\ Q = \operatorname{softmax}(z_t)

    per token: half the :math:`L_1` distance, in [0, 1]. Liger-Kernel's ``LigerTVDLoss``
    takes the two distributions themselves; this loss takes logits and differentiates
    through the student's softmax. ``reduction="mean"`` (the mean over the tokens that
    take part) is Liger's ``"batchmean"``.

    Parameters
    ----------
    student_logits : floating array of shape (..., V)
        The student's logits (differentiated).
    teacher_logits : floating array of the same shape
        The teacher's logits (held fixed).
    targets : integer array of shape (...), optional
        Target tokens; those equal to ``ignore_index`` take no part. None: every token.
    ignore_index : int or None, default -100
        The target value of the tokens that take no part.
    {common_parameters}

    Notes
    -----
    With :math:`\sigma = \operatorname{sign}(P - Q)` (Liger's convention at :math:`P = Q`
    would be :math:`-1`; here the subgradient 0 is used there, as for :math:`|x|`):

    .. math::

        \frac{\partial \ell}{\partial z_s} = \tfrac12\, P \odot \Bigl(\sigma - \sum_c
        \sigma_c P_c\Bigr)

    References
    ----------
    .. [1] Liger-Kernel, ``src/liger_kernel/ops/tvd.py`` (``LigerTVDLoss``).

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> a, b = np.array([[0.0, -np.inf]]), np.array([[-np.inf, 0.0]])
    >>> float(lk.tvd_loss(a, b))   # disjoint point masses
    1.0
    """

    name = "tvd_loss"
    formula = r"\ell = \tfrac12 \sum_c |P_c - Q_c|"
    gradient_formula = (r"\frac{\partial \ell}{\partial z_s} = \tfrac12\, P \odot "
                        r"(\sigma - \textstyle\sum_c \sigma_c P_c),\ "
                        r"\sigma = \operatorname{sign}(P - Q)")
    when_to_use = (
        "A bounded distillation loss: half the L1 distance between the student's and the "
        "teacher's next-token distributions, in [0, 1], insensitive to the tail "
        "probabilities that dominate a KL divergence.")
    references = ("Liger-Kernel, src/liger_kernel/ops/tvd.py",)

    def _compute(self, ctx, student_logits, teacher_logits, targets, *, need_grad,
                 ignore_index=-100):
        xp = ctx.xp
        s, t, keep = _token_setup(ctx, student_logits, teacher_logits, targets, ignore_index)
        p, q = xp.exp(s), xp.exp(t)
        d = p - q
        value = 0.5 * xp.sum(xp.abs(d), axis=-1)
        grad = None
        if need_grad:
            sig = xp.sign(d)
            grad = 0.5 * (p * sig - p * xp.sum(p * sig, axis=-1, keepdims=True))
        value, grad = _masked(xp, keep, value, grad)
        return Terms(value, grad, keep, lambda a: a[..., None])


generalized_jsd = register(GeneralizedJSD())
tvd_loss = register(TVDLoss())

# the fused NumPy kernels (losskit.kernels.distillation): numba row kernels over the
# tokens, the exact generic formulas for rows with non-finite logits (the fused JSD of
# identical student and teacher rows is 0 up to rounding, the generic one exactly 0)
register_fast_path(GeneralizedJSD, _fused.generalized_jsd)
register_fast_path(TVDLoss, _fused.tvd_loss)
