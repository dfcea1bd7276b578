"""HTML of the report's pages, with the standard library only: a page template and small
functions that build escaped fragments (tables, figures, links).

Every text that comes from a file (a CSV value, a label, a path) goes through ``esc``; the
fragments these functions return are HTML and are joined as they are.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from string import Template
from urllib.parse import quote

#: columns shown as their text, never as a number (an id such as 0123e4567890 parses as one)
TEXT_COLUMNS = {"run_id", "config_id", "probe_id", "bench_id", "git_commit", "label", "arm",
                "ref_arm", "seed", "started_at", "run_dir"}
#: the columns a table gets a select filter for (when they vary); "seq_len" is T
FILTER_COLUMNS = ("task", "variant", "cell", "impl", "label", "arm", "seq_len", "status")

PAGE = Template("""\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="seqbench $version">
<title>$title</title>
<link rel="stylesheet" href="${root}assets/report.css">
</head>
<body>
$crumbs<h1>$heading</h1>
$body
<footer class="note"><p>Built by <code>seqbench report</code> $version from <code>$source</code>.</p></footer>
<script src="${root}assets/report.js"></script>
</body>
</html>
""")


def esc(text) -> str:
    """``text`` (anything) as HTML text or attribute value."""
    return html.escape("" if text is None else str(text), quote=True)


def href(path: str, fragment: bool = False) -> str:
    """A relative link to a site file, percent-encoded and escaped for an attribute; with
    ``fragment``, a ``#`` starts the anchor (else it is part of the file name)."""
    return esc(quote(path, safe="/#" if fragment else "/"))


def link(path: str, text) -> str:
    """A link to a page of the site (``page.html#anchor`` allowed)."""
    return f'<a href="{href(path, fragment=True)}">{esc(text)}</a>'


def page(title: str, body: str, root: str, version: str, source: str,
         crumbs: Sequence[tuple[str | None, str]] = ()) -> str:
    """A whole page. ``root``: the relative path from the page to the site root ("" or "../..")."""
    trail = ""
    if crumbs:
        parts = [link(p, t) if p is not None else esc(t) for p, t in crumbs]
        trail = f'<nav class="crumbs">{" &rsaquo; ".join(parts)}</nav>\n'
    return PAGE.substitute(title=esc(title), heading=esc(title), body=body,
                           root=esc(root + "/" if root else ""), version=esc(version),
                           source=esc(source), crumbs=trail)


def _missing(text: str) -> bool:
    return text.strip() == ""


def shown_value(column: str, text: str) -> str:
    """How a CSV value is shown: floats with a fraction or exponent to 4 significant digits,
    everything else as written."""
    if column in TEXT_COLUMNS or column.endswith("_id") or not any(c in text for c in ".eE"):
        return text
    try:
        x = float(text)
    except ValueError:
        return text
    if not math.isfinite(x) or x.is_integer() and abs(x) < 1e15 and "e" not in text.lower():
        return text
    return f"{x:.4g}"


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def td(column: str, text: str, inner: str | None = None) -> str:
    """One cell: the CSV text in ``data-v`` (sorting, filters), shown rounded, full in ``title``."""
    shown = shown_value(column, text)
    cls = ' class="n"' if column not in TEXT_COLUMNS and _numeric(text) else ""
    title = f' title="{esc(text)}"' if shown != text else ""
    body = inner if inner is not None else esc(shown)
    return f'<td data-v="{esc(text)}"{cls}{title}>{body}</td>'


def _sort_key(v: str):
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


#: a leading column: its header, and per row the CSV-like value and the cell's inner HTML
Lead = tuple[str, Callable[[dict], tuple[str, str]]]


def data_table(table_id: str, columns: Sequence[str], rows: Sequence[dict[str, str]],
               lead: Sequence[Lead] = (), links: dict[str, Callable[[dict], str | None]] | None = None,
               hide_constant: bool = True, filters: Sequence[str] = FILTER_COLUMNS) -> str:
    """A sortable, filterable table of CSV rows (text dicts).

    Columns with the same value in every row (when there are two rows or more) are not columns:
    a line above the table lists them with their value. ``lead`` columns come first (e.g. a link
    to a page); ``links`` maps a column to a function giving the row's link for that cell (or
    None)."""
    links = links or {}
    columns = list(columns)
    same = []
    if hide_constant and len(rows) > 1:
        for c in list(columns):
            values = {r.get(c, "") for r in rows}
            if len(values) == 1:
                same.append((c, values.pop()))
                columns.remove(c)
    out = []
    if same:
        listed = ", ".join(f"<code>{esc(c)}</code> = {esc(v) if v.strip() else '<i>empty</i>'}"
                           for c, v in same)
        out.append(f'<p class="same">Same in every row: {listed}</p>')
    headers = [h for h, _ in lead] + columns
    boxes = []
    if len(rows) > 1:
        for i, c in enumerate(headers):
            if c in filters and i >= len(lead):
                values = sorted({r.get(c, "") for r in rows}, key=_sort_key)
                if len(values) < 2:
                    continue
                name = "T" if c == "seq_len" else c
                options = "".join(f'<option value="{esc(v)}">{esc(v) if v else "(empty)"}</option>'
                                  for v in values)
                boxes.append(f'<label>{esc(name)} <select data-col="{i}" aria-label="{esc(name)}">'
                             f'<option value="">all</option>{options}</select></label>')
        out.append(f'<div class="filters" data-for="{esc(table_id)}">'
                   f'<input type="search" placeholder="filter rows (any cell)" '
                   f'aria-label="filter rows">{"".join(boxes)}<span class="count"></span></div>')
    head = "".join(f"<th scope=\"col\">{esc('T' if h == 'seq_len' else h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = []
        for _, make in lead:
            value, inner = make(r)
            cells.append(f'<td data-v="{esc(value)}">{inner}</td>')
        for c in columns:
            text = r.get(c, "")
            target = links[c](r) if c in links else None
            inner = link(target, shown_value(c, text)) if target else None
            cells.append(td(c, text, inner))
        body.append(f"<tr>{''.join(cells)}</tr>")
    out.append(f'<div class="scroll"><table class="data" id="{esc(table_id)}">'
               f'<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body) +
               "\n</tbody></table></div>")
    return "\n".join(out)


def kv_table(pairs: Sequence[tuple[str, str]]) -> str:
    """A two-column table: name, value (both escaped)."""
    rows = "".join(f'<tr><th scope="row">{esc(k)}</th>{td(k, v)}</tr>' for k, v in pairs)
    return f'<div class="scroll"><table class="kv"><tbody>{rows}</tbody></table></div>'


def figure(src: str, caption: str, alt: str | None = None) -> str:
    """An image linked to itself (full size), with a caption."""
    return (f'<figure><a href="{href(src)}"><img src="{href(src)}" alt="{esc(alt or caption)}">'
            f'</a><figcaption>{esc(caption)}</figcaption></figure>')
