"""The executor (local processes, submitit) and the profiles table."""
import pytest
import torch

from dynaprune import cache, profiles, study
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


def test_side_studies_config():
    """Notebooks 04, 06, 07, 08 build on `side_config`: the base config and seeds for smoke and quick (so their
    committed runs keep their keys), a cheaper setting on 3 seeds for cpu."""
    from dynaprune import profiles
    for name in ("smoke", "quick"):
        p = profiles.get(name)
        assert profiles.side_config(name) == profiles.base_config(name) and p["side_seeds"] == p["seeds"]
    cpu = profiles.side_config("cpu", epochs=7)
    assert cpu.train_subset == 20_000 and cpu.epochs == 7 and cpu.eval_every == 5
    assert profiles.get("cpu")["side_seeds"] == [0, 1, 2] and profiles.side_config("cpu").epochs == 10


def test_curves_refuse_an_unknown_method_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    with pytest.raises(SystemExit, match="unknown method"):
        study.main(["--profile", "smoke", "--curves", "omission", "no_such_method"])
    assert not list(tmp_path.iterdir())
