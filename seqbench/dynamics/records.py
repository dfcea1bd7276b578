"""Dynamics records: the measures of seqbench.dynamics.measures as tidy long-format rows.

One row per observation, keyed by ``measure``:

=====================  =========================================================================
measure                one row per ... (``value``: the batch statistic)
=====================  =========================================================================
``lyapunov``           exponent ``index`` i (0 = the largest), ``t`` = the last step; the batch
                       mean of lambda_i (per step, natural log), ``value_median`` its median
``lyapunov_running``   step ``t`` (at most ``RUNNING_POINTS`` evenly spaced steps): the batch
                       mean of the running estimate of lambda_1 after t steps
``jacobian_sv``        (lag ``lag``, singular value ``index``): s_i(d s_{t*} / d s_{t*-lag}),
                       ``t`` = t*, batch mean and median; ``exact`` false: top few by power
                       iteration
``step_norm``          step ``t``: ||J_t||_2, batch mean and median
``sensitivity``        step ``t`` (at most ``RUNNING_POINTS``): ||d h_t / d theta_rec||_F, root
                       mean square over the batch (``value``; its square is the quantity the
                       curse-of-memory formulas give) and median; ``param`` names theta_rec;
                       ``exact`` false: a Hutchinson estimate with ``probes`` directions
=====================  =========================================================================

Each row also has the provenance and cell columns of grads.csv (seqbench.grads) and
``layer``. ``seqbench dynamics`` appends to ``seqbench-results/dynamics.csv`` with
seqbench.results.append_rows (one locked write; a failed write leaves the file as it was).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from seqbench import seeding
from seqbench.cells import CellConfig
from seqbench.dynamics import measures as M
from seqbench.dynamics.state import hand_stack, layer_maps, next_input, run_layer
from seqbench.errors import ConfigError
from seqbench.grads import MeasureSetup
from seqbench.results import CELL_COLUMNS
from seqbench.tasks import Batch, Task, make_task

MEASURES = ("lyapunov", "jacobian", "sensitivity")
#: the seed streams of the probe batch and of the random directions (frames, Hutchinson probes)
STREAM, DIRECTIONS_STREAM = "dynamics", "dynamics-directions"
DEFAULT_EXPONENTS = 8
DEFAULT_LAGS = (1, 10, 100)
DEFAULT_TOP = 4
DEFAULT_PROBES = 16
#: sequences of the dynamics batch of ``seqbench run --probe`` (every probe of a run measures along
#: the same batch) and, by default, of ``seqbench dynamics --spec``: so that the rows the spec
#: measurement writes for a run's configuration are the rows its step-0 probe would have written
TRAINING_BATCH = 16
#: steps at which ||J_t||_2 is measured (evenly spaced; every step of a shorter sequence)
NORM_POINTS = 16
#: at most this many steps of a curve over t (running exponent, sensitivity) are written
RUNNING_POINTS = 200

DYNAMICS_COLUMNS = [
    "probe_id", "run_id", "task", "variant", "seq_len", "total_steps", "query_step",
    *CELL_COLUMNS, "seed", "step", "probe_batch",
    "measure", "layer", "index", "lag", "t", "value", "value_median",
    "exact", "param", "probes", "warmup",
    "device", "torch_version", "seqbench_version", "git_commit",
    "label",
]


@dataclass
class Options:
    """What to measure and how (the CLI's options)."""

    measures: tuple[str, ...] = MEASURES
    exponents: int = DEFAULT_EXPONENTS
    lags: tuple[int, ...] | None = None  # None: DEFAULT_LAGS up to t*
    top: int = DEFAULT_TOP
    probes: int = DEFAULT_PROBES
    warmup: int = 0
    norm_points: int = NORM_POINTS

    def check(self) -> Options:
        bad = [m for m in self.measures if m not in MEASURES]
        if bad or not self.measures:
            raise ConfigError(f"unknown measure {bad[0] if bad else '(none)'!r}; allowed: "
                              f"{', '.join(MEASURES)}")
        for name in ("exponents", "top", "probes", "norm_points"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be at least 0, got {self.warmup}")
        return self

    def lags_for(self, query_step: int) -> tuple[int, ...]:
        """The lags measured: the given ones (each must lie in 1 .. t*), or DEFAULT_LAGS up to t*."""
        if self.lags is None:
            return tuple(k for k in DEFAULT_LAGS if k <= query_step)
        bad = [k for k in self.lags if not 1 <= k <= query_step]
        if bad:
            raise ConfigError(f"--lag {bad[0]} is outside 1 .. {query_step} (the query step t* "
                              "of this task and length: products end at t*)")
        return tuple(sorted(set(self.lags)))


@dataclass
class LayerResult:
    layer: int
    spectrum: M.Spectrum | None = None
    products: list[M.Product] = field(default_factory=list)
    norm_steps: np.ndarray | None = None
    norms: np.ndarray | None = None  # (len(norm_steps), B)
    norms_exact: bool = True  # the state is at most EXACT_MAX_WIDTH wide
    sensitivity: M.Sensitivity | None = None


def measure_model(model, batch: Batch, query_step: int, options: Options, seed: int = 0
                  ) -> list[LayerResult]:
    """Every requested measure for every layer of ``model`` (a SequenceModel or a recurrent
    stack) along ``batch``'s inputs. The model is left as it was (nothing is written to it: its
    parameters are read, detached)."""
    options = options.check()
    x = batch.inputs
    rnn = hand_stack(model, check=x)  # a built-in module's twin is checked against it on x
    gen = seeding.generator(seed, DIRECTIONS_STREAM)
    results = []
    S, B = x.shape[:2]
    maps = layer_maps(rnn, B, x)
    layer_input = x
    for m in maps:
        res = LayerResult(m.layer)
        states, outs = run_layer(m, layer_input)
        if "lyapunov" in options.measures:
            res.spectrum, _ = M.lyapunov(m, layer_input, options.exponents, gen, options.warmup)
        if "jacobian" in options.measures:
            lags = options.lags_for(query_step)
            if lags:
                res.products = M.jacobian_products(m, states, layer_input, lags, query_step,
                                                   options.top, gen)
            res.norm_steps = M.norm_steps(S, options.norm_points)
            res.norms = M.step_norms(m, states, layer_input, res.norm_steps, gen)
            res.norms_exact = m.dim <= M.EXACT_MAX_WIDTH
        if "sensitivity" in options.measures:
            res.sensitivity = M.sensitivity(m, layer_input, options.probes, gen)
        results.append(res)
        layer_input = next_input(rnn, m.layer, layer_input, outs)
    return results


def _thin(n: int, points: int = RUNNING_POINTS) -> np.ndarray:
    return M.norm_steps(n, points)


@dataclass
class DynamicsSetup(MeasureSetup):
    """What the dynamics measures run on (the "dynamics" seed stream: never training data, and
    not the gradient probe's batch)."""

    stream: ClassVar[str] = STREAM

    def measure(self, model, options: Options) -> list[LayerResult]:
        return measure_model(model, self.batch, self.query_step, options, self.seed)

    def rows(self, results: list[LayerResult], options: Options, step: int, probe_id: str,
             run_id: str = "") -> list[dict]:
        common = self.common(step, probe_id, run_id)
        S = common["total_steps"]
        rows = []

        def add(measure, layer, value, median=None, **kw):
            rows.append({**common, "measure": measure, "layer": layer, "index": None,
                         "lag": None, "t": None, "value": float(value),
                         "value_median": None if median is None else float(median),
                         "exact": None, "param": None, "probes": None, "warmup": None, **kw})

        for res in results:
            sp = res.spectrum
            if sp is not None:
                for i in range(sp.exponents.shape[1]):
                    col = sp.exponents[:, i]
                    add("lyapunov", res.layer, col.mean(), np.median(col), index=i, t=S - 1,
                        exact=True, warmup=options.warmup)
                for t in _thin(S):
                    if np.isfinite(sp.running[t]):
                        add("lyapunov_running", res.layer, sp.running[t], index=0, t=int(t),
                            warmup=options.warmup)
            for p in res.products:
                for i in range(p.singular_values.shape[1]):
                    col = p.singular_values[:, i]
                    add("jacobian_sv", res.layer, col.mean(), np.median(col), index=i,
                        lag=p.lag, t=p.end, exact=p.exact)
            if res.norms is not None:
                for t, col in zip(res.norm_steps, res.norms):
                    add("step_norm", res.layer, col.mean(), np.median(col), t=int(t),
                        exact=res.norms_exact)
            se = res.sensitivity
            if se is not None:
                for t in np.union1d(_thin(S), [self.query_step]):
                    col = se.norms[t]
                    add("sensitivity", res.layer, np.sqrt(np.mean(col**2)), np.median(col),
                        t=int(t), exact=se.exact, param="+".join(se.params),
                        probes=se.probes)
        return rows


def init_probe_id(task: Task, seq_len: int, cell: CellConfig, seed: int, batch_size: int,
                  options: Options, label: str = "") -> str:
    """A stable id: the same inputs give the same id."""
    key = json.dumps([task.name, task.variant, seq_len, cell.to_dict(), seed, batch_size, label,
                      list(options.measures), options.exponents, options.lags, options.top,
                      options.probes, options.warmup], sort_keys=True)
    return "dyn-init-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def measure_at_init(task_name: str, variant: str | None, seq_len: int, cell: CellConfig,
                    seed: int, batch_size: int = 16, device: torch.device | str = "cpu",
                    label: str = "", options: Options | None = None) -> list[dict]:
    """Rows of the dynamics of a freshly initialized model (the weights a run with this seed
    starts from: seqbench.model.build_model with the "init" stream)."""
    from seqbench.model import build_model

    options = (options or Options()).check()
    device = torch.device(device)
    task = make_task(task_name, variant)
    task.check_seq_len(seq_len)
    cell = cell.validate()
    check_dynamics(task_name, variant, seq_len, cell, batch_size, options)
    options.lags_for(task.query_step(seq_len))  # a bad lag fails before any work
    model = build_model(task, cell, seeding.derive_seed(seed, "init"), seq_len).to(device)
    setup = DynamicsSetup.create(task, seq_len, cell, seed, batch_size, device, label)
    probe_id = init_probe_id(task, seq_len, cell, seed, batch_size, options, label)
    return setup.rows(setup.measure(model, options), options, step=0, probe_id=probe_id)


def init_key(cfg) -> tuple:
    """What fixes the initial model and the dynamics batch of a run (a RunConfig): the task, its
    variant, T, the cell and the seed. Not the learning rate, the clipping or any other training
    setting, nor the arm's label: runs that differ only in those start from the same weights."""
    return (cfg.task, cfg.variant, cfg.seq_len, cfg.cell, cfg.seed)


def measure_spec_at_init(configs, options: Options | None = None,
                         batch_size: int = TRAINING_BATCH, device: torch.device | str = "cpu",
                         on_config=None) -> tuple[list[dict], list]:
    """Rows at initialization for every distinct (initial model, label) of a list of RunConfigs
    (a spec's expansion): the weights each of those runs starts from, measured along the batch
    its ``--probe`` would use. Returns (rows, skipped): the configurations with in-cell
    normalization are skipped (no per-sequence map; ``hand_stack``), listed once per arm and
    task. ``on_config(i, n, cfg)`` before each measurement (progress)."""
    options = (options or Options()).check()
    todo, skipped, seen = [], [], set()
    for cfg in configs:
        key = (*init_key(cfg), cfg.label)
        if key in seen:
            continue
        seen.add(key)
        if cfg.cell.norm != "none":
            if (cfg.task, cfg.label) not in {(c.task, c.label) for c in skipped}:
                skipped.append(cfg)
            continue
        todo.append(cfg)
    for cfg in todo:  # every measurement's memory and lags, before the first is measured
        check_dynamics(cfg.task, cfg.variant, cfg.seq_len, cfg.cell, batch_size, options)
        if "jacobian" in options.measures:
            options.lags_for(make_task(cfg.task, cfg.variant).query_step(cfg.seq_len))
    rows = []
    for i, cfg in enumerate(todo):
        if on_config is not None:
            on_config(i, len(todo), cfg)
        rows += measure_at_init(cfg.task, cfg.variant, cfg.seq_len, cfg.cell, cfg.seed,
                                batch_size, device, cfg.label, options)
    return rows, skipped


class TrainingDynamics:
    """``seqbench run --probe lyapunov ...``: the dynamics of a training run's current model at
    chosen steps, appended to ``<run dir>/dynamics.csv`` (the same rows as ``seqbench dynamics``,
    with ``run_id`` and ``step``). Measures along the fixed "dynamics" batch of the run's seed
    (``TRAINING_BATCH`` sequences); reads the parameters only and draws on no stream of the run
    (its random directions come from the seed's "dynamics-directions" stream), so that the run
    is the same with and without it."""

    def __init__(self, setup: DynamicsSetup, options: Options, path, run_id: str):
        self.setup, self.options, self.path, self.run_id = setup, options.check(), path, run_id

    @classmethod
    def for_run(cls, cfg, task: Task, device, path, run_id: str) -> TrainingDynamics | None:
        """The dynamics probe of a RunConfig (None when ``cfg.probes`` asks for none)."""
        measures = tuple(m for m in MEASURES if m in (cfg.probes or ()))
        if not measures:
            return None
        setup = DynamicsSetup.create(task, cfg.seq_len, cfg.cell, cfg.seed, TRAINING_BATCH,
                                     device, cfg.label)
        return cls(setup, Options(measures=measures), path, run_id)

    def __call__(self, step: int, model) -> list[dict]:
        from seqbench.results import append_rows

        rows = self.setup.rows(self.setup.measure(model, self.options), self.options, step,
                               f"{self.run_id}@{step}", self.run_id)
        append_rows(self.path, rows, DYNAMICS_COLUMNS)
        return rows


# -- memory ---------------------------------------------------------------------------------------


def dynamics_bytes(task_name: str, variant: str | None, seq_len: int, cell: CellConfig,
                   batch_size: int, options: Options) -> int:
    """Peak bytes of ``measure_at_init`` (estimate, float32 = 4 bytes, float64 = 8): the data;
    per layer the trajectory (states and outputs, S B (D + H)); the largest set of directions
    pushed at once with the cell's intermediates (``WORK_FACTOR`` numbers per direction,
    sequence and state unit): the exact Jacobians (D directions, float64), the Lyapunov frame
    (k), the sensitivity's directions; and the power iteration's graph of the longest lag
    (lag B D ``WORK_FACTOR``)."""
    from seqbench import memory as mem

    task = make_task(task_name, variant)
    S, I, O = task.total_steps(seq_len), task.input_size or 1, task.output_size or 1
    H, L = cell.hidden, cell.layers
    D = 2 * H  # the widest state of seqbench's cells: (h, c), (h, z), complex h
    trajectory = 4 * S * batch_size * (D + H)
    directions = max(options.exponents, options.probes)
    lags = options.lags or DEFAULT_LAGS
    if "jacobian" in options.measures:
        directions = max(directions, D if D <= M.EXACT_MAX_WIDTH else options.top)
    work = 8 * directions * batch_size * D * WORK_FACTOR
    graph = 0
    if "jacobian" in options.measures and D > M.EXACT_MAX_WIDTH:
        graph = 4 * max(lags) * batch_size * D * WORK_FACTOR * options.top
    return (mem.BASE_BYTES + mem.param_bytes(H, L, I, O) + 4 * S * batch_size * (I + O)
            + L * trajectory + work + graph)


#: numbers a cell's step keeps per direction, sequence and state unit (gates, activations)
WORK_FACTOR = 12


def check_dynamics(task_name: str, variant: str | None, seq_len: int, cell: CellConfig,
                   batch_size: int, options: Options) -> None:
    """Refuse, in one line, a measurement whose estimate exceeds the memory limit
    (seqbench.memory: MemAvailable, or SEQBENCH_MEMORY_LIMIT_GB)."""
    from seqbench import memory as mem

    limit = mem.available_bytes()
    if limit is None:
        return
    need = dynamics_bytes(task_name, variant, seq_len, cell, batch_size, options)
    if need > limit:
        raise ConfigError(
            f"these dynamics (T={seq_len}, {cell.cell} hidden {cell.hidden}, batch {batch_size}) "
            f"need about {mem.gb(need)} of memory (estimate), more than the limit of "
            f"{mem.gb(limit)} ({mem.limit_text()}); lower --batch-size, --hidden, -T or --lag")


# -- reading and summarizing ----------------------------------------------------------------------


def read_dynamics(paths) -> pd.DataFrame:
    """Read dynamics CSVs (files, or folders searched for ``dynamics.csv``)."""
    from seqbench.results import read_results, results_files

    files = results_files(paths, "dynamics.csv")
    frames = [read_results(f) for f in files]
    for f, frame in zip(files, frames):
        missing = [c for c in ("task", "seq_len", "cell", "layers", "layer", "measure", "value")
                   if c not in frame.columns]
        if missing:
            raise ConfigError(f"{f} is not a dynamics CSV (no column {', '.join(missing)}); "
                              "seqbench dynamics writes them")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def summarize(rows: pd.DataFrame, top_layer_only: bool = True) -> pd.DataFrame:
    """One line per (task, T, series, impl, step), top layer: the mean over seeds of the largest
    Lyapunov exponent (``lyap_1``) and of the k-th (``lyap_k``), the median of ||J_t||_2 along
    the sequence (``step_norm_median``), the largest singular value of d s_{t*}/d s_{t*-k} per
    lag (``sv1_lag<k>``), and the sensitivity at t* (``sensitivity_t*``)."""
    from seqbench.grads import series_name

    df = rows.copy()
    if df.empty:
        return df
    if top_layer_only:
        df = df[df["layer"] == df["layers"] - 1]
    df["series"] = [series_name(r) for r in df.to_dict("records")]
    keys = ["task", "seq_len", "series", "impl", "step"]
    groups = df.groupby(keys, sort=False)
    out = groups.agg(seeds=("seed", "nunique"))
    lyap = df[df["measure"] == "lyapunov"]
    if len(lyap):
        g = lyap.groupby(keys, sort=False)
        out["lyap_1"] = lyap[lyap["index"] == 0].groupby(keys, sort=False)["value"].mean()
        last = lyap[lyap["index"] == g["index"].transform("max")]
        out["lyap_k"] = last.groupby(keys, sort=False)["value"].mean()
    norms = df[df["measure"] == "step_norm"]
    if len(norms):
        out["step_norm_median"] = norms.groupby(keys, sort=False)["value"].median()
    sv = df[(df["measure"] == "jacobian_sv") & (df["index"] == 0)]
    for lag in sorted(sv["lag"].dropna().unique()):
        out[f"sv1_lag{int(lag)}"] = sv[sv["lag"] == lag].groupby(keys, sort=False)["value"].mean()
    sens = df[df["measure"] == "sensitivity"]
    if len(sens):
        at = sens[sens["t"] == sens["query_step"]]
        if at.empty:
            at = sens[sens["t"] == sens.groupby(keys, sort=False)["t"].transform("max")]
        out["sensitivity_t*"] = at.groupby(keys, sort=False)["value"].mean()
    return out.reset_index().sort_values(["task", "seq_len", "step"], kind="stable")
