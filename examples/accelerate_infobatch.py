"""InfoBatch (or any dynaprune sampler) in a Hugging Face Accelerate loop, in three added lines.

    python examples/accelerate_infobatch.py [--sampler infobatch] [--epochs 3]
    torchrun --standalone --nproc_per_node=2 examples/accelerate_infobatch.py   # two processes (gloo on a CPU)

Accelerate handles the device, mixed precision and the distributed wrapper of the model. The loader is
*not* passed to ``accelerator.prepare``: under several processes the sampler shards its own plan
(every rank plans the same epoch from the shared statistics), so Accelerate must not shard it again.
"""
import argparse

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader

from dynaprune.data import IndexedDataset, load_dataset
from dynaprune.models import build_model
from dynaprune.samplers import make_sampler


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sampler", default="infobatch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--samples", type=int, default=1500)
    a = ap.parse_args(argv)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    ds = load_dataset("mnist1d", num_samples=a.samples)
    model = build_model("mlp", ds.input_shape, ds.output_dim, seed=0, hidden=[64, 64])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model, opt = accelerator.prepare(model, opt)

    sampler = make_sampler(a.sampler, ds.n, num_epochs=a.epochs, seed=0)          # 1: the sampler
    loader = DataLoader(IndexedDataset(ds.x_train, ds.y_train), batch_size=64, sampler=sampler)
    seen = 0
    for epoch in range(a.epochs):
        sampler.set_epoch(epoch)                                                  # 2: plan the epoch
        for xb, yb, idx in loader:
            xb, yb = xb.to(accelerator.device), yb.to(accelerator.device)
            losses = F.cross_entropy(model(xb), yb, reduction="none")
            loss = sampler.reweight(idx, losses)                                  # 3: weights + statistics
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad()
            seen += len(idx)
    seen = int(accelerator.reduce(torch.tensor(seen, device=accelerator.device), reduction="sum"))   # all ranks
    model.eval()
    with torch.no_grad():
        acc = (model(ds.x_test.to(accelerator.device)).argmax(1).cpu() == ds.y_test).float().mean().item()
    accelerator.print(f"{a.sampler}: {seen} samples backpropagated of {a.epochs * ds.n} ({seen / (a.epochs * ds.n):.2f}), "
                      f"test accuracy {acc:.3f}")
    # Free the wrapped model while Python is alive, then destroy the process group: left to interpreter exit,
    # a gloo rank can abort ("terminate called without an active exception").
    model, opt = accelerator.free_memory(model, opt)
    accelerator.end_training()
    return seen, acc


if __name__ == "__main__":
    main()
