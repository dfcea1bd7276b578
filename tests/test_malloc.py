"""seqbench.malloc: large tensors are reused from the heap instead of being page-faulted anew."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from seqbench import malloc

glibc_only = pytest.mark.skipif(malloc._libc() is None, reason="needs glibc")

# In a fresh process: training steps of the built-in LSTM (oneDNN allocates its workspaces at every
# call) at a length whose (T, B, H) tensors pass glibc's 32 MiB mmap ceiling; the page faults of
# the last two of five steps, in 4 KiB pages.
FAULTS = """
import json, resource, sys, torch
from seqbench import malloc
from seqbench.bench import train_step_fn
from seqbench.cells import CellConfig
from seqbench.model import build_model
from seqbench.tasks import make_task
if sys.argv[1] == "tune":
    malloc.tune()
torch.set_num_threads(1)
task = make_task("adding")
model = build_model(task, CellConfig(cell="lstm", impl="builtin"), 0)
batch = task.sample(1100, 64, torch.Generator().manual_seed(0))
step = train_step_fn(model, torch.optim.Adam(model.parameters()), task, batch, 1100)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step(); step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"faults": faults, "state": malloc.state()}))
"""
#: one (T, B, H) float32 tensor of those steps, in 4 KiB pages
PAGES = 1100 * 64 * 128 * 4 // 4096


def _faults(mode: str, env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                         check=True, env={**os.environ, **(env or {})})
    return json.loads(out.stdout)


@glibc_only
def test_tuned_process_reuses_large_blocks():
    plain = _faults("plain")
    # measured: 39 x PAGES untuned; tuned 0, or now and then one block (glibc's aligned
    # allocation cannot always fit a request into the block just freed), and once in a CI run
    # 5 blocks: the best of up to three fresh processes measures reuse, not one placement
    for _ in range(3):
        tuned = _faults("tune")
        if tuned["faults"] <= 2 * PAGES:
            break
    assert plain["state"] == "default" and tuned["state"] == "tuned"
    assert plain["faults"] >= 10 * PAGES  # large blocks mapped and faulted anew at every step
    assert tuned["faults"] <= 2 * PAGES  # freed blocks are taken again


@glibc_only
def test_environment_opt_out():
    opted = _faults("tune", {malloc.ENV: "default"})
    assert opted["state"] == "default"
    assert opted["faults"] >= 10 * PAGES


@glibc_only
def test_cli_run_records_tuned_malloc(tmp_path):
    subprocess.run([sys.executable, "-m", "seqbench", "run", "--task", "adding", "--cell", "rnn",
                    "--seq-len", "5", "--hidden", "8", "--steps", "2", "--eval-size", "16",
                    "--out", str(tmp_path), "--quiet"], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": os.getcwd()})
    import pandas as pd

    assert pd.read_csv(tmp_path / "runs.csv")["malloc"].tolist() == ["tuned"]
