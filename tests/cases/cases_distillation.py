"""Cases of the token-level distillation losses (generalized_jsd, tvd_loss) for the generic
suites of ``tests/catalog``.

References, written out in torch with autograd for the gradients:

* Liger-Kernel's ``LigerFusedLinearJSDFunction.distillation_loss_fn``
  (``src/liger_kernel/chunked_loss/jsd_loss.py``): both logits divided by the temperature,
  log-softmaxes, ``beta == 0``: ``kl_div(student, teacher)``, ``beta == 1``:
  ``kl_div(teacher, student)``, else the mixture ``log M = logsumexp(student + log(1 - beta),
  teacher + log beta)`` and ``beta * kl_div(log M, teacher) + (1 - beta) * kl_div(log M,
  student)`` (all with ``log_target=True``), summed over the vocabulary, the ignored tokens
  masked; ``fused_linear_distillation.py`` divides the sum by the number of valid tokens;
* Liger-Kernel's ``LigerTVDLoss`` (``src/liger_kernel/ops/tvd.py``): ``0.5 * |p - q|`` summed
  over the vocabulary, of the two softmaxes here.

Each reduces the per-token values like losskit: "mean" over the valid tokens. Nothing here
comes from losskit.
"""

from __future__ import annotations

import math

import numpy as np

from loss_cases import Case
from losskit.losses.distillation import generalized_jsd, tvd_loss

B, T, V = 2, 3, 6


def tokens(ignore=True):
    def make(rng):
        zs = rng.normal(scale=2.0, size=(B, T, V))
        zt = rng.normal(scale=2.0, size=(B, T, V))
        y = rng.integers(0, V, size=(B, T))
        if ignore:
            y[0, 1] = -100
        return zs, zt, y
    return make


def _reduce(per_token, keep, reduction, torch):
    per_token = torch.where(keep, per_token, torch.zeros_like(per_token))
    if reduction == "none":
        return per_token
    if reduction == "sum":
        return per_token.sum()
    if reduction == "batchmean":
        return per_token.sum() / per_token.shape[0]
    return per_token.sum() / keep.sum()


def t_jsd(beta=0.5, temperature=1.0):
    def ref(zs, zt, y, reduction, torch):
        F = torch.nn.functional
        s = F.log_softmax(zs / temperature, -1)
        t = F.log_softmax(zt / temperature, -1)
        if beta == 0:
            per = F.kl_div(s, t, reduction="none", log_target=True)
        elif beta == 1:
            per = F.kl_div(t, s, reduction="none", log_target=True)
        else:
            log_m = torch.logsumexp(torch.stack([s + math.log(1 - beta),
                                                 t + math.log(beta)]), 0)
            per = (beta * F.kl_div(log_m, t, reduction="none", log_target=True)
                   + (1 - beta) * F.kl_div(log_m, s, reduction="none", log_target=True))
        return _reduce(per.sum(-1), y != -100, reduction, torch)
    return ref


def t_tvd(zs, zt, y, reduction, torch):
    p, q = torch.softmax(zs, -1), torch.softmax(zt, -1)
    return _reduce(0.5 * (p - q).abs().sum(-1), y != -100, reduction, torch)


# (ignore_index is named in the options of the cases whose tokens include ignored ones:
# the generic suites then know that "mean" is not the mean over every token)
IGNORE = {"ignore_index": -100}

CASES = [
    Case("generalized_jsd", generalized_jsd, tokens(), t_jsd(), options=IGNORE,
         on_every_backend=True),
    Case("generalized_jsd-beta0-T2", generalized_jsd, tokens(), t_jsd(0.0, 2.0),
         options={"beta": 0.0, "temperature": 2.0, **IGNORE}),
    Case("generalized_jsd-beta1", generalized_jsd, tokens(False), t_jsd(1.0),
         options={"beta": 1.0}),
    Case("generalized_jsd-beta0.3", generalized_jsd, tokens(), t_jsd(0.3),
         options={"beta": 0.3, **IGNORE}),
    Case("tvd_loss", tvd_loss, tokens(), t_tvd, options=IGNORE, on_every_backend=True,
         kinky=True),
]
