"""What seqbench offers, as tables: the tasks (variants, lags, memoryless baselines), the cells
(implementations, activations, which remedies apply) and the remedies (options and papers).

``seqbench list`` prints them. Every entry is read from the registries and the classes
themselves (a plugin task or cell is listed like seqbench's own), except the remedies' papers,
which are written once here.
"""

from __future__ import annotations

from dataclasses import dataclass

from seqbench.choices import INITS, NORMS
from seqbench.errors import ConfigError


@dataclass(frozen=True)
class Remedy:
    """A remedy for long-lag failure: the run option that applies it, its values and its source."""

    option: str
    values: str
    what: str
    source: str
    applies: str  # which cells: a predicate's name over the cell class, see ``applies_to``


#: the remedies `seqbench run` offers (seqbench.init, seqbench.normcells, seqbench.train), with the
#: paper each comes from (docs/references.md)
REMEDIES = (
    Remedy("--init", ", ".join(i for i in INITS if i != "default"),
           "recurrent-weight initialization (identity and irnn also zero the biases)",
           "Glorot & Bengio 2010 (xavier); He et al. 2015 (he); Saxe et al. 2013 (orthogonal); "
           "Le et al. 2015 (identity, irnn)", "recurrent_blocks"),
    Remedy("--init-gain", "> 0", "scale of the recurrent weights after --init",
           "Pascanu et al. 2013 (spectral radius and exploding/vanishing gradients)",
           "recurrent_blocks"),
    Remedy("--forget-bias", "a number", "forget-gate bias: an open forget gate remembers",
           "Gers et al. 2000; Jozefowicz et al. 2015 (bias 1)", "forget"),
    Remedy("--chrono", "on/off", "gate biases drawn from the lag the task needs",
           "Tallec & Ollivier 2018", "chrono"),
    Remedy("--nonlinearity", "relu, leaky_relu, elu, linear", "activation of the Elman RNN",
           "Le et al. 2015 (relu)", "nonlinearities"),
    Remedy("--norm", ", ".join(n for n in NORMS if n != "none"),
           "normalization inside the cell (hand-written cells)",
           "Ba et al. 2016 (layer); Cooijmans et al. 2017 (batch)", "norms"),
    Remedy("--residual", "on/off", "residual connections between stacked layers (--layers >= 2)",
           "He et al. 2016; Wu et al. 2016 (stacked LSTMs)", "all"),
    Remedy("--clip, --clip-mode", "threshold, norm/value", "gradient clipping",
           "Pascanu et al. 2013", "all"),
)


def applies_to(remedy: Remedy, cls) -> bool:
    """Whether ``remedy`` can be given for a cell of class ``cls`` (what CellConfig.validate
    accepts)."""
    gates = set(getattr(cls, "gate_bias", {}))
    return {
        "recurrent_blocks": getattr(cls, "recurrent_blocks", 0) > 0,
        "forget": "forget" in gates,
        "chrono": bool({"forget", "update"} & gates),
        "nonlinearities": len(getattr(cls, "nonlinearities", ())) > 1,
        "norms": bool(getattr(cls, "norms", ())),
        "all": True,
    }[remedy.applies]


def task_rows(seq_len: int = 100) -> list[dict]:
    """One row per task and variant: its lags and memoryless baseline at ``seq_len``."""
    from seqbench.tasks import make_task
    from seqbench.tasks.registry import registry

    rows = []
    for entry in registry().values():
        task = make_task(entry.name)
        for variant in type(task).variants:
            task = make_task(entry.name, variant)
            row = {"task": entry.name, "variant": variant,
                   "default": variant == type(task).variants[0], "kind": task.kind,
                   "seq_len": seq_len}
            try:
                task.check_seq_len(seq_len)
            except ConfigError:
                row.update(total_steps=None, baseline_loss=None, lags=(
                    f"T >= {task.min_seq_len()}" if seq_len < task.min_seq_len() else "other T"))
            else:
                lag_min, lag_max = task.lag_range(seq_len)
                row.update(total_steps=task.total_steps(seq_len), lags=(
                    str(lag_max) if lag_min == lag_max else f"{lag_min}-{lag_max}"))
                try:  # a task backed by a dataset needs its files for its baseline
                    row["baseline_loss"] = task.baseline_loss(seq_len)
                except ConfigError:
                    row["baseline_loss"] = None
            row["summary"] = entry.summary
            rows.append(row)
    return rows


def cell_rows() -> list[dict]:
    """One row per cell: implementations, activations, normalizations and the remedies that
    apply to it."""
    from seqbench.cells.registry import cell_class, registry

    rows = []
    for entry in registry().values():
        cls = cell_class(entry.name)
        impls = ("builtin", "hand") if getattr(cls, "builtin", None) else ("hand",)
        rows.append({
            "cell": entry.name,
            "impls": ", ".join(impls),
            "nonlinearities": ", ".join(getattr(cls, "nonlinearities", ())),
            "norms": ", ".join(getattr(cls, "norms", ())) or "-",
            "remedies": ", ".join(r.option for r in REMEDIES if applies_to(r, cls)),
            "summary": entry.summary,
        })
    return rows


def remedy_rows() -> list[dict]:
    """One row per remedy: its option, values, what it does, its papers and which cells take it."""
    from seqbench.cells.registry import cell_class, registry

    classes = {name: cell_class(name) for name in registry()}
    return [{"option": r.option, "values": r.values, "what": r.what, "source": r.source,
             "cells": ", ".join(n for n, cls in classes.items() if applies_to(r, cls))}
            for r in REMEDIES]
