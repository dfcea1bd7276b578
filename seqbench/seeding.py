"""Independent random streams derived from one user seed.

Model initialization, training data, evaluation data and the probe batch each get their own
generator, seeded from (seed, stream name) through a hash, so that no two streams share a seed
(evaluation data never overlaps the training stream) and adding a stream never shifts another.
"""

from __future__ import annotations

import hashlib

import torch

STREAMS = ("init", "train", "eval", "probe")


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream``, a pure function of (seed, stream)."""
    digest = hashlib.sha256(f"seqbench:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for ``stream`` (data is sampled on the CPU, then moved)."""
    return torch.Generator().manual_seed(derive_seed(seed, stream))
