"""Cases of the policy-gradient losses (grpo_loss) for the generic suites.

References: the loss of TRL's ``GRPOTrainer._compute_loss`` (huggingface/trl,
``trl/trainer/grpo_trainer.py``) and Liger-Kernel's ``LigerFusedLinearGRPOFunction.
ppo_loss_fn`` (linkedin/Liger-Kernel, ``src/liger_kernel/chunked_loss/grpo_loss.py``),
written out in plain torch / jax.numpy: the k3 KL term, the clipped surrogate (CISPO's
detached capped weight), token- or sequence-level ratios and each variant's normaliser.
``reduction="mean"`` is their number; the other reductions reduce the per-sequence values
losskit documents (a sequence's masked token sum, over ``max(1, n_b)`` for ``grpo`` and
over ``max_completion_length`` for ``dr_grpo``). Nothing here comes from losskit.

The generator keeps every log-ratio (token and sequence mean) within 0.05 of one of
-0.5, -0.05, 0.05, 0.5: away from the clipping kinks at log 0.8 and log 1.2.
"""

from __future__ import annotations

import numpy as np

from loss_cases import Case
from losskit.losses.policy_gradient import grpo_loss

B, T = 6, 5


def grpo_inputs(shape=(B, T)):
    def make(rng):
        b, t = shape
        logp = -rng.uniform(0.1, 3.0, size=shape)
        base = rng.choice([-0.5, -0.05, 0.05, 0.5], size=(b, 1))
        old = logp - (base + rng.uniform(-0.03, 0.03, size=shape))
        ref = logp + rng.normal(scale=0.3, size=shape)
        lengths = rng.integers(1, t + 1, size=b)
        mask = (np.arange(t) < lengths[:, None]).astype(float)
        adv = rng.normal(size=b)
        adv = np.where(np.abs(adv) < 0.1, 0.5, adv)
        return logp, mask, adv, old, ref
    return make


def t_grpo(variant="dapo", level="token", epsilon_low=0.2, epsilon_high=0.2, beta=0.04,
           max_completion_length=None):
    def ref(logp, mask, adv, old, ref_logp, r, torch):
        a = adv.unsqueeze(1)
        log_ratio = logp - old
        if level == "token":
            log_w = log_ratio
        else:  # GSPO: the masked mean of the token log-ratios, (B, 1)
            log_w = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
        coef_1 = torch.exp(log_w)
        if variant == "cispo":
            per_token = -torch.clamp(coef_1, max=epsilon_high).detach() * a * logp
        else:
            coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
            per_token = -torch.min(coef_1 * a, coef_2 * a)
        if beta != 0.0:
            kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
            per_token = per_token + beta * kl
        masked = per_token * mask
        if r == "mean":  # TRL's / Liger's normalisations
            if variant == "grpo":
                return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
            if variant == "dr_grpo":
                return masked.sum() / (logp.shape[0] * max_completion_length)
            return masked.sum() / mask.sum().clamp(min=1.0)
        if variant == "grpo":
            v = masked.sum(-1) / mask.sum(-1).clamp(min=1.0)
        elif variant == "dr_grpo":
            v = masked.sum(-1) / max_completion_length
        else:
            v = masked.sum(-1)
        if r == "none":
            return v
        if r == "sum":
            return v.sum()
        return v.sum() / logp.shape[0]  # batchmean
    return ref


def j_grpo(variant="dapo", epsilon_low=0.2, epsilon_high=0.2, beta=0.04):
    """The token-level reference in jax.numpy (no cispo: its weight is detached)."""
    def ref(logp, mask, adv, old, ref_logp, r):
        import jax.numpy as jnp
        a = adv[:, None]
        coef_1 = jnp.exp(logp - old)
        coef_2 = jnp.clip(coef_1, 1 - epsilon_low, 1 + epsilon_high)
        per_token = -jnp.minimum(coef_1 * a, coef_2 * a)
        per_token = per_token + beta * (jnp.exp(ref_logp - logp) - (ref_logp - logp) - 1)
        masked = per_token * mask
        if variant == "grpo":
            v = masked.sum(-1) / jnp.maximum(mask.sum(-1), 1.0)
            return v.mean() if r == "mean" else v.sum()
        return masked.sum() / jnp.maximum(mask.sum(), 1.0) if r == "mean" else masked.sum()
    return ref


CASES = [
    Case("grpo_loss", grpo_loss, grpo_inputs(), t_grpo(), j_grpo(), on_every_backend=True,
         mean_of_terms=True),
    Case("grpo_loss-grpo", grpo_loss, grpo_inputs(), t_grpo("grpo", epsilon_high=0.28),
         j_grpo("grpo", epsilon_high=0.28), options=dict(variant="grpo", epsilon_high=0.28)),
    Case("grpo_loss-bnpo-beta", grpo_loss, grpo_inputs(), t_grpo("bnpo", beta=0.3),
         options=dict(variant="bnpo", beta=0.3), mean_of_terms=True),
    Case("grpo_loss-dr_grpo", grpo_loss, grpo_inputs(),
         t_grpo("dr_grpo", max_completion_length=8),
         options=dict(variant="dr_grpo", max_completion_length=8)),
    # every ratio exceeds the cap 0.5 here, so the detached weight is the constant 0.5 and
    # finite differences of the value see the same gradient
    Case("grpo_loss-cispo", grpo_loss, grpo_inputs(), t_grpo("cispo", epsilon_high=0.5),
         options=dict(variant="cispo", epsilon_high=0.5), mean_of_terms=True),
    Case("grpo_loss-gspo-grpo", grpo_loss, grpo_inputs(),
         t_grpo("grpo", "sequence", beta=0.0),
         options=dict(variant="grpo", importance_sampling="sequence", beta=0.0)),
    Case("grpo_loss-gspo-dapo", grpo_loss, grpo_inputs(), t_grpo("dapo", "sequence"),
         options=dict(importance_sampling="sequence"), mean_of_terms=True),
]
