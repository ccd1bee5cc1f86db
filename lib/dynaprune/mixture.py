"""Selection-distribution mixtures (001 section 4.3, Figs. 3, 7, 8b, 9b), with NumPyro instead of Turing.

001 fits a mixture of three truncated normals on [0, number of checkpoints] to how often each
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
    """Check selection counts (001 section 4.3: times each sample was selected over the checkpoints)."""
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
    (the binned likelihood of 001 section 4.3's mixture over integer counts)."""
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
        out.update({f"samples|{k}": v for k, v in self.samples.items()})
        out.update({f"summary|{p}|{stat}": v for p, d in self.summary.items() for stat, v in d.items()})
        return out

    @classmethod
    def from_arrays(cls, a: dict) -> "MixtureFit":
        samples = {k.split("|", 1)[1]: v for k, v in a.items() if k.startswith("samples|")}
        summary = {}
        for k, v in a.items():
            if k.startswith("summary|"):
                _, p, stat = k.split("|", 2)
                summary.setdefault(p, {})[stat] = v
        K = int(a["max_count"])
        return cls(K, int(a["n_components"]), a["values"], a["freqs"], samples, summary, int(a["divergences"]),
                   float(a["waic"]), group_labels(summary["mu"]["mean"], K))

    def converged(self, r_hat_max=1.05) -> bool:
        return self.divergences == 0 and all(np.all(np.asarray(v["r_hat"]) < r_hat_max) for v in self.summary.values())


GROUPS = ("never", "sometimes", "always")


def group_labels(means, max_count: int) -> list:
    """Label each component by where its posterior mean lies: below K/6 "never", above 5K/6
    "always", between "sometimes" (001 Fig. 3 puts the never and always groups at the ends of
    [0, K]). By position rather than by order, so a group the data lacks gets share ~0 instead
    of a split of a neighbouring group."""
    return ["never" if m < max_count / 6 else "always" if m > 5 * max_count / 6 else "sometimes"
            for m in np.asarray(means)]


def fit_selection_mixture(counts, max_count: int, n_components: int = 3, num_warmup: int = 500,
                          num_samples: int = 1000, num_chains: int = 3, seed: int = 0,
                          kernel: str = "nuts", progress: bool = False, memo: bool = False) -> MixtureFit:
    """Bayesian mixture of ``n_components`` truncated normals over integer selection counts
    (001 section 4.3, Figs. 3, 7, 8b, 9b; NumPyro in place of the paper's Turing MH).
    ``memo=True`` stores the fit in the results cache's analyses (`cache.memo`), keyed by the
    count histogram and every setting, so a notebook re-rendered from the cache refits nothing."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
    c = validate_counts(counts, max_count, n_components)
    if memo:
        from . import cache
        values, freqs = np.unique(c, return_counts=True)
        params = dict(values=values.tolist(), freqs=freqs.tolist(), max_count=int(max_count),
                      n_components=n_components, num_warmup=num_warmup, num_samples=num_samples,
                      num_chains=num_chains, seed=seed, kernel=kernel)
        return MixtureFit.from_arrays(cache.memo(
            "mixture_fit", params, lambda: fit_selection_mixture(c, max_count, n_components, num_warmup, num_samples,
                                                                 num_chains, seed, kernel).to_arrays()))
    _ensure_host_devices(num_chains)
    import jax
    import jax.numpy as jnp
    import numpyro
    from numpyro.diagnostics import summary as np_summary
    from numpyro.infer import MCMC, NUTS, SA, init_to_value

    values, freqs = np.unique(c, return_counts=True)
    C = n_components
    q = np.quantile(c, (np.arange(C) + 0.5) / C)
    mu0 = np.sort(q + np.linspace(-0.3, 0.3, C)) + np.arange(C) * 1e-3 * max_count   # strictly increasing
    init = dict(w=jnp.full(C, 1.0 / C), mu=jnp.asarray(mu0, dtype=jnp.float32),
                sigma=jnp.full(C, max(max_count / (4.0 * C), 0.5), dtype=jnp.float32))
    kern = (NUTS if kernel == "nuts" else SA)(_model, init_strategy=init_to_value(values=init))
    method = "parallel" if jax.local_device_count() >= num_chains else "sequential"
    mcmc = MCMC(kern, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method=method, progress_bar=progress)
    mcmc.run(jax.random.PRNGKey(seed), jnp.asarray(values), jnp.asarray(freqs, dtype=jnp.float32), int(max_count), C)
    grouped = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in grouped.items()}
    summ = {k: {s: np.asarray(val) for s, val in d.items()} for k, d in np_summary(grouped, prob=0.9).items()}
    extra = mcmc.get_extra_fields()
    div = int(np.asarray(extra["diverging"]).sum()) if "diverging" in extra else 0
    fit = MixtureFit(int(max_count), C, values, freqs, flat, summ, div, float("nan"),
                     group_labels(summ["mu"]["mean"], max_count))
    fit.waic = _waic(fit)
    return fit


def _waic(fit: MixtureFit) -> float:
    """WAIC (Watanabe 2010) on the deviance scale, lower is better, from grouped pointwise log-likelihoods."""
    cp = fit._component_pmf().sum(1)[:, fit.values]            # (S, distinct)
    ll = np.log(np.clip(cp, 1e-300, None))
    lppd = np.log(np.mean(np.exp(ll - ll.max(0)), 0)) + ll.max(0)
    p_waic = ll.var(0, ddof=1)
    return float(-2 * np.sum(fit.freqs * (lppd - p_waic)))


def compare_components(counts, max_count: int, ks=(1, 2, 3, 4), **kw):
    """Fit K = 1..4 components and rank by WAIC (lower is better): does the data support 001's three
    groups (section 4.3)? Returns (table rows, fits)."""
    fits = {k: fit_selection_mixture(counts, max_count, n_components=k, **kw) for k in ks}
    best = min(f.waic for f in fits.values())
    rows = [dict(components=k, waic=f.waic, delta_waic=f.waic - best, divergences=f.divergences,
                 max_r_hat=float(max(np.max(v["r_hat"]) for v in f.summary.values())))
            for k, f in fits.items()]
    return rows, fits
