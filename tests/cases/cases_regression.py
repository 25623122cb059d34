"""Cases of the robust and likelihood regression losses (huber, smooth_l1, log_cosh,
quantile, poisson_nll, gaussian_nll) for the generic suites in ``test_losses.py`` and
``test_backends.py``.

References: ``torch.nn.functional`` (huber_loss, smooth_l1_loss, poisson_nll_loss,
gaussian_nll_loss), Optax (huber_loss, log_cosh), and the published formulas written
out in torch / jax.numpy where neither library has the loss (log-cosh in torch, the
pinball loss, Poisson and Gaussian NLL in jax). Nothing here comes from losskit.
"""

from __future__ import annotations

import math

import numpy as np

from loss_cases import Case, _jreduce, _reduce_torch
from losskit.losses.deviance import gamma_deviance, tweedie_deviance
from losskit.losses.likelihood import gaussian_nll, poisson_nll
from losskit.losses.relative_error import mape, msle
from losskit.losses.robust_regression import huber, log_cosh, pseudo_huber, quantile, smooth_l1

N = 6


# ---------------------------------------------------------------- input generators
def residual_pair(shape=(N, 3), scale=2.0, avoid=(0.0,), margin=0.05):
    """Prediction and target whose residual |y - t| keeps ``margin`` away from ``avoid``
    (the kinks), so finite differences see a smooth function."""
    def make(rng):
        t = rng.normal(size=shape)
        d = rng.normal(scale=scale, size=shape)
        for k in avoid:
            near = np.abs(np.abs(d) - k) < margin
            d = np.where(near, np.sign(d + (d == 0)) * (k + 2 * margin), d)
        return t + d, t
    return make


def poisson_inputs(shape=(N, 3), log_input=True, integer_target=False):
    def make(rng):
        t = rng.poisson(2.5, size=shape)
        t.flat[:3] = [0, 1, 7]  # the zero count, the Stirling threshold, a larger count
        if log_input:
            x = rng.normal(scale=0.8, size=shape)
        else:
            x = 0.2 + rng.exponential(2.0, size=shape)  # rates, away from 0
        return x, (t if integer_target else t.astype(float))
    return make


def gaussian_inputs(shape=(N, 3), var_shape=None):
    def make(rng):
        mu = rng.normal(size=shape)
        t = mu + rng.normal(scale=1.5, size=shape)
        var = 0.1 + rng.exponential(1.0, size=var_shape or shape)  # away from the clamp
        return mu, t, var
    return make


def log_link_inputs(shape=(N, 3), zeros=True, shift=0.0):
    """Raw scores r (log of the mean) and non-negative targets with exact zeros."""
    def make(rng):
        r = rng.normal(scale=0.7, size=shape)
        t = rng.gamma(2.0, 1.0, size=shape) + shift
        if zeros:
            t.flat[:2] = 0.0
        return r, t
    return make


def positive_pair(shape=(N, 3), lo=-0.5, signed_target=False):
    """Predictions above ``lo`` and targets away from 0 (for the log and the division)."""
    def make(rng):
        y = lo + rng.exponential(2.0, size=shape)
        t = 0.2 + rng.exponential(2.0, size=shape)
        if signed_target:
            t = t * np.where(rng.random(size=shape) < 0.5, -1.0, 1.0)
        # |y - t| away from 0: the kink of the absolute error
        y = np.where(np.abs(y - t) < 0.05, y + 0.1, y)
        return y, t
    return make


# ---------------------------------------------------------------- torch references
def _torch_builtin(fn_name, **kw):
    """A torch.nn.functional loss with its own 'none'; batchmean = sum / N."""
    def ref(p, t, r, torch):
        v = getattr(torch.nn.functional, fn_name)(p, t, reduction="none", **kw)
        return _reduce_torch(v, r, p.shape[0])
    return ref


def t_log_cosh(p, t, r, torch):
    return _reduce_torch(torch.log(torch.cosh(p - t)), r, p.shape[0])


def quantile_head(levels=3, shape=(N,), per_level=False):
    """A multi-quantile head: predictions (*shape, Q), targets (*shape) or (*shape, Q)."""
    def make(rng):
        y = rng.normal(size=shape + (levels,))
        t = rng.normal(size=shape + ((levels,) if per_level else ()))
        tt = t if per_level else t[..., None]
        y = np.where(np.abs(y - tt) < 0.05, y + 0.1, y)  # away from the kink
        return y, t
    return make


def t_quantile_head(levels):
    def ref(p, t, r, torch):
        # the Temporal Fusion Transformer's quantile loss (sktime/pytorch-forecasting,
        # temporal_fusion_transformer_pytorch/model/metrics.py), unreduced: column j of the
        # prediction against the target at level q_j
        if t.ndim < p.ndim:
            t = t.unsqueeze(-1)
        q = torch.as_tensor(levels, dtype=p.dtype)
        e = t - p
        return _reduce_torch(torch.max((q - 1) * e, q * e), r, p.shape[0])
    return ref


def j_quantile_head(levels):
    def ref(p, t, r):
        import jax.numpy as jnp
        if t.ndim < p.ndim:
            t = t[..., None]
        q = jnp.asarray(levels, dtype=p.dtype)
        d = t - p
        return _jreduce(jnp.where(d >= 0, q * d, (q - 1) * d), r, p.shape[0])
    return ref


def t_quantile(q):
    def ref(p, t, r, torch):
        d = t - p  # Koenker-Bassett check function rho_q(t - y)
        return _reduce_torch(torch.maximum(q * d, (q - 1) * d), r, p.shape[0])
    return ref


def t_pseudo_huber(delta):
    def ref(p, t, r, torch):
        d = (p - t) / delta  # Charbonnier / Hartley-Zisserman, as XGBoost's reg:pseudohubererror
        return _reduce_torch(delta ** 2 * (torch.sqrt(1 + d * d) - 1), r, p.shape[0])
    return ref


def t_msle(clip=None):
    def ref(p, t, r, torch):
        if clip is not None:  # Keras: log(max(x, eps) + 1)
            p, t = torch.clamp(p, min=clip), torch.clamp(t, min=clip)
        return _reduce_torch((torch.log(p + 1) - torch.log(t + 1)) ** 2, r, p.shape[0])
    return ref


def t_mape(eps=np.finfo(np.float64).eps, scale=1.0):
    def ref(p, t, r, torch):  # scikit-learn / Keras: |y - t| / max(|t|, eps)
        v = scale * torch.abs(p - t) / torch.clamp(torch.abs(t), min=eps)
        return _reduce_torch(v, r, p.shape[0])
    return ref


def t_tweedie(power):
    def ref(r_, t, r, torch):
        # the unit deviance of McCullagh and Nelder / scikit-learn's mean_tweedie_deviance,
        # halved, with mu = exp(r)
        mu = torch.exp(r_)
        p = power
        if p == 0:
            v = 0.5 * (t - mu) ** 2
        elif p == 1:
            v = torch.xlogy(t, t) - torch.xlogy(t, mu) - t + mu
        elif p == 2:
            v = torch.log(mu / t) + t / mu - 1
        else:
            v = (torch.clamp(t, min=0) ** (2 - p) / ((1 - p) * (2 - p))
                 - t * mu ** (1 - p) / (1 - p) + mu ** (2 - p) / (2 - p))
        return _reduce_torch(v, r, r_.shape[0])
    return ref


def t_gaussian(**kw):
    def ref(p, t, var, r, torch):
        v = torch.nn.functional.gaussian_nll_loss(p, t, var, reduction="none", **kw)
        return _reduce_torch(v, r, p.shape[0])
    return ref


# ---------------------------------------------------------------- jax references
def j_huber(delta):
    def ref(p, t, r):
        import optax
        return _jreduce(optax.losses.huber_loss(p, t, delta=delta), r, p.shape[0])
    return ref


def j_smooth_l1(beta):
    def ref(p, t, r):
        import jax.numpy as jnp
        import optax
        if beta == 0:
            v = jnp.abs(p - t)
        else:  # Huber with delta = beta, divided by beta (Girshick's smooth L1)
            v = optax.losses.huber_loss(p, t, delta=beta) / beta
        return _jreduce(v, r, p.shape[0])
    return ref


def j_log_cosh(p, t, r):
    import optax
    return _jreduce(optax.losses.log_cosh(p, t), r, p.shape[0])


def j_quantile(q):
    def ref(p, t, r):
        import jax.numpy as jnp
        d = t - p
        return _jreduce(jnp.where(d >= 0, q * d, (q - 1) * d), r, p.shape[0])
    return ref


def j_pseudo_huber(delta):
    def ref(p, t, r):
        import jax.numpy as jnp
        d = (p - t) / delta
        return _jreduce(delta ** 2 * (jnp.sqrt(1 + d * d) - 1), r, p.shape[0])
    return ref


def j_msle(p, t, r):
    import jax.numpy as jnp
    return _jreduce((jnp.log1p(p) - jnp.log1p(t)) ** 2, r, p.shape[0])


def j_mape(p, t, r):
    import jax.numpy as jnp
    eps = float(np.finfo(np.float64).eps)
    return _jreduce(jnp.abs(p - t) / jnp.maximum(jnp.abs(t), eps), r, p.shape[0])


def j_tweedie(power):
    def ref(r_, t, r):
        import jax.numpy as jnp
        from jax.scipy.special import xlogy
        mu = jnp.exp(r_)
        p = power
        if p == 1:
            v = xlogy(t, t) - xlogy(t, mu) - t + mu
        elif p == 2:
            v = jnp.log(mu / t) + t / mu - 1
        else:
            v = (jnp.maximum(t, 0) ** (2 - p) / ((1 - p) * (2 - p))
                 - t * mu ** (1 - p) / (1 - p) + mu ** (2 - p) / (2 - p))
        return _jreduce(v, r, r_.shape[0])
    return ref


def j_poisson(log_input=True, full=False, eps=1e-8):
    def ref(x, t, r):
        import jax.numpy as jnp
        t = t.astype(x.dtype)
        v = jnp.exp(x) - t * x if log_input else x - t * jnp.log(x + eps)
        if full:
            ts = jnp.where(t > 1, t, 2.0)
            v = v + jnp.where(t > 1, ts * jnp.log(ts) - ts + 0.5 * jnp.log(2 * math.pi * ts),
                              0.0)
        return _jreduce(v, r, x.shape[0])
    return ref


def j_gaussian(full=False, eps=1e-6):
    def ref(mu, t, var, r):
        import jax.numpy as jnp
        if var.ndim == mu.ndim - 1:
            var = var[..., None]
        v = jnp.maximum(var, eps)
        loss = 0.5 * (jnp.log(v) + (mu - t) ** 2 / v)
        if full:
            loss = loss + 0.5 * math.log(2 * math.pi)
        return _jreduce(loss, r, mu.shape[0])
    return ref


CASES = [
    Case("huber", huber, residual_pair(avoid=(0.0, 1.0)), _torch_builtin("huber_loss"),
         j_huber(1.0), on_every_backend=True),
    Case("huber-delta0.5", huber, residual_pair(avoid=(0.0, 0.5)),
         _torch_builtin("huber_loss", delta=0.5), j_huber(0.5), options={"delta": 0.5}),
    Case("huber-delta2.5-3d", huber, residual_pair((3, 2, 4), scale=3.0, avoid=(0.0, 2.5)),
         _torch_builtin("huber_loss", delta=2.5), j_huber(2.5), options={"delta": 2.5}),
    Case("smooth_l1", smooth_l1, residual_pair(avoid=(0.0, 1.0)),
         _torch_builtin("smooth_l1_loss"), j_smooth_l1(1.0), on_every_backend=True),
    Case("smooth_l1-beta0.3", smooth_l1, residual_pair(avoid=(0.0, 0.3)),
         _torch_builtin("smooth_l1_loss", beta=0.3), j_smooth_l1(0.3), options={"beta": 0.3}),
    Case("smooth_l1-beta0", smooth_l1, residual_pair(avoid=(0.0,)),
         _torch_builtin("smooth_l1_loss", beta=0.0), j_smooth_l1(0.0), options={"beta": 0.0}),
    Case("pseudo_huber", pseudo_huber, residual_pair(), t_pseudo_huber(1.0),
         j_pseudo_huber(1.0), on_every_backend=True),
    Case("pseudo_huber-delta0.3-3d", pseudo_huber, residual_pair((3, 2, 4), scale=3.0),
         t_pseudo_huber(0.3), j_pseudo_huber(0.3), options={"delta": 0.3}),
    Case("msle", msle, positive_pair(), t_msle(), j_msle, on_every_backend=True),
    Case("msle-keras-clip", msle, positive_pair(lo=0.01), t_msle(clip=1e-7),
         options={"clip": 1e-7}),
    Case("mape", mape, positive_pair(signed_target=True), t_mape(), j_mape, kinky=True,
         on_every_backend=True),
    Case("mape-keras", mape, positive_pair(), t_mape(eps=1e-7, scale=100.0),
         options={"epsilon": 1e-7, "percent": True}, kinky=True),
    Case("tweedie_deviance", tweedie_deviance, log_link_inputs(), t_tweedie(1.5),
         j_tweedie(1.5), on_every_backend=True),
    Case("tweedie_deviance-p1", tweedie_deviance, log_link_inputs(), t_tweedie(1),
         j_tweedie(1), options={"power": 1}),
    Case("tweedie_deviance-p0", tweedie_deviance, log_link_inputs(shift=-1.0), t_tweedie(0),
         options={"power": 0}),
    Case("tweedie_deviance-p3", tweedie_deviance, log_link_inputs(zeros=False, shift=0.2),
         t_tweedie(3), j_tweedie(3), options={"power": 3}),
    Case("gamma_deviance", gamma_deviance, log_link_inputs(zeros=False, shift=0.2),
         t_tweedie(2), j_tweedie(2), on_every_backend=True),
    Case("log_cosh", log_cosh, residual_pair(scale=1.5), t_log_cosh, j_log_cosh,
         on_every_backend=True),
    Case("log_cosh-3d", log_cosh, residual_pair((2, 3, 4), scale=4.0), t_log_cosh, j_log_cosh),
    Case("quantile", quantile, residual_pair(), t_quantile(0.5), j_quantile(0.5),
         on_every_backend=True),
    Case("quantile-q0.1", quantile, residual_pair(), t_quantile(0.1), j_quantile(0.1),
         options={"q": 0.1}),
    Case("quantile-q0.9", quantile, residual_pair((3, 2, 4)), t_quantile(0.9), j_quantile(0.9),
         options={"q": 0.9}),
    Case("quantile-head", quantile, quantile_head(), t_quantile_head((0.1, 0.5, 0.9)),
         j_quantile_head((0.1, 0.5, 0.9)), options={"q": (0.1, 0.5, 0.9)}),
    Case("quantile-head-per-level-targets", quantile, quantile_head(4, (N, 2), True),
         t_quantile_head((0.05, 0.25, 0.75, 0.95)), j_quantile_head((0.05, 0.25, 0.75, 0.95)),
         options={"q": [0.05, 0.25, 0.75, 0.95]}),
    Case("poisson_nll", poisson_nll, poisson_inputs(), _torch_builtin("poisson_nll_loss"),
         j_poisson(), on_every_backend=True),
    Case("poisson_nll-int-target", poisson_nll, poisson_inputs(integer_target=True),
         _torch_builtin("poisson_nll_loss"), j_poisson()),
    Case("poisson_nll-full", poisson_nll, poisson_inputs(),
         _torch_builtin("poisson_nll_loss", full=True), j_poisson(full=True),
         options={"full": True}),
    Case("poisson_nll-rate", poisson_nll, poisson_inputs(log_input=False),
         _torch_builtin("poisson_nll_loss", log_input=False), j_poisson(log_input=False),
         options={"log_input": False}),
    # eps set through a configured copy: gradcheck's own ``eps=`` (its step) would shadow
    # an ``eps`` option in Case.options
    Case("poisson_nll-rate-full-eps", type(poisson_nll)(eps=0.1),
         poisson_inputs(log_input=False),
         _torch_builtin("poisson_nll_loss", log_input=False, full=True, eps=0.1),
         j_poisson(log_input=False, full=True, eps=0.1),
         options={"log_input": False, "full": True}),
    Case("gaussian_nll", gaussian_nll, gaussian_inputs(), t_gaussian(), j_gaussian()),
    Case("gaussian_nll-var-per-row", gaussian_nll, gaussian_inputs(var_shape=(N,)),
         t_gaussian(), j_gaussian(), on_every_backend=True),
    Case("gaussian_nll-var-last1-full", gaussian_nll, gaussian_inputs(var_shape=(N, 1)),
         t_gaussian(full=True), j_gaussian(full=True), options={"full": True}),
    Case("gaussian_nll-var-mid1-eps", type(gaussian_nll)(eps=1e-3),
         gaussian_inputs(shape=(N, 3, 2), var_shape=(N, 1, 2)),
         t_gaussian(eps=1e-3), j_gaussian(eps=1e-3)),
]
