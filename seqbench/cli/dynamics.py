"""``seqbench dynamics``: Lyapunov spectra, Jacobian singular values and parameter sensitivity at
initialization (seqbench.dynamics)."""

from __future__ import annotations

import click

from seqbench import denormals
from seqbench import memory as M
from seqbench.choices import DEFAULT_OUT
from seqbench.cli import check_spec_options, cli, config_errors
from seqbench.cli.options import Choice, cell_options, device_options, task_options

#: the most exponents, top singular values or sensitivity directions one may ask for
MAX_DIRECTIONS = 4 * M.MAX_HIDDEN


@cli.command()
@task_options
@cell_options(multiple=True)
@click.option("--seeds", type=click.IntRange(1, M.MAX_SEEDS), default=1, show_default=True,
              help="Measure seeds 0 .. N-1 (the weights runs with those seeds start from).")
@click.option("--batch-size", type=click.IntRange(1, M.MAX_BATCH), default=None,
              help="Sequences of the task measured along (the 'dynamics' seed stream) "
                   "[default: 8; with --spec 16, the batch of `seqbench run --probe`].")
@click.option("--measure", "measures", multiple=True,
              type=Choice(["lyapunov", "jacobian", "sensitivity"]),
              help="lyapunov: the largest Lyapunov exponents (QR method); jacobian: singular "
                   "values of d s_t*/d s_t*-k and ||J_t||_2 along the sequence; sensitivity: "
                   "||d h_t/d theta_rec|| (the curse of memory). Repeatable [default: all].")
@click.option("--exponents", "-k", type=click.IntRange(1, MAX_DIRECTIONS), default=8,
              show_default=True, help="Lyapunov exponents to compute (at most the state width).")
@click.option("--lag", "lags", multiple=True, type=click.IntRange(1, M.MAX_SEQ_LEN),
              help="Lag k of the Jacobian products d s_t*/d s_t*-k, 1 <= k <= t* (repeatable) "
                   "[default: 1, 10, 100, those up to t*].")
@click.option("--top", type=click.IntRange(1, MAX_DIRECTIONS), default=4, show_default=True,
              help="Singular values by power iteration when the state is wider than 256 "
                   "(narrower states get all of them, exactly).")
@click.option("--probes", type=click.IntRange(1, MAX_DIRECTIONS), default=16, show_default=True,
              help="Random directions of the sensitivity's estimate when the recurrent "
                   "parameters have more than 64 entries (fewer: exact).")
@click.option("--warmup", type=click.IntRange(0, M.MAX_SEQ_LEN), default=0, show_default=True,
              help="Steps the Lyapunov frame aligns over before the exponents are averaged.")
@device_options
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              default=f"{DEFAULT_OUT}/dynamics.csv", show_default=True,
              help="CSV to append the rows to.")
@click.option("--spec", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Measure the initial weights of every run of a benchmark spec instead (its "
                   "tasks, lengths, cells, arms and seeds; with --profile): the rows each run's "
                   "step-0 `--probe` would write, for `seqbench predict --dynamics`.")
@click.option("--profile", default=None, help="The spec's profile [default: the spec's own].")
@click.option("--quiet", "-q", is_flag=True, help="Do not print the summary table.")
@click.pass_context
@config_errors
def dynamics(ctx, task, variant, seq_len, cell, impl, hidden, layers, nonlinearity, init,
             init_gain, forget_bias, chrono, norm, residual, seeds, batch_size, measures,
             exponents, lags, top, probes, warmup, device, threads, out, spec, profile, quiet):
    """Measure the hidden-state dynamics at initialization; append rows to OUT.

    Every layer is a map s_t = f(s_{t-1}, x_t) of its full state (h; h and c for lstm; real and
    imaginary parts for lru) along the task's sequences, differentiated with the weights held
    fixed; builtin cells are measured on their hand twin (same weights, checked to agree).
    Every combination of the repeatable cell options is measured for every seed.

    \b
    Examples:
      seqbench dynamics --task adding --seq-len 1000 --cell lstm --cell rnn --seeds 5
      seqbench dynamics --task adding -T 200 --cell rnn --init orthogonal --init-gain 0.5 \\
          --init-gain 1.5 --measure lyapunov --exponents 16
      seqbench dynamics --spec tasks/fixes.toml --profile quick --measure lyapunov \\
          --measure jacobian -o results/fixes/dynamics_init.csv
      seqbench plot spectrum seqbench-results/dynamics.csv -o spectrum.png

    With --spec, every distinct initial model (task, T, cell, seed) of each arm is measured
    once, along the batch of `seqbench run --probe` (16 sequences); arms with in-cell
    normalization are skipped (said on stderr).
    """
    import torch

    denormals.flush()  # seqbench.denormals
    from seqbench.dynamics.records import (
        DYNAMICS_COLUMNS,
        MEASURES,
        TRAINING_BATCH,
        Options,
        check_dynamics,
        measure_at_init,
    )
    from seqbench.errors import ConfigError
    from seqbench.grads import cell_grid
    from seqbench.provenance import resolve_device
    from seqbench.results import append_rows, check_appendable
    from seqbench.tasks import make_task

    check_appendable(out, DYNAMICS_COLUMNS)
    check_spec_options(ctx, spec, profile, ("batch_size", "measures", "exponents", "lags",
                                            "top", "probes", "warmup"))
    options = Options(measures=tuple(dict.fromkeys(measures)) or MEASURES, exponents=exponents,
                      lags=tuple(lags) or None, top=top, probes=probes, warmup=warmup).check()
    if spec is not None:
        return _spec(spec, profile, options, batch_size or TRAINING_BATCH, device, threads, out,
                     quiet)
    batch_size = batch_size or 8
    the_task = make_task(task, variant)
    the_task.check_seq_len(seq_len)
    if "jacobian" in options.measures:
        options.lags_for(the_task.query_step(seq_len))  # a lag beyond t* fails before any work
    configs = cell_grid(cell, impl, hidden, layers, nonlinearity, init, init_gain, forget_bias,
                        chrono, norm, residual)
    for cfg in configs:
        if cfg.norm != "none":
            raise ConfigError("seqbench dynamics measures cells without in-cell normalization "
                              "(batch norm mixes the sequences of a batch); drop --norm")
        check_dynamics(task, variant, seq_len, cfg, batch_size, options)
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    rows = []
    for cfg in configs:
        for seed in range(seeds):
            rows += measure_at_init(task, variant, seq_len, cfg, seed, batch_size, dev,
                                    options=options)
    append_rows(out, rows, DYNAMICS_COLUMNS)
    if not quiet:
        _print_summary(rows)
    click.echo(f"{len(rows)} rows ({len(configs)} configs x {seeds} seeds) appended to {out}")


def _print_summary(rows: list[dict]) -> None:
    import pandas as pd

    from seqbench.dynamics.records import summarize

    if not rows:
        return
    table = summarize(pd.DataFrame(rows))
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        click.echo(table.drop(columns=["step"]).to_string(
            index=False, float_format=lambda v: f"{v:.3g}"))


def _spec(spec, profile, options, batch_size, device, threads, out, quiet) -> None:
    """``--spec``: the initial weights of every run of a spec (seqbench.dynamics.records.
    measure_spec_at_init), one row set per distinct initial model and arm."""
    import torch

    from seqbench.dynamics.records import DYNAMICS_COLUMNS, measure_spec_at_init
    from seqbench.errors import ConfigError
    from seqbench.provenance import resolve_device
    from seqbench.results import append_rows
    from seqbench.spec import expand_spec

    dev = resolve_device(device)
    runs = expand_spec(spec, profile)
    if threads:
        torch.set_num_threads(threads)

    def progress(i, n, cfg):
        if not quiet:
            click.echo(f"[{i + 1}/{n}] {cfg.task} T={cfg.seq_len} {cfg.label or cfg.cell.cell} "
                       f"seed {cfg.seed}", err=True)

    rows, skipped = measure_spec_at_init(runs, options, batch_size, dev, on_config=progress)
    for cfg in skipped:
        click.echo(f"skipped {cfg.label or cfg.cell.cell} on {cfg.task}: in-cell normalization "
                   f"(--norm {cfg.cell.norm}) has no per-sequence map", err=True)
    if not rows:
        raise ConfigError(f"no run of {spec} can be measured (every arm has in-cell "
                          "normalization)")
    append_rows(out, rows, DYNAMICS_COLUMNS)
    if not quiet:
        _print_summary(rows)
    models = len({r["probe_id"] for r in rows})
    click.echo(f"{len(rows)} rows ({models} initial models of {len(runs)} runs of {spec}) "
               f"appended to {out}")
