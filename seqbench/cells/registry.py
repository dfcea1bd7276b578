"""Which cells exist: seqbench's own, installed plugins (entry-point group ``seqbench.cells``) and
any importable class named as ``package.module:ClassName``.

Kept free of torch: the command line's help, specs and leaderboards read names, summaries and
colours from here; a cell's code is imported only when a run needs it (``cell_class``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from seqbench.plugins import check_name, import_target, installed

#: the entry-point group an installed package lists its cells under
ENTRY_POINT_GROUP = "seqbench.cells"


@dataclass(frozen=True)
class CellEntry:
    """A registered cell: its name, where its class lives, one line of help and its colour."""

    name: str
    target: str  # "package.module:ClassName"
    summary: str
    color: str | None = None  # fixed colour in every figure; None: one from the plot palette


#: seqbench's own cells, in the order tables and figures list them. A new cell: one line here.
BUILTIN_CELLS = (
    CellEntry("rnn", "seqbench.cells.elman:Elman",
              "Elman RNN, tanh unless --nonlinearity (Elman 1990)", "#d62728"),
    CellEntry("lstm", "seqbench.cells.lstm:LSTM",
              "LSTM (Hochreiter & Schmidhuber 1997; Gers et al. 2000)", "#1f77b4"),
    CellEntry("gru", "seqbench.cells.gru:GRU", "GRU (Cho et al. 2014)", "#2ca02c"),
    CellEntry("indrnn", "seqbench.cells.indrnn:IndRNN",
              "IndRNN, elementwise ReLU recurrence bounded from T (Li et al. 2018)", "#ff7f0e"),
    CellEntry("exprnn", "seqbench.cells.exprnn:ExpRNN",
              "expRNN, W_hh = exp(skew) stays orthogonal (Lezcano-Casado & Martinez-Rubio 2019)",
              "#9467bd"),
    CellEntry("cornn", "seqbench.cells.cornn:CoRNN",
              "coRNN, coupled oscillators (Rusch & Mishra 2021)", "#8c564b"),
    CellEntry("lru", "seqbench.cells.lru:LRU",
              "LRU, diagonal complex linear recurrence, parallel scan (Orvieto et al. 2023)",
              "#e377c2"),
    CellEntry("mingru", "seqbench.cells.minrnn:MinGRU",
              "minGRU, gates from x_t only, parallel scan (Feng et al. 2024)", "#17becf"),
    CellEntry("minlstm", "seqbench.cells.minrnn:MinLSTM",
              "minLSTM, gates from x_t only, parallel scan (Feng et al. 2024)", "#bcbd22"),
)


@functools.cache
def registry() -> dict[str, CellEntry]:
    """Name -> entry: seqbench's cells, then installed plugins (a plugin cannot shadow one)."""
    cells = {e.name: e for e in BUILTIN_CELLS}
    for name, target, summary in installed(ENTRY_POINT_GROUP):
        cells.setdefault(name, CellEntry(name, target, summary))
    return cells


def cell_names() -> tuple[str, ...]:
    """Every registered cell name, seqbench's first."""
    return tuple(registry())


def check_cell_name(name: str) -> str:
    """The registered cell ``name`` stands for (ignoring case: LSTM is lstm) or ``name`` as a
    ``package.module:ClassName``; else a ConfigError with the closest name (plugins.check_name)."""
    return check_name("cell", name, cell_names())


def cell_color(name: str) -> str | None:
    entry = registry().get(name)
    return entry.color if entry is not None else None


@functools.cache
def cell_class(name: str):
    """The class of cell ``name`` (a seqbench.cells.base.Cell subclass; a plain module shaped like
    torch.nn.RNNCell comes back wrapped by seqbench.cells.plugin). Imports torch. Anything wrong
    with a plugin is a one-line ConfigError."""
    name = check_cell_name(name)
    target = registry()[name].target if name in registry() else name
    obj = import_target("cell", name, target)
    from seqbench.cells.plugin import as_cell

    return as_cell(obj, name)
