"""The training loop: Adam, gradient clipping, periodic evaluation, the solved criterion.

One run trains a fresh model on an endless stream of sampled batches (the "train" seed stream) and
evaluates it every ``eval_every`` steps on a fixed **validation** set (the "eval" stream). It stops
when the step budget is spent, when the validation set is solved (with ``until_solved``), or when
the loss becomes NaN or infinite: a diverged run is a result (exploding gradients), not a crash.

Three splits, as a reported number must not come from the set that decided when to stop: training
batches, the validation set (stopping; learning-rate and model selection in the leaderboard) and
the **test** set (the "test" stream), evaluated once, on the final model. The reported loss,
accuracy and ``solved`` are the test set's; ``solved_step`` is the first evaluation at which the
validation set met the criterion (the step training stopped at with ``until_solved``). With
``solved_evals`` = k > 1 the criterion must hold at k consecutive evaluations: ``solved_step`` is
the first of them and an ``until_solved`` run stops at the last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from seqbench import seeding
from seqbench.config import RunConfig
from seqbench.model import SequenceModel, build_model
from seqbench.tasks import Batch, Task, make_task
from seqbench.tasks.base import masked_call, sample_split


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
    final: EvalResult  # the test set, on the final model
    solved: bool  # the test set meets the task's criterion (and the run did not diverge)
    solved_step: int | None  # first validation evaluation that met it (when ``solved``)
    status: str  # ok | diverged | interrupted
    train_seconds: float  # time in training steps only (no evaluation)
    wall_seconds: float
    curve: list[CurvePoint] = field(default_factory=list)
    sequences_seen: int = 0
    model: SequenceModel | None = None
    val: EvalResult | None = None  # the validation set, on the final model
    val_solved: bool = False  # the validation set met the criterion at some evaluation
    still_improving: bool = False  # unsolved, and the validation loss was still falling at the end
    lengths: dict[int, EvalResult] = field(default_factory=dict)  # eval_seq_lens: lag -> test set

    @property
    def throughput(self) -> float:
        """Training sequences per second."""
        return self.sequences_seen / self.train_seconds if self.train_seconds > 0 else float("nan")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU. Around every timed call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model: SequenceModel, task: Task, batch: Batch, seq_len: int,
             chunk: int = 512) -> EvalResult:
    """Loss and accuracy on a fixed batch, in chunks of ``chunk`` sequences (each chunk weighted by
    its sequences, or with a mask by its counted positions)."""
    was_training = model.training
    model.eval()
    readout = task.readout_steps(seq_len)
    n = batch.inputs.shape[1]
    loss_sum = acc_sum = weight_sum = 0.0
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        x, y = batch.inputs[:, part], batch.targets[:, part]
        mask = None if batch.mask is None else batch.mask[:, part]
        out = model(x, readout)
        k = x.shape[1] if mask is None else int(mask.sum())
        loss_sum += masked_call(task.loss, out, y, mask).item() * k
        acc_sum += masked_call(task.accuracy, out, y, mask) * k
        weight_sum += k
    model.train(was_training)
    return EvalResult(loss_sum / weight_sum, acc_sum / weight_sum)


def make_optimizer(name: str, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """adam (PyTorch's defaults), rmsprop (smoothing constant 0.9, the value of Tieleman &
    Hinton's lecture that Arjovsky et al. 2016 trained with; PyTorch's default is 0.99) or sgd
    (plain, as in Le et al. 2015)."""
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr)


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
StopFn = Callable[[], "str | None"]
CheckpointFn = Callable[[dict], None]


class Trainer:
    """The state of one training run, advanced step by step; its ``state_dict`` is a checkpoint.

    A checkpoint holds the model, the optimizer, the training stream's generator, the step, the
    curve so far and the running sums, all as tensors and plain values (loadable with
    ``torch.load(weights_only=True)``); a run resumed from one continues bit-identically on CPU.
    """

    def __init__(self, cfg: RunConfig, device: torch.device):
        self.cfg = cfg = cfg.validate()
        self.device = device
        self.task = make_task(cfg.task, cfg.variant)
        T = cfg.seq_len
        self.readout = self.task.readout_steps(T)
        init_seed = seeding.derive_seed(cfg.seed, "init")
        self.model = build_model(self.task, cfg.cell, init_seed, T).to(device)
        self.params = list(self.model.parameters())
        self.optimizer = make_optimizer(cfg.optimizer, self.params, cfg.lr)
        self.train_gen = seeding.generator(cfg.seed, "train")
        self.eval_batch = sample_split(self.task, T, cfg.eval_size,
                                       seeding.generator(cfg.seed, "eval"), "validation").to(device)
        self._test_batch: Batch | None = None  # sampled when first needed (the end of the run)
        self.step = 0
        self.curve: list[CurvePoint] = []
        self.solved_step: int | None = None
        self.train_seconds = 0.0
        self.elapsed_before = 0.0  # wall seconds of earlier sessions of a resumed run
        self._t_start = time.perf_counter()  # reset by run(); set here so state_dict() works before
        self.loss_sum = self.grad_sum = 0.0
        self.n_since = 0
        self.flosser = None  # gradient flossing (cfg.floss; seqbench.flossing), off by default
        if cfg.floss:
            from seqbench import flossing

            self.flosser = flossing.Flosser(self.model, cfg.floss, flossing.FLOSS_BATCH,
                                            seeding.generator(cfg.seed, flossing.FRAME_STREAM))
            self.floss_gen = seeding.generator(cfg.seed, flossing.FLOSS_STREAM)
            self.floss_value = float("nan")  # the last flossing loss (mean lambda^2 per layer)

    # -- checkpoints ------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_generator": self.train_gen.get_state(),
            "step": self.step,
            "curve": [asdict(p) for p in self.curve],
            "solved_step": -1 if self.solved_step is None else self.solved_step,
            "train_seconds": self.train_seconds,
            "elapsed_s": self.elapsed(),
            "sums": [self.loss_sum, self.grad_sum, self.n_since],
            **({"floss_generator": self.floss_gen.get_state()} if self.flosser else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.train_gen.set_state(state["train_generator"])
        self.step = int(state["step"])
        self.curve = [CurvePoint(**p) for p in state["curve"]]
        self.solved_step = None if state["solved_step"] < 0 else int(state["solved_step"])
        self.train_seconds = float(state["train_seconds"])
        self.elapsed_before = float(state["elapsed_s"])
        self.loss_sum, self.grad_sum, n_since = state["sums"]
        self.n_since = int(n_since)
        if self.flosser is not None and "floss_generator" in state:
            self.floss_gen.set_state(state["floss_generator"])

    def test(self) -> EvalResult:
        """Loss and accuracy of the model as it is now on the test set (the "test" stream)."""
        if self._test_batch is None:
            cfg = self.cfg
            self._test_batch = sample_split(self.task, cfg.seq_len, cfg.test_size,
                                            seeding.generator(cfg.seed, "test"), "test"
                                            ).to(self.device)
        return evaluate(self.model, self.task, self._test_batch, self.cfg.seq_len)

    def test_at(self, seq_len: int) -> EvalResult:
        """The model as it is now on a test set of ``test_size`` sequences at another lag (length
        generalization): its own stream per lag ("test-T<lag>"); at the run's own lag, the test
        set itself."""
        if seq_len == self.cfg.seq_len:
            return self.test()
        batch = sample_split(self.task, seq_len, self.cfg.test_size,
                             seeding.generator(self.cfg.seed, f"test-T{seq_len}"), "test")
        return evaluate(self.model, self.task, batch.to(self.device), seq_len)

    # -- the loop ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._t_start

    def record(self) -> EvalResult:
        """Evaluate on the held-out set and append a curve point."""
        result = evaluate(self.model, self.task, self.eval_batch, self.cfg.seq_len)
        n = self.n_since
        self.curve.append(CurvePoint(
            step=self.step,
            train_loss=self.loss_sum / n if n else float("nan"),
            eval_loss=result.loss,
            accuracy=result.accuracy,
            grad_norm=self.grad_sum / n if n else float("nan"),
            elapsed_s=self.elapsed(),
        ))
        self.loss_sum = self.grad_sum = 0.0
        self.n_since = 0
        self._count_solved()
        return result

    def _count_solved(self) -> None:
        """Set ``solved_step`` once the validation set has met the criterion at
        ``cfg.solved_evals`` consecutive evaluations: the step of the first of them."""
        k = self.cfg.solved_evals
        last = self.curve[-k:]
        if (self.solved_step is None and len(last) == k
                and all(self.task.solved(p.eval_loss, p.accuracy) for p in last)):
            self.solved_step = last[0].step

    def train_step(self) -> float:
        """One optimizer step; returns the training loss (NaN or inf: the step was not taken)."""
        cfg = self.cfg
        batch = sample_split(self.task, cfg.seq_len, cfg.batch_size, self.train_gen,
                             "train").to(self.device)
        synchronize(self.device)
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = masked_call(self.task.loss, self.model(batch.inputs, self.readout), batch.targets,
                           batch.mask)
        if self.flosser is not None and self.step < cfg.floss_steps:
            loss_floss = self.floss_term()
            (loss + cfg.floss_weight * loss_floss if loss_floss is not None else loss).backward()
        else:
            loss.backward()
        grad_norm = clip_gradients(self.params, cfg.clip, cfg.clip_mode)
        loss_value = loss.item()
        self.step += 1
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            return float("nan")
        self.optimizer.step()
        synchronize(self.device)
        self.train_seconds += time.perf_counter() - t0
        self.loss_sum += loss_value
        self.grad_sum += grad_norm
        self.n_since += 1
        return loss_value

    def floss_term(self):
        """The flossing loss on a batch of its own stream (seqbench.flossing), or None when it is
        not finite (that step is trained on the task loss alone)."""
        from seqbench.flossing import FLOSS_BATCH

        cfg = self.cfg
        batch = sample_split(self.task, cfg.seq_len, FLOSS_BATCH, self.floss_gen, "train")
        value, _ = self.flosser.loss(batch.inputs.to(self.device))
        self.floss_value = float(value.detach())
        return value if math.isfinite(self.floss_value) else None

    def run(self, on_eval: Callable[[CurvePoint], None] | None = None,
            on_step: ProgressFn | None = None, probe: ProbeFn | None = None,
            stop: StopFn | None = None, checkpoint: CheckpointFn | None = None,
            checkpoint_every: int = 0) -> TrainResult:
        """Train until the budget is spent, the task is solved (``until_solved``), the loss
        diverges, or ``stop()`` returns a reason (status ``interrupted``, checked between steps).

        on_eval(point) after every evaluation; on_step(step, train_loss) after every step;
        probe(step, model) at step 0, every ``cfg.probe_every`` steps and after the last step
        (when ``cfg.probe_every`` > 0); the probe must leave the model as it found it and draws
        on none of the run's random streams, so the run is the same with and without it.
        checkpoint(state) every ``checkpoint_every`` steps (after that step's evaluation) and
        when interrupted.
        """
        cfg = self.cfg
        probe = probe if cfg.probe_every > 0 else None
        self._t_start = time.perf_counter()
        status = "ok"
        if not self.curve:  # a fresh run (a resumed one has its curve already)
            self.record()
            self._emit(on_eval)
        last = self._last_eval()
        while self.step < cfg.steps and not (self.solved_step is not None and cfg.until_solved):
            if stop is not None and stop():
                status = "interrupted"
                break
            if probe and self.step % cfg.probe_every == 0:
                probe(self.step, self.model)
            loss_value = self.train_step()
            if math.isnan(loss_value):
                status = "diverged"
                break
            if on_step:
                on_step(self.step, loss_value)
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                last = self.record()
                self._emit(on_eval)
            if checkpoint and checkpoint_every and self.step % checkpoint_every == 0:
                checkpoint(self.state_dict())

        nan = EvalResult(float("nan"), float("nan"))
        if status == "diverged":
            last = test = nan
        elif status == "interrupted":
            if checkpoint:
                checkpoint(self.state_dict())
            if self.n_since:  # report the metrics so far (not part of the checkpoint)
                last = evaluate(self.model, self.task, self.eval_batch, cfg.seq_len)
            test = self.test()
        else:
            if self.n_since:  # steps since the last evaluation (stopped between two)
                last = self.record()
                self._emit(on_eval)
            if probe:  # the final step is never probed inside the loop
                probe(self.step, self.model)
            test = self.test()
            if not (math.isfinite(test.loss) and math.isfinite(last.loss)):
                # finite training losses, yet the final model's test or validation loss is inf or
                # NaN (weights blown up on the last step): that is a diverged run, never "ok"
                status = "diverged"
                last = test = nan
        # a diverged model has nothing to test; an interrupted one is tested when it finishes
        lengths = ({length: self.test_at(length) for length in cfg.eval_seq_lens}
                   if status == "ok" else {})
        val_solved = self.solved_step is not None and status != "diverged"
        solved = val_solved and self.task.solved(test.loss, test.accuracy)
        return TrainResult(
            steps_taken=self.step,
            final=test,
            val=last,
            val_solved=val_solved,
            # a budget limit: the whole budget spent (not a run stopped early on a validation
            # result that its test set then missed) with the validation loss still falling
            still_improving=(status == "ok" and not solved and self.step >= cfg.steps
                             and still_improving(self.curve)),
            solved=solved,
            solved_step=self.solved_step if solved else None,
            status=status,
            train_seconds=self.train_seconds,
            wall_seconds=self.elapsed(),
            curve=list(self.curve),
            sequences_seen=self.step * cfg.batch_size,
            model=self.model,
            lengths=lengths,
        )

    def _emit(self, on_eval) -> None:
        if on_eval:
            on_eval(self.curve[-1])

    def _last_eval(self) -> EvalResult:
        point = self.curve[-1]
        return EvalResult(point.eval_loss, point.accuracy)


#: ``still_improving``: the validation loss of the last evaluations is at least this fraction below
#: that of the evaluations just before them
IMPROVING_DROP = 0.05


def still_improving(curve: list[CurvePoint]) -> bool:
    """Was the validation loss still falling when the run ended?

    Compares the mean validation loss of the last tenth of the evaluations (at least 3) with the
    mean of the tenth before it: a drop of ``IMPROVING_DROP`` (5%) or more says the run was cut
    off by its budget, not stuck, so "not solved" is a budget limit, not a capability limit. A
    curve too short for two windows (under 6 evaluations after step 0) says False.
    """
    losses = [p.eval_loss for p in curve[1:] if math.isfinite(p.eval_loss)]
    w = max(3, len(losses) // 10)
    if len(losses) < 2 * w:
        return False
    before, last = losses[-2 * w : -w], losses[-w:]
    return sum(last) / w <= (1 - IMPROVING_DROP) * sum(before) / w


def train(cfg: RunConfig, device: torch.device, on_eval: Callable[[CurvePoint], None] | None = None,
          on_step: ProgressFn | None = None, probe: ProbeFn | None = None) -> TrainResult:
    """Train one fresh model as ``cfg`` says, on ``device`` (see ``Trainer.run``)."""
    return Trainer(cfg, device).run(on_eval=on_eval, on_step=on_step, probe=probe)
