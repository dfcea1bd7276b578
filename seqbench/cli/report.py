"""``seqbench report``: a static HTML site of a results folder (seqbench.report)."""

from __future__ import annotations

import click

from seqbench import memory as M
from seqbench.cli import cli, config_errors


@cli.command()
@click.argument("results_dir", type=click.Path(file_okay=True, dir_okay=True))
@click.option("-o", "--output", "out_dir", type=click.Path(), default="build/report",
              show_default=True,
              help="Folder for the site (created; an earlier report there is replaced; "
                   "build/ is ignored by git).")
@click.option("--run-figures/--no-run-figures", default=True, show_default=True,
              help="Draw each run's learning curve and gradient-vs-lag figure (the slow part: "
                   "about 1 s of CPU per probed run, ~20 minutes for 1000 runs; unchanged ones "
                   "are reused from the earlier report in -o).")
@click.option("--jobs", "-j", type=click.IntRange(1, M.MAX_WORKERS), default=1, show_default=True,
              help="Processes drawing the run figures.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
@config_errors
def report(results_dir, out_dir, run_figures, jobs, quiet):
    """Build a static HTML report of RESULTS_DIR (opens from disk, no server, no network).

    Every folder under RESULTS_DIR with a runs.csv is a sweep: the index shows its headline and
    leaderboard tables and its runs (sortable, filterable by task, cell, label, T), every PNG
    figure under RESULTS_DIR, the published-vs-measured table (published.csv) and the speed
    benchmarks (bench*.csv); each arm and each run has its own page (config, learning curve,
    gradient against lag at each probe, provenance). RESULTS_DIR is only read.

    \b
    Examples:
      seqbench report results -o /tmp/report
      seqbench report results -o /tmp/report --no-run-figures
      seqbench report results/fixes -o /tmp/fixes-report --jobs 2
    """
    import time

    from seqbench.report import build_report

    start = time.monotonic()
    echo = None if quiet else (lambda line: click.echo(line, err=True))
    index = build_report(results_dir, out_dir, run_figures=run_figures, jobs=jobs, progress=echo)
    click.echo(f"wrote {index} ({time.monotonic() - start:.0f} s)")
