"""Figure: gradient norm against time lag (the long-term-dependency failure, and its fixes).

One line per series (a cell with its options and implementation), the y axis logarithmic. The
line is the geometric mean over seeds (the norms span tens of decades, so an arithmetic mean would
show only the largest seed); the band is +-1 standard deviation of log10(norm) across seeds. A
default-initialized cell keeps its fixed colour (seqbench.style.CELL_COLORS); a cell with remedies
(forget bias, another init, ...) gets a colour of its own; the implementation sets the dashes.

Norms that underflowed in float32 (to 0, or to a denormal below the smallest normal float, which
has lost its precision) are not drawn as values: the line stops where any seed underflowed, and a
row of triangles at the bottom of the axis, one row per series, marks those lags.
One panel per training step when the data holds several (a probed run), or the panels ``at``
names: initialization, the end of each run's training, a given step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqbench.cells import options_label
from seqbench.errors import ConfigError
from seqbench.grads import series_name
from seqbench.probe import UNDERFLOW
from seqbench.style import CELL_COLORS, IMPL_DASHES

#: colours for cells with options, chosen to stay apart from CELL_COLORS
VARIANT_COLORS = ["#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
                  "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]


def _geomean(v: pd.Series) -> float:
    return float(10 ** np.mean(np.log10(v)))


def _geo_band(v: pd.Series) -> tuple[float, float]:
    logs = np.log10(v)
    m, s = np.mean(logs), (np.std(logs, ddof=1) if len(logs) > 1 else 0.0)
    return float(10 ** (m - s)), float(10 ** (m + s))


def series_labels(df: pd.DataFrame) -> pd.Series:
    """'lstm', 'lstm (forget bias 1)', 'irnn' (a spec's arm label), ... per row."""
    return pd.Series([series_name(r) for r in df.to_dict("records")], index=df.index)


def panels(df: pd.DataFrame, at: list[str] | None) -> pd.DataFrame:
    """Assign each row to a panel. Without ``at``: one panel per training step. With it, one
    panel per entry: ``init`` (step 0), ``end`` (each run's last probe, whatever its step), or a
    step number."""
    if not at:
        return df.assign(panel=[f"training step {s}" for s in df["step"]])
    source = df["run_id"].fillna("").astype(str).where(lambda r: r != "", df["probe_id"])
    last = df.groupby(source)["step"].transform("max")
    parts = []
    for entry in at:
        if entry == "init":
            part, name = df[df["step"] == 0], "at initialization"
        elif entry == "end":
            part, name = df[df["step"] == last], "end of training"
        elif entry.isdigit():
            part, name = df[df["step"] == int(entry)], f"training step {entry}"
        else:
            raise ConfigError(f"--at takes init, end or a step number, got {entry!r}")
        if len(part) == 0:
            raise ConfigError(f"no gradient rows at {entry!r}")
        parts.append(part.assign(panel=name))
    return pd.concat(parts, ignore_index=True)


def select(df: pd.DataFrame, task: str | None = None, seq_len: int | None = None,
           layer: int | None = None, cell_state: bool = False) -> pd.DataFrame:
    """The rows of one (task, T), one layer (default: each model's top layer)."""
    if task is not None:
        df = df[df["task"] == task]
    if seq_len is not None:
        df = df[df["seq_len"] == seq_len]
    combos = df[["task", "seq_len"]].drop_duplicates()
    if len(combos) == 0:
        raise ConfigError("no gradient rows match the selection")
    if len(combos) > 1:
        listed = ", ".join(f"{t} T={s}" for t, s in combos.itertuples(index=False))
        raise ConfigError(f"the data holds several tasks/lengths ({listed}); "
                          "choose one with --task and --seq-len")
    df = df[df["layer"] == (df["layers"] - 1 if layer is None else layer)]
    if cell_state:
        df = df[df["cell"] == "lstm"].assign(grad_norm=lambda d: d["cell_grad_norm"])
    if len(df) == 0:
        raise ConfigError("no gradient rows for that layer" + (" (cell state: LSTM only)"
                                                               if cell_state else ""))
    return df


def plot_decay(df: pd.DataFrame, task: str | None = None, seq_len: int | None = None,
               layer: int | None = None, cell_state: bool = False, title: str | None = None,
               at: list[str] | None = None):
    """Draw the figure; returns the matplotlib Figure. ``at``: see ``panels``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = panels(select(df, task, seq_len, layer, cell_state), at)
    df["series"] = series_labels(df)
    df["grad_norm"] = pd.to_numeric(df["grad_norm"], errors="coerce")
    steps = list(dict.fromkeys(df.sort_values("step")["panel"])) if not at else list(
        dict.fromkeys(df["panel"]))
    order = {"rnn": 0, "lstm": 1, "gru": 2}
    firsts = df.sort_values("cell", key=lambda c: c.map(order), kind="stable").drop_duplicates(
        "series")
    series = list(firsts["series"])
    # the first default-initialized series of each cell keeps the cell's colour
    palette, extra = {}, iter(VARIANT_COLORS)
    for row in firsts.to_dict("records"):
        plain = not options_label(row)
        colour = CELL_COLORS[row["cell"]]
        palette[row["series"]] = colour if plain and colour not in palette.values() else next(extra)
    impls = [i for i in IMPL_DASHES if i in set(df["impl"])]

    # mean decay factor per series and panel, for the legend
    decay = df.groupby(["series", "panel"], sort=False)["decay_factor"].mean()

    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(steps), figsize=(6.4 * len(steps) + 1.6, 4.8), squeeze=False,
                             sharey=True)
    for ax, step in zip(axes[0], steps):
        part = df[df["panel"] == step]
        # a lag where any seed underflowed to 0 is an underflow, not a value
        group = ["series", "impl", "lag"]
        underflow = part.groupby(group)["grad_norm"].transform(lambda v: (v < UNDERFLOW).any())
        line = part[~underflow]
        sns.lineplot(data=line, x="lag", y="grad_norm", hue="series", style="impl",
                     hue_order=series, style_order=impls, palette=palette,
                     dashes={i: IMPL_DASHES[i] for i in impls}, estimator=_geomean,
                     errorbar=_geo_band, ax=ax, legend=ax is axes[0][-1])
        ax.set_yscale("log")
        ax.set_xlim(0, part["lag"].max())
        gone = part[underflow][group].drop_duplicates()
        for (name, _impl), lags in gone.groupby(["series", "impl"])["lag"]:
            lags = np.sort(lags.to_numpy())
            lags = lags[:: max(1, len(lags) // 40)]  # a row of markers, not a solid bar
            height = 0.02 + 0.025 * series.index(name)
            ax.scatter(lags, np.full(len(lags), height), transform=ax.get_xaxis_transform(),
                       marker="v", s=14, color=palette[name], clip_on=False, zorder=3)
        ax.set_xlabel("lag k = t* - t (steps)")
        ax.set_ylabel("||dL/dc_t||" if cell_state else "||dL/dh_t||  (per sequence)")
        if len(steps) > 1:
            ax.set_title(step)
    last = axes[0][-1]
    handles, labels = last.get_legend_handles_labels()
    for i, label in enumerate(labels):
        if label in palette:  # a series: add its fitted decay factor (per panel, left to right)
            factors = ", ".join(f"{f:.3g}" for f in decay.xs(label, level="series")
                                .reindex(steps).dropna().to_numpy())
            labels[i] = f"{label}: x{factors}/step"
    if (df["grad_norm"] < UNDERFLOW).any():
        handles.append(plt.Line2D([], [], marker="v", color="grey", linestyle=""))
        labels.append("underflow (below the smallest float32)")
    last.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    row = df.iloc[0]
    seeds = df["seed"].nunique()
    fig.suptitle(title or (
        f"Gradient vs lag: {row['task']} ({row['variant']}), T={row['seq_len']}, "
        f"H={row['hidden']}, {seeds} seed{'s' if seeds > 1 else ''}\n"
        "line: geometric mean over seeds; band: +-1 sd of log10 norm"), fontsize=11)
    fig.tight_layout()
    return fig
