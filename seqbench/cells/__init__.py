"""Recurrent cells: a registry of cells, each a unit, and the configuration of a recurrent stack.

- ``seqbench.cells.registry``: which cells exist (seqbench's, installed plugins, any
  ``package.module:ClassName``), with names, help and colours, without importing torch;
- ``seqbench.cells.config``: ``CellConfig``, what stack to build (torch-free too);
- ``seqbench.cells.base``: the ``Cell`` interface; one module per family holds its equations and
  its fast path side by side (``elman``, ``lstm``, ``gru``, ...); ``seqbench.cells.stack``: the
  generic hand-written stack ``HandRNN`` and the built-in torch.nn twins;
- ``seqbench.cells.plugin``: any module shaped like torch.nn.RNNCell / nn.LSTMCell as a cell.
"""

from seqbench.cells.config import CellConfig, options_label
from seqbench.cells.registry import (
    ENTRY_POINT_GROUP,
    CellEntry,
    cell_class,
    cell_color,
    cell_names,
    check_cell_name,
    registry,
)

__all__ = ["ENTRY_POINT_GROUP", "CellConfig", "CellEntry", "cell_class", "cell_color",
           "cell_names", "check_cell_name", "options_label", "registry"]
