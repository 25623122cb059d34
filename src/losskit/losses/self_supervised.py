r"""Representation learning: contrastive losses over a batch's similarity matrix.

Self-supervised (SimCLR) and two-tower (CLIP, SigLIP) training, and supervised
contrastive learning, all compare every example of a batch with every other one:

* :data:`info_nce` -- NT-Xent / InfoNCE of SimCLR on two views ``(z1, z2)``;
* :data:`clip_loss` -- CLIP's symmetric softmax cross-entropy of ``(image, text)`` pairs,
  with the learned log of the logit scale as a differentiable input;
* :data:`siglip_loss` -- SigLIP's pairwise sigmoid loss, with the learned log-scale and
  bias;
* :data:`supcon_loss` -- the supervised contrastive loss of Khosla et al.

**Batches, not rows.** The negatives of every example are the *other examples of the
batch*, so the loss of a batch is not the sum of the losses of its parts: these losses
cannot be evaluated a block of rows at a time (``losskit.evaluate`` refuses them), and
a ``sample_weight`` weights an example's own term (its row of the similarity matrix)
while the example stays a negative for all the others: an integer weight is *not* the
same as repeating the example. The per-example value (``reduction="none"``) is defined
for each loss so that the mean over the batch is the published loss.

**Memory.** The similarity matrix is never held whole: the kernels of
:mod:`losskit.kernels.similarity` form it a block of rows at a time (``chunk_size``
rows; by default as many as fit 16 MiB) and accumulate the gradients with respect to the
embeddings from each block. A batch of 8192 embeddings needs a few blocks of 16 MiB
where the full matrix would take 256 MiB (float32) and autodiff keeps several of them.

**Normalisation.** With ``normalize=True`` (the default) the embeddings are divided by
their L2 norm, :math:`\hat x = x / \max(\lVert x \rVert, 10^{-12})` (the rule of
``torch.nn.functional.normalize``), and the gradients are taken through it,
:math:`\partial L / \partial x = (g - (g \cdot \hat x)\,\hat x) / \lVert x \rVert` for
the gradient :math:`g` with respect to :math:`\hat x`. With ``normalize=False`` the
embeddings are used as given (the dot product is the similarity).
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np

from ..core.arrays import as_array, compute_dtype, device_of, quiet, without_autograd
from ..core.loss import (Context, Loss, check_out, reduced_value, register,
                         returned_gradients)
from ..core.primitives import _weighted
from ..core.validation import (
    _dtype_name,
    check_choice,
    check_floating,
    check_integer,
    check_scalar,
    deferred_checks,
)
from ..kernels import similarity as _sim

__all__ = ["info_nce", "nt_xent_loss", "clip_loss", "siglip_loss", "supcon_loss"]

_NOT_STREAMABLE = ("the negatives of every example are the other examples of the whole "
                   "batch, so the loss of a batch is not the sum of the losses of its blocks "
                   "of rows")


#: the jitted kernels of JAX calls, by loss and static configuration
_JAX_KERNELS: dict = {}


# ---------------------------------------------------------------------------- helpers
def _check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; got {value!r}")
    return bool(value)


def _check_chunk(chunk_size):
    if chunk_size is None:
        return None
    if isinstance(chunk_size, (bool, np.bool_)):
        raise TypeError(f"`chunk_size` must be a positive int (rows per block) or None; got "
                        f"{chunk_size!r}")
    try:
        c = check_integer("chunk_size", chunk_size)
    except TypeError:
        raise TypeError("`chunk_size` must be a positive int (rows per block) or None; got "
                        f"{chunk_size!r}") from None
    if c < 1:
        raise ValueError(f"`chunk_size` must be a positive int (rows per block); got {c}")
    return c


# ---------------------------------------------------------------------------- the base
class _SimilarityLoss(Loss):
    """The pipeline of the similarity-matrix losses: validation, sample weights and the
    reduction folded into per-row weights, one blocked kernel, gradients for ``wrt``."""

    lazy_sizes = False  # needs the batch's sizes as numbers (Dask: computed first)

    not_streamable = _NOT_STREAMABLE
    #: inputs that are one number each (the log-scale and the bias)
    _scalars: tuple[str, ...] = ()

    def _compute(self, ctx, *arrays, need_grad, **options):
        raise NotImplementedError(f"{type(self).__name__} runs its own _pipeline")

    # ------------------------------------------------------------------ pipeline
    def _pipeline(self, arrays, reduction, sample_weight, options, want, wrt, out=None):
        names = self.inputs
        xp, reduction, sample_weight, opts, need_grad, wrt_names, as_tuple = \
            self._own_pipeline_setup(arrays, reduction, sample_weight, options, want, wrt, out)

        first = without_autograd(as_array(arrays[0], xp, name=names[0], loss=self.name))
        check_floating(xp, names[0], first, loss=self.name)
        dtype = first.dtype
        work = compute_dtype(xp, dtype)
        ctx = Context(xp=xp, dtype=dtype, work=work, device=device_of(first), loss=self.name)
        chunk = _check_chunk(opts.get("chunk_size"))
        with deferred_checks() as pending:
            prep = self._prepare(ctx, first, arrays[1:], opts)
            n = prep["n"]
            sw = (None if sample_weight is None else
                  without_autograd(self._sample_weight(ctx, sample_weight, (n,))))

        # the reduction's factor for the sum of (weighted) per-example values
        if reduction in ("none", "sum"):
            scale = None
        elif reduction == "batchmean":
            scale = 1.0 / n if n else 0.0
        elif sw is None:
            scale = 1.0 / n if n else 0.0
        else:
            total = xp.sum(sw)
            ok = total != 0
            scale = xp.where(ok, 1.0 / xp.where(ok, total, xp.ones_like(total)),
                             xp.zeros_like(total))
        r = None
        if need_grad:
            r = xp.ones((n,), dtype=work, device=ctx.device) if sw is None else sw
            if scale is not None:
                r = r * scale
        value, grads = self._run_kernel(ctx, prep, opts, r, frozenset(wrt_names), chunk)

        if sw is not None:
            value = _weighted(xp, sw, value)
        value_out = reduced_value(xp, value, reduction, scale, dtype, pending)
        if not need_grad:
            return value_out
        if out is not None:
            check_out(out, tuple(prep["shapes"][wrt_names[0]]), dtype, xp, wrt_names[0])
        grad = returned_gradients(xp, grads, wrt_names, prep["shapes"], dtype, pending,
                                  out=out, as_tuple=as_tuple)
        if want == "grad":
            return grad
        return value_out, grad

    def _run_kernel(self, ctx, prep, opts, r, wanted, chunk):
        """The kernel; on JAX inside one ``jax.jit`` per configuration (eagerly, every
        small operation of every block would otherwise be dispatched and compiled on its
        own; inside a caller's ``jit`` it is simply inlined)."""
        if not array_api_compat.is_jax_namespace(ctx.xp):
            return self._kernel(ctx, prep, opts, r, wanted, chunk)
        import jax

        arrays = {k: v for k, v in prep.items() if array_api_compat.is_jax_array(v)}
        static = {k: v for k, v in prep.items() if k not in arrays}
        key = (type(self), repr(sorted(static.items())), wanted, chunk, str(ctx.dtype),
               str(ctx.work), r is None)
        fn = _JAX_KERNELS.get(key)
        if fn is None:
            def run(arrs, rr, ctx=ctx, static=static):
                return self._kernel(ctx, {**static, **arrs}, opts, rr, wanted, chunk)
            fn = _JAX_KERNELS[key] = jax.jit(run)
        return fn(arrays, r)

    # ------------------------------------------------------------------ inputs
    def _embeddings(self, ctx, x, name: str, *, first: str | None = None, shape=None,
                    ndims=(2,)):
        """A floating embedding array of the first input's dtype, in the work dtype."""
        xp = ctx.xp
        arr = without_autograd(as_array(x, xp, device=ctx.device, name=name, loss=self.name))
        check_floating(xp, name, arr, loss=self.name)
        if arr.dtype != ctx.dtype:
            raise TypeError(f"`{name}` of {self.name} must have the dtype of `{first}` "
                            f"({_dtype_name(ctx.dtype)}); got {_dtype_name(arr.dtype)}. "
                            "Convert one of them explicitly: its gradient is returned in "
                            "that dtype")
        if arr.ndim not in ndims:
            want = " or ".join(f"{k}-d" for k in ndims)
            raise ValueError(f"`{name}` of {self.name} must be a {want} array of embeddings "
                             f"(N, d), one row per example; got shape {tuple(arr.shape)}")
        if shape is not None and tuple(arr.shape) != tuple(shape):
            raise ValueError(f"`{name}` of {self.name} must have the shape of `{first}` "
                             f"{tuple(shape)} (row n of both is a positive pair); got "
                             f"{tuple(arr.shape)}")
        return arr if arr.dtype == ctx.work else xp.astype(arr, ctx.work)

    def _scalar(self, ctx, x, name: str, first: str):
        """One number (0-d or of size 1) in the work dtype, and its shape."""
        xp = ctx.xp
        if isinstance(x, (bool, np.bool_)):
            raise TypeError(f"`{name}` of {self.name} must be a real number or a 0-d floating "
                            f"array; got {x!r}")
        was_array = array_api_compat.is_array_api_obj(x) and not isinstance(x, (int, float))
        arr = without_autograd(as_array(x, xp, device=ctx.device, name=name, loss=self.name))
        if was_array:
            check_floating(xp, name, arr, loss=self.name)
            if arr.dtype != ctx.dtype:
                raise TypeError(f"`{name}` of {self.name} must have the dtype of `{first}` "
                                f"({_dtype_name(ctx.dtype)}); got {_dtype_name(arr.dtype)}. "
                                "Convert one of them explicitly: its gradient is returned "
                                "in that dtype")
        elif not xp.isdtype(arr.dtype, "real floating") and not xp.isdtype(arr.dtype,
                                                                              "integral"):
            raise TypeError(f"`{name}` of {self.name} must be a real number; got "
                            f"{_dtype_name(arr.dtype)}")
        size = 1
        for s in arr.shape:
            size *= s
        if size != 1 or arr.ndim > 1:
            raise ValueError(f"`{name}` of {self.name} must be one number (a 0-d array or "
                             f"shape (1,)); got shape {tuple(arr.shape)}")
        shape = tuple(arr.shape)
        arr = xp.reshape(xp.astype(arr, ctx.work), ())
        return arr, shape

    # ------------------------------------------------------------------ subclass API
    def _prepare(self, ctx, first, others, opts) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _kernel(self, ctx, prep, opts, r, wanted, chunk):  # pragma: no cover - abstract
        raise NotImplementedError


def _normalized(xp, x, normalize):
    if normalize:
        return _sim.normalize_rows(xp, x)
    return x, None


def _unnormalize(xp, g, u, denom):
    if denom is None:
        return g
    return _sim.normalize_backward(xp, g, u, denom)


def _rowdot(xp, a, b):
    return xp.sum(a * b, axis=1)


def _itemsize(xp, work) -> int:
    return 8 if work == xp.float64 else 4


# ---------------------------------------------------------------------------- info_nce
class InfoNCE(_SimilarityLoss):
    r"""NT-Xent (InfoNCE) of SimCLR: two views of each example must recognise each other
    among the 2N embeddings of the batch.

    The two views are stacked into :math:`Z = [\hat z_1; \hat z_2]` (2N rows); the
    similarities are :math:`S_{ik} = Z_i \cdot Z_k / \tau` (cosines over the temperature
    with ``normalize=True``). Row :math:`i` is a softmax cross-entropy over the 2N - 1
    other rows whose correct answer is the other view :math:`p(i) = i \pm N`:

    .. math::

        \ell^{\text{row}}_i = -\log \frac{e^{S_{i p(i)}}}{\sum_{k \ne i} e^{S_{ik}}}, \qquad
        \ell_n = \tfrac12 \bigl(\ell^{\text{row}}_n + \ell^{\text{row}}_{N+n}\bigr)

    This is SimCLR's symmetric 2N version (Chen et al. 2020, Algorithm 1: both views are
    anchors, every other embedding of the batch is a negative); the per-example value
    :math:`\ell_n` of a pair is the mean of its two rows, so ``reduction="mean"`` is
    SimCLR's :math:`\frac1{2N}\sum_k [\ell(2k{-}1, 2k) + \ell(2k, 2k{-}1)]`.

    Parameters
    ----------
    z1, z2 : floating arrays of shape (N, d)
        The two views' embeddings (projection-head outputs); row n of ``z1`` and row n of
        ``z2`` are a positive pair. Same shape and dtype.
    temperature : float, default 0.1
        :math:`\tau > 0`.
    normalize : bool, default True
        Divide each embedding by its L2 norm first (cosine similarity, as SimCLR); the
        gradients are taken through the normalisation. ``False``: plain dot products.
    chunk_size : int, optional
        Rows of the 2N x 2N similarity matrix per block (default: as many as fit 16 MiB).
    {common_parameters}

    Returns
    -------
    array
        Per pair, shape (N,), with ``reduction="none"``; else 0-d. ``.grad`` has the shape
        of ``z1`` (``wrt="z2"`` of ``z2``, ``wrt="all"`` both).

    Raises
    ------
    ValueError
        ``z1`` and ``z2`` of different shapes or not 2-d, ``temperature <= 0``.
    TypeError
        Non-floating embeddings, ``z2`` of another dtype than ``z1``.

    Notes
    -----
    With :math:`P_{ik} = e^{S_{ik}} / \sum_{j \ne i} e^{S_{ij}}` (:math:`P_{ii} = 0`) and
    the weight :math:`r_i` of row :math:`i` (:math:`\tfrac12` times the reduction's factor
    and the pair's sample weight), the gradient with respect to the similarities is
    :math:`G_{ik} = r_i (P_{ik} - [k = p(i)])`, and since :math:`S` is symmetric

    .. math::

        \frac{\partial L}{\partial Z} = \frac{1}{\tau} (G + G^\top) Z,

    then through the normalisation to :math:`z_1` and :math:`z_2`. The 2N x 2N matrix is
    formed a block of rows at a time (see the module notes).

    **Other libraries.** pytorch-metric-learning's ``NTXentLoss(temperature=t)`` takes one
    embedding matrix and labels: ``NTXentLoss(temperature=t)(torch.cat([z1, z2]),
    torch.arange(N).repeat(2))`` equals ``info_nce(z1, z2, temperature=t)`` (its default
    temperature is 0.07). Some implementations (e.g. MoCo-style ``InfoNCE`` of one view
    against the other) use only the N x N cross-view block: that is :data:`clip_loss` with
    a fixed scale, ``clip_loss(z1, z2, math.log(1 / t))``.

    References
    ----------
    .. [1] T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A Simple Framework for
       Contrastive Learning of Visual Representations", ICML 2020, arXiv:2002.05709.
    .. [2] A. van den Oord, Y. Li, O. Vinyals, "Representation Learning with Contrastive
       Predictive Coding", arXiv:1807.03748, 2018 (InfoNCE).

    Examples
    --------
    Two pairs whose views coincide and are orthogonal to the other pair: every row sees
    its positive at cosine 1 and two negatives at cosine 0, so with :math:`\tau = 1` the
    loss is :math:`-\log(e / (e + 2))`:

    >>> import numpy as np, losskit as lk
    >>> z = np.eye(2)
    >>> round(float(lk.info_nce(z, z, temperature=1.0)), 6)
    0.551445
    >>> round(float(np.log(np.e + 2) - 1), 6)
    0.551445
    """

    name = "info_nce"
    aliases = ("nt_xent_loss",)
    family = "representation"
    prediction = "embeddings of two views (z1, z2)"
    target = "none (row n of z1 and z2 are a positive pair)"
    inputs = ("z1", "z2")
    differentiable = ("z1", "z2")
    formula = (r"\ell_i = -\log \frac{e^{S_{i p(i)}}}{\sum_{k \ne i} e^{S_{ik}}},\ "
               r"S = Z Z^\top / \tau,\ Z = [\hat z_1; \hat z_2]")
    gradient_formula = (r"\frac{\partial L}{\partial Z} = \frac{1}{\tau}(G + G^\top) Z,\ "
                        r"G_{ik} = r_i \bigl(\operatorname{softmax}_{k \ne i}(S_i)_k - "
                        r"[k = p(i)]\bigr)")
    when_to_use = (
        "Self-supervised contrastive pre-training (SimCLR, MoCo-style projection heads) "
        "from two augmented views of each image: each view must pick out its partner among "
        "the 2N embeddings of the batch. Needs no labels; large batches and a low "
        "temperature (0.05-0.5) matter. For two different modalities use clip_loss, with "
        "class labels supcon_loss."
    )
    references = (
        "Chen, Kornblith, Norouzi, Hinton, A Simple Framework for Contrastive Learning of "
        "Visual Representations, ICML 2020, arXiv:2002.05709",
        "van den Oord, Li, Vinyals, Representation Learning with Contrastive Predictive "
        "Coding, arXiv:1807.03748",
    )

    def _compute(self, ctx, z1, z2, *, need_grad, temperature=0.1, normalize=True,
                 chunk_size=None):
        raise NotImplementedError("InfoNCE runs its own _pipeline")

    def _prepare(self, ctx, first, others, opts):
        tau = check_scalar("temperature", opts["temperature"], lo=0.0, lo_open=True)
        if math.isinf(tau):
            raise ValueError(f"`temperature` must be finite; got {opts['temperature']!r}")
        normalize = _check_bool("normalize", opts["normalize"])
        z1 = self._embeddings(ctx, first, "z1")
        z2 = self._embeddings(ctx, others[0], "z2", first="z1", shape=z1.shape)
        n = z1.shape[0]
        return {"n": n, "z1": z1, "z2": z2, "tau": tau, "normalize": normalize,
                "shapes": {"z1": tuple(first.shape), "z2": tuple(z1.shape)}}

    def _kernel(self, ctx, prep, opts, r, wanted, chunk):
        xp = ctx.xp
        n, tau = prep["n"], prep["tau"]
        inv = 1.0 / tau
        Z = xp.concat([prep["z1"], prep["z2"]], axis=0)
        Zh, denom = _normalized(xp, Z, prep["normalize"])
        m2 = 2 * n
        need_grad = bool(wanted)
        pos_all = xp.concat([xp.arange(n, m2, device=ctx.device),
                             xp.arange(0, n, device=ctx.device)])
        pos_logit = _rowdot(xp, Zh, xp.take(Zh, pos_all, axis=0)) * inv
        rr = None
        masked = True
        if need_grad:
            rr = 0.5 * xp.concat([r, r])
            masked = not _sim.all_nonzero(xp, rr)

        def block(lo, hi, P):
            S = _sim.fill_diagonal(xp, P * inv, lo, -math.inf)
            m = _sim._safe_max(xp, S, 1)
            E = xp.exp(S - m[:, None])
            del S
            s = xp.sum(E, axis=1)
            lse = m + _sim._safe_log(xp, s)
            v = lse - pos_logit[lo:hi]
            if not need_grad:
                return v, None, {}
            rb = rr[lo:hi]
            G = _sim.add_at(xp, _sim.scale_rows(xp, E, 1.0 / s), pos_all[lo:hi], -1.0)
            if masked:  # rows of weight 0 are exactly 0, even where NaN
                return v, _sim.masked_rows(xp, rb * inv, G), {}
            return v, _sim.scale_rows(xp, G, rb * inv), {}

        nb = _sim.block_rows(chunk, m2, m2, _itemsize(xp, ctx.work))
        with quiet():
            v, gZ, _, _ = _sim.sweep(xp, Zh, Zh, block, nb, need_grad=need_grad,
                                     symmetric=True)
        value = 0.5 * (v[:n] + v[n:])
        if not need_grad:
            return value, {}
        gZ = _unnormalize(xp, gZ, Zh, denom)
        return value, {"z1": gZ[:n, ...], "z2": gZ[n:, ...]}


# ---------------------------------------------------------------------------- clip_loss
class ClipLoss(_SimilarityLoss):
    r"""CLIP's symmetric contrastive loss of image-text pairs, with a learned scale.

    With :math:`\hat I`, :math:`\hat T` the normalised embeddings and the logit scale
    :math:`t = e^{\theta}` (:math:`\theta` = ``log_scale``, the parameter CLIP learns), the
    logits are :math:`L = t\,\hat I \hat T^\top` (N x N) and pair :math:`n` must be found
    both among the texts (row :math:`n`) and among the images (column :math:`n`):

    .. math::

        \ell_n = \tfrac12 \Bigl(\operatorname{logsumexp}_k L_{nk} - L_{nn}\Bigr)
               + \tfrac12 \Bigl(\operatorname{logsumexp}_k L_{kn} - L_{nn}\Bigr)

    ``reduction="mean"`` gives CLIP's loss, the mean of the image-to-text and
    text-to-image cross-entropies (Radford et al. 2021, Figure 3; open_clip's
    ``ClipLoss``).

    Parameters
    ----------
    image, text : floating arrays of shape (N, d)
        The two towers' embeddings; row n of each is a matching pair. Same shape and dtype.
    log_scale : float or 0-d floating array
        :math:`\theta`, the log of the logit scale (the inverse temperature), the
        parameter a CLIP model trains: open_clip's ``model.logit_scale`` *before*
        ``.exp()`` (initialised to :math:`\log(1/0.07)`). Differentiable
        (``wrt="log_scale"``); a 0-d array or shape (1,).
    normalize : bool, default True
        L2-normalise the embeddings first (CLIP's cosine similarity); ``False`` uses them
        as given (for embeddings already normalised by the model the values agree, and
        the gradients differ only by a component along each embedding, which the
        model's own normalisation removes).
    chunk_size : int, optional
        Rows of the N x N logits per block (default: as many as fit 16 MiB).
    {common_parameters}

    Returns
    -------
    array
        Per pair, shape (N,), with ``reduction="none"``; else 0-d. ``.grad`` is with
        respect to ``image``; ``wrt="text"``, ``"log_scale"`` (the shape of
        ``log_scale``) or ``"all"``.

    Raises
    ------
    ValueError
        ``image`` and ``text`` of different shapes or not 2-d, a ``log_scale`` of more
        than one number.
    TypeError
        Non-floating arrays, or arrays of another dtype than ``image``.

    Notes
    -----
    With the row softmax :math:`P^{r}_{nk} = e^{L_{nk}} / \sum_j e^{L_{nj}}`, the column
    softmax :math:`P^{c}_{nk} = e^{L_{nk}} / \sum_j e^{L_{jk}}` and the weight :math:`w_n`
    of pair :math:`n` (:math:`\tfrac12` times the reduction's factor and its sample
    weight):

    .. math::

        G_{nk} = \frac{\partial L}{\partial L_{nk}}
               = w_n (P^{r}_{nk} - \delta_{nk}) + w_k (P^{c}_{nk} - \delta_{nk}),

    .. math::

        \frac{\partial L}{\partial \hat I} = t\,G \hat T, \qquad
        \frac{\partial L}{\partial \hat T} = t\,G^\top \hat I, \qquad
        \frac{\partial L}{\partial \theta} = \sum_{nk} G_{nk} L_{nk},

    then through the normalisation. The columns' log-sum-exps are accumulated in a first
    sweep over blocks of rows; the second sweep forms each block of :math:`G` and the
    gradients (four N x N x d products in all, and never the N x N matrix).

    Open_clip passes the *exponentiated* scale to ``ClipLoss(image, text,
    logit_scale)``: ``ClipLoss()(i, t, s)`` equals ``clip_loss(i, t, log(s),
    normalize=False)`` on its normalised features. The scale is usually clamped at 100
    (:math:`\theta \le \log 100`) by the training loop, outside the loss.

    References
    ----------
    .. [1] A. Radford et al., "Learning Transferable Visual Models From Natural Language
       Supervision", ICML 2021, arXiv:2103.00020.
    .. [2] G. Ilharco et al., OpenCLIP, 2021, doi:10.5281/zenodo.5143773
       (``src/open_clip/loss.py``, ``ClipLoss``).

    Examples
    --------
    Two orthogonal pairs with :math:`t = 1`: each row and column sees its match at
    cosine 1 and the other item at 0, so the loss is :math:`\log(1 + e^{-1})`:

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.clip_loss(np.eye(2), np.eye(2), 0.0)), 6)
    0.313262
    >>> round(float(np.log1p(np.exp(-1.0))), 6)
    0.313262
    """

    name = "clip_loss"
    family = "representation"
    prediction = "embeddings of image-text pairs (two towers)"
    target = "none (row n of image and text are a matching pair)"
    inputs = ("image", "text", "log_scale")
    differentiable = ("image", "text", "log_scale")
    formula = (r"\ell_n = \tfrac12 (\operatorname{logsumexp}_k L_{nk} - L_{nn}) + "
               r"\tfrac12 (\operatorname{logsumexp}_k L_{kn} - L_{nn}),\ "
               r"L = e^{\theta} \hat I \hat T^\top")
    gradient_formula = (r"\frac{\partial L}{\partial \hat I} = e^{\theta} G \hat T,\ "
                        r"\frac{\partial L}{\partial \theta} = \sum G \circ L,\ "
                        r"G_{nk} = w_n (P^{r}_{nk} - \delta_{nk}) + "
                        r"w_k (P^{c}_{nk} - \delta_{nk})")
    when_to_use = (
        "Contrastive training of two encoders on paired data (image-text as CLIP/ALIGN, "
        "audio-text, query-document retrieval): every pair must find its partner among "
        "the batch in both directions, with the temperature learned (log_scale is a "
        "differentiable input). siglip_loss replaces the two softmaxes by independent "
        "sigmoids and suits small or sharded batches better."
    )
    references = (
        "Radford et al., Learning Transferable Visual Models From Natural Language "
        "Supervision, ICML 2021, arXiv:2103.00020",
        "Ilharco et al., OpenCLIP, 2021, doi:10.5281/zenodo.5143773 (ClipLoss)",
    )
    _scalars = ("log_scale",)

    def _compute(self, ctx, image, text, log_scale, *, need_grad, normalize=True,
                 chunk_size=None):
        raise NotImplementedError("ClipLoss runs its own _pipeline")

    def _prepare(self, ctx, first, others, opts):
        normalize = _check_bool("normalize", opts["normalize"])
        img = self._embeddings(ctx, first, "image")
        txt = self._embeddings(ctx, others[0], "text", first="image", shape=img.shape)
        theta, tshape = self._scalar(ctx, others[1], "log_scale", "image")
        return {"n": img.shape[0], "img": img, "txt": txt, "theta": theta,
                "normalize": normalize,
                "shapes": {"image": tuple(first.shape), "text": tuple(img.shape),
                           "log_scale": tshape}}

    def _kernel(self, ctx, prep, opts, r, wanted, chunk):
        xp = ctx.xp
        n = prep["n"]
        I, dI = _normalized(xp, prep["img"], prep["normalize"])
        T, dT = _normalized(xp, prep["txt"], prep["normalize"])
        t = xp.exp(prep["theta"])
        need_grad = bool(wanted)
        nb = _sim.block_rows(chunk, n, n, _itemsize(xp, ctx.work))
        with quiet():
            row_lse, col_lse = _sim.column_logsumexp(xp, I, T, t, None, nb)
            diag = t * _rowdot(xp, I, T)
            value = 0.5 * (row_lse - diag) + 0.5 * (col_lse - diag)
            if not need_grad:
                return value, {}
            w = 0.5 * r
            masked = not _sim.all_nonzero(xp, w)
            cols = xp.arange(n, device=ctx.device)

            numpy = array_api_compat.is_numpy_namespace(xp) and not masked

            def block(lo, hi, P):
                if numpy:  # the same, in place on the block's temporaries
                    wb = w[lo:hi]
                    L = P * t
                    G = np.subtract(L, row_lse[lo:hi, None])
                    np.exp(G, out=G)
                    G *= wb[:, None]
                    np.subtract(L, col_lse[None, :], out=L)
                    np.exp(L, out=L)
                    L *= w[None, :]
                    G += L
                    del L
                    G = _sim.add_at(xp, G, xp.arange(lo, hi, device=ctx.device),
                                    -1.0 * (wb + w[lo:hi]))
                    G *= t
                    return None, G, {"theta": _sim.frobenius(xp, G, P)}
                L = P * t
                rows = xp.arange(lo, hi, device=ctx.device)
                eye = xp.astype(rows[:, None] == cols[None, :], L.dtype)
                wb = w[lo:hi]
                Pr = xp.exp(L - row_lse[lo:hi, None]) - eye
                Pc = xp.exp(L - col_lse[None, :]) - eye
                if masked:
                    wc = w[None, :]
                    G = (_sim.masked_rows(xp, wb, Pr)
                         + xp.where(wc != 0, wc * Pc, xp.zeros_like(Pc)))
                else:
                    G = wb[:, None] * Pr + w[None, :] * Pc
                GP = G * t
                return None, GP, {"theta": _sim.frobenius(xp, GP, P)}

            _, gI, gT, sums = _sim.sweep(xp, I, T, block, nb, need_grad=True,
                                         symmetric=False, extras=("theta",))
        grads = {"image": _unnormalize(xp, gI, I, dI), "text": _unnormalize(xp, gT, T, dT),
                 "log_scale": sums["theta"]}
        return value, grads


# ---------------------------------------------------------------------------- siglip_loss
class SiglipLoss(_SimilarityLoss):
    r"""SigLIP's pairwise sigmoid loss of image-text pairs, with a learned scale and bias.

    Every image-text pair of the batch is an independent binary problem: the matching
    pairs (the diagonal) are positives, all others negatives. With the logits
    :math:`L = e^{\theta} \hat I \hat T^\top + b` and the labels :math:`y_{nk} = 1` for
    :math:`n = k`, :math:`-1` otherwise:

    .. math::

        \ell_n = -\sum_{k} \log \sigma(y_{nk} L_{nk})
               = \sum_k \operatorname{softplus}(-y_{nk} L_{nk})

    is the loss of image :math:`n` against every text, and ``reduction="mean"``, the mean
    over the N images, is the paper's :math:`-\frac{1}{|\mathcal B|}\sum_{n}\sum_{k}
    \log\sigma(y_{nk}(t\,x_n \cdot y_k + b))`: the sum over all :math:`N^2` pairs
    divided by N (big_vision's ``nll = -sum(loglik, axis=-1); mean(nll)``), not by
    :math:`N^2`.

    Parameters
    ----------
    image, text : floating arrays of shape (N, d)
        The two towers' embeddings; row n of each is a matching pair. Same shape and dtype.
    log_scale : float or 0-d floating array
        :math:`\theta`, the log of the scale :math:`t = e^{\theta}` (big_vision's ``t``
        parameter before ``exp``; the paper initialises :math:`t = 10`, so
        :math:`\theta = \log 10`). Differentiable.
    bias : float or 0-d floating array
        :math:`b`, the learned bias (initialised to -10 in the paper). Differentiable.
    normalize : bool, default True
        L2-normalise the embeddings first (the model's normalisation in the paper);
        ``False`` uses them as given.
    chunk_size : int, optional
        Rows of the N x N logits per block (default: as many as fit 16 MiB).
    {common_parameters}

    Returns
    -------
    array
        Per image, shape (N,), with ``reduction="none"``; else 0-d. ``wrt=`` ``"image"``
        (default), ``"text"``, ``"log_scale"``, ``"bias"`` or ``"all"``.

    Raises
    ------
    ValueError
        ``image`` and ``text`` of different shapes or not 2-d, a ``log_scale`` or ``bias``
        of more than one number.
    TypeError
        Non-floating arrays, or arrays of another dtype than ``image``.

    Notes
    -----
    With :math:`u = -y \circ L`, the weight :math:`w_n` of image :math:`n` (the
    reduction's factor times its sample weight) and :math:`\sigma` the logistic function:

    .. math::

        G_{nk} = \frac{\partial L}{\partial L_{nk}} = -w_n\,y_{nk}\,\sigma(u_{nk}), \qquad
        \frac{\partial L}{\partial \hat I} = t\,G \hat T, \qquad
        \frac{\partial L}{\partial \hat T} = t\,G^\top \hat I,

    .. math::

        \frac{\partial L}{\partial \theta} = \sum_{nk} G_{nk} (L_{nk} - b), \qquad
        \frac{\partial L}{\partial b} = \sum_{nk} G_{nk}.

    Each block of rows is independent of the others (no normaliser over the batch):
    three N x N x d products in all. open_clip's ``SigLipLoss`` computes the same
    value, ``-logsigmoid(labels * logits).sum() / N``, with the scale passed already
    exponentiated.

    References
    ----------
    .. [1] X. Zhai, B. Mustafa, A. Kolesnikov, L. Beyer, "Sigmoid Loss for Language Image
       Pre-Training", ICCV 2023, arXiv:2303.15343 (big_vision's
       ``big_vision/trainers/proj/image_text/siglip.py``).

    Examples
    --------
    One pair with :math:`t = 1`, :math:`b = 0` at cosine 1: :math:`\log(1 + e^{-1})`:

    >>> import numpy as np, losskit as lk
    >>> round(float(lk.siglip_loss(np.ones((1, 2)), np.ones((1, 2)), 0.0, 0.0)), 6)
    0.313262
    """

    name = "siglip_loss"
    family = "representation"
    prediction = "embeddings of image-text pairs (two towers)"
    target = "none (row n of image and text are a matching pair)"
    inputs = ("image", "text", "log_scale", "bias")
    differentiable = ("image", "text", "log_scale", "bias")
    formula = (r"\ell_n = \sum_k \operatorname{softplus}(-y_{nk} L_{nk}),\ "
               r"L = e^{\theta} \hat I \hat T^\top + b,\ y = 2 I_N - 1")
    gradient_formula = (r"G_{nk} = -w_n y_{nk} \sigma(-y_{nk} L_{nk}),\ "
                        r"\frac{\partial L}{\partial \hat I} = e^{\theta} G \hat T,\ "
                        r"\frac{\partial L}{\partial \theta} = \sum G \circ (L - b),\ "
                        r"\frac{\partial L}{\partial b} = \sum G")
    when_to_use = (
        "Contrastive image-text (or any two-tower) training where every pair of the batch "
        "is an independent binary match / no-match problem: no softmax over the batch, so "
        "it works with small batches and shards without gathering all logits; scale and "
        "bias are learned (differentiable inputs). clip_loss is the softmax version."
    )
    references = (
        "Zhai, Mustafa, Kolesnikov, Beyer, Sigmoid Loss for Language Image Pre-Training, "
        "ICCV 2023, arXiv:2303.15343",
    )
    _scalars = ("log_scale", "bias")

    def _compute(self, ctx, image, text, log_scale, bias, *, need_grad, normalize=True,
                 chunk_size=None):
        raise NotImplementedError("SiglipLoss runs its own _pipeline")

    def _prepare(self, ctx, first, others, opts):
        normalize = _check_bool("normalize", opts["normalize"])
        img = self._embeddings(ctx, first, "image")
        txt = self._embeddings(ctx, others[0], "text", first="image", shape=img.shape)
        theta, tshape = self._scalar(ctx, others[1], "log_scale", "image")
        b, bshape = self._scalar(ctx, others[2], "bias", "image")
        return {"n": img.shape[0], "img": img, "txt": txt, "theta": theta, "b": b,
                "normalize": normalize,
                "shapes": {"image": tuple(first.shape), "text": tuple(img.shape),
                           "log_scale": tshape, "bias": bshape}}

    def _kernel(self, ctx, prep, opts, r, wanted, chunk):
        xp = ctx.xp
        n = prep["n"]
        I, dI = _normalized(xp, prep["img"], prep["normalize"])
        T, dT = _normalized(xp, prep["txt"], prep["normalize"])
        t = xp.exp(prep["theta"])
        b = prep["b"]
        need_grad = bool(wanted)
        cols = xp.arange(n, device=ctx.device)
        masked = need_grad and not _sim.all_nonzero(xp, r)

        def block(lo, hi, P):
            L = P * t + b
            rows = xp.arange(lo, hi, device=ctx.device)
            diag = rows[:, None] == cols[None, :]
            u = xp.where(diag, -L, L)  # -y L
            e = xp.exp(-xp.abs(u))
            v = xp.sum(xp.maximum(u, xp.zeros_like(u)) + xp.log1p(e), axis=1)
            if not need_grad:
                return v, None, {}
            sig = xp.where(u >= 0, 1.0 / (1.0 + e), e / (1.0 + e))  # sigma(u)
            G = xp.where(diag, -sig, sig)  # -y sigma(u)
            rb = r[lo:hi]
            G = _sim.masked_rows(xp, rb, G) if masked else rb[:, None] * G
            GP = G * t
            return v, GP, {"theta": _sim.frobenius(xp, GP, P), "bias": xp.sum(G)}

        nb = _sim.block_rows(chunk, n, n, _itemsize(xp, ctx.work))
        with quiet():
            value, gI, gT, sums = _sim.sweep(xp, I, T, block, nb, need_grad=need_grad,
                                             symmetric=False,
                                             extras=("theta", "bias") if need_grad else ())
        if not need_grad:
            return value, {}
        grads = {"image": _unnormalize(xp, gI, I, dI), "text": _unnormalize(xp, gT, T, dT),
                 "log_scale": sums["theta"], "bias": sums["bias"]}
        return value, grads


# ---------------------------------------------------------------------------- supcon_loss
class SupConLoss(_SimilarityLoss):
    r"""Supervised contrastive loss (Khosla et al. 2020): embeddings of the same class
    attract, all others repel.

    The N x V views are the contrast set (V views per example; ``(N, d)`` is one view).
    With :math:`S_{ak} = \hat f_a \cdot \hat f_k / \tau`, the other views
    :math:`A(a) = \{k \ne a\}` and the positives :math:`P(a) = \{k \in A(a): y_k = y_a\}`
    of an anchor :math:`a`:

    .. math::

        \ell_a = -\frac{\tau}{\tau_b} \frac{1}{|P(a)|} \sum_{p \in P(a)}
                 \log \frac{e^{S_{ap}}}{\sum_{k \in A(a)} e^{S_{ak}}}

    (the paper's :math:`\mathcal L^{sup}_{out}`, eq. 2), 0 for an anchor without
    positives. The value of example :math:`n` is the mean over its anchors (its V views
    with ``contrast_mode="all"``, its first view with ``"one"``), so
    ``reduction="mean"`` is the mean over all anchors, exactly as the authors'
    ``SupConLoss`` (HobbitLong/SupContrast ``losses.py``).

    Parameters
    ----------
    features : floating array of shape (N, V, d) or (N, d)
        V views of each of the N examples (the projection head's output).
    labels : integer array of shape (N,)
        The class of each example. ``labels = arange(N)`` makes only an example's own
        views positives: SimCLR's unsupervised loss.
    temperature : float, default 0.1
        :math:`\tau > 0`.
    base_temperature : float, default 0.07
        :math:`\tau_b > 0`; the loss is scaled by :math:`\tau / \tau_b` (the reference
        implementation's factor; ``base_temperature=temperature`` removes it).
    contrast_mode : {"all", "one"}, default "all"
        ``"all"``: every view is an anchor; ``"one"``: only the first view of each
        example (all views stay in the contrast set).
    normalize : bool, default True
        L2-normalise the embeddings first (the reference implementation expects
        normalised features); ``False`` uses them as given.
    chunk_size : int, optional
        Anchors (rows of the similarity matrix) per block (default: as many as fit 16 MiB).
    {common_parameters}

    Returns
    -------
    array
        Per example, shape (N,), with ``reduction="none"``; else 0-d. ``.grad`` has the
        shape of ``features``.

    Raises
    ------
    ValueError
        ``features`` not 2-d or 3-d, ``labels`` not of shape (N,), a temperature <= 0,
        an unknown ``contrast_mode``.
    TypeError
        Non-floating features, non-integer labels.

    Notes
    -----
    With the softmax :math:`Q_{ak} = e^{S_{ak}} / \sum_{j \in A(a)} e^{S_{aj}}` over
    :math:`A(a)` (:math:`Q_{aa} = 0`) and the weight :math:`r_a` of anchor :math:`a` (the
    reduction's factor and the sample weight of its example, divided by its number of
    anchors, times :math:`\tau/\tau_b`):

    .. math::

        G_{ak} = r_a \Bigl(Q_{ak} - \frac{[k \in P(a)]}{|P(a)|}\Bigr), \qquad
        \frac{\partial L}{\partial F_{\text{anchors}}} = \frac{1}{\tau} G F, \qquad
        \frac{\partial L}{\partial F} \mathrel{+}= \frac{1}{\tau} G^\top F_{\text{anchors}}

    (with ``"all"``, :math:`\frac{1}{\tau}(G + G^\top) F`), then through the
    normalisation; :math:`G_{a\cdot} = 0` for an anchor without positives.

    **Other libraries.** pytorch-metric-learning's ``SupConLoss(temperature=t)`` takes
    ``(embeddings (M, d), labels (M,))``, has no :math:`\tau/\tau_b` factor and leaves
    anchors without positives out of its mean: when every class has at least two
    embeddings it equals ``supcon_loss(embeddings, labels, temperature=t,
    base_temperature=t)``.

    References
    ----------
    .. [1] P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020,
       arXiv:2004.11362 (reference implementation: github.com/HobbitLong/SupContrast,
       ``losses.py``).

    Examples
    --------
    Two examples of one class, orthogonal to a third of another class, one view each,
    :math:`\tau = \tau_b = 1`: the two anchors of class 0 see their positive at cosine 1
    and one negative at 0 (:math:`\log(1 + e^{-1})` each); the third has no positive
    (0):

    >>> import numpy as np, losskit as lk
    >>> f = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> v = lk.supcon_loss(f, np.array([0, 0, 1]), temperature=1.0, base_temperature=1.0,
    ...                    reduction="none")
    >>> v.round(6)
    array([0.313262, 0.313262, 0.      ])
    """

    name = "supcon_loss"
    family = "representation"
    prediction = "embeddings (N, V, d): V views of each example"
    target = "integer class labels (N,)"
    inputs = ("features", "labels")
    differentiable = ("features",)
    formula = (r"\ell_a = -\frac{\tau}{\tau_b} \frac{1}{|P(a)|} \sum_{p \in P(a)} "
               r"\log \frac{e^{S_{ap}}}{\sum_{k \ne a} e^{S_{ak}}},\ S = F F^\top / \tau")
    gradient_formula = (r"\frac{\partial L}{\partial F} = \frac{1}{\tau}(G + G^\top) F,\ "
                        r"G_{ak} = r_a \Bigl(\operatorname{softmax}_{k \ne a}(S_a)_k - "
                        r"\frac{[k \in P(a)]}{|P(a)|}\Bigr)")
    when_to_use = (
        "Pre-training an encoder with class labels by contrast instead of cross-entropy: "
        "all views of the same class are pulled together, all other classes pushed apart "
        "(Khosla et al. report better robustness than cross-entropy); a linear classifier "
        "is trained on the frozen features afterwards. Needs several examples per class in "
        "a batch; labels = arange(N) gives SimCLR's unsupervised loss."
    )
    references = (
        "Khosla et al., Supervised Contrastive Learning, NeurIPS 2020, arXiv:2004.11362",
    )

    def _compute(self, ctx, features, labels, *, need_grad, temperature=0.1,
                 base_temperature=0.07, contrast_mode="all", normalize=True,
                 chunk_size=None):
        raise NotImplementedError("SupConLoss runs its own _pipeline")

    def _prepare(self, ctx, first, others, opts):
        xp = ctx.xp
        tau = check_scalar("temperature", opts["temperature"], lo=0.0, lo_open=True)
        tau_b = check_scalar("base_temperature", opts["base_temperature"], lo=0.0,
                             lo_open=True)
        for name, v in (("temperature", tau), ("base_temperature", tau_b)):
            if math.isinf(v):
                raise ValueError(f"`{name}` must be finite; got {opts[name]!r}")
        mode = opts["contrast_mode"]
        check_choice("contrast_mode", mode, ("all", "one"))
        normalize = _check_bool("normalize", opts["normalize"])
        f = self._embeddings(ctx, first, "features", ndims=(2, 3))
        shape = tuple(f.shape)
        if f.ndim == 2:
            f = xp.reshape(f, (shape[0], 1, shape[1]))
        n, views, d = f.shape
        y = without_autograd(as_array(others[0], xp, device=ctx.device, name="labels", loss=self.name))
        if not xp.isdtype(y.dtype, "integral"):
            raise TypeError(f"`labels` of {self.name} must be integer class labels; got dtype "
                            f"{_dtype_name(y.dtype)}")
        if tuple(y.shape) != (n,):
            raise ValueError(f"`labels` of {self.name} must have shape ({n},), one class per "
                             f"example (the first axis of `features` {shape}); got "
                             f"{tuple(y.shape)}")
        return {"n": n, "views": views, "f": f, "y": y, "tau": tau, "tau_b": tau_b,
                "mode": mode, "normalize": normalize, "shapes": {"features": shape}}

    def _kernel(self, ctx, prep, opts, r, wanted, chunk):
        xp = ctx.xp
        n, V, tau = prep["n"], prep["views"], prep["tau"]
        inv = 1.0 / tau
        coef = tau / prep["tau_b"]
        d = prep["f"].shape[2]
        m = n * V
        F = xp.reshape(prep["f"], (m, d))  # sample-major: row n V + v
        Fh, denom = _normalized(xp, F, prep["normalize"])
        y = prep["y"]
        yc = xp.reshape(xp.broadcast_to(y[:, None], (n, V)), (m,))
        one = prep["mode"] == "one"
        if one:
            A = Fh[::V, ...] if V > 1 else Fh
            ya = y
            per = 1
        else:
            A, ya, per = Fh, yc, V
        a_count = A.shape[0]
        self_col = (xp.arange(a_count, device=ctx.device) * (V if one else 1))
        need_grad = bool(wanted)
        cols = xp.arange(m, device=ctx.device)
        ra = None
        if need_grad:
            rw = r * (coef / per)
            ra = rw if per == 1 else xp.reshape(xp.broadcast_to(rw[:, None], (n, V)), (m,))

        def block(lo, hi, P):
            S = P * inv
            self_m = self_col[lo:hi, None] == cols[None, :]
            pos = (ya[lo:hi, None] == yc[None, :]) & ~self_m
            Sm = xp.where(self_m, xp.full_like(S, -math.inf), S)
            mx = _sim._safe_max(xp, Sm, 1)
            E = xp.exp(Sm - mx[:, None])
            s = xp.sum(E, axis=1)
            lse = mx + _sim._safe_log(xp, s)
            posf = xp.astype(pos, S.dtype)
            npos = xp.sum(posf, axis=1)
            has = npos > 0
            nsafe = xp.where(has, npos, xp.ones_like(npos))
            possum = xp.sum(xp.where(pos, S, xp.zeros_like(S)), axis=1)
            v = xp.where(has, coef * (lse - possum / nsafe), xp.zeros_like(lse))
            if not need_grad:
                return v, None, {}
            G = E / s[:, None] - posf / nsafe[:, None]
            rb = xp.where(has, ra[lo:hi], xp.zeros_like(ra[lo:hi]))
            G = _sim.masked_rows(xp, rb, G)
            return v, G * inv, {}

        nb = _sim.block_rows(chunk, a_count, m, _itemsize(xp, ctx.work))
        with quiet():
            v, gA, gC, _ = _sim.sweep(xp, A, Fh, block, nb, need_grad=need_grad,
                                      symmetric=not one)
        value = v if per == 1 else xp.mean(xp.reshape(v, (n, V)), axis=1)
        if not need_grad:
            return value, {}
        if one:
            if V > 1:
                g3 = xp.reshape(gC, (n, V, d))
                g3 = xp.concat([g3[:, :1, :] + gA[:, None, :], g3[:, 1:, :]], axis=1)
                gF = xp.reshape(g3, (m, d))
            else:
                gF = gC + gA
        else:
            gF = gA
        gF = _unnormalize(xp, gF, Fh, denom)
        return value, {"features": gF}


info_nce = nt_xent_loss = register(InfoNCE())
clip_loss = register(ClipLoss())
siglip_loss = register(SiglipLoss())
supcon_loss = register(SupConLoss())
