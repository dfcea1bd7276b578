"""Length generalization (seqbench.lengths): the final model tested at other lags, one tidy row per
lag in the run folder's lengths.csv; specs and --set take the list; old config ids stay."""

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.lengths import LENGTH_COLUMNS, read_lengths, summarize
from seqbench.runner import execute_run

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(cell=CellConfig(hidden=8), steps=30, eval_every=10, eval_size=32, test_size=64,
             batch_size=8, device="cpu", threads=1)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_one_row_per_lag_and_the_own_lag_is_the_test_set(tmp_path):
    cfg = RunConfig(task="copy", seq_len=6, eval_seq_lens=(12, 6, 3, 12), **SMALL)
    row, _ = execute_run(cfg, tmp_path, quiet=True)
    lengths = read_csv(Path(row["run_dir"]) / "lengths.csv")
    assert list(lengths[0]) == LENGTH_COLUMNS
    assert [int(r["eval_seq_len"]) for r in lengths] == [3, 6, 12]  # sorted, once each
    own = next(r for r in lengths if r["eval_seq_len"] == "6")
    assert float(own["loss"]) == pytest.approx(row["final_loss"], rel=1e-12)
    assert float(own["accuracy"]) == pytest.approx(row["accuracy"], rel=1e-12)
    from seqbench.tasks import make_task

    copy = make_task("copy")
    for r in lengths:  # each lag's own memoryless baseline (copy's depends on T)
        length = int(r["eval_seq_len"])
        assert float(r["baseline_loss"]) == pytest.approx(copy.baseline_loss(length))
        assert int(r["total_steps"]) == copy.total_steps(length)
        assert r["run_id"] == row["run_id"] and r["config_id"] == row["config_id"]
    (recorded,) = read_csv(tmp_path / "runs.csv")
    assert recorded["eval_seq_lens"] == "3 6 12"
    frame = read_lengths([tmp_path])
    table = summarize(frame)
    assert list(table["eval_seq_len"]) == [3, 6, 12] and set(table["seeds"]) == {1}


def test_other_lags_are_sampled_from_their_own_streams(tmp_path):
    a, _ = execute_run(RunConfig(task="delayed_recall", seq_len=5, eval_seq_lens=(7,), **SMALL),
                       tmp_path / "a", quiet=True)
    b, _ = execute_run(RunConfig(task="delayed_recall", seq_len=5, eval_seq_lens=(7, 9), **SMALL),
                       tmp_path / "b", quiet=True)
    la = read_csv(Path(a["run_dir"]) / "lengths.csv")
    lb = read_csv(Path(b["run_dir"]) / "lengths.csv")
    assert la[0]["loss"] == lb[0]["loss"]  # the same model, the same lag-7 test set
    assert a["final_loss"] == b["final_loss"]  # testing other lags changes nothing else
    assert a["config_id"] != b["config_id"]


def test_no_lags_keeps_the_config_ids_runs_were_recorded_with():
    """A run folder written before eval_seq_lens existed gets its recorded id back."""
    for row in read_csv(ROOT / "results" / "demo" / "runs.csv"):
        saved = json.loads((ROOT / row["run_dir"] / "config.json").read_text())
        meta = {k: saved.pop(k) for k in ("run_id", "config_id", "started_at", "checkpoint_every")}
        assert "eval_seq_lens" not in saved
        assert RunConfig.from_dict(saved).config_id() == meta["config_id"] == row["config_id"]


def test_a_diverged_run_tests_no_other_lag(tmp_path):
    cfg = RunConfig(task="adding", seq_len=5, lr=1e30, clip=0.0, eval_seq_lens=(10,), **SMALL)
    row, _ = execute_run(cfg, tmp_path, quiet=True)
    assert row["status"] == "diverged"
    assert not (Path(row["run_dir"]) / "lengths.csv").exists()


def test_bad_lags_are_refused():
    with pytest.raises(ConfigError, match="eval_seq_lens: seq_len must be an integer >= 4"):
        RunConfig(task="temporal_order", seq_len=20, eval_seq_lens=(2,)).validate()
    with pytest.raises(ConfigError, match="eval_seq_lens must be a list"):
        RunConfig(eval_seq_lens=200).validate()


def test_the_command_line_and_specs_take_the_list(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["run", "--task", "delayed_recall", "-T", "4", "--hidden", "8",
                             "--steps", "10", "--eval-every", "5", "--eval-size", "16",
                             "--test-size", "16", "--batch-size", "8", "--threads", "1", "-q",
                             "--eval-seq-len", "8", "--eval-seq-len", "16",
                             "--out", str(tmp_path / "cli")])
    assert ok.exit_code == 0, ok.output
    (row,) = read_csv(tmp_path / "cli" / "runs.csv")
    assert row["eval_seq_lens"] == "8 16"
    spec = tmp_path / "s.toml"
    spec.write_text('[settings]\ntask = "delayed_recall"\nhidden = 8\nsteps = 10\neval_every = 5\n'
                    'eval_size = 16\ntest_size = 16\nbatch_size = 8\neval_seq_lens = [8]\n'
                    '[grid]\nseq_len = [4]\nseed = [0]\n')
    from seqbench.spec import expand_spec, parse_overrides

    (cfg,) = expand_spec(spec)
    assert cfg.eval_seq_lens == (8,)
    assert parse_overrides(["eval_seq_lens=[8, 32]"]) == {"eval_seq_lens": (8, 32)}
    with pytest.raises(ConfigError, match="must be a list of integers"):
        parse_overrides(["eval_seq_lens=30"])


def test_the_generalization_table_is_the_leaderboards_statistics_at_each_lag(tmp_path):
    """Per arm and lag tested: the leaderboard's statistics over the runs' rows at that lag; the
    lag trained at is the leaderboard's own row; runs without other lags are left out."""
    from seqbench import leaderboard as lb
    from seqbench.lengths import generalization
    from seqbench.stats import wilson_interval

    for seed in (0, 1, 2):
        execute_run(RunConfig(task="delayed_recall", seq_len=5, eval_seq_lens=(5, 10), seed=seed,
                              **SMALL), tmp_path, quiet=True)
    execute_run(RunConfig(task="adding", seq_len=5, **SMALL), tmp_path, quiet=True)  # no lags
    table = generalization(tmp_path / "runs.csv")
    assert list(table["eval_seq_len"]) == [5, 10] and set(table["task"]) == {"delayed_recall"}
    board, _ = lb.build(tmp_path / "runs.csv", "delayed_recall")
    own = table[table["eval_seq_len"] == 5].iloc[0]
    for column in ("n_seeds", "solve_rate", "loss_ratio_mean", "loss_ratio_ci_lo",
                   "accuracy_mean"):
        assert own[column] == pytest.approx(board.iloc[0][column])
    rows = read_lengths([tmp_path])
    rows = rows[rows["eval_seq_len"] == 10]
    at10 = table[table["eval_seq_len"] == 10].iloc[0]
    assert at10["n_seeds"] == 3
    assert at10["loss_ratio_mean"] == pytest.approx(rows["loss_ratio"].mean())
    k = int((rows["solved"].astype(str) == "True").sum())
    assert (at10["solve_rate_lo"], at10["solve_rate_hi"]) == pytest.approx(wilson_interval(k, 3))


def test_leaderboard_and_figure_show_the_lengths(tmp_path):
    for seed in (0, 1):
        execute_run(RunConfig(task="delayed_recall", seq_len=5, eval_seq_lens=(10, 20),
                              seed=seed, **SMALL), tmp_path, quiet=True)
    runs = str(tmp_path / "runs.csv")
    result = CliRunner().invoke(cli, ["leaderboard", "--runs", runs])
    assert result.exit_code == 0, result.output
    assert "Length generalization" in result.output
    written = pd.read_csv(tmp_path / "leaderboard_lengths.csv")
    assert list(written["eval_seq_len"]) == [5, 10, 20]
    for metric in ("loss", "solve_rate"):
        out = tmp_path / f"lengths_{metric}.png"
        result = CliRunner().invoke(cli, ["plot", "lengths", runs, "--metric", metric,
                                          "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.stat().st_size > 0


def test_the_figure_says_when_no_run_was_tested_at_other_lags(tmp_path):
    execute_run(RunConfig(task="adding", seq_len=5, **SMALL), tmp_path, quiet=True)
    result = CliRunner().invoke(cli, ["plot", "lengths", str(tmp_path / "runs.csv")])
    assert result.exit_code != 0 and "--eval-seq-len" in result.output
    assert "Traceback" not in result.output
