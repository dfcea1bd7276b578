"""The variable-lag copy task (Henaff, Szlam & LeCun 2016, "Recurrent Orthogonal Networks and
Long-Memory Tasks"; Tallec & Ollivier 2018, "Can Recurrent Neural Networks Warp Time?", the
"variable copy" task); see docs/references.md section 1.5.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqbench.tasks.base import Batch, Task


class VariableCopyTask(Task):
    """Variable copy: the copy task whose delay d is drawn per sequence, uniformly in 1 .. T.

    The copy task's alphabet (seqbench.tasks.copy; Arjovsky et al. 2016), one-hot: 0 = blank,
    1..8 = data symbols, 9 = delimiter. A sequence is 10 data symbols (uniform, with replacement),
    d-1 blanks, the delimiter, then 10 steps at which the model outputs the 10 symbols in order:
    d + 20 steps, with d drawn uniformly from 1 .. T for each sequence. At d = T it is exactly the
    copy task's sequence at lag T. As the delay differs between sequences, a cell cannot solve the
    task with a clock tuned to one lag (Henaff et al.'s explanation of the orthogonal RNN's copy
    solution); it must hold the symbols until the delimiter comes.

    The sequences of a batch differ in length; both variants pad them with blanks to T + 20 steps:

    ``end_aligned`` (default): padded in front, so that every sequence ends at step T + 19 and the
    outputs sit at the same steps T+10 .. T+19 in every sequence (the data start at step T - d):

        step     0 .. T-d-1    T-d .. T-d+9    T-d+10 .. T+8    T+9      T+10 .. T+19
        input    blank ...     d1 .. d10       blank ...        delim    blank ...
        target                                                           d1 .. d10

    ``start_aligned``: padded at the end, so that every sequence starts with its data at step 0,
    as the papers' sequences do; the outputs then sit at steps d+10 .. d+19, which differ between
    sequences: the readout covers every step an output may fall on, 11 .. T+19, and the batch's
    mask marks the 10 that count in each sequence (seqbench.tasks.base):

        step     0 .. 9       10 .. d+8    d+9      d+10 .. d+19    d+20 .. T+19
        input    d1 .. d10    blank ...    delim    blank ...       blank ...
        target                                      d1 .. d10
        mask                  0 ...        0        1 ...           0 ...

    (the mask row from step 11 on, where the readout starts). Worked example, start_aligned,
    T = 4, d = 2 (b = blank, D = delimiter; steps 0 .. 10 are not read out):

        step     0 .. 9     10   11   12 .. 21   22   23
        input    3 .. 7     b    D    b  ..  b   b    b
        target                        3  ..  7
        mask                     0    1  ..  1   0    0

    Loss: cross-entropy over the 8 data symbols at the 10 output steps of each sequence (the copy
    task's average over every step, blanks included, would count the padding). Accuracy: per
    symbol, over the same steps; solved: accuracy >= 0.99. Baseline: ln 8 (every output is a
    uniform symbol, independent of all a memoryless predictor sees: the step, the current input).
    Lag: symbol i at step s + i is output at s + d + 10 + i (s = T - d or 0), a lag of d + 10:
    11 .. T + 10. Query step: T + 10, where the sequences of the longest delay, d = T, output
    their first symbol (the copy task's query step at the same T). In ``end_aligned`` every
    sequence outputs its first symbol there (lag d + 10), so the probe sees the whole batch; in
    ``start_aligned`` no step is an output step of every sequence, and T + 10 counts only the
    sequences with d >= T - 9 (a fraction min(10, T) / T): the probe measures those only.

    The papers' settings (docs/references.md section 1.5). Tallec & Ollivier (2018, section 3,
    "Copy tasks") use the copy task's alphabet (8 data symbols, a dummy, a signal character) and
    10 symbols, the outputs on the 10 steps right after the signal, and for the variable copy
    "the number of characters between the end of the sequence to copy and the signal character
    is drawn at random between 1 and T", citing Henaff et al. (2016) for the setup. So their
    blanks run 1 .. T where ours run 0 .. T-1 (d - 1): their lags are ours plus one step,
    12 .. T + 11. They do not say how the draw is distributed (uniform is our reading), how
    sequences of different lengths were batched, or over which steps the loss is averaged. Both
    variants here are our layouts of the same sequences; neither is claimed to be the papers'.
    """

    name = "variable_copy"
    variants = ("end_aligned", "start_aligned")
    input_size = 10
    output_size = 8  # the data symbols 1..8, as classes 0..7
    n_symbols = 8
    n_copy = 10
    BLANK, DELIM = 0, 9

    def total_steps(self, seq_len: int) -> int:
        return seq_len + 2 * self.n_copy

    def readout_steps(self, seq_len: int) -> slice:
        first = seq_len + self.n_copy if self.variant == "end_aligned" else self.n_copy + 1
        return slice(first, self.total_steps(seq_len))

    def query_step(self, seq_len: int) -> int:
        return seq_len + self.n_copy

    def lag_range(self, seq_len: int) -> tuple[int, int]:
        return self.n_copy + 1, seq_len + self.n_copy

    def sample(self, seq_len: int, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_seq_len(seq_len)
        T, B, n = seq_len, batch_size, self.n_copy
        S = self.total_steps(T)
        data = torch.randint(1, self.n_symbols + 1, (n, B), generator=generator)
        delay = torch.randint(1, T + 1, (B,), generator=generator)
        start = T - delay if self.variant == "end_aligned" else torch.zeros_like(delay)
        cols = torch.arange(B)
        symbols = torch.full((S, B), self.BLANK, dtype=torch.long)
        symbols[start + torch.arange(n).unsqueeze(1), cols] = data  # (n, B) positions
        symbols[start + n - 1 + delay, cols] = self.DELIM
        inputs = F.one_hot(symbols, self.input_size).float()
        if self.variant == "end_aligned":  # the outputs fill the readout: nothing to mask
            return Batch(inputs, data - 1)
        readout = self.readout_steps(T)
        first_output = n + delay - readout.start  # (B,) row of d1 in the readout
        rows = first_output + torch.arange(n).unsqueeze(1)  # (n, B)
        targets = torch.zeros(readout.stop - readout.start, B, dtype=torch.long)
        targets[rows, cols] = data - 1
        mask = torch.zeros(targets.shape, dtype=torch.bool)
        mask[rows, cols] = True
        return Batch(inputs, targets, mask)

    def baseline_loss(self, seq_len: int) -> float:
        return math.log(self.n_symbols)
