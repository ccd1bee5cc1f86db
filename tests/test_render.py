"""The main job cannot break unnoticed: every notebook of the committed profile renders from the
committed results cache with computing forbidden (``DYNAPRUNE_CACHE_ONLY=1``), and writes the same
numbers as the committed ones. A sampler change that was not recomputed and committed, or a
deleted cache entry, fails here."""
import json
import os
import shutil
from pathlib import Path

import pytest

from dynaprune import cache, profiles

pytestmark = pytest.mark.slow   # `make test-fast` leaves these out

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RESULTS = ROOT / "data" / "results"


def _render(path, tmp_path, monkeypatch, results=None):
    import papermill as pm
    figs = tmp_path / "figures"
    monkeypatch.setenv("DYNAPRUNE_FIGURES", str(figs))
    monkeypatch.setenv("DYNAPRUNE_CACHE_ONLY", "1")
    if results is None:
        monkeypatch.delenv("DYNAPRUNE_RESULTS", raising=False)
    else:
        monkeypatch.setenv("DYNAPRUNE_RESULTS", str(results))
    pm.execute_notebook(str(path), str(tmp_path / path.name), parameters={"profile": profiles.COMMITTED},
                        cwd=str(path.parent), kernel_name="python3", progress_bar=False)
    return figs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_profile_renders_from_the_cache(path, tmp_path, monkeypatch):
    before = sorted(p.name for p in RESULTS.rglob("*") if p.is_file())
    figs = _render(path, tmp_path, monkeypatch)
    assert sorted(p.name for p in RESULTS.rglob("*") if p.is_file()) == before, "rendering wrote to the cache"
    numbers = figs / f"{path.stem}_numbers.json"
    committed = ROOT / "figures" / numbers.name
    assert json.loads(numbers.read_text()) == json.loads(committed.read_text()), \
        f"{committed.name} differs from what the committed cache renders: re-run `make study` and commit figures/"


def test_a_missing_cache_entry_fails_the_render(tmp_path, monkeypatch):
    """Delete the committed runs of notebook 02 (the toy2d runs, of every profile) from a copy of the
    cache (of links to its files: nothing is copied, and a link removed leaves the committed file): rendering must
    stop with a CacheMiss naming one of them, never train it quietly."""
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results, copy_function=os.symlink)
    toy = [j for j in cache.run_files(results) if cache.read_meta(j)["config"]["dataset"] == "toy2d"]
    assert toy, "the committed cache holds no toy2d run (notebook 02)"
    victims = [j.name[:-len(cache.META)] for j in toy]
    for v in victims:
        cache.meta_path(results, v).unlink(); (results / f"{v}.npz").unlink()
    import papermill as pm
    nb = next(p for p in NOTEBOOKS if p.stem.startswith("02"))
    with pytest.raises(pm.PapermillExecutionError, match="CacheMiss") as err:
        _render(nb, tmp_path, monkeypatch, results)
    assert any(v in str(err.value) for v in victims)
    assert not any(cache.meta_path(results, v).exists() for v in victims), "a forbidden run was trained and written"


def test_readers_skip_files_that_are_not_runs(tmp_path):
    """A benchmark's JSON (or anything else) in the results folder is not read as a run."""
    shutil.copy(cache.run_files(RESULTS)[0], tmp_path)
    shutil.copy(next(RESULTS.glob("*.npz")), tmp_path)
    (tmp_path / "bench.json").write_text(json.dumps({"samplers": [], "threads": 2}))
    (tmp_path / "notes.json").write_text("[1, 2, 3]")
    import gzip
    (tmp_path / f"notes{cache.META}").write_bytes(gzip.compress(b'{"a": 1}'))
    df = cache.load_results(root=tmp_path)
    assert df["key"].nunique() == 1


def test_other_profiles_never_overwrite_the_committed_figures(tmp_path, monkeypatch):
    """figures/ holds the committed profile's figures and numbers; any other profile writes to
    figures/<profile>/ (git-ignored but for its benchmarks), so `make study PROFILE=quick` leaves the committed ones alone."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from dynaprune import report
    monkeypatch.delenv("DYNAPRUNE_FIGURES", raising=False)
    monkeypatch.setattr(profiles, "_ROOT", tmp_path)
    other = next(p for p in profiles.PROFILES if p != profiles.COMMITTED)
    for prof in (profiles.COMMITTED, other):
        fig = plt.figure()
        report.savefig(fig, "x", prof)
        plt.close(fig)
        report.key_numbers("x", profile=prof, device="cpu", a=1.0)
    assert json.loads((tmp_path / "figures" / "x_numbers.json").read_text())["profile"] == profiles.COMMITTED
    assert json.loads((tmp_path / "figures" / other / "x_numbers.json").read_text())["profile"] == other
    assert (tmp_path / "figures" / "x.png").is_file() and (tmp_path / "figures" / other / "x.png").is_file()
    # a non-committed profile's renders stay out of git; its benchmarks (inputs of its render) do not
    import subprocess
    ignored = lambda path: subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0
    assert ignored(f"figures/{other}/x.png") and ignored(f"figures/{other}/x_numbers.json")
    assert not ignored(f"figures/{other}/bench_unit_costs.json") and not ignored(f"figures/{other}/bench_curve_times.json")


def test_the_repository_stays_light():
    """The committed tree: the results cache under 60 MB with its arrays in compressed NPZ, and no file over 5 MB (what a
    clone downloads; a warm `make study` reads the cache, so it cannot be regenerated away)."""
    import subprocess
    import zipfile
    files = [ROOT / f for f in subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                                              check=True).stdout.split("\0") if f]
    files = [f for f in files if f.is_file()]
    big = [(str(f.relative_to(ROOT)), f.stat().st_size) for f in files if f.stat().st_size > 5_000_000]
    assert not big, f"files over 5 MB: {big}"
    results = [f for f in files if RESULTS in f.parents]
    size = sum(f.stat().st_size for f in results)
    assert size < 60_000_000, f"the committed results cache is {size / 1e6:.1f} MB (limit 60)"
    stored = [(f.name, i.filename) for f in results if f.suffix == ".npz" for i in zipfile.ZipFile(f).infolist()
              if i.compress_type != zipfile.ZIP_DEFLATED]
    assert not stored, f"NPZ members stored uncompressed: {stored[:5]}"
