"""The leaderboard on a hand-made runs.csv with known numbers: exact means, standard deviations
(ddof 1), standard errors, solve rates, medians, and the headline table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from click.testing import CliRunner

from seqbench.cli import cli
from seqbench.leaderboard import aggregate, build, format_frame, headline, load_runs
from seqbench.results import RUN_COLUMNS, append_rows

BASE = dict(task="adding", variant="halves", impl="builtin", hidden=64, layers=1,
            nonlinearity="tanh", optimizer="adam", lr=0.001, clip=1.0, batch_size=64,
            step_budget=3000, eval_every=100, eval_size=512, until_solved=True, label="")


def run(n: int, cell: str, seq_len: int, seed: int, ratio: float | None, solved_step=None,
        status="ok", throughput=100.0, **extra) -> dict:
    return {**BASE, "run_id": f"r{n}", "config_id": f"{cell}-{seq_len}-{seed}-{extra.get('label', '')}",
            "cell": cell, "seq_len": seq_len, "seed": seed, "status": status,
            "loss_ratio": ratio, "final_loss": None if ratio is None else ratio / 6,
            "baseline_loss": 1 / 6, "accuracy": 0.5, "solved": solved_step is not None,
            "solved_step": solved_step, "throughput_seq_s": throughput, **extra}


RUNS = [
    # lstm T=10: ratios 0.1, 0.2, 0.3 -> mean 0.2, sd 0.1, se 0.1/sqrt(3); 2 of 3 solved at 300, 500
    run(1, "lstm", 10, 0, 0.1, 300, throughput=100.0),
    run(2, "lstm", 10, 1, 0.2, 500, throughput=200.0),
    run(3, "lstm", 10, 2, 0.3, None, throughput=300.0),
    # lstm T=50: one ok (unsolved), one diverged, one failed then retried ok (counts once), one failed
    run(4, "lstm", 50, 0, 1.0),
    run(5, "lstm", 50, 1, None, status="diverged"),
    run(6, "lstm", 50, 2, None, status="failed", error="RuntimeError: x"),
    run(7, "lstm", 50, 2, 0.8, None),
    run(8, "lstm", 50, 3, None, status="failed", error="RuntimeError: y"),
    # rnn T=10: 1 of 2 solved (0.5 counts as half); T=25: none
    run(9, "rnn", 10, 0, 0.04, 2900),
    run(10, "rnn", 10, 1, 0.9),
    run(11, "rnn", 25, 0, 0.98),
    run(12, "rnn", 25, 1, 1.02),
    # a labelled arm of the same cell is its own row
    run(13, "lstm", 10, 0, 0.05, 200, label="lstm_fb1"),
]


@pytest.fixture
def runs_csv(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, RUNS, RUN_COLUMNS)
    return path


def row(board: pd.DataFrame, **where) -> pd.Series:
    mask = pd.Series(True, index=board.index)
    for k, v in where.items():
        mask &= board[k].fillna("") == v
    assert mask.sum() == 1, where
    return board[mask].iloc[0]


def test_exact_statistics(runs_csv):
    board = aggregate(load_runs(runs_csv))
    assert len(board) == 5
    lstm10 = row(board, cell="lstm", seq_len=10, label="")
    assert lstm10["n_seeds"] == 3 and lstm10["n_failed"] == 0 and lstm10["n_diverged"] == 0
    assert lstm10["loss_ratio_mean"] == pytest.approx(0.2)
    assert lstm10["loss_ratio_std_ddof1"] == pytest.approx(0.1)
    assert lstm10["loss_ratio_se"] == pytest.approx(0.1 / math.sqrt(3))
    assert lstm10["solve_rate"] == pytest.approx(2 / 3)
    assert lstm10["median_solved_step"] == 400
    assert lstm10["throughput_mean"] == pytest.approx(200.0)

    lstm50 = row(board, cell="lstm", seq_len=50)
    assert lstm50["n_seeds"] == 3 and lstm50["n_diverged"] == 1 and lstm50["n_failed"] == 1
    assert lstm50["solve_rate"] == 0 and math.isnan(lstm50["median_solved_step"])
    assert lstm50["loss_ratio_mean"] == pytest.approx(0.9)  # diverged run left out: (1.0 + 0.8) / 2
    assert lstm50["loss_ratio_std_ddof1"] == pytest.approx(math.sqrt(0.02))

    assert row(board, cell="rnn", seq_len=10)["solve_rate"] == 0.5
    arm = row(board, label="lstm_fb1")
    assert arm["n_seeds"] == 1 and math.isnan(arm["loss_ratio_std_ddof1"])
    assert math.isnan(arm["loss_ratio_se"]) and arm["median_solved_step"] == 200
    # order: task, cell (rnn, lstm, gru), fewest options changed, label, seq_len
    assert list(zip(board["label"].fillna(""), board["cell"], board["seq_len"])) == [
        ("", "rnn", 10), ("", "rnn", 25), ("", "lstm", 10), ("", "lstm", 50), ("lstm_fb1", "lstm", 10)]


def test_headline_longest_lag_solved_by_half_the_seeds(runs_csv):
    table = headline(aggregate(load_runs(runs_csv)))
    assert len(table) == 3
    lstm = row(table, cell="lstm", label="")
    assert lstm["longest_solved_T"] == 10 and lstm["longest_tried_T"] == 50
    assert lstm["solve_rate_at_T"] == pytest.approx(2 / 3) and lstm["seq_lens"] == "10 50"
    rnn = row(table, cell="rnn")
    assert rnn["longest_solved_T"] == 10 and rnn["longest_tried_T"] == 25
    assert row(table, label="lstm_fb1")["longest_solved_T"] == 10


def test_nothing_solved_gives_an_empty_headline(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, [run(1, "gru", 100, 0, 0.97), run(2, "gru", 100, 1, 0.99)], RUN_COLUMNS)
    board, table = build(path)
    assert math.isnan(table.iloc[0]["longest_solved_T"]) and table.iloc[0]["longest_tried_T"] == 100
    assert "      -" in format_frame(table)


def test_formats(runs_csv):
    board, _ = build(runs_csv)
    text = format_frame(board, "table")
    lines = text.splitlines()
    assert lines[0].split()[:6] == ["task", "label", "cell", "impl", "seq_len", "seeds"]
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule aligned
    assert "0.200" in text and "400" in text and "0.100" not in text  # sd printed with 2 digits
    md = format_frame(board, "markdown").splitlines()
    assert md[0].startswith("| ") and set(md[1]) <= set("|-: ") and len(md) == 2 + len(board)
    csv_text = format_frame(board, "csv")
    assert csv_text.splitlines()[0].startswith("task,variant,label,cell,impl")
    assert "loss_ratio_std_ddof1" in csv_text.splitlines()[0]


def test_cli_prints_and_writes_both_tables(runs_csv):
    result = CliRunner().invoke(cli, ["leaderboard", "--runs", str(runs_csv)])
    assert result.exit_code == 0, result.output
    assert "Leaderboard" in result.output and "Headline" in result.output
    assert "sd(ddof1)" in result.output
    board = pd.read_csv(runs_csv.parent / "leaderboard.csv")
    table = pd.read_csv(runs_csv.parent / "leaderboard_headline.csv")
    assert len(board) == 5 and len(table) == 3

    result = CliRunner().invoke(cli, ["leaderboard", "--runs", str(runs_csv), "--format", "csv",
                                      "--out", str(runs_csv.parent / "lb.csv")])
    assert result.exit_code == 0 and result.output.startswith("task,variant,label")
    assert (runs_csv.parent / "lb_headline.csv").is_file()

    result = CliRunner().invoke(cli, ["leaderboard", "--runs", str(runs_csv), "--headline",
                                      "--format", "markdown", "--task", "adding"])
    assert result.exit_code == 0 and result.output.startswith("| ")


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, runs_csv):
    for args in (["--runs", str(tmp_path / "none.csv")],
                 ["--runs", str(runs_csv), "--task", "copy"],
                 ["--runs", str(runs_csv), "--task", "nope"]):
        result = CliRunner().invoke(cli, ["leaderboard", *args])
        assert result.exit_code == 2, args
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "no runs of task 'copy'" in CliRunner().invoke(
        cli, ["leaderboard", "--runs", str(runs_csv), "--task", "copy"]).output
    assert not (tmp_path / "leaderboard.csv").exists()


def test_reference_arm_sorts_before_its_fixes(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, [
        run(1, "gru", 10, 0, 0.5, label="gru"),
        run(2, "rnn", 10, 0, 0.5, label="a_irnn", nonlinearity="relu", init="identity"),
        run(3, "rnn", 10, 0, 0.5, label="rnn_relu", nonlinearity="relu", init="default"),
        run(4, "rnn", 10, 0, 0.5, label="rnn_tanh", init="default"),
        run(5, "rnn", 10, 0, 0.5, label="b_orth", init="orthogonal"),
    ], RUN_COLUMNS)
    board, _ = build(path)
    assert list(board["label"]) == ["rnn_tanh", "b_orth", "rnn_relu", "a_irnn", "gru"]
    shown = format_frame(board).splitlines()[0].split()
    assert "nonlinearity" not in shown and "init" not in shown  # the label names them


def test_cli_warns_of_a_torn_line_in_one_line(runs_csv):
    """A torn last line (a writer killed mid-row) is skipped, and said so in one `Warning:` line."""
    import warnings

    with open(runs_csv, "a") as f:
        f.write("r99,lstm-10-9-,2026")  # no newline: torn
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # the suite turns warnings into errors; a user sees them
        result = CliRunner().invoke(cli, ["leaderboard", "--runs", str(runs_csv)])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if "malformed" in line]
    assert len(warned) == 1 and warned[0].startswith("Warning: ")
    assert "skipped 1 malformed line(s)" in warned[0] and "UserWarning" not in result.output
