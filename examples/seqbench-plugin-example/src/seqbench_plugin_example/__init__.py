"""Example seqbench plugin: recurrent cells that seqbench finds through the entry-point group
``seqbench.cells`` of this package's pyproject.toml.

- ``leaky.LeakyTanhCell`` (cell ``leaky``): a plain module shaped like torch.nn.RNNCell, the least a
  cell needs; it does not import seqbench.
- ``gated.GatedLeaky`` (cell ``leaky_gated``): the richer interface, a seqbench.cells.base.Cell
  subclass, which the remedies (--init, --init-gain, --chrono) act on.

The submodules are imported by seqbench only when a run uses their cell, so this file imports
nothing: listing the cells (``seqbench run --help``) stays free of torch.
"""

__version__ = "0.1.0"
