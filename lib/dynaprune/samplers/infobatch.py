"""InfoBatch (004, the poster; 000 section 3 on its scaling): soft pruning of well-learned samples.

Each epoch e < delta * E: samples whose score (latest training loss) is below the mean
score over all n (stale scores included) are "well-learned"; int((1 - r) |W|) of them are
kept uniformly at random with weight 1/(1 - r), every other sample is kept with weight 1.
Epochs e >= delta * E ("annealing") use all n with weight 1. Initial scores are equal, so
epoch 0 prunes nothing.

Differences from the official code, on purpose: our own generator (no global NumPy
re-seed), `len()` exact before iteration, annealing decided by e >= delta * E for any E.
``unbiased=True`` divides by the planned set correctly (000 eq. 4 convention): kept
well-learned samples get rho / p_i with p_i = keep/|W| and rho = kept / n, so each step's
expected gradient is the full-data mean (InfoBatch's own weights scale it by about 1/rho).
"""
from __future__ import annotations

import torch

from ..theory import infobatch_keep_count
from .base import DynamicSampler

PRUNE_RATIO = 0.5   # r (004)
DELTA = 0.875       # annealing starts at delta * E (004)


class InfoBatch(DynamicSampler):
    requires_num_epochs = True
    _state_keys = ("scores",)

    def __init__(self, n, *, r: float = PRUNE_RATIO, delta: float = DELTA, unbiased: bool = False,
                 num_epochs=None, seed=0, distributed=None):
        if not 0.0 <= float(r) < 1.0:
            raise ValueError(f"prune ratio r must be in [0, 1), got {r}")
        if not 0.0 <= float(delta) <= 1.0:
            raise ValueError(f"delta must be in [0, 1], got {delta}")
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.r, self.delta, self.unbiased = float(r), float(delta), bool(unbiased)
        self.scores = torch.ones(self.n, dtype=torch.float64)  # equal: epoch 0 prunes nothing

    def annealing(self, epoch: int) -> bool:
        return epoch >= self.delta * self.num_epochs

    def _plan(self, epoch, g):
        if self.annealing(epoch):
            return torch.randperm(self.n, generator=g), None
        well = torch.nonzero(self.scores < self.scores.mean()).flatten()
        keep = infobatch_keep_count(len(well), self.r)
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
                weights[well] = 1.0 / (1.0 - self.r)
        return self._shuffle(torch.nonzero(mask).flatten(), g), weights

    def _observe(self, idx, losses, logits, targets):
        self.scores[idx] = losses.double()
