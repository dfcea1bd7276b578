"""Pixel-by-pixel MNIST: sequential (sMNIST) and permuted (psMNIST) (Le, Jaitly & Hinton 2015);
see docs/references.md section 1.7. A task backed by a dataset, with held-out splits.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from seqbench import seeding
from seqbench.errors import ConfigError
from seqbench.tasks.base import Batch, LastStepTask
from seqbench.tasks.idx import read_idx

#: where the MNIST files are looked for: $SEQBENCH_DATA (default ~/.cache/seqbench), in mnist/
#: or in torchvision's layout MNIST/raw/ (torchvision.datasets.MNIST(root=$SEQBENCH_DATA))
DATA_ENV = "SEQBENCH_DATA"
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
#: the last twelfth of the training images is the validation split: 5,000 of MNIST's 60,000,
#: the usual 55,000 / 5,000 split
VALIDATION_FRACTION = 1 / 12
HOW_TO_GET = ("get them with: python -c \"import torchvision; torchvision.datasets.MNIST("
              "'DIR', download=True)\" then export SEQBENCH_DATA=DIR (or copy the four "
              "*-ubyte[.gz] files from http://yann.lecun.com/exdb/mnist/ into DIR/mnist/)")


def data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".cache" / "seqbench")


def find_files(root: Path | None = None) -> dict[str, Path]:
    """The four MNIST files under ``root`` (``data_dir()``), plain or gzipped; a one-line
    ConfigError saying where they were looked for and how to get them."""
    root = root or data_dir()
    found = {}
    for key, name in FILES.items():
        for folder in (root / "mnist", root / "MNIST" / "raw", root):
            hit = next((folder / n for n in (name, name + ".gz") if (folder / n).is_file()), None)
            if hit is not None:
                found[key] = hit
                break
        else:
            raise ConfigError(f"MNIST file {name} not found in {root}/mnist, {root}/MNIST/raw or "
                              f"{root} (${DATA_ENV}); {HOW_TO_GET}")
    return found


_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def load_splits(root: Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (images as (N, 784) uint8, labels as (N,) int64): train, validation (the last
    twelfth of the training file) and test (the t10k file). Read once per process and folder."""
    files = find_files(root)
    key = tuple((str(p), p.stat().st_mtime_ns) for p in files.values())
    if key not in _CACHE:
        arrays = {k: read_idx(p) for k, p in files.items()}
        for part in ("train", "test"):
            images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
            if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
                raise ConfigError(f"{files[f'{part}_images']}: expected (N, 28, 28) images and N "
                                  f"labels, got {images.shape} and {labels.shape}")
            if labels.max(initial=0) > 9:
                raise ConfigError(f"{files[f'{part}_labels']}: labels must be digits 0-9")
        images = arrays["train_images"].reshape(-1, 784)
        labels = arrays["train_labels"].astype(np.int64)
        cut = len(labels) - max(1, round(len(labels) * VALIDATION_FRACTION))
        _CACHE[key] = {
            "train": (images[:cut], labels[:cut]),
            "validation": (images[cut:], labels[cut:]),
            "test": (arrays["test_images"].reshape(-1, 784),
                     arrays["test_labels"].astype(np.int64)),
        }
    return _CACHE[key]


def permutation() -> np.ndarray:
    """psMNIST's pixel order: one fixed permutation of the 784 pixels for every run (as Le et al.
    2015 fix one), drawn from seqbench's seed stream "psmnist-permutation" of seed 0."""
    gen = torch.Generator().manual_seed(seeding.derive_seed(0, "psmnist-permutation"))
    return torch.randperm(784, generator=gen).numpy()


class PixelMNISTTask(LastStepTask):
    """MNIST digits read one pixel per step (T = 784), classified at the last step.

        step     0    1    2   ...   783
        input    p0   p1   p2  ...   p783      pixel intensity / 255, one channel
        target                       digit     (0-9)

    ``sequential``: pixels in scan-line order (sMNIST); ``permuted``: in one fixed random order
    (psMNIST; ``permutation``), which spreads the digit's strokes over the whole sequence
    (Le et al. 2015). Splits: training batches from the first 55,000 training images, the
    validation set from the last 5,000, the test set from the 10,000 test images (drawn without
    replacement; ``--test-size 10000`` tests on all of them). Loss: cross-entropy over 10 digits.
    Baseline: the best memoryless predictor outputs the training labels' frequencies, a loss of
    their entropy (about ln 10). Solved (ours; the papers report accuracy only): test accuracy of
    at least 0.97. Lags 1 .. 783: the first pixel is read out 783 steps later.
    """

    name = "mnist"
    variants = ("sequential", "permuted")
    input_size = 1
    output_size = 10
    held_out = True  # each split is drawn from its own images (seqbench.tasks.base.sample_split)
    PIXELS = 784

    def min_seq_len(self) -> int:
        return self.PIXELS

    def check_seq_len(self, seq_len: int) -> None:
        if seq_len != self.PIXELS:
            raise ConfigError(f"seq_len must be {self.PIXELS} for task mnist (one step per pixel "
                              f"of a 28 x 28 image), got {seq_len!r}")

    def lag_range(self, seq_len: int) -> tuple[int, int]:
        return 1, seq_len - 1

    def sample(self, seq_len: int, batch_size: int, generator: torch.Generator,
               split: str = "train") -> Batch:
        self.check_seq_len(seq_len)
        images, labels = load_splits()[split]
        n = len(labels)
        if split == "train":  # i.i.d. batches
            index = torch.randint(0, n, (batch_size,), generator=generator).numpy()
        else:  # a fixed set: distinct images
            if batch_size > n:
                raise ConfigError(f"the MNIST {split} split has {n} images; ask for at most that "
                                  f"many (--{'eval' if split == 'validation' else 'test'}-size)")
            index = torch.randperm(n, generator=generator)[:batch_size].numpy()
        pixels = images[index]
        if self.variant == "permuted":
            pixels = pixels[:, permutation()]
        x = torch.from_numpy(pixels.T.astype(np.float32) / 255.0).unsqueeze(-1)  # (784, B, 1)
        return Batch(x, torch.from_numpy(labels[index]).unsqueeze(0))

    def baseline_loss(self, seq_len: int) -> float:
        labels = load_splits()["train"][1]
        freq = np.bincount(labels, minlength=10) / len(labels)
        return float(-sum(p * math.log(p) for p in freq if p > 0))

    def solved(self, loss: float, accuracy: float) -> bool:
        return accuracy >= 0.97
