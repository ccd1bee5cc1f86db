"""Gradient-estimator variance, measured: full and per-sample gradients, exact and Monte Carlo
variances of each sampling scheme, and the variance curves of [OnlineIS] Fig. 2.

Schemes (estimators of the mean gradient gbar over N samples, batch size b):
- "uniform": b of N uniformly without replacement, plain mean.
- "replacement": b i.i.d. draws from q, (1/b) sum g_j / (N q_j) ([OnlineIS] Alg. 1; DLIS).
- "bernoulli": independent inclusion with p (sum p = b), (1/N) sum_kept g_i / p_i ([Omission] eq. 4).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from . import theory
from .scores import per_sample_loss

SCHEMES = ("uniform", "replacement", "bernoulli")


def full_gradient(model, x, y, loss="ce", chunk: int = 4096) -> torch.Tensor:
    """Flattened gradient of the mean loss over (x, y), the quantity every estimator targets
    ([Omission] §2, nabla L(theta_t)); accumulated in chunks to bound memory."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    for s in range(0, len(x), chunk):
        with torch.enable_grad():
            l = per_sample_loss(model(x[s:s + chunk]), y[s:s + chunk], loss).sum() / len(x)
            for t, g in zip(total, torch.autograd.grad(l, params)):
                t += g
    return torch.cat([t.flatten() for t in total])


def per_sample_gradients(model, x, y, loss="ce", chunk: int = 256) -> torch.Tensor:
    """(N, P) matrix of flattened per-sample gradients g_i ([Omission] §3.1's g_i), by
    `torch.func.vmap(grad)`, chunked."""
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
    """Exact E||ghat - gbar||^2 of ``scheme`` ([Omission] §2's Var, closed forms of `dynaprune.theory`:
    [Omission] §3.1 for Bernoulli, [OnlineIS] §3 for sampling with replacement).
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
    """(trials, P) gradient estimates obtained by actually running ``scheme`` ([Omission] eq. 4 for Bernoulli,
    [OnlineIS] Alg. 1 line 10 for with replacement, plain mini-batch means for uniform)."""
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
    """Simulate the scheme ``trials`` times (the Monte Carlo check of [Omission] §2's Var and of
    unbiasedness): returns (mean squared error to gbar, its standard error, the bias E[ghat] - gbar)."""
    G = torch.as_tensor(per_sample_grads, dtype=torch.float64)
    est = sample_estimates(G, probs, scheme, b, trials, torch.Generator().manual_seed(seed))
    err = (est - G.mean(0)).pow(2).sum(1)
    return float(err.mean()), float(err.std() / np.sqrt(trials)), (est.mean(0) - G.mean(0))


IS_SIGNALS = ("loss", "srgd", "dlis", "output_grad", "exact")


def variance_over_training(config, b: int, n_eval: int | None = None, root=None) -> dict:
    """[OnlineIS] Fig. 2 engine: train ``config`` with uniform sampling and, after every epoch, measure on
    the first ``n_eval`` training samples the exact variance at batch size b of
    - "uniform": b uniform draws with replacement (the like-for-like baseline of the IS schemes);
      "uniform_no_replacement": ordinary mini-batching (smaller by the factor 1 - b/N);
    - importance sampling with replacement, q proportional to each signal of IS_SIGNALS: the loss,
      SRGD's memory (each sample's exact gradient norm at the previous measurement: the memory of
      El Hanchi & Stephens 2022 when every sample is visited once per epoch), DLIS's last-layer
      norm, the output-gradient norm ([OnlineIS]), and the exact per-sample norm (the optimum, [Omission] §2);
    - "omission_bernoulli": Bernoulli with eq. 5 probabilities (alpha = 0.1) of g~^2, budget b ([Omission]).
    Also the Pearson correlation of each signal with the exact norm ([OnlineIS]'s inline figure).
    Cached as an analysis (`cache.memo`). Returns arrays keyed "var_<name>" and "corr_<name>" per epoch."""
    from . import cache
    from .scores import dlis_norm, output_grad_norm, per_sample_grad_norms
    from .train import run

    def compute():
        rows, memory = [], {}

        def measure(epoch, model, data):
            x, y = data["x"][:n_eval], data["y"][:n_eval]
            model.eval()
            exact = per_sample_grad_norms(model, x, y, config.loss).double().cpu()
            gbar = full_gradient(model, x, y, config.loss).double().cpu()
            g2, m2 = (exact ** 2).numpy(), float(gbar.pow(2).sum())
            with torch.no_grad():
                out = model(x)
            sig = {"loss": per_sample_loss(out, y, config.loss).double().cpu(),
                   "srgd": memory.get("srgd", torch.ones_like(exact)),
                   "dlis": dlis_norm(model, x, y, config.loss).double().cpu(),
                   "output_grad": output_grad_norm(out, y, config.loss).double().cpu(),
                   "exact": exact}
            memory["srgd"] = exact.clone()
            N = len(g2)
            row = {"epoch": epoch, "var_uniform": theory.replacement_variance(g2, np.full(N, 1.0 / N), b, m2),
                   "var_uniform_no_replacement": theory.uniform_without_replacement_variance(g2, m2, b)}
            for name in IS_SIGNALS:
                s = sig[name] + 1e-12 * float(sig[name].max().clamp_min(1e-12))
                row[f"var_{name}"] = theory.replacement_variance(g2, (s / s.sum()).numpy(), b, m2)
                row[f"corr_{name}"] = (float(np.corrcoef(sig[name].numpy(), exact.numpy())[0, 1])
                                       if float(sig[name].std()) > 0 else float("nan"))
            p = theory.smoothed_probs(sig["output_grad"].numpy() ** 2, b, 0.1)
            row["var_omission_bernoulli"] = theory.bernoulli_variance(g2, p)
            row["grad_sq_norm"] = m2
            rows.append(row)
            model.train()
        run(config, use_cache=False, callback=measure)
        return {k: np.array([r[k] for r in rows]) for k in rows[0]}
    return cache.memo("variance_curve", dict(config=config.to_dict(), b=b, n_eval=n_eval), compute, root)


def signal_costs(model, x, y, loss="ce", repeats: int = 5) -> dict:
    """Seconds to evaluate each importance metric on a batch ([OnlineIS] Table 2): the loss, the
    output-gradient norm in closed form (cross-entropy only) and by autodiff, DLIS, and the exact
    per-sample gradient norms SRGD needs (fast identity and vmap). Median of ``repeats``."""
    import time
    from .scores import dlis_norm, output_grad_norm, output_grad_norm_ce, per_sample_grad_norms

    def loss_only():
        with torch.no_grad():
            return per_sample_loss(model(x), y, loss)

    def analytic():
        with torch.no_grad():
            return output_grad_norm_ce(model(x), y)
    fns = {"loss": loss_only, "output_grad_autodiff": lambda: output_grad_norm(model(x), y, loss),
           "dlis": lambda: dlis_norm(model, x, y, loss),
           "exact_fast": lambda: per_sample_grad_norms(model, x, y, loss, method="auto"),
           "exact_vmap": lambda: per_sample_grad_norms(model, x, y, loss, method="vmap")}
    if loss == "ce":
        fns["output_grad_analytic"] = analytic
    out = {}
    for name, f in fns.items():
        f()  # warm-up
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        out[name] = float(np.median(ts))
    return out


def signal_variances(model, x, y, signals: dict, b: int, loss="ce", schemes=("replacement",)) -> dict:
    """Variance at batch size b of importance sampling with each signal, at one model state
    ([OnlineIS] Fig. 2; [Omission] Theorem 1 for the Bernoulli scheme).

    ``signals`` maps a name to a non-negative per-sample score vector, or None for uniform.
    For "replacement" q is proportional to the score (uniform: q = 1/N); for "bernoulli"
    p = optimal_bernoulli_probs(score, b) ([Omission] Theorem 1). Returns {(name, scheme): variance}.
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
