"""The task registry's contract, for every registered task: what a new task gets without code.

A new task is one module of seqbench/tasks/ and one registry line; these tests then hold it to the
interface (seqbench.tasks.base.Task): a docstring that draws its layout, a solved criterion that
a perfect prediction meets and the memoryless baseline does not, a baseline_loss equal to the
sampled loss of the best memoryless predictor, and runs through ``seqbench run`` and
``seqbench grads``. Also: the registry is torch-free, ``--help`` lists the tasks, an unknown task
is a one-line error, and a Task subclass outside seqbench runs as ``--task package.module:Class``.
"""

from __future__ import annotations

import contextlib
import csv
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from seqbench.cli import cli
from seqbench.errors import ConfigError
from seqbench.tasks import Task, make_task, registry, task_class, task_names
from seqbench.tasks.base import masked_call

#: seqbench's synthetic tasks (those backed by a dataset, like mnist, are tested on generated
#: files in tests/test_mnist.py)
TASKS = [e.name for e in registry().values() if e.target.startswith("seqbench.")
         and not getattr(task_class(e.name), "held_out", False)]
VARIANTS = [(e.name, v) for e in registry().values() if e.name in TASKS for v in e.variants]
#: a run small enough for a test
TINY = ["--seq-len", "6", "--hidden", "6", "--steps", "2", "--eval-every", "1", "--eval-size", "8",
        "--test-size", "8", "--batch-size", "4", "-q"]


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def invoke(*args, **kwargs):
    """``seqbench <args>`` in this process (paths may be Path objects)."""
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def test_registry_imports_without_torch():
    """Help, specs and leaderboards read the task registry without loading torch."""
    code = ("import sys, seqbench.leaderboard, seqbench.tasks, seqbench.cli.options; "
            "from seqbench.tasks import task_names, check_task_name; "
            "[check_task_name(n) for n in task_names()]; "
            "from seqbench.cli.options import task_help, variant_help; task_help(); variant_help(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the interface -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TASKS)
def test_every_task_keeps_the_interface(name):
    cls, entry = task_class(name), registry()[name]
    assert issubclass(cls, Task) and cls.name == name
    # the registry repeats the variants so that help can list them without torch: they must agree
    assert entry.variants == cls.variants and entry.summary
    assert sys.modules[cls.__module__].__doc__
    T = 7
    task = make_task(name)
    assert task.variant == cls.variants[0]
    readout = task.readout_steps(T)
    assert 0 <= readout.start <= task.query_step(T) < readout.stop <= task.total_steps(T)
    lo, hi = task.lag_range(T)
    assert 1 <= lo <= hi < task.total_steps(T)


@pytest.mark.parametrize("name", TASKS)
def test_every_task_docstring_draws_its_layout(name):
    """A multi-line docstring with an indented drawing whose first row numbers the steps."""
    doc = task_class(name).__doc__ or ""
    lines = doc.splitlines()
    assert len(lines) >= 5, "a one-line docstring draws nothing"
    drawing = [i for i, line in enumerate(lines) if re.match(r"^ {8,}step\b", line)]
    assert drawing, f"{name}: no drawing of the layout (an indented row starting with 'step')"
    assert lines[drawing[0] + 1].startswith(" " * 8), "the drawing has rows under the steps"


# -- the memoryless baseline ---------------------------------------------------------------------
def memoryless_outputs(task: Task, targets: torch.Tensor, mask: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """The best predictor without memory of the input, fitted to sampled targets (R, B).

    It may know the position (a memoryless predictor knows the clock: copy's is blank until the
    delimiter) but nothing of the inputs, so at each readout position it predicts one thing for
    every sequence: the mean target there (regression: the constant of least MSE) or the target
    frequencies there as log-probabilities (classification: the distribution of least
    cross-entropy). Returns outputs (R, B, output_size) in float64 for ``task.loss``. With a
    batch's ``mask``, fitted to the counted targets of each position only.
    """
    R, B = targets.shape
    if task.kind == "regression":
        return targets.double().mean(1, keepdim=True).unsqueeze(-1).expand(R, B, 1)
    one_hot = F.one_hot(targets, task.output_size).double()
    if mask is not None:
        one_hot = one_hot * mask.unsqueeze(-1)
    counts = one_hot.sum(1, keepdim=True)  # (R, 1, K)
    seen = counts.sum(-1, keepdim=True).clamp(min=1)  # counted sequences at each position
    # a class never seen at a position gets log-probability -200: exp(-200) vanishes against 1 in
    # float64, as log 0 would, without the -inf that cross-entropy would turn into NaN
    logp = torch.where(counts > 0, (counts / seen).log(), torch.full_like(counts, -200.0))
    return logp.expand(R, B, task.output_size)


def sampled_baseline(task: Task, seq_len: int, n: int, groups: int = 20):
    """The sampled loss of the memoryless predictor over ``n`` sequences, its tolerance and
    the predictor's accuracy.

    The standard error comes from ``groups`` batch means of ``task.loss`` (any loss, also one a
    task defines itself, with no formula of its own); the tolerance is 5 standard errors plus the
    plug-in bias of fitting the predictor on the same sample, below output_size / n (the sample
    entropy of K classes is low by about (K - 1) / 2n; the sample variance by Var / n < 1 / n here).
    """
    batch = task.sample(seq_len, n, torch.Generator().manual_seed(seq_len))
    targets = batch.targets.double() if task.kind == "regression" else batch.targets
    outputs = memoryless_outputs(task, targets, batch.mask)
    masks = [None] * groups if batch.mask is None else batch.mask.chunk(groups, 1)
    loss = masked_call(task.loss, outputs, targets, batch.mask).item()
    parts = [masked_call(task.loss, o, t, m).item()
             for o, t, m in zip(outputs.chunk(groups, 1), targets.chunk(groups, 1), masks)]
    se = float(np.std(parts, ddof=1)) / math.sqrt(groups)
    return (loss, 5 * se + task.output_size / n,
            masked_call(task.accuracy, outputs, targets, batch.mask))


@pytest.mark.parametrize("name,variant", VARIANTS)
def test_baseline_loss_is_the_sampled_memoryless_loss(name, variant):
    task, T, n = make_task(name, variant), 5, 20_000
    loss, tolerance, _ = sampled_baseline(task, T, n)
    baseline = task.baseline_loss(T)
    # 5% of the baseline: adding's 1/6 against the misquoted 0.1767 (6% apart) is still told apart
    assert tolerance < 0.05 * baseline, "the sample is too small to check anything"
    assert abs(loss - baseline) < tolerance, (loss, baseline, tolerance)


@pytest.mark.parametrize("name", TASKS)
def test_solved_by_a_perfect_prediction_not_by_the_baseline(name):
    task, T = make_task(name), 5
    targets = task.sample(T, 256, torch.Generator().manual_seed(1)).targets
    if task.kind == "regression":
        perfect = targets.unsqueeze(-1)
    else:
        perfect = 50.0 * F.one_hot(targets, task.output_size).float()
    assert task.solved(task.loss(perfect, targets).item(), task.accuracy(perfect, targets))
    _, _, accuracy = sampled_baseline(task, T, 4000)
    assert not task.solved(task.baseline_loss(T), accuracy)


# -- the commands --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TASKS)
def test_every_task_runs_through_run_and_grads(tmp_path, name):
    out = tmp_path / "res"
    result = invoke("run", "--task", name, "--cell", "rnn", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    (row,) = read_csv(out / "runs.csv")
    assert row["task"] == name and row["variant"] == registry()[name].variants[0]
    assert np.isfinite(float(row["final_loss"]))
    grads = tmp_path / "grads.csv"
    result = invoke("grads", "--task", name, "--cell", "rnn", "--seq-len", "6", "--hidden", "6",
                    "--batch-size", "4", "--out", grads, "-q")
    assert result.exit_code == 0, result.output
    rows = read_csv(grads)
    assert {r["task"] for r in rows} == {name}
    lag0 = [float(r["grad_norm"]) for r in rows if r["lag"] == "0"]
    assert lag0 and all(np.isfinite(v) and v > 0 for v in lag0)


def test_help_lists_every_task_with_its_line_and_variants():
    out = " ".join(invoke("run", "--help", terminal_width=400).output.split())
    for entry in registry().values():
        assert f"{entry.name}: {' '.join(entry.summary.split())}" in out
        assert all(v in out for v in entry.variants)
    assert "package.module:ClassName" in out
    for command in (["bench"], ["leaderboard"], ["plot", "solve-rate"]):
        out = invoke(*command, "--help", terminal_width=400).output
        assert "|".join(task_names()) in out, command


@pytest.mark.parametrize("command", [["run"], ["grads"], ["bench"], ["leaderboard"]])
def test_unknown_task_is_one_line_listing_the_tasks(tmp_path, command):
    result = invoke(*command, "--task", "adder", terminal_width=400)
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert "'adder'" in line and all(name in line for name in task_names())
    with pytest.raises(ConfigError, match="unknown task 'adder'; allowed: adding"):
        make_task("adder")


# -- bring your own task -------------------------------------------------------------------------
MY_TASKS = '''
    """Tasks from outside seqbench, for tests/test_task_registry.py."""

    import math

    import torch

    from seqbench.tasks import Batch, Task


    class FirstBit(Task):
        """Report the bit shown at step 0, read at the last step.

            step     0    1  ...  T-1
            input    b    0  ...   0
            target                 b
        """

        name = "first_bit"
        variants = ("plain",)
        input_size = 1
        output_size = 2

        def total_steps(self, seq_len):
            return seq_len

        def readout_steps(self, seq_len):
            return slice(seq_len - 1, seq_len)

        def query_step(self, seq_len):
            return seq_len - 1

        def lag_range(self, seq_len):
            return seq_len - 1, seq_len - 1

        def sample(self, seq_len, batch_size, generator):
            self.check_seq_len(seq_len)
            bits = torch.randint(0, 2, (batch_size,), generator=generator)
            inputs = torch.zeros(seq_len, batch_size, 1)
            inputs[0, :, 0] = bits.float()
            return Batch(inputs, bits.unsqueeze(0))

        def accuracy(self, outputs, targets):
            return (outputs.argmax(-1) == targets).float().mean().item()

        def baseline_loss(self, seq_len):
            return math.log(2)


    class NotATask:
        """Shaped like nothing seqbench knows."""


    class Broken(FirstBit):
        """Its constructor fails."""

        def __init__(self, variant=None):
            raise RuntimeError("no data here")
'''


@contextlib.contextmanager
def importable(directory: Path, module: str):
    """``directory`` on sys.path and the registry's caches cleared, for the duration; the module
    is forgotten afterwards, so other tests see seqbench's own tasks only."""
    try:
        with pytest.MonkeyPatch.context() as mp:  # restores sys.path on the way out
            mp.syspath_prepend(str(directory))  # also invalidates the import caches
            registry.cache_clear()
            task_class.cache_clear()
            yield
    finally:
        sys.modules.pop(module, None)
        registry.cache_clear()
        task_class.cache_clear()


@pytest.fixture
def my_tasks(tmp_path):
    (tmp_path / "seqbench_test_my_tasks.py").write_text(textwrap.dedent(MY_TASKS))
    with importable(tmp_path, "seqbench_test_my_tasks"):
        yield "seqbench_test_my_tasks"


def test_task_as_class_path_runs_through_run_and_grads(my_tasks, tmp_path):
    path = f"{my_tasks}:FirstBit"
    task = make_task(path)
    assert task.name == path and task.variant == "plain"  # rows record the name it was made by
    result = invoke("run", "--task", path, "--cell", "gru", *TINY, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    (row,) = read_csv(tmp_path / "out" / "runs.csv")
    assert row["task"] == path and row["variant"] == "plain"
    assert np.isfinite(float(row["final_loss"]))
    grads = tmp_path / "grads.csv"
    result = invoke("grads", "--task", path, "--cell", "rnn", "--seq-len", "6", "--hidden", "6",
                    "--batch-size", "4", "--out", grads, "-q")
    assert result.exit_code == 0, result.output
    assert {r["task"] for r in read_csv(grads)} == {path}


@pytest.mark.parametrize("cls,message", [
    ("NotATask", "is not a subclass of seqbench.tasks.Task"),
    ("Missing", "has no 'Missing'"),
    ("Broken", "Broken(None) failed: RuntimeError: no data here"),
])
def test_bad_task_class_is_a_one_line_error(my_tasks, tmp_path, cls, message):
    path = f"{my_tasks}:{cls}"
    result = invoke("run", "--task", path, *TINY, "--out", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: task {path!r}: "), result.output
    assert message in lines[0]
    assert not (tmp_path / "runs.csv").exists()


def test_unimportable_task_module_is_a_one_line_error(tmp_path):
    result = invoke("run", "--task", "seqbench_no_such_module:Task", *TINY, "--out", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith("Error: task 'seqbench_no_such_module:Task': cannot import")
