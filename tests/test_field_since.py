"""The field since the five papers: [RS2], [SeTa], [IES] and the class-balanced option of the global top-k selectors
(ours, after [RCAP]). Each fidelity test quotes the sentence of its paper (or states the official code's fact) it
enforces; then the protocol every sampler keeps: the budget, bad input refused before any state changes, bit-identical
resume, and a run through the engine."""
import collections

import pytest
import torch

from dynaprune import grids, regimes
from dynaprune.samplers import make_sampler
from dynaprune.samplers.base import class_budgets
from dynaprune.samplers.seta import loss_groups
from dynaprune.train import RunConfig, run

TOY = dict(dataset="toy2d", dataset_options={"n_train": 1000}, model="mlp", model_options={"hidden": [16]},
           batch_size=50, lr=0.05)


def _epoch(s, e, loss_of, b=40):
    """Score what the sampler asks for (the model after epoch e - 1: losses ``loss_of(idx, e - 1)``), plan epoch ``e``,
    feed every planned batch its losses ``loss_of(idx, e)``."""
    req = s.scoring_request(e)
    if req is not None:
        s.observe(req, loss_of(req, max(e - 1, 0)))
    s.set_epoch(e)
    for i in range(0, len(s.plan), b):
        idx = s.plan[i:i + b]
        s.reweight(idx, loss_of(idx, e))
    return s.plan.clone()


# ----------------------------------------------------------------------------- RS2

def test_rs2_draws_each_round_without_replacement_across_rounds():
    """[RS2] abstract: "we randomly sample the subset of training data for each epoch of model training"; its default
    samples without replacement across rounds: every sample is used once before any is used again. Over 10 rounds of
    k = 0.3 n (3 whole passes) every sample appears exactly 3 times, no round holds a sample twice (also where a round
    straddles two passes), and a round's plan depends on (seed, round) only."""
    n, r = 100, 0.3
    s = make_sampler("rs2", n, keep_ratio=r, seed=4)
    rounds = [_epoch(s, e, lambda i, e: torch.ones(len(i))) for e in range(10)]
    assert all(len(p) == 30 and len(set(p.tolist())) == 30 for p in rounds)
    counts = collections.Counter(torch.cat(rounds).tolist())
    assert set(counts.values()) == {3} and len(counts) == n
    pass1 = set(torch.cat(rounds[:3]).tolist())                 # pass 1: rounds 0-2 and 10 samples of round 3
    assert len(pass1) == 90 and set(range(n)) - pass1 <= set(rounds[3].tolist())
    fresh = make_sampler("rs2", n, keep_ratio=r, seed=4)
    fresh.set_epoch(7)
    assert sorted(fresh.plan.tolist()) == sorted(rounds[7].tolist())      # replanned from scratch: the same subset
    w = make_sampler("rs2", n, keep_ratio=r, replacement=True, seed=4)
    overlap = []
    for e in range(200):
        w.set_epoch(e)
        a = set(w.plan.tolist())
        w.set_epoch(e + 1)
        overlap.append(len(a & set(w.plan.tolist())))
    # with replacement, consecutive rounds are independent: overlap k^2 / n = 9 on average (sd ~ 2.1 per pair)
    assert 8.3 < sum(overlap) / len(overlap) < 9.7


# ----------------------------------------------------------------------------- IES

def test_ies_leaves_out_the_samples_whose_second_difference_stays_near_zero():
    """[IES] abstract: "IES considers an instance as mastered if the second-order differences of its loss value remain
    within a small range around zero", and mastered instances are excluded "from further backpropagation". The
    official code: |Δ²L| smoothed over 3 epochs, the last value compared with δ = 1e-3, so the first exclusion is at
    the sixth epoch; excluded samples are scored each epoch and return when their loss moves again.
    Here samples 0-49 lose loss linearly (Δ²L = 0: mastered, whatever the slope), 50-99 along a parabola
    (Δ²L = 0.02 every epoch: never), and sample 7's loss jumps at epoch 8."""
    n = 100
    def loss_of(i, e):
        lin = 2.0 - 0.1 * e + 0.0 * i
        par = 2.0 - 0.1 * e + 0.01 * e * e + 0.0 * i
        out = torch.where(i < 50, lin, par)
        return torch.where((i == 7) & torch.tensor(e >= 8), torch.full_like(out, 5.0), out)
    s = make_sampler("ies", n)
    sizes = [len(_epoch(s, e, loss_of)) for e in range(12)]
    assert sizes[:6] == [n] * 6 and sizes[6:8] == [50, 50]
    assert 7 in s.plan.tolist() and len(s.plan) == 51          # its loss moved: back in training
    assert set(torch.nonzero(s.excluded).flatten().tolist()) == set(range(50)) - {7}
    assert s.scoring_request(12).tolist() == sorted(set(range(50)) - {7})
    assert torch.all(s.weights == 1)
    with pytest.raises(ValueError, match="sets its own budget"):
        make_sampler("ies", n, keep_ratio=0.5)


def test_ies_threshold_zero_is_full_training():
    """The official code's baseline is `--threshold 0`: nothing is ever mastered (|Δ²L| < 0 never holds)."""
    s = make_sampler("ies", 50, threshold=0.0)
    assert [len(_epoch(s, e, lambda i, e: torch.ones(len(i)))) for e in range(8)] == [50] * 8


# ----------------------------------------------------------------------------- SeTa

def test_seta_prunes_at_random_groups_by_loss_and_slides_a_window_easy_to_hard():
    """[SeTa] abstract: "SeTa first performs random pruning to eliminate redundant samples, then clusters the remaining
    samples according to their learning difficulty measured by loss. Building upon this clustering, a sliding window
    strategy is employed to progressively remove both overly challenging and inefficient easy clusters following an
    easy-to-hard curriculum." The official code: int((1 - prune_ratio) n) at random, k-means on the losses into
    num_groups groups sorted by mean loss, round(num_groups * window_scale) consecutive groups from group
    t mod (num_groups - w + 1) at the t-th pruning epoch (all at t = 0), and "partial annealing" (a random
    int((1 - prune_ratio) n) of all samples) from delta * E on. Five well-separated loss bands, w = 4 of 5."""
    n, E = 1000, 8
    band = torch.arange(n) % 5                                  # sample i's loss band: 0 (easy) .. 4 (hard)
    s = make_sampler("seta", n, num_epochs=E, seed=2)
    for e in range(E):
        loss = lambda i, e: band[i].float() + 0.01 * (i % 7).float()
        plan = _epoch(s, e, loss)
        if e == 0:    # the 10% epoch 0 left out keep the initial score 3.0 (the official code's): give them theirs
            s.observe(torch.arange(n), loss(torch.arange(n), 0))
        if s.annealing(e):
            assert len(plan) == int(0.9 * n)
            assert set(band[plan].tolist()) == set(range(5))
        elif e == 0:
            assert len(plan) == int(0.9 * n)                    # all groups of the random subset
        else:
            start = e % 2                                       # 5 groups, window 4: starts 1, 0, 1, 0, ...
            assert set(band[plan].tolist()) == set(range(start, start + 4))
            assert len(plan) < int(0.9 * n)
        assert len(set(plan.tolist())) == len(plan) and torch.all(s.weights == 1)
    assert [s.annealing(e) for e in range(E)] == [False] * 7 + [True]   # epoch + 1 > 0.875 * 8 = 7
    with pytest.raises(ValueError, match="sets its own budget"):
        make_sampler("seta", n, num_epochs=E, keep_ratio=0.5)


def test_loss_groups_are_ordered_easy_to_hard_and_partition_the_subset():
    g = torch.Generator().manual_seed(0)
    scores = torch.cat([torch.rand(40, generator=g) + 3 * j for j in (2, 0, 1)])
    groups = loss_groups(scores, 3, seed=0)
    assert sorted(torch.cat(groups).tolist()) == list(range(120))
    means = [float(scores[gr].mean()) for gr in groups]
    assert means == sorted(means) and [len(gr) for gr in groups] == [40, 40, 40]
    assert [len(gr) for gr in loss_groups(torch.ones(10), 5, seed=0)] == [2] * 5   # equal scores: equal chunks


# ----------------------------------------------------------------------------- class-balanced (ours)

def test_class_balanced_selection_keeps_each_class_its_share_top_by_score_within_it():
    """Ours, after [RCAP]'s per-class budgets ("estimate the fraction of samples to be included in the training subset
    for each individual class", "prioritizes samples having high loss"): the budget k is split over the classes in
    proportion to their sizes, and [Raju]'s rule chooses within each class. A global top k on losses that favour one
    class takes that class only (the class cycling of notebook 04); the balanced one keeps every class."""
    n, k = 200, 40
    y = torch.arange(n) % 4
    y[:20] = 0                                                    # unequal classes: 65, 45, 45, 45
    loss = y.double() * 10 + torch.linspace(0, 1, n, dtype=torch.float64)
    budgets = class_budgets(y, k)
    assert int(budgets.sum()) == k and budgets.tolist() == [13, 9, 9, 9]
    for name, kw in (("uncertainty_ema", {}), ("ucb", {}), ("epsilon_greedy", {"epsilon": 0.0})):
        glob = make_sampler(name, n, keep_ratio=k / n, period=1, num_epochs=2, **kw)
        glob.observe(torch.arange(n), loss.float())
        glob.set_epoch(0)
        assert set(y[glob.plan].tolist()) == {3}
        s = make_sampler(name, n, keep_ratio=k / n, period=1, class_balanced=True, labels=y, num_epochs=2, **kw)
        s.observe(torch.arange(n), loss.float())
        s.set_epoch(0)
        assert torch.bincount(y[s.plan], minlength=4).tolist() == budgets.tolist()
        for c in range(4):
            mine = set(s.plan[y[s.plan] == c].tolist())
            in_c = torch.nonzero(y == c).flatten()
            assert mine == set(in_c[torch.topk(loss[in_c], int(budgets[c])).indices].tolist())
    el = make_sampler("el2n", n, scores=loss, keep_ratio=k / n, class_balanced=True, labels=y)
    el.set_epoch(0)
    assert torch.bincount(y[el.plan], minlength=4).tolist() == budgets.tolist()


def test_class_balanced_refuses_missing_or_bad_labels():
    with pytest.raises(ValueError, match="needs labels"):
        make_sampler("ucb", 10, class_balanced=True)
    with pytest.raises(ValueError, match="10 integer class ids"):
        make_sampler("ucb", 10, class_balanced=True, labels=torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="10 integer class ids"):
        make_sampler("el2n", 10, scores=torch.ones(10), class_balanced=True, labels=torch.zeros(10))


# ----------------------------------------------------------------------------- the protocol

def test_regimes_and_labels_of_the_newer_methods():
    assert regimes.regime("seta", 20) == dict(prune_ratio=0.1, num_groups=5, window_scale=0.9, delta=0.875)
    assert regimes.regime("ies", 20) == dict(threshold=1e-3) and regimes.regime("rs2", 20) == {}
    assert regimes.outside("seta", regimes.regime("seta", 20), 20) is None
    assert "window_scale = 0.5" in regimes.outside("seta", dict(window_scale=0.5), 20)
    assert "threshold 0.01" in regimes.outside("ies", dict(threshold=0.01), 20)
    assert {"seta", "ies"} <= set(grids.own_budget()) and "rs2" in grids.ratio_methods()
    assert grids.unreachable("seta", {"keep_ratio": 0.5}, 10) and grids.unreachable("ies", {"keep_ratio": 0.5}, 10)


@pytest.mark.parametrize("name,kw", [("rs2", dict(keep_ratio=0.3)), ("seta", {}), ("ies", dict(threshold=0.05)),
                                     ("ucb", dict(keep_ratio=0.3, period=1, class_balanced=True,
                                                  labels=torch.arange(200) % 5))])
def test_resume_is_bit_identical_and_bad_calls_change_nothing(name, kw):
    g = torch.Generator().manual_seed(0)
    table = torch.rand(8, 200, generator=g) * 2
    loss_of = lambda i, e: table[e][i]
    a = make_sampler(name, 200, num_epochs=8, seed=3, **kw)
    for e in range(3):
        _epoch(a, e, loss_of)
    state = a.state_dict()
    with pytest.raises(ValueError, match="NaN"):
        a.reweight(a.plan[:4], torch.tensor([1.0, float("nan"), 1.0, 1.0]))
    with pytest.raises(IndexError):
        a.reweight(torch.tensor([0, 1, 2, 200]), torch.ones(4))
    after = a.state_dict()
    same = lambda u, v: (torch.equal(u.nan_to_num(-7.0), v.nan_to_num(-7.0)) if isinstance(u, torch.Tensor) and
                         u.is_floating_point() else torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v)
    assert all(same(state[k], after[k]) for k in state if k != "_pending")
    b = make_sampler(name, 200, num_epochs=8, seed=3, **kw)
    b.load_state_dict(state)
    for e in range(3, 8):
        assert torch.equal(_epoch(a, e, loss_of), _epoch(b, e, loss_of))


@pytest.mark.parametrize("name,opts", [("seta", {}), ("ies", dict(threshold=0.05)),
                                       ("ucb", dict(keep_ratio=0.3, period=1, class_balanced=True)),
                                       ("el2n", dict(keep_ratio=0.3, class_balanced=True, score_models=1,
                                                     score_epochs=1))])
def test_the_engine_runs_them_and_measures_their_share(name, opts, tmp_path, monkeypatch):
    """Through `train.run`: the own-budget methods report the share they chose (SeTa about 0.9 x 0.8 while pruning,
    0.9 annealing; IES below 1 once samples are mastered, its scoring passes counted as forwards), a class-balanced
    selector meets its keep_ratio within 0.02 like every method."""
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    r = run(RunConfig(**TOY, epochs=10, eval_every=10, sampler=name, sampler_options=opts), use_cache=False)
    share = sum(x["backpropagated"] for x in r.records) / (1000 * 10)
    forwarded = sum(x["forwarded"] for x in r.records)
    if "keep_ratio" in opts:
        assert abs(share - opts["keep_ratio"]) <= 0.02
    elif name == "seta":
        assert 0.6 < share < 0.9
    else:
        assert share < 1.0 and forwarded > sum(x["backpropagated"] for x in r.records)
    assert r.records[-1]["test_acc"] > 0.5


# ----------------------------------------------------------------------------- RHO-LOSS

def test_rho_loss_trains_on_the_highest_reducible_holdout_loss_of_each_large_batch():
    """[RHO-LOSS] abstract: "Reducible Holdout Loss Selection (RHO-LOSS), a simple but principled technique which
    selects approximately those points for training that most reduce the model's generalization loss"; the official
    selection: the top n_b of the large batch by training loss minus irreducible loss, n_b / n_B = 0.1
    (`percent_train: 0.1`), weight 1. A high-loss point the IL model also finds hard (noise: not learnable) is passed
    over for a lower-loss point the IL model has learnt (learnable, not yet learnt)."""
    n = 100
    il = torch.zeros(n, dtype=torch.float64)
    il[:10] = 5.0                                   # 0-9: noisy, as hard for the IL model as for ours
    s = make_sampler("rho_loss", n, irreducible=il)
    assert s.ratio == 0.1 and s.meta_batch_size(10) == 100 and s.step_regime == "fewer_steps"
    s.set_epoch(0)
    idx = torch.arange(n)
    losses = torch.full((n,), 1.0)
    losses[:10] = 5.5                                # the highest training losses: the noisy points
    losses[10:20] = 2.0                              # learnable, not yet learnt: the highest reducible losses
    pos, w = s.select(idx, losses)
    assert set(idx[pos].tolist()) == set(range(10, 20)) and torch.all(w == 1)
    assert set(torch.topk(losses, 10).indices.tolist()) == set(range(10))   # a loss-greedy rule would take the noise


def test_rho_loss_counts_its_irreducible_loss_model_in_the_budget(tmp_path, monkeypatch):
    """The IL model's backprops (|H| x il_epochs) are part of the run's measured share, on its first epoch's record,
    and keep_ratio rho leaves rho minus that share to the selection (within 0.02 over the run, like every method); the
    held-out split is outside the validation split and the training set, and a run without room for one is refused."""
    from dynaprune.train import holdout_indices, split_indices
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path))
    base = RunConfig(**TOY, train_subset=800, val_size=100, epochs=10, eval_every=10, sampler="rho_loss")
    hold = holdout_indices(base, 80)
    train_idx, val_idx = split_indices(base)
    assert not set(hold.tolist()) & (set(train_idx.tolist()) | set(val_idx.tolist()))
    for k in (0.3, 0.5):
        r = run(base.replace(sampler_options={"keep_ratio": k}), use_cache=False)
        assert r.records[0]["static_backpropagated"] == 80 * 10
        share = sum(x["backpropagated"] for x in r.records) / (800 * 10)
        assert abs(share - k) <= 0.02, (k, share)
    with pytest.raises(ValueError, match="out of RHO-LOSS's reach"):
        make_sampler("rho_loss", 800, irreducible=torch.zeros(800), keep_ratio=0.1, static_backprops=800 * 10,
                     num_epochs=10)
    with pytest.raises(ValueError, match="held-out split"):
        run(base.replace(train_subset=None), use_cache=False)
    with pytest.raises(ValueError, match="irreducible losses must have shape"):
        make_sampler("rho_loss", 10, irreducible=torch.zeros(9))
    assert regimes.outside("rho_loss", {"keep_ratio": 0.2}, 20) is None
    assert "n_b / n_B = 0.4" in regimes.outside("rho_loss", {"keep_ratio": 0.5}, 20)


def test_every_profiles_rho_loss_cell_leaves_its_held_out_split_in_the_pool():
    """Each profile that runs [RHO-LOSS] on its curves builds a config whose IL model has its default holdout (a tenth
    of the training set, `rho_loss.il_setup`) outside the validation split and the training set: v3's full
    Fashion-MNIST runs train on 50,000 of the 55,000 the validation split leaves (``method_base``), so the IL model
    holds out the other 5,000, and the other methods still train on all 55,000."""
    from dynaprune.profiles import PROFILES
    from dynaprune.samplers.rho_loss import il_setup
    from dynaprune.train import holdout_indices, split_indices
    checked = set()
    for name, P in PROFILES.items():
        if "rho_loss" not in P.get("curves", {}).get("methods", []) or P["base"]["device"] != "cpu":
            continue
        c = grids.fair_config(name, "rho_loss", 0.2)
        train_idx, val_idx = split_indices(c)
        size, _ = il_setup(len(train_idx), c.epochs)
        hold = holdout_indices(c, size)
        assert len(hold) == size > 0
        assert not set(hold.tolist()) & (set(train_idx.tolist()) | set(val_idx.tolist()))
        checked.add(name)
    assert {"quick", "v3"} <= checked
    v3 = grids.fair_config("v3", "rho_loss", 0.2)
    assert v3.train_subset == 50_000 and len(split_indices(v3)[0]) == 50_000
    assert grids.fair_config("v3", "random", 0.2).train_subset is None       # the others keep the whole pool
    assert grids.side_config("v3", "rho_loss").train_subset == 20_000        # a side setting's subset wins


def test_rho_loss_resume_is_bit_identical():
    il = torch.rand(200, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(0)
    table = torch.rand(6, 200, generator=g)

    def epoch(s, e):
        s.set_epoch(e)
        order, out = torch.tensor(list(iter(s))), []
        B = s.meta_batch_size(10)
        for i in range(0, len(order), B):
            idx = order[i:i + B]
            pos, _ = s.select(idx, table[e][idx])
            s.reweight(idx[pos], table[e][idx[pos]])
            out.append(idx[pos])
        return torch.cat(out)
    a = make_sampler("rho_loss", 200, irreducible=il, seed=2)
    for e in range(2):
        epoch(a, e)
    b = make_sampler("rho_loss", 200, irreducible=il, seed=2)
    b.load_state_dict(a.state_dict())
    for e in range(2, 6):
        assert torch.equal(epoch(a, e), epoch(b, e))
