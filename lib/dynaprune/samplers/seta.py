"""[SeTa] Zhou, Gao, Wang, "Scale Efficient Training for Large Datasets" (CVPR 2025).

Each epoch before annealing, three steps ([SeTa] §3, and the official code's `SeTa.prune`):
1. random pruning: a uniform subset of int((1 - prune_ratio) n) samples (redundant samples go first);
2. loss clustering: the subset's scores (each sample's latest training loss) are clustered by k-means in one
   dimension into ``num_groups`` groups, ordered from easy (lowest mean loss) to hard;
3. a sliding window over the ordered groups: w = round(num_groups * window_scale) consecutive groups are kept, the
   window starting at group t mod (num_groups - w + 1) at the t-th pruning epoch (easy to hard, then again), all
   groups at t = 0. Too easy and too hard groups outside the window are left out.
Annealing ("partial"): from epoch delta * E on, a uniform int((1 - prune_ratio) n) of all samples each epoch.
Weights are 1 (SeTa does not rescale). Initial scores are equal (the official code's 3.0): equal groups, all kept.

Where the code and the paper leave a detail open: k-means is scipy's (`scipy.cluster.vq.kmeans2`, k-means++
initialisation, seeded from the run's seed and the epoch) instead of scikit-learn's; a group k-means leaves empty is
dropped before the window is laid (the official code would sort a NaN centre); with all scores equal the subset is cut
into equal groups in its random order, as the official code does.

SeTa sets its own budget (the share follows from prune_ratio, window_scale and the sizes of the loss groups, which
the data decide): a ``keep_ratio`` cannot be honoured and is refused.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import DynamicSampler, Method

PRUNE_RATIO = 0.1     # the official CIFAR script's "lossless" setting: `cifar.sh SeTa 0.1 5 0.9`
NUM_GROUPS = 5
WINDOW_SCALE = 0.9
DELTA = 0.875         # annealing from 0.875 of the run (the official scripts' --delta, as InfoBatch's)
INITIAL_SCORE = 3.0   # the official code's initial score of every sample


def loss_groups(scores: torch.Tensor, num_groups: int, seed: int) -> list[torch.Tensor]:
    """Positions 0..len(scores)-1 in ``num_groups`` one-dimensional k-means groups of ``scores``, easy (low mean) to
    hard; empty groups dropped; equal scores: equal consecutive chunks."""
    m = len(scores)
    if m <= num_groups or float(scores.max()) == float(scores.min()):
        return [c for c in torch.arange(m).chunk(num_groups) if len(c)]
    from scipy.cluster.vq import kmeans2
    x = scores.double().numpy()[:, None]
    _, labels = kmeans2(x, num_groups, minit="++", seed=np.random.default_rng(seed))
    labels = torch.as_tensor(labels)
    groups = [torch.nonzero(labels == j).flatten() for j in range(num_groups)]
    groups = [gr for gr in groups if len(gr)]
    return sorted(groups, key=lambda gr: float(scores[gr].double().mean()))


class SeTa(DynamicSampler):
    """[SeTa]: random pruning, loss groups, an easy-to-hard sliding window, partial annealing."""

    version = 1
    requires_num_epochs = True
    _state_keys = ("scores",)

    def __init__(self, n, *, prune_ratio: float = PRUNE_RATIO, num_groups: int = NUM_GROUPS,
                 window_scale: float = WINDOW_SCALE, delta: float = DELTA, keep_ratio=None, num_epochs=None, seed=0,
                 distributed=None):
        if keep_ratio is not None:
            raise ValueError("SeTa sets its own budget: its backprop share follows from prune_ratio, window_scale and "
                             "the sizes of the loss groups (which the data decide), so a keep_ratio cannot be honoured; "
                             "give prune_ratio / window_scale instead")
        if not 0.0 <= float(prune_ratio) < 1.0:
            raise ValueError(f"prune_ratio must be in [0, 1), got {prune_ratio}")
        if int(num_groups) != num_groups or num_groups < 1:
            raise ValueError(f"num_groups must be a positive integer, got {num_groups}")
        if not 0.0 < float(window_scale) <= 1.0 or round(num_groups * window_scale) < 1:
            raise ValueError(f"window_scale must be in (0, 1] and keep at least one of {num_groups} groups, "
                             f"got {window_scale}")
        if not 0.0 <= float(delta) <= 1.0:
            raise ValueError(f"delta must be in [0, 1], got {delta}")
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.prune_ratio, self.num_groups = float(prune_ratio), int(num_groups)
        self.window_scale, self.delta = float(window_scale), float(delta)
        self.scores = torch.full((self.n,), INITIAL_SCORE, dtype=torch.float64)

    def annealing(self, epoch: int) -> bool:
        """The official sampler counts epochs from 1 and anneals once that count passes delta * E."""
        return epoch + 1 > self.delta * self.num_epochs

    def window(self, t: int, groups: int) -> slice:
        """The groups kept at the t-th pruning epoch (t = 0: all)."""
        if t == 0:
            return slice(0, groups)
        w = max(1, round(groups * self.window_scale))
        start = t % (groups - w + 1)
        return slice(start, start + w)

    def _plan(self, epoch, g):
        m = int(self.n * (1.0 - self.prune_ratio))
        subset = torch.randperm(self.n, generator=g)[:max(1, m)]
        if self.annealing(epoch):
            return subset, None
        groups = loss_groups(self.scores[subset], self.num_groups, self.seed * 1_000_003 + epoch)
        kept = torch.cat(groups[self.window(epoch, len(groups))])
        return self._shuffle(subset[kept], g), None

    def _observe(self, idx, losses, logits, targets):
        self.scores[idx] = losses.double()


# ---------------------------------------------------------------------------------------------------- method card

PAPER = dict(prune_ratio=PRUNE_RATIO, num_groups=NUM_GROUPS, window_scale=WINDOW_SCALE, delta=DELTA)


def regime(epochs: int) -> dict:
    """[SeTa] (official CIFAR script, its "lossless" setting `cifar.sh SeTa 0.1 5 0.9`): prune ratio 0.1, 5 loss groups,
    a window of 0.9 of them, partial annealing from delta = 0.875 (the sampler's defaults)."""
    return dict(PAPER)


def outside(options: dict, epochs: int) -> str | None:
    off = {k: options[k] for k in PAPER if k in options and float(options[k]) != PAPER[k]}
    if off:
        return "outside [SeTa]'s regime: " + ", ".join(f"{k} = {v} instead of {PAPER[k]}" for k, v in off.items())
    return None


# its share follows from its window and the loss groups: one run at its own budget
METHODS = {"seta": Method(SeTa, "SeTa", "SeTa", own_budget=True, fixed={}, regime=regime, outside=outside)}
