"""The cell registry's contract, for every registered cell: what a new cell gets without code.

A new cell is one module, one registry line and its own tests; these tests then hold it to the
interface (seqbench.cells.base.Cell) and run it through every command: run, grads, bench, sweep,
leaderboard, figures. The registry itself is torch-free.
"""

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from seqbench.cells import CellConfig, cell_class, cell_names, registry
from seqbench.cells.base import Cell
from seqbench.cells.stack import HandRNN
from seqbench.cli import cli
from seqbench.errors import ConfigError
from seqbench.style import cell_color


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


CELLS = [e.name for e in registry().values() if e.target.startswith("seqbench.")]


def test_registry_and_configs_import_without_torch():
    """Help, specs and leaderboards read the registry without loading torch (4 s)."""
    code = ("import sys, seqbench.leaderboard, seqbench.cells, seqbench.config, seqbench.style; "
            "from seqbench.cells import cell_names; cell_names(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", CELLS)
def test_every_cell_keeps_the_interface(name):
    cls = cell_class(name)
    assert issubclass(cls, Cell) and cls.name == name
    assert cls.__doc__ and sys.modules[cls.__module__].__doc__
    assert cls.states and cls.states[0] == "h" and cls.nonlinearities
    assert cell_color(name) == registry()[name].color
    cfg = CellConfig(cell=name, impl="hand", hidden=6, layers=2).validate()
    assert cfg.nonlinearity == cls.nonlinearities[0]
    assert (cfg.impl == "hand") and (CellConfig(cell=name).validate().impl
                                     == ("builtin" if cls.builtin else "hand"))
    torch.manual_seed(0)
    stack = HandRNN(name, 3, 6, num_layers=2, max_steps=7).double()
    x = torch.randn(7, 4, 3, dtype=torch.float64)
    out, final = stack(x)
    assert out.shape == (7, 4, 6) and out.dtype == torch.float64 and torch.isfinite(out).all()
    finals = final if isinstance(final, tuple) else (final,)
    assert len(finals) == len(stack.state_names) and finals[0].shape[:2] == (2, 4)


@pytest.mark.parametrize("name", CELLS)
def test_fast_and_plain_layers_agree(name):
    """A cell's fast whole-sequence path computes what its step-by-step layer computes."""
    torch.manual_seed(1)
    fast = HandRNN(name, 3, 5, num_layers=2, max_steps=9).double()
    plain = HandRNN(name, 3, 5, num_layers=2, max_steps=9, fused=False).double()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(9, 2, 3, dtype=torch.float64, requires_grad=True)
    y_fast, y_plain = fast(x)[0], plain(x)[0]
    torch.testing.assert_close(y_fast, y_plain, rtol=1e-9, atol=1e-10)
    g_fast = torch.autograd.grad(y_fast.square().sum(), [x, *fast.parameters()])
    g_plain = torch.autograd.grad(y_plain.square().sum(), [x, *plain.parameters()])
    for a, b in zip(g_fast, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_help_lists_every_cell_with_its_line():
    out = CliRunner().invoke(cli, ["run", "--help"], terminal_width=400).output
    for entry in registry().values():
        assert entry.name in out
    assert "package.module:ClassName" in " ".join(out.split())


def test_unknown_cell_is_one_line_listing_the_cells(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--cell", "transformer", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert all(name in result.output for name in cell_names())
    with pytest.raises(ConfigError, match="unknown cell"):
        CellConfig(cell="transformer").validate()


def test_each_cell_has_its_own_colour():
    colours = [cell_color(name) for name in cell_names()]
    assert len(set(colours)) == len(colours)


@pytest.mark.parametrize("name", CELLS)
def test_every_cell_runs_through_run_and_grads(tmp_path, name):
    runner = CliRunner()
    out = tmp_path / "res"
    result = runner.invoke(cli, ["run", "--task", "adding", "--cell", name, "--seq-len", "8",
                                 "--hidden", "6", "--steps", "2", "--eval-every", "1",
                                 "--eval-size", "8", "--test-size", "8", "--batch-size", "4",
                                 "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    row = read_csv(out / "runs.csv")[0]
    assert row["cell"] == name and row["impl"] in ("builtin", "hand")
    assert np.isfinite(float(row["final_loss"]))
    grads = tmp_path / "grads.csv"
    result = runner.invoke(cli, ["grads", "--task", "adding", "--cell", name, "--seq-len", "8",
                                 "--hidden", "6", "--batch-size", "4", "--out", str(grads), "-q"])
    assert result.exit_code == 0, result.output
    rows = read_csv(grads)
    assert {r["cell"] for r in rows} == {name}
    lag0 = [float(r["grad_norm"]) for r in rows if r["lag"] == "0"]
    assert lag0 and all(np.isfinite(v) and v > 0 for v in lag0)


def test_new_cells_run_through_bench_sweep_and_leaderboard(tmp_path):
    """Bench and a spec sweep over every cell without a torch twin, then their leaderboard."""
    others = [n for n in CELLS if cell_class(n).builtin is None]
    runner = CliRunner()
    bench = runner.invoke(cli, ["bench", *[a for n in others for a in ("--cell", n)],
                                "--against", "lstm", "-T", "8", "--repeats", "1", "--warmup", "0",
                                "--no-scaling", "--no-probe", "--hidden", "6",
                                "--out", str(tmp_path / "bench.csv"), "-q"])
    assert bench.exit_code == 0, bench.output
    rows = read_csv(tmp_path / "bench.csv")
    assert {r["cell"] for r in rows} == set(others)
    assert all(r["against"] == "lstm" and float(r["ratio_to_against"]) > 0 for r in rows)
    spec = tmp_path / "cells.toml"
    spec.write_text(
        "[settings]\ntask = 'adding'\nseq_len = 8\nhidden = 6\nsteps = 2\nbatch_size = 4\n"
        "eval_every = 1\neval_size = 8\ntest_size = 8\n[grid]\nseed = [0]\ncell = ["
        + ", ".join(f"'{n}'" for n in others) + "]\n")
    out = tmp_path / "sweep"
    sweep = runner.invoke(cli, ["sweep", str(spec), "--out", str(out), "--workers", "1"])
    assert sweep.exit_code == 0, sweep.output
    board = runner.invoke(cli, ["leaderboard", "--runs", str(out / "runs.csv")],
                          terminal_width=300)
    assert board.exit_code == 0, board.output
    assert all(n in board.output for n in others)
