"""`seqbench compare`: the settings that differ, the metrics from runs.csv, the overlaid curves,
and its bad input."""

import csv

import pytest
from click.testing import CliRunner

from seqbench.cli import cli
from seqbench.compare import differences, load_run, metric_rows

FAST = ["--task", "adding", "--seq-len", "5", "--hidden", "8", "--steps", "20", "--eval-every",
        "10", "--eval-size", "16", "--test-size", "16", "--batch-size", "8", "--quiet",
        "--threads", "1"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    runner = CliRunner()
    for extra in (["--cell", "lstm"], ["--cell", "gru", "--lr", "0.01"]):
        result = runner.invoke(cli, ["run", *FAST, *extra, "--out", str(out)])
        assert result.exit_code == 0, result.output
    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return out, rows


def test_the_settings_that_differ_and_the_metrics_of_each(two_runs):
    out, rows = two_runs
    a, b = (load_run(out / "runs" / r["run_id"]) for r in rows)
    assert differences(a, b) == [("lr", "0.001", "0.01"), ("cell", "lstm", "gru")]
    metrics = {k: (va, vb) for k, va, vb in metric_rows(a, b)}
    assert metrics["steps_taken"] == (rows[0]["steps_taken"], rows[1]["steps_taken"])
    assert float(metrics["loss_ratio"][1]) == pytest.approx(float(rows[1]["loss_ratio"]), rel=1e-3)
    assert differences(a, a) == []


def test_a_run_folder_without_its_runs_csv_uses_its_curve(two_runs, tmp_path):
    import shutil

    out, rows = two_runs
    moved = tmp_path / "alone" / "runs" / rows[0]["run_id"]
    shutil.copytree(out / "runs" / rows[0]["run_id"], moved)
    run = load_run(moved)
    assert run.row is None
    metrics = {k: va for k, va, _ in metric_rows(run, run)}
    assert metrics["status"].startswith("no row in runs.csv")
    assert metrics["steps_taken"] == "20"


def test_the_compare_command(two_runs, tmp_path):
    out, rows = two_runs
    a, b = (str(out / "runs" / r["run_id"]) for r in rows)
    runner = CliRunner()
    figure = tmp_path / "fig" / "c.svg"
    result = runner.invoke(cli, ["compare", a, b, "-o", str(figure), "--metric", "accuracy"])
    assert result.exit_code == 0, result.output
    assert "settings that differ:" in result.output and "wrote" in result.output
    assert figure.read_text().lstrip().startswith("<?xml")
    md = runner.invoke(cli, ["compare", a, a, "--no-figure", "--format", "markdown",
                             "--environment", "-o", str(tmp_path / "none.png")])
    assert md.exit_code == 0 and "settings: identical" in md.output and "| status" in md.output
    assert not (tmp_path / "none.png").exists()
    bad = runner.invoke(cli, ["compare", a, str(tmp_path)])
    assert bad.exit_code == 2 and "not a seqbench run folder" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
