"""A dataset kept on disk (an image folder) trains through a DataLoader with workers and the sampler as
its sampler, and gives exactly the run that holding the same images in memory gives."""
import numpy as np
import pytest
import torch
from PIL import Image

from dynaprune import data, train
from dynaprune.train import RunConfig, run


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"class{c}").mkdir()
        for i in range(24):   # class-dependent colour plus noise, so there is something to learn
            img = np.clip(rng.normal(60 + 70 * c, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")
    return root


def config(folder, stream, sampler, opts):
    return RunConfig(dataset="imagefolder", dataset_options={"path": str(folder), "size": 8, "stream": stream},
                     model="small_cnn", model_options={"width": 4, "hidden": 16}, epochs=2, batch_size=16, lr=0.05,
                     sampler=sampler, sampler_options=opts, augment=True, record_selection=True, seed=3)


@pytest.mark.parametrize("sampler,opts", [("omission", {"keep_ratio": 0.5}), ("es", {"keep_ratio": 0.5, "anneal": 0.0})])
def test_streamed_run_equals_in_memory_run(folder, sampler, opts, monkeypatch):
    monkeypatch.setenv("DYNAPRUNE_WORKERS", "2")
    loaders = []
    real = torch.utils.data.DataLoader
    monkeypatch.setattr(torch.utils.data, "DataLoader", lambda *a, **k: loaders.append(k) or real(*a, **k))
    ds = data.load_dataset("imagefolder", path=str(folder), size=8, stream=True)
    assert isinstance(ds.x_train, data.LazyImages) and ds.meta["streamed"] and ds.x_train.shape[1:] == (3, 8, 8)
    streamed = run(config(folder, True, sampler, opts), use_cache=False)
    assert loaders and all(k["num_workers"] == 2 and k["sampler"] is not None for k in loaders)
    n_loaders = len(loaders)
    held = run(config(folder, False, sampler, opts), use_cache=False)
    assert len(loaders) == n_loaders                         # in memory: no DataLoader
    strip = lambda recs: [{k: v for k, v in r.items() if not k.startswith("t_") and k != "wall"} for r in recs]
    assert strip(streamed.records) == strip(held.records)
    for k in held.arrays:
        assert np.array_equal(streamed.arrays[k], held.arrays[k]), k


def test_auto_streams_only_what_does_not_fit(folder, monkeypatch):
    monkeypatch.setenv("DYNAPRUNE_MEMORY_GB", "1e-6")        # ~1 kB: the folder does not fit
    assert isinstance(data.load_dataset("imagefolder", path=str(folder), size=8).x_train, data.LazyImages)
    monkeypatch.setenv("DYNAPRUNE_MEMORY_GB", "1")
    assert isinstance(data.load_dataset("imagefolder", path=str(folder), size=8).x_train, torch.Tensor)
    with pytest.raises(ValueError, match="stream must be"):
        data.load_dataset("imagefolder", path=str(folder), size=8, stream="sometimes")
