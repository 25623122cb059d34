r"""Sequence losses: Connectionist Temporal Classification (CTC).

* :data:`ctc_loss` -- ``torch.nn.functional.ctc_loss`` and ``optax.ctc_loss``: the
  negative log-likelihood of a label sequence summed over every frame-wise alignment,
  computed by the forward-backward recursion in log space.

The prediction is a sequence of per-frame class scores, ``(T, N, C)`` (PyTorch's layout,
the default) or ``(N, T, C)`` (``layout="NTC"``, Optax's); the other three inputs are
integers and are not differentiable. The unreduced loss has one value per sequence,
shape ``(N,)``, and ``reduction="mean"`` is PyTorch's: each sequence's loss divided by
its target length, then averaged over the batch (see :class:`CTCLoss`).

On plain NumPy arrays a fused numba kernel (:mod:`losskit.kernels.ctc`) runs the
recursion per sequence, the sequences in parallel; the generic kernel below runs the same
recursion with Array-API operations (one step per frame) on every library (PyTorch on any
device, JAX under ``jit``), and on NumPy where numba is off.
"""

from __future__ import annotations

import contextvars
import math

import array_api_compat
import numpy as np

from ..core.arrays import can_inspect, device_of, index_dtype, to_float
from ..core.dispatch import register_fast_path
from ..core.loss import Loss, Terms, register
from ..core.primitives import _log_softmax, _safe_log
from ..core.validation import (_dtype_name, check_choice, check_integer, defer_invalid)
from ..kernels import ctc as _ctc_kernels

__all__ = ["ctc_loss"]

LAYOUTS = ("TNC", "NTC")

#: set by :meth:`CTCLoss._generic` for one evaluation: whether the reduction is "mean",
#: which for CTC divides each sequence's loss by its target length (PyTorch's mean)
_PER_LENGTH: contextvars.ContextVar[bool] = contextvars.ContextVar("losskit_ctc_mean",
                                                                   default=False)


# ---------------------------------------------------------------------------- inputs
def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` of ctc_loss must be True or False; got {value!r}")
    return bool(value)


def _integers(ctx, x, name: str):
    """An integer array (booleans and floats are refused: lengths and labels are counts
    and class indices)."""
    xp = ctx.xp
    a = ctx.asarray(x, name)
    if not xp.isdtype(a.dtype, "integral"):
        raise TypeError(f"`{name}` of ctc_loss must be an integer array; got dtype "
                        f"{_dtype_name(a.dtype)}")
    idx = index_dtype(xp)
    return xp.astype(a, idx) if a.dtype != idx else a


def _lengths(ctx, x, name: str, n: int, hi: int | None, what: str):
    """``(N,)`` lengths in ``[0, hi]`` (``hi`` None: no upper bound)."""
    xp = ctx.xp
    a = _integers(ctx, x, name)
    if tuple(a.shape) != (n,):
        raise ValueError(f"`{name}` of ctc_loss must have shape ({n},), one length per "
                         f"sequence of the batch; got {tuple(a.shape)}")
    bad = (a < 0) if hi is None else ((a < 0) | (a > hi))
    if n and can_inspect(a):
        if bool(xp.any(bad)):
            worst = int(to_float(xp.min(a))) if bool(xp.any(a < 0)) else int(
                to_float(xp.max(a)))
            bound = "[0, inf)" if hi is None else f"[0, {hi}]"
            raise ValueError(f"`{name}` of ctc_loss must lie in {bound} ({what}); got "
                             f"{worst}")
    elif n:
        defer_invalid(bad)
    return a


def _padded_labels(ctx, targets, tl, n: int, c: int, blank: int):
    """The targets as a padded ``(N, S)`` array (entries past a sequence's length set to
    the blank) and S; padded ``(N, S)`` and concatenated 1-D targets are accepted."""
    xp = ctx.xp
    t = _integers(ctx, targets, "targets")
    inspect = can_inspect(t) and can_inspect(tl)
    if t.ndim == 2:
        if t.shape[0] != n:
            raise ValueError(f"padded `targets` of ctc_loss must have shape (N, S) with N = "
                             f"{n} (the batch); got {tuple(t.shape)}")
        s = t.shape[1]
        if n and inspect:
            if bool(xp.any(tl > s)):
                raise ValueError(f"`target_lengths` of ctc_loss must lie in [0, {s}] (the "
                                 f"width S of the padded targets); got "
                                 f"{int(to_float(xp.max(tl)))}")
        elif n:
            defer_invalid(tl > s)
        labels = t
    elif t.ndim == 1:
        total = t.shape[0]
        if inspect:
            got = int(to_float(xp.sum(tl))) if n else 0
            if got != total:
                raise ValueError(f"concatenated `targets` of ctc_loss must hold "
                                 f"sum(target_lengths) = {got} labels; got {total}")
            s = int(to_float(xp.max(tl))) if n else 0
        else:
            defer_invalid(xp.sum(tl) != total)
            s = total  # an upper bound of every length, known without reading values
        zero = xp.zeros((1,), dtype=tl.dtype, device=ctx.device)
        ends = xp.cumulative_sum(tl) if n else tl
        starts = xp.concat([zero, ends[:-1]]) if n else tl
        pos = xp.reshape(starts, (n, 1)) + xp.reshape(
            xp.arange(s, dtype=tl.dtype, device=ctx.device), (1, s))
        if total:
            pos = xp.clip(pos, 0, total - 1) if hasattr(xp, "clip") else xp.where(
                pos < total, pos, xp.zeros_like(pos))
            labels = xp.reshape(xp.take(t, xp.reshape(pos, (-1,)), axis=0), (n, s))
        else:
            labels = xp.zeros((n, s), dtype=t.dtype, device=ctx.device)
    else:
        raise ValueError("`targets` of ctc_loss must be padded, shape (N, S), or the "
                         "concatenation of every target, shape (sum(target_lengths),); got "
                         f"shape {tuple(t.shape)}")
    used = xp.reshape(xp.arange(s, dtype=tl.dtype, device=ctx.device), (1, s)) < \
        xp.reshape(tl, (n, 1))
    bad = used & ((labels < 0) | (labels >= c) | (labels == blank))
    if n * s and can_inspect(labels):
        if bool(xp.any(bad)):
            worst = int(to_float(xp.max(xp.where(bad, labels, xp.full_like(labels, -(
                1 << 62))))))
            if worst == blank:
                raise ValueError(f"`targets` of ctc_loss must not contain the blank label "
                                 f"({blank}) within a sequence's target length: CTC "
                                 "inserts blanks itself")
            raise ValueError(f"`targets` of ctc_loss must hold class indices in [0, "
                             f"{c - 1}] (C={c} from the class axis of `log_probs`); got "
                             f"{worst}")
    elif n * s:
        defer_invalid(bad)
    ok = used & ~bad
    return xp.where(ok, labels, xp.full_like(labels, blank)), s


def _lse3(xp, a, b, c):
    """log(e^a + e^b + e^c), elementwise; -inf when all three are -inf."""
    m = xp.maximum(xp.maximum(a, b), c)
    ms = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    return _safe_log(xp, xp.exp(a - ms) + xp.exp(b - ms) + xp.exp(c - ms)) + ms


# ---------------------------------------------------------------------------- the loss
class CTCLoss(Loss):
    r"""Connectionist Temporal Classification loss, ``torch.nn.functional.ctc_loss``.

    For a sequence of :math:`T_n` frames with per-frame log-probabilities
    :math:`\log p_t(c)` and a target :math:`y` of :math:`L_n` labels, the loss is the
    negative log-likelihood of :math:`y` summed over every alignment :math:`\pi` (a label
    or the blank per frame) that collapses to :math:`y` (merge repeats, then drop
    blanks):

    .. math::

        \ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(y)} \prod_{t=1}^{T_n} p_t(\pi_t)

    Parameters
    ----------
    log_probs : floating array of shape (T, N, C) (``layout="NTC"``: (N, T, C))
        Per-frame log-probabilities over the C classes, blank included (log-softmax
        outputs, as PyTorch expects). Each frame is normalised with a log-softmax first,
        which leaves log-softmax outputs unchanged: raw logits (what Optax takes) give
        the same value and gradient as their log-softmax. Frames at or after a sequence's
        input length are ignored (they may hold anything).
    targets : integer array of shape (N, S) or (sum(target_lengths),)
        The label sequences: padded, row n holding its ``target_lengths[n]`` labels first
        (the rest is ignored), or all concatenated in batch order, as PyTorch accepts.
        Labels lie in ``[0, C)`` and are never the blank; repeated labels are allowed (an
        alignment then needs a blank between them).
    input_lengths : integer array of shape (N,)
        :math:`T_n`, the frames of each sequence, in ``[0, T]``.
    target_lengths : integer array of shape (N,)
        :math:`L_n`, the labels of each sequence, in ``[0, S]``.
    blank : int, default 0
        The class index of the blank, in ``[0, C)`` (Optax's ``blank_id``).
    zero_infinity : bool, default False
        Give an impossible sequence (no alignment fits: :math:`T_n` is shorter than
        :math:`L_n` plus the number of repeated neighbours in :math:`y`) the value 0 and a
        zero gradient instead of ``inf`` and a NaN gradient (PyTorch's option).
    layout : {"TNC", "NTC"}, default "TNC"
        The axes of ``log_probs``: time first (PyTorch) or batch first (Optax, Keras).
        The gradient comes back in the same layout.
    reduction : {"none", "sum", "mean", "batchmean"}, default "mean"
        ``"none"``: the loss of each sequence, shape ``(N,)`` (``.grad`` is the gradient
        of their sum); ``"sum"``; ``"mean"``: **PyTorch's**, each sequence's loss divided
        by its target length :math:`\max(L_n, 1)`, then averaged over the sequences
        (weighted: :math:`\sum_n s_n \ell_n / \max(L_n, 1) / \sum_n s_n`);
        ``"batchmean"``: the sum divided by N, without the length normalisation (the mean
        of Optax's per-sequence losses). A mean over nothing is 0, with a zero gradient.
    sample_weight : array of shape (N,), optional
        Non-negative weight per sequence. A weight of 0 removes the sequence, even an
        impossible one.

    Returns
    -------
    array
        Per sequence, shape (N,), with ``reduction="none"``; else 0-d. ``.grad`` has the
        shape of ``log_probs``.

    Raises
    ------
    ValueError
        ``log_probs`` without 3 axes; lengths of the wrong shape, negative, or longer
        than T (input) or S (target); concatenated targets whose size is not
        ``sum(target_lengths)``; a label outside ``[0, C)`` or equal to the blank; a blank
        outside ``[0, C)``; an unknown ``layout``.
    TypeError
        Non-floating ``log_probs``; non-integer targets or lengths; ``blank`` not an int;
        ``zero_infinity`` not a bool.

    Notes
    -----
    With the extended label sequence :math:`y' = (\varnothing, y_1, \varnothing, \dots,
    y_L, \varnothing)` of length :math:`2L + 1` and :math:`\log p_t(c)` the log-softmax of
    frame t, the forward variables :math:`\alpha_t(s)` (every prefix ending in state s at
    frame t) follow, in log space,

    .. math::

        \alpha_t(s) = \log p_t(y'_s) + \operatorname{logsumexp}\bigl(\alpha_{t-1}(s),
        \alpha_{t-1}(s-1), [\alpha_{t-1}(s-2)]\bigr)

    where the skip :math:`s-2 \to s` is allowed only from one label to the next different
    label (:math:`y'_s \ne \varnothing` and :math:`y'_s \ne y'_{s-2}`: a repeated label
    needs the blank in between). Then :math:`\ell = -\operatorname{logsumexp}(
    \alpha_{T-1}(2L), \alpha_{T-1}(2L-1))`. The backward variables :math:`\beta_t(s)` run
    the same recursion from the end; the posterior of class c at frame t is
    :math:`\gamma_t(c) = \sum_{s: y'_s = c} e^{\alpha_t(s) + \beta_t(s) - \log p_t(y'_s) +
    \ell}` and the gradient with respect to the prediction is

    .. math::

        \frac{\partial \ell}{\partial \log p_t(c)} = p_t(c) - \gamma_t(c)
        \quad (t < T_n), \qquad 0 \quad (t \ge T_n).

    **Conventions.** This is exactly what PyTorch's ``ctc_loss`` backward returns for
    ``log_probs``: PyTorch's gradient assumes log-softmax inputs (its rows sum to 0), and
    it is the true derivative of the loss defined here, which normalises each frame; for
    log-softmax outputs the values are identical. A gradient taken through the
    log-softmax of logits is the same :math:`p - \gamma` either way. Optax's
    ``ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=...)`` takes
    logits, batch first: it is ``ctc_loss(logits, labels, T - logit_paddings.sum(1),
    S - label_paddings.sum(1), blank=blank_id, layout="NTC", reduction="none")`` for
    right-padded inputs (Optax requires right-padded labels; paddings 1.0 = padding), in
    value and in gradient with respect to the logits. Optax approximates log 0 by
    :math:`-10^5`, so an impossible sequence costs about :math:`10^5` there instead of
    ``inf``. Impossible sequences: value ``inf`` and a NaN gradient on their frames
    :math:`t < T_n`, as in PyTorch; ``zero_infinity=True`` makes both 0. An empty target
    (:math:`L_n = 0`) costs :math:`-\sum_t \log p_t(\varnothing)`.

    References
    ----------
    .. [1] A. Graves, S. Fernandez, F. Gomez, J. Schmidhuber, "Connectionist temporal
       classification: labelling unsegmented sequence data with recurrent neural
       networks", ICML 2006, doi:10.1145/1143844.1143891.

    Examples
    --------
    One frame and one label: the only alignment emits the label, so the loss is
    :math:`-\log p(\text{label}) = -\log 0.5`:

    >>> import numpy as np, losskit as lk
    >>> logp = np.log(np.array([[[0.25, 0.5, 0.25]]]))   # (T, N, C) = (1, 1, 3)
    >>> v = lk.ctc_loss(logp, np.array([[1]]), np.array([1]), np.array([1]), reduction="sum")
    >>> bool(np.isclose(v, np.log(2.0)))
    True
    >>> lk.ctc_loss.grad(logp, np.array([[1]]), np.array([1]), np.array([1]), reduction="sum")
    array([[[ 0.25, -0.5 ,  0.25]]])
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "ctc_loss"
    not_streamable = ("its batch axis is axis 1 in the default layout 'TNC', concatenated "
                      "targets have no row per sequence, and its mean divides each sequence "
                      "by its target length")
    family = "sequence"
    prediction = "log-probabilities per frame of a sequence (T, N, C)"
    target = "label sequences (padded or concatenated) with their lengths"
    inputs = ("log_probs", "targets", "input_lengths", "target_lengths")
    differentiable = ("log_probs",)
    formula = (r"\ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(y_n)} \prod_{t < T_n} "
               r"p_t(\pi_t)")
    gradient_formula = (r"\frac{\partial \ell_n}{\partial \log p_t(c)} = p_t(c) - "
                        r"\sum_{s: y'_s = c} e^{\alpha_t(s) + \beta_t(s) - \log p_t(y'_s) + "
                        r"\ell_n}\ (t < T_n)")
    when_to_use = (
        "Training a sequence model whose output frames are not aligned with the labels: "
        "speech and handwriting recognition, OCR of text lines, keyword spotting. The "
        "model emits one distribution per frame (with a blank class) and CTC sums over "
        "every alignment of the label sequence, so no frame-level segmentation is needed; "
        "it assumes frames are conditionally independent and at least as many as the "
        "labels (plus one per repeated pair)."
    )
    references = ("Graves, Fernandez, Gomez, Schmidhuber, Connectionist temporal "
                  "classification, ICML 2006, doi:10.1145/1143844.1143891",)

    def _generic(self, arrays, reduction, *rest):
        token = _PER_LENGTH.set(reduction == "mean")
        try:
            return super()._generic(arrays, reduction, *rest)
        finally:
            _PER_LENGTH.reset(token)

    def _compute(self, ctx, log_probs, targets, input_lengths, target_lengths, *, need_grad,
                 blank=0, zero_infinity=False, layout="TNC"):
        xp = ctx.xp
        blank = check_integer("blank", blank, loss=ctx.loss)
        zero_infinity = _check_bool("zero_infinity", zero_infinity)
        check_choice("layout", layout, LAYOUTS)
        if log_probs.ndim != 3:
            shape = "(T, N, C)" if layout == "TNC" else "(N, T, C)"
            raise ValueError(f"`log_probs` of ctc_loss must have 3 axes, {shape} "
                             f"(layout={layout!r}); got shape {tuple(log_probs.shape)}")
        lp = log_probs if layout == "TNC" else xp.permute_dims(log_probs, (1, 0, 2))
        T, N, C = (int(d) for d in lp.shape)
        if not 0 <= blank < C:
            raise ValueError(f"`blank` of ctc_loss must lie in [0, {C - 1}] (C={C} classes "
                             f"on the last axis of `log_probs`); got {blank}")
        tl = _lengths(ctx, target_lengths, "target_lengths", N, None, "labels per sequence")
        il = _lengths(ctx, input_lengths, "input_lengths", N, T,
                      f"frames per sequence; T={T}")
        labels, S = _padded_labels(ctx, targets, tl, N, C, blank)
        K = 2 * S + 1
        dev, work = ctx.device, ctx.work
        ninf = -math.inf

        # the extended labels y' = (blank, y1, blank, ..., yS, blank) and the skips
        ext = xp.concat([xp.reshape(xp.stack([xp.full_like(labels, blank), labels], axis=-1),
                                    (N, 2 * S)),
                         xp.full((N, 1), blank, dtype=labels.dtype, device=dev)], axis=1)
        idx = index_dtype(xp)
        s_idx = xp.reshape(xp.arange(K, dtype=idx, device=dev), (1, K))
        prev2 = xp.concat([xp.full((N, 2), -1, dtype=ext.dtype, device=dev), ext],
                          axis=1)[:, :K]
        skip = (s_idx >= 2) & (ext != blank) & (ext != prev2)
        skip_up = xp.concat([skip, xp.zeros((N, 2), dtype=xp.bool, device=dev)],
                            axis=1)[:, 2:]  # skip_up[s] = skip[s + 2]

        lpn = _log_softmax(xp, lp, axis=-1)  # (T, N, C)
        if T and N and K:
            flat = (xp.reshape(xp.arange(N, dtype=idx, device=dev), (N, 1)) * C
                    + xp.astype(ext, idx))
            lpe = xp.reshape(xp.take(xp.reshape(lpn, (T, N * C)), xp.reshape(flat, (-1,)),
                                     axis=1), (T, N, K))
        else:
            lpe = xp.zeros((T, N, K), dtype=work, device=dev)

        neg = xp.full((N, K), ninf, dtype=work, device=dev)
        neg2 = xp.full((N, 2), ninf, dtype=work, device=dev)

        def down(a, k):  # a[s - k], -inf below 0
            return xp.concat([neg2[:, :k], a], axis=1)[:, :K]

        def up(a, k):  # a[s + k], -inf past the end
            return xp.concat([a, neg2[:, :k]], axis=1)[:, k:]

        frames = xp.arange(T, dtype=idx, device=dev)
        il_col = xp.reshape(il, (N, 1))

        def forward(alpha, lpe_t, t):
            new = _lse3(xp, alpha, down(alpha, 1), xp.where(skip, down(alpha, 2), neg))
            return xp.where(il_col > t, new + lpe_t, alpha)

        # forward: a virtual state "before frame 0" at s = 0 starts both allowed paths
        alpha, alphas = _scan(xp, forward, xp.where(s_idx == 0, xp.zeros_like(neg), neg),
                              (lpe, frames))
        last = xp.reshape(2 * tl, (N, 1))
        final = (s_idx == last) | ((s_idx == last - 1) & (last > 0))
        ll = _lse_rows(xp, xp.where(final, alpha, neg))  # log-likelihood, (N,)
        nll = -ll
        impossible = ll == ninf
        if zero_infinity:
            value = xp.where(impossible, xp.zeros_like(nll), nll)
        else:
            value = nll
        per_length = _PER_LENGTH.get()
        if per_length:
            lengths = xp.astype(xp.where(tl > 0, tl, xp.ones_like(tl)), work)
            value = value / lengths
        expand = _expander(xp, layout, N)
        if not need_grad:
            return Terms(value, None, expand=expand)

        # backward: beta_t(s) includes the emission at t, as alpha_t(s) does
        end = xp.where(final, xp.zeros_like(neg), neg)

        def backward(beta, lpe_t, t):
            cont = _lse3(xp, beta, up(beta, 1), xp.where(skip_up, up(beta, 2), neg))
            return xp.where(il_col - 1 == t, end + lpe_t,
                            xp.where(il_col - 1 > t, cont + lpe_t, neg))

        _, betas = _scan(xp, backward, neg, (lpe, frames), reverse=True)
        if T and N:
            A, B = alphas, betas  # (T, N, K)
            emit = lpe > ninf
            llc = xp.reshape(xp.where(impossible, xp.zeros_like(ll), ll), (1, N, 1))
            occ = xp.where(emit, xp.exp(A + B - xp.where(emit, lpe, xp.zeros_like(lpe)) - llc),
                           xp.zeros_like(lpe))  # (T, N, K)
            onehot = xp.astype(xp.reshape(ext, (N, K, 1)) == xp.reshape(
                xp.arange(C, dtype=ext.dtype, device=dev), (1, 1, C)), work)
            post = xp.permute_dims(xp.matmul(xp.permute_dims(occ, (1, 0, 2)), onehot),
                                   (1, 0, 2))  # (T, N, C)
            g = xp.exp(lpn) - post
        else:
            g = xp.zeros((T, N, C), dtype=work, device=dev)
        t_idx = xp.reshape(xp.arange(T, dtype=index_dtype(xp), device=dev), (T, 1))
        active = xp.reshape(t_idx < xp.reshape(il, (1, N)), (T, N, 1))
        bad = xp.reshape(impossible, (1, N, 1))
        fill = xp.zeros_like(g) if zero_infinity else xp.full_like(g, math.nan)
        g = xp.where(active, xp.where(bad, fill, g), xp.zeros_like(g))
        if per_length:
            g = g / xp.reshape(lengths, (1, N, 1))
        if layout == "NTC":
            g = xp.permute_dims(g, (1, 0, 2))
        return Terms(value, g, expand=expand)


def _scan(xp, step, init, xs, *, reverse=False):
    """``carry = step(carry, *x_t)`` over the leading axis of the arrays ``xs`` (backwards
    with ``reverse``): the last carry and every carry stacked in frame order, ``(T, ...)``.
    On JAX a ``lax.scan`` (the step is traced and compiled once, not once per frame)."""
    if array_api_compat.is_jax_namespace(xp):
        from jax import lax

        def body(carry, x):
            new = step(carry, *x)
            return new, new

        return lax.scan(body, init, xs, reverse=reverse)
    T = xs[0].shape[0]
    carry, out = init, [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        carry = out[t] = step(carry, *(a[t, ...] for a in xs))
    stacked = xp.stack(out) if T else xp.zeros((0,) + tuple(init.shape), dtype=init.dtype,
                                               device=device_of(init))
    return carry, stacked


def _lse_rows(xp, a):
    """logsumexp over the last axis; -inf for a row of -inf (or an empty row)."""
    if a.shape[-1] == 0:
        return xp.full(a.shape[:-1], -math.inf, dtype=a.dtype, device=device_of(a))
    m = xp.max(a, axis=-1, keepdims=True)
    ms = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    return xp.reshape(_safe_log(xp, xp.sum(xp.exp(a - ms), axis=-1, keepdims=True)) + ms,
                      a.shape[:-1])


def _expander(xp, layout, n):
    """Maps per-sequence (N,) arrays to ones that broadcast against ``log_probs``."""
    shape = (1, n, 1) if layout == "TNC" else (n, 1, 1)

    def expand(a):
        return xp.reshape(a, shape)
    return expand


ctc_loss = register(CTCLoss())

# the fused NumPy kernel (losskit.kernels.ctc), consulted by the pipeline
register_fast_path(CTCLoss, _ctc_kernels.ctc_loss)
