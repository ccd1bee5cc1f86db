"""Results cache under data/results/: one gzip-compressed JSON (config, per-epoch records, environment) and one
compressed NPZ (per-sample arrays) per run, keyed by a stable hash of the normalised config and
the version of the code path that produced it.

Only run entries (`<20 hex>.json.gz` + `.npz`; `zcat` reads the JSON) and analyses (`analysis/`) live here; readers skip
anything else in the folder. ``DYNAPRUNE_CACHE_ONLY=1`` forbids computing: any miss (a run or
an analysis) raises `CacheMiss` naming what is missing, which is how the render test proves the
committed cache is complete for the committed profile.

Writes are atomic (temp file + rename, the JSON last, holding the NPZ's SHA-256), so a crashed
run leaves no entry and concurrent writers of different runs lose nothing. A corrupt entry is
reported (warning) and treated as missing, so it is recomputed, never silently used.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

def options_of(v) -> dict:
    """A config's options (``sampler_options``, ...) as a dict, whichever form they come in: a JSON string (a results
    frame's column), a dict, a tuple of pairs (a `RunConfig` field) or None."""
    if v is None or (isinstance(v, float) and v != v):
        return {}
    if isinstance(v, str):
        return json.loads(v) if v else {}
    return dict(v)


def label_of(cfg: dict) -> str:
    """A short method label from a config dict (sampler, its options, Reducing Epoch variants): how results frames,
    tables and verdicts name a run (`report.display_name` turns it into a figure's name)."""
    opts = options_of(cfg.get("sampler_options"))
    parts = [cfg["sampler"]]
    shown = {k: v for k, v in opts.items() if not isinstance(v, (list, tuple)) or len(v) < 8}
    if shown:
        parts.append(",".join(f"{k}={v}" for k, v in sorted(shown.items())))
    if cfg.get("epochs_scale", 1.0) < 1.0:
        parts = ["reduce_epochs" + ("_scaled" if cfg.get("scale_lr") else ""), f"x{cfg['epochs_scale']}"]
    return " ".join(parts)


def method_of(cfg: dict) -> str:
    """The method a config dict runs, as a results frame's ``method`` column: its sampler, or Reducing Epoch
    (``reduce_epochs``, ``reduce_epochs_scaled`` with its learning rate scaled) for a run of a share of the epochs."""
    if cfg.get("epochs_scale", 1.0) < 1.0:
        return "reduce_epochs" + ("_scaled" if cfg.get("scale_lr") else "")
    return cfg["sampler"]


def keep_ratio_of(cfg: dict) -> float | None:
    """The budget a config dict asks for, as a results frame's ``keep_ratio`` column: its ``keep_ratio`` option, Reducing
    Epoch's share of the epochs, or None (full data, and a method at the budget its paper sets)."""
    if cfg.get("epochs_scale", 1.0) < 1.0:
        return float(cfg["epochs_scale"])
    r = options_of(cfg.get("sampler_options")).get("keep_ratio")
    return None if r is None else float(r)


def _rows(config: dict, records, key: str, env: dict) -> list[dict]:
    """A run's rows of a results frame: one per epoch, its config fields (dicts and lists as sorted JSON), its record,
    its key, the device it ran on, its method, budget and label."""
    flat = {k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v) for k, v in config.items()}
    named = dict(method=method_of(config), keep_ratio=keep_ratio_of(config), label=label_of(config))
    return [{**flat, **r, "key": key, "device_used": env.get("device"), "device_name": env.get("device_name"), **named}
            for r in records]


def frame(results):
    """RunResults as a results frame (`load_results`'s columns, with ``method``, ``keep_ratio`` and ``label``): one row
    per (run, epoch), each run once, in the cache's order."""
    import pandas as pd
    runs = {key(r.config): r for r in results}
    return pd.DataFrame([row for k, r in sorted(runs.items()) for row in _rows(r.config.to_dict(), r.records, k, r.env)])


# Bump when a change to the engine changes what a config produces (a sampler has its own ``version``). "3": every
# config field is in the key; version 2's keys left out the fields added late while they held their defaults, and gave
# Reducing Epoch's runs an engine version of their own (`rekey` moves a version-2 cache to version 3, results unchanged).
CODE_VERSION = "3"
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "data" / "results"


@dataclass
class RunResult:
    """One run: its config (`dynaprune.config.RunConfig`), one record per epoch, per-sample arrays (the
    NPZ) and the environment that made it."""
    config: object
    records: list                    # one dict per epoch
    arrays: dict = field(default_factory=dict)   # per-sample arrays (NPZ)
    env: dict = field(default_factory=dict)
    from_cache: bool = False

    @property
    def final(self) -> dict:
        return self.records[-1]

    @property
    def backprops(self) -> int:
        """Samples backpropagated over the run (the cost every budget in the study is measured in)."""
        return sum(x["backpropagated"] for x in self.records)


class CacheMiss(RuntimeError):
    """A result that is not in the cache while computing is forbidden (``DYNAPRUNE_CACHE_ONLY=1``)."""


def cache_only() -> bool:
    """True when computing is forbidden: every result must come from the cache."""
    return os.environ.get("DYNAPRUNE_CACHE_ONLY", "").strip().lower() not in ("", "0", "false", "no")


def refuse_miss(what: str, force: bool = False):
    """Raise `CacheMiss` for ``what`` when computing is forbidden (``DYNAPRUNE_CACHE_ONLY``, or ``force``: a
    caller that only reads the cache); do nothing otherwise."""
    if force:
        raise CacheMiss(f"the results cache ({_root(None)}) lacks {what}, and this caller only reads the cache")
    if cache_only():
        raise CacheMiss(f"DYNAPRUNE_CACHE_ONLY is set and the results cache ({_root(None)}) lacks {what}. "
                        "Compute it (unset DYNAPRUNE_CACHE_ONLY and run `make study`) and commit data/results/.")


RUN_ENTRY_KEYS = ("key", "config", "records", "env")


def is_run_entry(meta) -> bool:
    """Whether a parsed JSON file is a run entry (other files in the folder are not read as runs)."""
    return isinstance(meta, dict) and all(k in meta for k in RUN_ENTRY_KEYS)


def _log_use(name: str):
    """With $DYNAPRUNE_CACHE_LOG set, note each entry read (`prune` keeps exactly those)."""
    log = os.environ.get("DYNAPRUNE_CACHE_LOG")
    if log:
        with open(log, "a") as f:
            f.write(name + "\n")


META = ".json.gz"   # a run entry's metadata file: <key>.json.gz (gzip: a 40-epoch run's 26 kB of JSON in 5 kB)


def meta_path(root, k: str) -> Path:
    """The metadata file of run entry ``k`` under ``root``."""
    return Path(root) / f"{k}{META}"


def read_meta(path) -> dict:
    """A run entry's metadata (config, records, env, ...) from its ``.json.gz``."""
    return json.loads(gzip.decompress(Path(path).read_bytes()))


def run_files(root=None) -> list:
    """The run entries' metadata files in the cache folder, sorted (their keys: ``p.name[:-len(META)]``)."""
    return sorted(_root(root).glob(f"*{META}"))


def compress_metadata(root=None) -> int:
    """Convert run entries stored with plain ``<key>.json`` metadata (the format before `META`) to ``.json.gz`` in
    place, the JSON unchanged; returns how many. A file that is not a run entry is left alone."""
    n = 0
    for j in sorted(_root(root).glob("*.json")):
        try:
            meta = json.loads(j.read_text())
        except ValueError:           # not JSON: not a run, not ours
            continue
        if not is_run_entry(meta):
            continue
        _atomic_write(meta_path(j.parent, j.stem), _gz(meta))
        j.unlink()
        n += 1
    return n


def _gz(meta) -> bytes:
    """Metadata as stored: compact JSON, gzip with no timestamp (the same run gives the same bytes)."""
    return gzip.compress(json.dumps(meta, separators=(",", ":"), default=_json_default).encode(), mtime=0)


def prune(log, root=None, dry_run: bool = False, runs: bool = True) -> list:
    """Delete the entries that a logged render did not read: after a sampler's version changes, its
    old runs are dead weight in the repository. ``runs=False`` prunes analyses only (while a study of
    another profile is adding runs that the log cannot know). Returns the removed names."""
    used = set(Path(log).read_text().split())
    d = _root(root)
    gone = []
    metas = [(j, j.name[:-len(META)]) for j in run_files(d)] if runs else []
    for j, name in metas + [(j, j.stem) for j in (d / "analysis").glob("*.json")]:
        if name not in used:
            gone.append(name)
            if not dry_run:
                j.unlink()
                (j.parent / f"{name}.npz").unlink(missing_ok=True)
    return gone


def _root(root) -> Path:
    return Path(root) if root is not None else Path(os.environ.get("DYNAPRUNE_RESULTS", DEFAULT_ROOT))


def key(config) -> str:
    """Stable hash of the normalised config (sorted JSON), CODE_VERSION (the engine) and the
    sampler's own `version` (so changing one method invalidates only its runs); the device is part
    of the config."""
    return _hash(dict(config=config.to_dict(), code=CODE_VERSION, sampler=_sampler_version(config)))


def _sampler_version(config) -> int:
    from .samplers import SAMPLERS
    return getattr(SAMPLERS.get(config.sampler), "version", 1)


def _hash(parts: dict, n: int = 20) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:n]


# Version 2's keys, frozen for `rekey`: the fields added after its first results left out while at their defaults,
# and Reducing Epoch's engine version (epochs * scale exactly, a partial last epoch) in the key of epochs_scale < 1.
_V2_LATE_FIELDS = {"drop_last": False, "world_size": 1, "val_size": 0, "channels_last": False}


def _v2_config(d: dict) -> dict:
    """A config's dict as version 2 stored and hashed it (``d``: `RunConfig.to_dict`)."""
    return {k: v for k, v in d.items() if not (k in _V2_LATE_FIELDS and v == _V2_LATE_FIELDS[k])}


def _v2_key(config) -> str:
    parts = dict(config=_v2_config(config.to_dict()), code="2", sampler=_sampler_version(config))
    if config.epochs_scale < 1:
        parts["reduce_epochs"] = 2
    return _hash(parts)


def _v2_analysis_name(kind: str, params) -> str:
    return f"{kind}-{_hash(dict(kind=kind, params=params, code='2'), 16)}"


def rekey(root=None) -> dict:
    """Move a version-2 cache to `CODE_VERSION`'s keys in place, each result unchanged: a run entry whose stored key is
    the one version 2 gives its config today (`_v2_key`) gets its config's full dict and `key`; an analysis entry whose
    name is version 2's for its stored params gets those params with every config in them as a full dict and every
    moved run key replaced (e.g. a diagnosis's), under `memo`'s name. An entry whose key version 2 does not give it
    today (its sampler's version changed since, or it was never version 2's) is stale: left as it is and listed, for
    `prune`. Resumable (a move links the NPZ first, writes the new metadata, then removes the old) and idempotent.
    Returns {"runs": moved, "analyses": moved, "stale": [names]}."""
    from .config import RunConfig
    d = _root(root)
    moved, stale = {}, []
    for j in run_files(d):
        old = j.name[:-len(META)]
        meta = read_meta(j)
        if not is_run_entry(meta) or meta.get("code_version") == CODE_VERSION:
            continue
        config = RunConfig(**meta["config"])
        if _v2_key(config) != old:
            stale.append(old)
            continue
        moved[old] = _move_run(d, j, meta, config)

    # an analysis's params under version 3: configs as full dicts, moved run keys replaced
    full = lambda x: json.loads(json.dumps(RunConfig(**x).to_dict(), default=str))
    fresh = lambda params: _renamed(params, moved, full)
    analyses = 0
    for j in sorted((d / "analysis").glob("*.json")):
        meta = json.loads(j.read_text())
        if meta.get("code_version") == CODE_VERSION:
            continue
        if _v2_analysis_name(meta["kind"], meta["params"]) != j.stem:
            stale.append(j.stem)
            continue
        params = fresh(meta["params"])
        new = _analysis_name(meta["kind"], params)
        _move(j.with_suffix(".npz"), j.with_name(f"{new}.npz"))
        _atomic_write(j.with_name(f"{new}.json"), json.dumps(dict(meta, params=params, code_version=CODE_VERSION),
                                                            indent=1, default=str).encode())
        j.unlink()
        j.with_suffix(".npz").unlink(missing_ok=True)
        analyses += 1
    return {"runs": len(moved), "analyses": analyses, "stale": stale}


def _renamed(x, moved: dict, config=None):
    """``x`` (an analysis's params) with every run key in ``moved`` replaced by its new key, and every config dict in it
    passed through ``config`` (when given)."""
    if isinstance(x, dict) and config is not None and {"sampler", "seed", "dataset"} <= set(x):
        return config(x)
    if isinstance(x, dict):
        return {k: _renamed(v, moved, config) for k, v in x.items()}
    if isinstance(x, list):
        return [_renamed(v, moved, config) for v in x]
    return moved.get(x, x) if isinstance(x, str) else x


def _move_run(d: Path, j: Path, meta: dict, config) -> str:
    """Move run entry ``j`` (its metadata ``meta``, its config ``config``) to `key`'s name today, the result unchanged;
    returns the new key. Resumable: the NPZ is linked first, the new metadata written, then the old removed."""
    old, new = j.name[:-len(META)], key(config)
    _move(d / f"{old}.npz", d / f"{new}.npz")
    _atomic_write(meta_path(d, new), _gz(dict(meta, key=new, code_version=CODE_VERSION,
                                             config=json.loads(json.dumps(config.to_dict(), default=str)))))
    if new != old:
        j.unlink()
        (d / f"{old}.npz").unlink(missing_ok=True)
    return new


def bump(method: str, old_version: int, keep, root=None) -> dict:
    """Move the runs of sampler ``method`` keyed under its ``old_version`` to its `version` today, when the change
    between the two leaves their result as it was: those whose sampler options ``keep(options)`` accepts (e.g. they
    state the option whose default changed); the others are stale, left for `prune`. Analyses whose params name a moved
    run (a diagnosis) move with it, under `memo`'s name. Idempotent. Returns {"runs", "analyses", "stale"}."""
    from .config import RunConfig
    from .samplers import SAMPLERS
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; known: {', '.join(SAMPLERS)}")
    today = getattr(SAMPLERS[method], "version", 1)
    if int(old_version) >= today:
        raise ValueError(f"{method}'s version today is {today}: bump moves runs from an older version, got {old_version}")
    d = _root(root)
    moved, stale = {}, []
    for j in run_files(d):
        old = j.name[:-len(META)]
        meta = read_meta(j)
        if not is_run_entry(meta) or meta["config"].get("sampler") != method or meta.get("code_version") != CODE_VERSION:
            continue
        config = RunConfig(**meta["config"])
        if _hash(dict(config=config.to_dict(), code=CODE_VERSION, sampler=int(old_version))) != old:
            continue                                         # keyed under another version (today's, or older)
        if keep(config.options("sampler_options")):
            moved[old] = _move_run(d, j, meta, config)
        else:
            stale.append(old)

    fresh = lambda params: _renamed(params, moved)
    analyses = 0
    for j in sorted((d / "analysis").glob("*.json")) if moved else []:
        meta = json.loads(j.read_text())
        params = fresh(meta["params"])
        if params == meta["params"]:
            continue
        new = _analysis_name(meta["kind"], params)
        _move(j.with_suffix(".npz"), j.with_name(f"{new}.npz"))
        _atomic_write(j.with_name(f"{new}.json"), json.dumps(dict(meta, params=params), indent=1, default=str).encode())
        j.unlink()
        j.with_suffix(".npz").unlink(missing_ok=True)
        analyses += 1
    return {"runs": len(moved), "analyses": analyses, "stale": stale}


def _move(src: Path, dst: Path):
    """Link ``src`` as ``dst`` (a rerun after an interruption finds ``dst`` there already)."""
    if not dst.exists():
        os.link(src, dst)


def _atomic_write(path: Path, data: bytes):
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(result, root=None) -> Path:
    d = _root(root)
    d.mkdir(parents=True, exist_ok=True)
    k = key(result.config)
    buf = io.BytesIO()
    np.savez_compressed(buf, **result.arrays)
    npz = buf.getvalue()
    _atomic_write(d / f"{k}.npz", npz)
    meta = dict(key=k, code_version=CODE_VERSION, config=result.config.to_dict(), records=result.records,
                env=result.env, npz_sha256=hashlib.sha256(npz).hexdigest())
    _atomic_write(meta_path(d, k), _gz(meta))
    return meta_path(d, k)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def load(config, root=None):
    """The cached RunResult of ``config``, or None (missing or corrupt: recompute)."""
    d = _root(root)
    k = key(config)
    j, z = meta_path(d, k), d / f"{k}.npz"
    if not j.exists():
        return None
    try:
        meta = read_meta(j)
        raw = z.read_bytes()
        if hashlib.sha256(raw).hexdigest() != meta["npz_sha256"]:
            raise ValueError("NPZ checksum mismatch")
        with np.load(io.BytesIO(raw)) as f:
            arrays = {name: f[name] for name in f.files}
        if meta["config"] != json.loads(json.dumps(config.to_dict(), default=str)):
            raise ValueError("stored config differs from the requested one")
        _log_use(k)
        return RunResult(config, meta["records"], arrays, meta["env"], from_cache=True)
    except Exception as err:  # corrupt: say so, and let the caller recompute
        warnings.warn(f"results cache entry {k} is corrupt ({err!r}); it will be recomputed", RuntimeWarning)
        return None


def load_results(filter=None, root=None):
    """All cached runs as a pandas DataFrame, one row per (run, epoch), config fields as columns, with ``method``,
    ``keep_ratio`` and ``label`` (`frame` does the same for given RunResults).
    ``filter``: a dict of config field -> value (or list of values), or a callable on the config dict."""
    import pandas as pd
    rows = []
    for j in run_files(root):
        try:
            meta = read_meta(j)
        except Exception as err:
            warnings.warn(f"skipping unreadable cache entry {j.name} ({err!r})", RuntimeWarning)
            continue
        if not is_run_entry(meta):   # not a run (a stray file, someone's notes): not ours to read
            continue
        cfg = meta["config"]
        if callable(filter) and not filter(cfg):
            continue
        if isinstance(filter, dict) and not all(
                cfg.get(k) in (v if isinstance(v, list) else [v]) for k, v in filter.items()):
            continue
        rows += _rows(cfg, meta["records"], meta["key"], meta["env"])
    return pd.DataFrame(rows)


def _analysis_name(kind: str, params) -> str:
    return f"{kind}-{_hash(dict(kind=kind, params=params, code=CODE_VERSION), 16)}"


def memo(kind: str, params: dict, compute, root=None) -> dict:
    """Cache an analysis (not a training run): ``compute()`` returns a dict of arrays, stored as
    <root>/analysis/<kind>-<hash>.npz keyed by ``params`` and CODE_VERSION. Corrupt -> recompute."""
    d = _root(root) / "analysis"
    blob = json.dumps({"kind": kind, "params": params, "code": CODE_VERSION}, sort_keys=True, default=str)
    k = _analysis_name(kind, params)
    z, j = d / f"{k}.npz", d / f"{k}.json"
    if j.exists():
        try:
            meta = json.loads(j.read_text())
            raw = z.read_bytes()
            if hashlib.sha256(raw).hexdigest() != meta["npz_sha256"]:
                raise ValueError("NPZ checksum mismatch")
            with np.load(io.BytesIO(raw), allow_pickle=False) as f:
                out = {name: f[name] for name in f.files}
            _log_use(k)
            return out
        except Exception as err:
            warnings.warn(f"analysis cache entry {k} is corrupt ({err!r}); recomputing", RuntimeWarning)
    refuse_miss(f"the analysis {kind} with params {json.loads(blob)['params']} (entry analysis/{k})")
    out = {name: np.asarray(v) for name, v in compute().items()}
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez_compressed(buf, **out)
    _atomic_write(z, buf.getvalue())
    _atomic_write(j, json.dumps(dict(kind=kind, params=json.loads(blob)["params"], code_version=CODE_VERSION,
                                     npz_sha256=hashlib.sha256(buf.getvalue()).hexdigest()), indent=1,
                                default=str).encode())
    return out


if __name__ == "__main__":   # python -m dynaprune.cache prune LOG [--dry-run] | compress | rekey | bump M V --stating O
    import argparse
    ap = argparse.ArgumentParser(description="results-cache maintenance")
    ap.add_argument("command", choices=["prune", "compress", "rekey", "bump"],
                    help="prune: delete what a logged render did not read; compress: plain .json metadata to .json.gz; "
                         "rekey: move a version-2 cache to this version's keys (`rekey`); bump: move a sampler's runs "
                         "that state an option from its old version's keys to today's (`bump`)")
    ap.add_argument("log", nargs="?", help="prune: a file written by a render with DYNAPRUNE_CACHE_LOG set; "
                                           "bump: the sampler (e.g. omission)")
    ap.add_argument("old_version", nargs="?", type=int, help="bump: the sampler's version before the change")
    ap.add_argument("--stating", help="bump: the option whose default changed (runs that state it move)")
    ap.add_argument("--dry-run", action="store_true", help="prune: list, delete nothing")
    ap.add_argument("--analyses-only", action="store_true", help="prune: keep every run entry")
    a = ap.parse_args()
    if a.command == "compress":
        print(f"compressed the metadata of {compress_metadata()} run entries")
        raise SystemExit(0)
    if a.command == "rekey":
        r = rekey()
        print(f"moved {r['runs']} run entries and {r['analyses']} analyses to version {CODE_VERSION}'s keys; "
              f"{len(r['stale'])} stale entries left for `prune`")
        raise SystemExit(0)
    if a.command == "bump":
        if not (a.log and a.old_version is not None and a.stating):
            ap.error("bump needs METHOD OLD_VERSION --stating OPTION")
        r = bump(a.log, a.old_version, lambda o: a.stating in o)
        print(f"moved {r['runs']} {a.log} runs and {r['analyses']} analyses to its version today; "
              f"{len(r['stale'])} stale entries left for `prune`")
        raise SystemExit(0)
    if not a.log:
        ap.error("prune needs LOG")
    removed = prune(a.log, dry_run=a.dry_run, runs=not a.analyses_only)
    print(f"{'would remove' if a.dry_run else 'removed'} {len(removed)} entries")
