"""Curse-of-memory figure (``seqbench plot curse``): the sensitivity of the last state to the
recurrent parameters, ||d h_T / d theta||, against the memory's time scale 1 / (1 - m), log-log.

One line per (model, parameter) with a marker at each measured memory (the mean over the seeds
in the file), one colour per model (seqbench.style; the lru's two parameters share it, told apart
by marker), and the closed form (the ``theory`` column: the linear recurrence, the lru's nu_log)
as a dashed line of the same colour. An axis spanning less than a decade is labelled in round
decimals (``plain_log_ticks``), one spanning less than three decades at 1, 2, 5 in every decade
(2, 5, 10, 20), a wider one at the decades (10^k, as the other figures). A slope of 3/2 on these
axes is the linear recurrence's (1 - m)^(-3/2); a flat line is a memory whose cost does not
grow. Rows: ``seqbench curse``.
"""

from __future__ import annotations

import pandas as pd

from seqbench.errors import ConfigError
from seqbench.plots import MARKERS, label_axes, new_figure, plain_log_ticks
from seqbench.style import cell_color

NEEDED = ("cell", "param", "memory", "steps", "value", "theory")


def read_curse(sources) -> pd.DataFrame:
    """The rows of curse CSVs: files, or folders searched for ``curse.csv``."""
    from seqbench.results import read_results, results_files

    files = results_files(sources, "curse.csv")
    frames = [read_results(f) for f in files]
    for f, frame in zip(files, frames):
        missing = [c for c in NEEDED if c not in frame.columns]
        if missing:
            raise ConfigError(f"{f} is not a curse-of-memory CSV (no column "
                              f"{', '.join(missing)}); seqbench curse writes them")
    rows = pd.concat(frames, ignore_index=True)
    for column in ("memory", "steps", "value", "theory"):  # a hand-edited cell: not drawn
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    drawable = rows["memory"].gt(0) & rows["memory"].lt(1) & rows["steps"].notna()
    if not drawable.all():
        import warnings

        warnings.warn(f"{int((~drawable).sum())} row(s) without a memory in (0, 1) or a number of "
                      "steps are not drawn", stacklevel=2)
        rows = rows[drawable]
    if rows.empty:
        raise ConfigError("no curse-of-memory rows to draw")
    return rows


def log_ticks(ax, axis: str) -> None:
    """Readable labels on a log ``axis`` (call once the limits are final): round decimals under
    a decade (``plain_log_ticks``); 1, 2, 5 in each decade, plain, under three decades, where
    matplotlib labels some minor ticks (2x10^0 3x10^0 4x10^0, running into each other); beyond,
    matplotlib's decades."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if plain_log_ticks(ax, axis):
        return
    which = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    if which.get_scale() != "log" or lo <= 0 or math.log10(hi / lo) >= 3:
        return
    which.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    which.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    which.set_minor_formatter(NullFormatter())


def curse_figure(sources, title: str | None = None):
    """The figure of the rows in ``sources`` (seqbench curse CSVs)."""
    rows = read_curse(sources)
    fig, (ax,) = new_figure(1, width=7.2)
    steps = sorted({int(s) for s in rows["steps"]})
    for i, ((cell, param, n), part) in enumerate(
            rows.groupby(["cell", "param", "steps"], sort=False)):
        # scans of different lengths are different curves (T is where the sensitivity is read)
        name = f"{cell}: {param}" + (f", T = {int(n) - 1}" if len(steps) > 1 else "")
        mean = part.groupby("memory")[["value", "theory"]].mean().sort_index()
        scale = 1.0 / (1.0 - mean.index.to_numpy())
        color = cell_color(cell)
        ax.plot(scale, mean["value"], marker=MARKERS[i % len(MARKERS)], color=color, label=name)
        theory = mean["theory"].notna()
        if theory.any():
            ax.plot(scale[theory.to_numpy()], mean["theory"][theory], linestyle="--",
                    color=color, alpha=0.7, label=f"{name}, closed form")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in ("x", "y"):
        log_ticks(ax, axis)
    label_axes(ax, "Curse of memory" + (f": T = {steps[0] - 1}" if len(steps) == 1 else ""),
               "memory time scale 1 / (1 - m) (steps)",
               "||d h_T / d theta||  (root mean square over sequences)")
    if title:
        fig.suptitle(title)
    return fig
