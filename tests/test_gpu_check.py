"""The GPU check (`python -m dynaprune.gpu_check`) cannot rot: it runs here on the CPU with tiny sizes, writes its
runs into the results cache with their device and its speed table, and stops clearly where CUDA is asked for and
absent, before anything is written."""
import json

import pytest
import torch

from dynaprune import cache, gpu_check, profiles, regimes


@pytest.mark.slow
def test_the_gpu_check_runs_tiny_on_the_cpu_and_caches_its_runs(tmp_path):
    res, out = tmp_path / "results", tmp_path / "out"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--seeds", "0", "--results", str(res), "--out", str(out)]) == 0
    table = json.loads((out / "bench_gpu.json").read_text())
    methods = profiles.get("gpu-mini", check_device=False)["gpu_check"]["methods"]
    assert set(table["methods"]) == set(methods) and table["seeds"] == [0] and table["tiny"]
    for m, r in table["methods"].items():
        assert r["seeds"] == 1 and 0 <= r["sampler_overhead"]["median"] < 1
        assert (r["efficiency"] is None) == (m == "full")
    assert table["cost"]["forward"]["median"] > 0 and table["cost"]["backward"]["median"] > 0
    assert table["syncs_per_step"] == {m: None for m in methods}          # counted on CUDA only
    for label, key in table["cache_keys"].items():                          # every run cached, with its device
        meta = cache.read_meta(cache.meta_path(res, key))
        assert meta["config"]["device"] == "cpu" and meta["env"]["device"] == "cpu"
    # the runs are the fair protocol's: the recipe, the paper regimes, the budget asked for
    c = gpu_check.configs("cuda")
    assert all(x.augment and x.drop_last and x.warmup_epochs == 0.1 * x.epochs and x.model == "resnet18" for x in c.values())
    assert c[("infobatch", 0)].options("sampler_options") == regimes.regime("infobatch", 15)
    assert c[("ucb", 0)].options("sampler_options")["keep_ratio"] == 0.3
    assert regimes.outside("ucb", c[("ucb", 0)].options("sampler_options"), 15) is None


def test_the_gpu_check_stops_clearly_without_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs a CUDA GPU .* nothing was run"):
        gpu_check.main(["--results", str(tmp_path / "r"), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        profiles.get("gpu-mini")                     # running it is refused; reading its configs is not
    assert gpu_check.configs("cuda")[("full", 0)].device == "cuda"


def test_the_packed_dataset_reads_as_the_same_tensors(tmp_path):
    """What travels to a GPU machine (the first k training images) loads to exactly the tensors of the full files
    with ``train_limit`` k."""
    import tarfile
    from dynaprune.data import load_dataset, pack_fashion_mnist
    pack = pack_fashion_mnist(tmp_path / "p.tar.xz", train_limit=100)
    raw = tmp_path / "d" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    with tarfile.open(pack) as t:
        t.extractall(raw, filter="data")
    small = load_dataset("fashion_mnist", root=tmp_path / "d", train_limit=100)
    full = load_dataset("fashion_mnist", train_limit=100)
    assert torch.equal(small.x_train, full.x_train) and torch.equal(small.y_train, full.y_train)
    assert len(small.x_train) == 100 and torch.equal(small.x_test, full.x_test)
    with pytest.raises(ValueError, match="train_limit"):
        load_dataset("fashion_mnist", train_limit=0)
