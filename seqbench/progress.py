"""Progress on stderr: a bar redrawn in place on a terminal, a plain line every 30 s elsewhere."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    """3.2 -> '3.2s'; 312 -> '5m12s'; 4000 -> '1h06m40s'."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s"


#: seconds between two plain progress lines when the stream is not a terminal (a log file, a pipe)
PLAIN_EVERY_S = 30.0


class ProgressLine:
    """Progress on ``stream`` (stderr). On a terminal: redraws ``label [####    ] n/total text``
    in place, at most ten times a second. Elsewhere (a log file, a pipe, a batch job's output):
    one plain line ``label: <unit> n/total (x%) text`` every ``PLAIN_EVERY_S`` seconds, so that a
    long run shows it is alive without filling the log. With ``eta``, both add the time left,
    from the rate since the first update. ``enabled=False`` (--quiet) draws nothing; so does a
    stream that fails (a closed pipe): progress is dropped, the work goes on."""

    def __init__(self, total: int, label: str = "", stream=None, enabled: bool | None = None,
                 eta: bool = False, clock=time.monotonic, every: float | None = None,
                 unit: str = "step"):
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        try:
            isatty = bool(getattr(self.stream, "isatty", lambda: False)())
        except (OSError, ValueError):  # a closed stream
            isatty = False
        self.enabled = True if enabled is None else enabled
        self.plain = not isatty and enabled is None  # enabled=True: the bar, as asked
        self.eta = eta
        self.unit = unit
        self.clock = clock
        self.every = PLAIN_EVERY_S if every is None else every
        self._t0 = self._last_draw = clock()
        self._n0: int | None = None
        self._drawn = False

    def time_left(self, n: int) -> str:
        """The estimated time until step ``total``, from the rate since the first update."""
        elapsed = self.clock() - self._t0
        done = n - (self._n0 or 0)
        if done <= 0 or elapsed <= 0:
            return "?"
        return format_duration(max(self.total - n, 0) * elapsed / done)

    def update(self, n: int, text: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self._n0 is None:  # the rate counts from here (a resumed run starts past step 0)
            self._n0, self._t0 = n, now
            if self.plain:
                self._last_draw = now
        if self.plain:
            if now - self._last_draw < self.every:
                return
        elif not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        eta = f" | ETA {self.time_left(n)}" if self.eta else ""
        if self.plain:
            pct = 100 * min(n, self.total) / self.total
            line = f"{self.label}: {self.unit} {n}/{self.total} ({pct:.0f}%) {text}{eta}".rstrip() + "\n"
        else:
            width = 24
            filled = int(width * min(n, self.total) / self.total)
            bar = "#" * filled + "-" * (width - filled)
            line = f"\r\033[K{self.label} [{bar}] {n}/{self.total} {text}{eta}"
            self._drawn = True
        self._write(line)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe or file: drop the progress, not the run
            self.enabled = False
            self._drawn = False

    def close(self) -> None:
        if self._drawn:
            self._write("\r\033[K")
            self._drawn = False
