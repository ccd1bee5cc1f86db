"""What notebooks need besides the library's computations: where figures go, provenance labels, how a method is named,
the summary tables of the comparison (speed-up efficiency, equal-step / equal-time views, budget curves, matched
controls), paired verdicts and their display. The README's generated tables are `dynaprune.readme`'s."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .cache import label_of, options_of   # noqa: F401 (report.label_of: how notebooks name a run)
from .profiles import figures_dir
from .samplers import METHODS

ROOT = Path(__file__).resolve().parents[2]


def savefig(fig, name: str, profile: str, device: str = "cpu"):
    """Save ``fig`` as <figures_dir(profile)>/<name>.png, stamped with the profile and device that made it; returns None."""
    # above everything drawn (the title included), at the right: never over a label, a title or a legend placed under
    # the axes (the layout puts such a legend at the bottom, beside a stamp there); bbox_inches="tight" keeps it in
    fig.canvas.draw()
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    fig.text(box.x1 / fig.get_figwidth(), box.y1 / fig.get_figheight() + 0.005,
             f"dynaprune · profile={profile} · device={device}", ha="right", va="bottom", fontsize=7, color="0.4")
    fig.savefig(figures_dir(profile) / f"{name}.png", dpi=110, bbox_inches="tight")
    # returns nothing: a notebook cell ending here shows the figure, not a machine path


def provenance(df: pd.DataFrame) -> str:
    """One line naming the devices and dates behind a results table."""
    if df.empty:
        return "no runs"
    devs = ", ".join(sorted(set(map(str, df.get("device_name", df.get("device_used"))))))
    return f"{df['key'].nunique()} runs on {devs}"


def final_table(df: pd.DataFrame, by=("sampler", "label")) -> pd.DataFrame:
    """Per method: final test accuracy (mean, min, max over seeds), the target and measured backprop share (backprops
    over full training's) and forwards. No time: the study's runs share the machine with each other, so their wall
    clocks say nothing of a method's speed; time comes from the interleaved benchmark (`dynaprune.bench`)."""
    last = df.sort_values("epoch").groupby("key").tail(1).copy()
    tot = df.groupby("key").agg(backprops=("backpropagated", "sum"), forwards=("forwarded", "sum"))
    last = last.join(tot, on="key")
    last["target_share"] = [target_share(r) for r in last.to_dict("records")]
    by = [b for b in by if b in last.columns]
    g = last.groupby(list(by))
    out = g.agg(acc=("test_acc", "mean"), acc_min=("test_acc", "min"), acc_max=("test_acc", "max"),
                target_share=("target_share", "first"), backprops=("backprops", "mean"), forwards=("forwards", "mean"),
                seeds=("seed", "nunique"))
    full = out.xs("full", level="sampler") if "full" in out.index.get_level_values("sampler") else None
    if full is not None and len(full):
        out["backprop_saved"] = 1 - out["backprops"] / full.iloc[0]["backprops"]
    return out.reset_index()


def at_budget(df: pd.DataFrame, column: str, budget: float, by=("sampler", "label")) -> pd.DataFrame:
    """Test accuracy of each run at the last evaluated epoch with `column` <= budget (equal-time or
    equal-step views of [OnlineIS] Table 1), averaged over seeds."""
    d = df[(df[column] <= budget) & df["test_acc"].notna()]
    last = d.sort_values("epoch").groupby("key").tail(1)
    by = [b for b in by if b in last.columns]
    return last.groupby(list(by)).agg(acc=("test_acc", "mean"), at=(column, "mean")).reset_index()


def target_share(cfg: dict) -> float:
    """The backprop share a run was asked for: its keep_ratio, Reducing Epoch's scale, 1 for full
    data, NaN where the method's paper sets it indirectly and no keep_ratio was given."""
    opts = options_of(cfg.get("sampler_options"))
    if cfg.get("epochs_scale", 1.0) < 1.0:
        return float(cfg["epochs_scale"])
    if "keep_ratio" in opts:
        return float(opts["keep_ratio"])
    m = METHODS.get(cfg["sampler"])
    return float("nan") if m is None else m.share     # the card's: 1 for full data and n draws per epoch


# how a figure names a method (the cache's labels stay the sampler keys): its card's name (`samplers.Method.name`), and
# the protocol's two references that are not samplers
def method_name(method: str) -> str:
    """How a table or figure names ``method`` (a sampler key, or Reducing Epoch's labels); unknown keys as they are."""
    if method in METHODS:
        return METHODS[method].name
    return REFERENCE_NAMES.get(method, method)


REFERENCE_NAMES = {"reduce_epochs": "Reducing Epoch", "reduce_epochs_scaled": "Reducing Epoch, lr scaled"}
# options a figure leaves out of a method's name: the budget (the panel or axis shows it) and regime bookkeeping
_QUIET_OPTIONS = {"keep_ratio", "checkpoints_per_epoch", "period", "score_epochs", "score_models", "prune_K",
                  "prune_every", "equal_steps", "labels", "holdout_size", "il_epochs"}
_GREEK = {"delta": "δ", "alpha": "α", "eps": "ε", "beta": "β", "beta1": "β1", "beta2": "β2"}


def display_name(label: str) -> str:
    """A cache label (`label_of`: ``"infobatch delta=0.875,r=0.5"``) as a figure names it (``"InfoBatch (δ=0.875, r=0.5)"``):
    the method's name, and only the options that tell variants apart."""
    head, _, rest = label.partition(" ")
    name = method_name(head)
    if head.startswith("reduce_epochs"):
        return f"{name} ({rest})" if rest else name
    opts = [o.split("=", 1) for o in rest.split(",") if "=" in o]
    shown = [f"{_GREEK.get(k, k)}={v}" for k, v in opts if k not in _QUIET_OPTIONS]
    return name + (f" ({', '.join(shown)})" if shown else "")


def per_run(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: label, seed, final test accuracy, final training-set loss (the last evaluated),
    backprops, the backprop share relative to the full-data runs of the same table (1.0 = as many
    backprops as full data), and whether the run diverged (a non-finite loss stopped it early)."""
    d = df.sort_values("epoch")
    d = d.assign(diverged=d["diverged"].astype("boolean").fillna(False).astype(bool) if "diverged" in d else False)
    extra = {c: (c, "last") for c in ("sampler", "sampler_options", "epochs") if c in d}   # for `regime_note`
    runs = d.groupby("key").agg(label=("label", "last"), seed=("seed", "last"), acc=("test_acc", "last"),
                                loss=("train_eval_loss", "last"), backprops=("backpropagated", "sum"),
                                diverged=("diverged", "any"), **extra)
    return _with_share(runs, runs["label"] == "full").reset_index()


def _with_share(runs: pd.DataFrame, is_full) -> pd.DataFrame:
    """``runs`` with ``share``: backprops over the mean of the full-training runs (rows ``is_full``), or of the
    largest run when there is none."""
    full = runs.loc[is_full, "backprops"]
    return runs.assign(share=runs["backprops"] / (full.mean() if len(full) else runs["backprops"].max()))


def curve_runs(curve: dict) -> pd.DataFrame:
    """The evaluation runs of budget curves (`tuning.tune_then_evaluate`'s output, keyed by (method,
    keep_ratio)) as `per_run` rows (so `compare` reads them), with method, keep_ratio, the chosen lr, the
    final validation accuracy and whether that lr is at the edge of its grid. ``share``: backprops over the
    mean of the full-training runs among them (or of the largest run)."""
    from . import cache
    rows = []
    for (method, ratio), (lr, table, results) in curve.items():
        edge = lr in (float(table["lr"].min()), float(table["lr"].max()))
        for res in results:
            c = res.config
            rows.append(dict(key=cache.key(c), label=method if ratio is None else f"{method} keep_ratio={ratio}",
                             method=method, keep_ratio=ratio, lr=lr, lr_at_grid_edge=edge, seed=c.seed,
                             acc=res.final["test_acc"], val_acc=res.final.get("val_acc"),
                             loss=res.final.get("train_eval_loss"),
                             backprops=res.backprops,
                             diverged=any(x.get("diverged") for x in res.records),
                             sampler=c.sampler, sampler_options=c.options("sampler_options"), epochs=c.epochs))
    runs = pd.DataFrame(rows)
    return _with_share(runs, runs["method"] == "full")


def curve_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell of `curve_runs`: the chosen lr (and whether it is at its grid's edge), mean test accuracy with
    its 95% Student t interval over seeds (`stats.mean_ci` of the accuracies), mean validation accuracy,
    measured backprop share, seeds, and the regime label (`regimes.outside`) where the cell is outside it."""
    from .stats import mean_ci
    out = []
    for label, d in runs.groupby("label", sort=False):
        lo, hi = mean_ci(d["acc"].to_numpy()) if len(d) >= 3 else (np.nan, np.nan)
        out.append(dict(label=label, method=d["method"].iloc[0], keep_ratio=d["keep_ratio"].iloc[0],
                        lr=d["lr"].iloc[0], lr_at_grid_edge=bool(d["lr_at_grid_edge"].iloc[0]),
                        acc=d["acc"].mean(), ci_low=lo, ci_high=hi, val_acc=d["val_acc"].mean(),
                        share=d["share"].mean(), seeds=d["seed"].nunique(), diverged=int(d["diverged"].sum()),
                        regime=regime_note(d) or "paper's regime"))
    return pd.DataFrame(out)


def matched_controls(runs: pd.DataFrame) -> pd.DataFrame:
    """For each method of `curve_runs` that set its own budget (keep_ratio None, not full training): the paired
    difference in test accuracy against its budget-matched controls (`grids.matched_cells`: random pruning and
    Reducing Epoch at its measured share), with its 95% interval and verdict (`stats.verdict`, A > B). These are
    the workbook's controls, not a paper's claim: a saving of backprops is only worth its machinery if it beats
    spending the same budget at random or on fewer epochs."""
    from .grids import matched_cells
    from .stats import verdict
    out = []
    for method, d in runs[runs["keep_ratio"].isna() & (runs["method"] != "full")].groupby("method", sort=False):
        for control, r in matched_cells(d["share"].mean()):
            c = runs[(runs["method"] == control) & (runs["keep_ratio"] == r)]
            if c.empty:
                continue
            pair = d[["seed", "acc", "share"]].merge(c[["seed", "acc", "share"]], on="seed", suffixes=("", "_c"))
            v = verdict(pair["acc"].to_numpy(), pair["acc_c"].to_numpy()).as_dict()
            out.append(dict(method=method, control=f"{control} keep_ratio={r}", share=pair["share"].mean(),
                            control_share=pair["share_c"].mean(), acc=pair["acc"].mean(), control_acc=pair["acc_c"].mean(),
                            mean_diff=v["mean_diff"], verdict=v["verdict"],
                            **{k: None if v[k] != v[k] else v[k] for k in ("ci_low", "ci_high")},   # < 3 seeds: no interval
                            seeds=len(pair)))
    return pd.DataFrame(out)


def regime_note(runs: pd.DataFrame) -> str | None:
    """How the runs of one label depart from their method's paper regime (`regimes.outside`), or None."""
    from .regimes import outside
    if runs.empty or not {"sampler", "sampler_options", "epochs"} <= set(runs.columns):
        return None
    row = runs.iloc[0]
    opts = options_of(row["sampler_options"])
    return outside(row["sampler"], opts, int(row["epochs"]))


def collapses(keys) -> pd.DataFrame:
    """`diagnose.diagnose` of the cached runs ``keys`` (one config's seeds: each other's seed-mates): one row per
    collapsed run with its cause. Diagnostics that need a re-run are read from the cache's analyses (never
    recomputed under DYNAPRUNE_CACHE_ONLY)."""
    from .diagnose import _entries, diagnose
    return diagnose(list(_entries(keys)))


def _collapse_note(arm: str, d: pd.DataFrame, n: int) -> str:
    causes = ", ".join(f"{k}" + (f" x{v}" if v > 1 else "") for k, v in d["cause"].value_counts().items())
    return f"{len(d)} of {n} seeds of {arm} collapsed ({causes})"


def compare(runs: pd.DataFrame, claim: str, a: str, b: str, condition: str = "", value: str = "acc") -> dict:
    """`claims.test` on runs labelled ``a`` and ``b``, paired by seed (seeds present in both).
    A run that diverged keeps its (chance-level) accuracy in the pairs, but not its share in the budget
    check (it stopped early: it was given the same budget; when every run of a side diverged, no budget
    is checked or recorded); a pair whose ``value`` is not finite (the
    training loss of a diverged run) is left out, and the condition says how many were.

    Collapses (`diagnose`, read for runs whose cache ``key`` the frame carries): where an arm's runs collapsed
    *outside* its paper's regime (`regime_note`), the comparison says nothing about the paper: the verdict reads
    "invalid: <arm> collapsed (<cause>)", with no p-value (it leaves the multiplicity family), and ``valid_verdict``
    keeps what the numbers alone would say. A collapse *inside* the regime is the method's own result: the verdict
    stands and ``collapses`` says how many seeds collapsed and why."""
    from . import claims
    from .stats import INVALID
    pa = runs[runs["label"] == a].set_index("seed")
    pb = runs[runs["label"] == b].set_index("seed")
    seeds = sorted(set(pa.index) & set(pb.index))
    if not seeds:
        raise ValueError(f"no common seeds for {a!r} and {b!r}; labels: {sorted(runs['label'].unique())}")
    finite = [s for s in seeds if np.isfinite(pa.loc[s, value]) and np.isfinite(pb.loc[s, value])]
    if len(finite) < len(seeds):
        condition = ", ".join(x for x in (condition, f"{len(seeds) - len(finite)} diverged pair(s) left out") if x)
        seeds = finite
    if not seeds:
        raise ValueError(f"no pair of {a!r} and {b!r} has a finite {value}")

    def share(p):   # over the runs that did not diverge (None when all did)
        ok = p.loc[seeds]
        ok = ok[~ok["diverged"]] if "diverged" in ok else ok
        return ok["share"].mean() if len(ok) else None
    budgets = (share(pa), share(pb))
    notes = {arm: regime_note(p) for arm, p in ((a, pa), (b, pb))}
    regime = "; ".join(dict.fromkeys(n for n in notes.values() if n))
    v = claims.test(claim, pa.loc[seeds, value].values, pb.loc[seeds, value].values, seeds=seeds,
                    budgets=None if None in budgets else budgets, condition=condition, regime=regime)
    inside, invalid = [], []
    for arm, p in ((a, pa), (b, pb)):
        if "key" not in p or p["key"].isna().all():
            continue
        d = collapses(p.loc[seeds, "key"].tolist())
        if len(d):
            (invalid if notes[arm] else inside).append(_collapse_note(arm, d, len(seeds)))
    v["collapses"] = "; ".join(inside + invalid) or None
    v["valid_verdict"] = v["verdict"]
    if invalid:
        v["verdict"] = f"{INVALID}: {'; '.join(invalid)} outside its paper's regime"
        v["p_value"] = None
    return v


def lr_robustness(v: dict, checks) -> dict:
    """Verdict row ``v`` (each method at its learning rate chosen on validation) with the verdicts of the same
    comparison at other learning rates, ``checks``: (description, verdict row) pairs, e.g. a tied neighbour of one
    arm's rate (`tuning.tied_lrs`) or both arms at the shared default rate. ``lr_robust``: every check gives the
    same verdict; otherwise the row's verdict depends on the learning rate, and ``lr_checks`` lists each outcome."""
    rows = [dict(lrs=desc, verdict=c["verdict"], mean_diff=c["mean_diff"]) for desc, c in checks]
    return dict(v, lr_checks=rows, lr_robust=all(r["verdict"] == v["verdict"] for r in rows))


def curve_verdict(curve: dict, robust: dict, claim: str, cells, condition: str, shared_lr: float, val_size: int) -> dict:
    """The verdict on ``claim`` between two cells of the budget curves (each method at its chosen learning rate),
    with its learning-rate robustness (`lr_robustness`): the same comparison with one arm moved to each of its
    tied rates (`tuning.tied_lrs`), and with both arms at ``shared_lr``. ``robust``: `study.lr_robustness_runs`'s
    runs {(cell, lr): results}. A check whose runs ``robust`` lacks (a profile's budget cut them) is not made, never
    stood in for by the chosen rate's runs: it is listed in ``lr_not_run``, and with no check made ``lr_robust`` is
    None ("not checked")."""
    from .tuning import tied_lrs
    (ca, cb), full = cells, curve[("full", None)]
    name = lambda c: c[0] if c[1] is None else f"{c[0]} keep_ratio={c[1]}"
    chosen = {c: curve[c][0] for c in cells}

    def at(lra, lrb):
        sel = {c: (lr, curve[c][1], curve[c][2] if lr == chosen[c] else robust[(c, lr)]) for c, lr in ((ca, lra), (cb, lrb))}
        return compare(curve_runs({("full", None): full, **sel}), claim, name(ca), name(cb), condition)
    v = at(chosen[ca], chosen[cb])
    planned = [(f"{ca[0]} at lr {t:g} (tied)", (t, chosen[cb])) for t in tied_lrs(curve[ca][1], val_size)]
    planned += [(f"{cb[0]} at lr {t:g} (tied)", (chosen[ca], t)) for t in tied_lrs(curve[cb][1], val_size)]
    if (chosen[ca], chosen[cb]) != (shared_lr, shared_lr):
        planned.append((f"both at the shared lr {shared_lr:g}", (shared_lr, shared_lr)))
    ran = lambda lrs: all(lr == chosen[c] or (c, lr) in robust for c, lr in zip((ca, cb), lrs))
    checks = [(desc, at(*lrs)) for desc, lrs in planned if ran(lrs)]
    not_run = [desc for desc, lrs in planned if not ran(lrs)]
    out = dict(lr_robustness(v, checks), lr_a=chosen[ca], lr_b=chosen[cb])
    if not_run:
        out["lr_not_run"] = not_run
        if not checks:
            out["lr_robust"] = None
    return out


def best_of(runs: pd.DataFrame, labels) -> str:
    """The label among ``labels`` with the highest mean final accuracy: a group's strongest member, the
    conservative opponent when a claim says a method beats a whole group (picking it from the same runs
    favours the group)."""
    present = [l for l in labels if (runs["label"] == l).any()]
    if not present:
        raise ValueError(f"none of {list(labels)} among the runs; labels: {sorted(runs['label'].unique())}")
    return max(present, key=lambda l: runs.loc[runs["label"] == l, "acc"].mean())


def verdict_frame(rows) -> pd.DataFrame:
    """Verdict rows as a table to show in a notebook: the verdict and its interval first."""
    cols = ["claim", "verdict", "mean_diff", "ci_low", "ci_high", "mde", "p_value", "n_pairs", "lr_robust", "condition",
            "a_mean", "b_mean", "share_a", "share_b", "collapses"]
    df = pd.DataFrame(list(rows))
    return df[[c for c in cols if c in df]]


def seeds_needed(profile: str | None = None, effect: float | None = None) -> pd.DataFrame:
    """How many paired seeds each recorded verdict of a profile needs (`stats.pairs_needed`): the fewest that detect
    a true difference of ``effect`` (default: the claims' stated margin, `claims.DEFAULT_MARGIN`, 0.5 points) with 80%
    power at the spread its recorded seeds showed (`stats.sd_from_half_width` of its interval). Read from the
    profile's numbers files (`key_numbers`), one row per verdict with an interval; ``needed`` is <NA> beyond 200 seeds
    (a difference that small is out of reach). What a profile's side-study seeds are planned from (the statistics
    issue's detectable-difference column, turned round)."""
    import json
    from . import claims, stats
    effect = claims.DEFAULT_MARGIN if effect is None else float(effect)
    rows = []
    for f in sorted(figures_dir(profile).glob("*_numbers.json")):
        meta = json.loads(f.read_text())
        for v in meta["verdicts"]:
            n, hw = v.get("n_pairs"), v.get("half_width")
            if not n or n < 2 or hw is None or not np.isfinite(hw):
                continue
            sd = stats.sd_from_half_width(hw, n)
            rows.append(dict(notebook=meta["notebook"], claim=v["claim"], condition=v.get("condition", ""),
                             verdict=v["verdict"], n_pairs=n, sd=sd, needed=stats.pairs_needed(sd, effect)))
    out = pd.DataFrame(rows, columns=["notebook", "claim", "condition", "verdict", "n_pairs", "sd", "needed"])
    return out.astype({"needed": "Int64"})   # <NA>: out of reach


class Table:
    """A table as a lesson reads it (`table`): the columns that carry the point, first rows only, no index unless it
    names the rows; the whole table folded below it (a ``<details>`` block in Lab and on the site). ``frame`` is the
    whole DataFrame, to work with."""

    def __init__(self, frame: pd.DataFrame, shown: pd.DataFrame, caption: str | None = None):
        self.frame, self.shown, self.caption = frame, shown, caption

    def _index(self, df):
        return not isinstance(df.index, pd.RangeIndex)

    def _repr_html_(self):
        cap = f"<p><em>{self.caption}</em></p>" if self.caption else ""
        html = f'<div class="dp-table">{cap}' + self.shown.to_html(index=self._index(self.shown), border=0, na_rep="")
        cut = len(self.frame) - len(self.shown), self.frame.shape[1] - self.shown.shape[1]
        if any(cut):
            what = " and ".join(x for x in (f"{len(self.frame)} rows" if cut[0] else "",
                                            f"{self.frame.shape[1]} columns" if cut[1] else "") if x)
            html += f"<details><summary>the whole table ({what})</summary><div>" + \
                self.frame.to_html(index=self._index(self.frame), border=0, na_rep="") + "</div></details>"
        return html + "</div>"

    def __repr__(self):
        more = len(self.frame) - len(self.shown)
        return (f"{self.caption}\n" if self.caption else "") + self.shown.to_string(index=self._index(self.shown)) + \
            (f"\n... {more} more rows (.frame)" if more > 0 else "")


def table(df: pd.DataFrame, cols=None, rows: int = 12, caption: str | None = None, digits: int | None = 4) -> Table:
    """``df`` for a lesson page: ``cols`` (default all; in that order) of its first ``rows`` rows, floats rounded to
    ``digits``; the whole table folded below when anything was left out. A cell ending in ``report.table(...)`` shows it."""
    df = df.to_frame() if isinstance(df, pd.Series) else df
    df = df.round(digits) if digits is not None else df
    shown = df[list(cols)] if cols is not None else df
    return Table(df, shown.head(rows), caption)


def verdict_view(rows, caption: str | None = None, rows_shown: int = 15) -> Table:
    """Verdict rows (`compare`) for a lesson page: the verdict, the difference with its 95% interval, the claim and
    its condition, p and pairs; every column (`verdict_frame`) folded below."""
    df = verdict_frame(rows)
    if not len(df):
        return Table(df, df, caption)
    f = lambda x: "" if x is None or not np.isfinite(x) else f"{x:+.4f}"
    df.insert(2, "difference [95% CI]", [f"{f(m)} [{f(lo)}, {f(hi)}]" for m, lo, hi in
                                         zip(df["mean_diff"], df["ci_low"], df["ci_high"])])
    cols = [c for c in ("verdict", "difference [95% CI]", "claim", "condition", "p_value", "n_pairs", "lr_robust")
            if c in df]
    return Table(df.round(4), df[cols].round(4).head(rows_shown), caption)


def _clean(v, path="numbers"):
    """Round floats to 10 significant digits (a warm re-render must rewrite the file byte for byte:
    the last bits of a float sum vary with thread scheduling); refuse NaN and inf, so a test of the
    notebook fails when a result is missing. Dicts keep their labels; arrays become lists."""
    if isinstance(v, dict):
        return {str(k): _clean(x, f"{path}.{k}") for k, x in v.items()}
    if v is None or isinstance(v, (str, bool)):
        return v
    arr = np.asarray(v)
    if arr.dtype.kind in "OU":
        return [_clean(x, f"{path}[{i}]") for i, x in enumerate(v)]
    if arr.dtype.kind in "iub":              # counts, seeds and flags stay integers / booleans
        return arr.tolist()
    arr = arr.astype(float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"non-finite key number at {path}: {v}")
    return np.vectorize(lambda x: float(f"{x:.10g}"), otypes=[float])(arr).tolist()


def key_numbers(name: str, *, profile: str, device: str, seeds=None, verdicts=(), **numbers) -> None:
    """Record a notebook's headline numbers next to its figures (<figures_dir(profile)>/<name>_numbers.json),
    labelled: each value keyed by claim / method / condition, with the profile, device and seeds
    that made them, and the verdict rows of the claims the notebook tests (`claims.test`)."""
    import json
    out = dict(notebook=name, profile=profile, device=device,
               seeds=None if seeds is None else [int(s) for s in seeds],
               verdicts=[_clean(v, f"verdicts[{i}]") for i, v in enumerate(verdicts)],
               numbers=_clean(numbers))
    (figures_dir(profile) / f"{name}_numbers.json").write_text(json.dumps(out, indent=1, sort_keys=True))
    # returns nothing: a notebook cell ending here shows no repr of the numbers (the file is what a reader opens)


def run_length_table(results, val_size: int, z: float = 1.96) -> pd.DataFrame:
    """The run-length study's evidence (`grids.run_length_configs`' runs): per learning rate and run length, the final
    validation and test accuracy, ``val_gain`` over the next shorter length at the same rate, and ``noise``: the
    half-width of a difference between two runs' validation accuracies, z sqrt(2 p (1 - p) / val_size) (each run's
    binomial error on ``val_size`` images, p their mean). A gain below ``noise`` is not evidence either way (one seed
    per length); ``gain_clear`` says which are."""
    rows = sorted((float(r.config.lr), int(r.config.epochs), r.final["val_acc"], r.final["test_acc"]) for r in results)
    t = pd.DataFrame(rows, columns=["lr", "epochs", "val_acc", "test_acc"])
    prev = t.groupby("lr")["val_acc"].shift()
    p = (t["val_acc"] + prev) / 2
    t["val_gain"] = t["val_acc"] - prev
    t["noise"] = z * np.sqrt(2 * p * (1 - p) / val_size)
    t["gain_clear"] = (t["val_gain"].abs() > t["noise"]).where(prev.notna())
    return t


def compute(result) -> dict:
    """A run's compute, counted in samples: ``backprops`` and ``forwards`` (every forward, training ones included) of its
    records (scoring passes, selection forwards and [RHO-LOSS]'s IL model are there) plus the static models its card
    declares outside them (`samplers.Method.static_work`: EL2N's scoring models, forgetting's run; ``static_*``), and
    ``eval_forwards`` = forwards - backprops, the forwards that cost a forward only. Evaluations are measurement, not
    cost, and are not counted. With a setting's unit costs (`bench.unit_costs`), `seconds` turns it into time."""
    from .samplers import card
    from .train import train_indices
    c = result.config
    f, b = (sum(int(r[k]) for r in result.records) for k in ("forwarded", "backpropagated"))
    sf = sb = 0
    m, opts = card(c.sampler), c.options("sampler_options")
    if m.static_work is not None and "scores" not in opts:
        n = len(train_indices(c))
        sf, sb = m.static_work(opts, n, c.epochs, n // c.batch_size * c.batch_size if c.drop_last else n)
    return dict(forwards=f + sf, backprops=b + sb, eval_forwards=f + sf - b - sb, static_forwards=sf,
                static_backprops=sb)


def seconds(work: dict, units: dict) -> float:
    """`compute`'s counts in seconds at a setting's unit costs (`bench.unit_costs`, medians): an eval forward per
    forward that trains nothing, a training step per backprop."""
    med = lambda u: units[u][1] if isinstance(units[u], (tuple, list)) else units[u]
    return work["eval_forwards"] * med("forward") + work["backprops"] * med("step")


def time_to_accuracy(result, target: float) -> dict | None:
    """[RS2]'s time-to-accuracy: the first evaluated epoch whose test accuracy reaches ``target`` (e.g. 0.99 of full
    training's), with the training seconds and the compute (`compute`'s counts, static work charged from the start)
    spent by then; None when the run never reaches it. A run evaluated only at its end answers at its end or not."""
    work = compute(result)
    for r in result.records:
        if r.get("test_acc") == r.get("test_acc") and r["test_acc"] >= target:
            return dict(epoch=int(r["epoch"]), seconds=float(r["wall"]), test_acc=float(r["test_acc"]),
                        backprops=int(r["cum_backpropagated"]) + work["static_backprops"],
                        forwards=int(r["cum_forwarded"]) + work["static_forwards"])
    return None


def curve_compute(curve: dict, units: dict | None = None, target_frac: float = 0.99) -> pd.DataFrame:
    """Per cell of budget curves (`tuning.tune_then_evaluate`'s output, with the ("full", None) cell): its compute and
    [RS2]'s time-to-accuracy. ``forwards`` / ``backprops``: `compute`'s counts (static models included) over full
    training's, means over seeds; with a setting's ``units`` (`bench.unit_costs`), ``compute``: the run's compute priced
    at them over full training's, and ``tta_compute``: the compute spent when the run first reaches ``target_frac`` of
    full training's mean test accuracy, over full training's whole run (median over the seeds that reach it; NaN when
    none does); ``tta_epochs``: the epochs trained by then (median); ``tta_reached``: the seeds that reach it, of ``seeds``. Priced compute,
    not the runs' wall clocks (they shared the machine); a run evaluated only at its end answers there or not at all."""
    if ("full", None) not in curve:
        raise ValueError("curve_compute needs full training's cell, ('full', None), for its references")
    target = target_frac * float(np.mean([r.final["test_acc"] for r in curve[("full", None)][2]]))
    price = (lambda w: seconds(w, units)) if units else (lambda w: np.nan)
    rows = []
    for (method, ratio), (_, _, results) in curve.items():
        for res in results:
            w, t = compute(res), time_to_accuracy(res, target)
            tw = None if t is None else dict(backprops=t["backprops"], eval_forwards=t["forwards"] - t["backprops"])
            rows.append(dict(label=method if ratio is None else f"{method} keep_ratio={ratio}", method=method,
                             keep_ratio=ratio, seed=res.config.seed, forwards=w["forwards"], backprops=w["backprops"],
                             cost=price(w), tta_epochs=np.nan if t is None else t["epoch"] + 1,
                             tta_cost=np.nan if t is None else price(tw)))
    runs = pd.DataFrame(rows)
    ref = runs[runs["method"] == "full"][["forwards", "backprops", "cost"]].mean()
    out = runs.groupby("label", sort=False).agg(
        method=("method", "first"), keep_ratio=("keep_ratio", "first"), forwards=("forwards", "mean"),
        backprops=("backprops", "mean"), compute=("cost", "mean"), tta_epochs=("tta_epochs", "median"),
        tta_compute=("tta_cost", "median"), tta_reached=("tta_epochs", "count"), seeds=("seed", "nunique"))
    for col, r in (("forwards", "forwards"), ("backprops", "backprops"), ("compute", "cost"), ("tta_compute", "cost")):
        out[col] = out[col] / ref[r]
    return out.reset_index().assign(target=target)


def device_of(df: pd.DataFrame) -> str:
    """The device(s) the runs behind ``df`` used, for figure stamps."""
    if df.empty or "device_used" not in df:
        return "none"
    return "+".join(sorted(set(map(str, df["device_used"]))))


def main(argv=None):
    """``python -m dynaprune.report verdicts|diagnose|seeds-needed``."""
    import argparse
    from . import readme
    ap = argparse.ArgumentParser(prog="python -m dynaprune.report", description="tables built from the committed results")
    ap.add_argument("command", choices=["verdicts", "diagnose", "seeds-needed"],
                    help="verdicts: the README's verdict table; diagnose: every collapsed run, its break and cause; "
                         "seeds-needed: the paired seeds each recorded verdict needs to detect --effect")
    ap.add_argument("--figures", default=None, help="verdicts: folder of *_numbers.json (default: figures/)")
    ap.add_argument("--readme", action="store_true",
                    help="verdicts: also write the table, and 05's budget-curve table, into README.md between their markers")
    ap.add_argument("--no-rerun", action="store_true",
                    help="diagnose: never re-run a run cached without diagnostics (its cause may stay unexplained)")
    ap.add_argument("--profile", default=None, help="seeds-needed: the profile whose numbers files to read (default: the committed one)")
    ap.add_argument("--effect", type=float, default=None,
                    help="seeds-needed: the true difference to detect with 80%% power (default: the claims' margin, 0.005)")
    a = ap.parse_args(argv)
    if a.command == "seeds-needed":
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(seeds_needed(a.profile, a.effect).to_string(index=False))
        return 0
    if a.command == "verdicts":
        print(readme.verdict_table(a.figures))
        if a.readme:
            readme.write(a.figures)
        return 0
    from .diagnose import diagnose
    d = diagnose(rerun=not a.no_rerun)
    if d.empty:
        print("no collapsed run in the results cache")
        return 0
    for r in d.to_dict("records"):
        where = r["dataset"] + ("" if pd.isna(r["train_subset"]) else f", first {int(r['train_subset'])} samples")
        brk = "-" if pd.isna(r["break_epoch"]) else int(r["break_epoch"])
        print(f"{r['key']}  {r['label']}, seed {r['seed']} ({where}): {r['how']}, final test accuracy "
              f"{r['acc']:.3f}; breaks at epoch {brk}\n    cause: {r['cause']}: {r['evidence']} [diagnostics {r['source']}]")
    counts = d["cause"].value_counts()
    print(f"{len(d)} collapsed run(s): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
