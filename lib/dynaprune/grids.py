"""Method grids of the comparison notebooks: how each sampler is set to a target keep ratio rho
(the expected share of samples backpropagated), so methods are compared at equal budgets.

Methods whose budget is not a parameter (InfoBatch's adaptive pruning, KAKURENBO, online IS,
online pruning, Selective Backprop) run with their papers' defaults once; their measured
backprop share is reported next to everyone else's.
"""
from __future__ import annotations

RATIO_METHODS = {
    # set-level, keep ratio
    "random": lambda r, E: {"keep_ratio": r},
    "uncertainty_ema": lambda r, E: {"keep_ratio": r, "period": max(1, round(E / 20))},
    "epsilon_greedy": lambda r, E: {"keep_ratio": r, "period": max(1, round(E / 20))},
    "ucb": lambda r, E: {"keep_ratio": r, "period": max(1, round(E / 20))},
    "el2n": lambda r, E: {"keep_ratio": r},
    "forgetting": lambda r, E: {"keep_ratio": r},
    "omission": lambda r, E: {"keep_ratio": r},
    # batch-level, b / B
    "es": lambda r, E: {"ratio": r},
    "eswp": lambda r, E: {"ratio": r},
    "omission_batch": lambda r, E: {"ratio": r},
    "extra_forward_bernoulli": lambda r, E: {"ratio": r},
    "weighted_replacement": lambda r, E: {"ratio": r},
    "loss_is": lambda r, E: {"ratio": r},
    "ordered_sgd": lambda r, E: {"ratio": r},
    "historical_replacement": lambda r, E: {"ratio": r},
}
FIXED_METHODS = {
    "full": {},
    "infobatch": {},
    "kakurenbo": {},
    "selective_backprop": {},
    "historical_ranking": {},
    "online_is": {},
    "online_prune": {"prune_every_fraction": 0.25},
}


def comparison_configs(base, ratios, seeds, methods=None):
    """All (method, ratio, seed) configs, plus Reducing Epoch (and scaled) at each ratio (000 section 5)."""
    E = base.epochs
    out = []
    for seed in seeds:
        for name, opts in FIXED_METHODS.items():
            if methods and name not in methods:
                continue
            o = dict(opts)
            if "prune_every_fraction" in o:
                o = {"prune_every": max(1, round(o.pop("prune_every_fraction") * E))}
            out.append(base.replace(sampler=name, sampler_options=o, seed=seed))
        for r in ratios:
            for name, f in RATIO_METHODS.items():
                if methods and name not in methods:
                    continue
                out.append(base.replace(sampler=name, sampler_options=f(r, E), seed=seed))
            if not methods or "reduce_epochs" in methods:
                out.append(base.replace(sampler="full", epochs_scale=r, seed=seed))
                out.append(base.replace(sampler="full", epochs_scale=r, scale_lr=True, seed=seed))
    return out
