"""Cases of dpo_loss (losses/preference.py) for the generic catalog suites.

References: TRL's ``DPOTrainer._compute_loss`` (huggingface/trl,
``trl/trainer/dpo_trainer.py`` of v1.16.0: the f-divergence scores and the ``loss_type``
branches)
and Liger-Kernel's ``LigerFusedLinearDPOFunction.preference_loss_fn`` (linkedin/
Liger-Kernel, ``src/liger_kernel/chunked_loss/dpo_loss.py``), written out in plain torch
(and jax.numpy for the default variant); neither library is installed here. Nothing here
comes from losskit.

The inputs are summed log-probabilities of a batch of 6 pairs, in general position: no
ties (``aot`` sorts), the hinge's ``1 - z`` at least 0.1 away from 0.
"""

from __future__ import annotations

import math

import numpy as np

from loss_cases import Case, _jreduce, _reduce_torch
from losskit.losses.preference import dpo_loss

N = 6


def dpo_inputs(ref=True, lengths=False, hinge_beta=None):
    def make(rng):
        c = -rng.uniform(5.0, 30.0, size=N)
        r = -rng.uniform(5.0, 30.0, size=N)
        out = [c, r]
        if ref or lengths:
            rc = c + rng.normal(scale=2.0, size=N)
            rr = r + rng.normal(scale=2.0, size=N)
            if hinge_beta is not None:  # keep 1 - z away from the kink
                z = hinge_beta * ((c - rc) - (r - rr))
                rc = np.where(np.abs(1 - z) < 0.1, rc - 0.5 / hinge_beta, rc)
            out += [rc, rr]
        if lengths:
            out += [rng.integers(1, 12, size=N).astype(float),
                    rng.integers(0, 12, size=N).astype(float)]
        return tuple(out)
    return make


def trl_dpo(variant="sigmoid", beta=0.1, label_smoothing=0.0, discopop_tau=0.05,
            f_divergence="reverse_kl", f_alpha=1.0):
    """TRL's per-sequence loss, written out (reference None: 0, as Liger)."""
    def ref(*args):
        *arrays, red, torch = args
        F = torch.nn.functional
        c, r = arrays[0], arrays[1]
        rc = arrays[2] if len(arrays) > 2 and arrays[2] is not None else torch.zeros_like(c)
        rr = arrays[3] if len(arrays) > 3 and arrays[3] is not None else torch.zeros_like(r)
        lc, lr = c - rc, r - rr
        if f_divergence == "reverse_kl":
            sc, sr = lc, lr
        elif f_divergence == "forward_kl":  # TRL 1.16: f'(t) = 1 - 1/t
            sc, sr = 1 - torch.exp(-lc), 1 - torch.exp(-lr)
        elif f_divergence == "js_divergence":  # log 2 + logsigmoid(log t)
            sc, sr = math.log(2) + F.logsigmoid(lc), math.log(2) + F.logsigmoid(lr)
        else:
            if abs(f_alpha - 1.0) < 1e-6:
                sc, sr = lc, lr
            else:
                coef = 1.0 / (f_alpha - 1.0)
                sc = (torch.exp(torch.clamp((f_alpha - 1.0) * lc, max=80.0)) - 1.0) * coef
                sr = (torch.exp(torch.clamp((f_alpha - 1.0) * lr, max=80.0)) - 1.0) * coef
        d = sc - sr
        b, e = beta, label_smoothing
        if variant == "sigmoid":
            v = -F.logsigmoid(b * d)
        elif variant == "hinge":
            v = torch.relu(1 - b * d)
        elif variant in ("ipo", "sigmoid_norm"):
            nc, nr = arrays[4].clamp(min=1.0), arrays[5].clamp(min=1.0)
            dd = sc / nc - sr / nr
            v = (dd - 1 / (2 * b)) ** 2 if variant == "ipo" else -F.logsigmoid(b * dd)
        elif variant == "exo_pair":
            eps = torch.tensor(e, dtype=c.dtype)
            v = (torch.sigmoid(b * d) * (F.logsigmoid(b * d) - torch.log1p(-eps))
                 + torch.sigmoid(-b * d) * (F.logsigmoid(-b * d) - torch.log(eps)))
        elif variant == "nca_pair":
            v = (-F.logsigmoid(b * sc) - 0.5 * F.logsigmoid(-b * sc)
                 - 0.5 * F.logsigmoid(-b * sr))
        elif variant == "robust":
            v = (-(1 - e) * F.logsigmoid(b * d) + e * F.logsigmoid(-b * d)) / (1 - 2 * e)
        elif variant == "bco_pair":
            v = -F.logsigmoid(b * sc) - F.logsigmoid(-b * sr)
        elif variant == "sppo_hard":
            v = (sc - 0.5 / b) ** 2 + (sr + 0.5 / b) ** 2
        elif variant in ("aot", "aot_unpaired"):
            if variant == "aot":
                delta = torch.sort(c - r, dim=0)[0] - torch.sort(rc - rr, dim=0)[0]
            else:
                delta = torch.sort(lc, dim=0)[0] - torch.sort(lr, dim=0)[0]
            v = -F.logsigmoid(b * delta) * (1 - e) - F.logsigmoid(-b * delta) * e
            # TRL's terms are in rank order; losskit reports the rank-k term at the example
            # whose policy (aot) or chosen (aot_unpaired) log-ratio has rank k
            key = (c - r) if variant == "aot" else lc
            v = v[torch.argsort(torch.argsort(key.detach()))]
        elif variant == "apo_zero":
            v = 1 - torch.sigmoid(b * lc) + torch.sigmoid(b * lr)
        elif variant == "apo_down":
            v = torch.sigmoid(b * lc) + 1 - torch.sigmoid(b * d)
        elif variant == "discopop":
            z = b * d
            m = torch.sigmoid(z / discopop_tau)
            v = -F.logsigmoid(z) * (1 - m) + torch.exp(-z) * m
        else:
            raise AssertionError(variant)
        return _reduce_torch(v, red, c.shape[0])
    return ref


def j_sigmoid(beta=0.1):
    def ref(c, r, rc, rr, *rest):
        *_, red = rest
        import jax
        z = beta * ((c - rc) - (r - rr))
        return _jreduce(-jax.nn.log_sigmoid(z), red, c.shape[0])
    return ref


def _case(id_, variant, options=None, make=None, **kw):
    options = dict(options or {})
    if variant != "sigmoid":
        options["variant"] = variant
    return Case(f"dpo_loss-{id_}", dpo_loss, make or dpo_inputs(), trl_dpo(variant, **{
        k: v for k, v in options.items() if k != "variant"}), options=options, **kw)


CASES = [
    # the first case gives every input (the lengths are checked, and unused by "sigmoid")
    Case("dpo_loss", dpo_loss, dpo_inputs(lengths=True), trl_dpo(), j_sigmoid(),
         on_every_backend=True),
    _case("reference_free-beta1", "sigmoid", {"beta": 1.0}, make=dpo_inputs(ref=False)),
    _case("hinge", "hinge", {"beta": 0.2}, make=dpo_inputs(hinge_beta=0.2), kinky=True),
    _case("ipo", "ipo", {"beta": 0.5}, make=dpo_inputs(lengths=True)),
    _case("exo_pair", "exo_pair", {"label_smoothing": 1e-3, "beta": 0.3}),
    _case("nca_pair", "nca_pair", {"beta": 0.2}),
    _case("robust", "robust", {"label_smoothing": 0.2}),
    _case("bco_pair", "bco_pair", {"beta": 0.2}),
    _case("sppo_hard", "sppo_hard", {"beta": 0.5}),
    _case("aot", "aot", {"label_smoothing": 0.1, "beta": 0.3}, coupled=True),
    _case("aot_unpaired", "aot_unpaired", {"beta": 0.3}, coupled=True),
    _case("apo_zero", "apo_zero", {"beta": 0.3}),
    _case("apo_down", "apo_down", {"beta": 0.3}),
    _case("discopop", "discopop", {"beta": 0.3, "discopop_tau": 0.5}),
    _case("sigmoid_norm", "sigmoid_norm", {"beta": 2.0}, make=dpo_inputs(lengths=True)),
    _case("forward_kl", "sigmoid", {"f_divergence": "forward_kl"}),
    _case("js_divergence", "sigmoid", {"f_divergence": "js_divergence", "beta": 0.5}),
    _case("alpha_divergence", "sigmoid", {"f_divergence": "alpha_divergence", "f_alpha": 0.5}),
]
