"""Synthetic long-dependency tasks: adding problem, copy memory, delayed recall.

Each task is sampled at any lag T (the length is an argument of ``sample``, not of the task), from a
``torch.Generator`` so that data is reproducible from a seed. Tensors are time-major, as PyTorch's
recurrent modules expect by default:

    inputs   (S, B, input_size)  float32, S = task.total_steps(T)
    targets  (R, B)              float32 (regression) or int64 (class index), R = len(readout steps)

The model reads out only at ``task.readout_steps(T)``; the loss and accuracy are computed there.
``task.query_step(T)`` is the single step whose loss the gradient probe differentiates, and
``task.baseline_loss(T)`` is the analytic loss of the best memoryless predictor.

Conventions follow the papers that defined the tasks (see docs/references.md section 1):
Hochreiter & Schmidhuber 1997, Le, Jaitly & Hinton 2015, Arjovsky, Shah & Bengio 2016, and
Bai, Kolter & Koltun 2018 (TCN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seqbench.errors import ConfigError


@dataclass
class Batch:
    """One sampled batch: inputs over all steps, targets at the readout steps."""

    inputs: torch.Tensor  # (S, B, input_size)
    targets: torch.Tensor  # (R, B)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.inputs.to(device), self.targets.to(device))


class Task:
    """Base class: a sequence task with a loss, an accuracy, a baseline and variants."""

    name: str = ""
    variants: tuple[str, ...] = ()
    input_size: int = 0
    output_size: int = 0
    #: "regression" (MSE on a scalar) or "classification" (cross-entropy over output_size classes)
    kind: str = "classification"

    def __init__(self, variant: str | None = None):
        variant = variant or self.variants[0]
        if variant not in self.variants:
            raise ConfigError(
                f"unknown variant {variant!r} for task {self.name}; "
                f"allowed: {', '.join(self.variants)}"
            )
        self.variant = variant

    # -- layout -------------------------------------------------------------------------------
    def total_steps(self, seq_len: int) -> int:
        """Number of input steps of a sequence with lag ``seq_len``."""
        raise NotImplementedError

    def readout_steps(self, seq_len: int) -> slice:
        """Steps at which the model's output is read (and the loss taken)."""
        raise NotImplementedError

    def query_step(self, seq_len: int) -> int:
        """The step t* whose loss alone the gradient probe differentiates."""
        raise NotImplementedError

    def lag_range(self, seq_len: int) -> tuple[int, int]:
        """The shortest and longest lag, in steps, between the input that must be remembered
        longest and the step where it is read: what ``--seq-len`` means for this task."""
        raise NotImplementedError

    def min_seq_len(self) -> int:
        return 1

    def check_seq_len(self, seq_len: int) -> None:
        if not isinstance(seq_len, int) or seq_len < self.min_seq_len():
            raise ConfigError(
                f"seq_len must be an integer >= {self.min_seq_len()} for task {self.name}, "
                f"got {seq_len!r}"
            )

    # -- data ----------------------------------------------------------------------------------
    def sample(self, seq_len: int, batch_size: int, generator: torch.Generator) -> Batch:
        raise NotImplementedError

    # -- metrics -------------------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss over the readout steps and the batch. ``outputs``: (R, B, output_size)."""
        if self.kind == "regression":
            return F.mse_loss(outputs.squeeze(-1), targets)
        return F.cross_entropy(outputs.reshape(-1, self.output_size), targets.reshape(-1))

    def query_loss(self, outputs: torch.Tensor, targets: torch.Tensor, seq_len: int) -> torch.Tensor:
        """Loss at the query step only (what the gradient probe differentiates)."""
        r = self.query_step(seq_len) - self.readout_steps(seq_len).start
        return self.loss(outputs[r : r + 1], targets[r : r + 1])

    def accuracy(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """Accuracy on the positions that matter (see each task)."""
        raise NotImplementedError

    def baseline_loss(self, seq_len: int) -> float:
        """Analytic loss of the best predictor that has no memory of the input."""
        raise NotImplementedError

    def solved(self, loss: float, accuracy: float) -> bool:
        """Copy and delayed recall: recall accuracy of at least 0.99 on held-out data."""
        return accuracy >= 0.99

    def describe(self, seq_len: int) -> str:
        return f"{self.name}/{self.variant} T={seq_len}"


class AddingTask(Task):
    """Adding problem: output the sum of the two marked values, read at the last step.

    Input: T steps, 2 channels. Channel 0 holds values uniform in [0, 1); channel 1 is a marker with
    exactly two ones. Target: the sum of the two marked values, at step T-1. Loss: MSE.

        step     0    1    2   ...  T/2  ...  T-2  T-1
        value  .37  .91  .12  ...  .55  ...  .08  .64
        marker   0    1    0  ...    0  ...    1    0
        target                                       1.0  (= .91 + .08)

    Variants (marker placement):
      ``halves``   (Le et al. 2015; Arjovsky et al. 2016, the default): one marker uniform in the
                   first half [0, T//2), the other uniform in the second half [T//2, T).
      ``anywhere`` (Bai et al. 2018, TCN): two distinct positions uniform over [0, T).

    Baseline: always predicting E[x1 + x2] = 1 gives MSE Var(x1 + x2) = 2/12 = 1/6 exactly (the
    0.1767 quoted by Le 2015 and the TCN README is a slip). Accuracy: fraction of sequences with
    absolute error below 0.04 (Hochreiter & Schmidhuber 1997's criterion). Solved: MSE below 0.01.
    """

    name = "adding"
    variants = ("halves", "anywhere")
    input_size = 2
    output_size = 1
    kind = "regression"

    def min_seq_len(self) -> int:
        return 2

    def lag_range(self, seq_len: int) -> tuple[int, int]:
        # the first marker, read at T-1: in [0, T//2) for halves, in [0, T-2] for anywhere
        if self.variant == "halves":
            return seq_len - seq_len // 2, seq_len - 1
        return 1, seq_len - 1

    def total_steps(self, seq_len: int) -> int:
        return seq_len

    def readout_steps(self, seq_len: int) -> slice:
        return slice(seq_len - 1, seq_len)

    def query_step(self, seq_len: int) -> int:
        return seq_len - 1

    def sample(self, seq_len: int, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_seq_len(seq_len)
        T, B = seq_len, batch_size
        values = torch.rand(T, B, generator=generator)
        if self.variant == "halves":
            half = T // 2
            first = torch.randint(0, half, (B,), generator=generator)
            second = torch.randint(half, T, (B,), generator=generator)
        else:  # anywhere: two distinct positions, uniform over all ordered pairs
            first = torch.randint(0, T, (B,), generator=generator)
            offset = torch.randint(1, T, (B,), generator=generator)
            second = (first + offset) % T
        cols = torch.arange(B)
        marker = torch.zeros(T, B)
        marker[first, cols] = 1.0
        marker[second, cols] = 1.0
        target = values[first, cols] + values[second, cols]
        return Batch(torch.stack([values, marker], dim=-1), target.unsqueeze(0))

    def accuracy(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        err = (outputs.squeeze(-1) - targets).abs()
        return (err < 0.04).float().mean().item()

    def baseline_loss(self, seq_len: int) -> float:
        return 1.0 / 6.0

    def solved(self, loss: float, accuracy: float) -> bool:
        return loss < 0.01


class CopyTask(Task):
    """Copy memory: reproduce 10 symbols after a lag of T blanks.

    Alphabet (Arjovsky et al. 2016): 0 = blank, 1..8 = data symbols, 9 = delimiter. The input is
    10 data symbols drawn uniformly with replacement, T-1 blanks, the delimiter, then 10 blanks:
    T + 20 steps in all. The target is blank for the first T + 10 steps, then the 10 data symbols.

        step    0 .. 9      10 .. T+8    T+9     T+10 .. T+19
        input   d1 .. d10   blank ...    delim   blank ...
        target  blank ...   blank ...    blank   d1 .. d10

    Loss: cross-entropy over 9 classes (blank + 8 symbols) averaged over all T + 20 steps, the
    convention of the published numbers. Baseline (blank until the delimiter, then uniform over
    the 8 symbols): 10 ln 8 / (T + 20). Accuracy: over the 10 recall positions only (all-position
    accuracy is high for a model that learned nothing). Query step: the first recall step, T + 10.

    Variant ``tcn`` (Bai et al. 2018's scripts): the symbol index is fed as one scalar channel
    instead of one-hot, and the delimiter is repeated over the last 11 steps instead of blanks.
    """

    name = "copy"
    variants = ("arjovsky", "tcn")
    output_size = 9
    n_symbols = 8
    n_copy = 10
    BLANK, DELIM = 0, 9

    @property
    def input_size(self) -> int:  # type: ignore[override]
        return 1 if self.variant == "tcn" else 10

    def total_steps(self, seq_len: int) -> int:
        return seq_len + 2 * self.n_copy

    def lag_range(self, seq_len: int) -> tuple[int, int]:
        return seq_len + self.n_copy, seq_len + self.n_copy  # symbol i at step i, recalled at T+10+i

    def readout_steps(self, seq_len: int) -> slice:
        return slice(0, self.total_steps(seq_len))

    def query_step(self, seq_len: int) -> int:
        return seq_len + self.n_copy

    def sample(self, seq_len: int, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_seq_len(seq_len)
        T, B, n = seq_len, batch_size, self.n_copy
        S = self.total_steps(T)
        data = torch.randint(1, self.n_symbols + 1, (n, B), generator=generator)
        symbols = torch.full((S, B), self.BLANK, dtype=torch.long)
        symbols[:n] = data
        if self.variant == "tcn":
            symbols[T + n - 1 :] = self.DELIM  # last 11 steps
            inputs = symbols.unsqueeze(-1).float()
        else:
            symbols[T + n - 1] = self.DELIM
            inputs = F.one_hot(symbols, 10).float()
        targets = torch.full((S, B), self.BLANK, dtype=torch.long)
        targets[T + n :] = data
        return Batch(inputs, targets)

    def accuracy(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        recall = slice(-self.n_copy, None)
        pred = outputs[recall].argmax(-1)
        return (pred == targets[recall]).float().mean().item()

    def baseline_loss(self, seq_len: int) -> float:
        return self.n_copy * math.log(self.n_symbols) / (seq_len + 2 * self.n_copy)


class DelayedRecallTask(Task):
    """Delayed recall: report the symbol shown at step 0 when cued at step T.

    Our definition (closest ancestors: Hochreiter & Schmidhuber 1997 exp. 2; Pascanu et al. 2013).
    One-hot inputs over 10 symbols: 0..7 data, 8 = blank, 9 = cue. Step 0 shows a data symbol,
    steps 1..T-1 show distractors, step T shows the cue; T + 1 steps in all. The target is the
    step-0 symbol, read at the cue step: the lag is exactly T.

        step     0    1    2   ...  T-1   T
        input    d    x    x   ...   x   cue      x: a random data symbol (noisy) or blank
        target                            d

    Variants: ``noisy`` (default; distractors are random data symbols) and ``blank``.
    Loss: cross-entropy over 8 classes. Baseline: ln 8 (accuracy 1/8).
    """

    name = "delayed_recall"
    variants = ("noisy", "blank")
    input_size = 10
    output_size = 8
    n_symbols = 8
    BLANK, CUE = 8, 9

    def total_steps(self, seq_len: int) -> int:
        return seq_len + 1

    def lag_range(self, seq_len: int) -> tuple[int, int]:
        return seq_len, seq_len

    def readout_steps(self, seq_len: int) -> slice:
        return slice(seq_len, seq_len + 1)

    def query_step(self, seq_len: int) -> int:
        return seq_len

    def sample(self, seq_len: int, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_seq_len(seq_len)
        T, B = seq_len, batch_size
        if self.variant == "noisy":
            symbols = torch.randint(0, self.n_symbols, (T + 1, B), generator=generator)
        else:
            symbols = torch.full((T + 1, B), self.BLANK, dtype=torch.long)
            symbols[0] = torch.randint(0, self.n_symbols, (B,), generator=generator)
        symbols[T] = self.CUE
        return Batch(F.one_hot(symbols, 10).float(), symbols[0].unsqueeze(0).clone())

    def accuracy(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return (outputs.argmax(-1) == targets).float().mean().item()

    def baseline_loss(self, seq_len: int) -> float:
        return math.log(self.n_symbols)


TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (AddingTask, CopyTask, DelayedRecallTask)
}


def make_task(name: str, variant: str | None = None) -> Task:
    """Build a task by name; unknown names raise a ConfigError listing the valid ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name](variant)
