"""[IES] Yuan, Lin, Feng, Han, Liu, "Instance-dependent Early Stopping" (ICLR 2025).

A sample is *mastered* once the second-order difference of its loss over epochs stays near zero:
    Δ²L_i(t) = L_i(t) - 2 L_i(t-1) + L_i(t-2)          ([IES] §3, the removal criterion),
and a mastered sample is left out of the next epoch's backpropagation. The official code makes the rule concrete:
after each epoch, the |Δ²| of each sample are smoothed by a moving average over ``window`` = 3 epochs, and the sum of
the last ``k`` = 1 smoothed values is compared with the ``threshold`` δ = 1e-3 (CIFAR-10; 2e-3 for CIFAR-100). The
test needs window + k second differences, so nothing is left out before the sixth epoch. Left-out samples are not
forgotten: a no-grad forward scores them after each epoch (our engine's scoring pass, `scoring_request`, at the next
epoch's start: the same model), their losses join their history, and a sample whose loss moves again returns to
training. Weights are 1 (IES removes mastered samples; it does not reweight the rest).

The backprop share follows from δ (IES sets its own budget): a ``keep_ratio`` cannot be honoured and is refused.
"""
from __future__ import annotations

import torch

from .base import DynamicSampler, Method

THRESHOLD = 1e-3    # δ: the official code's default base threshold (CIFAR-10; its README: tune in 1e-5 .. 1e-1)
WINDOW = 3          # the moving average of |Δ²| (official code: --moving_average_rate 3)
K = 1               # the number of smoothed values summed (official code: --k 1)


class IES(DynamicSampler):
    """[IES]: leave out of backpropagation the samples whose smoothed |Δ²L| is below ``threshold``."""

    version = 1
    _state_keys = ("losses", "n_losses", "deriv", "n_deriv", "current", "excluded")

    def __init__(self, n, *, threshold: float = THRESHOLD, window: int = WINDOW, k: int = K, keep_ratio=None,
                 num_epochs=None, seed=0, distributed=None):
        if keep_ratio is not None:
            raise ValueError("IES sets its own budget: its backprop share follows from the threshold δ (the samples "
                             "it finds mastered), so a keep_ratio cannot be honoured; give threshold instead")
        if not float(threshold) >= 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        for name, v in (("window", window), ("k", k)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v}")
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        self.threshold, self.window, self.k = float(threshold), int(window), int(k)
        m = self.window + self.k
        self.losses = torch.full((self.n, 3), float("nan"), dtype=torch.float64)   # the last three epochs' losses
        self.n_losses = torch.zeros(self.n, dtype=torch.long)
        self.deriv = torch.zeros((self.n, m), dtype=torch.float64)                  # the last window + k of Δ²L
        self.n_deriv = torch.zeros(self.n, dtype=torch.long)
        self.current = torch.full((self.n,), float("nan"), dtype=torch.float64)    # this epoch's loss, once seen
        self.excluded = torch.zeros(self.n, dtype=torch.bool)

    def scoring_request(self, epoch):
        """The samples left out of the last epoch: their losses after it, from a no-grad forward."""
        ex = torch.nonzero(self.excluded).flatten()
        return ex if len(ex) else None

    def _observe(self, idx, losses, logits, targets):
        self.current[idx] = losses.double()

    def _close_epoch(self):
        """The end of an epoch in the official code's order: append each seen loss, then every sample with three
        losses appends its latest Δ²L, then the mastery test decides who is left out next."""
        seen = ~torch.isnan(self.current)
        self.losses[seen] = torch.cat([self.losses[seen, 1:], self.current[seen, None]], 1)
        self.n_losses[seen] += 1
        ready = self.n_losses >= 3
        l = self.losses[ready]
        d2 = l[:, 2] - 2 * l[:, 1] + l[:, 0]
        self.deriv[ready] = torch.cat([self.deriv[ready, 1:], d2[:, None]], 1)
        self.n_deriv[ready] = torch.clamp(self.n_deriv[ready] + 1, max=self.deriv.shape[1])
        full = self.n_deriv >= self.deriv.shape[1]
        a = self.deriv.abs()
        # the sum of the last k moving averages (window w) of |Δ²L|
        ma = sum(a[:, a.shape[1] - j - self.window: a.shape[1] - j].mean(1) for j in range(self.k))
        self.excluded = full & (ma < self.threshold)
        self.current = torch.full((self.n,), float("nan"), dtype=torch.float64)

    def _plan(self, epoch, g):
        if self.epoch >= 0 and epoch not in (self.epoch, self.epoch + 1):
            raise ValueError(f"IES follows each sample's loss epoch by epoch: epoch {epoch} cannot follow epoch "
                             f"{self.epoch}")
        if self.epoch >= 0 and epoch == self.epoch + 1:      # replanning the current epoch closes nothing
            self._close_epoch()
        return self._shuffle(torch.nonzero(~self.excluded).flatten(), g), None


# ---------------------------------------------------------------------------------------------------- method card

def regime(epochs: int) -> dict:
    """[IES] (official code): threshold δ = 1e-3 (10 classes), a moving average over 3 epochs, k = 1 (the defaults)."""
    return dict(threshold=THRESHOLD)


def outside(options: dict, epochs: int) -> str | None:
    if float(options.get("threshold", THRESHOLD)) != THRESHOLD:
        return f"outside [IES]'s regime: threshold {options['threshold']} instead of 1e-3"
    return None


# its share follows from the samples it finds mastered: one run at its own budget
METHODS = {"ies": Method(IES, "IES", "IES", own_budget=True, fixed={}, regime=regime, outside=outside)}
