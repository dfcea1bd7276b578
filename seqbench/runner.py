"""One training run end to end: a run folder, the learning curve, a row in runs.csv, a summary.

Layout of ``out`` (default ``results/``)::

    results/runs.csv                 one row per run (seqbench.results.RUN_COLUMNS)
    results/runs/<run_id>/config.json
    results/runs/<run_id>/curve.csv  step, train_loss, eval_loss, accuracy, grad_norm, elapsed_s
    results/runs/<run_id>/grads.csv  gradient norm against lag (with probe_every > 0)
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

from seqbench.config import RunConfig
from seqbench.grads import ProbeSetup, TrainingProbe
from seqbench.model import count_parameters
from seqbench.progress import ProgressLine, format_duration
from seqbench.provenance import environment, kernel, resolve_device
from seqbench.results import RUN_COLUMNS, append_rows
from seqbench.tasks import make_task
from seqbench.train import CurvePoint, TrainResult, train

CURVE_COLUMNS = [f for f in CurvePoint.__dataclass_fields__]


def _new_run_dir(root: Path, cfg: RunConfig) -> Path:
    """results/runs/<task>-T<T>-<cell>-<impl>-s<seed>-<config id>[-<n>], created exclusively."""
    c = cfg.cell
    base = f"{cfg.task}-T{cfg.seq_len}-{c.cell}-{c.impl}-s{cfg.seed}-{cfg.config_id()[:8]}"
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
    loss_name = "MSE" if cfg.task == "adding" else "loss"
    loss = result.final.loss
    metric = f"{loss_name} {loss:.4g} ({100 * loss / baseline:.1f}% of baseline)"
    if cfg.task != "adding":
        metric += f", accuracy {result.final.accuracy:.3f}"
    if result.solved:
        outcome = f"solved at step {result.solved_step}"
    else:
        outcome = f"not solved in {result.steps_taken} steps"
    return f"{head}: {outcome}, {metric}, {took}"


def execute_run(cfg: RunConfig, out: str | os.PathLike = "results", quiet: bool = False,
                progress_stream=None) -> tuple[dict, str]:
    """Train one run as ``cfg`` says; write its folder and its runs.csv row.

    Returns the row (a dict over RUN_COLUMNS) and the one-line summary.
    """
    cfg = cfg.validate()
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    task = make_task(cfg.task, cfg.variant)
    baseline = task.baseline_loss(cfg.seq_len)
    out = Path(out)
    run_dir = _new_run_dir(out / "runs", cfg)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_json(run_dir / "config.json", {"run_id": run_dir.name, "config_id": cfg.config_id(),
                                          "started_at": started_at, **cfg.to_dict()})

    curve_file = open(run_dir / "curve.csv", "w", newline="")
    curve_writer = csv.DictWriter(curve_file, CURVE_COLUMNS, lineterminator="\n")
    curve_writer.writeheader()
    label = f"{cfg.task} T={cfg.seq_len} {cfg.cell.cell}/{cfg.cell.impl} s{cfg.seed}"
    bar = ProgressLine(cfg.steps, label, stream=progress_stream, enabled=False if quiet else None)
    state = {"t0": time.perf_counter(), "eval": ""}

    def on_eval(point: CurvePoint) -> None:
        curve_writer.writerow(asdict(point))
        curve_file.flush()
        state["eval"] = f"eval {point.eval_loss:.4g} ({point.eval_loss / baseline:.1%} of baseline)"

    def on_step(step: int, loss: float) -> None:
        rate = step / max(time.perf_counter() - state["t0"], 1e-9)
        bar.update(step, f"loss {loss:.4g} | {state['eval']} | {rate:.1f} steps/s")

    probe = None
    if cfg.probe_every > 0:
        setup = ProbeSetup.create(task, cfg.seq_len, cfg.cell, cfg.seed, cfg.batch_size, device)
        probe = TrainingProbe(setup, run_dir / "grads.csv", run_dir.name)
    try:
        result = train(cfg, device, on_eval=on_eval, on_step=on_step, probe=probe)
    finally:
        bar.close()
        curve_file.close()

    row = {
        "run_id": run_dir.name,
        "config_id": cfg.config_id(),
        "started_at": started_at,
        "task": cfg.task,
        "variant": cfg.variant,
        "seq_len": cfg.seq_len,
        "total_steps": task.total_steps(cfg.seq_len),
        **cfg.cell.to_dict(),
        "n_params": count_parameters(result.model),
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "clip": cfg.clip,
        "clip_mode": cfg.clip_mode,
        "batch_size": cfg.batch_size,
        "step_budget": cfg.steps,
        "eval_every": cfg.eval_every,
        "eval_size": cfg.eval_size,
        "until_solved": cfg.until_solved,
        "seed": cfg.seed,
        "probe_every": cfg.probe_every,
        "status": result.status,
        "steps_taken": result.steps_taken,
        "final_loss": result.final.loss,
        "baseline_loss": baseline,
        "loss_ratio": result.final.loss / baseline,
        "accuracy": result.final.accuracy,
        "solved": result.solved,
        "solved_step": result.solved_step,
        "wall_s": round(result.wall_seconds, 3),
        "train_s": round(result.train_seconds, 3),
        "throughput_seq_s": round(result.throughput, 2),
        **environment(device, torch.get_num_threads()),
        "kernel": kernel(cfg.cell.cell, cfg.cell.impl, device),
        "run_dir": str(run_dir),
        "label": cfg.label,
    }
    append_rows(out / "runs.csv", [row], RUN_COLUMNS)
    return row, summary_line(cfg, result, baseline)
