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


@pytest.fixture(scope="session")
def smoke_notebook(tmp_path_factory):
    """``executed(stem) -> (executed notebook, its figures folder)``: each notebook run for the smoke profile by `make
    book`'s code path (`dynaprune.book.execute`) once per test session, whichever tests and xdist workers ask for it
    (a file lock per notebook in the session's shared folder), on one results cache shared by the notebooks as the
    study shares it."""
    from filelock import FileLock

    from dynaprune import book
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "smoke-notebooks"
    shared.mkdir(parents=True, exist_ok=True)

    def executed(stem: str):
        out = shared / stem
        done = out / "executed" / f"{stem}.ipynb"
        with FileLock(str(shared / f"{stem}.lock")):
            if not done.exists():
                old = os.environ.get("DYNAPRUNE_RESULTS")
                os.environ["DYNAPRUNE_RESULTS"] = str(shared / "results")
                try:
                    assert [p.name for p in book.execute("smoke", out, only=[stem])] == [done.name]
                finally:
                    if old is None:
                        os.environ.pop("DYNAPRUNE_RESULTS")
                    else:
                        os.environ["DYNAPRUNE_RESULTS"] = old
        return done, out / "figures"
    return executed
