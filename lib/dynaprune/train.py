"""The training engine: `RunConfig` (plain, frozen data) and `run(config) -> RunResult`.

One loop for every sampler level (set, batch, with replacement); the whole loop is
`_train_epoch` below. Learning rates are a pure function of training progress
(epoch + step / steps_in_epoch), and steps_in_epoch is the sampler's exact `len()` after
`set_epoch`, so pruning never desynchronises a schedule. Results go through the cache
(`dynaprune.cache`): asking twice for the same config trains once.
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import os
import platform
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import cache as _cache
from .data import load_dataset, random_crop_flip
from .models import build_model
from .samplers import SAMPLERS, make_sampler
from .scores import output_grad_norm_ce, per_sample_loss

SIGNALS = ("loss", "output_grad", "dlis", "grad_norm")
SCHEDULES = ("constant", "cosine", "multistep", "onecycle")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. Dict-valued options are stored as sorted tuples of pairs."""
    dataset: str = "fashion_mnist"
    dataset_options: tuple = ()
    model: str = "small_cnn"
    model_options: tuple = ()
    loss: str = "ce"                 # "ce" or "mse" (regression)
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"         # constant | cosine (with warmup) | multistep | onecycle
    warmup_epochs: float = 0.0
    milestones: tuple = ()           # multistep: epochs where lr *= gamma
    gamma: float = 0.1
    epochs: int = 5
    epochs_scale: float = 1.0        # Reducing Epoch (000 section 5): train round(scale * epochs) epochs
    scale_lr: bool = False           # Reducing Epoch (scaled): lr / epochs_scale
    batch_size: int = 128
    sampler: str = "full"
    sampler_options: tuple = ()
    augment: bool = False            # random crop + flip on tensors (CIFAR-style images)
    seed: int = 0
    device: str = "cpu"
    eval_every: int = 1
    time_budget: float | None = None  # seconds of training; stop at the first epoch end past it
    record_selection: bool = False   # store which samples were backpropagated each epoch (NPZ)
    train_subset: int | None = None  # the first k training samples (small profiles)
    final_signals: tuple = ()        # per-sample signals stored at the end: loss, output_grad, dlis, grad_norm
    drop_last: bool = False          # drop an epoch's last incomplete batch ([Omission] §5 trains with drop_last=True)

    # Fields added after results were cached: left out of `to_dict` (so of the cache key) while they
    # hold their default, so adding a field does not invalidate every committed run.
    _LATE_FIELDS = {"drop_last": False}

    def __post_init__(self):
        for name in ("dataset_options", "model_options", "sampler_options"):
            v = getattr(self, name)
            if isinstance(v, dict):
                object.__setattr__(self, name, tuple(sorted((k, _freeze(x)) for k, x in v.items())))
        for name in ("milestones", "final_signals"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _validate_config(self)

    def options(self, name: str) -> dict:
        return {k: _thaw(v) for k, v in getattr(self, name)}

    @property
    def train_epochs(self) -> int:
        """Epochs the loop enters: ceil(epochs * epochs_scale); the last one may be partial."""
        return max(1, math.ceil(self.epochs * self.epochs_scale - 1e-9))

    @property
    def run_length(self) -> float:
        """Epochs of data the run trains on: epochs * epochs_scale exactly (Reducing Epoch x0.3 of 8
        epochs trains 2.4 epochs, its last epoch cut at 40% of its steps, not round(2.4) = 2)."""
        return self.epochs * self.epochs_scale

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name in ("dataset_options", "model_options", "sampler_options"):
            d[name] = self.options(name)
        d["milestones"] = list(self.milestones)
        d["final_signals"] = list(self.final_signals)
        for name, default in self._LATE_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)


def _freeze(x):
    if isinstance(x, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, np.ndarray):
        return tuple(x.tolist())
    return x


def _thaw(x):
    return list(x) if isinstance(x, tuple) else x


_TYPES = {"dataset": str, "model": str, "loss": str, "optimizer": str, "lr": (int, float), "momentum": (int, float),
          "weight_decay": (int, float), "schedule": str, "warmup_epochs": (int, float), "gamma": (int, float),
          "epochs": int, "epochs_scale": (int, float), "scale_lr": bool, "batch_size": int, "sampler": str,
          "augment": bool, "seed": int, "device": str, "eval_every": int, "record_selection": bool,
          "drop_last": bool}


def _validate_config(c: RunConfig):
    for name, typ in _TYPES.items():
        v = getattr(c, name)
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise TypeError(f"RunConfig.{name} must be {typ}, got {type(v).__name__} {v!r}")
    from .data import DATASETS
    from .models import MODELS
    for name, known in (("dataset", DATASETS), ("model", MODELS), ("sampler", SAMPLERS),
                        ("schedule", SCHEDULES), ("optimizer", OPTIMIZERS), ("loss", ("ce", "mse"))):
        if getattr(c, name) not in known:
            raise ValueError(f"unknown {name} {getattr(c, name)!r}; known: {', '.join(known)}")
    bad = [s for s in c.final_signals if s not in SIGNALS]
    if bad:
        raise ValueError(f"unknown final_signals {bad}; known: {', '.join(SIGNALS)}")
    if c.epochs < 1 or c.batch_size < 1 or c.eval_every < 1:
        raise ValueError("epochs, batch_size and eval_every must be >= 1")
    if not 0 < c.epochs_scale <= 1:
        raise ValueError(f"epochs_scale must be in (0, 1], got {c.epochs_scale}")
    if c.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {c.device!r} was asked for but this machine has no CUDA GPU "
                           "(torch.cuda.is_available() is False); use a CPU profile or run it on a GPU machine")


@dataclass
class RunResult:
    config: RunConfig
    records: list                    # one dict per epoch
    arrays: dict = field(default_factory=dict)   # per-sample arrays (NPZ)
    env: dict = field(default_factory=dict)
    from_cache: bool = False

    @property
    def final(self) -> dict:
        return self.records[-1]


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


def setup(c: RunConfig):
    """Data (on the device), model, optimiser and sampler of a run."""
    device = torch.device(c.device)
    ds = load_dataset(c.dataset, **c.options("dataset_options"))
    xtr, ytr = ds.x_train, ds.y_train
    if c.train_subset is not None:
        if not 0 < c.train_subset <= ds.n:
            raise ValueError(f"train_subset must be in 1..{ds.n}, got {c.train_subset}")
        xtr, ytr = xtr[: c.train_subset], ytr[: c.train_subset]
    if c.batch_size > len(xtr):
        raise ValueError(f"batch_size {c.batch_size} is larger than the training set ({len(xtr)} samples)")
    model = build_model(c.model, ds.input_shape, ds.output_dim, seed=c.seed, **c.options("model_options")).to(device)
    if device.type == "cuda" and xtr.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    sampler_kw = dict(c.options("sampler_options"))
    sampler_kw.setdefault("num_epochs", c.train_epochs)    # schedules and keep_ratio budgets are per run
    if c.sampler == "online_is":
        sampler_kw.setdefault("batch_size", c.batch_size)
    protocol = {k: sampler_kw.pop(k) for k in ("score_models", "score_epochs") if k in sampler_kw}
    if c.sampler in ("el2n", "forgetting") and "scores" not in sampler_kw:
        sc, secs = static_scores(c.sampler, c, xtr, ytr, ds, **protocol)
        sampler_kw.update(scores=sc, scoring_seconds=secs)
    sampler = make_sampler(c.sampler, len(xtr), seed=c.seed, **sampler_kw)
    data = dict(x=xtr.to(device), y=ytr.to(device), x_test=ds.x_test.to(device), y_test=ds.y_test.to(device))
    return ds, data, model, _optimizer(c, model), sampler


def _forward(model, x, c, device):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return model(x).float()


@torch.no_grad()
def evaluate(model, x, y, c, device, chunk=4096):
    model.eval()
    tot, correct = 0.0, 0
    for s in range(0, len(x), chunk):
        out = _forward(model, x[s:s + chunk], c, device)
        tot += float(per_sample_loss(out, y[s:s + chunk], c.loss).sum())
        if c.loss == "ce":
            correct += int((out.argmax(1) == y[s:s + chunk]).sum())
    model.train()
    return tot / len(x), (correct / len(x) if c.loss == "ce" else float("nan"))


# ----------------------------------------------------------------------------- the loop

def _train_epoch(epoch, c, model, opt, sampler, data, gen, device, rec, sel, fraction=1.0):
    """One epoch for any sampler level (``fraction`` < 1: only that share of its steps, the partial
    last epoch of Reducing Epoch). Fills `rec` (times, counts, losses)."""
    x, y, b = data["x"], data["y"], c.batch_size
    t = time.perf_counter
    req = sampler.scoring_request(epoch)                      # scoring pass (001, KAKURENBO)
    t0 = t()
    if req is not None:
        model.eval()
        with torch.no_grad():
            for s in range(0, len(req), 4096):
                i = req[s:s + 4096]
                out = _forward(model, x[i.to(device)], c, device)
                sampler.observe(i, per_sample_loss(out, y[i.to(device)], c.loss), logits=out, targets=y[i.to(device)])
                rec["forwarded"] += len(i)
        model.train()
    sampler.set_epoch(epoch)
    B = sampler.meta_batch_size(b) if sampler.level == "batch" else b
    steps = (len(sampler) // B if c.drop_last else math.ceil(len(sampler) / B)) or 1
    _sync(device); rec["t_select"] += t() - t0
    it, k = iter(sampler), 0
    stop = steps if fraction >= 1 else max(1, round(fraction * steps))
    while k < stop and (idx := list(islice(it, B))):           # lazy: online_is draws with the current q
        if c.drop_last and len(idx) < B and k > 0:             # a tiny last batch carrying large weights
            break
        t0 = t()
        idx = torch.tensor(idx)
        xb, yb = x[idx.to(device)], y[idx.to(device)]
        if c.augment:
            xb = random_crop_flip(xb, gen)
        _sync(device); t1 = t(); rec["t_data"] += t1 - t0
        if sampler.level == "batch":                           # meta-batch B -> mini-batch
            out = None
            if sampler.needs_forward:                          # selecting must not change the model:
                model.eval()                                   # no BatchNorm statistics, no dropout
                with torch.no_grad():
                    out = _forward(model, xb, c, device)
                model.train()
                rec["forwarded"] += len(idx)
            _sync(device); t2 = t(); rec["t_forward"] += t2 - t1
            l_meta = None if out is None else per_sample_loss(out, yb, c.loss)
            pos, _ = sampler.select(idx, l_meta, logits=out, targets=None if out is None else yb)
            pos_d = pos.to(device)
            idx, xb, yb = idx[pos], xb[pos_d], yb[pos_d]
            _sync(device); t1 = t(); rec["t_select"] += t1 - t2
        for g in opt.param_groups:
            g["lr"] = lr_at(c, epoch + k / steps) * getattr(sampler, "lr_scale", 1.0)
        out = _forward(model, xb, c, device)
        losses = per_sample_loss(out, yb, c.loss)
        _sync(device); t2 = t(); rec["t_forward"] += t2 - t1
        if not bool(torch.isfinite(losses.detach()).all()):   # diverged (e.g. large 1/(1-r) weights):
            rec["diverged"] = True                              # a result to report, not a crash
            break
        loss = sampler.reweight(idx, losses, logits=out.detach(), targets=yb)
        t3 = t(); rec["t_select"] += t3 - t2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device); rec["t_backward"] += t() - t3
        rec["forwarded"] += len(idx); rec["backpropagated"] += len(idx); rec["steps"] += 1
        rec["train_loss_weighted"] += float(loss.detach()) * len(idx); rec["train_loss"] += float(losses.detach().sum())
        if sel is not None:
            sel[idx] = True
        k += 1
    rec["lr"] = opt.param_groups[0]["lr"]


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
    device = torch.device(c.device)
    ds, data, model, opt, sampler = setup(c)
    gen = torch.Generator().manual_seed(c.seed + 1)          # augmentation
    n, E = len(data["x"]), c.train_epochs
    records, sel_bits, start = [], [], 0
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"{_cache.key(c)}.pt"
    if ckpt is not None and ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        model.load_state_dict(st["model"]); opt.load_state_dict(st["opt"])
        sampler.load_state_dict(st["sampler"]); gen.set_state(st["gen"])
        records, sel_bits, start = st["records"], st["sel_bits"], st["epoch"] + 1
    train_time = sum(r["t_train"] for r in records)
    from tqdm.auto import tqdm
    bar = tqdm(range(start, E), disable=not progress, desc=f"{c.sampler}")
    done_here = 0
    for epoch in bar:
        rec = dict(epoch=epoch, t_data=0.0, t_forward=0.0, t_backward=0.0, t_select=0.0, forwarded=0,
                   backpropagated=0, steps=0, train_loss=0.0, train_loss_weighted=0.0)
        sel = torch.zeros(n, dtype=torch.bool)   # which samples were backpropagated this epoch
        t0 = time.perf_counter()
        _train_epoch(epoch, c, model, opt, sampler, data, gen, device, rec, sel,
                     fraction=min(1.0, c.run_length - epoch))
        rec["t_train"] = time.perf_counter() - t0
        rec["distinct"] = int(sel.sum())          # distinct samples backpropagated (the pool, for online pruning)
        train_time += rec["t_train"]
        rec["train_loss"] /= max(rec["backpropagated"], 1)
        rec["train_loss_weighted"] /= max(rec["backpropagated"], 1)
        t0 = time.perf_counter()
        if (epoch + 1) % c.eval_every == 0 or epoch == E - 1:
            rec["test_loss"], rec["test_acc"] = evaluate(model, data["x_test"], data["y_test"], c, device)
            # full-data training loss on (up to) the first 10k training samples: comparable across samplers,
            # unlike the loss of the backpropagated samples, which biased samplers choose
            k = min(n, 10_000)
            rec["train_eval_loss"], rec["train_eval_acc"] = evaluate(model, data["x"][:k], data["y"][:k], c, device)
        else:
            rec["test_loss"] = rec["test_acc"] = rec["train_eval_loss"] = rec["train_eval_acc"] = float("nan")
        rec["t_eval"] = time.perf_counter() - t0
        if callback is not None:
            callback(epoch, model, data)
        rec["wall"] = train_time
        rec["t_static_scoring"] = float(getattr(sampler, "scoring_seconds", 0.0))
        rec["cum_backpropagated"] = rec["backpropagated"] + (records[-1]["cum_backpropagated"] if records else 0)
        rec["cum_forwarded"] = rec["forwarded"] + (records[-1]["cum_forwarded"] if records else 0)
        records.append(rec)
        if c.record_selection:
            sel_bits.append(np.packbits(sel.numpy()))
        bar.set_postfix(acc=rec["test_acc"], loss=rec["train_loss"])
        done_here += 1
        budget_hit = c.time_budget is not None and train_time >= c.time_budget
        if ckpt is not None and ((epoch + 1) % checkpoint_every == 0 or epoch == E - 1):
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(f".tmp{os.getpid()}")
            torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), sampler=sampler.state_dict(),
                            gen=gen.get_state(), records=records, sel_bits=sel_bits, epoch=epoch), tmp)
            os.replace(tmp, ckpt)
        if budget_hit or rec.get("diverged"):
            break
        if stop_after is not None and done_here >= stop_after and epoch < E - 1:
            return RunResult(c, records, {}, _env(device), False)
    arrays = _final_arrays(c, model, data, sampler, device, sel_bits, n)
    result = RunResult(c, records, arrays, _env(device), False)
    if use_cache:
        _cache.save(result, root)
    return result


@torch.no_grad()
def predict(model, x, c, device, chunk=4096) -> torch.Tensor:
    """Model outputs on ``x`` in chunks (whole training sets do not fit one forward on a GPU)."""
    was = model.training
    model.eval()
    out = torch.cat([_forward(model, x[s:s + chunk], c, device) for s in range(0, len(x), chunk)])
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
    if hasattr(sampler, "scoring_seconds"):
        arrays["scoring_seconds"] = np.array(sampler.scoring_seconds)
    return arrays


def per_sample_signal(name, model, x, y, loss="ce", chunk=2048) -> torch.Tensor:
    """One of SIGNALS for every sample (model in eval mode), as float32 on the CPU."""
    from .scores import dlis_norm, output_grad_norm, per_sample_grad_norms
    model.eval()
    parts = []
    for s in range(0, len(x), chunk):
        xb, yb = x[s:s + chunk], y[s:s + chunk]
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


def selection_counts(result: RunResult) -> np.ndarray:
    """How many epochs each sample was backpropagated in (001's selection distribution)."""
    bits = result.arrays["selection_bits"]
    n = int(result.arrays["n"])
    return np.unpackbits(bits, axis=1, count=n).sum(0)


def _env(device):
    return dict(device=str(device), device_name=(torch.cuda.get_device_name(device) if device.type == "cuda"
                                                   else platform.processor() or platform.machine()),
                torch=torch.__version__, threads=torch.get_num_threads(),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


# ----------------------------------------------------------------------------- static scores

EL2N_MODELS, EL2N_EPOCHS = 10, 20   # [Raju] §4: "average over 10 independent models trained for 20 epochs each"


def static_scores(kind: str, c: RunConfig, x, y, ds, score_models: int = EL2N_MODELS,
                  score_epochs: int = EL2N_EPOCHS):
    """EL2N (Paul et al. 2021, by [Raju] §4's protocol: the mean over ``score_models`` independent
    models, each trained for ``score_epochs`` epochs on its own schedule, of ||softmax - onehot||)
    or forgetting counts (Toneva et al. 2019: correct -> incorrect transitions over a full run of
    the run's length; never-learned samples count as most forgotten). Returns (scores, seconds
    spent). Cached as an analysis (`cache.memo`): runs at several keep ratios share one scoring, and
    the seconds reported are those measured when it was computed."""
    if int(score_models) < 1 or int(score_epochs) < 1:
        raise ValueError(f"score_models and score_epochs must be >= 1, got {score_models}, {score_epochs}")
    base = c.replace(sampler="full", sampler_options=(), record_selection=False, time_budget=None,
                     final_signals=(), epochs_scale=1.0, scale_lr=False)
    params = dict(kind=kind, base=base.to_dict(), n=len(x),
                  **(dict(models=int(score_models), epochs=int(score_epochs)) if kind == "el2n" else {}))
    out = _cache.memo("static_scores", params, lambda: _static_scores(kind, base, x, y, ds, int(score_models),
                                                                   int(score_epochs)))
    return torch.as_tensor(out["scores"]), float(out["seconds"])


def _static_scores(kind, base, x, y, ds, models, epochs):
    t0 = time.perf_counter()
    if kind == "el2n":
        tot = torch.zeros(len(x))
        f = epochs / base.epochs   # each scoring model on its own schedule: warm-up and milestones scaled
        for m in range(models):
            cfg = base.replace(seed=base.seed * 100 + m + 1, epochs=epochs, warmup_epochs=base.warmup_epochs * f,
                               milestones=tuple(ms * f for ms in base.milestones))
            r = _train_plain(cfg, x, y, ds)
            tot += output_grad_norm_ce(predict(r, x.to(cfg.device), cfg, torch.device(cfg.device)),
                                       y.to(cfg.device)).cpu()
        return dict(scores=(tot / models).numpy(), seconds=np.array(time.perf_counter() - t0))
    cfg = base.replace(seed=base.seed * 100 + 1)
    prev = torch.zeros(len(x), dtype=torch.bool)
    forgot = torch.zeros(len(x))
    learned = torch.zeros(len(x), dtype=torch.bool)

    def after_epoch(model):
        nonlocal prev
        ok = predict(model, x.to(cfg.device), cfg, torch.device(cfg.device)).argmax(1).cpu() == y.cpu()
        forgot.add_((prev & ~ok).float())
        learned.logical_or_(ok)
        prev = ok
    _train_plain(cfg, x, y, ds, after_epoch)
    forgot[~learned] = float("inf")
    scores = torch.nan_to_num(forgot, posinf=float(forgot[learned].max() + 1) if learned.any() else 1.0)
    return dict(scores=scores.numpy(), seconds=np.array(time.perf_counter() - t0))


def _train_plain(cfg, x, y, ds, after_epoch=None):
    """A plain full-data run on given tensors (for static scores), returning the model."""
    device = torch.device(cfg.device)
    model = build_model(cfg.model, ds.input_shape, ds.output_dim, seed=cfg.seed, **cfg.options("model_options")).to(device)
    opt = _optimizer(cfg, model)
    sampler = make_sampler("full", len(x), seed=cfg.seed)
    data = dict(x=x.to(device), y=y.to(device))
    gen = torch.Generator().manual_seed(cfg.seed)
    for e in range(cfg.train_epochs):
        rec = dict(t_data=0.0, t_forward=0.0, t_backward=0.0, t_select=0.0, forwarded=0, backpropagated=0,
                   steps=0, train_loss=0.0, train_loss_weighted=0.0)
        _train_epoch(e, cfg, model, opt, sampler, data, gen, device, rec, None)
        if after_epoch is not None:
            model.eval(); after_epoch(model); model.train()
    model.eval()
    return model
