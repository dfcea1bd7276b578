"""What several test files share to call the command line in-process."""

import os

from click.testing import CliRunner

from seqbench.cli import cli


def invoke(args, cwd):
    """Run ``seqbench <args>`` in ``cwd`` (so the default --out lands there too)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, args)
    finally:
        os.chdir(old)
