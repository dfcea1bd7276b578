"""seqbench bench: a tiny grid through the library and through the command line."""

import csv

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
    assert "--threads do not apply" in result.output
    assert not (tmp_path / "s.csv").exists()
