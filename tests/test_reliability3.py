"""Reliability (issue 18, items 1 and 4): a full disk never loses a finished run's row, and no run
is recorded twice: concurrent sweeps of one spec, a sweep restarted right after a kill -9 of the
last one, and two concurrent resumes of one run folder each record every config once.

Real processes where it matters (forked children, which start at once; the sweeps' workers are
spawned as in real use). Nothing waits on a fixed sleep: the tests poll files and processes with
deadlines."""

import contextlib
import errno
import json
import multiprocessing
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from reliability_helpers import interrupt

import seqbench.results as results_module
import seqbench.runner as runner
import seqbench.sweep as sweep_module
from seqbench import claims
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.results import RUN_COLUMNS, append_rows, read_rows
from seqbench.sweep import RECORDED_MEANWHILE, RUNNING_ELSEWHERE, run_one, run_sweep


def tiny(**kw) -> RunConfig:
    base = dict(task="adding", seq_len=5, cell=CellConfig("lstm", hidden=4), batch_size=4,
                steps=2, eval_every=1, eval_size=8, test_size=8, until_solved=False,
                device="cpu", threads=1)
    base.update(kw)
    return RunConfig(**base).validate()


def rows(out: Path) -> list[dict]:
    path = out / "runs.csv"
    return read_rows(path) if path.exists() else []


def wait_for(condition, timeout: float, what: str):
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)


def fork_ctx():
    return multiprocessing.get_context("fork")  # children start at once: torch is imported


@contextlib.contextmanager
def forking():
    with warnings.catch_warnings():  # Python >= 3.12 warns about fork in a threaded process
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        yield


# -- item 1: a full disk loses no finished row ------------------------------------------------

def _full_disk(monkeypatch, out: Path, everywhere: bool) -> None:
    """From the moment the run's curve.csv has two lines, every write under ``out`` (and, with
    ``everywhere``, every write at all) fails with ENOSPC, as on the issue's 300 KB tmpfs:
    appends (os.write in seqbench.results) and whole-file writes (Path.write_text)."""
    out = out.resolve()

    def full(path) -> bool:
        if not everywhere and not str(Path(path).resolve()).startswith(str(out)):
            return False
        return any(len(p.read_text().splitlines()) >= 2 for p in out.glob("runs/*/curve.csv"))

    real_write, real_write_text = os.write, Path.write_text

    def write(fd, data):
        if full(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def write_text(self, *args, **kwargs):
        if full(self):
            real_write_text(self, "")  # the file is created, then nothing fits: an empty file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(results_module.os, "write", write)
    monkeypatch.setattr(Path, "write_text", write_text)


@pytest.mark.parametrize("where", ["temp folder", "nowhere"])
def test_full_disk_keeps_the_finished_row_and_resume_records_it(tmp_path, monkeypatch, where):
    """Issue 18.1: runs.csv and the run folder on a full disk; the row goes to the system temp
    folder (or, when that is full too, into the error line itself), the error says where in one
    line, no row.tmp stays, and `run --resume DIR` records the row without training again."""
    out = tmp_path / "out"
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path / "tmp"))
    disk = pytest.MonkeyPatch()
    _full_disk(disk, out, everywhere=where == "nowhere")
    args = ["run", "--task", "adding", "--cell", "gru", "--seq-len", "5", "--hidden", "4",
            "--batch-size", "4", "--steps", "6", "--eval-every", "1", "--eval-size", "8",
            "--test-size", "8", "--no-until-solved", "--threads", "1", "--quiet", "--out", str(out)]
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        disk.undo()  # the disk has room again
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: No space left on device"), lines
    (run_dir,) = (out / "runs").iterdir()
    assert f"seqbench run --resume {run_dir}" in lines[0]
    assert not (out / "runs.csv").exists() or rows(out) == []
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "curve.csv"]  # no row.tmp
    fallback = runner.kept_row_fallback(run_dir)
    if where == "temp folder":
        assert f"the row is kept in {fallback}" in lines[0]
        assert json.loads(fallback.read_text())["run_id"] == run_dir.name
    else:  # the row itself, on the error line: save it as row.json, then resume
        assert not fallback.exists()
        row = json.loads(lines[0][lines[0].index("{"):])
        assert row["run_id"] == run_dir.name and row["status"] == "ok"
        (run_dir / "row.json").write_text(json.dumps(row))
    curve = (run_dir / "curve.csv").read_bytes()

    resumed = CliRunner().invoke(cli, ["run", "--resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert "recorded its kept row" in resumed.output
    (recorded,) = rows(out)
    assert recorded["run_id"] == run_dir.name and recorded["status"] == "ok"
    assert recorded["steps_taken"] == "6"
    assert (run_dir / "curve.csv").read_bytes() == curve  # not trained again
    assert not fallback.exists() and not (run_dir / "row.json").exists()
    again = CliRunner().invoke(cli, ["run", "--resume", str(run_dir)])
    assert again.exit_code == 2 and "already finished (status ok)" in again.output


# -- item 4: claims ------------------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write_claim(out: Path, config_id: str, **data) -> Path:
    path = out / claims.CLAIMS / f"{config_id}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_claims_of_live_processes_hold_and_stale_ones_are_taken_over(tmp_path):
    host = claims._host()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        start = claims._start_time(sleeper.pid)
        _write_claim(tmp_path, "live", pid=sleeper.pid, host=host, start=start)
        held = claims.claim_config(tmp_path, "live")
        assert isinstance(held, dict) and held["pid"] == sleeper.pid
        # the same pid with another start time is another process (a reused pid): stale
        _write_claim(tmp_path, "reused", pid=sleeper.pid, host=host, start=start + 1)
        assert isinstance(claims.claim_config(tmp_path, "reused"), claims.Claim)
        # a live worker whose sweep is gone is dying with it (PR_SET_PDEATHSIG): stale
        _write_claim(tmp_path, "orphan", pid=sleeper.pid, host=host, start=start,
                     parent=_dead_pid())
        assert isinstance(claims.claim_config(tmp_path, "orphan"), claims.Claim)
        _write_claim(tmp_path, "child", pid=sleeper.pid, host=host, start=start,
                     parent=os.getpid())
        assert isinstance(claims.claim_config(tmp_path, "child"), dict)
    finally:
        sleeper.kill()
        sleeper.wait()
    _write_claim(tmp_path, "dead", pid=_dead_pid(), host=host, start=1)
    _write_claim(tmp_path, "torn", pid=1)  # a claimant killed while writing: no host
    other = _write_claim(tmp_path, "remote", pid=1, host=host + "-elsewhere", start=1)
    assert isinstance(claims.claim_config(tmp_path, "remote"), dict)  # fresh: its run goes on
    old = time.time() - claims.STALE_AFTER - 1
    os.utime(other, (old, old))  # its heartbeat stopped
    for cid in ("dead", "torn", "remote"):
        mine = claims.claim_config(tmp_path, cid)
        assert isinstance(mine, claims.Claim), cid
        assert json.loads(mine.path.read_text())["pid"] == os.getpid()
        claims.release(mine)
        assert not mine.path.exists()


def test_a_worker_skips_a_claimed_config_and_one_recorded_meanwhile(tmp_path):
    """What a sweep's worker checks right before it starts a config."""
    out = tmp_path / "out"
    a, b = tiny(seed=0), tiny(seed=1)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        _write_claim(out, a.config_id(), pid=sleeper.pid, host=claims._host(),
                     start=claims._start_time(sleeper.pid))
        outcome = run_one(a, str(out))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert outcome.status == RUNNING_ELSEWHERE and f"pid {sleeper.pid}" in outcome.summary
    # another sweep recorded b after this one planned it: read again, not run
    append_rows(out / "runs.csv", [{"config_id": b.config_id(), "status": "ok"}], RUN_COLUMNS)
    assert run_one(b, str(out)).status == RECORDED_MEANWHILE
    assert len(rows(out)) == 1 and not (out / "runs").exists()
    # the claim of the now dead sleeper is stale: the config runs, and its claim is released
    assert run_one(a, str(out)).status == "ok"
    assert [r["config_id"] for r in rows(out)] == [b.config_id(), a.config_id()]
    assert not list((out / claims.CLAIMS).glob("*.claim"))


# -- item 4: concurrent sweeps, a killed sweep, concurrent resumes ------------------------------

def _sweep_child(configs, out, workers, barrier, results):
    warnings.simplefilter("ignore")
    sweep_module.START_METHOD = "fork"  # in this child only: its worker starts at once
    barrier.wait(timeout=60)
    result = run_sweep(configs, out, workers=workers)
    results.put((result.ran, result.elsewhere, result.meanwhile, result.summary(out)))


def test_two_concurrent_sweeps_record_each_config_once(tmp_path):
    """Issue 18.4a: two sweeps of one spec into one --out at once (the issue: 24 rows for 12
    configs). Each config is claimed before it runs; the other sweep skips it. (Their workers are
    forked here, to start at once; the next test spawns them, as a real sweep does.)"""
    out = tmp_path / "out"
    configs = [tiny(seed=s) for s in range(12)]
    ctx = fork_ctx()
    barrier, results = ctx.Barrier(2), ctx.Queue()
    with forking():
        procs = [ctx.Process(target=_sweep_child, args=(configs, out, 1, barrier, results))
                 for _ in range(2)]
        for p in procs:
            p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    ids = sorted(r["config_id"] for r in rows(out))
    assert ids == sorted(c.config_id() for c in configs), f"{len(ids)} rows for 12 configs"
    assert sum(ran for ran, *_ in got) == 12
    for ran, elsewhere, meanwhile, summary in got:
        assert ran + elsewhere + meanwhile == 12, summary
        if elsewhere:
            assert f"{elsewhere} running elsewhere" in summary
    assert not list((out / claims.CLAIMS).glob("*.claim"))


def _children(pid: int) -> list[int]:
    """The sweep's worker processes: its children started by multiprocessing's spawn."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(text[text.rfind(")") + 2:].split()[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _in_flight(out: Path) -> list[str]:
    """Run folders with a learning curve under way and no row yet: runs in progress."""
    done = {r["run_id"] for r in rows(out)}
    return [d.name for d in (out / "runs").glob("*")
            if d.name not in done and (d / "curve.csv").is_file()
            and len((d / "curve.csv").read_text().splitlines()) >= 2] \
        if (out / "runs").is_dir() else []


def _kill_child(configs, out):
    warnings.simplefilter("ignore")
    run_sweep(configs, out, workers=2)


def test_sweep_restarted_right_after_kill_9_records_each_config_once(tmp_path):
    """Issue 18.4b: SIGKILL of the sweep while its 2 workers train, then the same sweep at once
    (the issue: orphaned workers finished and recorded their runs too, 8 rows for 6 configs).
    The workers die with the sweep; the restarted sweep takes their stale claims over."""
    out = tmp_path / "out"
    configs = [tiny(seed=s, steps=60, eval_every=5) for s in range(4)]
    ctx = fork_ctx()
    with forking():
        sweep = ctx.Process(target=_kill_child, args=(configs, out))
        sweep.start()
    try:
        killed = wait_for(lambda: _in_flight(out), 120, "a run in progress")
        workers = _children(sweep.pid)
        assert len(workers) == 2, workers
    finally:
        os.kill(sweep.pid, signal.SIGKILL)
        sweep.join()
    # the same sweep at once, as the issue did (its workers forked, to start at once)
    results = ctx.Queue()
    with forking():
        rerun = ctx.Process(target=_sweep_child, args=(configs, out, 2, ctx.Barrier(1), results))
        rerun.start()
    ran, elsewhere, meanwhile, summary = results.get(timeout=120)
    rerun.join(timeout=60)
    assert wait_for(lambda: not any(claims.alive(w) for w in workers), 10, "the workers to end")
    recorded = rows(out)
    ids = sorted(r["config_id"] for r in recorded)
    assert ids == sorted(c.config_id() for c in configs), f"{len(ids)} rows for 4 configs"
    assert ran == len(recorded) and elsewhere == meanwhile == 0, summary
    # the runs the kill stopped were never recorded by their killed workers: rerun in new folders
    assert not {r["run_id"] for r in recorded} & set(killed)


def _resume_child(run_dir, barrier, results):
    warnings.simplefilter("ignore")
    barrier.wait(timeout=60)
    try:
        row, _ = runner.resume_run(run_dir, quiet=True)
        results.put(("ok", row["run_id"]))
    except Exception as e:  # noqa: BLE001  reported to the test
        results.put((type(e).__name__, str(e)))


@pytest.fixture
def stopped(tmp_path) -> Path:
    """An interrupted run (1 of 300 steps done): its folder, with a checkpoint."""
    return interrupt(tiny(steps=300, eval_every=50), tmp_path / "out", after=1)


def test_two_concurrent_resumes_record_one_ok_row(stopped):
    """Issue 18.4c: two `run --resume DIR` at once (the issue: two ok rows with one run_id, or
    `No such file or directory: .curve.csv.tmp`). One resumes; the other refuses in one line
    (or, when it comes after the first ended, finds the run finished)."""
    out = stopped.parent.parent
    # while a process holds the folder, a resume refuses at once, in one line
    with claims.hold_run_folder(stopped):
        busy = CliRunner().invoke(cli, ["run", "--resume", str(stopped)])
    assert busy.exit_code == 2, busy.output
    lines = busy.output.splitlines()
    assert len(lines) == 1 and "being written by another process" in lines[0], lines
    assert f"pid {os.getpid()}" in lines[0]
    ctx = fork_ctx()
    barrier, results = ctx.Barrier(2), ctx.Queue()
    with forking():
        procs = [ctx.Process(target=_resume_child, args=(stopped, barrier, results))
                 for _ in range(2)]
        for p in procs:
            p.start()
    got = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [kind for kind, _ in got] == ["RunFolderBusy", "ok"] \
        or [kind for kind, _ in got] == ["ConfigError", "ok"] and "already finished" in got[0][1], got
    statuses = [r["status"] for r in rows(out) if r["run_id"] == stopped.name]
    assert statuses == ["interrupted", "ok"]
    assert sorted(p.name for p in stopped.iterdir()) == ["checkpoint.pt", "config.json",
                                                         "curve.csv"]


def test_a_sweep_run_whose_row_cannot_be_appended_is_not_recorded_rather_than_failed(
        tmp_path, monkeypatch):
    """A sweep worker's finished run on a full disk: no `failed` row (which would hide the
    result from the next sweep's plan), its row kept for `run --resume`."""
    out = tmp_path / "out"

    def full(path, rows, columns):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    with monkeypatch.context() as mp:
        mp.setattr(runner, "append_rows", full)
        mp.setattr(sweep_module, "append_rows", full)
        outcome = run_one(tiny(), str(out))
    assert outcome.status == sweep_module.NOT_RECORDED, outcome.summary
    assert "the row is kept in" in outcome.summary and not (out / "runs.csv").exists()
    (run_dir,) = (out / "runs").iterdir()
    row, _ = runner.resume_run(run_dir)
    assert [r["run_id"] for r in rows(out)] == [row["run_id"]] == [run_dir.name]
