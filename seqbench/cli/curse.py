"""``seqbench curse``: the curse of memory (Zucchet & Orvieto 2024) scanned over the memory of
linear, tanh, gated and LRU recurrences (seqbench.dynamics.curse)."""

from __future__ import annotations

import click

from seqbench import denormals
from seqbench import memory as M
from seqbench.choices import DEFAULT_OUT
from seqbench.cli import cli, config_errors
from seqbench.cli.options import Choice

#: the models curse_of_memory knows (seqbench.dynamics.curse.CURSE_CELLS), without importing torch
CURSE_MODELS = ("linear", "rnn", "lstm", "lru")
#: the most white-noise steps one scan may take (each model differentiates every step)
MAX_CURSE_STEPS = 100_000


@cli.command()
@click.option("--cell", "cells", multiple=True, type=Choice(CURSE_MODELS),
              help="linear: h_t = m h_{t-1} + x_t (its closed form in `theory`); rnn: tanh "
                   "Elman RNN with W_hh = m Q; lstm: forget gate starting at m; lru: |lambda| = m "
                   "for every unit. Repeatable [default: all].")
@click.option("--memory", "memories", multiple=True, type=float,
              help="Memory m, in (0, 1): the recurrence's per-step retention. Repeatable "
                   "[default: 0.5, 0.9, 0.99].")
@click.option("--steps", type=click.IntRange(2, MAX_CURSE_STEPS), default=1000, show_default=True,
              help="White-noise steps; the sensitivity is of the last state.")
@click.option("--batch", type=click.IntRange(1, M.MAX_BATCH), default=64, show_default=True,
              help="White-noise sequences (root mean square over them).")
@click.option("--hidden", type=click.IntRange(1, M.MAX_HIDDEN), default=16, show_default=True,
              help="Units of the rnn, lstm and lru (linear has one).")
@click.option("--probes", type=click.IntRange(1, 4 * M.MAX_HIDDEN), default=16,
              show_default=True,
              help="Random directions of the estimate when a parameter has more than 64 entries "
                   "(fewer: exact).")
@click.option("--seed", type=click.IntRange(0, M.MAX_SEED), default=0, show_default=True,
              help="Seed of the white noise, the random weights and the probe directions.")
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              default=f"{DEFAULT_OUT}/curse.csv", show_default=True,
              help="CSV to append the rows to.")
@click.option("--quiet", "-q", is_flag=True, help="Do not print the table.")
@config_errors
def curse(cells, memories, steps, batch, hidden, probes, seed, out, quiet):
    """Scan the curse of memory: ||d h_T / d theta|| as the memory m -> 1; append rows to OUT.

    For each model and memory m, the norm of the derivative of the last state h_T with respect
    to the recurrent parameters theta (rnn, lstm: W_hh; linear: lambda; lru: nu_log and
    theta_log, each on its own row), root mean square over white-noise sequences, with the
    state's size and, for linear and the lru's nu_log, the closed form. Without normalization
    it grows like (1 - m)^(-3/2) (linear); the LRU keeps its memory parameter's bounded.

    \b
    Examples:
      seqbench curse --memory 0.5 --memory 0.9 --memory 0.99 --memory 0.999
      seqbench curse --cell linear --cell lru --steps 2000 -o results/curse.csv
      seqbench plot curse seqbench-results/curse.csv -o curse.png
    """
    import torch

    denormals.flush()  # seqbench.denormals
    from seqbench.dynamics.curse import CURSE_CELLS, CURSE_COLUMNS, check_curse, curse_of_memory
    from seqbench.errors import ConfigError
    from seqbench.provenance import environment
    from seqbench.results import append_rows, check_appendable

    for m in memories:
        if not 0 < m < 1:
            raise ConfigError(f"--memory must lie in (0, 1) (exclusive), got {m:g}")
    chosen = {"cells": tuple(dict.fromkeys(cells)) or CURSE_CELLS}
    if memories:  # else curse_of_memory's own default
        chosen["memories"] = tuple(dict.fromkeys(memories))
    check_curse(chosen["cells"], steps, batch, hidden, probes)  # before any file or tensor
    check_appendable(out, CURSE_COLUMNS)
    frame = curse_of_memory(**chosen, steps=steps, batch=batch, hidden=hidden, seed=seed,
                            probes=probes)
    provenance = environment(torch.device("cpu"), torch.get_num_threads())
    rows = [{**row, **provenance} for row in frame.to_dict("records")]
    append_rows(out, rows, CURSE_COLUMNS)
    if not quiet:
        shown = frame[["cell", "param", "memory", "value", "theory", "state_rms"]]
        click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    click.echo(f"{len(rows)} rows appended to {out}")
