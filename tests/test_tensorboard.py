"""`seqbench run --tensorboard DIR`: the events TensorBoard reads back are the run's own numbers
(curve.csv, grads.csv), and a missing tensorboard package is a one-line error."""

import builtins
import csv

import pytest
from click.testing import CliRunner

from seqbench.cli import cli

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

RUN = ["run", "--task", "delayed_recall", "-T", "6", "--hidden", "8", "--steps", "40",
       "--eval-every", "20", "--eval-size", "16", "--test-size", "16", "--batch-size", "8",
       "--probe-every", "20", "--threads", "1", "-q"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_events_hold_the_runs_numbers(tmp_path):
    result = CliRunner().invoke(cli, [*RUN, "--out", str(tmp_path / "out"),
                                      "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 0, result.output
    (row,) = read_csv(tmp_path / "out" / "runs.csv")
    (logdir,) = (tmp_path / "tb").iterdir()
    assert logdir.name == row["run_id"]
    events = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss", "train/loss_ratio", "val/loss", "val/loss_ratio", "val/accuracy",
            "gradient/decay_factor", "gradient/lag_T_over_lag_0"} <= set(tags["scalars"])
    assert "gradient/vs_lag" in tags["images"] and "gradient/log10_norm" in tags["histograms"]
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 41))
    curve = read_csv(tmp_path / "out" / "runs" / row["run_id"] / "curve.csv")
    val = events.Scalars("val/loss")
    assert [e.step for e in val] == [int(p["step"]) for p in curve]
    assert [e.value for e in val] == pytest.approx([float(p["eval_loss"]) for p in curve],
                                                   rel=1e-6)
    grads = read_csv(tmp_path / "out" / "runs" / row["run_id"] / "grads.csv")
    decay = {int(r["step"]): float(r["decay_factor"]) for r in grads}
    logged = {e.step: e.value for e in events.Scalars("gradient/decay_factor")}
    assert logged == pytest.approx(decay, rel=1e-6) and sorted(logged) == [0, 20, 40]
    assert [e.step for e in events.Images("gradient/vs_lag")] == [0, 20, 40]


def test_without_tensorboard_installed_nothing_is_written(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    result = CliRunner().invoke(cli, [*RUN, "--out", str(tmp_path / "out"),
                                      "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        'Error: --tensorboard needs the tensorboard package: pip install "seqbench[tensorboard]" '
        "(or pip install tensorboard)"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "tb").exists()
