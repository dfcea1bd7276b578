"""Issue 18, items 8-9: bounded integer options, the memory check before anything is created, and
the sweep's run count before expanding."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from seqbench import memory
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.sweep import SweepResult


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("args, bound", [
    (["run", "--seq-len", 10**12], "1<=x<=1000000"),
    (["run", "--hidden", 10**12], "1<=x<=100000"),
    (["run", "--hidden", 1_000_000], "1<=x<=100000"),
    (["run", "--batch-size", 10**12], "1<=x<=1000000"),
    (["run", "--eval-size", 9223372036854775808], "1<=x<=100000000"),
    (["run", "--threads", 10**12], "1<=x<=1024"),
    (["run", "--seed", 2**64], "0<=x<=4294967295"),
    (["grads", "--seeds", 10**9], "1<=x<=100000"),
    (["sweep", "x.toml", "--workers", 10**6], "1<=x<=1024"),
])
def test_huge_integers_are_one_line_usage_errors_naming_the_bound(tmp_path, args, bound):
    result = invoke(*args, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert bound in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_bounds_show_in_help():
    assert "1<=x<=1000000" in invoke("run", "--help").output


def cfg(**kw):
    cell = CellConfig(hidden=kw.pop("hidden", 128), cell=kw.pop("cell", "lstm"))
    return RunConfig(cell=cell, **kw).validate()


@pytest.mark.parametrize("run", [
    dict(seq_len=500, batch_size=64, test_size=1024),  # README's example
    dict(task="copy", seq_len=1000),
    dict(seq_len=5000, batch_size=64),  # the committed specs' longest lag
    dict(seq_len=1000, batch_size=64, cell="gru", probe_every=100, eval_seq_lens=(2000,)),
])
def test_ordinary_runs_fit_a_16_gb_machine(monkeypatch, run):
    monkeypatch.setenv(memory.ENV_LIMIT, "16")
    memory.check_run(cfg(**run))


def test_huge_run_is_refused_at_once_in_one_line(monkeypatch):
    monkeypatch.setenv(memory.ENV_LIMIT, "24")
    t0 = time.perf_counter()
    for run in (dict(seq_len=100_000, steps=1), dict(hidden=100_000)):
        with pytest.raises(ConfigError) as e:
            memory.check_run(cfg(**run))
        text = str(e.value)
        assert "\n" not in text and "limit of 24.0 GB" in text and "--batch-size" in text
    assert time.perf_counter() - t0 < 0.5


def test_run_is_refused_before_its_folder_exists(tmp_path, monkeypatch):
    monkeypatch.setenv(memory.ENV_LIMIT, "0.01")
    result = invoke("run", "-T", 20, "--steps", 1, "--device", "cpu", "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert len(result.output.splitlines()) == 1 and "SEQBENCH_MEMORY_LIMIT_GB" in result.output
    assert not (tmp_path / "o").exists()


def test_grads_probe_is_refused_before_measuring(tmp_path, monkeypatch):
    monkeypatch.setenv(memory.ENV_LIMIT, "0.01")
    out = tmp_path / "g.csv"
    result = invoke("grads", "-T", 20, "--device", "cpu", "--out", out)
    assert result.exit_code == 2 and "this probe" in result.output
    assert len(result.output.splitlines()) == 1 and not out.exists()


def test_grads_t_100000_is_refused_with_the_real_limit_shape(monkeypatch):
    monkeypatch.setenv(memory.ENV_LIMIT, "24")
    with pytest.raises(ConfigError, match="lower --batch-size"):
        memory.check_probe("adding", None, 100_000, CellConfig(), 64)
    memory.check_probe("adding", None, 500, CellConfig(), 64)


def test_bad_limit_variable_is_one_line(monkeypatch):
    monkeypatch.setenv(memory.ENV_LIMIT, "lots")
    with pytest.raises(ConfigError, match="SEQBENCH_MEMORY_LIMIT_GB"):
        memory.available_bytes()


def test_available_memory_is_read_without_the_variable(monkeypatch):
    monkeypatch.delenv(memory.ENV_LIMIT, raising=False)
    assert memory.available_bytes() is None or memory.available_bytes() > 0


def big_spec(tmp_path, n):
    spec = tmp_path / "big.toml"
    seeds = ", ".join(str(i) for i in range(n))
    spec.write_text(f"[settings]\ntask = 'adding'\nseq_len = 5\nsteps = 2\n[grid]\n"
                    f"seed = [{seeds}]\nhidden = [{seeds.replace('0, ', '', 1)}, {n}]\n")
    return spec


def test_huge_grid_needs_yes_and_is_counted_before_expanding(tmp_path, monkeypatch):
    from seqbench import spec as spec_module

    spec = big_spec(tmp_path, 40)  # 1,600 runs
    monkeypatch.setattr(spec_module.Spec, "expand",
                        lambda *a, **k: pytest.fail("expanded before the count was checked"))
    result = invoke("sweep", spec, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"Error: {spec}: the grid has 1,600 runs (more than 1,000); add --yes to expand and run "
        "them"]
    assert not (tmp_path / "o").exists()


def test_grid_under_the_threshold_or_with_yes_goes_on(tmp_path):
    spec = big_spec(tmp_path, 40)
    result = invoke("sweep", spec, "--dry-run", "--no-estimate", "--yes", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "1,600 runs in the grid" in result.output.splitlines()[0]
    assert "1600 runs" in result.output


def test_count_matches_expand_with_arms_and_seeds_override(tmp_path):
    from seqbench.spec import load_spec

    spec = tmp_path / "a.toml"
    spec.write_text("[settings]\ntask = 'adding'\nseq_len = 5\nsteps = 2\n[grid]\n"
                    "seed = [0, 1]\nlr = [0.001, 0.01, 0.1]\n"
                    "[[arms]]\nname = 'a'\ncell = 'lstm'\n[[arms]]\nname = 'b'\ncell = 'gru'\n")
    loaded = load_spec(spec)
    assert loaded.count() == len(loaded.expand()) == 12
    assert loaded.count(overrides={"seeds": 3}) == len(loaded.expand(overrides={"seeds": 3})) == 18


def test_sweep_counts_add_up_to_the_rows_written(tmp_path):
    from seqbench.results import read_rows
    from seqbench.sweep import run_sweep

    configs = [RunConfig(seq_len=5, steps=2, eval_every=1, eval_size=8, test_size=8, seed=s,
                         device="cpu").validate() for s in range(3)]
    out = tmp_path / "o"
    first = run_sweep(configs[:1], out, workers=1)
    result = run_sweep(configs, out, workers=1)
    rows = read_rows(out / "runs.csv")
    assert first.ran + result.ran == len(rows) == 3
    assert result.ran + result.skipped == result.total == 3
    assert result.rows_written == result.ran == 2


def test_summary_names_rows_of_runs_still_going():
    result = SweepResult(total=10, skipped=0, statuses={"ok": 3}, interrupted=True,
                         rows_written=5)
    assert "5 rows written (2 by runs still going" in result.summary("o")
    assert "rows written" not in SweepResult(total=3, skipped=0, statuses={"ok": 3},
                                             rows_written=3).summary("o")


@pytest.mark.parametrize("args", [
    ["demo", "-T", "1000000000000"], ["demo", "--threads", "1000000000000"],
    ["demo", "--seed", "18446744073709551616"], ["bench", "--hidden", "1000000000000"],
    ["bench", "--repeats", "1000000"], ["bench", "--sweep-runs", "1000000"],
    ["report", "results", "--jobs", "1000000000000"], ["list", "-T", "1000000000000"],
])
def test_the_other_commands_bound_their_integers_too(args, tmp_path):
    from click.testing import CliRunner

    from seqbench.cli import cli

    result = CliRunner().invoke(cli, [*args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "is not in the range" in lines[0], result.output
