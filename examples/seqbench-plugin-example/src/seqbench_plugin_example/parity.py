"""A task from outside seqbench: the parity of a bit string (a classic long-dependency task:
every bit matters until the end, so a memoryless predictor is at chance)."""

from __future__ import annotations

import math

import torch

from seqbench.tasks.base import Batch, LastStepTask


class ParityTask(LastStepTask):
    """T random bits, one per step; at the last step, classify whether their sum is odd.

        step     0    1    2   ...  T-1
        input    b0   b1   b2  ...  b(T-1)     one channel, 0 or 1
        target                      (b0 + ... + b(T-1)) mod 2

    Loss: cross-entropy over 2 classes. Baseline: ln 2 (the parity is independent of any single
    step's input). Solved: accuracy >= 0.99. Lags 1 .. T - 1.
    """

    name = "parity"
    variants = ("bits",)
    input_size = 1
    output_size = 2

    def lag_range(self, seq_len: int) -> tuple[int, int]:
        return min(1, seq_len - 1), seq_len - 1

    def sample(self, seq_len: int, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_seq_len(seq_len)
        bits = torch.randint(0, 2, (seq_len, batch_size), generator=generator)
        return Batch(bits.float().unsqueeze(-1), (bits.sum(0) % 2).unsqueeze(0))

    def baseline_loss(self, seq_len: int) -> float:
        return math.log(2)
