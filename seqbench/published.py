"""Published results next to ours: each arm of a spec's ``[published.<arm>]`` table against its runs.

A spec such as ``tasks/papers.toml`` names, for every arm, the paper, the table or figure, what the
paper ran and what it reported (a test loss, and always its **outcome**: ``solved``, ``partial`` or
``baseline``, i.e. at the memoryless baseline). ``compare`` finds the arm's runs in a runs.csv (by
the config ids the spec expands to, so a run of another profile or another setting never counts)
and states, per arm, whether our outcome agrees with the paper's.

Outcome of one run (test set): ``solved`` when it met the task's criterion; otherwise ``baseline``
when its loss is at least ``BASELINE_LEVEL`` (90%) of the memoryless baseline, else ``partial``.
Outcome of an arm: ``solved`` when at least half of its seeds solved; otherwise ``baseline`` or
``partial`` by its median loss ratio. Agreement: the two outcomes are the same (``agree``) or not
(``disagree``); ``not run`` when no seed of the arm is recorded yet. Numbers are compared as well
(median measured loss over the published one), but the verdict is on outcomes: budgets, optimizers
and sizes differ between papers and between us and them, and each row says how.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pandas as pd

from seqbench.errors import ConfigError
from seqbench.spec import Spec

#: a loss at or above this fraction of the memoryless baseline counts as "at the baseline"
BASELINE_LEVEL = 0.9
COLUMNS = ["arm", "paper", "source", "task", "variant", "seq_len", "cell", "setting",
           "metric", "published_value", "published_ratio", "published_outcome",
           "n_seeds", "n_solved", "solve_rate", "solve_rate_lo", "solve_rate_hi",
           "loss_median", "loss_min", "loss_max", "loss_ratio_median", "measured_outcome",
           "agreement", "verified", "differences"]


def run_outcome(solved: bool, loss_ratio: float) -> str:
    """``solved``, ``baseline`` (loss >= 90% of the memoryless baseline, or not finite) or
    ``partial``."""
    if solved:
        return "solved"
    if not math.isfinite(loss_ratio) or loss_ratio >= BASELINE_LEVEL:
        return "baseline"
    return "partial"


def arm_outcome(n_solved: int, n: int, median_ratio: float) -> str:
    if n == 0:
        return ""
    if n_solved >= n / 2:
        return "solved"
    return run_outcome(False, median_ratio)


def _finished_rows(runs_csv: Path | None) -> pd.DataFrame:
    """The finished rows of ``runs_csv`` (empty when there is no such file yet), each config once."""
    if runs_csv is None or not Path(runs_csv).is_file():
        return pd.DataFrame(columns=["config_id", "status", "solved", "final_loss", "loss_ratio"])
    from seqbench.leaderboard import finished_runs
    from seqbench.results import read_results

    df = read_results(runs_csv)
    if "config_id" not in df.columns or "status" not in df.columns:
        raise ConfigError(f"{runs_csv} is not a seqbench runs file (no config_id/status columns)")
    return finished_runs(df).drop_duplicates("config_id", keep="last")


def compare(spec: Spec, runs_csv: str | os.PathLike | None, profile: str | None = None
            ) -> pd.DataFrame:
    """One row per published result of ``spec``: the paper's number and outcome, ours (from the
    runs of ``profile`` recorded in ``runs_csv``), and whether they agree (module docstring)."""
    from seqbench.leaderboard import solved_mask
    from seqbench.stats import wilson_interval
    from seqbench.tasks import make_task

    if not spec.published:
        raise ConfigError(f"{spec.path} has no [published.<arm>] tables; nothing to compare")
    configs = spec.expand(profile)
    by_arm: dict[str, list] = {}
    for cfg in configs:
        by_arm.setdefault(cfg.label, []).append(cfg)
    rows = _finished_rows(Path(runs_csv) if runs_csv is not None else None)
    out = []
    for arm, pub in spec.published.items():
        cfgs = by_arm.get(arm)
        if not cfgs:  # the arm is not part of this profile
            continue
        first = cfgs[0]
        mine = rows[rows["config_id"].isin({c.config_id() for c in cfgs})]
        ratios = pd.to_numeric(mine["loss_ratio"], errors="coerce")
        losses = pd.to_numeric(mine["final_loss"], errors="coerce")
        solved = solved_mask(mine) if len(mine) else pd.Series(dtype=bool)
        n, k = len(mine), int(solved.sum())
        lo, hi = wilson_interval(k, n) if n else (math.nan, math.nan)
        median_ratio = float(ratios.median()) if ratios.notna().any() else math.nan
        measured = arm_outcome(k, n, median_ratio)
        baseline = make_task(first.task, first.variant).baseline_loss(first.seq_len)
        value = pub.get("value", math.nan)
        out.append({
            "arm": arm, "paper": pub["paper"], "source": pub["source"], "task": first.task,
            "variant": first.variant, "seq_len": first.seq_len, "cell": first.cell.cell,
            "setting": pub.get("setting", ""), "metric": pub["metric"],
            "published_value": value,
            "published_ratio": value / baseline if math.isfinite(value) else math.nan,
            "published_outcome": pub["outcome"],
            "n_seeds": n, "n_solved": k, "solve_rate": k / n if n else math.nan,
            "solve_rate_lo": lo, "solve_rate_hi": hi,
            "loss_median": float(losses.median()) if losses.notna().any() else math.nan,
            "loss_min": float(losses.min()) if losses.notna().any() else math.nan,
            "loss_max": float(losses.max()) if losses.notna().any() else math.nan,
            "loss_ratio_median": median_ratio,
            "measured_outcome": measured,
            "agreement": "not run" if n == 0 else
            ("agree" if measured == pub["outcome"] else "disagree"),
            "verified": pub.get("verified", False),
            "differences": pub.get("differences", ""),
        })
    return pd.DataFrame(out, columns=COLUMNS)


def _number(v: float) -> str:
    return "-" if not isinstance(v, (int, float)) or math.isnan(v) else f"{v:.3g}"


def summary_rows(table: pd.DataFrame) -> list[dict[str, str]]:
    """The printed columns: arm, paper and where, T, the paper's result, ours, seeds, verdict."""
    shown = []
    for r in table.itertuples(index=False):
        published = r.published_outcome
        if r.metric == "test_loss":
            published = f"{_number(r.published_value)} ({published})"
        if r.n_seeds:
            measured = (f"{_number(r.loss_median)} [{_number(r.loss_min)}, {_number(r.loss_max)}] "
                        f"({r.measured_outcome}; solved {r.n_solved}/{r.n_seeds})")
        else:
            measured = "-"
        if not r.verified:
            published += ", not verified"
        where = re.split(r"[(;:]", str(r.source).split(", ", 1)[-1])[0].strip()  # "Table 1"
        shown.append({"arm": r.arm, "paper": f"{r.paper}, {where}", "T": str(r.seq_len),
                      "published": published, "measured: test loss median [range]": measured,
                      "agreement": r.agreement})
    return shown


def format_table(table: pd.DataFrame, fmt: str = "table") -> str:
    """``table`` (aligned), ``markdown`` (a pipe table) or ``csv`` (every column)."""
    if fmt == "csv":
        return table.to_csv(index=False, lineterminator="\n")
    if fmt not in ("table", "markdown"):
        raise ConfigError(f"unknown format {fmt!r}; allowed: table, csv, markdown")
    from seqbench.tables import render

    rows = summary_rows(table)
    header = list(rows[0]) if rows else ["arm"]
    return render(header, [[r[h] for h in header] for r in rows], [False] * len(header), fmt)


def agreement_counts(table: pd.DataFrame) -> str:
    """e.g. ``12 published results: 7 agree, 2 disagree, 3 not run``."""
    counts = table["agreement"].value_counts()
    parts = [f"{counts[k]} {k}" for k in ("agree", "disagree", "not run") if k in counts]
    return f"{len(table)} published results: " + ", ".join(parts)
