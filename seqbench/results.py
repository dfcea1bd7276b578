"""Results files: CSV schemas, safe appends, reading back.

Appends are safe for many processes at once: each append takes an exclusive ``fcntl`` lock on a
sibling ``<file>.lock`` and writes all its rows in one ``write`` call, so rows are never
interleaved or duplicated. A file whose header is not seqbench's (a user's other file) is refused,
untouched. A file written by an older seqbench with fewer columns is upgraded in place (new columns
appended, old rows kept) through a temporary file and an atomic rename.

Every row is one physical line (line breaks inside values are written as spaces), so a damaged line
can never swallow the lines after it. A last line torn by a process killed mid-write (it has no
final newline) is reported with its line number and skipped on reading, and cut off, with a
warning, by the next append (under the lock) before it writes. An append that fails (disk full,
I/O error) truncates the file back to its size before the append: no half-written row is left.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import math
import os
import stat
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path

import pandas as pd

from seqbench.cells import CellConfig
from seqbench.errors import ConfigError

CELL_COLUMNS = [f.name for f in fields(CellConfig)]

RUN_COLUMNS = [
    "run_id", "config_id", "started_at",
    "task", "variant", "seq_len", "total_steps",
    "lag_min", "lag_max",  # the lag range --seq-len means for the task (Task.lag_range)
    *CELL_COLUMNS, "n_params",
    "match_params",  # > 0: hidden was chosen for about this many parameters
    "optimizer", "lr", "clip", "clip_mode", "batch_size", "step_budget", "eval_every", "eval_size",
    "test_size", "until_solved",
    "solved_evals",  # consecutive solved validation evaluations that count as solved; blank = 1
    "seed", "probe_every",
    "eval_seq_lens",  # the lags the final model was also tested at (runs/<run_id>/lengths.csv)
    # gradient flossing (seqbench.flossing): exponents flossed, weight, steps; blank when off
    "floss", "floss_weight", "floss_steps",
    # final_loss, loss_ratio, accuracy, solved: the TEST set, on the final model (reported);
    # solved_step: first evaluation where the validation set met the criterion (when solved)
    "status", "steps_taken", "final_loss", "baseline_loss", "loss_ratio", "accuracy",
    "solved", "solved_step",
    # the validation set (stopping and selection), on the final model; val_solved: the criterion
    # was met at some evaluation
    "val_loss", "val_loss_ratio", "val_accuracy", "val_solved",
    "still_improving",  # unsolved and the validation loss still falling at the end (train.py)
    "wall_s", "train_s", "throughput_seq_s",
    "device", "device_name", "threads", "malloc", "denormals", "kernel",
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
    text = str(value)
    if "\n" in text or "\r" in text:  # one row, one line: see the module docstring
        text = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return text


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


#: the bytes a UTF-8 byte-order mark is (seqbench never writes one)
BOM = b"\xef\xbb\xbf"


def _refuse_bom(path: Path) -> None:
    """Every reader and writer refuses a file that starts with a byte-order mark, in the same
    words. seqbench never writes one, so another program (a spreadsheet) saved the file, and may
    have changed its values too; read as text the mark is an invisible character glued to the
    first column's name, so the message names it by its bytes."""
    with open(path, "rb") as f:
        if f.read(len(BOM)) == BOM:
            raise ResultsFileError(
                f"{path} starts with a UTF-8 byte-order mark (bytes EF BB BF), which seqbench "
                "never writes: another program saved it; refusing to use it, file untouched "
                f"(remove the mark to use it: sed -i '1s/^\\xEF\\xBB\\xBF//' {path})")


def _read_header(path: Path) -> list[str]:
    check_location(path)
    _refuse_bom(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return next(csv.reader([f.readline()]), [])
    except (UnicodeDecodeError, csv.Error):
        raise ResultsFileError(f"{path} is not a CSV seqbench wrote (not UTF-8 text); refusing to "
                               "append, file untouched") from None


def _parse_lines(f) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line number, fields or None if the line is malformed, the line) for every non-blank line
    of ``f`` (opened with ``newline=""``), one physical line per row. A last line without its
    newline is torn (a writer killed mid-row) and malformed whatever its fields."""
    for number, line in enumerate(f, 1):
        if not line.strip("\r\n"):
            continue
        if not line.endswith(("\n", "\r")):
            yield number, None, line
            continue
        try:
            yield number, next(csv.reader([line], strict=True)), line
        except csv.Error:
            yield number, None, line


def _upgrade(path: Path, old: list[str], columns: Sequence[str]) -> None:
    """Rewrite ``path`` with ``columns`` (a superset of ``old``), keeping every old row."""
    rows, dropped = [], []
    with open(path, newline="", encoding="utf-8") as f:
        lines = _parse_lines(f)
        next(lines, None)  # the header
        for number, r, _ in lines:
            if r is not None and len(r) == len(old):
                rows.append(dict(zip(old, r)))
            else:
                dropped.append(str(number))
    if dropped:
        warnings.warn(f"{path}: dropped {len(dropped)} malformed line(s) (torn or damaged; line "
                      f"{', '.join(dropped[:10])}) while adding the new columns", stacklevel=3)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write(_csv_text(rows, columns, header=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left only when writing it failed (disk full): the file is untouched


def _torn_header(path: Path, columns: Sequence[str]) -> bool:
    """True if ``path`` holds nothing but the beginning of seqbench's header line: its first
    writer was killed while writing it (a user's file is never mistaken for one)."""
    header = _csv_text([], columns, header=True).encode()
    if path.stat().st_size >= len(header):
        return False
    content = path.read_bytes()
    return b"\n" not in content and header.startswith(content)


def _torn_schema(path: Path) -> list[str] | None:
    """The columns of the seqbench schema whose header ``path`` holds the beginning of, and
    nothing else (``_torn_header``); None for any other file. For readers, which are not told
    the file's schema."""
    if _torn_header(path, RUN_COLUMNS):
        return list(RUN_COLUMNS)
    from seqbench.grads import GRADS_COLUMNS  # here: seqbench.grads imports this module

    return list(GRADS_COLUMNS) if _torn_header(path, GRADS_COLUMNS) else None


def _same_columns(header: list[str], columns: Sequence[str]) -> bool:
    """The right columns in another order (a file re-sorted by another tool): every reader
    reads by column name, so appends write in the file's own order rather than refuse it."""
    return len(header) == len(columns) and set(header) == set(columns)


def _refuse_foreign(path: Path, header: list[str], columns: Sequence[str]) -> None:
    if header != list(columns) and not set(header) < set(columns) \
            and not _same_columns(header, columns):
        raise ResultsFileError(
            f"{path} has columns that are not seqbench's "
            f"(first: {', '.join(header[:4])}...); refusing to append, file untouched"
        )


def check_appendable(path: str | os.PathLike, columns: Sequence[str]) -> None:
    """Raise the ResultsFileError ``append_rows`` would raise for ``path``, now: a run checks its
    results file before it trains and writes its folder."""
    path = Path(path)
    _refuse_folder(path)
    check_location(path, write=True)  # and writable: found before training, not after
    if path.is_file() and path.stat().st_size > 0 and not _torn_header(path, columns):
        _refuse_foreign(path, _read_header(path), columns)


def _refuse_folder(path: Path) -> None:
    """A results file must be a file, in a folder that exists or can be created."""
    if path.name in ("", "..") or path.is_dir():
        raise ResultsFileError(f"results file {str(path) or repr('')} is a folder; give a file name")
    check_location(path, write=True, access=False)


def _kind(mode: int) -> str | None:
    """What a file that is neither a regular file nor a folder is, in words (None for those)."""
    for test, words in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return None


def _dangling(path: Path) -> str | None:
    """The target of ``path`` when it is a symbolic link to nothing; else None."""
    if path.is_symlink() and not path.exists():
        return os.readlink(path)
    return None


def check_location(path: str | os.PathLike, write: bool = False, what: str = "",
                   access: bool | None = None) -> None:
    """Refuse, in one line, a file that every command must refuse before it reads or trains:
    a FIFO, socket or device (reading one blocks until another process writes, for ever; a row
    written to one is lost), a symbolic link to nothing (here or as one of its folders: the
    file would be created somewhere unexpected, or nowhere), and, with ``write``, a file or a
    first existing folder that cannot be written (found now, not after hours of training).

    A regular file, a symbolic link to one, and a missing file are fine. ``what`` names the
    option the path came from (e.g. ``--out``), for the message. ``access=False`` leaves the
    permissions to the write itself (``append_rows``: its OSError is what keeps a finished run's
    row in its folder)."""
    path = Path(path)
    access = write if access is None else access
    name = f"{what} {path}".strip()
    target = _dangling(path)
    if target is not None:
        raise ResultsFileError(f"{name} is a symbolic link to {target}, which does not exist; "
                               "remove the link or give another path")
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as e:  # a loop of links, a name too long...
        raise ResultsFileError(f"cannot use {name}: {e.strerror}") from None
    kind = _kind(mode) if mode is not None else None
    if kind:
        raise ResultsFileError(f"{name} is {kind}, not a file; refusing to "
                               f"{'write' if write else 'read'} it (give a regular file)")
    if not write:
        return
    if access and mode is not None and not os.access(path, os.W_OK):
        raise ResultsFileError(f"cannot write {name}: {_why_not_writable(path)}")
    for parent in path.parents:
        target = _dangling(parent)
        if target is not None:
            raise ResultsFileError(f"cannot write {name}: {parent} is a symbolic link to "
                                   f"{target}, which does not exist")
        if parent.exists():
            if not parent.is_dir():
                raise ResultsFileError(f"cannot write {name}: {parent} is a file, not a folder")
            if access and not os.access(parent, os.W_OK | os.X_OK):
                raise ResultsFileError(f"cannot write {name}: {_why_not_writable(parent)}: "
                                       f"{parent}")
            break


def _why_not_writable(path: Path) -> str:
    """os.strerror of what a write to ``path`` would fail with (as the OSError would say it)."""
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return os.strerror(errno.EROFS if read_only else errno.EACCES)


def append_rows(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Append ``rows`` to the CSV at ``path`` (created with a header if missing), atomically.

    All rows go in one ``write`` under the lock. If the write fails (disk full, I/O error), the
    file is truncated back to its size before the append (removed if this append created it)
    and the OSError is raised: no half-written row is left behind.
    """
    path = Path(path)
    _refuse_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns)
    body = _csv_text(rows, columns, header=False).encode()  # bad rows fail before any writing
    with locked(path):
        existed = path.exists()
        exists = existed and path.stat().st_size > 0 and not _torn_header(path, columns)
        if exists:
            header = _read_header(path)
            if header != columns:
                _refuse_foreign(path, header, columns)
                if _same_columns(header, columns):  # rows go by name, in the file's order
                    columns = header
                    body = _csv_text(rows, columns, header=False).encode()
                else:
                    _upgrade(path, header, columns)
        data = (_csv_text([], columns, header=True).encode() if not exists else b"") + body
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            keep = _cut_torn_tail(fd, path) if exists else 0
            if not exists:
                os.ftruncate(fd, 0)  # empty, or a header torn by a killed first writer
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError as e:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, keep)
                    if not existed:
                        path.unlink()
                if e.filename is None:  # name the file in the message (os.write does not)
                    raise OSError(e.errno, e.strerror, str(path)) from None
                raise
        finally:
            os.close(fd)


def _cut_torn_tail(fd: int, path: Path) -> int:
    """Cut off a last line without its newline (torn by a writer killed mid-row; the lock is
    held, so no live writer is behind it), with a warning; return the file's size after."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    keep, pos = 0, size
    while pos > 0:
        start = max(0, pos - (1 << 16))
        i = os.pread(fd, pos - start, start).rfind(b"\n")
        if i >= 0:
            keep = start + i + 1
            break
        pos = start
    lines, pos = 1, 0
    while pos < keep:  # the torn line's number, for the report
        chunk = os.pread(fd, min(1 << 20, keep - pos), pos)
        lines += chunk.count(b"\n")
        pos += len(chunk)
    torn = os.pread(fd, min(60, size - keep), keep).decode("utf-8", "replace")
    warnings.warn(f"{path}: removed the torn last line {lines} ({size - keep} bytes, {torn!r}...) "
                  "left by a writer killed mid-row", stacklevel=3)
    os.ftruncate(fd, keep)
    return keep


def _well_formed(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows with as many fields as it; malformed (torn) lines are reported,
    with their line numbers, in one warning and skipped.

    Rows are checked against the header here, one physical line each, not by pandas: pandas pads
    a row with too few fields (the usual torn line) with NaN instead of reporting it, and a torn
    quoted field would swallow the lines after it."""
    check_location(path)  # a FIFO would block this read for ever
    if not path.exists():
        raise ConfigError(f"results file {path} does not exist")
    _refuse_bom(path)
    bad: list[tuple[int, str]] = []
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = _parse_lines(f)
            first = next(lines, None)
            if first is None:
                raise ResultsFileError(f"cannot read {path} as a CSV: the file is empty")
            if first[1] is None and not first[2].endswith(("\n", "\r")):
                # Only the beginning of seqbench's header: its first writer was killed while
                # writing it. Every command takes it for what it is, a results file with no
                # rows yet: the next append rewrites the header (append_rows), so refusing it
                # here as "not seqbench's" while `seqbench run` repairs it would be two answers
                # for one file. Readers then say "no runs yet"; a sweep runs everything.
                schema = _torn_schema(path)
                if schema is not None:
                    return schema, []
            header = first[1] if first[1] is not None else next(csv.reader([first[2]]))
            for number, row, line in lines:
                if row is None or len(row) != len(header):
                    bad.append((number, line.rstrip("\r\n")))
                else:
                    rows.append(row)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ResultsFileError(f"cannot read {path} as a CSV: {e}") from None
    if bad:
        numbers = ", ".join(str(n) for n, _ in bad[:10]) + (", ..." if len(bad) > 10 else "")
        warnings.warn(f"{path}: skipped {len(bad)} malformed line(s) (torn or damaged; line "
                      f"{numbers}), e.g. line {bad[0][0]}: {bad[0][1][:60]!r}", stacklevel=3)
    return header, rows


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """A results CSV as text rows (dicts); malformed (torn) lines are reported and skipped."""
    header, rows = _well_formed(Path(path))
    return [dict(zip(header, row)) for row in rows]


def results_files(paths, name: str, hint: str = "") -> list[Path]:
    """The files ``paths`` name: each file as it is, each folder searched for the files called
    ``name`` (a run folder's grads.csv, lengths.csv); a ConfigError when there is none."""
    files = []
    for path in map(Path, paths):
        files += sorted(path.rglob(name)) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"no {name} under {', '.join(map(str, paths))}{hint}")
    return files


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """Read a results CSV; malformed (torn) lines are reported with their line number and skipped."""
    header, rows = _well_formed(Path(path))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    buf.seek(0)
    # identifiers stay text: a config id such as "0123e4567890" must not become a float
    ids = {c: str for c in ("run_id", "config_id", "probe_id", "label") if c in header}
    try:
        return pd.read_csv(buf, dtype=ids)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ResultsFileError(f"cannot read {path} as a CSV: {e}") from None


def run_folder(runs_csv: str | os.PathLike, run_dir: str) -> Path:
    """The folder of a run that ``runs_csv`` records as ``run_dir``: that path, or, when the
    results folder was moved or copied since, the folder of that name under its ``runs/``."""
    path = Path(str(run_dir))
    moved = Path(runs_csv).parent / "runs" / path.name
    return moved if not path.is_dir() and moved.is_dir() else path
