"""`seqbench list` and seqbench.catalog: every task variant, cell and remedy is listed, and what
the tables say a cell accepts is what its configuration accepts."""

import csv
import io
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from seqbench.catalog import REMEDIES, applies_to, cell_rows, remedy_rows, task_rows
from seqbench.cells import CellConfig
from seqbench.cells.registry import cell_class
from seqbench.cells.registry import registry as cells
from seqbench.cli import cli
from seqbench.errors import ConfigError
from seqbench.tasks import make_task
from seqbench.tasks.registry import registry as tasks

#: one CellConfig change per remedy that applies it (the --clip options are run options)
APPLIED = {
    "--init": {"init": "orthogonal"},
    "--init-gain": {"init_gain": 0.5},
    "--forget-bias": {"forget_bias": 1.0},
    "--chrono": {"chrono": True},
    "--nonlinearity": {"nonlinearity": "elu", "impl": "hand"},  # not any cell's own
    "--norm": {"norm": "layer", "impl": "hand"},
    "--residual": {"residual": True, "layers": 2},
}


@pytest.mark.parametrize("cell", list(cells()))
@pytest.mark.parametrize("remedy", [r for r in REMEDIES if r.option in APPLIED],
                         ids=lambda r: r.option)
def test_a_remedy_is_listed_for_a_cell_exactly_when_its_config_accepts_it(cell, remedy):
    cfg = CellConfig(cell=cell, **APPLIED[remedy.option])
    try:
        cfg.validate()
        accepted = True
    except ConfigError:
        accepted = False
    assert applies_to(remedy, cell_class(cell)) == accepted


def test_every_task_variant_with_its_baseline():
    rows = task_rows(200)
    expected = [(name, v) for name in tasks() for v in make_task(name).variants]
    assert [(r["task"], r["variant"]) for r in rows] == expected
    for r in rows:
        task = make_task(r["task"], r["variant"])
        if getattr(task, "held_out", False):  # mnist: T = 784 only (tests/test_mnist.py)
            assert r["lags"] == "T >= 784" and r["baseline_loss"] is None
            continue
        assert r["baseline_loss"] == task.baseline_loss(200)
        assert r["total_steps"] == task.total_steps(200)
        assert r["default"] == (r["variant"] == type(task).variants[0])


def test_a_length_below_a_tasks_minimum_is_said_not_computed():
    short = {(r["task"], r["variant"]): r for r in task_rows(1)}
    for (name, variant), r in short.items():
        minimum = make_task(name, variant).min_seq_len()
        if minimum > 1:
            assert r["baseline_loss"] is None and r["lags"] == f"T >= {minimum}"


def test_cells_and_remedies_tables():
    rows = {r["cell"]: r for r in cell_rows()}
    assert list(rows) == list(cells())
    assert rows["lstm"]["impls"] == "builtin, hand" and rows["lru"]["impls"] == "hand"
    assert "--forget-bias" in rows["lstm"]["remedies"]
    assert "--forget-bias" not in rows["gru"]["remedies"]
    by_option = {r["option"]: r for r in remedy_rows()}
    assert by_option["--chrono"]["cells"] == "lstm, gru"
    assert all(r["source"] for r in by_option.values())


def test_the_list_command():
    runner = CliRunner()
    everything = runner.invoke(cli, ["list"])
    assert everything.exit_code == 0
    for heading in ("tasks (", "cells:", "remedies:"):
        assert heading in everything.output
    for name in list(tasks()) + list(cells()):
        assert f"\n{name} " in everything.output
    table = runner.invoke(cli, ["list", "tasks", "-T", "50", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(table.output)))
    assert len(rows) == len(task_rows(50)) and {r["seq_len"] for r in rows} == {"50"}
    markdown = runner.invoke(cli, ["list", "remedies", "--format", "markdown"])
    assert markdown.output.startswith("## remedies\n\n| option")
    bad = runner.invoke(cli, ["list", "--format", "csv"])
    assert bad.exit_code == 2 and "name it" in bad.output


def test_shell_completion_as_the_readme_says():
    """click's completion: `_SEQBENCH_COMPLETE=bash_source seqbench` prints the script, and a
    partial command completes to seqbench's commands."""
    env = {"COMP_WORDS": "seqbench li", "COMP_CWORD": "1", "_SEQBENCH_COMPLETE": "bash_complete"}
    code = "from seqbench.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True)
    assert out.stdout.split() == ["plain,list"]
    script = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "_SEQBENCH_COMPLETE": "bash_source"})
    assert "_seqbench_completion()" in script.stdout
