"""Length generalization: a trained model tested at lags other than the one it was trained at.

A run with ``eval_seq_lens`` (``seqbench run --eval-seq-len 200 --eval-seq-len 500``, spec key
``eval_seq_lens``) tests its final model, after the usual test set, on a test set of
``test_size`` sequences at each of those lags (each from its own seed stream), as the
Chomsky-hierarchy benchmark does for its tasks (Deletang et al. 2023: train at lengths up to N,
test at longer ones). One row per lag goes to the run folder's ``lengths.csv`` (so that a Ray
worker's run folder carries it), tidy: the run's identity, the lag, and the test metrics there,
each loss also over the task's memoryless baseline *at that lag*. ``read_lengths`` gathers them;
``summarize`` aggregates over seeds.
"""

from __future__ import annotations

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
