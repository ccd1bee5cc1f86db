"""The training engine: `run(config) -> RunResult` for a `RunConfig` (`dynaprune.config`), and the
command line of single runs, `python -m dynaprune.train` (also under torchrun).

One loop for every sampler level (set, batch, with replacement); the whole loop is `_train_epoch` below, on one
screen: its state is a `Loop`, its record an `EpochRecord` (the cache schema), its sampler hooks are documented in
`samplers.base.DynamicSampler`, and every forward passes one gate (`Loop.forward`: finite, or the epoch ends as
diverged). Learning rates are a pure function of training progress
(epoch + step / steps_in_epoch), and steps_in_epoch is the sampler's exact `len()` after
`set_epoch`, so pruning never desynchronises a schedule. Results go through the cache
(`dynaprune.cache`): asking twice for the same config trains once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import platform
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from . import cache as _cache
from .cache import RunResult
from .config import SIGNALS, RunConfig
from .data import IndexedDataset, LazyImages, load_dataset, random_crop_flip, subset, take, validation_split
from .models import build_model
from .samplers import card as sampler_card
from .samplers import make_sampler
from .scores import output_grad_norm_ce, per_sample_loss
from .static_scores import irreducible_losses, static_scores

# ----------------------------------------------------------------------------- pieces

def lr_at(c: RunConfig, progress: float) -> float:
    """Learning rate at `progress` epochs into a run of c.train_epochs (fractional)."""
    base = c.lr / c.epochs_scale if c.scale_lr else c.lr
    E = c.run_length
    if c.schedule == "constant":
        return base
    if c.schedule == "multistep":
        return base * c.gamma ** sum(progress >= m * c.epochs_scale for m in c.milestones)
    if c.schedule == "onecycle":  # linear up for 30%, cosine down (Smith & Topin 2019)
        t = progress / E
        return base * (t / 0.3 if t < 0.3 else 0.5 * (1 + math.cos(math.pi * (t - 0.3) / 0.7)))
    w = c.warmup_epochs * c.epochs_scale
    if progress < w:
        return base * progress / w
    return base * 0.5 * (1 + math.cos(math.pi * (progress - w) / max(E - w, 1e-12)))


def _optimizer(c, model):
    if c.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay,
                               nesterov=c.momentum > 0)
    return torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _world(c: RunConfig) -> tuple[int, int]:
    """(rank, world size) of the run: a DistributedDataParallel run needs the process group that
    torchrun (`python -m dynaprune.train`) or the caller initialised, of ``c.world_size`` processes."""
    if c.world_size == 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized() or dist.get_world_size() != c.world_size:
        raise RuntimeError(f"world_size={c.world_size} needs an initialised torch.distributed process group of that "
                           "size (launch with torchrun: torchrun --nproc_per_node=N -m dynaprune.train ...)")
    return dist.get_rank(), c.world_size


def _device(c: RunConfig) -> torch.device:
    """The run's device; each process of a CUDA DDP run takes the GPU of its LOCAL_RANK. A CUDA run on a machine
    without CUDA is refused here, before anything is loaded or trained (a CUDA config stays readable: its cached
    results load anywhere)."""
    if c.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {c.device!r} was asked for but this machine has no CUDA GPU "
                           "(torch.cuda.is_available() is False); use a CPU profile or run it on a GPU machine")
    if c.world_size > 1 and c.device == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(c.device)


def _core(model):
    """The module inside a DistributedDataParallel wrapper (no-grad forwards bypass its collectives)."""
    return getattr(model, "module", model)


def split_indices(c: RunConfig, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(training indices, validation indices or None) of a run of ``c`` in the dataset's training split: the
    class-stratified validation split (``val_size``) held out first, then the first ``train_subset`` of what is left, in
    the run's order (position i of its per-sample arrays, e.g. `selection_counts`, is training sample ``[0][i]``).
    ``y``: the training labels, when loaded."""
    if y is None:
        y = load_dataset(c.dataset, **c.options("dataset_options")).y_train
    pool, val = validation_split(y, c.val_size) if c.val_size else (torch.arange(len(y)), None)
    if c.train_subset is not None:
        if not 0 < c.train_subset <= len(pool):
            raise ValueError(f"train_subset must be in 1..{len(pool)}, got {c.train_subset}")
        pool = pool[: c.train_subset]
    return pool, val


def holdout_indices(c: RunConfig, size: int, y: torch.Tensor | None = None) -> torch.Tensor:
    """``size`` dataset indices that are neither the validation split nor the run's training set: the samples after
    the run's ``train_subset`` in the pool's order (`split_indices`), for [RHO-LOSS]'s irreducible-loss model."""
    if y is None:
        y = load_dataset(c.dataset, **c.options("dataset_options")).y_train
    pool, _ = validation_split(y, c.val_size) if c.val_size else (torch.arange(len(y)), None)
    used = len(pool) if c.train_subset is None else c.train_subset
    if int(size) < 1 or used + int(size) > len(pool):
        raise ValueError(f"a held-out split of {size} samples outside the validation split and the training set needs "
                         f"train_subset <= {len(pool) - int(size)} (the pool has {len(pool)} samples, the run trains on "
                         f"{used})")
    return pool[used:used + int(size)]


def train_indices(c: RunConfig, y: torch.Tensor | None = None) -> torch.Tensor:
    """The dataset indices of the samples a run of ``c`` trains on, in the run's order (`split_indices`)."""
    return split_indices(c, y)[0]


class Prepare:
    """The engine's side of a method's ``prepare`` hook (`samplers.Method`): the run config, its training tensors and
    dataset, the sampler options given (``options``) and the protocol options (``protocol``); the static computations
    run the engine's own plain loop (`_train_plain`) and batched `predict` (`dynaprune.static_scores` does not import the
    engine), and are cached as analyses."""

    def __init__(self, config, x, y, ds, options, protocol):
        self.config, self.x, self.y, self.ds, self.options, self.protocol = config, x, y, ds, options, protocol
        self.n, self.epochs = len(x), config.epochs

    def static_scores(self, kind: str, **protocol):
        """(scores, seconds): `static_scores.static_scores` of the run's training set."""
        return static_scores(kind, self.config, self.x, self.y, self.ds, fit=_train_plain, predict=predict, **protocol)

    def init_losses(self, models: int) -> torch.Tensor:
        """The mean per-sample loss of the training set under ``models`` random initialisations of the run's
        architecture (seeds of their own, no training; eval mode)."""
        c, dev = self.config, torch.device(self.config.device)
        tot = torch.zeros(len(self.x), dtype=torch.float64)
        for m in range(int(models)):
            model = build_model(c.model, self.ds.input_shape, self.ds.output_dim, seed=c.seed * 100 + 50 + m,
                                **c.options("model_options")).to(dev)
            tot += per_sample_loss(predict(model, self.x, c, dev), self.y.to(dev), c.loss).double().cpu()
        return tot / int(models)

    def irreducible_losses(self, holdout_size: int, il_epochs: int):
        """(losses, seconds): `static_scores.irreducible_losses` of an IL model trained on ``holdout_size`` samples
        outside the validation split and the training set (`holdout_indices`)."""
        ds = self.ds
        hold = holdout_indices(self.config, holdout_size, ds.y_train)
        return irreducible_losses(self.config, subset(ds.x_train, hold), ds.y_train[hold], self.x, self.y, ds,
                                  il_epochs, fit=_train_plain, predict=predict)


def setup(c: RunConfig):
    """Data (on the device), model, optimiser and sampler of a run (the model wrapped in
    DistributedDataParallel and the sampler sharding its plan when ``c.world_size`` > 1)."""
    device = _device(c)
    ds = load_dataset(c.dataset, **c.options("dataset_options"))
    xtr, ytr = ds.x_train, ds.y_train
    pool, val = split_indices(c, ytr)
    xval, yval = (subset(xtr, val), ytr[val]) if val is not None else (None, None)
    if c.val_size or c.train_subset is not None:
        xtr, ytr = subset(xtr, pool), ytr[pool]
    if c.batch_size > len(xtr):
        raise ValueError(f"batch_size {c.batch_size} is larger than the training set ({len(xtr)} samples)")
    model = build_model(c.model, ds.input_shape, ds.output_dim, seed=c.seed, **c.options("model_options")).to(device)
    if (device.type == "cuda" or c.channels_last) and xtr.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    card = sampler_card(c.sampler)
    sampler_kw = dict(c.options("sampler_options"))
    sampler_kw.setdefault("num_epochs", c.train_epochs)    # schedules and keep_ratio budgets are per run
    for f in card.run_fields:                              # run values the sampler takes (e.g. online IS's batch size)
        sampler_kw.setdefault(f, getattr(c, f))
    protocol = {k: sampler_kw.pop(k) for k in card.protocol if k in sampler_kw}
    if card.prepare is not None:                           # static inputs: scores, an irreducible-loss model
        sampler_kw.update(card.prepare(Prepare(c, xtr, ytr, ds, sampler_kw, protocol)))
    if sampler_kw.get("class_balanced"):
        sampler_kw.setdefault("labels", ytr)            # a class-balanced selector's per-class budgets
    rank, world = _world(c)
    sampler = make_sampler(c.sampler, len(xtr), seed=c.seed, distributed=world > 1, **sampler_kw)
    data = dict(x=xtr.to(device), y=ytr.to(device), x_test=ds.x_test.to(device), y_test=ds.y_test.to(device),
                num_classes=ds.num_classes if c.loss == "ce" else None)
    if xval is not None:
        data.update(x_val=xval.to(device), y_val=yval.to(device))
    opt = _optimizer(c, model)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return ds, data, model, opt, sampler


def _forward(model, x, c, device):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return model(x).float()


# Eval-mode forwards on the CPU in sub-batches of this size: the small CNN's outputs are bit-identical to one
# forward of 4,096 samples and 3-4x faster (8,192 Fashion-MNIST images, 1 thread: 0.31-0.43 s against 1.35-1.43 s;
# 1 and 2 threads; tests/test_train.py checks the identity), so the scoring passes of [Raju]'s methods, the
# selection forwards and the evaluations cost less and every cached run stays what it was.
CPU_EVAL_BATCH = 256


def _forward_eval(model, x, c, device):
    """`_forward` of a model in eval mode under no_grad, in sub-batches of CPU_EVAL_BATCH on the CPU."""
    if device.type != "cpu" or len(x) <= CPU_EVAL_BATCH:
        return _forward(model, x, c, device)
    return torch.cat([_forward(model, x[s:s + CPU_EVAL_BATCH], c, device) for s in range(0, len(x), CPU_EVAL_BATCH)])


@torch.no_grad()
def evaluate(model, x, y, c, device, chunk=4096, n=None):
    """Mean loss and accuracy on the first ``n`` (default all) samples of ``x, y``."""
    model.eval()
    n = len(x) if n is None else n
    tot, correct = 0.0, 0
    for s in range(0, n, chunk):
        out = _forward_eval(model, take(x, slice(s, min(s + chunk, n)), device), c, device)
        tot += float(per_sample_loss(out, y[s:min(s + chunk, n)], c.loss).sum())
        if c.loss == "ce":
            correct += int((out.argmax(1) == y[s:min(s + chunk, n)]).sum())
    model.train()
    return tot / n, (correct / n if c.loss == "ce" else float("nan"))


def _workers() -> int:
    return int(os.environ.get("DYNAPRUNE_WORKERS", min(4, os.cpu_count() or 1)))


def _batches(sampler, x, y, B, device):
    """(indices, inputs, targets) of each (meta-)batch of B in the sampler's order: indexed from the
    in-memory tensors, or, for images on disk (`LazyImages`), loaded by a DataLoader's workers with
    the sampler as its sampler (the same batches either way)."""
    if isinstance(x, LazyImages):
        loader = torch.utils.data.DataLoader(IndexedDataset(x, y.cpu()), batch_size=B, sampler=sampler,
                                             num_workers=_workers(), pin_memory=device.type == "cuda")
        for xb, yb, idx in loader:
            yield idx, xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        return
    it = iter(sampler)
    while idx := list(islice(it, B)):                          # lazy: online_is draws with the current q
        idx = torch.tensor(idx)
        yield idx, take(x, idx, device), take(y, idx, device)


# ----------------------------------------------------------------------------- the loop

@dataclass
class EpochRecord:
    """One epoch of a run as the cache stores it (`RunResult.records`; `dynaprune.diagnose` reads the diagnostics): the
    schema in one place. Seconds by phase (``t_*``: data, forwards, selection and reweighting, backward and step; the
    epoch's training ``t_train``, evaluation ``t_eval``, the run's training so far ``wall``, static scoring before the
    run ``t_static_scoring``); counts (samples forwarded, backpropagated, steps; distinct samples backpropagated;
    ``static_backpropagated``, a static model's backprops counted in the first epoch, e.g. [RHO-LOSS]'s IL model); the
    mean loss of the backpropagated samples (plain and as weighted); the diagnostics that explain a collapse (the class
    histogram of the backpropagated samples, the applied weights' max and mean, the effective and the scheduled learning
    rate's max, ``diverged`` and the first non-finite step); the evaluations (NaN between ``eval_every``). Fields that
    are None are not stored (a run without them never had them)."""

    epoch: int = 0
    t_data: float = 0.0
    t_forward: float = 0.0
    t_backward: float = 0.0
    t_select: float = 0.0
    forwarded: int = 0
    backpropagated: int = 0
    steps: int = 0
    train_loss: float = 0.0
    train_loss_weighted: float = 0.0
    diverged: bool | None = None
    nonfinite_step: int | None = None
    lr: float = float("nan")
    class_hist: list | None = None
    w_max: float = 0.0
    w_mean: float = float("nan")
    lr_max: float = 0.0
    lr_sched_max: float = 0.0
    t_train: float = 0.0
    distinct: int = 0
    static_backpropagated: int | None = None
    test_loss: float = float("nan")
    test_acc: float = float("nan")
    train_eval_loss: float = float("nan")
    train_eval_acc: float = float("nan")
    val_loss: float | None = None
    val_acc: float | None = None
    t_eval: float = 0.0
    wall: float = 0.0
    t_static_scoring: float = 0.0
    cum_backpropagated: int = 0
    cum_forwarded: int = 0

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


class _Diverged(Exception):
    """A forward met non-finite losses or logits (recorded by `Loop.forward`): the epoch stops there."""


@dataclass
class Loop:
    """What the epochs of one run share: its config, model (maybe DDP-wrapped), optimiser, sampler, data (on the device:
    x, y, the test split, the validation split when there is one), the augmentation generator and the device."""

    c: RunConfig
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sampler: object
    data: dict
    gen: torch.Generator
    device: torch.device

    def forward(self, rec: EpochRecord, x, y, train: bool = True):
        """(outputs, per-sample losses) of a forward, training (``train``) or scoring (eval mode and no_grad are the
        caller's; counted as forwarded): the one gate of every forward. Non-finite losses or logits (logits can
        overflow while the loss stays finite, and every sampler refuses them) record the divergence and raise
        `_Diverged`: a diverged run is a result to report, not a crash. DDP ranks decide together at the epoch's end
        (`_reduce_epoch`), or one rank would hang."""
        c = self.c
        out = _forward(self.model, x, c, self.device) if train else _forward_eval(_core(self.model), x, c, self.device)
        losses = per_sample_loss(out, y, c.loss)
        if not train:
            rec.forwarded += len(x)
        if _diverged(rec, rec.steps, c, losses.detach(), out.detach()):     # one host sync per forward
            raise _Diverged
        return out, losses

    def score(self, rec: EpochRecord, req):
        """A scoring pass over the indices ``req`` ([Raju]'s checkpoints, KAKURENBO's hidden samples): no-grad
        forwards in eval mode, handed to the sampler's `observe`."""
        x, y = self.data["x"], self.data["y"]
        with _evaluating(self.model):
            for s in range(0, len(req), 4096):
                i = req[s:s + 4096]
                yi = y[i.to(self.device)]
                out, losses = self.forward(rec, take(x, i, self.device), yi, train=False)
                self.sampler.observe(i, losses, logits=out, targets=yi)


@contextlib.contextmanager
def _evaluating(model):
    """Eval mode under no_grad (no BatchNorm statistics move, no dropout), back to training mode on the way out."""
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train()


def _diverged(rec, k: int, c, losses, logits=None) -> bool:
    """Whether step ``k``'s ``losses`` or ``logits`` are non-finite; if so, record it in ``rec`` (an `EpochRecord` or
    a dict). Always False on DDP ranks (they decide at the epoch's end)."""
    finite = torch.isfinite(losses).all()
    if logits is not None:
        finite = finite & torch.isfinite(logits).all()
    if c.world_size != 1 or bool(finite):          # one host sync
        return False
    if isinstance(rec, dict):
        rec["diverged"], rec["nonfinite_step"] = True, k
    else:
        rec.diverged, rec.nonfinite_step = True, k
    return True


class _Diagnostics:
    """The per-epoch diagnostics that explain a collapse (`dynaprune.diagnose`), accumulated on the device (no host
    sync per step) and written to the record once at the epoch's end: the class histogram of the backpropagated
    samples, the applied weights' max and mean."""

    def __init__(self, num_classes, device):
        self.cls = torch.zeros(num_classes, dtype=torch.long, device=device) if num_classes else None
        self.w_max = torch.zeros((), dtype=torch.float64, device=device)
        self.w_sum = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, weights, targets):
        if weights is not None:
            self.w_max = torch.maximum(self.w_max, weights.max().to(self.w_max))
            self.w_sum += weights.sum().to(self.w_sum)
        if self.cls is not None:
            self.cls.scatter_add_(0, targets, torch.ones_like(targets))

    def write(self, rec: EpochRecord, steps_done: int):
        if self.cls is not None:
            rec.class_hist = self.cls.cpu().tolist()
        rec.w_max = float(self.w_max)
        rec.w_mean = float(self.w_sum) / max(rec.backpropagated, 1) if steps_done else float("nan")


def _select(loop: Loop, rec: EpochRecord, idx, xb, yb):
    """A batch-level method's step: its meta-batch (``idx, xb, yb``) scored by a selection forward (eval mode, no grad:
    selecting must not change the model) where it needs one, cut to the mini-batch it selects."""
    out = l_meta = None
    t1 = time.perf_counter()
    if loop.sampler.needs_forward:
        with _evaluating(loop.model):
            out, l_meta = loop.forward(rec, xb, yb, train=False)
    _sync(loop.device); t2 = time.perf_counter(); rec.t_forward += t2 - t1
    pos, _ = loop.sampler.select(idx, l_meta, logits=out, targets=None if out is None else yb)
    pos_d = pos.to(loop.device)
    _sync(loop.device); rec.t_select += time.perf_counter() - t2
    return idx[pos], xb[pos_d], yb[pos_d]


def _train_epoch(loop: Loop, rec: EpochRecord, sel=None, fraction: float = 1.0):
    """One epoch for any sampler level (``fraction`` < 1: only that share of its steps, the partial last epoch of
    Reducing Epoch), filling ``rec`` (`EpochRecord`) and ``sel`` (which samples were backpropagated). ``_sync`` marks
    where CUDA time is measured; a non-finite forward ends the epoch (`Loop.forward`, the one gate)."""
    c, model, opt, sampler, device = loop.c, loop.model, loop.opt, loop.sampler, loop.device
    x, y, b = loop.data["x"], loop.data["y"], c.batch_size // c.world_size   # this process's share of the global batch
    diag, t, k, batches = _Diagnostics(loop.data.get("num_classes"), device), time.perf_counter, 0, None
    t0 = t()
    try:
        req = sampler.scoring_request(rec.epoch)
        if req is not None:                                    # score, then plan ([Raju], KAKURENBO)
            loop.score(rec, req)
        sampler.scorer = lambda req: loop.score(rec, req)      # sub-epoch checkpoints score as iteration reaches them
        sampler.set_epoch(rec.epoch)
        B = sampler.meta_batch_size(b) if sampler.level == "batch" else b
        steps = (len(sampler) // B if c.drop_last else math.ceil(len(sampler) / B)) or 1
        stop = steps if fraction >= 1 else max(1, round(fraction * steps))
        _sync(device); rec.t_select += t() - t0
        batches, t0 = _batches(sampler, x, y, B, device), t()
        while k < stop and (nxt := next(batches, None)) is not None:
            idx, xb, yb = nxt
            if c.drop_last and len(idx) < B and k > 0:         # a tiny last batch carrying large weights
                break
            if c.augment:
                xb = random_crop_flip(xb, loop.gen)
            _sync(device); rec.t_data += t() - t0
            if sampler.level == "batch":                       # meta-batch B -> mini-batch b
                idx, xb, yb = _select(loop, rec, idx, xb, yb)
            lr_s = lr_at(c, rec.epoch + k / steps)                # the schedule, scaled by the sampler (KAKURENBO)
            lr = lr_s * sampler.lr_scale
            rec.lr_max, rec.lr_sched_max = max(rec.lr_max, lr), max(rec.lr_sched_max, lr_s)
            for g in opt.param_groups:
                g["lr"] = lr
            _sync(device); t1 = t()
            out, losses = loop.forward(rec, xb, yb)
            _sync(device); t2 = t(); rec.t_forward += t2 - t1
            loss = sampler.reweight(idx, losses, logits=out.detach(), targets=yb)
            diag.add(sampler.last_weights, yb)
            t3 = t(); rec.t_select += t3 - t2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync(device); rec.t_backward += t() - t3
            rec.forwarded += len(idx); rec.backpropagated += len(idx); rec.steps += 1
            rec.train_loss_weighted += float(loss.detach()) * len(idx); rec.train_loss += float(losses.detach().sum())
            if sel is not None:
                sel[idx] = True
            k += 1
            t0 = t()
    except _Diverged:                                          # recorded by the gate
        pass
    if batches is not None:
        batches.close()                                        # stops a DataLoader's workers early
    rec.lr = opt.param_groups[0]["lr"]
    diag.write(rec, k)


def run(config: RunConfig, *, use_cache: bool = True, root: str | os.PathLike | None = None,
        checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 1,
        stop_after: int | None = None, progress: bool = False, callback=None) -> RunResult:
    """Train ``config`` (or fetch it from the results cache under ``root``).

    ``checkpoint_dir``: save model/optimiser/sampler/RNG every ``checkpoint_every`` epochs and
    resume from there if a checkpoint exists. ``stop_after``: return after that many epochs of
    this call (a cluster time slice; tests use it to simulate a kill). Not cached then.
    ``callback(epoch, model, data)`` runs after each epoch (analyses that need the model mid-run,
    e.g. gradient-variance curves); it must not change the model.
    """
    c = config
    if use_cache:
        hit = _cache.load(c, root)
        if hit is not None:
            return hit
        _cache.refuse_miss(f"the run {_cache.key(c)}: {c}")
    device = _device(c)
    ds, data, model, opt, sampler = setup(c)
    rank, world = _world(c)
    loop = Loop(c, model, opt, sampler, data, torch.Generator().manual_seed(c.seed + 1), device)   # gen: augmentation
    n, E = len(data["x"]), c.train_epochs
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / (
        f"{_cache.key(c)}.pt" if world == 1 else f"{_cache.key(c)}.rank{rank}.pt")   # each rank its sampler stream
    records, sel_bits, start = _resume(loop, ckpt)
    train_time = sum(r["t_train"] for r in records)
    from tqdm import tqdm
    bar = tqdm(range(start, E), disable=not progress or rank > 0, desc=c.sampler)
    for done_here, epoch in enumerate(bar, 1):
        rec = EpochRecord(epoch=epoch)
        sel = torch.zeros(n, dtype=torch.bool)   # which samples were backpropagated this epoch
        t0 = time.perf_counter()
        _train_epoch(loop, rec, sel, fraction=min(1.0, c.run_length - epoch))
        rec.t_train = time.perf_counter() - t0
        if world > 1:
            _reduce_epoch(rec, sel, model)                      # a host sync: counters summed, selections OR-ed
        rec.distinct = int(sel.sum())             # distinct samples backpropagated (the pool, for online pruning)
        train_time += rec.t_train
        rec.train_loss /= max(rec.backpropagated, 1)
        rec.train_loss_weighted /= max(rec.backpropagated, 1)
        if epoch == 0 and sampler.static_backprops:   # a static model trained for this run ([RHO-LOSS]'s IL model)
            rec.static_backpropagated = int(sampler.static_backprops)
            rec.backpropagated += rec.static_backpropagated
            rec.forwarded += rec.static_backpropagated + n   # its training forwards, and scoring the training set
        _evaluate_epoch(loop, rec, last=epoch == E - 1)
        if callback is not None:
            callback(epoch, _core(model), data)
        rec.wall, rec.t_static_scoring = train_time, float(sampler.scoring_seconds or 0.0)
        rec.cum_backpropagated = rec.backpropagated + (records[-1]["cum_backpropagated"] if records else 0)
        rec.cum_forwarded = rec.forwarded + (records[-1]["cum_forwarded"] if records else 0)
        records.append(rec.to_dict())
        bar.set_postfix(acc=rec.test_acc, loss=rec.train_loss)
        if c.record_selection:
            sel_bits.append(np.packbits(sel.numpy()))
        if ckpt is not None and ((epoch + 1) % checkpoint_every == 0 or epoch == E - 1):
            _save_checkpoint(loop, ckpt, records, sel_bits, epoch)
        if (c.time_budget is not None and train_time >= c.time_budget) or rec.diverged:
            break
        if stop_after is not None and done_here >= stop_after and epoch < E - 1:
            return RunResult(c, records, {}, _env(device, world), False)
    arrays = _final_arrays(c, _core(model), data, sampler, device, sel_bits, n)
    result = RunResult(c, records, arrays, _env(device, world), False)
    if use_cache and rank == 0:                  # one writer; every rank returns the same records
        _cache.save(result, root)
    return result


def _evaluate_epoch(loop: Loop, rec: EpochRecord, last: bool):
    """Test, training-set (up to its first 10k samples) and validation loss and accuracy, every ``eval_every`` epochs and
    at the last; NaN in between."""
    c, data, model, dev = loop.c, loop.data, _core(loop.model), loop.device
    t0 = time.perf_counter()
    if (rec.epoch + 1) % c.eval_every == 0 or last:
        rec.test_loss, rec.test_acc = evaluate(model, data["x_test"], data["y_test"], c, dev)
        # full-data training loss: comparable across samplers, unlike the loss of the backpropagated samples, which
        # biased samplers choose
        rec.train_eval_loss, rec.train_eval_acc = evaluate(model, data["x"], data["y"], c, dev, n=min(len(data["x"]), 10_000))
        if "x_val" in data:   # the held-out split: what learning rates are chosen on
            rec.val_loss, rec.val_acc = evaluate(model, data["x_val"], data["y_val"], c, dev)
    elif "x_val" in data:
        rec.val_loss = rec.val_acc = float("nan")
    rec.t_eval = time.perf_counter() - t0


def _resume(loop: Loop, ckpt):
    """(records, selection bits, first epoch to train) from the checkpoint ``ckpt`` when it exists, the model,
    optimiser, sampler and augmentation generator restored; else a fresh start."""
    if ckpt is None or not ckpt.exists():
        return [], [], 0
    st = torch.load(ckpt, weights_only=False)
    _core(loop.model).load_state_dict(st["model"]); loop.opt.load_state_dict(st["opt"])
    loop.sampler.load_state_dict(st["sampler"]); loop.gen.set_state(st["gen"])
    return st["records"], st["sel_bits"], st["epoch"] + 1


def _save_checkpoint(loop: Loop, ckpt: Path, records, sel_bits, epoch: int):
    """Everything `_resume` needs, written atomically."""
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    tmp = ckpt.with_suffix(f".tmp{os.getpid()}")
    torch.save(dict(model=_core(loop.model).state_dict(), opt=loop.opt.state_dict(), sampler=loop.sampler.state_dict(),
                    gen=loop.gen.get_state(), records=records, sel_bits=sel_bits, epoch=epoch), tmp)
    os.replace(tmp, ckpt)


def _reduce_epoch(rec, sel, model):
    """Sum a DDP epoch's counters over the ranks, OR their selections, and stop every rank together
    when any rank's loss turned non-finite (the parameters are shared, so all ranks diverged)."""
    import torch.distributed as dist
    keys = ("forwarded", "backpropagated", "train_loss", "train_loss_weighted")
    dev = next(_core(model).parameters()).device
    v = torch.tensor([float(getattr(rec, k)) for k in keys] + [float(not all(torch.isfinite(p).all() for p in model.parameters()))],
                     dtype=torch.float64, device=dev)
    dist.all_reduce(v)
    for k, x in zip(keys, v.tolist()):
        setattr(rec, k, int(x) if k in ("forwarded", "backpropagated") else x)
    if v[-1] > 0:
        rec.diverged = True
    s = sel.to(dev, torch.uint8)
    dist.all_reduce(s, op=dist.ReduceOp.MAX)
    sel.copy_(s.cpu().bool())


@torch.no_grad()
def predict(model, x, c, device, chunk=4096) -> torch.Tensor:
    """Model outputs on ``x`` in chunks (whole training sets do not fit one forward on a GPU)."""
    was = model.training
    model.eval()
    out = torch.cat([_forward_eval(model, take(x, slice(s, s + chunk), device), c, device) for s in range(0, len(x), chunk)])
    model.train(was)
    return out


def _final_arrays(c, model, data, sampler, device, sel_bits, n):
    arrays = {}
    if c.record_selection:
        arrays["selection_bits"] = np.stack(sel_bits)
        arrays["n"] = np.array(n)
        with torch.no_grad():
            out = predict(model, data["x"], c, device)
            arrays["final_loss"] = per_sample_loss(out, data["y"], c.loss).cpu().numpy().astype(np.float32)
            if c.loss == "ce":
                arrays["final_output_grad"] = output_grad_norm_ce(out, data["y"]).cpu().numpy().astype(np.float32)
    for name in c.final_signals:
        arrays[f"signal_{name}"] = per_sample_signal(name, model, data["x"], data["y"], c.loss).numpy()
    if sampler.scoring_seconds is not None:
        arrays["scoring_seconds"] = np.array(sampler.scoring_seconds)
    return arrays


def per_sample_signal(name, model, x, y, loss="ce", chunk=2048) -> torch.Tensor:
    """One of SIGNALS for every sample (model in eval mode), as float32 on the CPU."""
    from .scores import dlis_norm, output_grad_norm, per_sample_grad_norms
    model.eval()
    parts, dev = [], next(model.parameters()).device
    for s in range(0, len(x), chunk):
        xb, yb = take(x, slice(s, s + chunk), dev), y[s:s + chunk]
        if name == "loss":
            with torch.no_grad():
                v = per_sample_loss(model(xb), yb, loss)
        elif name == "output_grad":
            v = output_grad_norm(model(xb), yb, loss)
        elif name == "dlis":
            v = dlis_norm(model, xb, yb, loss)
        else:
            v = per_sample_grad_norms(model, xb, yb, loss)
        parts.append(v.detach().float().cpu())
    model.train()
    return torch.cat(parts)


def selection_masks(result: RunResult) -> np.ndarray:
    """(epochs x n) booleans: which samples were backpropagated in each epoch (``record_selection=True``)."""
    return np.unpackbits(result.arrays["selection_bits"], axis=1, count=int(result.arrays["n"])).astype(bool)


def selection_counts(result: RunResult) -> np.ndarray:
    """How many epochs each sample was backpropagated in ([Raju]'s selection distribution)."""
    return selection_masks(result).sum(0)


def _env(device, world_size=1):
    return dict(device=str(device), world_size=int(world_size), device_name=(torch.cuda.get_device_name(device) if device.type == "cuda"
                                                   else platform.processor() or platform.machine()),
                torch=torch.__version__, threads=torch.get_num_threads(),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _train_plain(cfg, x, y, ds, after_epoch=None):
    """A plain full-data run on given tensors (for `static_scores`), returning the model in eval mode;
    ``after_epoch(model)`` is called after every epoch."""
    device = torch.device(cfg.device)
    model = build_model(cfg.model, ds.input_shape, ds.output_dim, seed=cfg.seed, **cfg.options("model_options")).to(device)
    opt = _optimizer(cfg, model)
    sampler = make_sampler("full", len(x), seed=cfg.seed)
    loop = Loop(cfg, model, opt, sampler, dict(x=x.to(device), y=y.to(device)), torch.Generator().manual_seed(cfg.seed),
                device)
    for e in range(cfg.train_epochs):
        _train_epoch(loop, EpochRecord(epoch=e))
        if after_epoch is not None:
            model.eval(); after_epoch(model); model.train()
    model.eval()
    return model


# ----------------------------------------------------------------------------- the command line

CLI_FIELDS = {   # RunConfig fields the command line sets: (type, help)
    "dataset": (str, "dataset (default: the profile's)"),
    "model": (str, "model (default: the profile's)"),
    "epochs": (int, "training epochs (default: the profile's)"),
    "seed": (int, "seed of the model's initialisation, the sampler and augmentation (default: 0)"),
    "batch_size": (int, "global mini-batch size (default: the profile's)"),
    "lr": (float, "maximum learning rate (default: the profile's; the study chooses it on validation data)"),
    "device": (str, "cpu or cuda (default: the profile's)"),
    "train_subset": (int, "train on the first N samples of the training pool (default: the profile's)"),
    "eval_every": (int, "evaluate every N epochs, and at the last (default: the profile's)"),
    "optimizer": (str, "sgd or adam (default: the profile's)"),
    "schedule": (str, "cosine, multistep, onecycle or constant (default: the protocol's cosine with warm-up)"),
}


def cli_config(a, world: int = 1) -> RunConfig:
    """The run a parsed command line asks for: by default the fair protocol's (`grids.fair_config`: the profile's
    validation split, the shared recipe, the method in its paper's regime with ``--sampler-options`` over it, a
    ``--keep-ratio`` as its budget); ``--plain``: the profile's base config with the flags as given (no validation split,
    no warm-up, no regime)."""
    from . import grids, profiles
    overrides = {k: getattr(a, k) for k in [*CLI_FIELDS, "dataset_options", "model_options"] if getattr(a, k) is not None}
    for flag in ("record_selection", "augment"):
        if getattr(a, flag):
            overrides[flag] = True
    opts = dict(a.sampler_options or {})
    if a.plain:
        if a.keep_ratio is not None:
            opts["keep_ratio"] = a.keep_ratio
        if a.val_size is not None:
            overrides["val_size"] = a.val_size
        return profiles.base_config(a.profile, sampler=a.sampler, sampler_options=opts, **overrides, world_size=world)
    seed, lr, schedule = overrides.pop("seed", 0), overrides.pop("lr", None), overrides.pop("schedule", None)
    if a.val_size is not None:
        overrides["val_size"] = a.val_size
    c = grids.fair_config(a.profile, a.sampler, keep_ratio=a.keep_ratio, seed=seed, lr=lr, world_size=world, **overrides)
    if schedule is not None:                      # a schedule asked for replaces the recipe's
        c = c.replace(schedule=schedule)
    return c.replace(sampler_options={**c.options("sampler_options"), **opts}) if opts else c


def cli_parser():
    """The command line's parser: every flag with its help text."""
    import argparse
    import json
    from . import profiles
    from .samplers import METHODS
    ap = argparse.ArgumentParser(prog="python -m dynaprune.train", description="Train one run of the study's fair "
                                 "protocol (cached): the profile's setting with its validation split, warm-up and "
                                 "drop_last, the method in its paper's regime.")
    ap.add_argument("--profile", default="smoke", choices=list(profiles.PROFILES), help="the setting (default: smoke)")
    ap.add_argument("--sampler", default="full", help="the method: " + ", ".join(METHODS) + ", or reduce_epochs "
                    "(Reducing Epoch; needs --keep-ratio) (default: full)")
    ap.add_argument("--keep-ratio", type=float, help="the budget, the expected share of full training's backprops "
                    "(default: none; a method whose paper sets its own budget runs it)")
    ap.add_argument("--val-size", type=int, help="samples held out for validation (default: the profile's protocol's; "
                    "0: none)")
    for name, (typ, text) in CLI_FIELDS.items():
        ap.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, help=text)
    for name in ("sampler", "dataset", "model"):
        ap.add_argument(f"--{name}-options", dest=f"{name}_options", type=json.loads,
                        help=f"{name} options as a JSON object" + (" (over the paper regime's)" if name == "sampler" else ""))
    ap.add_argument("--plain", action="store_true", help="the profile's base config with these flags only: no validation "
                    "split, warm-up, drop_last or paper regime (the engine's behaviour before the fair protocol)")
    ap.add_argument("--augment", action="store_true", help="random crop (zero padding 4) and horizontal flip of each "
                    "training batch (the papers' augmentation)")
    ap.add_argument("--record-selection", action="store_true", help="store which samples each epoch backpropagated")
    ap.add_argument("--checkpoint-dir", help="save every epoch here and resume from it")
    ap.add_argument("--stop-after", type=int, help="return after this many epochs (a time slice; resumable)")
    return ap


def main(argv=None) -> int:
    """``python -m dynaprune.train [--profile P] [--sampler S] [--keep-ratio R] ...``: one run of the fair protocol (or,
    with ``--plain``, the profile's base config), cached; under torchrun (WORLD_SIZE > 1) with DistributedDataParallel
    (gloo on the CPU, nccl on CUDA), ``batch_size`` the global batch, rank 0 writing the cache entry.
    ``--checkpoint-dir`` makes a killed run resume; ``--stop-after N`` returns after N epochs (resumable)."""
    import json
    import torch.distributed as dist
    ap = cli_parser()
    a = ap.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", 1))
    try:
        config = cli_config(a, world)
    except ValueError as err:
        ap.error(str(err))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if config.device.startswith("cuda") else "gloo")
    try:
        r = run(config, checkpoint_dir=a.checkpoint_dir, stop_after=a.stop_after, use_cache=a.stop_after is None)
        if int(os.environ.get("RANK", 0)) == 0:
            print(json.dumps(dict(key=_cache.key(config), world_size=world, epochs_done=len(r.records),
                                  test_acc=r.records[-1].get("test_acc"), val_acc=r.records[-1].get("val_acc"),
                                  from_cache=r.from_cache, backpropagated=r.backprops)))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
