"""The verdict function and the claims table: properties, not examples."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dynaprune import claims, report
from dynaprune.stats import DID_NOT_HOLD, HELD, NOT_DISTINGUISHABLE, paired_ci, verdict

ROOT = Path(__file__).resolve().parents[1]


def test_bootstrap_interval_covers_the_mean_about_95_percent():
    """Over 300 simulated experiments of 10 paired seeds (d ~ N(0.3, 1)), the 95% interval contains the
    true mean in 88-99% of them (BCa is a little optimistic at n = 10; a broken interval is far off)."""
    rng = np.random.default_rng(1)
    hits = [lo <= 0.3 <= hi for lo, hi in (paired_ci(rng.normal(0.3, 1, 10), n_resamples=2000, seed=i)
                                            for i in range(300))]
    assert 0.88 <= np.mean(hits) <= 0.99, np.mean(hits)


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
    with pytest.raises(ValueError, match="known: greater, less, equivalent"):
        verdict([1, 2, 3], [1, 2, 3], "bigger")


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
    assert m.group(1).strip() == report.verdict_table(ROOT / "figures").strip()
    # and its budget-curve table is notebook 05's numbers, every cell of the curves in it
    m = re.search(r"<!-- curves:start -->\n(.*?)\n<!-- curves:end -->", text, re.S)
    assert m, "README lacks the generated budget-curve table markers"
    assert m.group(1).strip() == report.curve_markdown(ROOT / "figures").strip()
    cells = json.loads((ROOT / "figures" / "05_budget_curves_numbers.json").read_text())["numbers"]["cells"]
    assert all(f"{100 * c['acc']:.2f} [{100 * c['ci_low']:.2f}, {100 * c['ci_high']:.2f}]" in m.group(1) for c in cells.values())
