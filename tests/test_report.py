"""``seqbench report``: the static site of a tiny results folder made by real (very short) runs.
Every runs.csv row is in the index, every link and image resolves inside the site, labels are
escaped, and bad input is one line, exit 2, nothing written."""

import csv
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from click.testing import CliRunner

from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.report import MARKER, build_report
from seqbench.runner import execute_run

#: an arm label that breaks the page unless escaped
NASTY = '<b>lstm & "co"</b>'


def _run(out, cell="lstm", seed=0, label="", probe_every=0):
    cfg = RunConfig(task="adding", seq_len=5, cell=CellConfig(cell=cell, hidden=8), steps=4,
                    eval_every=2, eval_size=16, test_size=16, batch_size=8, seed=seed,
                    probe_every=probe_every, label=label, device="cpu", threads=1)
    execute_run(cfg, out=out, quiet=True)


def make_results(root: Path) -> Path:
    """A results folder: 3 runs (two seeds of a labelled LSTM arm, one probed; one RNN), its
    leaderboards and a figure; a nested sweep with one run, a published.csv and an empty
    leaderboard.csv; a bench CSV."""
    results = root / "results"
    _run(results, seed=0, label=NASTY, probe_every=2)
    _run(results, seed=1, label=NASTY)
    _run(results, cell="rnn")
    _run(results / "sub", cell="gru")
    result = CliRunner().invoke(cli, ["leaderboard", "--runs", str(results / "runs.csv"),
                                      "--format", "csv"])
    assert result.exit_code == 0, result.output
    from matplotlib.figure import Figure  # any PNG under the results folder is shown

    fig = Figure(figsize=(2, 1.5))
    fig.subplots().plot([0, 1], [1, 0])
    (results / "figures").mkdir()
    fig.savefig(results / "figures" / "solve_rate.png", dpi=50)
    fig.savefig(results / "figures" / "odd name #1 &.png", dpi=50)  # a link must still work
    (results / "bench.csv").write_text("bench_id,cell,ms_step\nb1,rnn,1.5\nb1,lstm,2.5\n")
    (results / "sub" / "published.csv").write_text(  # as `seqbench published` writes it
        "arm,paper,seq_len,published_outcome,measured_outcome,agreement\n"
        "lstm,Hochreiter 1997,5,solved,baseline,disagree\nrnn,Bengio 1994,5,baseline,baseline,agree\n")
    (results / "sub" / "leaderboard.csv").write_text("")  # damaged: a note, not a failed report
    return results


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
            for p in sorted(folder.rglob("*"))}


_BUILT: dict = {}  # the session's site, shared with test_report_browser.py (which imports this)


def built_site(tmp_path_factory) -> tuple[Path, Path]:
    """(results folder, site folder), built once per session."""
    if "site" not in _BUILT:
        root = tmp_path_factory.mktemp("report")
        results = make_results(root)
        before = snapshot(results)
        index = build_report(results, root / "site")
        assert snapshot(results) == before, "the report wrote inside the results folder"
        _BUILT["site"] = results, index.parent
    return _BUILT["site"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return built_site(tmp_path_factory)


class Links(HTMLParser):
    """Every href/src of a page, the rows of each table (by id), the text."""

    def __init__(self):
        super().__init__()
        self.refs, self.rows, self.text = [], {}, []
        self._table = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("a", "link") and "href" in a:
            self.refs.append(a["href"])
        if tag in ("img", "script") and "src" in a:
            self.refs.append(a["src"])
        if tag == "table":
            self._table = a.get("id")
            self.rows.setdefault(self._table, [])
        if tag == "tr" and self._table is not None:
            self.rows[self._table].append(a)

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> Links:
    p = Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_index_has_every_run_leaderboard_row_and_figure(site):
    results, out = site
    index = parse(out / "index.html")
    for folder, slug in ((results, "top"), (results / "sub", "sub")):
        body_rows = len(index.rows[f"sweep-{slug}-runs"]) - 1  # minus the header row
        assert body_rows == len(rows_of(folder / "runs.csv")) > 0
    boards = {"leaderboard_headline.csv": 0, "leaderboard.csv": 1}
    for name, i in boards.items():
        assert len(index.rows[f"sweep-top-board-{i}"]) - 1 == len(rows_of(results / name))
    assert len(index.rows["bench-0"]) - 1 == 2
    assert len(index.rows["published-0"]) - 1 == 2
    assert "Cannot read leaderboard.csv" in "".join(index.text)
    assert "files/figures/solve_rate.png" in index.refs
    assert (out / "files/figures/solve_rate.png").read_bytes() == \
        (results / "figures/solve_rate.png").read_bytes()
    assert (out / "assets/report.js").is_file() and (out / "assets/report.css").is_file()
    assert (out / MARKER).is_file()


def test_every_link_and_image_resolves_inside_the_site(site):
    _, out = site
    pages = sorted(out.rglob("*.html"))
    assert len(pages) > 5
    for page in pages:
        for ref in parse(page).refs:
            parts = urlsplit(ref)
            assert not parts.scheme and not parts.netloc, f"{page}: external link {ref}"
            if not parts.path:  # "#anchor" within the page
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_file(), f"{page.relative_to(out)}: {ref} does not exist"
            assert out.resolve() in target.parents, f"{page}: {ref} leaves the site"


def test_a_page_per_run_and_per_arm_with_figures(site):
    results, out = site
    for folder, slug in ((results, "top"), (results / "sub", "sub")):
        for row in rows_of(folder / "runs.csv"):
            page = out / "sweeps" / slug / "runs" / f"{row['run_id']}.html"
            assert page.is_file()
            html = page.read_text()
            assert row["config_id"] in html and row["torch_version"] in html  # provenance
            assert (page.with_suffix(".curve.png")).is_file()
            probed = row["probe_every"] != "0"
            assert page.with_suffix(".grads.png").is_file() == probed
    arms = list((out / "sweeps" / "top" / "arms").glob("*.html"))
    assert len(arms) == 2  # the labelled LSTM (2 seeds) and the RNN
    assert len(list((out / "sweeps" / "top" / "arms").glob("*.curves.png"))) == 1


def test_labels_are_escaped(site):
    _, out = site
    for page in [out / "index.html", *(out / "sweeps").rglob("*.html")]:
        html = page.read_text()
        assert NASTY not in html and "<b>lstm" not in html, page
    index = (out / "index.html").read_text()
    assert "&lt;b&gt;lstm &amp; &quot;co&quot;&lt;/b&gt;" in index
    assert NASTY in "".join(parse(out / "index.html").text)  # shown as text


def test_rebuild_replaces_the_site_and_reuses_figures(site, tmp_path):
    results, out = site
    copy = tmp_path / "site"
    shutil.copytree(out, copy)
    (copy / "stale.html").write_text("old")
    (tmp_path / ".site.tmp-999999999").mkdir()  # left by a build that was killed
    said = []
    build_report(results, copy, progress=said.append)  # unchanged sources: figures reused
    assert not (copy / "stale.html").exists()
    assert not any(line.startswith("drawing") for line in said), said
    assert list(copy.rglob("*.grads.png"))
    build_report(results, copy, run_figures=False)  # the figures go, the pages say why
    assert not list((copy / "sweeps").rglob("*.png"))  # the results' own figures only
    assert len(list((copy / "files").rglob("*.png"))) == 2
    assert "--no-run-figures" in next((copy / "sweeps/top/runs").glob("*.html")).read_text()
    assert not [p for p in tmp_path.iterdir() if p.name != "site"], "temporary folders left"


def invoke(args):
    return CliRunner().invoke(cli, ["report", *map(str, args)])


@pytest.mark.parametrize("case", ["missing", "no_runs", "out_is_file", "out_inside", "out_contains",
                                  "out_foreign"])
def test_bad_input_is_one_line_exit_2_nothing_written(site, tmp_path, case):
    results, _ = site
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("keep")
    src, out = {
        "missing": (tmp_path / "nope", tmp_path / "o"),
        "no_runs": (empty, tmp_path / "o"),
        "out_is_file": (results, a_file),
        "out_inside": (results, results / "report"),
        "out_contains": (results, results.parent),
        "out_foreign": (results, foreign),
    }[case]
    before = snapshot(tmp_path), snapshot(results)
    result = invoke([src, "-o", out, "-q"])
    assert result.exit_code == 2, result.output
    assert re.fullmatch(r"Error: [^\n]+\n", result.output), result.output
    assert (snapshot(tmp_path), snapshot(results)) == before


def test_cli_writes_the_site(site, tmp_path):
    results, _ = site
    result = invoke([results / "sub", "-o", tmp_path / "r", "--no-run-figures", "-q"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {tmp_path / 'r' / 'index.html'}")
    assert os.path.isfile(tmp_path / "r" / "index.html")
