"""The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015; Arjovsky, Shah &
Bengio 2016; Bai, Kolter & Koltun 2018 for the ``anywhere`` variant); see docs/references.md
section 1.
"""

from __future__ import annotations

import torch

from seqbench.tasks.base import Batch, LastStepTask


class AddingTask(LastStepTask):
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
