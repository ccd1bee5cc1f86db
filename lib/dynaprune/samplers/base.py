"""The sampler protocol and the bookkeeping every method shares.

A sampler is a `torch.utils.data.Sampler[int]` over dataset indices 0..n-1:

    sampler = make_sampler("infobatch", len(train_set), num_epochs=E)   # 1
    loader = DataLoader(IndexedDataset(train_set), batch_size=b, sampler=sampler)
    for epoch in range(E):
        sampler.set_epoch(epoch)                                        # 2
        for x, y, idx in loader:
            losses = F.cross_entropy(model(x), y, reduction="none")
            loss = sampler.reweight(idx, losses, logits=..., targets=y)  # 3
            loss.backward(); opt.step(); opt.zero_grad()

- ``set_epoch(e)`` plans the epoch; ``len(sampler)`` is then exact (LR schedules can be sized).
- ``reweight(indices, losses, logits=, targets=)`` records detached statistics and returns
  ``mean(w_i * l_i)`` over the batch (METHODS.md's one weighting convention).
- batch-level methods (``level == "batch"``) also have ``select(indices, losses, ...)`` on a
  meta-batch returning (positions, weights); their iterator yields meta-batch indices.
- scoring passes: ``scoring_request(epoch)`` names the indices a method wants scored (without
  training on them) before ``set_epoch``; the caller runs a no-grad forward and hands the result
  to ``observe(...)``.
- ``state_dict()``/``load_state_dict()`` resume bit-identically; all randomness comes from
  the sampler's own seeded generators (the global RNG is never touched).
- distributed data parallel: when `torch.distributed` is initialised (or ``distributed=True``),
  every rank plans the same epoch (planning depends on seed, epoch and the shared statistics),
  iterates its own equal-length shard, and the statistics of `reweight` / `observe` / `select`
  are all-gathered so every rank's score table sees every rank's samples.

Validation happens before any state changes, so a refused call loses nothing.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import typing

import torch
from torch.utils.data import Sampler

from ..scores import output_grad_norm_ce


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or inf in ``t``. A float64 sum is finite only if every summand is (NaN and inf propagate), and
    for float32 values it cannot overflow: one reduction and one read per step, cheaper than
    ``isfinite().all()`` at b ~ 128. A float64 sum that overflows falls back to the exact test."""
    t = t.detach()
    return math.isfinite(float(t.sum(dtype=torch.float64))) or bool(torch.isfinite(t).all())


def _check_ratio(name, value, low_open=True):
    v = float(value)
    if not (0.0 < v <= 1.0) if low_open else not (0.0 <= v < 1.0):
        raise ValueError(f"{name} must be in {'(0, 1]' if low_open else '[0, 1)'}, got {value}")
    return v


class DynamicSampler(Sampler[int]):
    """Base class: planning, validation, weights, state. Subclasses override `_plan`, `_observe`
    and (batch-level) `_select`; hyper-parameters are constructor keywords with the papers' defaults."""

    version = 1              # bump when a change alters what the method selects (results-cache key)
    level = "set"            # "set", "batch" or "replacement"
    needs_logits = False     # statistics from the logits (output-gradient norms)
    requires_num_epochs = False

    # The engine's hooks (`dynaprune.train`), read or set by it and nothing else; a loop of one's own may ignore them.
    lr_scale = 1.0           # read each step: the learning rate is the schedule's times this (KAKURENBO's 1 / (1 - F))
    last_weights = None      # set by `reweight`: the weights it applied (on the loss's device; the engine's diagnostics)
    scorer = None            # set by the engine before `set_epoch`: scorer(indices) forwards them (no grad, eval mode)
                             # and hands the losses to `observe`; methods with sub-epoch checkpoints call it ([Raju])
    static_backprops = 0     # backprops of a static model trained for this run ([RHO-LOSS]'s IL model): its budget
    scoring_seconds = None   # seconds spent on static inputs before training (EL2N's models), reported apart

    def __init__(self, n: int, *, seed: int = 0, num_epochs: int | None = None, distributed: bool | None = None):
        if int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        if self.requires_num_epochs and (num_epochs is None or int(num_epochs) < 1):
            raise ValueError(f"{type(self).__name__} needs num_epochs (a positive integer) for its schedule")
        self.n, self.seed = int(n), int(seed)
        self.num_epochs = None if num_epochs is None else int(num_epochs)
        self.epoch = -1
        self.rank, self.world = 0, 1
        if distributed is None or distributed:
            import torch.distributed as dist
            if dist.is_available() and dist.is_initialized():
                self.rank, self.world = dist.get_rank(), dist.get_world_size()
            elif distributed:
                raise RuntimeError("distributed=True but torch.distributed is not initialised")
        # step-wise randomness (select, online draws); each rank its own stream
        self.gen = torch.Generator().manual_seed(self.seed + 1_000_003 * self.rank)
        self.plan = torch.empty(0, dtype=torch.long)           # the epoch's indices, in order
        self.weights = torch.ones(self.n, dtype=torch.float64)  # per-index weight for reweight
        self._pending = None                                    # batch-level: the last selection
        self._meta = None                                       # batch-level: all ranks' meta-batch
        self._plan_sizes = {}                                   # epoch -> planned samples (budget bookkeeping)

    # ------------------------------------------------------------------ planning
    def _epoch_generator(self, epoch: int) -> torch.Generator:
        """Planning randomness depends on (seed, epoch) only: replanning is idempotent, and all
        ranks of a distributed run plan the same epoch."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 7_919 + 17)

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch}")
        if self.num_epochs is not None and epoch >= self.num_epochs:
            raise ValueError(f"epoch {epoch} is beyond num_epochs={self.num_epochs}")
        g = self._epoch_generator(int(epoch))
        plan, weights = self._plan(int(epoch), g)  # may raise: nothing assigned yet
        self.epoch, self.plan = int(epoch), plan.long()
        self._plan_sizes[self.epoch] = len(self.plan)
        self.weights = weights if weights is not None else torch.ones(self.n, dtype=torch.float64)

    def planned_before(self, epoch: int) -> int:
        """Samples planned in the epochs before ``epoch`` (replanning an epoch counts it once): what a
        ``keep_ratio`` budget has spent so far."""
        return sum(v for e, v in self._plan_sizes.items() if e < epoch)

    def _plan(self, epoch: int, g: torch.Generator):
        """Return (indices of the epoch in order, per-index weights or None for all ones)."""
        return torch.randperm(self.n, generator=g), None

    def __iter__(self):
        if self.epoch < 0:
            raise RuntimeError(f"{type(self).__name__}: call set_epoch(epoch) before iterating")
        return iter(self._shard(self.plan).tolist())

    def __len__(self) -> int:
        if self.epoch < 0:
            raise RuntimeError(f"{type(self).__name__}: len() is known after set_epoch(epoch)")
        return -(-len(self.plan) // self.world)

    def _shard(self, plan: torch.Tensor) -> torch.Tensor:
        """This rank's share of the plan; padded by wrapping so every rank has the same length."""
        if self.world == 1:
            return plan
        per = -(-len(plan) // self.world)
        padded = torch.cat([plan, plan[: per * self.world - len(plan)]]) if len(plan) else plan
        return padded[self.rank::self.world]

    def _gather(self, *tensors):
        """All-gather equal-kind tensors of possibly different lengths from every rank (rank order);
        identity on one process. None entries stay None."""
        if self.world == 1:
            return tensors
        import torch.distributed as dist
        ref = next(t for t in tensors if t is not None)
        dev = ref.device if dist.get_backend() == "nccl" else torch.device("cpu")
        size = torch.tensor([len(ref)], device=dev)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        m = int(max(sizes))
        out = []
        for t in tensors:
            if t is None:
                out.append(None)
                continue
            t = torch.as_tensor(t).detach().to(dev)
            pad = torch.zeros((m - len(t), *t.shape[1:]), dtype=t.dtype, device=dev)
            parts = [torch.empty((m, *t.shape[1:]), dtype=t.dtype, device=dev) for _ in range(self.world)]
            dist.all_gather(parts, torch.cat([t, pad]))
            out.append(torch.cat([p[: int(k)] for p, k in zip(parts, sizes)]).cpu())
        return tuple(out)

    # ------------------------------------------------------------------ scoring passes
    def scoring_request(self, epoch: int):
        """Indices this method wants scored (no training) before `set_epoch(epoch)`, or None."""
        return None

    def observe(self, indices, losses, *, logits=None, targets=None) -> None:
        """Record statistics from a scoring pass (no weights, no training)."""
        idx, l, z, y = self._validate(indices, losses, logits, targets)
        idx, l, z, y = self._gather(idx, l.detach(), None if z is None else z.detach(), y)
        self._observe_scoring(idx, l.float().cpu(), z, y)  # statistics live on the CPU

    def _observe_scoring(self, idx, losses, logits, targets):
        self._observe(idx, losses, logits, targets)

    # ------------------------------------------------------------------ training statistics
    def _validate(self, indices, losses, logits=None, targets=None, allow_no_losses=False, require_logits=None):
        idx = torch.as_tensor(indices).detach()
        if idx.dim() != 1 or idx.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
            raise ValueError(f"indices must be a 1-D integer tensor, got {tuple(idx.shape)} {idx.dtype}")
        idx = idx.to("cpu", torch.long)
        if len(idx) == 0:
            raise ValueError("empty batch")
        lo, hi = (int(v) for v in torch.aminmax(idx))   # one reduction: this runs every step
        if lo < 0 or hi >= self.n:
            raise IndexError(f"indices out of range 0..{self.n - 1}: min {lo}, max {hi}")
        if losses is None:
            if not allow_no_losses:
                raise ValueError("losses are required (per-sample, reduction='none')")
            l = None
        else:
            if not isinstance(losses, torch.Tensor):
                losses = torch.as_tensor(losses, dtype=torch.float32)
            if losses.dim() != 1 or len(losses) != len(idx):
                raise ValueError(f"losses must be per-sample (reduction='none') with shape ({len(idx)},), "
                                 f"got {tuple(losses.shape)}")
            if not _all_finite(losses):
                raise ValueError("losses contain NaN or inf; nothing was recorded")
            l = losses
        if logits is not None:
            if logits.shape[0] != len(idx):
                raise ValueError(f"logits have {logits.shape[0]} rows for {len(idx)} indices")
            if not _all_finite(logits):
                raise ValueError("logits contain NaN or inf; nothing was recorded")
            if targets is None or len(targets) != len(idx):
                raise ValueError("targets (one per index) are needed with logits")
        elif self.needs_logits if require_logits is None else require_logits:
            raise ValueError(f"{type(self).__name__} tracks output-gradient norms: pass logits= and targets=")
        return idx, l, logits, targets

    def _observe(self, idx, losses, logits, targets) -> None:
        """Update the method's statistics (detached, on the CPU). Default: nothing tracked."""

    def reweight(self, indices, losses, *, logits=None, targets=None) -> torch.Tensor:
        """Record statistics; return mean_i(w_i * l_i), the loss to backpropagate."""
        if self.level == "batch":
            return self._reweight_selected(indices, losses, logits, targets)
        idx, l, z, y = self._validate(indices, losses, logits, targets)
        w = self.weights[idx].to(device=l.device, dtype=l.dtype)  # weights of this rank's batch, before stats move
        gi, gl, gz, gy = self._gather(idx, l.detach(), None if z is None else z.detach(), y)
        self._observe(gi, gl.float().cpu(), gz, gy)
        self.last_weights = w.detach()     # the applied weights, for the engine's diagnostics (no host sync)
        return (w * l).mean()

    def _reweight_selected(self, indices, losses, logits, targets):
        idx, l, z, y = self._validate(indices, losses, logits, targets)
        if self._pending is None or not torch.equal(self._pending[0], idx):
            raise ValueError("batch-level sampler: reweight() takes exactly the indices returned by the "
                             "last select() (meta_indices[positions])")
        w = self._pending[1]
        gi, gl, gz, gy = self._gather(idx, l.detach(), None if z is None else z.detach(), y)
        self._observe(gi, gl.float().cpu(), gz, gy)
        self._pending = None
        w = w.to(device=l.device, dtype=l.dtype)
        self.last_weights = w.detach()
        return (w * l).mean()

    def select(self, indices, losses=None, *, logits=None, targets=None):
        """Batch-level selection on a meta-batch: (positions into it, weights of those positions)."""
        if self.level != "batch":
            raise TypeError(f"{type(self).__name__} is a {self.level}-level sampler; select() is for "
                            "batch-level methods (level == 'batch')")
        idx, l, z, y = self._validate(indices, losses, logits, targets, allow_no_losses=not self.needs_forward,
                                      require_logits=self.needs_logits and self.needs_forward)
        lc = None if l is None else l.detach().float().cpu()
        # methods that learn from the meta-batch (ES, Selective Backprop) see every rank's meta-batch
        self._meta = (idx, lc) if lc is None or self.world == 1 else self._gather(idx, lc)
        pos, w = self._select(idx, lc, z, y)
        pos = pos.long()
        self._pending = (idx[pos], w.double())
        return pos, w

    # ------------------------------------------------------------------ state
    _state_keys: tuple = ()

    def state_dict(self) -> dict:
        keys = ("epoch", "plan", "weights", "_pending", "_plan_sizes") + self._state_keys
        return {"gen": self.gen.get_state(), **{k: copy.deepcopy(getattr(self, k)) for k in keys}}

    def load_state_dict(self, state: dict) -> None:
        keys = ("epoch", "plan", "weights", "_pending", "_plan_sizes") + self._state_keys
        missing = [k for k in ("gen",) + keys if k not in state]
        if missing:
            raise KeyError(f"state_dict lacks {missing}")
        self.gen.set_state(state["gen"])
        for k in keys:
            setattr(self, k, copy.deepcopy(state[k]))

    # ------------------------------------------------------------------ helpers
    def _k(self, ratio: float) -> int:
        return max(1, int(round(ratio * self.n)))

    @staticmethod
    def _shuffle(idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return idx[torch.randperm(len(idx), generator=g)]

    def __repr__(self):
        hp = {k: v for k, v in vars(self).items() if isinstance(v, (int, float, str, bool)) and not k.startswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in hp.items())})"


STEP_REGIMES = ("fewer_steps", "equal_steps")


def ratio_or_keep(ratio, keep_ratio, default):
    """Batch-level methods take ``keep_ratio`` (the share of samples backpropagated, the one budget
    knob of every method) or their papers' ``ratio`` = b / B; they are the same number here."""
    if ratio is not None and keep_ratio is not None and float(ratio) != float(keep_ratio):
        raise ValueError(f"give ratio or keep_ratio, not both ({ratio} vs {keep_ratio})")
    v = keep_ratio if keep_ratio is not None else ratio if ratio is not None else default
    return _check_ratio("keep_ratio" if keep_ratio is not None else "ratio", v)


class BatchSampler(DynamicSampler):
    """Batch-level base: iterates over all (planned) samples shuffled; the caller forms meta-batches
    of `meta_batch_size(b)`, calls `select` then `reweight` on the kept part.

    Two step regimes, each method defaulting to its own paper's:
    - ``"fewer_steps"`` ([Omission] §5's batch-level baselines): keep the mini-batch b, draw
      meta-batches of B = b / ratio, so an epoch has ratio * n / b steps;
    - ``"equal_steps"`` ([ES] Alg. 1): the standard batch is the meta-batch B = b and ratio * B of
      it is backpropagated, so an epoch has as many steps as full-data training."""

    level = "batch"
    needs_forward = True   # False for historical methods: select works from stored statistics
    step_regime = "fewer_steps"

    def _set_regime(self, steps):
        if steps is not None:
            if steps not in STEP_REGIMES:
                raise ValueError(f"unknown steps regime {steps!r}; known: {', '.join(STEP_REGIMES)}")
            self.step_regime = steps

    def meta_batch_size(self, b: int) -> int:
        if self.step_regime == "equal_steps":
            return b
        return max(b, int(math.ceil(b / self.ratio)))


def grad_norm_sq(outputs, targets) -> torch.Tensor:
    """||dl/dz||^2 per sample: cross-entropy logits with class targets ([OnlineIS] eq. 7; [Omission] §3.2's
    g~^2), or, for real-valued targets of the outputs' shape, the squared error's 2 (z - y)."""
    targets = torch.as_tensor(targets)
    if targets.is_floating_point() and targets.shape == outputs.shape:
        return (2 * (outputs.detach() - targets.to(outputs.device))).double().flatten(1).pow(2).sum(1).cpu()
    return output_grad_norm_ce(outputs.detach(), targets).double().cpu().pow(2)


def per_sample_values(values, n: int, what: str) -> torch.Tensor:
    """``values``: one finite number per sample (static scores, irreducible losses) as float64; refused otherwise."""
    v = torch.as_tensor(values, dtype=torch.float64)
    if v.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError(f"{what} contain NaN or inf")
    return v


def check_labels(labels, n: int) -> torch.Tensor:
    """``labels``: one integer class per sample (n of them), for a class-balanced selector; refused otherwise."""
    if labels is None:
        raise ValueError("class_balanced=True needs labels= (one class per training sample; the engine passes them)")
    y = torch.as_tensor(labels).detach().cpu()
    if y.shape != (n,) or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"labels must be {n} integer class ids, got {tuple(y.shape)} {y.dtype}")
    if int(y.min()) < 0:
        raise ValueError("labels must be non-negative class ids")
    return y.long()


def class_budgets(labels: torch.Tensor, k: int) -> torch.Tensor:
    """k split over the classes in proportion to their sizes (largest remainders, ties to the lower class id): the
    per-class budgets of a class-balanced selector; they sum to k and never exceed a class's size."""
    counts = torch.bincount(labels).double()
    share = counts * k / counts.sum()
    base = share.floor().long()
    rest = k - int(base.sum())
    order = torch.argsort(-(share - base), stable=True)
    base[order[:rest]] += 1
    return torch.minimum(base, counts.long())


def per_class(choose, score: torch.Tensor, k: int, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Class-balanced selection (ours; RCAP's per-class budgets): ``choose(score_c, k_c, g)`` within each class c at its
    budget `class_budgets`, the chosen positions mapped back to sample indices."""
    out = []
    for c, kc in enumerate(class_budgets(labels, k).tolist()):
        idx = torch.nonzero(labels == c).flatten()
        if kc:
            out.append(idx[choose(score[idx], kc, g)])
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------- method cards

def _no_options(epochs: int) -> dict:
    return {}


def _inside(options: dict, epochs: int) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Method:
    """A method card: everything the study needs to know about one registry entry, declared beside its sampler (each
    module's ``METHODS``), read by the engine (`dynaprune.train`), the grids and regimes, and the reports, so that none
    of them tests a method's name. Adding a method is its module plus one line in `dynaprune.samplers` (`register` for a
    method of one's own).

    - ``build(n, seed=, **options)``: the sampler class (or factory); its ``version`` keys the results cache.
    - ``name``: how a table or figure names it; ``paper``: its citation key (`references.bib`), None for ours.
    - ``budget(r, epochs, profile) -> options``: how ``keep_ratio`` r (the expected backprop share of the run) maps onto
      its knobs; None when it takes no keep_ratio.
    - ``own_budget``: its paper sets its own budget (a keep_ratio forced on it runs outside its regime, labelled);
      ``fixed``: the options of its one run at that budget in a wide comparison (None: no such run);
      ``curve_ratios``: on the budget curves at each keep ratio too (e.g. [ES]'s b / B is a budget knob).
    - ``regime(epochs) -> options`` of its paper's regime; ``outside(options, epochs) -> label | None``: how a run
      departs from it.
    - ``share``: the backprop share asked for when no keep_ratio is given (1 for full data and for importance sampling
      with n draws per epoch; NaN where the paper sets it indirectly).
    - ``prepare(ctx) -> options``: static inputs the engine computes before training (static scores, an irreducible-loss
      model), asked of the engine's context (`dynaprune.train.Prepare`: ``ctx.options``, the sampler options given;
      ``ctx.protocol``, the options named in ``protocol``, which parametrise ``prepare`` and are not the sampler's;
      ``ctx.n`` and ``ctx.epochs``; ``ctx.static_scores(kind, **protocol)``; ``ctx.irreducible_losses(holdout_size,
      il_epochs)``); ``probe(options, n, epochs) -> options``: placeholders for them, so the sampler can be built without
      training (reachability checks, benchmarks).
    - ``run_fields``: RunConfig fields the sampler takes as keywords (e.g. ``batch_size``).
    - ``static_work(options, n, epochs, per_epoch) -> (forwards, backprops)``: the work of static models trained for a
      run and not in its records (EL2N's scoring models, forgetting's run), for compute accounting; ``per_epoch``: the
      samples one full-data epoch over the n backpropagates (drop_last). None: nothing outside the records.

    Its claims are the claims table's (`dynaprune.claims.of(name)`: those of its paper, and those it is a curve arm of).
    """

    build: typing.Callable
    name: str
    paper: str | None = None
    budget: typing.Callable | None = None
    own_budget: bool = False
    fixed: dict | None = None
    curve_ratios: bool = True
    regime: typing.Callable = _no_options
    outside: typing.Callable = _inside
    share: float = float("nan")
    prepare: typing.Callable | None = None
    probe: typing.Callable | None = None
    protocol: tuple = ()
    run_fields: tuple = ()
    static_work: typing.Callable | None = None

    @property
    def version(self) -> int:
        return getattr(self.build, "version", 1)

    def buildable(self, options: dict, n: int, epochs: int) -> dict:
        """``options`` as the sampler can be built with them over ``n`` samples without training: protocol options
        off, `probe` placeholders in."""
        o = self.probe(dict(options), n, epochs) if self.probe is not None else \
            {k: v for k, v in options.items() if k not in self.protocol}
        if o.get("class_balanced"):          # the engine passes the labels; ten classes stand in for them
            o.setdefault("labels", torch.arange(n) % 10)
        return o

    @property
    def on_curves_once(self) -> bool:
        """Whether the budget curves run it once at its own budget (keep_ratio None)."""
        return self.own_budget or self.budget is None


def keep(r, epochs, profile) -> dict:
    """The plain budget mapping: keep_ratio r is the method's own knob."""
    return {"keep_ratio": r}
