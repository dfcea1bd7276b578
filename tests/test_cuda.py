"""The CUDA paths (cuDNN for builtin, the hand-written cells on the GPU); skipped without a GPU."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from seqbench import seeding
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.model import build_model
from seqbench.probe import probe_builtin, probe_hand
from seqbench.provenance import kernel, resolve_device
from seqbench.tasks import make_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_cudnn_and_hand_agree_on_the_gpu(cell, layers):
    device = resolve_device("cuda")  # switches TF32 off
    assert not torch.backends.cudnn.allow_tf32
    task = make_task("adding")
    twins = [build_model(task, CellConfig(cell=cell, impl=impl, hidden=64, layers=layers), 0, 100)
             .to(device) for impl in ("builtin", "hand")]
    assert kernel(cell, "builtin", device) == "cudnn"
    batch = task.sample(100, 32, seeding.generator(0, "train")).to(device)
    outs = [m(batch.inputs, task.readout_steps(100)) for m in twins]
    for out in outs:
        task.loss(out, batch.targets).backward()
    # cuDNN and cuBLAS sum in other orders than the CPU kernels: float32 parity to 1e-4 here
    rel = ((outs[0] - outs[1]).norm() / outs[0].norm()).item()
    assert rel < 1e-4
    for p, q in zip(twins[0].parameters(), twins[1].parameters()):
        assert ((p.grad - q.grad).norm() / q.grad.norm()).item() < 1e-4


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_probe_through_cudnn_agrees_with_hand(cell):
    device = resolve_device("cuda")
    task = make_task("delayed_recall")
    T = 60
    twins = [build_model(task, CellConfig(cell=cell, impl=impl, hidden=32, forget_bias=(
        1.0 if cell == "lstm" else None)), 0, T).to(device) for impl in ("builtin", "hand")]
    batch = task.sample(T, 16, seeding.generator(0, "probe")).to(device)
    b = probe_builtin(twins[0], task, batch, T)[0]
    h = probe_hand(twins[1], task, batch, T)[0]
    ref = h.grad_norm[b.lags]
    ok = ref > 1e-30
    assert np.max(np.abs(b.grad_norm[ok] - ref[ok]) / ref[ok]) < 1e-4


def test_run_on_cuda(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--task", "adding", "--seq-len", "10", "--steps", "5",
                                      "--device", "cuda", "--out", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    import pandas as pd

    row = pd.read_csv(tmp_path / "runs.csv").iloc[0]
    assert row["device"] == "cuda" and row["kernel"] == "cudnn" and str(row["cudnn_version"]) != ""
