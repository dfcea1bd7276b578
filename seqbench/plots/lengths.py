"""Length generalization figure: each arm's result at the lags its final models were tested at.

One panel per task (and variant) and lag trained at; x: the lag tested at (``eval_seq_len``, log
scale when it spans a factor 4 or more), a dotted vertical line at the lag trained at; y: the
solve rate in a band of its 95% Wilson interval, or the mean loss / memoryless baseline with its
95% bootstrap interval (``seqbench.lengths.generalization``, the leaderboard's statistics). The
lines are drawn as the solve-rate and loss figures draw theirs (seqbench.plots.runs), so that a
cell keeps its colour and coinciding lines stay apart.
"""

from __future__ import annotations

import os

from seqbench.errors import ConfigError
from seqbench.lengths import GENERALIZATION_STATS
from seqbench.plots import dodge_offsets, label_axes, new_figure, plain_log_ticks
from seqbench.plots.runs import (
    LOSS_LABEL,
    PANEL_HEIGHT,
    PANEL_WIDTH,
    SOLVE_LABEL,
    _loss_line,
    _panel_title,
    _solve_rate_line,
    _styles,
    _t_axis,
    series_label,
)

METRICS = ("solve_rate", "loss")


def lengths_figure(runs_csv: str | os.PathLike, task: str | None = None, metric: str = "loss",
                   title: str | None = None):
    """The length-generalization figure of the runs in ``runs_csv`` (see the module docstring)."""
    from seqbench.lengths import generalization

    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    table = generalization(runs_csv, task)
    if table.empty:
        raise ConfigError(f"no run in {runs_csv} was tested at other lags: run with "
                          "--eval-seq-len (spec key eval_seq_lens) to record them")
    panel_keys = [k for k in ("task", "variant", "seq_len") if k in table]
    line_keys = [k for k in table.columns
                 if k not in panel_keys and k != "eval_seq_len" and k not in GENERALIZATION_STATS]
    panels = list(table.groupby(panel_keys, sort=False, dropna=False))
    fig, axes = new_figure(len(panels), width=PANEL_WIDTH, height=PANEL_HEIGHT)
    for ax, (key, panel) in zip(axes, panels):
        where = dict(zip(panel_keys, key if isinstance(key, tuple) else (key,)))
        trained = int(where["seq_len"])
        lines = list(panel.groupby(line_keys, sort=False, dropna=False)) if line_keys \
            else [((), panel)]
        varying = [k for k in line_keys if panel[k].astype(object).map(str).nunique() > 1]
        rows = [dict(zip(line_keys, v if isinstance(v, tuple) else (v,))) for v, _ in lines]
        for row, (_, line) in zip(rows, lines):
            row.setdefault("cell", line["cell"].iloc[0] if "cell" in line else "")
            row.setdefault("impl", line["impl"].iloc[0] if "impl" in line else "")
        styles = _styles(rows, impl_only=False)
        for row, (_, line), style, dx in zip(rows, lines, styles, dodge_offsets(len(lines))):
            # the lines of seqbench.plots.runs draw against "seq_len": here the lag tested at
            drawn = line.drop(columns=["seq_len"]).rename(columns={"eval_seq_len": "seq_len"})
            drawn = drawn.sort_values("seq_len")
            if metric == "solve_rate":
                _solve_rate_line(ax, drawn, style, series_label(row, varying), dx)
            else:
                _loss_line(ax, drawn, style, series_label(row, varying), dx)
        _t_axis(ax, panel["eval_seq_len"])
        ax.axvline(trained, color="dimgrey", linewidth=1, linestyle=(0, (4, 2)),
                   label=f"lag trained at (T = {trained})")
        if metric == "solve_rate":
            ax.set_ylim(-0.04, 1.04)
            ylabel = SOLVE_LABEL
        else:
            ax.set_yscale("log")
            ax.axhline(1.0, color="black", linewidth=1, linestyle=(0, (1, 3)),
                       label="memoryless baseline (ratio 1)")
            plain_log_ticks(ax, "y")
            ylabel = LOSS_LABEL
        n = int(panel["n_seeds"].max())
        what = "Solve rate" if metric == "solve_rate" else "Loss / baseline"
        interval = "95% Wilson interval" if metric == "solve_rate" else \
            "mean, 95% bootstrap interval"
        label_axes(ax, _panel_title(f"{what} at other lags", where["task"], where.get("variant"),
                                    f", trained at T={trained}\n{interval}, "
                                    f"{'up to ' if panel['n_seeds'].min() != n else ''}"
                                    f"{n} seed{'s' if n != 1 else ''}"),
                   "lag tested at (time steps)", ylabel)
    if title:
        fig.suptitle(title)
    return fig

