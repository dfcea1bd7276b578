"""How long a sweep will take on this device: a short measured timing, not a guess.

``estimate_sweep`` groups the runs by what determines their speed (task, variant, T, cell,
implementation, sizes, normalization, batch, device, threads; not the learning rate, seed,
initialization or label, which change what a run computes but not how fast), and times one
representative of each group with the real training loop: a few ``Trainer.train_step`` calls
(after ``WARMUP_STEPS`` warm-up steps, median of ``STEP_REPEATS``) and one validation evaluation.
Each run then costs

    steps x step + evaluations x evaluation + probes x step + one test evaluation

with ``1 + ceil(steps / eval_every)`` evaluations (the one at step 0, every ``eval_every`` steps and
the one after the last step), ``ceil(steps / probe_every) + 1`` probes when ``probe_every`` > 0 (one
probe costs about one step: ``seqbench bench`` measured 0.7-0.87 of a step) and the test evaluation
scaled from the validation one by ``test_size / eval_size``.

The wall time divides the runs' total by the runs that go on at once and multiplies it by a
contention factor (``contention``). Runs that stop when solved (``until_solved``) make the result
an upper bound.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch

from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.train import synchronize

#: timed training steps per group, after ``WARMUP_STEPS``; the median is used
STEP_REPEATS = 3
#: untimed steps first: the first step pays one-off costs (oneDNN's first call per shape, Adam's
#: state), and the first group timed in a process was still about 30% slow on its second step
WARMUP_STEPS = 2
#: slow-down of each of several local one-thread workers sharing the CPU cores, against one alone:
#: two one-thread workers on the project's 2-core machine ran about 10% slower each
CONTENTION = 1.1
#: the speed-determining fields besides the cell's (see ``group_key``), shown when they differ
OTHER_KEYS = ("task", "variant", "layers", "nonlinearity", "norm", "residual", "batch_size",
              "device", "floss")


@dataclass(frozen=True)
class Timing:
    """Measured seconds of one training step and of one validation evaluation (``eval_size``
    sequences of the measured config)."""

    step_s: float
    eval_s: float
    floss_s: float = 0.0  # the extra seconds of a step with gradient flossing (cfg.floss)


@dataclass
class GroupEstimate:
    """Runs that train at the same speed, their measured timing and their estimated time."""

    key: dict  # the speed-determining fields (see ``group_key``)
    runs: int = 0
    steps: int = 0
    step_s: float = math.nan  # measured seconds per training step
    eval_s: float = math.nan  # measured seconds per validation evaluation (of the first run)
    seconds: float = 0.0  # the group's runs, one after the other
    longest_s: float = 0.0  # the group's longest run

    @property
    def hours(self) -> float:
        return self.seconds / 3600


@dataclass
class SweepEstimate:
    """The size of a sweep and the time it should take on this device."""

    runs: int
    steps: int  # training steps to do (the step budgets)
    seconds: float  # estimated wall time
    run_seconds: float  # the runs one after the other, at the measured speed
    parallel: int  # runs going on at once
    contention: float  # factor on the wall time for workers sharing the CPU cores
    on_gpu: bool  # the runs train on CUDA (the estimate assumes no speed-up from packing them)
    stops_early: bool  # some runs stop when solved: ``seconds`` is an upper bound
    timing_s: float  # how long the measurement took
    groups: list[GroupEstimate] = field(default_factory=list)

    def summary(self, workers: int, gpus: int = 1) -> str:
        """e.g. ``estimated at most 1.6 h on this device with 2 workers (runs that solve stop
        early; timing: 12 groups measured in 14 s)``."""
        bound = "at most " if self.stops_early else ""
        where = f"with {workers} worker{'s' if workers != 1 else ''}"
        notes = []
        if self.on_gpu:
            where += f" on {gpus} GPU{'s' if gpus != 1 else ''}"
            per_gpu = math.ceil(workers / max(gpus, 1))
            if per_gpu > 1:  # the throughput of packed runs is hardware-specific: not guessed
                notes.append(f"assumes no speed-up from packing {per_gpu} runs per GPU; measure it "
                             "with seqbench bench --sweep-runs")
        if self.stops_early:
            notes.append("runs that solve stop early")
        notes.append(f"timing: {len(self.groups)} group{'s' if len(self.groups) != 1 else ''} "
                     f"measured in {self.timing_s:.0f} s")
        return (f"estimated {bound}{hours_text(self.seconds)} on this device {where} "
                f"({'; '.join(notes)})")


def hours_text(seconds: float) -> str:
    """45 -> '45 s', 600 -> '10 min', 5760 -> '1.6 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- grouping -------------------------------------------------------------------------------------


def group_key(cfg: RunConfig, threads: int) -> tuple:
    """What determines a run's speed. lr, seed, init, forget_bias, chrono, clip and the label
    change the numbers a run computes, not the work per step, so they are left out; the number
    of exponents flossed (``floss``) sets the cost of a flossed step."""
    c = cfg.cell
    return (cfg.task, cfg.variant, cfg.seq_len, c.cell, c.impl, c.hidden, c.layers,
            c.nonlinearity, c.norm, c.residual, cfg.batch_size, cfg.device, cfg.floss, threads)


KEY_NAMES = ("task", "variant", "seq_len", "cell", "impl", "hidden", "layers", "nonlinearity",
             "norm", "residual", "batch_size", "device", "floss", "threads")


def group_runs(configs: Sequence[RunConfig], threads: int) -> dict[tuple, list[RunConfig]]:
    """The configs by ``group_key``, in first-seen order."""
    groups: dict[tuple, list[RunConfig]] = {}
    for cfg in configs:
        groups.setdefault(group_key(cfg, threads), []).append(cfg)
    return groups


def resolve_devices(configs: Sequence[RunConfig]) -> dict[str, torch.device]:
    """Each device name the configs ask for -> the device it runs on here (``auto`` resolved)."""
    from seqbench.provenance import resolve_device

    devices = {}
    for name in sorted({cfg.device for cfg in configs}):
        try:
            devices[name] = resolve_device(name)
        except ConfigError as e:
            raise ConfigError(f"cannot time the runs here: {e} (--no-estimate only counts the "
                              "runs)") from None
    return devices


# -- measuring ------------------------------------------------------------------------------------


def _timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls, with Python's garbage collector off during them (as
    seqbench.bench does: a full collection landing in a timed call made single timings bimodal by
    25-50%). One collection before the calls, not one before each: a collection walks every
    object and leaves the caches cold, which made the next step about 30% slower than a step of a
    run (measured at T=50, H=64, one thread: 5.5 against 4.2 ms)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    times = []
    try:
        for _ in range(repeats):
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times.append(time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()
    return times


def measure_group(cfg: RunConfig, device: torch.device, threads: int) -> Timing:
    """Time ``cfg``'s training step (``WARMUP_STEPS`` warm-up steps, then the median of
    ``STEP_REPEATS``) and one validation evaluation (after a warm-up one), with ``threads`` torch
    threads (restored)."""
    from seqbench.cells.fused import WORKSPACE
    from seqbench.train import Trainer, evaluate

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        floss_s = 0.0
        if cfg.floss:  # a flossed step (the first floss_steps) and a plain one, timed apart
            flossed = Trainer(cfg, device)
            for _ in range(WARMUP_STEPS):
                flossed.train_step()
            floss_s = statistics.median(_timed(flossed.train_step, device, STEP_REPEATS))
            cfg = replace(cfg, floss=0, floss_weight=1.0, floss_steps=500)
        trainer = Trainer(cfg, device)
        for _ in range(WARMUP_STEPS):  # oneDNN's first call per shape, Adam's state, the allocator
            trainer.train_step()
        step_s = statistics.median(_timed(trainer.train_step, device, STEP_REPEATS))
        floss_s = max(0.0, floss_s - step_s)

        def evaluation():
            evaluate(trainer.model, trainer.task, trainer.eval_batch, cfg.seq_len)

        evaluation()  # the evaluation batch is a new shape: warm it up too
        eval_s = _timed(evaluation, device)[0]
    finally:
        torch.set_num_threads(old_threads)
        WORKSPACE.clear()  # the next group's shapes differ: free this one's buffers
    return Timing(step_s, eval_s, floss_s)


# -- arithmetic -----------------------------------------------------------------------------------


def evaluations(cfg: RunConfig) -> int:
    """Validation evaluations of a run that uses its whole budget: step 0, every ``eval_every``
    steps, and after the last step when that is not a multiple of ``eval_every``."""
    return 1 + math.ceil(cfg.steps / cfg.eval_every)


def probes(cfg: RunConfig) -> int:
    """Gradient probes of a run that uses its whole budget: step 0, every ``probe_every`` steps
    before the last, and after the last (Trainer.run)."""
    return math.ceil(cfg.steps / cfg.probe_every) + 1 if cfg.probe_every > 0 else 0


def run_seconds(cfg: RunConfig, timing: Timing, eval_size: int) -> float:
    """Estimated seconds of one run that uses its whole budget. ``timing.eval_s`` was measured on
    ``eval_size`` sequences; evaluation time is taken as proportional to the sequences."""
    per_sequence = timing.eval_s / eval_size
    evals = evaluations(cfg) * cfg.eval_size + cfg.test_size  # sequences evaluated
    return ((cfg.steps + probes(cfg)) * timing.step_s + evals * per_sequence
            + min(cfg.steps, cfg.floss_steps) * timing.floss_s * (cfg.floss > 0))


def cpu_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def contention(workers: int, threads: int, cores: int) -> float:
    """Factor on the wall time of ``workers`` local workers of ``threads`` torch threads each.

    One worker runs at the measured speed (1.0). Several that fit the cores each run about 10%
    slower (``CONTENTION``: shared caches and memory bandwidth). Beyond the cores, the threads also
    take turns on them, so the factor grows in proportion to threads / cores."""
    if workers <= 1:  # the measurement already ran with these threads, alone
        return 1.0
    return CONTENTION * max(1.0, workers * threads / cores)


MeasureFn = Callable[[RunConfig, torch.device, int], Timing]


def estimate_sweep(configs: Sequence[RunConfig], workers: int = 1, threads: int = 1,
                   gpus: int = 1, cores: int | None = None) -> SweepEstimate:
    """Measure and estimate the runs ``configs`` (the ones still to do) on this device.

    workers: runs the executor keeps going at once; threads: torch threads per run; gpus: GPUs
    the workers are spread over (CUDA runs). On CUDA, workers sharing a GPU are assumed to give no
    more throughput than one run at a time on it (no speed-up from packing). The measuring function
    is ``measure_group`` (looked up at call time, so a test can replace it).
    """
    if workers < 1 or threads < 1 or gpus < 1:
        raise ConfigError(f"workers, threads and gpus must be >= 1, got {workers}, {threads}, "
                          f"{gpus}")
    configs = [cfg.validate() for cfg in configs]
    devices = resolve_devices(configs)
    configs = [replace(cfg, device=devices[cfg.device].type, threads=threads) for cfg in configs]
    t0 = time.perf_counter()
    groups = [_estimate_group(key, runs, torch.device(runs[0].device), threads)
              for key, runs in group_runs(configs, threads).items()]
    timing_s = time.perf_counter() - t0
    on_gpu = any(g.key["device"] == "cuda" for g in groups)
    total = sum(g.seconds for g in groups)
    longest = max((g.longest_s for g in groups), default=0.0)
    if on_gpu:  # the runs share the GPUs, not the CPU cores
        parallel, factor = max(1, min(workers, gpus, len(configs))), 1.0
    else:
        parallel = max(1, min(workers, len(configs)))
        factor = contention(parallel, threads, cores or cpu_cores())
    # a sweep cannot end before its longest run
    seconds = max(total / parallel, longest) * factor
    return SweepEstimate(
        runs=len(configs), steps=sum(cfg.steps for cfg in configs), seconds=seconds,
        run_seconds=total, parallel=parallel, contention=factor, on_gpu=on_gpu,
        stops_early=any(cfg.until_solved for cfg in configs), timing_s=timing_s, groups=groups)


def _estimate_group(key: tuple, runs: list[RunConfig], device: torch.device,
                    threads: int) -> GroupEstimate:
    first = runs[0]  # any run of the group trains at the group's speed
    timing = measure_group(first, device, threads)
    seconds = [run_seconds(cfg, timing, first.eval_size) for cfg in runs]
    return GroupEstimate(
        key=dict(zip(KEY_NAMES, key)), runs=len(runs), steps=sum(cfg.steps for cfg in runs),
        step_s=timing.step_s, eval_s=timing.eval_s, seconds=sum(seconds), longest_s=max(seconds))


# -- presentation ---------------------------------------------------------------------------------


def format_groups(estimate: SweepEstimate) -> str:
    """A short aligned table: T, cell, impl, hidden, ms/step, runs, hours (the group's runs one
    after the other), and the other speed-determining fields where the groups differ in them;
    a last row totals the runs and hours."""
    groups = estimate.groups
    varying = [k for k in OTHER_KEYS if len({g.key[k] for g in groups}) > 1]
    also = [["also"]] + [[" ".join(f"{k}={g.key[k]}" for k in varying)] for g in groups] + [[""]]
    header = ["T", "cell", "impl", "hidden", "ms/step", "runs", "hours"]
    rows = [[str(g.key["seq_len"]), g.key["cell"], g.key["impl"], str(g.key["hidden"]),
             _ms(g.step_s), str(g.runs), f"{g.hours:.2f}"] for g in groups]
    total = ["", "total", "", "", "", str(estimate.runs), f"{estimate.run_seconds / 3600:.2f}"]
    rows = [header, *rows, total]
    if varying:
        rows = [r + a for r, a in zip(rows, also)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text_columns = {1, 2, 7}

    def line(cells):
        return "  ".join(c.ljust(w) if i in text_columns else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join(line(r) for r in rows)


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"
