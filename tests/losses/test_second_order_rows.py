"""Second order of the per-row classification and divergence losses at the edges the
catalog cases do not reach: clamps, probabilities 0 and 1, huge and ``-inf`` logits, and
options the cases leave out. Expected values are the mathematics written out here (with
mpmath at high precision where a closed form would itself round) or PyTorch's autograd."""

from __future__ import annotations

import numpy as np
import pytest

import losskit as lk

torch = pytest.importorskip("torch")
mpmath = pytest.importorskip("mpmath")
F = torch.nn.functional


def _torch_hessian(fn, z):
    """The full Hessian of the scalar ``fn(z)`` (z a float64 array), as (n, n)."""
    x = torch.tensor(z, dtype=torch.float64)
    return torch.autograd.functional.hessian(fn, x).reshape(x.numel(), -1).numpy()


def _check_dense(loss, z, t, H, rtol=1e-10, **options):
    """``hessian`` is the diagonal of H, ``hvp`` the product with H (reduction "sum")."""
    h = loss.hessian(z, t, reduction="sum", **options)
    np.testing.assert_allclose(h.reshape(-1), np.diag(H), rtol=rtol, atol=1e-13)
    v = np.random.default_rng(1).normal(size=np.shape(z))
    hv = loss.hvp(z, t, vector=v, reduction="sum", **options)
    np.testing.assert_allclose(hv.reshape(-1), H @ v.reshape(-1), rtol=rtol, atol=1e-13)


# ---------------------------------------------------------------- probabilities in
def test_cross_entropy_hessian_is_the_clamped_value_s():
    eps = np.finfo(np.float64).eps
    y = np.array([[0.0, eps / 2, eps, 0.5], [1e-3, 0.25, 0.7, 0.05]])
    t = np.array([[0.4, 0.3, 0.2, 0.1], [0.0, 0.5, 0.5, 0.0]])
    h = lk.cross_entropy.hessian(y, t, reduction="none")
    # t / y^2 at or above the clamp eps, 0 below it (the value is constant there)
    expect = np.where(y >= eps, t / np.maximum(y, eps) ** 2, 0.0)
    np.testing.assert_allclose(h, expect, rtol=1e-15)
    assert h[0, 2] == pytest.approx(0.2 / eps**2) and h[0, 0] == h[0, 1] == 0.0


def test_cross_entropy_and_nll_with_label_smoothing_and_class_weight():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=3)
    y = np.array([2, -100, 0])
    cw = np.array([1.0, 2.0, 0.5, 3.0])
    opts = dict(class_weight=cw, ignore_index=-100, label_smoothing=0.2)
    # a = 0.8 w_y [c = y] + 0.05 w_c on the rows that are not ignored
    a = 0.05 * cw * np.array([[1.0], [0.0], [1.0]])
    a[0, 2] += 0.8 * cw[2]
    a[2, 0] += 0.8 * cw[0]
    np.testing.assert_allclose(lk.cross_entropy.hessian(p, y, reduction="sum", **opts),
                               a / p**2, rtol=1e-14)

    def ref(x):  # the value -sum a log p, differentiated by PyTorch
        return -(torch.tensor(a) * torch.log(x)).sum()

    _check_dense(lk.cross_entropy, p, y, _torch_hessian(ref, p), rtol=1e-12, **opts)
    # nll_loss is linear in the log-probabilities: every second derivative is 0
    logp = np.log(p)
    assert not np.any(lk.nll_loss.hessian(logp, y, **opts))
    assert not np.any(lk.nll_loss.hvp(logp, y, vector=np.ones_like(p), **opts))
    assert not np.any(lk.nll_loss.hessian(logp, p, label_smoothing=0.1))


def test_generalized_cross_entropy_at_zero_one_and_q1():
    p = np.array([[0.25, 0.75], [0.0, 1.0], [0.5, 0.5]])
    y = np.array([0, 0, -1])
    h = lk.generalized_cross_entropy.hessian(p, y, q=0.5, ignore_index=-1,
                                             class_weight=np.array([2.0, 1.0]),
                                             reduction="sum")
    # (1 - q) w_y p_y^(q - 2): 0.5 * 2 * 0.25^-1.5 = 8; inf at p_y = 0; ignored row: 0
    np.testing.assert_allclose(h, [[8.0, 0.0], [np.inf, 0.0], [0.0, 0.0]], rtol=1e-15)
    assert not np.any(lk.generalized_cross_entropy.hessian(p, np.array([1, 0, 1]), q=1.0))
    t = np.array([[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]])  # soft: every class's own term
    hs = lk.generalized_cross_entropy.hessian(p, t, q=0.7, reduction="sum")
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 * inf where t = 0 = p
        expect = np.where(t > 0, 0.3 * t * p ** (0.7 - 2.0), 0.0)
    np.testing.assert_allclose(hs, expect, rtol=1e-14)


# ---------------------------------------------------------------- focal and Poly-1
def _focal_ref(gamma, t, alpha=None, cw=None, axis=-1):
    def fn(z):
        logp = torch.log_softmax(z, dim=axis)
        fl = -((1 - logp.exp()) ** gamma) * logp
        a = torch.tensor(t)
        if cw is not None:
            a = a * torch.tensor(cw).reshape(-1, 1)
        if alpha is not None:
            a = a * torch.tensor(alpha).reshape(-1, 1)
        return (a * fl).sum()
    return fn


@pytest.mark.parametrize("gamma", [0.3, 1.0, 2.5])
def test_softmax_focal_soft_targets_axis1_against_torch(gamma):
    rng = np.random.default_rng(2)
    z = rng.normal(scale=2.0, size=(2, 3, 2))
    t = rng.dirichlet(np.ones(3), size=(2, 2)).transpose(0, 2, 1)  # rows along axis 1
    alpha, cw = np.array([0.5, 1.0, 2.0]), np.array([1.5, 1.0, 0.5])
    H = _torch_hessian(_focal_ref(gamma, t, alpha, cw, axis=1), z)
    _check_dense(lk.softmax_focal_loss, z, t, H, gamma=gamma, alpha=alpha,
                 class_weight=cw, axis=1)


def _two_class_second_derivative(phi, delta):
    """d^2/d delta^2 of phi(p) with p = sigmoid(delta), at 60 digits."""
    with mpmath.workdps(60):
        return float(mpmath.diff(lambda d: phi(1 / (1 + mpmath.exp(-d))), delta, 2))


@pytest.mark.parametrize("gamma", [0.25, 2.0])
@pytest.mark.parametrize("delta", [3.0, 40.0])
def test_softmax_focal_near_certainty_matches_high_precision(gamma, delta):
    # two classes, label 0: the loss is L(delta) of delta = z0 - z1, so the Hessian is
    # L''(delta) [[1, -1], [-1, 1]]; at delta = 40, 1 - p_y = 4e-18 and w_y ~ u^(gamma-1)
    def phi(p):
        return -((1 - p) ** gamma) * mpmath.log(p)

    d2 = _two_class_second_derivative(phi, mpmath.mpf(delta))
    z = np.array([[delta, 0.0]])
    y = np.array([0])
    h = lk.softmax_focal_loss.hessian(z, y, gamma=gamma, reduction="sum")
    np.testing.assert_allclose(h, [[d2, d2]], rtol=1e-9)
    hv = lk.softmax_focal_loss.hvp(z, y, vector=np.array([[1.0, -2.0]]), gamma=gamma,
                                   reduction="sum")
    np.testing.assert_allclose(hv, [[3 * d2, -3 * d2]], rtol=1e-9)


def test_poly_loss_near_certainty_matches_high_precision():
    def phi(p):  # -log p + eps (1 - p), eps = 2
        return -mpmath.log(p) + 2 * (1 - p)

    d2 = _two_class_second_derivative(phi, mpmath.mpf(40))
    h = lk.poly_loss.hessian(np.array([[40.0, 0.0]]), np.array([0]), epsilon=2.0,
                             reduction="sum")
    np.testing.assert_allclose(h, [[d2, d2]], rtol=1e-9)


@pytest.mark.parametrize("loss, opts", [(lk.softmax_focal_loss, {"gamma": 0.2}),
                                        (lk.softmax_focal_loss, {"gamma": 2.0}),
                                        (lk.poly_loss, {"epsilon": 2.0})])
def test_focal_and_poly_huge_and_masked_logits(loss, opts):
    v = np.array([[1.0, -2.0, 0.5], [0.3, 1.0, -1.0], [2.0, 1.0, 1.0]])
    z = np.array([[1e4, 0.0, -1e4], [745.0, 0.0, -np.inf], [1.0, -np.inf, 0.5]])
    y = np.array([0, 0, 0])
    h = loss.hessian(z, y, reduction="none", **opts)
    hv = loss.hvp(z, y, vector=v, reduction="none", **opts)
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(hv))
    # p = e_y to the last bit (row 0) or but for e^-745 (row 1): the Hessian vanishes
    np.testing.assert_array_equal(h[0], 0.0)
    np.testing.assert_allclose(h[1], 0.0, atol=1e-300)
    np.testing.assert_allclose(hv[:2], 0.0, atol=1e-300)
    # a masked (-inf) class is absent: the Hessian of the row without it, and 0 there
    z2, v2 = z[2:, [0, 2]], v[2:, [0, 2]]
    expect = loss.hessian(z2, y[2:], reduction="none", **opts)
    np.testing.assert_allclose(h[2], [expect[0, 0], 0.0, expect[0, 1]], rtol=1e-14)
    expect = loss.hvp(z2, y[2:], vector=v2, reduction="none", **opts)
    np.testing.assert_allclose(hv[2], [expect[0, 0], 0.0, expect[0, 1]], rtol=1e-14)


def test_softmax_focal_masked_true_class_has_the_cross_entropy_hessian():
    # z_y = -inf: the loss is inf, (1 - p_y)^gamma = 1 and its derivatives vanish, so the
    # Hessian is the cross-entropy's diag(p) - p p^T, finite
    z = np.array([[-np.inf, 0.0, 1.0]])
    p = np.array([0.0, 1.0, np.e]) / (1.0 + np.e)
    v = np.array([[0.5, 1.0, -1.0]])
    for gamma in (0.5, 2.0):
        h = lk.softmax_focal_loss.hessian(z, np.array([0]), gamma=gamma, reduction="sum")
        np.testing.assert_allclose(h[0], p * (1 - p), rtol=1e-14)
        hv = lk.softmax_focal_loss.hvp(z, np.array([0]), vector=v, gamma=gamma,
                                       reduction="sum")
        np.testing.assert_allclose(hv[0], p * v[0] - p * (p @ v[0]), rtol=1e-14)


# ---------------------------------------------------------------- sparsemax
def test_binary_sparsemax_hessian_is_the_sparse_sigmoid_slope():
    z = np.array([-3.0, -0.5, 0.0, 0.999, 3.0, np.inf, -np.inf, np.nan])
    t = np.array([1.0, 0.0, 0.3, 1.0, 0.0, 1.0, 0.0, 1.0])
    h = lk.sparsemax_loss.hessian(z, t, reduction="none")
    np.testing.assert_array_equal(h, [0, 0.5, 0.5, 0.5, 0, 0, 0, np.nan])


def test_multiclass_sparsemax_hessian_is_the_sparsemax_jacobian():
    # supports {0, 1}, {0} (a margin of 1.5), {0, 1, 3} (a -inf class), ignored row
    z = np.array([[1.0, 0.5, -1.0, -2.0], [2.0, 0.5, -1.0, 0.0],
                  [1e10, 1e10 - 0.5, -np.inf, 1e10 - 0.25], [0.0, 0.1, 0.2, 0.3]])
    y = np.array([0, 0, 1, -100])
    v = np.array([[1.0, 2.0, 3.0, 4.0]] * 4)
    h = lk.multiclass_sparsemax_loss.hessian(z, y, ignore_index=-100, reduction="sum")
    np.testing.assert_allclose(h, [[0.5, 0.5, 0, 0], [0, 0, 0, 0],
                                   [2 / 3, 2 / 3, 0, 2 / 3], [0, 0, 0, 0]], rtol=1e-15)
    hv = lk.multiclass_sparsemax_loss.hvp(z, y, vector=v, ignore_index=-100,
                                          reduction="sum")
    # s * (v - mean of v over the support)
    np.testing.assert_allclose(hv, [[-0.5, 0.5, 0, 0], [0, 0, 0, 0],
                                    [1 - 7 / 3, 2 - 7 / 3, 0, 4 - 7 / 3], [0, 0, 0, 0]],
                               rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------- divergences
def test_kl_divergence_second_order_for_every_input_convention():
    q = np.array([[0.5, 0.25, 0.25, 0.0], [0.1, 0.2, 0.3, 0.4]])
    p = np.array([[0.0, 0.5, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]])
    with np.errstate(divide="ignore"):
        logq, logp = np.log(q), np.log(p)
        expect = np.where(p > 0, p / q**2, 0.0)  # inf where p > 0 = q
    for t, log_target in ((p, False), (logp, True)):
        h = lk.kl_divergence.hessian(q, t, log_prediction=False, log_target=log_target,
                                     reduction="none")
        np.testing.assert_allclose(h, expect, rtol=1e-15)
        # linear in log q (every other option alike): 0, also at log q = -inf
        assert not np.any(lk.kl_divergence.hessian(logq, t, log_target=log_target))
    # a tuple axis: one distribution per (2, 2) map; still the elementwise p / q^2
    q4, p4 = q.reshape(2, 2, 2)[:, None], p.reshape(2, 2, 2)[:, None]
    h = lk.kl_divergence.hessian(q4, p4, log_prediction=False, axis=(2, 3),
                                 reduction="sum")
    np.testing.assert_allclose(h.reshape(q.shape), expect, rtol=1e-15)


def test_js_divergence_second_order_at_zeros_and_tiny_masses():
    q = np.array([0.2, 0.0, 0.5, 1e-300, 0.0])
    p = np.array([0.6, 0.3, 0.0, 1e-300, 0.0])
    h = lk.js_divergence.hessian(q, p, axis=0, reduction="sum")
    # p / (2 q (p + q)): 0.6 / (2 * 0.2 * 0.8); inf where q = 0 < p; 0 where p = 0;
    # 1 / (4 q) at p = q = 1e-300, with no underflow of q (p + q)
    np.testing.assert_allclose(h, [1.875, np.inf, 0.0, 2.5e299, 0.0], rtol=1e-15)


def test_softmax_kl_divergence_huge_and_masked_logits():
    z = np.array([[1e4, 0.0, -np.inf], [0.0, np.log(3.0), -np.inf]])
    t = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    v = np.array([[1.0, 2.0, 3.0], [1.0, -1.0, 5.0]])
    for temp in (1.0, 4.0):
        h = lk.softmax_kl_divergence.hessian(z, t, temperature=temp, reduction="none")
        hv = lk.softmax_kl_divergence.hvp(z, t, vector=v, temperature=temp,
                                          reduction="none")
        # q = softmax(z / T); T^2 / T^2 (diag q - q q^T): row 0 is one-hot at any T
        q = np.array([[1.0, 0.0, 0.0], [1.0, 3.0 ** (1 / temp), 0.0]])
        q[1] /= q[1].sum()
        np.testing.assert_allclose(h, q * (1 - q), rtol=1e-14, atol=0)
        np.testing.assert_allclose(
            hv, q * v - q * np.sum(q * v, axis=1, keepdims=True), rtol=1e-14, atol=1e-300)
    hs = lk.softmax_kl_divergence.hessian(z, t, temperature=4.0, reduction="none",
                                          scale_by_temperature_squared=False)
    np.testing.assert_allclose(hs, h / 16.0, rtol=1e-14)
