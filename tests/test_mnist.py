"""Pixel MNIST (sMNIST / psMNIST) on small IDX files the test writes itself (no download in tests
or CI): the IDX reader, where the files are found, the splits, the pixel order, the baseline,
a run through the command line, and the one-line errors."""

import csv
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from seqbench.cli import cli
from seqbench.errors import ConfigError
from seqbench.tasks import make_task
from seqbench.tasks.idx import read_idx, write_idx
from seqbench.tasks.mnist import FILES, load_splits, permutation

N_TRAIN, N_TEST = 120, 30


def fake_mnist(folder, gz=False, seed=0):
    """Digits whose class is written into their pixels: image i is filled with its label + 1 at
    pixel 3 (and noise elsewhere), so that every image is distinct and traceable."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for part, n in (("train", N_TRAIN), ("test", N_TEST)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        images[:, 0, 0] = np.arange(n) % 256  # an id per image
        images[:, 0, 3] = labels + 1
        data[part] = (images, labels)
        suffix = ".gz" if gz else ""
        write_idx(folder / (FILES[f"{part}_images"] + suffix), images)
        write_idx(folder / (FILES[f"{part}_labels"] + suffix), labels)
    return data


@pytest.fixture
def mnist(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_DATA", str(tmp_path / "data"))
    return fake_mnist(tmp_path / "data" / "mnist")


def test_idx_round_trip_and_damage(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a", "a.gz"):
        write_idx(tmp_path / name, a)
        assert np.array_equal(read_idx(tmp_path / name), a)
    raw = (tmp_path / "a").read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 3]) and raw[4:8] == (2).to_bytes(4, "big")
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ConfigError, match="is damaged"):
        read_idx(tmp_path / "short")
    (tmp_path / "text").write_text("not idx")
    with pytest.raises(ConfigError, match="not an IDX file"):
        read_idx(tmp_path / "text")


def test_torchvisions_layout_and_gzipped_files_are_found(tmp_path, monkeypatch):
    data = fake_mnist(tmp_path / "tv" / "MNIST" / "raw", gz=True)
    monkeypatch.setenv("SEQBENCH_DATA", str(tmp_path / "tv"))
    splits = load_splits()
    assert np.array_equal(splits["test"][0], data["test"][0].reshape(-1, 784))


def test_the_splits_are_disjoint_and_complete(mnist):
    splits = load_splits()
    images, labels = mnist["train"]
    assert len(splits["validation"][1]) == N_TRAIN // 12  # MNIST: 5,000 of 60,000
    joined = np.concatenate([splits["train"][0], splits["validation"][0]])
    assert np.array_equal(joined, images.reshape(-1, 784))
    assert np.array_equal(np.concatenate([splits["train"][1], splits["validation"][1]]), labels)
    task = make_task("mnist")
    test = task.sample(784, N_TEST, torch.Generator().manual_seed(0), split="test")
    ids = sorted(test.inputs[0, :, 0].mul(255).round().long().tolist())
    assert ids == list(range(N_TEST))  # a fixed set: every test image once
    val = task.sample(784, 10, torch.Generator().manual_seed(0), split="validation")
    cut = N_TRAIN - N_TRAIN // 12
    assert {int(round(v * 255)) for v in val.inputs[0, :, 0].tolist()} <= set(range(cut, N_TRAIN))
    with pytest.raises(ConfigError, match="has 10 images; ask for at most"):
        task.sample(784, 11, torch.Generator().manual_seed(0), split="validation")


def test_pixel_order_targets_and_baseline(mnist):
    seq, perm = make_task("mnist", "sequential"), make_task("mnist", "permuted")
    a = seq.sample(784, 16, torch.Generator().manual_seed(3), split="test")
    b = perm.sample(784, 16, torch.Generator().manual_seed(3), split="test")
    assert a.inputs.shape == (784, 16, 1) and a.targets.shape == (1, 16)
    order = permutation()
    assert sorted(order.tolist()) == list(range(784)) and not np.array_equal(order, np.arange(784))
    assert np.array_equal(permutation(), order)  # one fixed order for every run
    assert torch.equal(b.inputs[:, :, 0], a.inputs[order, :, 0])
    assert torch.equal(a.targets, b.targets)
    labels_seen = a.inputs[3, :, 0].mul(255).round().long() - 1  # the label written at pixel 3
    assert torch.equal(labels_seen, a.targets[0])
    train_labels = load_splits()["train"][1]
    freq = np.bincount(train_labels, minlength=10) / len(train_labels)
    entropy = -sum(p * math.log(p) for p in freq if p > 0)
    assert seq.baseline_loss(784) == pytest.approx(entropy)
    with pytest.raises(ConfigError, match="seq_len must be 784"):
        seq.check_seq_len(100)


def test_a_run_through_the_command_line(mnist, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "run", "--task", "mnist", "--variant", "permuted", "-T", "784", "--hidden", "8",
        "--steps", "3", "--eval-every", "3", "--eval-size", "10", "--test-size", str(N_TEST),
        "--batch-size", "4", "--threads", "1", "-q", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "runs.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["task"], row["variant"], row["lag_min"], row["lag_max"]) == \
        ("mnist", "permuted", "1", "783")
    assert float(row["baseline_loss"]) == pytest.approx(make_task("mnist").baseline_loss(784))


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_DATA", str(tmp_path / "empty"))
    result = CliRunner().invoke(cli, ["run", "--task", "mnist", "-T", "784", "--steps", "1",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "MNIST file train-images-idx3-ubyte not found" in line
    assert "torchvision.datasets.MNIST" in line and "SEQBENCH_DATA" in line
    assert not (tmp_path / "out").exists()
