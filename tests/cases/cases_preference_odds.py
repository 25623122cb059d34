"""Cases of the reference-free and unpaired preference losses (simpo_loss, cpo_loss,
orpo_loss, kto_loss) for the generic suites.

References: Liger-Kernel's ``preference_loss_fn`` of ``LigerFusedLinearSimPOFunction``,
``LigerFusedLinearCPOFunction``, ``LigerFusedLinearORPOFunction`` and
``LigerFusedLinearKTOFunction`` (linkedin/Liger-Kernel,
``src/liger_kernel/chunked_loss/{simpo,cpo,orpo,kto}_loss.py``), written out in plain
torch and jax.numpy. ``reduction="mean"`` is their number (the paired losses divide the
sum by ``full_target.shape[0] // 2``, the number of pairs N; KTO by
``full_target.shape[0]``, the number of sequences N); the other reductions reduce the
per-example terms they sum. Nothing here comes from losskit.

Log-probabilities are drawn in [-3, -0.05] (ORPO needs them below 0).
"""

from __future__ import annotations

import numpy as np

from loss_cases import Case, _jreduce, _reduce_torch
from losskit.losses.preference_odds import cpo_loss, kto_loss, orpo_loss, simpo_loss

N = 6


def pair_inputs(rng):
    return -rng.uniform(0.05, 3.0, size=N), -rng.uniform(0.05, 3.0, size=N)


def kto_inputs(with_ref=True):
    def make(rng):
        lp = -rng.uniform(0.05, 3.0, size=N)
        d = rng.random(N) > 0.5
        d[0], d[-1] = True, False
        ref = -rng.uniform(0.05, 3.0, size=N)
        return (lp, d, ref) if with_ref else (lp, d)
    return make


# ---------------------------------------------------------------- torch references
def t_simpo(beta=0.1, gamma=0.5, label_smoothing=0.0):
    """LigerFusedLinearSimPOFunction.preference_loss_fn (simpo_loss.py)."""
    def ref(c, r, red, torch):
        F = torch.nn.functional
        logits = beta * (c - r) - gamma
        v = -F.logsigmoid(logits) * (1 - label_smoothing) - F.logsigmoid(-logits) * label_smoothing
        return _reduce_torch(v, red, c.shape[0])
    return ref


def t_cpo(beta=0.1, label_smoothing=0.0):
    """LigerFusedLinearCPOFunction.preference_loss_fn (cpo_loss.py)."""
    return t_simpo(beta=beta, gamma=0.0, label_smoothing=label_smoothing)


def t_orpo(beta=0.1):
    """LigerFusedLinearORPOFunction.preference_loss_fn (orpo_loss.py)."""
    def ref(c, r, red, torch):
        F = torch.nn.functional
        log_odds = (c - r) - (torch.log1p(-torch.exp(c)) - torch.log1p(-torch.exp(r)))
        return _reduce_torch(-beta * F.logsigmoid(log_odds), red, c.shape[0])
    return ref


def t_kto(beta=0.1, kl=None):
    """LigerFusedLinearKTOFunction.preference_loss_fn (kto_loss.py)."""
    def ref(lp, d, *rest):
        *ref_lp, red, torch = rest
        d = d.bool()
        lr = lp - ref_lp[0] if ref_lp and ref_lp[0] is not None else lp
        mult = torch.where(d, 1, -1)
        if kl is not None:
            v = 1 - torch.sigmoid(beta * (lr - kl) * mult)
        else:
            v = 1 - torch.sigmoid(beta * lr * mult)
        return _reduce_torch(v, red, lp.shape[0])
    return ref


# ---------------------------------------------------------------- jax references
def j_simpo(beta=0.1, gamma=0.5, label_smoothing=0.0):
    def ref(c, r, red):
        import jax
        z = beta * (c - r) - gamma
        v = (-jax.nn.log_sigmoid(z) * (1 - label_smoothing)
             - jax.nn.log_sigmoid(-z) * label_smoothing)
        return _jreduce(v, red, c.shape[0])
    return ref


def j_orpo(beta=0.1):
    def ref(c, r, red):
        import jax
        import jax.numpy as jnp
        log_odds = (c - r) - (jnp.log1p(-jnp.exp(c)) - jnp.log1p(-jnp.exp(r)))
        return _jreduce(-beta * jax.nn.log_sigmoid(log_odds), red, c.shape[0])
    return ref


def j_kto(beta=0.1, kl=None):
    def ref(lp, d, *rest):
        import jax
        import jax.numpy as jnp
        *ref_lp, red = rest
        lr = lp - ref_lp[0] if ref_lp and ref_lp[0] is not None else lp
        m = jnp.where(d.astype(bool), 1.0, -1.0)
        v = 1 - jax.nn.sigmoid(beta * (lr - (0.0 if kl is None else kl)) * m)
        return _jreduce(v, red, lp.shape[0])
    return ref


CASES = [
    Case("simpo_loss", simpo_loss, pair_inputs, t_simpo(), j_simpo(), on_every_backend=True),
    Case("simpo_loss-beta-gamma-ls", simpo_loss, pair_inputs,
         t_simpo(2.5, 1.2, 0.2), j_simpo(2.5, 1.2, 0.2),
         options={"beta": 2.5, "gamma": 1.2, "label_smoothing": 0.2}),
    Case("cpo_loss", cpo_loss, pair_inputs, t_cpo(), j_simpo(gamma=0.0), on_every_backend=True),
    Case("cpo_loss-beta-ls", cpo_loss, pair_inputs, t_cpo(1.5, 0.1),
         j_simpo(1.5, 0.0, 0.1), options={"beta": 1.5, "label_smoothing": 0.1}),
    Case("orpo_loss", orpo_loss, pair_inputs, t_orpo(), j_orpo(), on_every_backend=True),
    Case("orpo_loss-beta", orpo_loss, pair_inputs, t_orpo(0.7), j_orpo(0.7),
         options={"beta": 0.7}),
    Case("kto_loss", kto_loss, kto_inputs(), t_kto(), j_kto(), on_every_backend=True),
    Case("kto_loss-noref-kl", kto_loss, kto_inputs(with_ref=False), t_kto(2.0, 0.3),
         j_kto(2.0, 0.3), options={"beta": 2.0, "kl": 0.3}),
]
