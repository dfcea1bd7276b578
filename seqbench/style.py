"""Figure conventions shared by every plot: one colour per cell, one dash per implementation.

A cell keeps its colour in every figure seqbench draws (decay curves, solve rates, learning curves),
so that figures can be read side by side.
"""

CELL_COLORS = {
    "rnn": "#d62728",  # red: the cell that fails
    "lstm": "#1f77b4",  # blue
    "gru": "#2ca02c",  # green
}
IMPL_DASHES = {
    "builtin": "",  # solid
    "hand": (4, 2),  # dashed
}
