"""Independent random streams derived from one user seed.

Model initialization, training data, the validation set, the test set and the probe batch each get
their own generator, seeded from (seed, stream name) through a hash, so that no two streams share a
seed (neither held-out set overlaps the training stream or the other) and adding a stream never
shifts another. The validation stream keeps its historical name ``eval``: it is the set that
evaluations during training (stopping, selection) use; ``test`` is only read once, at the end.
"""

from __future__ import annotations

import hashlib

import torch

STREAMS = ("init", "train", "eval", "test", "probe")


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream``, a pure function of (seed, stream)."""
    digest = hashlib.sha256(f"seqbench:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for ``stream`` (data is sampled on the CPU, then moved)."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))
