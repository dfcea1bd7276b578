"""``seqbench run``: train one model on one task."""

from __future__ import annotations

import click

from seqbench.choices import CELLS, DEVICES, IMPLS, NONLINEARITIES, TASKS
from seqbench.cli import cli, config_errors


@cli.command()
@click.option("--task", type=click.Choice(TASKS), default="adding", show_default=True,
              help="Which task to train on.")
@click.option("--variant", default=None,
              help="Task variant. adding: halves (default), anywhere; copy: arjovsky (default), tcn; "
                   "delayed_recall: noisy (default), blank.")
@click.option("--seq-len", "-T", type=click.IntRange(min=1), default=100, show_default=True,
              help="The lag T the task is named by (total sequence steps are recorded too).")
@click.option("--cell", type=click.Choice(CELLS), default="lstm", show_default=True)
@click.option("--impl", type=click.Choice(IMPLS), default="builtin", show_default=True,
              help="builtin: torch.nn module (cuDNN / oneDNN); hand: hand-written twin.")
@click.option("--hidden", type=click.IntRange(min=1), default=128, show_default=True,
              help="Hidden units per layer.")
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--nonlinearity", type=click.Choice(NONLINEARITIES), default=None,
              help="Activation of the rnn cell [default: tanh]; builtin allows tanh and relu.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Adam learning rate.")
@click.option("--clip", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Gradient-norm clipping threshold; 0 turns it off.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--steps", type=click.IntRange(min=0), default=10_000, show_default=True,
              help="Training-step budget.")
@click.option("--eval-every", type=click.IntRange(min=1), default=100, show_default=True,
              help="Evaluate on the held-out set every N steps.")
@click.option("--eval-size", type=click.IntRange(min=1), default=512, show_default=True,
              help="Held-out sequences.")
@click.option("--until-solved/--no-until-solved", default=True, show_default=True,
              help="Stop at the first evaluation that meets the solved criterion.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="auto picks CUDA when present.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch CPU threads [default: torch's choice].")
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Directory for runs.csv and the per-run folders.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@config_errors
def run(task, variant, seq_len, cell, impl, hidden, layers, nonlinearity, lr, clip, batch_size,
        steps, eval_every, eval_size, until_solved, seed, device, threads, out, quiet):
    """Train one model on one task and append its result to OUT/runs.csv.

    \b
    Examples:
      seqbench run --task adding --cell lstm --seq-len 500
      seqbench run --task copy --cell gru --impl hand --seq-len 100 --steps 3000 --seed 3
    """
    from seqbench.cells import CellConfig
    from seqbench.config import RunConfig
    from seqbench.errors import ConfigError

    if nonlinearity is not None and cell != "rnn":
        raise ConfigError(f"--nonlinearity applies to --cell rnn only, not {cell!r}")
    cell_cfg = CellConfig(cell=cell, impl=impl, hidden=hidden, layers=layers,
                          nonlinearity=nonlinearity or "tanh")
    cfg = RunConfig(task=task, variant=variant, seq_len=seq_len, cell=cell_cfg, lr=lr, clip=clip,
                    batch_size=batch_size, steps=steps, eval_every=eval_every,
                    eval_size=eval_size, until_solved=until_solved, seed=seed, device=device,
                    threads=threads).validate()
    from seqbench.provenance import resolve_device
    from seqbench.runner import execute_run

    resolve_device(cfg.device)  # fail before anything is written
    _, summary = execute_run(cfg, out=out, quiet=quiet)
    click.echo(summary)
