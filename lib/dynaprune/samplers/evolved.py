"""Evolved Sampling ([ES], Cheng, Li, Bian): decoupled EMA of losses, annealing, set-level pruning.

Decoupled EMA ([ES] eq. 2.5), per sample and each time its loss l_i is seen:
    w_i = beta1 * s_i + (1 - beta1) * l_i      (the sampling weight)
    s_i = beta2 * s_i + (1 - beta2) * l_i      (the score), s_i(0) = 1/n.
Algorithm 1: on each meta-batch of B (extra forward for its losses), b = ratio * B samples
are drawn without replacement with probability proportional to w (`es`). ESWP adds set-level
pruning: at the epoch start (1 - r) n samples are drawn without replacement with probability
proportional to s. Annealing: the first and last E_a = round(0.05 E) epochs use all data (no
set pruning, the whole meta-batch); at least one epoch each when annealing is on, so short runs
keep it. Biased by design (weight 1), as in [ES].

Step regime: in [ES] the standard batch is B and ES backpropagates b = ratio * B of it, so it takes
as many steps as full-data training (``steps="equal_steps"``, the default here); ``steps=
"fewer_steps"`` keeps b and draws B = b / ratio, as [Omission] §5 runs its batch-level baselines.
``keep_ratio`` (the share of samples backpropagated over the whole run, annealing included)
solves for ratio: keep * E = 2 E_a + (E - 2 E_a) (1 - r) ratio.
"""
from __future__ import annotations

import torch

from .base import BatchSampler, Method, _check_ratio, keep, ratio_or_keep

BETA1, BETA2 = 0.2, 0.9        # ES ([ES] §3)
BETA2_ESWP = 0.8               # ESWP
RATIO = 0.25                   # b / B
PRUNE = 0.2                    # r for ESWP
ANNEAL = 0.05                  # E_a / E


def weighted_without_replacement(w: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """k indices drawn without replacement, successively proportional to w (Gumbel top-k,
    Efraimidis & Spirakis 2006): exact and O(n log n) for any n."""
    u = torch.rand(len(w), generator=g, dtype=torch.float64).clamp_min(1e-300)
    keys = torch.log(w.double().clamp_min(1e-300)) - torch.log(-torch.log(u))
    return torch.topk(keys, k).indices


class EvolvedSampling(BatchSampler):
    version = 2  # equal-steps regime by default ([ES]); keep_ratio; eval-mode selection forward
    requires_num_epochs = True
    step_regime = "equal_steps"
    _state_keys = ("s",)

    def __init__(self, n, *, ratio: float | None = None, keep_ratio: float | None = None, beta1: float = BETA1,
                 beta2: float = BETA2, prune: float = 0.0, anneal: float = ANNEAL, steps=None, num_epochs=None,
                 seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        for name, v in (("beta1", beta1), ("beta2", beta2), ("anneal", anneal)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if not 0.0 <= float(prune) < 1.0:
            raise ValueError(f"prune must be in [0, 1), got {prune}")
        self.beta1, self.beta2, self.prune, self.anneal = float(beta1), float(beta2), float(prune), float(anneal)
        self._set_regime(steps)
        self.keep_ratio = None
        if keep_ratio is not None:
            if ratio is not None:
                raise ValueError("give ratio (b / B) or keep_ratio (share of the run), not both")
            self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
            E, Ea = self.num_epochs, self.anneal_epochs
            if E - 2 * Ea <= 0:
                raise ValueError(f"every one of the {E} epochs anneals: keep_ratio cannot be set")
            ratio = (self.keep_ratio * E - 2 * Ea) / ((E - 2 * Ea) * (1 - self.prune))
            if not 0 < ratio <= 1:
                lo, hi = 2 * Ea / E, (2 * Ea + (E - 2 * Ea) * (1 - self.prune)) / E
                raise ValueError(f"keep_ratio={keep_ratio} is out of reach with {Ea} annealing epochs at each end of "
                                 f"{E} and prune={self.prune}: it must lie in ({lo:.3f}, {hi:.3f}]")
        self.ratio = ratio_or_keep(ratio, None, RATIO)
        self.s = torch.full((self.n,), 1.0 / self.n, dtype=torch.float64)

    @property
    def anneal_epochs(self) -> int:
        """E_a = round(anneal * E), at least 1 when annealing is on (5% of a short run rounds to 0)."""
        return max(1, int(round(self.anneal * self.num_epochs))) if self.anneal > 0 else 0

    def annealing(self, epoch: int) -> bool:
        ea = self.anneal_epochs
        return epoch < ea or epoch >= self.num_epochs - ea

    def _plan(self, epoch, g):
        if self.prune > 0 and not self.annealing(epoch):
            keep = max(1, int(round((1 - self.prune) * self.n)))
            return self._shuffle(weighted_without_replacement(self.s, keep, g), g), None
        return torch.randperm(self.n, generator=g), None

    def _select(self, idx, losses, logits, targets):
        l = losses.double()
        w = self.beta1 * self.s[idx] + (1 - self.beta1) * l          # eq. 2.5, first line
        gi, gl = self._meta                                           # every rank's meta-batch (DDP)
        self.s[gi] = self.beta2 * self.s[gi] + (1 - self.beta2) * gl.double()  # eq. 2.5, second line
        B = len(idx)
        if self.annealing(self.epoch):
            pos = torch.arange(B)
        else:
            pos = weighted_without_replacement(w, max(1, int(round(self.ratio * B))), self.gen)
        return pos, torch.ones(len(pos), dtype=torch.float64)


def es(n, **kw):
    """[ES] ES: decoupled EMA on meta-batches, b/B = 25%, annealing."""
    return EvolvedSampling(n, **kw)


def eswp(n, *, prune=PRUNE, beta2=BETA2_ESWP, **kw):
    """[ES] ESWP: ES plus set-level pruning r = 20% proportional to s (beta2 = 0.8)."""
    return EvolvedSampling(n, prune=prune, beta2=beta2, **kw)


def decoupled_ema_trace(losses, beta1: float, beta2: float, s0: float | None = None):
    """The weight series w(t) of eq. 2.5 along a loss sequence ([ES] Fig. 1): returns (w, s).
    beta1 = beta2 gives the plain EMA of eq. 2.4."""
    l = torch.as_tensor(losses, dtype=torch.float64)
    s = float(l[0]) if s0 is None else float(s0)
    w_out, s_out = torch.empty_like(l), torch.empty_like(l)
    for t, lt in enumerate(l.tolist()):
        w_out[t] = beta1 * s + (1 - beta1) * lt
        s = beta2 * s + (1 - beta2) * lt
        s_out[t] = s
    return w_out.numpy(), s_out.numpy()


# factories carry the class attributes callers look up (cache version, schedule needs)
for _f in (es, eswp):
    _f.version, _f.requires_num_epochs = EvolvedSampling.version, EvolvedSampling.requires_num_epochs


# ---------------------------------------------------------------------------------------------------- method cards

def regime(epochs: int) -> dict:
    """[ES] §4: b / B = 0.25, annealing the first and last 5% of the run (the sampler's defaults)."""
    return dict(ratio=RATIO)


def outside(options: dict, epochs: int) -> str | None:
    if "keep_ratio" in options:
        return f"outside [ES]'s regime: keep_ratio {options['keep_ratio']} sets b / B instead of 0.25"
    return None


# [ES] sets its own budget (b / B), a budget knob too: on the curves at each keep ratio, outside its regime
_ES = dict(paper="ES", budget=keep, own_budget=True, regime=regime, outside=outside)
METHODS = {"es": Method(es, "Evolved Sampling", **_ES), "eswp": Method(eswp, "ES with pruning", **_ES)}
