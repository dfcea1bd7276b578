"""Task generators: layouts, marker placement, targets, analytic baselines, seeding, accuracy.

Conventions checked against docs/references.md section 1 (Hochreiter 1997; Le 2015; Arjovsky 2016;
Bai 2018) and the task docstrings in seqbench/tasks/.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from seqbench import seeding
from seqbench.errors import ConfigError
from seqbench.tasks import AddingTask, CopyTask, DelayedRecallTask, make_task, task_class
from seqbench.tasks.registry import BUILTIN_TASKS

#: the synthetic tasks (mnist, backed by a dataset, is tested on generated files: test_mnist.py)
TASKS = {e.name: task_class(e.name) for e in BUILTIN_TASKS
         if not getattr(task_class(e.name), "held_out", False)}
ALL = [(name, variant) for name, cls in TASKS.items() for variant in cls.variants]




def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------
# Shapes, dtypes, layout bookkeeping
# ------------------------------------------------------------------------------------------------

#: (input channels, target dtype, total steps, readout steps, query step) as functions of T
EXPECTED = {
    ("adding", "halves"): (2, torch.float32, lambda T: T, lambda T: (T - 1, T), lambda T: T - 1),
    ("adding", "anywhere"): (2, torch.float32, lambda T: T, lambda T: (T - 1, T), lambda T: T - 1),
    ("copy", "arjovsky"): (10, torch.int64, lambda T: T + 20, lambda T: (0, T + 20), lambda T: T + 10),
    ("copy", "tcn"): (1, torch.int64, lambda T: T + 20, lambda T: (0, T + 20), lambda T: T + 10),
    ("delayed_recall", "noisy"): (10, torch.int64, lambda T: T + 1, lambda T: (T, T + 1), lambda T: T),
    ("delayed_recall", "blank"): (10, torch.int64, lambda T: T + 1, lambda T: (T, T + 1), lambda T: T),
    ("temporal_order", "6a"): (8, torch.int64, lambda T: T, lambda T: (T - 1, T), lambda T: T - 1),
    ("temporal_order", "6b"): (8, torch.int64, lambda T: T, lambda T: (T - 1, T), lambda T: T - 1),
    ("selective_copy", "mamba"):
        (17, torch.int64, lambda T: T + 33, lambda T: (T + 17, T + 33), lambda T: T + 17),
    ("selective_copy", "arjovsky"):
        (10, torch.int64, lambda T: T + 21, lambda T: (T + 11, T + 21), lambda T: T + 11),
    ("variable_copy", "end_aligned"):
        (10, torch.int64, lambda T: T + 20, lambda T: (T + 10, T + 20), lambda T: T + 10),
    ("variable_copy", "start_aligned"):
        (10, torch.int64, lambda T: T + 20, lambda T: (11, T + 20), lambda T: T + 10),
    ("mqar", "block"): (65, torch.int64, lambda T: T + 24, lambda T: (T + 16, T + 24), lambda T: T + 16),
    ("mqar", "block16"):
        (65, torch.int64, lambda T: T + 48, lambda T: (T + 32, T + 48), lambda T: T + 32),
    ("mqar", "zoology"): (65, torch.int64, lambda T: T + 32, lambda T: (16, T + 32), lambda T: 16),
}


def test_expected_covers_every_task_and_variant():
    assert set(EXPECTED) == set(ALL)


@pytest.mark.parametrize("name,variant", ALL)
@pytest.mark.parametrize("T", [2, 3, 17, 50])
def test_shapes_dtypes_and_steps(name, variant, T):
    task = make_task(name, variant)
    if T < task.min_seq_len():  # temporal order needs room for its marked symbols
        pytest.skip(f"{name}/{variant} needs T >= {task.min_seq_len()}")
    channels, target_dtype, total, readout, query = EXPECTED[(name, variant)]
    B = 5
    batch = task.sample(T, B, gen(T))
    assert task.input_size == channels
    assert task.total_steps(T) == total(T)
    r = task.readout_steps(T)
    assert (r.start, r.stop) == readout(T) and r.step is None
    assert task.query_step(T) == query(T)
    assert r.start <= task.query_step(T) < r.stop
    assert batch.inputs.shape == (total(T), B, channels)
    assert batch.inputs.dtype == torch.float32
    assert batch.targets.shape == (r.stop - r.start, B)
    assert batch.targets.dtype == target_dtype
    assert torch.isfinite(batch.inputs).all()


def test_default_variants():
    assert make_task("adding").variant == "halves"
    assert make_task("copy").variant == "arjovsky"
    assert make_task("delayed_recall").variant == "noisy"


# ------------------------------------------------------------------------------------------------
# Adding problem
# ------------------------------------------------------------------------------------------------


def _markers(batch):
    marker = batch.inputs[..., 1]  # (T, B)
    assert set(marker.unique().tolist()) <= {0.0, 1.0}
    assert (marker.sum(0) == 2).all(), "exactly two markers per sequence"
    pos = marker.t().nonzero()  # rows (b, t), sorted by b then t
    return pos[:, 1].view(-1, 2)  # (B, 2): first and second marked step


@pytest.mark.parametrize("T", [2, 3, 10, 11, 101])
def test_adding_halves_one_marker_in_each_half(T):
    batch = AddingTask("halves").sample(T, 2000, gen(T))
    pos = _markers(batch)
    half = T // 2
    assert ((pos[:, 0] >= 0) & (pos[:, 0] < half)).all()
    assert ((pos[:, 1] >= half) & (pos[:, 1] < T)).all()
    if T >= 10:  # every step of each half gets used over many samples
        assert set(pos[:, 0].tolist()) == set(range(half))
        assert set(pos[:, 1].tolist()) == set(range(half, T))


@pytest.mark.parametrize("T", [2, 3, 10, 11])
def test_adding_anywhere_two_distinct_positions_in_both_configurations(T):
    batch = AddingTask("anywhere").sample(T, 4000, gen(T))
    pos = _markers(batch)  # distinct by construction of _markers (sum == 2 with 0/1 entries)
    assert (pos[:, 0] < pos[:, 1]).all()
    half = T // 2
    crossing = (pos[:, 0] < half) & (pos[:, 1] >= half)
    assert crossing.any(), "some pairs straddle the middle"
    if T >= 4:
        assert (~crossing).any(), "some pairs lie in the same half (not 'halves' in disguise)"
        assert set(pos.flatten().tolist()) == set(range(T))


def test_adding_anywhere_pair_distribution_is_uniform():
    """All T(T-1)/2 unordered pairs are equally likely (chi-square, 5 degrees of freedom for T=4)."""
    T, n = 4, 60_000
    pos = _markers(AddingTask("anywhere").sample(T, n, gen(7)))
    code = pos[:, 0] * T + pos[:, 1]
    counts = torch.bincount(code, minlength=T * T).double()
    pairs = [a * T + b for a in range(T) for b in range(a + 1, T)]
    assert counts.sum() == counts[pairs].sum()
    expected = n / len(pairs)
    chi2 = ((counts[pairs] - expected) ** 2 / expected).sum().item()
    assert chi2 < 25.0  # P(chi2_5 > 25) ~ 1e-4; a biased placement gives thousands


@pytest.mark.parametrize("variant", AddingTask.variants)
def test_adding_values_and_target_is_sum_of_marked_values(variant):
    T, B = 30, 500
    batch = AddingTask(variant).sample(T, B, gen(3))
    values, marker = batch.inputs[..., 0], batch.inputs[..., 1]
    assert (values >= 0).all() and (values < 1).all()
    assert 0.45 < values.mean().item() < 0.55
    expected = (values * marker).sum(0)
    torch.testing.assert_close(batch.targets[0], expected, rtol=0, atol=1e-6)
    assert batch.targets.shape == (1, B)


@pytest.mark.parametrize("variant", AddingTask.variants)
def test_adding_baseline_matches_sampled_memoryless_mse(variant):
    """Predicting 1.0 always: sampled MSE over 200k sequences vs the analytic 1/6.

    The per-sequence squared error (x1 + x2 - 1)^2 has variance E[S^4] - E[S^2]^2 = 1/15 - 1/36 =
    7/180 (S is triangular on [-1, 1]), so the mean of n = 200k has standard error
    sqrt(7/180/n) = 4.4e-4; the tolerance 2.2e-3 is 5 standard errors, while the often-quoted 0.1767
    would be 23 standard errors away.
    """
    task = AddingTask(variant)
    n, T = 200_000, 8
    batch = task.sample(T, n, gen(11))
    outputs = torch.ones(1, n, 1)
    sampled = task.loss(outputs, batch.targets).item()
    assert task.baseline_loss(T) == pytest.approx(1 / 6, abs=1e-15)
    se = math.sqrt(7 / 180 / n)
    assert abs(sampled - task.baseline_loss(T)) < 5 * se
    assert abs(sampled - 0.1767) > 10 * se
    # and 1.0 is the best constant: the sampled mean of the target is 1 within 5 standard errors
    assert abs(batch.targets.mean().item() - 1.0) < 5 * math.sqrt(1 / 6 / n)


def test_adding_accuracy_threshold():
    task = AddingTask()
    targets = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    outputs = torch.tensor([1.039, 0.961, 1.041, 0.95]).view(1, 4, 1)
    assert task.accuracy(outputs, targets) == pytest.approx(0.5)
    assert task.accuracy(targets.unsqueeze(-1), targets) == 1.0


def test_adding_solved_is_mse_below_001():
    task = AddingTask()
    assert task.solved(0.0099, 0.0)
    assert not task.solved(0.0101, 1.0)


# ------------------------------------------------------------------------------------------------
# Copy memory
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 25])
def test_copy_arjovsky_layout(T):
    task = CopyTask("arjovsky")
    B = 64
    batch = task.sample(T, B, gen(T))
    x, y = batch.inputs, batch.targets
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert (x.sum(-1) == 1).all(), "one-hot"
    sym = x.argmax(-1)  # (T + 20, B)
    data = sym[:10]
    assert ((data >= 1) & (data <= 8)).all()
    assert (sym[10 : T + 9] == 0).all(), "T - 1 blanks"
    assert (sym[T + 9] == 9).all(), "delimiter at T + 9"
    assert (sym[T + 10 :] == 0).all(), "ten blanks after the delimiter"
    assert (y[: T + 10] == 0).all(), "blank target for T + 10 steps"
    assert torch.equal(y[T + 10 :], data), "then the ten data symbols in order"
    assert y.shape == (T + 20, B)


def test_copy_data_symbols_are_uniform_with_replacement():
    batch = CopyTask().sample(5, 4000, gen(1))
    data = batch.inputs[:10].argmax(-1)
    counts = torch.bincount(data.flatten(), minlength=10)
    assert counts[0] == 0 and counts[9] == 0
    assert (counts[1:9] > 0.9 * 5000).all() and (counts[1:9] < 1.1 * 5000).all()
    # with replacement: repeated symbols inside one sequence are common (10 draws from 8)
    assert all(len(set(col.tolist())) < 10 for col in data.t()[:20])


@pytest.mark.parametrize("T", [1, 25])
def test_copy_tcn_layout(T):
    task = CopyTask("tcn")
    batch = task.sample(T, 64, gen(T))
    x, y = batch.inputs, batch.targets
    assert x.shape[-1] == 1
    sym = x[..., 0]
    data = sym[:10]
    assert ((data >= 1) & (data <= 8)).all() and torch.equal(data, data.round())
    assert (sym[10 : T + 9] == 0).all()
    assert (sym[T + 9 :] == 9).all(), "delimiter repeated over the last 11 steps"
    assert sym[T + 9 :].shape[0] == 11
    assert (y[: T + 10] == 0).all()
    assert torch.equal(y[T + 10 :].float(), data)


@pytest.mark.parametrize("T", [1, 10, 100, 1000])
def test_copy_baseline_equals_memoryless_predictor_loss(T):
    """Certain blank before T + 10, uniform over the 8 symbols after: 10 ln 8 / (T + 20)."""
    for variant in CopyTask.variants:
        task = CopyTask(variant)
        batch = task.sample(T, 16, gen(T))
        S, B = batch.targets.shape
        logits = torch.zeros(S, B, 9, dtype=torch.float64)
        logits[: T + 10, :, 0] = 200.0  # exp(-200) vanishes against 1 in float64
        logits[T + 10 :, :, 0] = -200.0  # blank impossible, the 8 symbols equally likely
        loss = task.loss(logits, batch.targets).item()
        assert task.baseline_loss(T) == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-12)
        assert loss == pytest.approx(task.baseline_loss(T), rel=1e-9)
    # the published table values (docs/references.md section 2)
    published = {100: 0.1733, 1000: 0.0204}
    if T in published:
        assert task.baseline_loss(T) == pytest.approx(published[T], abs=1e-4)


def test_copy_recall_targets_are_uniform_so_no_memoryless_predictor_beats_ln8():
    """Sampled entropy of the recall targets (the loss of the best marginal predictor) ~ ln 8."""
    y = CopyTask().sample(3, 20_000, gen(5)).targets[-10:]
    p = torch.bincount(y.flatten(), minlength=9)[1:].double()
    p /= p.sum()
    entropy = -(p * p.log()).sum().item()
    assert entropy == pytest.approx(math.log(8), abs=2e-3)


def test_copy_accuracy_is_over_recall_positions_only():
    task = CopyTask()
    T, B = 50, 256
    batch = task.sample(T, B, gen(2))
    y = batch.targets
    blank_everywhere = F.one_hot(torch.zeros_like(y), 9).float()
    # all-position accuracy of this do-nothing model would be (T + 10) / (T + 20) = 0.86
    assert task.accuracy(blank_everywhere, y) == 0.0
    perfect = F.one_hot(y, 9).float()
    assert task.accuracy(perfect, y) == 1.0
    # perfect on the recall positions, wrong everywhere else: still 1
    wrong_elsewhere = perfect.clone()
    wrong_elsewhere[: T + 10] = F.one_hot(torch.full_like(y[: T + 10], 5), 9).float()
    assert task.accuracy(wrong_elsewhere, y) == 1.0
    # random symbols at recall: chance, 1/8
    guess = torch.randint(1, 9, y.shape, generator=gen(9))
    acc = task.accuracy(F.one_hot(guess, 9).float(), y)
    assert acc == pytest.approx(1 / 8, abs=0.03)


# ------------------------------------------------------------------------------------------------
# Delayed recall
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", DelayedRecallTask.variants)
@pytest.mark.parametrize("T", [1, 2, 30])
def test_delayed_recall_layout(variant, T):
    task = DelayedRecallTask(variant)
    B = 512
    batch = task.sample(T, B, gen(T))
    x, y = batch.inputs, batch.targets
    assert (x.sum(-1) == 1).all() and set(x.unique().tolist()) == {0.0, 1.0}
    sym = x.argmax(-1)  # (T + 1, B)
    assert ((sym[0] >= 0) & (sym[0] < 8)).all(), "step 0 shows a data symbol"
    assert (sym[T] == 9).all(), "cue at step T"
    assert torch.equal(y, sym[0:1]), "target is the step-0 symbol"
    middle = sym[1:T]
    if variant == "blank":
        assert (middle == 8).all()
    else:
        assert ((middle >= 0) & (middle < 8)).all()
        if T >= 30:
            assert len(middle.unique()) == 8, "distractors are random data symbols"
    if T >= 2:
        assert (sym[:T] != 9).all(), "the cue appears only at step T"


def test_delayed_recall_noisy_distractors_are_independent_of_the_target():
    """Otherwise a memoryless model could read the answer off the last distractor."""
    batch = DelayedRecallTask("noisy").sample(5, 20_000, gen(4))
    sym = batch.inputs.argmax(-1)
    agree = (sym[4] == batch.targets[0]).float().mean().item()
    assert agree == pytest.approx(1 / 8, abs=0.015)


def test_delayed_recall_baseline():
    task = DelayedRecallTask()
    for T in (1, 10, 200):
        y = task.sample(T, 64, gen(T)).targets
        uniform = torch.zeros(1, 64, 8, dtype=torch.float64)
        assert task.loss(uniform, y).item() == pytest.approx(math.log(8), rel=1e-12)
        assert task.baseline_loss(T) == pytest.approx(math.log(8), rel=1e-12)
    y = task.sample(3, 20_000, gen(6)).targets
    p = torch.bincount(y.flatten(), minlength=8).double() / y.numel()
    assert -(p * p.log()).sum().item() == pytest.approx(math.log(8), abs=2e-3)


def test_delayed_recall_accuracy():
    task = DelayedRecallTask()
    y = torch.tensor([[0, 3, 7, 7]])
    logits = F.one_hot(torch.tensor([[0, 3, 1, 2]]), 8).float()
    assert task.accuracy(logits, y) == 0.5
    assert task.solved(float("nan"), 0.99) and not task.solved(0.0, 0.98)


# ------------------------------------------------------------------------------------------------
# Reproducibility and seed streams
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,variant", ALL)
def test_same_generator_seed_gives_identical_batches(name, variant):
    task = make_task(name, variant)
    a = task.sample(20, 8, gen(42))
    b = task.sample(20, 8, gen(42))
    c = task.sample(20, 8, gen(43))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)


def test_seed_streams_differ_and_are_reproducible():
    task = AddingTask()
    train = task.sample(20, 8, seeding.generator(0, "train"))
    again = task.sample(20, 8, seeding.generator(0, "train"))
    evalb = task.sample(20, 8, seeding.generator(0, "eval"))
    other_seed = task.sample(20, 8, seeding.generator(1, "train"))
    assert torch.equal(train.inputs, again.inputs)
    assert not torch.equal(train.inputs, evalb.inputs)
    assert not torch.equal(train.inputs, other_seed.inputs)
    seeds = {seeding.derive_seed(s, stream) for s in range(20) for stream in seeding.STREAMS}
    assert len(seeds) == 20 * len(seeding.STREAMS)
    assert all(0 <= s < 2**63 for s in seeds)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


def test_unknown_task_names_the_allowed_ones():
    with pytest.raises(ConfigError) as e:
        make_task("adder")
    msg = str(e.value)
    assert "adder" in msg
    for name in ("adding", "copy", "delayed_recall"):
        assert name in msg


@pytest.mark.parametrize("name", list(TASKS))
def test_unknown_variant_names_the_allowed_ones(name):
    with pytest.raises(ConfigError) as e:
        make_task(name, "bogus")
    msg = str(e.value)
    assert "bogus" in msg
    for variant in TASKS[name].variants:
        assert variant in msg


def test_variant_of_another_task_is_rejected():
    with pytest.raises(ConfigError):
        make_task("copy", "halves")
    with pytest.raises(ConfigError):
        make_task("adding", "tcn")


@pytest.mark.parametrize("name,minimum", [("adding", 2), ("copy", 1), ("delayed_recall", 1),
                                          ("temporal_order", 4), ("selective_copy", 1)])
def test_seq_len_below_minimum_is_rejected(name, minimum):
    task = make_task(name)
    task.sample(minimum, 2, gen())
    for bad in (minimum - 1, -5):
        with pytest.raises(ConfigError, match=f">= {minimum}"):
            task.sample(bad, 2, gen())
        with pytest.raises(ConfigError):
            task.check_seq_len(bad)
    with pytest.raises(ConfigError):
        task.check_seq_len(10.0)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# -- what --seq-len means: the lag range of each task ------------------------------------------------


def _sampled_lags(task, T, n=4000):
    """The lag of the input remembered longest, read off sampled sequences."""
    batch = task.sample(T, n, torch.Generator().manual_seed(0))
    if task.name == "adding":  # the first marker, read at the last step
        first = batch.inputs[:, :, 1].argmax(0)  # argmax returns the first maximum
        return (batch.inputs.shape[0] - 1 - first).tolist()
    if task.name == "copy":  # the first symbol (step 0) until its first non-blank target
        return (batch.targets != task.BLANK).float().argmax(0).tolist()
    return batch.inputs[:, :, task.CUE].argmax(0).tolist()  # step 0 until the cue


@pytest.mark.parametrize("name,variant", [("adding", "halves"), ("adding", "anywhere"),
                                          ("copy", "arjovsky"), ("delayed_recall", "noisy")])
@pytest.mark.parametrize("T", [10, 25])
def test_lag_range_is_what_the_samples_show(name, variant, T):
    task = make_task(name, variant)
    lags = _sampled_lags(task, T)
    lo, hi = task.lag_range(T)
    assert min(lags) == lo and max(lags) == hi


def test_lag_range_values_stated_in_the_readme():
    assert make_task("adding", "halves").lag_range(100) == (50, 99)
    assert make_task("adding", "halves").lag_range(25) == (13, 24)
    assert make_task("adding", "anywhere").lag_range(600) == (1, 599)
    assert make_task("copy").lag_range(100) == (110, 110)
    assert make_task("delayed_recall").lag_range(100) == (100, 100)
