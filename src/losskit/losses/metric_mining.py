r"""In-batch metric-learning losses: ``(embeddings, labels)``, every pair of the batch.

Unlike :mod:`losskit.losses.metric_learning`, whose losses take explicit pairs or
triplets, these take one batch of embeddings ``(N, D)`` and their class labels ``(N,)``
and form the pairs themselves: for each **anchor** :math:`i`, its *positives* (the other
embeddings of its class) and its *negatives* (every embedding of another class).

* :data:`batch_triplet_loss` -- the triplet loss over the triplets of the batch, with
  ``mining="all"``, ``"hard"`` (batch-hard) or ``"semihard"``;
* :data:`batch_contrastive_loss` -- the contrastive (pair) loss on all pairs;
* :data:`multi_similarity_loss` -- Wang et al.'s multi-similarity loss;
* :data:`circle_loss` -- Sun et al.'s circle loss.

**Values and reductions.** ``reduction="none"`` gives one value per anchor, the **sum**
of that anchor's terms (its triplets, its pairs; one term for multi-similarity and
circle). ``"sum"`` is the sum over anchors and ``"batchmean"`` divides it by N.
``"mean"`` is an average of the **terms**, chosen by ``average``:

* ``average="nonzero"``: the sum of the terms over the number of non-zero terms
  (pytorch-metric-learning's ``AvgNonZeroReducer``, the default of its triplet,
  contrastive and circle losses);
* ``average="all"``: over the number of terms (its ``MeanReducer``; for the
  multi-similarity and circle losses, one term per anchor: the mean over the N anchors).

``batch_contrastive_loss`` averages its positive and its negative pairs separately and
adds the two means, as pytorch-metric-learning does. A mean over nothing is 0 with a zero
gradient. The number of non-zero terms changes only where a term crosses 0, so it is held
fixed in the gradient (as autodiff does).

**Sample weights** ``(N,)`` (or one number) weight each anchor's terms: the weighted
``"mean"`` is :math:`\sum_i s_i \ell_i / \sum_i s_i c_i` with :math:`c_i` the anchor's
(non-zero) term count. The embedding of example :math:`j` also appears in the terms of
other anchors, so its gradient is the gradient of the weighted total, not a row scaled by
:math:`s_j`. Repeating an example is **not** the same as weighting it (the copy would
be a positive of the original).

**Mining and gradients.** Which triplets are hard or semi-hard depends on the embeddings;
the gradient is the exact gradient of the loss with the selection held fixed, which is
what autodiff gives almost everywhere. Exactly tied hardest positives or negatives share
the gradient equally.

**Distances and normalisation.** ``distance="euclidean"`` is
:math:`\lVert u_i - u_j \rVert_2` and ``"cosine"`` is :math:`1 - u_i \cdot u_j`, where
:math:`u = x / \max(\lVert x \rVert, 10^{-12})` when ``normalize=True`` (the default, as
pytorch-metric-learning's ``LpDistance`` and FaceNet's unit hypersphere) and :math:`u = x`
otherwise (``"cosine"`` always normalises). The gradient goes through the normalisation:
:math:`\partial/\partial x = (g - u (u \cdot g)) / \lVert x \rVert`.

**Memory.** On NumPy the ``N x N`` distance matrix never exists: anchors are processed in
blocks of rows (:mod:`losskit.kernels.mining`); the triplets of an anchor are summed by
one sort of its distances, in :math:`O(N \log N)`, never enumerated.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.arrays import as_array, compute_dtype, device_of, ensure_array, quiet
from ..core.loss import Context, Loss, check_out, register
from ..core.primitives import _weighted
from ..core.validation import (check_choice, check_floating, check_numeric, check_scalar,
                               deferred_checks, poison)
from ..kernels import mining as _mining

__all__ = ["batch_triplet_loss", "batch_contrastive_loss", "multi_similarity_loss",
           "circle_loss"]

_AVERAGES = ("nonzero", "all")
_DISTANCES = ("euclidean", "cosine")


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; got {value!r}")
    return bool(value)


def _finite(name: str, value, **bounds) -> float:
    v = check_scalar(name, value, **bounds)
    if math.isinf(v):
        raise ValueError(f"`{name}` must be finite; got {value!r}")
    return v


class _BatchLoss(Loss):
    """A loss whose per-example values share inputs (every anchor's terms involve the
    whole batch, or a class-weight matrix): the sample weights and the reduction are folded
    into the kernel's coefficients before the gradient's matrix products.

    Subclasses implement ``_prepare(ctx, first, *others, **options) -> dict`` (validation;
    the dict has ``n``, the batch size) and ``_terms(ctx, prepared, sw, need_grad, wrt)
    -> (components, grads)``: per component ``(value, nonzero, count)`` of shape (n,),
    and per differentiable input a list (one per component) of gradients of
    ``sum_i sw_i value_i``.
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    not_streamable = ("each example's loss involves the other examples of its batch "
                      "(in-batch pairs), so the batch cannot be split into blocks of rows")

    def _average(self, opts) -> str:
        return opts.get("average", "all")

    def _pipeline(self, arrays, reduction, sample_weight, options, want, wrt, out=None):
        names = self.inputs
        xp, reduction, sample_weight, opts, need_grad, wrt_names, as_tuple = \
            self._own_pipeline_setup(arrays, reduction, sample_weight, options, want, wrt, out)
        with quiet():
            first = as_array(arrays[0], xp, name=names[0], loss=self.name)
            check_floating(xp, names[0], first, loss=self.name)
            dtype = first.dtype
            work = compute_dtype(xp, dtype)
            if work != dtype:
                first = xp.astype(first, work)
            ctx = Context(xp=xp, dtype=dtype, work=work, device=device_of(first),
                          loss=self.name)
            with deferred_checks() as pending:
                prepared = self._prepare(ctx, first, *arrays[1:], **opts)
                n = prepared["n"]
                sw = (None if sample_weight is None else
                      self._sample_weight(ctx, sample_weight, (n,)))
            comps, grads = self._terms(ctx, prepared, sw, need_grad, wrt_names)
            return self._finish(ctx, prepared, comps, grads, sw, reduction, opts, pending,
                                want, wrt_names, as_tuple, out)

    def _finish(self, ctx, prepared, comps, grads, sw, reduction, opts, pending, want,
                wrt_names, as_tuple, out):
        xp, dtype = ctx.xp, ctx.dtype
        n = prepared["n"]
        values = [c[0] if sw is None else _weighted(xp, sw, c[0]) for c in comps]
        per_anchor = values[0]
        for v in values[1:]:
            per_anchor = per_anchor + v
        scales = None  # per component, for "mean"
        if reduction == "none":
            result = per_anchor
            factor = None
        else:
            result = xp.sum(per_anchor)
            factor = None
            if reduction == "batchmean":
                factor = 1.0 / n if n else 0.0
                result = result * factor
            elif reduction == "mean":
                pick = 1 if self._average(opts) == "nonzero" else 2
                scales, result = [], None
                for c, v in zip(comps, values):
                    w = c[pick] if sw is None else sw * c[pick]
                    total = xp.sum(w)
                    ok = total != 0
                    a = xp.where(ok, 1.0 / xp.where(ok, total, xp.ones_like(total)),
                                 xp.zeros_like(total))
                    part = xp.where(a != 0, xp.sum(v) * a, xp.zeros_like(a))
                    scales.append(a)
                    result = part if result is None else result + part
        if result.dtype != dtype:
            result = xp.astype(result, dtype)
        if pending:
            (result,) = poison(xp, pending, result)
        result = ensure_array(result)
        if want == "value":
            return result
        gathered = []
        for name in wrt_names:
            parts = grads[name]
            if scales is not None:
                g = None
                for a, gp in zip(scales, parts):
                    term = xp.where(a != 0, gp * a, xp.zeros_like(gp))
                    g = term if g is None else g + term
            else:
                g = parts[0]
                for gp in parts[1:]:
                    g = g + gp
                if factor is not None:
                    g = g * factor if factor else xp.zeros_like(g)
            if g.dtype != dtype:
                g = xp.astype(g, dtype)
            if pending:
                (g,) = poison(xp, pending, g)
            gathered.append(g)
        if out is not None:
            check_out(out, tuple(gathered[0].shape), dtype, xp, wrt_names[0])
            if isinstance(out, np.ndarray):
                np.copyto(out, gathered[0])
            else:
                out[...] = gathered[0]
            gathered[0] = out
        grad = tuple(gathered) if as_tuple else gathered[0]
        if want == "grad":
            return grad
        return result, grad

    def _compute(self, ctx, *arrays, need_grad, **options):
        raise NotImplementedError(f"{self.name} runs its own _pipeline")


class _InBatchEmbeddingLoss(_BatchLoss):
    inputs = ("embeddings", "labels")
    differentiable = ("embeddings",)
    family = "metric_learning"
    prediction = "embeddings (N, D)"
    target = "class labels (N,)"
    _kind = ""

    def _prepare(self, ctx, x, labels, **opts):
        xp = ctx.xp
        if x.ndim != 2:
            raise ValueError(f"`embeddings` of {ctx.loss} must be a 2-d array (N, D), one "
                             f"embedding per row; got shape {tuple(x.shape)}")
        y = ctx.asarray(labels, "labels")
        check_numeric(xp, "labels", y)
        if tuple(y.shape) != (x.shape[0],):
            raise ValueError(f"`labels` of {ctx.loss} must have shape ({x.shape[0]},), one "
                             f"class label per embedding; got {tuple(y.shape)}")
        return {"n": x.shape[0], "x": x, "y": y, "opts": self._options_of(opts)}

    def _terms(self, ctx, prepared, sw, need_grad, wrt):
        o = prepared["opts"]
        comps, grads = _mining.embedding_terms(
            ctx.xp, prepared["x"], prepared["y"], sw, kind=self._kind, opts=o,
            distance=o.get("distance", "cosine"), normalize=o.get("normalize", True),
            need_grad=need_grad)
        return comps, {"embeddings": grads}


def _check_common(opts, *, distance=True):
    out = {}
    check_choice("average", opts["average"], _AVERAGES)
    out["average"] = opts["average"]
    if distance:
        check_choice("distance", opts["distance"], _DISTANCES)
        out["distance"] = opts["distance"]
        out["normalize"] = _check_bool("normalize", opts["normalize"])
    return out


# ---------------------------------------------------------------------------- losses
class BatchTripletLoss(_InBatchEmbeddingLoss):
    r"""Triplet loss over the triplets of a batch, with in-batch mining.

    For an anchor :math:`a`, a positive :math:`p` (same label) and a negative :math:`n`
    (another label), with distances :math:`d`:

    .. math::

        \ell_{apn} = \max\bigl(0,\ d(a, p) - d(a, n) + m\bigr)

    The anchor's value is the sum over its mined triplets:

    * ``mining="all"``: every (positive, negative) pair of the anchor;
    * ``mining="hard"``: the *batch-hard* triplet, the farthest positive and the closest
      negative (Hermans et al.), one triplet per anchor that has both;
    * ``mining="semihard"``: the triplets whose negative is farther than the positive but
      inside the margin, :math:`0 < d(a,n) - d(a,p) < m` (pytorch-metric-learning's
      ``TripletMarginMiner(type_of_triplets="semihard")``, all of them).

    Parameters
    ----------
    embeddings : floating array of shape (N, D)
        One embedding per row.
    labels : array of shape (N,)
        Class labels (any numbers; equal labels make positives).
    margin : float, default 0.2
        :math:`m > 0`; FaceNet uses 0.2 on unit vectors, pytorch-metric-learning 0.05.
    mining : {"all", "hard", "semihard"}, default "all"
        Which triplets of each anchor count.
    distance : {"euclidean", "cosine"}, default "euclidean"
        :math:`\lVert u_a - u_p \rVert_2` or :math:`1 - u_a \cdot u_p`.
    normalize : bool, default True
        Divide the embeddings by their L2 norms first (``"cosine"`` always does).
    average : {"nonzero", "all"}, default "nonzero"
        What ``reduction="mean"`` divides the sum of the terms by: the number of non-zero
        triplet terms (pytorch-metric-learning's default) or of mined triplets.
    {common_parameters}

    Returns
    -------
    array
        Per anchor, shape (N,) (the sum of its triplet terms), with ``reduction="none"``;
        else 0-d. ``.grad`` has the shape of ``embeddings``.

    Raises
    ------
    ValueError
        Embeddings that are not 2-d, labels of another shape, ``margin <= 0``, an unknown
        ``mining``, ``distance`` or ``average``.
    TypeError
        Non-floating embeddings, non-numeric labels.

    Notes
    -----
    With :math:`[\cdot]` the indicator of an active term,

    .. math::

        \frac{\partial L}{\partial d(a,p)} = \sum_n [\ell_{apn} > 0], \qquad
        \frac{\partial L}{\partial d(a,n)} = -\sum_p [\ell_{apn} > 0],

    and :math:`\partial d(a,p) / \partial u_a = (u_a - u_p) / d(a, p)` (Euclidean) or
    :math:`-u_p` (cosine), then through the normalisation. The mined set is held fixed
    (the exact gradient almost everywhere). For ``"all"`` and ``"semihard"`` the counts
    and sums come from one sort of the anchor's distances per anchor (never the
    :math:`N^3` triplets).

    **pytorch-metric-learning.** ``TripletMarginLoss(margin=m)`` is
    ``batch_triplet_loss(x, y, margin=m)`` (mining "all", Euclidean on normalised
    embeddings, non-zero average); with ``BatchHardMiner()`` it is ``mining="hard"``,
    with ``TripletMarginMiner(margin=m, type_of_triplets="semihard")`` ``mining=
    "semihard"``; ``distance=CosineSimilarity()`` is ``distance="cosine"``;
    ``reducer=MeanReducer()`` is ``average="all"``.

    References
    ----------
    .. [1] F. Schroff, D. Kalenichenko, J. Philbin, "FaceNet: A unified embedding for face
       recognition and clustering", CVPR 2015, arXiv:1503.03832.
    .. [2] A. Hermans, L. Beyer, B. Leibe, "In defense of the triplet loss for person
       re-identification", arXiv:1703.07737, 2017.
    .. [3] K. Musgrave, S. Belongie, S.-N. Lim, "PyTorch Metric Learning",
       arXiv:2008.09164, 2020.

    Examples
    --------
    Four points on a line, two classes; with ``normalize=False`` the distances are plain
    differences. Anchor 0 (at 0) has positive 1 (at 1) and negatives at 1.5 and 3: only
    the first triplet is active, :math:`1 - 1.5 + 1 = 0.5`; anchor 2 (at 1.5, positive at
    3) has two active triplets, :math:`(1.5 - 1.5 + 1) + (1.5 - 0.5 + 1) = 3`:

    >>> import numpy as np, losskit as lk
    >>> x = np.array([[0.0], [1.0], [1.5], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> lk.batch_triplet_loss(x, y, margin=1.0, normalize=False, reduction="none")
    array([0.5, 1.5, 3. , 0.5])
    """

    name = "batch_triplet_loss"
    _kind = "triplet"
    formula = (r"\ell_a = \sum_{(p, n) \in \mathcal{M}(a)} \max(0, d(a,p) - d(a,n) + m)")
    gradient_formula = (r"\frac{\partial \ell_a}{\partial d(a,p)} = \sum_n [\text{active}_{apn}],\ "
                        r"\frac{\partial \ell_a}{\partial d(a,n)} = -\sum_p [\text{active}_{apn}]")
    when_to_use = (
        "Training an embedding for retrieval, face recognition or re-identification from "
        "class-labelled batches: every anchor must be closer to its positives than to its "
        "negatives by a margin. Batch-hard mining (Hermans et al.) is the strong default "
        "for P x K batches; 'all' with the non-zero average is pytorch-metric-learning's."
    )
    references = (
        "Schroff, Kalenichenko, Philbin, FaceNet, CVPR 2015, arXiv:1503.03832",
        "Hermans, Beyer, Leibe, In defense of the triplet loss for person "
        "re-identification, arXiv:1703.07737",
        "Musgrave, Belongie, Lim, PyTorch Metric Learning, arXiv:2008.09164",
    )

    def _options_of(self, opts):
        out = _check_common(opts)
        out["margin"] = _finite("margin", opts["margin"], lo=0.0, lo_open=True)
        check_choice("mining", opts["mining"], ("all", "hard", "semihard"))
        out["mining"] = opts["mining"]
        return out

    def _compute(self, ctx, embeddings, labels, *, need_grad, margin=0.2, mining="all",
                 distance="euclidean", normalize=True, average="nonzero"):
        raise NotImplementedError(f"{self.name} runs its own _pipeline")


class BatchContrastiveLoss(_InBatchEmbeddingLoss):
    r"""Contrastive loss on every pair of a batch (pytorch-metric-learning's form).

    For a positive pair (same label) and a negative pair (different labels) at distance
    :math:`d`:

    .. math::

        \ell^{+} = \max(0,\ d - m_{+}), \qquad \ell^{-} = \max(0,\ m_{-} - d)

    Positives are pulled within :math:`m_+`, negatives pushed beyond :math:`m_-`. Each
    ordered pair :math:`(i, j)`, :math:`i \ne j`, belongs to anchor :math:`i` (so every
    unordered pair counts twice, as in pytorch-metric-learning).

    Parameters
    ----------
    embeddings : floating array of shape (N, D)
        One embedding per row.
    labels : array of shape (N,)
        Class labels.
    pos_margin : float, default 0
        :math:`m_+ \ge 0`: positive pairs closer than this cost nothing.
    neg_margin : float, default 1
        :math:`m_-`: negative pairs farther than this cost nothing.
    distance : {"euclidean", "cosine"}, default "euclidean"
        :math:`\lVert u_i - u_j \rVert_2` or :math:`1 - u_i \cdot u_j`.
    normalize : bool, default True
        Divide the embeddings by their L2 norms first (``"cosine"`` always does).
    average : {"nonzero", "all"}, default "nonzero"
        ``reduction="mean"`` is the mean of the positive-pair terms plus the mean of the
        negative-pair terms, each over its non-zero terms (pytorch-metric-learning's
        default) or over all its pairs.
    {common_parameters}

    Returns
    -------
    array
        Per anchor, shape (N,) (the sum of its pair terms), with ``reduction="none"``;
        else 0-d.

    Raises
    ------
    ValueError
        Embeddings that are not 2-d, labels of another shape, a negative or infinite
        margin, an unknown ``distance`` or ``average``.
    TypeError
        Non-floating embeddings, non-numeric labels.

    Notes
    -----
    .. math::

        \frac{\partial L}{\partial d_{ij}} = [\text{positive}]\,[d_{ij} > m_+]
        - [\text{negative}]\,[d_{ij} < m_-]

    (the subgradient 0 at the kinks), then :math:`\partial d / \partial u` and the
    normalisation as for :data:`batch_triplet_loss`. The two means are each over a count
    held fixed in the gradient.

    **Conventions.** This is not :data:`losskit.contrastive` (Hadsell et al.'s squared
    form on explicit pairs). pytorch-metric-learning's ``ContrastiveLoss(pos_margin=a,
    neg_margin=b)`` is ``batch_contrastive_loss(x, y, pos_margin=a, neg_margin=b)``; with
    ``distance=CosineSimilarity()`` its margins are similarities: use
    ``distance="cosine", pos_margin=1 - a, neg_margin=1 - b``.

    References
    ----------
    .. [1] R. Hadsell, S. Chopra, Y. LeCun, "Dimensionality reduction by learning an
       invariant mapping", CVPR 2006, doi:10.1109/CVPR.2006.100.
    .. [2] K. Musgrave, S. Belongie, S.-N. Lim, "PyTorch Metric Learning",
       arXiv:2008.09164, 2020.

    Examples
    --------
    Three points on a line, ``normalize=False``: the positive pair (0, 1) at distance 1
    costs 1 from each end; the negatives at distance 3 and 2 cost nothing with
    :math:`m_- = 1`:

    >>> import numpy as np, losskit as lk
    >>> x = np.array([[0.0], [1.0], [3.0]]); y = np.array([0, 0, 1])
    >>> lk.batch_contrastive_loss(x, y, normalize=False, reduction="none")
    array([1., 1., 0.])
    """

    name = "batch_contrastive_loss"
    _kind = "contrastive"
    formula = (r"\ell_i = \sum_{j: y_j = y_i} \max(0, d_{ij} - m_+) + "
               r"\sum_{j: y_j \ne y_i} \max(0, m_- - d_{ij})")
    gradient_formula = (r"\frac{\partial \ell}{\partial d_{ij}} = [y_i = y_j][d_{ij} > m_+]"
                        r" - [y_i \ne y_j][d_{ij} < m_-]")
    when_to_use = (
        "Learning an embedding from class-labelled batches with the simplest pair "
        "objective: same-class pairs within a margin, other-class pairs beyond another. "
        "Strong with a good margin and a miner; the positive and negative means are "
        "balanced separately, as in pytorch-metric-learning."
    )
    references = (
        "Hadsell, Chopra, LeCun, Dimensionality reduction by learning an invariant "
        "mapping, CVPR 2006, doi:10.1109/CVPR.2006.100",
        "Musgrave, Belongie, Lim, PyTorch Metric Learning, arXiv:2008.09164",
    )

    def _options_of(self, opts):
        out = _check_common(opts)
        out["pos_margin"] = _finite("pos_margin", opts["pos_margin"], lo=0.0)
        out["neg_margin"] = _finite("neg_margin", opts["neg_margin"])
        return out

    def _compute(self, ctx, embeddings, labels, *, need_grad, pos_margin=0.0,
                 neg_margin=1.0, distance="euclidean", normalize=True, average="nonzero"):
        raise NotImplementedError(f"{self.name} runs its own _pipeline")


class MultiSimilarityLoss(_InBatchEmbeddingLoss):
    r"""Multi-similarity loss of Wang et al. (2019) on the cosine similarities of a batch.

    With :math:`S_{ij} = u_i \cdot u_j` (unit vectors), positives :math:`P_i` and
    negatives :math:`N_i` of anchor :math:`i`:

    .. math::

        \ell_i = \frac{1}{\alpha} \log\Bigl(1 + \sum_{p \in P_i}
        e^{-\alpha (S_{ip} - \lambda)}\Bigr) + \frac{1}{\beta} \log\Bigl(1 +
        \sum_{n \in N_i} e^{\beta (S_{in} - \lambda)}\Bigr)

    Parameters
    ----------
    embeddings : floating array of shape (N, D)
        One embedding per row (normalised by the loss).
    labels : array of shape (N,)
        Class labels.
    alpha : float, default 2
        :math:`\alpha > 0`, the positive pairs' temperature.
    beta : float, default 50
        :math:`\beta > 0`, the negative pairs' temperature.
    base : float, default 0.5
        :math:`\lambda`, the similarity the pairs are compared with.
    average : {"nonzero", "all"}, default "all"
        ``reduction="mean"``: over all anchors (pytorch-metric-learning's ``MeanReducer``,
        its default for this loss) or over the anchors with a non-zero value.
    {common_parameters}

    Returns
    -------
    array
        Per anchor, shape (N,), with ``reduction="none"``; else 0-d.

    Raises
    ------
    ValueError
        Embeddings that are not 2-d, labels of another shape, non-positive temperatures.
    TypeError
        Non-floating embeddings, non-numeric labels.

    Notes
    -----
    With :math:`w^+_{ip}` and :math:`w^-_{in}` the softmax weights of the two
    log-sum-exps (the extra 1 a zero logit):

    .. math::

        \frac{\partial \ell_i}{\partial S_{ip}} = -w^+_{ip}, \qquad
        \frac{\partial \ell_i}{\partial S_{in}} = w^-_{in},

    and :math:`\partial S_{ij} / \partial u_i = u_j`, then through the normalisation. The
    paper also mines pairs before the loss; this is the loss on every pair, as
    pytorch-metric-learning's ``MultiSimilarityLoss(alpha, beta, base)`` (equal to it
    with the default options; combine with a miner for the paper's scheme).

    References
    ----------
    .. [1] X. Wang, X. Han, W. Huang, D. Dong, M. R. Scott, "Multi-similarity loss with
       general pair weighting for deep metric learning", CVPR 2019, arXiv:1904.06627.

    Examples
    --------
    Two orthogonal unit vectors of different classes: each anchor has no positive and one
    negative at similarity 0, so :math:`\ell = \log(1 + e^{-\beta/2})/\beta`:

    >>> import numpy as np, losskit as lk
    >>> x = np.eye(2); y = np.array([0, 1])
    >>> v = lk.multi_similarity_loss(x, y, beta=2.0, reduction="none")
    >>> bool(np.allclose(v, np.log1p(np.exp(-1.0)) / 2))
    True
    """

    name = "multi_similarity_loss"
    _kind = "multi_similarity"
    formula = (r"\ell_i = \tfrac{1}{\alpha}\log(1 + \sum_{p} e^{-\alpha(S_{ip} - \lambda)}) "
               r"+ \tfrac{1}{\beta}\log(1 + \sum_{n} e^{\beta(S_{in} - \lambda)})")
    gradient_formula = (r"\frac{\partial \ell_i}{\partial S_{ip}} = -w^+_{ip},\ "
                        r"\frac{\partial \ell_i}{\partial S_{in}} = w^-_{in}")
    when_to_use = (
        "Deep metric learning for image retrieval (CUB, Cars, SOP) from class-labelled "
        "batches: every pair is weighted by its own and its neighbours' similarities, "
        "soft-mining hard pairs without a separate miner. Works on cosine similarities "
        "of normalised embeddings."
    )
    references = (
        "Wang, Han, Huang, Dong, Scott, Multi-similarity loss with general pair "
        "weighting for deep metric learning, CVPR 2019, arXiv:1904.06627",
    )

    def _options_of(self, opts):
        out = _check_common(opts, distance=False)
        out["alpha"] = _finite("alpha", opts["alpha"], lo=0.0, lo_open=True)
        out["beta"] = _finite("beta", opts["beta"], lo=0.0, lo_open=True)
        out["base"] = _finite("base", opts["base"])
        return out

    def _compute(self, ctx, embeddings, labels, *, need_grad, alpha=2.0, beta=50.0,
                 base=0.5, average="all"):
        raise NotImplementedError(f"{self.name} runs its own _pipeline")


class CircleLoss(_InBatchEmbeddingLoss):
    r"""Circle loss of Sun et al. (2020) on the cosine similarities of a batch.

    With :math:`S_{ij} = u_i \cdot u_j`, :math:`O_p = 1 + m`, :math:`O_n = -m`,
    :math:`\Delta_p = 1 - m`, :math:`\Delta_n = m` and the weights
    :math:`\alpha_p = [O_p - S]_+`, :math:`\alpha_n = [S - O_n]_+`:

    .. math::

        \ell_i = \operatorname{softplus}\Bigl(\log \sum_{n \in N_i}
        e^{\gamma \alpha_n (S_{in} - \Delta_n)} + \log \sum_{p \in P_i}
        e^{-\gamma \alpha_p (S_{ip} - \Delta_p)}\Bigr)

    (0 for an anchor without a positive or without a negative).

    Parameters
    ----------
    embeddings : floating array of shape (N, D)
        One embedding per row (normalised by the loss).
    labels : array of shape (N,)
        Class labels.
    margin : float, default 0.4
        The relaxation :math:`m` (0.25 for faces in the paper).
    gamma : float, default 80
        The scale :math:`\gamma > 0` (256 for faces in the paper).
    detach_weights : bool, default True
        Treat :math:`\alpha_p, \alpha_n` as constants in the gradient, as the paper
        prescribes and its and pytorch-metric-learning's code do (``.detach()``): the
        gradient is then **not** the derivative of the value. ``False`` gives the exact
        derivative.
    average : {"nonzero", "all"}, default "nonzero"
        ``reduction="mean"``: over the anchors with a non-zero value
        (pytorch-metric-learning's default for this loss) or over all anchors.
    {common_parameters}

    Returns
    -------
    array
        Per anchor, shape (N,), with ``reduction="none"``; else 0-d.

    Raises
    ------
    ValueError
        Embeddings that are not 2-d, labels of another shape, ``gamma <= 0``.
    TypeError
        Non-floating embeddings, non-numeric labels, a non-bool ``detach_weights``.

    Notes
    -----
    With :math:`\sigma` the logistic function of the softplus argument :math:`z` and
    :math:`w_p, w_n` the softmax weights of the two log-sum-exps:

    .. math::

        \frac{\partial \ell}{\partial S_{ip}} = -\sigma(z)\, w_p\, \gamma\, \alpha_p,
        \qquad \frac{\partial \ell}{\partial S_{in}} = \sigma(z)\, w_n\, \gamma\, \alpha_n

    with ``detach_weights=True``; the exact derivative adds
    :math:`\gamma (S_{ip} - \Delta_p)[O_p > S_{ip}]` and
    :math:`\gamma (S_{in} - \Delta_n)[S_{in} > O_n]` inside the brackets. Then
    :math:`\partial S / \partial u` and the normalisation. pytorch-metric-learning's
    ``CircleLoss(m, gamma)`` is ``circle_loss(x, y, margin=m, gamma=gamma)``.

    References
    ----------
    .. [1] Y. Sun, C. Cheng, Y. Zhang, C. Zhang, L. Zheng, Z. Wang, Y. Wei, "Circle loss:
       A unified perspective of pair similarity optimization", CVPR 2020,
       arXiv:2002.10857.

    Examples
    --------
    Two equal vectors of one class and an orthogonal one of another: anchor 0 has
    :math:`S_p = 1` (:math:`\alpha_p = m`, logit :math:`-\gamma m^2`) and :math:`S_n = 0`
    (:math:`\alpha_n = m`, logit :math:`-\gamma m^2`); the third anchor has no positive:

    >>> import numpy as np, losskit as lk
    >>> x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]); y = np.array([0, 0, 1])
    >>> v = lk.circle_loss(x, y, margin=0.5, gamma=4.0, reduction="none")
    >>> bool(np.allclose(v, [np.log1p(np.exp(-2.0))] * 2 + [0.0]))
    True
    """

    name = "circle_loss"
    _kind = "circle"
    formula = (r"\ell_i = \operatorname{softplus}(\log\sum_n e^{\gamma\alpha_n(S_{in} - "
               r"\Delta_n)} + \log\sum_p e^{-\gamma\alpha_p(S_{ip} - \Delta_p)})")
    gradient_formula = (r"\frac{\partial \ell}{\partial S_{ip}} = -\sigma(z) w_p \gamma "
                        r"\alpha_p,\ \frac{\partial \ell}{\partial S_{in}} = \sigma(z) w_n "
                        r"\gamma \alpha_n\ (\alpha\ \text{held constant})")
    when_to_use = (
        "Face recognition, person re-identification and fine-grained retrieval from "
        "class-labelled batches: a unified pair-similarity loss whose adaptive weights "
        "emphasise the pairs farthest from their optimum, with a circular decision "
        "boundary. Works on cosine similarities of normalised embeddings."
    )
    references = (
        "Sun et al., Circle loss: A unified perspective of pair similarity optimization, "
        "CVPR 2020, arXiv:2002.10857",
    )

    def _options_of(self, opts):
        out = _check_common(opts, distance=False)
        out["margin"] = _finite("margin", opts["margin"])
        out["gamma"] = _finite("gamma", opts["gamma"], lo=0.0, lo_open=True)
        out["detach_weights"] = _check_bool("detach_weights", opts["detach_weights"])
        return out

    def _compute(self, ctx, embeddings, labels, *, need_grad, margin=0.4, gamma=80.0,
                 detach_weights=True, average="nonzero"):
        raise NotImplementedError(f"{self.name} runs its own _pipeline")


batch_triplet_loss = register(BatchTripletLoss())
batch_contrastive_loss = register(BatchContrastiveLoss())
multi_similarity_loss = register(MultiSimilarityLoss())
circle_loss = register(CircleLoss())
