"""Reliability (issue 18): a resume refuses a hand-edited config.json, one damaged runs.csv line does
not make a sweep run everything after it again, checkpoints carry a checksum and every damaged one
is a one-line refusal, non-finite options are bad input and a non-finite result is ``diverged``,
and a run folder keeps no temporary files."""

import hashlib
import json
import math
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from reliability_helpers import digest, interrupt, one_line_error

import seqbench.runner as runner
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.results import RUN_COLUMNS, append_rows, read_rows
from seqbench.runner import (
    CHECKPOINT,
    CHECKPOINT_MAGIC,
    execute_run,
    load_checkpoint,
    resume_run,
    save_checkpoint,
)
from seqbench.spec import expand_spec
from seqbench.sweep import plan_sweep, recorded


def tiny(**kw) -> RunConfig:
    base = dict(task="adding", seq_len=10, cell=CellConfig("lstm", hidden=8), batch_size=8,
                steps=6, eval_every=2, eval_size=16, test_size=16, until_solved=False,
                device="cpu", threads=1)
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """OUT with one interrupted run (3 of 6 steps) and its interrupted row."""
    out = tmp_path_factory.mktemp("template") / "out"
    interrupt(tiny(), out, after=3)
    return out


@pytest.fixture
def stopped(template, tmp_path) -> Path:
    """A fresh copy of the interrupted run's folder (its OUT copied along)."""
    out = tmp_path / "out"
    shutil.copytree(template, out)
    (run_dir,) = (out / "runs").iterdir()
    return run_dir


def edit_config(run_dir: Path, **changes) -> None:
    path = run_dir / "config.json"
    saved = json.loads(path.read_text())
    for key, value in changes.items():
        if key.startswith("cell."):
            saved["cell"][key[5:]] = value
        else:
            saved[key] = value
    path.write_text(json.dumps(saved, indent=2))


def drop_rows(run_dir: Path) -> None:
    """runs.csv with its header only (the run's row lost: the folder name is all that is left)."""
    (run_dir.parent.parent / "runs.csv").write_text(",".join(RUN_COLUMNS) + "\n")


# -- 1. a hand-edited config.json is refused -----------------------------------------------------

@pytest.mark.parametrize("field, value, named", [
    ("lr", 0.01, "lr is 0.01, but the run started with 0.001"),
    ("seed", 1, "seed is 1, but the run started with 0"),
    ("cell.hidden", 16, "hidden is 16, but the run started with 8"),
])
def test_edited_config_json_is_refused_naming_the_field(stopped, field, value, named):
    edit_config(stopped, **{field: value})
    out = stopped.parent.parent
    before = digest(out)
    result = CliRunner().invoke(cli, ["run", "--resume", str(stopped)])
    line = one_line_error(result, str(stopped / "config.json"), "edited since the run started",
                          named)
    assert "refusing to resume" in line
    assert digest(out) == before  # nothing trained, nothing recorded


def test_edited_seed_is_named_from_the_folder_name_without_a_row(stopped):
    drop_rows(stopped)
    edit_config(stopped, seed=3)
    with pytest.raises(ConfigError, match=r"config\.json was edited since the run started: seed is "
                                          r"3, but the run started with 0"):
        resume_run(stopped, quiet=True)


def test_edit_that_nothing_can_name_is_still_refused(stopped):
    drop_rows(stopped)
    edit_config(stopped, eval_size=17)
    with pytest.raises(ConfigError, match=r"config\.json was edited since the run started: its "
                                          r"settings give config_id \w+, not the run's \w+"):
        resume_run(stopped, quiet=True)


@pytest.mark.parametrize("field, value, words", [
    ("steps", 300.5, "steps is 300.5, not an integer"),
    ("steps", 6.0, "steps is 6.0, not an integer"),
    ("seed", True, "seed is true, not an integer"),
    ("lr", "0.001", 'lr is "0.001", not a number'),
    ("until_solved", 0, "until_solved is 0, not true or false"),
    ("cell.hidden", 8.0, "cell.hidden is 8.0, not an integer"),
    ("cell.forget_bias", "1", 'cell.forget_bias is "1", not a number or null'),
    ("eval_seq_lens", [10.5], "eval_seq_lens is [10.5], not a list of integers"),
    ("checkpoint_every", 2.5, "checkpoint_every is 2.5, not an integer"),
])
def test_config_json_values_of_the_wrong_type_are_refused(stopped, field, value, words):
    edit_config(stopped, **{field: value})
    result = CliRunner().invoke(cli, ["run", "--resume", str(stopped)])
    one_line_error(result, str(stopped / "config.json"), words, "edited since the run started")


def test_config_json_without_config_id_is_refused(stopped):
    path = stopped / "config.json"
    saved = json.loads(path.read_text())
    del saved["config_id"]
    path.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"config\.json has no config_id"):
        resume_run(stopped, quiet=True)


def test_device_and_threads_stay_free_and_the_resumed_row_keeps_the_id(stopped):
    stored = json.loads((stopped / "config.json").read_text())["config_id"]
    edit_config(stopped, threads=2)  # where and how fast, not what: not in the id
    row, _ = resume_run(stopped, quiet=True, device="cpu", threads=1)
    assert row["status"] == "ok" and row["config_id"] == stored and row["lr"] == 1e-3
    assert row["threads"] == 1 and row["steps_taken"] == 6


# -- 2. a damaged runs.csv line does not hide the rows after it ------------------------------------

def test_stray_quote_in_a_row_does_not_make_the_sweep_rerun_the_rest(tmp_path):
    configs = [tiny(seed=s) for s in range(6)]
    out = tmp_path / "out"
    append_rows(out / "runs.csv", [{"config_id": c.config_id(), "status": "ok", "seed": c.seed}
                                   for c in configs], RUN_COLUMNS)
    path = out / "runs.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = '"' + lines[3]  # line 4 of the file: the third run's row
    path.write_text("".join(lines))
    with pytest.warns(UserWarning, match=r"skipped 1 malformed line\(s\).*line 4"):
        plan = plan_sweep(configs, out)
    assert [c.seed for c in plan.todo] == [2]  # only the damaged row's run is run again
    assert [c.seed for c in plan.done] == [0, 1, 3, 4, 5]
    with pytest.warns(UserWarning):
        assert len(recorded(out)) == 5


def test_sweep_cli_reports_the_bad_line_and_counts_every_later_row(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[settings]\ntask = "adding"\nseq_len = 10\nhidden = 8\nsteps = 2\n'
                    'batch_size = 8\neval_every = 1\neval_size = 16\ntest_size = 16\n'
                    'until_solved = false\ndevice = "cpu"\n[grid]\nseed = [0, 1, 2, 3, 4]\n')
    configs = expand_spec(spec)
    out = tmp_path / "out"
    append_rows(out / "runs.csv", [{"config_id": c.config_id(), "status": "ok"} for c in configs],
                RUN_COLUMNS)
    path = out / "runs.csv"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = '"' + lines[2]
    path.write_text("".join(lines))
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # the suite turns warnings into errors; a user sees them
        result = CliRunner().invoke(cli, ["sweep", str(spec), "--out", str(out), "--workers",
                                          "1", "--dry-run", "--no-estimate"])
    assert "line 3" in result.output and "4 already recorded" in result.output, result.output


# -- 3 and 4. checkpoints: a checksum, and every damaged file is one line --------------------------

def test_checkpoint_holds_the_checksum_of_its_bytes(stopped):
    data = (stopped / CHECKPOINT).read_bytes()
    header, body = data.split(b"\n", 1)
    assert header == CHECKPOINT_MAGIC + hashlib.sha256(body).hexdigest().encode()
    state = load_checkpoint(stopped)
    assert state["step"] == 3


@pytest.mark.parametrize("where", ["header", "hash", "early", "middle", "late", "last"])
def test_a_flipped_byte_in_the_checkpoint_is_refused(stopped, where):
    path = stopped / CHECKPOINT
    data = bytearray(path.read_bytes())
    start = len(CHECKPOINT_MAGIC) + 65
    at = {"header": 10, "hash": len(CHECKPOINT_MAGIC) + 5, "early": start + 40,
          "middle": (start + len(data)) // 2, "late": len(data) - 300, "last": len(data) - 1}[where]
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"cannot load .*checkpoint\.pt: damaged checkpoint"):
        load_checkpoint(stopped)
    out = stopped.parent.parent
    before = digest(out)
    one_line_error(CliRunner().invoke(cli, ["run", "--resume", str(stopped)]),
                   str(path), "damaged")
    assert digest(out) == before


def test_a_checkpoint_without_a_checksum_loads_with_a_warning(stopped):
    """Checkpoints written before checksums: accepted (still weights_only), with a warning."""
    state = load_checkpoint(stopped)
    torch.save(state, stopped / CHECKPOINT)
    with pytest.warns(UserWarning, match=r"checkpoint\.pt has no checksum"):
        assert load_checkpoint(stopped)["step"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result = CliRunner().invoke(cli, ["run", "--resume", str(stopped), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Warning: " in result.output and "no checksum" in result.output
    assert "not solved in 6 steps" in result.output


def _non_checkpoints(path: Path, valid: bytes) -> dict:
    def old_format_truncated():  # a checkpoint without a checksum, cut short: torch's OSError
        torch.save(load_checkpoint(path.parent), path)
        path.write_bytes(path.read_bytes()[:-20])

    return {"truncated body": lambda: path.write_bytes(valid[:len(valid) // 2]),
            "truncated header": lambda: path.write_bytes(valid[:40]),
            "old format truncated": old_format_truncated,
            "text": lambda: path.write_text("hello, this is not a checkpoint\n" * 20),
            "empty": lambda: path.write_bytes(b""),
            "a tensor": lambda: torch.save(torch.zeros(3), path),
            "another dict": lambda: torch.save({"weights": torch.zeros(3)}, path),
            "a checksummed tensor": lambda: save_checkpoint(path.parent, torch.zeros(3))}


@pytest.mark.parametrize("damage", ["truncated body", "truncated header", "old format truncated",
                                    "text", "empty", "a tensor", "another dict",
                                    "a checksummed tensor"])
def test_damaged_checkpoint_is_a_one_line_refusal(stopped, damage):
    path = stopped / CHECKPOINT
    _non_checkpoints(path, path.read_bytes())[damage]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a refusal, not a warning and a crash
        with pytest.raises(ConfigError, match=r"cannot load .*checkpoint\.pt"):
            load_checkpoint(stopped)
    out = stopped.parent.parent
    before = digest(out)
    one_line_error(CliRunner().invoke(cli, ["run", "--resume", str(stopped)]), str(path))
    assert digest(out) == before


# -- 5. non-finite numbers -----------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    (dict(lr=math.inf), "lr must be a finite number, got inf"),
    (dict(lr=-math.inf), "lr must be a finite number, got -inf"),
    (dict(lr=math.nan), "lr must be a finite number, got nan"),
    (dict(clip=math.inf), "clip must be a finite number"),
    (dict(clip=math.nan), "clip must be a finite number"),
    (dict(cell=CellConfig("rnn", hidden=8, init_gain=math.inf)),
     "init_gain must be a finite number, got inf"),
    (dict(cell=CellConfig("lstm", hidden=8, forget_bias=math.nan)),
     "forget_bias must be a finite number, got nan"),
    (dict(cell=CellConfig("lstm", hidden=8, forget_bias=-math.inf)),
     "forget_bias must be a finite number, got -inf"),
])
def test_non_finite_options_are_refused(change, words):
    with pytest.raises(ConfigError, match=words):
        tiny(**change).validate()


@pytest.mark.parametrize("args, words", [
    (["--lr", "inf"], "lr must be a finite number"),
    (["--lr", "nan"], "lr must be a finite number"),
    (["--clip", "inf"], "clip must be a finite number"),
    (["--cell", "rnn", "--init-gain", "inf"], "init_gain must be a finite number"),
    (["--forget-bias", "nan"], "forget_bias must be a finite number"),
])
def test_non_finite_cli_options_are_one_line_errors(tmp_path, args, words):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", "--task", "adding", "--seq-len", "10", "--hidden",
                                      "8", "--steps", "2", "--out", str(out), "--quiet", *args])
    one_line_error(result, words)
    assert not out.exists()


@pytest.mark.parametrize("line, words", [
    ("lr = inf", "lr must be a finite number"),
    ("init_gain = inf", "init_gain must be a finite number"),
    ("forget_bias = nan", "forget_bias must be a finite number"),
])
def test_non_finite_spec_values_are_refused(tmp_path, line, words):
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[settings]\ntask = "adding"\ncell = "{"rnn" if "gain" in line else "lstm"}"'
                    f'\nhidden = 8\nsteps = 2\n{line}\n[grid]\nseed = [0]\n')
    with pytest.raises(ConfigError, match=words):
        expand_spec(spec)


def test_a_non_finite_final_metric_is_diverged_never_ok(tmp_path):
    """One step with lr 1e308: a finite training loss, then weights of inf; the run cannot be
    ``ok`` with an empty final loss."""
    row, summary = execute_run(tiny(lr=1e308, steps=1, eval_every=1), out=tmp_path, quiet=True)
    assert row["status"] == "diverged", row
    assert "diverged" in summary and "nan" not in summary.lower()
    (kept,) = read_rows(tmp_path / "runs.csv")
    assert kept["status"] == "diverged" and kept["solved"] == "False"


# -- 6. no leftovers -----------------------------------------------------------------------------

LEFTOVERS = ["config.tmp", "row.tmp", ".checkpoint.999999.tmp", ".curve.csv.tmp"]


def test_resume_removes_the_temporary_files_of_a_killed_session(stopped):
    for name in LEFTOVERS:
        (stopped / name).write_bytes(b"half written")
    row, _ = resume_run(stopped, quiet=True)
    assert row["status"] == "ok"
    assert sorted(p.name for p in stopped.iterdir()) == ["checkpoint.pt", "config.json",
                                                         "curve.csv"]


@pytest.mark.parametrize("kw, extra", [
    ({}, []),
    (dict(probe_every=3), ["grads.csv"]),
    (dict(eval_seq_lens=(12,)), ["lengths.csv"]),
])
def test_a_finished_run_folder_holds_only_its_files(tmp_path, kw, extra):
    row, _ = execute_run(tiny(steps=2, eval_every=1, **kw), out=tmp_path, quiet=True)
    files = sorted(p.name for p in Path(row["run_dir"]).iterdir())
    assert files == sorted(["config.json", "curve.csv", *extra])
    row, _ = execute_run(tiny(steps=2, eval_every=1, **kw), out=tmp_path / "c", quiet=True,
                         checkpoint_every=1)
    files = sorted(p.name for p in Path(row["run_dir"]).iterdir())
    assert files == sorted(["config.json", "curve.csv", "checkpoint.pt", *extra])
    # OUT: runs.csv and its lock, which stays (shared by every process appending to runs.csv)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [".runs.csv.lock",
                                                                         "runs.csv"]


def test_interrupted_run_folder_holds_only_its_files(stopped):
    assert sorted(p.name for p in stopped.iterdir()) == ["checkpoint.pt", "config.json",
                                                         "curve.csv"]


def test_failed_writes_leave_no_temporary_file(tmp_path, monkeypatch):
    def fail(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(runner.os, "replace", fail)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, {"step": 1})
    with pytest.raises(OSError):
        runner._write_json(tmp_path / "row.json", {"a": 1})
    with pytest.raises(OSError):
        runner._rewrite_csv(tmp_path / "curve.csv", ["a"], [{"a": 1}])
    assert list(tmp_path.iterdir()) == []


def test_a_kept_row_that_cannot_be_written_leaves_no_row_tmp(stopped, monkeypatch, tmp_path):
    """runs.csv, row.json and the fallback in the temp folder all fail (the disk is full):
    no half-written file stays, and the error line holds the row itself."""
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", "runs.csv")

    monkeypatch.setattr(runner, "append_rows", full)
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path / "tmp"))
    real_write = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.suffix == ".tmp":
            real_write(self, "{half")
            raise OSError(28, "No space left on device", str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(ConfigError, match=r"the row, to save as .*row\.json.*\{.*\"run_id\""):
        resume_run(stopped, quiet=True)
    names = sorted(p.name for p in stopped.iterdir())
    assert not [n for n in names if n.endswith(".tmp")], names
    assert not [p for p in (tmp_path / "tmp" / "seqbench-kept-rows").rglob("*") if p.is_file()]
    assert os.path.exists(stopped / "config.json")
