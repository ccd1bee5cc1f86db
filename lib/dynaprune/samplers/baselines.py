"""Baselines from outside the five papers, as the papers run them ([Omission] §5, [Raju], [ES]).

Batch-level, with an extra forward on the meta-batch:
- `weighted_replacement` (DLIS, Katharopoulos & Fleuret 2018, as in [Omission] with B = 2b): b draws
  with replacement, q proportional to g~ (logit-gradient norm), weights 1/(B q_j). Unbiased.
- `loss_is` (Katharopoulos & Fleuret 2017; B = 4b as in [ES]): the same with q proportional to l.
- `selective_backprop` (Jiang et al. 2019): keep each sample with probability F(l)^beta, F the
  empirical CDF of the last 1024 losses seen. Biased (weight 1); the kept count varies.
- `ordered_sgd` (Kawaguchi & Lu 2020): the top b = ratio * B losses. Biased.
Set-level:
- `kakurenbo` (Thao Nguyen et al. 2024): hide up to F n lowest-loss samples, except those
  mispredicted or predicted with confidence < tau = 0.7; F steps down over training
  (F, 0.8F, 0.6F, 0.4F by quarters of the run, after the public code's LR milestones); hidden
  samples are re-scored by a scoring pass; `lr_scale` = 1 / (1 - hidden share) for the trainer.
- `el2n`, `forgetting` (Paul et al. 2021; Toneva et al. 2019; [Raju]'s static baselines): a fixed
  top-k subset by scores computed before training (`dynaprune.static_scores`), whose
  cost is reported separately (``scoring_seconds``).
"""
from __future__ import annotations

import torch

from .base import (BatchSampler, DynamicSampler, Method, _check_ratio, check_labels, grad_norm_sq, keep, per_class,
                   per_sample_values, ratio_or_keep)

SB_BETA = 1.0          # Selective Backprop exponent (the paper sweeps 1-3)
SB_HISTORY = 1024      # losses in the CDF window
KAKURENBO_F = 0.3      # maximum hidden fraction (ours; the public code's default for CIFAR)
KAKURENBO_TAU = 0.7    # confidence threshold
KAKURENBO_LR_RULES = ("realised", "scheduled")   # lr_scale from the hidden share, or from the scheduled F_e
EL2N_MODELS, EL2N_EPOCHS = 10, 20   # [Raju] §4: "average over 10 independent models trained for 20 epochs each"


class _Replacement(BatchSampler):
    version = 2  # the selection forward runs in eval mode (no BatchNorm update, no dropout)
    DEFAULT_RATIO = 0.5

    def __init__(self, n, *, ratio=None, keep_ratio=None, steps=None, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.ratio = ratio_or_keep(ratio, keep_ratio, self.DEFAULT_RATIO)
        self._set_regime(steps)

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
    DEFAULT_RATIO = 0.25

    def _signal(self, losses, logits, targets):
        return losses


class SelectiveBackprop(BatchSampler):
    """Keep each sample of the meta-batch with probability F(l)^beta (F: the empirical CDF of the
    last `history` losses). ``keep_ratio`` makes the share of samples backpropagated over the run
    equal to it by solving for beta on each meta-batch: mean_i F_i^beta = what the budget has left
    (losses fall during training, so the history's percentiles drift low and no fixed beta holds
    the budget); B = b / keep_ratio, so mini-batches average b."""

    version = 2  # keep_ratio; eval-mode selection forward
    _state_keys = ("history", "_seen", "_kept")

    def __init__(self, n, *, beta=None, history=SB_HISTORY, ratio=None, keep_ratio=None, steps=None,
                 num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.keep_ratio = None
        if keep_ratio is not None:
            if beta is not None:
                raise ValueError("give beta or keep_ratio (which solves for beta), not both")
            self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
            ratio = self.keep_ratio if ratio is None else ratio
        self.beta = SB_BETA if beta is None else float(beta)
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.window, self.ratio = int(history), _check_ratio("ratio", 0.5 if ratio is None else ratio)
        self._set_regime(steps)
        self.history = torch.empty(0, dtype=torch.float64)
        self._seen, self._kept = 0, 0

    @staticmethod
    def _solve_beta(F, target):
        """beta >= 0 with mean(F^beta) = target (mean F^beta falls from 1 as beta grows)."""
        lo, hi = 0.0, 64.0
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if float((F ** mid).mean()) > target else (lo, mid)
        return (lo + hi) / 2

    def _select(self, idx, losses, logits, targets):
        self.history = torch.cat([self.history, self._meta[1].double()])[-self.window:]
        F = torch.searchsorted(torch.sort(self.history).values, losses.double(), right=True).double() / len(self.history)
        if self.keep_ratio is not None:
            want = (self.keep_ratio * (self._seen + len(idx)) - self._kept) / len(idx)
            self.beta = self._solve_beta(F, min(max(want, 1e-3), 1.0))
        keep = torch.rand(len(idx), generator=self.gen, dtype=torch.float64) < F ** self.beta
        if not keep.any():
            keep[torch.argmax(losses)] = True
        pos = torch.nonzero(keep).flatten()
        self._seen, self._kept = self._seen + len(idx), self._kept + len(pos)
        return pos, torch.ones(len(pos), dtype=torch.float64)


class OrderedSGD(BatchSampler):
    version = 2  # eval-mode selection forward

    def __init__(self, n, *, ratio=None, keep_ratio=None, steps=None, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.ratio = ratio_or_keep(ratio, keep_ratio, 0.25)
        self._set_regime(steps)

    def _select(self, idx, losses, logits, targets):
        pos = torch.topk(losses, max(1, int(round(self.ratio * len(idx))))).indices
        return pos, torch.ones(len(pos), dtype=torch.float64)


class Kakurenbo(DynamicSampler):
    """KAKURENBO: hide the lowest-loss samples except the mispredicted and the unconfident.

    ``keep_ratio`` (the share of samples backpropagated over the run) solves for the paper's F: the
    hidden share follows F, 0.8F, 0.6F, 0.4F by quarters with F = (1 - keep_ratio) E / sum of the
    schedule over epochs 1..E-1 (epoch 0 has no scores and hides nothing), and each epoch takes the
    shortest prefix of the loss order whose eligible (correct and confident) samples reach its
    target, carrying any shortfall to the next epoch. ``lr_rule``: the learning rate scaled by 1 / (1 - F_e) of the
    scheduled fraction (``"scheduled"``, the public code's, the default) or of the share actually hidden
    (``"realised"``, ours)."""

    version = 3  # the public code's learning-rate rule ("scheduled") by default (2: "realised"; `cache.bump` moved the
                 # runs that state lr_rule)
    requires_num_epochs = True
    needs_logits = True
    _state_keys = ("loss", "correct", "confidence", "seen", "hidden", "lr_scale")

    def __init__(self, n, *, max_fraction=None, keep_ratio=None, tau=KAKURENBO_TAU, lr_rule="scheduled",
                 num_epochs=None, seed=0, distributed=None):
        if lr_rule not in KAKURENBO_LR_RULES:
            raise ValueError(f"unknown lr_rule {lr_rule!r}; known: {', '.join(KAKURENBO_LR_RULES)}")
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.lr_rule = lr_rule
        self.keep_ratio = None
        if keep_ratio is not None:
            if max_fraction is not None:
                raise ValueError("give max_fraction (KAKURENBO's F) or keep_ratio, not both")
            self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
            sched = sum(1.0 - 0.2 * min(3, int(4 * e / self.num_epochs)) for e in range(1, self.num_epochs))
            max_fraction = (1 - self.keep_ratio) * self.num_epochs / sched if sched > 0 else float("inf")
            if not max_fraction < 1.0:
                raise ValueError(f"keep_ratio={keep_ratio} is out of KAKURENBO's reach over {self.num_epochs} epochs "
                                 f"(it would need F = {max_fraction:.3g} >= 1)")
        max_fraction = KAKURENBO_F if max_fraction is None else max_fraction
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
        total = epoch * self.n - self.planned_before(epoch)     # hidden so far (keep_ratio's running target)
        if self.seen.all():
            cand = torch.argsort(self.loss, stable=True)
            ok = self.correct[cand] & (self.confidence[cand] >= self.tau)
            if self.keep_ratio is None:
                k = int(self.fraction(epoch) * self.n)
                hide[cand[:k][ok[:k]]] = True     # move back the mispredicted and the unconfident
            else:
                target = round(sum(self.fraction(e) for e in range(1, epoch + 1)) * self.n) - total
                eligible = cand[ok][: max(0, target)]
                hide[eligible] = True
        self.hidden = hide
        # "scheduled" (the public code): 1 / (1 - F_e), the epoch's scheduled fraction (1 in epoch 0, which
        # hides nothing); "realised": 1 / (1 - the share actually hidden), which keep_ratio's carried
        # shortfalls can drive far above the schedule (ours; the cpu study's runs used it)
        if self.lr_rule == "scheduled":
            hidden = self.fraction(epoch) if self.seen.all() else 0.0
        else:
            hidden = float(hide.double().mean())
        self.lr_scale = 1.0 / (1.0 - hidden)
        return self._shuffle(torch.nonzero(~hide).flatten(), g), None


class StaticTopK(DynamicSampler):
    """A fixed subset: the keep_ratio * n samples with the highest precomputed ``scores``."""

    version = 3  # EL2N scored by [Raju] §4's protocol (independent models, each on its own schedule)

    def __init__(self, n, *, scores, keep_ratio=0.5, scoring_seconds=0.0, class_balanced: bool = False, labels=None,
                 num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        s = per_sample_values(scores, self.n, "scores")
        self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
        self.scores, self.scoring_seconds = s, float(scoring_seconds)
        top = lambda sc, k, g: torch.topk(sc, k).indices
        # class_balanced (ours): each class keeps its share of the subset, its highest scores (`base.per_class`)
        self.class_balanced = bool(class_balanced)
        self.subset = (per_class(top, s, self._k(self.keep_ratio), check_labels(labels, self.n), None)
                       if self.class_balanced else top(s, self._k(self.keep_ratio), None))

    def _plan(self, epoch, g):
        return self._shuffle(self.subset, g), None


# ---------------------------------------------------------------------------------------------------- method cards

def kakurenbo_regime(epochs: int) -> dict:
    """KAKURENBO (public code): the maximum hidden fraction F = 0.3, stepping down with the schedule, and the learning
    rate scaled by 1 / (1 - F_e) of the *scheduled* fraction."""
    return dict(max_fraction=KAKURENBO_F, lr_rule="scheduled")


def kakurenbo_outside(options: dict, epochs: int) -> str | None:
    if "keep_ratio" in options:
        return (f"outside KAKURENBO's regime: keep_ratio {options['keep_ratio']} solves the hidden fraction F "
                "(0.77 at 0.5 over 20 epochs) instead of F = 0.3")
    if options.get("lr_rule", "scheduled") != "scheduled":
        return "outside KAKURENBO's regime: learning rate scaled by the realised, not the scheduled, hidden share"
    return None


def el2n_budget(r, epochs, profile) -> dict:
    """keep_ratio r, and [Raju] §4's scoring protocol (the profile may shorten it: ``el2n_models``, ``el2n_epochs``)."""
    return {"keep_ratio": r, "score_models": profile.get("el2n_models", EL2N_MODELS),
            "score_epochs": profile.get("el2n_epochs", EL2N_EPOCHS)}


def _static(kind):
    def prepare(ctx) -> dict:
        """The scores, computed (and cached) before training by `dynaprune.static_scores` unless given."""
        if "scores" in ctx.options:
            return {}
        scores, seconds = ctx.static_scores(kind, **ctx.protocol)
        return dict(scores=scores, scoring_seconds=seconds)
    return prepare


def _static_probe(options, n, epochs) -> dict:
    o = {k: v for k, v in options.items() if k not in ("score_models", "score_epochs")}
    o.setdefault("scores", [0.0] * n)
    return o


def el2n_work(options, n, epochs, per_epoch):
    """[Raju] §4's scoring: score_models models of score_epochs epochs each, then each scores the n samples."""
    models, e = int(options.get("score_models", EL2N_MODELS)), int(options.get("score_epochs", EL2N_EPOCHS))
    return models * (e * per_epoch + n), models * e * per_epoch


def forgetting_work(options, n, epochs, per_epoch):
    """[Forgetting]'s counts: one full run of the run's length, the n samples predicted after every epoch."""
    return epochs * (per_epoch + n), epochs * per_epoch


_STATIC = dict(probe=_static_probe, protocol=("score_models", "score_epochs"))
METHODS = {
    "kakurenbo": Method(Kakurenbo, "KAKURENBO", "KAKURENBO", budget=keep, own_budget=True, curve_ratios=False,
                        regime=kakurenbo_regime, outside=kakurenbo_outside),
    "el2n": Method(StaticTopK, "EL2N (static)", "EL2N", budget=el2n_budget, prepare=_static("el2n"),
                   static_work=el2n_work, **_STATIC),
    "forgetting": Method(StaticTopK, "forgetting (static)", "Forgetting", budget=keep, prepare=_static("forgetting"),
                         static_work=forgetting_work, **_STATIC),
    "weighted_replacement": Method(WeightedReplacement, "weighted, with replacement", "DLIS", budget=keep),
    "loss_is": Method(LossIS, "loss IS", "BiasedIS", budget=keep),
    "ordered_sgd": Method(OrderedSGD, "ordered SGD", "OrderedSGD", budget=keep),
    "selective_backprop": Method(SelectiveBackprop, "Selective Backprop", "SelectiveBackprop", budget=keep),
}
