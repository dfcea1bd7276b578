"""``seqbench curse`` and ``seqbench plot curse``: the curse-of-memory scan from the command line
(the measurement itself is tested in test_dynamics.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from clihelp import invoke

from seqbench.dynamics.curse import CURSE_COLUMNS

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
