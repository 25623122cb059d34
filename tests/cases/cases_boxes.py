"""Cases of the bounding-box (IoU family) losses, with independent references.

The references are written here, once, against a tiny namespace shim so the same text
runs in PyTorch (``torch_ref``) and in JAX (``jax_ref``); autodiff of them gives the
reference gradients. They follow the published definitions, not losskit's code:

* IoU, GIoU, DIoU and CIoU as torchvision.ops computes them (``_loss_inter_union``,
  ``generalized_box_iou_loss``, ``_diou_iou_loss``, ``complete_box_iou_loss``): the
  intersection masked to 0 unless both sides are positive, ``iou = inter / (union + eps)``,
  GIoU's ``(area_c - union) / (area_c + eps)``, DIoU's diagonal ``+ eps``, CIoU's
  ``atan(w / h)`` and ``alpha`` computed under ``no_grad`` (``ns.stop``);
* EIoU, Focal-EIoU (Zhang et al. 2022), SIoU (Gevorgyan 2022, the angle cost in its
  original ``1 - 2 sin^2(arcsin(x) - pi/4)`` form), Wise-IoU v1-v3 (Tong et al. 2023 and
  the authors' code), MPDIoU (Ma and Xu 2023) and Inner-IoU (Zhang et al. 2023, the
  auxiliary boxes built from centres and scaled sides, the intersection with ``clamp``)
  from the papers, with eps placed where losskit documents it.

Sample boxes are in general position (no two equal coordinates, centres never aligned),
so every piecewise term is smooth there and finite differences apply. Losses whose
default gradient stops a term (CIoU's alpha, Focal-EIoU's weight, Wise-IoU's enclosing
box and focusing coefficient) appear here with ``stop_gradient=False``, the exact
derivative of the value; their default is tested in ``test_boxes.py``.
"""

from __future__ import annotations

import math

import numpy as np

from loss_cases import Case
from losskit.losses.boxes import (
    ciou_loss,
    diou_loss,
    eiou_loss,
    focal_eiou_loss,
    giou_loss,
    inner_iou_loss,
    iou_loss,
    mpdiou_loss,
    siou_loss,
    wiou_loss,
)

EPS = 1e-7  # torchvision's default


# ---------------------------------------------------------------- namespaces for the refs
class TorchNS:
    def __init__(self, torch):
        self.m = torch
        self.pi = math.pi

    def __getattr__(self, name):
        return getattr(self.m, {"arcsin": "asin"}.get(name, name))

    def stop(self, x):  # torch.no_grad() / .detach()
        return x.detach()

    def clamp0(self, x):
        return self.m.clamp(x, min=0.0)


class JaxNS:
    def __init__(self):
        import jax
        import jax.numpy as jnp

        self.m = jnp
        self.lax = jax.lax
        self.pi = math.pi

    def __getattr__(self, name):
        return getattr(self.m, name)

    def stop(self, x):
        return self.lax.stop_gradient(x)

    def clamp0(self, x):
        return self.m.maximum(x, 0.0)


def _unbind(b):
    return b[..., 0], b[..., 1], b[..., 2], b[..., 3]


def _reduce(v, reduction, n, ns):
    if reduction == "none":
        return v
    if reduction == "sum":
        return ns.sum(v)
    if reduction == "batchmean":
        return ns.sum(v) / n
    return ns.mean(v)


# ---------------------------------------------------------------- the published formulas
def ref_inter_union(ns, p, t):
    """torchvision's _loss_inter_union."""
    x1, y1, x2, y2 = _unbind(p)
    x1g, y1g, x2g, y2g = _unbind(t)
    xkis1, ykis1 = ns.maximum(x1, x1g), ns.maximum(y1, y1g)
    xkis2, ykis2 = ns.minimum(x2, x2g), ns.minimum(y2, y2g)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    inter = ns.where(mask, (xkis2 - xkis1) * (ykis2 - ykis1), ns.zeros_like(x1))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return inter, union


def ref_iou(ns, p, t, eps=EPS):
    inter, union = ref_inter_union(ns, p, t)
    return inter / (union + eps)


def ref_iou_loss(ns, p, t, eps=EPS):
    return 1 - ref_iou(ns, p, t, eps)


def ref_giou_loss(ns, p, t, eps=EPS):
    inter, union = ref_inter_union(ns, p, t)
    iou = inter / (union + eps)
    x1, y1, x2, y2 = _unbind(p)
    x1g, y1g, x2g, y2g = _unbind(t)
    area_c = (ns.maximum(x2, x2g) - ns.minimum(x1, x1g)) * (ns.maximum(y2, y2g)
                                                             - ns.minimum(y1, y1g))
    return 1 - (iou - (area_c - union) / (area_c + eps))


def ref_centres(p, t):
    x1, y1, x2, y2 = _unbind(p)
    x1g, y1g, x2g, y2g = _unbind(t)
    return (x2 + x1) / 2 - (x1g + x2g) / 2, (y2 + y1) / 2 - (y1g + y2g) / 2


def ref_enclosing(ns, p, t):
    x1, y1, x2, y2 = _unbind(p)
    x1g, y1g, x2g, y2g = _unbind(t)
    return ns.maximum(x2, x2g) - ns.minimum(x1, x1g), ns.maximum(y2, y2g) - ns.minimum(y1, y1g)


def ref_diou_loss_and_iou(ns, p, t, eps=EPS, stop_diagonal=False):
    """torchvision's _diou_iou_loss (the diagonal optionally detached, for Wise-IoU)."""
    iou = ref_iou(ns, p, t, eps)
    cw, ch = ref_enclosing(ns, p, t)
    diag2 = cw ** 2 + ch ** 2 + eps
    if stop_diagonal:
        diag2 = ns.stop(diag2)
    dx, dy = ref_centres(p, t)
    return 1 - iou + (dx ** 2 + dy ** 2) / diag2, iou


def ref_diou_loss(ns, p, t, eps=EPS):
    return ref_diou_loss_and_iou(ns, p, t, eps)[0]


def ref_ciou_loss(ns, p, t, eps=EPS, stop=True):
    """torchvision's complete_box_iou_loss (alpha under no_grad when stop)."""
    diou, iou = ref_diou_loss_and_iou(ns, p, t, eps)
    x1, y1, x2, y2 = _unbind(p)
    x1g, y1g, x2g, y2g = _unbind(t)
    w_pred, h_pred, w_gt, h_gt = x2 - x1, y2 - y1, x2g - x1g, y2g - y1g
    v = (4 / ns.pi ** 2) * (ns.atan(w_gt / h_gt) - ns.atan(w_pred / h_pred)) ** 2
    alpha = v / (1 - iou + v + eps)
    if stop:
        alpha = ns.stop(alpha)
    return diou + alpha * v


def ref_eiou_loss_and_iou(ns, p, t, eps=EPS):
    """Zhang et al.: L_IOU + L_dis + L_asp, with w^c, h^c of the enclosing box."""
    diou, iou = ref_diou_loss_and_iou(ns, p, t, eps)
    x1, y1, x2, y2 = _unbind(p)
    x1g, y1g, x2g, y2g = _unbind(t)
    cw, ch = ref_enclosing(ns, p, t)
    asp = ((x2 - x1) - (x2g - x1g)) ** 2 / (cw ** 2 + eps) \
        + ((y2 - y1) - (y2g - y1g)) ** 2 / (ch ** 2 + eps)
    return diou + asp, iou


def ref_eiou_loss(ns, p, t, eps=EPS):
    return ref_eiou_loss_and_iou(ns, p, t, eps)[0]


def ref_focal_eiou_loss(ns, p, t, gamma=0.5, eps=EPS, stop=True):
    eiou, iou = ref_eiou_loss_and_iou(ns, p, t, eps)
    weight = iou ** gamma
    if stop:
        weight = ns.stop(weight)
    return weight * eiou


def ref_siou_loss(ns, p, t, theta=4.0, eps=EPS):
    """Gevorgyan: L = 1 - IoU + (Delta + Omega) / 2, angle cost in the paper's form."""
    iou = ref_iou(ns, p, t, eps)
    dx, dy = ref_centres(p, t)
    sigma = ns.sqrt(dx ** 2 + dy ** 2)
    c_h = ns.abs(dy)  # max(b_cy^gt, b_cy) - min(b_cy^gt, b_cy)
    angle = 1 - 2 * ns.sin(ns.arcsin(c_h / sigma) - ns.pi / 4) ** 2
    gamma = 2 - angle
    cw, ch = ref_enclosing(ns, p, t)
    rho_x = dx ** 2 / (cw ** 2 + eps)
    rho_y = dy ** 2 / (ch ** 2 + eps)
    distance = (1 - ns.exp(-gamma * rho_x)) + (1 - ns.exp(-gamma * rho_y))
    x1, y1, x2, y2 = _unbind(p)
    x1g, y1g, x2g, y2g = _unbind(t)
    w, h, wg, hg = x2 - x1, y2 - y1, x2g - x1g, y2g - y1g
    omega_w = ns.abs(w - wg) / (ns.maximum(w, wg) + eps)
    omega_h = ns.abs(h - hg) / (ns.maximum(h, hg) + eps)
    shape = (1 - ns.exp(-omega_w)) ** theta + (1 - ns.exp(-omega_h)) ** theta
    return 1 - iou + (distance + shape) / 2


def ref_wiou_loss(ns, p, t, version=1, iou_mean=None, gamma=0.5, alpha=1.9, delta=3.0,
                  eps=EPS, stop=True):
    """Tong et al.: R_WIoU = exp(rho^2 / (W_g^2 + H_g^2)*), L_v1 = R L_IoU, v2, v3."""
    diou, iou = ref_diou_loss_and_iou(ns, p, t, eps, stop_diagonal=stop)
    l_iou = 1 - iou
    dist = diou - l_iou  # rho^2 / c^2
    v1 = ns.exp(dist) * l_iou
    if version == 1:
        return v1
    beta = l_iou / iou_mean
    if stop:
        beta = ns.stop(beta)
    if version == 2:
        return beta ** gamma * v1
    return beta / (delta * alpha ** (beta - delta)) * v1


def ref_mpdiou_loss(ns, p, t, image_size, eps=EPS):
    """Ma and Xu: 1 - (IoU - d1^2 / (w^2 + h^2) - d2^2 / (w^2 + h^2))."""
    iou = ref_iou(ns, p, t, eps)
    x1, y1, x2, y2 = _unbind(p)
    x1g, y1g, x2g, y2g = _unbind(t)
    w, h = image_size
    d1 = (x1 - x1g) ** 2 + (y1 - y1g) ** 2
    d2 = (x2 - x2g) ** 2 + (y2 - y2g) ** 2
    return 1 - (iou - d1 / (w ** 2 + h ** 2) - d2 / (w ** 2 + h ** 2))


def ref_inner_iou(ns, p, t, ratio, eps=EPS):
    """Zhang, Xu, Zhang: IoU of auxiliary boxes (centre +- side * ratio / 2)."""
    x1, y1, x2, y2 = _unbind(p)
    x1g, y1g, x2g, y2g = _unbind(t)
    w, h, wg, hg = x2 - x1, y2 - y1, x2g - x1g, y2g - y1g
    xc, yc, xcg, ycg = (x1 + x2) / 2, (y1 + y2) / 2, (x1g + x2g) / 2, (y1g + y2g) / 2
    b_l, b_r = xc - w * ratio / 2, xc + w * ratio / 2
    b_t, b_b = yc - h * ratio / 2, yc + h * ratio / 2
    g_l, g_r = xcg - wg * ratio / 2, xcg + wg * ratio / 2
    g_t, g_b = ycg - hg * ratio / 2, ycg + hg * ratio / 2
    inter = ns.clamp0(ns.minimum(b_r, g_r) - ns.maximum(b_l, g_l)) \
        * ns.clamp0(ns.minimum(b_b, g_b) - ns.maximum(b_t, g_t))
    union = w * h * ratio ** 2 + wg * hg * ratio ** 2 - inter
    return inter / (union + eps)


def ref_inner_iou_loss(ns, p, t, ratio=0.75, eps=EPS):
    return 1 - ref_inner_iou(ns, p, t, ratio, eps)


def with_inner(base, ratio):
    """Inner-X = L_X + IoU - IoU_inner (Zhang et al. 2023)."""
    def ref(ns, p, t, **kw):
        eps = kw.get("eps", EPS)
        return base(ns, p, t, **kw) + ref_iou(ns, p, t, eps) - ref_inner_iou(ns, p, t, ratio, eps)
    return ref


# ---------------------------------------------------------------- adapters for Case
def torch_ref(fn, **kw):
    def ref(p, t, reduction, torch):
        ns = TorchNS(torch)
        return _reduce(fn(ns, p, t, **kw), reduction, p.shape[0], ns)
    return ref


def jax_ref(fn, **kw):
    def ref(p, t, reduction):
        ns = JaxNS()
        return _reduce(fn(ns, p, t, **kw), reduction, p.shape[0], ns)
    return ref


# ---------------------------------------------------------------- sample boxes
def box_pairs(shape=(6,), overlap=False):
    """(prediction, target) boxes in general position.

    Targets have centres in [0, 10]^2 and sides in [1, 4]; predictions are the targets
    moved by up to 0.9 side and rescaled by 0.6 to 1.7. Unless ``overlap``, the first
    prediction is moved far away (a disjoint pair). Continuous draws make equal
    coordinates (the kinks of max/min) and aligned centres (SIoU's |d|) events of
    probability 0.
    """
    def make(rng):
        tc = rng.uniform(0.0, 10.0, size=shape + (2,))
        ts = rng.uniform(1.0, 4.0, size=shape + (2,))
        limit = 0.45 if overlap else 0.9
        pc = tc + rng.uniform(-limit, limit, size=shape + (2,)) * ts
        ps = ts * rng.uniform(0.6, 1.7, size=shape + (2,))
        if not overlap:
            flat = pc.reshape(-1, 2)
            flat[0] += np.array([9.0, -6.5])
            pc = flat.reshape(pc.shape)
        p = np.concatenate([pc - ps / 2, pc + ps / 2], axis=-1)
        t = np.concatenate([tc - ts / 2, tc + ts / 2], axis=-1)
        return p, t
    return make


def case(id, loss, fn, make=None, options=None, jax=None, **kw):
    opts = dict(options or {})
    ref_kw = {k: v for k, v in opts.items() if k not in ("inner_ratio", "stop_gradient")}
    if "stop_gradient" in opts:
        ref_kw["stop"] = opts["stop_gradient"]
    if "inner_ratio" in opts:
        fn = with_inner(fn, opts["inner_ratio"])
    if jax is None:  # JAX runs eagerly and slowly here: one JAX check per loss
        jax = kw.get("on_every_backend", False)
    return Case(id, loss, make or box_pairs(), torch_ref(fn, **ref_kw),
                jax_ref(fn, **ref_kw) if jax else None, options=opts, **kw)


EXACT = {"stop_gradient": False}

CASES = [
    case("iou_loss", iou_loss, ref_iou_loss, on_every_backend=True),
    case("iou_loss-3d", iou_loss, ref_iou_loss, make=box_pairs((3, 2))),
    case("giou_loss", giou_loss, ref_giou_loss, on_every_backend=True),
    case("giou_loss-3d", giou_loss, ref_giou_loss, make=box_pairs((2, 3))),
    case("giou_loss-inner", giou_loss, ref_giou_loss, options={"inner_ratio": 0.8}),
    case("diou_loss", diou_loss, ref_diou_loss, on_every_backend=True),
    case("diou_loss-inner", diou_loss, ref_diou_loss, options={"inner_ratio": 1.25}),
    case("ciou_loss-exact", ciou_loss, ref_ciou_loss, options=EXACT, on_every_backend=True),
    case("ciou_loss-exact-inner", ciou_loss, ref_ciou_loss,
         options={"stop_gradient": False, "inner_ratio": 0.7}),
    case("eiou_loss", eiou_loss, ref_eiou_loss, on_every_backend=True),
    case("eiou_loss-inner", eiou_loss, ref_eiou_loss, options={"inner_ratio": 0.75}),
    # IoU^gamma has an infinite slope at IoU = 0 in autodiff: overlapping pairs only
    case("focal_eiou_loss-exact", focal_eiou_loss, ref_focal_eiou_loss,
         make=box_pairs(overlap=True), options=EXACT, on_every_backend=True),
    case("focal_eiou_loss-exact-gamma2", focal_eiou_loss, ref_focal_eiou_loss,
         make=box_pairs(overlap=True), options={"stop_gradient": False, "gamma": 2.0}),
    case("siou_loss", siou_loss, ref_siou_loss, on_every_backend=True),
    case("siou_loss-theta2-inner", siou_loss, ref_siou_loss,
         options={"theta": 2.0, "inner_ratio": 1.1}),
    case("wiou_loss-v1-exact", wiou_loss, ref_wiou_loss, options=EXACT,
         on_every_backend=True),
    case("wiou_loss-v2-exact", wiou_loss, ref_wiou_loss,
         options={"version": 2, "iou_mean": 0.6, "stop_gradient": False}),
    case("wiou_loss-v3-exact", wiou_loss, ref_wiou_loss,
         options={"version": 3, "iou_mean": 0.6, "stop_gradient": False}),
    case("mpdiou_loss", mpdiou_loss, ref_mpdiou_loss, options={"image_size": (16.0, 12.0)},
         on_every_backend=True),
    case("mpdiou_loss-inner", mpdiou_loss, ref_mpdiou_loss,
         options={"image_size": (20.0, 10.0), "inner_ratio": 0.9}),
    case("inner_iou_loss", inner_iou_loss, ref_inner_iou_loss, on_every_backend=True),
    case("inner_iou_loss-ratio1.3", inner_iou_loss, ref_inner_iou_loss,
         options={"ratio": 1.3}),
]
