"""The task interface: ``Task`` (layout, sampling, loss, accuracy, baseline, solved criterion,
variants) and ``Batch``, what every task of seqbench.tasks implements.

Each task is sampled at any lag T (the length is an argument of ``sample``, not of the task), from a
``torch.Generator`` so that data is reproducible from a seed. Tensors are time-major, as PyTorch's
recurrent modules expect by default:

    inputs   (S, B, input_size)  float32, S = task.total_steps(T)
    targets  (R, B)              float32 (regression) or int64 (class index), R = len(readout steps)
    mask     (R, B)              bool, or None: which readout positions count

The model reads out only at ``task.readout_steps(T)``; the loss and accuracy are computed there.
A task whose answers sit at different steps in different sequences (variable_copy, mqar) reads
out over every step where one may sit and marks the ones that count in ``Batch.mask``; a
masked-out position contributes nothing, and means are over the counted positions. ``mask=None``
(every other task) means every readout position counts, computed exactly as before masks existed.
``task.query_step(T)`` is the single step whose loss the gradient probe differentiates, and
``task.baseline_loss(T)`` is the analytic loss of the best memoryless predictor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from seqbench.errors import ConfigError


@dataclass
class Batch:
    """One sampled batch: inputs over all steps, targets at the readout steps, and which readout
    positions count (None: all of them)."""

    inputs: torch.Tensor  # (S, B, input_size)
    targets: torch.Tensor  # (R, B)
    mask: torch.Tensor | None = None  # (R, B) bool

    def to(self, device: torch.device | str) -> Batch:
        mask = None if self.mask is None else self.mask.to(device)
        return Batch(self.inputs.to(device), self.targets.to(device), mask)


def masked_call(fn, outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None):
    """``fn(outputs, targets)`` when every position counts, else ``fn(outputs, targets, mask)``:
    how callers pass a batch's mask to ``task.loss`` and ``task.accuracy``, so that a task (or a
    plugin) that never masks keeps its two-argument methods."""
    return fn(outputs, targets) if mask is None else fn(outputs, targets, mask)


#: the data splits a run draws from: training batches, the validation set, the test set
SPLITS = ("train", "validation", "test")


def sample_split(task, seq_len: int, batch_size: int, generator: torch.Generator,
                 split: str) -> Batch:
    """A batch of ``split``. A synthetic task draws every split from one distribution (the
    splits' separate seed streams keep them apart); a task backed by a dataset (``held_out`` set)
    draws each split from its own examples, so ``sample`` is given the split."""
    if getattr(task, "held_out", False):
        return task.sample(seq_len, batch_size, generator, split=split)
    return task.sample(seq_len, batch_size, generator)


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
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor,
             mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean loss over the readout steps and the batch. ``outputs``: (R, B, output_size).
        With a ``mask`` (R, B), the mean over the counted positions only."""
        if self.kind == "regression":
            if mask is None:
                return F.mse_loss(outputs.squeeze(-1), targets)
            return F.mse_loss(outputs.squeeze(-1)[mask], targets[mask])
        if mask is None:
            return F.cross_entropy(outputs.reshape(-1, self.output_size), targets.reshape(-1))
        return F.cross_entropy(outputs[mask], targets[mask])

    def query_loss(self, outputs: torch.Tensor, targets: torch.Tensor, seq_len: int,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
        """Loss at the query step only (what the gradient probe differentiates)."""
        r = self.query_step(seq_len) - self.readout_steps(seq_len).start
        at = slice(r, r + 1)
        return self.loss(outputs[at], targets[at], None if mask is None else mask[at])

    def accuracy(self, outputs: torch.Tensor, targets: torch.Tensor,
                 mask: torch.Tensor | None = None) -> float:
        """Accuracy on the positions that matter: for a classification task, the fraction of the
        readout positions (those counted, with a ``mask``) whose argmax output is the target;
        a regression task, or one that reads only some readout positions, defines its own."""
        if self.kind != "classification":
            raise NotImplementedError
        return self.argmax_accuracy(outputs, targets, mask)

    @staticmethod
    def argmax_accuracy(outputs: torch.Tensor, targets: torch.Tensor,
                        mask: torch.Tensor | None = None) -> float:
        """Fraction of the (counted) positions whose argmax output is the target."""
        hit = outputs.argmax(-1) == targets
        return (hit if mask is None else hit[mask]).float().mean().item()

    def baseline_loss(self, seq_len: int) -> float:
        """Analytic loss of the best predictor that has no memory of the input."""
        raise NotImplementedError

    def solved(self, loss: float, accuracy: float) -> bool:
        """Copy and delayed recall: recall accuracy of at least 0.99 on held-out data."""
        return accuracy >= 0.99

    def describe(self, seq_len: int) -> str:
        return f"{self.name}/{self.variant} T={seq_len}"


class LastStepTask(Task):
    """A task of T steps whose answer is read at its last step alone (the adding problem,
    temporal order): the readout and the probe's query step are both step T - 1."""

    def total_steps(self, seq_len: int) -> int:
        return seq_len

    def readout_steps(self, seq_len: int) -> slice:
        return slice(seq_len - 1, seq_len)

    def query_step(self, seq_len: int) -> int:
        return seq_len - 1
