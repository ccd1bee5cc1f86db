"""The fair protocol: diagnostics that name a collapse's cause, the validation split, learning rates
chosen on validation data only, the papers' regimes quoted and labelled."""
import math
from types import SimpleNamespace

import re
import numpy as np
import pytest
import torch

from dynaprune import profiles, regimes, samplers, tuning
from dynaprune.data import validation_split
from dynaprune.diagnose import CAUSES, break_epoch, cause, collapsed, diagnose
from dynaprune.train import run, setup


def _entry(r, key="k"):
    return dict(key=key, config=r.config.to_dict(), records=r.records, env=r.env)


def test_a_top_k_selector_that_cycles_is_named_class_cycling():
    """[Raju] eq. 2: greedy top-k by loss from an untrained model picks the classes it fits worst; after
    training on them, the others become the worst: the selected classes rotate."""
    c = profiles.base_config("smoke", sampler="uncertainty_ema", sampler_options={"keep_ratio": 0.2, "period": 1})
    r = run(c, use_cache=False)
    assert all(sum(x["class_hist"]) == x["backpropagated"] for x in r.records)
    assert cause(r.records)[0] == "class cycling"
    # the same budget drawn uniformly does not cycle
    u = run(c.replace(sampler="random"), use_cache=False)
    assert cause(u.records)[0] == "unexplained"


def test_a_learning_rate_that_blows_up_is_named():
    """KAKURENBO scales the learning rate by 1 / (1 - F_e): F = 0.9 stepping down by quarters gives
    F_1 = 0.72 in the second of 3 epochs, 3.6x the schedule."""
    c = profiles.base_config("smoke", sampler="kakurenbo", sampler_options={"max_fraction": 0.9, "lr_rule": "scheduled"})
    r = run(c, use_cache=False)
    assert max(x["lr_max"] / x["lr_sched_max"] for x in r.records) == pytest.approx(1 / (1 - 0.72))
    assert cause(r.records)[0] == "learning-rate blow-up"


def test_a_diverged_run_is_found_with_its_break_and_cause():
    c = profiles.base_config("smoke", lr=200.0, schedule="constant")
    r = run(c, use_cache=False)
    assert r.records[-1].get("diverged") and r.records[-1]["nonfinite_step"] >= 0
    e = _entry(r)
    [found] = collapsed([e])
    assert "diverged" in found["how"] and found["break_epoch"] == r.records[-1]["epoch"]
    d = diagnose([e])
    assert list(d["cause"]) == ["divergence"] and d["source"][0] == "recorded"


def test_non_finite_logits_with_a_finite_loss_stop_a_run_as_diverged():
    """A logit can overflow to -inf while the cross-entropy stays finite, and every sampler refuses such logits
    (`DynamicSampler._validate`): the engine records that step as the run's divergence instead of crashing (a run of
    05's quick profile crashed so)."""
    import torch
    from dynaprune.train import _diverged
    c = profiles.base_config("smoke")
    z = torch.tensor([[0.0, -float("inf")], [1.0, 0.0]])
    losses = torch.nn.functional.cross_entropy(z, torch.tensor([0, 0]), reduction="none")
    assert torch.isfinite(losses).all()
    rec = {}
    assert _diverged(rec, 3, c, losses, z) and rec == {"diverged": True, "nonfinite_step": 3}
    assert not _diverged(rec := {}, 3, c, losses) and not _diverged(rec, 3, c, losses[1:], z[1:]) and rec == {}
    assert _diverged({}, 0, c, torch.tensor([float("nan")]))


def test_a_scoring_pass_that_meets_a_diverged_model_ends_the_run_as_diverged():
    """[Raju]'s and KAKURENBO's scoring passes forward the whole set at a checkpoint; when the last update left the
    parameters non-finite, the pass records the divergence and nothing is observed or trained (before, the sampler
    refused the losses and the run crashed: a UCB run of the quick profile's curves)."""
    import torch

    def poison(epoch, model, data):           # the update at the end of epoch 0 "diverged"
        if epoch == 0:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
    for m, o in [("ucb", {"keep_ratio": 0.3, "period": 1}), ("kakurenbo", {})]:
        c = profiles.base_config("smoke", sampler=m, sampler_options=o, epochs=3)
        r = run(c, use_cache=False, callback=poison)
        assert [x["epoch"] for x in r.records] == [0, 1], m
        assert r.records[-1]["diverged"] and r.records[-1]["steps"] == 0 and r.records[-1]["nonfinite_step"] == 0, m


def test_weight_blow_up_and_the_vocabulary():
    base = dict(epoch=1, class_hist=[10] * 10, lr_max=0.1, lr_sched_max=0.1, w_mean=1.0)
    assert cause([dict(base, w_max=10.0)])[0] == "weight blow-up"
    assert cause([dict(base, w_max=1.0)])[0] == "unexplained"
    assert cause([dict(epoch=0, diverged=True)])[0] == "divergence"
    assert set(CAUSES) == {"learning-rate blow-up", "weight blow-up", "class cycling", "class skew", "divergence",
                           "constant output", "unexplained"}
    # a finite training loss stuck at ln 10 (uniform prediction over 10 classes) from the break on
    stuck = [dict(base, w_max=1.0, epoch=0, train_loss=0.67), dict(base, w_max=1.0, epoch=1, train_loss=2.3413)]
    assert cause(stuck)[0] == "constant output"
    assert cause([dict(base, w_max=1.0, epoch=1, train_loss=1.2)])[0] == "unexplained"
    # Selective Backprop at keep ratio 0.1, lr 0.2 (a cpu tuning run): its hardest-loss samples' loss stays above ln 10
    # while the network ends predicting uniformly; the final held-out loss shows it
    spike = [dict(base, w_max=1.0, epoch=3, train_loss=2.2065), dict(base, w_max=1.0, epoch=4, train_loss=3.4358)]
    assert cause(spike, evals=[dict(epoch=9, val_loss=2.30258515625, test_loss=2.30258525)])[0] == "constant output"
    assert cause(spike, evals=[dict(epoch=9, val_loss=2.25, test_loss=2.30258525)])[0] == "unexplained"
    assert cause(spike, evals=[dict(epoch=9, test_loss=0.4)])[0] == "unexplained"
    # [ES] at lr 0.2 (a cpu side tuning run): 0.26% off ln 10 with accuracy at chance, after the break; before it, no
    near = dict(val_loss=2.2966, val_acc=0.1024, test_acc=0.0987)
    assert cause(spike, evals=[dict(near, epoch=4), dict(epoch=9, val_loss=2.2613, val_acc=0.118)])[0] == "constant output"
    assert cause(spike, evals=[dict(near, epoch=4, val_acc=0.35)])[0] == "unexplained"
    assert cause(spike, evals=[dict(near, epoch=2)])[0] == "unexplained"
    # UCB with 2 checkpoints per epoch under label noise (cpu, 07): each epoch's histogram averages two selections, in
    # different classes, so a cycling run shows about half the distance
    hist = lambda top: [30 if c in top else 10 for c in range(10)]
    two = [dict(base, w_max=1.0, epoch=e, class_hist=hist(t)) for e, t in enumerate([(1, 2, 8), (7, 0, 2), (6, 5, 4)])]
    assert cause(two)[0] == "unexplained" and cause(two, checkpoints=2)[0] == "class cycling"


def test_a_static_subset_far_from_the_class_balance_is_named_class_skew(monkeypatch, tmp_path):
    """Static pruning keeps one subset for the whole run (EL2N: the highest-scoring samples); when it sits in a few
    classes (the cpu curves' EL2N at keep ratio 0.1: 0.40 in total variation) the others are barely trained on. Unlike
    class cycling, the leading classes never change."""
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))   # setup's EL2N scores are cached: not in the committed cache
    c = profiles.base_config("smoke", sampler="el2n")
    _, data, *_ = setup(c)
    y = data["y"].numpy() if hasattr(data["y"], "numpy") else np.asarray(data["y"])
    scores = np.where(y < 3, 1.0, 0.0) + 1e-3 * np.arange(len(y)) / len(y)    # the "hardest": classes 0-2
    r = run(c.replace(sampler_options={"keep_ratio": 0.2, "scores": scores.round(6).tolist()}), use_cache=False)
    hist = np.asarray(r.records[0]["class_hist"])
    assert set(np.flatnonzero(hist)) <= {0, 1, 2}
    assert cause(r.records)[0] == "class skew"


def test_break_epoch_reads_the_weighted_loss():
    recs = [dict(epoch=e, train_loss=l, train_loss_weighted=w, test_acc=a)
            for e, (l, w, a) in enumerate([(0.5, 0.5, 0.8), (0.9, 0.8, 0.85), (0.9, 0.25, 0.87), (2.8, 3.0, 0.1)])]
    # a weighted loss may rise by design at epoch 1 (weights 1 / (1 - r)); the break is the rise to chance level
    assert break_epoch(recs) == 3
    recs[2]["train_loss_weighted"] = math.inf
    assert break_epoch(recs) == 2


def test_validation_split_is_stratified_disjoint_and_the_same_for_every_run():
    y = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    tr, va = validation_split(y, 100)
    assert len(set(tr.tolist()) & set(va.tolist())) == 0 and len(tr) + len(va) == len(y)
    assert torch.bincount(y[va]).tolist() == [60, 30, 10]
    with pytest.raises(ValueError):
        validation_split(y, 0)
    a = profiles.base_config("smoke", val_size=300, sampler="omission", sampler_options={"keep_ratio": 0.5}, seed=0)
    b = a.replace(sampler="full", sampler_options={}, seed=3)
    ds, da, *_ = setup(a)
    _, db, *_ = setup(b)
    assert torch.equal(da["x_val"], db["x_val"]) and torch.equal(da["x"], db["x"])
    tr, va = validation_split(ds.y_train, 300)
    assert torch.equal(da["x"], ds.x_train[tr]) and torch.equal(da["y_val"], ds.y_train[va])
    assert len(da["x"]) + len(da["x_val"]) == ds.n


class _NoTest(dict):
    """A record whose test accuracy cannot be read: a choice that touches it fails."""
    def __getitem__(self, k):
        if k.startswith("test"):
            raise AssertionError("the learning-rate choice read test data")
        return super().__getitem__(k)

    def get(self, k, default=None):
        if k.startswith("test"):
            raise AssertionError("the learning-rate choice read test data")
        return super().get(k, default)


def _fake(lr, seed, val, test):
    rec = _NoTest(epoch=0, val_acc=val, test_acc=test)
    return SimpleNamespace(config=SimpleNamespace(lr=lr, seed=seed, sampler="x"), records=[rec])


def test_learning_rate_is_chosen_on_validation_never_on_test():
    grid = tuning.lr_grid(0.05)
    assert len(grid) >= 3 and grid[-1] / grid[0] >= 4
    # validation prefers 0.025; test would prefer 0.1
    val = {0.0125: 0.80, 0.025: 0.90, 0.05: 0.85, 0.1: 0.70}
    test = {0.0125: 0.70, 0.025: 0.60, 0.05: 0.65, 0.1: 0.95}
    results = [_fake(lr, s, val[lr] + 0.01 * s, test[lr]) for lr in grid for s in (0, 1)]
    lr, table = tuning.choose_lr(results)
    assert lr == 0.025 and table.loc[table["chosen"], "lr"].tolist() == [0.025]
    assert not any("test" in c for c in table.columns)
    with pytest.raises(ValueError, match="validation"):
        tuning.choose_lr([SimpleNamespace(config=SimpleNamespace(lr=0.1, seed=0, sampler="x"),
                                          records=[dict(epoch=0, test_acc=0.9)])])
    with pytest.raises(ValueError, match="same tuning seeds"):
        tuning.choose_lr(results[:-1])


def test_lr_selection_end_to_end_on_smoke():
    """The recipe, a method's regime and the choice on validation, on real (smoke) runs."""
    base = profiles.base_config("smoke", sampler="infobatch", sampler_options=regimes.regime("infobatch", 3),
                                val_size=300, **regimes.recipe(3))
    results = [run(base.replace(lr=lr), use_cache=False) for lr in tuning.lr_grid(0.05)]
    lr, table = tuning.choose_lr(results)
    assert lr in tuning.lr_grid(0.05) and len(table) == 4
    assert all(np.isfinite(r.records[-1]["val_acc"]) for r in results)


def test_regimes_quote_their_papers_and_label_what_is_outside():
    quotes = {"infobatch": ("r = 0.5", "delta = 0.875"), "kakurenbo": ("F = 0.3",), "online_is": ("alpha = 0.3",
              "epsilon = 1e-4"), "es": ("b / B = 0.25",), "ucb": ("20 checkpoints",)}
    for method, qs in quotes.items():     # each card's regime quotes its paper
        for quote in qs:
            assert quote in samplers.card(method).regime.__doc__, (method, quote)
    assert regimes.recipe(20) == dict(schedule="cosine", warmup_epochs=2.0, drop_last=True)
    assert regimes.outside("infobatch", regimes.regime("infobatch", 20), 20) is None
    assert "InfoBatch" in regimes.outside("infobatch", {"keep_ratio": 0.5}, 20)
    assert regimes.outside("kakurenbo", regimes.regime("kakurenbo", 20), 20) is None
    assert "KAKURENBO" in regimes.outside("kakurenbo", {"keep_ratio": 0.5}, 20)
    assert regimes.outside("ucb", regimes.regime("ucb", 200), 200) is None
    assert regimes.regime("ucb", 10) == dict(period=1, checkpoints_per_epoch=2)
    assert regimes.outside("ucb", regimes.regime("ucb", 10), 10) is None
    assert "10 checkpoints" in regimes.outside("ucb", {"period": 1}, 10)
    assert regimes.outside("omission", {"keep_ratio": 0.3}, 20) is None


@pytest.mark.parametrize("method", ["ucb", "random_dynamic"])
def test_sub_epoch_checkpoints_score_the_whole_set_each_time_and_keep_the_budget(method):
    """[Raju] §4: 20 checkpoints per run; each "the model on the full dataset" scores. In a 3-epoch run,
    7 checkpoints per epoch: 7 scoring passes of n per epoch (selectors), k = keep_ratio n backprops."""
    opts = dict(keep_ratio=0.3, **regimes.regime(method, 3))
    assert opts["checkpoints_per_epoch"] == 7
    c = profiles.base_config("smoke", sampler=method, sampler_options=opts)
    r = run(c, use_cache=False)
    n, k = 1200, 360
    for rec in r.records:
        assert rec["backpropagated"] == k
        assert rec["forwarded"] == k + (7 * n if method == "ucb" else 0)
    # deterministic by seed
    assert [x["train_loss"] for x in run(c, use_cache=False).records] == [x["train_loss"] for x in r.records]


@pytest.mark.slow
def test_fair_protocol_end_to_end_on_smoke_and_quick():
    """The recipe, the regimes and the validation split as `grids.fair_config` builds them, on the smoke and
    quick profiles; on quick's data and model (Fashion-MNIST 10k, MLP; 2 epochs to stay fast) UCB in its
    regime (20 checkpoints) is trained over a learning-rate grid and the rate chosen on validation."""
    from dynaprune import grids
    for profile in ("smoke", "quick"):
        c = grids.fair_config(profile, "ucb", keep_ratio=0.3)
        assert c.val_size == profiles.get(profile)["fair"]["val_size"] > 0
        assert c.drop_last and c.warmup_epochs == pytest.approx(0.1 * c.epochs)
        assert regimes.outside("ucb", c.options("sampler_options"), c.epochs) is None
        assert grids.fair_config(profile, "infobatch").options("sampler_options") == {"r": 0.5, "delta": 0.875}
        forced = grids.fair_config(profile, "infobatch", keep_ratio=0.3)
        assert "outside [InfoBatch]'s regime" in regimes.outside("infobatch", forced.options("sampler_options"), c.epochs)
        assert grids.fair_config(profile, "reduce_epochs", keep_ratio=0.3).epochs_scale == 0.3
    results = [run(grids.fair_config("quick", "ucb", keep_ratio=0.3, lr=lr, epochs=2), use_cache=False)
               for lr in tuning.lr_grid(0.05)]
    assert all(sum(r["backpropagated"] for r in x.records) <= 0.3 * 2 * 10_000 + 1 for x in results)
    lr, table = tuning.choose_lr(results)
    assert table.loc[table["chosen"], "val_acc mean"].item() == table["val_acc mean"].max()


def test_a_side_study_run_is_the_fair_protocols_with_its_variant_on_top():
    """`grids.side_config`: the fair protocol at the side setting, with the validation split, the recipe and the
    paper regime, the given options winning (an ablation's), a keep_ratio forced on an own-budget method labelled, a
    T_p other than the regime's replacing its sub-epoch checkpoints."""
    from dynaprune import grids
    c = grids.side_config("smoke", "ucb", {"keep_ratio": 0.3, "c": 4.0}, seed=2, lr=0.1)
    o = c.options("sampler_options")
    assert (c.val_size, c.drop_last, c.seed, c.lr) == (profiles.get("smoke")["fair"]["val_size"], True, 2, 0.1)
    assert c.warmup_epochs == pytest.approx(0.1 * c.epochs) and o["c"] == 4.0 and o["keep_ratio"] == 0.3
    assert regimes.outside("ucb", o, c.epochs) is None                      # 20 checkpoints: sub-epoch ones
    t_p = grids.side_config("smoke", "ucb", {"keep_ratio": 0.3, "period": 2}).options("sampler_options")
    assert "checkpoints_per_epoch" not in t_p and "outside [Raju]'s regime" in regimes.outside("ucb", t_p, c.epochs)
    assert grids.side_config("smoke", "infobatch").options("sampler_options") == {"r": 0.5, "delta": 0.875}
    forced = grids.side_config("smoke", "infobatch", {"keep_ratio": 0.3}).options("sampler_options")
    assert forced == {"keep_ratio": 0.3}
    assert grids.side_config("smoke", "random", {"keep_ratio": 0.3}, val_size=0).val_size == 0


def test_05s_single_budget_comparison_runs_the_fair_protocol_at_each_samplers_chosen_rate():
    """Notebook 05's single-budget comparison (every method at the side setting: its wide set, and [Raju] Fig. 5's
    equal-samples-seen set; no set at the full setting, where the curves are) is built by `grids.side_config`: the
    fair protocol's runs (validation split, drop_last, warm-up, each method in its paper's regime) at each sampler's
    chosen rate, the side setting's rate for a sampler without one; one tuning cell per sampler."""
    from dynaprune import grids
    sets = grids.comparison_sets("cpu")
    assert set(sets) == {"wide", "seen"} and all(c.train_subset == 20_000 for cs in sets.values() for c in cs)
    cells = grids.tuning_cells(sets["wide"])
    assert len(cells) == len({c.sampler for c in sets["wide"]}) and cells["infobatch"] == {"r": 0.5, "delta": 0.875}
    fair = grids.comparison_sets("cpu", {"omission": 0.1})["wide"]
    assert [(c.sampler, c.seed, c.epochs_scale) for c in fair] == [(c.sampler, c.seed, c.epochs_scale) for c in sets["wide"]]
    assert {c.seed for c in fair} == set(profiles.side_seeds("cpu", "05"))
    assert all(c.val_size == 5000 and c.drop_last and c.warmup_epochs == 1.0 for c in fair)
    assert {c.lr for c in fair if c.sampler == "omission"} == {0.1} and {c.lr for c in fair if c.sampler == "full"} == {0.05}
    assert next(c for c in fair if c.sampler == "infobatch").options("sampler_options") == {"r": 0.5, "delta": 0.875}


def test_side_learning_rates_are_chosen_on_validation_at_the_plain_side_setting(monkeypatch):
    """`study.side_lrs` tunes each method at its given variant on the plain side setting (no notebook's overrides, so
    notebooks share the runs), over the grid and tuning seeds, with no evaluation runs; the choice is the best mean
    validation accuracy."""
    from dynaprune import grids, study
    from dynaprune.cache import RunResult
    seen = []

    def runs(configs, jobs=None, cache_only=False):
        seen.extend(configs)
        return [RunResult(config=c, records=[dict(epoch=0, val_acc=0.9 - abs(c.lr - (0.1 if c.sampler == "ucb" else 0.05)),
                                                  test_acc=0.0, backpropagated=1)]) for c in configs]
    monkeypatch.setattr(study, "runs", runs)
    T = profiles.get("smoke")["curves"]
    out = study.side_lrs("smoke", {"ucb": {"keep_ratio": 0.3}, "full": {}})
    assert {m: lr for m, (lr, _) in out.items()} == {"ucb": 0.1, "full": 0.05}
    assert {c.seed for c in seen} == set(T["tuning_seeds"]) and {c.lr for c in seen if c.sampler == "full"} == set(T["grid"])
    assert {c.lr for c in seen if c.sampler == "ucb"} == {*T["grid"], 0.2}      # chosen at the edge: the grid grew a step
    assert all(c == grids.side_config("smoke", c.sampler, {"keep_ratio": 0.3} if c.sampler == "ucb" else {},
                                      c.seed, c.lr) for c in seen)


def test_train_indices_are_the_samples_a_run_trains_on():
    """Position i of a run's per-sample arrays is dataset sample ``train_indices(c)[i]``: the validation split is held
    out first, then the first ``train_subset`` of what is left (as `setup` builds the training set)."""
    from dynaprune import grids
    from dynaprune.data import load_dataset
    from dynaprune.train import train_indices
    c = grids.fair_config("smoke", "full", train_subset=700)
    ds = load_dataset(c.dataset, **c.options("dataset_options"))
    idx = train_indices(c)
    _, data, _, _, _ = setup(c)
    assert len(idx) == 700 and torch.equal(data["x"].cpu(), ds.x_train[idx])
    assert not set(idx.tolist()) & set(validation_split(ds.y_train, c.val_size)[1].tolist())
    plain = c.replace(val_size=0, train_subset=None)
    assert torch.equal(train_indices(plain), torch.arange(ds.n))


def test_a_verdict_on_runs_outside_their_regime_says_so():
    """A keep_ratio forced on InfoBatch stays possible, and the verdict (and the README's table) labels it."""
    import json
    import pandas as pd
    from dynaprune import report
    rows = []
    for seed in range(3):
        rows.append(dict(label="infobatch keep_ratio=0.5", seed=seed, acc=0.90 + 0.001 * seed, loss=0.3, share=0.5,
                         diverged=False, sampler="infobatch", sampler_options=json.dumps({"keep_ratio": 0.5}), epochs=20))
        rows.append(dict(label="omission keep_ratio=0.5", seed=seed, acc=0.91, loss=0.3, share=0.5, diverged=False,
                         sampler="omission", sampler_options=json.dumps({"keep_ratio": 0.5}), epochs=20))
    v = report.compare(pd.DataFrame(rows), "infobatch_loss_higher", "infobatch keep_ratio=0.5", "omission keep_ratio=0.5",
                       value="loss")
    assert v["regime"].startswith("outside [InfoBatch]'s regime")
    inside = report.compare(pd.DataFrame(rows), "omission_vs_random", "omission keep_ratio=0.5", "omission keep_ratio=0.5")
    assert inside["regime"] == ""


def test_tune_then_evaluate_chooses_each_cell_on_validation_and_reports_other_seeds():
    """Per cell (method, keep_ratio): the lr of best mean validation accuracy over the tuning seeds (test
    never read), then runs on the evaluation seeds at that lr only; overlapping seeds are refused before any run."""
    grid = [0.025, 0.05, 0.1, 0.2]
    best = {("a", 0.1): 0.2, ("a", 0.3): 0.05, ("b", None): 0.025}
    calls = []

    def make(cell, lr, seed):
        return SimpleNamespace(cell=cell, lr=lr, seed=seed, sampler="x")

    def runs(configs):
        calls.append(list(configs))
        return [SimpleNamespace(config=c, records=[_NoTest(epoch=0, val_acc=0.9 - abs(c.lr - best[c.cell]) + 0.001 * c.seed,
                                                           test_acc=0.5 + c.lr)]) for c in configs]
    with pytest.raises(ValueError, match="overlap"):
        tuning.tune_then_evaluate(list(best), make, grid, [0, 1], [1, 2, 3], runs)
    assert calls == []
    out = tuning.tune_then_evaluate(list(best), make, grid, [100, 101], [0, 1, 2], runs)
    assert len(calls) == 2 and len(calls[0]) == 3 * 4 * 2 and len(calls[1]) == 3 * 3   # two batches: tuning, evaluation
    for cell, (lr, table, results) in out.items():
        assert lr == best[cell] and len(table) == 4
        assert [(r.config.lr, r.config.seed) for r in results] == [(best[cell], s) for s in (0, 1, 2)]


def test_curve_cells_put_full_training_once_and_every_budgeted_method_at_every_ratio():
    from dynaprune import grids
    C = profiles.get("cpu")["curves"]
    cells = grids.curve_cells("cpu", ["full", "omission", "infobatch", "reduce_epochs"])
    assert cells[0] == ("full", None) and ("infobatch", None) in cells
    assert [r for m, r in cells if m == "omission"] == C["ratios"] == [r for m, r in cells if m == "reduce_epochs"]
    assert len(cells) == 2 + 2 * len(C["ratios"]) and {0.1, 0.2} <= set(C["ratios"])
    c = grids.curve_config("cpu", "reduce_epochs", 0.2, seed=3, lr=0.1)
    assert (c.epochs_scale, c.lr, c.seed, c.val_size, c.warmup_epochs, c.drop_last) == (0.2, 0.1, 3, 5000, 2.0, True)
    assert c.eval_every == c.epochs        # one evaluation, at the end
    # [ES] sets its own budget (b / B = 25%): one cell in its regime, and the ratios its b / B can reach, outside it;
    # it anneals with full data for 1 epoch at each end of 20: 0.1 of the backprops before any selection
    es = grids.curve_cells("cpu", ["es"])
    assert es[0] == ("es", None) and [r for _, r in es[1:]] == [r for r in C["ratios"] if r > 0.1]
    assert regimes.outside("es", grids.curve_config("cpu", *es[0], seed=0, lr=0.1).options("sampler_options"), 20) is None
    assert ("es", 0.1) in grids.curve_cells("cpu", ["es"], reachable=False)


def test_the_verdict_table_says_whether_a_verdict_depends_on_the_learning_rate_and_what_survives_holm(tmp_path, monkeypatch):
    """A claim whose verdict changes at a learning rate that validation cannot tell apart from the chosen one (or at
    the shared rate) reads "depends on the learning rate" with both outcomes; one that does not says it is robust.
    Two rows decisive at p ~ 0.035 each are not decisive after Holm's adjustment over the two (0.07), and the summary
    counts them that way."""
    from dynaprune import claims, readme, report
    up = ([0.91, 0.92, 0.93], [0.90, 0.905, 0.91])
    v = claims.test("omission_vs_random", *up, seeds=[0, 1, 2])
    same = report.lr_robustness(v, [("both at the shared lr 0.05", claims.test("omission_vs_random", *up))])
    flips = report.lr_robustness(v, [("omission at lr 0.1 (tied)", claims.test("omission_vs_random", *up[::-1]))])
    assert v["verdict"] == "held" and 0.01 < v["p_value"] < 0.05 and same["lr_robust"] and not flips["lr_robust"]
    monkeypatch.setenv("DYNAPRUNE_FIGURES", str(tmp_path))
    report.key_numbers("05_x", profile="smoke", device="cpu", verdicts=[same, flips])
    table = readme.verdict_table(tmp_path)
    assert "robust (1 other rate pair(s): same verdict)" in table
    assert "depends on the learning rate (held at the chosen rates)" in table
    assert "depends: did not hold with omission at lr 0.1 (tied) (-1.50)" in table
    assert table.count(f"| not distinguishable at this scale (p = {min(1, 2 * v['p_value']):.3g}) |") == 2
    assert "2 held, 0 did not hold" in table and "leaves 0 held and 0 did not hold" in table
    rows = [l for l in table.splitlines() if l.startswith("| ")]
    assert rows[0].startswith("| verdict | after Holm") and all(len(re.split(r"(?<!\\)\|", l)) == 13 for l in rows)


def test_curve_time_benchmark_times_every_cell_and_reuses_full_epochs_for_reducing_epoch(tmp_path, monkeypatch):
    """The benchmark behind 05's accuracy-against-time figure: every cell of the curves, timed on steady-state
    epochs of its real config; Reducing Epoch's epochs are full training's (its run is just shorter); InfoBatch,
    whose work changes over the run, over its whole run (its controls need its cached runs: none here)."""
    from dynaprune import bench, grids
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))      # nothing may be cached
    out = bench.bench_curve_times("smoke", repeats=1, methods=["reduce_epochs", "omission", "infobatch"])
    cells = grids.curve_cells("smoke", ["full", "reduce_epochs", "omission", "infobatch"])
    assert set(out) == {m if r is None else f"{m} keep_ratio={r}" for m, r in cells}
    assert out["reduce_epochs keep_ratio=0.3"]["per_epoch"] == out["full"]["per_epoch"]
    assert out["reduce_epochs keep_ratio=0.3"]["run_length"] == pytest.approx(0.9)
    assert out["omission keep_ratio=0.3"]["run_length"] == 3 == out["infobatch"]["run_length"]
    assert all(0 < d["per_epoch"][0] <= d["per_epoch"][1] <= d["per_epoch"][2] for d in out.values())
    assert not list(tmp_path.iterdir())


def test_a_choice_at_the_grid_edge_grows_the_grid_until_it_is_interior_or_the_limit():
    """A cell whose best lr lies beyond the grid's top (or bottom) gets one more step there per round; the choice
    stops at an interior optimum, or at the edge of the grown grid when ``extend`` runs out (and says so)."""
    grid = [0.025, 0.05, 0.1, 0.2]
    best = {("up", 0.1): 0.4, ("down", 0.1): 0.00625, ("far", 0.1): 3.2, ("in", 0.1): 0.05}

    def make(cell, lr, seed):
        return SimpleNamespace(cell=cell, lr=lr, seed=seed, sampler="x")

    def runs(configs):
        return [SimpleNamespace(config=c, records=[_NoTest(epoch=0, val_acc=0.9 - abs(math.log2(c.lr / best[c.cell])),
                                                           test_acc=0.0)]) for c in configs]
    out = tuning.tune_then_evaluate(list(best), make, grid, [100], [0], runs, extend=2)
    assert out[("up", 0.1)][0] == 0.4 and out[("up", 0.1)][1]["lr"].tolist() == [0.025, 0.05, 0.1, 0.2, 0.4, 0.8]
    assert out[("down", 0.1)][0] == 0.00625 == out[("down", 0.1)][1]["lr"].min()  # found in the last step allowed
    assert out[("far", 0.1)][0] == 0.8 == out[("far", 0.1)][1]["lr"].max()     # the limit: still at the edge
    assert out[("in", 0.1)][1]["lr"].tolist() == grid                           # interior: the grid as given


def test_a_diverged_tuning_run_counts_as_zero_validation_accuracy():
    """A learning rate so large that a tuning run diverges (non-finite loss, stopped before any finite validation
    accuracy) is a bad choice, not an error: its validation accuracy is 0."""
    grid = [0.05, 0.1, 0.2]
    ok = [_fake(lr, 0, 0.9, 0.9) for lr in grid[:2]]
    diverged = SimpleNamespace(config=SimpleNamespace(lr=0.2, seed=0, sampler="x"),
                               records=[_NoTest(epoch=0, diverged=True, val_acc=float("nan"), test_acc=float("nan"))])
    lr, table = tuning.choose_lr(ok + [diverged])
    assert lr == 0.05 and table.loc[table["lr"] == 0.2, "val_acc mean"].item() == 0.0


def test_a_method_that_sets_its_own_budget_gets_budget_matched_controls(monkeypatch):
    """InfoBatch and KAKURENBO set their own budget: their curve cell is one point at their measured backprop share,
    and random pruning and Reducing Epoch are tuned and evaluated at that share (rounded to 0.01), the controls a
    saving must beat. A share outside (0, 1] is refused."""
    from dynaprune import grids, study
    from dynaprune.cache import RunResult
    seen = []

    def runs(configs, jobs=None, cache_only=False):
        seen.extend(configs)
        return [RunResult(config=c, records=[dict(epoch=0, val_acc=0.9 - abs(c.lr - 0.05), test_acc=0.8,
                                                        backpropagated=({"full": 1000, "infobatch": 613}.get(c.sampler, 500)
                                                                        if c.epochs_scale == 1 else 1000 * c.epochs_scale))])
                for c in configs]
    monkeypatch.setattr(study, "runs", runs)
    out = study.curve_results("smoke", ["infobatch"])
    assert set(out) == {("infobatch", None), ("random", 0.61), ("reduce_epochs", 0.61)}   # full: the share's denominator
    assert all(lr == 0.05 and len(rs) == len(profiles.get("smoke")["seeds"]) for lr, _, rs in out.values())
    assert {c.epochs_scale for c in seen if c.sampler == "full"} == {1.0, 0.61}
    assert {c.options("sampler_options").get("keep_ratio") for c in seen if c.sampler == "random"} == {0.61}
    assert grids.matched_cells(0.3049) == [("random", 0.3), ("reduce_epochs", 0.3)]
    with pytest.raises(ValueError, match="share"):
        grids.matched_cells(1.7)


def test_matched_controls_pair_an_own_budget_method_with_random_and_reducing_epoch_at_its_share():
    """The controls are read at the method's measured share (rounded as `grids.matched_cells` rounds it), paired by
    seed; a method 1 point above one control and level with the other gets "held" and "not distinguishable"."""
    import pandas as pd
    from dynaprune import report
    rows = []
    for s in range(5):
        noise = 0.001 * ((-1) ** s)
        rows += [dict(method="infobatch", keep_ratio=None, seed=s, acc=0.92 + noise, share=0.612 + 0.001 * s),
                 dict(method="random", keep_ratio=0.61, seed=s, acc=0.91 + 0.0005 * s, share=0.61),
                 dict(method="reduce_epochs", keep_ratio=0.61, seed=s, acc=0.92 - noise, share=0.61),
                 dict(method="random", keep_ratio=0.5, seed=s, acc=0.99, share=0.5),
                 dict(method="full", keep_ratio=None, seed=s, acc=0.93, share=1.0)]
    t = report.matched_controls(pd.DataFrame(rows)).set_index("control")
    assert list(t.index) == ["random keep_ratio=0.61", "reduce_epochs keep_ratio=0.61"]
    assert t.loc["random keep_ratio=0.61", "mean_diff"] == pytest.approx(0.01 + 0.0002 - 0.001)
    assert t.loc["random keep_ratio=0.61", "verdict"] == "held"
    assert t.loc["reduce_epochs keep_ratio=0.61", "verdict"] == "not distinguishable at this scale"
    assert (t["seeds"] == 5).all() and (t["method"] == "infobatch").all()


def test_random_dynamic_pruning_with_period_one_is_random_pruning_bit_for_bit():
    """[Raju] Alg. 1 with T_p = 1 and random scores draws a fresh uniform subset every epoch: [Omission]'s Random.
    The two samplers draw the same subsets from the same seed, so their runs are identical (the cpu curves confirm it
    at every keep ratio and learning rate)."""
    c = profiles.base_config("smoke", sampler="random", sampler_options={"keep_ratio": 0.3})
    a = run(c, use_cache=False)
    b = run(c.replace(sampler="random_dynamic", sampler_options={"keep_ratio": 0.3, "period": 1}), use_cache=False)
    assert [x["train_loss"] for x in a.records] == [x["train_loss"] for x in b.records]
    assert a.final["test_acc"] == b.final["test_acc"]


def test_a_collapse_outside_the_regime_makes_a_comparison_invalid_and_one_inside_keeps_its_verdict(tmp_path, monkeypatch):
    """A collapse that our protocol caused is not evidence about a paper: InfoBatch forced to keep ratio 0.5
    (outside its regime, `regimes.outside`) and diverged by a huge learning rate gives "invalid: ... collapsed
    (divergence ...)" with no p-value (out of the multiplicity family); the same collapse in InfoBatch's own regime
    (r = 0.5) is the method's result: the verdict stands and the row says how many seeds collapsed and why."""
    import json
    from dynaprune import cache, report
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    base = profiles.base_config("smoke")
    arms = {"full": base,
            "forced": base.replace(sampler="infobatch", sampler_options={"keep_ratio": 0.5}, lr=200.0, schedule="constant"),
            "regime": base.replace(sampler="infobatch", sampler_options={"r": 0.5, "delta": 0.875}, lr=200.0,
                                   schedule="constant")}
    rows = []
    for label, c in arms.items():
        for s in (0, 1, 2):
            r = run(c.replace(seed=s))
            rows.append(dict(label=label, seed=s, acc=r.final["test_acc"], share=1.0,
                             diverged=any(x.get("diverged") for x in r.records), sampler=c.sampler,
                             sampler_options=json.dumps(c.options("sampler_options")), epochs=c.epochs, key=cache.key(r.config)))
    runs = __import__("pandas").DataFrame(rows)
    assert runs.loc[runs["label"] != "full", "diverged"].all()
    bad = report.compare(runs, "infobatch_lossless", "forced", "full")
    assert bad["verdict"].startswith("invalid: 3 of 3 seeds of forced collapsed (divergence")
    assert bad["p_value"] is None and bad["valid_verdict"] == "did not hold"
    own = report.compare(runs, "infobatch_lossless", "regime", "full")
    assert own["verdict"] == "did not hold" and own["p_value"] is not None
    assert own["collapses"].startswith("3 of 3 seeds of regime collapsed (divergence")
    assert report.compare(runs, "infobatch_lossless", "full", "full")["collapses"] is None


def test_v3_runs_omission_as_written_and_our_bias_correction_as_its_own_row():
    """[Omission] §3.2.1: S is an EMA "as in Adam" and the paper is silent on correcting its start, so study v3's regime
    runs the paper's uncorrected S (a profile's ``regime_options``, stated in every run's config), `omission` itself
    defaults to it (a user who lifts the sampler gets the paper's method), and our bias correction is its own card with
    its own name and cache key."""
    from dynaprune import cache, grids, report
    from dynaprune.samplers import card, make_sampler
    v3 = grids.curve_config("v3", "omission", 0.5, seed=0, lr=0.1)
    assert v3.options("sampler_options") == {"keep_ratio": 0.5, "bias_correction": False}
    assert grids.curve_config("cpu", "omission", 0.5, seed=0, lr=0.1).options("sampler_options") == {"keep_ratio": 0.5}
    bc = grids.curve_config("v3", "omission_bc", 0.5, seed=0, lr=0.1)
    assert bc.options("sampler_options") == {"keep_ratio": 0.5} and cache.key(bc) != cache.key(v3.replace(sampler="omission_bc"))
    assert make_sampler("omission_bc", 50, keep_ratio=0.5).tracker.bias_correction
    assert not make_sampler("omission", 50, keep_ratio=0.5, bias_correction=False).tracker.bias_correction
    assert not make_sampler("omission", 50, keep_ratio=0.5).tracker.bias_correction      # the card: [Omission] as written
    assert "ours" in card("omission_bc").name and card("omission_bc").paper is None
    assert ("omission_bc", 0.5) in grids.curve_cells("v3") and report.method_name("omission_bc") == card("omission_bc").name
    # v3's setting: the papers' recipe (batch norm, augmentation), ten seeds disjoint from the tuning seed
    c = grids.curve_config("v3", "full", None, seed=9, lr=0.1)
    assert (c.options("model_options"), c.augment, c.epochs, c.warmup_epochs, c.val_size) == ({"bn": True}, True, 40, 4.0, 5000)
    P = profiles.get("v3")
    assert len(P["seeds"]) == 10 and not set(P["seeds"]) & set(P["curves"]["tuning_seeds"])
    # its side studies keep the committed study's side setting (its runs stay valid), except [Omission] as written
    same = lambda m, o: cache.key(grids.side_config("cpu", m, o, seed=1)) == cache.key(grids.side_config("v3", m, o, seed=1))
    assert same("ucb", {"keep_ratio": 0.3}) and same("full", {}) and not same("omission", {"keep_ratio": 0.3})


def test_the_run_length_study_is_full_training_at_each_length_with_its_own_schedule():
    """The evidence for a profile's run length: full training at each length of ``run_length``, each with its own
    warm-up (10%) and cosine, at each rate, evaluated every epoch, under the fair protocol (a validation split)."""
    from dynaprune import grids
    R = profiles.get("v3")["run_length"]
    cs = grids.run_length_configs("v3")
    assert [(c.epochs, c.lr) for c in cs] == [(E, lr) for E in R["epochs"] for lr in R["lrs"]]
    assert all(c.sampler == "full" and c.eval_every == 1 and c.warmup_epochs == 0.1 * c.epochs and c.val_size > 0
               and c.seed == R["seed"] for c in cs)
    assert profiles.get("v3")["base"]["epochs"] in R["epochs"] and grids.run_length_configs("cpu") == []


def test_the_study_command_line_takes_cells_and_refuses_a_bad_one_before_any_work(capsys):
    from dynaprune import study
    assert study.parse_cell("omission:0.5") == ("omission", 0.5) and study.parse_cell("infobatch") == ("infobatch", None)
    with pytest.raises(SystemExit):
        study.main(["--profile", "smoke", "--cells", "omission:half"])
    assert "METHOD or METHOD:KEEP_RATIO" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown method"):
        study.main(["--profile", "smoke", "--cells", "bogus:0.5"])


def test_a_raju_claim_that_fails_here_but_not_in_its_own_schedule_names_the_setting(tmp_path, monkeypatch):
    """The study v3 rule: "A [Raju] verdict reads 'did not hold' only if UCB fails in its own schedule too; otherwise
    the verdict names the setting it fails in." The curve row at keep ratio 0.2 fails while the own-schedule row at 0.2
    holds: it reads "did not hold in this setting". At 0.3 both fail: "did not hold (also in [Raju]'s own schedule)".
    A row of another paper, or without an own-schedule row at its ratio, is left as it is."""
    from dynaprune import claims, readme, report
    from dynaprune.grids import OWN_SCHEDULE
    lo, hi = [0.880, 0.884, 0.887, 0.881, 0.885], [0.901, 0.904, 0.902, 0.905, 0.900]
    t = lambda key, a, b, cond: claims.test(key, a, b, seeds=range(5), condition=cond)
    curve = [t("ucb_vs_random_dynamic", lo, hi, f"keep_ratio={r}, lr chosen per method on validation") for r in (0.2, 0.3, 0.5)]
    other = t("omission_vs_random", lo, hi, "keep_ratio=0.2")
    own = [t("ucb_vs_random_dynamic", hi, lo, f"keep_ratio=0.2, {OWN_SCHEDULE} (T_p = 3 epochs)"),
           t("ucb_vs_random_dynamic", lo, hi, f"keep_ratio=0.3, {OWN_SCHEDULE} (T_p = 3 epochs)")]
    assert all(v["verdict"] == "did not hold" for v in curve + [other, own[1]]) and own[0]["verdict"] == "held"
    monkeypatch.setenv("DYNAPRUNE_FIGURES", str(tmp_path))
    report.key_numbers("05_x", profile="smoke", device="cpu", verdicts=curve + [other])
    report.key_numbers("06_x", profile="smoke", device="cpu", verdicts=own)
    lines = [l for l in readme.verdict_table(tmp_path).splitlines() if l.startswith("| ")][1:]
    cond = lambda l: re.split(r"(?<!\\)\|", l)[4]
    first = lambda l: re.split(r"(?<!\\)\|", l)[1].strip()
    by = {(("own" if OWN_SCHEDULE in cond(l) else "here"), re.findall(r"keep_ratio=([0-9.]+)", cond(l))[0],
           "omission" if "Omission" in cond(l) else "raju"): first(l) for l in lines}
    assert by[("here", "0.2", "raju")] == f"did not hold in this setting; in {OWN_SCHEDULE}: held"
    assert by[("here", "0.3", "raju")] == f"did not hold (also in {OWN_SCHEDULE})"
    assert by[("here", "0.5", "raju")] == "did not hold" == by[("here", "0.2", "omission")]
    assert by[("own", "0.2", "raju")] == "held" and by[("own", "0.3", "raju")] == "did not hold"
    assert "2 [Raju] row(s) that did not hold here" in readme.verdict_table(tmp_path) and "1 of them did not fail there" \
        in readme.verdict_table(tmp_path)


def test_a_learning_rate_check_the_budget_cut_reads_not_run_never_the_chosen_rates_runs(tmp_path, monkeypatch):
    """A claim's check at a tied rate is made from the runs at that rate: where they flip the verdict it "depends on
    the learning rate". Where a profile's ``curves["robustness"]`` cuts the check (its runs are not computed), the
    verdict reads "not checked", naming the check that was not run; it is never made from the chosen rate's runs
    (which would read "robust" by construction). The profile's cut lists the claims it checks and drops the shared
    rate; the cells of the other claims get no robustness runs."""
    import pandas as pd
    from dynaprune import claims, grids, readme, report, study
    from dynaprune.cache import RunResult
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path / "cache"))

    def cell(method, lrs_val, chosen):
        t = pd.DataFrame(dict(lr=[0.05, 0.1, 0.2], chosen=[x == chosen for x in (0.05, 0.1, 0.2)]))
        t["val_acc mean"] = t["val_acc seed 100"] = lrs_val
        return t

    def results(method, lr, accs):
        return [RunResult(grids.curve_config("smoke", method, None if method == "full" else 0.5, s, lr),
                          [dict(epoch=0, test_acc=a, val_acc=a, backpropagated=500 if method != "full" else 1000)])
                for s, a in enumerate(accs)]
    up, down = [0.92, 0.925, 0.93, 0.921, 0.928], [0.90, 0.902, 0.905, 0.901, 0.899]
    mid = [0.91, 0.912, 0.915, 0.911, 0.913]
    om, ra = ("omission", 0.5), ("random", 0.5)
    curve = {("full", None): (0.1, cell("full", [0.9, 0.95, 0.9], 0.1), results("full", 0.1, up)),
             om: (0.1, cell("omission", [0.90, 0.901, 0.80], 0.1), results("omission", 0.1, up)),   # 0.05 tied
             ra: (0.1, cell("random", [0.80, 0.90, 0.80], 0.1), results("random", 0.1, mid))}        # none tied
    args = ("omission_vs_random", [om, ra], "keep_ratio=0.5", 0.1, 5000)
    flipped = report.curve_verdict(curve, {(om, 0.05): results("omission", 0.05, down)}, *args)
    assert flipped["verdict"] == "held" and flipped["lr_robust"] is False and "lr_not_run" not in flipped
    assert [c["lrs"] for c in flipped["lr_checks"]] == ["omission at lr 0.05 (tied)"]
    cut = report.curve_verdict(curve, {}, *args)
    assert cut["verdict"] == "held" and cut["lr_robust"] is None and cut["lr_checks"] == []
    assert cut["lr_not_run"] == ["omission at lr 0.05 (tied)"]
    monkeypatch.setenv("DYNAPRUNE_FIGURES", str(tmp_path))
    report.key_numbers("05_x", profile="smoke", device="cpu", verdicts=[cut])
    table = readme.verdict_table(tmp_path)
    assert "not checked (cut from the profile's budget: omission at lr 0.05 (tied))" in table
    assert "1 budget-curve row(s) whose checks the profile's budget cut" in table

    P = profiles.PROFILES["smoke"]
    every = study.robustness_cells("smoke", grids.curve_cells("smoke"))
    part = {**P, "curves": {**P["curves"], "robustness": dict(shared_rate=False, claims=["omission_vs_random"])}}
    monkeypatch.setitem(profiles.PROFILES, "smoke", part)
    kept = study.robustness_cells("smoke", grids.curve_cells("smoke"))
    assert set(kept) == {c for c in every if c[0] in ("omission", "random")} and len(kept) < len(every)
    at_02 = lambda p: {**profiles.get("smoke"), "base": {**profiles.get("smoke")["base"], "lr": 0.2}, "curves": p["curves"]}
    assert study._robustness_lrs(at_02(P), curve[om][1], 0.1) == [0.05, 0.2]      # the tied rate and the shared one
    assert study._robustness_lrs(at_02(part), curve[om][1], 0.1) == [0.05]        # the cut: no shared rate
    seen = []
    monkeypatch.setattr(study, "runs", lambda cs, jobs=None, cache_only=False: seen.extend(cs) or
                        [RunResult(c, [dict(epoch=0, test_acc=0.9, val_acc=0.9, backpropagated=500)]) for c in cs])
    wider = {**curve, ("ucb", 0.2): curve[om], ("random_dynamic", 0.2): curve[ra]}
    study.lr_robustness_runs("smoke", wider)
    assert {(c.sampler, c.lr) for c in seen} == {("omission", 0.05)}             # ucb_vs_random_dynamic: cut
    monkeypatch.setitem(profiles.PROFILES, "smoke", P)
    seen.clear()
    study.lr_robustness_runs("smoke", wider)
    assert {(c.sampler, c.lr) for c in seen} >= {("omission", 0.05), ("ucb", 0.05)}
    with pytest.raises(ValueError, match="unknown claim"):
        claims.curve_cells([om, ra], ["no_such_claim"])


def test_curve_time_benchmark_for_some_methods_replaces_only_their_cells(tmp_path, monkeypatch):
    """``--only curves --methods M ...`` re-measures M's cells and keeps the file's others as measured (full training's
    time too: Reducing Epoch's rows copy it), saying when; a file measured with other rounds or threads is refused, and
    left as it was."""
    import json
    from dynaprune import bench
    out = tmp_path / "bench_curve_times.json"
    monkeypatch.setattr(bench, "curve_times_path", lambda profile: out)
    cell = lambda m, r, t: dict(method=m, keep_ratio=r, run_length=3, per_epoch=(t, t, t))
    times = {"full": cell("full", None, 1.0), "ucb keep_ratio=0.3": cell("ucb", 0.3, 0.5),
             "random keep_ratio=0.3": cell("random", 0.3, 0.3)}
    monkeypatch.setattr(bench, "bench_curve_times", lambda profile, repeats, methods: times)
    bench.main(["--only", "curves", "--profile", "smoke", "--repeats", "1"])
    times = {"full": cell("full", None, 2.0), "ucb keep_ratio=0.3": cell("ucb", 0.3, 0.9)}
    bench.main(["--only", "curves", "--profile", "smoke", "--repeats", "1", "--methods", "ucb"])
    got = json.loads(out.read_text())
    assert {k: d["per_epoch"][1] for k, d in got["cells"].items()} == {"full": 1.0, "ucb keep_ratio=0.3": 0.9,
                                                                       "random keep_ratio=0.3": 0.3}
    assert [u["methods"] for u in got["updated"]] == [["ucb"]]
    before = out.read_text()
    with pytest.raises(SystemExit, match="another profile, thread count or number of rounds"):
        bench.main(["--only", "curves", "--profile", "smoke", "--repeats", "2", "--methods", "ucb"])
    assert out.read_text() == before
