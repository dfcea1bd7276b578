"""Figure conventions shared by every plot: one colour per cell, one dash per implementation.

A cell keeps its colour in every figure seqbench draws (decay curves, solve rates, learning curves),
so that figures can be read side by side. seqbench's cells have fixed colours in their registry
entries (seqbench.cells.registry); any other cell (a plugin) takes one from ``PLUGIN_COLORS`` by a
hash of its name, the same in every figure. Tables and figures list cells in registry order.
"""

import zlib

from seqbench.cells.registry import cell_names, registry

#: colours for cells without a fixed one, apart from the registry's
PLUGIN_COLORS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#7f7f7f")
IMPL_DASHES = {
    "builtin": "",  # solid
    "hand": (4, 2),  # dashed
}


def cell_color(cell: str) -> str:
    """The colour of ``cell`` in every figure."""
    entry = registry().get(str(cell))
    if entry is not None and entry.color:
        return entry.color
    return PLUGIN_COLORS[zlib.crc32(str(cell).encode()) % len(PLUGIN_COLORS)]


def cell_rank(cell: str) -> int:
    """Position of ``cell`` in tables and figures: registry order, unregistered cells last."""
    names = cell_names()
    return names.index(cell) if cell in names else len(names)
