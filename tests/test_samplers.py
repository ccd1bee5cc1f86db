"""Defining behaviour of every sampler (issue: samplers); Monte Carlo tolerances are stated."""
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dynaprune.data import IndexedDataset
from dynaprune.samplers import SAMPLERS, make_sampler
from dynaprune.theory import infobatch_keep_count, optimal_bernoulli_probs, smoothed_probs

N = 200


def fake_stats(n, seed=0, C=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, C, generator=g) * 2
    targets = torch.randint(0, C, (n,), generator=g)
    losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    return losses, logits, targets


def make(name, n=N, **kw):
    if name in ("el2n", "forgetting"):
        kw.setdefault("scores", torch.linspace(0, 1, n))
    if name == "rho_loss":
        kw.setdefault("irreducible", torch.linspace(0, 1, n))
    kw.setdefault("num_epochs", 8)
    return make_sampler(name, n, **kw)


def run_epoch(s, epoch, b=20, stats=None):
    """Drive one epoch with fixed per-sample statistics; return [(indices, weights), ...]."""
    losses, logits, targets = stats or fake_stats(s.n)
    req = s.scoring_request(epoch)
    if req is not None:
        s.observe(req, losses[req], logits=logits[req], targets=targets[req])
    s.set_epoch(epoch)
    order = torch.tensor(list(iter(s)), dtype=torch.long)
    steps, pos0 = [], 0
    B = s.meta_batch_size(b) if s.level == "batch" else b
    while pos0 < len(order):
        idx = order[pos0:pos0 + B]
        pos0 += B
        if s.level == "batch":
            pos, w = s.select(idx, losses[idx], logits=logits[idx], targets=targets[idx])
            idx = idx[pos]
            out = s.reweight(idx, losses[idx], logits=logits[idx], targets=targets[idx])
            steps.append((idx, w))
        else:
            out = s.reweight(idx, losses[idx], logits=logits[idx], targets=targets[idx])
            steps.append((idx, s.weights[idx].clone()))
        assert torch.isfinite(out)
    return steps


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_runs_protocol_and_len_is_exact(name):
    s = make(name)
    for e in range(3):
        steps = run_epoch(s, e)
        if s.level != "batch":
            assert sum(len(i) for i, _ in steps) == len(s)
        for idx, w in steps:
            assert (idx >= 0).all() and (idx < N).all() and torch.isfinite(w).all() and (w > 0).all()


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="known: full, random, uncertainty_ema, epsilon_greedy, ucb"):
        make_sampler("nope", 10)


@pytest.mark.parametrize("E", range(1, 21))
def test_infobatch_annealing_for_any_num_epochs(E):
    s = make_sampler("infobatch", N, num_epochs=E)
    losses, _, _ = fake_stats(N)
    for e in range(E):
        s.set_epoch(e)
        s.reweight(torch.arange(N), losses)
        if e >= 0.875 * E:
            assert len(s) == N and torch.all(s.weights == 1)


def test_infobatch_keeps_above_mean_and_weights_below():
    s = make_sampler("infobatch", N, num_epochs=10, r=0.5)
    s.set_epoch(0)
    assert len(s) == N  # equal initial scores: nothing pruned
    losses, _, _ = fake_stats(N)
    s.reweight(torch.arange(N), losses)
    s.set_epoch(1)
    plan = set(s.plan.tolist())
    well = torch.nonzero(losses.double() < losses.double().mean()).flatten().tolist()
    above = set(range(N)) - set(well)
    assert above <= plan
    kept_well = plan & set(well)
    assert len(kept_well) == infobatch_keep_count(len(well), 0.5) == int(0.5 * len(well))
    assert all(s.weights[i] == 2.0 for i in kept_well) and all(s.weights[i] == 1.0 for i in above)
    assert len(plan) == len(s.plan)  # no duplicates


def test_infobatch_unbiased_option_is_unbiased():
    losses, _, _ = fake_stats(N)
    s = make_sampler("infobatch", N, num_epochs=10, r=0.5, unbiased=True, seed=3)
    s.set_epoch(0)
    s.reweight(torch.arange(N), losses)
    vals = []
    for t in range(3000):  # replanning epoch 1 with different seeds = independent plans
        s.seed = t
        s.set_epoch(1)
        vals.append(float((s.weights[s.plan] * losses[s.plan].double()).mean()))
    vals = np.array(vals)
    assert abs(vals.mean() - losses.double().mean().item()) < 4 * vals.std() / math.sqrt(len(vals))
    s.unbiased = False  # InfoBatch's own weights: the step mean is scaled by about 1/rho
    biased = []
    for t in range(300):
        s.seed = t
        s.set_epoch(1)
        biased.append(float((s.weights[s.plan] * losses[s.plan].double()).mean()))
    assert np.mean(biased) > losses.double().mean().item() * 1.05


def test_ucb_ranks_by_ema_plus_c_var():
    s = make_sampler("ucb", N, keep_ratio=0.3, period=1, c=2.0, alpha=0.8)
    l1, _, _ = fake_stats(N, 1)
    l2, _, _ = fake_stats(N, 2)
    s.observe(torch.arange(N), l1); s.set_epoch(0)
    assert set(s.plan.tolist()) == set(torch.topk(l1.double(), 60).indices.tolist())
    s.observe(torch.arange(N), l2); s.set_epoch(1)
    ema = 0.8 * l2.double() + 0.2 * l1.double()
    var = 0.8 * (l2.double() - l1.double()) ** 2
    assert set(s.plan.tolist()) == set(torch.topk(ema + 2.0 * var, 60).indices.tolist())


def test_checkpoint_without_scoring_is_refused():
    s = make_sampler("uncertainty_ema", N)
    with pytest.raises(RuntimeError, match="scoring_request"):
        s.set_epoch(0)
    assert s.epoch == -1


def test_epsilon_greedy_split():
    s = make_sampler("epsilon_greedy", N, keep_ratio=0.5, epsilon=0.2, period=1)
    l, _, _ = fake_stats(N)
    s.observe(torch.arange(N), l); s.set_epoch(0)
    top = set(torch.topk(l.double(), 80).indices.tolist())
    assert len(s.plan) == 100 and top <= set(s.plan.tolist())


def test_es_probabilities_follow_eq_2_5():
    s = make_sampler("es", N, num_epochs=100, ratio=1 / 8, seed=0)
    s.set_epoch(50)  # not an annealing epoch
    idx = torch.arange(8)
    l = torch.tensor([0.1, 0.5, 1.0, 2.0, 0.2, 0.3, 3.0, 0.05])
    counts = torch.zeros(8)
    T = 6000
    for _ in range(T):
        s.s[idx] = 0.5  # fixed score so every draw has the same w
        pos, w = s.select(idx, l)
        counts[pos] += 1
        assert torch.all(w == 1)
    wv = 0.2 * 0.5 + 0.8 * l.double()
    p = wv / wv.sum()
    se = torch.sqrt(p * (1 - p) / T)
    assert ((counts / T - p).abs() / se).max() < 4.5
    s.s[idx] = 0.5
    s.select(idx, l)
    torch.testing.assert_close(s.s[idx], 0.9 * 0.5 + 0.1 * l.double())
    s.set_epoch(0)  # annealing: the whole meta-batch
    pos, _ = s.select(idx, l)
    assert len(pos) == 8


def test_omission_probabilities_and_unbiased_steps():
    losses, logits, targets = fake_stats(N)
    s = make_sampler("omission", N, keep_ratio=0.4, seed=0)
    s.set_epoch(0)
    for i in range(0, N, 20):  # observe everything once
        sl = slice(i, i + 20)
        s.reweight(torch.arange(N)[sl], losses[sl], logits=logits[sl], targets=targets[sl])
    s.set_epoch(1)
    S = s.tracker.scores()  # bias-corrected EMA (the default)
    expected = optimal_bernoulli_probs(torch.sqrt(0.9 * S + 0.1 * S.mean()), 0.4 * N)
    torch.testing.assert_close(s.probs, expected)
    torch.testing.assert_close(s.probs, smoothed_probs(S, 0.4 * N, 0.1))
    # ratio of expectations: E[sum_kept w l] / E[|kept|] = mean loss  ([Omission] eq. 4 with w = rho/p)
    tot, cnt = [], []
    l = losses.double()
    for t in range(4000):
        s.seed = t
        s.set_epoch(1)
        tot.append(float((s.weights[s.plan] * l[s.plan]).sum()))
        cnt.append(len(s.plan))
    tot = np.array(tot)
    assert abs(tot.mean() / (0.4 * N) - l.mean().item()) < 4 * tot.std() / math.sqrt(len(tot)) / (0.4 * N)
    assert abs(np.mean(cnt) - 0.4 * N) < 4 * np.std(cnt) / math.sqrt(len(cnt))


def test_omission_fixed_size_exact_count_and_inclusion():
    s = make_sampler("omission", N, keep_ratio=0.25, fixed_size=True)
    s.tracker.S = torch.linspace(0.01, 5, N, dtype=torch.float64) ** 2
    counts = torch.zeros(N)
    T = 3000
    for t in range(T):
        s.seed = t
        s.set_epoch(0)
        assert len(s) == 50
        counts[s.plan] += 1
    se = torch.sqrt(s.probs * (1 - s.probs) / T).clamp_min(1e-3)
    assert ((counts / T - s.probs).abs() / se).max() < 5


def test_omission_batch_step_unbiased():
    losses, logits, targets = fake_stats(16)
    s = make_sampler("omission_batch", 16, ratio=0.5)
    s.tracker.S = torch.rand(16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    s.set_epoch(0)
    idx = torch.arange(16)
    vals = []
    for _ in range(6000):
        pos, w = s.select(idx)  # historical: no losses needed
        vals.append(float((w * losses[pos].double()).mean()))
        s._pending = None
    vals = np.array(vals)
    assert abs(vals.mean() - losses.double().mean().item()) < 4 * vals.std() / math.sqrt(len(vals))


@pytest.mark.parametrize("name", ["weighted_replacement", "loss_is", "extra_forward_bernoulli", "historical_replacement"])
def test_batch_level_unbiased_methods(name):
    losses, logits, targets = fake_stats(12, seed=4)
    s = make_sampler(name, 12)
    s.set_epoch(0)
    if name == "historical_replacement":
        s.tracker.S = torch.rand(12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    idx = torch.arange(12)
    vals = []
    for _ in range(6000):
        pos, w = s.select(idx, losses, logits=logits, targets=targets)
        vals.append(float((w * losses[pos].double()).mean()))
        s._pending = None
    vals = np.array(vals)
    assert abs(vals.mean() - losses.double().mean().item()) < 4 * vals.std() / math.sqrt(len(vals))


def test_online_is_samples_proportional_to_q():
    losses, logits, targets = fake_stats(50)
    s = make_sampler("online_is", 50, batch_size=10, alpha=0.0, eps=0.0)
    s.set_epoch(0)
    assert sorted(s) == list(range(50))  # initialisation epoch: each sample once
    for i in range(0, 50, 10):
        sl = slice(i, i + 10)
        s.reweight(torch.arange(50)[sl], losses[sl], logits=logits[sl], targets=targets[sl])
    q = s.q.clone()
    s.set_epoch(1)
    p = q / q.sum()
    counts = torch.zeros(50)
    it = iter(s)
    draws = [next(it) for _ in range(10)]
    idx = torch.tensor(draws)
    torch.testing.assert_close(s.weights[idx], 1 / (50 * p[idx]))
    g = torch.Generator().manual_seed(0)
    T = 20000
    s.gen = g
    for _ in range(T // 50):
        s.set_epoch(1)
        for i in iter(s):
            counts[i] += 1  # q unchanged: no reweight in between
    se = torch.sqrt(p * (1 - p) / counts.sum())
    assert ((counts / counts.sum() - p).abs() / se).max() < 4.5


def test_online_prune_threshold():
    s = make_sampler("online_prune", 10, prune_K=2.0, prune_every=1, eps=0.0, metric="loss", alpha=0.0)
    s.set_epoch(0)
    l = torch.tensor([0.01, 0.02, 1, 1, 1, 1, 1, 1, 1, 1.0])
    s.reweight(torch.arange(10), l)
    s.set_epoch(1)
    thr = l.double().sum() / (2 * 10)
    assert set(s.plan.tolist()) == set(torch.nonzero(l.double() > thr).flatten().tolist()) == set(range(2, 10))


def test_kakurenbo_hides_only_confident_correct_low_loss():
    """KAKURENBO hides the lowest-loss samples but the mispredicted and the unconfident, and by default (the public
    code's rule) scales the learning rate by 1 / (1 - F_e) of the epoch's scheduled fraction; ``lr_rule="realised"``
    (ours) by 1 / (1 - the share actually hidden)."""
    n = 10
    realised = make_sampler("kakurenbo", n, num_epochs=4, max_fraction=0.5, lr_rule="realised")
    s = make_sampler("kakurenbo", n, num_epochs=4, max_fraction=0.5)
    assert s.lr_rule == "scheduled"
    logits = torch.tensor([[5.0, 0]] * 3 + [[0.3, 0]] + [[0, 5.0]] + [[0, 0.1]] * 5)
    targets = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    s.set_epoch(0)
    s.reweight(torch.arange(n), losses, logits=logits, targets=targets)
    s.set_epoch(1)
    # 5 lowest losses: 0,1,2 (confident, correct) + 3 (correct, conf < 0.7) + one of 5..9 (conf < 0.7)
    assert set(torch.nonzero(s.hidden).flatten().tolist()) == {0, 1, 2}
    assert s.lr_scale == pytest.approx(1 / (1 - 0.8 * 0.5))    # F_1 = 0.8 F: epoch 1 is the second quarter of 4
    assert s.scoring_request(2).tolist() == [0, 1, 2]
    realised.set_epoch(0)
    realised.reweight(torch.arange(n), losses, logits=logits, targets=targets)
    realised.set_epoch(1)
    assert torch.equal(realised.hidden, s.hidden) and realised.lr_scale == pytest.approx(1 / 0.7)


@pytest.mark.parametrize("name", ["infobatch", "omission", "random", "ucb", "es", "eswp", "online_is",
                                  "omission_batch", "selective_backprop", "kakurenbo", "online_prune"])
def test_resume_is_bit_identical(name):
    kw = dict(period=1) if name == "ucb" else {}
    a = make(name, **kw)
    for e in range(2):
        run_epoch(a, e, stats=fake_stats(N, e))
    state = a.state_dict()
    b = make(name, **kw)
    b.load_state_dict(state)
    for e in range(2, 5):
        ra, rb = run_epoch(a, e, stats=fake_stats(N, e)), run_epoch(b, e, stats=fake_stats(N, e))
        assert len(ra) == len(rb)
        for (ia, wa), (ib, wb) in zip(ra, rb):
            assert torch.equal(ia, ib) and torch.equal(wa, wb)


def test_same_seed_same_selection_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    np_before = np.random.get_state()[1].copy()
    r1 = run_epoch(make("omission", seed=5), 0)
    r2 = run_epoch(make("omission", seed=5), 0)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(r1, r2))
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], np_before)


@pytest.mark.parametrize("kw", [dict(keep_ratio=0.0), dict(keep_ratio=1.5)])
def test_bad_ratios(kw):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        make_sampler("random", 10, **kw)


def test_bad_calls_leave_state_unchanged():
    s = make("infobatch")
    run_epoch(s, 0)
    before = s.state_dict()
    losses = torch.rand(4)
    with pytest.raises(ValueError, match="per-sample"):
        s.reweight(torch.arange(4), losses.mean())
    with pytest.raises(ValueError, match="NaN"):
        s.reweight(torch.arange(4), torch.tensor([1.0, float("nan"), 1.0, 1.0]))
    with pytest.raises(IndexError):
        s.reweight(torch.tensor([0, 1, 2, N]), losses)
    with pytest.raises(TypeError, match="select"):
        s.select(torch.arange(4), losses)
    after = s.state_dict()
    assert torch.equal(before["scores"], after["scores"]) and torch.equal(before["plan"], after["plan"])
    fresh = make("random")
    with pytest.raises(RuntimeError, match="set_epoch"):
        iter(fresh).__next__()
    o = make("omission")
    o.set_epoch(0)
    with pytest.raises(ValueError, match="logits"):
        o.reweight(torch.arange(4), losses)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_losses_and_logits_refused_huge_finite_accepted(bad):
    """The per-step finiteness check (a float64 sum, exact fallback when that sum overflows) refuses
    every NaN or inf in losses or logits, and accepts finite float64 values whose sum overflows."""
    o = make("omission")
    o.set_epoch(0)
    y = torch.zeros(4, dtype=torch.long)
    z = torch.zeros(4, 3)
    lo = torch.tensor([1.0, bad, 1.0, 1.0])
    with pytest.raises(ValueError, match="losses contain NaN"):
        o.reweight(torch.arange(4), lo, logits=z, targets=y)
    zb = z.clone()
    zb[2, 1] = bad
    with pytest.raises(ValueError, match="logits contain NaN"):
        o.reweight(torch.arange(4), torch.ones(4), logits=zb, targets=y)
    assert int(o.tracker.visits.sum()) == 0                      # nothing recorded
    huge = torch.full((4,), 1e308, dtype=torch.float64)          # sum overflows, every value is finite
    o.reweight(torch.arange(4), huge, logits=z, targets=y)
    assert int(o.tracker.visits.sum()) == 4


@pytest.mark.slow
def test_three_lines_with_a_dataloader_with_workers():
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    sampler = make_sampler("infobatch", 64, num_epochs=4)
    # spawn: forking a process that has imported JAX (another test in this worker) can deadlock
    loader = DataLoader(IndexedDataset(x, y), batch_size=16, sampler=sampler, num_workers=2, pin_memory=False,
                        persistent_workers=False, multiprocessing_context="spawn")
    model = torch.nn.Linear(3, 2)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen = []
        for xb, yb, idx in loader:
            loss = sampler.reweight(idx, torch.nn.functional.cross_entropy(model(xb), yb, reduction="none"))
            loss.backward()
            seen += idx.tolist()
        assert seen == sampler.plan.tolist() and len(seen) == len(sampler)


def test_random_with_always_set():
    s = make_sampler("random", 100, keep_ratio=0.3, always=range(10))
    for e in range(3):
        s.set_epoch(e)
        assert len(s) == 30 and set(range(10)) <= set(s.plan.tolist())


def test_sum_tree_matches_its_weights():
    from dynaprune.samplers.online_is import SumTree
    g = torch.Generator().manual_seed(0)
    w = torch.rand(37, generator=g, dtype=torch.float64)
    w[[3, 10]] = 0.0
    t = SumTree(w)
    assert abs(t.total - float(w.sum())) < 1e-12
    w[5], w[20] = 4.0, 0.0
    t.update(torch.tensor([5, 20]), torch.tensor([4.0, 0.0]))
    assert abs(t.total - float(w.sum())) < 1e-12
    idx, p = t.sample(200_000, g)
    torch.testing.assert_close(p, w[idx] / w.sum())
    freq = torch.bincount(idx, minlength=37).double() / len(idx)
    pw = w / w.sum()
    assert freq[[3, 10, 20]].sum() == 0
    assert ((freq - pw).abs() / torch.sqrt(pw * (1 - pw) / len(idx)).clamp_min(1e-9)).max() < 4.5


def test_sum_tree_draws_equal_a_full_descent():
    """The searchsorted top of `SumTree.draw` lands where a draw descending from the root (right when
    u >= the left child's sum) lands, before and after updates, zero weights and padding included."""
    import numpy as np
    from dynaprune.samplers.online_is import SumTree

    def descend(tree, r):
        t = tree.tree.numpy()
        u = r * t[1] * (1 - 1e-12)
        node = np.ones(len(r), dtype=np.int64)
        for _ in range(tree.depth):
            node <<= 1
            left = t[node]
            right = u >= left
            u -= left * right
            node += right
        return node - tree.size

    g = torch.Generator().manual_seed(0)
    for n in (1, 37, 5000, 70_001):
        w = torch.rand(n, generator=g, dtype=torch.float64) ** 4
        w[::7] = 0.0
        w[0] = 1.0
        tree = SumTree(w)
        assert tree.depth - tree.top == max(0, tree.depth - SumTree.TOP)
        for step in range(60):
            r = torch.rand(256, generator=g, dtype=torch.float64).numpy()
            idx, p = tree.draw(r.copy())
            assert np.array_equal(idx.numpy(), descend(tree, r))
            assert (w[idx] > 0).all() and idx.max() < n
            torch.testing.assert_close(p, w[idx] / w.sum(), rtol=1e-9, atol=0)
            i = torch.randint(0, n, (64,), generator=g)
            v = torch.rand(64, generator=g, dtype=torch.float64) * (torch.rand(64, generator=g) > 0.3)
            v[i == 0] = 1.0   # keep the total positive
            w[i] = v
            tree.update(i, v)
