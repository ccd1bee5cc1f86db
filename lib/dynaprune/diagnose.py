"""Which runs collapsed, where, and why: `python -m dynaprune.report diagnose`.

A run *collapsed* when it ended at or near chance (test accuracy below chance + 0.10), diverged (a
non-finite loss stopped it), or ended far below its seed-mates (more than 5 points under the median of
the same config on at least two other seeds). Its *break* is the first epoch whose loss of the backpropagated samples
turned non-finite, else the first whose (weighted) training loss reached chance level and 1.5x the best
before it, else the first such jump alone, else the first evaluated epoch near chance.

The cause is read from the per-epoch diagnostics the engine records (`train._train_epoch`) up to the
break, checked in this order, from a small fixed vocabulary (`CAUSES`):

- ``learning-rate blow-up``: the effective learning rate (a sampler's ``lr_scale`` included) reached
  at least 2x the scheduled one (KAKURENBO's 1 / (1 - hidden share));
- ``weight blow-up``: an applied sample weight reached at least 4 (1 / (1 - r) of InfoBatch forced to
  r = 0.9 is 10; [OnlineIS]'s 1 / (m p) grows as p shrinks);
- ``class cycling``: the backpropagated samples' class histogram is far from the training set's (total
  variation >= 0.3; >= 0.3 / m for a sampler with m checkpoints per epoch, whose epoch histogram averages m
  selections that may sit in different classes) and its leading classes change from one epoch to the next (greedy
  top-k by loss, [Raju] eq. 2-4, picks the classes the model fits worst, then the ones it just stopped fitting);
- ``class skew``: the backpropagated samples' class histogram is as far from the training set's (total variation
  >= 0.3) but its leading classes stay the same every epoch (a static subset: EL2N's hardest samples at
  aggressive pruning sit in a few confusable classes, and the others are barely trained on);
- ``divergence``: a non-finite loss with none of the above;
- ``constant output``: the training loss sits at ln C (C classes: a uniform prediction) from some epoch on, finite,
  or an evaluation on held-out data after the break has loss ln C (within 0.1%; within 0.5% when its accuracy is at
  chance too): a step too large for the network (e.g. at the peak of the warm-up) left it predicting one distribution
  for every input, which gives no gradient signal to recover from;
- ``unexplained``: nothing recorded explains it.

Runs cached before the engine recorded diagnostics are re-run up to their break with the diagnostics on
(same seed and thread count as recorded, so the same floats: the re-run's losses are compared with the
cached ones and the agreement is reported), and the re-run's diagnostics are cached as an analysis
(`cache.memo`), so the diagnosis of the committed cache is read from the cache, never recomputed.
"""
from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd

from . import cache
from .cache import label_of, options_of

CAUSES = ("learning-rate blow-up", "weight blow-up", "class cycling", "class skew", "divergence", "constant output",
          "unexplained")
NEAR_CHANCE = 0.10      # test accuracy below chance + this is "at or near chance"
BELOW_MATES = 0.05      # this far under the seed-mates' median is "far below its seed-mates"
MIN_MATES = 2           # ... of at least this many: one other seed is no reference (it may swing as much itself)
LOSS_JUMP = 1.5         # the break: a loss above this multiple of the best before it
LR_BLOWUP = 2.0         # effective / scheduled learning rate
WEIGHT_BLOWUP = 4.0     # largest applied weight (InfoBatch in its regime, r = 0.5: 2)
CYCLING_TV = 0.3        # total variation between the backpropagated and the training class shares
CYCLING_STEP = 0.05     # ... and between two consecutive epochs' shares, for the leading classes to count as changed
FLAT_OUTPUT = 0.001     # a held-out loss this close to ln C (relative): the network predicts uniformly
NEAR_FLAT = 0.005       # ... or this close, with accuracy at chance (within NEAR_CHANCE_ACC of 1 / C)
NEAR_CHANCE_ACC = 0.01
DIAGNOSTIC_KEYS = ("class_hist", "w_max", "w_mean", "lr_max", "lr_sched_max")


def _mates_key(cfg: dict) -> str:
    return json.dumps({k: v for k, v in cfg.items() if k != "seed"}, sort_keys=True, default=str)


def collapsed(entries: list[dict]) -> list[dict]:
    """The collapsed runs among cache entries (dicts with ``key``, ``config``, ``records``): each with
    ``how`` (why it counts as collapsed) and ``break_epoch``. Classification runs only."""
    runs = [e for e in entries if e["config"].get("loss", "ce") == "ce" and e["records"]]
    finals = {e["key"]: _final_acc(e["records"]) for e in runs}
    groups: dict[str, list] = {}
    for e in runs:
        groups.setdefault(_mates_key(e["config"]), []).append(e)
    out = []
    for e in runs:
        acc, recs = finals[e["key"]], e["records"]
        C = _num_classes(e)
        how = []
        if any(r.get("diverged") for r in recs):
            how.append("diverged")
        if acc is not None and acc < 1.0 / C + NEAR_CHANCE:
            how.append("at or near chance")
        mates = [finals[m["key"]] for m in groups[_mates_key(e["config"])] if m["key"] != e["key"]]
        mates = [a for a in mates if a is not None]
        if acc is not None and len(mates) >= MIN_MATES and acc < float(np.median(mates)) - BELOW_MATES:
            how.append("far below its seed-mates")
        if how:
            out.append(dict(e, how=how, acc=acc, mates=mates, break_epoch=break_epoch(recs, C)))
    return out


def _final_acc(records):
    accs = [r.get("test_acc") for r in records if r.get("test_acc") is not None and np.isfinite(r["test_acc"])]
    return float(accs[-1]) if accs else None


def _num_classes(entry) -> int:
    h = next((r["class_hist"] for r in entry["records"] if "class_hist" in r), None)
    return len(h) if h is not None else len(_train_share(entry))


@functools.lru_cache(maxsize=None)
def _labels(dataset: str, options: str, val_size: int, train_subset):
    """The class labels of a run's training set (its dataset variant, validation split and subset: `train.train_indices`)."""
    from .config import RunConfig
    from .data import load_dataset
    from .train import train_indices
    ds = load_dataset(dataset, **json.loads(options))
    c = RunConfig(dataset=dataset, dataset_options=json.loads(options), val_size=val_size, train_subset=train_subset)
    return ds.y_train[train_indices(c, ds.y_train)].numpy(), int(ds.num_classes)


def train_labels(cfg: dict):
    """(labels of the training samples of a run with config dict ``cfg``, number of classes)."""
    return _labels(cfg["dataset"], json.dumps(cfg.get("dataset_options") or {}, sort_keys=True),
                   int(cfg.get("val_size", 0)), cfg.get("train_subset"))


def _train_share(entry) -> np.ndarray:
    """Each class's share of the run's training set."""
    y, C = train_labels(entry["config"])
    return np.bincount(y, minlength=C) / len(y)


def selection_class_shares(result) -> np.ndarray:
    """(epochs x classes) share of each class among the samples a run backpropagated in each epoch, from
    its recorded selection (``record_selection=True``): how [Raju]'s class cycling is seen."""
    from .train import selection_masks
    y, C = train_labels(result.config.to_dict())
    counts = np.stack([np.bincount(y[s], minlength=C) for s in selection_masks(result)])
    return counts / np.maximum(counts.sum(1, keepdims=True), 1)


def break_epoch(records, num_classes: int = 10) -> int | None:
    """The first epoch with a non-finite loss; else the first whose training loss (weighted: what was
    backpropagated, an estimate of the full-data loss for the unbiased methods, unlike the plain loss of
    the samples a biased method picks) reached chance level (0.9 ln C) and LOSS_JUMP x the best before
    it; else the first with such a jump alone; else the first evaluated epoch near chance; None when none
    of these happened."""
    loss = [(int(r["epoch"]), r.get("train_loss_weighted", r.get("train_loss")), r) for r in records]
    for e, l, r in loss:
        if r.get("diverged") or l is None or not np.isfinite(l):
            return e
    for chance_level in (0.9 * math.log(num_classes), 0.0):
        best = math.inf
        for e, l, _ in loss:
            if e > 0 and l > LOSS_JUMP * best and l >= chance_level:
                return e
            best = min(best, l)
    for e, _, r in loss:
        a = r.get("test_acc")
        if a is not None and np.isfinite(a) and a < 1.0 / num_classes + NEAR_CHANCE:
            return e
    return None


def cause(diag: list[dict], train_share=None, evals=(), checkpoints: int = 1) -> tuple[str, str]:
    """(cause from `CAUSES`, the evidence in words) from per-epoch diagnostics up to the break.
    ``train_share``: each class's share of the training set (uniform when None). ``evals``: the run's records; those
    evaluated on held-out data after the break show a constant output that the backpropagated samples' loss can hide
    (a selector of the highest losses, e.g. Selective Backprop, trains on samples whose loss exceeds ln C).
    ``checkpoints``: the sampler's checkpoints per epoch ([Raju]'s sub-epoch regime), which dilute the epoch's histogram."""
    have = [d for d in diag if all(k in d for k in DIAGNOSTIC_KEYS)]
    if not have:
        nonfinite = any(d.get("diverged") for d in diag)
        return ("divergence", "a non-finite loss (no other diagnostics recorded)") if nonfinite else \
            ("unexplained", "no diagnostics recorded")
    ratio = max((d["lr_max"] / d["lr_sched_max"] for d in have if d["lr_sched_max"] > 0), default=1.0)
    if ratio >= LR_BLOWUP:
        e = max(have, key=lambda d: d["lr_max"] / max(d["lr_sched_max"], 1e-300))
        return "learning-rate blow-up", (f"effective learning rate {e['lr_max']:.3g} = {ratio:.1f}x the scheduled "
                                         f"{e['lr_sched_max']:.3g} (epoch {e['epoch']})")
    w = max(have, key=lambda d: d["w_max"] if np.isfinite(d["w_max"]) else -1)
    if w["w_max"] >= WEIGHT_BLOWUP:
        return "weight blow-up", f"largest applied weight {w['w_max']:.3g} (mean {w['w_mean']:.3g}, epoch {w['epoch']})"
    shares = [np.asarray(d["class_hist"], float) / max(sum(d["class_hist"]), 1) for d in have]
    ref = np.full(len(shares[0]), 1.0 / len(shares[0])) if train_share is None else np.asarray(train_share, float)
    tvs = [0.5 * np.abs(s - ref).sum() for s in shares]
    # the leading classes change: they swap places *and* the shares move (a static subset's shares jitter by a few
    # thousandths from epoch to epoch under drop_last, which can swap two near-tied classes: not cycling)
    lead = [set(np.argsort(-s)[:3].tolist()) for s in shares]
    changes = any(a != b and 0.5 * np.abs(s - t).sum() >= CYCLING_STEP
                  for a, b, s, t in zip(lead, lead[1:], shares, shares[1:]))
    if max(tvs) >= CYCLING_TV / max(1, checkpoints):
        i = int(np.argmax(tvs))
        if changes or len(shares) == 1:
            top = ", ".join(f"{c}: {shares[i][c]:.2f}" for c in np.argsort(-shares[i])[:3])
            return "class cycling", (f"backpropagated class shares {top} at epoch {have[i]['epoch']} (total variation "
                                     f"{tvs[i]:.2f} from the training set); leading classes change between epochs")
        low = ", ".join(f"{c}: {shares[i][c]:.3f}" for c in np.argsort(shares[i])[:3])
        return "class skew", (f"backpropagated class shares {tvs[i]:.2f} in total variation from the training set, the "
                              f"same leading classes every epoch; least trained classes {low} (epoch {have[i]['epoch']})")
    if any(d.get("diverged") or d.get("nonfinite_step") is not None for d in diag):
        return "divergence", "a non-finite loss with learning rate, weights and classes in range"
    chance = np.log(len(shares[0]))
    dead = [d for d in have if abs(d.get("train_loss", np.nan) - chance) <= 0.02 * chance]
    if dead and dead[-1] is have[-1]:
        return "constant output", (f"training loss {dead[0]['train_loss']:.4f} at ln {len(shares[0])} = {chance:.4f} (a uniform "
                                   f"prediction) from epoch {dead[0]['epoch']}, finite, at learning rate up to "
                                   f"{dead[0]['lr_max']:.3g}")
    C = len(shares[0])
    for r in evals:
        held = next((r[k] for k in ("val_loss", "test_loss") if np.isfinite(r.get(k, np.nan))), None)
        acc = next((r[k] for k in ("val_acc", "test_acc") if np.isfinite(r.get(k, np.nan))), np.nan)
        if held is None or r.get("epoch", have[-1]["epoch"]) < have[-1]["epoch"]:
            continue
        off = abs(held - chance) / chance
        if off <= FLAT_OUTPUT or (off <= NEAR_FLAT and acc <= 1 / C + NEAR_CHANCE_ACC):
            return "constant output", (f"held-out loss {held:.5f} at ln {C} = {chance:.5f} ({off:.2%} off; accuracy "
                                       f"{acc:.3f}): a uniform prediction for every input at epoch {r.get('epoch')}, after "
                                       f"the break at epoch {have[-1]['epoch']} (training loss "
                                       f"{have[-1].get('train_loss', np.nan):.3f}), at learning rate up to "
                                       f"{max(d['lr_max'] for d in have):.3g}")
    return "unexplained", (f"learning rate <= {ratio:.2f}x scheduled, weights <= {w['w_max']:.3g}, class "
                           f"shares within {max(tvs):.2f} of the training set")


def _rerun(entry, upto: int) -> dict:
    """Re-run a cached run for ``upto`` epochs with the diagnostics on (not cached as a run)."""
    import torch
    from .config import RunConfig
    from .train import run
    c = RunConfig(**entry["config"])     # RunConfig freezes the stored lists and dicts itself
    old = torch.get_num_threads()
    torch.set_num_threads(int(entry.get("env", {}).get("threads") or old))   # the same reduction order as recorded
    try:
        r = run(c, use_cache=False, stop_after=upto)
    finally:
        torch.set_num_threads(old)
    recs = r.records[:upto]
    cached = [x.get("train_loss", float("nan")) for x in entry["records"][:len(recs)]]
    fresh = [x["train_loss"] for x in recs]
    same = all((a == b) or (not np.isfinite(a) and not np.isfinite(b)) for a, b in zip(cached, fresh))
    return dict(epoch=np.array([x["epoch"] for x in recs]), train_loss=np.array(fresh, float),
                class_hist=np.array([x.get("class_hist", []) for x in recs]),
                w_max=np.array([x["w_max"] for x in recs]), w_mean=np.array([x["w_mean"] for x in recs]),
                lr_max=np.array([x["lr_max"] for x in recs]), lr_sched_max=np.array([x["lr_sched_max"] for x in recs]),
                diverged=np.array([bool(x.get("diverged")) for x in recs]), reproduced=np.array(same))


def diagnostics_of(entry, upto: int | None, rerun: bool = True) -> tuple[list[dict], str]:
    """Per-epoch diagnostics of a run up to epoch ``upto`` (inclusive; all when None), and where they
    come from: its own records, or a cached re-run (``rerun``; refused under DYNAPRUNE_CACHE_ONLY
    unless cached)."""
    recs = entry["records"] if upto is None else [r for r in entry["records"] if r["epoch"] <= upto]
    if all(k in recs[-1] for k in DIAGNOSTIC_KEYS) or not rerun:
        return recs, "recorded"
    n = len(recs)
    try:
        a = cache.memo("diagnostics", dict(key=entry["key"], epochs=n), lambda: _rerun(entry, n))
    except cache.CacheMiss:
        return recs, "not recorded (re-run refused: DYNAPRUNE_CACHE_ONLY)"
    out = [dict(epoch=int(a["epoch"][i]), train_loss=float(a["train_loss"][i]), class_hist=a["class_hist"][i].tolist(),
                w_max=float(a["w_max"][i]), w_mean=float(a["w_mean"][i]), lr_max=float(a["lr_max"][i]),
                lr_sched_max=float(a["lr_sched_max"][i]), diverged=bool(a["diverged"][i])) for i in range(len(a["epoch"]))]
    return out, "re-run" + (" (reproduced the cached losses exactly)" if bool(a["reproduced"]) else
                            " (losses differ from the cached run's: read with care)")


def diagnose(entries=None, rerun: bool = True) -> pd.DataFrame:
    """One row per collapsed run: key, label, seed, how it collapsed, final accuracy, break epoch, cause,
    evidence, and where the diagnostics came from."""
    entries = list(_entries() if entries is None else entries)
    rows = []
    for e in collapsed(entries):
        upto = e["break_epoch"]
        diag, source = diagnostics_of(e, upto, rerun=rerun)
        opts = options_of(e["config"].get("sampler_options"))
        why, evidence = cause(diag, _train_share(e), evals=e["records"], checkpoints=int(opts.get("checkpoints_per_epoch", 1)))
        rows.append(dict(key=e["key"], label=label_of(e["config"]), dataset=e["config"]["dataset"],
                         train_subset=e["config"].get("train_subset"), seed=e["config"]["seed"],
                         how=", ".join(e["how"]), acc=e["acc"], break_epoch=upto, cause=why, evidence=evidence,
                         source=source))
    cols = ["key", "label", "dataset", "train_subset", "seed", "how", "acc", "break_epoch", "cause", "evidence", "source"]
    return pd.DataFrame(rows, columns=cols)


def diagnose_results(results, rerun: bool = True) -> pd.DataFrame:
    """`diagnose` on RunResults (a notebook's runs): their collapses, breaks and causes."""
    entries = [dict(key=cache.key(r.config), config=json.loads(json.dumps(r.config.to_dict(), default=str)),
                    records=r.records, env=r.env) for r in results]
    return diagnose(entries, rerun=rerun)


def _entries(keys=None):
    """The run entries of the results cache (those of ``keys`` only, when given: missing keys are skipped)."""
    root = cache._root(None)
    files = cache.run_files(root) if keys is None else [cache.meta_path(root, k) for k in keys if k]
    for j in files:
        if not j.exists():
            continue
        meta = cache.read_meta(j)
        if cache.is_run_entry(meta):
            yield meta
