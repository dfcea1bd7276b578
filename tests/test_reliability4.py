"""Reliability (issue 18, items 10 and 11): every command answers an edited or odd results file the
same way, refuses special files and links to nothing before it reads or trains, a resume through
a symbolic link records its row with the others, a run and a sweep both keep an inherited
SIG_IGN, and a run folder without a row is resumable."""

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from clihelp import inside
from reliability_helpers import digest, interrupt, one_line_error

import seqbench.runner as runner
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.results import RUN_COLUMNS, append_rows, read_rows
from seqbench.runner import RunInterrupted, execute_run, resume_run

FAST = ["--task", "adding", "-T", "4", "--hidden", "4", "--steps", "1", "--batch-size", "4",
        "--eval-every", "1", "--eval-size", "4", "--test-size", "4", "--no-until-solved",
        "--device", "cpu", "--threads", "1", "-q"]
SPEC = ('[settings]\ntask = "adding"\nseq_len = 4\nhidden = 4\nsteps = {steps}\nbatch_size = 4\n'
        'eval_every = 1\neval_size = 4\ntest_size = 4\nuntil_solved = false\ndevice = "cpu"\n'
        '[grid]\nseed = [0]\n')


def tiny(**kw) -> RunConfig:
    base = dict(task="adding", seq_len=4, cell=CellConfig("lstm", hidden=4), batch_size=4,
                steps=3, eval_every=1, eval_size=4, test_size=4, until_solved=False,
                device="cpu", threads=1)
    base.update(kw)
    return RunConfig(**base)


@contextlib.contextmanager
def no_hang(seconds: int = 30):
    """Fail instead of blocking for ever (reading a FIFO waits for a writer)."""
    def alarm(signum, frame):
        raise TimeoutError(f"no answer after {seconds}s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def invoke(root: Path, *args: str):
    with inside(root), no_hang(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> bytes:
    """The bytes of a runs.csv holding one finished run."""
    out = tmp_path_factory.mktemp("finished") / "out"
    execute_run(tiny(steps=1), out=out, quiet=True)
    return (out / "runs.csv").read_bytes()


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "spec.toml").write_text(SPEC.format(steps=1))
    return tmp_path


READERS = {  # command -> argv for the results folder "d"
    "sweep": ["sweep", "spec.toml", "--out", "d", "--dry-run", "--no-estimate"],
    "leaderboard": ["leaderboard", "--runs", "d/runs.csv", "--out", "lb.csv"],
    "plot": ["plot", "solve-rate", "d/runs.csv", "-o", "fig.png"],
}


# -- a. a torn header alone: no rows yet, for every command -----------------------------------

def test_a_torn_header_alone_is_a_file_without_rows_for_every_command(root):
    """A killed first writer leaves the beginning of the header and nothing else. Every command
    takes it as a runs.csv without rows (the next append rewrites it), none as "not seqbench's"
    (the sweep and the leaderboard refused it while `run` repaired it)."""
    torn = ",".join(RUN_COLUMNS)[:40]
    (root / "d").mkdir()
    (root / "d" / "runs.csv").write_text(torn)
    result = invoke(root, *READERS["sweep"])
    assert result.exit_code == 0 and "0 already recorded" in result.output, result.output
    one_line_error(invoke(root, *READERS["leaderboard"]), "d/runs.csv has no runs yet")
    one_line_error(invoke(root, *READERS["plot"]), "d/runs.csv has no runs yet")
    assert (root / "d" / "runs.csv").read_text() == torn  # readers leave it alone
    assert read_rows(root / "d" / "runs.csv") == []
    assert invoke(root, "run", *FAST, "--out", "d").exit_code == 0
    (row,) = read_rows(root / "d" / "runs.csv")  # repaired: a whole header, then the row
    assert row["status"] == "ok"
    assert invoke(root, *READERS["leaderboard"]).exit_code == 0


# -- b. a byte-order mark: one visible refusal everywhere ----------------------------------------

@pytest.mark.parametrize("command", ["run", "sweep", "leaderboard", "plot"])
def test_a_bom_is_refused_by_every_command_in_visible_words(root, finished, command):
    (root / "d").mkdir()
    (root / "d" / "runs.csv").write_bytes(b"\xef\xbb\xbf" + finished)
    before = digest(root, skip_locks=True)
    argv = ["run", *FAST, "--out", "d"] if command == "run" else READERS[command]
    line = one_line_error(invoke(root, *argv), "d/runs.csv starts with a UTF-8 byte-order mark "
                                               "(bytes EF BB BF)")
    assert "\ufeff" not in line and line.isprintable(), repr(line)
    assert digest(root, skip_locks=True) == before  # nothing trained, nothing written


# -- c. the right columns in another order: read and appended by name ----------------------------

def test_columns_in_another_order_are_read_and_appended_by_name(root, finished):
    rows = list(csv.reader(finished.decode().splitlines()))
    order = [3, 1, 0, 2, *range(4, len(rows[0]))]
    (root / "d").mkdir()
    path = root / "d" / "runs.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([[r[i] for i in order] for r in rows])
    header = path.read_text().splitlines()[0]
    result = invoke(root, *READERS["sweep"])
    assert result.exit_code == 0 and "1 already recorded" in result.output, result.output
    assert invoke(root, *READERS["leaderboard"]).exit_code == 0
    assert invoke(root, *READERS["plot"]).exit_code == 0
    result = invoke(root, "run", *FAST, "--seed", "1", "--out", "d")
    assert result.exit_code == 0, result.output  # was: "columns that are not seqbench's"
    assert path.read_text().splitlines()[0] == header  # the file keeps its own order
    old, new = read_rows(path)
    assert (old["seed"], new["seed"]) == ("0", "1")
    assert new["task"] == "adding" and new["status"] == "ok" and new["run_id"].startswith("adding")


# -- d. special files and links to nothing: refused before reading or training -------------------

def _special(root: Path, kind: str) -> None:
    (root / "d").mkdir()
    if kind == "fifo":
        os.mkfifo(root / "d" / "runs.csv")
    else:
        (root / "d" / "runs.csv").symlink_to(root / "nowhere" / "runs.csv")


@pytest.mark.parametrize("kind, words", [("fifo", "is a FIFO (named pipe), not a file"),
                                         ("dangling", "is a symbolic link to")])
@pytest.mark.parametrize("command", ["run", "sweep", "sweep-real", "leaderboard", "plot"])
def test_a_fifo_or_a_link_to_nothing_as_runs_csv_is_refused_before_any_work(root, kind, words,
                                                                           command):
    _special(root, kind)
    argv = {"run": ["run", *FAST, "--out", "d"],
            "sweep-real": ["sweep", "spec.toml", "--out", "d", "--workers", "1"]}.get(
        command) or READERS[command]
    one_line_error(invoke(root, *argv), "d/runs.csv", words)
    assert not (root / "d" / "runs").exists()  # no run folder: nothing trained
    assert not (root / "nowhere").exists()


def test_a_link_to_nothing_as_out_is_refused_before_training(root):
    (root / "d").symlink_to(root / "nowhere", target_is_directory=True)
    for argv in (["run", *FAST, "--out", "d"],
                 ["sweep", "spec.toml", "--out", "d", "--workers", "1"]):
        one_line_error(invoke(root, *argv), "d is a symbolic link to", "which does not exist")
    assert not (root / "nowhere").exists()


@pytest.mark.parametrize("argv", [["leaderboard", "--runs", "ok/runs.csv", "--out", "x.csv"],
                                  ["plot", "solve-rate", "ok/runs.csv", "-o", "x.png"]])
def test_a_fifo_as_the_output_is_refused_before_reading(root, finished, argv):
    (root / "ok").mkdir()
    (root / "ok" / "runs.csv").write_bytes(finished)
    os.mkfifo(root / argv[-1])
    one_line_error(invoke(root, *argv), "is a FIFO (named pipe), not a file; refusing to write")
    assert Path(root / argv[-1]).is_fifo()


def test_a_read_only_runs_csv_is_refused_before_training(root, finished):
    if os.geteuid() == 0:
        pytest.skip("root writes a read-only file anyway")
    (root / "d").mkdir()
    (root / "d" / "runs.csv").write_bytes(finished)
    (root / "d" / "runs.csv").chmod(0o444)
    one_line_error(invoke(root, "run", *FAST, "--out", "d"), "cannot write d/runs.csv",
                   "Permission denied")
    assert not (root / "d" / "runs").exists()


# -- e. --resume through a symbolic link: the row goes where the others are ----------------------

@pytest.mark.parametrize("how", ["link to the run folder", "the link's target",
                                 "link to the results folder"])
def test_resume_through_a_symbolic_link_appends_to_the_runs_csv_of_the_run(root, how):
    run_dir = interrupt(tiny(), root / "results", after=1)
    run_id = run_dir.name
    (root / "elsewhere").mkdir()
    if how == "link to the run folder":
        given = root / "elsewhere" / "LINK"
        given.symlink_to(run_dir, target_is_directory=True)
    elif how == "the link's target":
        given = Path(os.path.realpath(run_dir))
    else:
        (root / "elsewhere" / "res").symlink_to(root / "results", target_is_directory=True)
        given = root / "elsewhere" / "res" / "runs" / run_id
    result = invoke(root / "elsewhere", "run", "--resume", str(given), "-q")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (root / "elsewhere").iterdir() if p.suffix == ".csv"] == []
    interrupted, resumed = read_rows(root / "results" / "runs.csv")
    assert interrupted["status"] == "interrupted" and resumed["status"] == "ok"
    assert resumed["run_id"] == run_id  # not the link's name
    assert Path(resumed["run_dir"]).resolve() == run_dir.resolve()


def test_resume_of_a_run_folder_outside_a_results_folder_is_refused(root):
    run_dir = interrupt(tiny(), root / "results", after=1)
    (root / "loose").mkdir()
    (root / "loose" / "LINK").symlink_to(root / "results", target_is_directory=True)
    moved = root / "loose" / "copy"
    os.rename(run_dir, moved)  # a run folder taken out of its results folder
    before = digest(root, skip_locks=True)
    one_line_error(invoke(root, "run", "--resume", str(moved)),
                   "is not a run folder inside a results folder")
    assert digest(root, skip_locks=True) == before and not (root / "runs.csv").exists()


# -- f. an inherited SIG_IGN: kept by run and sweep alike --------------------------------------

def test_run_keeps_sigint_ignored_when_started_with_it_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with runner._stop_on_signals(True) as state:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # still stops a run
            signal.raise_signal(signal.SIGINT)
            assert state["signum"] is None
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sweep_keeps_sigterm_ignored_when_started_with_it_ignored():
    from seqbench.sweep import _sigterm_stops

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with _sigterm_stops():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_sigint_ignored_by_the_parent_shell_is_ignored_by_run_and_sweep(tmp_path, command):
    """`trap '' INT` (or a shell's background job): SIGINT every 0.2 s until the process ends.
    Both finish their work and exit 0 (`run` used to stop at once with 130, the sweep did not)."""
    (tmp_path / "spec.toml").write_text(SPEC.format(steps=300))
    args = {"run": f"run {' '.join(FAST)} --steps 300 --out out",
            "sweep": "sweep spec.toml --out out --workers 1 --quiet"}[command]
    # started with SIGINT ignored, as `trap '' INT; seqbench ...` starts it (set here in the
    # child before exec: a shell could get a signal before its trap line runs)
    proc = subprocess.Popen([sys.executable, "-m", "seqbench", *args.split()], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    (row,) = read_rows(tmp_path / "out" / "runs.csv")
    assert row["status"] == "ok" and row["steps_taken"] == "300"


# -- item 10: a signal between the run folder's creation and the first step ---------------------

def test_a_signal_before_training_leaves_a_resumable_folder_not_a_half_one(tmp_path, monkeypatch):
    """SIGINT while the run folder is being written (before the first step): the run stops at
    step 0 with an interrupted row and a checkpoint, and resumes to the end. It used to leave
    a folder with a config.json, no checkpoint and no row, which nothing could resume."""
    write_json = runner._write_json

    def signal_while_writing(path, data):
        write_json(path, data)
        if path.name == "config.json":
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(runner, "_write_json", signal_while_writing)
    try:
        execute_run(tiny(), out=tmp_path, quiet=True, handle_signals=True)
    except KeyboardInterrupt:
        left = sorted(p.name for p in (tmp_path / "runs").rglob("*"))
        pytest.fail(f"the signal escaped before training, leaving {left} and no row")
    except RunInterrupted as stop:
        row = stop.row
    else:
        pytest.fail("the run was not interrupted")
    assert row["status"] == "interrupted" and row["steps_taken"] == 0
    run_dir = Path(row["run_dir"])
    assert (run_dir / "checkpoint.pt").is_file()
    monkeypatch.undo()
    resumed, _ = resume_run(run_dir, quiet=True)
    assert resumed["status"] == "ok" and resumed["steps_taken"] == 3
    assert [r["status"] for r in read_rows(tmp_path / "runs.csv")] == ["interrupted", "ok"]


def test_append_rows_accepts_a_permuted_header_and_writes_by_name(tmp_path):
    path = tmp_path / "runs.csv"
    columns = list(reversed(RUN_COLUMNS))
    path.write_text(",".join(columns) + "\n")
    append_rows(path, [{"run_id": "a", "status": "ok", "seed": 3}], RUN_COLUMNS)
    (row,) = read_rows(path)
    assert (row["run_id"], row["status"], row["seed"]) == ("a", "ok", "3")
    assert path.read_text().splitlines()[0] == ",".join(columns)
