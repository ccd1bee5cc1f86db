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
- ``class_balanced=True`` (ours, labelled so; the per-class budgets of RCAP [RCAP]): each class keeps its share of k
  (`base.class_budgets`), the rule above applied within the class. The remedy notebook 04's finding asks for:
  [Raju]'s global top k can cycle through whole classes.
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

from .base import DynamicSampler, Method, _check_ratio, check_labels, keep, per_class, per_sample_values

ALPHA = 0.8        # eq. 2, weight on the new loss ([Raju] §4)
PERIOD = 10        # T_p ([Raju] §4)
EPSILON = 0.1      # eps-greedy exploration share (ours; [Raju]: insensitive)
C = 1.0            # UCB confidence (ours; [Raju]: insensitive)


class _Checkpoints:
    """Sub-epoch checkpoints, ``checkpoints_per_epoch`` = m > 1 (with ``period`` 1): [Raju]'s regime of 20
    checkpoints per run in runs shorter than 20 epochs. Each checkpoint chooses a subset of k = keep_ratio n
    as usual and trains on k / m of it (a T_p = 1 / m epoch's worth), so an epoch still backpropagates k
    samples. The epoch's first checkpoint is planned by `set_epoch` (after the epoch-start scoring pass);
    the others happen as iteration reaches them, through ``scorer(indices)``, which the trainer sets: it
    runs a no-grad forward over the indices and passes the losses to `observe` (`dynaprune.train` does).
    One process only (the segments are drawn lazily)."""

    def _init_checkpoints(self, checkpoints_per_epoch, period):
        if int(checkpoints_per_epoch) != checkpoints_per_epoch or checkpoints_per_epoch < 1:
            raise ValueError(f"checkpoints_per_epoch must be a positive integer, got {checkpoints_per_epoch}")
        if checkpoints_per_epoch > 1 and int(period) != 1:
            raise ValueError(f"checkpoints_per_epoch > 1 needs period 1, got period {period}")
        if checkpoints_per_epoch > 1 and self.world > 1:
            raise ValueError("checkpoints_per_epoch > 1 runs on one process (its segments are drawn lazily)")
        self.checkpoints_per_epoch = int(checkpoints_per_epoch)
        self.scorer = None

    def _segment_sizes(self, k: int) -> list[int]:
        m = self.checkpoints_per_epoch
        return [k * (j + 1) // m - k * j // m for j in range(m)]

    def _segmented(self, subset, g):
        """The epoch's plan: the first segment drawn from ``subset``, placeholders for the others."""
        if self.checkpoints_per_epoch == 1:
            return self._shuffle(subset, g)
        k = len(subset)
        first = self._shuffle(subset, g)[: self._segment_sizes(k)[0]]
        return torch.cat([first, torch.full((k - len(first),), -1, dtype=torch.long)])

    warmup_full = 0          # UncertaintyEMA's full-data warm-up epochs (ours): not segmented

    def __iter__(self):
        if self.checkpoints_per_epoch == 1 or self.epoch < 0 or self.epoch < self.warmup_full:
            return super().__iter__()
        return self._iter_segments(self.epoch)

    def _iter_segments(self, epoch):
        sizes = self._segment_sizes(len(self.plan))
        yield from self.plan[: sizes[0]].tolist()
        for j in range(1, len(sizes)):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 7_919 + 104_729 * j + 17)
            subset = self._checkpoint(g)
            yield from self._shuffle(subset, g)[: sizes[j]].tolist()


class RandomDynamic(_Checkpoints, DynamicSampler):
    """[Raju] "random dynamic": a uniform keep_ratio * n subset, re-drawn every `period` epochs.
    ``rescale=True`` weights each sample by 1/keep_ratio (InfoBatch-style step scaling).
    ``always``: indices kept at every epoch, the rest of the budget drawn uniformly from the
    others ([Raju] Table 1, "always set + random sometimes set")."""

    _state_keys = ("subset",)

    def __init__(self, n, *, keep_ratio: float = 0.5, period: int = 1, rescale: bool = False,
                 always=(), checkpoints_per_epoch: int = 1, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self._init_checkpoints(checkpoints_per_epoch, period)
        self.always = torch.as_tensor(list(always), dtype=torch.long).unique()
        if len(self.always) and (self.always.min() < 0 or self.always.max() >= self.n):
            raise IndexError("always: indices out of range")
        self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
        if int(period) < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period, self.rescale = int(period), bool(rescale)
        self.subset = None

    def _checkpoint(self, g):
        k = self._k(self.keep_ratio)
        if len(self.always) > k:
            raise ValueError(f"{len(self.always)} always-kept samples exceed the budget of {k}")
        rest = torch.ones(self.n, dtype=torch.bool)
        rest[self.always] = False
        rest = torch.nonzero(rest).flatten()
        self.subset = torch.cat([self.always, rest[torch.randperm(len(rest), generator=g)[: k - len(self.always)]]])
        return self.subset

    def _plan(self, epoch, g):
        subset = self.subset
        if epoch % self.period == 0 or subset is None:
            subset = self._checkpoint(g)
        self.subset = subset
        w = None
        if self.rescale:
            w = torch.full((self.n,), 1.0 / self.keep_ratio, dtype=torch.float64)
        return self._segmented(subset, g), w


def random_dynamic(n, *, period: int | None = None, **kw):
    """[Raju]'s "random dynamic": a uniform subset "at each checkpoint" (every T_p epochs)."""
    if period is None:   # T_p = 10 epochs, or every epoch when checkpoints fall inside epochs
        period = 1 if kw.get("checkpoints_per_epoch", 1) > 1 else PERIOD
    return RandomDynamic(n, period=period, **kw)


random_dynamic.version, random_dynamic.requires_num_epochs = 1, False


class UncertaintyEMA(_Checkpoints, DynamicSampler):
    """[Raju] eq. 1-2: EMA of the per-sample loss at each checkpoint, top k kept.

    Two interventions of ours that locate the cause of class cycling (both off by default): ``warmup_full`` epochs of
    full data before the first checkpoint (which then scores a trained model; checkpoints every ``period`` epochs from
    there; the warm-up's backprops show in the measured share), and ``init_scores``, the initial scores (e.g. the mean
    loss of several random initialisations, which the engine computes with the card's ``init_models``), taken as the
    first checkpoint's scores in place of its scoring pass."""

    _state_keys = ("ema", "var", "subset", "_scored")

    def __init__(self, n, *, keep_ratio: float = 0.5, alpha: float = ALPHA, period: int = PERIOD,
                 checkpoints_per_epoch: int = 1, class_balanced: bool = False, labels=None, warmup_full: int = 0,
                 init_scores=None, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        if int(warmup_full) != warmup_full or warmup_full < 0:
            raise ValueError(f"warmup_full must be a non-negative integer, got {warmup_full}")
        init = None if init_scores is None else per_sample_values(init_scores, self.n, "init_scores")
        self._init_checkpoints(checkpoints_per_epoch, period)
        # ours (no paper of the five does it): each class keeps its share of k, top by score within the class
        self.class_balanced = bool(class_balanced)
        self.labels = check_labels(labels, self.n) if self.class_balanced else None
        self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
        self.alpha = _check_ratio("alpha", alpha)
        if int(period) < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period, self.warmup_full = int(period), int(warmup_full)
        self.ema = init                                         # None: the first scoring pass sets it
        self.var = torch.zeros(self.n, dtype=torch.float64)
        self.subset = None
        # seen in this checkpoint's scoring pass (given initial scores stand for the first one)
        self._scored = torch.full((self.n,), init is not None, dtype=torch.bool)

    def is_checkpoint(self, epoch: int) -> bool:
        if epoch < self.warmup_full:
            return False
        return (epoch - self.warmup_full) % self.period == 0 or self.subset is None

    def scoring_request(self, epoch):
        if not self.is_checkpoint(epoch) or (self.subset is None and bool(self._scored.all())):
            return None                                         # no checkpoint, or given initial scores
        return torch.arange(self.n)

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

    def _checkpoint(self, g, epoch=None):
        """Choose the subset from the scores of the scoring pass just made (a sub-epoch checkpoint asks the
        trainer's ``scorer`` for it)."""
        if epoch is None:
            if self.scorer is None:
                raise RuntimeError(f"{type(self).__name__}: checkpoints_per_epoch > 1 needs sampler.scorer, a function "
                                   "of indices that runs a no-grad forward on them and passes the losses to observe()")
            self.scorer(torch.arange(self.n))
        if not bool(self._scored.all()):
            raise RuntimeError(
                f"{type(self).__name__}: {'a sub-epoch checkpoint' if epoch is None else f'epoch {epoch}'} is a "
                "pruning checkpoint; score the samples of scoring_request(epoch) with a no-grad forward and pass "
                "them to observe() first")
        k = self._k(self.keep_ratio)
        self.subset = (per_class(self._choose, self.score(), k, self.labels, g) if self.class_balanced
                       else self._choose(self.score(), k, g))
        self._scored = torch.zeros(self.n, dtype=torch.bool)
        return self.subset

    def _plan(self, epoch, g):
        if epoch < self.warmup_full:
            return torch.randperm(self.n, generator=g), None    # full data, before the first checkpoint
        if self.is_checkpoint(epoch):
            self._checkpoint(g, epoch)
        return self._segmented(self.subset, g), None


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


# ---------------------------------------------------------------------------------------------------- method cards

CHECKPOINTS = 20          # [Raju] §4: 200 epochs with T_p = 10, i.e. 20 checkpoints per run
# [Raju] §4's CIFAR-10 schedule: 50,000 samples in batches of 128, T_p = 10 of 200 epochs, the learning rate divided by 5
# at epochs 60, 120 and 160 (30 / 60 / 80% of the run), SGD with Nesterov momentum
PAPER_SCHEDULE = dict(n=50_000, batch_size=128, period=10, epochs=200, milestones=(0.3, 0.6, 0.8), gamma=0.2)


def own_schedule(n: int, batch_size: int, period: int | None = None) -> dict:
    """[Raju]'s schedule for a training set of ``n`` samples in batches of ``batch_size``: checkpoints as long as the
    paper's in steps (T_p = 10 epochs of CIFAR-10 at batch 128 is 10 x 50,000 / 128 steps of data; at keep ratio rho
    both sides backpropagate rho of it, so the period in epochs does not depend on rho), 20 of them per run, step decay
    by 5 at 30 / 60 / 80% of the run. ``period``: this T_p instead (the smoke profile's seconds-long stand-in, not the
    paper's length). Returns dict(period, epochs, milestones, gamma)."""
    p = PAPER_SCHEDULE
    if period is None:
        period = max(1, round(p["period"] * p["n"] / p["batch_size"] * batch_size / n))
    epochs = CHECKPOINTS * period
    return dict(period=period, epochs=epochs, milestones=tuple(m * epochs for m in p["milestones"]), gamma=p["gamma"])


def period_of(epochs: int) -> int:
    """T_p for a run of ``epochs``: [Raju] §4's T_p = 10 of 200 epochs, i.e. E / 20 (at least 1)."""
    return max(1, round(epochs / CHECKPOINTS))


def budget(r, epochs, profile) -> dict:
    """keep_ratio r at [Raju]'s pruning period T_p = E / 20."""
    return {"keep_ratio": r, "period": period_of(epochs)}


def regime(epochs: int) -> dict:
    """[Raju] §4: T_p = 10 of 200 epochs, 20 checkpoints per run: a period of epochs // 20 epochs; a run of fewer than
    20 epochs checkpoints ceil(20 / epochs) times per epoch (sub-epoch periods, each checkpoint scoring the whole
    training set as [Raju] does, and training on its share of the epoch)."""
    if epochs >= CHECKPOINTS:
        return dict(period=max(1, epochs // CHECKPOINTS))
    return dict(period=1, checkpoints_per_epoch=-(-CHECKPOINTS // epochs))


def outside(options: dict, epochs: int) -> str | None:
    period = int(options.get("period", PERIOD))
    checkpoints = -(-epochs // period) * int(options.get("checkpoints_per_epoch", 1))
    if checkpoints < CHECKPOINTS:
        return (f"outside [Raju]'s regime: {checkpoints} checkpoints per run (period {period} of {epochs} "
                f"epochs) instead of {CHECKPOINTS}")
    return None


def prepare(ctx) -> dict:
    """With the protocol option ``init_models`` M (an intervention of ours): the initial scores, the mean loss of the
    training set under M random initialisations of the run's architecture (no training), unless given."""
    if "init_models" not in ctx.protocol or "init_scores" in ctx.options:
        return {}
    models = int(ctx.protocol["init_models"])
    if models < 1:
        raise ValueError(f"init_models must be >= 1, got {models}")
    return dict(init_scores=ctx.init_losses(models))


def probe(options, n, epochs) -> dict:
    o = {k: v for k, v in options.items() if k != "init_models"}
    if "init_models" in options:
        o.setdefault("init_scores", [0.0] * n)
    return o


def init_work(options, n, epochs, per_epoch):
    """The forwards of ``init_models`` random initialisations over the n samples (no backprops)."""
    return int(options.get("init_models", 0)) * n, 0


_RAJU = dict(paper="Raju", budget=budget, regime=regime, outside=outside)
_SELECTOR = dict(_RAJU, prepare=prepare, probe=probe, protocol=("init_models",), static_work=init_work)
METHODS = {
    # [Omission]'s "Random": a fresh uniform subset every epoch (period 1)
    "random": Method(RandomDynamic, "random pruning", "Omission", budget=keep),
    "uncertainty_ema": Method(UncertaintyEMA, "uncertainty-EMA [Raju]", **_SELECTOR),
    "epsilon_greedy": Method(EpsilonGreedy, "ε-greedy [Raju]", **_SELECTOR),
    "ucb": Method(UCB, "UCB [Raju]", **_SELECTOR),
    "random_dynamic": Method(random_dynamic, "random dynamic [Raju]", **_RAJU),
}
