"""The leaderboard on a hand-made runs.csv with known numbers: exact means, standard deviations
(ddof 1), standard errors, solve rates with their intervals, Kaplan-Meier medians, the headline
table, selection on the validation set and the comparison with a reference arm."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from click.testing import CliRunner

from seqbench.cli import cli
from seqbench.errors import ConfigError
from seqbench.leaderboard import (
    DuplicateRunsWarning,
    aggregate,
    build,
    build_comparison,
    compare,
    format_frame,
    headline,
    load_runs,
    select,
)
from seqbench.results import RUN_COLUMNS, append_rows
from seqbench.stats import wilson_interval

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
    assert (lstm10["solve_rate_lo"], lstm10["solve_rate_hi"]) == pytest.approx(wilson_interval(2, 3))
    assert 0.1 <= lstm10["loss_ratio_ci_lo"] < 0.2 < lstm10["loss_ratio_ci_hi"] <= 0.3
    assert lstm10["median_step_solved_runs"] == 400
    # Kaplan-Meier: solved at 300 and 500, the third censored at its budget 3000: S = 2/3, 1/3
    assert lstm10["km_median_solved_step"] == 500
    assert math.isnan(lstm10["val_solve_rate"]) and math.isnan(lstm10["val_loss_ratio_mean"])
    assert lstm10["throughput_mean"] == pytest.approx(200.0)

    lstm50 = row(board, cell="lstm", seq_len=50)
    assert lstm50["n_seeds"] == 3 and lstm50["n_diverged"] == 1 and lstm50["n_failed"] == 1
    assert lstm50["solve_rate"] == 0 and math.isnan(lstm50["km_median_solved_step"])
    assert lstm50["solve_rate_lo"] == 0 and lstm50["solve_rate_hi"] == pytest.approx(0.5615, abs=1e-4)
    assert lstm50["loss_ratio_mean"] == pytest.approx(0.9)  # diverged run left out: (1.0 + 0.8) / 2
    assert lstm50["loss_ratio_std_ddof1"] == pytest.approx(math.sqrt(0.02))

    assert row(board, cell="rnn", seq_len=10)["solve_rate"] == 0.5
    arm = row(board, label="lstm_fb1")
    assert arm["n_seeds"] == 1 and math.isnan(arm["loss_ratio_std_ddof1"])
    assert math.isnan(arm["loss_ratio_se"]) and arm["km_median_solved_step"] == 200
    assert math.isnan(arm["loss_ratio_ci_lo"])  # one run: no interval
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
    header = lines[0]
    assert "solved [95% CI]" in header and "KM median step" in header and "val" not in header
    lo, hi = wilson_interval(2, 3)
    assert f"0.67 [{lo:.2f}, {hi:.2f}]" in text  # solve rate and its Wilson interval, one cell
    assert "0.200 [" in text and " 500" in text
    sd = header.index("sd(ddof1)")
    assert [line[sd:sd + 9].strip() for line in lines[2:5]] == ["0.61", "0.028", "0.10"]  # 2 digits
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


# -- run identity, Kaplan-Meier, headline bounds -------------------------------------------------


def test_a_run_with_and_without_probing_is_one_seed(tmp_path):
    """config_id holds probe_every, which is no key: the same arm and seed recorded with and
    without probing is one run (the last finished row), not two seeds."""
    path = tmp_path / "runs.csv"
    append_rows(path, [
        {**run(1, "lstm", 10, 0, 0.9), "config_id": "plain", "probe_every": 0},
        {**run(2, "lstm", 10, 0, 0.1, 300), "config_id": "probed", "probe_every": 100},
        {**run(3, "lstm", 10, 0, None, status="failed"), "config_id": "probed2", "probe_every": 50},
        run(4, "lstm", 10, 1, 0.5),
    ], RUN_COLUMNS)
    with pytest.warns(DuplicateRunsWarning, match="1 duplicate row"):
        runs = load_runs(path)
    assert sorted(runs["run_id"]) == ["r2", "r4"]
    lstm = aggregate(runs).iloc[0]
    assert lstm["n_seeds"] == 2 and lstm["n_failed"] == 0 and lstm["solve_rate"] == 0.5


def test_km_median_counts_the_runs_that_did_not_solve(tmp_path):
    """Two of five seeds solved early: the median over solved runs says 150 steps, the
    Kaplan-Meier median says "not reached" (fewer than half solved within the budget)."""
    path = tmp_path / "runs.csv"
    append_rows(path, [run(1, "gru", 10, 0, 0.01, 100), run(2, "gru", 10, 1, 0.01, 200),
                       run(3, "gru", 10, 2, 0.9), run(4, "gru", 10, 3, 0.9),
                       run(5, "gru", 10, 4, None, status="diverged")], RUN_COLUMNS)
    gru = aggregate(load_runs(path)).iloc[0]
    assert gru["median_step_solved_runs"] == 150 and math.isnan(gru["km_median_solved_step"])
    assert "median_step_solved_runs" not in format_frame(aggregate(load_runs(path)))


def test_headline_says_whether_a_longer_lag_bounds_the_claim(runs_csv):
    table = headline(aggregate(load_runs(runs_csv)))
    lstm, arm = row(table, cell="lstm", label=""), row(table, label="lstm_fb1")
    assert lstm["bounded"] and not arm["bounded"]  # lstm_fb1 was never tried beyond T=10
    assert (lstm["solve_rate_at_T_lo"], lstm["solve_rate_at_T_hi"]) == pytest.approx(
        wilson_interval(2, 3))
    text = format_frame(table)
    assert "≥ 10" in text and text.count("≥") == 1
    assert "≥ 10" in format_frame(table, "markdown")
    assert "≥" not in format_frame(table, "csv")  # the CSV keeps numbers and `bounded`


def test_rows_without_validation_columns_are_read(tmp_path):
    """A runs.csv written before the validation split (no val_* columns) still aggregates."""
    path = tmp_path / "runs.csv"
    old = [c for c in RUN_COLUMNS if not c.startswith("val_")]
    append_rows(path, RUNS[:3], old)
    board, _ = build(path)
    assert math.isnan(board.iloc[0]["val_solve_rate"]) and board.iloc[0]["n_seeds"] == 3
    assert "val" not in format_frame(board).splitlines()[0]


# -- selection on the validation set ---------------------------------------------------------------


def tuned(n, cell, seq_len, seed, lr, val_solved, val_ratio, ratio, solved_step=None, **extra):
    return run(n, cell, seq_len, seed, ratio, solved_step, lr=lr, val_solved=val_solved,
               val_loss_ratio=val_ratio, val_loss=None if val_ratio is None else val_ratio / 6,
               **extra)


#: per cell and T, three learning rates; the test set would choose otherwise than validation
TUNED = [
    # lstm T=10: lr 0.003 solves 2/2 on validation (1/2 on test); lr 0.001 1/2 on validation
    # (2/2 on test, which must not matter); lr 0.01 diverged
    tuned(1, "lstm", 10, 0, 0.001, True, 0.01, 0.01, 400),
    tuned(2, "lstm", 10, 1, 0.001, False, 0.5, 0.02, 900),
    tuned(3, "lstm", 10, 0, 0.003, True, 0.02, 0.03, 300),
    tuned(4, "lstm", 10, 1, 0.003, True, 0.03, 0.6),
    tuned(5, "lstm", 10, 0, 0.01, False, None, None, status="diverged"),
    tuned(6, "lstm", 10, 1, 0.01, False, None, None, status="diverged"),
    # rnn T=10: nothing solves; equal val solve rates: lowest val loss ratio (0.001) wins
    tuned(7, "rnn", 10, 0, 0.001, False, 0.8, 0.8),
    tuned(8, "rnn", 10, 1, 0.001, False, 0.9, 0.9),
    tuned(9, "rnn", 10, 0, 0.003, False, 0.95, 0.7),
    tuned(10, "rnn", 10, 1, 0.003, False, 0.95, 0.7),
    # rnn T=50: a tie in both: the smaller lr
    tuned(11, "rnn", 50, 0, 0.003, False, 1.0, 1.0),
    tuned(12, "rnn", 50, 0, 0.001, False, 1.0, 1.0),
]


@pytest.fixture
def tuned_csv(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, TUNED, RUN_COLUMNS)
    return path


def test_select_chooses_on_validation_and_reports_test(tuned_csv):
    board = aggregate(load_runs(tuned_csv))
    assert len(board) == 7
    lstm = row(board, cell="lstm", lr=0.003)
    assert lstm["val_solve_rate"] == 1 and lstm["val_loss_ratio_mean"] == pytest.approx(0.025)
    chosen = select(board, ["lr"])
    assert len(chosen) == 3
    lstm = row(chosen, cell="lstm")
    assert lstm["lr"] == 0.003 and lstm["solve_rate"] == 0.5  # test statistics of the chosen lr
    assert lstm["selected_from"] == "0.001 0.003 0.01"
    assert lstm["selection"].startswith("highest val solve rate")
    assert row(chosen, cell="rnn", seq_len=10)["lr"] == 0.001
    assert row(chosen, cell="rnn", seq_len=50)["lr"] == 0.001
    _, table = build(tuned_csv, select=["lr"])
    assert len(table) == 2  # one per cell: the chosen lr may differ per T
    assert row(table, cell="rnn")["seq_lens"] == "10 50"


def test_select_refuses_bad_keys_and_rows_without_validation(tuned_csv, tmp_path):
    for keys, message in ((["nope"], "cannot select over 'nope'; allowed: label, cell, impl"),
                          (["seq_len"], "cannot select over 'seq_len'")):
        with pytest.raises(ConfigError, match=message):
            build(tuned_csv, select=keys)
    assert build(tuned_csv, select=["lr", "lr"])[0].equals(build(tuned_csv, select=["lr"])[0])
    old = tmp_path / "old.csv"
    append_rows(old, RUNS, [c for c in RUN_COLUMNS if not c.startswith("val_")])
    with pytest.raises(ConfigError, match="--select needs validation results") as err:
        build(old, select=["lr"])
    assert "\n" not in str(err.value)


def test_cli_select(tuned_csv):
    result = CliRunner().invoke(cli, ["leaderboard", "--runs", str(tuned_csv), "--select", "lr"])
    assert result.exit_code == 0, result.output
    assert "chosen from" in result.output and "0.001 0.003 0.01" in result.output
    assert "highest val solve rate, then lowest val loss ratio" in result.output
    board = pd.read_csv(tuned_csv.parent / "leaderboard.csv")
    assert len(board) == 3 and {"selected_from", "selection"} <= set(board.columns)
    result = CliRunner().invoke(cli, ["leaderboard", "--runs", str(tuned_csv), "--select", "x\ny"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output


# -- comparison with a reference arm -----------------------------------------------------------------


def arm_runs(n0, label, cell, seq_len, solved, ratios, **extra):
    return [run(n0 + i, cell, seq_len, i, r, 500 if i < solved else None, label=label, **extra)
            for i, r in enumerate(ratios)]


def test_compare_with_a_reference_arm(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, [
        *arm_runs(0, "rnn_tanh", "rnn", 10, 0, [0.9, 0.95, 1.0, 1.01, 0.97]),
        *arm_runs(10, "irnn", "rnn", 10, 5, [0.01, 0.02, 0.03, 0.04, 0.05], init="identity"),
        *arm_runs(20, "lstm", "lstm", 10, 3, [0.05, 0.1, 0.2, 0.96, 0.99]),
        *arm_runs(30, "irnn", "rnn", 50, 1, [0.01, 0.9, 0.9], init="identity"),
        *arm_runs(40, "rnn_tanh", "rnn", 50, 0, [0.99, 1.0, 1.0]),
    ], RUN_COLUMNS)
    runs = load_runs(path)
    out = compare(runs, aggregate(runs), "rnn_tanh")
    assert list(zip(out["arm"], out["seq_len"])) == [("irnn", 10), ("irnn", 50), ("lstm", 10)]
    irnn = row(out, arm="irnn", seq_len=10)
    assert irnn["ref_arm"] == "rnn_tanh" and irnn["n_seeds"] == 5 and irnn["ref_n_seeds"] == 5
    assert irnn["solve_rate_diff"] == 1.0 and irnn["p_fisher"] == pytest.approx(0.00794, abs=1e-5)
    assert irnn["rank_effect"] == 1.0  # every irnn loss ratio is below every rnn_tanh one
    assert irnn["p_rank"] == pytest.approx(2 / 252)  # exact: 2 of the C(10, 5) splits as extreme
    lstm = row(out, arm="lstm")
    assert lstm["solve_rate_diff"] == pytest.approx(0.6) and lstm["p_fisher"] == pytest.approx(
        0.16667, abs=1e-4)
    # Holm over the two arms at T=10: the smaller p times 2, the larger times 1 (monotone)
    assert irnn["p_fisher_holm"] == pytest.approx(2 * irnn["p_fisher"])
    assert lstm["p_fisher_holm"] == pytest.approx(max(lstm["p_fisher"], 2 * irnn["p_fisher"]))
    # alone at T=50: nothing to adjust
    irnn50 = row(out, arm="irnn", seq_len=50)
    assert irnn50["p_fisher_holm"] == irnn50["p_fisher"] == 1.0
    text = format_frame(out)
    assert "reference" in text and "p_fisher (Holm)" in text and "+1.00" in text


def test_compare_matches_the_reference_row_on_the_keys_it_varies(tmp_path):
    """The reference arm ran at two hidden sizes: each arm row is compared with the same size."""
    path = tmp_path / "runs.csv"
    append_rows(path, [
        *arm_runs(0, "rnn_tanh", "rnn", 10, 0, [0.9, 0.9], hidden=32),
        *arm_runs(10, "rnn_tanh", "rnn", 10, 2, [0.1, 0.1], hidden=64),
        *arm_runs(20, "gru", "gru", 10, 2, [0.01, 0.01], hidden=32),
        *arm_runs(30, "gru", "gru", 10, 2, [0.01, 0.01], hidden=64),
        *arm_runs(40, "gru", "gru", 10, 2, [0.01, 0.01], hidden=128),  # no reference: left out
    ], RUN_COLUMNS)
    runs = load_runs(path)
    out = compare(runs, aggregate(runs), "rnn_tanh")
    assert list(out["hidden"]) == [32, 64]
    assert list(out["solve_rate_diff"]) == [1.0, 0.0]


def test_cli_against(tuned_csv, tmp_path):
    runner = CliRunner()
    args = ["leaderboard", "--runs", str(tuned_csv), "--against", "rnn"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Against rnn" in result.output
    written = pd.read_csv(tuned_csv.parent / "leaderboard_against_rnn.csv")
    # without --select the reference's lrs vary: each lstm row meets the rnn row of its lr, and
    # lr 0.01 (no rnn run) is left out
    assert set(written["arm"]) == {"lstm"} and list(written["lr"]) == [0.001, 0.003]
    result = runner.invoke(cli, [*args, "--select", "lr", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("task,") and "ref_arm" in result.output.splitlines()[0]
    written = pd.read_csv(tuned_csv.parent / "leaderboard_against_rnn.csv")
    assert len(written) == 1 and written.iloc[0]["lr"] == 0.003  # the selected configurations
    result = runner.invoke(cli, ["leaderboard", "--runs", str(tuned_csv), "--against", "tanh"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "unknown arm 'tanh' for --against; arms: lstm, rnn" in result.output
    assert build_comparison(tuned_csv, "lstm", task="adding").iloc[0]["arm"] == "rnn"


def test_the_selected_value_is_always_shown_even_when_each_arm_has_one(tmp_path):
    """After selection every arm has a single lr, which would make it look 'implied by the label'
    and hide it; the chosen value is the point of the table."""
    from seqbench.leaderboard import build, display_columns

    path = tmp_path / "runs.csv"
    rows = []
    for lr in (1e-3, 3e-3):
        for label, cell in (("a", "rnn"), ("b", "gru")):
            rows.append(run(len(rows), cell, 10, 0, 0.5, None, label=label, lr=lr,
                            val_solved=lr == 3e-3, val_loss_ratio=0.4))
    append_rows(path, rows, RUN_COLUMNS)
    board, _ = build(path, select=["lr"])
    assert list(board["lr"]) == [3e-3, 3e-3] and set(board["selected_keys"]) == {"lr"}
    assert "lr" in display_columns(board)


def test_selected_runs_are_the_runs_behind_the_selected_rows(tmp_path):
    from seqbench.leaderboard import selected_runs

    path = tmp_path / "runs.csv"
    rows = []
    for lr in (1e-3, 3e-3):
        for seed in range(2):
            rows.append(run(len(rows), "rnn", 10, seed, 0.5, None, label="a", lr=lr,
                            val_solved=lr == 1e-3, val_loss_ratio=0.4))
    append_rows(path, rows, RUN_COLUMNS)
    kept = selected_runs(path, ["lr"])
    assert sorted(kept["run_id"]) == ["r0", "r1"] and set(kept["lr"]) == {1e-3}
    assert len(selected_runs(path, [])) == 4  # nothing selected: every run


def test_plot_decay_select_needs_the_runs_csv(tmp_path):
    from click.testing import CliRunner

    from seqbench.cli import cli

    (tmp_path / "grads.csv").write_text("x\n")
    result = CliRunner().invoke(cli, ["plot", "decay", str(tmp_path / "grads.csv"), "--select",
                                      "lr", "-o", str(tmp_path / "f.png")])
    assert result.exit_code == 2 and result.output.startswith("Error: --select needs --runs")


def test_a_run_stopped_on_an_unconfirmed_validation_result_is_censored_where_it_stopped():
    """Kaplan-Meier inputs: solved at solved_step; unsolved at the budget; a run whose validation
    set met the criterion but whose test set did not stopped training early: censored there."""
    import pandas as pd

    from seqbench.leaderboard import km_inputs

    runs = pd.DataFrame({
        "status": ["ok", "ok", "ok", "diverged"],
        "solved": ["True", "False", "False", "False"],
        "val_solved": ["True", "True", "False", "False"],
        "solved_step": [400, 300, None, None],
        "steps_taken": [400, 300, 3000, 1200],
        "step_budget": [3000, 3000, 3000, 3000],
    })
    times, events = km_inputs(runs)
    assert list(times) == [400, 300, 3000, 3000]
    assert list(events) == [True, False, False, False]


# -- what the printed tables say (issue 15) -------------------------------------------------------


def _column(text: str, header: str) -> list[str]:
    """The cells of one column of a markdown table."""
    lines = text.splitlines()
    names = [c.strip() for c in lines[0].strip("|").split("|")]
    i = names.index(header)
    return [[c.strip() for c in line.strip("|").split("|")][i] for line in lines[2:]]


def test_nonlinearity_is_blank_for_cells_without_a_choice(tmp_path):
    """The Elman rnn's class lists several nonlinearities; LSTM's and GRU's one: a table shows
    'tanh' on the rnn row only (the CSV keeps every value)."""
    from seqbench.cells import cell_class

    assert len(cell_class("rnn").nonlinearities) > 1 and len(cell_class("lstm").nonlinearities) == 1
    path = tmp_path / "runs.csv"
    append_rows(path, [run(1, "rnn", 10, 0, 0.5), run(2, "rnn", 10, 0, 0.5, nonlinearity="relu"),
                       run(3, "lstm", 10, 0, 0.5), run(4, "gru", 10, 0, 0.5)], RUN_COLUMNS)
    board, _ = build(path)
    text = format_frame(board, "markdown")
    cells, nonlinearity = _column(text, "cell"), _column(text, "nonlinearity")
    assert sorted(zip(cells, nonlinearity)) == [("gru", ""), ("lstm", ""), ("rnn", "relu"),
                                                ("rnn", "tanh")]
    assert set(board["nonlinearity"]) == {"tanh", "relu"}  # the CSV's values are unchanged


def test_regression_accuracy_is_not_shown_as_a_score(tmp_path):
    """adding's accuracy (fraction within 0.04) of a solved run is ~0.3: the table says n/a on
    adding rows and shows the accuracy of a classification task; the CSV keeps both."""
    from seqbench.leaderboard import ACCURACY_NOTE
    from seqbench.tasks import task_class

    assert task_class("adding").kind == "regression" and task_class("copy").kind != "regression"
    path = tmp_path / "runs.csv"
    append_rows(path, [run(1, "lstm", 10, 0, 0.01, 300, accuracy=0.33),
                       run(2, "lstm", 10, 0, 0.01, 300, task="copy", variant="arjovsky",
                           accuracy=0.995)], RUN_COLUMNS)
    board, _ = build(path)
    text = format_frame(board, "markdown")
    shown = dict(zip(_column(text, "task"), _column(text, "accuracy (classif.)")))
    assert shown == {"adding": "n/a", "copy": "0.995"}
    assert sorted(board["accuracy_mean"]) == [0.33, 0.995]
    assert "regression" in ACCURACY_NOTE and "tolerance" in ACCURACY_NOTE
    result = CliRunner().invoke(cli, ["leaderboard", "--runs", str(path)])
    assert result.exit_code == 0 and ACCURACY_NOTE in result.output


def test_duplicate_runs_count_once_and_warn_once(tmp_path):
    """The same configuration and seed run twice: one run (the last row) in the statistics, and
    one warning saying how many rows repeat, even though the command reads the file 3 times."""
    import warnings

    path = tmp_path / "runs.csv"
    rows = [run(1, "lstm", 10, 0, 0.9), run(2, "lstm", 10, 1, 0.5), run(3, "rnn", 10, 0, 0.5),
            run(4, "lstm", 10, 0, 0.1, 300), run(5, "lstm", 10, 1, 0.4)]
    append_rows(path, rows, RUN_COLUMNS)
    with pytest.warns(DuplicateRunsWarning, match=r"2 duplicate row\(s\): 2 run\(s\)"):
        board = aggregate(load_runs(path))
    lstm = row(board, cell="lstm")
    assert lstm["n_seeds"] == 2 and lstm["loss_ratio_mean"] == pytest.approx(0.25)
    path.touch()  # a new read of the file: warned again, once per command
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result = CliRunner().invoke(cli, ["leaderboard", "--runs", str(path), "--task", "adding",
                                          "--against", "rnn"])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if "duplicate row" in line]
    assert len(warned) == 1 and warned[0].startswith("Warning: "), warned


def test_a_failed_run_and_its_retry_are_no_duplicate(runs_csv):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DuplicateRunsWarning)
        load_runs(runs_csv)  # run 6 failed, run 7 retried it: the resume path, no warning
