"""The temporal order task (Hochreiter & Schmidhuber 1997, experiment 6) and the selective copy
task (Gu & Dao 2023): layouts on sampled batches checked against independent reimplementations
in this file, the windows and settings of the papers, lag ranges, seeding, registry.

The registry contract (docstring drawing, sampled baseline, solved criterion, run and grads) is
tests/test_task_registry.py's, which covers every registered task; here we check that both are
registered, so that it applies to them.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from seqbench.errors import ConfigError
from seqbench.tasks import make_task, registry, task_class
from seqbench.tasks.selective_copy import SelectiveCopyTask
from seqbench.tasks.temporal_order import TemporalOrderTask, windows

NEW = {"temporal_order": ("6a", "6b"), "selective_copy": ("mamba", "arjovsky")}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def symbols_of(batch, input_size):
    """The symbol index of every step, after checking the inputs are one-hot."""
    x = batch.inputs
    assert x.shape[-1] == input_size and x.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0} and (x.sum(-1) == 1).all(), "one-hot"
    return x.argmax(-1)  # (S, B)


# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_registered_with_the_class_variants(name):
    entry = registry()[name]
    assert entry.target.startswith("seqbench.tasks.")  # so tests/test_task_registry.py covers it
    assert entry.variants == NEW[name] == task_class(name).variants
    assert make_task(name).variant == NEW[name][0]


@pytest.mark.parametrize("name", NEW)
def test_unknown_variant_and_short_seq_len_are_config_errors(name):
    with pytest.raises(ConfigError, match="bogus"):
        make_task(name, "bogus")
    for variant in NEW[name]:
        task = make_task(name, variant)
        task.sample(task.min_seq_len(), 2, gen())
        with pytest.raises(ConfigError, match=f">= {task.min_seq_len()}"):
            task.sample(task.min_seq_len() - 1, 2, gen())


@pytest.mark.parametrize("name,variant", [(n, v) for n, vs in NEW.items() for v in vs])
def test_same_seed_same_batch_other_seed_other_batch(name, variant):
    task = make_task(name, variant)
    a, b, c = (task.sample(20, 16, gen(s)) for s in (7, 7, 8))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)


# ------------------------------------------------------------------------------------------------
# Temporal order
# ------------------------------------------------------------------------------------------------


def test_temporal_order_windows_are_the_papers_at_100_and_scale_with_T():
    # Hochreiter & Schmidhuber 1997, section 5, experiment 6 (length 100..110)
    assert windows("6a", 100) == [(10, 20), (50, 60)]
    assert windows("6b", 100) == [(10, 20), (33, 43), (66, 76)]
    assert windows("6a", 1000) == [(100, 200), (500, 600)]
    assert windows("6b", 50) == [(5, 10), (16, 21), (33, 38)]
    for variant in ("6a", "6b"):
        task = TemporalOrderTask(variant)
        for T in range(task.min_seq_len(), 400):
            w = windows(variant, T)
            assert w[0][0] >= 1 and w[-1][1] <= T - 2, "between the start and the end step"
            assert all(first <= last for first, last in w)
            assert all(a[1] < b[0] for a, b in zip(w, w[1:])), "ordered and disjoint"
        with pytest.raises(ConfigError):
            task.check_seq_len(task.min_seq_len() - 1)


def _temporal_order_reference(sym, variant):
    """Positions of the marked symbols and the class, recomputed from the symbols alone."""
    marked = (sym == 4) | (sym == 5)  # X or Y
    n = 2 if variant == "6a" else 3
    assert (marked.sum(0) == n).all()
    pos = marked.t().nonzero()[:, 1].view(-1, n)  # (B, n), increasing
    xy = torch.gather(sym.t(), 1, pos) - 4  # 0 = X, 1 = Y
    label = sum(xy[:, i] * 2 ** (n - 1 - i) for i in range(n))
    return pos, label


@pytest.mark.parametrize("variant", ["6a", "6b"])
@pytest.mark.parametrize("T", [5, 12, 100])
def test_temporal_order_layout(variant, T):
    task, B = TemporalOrderTask(variant), 3000
    batch = task.sample(T, B, gen(T))
    n = 2 if variant == "6a" else 3
    assert task.input_size == 8 and task.output_size == 2**n
    assert task.total_steps(T) == T and batch.inputs.shape[:2] == (T, B)
    r = task.readout_steps(T)
    assert (r.start, r.stop) == (T - 1, T) and task.query_step(T) == T - 1
    assert batch.targets.shape == (1, B) and batch.targets.dtype == torch.int64
    sym = symbols_of(batch, 8)
    assert (sym[0] == 6).all() and (sym[T - 1] == 7).all(), "B first, E last"
    assert ((sym[1 : T - 1] >= 0) & (sym[1 : T - 1] <= 5)).all(), "B and E nowhere else"
    pos, label = _temporal_order_reference(sym, variant)
    assert torch.equal(batch.targets[0], label)
    for i, (first, last) in enumerate(windows(variant, T)):
        assert ((pos[:, i] >= first) & (pos[:, i] <= last)).all(), f"t{i + 1} in its window"
        assert set(pos[:, i].tolist()) == set(range(first, last + 1)), "the whole window is used"
    # the classes are uniform (what the ln 4 / ln 8 baseline rests on): 5 standard errors
    freq = torch.bincount(label, minlength=2**n).double() / B
    p = 1 / 2**n
    assert (freq - p).abs().max() < 5 * math.sqrt(p * (1 - p) / B)
    if T >= 12:  # distractors: all four, roughly uniform
        distract = sym[1 : T - 1][sym[1 : T - 1] < 4]
        counts = torch.bincount(distract, minlength=4).double() / distract.numel()
        assert (counts - 0.25).abs().max() < 0.02


@pytest.mark.parametrize("variant", ["6a", "6b"])
@pytest.mark.parametrize("T", [12, 100])
def test_temporal_order_lag_range_is_what_the_samples_show(variant, T):
    task = TemporalOrderTask(variant)
    sym = task.sample(T, 4000, gen(1)).inputs.argmax(-1)
    pos, _ = _temporal_order_reference(sym, variant)
    lags = (T - 1 - pos[:, 0]).tolist()
    assert (min(lags), max(lags)) == task.lag_range(T)
    assert TemporalOrderTask(variant).lag_range(100) == (79, 89)


def test_temporal_order_baseline_accuracy_and_solved():
    for variant, k in (("6a", 4), ("6b", 8)):
        task = TemporalOrderTask(variant)
        assert task.baseline_loss(50) == pytest.approx(math.log(k), rel=1e-12)
        y = task.sample(30, 64, gen(2)).targets
        uniform = torch.zeros(1, 64, k, dtype=torch.float64)
        assert task.loss(uniform, y).item() == pytest.approx(math.log(k), rel=1e-12)
        assert task.accuracy(F.one_hot(y, k).float(), y) == 1.0
    task = TemporalOrderTask()
    y = torch.tensor([[0, 1, 2, 3]])
    assert task.accuracy(F.one_hot(torch.tensor([[0, 1, 3, 3]]), 4).float(), y) == 0.75
    assert task.solved(float("nan"), 0.99) and not task.solved(0.0, 0.98)


# ------------------------------------------------------------------------------------------------
# Selective copy
# ------------------------------------------------------------------------------------------------


def test_selective_copy_settings():
    mamba = SelectiveCopyTask("mamba")  # Gu & Dao 2023, appendix E.1: 16 tokens incl. noise, 16 data
    assert (mamba.n_symbols, mamba.n_copy) == (15, 16)
    assert (mamba.input_size, mamba.output_size) == (17, 15)
    small = SelectiveCopyTask("arjovsky")  # the copy task's alphabet and length
    assert (small.n_symbols, small.n_copy) == (8, 10)
    assert (small.input_size, small.output_size) == (10, 8)


@pytest.mark.parametrize("variant", ["mamba", "arjovsky"])
@pytest.mark.parametrize("T", [1, 5, 40])
def test_selective_copy_layout(variant, T):
    task, B = SelectiveCopyTask(variant), 2000
    V, K = task.n_symbols, task.n_copy
    noise, delim = V, V + 1
    batch = task.sample(T, B, gen(T))
    S = T + 2 * K + 1
    assert task.total_steps(T) == S and batch.inputs.shape[:2] == (S, B)
    r = task.readout_steps(T)
    assert (r.start, r.stop) == (T + K + 1, S) and task.query_step(T) == T + K + 1
    assert batch.targets.shape == (K, B) and batch.targets.dtype == torch.int64
    sym = symbols_of(batch, V + 2)
    region = sym[: T + K]
    is_data = region < V
    assert (is_data.sum(0) == K).all(), "K data tokens among T noise tokens"
    assert (region[~is_data] == noise).all(), "noise elsewhere, no early delimiter"
    assert (sym[T + K] == delim).all(), "the delimiter right after the input region"
    assert (sym[T + K + 1 :] == noise).all(), "noise while the model answers"
    # reference: the data tokens of each sequence, read off in order, are its targets
    for b in range(0, B, 97):
        col = region[:, b]
        assert torch.equal(batch.targets[:, b], col[col < V])
    assert ((batch.targets >= 0) & (batch.targets < V)).all()
    # positions: each step of the region holds data with probability K / (T + K)
    occupancy = is_data.double().mean(1)
    p = K / (T + K)
    assert (occupancy - p).abs().max() < 5 * math.sqrt(p * (1 - p) / B) + 1e-12
    # symbols uniform over the V data symbols
    freq = torch.bincount(batch.targets.flatten(), minlength=V).double() / batch.targets.numel()
    assert (freq - 1 / V).abs().max() < 0.01


@pytest.mark.parametrize("variant,T", [("arjovsky", 2), ("mamba", 1), ("arjovsky", 1)])
def test_selective_copy_lag_range_is_what_the_samples_show(variant, T):
    """Extremes need the first token at step 0 and at step T (all tokens last): small T."""
    task = SelectiveCopyTask(variant)
    batch = task.sample(T, 20_000, gen(3))
    first = (batch.inputs.argmax(-1)[: T + task.n_copy] < task.n_symbols).float().argmax(0)
    lags = (task.query_step(T) - first).tolist()
    assert (min(lags), max(lags)) == task.lag_range(T) == (task.n_copy + 1, T + task.n_copy + 1)
    assert SelectiveCopyTask("mamba").lag_range(100) == (17, 117)


def test_selective_copy_positions_are_uniform_subsets():
    """All C(4, 2) = 6 placements of K = 2 tokens in a 4-step region are equally likely (chi-square,
    5 degrees of freedom), with a two-token variant built for the test."""

    class Two(SelectiveCopyTask):
        SETTINGS = {"mamba": (3, 2), "arjovsky": (3, 2)}

    task, n = Two(), 30_000
    sym = task.sample(2, n, gen(4)).inputs.argmax(-1)[:4]
    pos = (sym < 3).t().nonzero()[:, 1].view(-1, 2)
    counts = torch.bincount(pos[:, 0] * 4 + pos[:, 1], minlength=16).double()
    pairs = [a * 4 + b for a in range(4) for b in range(a + 1, 4)]
    assert counts.sum() == counts[pairs].sum()
    chi2 = ((counts[pairs] - n / 6) ** 2 / (n / 6)).sum().item()
    assert chi2 < 25.0  # P(chi2_5 > 25) ~ 1e-4


def test_selective_copy_baseline_accuracy_and_solved():
    for variant in ("mamba", "arjovsky"):
        task = SelectiveCopyTask(variant)
        V, K = task.n_symbols, task.n_copy
        assert task.baseline_loss(10) == pytest.approx(math.log(V), rel=1e-12)
        y = task.sample(10, 64, gen(5)).targets
        uniform = torch.zeros(K, 64, V, dtype=torch.float64)
        assert task.loss(uniform, y).item() == pytest.approx(math.log(V), rel=1e-12)
        perfect = F.one_hot(y, V).float()
        assert task.accuracy(perfect, y) == 1.0
        wrong_one = perfect.clone()
        wrong_one[0] = F.one_hot((y[0] + 1) % V, V).float()  # first output step wrong everywhere
        assert task.accuracy(wrong_one, y) == pytest.approx((K - 1) / K)
    task = SelectiveCopyTask()
    assert task.solved(float("nan"), 0.99) and not task.solved(0.0, 0.98)
