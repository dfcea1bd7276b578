"""``python -m seqbench``: the same command-line interface as ``seqbench``."""

from seqbench.cli import main

main(prog_name="seqbench")
