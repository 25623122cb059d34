r"""Numba kernels of the overlap family (imported lazily by :mod:`losskit.kernels.overlap`).

One driver, :func:`_overlap`, for dice, Tversky, Jaccard, focal Tversky, generalised
Dice and MCC on a prediction viewed as
``(N, C, S)`` (class axis 1, positions flattened). The work is cut into items
(:func:`_span`, the one place that says what an item covers): whole samples, all of them
in one item in the serial build and a few per item in the parallel one, or, when there
are too few samples to keep every thread busy, spans of one sample's positions; items
run in ``prange`` (parallel build) or a loop:

1. per item (:func:`_item_sums`), the float64 sums of :math:`p t`,
   :math:`p` (or :math:`p^2`) and :math:`t` (or :math:`t^2`) per class, with the
   probabilities (the activation fused: none, sigmoid, or the softmax over the C classes
   of each position) and the target (a mask in the dtype the caller passes, cast like
   the generic path, or one-hot integer labels with ``ignore_index``);
2. per sample (:func:`_sample_coefficients`), the per-group sums (a group is a class, or
   the whole sample in ``global`` mode), the index :math:`R = \mathrm{num}/\mathrm{den}`
   with :math:`\mathrm{num} = k I + s` and :math:`\mathrm{den} = c_I I + c_P P + c_T T +
   s`, the per-sample value :math:`\sum_g (1 - R_g) / G`, and the gradient's per-group
   coefficients: :math:`\partial\ell/\partial p_i = A + B t_i + W p_i` (from
   :math:`(R\,\partial_i\mathrm{den} - \partial_i\mathrm{num}) / \mathrm{den} / G` with
   :math:`\partial_i\mathrm{num} = k t_i`, :math:`\partial_i\mathrm{den} = u + v t_i + w
   p_i`; 0 when :math:`\mathrm{den} = 0`, which defines :math:`R = 1`);
3. when the gradient is wanted, per item again (:func:`_item_gradient`): the
   probabilities (the softmax kept in the gradient buffer by step 1; the sigmoid
   recomputed, its tails exact), the gradient with respect to :math:`p`, and the
   activation's chain rule, written once.

When items are whole samples (``parts == 1``), steps 2 and 3 follow step 1 in the same
item, while its samples are still in the core's cache: the inputs come from memory once.
Every target (a mask of any dtype, integer labels) goes through scratch rows of
:data:`BLOCK` elements (C x positions), allocated once per item, and every sum over the
same float scratch rows: a one-hot mask, its boolean copy and the integer labels give
bit-identical results (reading float masks in place saved about 40% at (16, 4, 128, 128)
but summed in another order, off by an ulp). Samples that each fill at most half a block
(small maps; ``(N, C)`` has one position per sample) share a block, several at a time
(:func:`_per_block`), so that the helpers run per block, not per sample: every call of a
function taking arrays costs numba two atomic reference-count updates per array, which
made a call at (32, 10) take 27 us in the kernel when each sample (and each class, for
the sums) had its own calls; 9 us packed. Positions are indexed unsigned (:data:`_U`)
and arrays are never sliced in the loops (a slice costs the same two updates).

Checks counted on the way (the caller then answers NotImplemented and the generic path
raises or handles the case): probabilities outside [0, 1] (no activation), mask targets
outside [0, 1], labels outside [0, C) that are not ``ignore_index``, and, for the
softmax, a position whose logits hold NaN or an infinity (its edge rules are the generic
kernel's business).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange
from numba.core.errors import NumbaError

from .numba_kernels import _JIT, _builds, _exp_neg, _like

__all__ = ["overlap_parallel", "overlap_serial", "split", "LABELS", "IGNORE", "SQUARED",
           "PER_CLASS", "GRAD", "BLOCK", "RATIO", "GENERALIZED", "MCC", "NumbaError"]

#: elements (C x positions) of an item's scratch rows: three of them stay in L1
BLOCK = 2048
#: the type of position indexes: unsigned, so that numba adds no negative-index wraparound
#: (a select per element that stops LLVM from vectorising the loops)
_U = np.uint64
#: positions per span at least, when a sample is cut into spans
MIN_SPAN = 4096
#: bits of the kernel's ``flags`` (the activation in the two lowest)
LABELS, IGNORE, SQUARED, PER_CLASS, GRAD = 4, 8, 16, 32, 64
#: kinds of index (``consts``): a ratio of sums (dice, Tversky, Jaccard, focal Tversky),
#: the generalised Dice, the Matthews correlation
RATIO, GENERALIZED, MCC = 0, 1, 2
#: elements per item at most, when an item holds several samples (parallel build)
GROUP = 1 << 16

_JIT_SUM = {"cache": True, "error_model": "numpy", "fastmath": {"contract", "reassoc"}}


def split(n, c, s):
    """(spans per sample, samples per item) of the parallel build: whole samples, a few of
    them per item (at most :data:`GROUP` elements), when there are enough to share among
    the threads; else single samples cut into enough spans to share."""
    want = 4 * numba.get_num_threads()
    if n >= want:
        return 1, max(1, min(n // want, GROUP // (c * s)))
    return max(1, min(-(-want // n), s // MIN_SPAN)), 1


@njit(inline="always", **_JIT)
def _span(it, parts, per, N, S):
    """(first sample, end, first position, end, span index) of item ``it``: samples
    [n0, n1), positions [a, b), the span ``j`` of each; spans start at multiples of 64."""
    j = it % parts
    n0 = (it // parts) * per
    step = ((S + parts - 1) // parts + 63) // 64 * 64
    a = min(S, j * step)
    return n0, min(N, n0 + per), a, min(S, a + step), j


@njit(**_JIT)
def _scratch(z, L):
    """Scratch rows of one item: probabilities and targets (C x L), e^-|z| or the softmax
    maximum and sum (max(C, 2) x L), and whether each position is kept."""
    C = z.shape[1]
    rows = C if C > 2 else 2
    return (np.empty((C, L), dtype=z.dtype), np.empty((C, L), dtype=z.dtype),
            np.empty((rows, L), dtype=z.dtype), np.empty(L, dtype=np.bool_))


@njit(**_JIT)
def _block_len(C, a, b):
    """Positions per scratch block of an item spanning [a, b)."""
    L = BLOCK // C if C < BLOCK else 1
    return min(L, b - a) if b > a else 1


@njit(**_JIT)
def _per_block(C, a, b, whole):
    """Samples per scratch block: as many as fit when the item holds whole samples that
    each fill at most half a block (small maps, one position per sample: the helpers
    below are then called per block, not per sample), else 1."""
    L = BLOCK // C if C < BLOCK else 1
    S = b - a
    return L // S if whole and 0 < S and 2 * S <= L else 1


@njit(**_JIT_SUM)
def _sums(pb, tb, C, L, ns, squared, part, row0):
    """Add the float64 sums of p t, p (or p^2), t (or t^2) over the L positions of each of
    the ``ns`` samples of a block (scratch columns [j L, (j + 1) L) of rows c < C of pb,
    tb) to part[row0 + j, c]: one call per block, not per class or sample (each call of
    a function taking arrays costs numba two atomic reference-count updates per array)."""
    for j in range(ns):
        o = j * L
        for c in range(C):
            i = 0.0
            a = 0.0
            b = 0.0
            if squared:
                for s in range(L):
                    x = float(pb[c, o + s])
                    y = float(tb[c, o + s])
                    i += x * y
                    a += x * x
                    b += y * y
            else:
                for s in range(L):
                    x = float(pb[c, o + s])
                    y = float(tb[c, o + s])
                    i += x * y
                    a += x
                    b += y
            part[row0 + j, c, 0] += i
            part[row0 + j, c, 1] += a
            part[row0 + j, c, 2] += b


@njit(**_JIT)
def _targets(tm, lab, n, ns, s0, L, labels, has_ignore, ign, C, tb, kb):
    """Targets (tb, C x ns L) and whether each position is kept (kb) of positions
    [s0, s0 + L) of samples [n, n + ns) (sample n + j in columns [j L, (j + 1) L));
    returns the number of invalid entries."""
    bad = 0
    one = _like(tb[0, 0], 1.0)
    zero = _like(tb[0, 0], 0.0)
    if labels:
        for j in range(ns):
            for s in range(L):
                lv = lab[n + j, _U(s0 + s)]
                keep = not (has_ignore and lv == ign)
                kb[j * L + s] = keep
                bad += keep and (lv < 0 or lv >= C)
        for c in range(C):
            for j in range(ns):
                o = j * L
                for s in range(L):
                    tb[c, o + s] = one if kb[o + s] and lab[n + j, _U(s0 + s)] == c else zero
    else:
        for c in range(C):
            for j in range(ns):
                o = j * L
                for s in range(L):
                    v = _like(one, tm[n + j, c, _U(s0 + s)])
                    tb[c, o + s] = v
                    bad += (v < zero) | (v > one)
        for s in range(ns * L):
            kb[s] = True
    return bad


@njit(**_JIT)
def _probs(z, n, ns, s0, L, act, masked, pb, eb, kb):
    """Probabilities (pb, C x ns L) of positions [s0, s0 + L) of samples [n, n + ns)
    (columns as in :func:`_targets`; 0 where not kb when ``masked``), for the sigmoid
    also e^-|z| (eb); returns the number of invalid entries (see the module notes)."""
    C = z.shape[1]
    M = ns * L
    bad = 0
    one = _like(z[0, 0, 0], 1.0)
    zero = _like(z[0, 0, 0], 0.0)
    if act == 0:
        for c in range(C):
            for j in range(ns):
                o = j * L
                for s in range(L):
                    v = z[n + j, c, _U(s0 + s)]
                    pb[c, o + s] = v
                    bad += (v < zero) | (v > one)
    elif act == 1:
        for c in range(C):
            for j in range(ns):
                o = j * L
                for s in range(L):
                    v = z[n + j, c, _U(s0 + s)]
                    e = _exp_neg(-abs(v))
                    eb[c, o + s] = e
                    q = one / (one + e)
                    pb[c, o + s] = q if v >= zero else e * q
    else:
        # the softmax over the classes of each position: the maximum (scratch row eb[0]),
        # e^(z - m), the sum (eb[1])
        for j in range(ns):
            o = j * L
            for s in range(L):
                eb[0, o + s] = z[n + j, 0, _U(s0 + s)]
        for c in range(1, C):
            for j in range(ns):
                o = j * L
                for s in range(L):
                    v = z[n + j, c, _U(s0 + s)]
                    eb[0, o + s] = v if v > eb[0, o + s] else eb[0, o + s]
        for s in range(M):
            ms = eb[0, s]
            bad += not (ms - ms == zero)  # NaN or an infinity: not ours
            eb[1, s] = zero
        for c in range(C):
            for j in range(ns):
                o = j * L
                for s in range(L):
                    e = _exp_neg(z[n + j, c, _U(s0 + s)] - eb[0, o + s])
                    pb[c, o + s] = e
                    eb[1, o + s] += e
        for s in range(M):
            eb[1, s] = one / eb[1, s]
        for c in range(C):
            for s in range(M):
                pb[c, s] = pb[c, s] * eb[1, s]
    if masked:
        for c in range(C):
            for s in range(M):
                pb[c, s] = pb[c, s] if kb[s] else zero
    return bad


@njit(**_JIT)
def _keep(pb, g, n, ns, s0, L, to_g):
    """Copy the probabilities of a block between the scratch rows pb and g (N, C, S)
    (columns as in :func:`_targets`): into g when ``to_g``, else back into pb."""
    for c in range(pb.shape[0]):
        for j in range(ns):
            o = j * L
            for s in range(L):
                if to_g:
                    g[n + j, c, _U(s0 + s)] = pb[c, o + s]
                else:
                    pb[c, o + s] = g[n + j, c, _U(s0 + s)]


@njit(**_JIT)
def _item_sums(z, tm, lab, n0, n1, a, b, j, parts, act, labels, has_ignore, ign, squared,
               want_grad, g, part):
    """Step 1 of positions [a, b) of samples [n0, n1) through scratch rows: the sums per
    class into part[n * parts + j] (C x 3); returns the number of invalid entries."""
    C = z.shape[1]
    bad = 0
    L = _block_len(C, a, b)
    q = _per_block(C, a, b, parts == 1)
    pb, tb, eb, kb = _scratch(z, q * L)
    for n in range(n0, n1):
        row = n * parts + j
        for c in range(C):
            part[row, c, 0] = 0.0
            part[row, c, 1] = 0.0
            part[row, c, 2] = 0.0
    for n in range(n0, n1, q):
        ns = min(q, n1 - n)
        for s0 in range(a, b, L):
            m = min(L, b - s0)
            bad += _targets(tm, lab, n, ns, s0, m, labels, has_ignore, ign, C, tb, kb)
            bad += _probs(z, n, ns, s0, m, act, labels and has_ignore, pb, eb, kb)
            if want_grad and act == 2:  # keep the softmax for step 3 (in g)
                _keep(pb, g, n, ns, s0, m, True)
            _sums(pb, tb, C, m, ns, squared, part, n * parts + j)
    return bad


@njit(inline="always", **_JIT)
def _sample_coefficients(part, n, parts, per_class, k, c_i, c_p, c_t, u, v, w, smooth,
                         scale, kind, gamma, wtype, count, coef):
    r"""Step 2 of sample n from the sums of its ``parts`` items (part): the coefficients
    into coef[n] (G x 3); returns the sample's value. ``kind``: :data:`RATIO` (the index
    num / den; with ``gamma > 0`` the focal loss :math:`(1 - R)^\gamma`),
    :data:`GENERALIZED` (one index over the classes weighted by the inverse volume,
    ``wtype`` 2 square, 1 simple, 0 uniform; per-class coefficients) or :data:`MCC`
    (``count`` positions per group; ``smooth`` is MCC's eps)."""
    C = part.shape[1]
    G = C if per_class else 1
    for gc in range(G):
        coef[n, gc, 0] = 0.0
        coef[n, gc, 1] = 0.0
        coef[n, gc, 2] = 0.0
    for j in range(n * parts, (n + 1) * parts):  # the sums, kept in coef for now
        for c in range(C):
            gc = c if per_class else 0
            for q in range(3):
                coef[n, gc, q] += part[j, c, q]
    if kind == GENERALIZED:  # per_class: coef[n, c] holds class c's sums
        w_max = 0.0
        for c in range(C):
            vol = coef[n, c, 2]
            wc = 0.0 if not vol > 0.0 else (1.0 / (vol * vol) if wtype == 2 else
                                            (1.0 / vol if wtype == 1 else 1.0))
            w_max = wc if wc > w_max else w_max
        inter = 0.0
        size = 0.0
        for c in range(C):
            vol = coef[n, c, 2]
            wc = w_max if not vol > 0.0 else (1.0 / (vol * vol) if wtype == 2 else
                                              (1.0 / vol if wtype == 1 else 1.0))
            inter += wc * coef[n, c, 0]
            size += wc * (coef[n, c, 1] + vol)
            coef[n, c, 2] = wc  # the weight, for the coefficients below
        den = size + smooth
        ok = den != 0.0
        r = (2.0 * inter + smooth) / den if ok else 1.0
        f = scale / den if ok else 0.0
        for c in range(C):
            wc = coef[n, c, 2]
            coef[n, c, 0] = wc * r * f if ok else 0.0
            coef[n, c, 1] = -2.0 * wc * f if ok else 0.0
            coef[n, c, 2] = 0.0
        return 1.0 - r
    val = 0.0
    per = scale / G
    for gc in range(G):
        ii, pp, tt = coef[n, gc, 0], coef[n, gc, 1], coef[n, gc, 2]
        if kind == MCC:
            tp = ii + smooth
            fp = pp - ii + smooth
            fn = tt - ii + smooth
            tn = count - pp - tt + ii + smooth
            a, b, c_, d = tp + fp, tp + fn, tn + fp, tn + fn
            den = math.sqrt(a * b * c_ * d)
            ok = den != 0.0  # NaN too: it propagates
            r = (tp * tn - fp * fn) / den if ok else 0.0  # an empty group: index 0
            val += 1.0 - r
            f = per / den if ok else 0.0
            dden = 0.5 * den * (1.0 / a - 1.0 / d) if ok else 0.0
            coef[n, gc, 0] = (r * dden + b) * f if ok else 0.0
            coef[n, gc, 1] = -(b + c_) * f if ok else 0.0
            coef[n, gc, 2] = 0.0
            continue
        num = k * ii + smooth
        den = c_i * ii + c_p * pp + c_t * tt + smooth
        ok = den != 0.0  # NaN too: it propagates
        r = num / den if ok else 1.0
        slope = 1.0
        if gamma > 0.0:  # (1 - R)^gamma, 1 - R floored at 0 (rounding)
            base = 1.0 - r
            base = 0.0 if base < 0.0 else base
            val += base if gamma == 1.0 else base ** gamma
            if gamma != 1.0:
                slope = 0.0 if base == 0.0 else gamma * base ** (gamma - 1.0)
        else:
            val += 1.0 - r
        f = slope * per / den if ok else 0.0
        coef[n, gc, 0] = r * u * f if ok else 0.0
        coef[n, gc, 1] = (r * v - k) * f if ok else 0.0
        coef[n, gc, 2] = r * w * f if ok else 0.0
    return val / G


@njit(**_JIT)
def _item_gradient(z, tm, lab, n0, n1, a, b, act, labels, has_ignore, ign, per_class, coef,
                   g):
    """Step 3 of positions [a, b) of samples [n0, n1) through scratch rows: the scaled
    gradient into g."""
    C = z.shape[1]
    L = _block_len(C, a, b)
    q = _per_block(C, a, b, a == 0 and b == z.shape[2])
    pb, tb, eb, kb = _scratch(z, q * L)
    for n in range(n0, n1, q):
        ns = min(q, n1 - n)
        for s0 in range(a, b, L):
            m = min(L, b - s0)
            _targets(tm, lab, n, ns, s0, m, labels, has_ignore, ign, C, tb, kb)
            if act == 2:
                _keep(pb, g, n, ns, s0, m, False)
            else:
                _probs(z, n, ns, s0, m, act, labels and has_ignore, pb, eb, kb)
            _block_gradient(z, n, ns, s0, m, act, per_class, coef, pb, tb, eb, kb, g)


@njit(**_JIT)
def _block_gradient(z, n, ns, s0, L, act, per_class, coef, pb, tb, eb, kb, g):
    """The scaled gradient of a block (columns as in :func:`_targets`) into g: with
    respect to p from the coefficients, then the activation's chain rule."""
    C = z.shape[1]
    zero = _like(z[0, 0, 0], 0.0)
    one = _like(z[0, 0, 0], 1.0)
    for j in range(ns):
        o = j * L
        for c in range(C):
            gc = c if per_class else 0
            ca = _like(zero, coef[n + j, gc, 0])
            cb = _like(zero, coef[n + j, gc, 1])
            cw = _like(zero, coef[n + j, gc, 2])
            for s in range(L):
                gp = ca + cb * tb[c, o + s] + cw * pb[c, o + s]
                g[n + j, c, _U(s0 + s)] = gp if kb[o + s] else zero
        if act == 1:  # sigma'(z) = sigma(z) sigma(-z) = p e / (1 + e) or p / (1 + e)
            for c in range(C):
                for s in range(L):
                    e = eb[c, o + s]
                    q = one / (one + e)
                    sm = e * q if z[n + j, c, _U(s0 + s)] >= zero else q
                    g[n + j, c, _U(s0 + s)] = g[n + j, c, _U(s0 + s)] * (pb[c, o + s] * sm)
        elif act == 2:  # p_c (g_c - sum_k p_k g_k)
            for s in range(L):
                eb[0, o + s] = zero
            for c in range(C):
                for s in range(L):
                    eb[0, o + s] += pb[c, o + s] * g[n + j, c, _U(s0 + s)]
            for c in range(C):
                for s in range(L):
                    gp = pb[c, o + s] * (g[n + j, c, _U(s0 + s)] - eb[0, o + s])
                    g[n + j, c, _U(s0 + s)] = gp if kb[o + s] else zero


def _overlap(z, tm, lab, flags, ign, consts, g, values, parts, per):
    """Dice, Tversky or Jaccard of z (N, C, S): per-sample values (float64) into
    ``values``, the scaled gradient into g (N, C, S) when wanted; ``tm``: the mask target
    (N, C, S), or ``lab``: labels (N, S). ``flags``: the activation (0 none, 1 sigmoid,
    2 softmax) plus :data:`LABELS`, :data:`IGNORE` (``ign`` then is ``ignore_index``),
    :data:`SQUARED`, :data:`PER_CLASS`, :data:`GRAD`; ``consts``: (k, c_I, c_P, c_T, u,
    v, w, smooth, scale, kind, gamma, weight type, count) (scale: the reduction's factor;
    the last four as in :func:`_sample_coefficients`). ``parts`` spans per sample,
    ``per`` samples per item (:func:`split`; 1 and N in the serial build). (Few arguments:
    numba's dispatcher types each one on every call.) Returns (invalid entries, sum of
    the values)."""
    act = flags & 3
    labels = (flags & LABELS) != 0
    has_ignore = (flags & IGNORE) != 0
    squared = (flags & SQUARED) != 0
    per_class = (flags & PER_CLASS) != 0
    want_grad = (flags & GRAD) != 0
    k, c_i, c_p, c_t, u, v, w, smooth, scale, kind_f, gamma, wtype_f, count = consts
    kind, wtype = int(kind_f), int(wtype_f)
    N, C, S = z.shape
    items = (N + per - 1) // per * parts
    whole = parts == 1  # items of whole samples: steps 2 and 3 right after step 1
    part = np.empty((N * parts, C, 3))
    coef = np.empty((N, C if per_class else 1, 3))
    badv = np.empty(items, dtype=np.int64)
    for it in prange(items):
        n0, n1, a, b, j = _span(it, parts, per, N, S)
        bad = _item_sums(z, tm, lab, n0, n1, a, b, j, parts, act, labels, has_ignore, ign,
                         squared, want_grad, g, part)
        badv[it] = bad
        if whole and bad == 0:
            for n in range(n0, n1):
                values[n] = _sample_coefficients(part, n, 1, per_class, k, c_i, c_p, c_t,
                                                 u, v, w, smooth, scale, kind, gamma, wtype,
                                                 count, coef)
            if want_grad:
                _item_gradient(z, tm, lab, n0, n1, a, b, act, labels, has_ignore, ign,
                               per_class, coef, g)
    bad = 0
    for it in range(items):
        bad += badv[it]
    if bad:
        return bad, 0.0
    total = 0.0
    for n in range(N):
        if not whole:
            values[n] = _sample_coefficients(part, n, parts, per_class, k, c_i, c_p, c_t,
                                             u, v, w, smooth, scale, kind, gamma, wtype,
                                             count, coef)
        total += values[n]
    if want_grad:
        # a finite value with a coefficient that is not: 1 / den overflowed (a subnormal
        # denominator, e.g. squared masks of 1e-155); the generic path divides each
        # element's numerator instead, and answers
        for n in range(N):
            if values[n] - values[n] == 0.0:
                for gc in range(coef.shape[1]):
                    for q in range(3):
                        c = coef[n, gc, q]
                        if c - c != 0.0:
                            return 1, 0.0
    if want_grad and not whole:
        for it in prange(items):
            n0, n1, a, b, j = _span(it, parts, per, N, S)
            _item_gradient(z, tm, lab, n0, n1, a, b, act, labels, has_ignore, ign,
                           per_class, coef, g)
    return 0, total


overlap_parallel, overlap_serial = _builds(_overlap)
