"""Every sampler of the five papers behind one protocol (see `base` for it).

    sampler = make_sampler("omission", n, seed=0, keep_ratio=0.5)

Registry keys and where each method lives:
- full (basic); random ([Omission]'s, per epoch), random_dynamic ([Raju]'s, per T_p), uncertainty_ema, epsilon_greedy, ucb (raju: [Raju]);
  infobatch (infobatch: [InfoBatch]); omission, omission_bc (ours: with bias correction), omission_batch, extra_forward_bernoulli,
  historical_replacement, historical_ranking (omission: [Omission]); es, eswp (evolved: [ES]);
  online_is, online_prune (online_is: [OnlineIS]); weighted_replacement, loss_is,
  selective_backprop, ordered_sgd, kakurenbo, el2n, forgetting (baselines).
The field since: rs2 (rs2: [RS2]), seta (seta: [SeTa]), ies (ies: [IES]), rho_loss (rho_loss: [RHO-LOSS]); the class-balanced option of [Raju]'s
selectors and EL2N (``class_balanced=True``, ours after [RCAP]).
"""
from __future__ import annotations

from . import basic, baselines, evolved, ies, infobatch, omission, online_is, raju, rho_loss, rs2, seta
from .base import BatchSampler, DynamicSampler, Method
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

# The registry: every method's card (`base.Method`), declared in its own module. Its order is the order of the tables
# and grids (full data first, then the set-level methods, the batch-level ones, and those that set their own budget).
_CARDS = {**basic.METHODS, **raju.METHODS, **baselines.METHODS, **omission.METHODS, **infobatch.METHODS,
          **online_is.METHODS, **rs2.METHODS, **rho_loss.METHODS, **evolved.METHODS, **seta.METHODS, **ies.METHODS}
_ORDER = ("full", "random", "uncertainty_ema", "epsilon_greedy", "ucb", "random_dynamic", "el2n", "forgetting", "omission",
          "omission_bc", "infobatch", "kakurenbo", "online_prune", "rs2", "rho_loss", "es", "eswp", "omission_batch",
          "extra_forward_bernoulli", "weighted_replacement", "loss_is", "ordered_sgd", "historical_replacement",
          "historical_ranking", "selective_backprop", "online_is", "seta", "ies")
METHODS: dict[str, Method] = {m: _CARDS[m] for m in (*_ORDER, *(m for m in _CARDS if m not in _ORDER))}
SAMPLERS = {m: card.build for m, card in METHODS.items()}


def register(name: str, method: Method) -> None:
    """Add a method of one's own to the registry (its card, `base.Method`), after the others: the engine, the grids, the
    regimes and the reports then treat it as any other. A name already taken is refused."""
    if not isinstance(method, Method):
        raise TypeError(f"register needs a samplers.Method card, got {type(method).__name__}")
    if not name or not str(name).isidentifier() or name in METHODS:
        raise ValueError(f"a method name must be a new identifier; {name!r} is " + ("taken" if name in METHODS else "not one"))
    METHODS[name] = method
    SAMPLERS[name] = method.build


def unregister(name: str) -> None:
    """Remove a method `register` added (the built-in methods stay)."""
    if name in _CARDS:
        raise ValueError(f"{name!r} is a built-in method")
    METHODS.pop(name, None)
    SAMPLERS.pop(name, None)


def card(name: str) -> Method:
    """The card of method ``name`` (`base.Method`); an unknown name is refused with the known ones."""
    if name not in METHODS:
        raise ValueError(f"unknown sampler {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def make_sampler(name: str, n: int, *, seed: int = 0, **hyperparameters) -> DynamicSampler:
    """Build the sampler ``name`` over indices 0..n-1 with the papers' defaults unless overridden."""
    build = card(name).build
    try:
        return build(n, seed=seed, **hyperparameters)
    except TypeError as err:
        raise TypeError(f"sampler {name!r}: {err}") from err


__all__ = ["make_sampler", "card", "register", "unregister", "METHODS", "SAMPLERS", "Method", "DynamicSampler",
           "BatchSampler"]
