"""Fused CPU kernels for NumPy arrays (and CPU torch tensors, zero-copy): one driver per
family, each loss stating its math once.

``pointwise``, ``pointwise_numba``  elementwise losses: a loss's ``core.formula.Formula``
                                    compiled into one fused loop (huber, smooth_l1, log_cosh,
                                    quantile, poisson_nll, gaussian_nll, hinge, squared_hinge,
                                    binary_cross_entropy)
``rows``, ``rows_numba``            a per-row function over the class axis (softmax CE with
                                    every option, nll, cross_entropy, brier, focal, poly,
                                    multiclass_hinge, KL, softmax KL, JS)
``boxes``, ``boxes_numba``          a per-box function of the 8 coordinates (every box loss)
``pairs``, ``pairs_numba``          a per-row function of 2 or 3 embeddings, every ``wrt``
                                    from one sweep (contrastive, triplet, cosine, ranking)
``overlap``, ``overlap_numba``      per (sample, class) sums, then the gradient (dice,
                                    tversky, jaccard)
``ranking``                         per block of lists, NumPy only: pair sums (ranknet,
                                    lambdarank), a softmax, ListMLE by sorts (no numba)
``fast_paths``                      the hand-tuned kernels of the hottest losses, the shared
                                    plumbing (engine choice, reduction, ``out=``) and
                                    ``STATS``
``mining``, ``mining_numba``        blocks of anchors of the in-batch metric losses: one
                                    matrix product for the similarities, fused passes over
                                    the pairs (batch_contrastive, hard-mined
                                    batch_triplet, multi_similarity, circle), the array
                                    formulas elsewhere; the margin heads' blocks
``distillation_numba``              the per-row step of ``linear_generalized_jsd``'s blocks
                                    (two softmaxes, the JSD, the hard cross-entropy)
``numba_kernels``                   the hand-tuned numba kernels and the vectorisable
                                    ``exp``/``log`` the families share
``gradient_cache``                  reuse of large gradient buffers between training steps

Each ``*_numba`` module is imported on first use (``import losskit`` never imports numba).
The loss modules register their kernels with :mod:`losskit.core.dispatch`. The generic
Array-API kernels (each loss's ``_compute`` in :mod:`losskit.losses`) are the reference:
every driver is tested equal to them up to rounding (``tests/kernels``).
"""

from .gradient_cache import clear_gradient_cache

__all__ = ["clear_gradient_cache"]
