"""The plug-in example beyond the plain loop (examples/accelerate_infobatch.py, Hugging Face Accelerate)
runs on the CPU, in one process and under torchrun with two, and the sampler keeps its budget."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # `make test-fast` leaves these out

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "accelerate_infobatch.py"


def test_accelerate_example_one_and_two_processes(tmp_path):
    spec = importlib.util.spec_from_file_location("accelerate_infobatch", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    seen, acc = mod.main(["--epochs", "3"])
    n = 1200                                    # mnist1d, 1500 samples, 80% for training
    assert 0.6 * 3 * n < seen < 3 * n and acc > 0.15   # InfoBatch prunes (r = 0.5 of the below-mean), 10 classes
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2",
                          str(EXAMPLE), "--epochs", "3"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    two = int(out.stdout.split("infobatch: ")[1].split()[0])
    assert abs(two - seen) <= 3 * 2 * 64   # every rank its shard of one plan; the global batch doubles, so plans drift a little
