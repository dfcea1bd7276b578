"""The report's stylesheet and script, written next to its pages (no CDN, no network: the site
opens from disk with file://).

The script makes every ``table.data`` sortable (click or Enter on a header: ascending, again:
descending; numbers compare as numbers, empty cells last) and filterable through the
``.filters`` box of the table (``data-for`` = the table's id): a select per column such as task,
cell, label or T (exact value) and a text box (any cell contains the text). Cells carry the CSV's
text in ``data-v``, which sorting and the selects use; what is shown may be rounded.
"""

CSS = """\
:root { --fg: #1b1f24; --muted: #59636e; --line: #d0d7de; --head: #f3f5f7; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 1600px; }
h1 { font-size: 1.5rem; margin: .4rem 0 .6rem; word-break: break-all; }
h2 { font-size: 1.25rem; margin: 2rem 0 .5rem; padding-bottom: .2rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
a { color: var(--accent); }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.muted, .note, .same { color: var(--muted); }
.same { font-size: 12px; }
nav.crumbs { font-size: 13px; margin-bottom: .3rem; }
nav.toc ul { columns: 3; margin: .3rem 0; }
.scroll { overflow-x: auto; max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: var(--head); position: sticky; top: 0; }
table.data thead th { cursor: pointer; user-select: none; }
table.data thead th::after { content: " \\2195"; color: #aab; font-size: 10px; }
table.data thead th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--fg); }
table.data thead th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--fg); }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef5ff; }
tr[hidden] { display: none; }
table.kv th { background: var(--head); font-weight: 600; }
.filters { display: flex; flex-wrap: wrap; gap: .3rem .9rem; align-items: center; margin: .4rem 0;
           font-size: 13px; }
.filters input[type=search] { min-width: 14rem; }
.filters .count { color: var(--muted); }
.figs { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
.figs figure img { max-height: 420px; }
figcaption { font-size: 12px; color: var(--muted); }
details > summary { cursor: pointer; margin: .4rem 0; }
"""

JS = """\
(function () {
  "use strict";
  function raw(cell) {
    var v = cell ? cell.getAttribute("data-v") : "";
    return v === null ? cell.textContent : v;
  }
  function isNum(v) { return v !== "" && !isNaN(Number(v)); }
  function compare(a, b) {
    if (isNum(a) && isNum(b)) { return Number(a) - Number(b); }
    if (isNum(a)) { return -1; }
    if (isNum(b)) { return 1; }
    return a.localeCompare(b, undefined, {numeric: true});
  }
  function setup(table) {
    var body = table.tBodies[0];
    if (!table.tHead || !body) { return; }
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    heads.forEach(function (th, i) {
      th.tabIndex = 0;
      th.title = "sort by " + th.textContent;
      function sort() {
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r, s) {
          var a = raw(r.cells[i]), b = raw(s.cells[i]);
          if (a === "" || b === "") { return (a === "") - (b === ""); }  /* empty last */
          return dir * compare(a, b);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
    var box = document.querySelector('.filters[data-for="' + table.id + '"]');
    if (!box) { return; }
    var text = box.querySelector("input[type=search]");
    var selects = Array.prototype.slice.call(box.querySelectorAll("select"));
    var count = box.querySelector(".count");
    function apply() {
      var needle = text ? text.value.trim().toLowerCase() : "";
      var shown = 0;
      Array.prototype.forEach.call(body.rows, function (r) {
        var ok = selects.every(function (s) {
          return s.value === "" || raw(r.cells[Number(s.getAttribute("data-col"))]) === s.value;
        });
        if (ok && needle) { ok = r.textContent.toLowerCase().indexOf(needle) >= 0; }
        r.hidden = !ok;
        if (ok) { shown += 1; }
      });
      if (count) { count.textContent = shown + " of " + body.rows.length + " rows"; }
    }
    if (text) { text.addEventListener("input", apply); }
    selects.forEach(function (s) { s.addEventListener("change", apply); });
    apply();
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.data"), setup);
})();
"""
