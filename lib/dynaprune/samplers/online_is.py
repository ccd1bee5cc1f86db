"""Online importance sampling and online data pruning ([OnlineIS]).

Importance ([OnlineIS] §4, eq. 7): q_i tracks g~_i = ||dl_i/dz_i|| (closed form
softmax - onehot for cross-entropy) or, with ``metric="loss"``, the loss ("Loss IS").
Algorithm 1: epoch 0 visits every sample once (uniform, no replacement) to initialise q;
then each step draws b samples with replacement from p = q / sum q over the active pool
(m samples), weights 1/(m p_j) (line 10), and updates q_i = alpha q_i + (1 - alpha) g~_i
for the drawn samples (line 12); q += eps at each epoch end (line 13). An epoch has
n / b steps as in Algorithm 1 line 5 (``equal_steps=False``: m / b, saving backprops once pruned).
Algorithm 2 (online pruning): every ``prune_every`` epochs, samples with
q <= sum(q) / (K |pool|) leave the pool for good.
- `online_is`: Algorithm 1 (``prune_K`` adds Algorithm 2, as in [OnlineIS]'s "IS + pruning").
- `online_prune`: Algorithm 2 alone: uniform over the pool, weight 1. As in [OnlineIS]'s experiments
  ("the number of steps per epoch remains consistent with the non-pruned experiments"), an epoch
  has n samples by default: the pool is passed over in fresh random orders until n are drawn, so
  samples that stay are seen more than once. ``equal_steps=False`` makes an epoch one pass over the
  pool instead: it saves the backprops of the pruned samples (1 - |pool| / n of each epoch), and
  only then does ``keep_ratio`` apply: it replaces the threshold sum(q) / (K |pool|) by the one that
  leaves a pool of c^j n after the j-th pruning round, c solved so that the run backpropagates
  keep_ratio of full training.
Draws happen lazily as the iterator advances, so q is current at every step (a DataLoader
with workers prefetches a few batches, which then use a slightly older q).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import DynamicSampler, Method, _check_ratio, grad_norm_sq, keep

ALPHA = 0.3          # [OnlineIS] App. C (CIFAR, image regression); {0, 0.1, 0.2, 0.3} by task
EPS = 1e-4           # q += eps each epoch ("small")
K = 4.0              # reduction factor (CIFAR); 2 for image regression
PRUNE_EVERY = 20     # epochs between pruning rounds ([OnlineIS] App. C, MNIST)
METRICS = ("grad", "loss")
CRITERIA = ("importance", "random")   # online_prune: what decides who leaves the pool


class _Importance(DynamicSampler):
    _state_keys = ("q", "active", "_seen")

    def __init__(self, n, *, alpha=ALPHA, eps=EPS, metric="grad", prune_K=None, prune_every=PRUNE_EVERY,
                 num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)
        if not 0.0 <= float(alpha) < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        if prune_K is not None and float(prune_K) <= 0:
            raise ValueError(f"prune_K must be > 0, got {prune_K}")
        self.alpha, self.eps, self.metric = float(alpha), float(eps), metric
        self.prune_K, self.prune_every = (None if prune_K is None else float(prune_K)), int(prune_every)
        self.needs_logits = metric == "grad"
        self.q = torch.zeros(self.n, dtype=torch.float64)
        self.active = torch.ones(self.n, dtype=torch.bool)
        self._seen = torch.zeros(self.n, dtype=torch.bool)

    def _observe(self, idx, losses, logits, targets):
        v = grad_norm_sq(logits, targets).sqrt() if self.metric == "grad" else losses.double()
        old = self.q[idx]
        self.q[idx] = torch.where(self._seen[idx], self.alpha * old + (1 - self.alpha) * v, v)
        self._seen[idx] = True

    def _end_of_epoch(self, epoch):
        """Line 13 (q += eps) and Algorithm 2 at the start of `epoch` (> 0)."""
        if epoch == 0 or self.epoch == epoch:  # replanning the same epoch changes nothing
            return self.q, self.active
        q = self.q + self.eps
        active = self.active
        if self.prune_K is not None and epoch % self.prune_every == 0:
            thr = q[active].sum() / (self.prune_K * int(active.sum()))
            active = active & (q > thr)
            if not active.any():
                active = self.active
        return q, active

    def pool(self) -> torch.Tensor:
        return torch.nonzero(self.active).flatten()


class SumTree:
    """Vectorised sum-tree over n non-negative weights: draw b samples with replacement
    proportional to the weights in O(b log n) and update b weights in O(b log n), instead of
    renormalising all n at every step.

    A draw descends from the root, going right when its residual u >= the left child's sum. The top
    ``top`` levels are one `np.searchsorted` on the running sums of the nodes at that depth (kept in a
    cache that an update marks stale), then the descent goes on level by level: the same node as the
    full descent, up to the rounding of the running sums (about 1e-16 of the total), in fewer NumPy
    calls per batch."""

    TOP = 12   # levels resolved by one searchsorted: a cumsum over 4,096 nodes after each update

    def __init__(self, weights: torch.Tensor):
        n = len(weights)
        self.size = 1 << max(0, (n - 1).bit_length())
        self.tree = torch.zeros(2 * self.size, dtype=torch.float64)
        self.tree[self.size:self.size + n] = weights.double()
        self._sum_levels_above(self.size)
        self.depth = self.size.bit_length() - 1
        self.top = min(self.TOP, self.depth)
        self._cum = None   # running sums of the 2^top nodes at depth `top` (None: stale)

    @property
    def total(self) -> float:
        if self._cum is None:
            self._refresh()
        return float(self.tree[1])

    # The per-level steps act on b (~128) entries: NumPy views of the same memory cost a fraction of
    # torch's per-call overhead there, with the same float64 arithmetic.

    def update(self, idx: torch.Tensor, values: torch.Tensor):
        t = self.tree.numpy()
        node = idx.numpy() + self.size
        t[node] = values.double().numpy()
        for _ in range(self.depth - self.top):  # one vectorised step per level up to depth `top`
            node = node >> 1  # duplicates write the same sum: no need to deduplicate
            t[node] = t[2 * node] + t[2 * node + 1]
        self._cum = None      # the levels above, rebuilt by slices before the next draw

    def _sum_levels_above(self, lo: int):
        """Every node above the level starting at index ``lo``, whole level slices at a time (the same
        pairwise sums as updating node by node)."""
        t = self.tree.numpy()
        while lo > 1:
            hi, lo = lo, lo // 2
            t[lo:hi] = t[2 * lo:2 * hi:2] + t[2 * lo + 1:2 * hi:2]

    def _refresh(self):
        """The levels above depth `top` and the running sums the draws search, after updates."""
        first = 1 << self.top
        self._sum_levels_above(first)
        self._cum = np.concatenate(([0.0], np.cumsum(self.tree.numpy()[first:2 * first])))
        self._cum[-1] = np.inf   # u < total: the search never runs past the last node

    def sample(self, b: int, gen: torch.Generator):
        """(indices, their weights / total), b independent draws."""
        return self.draw(torch.rand(b, generator=gen, dtype=torch.float64).numpy())

    def draw(self, r: np.ndarray):
        """`sample` with its uniforms ``r`` in [0, 1) given (consumed): the draws land where r * total does."""
        if self._cum is None:
            self._refresh()
        t, cum = self.tree.numpy(), self._cum
        total = t[1]
        u = r
        u *= total             # as rand * total * (1 - 1e-12), in that order
        u *= 1 - 1e-12
        j = np.searchsorted(cum, u, side="right") - 1   # the node at depth `top` whose span holds u
        u -= cum[j]                                      # the residual inside it
        node = j + (1 << self.top)
        np.minimum(u, t[node] * (1 - 1e-12), out=u)      # rounding of the running sums never leaves the node
        for _ in range(self.depth - self.top):
            node <<= 1                             # the left child
            left = t[node]
            right = u >= left                      # a zero-weight left subtree is never chosen
            u -= left * right
            node += right
        return torch.from_numpy(node - self.size), torch.from_numpy(t[node] / total)


class OnlineIS(_Importance):
    """[OnlineIS] Algorithm 1: sampling with replacement proportional to q, weights 1/(m p).
    Draws use a `SumTree` kept in step with q: O(b log n) per step."""

    level = "replacement"
    version = 2  # sum-tree draws (a different random stream from torch.multinomial)

    def __init__(self, n, *, batch_size: int = 128, equal_steps: bool = True, **kw):
        super().__init__(n, **kw)
        self.equal_steps = bool(equal_steps)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    def _plan(self, epoch, g):
        q, active = self._end_of_epoch(epoch)
        self.q, self.active = q, active
        if epoch == 0:
            return torch.randperm(self.n, generator=g), None
        draws = self.n if self.equal_steps else int(active.sum())
        # a placeholder plan of the right length: the draws themselves happen in __iter__
        return torch.full((draws,), -1), torch.ones(self.n, dtype=torch.float64)

    def _tree(self) -> SumTree:
        """The sum-tree of q over the pool (zero outside it), rebuilt once per epoch."""
        if getattr(self, "_tree_epoch", None) != self.epoch:
            self._sumtree = SumTree(torch.where(self.active, self.q, torch.zeros_like(self.q)))
            self._tree_epoch = self.epoch
        return self._sumtree

    def _observe(self, idx, losses, logits, targets):
        super()._observe(idx, losses, logits, targets)
        if self.epoch > 0 and getattr(self, "_tree_epoch", None) == self.epoch:
            self._sumtree.update(idx, torch.where(self.active[idx], self.q[idx], torch.zeros_like(self.q[idx])))

    def __iter__(self):
        if self.epoch < 0:
            raise RuntimeError("OnlineIS: call set_epoch(epoch) before iterating")
        if self.epoch == 0:
            yield from self._shard(self.plan).tolist()
            return
        m = int(self.active.sum())
        tree = self._tree()
        # the epoch's uniforms in one call: the same stream (and generator state) as one call per batch
        r = torch.rand(len(self), generator=self.gen, dtype=torch.float64).numpy()  # this rank's share
        w = self.weights.numpy()   # NumPy views: cheaper than torch's per-call overhead at b ~ 128
        for start in range(0, len(r), self.batch_size):
            idx, p = tree.draw(r[start:start + self.batch_size])
            w[idx.numpy()] = 1.0 / (m * p.numpy())
            yield from idx.tolist()

    def probabilities(self) -> torch.Tensor:
        """Current sampling distribution over all n (0 outside the pool)."""
        p = torch.zeros(self.n, dtype=torch.float64)
        pool = self.pool()
        p[pool] = self.q[pool] / self.q[pool].sum()
        return p


class OnlinePrune(_Importance):
    """[OnlineIS] Algorithm 2 alone: the pool shrinks every `prune_every` epochs; uniform over the pool."""

    version = 2  # equal steps per epoch by default ([OnlineIS] §5); keep_ratio with equal_steps=False

    def __init__(self, n, *, prune_K=K, equal_steps: bool = True, keep_ratio: float | None = None,
                 criterion: str = "importance", pool_schedule=None, **kw):
        super().__init__(n, prune_K=prune_K, **kw)
        self.equal_steps = bool(equal_steps)
        if criterion not in CRITERIA:
            raise ValueError(f"unknown criterion {criterion!r}; known: {', '.join(CRITERIA)}")
        if (criterion == "random") != (pool_schedule is not None):
            raise ValueError("criterion='random' (the matched control of [OnlineIS] Fig. 3) needs pool_schedule, the "
                             "pool size of each epoch of the importance run it matches, and only it")
        self.criterion = criterion
        self.pool_schedule = None if pool_schedule is None else [int(m) for m in pool_schedule]
        if self.pool_schedule is not None and not all(1 <= m <= n for m in self.pool_schedule):
            raise ValueError(f"pool_schedule entries must be in 1..{n}")
        self.keep_ratio, self.pool_factor = None, None
        if keep_ratio is not None:
            if self.equal_steps:
                raise ValueError("with equal steps (the default, as in [OnlineIS]) online pruning backpropagates n samples "
                                 "every epoch, so keep_ratio cannot apply; pass equal_steps=False to shrink epochs")
            if self.num_epochs is None:
                raise ValueError("keep_ratio needs num_epochs (the share is over the whole run)")
            self.keep_ratio = _check_ratio("keep_ratio", keep_ratio)
            self.pool_factor = self._solve_pool_factor()

    def _rounds(self, epoch):
        """Pruning rounds done by the start of `epoch`."""
        return sum(1 for e in range(1, epoch + 1) if e % self.prune_every == 0)

    def _solve_pool_factor(self) -> float:
        E = self.num_epochs
        share = lambda c: sum(c ** self._rounds(e) for e in range(E)) / E
        lo_share = share(0.0)
        if self.keep_ratio < lo_share - 1e-12:
            raise ValueError(f"keep_ratio={self.keep_ratio} is out of reach: the {sum(1 for e in range(E) if self._rounds(e) == 0)}"
                             f" epochs before the first pruning round (prune_every={self.prune_every}) already use "
                             f"{lo_share:.3f} of the run")
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if share(mid) < self.keep_ratio else (lo, mid)
        return (lo + hi) / 2

    def _end_of_epoch(self, epoch):
        if self.criterion == "random":
            # the matched random control: remove uniformly chosen pool members down to the importance run's size
            if self.epoch == epoch or epoch >= len(self.pool_schedule):
                return self.q, self.active
            pool = torch.nonzero(self.active).flatten()
            m = min(len(pool), self.pool_schedule[epoch])
            keep = pool[torch.randperm(len(pool), generator=self._epoch_generator(epoch))[:m]]
            active = torch.zeros(self.n, dtype=torch.bool)
            active[keep] = True
            return self.q, active
        if self.keep_ratio is None or epoch == 0 or self.epoch == epoch or epoch % self.prune_every:
            return super()._end_of_epoch(epoch)
        q = self.q + self.eps
        m = max(1, int(round(self.pool_factor ** self._rounds(epoch) * self.n)))
        pool = torch.nonzero(self.active).flatten()
        keep = pool[torch.argsort(q[pool], descending=True, stable=True)[:m]]
        active = torch.zeros(self.n, dtype=torch.bool)
        active[keep] = True
        return q, active

    def _plan(self, epoch, g):
        self.q, self.active = self._end_of_epoch(epoch)
        pool = self.pool()
        if not self.equal_steps:
            return self._shuffle(pool, g), None
        reps = -(-self.n // len(pool))
        return torch.cat([self._shuffle(pool, g) for _ in range(reps)])[: self.n], None


# ---------------------------------------------------------------------------------------------------- method cards

def regime(epochs: int) -> dict:
    """[OnlineIS] §5 / Alg. 1: alpha = 0.3, epsilon = 1e-4 added to q each epoch, a uniform first epoch (the sampler's
    defaults)."""
    return dict(alpha=ALPHA, eps=EPS)


def prune_regime(epochs: int) -> dict:
    """[OnlineIS]'s online pruning with K = 4 (CIFAR)."""
    return dict(prune_K=K)


def prune_budget(r, epochs, profile) -> dict:
    """keep_ratio r with fewer steps per epoch, pruning rounds every quarter of the run."""
    return {"keep_ratio": r, "equal_steps": False, "prune_every": max(1, round(epochs / 4))}


METHODS = {
    # n draws per epoch: saves no backprops (share 1), its one run at its own budget
    "online_is": Method(OnlineIS, "online IS", "OnlineIS", own_budget=True, fixed={}, regime=regime, share=1.0,
                        run_fields=("batch_size",)),
    "online_prune": Method(OnlinePrune, "online pruning [OnlineIS]", "OnlineIS", budget=prune_budget, regime=prune_regime),
}
