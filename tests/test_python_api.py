"""The README's Python API section runs as written (in a temporary folder)."""

import re
from pathlib import Path

import pandas as pd

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_block() -> str:
    section = README.read_text(encoding="utf-8").split("\n## Python API\n", 1)[1].split("\n## ")[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def test_the_readme_python_api_block_runs(tmp_path, monkeypatch, capsys):
    block = python_api_block()
    assert len([line for line in block.splitlines() if line.strip()]) <= 14
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md (Python API)", "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.startswith("delayed_recall T=25 lstm/builtin seed 0: ")
    runs = pd.read_csv(tmp_path / "my-results" / "runs.csv")
    assert list(runs["forget_bias"]) == [3.0] and list(runs["step_budget"]) == [200]
    assert namespace["row"]["run_id"] == runs["run_id"].iloc[0]
    assert (tmp_path / "decay.png").stat().st_size > 10_000
    assert set(namespace["grads"]["step"]) == {0}
