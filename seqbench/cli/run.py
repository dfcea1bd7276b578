"""``seqbench run``: train one model on one task."""

from __future__ import annotations

import click

from seqbench import denormals
from seqbench import memory as M
from seqbench.choices import CLIP_MODES, DEFAULT_OUT, OPTIMIZERS, PROBES
from seqbench.cli import cli, config_errors, options_given
from seqbench.cli.options import Choice, cell_options, device_options, task_options


@cli.command()
@task_options
@cell_options(multiple=False)
@click.option("--optimizer", type=Choice(OPTIMIZERS), default="adam", show_default=True,
              help="adam; rmsprop (decay 0.9, Arjovsky 2016); sgd (plain, Le 2015).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Learning rate.")
@click.option("--clip", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Gradient clipping threshold; 0 turns it off.")
@click.option("--clip-mode", type=click.Choice(CLIP_MODES), default="norm", show_default=True,
              help="norm: rescale the global gradient norm; value: clamp each entry.")
@click.option("--floss", type=click.IntRange(0, M.MAX_HIDDEN), default=0, show_default=True,
              help="Gradient flossing (Engelken 2023): push the K largest Lyapunov exponents of "
                   "every layer toward 0, by adding --floss-weight x their mean square (QR "
                   "method, differentiated) to the loss for the first --floss-steps steps; "
                   "K <= --hidden; 0 = off.")
@click.option("--floss-weight", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Weight of the flossing loss (needs --floss).")
@click.option("--floss-steps", type=click.IntRange(1, M.MAX_STEPS), default=500,
              show_default=True,
              help="Floss during the first N training steps (the author's 500; needs --floss).")
@click.option("--batch-size", type=click.IntRange(1, M.MAX_BATCH), default=64, show_default=True)
@click.option("--steps", type=click.IntRange(1, M.MAX_STEPS), default=10_000, show_default=True,
              help="Training-step budget.")
@click.option("--eval-every", type=click.IntRange(1, M.MAX_STEPS), default=100, show_default=True,
              help="Evaluate on the validation set every N steps.")
@click.option("--eval-size", type=click.IntRange(1, M.MAX_SET), default=512, show_default=True,
              help="Validation sequences (stopping and selection).")
@click.option("--test-size", type=click.IntRange(1, M.MAX_SET), default=1024, show_default=True,
              help="Test sequences, evaluated once at the end: the reported result.")
@click.option("--until-solved/--no-until-solved", default=True, show_default=True,
              help="Stop at the first evaluation where the validation set is solved.")
@click.option("--solved-evals", type=click.IntRange(1, M.MAX_STEPS), default=1, show_default=True,
              help="The validation set counts as solved once it meets the criterion at N "
                   "consecutive evaluations (a margin against stopping on a noisy crossing that "
                   "the test set then misses); 1 = the first solved evaluation.")
@click.option("--match-params", type=click.IntRange(0, M.MAX_PARAMS), default=0, show_default=True,
              help="Choose the hidden size so the model has about N parameters (replaces "
                   "--hidden); 0 = off.")
@click.option("--probe-every", type=click.IntRange(0, M.MAX_STEPS), default=0, show_default=True,
              help="Gradient-vs-lag probe at step 0, every N steps and at the end, into the "
                   "run folder's grads.csv; 0 = off. Does not change the run.")
@click.option("--probe", "probes", type=Choice(PROBES), multiple=True,
              help="What each probe of --probe-every measures (repeatable): gradient (the "
                   "gradient against the lag, grads.csv) or the dynamics of seqbench dynamics: "
                   "lyapunov, jacobian, sensitivity (dynamics.csv, along a fixed batch of 16 "
                   "sequences) [default: gradient].")
@click.option("--eval-seq-len", "eval_seq_lens", type=click.IntRange(1, M.MAX_SEQ_LEN), multiple=True,
              help="Also test the final model at this lag (length generalization; repeatable): "
                   "rows in the run folder's lengths.csv.")
@click.option("--seed", type=click.IntRange(0, M.MAX_SEED), default=0, show_default=True)
@device_options
@click.option("--out", type=click.Path(file_okay=False), default=DEFAULT_OUT, show_default=True,
              help="Directory for runs.csv and the per-run folders.")
@click.option("--checkpoint-every", type=click.IntRange(0, M.MAX_STEPS), default=0, show_default=True,
              help="Save model, optimizer and RNG state every N steps (atomically); 0 = only "
                   "when interrupted.")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False),
              default=None, help="Continue the interrupted run in this run folder (its config "
                                 "is used; only --device, --threads, --quiet may be given).")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None,
              help="Also write TensorBoard events (losses, accuracy, gradient vs lag) into "
                   "DIR/<run id>; needs the tensorboard package (seqbench[tensorboard]).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
@config_errors
def run(ctx, task, variant, seq_len, cell, impl, hidden, layers, nonlinearity, init, init_gain,
        forget_bias, chrono, norm, residual, optimizer, lr, clip, clip_mode, floss, floss_weight,
        floss_steps, batch_size, steps,
        eval_every, eval_size, test_size, until_solved, solved_evals, match_params, probe_every, probes,
        eval_seq_lens, seed, device,
        threads, out, checkpoint_every, resume_dir, tensorboard, quiet):
    """Train one model on one task and append its result to OUT/runs.csv.

    \b
    Examples:
      seqbench run --task adding --cell lstm --seq-len 500
      seqbench run --task copy --cell gru --impl hand --seq-len 100 --steps 3000 --seed 3
      seqbench run --task delayed_recall --cell lstm --seq-len 200 --probe-every 250
      seqbench run --task delayed_recall --cell rnn --impl hand --seq-len 25 --floss 32
      seqbench run --task adding --cell rnn --seq-len 100 --probe-every 500 \\
          --probe gradient --probe lyapunov --probe jacobian
    """
    from seqbench.cells import CellConfig
    from seqbench.config import RunConfig
    from seqbench.errors import ConfigError
    from seqbench.provenance import resolve_device
    from seqbench.runner import RunInterrupted, execute_run, resume_run

    denormals.flush()  # a vanishing gradient in denormals is 10x slower (seqbench.denormals)

    if resume_dir is not None:
        given = options_given(ctx, ("resume_dir", "device", "threads", "quiet", "tensorboard"))
        if given:
            raise ConfigError(f"--resume takes the run's own config; drop {given[0]} "
                              "(allowed with --resume: --device, --threads, --tensorboard, "
                              "--quiet)")
        if device != "auto":
            resolve_device(device)
        try:
            _, summary = resume_run(resume_dir, quiet=quiet, handle_signals=True,
                                    device=device if device != "auto" else None, threads=threads,
                                    tensorboard=tensorboard)
        except RunInterrupted as stop:
            click.echo(stop.summary)
            ctx.exit(stop.exit_code)
        click.echo(summary)
        return
    from click.core import ParameterSource

    if match_params and ctx.get_parameter_source("hidden") == ParameterSource.COMMANDLINE:
        raise ConfigError("--match-params chooses the hidden size; drop --hidden (or --match-params)")
    cell_cfg = CellConfig(cell=cell, impl=impl, hidden=hidden, layers=layers,
                          nonlinearity=nonlinearity, init=init, init_gain=init_gain,
                          forget_bias=forget_bias, chrono=chrono, norm=norm, residual=residual)
    cfg = RunConfig(task=task, variant=variant, seq_len=seq_len, cell=cell_cfg,
                    optimizer=optimizer, lr=lr, clip=clip,
                    clip_mode=clip_mode, floss=floss, floss_weight=floss_weight,
                    floss_steps=floss_steps, batch_size=batch_size, steps=steps,
                    eval_every=eval_every, eval_size=eval_size, test_size=test_size,
                    until_solved=until_solved, solved_evals=solved_evals, match_params=match_params,
                    probe_every=probe_every, eval_seq_lens=eval_seq_lens, probes=probes,
                    seed=seed, device=device, threads=threads).validate()
    resolve_device(cfg.device)  # fail before anything is written
    if [p for p in cfg.probes if p != "gradient"]:  # the dynamics probes' memory, before training
        from seqbench.dynamics.records import TRAINING_BATCH, Options, check_dynamics

        check_dynamics(cfg.task, cfg.variant, cfg.seq_len, cfg.cell, TRAINING_BATCH,
                       Options(measures=tuple(p for p in cfg.probes if p != "gradient")))
    try:
        _, summary = execute_run(cfg, out=out, quiet=quiet, checkpoint_every=checkpoint_every,
                                 handle_signals=True, tensorboard=tensorboard)
    except RunInterrupted as stop:
        click.echo(stop.summary)
        ctx.exit(stop.exit_code)
    click.echo(summary)
