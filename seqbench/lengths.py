"""Length generalization: a trained model tested at lags other than the one it was trained at.

A run with ``eval_seq_lens`` (``seqbench run --eval-seq-len 200 --eval-seq-len 500``, spec key
``eval_seq_lens``) tests its final model, after the usual test set, on a test set of
``test_size`` sequences at each of those lags (each from its own seed stream), as the
Chomsky-hierarchy benchmark does for its tasks (Deletang et al. 2023: train at lengths up to N,
test at longer ones). One row per lag goes to the run folder's ``lengths.csv`` (so that a Ray
worker's run folder carries it), tidy: the run's identity, the lag, and the test metrics there,
each loss also over the task's memoryless baseline *at that lag*. ``read_lengths`` gathers them;
``summarize`` aggregates over seeds.

``generalization`` is the leaderboard's view (``seqbench leaderboard`` prints it when the runs
have lengths.csv files; ``seqbench plot lengths`` draws it): per arm of a runs CSV and per lag
tested, the solve rate with its 95% Wilson interval and the mean loss / baseline with its 95%
bootstrap interval, the lag trained at included (its row is the run's own test result), computed
by the leaderboard's own statistics over the runs' rows at each lag.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

LENGTH_COLUMNS = [
    "run_id", "config_id", "task", "variant", "seq_len", "cell", "impl", "hidden", "label",
    "seed", "steps_taken",
    "eval_seq_len",  # the lag tested at; seq_len is the one trained at
    "total_steps", "test_size", "loss", "baseline_loss", "loss_ratio", "accuracy", "solved",
]


def length_rows(cfg, task, run_id: str, config_id: str, result) -> list[dict]:
    """The rows of ``result.lengths`` (a TrainResult of ``cfg`` on ``task``)."""
    rows = []
    for length, found in sorted(result.lengths.items()):
        baseline = task.baseline_loss(length)
        rows.append({
            "run_id": run_id, "config_id": config_id, "task": cfg.task, "variant": cfg.variant,
            "seq_len": cfg.seq_len, "cell": cfg.cell.cell, "impl": cfg.cell.impl,
            "hidden": cfg.cell.hidden, "label": cfg.label, "seed": cfg.seed,
            "steps_taken": result.steps_taken, "eval_seq_len": length,
            "total_steps": task.total_steps(length), "test_size": cfg.test_size,
            "loss": found.loss, "baseline_loss": baseline, "loss_ratio": found.loss / baseline,
            "accuracy": found.accuracy, "solved": task.solved(found.loss, found.accuracy),
        })
    return rows


def read_lengths(paths) -> pd.DataFrame:
    """Read lengths CSVs: files, or folders searched for the ``lengths.csv`` of runs."""
    from seqbench.results import read_results, results_files

    files = results_files(paths, "lengths.csv", " (runs record one with --eval-seq-len)")
    return pd.concat([read_results(f) for f in files], ignore_index=True)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """Per arm (task, variant, cell, impl, label, trained lag) and tested lag: seeds, the
    fraction solved and the mean loss ratio."""
    keys = ["task", "variant", "cell", "impl", "label", "seq_len", "eval_seq_len"]
    df = rows.copy()
    df["label"] = df["label"].fillna("")
    df["solved"] = df["solved"].astype(str) == "True"
    out = df.groupby(keys, sort=False, dropna=False).agg(
        seeds=("seed", "nunique"), solve_rate=("solved", "mean"),
        loss_ratio_mean=("loss_ratio", "mean"), accuracy_mean=("accuracy", "mean"))
    return out.reset_index().sort_values(["task", "label", "cell", "seq_len", "eval_seq_len"],
                                         kind="stable")


def write_rows(run_dir: str | os.PathLike, rows: list[dict]) -> None:
    """Append ``rows`` to the run folder's lengths.csv (nothing when there are none)."""
    if rows:
        from seqbench.results import append_rows

        append_rows(Path(run_dir) / "lengths.csv", rows, LENGTH_COLUMNS)


#: the statistics of the length-generalization table (the leaderboard's, less those about steps)
GENERALIZATION_STATS = ["n_seeds", "n_diverged", "solve_rate", "solve_rate_lo", "solve_rate_hi",
                        "loss_ratio_mean", "loss_ratio_ci_lo", "loss_ratio_ci_hi", "accuracy_mean"]


def runs_at_lengths(runs_csv: str | os.PathLike, task: str | None = None) -> pd.DataFrame:
    """The finished runs of ``runs_csv`` that were tested at other lags, one row per run and lag
    tested: the run's row with ``eval_seq_len`` added and its test metrics (final_loss,
    loss_ratio, accuracy, solved) replaced by those at that lag; the lag it was trained at is
    its own row (``eval_seq_len`` = ``seq_len``). Empty when no run has a lengths.csv."""
    from seqbench.leaderboard import FINISHED, load_runs
    from seqbench.results import read_results, run_folder

    runs = load_runs(runs_csv, task)
    runs = runs[runs["status"].isin(FINISHED)]
    out = []
    for run in runs.to_dict("records"):
        path = run_folder(runs_csv, str(run.get("run_dir", ""))) / "lengths.csv"
        if not path.is_file():
            continue
        tested = read_results(path)
        # the lag trained at is the run's own row (the same test set, when also listed)
        tested = tested[(tested["run_id"].astype(str) == str(run["run_id"]))
                        & (tested["eval_seq_len"] != run["seq_len"])]
        if tested.empty:
            continue
        out.append({**run, "eval_seq_len": run["seq_len"]})
        for r in tested.to_dict("records"):
            # a non-finite loss at another lag is a model that blew up there: diverged, as
            # a non-finite final loss is in runs.csv
            finite = math.isfinite(float(r["loss"]))
            out.append({**run, "eval_seq_len": r["eval_seq_len"], "final_loss": r["loss"],
                        "loss_ratio": r["loss_ratio"], "accuracy": r["accuracy"],
                        "solved": r["solved"], "status": run["status"] if finite else "diverged"})
    return pd.DataFrame(out)


def generalization(runs_csv: str | os.PathLike, task: str | None = None) -> pd.DataFrame:
    """Per arm (the leaderboard's keys) and lag tested: seeds, solve rate [95% Wilson], mean loss
    / baseline [95% bootstrap], mean accuracy. Empty when no run was tested at other lags."""
    from seqbench.leaderboard import config_stats, key_columns

    rows = runs_at_lengths(runs_csv, task)
    if rows.empty:
        return pd.DataFrame()
    keys = key_columns(rows.columns)
    table = [{**dict(zip(keys, values[:-1])), "eval_seq_len": int(values[-1]),
              **{k: v for k, v in config_stats(group).items() if k in GENERALIZATION_STATS}}
             for values, group in rows.groupby(keys + ["eval_seq_len"], dropna=False, sort=False)]
    frame = pd.DataFrame(table, columns=keys + ["eval_seq_len"] + GENERALIZATION_STATS)
    # the columns that are the same on every row say nothing in a table: keep what tells arms apart
    varying = [k for k in keys if k in ("task", "cell", "seq_len")
               or (k == "label" and frame[k].notna().any())
               or frame[k].astype(object).map(str).nunique() > 1]
    return frame[varying + ["eval_seq_len"] + GENERALIZATION_STATS].sort_values(
        [k for k in ("task", "variant", "label", "cell", "seq_len") if k in varying]
        + ["eval_seq_len"], kind="stable").reset_index(drop=True)
