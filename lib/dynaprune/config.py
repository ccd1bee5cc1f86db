"""`RunConfig`: everything that defines a run, as plain frozen data (nanoGPT-style config). The
engine (`dynaprune.train`) runs it; the profiles, the cache and the notebooks build and key it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from .samplers import SAMPLERS

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
    epochs_scale: float = 1.0        # Reducing Epoch ([Omission] §5): train round(scale * epochs) epochs
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
    world_size: int = 1              # processes of a DistributedDataParallel run (batch_size is the global batch)
    val_size: int = 0                # training samples held out for validation (`data.validation_split`); 0: none
    channels_last: bool = False      # image models in channels_last memory format on the CPU too (always on CUDA)

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
          "drop_last": bool, "world_size": int, "val_size": int,
          "channels_last": bool}


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
    if c.val_size < 0:
        raise ValueError(f"val_size must be >= 0, got {c.val_size}")
    if c.world_size < 1 or c.batch_size % c.world_size:
        raise ValueError(f"batch_size ({c.batch_size}, the global batch) must be a multiple of world_size ({c.world_size})")
    if c.device != "cpu" and not c.device.startswith("cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {c.device!r}")
