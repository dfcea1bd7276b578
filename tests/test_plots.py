"""Figures of run results: each renders a PNG from small data, with a title, labelled axes and a
legend, and keeps each cell's colour."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from matplotlib.colors import to_hex

from seqbench.cli import cli
from seqbench.plots import output_path, save
from seqbench.plots.runs import curves_figure, loss_figure, solve_rate_figure
from seqbench.results import RUN_COLUMNS, append_rows
from seqbench.style import cell_color

PNG = b"\x89PNG\r\n\x1a\n"
BASE = dict(variant="halves", impl="builtin", hidden=64, layers=1, nonlinearity="tanh", lr=0.001,
            clip=1.0, batch_size=64, step_budget=3000, status="ok", baseline_loss=1 / 6,
            accuracy=0.5, throughput_seq_s=100.0)


def rows(task="adding", cells=("rnn", "lstm", "gru"), seq_lens=(10, 25, 50), seeds=(0, 1),
         labels=("",)):
    out = []
    for label in labels:
        for cell in cells:
            for i, T in enumerate(seq_lens):
                for seed in seeds:
                    solved = cell != "rnn" and (seed == 0 or i == 0)
                    out.append({**BASE, "task": task, "cell": cell, "seq_len": T, "seed": seed,
                                "label": label, "config_id": f"{task}{cell}{T}{seed}{label}",
                                "loss_ratio": 0.01 if solved else 0.9 + 0.05 * seed,
                                "solved": solved, "solved_step": 500 if solved else None})
    return out


@pytest.fixture
def runs_csv(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, rows() + rows(task="copy", seq_lens=(10, 25)), RUN_COLUMNS)
    return path


def check(fig, tmp_path, name="fig.png"):
    for ax in fig.axes:
        assert ax.get_title(), "every panel has a title"
        assert ax.get_xlabel() and ax.get_ylabel(), "both axes are labelled"
        assert ax.get_legend() is not None, "every panel has a legend"
        assert ax.get_legend().get_texts()
    path = save(fig, tmp_path / name)
    assert path.read_bytes()[:8] == PNG
    return path


def line_colors(ax) -> dict[str, str]:
    return {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_solve_rate_figure(runs_csv, tmp_path):
    fig = solve_rate_figure(runs_csv)
    assert len(fig.axes) == 2  # one panel per task
    check(fig, tmp_path)
    ax = fig.axes[0]
    assert "adding" in ax.get_title() and "lag T" in ax.get_xlabel()
    assert "fraction" in ax.get_ylabel()
    colors = line_colors(ax)
    assert colors == {c: cell_color(c) for c in ("rnn", "lstm", "gru")}
    rnn = next(line for line in ax.get_lines() if line.get_label() == "rnn")
    assert list(rnn.get_xdata()) == [10, 25, 50] and list(rnn.get_ydata()) == [0, 0, 0]
    lstm = next(line for line in ax.get_lines() if line.get_label() == "lstm")
    assert list(lstm.get_ydata()) == [1.0, 0.5, 0.5]


def test_loss_figure_is_log_with_the_baseline(runs_csv, tmp_path):
    fig = loss_figure(runs_csv, task="adding")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "baseline" in ax.get_ylabel()
    assert any("baseline" in t.get_text() for t in ax.get_legend().get_texts())
    check(fig, tmp_path)


def test_many_configurations_at_one_lag_become_bars(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, rows(cells=("rnn",), seq_lens=(25,), labels=("rnn_tanh", "irnn", "rnn_he"))
                + rows(cells=("lstm",), seq_lens=(25,), labels=("lstm_fb1",)), RUN_COLUMNS)
    for figure in (solve_rate_figure, loss_figure):
        fig = figure(path)
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["irnn", "rnn_he", "rnn_tanh",
                                                                "lstm_fb1"]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["rnn", "lstm"]
        assert "T=25" in ax.get_title()
        check(fig, tmp_path, f"{figure.__name__}.png")


def fake_run(root, name, cell, seed, task="adding", seq_len=10):
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({
        "task": task, "variant": None, "seq_len": seq_len, "seed": seed, "label": "",
        "cell": {"cell": cell, "impl": "builtin", "hidden": 8, "layers": 1}}))
    (run_dir / "curve.csv").write_text(
        "step,train_loss,eval_loss,accuracy,grad_norm,elapsed_s\n"
        "0,,0.2,0.1,,0.0\n100,0.15,0.1,0.3,1.0,1.0\n200,0.1,0.01,0.9,1.0,2.0\n")
    return run_dir


def test_curves_figure(tmp_path):
    dirs = [fake_run(tmp_path, f"r{i}", cell, seed)
            for i, (cell, seed) in enumerate([("gru", 0), ("rnn", 1), ("rnn", 0)])]
    fig = curves_figure(dirs)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "training step" in ax.get_xlabel()
    labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["rnn seed 0", "rnn seed 1", "gru seed 0", "memoryless baseline"]
    rnn0 = ax.get_lines()[0]
    assert list(rnn0.get_ydata()) == pytest.approx([0.2 * 6, 0.1 * 6, 0.01 * 6])  # loss / (1/6)
    check(fig, tmp_path)
    acc = curves_figure(dirs, metric="accuracy")
    assert "accuracy" in acc.axes[0].get_ylabel()
    check(acc, tmp_path, "acc.png")


def test_cli_plot_commands(runs_csv, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["plot", "solve-rate", str(runs_csv)])
    assert result.exit_code == 0, result.output
    assert (runs_csv.parent / "figures" / "solve_rate.png").read_bytes()[:8] == PNG
    out = tmp_path / "loss"  # no suffix: PNG
    result = runner.invoke(cli, ["plot", "loss", str(runs_csv), "--task", "copy", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG
    svg = tmp_path / "s.svg"
    assert runner.invoke(cli, ["plot", "solve-rate", str(runs_csv), "-o", str(svg)]).exit_code == 0
    assert svg.read_text().lstrip().startswith("<?xml")

    dirs = [fake_run(tmp_path / "runs", f"r{s}", "lstm", s) for s in (0, 1)]
    result = runner.invoke(cli, ["plot", "curves", *map(str, dirs), "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG


def test_cli_plot_errors_are_one_line(runs_csv, tmp_path):
    runner = CliRunner()
    for args in (["solve-rate", str(runs_csv), "-o", str(tmp_path / "f.xyz")],
                 ["loss", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "f.png")],
                 ["curves", str(tmp_path)],
                 ["curves", str(runs_csv), "--seq-len", "999", "-o", str(tmp_path / "f.png")]):
        result = runner.invoke(cli, ["plot", *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert not list(tmp_path.glob("f.*"))


def test_output_path():
    assert output_path("a/b").name == "b.png"
    assert output_path("x.PDF").suffix == ".PDF"


def test_solved_figure_is_one_minus_kaplan_meier(tmp_path):
    """Per task and T, one step line per configuration; unsolved runs censored at their budget."""
    from seqbench.plots.runs import solved_figure

    path = tmp_path / "runs.csv"
    data = [{**BASE, "task": "adding", "cell": "lstm", "seq_len": 10, "seed": s, "label": "",
             "config_id": f"l{s}", "loss_ratio": 0.01 if step else 0.9, "solved": bool(step),
             "solved_step": step, "step_budget": 1000}
            for s, step in enumerate([200, 400, None, None])]
    data.append({**data[0], "cell": "rnn", "config_id": "r0", "seed": 0, "solved": False,
                 "solved_step": None, "status": "diverged", "loss_ratio": None})
    append_rows(path, data, RUN_COLUMNS)
    fig = solved_figure(path)
    check(fig, tmp_path)
    (ax,) = fig.axes
    assert "T=10" in ax.get_title() and "step" in ax.get_xlabel() and "Kaplan" in ax.get_ylabel()
    lstm = next(line for line in ax.get_lines() if line.get_label().startswith("lstm"))
    assert lstm.get_label() == "lstm (2/4 solved)"
    assert list(lstm.get_xdata()) == [0, 200, 400, 1000]
    assert list(lstm.get_ydata()) == pytest.approx([0, 0.25, 0.5, 0.5])
    assert to_hex(lstm.get_color()) == cell_color("lstm")
    marks = [line for line in ax.get_lines() if line.get_marker() == "|" and len(line.get_xdata())]
    assert sorted(float(m.get_xdata()[0]) for m in marks) == [1000, 1000]  # lstm and the diverged rnn

    result = CliRunner().invoke(cli, ["plot", "solved", str(path), "-o", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG
    result = CliRunner().invoke(cli, ["plot", "solved", str(path), "--task", "copy"])
    assert result.exit_code == 2 and result.output.startswith("Error: no runs of task 'copy'")


# -- intervals and selection on the validation set ----------------------------------------------------

LRS = (0.001, 0.01)


def lr_rows(seq_lens=(10, 50), cells=("rnn", "lstm"), seeds=(0, 1, 2)):
    """A learning-rate grid with validation results: the better lr differs from one T to the
    next (lstm: 0.01 at T=10, 0.001 at T=50), so a line per arm must take both."""
    out = []
    for cell in cells:
        for lr in LRS:
            for T in seq_lens:
                good = cell == "lstm" and (lr == 0.01) == (T == min(seq_lens))
                for seed in seeds:
                    solved = good or (cell == "lstm" and seed == 0)
                    ratio = 0.01 * (1 + seed) if solved else 0.9 + 0.05 * seed
                    out.append({**BASE, "task": "adding", "cell": cell, "lr": lr, "seq_len": T,
                                "seed": seed, "label": "", "config_id": f"{cell}{lr}{T}{seed}",
                                "loss_ratio": ratio, "solved": solved,
                                "solved_step": 100 * (1 + seed) if solved else None,
                                "val_solved": solved, "val_loss_ratio": ratio * 1.1})
    return out


@pytest.fixture
def lr_csv(tmp_path):
    path = tmp_path / "lr_runs.csv"
    append_rows(path, lr_rows(), RUN_COLUMNS)
    return path


def labelled_lines(ax) -> list:
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def board_row(board, cell, T):
    return board[(board["cell"] == cell) & (board["seq_len"] == T)].iloc[0]


def test_solve_rate_band_is_the_wilson_interval(lr_csv, tmp_path):
    from seqbench.leaderboard import aggregate, load_runs

    fig = solve_rate_figure(lr_csv)
    check(fig, tmp_path)
    (ax,) = fig.axes
    assert "95% Wilson interval" in ax.get_title()
    assert len(labelled_lines(ax)) == 4  # 2 arms x 2 lrs without selection
    board = aggregate(load_runs(lr_csv))
    board = board[board["lr"] == 0.01]
    name = "lstm, lr=0.01"
    (band,) = [c for c in ax.collections if c.get_gid() == f"wilson: {name}"]
    assert to_hex(band.get_facecolor()[0][:3]) == cell_color("lstm")
    vertices = band.get_paths()[0].vertices
    for T in (10, 50):
        row = board_row(board, "lstm", T)
        ys = sorted({round(float(y), 12) for x, y in vertices if x == T})
        assert ys == pytest.approx(sorted({row["solve_rate_lo"], row["solve_rate_hi"]}))
        assert row["solve_rate_lo"] < row["solve_rate_hi"]  # a band, not a line


def test_loss_bars_are_the_bootstrap_interval(lr_csv, tmp_path):
    from seqbench.leaderboard import aggregate, load_runs, select

    fig = loss_figure(lr_csv, select=["lr"])
    check(fig, tmp_path)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert "mean, 95% bootstrap interval" in ax.get_title()
    assert "lr selected on validation" in ax.get_title()
    board = select(aggregate(load_runs(lr_csv)), ["lr"])
    (lstm,) = [c for c in ax.containers if c.get_label() == "lstm"]
    segments = lstm.lines[2][0].get_segments()
    assert len(segments) == 2  # one bar per T
    for (x0, y0), (_x1, y1) in segments:
        row = board_row(board, "lstm", x0)
        assert (y0, y1) == pytest.approx((row["loss_ratio_ci_lo"], row["loss_ratio_ci_hi"]))
        assert y0 > 0


def test_select_draws_one_series_per_arm(lr_csv, tmp_path):
    from seqbench.leaderboard import aggregate, load_runs, select

    board = select(aggregate(load_runs(lr_csv)), ["lr"])
    assert set(board_row(board, "lstm", T)["lr"] for T in (10, 50)) == set(LRS)  # lr per T
    fig = solve_rate_figure(lr_csv, select=("lr",))
    check(fig, tmp_path)
    (ax,) = fig.axes
    lines = labelled_lines(ax)
    assert [line.get_label() for line in lines] == ["rnn", "lstm"]  # arms, not arms x lrs
    assert "lr selected on validation" in ax.get_title()
    lstm = lines[1]
    assert list(lstm.get_ydata()) == pytest.approx(
        [board_row(board, "lstm", T)["solve_rate"] for T in (10, 50)])
    loss = loss_figure(lr_csv, select=("lr",))
    assert len([c for c in loss.axes[0].containers if not c.get_label().startswith("_")]) == 2


def test_select_at_one_lag_bars_with_wilson_error_bars(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, lr_rows(seq_lens=(25,)), RUN_COLUMNS)
    fig = solve_rate_figure(path, select=["lr"])
    check(fig, tmp_path)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == ["rnn [lr=0.001]", "lstm [lr=0.01]"]  # one bar per arm, its chosen lr
    bars = [c for c in ax.containers if hasattr(c, "errorbar") and c.errorbar is not None]
    assert len(bars) == 2
    assert [t.get_text() for t in ax.texts] == ["0/3", "3/3"]
    assert "95% Wilson interval" in ax.get_title() and "lr selected" in ax.get_title()


def test_solved_figure_with_select_keeps_the_chosen_runs(lr_csv, tmp_path):
    from seqbench.plots.runs import solved_figure

    fig = solved_figure(lr_csv, select=["lr"])
    check(fig, tmp_path)
    for ax, T, lr in zip(fig.axes, (10, 50), (0.01, 0.001)):
        assert f"T={T}" in ax.get_title() and "lr selected on validation" in ax.get_title()
        curves = [line.get_label() for line in labelled_lines(ax)
                  if "solved)" in line.get_label()]
        assert curves[1] == f"lstm [lr={lr}] (3/3 solved)"  # the chosen lr's runs only
        assert len(curves) == 2


def test_cli_select(lr_csv, runs_csv, tmp_path):
    runner = CliRunner()
    for command in ("solve-rate", "loss", "solved"):
        out = tmp_path / f"{command}.png"
        result = runner.invoke(cli, ["plot", command, str(lr_csv), "--select", "lr",
                                     "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_bytes()[:8] == PNG
        for args, error in ((["--select", "bogus"], "Error: cannot select over 'bogus'"),
                            (["--select", "seq_len"], "Error: cannot select over 'seq_len'")):
            result = runner.invoke(cli, ["plot", command, str(lr_csv), *args,
                                         "-o", str(tmp_path / "bad.png")])
            assert result.exit_code == 2, result.output
            assert result.output.startswith(error) and result.output.count("\n") == 1
    # rows without validation results cannot be selected on
    result = runner.invoke(cli, ["plot", "loss", str(runs_csv), "--select", "lr",
                                 "-o", str(tmp_path / "bad.png")])
    assert result.exit_code == 2 and result.output.startswith("Error: --select needs validation")
    assert result.output.count("\n") == 1
    assert not (tmp_path / "bad.png").exists()


def test_selected_figures_get_their_own_default_file_name(tmp_path):
    from seqbench.cli.plot import _runs_figure_output

    runs = tmp_path / "runs.csv"
    assert _runs_figure_output(None, str(runs), "solve_rate", None).name == "solve_rate.png"
    assert _runs_figure_output(None, str(runs), "solve_rate", "adding", ("lr",)).name == \
        "solve_rate_adding_lr_selected.png"


def test_every_registered_cell_has_a_family_column():
    """plot decay --by-family draws one column per family: a family without one would drop its
    series silently."""
    from seqbench.cells import cell_names
    from seqbench.plots.decay import FAMILIES, family

    for name in cell_names():
        row = {"cell": name, "norm": "none", "init": "default", "init_gain": 1.0,
               "nonlinearity": None, "layers": 1}
        assert family(row) in FAMILIES or (name == "rnn" and family(row) == "")
