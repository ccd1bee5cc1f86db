"""Sampling theory: optimal Bernoulli probabilities, smoothing, exact estimator variances.

Sources: [Omission] section 2 (the L-smooth descent bound), section 3.1
(eq. 3-4, Theorem 1/2), section 3.2.2 (eq. 5-6 and the bound p_i >= (b/B) sqrt(alpha)),
appendix A; [OnlineIS] §3 (sampling with replacement, weights 1/(n p)).

Conventions: an estimator of the mean gradient gbar = (1/N) sum_i g_i over a
pool of N samples ("B" in [Omission]). Variances are total variances (trace of the
covariance), E||ghat - gbar||^2, as in [Omission] §2.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["optimal_bernoulli_probs", "smoothed_probs", "bernoulli_variance", "replacement_variance",
           "uniform_without_replacement_variance", "infobatch_keep_count", "infobatch_step_scale",
           "descent_bound"]


def _as_numpy(x, name="scores"):
    """(float64 numpy copy, function converting a result back to the input's kind/device/dtype)."""
    if isinstance(x, torch.Tensor):
        dev, dt = x.device, (x.dtype if x.dtype.is_floating_point else torch.get_default_dtype())
        arr = x.detach().to("cpu", torch.float64).numpy()
        back = lambda a: torch.as_tensor(a, dtype=dt, device=dev)
    else:
        arr = np.asarray(x, dtype=np.float64)
        back = lambda a: a
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contain NaN or inf")
    return arr, back


def _check_budget(budget, n):
    budget = float(budget)
    if not (0.0 < budget <= n):
        raise ValueError(f"budget must satisfy 0 < budget <= n = {n}, got {budget}")
    return budget


def optimal_bernoulli_probs(scores, budget, method: str = "sort", tol: float = 1e-12, max_iter: int = 200):
    """Optimal inclusion probabilities p_i = min(s_i / c, 1) with sum p = budget ([Omission] Theorem 1, eq. 3).

    ``scores`` are non-negative s_i = ||g_i|| (Theorem 1), or sqrt(E||g_i||^2)
    under random augmentation / dropout (Theorem 2). They minimise
    sum_i (1 - p_i) s_i^2 / p_i (the variance of estimator eq. 4) subject to
    sum p_i = budget, 0 < p_i <= 1.

    ``method="sort"``: exact water-filling in O(n log n): with scores sorted
    descending, the first k are saturated (p = 1) and c = (sum of the rest) / (budget - k)
    for the smallest k with s_(k+1) <= c. ``method="bisect"``: the paper's
    binary search on c (section 3.1), to ``tol`` relative precision.

    Samples with score 0 get p = 0: they contribute nothing to the gradient,
    so they need no weight; the budget must then be reachable by the positive
    scores (at most their count), otherwise use `smoothed_probs`.
    Returns the same kind as ``scores`` (numpy array, or tensor on its device).
    """
    s, back = _as_numpy(scores)
    if np.any(s < 0):
        raise ValueError("scores must be non-negative")
    n = len(s)
    budget = _check_budget(budget, n)
    positive = int(np.count_nonzero(s))
    if budget > positive + 1e-9 * n:
        raise ValueError(f"budget {budget} is unreachable: only {positive} of {n} scores are positive "
                         "(zero-score samples get p = 0); lower the budget or smooth the scores "
                         "(smoothed_probs with alpha > 0)")
    if method == "sort":
        order = np.argsort(-s, kind="stable")
        srt = s[order]
        # tail[k] = sum of srt[k:], the mass left unsaturated when k samples are saturated.
        tail = np.concatenate([np.cumsum(srt[::-1])[::-1], [0.0]])
        kmax = int(np.ceil(budget)) - 1  # at most ceil(budget) - 1 saturated samples keep budget - k > 0
        k = np.arange(kmax + 1)
        # condition s_(k+1) (0-based srt[k]) <= c_k = tail[k] / (budget - k)
        ok = srt[k] * (budget - k) <= tail[k] * (1 + 1e-12)
        first = int(np.argmax(ok)) if ok.any() else kmax
        c = tail[first] / (budget - first)
        p = np.minimum(s / c, 1.0)
    elif method == "bisect":
        f = lambda c: np.minimum(s / c, 1.0).sum()
        lo = s[s > 0].min() * (1 - 1e-12)          # f(lo) = #positive >= budget
        hi = s.sum() / budget                         # f(hi) <= budget
        for _ in range(max_iter):
            mid = 0.5 * (lo + hi)
            if f(mid) > budget:
                lo = mid
            else:
                hi = mid
            if hi - lo <= tol * hi:
                break
        p = np.minimum(s / hi, 1.0)
    else:
        raise ValueError(f"unknown method {method!r}; known: sort, bisect")
    return back(p)


def smoothed_probs(scores, budget, alpha: float = 0.1, method: str = "sort"):
    """[Omission] eq. 5: p_i = min(sqrt((1 - alpha) SCORE_i + alpha mean_j SCORE_j) / c, 1), sum p = budget.

    ``scores`` are SCORE_i (squared-norm scale, e.g. the EMA of ||g~_i||^2).
    Guarantee ([Omission] §3.2.2, from eq. 6): p_i >= (budget / n) sqrt(alpha).
    """
    s, back = _as_numpy(scores)
    if np.any(s < 0):
        raise ValueError("scores must be non-negative")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    _check_budget(budget, len(s))
    smooth = np.sqrt((1 - alpha) * s + alpha * s.mean())
    if not smooth.any():  # all scores zero: nothing distinguishes the samples
        smooth = np.ones_like(smooth)
    return back(optimal_bernoulli_probs(smooth, budget, method=method))


def _sq_norms_probs(sq_norms, probs):
    g2, back = _as_numpy(sq_norms, "sq_norms")
    p, _ = _as_numpy(probs, "probs")
    if g2.shape != p.shape:
        raise ValueError(f"sq_norms {g2.shape} and probs {p.shape} must have the same shape")
    if np.any(g2 < 0):
        raise ValueError("sq_norms must be non-negative")
    if np.any(p < 0) or np.any(p > 1 + 1e-12):
        raise ValueError("probs must lie in [0, 1]")
    if np.any((p == 0) & (g2 > 0)):
        raise ValueError("a sample with non-zero gradient has probability 0: the estimator is biased")
    return g2, p


def bernoulli_variance(sq_norms, probs, pool_size: int | None = None) -> float:
    """Variance of the weighted Bernoulli estimator ([Omission] eq. 4, section 3.1):
    sum_i (1 - p_i) ||g_i||^2 / (B^2 p_i), with B = ``pool_size`` (default: len)."""
    g2, p = _sq_norms_probs(sq_norms, probs)
    B = len(g2) if pool_size is None else pool_size
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(g2 > 0, (1 - p) * g2 / np.where(p > 0, p, 1.0), 0.0)
    return float(terms.sum() / B ** 2)


def replacement_variance(sq_norms, probs, draws: int, mean_grad_sq_norm: float) -> float:
    """Variance of (1/b) sum_j g_{i_j} / (N q_{i_j}) with b i.i.d. draws i_j ~ q ([OnlineIS] Alg. 1 weights 1/(N q)):
    (1/b) [ sum_i ||g_i||^2 / (N^2 q_i) - ||gbar||^2 ]. Minimised by q_i proportional to ||g_i|| ([Omission] §2)."""
    g2, q = _sq_norms_probs(sq_norms, probs)
    if abs(q.sum() - 1) > 1e-6:
        raise ValueError(f"probs must sum to 1 for sampling with replacement, got {q.sum()}")
    if draws < 1:
        raise ValueError("draws must be >= 1")
    N = len(g2)
    with np.errstate(divide="ignore", invalid="ignore"):
        second = np.where(g2 > 0, g2 / np.where(q > 0, q, 1.0), 0.0).sum() / N ** 2
    return float((second - mean_grad_sq_norm) / draws)


def uniform_without_replacement_variance(sq_norms, mean_grad_sq_norm: float, b: int) -> float:
    """Variance of plain mini-batching, the baseline of [Omission] §2 and [OnlineIS] Fig. 2: the mean of b samples
    drawn uniformly without replacement from N:
    (1/b)(1 - b/N) S^2 with S^2 = (sum ||g_i||^2 - N ||gbar||^2) / (N - 1) (finite-population correction)."""
    g2, _ = _as_numpy(sq_norms, "sq_norms")
    N = len(g2)
    if not 1 <= b <= N:
        raise ValueError(f"b must be in 1..{N}, got {b}")
    if N == 1:
        return 0.0
    S2 = (g2.sum() - N * mean_grad_sq_norm) / (N - 1)
    return float((1 - b / N) * S2 / b)


def infobatch_keep_count(n_well_learned: int, r: float) -> int:
    """Number of below-mean ("well-learned") samples InfoBatch keeps: int((1 - r) |W|) ([InfoBatch], official code)."""
    if not 0.0 <= r < 1.0:
        raise ValueError(f"prune ratio r must be in [0, 1), got {r}")
    return int((1 - r) * n_well_learned)


def infobatch_step_scale(n: int, n_well_learned: int, r: float) -> float:
    """Expected InfoBatch step gradient / full-data mean gradient, when every gradient is the same.

    InfoBatch weights kept well-learned samples by 1/(1 - r) so the *epoch sum*
    of gradients is (nearly) unbiased, but each step divides by its own batch
    size b ([Omission] §3: "divide by b instead of B"), and the epoch has only
    kept = n - |W| + int((1 - r)|W|) samples. Per step the expected gradient is
    therefore (sum_i E[w_i 1{kept}] g_i) / kept, i.e. scaled by about n / kept = 1/rho.
    With equal gradients this ratio is (n - |W| + int((1-r)|W|)/(1-r)) / kept.
    """
    kept = n - n_well_learned + infobatch_keep_count(n_well_learned, r)
    expected_sum = n - n_well_learned + infobatch_keep_count(n_well_learned, r) / (1 - r)
    return expected_sum / kept


def descent_bound(loss: float, lr: float, smoothness: float, grad_sq_norm: float, variance: float) -> float:
    """[Omission] §2, from eq. 1 for an unbiased estimator (E ghat = grad, E||ghat||^2 = ||grad||^2 + Var):
    E[L(theta_{t+1})] <= L - lr ||grad||^2 + (lr^2 L / 2)(||grad||^2 + Var).
    Lower variance -> larger guaranteed decrease; the bound is best at lr = ||grad||^2 / (L (||grad||^2 + Var))."""
    if lr < 0 or smoothness < 0 or grad_sq_norm < 0 or variance < 0:
        raise ValueError("lr, smoothness, grad_sq_norm and variance must be non-negative")
    return loss - lr * grad_sq_norm + 0.5 * lr ** 2 * smoothness * (grad_sq_norm + variance)
