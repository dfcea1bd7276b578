"""``seqbench sweep``: run a benchmark spec's grid, resumably, locally or on Ray."""

from __future__ import annotations

import click

from seqbench import memory as M
from seqbench.choices import DEFAULT_OUT, DEVICES
from seqbench.cli import SeqbenchGroup, cli, config_errors
from seqbench.cli.options import Choice


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--profile", "-p", default=None,
              help="Named profile of the spec (e.g. quick, full) [default: the spec's "
                   "default_profile].")
@click.option("--workers", "-j", type=click.IntRange(1, M.MAX_WORKERS), default=None,
              help="Parallel runs [default: 1 for local; all CPUs for a local Ray instance].")
@click.option("--threads-per-worker", type=click.IntRange(1, M.MAX_THREADS), default=None,
              help="Torch threads per run [default: the spec's threads, else 1].")
@click.option("--executor", type=Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: one Ray task per run.")
@click.option("--address", default=None,
              help="Ray cluster to submit to ('auto': the running one) [default: start a local "
                   "Ray instance]. Needs --executor ray.")
@click.option("--gpus-per-run", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Ray only: GPUs each run reserves (e.g. 1, or 0.25 to share one).")
@click.option("--device", type=Choice(DEVICES), default=None,
              help="Device of every run, overriding the spec's (not part of a run's identity) "
                   "[default: the spec's].")
@click.option("--per-gpu", type=click.IntRange(1, M.MAX_WORKERS), default=None,
              help="Local executor on CUDA: pack N runs on each GPU (N x GPUs worker processes, "
                   "each pinned to one GPU); instead of --workers.")
@click.option("--out", type=click.Path(file_okay=False), default=DEFAULT_OUT, show_default=True,
              help="Directory for runs.csv and the per-run folders.")
@click.option("--checkpoint-every", type=click.IntRange(0, M.MAX_STEPS), default=0,
              show_default=True,
              help="Each run saves its state every N steps, so that a run stopped mid-way (Ctrl-C, "
                   "a killed session, a GPU lent for minutes) continues from there when the same "
                   "command runs again; 0 = runs in flight when the sweep stops start over. Not "
                   "part of a run's identity. A run whose folder holds a checkpoint continues "
                   "from it in any case.")
@click.option("--retry-failed", is_flag=True,
              help="Run again the configs recorded as failed or interrupted.")
@click.option("--dry-run", "-n", is_flag=True,
              help="List the runs, count them and their training steps, and estimate the wall "
                   "time from a short timing on this device; run nothing.")
@click.option("--no-estimate", is_flag=True, help="With --dry-run: count only, time nothing.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a spec setting for every run (repeatable), e.g. --set steps=200; "
                   "seeds=N runs seeds 0..N-1. Runs with changed values get their own config "
                   "ids, so they are not taken for the spec's recorded runs.")
@click.option("--seq-len", "-T", "seq_lens", type=click.IntRange(1, M.MAX_SEQ_LEN), multiple=True,
              help="Only the runs with this lag T (repeatable).")
@click.option("--arm", "arms", multiple=True, metavar="NAME",
              help="Only the runs of this arm of the spec (repeatable; its [[arms]] name).")
@click.option("--limit", type=click.IntRange(1, M.MAX_SET), default=None,
              help="Run at most N of the runs not yet recorded (the first N, in grid order); "
                   "the same command again runs the next N.")
@click.option("--yes", "-y", is_flag=True,
              help=f"Go ahead with a grid of more than {M.SWEEP_CONFIRM:,} runs (counted from "
                   "the grid before it is expanded).")
@click.option("--quiet", "-q", is_flag=True, help="No per-run summary lines.")
@config_errors
def sweep(spec, profile, workers, threads_per_worker, executor, address, gpus_per_run, device,
          per_gpu, out, checkpoint_every, retry_failed, dry_run, no_estimate, sets, seq_lens, arms,
          limit, yes, quiet):
    """Run every configuration of a benchmark SPEC (tasks/*.toml) not yet in OUT/runs.csv.

    Re-running the same command skips the runs already recorded, so an interrupted sweep resumes
    where it stopped; with --checkpoint-every, its runs in flight continue from their last saved
    step. A run that fails or diverges is recorded with its status; the sweep goes on.

    \b
    Examples:
      seqbench sweep tasks/adding.toml --profile quick --workers 2
      seqbench sweep tasks/adding.toml --profile full --device cuda --per-gpu 4
      seqbench sweep tasks/copy.toml --profile full --executor ray --address auto
      seqbench sweep tasks/fixes.toml --dry-run
      seqbench sweep tasks/adding.toml --set steps=200 --set seeds=2 --seq-len 100 --limit 4
      seqbench sweep tasks/papers.toml --arm lezcano_copy1000_exprnn --arm rusch_adding500_cornn
      seqbench sweep tasks/long.toml --profile cpu --checkpoint-every 500
    """
    from dataclasses import replace
    from pathlib import Path

    from seqbench.errors import ConfigError
    from seqbench.spec import load_spec, parse_overrides
    from seqbench.sweep import check_checkpointing, check_packing, plan_sweep, run_sweep

    if address is not None and executor != "ray":
        raise ConfigError("--address applies to --executor ray only")
    check_checkpointing(checkpoint_every, executor)
    if gpus_per_run and executor != "ray":
        raise ConfigError("--gpus-per-run applies to --executor ray only")
    if no_estimate and not dry_run:
        raise ConfigError("--no-estimate applies to --dry-run only")
    gpu_ids = check_packing(per_gpu, executor, workers) if per_gpu else []
    loaded = load_spec(spec)
    overrides = parse_overrides(sets)
    count = loaded.count(profile, overrides=overrides)  # before expanding: a huge grid is slow
    if count > M.SWEEP_CONFIRM:  # said first, before the slow part (a small grid's line below)
        if not yes:
            raise ConfigError(f"{spec}: the grid has {count:,} runs (more than "
                              f"{M.SWEEP_CONFIRM:,}); add --yes to expand and run them")
        click.echo(f"{spec}: {count:,} runs in the grid; expanding them...", err=True)
    configs = loaded.expand(profile, overrides=overrides)
    if seq_lens:
        lags = sorted({c.seq_len for c in configs})
        configs = [c for c in configs if c.seq_len in seq_lens]
        if not configs:
            raise ConfigError(f"{spec}: no run has --seq-len {', '.join(map(str, seq_lens))}; "
                              f"allowed: {', '.join(map(str, lags))}")
    if arms:
        names = list(dict.fromkeys(c.label for c in configs if c.label))
        unknown = [a for a in arms if a not in names]
        if unknown:
            raise ConfigError(f"{spec}: no arm named {', '.join(unknown)}"
                              + (" among the runs left by --seq-len" if seq_lens else "")
                              + f"; allowed: {', '.join(names) or 'none (the spec has no arms)'}")
        configs = [c for c in configs if c.label in arms]
    if device is not None:  # the device is not part of a run's identity: recorded runs still count
        configs = [replace(cfg, device=device) for cfg in configs]
    if per_gpu and any(cfg.device == "cpu" for cfg in configs):
        raise ConfigError("--per-gpu packs runs on GPUs, but the runs' device is cpu; allowed: "
                          "--device cuda or auto")
    chosen = profile if profile is not None else loaded.default_profile
    name = f"{spec}" + (f" (profile {chosen})" if chosen else "")
    plan = plan_sweep(configs, out, retry_failed=retry_failed)
    if limit is not None and len(plan.todo) > limit:  # the recorded ones, and the first N others
        keep = {c.config_id() for c in plan.todo[:limit]} | set(plan.statuses)
        left = len(plan.todo) - limit
        configs = [c for c in configs if c.config_id() in keep]
        plan = plan_sweep(configs, out, retry_failed=retry_failed)
        name += f" (--limit {limit}: {left} more not run now)"
    if threads_per_worker is None:
        threads_per_worker = max({c.threads or 1 for c in configs} or {1})

    if dry_run:
        _dry_run(configs, plan, name, out, executor, workers, threads_per_worker, per_gpu,
                 gpu_ids, estimate=not no_estimate)
        return

    from seqbench.results import RUN_COLUMNS, check_appendable

    check_appendable(Path(out) / "runs.csv", RUN_COLUMNS)  # writable, before any run starts
    if executor == "ray":
        from seqbench.sweep import require_ray

        require_ray()
    else:
        from seqbench.provenance import resolve_device

        for run_device in sorted({c.device for c in plan.todo}):
            resolve_device(run_device)  # --device cuda without CUDA: fail before anything runs
    packing = f", {per_gpu} per GPU on {len(gpu_ids)} GPU(s)" if per_gpu else ""
    say = _Say()
    say(f"{name}: {len(configs)} runs, {len(plan.done)} already recorded, "
        f"{len(plan.todo)} to run{packing}", err=True)
    result = run_sweep(configs, out, workers=workers, threads=threads_per_worker,
                       executor=executor, address=address, retry_failed=retry_failed,
                       gpus_per_run=gpus_per_run, per_gpu=per_gpu or 0,
                       gpu_count=len(gpu_ids) or None, report=None if quiet else say,
                       checkpoint_every=checkpoint_every)
    say(result.summary(out), err=True)
    select = "".join(f" --select {k}" for k in loaded.selected(profile))
    say(f"leaderboard: seqbench leaderboard --runs {out}/runs.csv{select}", err=True)
    if result.interrupted:
        raise SystemExit(128 + int(result.signal or 2))  # 130 after Ctrl-C, 143 after SIGTERM


class _Say:
    """click.echo for a sweep: once a reader of its output went away (``seqbench sweep ... |
    head``), lines are dropped and the sweep goes on; its exit status is the sweep's."""

    def __init__(self):
        self.closed: set[bool] = set()  # err=False: stdout, err=True: stderr

    def __call__(self, line: str, err: bool = False) -> None:
        if err in self.closed:
            return
        try:
            click.echo(line, err=err)
        except (BrokenPipeError, ValueError):  # ValueError: a closed file
            import sys

            self.closed.add(err)
            SeqbenchGroup.drop_output([sys.stderr if err else sys.stdout])


def _dry_run(configs, plan, name, out, executor, workers, threads, per_gpu, gpu_ids,
             estimate: bool) -> None:
    """List the runs, count them and their steps; unless told not to, time and estimate them."""
    from dataclasses import replace

    from seqbench.estimate import resolve_devices
    from seqbench.runner import checkpoint_step, checkpointed_run_dir
    from seqbench.sweep import describe

    if estimate and plan.todo:
        resolve_devices(plan.todo)  # --device cuda without CUDA: say so before listing
    todo = {c.config_id() for c in plan.todo}
    done_steps = {}  # config id -> the step its checkpoint holds (the run continues from there)
    for cfg in plan.todo:
        folder = checkpointed_run_dir(out, cfg)
        step = checkpoint_step(folder) if folder is not None else None
        if step is not None:
            done_steps[cfg.config_id()] = min(step, cfg.steps)
    width = len(str(len(configs)))
    for i, cfg in enumerate(configs, 1):
        cid = cfg.config_id()
        mark = "" if cid in todo else f"  (recorded: {plan.statuses[cid]})"
        if cid in done_steps:
            mark = f"  (continues from its checkpoint at step {done_steps[cid]:,})"
        click.echo(f"{i:>{width}}  {cid}  {describe(cfg)}{mark}")
    left = [replace(cfg, steps=max(cfg.steps - done_steps.get(cfg.config_id(), 0), 1))
            for cfg in plan.todo]  # what is left of each run to train
    steps = sum(cfg.steps for cfg in left)
    resumed = f"; {len(done_steps)} continue from a checkpoint" if done_steps else ""
    click.echo(f"{name}: {len(configs)} runs, {len(plan.done)} already recorded in "
               f"{out}/runs.csv, {len(plan.todo)} to run ({steps:,} training steps{resumed})")
    if estimate and plan.todo:
        _estimate(left, executor, workers, threads, per_gpu, gpu_ids)


def _estimate(todo, executor, workers, threads, per_gpu, gpu_ids) -> None:
    import os

    from seqbench import denormals
    from seqbench.estimate import estimate_sweep, format_groups

    denormals.flush()  # time the steps as the workers will run them (seqbench.denormals)

    if per_gpu:  # N workers on each GPU
        parallel, gpus = per_gpu * len(gpu_ids), len(gpu_ids)
    elif executor == "ray":  # a local instance's CPUs, `threads` per task; every visible GPU
        import torch

        parallel = max(1, (workers or os.cpu_count() or 1) // threads)
        gpus = max(1, torch.cuda.device_count())
    else:  # local workers without --per-gpu all use the default GPU
        parallel, gpus = workers or 1, 1
    click.echo("timing one run of each group of runs with the same speed (a few training steps "
               "each)...", err=True)
    result = estimate_sweep(todo, workers=parallel, threads=threads, gpus=gpus)
    click.echo(format_groups(result))
    click.echo(result.summary(parallel, gpus))
