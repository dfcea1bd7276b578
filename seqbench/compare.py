"""Two runs side by side: the settings that differ, their final metrics and their curves.

A run is its folder (``results/runs/<run id>``: config.json and curve.csv, written by the runner);
its final metrics are its row in the runs.csv two levels up (the last row with its run id), or,
when that file is gone, the last point of its learning curve.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from seqbench.errors import ConfigError

#: config.json keys that are bookkeeping, not settings
BOOKKEEPING = ("run_id", "config_id", "started_at")
#: settings that say where and how fast a run executed, not what it computed (config.py)
ENVIRONMENT = ("device", "threads", "checkpoint_every")
#: the runs.csv columns shown side by side, in this order
METRICS = ("status", "steps_taken", "solved", "solved_step", "loss_ratio", "accuracy",
           "val_loss_ratio", "still_improving", "n_params", "wall_s", "throughput_seq_s",
           "device", "threads", "kernel", "torch_version", "git_commit")


@dataclass(frozen=True)
class RunRecord:
    """One run folder: its settings (the cell's flattened in), and its runs.csv row if found."""

    path: Path
    settings: dict
    row: dict | None

    @property
    def name(self) -> str:
        return self.path.name


def load_run(run_dir: str | os.PathLike) -> RunRecord:
    """The run in ``run_dir``; a ConfigError when it is not a run folder."""
    from seqbench.results import read_rows

    path = Path(run_dir)
    config = path / "config.json"
    if not config.is_file():
        raise ConfigError(f"{path} is not a seqbench run folder (no config.json); give "
                          "folders like results/runs/<run id>")
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{config} is not a run config (damaged JSON: {e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{config} is not a run config")
    settings = {k: v for k, v in raw.items() if k not in BOOKKEEPING and k != "cell"}
    settings.update(raw.get("cell") or {})
    runs_csv = path.parent.parent / "runs.csv"
    row = None
    if runs_csv.is_file():
        mine = [r for r in read_rows(runs_csv) if r.get("run_id") == path.name]
        row = mine[-1] if mine else None
    return RunRecord(path, settings, row)


def _text(value) -> str:
    return "" if value is None else str(value)


def differences(a: RunRecord, b: RunRecord, environment: bool = False) -> list[tuple[str, str, str]]:
    """(setting, value in a, value in b) for every setting that differs; the environment
    (device, threads) only with ``environment``."""
    keys = list(dict.fromkeys([*a.settings, *b.settings]))
    return [(k, _text(a.settings.get(k)), _text(b.settings.get(k))) for k in keys
            if _text(a.settings.get(k)) != _text(b.settings.get(k))
            and (environment or k not in ENVIRONMENT)]


def final_metrics(run: RunRecord) -> dict[str, str]:
    """The run's METRICS from its runs.csv row; from the last curve point when it has none."""
    if run.row is not None:
        return {k: run.row.get(k, "") for k in METRICS}
    from seqbench.plots.runs import read_curve
    from seqbench.tasks import make_task

    cfg, curve = read_curve(run.path)
    if curve.empty:
        return {"status": "no row in runs.csv, no curve point"}
    last = curve.iloc[-1]
    baseline = make_task(cfg["task"], cfg.get("variant")).baseline_loss(cfg["seq_len"])
    return {"status": "no row in runs.csv (from the curve's last validation point)",
            "steps_taken": str(int(last["step"])),
            "val_loss_ratio": f"{last['eval_loss'] / baseline:.6g}"}


def _short(value: str) -> str:
    """A float written by the runner (0.06471802666783333) to four significant digits."""
    try:
        x = float(value)
    except ValueError:
        return value
    return value if x.is_integer() or "." not in value else f"{x:.4g}"


def metric_rows(a: RunRecord, b: RunRecord) -> list[tuple[str, str, str]]:
    """(metric, a, b) for the metrics either run has, floats to four significant digits."""
    ma, mb = final_metrics(a), final_metrics(b)
    return [(k, _short(ma.get(k, "")), _short(mb.get(k, ""))) for k in METRICS
            if ma.get(k) or mb.get(k)]


def compare_figure(a: RunRecord, b: RunRecord, metric: str = "loss"):
    """Both learning curves on one axes (seqbench.plots.runs.curves_figure)."""
    from seqbench.plots.runs import curves_figure

    return curves_figure([a.path, b.path], metric=metric,
                         title=f"{a.name}\nagainst {b.name}")
