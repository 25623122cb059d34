r"""Preference losses fused with the language model's output layer.

:data:`linear_preference_loss` takes what Liger-Kernel's ``LigerFusedLinear*Loss`` modules
take, the last hidden states of a batch of completions, the output layer's weight and bias
and the target tokens, and returns a sequence-level preference loss (DPO, SimPO, ORPO, CPO,
KTO) with its closed-form gradients for the hidden states, the weight and the bias. The
N x V logits never exist: the per-token log-probabilities come from
:data:`~losskit.losses.linear_logprobs.linear_token_logprobs` in blocks of rows, the
sequence-level loss and its gradient with respect to the sequence log-probabilities from
:mod:`losskit.losses.preference` / :mod:`losskit.losses.preference_odds` (their math is
stated once, there), and the chain rule back through the head is one vector-Jacobian
product of the token log-probabilities.

**Passes.** NumPy arrays and PyTorch tensors run one pass over blocks of whole pairs
(whole sequences for KTO): a block's logits give its sequences' log-probabilities, the
sequence loss gives their cotangents, and the same block (still in memory) becomes the
gradient of the logits: three matrix products of size (tokens x d x V), the minimum; a
block holds as many pairs as fit 32 MiB of logits, and at least one pair; tokens whose
target is ``ignore_index`` (the prompt) are left out of the blocks. Other Array-API
libraries (JAX, CuPy, Dask) take two passes through ``linear_token_logprobs``: the
log-probabilities, then their vector-Jacobian product (four products). A reference model
(``ref_hidden``, ``ref_weight``) adds one product, without gradients.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..core.arrays import as_array, compute_dtype, device_of, without_autograd
from ..core.loss import (Context, Loss, check_out, reduced_value, register,
                         returned_gradients)
from ..core.validation import (
    check_choice,
    check_floating,
    check_scalar,
    deferred_checks,
)
from . import linear_cross_entropy as _lce
from .linear_logprobs import linear_token_logprobs, output_layer, reference_logprobs
from .preference import dpo_loss
from .preference_odds import cpo_loss, kto_loss, orpo_loss, simpo_loss

__all__ = ["linear_preference_loss"]

#: the sequence-level losses, by Liger-Kernel's module name
_LOSSES = {"dpo": dpo_loss, "simpo": simpo_loss, "orpo": orpo_loss, "cpo": cpo_loss,
           "kto": kto_loss}
#: default logits per block of whole pairs (at least one pair), in bytes: half of
#: linear_cross_entropy's. One pair of 256-token sequences of a 16k vocabulary per block
#: instead of two cuts the memory beyond the gradients from 56 to 40 MiB (benchmarks/
#: lm_head.py) at a few percent in time once the prompt's rows are left out of the blocks
#: (64 MiB cost 11% less time before, when the blocks multiplied every row)
_GROUP_BLOCK_BYTES = 32 * 2**20
#: the options of the sequence-level losses that ``linear_preference_loss`` passes on
_LOSS_OPTIONS = ("beta", "variant", "label_smoothing", "discopop_tau", "f_divergence",
                 "f_alpha", "gamma", "kl")


class LinearPreferenceLoss(Loss):
    r"""A preference loss (DPO, SimPO, ORPO, CPO, KTO) of a linear output layer's tokens.

    ``linear_preference_loss(hidden, weight, targets, bias, loss="dpo")`` equals
    ``dpo_loss(chosen_logps, rejected_logps, ...)`` where the sequence log-probabilities are
    the sums (or, with ``average_log_prob``, the means) over each sequence's target tokens of
    ``log_softmax(hidden @ weight.T + bias)`` at the target, never holding the logits of
    more than one block of pairs. Liger-Kernel's layout and conventions.

    Parameters
    ----------
    hidden : floating array of shape (2B, T, d) (paired losses) or (B, T, d) (``"kto"``)
        The policy's last hidden states; for the paired losses the B chosen sequences come
        first, then the B rejected ones, pair i being rows i and B + i (Liger-Kernel's
        layout).
    weight : floating array of shape (V, d)
        The output layer's weight (``torch.nn.Linear`` layout).
    targets : integer array of shape (2B, T) or (B, T)
        The completion tokens (already shifted: the target of position t is the token at
        t + 1); ``ignore_index`` marks prompt and padding positions.
    bias : floating array of shape (V,), optional
        The output layer's bias.
    ref_hidden, ref_weight, ref_bias : arrays, optional
        The reference model's hidden states and output layer (same shapes), for the losses
        that use a reference (``"dpo"``, ``"kto"``); without them the reference
        log-probabilities are 0 (reference-free, as Liger-Kernel without a reference
        model). No gradient flows to them.
    loss : {"dpo", "simpo", "orpo", "cpo", "kto"}, default "dpo"
        The sequence-level loss: :data:`~losskit.dpo_loss`, :data:`~losskit.simpo_loss`,
        :data:`~losskit.orpo_loss`, :data:`~losskit.cpo_loss`, :data:`~losskit.kto_loss`.
    ignore_index : int, default -100
        Target value of the positions that take no part. On NumPy and PyTorch their rows
        are left out of the blocks: a prompt's tokens cost no matrix product.
    average_log_prob : bool, default False
        Divide each sequence's log-probability by its number of target tokens (Liger's
        SimPO and ORPO modules average, its DPO, CPO and KTO modules sum).
    nll_alpha : float >= 0, default 0
        Add ``nll_alpha`` times the cross-entropy of the chosen sequences' tokens (mean over
        every chosen token of the batch): Liger's ``alpha`` with ``compute_nll_loss=True``
        (its ORPO and SimPO modules add it with 1.0, CPO with 1.0; DPO not by default).
        Paired losses only.
    desirable : boolean array of shape (B,)
        ``"kto"`` only, and required there: which sequences are desirable (Liger's
        ``preference_labels``).
    beta, variant, label_smoothing, discopop_tau, f_divergence, f_alpha, gamma, kl : optional
        Options of the selected sequence-level loss, with its defaults when left out (see
        its documentation); an option the selected loss does not have is a ``ValueError``.
        ``dpo``'s length-normalised variants (``"ipo"``, ``"sigmoid_norm"``) take each
        sequence's number of target tokens as its length.
    chunk_size : int, optional
        Pairs (sequences for ``"kto"``) per block; by default as many as fit 32 MiB of
        logits, at least one.
    {common_parameters}

    Returns
    -------
    value : array
        0-d for a reduced loss; for ``reduction="none"`` one value per pair (per sequence
        for ``"kto"``): the pair's loss plus its share of the NLL term,
        :math:`\alpha\,B\,\mathrm{nll}_i / N_{tok}`, so that their mean is the loss.
    grad : array or tuple
        ``wrt=`` ``"hidden"`` (default), ``"weight"``, ``"bias"``, a tuple of them or
        ``"all"``.

    Notes
    -----
    With the sequence log-probabilities :math:`s_i = \sum_t \log p_{i,t}` (divided by the
    token count :math:`n_i` when ``average_log_prob``), a sequence loss :math:`\ell` with
    gradient :math:`\partial \ell / \partial s_i` and the NLL term
    :math:`-\tfrac{\alpha}{N_{tok}} \sum_{t \in \text{chosen}} \log p_{t}`, every token gets
    the cotangent :math:`c_t = \partial L/\partial \log p_t =
    \tfrac{\partial \ell}{\partial s_i}\,(1/n_i) - \tfrac{\alpha}{N_{tok}}[t\ \text{chosen}]`
    and the gradients are those of ``linear_token_logprobs`` for it:
    :math:`g_t = c_t (e_{y_t} - p_t)`, :math:`\partial L/\partial h_t = W^\top g_t`,
    :math:`\partial L/\partial W = \sum_t g_t h_t^\top`, :math:`\partial L/\partial b =
    \sum_t g_t`. A sequence without any target token has log-probability 0 (and, averaged,
    0 rather than 0/0) and contributes no gradient through its tokens.

    References
    ----------
    .. [1] P.-L. Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM Training",
       arXiv:2410.10989, 2024; ``liger_kernel/chunked_loss/fused_linear_preference.py`` and
       ``fused_linear_unpaired_preference.py`` (v0.8.5).
    .. [2] R. Rafailov et al., "Direct Preference Optimization", NeurIPS 2023.

    Examples
    --------
    One pair, one token each, an identity layer: the chosen token has probability 3/4, the
    rejected one 1/4, so DPO without a reference gives
    :math:`-\log\sigma(\beta(\log\tfrac34 - \log\tfrac14)) = -\log\sigma(0.1 \ln 3)`.

    >>> import numpy as np, losskit as lk
    >>> h = np.array([[[np.log(3.0), 0.0]], [[np.log(3.0), 0.0]]]); W = np.eye(2)
    >>> y = np.array([[0], [1]])
    >>> v = lk.linear_preference_loss(h, W, y)
    >>> bool(np.isclose(v, -np.log(1 / (1 + np.exp(-0.1 * np.log(3.0))))))
    True
    """

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    name = "linear_preference_loss"
    family = "language_models"
    prediction = "hidden states of the chosen and rejected completions"
    target = "completion tokens (ignore_index elsewhere)"
    formula = (r"L = \ell\bigl(s_w, s_l\bigr) + \alpha\,\mathrm{NLL}_w, \quad "
               r"s = \sum_t \log\operatorname{softmax}(W h_t + b)_{y_t}")
    gradient_formula = (
        r"\frac{\partial L}{\partial h_t} = W^\top g_t, \quad "
        r"\frac{\partial L}{\partial W} = \sum_t g_t h_t^\top, \quad "
        r"g_t = c_t\,(e_{y_t} - \operatorname{softmax}(W h_t + b)), \quad "
        r"c_t = \frac{\partial \ell}{\partial s} - \frac{\alpha}{N}[t \in w]")
    when_to_use = (
        "Preference fine-tuning of a language model (DPO and its variants, SimPO, ORPO, "
        "CPO, KTO) from the last hidden states, as Liger-Kernel's fused modules do, on any "
        "array library: the loss and the gradients of the hidden states, the output "
        "layer's weight and bias, without the N x V logits of the completions."
    )
    references = (
        ("Hsu et al., Liger Kernel: Efficient Triton Kernels for LLM Training, "
         "arXiv:2410.10989"),
        "Rafailov et al., Direct Preference Optimization, NeurIPS 2023, arXiv:2305.18290",
    )
    inputs = ("hidden", "weight", "targets", "bias", "ref_hidden", "ref_weight", "ref_bias")
    optional_inputs = ("bias", "ref_hidden", "ref_weight", "ref_bias")
    differentiable = ("hidden", "weight", "bias")
    not_streamable = ("a mean over pairs whose NLL term divides by the chosen tokens of "
                      "the whole batch")

    def _compute(self, ctx, hidden, weight, targets, bias=None, ref_hidden=None,
                 ref_weight=None, ref_bias=None, *, need_grad, loss="dpo", ignore_index=-100,
                 average_log_prob=False, nll_alpha=0.0, desirable=None, beta=None,
                 variant=None, label_smoothing=None, discopop_tau=None, f_divergence=None,
                 f_alpha=None, gamma=None, kl=None, chunk_size=None):
        """Declares the options; the work is in ``_pipeline``."""
        raise NotImplementedError("LinearPreferenceLoss runs its own _pipeline")

    # ------------------------------------------------------------------ the pipeline
    def _pipeline(self, arrays, reduction, sample_weight, options, want, wrt, out=None):
        hidden, weight, targets, bias, ref_hidden, ref_weight, ref_bias = arrays
        xp, reduction, sample_weight, opts, need_grad, wrt_names, as_tuple = \
            self._own_pipeline_setup(arrays, reduction, sample_weight, options, want, wrt, out,
                                     optional=self.optional_inputs)
        if bias is None and "bias" in wrt_names and wrt != "all":
            raise ValueError(f"{self.name}(): wrt='bias' needs a `bias`; got bias=None")
        kind = opts["loss"]
        check_choice("loss", kind, tuple(_LOSSES))
        seq_loss = _LOSSES[kind]
        paired = kind != "kto"
        seq_opts = self._sequence_options(kind, seq_loss, opts)
        alpha = check_scalar("nll_alpha", opts["nll_alpha"], lo=0.0)
        if alpha and not paired:
            raise ValueError(f"{self.name}(): nll_alpha is for the paired losses (the NLL of "
                             "the chosen sequences); loss='kto' has no chosen half")
        average = opts["average_log_prob"]
        if not isinstance(average, (bool, np.bool_)):
            raise TypeError(f"`average_log_prob` must be True or False; got {average!r}")
        ignore_index = opts["ignore_index"]

        h = without_autograd(as_array(hidden, xp, name="hidden", loss=self.name))
        check_floating(xp, "hidden", h, loss=self.name)
        if h.ndim != 3:
            layout = "(2B, T, d): the B chosen sequences, then the B rejected ones" if paired \
                else "(B, T, d): one row per sequence"
            raise ValueError(f"`hidden` of {self.name}(loss={kind!r}) must have shape "
                             f"{layout}; got shape {tuple(h.shape)}")
        S, T, d = h.shape
        if paired and S % 2:
            raise ValueError(f"`hidden` of {self.name}(loss={kind!r}) must hold an even number "
                             f"of sequences (the B chosen, then the B rejected ones); got "
                             f"{S} (shape {tuple(h.shape)})")
        units = S // 2 if paired else S
        dtype = h.dtype
        work = compute_dtype(xp, dtype)
        device = device_of(h)
        ctx = Context(xp=xp, dtype=dtype, work=work, device=device, loss=self.name)
        head = {"ignore_index": ignore_index, "chunk_size": None}
        ref_head = head
        if _lce._inplace_library(xp) is not None and ref_weight is not None:
            # the reference pass holds no more logits than a block of the policy's pass
            itemsize = 8 if work == xp.float64 else 4
            rows = _GROUP_BLOCK_BYTES // (max(1, ref_weight.shape[0]) * itemsize)
            ref_head = dict(head, chunk_size=max(1, rows))
        with deferred_checks() as pending:
            y = ctx.asarray(targets, "targets")
            if tuple(y.shape) != (S, T):
                raise ValueError(f"`targets` must have shape {(S, T)}, `hidden`'s "
                                 f"{tuple(h.shape)} without its last axis; got "
                                 f"{tuple(y.shape)}")
            lab = None
            if not paired:
                lab = self._desirable(ctx, opts["desirable"], S)
            elif opts["desirable"] is not None:
                raise ValueError(f"{self.name}(): `desirable` is for loss='kto'; the paired "
                                 "losses take the chosen sequences first")
            ref = reference_logprobs(ctx, h, y, ref_hidden, ref_weight, ref_bias,
                                     ref_head)
            keep = xp.astype(y != ignore_index, work)
            counts = xp.sum(keep, axis=1)  # target tokens per sequence
            sw = None
            if sample_weight is not None:
                sw = self._sample_weight(ctx, sample_weight, (units,))
        if ref is not None:
            ref = self._sequence_logps(xp, ref, counts, average)

        # the reduction's factor for the sum of per-unit values
        if reduction in ("none", "sum"):
            scale = 1.0
        elif reduction == "batchmean" or sw is None:
            scale = 1.0 / units if units else 0.0
        else:
            total = xp.sum(sw)
            ok = total != 0
            scale = xp.where(ok, 1.0 / xp.where(ok, total, xp.ones_like(total)),
                             xp.zeros_like(total))
        n_tok = xp.sum(counts[:units]) if paired else None
        nll_unit = None  # per unit: alpha * units / N_tok (the NLL's share of the mean)
        if alpha:
            ok = n_tok != 0
            nll_unit = xp.where(ok, alpha * units / xp.where(ok, n_tok, xp.ones_like(n_tok)),
                                xp.zeros_like(n_tok))

        def sequence_loss(logps, idx_units, want_grad):
            """Per-unit values and d value / d logps for the units ``idx_units`` (their
            sequences' log-probabilities ``logps``, chosen then rejected for pairs)."""
            args = self._sequence_inputs(xp, kind, logps, idx_units, ref, counts, lab, S,
                                         paired)
            result = seq_loss._pipeline(args, "none", None, seq_opts,
                                        "both" if want_grad else "value",
                                        seq_loss.differentiable if want_grad else None)
            return result if want_grad else (result, None)

        wanted = set(wrt_names) if need_grad else set()
        if bias is None:
            wanted.discard("bias")
        W, b = output_layer(ctx, h, weight, bias)
        grouped = bool(wanted) and _lce._inplace_library(xp) is not None
        if grouped:
            values, grads = self._one_pass(ctx, h, W, b, y, counts, ignore_index, units,
                                           paired, average, sequence_loss, sw, scale,
                                           nll_unit, wanted, opts["chunk_size"])
        else:
            values, grads = self._two_passes(ctx, h, W, b, y, counts, ignore_index, units,
                                             paired, average, sequence_loss, sw, scale,
                                             nll_unit, wanted, head)
        weighted = values if sw is None else values * sw
        total_value = reduced_value(xp, weighted, reduction, scale, dtype, pending)
        if not need_grad:
            return total_value
        shapes = {"hidden": (S, T, d), "weight": tuple(W.shape), "bias": (W.shape[0],)}
        if out is not None:
            check_out(out, shapes[wrt_names[0]], dtype, xp, wrt_names[0])
        grad = returned_gradients(xp, grads, wrt_names, shapes, dtype, pending, out=out,
                                  as_tuple=as_tuple)
        return grad if want == "grad" else (total_value, grad)

    # ------------------------------------------------------------------ pieces
    def _sequence_options(self, kind, seq_loss, opts):
        known = seq_loss.option_defaults()
        given = {k: opts[k] for k in _LOSS_OPTIONS if opts[k] is not None}
        foreign = sorted(set(given) - set(known))
        if foreign:
            raise ValueError(
                f"{self.name}(loss={kind!r}): {', '.join(repr(f) for f in foreign)} "
                f"{'is not an option' if len(foreign) == 1 else 'are not options'} of "
                f"{seq_loss.name} (its options: {', '.join(known)})")
        return given

    @staticmethod
    def _sequence_logps(xp, token_logps, counts, average):
        s = xp.sum(token_logps, axis=1)
        if average:
            ok = counts != 0
            s = xp.where(ok, s / xp.where(ok, counts, xp.ones_like(counts)),
                         xp.zeros_like(s))
        return s

    def _desirable(self, ctx, desirable, S):
        if desirable is None:
            raise ValueError(f"{self.name}(loss='kto') needs `desirable`: a boolean per "
                             f"sequence ({S},), Liger-Kernel's preference_labels")
        lab = ctx.asarray(desirable, "desirable")
        if tuple(lab.shape) != (S,):
            raise ValueError(f"`desirable` must have shape ({S},), one flag per sequence of "
                             f"`hidden`; got {tuple(lab.shape)}")
        return lab

    @staticmethod
    def _sequence_inputs(xp, kind, logps, idx, ref, counts, lab, S, paired):
        """The sequence-level loss's input arrays for the units ``idx`` (an index array)."""
        if not paired:
            r = None if ref is None else xp.take(ref, idx, axis=0)
            return (logps, xp.take(lab, idx, axis=0), r)
        n = logps.shape[0] // 2
        chosen, rejected = logps[:n], logps[n:]
        units = S // 2
        if kind == "dpo":
            rc = rr = None
            if ref is not None:
                rc, rr = xp.take(ref, idx, axis=0), xp.take(ref, idx + units, axis=0)
            lc, lr = xp.take(counts, idx, axis=0), xp.take(counts, idx + units, axis=0)
            return (chosen, rejected, rc, rr, lc, lr)
        return (chosen, rejected)

    def _one_pass(self, ctx, h, W, b, y, counts, ignore_index, units, paired, average,
                  sequence_loss, sw, scale, nll_unit, wanted, chunk_size):
        """NumPy and PyTorch: blocks of whole units (pairs, or sequences for KTO), each
        block's logits turned into its gradient as soon as its sequences' losses are known
        (three products per block; ``linear_cross_entropy``'s in-place block loop)."""
        xp = ctx.xp
        S, T, d = h.shape
        V = W.shape[0]
        per_unit = 2 if paired else 1
        idx = xp.arange(units, device=ctx.device)
        # the sequences unit by unit: chosen_0, rejected_0, chosen_1, ... for pairs
        order = xp.reshape(xp.stack([idx, idx + units], axis=1), (-1,)) if paired else idx
        hp = xp.reshape(xp.take(h, order, axis=0), (S * T, d))
        yp = xp.reshape(xp.take(y, order, axis=0), (S * T,))
        rows = linear_token_logprobs._rows(ctx, hp, W, b, yp, V,
                                           {"ignore_index": ignore_index})
        counts_p = xp.take(counts, order, axis=0)
        # per unit: the reduction's factor times the sample weight
        unit_w = (xp.ones((units,), dtype=ctx.work, device=ctx.device) if sw is None
                  else sw) * scale
        rows_per_unit = per_unit * T
        if chunk_size is None:
            itemsize = 8 if ctx.work == xp.float64 else 4
            per_block = max(1, _GROUP_BLOCK_BYTES // (rows_per_unit * V * itemsize))
        else:
            per_block = _lce.LinearCrossEntropy._block_rows(chunk_size, units, 1, ctx.work, xp)
        unit_values = []
        # ignored targets (the prompt, the padding): the blocks hold the other rows only,
        # still whole units per block; the rows' positions rebuild the (k, per_unit, T)
        # token log-probabilities of a block (0 where ignored)
        kept = None if rows.keep is None else _lce.kept_rows(xp, rows.keep)
        if kept is None:
            h_rows, spans, starts = hp, per_block * rows_per_unit, None
        else:
            # where each sequence's kept rows end (counts_p: its target tokens, blocks' order)
            ends = list(itertools.accumulate(int(v) for v in counts_p))
            unit_end = [0] + ends[per_unit - 1::per_unit]
            h_rows, rows = xp.take(hp, kept, axis=0), rows.take(xp, kept)
            del hp  # the kept rows are a copy of their own
            spans, block_units = [], []
            for u0 in range(0, units, per_block):
                u1 = min(u0 + per_block, units)
                spans.append((unit_end[u0], unit_end[u1]))  # empty for all-prompt units
                block_units.append((u0, u1))
            starts = iter(block_units)  # row_factor is called once per block, in order

        def row_factor(lo, hi, row_values):
            if starts is None:
                u0, u1 = lo // rows_per_unit, hi // rows_per_unit
                k = u1 - u0
                tok = xp.reshape(-row_values, (k, per_unit, T))  # log-probabilities
                where = None
            else:
                u0, u1 = next(starts)
                k = u1 - u0
                where = kept[lo:hi] - u0 * rows_per_unit  # positions in the dense block
                tok = xp.zeros((k * rows_per_unit,), dtype=row_values.dtype,
                               device=ctx.device)
                tok[where] = -row_values
                tok = xp.reshape(tok, (k, per_unit, T))
            seq = self._sequence_logps(xp, xp.reshape(tok, (k * per_unit, T)),
                                       counts_p[u0 * per_unit:u1 * per_unit], average)
            seq = xp.reshape(seq, (k, per_unit))
            block_idx = idx[u0:u1]
            logps = xp.concat([seq[:, 0], seq[:, 1]]) if paired else seq[:, 0]
            values, g = sequence_loss(logps, block_idx, True)
            if nll_unit is not None:
                values = values - nll_unit * xp.sum(tok[:, 0, :], axis=1)
            unit_values.append(values)
            cnt = (xp.concat([counts[u0:u1], counts[units + u0:units + u1]]) if paired
                   else counts[u0:u1])  # chosen then rejected, as the sequences' losses
            cot = _sequence_cotangents(xp, g, cnt, average, unit_w[u0:u1], nll_unit, k,
                                       paired)
            if paired:  # chosen then rejected -> unit by unit
                cot = xp.reshape(xp.stack([cot[:k], cot[k:]], axis=1), (-1,))
            # the rows' factor r: the block's gradient is r (softmax - e_y) = -c d log p/dz
            r = -xp.reshape(xp.broadcast_to(cot[:, None], (k * per_unit, T)), (-1,))
            return r if where is None else xp.take(r, where, axis=0)

        lib = _lce._inplace_library(xp)
        _, g = _lce._blocks_inplace(ctx, lib, h_rows, W, b, rows, row_factor, wanted, spans,
                                    {})
        values = xp.concat(unit_values) if unit_values else xp.zeros((0,), dtype=ctx.work,
                                                                         device=ctx.device)
        gh = g.get("hidden")
        if gh is not None and kept is not None:
            gh = _lce.scattered_rows(xp, kept, gh, S * T)
        if gh is not None:  # back to the caller's order of sequences
            inverse = xp.argsort(order) if paired else idx
            gh = xp.take(xp.reshape(gh, (S, T, d)), inverse, axis=0)
        return values, {"hidden": gh, "weight": g.get("weight"), "bias": g.get("bias")}

    def _two_passes(self, ctx, h, W, b, y, counts, ignore_index, units, paired, average,
                    sequence_loss, sw, scale, nll_unit, wanted, head):
        """Any library: the token log-probabilities, then their vector-Jacobian product."""
        xp = ctx.xp
        S, T, d = h.shape
        tok = linear_token_logprobs._pipeline((h, W, y, b), "none", None, head, "value", None)
        idx = xp.arange(units, device=ctx.device)
        logps = self._sequence_logps(xp, tok, counts, average)  # chosen, then rejected
        values, g = sequence_loss(logps, idx, bool(wanted))
        nll = None
        if nll_unit is not None:
            nll = -xp.sum(tok[:units, :], axis=1)
            values = values + nll_unit * nll
        if not wanted:
            return values, {}
        unit_w = scale if sw is None else sw * scale
        cot = _sequence_cotangents(xp, g, counts, average, unit_w, nll_unit, units, paired)
        names = tuple(n for n in ("hidden", "weight", "bias") if n in wanted)
        grads = linear_token_logprobs._pipeline(
            (h, W, y, b), "sum", cot, head, "grad", names)
        return values, dict(zip(names, grads))


def _sequence_cotangents(xp, g, counts, average, unit_w, nll_unit, units, paired):
    """d L / d log p of every token of each sequence, (S,) (the same for all the tokens of a
    sequence; an ignored token takes no part anyway): the sequence loss's gradient ``g``
    (a pair of arrays for the paired losses) times the unit weights ``unit_w`` (the
    reduction's factor times the sample weights, per unit), over the token counts when
    averaged, plus the chosen tokens' share of the NLL term."""
    if paired:
        seq = xp.concat([g[0] * unit_w, g[1] * unit_w])
    else:
        seq = g[0] * unit_w
    if average:
        ok = counts != 0
        seq = xp.where(ok, seq / xp.where(ok, counts, xp.ones_like(counts)),
                       xp.zeros_like(seq))
    if nll_unit is not None:
        dev = device_of(seq)
        nll = -(nll_unit * unit_w) * xp.ones((units,), dtype=seq.dtype, device=dev)
        seq = seq + xp.concat([nll, xp.zeros((seq.shape[0] - units,), dtype=seq.dtype,
                                             device=dev)])
    return seq


linear_preference_loss = register(LinearPreferenceLoss())
