"""The loss catalog, one module per family, each loss stating its math once.

==========================  ===============================================================
module                      losses
==========================  ===============================================================
``regression``              mse, l2_loss, mae
``robust_regression``       huber, smooth_l1, pseudo_huber, log_cosh, quantile (pinball)
``relative_error``          msle, mape
``likelihood``              poisson_nll, gaussian_nll
``deviance``                tweedie_deviance, gamma_deviance
``cross_entropy``           softmax_cross_entropy, cross_entropy, nll_loss,
                            binary_cross_entropy, sigmoid_binary_cross_entropy
``linear_cross_entropy``    linear_cross_entropy (softmax CE of a linear layer, in blocks)
``linear_logprobs``         linear_token_logprobs (per-token log-probabilities of a linear head)
``linear_preference``       linear_preference_loss (DPO, SimPO, ORPO, CPO, KTO through a linear
                            head, in blocks of whole pairs)
``focal``                   sigmoid_focal_loss, softmax_focal_loss, poly_loss,
                            sigmoid_focal_loss_star
``noise_robust``            generalized_cross_entropy
``brier_score``             brier_score
``fenchel_young``           sparsemax_loss, multiclass_sparsemax_loss, and the factory
                            make_fenchel_young_loss (not in the catalog)
``margin``                  hinge, squared_hinge, multiclass_hinge, perceptron,
                            soft_margin (soft_margin_loss), hinge_embedding
                            (hinge_embedding_loss), multiclass_perceptron
``multilabel``              multilabel_margin (multilabel_margin_loss),
                            multilabel_soft_margin (multilabel_soft_margin_loss),
                            asymmetric_loss
``divergence``              kl_divergence, softmax_kl_divergence, js_divergence
``distillation``            generalized_jsd, tvd_loss (token-level, student vs teacher logits)
``linear_distillation``     linear_generalized_jsd (generalized JSD + CE through both heads)
``overlap``                 dice_loss, tversky_loss, jaccard_loss, focal_tversky_loss,
                            generalized_dice_loss (generalized_dice), mcc_loss
``lovasz``                  lovasz_hinge, lovasz_softmax
``boxes``                   iou_loss, giou_loss, diou_loss, ciou_loss, eiou_loss,
                            focal_eiou_loss, siou_loss, wiou_loss, mpdiou_loss, inner_iou_loss
``metric_learning``         contrastive, triplet_margin, margin_ranking, cosine_embedding
``metric_mining``           batch_triplet_loss, batch_contrastive_loss, multi_similarity_loss,
                            circle_loss (in-batch pairs of (embeddings, labels), in blocks)
``margin_heads``            arcface_loss, cosface_loss (normalised features and class weights)
``ctc``                     ctc_loss (connectionist temporal classification)
``self_supervised``         info_nce (nt_xent_loss), clip_loss, siglip_loss, supcon_loss
``ranking``                 pairwise_logistic_loss (ranknet_loss), lambdarank_loss,
                            ranking_softmax_loss (listnet_loss), listmle_loss
``policy_gradient``         grpo_loss (GRPO, BNPO, Dr. GRPO, DAPO, CISPO; token or sequence
                            importance sampling)
``linear_policy_gradient``  linear_grpo_loss (grpo_loss fused with a linear head, in blocks)
``preference``              dpo_loss (DPO and TRL's variants: hinge, IPO, EXO, NCA, robust,
                            BCO, SPPO, AOT, APO, DiscoPOP; f-divergences)
``preference_odds``         simpo_loss, cpo_loss, orpo_loss (reference-free pairs), kto_loss
                            (unpaired desirable / undesirable sequences)
==========================  ===============================================================

Each loss is a :class:`losskit.core.loss.Loss` subclass whose ``_compute`` returns the
unreduced value and the closed-form gradient; the pipeline does the rest. A fused NumPy
kernel, where one exists, lives in :mod:`losskit.kernels.fast_paths` and is registered at
the end of the loss's module. Tests: ``tests/losses/test_<module>.py`` and the reference
cases of ``tests/cases/``. The losses are re-exported as ``losskit.NAME``; this package
re-exports nothing (its modules keep their names).
"""
