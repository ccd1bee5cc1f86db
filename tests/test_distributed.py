"""Two CPU processes (gloo): every rank plans the same epoch, takes an equal-length shard, and every
rank's statistics equal those of one process fed with all ranks' batches."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dynaprune.samplers import make_sampler

N, B, EPOCHS = 203, 16, 3  # N not divisible by the world size: shards are padded


def fake(idx, epoch, C=5):
    idx = torch.as_tensor(idx)
    loss = ((idx * 7919 + epoch * 13) % 101).double() / 50 + 0.01
    logits = torch.stack([((idx * (k + 3) + epoch) % 17).double() / 4 for k in range(C)], 1).float()
    return loss.float(), logits, idx % C


def drive(s, epoch, batches_out):
    s.set_epoch(epoch)
    order = list(iter(s))
    for i in range(0, len(order), B):
        idx = torch.tensor(order[i:i + B])
        l, z, y = fake(idx, epoch)
        if s.level == "batch":
            pos, _ = s.select(idx, l, logits=z, targets=y)
            batches_out.append(idx.clone())
            idx = idx[pos]
            l, z, y = fake(idx, epoch)
        else:
            batches_out.append(idx.clone())
        s.reweight(idx, l, logits=z, targets=y)
    return order


def worker(rank, world, path, name):
    dist.init_process_group("gloo", init_method=f"file://{path}/init", rank=rank, world_size=world)
    s = make_sampler(name, N, num_epochs=EPOCHS, seed=3)
    shards, plans, batches = [], [], []
    for e in range(EPOCHS):
        shards.append(drive(s, e, batches))
        plans.append(s.plan.clone())
    torch.save(dict(shards=shards, plans=plans, batches=batches, state=s.state_dict()), f"{path}/rank{rank}.pt")
    dist.destroy_process_group()


STATE = {"infobatch": lambda st: st["scores"], "omission": lambda st: st["score"]["S"], "es": lambda st: st["s"]}


@pytest.mark.parametrize("name", ["infobatch", "omission", "es"])
def test_two_ranks_match_one_process(tmp_path, name):
    mp.start_processes(worker, args=(2, str(tmp_path), name), nprocs=2, join=True, start_method="spawn")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for e in range(EPOCHS):
        assert torch.equal(r0["plans"][e], r1["plans"][e])                    # same plan on every rank
        assert len(r0["shards"][e]) == len(r1["shards"][e])                   # equal lengths: no hang
        assert set(r0["shards"][e]) | set(r1["shards"][e]) == set(r0["plans"][e].tolist())
    torch.testing.assert_close(STATE[name](r0["state"]), STATE[name](r1["state"]), rtol=0, atol=0)
    # one process fed, step by step, with the concatenation of both ranks' batches
    single = make_sampler(name, N, num_epochs=EPOCHS, seed=3)
    k = 0
    for e in range(EPOCHS):
        single.set_epoch(e)
        assert torch.equal(single.plan, r0["plans"][e])
        steps = len(r0["shards"][e]) // B + (len(r0["shards"][e]) % B > 0)
        for _ in range(steps):
            idx = torch.cat([r0["batches"][k], r1["batches"][k]])
            k += 1
            l, z, y = fake(idx, e)
            if single.level == "batch":
                pos, _ = single.select(idx, l, logits=z, targets=y)
                idx = idx[pos]
                l, z, y = fake(idx, e)
            single.reweight(idx, l, logits=z, targets=y)
    torch.testing.assert_close(STATE[name](single.state_dict()), STATE[name](r0["state"]))
