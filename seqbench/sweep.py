"""Run a list of RunConfigs: resumable, in parallel worker processes or as Ray tasks.

A run's identity is ``RunConfig.config_id()`` (a hash of everything that determines its result).
Before running, the sweep reads ``OUT/runs.csv`` and skips every config already recorded there,
whatever its status (``retry_failed`` runs the failed ones again). Each finished run appends its own
row as soon as it ends, so an interrupted sweep loses at most the runs that were in flight, and the
same command resumes it.

Executors:

``local``  worker processes (``spawn``), ``workers`` of them, each with ``threads`` torch threads
           (one by default: two one-thread workers give about 1.35x the throughput of one two-thread
           process on a 2-core CPU, shared/REFERENCES.md section 5). The worker appends the row.
``ray``    one Ray task per run (``num_cpus`` = threads), on the cluster at ``address`` (``auto``: the
           running one) or on a local Ray instance started for the sweep. Each task trains in a
           scratch folder on its node and sends back its row and run folder; the driver writes them
           under ``OUT``, so nodes need no shared file system (seqbench must be installed on them).

A run that raises is recorded with status ``failed`` and the error in the ``error`` column; a run
whose loss diverges is recorded as ``diverged`` by the runner. Neither stops the sweep.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path

from seqbench import malloc
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.progress import ProgressLine, format_duration
from seqbench.results import RUN_COLUMNS, ResultsFileError, append_rows

EXECUTORS = ("local", "ray")
#: statuses that ``retry_failed`` runs again (``interrupted``: a run stopped before its end)
RETRY_STATUSES = ("failed", "interrupted")
FINISHED = ("ok", "diverged")
#: RunConfig fields whose runs.csv column has another name
COLUMN_NAMES = {"steps": "step_budget"}


class SweepError(ConfigError):
    """A sweep cannot go on (its results file, a worker pool that broke, Ray unreachable)."""


# -- what to run ----------------------------------------------------------------------------------


def recorded(out: str | os.PathLike) -> dict[str, str]:
    """config_id -> status recorded for it in OUT/runs.csv ({} if none). A finished status (ok,
    diverged) wins over failed/interrupted rows of the same config; otherwise the last row does.

    Read with the csv module, every value as text: a config id such as ``0123e4567890`` must stay
    that string (a CSV reader that guesses types would make it a number). Malformed (torn) lines
    are skipped: their runs are simply run again."""
    path = Path(out) / "runs.csv"
    if not path.exists() or path.stat().st_size == 0:
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            foreign = [c for c in header if c not in RUN_COLUMNS]
            if foreign or "config_id" not in header or "status" not in header:
                what = ", ".join(foreign[:4]) or "no config_id/status"
                raise ResultsFileError(f"{path} has columns that are not seqbench's ({what}...); "
                                       "refusing to add runs to it, file untouched")
            i, j = header.index("config_id"), header.index("status")
            seen: dict[str, str] = {}
            for row in reader:
                if len(row) != len(header) or not row[i]:
                    continue
                if seen.get(row[i]) not in FINISHED:
                    seen[row[i]] = row[j]
    except (UnicodeDecodeError, csv.Error) as e:
        raise ResultsFileError(f"cannot read {path} as a CSV: {e}") from None
    return seen


@dataclass
class SweepPlan:
    todo: list[RunConfig]
    done: list[RunConfig]  # already recorded (skipped)
    statuses: dict[str, str]  # config_id -> recorded status, for the skipped ones


def plan_sweep(configs: Sequence[RunConfig], out: str | os.PathLike,
               retry_failed: bool = False) -> SweepPlan:
    """Split ``configs`` into those to run and those already recorded in OUT/runs.csv."""
    seen = recorded(out)
    todo, done, statuses = [], [], {}
    for cfg in configs:
        cid = cfg.config_id()
        status = seen.get(cid)
        if status is None or (retry_failed and status in RETRY_STATUSES):
            todo.append(cfg)
        else:
            done.append(cfg)
            statuses[cid] = status
    return SweepPlan(todo, done, statuses)


def describe(cfg: RunConfig) -> str:
    """e.g. ``adding/halves T=25 lstm/builtin seed 0 [lstm_fb1]``."""
    c = cfg.cell
    s = f"{cfg.task}/{cfg.variant} T={cfg.seq_len} {c.cell}/{c.impl} seed {cfg.seed}"
    return s + (f" [{cfg.label}]" if cfg.label else "")


# -- one run, in a worker ------------------------------------------------------------------------


def config_columns(cfg: RunConfig) -> dict:
    """The runs.csv columns a config fills by itself (its fields, flattened, renamed)."""
    d = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "cell":
            d.update(value.to_dict())
        else:
            d[COLUMN_NAMES.get(f.name, f.name)] = value
    d.pop("device", None)  # the row's device is the resolved one; unknown for a failed run
    d.pop("threads", None)
    return {k: v for k, v in d.items() if k in RUN_COLUMNS}


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    text = f"{type(error).__name__}: {text}"
    return text if len(text) <= 500 else text[:497] + "..."


def failed_row(cfg: RunConfig, error: str, started_at: str, wall_s: float) -> dict:
    c = cfg.cell
    return {
        "run_id": f"{cfg.task}-T{cfg.seq_len}-{c.cell}-{c.impl}-s{cfg.seed}-{cfg.config_id()[:8]}-failed",
        "config_id": cfg.config_id(),
        "started_at": started_at,
        **config_columns(cfg),
        "status": "failed",
        "solved": False,
        "wall_s": round(wall_s, 3),
        "error": error,
    }


@dataclass
class Outcome:
    """What a worker reports back for one run."""

    config_id: str
    status: str  # ok | diverged | failed (or whatever the runner recorded)
    summary: str
    wall_s: float
    row: dict | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # ray: the run folder's files


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_one(cfg: RunConfig, out: str) -> Outcome:
    """Train one run into ``out`` and append its row (a failed row if it raises)."""
    from seqbench.runner import execute_run

    if _orphaned():  # the sweep that queued this run is gone: start nothing new
        os._exit(0)
    _WORKER["busy"] = True
    started_at, t0 = _now(), time.perf_counter()
    try:
        row, summary = execute_run(cfg, out, quiet=True)
        return Outcome(cfg.config_id(), str(row["status"]), summary, time.perf_counter() - t0)
    except Exception as e:
        wall = time.perf_counter() - t0
        error = one_line(e)
        append_rows(Path(out) / "runs.csv", [failed_row(cfg, error, started_at, wall)], RUN_COLUMNS)
        return Outcome(cfg.config_id(), "failed", f"{describe(cfg)}: failed: {error}", wall)
    finally:
        _WORKER["busy"] = False
        if _orphaned():  # its row is written; nobody will collect the result
            os._exit(0)


def run_detached(cfg: RunConfig) -> Outcome:
    """Train one run in a scratch folder (a Ray task); return its row and run-folder files."""
    from seqbench.runner import execute_run

    malloc.tune()  # a Ray worker process is not seqbench's: tune it here (seqbench.malloc)
    started_at, t0 = _now(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seqbench-") as scratch:
        try:
            row, summary = execute_run(cfg, scratch, quiet=True)
        except Exception as e:
            wall = time.perf_counter() - t0
            error = one_line(e)
            return Outcome(cfg.config_id(), "failed", f"{describe(cfg)}: failed: {error}", wall,
                           row=failed_row(cfg, error, started_at, wall))
        run_dir = Path(row["run_dir"])
        files = {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}
    return Outcome(cfg.config_id(), str(row["status"]), summary, time.perf_counter() - t0,
                   row=row, files=files)


def _store(outcome: Outcome, out: Path) -> None:
    """Driver side of ``run_detached``: write the run folder under OUT/runs and append the row."""
    row = dict(outcome.row)
    if outcome.files:
        root = out / "runs"
        root.mkdir(parents=True, exist_ok=True)
        base = row["run_id"]
        for n in range(1, 10_000):
            run_dir = root / (base if n == 1 else f"{base}-{n}")
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                continue
        for name, data in outcome.files.items():
            (run_dir / name).write_bytes(data)
        row["run_id"], row["run_dir"] = run_dir.name, str(run_dir)
    append_rows(out / "runs.csv", [row], RUN_COLUMNS)


#: a local worker's state: the sweep process that started it, and whether a run is in progress
_WORKER: dict = {"parent": None, "busy": False}


def _orphaned() -> bool:
    return _WORKER["parent"] is not None and os.getppid() != _WORKER["parent"]


def _watch_parent() -> None:
    while True:
        time.sleep(1.0)
        if _orphaned() and not _WORKER["busy"]:
            os._exit(0)


def _init_worker(parent: int) -> None:
    """Worker initializer. Ctrl-C is handled by the sweep process, which stops the workers. If
    the sweep process dies (SIGKILL), a worker finishes and records the run in progress, then exits
    instead of waiting forever for more work."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    malloc.tune()  # as in the sweep process (seqbench.malloc); spawned workers start untuned
    _WORKER["parent"] = parent
    threading.Thread(target=_watch_parent, name="seqbench-watch-parent", daemon=True).start()


class _Stop(KeyboardInterrupt):
    """SIGTERM during a sweep: stop like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_stops():
    """Within the block, SIGTERM raises _Stop in the main thread (so the workers get stopped)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Stop()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- the sweep -----------------------------------------------------------------------------------


@dataclass
class SweepResult:
    total: int  # configs asked for
    skipped: int  # already recorded
    statuses: dict[str, int] = field(default_factory=dict)  # status -> count, of the runs run now
    seconds: float = 0.0
    interrupted: bool = False
    signal: int | None = None  # the signal that interrupted it (SIGINT, SIGTERM)

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())

    def summary(self, out: str | os.PathLike) -> str:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        head = "sweep interrupted" if self.interrupted else "sweep"
        line = (f"{head}: ran {self.ran} run(s)" + (f" ({parts})" if parts else "")
                + f", skipped {self.skipped} already recorded, {format_duration(self.seconds)}; "
                f"results in {Path(out) / 'runs.csv'}")
        if self.interrupted:
            line += "; run the same command again to resume"
        return line


class _Tracker:
    """Counts outcomes and redraws the progress line: done, running, failed, time left."""

    def __init__(self, total: int, workers: int, stream, report: Callable[[str], None] | None):
        self.total, self.workers = total, max(workers, 1)
        self.bar = ProgressLine(total, "sweep", stream=stream)
        self.report = report
        self.t0 = time.perf_counter()
        self.statuses: dict[str, int] = {}
        self.done = 0

    @property
    def failed(self) -> int:
        return self.statuses.get("failed", 0)

    def draw(self) -> None:
        running = min(self.workers, self.total - self.done)
        elapsed = time.perf_counter() - self.t0
        eta = format_duration(elapsed / self.done * (self.total - self.done)) if self.done else "?"
        text = f"done {self.done}, running {running}, failed {self.failed}"
        if self.statuses.get("diverged"):
            text += f", diverged {self.statuses['diverged']}"
        self.bar.update(self.done, f"{text} | {format_duration(elapsed)} elapsed, ETA {eta}",
                        force=True)

    def add(self, outcome: Outcome) -> None:
        self.done += 1
        self.statuses[outcome.status] = self.statuses.get(outcome.status, 0) + 1
        if self.report is not None:
            self.bar.close()
            self.report(outcome.summary)
        self.draw()


def run_sweep(
    configs: Sequence[RunConfig],
    out: str | os.PathLike = "results",
    workers: int | None = None,
    threads: int = 1,
    executor: str = "local",
    address: str | None = None,
    retry_failed: bool = False,
    gpus_per_run: float = 0.0,
    progress_stream=None,
    report: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every config of ``configs`` not yet recorded in OUT/runs.csv.

    workers: local worker processes (default 1); for a local Ray instance its CPU count (default:
    all). threads: torch threads per run. report(line) gets each run's one-line summary as it ends.
    Ctrl-C stops the workers (their runs in flight are lost) and returns with ``interrupted`` set.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if threads < 1:
        raise ConfigError(f"threads per worker must be >= 1, got {threads}")
    if address is not None and executor != "ray":
        raise ConfigError("--address applies to --executor ray only")
    if executor == "ray":
        require_ray()
    out = Path(out)
    plan = plan_sweep(configs, out, retry_failed=retry_failed)
    todo = [replace(cfg, threads=threads) for cfg in plan.todo]
    result = SweepResult(total=len(configs), skipped=len(plan.done))
    t0 = time.perf_counter()
    if todo:
        out.mkdir(parents=True, exist_ok=True)
        n = workers or 1
        if executor == "ray":
            n = workers or os.cpu_count() or 1
        tracker = _Tracker(len(todo), n, progress_stream, report)
        tracker.draw()
        try:
            with _sigterm_stops():
                if executor == "local":
                    _run_local(todo, out, n, tracker)
                else:
                    _run_ray(todo, out, workers, address, threads, gpus_per_run, tracker)
        except KeyboardInterrupt as e:
            result.interrupted = True
            result.signal = signal.SIGTERM if isinstance(e, _Stop) else signal.SIGINT
        finally:
            tracker.bar.close()
        result.statuses = tracker.statuses
    result.seconds = time.perf_counter() - t0
    return result


def _run_local(todo: list[RunConfig], out: Path, workers: int, tracker: _Tracker) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                               initializer=_init_worker, initargs=(os.getpid(),))
    pending = {pool.submit(run_one, cfg, str(out)): cfg for cfg in todo}
    try:
        while pending:
            finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            if not finished:
                tracker.draw()  # the clock moves on
            for future in finished:
                cfg = pending.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    raise SweepError(
                        f"a worker process died while running {describe(cfg)} or another run "
                        "(killed, out of memory?); the runs recorded so far are kept: run the same "
                        "command again to resume") from None
                except Exception as e:  # the failed row itself could not be written
                    raise SweepError(f"{describe(cfg)}: could not record the run: {one_line(e)}") from None
                tracker.add(outcome)
    except BaseException:
        for future in pending:
            future.cancel()
        _terminate_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _terminate_workers(pool) -> None:
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def require_ray():
    """Import Ray (an optional extra), or say how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed here: "
                          "pip install 'seqbench[ray]'") from None
    return ray


def _run_ray(todo: list[RunConfig], out: Path, workers: int | None, address: str | None,
             threads: int, gpus_per_run: float, tracker: _Tracker) -> None:
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "warning"}
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=workers or os.cpu_count() or 1, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            raise SweepError(f"cannot connect to {where}: {one_line(e)}") from None
        started = True
    try:
        task = ray.remote(num_cpus=threads, num_gpus=gpus_per_run, max_retries=0)(run_detached)
        pending = {task.remote(cfg): cfg for cfg in todo}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if not ready:
                    tracker.draw()
                    continue
                cfg = pending.pop(ready[0])
                try:
                    outcome = ray.get(ready[0])
                except ray.exceptions.RayError as e:  # the task or its worker died
                    error = one_line(e)
                    outcome = Outcome(cfg.config_id(), "failed", f"{describe(cfg)}: failed: {error}",
                                      0.0, row=failed_row(cfg, error, _now(), 0.0))
                _store(outcome, out)
                tracker.add(outcome)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
