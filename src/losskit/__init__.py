"""losskit: loss functions with exact closed-form gradients, on any Array-API library.

>>> import numpy as np, losskit as lk
>>> z = np.array([[2.0, 1.0, 0.1]]); y = np.array([0])
>>> loss, grad = lk.softmax_cross_entropy.value_and_grad(z, y)
>>> bool(np.allclose(grad, lk.softmax(z) - np.eye(3)[y]))
True
"""

from . import info
from .core.loss import REDUCTIONS, Loss, catalog
from .doctor import DoctorReport, Finding, doctor
from .gradcheck import GradcheckResult, gradcheck
from .losses.cross_entropy import (
    binary_cross_entropy,
    cross_entropy,
    nll_loss,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)
from .losses.boxes import (
    ciou_loss,
    complete_box_iou_loss,
    diou_loss,
    distance_box_iou_loss,
    eiou_loss,
    focal_eiou_loss,
    generalized_box_iou_loss,
    giou_loss,
    inner_iou_loss,
    iou_loss,
    mpdiou_loss,
    siou_loss,
    wiou_loss,
)
from .losses.divergence import js_divergence, kl_divergence, softmax_kl_divergence
from .losses.focal import poly_loss, sigmoid_focal_loss, softmax_focal_loss
from .losses.likelihood import gaussian_nll, poisson_nll
from .losses.linear_cross_entropy import linear_cross_entropy
from .losses.margin import hinge, multiclass_hinge, squared_hinge
from .losses.metric_learning import (
    contrastive,
    contrastive_loss,
    cosine_embedding,
    cosine_embedding_loss,
    margin_ranking,
    margin_ranking_loss,
    triplet_margin,
    triplet_margin_loss,
)
from .losses.overlap import dice_loss, jaccard_loss, tversky_loss
from .penalties import elastic_net_penalty, l1_penalty, l2_penalty
from .core.primitives import log_sigmoid, log_softmax, logsumexp, sigmoid, softmax, softplus
from .losses.regression import l2_loss, mae, mean_absolute_error, mean_squared_error, mse
from .losses.robust_regression import huber, log_cosh, pinball, quantile, smooth_l1
from .losses.brier_score import brier_score

from .core import __version__
from .core import dispatch as _dispatch


# The framework adapters, imported on the first call with one of their arrays (never here:
# `import losskit` stays free of torch and jax). The package wires them into core's
# dispatch, since core sits below the adapters.
def _torch_adapter():
    from . import torch as adapter

    return adapter.call


def _jax_adapter():
    from . import jax as adapter

    return adapter.call


_dispatch.register_framework_adapter("torch", _torch_adapter)
_dispatch.register_framework_adapter("jax", _jax_adapter)
_dispatch.register_framework_adapter("jaxlib", _jax_adapter)

__all__ = [
    "Loss",
    "REDUCTIONS",
    "catalog",
    # losses
    "mse",
    "mean_squared_error",
    "l2_loss",
    "mae",
    "mean_absolute_error",
    "huber",
    "smooth_l1",
    "log_cosh",
    "quantile",
    "pinball",
    "poisson_nll",
    "gaussian_nll",
    "cross_entropy",
    "softmax_cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "hinge",
    "multiclass_hinge",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "poly_loss",
    "squared_hinge",
    "kl_divergence",
    "softmax_kl_divergence",
    "js_divergence",
    "brier_score",
    "linear_cross_entropy",
    "dice_loss",
    "tversky_loss",
    "jaccard_loss",
    "iou_loss",
    "giou_loss",
    "generalized_box_iou_loss",
    "diou_loss",
    "distance_box_iou_loss",
    "ciou_loss",
    "complete_box_iou_loss",
    "eiou_loss",
    "focal_eiou_loss",
    "siou_loss",
    "wiou_loss",
    "mpdiou_loss",
    "inner_iou_loss",
    "contrastive",
    "contrastive_loss",
    "triplet_margin",
    "triplet_margin_loss",
    "margin_ranking",
    "margin_ranking_loss",
    "cosine_embedding",
    "cosine_embedding_loss",
    # regularisation
    "l1_penalty",
    "l2_penalty",
    "elastic_net_penalty",
    # tools
    "gradcheck",
    "GradcheckResult",
    "doctor",
    "DoctorReport",
    "Finding",
    # information theory
    "info",
    # primitives
    "softmax",
    "log_softmax",
    "logsumexp",
    "sigmoid",
    "log_sigmoid",
    "softplus",
]
