"""`seqbench published`: the spec's published tables, matching runs by identity, outcomes, agreement."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from click.testing import CliRunner

from seqbench.cli import cli
from seqbench.errors import ConfigError
from seqbench.published import arm_outcome, compare, run_outcome
from seqbench.results import RUN_COLUMNS, append_rows
from seqbench.spec import load_spec

SPEC = """
description = "two published results"
default_profile = "cpu"
[settings]
task = "adding"
variant = "anywhere"
seq_len = 20
hidden = 8
[grid]
seed = [0, 1, 2]
[[arms]]
name = "lstm_plateau"
cell = "lstm"
[[arms]]
name = "gru_solves"
cell = "gru"
[[arms]]
name = "rnn_partial"
cell = "rnn"
[profiles.cpu]
settings = { steps = 100 }
[profiles.paper]
settings = { steps = 1000 }
[published.lstm_plateau]
paper = "Bai, Kolter & Koltun 2018"
source = "Table 1"
metric = "test_loss"
value = 0.164
outcome = "baseline"
verified = true
[published.gru_solves]
paper = "Bai, Kolter & Koltun 2018"
source = "Table 1"
metric = "test_loss"
value = 5.3e-5
outcome = "solved"
[published.rnn_partial]
paper = "Somebody 2020"
source = "Figure 2"
metric = "outcome"
outcome = "partial"
"""


def _spec(tmp_path, text=SPEC):
    path = tmp_path / "papers.toml"
    path.write_text(text)
    return path


def _rows(configs, losses, solved):
    return [{"run_id": f"r{i}", "config_id": c.config_id(), "task": c.task, "seq_len": c.seq_len,
             "label": c.label, "seed": c.seed, "status": "ok", "final_loss": loss,
             "baseline_loss": 1 / 6, "loss_ratio": loss * 6, "solved": s}
            for i, (c, loss, s) in enumerate(zip(configs, losses, solved))]


def test_outcome_rules():
    assert run_outcome(True, 0.01) == "solved"
    assert run_outcome(False, 0.95) == run_outcome(False, math.nan) == "baseline"
    assert run_outcome(False, 0.5) == "partial"
    assert arm_outcome(2, 3, 0.9) == "solved" and arm_outcome(1, 3, 0.5) == "partial"
    assert arm_outcome(1, 3, 0.99) == "baseline" and arm_outcome(0, 0, math.nan) == ""


def test_compare_matches_runs_of_the_profile_and_states_agreement(tmp_path):
    spec = load_spec(_spec(tmp_path))
    cpu = spec.expand("cpu")
    lstm = [c for c in cpu if c.label == "lstm_plateau"]
    gru = [c for c in cpu if c.label == "gru_solves"]
    paper_lstm = [c for c in spec.expand("paper") if c.label == "lstm_plateau"]
    runs = tmp_path / "runs.csv"
    rows = (_rows(lstm, [0.165, 0.160, 0.166], [False] * 3)
            + _rows(gru, [0.001, 0.2, 0.002], [True, False, True])
            + _rows(paper_lstm[:1], [0.001], [True]))  # another profile: must not count
    append_rows(runs, rows, RUN_COLUMNS)
    table = compare(spec, runs, "cpu").set_index("arm")
    a = table.loc["lstm_plateau"]
    assert a["n_seeds"] == 3 and a["n_solved"] == 0 and a["measured_outcome"] == "baseline"
    assert a["agreement"] == "agree" and a["loss_median"] == pytest.approx(0.165)
    assert a["published_ratio"] == pytest.approx(0.164 * 6)  # adding's baseline is 1/6
    assert (a["loss_min"], a["loss_max"]) == (0.160, 0.166)
    g = table.loc["gru_solves"]
    assert g["n_solved"] == 2 and g["measured_outcome"] == "solved" and g["agreement"] == "agree"
    assert 0 < g["solve_rate_lo"] < 2 / 3 < g["solve_rate_hi"] < 1  # Wilson interval of 2/3
    r = table.loc["rnn_partial"]
    assert r["agreement"] == "not run" and r["n_seeds"] == 0 and math.isnan(r["published_value"])


def test_a_different_outcome_is_a_disagreement(tmp_path):
    spec = load_spec(_spec(tmp_path))
    gru = [c for c in spec.expand() if c.label == "gru_solves"]
    runs = tmp_path / "runs.csv"
    append_rows(runs, _rows(gru, [0.16, 0.17, 0.05], [False] * 3), RUN_COLUMNS)
    g = compare(spec, runs).set_index("arm").loc["gru_solves"]
    assert g["measured_outcome"] == "baseline" and g["agreement"] == "disagree"


@pytest.mark.parametrize("edit,word", [
    (('[published.rnn_partial]', '[published.nobody]'), "no arm named"),
    (('outcome = "partial"', 'outcome = "great"'), "solved, partial, baseline"),
    (('metric = "outcome"', 'metric = "accuracy"'), "test_loss, outcome"),
    (('value = 0.164\n', ''), "value is missing"),
    (('source = "Figure 2"', 'source = 2'), "source must be a string"),
    (('source = "Figure 2"', 'page = 2'), "unknown key"),
])
def test_malformed_published_tables_are_one_line_errors(tmp_path, edit, word):
    with pytest.raises(ConfigError, match=word):
        load_spec(_spec(tmp_path, SPEC.replace(*edit)))


def test_cli_prints_the_table_and_writes_the_csv_before_anything_ran(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "papers" / "published.csv"
    result = CliRunner().invoke(cli, ["published", "--spec", str(spec), "--runs",
                                      str(tmp_path / "papers" / "runs.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "0.164 (baseline)" in result.output and "3 published results: 3 not run" in result.output
    written = pd.read_csv(out)
    assert list(written["arm"]) == ["lstm_plateau", "gru_solves", "rnn_partial"]


def test_shipped_papers_spec_has_at_least_ten_published_results():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tasks" / "papers.toml"
    spec = load_spec(path)
    assert len(spec.published) >= 10
    papers = {p["paper"] for p in spec.published.values()}
    assert len(papers) >= 4  # Bai 2018, Arjovsky 2016, Le 2015, Tallec 2018
    for name in spec.profile_names:
        assert spec.expand(name)  # every profile's runs are valid
    table = compare(spec, None)  # before anything ran: every published result, "not run"
    assert len(table) >= 10 and set(table["agreement"]) == {"not run"}
