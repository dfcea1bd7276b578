"""The copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky, Shah & Bengio 2016; Bai, Kolter &
Koltun 2018 for the ``tcn`` variant); see docs/references.md section 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqbench.tasks.base import Batch, Task


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
