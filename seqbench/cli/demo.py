"""``seqbench demo``: the point of seqbench in about a minute (seqbench.demo)."""

from __future__ import annotations

import click

from seqbench import memory as M
from seqbench.cli import cli, config_errors


@cli.command()
@click.option("--fix", type=click.Choice(["forget-bias", "chrono"]), default="forget-bias",
              show_default=True,
              help="The remedy set against the default LSTM: forget-gate bias 3 (Gers et al. "
                   "2000) or chrono initialization (Tallec & Ollivier 2018).")
@click.option("--seq-len", "-T", type=click.IntRange(1, M.MAX_SEQ_LEN), default=25, show_default=True,
              help="The lag of delayed recall.")
@click.option("--steps", type=click.IntRange(1, M.MAX_STEPS), default=3000, show_default=True,
              help="Training-step budget of each run.")
@click.option("--seed", type=click.IntRange(0, M.MAX_SEED), default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1, M.MAX_THREADS), default=None,
              help="Torch CPU threads [default: torch's choice].")
@click.option("--out", type=click.Path(file_okay=False), default="seqbench-demo",
              show_default=True, help="Directory for runs.csv, the run folders and the figure.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@config_errors
def demo(fix, seq_len, steps, seed, threads, out, quiet):
    """Train a default LSTM and a remedied one on delayed recall at a lag the default cannot
    learn; print both outcomes and draw their gradient-vs-lag figure, at initialization and after
    training (about a minute on a 2-core CPU).

    \b
    Examples:
      seqbench demo
      seqbench demo --fix chrono --seed 1
    """
    from pathlib import Path

    from seqbench import denormals
    from seqbench.demo import run_demo
    from seqbench.results import RUN_COLUMNS, check_appendable
    from seqbench.tasks.delayed_recall import DelayedRecallTask

    denormals.flush()
    check_appendable(Path(out) / "runs.csv", RUN_COLUMNS)  # a bad --out is one line, said first
    symbols = DelayedRecallTask.n_symbols
    click.echo(f"Delayed recall at T = {seq_len} (recall the symbol seen {seq_len} steps ago; "
               f"{symbols} symbols, chance {1 / symbols:.1%}):\n"
               "the default LSTM against one remedy, one seed each")
    result = run_demo(out=out, fix=fix, seq_len=seq_len, seed=seed, threads=threads, steps=steps,
                      quiet=quiet, echo=lambda line: None)
    click.echo(result.report())
