"""Every paper claim the workbook tests, as data: which paper, where, what it says, the paper's own
number where it gives one, and the comparison that tests it (runs A and B, the metric, the
direction). Notebooks compute the paired values and call `test`; the verdict comes from
`dynaprune.stats.verdict`, and `record` stores it, labelled, in the notebook's numbers file, from
which `python -m dynaprune.report verdicts` builds the README's table.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .stats import verdict


@dataclass(frozen=True)
class Claim:
    key: str
    paper: str            # bibliography key, e.g. "Omission"
    where: str            # figure / table / section
    statement: str        # what the paper says, in a sentence
    notebook: str         # the notebook that tests it
    a: str                # run(s) A
    b: str                # run(s) B
    metric: str = "final test accuracy"
    direction: str = "greater"   # A > B ("greater"), A < B ("less"), A >= B - margin ("noninferior": "matches or
                                 # beats"), A = B within margin ("equivalent": "matches", "lossless")
    margin: float = 0.0
    margin_source: str = ""       # where the margin comes from (the paper's own difference, or our stated default)
    paper_number: str = ""        # the paper's own number, where it gives one
    budgets: str = "equal"        # "equal" (compared runs within 0.02 of each other) or "unequal" (the claim is about budgets)
    curve: tuple = ()             # (method A, method B) in the budget curves of 05 (`grids.curve_cells`), if tested there
    keep_ratios: tuple = ()       # the keep ratios at which the paper makes the claim (tested there on the curves);
                                  # None: at the methods' own budgets (cells with keep_ratio None)
    departure: str = ""           # how the test departs from the paper's setting, where the regime label does not say it


# "Matches" / "lossless" / "insensitive" claims are equivalence tests; a paper that says "lossless" gives no margin, so
# ours is stated: 0.5 points of accuracy, about the seed-to-seed spread of the papers' own CIFAR-10 tables
# ([InfoBatch] and [Omission] report +- 0.1-0.3 over seeds) and of one run's validation accuracy here (0.4 points).
DEFAULT_MARGIN = 0.005
DEFAULT_MARGIN_SOURCE = "our default (0.5 points: the papers give none)"


CLAIMS = {c.key: c for c in [
    Claim("omission_vs_random", "Omission", "Tables 1-2", "Omission beats random pruning at the same keep ratio",
          "05_method_comparison", "omission", "random (per epoch)", curve=("omission", "random"),
          keep_ratios=(0.5,)),     # [Omission] §6: "we adopt a fixed 50% sampling ratio in our experiments"
    Claim("omission_vs_reduce_epochs", "Omission", "§5", "Omission beats training fewer epochs (Reducing Epoch) at the same budget",
          "05_method_comparison", "omission", "reduce_epochs", curve=("omission", "reduce_epochs"), keep_ratios=(0.5,)),
    Claim("ucb_vs_random_dynamic", "Raju", "Fig. 2a", "UCB matches or beats random dynamic pruning at the same pruning rate and T_p",
          "05_method_comparison", "ucb", "random_dynamic", direction="noninferior", margin=DEFAULT_MARGIN,
          margin_source=DEFAULT_MARGIN_SOURCE, curve=("ucb", "random_dynamic"), keep_ratios=(0.2, 0.3)),  # [Raju] §4: "Below 50% of the data pruned, all methods appear to perform equally well"
    Claim("extra_forward_bernoulli_best", "Omission", "Table 1", "with an extra forward, Bernoulli sampling from the "
          "optimal distribution (Extra Forward Bernoulli) beats the other extra-forward methods (here: the best of "
          "Weighted Replacement and Selective Backprop)", "05_method_comparison", "extra_forward_bernoulli",
          "best of the extra-forward group"),
    Claim("omission_best_historical", "Omission", "Table 2", "among methods using historical statistics, Omission "
          "beats the others (here: the best of InfoBatch, Historical Replacement and Historical Ranking)",
          "05_method_comparison", "omission", "best of the historical group"),
    Claim("infobatch_loss_higher", "Omission", "Figs. 1-2", "InfoBatch ends with a higher training loss than Omission "
          "at the same budget", "05_method_comparison", "infobatch", "omission",
          metric="final training-set loss"),
    Claim("dynamic_vs_static", "Raju", "Fig. 2a", "dynamic pruning (UCB) beats static pruning (EL2N scores) at the "
          "same pruning rate", "05_method_comparison", "ucb", "el2n", curve=("ucb", "el2n"), keep_ratios=(0.2, 0.3)),
    Claim("static_below_full_seen", "Raju", "Fig. 5", "at equal samples seen (a pruned run trained for E / keep_ratio "
          "epochs), static pruning (EL2N) stays below full-data training", "05_method_comparison", "el2n, E / rho epochs",
          "full", direction="less", departure="[Raju] Fig. 5 is at 80% pruned; tested here at the "
          "single-budget comparison's keep ratio"),
    Claim("dynamic_matches_full_seen", "Raju", "Fig. 5", "at equal samples seen, dynamic pruning (UCB) reaches full-data "
          "accuracy (within 0.5 points)", "05_method_comparison", "ucb, E / rho epochs", "full",
          direction="equivalent", margin=DEFAULT_MARGIN, margin_source=DEFAULT_MARGIN_SOURCE,
          departure="[Raju] Fig. 5 is at 80% pruned; tested here at the single-budget comparison's keep ratio"),
    Claim("infobatch_lossless", "InfoBatch", "abstract", "InfoBatch is lossless: its accuracy equals full-data training "
          "(within 0.5 points here) while it saves backprops", "05_method_comparison", "infobatch (r=0.5)", "full",
          direction="equivalent", margin=DEFAULT_MARGIN,
          margin_source=DEFAULT_MARGIN_SOURCE, paper_number="lossless on CIFAR-10/100, ImageNet", budgets="unequal",
          curve=("infobatch", "full"), keep_ratios=(None,)),   # None: each at its own budget (InfoBatch: r = 0.5, delta = 0.875)
    Claim("es_lossless", "ES", "abstract, Table 2", "ES is lossless: at its own budget (b / B = 25%, annealing) its "
          "accuracy equals full-data training (within 0.5 points here) while it saves backprops", "05_method_comparison",
          "es (b/B=0.25)", "full", direction="equivalent", margin=DEFAULT_MARGIN,
          margin_source=DEFAULT_MARGIN_SOURCE,
          paper_number="lossless on CIFAR-10/100 (Table 2), 'the only algorithm that achieves lossless accelerations'",
          budgets="unequal", curve=("es", "full"), keep_ratios=(None,)),
    Claim("online_is_vs_uniform", "OnlineIS", "Table 1", "importance sampling with output-gradient norms beats uniform "
          "sampling at equal steps", "05_method_comparison", "online_is", "full", budgets="equal",
          departure="[OnlineIS] Table 1 trains with SGD at lr 0.003-0.007 and exponential decay (CIFAR) or Adam (point "
          "clouds); here the shared recipe (SGD, warm-up + cosine, lr chosen on validation)"),
    # rows the committed runs support (issue: the field's claims the study already has the data for)
    Claim("random_dynamic_vs_static", "Raju", "§4.2", "random dynamic pruning outperforms the static baselines (here "
          "EL2N) at aggressive pruning", "05_method_comparison", "random_dynamic", "el2n",
          curve=("random_dynamic", "el2n"), keep_ratios=(0.2, 0.3)),   # [Raju] §4.2: "it suffers only a 3.5% drop ... at 80%"
    Claim("eps_greedy_vs_uncertainty", "Raju", "§4", "epsilon-greedy improves slightly over uncertainty with the EMA",
          "05_method_comparison", "epsilon_greedy", "uncertainty_ema",
          departure="[Raju] Fig. 2a shows it at 60-80% pruned; tested here at the single-budget comparison's keep ratio"),
    Claim("ucb_vs_uncertainty", "Raju", "§4", "UCB improves slightly over uncertainty with the EMA",
          "05_method_comparison", "ucb", "uncertainty_ema",
          departure="[Raju] Fig. 2a shows it at 60-80% pruned; tested here at the single-budget comparison's keep ratio"),
    Claim("reduce_epochs_vs_scaled", "Omission", "§5", "Reducing Epoch in general performs better than Reducing Epoch "
          "(scaled: the learning rate raised by the ratio of the reduced epochs)", "05_method_comparison",
          "reduce_epochs", "reduce_epochs_scaled"),
    Claim("omission_implementations", "Omission", "§5", "the two implementations (1: Bernoulli on a meta-batch of 2b; "
          "2: probabilities over all n at the epoch's start) perform alike (within 0.5 points here)",
          "05_method_comparison", "omission_batch", "omission", direction="equivalent", margin=DEFAULT_MARGIN,
          margin_source=DEFAULT_MARGIN_SOURCE + "; the paper: 'little performance differences'"),
    Claim("infobatch_annealing", "InfoBatch", "poster, Annealing", "annealing (full data in the last epochs, from "
          "delta = 0.875 of the run) beats no annealing (delta = 1)", "06_ablations", "delta=0.875", "delta=1.0",
          budgets="unequal"),
    Claim("raju_period", "Raju", "App. F", "a pruning period as long as the paper's (T_p = 10 of 200 epochs) costs "
          "little accuracy against shorter ones: here a longer period is not worse than the regime's by more than 0.5 "
          "points", "06_ablations", "longer T_p", "T_p of the regime", direction="noninferior", margin=DEFAULT_MARGIN,
          margin_source=DEFAULT_MARGIN_SOURCE, budgets="unequal",
          departure="[Raju] App. F sweeps T_p within its 200-epoch schedule; here a 10-epoch run"),
    Claim("omission_ablation", "Omission", "Table 5", "each component of Omission helps: removing it lowers accuracy",
          "06_ablations", "Omission", "Omission minus one component"),
    Claim("es_ablation", "ES", "Table 5", "annealing plus decoupled EMA (ES) beats the plain loss at the same budget",
          "06_ablations", "Loss + A + DE (ES)", "Loss"),
    Claim("raju_eps_insensitive", "Raju", "§4", "accuracy is insensitive to epsilon-greedy's epsilon "
          "(here 0.05 vs 0.3, within 0.5 points)", "06_ablations", "eps=0.05", "eps=0.3", direction="equivalent",
          margin=DEFAULT_MARGIN, margin_source=DEFAULT_MARGIN_SOURCE),
    Claim("raju_c_insensitive", "Raju", "§4", "accuracy is insensitive to UCB's c (here 0 vs 4, within 0.5 points)",
          "06_ablations", "c=0.0", "c=4.0", direction="equivalent", margin=DEFAULT_MARGIN,
          margin_source=DEFAULT_MARGIN_SOURCE),
    Claim("es_label_noise", "ES", "Table 4", "ES beats full-data training under 40% label noise",
          "07_label_noise", "es", "full", budgets="unequal"),
    Claim("es_ablation_noise", "ES", "Table 5", "under heavy label noise, ES beats sampling by the loss alone at the same "
          "budget", "07_label_noise", "Loss + A + DE (ES)", "Loss"),
    Claim("loss_greedy_noise", "ES", "Table 4", "under heavy label noise, loss-greedy selection (Ordered SGD) loses to "
          "full-data training", "07_label_noise", "ordered_sgd", "full", direction="less", budgets="unequal"),
    Claim("online_prune_vs_random", "OnlineIS", "Fig. 3", "pruning by importance beats pruning at random at the same rate",
          "08_online_pruning", "online_prune", "random, same rate"),
    Claim("ucb_vs_random_dynamic_imbalanced", "Raju", "Fig. 8a", "on imbalanced data at aggressive pruning (70% here), "
          "UCB beats random dynamic pruning", "04_selection_distribution", "ucb", "random_dynamic"),
    Claim("ucb_matches_random_dynamic_downsampled", "Raju", "Fig. 9a", "on downsampled data, UCB matches random dynamic "
          "pruning (within 0.5 points)", "04_selection_distribution", "ucb", "random_dynamic", direction="equivalent",
          margin=DEFAULT_MARGIN, margin_source=DEFAULT_MARGIN_SOURCE),
    Claim("uncertainty_below_random_dynamic_downsampled", "Raju", "Fig. 9a", "on downsampled data, uncertainty-EMA is "
          "worse than random dynamic pruning", "04_selection_distribution", "uncertainty_ema", "random_dynamic",
          direction="less"),
    # the field since the five papers (tested on the budget curves once a profile's curves run them)
    Claim("rs2_vs_static", "RS2", "abstract, Table 1", "repeated random sampling without replacement (RS2) beats "
          "static pruning (here EL2N scores) at the same per-round budget in the high-compression regime",
          "05_method_comparison", "rs2", "el2n", curve=("rs2", "el2n"), keep_ratios=(0.1,),
          paper_number="'up to 29%' more accuracy than competing pruning methods on ImageNet below 10% per round",
          departure="[RS2]'s headline is ImageNet below 10% of the data per round; tested here at keep ratio 0.1"),
    Claim("seta_lossless", "SeTa", "abstract", "SeTa saves backprops while maintaining or improving accuracy: at its "
          "own budget it is not worse than full-data training by more than 0.5 points", "05_method_comparison",
          "seta", "full", direction="noninferior", margin=DEFAULT_MARGIN, margin_source=DEFAULT_MARGIN_SOURCE,
          paper_number="'reduces training costs by up to 50% while maintaining or improving performance'",
          budgets="unequal", curve=("seta", "full"), keep_ratios=(None,)),
    Claim("ies_lossless", "IES", "abstract", "IES leaves mastered samples out of backpropagation while maintaining or "
          "slightly improving accuracy: at its own budget it is not worse than full-data training by more than 0.5 "
          "points", "05_method_comparison", "ies", "full", direction="noninferior", margin=DEFAULT_MARGIN,
          margin_source=DEFAULT_MARGIN_SOURCE,
          paper_number="'reduce backpropagation instances by 10%-50% while maintaining or even slightly improving the "
                       "test accuracy'", budgets="unequal", curve=("ies", "full"), keep_ratios=(None,)),
    Claim("rho_loss_vs_uniform", "RHO-LOSS", "abstract, Fig. 1", "selecting the points with the highest reducible "
          "holdout loss (RHO-LOSS) beats uniform selection (random pruning) at the same budget", "05_method_comparison",
          "rho_loss", "random", curve=("rho_loss", "random"), keep_ratios=(0.2,),
          paper_number="'trains in far fewer steps than prior art, improves accuracy'",
          departure="keep ratio 0.2 is [RHO-LOSS]'s n_b / n_B = 0.1 plus its IL model's 0.1 of the budget (the paper "
                    "counts the target model's steps only, the IL model amortised); the IL model learns from a held-out "
                    "split the other methods do not see (where the pool has no room beside the training set, as on v3's "
                    "full Fashion-MNIST, RHO-LOSS trains on 10/11 of the others' training set and holds out the rest, "
                    "its keep ratio a share of its own); SGD with the shared recipe where the official code uses AdamW"),
    Claim("always_plus_random", "Raju", "Table 1", "the always set plus random sometimes samples beats a static subset "
          "of the same size", "04_selection_distribution", "always + random", "static top-k"),
]}


def of(method: str) -> list[Claim]:
    """The claims about ``method``: those it is an arm of on the budget curves, and those of its card's paper
    (`samplers.Method.paper`)."""
    from .samplers import card
    paper = card(method).paper
    return [c for c in CLAIMS.values() if method in c.curve or (paper is not None and c.paper == paper)]


def curve_cells(cells, keys=None) -> list:
    """The cells among ``cells`` ((method, keep_ratio) pairs, e.g. the budget curves') on which a claim is tested: each
    claim's two curve methods at each keep ratio its paper makes it at (None: the methods' own budgets), where both arms
    are among ``cells``, in the claims' order, no cell twice (a claim whose method is not among them asks for nothing).
    ``keys``: these claims only (default: every claim)."""
    have = set(cells)
    unknown = sorted(set(keys or ()) - set(CLAIMS))
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; known: {', '.join(CLAIMS)}")
    pairs = [[(m, None if r is None else float(r)) for m in c.curve] for c in CLAIMS.values() if c.curve
             and (keys is None or c.key in keys) for r in c.keep_ratios]
    return list(dict.fromkeys(x for p in pairs if all(x in have for x in p) for x in p))


def test(key: str, a, b, *, seeds=None, budgets=None, condition: str = "", regime: str = "") -> dict:
    """The verdict on claim ``key`` from paired values ``a``, ``b`` (same seeds, same order).
    ``budgets``: measured backprop share of A and B (mean over seeds), recorded next to the verdict;
    for an equal-budget claim, runs more than 0.02 apart are refused. ``regime``: how the compared runs
    depart from their methods' paper regimes (`regimes.outside`), shown with the verdict."""
    if key not in CLAIMS:
        raise ValueError(f"unknown claim {key!r}; known: {', '.join(CLAIMS)}")
    c = CLAIMS[key]
    if budgets is not None and c.budgets == "equal" and abs(budgets[0] - budgets[1]) > 0.02:
        raise ValueError(f"claim {key}: compared runs must have equal budgets (within 0.02), got measured "
                         f"shares {budgets[0]:.3f} and {budgets[1]:.3f}")
    v = verdict(a, b, c.direction, c.margin).as_dict()
    # no interval or test (too few seeds): None, not NaN
    v.update({k: (None if v[k] != v[k] else v[k]) for k in ("ci_low", "ci_high", "p_value", "p_sign_flip", "half_width", "mde")})
    return dict({k: x for k, x in asdict(c).items() if k not in ("key", "curve", "keep_ratios")}, claim=key, **v, condition=condition, regime=regime,
                seeds=None if seeds is None else [int(s) for s in seeds],
                share_a=None if budgets is None else float(budgets[0]),
                share_b=None if budgets is None else float(budgets[1]),
                a_mean=float(sum(a) / len(a)), b_mean=float(sum(b) / len(b)))
