r"""Numerically stable building blocks: logsumexp, softmax, sigmoid and their logs.

Stability comes from formulas, not from epsilons:

* :math:`\operatorname{logsumexp}(x) = m + \log\sum_i e^{x_i - m}` with the shift
  :math:`m = \max_i x_i` replaced by 0 when it is not finite, so a row of ``-inf``
  gives ``-inf`` (an empty sum) and a ``+inf`` entry gives ``+inf``;
* :math:`\log\sigma(z) = -\operatorname{softplus}(-z)` with
  :math:`\operatorname{softplus}(z) = \max(z, 0) + \log(1 + e^{-|z|})`, which never overflows;
* :math:`\sigma(z)` from :math:`e^{-|z|}`, exact at both ends.

The private ``_name(xp, x, ...)`` kernels work on arrays of namespace ``xp`` in the
compute dtype; the public functions accept any array (or a list), keep its library,
device and floating dtype, and compute float16/bfloat16 in float32.
"""

from __future__ import annotations

from .validation import check_floating, check_integer
from .arrays import as_array, compute_dtype, device_of, ensure_array, namespace, quiet

__all__ = ["logsumexp", "softmax", "log_softmax", "sigmoid", "log_sigmoid", "softplus",
           "sparsemax"]


# --------------------------------------------------------------------------- kernels
def _safe_max(xp, x, axis, keepdims=True):
    """Row maximum, replaced by 0 where it is +-inf or where the row is empty (``axis`` an
    int or a tuple of ints)."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    if any(x.shape[a] == 0 for a in axes):
        shape = list(x.shape)
        for a in axes:
            shape[a] = 1
        m = xp.zeros(tuple(shape), dtype=x.dtype, device=device_of(x))
        return m if keepdims else xp.squeeze(m, axis=axis)
    m = xp.max(x, axis=axis, keepdims=keepdims)
    return xp.where(xp.isfinite(m), m, xp.zeros_like(m))


def _safe_log(xp, s):
    """log(s) for s >= 0 without a divide-by-zero warning: log(0) = -inf."""
    keep = (s > 0) | xp.isnan(s)  # NaN must reach the log and propagate, not become log 1
    out = xp.log(xp.where(keep, s, xp.ones_like(s)))
    return xp.where(keep, out, xp.full_like(s, -float("inf")))


def _logsumexp(xp, x, axis=-1, keepdims=False):
    m = _safe_max(xp, x, axis, keepdims=True)
    s = xp.sum(xp.exp(x - m), axis=axis, keepdims=True)
    out = _safe_log(xp, s) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


def _softmax_and_neg_log(xp, x, axis=-1):
    """Softmax and -log softmax = log s - (x - m), from one exponentiation.

    The negative log-softmax is formed as ``log s - (x - m)``, never ``logsumexp - x``,
    which would round ``m + log s`` at the scale of ``m`` (1e-8 absolute at logits 1e8).
    """
    m = _safe_max(xp, x, axis, keepdims=True)
    shifted = x - m
    e = xp.exp(shifted)
    s = xp.sum(e, axis=axis, keepdims=True)
    neg_log = _safe_log(xp, s) - shifted
    # a row of -inf has s == 0 and a row with a +inf entry s == inf: the softmax is
    # undefined (NaN), as in PyTorch and SciPy; testing s here rather than dividing first
    # keeps inf / inf out of lazy (Dask) graphs, which run outside ``quiet()``
    ok = (s > 0) & (s < float("inf"))
    p = xp.where(ok, e / xp.where(ok, s, xp.ones_like(s)), xp.full_like(e, float("nan")))
    return p, neg_log


def _softmax(xp, x, axis=-1):
    return _softmax_and_neg_log(xp, x, axis)[0]


def _log_softmax(xp, x, axis=-1):
    # (x - m) - log s, not x - logsumexp: the latter rounds m + log s at the scale of m
    m = _safe_max(xp, x, axis, keepdims=True)
    shifted = x - m
    log_s = _safe_log(xp, xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
    # an all -inf row (log s = -inf) is undefined (NaN), as softmax is; a +inf entry
    # (log s = +inf) gives -inf elsewhere and NaN there, as SciPy. Written without inf - inf
    # so that lazy (Dask) graphs, which run outside ``quiet()``, do not warn.
    finite = xp.isfinite(log_s)
    out = shifted - xp.where(finite, log_s, xp.zeros_like(log_s))
    edge = xp.where((log_s == float("inf")) & (x < float("inf")),
                    xp.full_like(x, -float("inf")), xp.full_like(x, float("nan")))
    return xp.where(finite, out, edge)


def _softplus(xp, z):
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|))."""
    return xp.maximum(z, xp.zeros_like(z)) + xp.log1p(xp.exp(-xp.abs(z)))


def _sigmoid(xp, z):
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _log_sigmoid(xp, z):
    return -_softplus(xp, -z)


def _hinge_part(xp, s):
    """max(0, s) and its active set; NaN counts as active so that it propagates."""
    active = (s > 0) | xp.isnan(s)
    return xp.where(active, s, xp.zeros_like(s)), active


def _weighted(xp, w, x):
    """w * x with 0 * x = 0 for every x, inf and NaN included (no invalid-value warning)."""
    return w * xp.where(w == 0, xp.zeros_like(x), x)


def _xlogy(xp, x, y):
    """x * log(y) with 0 * log(y) = 0 for every y >= 0 (including 0 and inf)."""
    zero = x == 0
    safe_y = xp.where(zero, xp.ones_like(y), y)
    return xp.where(zero, xp.zeros_like(x), x * _safe_log(xp, safe_y))


def _sparsemax_parts(xp, x, axis=-1):
    r"""Sparsemax along ``axis`` from the sorted row: ``(p, u, tau)``.

    ``u = x - m`` is the row shifted by its maximum (0 where that is not finite), ``tau``
    the threshold in those units (keepdims) and :math:`p = \max(u - \tau, 0)`. With
    :math:`u_{(1)} \ge u_{(2)} \ge \dots` sorted and :math:`c_k` their cumulative sums,
    the support is the prefix :math:`\{k : 1 + k u_{(k)} > c_k\}` (Held et al. 1974;
    Michelot 1986), :math:`k^*` its size and :math:`\tau = (c_{k^*} - 1) / k^*`.
    ``-inf`` entries never enter the support (they get 0); a row without a finite entry,
    with a ``+inf`` or a NaN entry has no projection: NaN, as :func:`softmax`.
    """
    m = _safe_max(xp, x, axis, keepdims=True)
    u = x - m
    k = x.shape[axis]
    shape = [1] * x.ndim
    shape[axis] = k
    ranks = xp.reshape(xp.arange(1, k + 1, dtype=x.dtype, device=device_of(x)), tuple(shape))
    srt = xp.sort(u, axis=axis, descending=True)
    cum = xp.cumulative_sum(srt, axis=axis)
    support = 1.0 + ranks * srt > cum  # a prefix of the sorted row; -inf and NaN: False
    size = xp.sum(xp.astype(support, x.dtype), axis=axis, keepdims=True)
    total = xp.sum(xp.where(support, srt, xp.zeros_like(srt)), axis=axis, keepdims=True)
    bad = (size == 0) | xp.any(xp.isnan(x), axis=axis, keepdims=True)
    tau = xp.where(bad, xp.full_like(size, float("nan")),
                   (total - 1.0) / xp.where(bad, xp.ones_like(size), size))
    p = xp.maximum(u - tau, xp.zeros_like(u))
    p = xp.where(bad, xp.full_like(p, float("nan")), p)  # NaN - tau in u: NaN throughout
    return p, u, tau


def _sparsemax(xp, x, axis=-1):
    return _sparsemax_parts(xp, x, axis)[0]


# --------------------------------------------------------------------------- public
def _softmax_hessian(xp, p, scale, vector, axis=-1):
    r"""Second order of :math:`s\,(\operatorname{logsumexp}(z) - \dots)` along ``axis``,
    whose Hessian is :math:`s\,(\operatorname{diag} p - p p^\top)` (``p`` the softmax,
    ``scale`` :math:`s` broadcasting against it): ``(diagonal, product)`` with the diagonal
    :math:`s\,p\,(1 - p)` and the product :math:`s\,(p \odot v - p\,(p \cdot v))` with
    ``vector`` :math:`v` (None when ``vector`` is None)."""
    diag = scale * (p * (1.0 - p))
    if vector is None:
        return diag, None
    pv = p * vector
    return diag, scale * (pv - p * xp.sum(pv, axis=axis, keepdims=True))


def _prepare(x, name="x"):
    xp = namespace(x)
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        x = as_array(x, xp, name=name)
        if not xp.isdtype(x.dtype, "real floating"):
            x = xp.astype(x, xp.float64)
    x = as_array(x, xp, name=name)
    check_floating(xp, name, x)
    dtype = x.dtype
    work = compute_dtype(xp, dtype)
    if work != dtype:
        x = xp.astype(x, work)
    return xp, x, dtype


def _finish(xp, y, dtype):
    return ensure_array(y if y.dtype == dtype else xp.astype(y, dtype))


def _check_axis(x, axis):
    axis = check_integer("axis", axis)
    if x.ndim == 0:
        raise ValueError(f"`axis`={axis} needs an input with at least one dimension; got a "
                         "0-d array")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"`axis` must lie in [{-x.ndim}, {x.ndim - 1}] for an input of "
                         f"shape {tuple(x.shape)}; got {axis}")
    return axis


def logsumexp(x, axis=-1, *, keepdims=False):
    r"""Log of the sum of exponentials along ``axis``, computed without overflow.

    .. math:: \operatorname{logsumexp}(x) = m + \log \sum_i e^{x_i - m}, \quad m = \max_i x_i

    The shift is 0 when the maximum is not finite: a row of ``-inf`` gives ``-inf``
    (an empty sum, as in SciPy), a ``+inf`` entry gives ``+inf``, NaN propagates.
    Gradient: :math:`\partial/\partial x_i = \operatorname{softmax}(x)_i`.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> float(lk.logsumexp(np.array([1000.0, 1000.0])))  # naive log(sum(exp)) overflows
    1000.6931471805599
    >>> float(lk.logsumexp(np.array([-np.inf, -np.inf])))
    -inf
    """
    xp, x, dtype = _prepare(x)
    axis = _check_axis(x, axis)
    with quiet():
        return _finish(xp, _logsumexp(xp, x, axis=axis, keepdims=keepdims), dtype)


def softmax(x, axis=-1):
    r"""Softmax along ``axis``: :math:`\operatorname{softmax}(x)_j = e^{x_j} / \sum_k e^{x_k}`.

    Stable for huge logits; ``-inf`` entries get probability 0. A row of only ``-inf``
    has no defined softmax and gives NaN (as PyTorch does).
    Jacobian: :math:`\partial s_j/\partial x_i = s_j(\delta_{ij} - s_i)`.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> np.round(lk.softmax(np.array([1000.0, 1000.0, -np.inf])), 4)
    array([0.5, 0.5, 0. ])
    """
    xp, x, dtype = _prepare(x)
    axis = _check_axis(x, axis)
    with quiet():
        return _finish(xp, _softmax(xp, x, axis=axis), dtype)


def log_softmax(x, axis=-1):
    r"""Log-softmax along ``axis``: :math:`x_j - \operatorname{logsumexp}(x)`.

    Unlike ``log(softmax(x))`` it never underflows to ``-inf`` for finite input.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> lk.log_softmax(np.array([1000.0, 1.0]))   # naive log(softmax) gives -inf
    array([   0., -999.])
    """
    xp, x, dtype = _prepare(x)
    axis = _check_axis(x, axis)
    with quiet():
        return _finish(xp, _log_softmax(xp, x, axis=axis), dtype)


def sigmoid(x):
    r"""Logistic sigmoid :math:`\sigma(z) = 1 / (1 + e^{-z})`, exact at both ends.

    Derivative: :math:`\sigma'(z) = \sigma(z)(1 - \sigma(z))`.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> lk.sigmoid(np.array([-np.inf, 0.0, np.log(9.0), np.inf]))
    array([0. , 0.5, 0.9, 1. ])
    """
    xp, x, dtype = _prepare(x)
    with quiet():
        return _finish(xp, _sigmoid(xp, x), dtype)


def log_sigmoid(x):
    r""":math:`\log\sigma(z) = -\operatorname{softplus}(-z)`, never ``log(0)`` for finite ``z``.

    Derivative: :math:`1 - \sigma(z) = \sigma(-z)`.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> [round(float(v), 6) for v in lk.log_sigmoid(np.array([-1000.0, 0.0, 50.0]))]
    [-1000.0, -0.693147, -0.0]
    """
    xp, x, dtype = _prepare(x)
    with quiet():
        return _finish(xp, _log_sigmoid(xp, x), dtype)


def softplus(x):
    r""":math:`\operatorname{softplus}(z) = \log(1 + e^{z})`, computed without overflow.

    Derivative: :math:`\sigma(z)`.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> lk.softplus(np.array([-1000.0, 0.0, 1000.0]))
    array([0.00000000e+00, 6.93147181e-01, 1.00000000e+03])
    """
    xp, x, dtype = _prepare(x)
    with quiet():
        return _finish(xp, _softplus(xp, x), dtype)


def sparsemax(x, axis=-1):
    r"""Sparsemax along ``axis``: the Euclidean projection of ``x`` onto the simplex.

    .. math::

        \operatorname{sparsemax}(x) = \operatorname*{argmin}_{p \ge 0,\ \sum_j p_j = 1}
            \lVert p - x \rVert^2 = \max(x - \tau, 0)

    with the threshold :math:`\tau` that makes the row sum to 1, found from the sorted row
    (:math:`O(K \log K)`): with :math:`x_{(1)} \ge x_{(2)} \ge \dots` and
    :math:`k^* = \max\{k : 1 + k x_{(k)} > \sum_{i \le k} x_{(i)}\}`,
    :math:`\tau = (\sum_{i \le k^*} x_{(i)} - 1) / k^*`. Like softmax it maps scores to
    probabilities and is invariant to adding a constant to the row, but it is exactly 0
    on every class whose score lies below :math:`\tau` (Martins & Astudillo 2016).

    Computed on the row shifted by its maximum, so huge scores keep their precision;
    ``-inf`` entries get probability 0. A row without a finite entry, with a ``+inf`` or
    a NaN entry has no defined projection and gives NaN (as :func:`softmax`).
    Jacobian: :math:`\partial p_j / \partial x_i = [j \in S](\delta_{ij} - [i \in S]/|S|)`,
    :math:`S` the support.

    References
    ----------
    .. [1] A. F. T. Martins, R. F. Astudillo, "From softmax to sparsemax: a sparse model
       of attention and multi-label classification", ICML 2016, arXiv:1602.02068.

    Examples
    --------
    >>> import numpy as np, losskit as lk
    >>> lk.sparsemax(np.array([1.0, 0.5, -1.0]))   # tau = (1 + 0.5 - 1) / 2 = 0.25
    array([0.75, 0.25, 0.  ])
    >>> lk.sparsemax(np.array([3.0, 0.0, -np.inf]))   # far ahead: all the mass
    array([1., 0., 0.])
    """
    xp, x, dtype = _prepare(x)
    axis = _check_axis(x, axis)
    with quiet():
        return _finish(xp, _sparsemax(xp, x, axis=axis), dtype)
