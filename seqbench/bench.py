"""Speed of the recurrent cells: ``seqbench bench``.

For each cell x implementation x T, on a batch of the task (default: the adding problem), with the
full :class:`~seqbench.model.SequenceModel`, it measures

- **ms per training step**: forward, loss, backward, Adam step (what ``seqbench run`` repeats),
  and the sequences per second that makes;
- **hand / builtin**: the ratio of the two implementations' step times, measured in the same run;
- **probe / step**: the cost of one gradient probe (``seqbench.probe.probe``: dL/dh_t for every
  lag, one forward and backward through zero probe tensors for ``hand``; chunks through the fused
  kernel for ``builtin``) relative to one training step of the same implementation;
- **dynamics / step** (``dynamics``, e.g. ``("lyapunov", "jacobian")``): the cost of one
  measurement of each chosen seqbench.dynamics measure of the model (what ``seqbench run --probe
  lyapunov`` takes at each probe step, with its defaults: k = 8 exponents, lags 1, 10, 100 up to
  t*; on the bench's batch) relative to one training step of the same implementation, at T only;
- **2T / T**: the time at twice the length over the time at T (linear scaling gives 2), for
  training and for the probe;
- **against a reference cell** (``against``, e.g. the built-in LSTM): that cell's training step is
  timed in the same round-robin as each group, and ``ratio_to_against`` is the group's step time
  over it: how a cell compares with the LSTM at equal T, measured in one run.

How: every measured variant of one (cell, T) group (implementation x {train, probe} x {T, 2T}) is
warmed up first (oneDNN pays a first-call cost per shape), then the variants are timed in turn,
round-robin, ``repeats`` times, the order reversed every other round, so that slow drifts of a
shared machine's load hit all of them alike; each number is the median over the rounds. On CUDA
the device is synchronized before every clock reading. The 1-minute load average before and after
each group is recorded: compare ratios, and repeat a group measured under high load.
"""

from __future__ import annotations

import gc
import io
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import torch

from seqbench.cells import CellConfig, cell_names, check_cell_name
from seqbench.cells.fused import WORKSPACE
from seqbench.choices import IMPLS
from seqbench.errors import ConfigError
from seqbench.model import SequenceModel, build_model
from seqbench.provenance import environment, kernel, resolve_device
from seqbench.tasks import Batch, Task, check_task_name, make_task
from seqbench.tasks.base import masked_call
from seqbench.train import synchronize

BENCH_COLUMNS = [
    "bench_id", "started_at", "task", "cell", "impl", "kernel", "seq_len", "total_steps",
    "batch", "hidden", "layers", "repeats",
    "ms_step", "ms_step_min", "seq_per_s", "ratio_to_builtin", "against", "ratio_to_against",
    "ms_probe", "probe_ratio",
    "ms_step_2t", "scale_2t", "ms_probe_2t", "probe_scale_2t",
    # one dynamics measurement per measure (BenchConfig.dynamics) and its ratio to a step
    "ms_lyapunov", "lyapunov_ratio", "ms_jacobian", "jacobian_ratio",
    "ms_sensitivity", "sensitivity_ratio",
    "load_before", "load_after",
    "device", "device_name", "threads", "malloc", "denormals", "torch_version", "cudnn_version",
    "onednn_version", "seqbench_version", "git_commit",
]


@dataclass
class BenchConfig:
    """What ``seqbench bench`` measures. The defaults are the project's reference grid."""

    cells: tuple[str, ...] = ("rnn", "lstm", "gru")  # any registered cells; these: the twins
    impls: tuple[str, ...] = IMPLS
    seq_lens: tuple[int, ...] = (100, 1000)
    batch: int = 64
    hidden: int = 128
    layers: int = 1
    repeats: int = 5
    warmup: int = 1
    threads: int | None = None
    device: str = "auto"
    task: str = "adding"
    probe: bool = True  # also time one gradient probe per implementation
    scaling: bool = True  # also time 2T, for the 2T / T ratio
    cuda_graph: bool = True  # on CUDA, replay hand's training step as a captured CUDA graph
    against: str | None = None  # a reference cell (its built-in module where it has one) timed in every group
    seed: int = 0
    dynamics: tuple[str, ...] = ()  # also time one measurement of each (seqbench.dynamics)

    def validate(self) -> BenchConfig:
        if not self.cells:
            raise ConfigError(f"no cell given; allowed: {', '.join(cell_names())}")
        for cell in self.cells + ((self.against,) if self.against else ()):
            check_cell_name(cell)
        if not self.impls:
            raise ConfigError(f"no impl given; allowed: {', '.join(IMPLS)}")
        bad = [v for v in self.impls if v not in IMPLS]
        if bad:
            raise ConfigError(f"unknown impl {bad[0]!r}; allowed: {', '.join(IMPLS)}")
        check_task_name(self.task)
        if not self.seq_lens:
            raise ConfigError("no seq_len given")
        task = make_task(self.task)
        for T in self.seq_lens:
            task.check_seq_len(T)
        for name in ("batch", "hidden", "layers", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be >= 0, got {self.warmup}")
        from seqbench.dynamics.records import MEASURES

        bad = [m for m in self.dynamics if m not in MEASURES]
        if bad:
            raise ConfigError(f"unknown dynamics measure {bad[0]!r}; allowed: "
                              f"{', '.join(MEASURES)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        return self


@dataclass
class Timings:
    """Median seconds per call of each variant (impl, kind, T) of one group, and the raw data."""

    samples: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)

    def median(self, impl: str, kind: str, T: int) -> float:
        s = self.samples.get((impl, kind, T))
        return statistics.median(s) if s else float("nan")

    def min(self, impl: str, kind: str, T: int) -> float:
        s = self.samples.get((impl, kind, T))
        return min(s) if s else float("nan")


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on this platform
        return float("nan")


def train_step_fn(model: SequenceModel, optimizer: torch.optim.Optimizer, task: Task, batch: Batch,
                  seq_len: int) -> Callable[[], None]:
    """One training step: forward, loss, backward, Adam step."""
    readout = task.readout_steps(seq_len)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = masked_call(task.loss, model(batch.inputs, readout), batch.targets, batch.mask)
        loss.backward()
        optimizer.step()

    return step


def graphed_train_step_fn(model: SequenceModel, optimizer: torch.optim.Optimizer, task: Task,
                          batch: Batch, seq_len: int) -> Callable[[], None]:
    """The training step captured once as a CUDA graph and replayed: a hand-written cell launches
    some 25 small kernels per time step, and replaying them from a graph removes the CPU's launch
    cost. ``optimizer`` must be capturable (Adam(capturable=True)); the batch is static."""
    readout = task.readout_steps(seq_len)

    def body() -> None:
        loss = masked_call(task.loss, model(batch.inputs, readout), batch.targets, batch.mask)
        loss.backward()
        optimizer.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as capture requires
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            body()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)  # the captured backward then assigns the gradients
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def probe_fn(model: SequenceModel, task: Task, batch: Batch, seq_len: int) -> Callable[[], None] | None:
    """One gradient probe (seqbench.probe.probe), or None where it is not available."""
    try:
        from seqbench.probe import probe
    except ImportError:  # pragma: no cover - seqbench.probe ships with seqbench
        return None

    def run() -> None:
        probe(model, task, batch, seq_len)

    return run


def dynamics_fn(model: SequenceModel, task: Task, batch: Batch, seq_len: int, measure: str,
                seed: int = 0) -> Callable[[], None]:
    """One measurement of ``measure`` as ``seqbench run --probe`` takes it (its Options'
    defaults), along ``batch``."""
    from seqbench.dynamics.records import Options, measure_model

    options = Options(measures=(measure,)).check()
    query_step = task.query_step(seq_len)

    def run() -> None:
        measure_model(model, batch, query_step, options, seed)

    return run


def time_round_robin(fns: dict, repeats: int, warmup: int, device: torch.device) -> Timings:
    """Warm every function up, then time them in turn, ``repeats`` rounds, alternating order.

    Python's garbage collector is off while a function is timed and runs between calls, as in
    ``timeit``: its full collections (tens of ms in a process holding torch) otherwise land in
    whichever call happens to cross the threshold, and made single timings bimodal by 25-50%."""
    for _ in range(max(warmup, 1)):
        for fn in fns.values():
            fn()
    timings = Timings({key: [] for key in fns})
    keys = list(fns)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for key in keys if r % 2 == 0 else reversed(keys):
                gc.collect()
                synchronize(device)
                t0 = time.perf_counter()
                fns[key]()
                synchronize(device)
                timings.samples[key].append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return timings


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else float("nan")


def bench_group(cfg: BenchConfig, task: Task, cell: str, seq_len: int, device: torch.device,
                models: dict[str, tuple[SequenceModel, torch.optim.Optimizer]],
                reference: tuple[SequenceModel, torch.optim.Optimizer] | None = None) -> Timings:
    """Time every variant of one (cell, T) group in one round-robin; with ``reference`` (the
    ``against`` cell's model), its training step at T too, under the key ("against", "train", T)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    lens = (seq_len, 2 * seq_len) if cfg.scaling else (seq_len,)
    fns = {}
    for T in lens:
        batch = task.sample(T, cfg.batch, gen).to(device)
        for impl, (model, optimizer) in models.items():
            make = graphed_train_step_fn if _graphed(cfg, impl, device) else train_step_fn
            fns[(impl, "train", T)] = make(model, optimizer, task, batch, T)
            probe = probe_fn(model, task, batch, T) if cfg.probe else None
            if probe is not None:
                fns[(impl, "probe", T)] = probe
            if T == seq_len:
                for measure in cfg.dynamics:
                    fns[(impl, measure, T)] = dynamics_fn(model, task, batch, T, measure,
                                                          cfg.seed)
        if reference is not None and T == seq_len:
            fns[("against", "train", T)] = train_step_fn(*reference, task, batch, T)
    return time_round_robin(fns, cfg.repeats, cfg.warmup, device)


def _graphed(cfg: BenchConfig, impl: str, device: torch.device) -> bool:
    return cfg.cuda_graph and impl == "hand" and device.type == "cuda"


def group_rows(cfg: BenchConfig, task: Task, cell: str, seq_len: int, device: torch.device,
               timings: Timings, models: dict, common: dict) -> list[dict]:
    rows = []
    T, T2 = seq_len, 2 * seq_len
    builtin = timings.median("builtin", "train", T)
    against = timings.median("against", "train", T)
    for impl, (model, _) in models.items():
        step = timings.median(impl, "train", T)
        probe = timings.median(impl, "probe", T)
        hand_kernel = kernel(cell, impl, device) if getattr(model.rnn, "fused", False) \
            else "hand (autograd)"
        if _graphed(cfg, impl, device):
            hand_kernel = hand_kernel[:-1] + ", CUDA graph)"
        rows.append({
            **common,
            "cell": cell, "impl": impl, "seq_len": T, "total_steps": task.total_steps(T),
            "kernel": hand_kernel if impl == "hand" else kernel(cell, impl, device),
            "ms_step": step * 1e3, "ms_step_min": timings.min(impl, "train", T) * 1e3,
            "seq_per_s": _ratio(cfg.batch, step),
            "ratio_to_builtin": _ratio(step, builtin),
            "against": cfg.against or "", "ratio_to_against": _ratio(step, against),
            "ms_probe": probe * 1e3, "probe_ratio": _ratio(probe, step),
            "ms_step_2t": timings.median(impl, "train", T2) * 1e3,
            "scale_2t": _ratio(timings.median(impl, "train", T2), step),
            "ms_probe_2t": timings.median(impl, "probe", T2) * 1e3,
            "probe_scale_2t": _ratio(timings.median(impl, "probe", T2), probe),
            **{k: v for m in cfg.dynamics for k, v in (
                (f"ms_{m}", timings.median(impl, m, T) * 1e3),
                (f"{m}_ratio", _ratio(timings.median(impl, m, T), step)))},
        })
    return rows


def run_bench(cfg: BenchConfig, on_group: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Measure the grid ``cfg`` describes; returns one row (over BENCH_COLUMNS) per cell x impl x T.

    ``on_group(rows)`` is called after each (cell, T) group. The thread count is set for the
    duration of the call (``cfg.threads``) and restored afterwards.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    task = make_task(cfg.task)
    old_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    started = datetime.now(timezone.utc)
    common = {
        "bench_id": started.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}",
        "started_at": started.isoformat(timespec="seconds"),
        "task": task.name, "batch": cfg.batch, "hidden": cfg.hidden, "layers": cfg.layers,
        "repeats": cfg.repeats,
        **environment(device, torch.get_num_threads()),
    }
    rows: list[dict] = []
    reference = None
    if cfg.against:
        ref_cfg = CellConfig(cell=cfg.against, hidden=cfg.hidden, layers=cfg.layers).validate()
        ref_model = build_model(task, ref_cfg, cfg.seed).to(device)
        reference = (ref_model, torch.optim.Adam(ref_model.parameters(), lr=1e-3))
    try:
        for cell in cfg.cells:
            WORKSPACE.clear()  # each cell's groups start from the same empty buffer pool
            models = {}
            for impl in cfg.impls:
                cell_cfg = CellConfig(cell=cell, impl=impl, hidden=cfg.hidden,
                                      layers=cfg.layers).validate()
                impl = cell_cfg.impl  # "hand" for a cell without a torch.nn twin
                if impl in models:
                    continue
                model = build_model(task, cell_cfg, cfg.seed).to(device)
                capturable = _graphed(cfg, impl, device)
                models[impl] = (model, torch.optim.Adam(model.parameters(), lr=1e-3,
                                                        capturable=capturable))
            for T in cfg.seq_lens:
                load_before = _load()
                timings = bench_group(cfg, task, cell, T, device, models, reference)
                group = group_rows(cfg, task, cell, T, device, timings, models,
                                   {**common, "load_before": load_before, "load_after": _load()})
                rows += group
                if on_group:
                    on_group(group)
    finally:
        torch.set_num_threads(old_threads)
    return rows


# -- sweep throughput: the same small runs with two executor layouts ---------------------------

SWEEP_COLUMNS = [
    "bench_id", "started_at", "task", "seq_len", "cells", "impls", "runs", "steps", "batch",
    "hidden", "workers", "threads",
    "per_gpu",  # runs packed on each GPU (--per-gpu); blank for the CPU layouts
    "round", "wall_s", "runs_per_min", "speedup",
    "load_before", "load_after",
    "device", "device_name", "malloc", "denormals", "torch_version", "onednn_version", "seqbench_version",
    "git_commit",
]
#: (workers, torch threads per worker): many one-thread processes against one process using every
#: core (docs/references.md section 7: 1.35x measured with two hand-started processes)
SWEEP_LAYOUTS = ((2, 1), (1, 2))


def pack_layouts(per_gpu: int) -> tuple[tuple[int | None, int, int], ...]:
    """(workers, threads, per_gpu) layouts of the GPU sweep bench: ``per_gpu`` runs packed on
    each GPU against one run per GPU at a time (the reference, last). Workers are None: the
    sweep sizes them from the GPUs and the packing."""
    if per_gpu < 2:
        raise ConfigError(f"--per-gpu must be >= 2 to compare packing with one run at a time, "
                          f"got {per_gpu}")
    return ((None, 1, per_gpu), (None, 1, 1))


def sweep_configs(cfg: BenchConfig, runs: int, steps: int, device: str = "cpu") -> list:
    """``runs`` small training runs on ``device``: the bench's task at its shortest T, cycling
    over its cells x implementations, seeds 0, 1, ...; a fixed step budget, no early stop."""
    from seqbench.config import RunConfig

    kinds = [(c, i) for c in cfg.cells for i in cfg.impls]
    return [RunConfig(task=cfg.task, seq_len=min(cfg.seq_lens),
                      cell=CellConfig(cell=kinds[k % len(kinds)][0], impl=kinds[k % len(kinds)][1],
                                      hidden=cfg.hidden, layers=cfg.layers),
                      batch_size=cfg.batch, steps=steps, eval_every=steps, eval_size=256,
                      until_solved=False, seed=k // len(kinds), device=device).validate()
            for k in range(runs)]


def run_sweep_bench(cfg: BenchConfig, runs: int, steps: int = 100, rounds: int = 2,
                    layouts: Sequence[tuple[int | None, ...]] = SWEEP_LAYOUTS,
                    on_layout: Callable[[dict], None] | None = None,
                    per_gpu: int = 0, gpu_count: int | None = None,
                    run_device: str = "cuda") -> list[dict]:
    """Wall time of ``seqbench sweep``'s local executor on the same runs for each (workers,
    threads) layout, each time into a fresh folder; layouts alternate (order reversed every other
    round). Returns one row per layout and round; ``speedup`` is runs per minute over the last
    layout's (the reference: one process using every core) in the same round.

    With ``per_gpu`` >= 2 the layouts are ``pack_layouts(per_gpu)``: that many runs packed on each
    GPU (``seqbench sweep --per-gpu``) against one at a time, the runs on ``run_device`` (cuda;
    the tests pass cpu with a fake ``gpu_count``, which exercises the packing alone)."""
    import tempfile

    from seqbench.sweep import run_sweep

    cfg.validate()
    if runs < 1 or steps < 1 or rounds < 1:
        raise ConfigError(f"sweep bench needs runs, steps and rounds >= 1, got {runs}, {steps}, "
                          f"{rounds}")
    if per_gpu:
        from seqbench.sweep import check_packing

        layouts = pack_layouts(per_gpu)
        check_packing(per_gpu, "local", None, gpu_count)  # a CUDA device, before any work
    configs = sweep_configs(cfg, runs, steps, run_device if per_gpu else "cpu")
    started = datetime.now(timezone.utc)
    env = environment(torch.device(run_device if per_gpu else "cpu"), 0)
    common = {
        "bench_id": started.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}",
        "started_at": started.isoformat(timespec="seconds"), "task": cfg.task,
        "seq_len": min(cfg.seq_lens), "cells": " ".join(cfg.cells), "impls": " ".join(cfg.impls),
        "runs": runs, "steps": steps, "batch": cfg.batch, "hidden": cfg.hidden,
        **{k: env[k] for k in SWEEP_COLUMNS if k in env},
    }
    rows = []
    for r in range(rounds):
        timed = {}
        for layout in (layouts if r % 2 == 0 else list(reversed(layouts))):
            workers, threads, pack = (*layout, 0)[:3]
            load_before = _load()
            with tempfile.TemporaryDirectory(prefix="seqbench-sweep-bench-") as out:
                result = run_sweep(configs, out, workers=workers, threads=threads,
                                   per_gpu=pack, gpu_count=gpu_count if pack else None,
                                   progress_stream=io.StringIO())  # no progress line
            if result.interrupted:
                raise KeyboardInterrupt
            failed = result.statuses.get("failed", 0)
            if failed:
                raise RuntimeError(f"{failed} of {runs} sweep-bench runs failed")
            timed[tuple(layout)] = {
                **common, "workers": result.workers, "threads": threads,
                "per_gpu": pack or None, "round": r,
                "wall_s": result.seconds, "runs_per_min": 60 * runs / result.seconds,
                "load_before": load_before, "load_after": _load(),
            }
            if on_layout:
                on_layout(timed[tuple(layout)])
        reference = timed[tuple(layouts[-1])]["runs_per_min"]
        for layout in layouts:
            row = timed[tuple(layout)]
            row["speedup"] = row["runs_per_min"] / reference
            rows.append(row)
    return rows


# -- presentation ---------------------------------------------------------------------------------

TABLE = [  # (header, column, format)
    ("cell", "cell", "{}"), ("impl", "impl", "{}"), ("T", "seq_len", "{}"),
    ("ms/step", "ms_step", "{:.1f}"), ("seq/s", "seq_per_s", "{:.0f}"),
    ("hand/builtin", "ratio_to_builtin", "{:.2f}"), ("/against", "ratio_to_against", "{:.2f}"),
    ("probe ms", "ms_probe", "{:.1f}"), ("probe/step", "probe_ratio", "{:.2f}"),
    ("2T/T step", "scale_2t", "{:.2f}"), ("2T/T probe", "probe_scale_2t", "{:.2f}"),
    ("load", "load_before", "{:.1f}"),
]


def _cell_text(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return fmt.format(value)


def format_table(rows: Sequence[dict]) -> str:
    """An aligned text table of bench rows (text left, numbers right); the dynamics measures'
    columns where a row has them."""
    extra = [(f"{m} ms", f"ms_{m}", "{:.1f}") for m in ("lyapunov", "jacobian", "sensitivity")
             if any(r.get(f"ms_{m}") is not None for r in rows)]
    extra = [x for e in extra for x in (e, (f"{e[0][:-3]}/step", e[1][3:] + "_ratio", "{:.2f}"))]
    return _table(rows, TABLE[:-1] + extra + TABLE[-1:])


def _table(rows: Sequence[dict], spec: list[tuple[str, str, str]]) -> str:
    header = [h for h, _, _ in spec]
    body = [[_cell_text(row.get(col), fmt) for _, col, fmt in spec] for row in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    numeric = [fmt != "{}" or col in ("seq_len", "workers", "threads", "round", "runs")
               for _, col, fmt in spec]

    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(header), *(line(r) for r in body)])


def describe(cfg: BenchConfig) -> str:
    d = asdict(cfg)
    return ", ".join(f"{k}={v}" for k, v in d.items())


SWEEP_TABLE = [("workers", "workers", "{}"), ("threads", "threads", "{}"),
               ("per GPU", "per_gpu", "{}"), ("round", "round", "{}"),
               ("runs", "runs", "{}"), ("wall s", "wall_s", "{:.1f}"),
               ("runs/min", "runs_per_min", "{:.1f}"), ("speedup", "speedup", "{:.2f}"),
               ("load", "load_before", "{:.1f}")]


def format_sweep_table(rows: Sequence[dict]) -> str:
    """An aligned text table of sweep-bench rows."""
    return _table(rows, SWEEP_TABLE)
