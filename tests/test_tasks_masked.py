"""Masked multi-position outputs (``Batch.mask``) and the two tasks that use them: variable-lag copy
(Henaff et al. 2016; Tallec & Ollivier 2018) and multi-query associative recall (Arora et al. 2023).

Layouts are checked against independent reimplementations written here (one sequence at a time,
in plain Python), themselves checked on small cases written out by hand; baselines against large
sampled estimates of the best memoryless predictor; the mask against outputs changed where it is
off; and both tasks run through ``execute_run`` and ``measure_at_init``.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqbench.cells import CellConfig
from seqbench.config import RunConfig
from seqbench.grads import measure_at_init
from seqbench.model import build_model
from seqbench.probe import probe
from seqbench.runner import execute_run
from seqbench.tasks import Batch, make_task, registry, task_class
from seqbench.tasks.base import masked_call
from seqbench.tasks.mqar import MQARTask, slot_weights
from seqbench.tasks.variable_copy import VariableCopyTask
from seqbench.train import evaluate

NEW = {"variable_copy": ("end_aligned", "start_aligned"), "mqar": ("block", "block16", "zoology")}
ALL = [(n, v) for n, vs in NEW.items() for v in vs]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def symbols_of(batch, input_size):
    x = batch.inputs
    assert x.shape[-1] == input_size and x.dtype == torch.float32
    assert (x.sum(-1) == 1).all() and set(x.unique().tolist()) <= {0.0, 1.0}, "one-hot"
    return x.argmax(-1)


# ------------------------------------------------------------------------------------------------
# The interface
# ------------------------------------------------------------------------------------------------


def test_mask_none_is_the_old_loss_bit_for_bit():
    """Existing tasks keep mask=None: the loss is exactly the formula used before masks."""
    for name in ("copy", "selective_copy", "temporal_order"):
        task = make_task(name)
        batch = task.sample(7, 32, gen(1))
        assert batch.mask is None
        out = torch.randn(*batch.targets.shape, task.output_size, generator=gen(2))
        old = F.cross_entropy(out.reshape(-1, task.output_size), batch.targets.reshape(-1))
        assert torch.equal(task.loss(out, batch.targets), old)
        assert torch.equal(masked_call(task.loss, out, batch.targets, None), old)
    task = make_task("adding")
    batch = task.sample(7, 32, gen(1))
    out = torch.randn(1, 32, 1, generator=gen(2))
    assert torch.equal(task.loss(out, batch.targets), F.mse_loss(out.squeeze(-1), batch.targets))


def test_masked_loss_is_the_mean_over_counted_positions():
    task = make_task("variable_copy", "start_aligned")
    out = torch.randn(3, 2, 8, generator=gen(3), dtype=torch.float64)
    y = torch.tensor([[1, 2], [3, 4], [5, 6]])
    mask = torch.tensor([[True, False], [False, False], [True, True]])
    each = [F.cross_entropy(out[r, b : b + 1], y[r, b : b + 1]).item()
            for r, b in ((0, 0), (2, 0), (2, 1))]
    assert task.loss(out, y, mask).item() == pytest.approx(sum(each) / 3, rel=1e-12)
    full = torch.ones_like(mask)
    assert task.loss(out, y, full).item() == pytest.approx(task.loss(out, y).item(), rel=1e-12)
    # regression: the same rule (the adding task's loss with a mask)
    adding = make_task("adding")
    yr, outr = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[[1.5], [0.0], [3.0]]])
    assert adding.loss(outr, yr, torch.tensor([[True, False, True]])).item() == pytest.approx(0.125)


@pytest.mark.parametrize("name,variant", [("variable_copy", "start_aligned"), ("mqar", "zoology")])
def test_outputs_at_masked_positions_change_nothing(name, variant):
    task = make_task(name, variant)
    batch = task.sample(12, 64, gen(4))
    y, mask = batch.targets, batch.mask
    out = torch.randn(*y.shape, task.output_size, generator=gen(5))
    loss, acc = task.loss(out, y, mask).item(), task.accuracy(out, y, mask)
    changed = out.clone()
    changed[~mask] = 100.0 * torch.randn(int((~mask).sum()), task.output_size, generator=gen(6))
    assert task.loss(changed, y, mask).item() == loss and task.accuracy(changed, y, mask) == acc
    # the targets there do not matter either
    assert task.loss(out, torch.where(mask, y, 3), mask).item() == loss
    # perfect outputs where the mask is on: accuracy 1 whatever the rest says
    perfect = changed.clone()
    perfect[mask] = 50.0 * F.one_hot(y[mask], task.output_size).float()
    assert task.accuracy(perfect, y, mask) == 1.0 and task.loss(perfect, y, mask).item() < 1e-6
    # a counted position does change them
    counted = out.clone()
    counted[mask] += 10.0 * torch.randn(int(mask.sum()), task.output_size, generator=gen(7))
    assert task.loss(counted, y, mask).item() != loss


def test_batch_to_moves_the_mask_and_query_loss_honours_it():
    task = make_task("variable_copy", "start_aligned")
    T = 3
    batch = task.sample(T, 16, gen(8))
    moved = batch.to("cpu")
    assert torch.equal(moved.mask, batch.mask) and Batch(batch.inputs, batch.targets).to("cpu").mask is None
    out = torch.randn(*batch.targets.shape, 8, generator=gen(9))
    r = task.query_step(T) - task.readout_steps(T).start
    at = batch.mask[r]
    assert at.all(), "T <= 10: every sequence outputs at T + 10"
    expected = F.cross_entropy(out[r][at], batch.targets[r][at])
    assert task.query_loss(out, batch.targets, T, batch.mask).item() == pytest.approx(expected.item())
    # at T = 30 only the sequences with d >= T - 9 count at the query step
    batch = task.sample(30, 400, gen(10))
    r = task.query_step(30) - task.readout_steps(30).start
    delim = (batch.inputs.argmax(-1) == 9).float().argmax(0)  # step 9 + d
    assert torch.equal(batch.mask[r], delim - 9 >= 21)


def test_evaluate_weights_chunks_by_counted_positions():
    """The chunked evaluation equals the loss and accuracy of the whole batch at once."""
    task = make_task("mqar", "zoology")
    batch = task.sample(20, 50, gen(11))
    model = build_model(task, CellConfig("gru", hidden=8), 0, 20)
    with torch.no_grad():
        out = model(batch.inputs, task.readout_steps(20))
    whole = evaluate(model, task, batch, 20, chunk=7)
    assert whole.loss == pytest.approx(task.loss(out, batch.targets, batch.mask).item(), rel=1e-5)
    assert whole.accuracy == pytest.approx(task.accuracy(out, batch.targets, batch.mask), rel=1e-6)


# ------------------------------------------------------------------------------------------------
# Registry and seeding
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_registered_with_the_class_variants(name):
    entry = registry()[name]
    assert entry.target.startswith("seqbench.tasks.")  # so tests/test_task_registry.py covers it
    assert entry.variants == NEW[name] == task_class(name).variants


@pytest.mark.parametrize("name,variant", ALL)
def test_same_seed_same_batch(name, variant):
    task = make_task(name, variant)
    a, b, c = (task.sample(9, 16, gen(s)) for s in (7, 7, 8))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert (a.mask is None) == (variant in ("end_aligned", "block", "block16"))
    assert a.mask is None or torch.equal(a.mask, b.mask)
    assert not torch.equal(a.inputs, c.inputs)


# ------------------------------------------------------------------------------------------------
# Variable copy: an independent reimplementation, one sequence at a time
# ------------------------------------------------------------------------------------------------


def variable_copy_reference(data, d, T, variant):
    """(input symbols over T + 20 steps, {step: target class}) of one sequence."""
    blank, delim = 0, 9
    seq = [*data, *[blank] * (d - 1), delim, *[blank] * 10]  # the papers' sequence: d + 20 steps
    pad = [blank] * (T - d)
    symbols = pad + seq if variant == "end_aligned" else seq + pad
    first_output = (T - d if variant == "end_aligned" else 0) + d + 10
    return symbols, {first_output + i: data[i] - 1 for i in range(10)}


def test_variable_copy_reference_on_hand_written_cases():
    data = [3, 1, 4, 1, 5, 2, 6, 5, 3, 5]
    symbols, out = variable_copy_reference(data, 2, 4, "start_aligned")
    assert symbols == [3, 1, 4, 1, 5, 2, 6, 5, 3, 5, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert out == {12: 2, 13: 0, 14: 3, 15: 0, 16: 4, 17: 1, 18: 5, 19: 4, 20: 2, 21: 4}
    symbols, out = variable_copy_reference(data, 2, 4, "end_aligned")
    assert symbols == [0, 0, 3, 1, 4, 1, 5, 2, 6, 5, 3, 5, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert sorted(out) == list(range(14, 24))
    symbols, _ = variable_copy_reference(data, 4, 4, "end_aligned")  # d = T: the copy task
    assert symbols == [*data, 0, 0, 0, 9, *[0] * 10]


@pytest.mark.parametrize("variant", ["end_aligned", "start_aligned"])
@pytest.mark.parametrize("T", [1, 4, 30])
def test_variable_copy_layout(variant, T):
    task, B = VariableCopyTask(variant), 600
    batch = task.sample(T, B, gen(T))
    S = T + 20
    assert task.total_steps(T) == S and batch.inputs.shape[:2] == (S, B)
    r = task.readout_steps(T)
    assert (r.start, r.stop) == ((T + 10, S) if variant == "end_aligned" else (11, S))
    assert task.query_step(T) == T + 10 and task.lag_range(T) == (11, T + 10)
    sym = symbols_of(batch, 10)
    delays = []
    for b in range(B):
        col = sym[:, b].tolist()
        data = [s for s in col if 1 <= s <= 8]
        assert len(data) == 10 and col.count(9) == 1
        start = next(i for i, s in enumerate(col) if s != 0)
        d = col.index(9) - start - 9
        assert 1 <= d <= T
        delays.append(d)
        symbols, out = variable_copy_reference(data, d, T, variant)
        assert col == symbols
        targets = batch.targets[:, b].tolist()
        if batch.mask is None:
            assert {r.start + i: t for i, t in enumerate(targets)} == out
        else:
            counted = batch.mask[:, b].tolist()
            assert {r.start + i: t for i, (t, c) in enumerate(zip(targets, counted)) if c} == out
    assert set(delays) == set(range(1, T + 1)), "every delay 1 .. T occurs"
    freq = np.bincount(delays, minlength=T + 1)[1:] / B
    assert np.abs(freq - 1 / T).max() < 5 * math.sqrt((1 / T) * (1 - 1 / T) / B) + 1e-12


# ------------------------------------------------------------------------------------------------
# MQAR: an independent reimplementation of the answers, from the inputs
# ------------------------------------------------------------------------------------------------


def mqar_reference(symbols, n_pairs):
    """{step: value class} of one sequence: each key shown after the pairs, answered with the
    value paired with it (keys 0..31, values 32..63, blank 64)."""
    head = symbols[: 2 * n_pairs]
    pairs = dict(zip(head[0::2], head[1::2]))
    return {t: pairs[s] - 32 for t, s in enumerate(symbols) if t >= 2 * n_pairs and s != 64}


def test_mqar_reference_on_a_hand_written_case():
    #          k   v   k   v   blank  query  blank  query
    symbols = [5, 40, 7, 33, 64, 64, 7, 64, 5]
    assert mqar_reference(symbols, 2) == {6: 1, 8: 8}


@pytest.mark.parametrize("variant", ["block", "block16", "zoology"])
@pytest.mark.parametrize("T", [1, 6, 25])
def test_mqar_layout(variant, T):
    task, B = MQARTask(variant), 400
    N = 16 if variant == "block16" else 8
    assert task.n_pairs == N and (task.input_size, task.output_size) == (65, 32)
    batch = task.sample(T, B, gen(T))
    S = (4 if variant == "zoology" else 3) * N + T
    assert task.total_steps(T) == S and batch.inputs.shape[:2] == (S, B)
    r = task.readout_steps(T)
    assert r == (slice(2 * N, S) if variant == "zoology" else slice(2 * N + T, S))
    assert task.query_step(T) == r.start
    sym = symbols_of(batch, 65)
    for b in range(B):
        col = sym[:, b].tolist()
        keys, values = col[0 : 2 * N : 2], col[1 : 2 * N : 2]
        assert all(0 <= k < 32 for k in keys) and len(set(keys)) == N, "N distinct keys"
        assert all(32 <= v < 64 for v in values) and len(set(values)) == N, "N distinct values"
        queries = [s for s in col[2 * N :] if s != 64]
        assert sorted(queries) == sorted(keys), "every key queried exactly once"
        expected = mqar_reference(col, N)
        targets = batch.targets[:, b].tolist()
        if variant == "zoology":
            counted = batch.mask[:, b].tolist()
            got = {r.start + i: t for i, (t, c) in enumerate(zip(targets, counted)) if c}
            assert all((t - 2 * N) % 2 == 0 for t in expected), "queries two steps apart"
            # pair i's key in the i-th drawn slot: its query comes in the order of the draws
        else:
            got = {r.start + i: t for i, t in enumerate(targets)}
            assert sorted(got) == list(range(2 * N + T, 3 * N + T))
            assert all(s == 64 for s in col[2 * N : 2 * N + T]), "T blanks before the queries"
        assert got == expected
    # keys and values uniform over their 32 symbols
    for first in (0, 1):
        freq = torch.bincount(sym[first : 2 * N : 2].flatten() % 32, minlength=32).double()
        assert (freq / freq.sum() - 1 / 32).abs().max() < 0.02


def test_mqar_zoology_slots_follow_the_power_law():
    """Pair 1's key sits in slot g with probability w_g / W (w_g = (g + 1)^(a - 1), a = 0.01, the
    first of Zoology's successive draws without replacement); pair 2 in slot 0 with probability
    sum over g1 != 0 of (w_g1 / W) (w_0 / (W - w_g1))."""
    task, T, B = MQARTask("zoology"), 8, 40_000
    N, M = 8, 8 + 8 // 2
    batch = task.sample(T, B, gen(12))
    sym = batch.inputs.argmax(-1)
    w = (np.arange(1, M + 1, dtype=float)) ** (0.01 - 1)
    assert np.allclose(slot_weights(M).numpy(), w)
    W = w.sum()
    slot_of = []
    for pair in (0, 1):
        key = sym[2 * pair]  # (B,)
        region = sym[2 * N :]
        slot_of.append(((region == key).float().argmax(0) // 2).numpy())
    counts = np.bincount(slot_of[0], minlength=M)
    p = w / W
    chi2 = float(((counts - B * p) ** 2 / (B * p)).sum())
    assert chi2 < 40.0  # 11 degrees of freedom: P(chi2 > 40) ~ 4e-5
    p2 = sum(w[g] / W * w[0] / (W - w[g]) for g in range(1, M))
    freq2 = float((slot_of[1] == 0).mean())
    assert abs(freq2 - p2) < 5 * math.sqrt(p2 * (1 - p2) / B)


@pytest.mark.parametrize("variant,T", [("block", 3), ("block16", 2), ("zoology", 1)])
def test_mqar_lag_range_is_what_the_samples_show(variant, T):
    task = MQARTask(variant)
    N = task.n_pairs
    batch = task.sample(T, 20_000, gen(13))
    sym = batch.inputs.argmax(-1)
    lags = []
    for i in range(N):
        key = sym[2 * i]
        query = 2 * N + (sym[2 * N :] == key).float().argmax(0)
        lags.append(query - (2 * i + 1))  # from the pair's value to its query
    lags = torch.stack(lags)
    assert (lags.min().item(), lags.max().item()) == task.lag_range(T)


def test_variable_copy_lag_range_is_what_the_samples_show():
    for variant in ("end_aligned", "start_aligned"):
        task, T = VariableCopyTask(variant), 7
        sym = task.sample(T, 2000, gen(14)).inputs.argmax(-1)
        start = (sym != 0).float().argmax(0)
        first_output = (sym == 9).float().argmax(0) + 1
        lags = (first_output - start).tolist()
        assert (min(lags), max(lags)) == task.lag_range(T) == (11, 17)


# ------------------------------------------------------------------------------------------------
# Baselines: the best memoryless predictor's loss, sampled
# ------------------------------------------------------------------------------------------------


def sampled_memoryless_loss(task, T, n, groups=20):
    """Per readout position, the frequencies of the counted targets as log-probabilities (the best
    predictor that knows only the step); its masked loss, 5 standard errors plus the plug-in bias."""
    batch = task.sample(T, n, gen(T))
    y, mask = batch.targets, batch.mask
    if mask is None:
        mask = torch.ones_like(y, dtype=torch.bool)
    one_hot = F.one_hot(y, task.output_size).double() * mask.unsqueeze(-1)
    counts = one_hot.sum(1, keepdim=True)
    seen = counts.sum(-1, keepdim=True).clamp(min=1)
    logp = torch.where(counts > 0, (counts / seen).log(), torch.full_like(counts, -200.0))
    out = logp.expand(*y.shape, task.output_size)
    loss = task.loss(out, y, mask).item()
    parts = [task.loss(o, t, m).item()
             for o, t, m in zip(out.chunk(groups, 1), y.chunk(groups, 1), mask.chunk(groups, 1))]
    se = float(np.std(parts, ddof=1)) / math.sqrt(groups)
    # plug-in bias of the fitted frequencies: (K - 1) / 2 per position, over the counted targets
    bias = y.shape[0] * (task.output_size - 1) / (2 * int(mask.sum()))
    return loss, 5 * se + bias, task.accuracy(out, y, mask)


@pytest.mark.parametrize("name,variant", ALL)
@pytest.mark.parametrize("T", [5, 40])
def test_baseline_is_the_sampled_memoryless_loss(name, variant, T):
    task = make_task(name, variant)
    loss, tolerance, accuracy = sampled_memoryless_loss(task, T, 20_000)
    baseline = task.baseline_loss(T)
    assert baseline == pytest.approx(math.log(task.output_size), rel=1e-12)
    assert tolerance < 0.02 * baseline, "the sample is too small to check anything"
    assert abs(loss - baseline) < tolerance, (loss, baseline, tolerance)
    assert accuracy < 1.5 / task.output_size and not task.solved(baseline, accuracy)
    assert task.solved(0.0, 0.99) and not task.solved(0.0, 0.98)


# ------------------------------------------------------------------------------------------------
# Runs and probes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,variant", ALL)
def test_short_training_run(tmp_path, name, variant):
    cfg = RunConfig(task=name, variant=variant, seq_len=6, cell=CellConfig("gru", hidden=8),
                    batch_size=8, steps=3, eval_every=1, eval_size=16, test_size=16, seed=1,
                    probe_every=2, device="cpu")
    row, summary = execute_run(cfg, out=tmp_path, quiet=True)
    assert row["status"] == "ok" and row["task"] == name and row["variant"] == variant
    assert np.isfinite(float(row["final_loss"])) and 0 <= float(row["accuracy"]) <= 1
    assert float(row["baseline_loss"]) == pytest.approx(math.log(make_task(name).output_size))
    assert (tmp_path / "runs" / row["run_id"] / "grads.csv").exists()


@pytest.mark.parametrize("name,variant", ALL)
@pytest.mark.parametrize("impl", ["builtin", "hand"])
def test_gradient_probe_at_init(name, variant, impl):
    T = 6
    rows = measure_at_init(name, variant, T, CellConfig("lstm", impl, hidden=8), seed=0,
                           batch_size=16)
    task = make_task(name, variant)
    assert {r["query_step"] for r in rows} == {task.query_step(T)}
    lag0 = [r["grad_norm"] for r in rows if r["lag"] == 0]
    assert lag0 and all(np.isfinite(v) and v > 0 for v in lag0)
    assert max(r["lag"] for r in rows) == task.query_step(T)


def test_probe_counts_only_sequences_whose_query_step_counts():
    """variable_copy start_aligned at T = 40: only d >= 31 counts at t* = 50. The probe's curves
    equal those of the counted sequences probed alone."""
    task, T = make_task("variable_copy", "start_aligned"), 40
    batch = task.sample(T, 120, gen(15))
    model = build_model(task, CellConfig("rnn", "hand", hidden=8), 0, T)
    r = task.query_step(T) - task.readout_steps(T).start
    counted = batch.mask[r]
    assert 0 < counted.sum() < len(counted)
    sub = Batch(batch.inputs[:, counted], batch.targets[:, counted], batch.mask[:, counted])
    full, alone = probe(model, task, batch, T)[0], probe(model, task, sub, T)[0]
    np.testing.assert_allclose(full.grad_norm, alone.grad_norm, rtol=1e-6)
    np.testing.assert_allclose(full.grad_norm_median, alone.grad_norm_median, rtol=1e-6)
