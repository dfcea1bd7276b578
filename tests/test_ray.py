"""The Ray executor, for real: a local Ray instance (ray.init(num_cpus=2)) runs a tiny sweep."""

from __future__ import annotations

import csv

import pytest

from seqbench.cells import CellConfig
from seqbench.config import RunConfig
from seqbench.sweep import run_sweep

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield
    ray.shutdown()


def test_ray_sweep_writes_rows_and_run_folders(tmp_path, local_ray):
    out = tmp_path / "results"
    configs = [RunConfig(task="delayed_recall", seq_len=5, cell=CellConfig(cell=cell, hidden=8),
                         steps=10, batch_size=16, eval_every=5, eval_size=32, label="ray").validate()
               for cell in ("rnn", "lstm")]
    result = run_sweep(configs, out, executor="ray")
    assert result.statuses == {"ok": 2}
    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["config_id"] for r in rows) == sorted(c.config_id() for c in configs)
    for row in rows:  # the driver wrote each task's run folder under OUT
        run_dir = out / "runs" / row["run_id"]
        assert row["run_dir"] == str(run_dir) and row["label"] == "ray" and row["threads"] == "1"
        assert (run_dir / "config.json").is_file() and (run_dir / "curve.csv").is_file()
    assert ray.is_initialized()  # a Ray instance the sweep did not start is left running

    again = run_sweep(configs, out, executor="ray")
    assert again.ran == 0 and again.skipped == 2
