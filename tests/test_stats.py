"""The verdict function and the claims table: properties, not examples."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dynaprune import claims, readme, report
from dynaprune.stats import (DID_NOT_HOLD, HELD, INVALID, NOT_DISTINGUISHABLE, decide, holm, mean_ci, paired_t,
                              pairs_needed, sd_from_half_width, sign_flip_p, verdict)

ROOT = Path(__file__).resolve().parents[1]
SIMS = 4000                                   # Monte Carlo experiments per cell: SE of a 5% rate = 0.34 points
TOL = 0.05 + 3 * np.sqrt(0.05 * 0.95 / SIMS)  # a rule that keeps its 5% passes; one at 6.1% or more fails
NOISE = {"normal": lambda g, size: g.normal(size=size),
         "Student t, 2 df (heavy tails)": lambda g, size: g.standard_t(2, size=size),
         "Laplace": lambda g, size: g.laplace(size=size)}


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("noise", list(NOISE))
def test_no_effect_gives_a_false_verdict_at_most_5_percent(n, noise):
    """Under no effect (paired differences symmetric about 0), the verdict rule says *held* or *did not hold*
    in at most 5% of experiments (up to Monte Carlo error) at the 3, 5 and 10 seeds the study uses, for normal
    and for heavy-tailed differences. The scipy bootstrap this replaces said so in 28% at 3 seeds. The same rule
    then detects a true effect of 2 standard deviations at 10 seeds (so the test is not passed by never deciding)."""
    g = np.random.default_rng(1000 * n + len(noise))
    code, p, _ = decide(NOISE[noise](g, (SIMS, n)), "greater")
    assert np.mean(code != 0) <= TOL, (n, noise, np.mean(code != 0))
    assert np.array_equal(code != 0, p < 0.05)        # a decisive verdict is exactly a p-value below 5%
    if n == 10 and noise == "normal":
        code, _, _ = decide(NOISE[noise](g, (SIMS, n)) + 2.0, "greater")
        assert np.mean(code == 1) > 0.99


@pytest.mark.parametrize("direction", ["equivalent", "noninferior"])
def test_equivalence_and_noninferiority_hold_falsely_at_most_2_5_percent_at_the_margin(direction):
    """At a true difference exactly on the margin's wrong side (the boundary of "not matching"), *held* is said in
    at most 2.5% of experiments (each side of TOST is a one-sided test at 2.5%), at 3 and 10 seeds."""
    margin = 0.5
    tol = 0.025 + 3 * np.sqrt(0.025 * 0.975 / SIMS)
    g = np.random.default_rng(7)
    for n in (3, 10):
        for edge in ((margin, -margin) if direction == "equivalent" else (-margin,)):
            code, _, _ = decide(g.normal(edge, 1.0, (SIMS, n)), direction, margin)
            assert np.mean(code == 1) <= tol, (direction, n, edge, np.mean(code == 1))


def test_t_interval_covers_the_mean_95_percent_at_3_seeds():
    g = np.random.default_rng(3)
    hits = [lo <= 0.3 <= hi for lo, hi in (mean_ci(g.normal(0.3, 1, 3)) for _ in range(3000))]
    assert abs(np.mean(hits) - 0.95) < 3 * np.sqrt(0.05 * 0.95 / 3000), np.mean(hits)


def test_sign_flip_p_is_exact():
    """The sign-flip p-value is the share of the 2^n sign patterns whose mean is at least as far from 0 as the
    observed one (counted here by brute force); at 3 seeds it is never below 2 / 8 = 0.25."""
    import itertools
    g = np.random.default_rng(5)
    for n in (3, 5, 8):
        d = g.normal(0.5, 1, n)
        means = [abs(np.mean(np.array(s) * d)) for s in itertools.product((1, -1), repeat=n)]
        assert sign_flip_p(d) == pytest.approx(np.mean(np.array(means) >= abs(d.mean()) - 1e-12))
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(0.25)


def test_holm_matches_its_definition():
    """Holm's adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); NaN rows stay out of the family."""
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.005, 0.2])
    adj = holm(p)
    fin = p[np.isfinite(p)]
    order = np.argsort(fin)
    m = len(fin)
    want = np.maximum.accumulate([min(1, (m - j) * fin[order[j]]) for j in range(m)])
    expect = np.empty(m)
    expect[order] = want
    assert np.isnan(adj[1]) and np.allclose(adj[np.isfinite(p)], expect)
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_three_valued_verdicts():
    rng = np.random.default_rng(0)
    base = rng.normal(0.85, 0.01, 8)
    up, down, same = base + 0.01 + rng.normal(0, 0.001, 8), base - 0.01 + rng.normal(0, 0.001, 8), base + rng.normal(0, 0.002, 8)
    assert verdict(up, base).verdict == HELD
    assert verdict(down, base).verdict == DID_NOT_HOLD
    assert verdict(same, base, margin=0.0).verdict == NOT_DISTINGUISHABLE
    assert verdict(down, base, "less").verdict == HELD
    assert verdict(same, base, "equivalent", 0.005).verdict == HELD
    assert verdict(up, base, "equivalent", 0.005).verdict == DID_NOT_HOLD
    # "matches or beats": a small loss within the margin holds, a clear loss beyond it does not
    assert verdict(base - 0.002 + rng.normal(0, 0.0005, 8), base, "noninferior", 0.005).verdict == HELD
    assert verdict(down, base, "noninferior", 0.005).verdict == DID_NOT_HOLD
    v = verdict(same, base)
    assert v.half_width > 0 and v.mde > v.half_width and 0 < v.p_sign_flip <= 1 and 0 <= v.p_value <= 1
    # pairing matters: a constant +0.001 shift on noisy runs is held only when paired
    noisy = rng.normal(0.85, 0.02, 8)
    assert verdict(noisy + 0.001, noisy).verdict == HELD
    assert verdict(noisy + 0.001, rng.permutation(noisy)).verdict != HELD


def test_too_few_seeds_carry_no_verdict_and_bad_input_is_refused():
    v = verdict([0.9, 0.91], [0.8, 0.8])
    assert v.verdict == NOT_DISTINGUISHABLE and "no verdict" in v.note and np.isnan(v.ci_low)
    with pytest.raises(ValueError, match="paired by seed"):
        verdict([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        verdict([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="known: greater, less, noninferior, equivalent"):
        verdict([1, 2, 3], [1, 2, 3], "bigger")


@pytest.mark.parametrize("effect", [0.5, 1.0, 2.0])
def test_pairs_needed_reach_their_power_and_one_fewer_does_not(effect):
    """At the n `pairs_needed` returns, a true difference ``effect`` (sd 1, normal) is called "held" by the verdict
    rule at least 80% of the time; at n - 1 less than 80% (Monte Carlo, SIMS experiments per n)."""
    n = pairs_needed(1.0, effect)
    rng = np.random.default_rng(7)
    rate = lambda m: (decide(rng.normal(effect, 1.0, size=(SIMS, m)))[0] == 1).mean()
    tol = 3 * np.sqrt(0.8 * 0.2 / SIMS)
    assert rate(n) >= 0.8 - tol
    if n > 2:
        assert rate(n - 1) < 0.8 + tol
    assert pairs_needed(1.0, 0.01) is None and pairs_needed(0.0, 0.1) == 2
    with pytest.raises(ValueError, match="effect > 0"):
        pairs_needed(1.0, 0.0)


def test_sd_from_half_width_inverts_the_interval():
    d = np.random.default_rng(3).normal(size=(5, 6))
    t = paired_t(d)
    assert np.allclose([sd_from_half_width(h, 6) for h in t["half_width"]], d.std(-1, ddof=1))


def test_seeds_needed_reads_a_profiles_verdicts(tmp_path, monkeypatch):
    """`report.seeds_needed` turns each recorded interval back into its spread and plans the seeds from it."""
    monkeypatch.setenv("DYNAPRUNE_FIGURES", str(tmp_path))
    rows = [claims.test("omission_ablation", a, b) for a, b in
            (([0.90, 0.91, 0.905], [0.899, 0.907, 0.906]), ([0.90, 0.95, 0.85], [0.90, 0.91, 0.905]))]
    report.key_numbers("06_ablations", profile="smoke", device="cpu", seeds=[0, 1, 2], verdicts=rows)
    t = report.seeds_needed("smoke")
    sd = [np.std(np.subtract(a, b), ddof=1) for a, b in (([0.90, 0.91, 0.905], [0.899, 0.907, 0.906]),
                                                        ([0.90, 0.95, 0.85], [0.90, 0.91, 0.905]))]
    assert np.allclose(t["sd"], sd) and t["needed"].iloc[0] == pairs_needed(sd[0], 0.005) and t["needed"].isna().iloc[1]


def test_claims_refuse_unequal_budgets_and_unknown_keys():
    with pytest.raises(ValueError, match="equal budgets"):
        claims.test("omission_vs_random", [1, 2, 3], [1, 2, 3], budgets=(0.30, 0.35))
    with pytest.raises(ValueError, match="known: omission_vs_random"):
        claims.test("nope", [1], [1])
    row = claims.test("infobatch_lossless", [0.85, 0.86, 0.855], [0.851, 0.859, 0.856], budgets=(0.7, 1.0))
    assert row["paper"] == "InfoBatch" and row["share_a"] == 0.7 and row["verdict"] in (HELD, NOT_DISTINGUISHABLE)


def test_readme_verdict_table_is_generated():
    """The README's verdict table is exactly `python -m dynaprune.report verdicts` of the committed numbers."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- verdicts:start -->\n(.*?)\n<!-- verdicts:end -->", text, re.S)
    assert m, "README lacks the generated verdict table markers"
    assert m.group(1).strip() == readme.verdict_table(ROOT / "figures").strip()
    # and its budget-curve table is notebook 05's numbers, every cell of the curves in it
    m = re.search(r"<!-- curves:start -->\n(.*?)\n<!-- curves:end -->", text, re.S)
    assert m, "README lacks the generated budget-curve table markers"
    assert m.group(1).strip() == readme.curve_markdown(ROOT / "figures").strip()
    cells = json.loads((ROOT / "figures" / "05_budget_curves_numbers.json").read_text())["numbers"]["cells"]
    assert all(f"{100 * c['acc']:.2f} [{100 * c['ci_low']:.2f}, {100 * c['ci_high']:.2f}]" in m.group(1) for c in cells.values())
