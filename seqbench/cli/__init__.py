"""The ``seqbench`` command line: a thin layer over the library.

One module per command family (``run``, ...), each adapting one library call. Heavy imports
(torch, pandas, seaborn) happen inside the commands, so ``--help`` is instant. Bad input of any
kind ends in one line, ``Error: <what is wrong and what is allowed>``, exit code 2, nothing written.
"""

from __future__ import annotations

import errno
import functools
import sys
import warnings

import click

from seqbench import __version__


class BadInput(click.ClickException):
    """A user error: printed as one line, exit code 2."""

    exit_code = 2


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _one_line(message: str) -> str:
    """An error message on one line, even when it quotes input with line breaks."""
    return " ".join(message.splitlines())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (a skipped torn line of a results file, ...) as one line on stderr."""
    click.echo(f"Warning: {_one_line(str(message))}", err=True)


class SeqbenchGroup(click.Group):
    """A click group whose usage errors are one line (no usage block) and exit with 2, and that
    stops quietly when the reader of its output goes away (``seqbench ... | head -1``)."""

    #: exit status after the reader of stdout went away: 128 + SIGPIPE, what a shell reports for
    #: a tool that SIGPIPE ended (``yes | head -1``), so that a script with ``set -o pipefail``
    #: can tell output that was cut short from a complete one (0 would hide it; click's 1 reads
    #: as an error of the command itself)
    PIPE_CLOSED = 141

    class PipeClosed(Exception):
        """A write to stdout/stderr found the pipe closed (click's own handling exits 1)."""

    @staticmethod
    def drop_output(streams=None) -> None:
        """Point ``streams`` (stdout and stderr) at /dev/null, so that what is still buffered
        for a closed pipe, and whatever is written later, goes nowhere instead of failing again
        (Python flushes stdout at exit)."""
        import os

        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        for stream in streams or (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError, AttributeError):  # no real file (CliRunner)
                continue
        os.close(devnull)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise SeqbenchGroup.PipeClosed() from None

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as e:  # `seqbench`, `seqbench plot` alone: their help (click 8.1 too)
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"Error: {_one_line(e.format_message())}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"Error: {_one_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(130)
        except SeqbenchGroup.PipeClosed:  # `| head`: stop writing, say nothing, as Unix tools do
            self.drop_output()
            sys.exit(self.PIPE_CLOSED)
        if isinstance(rv, int):  # click returns the exit code of --help/--version in this mode
            sys.exit(rv)
        sys.exit(0)


#: OS errors that come from the user's environment (paths, permissions, space), not from a bug
USER_OS_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT,
                  errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG}


def config_errors(fn):
    """Turn the library's ConfigError (a ValueError subclass) into a one-line BadInput."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from seqbench.errors import ConfigError

        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            raise BadInput(str(e)) from None
        except OSError as e:
            if e.errno not in USER_OS_ERRORS:
                raise
            raise BadInput(f"{e.strerror}: {e.filename or ''}".rstrip(": ")) from None

    return wrapper


def options_given(ctx: click.Context, allowed: tuple[str, ...]) -> list[str]:
    """The options typed on the command line, other than ``allowed`` (as ``--flag-name``)."""
    from click.core import ParameterSource

    return ["--" + p.name.replace("_", "-") for p in ctx.command.params
            if ctx.get_parameter_source(p.name) == ParameterSource.COMMANDLINE
            and p.name not in allowed]


#: what every ``--spec`` command accepts beside the spec: where and how to run, not what
SPEC_OPTIONS = ("spec", "profile", "device", "threads", "out", "quiet")


def check_spec_options(ctx: click.Context, spec, profile, allowed: tuple[str, ...] = ()) -> None:
    """``--profile`` only with ``--spec``; with ``--spec``, no option that the spec's grid
    defines (anything typed beyond ``SPEC_OPTIONS`` and ``allowed``): one-line ConfigErrors."""
    from seqbench.errors import ConfigError

    if spec is None and profile is not None:
        raise ConfigError("--profile needs --spec")
    if spec is not None:
        given = options_given(ctx, SPEC_OPTIONS + allowed)
        if given:
            raise ConfigError(f"--spec defines the grid; drop {given[0]}")


@click.group(cls=SeqbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqbench")
def cli():
    """seqbench: recurrent networks on synthetic long-dependency tasks.

    Train recurrent cells (RNN, LSTM, GRU as PyTorch's built-in modules or hand-written twins,
    and the cells built for long lags) on long-dependency tasks, and record every run as a row of
    seqbench-results/runs.csv (--out). Start with `seqbench demo`; `seqbench list` shows the
    tasks, cells and remedies.
    """
    from seqbench import malloc

    malloc.tune()  # large tensors reused from the heap, not page-faulted anew (seqbench.malloc)


def main(prog_name: str | None = None) -> None:
    cli.main(prog_name=prog_name or "seqbench")


# Command families register themselves on ``cli`` when imported.
from seqbench.cli import run  # noqa: E402, F401
from seqbench.cli import grads  # noqa: E402, F401
from seqbench.cli import sweep  # noqa: E402, F401
from seqbench.cli import plot  # noqa: E402, F401
from seqbench.cli import leaderboard  # noqa: E402, F401
from seqbench.cli import bench  # noqa: E402, F401
from seqbench.cli import published  # noqa: E402, F401
from seqbench.cli import demo  # noqa: E402, F401
from seqbench.cli import listing  # noqa: E402, F401
from seqbench.cli import compare  # noqa: E402, F401
from seqbench.cli import report  # noqa: E402, F401
from seqbench.cli import predict  # noqa: E402, F401
from seqbench.cli import dynamics  # noqa: E402, F401
from seqbench.cli import curse  # noqa: E402, F401
