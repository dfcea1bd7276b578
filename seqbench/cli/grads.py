"""``seqbench grads``: gradient norm against time lag at initialization."""

from __future__ import annotations

import click

from seqbench import denormals
from seqbench import memory as M
from seqbench.choices import DEFAULT_OUT
from seqbench.cli import check_spec_options, cli, config_errors
from seqbench.cli.options import cell_options, device_options, task_options


@cli.command()
@task_options
@cell_options(multiple=True)
@click.option("--seeds", type=click.IntRange(1, M.MAX_SEEDS), default=1, show_default=True,
              help="Measure seeds 0 .. N-1 (the weights runs with those seeds start from).")
@click.option("--batch-size", type=click.IntRange(1, M.MAX_BATCH), default=64, show_default=True,
              help="Sequences in the fixed probe batch.")
@device_options
@click.option("--out", type=click.Path(dir_okay=False), default=f"{DEFAULT_OUT}/grads.csv",
              show_default=True, help="CSV to append the rows to.")
@click.option("--spec", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Measure the initial weights of every run of a benchmark spec instead (its "
                   "tasks, lengths, cells, arms and seeds; with --profile).")
@click.option("--profile", default=None, help="The spec's profile [default: the spec's own].")
@click.option("--quiet", "-q", is_flag=True, help="Do not print the summary table.")
@click.pass_context
@config_errors
def grads(ctx, task, variant, seq_len, cell, impl, hidden, layers, nonlinearity, init, init_gain,
          forget_bias, chrono, norm, residual, seeds, batch_size, device, threads, out, spec,
          profile, quiet):
    """Measure ||dL/dh_t|| against the lag t* - t at initialization; append rows to OUT.

    Every combination of the repeatable options is measured for every seed; an option applies
    only to the cells it concerns (--nonlinearity to rnn, --forget-bias to lstm). The hand
    implementation (default) gives every lag from one backward pass; builtin gives about 32
    log-spaced lags through the fused kernel.

    \b
    Example:
      seqbench grads --task adding --seq-len 500 --cell rnn --cell lstm --cell gru --seeds 3
    """
    import torch

    denormals.flush()  # seqbench.denormals
    from seqbench.grads import (
        GRADS_COLUMNS,
        cell_grid,
        measure_at_init,
        measure_spec_at_init,
        summarize,
    )
    from seqbench.memory import check_probe
    from seqbench.provenance import resolve_device
    from seqbench.results import append_rows, check_appendable
    from seqbench.tasks import make_task

    check_appendable(out, GRADS_COLUMNS)
    check_spec_options(ctx, spec, profile)
    if spec is not None:
        from seqbench.spec import expand_spec

        dev = resolve_device(device)
        runs = expand_spec(spec, profile)
        for run in runs:  # every probe's memory, before the first is measured
            check_probe(run.task, run.variant, run.seq_len, run.cell, run.batch_size)
        if threads:
            torch.set_num_threads(threads)
        rows = measure_spec_at_init(runs, dev)
        what = f"{len(runs)} runs of {spec}"
    else:
        make_task(task, variant).check_seq_len(seq_len)
        configs = cell_grid(cell, impl, hidden, layers, nonlinearity, init, init_gain,
                            forget_bias, chrono, norm, residual)
        for cfg in configs:  # every probe's memory, before the first is measured
            check_probe(task, variant, seq_len, cfg.validate(), batch_size)
        dev = resolve_device(device)
        if threads:
            torch.set_num_threads(threads)
        rows = []
        for cfg in configs:
            for seed in range(seeds):
                rows += measure_at_init(task, variant, seq_len, cfg, seed, batch_size, dev)
        what = f"{len(configs)} configs x {seeds} seeds"
    append_rows(out, rows, GRADS_COLUMNS)
    if not quiet:
        import pandas as pd

        table = summarize(pd.DataFrame(rows))
        with pd.option_context("display.width", 200, "display.max_columns", 50):
            click.echo(table.drop(columns=["step"]).to_string(
                index=False, float_format=lambda v: f"{v:.3g}"))
    click.echo(f"{len(rows)} rows ({what}) appended to {out}")
