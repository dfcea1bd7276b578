"""Figure: gradient norm against time lag (the long-term-dependency failure, and its fixes).

One line per series (a cell with its options and implementation), the y axis logarithmic. The
line is the geometric mean over seeds (the norms span tens of decades, so an arithmetic mean would
show only the largest seed); the band, drawn only where a series has 2 seeds or more (and the
title says so only then), is +-1 standard deviation of log10(norm) across seeds. A
default-initialized cell keeps its fixed colour (seqbench.style.cell_color); a cell with remedies
(forget bias, another init, ...) gets a colour of its own; the implementation sets the dashes.
Each (series, implementation) of a panel also has a marker of its own and is drawn a few points
aside (seqbench.plots.dodge), so that a hand-written cell and its builtin twin, whose norms are
equal, are both seen; the legend, right of each row of panels, shows the drawn lines themselves.

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
from seqbench.plots import (
    MARKERS,
    dodge,
    dodge_offsets,
    fitting_per_row,
    impl_linestyle,
    legend_outside,
    plain_log_ticks,
)
from seqbench.probe import UNDERFLOW
from seqbench.style import IMPL_DASHES, cell_color, cell_rank

#: colours for cells with options, chosen to stay apart from the cells' own
VARIANT_COLORS = ["#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
                  "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]


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
            part = df[df["step"] == last]
            steps = sorted(set(part["step"]))  # runs stopped when solved end at different steps
            name = (f"end of training (step {steps[0]})" if len(steps) == 1 else
                    f"end of training (each run's last probe, steps {steps[0]}-{steps[-1]})")
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


FAMILIES = ("activation", "initialization", "normalization", "depth", "gated cells", "other cells",
            "training options")


def family(row: dict) -> str:
    """Which kind of remedy a series is, for ``by_family`` columns; "" for the plain tanh RNN."""
    if row["cell"] in ("lstm", "gru", "mingru", "minlstm"):
        return "gated cells"
    if row["cell"] != "rnn":  # the cells designed for long lags: IndRNN, expRNN, coRNN, LRU, plugins
        return "other cells"
    if row.get("norm", "none") not in ("none", None, "") and row["norm"] == row["norm"]:
        return "normalization"
    if row.get("init", "default") != "default" or float(row.get("init_gain", 1.0)) != 1.0:
        return "initialization"
    nonlinearity = row.get("nonlinearity", "tanh")
    if nonlinearity not in ("tanh", None, "") and nonlinearity == nonlinearity:  # NaN: not set
        return "activation"
    if int(row.get("layers", 1)) > 1:
        return "depth"
    return ""


def choose_reference(df: pd.DataFrame, reference: str | None = None) -> str | None:
    """``reference`` checked against the data, or else the plain tanh RNN series with the
    shortest name ("rnn_tanh" before "rnn_no_clip"); None when there is none."""
    if reference is not None:
        if reference not in set(df["series"]):
            raise ConfigError(f"--reference {reference!r} is not a series of the data; "
                              f"series: {', '.join(sorted(set(df['series'])))}")
        return reference
    plain = {r["series"] for r in df.to_dict("records") if family(r) == ""}
    return min(plain, key=lambda n: (len(n), n)) if plain else None


def _family_columns(df: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """Give every row its family column. The reference is drawn in every column; other plain
    tanh RNN series (arms that differ only in training, e.g. clipping: identical at
    initialization) go to "training options"."""
    fam = pd.Series([family(r) for r in df.to_dict("records")], index=df.index)
    fam[df["series"] == reference] = ""
    fam[(fam == "") & (df["series"] != reference)] = "training options"
    columns = [f for f in FAMILIES if (fam == f).any()]
    assert set(fam) - {""} <= set(columns), "a family without a column would drop its series"
    parts = [df[fam == f].assign(column=f) for f in columns]
    if reference is not None:
        parts += [df[df["series"] == reference].assign(column=f) for f in columns or [""]]
    return pd.concat(parts, ignore_index=True)


def plot_decay(df: pd.DataFrame, task: str | None = None, seq_len: int | None = None,
               layer: int | None = None, cell_state: bool = False, title: str | None = None,
               at: list[str] | None = None, by_family: bool = False,
               reference: str | None = None):
    """Draw the figure; returns the matplotlib Figure.

    Panels: one per training step, or per entry of ``at`` (see ``panels``), side by side and
    wrapped into rows so that the figure stays within ``MAX_WIDTH_IN``. With ``by_family``, the
    series are grouped by the kind of remedy (activation, initialization, normalization, depth,
    gated cells, other cells, training options), each group with the plain tanh RNN as the
    reference: one row of panels per group (or, with a single panel, the groups side by side).
    Each group's legend sits right of its row; its entries are the drawn lines themselves.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    df = panels(select(df, task, seq_len, layer, cell_state), at)
    df["series"] = series_labels(df)
    df["grad_norm"] = pd.to_numeric(df["grad_norm"], errors="coerce")
    rows = (list(dict.fromkeys(df["panel"])) if at
            else list(dict.fromkeys(df.sort_values("step", kind="stable")["panel"])))
    reference = choose_reference(df, reference) if by_family else None
    rank = df["cell"].map(cell_rank) + (df["series"] != reference) * 0.5  # the reference first
    firsts = df.assign(rank=rank).sort_values("rank", kind="stable").drop_duplicates("series")
    series = list(firsts["series"])
    df = _family_columns(df, reference) if by_family else df.assign(column="")
    columns = list(dict.fromkeys(df["column"]))
    palette = _palette(df, firsts, by_family, sns)
    impls = [i for i in IMPL_DASHES if i in set(df["impl"])]
    decay = df.groupby(["series", "impl", "panel"], sort=False)["decay_factor"].mean()

    # blocks of panels that share a legend: one per family (or one), each wrapped into rows
    blocks = [(c, rows) for c in columns]
    if by_family and len(rows) == 1:  # one panel per family: families side by side, own legends
        per_row = fitting_per_row(PANEL_W + LEGEND_W)
        grid = [blocks[i:i + per_row] for i in range(0, len(blocks), per_row)]
        ncols = min(per_row, len(blocks))
        legend_every_panel = True
    else:
        per_row = min(len(rows), fitting_per_row(PANEL_W, LEGEND_W))
        grid = [[(c, rows[i:i + per_row])] for c, rows in blocks
                for i in range(0, len(rows), per_row)]
        ncols = per_row
        legend_every_panel = False
    width = ncols * PANEL_W + (ncols if legend_every_panel else 1) * LEGEND_W
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook"):
        fig = Figure(figsize=(width, PANEL_H * len(grid) + 0.9), layout="constrained")
        axes = fig.subplots(len(grid), ncols, squeeze=False, sharey=True)
        seeds_max = 1
        legend_done: set[str] = set()
        for r, line in enumerate(grid):
            cells = [(column, panel) for column, panel_list in line for panel in panel_list]
            for c in range(ncols):
                ax = axes[r, c]
                if c >= len(cells):
                    ax.set_visible(False)
                    continue
                column, panel = cells[c]
                part = df[(df["panel"] == panel) & (df["column"] == column)]
                names = [n for n in series if n in set(df.loc[df["column"] == column, "series"])]
                styles = _styles(df[df["column"] == column], names, impls, palette)
                drawn, seeds = _draw_panel(ax, part, styles)
                seeds_max = max(seeds_max, seeds)
                ax.set_xlabel("lag k = t* - t (steps)")
                ax.set_ylabel("||dL/dc_t||" if cell_state else "||dL/dh_t||  (per sequence)")
                heading = [h for h in (column, panel if len(rows) > 1 else "") if h]
                ax.set_title(": ".join(heading), fontsize=10)
                last = legend_every_panel or c == len(cells) - 1
                if last and (legend_every_panel or column not in legend_done):
                    legend_done.add(column)
                    shown = rows if not legend_every_panel else [panel]
                    _legend(ax, df, styles, decay, shown, drawn)
        for ax in axes.ravel():
            if ax.get_visible():
                plain_log_ticks(ax, "y")  # a range under a decade: 0.93, not 9.3x10^-1
        first = df.iloc[0]
        seeds = df["seed"].nunique()
        band = ("line: geometric mean over seeds; band: +-1 sd of log10 norm over seeds"
                if seeds_max >= 2 else "line: a single seed per series")
        fig.suptitle(title or (
            f"Gradient vs lag: {first['task']} ({first['variant']}), T={first['seq_len']}, "
            f"H={first['hidden']}, {seeds} seed{'s' if seeds > 1 else ''}\n{band}"), fontsize=11)
    return fig


#: markers of the lines: not the underflow triangle ("v")
LINE_MARKERS = [m for m in MARKERS if m != "v"]
#: one panel's width and height, and a legend's width beside it (inches)
PANEL_W, PANEL_H, LEGEND_W = 4.8, 3.9, 3.2


def _styles(part: pd.DataFrame, names: list[str], impls: list[str], palette: dict) -> dict:
    """(series, impl) -> drawing style: the series' colour, the implementation's dashes, and a
    marker of its own among the series of the panel (so that a hand-written cell drawn over its
    builtin twin, or two cells with the same decay, stay told apart)."""
    present = set(zip(part["series"], part["impl"]))
    keys = [(n, i) for n in names for i in impls if (n, i) in present]
    return {key: {"color": palette[key[0]], "linestyle": impl_linestyle(key[1]),
                  "marker": LINE_MARKERS[k % len(LINE_MARKERS)], "index": k, "count": len(keys),
                  "label": key[0] + (f" ({key[1]})" if len(impls) > 1 else "")}
            for k, key in enumerate(keys)}


def _palette(df: pd.DataFrame, firsts: pd.DataFrame, by_family: bool, sns) -> dict:
    """A colour per series. The first default-initialized series of each cell keeps its cell's
    colour (cell_color, the same in every figure); the others take distinct colours, drawn per
    family column when ``by_family`` (series of different families never share a panel)."""
    palette: dict[str, str] = {}
    for row in firsts.to_dict("records"):
        colour = cell_color(row["cell"])
        if not options_label(row) and colour not in palette.values():
            palette[row["series"]] = colour
    groups = (df.drop_duplicates("series").groupby("column", sort=False)["series"].apply(list)
              if by_family else pd.Series({"": list(firsts["series"])}))
    for names in groups:
        todo = [n for n in names if n not in palette]
        colours = (VARIANT_COLORS if len(todo) <= len(VARIANT_COLORS)
                   else sns.color_palette("husl", len(todo)).as_hex())
        palette.update(zip(todo, colours))
    return palette


def _draw_panel(ax, part: pd.DataFrame, styles: dict) -> tuple[dict, int]:
    """One panel: per (series, impl), the geometric mean over seeds against the lag where no seed
    underflowed, a band of +-1 sd of log10(norm) where at least 2 seeds have a value, and a row
    of triangles at the bottom where a seed underflowed. Lines are drawn a few points apart
    (``dodge``), markers spread along them. Returns the lines by (series, impl) and the most
    seeds any series has."""
    ax.set_yscale("log")
    drawn: dict = {}
    seeds_max = 0
    for (name, impl), style in styles.items():
        mine = part[(part["series"] == name) & (part["impl"] == impl)]
        if mine.empty:
            continue
        # one column per probe (a seed's curve; several runs of a seed when a key, e.g. lr, was
        # not selected), one row per lag
        norms = mine.pivot_table(index="lag", columns="probe_id", values="grad_norm",
                                 aggfunc="first")
        seeds = mine["seed"].nunique()
        seeds_max = max(seeds_max, seeds)
        lags = norms.index.to_numpy(float)
        values = norms.to_numpy(float)
        gone = (values < UNDERFLOW).any(axis=1)
        logs = np.full(values.shape, np.nan)
        logs[values > 0] = np.log10(values[values > 0])
        known = np.isfinite(logs).sum(axis=1)
        mean = np.full(len(lags), np.nan)
        ok = (known > 0) & ~gone
        mean[ok] = np.nansum(logs[ok], axis=1) / known[ok]
        sd = np.full(len(lags), np.nan)
        several = (known >= 2) & ~gone & (seeds >= 2)  # a band over seeds needs 2 of them
        for i in np.flatnonzero(several):
            sd[i] = np.std(logs[i][np.isfinite(logs[i])], ddof=1)
        every = max(1, len(lags) // 8)
        start = (style["index"] * every) // max(style["count"], 1)
        line, = ax.plot(lags, 10 ** mean, color=style["color"], linestyle=style["linestyle"],
                        marker=style["marker"], markersize=5, markevery=(start, every),
                        linewidth=1.6, label=style["label"])
        artists = [line]
        if several.any():
            band = ax.fill_between(lags, 10 ** (mean - sd), 10 ** (mean + sd),
                                   color=style["color"], alpha=0.2, linewidth=0)
            band.set_gid(f"band: {name} ({impl})")
            artists.append(band)
        offsets = dodge_offsets(style["count"], step=2.0, spread=10.0)
        dodge(ax, artists, dx=offsets[style["index"]])
        if gone.any():
            under = np.sort(lags[gone])
            under = under[:: max(1, len(under) // 40)]  # a row of markers, not a solid bar
            height = 0.02 + 0.025 * style["index"]
            ax.scatter(under, np.full(len(under), height), transform=ax.get_xaxis_transform(),
                       marker="v", s=14, color=style["color"], clip_on=False, zorder=3)
        drawn[(name, impl)] = line
    if len(part):
        ax.set_xlim(0, part["lag"].max())
    return drawn, seeds_max


def _legend(ax, df, styles: dict, decay, panels, drawn: dict) -> None:
    """A legend right of ``ax``: each (series, implementation) as drawn (its colour, dashes and
    marker: the line itself is the handle) with its fitted decay factor per panel, left to
    right; the implementation is named when the figure has several."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for (name, impl), style in styles.items():
        line = drawn.get((name, impl))
        if line is None:  # not in this panel: a proxy with the same style
            line = Line2D([], [], color=style["color"], linestyle=style["linestyle"],
                          marker=style["marker"], markersize=5, linewidth=1.6)
        factors = ", ".join(f"{f:.3g}" for f in decay.xs((name, impl), level=("series", "impl"))
                            .reindex(panels).dropna().to_numpy())
        handles.append(line)
        labels.append(f"{style['label']}: x{factors}/step")
    if (df["grad_norm"] < UNDERFLOW).any():
        handles.append(Line2D([], [], marker="v", color="grey", linestyle=""))
        labels.append("underflow (below the smallest float32)")
    legend_outside(ax, handles, labels, title="decay factor fitted per step")
