"""Reliability (issue 7): resume is bit-identical, signals stop a run cleanly, checkpoints cannot
run code, same seed gives the same result, killed writers never corrupt a results file, and a full
disk or a read-only folder leaves no half-written row. Real processes where it matters."""

import contextlib
import csv
import dataclasses
import errno
import math
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from reliability_helpers import digest, one_line_error

import seqbench.results as results_module
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.results import RUN_COLUMNS, append_rows, read_results
from seqbench.runner import CHECKPOINT, execute_run, load_checkpoint, save_checkpoint
from seqbench.train import Trainer

CPU = torch.device("cpu")
#: columns that measure time or name the folder: everything else must match bit for bit
TIMING = {"started_at", "wall_s", "train_s", "throughput_seq_s", "run_dir"}
#: a tiny run: hidden 16, T 20; long enough (120 steps) that a signal lands in the middle
RUN_ARGS = ["--task", "adding", "--seq-len", "20", "--hidden", "16", "--batch-size", "16",
            "--eval-every", "7", "--eval-size", "32", "--no-until-solved", "--threads", "1",
            "--quiet"]
STEPS, EVERY = 120, 5  # STEPS % EVERY == 0: the last checkpoint holds the final weights


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without(row, keys=TIMING):
    return {k: v for k, v in row.items() if k not in keys}


def curve_without_time(path):
    return [without(p, {"elapsed_s"}) for p in read_csv(path)]


def assert_same_state(a: dict, b: dict) -> None:
    """Two Trainer.state_dict()s: every tensor equal, every plain value equal."""
    for name, t in a["model"].items():
        assert torch.equal(t, b["model"][name]), name
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for key in sa[k]:
            assert torch.equal(sa[k][key], sb[k][key]), (k, key)
    assert torch.equal(a["train_generator"], b["train_generator"])
    assert a["step"] == b["step"] and a["solved_step"] == b["solved_step"]
    strip = [{k: v for k, v in p.items() if k != "elapsed_s"} for p in a["curve"]]
    assert repr(strip) == repr([{k: v for k, v in p.items() if k != "elapsed_s"}
                                for p in b["curve"]])


# -- resume, in the library ----------------------------------------------------------------------

def tiny(**kw) -> RunConfig:
    base = dict(task="adding", seq_len=20, cell=CellConfig("lstm", hidden=16), batch_size=16,
                steps=30, eval_every=7, eval_size=32, until_solved=False, device="cpu")
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.parametrize("cfg", [
    tiny(),
    tiny(task="copy", seq_len=10, cell=CellConfig("gru", "hand", hidden=16)),
    tiny(cell=CellConfig("rnn", "hand", hidden=16, norm="batch"), clip_mode="value", clip=0.5),
], ids=["lstm-builtin", "gru-hand-copy", "rnn-hand-batchnorm"])
@pytest.mark.parametrize("k", [11, 14])  # between two evaluations, and right after one
def test_interrupted_and_resumed_trainer_is_bit_identical(tmp_path, cfg, k):
    reference = Trainer(cfg, CPU)
    whole = reference.run()

    first = Trainer(cfg, CPU)
    part = first.run(stop=lambda: "stop" if first.step >= k else None,
                     checkpoint=lambda state: save_checkpoint(tmp_path, state))
    assert part.status == "interrupted" and part.steps_taken == k
    assert (tmp_path / CHECKPOINT).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # renamed into place

    second = Trainer(cfg, CPU)
    second.load_state_dict(load_checkpoint(tmp_path))
    assert second.step == k
    rest = second.run()

    assert rest.status == whole.status == "ok" and rest.steps_taken == whole.steps_taken
    for (name, p), q in zip(whole.model.named_parameters(), rest.model.parameters()):
        assert torch.equal(p, q), name
    for (name, p), q in zip(whole.model.named_buffers(), rest.model.buffers()):
        assert torch.equal(p, q), name
    assert repr(whole.final) == repr(rest.final)
    assert (whole.solved, whole.solved_step) == (rest.solved, rest.solved_step)
    strip = [dataclasses.replace(p, elapsed_s=0.0) for p in whole.curve]
    assert repr(strip) == repr([dataclasses.replace(p, elapsed_s=0.0) for p in rest.curve])
    assert_same_state(reference.state_dict(), second.state_dict())


def test_resumed_run_differs_if_the_generator_state_is_not_restored(tmp_path):
    """The comparison above can fail: resuming with a fresh training stream changes the weights."""
    cfg = tiny()
    whole = Trainer(cfg, CPU).run()
    first = Trainer(cfg, CPU)
    first.run(stop=lambda: "stop" if first.step >= 11 else None,
              checkpoint=lambda state: save_checkpoint(tmp_path, state))
    state = load_checkpoint(tmp_path)
    state["train_generator"] = Trainer(cfg, CPU).train_gen.get_state()  # the stream from step 0
    second = Trainer(cfg, CPU)
    second.load_state_dict(state)
    rest = second.run()
    assert not all(torch.equal(p, q) for p, q in zip(whole.model.parameters(),
                                                      rest.model.parameters()))


# -- checkpoints cannot run code -----------------------------------------------------------------

class _Payload:
    """Pickles to a call of os.mkdir: loading it without weights_only would create a folder."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


@pytest.fixture
def finished_run(tmp_path):
    """A real run folder with a checkpoint (2 steps, in-process)."""
    cfg = tiny(steps=2, eval_every=1)
    row, _ = execute_run(cfg, out=tmp_path / "out", quiet=True, checkpoint_every=1)
    return Path(row["run_dir"])


def test_checkpoint_with_code_is_refused_by_the_library(tmp_path, finished_run):
    marker = tmp_path / "pwned"
    torch.save({"model": _Payload(str(marker))}, finished_run / CHECKPOINT)
    with pytest.raises(ConfigError, match=r"refusing to load .*checkpoint\.pt.*mkdir"):
        load_checkpoint(finished_run)
    assert not marker.exists()
    torch.load(finished_run / CHECKPOINT, weights_only=False)  # the test's payload is real:
    assert marker.is_dir()  # loaded without weights_only, the file runs its code


@pytest.mark.parametrize("content", ["code", "garbage", "empty", "truncated", "wrong shape"])
def test_bad_checkpoint_is_a_one_line_cli_error_and_nothing_changes(tmp_path, finished_run,
                                                                     content):
    marker = tmp_path / "pwned"
    path = finished_run / CHECKPOINT
    if content == "code":
        torch.save({"model": _Payload(str(marker))}, path)
    elif content == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        state = load_checkpoint(finished_run)
        state["model"] = {"nonsense": torch.zeros(3)}
        torch.save(state, path)
    out = finished_run.parent.parent
    # a resume needs a run that did not finish: drop its row from runs.csv
    (out / "runs.csv").write_text(",".join(RUN_COLUMNS) + "\n")
    before = digest(out)
    result = CliRunner().invoke(cli, ["run", "--resume", str(finished_run)])
    one_line_error(result, "checkpoint.pt")
    assert not marker.exists()
    assert digest(out) == before


def test_resume_of_a_finished_run_is_refused(finished_run):
    result = CliRunner().invoke(cli, ["run", "--resume", str(finished_run)])
    assert result.exit_code == 2 and "already finished" in result.output


# -- determinism, in-process ---------------------------------------------------------------------

def test_same_seed_and_config_give_bit_identical_runs(tmp_path):
    cfg = tiny(cell=CellConfig("gru", hidden=16), steps=20)
    rows, dirs = [], []
    for name in ("a", "b"):
        row, _ = execute_run(cfg, out=tmp_path / name, quiet=True, checkpoint_every=20)
        rows.append(row)
        dirs.append(Path(row["run_dir"]))
    assert without(rows[0]) == without(rows[1])
    assert math.isfinite(rows[0]["final_loss"])
    assert curve_without_time(dirs[0] / "curve.csv") == curve_without_time(dirs[1] / "curve.csv")
    assert_same_state(load_checkpoint(dirs[0]), load_checkpoint(dirs[1]))
    other, _ = execute_run(dataclasses.replace(cfg, seed=1), out=tmp_path / "c", quiet=True)
    assert other["final_loss"] != rows[0]["final_loss"]


# -- signals and resume, end to end with real processes ------------------------------------------

def _seqbench(*args, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "seqbench", "run", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _start_and_signal(args: list[str], root: Path, signals: dict[str, int]) -> dict:
    """Start one run per entry of ``signals`` at once; send each its signal as soon as its first
    checkpoint exists (it has made progress and its handlers are installed). A run that ended
    before it could be signalled (a very busy machine) is started again, at most twice."""
    procs = {name: _seqbench(*args, out=root / name) for name in signals}
    tries = dict.fromkeys(signals, 1)
    pending = set(signals)
    deadline = time.monotonic() + 180
    try:
        while pending:
            assert time.monotonic() < deadline, f"no checkpoint in time from {sorted(pending)}"
            for name in sorted(pending):
                proc = procs[name]
                if proc.poll() is not None:  # finished (or failed) before the signal
                    out, err = proc.communicate()
                    assert proc.returncode == 0 and tries[name] < 3, (name, out, err)
                    shutil.rmtree(root / name)
                    tries[name] += 1
                    procs[name] = _seqbench(*args, out=root / name)
                elif list((root / name / "runs").glob(f"*/{CHECKPOINT}")):
                    proc.send_signal(signals[name])
                    pending.discard(name)
            time.sleep(0.002)
    except BaseException:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        raise
    return procs


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=180)
    return proc.returncode, stdout, stderr


@pytest.fixture(scope="module")
def signalled(tmp_path_factory):
    """Two real ``seqbench run`` processes, one stopped by SIGINT and one by SIGTERM after their
    first checkpoint; then, through the CLI in this process, both resumed, and the same run
    without interruption (the reference)."""
    root = tmp_path_factory.mktemp("signals")
    args = [*RUN_ARGS, "--steps", str(STEPS), "--checkpoint-every", str(EVERY)]
    threads = torch.get_num_threads()
    procs = _start_and_signal(args, root, {"int": signal.SIGINT, "term": signal.SIGTERM})
    try:
        stopped = {}
        for name, proc in procs.items():
            rc, stdout, stderr = _finish(proc)
            stopped[name] = {"rc": rc, "stdout": stdout, "stderr": stderr,
                             "rows": read_csv(root / name / "runs.csv"),
                             "state": load_checkpoint(_run_dir(root / name))}
        ref = CliRunner().invoke(cli, ["run", *args, "--out", str(root / "ref")])
        resumed = {name: CliRunner().invoke(cli, ["run", "--resume", str(_run_dir(root / name)),
                                                  "-q"]) for name in ("int", "term")}
    finally:
        torch.set_num_threads(threads)
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {"root": root, "ref": ref, "stopped": stopped, "resumed": resumed}


def _run_dir(root: Path) -> Path:
    (run_dir,) = (root / "runs").iterdir()
    return run_dir


@pytest.mark.parametrize("name,sig,code", [("int", signal.SIGINT, 130),
                                           ("term", signal.SIGTERM, 143)])
def test_signal_writes_an_interrupted_row_keeps_a_checkpoint_and_exits_128_plus_signal(
        signalled, name, sig, code):
    stopped = signalled["stopped"][name]
    assert stopped["rc"] == code == 128 + sig, stopped["stderr"]
    assert "Traceback" not in stopped["stderr"]
    (row,) = stopped["rows"]
    steps = int(row["steps_taken"])
    assert row["status"] == "interrupted" and 0 < steps < STEPS
    assert row["solved"] == "False"
    for metric in ("final_loss", "loss_ratio", "accuracy", "wall_s", "train_s"):
        assert math.isfinite(float(row[metric])), metric  # the metrics so far
    assert f"interrupted at step {steps}" in stopped["stdout"]
    assert "seqbench run --resume" in stopped["stdout"]
    assert stopped["state"]["step"] == steps  # the checkpoint is the state the run stopped in


@pytest.mark.parametrize("name", ["int", "term"])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(signalled, name):
    root = signalled["root"]
    resumed = signalled["resumed"][name]
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    assert f"not solved in {STEPS} steps" in resumed.output
    ref = signalled["ref"]
    assert ref.exit_code == 0, ref.output
    (ref_row,) = read_csv(root / "ref" / "runs.csv")
    interrupted, final = read_csv(root / name / "runs.csv")  # the interrupted row is kept
    assert interrupted["status"] == "interrupted" and final["status"] == "ok"
    assert int(final["steps_taken"]) == STEPS
    assert without(final) == without(ref_row)
    ref_dir, run_dir = _run_dir(root / "ref"), _run_dir(root / name)
    assert curve_without_time(run_dir / "curve.csv") == curve_without_time(ref_dir / "curve.csv")
    assert_same_state(load_checkpoint(ref_dir), load_checkpoint(run_dir))


def test_two_cli_runs_with_the_same_seed_are_bit_identical(tmp_path):
    args = [*RUN_ARGS, "--steps", "20", "--checkpoint-every", "20"]
    for name in ("a", "b"):
        result = CliRunner().invoke(cli, ["run", *args, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    (a,) = read_csv(tmp_path / "a" / "runs.csv")
    (b,) = read_csv(tmp_path / "b" / "runs.csv")
    assert without(a) == without(b)
    assert a["status"] == "ok" and math.isfinite(float(a["final_loss"]))
    assert curve_without_time(_run_dir(tmp_path / "a") / "curve.csv") == \
        curve_without_time(_run_dir(tmp_path / "b") / "curve.csv")
    assert_same_state(load_checkpoint(_run_dir(tmp_path / "a")),
                      load_checkpoint(_run_dir(tmp_path / "b")))
    result = CliRunner().invoke(cli, ["run", *args, "--seed", "1", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    (c,) = read_csv(tmp_path / "c" / "runs.csv")
    assert c["final_loss"] != a["final_loss"]  # the comparison can fail


def test_second_ctrl_c_aborts_at_once_without_a_row(tmp_path, monkeypatch):
    real = Trainer.train_step

    def train_step(self):
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the first: stop at the next step boundary
            os.kill(os.getpid(), signal.SIGINT)  # the second, before that: abort now
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    before = signal.getsignal(signal.SIGINT)
    result = CliRunner().invoke(cli, ["run", *RUN_ARGS, "--steps", "50", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 130, (result.output, result.exception)
    assert result.output.strip() == "Aborted."
    assert not (tmp_path / "out" / "runs.csv").exists()
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are put back


# -- SIGKILL in the middle of writing ------------------------------------------------------------

KILL_COLS = ["run_id", "writer", "seq", "payload", "check"]
ROWS_PER_APPEND, APPENDS = 24, 5  # 600 KB per write: long enough to be killed inside it


def _payload(run_id: str) -> str:
    return (run_id + ',"') * 2000  # commas and quotes: a quoted field, about 25 KB


def _kill_writer(path: str, log: str, tag: str) -> None:
    warnings.simplefilter("ignore")  # "removed the torn last line": expected here
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for i in range(APPENDS):
        ids = [f"{tag}-{i}.{j}" for j in range(ROWS_PER_APPEND)]
        append_rows(path, [{"run_id": r, "writer": tag, "seq": i, "payload": _payload(r),
                            "check": r} for r in ids], KILL_COLS)
        os.write(fd, "".join(r + "\n" for r in ids).encode())  # only after append_rows returned
    time.sleep(600)  # wait for the SIGKILL (the file stays small enough to read fast)


def _tail_is_torn(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _kill_round(ctx, path: Path, log: Path, tag: str, rng: random.Random, aim: bool) -> None:
    """Start two writers, SIGKILL both at a random moment (with ``aim``: while a write is under
    way, seen as a file that ends mid-row)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        procs = [ctx.Process(target=_kill_writer, args=(str(path), str(log), f"{tag}w{k}"))
                 for k in range(2)]
        for p in procs:
            p.start()
    try:
        time.sleep(rng.uniform(0.005, 0.04))
        if aim and path.exists():
            fd = os.open(path, os.O_RDONLY)
            try:
                deadline = time.monotonic() + 0.3
                while time.monotonic() < deadline and os.pread(
                        fd, 1, max(os.fstat(fd).st_size - 1, 0)) == b"\n":
                    pass
            finally:
                os.close(fd)
    finally:
        for p in rng.sample(procs, len(procs)):
            os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.join()
    for p in procs:
        assert p.exitcode == -signal.SIGKILL  # killed, not crashed
        p.close()


def test_sigkill_mid_write_never_loses_duplicates_or_corrupts_rows(tmp_path):
    path, log = tmp_path / "runs.csv", tmp_path / "appended.log"
    ctx = multiprocessing.get_context("fork")  # the children only append: no torch, no threads
    rng = random.Random(7)
    checked, rounds, t0 = 0, 0, time.monotonic()
    # at least 4 rounds; up to 24 (3 s) until two torn last lines have been checked
    while rounds < 4 or (time.monotonic() - t0 < 3 and checked < 2 and rounds < 24):
        _kill_round(ctx, path, log, f"r{rounds}", rng, aim=rounds % 2 == 1)
        rounds += 1
        if path.exists() and _tail_is_torn(path) and checked < 2:
            checked += 1
            line = path.read_bytes().count(b"\n") + 1
            with pytest.warns(UserWarning, match=rf"skipped 1 malformed line.*line {line}\b"):
                df = read_results(path)  # the torn last line is reported and skipped
            assert (df["run_id"] == df["check"]).all()

    appended = log.read_text().split() if log.exists() else []
    torn = _tail_is_torn(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = read_results(path)
    assert len([w for w in caught if "malformed" in str(w.message)]) == torn
    ids = df["run_id"].tolist()
    assert len(ids) == len(set(ids))  # no row twice
    assert set(appended) <= set(ids)  # every append that returned is there
    assert (df["check"] == df["run_id"]).all()  # and every row is whole
    assert (df["payload"] == df["run_id"].map(_payload)).all()
    assert (df["writer"] + "-" + df["seq"].astype(str) == df["run_id"].str.split(".").str[0]).all()
    for _, rows in df.groupby("writer", sort=False):
        seqs = rows["seq"].tolist()
        assert seqs == sorted(seqs)  # each writer's rows in its own order
        counts = rows["seq"].value_counts().sort_index()
        assert counts.index.tolist() == list(range(len(counts)))  # no append missing in between
        assert (counts.iloc[:-1] == ROWS_PER_APPEND).all()  # only a killed last one is partial

    # a later append cuts a torn last line (reporting its number) and leaves a clean file
    line = path.read_bytes().count(b"\n") + 1
    last = {"run_id": "last", "writer": "w", "seq": 0, "payload": _payload("last"), "check": "last"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        append_rows(path, [last], KILL_COLS)
    notices = [str(w.message) for w in caught]
    if torn:
        assert len(notices) == 1 and f"removed the torn last line {line} (" in notices[0], notices
    else:
        assert notices == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        after = read_results(path)
    assert after["run_id"].tolist() == ids + ["last"]
    with open(path, newline="") as f:
        assert all(len(r) == len(KILL_COLS) for r in csv.reader(f))


# -- disk full, read-only folder -----------------------------------------------------------------

COLS = ["run_id", "task", "final_loss", "note"]


def _failing_write(after_bytes: int):
    """os.write that writes ``after_bytes`` bytes for real, then fails as a full disk does."""
    real = os.write
    state = {"left": after_bytes}

    def write(fd, data):
        if state["left"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real(fd, bytes(data[: state["left"]]))
        state["left"] -= n
        return n

    return write


@pytest.mark.parametrize("fail", ["write", "fsync"])
@pytest.mark.parametrize("existing", [True, False])
def test_disk_full_leaves_the_file_exactly_as_before(tmp_path, monkeypatch, fail, existing):
    path = tmp_path / "runs.csv"
    if existing:
        append_rows(path, [{"run_id": "a", "task": "adding", "final_loss": 0.5}], COLS)
    before = path.read_bytes() if existing else None
    if fail == "write":
        monkeypatch.setattr(results_module.os, "write", _failing_write(100))
    else:
        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(results_module.os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        append_rows(path, [{"run_id": "b", "task": "copy", "note": "n" * 5000}], COLS)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    if existing:
        assert path.read_bytes() == before
    else:
        assert not path.exists()
    append_rows(path, [{"run_id": "c"}], COLS)  # and the next append works
    assert read_results(path)["run_id"].tolist() == (["a", "c"] if existing else ["c"])


FAST = ["--seq-len", "5", "--hidden", "8", "--steps", "2", "--eval-every", "1", "--eval-size",
        "8", "--batch-size", "4", "--quiet"]


def test_cli_disk_full_is_one_line_and_runs_csv_is_unchanged(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert CliRunner().invoke(cli, ["run", *FAST, "--out", str(out)]).exit_code == 0
    runs_csv = out / "runs.csv"
    before = runs_csv.read_bytes()
    target = os.stat(runs_csv)
    failing, real = _failing_write(300), os.write

    def write(fd, data):  # only the runs.csv append hits the full disk
        return failing(fd, data) if os.path.samestat(os.fstat(fd), target) else real(fd, data)

    monkeypatch.setattr(results_module.os, "write", write)
    result = CliRunner().invoke(cli, ["run", *FAST, "--seed", "1", "--out", str(out)])
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: No space left on device"), lines
    assert "runs.csv" in lines[0]
    assert runs_csv.read_bytes() == before
    # the finished run's row was kept in its folder; --resume records it without training again
    kept = [d for d in (out / "runs").iterdir() if (d / "row.json").is_file()]
    assert len(kept) == 1 and f"seqbench run --resume {kept[0]}" in lines[0]
    result = CliRunner().invoke(cli, ["run", "--resume", str(kept[0])])
    assert result.exit_code == 0, result.output
    assert "recorded its kept row" in result.output and not (kept[0] / "row.json").exists()
    rows = read_results(runs_csv)
    assert list(rows["seed"]) == [0, 1] and rows["run_dir"].iloc[1] == str(kept[0])
    again = CliRunner().invoke(cli, ["run", "--resume", str(kept[0])])
    assert again.exit_code == 2 and "already finished (status ok)" in again.output


@contextlib.contextmanager
def _tmpfs(where: Path, size: str):
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_really_full_tmpfs_leaves_no_half_written_row(tmp_path):
    with _tmpfs(tmp_path / "small", "256k") as fs:
        path = fs / "runs.csv"
        append_rows(path, [{"run_id": "a", "task": "adding", "final_loss": 0.5}], COLS)
        before = path.read_bytes()
        fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        try:  # fill the disk, then free 8 KiB
            with pytest.raises(OSError, match="No space"):
                while True:
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        os.truncate(fs / "filler", os.path.getsize(fs / "filler") - 8192)
        with pytest.raises(OSError) as info:  # 64 KB: the first 8 KiB fit, then ENOSPC
            append_rows(path, [{"run_id": "b", "note": "n" * 65536}], COLS)
        assert info.value.errno == errno.ENOSPC
        assert path.read_bytes() == before


@pytest.fixture
def read_only_out(tmp_path):
    """An out folder with a runs.csv and a run folder, then made read-only: by permissions for
    a normal user, by remounting a tmpfs read-only for root (who ignores permissions)."""
    def populate(out: Path):
        assert CliRunner().invoke(cli, ["run", *FAST, "--out", str(out)]).exit_code == 0

    if os.geteuid() != 0:
        out = tmp_path / "out"
        populate(out)
        paths = sorted(out.rglob("*"), reverse=True) + [out]
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        yield out
        for p in reversed(paths):
            p.chmod(0o755 if p.is_dir() else 0o644)
        return
    with _tmpfs(tmp_path / "ro", "4m") as fs:
        populate(fs / "out")
        proc = subprocess.run(["mount", "-o", "remount,ro", str(fs)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot remount read-only: {proc.stderr.strip()}")
        yield fs / "out"


def test_read_only_out_folder_is_a_one_line_error_and_nothing_changes(read_only_out):
    before = digest(read_only_out)
    result = CliRunner().invoke(cli, ["run", *FAST, "--seed", "1", "--out", str(read_only_out)])
    line = one_line_error(result)
    assert "Read-only file system" in line or "Permission denied" in line
    assert digest(read_only_out) == before
    with pytest.raises(OSError) as info:
        append_rows(read_only_out / "runs.csv", [{"run_id": "x"}], RUN_COLUMNS)
    assert info.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    assert digest(read_only_out) == before


# -- schema change -------------------------------------------------------------------------------

def test_run_appends_to_an_older_runs_csv_keeping_its_rows(tmp_path):
    """A runs.csv from an older seqbench (no label, no error column), with a row torn by a
    killed writer in it: the run upgrades it, keeps every complete old row, drops the torn one."""
    out = tmp_path / "out"
    out.mkdir()
    old = [c for c in RUN_COLUMNS if c not in ("label", "error")]
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(old)
        w.writerow(["old1" if c == "run_id" else ("0.5" if c == "final_loss" else "")
                    for c in old])
        f.write('old-torn,abc,"x, y\n')  # sealed by an older seqbench: a quote left open
        w.writerow(["old2" if c == "run_id" else ("ok" if c == "status" else "") for c in old])
    with pytest.warns(UserWarning, match=r"dropped 1 malformed line.*line 3"):
        row, _ = execute_run(tiny(steps=2), out=out, quiet=True)
    rows = read_csv(out / "runs.csv")
    assert list(rows[0]) == RUN_COLUMNS
    assert [r["run_id"] for r in rows] == ["old1", "old2", row["run_id"]]
    assert rows[0]["final_loss"] == "0.5" and rows[1]["status"] == "ok"
    assert rows[0]["label"] == rows[0]["error"] == ""
