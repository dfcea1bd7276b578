"""What the reliability tests (tests/test_reliability*.py) share: the hash of every file in a
folder, the check of a one-line CLI error, and a run interrupted in-process as by a SIGINT."""

import contextlib
import hashlib
import signal
from pathlib import Path

import pytest

import seqbench.runner as runner
from seqbench.config import RunConfig
from seqbench.runner import RunInterrupted, execute_run


def digest(root: Path, *, skip_locks: bool = False) -> dict:
    """Every file under ``root`` and the hash of its bytes (lock files aside with
    ``skip_locks``: some commands leave one next to the runs.csv they read)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and not (skip_locks and p.name.endswith(".lock"))}


def one_line_error(result, *needles: str) -> str:
    """The CLI answered with exit 2 and one line ``Error: ...`` holding every needle."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), (repr(result.exception), result.output)
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


class StopAfter(dict):
    """Stands for the signal state of runner._stop_on_signals: a SIGINT "arrives" after ``k``
    steps (deterministic, in-process)."""

    def __init__(self, k: int):
        super().__init__(signum=None)
        self.k = k

    def __getitem__(self, key):
        if key == "signum":
            self.k -= 1
            return signal.SIGINT if self.k < 0 else None
        return super().__getitem__(key)


def interrupt(cfg: RunConfig, out: Path, after: int, **kw) -> Path:
    """Run ``cfg`` and interrupt it after ``after`` steps, as a SIGINT would: an interrupted
    row, a checkpoint at that step. Returns the run folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "_stop_on_signals",
                   lambda enabled: contextlib.nullcontext(StopAfter(after)))
        with pytest.raises(RunInterrupted) as stop:
            execute_run(cfg, out=out, quiet=True, handle_signals=True, **kw)
    assert stop.value.row["status"] == "interrupted"
    return Path(stop.value.row["run_dir"])
