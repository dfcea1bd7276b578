"""``seqbench leaderboard``: aggregate runs.csv over seeds into a leaderboard and a headline table."""

from __future__ import annotations

import click

from seqbench.choices import TASKS
from seqbench.cli import cli, config_errors


@cli.command()
@click.option("--runs", "runs_csv", type=click.Path(dir_okay=False), default="results/runs.csv",
              show_default=True, help="The runs CSV to aggregate.")
@click.option("--task", type=click.Choice(TASKS), default=None,
              help="Print this task only (the CSV files always hold every task).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "markdown"]), default="table",
              show_default=True, help="How to print: aligned table, CSV, or a Markdown pipe table.")
@click.option("--headline", is_flag=True,
              help="Print only the headline table (longest T solved by at least half the seeds).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the leaderboard CSV; the headline table goes next to it as "
                   "<name>_headline.csv [default: leaderboard.csv beside the runs CSV].")
@config_errors
def leaderboard(runs_csv, task, fmt, headline, out):
    """Aggregate the runs over seeds: one row per configuration and seq_len.

    Columns: seeds, solve rate, mean / standard deviation (ddof = 1) / standard error of the final
    loss over the memoryless baseline, median step to solve (solved runs only), mean throughput.
    The headline table gives, per configuration, the longest seq_len solved by at least half of
    its seeds. Failed runs are counted apart and left out of the statistics.

    \b
    Examples:
      seqbench leaderboard
      seqbench leaderboard --task adding --format markdown
      seqbench leaderboard --runs results/runs.csv --headline
    """
    from pathlib import Path

    from seqbench import leaderboard as lb

    out = lb.check_output(out) if out is not None else Path(runs_csv).parent / "leaderboard.csv"
    board, table = lb.build(runs_csv)  # every task: what is written
    if task is not None:
        shown_board, shown_table = lb.build(runs_csv, task)
    else:
        shown_board, shown_table = board, table
    written = lb.write(board, table, out)
    if headline:
        click.echo(lb.format_frame(shown_table, fmt), nl=False)
    elif fmt == "csv":
        click.echo(lb.format_frame(shown_board, fmt), nl=False)
    else:
        title = "Leaderboard" + (f": {task}" if task else "")
        click.echo(f"{title} (loss/base: final loss / memoryless baseline, mean over seeds; "
                   "sd with ddof 1; se = sd / sqrt(n))\n")
        click.echo(lb.format_frame(shown_board, fmt))
        click.echo("Headline: longest T solved by at least half the seeds\n")
        click.echo(lb.format_frame(shown_table, fmt), nl=False)
    click.echo(f"wrote {written[0]} and {written[1]}", err=True)
