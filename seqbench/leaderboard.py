"""The leaderboard: runs.csv aggregated over seeds, the headline "longest lag solved", the
choice of a tuned setting on the validation set, and arms compared with a reference arm.

One leaderboard row per configuration apart from its seed: task, variant, label, cell, impl, every
cell option, seq_len and every training setting (the columns of ``RunConfig`` / ``CellConfig``
fields, so options added there become keys at once; ``seed``, ``device``, ``threads`` and
``probe_every`` are not keys, since they do not change what a run computes). A run is identified
by its keys and seed: recorded more than once (re-run, retried, with and without probing), it
counts once, its last finished row (else its last row); a run finished more than once (the same
configuration and seed run twice) is said in one warning (``DuplicateRunsWarning``) with how many
rows were left out. A failed row followed by its retry is the resume path and no duplicate. The
statistics are the **test** set's (the row's ``final_loss``, ``loss_ratio``, ``accuracy``,
``solved``), except the ``val_*`` ones. Per row:

============================  ===============================================================
``n_seeds``                   finished runs (status ``ok`` or ``diverged``), one per seed
``n_diverged``                of those, runs whose loss became NaN/inf
``n_failed``                  runs that failed or were interrupted (left out of every statistic)
``solve_rate``                solved runs / ``n_seeds`` (a diverged run counts as not solved)
``solve_rate_lo``, ``_hi``    its 95% Wilson score interval
``loss_ratio_mean``           mean of final loss / memoryless baseline, over the non-diverged runs
``loss_ratio_ci_lo``, ``_hi`` its 95% percentile bootstrap interval (10,000 resamples, seed 0;
                              empty for fewer than 2 runs)
``loss_ratio_std_ddof1``      its sample standard deviation (ddof = 1; empty for a single run)
``loss_ratio_se``             standard error of the mean: std (ddof 1) / sqrt(n)
``accuracy_mean``             mean final accuracy, non-diverged runs: for a classification task
                              the fraction of symbols recalled correctly; for a regression task
                              (``kind = "regression"``: adding) the fraction of sequences within
                              the task's tolerance (adding: absolute error < 0.04), which is no
                              success measure (a solved adding run, MSE < 0.01, has about 0.3).
                              Printed tables show it for classification tasks only (``n/a`` on
                              regression rows, see ``ACCURACY_NOTE``); the CSV keeps the value
``km_median_solved_step``     Kaplan-Meier median step to solve: the first step by which half the
                              runs are estimated solved, unsolved and diverged runs censored at
                              their step budget (a run stopped early on an unconfirmed validation
                              result: where it stopped); empty = the estimate never reaches one
                              half (with early stops censored, it can with under half solved)
``median_step_solved_runs``   median solving step over the solved runs only (CSV only: it ignores
                              the runs that did not solve, so it flatters a rarely solving arm)
``val_solve_rate``            finished runs whose validation set met the criterion / those with a
                              validation result (empty for rows written before the validation split)
``val_loss_ratio_mean``       mean validation loss / baseline at the end, non-diverged runs
``throughput_mean``           mean training throughput, sequences per second
============================  ===============================================================

**Selection** (``select(board, keys)``, ``seqbench leaderboard --select lr``): for each group of
the other keys (arm x seq_len x ...), the value of the selected key(s) with the best validation
result is kept: the highest validation solve rate, ties broken by the lowest mean validation loss
ratio, then by the smallest value. The row keeps the test statistics of that value's runs and gains
``selected_from`` (the candidate values) and ``selection`` (the rule). Test results never choose.

The headline table has one row per configuration apart from seed and seq_len (and the selected
keys): the longest seq_len solved by at least half of its seeds (``longest_solved_T``, empty when
none is), its solve rate with a Wilson interval, ``bounded`` (a longer seq_len was tried and not
solved; false means the claim is "at least T": nothing longer was tried) and the longest seq_len
that was tried.

**Comparison** (``compare(runs, board, arm)``, ``seqbench leaderboard --against ARM``): an arm is a
row's label, or its cell when it has none. Each row of another arm is matched with the reference
arm's row of the same task, variant and seq_len; where the reference arm has several rows there
(e.g. a grid of hidden sizes), also of the same value of each key on which they differ (selected
keys aside). A row without exactly one such reference row is left out. Per pair: Fisher's exact
test of the test solve rates (``solve_rate_diff`` = arm - reference), the two-sided Mann-Whitney
test of the test loss ratios (a diverged run ranks worst; exact for small samples) with
``rank_effect`` = P(arm lower) - P(arm higher), the rank-biserial correlation (+1: every run of the
arm has a lower loss ratio than every reference run), and both p-values Holm-adjusted over the arms
compared at the same task, variant and seq_len.
"""

from __future__ import annotations

import functools
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
import pandas as pd

from seqbench import stats
from seqbench.cells import CellConfig, cell_names
from seqbench.choices import IMPLS
from seqbench.config import COLUMN_NAMES, RunConfig, config_column_names
from seqbench.errors import ConfigError
from seqbench.results import check_location, read_results
from seqbench.tables import render
from seqbench.tasks import check_task_name, task_names

FINISHED = ("ok", "diverged")
#: RunConfig fields that do not change what a run computes: never leaderboard keys
NOT_KEYS = ("seed", "device", "threads", "probe_every")
#: keys that say what problem a row is about: compared across, never selected over
PROBLEM_KEYS = ("task", "variant", "seq_len")
STAT_COLUMNS = ["n_seeds", "n_diverged", "n_failed", "solve_rate", "solve_rate_lo", "solve_rate_hi",
                "loss_ratio_mean", "loss_ratio_ci_lo", "loss_ratio_ci_hi", "loss_ratio_std_ddof1",
                "loss_ratio_se", "accuracy_mean", "km_median_solved_step", "median_step_solved_runs",
                "val_solve_rate", "val_loss_ratio_mean", "throughput_mean"]
SELECT_COLUMNS = ["selected_keys", "selected_from", "selection"]
SELECTION_RULE = "highest val solve rate, then lowest val loss ratio, then smallest value"
HEADLINE_COLUMNS = ["longest_solved_T", "bounded", "solve_rate_at_T", "solve_rate_at_T_lo",
                    "solve_rate_at_T_hi", "n_seeds_at_T", "longest_tried_T", "seq_lens"]
COMPARE_COLUMNS = ["arm", "ref_arm", "n_seeds", "ref_n_seeds", "solve_rate", "ref_solve_rate",
                   "solve_rate_diff", "p_fisher", "p_fisher_holm", "rank_effect", "p_rank",
                   "p_rank_holm"]
CONF = 0.95
#: what the printed tables' accuracy column means (the leaderboard's intro line says it)
ACCURACY_NOTE = ("accuracy (classif.): fraction of symbols recalled correctly, classification "
                 "tasks only; n/a for regression tasks (adding), whose runs.csv accuracy is the "
                 "fraction of sequences within the task's tolerance and no success measure "
                 "(solved = MSE < 0.01, i.e. loss/base < 0.06)")


class DuplicateRunsWarning(UserWarning):
    """runs.csv holds a run (same configuration and seed) finished more than once."""


def key_columns(columns) -> list[str]:
    """The grouping keys present in ``columns``, in reading order: what, which cell, T, training."""
    cell = [f.name for f in fields(CellConfig)]
    first = ["task", "variant", "label", "cell", "impl"]
    order = first + [c for c in cell if c not in first] + ["seq_len"]
    order += [c for c in config_column_names() if c not in order]
    return [c for c in order if c in columns and c not in NOT_KEYS]


def _missing(v) -> bool:
    """None, NaN or blank: a value the row does not have (e.g. val_* in an old row)."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v).strip() == ""


def _bool(series: pd.Series) -> pd.Series:
    return series.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))


def _numbers(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def load_runs(path: str | os.PathLike, task: str | None = None) -> pd.DataFrame:
    """runs.csv, optionally one task only, each run (keys + seed) once: its last finished row,
    else its last row."""
    path = Path(path)
    df = read_results(path)
    if "config_id" not in df.columns or "status" not in df.columns:
        raise ConfigError(f"{path} is not a seqbench runs file (no config_id/status columns)")
    if task is not None:
        check_task_name(task)
        present = sorted(df["task"].dropna().unique()) if "task" in df.columns else []
        df = df[df["task"] == task]
        if df.empty:
            raise ConfigError(f"no runs of task {task!r} in {path}; tasks there: "
                              f"{', '.join(present) or 'none'}")
    if df.empty:
        raise ConfigError(f"{path} has no runs yet")
    # the identity of a run is what the leaderboard groups by, plus the seed; not config_id,
    # which also holds settings that are no keys (probe_every): a run with and without probing
    # is one seed, not two
    ident = key_columns(df.columns) + ["seed"] if "seed" in df.columns else ["config_id"]
    finished = df["status"].isin(FINISHED)
    keep = pd.concat([df[~finished], df[finished]])  # a finished row wins over a failed one
    _warn_duplicates(path, df[finished], ident)
    return keep.drop_duplicates(ident, keep="last").sort_index()


#: the runs files already warned about, as (path, size, mtime): one warning per file content,
#: however many times a command reads it (the leaderboard, its comparison, one task's table)
_WARNED: set[tuple] = set()


def _warn_duplicates(path: Path, finished: pd.DataFrame, ident: list[str]) -> None:
    """One warning when runs finished more than once: how many rows repeat a run, of how many
    runs (each counts once, its last finished row)."""
    repeated = finished.duplicated(ident, keep="last")
    if not repeated.any():
        return
    try:
        stat = path.stat()
        seen = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        seen = (str(path), None, None)
    if seen in _WARNED:
        return
    _WARNED.add(seen)
    runs = int(finished[repeated].drop_duplicates(ident).shape[0])
    warnings.warn(DuplicateRunsWarning(
        f"{path}: {int(repeated.sum())} duplicate row(s): {runs} run(s) finished more than once "
        "(same configuration and seed); each counts once, its last finished row"), stacklevel=3)


def _text(v) -> str:
    """A key value as text; missing (None, NaN) is ''; a whole float without its '.0'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _defaults() -> dict[str, str]:
    """Column -> default value (as text) of every RunConfig / CellConfig field."""
    d = {f.name: f.default for f in fields(CellConfig)}
    # None means "the cell's own": tanh for rnn, lstm and gru; a cell with another fixed one
    # records it in all its rows alike, so it never reorders them
    d["nonlinearity"] = "tanh"
    d.update({COLUMN_NAMES.get(f.name, f.name): f.default for f in fields(RunConfig)
              if f.name != "cell" and not isinstance(f.default, type(MISSING))})
    return {k: _text(v) for k, v in d.items()}


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return a.lower() == b.lower()  # True / true


def _changes(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """How many options of each row differ from the defaults (seq_len, task, label, cell aside)."""
    defaults = _defaults()
    skip = {"task", "variant", "label", "cell", "impl", "seq_len"}
    cols = [k for k in keys if k in defaults and k not in skip]
    return frame[cols].apply(
        lambda row: sum(not _same(_text(row[k]), defaults[k]) for k in cols), axis=1
    ) if cols and len(frame) else pd.Series(0, index=frame.index)


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sorted for reading: task and variant; cell (registry order); the configurations with the
    fewest changes from the defaults first (a spec's reference arm before its fixes); label;
    implementation; the other keys; seq_len."""
    orders = {"task": task_names(), "cell": cell_names(), "impl": IMPLS}

    def sort_key(col: pd.Series) -> pd.Series:
        if col.name in orders:
            rank = {v: i for i, v in enumerate(orders[col.name])}
            return col.map(lambda v: rank.get(v, len(rank)))
        if pd.api.types.is_numeric_dtype(col):
            return col
        return col.map(_text)

    frame = frame.assign(_changes=_changes(frame, keys))
    first = [k for k in ("task", "variant", "cell") if k in keys] + ["_changes"]
    then = [k for k in ("label", "impl") if k in keys]
    rest = [k for k in keys if k not in first + then and k != "seq_len"]
    order = first + then + rest + (["seq_len"] if "seq_len" in keys else [])
    frame = frame.sort_values(order, key=sort_key, kind="stable")
    return frame.drop(columns="_changes").reset_index(drop=True)


def _key_dict(keys: list[str], values) -> dict:
    return dict(zip(keys, values if isinstance(values, tuple) else (values,)))


# -- per-configuration statistics ------------------------------------------------------------------


def finished_runs(group: pd.DataFrame) -> pd.DataFrame:
    """The runs that count in the statistics: status ok or diverged."""
    return group[group["status"].isin(FINISHED)]


def solved_mask(finished: pd.DataFrame) -> pd.Series:
    """Solved on the test set (a diverged run never is)."""
    return _bool(finished["solved"]) & (finished["status"] == "ok")


def _loss_ratios(finished: pd.DataFrame, column: str = "loss_ratio") -> np.ndarray:
    """Finite ``column`` values of the runs that did not diverge."""
    if column not in finished.columns:
        return np.array([])
    x = _numbers(finished.loc[finished["status"] == "ok", column])
    return x[np.isfinite(x)]


def rank_sample(finished: pd.DataFrame) -> np.ndarray:
    """Test loss ratios for a rank test: a diverged run is +inf (worse than any loss)."""
    x = _numbers(finished["loss_ratio"]).copy()  # pandas may hand out a read-only view
    x[finished["status"].to_numpy() == "diverged"] = np.inf
    return x[~np.isnan(x)]


def km_inputs(finished: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(times, events) for Kaplan-Meier: a solved run's ``solved_step``; an unsolved or diverged
    run is censored at its ``step_budget`` (it had the whole budget and did not solve; a diverged
    run would not have solved later either), except a run that stopped on a validation result
    its test set did not confirm (``val_solved`` and not ``solved``): it stopped training early, so
    it is censored where it stopped, ``steps_taken``. Missing steps fall back to ``steps_taken``;
    a run with neither is left out."""
    solved = solved_mask(finished).to_numpy()
    taken = _numbers(finished["steps_taken"]) if "steps_taken" in finished else \
        np.full(len(finished), np.nan)
    step = _numbers(finished["solved_step"]) if "solved_step" in finished else taken
    budget = _numbers(finished["step_budget"]) if "step_budget" in finished else taken
    stopped_early = (_bool(finished["val_solved"]).to_numpy() & ~solved
                     if "val_solved" in finished else np.zeros(len(finished), dtype=bool))
    censor = np.where(stopped_early | np.isnan(budget), taken, budget)
    times = np.where(solved, np.where(np.isnan(step), taken, step), censor)
    keep = np.isfinite(times)
    return times[keep], solved[keep]


def _val_stats(finished: pd.DataFrame) -> tuple[float, float]:
    """(validation solve rate, mean validation loss ratio); NaN without validation results."""
    if "val_solved" not in finished.columns:
        return math.nan, math.nan
    known = finished.loc[~finished["val_solved"].map(_missing), "val_solved"]
    rate = float(_bool(known).mean()) if len(known) else math.nan
    ratio = _loss_ratios(finished, "val_loss_ratio")
    return rate, float(ratio.mean()) if len(ratio) else math.nan


def _stats(group: pd.DataFrame) -> dict:
    """The statistics of one configuration's runs (see the module docstring)."""
    finished = finished_runs(group)
    n = len(finished)
    k = int(solved_mask(finished).sum())
    ratio = _loss_ratios(finished)
    sd = float(np.std(ratio, ddof=1)) if len(ratio) >= 2 else math.nan
    steps = _numbers(finished.loc[solved_mask(finished), "solved_step"])
    steps = steps[np.isfinite(steps)]
    times, events = km_inputs(finished)
    lo, hi = stats.wilson_interval(k, n, CONF)
    ci_lo, ci_hi = stats.bootstrap_mean_ci(ratio, CONF)
    val_rate, val_ratio = _val_stats(finished)
    accuracy = _numbers(finished.loc[finished["status"] == "ok", "accuracy"])
    throughput = _numbers(finished["throughput_seq_s"])
    return {
        "n_seeds": n,
        "n_diverged": int((finished["status"] == "diverged").sum()),
        "n_failed": len(group) - n,
        "solve_rate": k / n if n else math.nan,
        "solve_rate_lo": lo, "solve_rate_hi": hi,
        "loss_ratio_mean": float(ratio.mean()) if len(ratio) else math.nan,
        "loss_ratio_ci_lo": ci_lo, "loss_ratio_ci_hi": ci_hi,
        "loss_ratio_std_ddof1": sd,
        "loss_ratio_se": sd / math.sqrt(len(ratio)) if len(ratio) >= 2 else math.nan,
        "accuracy_mean": float(np.nanmean(accuracy)) if np.isfinite(accuracy).any() else math.nan,
        "km_median_solved_step": stats.km_median(times, events) if len(times) else math.nan,
        "median_step_solved_runs": float(np.median(steps)) if len(steps) else math.nan,
        "val_solve_rate": val_rate,
        "val_loss_ratio_mean": val_ratio,
        "throughput_mean": float(np.nanmean(throughput)) if np.isfinite(throughput).any()
        else math.nan,
    }


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration apart from the seed (see the module docstring for the columns)."""
    keys = key_columns(runs.columns)
    rows = [{**_key_dict(keys, values), **_stats(group)}
            for values, group in runs.groupby(keys, dropna=False, sort=False)]
    board = pd.DataFrame(rows, columns=keys + STAT_COLUMNS)
    return _sorted(board, keys)


# -- selection on the validation set --------------------------------------------------------------


def selection_keys(columns, keys: Iterable[str]) -> list[str]:
    """``keys`` as leaderboard key columns (``steps`` -> ``step_budget``, ``batch-size`` ->
    ``batch_size``), each once; anything else is a ConfigError naming the keys allowed."""
    allowed = [k for k in key_columns(columns) if k not in PROBLEM_KEYS]
    out: list[str] = []
    for key in keys:
        name = str(key).strip().replace("-", "_")
        name = COLUMN_NAMES.get(name, name)
        if name not in allowed:
            raise ConfigError(f"cannot select over {str(key)!r}; allowed: {', '.join(allowed)}")
        if name not in out:
            out.append(name)
    return out


def _value_order(v) -> tuple:
    """Sort order of a candidate value: numbers by size, then text, missing last."""
    if _missing(v):
        return (2, 0.0, "")
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _rank(row: pd.Series, keys: list[str]) -> tuple:
    """The selection rule as a sort key (smaller is better); missing validation results last."""
    rate, ratio = row["val_solve_rate"], row["val_loss_ratio_mean"]
    return ((-rate if not _missing(rate) else math.inf),
            (ratio if not _missing(ratio) else math.inf),
            *(_value_order(row[k]) for k in keys))


def _candidates(group: pd.DataFrame, keys: list[str]) -> str:
    """'0.0003 0.001 0.003' (one key) or 'lr=0.001,clip=1 lr=0.003,clip=1' (several), sorted."""
    rows = sorted((tuple(r) for r in group[keys].itertuples(index=False)),
                  key=lambda vs: [_value_order(v) for v in vs])
    if len(keys) == 1:
        return " ".join(_text(vs[0]) for vs in rows)
    return " ".join(",".join(f"{k}={_text(v)}" for k, v in zip(keys, vs)) for vs in rows)


def _describe(row: pd.Series) -> str:
    """'adding T=50 lstm_fb1' for messages."""
    arm = row.get("label") if not _missing(row.get("label")) else row.get("cell")
    return f"{row.get('task')} T={_text(row.get('seq_len'))} {arm}"


def _check_validation(board: pd.DataFrame) -> None:
    """Selection needs validation results: refuse rows written before the validation split."""
    lacking = board[(board["n_seeds"] > 0) & board["val_solve_rate"].isna()]
    if len(lacking):
        raise ConfigError(
            f"--select needs validation results (val_solved, val_loss_ratio), which "
            f"{len(lacking)} configuration(s) lack, e.g. {_describe(lacking.iloc[0])} (rows written "
            "before the validation split); re-run them or leave out --select")


def select(board: pd.DataFrame, keys: Iterable[str]) -> pd.DataFrame:
    """One row per group of the other keys: the value of ``keys`` with the best validation result
    (``SELECTION_RULE``), with that value's test statistics, ``selected_from`` and ``selection``."""
    keys = selection_keys(board.columns, keys)
    if not keys:
        return board
    _check_validation(board)
    others = [k for k in key_columns(board.columns) if k not in keys]
    rows = []
    for _, group in board.groupby(others, dropna=False, sort=False):
        best = min(group.index, key=lambda i: _rank(group.loc[i], keys))
        rows.append({**group.loc[best].to_dict(), "selected_keys": " ".join(keys),
                     "selected_from": _candidates(group, keys), "selection": SELECTION_RULE})
    out = pd.DataFrame(rows, columns=list(board.columns) + SELECT_COLUMNS)
    return _sorted(out, key_columns(out.columns))


def _apply_selection(board: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``select`` when keys are given (``build``'s own ``select`` argument hides the function)."""
    return select(board, keys) if keys else board


# -- headline ---------------------------------------------------------------------------------------


def headline(board: pd.DataFrame, selected: Sequence[str] = ()) -> pd.DataFrame:
    """Per configuration apart from seed and seq_len (and the ``selected`` keys, which may differ
    per seq_len): the longest seq_len solved by >= half the seeds, with its Wilson interval and
    whether a longer one was tried (a row whose runs all failed does not count as tried)."""
    selected = selection_keys(board.columns, selected) if selected else []
    keys = [k for k in key_columns(board.columns) if k != "seq_len" and k not in selected]
    rows = []
    for values, group in board.groupby(keys, dropna=False, sort=False):
        tried = group[group["n_seeds"] > 0]
        solved = tried[tried["solve_rate"] >= 0.5]
        best = solved.loc[solved["seq_len"].idxmax()] if len(solved) else None
        longest = int(tried["seq_len"].max()) if len(tried) else math.nan
        rows.append({
            **_key_dict(keys, values),
            "longest_solved_T": _at(best, "seq_len", int),
            # nothing longer tried: the claim is only "at least T"
            "bounded": bool(len(tried)) and (best is None or longest > int(best["seq_len"])),
            "solve_rate_at_T": _at(best, "solve_rate"),
            "solve_rate_at_T_lo": _at(best, "solve_rate_lo"),
            "solve_rate_at_T_hi": _at(best, "solve_rate_hi"),
            "n_seeds_at_T": _at(best, "n_seeds", int),
            "longest_tried_T": longest,
            "seq_lens": " ".join(str(int(t)) for t in sorted(tried["seq_len"])),
        })
    table = pd.DataFrame(rows, columns=keys + HEADLINE_COLUMNS)
    return _sorted(table, keys)


def _at(best: pd.Series | None, column: str, cast=float):
    """``best[column]`` (the longest solved T's row), NaN when nothing was solved."""
    return cast(best[column]) if best is not None else math.nan


# -- comparison with a reference arm ----------------------------------------------------------------


def arms(frame: pd.DataFrame) -> pd.Series:
    """Each row's arm: its label, or its cell when it has none."""
    label = frame["label"] if "label" in frame.columns else pd.Series("", index=frame.index)
    return pd.Series([_text(c) if _missing(lab) else str(lab)
                      for lab, c in zip(label, frame["cell"])], index=frame.index, dtype=object)


def _by_config(runs: pd.DataFrame, keys: list[str]) -> dict[tuple[str, ...], pd.DataFrame]:
    """Runs by their keys as text (NaN keys do not compare equal; their text does)."""
    return {tuple(_text(v) for v in _key_dict(keys, values).values()): group
            for values, group in runs.groupby(keys, dropna=False, sort=False)}


def _reference(row: dict, ref_rows: pd.DataFrame, keys: list[str], ignore: Sequence[str]):
    """The reference arm's row for ``row`` (see the module docstring), or None."""
    same = ref_rows
    for k in PROBLEM_KEYS:
        if k in keys:
            same = same[same[k].map(_text) == _text(row[k])]
    varying = [k for k in keys if k not in PROBLEM_KEYS and k not in ignore
               and k not in ("label", "cell") and same[k].map(_text).nunique() > 1]
    for k in varying:
        same = same[same[k].map(_text) == _text(row[k])]
    return same.iloc[0] if len(same) == 1 else None


def _pair(x: pd.DataFrame, y: pd.DataFrame) -> dict:
    """The tests of one arm's finished runs ``x`` against the reference's ``y``."""
    k1, n1 = int(solved_mask(x).sum()), len(x)
    k2, n2 = int(solved_mask(y).sum()), len(y)
    p_fisher, diff = stats.fisher_exact(k1, n1, k2, n2)
    effect, p_rank = stats.rank_test(rank_sample(x), rank_sample(y))
    return {"n_seeds": n1, "ref_n_seeds": n2,
            "solve_rate": k1 / n1 if n1 else math.nan, "ref_solve_rate": k2 / n2 if n2 else math.nan,
            "solve_rate_diff": diff, "p_fisher": p_fisher,
            "rank_effect": -effect,  # positive: the arm's loss ratios are the lower (better) ones
            "p_rank": p_rank}


def compare(runs: pd.DataFrame, board: pd.DataFrame, against: str,
            selected: Sequence[str] = ()) -> pd.DataFrame:
    """Every other arm's rows of ``board`` against the ``against`` arm's (see the module
    docstring): Fisher on the test solve rates, Mann-Whitney on the test loss ratios, Holm-adjusted
    per task, variant and seq_len."""
    names = arms(board)
    if str(against) not in set(names):
        raise ConfigError(f"unknown arm {str(against)!r} for --against; arms: "
                          f"{', '.join(sorted(set(names))) or 'none'}")
    keys = key_columns(board.columns)
    ignore = selection_keys(board.columns, selected) if selected else []
    runs = finished_runs(runs)
    by_config = _by_config(runs, keys)
    empty = runs.iloc[0:0]
    ref_rows = board[names == str(against)]
    rows = []
    for (_, row), arm in zip(board.iterrows(), names):
        ref = _reference(row, ref_rows, keys, ignore) if arm != str(against) else None
        if ref is None:
            continue
        x = by_config.get(tuple(_text(row[k]) for k in keys), empty)
        y = by_config.get(tuple(_text(ref[k]) for k in keys), empty)
        rows.append({**{k: row[k] for k in keys}, "arm": arm, "ref_arm": str(against),
                     **_pair(x, y)})
    out = pd.DataFrame(rows, columns=keys + [c for c in COMPARE_COLUMNS if c not in keys])
    return _holm_per_problem(out, keys)


def _holm_per_problem(out: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Holm's adjustment of both p-values over the arms compared at one task/variant/seq_len."""
    out = out.assign(p_fisher_holm=math.nan, p_rank_holm=math.nan)
    problem = [k for k in PROBLEM_KEYS if k in keys]
    if not len(out):
        return out
    for _, group in out.groupby(problem, dropna=False, sort=False):
        out.loc[group.index, "p_fisher_holm"] = stats.holm(group["p_fisher"].to_numpy(float))
        out.loc[group.index, "p_rank_holm"] = stats.holm(group["p_rank"].to_numpy(float))
    return out[keys + [c for c in COMPARE_COLUMNS if c not in keys]]


# -- building and writing -----------------------------------------------------------------------------


def build(runs_csv: str | os.PathLike, task: str | None = None,
          select: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The leaderboard and the headline table of ``runs_csv`` (optionally one task), with the
    ``select`` keys chosen on the validation set when given."""
    board = _apply_selection(aggregate(load_runs(runs_csv, task)), select)
    return board, headline(board, select)


def build_comparison(runs_csv: str | os.PathLike, against: str, task: str | None = None,
                     select: Sequence[str] = ()) -> pd.DataFrame:
    """``compare`` on ``runs_csv`` (optionally one task; with ``select``: the selected configs)."""
    runs = load_runs(runs_csv, task)
    board = _apply_selection(aggregate(runs), select)
    return compare(runs, board, against, select)


def selected_runs(runs_csv: str | os.PathLike, select: Sequence[str],
                  task: str | None = None) -> pd.DataFrame:
    """The runs (rows of ``runs_csv``) of the configurations ``select`` keeps: the runs behind
    each row of ``build(runs_csv, task, select)``, e.g. to draw only the selected learning
    rate's gradient probes."""
    runs = load_runs(runs_csv, task)
    board = _apply_selection(aggregate(runs), select)
    keys = key_columns(board.columns)
    chosen = {tuple(_text(row[k]) for k in keys) for _, row in board.iterrows()}
    mine = runs[keys].map(_text).apply(tuple, axis=1).isin(chosen)
    return runs[mine]


def check_output(out: str | os.PathLike) -> Path:
    """``out`` must name a file (not empty, not a directory)."""
    path = Path(out)
    if not str(out).strip() or not path.name or path.name in (".", ".."):
        raise ConfigError(f"--out must name a CSV file, got {str(out)!r}")
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory; give a file name, e.g. {path / 'leaderboard.csv'}")
    check_location(path, write=True, what="--out")  # a FIFO, a link to nothing: before reading
    return path


def headline_path(out: str | os.PathLike) -> Path:
    """``results/leaderboard.csv`` -> ``results/leaderboard_headline.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_headline{out.suffix or '.csv'}")


def comparison_path(out: str | os.PathLike, against: str) -> Path:
    """``results/leaderboard.csv``, ``rnn_tanh`` -> ``results/leaderboard_against_rnn_tanh.csv``
    (characters other than letters, digits, ``_``, ``-``, ``.`` become ``_``)."""
    out = Path(out)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(against))
    return out.with_name(f"{out.stem}_against_{safe}{out.suffix or '.csv'}")


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, path)
    return path


def lengths_path(out: str | os.PathLike) -> Path:
    """``results/leaderboard.csv`` -> ``results/leaderboard_lengths.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_lengths{out.suffix or '.csv'}")


def write(board: pd.DataFrame, table: pd.DataFrame, out: str | os.PathLike,
          comparison: pd.DataFrame | None = None, against: str | None = None,
          lengths: pd.DataFrame | None = None) -> tuple[Path, ...]:
    """Write the leaderboard to ``out`` and the headline table next to it (and the comparison
    with ``against``, and the length-generalization table, when given), each atomically."""
    check_output(out)
    written = [_write_csv(board, Path(out)), _write_csv(table, headline_path(out))]
    if comparison is not None:
        written.append(_write_csv(comparison, comparison_path(out, str(against))))
    if lengths is not None and not lengths.empty:
        written.append(_write_csv(lengths, lengths_path(out)))
    return tuple(written)


# -- printing ------------------------------------------------------------------------------------

#: how each statistic is shown in a table (csv output keeps full precision)
_FORMATS = {
    "solve_rate": "{:.2f}", "solve_rate_at_T": "{:.2f}", "ref_solve_rate": "{:.2f}",
    "solve_rate_lo": "{:.2f}", "solve_rate_hi": "{:.2f}",
    "solve_rate_at_T_lo": "{:.2f}", "solve_rate_at_T_hi": "{:.2f}",
    "loss_ratio_mean": "{:#.3g}", "loss_ratio_ci_lo": "{:#.3g}", "loss_ratio_ci_hi": "{:#.3g}",
    "loss_ratio_std_ddof1": "{:#.2g}", "loss_ratio_se": "{:#.2g}",
    "accuracy_mean": "{:.3f}", "km_median_solved_step": "{:.0f}",
    "median_step_solved_runs": "{:.0f}", "throughput_mean": "{:.0f}",
    "val_solve_rate": "{:.2f}", "val_loss_ratio_mean": "{:#.3g}",
    "longest_solved_T": "{:.0f}", "n_seeds_at_T": "{:.0f}", "longest_tried_T": "{:.0f}",
    "solve_rate_diff": "{:+.2f}", "rank_effect": "{:+.2f}",
    "p_fisher": "{:.3g}", "p_fisher_holm": "{:.3g}", "p_rank": "{:.3g}", "p_rank_holm": "{:.3g}",
}
#: a statistic shown with its interval in one table cell: "0.60 [0.23, 0.88]"
_INTERVALS = {"solve_rate": ("solve_rate_lo", "solve_rate_hi"),
              "loss_ratio_mean": ("loss_ratio_ci_lo", "loss_ratio_ci_hi"),
              "solve_rate_at_T": ("solve_rate_at_T_lo", "solve_rate_at_T_hi")}
#: columns kept in the CSV only (the table says them another way, or they mislead alone)
_CSV_ONLY = {"median_step_solved_runs", "bounded", "selection", "selected_keys"}
#: short headers for the terminal
HEADERS = {
    "loss_ratio_mean": "loss/base [95% CI]", "loss_ratio_std_ddof1": "sd(ddof1)",
    "loss_ratio_se": "se", "solve_rate": "solved [95% CI]",
    "km_median_solved_step": "KM median step", "throughput_mean": "seq/s",
    "accuracy_mean": "accuracy (classif.)", "n_seeds": "seeds", "n_diverged": "diverged",
    "n_failed": "failed",
    "val_solve_rate": "val solved", "val_loss_ratio_mean": "val loss/base",
    "selected_from": "chosen from",
    "longest_solved_T": "longest T solved", "solve_rate_at_T": "solved at T [95% CI]",
    "n_seeds_at_T": "seeds at T", "longest_tried_T": "longest T tried", "seq_lens": "T tried",
    "step_budget": "steps", "batch_size": "batch",
    "ref_arm": "reference", "ref_n_seeds": "ref seeds", "ref_solve_rate": "ref solved",
    "solve_rate_diff": "solved diff", "p_fisher_holm": "p_fisher (Holm)",
    "rank_effect": "rank effect", "p_rank_holm": "p_rank (Holm)",
}
#: headers of those statistics in a table without their intervals (the comparison)
_PLAIN_HEADERS = {"solve_rate": "solved", "loss_ratio_mean": "loss/base",
                  "solve_rate_at_T": "solved at T"}
_STATS = (set(STAT_COLUMNS) | set(HEADLINE_COLUMNS) | set(COMPARE_COLUMNS)) - {"arm", "ref_arm"}


def _value(value, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-" if column in _STATS else ""
    if column in _FORMATS and isinstance(value, (int, float, np.number)):
        return _FORMATS[column].format(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cell(row: dict, column: str) -> str:
    """One table cell: a value, with its interval when it has one ('0.60 [0.23, 0.88]'), and a
    longest solved T that nothing longer bounds as '≥ T'."""
    text = _value(row[column], column)
    bounds = _INTERVALS.get(column)
    if bounds and text != "-" and all(b in row and not _missing(row[b]) for b in bounds):
        text += f" [{_value(row[bounds[0]], bounds[0])}, {_value(row[bounds[1]], bounds[1])}]"
    if column == "longest_solved_T" and text != "-" and _false(row.get("bounded")):
        text = "≥ " + text
    return text


def _false(v) -> bool:
    return not _missing(v) and str(v).strip().lower() in ("false", "0", "0.0")


def implied_by_label(frame: pd.DataFrame, keys) -> set[str]:
    """Option keys that the labels name: every row is labelled and each label has one value of
    the key (e.g. ``forget_bias`` for arms ``lstm`` and ``lstm_fb1``). Empty without labels."""
    if "label" not in keys or not len(frame):
        return set()
    text = frame[list(keys)].map(_text)
    if (text["label"] == "").any():
        return set()
    structural = {"task", "variant", "label", "cell", "impl", "seq_len"}
    per_label = text.groupby("label")
    return {k for k in keys if k not in structural and (per_label[k].nunique() == 1).all()}


def display_columns(frame: pd.DataFrame) -> list[str]:
    """Keys that vary (constant ones are noise in a table), always task/cell/impl/seq_len, stats.

    Options that a spec arm's label already names (one value per label) are left out too: the
    table says ``lstm_fb1``, the CSV keeps ``forget_bias`` = 1.0. An interval is shown in its
    statistic's cell; validation columns only when some row has them."""
    keys = key_columns(frame.columns)
    always = {"task", "variant", "label", "cell", "impl", "seq_len"}
    if "selected_keys" in frame.columns:  # the value chosen per row is the point of the table
        always |= {k for v in frame["selected_keys"].dropna() for k in str(v).split()}
    text = frame[keys].map(_text)
    implied = implied_by_label(frame, keys) - always
    shown = [k for k in keys if (k in always and k not in ("variant", "label"))
             or (text[k].nunique() > 1 and (k in always or k not in implied))]
    inside = {b for c, bs in _INTERVALS.items() if c in frame.columns for b in bs}
    if "arm" in frame.columns:  # a comparison: the arm column names each row's arm
        shown = [k for k in shown if k != "label"]
    extra = [c for c in frame.columns if c not in keys and c not in _CSV_ONLY and c not in inside]
    quiet = {"n_diverged", "n_failed"}  # shown only when not all zero
    return shown + [c for c in extra if _shown(frame[c], c in quiet)]


def _header(frame: pd.DataFrame, column: str) -> str:
    """The short header of ``column``; '[95% CI]' only where the frame has the interval."""
    if column in _INTERVALS and not set(_INTERVALS[column]) <= set(frame.columns):
        return _PLAIN_HEADERS[column]
    return HEADERS.get(column, column)


def _shown(col: pd.Series, quiet: bool) -> bool:
    if quiet:
        return bool(col.fillna(0).astype(float).any())
    if col.name in ("val_solve_rate", "val_loss_ratio_mean"):
        return bool(col.notna().any())  # rows written before the validation split have none
    return True


@functools.cache
def _has_nonlinearity_choice(cell: str) -> bool | None:
    """Whether cell ``cell``'s class lists several nonlinearities (the Elman rnn does; LSTM, GRU
    and the cells with a fixed one do not); None when its class cannot be loaded."""
    from seqbench.cells import cell_class

    try:
        return len(cell_class(cell).nonlinearities) > 1
    except (ConfigError, ImportError, AttributeError):
        return None


@functools.cache
def _is_regression(task: str) -> bool:
    """Whether task ``task`` is a regression (its class says ``kind = "regression"``)."""
    from seqbench.tasks import task_class

    try:
        return getattr(task_class(task), "kind", "") == "regression"
    except (ConfigError, ImportError):
        return False


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The values a printed table shows (the CSV keeps them all): no nonlinearity on the rows of
    a cell without a choice of one (LSTM, GRU: their class lists one), and no accuracy on the
    rows of a regression task (see ``ACCURACY_NOTE``)."""
    frame = frame.copy()
    if "nonlinearity" in frame.columns and "cell" in frame.columns:
        fixed = frame["cell"].map(lambda c: not _missing(c) and
                                  _has_nonlinearity_choice(str(c)) is False)
        if fixed.any():
            frame["nonlinearity"] = frame["nonlinearity"].astype(object).where(~fixed, "")
    if "accuracy_mean" in frame.columns and "task" in frame.columns:
        regression = frame["task"].map(lambda t: not _missing(t) and _is_regression(str(t)))
        if regression.any():
            frame["accuracy_mean"] = frame["accuracy_mean"].astype(object).where(~regression,
                                                                                  "n/a")
    return frame


def format_frame(frame: pd.DataFrame, fmt: str = "table") -> str:
    """``table``: aligned columns for a terminal; ``markdown``: a pipe table; ``csv``: everything.
    The tables show ``display_frame``'s values, in the columns the data calls for."""
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    if fmt not in ("table", "markdown"):
        raise ConfigError(f"unknown format {fmt!r}; allowed: table, csv, markdown")
    columns = display_columns(frame)
    header = [_header(frame, c) for c in columns]
    shown = display_frame(frame)
    body = [[_cell(row, c) for c in columns] for row in shown.to_dict("records")]
    numeric = [c in _STATS or c == "seq_len" or pd.api.types.is_numeric_dtype(frame[c])
               for c in columns]
    return render(header, body, numeric, fmt)


def config_stats(group: pd.DataFrame) -> dict:
    """The leaderboard's statistics of one configuration's runs (``group``: its rows), for the
    tables built like the leaderboard (seqbench.lengths)."""
    return _stats(group)
