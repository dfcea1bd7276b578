"""Sweeps: local worker processes write one row per run; re-running skips what is recorded; a
missing row is re-run alone; a failing run is recorded as failed and does not stop the sweep."""

from __future__ import annotations

import csv
import sys
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from seqbench import malloc
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.results import RUN_COLUMNS
from seqbench.sweep import check_packing, failed_row, gpu_slots, plan_sweep, recorded, run_sweep

TINY = dict(task="adding", seq_len=5, steps=20, batch_size=16, eval_every=10, eval_size=32)


def tiny_configs() -> list[RunConfig]:
    return [RunConfig(cell=CellConfig(cell=cell, hidden=8), seed=seed, **TINY).validate()
            for cell in ("rnn", "gru") for seed in (0, 1)]


def read_rows(out) -> list[dict]:
    with open(out / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


def write_rows(out, rows: list[dict]) -> None:
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, RUN_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the failing run asks for CUDA on a CPU machine")
def test_local_sweep_resumes_and_records_failures(tmp_path):
    out = tmp_path / "results"
    good = tiny_configs()
    failing = replace(good[0], seed=7, device="cuda")  # validates, but fails on a CPU-only machine
    configs = [*good[:2], failing, *good[2:]]
    lines: list[str] = []

    result = run_sweep(configs, out, workers=2, report=lines.append)
    assert result.statuses == {"ok": 4, "failed": 1} and result.skipped == 0
    rows = read_rows(out)
    assert len(rows) == 5
    assert {r["config_id"] for r in rows} == {c.config_id() for c in configs}
    assert {r["threads"] for r in rows if r["status"] == "ok"} == {"1"}  # one thread per worker
    if malloc._libc() is not None:  # spawned workers tune their own allocator (seqbench.malloc)
        assert {r["malloc"] for r in rows if r["status"] == "ok"} == {"tuned"}
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["seed"] == "7"
    assert failed[0]["error"].startswith("ConfigError: device 'cuda' requested")
    assert any("failed: ConfigError" in line for line in lines) and len(lines) == 5

    # the same sweep again: everything is recorded, nothing runs (no worker is even started)
    again = run_sweep(configs, out, workers=2)
    assert again.ran == 0 and again.skipped == 5 and len(read_rows(out)) == 5

    # one row lost: only that run is re-run; retry_failed also re-runs the failed one
    lost = next(r for r in rows if r["config_id"] == good[3].config_id())
    write_rows(out, [r for r in rows if r is not lost])
    plan = plan_sweep(configs, out, retry_failed=True)
    assert {c.config_id() for c in plan.todo} == {good[3].config_id(), failing.config_id()}
    third = run_sweep(configs, out, workers=2, retry_failed=True)
    assert third.statuses == {"ok": 1, "failed": 1} and third.skipped == 3
    rows = read_rows(out)
    assert len(rows) == 6 and sum(r["config_id"] == good[3].config_id() for r in rows) == 1


def test_plan_skips_recorded_configs_of_any_status(tmp_path):
    out = tmp_path
    configs = tiny_configs()
    rows = [failed_row(configs[0], "RuntimeError: boom", "2026-01-01T00:00:00+00:00", 1.0),
            {**failed_row(configs[1], "", "", 0.0), "status": "diverged", "error": ""}]
    write_rows(out, rows)
    plan = plan_sweep(configs, out)
    assert [c.config_id() for c in plan.todo] == [c.config_id() for c in configs[2:]]
    assert plan.statuses == {configs[0].config_id(): "failed", configs[1].config_id(): "diverged"}
    assert len(plan_sweep(configs, out, retry_failed=True).todo) == 3


def test_failed_row_fits_the_schema_and_records_the_config():
    cfg = replace(tiny_configs()[0], label="arm")
    row = failed_row(cfg, "ValueError: x", "now", 0.5)
    assert set(row) <= set(RUN_COLUMNS)
    assert row["status"] == "failed" and row["error"] == "ValueError: x" and row["label"] == "arm"
    assert row["step_budget"] == 20 and row["cell"] == "rnn" and row["hidden"] == 8


def test_foreign_results_file_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "runs.csv").write_text("name,score\na,1\n")
    with pytest.raises(ConfigError, match="not seqbench's"):
        run_sweep(tiny_configs(), tmp_path)
    assert (tmp_path / "runs.csv").read_text() == "name,score\na,1\n"


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="unknown executor 'dask'; allowed: local, ray"):
        run_sweep(tiny_configs(), tmp_path, executor="dask")
    with pytest.raises(ConfigError, match="--address applies to --executor ray only"):
        run_sweep(tiny_configs(), tmp_path, address="auto")
    assert not (tmp_path / "runs.csv").exists()


def test_missing_ray_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    spec = tmp_path / "s.toml"
    spec.write_text("[settings]\ntask = 'adding'\nseq_len = 5\nsteps = 2\n[grid]\nseed = [0]\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["sweep", str(spec), "--executor", "ray", "--out", str(out)])
    assert result.exit_code == 2
    assert result.output == (
        "Error: --executor ray needs Ray, which is not installed here: pip install 'seqbench[ray]'\n")
    assert not (out / "runs.csv").exists()


def test_cli_address_needs_ray(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text("[grid]\nseed = [0]\n")
    result = CliRunner().invoke(cli, ["sweep", str(spec), "--address", "auto"])
    assert result.exit_code == 2 and "Error: --address applies to --executor ray only" in result.output


def test_recorded_ids_stay_text_and_finished_rows_win(tmp_path):
    cfg = tiny_configs()[0]
    base = failed_row(cfg, "", "", 0.0)
    write_rows(tmp_path, [{**base, "config_id": "0123e4567890", "status": "ok"},
                          {**base, "config_id": "0123e4567890", "status": "interrupted"},
                          {**base, "config_id": "000000000042", "status": "failed"}])
    assert recorded(tmp_path) == {"0123e4567890": "ok", "000000000042": "failed"}


def test_per_gpu_pins_n_workers_to_each_gpu(tmp_path, monkeypatch):
    """A fake count of 2 GPUs on a CPU machine: 4 workers, each pinned (CUDA_VISIBLE_DEVICES) to
    GPU 0 or 1, at most 2 per GPU; the CPU configs run as usual."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    out = tmp_path / "results"
    configs = [replace(c, steps=4, eval_every=4) for c in tiny_configs()]
    result = run_sweep(configs, out, per_gpu=2, gpu_count=2)
    assert result.statuses == {"ok": 4} and len(read_rows(out)) == 4
    assert result.workers == 4  # every worker process took a GPU slot
    assert {o.gpu for o in result.outcomes} <= {"0", "1"}
    by_gpu: dict[str, set[int]] = {}
    for outcome in result.outcomes:
        by_gpu.setdefault(outcome.gpu, set()).add(outcome.worker)
    assert all(len(workers) <= 2 for workers in by_gpu.values())
    assert len({o.worker for o in result.outcomes}) == sum(len(w) for w in by_gpu.values())


def test_gpu_slots_and_visible_devices(monkeypatch):
    assert gpu_slots(["0", "1"], 2) == ["0", "1", "0", "1"]  # a smaller pool still spreads out
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert check_packing(2, "local", None, gpu_count=2) == ["2", "3"]  # physical ids for workers
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert check_packing(1, "local", None, gpu_count=3) == ["0", "1", "2"]


def test_per_gpu_errors(tmp_path):
    configs = tiny_configs()
    with pytest.raises(ConfigError, match="--per-gpu needs a CUDA device and none is available"):
        run_sweep(configs, tmp_path, per_gpu=2, gpu_count=0)
    with pytest.raises(ConfigError, match=r"with --executor ray use --gpus-per-run 1/N"):
        run_sweep(configs, tmp_path, per_gpu=2, gpu_count=1, executor="ray")
    with pytest.raises(ConfigError, match="give --per-gpu or --workers, not both"):
        run_sweep(configs, tmp_path, per_gpu=2, gpu_count=1, workers=2)
    assert not (tmp_path / "runs.csv").exists()


def test_cli_per_gpu_and_device(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text("[settings]\ntask = 'adding'\nseq_len = 5\nsteps = 2\n[grid]\nseed = [0, 1]\n")
    run = CliRunner().invoke
    result = run(cli, ["sweep", str(spec), "--per-gpu", "2", "--executor", "ray"])
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1
    assert result.output.startswith("Error: --per-gpu applies to --executor local only; with "
                                    "--executor ray use --gpus-per-run 1/N")
    result = run(cli, ["sweep", str(spec), "--per-gpu", "2", "--device", "cpu"])
    assert result.exit_code == 2 and "Error: " in result.output
    if not torch.cuda.is_available():
        assert "--per-gpu needs a CUDA device" in result.output
    # --device is not part of a run's identity: the same ids with or without it
    plain = run(cli, ["sweep", str(spec), "-n", "--no-estimate", "--out", str(tmp_path)])
    on_cpu = run(cli, ["sweep", str(spec), "-n", "--no-estimate", "--device", "cpu",
                       "--out", str(tmp_path)])
    assert plain.exit_code == on_cpu.exit_code == 0 and plain.output == on_cpu.output
