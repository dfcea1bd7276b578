"""results/README.md states only what the committed CSVs show: it is regenerated from them."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

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


def test_the_longer_budget_claims_point_the_way_the_runs_do():
    """Section 7b names an arm as having lower loss with 10,000 steps only when its median loss
    ratio is lower there than with 3,000 steps in the committed runs (the direction of the rank
    test's effect, read from the CSVs, not from the code that wrote the sentence)."""
    import re

    import pandas as pd

    text = (RESULTS / "README.md").read_text(encoding="utf-8")
    section = text.split("### 7b.", 1)[1].split("\n## ", 1)[0]
    quick = pd.read_csv(RESULTS / "new_tasks" / "runs.csv")
    longer = pd.read_csv(RESULTS / "new_tasks_budget" / "runs.csv")
    checked = 0
    for block in section.split("\n#### ")[1:]:
        task = block.split(",", 1)[0].strip().replace(" ", "_")
        claim = next(line for line in block.splitlines() if line.startswith("Lower loss"))
        for label in re.findall(r"`([a-z0-9_]+)` \(Holm p", claim):
            def median(runs, task=task, label=label):
                sel = runs[(runs["task"] == task) & (runs["label"] == label)]
                return sel["loss_ratio"].median()
            assert median(longer) < median(quick), (task, label)
            checked += 1
    assert checked > 0


def test_the_budget_check_reads_the_paper_profile_rows(tmp_path):
    """Section 9's budget check: an arm that disagrees at the cpu budget and agrees at the paper
    profile's is counted as explained by the budget (rows made from the committed ones)."""
    import pandas as pd

    from seqbench.published import compare
    from seqbench.spec import load_spec

    readme = runpy.run_path(str(RESULTS / "readme.py"), run_name="readme")
    spec = load_spec(RESULTS.parent / "tasks" / "papers.toml")
    runs = pd.read_csv(RESULTS / "papers" / "runs.csv")
    runs = runs[runs["config_id"].isin({c.config_id() for c in spec.expand("cpu")})]
    arm = "urnn_adding100_lstm"  # published: solved; ours at 3,000 steps: at the baseline
    paper_ids = {c.seed: c.config_id() for c in spec.expand("paper") if c.label == arm}
    fake = runs[runs["label"] == arm].copy()
    assert len(fake) and not fake["solved"].any()
    fake["config_id"] = fake["seed"].map(paper_ids)
    fake["solved"], fake["final_loss"] = True, 0.001
    fake["loss_ratio"] = fake["final_loss"] / fake["baseline_loss"]
    path = tmp_path / "runs.csv"
    pd.concat([runs, fake]).to_csv(path, index=False)
    cpu = compare(spec, path, "cpu")
    assert cpu.set_index("arm").loc[arm, "agreement"] == "disagree"  # the fake rows not counted
    text = readme["_budget_check"](spec, path, cpu)
    assert f"the budget explains 1 (`{arm}`: they agree with the paper at 50,000 steps)" in text
    assert f"| `{arm}` | 100 | solved | baseline (0/3 solved" in text


@pytest.mark.parametrize("pair", [0, 1])
def test_the_stopping_margin_pairs_runs_by_seed(pair):
    """Section 5's stopping-margin sentences pair each first-crossing arm with its
    solved_evals = 2 twin by (T, seed) and count the test-solved runs and near-misses of each (a
    second arm made from the committed rows)."""
    import pandas as pd

    readme = runpy.run_path(str(RESULTS / "readme.py"), run_name="readme")
    runs = readme["_runs"](RESULTS / "long" / "runs.csv")
    task, first_name, confirm_name, _ = readme["MARGIN_PAIRS"][pair]
    runs = runs[runs["task"] == task]
    first = runs[runs["label"] == first_name]
    if confirm_name in set(runs["label"]):
        runs = runs[runs["label"] != confirm_name]
    confirm = first.copy()
    confirm["label"] = confirm_name
    confirm["solved"] = confirm["val_solved"]  # every near-miss confirmed on the test set
    confirm["steps_taken"] = pd.to_numeric(confirm["steps_taken"]) + 100
    text = readme["_stopping_margin"](pd.concat([runs, confirm]))
    n = len(first)
    solved = int(first["solved"].map(lambda v: str(v) == "True").sum())
    val = int(first["val_solved"].map(lambda v: str(v) == "True").sum())
    assert (f"{n} pairs; validation curves identical up to the first run's stop: {n} of "
            f"{n}") in text
    assert (f"Solved on the test set: {solved}/{n} stopping at the first solved result, "
            f"{val}/{n}") in text
    assert f"near-misses {val - solved} -> 0" in text
    assert "a median of 100 more steps" in text
    better, worse = ("lower", "higher") if task == "adding" else ("higher", "lower")
    assert f"{better} in 0 of {n} pairs and {worse} in 0" in text  # the same results: no change
    assert readme["_stopping_margin"](runs[runs["label"] != first_name]) == ""


def test_the_longest_t_solved_is_the_longest_lag_half_the_seeds_solved():
    """Section 5's "Longest T solved" sentence, recomputed from results/long/runs.csv: per task
    and arm, the longest T at which at least half of the finished seeds solved the test set."""
    import re

    import pandas as pd

    text = (RESULTS / "README.md").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("Longest T solved (by at least half"))
    runs = pd.read_csv(RESULTS / "long" / "runs.csv")
    runs = runs[runs["status"].isin(["ok", "diverged"])]
    rate = runs.groupby(["task", "label", "seq_len"])["solved"].mean()
    checked = 0
    for task_text in line.split(": ", 1)[1].split(". "):
        task, items = task_text.split(": ", 1)
        for label, claim in re.findall(r"`([^`]+)` ([^;.]+)", items):
            per_t = rate.loc[(task.replace(" ", "_"), label)]
            solved = [t for t, r in per_t.items() if r >= 0.5]
            if claim.startswith("none"):
                assert not solved, (label, claim)
            else:
                assert int(re.search(r"\d+", claim).group()) == max(solved), (label, claim)
            checked += 1
    assert checked == len(rate.groupby(level=[0, 1]))  # every arm of the CSV is in the sentence


def test_the_stopping_margin_pools_the_tasks():
    """With pairs on both tasks, a last sentence counts every pair together (twin arms made from
    the committed first-crossing rows, every near-miss confirmed)."""
    import pandas as pd

    readme = runpy.run_path(str(RESULTS / "readme.py"), run_name="readme")
    runs = readme["_runs"](RESULTS / "long" / "runs.csv")
    pairs = readme["MARGIN_PAIRS"]
    runs = runs[~runs["label"].isin([confirm for _, _, confirm, _ in pairs])]
    firsts = [runs[(runs["task"] == task) & (runs["label"] == first)]
              for task, first, _, _ in pairs]
    twins = []
    for first, (_, _, confirm, _) in zip(firsts, pairs):
        twin = first.copy()
        twin["label"], twin["solved"] = confirm, twin["val_solved"]
        twins.append(twin)
    text = readme["_stopping_margin"](pd.concat([runs, *twins]))
    both = pd.concat(firsts)
    n = len(both)
    solved = int(both["solved"].map(lambda v: str(v) == "True").sum())
    val = int(both["val_solved"].map(lambda v: str(v) == "True").sum())
    assert all(len(f) for f in firsts)
    assert (f"Both tasks together: {n} pairs, solved on the test set {solved}/{n} stopping at "
            f"the first solved result against {val}/{n} with two in a row") in text
    only_copy = pd.concat([runs, twins[0]])
    assert "Both tasks together" not in readme["_stopping_margin"](only_copy)
