"""The training loop: Adam, gradient clipping, periodic evaluation, the solved criterion.

One run trains a fresh model on an endless stream of sampled batches (the "train" seed stream) and
evaluates it every ``eval_every`` steps on a fixed held-out set (the "eval" stream). It stops when
the step budget is spent, when the task is solved (with ``until_solved``), or when the loss becomes
NaN or infinite: a diverged run is a result (exploding gradients), not a crash.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from seqbench import seeding
from seqbench.config import RunConfig
from seqbench.model import SequenceModel, build_model
from seqbench.tasks import Batch, Task, make_task


@dataclass
class EvalResult:
    loss: float
    accuracy: float


@dataclass
class CurvePoint:
    """One row of a run's learning curve (means over the steps since the previous point)."""

    step: int
    train_loss: float
    eval_loss: float
    accuracy: float
    grad_norm: float
    elapsed_s: float


@dataclass
class TrainResult:
    steps_taken: int
    final: EvalResult
    solved: bool
    solved_step: int | None
    status: str  # ok | diverged
    train_seconds: float  # time in training steps only (no evaluation)
    wall_seconds: float
    curve: list[CurvePoint] = field(default_factory=list)
    sequences_seen: int = 0
    model: SequenceModel | None = None

    @property
    def throughput(self) -> float:
        """Training sequences per second."""
        return self.sequences_seen / self.train_seconds if self.train_seconds > 0 else float("nan")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model: SequenceModel, task: Task, batch: Batch, seq_len: int,
             chunk: int = 512) -> EvalResult:
    """Loss and accuracy on a fixed batch, in chunks of ``chunk`` sequences."""
    was_training = model.training
    model.eval()
    readout = task.readout_steps(seq_len)
    n = batch.inputs.shape[1]
    loss_sum = acc_sum = 0.0
    for start in range(0, n, chunk):
        x = batch.inputs[:, start : start + chunk]
        y = batch.targets[:, start : start + chunk]
        out = model(x, readout)
        k = x.shape[1]
        loss_sum += task.loss(out, y).item() * k
        acc_sum += task.accuracy(out, y) * k
    model.train(was_training)
    return EvalResult(loss_sum / n, acc_sum / n)


def clip_gradients(params: list[nn.Parameter], clip: float, mode: str = "norm") -> float:
    """Clip the gradients (0 = off) and return their global norm before clipping.

    ``norm`` rescales all gradients together when their global norm exceeds ``clip`` (Pascanu et
    al. 2013); ``value`` clamps every entry to [-clip, clip] (as Arjovsky et al. 2016 did).
    """
    if clip > 0 and mode == "norm":
        return float(nn.utils.clip_grad_norm_(params, clip))
    norm = float(nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
    if clip > 0:
        nn.utils.clip_grad_value_(params, clip)
    return norm


ProgressFn = Callable[[int, float], None]
ProbeFn = Callable[[int, SequenceModel], None]


def train(
    cfg: RunConfig,
    device: torch.device,
    on_eval: Callable[[CurvePoint], None] | None = None,
    on_step: ProgressFn | None = None,
    probe: ProbeFn | None = None,
) -> TrainResult:
    """Train one model as ``cfg`` says, on ``device``.

    on_eval(point) is called after every evaluation; on_step(step, train_loss) after every
    step; probe(step, model) at step 0, every ``cfg.probe_every`` steps and after the last step
    (when ``cfg.probe_every`` > 0). The probe must leave the model as it found it; it draws on
    none of the run's random streams, so the run is the same with and without it.
    """
    probe = probe if cfg.probe_every > 0 else None
    cfg = cfg.validate()
    task = make_task(cfg.task, cfg.variant)
    T = cfg.seq_len
    readout = task.readout_steps(T)

    model = build_model(task, cfg.cell, seeding.derive_seed(cfg.seed, "init"), T).to(device)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    train_gen = seeding.generator(cfg.seed, "train")
    eval_batch = task.sample(T, cfg.eval_size, seeding.generator(cfg.seed, "eval")).to(device)

    curve: list[CurvePoint] = []
    t_start = time.perf_counter()
    train_seconds = 0.0
    loss_sum = grad_sum = 0.0
    n_since = 0
    solved_step: int | None = None
    status = "ok"
    step = 0

    def record(step: int) -> EvalResult:
        result = evaluate(model, task, eval_batch, T)
        point = CurvePoint(
            step=step,
            train_loss=loss_sum / n_since if n_since else float("nan"),
            eval_loss=result.loss,
            accuracy=result.accuracy,
            grad_norm=grad_sum / n_since if n_since else float("nan"),
            elapsed_s=time.perf_counter() - t_start,
        )
        curve.append(point)
        if on_eval:
            on_eval(point)
        return result

    last = record(0)
    if task.solved(last.loss, last.accuracy):
        solved_step = 0
    while step < cfg.steps and not (solved_step is not None and cfg.until_solved):
        if probe and step % cfg.probe_every == 0:
            probe(step, model)
        batch = task.sample(T, cfg.batch_size, train_gen).to(device)
        _synchronize(device)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss(model(batch.inputs, readout), batch.targets)
        loss.backward()
        grad_norm = clip_gradients(params, cfg.clip, cfg.clip_mode)
        loss_value = loss.item()
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            status = "diverged"
            step += 1
            break
        optimizer.step()
        _synchronize(device)
        train_seconds += time.perf_counter() - t0
        step += 1
        loss_sum += loss_value
        grad_sum += grad_norm
        n_since += 1
        if on_step:
            on_step(step, loss_value)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            last = record(step)
            loss_sum = grad_sum = 0.0
            n_since = 0
            if solved_step is None and task.solved(last.loss, last.accuracy):
                solved_step = step

    if status == "diverged":
        last = EvalResult(float("nan"), float("nan"))
    elif n_since:  # steps since the last evaluation (stopped between two)
        last = record(step)
    if probe and status == "ok":  # the final step is never probed inside the loop
        probe(step, model)
    return TrainResult(
        steps_taken=step,
        final=last,
        solved=solved_step is not None and status == "ok",
        solved_step=solved_step if status == "ok" else None,
        status=status,
        train_seconds=train_seconds,
        wall_seconds=time.perf_counter() - t_start,
        curve=curve,
        sequences_seen=step * cfg.batch_size,
        model=model,
    )
