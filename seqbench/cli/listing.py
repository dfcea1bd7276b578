"""``seqbench list``: the tasks, cells and remedies seqbench offers (seqbench.catalog)."""

from __future__ import annotations

import click

from seqbench import memory as M
from seqbench.cli import cli, config_errors

SECTIONS = ("tasks", "cells", "remedies")


def _table(rows: list[dict], fmt: str) -> str:
    """Rows as an aligned table, a Markdown table or CSV (empty values shown as '-')."""
    import csv
    import io

    from seqbench.tables import render

    header = list(rows[0])
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def text(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else ""
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    numeric = [all(isinstance(r[h], (int, float)) and not isinstance(r[h], bool) or r[h] is None
                   for r in rows) for h in header]
    return render(header, [[text(r[h]) for h in header] for r in rows], numeric,
                  "markdown" if fmt == "markdown" else "table")


@cli.command("list")
@click.argument("what", type=click.Choice(("all",) + SECTIONS), default="all")
@click.option("--seq-len", "-T", type=click.IntRange(1, M.MAX_SEQ_LEN), default=100, show_default=True,
              help="The lag at which the tasks' lags and memoryless baselines are given.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "csv"]), default="table",
              show_default=True, help="csv prints one section: name it (tasks, cells, remedies).")
@config_errors
def list_(what, seq_len, fmt):
    """List the tasks (variants, lags, memoryless baseline at T), the cells (implementations,
    activations, the remedies that apply) and the remedies (options, papers, cells).

    \b
    Examples:
      seqbench list
      seqbench list tasks -T 500
      seqbench list remedies --format markdown
    """
    from seqbench import catalog
    from seqbench.errors import ConfigError

    if fmt == "csv" and what == "all":
        raise ConfigError("--format csv prints one table: name it (seqbench list tasks, cells "
                          "or remedies)")
    tables = {"tasks": lambda: catalog.task_rows(seq_len), "cells": catalog.cell_rows,
              "remedies": catalog.remedy_rows}
    shown = SECTIONS if what == "all" else (what,)
    for i, name in enumerate(shown):
        if fmt != "csv":
            heading = f"{name} (lags and memoryless baseline loss at T = {seq_len})" \
                if name == "tasks" else name
            click.echo(("\n" if i else "") + (f"## {heading}\n" if fmt == "markdown" else
                                               f"{heading}:"))
        click.echo(_table(tables[name](), fmt), nl=False)
