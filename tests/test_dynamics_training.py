"""Dynamics in training and as predictors (issue 16, second part): ``seqbench run --probe
lyapunov`` writes <run dir>/dynamics.csv at the probe steps without changing the run; config ids
of runs without --probe are unchanged; ``seqbench dynamics --spec`` writes the rows a run's
step-0 probe would; ``seqbench predict --dynamics`` joins them to runs by initial model and
reports their AUC; ``seqbench bench --dynamics`` times them; bad input is one line."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from seqbench import predict as pr
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.dynamics.records import DYNAMICS_COLUMNS
from seqbench.errors import ConfigError
from seqbench.results import RUN_COLUMNS, append_rows, read_results

ROOT = Path(__file__).resolve().parents[1]
#: a run small enough for a test: the hand tanh RNN, H = 6, adding T = 8
SMALL = ["--task", "adding", "--seq-len", 8, "--cell", "rnn", "--impl", "hand", "--hidden", 6,
         "--batch-size", 8, "--eval-every", 10, "--eval-size", 16, "--test-size", 16,
         "--no-until-solved", "--threads", 1, "--quiet"]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert words in result.output, result.output


def run_folder(out: Path) -> Path:
    (folder,) = (out / "runs").iterdir()
    return folder


# -- seqbench run --probe --------------------------------------------------------------------------


def test_run_probe_lyapunov_writes_dynamics_at_the_probe_steps(tmp_path):
    out = tmp_path / "o"
    result = invoke("run", *SMALL, "--steps", 25, "--probe-every", 10, "--probe", "lyapunov",
                    "--probe", "jacobian", "--out", out)
    assert result.exit_code == 0, result.output
    folder = run_folder(out)
    assert not (folder / "grads.csv").exists()  # the gradient probe was not asked for
    rows = read_results(folder / "dynamics.csv")
    assert list(rows.columns) == DYNAMICS_COLUMNS
    assert sorted(rows["step"].unique()) == [0, 10, 20, 25]  # step 0, every 10, the end
    assert set(rows["measure"]) == {"lyapunov", "lyapunov_running", "jacobian_sv", "step_norm"}
    assert (rows["run_id"] == folder.name).all()
    assert set(rows["probe_id"]) == {f"{folder.name}@{s}" for s in (0, 10, 20, 25)}
    assert (rows["probe_batch"] == 16).all() and (rows["seed"] == 0).all()
    assert rows["git_commit"].notna().all() and rows["torch_version"].notna().all()
    assert (rows[rows["measure"] == "lyapunov"].groupby("step").size() == 6).all()  # k = H
    # training moves the exponents: step 0 is the initialization, not a copy of it
    lyap = rows[(rows["measure"] == "lyapunov") & (rows["index"] == 0)].set_index("step")["value"]
    assert lyap[0] != lyap[25]
    assert not list(folder.glob(".*"))  # no lock or temporary file left


def test_probing_the_dynamics_does_not_change_the_run(tmp_path):
    rows = {}
    for name, extra in (("plain", ()), ("probed", ("--probe-every", 7, "--probe", "gradient",
                                                     "--probe", "lyapunov", "--probe",
                                                     "sensitivity"))):
        result = invoke("run", *SMALL, "--steps", 15, "--out", tmp_path / name, *extra)
        assert result.exit_code == 0, result.output
        rows[name] = read_results(tmp_path / name / "runs.csv").iloc[0]
    assert rows["plain"]["final_loss"] == rows["probed"]["final_loss"]
    assert rows["plain"]["val_loss"] == rows["probed"]["val_loss"]
    probed = run_folder(tmp_path / "probed")
    assert (probed / "grads.csv").is_file() and (probed / "dynamics.csv").is_file()
    measures = set(read_results(probed / "dynamics.csv")["measure"])
    assert measures == {"lyapunov", "lyapunov_running", "sensitivity"}


def test_config_ids_without_probes_are_unchanged():
    # every committed run of the quick adding sweep keeps the id it was recorded under
    from seqbench.spec import expand_spec

    recorded = set(read_results(ROOT / "results" / "runs.csv")["config_id"].astype(str))
    configs = expand_spec(ROOT / "tasks" / "adding.toml", "quick")
    assert {c.config_id() for c in configs} <= recorded
    cfg = configs[0]
    assert replace(cfg, probes=("gradient",)).config_id() == cfg.config_id()
    with_lyap = replace(cfg, probes=("lyapunov", "gradient", "lyapunov"))
    assert with_lyap.config_id() != cfg.config_id()
    assert with_lyap.validate().probes == ("gradient", "lyapunov")  # canonical order, once
    assert "probes" not in cfg.columns()  # a config.json field, not a runs.csv column
    assert RunConfig.from_dict(with_lyap.validate().to_dict() | {"probes": ["lyapunov"]}
                               ).validate().probes == ("lyapunov",)


def test_spec_key_probes(tmp_path):
    from seqbench.runner import _type_problem
    from seqbench.spec import expand_spec

    spec = tmp_path / "s.toml"
    spec.write_text('[settings]\ntask = "adding"\nseq_len = 8\ncell = "rnn"\nhidden = 4\n'
                    'probe_every = 5\nprobes = ["jacobian", "gradient"]\n[grid]\nseed = [0]\n')
    (cfg,) = expand_spec(spec)
    assert cfg.probes == ("gradient", "jacobian")
    assert _type_problem(cfg.to_dict() | {"probes": ["jacobian"]}, RunConfig) is None  # resume
    assert "not a list of strings" in _type_problem({"probes": [1]}, RunConfig)
    spec.write_text('[settings]\ntask = "adding"\nprobe_every = 5\nprobes = ["lyapunovv"]\n'
                    '[grid]\nseed = [0]\n')
    with pytest.raises(ConfigError, match="unknown probe 'lyapunovv'"):
        expand_spec(spec)


@pytest.mark.parametrize("args, words", [
    (["--probe", "lyapunov"], "probes need probe_every > 0"),
    (["--probe-every", 5, "--probe", "lyapunov", "--norm", "layer"],
     "needs a cell without in-cell normalization"),
    (["--probe-every", 5, "--probe", "lyapunv"], "did you mean 'lyapunov'"),
])
def test_run_probe_bad_input_is_one_line(tmp_path, args, words):
    one_line_error(invoke("run", *SMALL, "--steps", 5, "--out", tmp_path / "o", *args), words)
    assert not (tmp_path / "o").exists()


# -- seqbench dynamics --spec ----------------------------------------------------------------------


SPEC = """
[settings]
task = "adding"
seq_len = 8
impl = "hand"
hidden = 5
steps = 5
batch_size = 8
eval_every = 5
eval_size = 16
test_size = 16
until_solved = false
probe_every = 5

[grid]
seed = [0, 1]
lr = [1e-3, 3e-3]

[[arms]]
name = "tanh"
cell = "rnn"

[[arms]]
name = "tanh_no_clip"
cell = "rnn"
clip = 0.0

[[arms]]
name = "normed"
cell = "rnn"
norm = "layer"
"""


def test_dynamics_spec_writes_the_rows_of_a_runs_step0_probe(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    out = tmp_path / "d.csv"
    result = CliRunner().invoke(cli, ["dynamics", "--spec", str(spec), "--measure", "lyapunov",
                                      "--measure", "jacobian", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert "skipped normed on adding: in-cell normalization" in result.output
    rows = read_results(out)
    # one measurement per initial model and arm: 2 arms x 2 seeds (the lrs share the init)
    assert rows["probe_id"].nunique() == 4
    assert set(rows["label"]) == {"tanh", "tanh_no_clip"}
    assert (rows["probe_batch"] == 16).all() and (rows["step"] == 0).all()
    # the rows a training run of the spec writes at step 0 are the same numbers
    from seqbench.runner import execute_run
    from seqbench.spec import expand_spec

    cfg = next(c for c in expand_spec(spec) if c.label == "tanh" and c.seed == 1)
    execute_run(replace(cfg, threads=1, probes=("lyapunov", "jacobian")), out=tmp_path / "runs",
                quiet=True)
    own = read_results(run_folder(tmp_path / "runs") / "dynamics.csv")
    at0 = own[own["step"] == 0]
    ref = rows[(rows["label"] == "tanh") & (rows["seed"] == 1)]
    cols = ["measure", "layer", "index", "lag", "t"]
    a = at0.sort_values(cols)["value"].to_numpy()
    b = ref.sort_values(cols)["value"].to_numpy()
    assert len(a) == len(b) and np.allclose(a, b, rtol=1e-6, atol=0)


def test_dynamics_spec_bad_input_is_one_line(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    one_line_error(invoke("dynamics", "--spec", spec, "--cell", "lstm", "-o", tmp_path / "d.csv"),
                   "--spec defines the grid; drop --cell")
    one_line_error(invoke("dynamics", "--profile", "quick", "-o", tmp_path / "d.csv"),
                   "--profile needs --spec")
    assert not (tmp_path / "d.csv").exists()


# -- seqbench predict --dynamics -------------------------------------------------------------------


def synthetic(tmp_path: Path, n_seeds: int = 6):
    """A runs CSV of two learning rates x ``n_seeds`` seeds of one arm, the even seeds solved,
    and a dynamics CSV with one step-0 measurement per seed (no lr: it does not change the
    initial model), whose largest exponent is lower for the solved seeds."""
    cell = CellConfig(cell="rnn", impl="hand", hidden=4)
    runs, dyn = [], []
    for seed in range(n_seeds):
        solved = seed % 2 == 0
        for lr in (1e-3, 3e-3):
            cfg = RunConfig(task="adding", seq_len=8, cell=cell, lr=lr, seed=seed,
                            label="arm").validate()
            runs.append({**cfg.columns(), "run_id": f"r{seed}-{lr}", "config_id": cfg.config_id(),
                         "status": "ok", "solved": solved, "solved_step": 100 if solved else None,
                         "steps_taken": 100 if solved else 500, "val_solved": solved,
                         "loss_ratio": 0.01 if solved else 0.9})
        common = {"probe_id": f"p{seed}", "run_id": "", "task": "adding", "variant": cfg.variant,
                  "seq_len": 8, **cell.validate().to_dict(), "seed": seed, "step": 0,
                  "layer": 0, "label": "arm"}
        lyap = -1.0 - seed if solved else -0.1 * seed
        dyn.append({**common, "measure": "lyapunov", "index": 0, "value": lyap})
        dyn.append({**common, "measure": "lyapunov", "index": 1, "value": lyap - 5})
        for t, v in enumerate((0.5, 2.0, 1.0 + seed)):  # median over t: 1.0 + seed... of 3
            dyn.append({**common, "measure": "step_norm", "t": t, "value": v})
        dyn.append({**common, "step": 10, "measure": "lyapunov", "index": 0, "value": 99.0})
    append_rows(tmp_path / "runs.csv", runs, RUN_COLUMNS)
    append_rows(tmp_path / "dyn.csv", dyn, DYNAMICS_COLUMNS)
    return tmp_path / "runs.csv", tmp_path / "dyn.csv"


def test_predict_joins_the_dynamics_by_initial_model(tmp_path):
    runs, dyn = synthetic(tmp_path)
    table, frame, missing = pr.predict(runs, dynamics=dyn, n_resamples=200, resample="config")
    assert missing == 0 and len(frame) == 12  # both lrs of every seed joined to its seed's row
    assert list(table["measure"]) == list(pr.DYNAMICS_MEASURES)  # no grads.csv: no gradient row
    got = table.set_index("measure")
    assert got.at["lyapunov_max", "auc"] == 0.0  # the solved runs have the lower exponent
    assert got.at["lyapunov_max", "n"] == 12 and got.at["lyapunov_max", "n_solved"] == 6
    assert got.at["lyapunov_max", "auc_hi"] <= 0.5  # every resample keeps the order
    seeds = frame.groupby("seed")[["lyapunov_max", "jacobian_norm"]].first()
    assert seeds.loc[4, "lyapunov_max"] == -5.0  # step 0's value, not step 10's
    assert seeds.loc[4, "jacobian_norm"] == 2.0 and seeds.loc[0, "jacobian_norm"] == 1.0
    # the command prints the table; a run's own dynamics.csv is preferred to --dynamics
    result = invoke("predict", runs, "--dynamics", dyn, "--format", "csv")
    assert result.exit_code == 0, result.output
    printed = pd.read_csv(__import__("io").StringIO(result.output))
    assert printed.set_index("measure").at["lyapunov_max", "auc"] == 0.0


def test_a_runs_own_dynamics_csv_comes_first(tmp_path):
    runs, dyn = synthetic(tmp_path, n_seeds=4)
    frame = read_results(runs)
    rows = read_results(dyn)
    for seed in range(4):  # each run folder's own step-0 row: the exponent says the opposite
        folder = tmp_path / "runs" / f"r{seed}-0.001"
        folder.mkdir(parents=True)
        own = rows[(rows["seed"] == seed)].copy()
        own.loc[own["measure"] == "lyapunov", "value"] *= -1
        own.to_csv(folder / "dynamics.csv", index=False)
    frame.to_csv(runs, index=False)
    table, joined, _ = pr.predict(runs, dynamics=dyn, n_resamples=50)
    mine = joined[joined["lr"] == 1e-3].set_index("seed")["lyapunov_max"]
    assert mine[2] == 3.0  # from the run folder (-(-3)), not the --dynamics file (-3)
    assert joined[joined["lr"] == 3e-3].set_index("seed")["lyapunov_max"][2] == -3.0
    assert not math.isnan(table.set_index("measure").at["lyapunov_max", "auc"])


def test_predict_dynamics_bad_input_is_one_line(tmp_path):
    runs, dyn = synthetic(tmp_path, n_seeds=2)
    other = tmp_path / "other.csv"
    d = read_results(dyn)
    d["seed"] = d["seed"] + 50  # no run starts from these models
    d.to_csv(other, index=False)
    not_dyn = tmp_path / "grads.csv"
    with open(not_dyn, "w", newline="") as fh:
        csv.writer(fh).writerows([["task", "seq_len"], ["adding", 8]])
    for args, words in (([runs, "--dynamics", tmp_path / "none.csv"], "no such dynamics CSV"),
                        ([runs, "--dynamics", not_dyn], "is not a dynamics CSV"),
                        ([runs, "--dynamics", other], "matches a measurement of"),
                        ([runs], "no run of")):
        one_line_error(invoke("predict", *args), words)


# -- seqbench bench --dynamics ---------------------------------------------------------------------


def test_bench_times_one_dynamics_measurement(tmp_path):
    from seqbench.bench import BenchConfig, run_bench

    cfg = BenchConfig(cells=("lstm",), impls=("hand",), seq_lens=(6,), batch=2, hidden=3,
                      repeats=1, warmup=0, threads=1, device="cpu", probe=False,
                      scaling=False, dynamics=("lyapunov", "jacobian"))
    (row,) = run_bench(cfg)
    for m in ("lyapunov", "jacobian"):
        assert row[f"ms_{m}"] > 0
        assert row[f"{m}_ratio"] == pytest.approx(row[f"ms_{m}"] / row["ms_step"])
    assert "ms_sensitivity" not in row
    one_line_error(invoke("bench", "--dynamics", "lyapunovv", "--out", tmp_path / "b.csv"),
                   "lyapunov")
