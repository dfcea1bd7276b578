"""How many torch threads a training process uses when several share the CPU.

Torch's default is one intra-op thread per core. Two runs that each take every core make each
other's OpenMP threads wait for a core at every parallel region: on a 2-core machine two
concurrent ``seqbench run`` took 20-100x longer each than one alone, while with one thread each
they took about what one run takes. So every training process (``seqbench run``, a sweep's worker,
a Ray task) registers itself in a small registry of pid files (``registry_dir()``: one file per
live process, holding its thread count, or ``null`` when it did not fix one), and a process whose
thread count was not given (``--threads``) takes its share of the cores: the cores left by the
processes with a fixed count, divided by the processes without one (``plan_threads``), never more
than torch's default. It looks again every few seconds, so a run that started alone gives up
cores when another starts, and takes them back when the other ends. The first time it takes fewer
threads than torch's default it says so once, on stderr. An explicit ``--threads`` is never
changed.

Torch-free except ``ThreadShare``'s defaults (which read and set torch's thread count).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: the registry's folder instead of the default (tests; machines whose temp folder is not shared)
REGISTRY_ENV = "SEQBENCH_RUNTIME_DIR"
#: seconds between two looks at the registry during a run
CHECK_EVERY_S = 2.0


@dataclass(frozen=True)
class Peer:
    """Another live seqbench training process: its pid and its fixed thread count (None: it
    takes its share, as this one does)."""

    pid: int
    threads: int | None = None


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_threads(cores: int, peers: Sequence[Peer], default: int) -> int:
    """Torch threads for a process without a fixed count that shares ``cores`` with ``peers``
    (the other live training processes, itself not included): the cores the fixed ones leave,
    divided among those without a fixed count, itself included; at least 1, at most ``default``
    (torch's own choice)."""
    fixed = sum(max(1, p.threads) for p in peers if p.threads is not None)
    sharing = 1 + sum(1 for p in peers if p.threads is None)
    return max(1, min(default, (cores - fixed) // sharing))


# -- the registry --------------------------------------------------------------------------------


def registry_dir() -> Path:
    """Where the pid files live: $SEQBENCH_RUNTIME_DIR, else seqbench-<uid>/procs in the temp
    folder (per user: another user's files could not be cleaned up)."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"seqbench-{uid}" / "procs"


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux: /proc/<pid>/stat field 22), so that a pid reused by an
    unrelated process is not taken for a seqbench run; None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    return start is None or _start_time(pid) in (None, start)


def register(threads: int | None, directory: Path | None = None) -> Path | None:
    """Add this process to the registry; return its file (None if the folder cannot be written:
    the run goes on without it)."""
    directory = directory or registry_dir()
    path = directory / str(os.getpid())
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"threads": threads, "start": _start_time(os.getpid())}))
        os.replace(tmp, path)
    except OSError:
        return None
    return path


def unregister(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def peers(directory: Path | None = None, alive: Callable[[int, str | None], bool] = _alive
          ) -> list[Peer]:
    """The other live processes of the registry; files of processes that are gone are removed."""
    directory = directory or registry_dir()
    found = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    for path in entries:
        if not path.name.isdigit() or int(path.name) == os.getpid():
            continue
        pid = int(path.name)
        try:
            data = json.loads(path.read_text())
            threads = data.get("threads")
            start = data.get("start")
        except (OSError, ValueError, AttributeError):
            continue  # being written, or not ours
        if not alive(pid, start):
            unregister(path)
            continue
        found.append(Peer(pid, int(threads) if isinstance(threads, int) else None))
    return found


# -- a training process's share ------------------------------------------------------------------

_warned = False  # once per process


def _torch_get() -> int:
    import torch

    return torch.get_num_threads()


def _torch_set(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _warn(message: str) -> None:
    """One line on stderr, as the command line's warnings are (not warnings.warn: a run must not
    fail where warnings are errors)."""
    try:
        sys.stderr.write(f"Warning: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed stderr
        pass


class ThreadShare:
    """A training process's entry in the registry and its thread count, for a ``with`` block.

    ``threads``: the count the user fixed (set once, never changed), or None: take a share of the
    cores, looked at again by ``poll()`` (call it between training steps, from the thread that
    trains: torch's thread count belongs to it) at most every ``CHECK_EVERY_S`` seconds.
    ``shared=False`` (a run on a GPU, whose CPU work is one thread's): only a fixed count is set,
    nothing is registered or changed. ``used``: the count at the end of the block (the row's).
    ``list_peers``, ``cores``, ``clock``, ``get_threads``/``set_threads`` and ``warn`` can be
    replaced (tests)."""

    def __init__(self, threads: int | None, *, shared: bool = True, directory: Path | None = None,
                 list_peers: Callable[[], Sequence[Peer]] | None = None,
                 cores: int | None = None, clock: Callable[[], float] = time.monotonic,
                 get_threads: Callable[[], int] = _torch_get,
                 set_threads: Callable[[int], None] = _torch_set,
                 warn: Callable[[str], None] = _warn):
        self.fixed = threads
        self.shared = shared
        self.directory = directory
        self.list_peers = list_peers or (lambda: peers(self.directory))
        self.cores = cores or available_cores()
        self.clock, self.get_threads, self.set_threads, self.warn = clock, get_threads, set_threads, warn
        self.default = self.current = self.used = threads or 0
        self._path: Path | None = None
        self._last = float("-inf")

    def __enter__(self) -> ThreadShare:
        if self.fixed is not None:
            self.set_threads(self.fixed)
        else:
            self.default = self.current = self.get_threads()
        if self.shared:
            self._path = register(self.fixed, self.directory)
            self.poll(force=True)
        return self

    def __exit__(self, *exc) -> None:
        self.used = self.fixed if self.fixed is not None else self.current
        unregister(self._path)
        self._path = None
        if self.fixed is None and self.current != self.default:
            self.set_threads(self.default)  # as it was (in-process callers run more than one run)
            self.current = self.default

    def poll(self, force: bool = False) -> int:
        """Take this process's share now (no-op with a fixed count or within CHECK_EVERY_S of the
        last look); return the thread count."""
        if self.fixed is not None or not self.shared:
            return self.current
        now = self.clock()
        if not force and now - self._last < CHECK_EVERY_S:
            return self.current
        self._last = now
        others = list(self.list_peers())
        target = plan_threads(self.cores, others, self.default)
        if target != self.current:
            self.set_threads(target)
            self.current = target
            global _warned
            if target < self.default and not _warned:
                _warned = True
                self.warn(f"{len(others)} other seqbench training process(es) share this "
                          f"machine's {self.cores} cores: using {target} torch thread(s) instead "
                          f"of {self.default}, so that they do not slow each other down (adjusted "
                          "as runs start and end); give --threads N to choose")
        return self.current
