"""Raju et al., "Accelerating deep learning with dynamic data pruning" ([Raju]).

Algorithm 1: every T_p epochs (a checkpoint) the model scores the whole training set,
and a subset of k = keep_ratio * n samples is selected for the next T_p epochs.
- `random_dynamic` ([Raju]'s "random dynamic"): a uniform subset, re-drawn at each checkpoint
  (default T_p = 10, like [Raju]'s other methods; compare them at the same T_p).
- `random` ([Omission]'s "Random"): the same class re-drawn every epoch (T_p = 1).
- `uncertainty_ema`: score = per-sample cross-entropy (eq. 1) filtered by the EMA of
  eq. 2, s = alpha * l + (1 - alpha) * s_prev (alpha = 0.8); top k.
- `epsilon_greedy` (section 3.2.2): (1 - eps) k top by s, eps k uniformly from the rest.
- `ucb` (eq. 3-4): var = (1 - alpha) var_prev + alpha (l - s_prev)^2, top k by s + c var.
The first checkpoint starts the EMA at the random model's losses and the variance at 0.
These methods are biased on purpose (weight 1; [Omission] §3 remarks it).

Scoring passes: at a checkpoint, `scoring_request(epoch)` returns all n indices; the
caller runs a no-grad forward over them and passes the losses to `observe` before
`set_epoch`. Training losses passed to `reweight` do not change the scores ([Raju] scores
only at checkpoints). The values of eps and c are not stated in the text we have ([Raju]
reports both as insensitive); the defaults below are ours.
"""
from __future__ import annotations

import torch

from .base import DynamicSampler, _check_ratio

ALPHA = 0.8        # eq. 2, weight on the new loss ([Raju] §4)
PERIOD = 10        # T_p ([Raju] §4)
EPSILON = 0.1      # eps-greedy exploration share (ours; [Raju]: insensitive)
C = 1.0            # UCB confidence (ours; [Raju]: insensitive)


class RandomDynamic(DynamicSampler):
    """[Raju] "random dynamic": a uniform keep_ratio * n subset, re-drawn every `period` epochs.
    ``rescale=True`` weights each sample by 1/keep_ratio (InfoBatch-style step scaling).
    ``always``: indices kept at every epoch, the rest of the budget drawn uniformly from the
    others ([Raju] Table 1, "always set + random sometimes set")."""

    _state_keys = ("subset",)

    def __init__(self, n, *, keep_ratio: float = 0.5, period: int = 1, rescale: bool = False,
                 always=(), num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.always = torch.as_tensor(list(always), dtype=torch.long).unique()
        if len(self.always) and (self.always.min() < 0 or self.always.max() >= self.n):
            raise IndexError("always: indices out of range")
        self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
        if int(period) < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period, self.rescale = int(period), bool(rescale)
        self.subset = None

    def _plan(self, epoch, g):
        subset = self.subset
        if epoch % self.period == 0 or subset is None:
            k = self._k(self.keep_ratio)
            if len(self.always) > k:
                raise ValueError(f"{len(self.always)} always-kept samples exceed the budget of {k}")
            rest = torch.ones(self.n, dtype=torch.bool)
            rest[self.always] = False
            rest = torch.nonzero(rest).flatten()
            subset = torch.cat([self.always, rest[torch.randperm(len(rest), generator=g)[: k - len(self.always)]]])
        self.subset = subset
        w = None
        if self.rescale:
            w = torch.full((self.n,), 1.0 / self.keep_ratio, dtype=torch.float64)
        return self._shuffle(subset, g), w


def random_dynamic(n, *, period: int = PERIOD, **kw):
    """[Raju]'s "random dynamic": a uniform subset "at each checkpoint" (every T_p epochs)."""
    return RandomDynamic(n, period=period, **kw)


random_dynamic.version, random_dynamic.requires_num_epochs = 1, False


class UncertaintyEMA(DynamicSampler):
    """[Raju] eq. 1-2: EMA of the per-sample loss at each checkpoint, top k kept."""

    _state_keys = ("ema", "var", "subset", "_scored")

    def __init__(self, n, *, keep_ratio: float = 0.5, alpha: float = ALPHA, period: int = PERIOD,
                 num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
        self.alpha = _check_ratio("alpha", alpha)
        if int(period) < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = int(period)
        self.ema = None
        self.var = torch.zeros(self.n, dtype=torch.float64)
        self.subset = None
        self._scored = torch.zeros(self.n, dtype=torch.bool)  # seen in this checkpoint's scoring pass

    def is_checkpoint(self, epoch: int) -> bool:
        return epoch % self.period == 0 or self.subset is None

    def scoring_request(self, epoch):
        return torch.arange(self.n) if self.is_checkpoint(epoch) else None

    def _observe(self, idx, losses, logits, targets):
        pass  # training losses do not move [Raju]'s scores

    def _observe_scoring(self, idx, losses, logits, targets):
        l = losses.detach().double().cpu()
        if self.ema is None:
            self.ema = torch.full((self.n,), float("nan"), dtype=torch.float64)
        prev = self.ema[idx]
        first = torch.isnan(prev)
        new = torch.where(first, l, self.alpha * l + (1 - self.alpha) * prev)       # eq. 2
        self.var[idx] = torch.where(first, torch.zeros_like(l),
                                    (1 - self.alpha) * self.var[idx] + self.alpha * (l - prev) ** 2)  # eq. 3
        self.ema[idx] = new
        self._scored[idx] = True

    def score(self) -> torch.Tensor:
        return self.ema

    def _choose(self, score, k, g):
        return torch.topk(score, k).indices

    def _plan(self, epoch, g):
        if self.is_checkpoint(epoch):
            if not bool(self._scored.all()):
                raise RuntimeError(
                    f"{type(self).__name__}: epoch {epoch} is a pruning checkpoint; score the samples of "
                    "scoring_request(epoch) with a no-grad forward and pass them to observe() first")
            subset = self._choose(self.score(), self._k(self.keep_ratio), g)
            self._scored = torch.zeros(self.n, dtype=torch.bool)
            self.subset = subset
        return self._shuffle(self.subset, g), None


class EpsilonGreedy(UncertaintyEMA):
    """[Raju] §3.2.2: (1 - eps) k by the EMA score, eps k uniformly from the rest."""

    def __init__(self, n, *, epsilon: float = EPSILON, **kw):
        super().__init__(n, **kw)
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = float(epsilon)

    def _choose(self, score, k, g):
        greedy = int(round((1 - self.epsilon) * k))
        order = torch.argsort(score, descending=True, stable=True)
        rest = order[greedy:]
        explore = rest[torch.randperm(len(rest), generator=g)[: k - greedy]]
        return torch.cat([order[:greedy], explore])


class UCB(UncertaintyEMA):
    """[Raju] eq. 3-4: top k by s_ema + c * var."""

    def __init__(self, n, *, c: float = C, **kw):
        super().__init__(n, **kw)
        if float(c) < 0:
            raise ValueError(f"c must be >= 0, got {c}")
        self.c = float(c)

    def score(self):
        return self.ema + self.c * self.var
