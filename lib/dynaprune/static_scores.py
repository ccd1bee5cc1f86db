"""Static scores computed before training: EL2N ([EL2N]) and forgetting counts ([Forgetting]), by the
protocol of [Raju] §4, for the `el2n` and `forgetting` samplers.

The scorer trains plain full-data models. It does not import the engine: the engine
(`dynaprune.train.setup`) passes its plain loop in as ``fit(cfg, x, y, ds, after_epoch=None) -> model``
and its batched ``predict(model, x, cfg, device)``, so there is one training loop and no import circle.
Scores are cached as an analysis (`cache.memo("static_scores", ...)`): runs at several keep ratios
share one scoring, and the seconds reported are those measured when it was computed.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from . import cache
from .samplers.baselines import EL2N_EPOCHS, EL2N_MODELS   # [Raju] §4's scoring protocol, on EL2N's card
from .scores import output_grad_norm_ce

KINDS = ("el2n", "forgetting")


def _plain(c):
    """The plain full-data version of run config ``c`` that a static model is trained under (the memo's key)."""
    return c.replace(sampler="full", sampler_options=(), record_selection=False, time_budget=None,
                     final_signals=(), epochs_scale=1.0, scale_lr=False)


def _own_schedule(base, seed: int, epochs: int):
    """``base`` for a static model of ``epochs`` epochs on its own schedule: warm-up and milestones scaled with it."""
    f = epochs / base.epochs
    return base.replace(seed=seed, epochs=epochs, warmup_epochs=base.warmup_epochs * f,
                        milestones=tuple(ms * f for ms in base.milestones))


def static_scores(kind: str, c, x, y, ds, score_models: int = EL2N_MODELS, score_epochs: int = EL2N_EPOCHS, *,
                  fit, predict):
    """EL2N ([EL2N]: the mean over ``score_models`` independent models, each trained for ``score_epochs``
    epochs on its own schedule, of ||softmax - onehot||) or forgetting counts ([Forgetting]: correct ->
    incorrect transitions over a full run of the run's length; never-learned samples count as most
    forgotten) for the training tensors ``x, y`` of run config ``c``. Returns (scores, seconds spent)."""
    if kind not in KINDS:
        raise ValueError(f"unknown static score {kind!r}; known: {', '.join(KINDS)}")
    if int(score_models) < 1 or int(score_epochs) < 1:
        raise ValueError(f"score_models and score_epochs must be >= 1, got {score_models}, {score_epochs}")
    base = _plain(c)
    params = dict(kind=kind, base=base.to_dict(), n=len(x),
                  **(dict(models=int(score_models), epochs=int(score_epochs)) if kind == "el2n" else {}))
    out = cache.memo("static_scores", params, lambda: _compute(kind, base, x, y, ds, int(score_models),
                                                               int(score_epochs), fit, predict))
    return torch.as_tensor(out["scores"]), float(out["seconds"])


def _compute(kind, base, x, y, ds, models, epochs, fit, predict):
    t0 = time.perf_counter()
    if kind == "el2n":
        tot = torch.zeros(len(x))
        for m in range(models):            # each scoring model on its own schedule
            cfg = _own_schedule(base, base.seed * 100 + m + 1, epochs)
            r = fit(cfg, x, y, ds)
            tot += output_grad_norm_ce(predict(r, x.to(cfg.device), cfg, torch.device(cfg.device)),
                                       y.to(cfg.device)).cpu()
        return dict(scores=(tot / models).numpy(), seconds=np.array(time.perf_counter() - t0))
    cfg = base.replace(seed=base.seed * 100 + 1)
    prev = torch.zeros(len(x), dtype=torch.bool)
    forgot = torch.zeros(len(x))
    learned = torch.zeros(len(x), dtype=torch.bool)

    def after_epoch(model):
        nonlocal prev
        ok = predict(model, x.to(cfg.device), cfg, torch.device(cfg.device)).argmax(1).cpu() == y.cpu()
        forgot.add_((prev & ~ok).float())
        learned.logical_or_(ok)
        prev = ok
    fit(cfg, x, y, ds, after_epoch)
    forgot[~learned] = float("inf")
    scores = torch.nan_to_num(forgot, posinf=float(forgot[learned].max() + 1) if learned.any() else 1.0)
    return dict(scores=scores.numpy(), seconds=np.array(time.perf_counter() - t0))


def irreducible_losses(c, x_hold, y_hold, x, y, ds, il_epochs: int, *, fit, predict):
    """[RHO-LOSS]'s irreducible losses of the training tensors ``x, y`` of run config ``c``: the cross-entropy under a
    model of the run's architecture trained (the engine's plain full-data loop, ``fit``) for ``il_epochs`` epochs on the
    held-out tensors ``x_hold, y_hold``, scored in eval mode (``predict``). Cached as an analysis (runs at several
    keep ratios share one IL model). Returns (losses, seconds spent)."""
    if int(il_epochs) < 1:
        raise ValueError(f"il_epochs must be >= 1, got {il_epochs}")
    base = _plain(c)
    params = dict(kind="irreducible_loss", base=base.to_dict(), n=len(x), holdout=len(x_hold), epochs=int(il_epochs))

    def compute():
        t0 = time.perf_counter()
        cfg = _own_schedule(base, base.seed * 100 + 77, int(il_epochs))
        model = fit(cfg, x_hold, y_hold, ds)
        out = predict(model, x.to(cfg.device), cfg, torch.device(cfg.device))
        il = torch.nn.functional.cross_entropy(out.float(), y.to(cfg.device), reduction="none").cpu()
        return dict(scores=il.numpy(), seconds=np.array(time.perf_counter() - t0))
    out = cache.memo("static_scores", params, compute)
    return torch.as_tensor(out["scores"]), float(out["seconds"])
