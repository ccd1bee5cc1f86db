"""Compute counted, not only backprops: a run's forwards and backprops with the static models its card declares (exact
counts against the engine's own runs), their cost in seconds at measured unit costs, and [RS2]'s time-to-accuracy."""
import math

import numpy as np
import pandas as pd

import pytest

from dynaprune import bench, grids, report
from dynaprune.cache import RunResult
from dynaprune.static_scores import _own_schedule, _plain
from dynaprune.train import run, train_indices


def _per_epoch(c):
    """Samples one full-data epoch of the plain loop backpropagates at c's setting, measured by the engine."""
    return run(_own_schedule(_plain(c), 1, 1), use_cache=False).records[0]["backpropagated"]


def test_el2n_and_forgetting_are_charged_their_static_models_exactly(tmp_path, monkeypatch):
    """[Raju] §4's EL2N scoring (score_models models of score_epochs epochs, each scoring the n samples) and a
    forgetting run of the run's length: outside the records, counted by their cards (`samplers.Method.static_work`)."""
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    c = grids.fair_config("smoke", "el2n", keep_ratio=0.5, epochs=2)
    c = c.replace(sampler_options={**c.options("sampler_options"), "score_models": 2, "score_epochs": 1})
    r = run(c)
    n, per_epoch = len(train_indices(c)), _per_epoch(c)
    w = report.compute(r)
    assert per_epoch == n // c.batch_size * c.batch_size                       # drop_last: whole batches
    assert (w["static_backprops"], w["static_forwards"]) == (2 * per_epoch, 2 * (per_epoch + n))
    assert w["backprops"] == r.backprops + 2 * per_epoch
    assert w["forwards"] == sum(x["forwarded"] for x in r.records) + 2 * (per_epoch + n)
    assert w["eval_forwards"] == w["forwards"] - w["backprops"]
    f = grids.fair_config("smoke", "forgetting", keep_ratio=0.5, epochs=2)
    wf = report.compute(run(f))
    assert (wf["static_backprops"], wf["static_forwards"]) == (2 * per_epoch, 2 * (per_epoch + n))
    # scores given: nothing static to charge; a dynamic method: its records only
    assert report.compute(RunResult(c.replace(sampler_options={"keep_ratio": 0.5, "scores": [0.0] * n}),
                                    r.records))["static_backprops"] == 0
    u = run(grids.fair_config("smoke", "ucb", keep_ratio=0.5, epochs=2))
    wu = report.compute(u)
    assert wu["static_forwards"] == 0 and wu["eval_forwards"] > 0               # its scoring passes are forwards


def test_seconds_and_time_to_accuracy():
    c = grids.fair_config("smoke", "full", epochs=4)
    nan = float("nan")
    recs = [dict(epoch=e, test_acc=a, wall=10.0 * (e + 1), forwarded=100, backpropagated=80,
                 cum_forwarded=100 * (e + 1), cum_backpropagated=80 * (e + 1)) for e, a in enumerate([0.5, 0.7, nan, 0.9])]
    r = RunResult(c, recs)
    assert report.time_to_accuracy(r, 0.8) == dict(epoch=3, seconds=40.0, test_acc=0.9, backprops=320, forwards=400)
    assert report.time_to_accuracy(r, 0.7)["epoch"] == 1 and report.time_to_accuracy(r, 0.95) is None
    w = report.compute(r)
    assert (w["backprops"], w["eval_forwards"]) == (320, 80)
    assert math.isclose(report.seconds(w, {"forward": (0, 1e-3, 0), "step": (0, 3e-3, 0)}), 80 * 1e-3 + 320 * 3e-3)


def test_a_curve_cell_costs_its_compute_over_full_trainings_and_reaches_the_target_when_its_accuracy_does():
    """`report.curve_compute`: counts over full training's (means over seeds), priced at unit costs, and [RS2]'s
    time-to-accuracy at 99% of full training's mean test accuracy: the compute spent by the first evaluated epoch at the
    target, over full training's whole run, median over the seeds that reach it; a seed that never does is counted out."""
    c = grids.fair_config("smoke", "full", epochs=4)
    nan = float("nan")

    def res(seed, accs, fwd, bp, sampler="full"):
        recs = [dict(epoch=e, test_acc=a, wall=10.0 * (e + 1), forwarded=fwd, backpropagated=bp, cum_forwarded=fwd * (e + 1),
                     cum_backpropagated=bp * (e + 1)) for e, a in enumerate(accs)]
        return RunResult(c.replace(seed=seed, sampler=sampler), recs)
    full = [res(0, [0.5, 0.7, 0.8, 0.90], 100, 100), res(1, [0.5, 0.7, 0.8, 0.92], 100, 100)]
    # a method forwarding every sample and backpropagating half: reaches 0.99 x 0.91 = 0.9009 at epoch 3 on seed 0 only
    half = [res(0, [0.5, nan, 0.91, 0.95], 100, 50, "random"), res(1, [0.5, 0.6, 0.7, 0.8], 100, 50, "random")]
    curve = {("full", None): (0.1, None, full), ("random", 0.5): (0.1, None, half)}
    units = {"forward": (0, 1.0, 0), "step": (0, 3.0, 0)}
    t = report.curve_compute(curve, units=units).set_index("label")
    assert math.isclose(t["target"].iloc[0], 0.99 * 0.91)
    assert (t.loc["full", "forwards"], t.loc["full", "compute"], t.loc["full", "tta_reached"]) == (1.0, 1.0, 1)  # 0.90 < target
    r = t.loc["random keep_ratio=0.5"]
    assert (r["forwards"], r["backprops"], r["tta_reached"], r["seeds"], r["tta_epochs"]) == (1.0, 0.5, 1, 2, 3)
    # full: 400 backprops x 3 per run; random: 200 x 3 + 200 eval forwards x 1 per run, by epoch 3: 150 x 3 + 150 x 1
    assert math.isclose(r["compute"], (200 * 3 + 200) / 1200) and math.isclose(r["tta_compute"], (150 * 3 + 150) / 1200)
    assert math.isnan(report.curve_compute(curve).set_index("label").loc["full", "compute"])       # counts only
    with pytest.raises(ValueError, match="full training"):
        report.curve_compute({("random", 0.5): curve[("random", 0.5)]})


@pytest.mark.slow
def test_unit_costs_and_epoch_seconds_are_measured(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    c = grids.fair_config("smoke", "full", epochs=3)
    u = bench.unit_costs(c, repeats=2, batches=2)
    assert set(u) == {"forward", "step", "backward"} and all(0 < v[0] <= v[1] <= v[2] for v in (u["forward"], u["step"]))
    assert u["backward"][0] <= u["backward"][1] <= u["backward"][2]         # step - forward, round by round
    t = bench.epoch_seconds({"a": c, "b": c.replace(augment=False)}, repeats=2, epochs=2)
    assert set(t) == {"a", "b"} and all(0 < v[0] <= v[1] <= v[2] for v in t.values())
    assert not list(tmp_path.glob("*.json*"))                                  # nothing cached


def test_raju_in_its_own_schedule():
    """[Raju] §4: "stochastic gradient descent (SGD) optimizer with an initial learning rate = 0.1 with Nesterov
    momentum = 0.9, weight decay = 0.0005, and batch size = 128. The learning rate was decayed by a factor of 5 at 60,
    120, and 160 epochs"; 200 epochs with T_p = 10 on CIFAR-10's 50,000 samples. Our side setting: checkpoints as long
    as the paper's in steps (about 1,170 at keep ratio 0.3), 20 per run, the decays at 30 / 60 / 80% of the run."""
    from dynaprune import regimes
    from dynaprune.train import lr_at
    for rho in (0.2, 0.3):
        c = grids.raju_schedule_config("cpu", "ucb", rho, seed=1, lr=0.1)
        n, o = len(train_indices(c)), c.options("sampler_options")
        steps = o["period"] * (int(rho * n) // c.batch_size)                   # steps of one checkpoint
        paper = 10 * round(rho * 50_000) // 128
        assert abs(steps - paper) / paper < 0.05, (steps, paper)
        assert c.epochs == 20 * o["period"] and regimes.outside("ucb", o, c.epochs) is None
        E = c.epochs
        assert [lr_at(c, p * E) for p in (0.29, 0.31, 0.61, 0.81)] == pytest.approx([0.1, 0.02, 0.004, 0.0008])
        assert c.momentum == 0.9 and c.weight_decay == 5e-4 and c.val_size > 0 and c.drop_last
    for name, extra in grids.RAJU_INTERVENTIONS.items():
        o = grids.raju_schedule_config("cpu", "ucb", 0.3, intervention=name).options("sampler_options")
        assert o.items() >= extra.items() and grids.unreachable("ucb", o, 500) is None, name
    with pytest.raises(ValueError, match="unknown intervention"):
        grids.raju_schedule_config("cpu", "ucb", 0.3, intervention="nope")


# ----------------------------------------------------------------------------- the interventions on class cycling

def test_full_data_warm_up_then_checkpoints_every_period():
    """``warmup_full`` W (ours): epochs < W plan all n samples and ask for no scoring pass; the first checkpoint scores
    at epoch W (a trained model), the next ones every ``period`` epochs from there; W = 0 is [Raju]'s sampler."""
    import torch
    from dynaprune.samplers import make_sampler
    n, k = 100, 30
    s = make_sampler("ucb", n, keep_ratio=0.3, period=2, warmup_full=1, num_epochs=6)
    asked, sizes = [], []
    for e in range(6):
        req = s.scoring_request(e)
        asked.append(req is not None)
        if req is not None:
            s.observe(req, torch.rand(n, generator=torch.Generator().manual_seed(e)))
        s.set_epoch(e)
        sizes.append(len(list(iter(s))))
    assert asked == [False, True, False, True, False, True] and sizes == [n] + [k] * 5
    plain, zero = (make_sampler("ucb", n, keep_ratio=0.3, period=2, num_epochs=6, **kw) for kw in ({}, {"warmup_full": 0}))
    assert [plain.scoring_request(e) is not None for e in range(3)] == [zero.scoring_request(e) is not None for e in range(3)]
    with pytest.raises(ValueError, match="warmup_full"):
        make_sampler("ucb", n, warmup_full=-1)


def test_initial_scores_stand_for_the_first_scoring_pass(tmp_path, monkeypatch):
    """``init_scores`` (ours): the first checkpoint takes the top k of the given scores with no scoring pass; through the
    engine, ``init_models`` M computes them as the mean loss of M random initialisations (their M n forwards counted by
    the card's static work), and epoch 0 then forwards only what it trains on."""
    import torch
    from dynaprune.samplers import make_sampler
    n = 100
    init = torch.arange(n, dtype=torch.float64)
    s = make_sampler("uncertainty_ema", n, keep_ratio=0.2, period=5, init_scores=init, num_epochs=10)
    assert s.scoring_request(0) is None
    s.set_epoch(0)
    assert set(s.plan.tolist()) == set(range(80, 100))
    assert s.scoring_request(5) is not None                                   # later checkpoints score as usual
    with pytest.raises(ValueError, match="init_scores"):
        make_sampler("ucb", n, init_scores=[0.0] * 3)
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    c = grids.fair_config("smoke", "ucb", keep_ratio=0.5, epochs=2)
    c = c.replace(sampler_options={**c.options("sampler_options"), "init_models": 4, "period": 1})
    c = c.replace(sampler_options={k: v for k, v in c.options("sampler_options").items() if k != "checkpoints_per_epoch"})
    r = run(c)
    first = r.records[0]
    assert first["forwarded"] == first["backpropagated"]                      # no scoring pass at epoch 0
    assert r.records[1]["forwarded"] > r.records[1]["backpropagated"]        # epoch 1's checkpoint scores
    assert report.compute(r)["static_forwards"] == 4 * len(train_indices(c))
    assert grids.unreachable("ucb", c.options("sampler_options"), c.epochs) is None


def test_the_interventions_resume_bit_identically():
    import torch
    from dynaprune.samplers import make_sampler
    n, g = 120, torch.Generator().manual_seed(0)
    table = torch.rand(8, n, generator=g)
    kw = dict(keep_ratio=0.3, period=2, warmup_full=1, init_scores=torch.rand(n, generator=g), num_epochs=8, seed=3)

    def epoch(s, e):
        req = s.scoring_request(e)
        if req is not None:
            s.observe(req, table[e][req])
        s.set_epoch(e)
        plan = torch.tensor(list(iter(s)))
        s.reweight(plan[:10], table[e][plan[:10]])
        return plan
    a = make_sampler("ucb", n, **kw)
    for e in range(3):
        epoch(a, e)
    b = make_sampler("ucb", n, **kw)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(epoch(a, e), epoch(b, e)) for e in range(3, 8))


def test_the_raju_schedule_study_runs_each_arm_in_the_papers_schedule_with_the_recipes_network(monkeypatch):
    """v3's [Raju] schedule study: UCB and random dynamic pruning at each ratio, and UCB with each intervention (ours)
    at the intervention ratios on the intervention seeds, every arm in [Raju] §4's schedule (20 checkpoints as long as the
    paper's, step decay by 5, no warm-up), with batch norm and augmentation; evaluated once per checkpoint."""
    from dynaprune import profiles
    R = grids.raju_schedule_runs("v3")
    S = profiles.get("v3")["raju_schedule"]
    assert set(R) == ({(m, r, None) for r in S["ratios"] for m in ("ucb", "random_dynamic")}
                      | {("ucb", r, x) for r in S.get("intervention_ratios", S["ratios"]) for x in S["interventions"]})
    for (m, r, i), cs in R.items():
        seeds = S["seeds"] if i is None else S.get("intervention_seeds", S["seeds"])
        assert [c.seed for c in cs] == seeds and all(c.sampler == m and c.lr == S["lr"] for c in cs)
        c = cs[0]
        o = c.options("sampler_options")
        assert (c.schedule, c.gamma, c.warmup_epochs, c.epochs, c.eval_every) == ("multistep", 0.2, 0.0, 20 * o["period"], o["period"])
        assert (c.options("model_options"), c.augment, o["keep_ratio"]) == ({"bn": True}, True, r)
        assert set(o) - {"keep_ratio", "period"} == set(grids.RAJU_INTERVENTIONS.get(i, {}))
    # a study may test its interventions at fewer ratios and on fewer seeds than its arms
    monkeypatch.setitem(profiles.PROFILES, "v3_more", {**profiles.PROFILES["v3"], "raju_schedule": dict(
        S, ratios=[0.2, 0.3], seeds=[0, 1, 2], intervention_ratios=[0.2], intervention_seeds=[1])})
    more = grids.raju_schedule_runs("v3_more")
    assert {k for k in more if k[2] is not None} == {("ucb", 0.2, x) for x in S["interventions"]}
    assert all([c.seed for c in cs] == ([1] if k[2] else [0, 1, 2]) for k, cs in more.items())
    assert {k[1] for k in more if k[2] is None} == {0.2, 0.3}
    assert grids.raju_schedule_runs("cpu") == {}
    smoke = next(iter(grids.raju_schedule_runs("smoke").values()))[0]      # the seconds-long stand-in: T_p given
    assert (smoke.epochs, smoke.options("sampler_options")["period"], smoke.milestones) == (20, 1, (6.0, 12.0, 16.0))


def test_the_run_length_table_counts_a_gain_only_beyond_two_runs_noise():
    """A longer run's validation gain over the next shorter one at the same rate counts only beyond the 95% noise of a
    difference of two runs' accuracies on the validation split (binomial: z sqrt(2 p (1 - p) / n)); each rate is its
    own sequence; the shortest length has no gain."""
    from types import SimpleNamespace as NS
    from dynaprune import report
    mk = lambda lr, E, v: NS(config=NS(lr=lr, epochs=E), final=dict(val_acc=v, test_acc=v - 0.01))
    t = report.run_length_table([mk(0.1, 40, 0.925), mk(0.1, 10, 0.90), mk(0.1, 20, 0.92), mk(0.05, 10, 0.5)], 5000)
    a = t[t.lr == 0.1].set_index("epochs")
    assert list(a.index) == [10, 20, 40] and np.isnan(a.loc[10, "val_gain"]) and pd.isna(a.loc[10, "gain_clear"])
    assert a.loc[20, "noise"] == pytest.approx(1.96 * np.sqrt(2 * 0.91 * 0.09 / 5000))
    assert a.loc[20, "gain_clear"] and not a.loc[40, "gain_clear"] and a.loc[40, "val_gain"] == pytest.approx(0.005)
    assert t[t.lr == 0.05]["val_gain"].isna().all()
