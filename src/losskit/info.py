r"""Information theory: self-information, entropy, cross-entropy, KL and JS divergences.

These are the quantities behind the cross-entropy loss. With :math:`p` the true
distribution and :math:`q` the model's (the textbooks' order, [1]_):

.. math::

    I(x) = -\log p(x), \qquad
    H(p) = -\sum_i p_i \log p_i, \qquad
    H(p, q) = -\sum_i p_i \log q_i, \qquad
    D_{\mathrm{KL}}(p \,\|\, q) = \sum_i p_i \log \frac{p_i}{q_i},

and the three are tied by

.. math::

    H(p, q) = H(p) + D_{\mathrm{KL}}(p \,\|\, q).

The entropy :math:`H(p)` of the labels does not depend on the model, so minimising the
cross-entropy, minimising the KL divergence and maximising the likelihood are one and the
same training objective. :math:`D_{\mathrm{KL}} \ge 0`, with equality only for
:math:`q = p`, which is why a perfect model's cross-entropy equals the entropy of the
labels (0 for one-hot labels).

Conventions, in every function:

* ``base`` is the logarithm base: ``math.e`` (the default) gives nats, ``2`` bits, ``10``
  the base the tutorials print their numbers in. ``base`` must be positive, finite and not 1.
* :math:`0 \log 0 = 0` and :math:`0 \log(0/q) = 0`; :math:`p_i > 0` where :math:`q_i = 0`
  gives ``+inf`` (the model says impossible what happens), never NaN and never a warning.
* Inputs are probabilities: values outside :math:`[0, 1]` are a ``ValueError``, and so are
  slices along ``axis`` that do not sum to 1 within rounding
  (:math:`K \cdot \min(10^{-2}, \max(10^{-6}, 10\sqrt{\varepsilon}))` for :math:`K` entries
  and the dtype's machine epsilon :math:`\varepsilon`). Nothing is renormalised silently
  (``scipy.stats.entropy`` does); normalise explicitly. These data checks run only when the
  values can be read now: not on Dask arrays or inside ``jax.jit``.
* NaN propagates to the result.
* Any array library (NumPy, PyTorch, JAX, CuPy, Dask, array-api-strict): the result keeps
  the input's library, device and floating dtype; float16/bfloat16 are computed in float32.
  Integer *arrays* are an error (convert explicitly); lists and Python numbers are read as
  float64, or in the dtype of the other argument when that one is an array.

For the cross-entropy *loss* (prediction first, with reductions and a gradient) see
:data:`losskit.cross_entropy`; the functions here are the textbook quantities, with the
true distribution first.

References
----------
.. [1] T. M. Cover and J. A. Thomas, *Elements of Information Theory*, 2nd ed., Wiley,
   2006, ch. 2. :doi:`10.1002/047174882X`
"""

from __future__ import annotations

import math

from .core.loss import fill_doc
from .core.primitives import _check_axis, _finish, _prepare, _safe_log, _xlogy
from .core.validation import (
    check_floating,
    check_in_range,
    check_log_base,
    check_same_shape,
    check_sums_to_one,
)
from .core.arrays import as_array, compute_dtype, device_of, namespace

__all__ = [
    "self_information",
    "entropy",
    "binary_entropy",
    "cross_entropy",
    "kl_divergence",
    "js_divergence",
]

_HINT = "it holds probabilities (use losskit.softmax or losskit.sigmoid on logits first)"
_INF = float("inf")
_NAN = float("nan")


#: the Returns and Raises sections of the functions of two distributions
_PAIR_RETURNS_RAISES = """Returns
-------
array
    The shape without ``axis``, in the common library, device and dtype of the inputs
    (a list takes the other argument's dtype).

Raises
------
TypeError
    An integer array; arrays from two libraries.
ValueError
    Different shapes; values outside :math:`[0, 1]`; slices that do not sum to 1;
    a bad ``axis`` or ``base``."""


def _pair_doc(func):
    """Fill the shared sections into the docstring of a function of two distributions."""
    func.__doc__ = fill_doc(func.__doc__, pair_returns_raises=_PAIR_RETURNS_RAISES)
    return func


# --------------------------------------------------------------------------- preparation
def _probabilities(p, name):
    """One probability argument: namespace, compute-dtype array, caller's dtype."""
    xp, x, dtype = _prepare(p, name)
    check_in_range(xp, name, x, 0.0, 1.0, hint=_HINT)
    return xp, x, dtype


def _is_array_like_with_dtype(x) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape")


def _distribution_pair(p, q, axis):
    """``p`` and ``q`` in one namespace, on one device and in one compute dtype.

    Arrays decide the dtype (two float dtypes promote as the library does); a list or a
    Python number takes the other argument's dtype, or float64 when both are lists.
    """
    xp = namespace(p, q)
    native = [a for a in (p, q) if _is_array_like_with_dtype(a)]
    device = device_of(native[0]) if native else None
    arrays, dtypes = [], []
    for x, name in ((p, "p"), (q, "q")):
        if x is None:
            raise TypeError(f"`{name}` must be an array of probabilities; got None")
        a = as_array(x, xp, device=device, name=name)
        if _is_array_like_with_dtype(x):
            check_floating(xp, name, a)
            dtypes.append(a.dtype)
        arrays.append(a)
    dtype = xp.result_type(*dtypes) if dtypes else xp.float64
    check_same_shape("p", arrays[0].shape, "q", arrays[1].shape)
    _check_axis(arrays[0], axis)
    work = compute_dtype(xp, dtype)
    out = []
    for a, name in zip(arrays, ("p", "q")):
        if a.dtype != dtype:
            a = xp.astype(a, dtype)
        check_in_range(xp, name, a, 0.0, 1.0, hint=_HINT)
        check_sums_to_one(xp, name, a, axis)
        out.append(a if a.dtype == work else xp.astype(a, work))
    return xp, out[0], out[1], dtype


def _propagate_nan(xp, out, *arrays):
    """``out`` with NaN wherever any of ``arrays`` is NaN (the 0-log-0 masks hide it)."""
    nan = xp.isnan(arrays[0])
    for a in arrays[1:]:
        nan = nan | xp.isnan(a)
    return xp.where(nan, xp.full_like(out, _NAN), out)


# --------------------------------------------------------------------------- kernels
def _neg_xlogx(xp, p):
    """-p log p elementwise, 0 at p = 0; ``0.0 - ...`` so that H = 0 prints as 0, not -0."""
    return 0.0 - _xlogy(xp, p, p)


def _rel_entr(xp, p, q):
    r"""p log(p / q) elementwise: 0 where p = 0, +inf where p > 0 = q, NaN propagates.

    The ratio keeps full precision when p is close to q (KL(p, p) is exactly 0); for a
    subnormal q, where p / q could overflow, the log is taken of p and q separately.
    """
    one = xp.ones_like(p)
    both = (p > 0) & (q > 0)
    normal = both & (q >= xp.finfo(q.dtype).smallest_normal)
    ratio = xp.where(normal, p, one) / xp.where(normal, q, one)
    log_ratio = xp.where(
        normal, xp.log(ratio),
        xp.log(xp.where(both, p, one)) - xp.log(xp.where(both, q, one)))
    edge = xp.where(p > 0, xp.full_like(p, _INF), xp.zeros_like(p))
    return _propagate_nan(xp, xp.where(both, p * log_ratio, edge), p, q)


def _half_js(xp, a, s):
    """a log(a / m) with m = s / 2 = (p + q) / 2, as a log(2a / s): finite, 0 where a = 0."""
    pos = a > 0
    one = xp.ones_like(a)
    r = xp.where(pos, 2.0 * a, one) / xp.where(pos, s, one)  # in (0, 2]: never overflows
    return xp.where(pos, a * xp.log(r), xp.zeros_like(a))


# --------------------------------------------------------------------------- public API
def self_information(p, *, base=math.e):
    r"""Self-information (surprisal) of an event of probability ``p``, elementwise.

    .. math:: I(p) = -\log_b p

    Rarer events carry more information: :math:`I(1) = 0` and :math:`I(0) = +\infty`.

    Parameters
    ----------
    p : array of shape (*), floating, or array-like
        Probabilities in :math:`[0, 1]`.
    base : float, default math.e
        Logarithm base :math:`b` (``2`` for bits, ``10`` for the tutorials' numbers).

    Returns
    -------
    array of shape (*)
        :math:`I(p)`, same library, device and dtype as ``p``.

    Raises
    ------
    TypeError
        ``p`` is an integer array.
    ValueError
        ``p`` has values outside :math:`[0, 1]`; ``base`` is not positive, is 1 or is infinite.

    References
    ----------
    .. [1] T. M. Cover and J. A. Thomas, *Elements of Information Theory*, 2nd ed.,
       Wiley, 2006, sec. 2.1. :doi:`10.1002/047174882X`

    Examples
    --------
    A fair coin's outcome carries one bit; an event of probability 1/8 three bits.

    >>> import numpy as np
    >>> from losskit import info
    >>> info.self_information(np.array([0.5, 0.125, 1.0, 0.0]), base=2)
    array([ 1.,  3.,  0., inf])
    """
    ln_b = check_log_base(base)
    xp, x, dtype = _probabilities(p, "p")
    return _finish(xp, (0.0 - _safe_log(xp, x)) / ln_b, dtype)


def entropy(p, axis=-1, *, base=math.e):
    r"""Shannon entropy of the distribution(s) ``p`` along ``axis``.

    .. math:: H(p) = -\sum_i p_i \log_b p_i, \qquad 0 \log 0 = 0

    :math:`0 \le H(p) \le \log_b K` for :math:`K` outcomes: 0 for a certain outcome,
    :math:`\log_b K` for the uniform distribution.

    Parameters
    ----------
    p : array of shape (..., K, ...), floating, or array-like
        Probabilities in :math:`[0, 1]` that sum to 1 along ``axis``.
    axis : int, default -1
        The axis of the outcomes.
    base : float, default math.e
        Logarithm base (``2``: bits, ``10``: the tutorials' base).

    Returns
    -------
    array
        ``p``'s shape without ``axis`` (0-d for one distribution), same library, device
        and dtype as ``p``.

    Raises
    ------
    TypeError
        ``p`` is an integer array, or ``axis`` is not an int.
    ValueError
        ``p`` has values outside :math:`[0, 1]` or a slice that does not sum to 1;
        ``axis`` is out of range; ``base`` is invalid.

    See Also
    --------
    binary_entropy : the two-outcome case from one probability.
    cross_entropy, kl_divergence

    References
    ----------
    .. [1] T. M. Cover and J. A. Thomas, *Elements of Information Theory*, 2nd ed.,
       Wiley, 2006, sec. 2.1. :doi:`10.1002/047174882X`

    Examples
    --------
    >>> import numpy as np
    >>> from losskit import info
    >>> float(info.entropy([0.5, 0.5], base=2)), float(info.entropy([1.0, 0.0]))
    (1.0, 0.0)
    >>> info.entropy(np.full((2, 4), 0.25), base=2)    # one value per row
    array([2., 2.])
    """
    ln_b = check_log_base(base)
    xp, x, dtype = _prepare(p, "p")
    _check_axis(x, axis)
    check_in_range(xp, "p", x, 0.0, 1.0, hint=_HINT)
    check_sums_to_one(xp, "p", x, axis, dtype=dtype)
    return _finish(xp, xp.sum(_neg_xlogx(xp, x), axis=axis) / ln_b, dtype)


def binary_entropy(p, *, base=math.e):
    r"""Entropy of a two-outcome (Bernoulli) variable with probability ``p``, elementwise.

    .. math:: H_b(p) = -p \log_b p - (1 - p) \log_b (1 - p), \qquad 0 \log 0 = 0

    The second term is computed as :math:`(1 - p)\,\operatorname{log1p}(-p)`, accurate for
    small ``p``. :math:`H_b` is 0 at :math:`p \in \{0, 1\}` and at most
    :math:`\log_b 2` (1 bit), at :math:`p = 1/2`.

    Parameters
    ----------
    p : array of shape (*), floating, or array-like
        Probabilities in :math:`[0, 1]`, one per variable.
    base : float, default math.e
        Logarithm base.

    Returns
    -------
    array of shape (*)
        Same library, device and dtype as ``p``.

    Raises
    ------
    TypeError
        ``p`` is an integer array.
    ValueError
        ``p`` has values outside :math:`[0, 1]`; ``base`` is invalid.

    References
    ----------
    .. [1] T. M. Cover and J. A. Thomas, *Elements of Information Theory*, 2nd ed.,
       Wiley, 2006, sec. 2.1. :doi:`10.1002/047174882X`

    Examples
    --------
    >>> from losskit import info
    >>> info.binary_entropy([0.0, 0.5, 0.9, 1.0], base=2)
    array([0.    , 1.    , 0.4690, 0.    ])
    """
    ln_b = check_log_base(base)
    xp, x, dtype = _probabilities(p, "p")
    q = 1.0 - x
    keep = q != 0  # 0 log 0 = 0 at p = 1, without evaluating log1p(-1)
    tail = xp.where(keep, q * xp.log1p(xp.where(keep, -x, xp.zeros_like(x))), xp.zeros_like(x))
    h = _neg_xlogx(xp, x) - tail
    return _finish(xp, _propagate_nan(xp, h, x) / ln_b, dtype)


@_pair_doc
def cross_entropy(p, q, axis=-1, *, base=math.e):
    r"""Cross-entropy of the model distribution ``q`` relative to the true ``p``.

    .. math::

        H(p, q) = -\sum_i p_i \log_b q_i = H(p) + D_{\mathrm{KL}}(p \,\|\, q)

    with :math:`0 \log q = 0` for every :math:`q` and :math:`+\infty` where
    :math:`p_i > 0 = q_i`. The minimum over :math:`q` is :math:`H(p)`, reached at
    :math:`q = p`.

    Note the argument order: the true distribution comes first here, as in the
    textbooks, while the loss :data:`losskit.cross_entropy` takes the prediction first
    (``losskit.cross_entropy(q, p, reduction="sum")`` is this value in nats, computed with
    a dtype-aware clamp on ``q``).

    Parameters
    ----------
    p : array of shape (..., K, ...), floating, or array-like
        True distribution(s), summing to 1 along ``axis``.
    q : array of the same shape
        Model distribution(s), summing to 1 along ``axis``. Nothing is broadcast.
    axis : int, default -1
        The axis of the outcomes.
    base : float, default math.e
        Logarithm base.

    {pair_returns_raises}

    See Also
    --------
    entropy, kl_divergence

    References
    ----------
    .. [1] T. M. Cover and J. A. Thomas, *Elements of Information Theory*, 2nd ed.,
       Wiley, 2006, sec. 2.3 (relative entropy) and sec. 5.4 (coding with the wrong
       distribution costs :math:`H(p) + D(p \| q)`). :doi:`10.1002/047174882X`

    Examples
    --------
    With a one-hot ``p`` only the true class counts: :math:`-\ln 0.6 = 0.51`.

    >>> from losskit import info
    >>> round(float(info.cross_entropy([0.0, 1.0, 0.0], [0.1, 0.6, 0.3])), 2)
    0.51
    >>> float(info.cross_entropy([0.5, 0.5], [1.0, 0.0]))   # q rules out what p allows
    inf
    """
    ln_b = check_log_base(base)
    xp, p_, q_, dtype = _distribution_pair(p, q, axis)
    terms = _propagate_nan(xp, 0.0 - _xlogy(xp, p_, q_), p_, q_)
    return _finish(xp, xp.sum(terms, axis=axis) / ln_b, dtype)


@_pair_doc
def kl_divergence(p, q, axis=-1, *, base=math.e):
    r"""Kullback-Leibler divergence (relative entropy) of ``q`` from the true ``p``.

    .. math::

        D_{\mathrm{KL}}(p \,\|\, q) = \sum_i p_i \log_b \frac{p_i}{q_i}
        = H(p, q) - H(p)

    with :math:`0 \log(0/q) = 0` and :math:`p \log(p/0) = +\infty` for :math:`p > 0`.
    :math:`D_{\mathrm{KL}} \ge 0`, with equality iff :math:`p = q`; it is not symmetric.
    Each term is computed from the ratio :math:`p_i/q_i`, so ``kl_divergence(p, p)`` is
    exactly 0.

    Parameters
    ----------
    p : array of shape (..., K, ...), floating, or array-like
        True distribution(s), summing to 1 along ``axis``.
    q : array of the same shape
        Model distribution(s), summing to 1 along ``axis``. Nothing is broadcast.
    axis : int, default -1
        The axis of the outcomes.
    base : float, default math.e
        Logarithm base: the tutorials print their numbers in base 10.

    {pair_returns_raises}

    See Also
    --------
    js_divergence : a symmetric, bounded relative.
    scipy.special.rel_entr : the elementwise terms (natural log).

    References
    ----------
    .. [1] T. M. Cover and J. A. Thomas, *Elements of Information Theory*, 2nd ed.,
       Wiley, 2006, sec. 2.3. :doi:`10.1002/047174882X`

    Examples
    --------
    The tutorials' numbers, in base 10, for :math:`P = (0.9, 0.1)`:

    >>> from losskit import info
    >>> P = [0.9, 0.1]
    >>> round(float(info.kl_divergence(P, [0.1, 0.9], base=10)), 3)
    0.763
    >>> round(float(info.kl_divergence(P, [0.5, 0.5], base=10)), 3)
    0.16
    >>> round(float(info.kl_divergence(P, [0.1, 0.9])), 4)   # natural log
    1.7578
    >>> round(float(info.kl_divergence(P, [0.5, 0.5])), 4)
    0.3681
    >>> float(info.kl_divergence(P, P))
    0.0
    """
    ln_b = check_log_base(base)
    xp, p_, q_, dtype = _distribution_pair(p, q, axis)
    return _finish(xp, xp.sum(_rel_entr(xp, p_, q_), axis=axis) / ln_b, dtype)


@_pair_doc
def js_divergence(p, q, axis=-1, *, base=math.e):
    r"""Jensen-Shannon divergence between ``p`` and ``q``: KL to their mixture, averaged.

    .. math::

        \mathrm{JS}(p, q) = \tfrac12 D_{\mathrm{KL}}(p \,\|\, m)
        + \tfrac12 D_{\mathrm{KL}}(q \,\|\, m), \qquad m = \tfrac12 (p + q)

    Symmetric, always finite, and :math:`0 \le \mathrm{JS} \le \log_b 2` (1 bit), with 0
    iff :math:`p = q`. Each term is computed as :math:`p_i \log(2 p_i / (p_i + q_i))`.
    ``scipy.spatial.distance.jensenshannon`` returns the *square root* of this value (a
    metric) and renormalises its inputs; this function does neither.

    Parameters
    ----------
    p, q : arrays of the same shape (..., K, ...), floating, or array-like
        Distributions summing to 1 along ``axis``.
    axis : int, default -1
        The axis of the outcomes.
    base : float, default math.e
        Logarithm base.

    {pair_returns_raises}

    References
    ----------
    .. [1] J. Lin, "Divergence measures based on the Shannon entropy", *IEEE Trans.
       Inf. Theory* 37(1), 145-151, 1991. :doi:`10.1109/18.61115`
    .. [2] T. M. Cover and J. A. Thomas, *Elements of Information Theory*, 2nd ed.,
       Wiley, 2006, sec. 2.3. :doi:`10.1002/047174882X`

    Examples
    --------
    Disjoint supports reach the bound, one bit:

    >>> from losskit import info
    >>> float(info.js_divergence([1.0, 0.0], [0.0, 1.0], base=2))
    1.0

    For :math:`P = (0.9, 0.1)` and :math:`Q = (0.1, 0.9)` the mixture is uniform, so both
    halves equal the tutorials' :math:`D_{\mathrm{KL}}(P \,\|\, (0.5, 0.5)) = 0.160`
    (base 10), while :math:`D_{\mathrm{KL}}(P \,\|\, Q) = 0.763`:

    >>> round(float(info.js_divergence([0.9, 0.1], [0.1, 0.9], base=10)), 3)
    0.16
    """
    ln_b = check_log_base(base)
    xp, p_, q_, dtype = _distribution_pair(p, q, axis)
    s = p_ + q_
    terms = 0.5 * (_half_js(xp, p_, s) + _half_js(xp, q_, s))
    terms = _propagate_nan(xp, terms, p_, q_)
    return _finish(xp, xp.sum(terms, axis=axis) / ln_b, dtype)
