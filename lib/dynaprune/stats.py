"""One verdict function for every claim the workbook tests.

A claim compares two methods (or a method and a reference) run with the same seeds. Seed s gives
both the same initialisation and, where the methods allow, the same data order, so the comparison
is paired: d_s = metric(A, s) - metric(B, s). The verdict rests on the mean of d and its 95%
confidence interval from scipy's bootstrap (BCa where the data allow it, percentile otherwise):

- direction ``"greater"`` (A is better than B by more than ``margin``): *held* when the interval lies
  above ``margin``, *did not hold* when it lies below 0, otherwise *not distinguishable at this scale*;
- ``"less"``: the mirror image;
- ``"equivalent"`` (A matches B within ``margin``, e.g. InfoBatch's "lossless"): *held* when the
  interval lies inside [-margin, margin], *did not hold* when it lies wholly outside it, otherwise
  not distinguishable.

Fewer than ``min_seeds`` pairs carry no verdict ("not distinguishable at this scale", with the
reason): a bootstrap over two numbers is not an interval.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

HELD, NOT_DISTINGUISHABLE, DID_NOT_HOLD = "held", "not distinguishable at this scale", "did not hold"
VERDICTS = (HELD, NOT_DISTINGUISHABLE, DID_NOT_HOLD)
DIRECTIONS = ("greater", "less", "equivalent")
MIN_SEEDS = 3


@dataclass
class Verdict:
    """The outcome of one paired comparison (A - B over seeds)."""
    verdict: str
    mean_diff: float
    ci_low: float
    ci_high: float
    n_pairs: int
    direction: str
    margin: float
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self):
        ci = "" if not np.isfinite(self.ci_low) else f", 95% CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}]"
        return f"{self.verdict} (A - B = {self.mean_diff:+.4f}{ci}, {self.n_pairs} paired seeds{'; ' + self.note if self.note else ''})"


def paired_ci(diffs, confidence: float = 0.95, seed: int = 0, n_resamples: int = 9999):
    """(low, high) bootstrap interval of the mean of paired differences (scipy.stats.bootstrap)."""
    from scipy import stats
    d = np.asarray(diffs, dtype=float)
    if np.ptp(d) == 0:                       # all equal: the interval is the point
        return float(d[0]), float(d[0])
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"):
            try:
                ci = stats.bootstrap((d,), np.mean, confidence_level=confidence, method=method,
                                     n_resamples=n_resamples, rng=np.random.default_rng(seed)).confidence_interval
            except Exception:                 # BCa can fail on degenerate resamples
                continue
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            return float(ci.low), float(ci.high)
    return float("nan"), float("nan")


def verdict(a, b, direction: str = "greater", margin: float = 0.0, min_seeds: int = MIN_SEEDS,
            confidence: float = 0.95) -> Verdict:
    """Paired verdict on A vs B: ``a[i]`` and ``b[i]`` come from the same seed (see the module doc)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; known: {', '.join(DIRECTIONS)}")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D and paired by seed, got shapes {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("a and b must be finite (a diverged run is a result: give its accuracy, not NaN)")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    d = a - b
    n = len(d)
    if n == 0:
        raise ValueError("no paired seeds")
    if n < min_seeds:
        return Verdict(NOT_DISTINGUISHABLE, float(d.mean()), float("nan"), float("nan"), n, direction, margin,
                       f"{n} seed(s) < {min_seeds}: no interval, no verdict")
    lo, hi = paired_ci(d, confidence)
    if direction == "less":
        lo, hi, flip = -hi, -lo, True
    else:
        flip = False
    if direction == "equivalent":
        v = HELD if (-margin <= lo and hi <= margin) else DID_NOT_HOLD if (hi < -margin or lo > margin) \
            else NOT_DISTINGUISHABLE
    else:
        v = HELD if lo > margin else DID_NOT_HOLD if hi < 0 else NOT_DISTINGUISHABLE
    if flip:
        lo, hi = -hi, -lo
    return Verdict(v, float(d.mean()), lo, hi, n, direction, margin)
