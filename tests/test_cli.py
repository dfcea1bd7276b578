"""The command line through CliRunner: a successful run, and every bad input: one line, exit 2,
no traceback, nothing written."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from clihelp import invoke

from seqbench.results import RUN_COLUMNS
from seqbench.runner import CURVE_COLUMNS

FAST = ["--seq-len", "5", "--hidden", "8", "--steps", "3", "--eval-every", "2", "--eval-size", "16",
        "--batch-size", "8", "--quiet"]
NUMBER = r"[-+0-9.e]+|nan|inf"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_run_writes_row_folder_and_summary(tmp_path):
    result = invoke(["run", "--task", "adding", *FAST, "--out", "out"], tmp_path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1, result.output  # no progress bar when not a terminal
    assert re.fullmatch(
        rf"adding T=5 lstm/builtin seed 0: not solved in 3 steps, test MSE ({NUMBER}) "
        rf"\(({NUMBER})% of baseline\), [0-9.]+s",
        lines[0],
    ), lines[0]

    rows = read_csv(tmp_path / "out" / "runs.csv")
    assert len(rows) == 1
    row = rows[0]
    assert list(row) == RUN_COLUMNS
    assert row["task"] == "adding" and row["variant"] == "halves" and row["seq_len"] == "5"
    assert row["total_steps"] == "5" and row["cell"] == "lstm" and row["impl"] == "builtin"
    assert row["status"] == "ok" and row["steps_taken"] == "3" and row["solved"] == "False"
    assert float(row["baseline_loss"]) == pytest.approx(1 / 6)
    assert float(row["loss_ratio"]) == pytest.approx(float(row["final_loss"]) * 6)
    assert int(row["n_params"]) == 4 * 8 * (2 + 8 + 2) + 8 + 1  # LSTM(2 -> 8) + Linear(8 -> 1)
    assert row["device"] == "cpu" and row["torch_version"] == torch.__version__
    # the summary reports the row's loss
    mse = float(re.search(rf"MSE ({NUMBER})", lines[0]).group(1))
    assert mse == pytest.approx(float(row["final_loss"]), rel=1e-3)

    run_dir = tmp_path / "out" / "runs" / row["run_id"]
    assert run_dir.is_dir() and os.path.samefile(tmp_path / row["run_dir"], run_dir)  # as given
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run_id"] == row["run_id"] and config["config_id"] == row["config_id"]
    assert config["seq_len"] == 5 and config["steps"] == 3 and config["cell"]["hidden"] == 8
    curve = read_csv(run_dir / "curve.csv")
    assert list(curve[0]) == CURVE_COLUMNS
    assert [int(p["step"]) for p in curve] == [0, 2, 3]
    assert float(curve[-1]["eval_loss"]) == pytest.approx(float(row["val_loss"]))  # validation
    assert row["final_loss"] != row["val_loss"] and row["test_size"] == "1024"  # reported: test
    assert (row["lag_min"], row["lag_max"]) == ("3", "4") and row["val_solved"] == "False"


def test_second_run_appends_a_row_and_a_new_folder(tmp_path):
    for args in (["run", *FAST], ["run", "--task", "copy", "--cell", "gru", "--impl", "hand", *FAST]):
        result = invoke(args, tmp_path)
        assert result.exit_code == 0, result.output
    assert re.fullmatch(
        rf"copy T=5 gru/hand seed 0: not solved in 3 steps, test loss ({NUMBER}) \(({NUMBER})% of "
        rf"baseline\), accuracy [0-9.]+, [0-9.]+s",
        result.output.strip(),
    ), result.output
    rows = read_csv(tmp_path / "seqbench-results" / "runs.csv")  # the default --out
    assert [r["task"] for r in rows] == ["adding", "copy"]
    assert rows[1]["total_steps"] == "25" and rows[1]["kernel"] == "hand (fused)"
    assert len({r["run_id"] for r in rows}) == 2
    assert len(list((tmp_path / "seqbench-results" / "runs").iterdir())) == 2


def test_diverged_run_is_a_result(tmp_path):
    args = ["run", "--cell", "rnn", "--impl", "hand", "--nonlinearity", "relu", "--lr", "1000",
            "--clip", "0", "--seq-len", "20", "--hidden", "16", "--batch-size", "16", "--steps",
            "50", "--eval-size", "16", "--quiet"]
    result = invoke(args, tmp_path)
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"adding T=20 rnn/hand seed 0: diverged at step \d+ \(loss not finite\), "
                        r"[0-9.]+s", result.output.strip()), result.output
    (row,) = read_csv(tmp_path / "seqbench-results" / "runs.csv")
    assert row["status"] == "diverged" and row["solved"] == "False"
    assert int(row["steps_taken"]) < 50


def test_python_m_seqbench_help():
    for args in (["--help"], ["run", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "seqbench", *args], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "Usage: seqbench" in proc.stdout
        assert "Traceback" not in proc.stderr
    assert "--seq-len" in proc.stdout and "delayed_recall" in proc.stdout


def test_version(tmp_path):
    from seqbench import __version__

    result = invoke(["--version"], tmp_path)
    assert result.exit_code == 0 and __version__ in result.output


BAD_INPUTS = {
    "unknown task": (["--task", "sorting"], ["adding", "copy", "delayed_recall"]),
    "unknown cell": (["--cell", "transformer"], ["rnn", "lstm", "gru"]),
    "unknown impl": (["--impl", "cudnn"], ["builtin", "hand"]),
    "variant of another task": (["--task", "copy", "--variant", "halves"], ["arjovsky", "tcn"]),
    "unknown variant": (["--task", "delayed_recall", "--variant", "loud"], ["noisy", "blank"]),
    "unknown adding variant": (["--variant", "tcn"], ["halves", "anywhere"]),
    "seq-len 0": (["--seq-len", "0"], ["1"]),
    "seq-len negative": (["--seq-len", "-4"], ["1"]),
    "adding seq-len 1": (["--task", "adding", "--seq-len", "1"], ["2"]),
    "nonlinearity on lstm": (["--cell", "lstm", "--nonlinearity", "relu"], ["rnn"]),
    "nonlinearity on gru": (["--cell", "gru", "--nonlinearity", "relu"], ["rnn"]),
    "elu with builtin": (["--cell", "rnn", "--impl", "builtin", "--nonlinearity", "elu"],
                         ["tanh", "relu"]),
    "unknown nonlinearity": (["--cell", "rnn", "--nonlinearity", "swish"], ["tanh", "relu"]),
    "negative lr": (["--lr", "-0.1"], ["0"]),
    "zero lr": (["--lr", "0"], ["0"]),
    "negative clip": (["--clip", "-1"], ["0"]),
    "zero hidden": (["--hidden", "0"], ["1"]),
    "zero layers": (["--layers", "0"], ["1"]),
    "zero batch": (["--batch-size", "0"], ["1"]),
    "negative steps": (["--steps", "-1"], ["1"]),
    "zero steps": (["--steps", "0"], ["1"]),
    "zero eval-every": (["--eval-every", "0"], ["1"]),
    "negative seed": (["--seed", "-1"], ["0"]),
    "zero threads": (["--threads", "0"], ["1"]),
    "unknown device": (["--device", "tpu"], ["auto", "cpu", "cuda"]),
    "unknown option": (["--epochs", "3"], []),
    "match-params with hidden": (["--match-params", "5000", "--hidden", "32"], ["--hidden"]),
    "zero test-size": (["--test-size", "0"], ["1"]),
    "non-numeric seq-len": (["--seq-len", "ten"], []),
}


def assert_one_line_error(result, allowed=()):
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in allowed:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("args,allowed", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, allowed):
    result = invoke(["run", *args, "--steps", "1"] if "--steps" not in args else ["run", *args],
                    tmp_path)
    assert_one_line_error(result, allowed)
    assert list(tmp_path.iterdir()) == []  # no results/, no runs.csv, no run folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_without_cuda(tmp_path):
    result = invoke(["run", *FAST, "--device", "cuda"], tmp_path)
    assert_one_line_error(result, ["cuda", "cpu"])
    assert list(tmp_path.iterdir()) == []


def test_out_is_a_regular_file(tmp_path):
    (tmp_path / "afile").write_text("mine\n")
    for out in ("afile", os.path.join("afile", "sub")):
        result = invoke(["run", *FAST, "--out", out], tmp_path)
        assert_one_line_error(result)
        assert "afile" in result.output
        assert [p.name for p in tmp_path.iterdir()] == ["afile"]
        assert (tmp_path / "afile").read_text() == "mine\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_out_is_an_unwritable_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        result = invoke(["run", *FAST, "--out", "ro"], tmp_path)
        assert_one_line_error(result)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_foreign_runs_csv_fails_before_training_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    foreign = b"name,score\nalice,3\n"
    (out / "runs.csv").write_bytes(foreign)
    result = invoke(["run", *FAST, "--out", "out"], tmp_path)
    assert_one_line_error(result, ["runs.csv"])
    assert (out / "runs.csv").read_bytes() == foreign
    assert not (out / "runs").exists()
