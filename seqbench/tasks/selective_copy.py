"""The selective copying task (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective
State Spaces", section 3.1, figure 2, and appendix E.1); see docs/references.md section 1.4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqbench.tasks.base import Batch, Task


class SelectiveCopyTask(Task):
    """Selective copy: K data tokens at random positions among T noise tokens, reproduced in
    order after a delimiter.

    Gu & Dao (2023), section 3.1 and appendix E.1: unlike the copy task (seqbench.tasks.copy), the
    data tokens sit at random, varying distances, so a model cannot copy by a fixed delay; it must
    select them by content. One-hot inputs over V + 2 symbols: 0..V-1 data, V = noise, V+1 =
    delimiter. Steps 0 .. T+K-1 hold the K data tokens (uniform over the V symbols, with
    replacement) at K distinct positions chosen uniformly, and noise elsewhere (T noise tokens);
    step T+K shows the delimiter; steps T+K+1 .. T+2K show noise while the model outputs the K
    data tokens in order. T + 2K + 1 steps in all; the targets are read at the last K steps only.

        step     0 .. T+K-1                 T+K     T+K+1 .. T+2K
        input    K data among T noise       delim   noise ...
        target                                      d1 .. dK

    Worked example, K = 3, T = 5 (n = noise):

        step     0  1  2  3  4  5  6  7    8      9  10  11
        input    n  4  n  n  1  n  4  n  delim    n   n   n
        target                                    4   1   4

    Variants: ``mamba`` (default; K = 16 data tokens and V = 15 data symbols, our reading of
    the paper's appendix E.1: "a vocab size of 16 possible tokens (including the white noise
    token)" and 16 tokens to memorize; the paper's sequences have length 4096, here T + 2K + 1)
    and ``arjovsky`` (K = 10 tokens from V = 8 symbols, the alphabet of the copy task, for a
    like-for-like comparison with it). The delimiter and the noise shown at the output steps are
    ours. The paper does not spell out the layout; the authors' earlier public generator
    (state-spaces/s4, ``src/dataloaders/datasets/copying.py``, ``variable=True``) puts the K data
    tokens at a uniform K-subset of the first L + K steps (L noise tokens), then shows a marker
    token at each of the K output steps (no separate delimiter; L + 2K steps), with a vocabulary
    of A tokens of which noise and marker take two, so A = 16 would leave 14 data symbols, not 15.
    Its placement of the data tokens is ours (with T = L). Whether the Mamba experiment ran that
    code is not stated, so ``mamba`` keeps its 15 symbols and its delimiter (docs/references.md
    section 1.4).

    Loss: cross-entropy over the V data symbols at the K output steps. Baseline: ln V (every
    output is uniform over the V symbols and independent of what a memoryless predictor sees).
    Accuracy: per token, over the K output steps. Solved: accuracy >= 0.99 (the paper reports
    accuracy, its table 1, and states no threshold). Query step: T+K+1, where d1 is recalled.
    Lag of d1: from its position, at earliest step 0 and at latest step T (all K tokens at the
    end of the input region), to step T+K+1: K+1 .. T+K+1.
    """

    name = "selective_copy"
    variants = ("mamba", "arjovsky")
    #: variant -> (V data symbols, K data tokens)
    SETTINGS = {"mamba": (15, 16), "arjovsky": (8, 10)}

    @property
    def n_symbols(self) -> int:
        return self.SETTINGS[self.variant][0]

    @property
    def n_copy(self) -> int:
        return self.SETTINGS[self.variant][1]

    @property
    def NOISE(self) -> int:  # noqa: N802 - a symbol index, named like copy.py's BLANK
        return self.n_symbols

    @property
    def DELIM(self) -> int:  # noqa: N802
        return self.n_symbols + 1

    @property
    def input_size(self) -> int:  # type: ignore[override]
        return self.n_symbols + 2

    @property
    def output_size(self) -> int:  # type: ignore[override]
        return self.n_symbols

    def total_steps(self, seq_len: int) -> int:
        return seq_len + 2 * self.n_copy + 1

    def readout_steps(self, seq_len: int) -> slice:
        return slice(seq_len + self.n_copy + 1, self.total_steps(seq_len))

    def query_step(self, seq_len: int) -> int:
        return seq_len + self.n_copy + 1

    def lag_range(self, seq_len: int) -> tuple[int, int]:
        return self.n_copy + 1, seq_len + self.n_copy + 1

    def sample(self, seq_len: int, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_seq_len(seq_len)
        T, B, K = seq_len, batch_size, self.n_copy
        region = T + K
        # K distinct positions per sequence, uniform over the K-subsets of the input region: the
        # first K of a uniform random permutation, sorted so that data keep their order
        positions = torch.rand(region, B, generator=generator).argsort(0)[:K].sort(0).values
        data = torch.randint(0, self.n_symbols, (K, B), generator=generator)
        symbols = torch.full((self.total_steps(T), B), self.NOISE, dtype=torch.long)
        symbols.scatter_(0, positions, data)
        symbols[region] = self.DELIM
        return Batch(F.one_hot(symbols, self.input_size).float(), data)

    def baseline_loss(self, seq_len: int) -> float:
        return math.log(self.n_symbols)
