"""Bring your own cell: a recurrent cell from outside seqbench, end to end.

- The example package (examples/seqbench-plugin-example) pip-installed into a scratch folder:
  its ``seqbench.cells`` entry points are cells of every command (run, grads, bench, sweep,
  leaderboard, figures), and ``--help`` lists them.
- ``--cell package.module:ClassName`` without any entry point, torch.nn's own cells included,
  computing what torch.nn's fused modules compute.
- A bad plugin is a one-line error naming the problem (exit code 2, no traceback).
- The gradient probe of a plugin cell (autograd hooks on the states it returns) gives the true
  ||dL/dh_t||: an independent autograd computation and finite differences agree.
- The README's "Adding your own cell" example runs as written.

The registry caches what it found (``registry``, ``cell_class``), so every fixture that changes
``sys.path`` clears those caches on the way in and on the way out, and forgets the modules it made
importable: other test files see seqbench's own cells only.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from seqbench.cells import CellConfig
from seqbench.cells.base import Cell
from seqbench.cells.registry import BUILTIN_CELLS, cell_class, registry
from seqbench.cells.stack import HandRNN
from seqbench.cli import cli
from seqbench.model import build_model
from seqbench.probe import probe
from seqbench.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "seqbench-plugin-example"
LEAKY_PATH = "seqbench_plugin_example.leaky:LeakyTanhCell"
GATED_PATH = "seqbench_plugin_example.gated:GatedLeaky"
#: a real training run, small enough for a test
TINY = ["--task", "adding", "--seq-len", "10", "--steps", "3", "--hidden", "8", "--batch-size", "8",
        "--eval-size", "16", "--test-size", "16", "-q"]


def clear_registry() -> None:
    tasks = importlib.import_module("seqbench.tasks.registry")  # the package's `registry` is a function
    registry.cache_clear()
    cell_class.cache_clear()
    tasks.registry.cache_clear()
    tasks.task_class.cache_clear()


@contextlib.contextmanager
def importable(directory: Path, *modules: str):
    """``directory`` on sys.path, the registry re-read, for the duration; ``modules`` (prefixes
    of module names imported from there) are forgotten afterwards."""
    try:
        with pytest.MonkeyPatch.context() as mp:  # restores sys.path on the way out
            mp.syspath_prepend(str(directory))  # also invalidates the import caches
            clear_registry()
            yield directory
    finally:
        for name in [m for m in sys.modules if m.startswith(modules)]:
            del sys.modules[name]
        clear_registry()  # the next registry() sees sys.path as it was


def invoke(*args):
    """``seqbench <args>`` in this process (paths may be Path objects)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example installed as a user would (``pip install``), into a scratch folder on sys.path.

    Built offline from a copy (so that no build/ or egg-info lands in the checkout), with the
    setuptools of this environment; a Python without setuptools cannot build it offline."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building the example offline needs setuptools in this environment")
    tmp = tmp_path_factory.mktemp("plugin")
    source = tmp / "seqbench-plugin-example"
    shutil.copytree(EXAMPLE, source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", "--target", str(target), str(source)],
        capture_output=True, text=True, env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with importable(target, "seqbench_plugin_example"):
        yield target


@pytest.fixture(scope="module")
def example_src():
    """The example's source folder importable, nothing installed: cells by class path only."""
    with importable(EXAMPLE / "src", "seqbench_plugin_example") as path:
        yield path


BAD_CELLS = '''
"""Plugins that must fail, each in its own way."""
import torch
from torch import nn

from seqbench.cells.base import Cell

NOT_A_CLASS = 42


def a_function(input_size, hidden_size):
    return nn.RNNCell(input_size, hidden_size)


class NotAModule:
    def __init__(self, input_size, hidden_size):
        pass


class WrongShape(nn.Module):
    """Returns H + 1 units."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.lin = nn.Linear(input_size + hidden_size, hidden_size + 1)

    def forward(self, x, h):
        return torch.tanh(self.lin(torch.cat([x, h], 1)))


class RaisesInInit(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        raise ValueError("hidden_size must be even")


class WrongSignature(nn.Module):
    """Needs a third argument: cannot be called as cell(x_t, h)."""

    def __init__(self, input_size, hidden_size):
        super().__init__()

    def forward(self, x, h, extra):
        return h


class NoStates(Cell):
    states = ()
'''


@pytest.fixture(scope="module")
def bad_cells(tmp_path_factory):
    """A module of bad plugin classes, and one that raises on import, on sys.path."""
    folder = tmp_path_factory.mktemp("bad_plugins")
    (folder / "seqbench_test_badcells.py").write_text(BAD_CELLS)
    (folder / "seqbench_test_badimport.py").write_text('raise RuntimeError("broken at import")\n')
    with importable(folder, "seqbench_test_bad") as path:
        yield path


# -- entry points ----------------------------------------------------------------------------------
def test_entry_points_are_registered_after_seqbench_own_cells(installed):
    from seqbench_plugin_example.gated import GatedLeaky
    from seqbench_plugin_example.leaky import LeakyTanhCell

    names = list(registry())
    assert names[: len(BUILTIN_CELLS)] == [e.name for e in BUILTIN_CELLS]
    assert {"leaky", "leaky_gated"} <= set(names[len(BUILTIN_CELLS):])  # other plugins may be there
    entry = registry()["leaky"]
    assert entry.target == LEAKY_PATH and "seqbench-plugin-example" in entry.summary
    wrapped = cell_class("leaky")  # a plain module comes back wrapped as a Cell
    assert issubclass(wrapped, Cell) and wrapped.module_class is LeakyTanhCell
    assert cell_class("leaky_gated") is GatedLeaky  # a Cell subclass is used as it is


def test_help_lists_the_installed_cells(installed):
    # A fresh process, as a user's: the option's help text is built when seqbench.cli is imported.
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(installed), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "seqbench", "run", "--help"], capture_output=True,
                          text=True, env=env, cwd=installed.parent)
    assert proc.returncode == 0, proc.stderr
    (metavar,) = re.findall(r"--cell \[(.*?)\]", proc.stdout)
    assert {e.name for e in BUILTIN_CELLS} | {"leaky", "leaky_gated", "MODULE:CLASS"} <= set(
        metavar.split("|"))
    assert "leaky: plugin from seqbench-plugin-example" in " ".join(proc.stdout.split())


def test_run_records_the_plugin_cell(installed, tmp_path):
    result = invoke("run", *TINY, "--cell", "leaky", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    (row,) = read_csv(tmp_path / "runs.csv")
    assert (row["cell"], row["impl"], row["status"]) == ("leaky", "hand", "ok")
    assert row["kernel"] == "hand (autograd)" and row["steps_taken"] == "3"
    # the module's own parameters are the model's: W (8x2) + b (8) + U (8x8), readout 8 + 1
    assert int(row["n_params"]) == 16 + 8 + 64 + 9
    assert (tmp_path / "runs" / row["run_id"] / "config.json").is_file()


def test_the_example_task_runs_through_run_and_list(installed, tmp_path):
    tasks = importlib.import_module("seqbench.tasks.registry")
    entry = tasks.registry()["parity"]
    assert entry.target == "seqbench_plugin_example.parity:ParityTask"
    result = invoke("run", "--task", "parity", "--cell", "gru", *TINY[2:], "--out", tmp_path)
    assert result.exit_code == 0, result.output
    (row,) = read_csv(tmp_path / "runs.csv")
    assert (row["task"], row["variant"], row["lag_max"]) == ("parity", "bits", "9")
    task = make_task("parity")
    batch = task.sample(10, 4000, torch.Generator().manual_seed(0))
    assert torch.equal(batch.targets[0], batch.inputs[:, :, 0].sum(0).long() % 2)
    assert float(row["baseline_loss"]) == pytest.approx(math.log(2))
    listed = invoke("list", "tasks", "--format", "csv")
    assert "parity,bits,True" in listed.output


def test_grads_of_plugin_cells(installed, tmp_path):
    out = tmp_path / "grads.csv"
    result = invoke("grads", "--task", "adding", "--seq-len", "10", "--cell", "leaky", "--cell",
                    "leaky_gated", "--hidden", "8", "--batch-size", "8", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    for cell in ("leaky", "leaky_gated"):
        curve = {int(r["lag"]): float(r["grad_norm"]) for r in rows if r["cell"] == cell}
        assert sorted(curve) == list(range(10))  # every lag, from one backward pass
        assert all(math.isfinite(v) and v > 0 for v in curve.values())
        assert curve[9] < curve[0]  # a contractive cell at its default initialization
    assert {r["impl"] for r in rows} == {"hand"}


def test_bench_times_a_plugin_cell(installed, tmp_path):
    out = tmp_path / "bench.csv"
    result = invoke("bench", "--cell", "leaky", "--seq-len", "10", "--repeats", "1", "--warmup", "0",
                    "--no-scaling", "--hidden", "8", "--batch", "8", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    (row,) = read_csv(out)  # no builtin twin: hand alone
    assert (row["cell"], row["impl"]) == ("leaky", "hand")
    assert float(row["ms_step"]) > 0 and float(row["ms_probe"]) > 0


def test_sweep_leaderboard_and_figure_of_plugin_cells(installed, tmp_path):
    spec = tmp_path / "plugins.toml"
    spec.write_text(textwrap.dedent(f"""
        description = "plugin cells on the adding problem"
        [settings]
        task = "adding"
        hidden = 8
        batch_size = 8
        steps = 4
        eval_every = 2
        eval_size = 16
        test_size = 16
        probe_every = 2
        [grid]
        seq_len = [10]
        cell = ["leaky", "leaky_gated", "{LEAKY_PATH}"]
        seed = [0]
        """))
    out = tmp_path / "out"
    result = invoke("sweep", spec, "--out", out, "-q")  # one spawned worker process
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "runs.csv")
    assert sorted(r["cell"] for r in rows) == sorted(["leaky", "leaky_gated", LEAKY_PATH])
    assert {r["status"] for r in rows} == {"ok"}
    for r in rows:  # probed at steps 0, 2 and 4 in the worker, through the hooks
        steps = {int(g["step"]) for g in read_csv(Path(r["run_dir"]) / "grads.csv")}
        assert steps == {0, 2, 4}

    result = invoke("leaderboard", "--runs", out / "runs.csv", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert {r["cell"] for r in csv.DictReader(result.output.splitlines())} >= {"leaky", "leaky_gated"}
    figure = tmp_path / "decay.png"
    result = invoke("plot", "decay", out / "runs", "-o", figure)
    assert result.exit_code == 0, result.output
    assert figure.stat().st_size > 0


def test_remedies_reach_a_cell_subclass(installed):
    """GatedLeaky declares its recurrent blocks and keep gate: --init and --chrono act on them."""
    T, H = 20, 8
    model = build_model(make_task("adding"), CellConfig(cell="leaky_gated", hidden=H,
                                                        init="orthogonal", chrono=True), 0, T)
    rnn = model.rnn
    for block in rnn.weight_hh_l0.detach().split(H):  # keep gate, candidate
        torch.testing.assert_close(block @ block.T, torch.eye(H), atol=1e-5, rtol=0)
    keep_bias = rnn.bias_ih_l0.detach()[:H]  # chrono: log(u), u ~ U[1, T_max - 1]
    assert (keep_bias >= 0).all() and (keep_bias <= math.log(T - 1)).all() and keep_bias.std() > 0
    assert (rnn.bias_hh_l0.detach()[:H] == 0).all()


def test_cell_subclass_fast_layer_is_its_layer(installed):
    from seqbench_plugin_example.gated import GatedLeaky

    torch.manual_seed(0)
    fused = HandRNN(GatedLeaky, 3, 5, num_layers=2, fused=True).double()
    plain = HandRNN(GatedLeaky, 3, 5, num_layers=2, fused=False).double()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(9, 4, 3, dtype=torch.float64, requires_grad=True)
    out_f, h_f = fused(x)
    out_p, h_p = plain(x)
    torch.testing.assert_close(out_f, out_p, atol=1e-12, rtol=0)
    torch.testing.assert_close(h_f, h_p, atol=1e-12, rtol=0)
    (g_f,) = torch.autograd.grad(out_f.sum(), x)
    (g_p,) = torch.autograd.grad(out_p.sum(), x)
    torch.testing.assert_close(g_f, g_p, atol=1e-12, rtol=0)


# -- class paths -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [LEAKY_PATH, GATED_PATH, "torch.nn:RNNCell", "torch.nn:LSTMCell"])
def test_class_path_needs_no_entry_point(example_src, tmp_path, path):
    result = invoke("run", *TINY, "--cell", path, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    (row,) = read_csv(tmp_path / "runs.csv")
    assert (row["cell"], row["impl"], row["status"]) == (path, "hand", "ok")


@pytest.mark.parametrize("cell_path, twin", [("torch.nn:RNNCell", nn.RNN),
                                             ("torch.nn:LSTMCell", nn.LSTM),
                                             ("torch.nn:GRUCell", nn.GRU)])
def test_torch_cells_by_class_path_compute_the_fused_module(cell_path, twin):
    """torch.nn's step cells through the plugin wrapper, given the fused module's weights, compute
    its outputs and final states (float64), and the same input gradients."""
    torch.manual_seed(0)
    I, H, L, T, B = 3, 6, 2, 7, 4
    hand = HandRNN(cell_path, I, H, num_layers=L).double()
    ref = twin(I, H, L).double()
    with torch.no_grad():
        for layer in range(L):
            module = getattr(hand, f"cell_l{layer}")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(module, name).copy_(getattr(ref, f"{name}_l{layer}"))
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    n_states = 2 if twin is nn.LSTM else 1
    hx = tuple(torch.randn(L, B, H, dtype=torch.float64) for _ in range(n_states))
    hx = hx if n_states > 1 else hx[0]
    out, final = hand(x, hx)
    out_ref, final_ref = ref(x, hx)
    torch.testing.assert_close(out, out_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(final, final_ref, atol=1e-12, rtol=0)
    (g,) = torch.autograd.grad(out.square().sum(), x)
    (g_ref,) = torch.autograd.grad(out_ref.square().sum(), x)
    torch.testing.assert_close(g, g_ref, atol=1e-12, rtol=0)


# -- bad plugins -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cell, message", [
    ("seqbench_test_nosuchmodule:Cell",
     "cannot import seqbench_test_nosuchmodule: ModuleNotFoundError"),
    ("seqbench_test_badimport:Cell",
     "cannot import seqbench_test_badimport: RuntimeError: broken at import"),
    ("seqbench_test_badcells:Missing", "module seqbench_test_badcells has no 'Missing'"),
    ("seqbench_test_badcells:NOT_A_CLASS", "42 is not a cell; expected a torch.nn.Module"),
    ("seqbench_test_badcells:a_function", "is not a cell; expected a torch.nn.Module"),
    ("seqbench_test_badcells:NotAModule", "is not a cell; expected a torch.nn.Module"),
    ("seqbench_test_badcells:WrongShape", "it returned [(2, 9)]; expected the same"),
    ("seqbench_test_badcells:RaisesInInit",
     "RaisesInInit(2, 8) failed: ValueError: hidden_size must be even"),
    ("seqbench_test_badcells:WrongSignature", "calling it as cell(x_t, h) failed (TypeError"),
    ("seqbench_test_badcells:NoStates", "NoStates.states names no state"),
])
def test_bad_plugin_is_a_one_line_error(bad_cells, tmp_path, cell, message):
    result = invoke("run", *TINY, "--cell", cell, "--out", tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cell {cell!r}: "), result.output
    assert message in lines[0]
    assert not (tmp_path / "runs.csv").exists()


def test_bad_plugin_fails_grads_in_one_line(bad_cells, tmp_path):
    out = tmp_path / "grads.csv"
    result = invoke("grads", "--seq-len", "10", "--hidden", "8", "--cell",
                    "seqbench_test_badcells:WrongShape", "--out", out, "-q")
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert "returned [(2, 9)]" in result.output and not out.exists()


@pytest.mark.parametrize("cell", ["seqbench_test_badcells:WrongShape",
                                  "seqbench_test_badcells:RaisesInInit"])
def test_bad_plugin_writes_nothing(bad_cells, tmp_path, cell):
    result = invoke("run", *TINY, "--cell", cell, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


@pytest.mark.parametrize("remedy, message", [
    (["--init", "orthogonal"], "recurrent weight matrix"),
    (["--init-gain", "2"], "recurrent weight matrix"),
    (["--forget-bias", "1"], "forget_bias applies to cells with a forget gate"),
    (["--chrono"], "chrono initialization applies to cells"),
    (["--norm", "layer"], "does not apply to cell"),
])
def test_remedy_a_plain_module_cannot_take_is_refused(example_src, tmp_path, remedy, message):
    """seqbench does not know a plain module's parameters: the remedies are refused in one line."""
    result = invoke("run", *TINY, "--cell", LEAKY_PATH, *remedy, "--out", tmp_path)
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert message in result.output and LEAKY_PATH in result.output
    assert not (tmp_path / "runs.csv").exists()


# -- the gradient probe ----------------------------------------------------------------------------
def state_gradients(model, task, batch, seq_len):
    """dL/d(state_t) for every step t <= t* and every state, by autograd through a plain loop over
    the cell's ``step`` (no hooks, no fast path): a list over t of tuples over states, (B, H)."""
    rnn = model.rnn
    cell, params = rnn.cells[0], rnn.layer_params(0)
    t_query = task.query_step(seq_len)
    x = batch.inputs[: t_query + 1]
    state = cell.initial_state(x.shape[1], x)
    states = []
    for x_t in x.unbind(0):
        _, state = cell.step(params, x_t, state)
        states.append(state)
    loss = query_loss(model, task, batch, seq_len, states[t_query][0]).sum()
    flat = [s for st in states for s in st]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    grads = [torch.zeros_like(s) if g is None else g for s, g in zip(flat, grads)]
    n = len(states[0])
    return [tuple(grads[t * n : (t + 1) * n]) for t in range(len(states))], states


def query_loss(model, task, batch, seq_len, h_query):
    """Each sequence's own loss at t* (B,): the probe's loss is their sum."""
    r = task.query_step(seq_len) - task.readout_steps(seq_len).start
    logits = model.readout(h_query)
    return torch.stack([task.loss(logits[b : b + 1].unsqueeze(0), batch.targets[r : r + 1, b : b + 1])
                        for b in range(h_query.shape[0])])


@pytest.mark.parametrize("cell, task_name", [(LEAKY_PATH, "adding"),
                                             (GATED_PATH, "delayed_recall"),
                                             ("torch.nn:LSTMCell", "adding")])
def test_probe_of_a_plugin_cell_is_the_true_gradient_norm(example_src, cell, task_name):
    task, T, B = make_task(task_name), 12, 5
    model = build_model(task, CellConfig(cell=cell, hidden=6), init_seed=0, seq_len=T).double()
    batch = task.sample(T, B, torch.Generator().manual_seed(1))
    batch.inputs = batch.inputs.double()
    if task.kind == "regression":
        batch.targets = batch.targets.double()
    t_query = task.query_step(T)

    (curve,) = probe(model, task, batch, T)  # one layer: hooks on the states the cell returns
    grads, states = state_gradients(model, task, batch, T)
    for i, (mean, median) in enumerate([(curve.grad_norm, curve.grad_norm_median),
                                        (curve.cell_grad_norm, curve.cell_grad_norm_median)]):
        if i == 1 and len(states[0]) == 1:
            continue  # no cell state
        norms = torch.stack([g[i].norm(dim=1) for g in grads]).flip(0)  # (lags, B), lag order
        assert curve.lags.tolist() == list(range(t_query + 1))
        torch.testing.assert_close(torch.as_tensor(mean), norms.mean(1), rtol=1e-10, atol=0)
        torch.testing.assert_close(torch.as_tensor(median), norms.median(1).values,
                                   rtol=1e-10, atol=0)

    # Finite differences, sequence 0: along u = g / ||g||, dL/d eps = ||g||.
    rnn = model.rnn
    c, params = rnn.cells[0], rnn.layer_params(0)

    def loss_from(t, h_t):
        state = (h_t, *states[t][1:])
        with torch.no_grad():
            for x_t in batch.inputs[t + 1 : t_query + 1].unbind(0):
                _, state = c.step(params, x_t, state)
            return query_loss(model, task, batch, T, state[0])[0].item()

    eps = 1e-6
    for lag in (0, 3, t_query):
        t = t_query - lag
        g = grads[t][0][0]
        u = torch.zeros_like(states[t][0])
        u[0] = g / g.norm()
        h_t = states[t][0].detach()
        fd = (loss_from(t, h_t + eps * u) - loss_from(t, h_t - eps * u)) / (2 * eps)
        assert fd == pytest.approx(g.norm().item(), rel=1e-6)


# -- the README --------------------------------------------------------------------------------------
def readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Adding your own cell\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no section 'Adding your own cell'"
    return match.group(1)


def test_readme_example_cell_runs_as_written(tmp_path):
    """The README's example module, saved as mycells.py, is a cell by class path and computes
    h' = (1 - alpha) h + alpha tanh(W x + U h + b)."""
    section = readme_section()
    (code,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    (module_name,) = re.findall(r"^# (\w+)\.py$", code, re.MULTILINE)
    (class_name,) = re.findall(r"^class (\w+)\(nn\.Module\)", code, re.MULTILINE)
    (tmp_path / f"{module_name}.py").write_text(code)
    path = f"{module_name}:{class_name}"
    assert f"--cell {path}" in section  # the command the README shows
    with importable(tmp_path, module_name):
        result = invoke("run", *TINY, "--cell", path, "--out", tmp_path / "out")
        assert result.exit_code == 0, result.output
        module = HandRNN(path, 3, 4).cells[0].module
        x, h = torch.randn(2, 3), torch.randn(2, 4)
        pre = x @ module.input.weight.T + module.input.bias + h @ module.recurrent.weight.T
        expected = (1 - module.alpha) * h + module.alpha * torch.tanh(pre)
        torch.testing.assert_close(module(x, h), expected)
    assert "examples/seqbench-plugin-example" in section
