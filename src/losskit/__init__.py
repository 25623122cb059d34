"""losskit: loss functions with exact closed-form gradients, on any Array-API library.

>>> import numpy as np, losskit as lk
>>> z = np.array([[2.0, 1.0, 0.1]]); y = np.array([0])
>>> loss, grad = lk.softmax_cross_entropy.value_and_grad(z, y)
>>> bool(np.allclose(grad, lk.softmax(z) - np.eye(3)[y]))
True
"""

from . import gbdt, info
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
from .losses.ctc import ctc_loss
from .losses.distillation import generalized_jsd, tvd_loss
from .losses.divergence import js_divergence, kl_divergence, softmax_kl_divergence
from .losses.fenchel_young import (
    make_fenchel_young_loss,
    multiclass_sparsemax_loss,
    sparsemax_loss,
)
from .losses.focal import poly_loss, sigmoid_focal_loss, sigmoid_focal_loss_star, softmax_focal_loss
from .losses.noise_robust import generalized_cross_entropy
from .losses.likelihood import gaussian_nll, poisson_nll
from .losses.linear_cross_entropy import linear_cross_entropy
from .losses.linear_distillation import linear_generalized_jsd
from .losses.linear_logprobs import linear_token_logprobs
from .losses.linear_preference import linear_preference_loss
from .losses.linear_policy_gradient import linear_grpo_loss
from .losses.margin import (
    hinge,
    hinge_embedding,
    hinge_embedding_loss,
    multiclass_hinge,
    multiclass_perceptron,
    perceptron,
    soft_margin,
    soft_margin_loss,
    squared_hinge,
)
from .losses.multilabel import (
    asymmetric_loss,
    multilabel_margin,
    multilabel_margin_loss,
    multilabel_soft_margin,
    multilabel_soft_margin_loss,
)
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
from .losses.metric_mining import (
    batch_contrastive_loss,
    batch_triplet_loss,
    circle_loss,
    multi_similarity_loss,
)
from .losses.margin_heads import arcface_loss, cosface_loss
from .losses.overlap import (
    dice_loss,
    focal_tversky_loss,
    generalized_dice,
    generalized_dice_loss,
    jaccard_loss,
    mcc_loss,
    tversky_loss,
)
from .losses.lovasz import lovasz_hinge, lovasz_softmax
from .losses.self_supervised import clip_loss, info_nce, nt_xent_loss, siglip_loss, supcon_loss
from .losses.ranking import (
    lambdarank_loss,
    listmle_loss,
    listnet_loss,
    pairwise_logistic_loss,
    ranking_softmax_loss,
    ranknet_loss,
)
from .penalties import elastic_net_penalty, l1_penalty, l2_penalty
from .core.primitives import log_sigmoid, log_softmax, logsumexp, sigmoid, softmax, softplus
from .core.primitives import sparsemax
from .losses.regression import l2_loss, mae, mean_absolute_error, mean_squared_error, mse
from .losses.robust_regression import huber, log_cosh, pinball, pseudo_huber, quantile, smooth_l1
from .losses.relative_error import (
    mape,
    mean_absolute_percentage_error,
    mean_squared_logarithmic_error,
    msle,
)
from .losses.deviance import gamma_deviance, tweedie_deviance
from .losses.brier_score import brier_score
from .losses.policy_gradient import grpo_loss
from .losses.preference import dpo_loss
from .losses.preference_odds import cpo_loss, kto_loss, orpo_loss, simpo_loss

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
    "pseudo_huber",
    "log_cosh",
    "quantile",
    "pinball",
    "msle",
    "mean_squared_logarithmic_error",
    "mape",
    "mean_absolute_percentage_error",
    "tweedie_deviance",
    "gamma_deviance",
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
    "generalized_jsd",
    "tvd_loss",
    "brier_score",
    "grpo_loss",
    "dpo_loss",
    "simpo_loss",
    "cpo_loss",
    "orpo_loss",
    "kto_loss",
    "sparsemax_loss",
    "multiclass_sparsemax_loss",
    "linear_cross_entropy",
    "linear_generalized_jsd",
    "linear_token_logprobs",
    "linear_preference_loss",
    "linear_grpo_loss",
    "dice_loss",
    "tversky_loss",
    "jaccard_loss",
    "focal_tversky_loss",
    "generalized_dice_loss",
    "generalized_dice",
    "mcc_loss",
    "lovasz_hinge",
    "lovasz_softmax",
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
    "ctc_loss",
    "contrastive",
    "contrastive_loss",
    "triplet_margin",
    "triplet_margin_loss",
    "margin_ranking",
    "margin_ranking_loss",
    "cosine_embedding",
    "cosine_embedding_loss",
    "batch_triplet_loss",
    "batch_contrastive_loss",
    "multi_similarity_loss",
    "circle_loss",
    "arcface_loss",
    "cosface_loss",
    "perceptron",
    "multiclass_perceptron",
    "soft_margin",
    "soft_margin_loss",
    "hinge_embedding",
    "hinge_embedding_loss",
    "multilabel_margin",
    "multilabel_margin_loss",
    "multilabel_soft_margin",
    "multilabel_soft_margin_loss",
    "asymmetric_loss",
    "sigmoid_focal_loss_star",
    "generalized_cross_entropy",
    "pairwise_logistic_loss",
    "ranknet_loss",
    "lambdarank_loss",
    "ranking_softmax_loss",
    "listnet_loss",
    "listmle_loss",
    "info_nce",
    "nt_xent_loss",
    "clip_loss",
    "siglip_loss",
    "supcon_loss",
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
    "sparsemax",
    # Fenchel-Young losses (a factory)
    "make_fenchel_young_loss",
]
