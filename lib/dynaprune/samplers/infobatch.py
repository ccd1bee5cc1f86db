"""[InfoBatch] (the poster; [Omission] §3 on its scaling): soft pruning of well-learned samples.

Each epoch e < delta * E: samples whose score (latest training loss) is below the mean
score over all n (stale scores included) are "well-learned"; int((1 - r) |W|) of them are
kept uniformly at random with weight 1/(1 - r), every other sample is kept with weight 1.
Epochs e >= delta * E ("annealing") use all n with weight 1. Initial scores are equal, so
epoch 0 prunes nothing.

Differences from the official code, on purpose: our own generator (no global NumPy
re-seed), `len()` exact before iteration, annealing decided by e >= delta * E for any E.
``unbiased=True`` divides by the planned set correctly ([Omission] eq. 4 convention): kept
well-learned samples get rho / p_i with p_i = keep/|W| and rho = kept / n, so each step's
expected gradient is the full-data mean (InfoBatch's own weights scale it by about 1/rho).

``keep_ratio`` (the share of samples backpropagated over the whole run, epoch 0 and annealing
included) solves for r epoch by epoch: each pruning epoch keeps what is left of the run's budget
divided by the pruning epochs left, r_e = (samples to prune) / |W_e|. When the below-mean set is
too small for that (r_e would pass R_MAX), W_e is the lowest-scoring quantile large enough, the
quantile threshold the poster allows.
"""
from __future__ import annotations

import torch

from ..theory import infobatch_keep_count
from .base import DynamicSampler, Method, _check_ratio, keep

PRUNE_RATIO = 0.5   # r ([InfoBatch])
DELTA = 0.875       # annealing starts at delta * E ([InfoBatch])
R_MAX = 0.9         # keep_ratio: the largest per-epoch r before the threshold becomes a quantile


class InfoBatch(DynamicSampler):
    requires_num_epochs = True
    _state_keys = ("scores",)

    def __init__(self, n, *, r: float | None = None, keep_ratio: float | None = None, delta: float = DELTA,
                 unbiased: bool = False, num_epochs=None, seed=0, distributed=None):
        if r is not None and keep_ratio is not None:
            raise ValueError("give r (InfoBatch's prune ratio) or keep_ratio (share of the run), not both")
        r = PRUNE_RATIO if r is None else r
        if not 0.0 <= float(r) < 1.0:
            raise ValueError(f"prune ratio r must be in [0, 1), got {r}")
        if not 0.0 <= float(delta) <= 1.0:
            raise ValueError(f"delta must be in [0, 1], got {delta}")
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.r, self.delta, self.unbiased = float(r), float(delta), bool(unbiased)
        self.keep_ratio = None
        if keep_ratio is not None:
            self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
            fixed = sum(1 for e in range(self.num_epochs) if e == 0 or self.annealing(e))
            if self.keep_ratio * self.num_epochs < fixed:
                raise ValueError(f"keep_ratio={keep_ratio} is out of InfoBatch's reach: epoch 0 and the annealing "
                                 f"epochs (delta={delta}) already use {fixed} of {self.num_epochs} epochs of data")
        self.scores = torch.ones(self.n, dtype=torch.float64)  # equal: epoch 0 prunes nothing

    def annealing(self, epoch: int) -> bool:
        return epoch >= self.delta * self.num_epochs

    def _well_learned(self, epoch):
        """(W_e, r_e): the below-mean set and the prune ratio; with keep_ratio, r_e follows the budget."""
        well = torch.nonzero(self.scores < self.scores.mean()).flatten()
        if self.keep_ratio is None:
            return well, self.r
        left = [e for e in range(epoch, self.num_epochs) if e > 0 and not self.annealing(e)]
        fixed_after = sum(1 for e in range(epoch + 1, self.num_epochs) if self.annealing(e))
        budget = self.keep_ratio * self.num_epochs * self.n - self.planned_before(epoch) - fixed_after * self.n
        prune = max(0, min(self.n, self.n - int(round(budget / len(left)))))
        if prune > R_MAX * len(well):   # the mean threshold is too low: a quantile threshold instead
            m = min(self.n, -(-prune * 10 // int(R_MAX * 10)))
            well = torch.argsort(self.scores, stable=True)[:m]
        return well, (prune / len(well) if len(well) else 0.0)

    def _plan(self, epoch, g):
        if self.annealing(epoch) or (self.keep_ratio is not None and epoch == 0):
            return torch.randperm(self.n, generator=g), None
        well, r = self._well_learned(epoch)
        keep = infobatch_keep_count(len(well), r)
        kept_well = well[torch.randperm(len(well), generator=g)[:keep]]
        mask = torch.ones(self.n, dtype=torch.bool)
        mask[well] = False
        mask[kept_well] = True
        weights = torch.ones(self.n, dtype=torch.float64)
        if len(well):
            if self.unbiased:
                rho = int(mask.sum()) / self.n
                p = torch.ones(self.n, dtype=torch.float64)
                p[well] = keep / len(well)
                weights = torch.where(p > 0, rho / p.clamp_min(1e-300), torch.zeros_like(p))
            else:
                weights[well] = 1.0 / (1.0 - r)
        return self._shuffle(torch.nonzero(mask).flatten(), g), weights

    def _observe(self, idx, losses, logits, targets):
        self.scores[idx] = losses.double()


# ---------------------------------------------------------------------------------------------------- method card

def regime(epochs: int) -> dict:
    """[InfoBatch]: prune ratio r = 0.5 and annealing from delta = 0.875 of the run (the poster leaves both open; the
    official code's defaults); no keep_ratio: the budget is what r gives (about 0.64 of full)."""
    return dict(r=PRUNE_RATIO, delta=DELTA)


def outside(options: dict, epochs: int) -> str | None:
    if "keep_ratio" in options:
        return (f"outside [InfoBatch]'s regime: keep_ratio {options['keep_ratio']} forces the prune ratio r "
                "per epoch (up to 0.9: weights up to 10x) instead of r = 0.5")
    if float(options.get("r", PRUNE_RATIO)) != PRUNE_RATIO:
        return f"outside [InfoBatch]'s regime: r = {options['r']} instead of 0.5 (weights 1 / (1 - r))"
    return None


# fixed: the paper's own setting (r = 0.5, delta = 0.875) is what InfoBatch itself saves
METHODS = {"infobatch": Method(InfoBatch, "InfoBatch", "InfoBatch", budget=keep, own_budget=True, fixed={},
                               curve_ratios=False, regime=regime, outside=outside)}
