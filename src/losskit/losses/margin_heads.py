r"""Additive-margin softmax heads: ArcFace and CosFace, on normalised features and weights.

A face-recognition (or any open-set classification) head compares the L2-normalised
feature :math:`u_i` of an example with the L2-normalised weight vector :math:`w_c` of
every class, :math:`\cos\theta_{ic} = u_i \cdot w_c`, and trains a softmax cross-entropy
on the scaled cosines, with a **margin** on the true class only:

* :data:`arcface_loss` -- additive angular margin, :math:`s \cos(\theta_y + m)`;
* :data:`cosface_loss` -- additive cosine margin, :math:`s (\cos\theta_y - m)`.

Both take ``(features, weight, labels)``: ``features`` ``(N, D)``, the class-weight matrix
``weight`` ``(C, D)`` (one row per class, like ``torch.nn.Linear(D, C).weight``) and
integer ``labels`` ``(N,)``. The features **and** the weight matrix are differentiable
(``wrt="features"``, ``"weight"`` or ``"all"``); the gradients go through both
normalisations. The N x C cosines are computed in blocks of rows on NumPy.

``reduction="mean"`` is the mean over the examples (pytorch-metric-learning's
``MeanReducer``, the default of its ``ArcFaceLoss`` and ``CosFaceLoss``); a cross-entropy
is never 0, so a non-zero average would be the same. ``sample_weight`` weights examples;
the weight matrix's gradient is then the weighted sum over the examples.
"""

from __future__ import annotations

import math

from ..core.validation import check_floating, check_labels, check_numeric, check_scalar
from ..core.loss import register
from ..kernels import mining as _mining
from .metric_mining import _BatchLoss, _check_bool, _finite

__all__ = ["arcface_loss", "cosface_loss"]


class _MarginHead(_BatchLoss):
    inputs = ("features", "weight", "labels")
    differentiable = ("features", "weight")
    family = "metric_learning"
    prediction = "features (N, D) and class weights (C, D)"
    target = "class indices (N,)"
    _kind = ""

    def _prepare(self, ctx, feats, weight, labels, **opts):
        xp = ctx.xp
        if feats.ndim != 2:
            raise ValueError(f"`features` of {ctx.loss} must be a 2-d array (N, D); got "
                             f"shape {tuple(feats.shape)}")
        w = ctx.asarray(weight, "weight")
        check_floating(xp, "weight", w, loss=ctx.loss)
        if w.dtype != ctx.dtype:
            from ..core.validation import _dtype_name
            raise TypeError(f"`weight` of {ctx.loss} must have the dtype of `features` "
                            f"({_dtype_name(ctx.dtype)}); got {_dtype_name(w.dtype)}")
        if w.ndim != 2 or w.shape[1] != feats.shape[1] or w.shape[0] < 1:
            raise ValueError(f"`weight` of {ctx.loss} must have shape (C, {feats.shape[1]}): "
                             f"one row per class (C >= 1), as torch.nn.Linear's weight; got "
                             f"{tuple(w.shape)}")
        if w.dtype != ctx.work:
            w = xp.astype(w, ctx.work)
        y = ctx.asarray(labels, "labels")
        check_numeric(xp, "labels", y, bool_ok=False)
        if not xp.isdtype(y.dtype, "integral"):
            raise TypeError(f"`labels` of {ctx.loss} must be integer class indices; got "
                            f"dtype {y.dtype}")
        if tuple(y.shape) != (feats.shape[0],):
            raise ValueError(f"`labels` of {ctx.loss} must have shape ({feats.shape[0]},), "
                             f"one class index per row of `features`; got {tuple(y.shape)}")
        check_labels(xp, "labels", y, w.shape[0], ignore_index=None)
        return {"n": feats.shape[0], "x": feats, "w": w, "y": y,
                "opts": self._options_of(opts)}

    def _terms(self, ctx, prepared, sw, need_grad, wrt):
        o = prepared["opts"]
        value, g_x, g_w = _mining.margin_head_terms(
            ctx.xp, prepared["x"], prepared["w"], prepared["y"], sw, kind=self._kind,
            scale=o["scale"], margin=o["margin"], easy_margin=o.get("easy_margin", False),
            need_grad=need_grad)
        ones = ctx.xp.ones_like(value)
        return [(value, ones, ones)], {"features": [g_x], "weight": [g_w]}


class ArcFaceLoss(_MarginHead):
    r"""ArcFace: softmax cross-entropy with an additive angular margin (Deng et al. 2019).

    With :math:`\cos\theta_{ic} = u_i \cdot w_c` (both L2-normalised) and the true class
    :math:`y_i`:

    .. math::

        \ell_i = -\log \frac{e^{s\,\psi(\theta_{i y_i})}}{e^{s\,\psi(\theta_{i y_i})} +
        \sum_{c \ne y_i} e^{s \cos\theta_{ic}}}, \qquad
        \psi(\theta) = \begin{cases} \cos(\theta + m) & \theta \le \pi - m \\
        \cos\theta - m \sin m & \text{otherwise} \end{cases}

    The second branch keeps the target logit decreasing in :math:`\theta` where
    :math:`\theta + m` would pass :math:`\pi` (InsightFace's and pytorch-metric-learning's
    choice; ``easy_margin=True`` is InsightFace's other option,
    :math:`\psi = \cos(\theta + m)` only where :math:`\cos\theta > 0`, else
    :math:`\cos\theta`).

    Parameters
    ----------
    features : floating array of shape (N, D)
        The embeddings (normalised by the loss).
    weight : floating array of shape (C, D)
        One weight vector per class (normalised by the loss), the features' dtype.
    labels : integer array of shape (N,)
        The true class of each row, in ``[0, C)``.
    scale : float, default 64
        :math:`s > 0`, the radius of the hypersphere.
    margin : float, default 0.5
        :math:`m`, the angular margin in **radians** (pytorch-metric-learning takes
        degrees: its default 28.6 is ``margin=numpy.radians(28.6)``), in
        :math:`[0, \pi/2]`.
    easy_margin : bool, default False
        InsightFace's ``easy_margin``: the margin only where :math:`\cos\theta > 0`.
    {common_parameters}

    Returns
    -------
    array
        Per example, shape (N,), with ``reduction="none"``; else 0-d. ``.grad`` has the
        shape of ``features`` (``wrt="weight"``: of ``weight``).

    Raises
    ------
    ValueError
        Shapes that do not match, labels outside ``[0, C)``, ``scale <= 0``, a margin
        outside :math:`[0, \pi/2]`.
    TypeError
        Non-floating features or weight (or of two dtypes), non-integer labels.

    Notes
    -----
    With :math:`p = \operatorname{softmax}` of the logits and :math:`c = \cos\theta`:

    .. math::

        \frac{\partial \ell_i}{\partial c_{ic}} = s\,(p_{ic} - 1)\,\psi'(c_{ic})
        \ (c = y_i), \qquad s\,p_{ic}\ (c \ne y_i), \qquad
        \psi'(c) = \cos m + \frac{c \sin m}{\sqrt{1 - c^2}}

    (1 on the second branch), then :math:`\partial c_{ic}/\partial u_i = w_c`,
    :math:`\partial c_{ic}/\partial w_c = u_i` and the two normalisations,
    :math:`\partial / \partial x = (g - u (u \cdot g)) / \lVert x \rVert`. At
    :math:`\theta = 0` the derivative is unbounded; :math:`\sqrt{1 - c^2}` is taken no
    smaller than :math:`\sqrt{\varepsilon}` of the dtype. :math:`c` is clipped to
    :math:`[-1, 1]` for the angle (its derivative 0 outside, as PyTorch's ``clamp``).

    pytorch-metric-learning's ``ArcFaceLoss(C, D, margin=deg, scale=s)`` is
    ``arcface_loss(x, loss.W.T, y, margin=numpy.radians(deg), scale=s)`` (its ``W`` is
    ``(D, C)``).

    References
    ----------
    .. [1] J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive angular margin loss
       for deep face recognition", CVPR 2019, arXiv:1801.07698.

    Examples
    --------
    One feature along its class vector (:math:`\theta = 0`, target logit
    :math:`s \cos m`) and orthogonal to the other class (logit 0):

    >>> import numpy as np, losskit as lk
    >>> x = np.array([[1.0, 0.0]]); W = np.eye(2); y = np.array([0])
    >>> v = lk.arcface_loss(x, W, y, scale=1.0, margin=0.5)
    >>> bool(np.isclose(v, np.log(1 + np.exp(-np.cos(0.5)))))
    True
    """

    name = "arcface_loss"
    _kind = "arcface"
    formula = (r"\ell_i = -\log\frac{e^{s\cos(\theta_{y_i} + m)}}{e^{s\cos(\theta_{y_i} + m)}"
               r" + \sum_{c \ne y_i} e^{s\cos\theta_c}}")
    gradient_formula = (r"\frac{\partial \ell}{\partial \cos\theta_c} = s(p_c - [c = y])"
                        r"\,\psi'(\cos\theta_c)^{[c = y]},\ \psi'(c) = \cos m + "
                        r"\frac{c\sin m}{\sqrt{1 - c^2}}")
    when_to_use = (
        "Training a face-recognition or open-set classification backbone whose normalised "
        "features are compared by cosine at test time: the angular margin on the true "
        "class gives compact, well-separated classes on the hypersphere. Both the "
        "features and the class-weight matrix are learned."
    )
    references = (
        "Deng, Guo, Xue, Zafeiriou, ArcFace: Additive angular margin loss for deep face "
        "recognition, CVPR 2019, arXiv:1801.07698",
    )

    def _options_of(self, opts):
        return {"scale": _finite("scale", opts["scale"], lo=0.0, lo_open=True),
                "margin": check_scalar("margin", opts["margin"], lo=0.0, hi=math.pi / 2),
                "easy_margin": _check_bool("easy_margin", opts["easy_margin"])}

    def _compute(self, ctx, features, weight, labels, *, need_grad, scale=64.0, margin=0.5,
                 easy_margin=False):
        raise NotImplementedError(f"{self.name} runs its own _pipeline")


class CosFaceLoss(_MarginHead):
    r"""CosFace (large-margin cosine loss): softmax cross-entropy with an additive cosine
    margin (Wang et al. 2018).

    .. math::

        \ell_i = -\log \frac{e^{s (\cos\theta_{i y_i} - m)}}{e^{s (\cos\theta_{i y_i} - m)}
        + \sum_{c \ne y_i} e^{s \cos\theta_{ic}}}, \qquad
        \cos\theta_{ic} = \frac{x_i \cdot w_c}{\lVert x_i \rVert \lVert w_c \rVert}

    Parameters
    ----------
    features : floating array of shape (N, D)
        The embeddings (normalised by the loss).
    weight : floating array of shape (C, D)
        One weight vector per class (normalised by the loss), the features' dtype.
    labels : integer array of shape (N,)
        The true class of each row, in ``[0, C)``.
    scale : float, default 64
        :math:`s > 0`.
    margin : float, default 0.35
        :math:`m`, subtracted from the true class's cosine.
    {common_parameters}

    Returns
    -------
    array
        Per example, shape (N,), with ``reduction="none"``; else 0-d.

    Raises
    ------
    ValueError
        Shapes that do not match, labels outside ``[0, C)``, ``scale <= 0``, an infinite
        margin.
    TypeError
        Non-floating features or weight (or of two dtypes), non-integer labels.

    Notes
    -----
    .. math::

        \frac{\partial \ell_i}{\partial \cos\theta_{ic}} = s\,(p_{ic} - [c = y_i])

    then :math:`\partial \cos\theta_{ic} / \partial u_i = w_c`, :math:`\partial
    \cos\theta_{ic} / \partial w_c = u_i` and the normalisations, as for
    :data:`arcface_loss`. pytorch-metric-learning's ``CosFaceLoss(C, D, margin=m,
    scale=s)`` is ``cosface_loss(x, loss.W.T, y, margin=m, scale=s)``.

    References
    ----------
    .. [1] H. Wang, Y. Wang, Z. Zhou, X. Ji, D. Gong, J. Zhou, Z. Li, W. Liu, "CosFace:
       Large margin cosine loss for deep face recognition", CVPR 2018, arXiv:1801.09414.

    Examples
    --------
    A feature along its class vector (cosine 1) and orthogonal to the other class, scale
    1 and margin 0.5: logits :math:`0.5` and 0:

    >>> import numpy as np, losskit as lk
    >>> x = np.array([[2.0, 0.0]]); W = np.eye(2); y = np.array([0])
    >>> v = lk.cosface_loss(x, W, y, scale=1.0, margin=0.5)
    >>> bool(np.isclose(v, np.log(1 + np.exp(-0.5))))
    True
    """

    name = "cosface_loss"
    _kind = "cosface"
    formula = (r"\ell_i = -\log\frac{e^{s(\cos\theta_{y_i} - m)}}{e^{s(\cos\theta_{y_i} - m)}"
               r" + \sum_{c \ne y_i} e^{s\cos\theta_c}}")
    gradient_formula = r"\frac{\partial \ell}{\partial \cos\theta_c} = s(p_c - [c = y])"
    when_to_use = (
        "Training a face-recognition or open-set classification backbone on normalised "
        "features and class weights: the cosine margin on the true class is simpler and "
        "numerically tamer than ArcFace's angular margin, with similar accuracy. Both the "
        "features and the class-weight matrix are learned."
    )
    references = (
        "Wang et al., CosFace: Large margin cosine loss for deep face recognition, "
        "CVPR 2018, arXiv:1801.09414",
    )

    def _options_of(self, opts):
        return {"scale": _finite("scale", opts["scale"], lo=0.0, lo_open=True),
                "margin": _finite("margin", opts["margin"])}

    def _compute(self, ctx, features, weight, labels, *, need_grad, scale=64.0,
                 margin=0.35):
        raise NotImplementedError(f"{self.name} runs its own _pipeline")


arcface_loss = register(ArcFaceLoss())
cosface_loss = register(CosFaceLoss())
