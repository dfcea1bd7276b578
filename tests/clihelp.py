"""What several test files (and benchmarks/fuzz_cli.py) share to call the command line
in-process."""

import contextlib
import os
from pathlib import Path

import click
from click.testing import CliRunner

from seqbench.cli import cli


@contextlib.contextmanager
def inside(path: Path):
    """Work in ``path`` for the duration (contextlib.chdir, which Python 3.10 lacks)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def invoke(args, cwd):
    """Run ``seqbench <args>`` in ``cwd`` (so the default --out lands there too)."""
    with inside(cwd):
        return CliRunner().invoke(cli, args)


def commands(group: click.Group = cli, prefix=()):
    """(path, command) of every command, sub-commands of groups included, read from click (so a
    new command or option is seen at once)."""
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd
