"""Per-run figures of the report, drawn with the project's plotting code (matplotlib Agg): the
learning curve (``seqbench.plots.runs.curves_figure``) and the gradient norm against lag at each
probe (``seqbench.plots.decay.plot_decay``, one panel per probe step).

Drawing is the slow part of a report (about a second or two per probed run on one core), so a
figure whose sources (the run's config.json, curve.csv, grads.csv) have not changed since the
previous report in the same output folder is reused from it, and the rest can be drawn by several
processes (``jobs``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: dots per inch of the per-run figures (the index's figures are copied as they are)
DPI = 80


@dataclass(frozen=True)
class FigureJob:
    """One figure to draw: ``kind`` (curve: learning curves, one line per run folder; grads:
    gradient against lag of one probed run), the run folders, the title, the output file relative
    to the site root."""

    kind: str
    run_dirs: tuple[str, ...]
    title: str
    out: str

    def sources(self) -> list[Path]:
        names = ["config.json", "curve.csv"] if self.kind == "curve" else ["grads.csv"]
        return [Path(d) / n for d in self.run_dirs for n in names]

    def signature(self) -> str:
        """What the figure is drawn from: the sources' sizes and times, the code's version."""
        from seqbench import __version__

        h = hashlib.sha1(f"{__version__} {DPI} {self.kind} {self.title}".encode())
        for p in self.sources():
            st = p.stat()
            h.update(f"{p.name} {st.st_size} {st.st_mtime_ns}".encode())
        return h.hexdigest()


def draw(job: FigureJob, site: str) -> str | None:
    """Draw ``job`` into ``site``; None on success, else why it could not be drawn (one line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(site) / job.out
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with matplotlib.rc_context():  # plot_decay's seaborn theme must not leak into the next
            fig = _figure(job)
            fig.savefig(path, dpi=DPI, bbox_inches="tight")
    except Exception as e:  # noqa: BLE001  one broken run folder must not stop a report of hundreds
        return " ".join(f"{type(e).__name__}: {e}".splitlines())
    finally:
        plt.close("all")
    return None


def _figure(job: FigureJob):
    if job.kind == "curve":
        from seqbench.plots.runs import curves_figure

        return curves_figure(list(job.run_dirs), metric="loss", title=job.title)
    from seqbench.grads import read_grads
    from seqbench.plots.decay import plot_decay

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn line of grads.csv: drawn without it
        frame = read_grads([Path(d) / "grads.csv" for d in job.run_dirs])
    return plot_decay(frame)


def _draw_many(jobs: Sequence[FigureJob], site: str) -> list[str | None]:
    return [draw(j, site) for j in jobs]


def draw_all(jobs: Sequence[FigureJob], site: Path, previous: dict[str, str], previous_site: Path | None,
             workers: int = 1, progress=None) -> tuple[dict[str, str], dict[FigureJob, str]]:
    """Draw every job into ``site``, reusing the unchanged ones of ``previous_site`` (whose
    signatures are ``previous``). Returns the signatures of the figures now in ``site`` and,
    per job that failed, why."""
    signatures, todo = {}, []
    for job in jobs:
        try:
            sig = job.signature()
        except OSError:
            sig = None
        old = previous_site / job.out if previous_site is not None else None
        if sig is not None and previous.get(job.out) == sig and old is not None and old.is_file():
            target = site / job.out
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(old, target)  # the old site is removed after the new one is in place
            except OSError:
                shutil.copy2(old, target)
            signatures[job.out] = sig
        else:
            todo.append((job, sig))
    failed: dict[FigureJob, str] = {}
    if progress is not None and todo:
        progress(f"drawing {len(todo)} run figures ({len(jobs) - len(todo)} reused) "
                 f"with {workers} process{'es' if workers > 1 else ''}")
    if workers <= 1 or len(todo) < 2:
        results = []
        for i, (job, _) in enumerate(todo, 1):
            results.append(draw(job, str(site)))
            if progress is not None and i % 100 == 0 and i < len(todo):
                progress(f"  {i} of {len(todo)} figures drawn")
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        chunks = [[job for job, _ in todo[i::workers * 4]] for i in range(workers * 4)]
        order = [job for chunk in chunks for job in chunk]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = pool.map(_draw_many, chunks, [str(site)] * len(chunks))
            by_job = dict(zip(order, [r for part in done for r in part]))
        results = [by_job[job] for job, _ in todo]
    for (job, sig), error in zip(todo, results):
        if error is None and sig is not None:
            signatures[job.out] = sig
        elif error is not None:
            failed[job] = error
    return signatures, failed
