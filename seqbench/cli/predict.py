"""``seqbench predict``: does the gradient at initialization (each run's step-0 probe), or the
hidden-state dynamics at initialization (Lyapunov exponent, Jacobian norm), predict which runs
solve? ROC AUC and rank correlation per measure (seqbench.predict)."""

from __future__ import annotations

import click

from seqbench.cli import cli, config_errors
from seqbench.cli.options import TASK


@cli.command()
@click.argument("runs_csv", type=click.Path(dir_okay=False))
@click.option("--select", "select", multiple=True, metavar="KEY",
              help="Keep only the runs of the setting of KEY (e.g. lr) the leaderboard selects "
                   "per arm and task on the validation set; repeatable.")
@click.option("--task", type=TASK, default=None, help="Only this task's runs.")
@click.option("--by", "by", type=click.Choice(["task"]), default=None,
              help="One table per task, then the pooled one.")
@click.option("--resample", type=click.Choice(["runs", "config"]), default="runs",
              show_default=True,
              help="Bootstrap unit of the AUC interval: runs (stratified by outcome) or whole "
                   "configurations (arm x task x lr, all their seeds: the seeds of one arm share "
                   "their measure, so this interval is the honest, wider one).")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv"]), default="table",
              show_default=True, help="How to print: aligned table, Markdown pipe table, or CSV.")
@click.option("--dynamics", "dynamics", type=click.Path(dir_okay=False), default=None,
              metavar="FILE",
              help="Dynamics at initialization for the runs without a dynamics.csv of their "
                   "own: a CSV of `seqbench dynamics --spec SPEC`, joined to the runs by "
                   "initial model (task, variant, T, cell columns, seed).")
@click.option("-o", "--output", default=None,
              help="Also draw each measure at init against the outcome into this figure "
                   "(PNG, SVG or PDF by its suffix).")
@config_errors
def predict(runs_csv, select, task, by, resample, dynamics, fmt, output):
    """Which initialization-time measure predicts which runs solve?

    RUNS_CSV is a runs CSV whose runs were probed from step 0 (seqbench run --probe-every N:
    <run folder>/grads.csv). Per finished run, from its step-0 probe, top layer: decay_factor,
    abs_log_decay (|ln decay|: distance from 1), log10_ratio_lag_T (log10 of the norm at the
    largest lag over lag 0) and horizon (not reached: ranked above every reached one, tied);
    from its step-0 dynamics (<run folder>/dynamics.csv of seqbench run --probe lyapunov
    --probe jacobian, else --dynamics FILE), top layer: lyapunov_max (the largest Lyapunov
    exponent) and jacobian_norm (the median over the sequence of ||J_t||_2). Per measure:
    runs, solved (test set), medians, the ROC AUC for solved (P(a solved run's value > an
    unsolved run's), ties half; < 0.5: lower values go with solving) with a 95%
    bootstrap interval (2,000 resamples, seed 0), and Spearman's rho with the time to solve
    (unsolved runs last, tied) with scipy's p (independent runs assumed).

    \b
    Examples:
      seqbench predict results/fixes/runs.csv --select lr --by task
      seqbench predict results/fixes/runs.csv --select lr --resample config -o predict.png
      seqbench predict results/fixes/runs.csv --select lr --by task --resample config \\
          --dynamics results/fixes/dynamics_init.csv
    """
    from seqbench import predict as pr
    from seqbench.plots import output_path

    path = output_path(output) if output is not None else None  # a bad -o fails before any work
    table, frame, missing = pr.predict(runs_csv, select, task, by_task=by == "task",
                                       resample=resample, dynamics=dynamics)
    if path is not None:  # before printing: a folder that cannot be made is the one error line
        path.parent.mkdir(parents=True, exist_ok=True)
        pr.figure(frame, table).savefig(path, dpi=130, bbox_inches="tight")
    if fmt == "csv":
        click.echo(pr.format_table(table, fmt), nl=False)
    else:
        unit = ("whole configurations (arm x task x lr, with all their seeds)"
                if resample == "config" else "runs, stratified by outcome")
        what = ("Gradient and dynamics at initialization" if set(table["measure"])
                & set(pr.DYNAMICS_MEASURES) else "Gradient at initialization")
        click.echo(f"{what} (step 0, top layer) against solving (test set)"
                   f"; {len(frame)} finished runs"
                   + (f", {', '.join(select)} selected on validation" if select else "")
                   + f". AUC: P(solved run's value > unsolved run's), ties half, 0.5 = no "
                   f"information, < 0.5 = lower values solve; 95% bootstrap interval over {unit}, "
                   "2,000 resamples, seed 0. Spearman rho: measure vs time to solve (unsolved runs"
                   " last, tied); p assumes independent runs. horizon: not reached = above every "
                   "reached one (tied).\n")
        click.echo(pr.format_table(table, fmt), nl=False)
    if missing:
        click.echo(f"{missing} finished run(s) left out: no step-0 measurement (grads.csv, "
                   "dynamics.csv or --dynamics)", err=True)
    if path is not None:
        click.echo(f"wrote {path}", err=True)  # stderr: stdout stays the table (or one CSV)
