"""``seqbench compare``: two runs side by side (seqbench.compare)."""

from __future__ import annotations

import click

from seqbench.cli import cli, config_errors


@cli.command()
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", default="compare.png", show_default=True,
              help="The figure of both learning curves; PNG, SVG or PDF by its suffix.")
@click.option("--no-figure", is_flag=True, help="Print the tables only.")
@click.option("--metric", type=click.Choice(["loss", "accuracy"]), default="loss",
              show_default=True, help="The curves' y axis: validation loss / baseline, or accuracy.")
@click.option("--environment", is_flag=True,
              help="Also list device and thread settings that differ.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown"]), default="table",
              show_default=True)
@config_errors
def compare(run_a, run_b, output, no_figure, metric, environment, fmt):
    """Compare two runs: the settings that differ, their final metrics side by side and their
    learning curves on one figure.

    RUN_A and RUN_B are run folders (results/runs/<run id>).

    \b
    Example:
      seqbench compare results/runs/adding-T50-lstm-builtin-s0-* results/runs/adding-T50-gru-builtin-s0-*
    """
    from seqbench.compare import compare_figure, differences, load_run, metric_rows
    from seqbench.plots import output_path
    from seqbench.tables import render

    path = None if no_figure else output_path(output)  # a bad -o fails before any work
    a, b = load_run(run_a), load_run(run_b)
    header = ["", f"A: {a.name}", f"B: {b.name}"]
    diff = differences(a, b, environment)
    click.echo("settings that differ:" if diff else "settings: identical")
    if diff:
        click.echo(render(header, [list(r) for r in diff], [False] * 3, fmt), nl=False)
    click.echo("final metrics (test set unless named val_):")
    click.echo(render(header, [list(r) for r in metric_rows(a, b)], [False, True, True], fmt),
               nl=False)
    if path is not None:
        import matplotlib

        matplotlib.use("Agg")
        fig = compare_figure(a, b, metric)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=130, bbox_inches="tight")
        click.echo(f"wrote {path}")
