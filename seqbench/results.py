"""Results files: CSV schemas, safe appends, reading back.

Appends are safe for many processes at once: each append takes an exclusive ``fcntl`` lock on a
sibling ``<file>.lock`` and writes all its rows in one ``write`` call, so rows are never
interleaved or duplicated. A file whose header is not seqbench's (a user's other file) is refused,
untouched. A file written by an older seqbench with fewer columns is upgraded in place (new columns
appended, old rows kept) through a temporary file and an atomic rename. A last line torn by a killed
process is sealed with a newline before the next append, and reported and skipped on reading.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path

import pandas as pd

from seqbench.cells import CellConfig
from seqbench.errors import ConfigError

CELL_COLUMNS = [f.name for f in fields(CellConfig)]

RUN_COLUMNS = [
    "run_id", "config_id", "started_at",
    "task", "variant", "seq_len", "total_steps",
    *CELL_COLUMNS, "n_params",
    "optimizer", "lr", "clip", "clip_mode", "batch_size", "step_budget", "eval_every", "eval_size",
    "until_solved", "seed", "probe_every",
    "status", "steps_taken", "final_loss", "baseline_loss", "loss_ratio", "accuracy",
    "solved", "solved_step",
    "wall_s", "train_s", "throughput_seq_s",
    "device", "device_name", "threads", "kernel",
    "torch_version", "cudnn_version", "onednn_version", "seqbench_version", "git_commit",
    "run_dir",
    "label",  # the spec's name for the run's comparison arm (RunConfig.label); "" = none
    "error",  # why a sweep run failed (status "failed"): exception type and message, one line
]


class ResultsFileError(ConfigError):
    """A results file that seqbench must not touch (foreign columns, unreadable)."""


@contextlib.contextmanager
def locked(path: Path):
    """Exclusive lock for ``path`` held on a sibling lock file (survives ``path`` being replaced)."""
    lock_path = path.with_name(f".{path.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _csv_text(rows: Iterable[dict], columns: Sequence[str], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for row in rows:
        unknown = set(row) - set(columns)
        if unknown:
            raise ValueError(f"row has columns not in the schema: {sorted(unknown)}")
        writer.writerow([_format(row.get(c)) for c in columns])
    return buf.getvalue()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_header(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader([f.readline()]), [])


def _upgrade(path: Path, old: list[str], columns: Sequence[str]) -> None:
    """Rewrite ``path`` with ``columns`` (a superset of ``old``), keeping every old row."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        rows = [dict(zip(old, r)) for r in reader if len(r) == len(old)]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(_csv_text(rows, columns, header=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _refuse_foreign(path: Path, header: list[str], columns: Sequence[str]) -> None:
    if header != list(columns) and not set(header) < set(columns):
        raise ResultsFileError(
            f"{path} has columns that are not seqbench's "
            f"(first: {', '.join(header[:4])}...); refusing to append, file untouched"
        )


def check_appendable(path: str | os.PathLike, columns: Sequence[str]) -> None:
    """Raise the ResultsFileError ``append_rows`` would raise for ``path``, now: a run checks its
    results file before it trains and writes its folder."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > 0:
        _refuse_foreign(path, _read_header(path), columns)


def append_rows(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Append ``rows`` to the CSV at ``path`` (created with a header if missing), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns)
    with locked(path):
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            header = _read_header(path)
            if header != columns:
                _refuse_foreign(path, header, columns)
                _upgrade(path, header, columns)
        data = _csv_text(rows, columns, header=not exists).encode()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if exists and _ends_torn(fd):
                data = b"\n" + data  # seal a line torn by a killed writer; readers skip it
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def _ends_torn(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results CSV; malformed (torn) lines are reported with their line number and skipped."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"results file {path} does not exist")
    # Rows are checked against the header here, not by pandas: pandas pads a row with too few
    # fields (the usual torn line) with NaN instead of reporting it.
    bad: list[str] = []
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ResultsFileError(f"cannot read {path} as a CSV: the file is empty")
            writer.writerow(header)
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    bad.append(f"line {reader.line_num}: {','.join(row)[:60]}")
                    continue
                writer.writerow(row)
        buf.seek(0)
        df = pd.read_csv(buf)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as e:
        raise ResultsFileError(f"cannot read {path} as a CSV: {e}") from None
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} malformed line(s), e.g. {bad[0]!r}", stacklevel=2)
    return df
