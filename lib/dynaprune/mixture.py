"""Selection-distribution mixtures ([Raju] §4.3, Figs. 3, 7, 8b, 9b), with NumPyro instead of Turing.

[Raju] fits a mixture of three truncated normals on [0, number of checkpoints] to how often each
sample was selected, and names the groups never / sometimes / always. Here:

    counts_k ~ sum_c w_c * P_c(k),  P_c(k) = TN(mu_c, sigma_c; [0, K]) mass of [k - 1/2, k + 1/2]
                                             clipped to [0, K]     (sums to 1 over k = 0..K)
    w ~ Dirichlet(1), mu ordered (mu_1 < ... < mu_C), sigma_c ~ HalfNormal(K / 2).

The likelihood is evaluated once per distinct count, weighted by its frequency, so 1.28M
samples cost what 50k cost. Starting values come from the data's quantiles (default
initialisation gets stuck on this problem). NUTS by default; ``kernel="mh"`` uses a
random-walk Metropolis-type kernel (SA, NumPyro's adaptive sample-adaptive MH) to mirror
the paper's Metropolis-Hastings.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

KERNELS = ("nuts", "mh")


def _ensure_host_devices(k: int):
    """Parallel chains on CPU need k host devices, which must be set before JAX starts."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        import sys
        if "jax" not in sys.modules or not _jax_started():
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={max(k, os.cpu_count() or 1)}".strip()


def _jax_started() -> bool:
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge._backends)
    except Exception:
        return True


def validate_counts(counts, max_count: int, n_components: int = 1) -> np.ndarray:
    """Check selection counts ([Raju] §4.3: times each sample was selected over the checkpoints)."""
    c = np.asarray(counts)
    if c.ndim != 1 or len(c) == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("counts contain NaN or inf")
    if np.any(c != np.round(c)):
        raise ValueError("counts must be integers (how many checkpoints selected each sample)")
    c = c.astype(np.int64)
    if c.min() < 0:
        raise ValueError(f"counts must be non-negative, got minimum {c.min()}")
    if int(max_count) < 1:
        raise ValueError(f"max_count must be >= 1, got {max_count}")
    if c.max() > max_count:
        raise ValueError(f"counts above max_count={max_count}: maximum is {c.max()}")
    distinct = len(np.unique(c))
    if distinct < n_components:
        raise ValueError(f"{distinct} distinct count values cannot identify {n_components} components")
    return c


def _interval_mass(jnp, ndtr, a, b, mu, sigma):
    """P(a < X < b) for X ~ N(mu, sigma), computed on the side of the tail that avoids cancellation."""
    za, zb = (a - mu) / sigma, (b - mu) / sigma
    upper = ndtr(-za) - ndtr(-zb)
    lower = ndtr(zb) - ndtr(za)
    return jnp.where(za > 0, upper, lower)


def binned_probs(mu, sigma, max_count, jnp=np):
    """(C, K+1) matrix: each component's truncated-normal mass of [k - 1/2, k + 1/2] clipped to [0, K]
    (the binned likelihood of [Raju] §4.3's mixture over integer counts)."""
    if jnp is np:
        from scipy.special import ndtr
    else:
        from jax.scipy.special import ndtr
    k = jnp.arange(max_count + 1)
    lo = jnp.clip(k - 0.5, 0, max_count)
    hi = jnp.clip(k + 0.5, 0, max_count)
    mu, sigma = jnp.asarray(mu)[:, None], jnp.clip(jnp.asarray(sigma)[:, None], 1e-3, None)
    num = _interval_mass(jnp, ndtr, lo[None], hi[None], mu, sigma)
    den = _interval_mass(jnp, ndtr, jnp.zeros(1)[None], jnp.full((1,), float(max_count))[None], mu, sigma)
    # a component far outside [0, K] has no mass there: treat it as zero rather than 0/0
    return jnp.where(den > 1e-30, num / jnp.clip(den, 1e-30, None), 0.0)


def _model(values, freqs, max_count, C):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions.transforms import OrderedTransform
    K = float(max_count)
    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(C)))
    mu = numpyro.sample("mu", dist.TransformedDistribution(dist.Normal(K / 2, K).expand([C]), OrderedTransform()))
    sigma = numpyro.sample("sigma", dist.HalfNormal(K / 2).expand([C]))
    P = binned_probs(mu, sigma, max_count, jnp)[:, values]              # (C, distinct)
    # 1e-30, not smaller: float32 would round it to 0, and an infinite potential breaks SA's ensemble
    lik = jnp.clip(jnp.nan_to_num((w[:, None] * P).sum(0), nan=0.0), 1e-30)
    numpyro.factor("loglik", (freqs * jnp.log(lik)).sum())


@dataclass
class MixtureFit:
    """Posterior of a selection-count mixture. Components are ordered by mean."""
    max_count: int
    n_components: int
    values: np.ndarray                  # distinct counts
    freqs: np.ndarray                   # how many samples have each
    samples: dict                       # posterior draws: w (S, C), mu (S, C), sigma (S, C)
    summary: dict                       # per parameter: mean, std, 5%, 95%, n_eff, r_hat
    divergences: int
    waic: float
    labels: list = field(default_factory=list)

    def pmf(self) -> np.ndarray:
        """Posterior predictive probability of each count 0..K (mean over draws)."""
        return self._component_pmf().sum(1).mean(0)

    def _component_pmf(self):
        w, mu, sig = self.samples["w"], self.samples["mu"], self.samples["sigma"]
        P = np.stack([binned_probs(m, s, self.max_count) for m, s in zip(mu, sig)])   # (S, C, K+1)
        return w[:, :, None] * P

    def membership(self) -> np.ndarray:
        """(K+1, C): posterior mean probability that a sample with count k belongs to each component."""
        cp = self._component_pmf()
        return (cp / np.clip(cp.sum(1, keepdims=True), 1e-300, None)).mean(0).T

    def membership_of(self, counts) -> np.ndarray:
        return self.membership()[np.asarray(counts, dtype=np.int64)]

    def shares(self) -> dict:
        """Share of samples in each group never / sometimes / always (membership probability summed
        over the components carrying that label)."""
        m = self.membership()[self.values]
        s = (m * self.freqs[:, None]).sum(0) / self.freqs.sum()
        out = {g: 0.0 for g in GROUPS}
        for lab, v in zip(self.labels, s.tolist()):
            out[lab] += v
        return out

    def to_arrays(self) -> dict:
        """Everything the fit holds, as flat arrays (for `cache.memo`)."""
        out = dict(max_count=np.array(self.max_count), n_components=np.array(self.n_components),
                   values=self.values, freqs=self.freqs, divergences=np.array(self.divergences),
                   waic=np.array(self.waic))
        chains = getattr(self, "chains", None)
        out.update({f"chains|{k}": v for k, v in chains.items()} if chains is not None else
                   {f"samples|{k}": v for k, v in self.samples.items()})
        out["loo"] = np.array(getattr(self, "loo", np.nan))
        out["pareto_k_max"] = np.array(getattr(self, "pareto_k_max", np.nan))
        out.update({f"summary|{p}|{stat}": v for p, d in self.summary.items() for stat, v in d.items()})
        return out

    @classmethod
    def from_arrays(cls, a: dict) -> "MixtureFit":
        chains = {k.split("|", 1)[1]: v for k, v in a.items() if k.startswith("chains|")}
        samples = {k: v.reshape(-1, *v.shape[2:]) for k, v in chains.items()} or \
            {k.split("|", 1)[1]: v for k, v in a.items() if k.startswith("samples|")}
        summary = {}
        for k, v in a.items():
            if k.startswith("summary|"):
                _, p, stat = k.split("|", 2)
                summary.setdefault(p, {})[stat] = v
        K = int(a["max_count"])
        fit = cls(K, int(a["n_components"]), a["values"], a["freqs"], samples, summary, int(a["divergences"]),
                  float(a["waic"]), group_labels(summary["mu"]["mean"], K))
        fit.chains = chains or None
        fit.loo, fit.pareto_k_max = float(a.get("loo", np.nan)), float(a.get("pareto_k_max", np.nan))
        return fit

    def inference_data(self):
        """The posterior as ArviZ InferenceData (chains kept apart), e.g. for ``az.plot_trace``."""
        if getattr(self, "chains", None) is None:
            raise ValueError("this fit has no per-chain draws")
        return _arviz().from_dict(posterior=self.chains)

    def max_r_hat(self) -> float:
        """The largest split r-hat over the parameters that have one (NaN when none has: a one-component fit)."""
        per = [float(np.max(v["r_hat"])) for v in self.summary.values()]
        per = [x for x in per if np.isfinite(x)]
        return max(per) if per else float("nan")

    def converged(self, r_hat_max=1.01) -> bool:
        """No divergences and split r-hat < 1.01 for every parameter (ArviZ's recommendation; a
        single chain cannot show convergence: False)."""
        def ok(v):   # a parameter fixed by the model (one component's weight is 1) has no r-hat: fine
            r = np.asarray(v["r_hat"])
            return np.all((r < r_hat_max) | (np.isnan(r) & (np.asarray(v["std"]) == 0)))
        return self.divergences == 0 and all(ok(v) for v in self.summary.values())


GROUPS = ("never", "sometimes", "always")


def group_labels(means, max_count: int) -> list:
    """Label each component by where its posterior mean lies: below K/6 "never", above 5K/6
    "always", between "sometimes" ([Raju] Fig. 3 puts the never and always groups at the ends of
    [0, K]). By position rather than by order, so a group the data lacks gets share ~0 instead
    of a split of a neighbouring group."""
    return ["never" if m < max_count / 6 else "always" if m > 5 * max_count / 6 else "sometimes"
            for m in np.asarray(means)]


def _nll(theta, values, freqs, K, C):
    """Negative binned log-likelihood in unconstrained coordinates: w = softmax(a), mu_1 = m_1,
    mu_j = mu_{j-1} + exp(m_j) (ordered), sigma = exp(s)."""
    a, m, ls = theta[:C], theta[C:2 * C], theta[2 * C:]
    w = np.exp(a - a.max()); w /= w.sum()
    mu = np.cumsum(np.concatenate([m[:1], np.exp(m[1:])]))
    P = binned_probs(mu, np.exp(ls), K)[:, values]
    return -float(np.sum(freqs * np.log(np.clip((w[:, None] * P).sum(0), 1e-300, None))))


def ml_fit(values, freqs, max_count: int, n_components: int, restarts: int = 12, seed: int = 0) -> dict:
    """Maximum-likelihood mixture (scipy L-BFGS-B) from ``restarts`` starting points: component means
    at random quantiles of the counts, random scales and weights; the best optimum is returned as
    dict(w, mu, sigma, loglik). It starts the chains of `fit_selection_mixture`."""
    from scipy.optimize import minimize
    rng = np.random.default_rng(seed)
    values, freqs = np.asarray(values), np.asarray(freqs, dtype=float)
    C, K = n_components, max_count
    cdf = np.cumsum(freqs) / freqs.sum()
    quantile = lambda q: values[np.minimum(np.searchsorted(cdf, q), len(values) - 1)].astype(float)
    best = None
    for r in range(restarts):
        q = np.sort(rng.uniform(0.02, 0.98, C)) if r else (np.arange(C) + 0.5) / C
        mu0 = np.sort(quantile(q)) + np.arange(C) * 1e-2
        m0 = np.concatenate([mu0[:1], np.log(np.clip(np.diff(mu0), 1e-2, None))])
        s0 = np.log(rng.uniform(0.5, max(K / (2 * C), 0.6), C))
        th0 = np.concatenate([rng.normal(0, 0.3, C), m0, s0])
        res = minimize(_nll, th0, args=(values, freqs, K, C), method="L-BFGS-B",
                       bounds=[(-10, 10)] * C + [(-K, 2 * K)] + [(-8, np.log(K + 1))] * (C - 1)
                       + [(np.log(0.05), np.log(4 * K))] * C)
        if best is None or res.fun < best.fun:
            best = res
    th = best.x
    w = np.exp(th[:C] - th[:C].max()); w /= w.sum()
    mu = np.cumsum(np.concatenate([th[C:C + 1], np.exp(th[C + 1:2 * C])]))
    return dict(w=w, mu=mu, sigma=np.exp(th[2 * C:]), loglik=-float(best.fun))


def _arviz():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # ArviZ 0.2x announces its 1.0 refactor on import
        import arviz as az
    return az


def fit_selection_mixture(counts, max_count: int, n_components: int = 3, num_warmup: int = 500,
                          num_samples: int = 1000, num_chains: int = 3, seed: int = 0,
                          kernel: str = "nuts", progress: bool = False, memo: bool = False,
                          restarts: int = 12) -> MixtureFit:
    """Bayesian mixture of ``n_components`` truncated normals over integer selection counts
    ([Raju] §4.3, Figs. 3, 7, 8b, 9b; NumPyro in place of the paper's Turing MH).

    Chains start from a maximum-likelihood fit (`ml_fit`, ``restarts`` starting points), each
    dispersed around it (means +- K/10, scales x e^{+-0.3}, weights from a Dirichlet around the ML
    weights), so a chain stuck in a wrong mode shows up as r-hat > 1; diagnostics (split r-hat, bulk
    ESS) and WAIC / PSIS-LOO come from ArviZ on the NumPyro posterior. Report a fit's groups only
    when `converged()`. ``memo=True`` stores the fit in the results cache's analyses (`cache.memo`),
    keyed by the count histogram and every setting, so a notebook re-rendered from the cache refits
    nothing."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
    if int(num_chains) < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    c = validate_counts(counts, max_count, n_components)
    if memo:
        from . import cache
        values, freqs = np.unique(c, return_counts=True)
        params = dict(values=values.tolist(), freqs=freqs.tolist(), max_count=int(max_count),
                      n_components=n_components, num_warmup=num_warmup, num_samples=num_samples,
                      num_chains=num_chains, seed=seed, kernel=kernel, restarts=restarts, start="ml+dispersed")
        return MixtureFit.from_arrays(cache.memo(
            "mixture_fit", params, lambda: fit_selection_mixture(c, max_count, n_components, num_warmup, num_samples,
                                                                 num_chains, seed, kernel, restarts=restarts).to_arrays()))
    _ensure_host_devices(num_chains)
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS, SA
    from numpyro.infer.util import unconstrain_fn

    values, freqs = np.unique(c, return_counts=True)
    C, K = n_components, int(max_count)
    ml = ml_fit(values, freqs, K, C, restarts=restarts, seed=seed)
    rng = np.random.default_rng(seed + 1)
    args = (jnp.asarray(values), jnp.asarray(freqs, dtype=jnp.float32), K, C)
    starts = []
    for ch in range(num_chains):
        mu = np.sort(np.clip(ml["mu"] + (rng.normal(0, K / 10, C) if ch else 0), -0.5 * K, 1.5 * K))
        mu = mu + np.arange(C) * 1e-3 * K
        sig = np.clip(ml["sigma"] * (np.exp(rng.normal(0, 0.3, C)) if ch else 1), 0.05, 4 * K)
        w = rng.dirichlet(50 * ml["w"] + 1) if ch else np.clip(ml["w"], 1e-4, None) / np.clip(ml["w"], 1e-4, None).sum()
        starts.append(unconstrain_fn(_model, args, {}, dict(w=jnp.asarray(w, jnp.float32),
                                                            mu=jnp.asarray(mu, jnp.float32),
                                                            sigma=jnp.asarray(sig, jnp.float32))))
    init = {k: jnp.stack([s[k] for s in starts]) for k in starts[0]}
    kern = NUTS(_model) if kernel == "nuts" else SA(_model)
    method = "parallel" if jax.local_device_count() >= num_chains else "sequential"
    mcmc = MCMC(kern, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method=method, progress_bar=progress)
    mcmc.run(jax.random.PRNGKey(seed), *args, init_params=init if num_chains > 1 else {k: v[0] for k, v in init.items()})
    grouped = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = mcmc.get_extra_fields()
    div = int(np.asarray(extra["diverging"]).sum()) if "diverging" in extra else 0
    return _finish(grouped, values, freqs, K, C, div, ml)


def _finish(grouped, values, freqs, K, C, divergences, ml) -> MixtureFit:
    """Summaries and WAIC / LOO from ArviZ; pointwise values per distinct count, weighted by how many
    samples have it (observations with equal counts are exchangeable)."""
    az = _arviz()
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in grouped.items()}
    P = np.stack([binned_probs(m, s, K) for m, s in zip(flat["mu"], flat["sigma"])])          # (S, C, K+1)
    ll = np.log(np.clip((flat["w"][:, :, None] * P).sum(1)[:, values], 1e-300, None))        # (S, distinct)
    nch, ndr = grouped["mu"].shape[:2]
    idata = az.from_dict(posterior=grouped, log_likelihood={"counts": ll.reshape(nch, ndr, -1)})
    summ = {}
    with np.errstate(all="ignore"):
        rhat = az.rhat(idata) if nch > 1 else None
        ess = az.ess(idata)
    for k, v in grouped.items():
        summ[k] = {"mean": v.mean((0, 1)), "std": v.std((0, 1)), "5.0%": np.quantile(v, 0.05, axis=(0, 1)),
                   "95.0%": np.quantile(v, 0.95, axis=(0, 1)), "n_eff": np.asarray(ess[k]),
                   "r_hat": np.asarray(rhat[k]) if rhat is not None else np.full(v.shape[2:], np.nan)}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wa = az.waic(idata, pointwise=True)
        lo = az.loo(idata, pointwise=True)
    waic = float(-2 * np.sum(freqs * np.asarray(wa.waic_i if hasattr(wa, "waic_i") else wa.elpd_waic_i)))
    loo = float(-2 * np.sum(freqs * np.asarray(lo.loo_i)))
    khat = float(np.max(np.asarray(lo.pareto_k)))
    fit = MixtureFit(K, C, values, freqs, flat, summ, divergences, waic, group_labels(summ["mu"]["mean"], K))
    fit.loo, fit.pareto_k_max, fit.chains, fit.ml = loo, khat, grouped, ml
    return fit


def compare_components(counts, max_count: int, ks=(1, 2, 3, 4), **kw):
    """Fit K = 1..4 components and rank by WAIC and PSIS-LOO (deviance scale, lower is better): does
    the data support [Raju]'s three groups (section 4.3)? Returns (table rows, fits)."""
    fits = {k: fit_selection_mixture(counts, max_count, n_components=k, **kw) for k in ks}
    best = min(f.waic for f in fits.values())
    rows = [dict(components=k, waic=f.waic, delta_waic=f.waic - best, loo=f.loo, divergences=f.divergences,
                 max_r_hat=f.max_r_hat(),
                 converged=bool(f.converged()))
            for k, f in fits.items()]
    return rows, fits
