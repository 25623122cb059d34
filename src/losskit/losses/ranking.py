r"""Learning-to-rank losses: lists of items, each scored by the model and labelled with a
graded relevance, compared pair by pair or as whole lists.

* :data:`pairwise_logistic_loss` (``ranknet_loss``) -- RankNet's logistic loss on every
  pair of items with different labels (Burges et al. 2005);
* :data:`lambdarank_loss` -- the same pairs, each weighted by the change of NDCG that
  swapping the two items would cause (LambdaRank, Burges 2010);
* :data:`ranking_softmax_loss` (``listnet_loss``) -- the softmax cross-entropy of the
  list's scores against its labels (ListNet's top-one loss, Cao et al. 2007; Optax's
  ``ranking_softmax_loss``);
* :data:`listmle_loss` -- the Plackett-Luce negative log-likelihood of the ranking that
  sorts the labels (ListMLE, Xia et al. 2008).

**Shapes.** ``scores`` and ``labels`` have one shape ``(..., L)``: the items of a list
lie along the **last** axis, every other axis is a batch axis, and the loss is one value
per list, shape ``(...)`` (0-d for a single list of shape ``(L,)``).
``reduction="mean"`` averages the lists, ``"batchmean"`` divides the sum by the first
axis. Labels are real numbers (integer grades 0, 1, 2, ... or any floats; bool works as
0/1); only ``ranking_softmax_loss`` and ``lambdarank_loss`` use their values, the other
two only their order.

**Padding.** ``where`` is an optional boolean array of the scores' shape, False for the
padding items of lists shorter than ``L`` (Optax's name and convention). Padding items
take no part: neither their scores nor their labels are read (NaN there is fine) and
their gradient is 0. A list without any valid item costs 0 and is left out of the mean
(Optax's rule); every list with at least one valid item counts in the mean, also one
that has nothing to rank (every label equal), whose loss and gradient are 0. allRank
pads with the label -1: pass ``where=labels != -1``.

**Gradients** are the closed-form derivatives with respect to the scores. The losses
are convex in the scores except ``lambdarank_loss``, whose NDCG weights depend on the
ranking of the current scores: as in LambdaRank they are held fixed, and the gradient
is the exact gradient of the weighted pairwise loss with those weights (the "lambdas"
of Burges 2010). Between ties of the scores the weights are constant, so it is also the
derivative of the value there.

**Second order.** The scores of a list are coupled (``second_order = "dense"``):
``hessian`` is the exact diagonal of the Hessian with respect to the scores and ``hvp``
the exact product, list by list, 0 on padding items. The pairwise losses add
:math:`\sigma(d)\sigma(-d)(e_i - e_j)(e_i - e_j)^\top` per pair (``lambdarank_loss``
with its NDCG weights held fixed, as constants of the sorted order);
``ranking_softmax_loss`` is a softmax cross-entropy, :math:`Y(\operatorname{diag} p -
p p^\top)`; ``listmle_loss`` a sum of log-softmaxes over the suffixes of the label-sorted
list, :math:`\sum_k (\operatorname{diag} q_k - q_k q_k^\top)`. All four are positive
semi-definite.

**Cost.** The pairwise losses and ``listmle_loss`` form ``L x L`` pair arrays per list:
fine for lists of up to a few hundred items.
"""

from __future__ import annotations

import math

from ..core.arrays import can_inspect
from ..core.dispatch import register_fast_path
from ..core.loss import Loss, Terms, fill_doc, register
from ..core.primitives import _sigmoid, _softmax_hessian, _softplus
from ..core.validation import _dtype_name, check_numeric, defer_invalid, same_shape
from ..kernels import ranking as _kernels

__all__ = [
    "pairwise_logistic_loss",
    "ranknet_loss",
    "ranking_softmax_loss",
    "listnet_loss",
    "listmle_loss",
    "lambdarank_loss",
]

_LN2 = math.log(2.0)

_SHAPES = """\
scores : floating array of shape ``(..., L)``
    The model's score of every item; the items of a list lie along the last axis.
labels : array of shape ``(..., L)``
    Graded relevance of every item (higher is more relevant): integers, floats or bool;
    non-negative for ``ranking_softmax_loss`` and ``lambdarank_loss``.
where : bool array of shape ``(..., L)``, optional
    False for padding items, which take no part (their scores and labels are not read,
    their gradient is 0). ``None``: every item is valid."""

_RETURNS = """\
Returns
-------
array
    One value per list, shape ``scores.shape[:-1]`` (0-d for one list), with
    ``reduction="none"``; else 0-d. ``.grad`` has the scores' shape."""


# ---------------------------------------------------------------------------- inputs
def _check_scores(ctx, s):
    if s.ndim == 0:
        raise ValueError(
            f"`scores` of {ctx.loss} must have at least 1 axis (the items of a list lie "
            "along the last one: (N, L) for N lists, (L,) for one list); got a 0-d array")


def _valid(ctx, s, where):
    """The boolean padding mask (True: a valid item), or None when every item is valid."""
    if where is None:
        return None
    xp = ctx.xp
    m = ctx.asarray(where, "where")
    if m.dtype != xp.bool:
        raise TypeError(
            f"`where` of {ctx.loss} must be a boolean array (True for the items of a list, "
            f"False for padding); got {_dtype_name(m.dtype)}. Convert it explicitly, e.g. "
            "`where=mask.astype(bool)` or `where=labels != -1`")
    if not same_shape(m.shape, s.shape):
        raise ValueError(f"`where` of {ctx.loss} must have the shape of `scores` "
                         f"{tuple(s.shape)}; got {tuple(m.shape)}. Nothing is broadcast")
    return m


def _item_array(ctx, s, x, name: str, valid, *, nonnegative: bool, what: str):
    """``labels`` or ``weights``: the scores' shape, real, finite (and >= 0) on the valid
    items, in the compute dtype; 0 on the padding items."""
    xp = ctx.xp
    t = ctx.asarray(x, name)
    check_numeric(xp, name, t)
    if not same_shape(t.shape, s.shape):
        raise ValueError(f"`{name}` of {ctx.loss} must have the shape of `scores` "
                         f"{tuple(s.shape)} ({what} per item); got {tuple(t.shape)}. "
                         "Nothing is broadcast")
    t = t if t.dtype == ctx.work else xp.astype(t, ctx.work)
    bad = ~xp.isfinite(t)
    if nonnegative:
        bad = bad | (t < 0)
    if valid is not None:
        bad = bad & valid
    if math.prod(t.shape) and can_inspect(t) and can_inspect(bad):
        if bool(xp.any(bad)):
            need = "finite and non-negative" if nonnegative else "finite"
            raise ValueError(f"`{name}` of {ctx.loss} must be {need} on the valid items "
                             f"(those with `where` True); it has NaN, infinite"
                             f"{' or negative' if nonnegative else ''} values")
    elif math.prod(t.shape):
        defer_invalid(bad)
    if valid is not None:
        t = xp.where(valid, t, xp.zeros_like(t))
    return t


def _inputs(ctx, s, labels, where, *, nonnegative: bool):
    """(scores with padding set to 0, labels, valid mask or None, its float form or None)."""
    xp = ctx.xp
    _check_scores(ctx, s)
    valid = _valid(ctx, s, where)
    y = _item_array(ctx, s, labels, "labels", valid, nonnegative=nonnegative,
                    what="one relevance label")
    if valid is not None:
        s = xp.where(valid, s, xp.zeros_like(s))
        v = xp.astype(valid, ctx.work)
    else:
        v = None
    return s, y, valid, v


def _list_weight(ctx, valid):
    """The mean's denominator weight of every list: 1 with a valid item, 0 without."""
    if valid is None:
        return None
    return ctx.xp.astype(ctx.xp.any(valid, axis=-1), ctx.work)


def _terms(ctx, value, grad, valid):
    return Terms(value, grad, _list_weight(ctx, valid), _expand(ctx.xp))


def _empty_lists(ctx, s, valid, need_grad):
    """The terms of lists without items (L = 0): 0, with an empty gradient."""
    xp = ctx.xp
    return _terms(ctx, xp.sum(s, axis=-1), xp.zeros_like(s) if need_grad else None, valid)


def _expand(xp):
    def expand(a):
        return xp.expand_dims(a, axis=-1)
    return expand


def _rows(xp, a):
    """``a`` (..., L) as (..., L, 1): the item i of a pair (i, j)."""
    return xp.expand_dims(a, axis=-1)


def _cols(xp, a):
    """``a`` (..., L) as (..., 1, L): the item j of a pair (i, j)."""
    return xp.expand_dims(a, axis=-2)


def _before(ctx, n: int):
    """(L, L) bool: j < i (the tie-break of equal keys: the earlier item first)."""
    xp = ctx.xp
    idx = xp.arange(n, device=ctx.device)
    return xp.reshape(idx, (1, n)) < xp.reshape(idx, (n, 1))


def _positions(ctx, key, valid):
    r"""0-based position of every item when the valid items are sorted by ``key``
    descending, ties in index order (a stable sort): :math:`\#\{j: k_j > k_i\} + \#\{j < i:
    k_j = k_i\}` over the valid :math:`j`. Computed by comparisons (no sort)."""
    xp = ctx.xp
    ki, kj = _rows(xp, key), _cols(xp, key)
    ahead = (kj > ki) | ((kj == ki) & _before(ctx, key.shape[-1]))
    if valid is not None:
        ahead = ahead & _cols(xp, valid)
    return xp.sum(xp.astype(ahead, ctx.work), axis=-1)


def _pair_mask(ctx, y, valid):
    """(..., L, L) in the compute dtype: 1 for the pairs (i, j) with y_i > y_j, both valid."""
    xp = ctx.xp
    p = _rows(xp, y) > _cols(xp, y)
    if valid is not None:
        p = p & _rows(xp, valid) & _cols(xp, valid)
    return xp.astype(p, ctx.work)


def _pairwise_logistic(xp, s, w, need_grad):
    r"""Value :math:`\sum_{ij} w_{ij} \log(1 + e^{-(s_i - s_j)})` per list and its gradient
    :math:`\partial/\partial s_k = \sum_j a_{jk} - \sum_j a_{kj}`, :math:`a_{ij} = w_{ij}
    \sigma(-(s_i - s_j))`. Products, not selections: a NaN score reaches its list's value
    (through the diagonal pair, whose weight is 0)."""
    d = _rows(xp, s) - _cols(xp, s)
    value = xp.sum(w * _softplus(xp, -d), axis=(-2, -1))
    if not need_grad:
        return value, None
    a = w * _sigmoid(xp, -d)
    return value, xp.sum(a, axis=-2) - xp.sum(a, axis=-1)


def _pairwise_logistic_hessian(ctx, s, w):
    r"""Second order of :func:`_pairwise_logistic` with the weights ``w`` constant: every
    pair adds :math:`c_{ij} (e_i - e_j)(e_i - e_j)^\top` with :math:`c_{ij} = w_{ij}
    \sigma(d_{ij})\sigma(-d_{ij})`, so the diagonal is :math:`\sum_j c_{kj} + \sum_i
    c_{ik}` and :math:`(Hv)_k = H_{kk} v_k - \sum_j (c_{kj} + c_{jk}) v_j`."""
    xp = ctx.xp
    d = _rows(xp, s) - _cols(xp, s)
    c = w * (_sigmoid(xp, d) * _sigmoid(xp, -d))
    diag = xp.sum(c, axis=-1) + xp.sum(c, axis=-2)
    v = ctx.vector
    if v is None:
        return diag, None
    return diag, diag * v - xp.sum(c * _cols(xp, v), axis=-1) - xp.sum(c * _rows(xp, v),
                                                                       axis=-2)


_PAIR_NOTE = r"""The pairs are the ordered pairs :math:`(i, j)` of valid items with
:math:`y_i > y_j`; pairs of equal labels take no part, so a list whose labels are all
equal costs 0."""


# ---------------------------------------------------------------------------- losses
class _RankingLoss(Loss):
    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)
    family = "ranking"
    prediction = "scores of the items of each list (last axis)"
    target = "graded relevance labels, one per item (the scores' shape)"
    inputs = ("scores", "labels")
    differentiable = ("scores",)


class PairwiseLogistic(_RankingLoss):
    r"""Pairwise logistic loss of RankNet: every pair of differently labelled items.

    Every pair of items whose labels differ should be scored in the labels' order
    (Burges et al. 2005):

    .. math::

        \ell = \sum_{i, j:\ y_i > y_j} \log\bigl(1 + e^{-(s_i - s_j)}\bigr)

    per list: the cross-entropy of the modelled probability :math:`\sigma(s_i - s_j)` that
    item :math:`i` ranks above item :math:`j` against the target probability 1.

    Parameters
    ----------
    {shapes}
    {common_parameters}

    {returns}

    Raises
    ------
    ValueError
        0-d scores, labels or ``where`` of another shape, NaN or infinite labels on a
        valid item.
    TypeError
        Non-floating scores, non-numeric labels, a ``where`` that is not boolean.

    Notes
    -----
    With :math:`d_{ij} = s_i - s_j` and :math:`P_{ij} = [y_i > y_j]` (both items valid):

    .. math::

        \frac{\partial \ell}{\partial s_k} = \sum_{i} P_{ik}\,\sigma(-d_{ik})
        - \sum_{j} P_{kj}\,\sigma(-d_{kj})

    The loss is convex in the scores and unchanged by adding a constant to every score
    of a list. Each pair adds :math:`\sigma(d_{ij})\sigma(-d_{ij})\,(e_i - e_j)(e_i -
    e_j)^\top` to the Hessian, which couples the scores of a list:

    .. math::

        \frac{\partial^2 \ell}{\partial s_k^2} = \sum_{j} (P_{kj} + P_{jk})\,
        \sigma(d_{kj})\,\sigma(-d_{kj}), \qquad
        \frac{\partial^2 \ell}{\partial s_k \partial s_m} = -(P_{km} + P_{mk})\,
        \sigma(d_{km})\,\sigma(-d_{km}) \quad (k \ne m)

    {pair_note}

    The per-list value is the **sum** over its pairs (RankNet's cost). allRank's
    ``rankNet`` and TF-Ranking's ``PairwiseLogisticLoss`` (default reduction) average
    over every pair of the batch instead: ``lk.pairwise_logistic_loss(s, y,
    reduction="sum") / n_pairs`` with ``n_pairs`` the number of pairs :math:`y_i > y_j`
    of the batch (padding pairs excluded). Scores must be finite: an infinite or NaN
    score makes its list's loss and gradient NaN.

    References
    ----------
    .. [1] C. Burges, T. Shaked, E. Renshaw, A. Lazier, M. Deeds, N. Hamilton,
       G. Hullender, "Learning to rank using gradient descent", ICML 2005,
       doi:10.1145/1102351.1102363.

    Examples
    --------
    Two items with equal scores, the first one relevant: one pair, :math:`\log 2`, and
    the gradient :math:`\mp\sigma(0) = \mp 1/2`:

    >>> import numpy as np, losskit as lk
    >>> s = np.array([0.0, 0.0]); y = np.array([1.0, 0.0])
    >>> round(float(lk.pairwise_logistic_loss(s, y)), 6)
    0.693147
    >>> lk.pairwise_logistic_loss.grad(s, y)
    array([-0.5,  0.5])
    """

    name = "pairwise_logistic_loss"
    aliases = ("ranknet_loss",)
    formula = r"\ell = \sum_{i, j:\ y_i > y_j} \log\bigl(1 + e^{-(s_i - s_j)}\bigr)"
    gradient_formula = (r"\frac{\partial \ell}{\partial s_k} = \sum_{i:\ y_i > y_k}"
                        r" \sigma(s_k - s_i) - \sum_{j:\ y_k > y_j} \sigma(s_j - s_k)")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial s_k \partial s_m} = [k = m]"
                       r"\sum_j c_{kj} - c_{km},\ c_{km} = (P_{km} + P_{mk})\,"
                       r"\sigma(s_k - s_m)\,\sigma(s_m - s_k),\ P_{ij} = [y_i > y_j]")
    second_order = "dense"
    when_to_use = (
        "Learning to rank from graded relevance (search, recommendation) when every "
        "correctly ordered pair matters equally: the classic RankNet objective, convex and "
        "simple. It ignores where in the ranking a pair sits; lambdarank_loss weights pairs "
        "by their effect on NDCG, which targets the top of the list.")
    references = ("Burges et al., Learning to rank using gradient descent, ICML 2005, "
                  "doi:10.1145/1102351.1102363",)

    def _compute(self, ctx, scores, labels, *, need_grad, where=None):
        xp = ctx.xp
        s, y, valid, _ = _inputs(ctx, scores, labels, where, nonnegative=False)
        if s.shape[-1] == 0:
            return _empty_lists(ctx, s, valid, need_grad)
        w = _pair_mask(ctx, y, valid)
        value, g = _pairwise_logistic(xp, s, w, need_grad)
        terms = _terms(ctx, value, g, valid)
        if ctx.wants_hessian:
            terms.hess, terms.hvp = _pairwise_logistic_hessian(ctx, s, w)
        return terms


class LambdaRank(_RankingLoss):
    r"""LambdaRank: RankNet's pairwise loss with each pair weighted by its change of NDCG.

    Each pair is weighted by how much NDCG would change if the two items swapped places
    in the current ranking (Burges 2010):

    .. math::

        \ell = \sum_{i, j:\ y_i > y_j} \lvert\Delta\mathrm{NDCG}_{ij}\rvert
        \log\bigl(1 + e^{-(s_i - s_j)}\bigr), \qquad
        \lvert\Delta\mathrm{NDCG}_{ij}\rvert = \frac{\lvert G_i - G_j\rvert\,
        \lvert D(r_i) - D(r_j)\rvert}{\mathrm{IDCG}}

    with the gain :math:`G_i = 2^{y_i} - 1`, the discount :math:`D(r) = 1 / \log_2(1 + r)`,
    :math:`r_i` the 1-based rank of item :math:`i` when the valid items are sorted by their
    current scores (descending; equal scores in index order) and
    :math:`\mathrm{IDCG} = \sum_k G_{(k)} D(k)`, the DCG of the items sorted by label.

    Parameters
    ----------
    {shapes}
    {common_parameters}

    {returns}

    Raises
    ------
    ValueError
        0-d scores, labels or ``where`` of another shape, NaN, infinite or negative labels
        on a valid item.
    TypeError
        Non-floating scores, non-numeric labels, a ``where`` that is not boolean.

    Notes
    -----
    The weights :math:`w_{ij} = \lvert\Delta\mathrm{NDCG}_{ij}\rvert` depend on the scores
    only through the ranks, which are piecewise constant. As in LambdaRank they are
    **held fixed**: the gradient is the exact gradient of the weighted pairwise loss
    with the current weights,

    .. math::

        \frac{\partial \ell}{\partial s_k} = \sum_{i} w_{ik} P_{ik}\,\sigma(-d_{ik})
        - \sum_{j} w_{kj} P_{kj}\,\sigma(-d_{kj}), \qquad d_{ij} = s_i - s_j

    (Burges's :math:`\lambda_{ij}` with :math:`\sigma = 1`), and between ties of the
    scores it is also the derivative of the value. The Hessian holds the weights fixed
    too (they are constants of the sorted order, LambdaMART's convention for its
    Newton steps): that of ``pairwise_logistic_loss`` with every pair weighted by
    :math:`w_{ij}`,
    :math:`\partial^2 \ell / \partial s_k^2 = \sum_j (w_{kj} P_{kj} + w_{jk} P_{jk})
    \sigma(d_{kj})\sigma(-d_{kj})`, off the diagonal :math:`-(w_{km} P_{km} + w_{mk}
    P_{mk})\sigma(d_{km})\sigma(-d_{km})`. A list whose labels are all 0 has
    :math:`\mathrm{IDCG} = 0` and no pairs: it costs 0.
    {pair_note}

    allRank's ``lambdaLoss(weighing_scheme="lambdaRank_scheme", k=None, sigma=1,
    reduction="sum")`` takes :math:`\log_2` of the probabilities:
    ``lk.lambdarank_loss(s, y, reduction="sum") / log(2)``. Scores must be finite.

    References
    ----------
    .. [1] C. Burges, "From RankNet to LambdaRank to LambdaMART: an overview",
       Microsoft Research technical report MSR-TR-2010-82, 2010.
    .. [2] C. Burges, R. Ragno, Q. Le, "Learning to rank with nonsmooth cost functions",
       NIPS 2006.

    Examples
    --------
    Two items with equal scores, the first one relevant (gain 1): the tie puts it first,
    :math:`\lvert\Delta\mathrm{NDCG}\rvert = 1 - 1/\log_2 3`, and the loss is that times
    :math:`\log 2`; the gradient is that times :math:`\mp 1/2`:

    >>> import numpy as np, losskit as lk
    >>> s = np.array([0.0, 0.0]); y = np.array([1.0, 0.0])
    >>> w = 1 - 1 / np.log2(3)
    >>> bool(np.isclose(lk.lambdarank_loss(s, y), w * np.log(2)))
    True
    >>> bool(np.allclose(lk.lambdarank_loss.grad(s, y), [-w / 2, w / 2]))
    True
    """

    name = "lambdarank_loss"
    formula = (r"\ell = \sum_{i, j:\ y_i > y_j} \lvert\Delta\mathrm{NDCG}_{ij}\rvert \log"
               r"\bigl(1 + e^{-(s_i - s_j)}\bigr),\ \lvert\Delta\mathrm{NDCG}_{ij}\rvert = "
               r"\frac{\lvert 2^{y_i} - 2^{y_j}\rvert \lvert D(r_i) - D(r_j)\rvert}"
               r"{\mathrm{IDCG}},\ D(r) = \frac{1}{\log_2(1 + r)}")
    gradient_formula = (r"\frac{\partial \ell}{\partial s_k} = \sum_{i:\ y_i > y_k} w_{ik}"
                        r"\sigma(s_k - s_i) - \sum_{j:\ y_k > y_j} w_{kj}\sigma(s_j - s_k),"
                        r"\ w = \lvert\Delta\mathrm{NDCG}\rvert \text{ held fixed}")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial s_k \partial s_m} = [k = m]"
                       r"\sum_j c_{kj} - c_{km},\ c_{km} = (w_{km} P_{km} + w_{mk} P_{mk})\,"
                       r"\sigma(s_k - s_m)\,\sigma(s_m - s_k),\ w \text{ held fixed}")
    second_order = "dense"
    when_to_use = (
        "Learning to rank when the quality measure is NDCG: pairs near the top of the "
        "current ranking, whose swap changes NDCG most, get the largest weights. The "
        "standard choice for web search and recommendation with graded labels; the "
        "weights follow the current scores, so the objective changes as the model learns.")
    references = ("Burges, From RankNet to LambdaRank to LambdaMART: an overview, "
                  "Microsoft Research MSR-TR-2010-82, 2010",
                  "Burges, Ragno, Le, Learning to rank with nonsmooth cost functions, "
                  "NIPS 2006")

    def _compute(self, ctx, scores, labels, *, need_grad, where=None):
        xp = ctx.xp
        s, y, valid, v = _inputs(ctx, scores, labels, where, nonnegative=True)
        if s.shape[-1] == 0:
            return _empty_lists(ctx, s, valid, need_grad)
        # 2^y - 1 (0 on padding: its label is 0); a list whose largest label m exceeds 100
        # takes (2^y - 1) / 2^m = 2^(y - m) - 2^-m instead, finite in float32 beyond 2^128
        # (the weights |G_i - G_j| / IDCG do not change when every gain is scaled alike)
        m = xp.max(y, axis=-1, keepdims=True) if y.shape[-1] else y
        big = m > 100.0
        m = xp.where(big, m, xp.zeros_like(m))
        gain = xp.where(big, xp.exp((y - m) * _LN2) - xp.exp(-m * _LN2),
                        xp.expm1(xp.where(big, xp.zeros_like(y), y) * _LN2))
        disc = _LN2 / xp.log1p(_positions(ctx, s, valid) + 1.0)  # 1 / log2(1 + rank)
        ideal = _LN2 / xp.log1p(_positions(ctx, y, valid) + 1.0)
        idcg = xp.sum(gain * ideal, axis=-1)
        ok = idcg > 0
        inv = xp.where(ok, 1.0 / xp.where(ok, idcg, xp.ones_like(idcg)),
                       xp.zeros_like(idcg))
        w = (xp.abs(_rows(xp, gain) - _cols(xp, gain)) * xp.abs(_rows(xp, disc)
             - _cols(xp, disc)) * xp.expand_dims(xp.expand_dims(inv, axis=-1), axis=-1))
        w = w * _pair_mask(ctx, y, valid)
        value, g = _pairwise_logistic(xp, s, w, need_grad)
        terms = _terms(ctx, value, g, valid)
        if ctx.wants_hessian:  # the weights |delta NDCG| held fixed, as for the gradient
            terms.hess, terms.hvp = _pairwise_logistic_hessian(ctx, s, w)
        return terms


class RankingSoftmax(_RankingLoss):
    r"""Ranking softmax loss (ListNet): the softmax cross-entropy of scores against labels.

    Exactly Optax's ``ranking_softmax_loss`` (ListNet's top-one loss, Cao et al. 2007,
    with the labels as the target):

    .. math::

        \ell = -\sum_i y_i \log \frac{e^{s_i}}{\sum_j e^{s_j}}

    over the valid items. The labels are **not** normalised (Optax's convention): a list
    with twice the labels costs twice as much.

    Parameters
    ----------
    {shapes}
    weights : array of shape ``(..., L)``, optional
        Non-negative weight per item, multiplying its label (Optax's ``weights``).
    {common_parameters}

    {returns}

    Raises
    ------
    ValueError
        0-d scores; labels, weights or ``where`` of another shape; NaN, infinite or
        negative labels or weights on a valid item.
    TypeError
        Non-floating scores, non-numeric labels or weights, a ``where`` that is not
        boolean.

    Notes
    -----
    With :math:`p_i = e^{s_i} / \sum_j e^{s_j}` over the valid items and
    :math:`Y = \sum_j y_j` (labels times weights):

    .. math::

        \frac{\partial \ell}{\partial s_k} = Y p_k - y_k, \qquad
        \frac{\partial^2 \ell}{\partial s_k \partial s_m} = Y p_k (\delta_{km} - p_m)

    A list whose labels are all 0 costs 0 with a zero gradient (and still counts in the
    mean, as in Optax). Computed as :math:`\ell = Y \log\sum_j e^{s_j - m} - \sum_i y_i
    (s_i - m)` with :math:`m = \max_j s_j`, so large scores neither overflow nor lose
    precision.

    **Conventions.** Optax's ``ranking_softmax_loss(s, y, where=w, weights=u)`` with its
    default ``reduce_fn=jnp.mean`` is ``lk.ranking_softmax_loss(s, y, where=w,
    weights=u)``; ``reduce_fn=None`` is ``reduction="none"`` and ``jnp.sum`` is ``"sum"``.
    ListNet's top-one loss with the target distribution :math:`\phi(y) / \sum \phi(y)`
    (TF-Ranking's ``SoftmaxLoss`` normalises :math:`y` itself; allRank's ``listNet``
    takes :math:`\operatorname{softmax}(y)`): pass the normalised target as ``labels``.

    References
    ----------
    .. [1] Z. Cao, T. Qin, T.-Y. Liu, M.-F. Tsai, H. Li, "Learning to rank: from pairwise
       approach to listwise approach", ICML 2007, doi:10.1145/1273496.1273513.
    .. [2] S. Bruch, X. Wang, M. Bendersky, M. Najork, "An analysis of the softmax cross
       entropy loss for learning-to-rank with binary relevance", ICTIR 2019,
       doi:10.1145/3341981.3344221.

    Examples
    --------
    Two items with equal scores, the first one relevant: :math:`-\log\frac12`, and the
    gradient :math:`p - y`:

    >>> import numpy as np, losskit as lk
    >>> s = np.array([0.0, 0.0]); y = np.array([1.0, 0.0])
    >>> round(float(lk.ranking_softmax_loss(s, y)), 6)
    0.693147
    >>> lk.ranking_softmax_loss.grad(s, y)
    array([-0.5,  0.5])
    """

    name = "ranking_softmax_loss"
    aliases = ("listnet_loss",)
    formula = r"\ell = -\sum_i y_i \log \frac{e^{s_i}}{\sum_j e^{s_j}}"
    gradient_formula = (r"\frac{\partial \ell}{\partial s_k} = \Bigl(\sum_i y_i\Bigr) p_k "
                        r"- y_k,\ p = \operatorname{softmax}(s)")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial s_k \partial s_m} = "
                       r"\Bigl(\sum_i y_i\Bigr) p_k (\delta_{km} - p_m)")
    second_order = "dense"
    when_to_use = (
        "Listwise learning to rank with graded or binary relevance: one softmax over the "
        "list, as cheap as a classification loss (linear in the list length) and a "
        "bound on NDCG/MRR for binary labels. A strong, simple default for large lists "
        "where pairwise losses would cost L^2.")
    references = ("Cao, Qin, Liu, Tsai, Li, Learning to rank: from pairwise approach to "
                  "listwise approach, ICML 2007, doi:10.1145/1273496.1273513",
                  "Bruch, Wang, Bendersky, Najork, An analysis of the softmax cross entropy "
                  "loss for learning-to-rank with binary relevance, ICTIR 2019, "
                  "doi:10.1145/3341981.3344221")

    def _compute(self, ctx, scores, labels, *, need_grad, where=None, weights=None):
        xp = ctx.xp
        s, y, valid, v = _inputs(ctx, scores, labels, where, nonnegative=True)
        if s.shape[-1] == 0:
            return _empty_lists(ctx, s, valid, need_grad)
        if weights is not None:
            y = y * _item_array(ctx, s, weights, "weights", valid, nonnegative=True,
                                what="one weight")
        masked = s if v is None else xp.where(valid, s, xp.full_like(s, -math.inf))
        m = xp.max(masked, axis=-1, keepdims=True)
        m = xp.where(m == -math.inf, xp.zeros_like(m), m)  # a list without valid items
        shifted = s - m
        e = xp.exp(shifted)
        if v is not None:
            e = e * v
        z = xp.sum(e, axis=-1, keepdims=True)
        total = xp.sum(y, axis=-1, keepdims=True)
        log_z = xp.log(xp.where(z > 0, z, xp.ones_like(z)))
        value = xp.sum(y * (log_z - shifted), axis=-1)
        if not need_grad:
            return _terms(ctx, value, None, valid)
        p = e / xp.where(z > 0, z, xp.ones_like(z))
        terms = _terms(ctx, value, total * p - y, valid)
        if ctx.wants_hessian:  # Y (diag p - p p^T), p the softmax over the valid items
            terms.hess, terms.hvp = _softmax_hessian(xp, p, total, ctx.vector, -1)
        return terms


class ListMLE(_RankingLoss):
    r"""ListMLE: the Plackett-Luce likelihood of the ranking that sorts the labels.

    The negative log-likelihood, under the Plackett-Luce model of the scores, of the
    ranking that sorts the items by label (Xia et al. 2008):

    .. math::

        \ell = \sum_{k=1}^{n} \Bigl(\log \sum_{m=k}^{n} e^{s_{\pi(m)}} - s_{\pi(k)}\Bigr)

    where :math:`\pi` lists the :math:`n` valid items by label, highest first. Items of
    equal label are taken in index order (a stable sort), so the loss is deterministic;
    allRank and TF-Ranking shuffle ties at random instead (shuffle the items yourself
    for that).

    Parameters
    ----------
    {shapes}
    {common_parameters}

    {returns}

    Raises
    ------
    ValueError
        0-d scores, labels or ``where`` of another shape, NaN or infinite labels on a
        valid item.
    TypeError
        Non-floating scores, non-numeric labels, a ``where`` that is not boolean.

    Notes
    -----
    With :math:`L_k = \log \sum_{m \ge k} e^{s_{\pi(m)}}`, the log-normaliser of the
    :math:`k`-th choice:

    .. math::

        \frac{\partial \ell}{\partial s_{\pi(m)}} = \sum_{k \le m} e^{s_{\pi(m)} - L_k} - 1

    (the probability that :math:`\pi(m)` is picked at each step :math:`k \le m`, minus
    the 1 of the step that picks it). Every step is a log-softmax over its pool, so
    with :math:`q_k` the softmax of the step :math:`k` (over the items :math:`\pi(m)`,
    :math:`m \ge k`, 0 elsewhere)

    .. math::

        \frac{\partial^2 \ell}{\partial s\, \partial s^\top} = \sum_k
        \bigl(\operatorname{diag} q_k - q_k q_k^\top\bigr), \qquad
        \frac{\partial^2 \ell}{\partial s_{\pi(m)}^2} = \sum_{k \le m} q_{k,\pi(m)}
        \bigl(1 - q_{k,\pi(m)}\bigr).

    The loss is convex and unchanged by adding a constant to every score of a list; its
    last term is always 0. Every :math:`L_k` is computed against the largest score it
    contains, so large scores neither overflow nor underflow.

    allRank's ``listMLE`` adds ``eps=1e-10`` inside the log and averages the lists; away
    from that eps it is ``lk.listmle_loss(s, y, where=y != -1)`` (with ties broken the
    same way).

    References
    ----------
    .. [1] F. Xia, T.-Y. Liu, J. Wang, W. Zhang, H. Li, "Listwise approach to learning to
       rank: theory and algorithm", ICML 2008, doi:10.1145/1390156.1390306.

    Examples
    --------
    Two items with equal scores, the first one relevant: the first choice has
    probability 1/2, the second 1, so :math:`\log 2`; the gradient is :math:`1/2 - 1` and
    :math:`1/2 + 1 - 1`:

    >>> import numpy as np, losskit as lk
    >>> s = np.array([0.0, 0.0]); y = np.array([1.0, 0.0])
    >>> round(float(lk.listmle_loss(s, y)), 6)
    0.693147
    >>> lk.listmle_loss.grad(s, y)
    array([-0.5,  0.5])
    """

    name = "listmle_loss"
    formula = (r"\ell = \sum_{k=1}^{n} \Bigl(\log \sum_{m=k}^{n} e^{s_{\pi(m)}} - "
               r"s_{\pi(k)}\Bigr),\ \pi \text{ sorts the labels descending}")
    gradient_formula = (r"\frac{\partial \ell}{\partial s_{\pi(m)}} = \sum_{k \le m} "
                        r"\frac{e^{s_{\pi(m)}}}{\sum_{m' \ge k} e^{s_{\pi(m')}}} - 1")
    hessian_formula = (r"\frac{\partial^2 \ell}{\partial s\,\partial s^\top} = \sum_k "
                       r"\bigl(\operatorname{diag} q_k - q_k q_k^\top\bigr),\ q_k = "
                       r"\operatorname{softmax}\text{ of the scores } s_{\pi(m)},\ m \ge k")
    second_order = "dense"
    when_to_use = (
        "Listwise learning to rank when the full order of the labels matters, not only "
        "the top: the likelihood of the label-sorted permutation under a Plackett-Luce "
        "model of the scores. Convex and cheap; with many ties in the labels the order "
        "among equal labels is arbitrary, where ranking_softmax_loss is usually better.")
    references = ("Xia, Liu, Wang, Zhang, Li, Listwise approach to learning to rank: "
                  "theory and algorithm, ICML 2008, doi:10.1145/1390156.1390306",)

    def _compute(self, ctx, scores, labels, *, need_grad, where=None):
        xp = ctx.xp
        s, y, valid, v = _inputs(ctx, scores, labels, where, nonnegative=False)
        if s.shape[-1] == 0:
            return _empty_lists(ctx, s, valid, need_grad)
        q = _positions(ctx, y, valid)
        # c[i, j]: item j is still in the pool when item i is picked (its position >= i's)
        c = _cols(xp, q) >= _rows(xp, q)
        if valid is not None:
            c = c & _cols(xp, valid)
        sj = xp.broadcast_to(_cols(xp, s), c.shape)
        m = xp.max(xp.where(c, sj, xp.full_like(sj, -math.inf)), axis=-1, keepdims=True)
        m = xp.where(m == -math.inf, xp.zeros_like(m), m)  # a padding item's empty pool
        e = xp.where(c, xp.exp(sj - m), xp.zeros_like(sj))
        z = xp.sum(e, axis=-1, keepdims=True)
        z = xp.where(z > 0, z, xp.ones_like(z))
        term = xp.log(z[..., 0]) + m[..., 0] - s
        if v is not None:
            term = term * v
        value = xp.sum(term, axis=-1)
        if not need_grad:
            return _terms(ctx, value, None, valid)
        share = e / z
        if v is not None:
            share = share * _rows(xp, v)
        g = xp.sum(share, axis=-2) - (xp.ones_like(s) if v is None else v)
        terms = _terms(ctx, value, g, valid)
        if ctx.wants_hessian:
            # each step k is a log-softmax over its pool, share[k] = softmax over the pool:
            # H = sum_k (diag(q_k) - q_k q_k^T), q_k = share[k, :]
            terms.hess = xp.sum(share * (1.0 - share), axis=-2)
            vec = ctx.vector
            if vec is not None:
                vec = vec if v is None else vec * v
                dots = xp.sum(share * _cols(xp, vec), axis=-1)  # q_k . v per step
                terms.hvp = xp.sum(share * (_cols(xp, vec) - _rows(xp, dots)), axis=-2)
        return terms


for _cls in (PairwiseLogistic, LambdaRank, RankingSoftmax, ListMLE):
    _cls.__doc__ = fill_doc(_cls.__doc__, shapes=_SHAPES, returns=_RETURNS,
                            pair_note=_PAIR_NOTE)

pairwise_logistic_loss = ranknet_loss = register(PairwiseLogistic())
lambdarank_loss = register(LambdaRank())
ranking_softmax_loss = listnet_loss = register(RankingSoftmax())
listmle_loss = register(ListMLE())

# fused NumPy kernels (losskit.kernels.ranking), consulted by the pipeline
register_fast_path(PairwiseLogistic, _kernels.pairwise_logistic_loss)
register_fast_path(LambdaRank, _kernels.lambdarank_loss)
register_fast_path(RankingSoftmax, _kernels.ranking_softmax_loss)
register_fast_path(ListMLE, _kernels.listmle_loss)
