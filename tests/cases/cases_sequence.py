"""Cases of the sequence losses (ctc_loss) for the generic suites of ``tests/catalog``.

The catalog suites take the first axis as the batch (``batchmean``, repeated examples for
``sample_weight``), so these cases use ``layout="NTC"`` (batch first); PyTorch's
``(T, N, C)`` layout is tested in ``tests/losses/test_ctc.py``. References:
``torch.nn.functional.ctc_loss`` on the transposed log-probabilities, and
``optax.ctc_loss`` with paddings built from the lengths (1.0 = padding). The generators
give feasible alignments only (finite losses: finite differences need them) and normalised
log-probabilities (PyTorch's contract). Nothing here comes from losskit.
"""

from __future__ import annotations

import numpy as np

from loss_cases import Case
from losskit.losses.ctc import ctc_loss

N, T, C, S = 5, 9, 5, 3


def ctc_inputs(n=N, t=T, c=C, s=S, blank=0, repeats=True):
    """(log_probs (N, T, C), padded targets (N, S), input_lengths, target_lengths): varying
    lengths (an empty target among them), repeated labels, every sequence feasible."""
    def make(rng):
        z = rng.normal(scale=1.5, size=(n, t, c))
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        labels = np.array([k for k in range(c) if k != blank])
        y = labels[rng.integers(0, len(labels), size=(n, s))]
        if repeats:
            y[0, :2] = y[0, 0]  # a repeated label: needs a blank between
        tl = rng.integers(0, s + 1, size=n)
        tl[0], tl[-1] = s, 0
        need = tl + np.array([np.sum(y[i, 1:tl[i]] == y[i, :tl[i] - 1]) if tl[i] > 1 else 0
                              for i in range(n)])
        il = np.maximum(need, rng.integers(t // 2, t + 1, size=n))
        il[0] = t
        y = np.where(np.arange(s)[None, :] < tl[:, None], y, -1)  # padding: any value
        return logp, y, il, tl
    return make


def t_ctc(blank=0, zero_infinity=False):
    def ref(lp, y, il, tl, r, torch):
        F = torch.nn.functional
        y = torch.where(y < 0, torch.zeros_like(y), y)  # torch reads padding as labels too
        kw = dict(blank=blank, zero_infinity=zero_infinity)
        if r == "batchmean":
            return F.ctc_loss(lp.transpose(0, 1), y, il, tl, reduction="sum", **kw) / lp.shape[0]
        return F.ctc_loss(lp.transpose(0, 1), y, il, tl, reduction=r, **kw)
    return ref


def j_ctc(blank=0):
    def ref(lp, y, il, tl, r):
        import jax.numpy as jnp
        import optax

        n, t = lp.shape[:2]
        s = y.shape[1]
        logit_paddings = (jnp.arange(t)[None, :] >= il[:, None]).astype(lp.dtype)
        label_paddings = (jnp.arange(s)[None, :] >= tl[:, None]).astype(lp.dtype)
        labels = jnp.where(label_paddings > 0, blank, y)  # right-padded with the blank
        v = optax.ctc_loss(lp, logit_paddings, labels, label_paddings, blank_id=blank)
        if r == "none":
            return v
        if r == "sum":
            return jnp.sum(v)
        if r == "batchmean":
            return jnp.sum(v) / n
        return jnp.mean(v / jnp.maximum(tl, 1).astype(v.dtype))  # PyTorch's mean
    return ref


CASES = [
    Case("ctc_loss", ctc_loss, ctc_inputs(), t_ctc(), j_ctc(), options={"layout": "NTC"},
         on_every_backend=True),
    Case("ctc_loss-blank-last", ctc_loss, ctc_inputs(blank=C - 1), t_ctc(blank=C - 1),
         j_ctc(blank=C - 1), options={"layout": "NTC", "blank": C - 1}),
    Case("ctc_loss-zero_infinity", ctc_loss, ctc_inputs(n=4, t=6, c=4, s=2),
         t_ctc(zero_infinity=True), options={"layout": "NTC", "zero_infinity": True}),
]
