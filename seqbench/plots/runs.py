"""Figures of run results: solve rate and loss / baseline against the lag T, the solved fraction
against the training step, learning curves.

``solve_rate_figure`` and ``loss_figure`` aggregate runs.csv over seeds (seqbench.leaderboard) and
draw one panel per task (and variant), one line per configuration against seq_len (log x axis).
A panel with a single seq_len (a comparison of many configurations at one lag, as in
``tasks/fixes.toml``) becomes a bar chart with one bar per configuration. The solve rate carries
its 95% Wilson interval (a band around a line, an error bar on a bar), the mean loss ratio its 95%
bootstrap interval (the leaderboard's ``solve_rate_lo/hi`` and ``loss_ratio_ci_lo/hi``).
``solved_figure`` draws, per task and seq_len, the fraction of runs solved by each training step
(1 - Kaplan-Meier survival; unsolved runs censored at their budget, marked). ``curves_figure``
draws the held-out loss / baseline (or accuracy) against the training step from run folders'
curve.csv.

With ``select`` keys (e.g. ``("lr",)``), these three figures show, per arm and seq_len, only the
value of those keys that ``seqbench.leaderboard.select`` picks on the validation set: one line per
arm, not one per arm and learning rate.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from seqbench.cells import options_label
from seqbench.errors import ConfigError
from seqbench.leaderboard import (
    aggregate,
    finished_runs,
    implied_by_label,
    key_columns,
    km_inputs,
    load_runs,
    selection_keys,
)
from seqbench.leaderboard import select as select_on_validation
from seqbench.plots import (
    LINESTYLES,
    MARKERS,
    MIN_FONT_PT,
    cell_color,
    dodge,
    dodge_offsets,
    impl_linestyle,
    label_axes,
    legend_outside,
    new_figure,
    plain_log_ticks,
)
from seqbench.results import run_folder
from seqbench.style import cell_rank

T_LABEL = "lag T (time steps)"
SOLVE_LABEL = "solve rate (fraction of seeds solved)"
LOSS_LABEL = "final loss / memoryless baseline (ratio)"


# -- series: one line per configuration -----------------------------------------------------------


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""


def series_label(row: dict, varying: Sequence[str]) -> str:
    """'lstm_fb1', 'lstm (forget bias 1)', 'gru/hand', 'rnn, hidden=64', ... for one config."""
    if not _missing(row.get("label")):
        name = str(row["label"])
    else:
        opts = options_label(row)
        name = str(row["cell"]) + (f" ({opts})" if opts else "")
    if "impl" in varying:
        name += f"/{row['impl']}"
    cell_opts = {"cell", "impl", "label", "nonlinearity", "init", "init_gain", "forget_bias", "chrono",
                 "norm", "residual", "task", "variant", "seq_len"}
    extra = [f"{k}={_fmt(row[k])}" for k in varying if k not in cell_opts]
    return name + (", " + ", ".join(extra) if extra else "")


def _fmt(v) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _varying(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """Keys that vary across the frame, less those that the arms' labels already name."""
    implied = implied_by_label(frame, keys)
    return [k for k in keys if frame[k].astype(object).map(str).nunique() > 1 and k not in implied]


def _styles(rows: list[dict], impl_only: bool) -> list[dict]:
    """Colour by cell; line style by the configuration's rank within its cell (or by
    implementation, when that is the only difference between configurations of a cell); a marker
    of its own per configuration of the panel, so that lines drawn on top of each other (every
    cell at solve rate 0, a hand-written cell and its builtin twin) stay told apart."""
    rank: dict[str, int] = {}
    styles = []
    for n, row in enumerate(rows):
        cell = str(row["cell"])
        i = rank.get(cell, 0)
        rank[cell] = i + 1
        linestyle = impl_linestyle(row["impl"]) if impl_only else LINESTYLES[i % len(LINESTYLES)]
        styles.append({"color": cell_color(cell), "linestyle": linestyle,
                       "marker": MARKERS[n % len(MARKERS)]})
    return styles


def _panels(board: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    return [(k if isinstance(k, tuple) else (k,), g)
            for k, g in board.groupby(["task", "variant"], dropna=False, sort=False)]


def _series(panel: pd.DataFrame, keys: list[str],
            selected: Sequence[str] = ()) -> list[tuple[dict, pd.DataFrame]]:
    """One (keys, rows by seq_len) per line. The ``selected`` keys are no line keys: their chosen
    value may differ from one seq_len to the next, and the line is the arm's, whatever value won."""
    line_keys = [k for k in keys if k not in ("task", "variant", "seq_len") and k not in selected]
    out = []
    for values, g in panel.groupby(line_keys, dropna=False, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        first = g.iloc[0]  # cell and impl pick the style, even when one of them was selected
        row = {**{k: first[k] for k in ("cell", "impl") if k in g}, **dict(zip(line_keys, values))}
        out.append((row, g.sort_values("seq_len")))
    return out


def _board(runs: pd.DataFrame | str | os.PathLike, task: str | None,
           select: Sequence[str] = ()) -> pd.DataFrame:
    """The leaderboard of ``runs`` (a runs CSV or its rows), with the ``select`` keys chosen on the
    validation set by ``seqbench.leaderboard.select`` when given."""
    if not isinstance(runs, pd.DataFrame):
        board = aggregate(load_runs(runs, task))
    else:
        if task is not None:
            runs = runs[runs["task"] == task]
        if runs.empty:
            raise ConfigError("no runs to plot" + (f" for task {task!r}" if task else ""))
        board = aggregate(runs)
    return select_on_validation(board, select) if select else board


def _selection_note(selected: Sequence[str]) -> str:
    """'; lr selected on validation' (empty without selection)."""
    return f"; {', '.join(selected)} selected on validation" if selected else ""


def _seeds_text(panel: pd.DataFrame) -> str:
    """'3 seeds', or 'up to 3 seeds' when the configurations have different numbers of runs."""
    n_seeds = int(panel["n_seeds"].max()) if len(panel) else 0
    seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
    if len(panel) and int(panel["n_seeds"].min()) != n_seeds:
        seeds = "up to " + seeds
    return seeds


def _t_axis(ax, seq_lens) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    seq_lens = sorted({int(t) for t in seq_lens})
    if len(seq_lens) > 1 and seq_lens[-1] / max(seq_lens[0], 1) >= 4:
        ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(seq_lens))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())


def _panel_title(what: str, task, variant, extra: str = "") -> str:
    variant = "" if _missing(variant) else f" ({variant})"
    return f"{what}: {task}{variant}{extra}"


#: the interval each figure draws, as its panels name it
INTERVAL_TEXT = {"solve_rate": "95% Wilson interval", "loss_ratio": "mean, 95% bootstrap interval"}


#: one panel's share of a figure's width (its legend, right of it, included) and its height
PANEL_WIDTH, PANEL_HEIGHT = 7.2, 4.4
DIVERGED_LABEL = "runs diverged (loss NaN/inf; not in the mean): k/n at the top edge"


def _results_figure(runs, task, metric: str, title: str | None, select: Sequence[str] = ()):
    board = _board(runs, task, select)
    selected = selection_keys(board.columns, select) if select else []
    keys = key_columns(board.columns)
    panels = _panels(board)
    fig, axes = new_figure(len(panels), width=PANEL_WIDTH, height=PANEL_HEIGHT)
    what = "Solve rate" if metric == "solve_rate" else "Loss / baseline"
    for ax, ((task_name, variant), panel) in zip(axes, panels):
        series = _series(panel, keys, selected)
        varying = [k for k in _varying(panel, keys) if k not in selected]
        rows = [s for s, _ in series]
        impl_only = all(_missing(r.get("label")) for r in rows) and not (
            set(varying) - {"impl", "cell", "seq_len"})
        styles = _styles(rows, impl_only)
        stats = f"\n{_interval_text(metric, panel)}, {_seeds_text(panel)}" \
                f"{_selection_note(selected)}"
        seq_lens = sorted(panel["seq_len"].unique())
        if len(seq_lens) == 1 and len(series) > 1:
            _bars(ax, series, styles, varying, metric, selected)
            sub = f", T={int(seq_lens[0])}{stats}"
            label_axes(ax, _panel_title(what, task_name, variant, sub),
                       SOLVE_LABEL if metric == "solve_rate" else LOSS_LABEL, "configuration",
                       legend=False)
            _cell_legend(ax, rows, diverged=metric != "solve_rate" and _any_diverged(panel))
            plain_log_ticks(ax, "x")
            continue
        offsets = dodge_offsets(len(series))
        for (row, line), style, dx in zip(series, styles, offsets):
            name = series_label(row, varying)
            if metric == "solve_rate":
                _solve_rate_line(ax, line, style, name, dx)
            else:
                _loss_line(ax, line, style, name, dx)
        _t_axis(ax, seq_lens)
        if metric == "solve_rate":
            ax.set_ylim(-0.04, 1.04)
            ylabel = SOLVE_LABEL
        else:
            ax.set_yscale("log")
            ax.axhline(1.0, color="black", linewidth=1, linestyle=":",
                       label="memoryless baseline (ratio 1)")
            ylabel = LOSS_LABEL
            if _any_diverged(panel):
                _diverged_handle(ax)
            plain_log_ticks(ax, "y")
        label_axes(ax, _panel_title(what, task_name, variant, stats), T_LABEL, ylabel)
    if title:
        fig.suptitle(title)
    return fig


def _interval_text(metric: str, panel: pd.DataFrame) -> str:
    """What the band or bars are; the bootstrap interval of a mean needs 2 runs or more."""
    if metric == "loss_ratio" and (panel["n_seeds"].max() if len(panel) else 0) < 2:
        return "mean of 1 run: no interval"
    return INTERVAL_TEXT[metric]


def _any_diverged(panel: pd.DataFrame) -> bool:
    return "n_diverged" in panel and bool(pd.to_numeric(panel["n_diverged"]).fillna(0).gt(0).any())


def _diverged_handle(ax) -> None:
    """The legend entry of the diverged-run marks (an empty line: nothing drawn)."""
    ax.plot([], [], linestyle="none", marker="^", color="dimgrey", label=DIVERGED_LABEL)


def _solve_rate_line(ax, line: pd.DataFrame, style: dict, name: str, dx: float = 0.0) -> None:
    """The solve rate against seq_len, in a band of its Wilson interval (same colour, faint),
    both drawn ``dx`` points aside (see ``dodge``). The band's gid is 'wilson: <name>', so that
    it can be found again."""
    drawn, = ax.plot(line["seq_len"], line["solve_rate"], label=name, **style)
    band = ax.fill_between(line["seq_len"].to_numpy(float), line["solve_rate_lo"].to_numpy(float),
                           line["solve_rate_hi"].to_numpy(float), color=style["color"],
                           alpha=0.15, linewidth=0)
    band.set_gid(f"wilson: {name}")
    dodge(ax, [drawn, band], dx=dx, dy=dx / 2)  # apart even where flat (every cell at 0)


def _interval_err(mean: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[below, above] error lengths of an interval around ``mean``: none (0) where the interval
    is NaN (a single run), never negative, and the lower one short of ``mean`` so that the bar
    stays above 0 on a log axis."""
    below = np.nan_to_num(mean - lo, nan=0.0).clip(min=0.0)
    above = np.nan_to_num(hi - mean, nan=0.0).clip(min=0.0)
    return np.array([np.minimum(below, mean * 0.999), above])


def _loss_line(ax, line: pd.DataFrame, style: dict, name: str, dx: float = 0.0) -> None:
    """The mean loss ratio against seq_len with its bootstrap interval as error bars, drawn
    ``dx`` points aside. Where runs diverged (no loss to average), a triangle at the top edge of
    the axes with 'k/n' says how many of the seq_len's runs did: never a point that silently
    vanishes (a T where every run diverged has no mean at all)."""
    ok = line[line["loss_ratio_mean"].notna()]
    if not ok.empty:
        mean = ok["loss_ratio_mean"].to_numpy(float)
        err = _interval_err(mean, ok["loss_ratio_ci_lo"].to_numpy(float),
                            ok["loss_ratio_ci_hi"].to_numpy(float))
        drawn = ax.errorbar(ok["seq_len"], mean, yerr=err, label=name, capsize=3, **style)
    else:  # every run diverged: the legend still names the series
        drawn = ax.plot([], [], label=name, **style)
    dodge(ax, drawn, dx=dx)
    _diverged_marks(ax, line, style, name, dx)


def _diverged_marks(ax, line: pd.DataFrame, style: dict, name: str, dx: float) -> None:
    """A triangle at the top edge over each seq_len where runs of ``line`` diverged, with
    'k/n diverged' under it (gid 'diverged: <name>')."""
    from matplotlib.transforms import blended_transform_factory

    if "n_diverged" not in line:
        return
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for r in line.to_dict("records"):
        k = int(r["n_diverged"]) if not _missing(r["n_diverged"]) else 0
        if k <= 0:
            continue
        mark, = ax.plot([r["seq_len"]], [1.0], transform=top, linestyle="none", marker="^",
                        markersize=8, color=style["color"], clip_on=False, zorder=4)
        mark.set_gid(f"diverged: {name}")
        text = ax.text(r["seq_len"], 0.97, f"{k}/{int(r['n_seeds'])} diverged", transform=top,
                       rotation=90, ha="center", va="top", fontsize=MIN_FONT_PT,
                       color=style["color"])
        dodge(ax, [mark, text], dx=dx)


def _bars(ax, series, styles, varying, metric: str, selected: Sequence[str] = ()) -> None:
    """One bar (solve rate) or dot (loss ratio) per configuration at a single seq_len; with
    selection, each name says the value chosen ('lstm [lr=0.003]')."""
    names = [series_label(row, varying) + _chosen(line.iloc[0], selected) for row, line in series]
    y = np.arange(len(series))
    values: list[float] = []
    for i, ((_row, line), style) in enumerate(zip(series, styles)):
        first = line.iloc[0]
        if metric == "solve_rate":
            _solve_rate_bar(ax, i, first, style)
        else:
            if not math.isnan(float(first["loss_ratio_mean"])):
                # a dot with its interval: a bar's length means nothing on a log axis
                mean = np.array([float(first["loss_ratio_mean"])])
                err = _interval_err(mean, np.array([float(first["loss_ratio_ci_lo"])]),
                                    np.array([float(first["loss_ratio_ci_hi"])]))
                ax.errorbar(mean, i, xerr=err if err.any() else None, color=style["color"],
                            marker="o", capsize=2)
                values.append(float(mean[0]))
            _diverged_bar_mark(ax, i, first, style)
    ax.set_yticks(y, names, fontsize=MIN_FONT_PT)
    ax.set_ylim(len(series) - 0.5, -0.5)  # first configuration on top
    if metric == "solve_rate":
        ax.set_xlim(0, 1.15)  # room right of 1 for the k/n text
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    else:
        values.append(1.0)
        if max(values) / min(values) >= 10:
            ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=1, linestyle=":")


def _diverged_bar_mark(ax, i: int, row: pd.Series, style: dict) -> None:
    """A configuration whose runs diverged: a triangle at the right edge on its row, 'k/n
    diverged' left of it (the dot, when any, is the mean of the others)."""
    from matplotlib.transforms import blended_transform_factory

    k = int(row["n_diverged"]) if "n_diverged" in row and not _missing(row["n_diverged"]) else 0
    if k <= 0:
        return
    right = blended_transform_factory(ax.transAxes, ax.transData)
    mark, = ax.plot([1.0], [i], transform=right, linestyle="none", marker="^", markersize=7,
                    color=style["color"], clip_on=False, zorder=4)
    mark.set_gid(f"diverged: {i}")
    ax.text(0.985, i, f"{k}/{int(row['n_seeds'])} diverged", transform=right, ha="right",
            va="center", fontsize=MIN_FONT_PT, color=style["color"])


def _solve_rate_bar(ax, i: int, row: pd.Series, style: dict) -> None:
    """One horizontal bar: the solve rate, its Wilson interval as an error bar, k/n beyond it."""
    value, n = float(row["solve_rate"]), int(row["n_seeds"])
    lo, hi = float(row["solve_rate_lo"]), float(row["solve_rate_hi"])
    known = not (math.isnan(lo) or math.isnan(hi))  # no finished run: no interval
    xerr = [[max(value - lo, 0.0)], [max(hi - value, 0.0)]] if known else None
    ax.barh(i, value, color=style["color"], alpha=0.85, xerr=xerr,
            error_kw={"ecolor": "black", "capsize": 3, "linewidth": 1})
    ax.text((hi if known else value) + 0.015, i, f"{round(value * n)}/{n}", va="center",
            fontsize=MIN_FONT_PT)


def _cell_legend(ax, rows: list[dict], diverged: bool = False) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cells = list(dict.fromkeys(str(r["cell"]) for r in rows))
    handles = [Patch(color=cell_color(c), alpha=0.85, label=c) for c in cells]  # as the bars
    if diverged:
        handles.append(Line2D([], [], linestyle="none", marker="^", color="dimgrey",
                              label="runs diverged (loss NaN/inf; not in the mean): k/n"))
    legend_outside(ax, handles=handles, title="cell")


def solve_rate_figure(runs: pd.DataFrame | str | os.PathLike, task: str | None = None,
                      title: str | None = None, select: Sequence[str] = ()):
    """Solve rate (fraction of seeds) against seq_len with its 95% Wilson interval (band): one
    panel per task, one line per configuration. ``select``: keys (e.g. ``("lr",)``) chosen per arm
    and seq_len on the validation set (``seqbench.leaderboard.select``); one line per arm."""
    return _results_figure(runs, task, "solve_rate", title, select)


def loss_figure(runs: pd.DataFrame | str | os.PathLike, task: str | None = None,
                title: str | None = None, select: Sequence[str] = ()):
    """Mean final loss / memoryless baseline against seq_len (log y; error bars: the 95% bootstrap
    interval of the mean). ``select``: as for ``solve_rate_figure``."""
    return _results_figure(runs, task, "loss_ratio", title, select)


# -- solved fraction against the training step (Kaplan-Meier) ---------------------------------------

STEP_LABEL = "training step (updates)"
SOLVED_LABEL = "fraction solved (1 − Kaplan–Meier)"


def _runs(runs: pd.DataFrame | str | os.PathLike, task: str | None) -> pd.DataFrame:
    """The finished runs of ``runs`` (a runs CSV or its rows), optionally one task."""
    if not isinstance(runs, pd.DataFrame):
        runs = load_runs(runs, task)
    elif task is not None:
        runs = runs[runs["task"] == task]
    runs = finished_runs(runs)
    if runs.empty:
        raise ConfigError("no finished runs to plot" + (f" for task {task!r}" if task else ""))
    return runs


def _draw_km(ax, times, events, style: dict, label: str, end: float, dy: float = 0.0,
             dx: float = 0.0) -> None:
    """1 - S(t) as a step function from step 0 to ``end`` (the budget), its marker at its end,
    with the censored runs marked ('|') on the curve where they left it; drawn ``dy`` points
    above or below the data (``dodge``), so that curves that coincide (none solved: all at 0)
    stay visible side by side (and ``dx`` points aside, so that their end markers do too)."""
    from seqbench.stats import kaplan_meier

    km = kaplan_meier(times, events)
    solved = 1 - km.survival
    x = np.concatenate([[0.0], km.steps])
    y = np.concatenate([[0.0], solved])
    if end > x[-1]:  # every run solved before the budget: the fraction holds until it ends
        x, y = np.append(x, end), np.append(y, y[-1])
    line, = ax.step(x, y, where="post", label=label, color=style["color"],
                    linestyle=style["linestyle"], marker=style["marker"], markersize=6,
                    markevery=[len(x) - 1])
    cut = km.censored > 0
    ticks, = ax.plot(km.steps[cut], solved[cut], linestyle="none", marker="|", markersize=12,
                     markeredgewidth=1.6, color=line.get_color())
    dodge(ax, [line, ticks], dx=dx, dy=dy)


def _matching(panel: pd.DataFrame, row: dict, keys: Sequence[str]) -> pd.DataFrame:
    """The runs of ``panel`` whose ``keys`` have ``row``'s values (compared as text: NaN too)."""
    mask = np.ones(len(panel), dtype=bool)
    for k in keys:
        mask &= panel[k].map(_key_text).to_numpy() == _key_text(row[k])
    return panel[mask]


def _chosen(row: dict, selected: Sequence[str]) -> str:
    """' [lr=0.003]': the selected values of one configuration (empty without selection)."""
    return f" [{', '.join(f'{k}={_key_text(row[k])}' for k in selected)}]" if selected else ""


def solved_figure(runs: pd.DataFrame | str | os.PathLike, task: str | None = None,
                  title: str | None = None, select: Sequence[str] = ()):
    """Fraction of runs solved against the training step, one panel per task and seq_len, one
    step line per configuration: 1 - Kaplan-Meier survival, with solved runs as events at their
    solving step and unsolved or diverged runs censored (|) at their step budget. ``select``: keys
    (e.g. ``("lr",)``) chosen per arm and seq_len on the validation set
    (``seqbench.leaderboard.select``); each arm's line then has the chosen value's runs only."""
    runs = _runs(runs, task)
    keys = key_columns(runs.columns)
    selected = selection_keys(runs.columns, select) if select else []  # a bad key fails at once
    panel_keys = [k for k in ("task", "variant", "seq_len") if k in keys]
    panels = [(dict(zip(panel_keys, values)), panel)
              for values, panel in runs.groupby(panel_keys, dropna=False, sort=False)]
    panels.sort(key=lambda p: (str(p[0]["task"]), _key_text(p[0].get("variant")),
                               float(p[0]["seq_len"])))
    fig, axes = new_figure(len(panels), width=PANEL_WIDTH - 0.6, height=PANEL_HEIGHT - 1.0)
    for ax, (where, panel) in zip(axes, panels):
        # the configurations, in reading order; with selection, the chosen one per arm
        board = aggregate(panel)
        if selected:
            board = select_on_validation(board, selected)
        line_keys = [k for k in keys if k not in panel_keys]  # selected keys too: their runs only
        varying = [k for k in _varying(board, keys) if k not in selected]
        rows = board[line_keys].to_dict("records")
        offsets = dodge_offsets(len(rows), step=1.5, spread=8.0)
        for row, style, dy in zip(rows, _styles(rows, impl_only=False), offsets):
            dx = dy * 2.5
            chosen = _matching(panel, row, line_keys)
            times, events = km_inputs(chosen)
            if not len(times):
                continue
            label = (f"{series_label(row, varying)}{_chosen(row, selected)} "
                     f"({int(events.sum())}/{len(times)} solved)")
            budget = pd.to_numeric(chosen.get("step_budget"), errors="coerce")
            end = float(np.nanmax(budget)) if budget is not None and budget.notna().any() else 0.0
            _draw_km(ax, times, events, style, label, end, dy, dx)
        ax.axhline(0.5, color="black", linewidth=1, linestyle=":", label="half solved (KM median)")
        ax.plot([], [], linestyle="none", marker="|", markersize=12, markeredgewidth=1.6,
                color="black", label="censored: unsolved at budget")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(left=0)
        sub = f", T={_fmt(where['seq_len'])}"
        if selected:
            sub += "\n" + _selection_note(selected).lstrip("; ")
        label_axes(ax, _panel_title("Solved by step", where["task"], where.get("variant"), sub),
                   STEP_LABEL, SOLVED_LABEL)
    if title:
        fig.suptitle(title)
    return fig


def _key_text(v) -> str:
    return "" if _missing(v) else _fmt(v)


# -- learning curves ---------------------------------------------------------------------------------


def run_dirs_from_csv(path: str | os.PathLike, task: str | None = None, seq_len: int | None = None,
                      cell: str | None = None, label: str | None = None,
                      seed: int | None = None) -> list[Path]:
    """The run folders of the finished runs in ``path`` that match every filter given."""
    runs = load_runs(path, task)
    runs = runs[runs["status"].isin(("ok", "diverged"))]
    for column, value in (("seq_len", seq_len), ("cell", cell), ("label", label), ("seed", seed)):
        if value is not None and column in runs.columns:
            if pd.api.types.is_numeric_dtype(runs[column]):
                try:
                    runs = runs[runs[column] == float(value)]
                except ValueError:  # e.g. --label x when every label is empty (read as NaN)
                    runs = runs.iloc[0:0]
            else:
                runs = runs[runs[column].astype(object).map(str) == str(value)]
    if runs.empty:
        raise ConfigError(f"no finished runs in {path} match the selection")
    return [run_folder(path, d) for d in runs["run_dir"].astype(str)]


def read_curve(run_dir: str | os.PathLike) -> tuple[dict, pd.DataFrame]:
    """A run folder's config (config.json) and learning curve (curve.csv)."""
    run_dir = Path(run_dir)
    config, curve = run_dir / "config.json", run_dir / "curve.csv"
    if not config.is_file() or not curve.is_file():
        raise ConfigError(f"{run_dir} is not a seqbench run folder (no config.json and curve.csv)")
    try:
        cfg = json.loads(config.read_text())
        df = pd.read_csv(curve)
    except (ValueError, pd.errors.ParserError) as e:
        raise ConfigError(f"{run_dir}: cannot read its config or curve: {e}") from None
    return cfg, df


def curves_figure(run_dirs: Sequence[str | os.PathLike], metric: str = "loss",
                  title: str | None = None):
    """Held-out loss / baseline (log y) or accuracy against the training step, one line per run."""
    from seqbench.tasks import make_task

    if metric not in ("loss", "accuracy"):
        raise ConfigError(f"unknown metric {metric!r}; allowed: loss, accuracy")
    if not run_dirs:
        raise ConfigError("no runs to plot")
    runs = []
    for d in run_dirs:
        cfg, curve = read_curve(d)
        cell = cfg.get("cell", {})
        row = {**cell, "task": cfg["task"], "variant": cfg.get("variant"), "seq_len": cfg["seq_len"],
               "seed": cfg.get("seed"), "label": cfg.get("label", "")}
        runs.append((row, curve, make_task(cfg["task"], cfg.get("variant")).baseline_loss(cfg["seq_len"])))
    runs.sort(key=lambda r: (str(r[0]["task"]), int(r[0]["seq_len"]), cell_rank(r[0].get("cell")),
                             str(r[0].get("impl")), str(r[0]["label"]), int(r[0]["seed"] or 0)))
    frame = pd.DataFrame([r for r, _, _ in runs]).map(lambda v: "" if v is None else str(v))
    varying = [k for k in frame.columns if frame[k].nunique() > 1]
    fig, (ax,) = new_figure(1, width=7.4 + (2.2 if len(runs) > 12 else 0.0))
    rows = [r for r, _, _ in runs]
    styles = _styles(rows, impl_only=False)
    offsets = dodge_offsets(len(runs), step=1.0, spread=6.0)
    diverged = False
    for (row, curve, baseline), style, dy in zip(runs, styles, offsets):
        y = pd.to_numeric(curve["eval_loss"] if metric == "loss" else curve["accuracy"],
                          errors="coerce")
        y = y / baseline if metric == "loss" else y
        parts = [f"{row['task']}" if "task" in varying else "",
                 f"T={row['seq_len']}" if "seq_len" in varying else "",
                 series_label(row, [k for k in varying if k not in ("task", "seq_len", "seed")]),
                 f"seed {row['seed']}" if "seed" in varying else ""]
        line, = ax.plot(curve["step"], y, label=" ".join(p for p in parts if p),
                        **{**style, "markevery": [len(y) - 1] if len(y) else None})
        dodge(ax, line, dy=dy)
        diverged |= _curve_diverged(ax, curve, y, style)
    first = rows[0]
    if metric == "loss":
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", linewidth=1, linestyle=":", label="memoryless baseline")
        ylabel = "held-out loss / memoryless baseline (ratio, log scale)"
    else:
        ax.set_ylim(-0.02, 1.02)
        ylabel = "held-out accuracy (fraction correct)"
    if diverged:
        ax.plot([], [], linestyle="none", marker="^", color="dimgrey",
                label="diverged (loss NaN/inf) at this step")
    plain_log_ticks(ax, "y")
    common = [f"{first['task']}" if "task" not in varying else "",
              f"T={first['seq_len']}" if "seq_len" not in varying else ""]
    head = " ".join(p for p in common if p)
    label_axes(ax, title or f"Learning curves{': ' + head if head else ''} ({len(runs)} runs)",
               "training step (updates)", ylabel, ncol=2 if len(runs) > 12 else 1)
    return fig


def _curve_diverged(ax, curve: pd.DataFrame, y: pd.Series, style: dict) -> bool:
    """A curve whose loss became NaN or infinite: a triangle at the top edge at the first such
    step, 'diverged' under it (gid 'diverged'); the line itself stops there. False otherwise."""
    from matplotlib.transforms import blended_transform_factory

    loss = pd.to_numeric(curve["eval_loss"], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(loss)
    if not bad.any():
        return False
    step = float(curve["step"].to_numpy(float)[int(np.argmax(bad))])
    top = blended_transform_factory(ax.transData, ax.transAxes)
    mark, = ax.plot([step], [1.0], transform=top, linestyle="none", marker="^", markersize=8,
                    color=style["color"], clip_on=False, zorder=4)
    mark.set_gid("diverged")
    ax.text(step, 0.97, "diverged", transform=top, rotation=90, ha="center", va="top",
            fontsize=MIN_FONT_PT, color=style["color"])
    return True
