r"""Regularisation penalties on the weights: L1, L2 and the elastic net.

A loss measures the fit to the data; the cost that training minimises may add a penalty
on the weights :math:`w` (the *structural risk*):

.. math::

    J(w) = \underbrace{\frac1N \sum_n \ell(f_w(x_n), t_n)}_{\text{empirical risk}}
         + \underbrace{\Omega(w)}_{\text{penalty}}

so the gradient of the cost is the data loss's gradient plus ``penalty.grad(w, ...)``.
Each penalty is a module-level object like a ``Loss``: ``penalty(w, strength, ...)`` is
the value (a 0-d array), ``penalty.grad(w, strength, ...)`` its closed-form gradient with
respect to ``w`` (``w``'s shape and dtype) and ``penalty.value_and_grad(...)`` both. They
carry the same metadata as a loss (``name``, ``formula``, ``gradient_formula``,
``when_to_use``). A penalty sums over every element of ``w``; for several weight arrays,
add the penalties of each.

``strength`` is a real number :math:`\lambda \ge 0` (finite); :math:`\lambda = 0` switches
the penalty off: the value and the gradient are then exactly 0, even for non-finite
weights. ``w`` must be floating (an integer array is a ``TypeError``; a list is read as
float64); the result keeps ``w``'s library, device and dtype, and float16/bfloat16 are
accumulated in float32. NaN in ``w`` propagates.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .core.loss import fill_doc
from .core.primitives import _finish, _prepare
from .core.validation import check_scalar
from .core.arrays import quiet

__all__ = ["Penalty", "l1_penalty", "l2_penalty", "elastic_net_penalty"]


#: docstring paragraphs shared by the penalties (``{name}`` placeholders, see fill_doc)
_DOC_PARTS = {
    "weights_strength": """w : array of shape (*), floating, or array-like
    The weights (every element is penalised).
strength : float
    :math:`\\lambda \\ge 0`, finite.""",
    "raises": """Raises
------
TypeError
    ``w`` is an integer array; ``strength`` is not a real number.
ValueError
    ``strength`` is negative, infinite or NaN.""",
}


class Penalty:
    """Base class of the penalties :math:`\\Omega(w)`: value, exact gradient and metadata.

    A subclass sets the metadata, the names of its extra parameters (``params``) and
    implements ``_check`` (validates and returns the parameters as floats) and ``_kernel``
    (elementwise penalty and gradient, *before* the factor ``strength``).
    Call it as ``penalty(w, strength, *params)``.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "regularization"
    prediction: ClassVar[str] = "weights"
    formula: ClassVar[str] = ""
    gradient_formula: ClassVar[str] = ""
    when_to_use: ClassVar[str] = ""
    references: ClassVar[tuple[str, ...]] = ()
    params: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__doc__:
            cls.__doc__ = fill_doc(cls.__doc__, **_DOC_PARTS)

    # ------------------------------------------------------------------ subclass API
    def _check(self, **params) -> dict[str, float]:
        return {}

    def _kernel(self, xp, w, *, need_grad: bool, **params):
        """Elementwise ``(penalty, gradient)`` of ``w`` for strength 1 (``gradient`` may be
        ``None`` when not needed)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    def __call__(self, w, strength, *args, **kwargs):
        """The penalty :math:`\\Omega(w)`: a 0-d array of ``w``'s library and dtype."""
        return self._run(w, strength, args, kwargs, want="value")

    def grad(self, w, strength, *args, **kwargs):
        """Gradient :math:`\\partial\\Omega/\\partial w`: ``w``'s shape, library and dtype."""
        return self._run(w, strength, args, kwargs, want="grad")

    def value_and_grad(self, w, strength, *args, **kwargs):
        """``(value, grad)`` from one pass; equal to ``(penalty(...), penalty.grad(...))``."""
        return self._run(w, strength, args, kwargs, want="both")

    def info(self) -> dict[str, Any]:
        """Metadata as a plain dict (for tables, docs and the command line)."""
        return {
            "name": self.name,
            "family": self.family,
            "prediction": self.prediction,
            "formula": self.formula,
            "gradient_formula": self.gradient_formula,
            "when_to_use": self.when_to_use,
            "params": ["strength", *self.params],
            "references": list(self.references),
        }

    def __repr__(self) -> str:
        args = ", ".join(("w", "strength", *self.params))
        return f"<losskit.{self.name}({args})>"

    # ------------------------------------------------------------------ the pipeline
    def _bind(self, args, kwargs) -> dict[str, Any]:
        if len(args) > len(self.params):
            raise TypeError(f"{self.name}() takes (w, strength"
                            + "".join(f", {p}" for p in self.params)
                            + f"); got {2 + len(args)} positional arguments")
        bound = dict(zip(self.params, args))
        for key, value in kwargs.items():
            if key not in self.params:
                valid = ", ".join(("strength", *self.params))
                raise TypeError(f"{self.name}() got an unexpected keyword argument {key!r}; "
                                f"valid: {valid}")
            if key in bound:
                raise TypeError(f"{self.name}() got multiple values for {key!r}")
            bound[key] = value
        missing = [p for p in self.params if p not in bound]
        if missing:
            raise TypeError(f"{self.name}() is missing the argument "
                            + ", ".join(f"`{m}`" for m in missing))
        return bound

    def _run(self, w, strength, args, kwargs, want):
        lam = check_scalar("strength", strength, lo=0.0, hi=math.inf, hi_open=True)
        params = self._check(**self._bind(args, kwargs))
        if w is None:
            raise TypeError(f"{self.name}(): `w` must be an array of weights; got None")
        xp, x, dtype = _prepare(w, "w")
        need_grad = want != "value"
        if lam == 0.0:  # switched off: exactly 0, even for inf/NaN weights
            value, grad = xp.sum(xp.zeros_like(x)), (xp.zeros_like(x) if need_grad else None)
        else:
            with quiet():  # only a true overflow to inf (|w| ~ 1e154 in float64) could warn
                elem, g = self._kernel(xp, x, need_grad=need_grad, **params)
                value = lam * xp.sum(elem)
                grad = lam * g if need_grad else None
        value = _finish(xp, value, dtype)
        if not need_grad:
            return value
        grad = _finish(xp, grad, dtype)
        return grad if want == "grad" else (value, grad)


class L1Penalty(Penalty):
    r"""L1 (lasso) penalty :math:`\Omega(w) = \lambda \lVert w \rVert_1 = \lambda \sum_i |w_i|`.

    Call as ``l1_penalty(w, strength)``; ``.grad`` and ``.value_and_grad`` take the same
    arguments.

    Parameters
    ----------
    {weights_strength}

    Returns
    -------
    value : 0-d array
        :math:`\lambda \sum_i |w_i|` in ``w``'s library and dtype.
    grad : array of ``w``'s shape (``.grad``)
        :math:`\lambda \operatorname{sign}(w_i)`, the subgradient 0 at :math:`w_i = 0`.

    {raises}

    Notes
    -----
    .. math::

        \Omega(w) = \lambda \sum_i |w_i|, \qquad
        \frac{\partial \Omega}{\partial w_i} = \lambda \operatorname{sign}(w_i)

    :math:`|w|` has no derivative at 0; the subgradient 0 is chosen there (as for
    ``losskit.mae``), so gradient descent leaves a zero weight at zero. A plain gradient
    step oscillates around 0 rather than landing on it; proximal methods (soft
    thresholding) produce exact zeros.

    References
    ----------
    .. [1] R. Tibshirani, "Regression shrinkage and selection via the lasso", *J. R.
       Stat. Soc. B* 58(1), 267-288, 1996. :doi:`10.1111/j.2517-6161.1996.tb02080.x`
    .. [2] T. Hastie, R. Tibshirani and J. Friedman, *The Elements of Statistical
       Learning*, 2nd ed., Springer, 2009, sec. 3.4.

    Examples
    --------
    Structural risk = empirical risk + penalty:

    >>> import numpy as np, losskit as lk
    >>> w = np.array([0.5, -2.0, 0.0])
    >>> float(lk.l1_penalty(w, 0.1))                 # 0.1 * (0.5 + 2 + 0)
    0.25
    >>> lk.l1_penalty.grad(w, 0.1)                   # subgradient 0 at w = 0
    array([ 0.1, -0.1,  0. ])
    >>> x = np.array([1.0, 1.0, 1.0]); t = np.array(0.0)
    >>> cost = lk.mse(w @ x, t) + lk.l1_penalty(w, 0.1)     # (-1.5)^2 + 0.25
    >>> float(cost)
    2.5
    """

    name = "l1_penalty"
    formula = r"\Omega(w) = \lambda \sum_i |w_i|"
    gradient_formula = (r"\frac{\partial \Omega}{\partial w_i} = \lambda \operatorname{sign}(w_i)"
                        r"\quad (0 \text{ at } w_i = 0)")
    when_to_use = (
        "When many weights should be exactly zero: the L1 penalty (lasso) drives weak "
        "weights to zero and so selects features, which makes a sparse, interpretable "
        "model. Its gradient has constant size lambda whatever the weight, so it does not "
        "fade near zero the way L2's does; with a plain gradient step the weights hover "
        "around zero, proximal updates make them exactly zero. Among correlated features "
        "it tends to keep one arbitrarily: use the elastic net then.")
    references = ("Tibshirani 1996, doi:10.1111/j.2517-6161.1996.tb02080.x",)

    def _kernel(self, xp, w, *, need_grad):
        return xp.abs(w), (xp.sign(w) if need_grad else None)


class L2Penalty(Penalty):
    r"""L2 (ridge, weight-decay) penalty :math:`\Omega(w) = \frac{\lambda}{2} \lVert w \rVert_2^2`.

    Call as ``l2_penalty(w, strength)``; ``.grad`` and ``.value_and_grad`` take the same
    arguments.

    Parameters
    ----------
    {weights_strength}

    Returns
    -------
    value : 0-d array
        :math:`\frac{\lambda}{2} \sum_i w_i^2` in ``w``'s library and dtype.
    grad : array of ``w``'s shape (``.grad``)
        :math:`\lambda w`.

    {raises}

    Notes
    -----
    .. math::

        \Omega(w) = \frac{\lambda}{2} \sum_i w_i^2, \qquad
        \frac{\partial \Omega}{\partial w_i} = \lambda w_i

    The factor :math:`\frac12` makes the gradient :math:`\lambda w` (the convention of
    the tutorials and of Bishop); a gradient step with learning rate :math:`\eta` then
    multiplies the weights by :math:`1 - \eta\lambda` before the data step: *weight
    decay* with coefficient :math:`\lambda` (for plain SGD; with Adam, decoupled weight
    decay differs). scikit-learn's ``Ridge(alpha)`` puts :math:`\alpha \lVert w \rVert^2`
    without the half next to an unscaled sum of squares.

    References
    ----------
    .. [1] A. E. Hoerl and R. W. Kennard, "Ridge regression: biased estimation for
       nonorthogonal problems", *Technometrics* 12(1), 55-67, 1970.
       :doi:`10.1080/00401706.1970.10488634`
    .. [2] C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer, 2006,
       sec. 3.1.4 and 5.5.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> w = np.array([3.0, -4.0])
    >>> value, grad = lk.l2_penalty.value_and_grad(w, 0.1)
    >>> float(value), grad                        # 0.1 / 2 * 25, 0.1 * w
    (1.25, array([ 0.3, -0.4]))
    """

    name = "l2_penalty"
    formula = r"\Omega(w) = \frac{\lambda}{2} \sum_i w_i^2"
    gradient_formula = r"\frac{\partial \Omega}{\partial w_i} = \lambda w_i"
    when_to_use = (
        "The default regulariser (ridge regression, weight decay in neural networks): it "
        "shrinks every weight in proportion to its size, which keeps them small and smooth, "
        "spreads weight over correlated features and stabilises ill-conditioned problems, "
        "but makes no weight exactly zero. Its gradient lambda * w is differentiable "
        "everywhere, so it suits any gradient method.")
    references = ("Hoerl & Kennard 1970, doi:10.1080/00401706.1970.10488634",)

    def _kernel(self, xp, w, *, need_grad):
        return 0.5 * (w * w), (w if need_grad else None)


class ElasticNetPenalty(Penalty):
    r"""Elastic-net penalty, a mix of L1 and L2 in scikit-learn's ``ElasticNet`` convention.

    Call as ``elastic_net_penalty(w, strength, l1_ratio)``; ``.grad`` and
    ``.value_and_grad`` take the same arguments.

    .. math::

        \Omega(w) = \lambda \Big( \rho \lVert w \rVert_1
        + \frac{1 - \rho}{2} \lVert w \rVert_2^2 \Big)

    Parameters
    ----------
    w : array of shape (*), floating, or array-like
        The weights (every element is penalised).
    strength : float
        :math:`\lambda \ge 0`, finite (scikit-learn's ``alpha``).
    l1_ratio : float
        :math:`\rho \in [0, 1]`: 1 is the L1 penalty (``l1_penalty(w, strength)``), 0 the
        L2 penalty (``l2_penalty(w, strength)``).

    Returns
    -------
    value : 0-d array
        :math:`\Omega(w)` in ``w``'s library and dtype.
    grad : array of ``w``'s shape (``.grad``)
        :math:`\lambda (\rho \operatorname{sign}(w) + (1 - \rho) w)`, subgradient 0 for
        the L1 part at :math:`w_i = 0`.

    Raises
    ------
    TypeError
        ``w`` is an integer array; ``strength`` or ``l1_ratio`` is not a real number, or
        ``l1_ratio`` is missing.
    ValueError
        ``strength`` is negative, infinite or NaN; ``l1_ratio`` lies outside [0, 1].

    Notes
    -----
    .. math::

        \frac{\partial \Omega}{\partial w_i}
        = \lambda \big( \rho \operatorname{sign}(w_i) + (1 - \rho) w_i \big)

    This is the penalty of scikit-learn's ``ElasticNet(alpha=strength,
    l1_ratio=l1_ratio)``, whose objective is
    :math:`\frac{1}{2N}\lVert y - Xw \rVert_2^2 + \alpha\rho\lVert w\rVert_1
    + \frac{\alpha(1-\rho)}{2}\lVert w\rVert_2^2`; Zou and Hastie [1]_ write it with two
    separate strengths :math:`\lambda_1 = \lambda\rho` and :math:`\lambda_2 = \lambda(1-\rho)/2`
    (glmnet uses the same mixing as here).

    References
    ----------
    .. [1] H. Zou and T. Hastie, "Regularization and variable selection via the elastic
       net", *J. R. Stat. Soc. B* 67(2), 301-320, 2005.
       :doi:`10.1111/j.1467-9868.2005.00503.x`
    .. [2] scikit-learn, ``sklearn.linear_model.ElasticNet`` (objective function in its
       docstring).

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> w = np.array([1.0, -2.0])
    >>> float(lk.elastic_net_penalty(w, 0.5, 0.2))   # 0.5 * (0.2 * 3 + 0.8 / 2 * 5)
    1.3
    >>> lk.elastic_net_penalty.grad(w, 0.5, l1_ratio=0.2)   # 0.5 * (0.2 sign(w) + 0.8 w)
    array([ 0.5, -0.9])
    """

    name = "elastic_net_penalty"
    params = ("l1_ratio",)
    formula = (r"\Omega(w) = \lambda \Big( \rho \sum_i |w_i| "
               r"+ \frac{1 - \rho}{2} \sum_i w_i^2 \Big)")
    gradient_formula = (r"\frac{\partial \Omega}{\partial w_i} = \lambda \big( \rho "
                        r"\operatorname{sign}(w_i) + (1 - \rho) w_i \big)")
    when_to_use = (
        "When L1's sparsity is wanted but the features are correlated or outnumber the "
        "examples: the L2 part keeps groups of correlated features together (the lasso "
        "would pick one of them arbitrarily) and makes the problem strictly convex, while "
        "the L1 part still zeroes the useless weights. l1_ratio=1 is the lasso penalty, "
        "l1_ratio=0 ridge; tune strength and l1_ratio by cross-validation.")
    references = ("Zou & Hastie 2005, doi:10.1111/j.1467-9868.2005.00503.x",)

    def _check(self, *, l1_ratio):
        return {"l1_ratio": check_scalar("l1_ratio", l1_ratio, lo=0.0, hi=1.0)}

    def _kernel(self, xp, w, *, need_grad, l1_ratio):
        # a part whose coefficient is 0 is left out, not multiplied by 0: l1_ratio=0 is
        # exactly the L2 penalty and 1 exactly L1, also for infinite weights (0 * inf)
        r = l1_ratio
        parts = []
        if r > 0.0:
            parts.append((r * xp.abs(w), r * xp.sign(w) if need_grad else None))
        if r < 1.0:
            parts.append(((0.5 * (1.0 - r)) * (w * w), (1.0 - r) * w if need_grad else None))
        if len(parts) == 1:
            return parts[0]
        (e1, g1), (e2, g2) = parts
        return e1 + e2, (g1 + g2 if need_grad else None)


l1_penalty = L1Penalty()
l2_penalty = L2Penalty()
elastic_net_penalty = ElasticNetPenalty()
