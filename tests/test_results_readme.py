"""results/README.md states only what the committed CSVs show: it is regenerated from them."""

from __future__ import annotations

import runpy
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"


def test_results_readme_is_recomputed_from_the_committed_csvs():
    readme = runpy.run_path(str(RESULTS / "readme.py"), run_name="readme")
    assert readme["main"](["--check"]) == 0, (
        "results/README.md differs from what the CSVs give: run python results/readme.py")


def test_the_check_fails_when_a_number_changes(tmp_path, monkeypatch):
    """The check is not vacuous: a README whose numbers differ from the CSVs is caught."""
    readme = runpy.run_path(str(RESULTS / "readme.py"), run_name="readme")
    text = readme["render"]()
    changed = text.replace("0.", "9.", 1)
    assert changed != text
    fake = tmp_path / "README.md"
    fake.write_text(changed)
    main = readme["main"]
    monkeypatch.setitem(main.__globals__, "HERE", tmp_path)
    monkeypatch.setitem(main.__globals__, "render", lambda: text)
    assert main(["--check"]) == 1


def _sweep_minutes(path: Path, task: str | None = None, cells=None, without=()) -> int:
    """Minutes from the first run's start to the last run's end, as the README rounds them
    (runs of ``task`` and of ``cells`` only, when given, less the arms labelled ``without``)."""
    import pandas as pd

    runs = pd.read_csv(path)
    if task is not None:
        runs = runs[runs["task"] == task]
    if cells is not None:
        runs = runs[runs["cell"].isin(cells)]
    runs = runs[~runs["label"].isin(without)]
    start = pd.to_datetime(runs["started_at"])
    end = start + pd.to_timedelta(runs["wall_s"], unit="s")
    return round((end.max() - start.min()).total_seconds() / 60)


def test_readme_sweep_times_are_the_committed_runs_wall_times():
    readme = (RESULTS.parent / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines()
            if line.startswith("| `tasks/")}
    expected = {"`tasks/adding.toml`": _sweep_minutes(RESULTS / "runs.csv", "adding"),
                "`tasks/delayed_recall.toml`": _sweep_minutes(RESULTS / "runs.csv",
                                                              "delayed_recall"),
                "`tasks/copy.toml`": _sweep_minutes(RESULTS / "runs.csv", "copy"),
                # the arms of rnn, lstm and gru ran in one sitting; the long-lag cells' and
                # the flossing arms' later
                "`tasks/fixes.toml`": _sweep_minutes(RESULTS / "fixes" / "runs.csv",
                                                     cells=("rnn", "lstm", "gru"),
                                                     without=("rnn_floss", "lstm_floss"))}
    for spec, minutes in expected.items():
        assert f"measured {minutes} min" in rows[spec], (spec, minutes)
