"""The temporal order task (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", Neural
Computation 9(8), section 5.6, experiment 6: task 6a with two marked symbols, task 6b with three);
see docs/references.md section 1.4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqbench.tasks.base import Batch, LastStepTask

#: the paper's windows for the marked positions (section 5.6; the length is drawn in [100, 110]),
#: used as percent of T: 6a t1 in [10, 20], t2 in [50, 60]; 6b t1 in [10, 20], t2 in [33, 43],
#: t3 in [66, 76]
WINDOWS = {
    "6a": ((10, 20), (50, 60)),
    "6b": ((10, 20), (33, 43), (66, 76)),
}


def windows(variant: str, seq_len: int) -> list[tuple[int, int]]:
    """Inclusive (first, last) step of each marked symbol's window at length ``seq_len``.

    The paper's windows scaled with T: [floor(lo% * T), floor(hi% * T)], exact at T = 100. At small
    T they are pushed right so that they stay ordered and disjoint and never cover the start step:
    each window starts at least one step after the previous one ends (and at step 1 or later).
    """
    out: list[tuple[int, int]] = []
    prev_last = 0  # step 0 holds the start symbol
    for lo_pct, hi_pct in WINDOWS[variant]:
        first = max(lo_pct * seq_len // 100, prev_last + 1)
        last = max(hi_pct * seq_len // 100, first)
        out.append((first, last))
        prev_last = last
    return out


class TemporalOrderTask(LastStepTask):
    """Temporal order: classify the order of the marked symbols X/Y, read at the last step.

    Hochreiter & Schmidhuber (1997), section 5.6, experiment 6. One-hot inputs over the paper's 8
    symbols: 0..3 = distractors a, b, c, d; 4 = X; 5 = Y; 6 = E (start); 7 = B (end, the
    "trigger symbol"): the paper's sequences start with E and end with B. Step 0 shows E, step
    T-1 shows B, every other step a uniform random distractor, except the marked steps
    t1 < t2 (< t3), each showing X or Y with probability 1/2, independently. T steps in all; the
    class, read at step T-1, is the X/Y pattern in order as a binary number (X = 0), which is the
    paper's class order (6a: XX, XY, YX, YY = Q, R, S, U; 6b: XXX .. YYY = Q, R, S, U, V, A, B, C):

        step     0    1  ...  t1  ...  t2  ...  T-2  T-1
        input    E    c  ...   Y  ...   X  ...   a    B
        target                                       YX = class 2

    Worked example, 6a at T = 12 (windows t1 in [1, 2], t2 in [6, 7]):

        step     0  1  2  3  4  5  6  7  8  9  10  11
        input    E  d  X  a  a  c  b  Y  c  d   b   B
        target                                      XY = class 1

    Variants: ``6a`` (default; two marked symbols, 4 classes) and ``6b`` (three, 8 classes). The
    paper draws the length in [100, 110] and the positions in t1 in [10, 20], t2 in [50, 60] (6a)
    and t1 in [10, 20], t2 in [33, 43], t3 in [66, 76] (6b); here the length is fixed at T and each
    window is scaled with it, [floor(lo% T), floor(hi% T)] (the paper's numbers at T = 100),
    pushed apart at small T so that they stay disjoint (``windows``). Our windows count steps
    from 0 (the start symbol); the paper's table 10 gives the shortest lag from the last marked
    symbol to the end as 40 (6a) and 24 (6b), i.e. length 100 minus 60 or 76, which reads as
    positions counted from 1: ours sit one step later, so at T = 100 that lag is 39 (6a), 23 (6b).
    Loss: cross-entropy at the last step (the paper's error signals also come only at the end).
    Baseline: ln 4 (6a), ln 8 (6b): the classes are uniform and independent of everything a
    memoryless predictor sees. Lag: from t1 to the last step, T-1-last(w1) .. T-1-first(w1)
    (79 .. 89 at T = 100). Solved: the paper counts a sequence correct when the final absolute
    error of every output unit is below 0.3, and stops training once the average training error
    is below 0.1 and the 2000 most recent sequences were all correct (tables 9 and 11); a softmax
    has no such per-unit error, so we use accuracy (argmax) >= 0.99 on held-out data.
    """

    name = "temporal_order"
    variants = ("6a", "6b")
    input_size = 8
    n_distractors = 4
    X, Y, START, END = 4, 5, 6, 7

    @property
    def n_marked(self) -> int:
        return len(WINDOWS[self.variant])

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return 2**self.n_marked

    def min_seq_len(self) -> int:
        # the smallest T whose windows fit strictly between the start and the end step
        # (windows only grow with T, so every longer T fits as well)
        return 4 if self.variant == "6a" else 5

    def lag_range(self, seq_len: int) -> tuple[int, int]:
        first, last = windows(self.variant, seq_len)[0]
        return seq_len - 1 - last, seq_len - 1 - first

    def sample(self, seq_len: int, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_seq_len(seq_len)
        T, B = seq_len, batch_size
        symbols = torch.randint(0, self.n_distractors, (T, B), generator=generator)
        symbols[0] = self.START
        symbols[T - 1] = self.END
        label = torch.zeros(B, dtype=torch.long)
        cols = torch.arange(B)
        for first, last in windows(self.variant, T):
            pos = torch.randint(first, last + 1, (B,), generator=generator)
            is_y = torch.randint(0, 2, (B,), generator=generator)
            symbols[pos, cols] = self.X + is_y
            label = 2 * label + is_y  # first marked symbol is the most significant bit
        return Batch(F.one_hot(symbols, self.input_size).float(), label.unsqueeze(0))

    def baseline_loss(self, seq_len: int) -> float:
        return math.log(self.output_size)
