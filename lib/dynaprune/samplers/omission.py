"""[Omission]: historically weighted Bernoulli sampling, and [Omission]'s section-5 variants.

Score ([Omission] §3.2.1): Sbar_i = g~_i^2 / M with M the EMA (beta2 = 0.99) of the batch
mean of g~^2 (scale normalisation, updated every step), and S_i = EMA (beta1 = 0.9) of
Sbar_i; g~_i = ||softmax(z_i) - onehot(y_i)|| (the logit gradient). Probabilities: eq. 5,
p = min(sqrt((1 - a) S_i + a mean S) / c, 1) with sum p = budget (Theorem 2 + smoothing,
a = 0.1; `dynaprune.theory.smoothed_probs`). Unbiased weights (eq. 4): rho / p_i over the
whole set, |kept| / (B p_i) on a meta-batch of B.

- `omission`: implementation 2 (section 3.3): probabilities over all n at the epoch start,
  budget rho n, Bernoulli (or fixed-size systematic) sampling, shuffled into batches.
- `omission_batch`: implementation 1: a meta-batch B = 2b, Bernoulli with budget b, from
  stored scores (no extra forward).
- `extra_forward_bernoulli`: Theorem 1 probabilities from the extra forward's g~ on B.
- `historical_replacement`: b draws with replacement, q proportional to sqrt(S), 1/(B q).
- `historical_ranking`: Selective-Backprop-style keep probability (percentile of the
  historical score S, the same beta1 / beta2 EMA as Omission's)^beta, biased (weight 1).
Ablations ([Omission] Table 5): ``smoothing=False`` (a = 0), ``ema=False`` (beta1 = 0),
``scale_norm=False`` (M = 1).

``bias_correction`` (ours; the paper is silent): S starts at 0 and is read as
S / (1 - beta1^t_i) after t_i visits, as Adam corrects its moments, with never-visited samples
at the mean of the visited ones. Without it, S starts at 1 and needs about 1 / (1 - beta1) = 10
visits per sample to forget that start, so short runs sample close to uniformly. `omission` is
[Omission] as written (uncorrected, S starts at 1); the correction is its own card,
`omission_bc` ("Omission + bias correction (ours)"). Measured for the correction: quick profile
(Fashion-MNIST 10k, MLP, 8 epochs), 8 seeds paired, test accuracy with minus without: +0.24
points (95% bootstrap CI [+0.10, +0.36]) at keep_ratio 0.3, +0.11 [-0.01, +0.24] at 0.5
(`notebooks/06_ablations` shows the ablation). The batch-level variants keep the paper's start.
"""
from __future__ import annotations

import torch

from ..theory import optimal_bernoulli_probs, smoothed_probs
from .base import BatchSampler, DynamicSampler, Method, _check_ratio, grad_norm_sq, keep, ratio_or_keep

BETA1 = 0.9      # EMA of the normalised score ([Omission] §3.2.1, as in Adam)
BETA2 = 0.99     # EMA of the mean g~^2 for scale normalisation
ALPHA = 0.1      # smoothing, eq. 5
KEEP = 0.5       # rho in [Omission]'s experiments
SB_BETA = 1.0    # historical_ranking exponent (Selective Backprop)


class _OmissionScore:
    """S_i and M of [Omission] §3.2.1, updated from each training step's logits."""

    def __init__(self, n, beta1, beta2, ema=True, scale_norm=True, bias_correction=False):
        self.beta1 = beta1 if ema else 0.0
        self.beta2, self.scale_norm, self.bias_correction = beta2, scale_norm, bool(bias_correction)
        # mean-normalised scale: unseen samples score 1 (or 0 + bias correction)
        self.S = torch.zeros(n, dtype=torch.float64) if self.bias_correction else torch.ones(n, dtype=torch.float64)
        self.visits = torch.zeros(n, dtype=torch.long)
        self.M = None
        self.last_loss = torch.zeros(n, dtype=torch.float64)

    def update(self, idx, losses, logits, targets):
        g2 = grad_norm_sq(logits, targets)
        m = float(g2.mean())
        self.M = m if self.M is None else self.beta2 * self.M + (1 - self.beta2) * m
        sbar = g2 / self.M if self.scale_norm else g2
        if self.scale_norm and self.M <= 0:
            sbar = torch.ones_like(g2)
        self.S[idx] = self.beta1 * self.S[idx] + (1 - self.beta1) * sbar
        self.visits[idx] += 1
        if losses is not None:
            self.last_loss[idx] = losses.double()

    def scores(self, idx=None) -> torch.Tensor:
        """The scores sampling uses: S, or with bias correction S / (1 - beta1^t) (unvisited: the mean
        of the visited, 1 before any visit)."""
        S = self.S if idx is None else self.S[idx]
        if not self.bias_correction:
            return S
        t = self.visits if idx is None else self.visits[idx]
        seen = self.visits > 0
        fill = float((self.S[seen] / (1 - self.beta1 ** self.visits[seen].double())).mean()) if seen.any() else 1.0
        corr = 1 - self.beta1 ** t.double()
        return torch.where(t > 0, S / corr.clamp_min(1e-300), torch.full_like(S, fill))

    def state(self):
        return {"S": self.S.clone(), "M": self.M, "last_loss": self.last_loss.clone(), "visits": self.visits.clone()}

    def load(self, st):
        self.S, self.M, self.last_loss, self.visits = st["S"].clone(), st["M"], st["last_loss"].clone(), st["visits"].clone()


class _ScoreState:
    """Mixin: persist the `_OmissionScore` in state_dict."""

    def state_dict(self):
        return {**super().state_dict(), "score": self.tracker.state()}

    def load_state_dict(self, state):
        if "score" not in state:
            raise KeyError("state_dict lacks ['score']")
        super().load_state_dict(state)
        self.tracker.load(state["score"])


def systematic_sample(p: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Fixed-size sampling with inclusion probabilities exactly p (sum p an integer): systematic
    sampling (Madow 1949) over a random order. Returns the selected indices."""
    order = torch.randperm(len(p), generator=g)
    cum = torch.cumsum(p[order], 0)
    u = torch.rand((), generator=g, dtype=torch.float64)
    hits = torch.floor(cum - u) - torch.floor(torch.cat([cum.new_zeros(1), cum[:-1]]) - u)
    return order[hits > 0]


class Omission(_ScoreState, DynamicSampler):
    """[Omission] implementation 2: eq. 5 probabilities over all n at set_epoch, weights rho / p_i."""

    version = 3  # [Omission]'s uncorrected S by default (2: our bias correction by default; `cache.bump` moved the runs
                 # that state bias_correction)
    needs_logits = True

    def __init__(self, n, *, keep_ratio: float = KEEP, alpha: float = ALPHA, beta1: float = BETA1,
                 beta2: float = BETA2, smoothing: bool = True, ema: bool = True, scale_norm: bool = True,
                 bias_correction: bool = False, fixed_size: bool = False, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha) if smoothing else 0.0
        self.fixed_size = bool(fixed_size)
        self.tracker = _OmissionScore(self.n, beta1, beta2, ema, scale_norm, bias_correction)
        self.probs = None

    def _plan(self, epoch, g):
        budget = round(self.keep_ratio * self.n) if self.fixed_size else self.keep_ratio * self.n
        p = torch.as_tensor(smoothed_probs(self.tracker.scores(), budget, self.alpha), dtype=torch.float64)
        if self.fixed_size:
            chosen = systematic_sample(p, g)
        else:
            chosen = torch.nonzero(torch.rand(self.n, generator=g, dtype=torch.float64) < p).flatten()
        self.probs = p
        weights = torch.where(p > 0, self.keep_ratio / p.clamp_min(1e-300), torch.zeros_like(p))
        return self._shuffle(chosen, g), weights

    def _observe(self, idx, losses, logits, targets):
        self.tracker.update(idx, losses, logits, targets)


class OmissionBatch(_ScoreState, BatchSampler):
    """[Omission] implementation 1: Bernoulli on a meta-batch B = 2b with eq. 5 probabilities (budget b)
    from the stored scores; weights |kept| / (B p_i) (eq. 4). No extra forward."""

    needs_logits = True
    needs_forward = False

    def __init__(self, n, *, ratio: float | None = None, keep_ratio: float | None = None, alpha: float = ALPHA,
                 beta1: float = BETA1, beta2: float = BETA2, smoothing: bool = True, ema: bool = True,
                 scale_norm: bool = True, bias_correction: bool = False, steps=None, num_epochs=None, seed=0,
                 distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.ratio = ratio_or_keep(ratio, keep_ratio, 0.5)
        self._set_regime(steps)
        self.alpha = float(alpha) if smoothing else 0.0
        self.tracker = _OmissionScore(self.n, beta1, beta2, ema, scale_norm, bias_correction)

    def _bernoulli(self, p, B):
        keep = torch.rand(len(p), generator=self.gen, dtype=torch.float64) < p
        if not keep.any():  # an empty step carries no gradient; (rare) take the most likely one
            keep[torch.argmax(p)] = True
        pos = torch.nonzero(keep).flatten()
        return pos, len(pos) / (B * p[pos])

    def _select(self, idx, losses, logits, targets):
        B = len(idx)
        b = max(1.0, self.ratio * B)
        p = torch.as_tensor(smoothed_probs(self.tracker.scores(idx), b, self.alpha), dtype=torch.float64)
        return self._bernoulli(p, B)

    def _observe(self, idx, losses, logits, targets):
        self.tracker.update(idx, losses, logits, targets)


class ExtraForwardBernoulli(OmissionBatch):
    """[Omission] §5: Theorem 1 probabilities from the current g~ of the meta-batch (extra forward)."""

    needs_forward = True
    version = 2  # eval-mode selection forward

    def _select(self, idx, losses, logits, targets):
        if logits is None:
            raise ValueError("extra_forward_bernoulli needs the meta-batch logits and targets")
        g = grad_norm_sq(logits, targets).sqrt()
        g = g + 1e-12 * float(g.max().clamp_min(1e-12))  # every p > 0: unbiased even for g~ = 0
        B = len(idx)
        p = torch.as_tensor(optimal_bernoulli_probs(g, max(1.0, self.ratio * B)), dtype=torch.float64)
        return self._bernoulli(p, B)


class HistoricalReplacement(OmissionBatch):
    """[Omission] §5: b = ratio * B draws with replacement, q proportional to sqrt(S); weights 1/(B q)."""

    def _select(self, idx, losses, logits, targets):
        B = len(idx)
        b = max(1, int(round(self.ratio * B)))
        s = self.tracker.scores(idx).sqrt() + 1e-12
        q = s / s.sum()
        pos = torch.multinomial(q, b, replacement=True, generator=self.gen)
        return pos, 1.0 / (B * q[pos])


class HistoricalRanking(OmissionBatch):
    """[Omission] §5: Selective Backprop's keep probability F^beta, with F the percentile of the
    sample's historical score S (the EMA of Omission, beta1 = 0.9, beta2 = 0.99) among all n stored
    scores as they stood at the start of the epoch (ranked once per epoch, ties in random order, so
    percentiles are uniform even while every score still holds its starting value). E[F^beta] =
    1 / (beta + 1): ``keep_ratio`` sets beta = 1 / keep_ratio - 1 and B = b / keep_ratio.
    Biased (weight 1)."""

    version = 3  # ranks the EMA score S (not the last loss); uniform percentiles under ties; keep_ratio
    _state_keys = ("_rank", "_rank_epoch")

    def __init__(self, n, *, beta: float | None = None, keep_ratio: float | None = None, ratio=None, **kw):
        if keep_ratio is not None:
            k = _check_ratio("keep_ratio", keep_ratio)
            if beta is not None and abs(float(beta) - (1 / k - 1)) > 1e-12:
                raise ValueError(f"keep_ratio={k} sets beta = {1 / k - 1:g}; do not also give beta={beta}")
            beta, ratio = 1 / k - 1, k if ratio is None else ratio
        super().__init__(n, ratio=ratio, **kw)
        self.beta = SB_BETA if beta is None else float(beta)
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self._rank, self._rank_epoch = None, -1

    def _percentiles(self, idx):
        if self._rank_epoch != self.epoch:
            g = self._epoch_generator(self.epoch)
            tie = torch.randperm(self.n, generator=g)           # random order among equal scores
            S = self.tracker.scores()
            order = tie[torch.argsort(S[tie], stable=True)]
            rank = torch.empty(self.n, dtype=torch.long)
            rank[order] = torch.arange(self.n)
            self._rank, self._rank_epoch = rank, self.epoch
        return (self._rank[idx].double() + 0.5) / self.n

    def _select(self, idx, losses, logits, targets):
        F = self._percentiles(idx)
        keep = torch.rand(len(idx), generator=self.gen, dtype=torch.float64) < F ** self.beta
        if not keep.any():
            keep[torch.argmax(F)] = True
        pos = torch.nonzero(keep).flatten()
        return pos, torch.ones(len(pos), dtype=torch.float64)


class OmissionBC(Omission):
    """`Omission` with our bias correction (ours; [Omission] is silent on S's start): S starts at 0 and is read as
    S / (1 - beta1^t_i), never-visited samples at the visited mean (see the module's docstring). Its own row, so that
    `omission` stays the paper's method (``bias_correction=False``), which the claims about [Omission] test."""

    version = 1

    def __init__(self, n, *, bias_correction: bool = True, **options):
        super().__init__(n, bias_correction=bias_correction, **options)


# ---------------------------------------------------------------------------------------------------- method cards

METHODS = {
    "omission": Method(Omission, "Omission", "Omission", budget=keep),
    "omission_bc": Method(OmissionBC, "Omission + bias correction (ours)", None, budget=keep),
    "omission_batch": Method(OmissionBatch, "Omission, batch-level", "Omission", budget=keep),
    "extra_forward_bernoulli": Method(ExtraForwardBernoulli, "extra-forward Bernoulli", "Omission", budget=keep),
    "historical_replacement": Method(HistoricalReplacement, "historical, with replacement", "Omission", budget=keep),
    "historical_ranking": Method(HistoricalRanking, "historical ranking", "Omission", budget=keep),
}
