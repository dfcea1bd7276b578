"""Run a list of RunConfigs: resumable, in parallel worker processes or as Ray tasks.

A run's identity is ``RunConfig.config_id()`` (a hash of everything that determines its result).
Before running, the sweep reads ``OUT/runs.csv`` and skips every config already recorded there,
whatever its status (``retry_failed`` runs the failed ones again). Each finished run appends its own
row as soon as it ends, so an interrupted sweep loses at most the runs that were in flight, and the
same command resumes it. With ``checkpoint_every`` the runs in flight are not lost either: each
saves its state every that many steps, and the same command continues it from there.

Executors:

``local``  worker processes (``spawn``), ``workers`` of them, each with ``threads`` torch threads
           (one by default: two one-thread workers give about 1.35x the throughput of one two-thread
           process on a 2-core CPU, docs/references.md section 7). The worker appends the row.
           With ``per_gpu`` N: N workers per GPU, each pinned to its GPU (``CUDA_VISIBLE_DEVICES``
           set in the worker before any CUDA call), so that several small runs share a GPU.
``ray``    one Ray task per run (``num_cpus`` = threads), on the cluster at ``address`` (``auto``: the
           running one) or on a local Ray instance started for the sweep. Each task trains in a
           scratch folder on its node and sends back its row and run folder; the driver writes them
           under ``OUT``, so nodes need no shared file system (seqbench must be installed on them).

A run that raises is recorded with status ``failed`` and the error in the ``error`` column; a run
whose loss diverges is recorded as ``diverged`` by the runner. Neither stops the sweep.

Many sweeps may share one ``OUT`` (seqbench.claims): a local worker claims each config before it
starts it and reads runs.csv again, so a config another sweep runs now or recorded since this one
planned is skipped (reported as running elsewhere / recorded meanwhile), and local workers die
with their sweep, so a sweep restarted after a ``kill -9`` of the last one never races its
orphans. The Ray executor does not claim configs.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from seqbench import claims, denormals, malloc
from seqbench.choices import DEFAULT_OUT
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.progress import ProgressLine, format_duration
from seqbench.results import (
    RUN_COLUMNS,
    ResultsFileError,
    _read_header,
    _torn_header,
    append_rows,
    check_location,
    read_rows,
)

EXECUTORS = ("local", "ray")
#: statuses that ``retry_failed`` runs again (``interrupted``: a run stopped before its end)
RETRY_STATUSES = ("failed", "interrupted")
FINISHED = ("ok", "diverged")


class SweepError(ConfigError):
    """A sweep cannot go on (its results file, a worker pool that broke, Ray unreachable)."""


# -- what to run ----------------------------------------------------------------------------------


def recorded(out: str | os.PathLike) -> dict[str, str]:
    """config_id -> status recorded for it in OUT/runs.csv ({} if none). A finished status (ok,
    diverged) wins over failed/interrupted rows of the same config; otherwise the last row does.

    Read with the csv module, every value as text: a config id such as ``0123e4567890`` must stay
    that string (a CSV reader that guesses types would make it a number). The file is read one
    physical line per row (``seqbench.results.read_rows``, as the leaderboard reads it):
    malformed (torn, damaged) lines are reported with their line numbers and skipped, their runs
    are simply run again, and a damaged line (say, a stray quote) never swallows the rows after
    it."""
    path = Path(out) / "runs.csv"
    check_location(path, write=True, access=False)  # a FIFO, a link to nothing: refused now
    if not path.exists() or path.stat().st_size == 0 or _torn_header(path, RUN_COLUMNS):
        return {}  # a header cut short by a killed writer: no rows yet (as every reader says)
    header = _read_header(path)
    foreign = [c for c in header if c not in RUN_COLUMNS]
    if foreign or "config_id" not in header or "status" not in header:
        what = ", ".join(foreign[:4]) or "no config_id/status"
        raise ResultsFileError(f"{path} has columns that are not seqbench's ({what}...); "
                               "refusing to add runs to it, file untouched")
    seen: dict[str, str] = {}
    for row in read_rows(path):
        cid = row["config_id"]
        if cid and seen.get(cid) not in FINISHED:
            seen[cid] = row["status"]
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


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    text = f"{type(error).__name__}: {text}"
    return text if len(text) <= 500 else text[:497] + "..."


def failed_row(cfg: RunConfig, error: str, started_at: str, wall_s: float) -> dict:
    return {
        "run_id": f"{cfg.run_name()}-failed",
        "config_id": cfg.config_id(),
        "started_at": started_at,
        **cfg.columns(),  # no device column: where a failed run would have run is unknown
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
    worker: int | None = None  # local: the worker's process id
    gpu: str | None = None  # local with per_gpu: the worker's CUDA_VISIBLE_DEVICES (its GPU)
    resumed: bool = False  # continued from a checkpoint an earlier sweep left in its run folder


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


#: Outcome.status of a config that another process runs (its claim is live): not run here
RUNNING_ELSEWHERE = "running elsewhere"
#: Outcome.status of a config that another process recorded after this sweep planned: not run
RECORDED_MEANWHILE = "recorded meanwhile"
#: Outcome.status of a run that finished but whose row could not be appended (a full disk): its
#: row is kept (runner.RowNotRecorded) and ``seqbench run --resume RUN_DIR`` records it
NOT_RECORDED = "not recorded"


def _recorded_now(cfg: RunConfig, out: str, retry_failed: bool) -> str | None:
    """The status OUT/runs.csv records for ``cfg`` now, when that means it must not run again
    (as ``plan_sweep`` decides); None when it is to run. A damaged runs.csv is left to the run's
    own append to report: this check is to skip work, never to stop it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # malformed lines: the sweep reported them already
            status = recorded(out).get(cfg.config_id())
    except (ConfigError, OSError):
        return None
    if status is None or (retry_failed and status in RETRY_STATUSES):
        return None
    return status


def run_one(cfg: RunConfig, out: str, retry_failed: bool = False,
            checkpoint_every: int = 0) -> Outcome:
    """Train one run into ``out`` and append its row (a failed row if it raises).

    First the config is claimed (seqbench.claims) and runs.csv read again: a config that another
    process runs now, or recorded since the sweep planned, is skipped (Outcome.status
    RUNNING_ELSEWHERE, RECORDED_MEANWHILE), so concurrent sweeps of one spec record each config
    once. The claim is released after the row is appended.

    A run whose folder holds a checkpoint (an earlier sweep with ``checkpoint_every`` > 0 that was
    stopped or killed mid-run) continues from it, as ``seqbench run --resume`` would: on a CPU its
    row is the one an uninterrupted run writes. With ``checkpoint_every`` a new run saves its state
    every that many steps; a finished run's checkpoint is removed (it was kept to continue the
    run, and runs.csv and the run folder hold its results)."""
    from seqbench.runner import (
        CHECKPOINT,
        CheckpointUnusable,
        RowNotRecorded,
        checkpointed_run_dir,
        execute_run,
    )

    if _orphaned():  # the sweep that queued this run is gone: start nothing new
        os._exit(0)
    cid = cfg.config_id()
    me = {"worker": os.getpid(), "gpu": _WORKER["gpu"]}
    try:
        claim = claims.claim_config(out, cid, parent=_WORKER["parent"])
    except OSError:  # no room even for a claim (a full disk): run unclaimed, the row is kept
        claim = None
    if isinstance(claim, dict):
        return Outcome(cid, RUNNING_ELSEWHERE, f"{describe(cfg)}: running elsewhere "
                       f"({claims.describe_holder(claim)}); not run here", 0.0, **me)
    _WORKER["busy"], _WORKER["claim"] = True, claim
    started_at, t0 = _now(), time.perf_counter()
    try:
        status = _recorded_now(cfg, out, retry_failed)  # after claiming: see seqbench.claims
        if status is not None:
            return Outcome(cid, RECORDED_MEANWHILE, f"{describe(cfg)}: recorded meanwhile by "
                           f"another process (status {status}); not run here", 0.0, **me)
        row, summary, started_over = None, "", ""
        resume_dir = checkpointed_run_dir(out, cfg)
        if resume_dir is not None:
            try:
                row, summary = _continue(cfg, resume_dir)
            except CheckpointUnusable as e:  # damaged, say: the run starts over in a new folder
                started_over = f"; started over: the checkpoint in {resume_dir} cannot be used ({e})"
        resumed = row is not None
        if row is None:
            row, summary = execute_run(cfg, out, quiet=True, checkpoint_every=checkpoint_every)
            summary += started_over
        if row["status"] in FINISHED:
            with contextlib.suppress(OSError):
                (Path(row["run_dir"]) / CHECKPOINT).unlink(missing_ok=True)
        return Outcome(cid, str(row["status"]), summary, time.perf_counter() - t0,
                       resumed=resumed, **me)
    except claims.RunFolderBusy as e:  # a `seqbench run --resume` of its folder runs now
        return Outcome(cid, RUNNING_ELSEWHERE, f"{describe(cfg)}: running elsewhere ({e}); "
                       "not run here", 0.0, **me)
    except RowNotRecorded as e:  # finished, its row kept elsewhere: not a failure of the run
        return Outcome(cid, NOT_RECORDED, f"{describe(cfg)}: {one_line(e)}",
                       time.perf_counter() - t0, **me)
    except Exception as e:
        wall = time.perf_counter() - t0
        error = one_line(e)
        append_rows(Path(out) / "runs.csv", [failed_row(cfg, error, started_at, wall)], RUN_COLUMNS)
        return Outcome(cid, "failed", f"{describe(cfg)}: failed: {error}", wall, **me)
    finally:
        _WORKER["busy"], _WORKER["claim"] = False, None
        if claim is not None:
            claims.release(claim)
        if _orphaned():  # its row is written; nobody will collect the result
            os._exit(0)


def _continue(cfg: RunConfig, run_dir: Path) -> tuple[dict, str]:
    """Continue the run in ``run_dir`` from its checkpoint: its row and summary. Raises
    runner.CheckpointUnusable when the checkpoint cannot be used."""
    from seqbench.runner import checkpoint_step, resume_run

    step = checkpoint_step(run_dir)
    row, summary = resume_run(run_dir, quiet=True, device=cfg.device, threads=cfg.threads)
    return row, f"{summary} (continued from its checkpoint at step {step})"


def run_detached(cfg: RunConfig) -> Outcome:
    """Train one run in a scratch folder (a Ray task); return its row and run-folder files."""
    from seqbench.runner import execute_run

    malloc.tune()  # a Ray worker process is not seqbench's: tune it here (seqbench.malloc)
    denormals.flush()  # and flush denormals to zero (seqbench.denormals)
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


#: how local workers start: a fresh interpreter each (CUDA and torch's thread pools cannot be
#: forked safely); the tests of seqbench.claims fork their tiny runs' workers, to start at once
START_METHOD = "spawn"

#: a local worker's state: the sweep process that started it, whether a run is in progress, the
#: GPU it is pinned to (per_gpu)
_WORKER: dict = {"parent": None, "busy": False, "gpu": None, "claim": None}


def _orphaned() -> bool:
    return _WORKER["parent"] is not None and os.getppid() != _WORKER["parent"]


def _watch_parent() -> None:
    """A worker's watcher thread: exits the worker as soon as its sweep is gone, even mid-run
    (where the kernel does not do it already, seqbench.claims.die_with_parent), and touches the
    claim of the run in progress every claims.HEARTBEAT seconds."""
    last = time.monotonic()
    while True:
        time.sleep(1.0)
        if _orphaned():
            os._exit(0)
        claim = _WORKER["claim"]
        if claim is not None and time.monotonic() - last >= claims.HEARTBEAT:
            claim.touch()
            last = time.monotonic()


def _init_worker(parent: int, gpu_slots=None) -> None:
    """Worker initializer. Ctrl-C is handled by the sweep process, which stops the workers. If
    the sweep process dies (SIGKILL), its workers die with it, mid-run: the kernel kills them
    (PR_SET_PDEATHSIG, Linux) or their watcher thread exits them within a second. A worker left
    to finish would append its row after a restarted sweep had planned to run the same config,
    which then ran twice; the killed run's claim is stale and the next sweep runs it again.

    gpu_slots: a queue of GPU ids (per_gpu), one per worker: the worker takes one and makes it its
    only visible GPU. This must happen before any CUDA call: CUDA reads CUDA_VISIBLE_DEVICES once,
    when it initializes (importing torch does not initialize it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    claims.die_with_parent()
    if os.getppid() != parent:  # the sweep died before the line above took effect
        os._exit(0)
    if gpu_slots is not None:
        gpu = gpu_slots.get(timeout=60)
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        _WORKER["gpu"] = gpu
    malloc.tune()  # as in the sweep process (seqbench.malloc); spawned workers start untuned
    denormals.flush()  # before torch's threads start: they inherit it (seqbench.denormals)
    _WORKER["parent"] = parent
    threading.Thread(target=_watch_parent, name="seqbench-watch-parent", daemon=True).start()


class _Stop(KeyboardInterrupt):
    """SIGTERM during a sweep: stop like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_stops():
    """Within the block, SIGTERM raises _Stop in the main thread (so the workers get stopped).

    A signal the sweep was started with ignored stays ignored, as in ``seqbench run``
    (seqbench.runner._stop_on_signals): Python installs its Ctrl-C handler only when SIGINT is
    not ignored at startup (``trap '' INT``, a shell's background job), and SIGTERM follows the
    same rule here."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
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
    workers: int = 0  # local: worker processes started (with per_gpu: those pinned to a GPU)
    outcomes: list[Outcome] = field(default_factory=list)  # of the runs run now (no files)
    rows_written: int | None = None  # lines runs.csv grew by during the sweep (None: not counted)
    elsewhere: int = 0  # not run: another process held the config's claim (RUNNING_ELSEWHERE)
    meanwhile: int = 0  # not run: recorded by another process after planning (RECORDED_MEANWHILE)
    resumed: int = 0  # of the runs run now, those continued from a checkpoint

    @property
    def ran(self) -> int:
        return sum(self.statuses.values())

    def summary(self, out: str | os.PathLike) -> str:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(self.statuses.items()))
        head = "sweep interrupted" if self.interrupted else "sweep"
        line = (f"{head}: ran {self.ran} run(s)" + (f" ({parts})" if parts else "")
                + (f", {self.resumed} of them continued from a checkpoint" if self.resumed else "")
                + f", skipped {self.skipped} already recorded"
                + (f", {self.elsewhere} running elsewhere" if self.elsewhere else "")
                + (f", {self.meanwhile} recorded meanwhile by another process"
                   if self.meanwhile else "")
                + f", {format_duration(self.seconds)}; results in {Path(out) / 'runs.csv'}")
        extra = (self.rows_written or 0) - self.ran
        if self.rows_written is not None and extra > 0 and (self.elsewhere or self.meanwhile):
            line += f"; {self.rows_written} rows written to it meanwhile ({extra} by other processes)"
        elif self.rows_written is not None and extra > 0:  # runs in flight when it stopped
            line += (f"; {self.rows_written} rows written ({extra} by runs still going when the "
                     "sweep stopped, not counted above)")
        if self.interrupted:
            line += "; run the same command again to resume"
        return line


class _RunProgress:
    """How far the runs in flight are: the step of the last evaluation in their run folder's
    curve.csv over their step budget, read at most every ``READ_EVERY`` seconds a run. A run that
    continues from a checkpoint starts past 0: ``first`` keeps where each run was when first
    seen, so that only the steps trained in this sweep count towards its rate."""

    READ_EVERY = 5.0

    def __init__(self, out: Path):
        self.out = out
        self.first: dict[str, float] = {}
        self._read: dict[str, tuple[float, float]] = {}  # config id -> (when read, fraction)

    def fraction(self, cfg: RunConfig) -> float:
        cid, now = cfg.config_id(), time.monotonic()
        when, value = self._read.get(cid, (-math.inf, 0.0))
        if now - when >= self.READ_EVERY:
            value = _curve_fraction(self.out, cfg)
            self._read[cid] = (now, value)
        self.first.setdefault(cid, value)
        return value

    def finished(self, cid: str) -> float:
        """The part of a finished run trained in this sweep (1 when it was never seen running)."""
        self._read.pop(cid, None)
        return 1.0 - self.first.pop(cid, 0.0)


def _curve_fraction(out: Path, cfg: RunConfig) -> float:
    """The last evaluated step of ``cfg``'s newest run folder under OUT/runs over its budget (0
    when there is none yet)."""
    from seqbench.runner import run_dirs

    curves = []
    for folder in run_dirs(out, cfg):
        with contextlib.suppress(OSError):
            curves.append(((folder / "curve.csv").stat().st_mtime, folder.name, folder / "curve.csv"))
    if not curves:
        return 0.0
    try:
        with open(max(curves)[2], "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            last = f.read().splitlines()[-1].decode("utf-8", "replace")
        return min(max(int(last.split(",", 1)[0]) / max(cfg.steps, 1), 0.0), 1.0)
    except (OSError, IndexError, ValueError):  # no evaluation yet (the header alone), a torn line
        return 0.0


class _Tracker:
    """Counts outcomes and redraws the progress line: done, running (and how far, when the run
    folders are local), failed, time left. The time left counts the runs in flight by the steps
    they have trained, so a sweep of a few long runs has an estimate before its first run ends."""

    def __init__(self, total: int, workers: int, stream, report: Callable[[str], None] | None,
                 out: Path | None = None):
        self.total, self.workers = total, max(workers, 1)
        self.bar = ProgressLine(total, "sweep", stream=stream, unit="run")
        self.report = report
        self.t0 = time.perf_counter()
        self.statuses: dict[str, int] = {}
        self.outcomes: list[Outcome] = []
        self.done = 0
        self.progress = _RunProgress(out) if out is not None else None
        self.work = 0.0  # runs' worth of training done in this sweep by the runs that ended

    @property
    def failed(self) -> int:
        return self.statuses.get("failed", 0)

    def draw(self, running: Sequence[RunConfig] = ()) -> None:
        """``running``: the configs in flight (local executor), whose progress is read."""
        n_running = min(self.workers, self.total - self.done)
        running = list(running)[:n_running]  # the pool queues one call ahead of its workers
        elapsed = time.perf_counter() - self.t0
        now = [self.progress.fraction(cfg) for cfg in running] if self.progress else []
        trained = self.work + sum(f - self.progress.first[c.config_id()]
                                  for f, c in zip(now, running))
        left = self.total - self.done - sum(now)
        eta = format_duration(elapsed * left / trained) if trained > 0 else "?"
        at = f" (at {', '.join(f'{f:.0%}' for f in now)})" if any(now) else ""
        text = f"done {self.done}, running {n_running}{at}, failed {self.failed}"
        if self.statuses.get("diverged"):
            text += f", diverged {self.statuses['diverged']}"
        self.bar.update(self.done, f"{text} | {format_duration(elapsed)} elapsed, ETA {eta}",
                        force=True)

    def add(self, outcome: Outcome) -> None:
        self.done += 1
        self.statuses[outcome.status] = self.statuses.get(outcome.status, 0) + 1
        self.outcomes.append(replace(outcome, files={}))  # the files are written; keep no copy
        finished = self.progress.finished(outcome.config_id) if self.progress else 1.0
        if outcome.status not in (RUNNING_ELSEWHERE, RECORDED_MEANWHILE):  # took no time here
            self.work += finished
        if self.report is not None:
            self.bar.close()
            try:
                self.report(outcome.summary)
            except (BrokenPipeError, ValueError):  # its reader went away: the sweep goes on
                self.report = None
        self.draw()


def run_sweep(
    configs: Sequence[RunConfig],
    out: str | os.PathLike = DEFAULT_OUT,
    workers: int | None = None,
    threads: int = 1,
    executor: str = "local",
    address: str | None = None,
    retry_failed: bool = False,
    gpus_per_run: float = 0.0,
    per_gpu: int = 0,
    gpu_count: int | None = None,
    progress_stream=None,
    report: Callable[[str], None] | None = None,
    checkpoint_every: int = 0,
) -> SweepResult:
    """Run every config of ``configs`` not yet recorded in OUT/runs.csv.

    workers: local worker processes (default 1); for a local Ray instance its CPU count (default:
    all). threads: torch threads per run. per_gpu: local only, N worker processes per GPU instead
    of ``workers``, each pinned to its GPU; gpu_count: the GPUs to use (default: all,
    ``torch.cuda.device_count()``). report(line) gets each run's one-line summary as it ends.
    checkpoint_every: local only, each run saves its state every that many steps, so that a run in
    flight when the sweep stops (Ctrl-C, SIGTERM, a killed session) continues from there when the
    same sweep runs again (``run_one``); 0: runs in flight are lost and start over.
    Ctrl-C stops the workers and returns with ``interrupted`` set.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if threads < 1:
        raise ConfigError(f"threads per worker must be >= 1, got {threads}")
    if address is not None and executor != "ray":
        raise ConfigError("--address applies to --executor ray only")
    check_checkpointing(checkpoint_every, executor)
    gpu_ids = check_packing(per_gpu, executor, workers, gpu_count) if per_gpu else []
    if executor == "ray":
        require_ray()
    out = Path(out)
    plan = plan_sweep(configs, out, retry_failed=retry_failed)
    todo = [replace(cfg, threads=threads) for cfg in plan.todo]
    result = SweepResult(total=len(configs), skipped=len(plan.done))
    lines_before = max(_line_count(out / "runs.csv"), 1)  # a new file gets its header too
    t0 = time.perf_counter()
    if todo:
        # Ray first: a cluster that cannot be reached must leave no empty OUT folder behind
        ray_started = _connect_ray(workers, address) if executor == "ray" else False
        out.mkdir(parents=True, exist_ok=True)
        n = per_gpu * len(gpu_ids) if per_gpu else workers or 1
        if executor == "ray":
            n = workers or os.cpu_count() or 1
        tracker = _Tracker(len(todo), n, progress_stream, report,
                           out=out if executor == "local" else None)
        tracker.draw()
        try:
            with _sigterm_stops():
                if executor == "local":
                    result.workers = _run_local(todo, out, n, tracker, gpu_slots(gpu_ids, per_gpu),
                                                retry_failed, checkpoint_every)
                else:
                    _run_ray(todo, out, threads, gpus_per_run, tracker, ray_started)
        except KeyboardInterrupt as e:
            result.interrupted = True
            result.signal = signal.SIGTERM if isinstance(e, _Stop) else signal.SIGINT
        finally:
            tracker.bar.close()
        skipped_now = (RUNNING_ELSEWHERE, RECORDED_MEANWHILE)  # counted apart: not run here
        result.statuses = {s: n for s, n in tracker.statuses.items() if s not in skipped_now}
        result.elsewhere = tracker.statuses.get(RUNNING_ELSEWHERE, 0)
        result.meanwhile = tracker.statuses.get(RECORDED_MEANWHILE, 0)
        result.outcomes = tracker.outcomes
        result.resumed = sum(o.resumed for o in tracker.outcomes)
    result.seconds = time.perf_counter() - t0
    if todo:
        result.rows_written = _line_count(out / "runs.csv") - lines_before
    return result


def _line_count(path: Path) -> int:
    """Lines of a runs.csv (its rows plus the header; 0 when absent): cheap, one read."""
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def check_checkpointing(checkpoint_every: int, executor: str) -> None:
    """``checkpoint_every``: steps between a run's saved states (0: none); local executor only."""
    if checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {checkpoint_every}")
    if checkpoint_every and executor != "local":
        raise ConfigError("--checkpoint-every applies to --executor local only (a Ray task trains "
                          "in a scratch folder on its node, which does not outlive it)")


def check_packing(per_gpu: int, executor: str, workers: int | None,
                  gpu_count: int | None = None) -> list[str]:
    """Check ``per_gpu`` (N runs packed per GPU) and return the ids of the GPUs to pack them on.

    The ids are those the sweep process sees: with CUDA_VISIBLE_DEVICES set (e.g. "2,3"), its
    entries, as a worker's own CUDA_VISIBLE_DEVICES must name a physical GPU."""
    if per_gpu < 1:
        raise ConfigError(f"--per-gpu must be >= 1, got {per_gpu}")
    if executor != "local":
        raise ConfigError("--per-gpu applies to --executor local only; with --executor ray use "
                          "--gpus-per-run 1/N (e.g. 0.25 for 4 runs per GPU)")
    if workers is not None:
        raise ConfigError("--per-gpu N sets the workers (N per GPU); give --per-gpu or --workers, "
                          "not both")
    if gpu_count is None:
        import torch

        gpu_count = torch.cuda.device_count()
    if gpu_count < 1:
        raise ConfigError("--per-gpu needs a CUDA device and none is available here; allowed: "
                          "--workers N without --per-gpu")
    visible = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return (visible or [str(i) for i in range(gpu_count)])[:gpu_count]


def gpu_slots(gpu_ids: list[str], per_gpu: int) -> list[str]:
    """One GPU id per worker, N per GPU, round-robin: a pool smaller than N x GPUs (fewer runs
    than slots) still spreads its workers over the GPUs."""
    return [gpu for _ in range(per_gpu) for gpu in gpu_ids]


def _run_local(todo: list[RunConfig], out: Path, workers: int, tracker: _Tracker,
               slots: list[str], retry_failed: bool = False, checkpoint_every: int = 0) -> int:
    """Run ``todo`` in a pool of worker processes; return how many workers started (with
    ``slots``: how many took a GPU slot)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context(START_METHOD)
    size = min(workers, len(todo))
    queue = None
    if slots:  # handed out through a queue: each worker process takes exactly one
        queue = ctx.Queue()
        for gpu in slots[:size]:
            queue.put(gpu)
    pool = ProcessPoolExecutor(max_workers=size, mp_context=ctx,
                               initializer=_init_worker, initargs=(os.getpid(), queue))
    pending = {pool.submit(run_one, cfg, str(out), retry_failed, checkpoint_every): cfg
               for cfg in todo}
    try:
        while pending:
            finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            if not finished:  # the clock moves on, and the runs in flight
                tracker.draw([cfg for future, cfg in pending.items() if future.running()])
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
    return size - _drain(queue) if queue is not None else size


def _drain(queue) -> int:
    """Take what is left in ``queue`` (the GPU slots no worker took); return how many."""
    import queue as queues

    left = 0
    while True:
        try:
            queue.get(timeout=0.1)
        except queues.Empty:
            break
        left += 1
    queue.close()
    return left


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


def _connect_ray(workers: int | None, address: str | None) -> bool:
    """Connect to the Ray cluster at ``address`` or start a local instance (unless this process
    is connected already); return whether it connected now (then ``_run_ray`` shuts it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "warning"}
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers or os.cpu_count() or 1, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise SweepError(f"cannot connect to {where}: {one_line(e)}") from None
    return True


def _run_ray(todo: list[RunConfig], out: Path, threads: int, gpus_per_run: float,
             tracker: _Tracker, started: bool) -> None:
    ray = require_ray()
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
