"""seqbench bench: a tiny grid through the library and through the command line."""

import csv

import pytest
import torch
from click.testing import CliRunner

from seqbench.bench import BENCH_COLUMNS, BenchConfig, format_table, run_bench
from seqbench.cli import cli

TINY = dict(seq_lens=(5,), batch=4, hidden=8, repeats=1, warmup=0, threads=1, device="cpu")


def test_run_bench_rows():
    rows = run_bench(BenchConfig(cells=("lstm", "gru"), **TINY))
    assert [(r["cell"], r["impl"]) for r in rows] == [
        ("lstm", "builtin"), ("lstm", "hand"), ("gru", "builtin"), ("gru", "hand")]
    for r in rows:
        assert set(r) <= set(BENCH_COLUMNS)
        assert r["seq_len"] == 5 and r["threads"] == 1 and r["device"] == "cpu"
        assert r["ms_step"] > 0 and r["ms_step_2t"] > 0 and r["ms_probe"] > 0
        assert r["seq_per_s"] == 4 / (r["ms_step"] / 1e3)
    assert rows[0]["ratio_to_builtin"] == 1.0
    assert rows[1]["ratio_to_builtin"] == rows[1]["ms_step"] / rows[0]["ms_step"]
    from seqbench import native

    assert rows[1]["kernel"] == ("hand (fused, native)" if native.available() else "hand (fused)")
    assert rows[3]["kernel"] == "hand (fused)"  # the compiled steps are the LSTM's only
    table = format_table(rows).splitlines()
    assert len(table) == 5 and table[0].split()[:3] == ["cell", "impl", "T"]


def test_hand_only_has_no_ratio():
    rows = run_bench(BenchConfig(cells=("rnn",), impls=("hand",), probe=False, scaling=False,
                                 **TINY))
    assert len(rows) == 1
    r = rows[0]
    assert r["ratio_to_builtin"] != r["ratio_to_builtin"]  # NaN: nothing to compare with
    assert "n/a" in format_table(rows)


def test_cli_appends_csv(tmp_path):
    out = tmp_path / "sub" / "bench.csv"
    args = ["bench", "--cell", "rnn", "--cell", "lstm", "-T", "5", "--batch", "4", "--hidden", "8",
            "--repeats", "1", "--warmup", "0", "--threads", "1", "--device", "cpu", "-q",
            "--out", str(out)]
    for _ in range(2):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    assert "hand/builtin" in result.output and "4 rows appended" in result.output
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == BENCH_COLUMNS
    assert len(rows) == 8
    assert {r["impl"] for r in rows} == {"builtin", "hand"}
    assert all(r["torch_version"] and r["threads"] == "1" for r in rows)


def test_cli_bad_input(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "--cell", "tcn", "--out", str(tmp_path / "b.csv")])
    assert result.exit_code == 2
    result = CliRunner().invoke(cli, ["bench", "-T", "1", "--out", str(tmp_path / "b.csv")])
    assert result.exit_code == 2 and "seq_len" in result.output
    assert not (tmp_path / "b.csv").exists()


# -- sweep throughput ------------------------------------------------------------------------------


def test_sweep_configs_cycle_cells_and_impls():
    from seqbench.bench import sweep_configs

    cfg = BenchConfig(cells=("rnn", "gru"), impls=("hand",), seq_lens=(50, 10), hidden=8)
    configs = sweep_configs(cfg, 5, steps=3)
    assert [(c.cell.cell, c.seed) for c in configs] == [("rnn", 0), ("gru", 0), ("rnn", 1),
                                                        ("gru", 1), ("rnn", 2)]
    assert {c.seq_len for c in configs} == {10} and {c.steps for c in configs} == {3}
    assert len({c.config_id() for c in configs}) == 5  # all distinct: none is skipped as done


def test_cli_sweep_runs_times_both_layouts(tmp_path):
    out = tmp_path / "sweep.csv"
    args = ["bench", "--sweep-runs", "2", "--sweep-steps", "2", "--cell", "rnn", "--impl", "hand",
            "-T", "5", "--hidden", "8", "--batch", "4", "--sweep-out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    # two rounds, each with both layouts; the speedup is relative to 1 worker x 2 threads
    assert [(r["round"], r["workers"], r["threads"]) for r in rows] == [
        ("0", "2", "1"), ("0", "1", "2"), ("1", "2", "1"), ("1", "1", "2")]
    for r in rows:
        assert float(r["wall_s"]) > 0
        assert abs(float(r["runs_per_min"]) - 120 / float(r["wall_s"])) < 1e-6
        if r["workers"] == "1":
            assert float(r["speedup"]) == 1.0
    assert not (tmp_path / "seqbench-results").exists()  # the runs went to scratch folders


def test_cli_sweep_runs_refuses_threads(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "--sweep-runs", "2", "--threads", "1",
                                      "--sweep-out", str(tmp_path / "s.csv")])
    assert result.exit_code == 2
    assert "--threads does not apply" in result.output
    assert not (tmp_path / "s.csv").exists()


def test_packed_sweep_bench_times_n_per_gpu_against_one_at_a_time(monkeypatch):
    """A fake count of 1 GPU on a CPU machine (the runs themselves on the CPU): the GPU layouts'
    bookkeeping, the workers each one starts and the speedup against one run at a time."""
    from seqbench.bench import SWEEP_COLUMNS, run_sweep_bench

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = BenchConfig(cells=("rnn",), impls=("hand",), seq_lens=(5,), hidden=8, batch=4)
    rows = run_sweep_bench(cfg, runs=3, steps=2, rounds=1, per_gpu=3, gpu_count=1,
                           run_device="cpu")
    assert [(r["per_gpu"], r["workers"], r["threads"]) for r in rows] == [(3, 3, 1), (1, 1, 1)]
    assert rows[1]["speedup"] == 1.0  # one at a time is the reference
    assert rows[0]["speedup"] == pytest.approx(rows[0]["runs_per_min"] / rows[1]["runs_per_min"])
    assert all(set(r) <= set(SWEEP_COLUMNS) for r in rows)


@pytest.mark.parametrize("args,message", [
    (["--per-gpu", "2"], "--per-gpu times packed sweep runs: it needs --sweep-runs N"),
    (["--sweep-runs", "2", "--per-gpu", "2", "--device", "cpu"], "it needs --device cuda"),
    (["--sweep-runs", "2", "--per-gpu", "1"], "'--per-gpu': 1 is not in the range 2<=x"),
])
def test_cli_per_gpu_errors_are_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(cli, ["bench", *args, "--sweep-out", str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA message")
def test_cli_per_gpu_without_cuda_says_so(tmp_path):
    out = tmp_path / "s.csv"
    result = CliRunner().invoke(cli, ["bench", "--sweep-runs", "2", "--per-gpu", "2",
                                      "--sweep-out", str(out)])
    assert result.exit_code == 2 and "--per-gpu needs a CUDA device" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()
