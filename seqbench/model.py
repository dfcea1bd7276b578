"""The model: task inputs -> recurrent stack -> linear readout at the task's readout steps."""

from __future__ import annotations

import functools
from dataclasses import replace

import torch
from torch import Tensor, nn

from seqbench.cells import CellConfig, cell_class
from seqbench.cells.stack import make_recurrent, run_builtin_residual
from seqbench.init import apply_init
from seqbench.normcells import NormRNN
from seqbench.tasks import Task


class SequenceModel(nn.Module):
    """A recurrent stack (built-in or hand-written) with a linear readout.

    The inputs the tasks produce are already encoded (one-hot symbols or real values), so the
    recurrent stack reads them directly. The readout is applied only at the steps the loss uses.
    """

    def __init__(self, input_size: int, output_size: int, cell: CellConfig, max_steps: int = 1):
        super().__init__()
        cell = cell.validate()
        self.cell_config = cell
        if cell.norm != "none":  # per-step batch-norm statistics are kept for max_steps steps
            self.rnn = NormRNN(cell.cell, input_size, cell.hidden, cell.layers, cell.nonlinearity,
                               norm=cell.norm, max_steps=max_steps, residual=cell.residual)
        else:
            self.rnn = make_recurrent(cell, input_size, max_steps)
        self.readout = nn.Linear(cell.hidden, output_size)

    def hidden_states(self, x: Tensor) -> Tensor:
        """Top-layer hidden states for all steps, (S, B, H)."""
        if self.cell_config.residual and isinstance(self.rnn, nn.RNNBase):
            return run_builtin_residual(self.rnn, x)
        return self.rnn(x)[0]

    def forward(self, x: Tensor, readout: slice = slice(None)) -> Tensor:
        """x: (S, B, input_size) -> outputs at ``readout`` steps, (R, B, output_size)."""
        return self.readout(self.hidden_states(x)[readout])


def build_model(task: Task, cell: CellConfig, init_seed: int, seq_len: int | None = None
                ) -> SequenceModel:
    """Build on the CPU from ``init_seed`` alone, so that ``builtin`` and ``hand`` start from
    identical weights whatever the device or the global RNG state.

    ``seq_len`` (the task's lag T) is needed by chrono initialization, whose T_max is the total
    number of steps of the sequence (the longest dependency it can hold), and by recurrent batch
    normalization, which keeps statistics for each of those steps.
    """
    cell = cell.validate()
    if (cell.chrono or cell.norm.startswith("batch")) and seq_len is None:
        raise ValueError("chrono initialization and batch norm need the sequence length")
    max_steps = task.total_steps(seq_len) if seq_len is not None else 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        model = SequenceModel(task.input_size, task.output_size, cell, max_steps)
        apply_init(model.rnn, cell_class(cell.cell), cell.layers, cell.hidden, init=cell.init,
                   gain=cell.init_gain, forget_bias=cell.forget_bias,
                   chrono_tmax=max_steps if cell.chrono else 0)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _n_params(task: Task, cell: CellConfig, hidden: int, seq_len: int) -> int:
    return count_parameters(build_model(task, replace(cell, hidden=hidden), 0, seq_len))


@functools.lru_cache(maxsize=256)
def _hidden_for(task_name: str, variant: str, cell: CellConfig, n_params: int, seq_len: int) -> int:
    from seqbench.tasks import make_task

    task = make_task(task_name, variant)
    count = functools.partial(_n_params, task, cell, seq_len=seq_len)
    lo, hi = 1, 1
    while count(hi) < n_params:  # the count grows with H (quadratically): double, then bisect
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < n_params else (lo, mid)
    return min((lo, hi), key=lambda h: (abs(count(h) - n_params), h))


def hidden_for_params(task: Task, cell: CellConfig, n_params: int, seq_len: int) -> int:
    """The hidden size whose model (this task's input and readout, ``cell``'s type, layers and
    options) has the parameter count closest to ``n_params`` (the smaller H on a tie): cells
    compared at equal size, as Collins, Sohl-Dickstein & Sussillo (2017) and Greff et al. (2017)
    do, instead of at equal H (where an LSTM has 4x the parameters of a tanh RNN)."""
    return _hidden_for(task.name, task.variant, cell.validate(), int(n_params), int(seq_len))
