"""Lyapunov spectrum figure: the exponents of each arm, and the running estimate of the largest.

Two panels per (task, T): left, the k largest Lyapunov exponents (per step, natural log) against
their index i = 1 .. k, the mean over seeds with a band over the seeds' range where there are 2 or
more, a dotted line at 0 (above it, nearby trajectories separate: chaos; below, they converge);
right, the running estimate of lambda_1 against the step t, which shows whether T steps were
enough for it to settle. One colour per cell (seqbench.style), a line style per configuration of
the same cell (the implementation's dashes when that is the only difference), a marker each, and
lines drawn a few points apart (seqbench.plots.dodge) so that a hand-written cell and its
built-in twin, which give the same numbers, are both seen. Rows: seqbench.dynamics.records.
"""

from __future__ import annotations

import pandas as pd

from seqbench.errors import ConfigError
from seqbench.plots import dodge, dodge_offsets, label_axes, new_figure
from seqbench.plots.runs import _styles

PANEL_WIDTH, PANEL_HEIGHT = 6.4, 4.4


def _select(df: pd.DataFrame, task, seq_len, layer) -> pd.DataFrame:
    from seqbench.grads import series_name

    if task is not None:
        df = df[df["task"] == task]
    if seq_len is not None:
        df = df[df["seq_len"] == seq_len]
    if df.empty:
        raise ConfigError("no dynamics rows for the selected task and length")
    df = df[df["layer"] == (df["layers"] - 1 if layer is None else layer)]
    df = df[df["measure"].isin(["lyapunov", "lyapunov_running"])]
    if df.empty:
        raise ConfigError("no Lyapunov rows to draw (run seqbench dynamics with --measure "
                          "lyapunov, and check --layer)")
    df = df.copy()
    df["series"] = [series_name(r) for r in df.to_dict("records")]
    return df


def plot_spectrum(df: pd.DataFrame, task: str | None = None, seq_len: int | None = None,
                  layer: int | None = None, title: str | None = None):
    """The figure of the module docstring from dynamics rows (a DataFrame of dynamics.csv)."""
    df = _select(df, task, seq_len, layer)
    panels = list(df.groupby(["task", "seq_len"], sort=False))
    fig, axes = new_figure(2 * len(panels), width=PANEL_WIDTH, height=PANEL_HEIGHT, per_row=2)
    for n, ((task_name, T), part) in enumerate(panels):
        left, right = axes[2 * n], axes[2 * n + 1]
        lines = list(part.groupby(["series", "impl"], sort=False))
        rows = [{"cell": g["cell"].iloc[0], "impl": impl} for (_, impl), g in lines]
        impl_only = part.groupby("cell")["series"].nunique().max() == 1
        styles = _styles(rows, impl_only=bool(impl_only))
        several_impls = part["impl"].nunique() > 1
        seeds_max = 0
        for ((name, impl), g), style, dx in zip(lines, styles, dodge_offsets(len(lines))):
            label = name + (f" ({impl})" if several_impls else "")
            spec = g[g["measure"] == "lyapunov"]
            seeds = spec["seed"].nunique()
            seeds_max = max(seeds_max, seeds)
            if len(spec):
                by_i = spec.groupby("index")["value"]
                i = by_i.mean().index.to_numpy(float) + 1
                mean = by_i.mean().to_numpy(float)
                drawn = left.plot(i, mean, label=label, markersize=5, linewidth=1.5, **style)
                dodge(left, drawn, dx=dx)
                if seeds >= 2:
                    band = left.fill_between(i, by_i.min().to_numpy(float),
                                             by_i.max().to_numpy(float), color=style["color"],
                                             alpha=0.15, linewidth=0)
                    dodge(left, band, dx=dx)
            run = g[g["measure"] == "lyapunov_running"]
            if len(run):
                curve = run.groupby("t")["value"].mean()
                drawn = right.plot(curve.index.to_numpy(float) + 1, curve.to_numpy(float),
                                   label=label, markevery=max(1, len(curve) // 8),
                                   markersize=5, linewidth=1.5, **style)
                dodge(right, drawn, dy=dx)
        for ax in (left, right):
            ax.axhline(0.0, color="black", linewidth=1, linestyle=(0, (1, 3)),
                       label="0 (neutral)")
        if left.get_lines():
            left.xaxis.get_major_locator().set_params(integer=True)
        seeds_text = f"mean over {seeds_max} seed{'s' if seeds_max != 1 else ''}" + (
            ", band: range over seeds" if seeds_max >= 2 else "")
        label_axes(left, f"Lyapunov spectrum: {task_name}, T={T}\n{seeds_text}",
                   "exponent index i", "lambda_i (per step, natural log)")
        right.set_xscale("log")
        label_axes(right, f"Convergence of the largest exponent: {task_name}, T={T}\n"
                          "running estimate, mean over seeds",
                   "steps averaged over t", "lambda_1 estimate (per step)")
    if title:
        fig.suptitle(title)
    return fig


def spectrum_figure(sources, task: str | None = None, seq_len: int | None = None,
                    layer: int | None = None, title: str | None = None):
    """``plot_spectrum`` of dynamics CSVs (files or folders holding dynamics.csv)."""
    from seqbench.dynamics.records import read_dynamics

    return plot_spectrum(read_dynamics(sources), task=task, seq_len=seq_len, layer=layer,
                         title=title)


__all__ = ["plot_spectrum", "spectrum_figure"]
