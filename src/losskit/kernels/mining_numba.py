r"""Numba kernels of the in-batch metric-learning losses (imported lazily by
:mod:`losskit.kernels.mining`).

:func:`contrastive_block`
    One block of anchors of ``batch_contrastive_loss``: from the block's similarities
    :math:`S_{ij} = u_i \cdot u_j` (a matrix product, done by the caller) it computes, in
    one pass over the pairs, each anchor's positive and negative sums, their counts of
    active and of all pairs, and the two components' gradient coefficients, the
    formulas of :func:`losskit.kernels.mining._block_components` element by element.
    The coefficients are written **symmetrised**: a pair's coefficient
    :math:`A_{ij}` (of :math:`D_{ij}` or :math:`S_{ij}`, a function of the pair alone) is
    the same from either end, so the rows' and the columns' parts of the gradient,
    :math:`w_i A_{ij}` for anchor :math:`i` and :math:`w_j A_{ji}` for anchor :math:`j`,
    add into one matrix :math:`K_{ij} = A_{ij} (w_i + w_j)` of the block's rows, and the
    gradient of the rows is one matrix product :math:`K U` (with
    :math:`\operatorname{rowsum}(K)\, u_i` for the Euclidean distance) instead of the two
    products :math:`K U` and :math:`K^\top U_b` of the generic path, whose column part
    also has to be accumulated over all blocks.

:func:`triplet_hard_block`
    One block of anchors of ``batch_triplet_loss(mining="hard")``: per anchor the
    hardest positive and negative in one pass over the pairs, the hinge, and (where it is
    active) a second pass that finds the ties, which share the gradient equally; the
    gradient, non-zero for those few pairs only, is added straight into the rows of the
    anchor and of each tied embedding: no coefficient matrix and no matrix product.

:func:`triplet_all_block`
    One block of anchors of ``batch_triplet_loss`` with ``mining="all"`` or
    ``"semihard"``: every (positive, negative) pair of an anchor enumerated, in loops
    over the negatives that vectorise (the caller takes it for few positives per anchor),
    and the coefficients of the gradient written over the block's similarities for the
    rows' and the columns' products.

:func:`multi_similarity_block`, :func:`circle_block`
    One block of anchors of ``multi_similarity_loss`` / ``circle_loss``: per anchor the
    two masked log-sum-exps over its positives and negatives (a pass for the largest
    logits, one for the sums) and, with the gradient, a third that overwrites the
    block's similarities with their coefficients; the caller's two matrix products
    (rows and columns) then give the gradient, as in the generic block.

Each returns 0 (``losskit.kernels.fast_paths._kernel`` answers None where numba cannot
compile it). The serial build only: the kernel runs between the blocks' matrix products, whose BLAS
threads still spin (a parallel loop fights them for the cores, measured 10x slower in the
margin heads' blocks, :func:`losskit.kernels.mining._margin_ce_block`).
"""

from __future__ import annotations

import math

from numba import njit
from numba.core.errors import NumbaError

from .numba_kernels import _exp_neg

__all__ = ["contrastive_block", "triplet_hard_block", "triplet_all_block",
           "multi_similarity_block", "circle_block", "NumbaError"]

# reassociation for the row sums (split over SIMD lanes); NaN keeps its meaning
_JIT = {"cache": True, "error_model": "numpy", "fastmath": {"contract", "reassoc"}}


@njit(**_JIT)
def contrastive_block(s, sq, labels, w, r0, pos_margin, neg_margin, euclidean, need_grad,
                      k_neg, stats):
    """The block of anchors ``r0 .. r0 + B`` of ``batch_contrastive_loss``.

    ``s`` (B, N): the similarities of the block's anchors with every embedding,
    overwritten with the positive component's symmetrised coefficients ``K`` when
    ``need_grad`` (``k_neg`` receives the negative one's); ``sq`` (N,): the squared
    norms; ``labels`` (N,) integers; ``w`` (N,): the anchors' weights (ones without
    sample weights). ``stats`` (B, 6) receives per anchor the positive and negative sums
    of the hinge terms, their active counts and their pair counts (float64).

    Element by element as the generic block: ``D = sqrt(max(|u_i|^2 + |u_j|^2 - 2 S,
    0))`` (0 on the diagonal; ``1 - S`` for the cosine distance), a positive pair (same
    label, not the anchor itself) active where ``D - m+ > 0`` or NaN, a negative pair
    where ``m- - D > 0`` or NaN; the coefficient of ``D`` is +1 / -1 where active,
    times ``1 / D`` (0 where ``D = 0``) for the Euclidean distance, whose gradient is
    then ``rowsum(K) u_i - (K U)_i``; for the cosine distance ``-coefficient`` is that
    of ``S`` and the gradient ``(K U)_i``.
    """
    b_rows, n = s.shape
    for b in range(b_rows):
        i = r0 + b
        li = labels[i]
        wi = w[i]
        sqi = sq[i]
        vp = 0.0
        vn = 0.0
        ap = 0.0
        an = 0.0
        cp = 0.0
        cn = 0.0
        for j in range(n):
            sij = s[b, j]
            if euclidean:
                d2 = sqi + sq[j] - 2.0 * sij
                d = math.sqrt(d2) if d2 > 0.0 else 0.0
                d = 0.0 if j == i else d
            else:
                d = 1.0 - sij
            same = labels[j] == li
            pos = same and j != i
            tp = d - pos_margin
            tn = neg_margin - d
            act_p = pos and (tp > 0.0 or tp != tp)
            act_n = (not same) and (tn > 0.0 or tn != tn)
            vp += tp if act_p else 0.0
            vn += tn if act_n else 0.0
            ap += 1.0 if act_p else 0.0
            an += 1.0 if act_n else 0.0
            cp += 1.0 if pos else 0.0
            cn += 0.0 if same else 1.0
            if need_grad:
                # finite factors times the 0/1 activity (a product, not a select, so
                # that the loop vectorises: 2.3x faster; the weights are finite)
                f = wi + w[j]
                if euclidean:
                    inv = f / d if d > 0.0 else 0.0
                    s[b, j] = inv * act_p
                    k_neg[b, j] = -inv * act_n
                else:  # the coefficient of S = 1 - D: minus that of D
                    s[b, j] = -f * act_p
                    k_neg[b, j] = f * act_n
        stats[b, 0] = vp
        stats[b, 1] = vn
        stats[b, 2] = ap
        stats[b, 3] = an
        stats[b, 4] = cp
        stats[b, 5] = cn
    return 0


@njit(**_JIT)
def _distance(s, sq, b, i, j, euclidean):
    """The generic block's distance of anchor ``i`` (block row ``b``) and ``j``."""
    if euclidean:
        if j == i:
            return 0.0
        d2 = sq[i] + sq[j] - 2.0 * s[b, j]
        return math.sqrt(d2) if d2 > 0.0 else 0.0
    return 1.0 - s[b, j]


@njit(**_JIT)
def triplet_hard_block(s, sq, labels, w, r0, margin, euclidean, need_grad, u, g, stats):
    """The block of anchors ``r0 .. r0 + B`` of ``batch_triplet_loss(mining="hard")``.

    ``s`` (B, N): the similarities of the block's anchors with every embedding; ``sq``
    (N,): the squared norms; ``labels`` (N,) integers; ``w`` (N,): the anchors' weights
    (ones without sample weights); ``u`` (N, D): the embeddings, ``g`` (N, D): the
    gradient of ``sum_i w_i value_i`` with respect to them, added to (``need_grad``).
    ``stats`` (B, 3) receives per anchor the value, whether it is non-zero and whether
    the anchor has a positive and a negative (float64).

    As the generic block (:func:`losskit.kernels.mining._triplet_hard`): the hinge
    ``max(D_ap) - min(D_an) + margin`` over the anchor's positives and negatives (0
    without either), its gradient +1 / -1 split equally over the tied hardest positives
    and negatives, through ``dD/du_i = (u_i - u_j) / D`` (0 at ``D = 0``), or for the
    cosine distance through ``dS/du_i = u_j`` with the sign of ``D = 1 - S``. Finite
    inputs only (the caller checks).
    """
    b_rows, n = s.shape
    dim = u.shape[1]
    for b in range(b_rows):
        i = r0 + b
        li = labels[i]
        dmax = -math.inf
        dmin = math.inf
        for j in range(n):
            d = _distance(s, sq, b, i, j, euclidean)
            if labels[j] == li:
                if j != i and d > dmax:
                    dmax = d
            elif d < dmin:
                dmin = d
        valid = dmax > -math.inf and dmin < math.inf
        value = dmax - dmin + margin if valid else 0.0
        active = valid and value > 0.0
        stats[b, 0] = value if active else 0.0
        stats[b, 1] = 1.0 if active else 0.0
        stats[b, 2] = 1.0 if valid else 0.0
        if not (need_grad and active) or w[i] == 0.0:
            continue
        n_pos = 0.0
        n_neg = 0.0
        for j in range(n):
            d = _distance(s, sq, b, i, j, euclidean)
            if labels[j] == li:
                if j != i and d == dmax:
                    n_pos += 1.0
            elif d == dmin:
                n_neg += 1.0
        for j in range(n):
            d = _distance(s, sq, b, i, j, euclidean)
            if labels[j] == li:
                if j == i or d != dmax:
                    continue
                c = w[i] / n_pos
            elif d == dmin:
                c = -w[i] / n_neg
            else:
                continue
            if euclidean:  # dD/du_i = (u_i - u_j) / D, dD/du_j = -(u_i - u_j) / D
                k = c / d if d > 0.0 else 0.0
                for e in range(dim):
                    diff = k * (u[i, e] - u[j, e])
                    g[i, e] += diff
                    g[j, e] -= diff
            else:  # D = 1 - S: dD/du_i = -u_j, dD/du_j = -u_i
                for e in range(dim):
                    ui = u[i, e]
                    g[i, e] -= c * u[j, e]
                    g[j, e] -= c * ui
    return 0


@njit(**_JIT)
def multi_similarity_block(s, labels, w, r0, alpha, beta, base, need_grad, stats):
    """The block of anchors ``r0 .. r0 + B`` of ``multi_similarity_loss``.

    ``s`` (B, N): the cosine similarities of the block's anchors with every embedding,
    overwritten with the coefficients of ``S`` in ``sum_i w_i value_i`` when
    ``need_grad`` (``w``: the anchors' weights, ones without sample weights). ``stats``
    (B, 3): the value, whether it is positive, 1.

    As the generic block (:func:`losskit.kernels.mining._lse_with_zero` on
    ``-alpha (S - base)`` over the positives and ``beta (S - base)`` over the
    negatives): each log-sum-exp with its extra zero logit, shifted by
    ``max(0, largest logit)``; the coefficient ``w_n - w_p``, the two softmax weights.
    Both sides' exponentials are computed for every pair and the pair's side selected
    (the polynomial ``exp`` of ``numba_kernels``, of arguments <= 0 where they are
    kept): the loops vectorise. Finite similarities only (the caller checks).
    """
    b_rows, n = s.shape
    for b in range(b_rows):
        i = r0 + b
        li = labels[i]
        mp = 0.0  # the shifts: max(0, the largest logit of each side)
        mn = 0.0
        for j in range(n):
            x = s[b, j] - base
            same = labels[j] == li
            zp = -alpha * x
            zn = beta * x
            mp = zp if (same and j != i and zp > mp) else mp
            mn = zn if (not same and zn > mn) else mn
        tp = math.exp(-mp)
        tn = math.exp(-mn)
        for j in range(n):
            x = s[b, j] - base
            same = labels[j] == li
            ep = _exp_neg(-alpha * x - mp)
            en = _exp_neg(beta * x - mn)
            tp += ep if (same and j != i) else 0.0
            tn += 0.0 if same else en
        value = (mp + math.log(tp)) / alpha + (mn + math.log(tn)) / beta
        stats[b, 0] = value
        stats[b, 1] = 1.0 if value > 0.0 else 0.0
        stats[b, 2] = 1.0
        if not need_grad:
            continue
        fp = -w[i] / tp
        fn = w[i] / tn
        for j in range(n):
            x = s[b, j] - base
            same = labels[j] == li
            cp = fp * _exp_neg(-alpha * x - mp)
            cn = fn * _exp_neg(beta * x - mn)
            s[b, j] = (cp if j != i else 0.0) if same else cn
    return 0


@njit(**_JIT)
def circle_block(s, labels, w, r0, margin, gamma, detach, need_grad, stats):
    """The block of anchors ``r0 .. r0 + B`` of ``circle_loss``, as
    :func:`multi_similarity_block` (``s`` overwritten with the coefficients of ``S``).

    As the generic block: ``alpha_p = max(1 + m - S, 0)``, ``alpha_n = max(S + m, 0)``,
    the logits ``-gamma alpha_p (S - (1 - m))`` of the positives and
    ``gamma alpha_n (S - m)`` of the negatives, each side's log-sum-exp (shifted by its
    largest logit), the value ``softplus(lse_p + lse_n)`` (0 for an anchor without a
    positive or without a negative) and the coefficient ``sigmoid(lse_p + lse_n)`` times
    each side's softmax weight times the logit's derivative (``alpha`` held constant
    with ``detach``). Finite similarities only (the caller checks).
    """
    b_rows, n = s.shape
    op = 1.0 + margin
    dp = 1.0 - margin
    on = -margin
    dn = margin
    for b in range(b_rows):
        i = r0 + b
        li = labels[i]
        mp = -math.inf
        mn = -math.inf
        for j in range(n):
            sij = s[b, j]
            same = labels[j] == li
            zp = -gamma * max(op - sij, 0.0) * (sij - dp)
            zn = gamma * max(sij - on, 0.0) * (sij - dn)
            mp = zp if (same and j != i and zp > mp) else mp
            mn = zn if (not same and zn > mn) else mn
        if not (mp > -math.inf and mn > -math.inf):  # no positive or no negative
            stats[b, 0] = 0.0
            stats[b, 1] = 0.0
            stats[b, 2] = 1.0
            if need_grad:
                for j in range(n):
                    s[b, j] = 0.0
            continue
        tp = 0.0
        tn = 0.0
        for j in range(n):
            sij = s[b, j]
            same = labels[j] == li
            ep = _exp_neg(-gamma * max(op - sij, 0.0) * (sij - dp) - mp)
            en = _exp_neg(gamma * max(sij - on, 0.0) * (sij - dn) - mn)
            tp += ep if (same and j != i) else 0.0
            tn += 0.0 if same else en
        big = math.log(tp) + mp + math.log(tn) + mn
        value = max(big, 0.0) + math.log1p(math.exp(-abs(big)))
        stats[b, 0] = value
        stats[b, 1] = 1.0 if value > 0.0 else 0.0
        stats[b, 2] = 1.0
        if not need_grad:
            continue
        e = math.exp(-abs(big))
        sig = 1.0 / (1.0 + e) if big >= 0.0 else e / (1.0 + e)
        fp = w[i] * sig / tp
        fn = w[i] * sig / tn
        keep = 0.0 if detach else 1.0
        for j in range(n):
            sij = s[b, j]
            same = labels[j] == li
            rp = op - sij
            ap = max(rp, 0.0)
            rn = sij - on
            an = max(rn, 0.0)
            dzp = -gamma * (ap - keep * (sij - dp) * (1.0 if rp > 0.0 else 0.0))
            dzn = gamma * (an + keep * (sij - dn) * (1.0 if rn > 0.0 else 0.0))
            cp = fp * _exp_neg(-gamma * ap * (sij - dp) - mp) * dzp
            cn = fn * _exp_neg(gamma * an * (sij - dn) - mn) * dzn
            s[b, j] = (cp if j != i else 0.0) if same else cn
    return 0


@njit(**_JIT)
def triplet_all_block(s, sq, labels, w, r0, margin, euclidean, semihard, need_grad, stats,
                      drow, neg, cnt_n, pos_idx, cnt_p):
    """The block of anchors ``r0 .. r0 + B`` of ``batch_triplet_loss`` with
    ``mining="all"`` or ``"semihard"``, every (positive, negative) pair of an anchor
    enumerated: for few positives per anchor (the caller bounds them) this costs
    ``O(P N)`` per anchor in loops over the negatives that vectorise, where the generic
    path sorts ``3 N`` keys per anchor.

    ``s`` (B, N): the similarities, overwritten with the coefficients of the gradient
    (those of ``D`` times ``1 / D`` for the Euclidean distance, of ``S`` for the cosine
    one, times the anchor's weight) when ``need_grad``; ``stats`` (B, 3): the sum of the
    hinges, the number of active triplets and the anchor's count (``P N``, or the
    active ones for semi-hard). Scratch rows of N: ``drow``, ``neg``, ``cnt_n``,
    ``pos_idx``, ``cnt_p``.

    As :func:`losskit.kernels.mining._triplet_sorted`: a triplet is active where
    ``D_an < D_ap + margin`` (a hinge of exactly 0 neither counts nor is differentiated)
    and, semi-hard, ``D_an > D_ap``; the coefficient of ``D_ap`` is the number of active
    triplets of the positive, that of ``D_an`` minus that of the negative. Finite inputs
    only (the caller checks).
    """
    b_rows, n = s.shape
    for b in range(b_rows):
        i = r0 + b
        li = labels[i]
        n_pos = 0
        n_neg = 0.0
        for j in range(n):
            drow[j] = _distance(s, sq, b, i, j, euclidean)
            same = labels[j] == li
            neg[j] = 0.0 if same else 1.0
            n_neg += 0.0 if same else 1.0
            cnt_n[j] = 0.0
            if same and j != i:
                pos_idx[n_pos] = j
                n_pos += 1
        value = 0.0
        active = 0.0
        for q in range(n_pos):
            dap = drow[pos_idx[q]]
            hi = dap + margin
            lo = dap if semihard else -math.inf
            v = 0.0
            c = 0.0
            for j in range(n):
                dj = drow[j]
                t = hi - dj
                sel = neg[j] > 0.0 and t > 0.0 and dj > lo
                v += t if sel else 0.0
                c += 1.0 if sel else 0.0
                cnt_n[j] += 1.0 if sel else 0.0
            value += v
            active += c
            cnt_p[q] = c
        stats[b, 0] = value
        stats[b, 1] = active
        stats[b, 2] = active if semihard else n_pos * n_neg
        if not need_grad:
            continue
        wi = w[i]
        for j in range(n):
            cnt_n[j] = -cnt_n[j]
        for q in range(n_pos):
            cnt_n[pos_idx[q]] = cnt_p[q]
        for j in range(n):
            c = wi * cnt_n[j]
            if euclidean:
                d = drow[j]
                s[b, j] = c / d if d > 0.0 else 0.0
            else:  # D = 1 - S
                s[b, j] = -c
    return 0
