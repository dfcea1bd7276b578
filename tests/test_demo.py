"""`seqbench demo`: the two runs it trains, what it prints and draws, and the committed evidence
its default settings rest on."""

import csv
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.demo import DEMO_HIDDEN, DEMO_SETTINGS, FIXES, demo_configs, run_demo
from seqbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("fix", sorted(FIXES))
def test_the_two_runs_differ_only_by_the_remedy(fix):
    (_, default), (_, fixed) = demo_configs(fix, seq_len=30, seed=4)
    _, options, _ = FIXES[fix]
    differing = {f.name for f in fields(CellConfig)
                 if getattr(default.cell, f.name) != getattr(fixed.cell, f.name)}
    assert differing == set(options)
    assert {k: getattr(fixed.cell, k) for k in options} == options
    assert default.cell == CellConfig(cell="lstm", hidden=DEMO_HIDDEN).validate()
    for cfg in (default, fixed):
        assert (cfg.task, cfg.seq_len, cfg.seed) == ("delayed_recall", 30, 4)
        assert cfg.probe_every == cfg.steps  # probed at initialization and at the end
    assert default.label != fixed.label
    assert {f.name for f in fields(default) if getattr(default, f.name) != getattr(fixed, f.name)} \
        == {"cell", "label"}


def test_an_unknown_fix_is_refused():
    with pytest.raises(ConfigError, match="unknown fix 'dropout'; allowed: forget-bias, chrono"):
        demo_configs("dropout")


def test_run_demo_writes_both_runs_the_figure_and_reports_their_gradients(tmp_path):
    result = run_demo(tmp_path / "demo", seq_len=6, steps=30, threads=1, quiet=True,
                      echo=lambda line: None)
    with open(tmp_path / "demo" / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["lstm", "lstm_fb3"]
    assert result.figure == tmp_path / "demo" / "figures" / "demo_decay.png"
    assert result.figure.stat().st_size > 10_000
    # the gradient ratio printed is the probe's norm at lag T over its norm at lag 0
    for arm in result.arms:
        grads = pd.read_csv(Path(arm.row["run_dir"]) / "grads.csv")
        assert sorted(set(grads["step"])) == [0, int(arm.row["steps_taken"])]
        first = grads[grads["step"] == 0].set_index("lag")["grad_norm"]
        assert arm.gradient_at_lag(result.grads, "init") == pytest.approx(first[6] / first[0])
    report = result.report()
    assert report.count("gradient at lag 6 / at lag 0") == 2
    assert report.startswith("default LSTM: ")
    assert "forget-gate bias 3" in report and str(result.figure) in report


def test_the_demo_command_and_its_bad_input(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["demo", "--fix", "chrono", "-T", "5", "--steps", "20", "--seed", "1",
                             "--threads", "1", "--out", str(tmp_path / "d"), "-q"])
    assert ok.exit_code == 0, ok.output
    assert "chrono initialization" in ok.output and "figure: " in ok.output
    with open(tmp_path / "d" / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["chrono"], r["seed"], r["seq_len"]) for r in rows] == [("False", "1", "5"),
                                                                       ("True", "1", "5")]
    bad = runner.invoke(cli, ["demo", "--steps", "0", "--out", str(tmp_path / "e")])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()


def test_the_committed_comparison_behind_the_demo_default():
    """The demo's settings are those of the fixes comparison (tasks/fixes.toml), where at T = 25
    the default LSTM solved delayed recall in 0 of 5 seeds and forget bias 3 in 5 of 5."""
    runs = pd.read_csv(ROOT / "results" / "fixes" / "runs.csv")
    same = runs[(runs["task"] == DEMO_SETTINGS["task"]) & (runs["seq_len"] == 25)
                & (runs["lr"] == DEMO_SETTINGS["lr"]) & (runs["hidden"] == DEMO_HIDDEN)
                & (runs["batch_size"] == DEMO_SETTINGS["batch_size"])
                & (runs["step_budget"] == DEMO_SETTINGS["steps"])]
    solved = same.groupby("label")["solved"].agg(["sum", "size"])
    assert tuple(solved.loc["lstm"]) == (0, 5)
    assert tuple(solved.loc[FIXES["forget-bias"][0]]) == (5, 5)


def test_the_readme_shows_the_committed_demo():
    """The README's demo output and training times are those of results/demo (read_demo)."""
    from seqbench.demo import read_demo

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## The demo\n", 1)[1].split("\n## ", 1)[0]
    shown = section.split("```\n", 2)[1].split("```", 1)[0].strip()
    demo = read_demo(ROOT / "results" / "demo")
    expected = demo.report().replace(str(ROOT / "results" / "demo"), "seqbench-demo")
    assert shown == expected
    default, fixed = (float(a.row["wall_s"]) for a in demo.arms)
    assert f"trained for {default:.1f} s (default LSTM" in section
    assert f"and {fixed:.1f} s (forget bias" in section
    assert (ROOT / "results" / "demo" / "figures" / "demo_decay.png").is_file()


def test_read_demo_refuses_a_folder_without_one(tmp_path):
    from seqbench.demo import read_demo

    with pytest.raises(ConfigError, match="holds no seqbench demo"):
        read_demo(tmp_path)
