"""results/README.md states only what the committed CSVs show: it is regenerated from them."""

from __future__ import annotations

import runpy
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"


def test_results_readme_is_recomputed_from_the_committed_csvs():
    readme = runpy.run_path(str(RESULTS / "readme.py"), run_name="readme")
    assert readme["main"](["--check"]) == 0, (
        "results/README.md differs from what the CSVs give: run python results/readme.py")


def test_the_check_fails_when_a_number_changes(tmp_path, monkeypatch):
    """The check is not vacuous: a README whose numbers differ from the CSVs is caught."""
    readme = runpy.run_path(str(RESULTS / "readme.py"), run_name="readme")
    text = readme["render"]()
    changed = text.replace("0.", "9.", 1)
    assert changed != text
    fake = tmp_path / "README.md"
    fake.write_text(changed)
    main = readme["main"]
    monkeypatch.setitem(main.__globals__, "HERE", tmp_path)
    monkeypatch.setitem(main.__globals__, "render", lambda: text)
    assert main(["--check"]) == 1
