"""End-to-end smoke test: one short run through the command line."""

import csv

from click.testing import CliRunner

from seqbench.cli import cli


def test_run_writes_one_row(tmp_path):
    result = CliRunner().invoke(
        cli, ["run", "--task", "adding", "--seq-len", "5", "--steps", "3", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("adding T=5 lstm/builtin seed 0: not solved in 3 steps")
    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["steps_taken"] == "3"
