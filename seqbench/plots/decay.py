"""Figure: gradient norm against time lag (the long-term-dependency failure, and its fixes).

One line per series (a cell with its options and implementation), the y axis logarithmic. The
line is the geometric mean over seeds (the norms span tens of decades, so an arithmetic mean would
show only the largest seed); the band is +-1 standard deviation of log10(norm) across seeds. A
default-initialized cell keeps its fixed colour (seqbench.style.cell_color); a cell with remedies
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

    Rows of panels: one per training step, or per entry of ``at`` (see ``panels``). With
    ``by_family``, columns group the series by the kind of remedy (activation, initialization,
    normalization, depth, gated cells), each with the plain tanh RNN as the reference.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

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
    decay = df.groupby(["series", "panel"], sort=False)["decay_factor"].mean()

    # the grid: panels (steps) side by side; with families, one family per row of the grid, or
    # families wrapped three to a row when there is a single panel
    if by_family and len(rows) == 1:
        cells = [(rows[0], c) for c in columns]
        ncols = min(3, len(cells))
    elif by_family:
        cells = [(r, c) for c in columns for r in rows]
        ncols = len(rows)
    else:
        cells = [(r, "") for r in rows]
        ncols = len(rows)
    nrows = -(-len(cells) // ncols)
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=True,
                             figsize=(5.4 * ncols + (3.0 if not by_family else 0.4),
                                      (3.9 if by_family else 4.6) * nrows + 0.9))
    flat = axes.ravel()
    for ax, (panel, column) in zip(flat, cells):
        part = df[(df["panel"] == panel) & (df["column"] == column)]
        _draw_panel(ax, part, series, impls, palette, sns)
        ax.set_xlabel("lag k = t* - t (steps)")
        ax.set_ylabel("||dL/dc_t||" if cell_state else "||dL/dh_t||  (per sequence)")
        heading = [h for h in (column, panel if len(rows) > 1 else "") if h]
        ax.set_title(": ".join(heading), fontsize=10)
        if by_family:
            shown = [n for n in series if n in set(part["series"])]
            _legend(ax, df, shown, palette, impls, decay, [panel], plt, fontsize=7)
    for ax in flat[len(cells):]:
        ax.set_visible(False)
    if not by_family:
        _legend(flat[ncols - 1], df, series, palette, impls, decay, rows, plt, outside=True)
    first = df.iloc[0]
    seeds = df["seed"].nunique()
    fig.suptitle(title or (
        f"Gradient vs lag: {first['task']} ({first['variant']}), T={first['seq_len']}, "
        f"H={first['hidden']}, {seeds} seed{'s' if seeds > 1 else ''}\n"
        "line: geometric mean over seeds; band: +-1 sd of log10 norm"), fontsize=11)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / height))  # room for the two-line title
    return fig


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


def _draw_panel(ax, part: pd.DataFrame, series: list[str], impls: list[str], palette: dict,
                sns) -> None:
    """One panel: lines where no seed underflowed, a row of triangles per series where one did."""
    group = ["series", "impl", "lag"]
    underflow = part.groupby(group)["grad_norm"].transform(
        lambda v: bool((v < UNDERFLOW).any())).astype(bool)
    shown = [s for s in series if s in set(part["series"])]
    # On a log axis seaborn aggregates in log space: the mean is the geometric mean over seeds and
    # "sd" is +-1 standard deviation of log(norm).
    ax.set_yscale("log")
    sns.lineplot(data=part[~underflow], x="lag", y="grad_norm", hue="series", style="impl",
                 hue_order=shown, style_order=impls, palette=palette,
                 dashes={i: IMPL_DASHES[i] for i in impls}, estimator="mean", errorbar="sd",
                 ax=ax, legend=False)
    if len(part):
        ax.set_xlim(0, part["lag"].max())
    gone = part[underflow][group].drop_duplicates()
    for (name, _impl), lags in gone.groupby(["series", "impl"])["lag"]:
        lags = np.sort(lags.to_numpy())
        lags = lags[:: max(1, len(lags) // 40)]  # a row of markers, not a solid bar
        height = 0.02 + 0.025 * shown.index(name)
        ax.scatter(lags, np.full(len(lags), height), transform=ax.get_xaxis_transform(),
                   marker="v", s=14, color=palette[name], clip_on=False, zorder=3)


def _legend(ax, df, series, palette, impls, decay, panels, plt, fontsize=8,
            outside=False) -> None:
    """A legend: each series with its fitted decay factor per panel, left to right."""
    handles, labels = [], []
    for name in series:
        factors = ", ".join(f"{f:.3g}" for f in decay.xs(name, level="series")
                            .reindex(panels).dropna().to_numpy())
        handles.append(plt.Line2D([], [], color=palette[name], lw=2))
        labels.append(f"{name}: x{factors}/step")
    if len(impls) > 1:
        for impl in impls:
            dashes = IMPL_DASHES[impl]
            handles.append(plt.Line2D([], [], color="grey", dashes=dashes or (None, None)))
            labels.append(f"impl: {impl}")
    if (df["grad_norm"] < UNDERFLOW).any():
        handles.append(plt.Line2D([], [], marker="v", color="grey", linestyle=""))
        labels.append("underflow (below the smallest float32)")
    where = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)} if outside else {"loc": "best"}
    ax.legend(handles, labels, fontsize=fontsize, title="decay factor fitted per step",
              title_fontsize=fontsize, **where)
