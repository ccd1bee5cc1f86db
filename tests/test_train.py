"""Engine and cache: end to end per sampler level, hashing, resume, concurrency, corruption."""
import dataclasses
import json
import multiprocessing as mp
import warnings

import numpy as np
import pytest
import torch

from dynaprune import cache
from dynaprune.train import RunConfig, lr_at, run, selection_counts

TINY = dict(dataset="mnist1d", dataset_options={"num_samples": 600}, model="mlp",
            model_options={"hidden": [32]}, epochs=3, batch_size=32, lr=0.05)


def cfg(**kw):
    return RunConfig(**{**TINY, **kw})


@pytest.mark.parametrize("sampler,opts", [("full", {}), ("infobatch", {}), ("es", {}), ("online_is", {}),
                                          ("ucb", {"period": 1}), ("omission_batch", {})])
def test_end_to_end_per_level(tmp_path, sampler, opts):
    r = run(cfg(sampler=sampler, sampler_options=opts, record_selection=True), root=tmp_path)
    assert len(r.records) == 3
    n = 480
    for rec in r.records:
        assert np.isfinite(rec["test_loss"]) and 0 <= rec["test_acc"] <= 1
        assert rec["backpropagated"] <= rec["forwarded"]
    counts = selection_counts(r)
    assert counts.shape == (n,) and counts.max() <= 3
    if sampler == "full":
        assert r.records[0]["backpropagated"] == n and (counts == 3).all()
    if sampler == "es":  # b/B = 25% outside annealing (E_a = 0 for 3 epochs)
        assert r.records[1]["backpropagated"] < 0.3 * n and r.records[1]["forwarded"] >= n
    # steps follow the sampler's exact length
    assert all(rec["steps"] > 0 for rec in r.records)


def test_cache_round_trip_and_hit(tmp_path):
    c = cfg(record_selection=True)
    a = run(c, root=tmp_path)
    b = run(c, root=tmp_path)
    assert b.from_cache and not a.from_cache
    assert a.records == b.records
    assert np.array_equal(a.arrays["selection_bits"], b.arrays["selection_bits"])
    df = cache.load_results({"sampler": "full"}, root=tmp_path)
    assert len(df) == 3 and set(df["epoch"]) == {0, 1, 2} and (df["device_used"] == "cpu").all()
    assert cache.load_results({"sampler": "es"}, root=tmp_path).empty


def test_plain_json_entries_convert_to_compressed_metadata_losslessly(tmp_path):
    """`cache.compress_metadata`: an entry of the earlier format (<key>.json) becomes <key>.json.gz with the same JSON,
    and loads as the same run; a JSON that is not a run stays; the stored bytes do not depend on when they were written."""
    import gzip
    import json
    c = cfg()
    a = run(c, root=tmp_path)
    gz = cache.meta_path(tmp_path, cache.key(c))
    meta = cache.read_meta(gz)
    (tmp_path / f"{cache.key(c)}.json").write_text(json.dumps(meta, indent=1))   # the earlier format
    gz.unlink()
    (tmp_path / "notes.json").write_text("[1, 2]")
    (tmp_path / "draft.json").write_text("{not json")
    assert cache.load(c, tmp_path) is None and cache.compress_metadata(tmp_path) == 1
    assert cache.read_meta(gz) == meta and (tmp_path / "notes.json").exists()
    assert not (tmp_path / f"{cache.key(c)}.json").exists() and gzip.decompress(gz.read_bytes()).startswith(b'{"key"')
    b = cache.load(c, tmp_path)
    assert b.from_cache and b.records == a.records
    first = gz.read_bytes()
    cache.save(b, tmp_path)
    assert gz.read_bytes() == first


def test_a_version_2_cache_moves_to_this_versions_keys_with_every_result_unchanged(tmp_path):
    """`cache.rekey`: entries written under version 2's keys (fields added late left out at their defaults, Reducing
    Epoch's own engine version) load afterwards under `cache.key` with the same records and arrays, an analysis whose
    params hold a config or a run key is found by `memo` without recomputing, an entry whose key version 2 does not
    give it today is left and listed as stale, and a second pass moves nothing."""
    import hashlib
    import json
    configs = [cfg(record_selection=True), cfg(epochs_scale=0.5, drop_last=True), cfg(val_size=60)]
    ran = [run(c, root=tmp_path) for c in configs]
    for c, r in zip(configs, ran):          # rewrite each entry as version 2 wrote it
        new, old = cache.key(c), cache._v2_key(c)
        meta = cache.read_meta(cache.meta_path(tmp_path, new))
        meta.update(key=old, code_version="2", config=cache._v2_config(meta["config"]))
        cache.meta_path(tmp_path, old).write_bytes(cache._gz(meta))
        (tmp_path / f"{new}.npz").rename(tmp_path / f"{old}.npz")
        cache.meta_path(tmp_path, new).unlink()
        assert cache.load(c, tmp_path) is None
    params = dict(base=configs[1].to_dict(), key=cache._v2_key(configs[0]), n=3)
    stored = json.loads(json.dumps(params, default=str))
    stored["base"] = cache._v2_config(stored["base"])
    name = cache._v2_analysis_name("probe", stored)
    (tmp_path / "analysis").mkdir()
    np.savez(tmp_path / "analysis" / f"{name}.npz", x=np.arange(3))
    sha = hashlib.sha256((tmp_path / "analysis" / f"{name}.npz").read_bytes()).hexdigest()
    (tmp_path / "analysis" / f"{name}.json").write_text(json.dumps(dict(kind="probe", params=stored, code_version="2",
                                                                       npz_sha256=sha)))
    stale = cache.meta_path(tmp_path, "0" * 20)     # e.g. written before its sampler's version changed
    stale.write_bytes(cache._gz(dict(cache.read_meta(cache.meta_path(tmp_path, cache._v2_key(configs[2]))), key="0" * 20)))
    out = cache.rekey(tmp_path)
    assert (out["runs"], out["analyses"], out["stale"]) == (3, 1, ["0" * 20]) and stale.exists()
    for c, r in zip(configs, ran):
        b = cache.load(c, tmp_path)
        assert b.from_cache and b.records == r.records and b.arrays.keys() == r.arrays.keys()
        assert all(np.array_equal(b.arrays[k], r.arrays[k]) for k in r.arrays)
        assert not cache.meta_path(tmp_path, cache._v2_key(c)).exists()
    params["key"] = cache.key(configs[0])
    got = cache.memo("probe", params, lambda: pytest.fail("the moved analysis was recomputed"), tmp_path)
    assert got["x"].tolist() == [0, 1, 2]
    assert cache.rekey(tmp_path) == {"runs": 0, "analyses": 0, "stale": ["0" * 20]}


def test_a_samplers_version_bump_moves_the_runs_it_leaves_unchanged_and_no_other(tmp_path, monkeypatch):
    """`cache.bump`: when a sampler's default changes (its version with it), its runs that state the option keep their
    result and move to the new version's keys (with an analysis naming one of them), the runs that took the old default
    are stale (left for `prune`, never read as the new default's), other samplers' runs are untouched, and a second pass
    moves nothing."""
    import json
    from dynaprune.samplers import SAMPLERS
    stated = cfg(sampler="omission", sampler_options={"keep_ratio": 0.5, "bias_correction": False})
    implicit = cfg(sampler="omission", sampler_options={"keep_ratio": 0.5})
    other = cfg(sampler="full")
    ran = {name: run(c, root=tmp_path) for name, c in ((False, stated), ("implicit", implicit), ("other", other))}
    old_keys = {name: cache.key(r.config) for name, r in ran.items()}
    params = dict(key=old_keys[False], epochs=3)
    cache.memo("diagnostics", params, lambda: {"x": np.arange(3)}, tmp_path)
    old = SAMPLERS["omission"].version
    with pytest.raises(ValueError, match="from an older version"):      # nothing to move: refused, nothing touched
        cache.bump("omission", old, lambda o: True, tmp_path)
    with pytest.raises(ValueError, match="unknown sampler"):
        cache.bump("omision", old, lambda o: True, tmp_path)
    monkeypatch.setattr(SAMPLERS["omission"], "version", old + 1)
    assert cache.load(stated, tmp_path) is None and cache.load(other, tmp_path).from_cache
    out = cache.bump("omission", old, lambda o: "bias_correction" in o, tmp_path)
    assert (out["runs"], out["analyses"], out["stale"]) == (1, 1, [old_keys["implicit"]])
    b = cache.load(stated, tmp_path)
    assert b.from_cache and b.records == ran[False].records
    assert all(np.array_equal(b.arrays[k], ran[False].arrays[k]) for k in ran[False].arrays)
    assert cache.load(implicit, tmp_path) is None and cache.load(other, tmp_path).from_cache
    got = cache.memo("diagnostics", dict(params, key=cache.key(stated)), lambda: pytest.fail("recomputed"), tmp_path)
    assert got["x"].tolist() == [0, 1, 2]
    assert json.loads(next((tmp_path / "analysis").glob("*.json")).read_text())["params"]["key"] == cache.key(stated)
    assert cache.bump("omission", old, lambda o: "bias_correction" in o, tmp_path) == \
        {"runs": 0, "analyses": 0, "stale": [old_keys["implicit"]]}


def test_hash_is_stable_and_sensitive_to_every_field():
    c = cfg()
    assert cache.key(c) == cache.key(cfg())
    assert cache.key(RunConfig(**{**TINY, "dataset_options": {"num_samples": 600}})) == cache.key(c)
    changed = dict(dataset="toy2d", dataset_options={"num_samples": 601}, model="small_cnn",
                   model_options={"hidden": [33]}, loss="mse", optimizer="adam", lr=0.06, momentum=0.8,
                   weight_decay=0.0, schedule="constant", warmup_epochs=1.0, milestones=(2,), gamma=0.2,
                   epochs=4, epochs_scale=0.5, scale_lr=True, batch_size=16, sampler="random",
                   sampler_options={"keep_ratio": 0.3}, augment=True, seed=1, eval_every=2,
                   time_budget=10.0, record_selection=True, train_subset=100,
                   final_signals=("loss",), drop_last=True, world_size=2, val_size=50,
                   channels_last=True)
    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"device"}
    assert set(changed) == fields, "every config field must be covered"
    keys = {cache.key(dataclasses.replace(c, **{k: v})) for k, v in changed.items()}
    assert len(keys) == len(changed) and cache.key(c) not in keys


def test_bad_config_errors(tmp_path):
    with pytest.raises(ValueError, match="known: full"):
        cfg(sampler="magic")
    with pytest.raises(ValueError, match="known: mlp"):
        cfg(model="vgg")
    with pytest.raises(ValueError, match="known: fashion_mnist"):
        cfg(dataset="svhn")
    with pytest.raises(TypeError, match="epochs"):
        cfg(epochs="3")
    with pytest.raises(ValueError, match="larger than the training set"):
        run(cfg(batch_size=10_000), use_cache=False)
    with pytest.raises(ValueError, match="device must be"):
        cfg(device="tpu")
    if not torch.cuda.is_available():       # a CUDA config is data (its cached runs load anywhere); running it is refused
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            run(cfg(device="cuda"), root=tmp_path)
        assert not list(tmp_path.iterdir())


def test_kill_and_resume_is_bit_identical(tmp_path):
    c = cfg(sampler="omission", epochs=4, record_selection=True)
    full = run(c, use_cache=False)
    part = run(c, use_cache=False, checkpoint_dir=tmp_path, stop_after=2)
    assert len(part.records) == 2
    resumed = run(c, use_cache=False, checkpoint_dir=tmp_path)
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("t_") and k != "wall"} for r in rs]
    assert strip(full.records) == strip(resumed.records)
    assert np.array_equal(full.arrays["selection_bits"], resumed.arrays["selection_bits"])
    assert np.array_equal(full.arrays["final_loss"], resumed.arrays["final_loss"])


def _write(args):
    root, sampler = args
    run(cfg(sampler=sampler), root=root)
    return sampler


@pytest.mark.slow
def test_two_concurrent_writers(tmp_path):
    with mp.get_context("spawn").Pool(2) as pool:
        done = pool.map(_write, [(str(tmp_path), "full"), (str(tmp_path), "random")])
    assert sorted(done) == ["full", "random"]
    for s in done:
        assert cache.load(cfg(sampler=s), tmp_path) is not None
    assert not list(tmp_path.glob(".*tmp*"))


def test_corrupt_entry_is_detected_and_recomputed(tmp_path):
    c = cfg()
    run(c, root=tmp_path)
    npz = tmp_path / f"{cache.key(c)}.npz"
    npz.write_bytes(npz.read_bytes()[:-5] + b"xxxxx")
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert cache.load(c, tmp_path) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = run(c, root=tmp_path)
    assert not r.from_cache and cache.load(c, tmp_path) is not None


def test_lr_schedule_follows_pruning():
    """The schedule reaches its end exactly at the last step whatever the epoch lengths."""
    c = cfg(sampler="infobatch", epochs=4, schedule="cosine", lr=0.1)
    r = run(c, use_cache=False)
    steps = [rec["steps"] for rec in r.records]
    assert steps[0] > steps[1]  # pruned epochs are shorter
    last = r.records[-1]["lr"]
    assert last == pytest.approx(lr_at(c, 3 + (steps[-1] - 1) / steps[-1]), rel=1e-9)
    assert last < 0.01 * 0.1 * 4
    assert lr_at(c, 0) == pytest.approx(0.1) and lr_at(c, 4) == pytest.approx(0.0, abs=1e-12)


def test_reducing_epoch_baselines():
    c = cfg(epochs=4, epochs_scale=0.5, scale_lr=True, schedule="constant")
    assert c.train_epochs == 2 and lr_at(c, 0.3) == pytest.approx(0.1)
    r = run(c, use_cache=False)
    assert len(r.records) == 2


def test_time_budget_stops_early():
    r = run(cfg(epochs=50, time_budget=0.0), use_cache=False)
    assert len(r.records) == 1


def test_hash_follows_the_sampler_version(monkeypatch):
    from dynaprune.samplers import SAMPLERS
    c, other = cfg(sampler="random"), cfg(sampler="full")
    k, k_other = cache.key(c), cache.key(other)
    monkeypatch.setattr(SAMPLERS["random"], "version", 99)
    assert cache.key(c) != k and cache.key(other) == k_other  # only that method's runs are invalidated


@pytest.mark.parametrize("name,shape", [("small_cnn", (1, 28, 28)), ("mlp", (1, 28, 28)),
                                        pytest.param("resnet18", (3, 32, 32), marks=pytest.mark.slow)])
@pytest.mark.parametrize("threads", [1, 2])
def test_eval_forwards_in_sub_batches_are_bit_identical(name, shape, threads):
    """Scoring passes, selection forwards and evaluations run the model in eval mode in sub-batches of
    CPU_EVAL_BATCH on the CPU (faster): for the convolutional models of the profiles every output equals one forward of
    the whole batch bit for bit, so no cached run changes (channels_last as the fair protocol runs it, and the default
    format). The MLP's last, short sub-batch may take another GEMM split at 2 threads (seen on one Xeon: differences of
    1.5e-7 in the 17-row remainder, none at 1 thread): it agrees to float32 rounding there, not bit for bit."""
    from dynaprune.config import RunConfig
    from dynaprune.models import build_model
    from dynaprune.train import CPU_EVAL_BATCH, _forward, _forward_eval
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = build_model(name, shape, 10, seed=0).eval()
        # whole sub-batches and a remainder (ResNet-18: one whole one, its forwards are the slow part of this test)
        x = torch.randn((1 if name == "resnet18" else 3) * CPU_EVAL_BATCH + 17, *shape,
                        generator=torch.Generator().manual_seed(1))
        c, dev = RunConfig(), torch.device("cpu")
        for fmt in (torch.contiguous_format, torch.channels_last):
            m, xx = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
            with torch.no_grad():
                a, b = _forward_eval(m, xx, c, dev), _forward(m, xx, c, dev)
            if name == "mlp":
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            else:
                assert torch.equal(a, b)
    finally:
        torch.set_num_threads(before)


def test_a_selection_forward_that_diverges_is_recorded_as_divergence_not_a_crash():
    """A batch-level sampler ([ES]) scores each meta-batch with a forward pass; at a learning rate far too large
    that forward's losses turn non-finite first. The run is a result (diverged), as when the training step's do,
    not an exception from the sampler's input check."""
    from dynaprune import profiles
    c = profiles.base_config("smoke", sampler="es", sampler_options={"ratio": 0.25}, lr=1e6)
    r = run(c, use_cache=False)
    assert any(x.get("diverged") for x in r.records)
    assert r.records[-1].get("nonfinite_step") is not None


def test_the_command_line_trains_the_fair_protocol_by_default_and_every_flag_has_help():
    """`python -m dynaprune.train`: by default the run is `grids.fair_config`'s (validation split, warm-up, drop_last, the
    method's paper regime, a keep ratio as its budget, sampler options over the regime's); ``--plain`` reaches the
    profile's base config; every flag carries help text; a bad method is refused before anything runs."""
    from dynaprune import grids, profiles
    from dynaprune.train import cli_config, cli_parser
    ap = cli_parser()
    assert all(a.help for a in ap._actions), [a.dest for a in ap._actions if not a.help]
    a = ap.parse_args(["--sampler", "ucb", "--keep-ratio", "0.3", "--seed", "2", "--sampler-options", '{"c": 2.0}'])
    fair = grids.fair_config("smoke", "ucb", keep_ratio=0.3, seed=2)
    assert cli_config(a) == fair.replace(sampler_options={**fair.options("sampler_options"), "c": 2.0})
    c = cli_config(ap.parse_args(["--val-size", "0", "--schedule", "constant"]))
    assert c.val_size == 0 and c.schedule == "constant" and c.drop_last
    plain = cli_config(ap.parse_args(["--plain", "--sampler", "ucb", "--keep-ratio", "0.3"]))
    assert plain == profiles.base_config("smoke", sampler="ucb", sampler_options={"keep_ratio": 0.3}, world_size=1)
    assert plain.val_size == 0 and not plain.drop_last
    with pytest.raises(ValueError, match="unknown sampler"):
        cli_config(ap.parse_args(["--sampler", "nope"]))
