"""``seqbench published``: published results next to ours, with agreement stated per row."""

from __future__ import annotations

import click

from seqbench.cli import cli, config_errors


@cli.command()
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), default="tasks/papers.toml",
              show_default=True, help="A spec with [published.<arm>] tables.")
@click.option("--profile", "-p", default=None,
              help="The profile whose runs count [default: the spec's default_profile].")
@click.option("--runs", "runs_csv", type=click.Path(dir_okay=False),
              default="results/papers/runs.csv", show_default=True,
              help="The runs CSV of that profile's sweep (missing: every row says 'not run').")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the full table [default: published.csv beside the runs CSV].")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv"]), default="table",
              show_default=True, help="How to print it.")
@config_errors
def published(spec_path, profile, runs_csv, out, fmt):
    """Published numbers against ours: one row per published result of the spec's arms.

    Each row gives the paper and where in it, the published test loss and what it means (solved,
    partial, or at the memoryless baseline), our test loss over seeds (median and range) and
    solve count, and whether the outcomes agree. The CSV has every column, including what the
    paper ran and how our setting differs.

    \b
    Examples:
      seqbench sweep tasks/papers.toml --workers 2 --out results/papers
      seqbench published
      seqbench published --format markdown --profile paper --runs results/papers_gpu/runs.csv
    """
    import os
    from pathlib import Path

    from seqbench import published as pub
    from seqbench.leaderboard import check_output
    from seqbench.spec import load_spec

    table = pub.compare(load_spec(spec_path), runs_csv, profile)
    path = check_output(out if out is not None else Path(runs_csv).parent / "published.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    table.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, path)
    click.echo(pub.format_table(table, fmt), nl=False)
    if fmt != "csv":
        click.echo(f"\n{pub.agreement_counts(table)}")
    click.echo(f"wrote {path}", err=True)
