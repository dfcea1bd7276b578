"""The report's pages: the index, a page per arm, a page per run (``seqbench.report`` builds the
site and calls these; ``seqbench.report.html`` renders the fragments)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from seqbench.report import (
    PROVENANCE_COLUMNS,
    RESULT_COLUMNS,
    RUN_TABLE_COLUMNS,
    Arm,
    Sweep,
    _norm,
    _read,
    _rel,
    _Site,
    _visible,
    run_folder,
)
from seqbench.report.html import data_table, esc, figure, kv_table, link

INDEX = "index.html"


def _sweep_name(site: _Site, sweep: Sweep) -> str:
    return site.results.name + ("" if sweep.rel == "." else "/" + sweep.rel)


def _anchor(sweep: Sweep) -> str:
    return f"sweep-{sweep.slug}"


def _leaderboards(sweep: Sweep) -> list[Path]:
    """The sweep folder's leaderboard CSVs: the headline, the leaderboard, then the others."""
    files = sorted(p for p in sweep.folder.glob("leaderboard*.csv") if p.is_file())
    first = {"leaderboard_headline.csv": 0, "leaderboard.csv": 1}
    return sorted(files, key=lambda p: (first.get(p.name, 2), p.name))


def _arm_matcher(sweep: Sweep, header: list[str]):
    """A function from a leaderboard row to the arms it stands for (by the keys it has)."""
    keys = [k for k in sweep.keys if k in header]
    index = [sweep.keys.index(k) for k in keys]
    by_key: dict[tuple, list[Arm]] = {}
    for arm in sweep.arms.values():
        by_key.setdefault(tuple(arm.key[i] for i in index), []).append(arm)

    def arms_of(row: dict) -> list[Arm]:
        if not keys:
            return []
        found = by_key.get(tuple(_norm(row.get(k)) for k in keys), [])
        return sorted(found, key=lambda a: _number(a.keys.get("seq_len", "")))

    return arms_of


def _n(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")


def _arm_lead(sweep: Sweep, header: list[str], page: str):
    """The leading column of a leaderboard table: links to the row's arm page(s)."""
    arms_of = _arm_matcher(sweep, header)

    def cell(row: dict) -> tuple[str, str]:
        arms = arms_of(row)
        if not arms:
            return "", '<span class="muted">-</span>'
        if len(arms) == 1:
            name = arms[0].runs[0].get("label") or arms[0].keys.get("cell", "arm")
            return name, link(_rel(page, arms[0].page), "runs")
        differ = [k for k in sweep.keys if len({_norm(a.keys.get(k)) for a in arms}) > 1]

        def name(a: Arm) -> str:  # e.g. "T=25", "T=25 lr=0.001"
            return " ".join(f"{'T' if k == 'seq_len' else k}={a.keys.get(k, '')}" for k in differ)

        links = " &middot; ".join(link(_rel(page, a.page), name(a)) for a in arms)
        return " ".join(a.keys.get("seq_len", "") for a in arms), links

    return ("runs", cell)


def _runs_table(site: _Site, sweep: Sweep, rows: list[dict], page: str, table_id: str) -> str:
    columns = [c for c in RUN_TABLE_COLUMNS if c in sweep.header]

    def run_link(row: dict) -> str | None:
        target = sweep.run_pages.get(row.get("run_id", ""))
        return _rel(page, target) if target else None

    return data_table(table_id, columns, rows, links={"run_id": run_link})


def _status_counts(rows: list[dict]) -> str:
    counts = Counter(r.get("status", "") or "?" for r in rows)
    return ", ".join(f"{n} {esc(s)}" for s, n in counts.most_common())


def _figure_or_note(site: _Site, page: str, file: str, caption: str, absent: str) -> str:
    if (site.tmp / file).is_file():
        return figure(_rel(page, file), caption)
    if file in site.failed:
        return f'<p class="note">{esc(caption)}: not drawn ({esc(site.failed[file])}).</p>'
    if not site.run_figures:
        return (f'<p class="note">{esc(caption)}: not drawn (the report was built with '
                '<code>--no-run-figures</code>).</p>')
    return f'<p class="note">{esc(caption)}: {esc(absent)}</p>'


# -- the index -------------------------------------------------------------------------------------


def _read_or_note(path: Path) -> tuple[list[str], list[dict], str]:
    """A CSV's header and rows, or (nothing and) a note saying why it cannot be read: one bad
    table does not stop the report."""
    from seqbench.errors import ConfigError

    try:
        header, rows = _read(path)
    except (ConfigError, OSError) as e:
        return [], [], f'<p class="note">Cannot read {esc(path.name)}: {esc(e)}</p>'
    return header, rows, ""


def _csv_section(site: _Site, files: list[Path], id_prefix: str, page: str) -> str:
    parts = []
    for i, path in enumerate(files):
        header, rows, note = _read_or_note(path)
        rel = path.relative_to(site.results).as_posix()
        if note:
            parts.append(f"<h3>{esc(rel)}</h3>{note}")
            continue
        parts.append(f"<h3>{esc(rel)} <span class=\"muted\">({len(rows)} rows)</span></h3>")
        parts.append(data_table(f"{id_prefix}-{i}", header, rows))
    return "\n".join(parts)


def write_index(site: _Site, sweeps: list[Sweep]) -> None:
    results = site.results
    page = INDEX
    shown: set[Path] = set()
    toc, body = [], []

    toc.append(("sweeps", "Sweeps"))
    body.append('<h2 id="sweeps">Sweeps</h2>')
    body.append(f"<p>{len(sweeps)} folder{'s' if len(sweeps) > 1 else ''} with a runs.csv under "
                f"<code>{esc(results)}</code>; each below with its leaderboards and runs. Click a "
                "column header to sort; the boxes above a table filter its rows.</p>")
    rows = []
    for s in sweeps:
        rows.append(f"<tr><td>{link('#' + _anchor(s), _sweep_name(site, s))}</td>"
                    f'<td class="n">{len(s.rows)}</td><td class="n">{len(s.arms)}</td>'
                    f"<td>{_status_counts(s.rows)}</td></tr>")
    body.append('<div class="scroll"><table class="kv"><thead><tr><th>sweep</th><th>runs</th>'
                f'<th>arms</th><th>status</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')

    for s in sweeps:
        anchor = _anchor(s)
        toc.append((anchor, _sweep_name(site, s)))
        body.append(f'<h2 id="{esc(anchor)}">{esc(_sweep_name(site, s))}</h2>')
        body.append(f"<p>{_n(len(s.rows), 'row')} in runs.csv ({_status_counts(s.rows)}), "
                    f"{_n(len(s.arms), 'arm')} (configuration and T).</p>")
        boards = _leaderboards(s)
        if not boards:
            body.append('<p class="note">No leaderboard CSV in this folder (<code>seqbench '
                        'leaderboard --runs ' + esc(s.folder / "runs.csv") + "</code> writes one).</p>")
        for i, path in enumerate(boards):
            shown.add(path)
            header, board, note = _read_or_note(path)
            if note:
                body.append(f"<h3>{esc(path.name)}</h3>{note}")
                continue
            body.append(f"<h3>{esc(path.name)} <span class=\"muted\">({len(board)} rows)</span></h3>")
            body.append(data_table(f"{anchor}-board-{i}", header, board,
                                   lead=[_arm_lead(s, header, page)]))
        shown.add(s.folder / "runs.csv")
        many = len(s.rows) > 200
        body.append(f"<details{'' if many else ' open'}><summary><b>Runs</b>: the "
                    f"{_n(len(s.rows), 'row')} of "
                    f"{esc(s.rel + '/' if s.rel != '.' else '')}runs.csv</summary>")
        body.append(_runs_table(site, s, s.rows, page, f"{anchor}-runs"))
        body.append("</details>")

    pngs = sorted(p for p in results.rglob("*.png") if p.is_file() and _visible(p, results))
    toc.append(("figures", "Figures"))
    body.append('<h2 id="figures">Figures</h2>')
    if not pngs:
        body.append('<p class="note">No PNG figures in the results folder.</p>')
    by_folder: dict[str, list[str]] = {}
    for p in pngs:
        rel = p.relative_to(results).as_posix()
        target = site.tmp / "files" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)
        by_folder.setdefault(str(Path(rel).parent.as_posix()), []).append(rel)
    for folder, rels in by_folder.items():
        name = site.results.name + ("/" + folder if folder != "." else "")
        body.append(f"<h3>{esc(name)}</h3>")
        body.append('<div class="figs">' + "".join(figure(f"files/{r}", r) for r in rels) + "</div>")

    csvs = sorted(p for p in results.rglob("*.csv") if p.is_file() and _visible(p, results))
    run_folders = {s.folder / "runs" for s in sweeps}
    csvs = [p for p in csvs if not any(f in p.parents for f in run_folders)]
    published = [p for p in csvs if p.name.startswith("published")]
    bench = [p for p in csvs if p.name.startswith("bench")]
    toc.append(("published", "Published vs measured"))
    body.append('<h2 id="published">Published vs measured</h2>')
    if published:
        body.append(_csv_section(site, published, "published", page))
    else:
        body.append('<p class="note">No published.csv under the results folder (<code>seqbench '
                    "published</code> writes one beside the runs CSV of the papers' sweep).</p>")
    toc.append(("bench", "Speed benchmarks"))
    body.append('<h2 id="bench">Speed benchmarks</h2>')
    if bench:
        body.append('<p class="note">Timings belong to the machine they ran on: compare ratios.</p>')
        body.append(_csv_section(site, bench, "bench", page))
    else:
        body.append('<p class="note">No bench*.csv under the results folder (<code>seqbench '
                    "bench</code> writes them).</p>")
    shown |= set(published) | set(bench)
    rest = [p.relative_to(results).as_posix() for p in csvs if p not in shown]
    if rest:
        toc.append(("other", "Other data files"))
        body.append('<h2 id="other">Other data files</h2><p class="note">Not shown as tables (see '
                    "the figures drawn from them):</p><ul>"
                    + "".join(f"<li><code>{esc(r)}</code></li>" for r in rest) + "</ul>")

    nav = ('<nav class="toc"><ul>' + "".join(f"<li>{link('#' + a, t)}</li>" for a, t in toc)
           + "</ul></nav>")
    intro = (f"<p>Results folder <code>{esc(results)}</code>: {sum(len(s.rows) for s in sweeps)} "
             f"runs in {len(sweeps)} sweep{'s' if len(sweeps) > 1 else ''}.</p>")
    site.page(page, f"seqbench report: {results.name}", intro + nav + "\n".join(body))


# -- arm and run pages ---------------------------------------------------------------------------


def write_sweep_pages(site: _Site, sweep: Sweep) -> None:
    matchers = []  # per leaderboard file: its header and, per arm, its rows there
    for path in _leaderboards(sweep):
        header, rows, _ = _read_or_note(path)
        arms_of = _arm_matcher(sweep, header)
        mine: dict[int, list[dict]] = {}
        for r in rows:
            for arm in arms_of(r):
                mine.setdefault(id(arm), []).append(r)
        matchers.append((path, header, mine))
    sweep_crumb = (f"{INDEX}#{_anchor(sweep)}", _sweep_name(site, sweep))
    for arm in sweep.arms.values():
        _arm_page(site, sweep, arm, matchers, sweep_crumb)
    for run_id, page in sweep.run_pages.items():
        _run_page(site, sweep, run_id, page, sweep_crumb)


def _arm_page(site: _Site, sweep: Sweep, arm: Arm, matchers, sweep_crumb) -> None:
    page = arm.page
    body = [f"<p>{len(arm.runs)} row{'s' if len(arm.runs) > 1 else ''} of runs.csv "
            f"({_status_counts(arm.runs)}) share this configuration: the seeds of one arm at one T."
            "</p>"]
    for path, header, by_arm in matchers:
        mine = by_arm.get(id(arm), [])
        if len(mine) == 1:  # the usual case: the arm's row, one column per line
            body.append(f"<h2>{esc(path.name)}</h2>")
            body.append(kv_table([(c, mine[0].get(c, "")) for c in header]))
        elif mine:
            body.append(f"<h2>{esc(path.name)}</h2>")
            body.append(data_table(f"board-{path.stem}", header, mine, hide_constant=False))
    curves = page[:-len(".html")] + ".curves.png"
    if len(arm.runs) > 1:
        body.append("<h2>Learning curves</h2>")
        body.append(_figure_or_note(site, page, curves, "Learning curves of the arm's runs",
                                    "no run folder with a curve.csv"))
    body.append("<h2>Runs</h2>")
    body.append(_runs_table(site, sweep, arm.runs, page, "runs"))
    body.append("<h2>Configuration</h2>")
    body.append(kv_table(list(arm.keys.items())))
    site.page(page, arm.title, "\n".join(body), crumbs=[(INDEX, "index"), sweep_crumb, (None, arm.title)])


def _flatten(config: dict, prefix: str = "") -> list[tuple[str, str]]:
    pairs = []
    for k, v in config.items():
        if isinstance(v, dict):
            pairs += _flatten(v, f"{prefix}{k}.")
        else:
            text = "" if v is None else json.dumps(v) if isinstance(v, (bool, list)) else str(v)
            pairs.append((f"{prefix}{k}", text))
    return pairs


def _run_page(site: _Site, sweep: Sweep, run_id: str, page: str, sweep_crumb) -> None:
    rows = sweep.run_rows[run_id]
    row = rows[-1]
    arm = sweep.run_arm[run_id]
    folder = run_folder(sweep, row)
    stem = page[:-len(".html")]
    body = []
    if len(rows) > 1:
        body.append(f'<p class="note">runs.csv has {len(rows)} rows for this run (e.g. interrupted '
                    "and resumed); the last is shown first, every row at the bottom.</p>")
    body.append("<h2>Result</h2>")
    body.append(kv_table([(c, row.get(c, "")) for c in RESULT_COLUMNS if c in row]))
    body.append("<h2>Figures</h2><div class=\"figs\">")
    if folder is None:
        body.append(f'<p class="note">The run folder was not found (run_dir '
                    f"<code>{esc(row.get('run_dir', ''))}</code>; looked in "
                    f"<code>{esc(sweep.folder / 'runs')}</code>).</p>")
    else:
        body.append(_figure_or_note(site, page, f"{stem}.curve.png", "Learning curve",
                                    "no curve.csv in the run folder"))
        body.append(_figure_or_note(site, page, f"{stem}.grads.png",
                                    "Gradient norm against lag at each probe",
                                    "no gradient probe (the run had probe_every = 0)."))
    body.append("</div>")
    body.append("<h2>Configuration <span class=\"muted\">(config.json)</span></h2>")
    config = folder / "config.json" if folder is not None else None
    if config is not None and config.is_file():
        try:
            body.append(kv_table(_flatten(json.loads(config.read_text(encoding="utf-8")))))
        except (ValueError, UnicodeDecodeError) as e:
            body.append(f'<p class="note">config.json cannot be read: {esc(e)}</p>')
    else:
        body.append('<p class="note">No config.json.</p>')
    body.append("<h2>Provenance <span class=\"muted\">(runs.csv)</span></h2>")
    body.append(kv_table([(c, row.get(c, "")) for c in PROVENANCE_COLUMNS if c in row]))
    curve = folder / "curve.csv" if folder is not None else None
    if curve is not None and curve.is_file():
        try:
            header, points = _read(curve)
        except ValueError as e:  # ConfigError: unreadable
            body.append(f'<p class="note">curve.csv cannot be read: {esc(e)}</p>')
        else:
            body.append(f"<details><summary>Learning curve data: curve.csv ({len(points)} rows)"
                        "</summary>")
            body.append(data_table("curve", header, points, hide_constant=False, filters=()))
            body.append("</details>")
    for i, r in enumerate(reversed(rows)):
        body.append(f"<details><summary>Every column of its runs.csv row"
                    f"{f' ({i + 1} of {len(rows)})' if len(rows) > 1 else ''}</summary>")
        body.append(kv_table(list(r.items())))
        body.append("</details>")
    site.page(page, run_id, "\n".join(body),
              crumbs=[(INDEX, "index"), sweep_crumb, (arm.page, arm.title), (None, run_id)])
