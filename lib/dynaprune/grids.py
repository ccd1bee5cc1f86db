"""Method grids of the comparison notebooks: every method that saves backprops at the same
``keep_ratio`` (the expected share of samples backpropagated over the whole run, annealing and
warm-up epochs included), so methods are compared at equal budgets; the tables show the measured
share next to the target.

[Raju]'s methods run at its pruning period T_p = E / 20 and are compared with its own "random
dynamic" at the same T_p; [Omission]'s "Random" re-draws every epoch. A (method, keep_ratio) pair
out of the method's reach (e.g. KAKURENBO's schedule cannot hide 70% over a short run) is left
out, and `unreachable` says which and why.
"""
from __future__ import annotations

from .samplers import METHODS, card, make_sampler

REDUCE_EPOCHS = "reduce_epochs"   # [Omission] §5's Reducing Epoch: full data for keep_ratio of the epochs (not a sampler)


def ratio_methods() -> dict:
    """{method: its budget mapping (r, epochs, profile) -> options}: every method that takes a keep_ratio, from its card
    (`samplers.Method.budget`), in the registry's order."""
    return {m: c.budget for m, c in METHODS.items() if c.budget is not None}


def fixed_methods() -> dict:
    """{method: options} of the methods that a wide comparison runs once at their own budget (`samplers.Method.fixed`:
    full data, and methods whose paper sets the budget, e.g. InfoBatch's r = 0.5 and delta = 0.875)."""
    return {m: dict(c.fixed) for m, c in METHODS.items() if c.fixed is not None}


def own_budget() -> tuple:
    """The methods whose paper sets their own budget (a keep_ratio forced on them runs outside their regime, labelled)."""
    return tuple(m for m, c in METHODS.items() if c.own_budget)


def unreachable(name, opts, n_epochs) -> str | None:
    """Why ``name`` cannot run with ``opts`` over ``n_epochs`` epochs (None when it can): the sampler built over 100
    samples with its card's placeholders for static inputs (`samplers.Method.buildable`)."""
    try:
        make_sampler(name, 100, num_epochs=n_epochs, **card(name).buildable(dict(opts), 100, n_epochs))
    except ValueError as err:
        return str(err)
    return None


def comparison_configs(base, ratios, seeds, methods=None, profile=None):
    """All (method, keep_ratio, seed) configs within reach, plus Reducing Epoch (and scaled) at each
    ratio ([Omission] §5). ``methods``: only these (names; "reduce_epochs" for Reducing Epoch);
    ``profile``: the profile dict (EL2N's scoring protocol)."""
    E, P = base.epochs, (profile or {})
    skip = set(P.get("wide_skip", ()))       # methods whose runs this profile has not computed yet (its cache renders)
    if methods is None and skip:
        methods = [m for m in (*fixed_methods(), *ratio_methods(), REDUCE_EPOCHS) if m not in skip]
    out = []
    for seed in seeds:
        for name, opts in fixed_methods().items():
            if not methods or name in methods:
                out.append(base.replace(sampler=name, sampler_options=opts, seed=seed))
        for r in ratios:
            for name, f in ratio_methods().items():
                if (methods and name not in methods) or unreachable(name, f(r, E, P), E):
                    continue
                out.append(base.replace(sampler=name, sampler_options=f(r, E, P), seed=seed))
            if not methods or REDUCE_EPOCHS in methods:
                out.append(base.replace(sampler="full", epochs_scale=r, seed=seed))
                out.append(base.replace(sampler="full", epochs_scale=r, scale_lr=True, seed=seed))
    return out


def equal_seen_configs(base, r, seeds, methods=("ucb", "el2n"), profile=None):
    """[Raju] Fig. 5's protocol: pruning methods at keep ratio ``r`` trained for E / r epochs (their
    schedule stretched with them), so they backpropagate as many samples as full training for E."""
    E2, P = round(base.epochs / r), (profile or {})
    return [base.replace(sampler=m, sampler_options=card(m).budget(r, E2, P), epochs=E2, seed=s)
            for s in seeds for m in methods]


def comparison_sets(profile: str, lrs: dict | None = None) -> dict:
    """The run sets of notebook 05's single-budget comparison, both at the side setting (`profiles.side_config`: the
    base for a profile without one) on the side seeds, built by `side_config` (the fair protocol) at each sampler's
    rate in ``lrs`` (`study.side_lrs` of `tuning_cells` of the wide set; missing: the side setting's): ``wide``, every
    method at each of the profile's ``ratios``;
    ``seen``, UCB and EL2N at the smallest ratio under [Raju] Fig. 5's equal-samples-seen protocol. (The full setting's
    comparison is the budget curves, `curve_cells`.)"""
    from .profiles import get, side_seeds
    from .profiles import side_config as side_base
    P = get(profile)
    side = side_base(profile)
    on_side = lambda cs: [side_config(profile, c.sampler, c.options("sampler_options"), c.seed,
                                      (lrs or {}).get(c.sampler), epochs=c.epochs, epochs_scale=c.epochs_scale,
                                      scale_lr=c.scale_lr) for c in cs]
    seeds = side_seeds(profile, "05")
    return {"wide": on_side(comparison_configs(side, P["ratios"], seeds, profile=P)),
            "seen": on_side(equal_seen_configs(side, min(P["ratios"]), seeds, profile=P))}


def tuning_cells(configs) -> dict:
    """{sampler: the sampler options of its first config at full length (epochs_scale 1)}: the variant at which each
    sampler of a run set has its learning rate chosen (`study.side_lrs`)."""
    out = {}
    for c in configs:
        if c.epochs_scale == 1:
            out.setdefault(c.sampler, c.options("sampler_options"))
    return out


def fair_config(profile: str, method: str, keep_ratio: float | None = None, seed: int = 0, lr: float | None = None,
                **overrides):
    """One run of the fair protocol: the profile's base config (with ``overrides``), the shared recipe
    (`regimes.recipe`: 10% warm-up, drop_last), the profile's validation split (``fair["val_size"]``), image
    models in channels_last memory format (faster on the CPU; a no-op for MLPs), and ``method`` in its
    paper's regime (`regimes.regime`). ``keep_ratio`` sets the budget of methods that take one; given to a
    method whose paper sets its own budget (`own_budget`), it replaces the regime's budget and
    `regimes.outside` labels the run. ``method="reduce_epochs"``: full data for keep_ratio of the epochs. A
    ``val_size`` among ``overrides`` replaces the profile's (e.g. 0 for a set too small to split, whose runs take the
    rate tuned elsewhere). A profile's ``regime_options`` ({method: options}) join the regime's: options of a paper's
    regime that its card's defaults do not hold (v3's [Omission] as written, while the committed profile's runs keep
    the card's default). A profile's ``method_base`` ({method: base overrides}) sets what a method's protocol needs of
    the base under ``overrides`` (v3's [RHO-LOSS]: a training set that leaves its held-out split in the pool)."""
    from . import regimes
    from .profiles import base_config, get
    P = get(profile, check_device=False)      # building a config needs no GPU; running it does (`profiles.get`)
    base = base_config(profile, check_device=False, **{**P.get("method_base", {}).get(method, {}), **overrides})
    E = base.epochs
    # channels_last: the small CNN's training epoch in 0.73x the time on this CPU (interleaved runs; docs/speed.md)
    common = dict(seed=seed, lr=base.lr if lr is None else float(lr), channels_last=True,
                  val_size=overrides.get("val_size", P["fair"]["val_size"]), **regimes.recipe(E))
    if method == REDUCE_EPOCHS:
        if keep_ratio is None:
            raise ValueError("reduce_epochs needs keep_ratio (the share of the epochs it trains)")
        return base.replace(sampler="full", sampler_options={}, epochs_scale=keep_ratio, **common)
    m, opts = card(method), {}
    if keep_ratio is not None and m.budget is not None:
        opts.update(m.budget(keep_ratio, E, P))
    if keep_ratio is None or not m.own_budget:
        opts.update(regimes.regime(method, E))
        opts.update(P.get("regime_options", {}).get(method, {}))
    return base.replace(sampler=method, sampler_options=opts, **common)


def side_config(profile: str, method: str = "full", options: dict | None = None, seed: int = 0,
                lr: float | None = None, **overrides):
    """One run of a side study (notebooks 04, 06, 07, 08 and 05's wide set): ``method`` with sampler ``options`` at the side
    setting (`profiles.side_config`: the base, the profile's ``side`` overrides, then ``overrides``), on ``seed``, at
    ``lr`` (the method's rate from `study.side_lrs`; None: the base's).

    The run is the fair protocol's (`fair_config`): the validation split, the shared recipe, the method's paper regime
    filled in under ``options`` (a given option wins, e.g. an ablation's; a ``keep_ratio`` given to a method whose paper
    sets its own budget replaces the regime's budget and is labelled by `regimes.outside`; a ``period`` other than the
    regime's replaces its checkpoint schedule)."""
    from .profiles import get
    P = get(profile)
    options = dict(options or {})
    side = {**P["side"], **overrides}
    side_lr = side.pop("lr", None)          # a side setting's own default rate (v3's: the committed study's)
    c = fair_config(profile, method, keep_ratio=options.get("keep_ratio"), seed=seed, lr=side_lr if lr is None else lr, **side)
    filled = c.options("sampler_options")
    if "period" in options and int(options["period"]) != int(filled.get("period", options["period"])):
        filled.pop("checkpoints_per_epoch", None)   # [Raju]'s sub-epoch checkpoints need period 1: a given T_p replaces them
    return c.replace(sampler_options={**filled, **options})


def side_unreachable(profile: str, method: str, options: dict | None = None, **overrides) -> str | None:
    """Why a side study's run of ``method`` with ``options`` cannot run (None when it can): `unreachable` of
    the options `side_config` fills in (e.g. [ES]'s annealing epochs alone above the keep ratio at this run length)."""
    c = side_config(profile, method, options, **overrides)
    return unreachable(method, c.options("sampler_options"), c.epochs)


def curve_cells(profile: str, methods=None, reachable: bool = True, every: bool = False) -> list[tuple[str, float | None]]:
    """The cells (method, keep_ratio) of the profile's budget curves (``curves`` in `profiles`): each method
    at each ratio; full training, and the methods whose paper sets their own budget (`samplers.Method.own_budget`), once
    at it (keep_ratio None); of these, those whose card puts them on the curves at each ratio too
    (``curve_ratios``: [ES] and ESWP, whose b / B is a budget knob; RHO-LOSS) also at each ratio, outside their regime.
    ``methods``: these instead of the profile's list (e.g. a longer list being computed). ``reachable``: leave
    out the cells a method cannot run (`unreachable`: [ES]'s annealing epochs alone spend 0.1 of full training's
    backprops, so its keep ratio must exceed that); False: every cell. A profile whose ``curves`` set ``cells`` computes
    only part of this grid (a computation budget that does not fit it all): the claims' cells (`claims.curve_cells`)
    when ``cells["claims"]``, full training and the listed ``cells["extra"]``, in the grid's order; ``every``: the whole
    grid all the same (what was cut is the difference)."""
    from .claims import curve_cells as claim_cells
    from .profiles import get
    C = get(profile, check_device=False)["curves"]
    cells = []
    for m in (methods or C["methods"]):
        k = None if m == REDUCE_EPOCHS else card(m)
        if k is not None and k.on_curves_once:
            cells.append((m, None))
        if k is None or (k.budget is not None and k.curve_ratios):
            cells += [(m, float(r)) for r in C["ratios"]]
    if reachable:
        cfg = lambda m, r: curve_config(profile, m, r, seed=0, lr=1.0)
        cells = [(m, r) for m, r in cells if m == REDUCE_EPOCHS
                 or not unreachable(m, cfg(m, r).options("sampler_options"), cfg(m, r).epochs)]
    part = C.get("cells")
    if part and methods is None and not every:
        extra = [(m, None if r is None else float(r)) for m, r in part.get("extra", ())]
        off = [c for c in extra if c not in cells]
        if off:
            raise ValueError(f"profile {profile!r}: curves['cells']['extra'] lists {off}, "
                             f"not on its curves (methods x ratios, reachable)")
        keep = {("full", None), *extra}
        keep |= set(claim_cells(cells)) if part.get("claims") else set()
        cells = [c for c in cells if c in keep]
    return cells


def matched_cells(share: float) -> list[tuple[str, float]]:
    """The budget-matched controls of a run whose paper sets its own budget (InfoBatch, KAKURENBO): random pruning
    and Reducing Epoch at its measured backprop share, rounded to 0.01 (a cell's key; the share is a mean over
    seeds). A method that saves backprops only matters if it beats these at the same cost."""
    r = round(float(share), 2)
    if not 0 < r <= 1:
        raise ValueError(f"a measured backprop share must lie in (0, 1], got {share!r}")
    return [("random", r), (REDUCE_EPOCHS, r)]


def curve_config(profile: str, method: str, keep_ratio: float | None, seed: int, lr: float):
    """One run of the budget curves: `fair_config` at the profile's base setting with ``curves["overrides"]``."""
    from .profiles import get
    return fair_config(profile, method, keep_ratio=keep_ratio, seed=seed, lr=lr, **get(profile)["curves"]["overrides"])


def run_length_configs(profile: str) -> list:
    """The run-length study of a profile that chooses its run length on validation (``run_length``: full training at
    each of ``epochs``, each length its own warm-up and cosine, at each of ``lrs``, on ``seed``, evaluated every epoch):
    the evidence for the profile's ``epochs`` (notebook 05 shows the validation curves). Empty for a profile without one."""
    from .profiles import get
    R = get(profile, check_device=False).get("run_length")
    if not R:
        return []
    return [fair_config(profile, "full", seed=R["seed"], lr=lr, epochs=int(E), eval_every=1)
            for E in R["epochs"] for lr in R["lrs"]]


RAJU_INTERVENTIONS = {          # ours: each locates one candidate cause of class cycling
    "class_balanced": {"class_balanced": True},      # per-class budgets: the top k cannot drop a class
    "init_scores": {"init_models": 4},               # initial scores averaged over 4 random initialisations
    "warmup": {"warmup_full": 1},                    # one full-data epoch before the first checkpoint
}


# how a verdict row names [Raju]'s own schedule in its condition (notebook 06); the README's verdict table reads a [Raju]
# claim that did not hold elsewhere against the same claim in it (`readme.verdict_rows`: the study v3 verdict rule)
OWN_SCHEDULE = "[Raju]'s own schedule"


def raju_schedule_config(profile: str, method: str, keep_ratio: float, seed: int = 0, lr: float | None = None,
                         intervention: str | None = None, period: int | None = None, **overrides):
    """A run of [Raju]'s selectors in [Raju]'s own schedule (the study v3 side study of class cycling): the side setting
    under the fair protocol's validation split and drop_last, with `samplers.raju.own_schedule` (checkpoints as long as
    the paper's in steps, 20 per run, step decay by 5 at 30 / 60 / 80%, no warm-up; SGD momentum is Nesterov in the
    engine) in place of the shared cosine recipe. ``intervention``: one of `RAJU_INTERVENTIONS` (ours), or None.
    ``period``: a T_p other than the paper's length (the smoke profile's stand-in)."""
    if intervention is not None and intervention not in RAJU_INTERVENTIONS:
        raise ValueError(f"unknown intervention {intervention!r}; known: {', '.join(RAJU_INTERVENTIONS)}")
    from .samplers.raju import own_schedule
    from .train import train_indices
    base = side_config(profile, "full", seed=seed, lr=lr, **overrides)
    s = own_schedule(len(train_indices(base)), base.batch_size, period)
    opts = {"keep_ratio": float(keep_ratio), "period": s["period"], **RAJU_INTERVENTIONS.get(intervention, {})}
    return base.replace(sampler=method, sampler_options=opts, epochs=s["epochs"], schedule="multistep",
                        milestones=s["milestones"], gamma=s["gamma"], warmup_epochs=0.0, eval_every=s["period"])


def raju_schedule_runs(profile: str) -> dict:
    """The runs of a profile's [Raju] schedule study (``raju_schedule``: `raju_schedule_config` at each of its ``ratios``
    for each of its ``methods``, and UCB with each of its ``interventions`` at its ``intervention_ratios`` (default: the
    ``ratios``), on its ``seeds`` (the interventions: on its ``intervention_seeds``, default the ``seeds``) at its
    ``lr``, with its ``overrides`` of the side setting, and its ``period`` where it sets one): {(method, keep_ratio,
    intervention or None): [config per seed]}; empty for a profile without one."""
    from .profiles import get
    R = get(profile, check_device=False).get("raju_schedule")
    if not R:
        return {}
    at = lambda m, r, i: [raju_schedule_config(profile, m, r, seed=s, lr=R["lr"], intervention=i, period=R.get("period"),
                                               **R["overrides"])
                          for s in (R["seeds"] if i is None else R.get("intervention_seeds", R["seeds"]))]
    out = {}
    for r in R["ratios"]:
        out.update({(m, float(r), None): at(m, r, None) for m in R["methods"]})
        if r in R.get("intervention_ratios", R["ratios"]):
            out.update({("ucb", float(r), i): at("ucb", r, i) for i in R["interventions"]})
    return out


def es_table5(rho) -> dict:
    """[ES] Table 5's parts at keep ratio ``rho``: the loss alone, + annealing (A), + a single EMA (E,
    beta1 = beta2 = 0.9), + the decoupled EMA (DE, [ES] eq. 2.5); the last row is ES itself.
    Used by the ablations (clean data) and by the label-noise study (the paper's noisy setting)."""
    return {
        "Loss": {"keep_ratio": rho, "beta1": 0.0, "beta2": 0.0, "anneal": 0.0},
        "Loss + A": {"keep_ratio": rho, "beta1": 0.0, "beta2": 0.0},
        "Loss + E": {"keep_ratio": rho, "beta1": 0.9, "beta2": 0.9, "anneal": 0.0},
        "Loss + A + E": {"keep_ratio": rho, "beta1": 0.9, "beta2": 0.9},
        "Loss + DE": {"keep_ratio": rho, "anneal": 0.0},
        "Loss + A + DE (ES)": {"keep_ratio": rho},
    }
