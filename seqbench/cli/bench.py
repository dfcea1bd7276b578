"""``seqbench bench``: time the cells (ms per training step, hand / builtin, probe cost, 2T / T)."""

from __future__ import annotations

import click

from seqbench import denormals
from seqbench import memory as M
from seqbench.choices import DEFAULT_OUT, DEVICES, IMPLS
from seqbench.cli import BadInput, cli, config_errors
from seqbench.cli.options import CELL, TASK


@cli.command()
@click.option("--cell", type=CELL, multiple=True,
              default=("rnn", "lstm", "gru"), show_default=True,
              help="Cells to time (repeatable): any registered cell or package.module:ClassName.")
@click.option("--impl", type=click.Choice(IMPLS), multiple=True, default=IMPLS, show_default=True,
              help="Implementations to time (repeatable); the ratio needs builtin.")
@click.option("--seq-len", "-T", type=click.IntRange(1, M.MAX_SEQ_LEN), multiple=True, default=(100, 1000),
              show_default=True, help="Lags T to time (repeatable); 2T is timed too for the scaling.")
@click.option("--batch", type=click.IntRange(1, M.MAX_BATCH), default=64, show_default=True)
@click.option("--hidden", type=click.IntRange(1, M.MAX_HIDDEN), default=128, show_default=True)
@click.option("--layers", type=click.IntRange(1, M.MAX_LAYERS), default=1, show_default=True)
@click.option("--task", type=TASK, default="adding", show_default=True,
              help="Task whose batches are fed.")
@click.option("--repeats", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Timed rounds per variant (the median is reported).")
@click.option("--warmup", type=click.IntRange(0, 1000), default=1, show_default=True,
              help="Untimed calls per variant before timing.")
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Also time one gradient probe per implementation.")
@click.option("--dynamics", "dynamics", multiple=True,
              type=click.Choice(["lyapunov", "jacobian", "sensitivity"]),
              help="Also time one measurement of this seqbench.dynamics measure per "
                   "implementation, as `seqbench run --probe` takes it (k = 8 exponents; lags 1, "
                   "10, 100), at T only (repeatable): its ms and its ratio to a training step.")
@click.option("--scaling/--no-scaling", default=True, show_default=True,
              help="Also time 2T (for the 2T / T ratio).")
@click.option("--against", type=CELL, default=None, metavar="CELL",
              help="Also time this cell's training step (its built-in module where it has one) "
                   "in every group: ratio_to_against, e.g. --against lstm.")
@click.option("--cuda-graph/--no-cuda-graph", default=True, show_default=True,
              help="On CUDA, replay hand's training step from a captured CUDA graph.")
@click.option("--threads", type=click.IntRange(1, M.MAX_THREADS), default=None,
              help="Torch CPU threads [default: torch's choice].")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="auto picks CUDA when present.")
@click.option("--out", type=click.Path(dir_okay=False), default=f"{DEFAULT_OUT}/bench.csv",
              show_default=True, help="CSV the rows are appended to.")
@click.option("--sweep-runs", type=click.IntRange(0, M.SWEEP_CONFIRM), default=0, show_default=True,
              help="Instead of the step timings: time N small runs through `seqbench sweep`'s "
                   "local executor as 2 workers x 1 thread and as 1 worker x 2 threads (task, "
                   "cells, impls, shortest T, batch, hidden from the other options).")
@click.option("--per-gpu", type=click.IntRange(2, M.MAX_WORKERS), default=None,
              help="With --sweep-runs on CUDA: time N runs packed on each GPU (`seqbench sweep "
                   "--per-gpu N`) against one run per GPU at a time, instead of the CPU layouts.")
@click.option("--sweep-steps", type=click.IntRange(1, M.MAX_STEPS), default=100, show_default=True,
              help="Training steps per run of --sweep-runs.")
@click.option("--sweep-out", type=click.Path(dir_okay=False), default=f"{DEFAULT_OUT}/bench_sweep.csv",
              show_default=True, help="CSV the --sweep-runs rows are appended to.")
@click.option("--quiet", "-q", is_flag=True, help="No per-group progress lines on stderr.")
@config_errors
def bench(cell, impl, seq_len, batch, hidden, layers, task, repeats, warmup, probe, dynamics,
          scaling, against, cuda_graph, threads, device, out, sweep_runs, per_gpu, sweep_steps, sweep_out,
          quiet):
    """Time a training step of each cell x implementation x T; append to OUT.

    Hand and builtin are timed in turn in one run (warm-up first, median of repeats), so their
    ratio is fair on a busy machine; compare ratios, not absolute times, across runs.

    \b
    Examples:
      seqbench bench
      seqbench bench --cell lstm --seq-len 100 --seq-len 1000 --batch 64 --hidden 128
      seqbench bench --cell lru --cell mingru --against lstm -T 1000 -T 5000 --no-probe
      seqbench bench --sweep-runs 12 --seq-len 100
      seqbench bench --sweep-runs 16 --device cuda --per-gpu 8 --cell lstm --impl builtin -T 500
      seqbench bench --cell lstm -T 500 --batch 16 --threads 1 --no-scaling \\
          --dynamics lyapunov --dynamics jacobian
    """
    from seqbench.bench import BENCH_COLUMNS, BenchConfig, format_table, run_bench

    denormals.flush()  # timings as the runs see them (seqbench.denormals)
    from seqbench.provenance import resolve_device
    from seqbench.results import append_rows, check_appendable

    cfg = BenchConfig(cells=tuple(dict.fromkeys(cell)), impls=tuple(dict.fromkeys(impl)),
                      seq_lens=tuple(dict.fromkeys(seq_len)), batch=batch, hidden=hidden,
                      layers=layers, repeats=repeats, warmup=warmup, threads=threads, device=device,
                      task=task, probe=probe, scaling=scaling, cuda_graph=cuda_graph,
                      against=against, dynamics=tuple(dict.fromkeys(dynamics))).validate()
    if per_gpu and not sweep_runs:
        raise BadInput("--per-gpu times packed sweep runs: it needs --sweep-runs N")
    if per_gpu:  # the GPU layouts: check_packing says when there is no CUDA device
        return _sweep_bench(cfg, sweep_runs, sweep_steps, sweep_out, quiet, per_gpu)
    resolve_device(cfg.device)  # fail before any work
    if sweep_runs:
        return _sweep_bench(cfg, sweep_runs, sweep_steps, sweep_out, quiet)
    check_appendable(out, BENCH_COLUMNS)

    def on_group(rows):
        if not quiet:
            r = rows[0]
            parts = ", ".join(f"{x['impl']} {x['ms_step']:.1f} ms" for x in rows)
            click.echo(f"{r['cell']} T={r['seq_len']}: {parts} (load {r['load_before']:.1f})",
                       err=True)

    rows = run_bench(cfg, on_group=on_group)
    click.echo(format_table(rows))
    append_rows(out, rows, BENCH_COLUMNS)
    click.echo(f"{len(rows)} rows appended to {out}")


def _sweep_bench(cfg, runs: int, steps: int, out: str, quiet: bool, per_gpu: int = 0) -> None:
    from seqbench.bench import SWEEP_COLUMNS, format_sweep_table, run_sweep_bench

    denormals.flush()
    from seqbench.results import append_rows, check_appendable

    if cfg.threads is not None:
        raise BadInput("--sweep-runs sets the threads of its layouts: --threads does not apply")
    if per_gpu and cfg.device == "cpu":
        raise BadInput("--per-gpu packs runs on a GPU: it needs --device cuda (or auto on a "
                       "machine with CUDA), not --device cpu")
    if not per_gpu and cfg.device == "cuda":
        raise BadInput("--sweep-runs on CUDA compares packed runs with one at a time: give "
                       "--per-gpu N (N >= 2)")
    check_appendable(out, SWEEP_COLUMNS)

    def on_layout(row):
        if not quiet:
            layout = (f"{row['per_gpu']} run(s) per GPU" if row.get("per_gpu") else
                      f"{row['workers']} worker(s) x {row['threads']} thread(s)")
            click.echo(f"{layout}: {row['runs']} runs in {row['wall_s']:.1f} s "
                       f"(load {row['load_before']:.1f})", err=True)

    rows = run_sweep_bench(cfg, runs, steps, on_layout=on_layout, per_gpu=per_gpu)
    click.echo(format_sweep_table(rows))
    append_rows(out, rows, SWEEP_COLUMNS)
    click.echo(f"{len(rows)} rows appended to {out}")
