"""Delayed recall, seqbench's own definition (ancestors: Hochreiter & Schmidhuber 1997 exp. 2;
Pascanu et al. 2013); see docs/references.md section 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqbench.tasks.base import Batch, Task


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

    def baseline_loss(self, seq_len: int) -> float:
        return math.log(self.n_symbols)
