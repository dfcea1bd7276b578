"""A run's training as TensorBoard events (``seqbench run --tensorboard DIR``).

Optional: needs the ``tensorboard`` package (``pip install "seqbench[tensorboard]"``). Each run
writes into ``DIR/<run id>``, so that the runs logged into one DIR are compared in one
TensorBoard. What is logged, by tag:

- ``train/loss``, ``train/loss_ratio`` (over the task's memoryless baseline): every step;
- ``val/loss``, ``val/loss_ratio``, ``val/accuracy``, ``train/grad_norm`` (the clipped update's
  norm before clipping): at every evaluation;
- with ``--probe-every``, at every probe: ``gradient/decay_factor`` (fitted per step of lag),
  ``gradient/lag_T_over_lag_0`` (||dL/dh|| at the largest lag over its lag-0 value), and the
  gradient-vs-lag curve itself, as an image (``gradient/vs_lag``) and as a histogram of
  log10 ||dL/dh_t|| over the lags (``gradient/log10_norm``).
"""

from __future__ import annotations

import os
from pathlib import Path

from seqbench.errors import ConfigError


def require_tensorboard() -> None:
    """A one-line ConfigError when the tensorboard package is missing (checked before a run)."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: "
                          "pip install \"seqbench[tensorboard]\" (or pip install tensorboard)"
                          ) from None


class TensorBoardLog:
    """Writes one run's scalars and gradient-vs-lag curves under ``log_dir/run_id``."""

    def __init__(self, log_dir: str | os.PathLike, run_id: str, baseline: float):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.path = Path(log_dir) / run_id
        self.baseline = baseline
        self.writer = SummaryWriter(log_dir=str(self.path))

    def step(self, step: int, loss: float) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/loss_ratio", loss / self.baseline, step)

    def evaluation(self, point) -> None:
        """A CurvePoint of seqbench.train: the validation metrics at ``point.step``."""
        self.writer.add_scalar("val/loss", point.eval_loss, point.step)
        self.writer.add_scalar("val/loss_ratio", point.eval_loss / self.baseline, point.step)
        self.writer.add_scalar("val/accuracy", point.accuracy, point.step)
        if point.grad_norm == point.grad_norm:  # NaN at step 0, before any update
            self.writer.add_scalar("train/grad_norm", point.grad_norm, point.step)

    def probe(self, step: int, rows: list[dict]) -> None:
        """The rows one probe wrote to grads.csv (seqbench.grads); the top layer is logged."""
        import numpy as np

        top = [r for r in rows if r["layer"] == r["layers"] - 1]
        if not top:
            return
        top.sort(key=lambda r: r["lag"])
        lags = np.array([r["lag"] for r in top], dtype=float)
        norms = np.array([r["grad_norm"] for r in top], dtype=float)
        self.writer.add_scalar("gradient/decay_factor", float(top[0]["decay_factor"]), step)
        if norms[0] > 0:
            self.writer.add_scalar("gradient/lag_T_over_lag_0", float(norms[-1] / norms[0]), step)
        finite = norms[norms > 0]
        if finite.size:
            self.writer.add_histogram("gradient/log10_norm", np.log10(finite), step)
        self.writer.add_figure("gradient/vs_lag", _curve_figure(lags, norms, step), step)

    def close(self) -> None:
        self.writer.close()


def _curve_figure(lags, norms, step: int):
    """||dL/dh_t|| against the lag, log scale, as a small matplotlib Figure (no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 3.2), layout="constrained")
    ax = fig.subplots()
    shown = norms > 0
    ax.semilogy(lags[shown], norms[shown], color="#1f77b4")
    ax.set_xlabel("lag k = t* - t (steps)")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title(f"gradient vs lag at step {step}", fontsize=10)
    return fig
