"""[RHO-LOSS] Mindermann et al., "Prioritized Training on Points that are Learnable, Worth Learning, and Not Yet
Learnt" (ICML 2022).

From each large candidate batch B_t (a meta-batch of n_B samples) the step trains on the n_b points with the highest
*reducible holdout loss*,
    RHO_i = L[y_i | x_i; θ_t] − L[y_i | x_i; irreducible-loss model],
the training loss under the current model (a no-grad forward in eval mode, as the official code's selection) minus
the loss under a model trained on a held-out split, computed once before training (the official code's
"precomputed" irreducible losses). Weights are 1. The regime is the official CIFAR configuration: n_b / n_B = 0.1
(`percent_train: 0.1`), a large batch of 320 for a mini-batch of 32, so an epoch has 0.1 n / n_b steps ("fewer
steps", our ``steps="fewer_steps"``).

The irreducible-loss (IL) model is the engine's job (`dynaprune.train.setup`, `static_scores.irreducible_losses`): the
run's architecture trained on ``holdout_size`` samples that are neither the validation split nor the run's training
set (taken after the run's ``train_subset`` in the pool), for ``il_epochs`` epochs (default: the run's). Its
backprops count in the run's budget: with ``keep_ratio`` ρ over E epochs, the selection share is
ρ − (IL backprops) / (n E), refused where the IL model alone spends the budget; the engine adds the IL model's
backprops and forwards to the run's first epoch record (``static_backpropagated``), so every measured share counts
them.

Where the paper leaves a value open: the official code trains its IL model for up to 100 epochs with a checkpoint at
the best loss on a validation set; ours trains for ``il_epochs`` on the recipe of the run, with no early stopping;
the holdout here is a tenth of the run's training set by default (the paper's CIFAR holdout is as large as the
training set; its ablation, Fig. 3, shows smaller holdouts work), so that the IL model costs a tenth of a full run.
"""
from __future__ import annotations

import torch

from .base import BatchSampler, Method, _check_ratio, keep, per_sample_values, ratio_or_keep

RATIO = 0.1             # n_b / n_B (official config: percent_train 0.1)
HOLDOUT_FRACTION = 0.1  # holdout size, as a share of the run's training set (ours; see above)


def il_setup(n: int, epochs: int, holdout_size=None, il_epochs=None) -> tuple[int, int]:
    """(holdout size, IL epochs) of a run over ``n`` training samples for ``epochs`` epochs: by default a tenth of n and
    the run's epochs. The IL model then costs holdout size x IL epochs backprops of the run's budget."""
    return (int(round(HOLDOUT_FRACTION * n)) if holdout_size is None else int(holdout_size),
            int(epochs if il_epochs is None else il_epochs))


class RhoLoss(BatchSampler):
    """[RHO-LOSS]: top n_b of each meta-batch by training loss minus irreducible loss."""

    version = 1

    def __init__(self, n, *, irreducible, ratio=None, keep_ratio=None, static_backprops: int = 0,
                 scoring_seconds: float = 0.0, steps=None, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        il = per_sample_values(irreducible, self.n, "irreducible losses")
        if int(static_backprops) != static_backprops or static_backprops < 0:
            raise ValueError(f"static_backprops must be a non-negative integer, got {static_backprops}")
        self.static_backprops, self.scoring_seconds = int(static_backprops), float(scoring_seconds)
        if keep_ratio is not None:
            if num_epochs is None:
                raise ValueError("RHO-LOSS with keep_ratio needs num_epochs (its IL model's backprops count in the budget)")
            spent = self.static_backprops / (self.n * int(num_epochs))
            _check_ratio("keep_ratio", keep_ratio)
            if float(keep_ratio) - spent <= 0:
                raise ValueError(f"keep_ratio={keep_ratio} is out of RHO-LOSS's reach: its irreducible-loss model alone "
                                 f"spends {spent:.3f} of full training's backprops")
            keep_ratio = float(keep_ratio) - spent
        self.ratio = ratio_or_keep(ratio, keep_ratio, RATIO)
        self._set_regime(steps)
        self.irreducible = il

    def _select(self, idx, losses, logits, targets):
        rho = losses.double() - self.irreducible[idx]
        pos = torch.topk(rho, max(1, int(round(self.ratio * len(idx))))).indices
        return pos, torch.ones(len(pos), dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------- method card

def regime(epochs: int) -> dict:
    """[RHO-LOSS] (official CIFAR config): n_b / n_B = 0.1, "fewer steps"; the IL model trained on a held-out tenth of
    the training set's size for the run's epochs (ours: the paper trains it on a holdout as large as the training set,
    with early stopping); its backprops count in the budget, so a keep_ratio rho sets n_b / n_B = rho - 0.1."""
    return dict(ratio=RATIO)


def outside(options: dict, epochs: int) -> str | None:
    size, il_epochs = il_setup(1000, epochs, None, options.get("il_epochs"))   # any n: the default holdout is its share
    il = size * il_epochs / (1000 * epochs)          # the IL model's share of the budget (default holdout)
    sel = float(options["keep_ratio"]) - il if "keep_ratio" in options else float(options.get("ratio", RATIO))
    if abs(sel - RATIO) > 1e-9 or "holdout_size" in options:
        return (f"outside [RHO-LOSS]'s regime: n_b / n_B = {sel:.3g} instead of {RATIO}"
                + (f" (keep_ratio {options['keep_ratio']} less the IL model's {il:.3g})" if "keep_ratio" in options else "")
                + (f", holdout of {options['holdout_size']}" if "holdout_size" in options else ""))
    return None


def prepare(ctx) -> dict:
    """The irreducible losses: an IL model trained (and cached) before training on a held-out split, unless given; its
    backprops go to the run's budget (``static_backprops``, counted by the engine in the first epoch's record)."""
    if "irreducible" in ctx.options:
        return {}
    size, il_epochs = il_setup(ctx.n, ctx.epochs, ctx.protocol.get("holdout_size"), ctx.protocol.get("il_epochs"))
    il, seconds = ctx.irreducible_losses(size, il_epochs)
    return dict(irreducible=il, static_backprops=size * il_epochs, scoring_seconds=seconds)


def probe(options, n, epochs) -> dict:
    """Placeholders for the irreducible losses, and the IL model's backprops as the engine will count them (the
    default holdout)."""
    o = {k: v for k, v in options.items() if k not in ("holdout_size", "il_epochs")}
    size, il_epochs = il_setup(n, epochs, None, options.get("il_epochs"))
    o.update(irreducible=[0.0] * n, static_backprops=size * il_epochs)
    return o


METHODS = {"rho_loss": Method(RhoLoss, "RHO-LOSS", "RHO-LOSS", budget=keep, own_budget=True, regime=regime,
                              outside=outside, prepare=prepare, probe=probe, protocol=("holdout_size", "il_epochs"))}
