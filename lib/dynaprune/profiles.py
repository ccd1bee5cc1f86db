"""The study's profiles, in one place: what each notebook trains under smoke / quick / cpu / v3 / gpu.

- smoke: seconds per notebook (tests): MNIST-1D, a small MLP, 3 epochs, one seed.
- quick: the cold run on 2 CPU cores (`make study PROFILE=quick`, target from an empty cache <= 20 min):
  Fashion-MNIST, first 10k training samples, MLP 784-256-256-10, 8 epochs, 2 seeds.
- cpu: the study before v3 (committed until 2026-12-07; its curve runs are in the git history before the switch):
  full Fashion-MNIST, small CNN without batch norm or augmentation, 20 epochs, for the budget curves of 05
  (``curves``, 5 paired seeds); every method of 05's single-budget comparison and the side studies (04, 06, 07, 08:
  selection distributions, ablations, label noise, online pruning) on the ``side`` setting, 3 seeds of a 20k subset
  for 10 epochs.
- v3: the committed profile (`make study`): the papers' recipe at the cpu scale (batch norm, augmentation, 40 epochs
  chosen on validation), ten paired seeds for the curves' claim cells, [Raju] in its own schedule, and the side
  studies on cpu's side setting (its side runs are v3's).
- gpu: [Omission] §5's setting: CIFAR-10 ResNet-18, 200 epochs, batch 128, SGD momentum 0.9,
  cosine from 0.1 with 10% warm-up, wd 5e-4, drop_last, augmentation, four seeds (needs CUDA and the data).
Side studies: notebooks 04, 06, 07, 08 and 05's single-budget comparison build their runs with `grids.side_config` on the side setting
(`side_config`: the base plus the profile's ``side`` overrides) on ``side_seeds``; for smoke, quick and gpu these
equal the base and seeds. They run the fair protocol (validation split, shared recipe, paper regimes, each method's
learning rate chosen on validation by `study.side_lrs` with ``side_tuning``'s grid, default ``curves``').
EL2N's scoring ([Raju] §4: 10 models x 20 epochs) is scaled per profile (el2n_models, el2n_epochs).
``fair``: the fair protocol's settings (`grids.fair_config`): ``val_size``, the class-stratified validation
split held out of training, on which each method's learning rate is chosen (`tuning.choose_lr`).
``curves``: the budget curves of 05 (`grids.curve_cells`): ``methods`` at each of ``ratios`` (full training
once), each cell's learning rate chosen from ``grid`` on the ``tuning_seeds`` (disjoint from ``seeds``, on
which test accuracy is reported), the grid grown by a step beyond an edge where the choice lands on it, up to
``extend`` times (`tuning.tune_then_evaluate`), ``overrides`` of the base setting; ``cells``: the part of the grid
computed (`grids.curve_cells`; the rest is cut), ``robustness``: the learning-rate checks of the claims' verdicts
(`study.robustness_cells`: ``claims``, those checked, default all; ``shared_rate``: also at the base rate, default
True).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import RunConfig

_ROOT = Path(__file__).resolve().parents[2]

# The profile whose results are committed (data/results/) and that `make study` renders; the
# render test in `make test` renders every notebook of it with computing forbidden.
COMMITTED = "v3"

PROFILES = {
    "smoke": dict(
        base=dict(dataset="mnist1d", dataset_options={"num_samples": 1500}, model="mlp",
                  model_options={"hidden": [64, 64]}, epochs=3, batch_size=32, lr=0.05, schedule="cosine",
                  device="cpu"),
        seeds=[0], ratios=[0.5], sweep_epochs=4, variance_n=300, toy_epochs=(1, 2, 3),
        wide_skip=("rho_loss",),   # no held-out split outside the training set (MNIST-1D, no train_subset)
        selection_epochs=4, per_class=60, noise_rates=[0.4], image_size=16, image_epochs=2,
        # [Raju]'s schedule study in seconds: T_p = 1 epoch (not the paper's length), 20 checkpoints, one seed
        raju_schedule=dict(ratios=[0.3], seeds=[0], lr=0.05, methods=["ucb", "random_dynamic"],
                           interventions=["class_balanced", "init_scores", "warmup"], overrides={}, period=1),
        el2n_models=2, el2n_epochs=2, fair=dict(val_size=300),
        curves=dict(methods=["full", "reduce_epochs", "random", "omission", "infobatch", "rs2", "seta", "ies"],
                    ratios=[0.3, 0.5],
                    # batch 16: with drop_last, a batch of 32 of 1,200 samples loses up to 2.5% of a pruned epoch
                    grid=[0.025, 0.05, 0.1], extend=1, tuning_seeds=[100],
                    overrides=dict(eval_every=3, batch_size=16))),
    "quick": dict(
        base=dict(dataset="fashion_mnist", train_subset=10_000, model="mlp",
                  model_options={"hidden": [256, 256]}, epochs=8, batch_size=128, lr=0.05,
                  schedule="cosine", device="cpu"),
        seeds=[0, 1], ratios=[0.3, 0.5], sweep_epochs=8, variance_n=2000, toy_epochs=(1, 10, 50),
        selection_epochs=12, per_class=1000, noise_rates=[0.1, 0.4], image_size=48, image_epochs=30,
        el2n_models=10, el2n_epochs=20,    # [Raju] §4's EL2N protocol in full (an MLP epoch is cheap)
        fair=dict(val_size=2000),
        side_tuning=dict(grid=[0.025, 0.05, 0.1, 0.2], extend=1, tuning_seeds=[100]),   # as cpu's
        curves=dict(methods=["full", "reduce_epochs", "random", "omission", "ucb", "rs2", "seta", "ies", "rho_loss"],
                    ratios=[0.1, 0.3, 0.5],
                    grid=[0.025, 0.05, 0.1, 0.2], extend=2, tuning_seeds=[100, 101], overrides=dict(eval_every=8))),
    # Full Fashion-MNIST, small CNN (106k parameters), 20 epochs: 3.4 s of training per full epoch on 2 threads
    # (`python -m dynaprune.bench`). The budget curves (05) run there on 5 paired seeds; every method (24 at
    # keep_ratio 0.5) runs on the side setting on 3 (24 x 3 full-setting runs would cost more than the curves).
    "cpu": dict(
        base=dict(dataset="fashion_mnist", model="small_cnn", epochs=20, batch_size=128, lr=0.05,
                  schedule="cosine", device="cpu", eval_every=2),
        seeds=[0, 1, 2, 3, 4], ratios=[0.5],
        # side studies: a 20k subset, 10 epochs, evaluated at epochs 5 and 10 (a sixth of a headline run's training)
        side=dict(train_subset=20_000, epochs=10, eval_every=5), side_seeds=[0, 1, 2],
        # the side studies' learning rates (`study.side_lrs`): the curves' grid on one tuning seed (the curves use two;
        # the side studies' 3 seeds of 10 short epochs buy the compute that a second seed would take), grown once past an edge
        side_tuning=dict(grid=[0.025, 0.05, 0.1, 0.2], extend=1, tuning_seeds=[100]),
        # the field since the five papers joins 05's single-budget comparison with the study's recompute (its runs
        # are not in the committed cache yet); smoke and quick run them
        wide_skip=("rs2", "seta", "ies", "rho_loss", "omission_bc"),
        sweep_epochs=10, variance_n=5000, toy_epochs=(1, 20, 100),
        selection_epochs=10, per_class=1000, noise_rates=[0.4], image_size=96, image_epochs=100,
        el2n_models=4, el2n_epochs=5,       # scaled: 10 x 20 CNN epochs would be 10 runs of the study
        fair=dict(val_size=5000),
        # the budget curves of 05 (issue: accuracy against keep_ratio, each method's learning rate chosen on
        # validation): the full setting, evaluated once at the end (the curves need final accuracies only).
        # Methods join the list as their runs are computed (each cell: 4 learning rates x 2 tuning seeds, then 5 seeds).
        curves=dict(methods=["full", "reduce_epochs", "random", "omission", "ucb", "random_dynamic", "el2n", "infobatch",
                             "es", "selective_backprop", "kakurenbo"],
                    ratios=[0.1, 0.2, 0.3, 0.5], grid=[0.025, 0.05, 0.1, 0.2], extend=2, tuning_seeds=[100, 101],
                    overrides=dict(eval_every=20))),
    # Study v3 (the issue "Study v3"), the committed profile since 2026-12-07 (computed over several sessions, about
    # 15 hours of this machine: `python -m dynaprune.study --profile v3 --ledger`). The papers' recipe at the cpu
    # scale: batch norm in the small CNN and augmentation (random crop with padding 4, horizontal flip), cosine from
    # 0.1 with 10% warm-up ([Omission] §5's shape), 40 epochs: full training's validation accuracy at 10 / 20 / 40 /
    # 60 epochs (``run_length``, notebook 05, one seed per length) rises by 1.3 / 0.6 points from 10 to 20 to 40
    # epochs at lr 0.1, and from 40 to 60 gains 0.34 points at lr 0.1 (test -0.04) and 0.68 at lr 0.025 (test +0.35), both within the noise of a difference of two runs on 5,000
    # validation images (1.96 x sqrt(2) x 0.37 = 1.0 point: `report.run_length_table`), as is 20 -> 40 (+0.5 / +0.6);
    # 10 -> 20 gains clearly. The ten-seed check of 40 against 20: Reducing Epoch at keep ratio 0.5 (20 epochs' data,
    # its own cosine) is below full training on validation by 0.36 [0.14, 0.59] points, paired over the ten seeds (each
    # at its chosen rate). 60 epochs would cost 1.5x for a gain not shown. Ten paired seeds; one tuning
    # seed per cell (the compute of a second
    # buys three evaluation seeds), a grid of 3 rates spanning 4x grown once past an edge. Evaluated every 4 epochs
    # (time-to-accuracy, [RS2]; an evaluation costs 0.75 s, 7% of a pruned run at every 2).
    "v3": dict(
        base=dict(dataset="fashion_mnist", model="small_cnn", model_options={"bn": True}, augment=True, epochs=40,
                  batch_size=128, lr=0.1, schedule="cosine", device="cpu", eval_every=4),
        seeds=list(range(10)), ratios=[0.5],
        # the side studies keep the committed study's side setting (no batch norm, no augmentation, a 20k subset, 10
        # epochs, its tuning), so its side runs stay valid and seeds are added where a claim needs them; the headline
        # curves and [Raju]'s own schedule carry the recipe
        side=dict(train_subset=20_000, epochs=10, eval_every=5, model_options={}, augment=False, lr=0.05),
        # each side study's paired seeds: the committed study's three (its runs; a side run takes about 19 s here). Their
        # verdicts need more to detect 0.5 points with 80% power at the spread those three seeds showed (`python -m
        # dynaprune.report seeds-needed --profile cpu`, before the switch: largest need within reach per notebook, 04:
        # none within 200 seeds (its rows are collapses), 05: 26, 06: 167, 07: 76, 08: 5), and the 16 hours
        # end first (the claims' cells took about 14): five seeds for 05 and 06 (once planned) would reach none of those
        # needs, so every side study stays at three and says which verdicts its seeds cannot decide (docs/setup.md)
        side_seeds=[0, 1, 2],
        side_tuning=dict(grid=[0.025, 0.05, 0.1, 0.2], extend=1, tuning_seeds=[100]),
        # [Raju] in its own schedule (`grids.raju_schedule_config`): the side subset with the recipe's network and data,
        # the paper's learning rate 0.1 (with its step decay), UCB and random dynamic pruning at keep ratio 0.2, where
        # [Raju]'s claim did not hold on the curves, on three seeds (a run is 500 epochs of 20k samples at keep ratio
        # 0.2: about 5 min), and UCB with each intervention (ours, a diagnostic of class cycling read run by run) on the
        # first seed; keep ratio 0.3, and the interventions' other seeds, are cut to fit the issue's 16 hours
        # (docs/setup.md)
        raju_schedule=dict(ratios=[0.2], seeds=[0, 1, 2], lr=0.1, methods=["ucb", "random_dynamic"],
                           interventions=["class_balanced", "init_scores", "warmup"], intervention_seeds=[0],
                           overrides=dict(model_options={"bn": True}, augment=True)),
        sweep_epochs=10, variance_n=5000, toy_epochs=(1, 20, 100),
        selection_epochs=10, per_class=1000, noise_rates=[0.4], image_size=96, image_epochs=100,
        el2n_models=4, el2n_epochs=5,
        fair=dict(val_size=5000),
        # [Omission] as written: the paper's S starts at 1, uncorrected (the card's default since v3; stated here so that
        # every v3 Omission run's config says so), our bias correction its own row "omission_bc"
        regime_options={"omission": {"bias_correction": False}},
        # [RHO-LOSS]'s irreducible-loss model learns from a held-out split outside the validation split and the run's
        # training set (`train.holdout_indices`), a tenth of the training set's size (`samplers.rho_loss`): of the
        # 55,000 images the validation split leaves, its runs train on the first 50,000 and hold out the other 5,000
        # (the paper's CIFAR runs split the training set likewise); its keep ratio is a share of its own 50,000
        method_base={"rho_loss": dict(train_subset=50_000)},
        # the run length, chosen on validation (full training, seed 0, each length its own cosine, evaluated every epoch)
        run_length=dict(epochs=[10, 20, 40, 60], lrs=[0.025, 0.1], seed=0),
        curves=dict(methods=["full", "reduce_epochs", "random", "omission", "omission_bc", "ucb", "random_dynamic", "el2n",
                             "rs2", "rho_loss", "infobatch", "es", "seta", "ies", "selective_backprop", "kakurenbo"],
                    ratios=[0.1, 0.2, 0.3, 0.5], grid=[0.05, 0.1, 0.2], extend=1, tuning_seeds=[100],
                    overrides=dict(eval_every=4),
                    # the whole grid (49 reachable cells; with the [Raju] schedule and the learning-rate robustness
                    # runs, 830 runs at the 1.8 minutes a run has averaged) is about 25 hours of this machine, over the
                    # issue's 16: the curves compute the claims' cells (with the budget-matched controls of the methods
                    # that set their own budget; about 13.5 hours measured), full training and our bias-corrected
                    # Omission at 0.5 (its labelled row); the rest is cut, Selective Backprop at 0.1 and random pruning
                    # at 0.1 and 0.3 among it (`study --ledger` lists it; docs/setup.md gives the order)
                    cells=dict(claims=True, extra=[("omission_bc", 0.5)]),
                    # the learning-rate checks (`study.robustness_cells`) are cut: ten seeds of every claim cell at
                    # each rate validation cannot tell apart from its choice is 190 runs, about 6 hours; every verdict
                    # reads "not checked" and names the checks not run
                    robustness=dict(claims=[], shared_rate=False))),
    "gpu": dict(
        # [Omission] §5: 200 epochs, batch 128, cosine from 0.1, wd 5e-4, 10% warm-up, drop_last=True
        base=dict(dataset="cifar10", model="resnet18", epochs=200, batch_size=128, lr=0.1, schedule="cosine",
                  warmup_epochs=20.0, drop_last=True, weight_decay=5e-4, momentum=0.9, augment=True, device="cuda"),
        wide_skip=("rho_loss",),   # CIFAR-10's training set is all used: no held-out split for RHO-LOSS's IL model
        seeds=[0, 1, 2, 3], ratios=[0.3, 0.5, 0.7], sweep_epochs=200, variance_n=5000, toy_epochs=(1, 20, 100),
        selection_epochs=200, per_class=1000, noise_rates=[0.1, 0.4], image_size=256, image_epochs=500,
        el2n_models=10, el2n_epochs=20, fair=dict(val_size=5000),
        curves=dict(methods=["full", "reduce_epochs", "random", "omission", "ucb", "es", "el2n"],
                    ratios=[0.1, 0.2, 0.3, 0.5], grid=[0.025, 0.05, 0.1, 0.2], extend=2, tuning_seeds=[100, 101],
                    overrides=dict(eval_every=20))),
    # The study's first GPU runs (`python -m dynaprune.gpu_check`, about 8 minutes of one GPU): [Omission] §5's recipe
    # (augmentation, SGD momentum 0.9, wd 5e-4, 10% warm-up + cosine from 0.1, drop_last) with ResNet-18 in its CIFAR
    # form (3x3 stem, one input channel) on the first 30,000 Fashion-MNIST training images (what travels to a GPU
    # machine: `dynaprune.data.pack_fashion_mnist`), 15 epochs; full training, random pruning, InfoBatch (its regime),
    # Omission and UCB (its 20-checkpoint regime) at keep ratio 0.3, seeds run in order while the time budget lasts.
    # The learning rate is the recipe's, not chosen on validation (no time for a grid): labelled so.
    "gpu-mini": dict(
        base=dict(dataset="fashion_mnist", dataset_options={"train_limit": 30_000}, model="resnet18", epochs=15,
                  batch_size=128, lr=0.1, schedule="cosine", weight_decay=5e-4, momentum=0.9, augment=True,
                  device="cuda", eval_every=15),
        seeds=[0, 1, 2], ratios=[0.3], fair=dict(val_size=0),
        gpu_check=dict(methods={"full": None, "random": 0.3, "infobatch": None, "omission": 0.3, "ucb": 0.3},
                       budget_s=400)),
}


def get(profile: str, check_device: bool = True) -> dict:
    """The profile's parameters (``side`` and ``side_seeds`` filled in: the base and the seeds unless the
    profile sets them; one notebook's: `side_seeds`); a GPU profile on a machine without CUDA is refused clearly
    (``check_device``: reading its cached runs needs no GPU)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    p = {"side": {}, **PROFILES[profile]}
    p.setdefault("side_seeds", p["seeds"])
    if check_device and p["base"]["device"].startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"profile {profile!r} needs a CUDA GPU and this machine has none "
                           "(torch.cuda.is_available() is False). Run smoke/quick/cpu here, or run this "
                           "profile on a GPU machine; its results join the same cache.")
    return {**p, "name": profile}


def base_config(profile: str, check_device: bool = True, **overrides) -> RunConfig:
    """The profile's base RunConfig with ``overrides``."""
    return RunConfig(**{**get(profile, check_device)["base"], **overrides})


def side_seeds(profile: str, notebook: str) -> list[int]:
    """The evaluation seeds of side study ``notebook`` ("04"-"08"): the profile's ``side_seeds``, a list for every
    side study or a dict {notebook: seeds} (a notebook it does not name: the profile's ``seeds``)."""
    p = get(profile, check_device=False)
    s = p["side_seeds"]
    if isinstance(s, dict):
        s = s.get(str(notebook)[:2], p["seeds"])
    return [int(x) for x in s]


def side_config(profile: str, **overrides) -> RunConfig:
    """The base RunConfig of the side studies (04, 06, 07, 08): the base, the profile's ``side``
    overrides, then ``overrides``."""
    p = get(profile)
    return RunConfig(**{**p["base"], **p["side"], **overrides})


def figures_dir(profile: str | None = None) -> Path:
    """The one place figures go: $DYNAPRUNE_FIGURES, else <repo>/figures for the committed profile
    (and when no profile is named), else <repo>/figures/<profile>/ (git-ignored), so that running
    another profile never overwrites the committed figures."""
    if "DYNAPRUNE_FIGURES" in os.environ:
        d = Path(os.environ["DYNAPRUNE_FIGURES"])
    else:
        d = _ROOT / "figures" if profile in (None, COMMITTED) else _ROOT / "figures" / profile
    d.mkdir(parents=True, exist_ok=True)
    return d
