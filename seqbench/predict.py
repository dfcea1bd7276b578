"""Does the gradient at initialization predict which runs solve?

Per finished run (status ``ok`` or ``diverged``) of a runs CSV, the gradient-vs-lag curve of its
step-0 probe (``<run folder>/grads.csv``, written by ``seqbench run --probe-every N``; the top
layer of the model) gives the init-time measures (``MEASURES``):

``decay_factor``       the fitted per-step decay of ||dL/dh_t|| (1 = no decay, > 1 = growth)
``abs_log_decay``      |ln decay_factor|: the distance of the decay from 1 on a log scale (the
                       claim "a decay near 1 at init means solving" predicts *low* values here)
``log10_ratio_lag_T``  log10 of ||dL/dh|| at the largest lag probed over its value at lag 0
``horizon``            the lag where the norm first falls below 1e-6 of its lag-0 value (the upper
                       end of its bracket). Censored: a curve that never fell that low has only
                       "longer than its largest lag". For rank statistics every run's horizon is
                       truncated at the smallest largest-lag ``c`` among the runs compared: a
                       horizon reached at a lag <= c stays, every other one (censored, or reached
                       beyond c) becomes +inf, tied with the others, ranked above every reached
                       one. Every pair is then ordered correctly (a horizon above c can only be
                       compared as "> c"); within one task (one T) c is that task's largest lag
                       and nothing reached is lost.

and, where the run has a dynamics measurement at step 0 (``<run folder>/dynamics.csv``, written
by ``seqbench run --probe lyapunov --probe jacobian``; or a row set of ``seqbench dynamics
--spec`` given as ``dynamics=``), two measures of its top layer's hidden-state dynamics
(``DYNAMICS_MEASURES``; seqbench.dynamics):

``lyapunov_max``       the largest Lyapunov exponent lambda_1 (per step, natural log; batch mean):
                       < 0, nearby trajectories converge (the state forgets at that rate)
``jacobian_norm``      the median over the sequence of ||J_t||_2, the spectral norm of the
                       one-step Jacobian d s_t / d s_{t-1} (batch mean at each of the measured
                       steps). Chosen over the top singular value of a k-step product (normalized
                       as s_1^(1/k)): one step's norm is defined at every T and needs no lag, and
                       its median is robust to the first steps from the zero state; the k-step
                       product's normalized value approaches exp(lambda_1) as k grows, which
                       ``lyapunov_max`` already gives.

A ``dynamics=`` file is joined to the runs by what fixes the initial model and the measured batch
(``INIT_KEYS``: task, variant, T, every cell column, seed), not by the learning rate, the
clipping or the arm's label, none of which changes the weights a run starts from; a run's own
dynamics.csv is used first. With several step-0 measurements of one initial model, the last is
used.

Per measure (``predict``): the number of runs with the measure, of them solved (on the test set;
a diverged run never is), the **ROC AUC** for ``solved`` (the Mann-Whitney U of the solved runs'
values against the unsolved ones' over n_solved * n_unsolved: the probability that a solved run
has the higher value, ties counted half; 0.5 = no information, below 0.5 = *lower* values go with
solving) with a 95% percentile bootstrap interval (``RESAMPLES`` resamples, seed 0; stratified:
the solved and the unsolved runs are resampled separately, each with replacement, so every
resample keeps their counts; or, ``resample="config"``, whole configurations, each with all its
seeds: the runs of one arm share their measure nearly exactly, so they are no independent
draws), and **Spearman's rank correlation** of the measure with the time to solve: the solved
run's ``solved_step`` (else ``steps_taken``), an unsolved run +inf, i.e. "not within its budget",
tied with the other unsolved runs and ranked after every solved one (the budgets are equal in a
sweep), with scipy's p-value (which assumes independent runs; see above).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from seqbench.errors import ConfigError

MEASURES = ("decay_factor", "abs_log_decay", "log10_ratio_lag_T", "horizon")
DYNAMICS_MEASURES = ("lyapunov_max", "jacobian_norm")
RESAMPLES = 2_000
CONF = 0.95
RESAMPLE_UNITS = ("runs", "config")
POOLED = "all"
COLUMNS = ["task", "measure", "n", "n_solved", "median_solved", "median_unsolved", "auc",
           "auc_lo", "auc_hi", "spearman_rho", "spearman_p"]


# -- statistics ---------------------------------------------------------------------------------


def _xy(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ConfigError(f"scores and labels differ in length ({len(s)} and {len(y)})")
    keep = ~np.isnan(s)
    return s[keep], y[keep]


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """P(score of a positive > score of a negative), ties counted half: the Mann-Whitney U of the
    positives over n_pos * n_neg (midranks). +-inf are values like any other; NaN scores are
    dropped. NaN when either class is empty."""
    s, y = _xy(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return math.nan
    ranks = sps.rankdata(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _auc_rows(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC of each row of the resampled ``pos`` (B x n_pos) against ``neg`` (B x n_neg)."""
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    ranks = sps.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    return (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_auc_ci(scores: Sequence[float], labels: Sequence[bool], groups=None,
                     conf: float = CONF, n_resamples: int = RESAMPLES,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``roc_auc``. Without ``groups``: stratified, the positives
    and the negatives resampled separately (each with replacement, their counts kept). With
    ``groups`` (one id per score): whole groups resampled with replacement (a cluster bootstrap;
    resamples without a positive or a negative are skipped). The same inputs and ``seed`` give
    the same interval; (nan, nan) when a class is empty or has fewer than 2 values (groups: fewer
    than 2 groups)."""
    if not 0 < conf < 1:
        raise ConfigError(f"confidence level must be between 0 and 1 (exclusive), got {conf!r}")
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ConfigError(f"scores and labels differ in length ({len(s)} and {len(y)})")
    keep = ~np.isnan(s)
    rng = np.random.default_rng(seed)
    alpha = 1 - conf
    if groups is None:
        s, y = s[keep], y[keep]
        pos, neg = s[y], s[~y]
        if len(pos) < 2 or len(neg) < 2:
            return math.nan, math.nan
        block = max(1, 2_000_000 // len(s))  # memory stays bounded for long inputs
        aucs = np.concatenate([
            _auc_rows(pos[rng.integers(0, len(pos), size=(m, len(pos)))],
                      neg[rng.integers(0, len(neg), size=(m, len(neg)))])
            for m in (min(block, n_resamples - start) for start in range(0, n_resamples, block))])
    else:
        g = np.asarray(groups, dtype=object).ravel()
        if g.shape != s.shape:
            raise ConfigError(f"scores and groups differ in length ({len(s)} and {len(g)})")
        s, y, g = s[keep], y[keep], g[keep]
        ids, codes = np.unique(g.astype(str), return_inverse=True)
        if len(ids) < 2 or not y.any() or y.all():
            return math.nan, math.nan
        members = [np.flatnonzero(codes == i) for i in range(len(ids))]
        aucs = np.full(n_resamples, np.nan)
        for b in range(n_resamples):
            idx = np.concatenate([members[i] for i in rng.integers(0, len(ids), size=len(ids))])
            aucs[b] = roc_auc(s[idx], y[idx])
        aucs = aucs[~np.isnan(aucs)]
        if not len(aucs):
            return math.nan, math.nan
    lo, hi = np.quantile(aucs, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Spearman's rank correlation of ``x`` and ``y`` with scipy's two-sided p-value (midranks for
    ties; +-inf rank as values, pairs with a NaN dropped); (nan, nan) for fewer than 3 pairs or a
    constant side."""
    a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ConfigError(f"x and y differ in length ({len(a)} and {len(b)})")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if len(a) < 3 or (a == a[0]).all() or (b == b[0]).all():
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sps.spearmanr(sps.rankdata(a), sps.rankdata(b))
    return float(result.statistic), float(result.pvalue)


# -- the runs and their step-0 probes -------------------------------------------------------------


def _run_folder(root: Path, row: dict) -> Path | None:
    """``runs/<name>`` beside the runs CSV (wherever the results were moved), else ``run_dir`` as
    recorded."""
    recorded = str(row.get("run_dir") or "")
    if recorded == "nan":
        recorded = ""
    for name in dict.fromkeys(n for n in (Path(recorded).name, str(row.get("run_id") or "")) if n):
        if (root / "runs" / name).is_dir():
            return root / "runs" / name
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    return None


def _number(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def init_measures(grads_csv: str | os.PathLike) -> dict | None:
    """The init-time measures of one run's ``grads.csv``: its step-0 probe (the last one, if it
    was probed at step 0 more than once), top layer; None when it has no step-0 probe. Reads the
    file with the csv module and keeps the step-0 rows only (a run's file holds every probe of
    its training)."""
    rows: dict[str, list[dict]] = {}
    try:
        with open(grads_csv, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if _number(r.get("step")) == 0:
                    rows.setdefault(r.get("probe_id", ""), []).append(r)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"cannot read {grads_csv} as a grads CSV: {e}") from None
    if not rows:
        return None
    probe = list(rows.values())[-1]
    layers = [_number(r.get("layer")) for r in probe]
    top = [r for r, layer in zip(probe, layers) if layer == max(layers)]
    lags = np.array([_number(r.get("lag")) for r in top])
    norms = np.array([_number(r.get("grad_norm")) for r in top])
    ok = ~np.isnan(lags)
    if not ok.any():
        return None
    lags, norms = lags[ok], norms[ok]
    first, last = norms[np.argmin(lags)], norms[np.argmax(lags)]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.log10(last / first)) if first > 0 else math.nan
    decay = _number(top[0].get("decay_factor"))
    return {
        "decay_factor": decay,
        "abs_log_decay": abs(math.log(decay)) if decay > 0 else math.nan,
        "log10_ratio_lag_T": ratio,
        "horizon_reached": _number(top[0].get("horizon")),  # NaN: not reached (censored)
        "max_lag": float(lags.max()),
    }


def _cell_columns() -> list[str]:
    from seqbench.results import CELL_COLUMNS

    return list(CELL_COLUMNS)


def init_keys() -> list[str]:
    """The columns that fix a run's initial model and measured batch (see the module docstring)."""
    return ["task", "variant", "seq_len", *_cell_columns(), "seed"]


def _key_text(v) -> str:
    """One value of a key as text that a runs CSV and a dynamics CSV spell alike: blank for
    missing, lower-case booleans, numbers as floats (25 and 25.0 are one T)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    text = str(v).strip()
    if text.lower() in ("", "nan", "none"):
        return ""
    if text.lower() in ("true", "false"):
        return text.lower()
    try:
        return repr(float(text))
    except ValueError:
        return text


def init_key(row: dict) -> tuple:
    return tuple(_key_text(row.get(k)) for k in init_keys())


def dynamics_measures(rows: pd.DataFrame) -> pd.DataFrame:
    """Per step-0 measurement (``probe_id``) of a dynamics table, top layer: ``lyapunov_max``
    and ``jacobian_norm`` (NaN where it was not measured), with the ``init_keys`` columns;
    one row per initial model (``init_key``), the last measurement of each."""
    keys = init_keys()
    missing = [c for c in ("probe_id", "step", "measure", "layer", "layers", "value", *keys)
               if c not in rows.columns]
    if missing:
        raise ConfigError(f"not a dynamics CSV (no column {missing[0]}); seqbench dynamics and "
                          "seqbench run --probe write them")
    df = rows[pd.to_numeric(rows["step"], errors="coerce") == 0]
    df = df[pd.to_numeric(df["layer"], errors="coerce")
            == pd.to_numeric(df["layers"], errors="coerce") - 1]
    value = pd.to_numeric(df["value"], errors="coerce")
    lyap = df[(df["measure"] == "lyapunov") & (pd.to_numeric(df["index"], errors="coerce") == 0)]
    norms = df["measure"] == "step_norm"
    out = df.groupby("probe_id", sort=False)[keys].first()
    out["lyapunov_max"] = value[lyap.index].groupby(lyap["probe_id"], sort=False).first()
    out["jacobian_norm"] = value[norms].groupby(df.loc[norms, "probe_id"], sort=False).median()
    out = out.reset_index()
    out["init_key"] = [init_key(r) for r in out.to_dict("records")]
    return out.drop_duplicates("init_key", keep="last").reset_index(drop=True)


def read_dynamics_file(path: str | os.PathLike) -> dict[tuple, dict]:
    """``dynamics_measures`` of a dynamics CSV (``seqbench dynamics --spec``): init key ->
    {measure: value}."""
    from seqbench.dynamics.records import read_dynamics

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no such dynamics CSV: {path}")
    try:
        found = dynamics_measures(read_dynamics([path]))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return {r["init_key"]: {m: float(r[m]) for m in DYNAMICS_MEASURES}
            for r in found.to_dict("records")}


def _run_dynamics(path: Path) -> dict | None:
    """The step-0 dynamics measures of one run's own ``dynamics.csv`` (None: none at step 0)."""
    from seqbench.results import read_results

    try:
        found = dynamics_measures(read_results(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if found.empty:
        return None
    return {m: float(found[m].iloc[-1]) for m in DYNAMICS_MEASURES}


def load(runs_csv: str | os.PathLike, select: Sequence[str] = (),
         task: str | None = None, dynamics: str | os.PathLike | None = None
         ) -> tuple[pd.DataFrame, int]:
    """The finished runs of ``runs_csv`` (optionally one task; with ``select``: only the
    configurations the leaderboard selects on validation) joined with their init measures, and
    how many finished runs were left out for having no measurement at step 0. The gradient
    measures come from each run's grads.csv, the dynamics measures from its dynamics.csv, else
    from ``dynamics`` (a ``seqbench dynamics --spec`` CSV) by initial model. A ConfigError when
    no run has any."""
    from seqbench import leaderboard as lb

    path = Path(runs_csv)
    if not path.is_file():
        raise ConfigError(f"no such runs CSV: {path}")
    spec_rows = read_dynamics_file(dynamics) if dynamics is not None else None
    runs = lb.selected_runs(path, tuple(select), task) if select else lb.load_runs(path, task)
    runs = lb.finished_runs(runs)
    if runs.empty:
        raise ConfigError(f"{path} has no finished runs (status ok or diverged)")
    keys = lb.key_columns(runs.columns)
    measured, joined = [], 0
    for index, row in zip(runs.index, runs.to_dict("records")):
        folder = _run_folder(path.parent, row)
        grads = folder / "grads.csv" if folder is not None else None
        found = dict(init_measures(grads) or {}) if grads is not None and grads.is_file() else {}
        own = folder / "dynamics.csv" if folder is not None else None
        dyn = _run_dynamics(own) if own is not None and own.is_file() else None
        if dyn is None and spec_rows is not None:
            key = init_key(row)
            if key in spec_rows:
                dyn = spec_rows[key]
                joined += 1
        if dyn is not None:
            found.update(dyn)
        if found:
            measured.append({"index": index, **found})
    if spec_rows is not None and not joined:
        raise ConfigError(f"no run of {path} matches a measurement of {dynamics} (joined on "
                          f"{', '.join(init_keys()[:3])}, the cell columns and seed: measure "
                          f"the runs' spec, seqbench dynamics --spec SPEC)")
    if not measured:
        raise ConfigError(f"no run of {path} has a gradient probe at step 0 (<run folder>/grads.csv;"
                          " seqbench run --probe-every N writes it) or dynamics at step 0 "
                          "(--probe lyapunov; or --dynamics FILE)")
    m = pd.DataFrame(measured).set_index("index")
    for name in (*MEASURES, *DYNAMICS_MEASURES):
        if name not in m and name != "horizon":
            m[name] = np.nan
    for name in ("horizon_reached", "max_lag"):
        if name not in m:
            m[name] = np.nan
    out = runs.loc[m.index].copy()
    out = out.join(m)
    out["solved"] = lb.solved_mask(out).to_numpy()
    taken = pd.to_numeric(out["steps_taken"], errors="coerce") if "steps_taken" in out \
        else pd.Series(np.nan, index=out.index)
    step = pd.to_numeric(out["solved_step"], errors="coerce") if "solved_step" in out else taken
    out["time_to_solve"] = np.where(out["solved"], step.fillna(taken), np.inf)
    out["arm"] = lb.arms(out)
    out["config"] = out[keys].map(lb._text).apply(" | ".join, axis=1)
    return out.reset_index(drop=True), len(runs) - len(out)


def measures_of(frame: pd.DataFrame) -> list[str]:
    """The measures ``frame``'s runs have: the gradient ones where any run was probed, the
    dynamics ones where any run has them."""
    grad = list(MEASURES) if frame["max_lag"].notna().any() else []
    return grad + [m for m in DYNAMICS_MEASURES if frame[m].notna().any()]


def horizon_ranked(frame: pd.DataFrame) -> np.ndarray:
    """The horizon for rank statistics (see the module docstring): reached at a lag <= c, the
    smallest largest lag among ``frame``'s runs, else +inf (NaN for a run without a probe)."""
    reached = frame["horizon_reached"].to_numpy(dtype=float)
    c = frame["max_lag"].min()
    ranked = np.where(~np.isnan(reached) & (reached <= c), reached, np.inf)
    return np.where(frame["max_lag"].isna().to_numpy(), np.nan, ranked)


def _median(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(np.median(x)) if len(x) else math.nan


def measure_table(frame: pd.DataFrame, task: str = POOLED, resample: str = "runs",
                  n_resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """One row per measure (``COLUMNS``) for the runs of ``frame`` (``load``'s rows)."""
    if resample not in RESAMPLE_UNITS:
        raise ConfigError(f"resample must be one of {', '.join(RESAMPLE_UNITS)}, got {resample!r}")
    solved = frame["solved"].to_numpy(dtype=bool)
    time = frame["time_to_solve"].to_numpy(dtype=float)
    groups = frame["config"].to_numpy() if resample == "config" else None
    rows = []
    for name in measures_of(frame):
        x = horizon_ranked(frame) if name == "horizon" else frame[name].to_numpy(dtype=float)
        have = ~np.isnan(x)
        lo, hi = bootstrap_auc_ci(x, solved, groups, CONF, n_resamples, seed)
        rho, p = spearman(x, time)
        rows.append({
            "task": task, "measure": name, "n": int(have.sum()),
            "n_solved": int((have & solved).sum()),
            "median_solved": _median(x[have & solved]),
            "median_unsolved": _median(x[have & ~solved]),
            "auc": roc_auc(x, solved), "auc_lo": lo, "auc_hi": hi,
            "spearman_rho": rho, "spearman_p": p,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def predict(runs_csv: str | os.PathLike, select: Sequence[str] = (), task: str | None = None,
            by_task: bool = False, resample: str = "runs", n_resamples: int = RESAMPLES,
            seed: int = 0, dynamics: str | os.PathLike | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(the table: per measure, per task with ``by_task`` and pooled (task ``"all"``); the runs
    with their measures; the number of finished runs left out for want of a step-0 measurement).
    ``dynamics``: a ``seqbench dynamics --spec`` CSV for the runs without a dynamics.csv."""
    frame, missing = load(runs_csv, select, task, dynamics)
    parts = []
    if by_task:
        for name, group in frame.groupby("task", sort=True):
            parts.append(measure_table(group, str(name), resample, n_resamples, seed))
    if not by_task or frame["task"].nunique() > 1:
        parts.append(measure_table(frame, POOLED, resample, n_resamples, seed))
    return pd.concat(parts, ignore_index=True), frame, missing


# -- printing and the figure ----------------------------------------------------------------------


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "none" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def _fixed(v) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.2f}"


def format_table(table: pd.DataFrame, fmt: str = "table") -> str:
    """The table as text (``render``: ``table`` or ``markdown``), the AUC with its interval in one
    column; ``csv``: every column as is."""
    from seqbench.tables import render

    if fmt == "csv":
        return table.to_csv(index=False, lineterminator="\n")
    header = ["task", "measure", "runs", "solved", "median (solved)", "median (unsolved)",
              "AUC [95% CI]", "Spearman rho vs time to solve", "p"]
    body = [[str(r["task"]), str(r["measure"]), str(r["n"]), str(r["n_solved"]),
             _fmt(r["median_solved"]), _fmt(r["median_unsolved"]),
             f"{_fixed(r['auc'])} [{_fixed(r['auc_lo'])}, {_fixed(r['auc_hi'])}]",
             _fmt(r["spearman_rho"], 2), _fmt(r["spearman_p"], 2)]
            for r in table.to_dict("records")]
    numeric = [False, False, True, True, True, True, True, True, True]
    return render(header, body, numeric, "markdown" if fmt == "markdown" else "table")


def figure(frame: pd.DataFrame, table: pd.DataFrame, title: str | None = None):
    """One panel per measure: each run's value at init (x) against its outcome (solved or not,
    y, jittered), coloured by task, with the pooled AUC in the panel title. A horizon that was
    not reached is drawn at the largest lag + 2 ("none")."""
    from matplotlib.lines import Line2D

    from seqbench.plots import MARKERS, new_figure

    measures = measures_of(frame)
    fig, axes = new_figure(len(measures), width=4.2, height=3.2, per_row=2)
    tasks = sorted(frame["task"].unique())
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    rng = np.random.default_rng(0)
    pooled = table[table["task"] == POOLED]
    if pooled.empty:
        pooled = table
    jitter = rng.uniform(-0.18, 0.18, size=len(frame))
    y = frame["solved"].to_numpy(dtype=float) + jitter
    for ax, name in zip(axes, measures):
        if name == "horizon":
            x = frame["horizon_reached"].to_numpy(dtype=float)
            none_at = float(frame["max_lag"].max()) + 2
            x = np.where(np.isnan(x), none_at, x)
        else:
            x = frame[name].to_numpy(dtype=float)
        for i, t in enumerate(tasks):
            mine = (frame["task"] == t).to_numpy()
            ax.scatter(x[mine], y[mine], s=12, alpha=0.5, color=palette[i % len(palette)],
                       marker=MARKERS[i % len(MARKERS)], linewidths=0)
        if name == "horizon":
            ticks = [t for t in ax.get_xticks() if t < none_at - 1] + [none_at]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks[:-1]] + ["none"])
        ax.set_yticks([0, 1], ["unsolved", "solved"])
        ax.set_ylim(-0.5, 1.5)
        row = pooled[pooled["measure"] == name]
        auc = (f"AUC {_fixed(row['auc'].iloc[0])} [{_fixed(row['auc_lo'].iloc[0])}, "
               f"{_fixed(row['auc_hi'].iloc[0])}]") if len(row) else ""
        ax.set_title(f"{name}\n{auc}", fontsize=9)
        ax.set_xlabel(f"{name} at init (step 0, top layer)", fontsize=9)
        ax.set_ylabel("outcome (test set)", fontsize=9)
    handles = [Line2D([], [], linestyle="", marker=MARKERS[i % len(MARKERS)],
                      color=palette[i % len(palette)], label=t) for i, t in enumerate(tasks)]
    fig.legend(handles=handles, title="task", loc="outside right upper", fontsize=8,
               title_fontsize=8)
    fig.suptitle(title or f"Gradient at initialization against outcome ({len(frame)} runs)")
    return fig
