"""Benchmarks (measured, never asserted): speed-up efficiency, sampler overheads, mixture-fit cost.

    python -m dynaprune.bench [--only efficiency samplers mixture] [--sizes 50000 1280000] [--out build/bench.json]
    python -m dynaprune.bench --only curves --profile cpu     # on an idle machine: figures/bench_curve_times.json
    python -m dynaprune.bench --only units --profile cpu      # on an idle machine: figures/bench_unit_costs.json

Benchmark output never goes into the results cache (data/results/ holds runs and analyses only).

For every sampler at each n: planning time of one `set_epoch`, and the per-step overhead of
`reweight` (b = 128), of fetching the next batch of indices (where `online_is` draws), and, for
batch-level methods, of `select` on a meta-batch — after one epoch of
synthetic statistics has been recorded, so planning sees real score tables. Also the NumPyro mixture
fit on 10k vs 1M selection counts (the grouped likelihood should make them cost the same).
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from .samplers import SAMPLERS, card, make_sampler

CURVE_TIMES = "bench_curve_times.json"    # the measured training times of 05's curves (`curve_times_path`)
UNIT_COSTS = "bench_unit_costs.json"      # the measured unit costs of the curves' setting (`unit_costs_path`)


def curve_times_path(profile: str):
    """Where `bench_curve_times` writes and notebook 05 reads the curves' times: figures/ of the repository for the
    committed profile, figures/<profile>/ otherwise (not $DYNAPRUNE_FIGURES, where a render writes its outputs:
    the benchmark is an input of the render, measured on an idle machine, never by it)."""
    from .profiles import COMMITTED
    from .report import ROOT
    return ROOT / "figures" / ("" if profile == COMMITTED else profile) / CURVE_TIMES


def unit_costs_path(profile: str):
    """Where ``--only units`` writes and notebook 05 reads the unit costs of the curves' setting (`unit_costs`), beside
    the curves' times (`curve_times_path`)."""
    return curve_times_path(profile).with_name(UNIT_COSTS)


def _stats(n, C=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, C, generator=g)
    targets = torch.randint(0, C, (n,), generator=g)
    return torch.nn.functional.cross_entropy(logits, targets, reduction="none"), logits, targets


def bench_sampler(name, n, b=128, steps=100, epochs=10):
    # static inputs as placeholders (`Method.probe`); a method with checkpoints ([Raju]'s) checkpoints every epoch here,
    # so its scoring is what is timed
    kw = {"period": 1} if "period" in card(name).regime(20) else {}
    s = make_sampler(name, n, num_epochs=epochs, **card(name).buildable(kw, n, epochs))
    losses, logits, targets = _stats(n)
    chunk = 8192
    # epoch 0: record statistics for every sample (untimed)
    req = s.scoring_request(0)
    if req is not None:
        s.observe(req, losses[req], logits=logits[req], targets=targets[req])
    s.set_epoch(0)
    for i in range(0, n, chunk):
        idx = torch.arange(i, min(n, i + chunk))
        if s.level == "batch":
            pos, _ = s.select(idx, losses[idx], logits=logits[idx], targets=targets[idx])
            idx = idx[pos]
        s.reweight(idx, losses[idx], logits=logits[idx], targets=targets[idx])
    req = s.scoring_request(1)
    if req is not None:
        s.observe(req, losses[req], logits=logits[req], targets=targets[req])
    t0 = time.perf_counter()
    s.set_epoch(1)
    plan_s = time.perf_counter() - t0
    it = iter(s)
    B = s.meta_batch_size(b) if s.level == "batch" else b
    t_sel = t_rw = t_it = 0.0
    done = 0
    from itertools import islice
    for _ in range(steps):
        t0 = time.perf_counter()
        idx = torch.tensor(list(islice(it, B)), dtype=torch.long)   # online_is draws here
        t_it += time.perf_counter() - t0
        if len(idx) == 0:
            break
        done += 1
        if s.level == "batch":
            t0 = time.perf_counter()
            pos, _ = s.select(idx, losses[idx], logits=logits[idx], targets=targets[idx])
            t_sel += time.perf_counter() - t0
            idx = idx[pos]
        t0 = time.perf_counter()
        s.reweight(idx, losses[idx], logits=logits[idx], targets=targets[idx])
        t_rw += time.perf_counter() - t0
    return dict(sampler=name, n=n, level=s.level, plan_ms=1e3 * plan_s, reweight_us=1e6 * t_rw / done, next_batch_us=1e6 * t_it / done,
                select_us=(1e6 * t_sel / done) if s.level == "batch" else float("nan"))


EFFICIENCY_METHODS = {"random": {"keep_ratio": 0.5}, "infobatch": {"keep_ratio": 0.5}, "omission": {"keep_ratio": 0.5},
                      "es": {"keep_ratio": 0.5}, "kakurenbo": {"keep_ratio": 0.5}}


def bench_efficiency(profile: str = "cpu", epochs: int = 5, repeats: int = 3, methods=None):
    """Speed-up efficiency: training time saved against full-data training, divided by the ideal saving
    1 - s (s: the run's measured backprop share), for each method at keep_ratio 0.5 on the profile's
    setting. Runs are interleaved (full, A, B, ..., full, A, B, ...) and each method is compared with
    the full run of its own round; returns per method the measured share and (min, median, max) of
    the time saved and of the efficiency over the rounds. Nothing is cached."""
    from .profiles import base_config
    from .train import run
    methods = EFFICIENCY_METHODS if methods is None else methods
    base = base_config(profile, epochs=epochs, eval_every=10 ** 6)     # evaluation (untimed) only at the end
    out = {m: dict(saved=[], efficiency=[], share=[]) for m in methods}
    run(base.replace(epochs=1), use_cache=False)                        # warm-up, untimed
    for r in range(repeats):
        res = {m: run(base.replace(sampler=m, sampler_options=methods.get(m, {}), seed=r), use_cache=False)
               for m in ["full", *methods]}
        secs = {m: sum(x["t_train"] for x in x_.records) for m, x_ in res.items()}
        bps = {m: x_.backprops for m, x_ in res.items()}
        for m in methods:
            share, saved = bps[m] / bps["full"], 1 - secs[m] / secs["full"]
            out[m]["share"].append(share)
            out[m]["saved"].append(saved)
            out[m]["efficiency"].append(saved / (1 - share))
    stat = lambda v: (min(v), float(np.median(v)), max(v))
    return {m: dict(share=float(np.mean(d["share"])), saved=stat(d["saved"]), efficiency=stat(d["efficiency"]))
            for m, d in out.items()}


def bench_curve_times(profile: str = "cpu", repeats: int = 3, methods=None, epochs: int = 2):
    """Training time per epoch of each budget-curve cell (`grids.curve_cells`; ``methods``: these instead of
    the profile's list; the budget-matched controls of an own-budget method too, when its runs are in the cache)
    on this machine, for the accuracy-against-time figure of 05. Each cell's run starts with its real config (its
    schedule, regime and checkpoints: the run of the curves, at a fixed lr and seed) and stops after ``epochs``
    epochs; the first epoch is a warm-up and is not timed, the others are steady-state epochs. A method whose
    work changes over the run (its card's ``own_budget``, `samplers.Method`: InfoBatch's pruning and annealing, [ES]'s annealing epochs,
    KAKURENBO's hiding schedule) is timed over its whole run instead; one that scores at checkpoints every
    ``period`` epochs ([Raju]'s) over ``epochs`` - 1 + ``period`` epochs, the timed ones a whole period. Rounds are
    interleaved (every cell, then
    every cell again), after one untimed warm-up run. Returns {cell label: dict(method, keep_ratio, run_length,
    per_epoch=(min, median, max) of the seconds of training per epoch over the rounds)}; a run's training time
    is per_epoch x run_length (its epochs of data). Reducing Epoch's epochs are full training's and are not
    measured twice. Scoring before training (EL2N's score models) is not included. Nothing is cached."""
    from . import cache
    from .grids import REDUCE_EPOCHS, curve_cells, curve_config, own_budget
    from .profiles import get
    from .study import curve_results
    from .train import run
    P = get(profile)
    cells = [("full", None)] + [c for c in curve_cells(profile, methods) if c != ("full", None)]
    own = [m for m, r in cells if r is None and m != "full"]
    try:    # the controls sit at the method's measured share: known only from its cached runs
        # (their own-budget cells only: the profile's cut may leave out a method's other cells, e.g. [ES] at a keep ratio)
        cells += [c for c in curve_results(profile, cells=[(m, None) for m in own], cache_only=True)
                  if c not in cells] if own else []
    except cache.CacheMiss:
        print(f"no cached curve runs of {own}: their budget-matched controls are not timed")
    measured = [c for c in cells if c[0] != REDUCE_EPOCHS]      # Reducing Epoch's epochs are full-training epochs
    configs = {c: curve_config(profile, *c, seed=P["seeds"][0], lr=P["base"]["lr"]) for c in cells}
    # the first `epochs` epochs of each run (epochs_scale cuts the run; time per epoch does not depend on the lr
    # schedule), or the whole run when its work varies; evaluated never
    whole = {c for c in measured if c[0] in own_budget()}
    # a selector that scores every `period` epochs ([Raju]'s checkpoints) is timed over one whole period after the
    # warm-up epoch, so that the timed epochs hold one scoring pass in the share a run has
    period = {c: int(cfg.options("sampler_options").get("period", 1)) for c, cfg in configs.items()}
    short = {c: cfg.replace(eval_every=10 ** 6, **({} if c in whole else
                                                     dict(epochs_scale=min(1.0, (epochs + period[c] - 1) / cfg.epochs))))
             for c, cfg in configs.items()}
    run(short[cells[0]], use_cache=False)                                 # warm-up, untimed
    times = {c: [] for c in cells}
    for _ in range(repeats):
        for c in measured:
            t = [r["t_train"] for r in run(short[c], use_cache=False).records]
            times[c].append(float(sum(t) / configs[c].run_length if c in whole else np.mean(t[1:])))
    for c in cells:
        if c[0] == REDUCE_EPOCHS:
            times[c] = times[("full", None)]
    stat = lambda v: (min(v), float(np.median(v)), max(v))
    return {(m if r is None else f"{m} keep_ratio={r}"): dict(method=m, keep_ratio=r, run_length=configs[(m, r)].run_length,
                                                                    per_epoch=stat(times[(m, r)])) for m, r in cells}


def bench_eval_batch(profile: str = "cpu", repeats: int = 5, n: int = 8192):
    """Eval-mode forward of ``n`` training images of the profile's model: one forward per 4,096 samples (the
    engine before) against sub-batches of `train.CPU_EVAL_BATCH` (now), interleaved A/B ``repeats`` times after a
    warm-up; returns {"before": (min, median, max) s, "now": ..., "ratio": now / before per round (min, median,
    max)}. The outputs are compared too: they must be identical."""
    from .grids import fair_config
    from .train import CPU_EVAL_BATCH, _core, _forward, setup, take
    c = fair_config(profile, "full")
    _, data, model, _, _ = setup(c)
    dev, x = torch.device(c.device), data["x"][:n]
    model = _core(model).eval()

    def forward(chunk):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = torch.cat([_forward(model, take(x, slice(s, s + chunk), dev), c, dev) for s in range(0, n, chunk)])
        return time.perf_counter() - t0, out
    forward(CPU_EVAL_BATCH); forward(4096)                      # warm-up
    t = {"before": [], "now": []}
    for _ in range(repeats):
        (tb, ob), (tn, on) = forward(4096), forward(CPU_EVAL_BATCH)
        if not torch.equal(ob, on):
            raise AssertionError("eval forwards in sub-batches differ from one forward of 4,096")
        t["before"].append(tb); t["now"].append(tn)
    stat = lambda v: (min(v), float(np.median(v)), max(v))
    return dict(before=stat(t["before"]), now=stat(t["now"]), ratio=stat([a / b for a, b in zip(t["now"], t["before"])]))


def unit_costs(config, repeats: int = 5, batches: int = 20) -> dict:
    """The measured cost of one sample's forward and backward at a run's setting (its model, data, batch size, memory
    format and device), the units a run's compute is counted in: ``forward``, an eval-mode no-grad forward (scoring
    passes, selection forwards; in the engine's sub-batches), and ``step``, a training step (forward, backward, SGD
    step) per sample at the run's batch size; ``backward`` = step - forward (an upper bound on the backward: a forward
    under autograd costs a little more than one under no_grad).
    Interleaved rounds (forward, step, forward, step, ...) after a warm-up, each over ``batches`` batches; returns
    {unit: (min, median, max) seconds per sample}. Nothing is trained into a result or cached."""
    from .train import _core, _forward, _forward_eval, _sync, setup, take
    _, data, model, opt, _ = setup(config.replace(sampler="full", sampler_options={}))
    dev, b, x, y = torch.device(config.device), config.batch_size, data["x"], data["y"]
    core = _core(model)
    idx = [torch.arange(i * b, (i + 1) * b) % len(x) for i in range(batches)]

    def forward():
        core.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in idx:
                _forward_eval(core, take(x, i, dev), config, dev)
        _sync(dev)
        core.train()
        return (time.perf_counter() - t0) / (b * batches)

    def step():
        t0 = time.perf_counter()
        for i in idx:
            loss = torch.nn.functional.cross_entropy(_forward(model, take(x, i, dev), config, dev), y[i.to(dev)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(dev)
        return (time.perf_counter() - t0) / (b * batches)
    forward(); step()                                             # warm-up
    t = {"forward": [], "step": []}
    for _ in range(repeats):
        t["forward"].append(forward()); t["step"].append(step())
    t["backward"] = [s - f for f, s in zip(t["forward"], t["step"])]
    return {k: (min(v), float(np.median(v)), max(v)) for k, v in t.items()}


def epoch_seconds(configs: dict, repeats: int = 3, epochs: int = 2) -> dict:
    """Steady-state training seconds per epoch of each config in ``configs`` ({label: RunConfig}): each run cut to its
    first ``epochs`` epochs (the first a warm-up, not counted), never evaluated, the configs interleaved round by round
    after one untimed warm-up run; returns {label: (min, median, max)} over the rounds. Nothing is cached."""
    from .train import run
    short = {k: c.replace(eval_every=10 ** 6, epochs_scale=min(1.0, epochs / c.epochs)) for k, c in configs.items()}
    run(next(iter(short.values())), use_cache=False)              # warm-up, untimed
    t = {k: [] for k in short}
    for _ in range(repeats):
        for k, c in short.items():
            t[k].append(float(np.mean([r["t_train"] for r in run(c, use_cache=False).records][1:])))
    return {k: (min(v), float(np.median(v)), max(v)) for k, v in t.items()}


def bench_overheads(repeats: int = 5, n_large: int = 1_280_000, b: int = 128):
    """Two per-step overheads as ratios measured in one process, interleaved (A B A B ...), each repeat
    a fresh measurement; returns (min, median, max) of each ratio over the repeats:
    - Omission's `reweight` (n = 60k, logits of 10 classes) / one small-CNN training step on a
      Fashion-MNIST-shaped batch (forward, backward, SGD step), both at batch b;
    - planning and iterating one epoch of `online_is` at ``n_large`` (its draws) / iterating torch's
      RandomSampler over the same n in batches of b."""
    from itertools import count, islice
    from .models import build_model
    n = 60_000
    om = make_sampler("omission", n, num_epochs=3)
    losses, logits, targets = _stats(n)
    om.set_epoch(0)
    model = build_model("small_cnn", (1, 28, 28), 10, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(b, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (b,), generator=torch.Generator().manual_seed(1))

    def cnn_step():
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out, y)
        opt.zero_grad(); loss.backward(); opt.step()

    starts = count(0, b)                  # consecutive batches over the n samples (wrapping)

    def om_reweight():
        idx = (torch.arange(b) + next(starts)) % n
        om.reweight(idx, losses[idx], logits=logits[idx], targets=targets[idx])

    def per_call(f, calls=50):
        f()   # warm
        t0 = time.perf_counter()
        for _ in range(calls):
            f()
        return (time.perf_counter() - t0) / calls

    big = make_sampler("online_is", n_large, num_epochs=repeats + 1, batch_size=b)
    bl, bz, by = _stats(n_large)
    big.set_epoch(0)
    for i in range(0, n_large, 8192):
        idx = torch.arange(i, min(n_large, i + 8192))
        big.reweight(idx, bl[idx], logits=bz[idx], targets=by[idx])

    def iterate(it):
        t0 = time.perf_counter()
        while list(islice(it, b)):
            pass
        return time.perf_counter() - t0

    epochs = count(1)

    def online_is_epoch():
        t0 = time.perf_counter()
        big.set_epoch(next(epochs))
        return time.perf_counter() - t0 + iterate(iter(big))

    r1, r2 = [], []
    for r in range(repeats):
        r1.append(per_call(om_reweight) / per_call(cnn_step))
        base = iterate(iter(torch.utils.data.RandomSampler(range(n_large), generator=torch.Generator().manual_seed(r))))
        r2.append(online_is_epoch() / base)
    stat = lambda v: (min(v), float(np.median(v)), max(v))
    return {"omission_reweight / small-CNN step": stat(r1), f"online_is epoch / RandomSampler epoch (n={n_large:,})": stat(r2)}


def bench_mixture(repeats: int = 3):
    """Mixture fit (ML start, 3 chains, NUTS 500 + 1000) on 20k vs 1.2M counts of a 0.6/0.3/0.1 mixture,
    interleaved (A B A B ...): the grouped likelihood should make them cost the same. Seconds per size:
    (min, median, max) over the repeats (the first, with JAX's compilation, is dropped)."""
    from .mixture import fit_selection_mixture
    rng = np.random.default_rng(0)
    data = {}
    for n in (20_000, 1_200_000):
        comp = rng.choice(3, n, p=[0.6, 0.3, 0.1])
        data[n] = np.clip(np.round(rng.normal(np.array([2, 10, 18])[comp], np.array([1.5, 2.5, 1.5])[comp])), 0, 20).astype(int)
    times = {n: [] for n in data}
    for r in range(repeats + 1):
        for n, c in data.items():
            t0 = time.perf_counter()
            fit_selection_mixture(c, 20, num_warmup=500, num_samples=1000, num_chains=3, seed=r)
            if r:
                times[n].append(time.perf_counter() - t0)
    return {n: (min(t), float(np.median(t)), max(t)) for n, t in times.items()}


def main(argv=None):
    import pandas as pd
    ap = argparse.ArgumentParser(description="sampler and mixture benchmarks")
    ap.add_argument("--sizes", type=int, nargs="*", default=[50_000, 1_280_000])
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", nargs="*", choices=["efficiency", "overheads", "samplers", "mixture", "curves", "evalbatch", "units"],
                    default=["efficiency", "overheads", "samplers", "mixture"])
    ap.add_argument("--profile", default="cpu", help="setting of the efficiency benchmark")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per run of the efficiency benchmark (ES and KAKURENBO reach keep 0.5 from 5)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="*", default=None,
                    help="curves: these methods instead of the profile's list (their cells replace theirs in the file)")
    a = ap.parse_args(argv)
    pd.set_option("display.width", 200)
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    eff, rows, mix = {}, [], {}
    if "efficiency" in a.only:
        eff = bench_efficiency(a.profile, a.epochs, a.repeats)
        print(f"speed-up efficiency, profile {a.profile}, {a.epochs} epochs, keep_ratio 0.5, {a.repeats} interleaved rounds "
              "(time saved vs full / ideal 1 - share): median (min, max)")
        print("| method | backprop share | time saved | efficiency |\n|---|---|---|---|")
        for m, d in eff.items():
            (s0, s1, s2), (e0, e1, e2) = d["saved"], d["efficiency"]
            print(f"| `{m}` | {d['share']:.3f} | {s1:.3f} ({s0:.3f}, {s2:.3f}) | {e1:.2f} ({e0:.2f}, {e2:.2f}) |")
    ovh = {}
    if "overheads" in a.only:
        ovh = bench_overheads()
        for k, (lo, med, hi) in ovh.items():
            print(f"{k}: median {med:.3f} (min {lo:.3f}, max {hi:.3f})")
    if "samplers" in a.only:
        rows = [bench_sampler(name, n) for n in a.sizes for name in SAMPLERS]
        df = pd.DataFrame(rows)
        print(df.pivot(index="sampler", columns="n", values=["plan_ms", "next_batch_us", "reweight_us", "select_us"]).round(1).to_string())
    if "mixture" in a.only:
        mix = bench_mixture()
        for n, (lo, med, hi) in mix.items():
            print(f"mixture fit (ML start + NUTS 500+1000, 3 chains) on {n:,} counts: median {med:.1f} s (min {lo:.1f}, max {hi:.1f})")
    if "evalbatch" in a.only:
        e = bench_eval_batch(a.profile, max(a.repeats, 5))
        print("eval-mode forward of 8,192 images, one forward per 4,096 (before) vs sub-batches (now), interleaved: "
              + ", ".join(f"{k} median {v[1]:.3f} (min {v[0]:.3f}, max {v[2]:.3f})" for k, v in e.items()))
    if "curves" in a.only:     # not in the default set: minutes; run it on an otherwise idle machine
        cur = bench_curve_times(a.profile, a.repeats, a.methods)
        out = curve_times_path(a.profile)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = dict(profile=a.profile, machine=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                    repeats=a.repeats, date=time.strftime("%Y-%m-%d"), cells=cur)
        if a.methods and out.exists():     # re-measure these methods' cells only: the file's other cells stay as measured
            old = json.loads(out.read_text())
            if (old["profile"], old["threads"], old["repeats"]) != (a.profile, meta["threads"], a.repeats):
                raise SystemExit(f"{out} was measured with another profile, thread count or number of rounds: re-measure "
                                 "every cell (without --methods)")
            new = {k: d for k, d in cur.items() if d["method"] in a.methods}
            meta = {**old, "cells": {**old["cells"], **new},
                    "updated": old.get("updated", []) + [dict(date=meta["date"], methods=list(a.methods))]}
        out.write_text(json.dumps(meta, indent=1))
        for label, d in cur.items():
            lo, med, hi = d["per_epoch"]
            print(f"{label}: {med:.2f} s per epoch (min {lo:.2f}, max {hi:.2f}) x {d['run_length']:g} epochs")
        print(f"written to {out}")
    if "units" in a.only:      # not in the default set: run it on an otherwise idle machine
        from .grids import curve_config
        from .profiles import get
        config = curve_config(a.profile, "full", None, seed=0, lr=get(a.profile)["base"]["lr"])
        units = unit_costs(config, repeats=max(a.repeats, 5))
        out = unit_costs_path(a.profile)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(profile=a.profile, machine=platform.processor() or platform.machine(),
                                       threads=torch.get_num_threads(), repeats=max(a.repeats, 5),
                                       date=time.strftime("%Y-%m-%d"), units=units), indent=1))
        print(f"unit costs of {a.profile}'s curves, microseconds per sample, median (min, max): "
              + ", ".join(f"{k} {v[1] * 1e6:.1f} ({v[0] * 1e6:.1f}, {v[2] * 1e6:.1f})" for k, v in units.items())
              + f"; written to {out}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(dict(efficiency=eff, overheads=ovh, samplers=rows, mixture_seconds=mix, threads=torch.get_num_threads()), f, indent=1)


if __name__ == "__main__":
    main()
