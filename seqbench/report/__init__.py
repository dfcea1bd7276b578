"""A static HTML report of a results folder: ``build_report(results_dir, out_dir)``.

The site needs no server and no network (CSS and JS are files of the site, figures are PNG files
beside the pages); it opens from disk. It holds:

* ``index.html``: per *sweep* (every folder under the results folder with a runs.csv) its
  headline and leaderboard tables (every ``leaderboard*.csv`` there) and its runs; every PNG found
  under the results folder (copied); the published-vs-measured tables (``published.csv``, written
  by ``seqbench published``); the speed benchmarks (``bench*.csv``). Tables are sortable (click a
  header) and filterable (task, cell, label, T, ... and free text).
* a page per arm (a leaderboard row: one configuration at one T; its seeds' runs, their learning
  curves) and a page per run (its config.json, learning curve, gradient norm against lag at each
  probe, its runs.csv row with the provenance columns, its curve.csv).

Every table is built from the CSVs (the values as written, shown rounded, with the exact text on
hover); nothing is retyped. The results folder is only read. The site is built in a temporary
folder beside ``out_dir`` and renamed into place, so an interrupted build leaves the previous
report (or none), never half of one. Per-run figures whose sources did not change are reused
from the previous report in ``out_dir`` (see ``seqbench.report.figures``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from seqbench.errors import ConfigError

#: the file that marks a folder as a report this code wrote (and may replace)
MARKER = ".seqbench-report.json"

#: runs.csv columns shown in the index's table of runs (those present)
RUN_TABLE_COLUMNS = ["run_id", "task", "variant", "label", "cell", "impl", "hidden", "layers",
                     "seq_len", "lr", "seed", "status", "steps_taken", "solved", "solved_step",
                     "loss_ratio", "accuracy", "val_loss_ratio", "wall_s"]
#: what a run measured (its page's summary)
RESULT_COLUMNS = ["status", "steps_taken", "final_loss", "baseline_loss", "loss_ratio", "accuracy",
                  "solved", "solved_step", "val_loss", "val_loss_ratio", "val_accuracy",
                  "val_solved", "still_improving", "error"]
#: where and how a run was made
PROVENANCE_COLUMNS = ["run_id", "config_id", "started_at", "wall_s", "train_s", "throughput_seq_s",
                      "device", "device_name", "threads", "malloc", "denormals", "kernel",
                      "torch_version", "cudnn_version", "onednn_version", "seqbench_version",
                      "git_commit", "run_dir"]


@dataclass(eq=False)  # an arm is itself: compared and hashed by identity
class Arm:
    key: tuple[str, ...]
    page: str  # relative to the site root
    title: str
    keys: dict[str, str]
    runs: list[dict] = field(default_factory=list)


@dataclass
class Sweep:
    folder: Path
    rel: str  # the folder relative to the results folder ("." for itself)
    slug: str
    header: list[str]
    rows: list[dict]
    keys: list[str]  # the leaderboard's grouping keys present in runs.csv
    arms: dict[tuple[str, ...], Arm] = field(default_factory=dict)
    run_pages: dict[str, str] = field(default_factory=dict)  # run_id -> page
    run_rows: dict[str, list[dict]] = field(default_factory=dict)  # run_id -> its rows
    run_arm: dict[str, Arm] = field(default_factory=dict)


# -- checks ---------------------------------------------------------------------------------------


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def find_sweeps(results_dir: Path) -> list[Path]:
    """Folders under ``results_dir`` (itself included) with a runs.csv, itself first."""
    found = [p.parent for p in results_dir.rglob("runs.csv") if p.is_file() and _visible(p, results_dir)]
    return sorted(found, key=lambda p: (p != results_dir, str(p.relative_to(results_dir))))


def check_paths(results_dir: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path, list[Path]]:
    """The results folder, the output folder and the sweeps, or a ConfigError that says what is
    wrong (nothing is written before these checks pass)."""
    results, out = Path(results_dir), Path(out_dir)
    if not results.exists():
        raise ConfigError(f"results folder {results} does not exist")
    if not results.is_dir():
        raise ConfigError(f"{results} is not a folder; give a results folder (with a runs.csv)")
    sweeps = find_sweeps(results)
    if not sweeps:
        raise ConfigError(f"no runs.csv in {results} or its subfolders: not a seqbench results "
                          "folder (seqbench run and seqbench sweep write one)")
    if not str(out).strip() or out.name in ("", ".", ".."):
        raise ConfigError(f"-o must name a folder for the site, got {str(out_dir)!r}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {out} is a file; give a folder for the site")
    real_results, real_out = results.resolve(), out.resolve()
    if real_out == real_results or real_results in real_out.parents:
        raise ConfigError(f"-o {out} is inside the results folder {results}; the report never "
                          "writes there: choose a folder outside it")
    if real_out in real_results.parents:
        raise ConfigError(f"-o {out} contains the results folder {results}; choose another folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ConfigError(f"-o {out} is a folder that is not a seqbench report (no {MARKER}); give "
                          "a new or empty folder, or an earlier report to replace")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"cannot write {out}: {parent} is a file, not a folder")
            break
    return results, out, sweeps


# -- reading ------------------------------------------------------------------------------------


def _norm(text) -> str:
    """A key value as comparable text: '' for missing, numbers by value ('10' == '10.0')."""
    text = "" if text is None else str(text).strip()
    if text.lower() in ("", "nan", "none"):
        return ""
    try:
        return repr(float(text))
    except ValueError:
        return text


def _safe_name(text: str) -> str:
    """``text`` as a file name: itself when plain, else a readable part and a hash."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}", text):
        return text
    plain = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60]
    return f"{plain or 'x'}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def _arm_name(row: dict) -> str:
    from seqbench.grads import series_name

    try:
        return series_name(row)
    except (KeyError, ValueError):
        return row.get("label") or row.get("cell") or "?"


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    from seqbench.results import _well_formed

    header, rows = _well_formed(path)
    return header, [dict(zip(header, r)) for r in rows]


def load_sweep(folder: Path, results: Path, slug: str) -> Sweep:
    from seqbench.leaderboard import key_columns

    header, rows = _read(folder / "runs.csv")
    rel = folder.relative_to(results).as_posix()
    sweep = Sweep(folder, rel, slug, header, rows, key_columns(header))
    base = f"sweeps/{slug}"
    used: set[str] = set()
    for i, row in enumerate(rows):
        key = tuple(_norm(row.get(k)) for k in sweep.keys)
        arm = sweep.arms.get(key)
        if arm is None:
            name = _arm_name(row)
            title = f"{name} ({row.get('impl', '')}), {row.get('task', '')} T={row.get('seq_len', '')}"
            digest = hashlib.sha1(repr(key).encode()).hexdigest()[:8]
            stem = _safe_name(f"{row.get('task', '')}-T{row.get('seq_len', '')}-{name}-{digest}")
            arm = Arm(key, f"{base}/arms/{stem}.html", title, {k: row.get(k, "") for k in sweep.keys})
            sweep.arms[key] = arm
        arm.runs.append(row)
        run_id = row.get("run_id", "") or f"row-{i + 2}"
        sweep.run_rows.setdefault(run_id, []).append(row)
        if run_id not in sweep.run_pages:
            stem = _safe_name(run_id)
            while stem.lower() in used:  # distinct on case-insensitive file systems too
                stem += "_"
            used.add(stem.lower())
            sweep.run_pages[run_id] = f"{base}/runs/{stem}.html"
            sweep.run_arm[run_id] = arm
    _disambiguate(sweep)
    return sweep


def _disambiguate(sweep: Sweep) -> None:
    """Arms with the same title (an arm at several learning rates) get the keys that differ."""
    by_title: dict[str, list[Arm]] = {}
    for arm in sweep.arms.values():
        by_title.setdefault(arm.title, []).append(arm)
    for arms in by_title.values():
        if len(arms) > 1:
            differ = [k for k in sweep.keys if len({_norm(a.keys[k]) for a in arms}) > 1]
            for a in arms:
                a.title += ", " + ", ".join(f"{k}={a.keys[k] or '-'}" for k in differ)


def run_folder(sweep: Sweep, row: dict) -> Path | None:
    """The run's folder: ``runs/<name>`` beside its runs.csv (wherever the results were moved),
    else its ``run_dir`` as recorded when that is an absolute path."""
    recorded = row.get("run_dir", "") or ""
    names = [n for n in (Path(recorded).name, row.get("run_id", "")) if n]
    for name in names:
        candidate = sweep.folder / "runs" / name
        if candidate.is_dir():
            return candidate
    if recorded and Path(recorded).is_absolute() and Path(recorded).is_dir():
        return Path(recorded)
    return None


# -- building ---------------------------------------------------------------------------------------


def _rel(page: str, target: str) -> str:
    """The link from the site file ``page`` to the site file ``target``."""
    return os.path.relpath(target, os.path.dirname(page) or ".").replace(os.sep, "/")


def _root(page: str) -> str:
    depth = page.count("/")
    return "/".join([".."] * depth)


class _Site:
    def __init__(self, results: Path, out: Path, tmp: Path, run_figures: bool, jobs: int,
                 progress: Callable[[str], None] | None):
        from seqbench import __version__

        self.results, self.out, self.tmp = results, out, tmp
        self.run_figures, self.jobs, self.progress = run_figures, jobs, progress
        self.version = __version__
        self.source = str(results)
        self.failed: dict[str, str] = {}  # figure file -> why it is missing

    def write(self, page: str, text: str) -> None:
        path = self.tmp / page
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def page(self, page: str, title: str, body: str, crumbs=()) -> None:
        from seqbench.report.html import page as render

        crumbs = [(_rel(page, p) if p is not None else None, t) for p, t in crumbs]
        self.write(page, render(title, body, _root(page), self.version, self.source, crumbs))

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)


def build_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike, run_figures: bool = True,
                 jobs: int = 1, progress: Callable[[str], None] | None = None) -> Path:
    """Build the site of ``results_dir`` in ``out_dir`` (replaced when it holds an earlier
    report); returns the path of its ``index.html``.

    ``run_figures``: draw each run's learning curve and gradient-vs-lag figure and each arm's
    learning curves (the slow part; off: the pages say so). ``jobs``: processes drawing them.
    ``progress``: called with a line of text at each stage. Raises ConfigError for bad paths
    before writing anything (see ``check_paths``).
    """
    from seqbench.report import figures as figs

    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    results, out, sweep_dirs = check_paths(results_dir, out_dir)
    previous: dict[str, str] = {}
    if (out / MARKER).is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            previous = dict(json.loads((out / MARKER).read_text()).get("figures", {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    start = time.monotonic()
    try:
        site = _Site(results, out, tmp, run_figures, jobs, progress)
        slugs: set[str] = set()
        sweeps = []
        for folder in sweep_dirs:
            rel = folder.relative_to(results).as_posix()
            slug = _safe_name("top" if rel == "." else rel.replace("/", "-"))
            while slug in slugs:
                slug += "_"
            slugs.add(slug)
            sweeps.append(load_sweep(folder, results, slug))
        site.say(f"{len(sweeps)} sweep{'s' if len(sweeps) > 1 else ''}, "
                 f"{sum(len(s.rows) for s in sweeps)} runs in {results}")
        signatures: dict[str, str] = {}
        if run_figures:
            jobs_list = _figure_jobs(sweeps)
            signatures, failed = figs.draw_all(jobs_list, tmp, previous, out if previous else None,
                                               jobs, site.say)
            site.failed = {j.out: e for j, e in failed.items()}
            if failed:
                import warnings

                job, why = next(iter(failed.items()))
                warnings.warn(f"{len(failed)} run figure(s) could not be drawn, e.g. {job.out}: "
                              f"{why}", stacklevel=2)
        from seqbench.report import pages
        from seqbench.report.assets import CSS, JS

        site.write("assets/report.css", CSS)
        site.write("assets/report.js", JS)
        for sweep in sweeps:
            pages.write_sweep_pages(site, sweep)
        pages.write_index(site, sweeps)
        (tmp / MARKER).write_text(json.dumps({
            "generator": "seqbench report", "version": site.version, "source": str(results),
            "built_s": round(time.monotonic() - start, 1), "figures": signatures}, indent=1) + "\n")
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"


def _figure_jobs(sweeps: list[Sweep]):
    from seqbench.report.figures import FigureJob

    jobs = []
    for sweep in sweeps:
        arm_dirs: dict[str, list[str]] = {}
        for run_id, page in sweep.run_pages.items():
            folder = run_folder(sweep, sweep.run_rows[run_id][-1])
            if folder is None or not (folder / "curve.csv").is_file():
                continue
            stem = page[:-len(".html")]
            jobs.append(FigureJob("curve", (str(folder),), f"Learning curve: {run_id}",
                                  f"{stem}.curve.png"))
            if (folder / "grads.csv").is_file():
                jobs.append(FigureJob("grads", (str(folder),), "", f"{stem}.grads.png"))
            arm_dirs.setdefault(sweep.run_arm[run_id].page, []).append(str(folder))
        for arm in sweep.arms.values():
            dirs = arm_dirs.get(arm.page, [])
            if len(dirs) > 1:
                jobs.append(FigureJob("curve", tuple(dirs), f"Learning curves: {arm.title}",
                                      arm.page[:-len(".html")] + ".curves.png"))
    return jobs


def _remove_stale(out: Path) -> None:
    """Remove the temporary folders of earlier builds of ``out`` whose process is gone (killed
    before it could clean up)."""
    for path in out.parent.glob(f".{glob.escape(out.name)}.*-*"):
        kind, _, pid = path.name[len(out.name) + 2:].rpartition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or not path.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # alive (another user's process): not ours to remove
            pass


def _swap(tmp: Path, out: Path) -> None:
    """Put the site built in ``tmp`` at ``out``, replacing an earlier report there."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
