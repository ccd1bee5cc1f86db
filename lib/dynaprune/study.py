"""The papermill study runner and the executor notebooks use for their runs.

    python -m dynaprune.study --profile smoke|quick|cpu|gpu [--only NAME ...] [--jobs N]
    python -m dynaprune.study --curves ucb es [--jobs N]    # compute 05's budget curves of these methods ahead
    python -m dynaprune.study --profile v3 --claims [--jobs N]   # the claims' cells first (a long computation's order)
    python -m dynaprune.study --profile v3 --ledger          # where a long computation stands (cache only)


runs `notebooks/NN_*.ipynb` in order with the profile as a parameter, writing executed copies to
`notebooks/executed/` and figures to `figures/` for the committed profile, `figures/<profile>/` for
the others (or $DYNAPRUNE_FIGURES). Inside a notebook,
`runs(configs)` returns RunResults, training only what the cache lacks: in local processes
(``--jobs``), or on a SLURM cluster through submitit (``DYNAPRUNE_EXECUTOR=submitit``; submitit's
local executor makes that path testable on one machine).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from . import cache, claims
from .train import RunConfig, run

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
EXECUTORS = ("local", "submitit")
# papermill's kernels log nothing a reader can act on: "Kernel is running over TCP without encryption" (a warning), and
# "ERROR | KeyboardInterrupt caught in kernel" when the kernel is shut down after its last cell (harmless, read as a
# failure). A cell that fails still fails the run: papermill raises it with its traceback.
KERNEL_QUIET = ["--IPKernelApp.log_level=CRITICAL"]


def _run_one(config: RunConfig, threads: int | None = None):
    import torch
    if threads:
        torch.set_num_threads(threads)
    run(config)
    return cache.key(config)


def runs(configs, jobs: int | None = None, executor: str | None = None, progress: bool = False,
         cache_only: bool = False):
    """RunResults for ``configs`` (cache first; the missing ones trained by the executor). ``cache_only``: refuse
    (`cache.CacheMiss`) instead of training, as ``DYNAPRUNE_CACHE_ONLY=1`` does for every caller."""
    configs = list(configs)
    jobs = int(jobs or os.environ.get("DYNAPRUNE_JOBS", 1))
    executor = executor or os.environ.get("DYNAPRUNE_EXECUTOR", "local")
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    todo = [c for c in dict.fromkeys(configs) if cache.load(c) is None]
    if todo:
        cache.refuse_miss(f"{len(todo)} of the {len(configs)} runs asked for, e.g. {cache.key(todo[0])}: {todo[0]}",
                          force=cache_only)
    if todo:
        if executor == "submitit":
            import submitit
            ex = submitit.AutoExecutor(folder=os.environ.get("DYNAPRUNE_SUBMITIT_FOLDER", str(ROOT / "data" / "submitit")),
                                       cluster=os.environ.get("DYNAPRUNE_SUBMITIT_CLUSTER"))
            ex.update_parameters(timeout_min=int(os.environ.get("DYNAPRUNE_TIMEOUT_MIN", 600)))
            for j in [ex.submit(_run_one, c) for c in todo]:
                j.result()
        elif jobs > 1 and len(todo) > 1:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                list(pool.map(_run_one, todo, [threads] * len(todo)))
        else:
            from tqdm import tqdm
            for c in tqdm(todo, disable=not progress, desc="runs"):
                run(c)
    out = []
    for c in configs:
        r = cache.load(c)
        if r is None:  # e.g. a run whose cache write failed: compute here, and say so loudly if it persists
            r = run(c)
        out.append(r)
    return out


def curve_results(profile: str, methods=None, jobs: int | None = None, cache_only: bool = False, cells=None) -> dict:
    """05's budget curves: `tuning.tune_then_evaluate` over `grids.curve_cells` (``methods``, or the profile's
    ``curves["methods"]``) with the profile's grid and seeds; then, for each method whose paper sets its own budget
    (a cell with keep_ratio None: InfoBatch, KAKURENBO), its budget-matched controls (`grids.matched_cells`: random
    pruning and Reducing Epoch at its measured backprop share over full training's, `report.curve_runs`'s share),
    tuned the same way. ``cache_only``: read the cache, train nothing (`runs`). ``cells``: these (method, keep_ratio)
    cells instead of the curves' (a long computation's order: the claims' cells first). Returns {(method, keep_ratio):
    (lr, grid table, eval results)}."""
    from . import grids, report, tuning
    from .profiles import get
    P = get(profile)
    C = P["curves"]
    tune = lambda cells: tuning.tune_then_evaluate(cells, lambda c, lr, s: grids.curve_config(profile, *c, s, lr),
                                                   C["grid"], C["tuning_seeds"], P["seeds"],
                                                   lambda cs: runs(cs, jobs=jobs, cache_only=cache_only),
                                                   extend=C.get("extend", 0))
    out = tune(grids.curve_cells(profile, methods) if cells is None else [(m, None if r is None else float(r)) for m, r in cells])
    own = [c for c in out if c[1] is None and c[0] != "full"]
    if own:
        full = out[("full", None)] if ("full", None) in out else tune([("full", None)])[("full", None)]
        share = report.curve_runs({**{c: out[c] for c in own}, ("full", None): full}).groupby("method")["share"].mean()
        controls = [cell for m, _ in own for cell in grids.matched_cells(share[m])]
        out.update(tune([c for c in dict.fromkeys(controls) if c not in out]))
    return out


def _robustness_lrs(P: dict, table, lr: float) -> list[float]:
    """The other rates a claim cell chosen at ``lr`` is checked at: its tied neighbours on its grid ``table``
    (`tuning.tied_lrs` on the profile's validation split) and the profile's shared default rate (unless the profile's
    ``curves["robustness"]`` sets ``shared_rate=False``)."""
    from . import tuning
    shared = [float(P["base"]["lr"])] if P.get("curves", {}).get("robustness", {}).get("shared_rate", True) else []
    return [x for x in dict.fromkeys(tuning.tied_lrs(table, P["fair"]["val_size"]) + shared) if x != lr]


def robustness_cells(profile: str, cells) -> list:
    """The claim cells among ``cells`` whose verdicts are checked at other learning rates: every claim's
    (`claims.curve_cells`), or those of the claims the profile's ``curves["robustness"]["claims"]`` lists (a budget's
    cut: the other verdicts read "not run")."""
    from .profiles import get
    keys = get(profile, check_device=False).get("curves", {}).get("robustness", {}).get("claims")
    return claims.curve_cells(cells, keys)


def lr_robustness_runs(profile: str, curve: dict, cells=None, jobs: int | None = None, cache_only: bool = False) -> dict:
    """The evaluation runs of each claim cell (`robustness_cells`) at its tied learning rates (`tuning.tied_lrs`: the
    grid neighbours of its chosen rate that validation cannot tell apart from it) and at the shared default rate
    (the profile's base lr; `_robustness_lrs`), on the evaluation seeds: {(cell, lr): results}, the chosen rate's own
    runs included. These are what `report.curve_verdict` reads to say whether a verdict survives the learning-rate
    choice (a check whose runs are not here is reported as not run)."""
    from . import grids
    from .profiles import get
    P = get(profile)
    out, todo = {}, {}
    for cell in (robustness_cells(profile, curve) if cells is None else cells):
        lr, table, results = curve[cell]
        out[(cell, lr)] = results
        for other in _robustness_lrs(P, table, lr):
            if (cell, other) not in out:
                todo[(cell, other)] = [grids.curve_config(profile, *cell, s, other) for s in P["seeds"]]
    todo = {k: cs for k, cs in todo.items() if k not in out}
    got = iter(runs([c for cs in todo.values() for c in cs], jobs=jobs, cache_only=cache_only))
    out.update({k: [next(got) for _ in cs] for k, cs in todo.items()})
    return out


def side_lrs(profile: str, cells: dict, jobs: int | None = None) -> dict:
    """The learning rate of each method of a side study: ``cells`` maps a method to the sampler options
    it is tuned at (its main variant, e.g. ``{"ucb": {"keep_ratio": 0.3}}``); each is tuned at the plain side setting
    (`grids.side_config` without a notebook's overrides, so notebooks share tuning runs) with the profile's
    ``side_tuning`` grid, tuning seeds and extension (default: its ``curves``'), by `tuning.tune_then_evaluate` with
    no evaluation seeds (the notebook makes its own runs at the chosen rate). Returns {method: (lr, grid table)}."""
    from . import grids, tuning
    from .profiles import get
    P = get(profile)
    T = P.get("side_tuning", P["curves"])
    out = tuning.tune_then_evaluate(list(cells), lambda m, lr, s: grids.side_config(profile, m, cells[m], s, lr),
                                    T["grid"], T["tuning_seeds"], [], lambda cs: runs(cs, jobs=jobs),
                                    extend=T.get("extend", 0))
    return {m: (lr, table) for m, (lr, table, _) in out.items()}


def _wall_h(result) -> float:
    """A cached run's measured wall clock in hours (its last record's ``wall``, static scoring included)."""
    return float(result.records[-1].get("wall", float("nan"))) / 3600 if result.records else float("nan")


def ledger(profile: str):
    """Where a long background computation stands (the study v3 issue's measured compute): one row per part of the
    profile's study: each cell of the budget curves (the claims' cells flagged), full training's run-length study and
    each arm of the [Raju] schedule study, with the runs the cache holds, the runs still missing and the measured wall
    hours of those held. A curve cell's tuning runs are looked up on every rate its grid can grow to (``extend`` steps
    past either edge), its evaluation runs at the rate the held tuning runs choose (`tuning.choose_lr`; "missing"
    counts the evaluation seeds plus the unrun rates of the unextended grid; an extension it may still need is not
    counted); for a claim's cell with its rate chosen, its learning-rate robustness runs (`lr_robustness_runs`).
    ``est_h``: missing runs at the cell's own mean held run time (NaN where it holds none). The budget-matched controls
    of an own-budget method (part ``controls``) are listed once its evaluation runs and full training's are all held
    (their share is measured then); the cells the profile's ``curves["cells"]`` leaves out of its grid, and the
    learning-rate checks its ``curves["robustness"]`` leaves out (`robustness_cells`), as ``cut``.
    Reads the cache only; trains nothing."""
    import numpy as np
    import pandas as pd
    from . import grids, tuning
    from .profiles import get
    P = get(profile, check_device=False)
    C = P.get("curves")
    rows = []

    def row(part, cell, held, missing, claim=False):
        h = [_wall_h(r) for r in held]
        mean = float(np.mean(h)) if h else float("nan")
        rows.append(dict(part=part, cell=cell, claim=claim, held=len(held), missing=missing, hours=float(np.nansum(h)),
                         est_h=missing * mean if missing else 0.0))

    if C:
        cells = grids.curve_cells(profile)
        claim, checked = set(claims.curve_cells(cells)), set(robustness_cells(profile, cells))
        base = tuning.lr_grid(1.0, C["grid"])
        wide = list(base)
        for _ in range(int(C.get("extend", 0))):
            below, above = tuning.grown(wide)
            wide = [below, *wide, above]

        def look(cell):
            """A cell's held runs, its missing count, its chosen (lr, table) or None and its evaluation runs."""
            tune = {(lr, s): cache.load(grids.curve_config(profile, *cell, s, lr)) for lr in wide for s in C["tuning_seeds"]}
            held = [r for r in tune.values() if r is not None]
            lrs = [lr for lr in wide if all(tune[(lr, s)] is not None for s in C["tuning_seeds"])]
            unrun = sum(1 for lr in base for s in C["tuning_seeds"] if tune[(lr, s)] is None)
            if unrun or not lrs:
                return held, unrun + len(P["seeds"]), None, []
            choice = tuning.choose_lr([tune[(x, s)] for x in lrs for s in C["tuning_seeds"]])
            got = [r for r in (cache.load(grids.curve_config(profile, *cell, s, choice[0])) for s in P["seeds"]) if r is not None]
            return held + got, len(P["seeds"]) - len(got), choice, got

        done = {}
        for cell in cells:
            held, missing, choice, got = look(cell)
            name = f"{cell[0]}:{'own' if cell[1] is None else cell[1]}"
            row("curves", name, held, missing, cell in claim)
            if choice is not None and len(got) == len(P["seeds"]):
                done[cell] = (*choice, got)
            others = _robustness_lrs(P, choice[1], choice[0]) if cell in claim and choice is not None else []
            if others and cell in checked:     # `lr_robustness_runs`: the tied rates and the shared default rate
                rob = [cache.load(grids.curve_config(profile, *cell, s, x)) for x in others for s in P["seeds"]]
                row("lr_robustness", name + " at " + ", ".join(f"{x:g}" for x in others),
                    [r for r in rob if r is not None], sum(r is None for r in rob), True)
            elif others:                       # the profile's ``curves["robustness"]`` leaves its checks out
                row("cut", name + " lr robustness at " + ", ".join(f"{x:g}" for x in others), [], 0, True)
        own = [c for c in done if c[1] is None and c[0] != "full"]
        if own and ("full", None) in done:       # `curve_results`' budget-matched controls, once the share is measured
            from . import report
            share = report.curve_runs({c: done[c] for c in own + [("full", None)]}).groupby("method")["share"].mean()
            for m, _ in own:
                for ctl in grids.matched_cells(share[m]):
                    held, missing, _, _ = look(ctl)
                    row("controls", f"{ctl[0]}:{ctl[1]} (of {m})", held, missing, True)
        for cell in grids.curve_cells(profile, every=True):
            if cell not in cells:                # the profile's ``curves["cells"]`` leaves it out
                row("cut", f"{cell[0]}:{'own' if cell[1] is None else cell[1]}", [], 0)
    rl = [cache.load(c) for c in grids.run_length_configs(profile)]
    if rl:
        row("run_length", "full", [r for r in rl if r is not None], sum(r is None for r in rl))
    for (m, r, i), cs in grids.raju_schedule_runs(profile).items():
        got = [cache.load(c) for c in cs]
        row("raju_schedule", f"{m}:{r}" + (f"+{i}" if i else ""), [x for x in got if x is not None], sum(x is None for x in got))
    return pd.DataFrame(rows)


def parse_cell(text: str) -> tuple:
    """A curve cell from the command line: ``method:keep_ratio``, or ``method`` alone (its own budget)."""
    m, _, r = text.partition(":")
    try:
        return m, (float(r) if r else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a cell is METHOD or METHOD:KEEP_RATIO, got {text!r}") from None


def curves(profile: str, methods=None, jobs: int | None = None, cells=None):
    """Compute the budget curves of ``methods`` (`curve_results`), one method at a time (its tuning runs, then its
    evaluation runs, then its budget-matched controls when its paper sets its own budget), then ``cells`` one cell at a
    time, so a long computation leaves complete methods and cells in the cache as it goes; a method joins the notebook
    when it is added to the profile's ``curves["methods"]``."""
    for step in [dict(methods=[m]) for m in methods or []] + [dict(cells=[c]) for c in cells or []]:
        t0 = time.time()
        out = curve_results(profile, jobs=jobs, **step)
        chosen = ", ".join(f"{m_} {'-' if r is None else r}: lr {lr:g}, test {sum(x.final['test_acc'] for x in rs) / len(rs):.4f}"
                           for (m_, r), (lr, _, rs) in out.items())
        print(f"[curves] {[*step.values()][0][0]} ({profile}) done in {time.time() - t0:.0f} s: {chosen}", flush=True)


def notebooks(only=None):
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        known = [p.stem for p in found]
        bad = [o for o in only if not any(o in k for k in known)]
        if bad:
            raise SystemExit(f"unknown notebook(s) {bad}; known: {', '.join(known)}")
        found = [p for p in found if any(o in p.stem for o in only)]
    return found


def main(argv=None):
    from .profiles import COMMITTED, PROFILES, get
    from .report import figures_dir
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=COMMITTED, choices=list(PROFILES),
                    help=f"default: the committed profile ({COMMITTED})")
    ap.add_argument("--only", nargs="*", help="notebook names (or parts of them)")
    ap.add_argument("--jobs", type=int, default=1, help="parallel training processes")
    ap.add_argument("--out", default=str(NOTEBOOKS / "executed"))
    ap.add_argument("--curves", nargs="+", metavar="METHOD",
                    help="instead of the notebooks: compute 05's budget curves of these methods, one after another")
    ap.add_argument("--raju-schedule", action="store_true",
                    help="instead of the notebooks: compute the profile's [Raju] schedule study (grids.raju_schedule_runs), "
                         "seed by seed")
    ap.add_argument("--cells", nargs="+", type=parse_cell, metavar="METHOD[:RATIO]",
                    help="instead of the notebooks: compute these cells of 05's budget curves, one after another "
                         "(e.g. full omission:0.5; a method alone: its own budget)")
    ap.add_argument("--claims", action="store_true",
                    help="instead of the notebooks: compute the cells of 05's budget curves that the papers' claims are "
                         "tested on (claims.curve_cells, in the claims' order, each with its budget-matched controls), one "
                         "after another; resumes from the cache")
    ap.add_argument("--ledger", action="store_true",
                    help="instead of the notebooks: print where the profile's study stands in the cache (runs held and "
                         "missing per cell, measured hours; `ledger`) and train nothing")
    a = ap.parse_args(argv)
    if a.ledger:
        import pandas as pd
        t = ledger(a.profile)
        with pd.option_context("display.width", 200, "display.max_rows", None):
            print(t.to_string(index=False, float_format="%.2f"))
        tot = t.groupby("part")[["held", "missing", "hours", "est_h"]].sum()
        tot.loc["all"] = tot.sum()
        print(tot.to_string(float_format="%.2f"))
        return None
    get(a.profile)  # refuses a GPU profile without a GPU, before any work
    if a.raju_schedule:
        from .grids import raju_schedule_runs
        arms = raju_schedule_runs(a.profile)
        if not arms:
            raise SystemExit(f"profile {a.profile!r} has no raju_schedule study")
        for i in range(max(len(cs) for cs in arms.values())):      # seed by seed: every arm gains a seed at a time
            t0 = time.time()
            runs([cs[i] for cs in arms.values() if i < len(cs)], jobs=a.jobs)
            print(f"[raju-schedule] seed {i + 1} of every arm done in {time.time() - t0:.0f} s", flush=True)
        return None
    if a.claims:
        from .grids import curve_cells
        a.cells = claims.curve_cells(curve_cells(a.profile))
        print(f"[claims] {len(a.cells)} cells: {' '.join(f'{m}:{r}' if r is not None else m for m, r in a.cells)}", flush=True)
    if a.curves or a.cells:
        from .samplers import SAMPLERS
        bad = [m for m in (a.curves or [m for m, _ in a.cells]) if m not in SAMPLERS and m != "reduce_epochs"]
        if bad:
            raise SystemExit(f"unknown method(s) {bad}; known: reduce_epochs, {', '.join(SAMPLERS)}")
        return curves(a.profile, a.curves, a.jobs, cells=a.cells)
    import papermill as pm
    os.environ["DYNAPRUNE_JOBS"] = str(a.jobs)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    for nb in notebooks(a.only):
        t0 = time.time()
        pm.execute_notebook(str(nb), str(out / nb.name), parameters=dict(profile=a.profile), cwd=str(NOTEBOOKS),
                            kernel_name="python3", progress_bar=False, extra_arguments=KERNEL_QUIET)
        print(f"[study] {nb.name} ({a.profile}) done in {time.time() - t0:.1f} s", flush=True)
    figs = figures_dir(a.profile)
    print(f"[study] {len(notebooks(a.only))} notebooks in {time.time() - t_all:.1f} s; figures in "
          f"{figs.relative_to(ROOT) if figs.is_relative_to(ROOT) else figs}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
