"""The multi-query associative recall task, MQAR (Arora, Eyuboglu et al. 2023, "Zoology: Measuring
and Improving Recall in Efficient Language Models", and its code, github.com/HazyResearch/zoology,
zoology/data/associative_recall.py); see docs/references.md section 1.6.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from seqbench.tasks.base import Batch, Task

#: Zoology's power law for the query gaps, p(g) ~ (g + 1)^(a - 1) over slots g = 0, 1, ..., with
#: a = 0.01 (their ``power_a``, train and test alike); a = 1 would be uniform
POWER_A = 0.01


def slot_weights(n_slots: int) -> torch.Tensor:
    """Zoology's unnormalized probability of each query slot g = 0 .. n_slots-1."""
    return torch.arange(1, n_slots + 1, dtype=torch.float64) ** (POWER_A - 1)


class MQARTask(Task):
    """MQAR: N key-value pairs, then each key once as a query, answered with its value.

    One-hot inputs over 65 symbols: 0..31 keys, 32..63 values, 64 = blank. Steps 0 .. 2N-1 show
    the pairs k1 v1 k2 v2 .. kN vN: N distinct keys and N distinct values, each drawn uniformly
    without replacement from its 32 symbols (Zoology: keys and values from disjoint halves of the
    vocabulary, distinct within a sequence). Every key is then queried once, at a step showing the
    key alone; the model outputs the key's value at that step (Zoology's labels sit at the query
    token: next-token prediction). The output classes are the 32 values.

    ``block`` (default, N = 8) and ``block16`` (N = 16): T blanks, then the N queries on
    consecutive steps, the keys in a uniformly random order. 3N + T steps; the readout is the N
    query steps, the same in every sequence (no mask):

        step     0   1   ..  2N-2  2N-1   2N .. 2N+T-1   2N+T .. 3N+T-1
        input    k1  v1  ..  kN    vN     blank ...      k_p(1) .. k_p(N)
        target                                           v_p(1) .. v_p(N)

    ``zoology`` (N = 8): Zoology's query placement. After the pairs, a region of 2N + T steps
    whose even offsets 0, 2, 4, .. are N + floor(T/2) query slots; the key of pair i goes to the
    i-th of N distinct slots drawn one after another with probability proportional to
    (g + 1)^(a - 1), a = 0.01 (Zoology's power law: the recently seen pairs are queried soonest),
    blanks elsewhere. 4N + T steps; the readout is the whole region and the batch's mask marks the
    N query steps, which differ between sequences (seqbench.tasks.base):

        step     0 .. 2N-1        2N   2N+1  2N+2  2N+3  ..  4N+T-1
        input    k1 v1 .. kN vN   k2   b     b     b     ..  k1 ..
        target                    v2                         v1
        mask                      1    0     0     0     ..  1

    What T means: the number of blank steps between the pairs and the queries (``block``), or
    the steps of the query region beyond the 2N that N queries spaced two apart need
    (``zoology``; Zoology's input length L is 4N + T, their condition 4N <= L is T >= 0). So the
    lag, from a pair's value to its query, is T + 1 .. T + 3N - 2 in ``block``; in ``zoology``
    it is 1 .. 4N + 2 floor(T/2) - 3, mostly short (the power law puts most queries in the
    first slots). Query step: the first query step, 2N + T in ``block`` (every sequence queries
    there); 2N in ``zoology``, its likeliest query slot, which not every sequence uses (the probe
    measures the sequences that do).

    Settings taken from Zoology: distinct keys and values from disjoint vocabularies, every key
    queried once, the value output at the query step, queries two steps apart with power-law gaps
    (a = 0.01) and blank fillers (their figure-2 configuration, random_non_queries=False), N in
    4..16 pairs (figure 2: N = 4, 8, 16 at L = 64, 128, 256). Ours: a vocabulary of 32 keys and
    32 values (theirs: 8192 tokens, too many one-hot inputs for a recurrent cell on a CPU), the
    output restricted to the values, and the ``block`` layout that puts the lag T between the
    pairs and every query.

    Loss: cross-entropy over the 32 values at the query steps. Baseline: ln 32 (derivation in
    ``baseline_loss``). Accuracy: per query; solved: accuracy >= 0.99 (Zoology reports query
    accuracy and states no threshold).
    """

    name = "mqar"
    variants = ("block", "block16", "zoology")
    n_keys = n_values = 32
    BLANK = 64
    input_size = 65
    output_size = 32

    @property
    def n_pairs(self) -> int:
        return 16 if self.variant == "block16" else 8

    @property
    def zoology(self) -> bool:
        return self.variant == "zoology"

    def total_steps(self, seq_len: int) -> int:
        return (4 if self.zoology else 3) * self.n_pairs + seq_len

    def readout_steps(self, seq_len: int) -> slice:
        N = self.n_pairs
        if self.zoology:
            return slice(2 * N, self.total_steps(seq_len))
        return slice(2 * N + seq_len, self.total_steps(seq_len))

    def query_step(self, seq_len: int) -> int:
        return self.readout_steps(seq_len).start

    def lag_range(self, seq_len: int) -> tuple[int, int]:
        N = self.n_pairs
        if self.zoology:  # value N at step 2N-1 queried in slot 0; value 1 at step 1 in the last
            return 1, 4 * N + 2 * (seq_len // 2) - 3
        return seq_len + 1, seq_len + 3 * N - 2  # value N queried first; value 1 queried last

    def sample(self, seq_len: int, batch_size: int, generator: torch.Generator) -> Batch:
        self.check_seq_len(seq_len)
        T, B, N = seq_len, batch_size, self.n_pairs
        # N distinct keys and N distinct values per sequence: the first N of random permutations
        keys = torch.rand(B, self.n_keys, generator=generator).argsort(1)[:, :N].t()  # (N, B)
        values = torch.rand(B, self.n_values, generator=generator).argsort(1)[:, :N].t()
        symbols = torch.full((self.total_steps(T), B), self.BLANK, dtype=torch.long)
        symbols[0 : 2 * N : 2] = keys
        symbols[1 : 2 * N : 2] = self.n_keys + values
        readout = self.readout_steps(T)
        cols = torch.arange(B)
        if not self.zoology:
            order = torch.rand(B, N, generator=generator).argsort(1).t()  # (N, B): pair asked j-th
            symbols[readout] = keys.gather(0, order)
            return Batch(F.one_hot(symbols, self.input_size).float(), values.gather(0, order))
        n_slots = N + T // 2
        weights = slot_weights(n_slots).expand(B, n_slots)
        slots = torch.multinomial(weights, N, replacement=False, generator=generator).t()  # (N, B)
        rows = 2 * slots  # pair i's query, as a row of the readout
        symbols[readout.start + rows, cols] = keys
        targets = torch.zeros(readout.stop - readout.start, B, dtype=torch.long)
        targets[rows, cols] = values
        mask = torch.zeros(targets.shape, dtype=torch.bool)
        mask[rows, cols] = True
        return Batch(F.one_hot(symbols, self.input_size).float(), targets, mask)

    def baseline_loss(self, seq_len: int) -> float:
        # A memoryless predictor knows the vocabulary (answers are values, never keys or blanks)
        # and sees the query key, but not the pairing, drawn afresh for each sequence: the key
        # shown says nothing of its value. The values of a sequence are a uniformly random
        # N-subset of the 32, in random order, so each one alone is uniform over the 32 values
        # (by symmetry; that they are distinct only helps a predictor that remembers the values
        # already answered). Its best prediction is uniform: loss ln 32, accuracy 1/32.
        return math.log(self.n_values)
