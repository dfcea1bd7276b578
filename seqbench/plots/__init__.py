"""Figures drawn with seaborn: gradient decay against lag (decay.py) and run results (runs.py).

Shared conventions, helped by the functions below: a cell keeps its colour in every figure
(``seqbench.style.cell_color``); several configurations of one cell (options, named arms) are told
apart by line style and marker; the implementation sets the dashes when it is the only difference.
Every figure has a title, axis labels with units and a legend. Figures are plain
``matplotlib.figure.Figure`` objects rendered by the Agg canvas (no GUI backend, no pyplot state);
the output format comes from the file's suffix, PNG when it has none.

Readability rules every figure follows (tests/test_plots_readability.py checks them):

- legends sit outside the axes, to the right of the panel they describe (``legend_outside``);
- series that may coincide (a hand-written cell and its torch twin, solve rates all at 0) differ
  by marker as well as by colour, and are drawn a few points apart (``dodge``: a shift of the
  drawing only, the data are unchanged), so that no series hides another;
- legend entries are the drawn artists' own styles (colour, dashes, marker);
- a figure is at most ``MAX_WIDTH_IN`` inches wide (facets wrap into rows) and no text is smaller
  than ``MIN_FONT_PT`` points;
- a log axis spanning less than a decade is labelled in plain decimals (``plain_log_ticks``);
- a band over seeds is drawn and announced only where there are at least 2 seeds.
"""

from __future__ import annotations

import os
from pathlib import Path

from seqbench.errors import ConfigError
from seqbench.style import IMPL_DASHES, cell_color  # noqa: F401  (re-exported)

#: line styles and markers for the 1st, 2nd, ... configuration of the same cell in one panel
LINESTYLES = ["-", (0, (5, 2)), (0, (1, 1.5)), (0, (5, 2, 1, 2)), (0, (8, 2, 2, 2, 2, 2)),
              (0, (3, 3)), (0, (1, 3)), (0, (10, 3))]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]
#: resolution of the written figures (dots per inch)
DPI = 130
#: the widest figure: 15 in at 130 dpi is 1950 px (facets wrap into rows beyond it)
MAX_WIDTH_IN = 15.0
#: the smallest font of any text in a figure, in points
MIN_FONT_PT = 8
#: formats the Agg canvas writes
FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")


def impl_linestyle(impl: str):
    """IMPL_DASHES as a matplotlib linestyle ('' = solid)."""
    dashes = IMPL_DASHES.get(str(impl), "")
    return "-" if not dashes else (0, dashes)


def output_path(path: str | os.PathLike) -> Path:
    """``path`` with ``.png`` added when it has no suffix; an unknown format is a ConfigError."""
    if not str(path).strip() or not Path(path).name or Path(path).name in (".", ".."):
        raise ConfigError(f"-o must name a figure file, got {str(path)!r}")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"-o {path} is a directory; give a file name, e.g. {path / 'figure.png'}")
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    fmt = path.suffix[1:].lower()
    if fmt not in FORMATS:
        raise ConfigError(f"cannot write figures as {path.suffix!r} ({path}); allowed suffixes: "
                          f"{', '.join('.' + f for f in FORMATS)}")
    from seqbench.results import check_location

    check_location(path, write=True, what="-o")  # a FIFO would hang savefig: refuse it first
    return path


def fitting_per_row(width: float, extra: float = 0.0) -> int:
    """How many panels ``width`` inches wide fit side by side (with ``extra`` inches beside them,
    e.g. one legend per row) within ``MAX_WIDTH_IN``; at least 1."""
    return max(1, int((MAX_WIDTH_IN - extra) // width))


def new_figure(panels: int = 1, width: float = 6.4, height: float = 4.6, per_row: int | None = None):
    """A Figure with ``panels`` axes side by side (wrapped after ``per_row`` of them, and never
    wider than ``MAX_WIDTH_IN``; unused cells of the last row hidden), in seaborn's whitegrid
    style. ``width`` is one panel's share, its legend included."""
    import seaborn as sns
    from matplotlib.figure import Figure

    cols = min(panels, per_row or panels, fitting_per_row(width))
    rows = -(-panels // cols)
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
        axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def label_axes(ax, title: str, xlabel: str, ylabel: str, legend: bool = True, **legend_kw) -> None:
    """Title, axis labels (with units) and a legend of the labelled artists, outside the axes."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        legend_outside(ax, **legend_kw)


def legend_outside(ax, handles=None, labels=None, **kw):
    """A legend to the right of ``ax``, its top level with the axes' top: never on the data. The
    figure's layout (constrained, or tight) makes room for it."""
    kw = {"fontsize": MIN_FONT_PT, "title_fontsize": MIN_FONT_PT, **kw,
          "loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}
    if handles is None:
        return ax.legend(**kw)
    return ax.legend(handles, labels, **kw) if labels is not None else ax.legend(handles=handles,
                                                                                  **kw)


def dodge_offsets(count: int, step: float = 3.0, spread: float = 18.0) -> list[float]:
    """Offsets in points, centred on 0, for ``count`` series drawn at the same places: ``step``
    apart, or closer when ``count`` would spread them over more than ``spread`` points."""
    if count <= 1:
        return [0.0] * count
    step = min(step, spread / (count - 1))
    return [(i - (count - 1) / 2) * step for i in range(count)]


def dodge(ax, artists, dx: float = 0.0, dy: float = 0.0) -> None:
    """Draw ``artists`` (Line2D, collections, containers of them) ``dx``, ``dy`` points away
    from where their data put them. Only the drawing moves: the data (``get_xdata``) and the axes
    limits stay as they were, so that a series that coincides with another stays visible."""
    from matplotlib.container import Container
    from matplotlib.transforms import ScaledTranslation

    if not dx and not dy:
        return
    shift = ScaledTranslation(dx / 72, dy / 72, ax.figure.dpi_scale_trans)
    todo = list(artists) if isinstance(artists, (list, tuple, Container)) else [artists]
    while todo:
        artist = todo.pop()
        if isinstance(artist, (list, tuple, Container)):
            todo.extend(a for a in artist if a is not None)
            continue
        artist.set_transform(artist.get_transform() + shift)


def plain_log_ticks(ax, axis: str = "y") -> bool:
    """On a log ``axis`` that spans less than a decade, plain decimal tick labels (0.93, 0.95,
    1) at round values instead of 9.3x10^-1; True when it did so. Call it once the limits are
    final."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, NullLocator

    which = ax.yaxis if axis == "y" else ax.xaxis
    if which.get_scale() != "log":
        return False
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    if lo <= 0 or hi / lo >= 10:
        return False
    which.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    which.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.6g}"))
    which.set_minor_locator(NullLocator())
    which.set_minor_formatter(NullFormatter())
    return True


def save(fig, path: str | os.PathLike, dpi: int = 130) -> Path:
    """Write ``fig`` to ``path`` (format from its suffix, PNG by default), creating its folder."""
    path = output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format=path.suffix[1:].lower())
    return path
