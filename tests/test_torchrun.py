"""`python -m dynaprune.train` under torchrun: 2 gloo processes train one run with DistributedDataParallel,
rank 0 writes one cache entry that states the world size, set-level samplers plan the same epochs as a
single process at the same seed, and a 2-process run cut after an epoch resumes to the same result."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynaprune import cache

pytestmark = pytest.mark.slow   # `make test-fast` leaves these out

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def launch(tmp_path, *args, procs=2):
    env = dict(os.environ, DYNAPRUNE_RESULTS=str(tmp_path / "results"), OMP_NUM_THREADS="1")
    cmd = ([str(TORCHRUN), "--standalone", f"--nproc_per_node={procs}"] if procs > 1 else [sys.executable]) + \
          ["-m", "dynaprune.train", "--profile", "smoke", *args]
    out = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])


def entry(tmp_path, key):
    meta = cache.read_meta(cache.meta_path(tmp_path / "results", key))
    return meta, np.load(tmp_path / "results" / f"{key}.npz")


@pytest.mark.parametrize("sampler", ["omission"])
def test_two_processes_plan_like_one(tmp_path, sampler):
    two = launch(tmp_path, "--sampler", sampler, "--record-selection")
    one = launch(tmp_path, "--sampler", sampler, "--record-selection", procs=1)
    assert sorted(p.name[:-len(cache.META)] for p in cache.run_files(tmp_path / "results")) == sorted([two["key"], one["key"]])
    m2, z2 = entry(tmp_path, two["key"])
    m1, z1 = entry(tmp_path, one["key"])
    assert m2["config"]["world_size"] == 2 and m2["env"]["world_size"] == 2 and m1["config"]["world_size"] == 1
    # the same samples planned (and backpropagated) in every epoch as the single process at the same seed
    assert np.array_equal(z2["selection_bits"], z1["selection_bits"])
    assert [r["steps"] for r in m2["records"]] == [r["steps"] for r in m1["records"]]


def test_killed_two_process_run_resumes(tmp_path):
    ck = str(tmp_path / "ckpt")
    cut = launch(tmp_path, "--sampler", "omission", "--checkpoint-dir", ck, "--stop-after", "1")
    assert cut["epochs_done"] == 1 and not list((tmp_path / "results").glob("*.json*"))   # a time slice writes no entry
    assert sorted(p.name for p in Path(ck).iterdir()) == [f"{cut['key']}.rank0.pt", f"{cut['key']}.rank1.pt"]
    resumed = launch(tmp_path, "--sampler", "omission", "--checkpoint-dir", ck)
    straight = launch(tmp_path / "again" if (tmp_path / "again").mkdir() is None else None, "--sampler", "omission")
    assert resumed["key"] == straight["key"] and resumed["epochs_done"] == straight["epochs_done"] == 3
    a, _ = entry(tmp_path, resumed["key"])
    b, _ = entry(tmp_path / "again", straight["key"])
    strip = lambda recs: [{k: v for k, v in r.items() if not k.startswith("t_") and k != "wall"} for r in recs]
    assert strip(a["records"]) == strip(b["records"])      # bit-identical apart from timings
