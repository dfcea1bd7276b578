"""One training run end to end: a run folder, the learning curve, a row in runs.csv, a summary.

Layout of ``out`` (default ``results/``)::

    results/runs.csv                 one row per run (seqbench.results.RUN_COLUMNS)
    results/runs/<run_id>/config.json
    results/runs/<run_id>/curve.csv  step, train_loss, eval_loss, accuracy, grad_norm, elapsed_s
    results/runs/<run_id>/grads.csv  gradient norm against lag (with probe_every > 0)
    results/runs/<run_id>/dynamics.csv  Lyapunov exponents, Jacobians ... (probes = lyapunov ...)
    results/runs/<run_id>/checkpoint.pt  model, optimizer, RNG and curve (with checkpoint_every),
                                         after a header line with the SHA-256 of those bytes

A finished run folder holds only these files: temporary files of killed or failed writes, and the
lock files of its own CSVs, are removed when the run ends. While a run or its resume writes the
folder it holds ``.run.lock`` (seqbench.claims.hold_run_folder): one writer per run folder.
``resume_run`` refuses a config.json that no longer gives the run's config_id (hand-edited) and a
checkpoint whose checksum does not match.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import pickle
import re
import signal
import tempfile
import threading
import time
import types
import typing
import warnings
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

from seqbench import lengths
from seqbench.cells import CellConfig
from seqbench.choices import DEFAULT_OUT
from seqbench.claims import hold_run_folder
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.grads import GRADS_COLUMNS, ProbeSetup, TrainingProbe
from seqbench.memory import check_run as check_memory
from seqbench.model import count_parameters
from seqbench.progress import ProgressLine, format_duration
from seqbench.provenance import environment, kernel, resolve_device
from seqbench.results import RUN_COLUMNS, _format, append_rows, check_appendable, read_rows
from seqbench.tasks import make_task
from seqbench.tensorboard import TensorBoardLog, require_tensorboard
from seqbench.threads import ThreadShare
from seqbench.train import CurvePoint, Trainer, TrainResult

CURVE_COLUMNS = [f for f in CurvePoint.__dataclass_fields__]
CHECKPOINT = "checkpoint.pt"


def _new_run_dir(root: Path, cfg: RunConfig) -> Path:
    """results/runs/<RunConfig.run_name>[-<n>], created exclusively."""
    base = cfg.run_name()
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"too many runs named {base} in {root}")


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # there only when writing or renaming failed


def _remove_leftovers(run_dir: Path) -> None:
    """Remove the temporary files a killed or failed write left in a run folder (``config.tmp``,
    ``row.tmp``, ``.checkpoint.<pid>.tmp``, ``.curve.csv.tmp``, ``.grads.csv.tmp``): each was
    to be renamed over its file, and the file it was for is complete without it. Also the lock
    files of the folder's own CSVs (``.grads.csv.lock``, ``.lengths.csv.lock``): only the run's
    one process appends to them, and it has finished writing them when this is called."""
    names = ["config.tmp", Path(KEPT_ROW).with_suffix(".tmp").name, ".curve.csv.tmp",
             ".grads.csv.tmp", ".grads.csv.lock", ".lengths.csv.lock", ".dynamics.csv.tmp",
             ".dynamics.csv.lock"]
    for path in [*(run_dir / n for n in names), *run_dir.glob(".checkpoint.*.tmp")]:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            path.unlink()


def summary_line(cfg: RunConfig, result: TrainResult, baseline: float) -> str:
    """e.g. ``adding T=500 lstm/builtin seed 0: solved at step 1800, MSE 0.0071 (4.3% of
    baseline), 5m12s``."""
    head = f"{cfg.task} T={cfg.seq_len} {cfg.cell.cell}/{cfg.cell.impl} seed {cfg.seed}"
    took = format_duration(result.wall_seconds)
    if result.status == "diverged":
        return f"{head}: diverged at step {result.steps_taken} (loss not finite), {took}"
    if result.status == "interrupted":
        return f"{head}: interrupted at step {result.steps_taken}, {took}"
    # a regression task's loss is an MSE and its accuracy says little; a classification task's
    # accuracy is what its solved criterion reads
    regression = make_task(cfg.task, cfg.variant).kind == "regression"
    loss_name = "MSE" if regression else "loss"
    loss = result.final.loss
    metric = f"test {loss_name} {loss:.4g} ({100 * loss / baseline:.1f}% of baseline)"
    if not regression:
        metric += f", accuracy {result.final.accuracy:.3f}"
    if result.solved:
        outcome = f"solved at step {result.solved_step}"
    elif result.val_solved:
        # (steps_taken is where it stopped, not where validation first met the criterion)
        outcome = (f"not solved in {result.steps_taken} steps: the validation set met the "
                   "criterion, the test set did not")
    else:
        outcome = f"not solved in {result.steps_taken} steps"
        if result.still_improving:
            outcome += " (validation loss still falling: budget-limited)"
    return f"{head}: {outcome}, {metric}, {took}"


#: a finished run's runs.csv row, kept in its folder when appending it failed
KEPT_ROW = "row.json"


class RunInterrupted(Exception):
    """Raised by ``execute_run(handle_signals=True)`` after an interrupted run was recorded."""

    def __init__(self, signum: int, row: dict, summary: str):
        super().__init__(summary)
        self.signum, self.row, self.summary = signum, row, summary

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them


@contextlib.contextmanager
def _stop_on_signals(enabled: bool):
    """While active, SIGINT and SIGTERM ask the run to stop at the next step boundary (a second
    SIGINT aborts at once). Yields a dict whose "signum" is set when a signal came."""
    state: dict = {"signum": None}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, _frame):
        if state["signum"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        state["signum"] = signum

    # A signal the process was started with ignored stays ignored (`trap '' INT`, `nohup`-style
    # wrappers, and a shell's background jobs `cmd &`, which it starts with SIGINT ignored): the
    # user asked for Ctrl-C not to reach this process. `seqbench sweep` does the same (Python
    # installs no KeyboardInterrupt handler then, and seqbench.sweep keeps it so), so run and
    # sweep answer Ctrl-C alike; SIGTERM (kill) stops both unless it is ignored too.
    signals = [sig for sig in (signal.SIGINT, signal.SIGTERM)
               if signal.getsignal(sig) is not signal.SIG_IGN]
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield state
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


#: the first line of a checkpoint file, before torch's bytes: the SHA-256 of those bytes
CHECKPOINT_MAGIC = b"seqbench-checkpoint 1 sha256 "
_HEADER_LEN = len(CHECKPOINT_MAGIC) + 64 + 1  # the magic, 64 hex digits, a newline
#: what Trainer.state_dict holds: a file without these keys is not a checkpoint
CHECKPOINT_KEYS = ("model", "optimizer", "train_generator", "step", "curve", "solved_step",
                   "train_seconds", "elapsed_s", "sums")


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Write ``checkpoint.pt`` atomically: a temporary file, fsync, then rename.

    The file is one header line, ``seqbench-checkpoint 1 sha256 <hex>``, then the bytes of
    ``torch.save(state)``, whose SHA-256 the header holds: ``load_checkpoint`` refuses a file
    whose bytes changed (one flipped bit, a truncated copy). The checksum travels in the same
    file, so the one rename replaces both together."""
    buf = io.BytesIO()
    torch.save(state, buf)
    body = buf.getvalue()
    header = CHECKPOINT_MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n"
    tmp = run_dir / f".checkpoint.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, run_dir / CHECKPOINT)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # there only when writing or renaming failed (disk full)


class CheckpointUnusable(ConfigError):
    """A run folder's checkpoint cannot be used: missing, damaged, foreign, unsafe, or not of the
    run's config."""


def load_checkpoint(run_dir: Path) -> dict:
    """Load ``checkpoint.pt`` (checksum verified, then ``torch.load`` with ``weights_only=True``:
    a checkpoint file cannot run code). A checkpoint written before checksums were stored is
    loaded with a warning."""
    state, verified = _read_checkpoint(Path(run_dir))
    if not verified:
        _warn_unverified(Path(run_dir) / CHECKPOINT)
    return state


def _warn_unverified(path: Path) -> None:
    warnings.warn(f"{path} has no checksum (written by a seqbench before checksums were "
                  "stored): its bytes cannot be verified, loading it as it is", stacklevel=3)


def _read_checkpoint(run_dir: Path) -> tuple[dict, bool]:
    """The checkpoint's state and whether its checksum was verified (False: an older checkpoint
    without one). Any damaged, foreign or unsafe file is a one-line ConfigError naming it."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise CheckpointUnusable(f"no checkpoint in {run_dir} (run with --checkpoint-every N to make one)")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointUnusable(f"cannot read {path}: {e.strerror}") from None
    verified = data.startswith(CHECKPOINT_MAGIC)
    if verified:
        stored = data[len(CHECKPOINT_MAGIC):_HEADER_LEN - 1].decode("ascii", "replace")
        body = data[_HEADER_LEN:]
        if len(data) < _HEADER_LEN or data[_HEADER_LEN - 1:_HEADER_LEN] != b"\n":
            raise CheckpointUnusable(f"cannot load {path}: damaged checkpoint (its header is cut or "
                                     "changed)")
        if hashlib.sha256(body).hexdigest() != stored:
            raise CheckpointUnusable(f"cannot load {path}: damaged checkpoint (its SHA-256 does not "
                                     "match the one stored with it: truncated or changed since it was "
                                     "written); refusing to resume from it")
    elif data.startswith(CHECKPOINT_MAGIC[:8]):
        raise CheckpointUnusable(f"cannot load {path}: damaged checkpoint (its header is changed)")
    else:
        body = data  # an older checkpoint: torch's bytes alone
    if not body:
        raise CheckpointUnusable(f"cannot load {path}: the file is empty (damaged, not a checkpoint)")
    try:
        state = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:  # an object that would run code when loaded (torch names its global)
            raise CheckpointUnusable(f"refusing to load {path}: it holds {found.group(1)}, not only "
                                     "tensors and plain values (checkpoints load with weights_only=True)"
                                     ) from None
        raise CheckpointUnusable(f"cannot load {path}: not a seqbench checkpoint") from None
    except Exception as e:  # noqa: BLE001  torch raises anything on foreign bytes (KeyError...)
        text = " ".join(str(e).split())
        first = f"{type(e).__name__}: {text}" if text else type(e).__name__
        raise CheckpointUnusable(f"cannot load {path}: damaged or not a checkpoint ({first[:100]})") from None
    if not isinstance(state, dict):
        raise CheckpointUnusable(f"cannot load {path}: not a seqbench checkpoint (it holds a "
                                 f"{type(state).__name__}, not a training state)")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise CheckpointUnusable(f"cannot load {path}: not a seqbench checkpoint (no {missing[0]!r})")
    return state, verified


def execute_run(cfg: RunConfig, out: str | os.PathLike = DEFAULT_OUT, quiet: bool = False,
                progress_stream=None, checkpoint_every: int = 0,
                handle_signals: bool = False,
                tensorboard: str | os.PathLike | None = None) -> tuple[dict, str]:
    """Train one run as ``cfg`` says; write its folder and its runs.csv row.

    Returns the row (a dict over RUN_COLUMNS) and the one-line summary. With
    ``checkpoint_every`` > 0 the run saves ``checkpoint.pt`` every that many steps (and when
    interrupted), so that ``resume_run`` can continue it. With ``handle_signals``, SIGINT and
    SIGTERM stop the run at the next step boundary: its row is written with status
    ``interrupted`` and the metrics so far, a checkpoint is saved, and RunInterrupted is raised.
    With ``tensorboard`` (a folder), the run's losses and probes are also written as TensorBoard
    events into ``<tensorboard>/<run id>`` (seqbench.tensorboard).
    """
    cfg = cfg.validate()
    check_memory(cfg)  # arithmetic only: a run that cannot fit is refused before any allocation
    if tensorboard is not None:
        require_tensorboard()  # before anything is written
    device = resolve_device(cfg.device)
    out = Path(out)
    check_appendable(out / "runs.csv", RUN_COLUMNS)  # a foreign runs.csv fails before any work
    trainer = Trainer(cfg, device)  # a cell that cannot be built fails before anything is written
    # Signals are caught from before the run folder exists: a Ctrl-C between its creation and
    # the first step stops the run at step 0, with an interrupted row and a checkpoint, so every
    # folder without a finished row is resumable (before this, such a folder was left half made:
    # a config.json, no checkpoint, no row). A signal before this line leaves no folder.
    with _stop_on_signals(handle_signals) as signals:
        run_dir = _new_run_dir(out / "runs", cfg)
        # one writer per run folder: a `--resume` of it while it runs refuses (seqbench.claims)
        with hold_run_folder(run_dir):
            started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            _write_json(run_dir / "config.json", {"run_id": run_dir.name,
                                                  "config_id": cfg.config_id(),
                                                  "started_at": started_at,
                                                  "checkpoint_every": checkpoint_every,
                                                  **cfg.to_dict()})
            with open(run_dir / "curve.csv", "w", newline="") as f:
                csv.DictWriter(f, CURVE_COLUMNS, lineterminator="\n").writeheader()
            return _drive(trainer, run_dir, out, started_at, quiet, progress_stream,
                          checkpoint_every, handle_signals, tensorboard, signals=signals)


def resume_run(run_dir: str | os.PathLike, quiet: bool = False, progress_stream=None,
               handle_signals: bool = False, device: str | None = None,
               threads: int | None = None,
               tensorboard: str | os.PathLike | None = None) -> tuple[dict, str]:
    """Continue an interrupted run from its ``checkpoint.pt``; on CPU the result is
    bit-identical to an uninterrupted run. Its learning curve and gradient rows are cut back to
    the checkpoint, then grow again; a new row is appended to runs.csv. A finished run whose row
    could not be appended (a full disk) gets its kept row appended, without training again.

    One writer per run folder: the folder's lock (``seqbench.claims.hold_run_folder``) is held
    from before the "already finished" check to the end, so a second resume of the folder, or a
    resume of a run still running, refuses in one line (RunFolderBusy) instead of training and
    recording the run twice."""
    args = (quiet, progress_stream, handle_signals, device, threads, tensorboard)
    if not (Path(run_dir) / "config.json").is_file():
        return _resume(Path(run_dir), *args)  # not a run folder: its refusal, nothing locked
    with hold_run_folder(Path(run_dir).resolve()):
        return _resume(Path(run_dir), *args)


def run_dirs(out: str | os.PathLike, cfg: RunConfig) -> list[Path]:
    """The folders under OUT/runs of ``cfg``'s runs: named for it (``RunConfig.run_name``, or that
    name with a ``-<n>`` suffix, ``_new_run_dir``) and with a config.json that gives its config
    id. A folder without a readable config.json is left out."""
    base, cid = cfg.run_name(), cfg.config_id()
    found = []
    for folder in (Path(out) / "runs").glob(f"{base}*"):
        if folder.name != base and not re.fullmatch(re.escape(base) + r"-\d+", folder.name):
            continue
        try:
            stored = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(stored, dict) and stored.get("config_id") == cid:
            found.append(folder)
    return found


def checkpointed_run_dir(out: str | os.PathLike, cfg: RunConfig) -> Path | None:
    """The folder under OUT/runs of an unfinished run of ``cfg`` that holds a checkpoint, so
    that a sweep continues the run (``resume_run``) instead of starting it over: one of
    ``run_dirs`` that holds ``checkpoint.pt``. Of several (a run started over once its checkpoint
    could not be used), the one whose checkpoint was written last; None when there is none.
    Whether the folder's run finished is for the caller to know (a sweep asks only for configs
    that runs.csv does not record as finished; ``resume_run`` refuses a finished one)."""
    found = []
    for folder in run_dirs(out, cfg):
        with contextlib.suppress(OSError):  # no checkpoint: killed before its first
            found.append(((folder / CHECKPOINT).stat().st_mtime, folder.name, folder))
    return max(found)[2] if found else None


def checkpoint_step(run_dir: str | os.PathLike) -> int | None:
    """The step a run folder's checkpoint was saved at; None when it cannot be used."""
    try:
        state, _ = _read_checkpoint(Path(run_dir))
        return int(state["step"])
    except (CheckpointUnusable, TypeError, ValueError):
        return None


def _resume(run_dir: Path, quiet: bool, progress_stream, handle_signals: bool,
            device: str | None, threads: int | None,
            tensorboard: str | os.PathLike | None) -> tuple[dict, str]:
    """resume_run, with the run folder's lock held."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.json)")
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
        meta = {k: saved.pop(k) for k in ("run_id", "config_id", "started_at", "checkpoint_every")
                if k in saved}
        problem = _type_problem(saved, RunConfig)
        if problem is None and not _is_int(meta.get("checkpoint_every", 0)):
            problem = f"checkpoint_every is {meta['checkpoint_every']!r}, not an integer"
        if problem:
            raise ConfigError(f"{problem}; the file was edited since the run started, refusing "
                              "to resume")
        overrides = {k: v for k, v in {"device": device, "threads": threads}.items()
                     if v is not None}
        cfg = RunConfig.from_dict({**saved, **overrides}).validate()
        checkpoint_every = int(meta.get("checkpoint_every", 0))
    except ConfigError as e:
        raise ConfigError(f"{config_path}: {e}") from None
    except (ValueError, TypeError, AttributeError) as e:  # hand-edited or damaged JSON
        raise ConfigError(f"{config_path} is not a seqbench run config "
                          f"({type(e).__name__}: {' '.join(str(e).split())[:100]})") from None
    run_dir, out = _locate(run_dir, meta.get("run_id"))
    config_path = run_dir / "config.json"
    _check_config_id(cfg, meta.get("config_id"), config_path, out / "runs.csv")
    check_appendable(out / "runs.csv", RUN_COLUMNS)
    runs_csv = out / "runs.csv"
    if runs_csv.is_file():
        done = [r["status"] for r in read_rows(runs_csv)
                if r.get("run_id") == run_dir.name and r.get("status") != "interrupted"]
        if done:
            raise ConfigError(f"run {run_dir.name} already finished (status {done[-1]}); "
                              "nothing to resume")
    recorded = _record_kept_row(run_dir, runs_csv)
    if recorded is not None:
        return recorded
    state, verified = _read_checkpoint(run_dir)
    trainer = Trainer(cfg, resolve_device(cfg.device))
    try:
        trainer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        raise CheckpointUnusable(f"{run_dir / CHECKPOINT} does not fit the run's config.json "
                                 f"({type(e).__name__}: {' '.join(str(e).split())[:100]})") from None
    if not verified:  # warned once it is known to be used (a refusal is one line alone)
        _warn_unverified(run_dir / CHECKPOINT)
    step = trainer.step
    _rewrite_csv(run_dir / "curve.csv", CURVE_COLUMNS, [asdict(p) for p in trainer.curve])
    grads_path = run_dir / "grads.csv"
    if grads_path.is_file():  # probes at or after the checkpoint's step are taken again
        kept = [r for r in read_rows(grads_path) if r["step"].isdigit() and int(r["step"]) < step]
        _rewrite_csv(grads_path, GRADS_COLUMNS, kept)
    dynamics_path = run_dir / "dynamics.csv"
    if dynamics_path.is_file():  # the same for the dynamics probes (--probe lyapunov ...)
        from seqbench.dynamics.records import DYNAMICS_COLUMNS

        kept = [r for r in read_rows(dynamics_path)
                if r["step"].isdigit() and int(r["step"]) < step]
        _rewrite_csv(dynamics_path, DYNAMICS_COLUMNS, kept)
    return _drive(trainer, run_dir, out, meta.get("started_at", ""), quiet, progress_stream,
                  checkpoint_every, handle_signals, tensorboard)


def _locate(run_dir: Path, run_id) -> tuple[Path, Path]:
    """The run folder as its results folder knows it, and that results folder (OUT: the run's
    rows go to OUT/runs.csv). A run folder is OUT/runs/<run id>. Given through a symbolic link
    (``--resume LINK``, LINK -> results/runs/<run id>), the folder above the link is no results
    folder: its rows would start a new runs.csv there, under the link's name as run id. So both
    the path as given and the real one (links followed) are tried: of those inside a ``runs/``
    folder and named as config.json's run_id, the one whose runs.csv records the run wins, else
    the path as given, else the real one; none is a one-line refusal."""
    given = Path(os.path.abspath(run_dir))  # ".." and "." taken out, links kept
    real = run_dir.resolve()
    candidates = []
    for folder in (given, real):
        if folder.parent.name == "runs" and folder.name == (run_id or folder.name) \
                and folder not in candidates:
            candidates.append(folder)
    if not candidates:
        raise ConfigError(f"{run_dir} is not a run folder inside a results folder (OUT/runs/"
                          f"<run id>; it is {real}), so the runs.csv its rows belong to is "
                          "unknown; give the run folder's path under its results folder")
    for folder in candidates:
        runs_csv = folder.parent.parent / "runs.csv"
        if runs_csv.is_file():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a damaged line is reported by the steps after
                try:
                    if any(r.get("run_id") == folder.name for r in read_rows(runs_csv)):
                        break
                except ConfigError:
                    pass
    else:
        folder = candidates[0]
    # the path as the user typed it when that is the one (messages and the row's run_dir)
    return (run_dir if folder == given else folder), folder.parent.parent


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _has_type(value, hint) -> bool:
    """Whether a JSON value is of a RunConfig/CellConfig field's declared type (an int where a
    float is declared is one; 300.5 or true where an int is declared is not)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) \
        else (hint,)
    for t in args:
        if t is type(None) and value is None:
            return True
        if typing.get_origin(t) is tuple:  # tuple[int, ...] (eval_seq_lens), tuple[str, ...]
            item = typing.get_args(t)[0]
            if isinstance(value, (list, tuple)) and all(
                    isinstance(v, str) if item is str else _is_int(v) for v in value):
                return True
        elif t is bool and isinstance(value, bool):
            return True
        elif t is int and _is_int(value):
            return True
        elif t is float and (_is_int(value) or isinstance(value, float)):
            return True
        elif t is str and isinstance(value, str):
            return True
    return False


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               type(None): "null"}


def _type_problem(d: dict, cls, prefix: str = "") -> str | None:
    """The first field of a saved config (``RunConfig.to_dict``) whose value is not of its
    declared type, in words; None if all are. Unknown keys are left to ``from_dict``."""
    if not isinstance(d, dict):
        return f"{prefix.rstrip('.') or 'the config'} is {type(d).__name__}, not a JSON object"
    for name, hint in typing.get_type_hints(cls).items():
        if name not in d:
            continue
        value = d[name]
        if hint is CellConfig:
            problem = _type_problem(value, CellConfig, f"{prefix}{name}.")
            if problem:
                return problem
        elif not _has_type(value, hint):
            union = typing.get_origin(hint) in (typing.Union, types.UnionType)
            args = typing.get_args(hint) if union else (hint,)
            words = " or ".join(("a list of strings" if typing.get_args(t)[0] is str
                                 else "a list of integers") if typing.get_origin(t) is tuple
                                else _TYPE_WORDS.get(t, str(t)) for t in args)
            return f"{prefix}{name} is {json.dumps(value)}, not {words}"
    return None


#: run folder names (RunConfig.run_name, then -<n> for a second run of one config)
_RUN_NAME = re.compile(r"^(?P<task>.+)-T(?P<seq_len>\d+)-(?P<cell>[^-]+)-(?P<impl>[^-]+)"
                       r"-s(?P<seed>\d+)-(?P<id>[0-9a-f]{8})(?:-\d+)?$")


def _check_config_id(cfg: RunConfig, stored, config_path: Path, runs_csv: Path) -> None:
    """Refuse a config.json that no longer gives the run's ``config_id`` (hand-edited since the
    run started): resuming it would train the checkpoint's weights and optimizer state under
    other settings and record them under another identity. Names the first field that differs
    from what the run started with, where the run's runs.csv row or folder name tells."""
    if not isinstance(stored, str) or not stored:
        raise ConfigError(f"{config_path} has no config_id to check it against: it was edited "
                          "since the run started, refusing to resume")
    now = cfg.config_id()
    if now == stored:
        return
    differs = None
    given = cfg.columns()
    if runs_csv.is_file():  # the run's interrupted row holds the settings its id was made from
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged line is reported by the steps after
            try:
                rows = [r for r in read_rows(runs_csv) if r.get("config_id") == stored
                        and r.get("run_id") == config_path.parent.name]
            except ConfigError:
                rows = []
        for row in rows[-1:]:
            for column, value in given.items():
                if column in row and row[column] != _format(value):
                    differs = (column, row[column], _format(value))
                    break
    found = _RUN_NAME.match(config_path.parent.name)
    if differs is None and found:  # the folder's name holds the task, T, cell, impl and seed
        c = cfg.cell
        for key, value in (("task", cfg.task), ("seq_len", cfg.seq_len), ("cell", c.cell),
                           ("impl", c.impl), ("seed", cfg.seed)):
            text = re.sub(r"[^A-Za-z0-9._-]", "_", str(value))
            if found.group(key) != text:
                differs = (key, found.group(key), text)
                break
    if differs:
        what = (f"{differs[0]} is {differs[2] or 'empty'}, but the run started with "
                f"{differs[1] or 'empty'} (config_id {stored})")
    else:
        what = f"its settings give config_id {now}, not the run's {stored}"
    raise ConfigError(f"{config_path} was edited since the run started: {what}; refusing to "
                      "resume (restore the file, or start a new run)")


def _rewrite_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # there only when writing or renaming failed


def _drive(trainer: Trainer, run_dir: Path, out: Path, started_at: str, quiet: bool,
           progress_stream, checkpoint_every: int, handle_signals: bool,
           tensorboard: str | os.PathLike | None = None,
           signals: dict | None = None) -> tuple[dict, str]:
    """Train with the run folder's callbacks (curve, probe, checkpoints, progress, TensorBoard
    events), then write the runs.csv row. ``signals``: the state of a ``_stop_on_signals``
    the caller holds already (else one is entered here, with ``handle_signals``)."""
    cfg, task, device = trainer.cfg, trainer.task, trainer.device
    # --threads, or this run's share of the cores with the other runs (seqbench.threads)
    share = ThreadShare(cfg.threads, shared=device.type == "cpu")
    baseline = task.baseline_loss(cfg.seq_len)
    label = f"{cfg.task} T={cfg.seq_len} {cfg.cell.cell}/{cfg.cell.impl} s{cfg.seed}"
    bar = ProgressLine(cfg.steps, label, stream=progress_stream, enabled=False if quiet else None,
                       eta=True)
    state = {"t0": time.perf_counter(), "step0": trainer.step, "eval": ""}
    curve_file = open(run_dir / "curve.csv", "a", newline="")
    curve_writer = csv.DictWriter(curve_file, CURVE_COLUMNS, lineterminator="\n")
    events = TensorBoardLog(tensorboard, run_dir.name, baseline) if tensorboard else None

    def on_eval(point: CurvePoint) -> None:
        curve_writer.writerow(asdict(point))
        curve_file.flush()
        if events:
            events.evaluation(point)
        state["eval"] = f"eval {point.eval_loss:.4g} ({point.eval_loss / baseline:.1%} of baseline)"

    def on_step(step: int, loss: float) -> None:
        share.poll()
        if events:
            events.step(step, loss)
        rate = (step - state["step0"]) / max(time.perf_counter() - state["t0"], 1e-9)
        bar.update(step, f"loss {loss:.4g} ({loss / baseline:.1%}) | {state['eval']} | "
                         f"{rate:.1f} steps/s")

    probe = None
    if cfg.probe_every > 0 and (not cfg.probes or "gradient" in cfg.probes):
        setup = ProbeSetup.create(task, cfg.seq_len, cfg.cell, cfg.seed, cfg.batch_size, device,
                                  cfg.label)
        probe = TrainingProbe(setup, run_dir / "grads.csv", run_dir.name)
        if events:
            probe_rows = probe
            probe = lambda step, model: events.probe(step, probe_rows(step, model))  # noqa: E731
    if cfg.probe_every > 0 and cfg.probes:  # --probe lyapunov ...: <run dir>/dynamics.csv
        from seqbench.dynamics.records import TrainingDynamics

        measure = TrainingDynamics.for_run(cfg, task, device, run_dir / "dynamics.csv",
                                           run_dir.name)
        if measure is not None:
            probe = _both(probe, measure)
    held = contextlib.nullcontext(signals) if signals is not None \
        else _stop_on_signals(handle_signals)
    with held as signals, share:
        try:
            result = trainer.run(
                on_eval=on_eval, on_step=on_step, probe=probe,
                stop=lambda: signals["signum"],
                checkpoint=lambda st: save_checkpoint(run_dir, st),
                checkpoint_every=checkpoint_every,
            )
        finally:
            bar.close()
            curve_file.close()
            if events:
                events.close()
            _remove_leftovers(run_dir)  # also those of an earlier, killed session of the run
    row = {**_row(trainer, result, run_dir, started_at, baseline, device), "threads": share.used}
    # the other lags first: a run recorded in runs.csv has all of its rows
    try:
        extra = lengths.length_rows(cfg, task, run_dir.name, row["config_id"], result)
        try:
            lengths.write_rows(run_dir, extra)
        except OSError as e:  # the row is kept all the same (a full disk loses no result)
            _record(out / "runs.csv", row, run_dir, problem=e)
        _record(out / "runs.csv", row, run_dir)
    finally:
        _remove_leftovers(run_dir)  # and the lock files of grads.csv and lengths.csv
    summary = summary_line(cfg, result, baseline)
    if result.status == "interrupted":
        summary += f"; continue with: seqbench run --resume {run_dir}"
        raise RunInterrupted(signals["signum"], row, summary)
    return row, summary


def _both(first, second):
    """One probe callback that calls ``first`` (when there is one), then ``second``."""
    def probe(step, model):
        if first is not None:
            first(step, model)
        second(step, model)

    return probe


class RowNotRecorded(ConfigError):
    """A finished run's row could not be appended to runs.csv. ``kept``: where it was written
    instead (the run folder's row.json, else ``kept_row_fallback``), or None when nothing could
    be written: then the message itself holds the row, the last place it can go."""

    def __init__(self, message: str, row: dict, kept: Path | None):
        super().__init__(message)
        self.row, self.kept = row, kept


def kept_row_fallback(run_dir: Path) -> Path:
    """Where a finished run's row goes when neither runs.csv nor its run folder can be written
    (both on a full disk): the system temporary folder (``TMPDIR``), usually another file
    system, named by the run id and a hash of the run folder's real path (two results folders
    can hold runs of one name). ``seqbench run --resume RUN_DIR`` looks for it there."""
    real = os.path.realpath(run_dir)
    digest = hashlib.sha256(real.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "seqbench-kept-rows" / f"{Path(real).name}-{digest}.json"


def _record(runs_csv: Path, row: dict, run_dir: Path, problem: OSError | None = None) -> None:
    """Append the run's row to runs.csv; ``problem``: why it must not be appended (a file of the
    run could not be written), so it is kept at once.

    A finished result is never dropped: the row stays in memory until it is written somewhere.
    When the append fails (a full disk, a lost mount) it goes to the run folder's row.json, else
    to ``kept_row_fallback``, and ``seqbench run --resume RUN_DIR`` records it later without
    training again; when neither can be written, the error line holds the row itself. The error
    (RowNotRecorded) says in one line where the row is."""
    if problem is None:
        try:
            append_rows(runs_csv, [row], RUN_COLUMNS)
            return
        except OSError as e:
            problem = e
    why = f"could not append the run's row to {runs_csv}"
    if problem.filename and Path(str(problem.filename)).name != runs_csv.name:
        why = f"could not write {problem.filename}, so the run's row was not appended to {runs_csv}"
    places = [run_dir / KEPT_ROW, kept_row_fallback(run_dir)]
    for place in places:
        try:
            place.parent.mkdir(parents=True, exist_ok=True)
            _write_json(place, row)  # removes its row.tmp when the write fails
        except OSError:
            continue
        raise RowNotRecorded(f"{problem.strerror}: {why}; the row is kept in {place}, and "
                             f"`seqbench run --resume {run_dir}` records it once the file can be "
                             "written", row, place) from None
    text = json.dumps(row, sort_keys=True, default=str)
    raise RowNotRecorded(f"{problem.strerror}: {why}, and neither {places[0]} nor {places[1]} "
                         f"could be written; the row, to save as {places[0]} and record with "
                         f"`seqbench run --resume {run_dir}`: {text}", row, None) from None


def _kept_rows(run_dir: Path) -> list[Path]:
    """The files holding a kept row of this run that exist (``_record``)."""
    return [p for p in (run_dir / KEPT_ROW, kept_row_fallback(run_dir)) if p.is_file()]


def _record_kept_row(run_dir: Path, runs_csv: Path) -> tuple[dict, str] | None:
    """A finished run whose row could not be appended (``_record``): append it now."""
    found = _kept_rows(run_dir)
    if not found:
        return None
    kept = found[0]
    try:
        row = json.loads(kept.read_text(encoding="utf-8"))
        if not isinstance(row, dict) or row.get("run_id") != run_dir.name:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{kept} is not a runs.csv row of {run_dir.name} (damaged JSON)") from None
    if row.get("status") == "interrupted":  # an interrupted run: go on training it
        for path in found:
            path.unlink()
        return None
    try:
        append_rows(runs_csv, [row], RUN_COLUMNS)
    except OSError as e:
        raise RowNotRecorded(f"{e.strerror}: could not append the kept row of {run_dir.name} to "
                             f"{runs_csv}; it stays in {kept}: run `seqbench run --resume "
                             f"{run_dir}` again once the file can be written", row, kept) from None
    for path in found:
        path.unlink()
    return row, f"{run_dir.name}: recorded its kept row (from {kept}) in {runs_csv} (status {row['status']})"


def _row(trainer: Trainer, result: TrainResult, run_dir: Path, started_at: str, baseline: float,
         device: torch.device) -> dict:
    cfg, task = trainer.cfg, trainer.task
    lag_min, lag_max = task.lag_range(cfg.seq_len)
    val = result.val if result.val is not None else result.final
    return {
        "run_id": run_dir.name,
        "config_id": cfg.config_id(),
        "started_at": started_at,
        **cfg.columns(),
        "total_steps": task.total_steps(cfg.seq_len),
        "lag_min": lag_min,
        "lag_max": lag_max,
        "n_params": count_parameters(result.model),
        "status": result.status,
        "steps_taken": result.steps_taken,
        "final_loss": result.final.loss,
        "baseline_loss": baseline,
        "loss_ratio": result.final.loss / baseline,
        "accuracy": result.final.accuracy,
        "solved": result.solved,
        "solved_step": result.solved_step,
        "val_loss": val.loss,
        "val_loss_ratio": val.loss / baseline,
        "val_accuracy": val.accuracy,
        "val_solved": result.val_solved,
        "still_improving": result.still_improving,
        "wall_s": round(result.wall_seconds, 3),
        "train_s": round(result.train_seconds, 3),
        "throughput_seq_s": round(result.throughput, 2),
        **environment(device, torch.get_num_threads()),
        "kernel": kernel(cfg.cell.cell, cfg.cell.impl, device, cfg.cell.norm),
        "run_dir": str(run_dir),
    }
