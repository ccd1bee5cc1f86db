"""The executor (local processes, submitit) and the profiles table."""
import pytest
import torch

from dynaprune import cache, grids, profiles, study
from dynaprune.train import RunConfig

TINY = dict(dataset="toy2d", model="mlp", model_options={"hidden": [8]}, epochs=2, batch_size=64)


@pytest.mark.slow
def test_local_processes_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    cfgs = [RunConfig(**TINY, seed=s) for s in (0, 1)]
    res = study.runs(cfgs, jobs=2)
    assert [r.config.seed for r in res] == [0, 1] and all(r.from_cache for r in res)
    assert res[0].records != res[1].records  # different seeds, different runs


def test_a_cache_only_caller_reads_what_is_there_and_trains_nothing(tmp_path, monkeypatch):
    """``runs(cache_only=True)`` (the benchmark's view of the cache) returns cached runs and refuses a missing one
    with `cache.CacheMiss` before anything is trained or written; ``backprops`` is the records' sum."""
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    have, lack = RunConfig(**TINY, seed=0), RunConfig(**TINY, seed=1)
    (r,) = study.runs([have])
    assert study.runs([have], cache_only=True)[0].records == r.records
    assert r.backprops == sum(x["backpropagated"] for x in r.records) > 0
    files = sorted(tmp_path.rglob("*"))
    with pytest.raises(cache.CacheMiss, match="1 of the 2 runs"):
        study.runs([have, lack], cache_only=True)
    assert sorted(tmp_path.rglob("*")) == files and cache.load(lack, tmp_path) is None


@pytest.mark.slow
def test_submitit_local_executor(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DYNAPRUNE_SUBMITIT_FOLDER", str(tmp_path / "submitit"))
    monkeypatch.setenv("DYNAPRUNE_SUBMITIT_CLUSTER", "local")
    c = RunConfig(**TINY, seed=5)
    (r,) = study.runs([c], executor="submitit")
    assert r.from_cache and cache.load(c, tmp_path / "results") is not None


def test_unknown_executor_and_profile():
    with pytest.raises(ValueError, match="known: local, submitit"):
        study.runs([RunConfig(**TINY)], executor="ray")
    with pytest.raises(ValueError, match=r"known: smoke, quick, cpu, .*gpu"):
        profiles.get("huge")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_gpu_profile_refused_without_cuda():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        profiles.get("gpu")


def test_side_studies_config(monkeypatch):
    """Notebooks 04, 06, 07, 08 build on `side_config`: the base config and seeds for smoke and quick (so their
    committed runs keep their keys), a cheaper setting on 3 seeds for cpu; a profile may give each side study its own
    seeds ({notebook: seeds}; a notebook it does not name takes the profile's seeds)."""
    from dynaprune import profiles
    monkeypatch.setitem(profiles.PROFILES, "per_notebook", {**profiles.PROFILES["cpu"], "side_seeds": {"06": [0, 1, 2, 3]}})
    assert profiles.side_seeds("per_notebook", "06_ablations") == [0, 1, 2, 3]
    assert profiles.side_seeds("per_notebook", "04") == [0, 1, 2, 3, 4]
    for name in ("smoke", "quick"):
        p = profiles.get(name)
        assert profiles.side_config(name) == profiles.base_config(name) and p["side_seeds"] == p["seeds"]
    cpu = profiles.side_config("cpu", epochs=7)
    assert cpu.train_subset == 20_000 and cpu.epochs == 7 and cpu.eval_every == 5
    assert profiles.get("cpu")["side_seeds"] == [0, 1, 2] and profiles.side_config("cpu").epochs == 10
    assert all(profiles.side_seeds("cpu", n) == [0, 1, 2] for n in ("04", "05", "06", "07", "08"))
    # v3's side studies keep the committed three seeds (its 16 hours buy none of the numbers their verdicts need)
    assert all(profiles.side_seeds("v3", n) == [0, 1, 2] for n in ("04", "05", "06_ablations", "07", "08"))
    assert {c.seed for c in grids.comparison_sets("v3")["wide"]} == {0, 1, 2}


def test_curves_refuse_an_unknown_method_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    with pytest.raises(SystemExit, match="unknown method"):
        study.main(["--profile", "smoke", "--curves", "omission", "no_such_method"])
    assert not list(tmp_path.iterdir())


def test_ledger_counts_what_the_cache_holds(tmp_path, monkeypatch):
    """The ledger of a long computation reads the cache only: before any run every cell misses its whole
    unextended grid (on the tuning seeds) plus its evaluation seeds; after full training's cell is computed, that
    cell holds exactly the runs `curve_results` made (its extensions included), misses none, and its hours are the
    runs' measured wall clocks."""
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    P = profiles.get("smoke")
    C = P["curves"]
    per_cell = len(C["grid"]) * len(C["tuning_seeds"]) + len(P["seeds"])
    t = study.ledger("smoke")
    cur = t[t.part == "curves"]
    assert (cur.held == 0).all() and (cur.missing == per_cell).all() and (cur.hours == 0).all()
    assert not list(tmp_path.glob("*.json*"))                     # trained nothing
    arms = t[t.part == "raju_schedule"]
    assert len(arms) == 2 * len(P["raju_schedule"]["ratios"]) + 3 and (arms.missing == len(P["raju_schedule"]["seeds"])).all()
    (lr, table, evals), = study.curve_results("smoke", cells=[("full", None)]).values()
    full = study.ledger("smoke").set_index(["part", "cell"]).loc[("curves", "full:own")]
    assert full.missing == 0 and full.held == len(table) * len(C["tuning_seeds"]) + len(P["seeds"])
    tuned = [cache.load(grids.curve_config("smoke", "full", None, s, x)) for x in table.lr for s in C["tuning_seeds"]]
    walls = [r.records[-1]["wall"] for r in tuned + evals]
    assert full.hours == pytest.approx(sum(walls) / 3600) and full.hours > 0


def test_claims_flag_computes_the_claims_cells_in_their_order(monkeypatch, capsys):
    """``--claims`` hands `curves` exactly `claims.curve_cells` of the profile's curves (each claim's two arms at each
    keep ratio its paper makes it at, in the claims' order, no cell twice) and trains nothing else."""
    seen = {}
    monkeypatch.setattr(study, "curves", lambda profile, methods, jobs, cells=None: seen.update(p=profile, m=methods, c=cells))
    study.main(["--profile", "smoke", "--claims"])
    from dynaprune.claims import CLAIMS
    cells = grids.curve_cells("smoke")
    want = [(m, r) for c in CLAIMS.values() for r in c.keep_ratios if all((x, r) in cells for x in c.curve)
            for m in c.curve]
    assert seen["p"] == "smoke" and not seen["m"] and seen["c"] == list(dict.fromkeys(want)) and ("full", None) in seen["c"]
    assert "[claims]" in capsys.readouterr().out


def test_a_profile_that_computes_part_of_its_grid_lists_the_rest_as_cut(monkeypatch):
    """A profile whose curves set ``cells`` computes full training, the claims' cells and its extras only, in the grid's
    order; ``every`` gives the whole grid, the ledger lists the difference as ``cut`` (trains nothing), and an extra cell
    that is not on the grid is refused."""
    from dynaprune import claims
    P = profiles.PROFILES["smoke"]
    part = {**P, "curves": {**P["curves"], "cells": dict(claims=True, extra=[("random", 0.3)])}}
    monkeypatch.setitem(profiles.PROFILES, "smoke", part)
    every = grids.curve_cells("smoke", every=True)
    keep = {("full", None), ("random", 0.3), *claims.curve_cells(every)}
    cells = grids.curve_cells("smoke")
    assert cells == [c for c in every if c in keep] and ("random", 0.3) in cells and len(cells) < len(every)
    t = study.ledger("smoke")
    cut = t[t.part == "cut"]
    assert sorted(cut.cell) == sorted(f"{m}:{'own' if r is None else r}" for m, r in every if m and (m, r) not in keep)
    assert (cut.missing == 0).all() and len(t[t.part == "curves"]) == len(cells)
    monkeypatch.setitem(profiles.PROFILES, "smoke", {**P, "curves": {**P["curves"], "cells": dict(extra=[("random", 0.9)])}})
    with pytest.raises(ValueError, match=r"not on its curves"):
        grids.curve_cells("smoke")


def test_ledger_lists_an_own_budget_methods_controls_once_its_share_is_measured(tmp_path, monkeypatch):
    """Once an own-budget method's cell and full training's are held, the ledger lists its budget-matched controls
    (`grids.matched_cells` at its measured share), holding exactly the runs `curve_results` made for them."""
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    assert not (study.ledger("smoke").part == "controls").any()
    out = study.curve_results("smoke", cells=[("full", None), ("infobatch", None)])
    controls = [c for c in out if c not in {("full", None), ("infobatch", None)}]
    t = study.ledger("smoke").set_index("part").loc["controls"]
    assert len(t) == len(controls) == 2 and (t.missing == 0).all() and t.claim.all()
    C, P = profiles.get("smoke")["curves"], profiles.get("smoke")
    for (m, r), row in zip(controls, t.to_dict("records")):
        lr, table, evals = out[(m, r)]
        assert row["cell"] == f"{m}:{r} (of infobatch)" and row["held"] == len(table) * len(C["tuning_seeds"]) + len(P["seeds"])
