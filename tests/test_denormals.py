"""Denormals flushed to zero: the mode, its opt-out, and its record in every results row."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import torch
from seqbench import denormals
before = denormals.state()
state = denormals.flush()
tiny = torch.tensor([1e-39], dtype=torch.float32)  # a float32 denormal
print(before, state, float(tiny * 1.0), float(torch.tensor([1e-30]) * 1e-9))
"""


def _run(env_extra: dict) -> list[str]:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env,
                         check=True)
    return out.stdout.split()


def test_flush_turns_denormals_into_zeros():
    before, state, kept, product = _run({"SEQBENCH_DENORMALS": ""})
    if state == "n/a":
        pytest.skip("this CPU has no flush-to-zero mode")
    assert before == "keep" and state == "flush"
    assert float(kept) == 0.0 and float(product) == 0.0  # inputs and results below 1.18e-38


def test_keep_leaves_the_cpu_default():
    before, state, kept, product = _run({"SEQBENCH_DENORMALS": "keep"})
    assert state == "keep"
    assert float(kept) == pytest.approx(1e-39, rel=1e-3) and float(product) > 0


def test_a_run_records_the_mode(tmp_path):
    env = {**os.environ, "SEQBENCH_DENORMALS": ""}
    subprocess.run([sys.executable, "-m", "seqbench", "run", "--task", "adding", "-T", "5",
                    "--hidden", "4", "--steps", "2", "--eval-every", "1", "--out", str(tmp_path),
                    "-q"], env=env, check=True, capture_output=True)
    import csv

    with open(tmp_path / "runs.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["denormals"] in ("flush", "n/a")
