"""``seqbench curse`` and ``seqbench plot curse``: the curse-of-memory scan from the command line
(the measurement itself is tested in test_dynamics.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from clihelp import invoke

from seqbench.dynamics.curse import CURSE_CELLS, CURSE_COLUMNS, curse_bytes, curse_of_memory

SMALL = ["curse", "--steps", "120", "--batch", "48", "--hidden", "3", "--memory", "0.5",
         "--memory", "0.95", "-q"]


def test_curse_writes_one_row_per_model_memory_and_parameter(tmp_path):
    result = invoke([*SMALL, "-o", "c.csv"], tmp_path)
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "c.csv")
    assert list(rows.columns) == CURSE_COLUMNS
    # linear, rnn, lstm: one recurrent parameter; lru: nu_log and theta_log
    assert len(rows) == 2 * 5 and set(rows["cell"]) == {"linear", "rnn", "lstm", "lru"}
    assert (rows["git_commit"].astype(str) != "").all() and set(rows["device"]) == {"cpu"}
    linear = rows[rows["cell"] == "linear"].set_index("memory")
    # the closed form (Monte Carlo over 48 sequences: the tolerance of test_dynamics)
    np.testing.assert_allclose(linear["value"], linear["theory"], rtol=0.25)
    assert linear.loc[0.95, "value"] > 5 * linear.loc[0.5, "value"]  # the memory's cost
    again = invoke([*SMALL, "--cell", "linear", "-o", "c.csv"], tmp_path)  # appends
    assert again.exit_code == 0 and len(pd.read_csv(tmp_path / "c.csv")) == 12


def test_bad_memory_or_model_is_a_one_line_error(tmp_path):
    for args, words in ((["--memory", "1"], "--memory must lie in (0, 1)"),
                        (["--memory", "0"], "--memory must lie in (0, 1)"),
                        (["--cell", "gru"], "'gru' is not one of")):
        result = invoke(["curse", *args, "-o", "c.csv"], tmp_path)
        assert result.exit_code != 0 and words in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "c.csv").exists()


def test_plot_curse_draws_the_scan(tmp_path):
    assert invoke([*SMALL, "--cell", "linear", "--cell", "lru", "-o", "c.csv"],
                  tmp_path).exit_code == 0
    result = invoke(["plot", "curse", "c.csv", "-o", "curse.png"], tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curse.png").stat().st_size > 10_000
    pd.DataFrame({"a": [1]}).to_csv(tmp_path / "other.csv", index=False)
    wrong = invoke(["plot", "curse", "other.csv"], tmp_path)
    assert wrong.exit_code != 0 and "not a curse-of-memory CSV" in wrong.output


def test_the_command_offers_the_functions_models_and_default_memories():
    import inspect

    from seqbench.cli.curse import CURSE_MODELS, curse

    assert CURSE_MODELS == CURSE_CELLS  # a copy, so that the CLI does not import torch
    default = inspect.signature(curse_of_memory).parameters["memories"].default
    memory = next(p for p in curse.params if p.name == "memories")
    assert ", ".join(f"{m:g}" for m in default) in memory.help  # the help names the real default


def test_a_scan_over_the_memory_limit_is_a_one_line_error(tmp_path, monkeypatch):
    assert curse_bytes(CURSE_CELLS, 1000, 64, 16, 16) < 2**30  # the defaults: about 0.5 GB
    monkeypatch.setenv("SEQBENCH_MEMORY_LIMIT_GB", "1")
    result = invoke(["curse", "--cell", "lstm", "--hidden", "100000", "-o", "c.csv"], tmp_path)
    assert result.exit_code == 2 and "of memory (estimate)" in result.output, result.output
    assert "--hidden" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "c.csv").exists()


def test_a_scan_under_a_decade_has_plain_ticks(tmp_path):
    from matplotlib.ticker import FuncFormatter

    from seqbench.plots.curse import curse_figure

    assert invoke(["curse", "--cell", "linear", "--steps", "50", "--batch", "8", "--memory",
                   "0.5", "--memory", "0.8", "-q", "-o", "c.csv"], tmp_path).exit_code == 0
    ax = curse_figure([str(tmp_path / "c.csv")]).axes[0]  # 1 / (1 - m) from 2 to 5
    assert isinstance(ax.xaxis.get_major_formatter(), FuncFormatter)


def test_a_scan_over_one_to_three_decades_labels_1_2_5_only(tmp_path):
    from matplotlib.ticker import NullFormatter

    from seqbench.plots.curse import curse_figure

    memory = [0.5, 0.9, 0.97]  # 1 / (1 - m) from 2 to 33: matplotlib would label 3x10^0, 4x10^0
    pd.DataFrame({"cell": "linear", "param": "weight_hh", "memory": memory, "steps": 200,
                  "value": [2.0, 18.0, 110.0], "theory": [1.7, 16.0, 97.0]}).to_csv(
        tmp_path / "c.csv", index=False)
    fig = curse_figure([str(tmp_path / "c.csv")])
    fig.canvas.draw()
    ax = fig.axes[0]
    assert isinstance(ax.xaxis.get_minor_formatter(), NullFormatter)
    lo, hi = sorted(ax.get_xlim())
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert [float(t) for t in labels if lo <= float(t) <= hi] == [2, 5, 10, 20], labels


def test_plot_curse_skips_rows_it_cannot_draw(tmp_path):
    rows = pd.DataFrame({"cell": "linear", "param": "weight_hh", "memory": ["0.5", "0.9", "1"],
                         "steps": 200, "value": [2.0, 18.0, 1.0], "theory": [1.7, 16.0, 1.0]})
    rows.to_csv(tmp_path / "c.csv", index=False)
    rows.assign(memory="x").to_csv(tmp_path / "x.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # the suite turns warnings into errors; a user sees them
        some = invoke(["plot", "curse", "c.csv", "-o", "c.png"], tmp_path)
        none = invoke(["plot", "curse", "x.csv", "-o", "x.png"], tmp_path)
    assert some.exit_code == 0, some.output
    assert "Warning: 1 row(s) without a memory in (0, 1)" in some.output
    assert (tmp_path / "c.png").exists()
    assert none.exit_code == 2 and "Traceback" not in none.output, none.output
    assert none.output.strip().splitlines()[-1] == "Error: no curse-of-memory rows to draw"
    assert not (tmp_path / "x.png").exists()
