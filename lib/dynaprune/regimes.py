"""Each method in its paper's regime, and one training recipe for the study.

`regime(method, epochs)` gives the sampler options that run ``method`` as its paper (or its public code)
does; `outside(method, options, epochs)` says, in a label a table or figure can carry, how a run departs
from it (``None`` inside). A budget outside a method's regime stays possible: it is labelled, never
silently mixed with in-regime runs. `RECIPE` is the training recipe shared by every method of the fair
protocol, close to [Omission] §5's.

Where a paper leaves a value open, the entry says so and says what we chose.
"""
from __future__ import annotations

# [Omission] §5: "10% warm-up", "drop_last=True" (cosine from the maximum learning rate, SGD momentum 0.9).
RECIPE = dict(warmup_fraction=0.1, drop_last=True, schedule="cosine")

RAJU_CHECKPOINTS = 20          # [Raju] §4: 200 epochs with T_p = 10, i.e. 20 checkpoints per run
RAJU = ("uncertainty_ema", "epsilon_greedy", "ucb", "random_dynamic")


def regime(method: str, epochs: int) -> dict:
    """Sampler options of ``method``'s paper regime for a run of ``epochs`` epochs.

    - [InfoBatch]: prune ratio r = 0.5 and annealing from delta = 0.875 of the run (the poster leaves both
      open; the official code's defaults); no keep_ratio: the budget is what r gives (about 0.64 of full).
    - KAKURENBO (public code): the maximum hidden fraction F = 0.3, stepping down with the schedule, and the
      learning rate scaled by 1 / (1 - F_e) of the *scheduled* fraction.
    - [OnlineIS] §5 / Alg. 1: alpha = 0.3, epsilon = 1e-4 added to q each epoch, a uniform first epoch
      (the sampler's defaults); online pruning with K = 4 (CIFAR).
    - [ES] §4: b / B = 0.25, annealing the first and last 5% of the run (the sampler's defaults).
    - [Raju] §4: T_p = 10 of 200 epochs, 20 checkpoints per run: a period of epochs // 20 epochs; a run of
      fewer than 20 epochs checkpoints ceil(20 / epochs) times per epoch (sub-epoch periods, each checkpoint
      scoring the whole training set as [Raju] does, and training on its share of the epoch).
    - [SeTa] (official CIFAR script, its "lossless" setting `cifar.sh SeTa 0.1 5 0.9`): prune ratio 0.1, 5 loss groups,
      a window of 0.9 of them, partial annealing from delta = 0.875 (the sampler's defaults).
    - [IES] (official code): threshold δ = 1e-3 (10 classes), a moving average over 3 epochs, k = 1 (the defaults).
    - [RHO-LOSS] (official CIFAR config): n_b / n_B = 0.1, "fewer steps"; the IL model trained on a held-out tenth of
      the training set's size for the run's epochs (ours: the paper trains it on a holdout as large as the training
      set, with early stopping); its backprops count in the budget, so a keep_ratio rho sets n_b / n_B = rho - 0.1.
    - [RS2]: without replacement, at the study's keep_ratio (a free budget knob): an empty dict.
    Methods not listed (Omission, random, full, Reducing Epoch, ...) take the study's keep_ratio as their
    paper does (a free budget knob): an empty dict.
    """
    if method == "infobatch":
        return dict(r=0.5, delta=0.875)
    if method == "kakurenbo":
        return dict(max_fraction=0.3, lr_rule="scheduled")
    if method in ("online_is",):
        return dict(alpha=0.3, eps=1e-4)
    if method == "online_prune":
        return dict(prune_K=4.0)
    if method in ("es", "eswp"):
        return dict(ratio=0.25)
    if method == "seta":
        return dict(prune_ratio=0.1, num_groups=5, window_scale=0.9, delta=0.875)
    if method == "ies":
        return dict(threshold=1e-3)
    if method == "rho_loss":
        return dict(ratio=0.1)
    if method in RAJU:
        if epochs >= RAJU_CHECKPOINTS:
            return dict(period=max(1, epochs // RAJU_CHECKPOINTS))
        return dict(period=1, checkpoints_per_epoch=-(-RAJU_CHECKPOINTS // epochs))
    return {}


def outside(method: str, options: dict, epochs: int) -> str | None:
    """How a run of ``method`` with sampler ``options`` over ``epochs`` departs from its paper's regime,
    as a label (``None`` when it is inside)."""
    options = dict(options or {})
    if method == "infobatch" and "keep_ratio" in options:
        return (f"outside [InfoBatch]'s regime: keep_ratio {options['keep_ratio']} forces the prune ratio r "
                "per epoch (up to 0.9: weights up to 10x) instead of r = 0.5")
    if method == "infobatch" and float(options.get("r", 0.5)) != 0.5:
        return f"outside [InfoBatch]'s regime: r = {options['r']} instead of 0.5 (weights 1 / (1 - r))"
    if method == "kakurenbo":
        if "keep_ratio" in options:
            return (f"outside KAKURENBO's regime: keep_ratio {options['keep_ratio']} solves the hidden fraction F "
                    "(0.77 at 0.5 over 20 epochs) instead of F = 0.3")
        if options.get("lr_rule", "realised") != "scheduled":
            return "outside KAKURENBO's regime: learning rate scaled by the realised, not the scheduled, hidden share"
    if method in RAJU:
        period = int(options.get("period", 10 if method != "random" else 1))
        checkpoints = -(-epochs // period) * int(options.get("checkpoints_per_epoch", 1))
        if checkpoints < RAJU_CHECKPOINTS:
            return (f"outside [Raju]'s regime: {checkpoints} checkpoints per run (period {period} of {epochs} "
                    f"epochs) instead of {RAJU_CHECKPOINTS}")
    if method == "seta":
        paper = dict(prune_ratio=0.1, num_groups=5, window_scale=0.9, delta=0.875)
        off = {k: options[k] for k in paper if k in options and float(options[k]) != paper[k]}
        if off:
            return "outside [SeTa]'s regime: " + ", ".join(f"{k} = {v} instead of {paper[k]}" for k, v in off.items())
    if method == "rho_loss":
        from .samplers.rho_loss import RATIO, il_setup
        size, il_epochs = il_setup(1000, epochs, None, options.get("il_epochs"))   # any n: the default holdout is its share
        il = size * il_epochs / (1000 * epochs)          # the IL model's share of the budget (default holdout)
        sel = float(options["keep_ratio"]) - il if "keep_ratio" in options else float(options.get("ratio", RATIO))
        if abs(sel - RATIO) > 1e-9 or "holdout_size" in options:
            return (f"outside [RHO-LOSS]'s regime: n_b / n_B = {sel:.3g} instead of {RATIO}"
                    + (f" (keep_ratio {options['keep_ratio']} less the IL model's {il:.3g})" if "keep_ratio" in options else "")
                    + (f", holdout of {options['holdout_size']}" if "holdout_size" in options else ""))
    if method == "ies" and float(options.get("threshold", 1e-3)) != 1e-3:
        return f"outside [IES]'s regime: threshold {options['threshold']} instead of 1e-3"
    if method in ("es", "eswp") and "keep_ratio" in options:
        return f"outside [ES]'s regime: keep_ratio {options['keep_ratio']} sets b / B instead of 0.25"
    return None


def recipe(epochs: int) -> dict:
    """RunConfig fields of the shared recipe for a run of ``epochs`` epochs: linear warm-up over 10% of
    the run, then cosine; drop_last (no tiny last batch carrying large weights)."""
    return dict(schedule=RECIPE["schedule"], warmup_epochs=RECIPE["warmup_fraction"] * epochs,
                drop_last=RECIPE["drop_last"])
