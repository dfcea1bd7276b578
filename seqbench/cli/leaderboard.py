"""``seqbench leaderboard``: aggregate runs.csv over seeds into a leaderboard and a headline table;
optionally choose tuned settings on the validation set (``--select``) and compare every arm with a
reference arm (``--against``)."""

from __future__ import annotations

import click

from seqbench.choices import DEFAULT_OUT
from seqbench.cli import cli, config_errors
from seqbench.cli.options import TASK


@cli.command()
@click.option("--runs", "runs_csv", type=click.Path(dir_okay=False), default=f"{DEFAULT_OUT}/runs.csv",
              show_default=True, help="The runs CSV to aggregate.")
@click.option("--task", type=TASK, default=None,
              help="Print this task only (the CSV files always hold every task).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "markdown"]), default="table",
              show_default=True, help="How to print: aligned table, CSV, or a Markdown pipe table.")
@click.option("--headline", is_flag=True,
              help="Print only the headline table (longest T solved by at least half the seeds).")
@click.option("--select", "select", multiple=True, metavar="KEY",
              help="Per arm and seq_len (and the other keys), keep the value of KEY (e.g. lr) "
                   "with the best validation result: the highest validation solve rate, then the "
                   "lowest validation loss ratio, then the smallest value; repeatable.")
@click.option("--against", default=None, metavar="ARM",
              help="Compare every other arm (label, or cell without labels) with ARM at the same "
                   "task and seq_len: Fisher's exact test on the solve rates, Mann-Whitney on the "
                   "loss ratios, Holm-adjusted; written to <name>_against_ARM.csv.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the leaderboard CSV; the headline table goes next to it as "
                   "<name>_headline.csv [default: leaderboard.csv beside the runs CSV].")
@config_errors
def leaderboard(runs_csv, task, fmt, headline, select, against, out):
    """Aggregate the runs over seeds: one row per configuration and seq_len.

    Columns (test set): seeds, solve rate with its 95% Wilson interval, mean final loss over the
    memoryless baseline with a 95% bootstrap interval, its standard deviation (ddof = 1) and
    standard error, the Kaplan-Meier median step to solve (unsolved runs censored at their
    budget; "-" = fewer than half solved), mean accuracy (classification tasks; "n/a" for
    regression tasks such as adding, whose runs.csv accuracy is only the fraction of sequences
    within a tolerance), mean throughput; the validation solve rate and loss ratio when the runs
    have them. The headline table gives, per configuration, the longest seq_len solved by at
    least half of its seeds ("≥ T" when nothing longer was tried). Failed runs are counted apart
    and left out of the statistics; a run (configuration and seed) finished more than once counts
    once, its last row, and a warning says how many rows repeat.

    Runs tested at other lags (run --eval-seq-len, spec key eval_seq_lens) add a length-
    generalization table: per arm and lag tested, the same statistics, written to
    <name>_lengths.csv.

    With --format csv, one table is printed: the comparison with --against, else the headline
    table with --headline, else the leaderboard.

    \b
    Examples:
      seqbench leaderboard
      seqbench leaderboard --task adding --format markdown
      seqbench leaderboard --runs results/runs.csv --headline
      seqbench leaderboard --select lr --against rnn_tanh
    """
    import warnings
    from pathlib import Path

    from seqbench import leaderboard as lb
    from seqbench.lengths import generalization

    out = lb.check_output(out if out is not None else Path(runs_csv).parent / "leaderboard.csv")
    select = tuple(select)
    board, table = lb.build(runs_csv, select=select)  # every task: what is written
    comparison = lb.build_comparison(runs_csv, against, select=select) if against is not None \
        else None
    if task is not None:
        shown_board, shown_table = lb.build(runs_csv, task, select=select)
        shown_comparison = comparison[comparison["task"] == task] if comparison is not None \
            else None
    else:
        shown_board, shown_table, shown_comparison = board, table, comparison
    with warnings.catch_warnings():  # the same runs.csv again: its damage was reported above
        warnings.simplefilter("ignore")
        lengths = generalization(runs_csv)  # every task: what is written
    written = lb.write(board, table, out, comparison, against, lengths)
    _print(lb, fmt, headline, task, select, against, shown_board, shown_table, shown_comparison)
    shown_lengths = lengths[lengths["task"] == task] if task is not None and not lengths.empty \
        else lengths
    if fmt != "csv" and not headline and not shown_lengths.empty:
        click.echo("\nLength generalization: the final models tested at other lags "
                   "(eval_seq_len; the lag trained at is seq_len; solved and loss/base at each "
                   "lag, with the intervals above)\n")
        text = lb.format_frame(shown_lengths, fmt)
        click.echo(text, nl=not text.endswith("\n"))
    click.echo(f"wrote {', '.join(map(str, written[:-1]))} and {written[-1]}", err=True)


def _print(lb, fmt, headline, task, select, against, board, table, comparison) -> None:
    if fmt == "csv":  # one table, so that the output is one CSV
        shown = comparison if comparison is not None else table if headline else board
        click.echo(lb.format_frame(shown, fmt), nl=False)
        return
    if not headline:
        title = "Leaderboard" + (f": {task}" if task else "")
        click.echo(f"{title} (test set; solved: fraction of seeds [95% Wilson interval]; "
                   "loss/base: final loss / memoryless baseline, mean over seeds [95% bootstrap "
                   "interval]; sd with ddof 1; se = sd / sqrt(n); KM median step: Kaplan-Meier, "
                   f"unsolved runs censored at their budget; {lb.ACCURACY_NOTE}; nonlinearity: "
                   "blank for cells without a choice of one)")
        if select:
            click.echo(f"{', '.join(select)} chosen per row on the validation set: "
                       f"{lb.SELECTION_RULE}")
        click.echo("")
        click.echo(lb.format_frame(board, fmt))
        click.echo("Headline: longest T solved by at least half the seeds (≥ T: nothing longer "
                   "tried)\n")
    click.echo(lb.format_frame(table, fmt), nl=False)  # alone with --headline, as the CSV would be
    if comparison is not None:
        click.echo(f"\nAgainst {against} (same task and T): Fisher's exact test on the solve "
                   "rates, Mann-Whitney on the loss ratios (rank effect: P(lower) - P(higher), "
                   "+1 = every run better), p-values Holm-adjusted per task and T\n")
        if len(comparison):
            click.echo(lb.format_frame(comparison, fmt), nl=False)
        else:
            click.echo("(no rows to compare)")
