"""The settings docs/references.md sections 1.4 and 1.5 state for temporal order, selective copy
and variable copy, checked against the task code, so that the documented differences from the
papers stay true (a change to a layout must change the docs too)."""

from __future__ import annotations

import torch

from seqbench.tasks.selective_copy import SelectiveCopyTask
from seqbench.tasks.temporal_order import TemporalOrderTask, windows
from seqbench.tasks.variable_copy import VariableCopyTask


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_temporal_order_start_is_E_and_trigger_is_B():
    # the paper's sequences start with E and end with B, the trigger (section 5.6)
    task = TemporalOrderTask("6a")
    sym = task.sample(30, 64, _gen()).inputs.argmax(-1)
    assert (sym[0] == task.START).all() and (sym[-1] == task.END).all()
    assert (task.START, task.END) == (6, 7)  # 6 = E, 7 = B in the docstring's alphabet


def test_temporal_order_minimal_lag_is_one_less_than_the_papers_table_10():
    # table 10: minimal lag from the last marked symbol to the end, 40 (6a) and 24 (6b), at
    # length 100; ours count steps from 0, so 39 and 23 at T = 100
    for variant, paper in (("6a", 40), ("6b", 24)):
        last_window = windows(variant, 100)[-1]
        assert 100 - 1 - last_window[1] == paper - 1


def test_selective_copy_mamba_alphabet():
    # appendix E.1: 16 tokens including noise, 16 tokens to memorize; the delimiter is ours
    task = SelectiveCopyTask("mamba")
    assert (task.n_symbols, task.n_copy) == (15, 16)
    assert task.n_symbols + 1 == 16 and task.input_size == 17


def test_variable_copy_blank_count_spans_0_to_T_minus_1():
    # Tallec & Ollivier draw the number of blanks before the signal in 1 .. T; ours is d - 1 with
    # d in 1 .. T, so 0 .. T - 1: every value occurs, nothing outside, in both layouts
    T, B = 6, 4000
    for variant in VariableCopyTask.variants:
        task = VariableCopyTask(variant)
        sym = task.sample(T, B, _gen(1)).inputs.argmax(-1)  # (steps, B)
        delim = (sym == task.DELIM).int().argmax(0)
        data_end = torch.where(sym != task.BLANK, torch.arange(sym.shape[0])[:, None], -1)
        data_end = data_end.masked_fill(sym == task.DELIM, -1).max(0).values
        blanks = delim - data_end - 1
        assert set(blanks.tolist()) == set(range(T)), variant
        counts = torch.bincount(blanks, minlength=T).float() / B
        assert (counts - 1 / T).abs().max() < 0.04, (variant, counts)
