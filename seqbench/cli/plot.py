"""``seqbench plot``: figures from results CSVs."""

from __future__ import annotations

from pathlib import Path

import click

from seqbench.choices import DEFAULT_OUT
from seqbench.cli import cli, config_errors
from seqbench.cli.options import TASK


@cli.group()
def plot():
    """Draw figures from seqbench's CSVs (PNG by default; the -o suffix picks the format)."""


def save_figure(fig, out) -> None:
    """Save to ``out`` (format from the suffix, PNG by default), creating its folder; one line
    on stdout. The box is fitted to the figure, so legends placed outside the axes are kept."""
    from seqbench.plots import output_path

    path = output_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    click.echo(f"wrote {path}")


@plot.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", default=f"{DEFAULT_OUT}/figures/decay.png", show_default=True,
              help="Output file; PNG, SVG or PDF by its suffix.")
@click.option("--task", default=None, help="Select a task when the data holds several.")
@click.option("--seq-len", "-T", type=int, default=None, help="Select a length when it holds several.")
@click.option("--label", "labels", multiple=True,
              help="Keep only these series (arm labels or names as in the legend); repeatable.")
@click.option("--at", "at", multiple=True,
              help="Panels: init, end (each run's last probe) or a step number; repeatable "
                   "[default: one panel per training step].")
@click.option("--by-family", is_flag=True,
              help="One panel per kind of remedy, each with the plain tanh RNN as reference.")
@click.option("--reference", default=None,
              help="With --by-family: the series drawn in every panel [default: the plain tanh "
                   "RNN series with the shortest name].")
@click.option("--layer", type=click.IntRange(min=0), default=None,
              help="Layer to draw [default: the top layer of each model].")
@click.option("--cell-state", is_flag=True, help="Draw ||dL/dc_t|| (LSTM) instead of ||dL/dh_t||.")
@click.option("--select", "select", multiple=True,
              help="Keep only the probes of the runs whose setting of this key the leaderboard "
                   "selects on validation (e.g. lr); needs --runs; repeatable.")
@click.option("--runs", "runs_csv", type=click.Path(dir_okay=False), default=None,
              help="With --select: the runs CSV of the probed runs.")
@click.option("--title", default=None, help="Replace the generated title.")
@config_errors
def decay(sources, output, task, seq_len, labels, at, by_family, reference, layer, cell_state,
          select, runs_csv, title):
    """Gradient norm (log scale) against time lag.

    SOURCES are grads CSVs (`seqbench grads` writes results/grads.csv) or folders searched for the
    grads.csv of probed runs (results/runs/).

    \b
    Examples:
      seqbench plot decay results/grads.csv -o results/figures/decay_adding_T500.png
      seqbench plot decay results/runs --task delayed_recall --at init --at end
      seqbench plot decay results/fixes/runs --runs results/fixes/runs.csv --select lr --at end
    """
    from seqbench.errors import ConfigError
    from seqbench.grads import read_grads, series_name
    from seqbench.plots import output_path
    from seqbench.plots.decay import plot_decay

    path = output_path(output)  # a bad -o fails before any work
    if select and runs_csv is None:
        raise ConfigError("--select needs --runs RUNS_CSV (the runs whose probes are drawn)")
    df = read_grads(sources)
    if select:
        from seqbench.leaderboard import selected_runs

        kept = set(selected_runs(runs_csv, select, task)["run_id"].astype(str))
        df = df[df["run_id"].astype(str).isin(kept)]
        if df.empty:
            raise ConfigError(f"no probes of the selected runs of {runs_csv} in "
                              f"{', '.join(sources)}")
    if labels:
        names = [series_name(r) for r in df.to_dict("records")]
        df = df[[n in labels for n in names]]
    fig = plot_decay(df, task=task, seq_len=seq_len, layer=layer, cell_state=cell_state,
                     title=title, at=list(at) or None, by_family=by_family, reference=reference)
    save_figure(fig, path)


# -- run results: solve rate, loss / baseline, learning curves (seqbench.plots.runs) ----------------


def _runs_figure_output(output: str | None, runs_csv: str, name: str, task: str | None,
                        select=()):
    """``-o``, or ``figures/<name>[_<task>][_<keys>_selected].png`` beside the runs CSV (a figure
    of the selected configurations never overwrites the one of all of them)."""
    from seqbench.plots import output_path

    if output is None:
        parts = [name] + ([task] if task else []) + ([*select, "selected"] if select else [])
        output = Path(runs_csv).parent / "figures" / ("_".join(parts) + ".png")
    return output_path(output)


def select_option(f):
    """``--select KEY`` (repeatable), shared by the figures drawn from the leaderboard."""
    return click.option(
        "--select", "select", multiple=True, metavar="KEY",
        help="Per arm and T, draw only the value of KEY (e.g. lr) with the best validation "
             "result, as `seqbench leaderboard --select`; repeatable.")(f)


@plot.command("solve-rate")
@click.argument("runs_csv", type=click.Path(dir_okay=False), default=f"{DEFAULT_OUT}/runs.csv")
@click.option("-o", "--output", default=None,
              help="Output file; the suffix picks the format (PNG without one) "
                   "[default: figures/solve_rate.png beside RUNS_CSV].")
@click.option("--task", type=TASK, default=None, help="Draw this task only.")
@click.option("--title", default=None, help="A title over the whole figure.")
@select_option
@config_errors
def solve_rate(runs_csv, output, task, title, select):
    """Solve rate (fraction of seeds) against the lag T, one colour per cell.

    One panel per task, one line per configuration (cell, implementation, options, arm label),
    in a faint band of its 95% Wilson interval. A panel with a single T shows one bar per
    configuration instead, with the interval as an error bar and k/n solved beside it.

    \b
    Examples:
      seqbench plot solve-rate results/runs.csv -o results/figures/solve_rate.png
      seqbench plot solve-rate results/runs.csv --select lr
    """
    from seqbench.plots.runs import solve_rate_figure

    path = _runs_figure_output(output, runs_csv, "solve_rate", task, select)
    save_figure(solve_rate_figure(runs_csv, task=task, title=title, select=select), path)


@plot.command("loss")
@click.argument("runs_csv", type=click.Path(dir_okay=False), default=f"{DEFAULT_OUT}/runs.csv")
@click.option("-o", "--output", default=None,
              help="Output file; the suffix picks the format (PNG without one) "
                   "[default: figures/loss.png beside RUNS_CSV].")
@click.option("--task", type=TASK, default=None, help="Draw this task only.")
@click.option("--title", default=None, help="A title over the whole figure.")
@select_option
@config_errors
def loss(runs_csv, output, task, title, select):
    """Mean final loss / memoryless baseline against the lag T (log scale; bars: the 95% bootstrap
    interval of the mean).

    \b
    Example:
      seqbench plot loss results/runs.csv --task adding -o results/figures/loss_adding.png
    """
    from seqbench.plots.runs import loss_figure

    path = _runs_figure_output(output, runs_csv, "loss", task, select)
    save_figure(loss_figure(runs_csv, task=task, title=title, select=select), path)


@plot.command("curves")
@click.argument("sources", nargs=-1, type=click.Path(exists=True))
@click.option("-o", "--output", default=None,
              help="Output file; the suffix picks the format (PNG without one) "
                   "[default: figures/curves.png beside the runs CSV, or under seqbench-results/].")
@click.option("--task", type=TASK, default=None, help="Runs of this task (CSV).")
@click.option("--seq-len", "-T", type=int, default=None, help="Runs of this lag (CSV).")
@click.option("--cell", default=None, help="Runs of this cell (CSV).")
@click.option("--label", default=None, help="Runs of this spec arm (CSV).")
@click.option("--seed", type=int, default=None, help="Runs of this seed (CSV).")
@click.option("--metric", type=click.Choice(["loss", "accuracy"]), default="loss",
              show_default=True, help="loss: held-out loss / baseline; accuracy: held-out accuracy.")
@click.option("--title", default=None, help="Replace the generated title.")
@config_errors
def curves(sources, output, task, seq_len, cell, label, seed, metric, title):
    """Learning curves of chosen runs: a runs CSV (with filters) or run folders.

    SOURCES: one runs CSV [default: seqbench-results/runs.csv], whose finished runs matching the filters
    are drawn, or run folders (results/runs/<run id>).

    \b
    Examples:
      seqbench plot curves results/runs.csv --task adding -T 50 -o results/figures/curves.png
      seqbench plot curves results/runs/adding-T50-lstm-builtin-s0-*
    """
    from seqbench.errors import ConfigError
    from seqbench.plots import output_path
    from seqbench.plots.runs import curves_figure, run_dirs_from_csv

    sources = [Path(s) for s in sources] or [Path(DEFAULT_OUT) / "runs.csv"]
    files = [s for s in sources if not s.is_dir()]
    if files and (len(sources) > 1):
        raise ConfigError("give either one runs CSV or run folders, not both")
    filters = any(v is not None for v in (task, seq_len, cell, label, seed))
    if files:
        dirs = run_dirs_from_csv(files[0], task=task, seq_len=seq_len, cell=cell, label=label,
                                 seed=seed)
    elif filters:
        raise ConfigError("--task, --seq-len, --cell, --label and --seed select runs from a runs "
                          "CSV; with run folders, list the folders you want")
    else:
        dirs = sources
    if output is None:
        output = (files[0].parent if files else Path(DEFAULT_OUT)) / "figures" / "curves.png"
    path = output_path(output)
    save_figure(curves_figure(dirs, metric=metric, title=title), path)


@plot.command("solved")
@click.argument("runs_csv", type=click.Path(dir_okay=False), default=f"{DEFAULT_OUT}/runs.csv")
@click.option("-o", "--output", default=None,
              help="Output file; the suffix picks the format (PNG without one) "
                   "[default: figures/solved.png beside RUNS_CSV].")
@click.option("--task", type=TASK, default=None, help="Draw this task only.")
@click.option("--title", default=None, help="A title over the whole figure.")
@select_option
@config_errors
def solved(runs_csv, output, task, title, select):
    """Fraction of runs solved against the training step (1 - Kaplan-Meier survival).

    One panel per task and T, one step line per configuration. A solved run counts at the step
    the validation set first met the criterion; a run that did not solve (or diverged) is
    censored at its step budget, marked |. Where a line crosses the dotted 0.5 is the Kaplan-Meier
    median step of the leaderboard. With --select, each arm's line has the runs of the value
    chosen on validation only.

    \b
    Example:
      seqbench plot solved results/runs.csv --task adding -o results/figures/solved_adding.png
    """
    from seqbench.plots.runs import solved_figure

    path = _runs_figure_output(output, runs_csv, "solved", task, select)
    save_figure(solved_figure(runs_csv, task=task, title=title, select=select), path)


@plot.command("lengths")
@click.argument("runs_csv", type=click.Path(dir_okay=False), default=f"{DEFAULT_OUT}/runs.csv")
@click.option("-o", "--output", default=None,
              help="Output file; the suffix picks the format (PNG without one) "
                   "[default: figures/lengths.png beside RUNS_CSV].")
@click.option("--task", type=TASK, default=None, help="Draw this task only.")
@click.option("--metric", type=click.Choice(["loss", "solve_rate"]), default="loss",
              show_default=True,
              help="loss: mean final loss / memoryless baseline at each lag [95% bootstrap]; "
                   "solve_rate: fraction of seeds solved there [95% Wilson].")
@click.option("--title", default=None, help="A title over the whole figure.")
@config_errors
def lengths(runs_csv, output, task, metric, title):
    """Length generalization: each arm's final models at the lags they were tested at.

    The runs must have been tested at other lags (run --eval-seq-len, spec key eval_seq_lens).
    One panel per task and lag trained at (dotted line), one line per arm against the lag tested
    at; the same numbers as the leaderboard's length-generalization table.

    \b
    Example:
      seqbench plot lengths results/lengths/runs.csv -o results/figures/lengths.png
    """
    from seqbench.plots.lengths import lengths_figure

    path = _runs_figure_output(output, runs_csv, "lengths", task)
    save_figure(lengths_figure(runs_csv, task=task, metric=metric, title=title), path)


@plot.command("spectrum")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", default=f"{DEFAULT_OUT}/figures/spectrum.png", show_default=True,
              help="Output file; PNG, SVG or PDF by its suffix.")
@click.option("--task", default=None, help="Select a task when the data holds several.")
@click.option("--seq-len", "-T", type=int, default=None, help="Select a length when it holds several.")
@click.option("--layer", type=click.IntRange(min=0), default=None,
              help="Layer to draw [default: the top layer of each model].")
@click.option("--title", default=None, help="A title over the whole figure.")
@config_errors
def spectrum(sources, output, task, seq_len, layer, title):
    """Lyapunov spectrum per arm, and the convergence of the largest exponent over t.

    SOURCES are dynamics CSVs (`seqbench dynamics` writes seqbench-results/dynamics.csv) or
    folders searched for dynamics.csv.

    \b
    Example:
      seqbench plot spectrum seqbench-results/dynamics.csv -o spectrum.png
    """
    from seqbench.plots import output_path
    from seqbench.plots.spectrum import spectrum_figure

    path = output_path(output)  # a bad -o fails before any work
    save_figure(spectrum_figure(sources, task=task, seq_len=seq_len, layer=layer, title=title),
                path)


@plot.command("curse")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-o", "--output", default=f"{DEFAULT_OUT}/figures/curse.png", show_default=True,
              help="Output file; PNG, SVG or PDF by its suffix.")
@click.option("--title", default=None, help="A title over the whole figure.")
@config_errors
def curse(sources, output, title):
    """The curse of memory: ||d h_T / d theta|| against 1 / (1 - m), closed forms dashed.

    SOURCES are curse CSVs (`seqbench curse` writes seqbench-results/curse.csv) or folders
    searched for curse.csv.

    \b
    Example:
      seqbench plot curse seqbench-results/curse.csv -o curse.png
    """
    from seqbench.plots import output_path
    from seqbench.plots.curse import curse_figure

    path = output_path(output)  # a bad -o fails before any work
    save_figure(curse_figure(sources, title=title), path)
