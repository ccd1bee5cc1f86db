"""The study's first GPU runs and the GPU speed table: one command that fits about 8 minutes of one GPU.

    make gpu-data          # here (python -m dynaprune.gpu_check --pack): data/gpu/fashion_mnist_30k.tar.xz, git-ignored
    # on the GPU machine, from the repository root (its own python3 holds torch; nothing to install):
    mkdir -p /tmp/d/FashionMNIST/raw && tar xJf data/gpu/fashion_mnist_30k.tar.xz -C /tmp/d/FashionMNIST/raw && \\
      DYNAPRUNE_DATA=/tmp/d PYTHONPATH=lib python3 -m dynaprune.gpu_check
    python -m dynaprune.gpu_check --device cpu --tiny --results DIR --out DIR      # the CPU test's tiny run

The runs are the ``gpu-mini`` profile's (`profiles`): each method of ``gpu_check["methods"]`` at its keep ratio (None:
its paper's own budget), in its regime (`grids.fair_config`), one seed after another (full, then each method, for seed
0, then seed 1, ...), so every seed is an interleaved round of the timing; a new seed starts only while the time budget
(``budget_s``) lasts. Each run goes into the results cache with its device, so `make study` renders them beside the cpu
curves (notebook 05) wherever the cache travels. Then the speed table (`figures/bench_gpu.json`):

- set-level efficiency per method and seed: training time saved over full training's of the same round, divided by the
  ideal saving 1 - s (s: the run's measured backprop share);
- the forward / backward cost of one training batch (CUDA events, median of repeats; a backward is the forward-and-
  backward time less the forward's);
- each sampler's overhead per step (its selection and planning time, `t_select`, over the run's training time);
- host synchronisations per training step, counted with `torch.cuda.set_sync_debug_mode("warn")` over one epoch of each
  method: what a sampler adds is its count minus full training's (the engine's own timing syncs are in both).

On a machine without CUDA it stops at once with a clear message unless ``--device cpu`` is given.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

PROFILE = "gpu-mini"
ROOT = Path(__file__).resolve().parents[2]
PACKED = ROOT / "data" / "gpu" / "fashion_mnist_30k.tar.xz"
OUT = ROOT / "figures"                    # bench_gpu.json: an input of the render, like bench_curve_times.json
TINY = dict(dataset_options={"train_limit": 320}, model_options={"width": 4}, epochs=2, eval_every=2, batch_size=32)


def configs(device: str = "cuda", seeds=None, **overrides) -> dict:
    """{(method, seed): RunConfig} of the gpu-mini runs, in run order (seed by seed)."""
    from . import grids
    from .profiles import get
    P = get(PROFILE, check_device=False)
    methods = P["gpu_check"]["methods"]
    seeds = P["seeds"] if seeds is None else seeds
    return {(m, s): grids.fair_config(PROFILE, m, keep_ratio=r, seed=s, device=device, **overrides)
            for s in seeds for m, r in methods.items()}


def cached_runs(root=None) -> dict:
    """The gpu-mini runs the results cache holds (no training, no GPU needed): {(method, seed): RunResult}."""
    from . import cache
    return {k: r for k, c in configs().items() if (r := cache.load(c, root)) is not None}


def _timer(device):
    if device.type == "cuda":
        def measure(f):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); f(); b.record(); torch.cuda.synchronize()
            return a.elapsed_time(b) / 1e3
    else:
        def measure(f):
            t0 = time.perf_counter(); f()
            return time.perf_counter() - t0
    return measure


def forward_backward_cost(config, repeats: int = 20) -> dict:
    """Seconds per sample of a training forward and of its backward at the run's batch size on its device (the
    model, autocast and memory format of the engine), median and (min, max) over ``repeats`` after warm-up."""
    from .train import _device, _forward, setup
    device = _device(config)
    _, data, model, opt, _ = setup(config)
    b = config.batch_size
    x, y = data["x"][:b], data["y"][:b]
    measure = _timer(device)
    model.train()

    def fwd():
        with torch.no_grad():
            _forward(model, x, config, device)

    def fwd_bwd():
        loss = torch.nn.functional.cross_entropy(_forward(model, x, config, device), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()

    for _ in range(3):
        fwd(); fwd_bwd()
    f = [measure(fwd) for _ in range(repeats)]
    fb = [measure(fwd_bwd) for _ in range(repeats)]
    bwd = [max(p - q, 0.0) for p, q in zip(fb, f)]
    stat = lambda v: dict(median=float(np.median(v)) / b, min=float(min(v)) / b, max=float(max(v)) / b)
    return dict(batch=b, forward=stat(f), backward=stat(bwd), backward_over_forward=float(np.median(bwd) / np.median(f)))


def syncs_per_step(config) -> float | None:
    """Host synchronisations per training step over one epoch of ``config`` (CUDA only: None elsewhere), counted as
    the warnings of `torch.cuda.set_sync_debug_mode("warn")`."""
    from .train import run
    if not config.device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            r = run(config.replace(epochs=1, eval_every=10 ** 6), use_cache=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    n = sum("synchroniz" in str(w.message) for w in caught)
    return n / max(1, sum(x["steps"] for x in r.records if "steps" in x) or 1)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m dynaprune.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack", action="store_true", help=f"only write {PACKED.relative_to(ROOT)}: the first 30,000 "
                    "training images and the test set, what travels to the GPU machine (needs no GPU)")
    ap.add_argument("--device", default="cuda", help="cuda (default; stops clearly without one) or cpu (tests)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (320 images, width-4 ResNet, 2 epochs): the CPU test")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the profile's seeds")
    ap.add_argument("--budget", type=float, default=None, help="seconds of runs after which no new seed starts "
                                                                 "(default: the profile's budget_s)")
    ap.add_argument("--results", default=None, help="results cache folder (default: $DYNAPRUNE_RESULTS or data/results)")
    ap.add_argument("--out", default=None, help="folder of bench_gpu.json (default: figures/)")
    a = ap.parse_args(argv)
    if a.pack:
        from .data import pack_fashion_mnist
        from .profiles import get
        k = get(PROFILE, check_device=False)["base"]["dataset_options"]["train_limit"]
        print(f"[gpu_check] wrote {pack_fashion_mnist(PACKED, train_limit=k)} ({PACKED.stat().st_size / 1e6:.1f} MB)")
        return 0
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("dynaprune.gpu_check needs a CUDA GPU (torch.cuda.is_available() is False); nothing was run. "
                         "On this machine: --device cpu --tiny (the test's run).")
    from . import cache
    from .profiles import get
    from .train import run
    P = get(PROFILE, check_device=False)
    budget = P["gpu_check"]["budget_s"] if a.budget is None else a.budget
    over = TINY if a.tiny else {}
    cfgs = configs(a.device, a.seeds, **over)
    dev_name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    print(f"[gpu_check] {dev_name}, torch {torch.__version__}: {len(cfgs)} runs of {PROFILE}"
          f"{' (tiny)' if a.tiny else ''}, budget {budget:.0f} s", flush=True)
    t_all, res, seeds_done = time.time(), {}, []
    for s in dict.fromkeys(s for _, s in cfgs):
        if seeds_done and time.time() - t_all > budget:
            print(f"[gpu_check] budget spent after seeds {seeds_done}: seed {s} and later not started", flush=True)
            break
        for (m, s_), c in cfgs.items():
            if s_ == s:
                t0 = time.time()
                res[(m, s)] = run(c, root=a.results)
                print(f"[gpu_check] {m} seed {s}: test acc {res[(m, s)].final['test_acc']:.4f}, "
                      f"{time.time() - t0:.1f} s{' (cached)' if res[(m, s)].from_cache else ''}", flush=True)
        seeds_done.append(s)
    table = speed_table(res, cfgs, a.device)
    table.update(device=dev_name, torch=torch.__version__, date=time.strftime("%Y-%m-%d"), profile=PROFILE,
                 tiny=bool(a.tiny), seeds=seeds_done, total_s=round(time.time() - t_all, 1),
                 cache_keys={f"{m} seed {s}": cache.key(r.config) for (m, s), r in res.items()})
    out = Path(a.out) if a.out else OUT
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_gpu.json").write_text(json.dumps(table, indent=1, sort_keys=True))
    print(markdown(table))
    print(f"[gpu_check] done in {time.time() - t_all:.0f} s; table in {out / 'bench_gpu.json'}", flush=True)
    return 0


def speed_table(res: dict, cfgs: dict, device: str) -> dict:
    """The measurements of the module doc from the runs ``res`` {(method, seed): RunResult}."""
    methods = list(dict.fromkeys(m for m, _ in res))
    full = {s: r for (m, s), r in res.items() if m == "full"}
    rows = {}
    for m in methods:
        eff, saved, share, over, acc = [], [], [], [], []
        for (m_, s), r in res.items():
            if m_ != m:
                continue
            t_train = sum(x["t_train"] for x in r.records)
            over.append(sum(x["t_select"] for x in r.records) / t_train)
            acc.append(r.final["test_acc"])
            if s in full and m != "full":
                sh = r.backprops / full[s].backprops
                sv = 1 - t_train / sum(x["t_train"] for x in full[s].records)
                share.append(sh); saved.append(sv); eff.append(sv / (1 - sh) if sh < 1 else float("nan"))
        stat = lambda v: None if not v else dict(min=float(np.nanmin(v)), median=float(np.nanmedian(v)), max=float(np.nanmax(v)))
        rows[m] = dict(test_acc=stat(acc), share=stat(share), time_saved=stat(saved), efficiency=stat(eff),
                       sampler_overhead=stat(over), seeds=len(acc))
    first = next(iter(cfgs.values()))
    by_method = {m: c for (m, _), c in cfgs.items()}
    syncs = {m: syncs_per_step(by_method[m]) for m in methods}
    return dict(methods=rows, cost=forward_backward_cost(first),
                syncs_per_step=syncs,
                syncs_added_by_sampler={m: None if syncs[m] is None or syncs.get("full") is None else syncs[m] - syncs["full"]
                                        for m in methods if m != "full"})


def markdown(t: dict) -> str:
    """The speed table in words and a markdown table (for the closing note and docs/speed.md)."""
    f = lambda d, k="median", fmt="{:.3f}": "–" if not d else fmt.format(d[k])
    rng = lambda d, fmt="{:+.2f}": "–" if not d else f"{fmt.format(d['median'])} ({fmt.format(d['min'])} .. {fmt.format(d['max'])})"
    out = [f"gpu-mini on {t['device']} (torch {t['torch']}, {t['date']}), seeds {t['seeds']}:",
           "| method | test acc (median) | backprop share | time saved | efficiency (saved / ideal) | sampler overhead "
           "(share of training time) | host syncs per step added |", "|---|---|---|---|---|---|---|"]
    for m, r in t["methods"].items():
        sync = t["syncs_added_by_sampler"].get(m)
        out.append(f"| {m} | {f(r['test_acc'], fmt='{:.4f}')} | {f(r['share'], fmt='{:.2f}')} | {rng(r['time_saved'])} "
                   f"| {rng(r['efficiency'])} | {f(r['sampler_overhead'], fmt='{:.3f}')} | "
                   f"{'–' if sync is None else f'{sync:+.2f}'} |")
    c = t["cost"]
    out.append(f"\nPer sample at batch {c['batch']}: forward {1e6 * c['forward']['median']:.2f} us, backward "
               f"{1e6 * c['backward']['median']:.2f} us (backward / forward {c['backward_over_forward']:.2f}).")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
