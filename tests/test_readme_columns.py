"""The README's lists of the results files' columns are the schemas the code writes: no column
missing, none invented."""

import re
from pathlib import Path

from seqbench.grads import GRADS_COLUMNS
from seqbench.results import RUN_COLUMNS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def backticked(text: str) -> list[str]:
    return re.findall(r"`([a-z_0-9]+)`", text)


def test_the_runs_csv_table_lists_every_column():
    table = README.split("gets one row per run:", 1)[1].split("\n\n", 2)[1]
    cells = [re.sub(r"\(.*?\)", "", line.split("|")[1]) for line in table.splitlines()[2:]]
    named = [c for cell in cells for c in backticked(cell)]  # "(`ok`/`diverged`)": values
    assert sorted(named) == sorted(RUN_COLUMNS)


def test_the_grads_csv_paragraph_lists_every_column():
    paragraph = README.split("`grads.csv` columns:", 1)[1].split("\n\n", 1)[0]
    named = set(backticked(paragraph))
    # the cell columns are given as a range ("the cell columns (`cell` ... `residual`)")
    expected = set(GRADS_COLUMNS) - set(RUN_COLUMNS[RUN_COLUMNS.index("cell"):
                                                    RUN_COLUMNS.index("residual") + 1])
    assert expected <= named
    assert named - set(GRADS_COLUMNS) <= {"runs"}  # "as in `runs.csv`" is not a column name
