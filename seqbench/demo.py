"""The demo: long-term-dependency failure and its fix, in about a minute on a laptop's CPU.

Two LSTMs learn delayed recall (recall the symbol shown T steps ago; 8 symbols, chance 1/8) at
T = 25: PyTorch's default LSTM, and the same LSTM with one remedy, its forget-gate bias set to 3
(an open forget gate, Gers et al. 2000) or chrono initialization (Tallec & Ollivier 2018). The
settings are the ones of the committed fixes comparison (tasks/fixes.toml, H = 64, Adam 3e-3,
3,000 steps), where the default solved 0 of 5 seeds and forget bias 3 solved 5 of 5
(results/README.md, section 4). Both runs are probed at initialization and at the end of training,
so the figure shows *why*: the default LSTM's gradient at lag T is orders of magnitude below its
lag-0 value, the remedied one's is not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from seqbench.cells import CellConfig
from seqbench.config import RunConfig

#: the remedies the demo can show, with the cell options that apply them and a line about each
FIXES = {
    "forget-bias": ("lstm_fb3", {"forget_bias": 3.0}, "forget-gate bias 3 (Gers et al. 2000)"),
    "chrono": ("lstm_chrono", {"chrono": True}, "chrono initialization (Tallec & Ollivier 2018)"),
}
#: the settings of tasks/fixes.toml's quick profile at the learning rate both LSTMs do best with
DEMO_SETTINGS = dict(task="delayed_recall", batch_size=64, lr=3e-3, steps=3000, eval_every=100)
DEMO_HIDDEN = 64


@dataclass(frozen=True)
class DemoArm:
    """One of the demo's two runs: its name, its row of runs.csv and its one-line summary."""

    name: str
    row: dict
    summary: str

    @property
    def solved(self) -> bool:
        return str(self.row["solved"]) == "True"

    def gradient_at_lag(self, grads: pd.DataFrame, step: str) -> float:
        """||dL/dh|| at the largest lag over its lag-0 value, at ``step`` (init or end)."""
        mine = grads[grads["run_id"] == self.row["run_id"]]
        at = mine[mine["step"] == (0 if step == "init" else mine["step"].max())]
        at = at.sort_values("lag")
        return float(at["grad_norm"].iloc[-1] / at["grad_norm"].iloc[0])


@dataclass(frozen=True)
class DemoResult:
    """What the demo did: its two runs, the gradient rows and the figure."""

    arms: tuple[DemoArm, DemoArm]
    grads: pd.DataFrame
    figure: Path

    def report(self) -> str:
        """The lines the demo prints: each outcome and the gradient at lag T, init and end."""
        lines = []
        for arm in self.arms:
            r = arm.row
            outcome = (f"solved at step {r['solved_step']}" if arm.solved else
                       f"not solved in {r['steps_taken']} steps")
            lines += [f"{arm.name}: {outcome}, test accuracy {float(r['accuracy']):.0%}",
                      f"    gradient at lag {r['seq_len']} / at lag 0: "
                      f"{arm.gradient_at_lag(self.grads, 'init'):.1e} at initialization, "
                      f"{arm.gradient_at_lag(self.grads, 'end'):.1e} after training"]
        lines.append(f"figure: {self.figure}  (runs: {Path(self.figure).parent.parent / 'runs.csv'})")
        return "\n".join(lines)


def read_demo(out: str | os.PathLike = "seqbench-demo") -> DemoResult:
    """The last demo recorded in ``out``: its two runs' rows (the last two of runs.csv), their
    probes and its figure, as ``run_demo`` returned them."""
    from seqbench.errors import ConfigError
    from seqbench.grads import read_grads
    from seqbench.results import read_rows

    out = Path(out)
    rows = read_rows(out / "runs.csv")[-2:] if (out / "runs.csv").is_file() else []
    names = {"lstm": "default LSTM", **{label: f"LSTM, {line}" for label, _, line in FIXES.values()}}
    if len(rows) != 2 or [r["label"] in names for r in rows] != [True, True]:
        raise ConfigError(f"{out} holds no seqbench demo (its runs.csv does not end with one)")
    arms = tuple(DemoArm(names[r["label"]], r, "") for r in rows)
    grads = read_grads([out / "runs" / r["run_id"] / "grads.csv" for r in rows])
    return DemoResult(arms, grads, out / "figures" / "demo_decay.png")


def demo_configs(fix: str = "forget-bias", seq_len: int = 25, seed: int = 0,
                 threads: int | None = None, steps: int = DEMO_SETTINGS["steps"]
                 ) -> list[tuple[str, RunConfig]]:
    """The demo's two runs, named: the default LSTM and the LSTM with ``fix``."""
    from seqbench.errors import ConfigError

    if fix not in FIXES:
        raise ConfigError(f"unknown fix {fix!r}; allowed: {', '.join(FIXES)}")
    label, options, line = FIXES[fix]
    base = RunConfig(**{**DEMO_SETTINGS, "steps": steps}, seq_len=seq_len, seed=seed,
                     cell=CellConfig(cell="lstm", hidden=DEMO_HIDDEN), probe_every=steps,
                     device="cpu", threads=threads, label="lstm")
    fixed = replace(base, cell=replace(base.cell, **options), label=label)
    return [("default LSTM", base.validate()), (f"LSTM, {line}", fixed.validate())]


def run_demo(out: str | os.PathLike = "seqbench-demo", fix: str = "forget-bias",
             seq_len: int = 25, seed: int = 0, threads: int | None = None,
             steps: int = DEMO_SETTINGS["steps"], quiet: bool = False, echo=print) -> DemoResult:
    """Train both runs into ``out`` (runs.csv and run folders, as `seqbench run`), draw
    ``out/figures/demo_decay.png`` and return what happened; ``echo`` gets each run's summary."""
    from seqbench.grads import read_grads
    from seqbench.plots import output_path
    from seqbench.plots.decay import plot_decay
    from seqbench.runner import execute_run

    out = Path(out)
    arms = []
    for name, cfg in demo_configs(fix, seq_len, seed, threads, steps):
        row, summary = execute_run(cfg, out=out, quiet=quiet)
        echo(summary)
        arms.append(DemoArm(name, row, summary))
    grads = read_grads([Path(a.row["run_dir"]) / "grads.csv" for a in arms])
    fig = plot_decay(grads, at=["init", "end"], title=(
        f"Why the default LSTM fails delayed recall at T = {seq_len} and the remedy does not:\n"
        "gradient norm against lag, at initialization and after training (one seed each)"))
    figure = output_path(out / "figures" / "demo_decay.png")
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110, bbox_inches="tight")  # the legend sits outside the axes
    return DemoResult(tuple(arms), grads, figure)
