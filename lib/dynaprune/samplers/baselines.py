"""Baselines from outside the five papers, as the papers run them (000 section 5, 001, 002).

Batch-level, with an extra forward on the meta-batch:
- `weighted_replacement` (DLIS, Katharopoulos & Fleuret 2018, as in 000 with B = 2b): b draws
  with replacement, q proportional to g~ (logit-gradient norm), weights 1/(B q_j). Unbiased.
- `loss_is` (Katharopoulos & Fleuret 2017; B = 4b as in 002): the same with q proportional to l.
- `selective_backprop` (Jiang et al. 2019): keep each sample with probability F(l)^beta, F the
  empirical CDF of the last 1024 losses seen. Biased (weight 1); the kept count varies.
- `ordered_sgd` (Kawaguchi & Lu 2020): the top b = ratio * B losses. Biased.
Set-level:
- `kakurenbo` (Thao Nguyen et al. 2024): hide up to F n lowest-loss samples, except those
  mispredicted or predicted with confidence < tau = 0.7; F steps down over training
  (F, 0.8F, 0.6F, 0.4F by quarters of the run, after the public code's LR milestones); hidden
  samples are re-scored by a scoring pass; `lr_scale` = 1 / (1 - hidden share) for the trainer.
- `el2n`, `forgetting` (Paul et al. 2021; Toneva et al. 2019; 001's static baselines): a fixed
  top-k subset by scores computed before training (`dynaprune.train.static_scores`), whose
  cost is reported separately (``scoring_seconds``).
"""
from __future__ import annotations

import torch

from .base import BatchSampler, DynamicSampler, _check_ratio, grad_norm_sq

SB_BETA = 1.0          # Selective Backprop exponent (the paper sweeps 1-3)
SB_HISTORY = 1024      # losses in the CDF window
KAKURENBO_F = 0.3      # maximum hidden fraction (ours; the public code's default for CIFAR)
KAKURENBO_TAU = 0.7    # confidence threshold


class _Replacement(BatchSampler):
    def __init__(self, n, *, ratio=0.5, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.ratio = _check_ratio("ratio", ratio)

    def _signal(self, losses, logits, targets):
        raise NotImplementedError

    def _select(self, idx, losses, logits, targets):
        B = len(idx)
        s = self._signal(losses, logits, targets).double()
        s = s + 1e-12 * float(s.max().clamp_min(1e-12))  # every q > 0 keeps the estimator unbiased
        q = s / s.sum()
        pos = torch.multinomial(q, max(1, int(round(self.ratio * B))), replacement=True, generator=self.gen)
        return pos, 1.0 / (B * q[pos])


class WeightedReplacement(_Replacement):
    needs_logits = True

    def _signal(self, losses, logits, targets):
        return grad_norm_sq(logits, targets).sqrt()


class LossIS(_Replacement):
    def __init__(self, n, *, ratio=0.25, **kw):
        super().__init__(n, ratio=ratio, **kw)

    def _signal(self, losses, logits, targets):
        return losses


class SelectiveBackprop(BatchSampler):
    _state_keys = ("history",)

    def __init__(self, n, *, beta=SB_BETA, history=SB_HISTORY, ratio=0.5, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.beta, self.window, self.ratio = float(beta), int(history), _check_ratio("ratio", ratio)
        self.history = torch.empty(0, dtype=torch.float64)

    def _select(self, idx, losses, logits, targets):
        self.history = torch.cat([self.history, self._meta[1].double()])[-self.window:]
        F = torch.searchsorted(torch.sort(self.history).values, losses.double(), right=True).double() / len(self.history)
        keep = torch.rand(len(idx), generator=self.gen, dtype=torch.float64) < F ** self.beta
        if not keep.any():
            keep[torch.argmax(losses)] = True
        pos = torch.nonzero(keep).flatten()
        return pos, torch.ones(len(pos), dtype=torch.float64)


class OrderedSGD(BatchSampler):
    def __init__(self, n, *, ratio=0.25, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.ratio = _check_ratio("ratio", ratio)

    def _select(self, idx, losses, logits, targets):
        pos = torch.topk(losses, max(1, int(round(self.ratio * len(idx))))).indices
        return pos, torch.ones(len(pos), dtype=torch.float64)


class Kakurenbo(DynamicSampler):
    requires_num_epochs = True
    needs_logits = True
    _state_keys = ("loss", "correct", "confidence", "seen", "hidden", "lr_scale")

    def __init__(self, n, *, max_fraction=KAKURENBO_F, tau=KAKURENBO_TAU, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        if not 0.0 <= float(max_fraction) < 1.0:
            raise ValueError(f"max_fraction must be in [0, 1), got {max_fraction}")
        self.max_fraction, self.tau = float(max_fraction), float(tau)
        self.loss = torch.zeros(self.n, dtype=torch.float64)
        self.correct = torch.zeros(self.n, dtype=torch.bool)
        self.confidence = torch.zeros(self.n, dtype=torch.float64)
        self.seen = torch.zeros(self.n, dtype=torch.bool)
        self.hidden = torch.zeros(self.n, dtype=torch.bool)
        self.lr_scale = 1.0

    def fraction(self, epoch: int) -> float:
        """F at `epoch`: F, 0.8F, 0.6F, 0.4F over the four quarters of the run."""
        quarter = min(3, int(4 * epoch / self.num_epochs))
        return self.max_fraction * (1.0 - 0.2 * quarter)

    def scoring_request(self, epoch):
        h = torch.nonzero(self.hidden).flatten()
        return h if len(h) else None

    def _observe(self, idx, losses, logits, targets):
        prob = torch.softmax(logits.detach().double().cpu(), 1)
        conf, pred = prob.max(1)
        self.loss[idx] = losses.double()
        self.correct[idx] = pred == torch.as_tensor(targets).cpu()
        self.confidence[idx] = conf
        self.seen[idx] = True

    def _plan(self, epoch, g):
        hide = torch.zeros(self.n, dtype=torch.bool)
        if self.seen.all():
            k = int(self.fraction(epoch) * self.n)
            cand = torch.argsort(self.loss, stable=True)[:k]
            # move back the mispredicted and the unconfident among the lowest-loss candidates
            ok = self.correct[cand] & (self.confidence[cand] >= self.tau)
            hide[cand[ok]] = True
        self.hidden = hide
        self.lr_scale = 1.0 / (1.0 - float(hide.double().mean()))
        return self._shuffle(torch.nonzero(~hide).flatten(), g), None


class StaticTopK(DynamicSampler):
    """A fixed subset: the keep_ratio * n samples with the highest precomputed ``scores``."""

    version = 2  # static scores computed by chunked prediction (`train.predict`)

    def __init__(self, n, *, scores, keep_ratio=0.5, scoring_seconds=0.0, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        s = torch.as_tensor(scores, dtype=torch.float64)
        if s.shape != (self.n,):
            raise ValueError(f"scores must have shape ({self.n},), got {tuple(s.shape)}")
        if not torch.isfinite(s).all():
            raise ValueError("scores contain NaN or inf")
        self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
        self.scores, self.scoring_seconds = s, float(scoring_seconds)
        self.subset = torch.topk(s, self._k(self.keep_ratio)).indices

    def _plan(self, epoch, g):
        return self._shuffle(self.subset, g), None
