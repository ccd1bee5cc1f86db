"""One verdict function for every claim the workbook tests, valid at the 3-10 seeds the study can afford.

A claim compares two methods (or a method and a reference) run with the same seeds. Seed s gives
both the same initialisation and, where the methods allow, the same data order, so the comparison
is paired: d_s = metric(A, s) - metric(B, s). The verdict rests on the mean of d and its 95% paired
Student t interval, mean(d) +- t_{0.975, n-1} sd(d) / sqrt(n) (scipy.stats.t). A bootstrap over 3-5
pairs is not used: with 3 pairs it has 10 distinct resamples and its interval lies inside [min d, max d],
so it calls about 28% of no-effect comparisons decisive at 3 seeds and 10-17% at 5-10
(`tests/test_stats.py` measures both by simulation). The t interval keeps its 95% at every n >= 2 for
normal differences and errs on the safe side for symmetric heavy-tailed ones.

- direction ``"greater"`` (A is better than B by more than ``margin``): *held* when the interval lies
  above ``margin``, *did not hold* when it lies below 0, otherwise *not distinguishable at this scale*;
- ``"less"``: the mirror image;
- ``"noninferior"`` (A is not worse than B by more than ``margin``: "matches or beats"): *held* when the
  interval lies above -margin, *did not hold* when it lies below -margin;
- ``"equivalent"`` (A matches B within ``margin``: "matches", "lossless"): *held* when the interval lies
  inside [-margin, margin] (two one-sided tests, TOST, each at 2.5%), *did not hold* when it lies wholly
  outside it, otherwise not distinguishable.

Each outcome is a one-sided test at 2.5%, so a decisive verdict has ``p < 0.05`` where ``p`` is twice the
smaller one-sided p-value of the two outcomes (the row's p-value, the one `holm` adjusts over a table).
Beside it: the exact sign-flip p-value of "A = B" (scipy.stats.permutation_test over all 2^n sign
patterns: assumes only a distribution symmetric about 0 under no effect; its smallest value is 2 / 2^n,
0.25 at 3 seeds, so at 3 seeds it can never reject: the t interval's decisions rest on normality there),
the interval's half-width, and the smallest true difference the row had an 80% chance to detect
(``mde``: (t_{0.975} + t_{0.80}) sd / sqrt(n), at the observed spread): a "not distinguishable" row rules
out differences beyond its interval, and says it could not have seen one below ``mde``.

Fewer than ``min_seeds`` pairs carry no verdict ("not distinguishable at this scale", with the reason).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

HELD, NOT_DISTINGUISHABLE, DID_NOT_HOLD = "held", "not distinguishable at this scale", "did not hold"
INVALID = "invalid"          # prefix of a row whose arm collapsed outside its paper's regime (`report.compare`)
VERDICTS = (HELD, NOT_DISTINGUISHABLE, DID_NOT_HOLD)
DIRECTIONS = ("greater", "less", "noninferior", "equivalent")
MIN_SEEDS = 3
ALPHA = 0.05                 # two-sided: each outcome is a one-sided test at ALPHA / 2
POWER = 0.80                 # of the minimum detectable effect


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
    p_value: float = float("nan")        # of the verdict's test (decisive iff < ALPHA); what `holm` adjusts
    p_sign_flip: float = float("nan")    # exact sign-flip p-value of A = B
    half_width: float = float("nan")     # of the 95% interval
    mde: float = float("nan")            # smallest difference detectable with 80% power at the observed spread

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self):
        ci = "" if not np.isfinite(self.ci_low) else f", 95% CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}]"
        return f"{self.verdict} (A - B = {self.mean_diff:+.4f}{ci}, {self.n_pairs} paired seeds{'; ' + self.note if self.note else ''})"


def paired_t(d, confidence: float = 1 - ALPHA):
    """Paired Student t statistics of differences ``d`` along the last axis (vectorised: a (sims, n) array
    gives arrays): dict of mean, se, lo, hi (the ``confidence`` interval), half_width, mde (80% power) and df."""
    from scipy import stats
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    if n < 2:
        raise ValueError(f"a t interval needs >= 2 paired differences, got {n}")
    mean, se = d.mean(-1), d.std(-1, ddof=1) / np.sqrt(n)
    tq = stats.t.ppf(0.5 + confidence / 2, n - 1)
    hw = tq * se
    return dict(mean=mean, se=se, lo=mean - hw, hi=mean + hw, half_width=hw,
                mde=(tq + stats.t.ppf(POWER, n - 1)) * se, df=n - 1)


def mean_ci(x, confidence: float = 1 - ALPHA) -> tuple[float, float]:
    """(low, high) Student t interval of the mean of ``x`` (e.g. a cell's accuracies over seeds)."""
    t = paired_t(x, confidence)
    return float(t["lo"]), float(t["hi"])


def _one_sided(mean, se, null, df, upper: bool):
    """t p-value of H0: mu <= null (``upper``: the evidence is mu > null) or of H0: mu >= null; where every
    difference is equal (se = 0), 0 if the mean lies strictly on the evidence's side, else 1."""
    from scipy import stats
    gap = np.asarray(mean - null if upper else null - mean, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = stats.t.sf(gap / se, df)
    return np.where(se > 0, p, np.where(gap > 0, 0.0, 1.0))


def decide(d, direction: str = "greater", margin: float = 0.0, confidence: float = 1 - ALPHA):
    """The verdict rule, vectorised over the last axis of ``d`` (paired differences A - B): returns
    (outcome codes, +1 held / -1 did not hold / 0 not distinguishable; the row's p-value; `paired_t`'s dict).
    The code every verdict and the no-effect simulation in the tests go through."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; known: {', '.join(DIRECTIONS)}")
    t = paired_t(d, confidence)
    above = lambda null: _one_sided(t["mean"], t["se"], null, t["df"], True)    # H0: mu <= null
    below = lambda null: _one_sided(t["mean"], t["se"], null, t["df"], False)   # H0: mu >= null
    if direction == "greater":
        p_held, p_dnh = above(margin), below(0.0)
    elif direction == "less":
        p_held, p_dnh = below(-margin), above(0.0)
    elif direction == "noninferior":
        p_held, p_dnh = above(-margin), below(-margin)
    else:   # equivalent: TOST for held; the nearer one-sided test outside the margin for did not hold
        p_held = np.maximum(above(-margin), below(margin))
        p_dnh = np.minimum(below(-margin), above(margin))
    a = (1 - confidence) / 2
    code = np.where(p_held < a, 1, np.where(p_dnh < a, -1, 0))
    return code, np.minimum(1.0, 2 * np.minimum(p_held, p_dnh)), t


def sign_flip_p(d) -> float:
    """Exact two-sided sign-flip (permutation) p-value of "the differences are symmetric about 0"
    (scipy.stats.permutation_test, every one of the 2^n sign patterns; its smallest value is 2 / 2^n)."""
    from scipy import stats
    d = np.asarray(d, dtype=float)
    if not np.any(d):
        return 1.0
    res = stats.permutation_test((d,), lambda x, axis=-1: np.mean(x, axis=axis), permutation_type="samples",
                                 alternative="two-sided", n_resamples=np.inf, vectorized=True)
    return float(min(1.0, res.pvalue))


def verdict(a, b, direction: str = "greater", margin: float = 0.0, min_seeds: int = MIN_SEEDS,
            confidence: float = 1 - ALPHA) -> Verdict:
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
    code, p, t = decide(d, direction, margin, confidence)
    v = {1: HELD, -1: DID_NOT_HOLD, 0: NOT_DISTINGUISHABLE}[int(code)]
    return Verdict(v, float(t["mean"]), float(t["lo"]), float(t["hi"]), n, direction, margin, p_value=float(p),
                   p_sign_flip=sign_flip_p(d), half_width=float(t["half_width"]), mde=float(t["mde"]))


def pairs_needed(sd: float, effect: float, power: float = POWER, max_n: int = 200) -> int | None:
    """The fewest paired seeds n (>= 2) at which a true difference ``effect`` is called (a one-sided t test at
    ALPHA / 2, a verdict's test) with probability ``power`` at spread ``sd`` of the differences: the noncentral t's
    P(T'_{n-1, effect sqrt(n) / sd} > t_{0.975, n-1}) >= power (scipy.stats.nct; exact for normal differences, where
    `paired_t`'s ``mde`` is its approximation). None when it takes more than ``max_n``. A planning number: ``sd`` from a
    few seeds is itself uncertain (at 3 seeds its 95% interval spans 0.52-6.3 times its value)."""
    from scipy import stats
    if not (sd >= 0 and effect > 0):
        raise ValueError(f"need sd >= 0 and effect > 0, got sd={sd}, effect={effect}")
    if sd == 0:
        return 2
    for n in range(2, max_n + 1):
        if stats.nct.sf(stats.t.ppf(1 - ALPHA / 2, n - 1), n - 1, effect * np.sqrt(n) / sd) >= power:
            return n
    return None


def sd_from_half_width(half_width: float, n: int, confidence: float = 1 - ALPHA) -> float:
    """The spread sd(d) of n paired differences behind a `paired_t` interval of ``half_width`` (its inverse)."""
    from scipy import stats
    return float(half_width * np.sqrt(n) / stats.t.ppf(0.5 + confidence / 2, n - 1))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of ``pvalues`` (NaN: not in the family, returned as NaN): the adjusted
    p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)) in ascending order, m the number of finite p-values.
    A row stays decisive at family-wise error ALPHA when its adjusted p-value is below ALPHA."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    if not len(idx):
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out[order] = adj
    return out
