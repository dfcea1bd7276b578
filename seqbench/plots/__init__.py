"""Figures drawn with seaborn: gradient decay against lag (decay.py) and run results (runs.py).

Shared conventions, helped by the functions below: a cell keeps its colour in every figure
(``seqbench.style.cell_color``); several configurations of one cell (options, named arms) are told
apart by line style and marker; the implementation sets the dashes when it is the only difference.
Every figure has a title, axis labels with units and a legend. Figures are plain
``matplotlib.figure.Figure`` objects rendered by the Agg canvas (no GUI backend, no pyplot state);
the output format comes from the file's suffix, PNG when it has none.
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
    return path


def new_figure(panels: int = 1, width: float = 6.4, height: float = 4.6, per_row: int | None = None):
    """A Figure with ``panels`` axes side by side (wrapped after ``per_row`` of them, unused
    cells of the last row hidden), in seaborn's whitegrid style."""
    import seaborn as sns
    from matplotlib.figure import Figure

    cols = min(panels, per_row or panels)
    rows = -(-panels // cols)
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
        axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def label_axes(ax, title: str, xlabel: str, ylabel: str, legend: bool = True, **legend_kw) -> None:
    """Title, axis labels (with units) and a legend of the labelled artists."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(**{"fontsize": 8, **legend_kw})


def save(fig, path: str | os.PathLike, dpi: int = 130) -> Path:
    """Write ``fig`` to ``path`` (format from its suffix, PNG by default), creating its folder."""
    path = output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format=path.suffix[1:].lower())
    return path
