"""One training run end to end: a run folder, the learning curve, a row in runs.csv, a summary.

Layout of ``out`` (default ``results/``)::

    results/runs.csv                 one row per run (seqbench.results.RUN_COLUMNS)
    results/runs/<run_id>/config.json
    results/runs/<run_id>/curve.csv  step, train_loss, eval_loss, accuracy, grad_norm, elapsed_s
    results/runs/<run_id>/grads.csv  gradient norm against lag (with probe_every > 0)
    results/runs/<run_id>/checkpoint.pt  model, optimizer, RNG and curve (with checkpoint_every)
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pickle
import re
import signal
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

from seqbench import lengths
from seqbench.choices import DEFAULT_OUT
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.grads import GRADS_COLUMNS, ProbeSetup, TrainingProbe
from seqbench.model import count_parameters
from seqbench.progress import ProgressLine, format_duration
from seqbench.provenance import environment, kernel, resolve_device
from seqbench.results import RUN_COLUMNS, append_rows, check_appendable, read_rows
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
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


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

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Write ``checkpoint.pt`` atomically: a temporary file, fsync, then rename."""
    tmp = run_dir / f".checkpoint.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path) -> dict:
    """Load ``checkpoint.pt`` with ``weights_only=True``: a checkpoint file cannot run code."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"no checkpoint in {run_dir} (run with --checkpoint-every N to make one)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found:  # an object that would run code when loaded (torch names its global)
            raise ConfigError(f"refusing to load {path}: it holds {found.group(1)}, not only "
                              "tensors and plain values (checkpoints load with weights_only=True)"
                              ) from None
        raise ConfigError(f"cannot load {path}: not a seqbench checkpoint") from None
    except (RuntimeError, EOFError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"cannot load {path}: damaged or not a checkpoint ({first[:100]})") from None
    if not isinstance(state, dict):
        raise ConfigError(f"cannot load {path}: not a seqbench checkpoint")
    return state


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
    if tensorboard is not None:
        require_tensorboard()  # before anything is written
    device = resolve_device(cfg.device)
    out = Path(out)
    check_appendable(out / "runs.csv", RUN_COLUMNS)  # a foreign runs.csv fails before any work
    trainer = Trainer(cfg, device)  # a cell that cannot be built fails before anything is written
    run_dir = _new_run_dir(out / "runs", cfg)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_json(run_dir / "config.json", {"run_id": run_dir.name, "config_id": cfg.config_id(),
                                          "started_at": started_at,
                                          "checkpoint_every": checkpoint_every, **cfg.to_dict()})
    with open(run_dir / "curve.csv", "w", newline="") as f:
        csv.DictWriter(f, CURVE_COLUMNS, lineterminator="\n").writeheader()
    return _drive(trainer, run_dir, out, started_at, quiet, progress_stream, checkpoint_every,
                  handle_signals, tensorboard)


def resume_run(run_dir: str | os.PathLike, quiet: bool = False, progress_stream=None,
               handle_signals: bool = False, device: str | None = None,
               threads: int | None = None,
               tensorboard: str | os.PathLike | None = None) -> tuple[dict, str]:
    """Continue an interrupted run from its ``checkpoint.pt``; on CPU the result is
    bit-identical to an uninterrupted run. Its learning curve and gradient rows are cut back to
    the checkpoint, then grow again; a new row is appended to runs.csv."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.json)")
    try:
        saved = json.loads(config_path.read_text(encoding="utf-8"))
        meta = {k: saved.pop(k) for k in ("run_id", "config_id", "started_at", "checkpoint_every")
                if k in saved}
        overrides = {k: v for k, v in {"device": device, "threads": threads}.items()
                     if v is not None}
        cfg = RunConfig.from_dict({**saved, **overrides}).validate()
        checkpoint_every = int(meta.get("checkpoint_every", 0))
    except ConfigError as e:
        raise ConfigError(f"{config_path}: {e}") from None
    except (ValueError, TypeError, AttributeError) as e:  # hand-edited or damaged JSON
        raise ConfigError(f"{config_path} is not a seqbench run config "
                          f"({type(e).__name__}: {' '.join(str(e).split())[:100]})") from None
    out = run_dir.parent.parent
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
    state = load_checkpoint(run_dir)
    trainer = Trainer(cfg, resolve_device(cfg.device))
    try:
        trainer.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ConfigError(f"{run_dir / CHECKPOINT} does not fit the run's config.json "
                          f"({type(e).__name__}: {' '.join(str(e).split())[:100]})") from None
    step = trainer.step
    _rewrite_csv(run_dir / "curve.csv", CURVE_COLUMNS, [asdict(p) for p in trainer.curve])
    grads_path = run_dir / "grads.csv"
    if grads_path.is_file():  # probes at or after the checkpoint's step are taken again
        kept = [r for r in read_rows(grads_path) if r["step"].isdigit() and int(r["step"]) < step]
        _rewrite_csv(grads_path, GRADS_COLUMNS, kept)
    return _drive(trainer, run_dir, out, meta.get("started_at", ""), quiet, progress_stream,
                  checkpoint_every, handle_signals, tensorboard)


def _rewrite_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _drive(trainer: Trainer, run_dir: Path, out: Path, started_at: str, quiet: bool,
           progress_stream, checkpoint_every: int, handle_signals: bool,
           tensorboard: str | os.PathLike | None = None) -> tuple[dict, str]:
    """Train with the run folder's callbacks (curve, probe, checkpoints, progress, TensorBoard
    events), then write the runs.csv row."""
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
    if cfg.probe_every > 0:
        setup = ProbeSetup.create(task, cfg.seq_len, cfg.cell, cfg.seed, cfg.batch_size, device,
                                  cfg.label)
        probe = TrainingProbe(setup, run_dir / "grads.csv", run_dir.name)
        if events:
            probe_rows = probe
            probe = lambda step, model: events.probe(step, probe_rows(step, model))  # noqa: E731
    with _stop_on_signals(handle_signals) as signals, share:
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
    row = {**_row(trainer, result, run_dir, started_at, baseline, device), "threads": share.used}
    # the other lags first: a run recorded in runs.csv has all of its rows
    lengths.write_rows(run_dir, lengths.length_rows(cfg, task, run_dir.name, row["config_id"],
                                                    result))
    _record(out / "runs.csv", row, run_dir)
    summary = summary_line(cfg, result, baseline)
    if result.status == "interrupted":
        summary += f"; continue with: seqbench run --resume {run_dir}"
        raise RunInterrupted(signals["signum"], row, summary)
    return row, summary


def _record(runs_csv: Path, row: dict, run_dir: Path) -> None:
    """Append the run's row to runs.csv. If that fails (a full disk, a lost mount), the row is
    kept in the run folder, so that ``seqbench run --resume`` records it later without training
    the run again; the error says so."""
    try:
        append_rows(runs_csv, [row], RUN_COLUMNS)
    except OSError as e:
        try:
            _write_json(run_dir / KEPT_ROW, row)
        except OSError:
            raise e from None
        raise ConfigError(f"{e.strerror}: could not append the run's row to {runs_csv}; it is "
                          f"kept in {run_dir / KEPT_ROW}, and `seqbench run --resume {run_dir}` "
                          "records it once the file can be written") from None


def _record_kept_row(run_dir: Path, runs_csv: Path) -> tuple[dict, str] | None:
    """A finished run whose row could not be appended (``_record``): append it now."""
    kept = run_dir / KEPT_ROW
    if not kept.is_file():
        return None
    try:
        row = json.loads(kept.read_text(encoding="utf-8"))
    except ValueError:
        raise ConfigError(f"{kept} is not a seqbench runs.csv row (damaged JSON)") from None
    if row.get("status") == "interrupted":  # an interrupted run: go on training it
        kept.unlink()
        return None
    append_rows(runs_csv, [row], RUN_COLUMNS)
    kept.unlink()
    return row, f"{run_dir.name}: recorded its kept row in {runs_csv} (status {row['status']})"


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
