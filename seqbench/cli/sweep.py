"""``seqbench sweep``: run a benchmark spec's grid, resumably, locally or on Ray."""

from __future__ import annotations

import click

from seqbench.cli import cli, config_errors


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--profile", "-p", default=None,
              help="Named profile of the spec (e.g. quick, full) [default: the spec's "
                   "default_profile].")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Parallel runs [default: 1 for local; all CPUs for a local Ray instance].")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=None,
              help="Torch threads per run [default: the spec's threads, else 1].")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: one Ray task per run.")
@click.option("--address", default=None,
              help="Ray cluster to submit to ('auto': the running one) [default: start a local "
                   "Ray instance]. Needs --executor ray.")
@click.option("--gpus-per-run", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Ray only: GPUs each run reserves (e.g. 1, or 0.25 to share one).")
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Directory for runs.csv and the per-run folders.")
@click.option("--retry-failed", is_flag=True,
              help="Run again the configs recorded as failed or interrupted.")
@click.option("--dry-run", "-n", is_flag=True, help="List the runs and their count; run nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No per-run summary lines.")
@config_errors
def sweep(spec, profile, workers, threads_per_worker, executor, address, gpus_per_run, out,
          retry_failed, dry_run, quiet):
    """Run every configuration of a benchmark SPEC (tasks/*.toml) not yet in OUT/runs.csv.

    Re-running the same command skips the runs already recorded, so an interrupted sweep resumes
    where it stopped. A run that fails or diverges is recorded with its status; the sweep goes on.

    \b
    Examples:
      seqbench sweep tasks/adding.toml --profile quick --workers 2
      seqbench sweep tasks/copy.toml --profile full --executor ray --address auto
      seqbench sweep tasks/fixes.toml --dry-run
    """
    from seqbench.errors import ConfigError
    from seqbench.spec import load_spec
    from seqbench.sweep import describe, plan_sweep, run_sweep

    if address is not None and executor != "ray":
        raise ConfigError("--address applies to --executor ray only")
    if gpus_per_run and executor != "ray":
        raise ConfigError("--gpus-per-run applies to --executor ray only")
    loaded = load_spec(spec)
    configs = loaded.expand(profile)
    chosen = profile if profile is not None else loaded.default_profile
    name = f"{spec}" + (f" (profile {chosen})" if chosen else "")
    plan = plan_sweep(configs, out, retry_failed=retry_failed)

    if dry_run:
        todo = {c.config_id() for c in plan.todo}
        width = len(str(len(configs)))
        for i, cfg in enumerate(configs, 1):
            cid = cfg.config_id()
            mark = "" if cid in todo else f"  (recorded: {plan.statuses[cid]})"
            click.echo(f"{i:>{width}}  {cid}  {describe(cfg)}{mark}")
        click.echo(f"{name}: {len(configs)} runs, {len(plan.done)} already recorded in "
                   f"{out}/runs.csv, {len(plan.todo)} to run")
        return

    if executor == "ray":
        from seqbench.sweep import require_ray

        require_ray()
    else:
        from seqbench.provenance import resolve_device

        for device in sorted({c.device for c in plan.todo}):
            resolve_device(device)  # --device cuda without CUDA: fail before anything runs
    if threads_per_worker is None:
        threads_per_worker = max({c.threads or 1 for c in configs} or {1})
    click.echo(f"{name}: {len(configs)} runs, {len(plan.done)} already recorded, "
               f"{len(plan.todo)} to run", err=True)
    result = run_sweep(configs, out, workers=workers, threads=threads_per_worker,
                       executor=executor, address=address, retry_failed=retry_failed,
                       gpus_per_run=gpus_per_run, report=None if quiet else click.echo)
    click.echo(result.summary(out), err=True)
    select = "".join(f" --select {k}" for k in loaded.selected(profile))
    click.echo(f"leaderboard: seqbench leaderboard --runs {out}/runs.csv{select}", err=True)
    if result.interrupted:
        raise SystemExit(128 + int(result.signal or 2))  # 130 after Ctrl-C, 143 after SIGTERM
