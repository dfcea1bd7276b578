"""The leaderboard: runs.csv aggregated over seeds, and the headline "longest lag solved".

One leaderboard row per configuration apart from its seed: task, variant, label, cell, impl, every
cell option, seq_len and every training setting (the columns of ``RunConfig`` / ``CellConfig``
fields, so options added there become keys at once; ``seed``, ``device``, ``threads`` and
``probe_every`` are not keys, since they do not change what a run computes). Per row:

==========================  =================================================================
``n_seeds``                 finished runs (status ``ok`` or ``diverged``), one per seed
``n_diverged``              of those, runs whose loss became NaN/inf
``n_failed``                runs that failed or were interrupted (left out of every statistic)
``solve_rate``              solved runs / ``n_seeds`` (a diverged run counts as not solved)
``loss_ratio_mean``         mean of final loss / memoryless baseline, over the non-diverged runs
``loss_ratio_std_ddof1``    its sample standard deviation (ddof = 1; empty for a single run)
``loss_ratio_se``           standard error of the mean: std (ddof 1) / sqrt(n)
``accuracy_mean``           mean final accuracy, non-diverged runs
``median_solved_step``      median step at which the solved runs were solved (solved runs only)
``throughput_mean``         mean training throughput, sequences per second
==========================  =================================================================

A config recorded more than once (re-run, retried) counts once: its last finished row.
The headline table has one row per configuration apart from seed and seq_len: the longest seq_len
solved by at least half of its seeds (``longest_solved_T``, empty when none is), and the longest
seq_len that was tried.
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, fields
from pathlib import Path

import pandas as pd

from seqbench.cells import CellConfig
from seqbench.choices import CELLS, IMPLS, TASKS
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.results import read_results

FINISHED = ("ok", "diverged")
#: RunConfig fields that do not change what a run computes: never leaderboard keys
NOT_KEYS = ("seed", "device", "threads", "probe_every")
#: RunConfig fields whose runs.csv column has another name
COLUMN_NAMES = {"steps": "step_budget"}
STAT_COLUMNS = ["n_seeds", "n_diverged", "n_failed", "solve_rate", "loss_ratio_mean",
                "loss_ratio_std_ddof1", "loss_ratio_se", "accuracy_mean", "median_solved_step",
                "throughput_mean"]
HEADLINE_COLUMNS = ["longest_solved_T", "solve_rate_at_T", "n_seeds_at_T", "longest_tried_T",
                    "seq_lens"]


def key_columns(columns) -> list[str]:
    """The grouping keys present in ``columns``, in reading order: what, which cell, T, training."""
    cell = [f.name for f in fields(CellConfig)]
    run = [COLUMN_NAMES.get(f.name, f.name) for f in fields(RunConfig) if f.name != "cell"]
    first = ["task", "variant", "label", "cell", "impl"]
    order = first + [c for c in cell if c not in first] + ["seq_len"]
    order += [c for c in run if c not in order]
    return [c for c in order if c in columns and c not in NOT_KEYS]


def _bool(series: pd.Series) -> pd.Series:
    return series.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))


def load_runs(path: str | os.PathLike, task: str | None = None) -> pd.DataFrame:
    """runs.csv, optionally one task only, each config once (its last finished row, else its last)."""
    path = Path(path)
    df = read_results(path)
    if "config_id" not in df.columns or "status" not in df.columns:
        raise ConfigError(f"{path} is not a seqbench runs file (no config_id/status columns)")
    if task is not None:
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
        present = sorted(df["task"].dropna().unique()) if "task" in df.columns else []
        df = df[df["task"] == task]
        if df.empty:
            raise ConfigError(f"no runs of task {task!r} in {path}; tasks there: "
                              f"{', '.join(present) or 'none'}")
    if df.empty:
        raise ConfigError(f"{path} has no runs yet")
    finished = df["status"].isin(FINISHED)
    keep = pd.concat([df[~finished], df[finished]])  # a finished row wins over a failed one
    return keep.drop_duplicates("config_id", keep="last").sort_index()


def _text(v) -> str:
    """A key value as text; missing (None, NaN) is ''."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _defaults() -> dict[str, str]:
    """Column -> default value (as text) of every RunConfig / CellConfig field."""
    d = {f.name: f.default for f in fields(CellConfig)}
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
    """Sorted for reading: task and variant; cell (rnn, lstm, gru); the configurations with the
    fewest changes from the defaults first (a spec's reference arm before its fixes); label;
    implementation; the other keys; seq_len."""
    orders = {"task": TASKS, "cell": CELLS, "impl": IMPLS}

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


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration apart from the seed (see the module docstring for the columns)."""
    keys = key_columns(runs.columns)
    rows = []
    for values, group in runs.groupby(keys, dropna=False, sort=False):
        finished = group[group["status"].isin(FINISHED)]
        n = len(finished)
        ok = finished[finished["status"] == "ok"]
        solved = finished[_bool(finished["solved"])] if n else finished
        ratio = pd.to_numeric(ok["loss_ratio"], errors="coerce").dropna()
        ratio = ratio[ratio.map(math.isfinite)]
        sd = float(ratio.std(ddof=1)) if len(ratio) >= 2 else math.nan
        steps = pd.to_numeric(solved["solved_step"], errors="coerce").dropna()
        rows.append({
            **dict(zip(keys, values if isinstance(values, tuple) else (values,))),
            "n_seeds": n,
            "n_diverged": int((finished["status"] == "diverged").sum()),
            "n_failed": len(group) - n,
            "solve_rate": len(solved) / n if n else math.nan,
            "loss_ratio_mean": float(ratio.mean()) if len(ratio) else math.nan,
            "loss_ratio_std_ddof1": sd,
            "loss_ratio_se": sd / math.sqrt(len(ratio)) if len(ratio) >= 2 else math.nan,
            "accuracy_mean": float(pd.to_numeric(ok["accuracy"], errors="coerce").mean())
            if len(ok) else math.nan,
            "median_solved_step": float(steps.median()) if len(steps) else math.nan,
            "throughput_mean": float(pd.to_numeric(finished["throughput_seq_s"], errors="coerce")
                                     .mean()) if n else math.nan,
        })
    board = pd.DataFrame(rows, columns=keys + STAT_COLUMNS)
    return _sorted(board, keys)


def headline(board: pd.DataFrame) -> pd.DataFrame:
    """Per configuration apart from seed and seq_len: the longest seq_len solved by >= half the
    seeds (a row whose runs all failed does not count as tried)."""
    keys = [k for k in key_columns(board.columns) if k != "seq_len"]
    rows = []
    for values, group in board.groupby(keys, dropna=False, sort=False):
        tried = group[group["n_seeds"] > 0]
        solved = tried[tried["solve_rate"] >= 0.5]
        best = solved.loc[solved["seq_len"].idxmax()] if len(solved) else None
        rows.append({
            **dict(zip(keys, values if isinstance(values, tuple) else (values,))),
            "longest_solved_T": int(best["seq_len"]) if best is not None else math.nan,
            "solve_rate_at_T": float(best["solve_rate"]) if best is not None else math.nan,
            "n_seeds_at_T": int(best["n_seeds"]) if best is not None else math.nan,
            "longest_tried_T": int(tried["seq_len"].max()) if len(tried) else math.nan,
            "seq_lens": " ".join(str(int(t)) for t in sorted(tried["seq_len"])),
        })
    table = pd.DataFrame(rows, columns=keys + HEADLINE_COLUMNS)
    return _sorted(table, keys)


def build(runs_csv: str | os.PathLike, task: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The leaderboard and the headline table of ``runs_csv`` (optionally one task)."""
    board = aggregate(load_runs(runs_csv, task))
    return board, headline(board)


def check_output(out: str | os.PathLike) -> Path:
    """``out`` must name a file (not empty, not a directory)."""
    path = Path(out)
    if not str(out).strip() or not path.name or path.name in (".", ".."):
        raise ConfigError(f"--out must name a CSV file, got {str(out)!r}")
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory; give a file name, e.g. {path / 'leaderboard.csv'}")
    return path


def headline_path(out: str | os.PathLike) -> Path:
    """``results/leaderboard.csv`` -> ``results/leaderboard_headline.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_headline{out.suffix or '.csv'}")


def write(board: pd.DataFrame, table: pd.DataFrame, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write the leaderboard to ``out`` and the headline table next to it, each atomically."""
    check_output(out)
    paths = (Path(out), headline_path(out))
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for frame, path in zip((board, table), paths):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        frame.to_csv(tmp, index=False, lineterminator="\n")
        os.replace(tmp, path)
    return paths


# -- printing ------------------------------------------------------------------------------------

#: how each statistic is shown in a table (csv output keeps full precision)
_FORMATS = {
    "solve_rate": "{:.2f}", "solve_rate_at_T": "{:.2f}",
    "loss_ratio_mean": "{:#.3g}", "loss_ratio_std_ddof1": "{:#.2g}", "loss_ratio_se": "{:#.2g}",
    "accuracy_mean": "{:.3f}", "median_solved_step": "{:.0f}", "throughput_mean": "{:.0f}",
    "longest_solved_T": "{:.0f}", "n_seeds_at_T": "{:.0f}", "longest_tried_T": "{:.0f}",
}
#: short headers for the terminal
HEADERS = {
    "loss_ratio_mean": "loss/base", "loss_ratio_std_ddof1": "sd(ddof1)", "loss_ratio_se": "se",
    "solve_rate": "solved", "median_solved_step": "median step", "throughput_mean": "seq/s",
    "accuracy_mean": "accuracy", "n_seeds": "seeds", "n_diverged": "diverged", "n_failed": "failed",
    "longest_solved_T": "longest T solved", "solve_rate_at_T": "solved at T",
    "n_seeds_at_T": "seeds at T", "longest_tried_T": "longest T tried", "seq_lens": "T tried",
    "step_budget": "steps", "batch_size": "batch",
}


def _cell(value, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-" if column in STAT_COLUMNS or column in HEADLINE_COLUMNS else ""
    if column in _FORMATS and isinstance(value, (int, float)):
        return _FORMATS[column].format(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
    table says ``lstm_fb1``, the CSV keeps ``forget_bias`` = 1.0."""
    keys = key_columns(frame.columns)
    always = {"task", "variant", "label", "cell", "impl", "seq_len"}
    text = frame[keys].map(_text)
    implied = implied_by_label(frame, keys)
    shown = [k for k in keys if (k in always and k not in ("variant", "label"))
             or (text[k].nunique() > 1 and (k in always or k not in implied))]
    stats = [c for c in frame.columns if c in STAT_COLUMNS or c in HEADLINE_COLUMNS]
    quiet = {"n_diverged", "n_failed"}  # shown only when not all zero
    return shown + [c for c in stats if c not in quiet or frame[c].fillna(0).astype(float).any()]


def format_frame(frame: pd.DataFrame, fmt: str = "table") -> str:
    """``table``: aligned columns for a terminal; ``markdown``: a pipe table; ``csv``: everything."""
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    if fmt not in ("table", "markdown"):
        raise ConfigError(f"unknown format {fmt!r}; allowed: table, csv, markdown")
    columns = display_columns(frame)
    header = [HEADERS.get(c, c) for c in columns]
    body = [[_cell(v, c) for v, c in zip(row, columns)] for row in frame[columns].itertuples(index=False)]
    numeric = [c in STAT_COLUMNS or c in HEADLINE_COLUMNS or c == "seq_len"
               or pd.api.types.is_numeric_dtype(frame[c]) for c in columns]
    widths = [max([3, len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]

    def cells(values: list[str]) -> list[str]:
        return [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]

    if fmt == "markdown":
        rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric)]
        lines = ["| " + " | ".join(cells(r)) + " |" for r in [header, rule, *body]]
    else:
        rule = ["-" * w for w in widths]
        lines = ["  ".join(cells(r)).rstrip() for r in [header, rule, *body]]
    return "\n".join(lines) + "\n"
