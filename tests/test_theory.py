"""Properties of dynaprune.theory, scores and variance ([Omission] Theorem 1, eq. 4-5; [OnlineIS] eq. 7)."""
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from dynaprune import scores, theory, variance
from dynaprune.models import build_model


def heavy(n, seed):
    rng = np.random.default_rng(seed)
    return rng.pareto(1.5, n) + 1e-3


@pytest.mark.parametrize("seed", range(5))
def test_sort_and_bisect_agree_and_budget(seed):
    s = heavy(200, seed)
    for budget in (1, 17.5, 100, 199, 200):
        p1 = theory.optimal_bernoulli_probs(s, budget)
        p2 = theory.optimal_bernoulli_probs(s, budget, method="bisect")
        np.testing.assert_allclose(p1, p2, rtol=1e-8, atol=1e-10)
        assert abs(p1.sum() - budget) < 1e-8 and (p1 > 0).all() and (p1 <= 1).all()


def test_ties_zeros_and_torch():
    s = np.array([5.0, 5.0, 5.0, 1.0, 0.0, 0.0])
    p = theory.optimal_bernoulli_probs(s, 3.5)
    np.testing.assert_allclose(p, [1, 1, 1, 0.5, 0, 0])
    t = theory.optimal_bernoulli_probs(torch.tensor(s, dtype=torch.float32), 3.5)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), p, rtol=1e-6)
    np.testing.assert_allclose(theory.optimal_bernoulli_probs(np.ones(10), 4), 0.4)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_optimal_against_scipy(seed):
    """No feasible point found by a general constrained optimiser has lower variance ([Omission] Theorem 1)."""
    s = heavy(30, seed)
    s = s / s.max()  # scale-free problem; keeps the optimiser well conditioned
    b = 8
    var = lambda p: theory.bernoulli_variance(s ** 2, p)
    p_star = theory.optimal_bernoulli_probs(s, b)
    res = minimize(lambda p: float(np.sum((1 - p) * s ** 2 / p)), np.full(30, b / 30), method="trust-constr",
                   jac=lambda p: -s ** 2 / p ** 2, bounds=[(1e-6, 1)] * 30,
                   constraints=[{"type": "eq", "fun": lambda p: p.sum() - b, "jac": lambda p: np.ones_like(p)}],
                   options={"maxiter": 5000, "gtol": 1e-12, "xtol": 1e-14})
    q = np.clip(res.x, 1e-6, 1)
    assert abs(q.sum() - b) < 1e-6  # the optimiser's point is feasible
    assert var(p_star) <= var(q) * (1 + 1e-9)
    assert var(q) <= var(p_star) * 1.01  # and it got close: the comparison is meaningful
    # and random feasible perturbations (mass moved between two unsaturated samples) never help
    rng = np.random.default_rng(seed)
    free = np.flatnonzero(p_star < 1)
    for _ in range(200):
        i, j = rng.choice(free, 2, replace=False)
        eps = rng.uniform(-1, 1) * min(p_star[i], p_star[j], 1 - p_star[i], 1 - p_star[j]) * 0.5
        q = p_star.copy(); q[i] += eps; q[j] -= eps
        assert var(q) >= var(p_star) - 1e-12


def test_smoothing_lower_bound():
    rng = np.random.default_rng(0)
    for alpha in (0.0, 0.01, 0.1, 0.5, 1.0):
        S = rng.pareto(1.0, 500) ** 2
        p = theory.smoothed_probs(S, 50, alpha)
        assert abs(p.sum() - 50) < 1e-8
        assert p.min() >= 50 / 500 * np.sqrt(alpha) - 1e-12
    np.testing.assert_allclose(theory.smoothed_probs(rng.random(100), 20, 1.0), 0.2)  # alpha=1: uniform


@pytest.mark.parametrize("bad", [dict(scores=[1, -1, 2], budget=1), dict(scores=[1, np.nan], budget=1),
                                 dict(scores=[1, 2], budget=0), dict(scores=[1, 2], budget=3),
                                 dict(scores=[1, 0, 0], budget=2), dict(scores=[[1, 2]], budget=1)])
def test_bad_input(bad):
    with pytest.raises(ValueError):
        theory.optimal_bernoulli_probs(**bad)


def test_bad_alpha_and_shapes():
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        theory.smoothed_probs([1.0, 2.0], 1, alpha=1.5)
    with pytest.raises(ValueError, match="same shape"):
        theory.bernoulli_variance([1.0, 2.0], [0.5])


@pytest.fixture(scope="module")
def grads():
    torch.manual_seed(0)  # test-only: fixes the synthetic problem
    G = torch.randn(40, 6, dtype=torch.float64) * torch.rand(40, 1, dtype=torch.float64) ** 2 * 3 + 0.3
    return G


@pytest.mark.parametrize("scheme", ["uniform", "replacement", "bernoulli"])
def test_unbiased_and_closed_form_matches_monte_carlo(grads, scheme):
    b, T = 8, 40000
    norms = grads.norm(dim=1)
    probs = None
    if scheme == "replacement":
        probs = norms / norms.sum()
    elif scheme == "bernoulli":
        probs = torch.as_tensor(theory.optimal_bernoulli_probs(norms.numpy(), b))
    est = variance.sample_estimates(grads, probs, scheme, b, T, torch.Generator().manual_seed(1))
    gbar = grads.mean(0)
    se = est.std(0) / np.sqrt(T)
    z = ((est.mean(0) - gbar) / se).abs()
    assert z.max() < 4.5, f"bias beyond 4.5 standard errors: {z}"
    exact = variance.estimator_variance(grads, probs, scheme, b)
    mc, mc_se, _ = variance.monte_carlo_variance(grads, probs, scheme, b, trials=T, seed=2)
    assert abs(mc - exact) < 4.5 * mc_se, (mc, exact, mc_se)


def test_optimal_probabilities_beat_uniform(grads):
    b = 8
    norms = grads.norm(dim=1)
    v_rep = variance.estimator_variance(grads, norms / norms.sum(), "replacement", b)
    v_ber = variance.estimator_variance(grads, theory.optimal_bernoulli_probs(norms.numpy(), b), "bernoulli", b)
    v_uni_rep = variance.estimator_variance(grads, torch.full((40,), 1 / 40), "replacement", b)
    v_uni_ber = variance.estimator_variance(grads, torch.full((40,), b / 40), "bernoulli", b)
    assert v_rep < v_uni_rep and v_ber < v_uni_ber


def test_infobatch_step_scale_measured():
    """Monte Carlo of InfoBatch's kept-set and 1/(1-r) weights with per-step division by b."""
    n, w, r, b = 100, 60, 0.5, 10
    rng = np.random.default_rng(0)
    steps = []
    for _ in range(4000):
        keep_w = rng.choice(w, theory.infobatch_keep_count(w, r), replace=False)
        kept = np.concatenate([np.arange(w, n), keep_w])
        weights = np.where(kept < w, 1 / (1 - r), 1.0)
        order = rng.permutation(len(kept))[:b]
        steps.append(weights[order].mean())  # every g_i = 1: the step gradient is mean(w)
    steps = np.array(steps)
    pred = theory.infobatch_step_scale(n, w, r)
    assert abs(steps.mean() - pred) < 4 * steps.std() / np.sqrt(len(steps))
    assert abs(pred - n / (n - w + int((1 - r) * w))) < 1e-12  # = 1/rho when (1-r)|W| is an integer


def test_descent_bound_prefers_lower_variance():
    lo = theory.descent_bound(1.0, 0.1, 10.0, 2.0, 0.5)
    hi = theory.descent_bound(1.0, 0.1, 10.0, 2.0, 5.0)
    assert lo < hi and lo == pytest.approx(1.0 - 0.2 + 0.5 * 0.01 * 10 * 2.5)


def test_output_grad_closed_form_equals_autodiff():
    z, y = torch.randn(64, 10), torch.randint(0, 10, (64,))
    torch.testing.assert_close(scores.output_grad_norm_ce(z, y), scores.output_grad_norm(z, y), rtol=1e-5, atol=1e-6)
    r = torch.randn(5, 3)
    t = torch.randn(5, 3)
    torch.testing.assert_close(scores.output_grad_norm(r, t, "mse"), 2 * (r - t).norm(dim=1))


@pytest.mark.parametrize("name,shape", [("mlp", (20,)), ("small_cnn", (1, 12, 12))])
def test_fast_per_sample_norms_equal_vmap(name, shape):
    m = build_model(name, shape, 5, seed=0, **({"hidden": (32, 16)} if name == "mlp" else {}))
    x, y = torch.randn(17, *shape, generator=torch.Generator().manual_seed(0)), torch.arange(17) % 5
    fast = scores.per_sample_grad_norms(m, x, y, method="fast")
    slow = scores.per_sample_grad_norms(m, x, y, method="vmap")
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    G = variance.per_sample_gradients(m, x, y)
    torch.testing.assert_close(G.norm(dim=1), slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(G.mean(0), variance.full_gradient(m, x, y, chunk=5), rtol=1e-5, atol=1e-6)


def test_dlis_is_last_layer_gradient_norm():
    m = build_model("mlp", (6,), 3, seed=0, hidden=(8,))
    x, y = torch.randn(9, 6), torch.arange(9) % 3
    G = variance.per_sample_gradients(m, x, y)
    last = 8 * 3 + 3  # parameters of the last Linear come last
    torch.testing.assert_close(scores.dlis_norm(m, x, y), G[:, -last:].norm(dim=1), rtol=1e-5, atol=1e-6)


def test_grad_norm_memory():
    mem = scores.GradNormMemory(4)
    mem.update(torch.tensor([1, 3]), torch.tensor([3.0, 0.0]))
    torch.testing.assert_close(mem.probs(), torch.tensor([0.2, 0.6, 0.2, 0.0], dtype=torch.float64))
    before = mem.norms.clone()
    with pytest.raises(IndexError):
        mem.update(torch.tensor([4]), torch.tensor([1.0]))
    with pytest.raises(ValueError):
        mem.update(torch.tensor([0]), torch.tensor([float("nan")]))
    assert torch.equal(before, mem.norms)


def test_signal_variances_orders_signals():
    m = build_model("mlp", (2,), 2, seed=0, hidden=(16,))
    from dynaprune.data import load_dataset
    ds = load_dataset("toy2d", n_train=300)
    x, y = ds.x_train, ds.y_train
    exact = scores.per_sample_grad_norms(m, x, y)
    out = variance.signal_variances(m, x, y, {"uniform": None, "exact": exact}, b=16, schemes=("replacement", "bernoulli"))
    assert out[("exact", "replacement")] < out[("uniform", "replacement")]
    # Theorem 1: optimal Bernoulli beats uniform-probability Bernoulli (p = b/N) on the same gradients
    G = variance.per_sample_gradients(m, x, y)
    assert out[("exact", "bernoulli")] < variance.estimator_variance(G, torch.full((300,), 16 / 300), "bernoulli", 16)


def test_logits_with_grad_norm_inverts_the_closed_form():
    g = torch.tensor([1e-3, 0.05, 0.3, 0.7, 1.0, 1.4], dtype=torch.float64)
    z = scores.logits_with_grad_norm(g)
    assert z.shape == (6, 2)
    torch.testing.assert_close(scores.output_grad_norm_ce(z, torch.zeros(6, dtype=torch.long)).double(), g,
                               rtol=1e-4, atol=1e-6)
