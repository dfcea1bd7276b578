"""Who is running what: one writer per config in a results folder, one per run folder.

Two sweeps of one spec into one ``--out``, a sweep restarted while the workers of a killed one
still ran, or two ``seqbench run --resume`` of one folder each used to train and record the same
run, so runs.csv held two rows for one config. Three mechanisms stop that:

Config claims (``claim_config``). Before a sweep worker starts a config it creates
``OUT/.claims/<config_id>.claim``, a small JSON file holding its pid, host, the pid's start time
(from /proc, so that a reused pid is not taken for the claimant) and when it claimed. A claim held
by a live process makes every other sweep skip the config ("running elsewhere"). A claim is stale,
and is taken over, when its process is gone (same host: the pid is dead, a zombie, or another
process now; or the sweep that the claimant, a worker, dies with is gone) or, for a claim made
on another host (a shared file system, where the pid cannot be checked), when its file has not
been touched for ``STALE_AFTER`` seconds: the claimant touches it every ``HEARTBEAT`` seconds
while its run goes on. A claim's age alone never makes a claim of this host stale: runs last
days. Claiming, taking over and releasing happen
under an exclusive ``flock`` on ``OUT/.claims/.lock``, so two processes never both win one claim.
After claiming, the worker reads runs.csv again: another sweep may have finished the config
since this sweep planned (the claim is released only after the row is appended, so claim-then-
read cannot miss it).

Workers die with their sweep (``die_with_parent``). On Linux a worker asks the kernel, through
``prctl(PR_SET_PDEATHSIG, SIGKILL)``, to be killed the moment the process that started it ends,
so a ``kill -9`` of the sweep leaves no orphan to finish its run and append a row behind the
back of the next sweep. Elsewhere (macOS has no such call) the worker's watcher thread polls its
parent's pid every second and exits at once when it changed. A killed worker's claim is then
stale and the next sweep takes it over. Ray workers are out of scope: Ray owns their lifetime,
and a Ray sweep's rows are written by its driver.

Run-folder lock (``hold_run_folder``). ``seqbench run`` and ``seqbench run --resume`` hold an
exclusive ``flock`` on ``<run folder>/.run.lock`` (holding the pid) while they write the folder;
a second resume of the folder refuses at once in one line naming the pid that runs it. The kernel
drops a flock when its process dies, so a killed run never blocks its resume. The file is removed
when the holder ends (it is re-checked after locking, so a racing opener of the removed file
retries on the new one).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from seqbench.errors import ConfigError

CLAIMS = ".claims"
RUN_LOCK = ".run.lock"
#: seconds between two touches of a claim by its run (what proves a claim of another host alive)
HEARTBEAT = 60.0
#: a claim of another host untouched for this long is stale (10 heartbeats: a busy file server)
STALE_AFTER = float(os.environ.get("SEQBENCH_CLAIM_STALE_S", 600))


def _host() -> str:
    return socket.gethostname()


def _proc_start(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of ``pid`` from /proc; None when the
    process does not exist or there is no /proc (then only ``os.kill(pid, 0)`` can tell)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return ("gone", 0) if Path("/proc/self/stat").exists() else None
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": the name may hold spaces
    return fields[0], int(fields[19])


def _start_time(pid: int) -> int | None:
    info = _proc_start(pid)
    return info[1] if info and info[0] != "gone" else None


def alive(pid: int, started: int | None = None) -> bool:
    """Whether process ``pid`` of this host still runs: not gone, not a zombie (a dead process
    its parent has not reaped; in a container nobody may ever reap it) and, when ``started`` is
    known, the same process (a reused pid has another start time)."""
    info = _proc_start(pid)
    if info is None:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, start = info
    if state in ("gone", "Z", "X"):
        return False
    return started is None or start == started


@dataclass
class Claim:
    """A claim this process holds on one config of a results folder."""

    path: Path
    token: str  # pid@host:start, to release only our own claim

    def touch(self) -> None:
        """The heartbeat: a claim of another host is alive while its file keeps being touched."""
        with contextlib.suppress(OSError):
            os.utime(self.path)


def _token(pid: int, host: str, start) -> str:
    return f"{pid}@{host}:{start}"


def _read_claim(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # torn (its writer killed mid-write) or damaged: nobody's, so stale


def holder_alive(data: dict, path: Path) -> bool:
    """Whether the process that wrote claim ``data`` (the file ``path``) still runs."""
    pid, host = data.get("pid"), data.get("host")
    if not isinstance(pid, int) or not isinstance(host, str):
        return False
    if host == _host():
        start, parent = data.get("start"), data.get("parent")
        if not alive(pid, start if isinstance(start, int) else None):
            return False
        # a sweep's worker dies with its sweep: once the sweep is gone, the worker is dying
        # (a process that unmaps its memory may still show for some milliseconds), so its
        # claim is stale even before the worker is
        if isinstance(parent, int):
            parent_start = data.get("parent_start")
            return alive(parent, parent_start if isinstance(parent_start, int) else None)
        return True
    try:  # another host: alive while its heartbeat keeps the file fresh
        return time.time() - path.stat().st_mtime < STALE_AFTER
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _claims_locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def describe_holder(data: dict) -> str:
    """e.g. ``pid 4242 on node7 since 2025-01-01T10:00:00+00:00``."""
    return f"pid {data.get('pid')} on {data.get('host')} since {data.get('claimed_at', '?')}"


def claim_config(out: str | os.PathLike, config_id: str,
                 parent: int | None = None) -> Claim | dict:
    """Claim ``config_id`` in results folder ``out`` for this process: the Claim, or the live
    holder's claim data (another process runs it). A stale claim is taken over. ``parent``: the
    sweep process this worker dies with (its claim is stale once that one is gone)."""
    folder = Path(out) / CLAIMS
    path = folder / f"{config_id}.claim"
    pid, host = os.getpid(), _host()
    start = _start_time(pid)
    token = _token(pid, host, start)
    with _claims_locked(folder):
        held = _read_claim(path)
        if held is not None and holder_alive(held, path) \
                and _token(held.get("pid"), held.get("host"), held.get("start")) != token:
            return held
        data = {"pid": pid, "host": host, "start": start, "token": token,
                "claimed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if parent is not None:
            data.update(parent=parent, parent_start=_start_time(parent))
        tmp = folder / f".{config_id}.{pid}.tmp"
        try:
            tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return Claim(path, token)


def release(claim: Claim) -> None:
    """Remove ``claim`` if it is still ours (a stale claim may have been taken over since)."""
    with contextlib.suppress(OSError), _claims_locked(claim.path.parent):
        held = _read_claim(claim.path)
        if held is not None and held.get("token") == claim.token:
            claim.path.unlink()


# -- workers end with their sweep ------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when the thread that started it ends (Linux);
    return whether it is set. The caller still checks that the parent did not end before."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# -- one writer per run folder -------------------------------------------------------------------


class RunFolderBusy(ConfigError):
    """Another process is writing the run folder (running or resuming it)."""


@contextlib.contextmanager
def hold_run_folder(run_dir: str | os.PathLike):
    """Hold ``<run_dir>/.run.lock`` (an exclusive, non-blocking flock) for the block; raise
    RunFolderBusy when another process holds it. A folder where no file can be created
    (read-only) is not locked: nothing can be written to it either, and the writes that follow
    say so."""
    path = Path(run_dir) / RUN_LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
                yield
                return
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            raise RunFolderBusy(f"{run_dir} is being written by another process (pid {holder}, "
                                "running or resuming it); refusing to run it twice") from None
        try:  # the file we locked may have been removed by its holder as it ended: try again
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the lock goes: a waiter then finds the file gone, retries
        os.close(fd)
