"""Gradient-vs-lag records: probes turned into long-format rows, at initialization or in training.

One row per (probe, layer, lag), with the curve's summary (decay factor, horizon) repeated on each
of its rows so that any subset of the table stays self-describing. ``seqbench grads`` appends
to ``results/grads.csv``; ``seqbench run --probe-every N`` writes ``<run dir>/grads.csv``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from seqbench import seeding
from seqbench.cells import CellConfig, cell_class, options_label
from seqbench.model import SequenceModel, build_model
from seqbench.probe import FIT_FLOOR, UNDERFLOW, LagCurve, decay_factor, horizon_bracket, probe
from seqbench.provenance import environment
from seqbench.results import CELL_COLUMNS, append_rows
from seqbench.tasks import Batch, Task, make_task

GRADS_COLUMNS = [
    "probe_id", "run_id", "task", "variant", "seq_len", "total_steps", "query_step",
    *CELL_COLUMNS, "seed", "step", "probe_batch",
    "layer", "lag", "grad_norm", "grad_norm_median", "cell_grad_norm", "cell_grad_norm_median",
    "underflow", "decay_factor", "horizon",
    "horizon_min",  # the horizon lies in [horizon_min, horizon]: the probe's lag grid (probe.py)
    "cell_decay_factor",
    "device", "torch_version", "seqbench_version", "git_commit",
    "label",  # the spec's name for the comparison arm (RunConfig.label); "" = none
]


@dataclass
class MeasureSetup:
    """A measurement's fixed inputs: the task at one lag, the cell, the seed and one batch drawn
    from the seed stream ``stream`` (never training data), and the provenance of its rows."""

    task: Task
    seq_len: int
    cell: CellConfig
    seed: int
    batch: Batch
    label: str = ""
    #: the seed stream of the batch: each measure its own, so that none shares another's sequences
    stream: ClassVar[str] = "probe"

    @classmethod
    def create(cls, task: Task, seq_len: int, cell: CellConfig, seed: int, batch_size: int,
               device: torch.device, label: str = ""):
        # the same sequences for every measurement of this seed
        batch = task.sample(seq_len, batch_size, seeding.generator(seed, cls.stream)).to(device)
        return cls(task, seq_len, cell, seed, batch, label)

    @property
    def query_step(self) -> int:
        return self.task.query_step(self.seq_len)

    def common(self, step: int, probe_id: str, run_id: str = "") -> dict:
        """The columns every row of one measurement shares: identity, cell, seed, provenance."""
        env = environment(self.batch.inputs.device, torch.get_num_threads())
        return {
            "probe_id": probe_id,
            "run_id": run_id,
            "task": self.task.name,
            "variant": self.task.variant,
            "seq_len": self.seq_len,
            "total_steps": self.task.total_steps(self.seq_len),
            "query_step": self.query_step,
            **self.cell.to_dict(),
            "seed": self.seed,
            "step": step,
            "probe_batch": self.batch.inputs.shape[1],
            **{k: env[k] for k in ("device", "torch_version", "seqbench_version", "git_commit")},
            "label": self.label,
        }


@dataclass
class ProbeSetup(MeasureSetup):
    """What a gradient probe measures (the "probe" seed stream)."""

    def measure(self, model: SequenceModel) -> list[LagCurve]:
        return probe(model, self.task, self.batch, self.seq_len)

    def rows(self, curves: list[LagCurve], step: int, probe_id: str, run_id: str = "") -> list[dict]:
        common = self.common(step, probe_id, run_id)
        rows = []
        for curve in curves:
            bracket = horizon_bracket(curve.lags, curve.grad_norm)
            summary = {
                "layer": curve.layer,
                "decay_factor": curve.decay_factor(),
                "horizon": "" if bracket is None else bracket[1],
                "horizon_min": "" if bracket is None else bracket[0],
                "cell_decay_factor": (decay_factor(curve.lags, curve.cell_grad_norm)
                                      if curve.cell_grad_norm is not None else None),
            }
            for i, lag in enumerate(curve.lags):
                norm = float(curve.grad_norm[i])
                rows.append({
                    **common, **summary,
                    "lag": int(lag),
                    "grad_norm": norm,
                    "grad_norm_median": float(curve.grad_norm_median[i]),
                    "cell_grad_norm": (float(curve.cell_grad_norm[i])
                                       if curve.cell_grad_norm is not None else None),
                    "cell_grad_norm_median": (float(curve.cell_grad_norm_median[i])
                                              if curve.cell_grad_norm_median is not None else None),
                    "underflow": norm < UNDERFLOW,
                })
        return rows


def init_probe_id(task: Task, seq_len: int, cell: CellConfig, seed: int, batch_size: int,
                  label: str = "") -> str:
    """A stable id for a probe at initialization: the same inputs give the same id."""
    key = json.dumps([task.name, task.variant, seq_len, cell.to_dict(), seed, batch_size, label],
                     sort_keys=True)
    return "init-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def measure_at_init(task_name: str, variant: str | None, seq_len: int, cell: CellConfig, seed: int,
                    batch_size: int = 64, device: torch.device | str = "cpu",
                    label: str = "") -> list[dict]:
    """Rows of the gradient-vs-lag curves of a freshly initialized model (the weights a run with
    this seed starts from)."""
    device = torch.device(device)
    task = make_task(task_name, variant)
    task.check_seq_len(seq_len)
    cell = cell.validate()
    from seqbench.memory import check_probe

    check_probe(task_name, variant, seq_len, cell, batch_size)  # before any allocation
    model = build_model(task, cell, seeding.derive_seed(seed, "init"), seq_len).to(device)
    setup = ProbeSetup.create(task, seq_len, cell, seed, batch_size, device, label)
    probe_id = init_probe_id(task, seq_len, cell, seed, batch_size, label)
    return setup.rows(setup.measure(model), step=0, probe_id=probe_id)


class TrainingProbe:
    """Probes a training run at chosen steps into ``<run dir>/grads.csv``."""

    def __init__(self, setup: ProbeSetup, path: Path, run_id: str):
        self.setup = setup
        self.path = path
        self.run_id = run_id

    def __call__(self, step: int, model: SequenceModel) -> list[dict]:
        """Probe ``model``, append the rows to grads.csv and return them."""
        rows = self.setup.rows(self.setup.measure(model), step, f"{self.run_id}@{step}", self.run_id)
        append_rows(self.path, rows, GRADS_COLUMNS)
        return rows


def measure_spec_at_init(configs, device: torch.device | str = "cpu") -> list[dict]:
    """Rows at initialization for every distinct (task, T, cell, seed, label) of a list of
    RunConfigs (a spec's expansion): the weights each of those runs starts from."""
    rows, seen = [], set()
    for cfg in configs:
        key = (cfg.task, cfg.variant, cfg.seq_len, cfg.cell, cfg.seed, cfg.batch_size, cfg.label)
        if key not in seen:
            seen.add(key)
            rows += measure_at_init(cfg.task, cfg.variant, cfg.seq_len, cfg.cell, cfg.seed,
                                    cfg.batch_size, device, cfg.label)
    return rows


def read_grads(paths) -> pd.DataFrame:
    """Read grads CSVs: files, or folders searched for ``grads.csv`` (a results folder of runs)."""
    from seqbench.errors import ConfigError
    from seqbench.results import read_results, results_files

    files = results_files(paths, "grads.csv")
    frames = [read_results(f) for f in files]
    for f, frame in zip(files, frames):
        missing = [c for c in ("task", "seq_len", "cell", "layers", "layer", "step", "lag",
                               "grad_norm") if c not in frame.columns]
        if missing:
            raise ConfigError(f"{f} is not a grads CSV (no column {', '.join(missing)}); "
                              "seqbench grads and seqbench run --probe-every write them")
    return refit(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])


def refit(rows: pd.DataFrame) -> pd.DataFrame:
    """``decay_factor`` (and ``cell_decay_factor``) of every curve fitted again from its norms
    with the current fit (seqbench.probe.decay_factor): the norms are the observation, the
    factor a summary of them, so files written before a change of the fit (its floor,
    FIT_FLOOR) read the same as new ones. A curve is one probe's rows of one layer."""
    if "probe_id" not in rows or rows.empty:
        return rows
    rows = rows.copy()
    curve = rows.groupby(["probe_id", "layer"], sort=False).ngroup().to_numpy()
    lag = pd.to_numeric(rows["lag"], errors="coerce").to_numpy(dtype=float)
    for norm, factor in (("grad_norm", "decay_factor"), ("cell_grad_norm", "cell_decay_factor")):
        if norm not in rows or factor not in rows:
            continue
        values = pd.to_numeric(rows[norm], errors="coerce").to_numpy(dtype=float)
        rows[factor] = _fit_per_curve(curve, lag, values)[curve]
    return rows


def _fit_per_curve(curve: np.ndarray, lag: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """seqbench.probe.decay_factor for every curve at once (least squares of log norm on lag
    over the norms above FIT_FLOOR, from per-curve sums): one factor per curve index."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(norm) & (norm > FIT_FLOOR) & np.isfinite(lag)
    n_curves = int(curve.max()) + 1 if len(curve) else 0
    c, x = curve[ok], lag[ok]
    y = np.log(norm[ok])

    def total(v):
        return np.bincount(c, weights=v, minlength=n_curves)

    n = np.bincount(c, minlength=n_curves).astype(float)
    sx, sy, sxx, sxy = total(x), total(y), total(x * x), total(x * y)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = sxx - sx * sx / n
        slope = (sxy - sx * sy / n) / var
    # decay_factor's rule: NaN below 2 points or when every lag is the same (no slope)
    fine = (n >= 2) & (var > 1e-9 * np.maximum(sxx, 1.0))
    return np.where(fine, np.exp(np.where(fine, slope, 0.0)), np.nan)


def cell_grid(cells, impls, hidden=128, layers=1, nonlinearities=(), inits=("default",),
              init_gains=(1.0,), forget_biases=(), chrono=False, norms=("none",),
              residual=False) -> list[CellConfig]:
    """The cross product of the given options, each applied only to the cells it concerns (the
    cell's class says which): nonlinearities to cells with a choice of them (rnn), forget biases
    to cells with a forget gate (lstm), chrono to cells with a forget or update gate (lstm, gru),
    init schemes and gains to cells with a recurrent weight matrix, in-cell norms to the cells that
    have them; each other cell is measured as it is. Every config is validated (an option an
    implementation cannot express, such as a norm with builtin, is a ConfigError)."""
    configs = []
    for cell in cells:
        cls = cell_class(cell)
        nls = (nonlinearities or (None,)) if len(cls.nonlinearities) > 1 else (None,)
        fbs = (forget_biases or (None,)) if "forget" in cls.gate_bias else (None,)
        chrono_here = chrono and bool({"forget", "update"} & set(cls.gate_bias))
        cell_inits = inits if cls.recurrent_blocks else ("default",)
        gains = init_gains if cls.recurrent_blocks else (1.0,)
        cell_norms = norms if cls.norms else ("none",)
        for impl, nl, init, gain, fb, norm in itertools.product(impls, nls, cell_inits, gains, fbs,
                                                                  cell_norms):
            configs.append(CellConfig(
                cell=cell, impl=impl, hidden=hidden, layers=layers, nonlinearity=nl, init=init,
                init_gain=gain, forget_bias=fb, chrono=chrono_here, norm=norm,
                residual=residual,
            ).validate())
    return list(dict.fromkeys(configs))  # drop duplicates, keep order


SUMMARY_LAGS = (10, 25, 50, 100, 250, 500, 1000)


def series_name(row: dict) -> str:
    """How a curve is named in tables and legends: the spec's arm label when it has one, else the
    cell with its non-default options ('lstm (forget bias 1)')."""
    label = row.get("label")
    if isinstance(label, str) and label:
        return label
    opts = options_label(row)
    return f"{row['cell']} ({opts})" if opts else str(row["cell"])


def summarize(rows: pd.DataFrame, top_layer_only: bool = True) -> pd.DataFrame:
    """One line per (task, T, series, impl, step): the mean over seeds of the decay factor, the
    horizon, and the norm at a few lags relative to lag 0.

    The horizon is censored data: a seed whose gradient never fell below 1e-6 of its lag-0 value
    within the lags measured has no horizon, only "more than its largest lag". So the summary
    counts the seeds that reached one (``horizon_reached``, of ``seeds``), averages the horizon
    over those only (``horizon_mean_reached``), and gives the Kaplan-Meier median over all seeds
    with the others censored at their largest lag (``horizon_km_median``; empty when fewer than
    half reached it). ``horizon_exact`` is false when some seed's horizon is known only to a
    bracket of the probe's lag grid (the built-in modules' probe: ``horizon_min`` < ``horizon``).
    """
    from seqbench.stats import km_median

    df = rows.copy()
    if top_layer_only:
        df = df[df["layer"] == df["layers"] - 1]
    df["series"] = [series_name(r) for r in df.to_dict("records")]
    keys = ["task", "seq_len", "series", "impl", "step"]
    by_lag = df.sort_values(["probe_id", "layer", "lag"], kind="stable")
    lag0 = by_lag.groupby(["probe_id", "layer"])["grad_norm"].transform("first")
    df["ratio"] = df["grad_norm"] / lag0.reindex(df.index)  # rows keep their order
    df["horizon"] = pd.to_numeric(df["horizon"], errors="coerce")
    low = pd.to_numeric(df["horizon_min"], errors="coerce") if "horizon_min" in df else df["horizon"]
    df["horizon_min"] = low
    out = df.groupby(keys, sort=False).agg(
        seeds=("seed", "nunique"),
        decay_factor=("decay_factor", "mean"),
    )
    # one horizon per probe (curve): reached or censored at the largest lag measured
    curves = df.groupby(keys + ["probe_id"], sort=False).agg(
        horizon=("horizon", "first"), horizon_min=("horizon_min", "first"),
        max_lag=("lag", "max")).reset_index()
    curves["reached"] = curves["horizon"].notna()
    curves["time"] = curves["horizon"].where(curves["reached"], curves["max_lag"])
    grouped = curves.groupby(keys, sort=False)
    out["horizon_reached"] = grouped["reached"].sum().astype(int)
    out["horizon_mean_reached"] = grouped["horizon"].mean()
    out["horizon_km_median"] = grouped.apply(
        lambda g: km_median(g["time"].to_numpy(), g["reached"].to_numpy()), include_groups=False)
    out["horizon_exact"] = grouped.apply(
        lambda g: bool((g["horizon_min"] == g["horizon"])[g["reached"]].all()), include_groups=False)
    max_lag = int(df["lag"].max()) if len(df) else 0
    for lag in [k for k in SUMMARY_LAGS if k <= max_lag] + [max_lag]:
        at = df[df["lag"] == lag].groupby(keys, sort=False)["ratio"].mean()
        out[f"ratio_lag{lag}"] = at
    return out.reset_index().sort_values(["task", "seq_len", "step"], kind="stable")
