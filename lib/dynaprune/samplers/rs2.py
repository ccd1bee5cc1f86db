"""[RS2] Okanovic et al., "Repeated Random Sampling for Minimizing the Time-to-Accuracy of Learning".

RS2 trains each round (epoch) on a fresh uniformly random subset of k = keep_ratio * n samples, weight 1. Its
"without replacement" variant, the paper's default and ours, draws the rounds' subsets from one pass through a random
permutation of the data: a sample comes back only after every other sample has been used once, so over
1 / keep_ratio rounds every sample is seen exactly once (where k does not divide n, a pass's last round is topped up
from the next pass, never with a sample it already holds). ``replacement=True`` draws each round's subset
independently of the others ([Omission]'s "Random": the `random` sampler gives the same distribution).

The learning-rate schedule spans the rounds actually trained (the engine's schedule is per epoch), as [RS2] sizes
its schedule to the reduced number of iterations. No statistics are kept: the plan of epoch e is a function of
(seed, e) alone, so a resumed run replans it bit for bit.
"""
from __future__ import annotations

import torch

from .base import DynamicSampler, Method, _check_ratio, keep


class RS2(DynamicSampler):
    """[RS2] Alg. 1 (without replacement): round e trains on samples e k .. (e + 1) k - 1 of a stream of permutations."""

    version = 1

    def __init__(self, n, *, keep_ratio: float = 0.1, replacement: bool = False, num_epochs=None, seed=0,
                 distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
        self.replacement = bool(replacement)
        self._passes: list[torch.Tensor] = []     # the stream's permutations, derived from the seed (not state)

    def _pass(self, j: int) -> torch.Tensor:
        """Permutation j of the stream. A pass's first samples avoid the previous pass's last partial round, so a
        round that straddles two passes holds no sample twice."""
        while len(self._passes) <= j:
            i = len(self._passes)
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7_777_777 * (i + 1) + 5)
            perm = torch.randperm(self.n, generator=g)
            if i > 0:
                k = self._k(self.keep_ratio)
                cut = (i * self.n // k) * k - (i - 1) * self.n     # where the round that straddles the passes starts
                tail = self._passes[-1][cut:] if (i * self.n) % k else self._passes[-1][:0]
                if len(tail):
                    held = torch.zeros(self.n, dtype=torch.bool)
                    held[tail] = True
                    fresh, rest = perm[~held[perm]], perm[held[perm]]
                    head = fresh[: k - len(tail)]
                    later = torch.cat([fresh[k - len(tail):], rest])
                    perm = torch.cat([head, later[torch.randperm(len(later), generator=g)]])
            self._passes.append(perm)
        return self._passes[j]

    def _plan(self, epoch, g):
        k = self._k(self.keep_ratio)
        if self.replacement:
            return torch.randperm(self.n, generator=g)[:k], None
        start = epoch * k
        parts, pos = [], start
        while pos < start + k:
            j, off = divmod(pos, self.n)
            take = min(self.n - off, start + k - pos)
            parts.append(self._pass(j)[off:off + take])
            pos += take
        return self._shuffle(torch.cat(parts), g), None


# [RS2]: without replacement (the sampler's default), at the study's keep_ratio (a free budget knob)
METHODS = {"rs2": Method(RS2, "RS2", "RS2", budget=keep)}
