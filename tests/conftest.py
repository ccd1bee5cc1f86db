import os
from pathlib import Path

# `make test` runs two pytest workers on two cores: one thread each (for torch, its OpenMP and MKL pools,
# and the notebook kernels that papermill starts, which inherit the environment). With two threads per
# worker, torch's parallel regions on tiny tensors stall while the other worker is busy (a 128 x 10 softmax
# took 3 ms instead of 25 us), which made the smoke notebooks several times slower.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root():
    return ROOT / "data"
