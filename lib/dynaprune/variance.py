"""Gradient-estimator variance, measured: full and per-sample gradients, exact and Monte Carlo
variances of each sampling scheme, and the variance curves of 003 Fig. 2.

Schemes (estimators of the mean gradient gbar over N samples, batch size b):
- "uniform": b of N uniformly without replacement, plain mean.
- "replacement": b i.i.d. draws from q, (1/b) sum g_j / (N q_j) (003 Alg. 1; DLIS).
- "bernoulli": independent inclusion with p (sum p = b), (1/N) sum_kept g_i / p_i (000 eq. 4).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from . import theory
from .scores import per_sample_loss

SCHEMES = ("uniform", "replacement", "bernoulli")


def full_gradient(model, x, y, loss="ce", chunk: int = 4096) -> torch.Tensor:
    """Flattened gradient of the mean loss over (x, y), accumulated in chunks to bound memory."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for s in range(0, len(x), chunk):
        with torch.enable_grad():
            l = per_sample_loss(model(x[s:s + chunk]), y[s:s + chunk], loss).sum() / len(x)
            for t, g in zip(total, torch.autograd.grad(l, params)):
                t += g
    return torch.cat([t.flatten() for t in total])


def per_sample_gradients(model, x, y, loss="ce", chunk: int = 256) -> torch.Tensor:
    """(N, P) matrix of flattened per-sample gradients by `torch.func.vmap(grad)`, chunked."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def one(p, xi, yi):
        return per_sample_loss(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0), loss).sum()
    g = vmap(grad(one), in_dims=(None, 0, 0), chunk_size=chunk)(params, x, y)
    return torch.cat([v.flatten(1) for v in g.values()], dim=1)


def _stats(G):
    G = torch.as_tensor(G, dtype=torch.float64)
    if G.dim() != 2:
        raise ValueError(f"per-sample gradients must be a (N, P) matrix, got shape {tuple(G.shape)}")
    return G, G.pow(2).sum(1).numpy(), float(G.mean(0).pow(2).sum())


def estimator_variance(per_sample_grads, probs=None, scheme: str = "uniform", b: int = 1) -> float:
    """Exact E||ghat - gbar||^2 of ``scheme`` (closed forms of `dynaprune.theory`).
    ``probs``: q (sum 1) for "replacement", inclusion p (sum b) for "bernoulli"."""
    G, g2, m2 = _stats(per_sample_grads)
    if scheme == "uniform":
        return theory.uniform_without_replacement_variance(g2, m2, b)
    if probs is None:
        raise ValueError(f"scheme {scheme!r} needs probs")
    probs = np.asarray(torch.as_tensor(probs, dtype=torch.float64))
    if scheme == "replacement":
        return theory.replacement_variance(g2, probs, b, m2)
    if scheme == "bernoulli":
        return theory.bernoulli_variance(g2, probs)
    raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")


def sample_estimates(per_sample_grads, probs, scheme, b, trials, generator: torch.Generator) -> torch.Tensor:
    """(trials, P) gradient estimates obtained by actually running ``scheme``."""
    G = torch.as_tensor(per_sample_grads, dtype=torch.float64)
    N = len(G)
    if scheme == "uniform":
        idx = torch.stack([torch.randperm(N, generator=generator)[:b] for _ in range(trials)])
        return G[idx].mean(1)
    p = torch.as_tensor(probs, dtype=torch.float64)
    if scheme == "replacement":
        idx = torch.multinomial(p.expand(trials, N), b, replacement=True, generator=generator)
        return (G[idx] / (N * p[idx])[..., None]).mean(1)
    if scheme == "bernoulli":
        keep = (torch.rand(trials, N, generator=generator, dtype=torch.float64) < p).double()
        w = torch.where(p > 0, keep / p.clamp_min(1e-300), torch.zeros_like(keep)) / N
        return w @ G
    raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")


def monte_carlo_variance(per_sample_grads, probs=None, scheme="uniform", b=1, trials=2000, seed=0):
    """Simulate the scheme ``trials`` times: returns (mean squared error to gbar, its standard error,
    the bias vector E[ghat] - gbar)."""
    G = torch.as_tensor(per_sample_grads, dtype=torch.float64)
    est = sample_estimates(G, probs, scheme, b, trials, torch.Generator().manual_seed(seed))
    err = (est - G.mean(0)).pow(2).sum(1)
    return float(err.mean()), float(err.std() / np.sqrt(trials)), (est.mean(0) - G.mean(0))


def signal_variances(model, x, y, signals: dict, b: int, loss="ce", schemes=("replacement",)) -> dict:
    """Variance at batch size b of importance sampling with each signal (003 Fig. 2 engine).

    ``signals`` maps a name to a non-negative per-sample score vector, or None for uniform.
    For "replacement" q is proportional to the score (uniform: q = 1/N); for "bernoulli"
    p = optimal_bernoulli_probs(score, b) (000 Theorem 1). Returns {(name, scheme): variance}.
    """
    G = per_sample_gradients(model, x, y, loss)
    out = {}
    for name, s in signals.items():
        for scheme in schemes:
            if s is None:
                out[(name, scheme)] = estimator_variance(G, None, "uniform", b)
                continue
            s = torch.as_tensor(s, dtype=torch.float64).detach().cpu() + 1e-12  # keep every p > 0 (unbiased)
            probs = s / s.sum() if scheme == "replacement" else theory.optimal_bernoulli_probs(s, b)
            out[(name, scheme)] = estimator_variance(G, probs, scheme, b)
    return out
