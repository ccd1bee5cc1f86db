"""Every sampler of the five papers behind one protocol (see `base` for it).

    sampler = make_sampler("omission", n, seed=0, keep_ratio=0.5)

Registry keys and where each method lives:
- full (basic); random ([Omission]'s, per epoch), random_dynamic ([Raju]'s, per T_p), uncertainty_ema, epsilon_greedy, ucb (raju: [Raju]);
  infobatch (infobatch: [InfoBatch]); omission, omission_batch, extra_forward_bernoulli,
  historical_replacement, historical_ranking (omission: [Omission]); es, eswp (evolved: [ES]);
  online_is, online_prune (online_is: [OnlineIS]); weighted_replacement, loss_is,
  selective_backprop, ordered_sgd, kakurenbo, el2n, forgetting (baselines).
The field since: rs2 (rs2: [RS2]), seta (seta: [SeTa]), ies (ies: [IES]), rho_loss (rho_loss: [RHO-LOSS]); the class-balanced option of [Raju]'s
selectors and EL2N (``class_balanced=True``, ours after [RCAP]).
"""
from __future__ import annotations

from .base import BatchSampler, DynamicSampler
from .basic import Full
from .baselines import (Kakurenbo, LossIS, OrderedSGD, SelectiveBackprop, StaticTopK,
                        WeightedReplacement)
from .evolved import es, eswp
from .ies import IES
from .infobatch import InfoBatch
from .omission import (ExtraForwardBernoulli, HistoricalRanking, HistoricalReplacement, Omission,
                       OmissionBatch)
from .online_is import OnlineIS, OnlinePrune
from .raju import UCB, EpsilonGreedy, RandomDynamic, UncertaintyEMA, random_dynamic
from .rho_loss import RhoLoss
from .rs2 import RS2
from .seta import SeTa

SAMPLERS = {
    "full": Full,
    "random": RandomDynamic,
    "random_dynamic": random_dynamic,
    "infobatch": InfoBatch,
    "uncertainty_ema": UncertaintyEMA,
    "epsilon_greedy": EpsilonGreedy,
    "ucb": UCB,
    "kakurenbo": Kakurenbo,
    "el2n": StaticTopK,
    "forgetting": StaticTopK,
    "online_prune": OnlinePrune,
    "omission": Omission,
    "eswp": eswp,
    "es": es,
    "omission_batch": OmissionBatch,
    "extra_forward_bernoulli": ExtraForwardBernoulli,
    "weighted_replacement": WeightedReplacement,
    "loss_is": LossIS,
    "selective_backprop": SelectiveBackprop,
    "ordered_sgd": OrderedSGD,
    "historical_replacement": HistoricalReplacement,
    "historical_ranking": HistoricalRanking,
    "online_is": OnlineIS,
    "rs2": RS2,
    "seta": SeTa,
    "ies": IES,
    "rho_loss": RhoLoss,
}


def make_sampler(name: str, n: int, *, seed: int = 0, **hyperparameters) -> DynamicSampler:
    """Build the sampler ``name`` over indices 0..n-1 with the papers' defaults unless overridden."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")
    try:
        return SAMPLERS[name](n, seed=seed, **hyperparameters)
    except TypeError as err:
        raise TypeError(f"sampler {name!r}: {err}") from err


__all__ = ["make_sampler", "SAMPLERS", "DynamicSampler", "BatchSampler"]
