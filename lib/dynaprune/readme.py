"""The README's generated tables: the verdict table, from every notebook's committed numbers files (`verdict_rows`,
`verdict_table`, with Holm's adjustment over the whole table), and notebook 05's budget-curve table (`curve_markdown`);
`write` puts both between their markers in README.md (`python -m dynaprune.report verdicts --readme`)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .profiles import figures_dir

ROOT = Path(__file__).resolve().parents[2]


def _test_of(v: dict, f) -> str:
    """The test a row makes, in words, with its margin and where the margin comes from."""
    m, src = v.get("margin") or 0.0, v.get("margin_source") or ""
    src = f"; {src}" if src else ""
    return {"greater": "A > B" + (f" + {f(m).lstrip('+')}" if m else ""),
            "less": "A < B" + (f" - {f(m).lstrip('+')}" if m else ""),
            "noninferior": f"A >= B - {f(m).lstrip('+')} (non-inferiority{src})",
            "equivalent": f"|A - B| < {f(m).lstrip('+')} (equivalence{src})"}[v["direction"]]


def _lr_cell(v: dict, f) -> str:
    not_run = v.get("lr_not_run") or []
    if v.get("lr_robust") is None:
        return (f"not checked (cut from the profile's budget: {'; '.join(not_run)})" if not_run else
                "not checked (each arm at its lr chosen on one tuning seed)")
    if v["lr_robust"]:
        return (f"robust ({len(v['lr_checks'])} other rate pair(s): same verdict)"
                + (f"; not run: {'; '.join(not_run)}" if not_run else ""))
    return "depends: " + "; ".join(f"{c['verdict']} with {c['lrs']} ({f(c['mean_diff'])})"
                                   for c in v["lr_checks"] if c["verdict"] != v["verdict"])


def verdict_rows(root=None) -> list[tuple[dict, dict]]:
    """(notebook metadata, verdict row) of every verdict in the numbers files of ``root`` (default: figures/), each
    row with ``p_holm``: Holm's adjustment (`stats.holm`) over the whole table's family, the rows with a test (an
    invalid row, or one with fewer than 3 seeds, has none), and ``holm_verdict``: the verdict if it stays decisive
    at family-wise error 5%, else not distinguishable."""
    import json
    from .stats import ALPHA, NOT_DISTINGUISHABLE, holm
    d = Path(root) if root is not None else figures_dir()
    rows = [(meta, dict(v)) for f in sorted(d.glob("*_numbers.json")) for meta in [json.loads(f.read_text())]
            for v in meta.get("verdicts", [])]
    adj = holm([np.nan if v.get("p_value") is None else v["p_value"] for _, v in rows])
    for (_, v), p in zip(rows, adj):
        v["p_holm"] = None if not np.isfinite(p) else float(p)
        v["holm_verdict"] = v["verdict"] if v["p_holm"] is None else (v["verdict"] if p < ALPHA else NOT_DISTINGUISHABLE)
    _own_schedule_rule(rows)
    return rows


def _own_schedule_rule(rows) -> None:
    """The study v3 rule for [Raju]'s claims: a [Raju] claim that did not hold in our setting reads "did not hold" only
    if it fails in [Raju]'s own schedule too (notebook 06's rows whose condition names `grids.OWN_SCHEDULE`, at the
    same keep ratio); otherwise the failure belongs to the setting. Adds ``own_schedule`` (that row's verdict) to each
    such row, in place."""
    from .grids import OWN_SCHEDULE
    from .stats import DID_NOT_HOLD
    ratio = lambda v: (re.findall(r"keep_ratio=([0-9.]+)", v.get("condition") or "") or [None])[0]
    own = {(v["claim"], ratio(v)): v["verdict"] for _, v in rows if OWN_SCHEDULE in (v.get("condition") or "")}
    for _, v in rows:
        if (v["paper"] == "Raju" and v["verdict"] == DID_NOT_HOLD and OWN_SCHEDULE not in (v.get("condition") or "")
                and (v["claim"], ratio(v)) in own):
            v["own_schedule"] = own[(v["claim"], ratio(v))]


def verdict_table(root=None) -> str:
    """The README's verdict table (markdown), built from the committed numbers files (`verdict_rows`), and a summary
    of its outcomes: raw, after Holm's adjustment over the table, invalid, depending on the learning rate."""
    from .grids import OWN_SCHEDULE
    from .stats import DID_NOT_HOLD, HELD, INVALID
    rows = verdict_rows(root)
    # the verdict and its interval first: what a reader looks for, visible where a page is narrower than the table
    out = ["| verdict | after Holm (table-wide) | A - B, 95% CI | claim ([paper] where) | notebook | smallest detectable "
           "(80% power) | test | learning rate | A vs B | backprop share A / B | seeds |", "|---" * 11 + "|"]
    cell = lambda x: str(x).replace("|", "\\|")     # a pipe in a cell (|A - B|) would split it in two
    for meta, v in rows:
        # accuracy differences in percentage points (the papers' unit); other metrics as they are, named
        pts = "accuracy" in v.get("metric", "accuracy")
        f = (lambda x: f"{100 * x:+.2f}") if pts else (lambda x: f"{x:+.4f}")
        unit = " points" if pts else f" ({v['metric']})"
        ci = f"[{f(v['ci_low'])}, {f(v['ci_high'])}]" if v.get("ci_low") is not None else "–"
        mde = "–" if v.get("mde") is None else f(v["mde"]).lstrip("+")
        share = "–" if v.get("share_a") is None else f"{v['share_a']:.2f} / {v['share_b']:.2f}"
        cond = f" ({v['condition']})" if v.get("condition") else ""
        cond += f" *{v['regime']}*" if v.get("regime") else ""
        cond += f" *{v['departure']}*" if v.get("departure") else ""
        verdict = v["verdict"]
        if v.get("own_schedule"):
            verdict = (f"{DID_NOT_HOLD} (also in {OWN_SCHEDULE})" if v["own_schedule"] == DID_NOT_HOLD else
                       f"{DID_NOT_HOLD} in this setting; in {OWN_SCHEDULE}: {v['own_schedule']}")
        if v.get("lr_robust") is False:
            verdict = f"depends on the learning rate ({verdict} at the chosen rates)"
        if v.get("collapses") and not verdict.startswith(INVALID):
            verdict += f"; {v['collapses']}"
        holm = "–" if v["p_holm"] is None else f"{v['holm_verdict']} (p = {v['p_holm']:.3g})"
        out.append("| " + " | ".join(map(cell, (verdict, holm, f"{f(v['mean_diff'])} {ci}{unit}",
                                                 f"{v['statement']} ([{v['paper']}] {v['where']}){cond}",
                                                 meta["notebook"][:2], mde, _test_of(v, f), _lr_cell(v, f),
                                                 f"{v['a']} vs {v['b']}", share, int(v["n_pairs"])))) + " |")
    count = lambda key, val: sum(1 for _, v in rows if v[key] == val)
    tested = [v for _, v in rows if v["p_holm"] is not None]
    invalid = sum(1 for _, v in rows if v["verdict"].startswith(INVALID))
    depends = sum(1 for _, v in rows if v.get("lr_robust") is False)
    unchecked = sum(1 for _, v in rows if v.get("lr_robust") is None)
    cut = sum(1 for _, v in rows if v.get("lr_robust") is None and v.get("lr_not_run"))
    profiles = sorted({f"{m['profile']} on {m['device']}" for m, _ in rows})
    own = [v for _, v in rows if v.get("own_schedule")]
    out += ["", f"**{len(rows)} rows.** At the chosen learning rates: {count('verdict', HELD)} held, "
            f"{count('verdict', DID_NOT_HOLD)} did not hold, {invalid} invalid (an arm collapsed outside its paper's "
            f"regime), the rest not distinguishable. Holm's adjustment over the {len(tested)} rows with a test (the "
            f"family: every row of this table except the invalid ones and those with fewer than 3 seeds) leaves "
            f"{sum(1 for v in tested if v['holm_verdict'] == HELD)} held and "
            f"{sum(1 for v in tested if v['holm_verdict'] == DID_NOT_HOLD)} did not hold. Learning rate: "
            f"{sum(1 for _, v in rows if v.get('lr_robust'))} rows checked and robust, {depends} depend on it, "
            f"{unchecked} not checked (side studies: provisional"
            + (f"; {cut} budget-curve row(s) whose checks the profile's budget cut" if cut else "") + ")."
            + (f" {len(own)} [Raju] row(s) that did not hold here, read against the same claim in {OWN_SCHEDULE} "
               f"(notebook 06): {sum(1 for v in own if v['own_schedule'] != DID_NOT_HOLD)} of them did not fail there, "
               "so those verdicts name the setting they fail in." if own else ""),
            "", "Interval: paired Student t over seeds (`dynaprune.stats`); *smallest detectable*: the true difference "
            "the row had an 80% chance to detect at its observed spread.",
            "", f"Profile and device: {', '.join(profiles) or 'none'}. Generated by `python -m dynaprune.report verdicts`."]
    return "\n".join(out)


REFERENCES = {"full": "full training", "reduce_epochs": "Reducing Epoch", "random": "random pruning"}


def curve_markdown(root=None) -> str:
    """The README's budget-curve table (markdown), built from notebook 05's committed numbers
    (``05_budget_curves_numbers.json``): test accuracy in % with its 95% interval over seeds for each method (columns;
    the references first) at each keep ratio a method was asked for (rows), a cell outside its paper's regime marked;
    then full training, and each method that sets its own budget at its measured share with its budget-matched
    controls."""
    import json
    d = Path(root) if root is not None else figures_dir()
    meta = json.loads((d / "05_budget_curves_numbers.json").read_text())
    cells = meta["numbers"]["cells"]
    from .report import method_name
    fmt = lambda c: f"{100 * c['acc']:.2f} [{100 * c['ci_low']:.2f}, {100 * c['ci_high']:.2f}]"
    name = lambda m: REFERENCES.get(m) or method_name(m)      # as the figures name it (`omission_bc`: ours, labelled)
    ratio = [c for c in cells.values() if c["keep_ratio"] is not None]
    methods = list(dict.fromkeys([m for m in ("reduce_epochs", "random") if any(c["method"] == m for c in ratio)]
                                 + [c["method"] for c in ratio]))
    # the curve's keep ratios: those a method other than the references was asked for (controls sit at other shares)
    rows = sorted({c["keep_ratio"] for c in ratio if c["method"] not in REFERENCES})
    at = {(c["method"], c["keep_ratio"]): c for c in ratio}
    out = ["| keep ratio | " + " | ".join(name(m) for m in methods) + " |", "|---" * (len(methods) + 1) + "|"]
    outside = lambda c: c["regime"] != "paper's regime"
    for r in rows:
        out.append(f"| {r:g} | " + " | ".join(
            "–" if (m, r) not in at else fmt(at[(m, r)]) + ("\\*" if outside(at[(m, r)]) else "") for m in methods) + " |")
    out += [""] + (["\\* outside its paper's regime (the keep ratio replaces the budget the paper sets); – not run (out "
                    "of reach).", ""] if any(outside(c) for c in ratio) else [])
    out += [f"- Full training: {fmt(cells['full'])} (lr {cells['full']['lr']:g})."]
    controls = meta["numbers"].get("matched_controls", {})
    for c in cells.values():
        if c["keep_ratio"] is None and c["method"] != "full":
            vs = [f"{name(cells[v['control']]['method'])} {fmt(cells[v['control']])} "
                  f"({name(c['method'])} - it: {100 * v['mean_diff']:+.2f} [{100 * v['ci_low']:+.2f}, "
                  f"{100 * v['ci_high']:+.2f}]; {name(c['method'])} beats it: {v['verdict']})"
                  for v in controls.values() if v["method"] == c["method"]]
            out.append(f"- {name(c['method'])} at its own budget (share {c['share']:.2f} of full training's backprops, lr "
                       f"{c['lr']:g}): {fmt(c)}" + (f"; budget-matched controls at that share: {'; '.join(vs)}." if vs else "."))
    out += ["", f"Profile and device: {meta['profile']} on {meta['device']}, seeds {meta['seeds']}. Generated by "
            "`python -m dynaprune.report verdicts --readme` from notebook 05's numbers."]
    return "\n".join(out)


def write(root=None, readme: Path | None = None) -> Path:
    """Write `verdict_table` and `curve_markdown` of the numbers files in ``root`` (default: figures/) into ``readme``
    (default: the repository's README.md) between their ``<!-- name:start -->`` / ``<!-- name:end -->`` markers."""
    readme = ROOT / "README.md" if readme is None else Path(readme)
    text = readme.read_text()
    for marker, block in (("verdicts", verdict_table(root)), ("curves", curve_markdown(root))):
        text, n = re.subn(rf"(<!-- {marker}:start -->\n).*?(\n<!-- {marker}:end -->)",
                          lambda m: m.group(1) + block + m.group(2), text, flags=re.S)
        if n != 1:
            raise SystemExit(f"{readme.name} lacks one pair of <!-- {marker}:start --> / <!-- {marker}:end --> markers")
    readme.write_text(text)
    return readme
