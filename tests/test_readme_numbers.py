"""Every measurement README.md quotes is recomputed from the committed CSVs.

The project's rule: a number in README.md that reports a measurement (a time, a ratio, a speed-up)
comes from rows of a committed results CSV that the text names by their bench id, and this test
recomputes it, with the rounding the README uses, from `results/bench.csv` (written by
`seqbench bench`) and `results/bench_sweep.csv` (`seqbench bench --sweep-runs`). Performance facts
measured once, with no committed row, live in docs/references.md section 7, and README.md points
there.

Roundings: milliseconds to one decimal below 100 ms and to whole ms from 100 ms; ratios to 2
decimals, a range "lo-hi" over the benches cited, one value when both ends round alike. The
Measured table's ms are the median over its benches.

Outside the Performance section: the sweep throughput quoted under Sweeps and the H100 step times
quoted under Benchmark specs.

Besides the quoted sentences, the Performance section's prose may hold no other decimal number and
no other number with a unit of time, size or speed-up: a new measurement needs a rule here (or a
pointer to docs/references.md section 7).
"""

from __future__ import annotations

import csv
import re
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BENCH_CSV = ROOT / "results" / "bench.csv"
SWEEP_CSV = ROOT / "results" / "bench_sweep.csv"

NUM = r"\d+(?:\.\d+)?"
#: a value or a range of values, as the README writes them: "0.97", "1.56-1.63"
VAL = rf"({NUM}(?:-{NUM})?)"
BENCH_ID = r"\d{8}T\d{6}-\d+"
#: sizes that are settings, not measurements (glibc's threshold and the one seqbench sets)
NOT_MEASURED = {"32 MiB", "2 GiB"}


# ---------------------------------------------------------------------------------------------
# formatting as the README does


def ms(x: float) -> str:
    """Milliseconds as the README writes them: one decimal below 100 ms, whole ms from 100 ms."""
    return f"{x:.1f}" if round(x, 1) < 100 else f"{x:.0f}"


def span(values: list[float], fmt=lambda v: f"{v:.2f}") -> str:
    """'lo-hi' of the values as formatted, or one value when both ends read the same."""
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def words(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# the README


def section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert m, f"README.md has no section '## {title}'"
    return m.group(1)


def prose(md: str) -> str:
    """The section without code blocks and tables, whitespace normalized."""
    md = re.sub(r"^```.*?^```", " ", md, flags=re.MULTILINE | re.DOTALL)
    md = "\n".join(line for line in md.splitlines() if not line.lstrip().startswith("|"))
    return words(md)


def table_after(md: str, marker: str) -> tuple[str, list[str], list[list[str]]]:
    """(the text between the marker and the table, header, rows) of the first table after marker."""
    start = md.index(marker)
    lines = md[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.lstrip().startswith("|"))
    block = []
    for line in lines[first:]:
        if not line.lstrip().startswith("|"):
            break
        block.append([c.strip() for c in line.strip().strip("|").split("|")])
    header, rows = block[0], [r for r in block[2:]]
    return "\n".join(lines[:first]), header, rows


# ---------------------------------------------------------------------------------------------
# the CSVs


def num(value: str) -> float:
    """A CSV value as a float; empty (not measured) is NaN, which never equals a quoted number."""
    return float(value) if value else float("nan")


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@dataclass
class Check:
    """Compares README values with recomputed ones and collects every difference."""

    readme: str
    bench: list[dict]
    sweep: list[dict]
    problems: list[str] = field(default_factory=list)
    covered: list[tuple[int, int]] = field(default_factory=list)

    # -- helpers ---------------------------------------------------------------------------

    def equal(self, what: str, quoted: str, expected: str) -> None:
        if quoted != expected:
            self.problems.append(f"{what}: README says {quoted}, the CSV gives {expected}")

    def find(self, text: str, pattern: str, what: str) -> re.Match | None:
        m = re.search(pattern, text)
        if m is None:
            self.problems.append(f"sentence not found ({what}): /{pattern}/")
        return m

    def rows(self, bench_id: str) -> list[dict]:
        rows = [r for r in self.bench if r["bench_id"] == bench_id]
        if not rows:
            self.problems.append(f"bench {bench_id} is not in results/bench.csv")
        return rows

    def one(self, bench_id: str, cell: str, impl: str, seq_len: int) -> dict | None:
        rows = [
            r
            for r in self.rows(bench_id)
            if r["cell"] == cell and r["impl"] == impl and int(r["seq_len"]) == seq_len
        ]
        if len(rows) != 1:
            self.problems.append(f"bench {bench_id}: {len(rows)} rows for {cell}/{impl} T={seq_len}")
            return None
        return rows[0]

    def values(self, ids, cell, impl, seq_len, column) -> list[float]:
        rows = [self.one(b, cell, impl, seq_len) for b in ids]
        return [num(r[column]) for r in rows if r is not None] or [float("nan")]

    def attr(self, ids, column: str, expected, what: str) -> None:
        """Every row of the benches has `column` == expected (a setting the text states)."""
        for b in ids:
            found = {r[column] for r in self.rows(b)}
            if not all(expected(v) if callable(expected) else v == expected for v in found):
                self.problems.append(f"{what}: bench {b} has {column} = {sorted(found)}")

    # -- the Performance section -----------------------------------------------------------

    def performance(self) -> None:
        md = section(self.readme, "Performance")
        text = prose(md)
        self.measured_table(md, text)
        self.allocator(text)
        self.compiled_lstm(text)
        self.gc_and_before(text)
        self.sweep_throughput(text)
        self.gpu(text)
        self.long_lag_cells(md, text)
        self.nothing_else(text)

    def claim(self, text: str, pattern: str, what: str) -> re.Match | None:
        m = self.find(text, pattern, what)
        if m is not None:
            self.covered.append(m.span())
        return m

    def measured_table(self, md: str, text: str) -> None:
        intro, header, rows = table_after(md, "**Measured**")
        ids = re.findall(BENCH_ID, intro)
        if len(ids) < 1:
            self.problems.append("the Measured paragraph names no bench")
            return
        self.measured_ids = ids
        # the setting the paragraph states
        m = self.claim(
            text,
            r"\*\*Measured\*\* on this project's 2-core AMD EPYC \(torch "
            rf"({NUM}\.\d+) CPU build, oneDNN ({NUM}), allocator tuned, compiled LSTM "
            r"loop, garbage collector held off the timed calls\), (\d{4}-\d\d-\d\d), "
            r"default grid, two threads",
            "Measured: setting",
        )
        if m:
            self.attr(ids, "torch_version", lambda v: v.split("+")[0] == m.group(1), "torch version")
            self.attr(ids, "onednn_version", lambda v: v.rsplit(".", 1)[0] == m.group(2), "oneDNN")
            self.attr(ids, "started_at", lambda v: v.startswith(m.group(3)), "date")
        self.attr(ids, "threads", "2", "two threads")
        self.attr(ids, "malloc", "tuned", "allocator tuned")
        self.attr(ids, "device", "cpu", "CPU")
        for key, value in (("batch", "64"), ("hidden", "128"), ("layers", "1"), ("task", "adding")):
            self.attr(ids, key, value, "default grid")
        lstm_hand = [self.one(b, "lstm", "hand", 100) for b in ids]
        if not all(r and "native" in r["kernel"] for r in lstm_hand):
            self.problems.append("Measured: the hand LSTM rows do not name the compiled loop")
        self.claim(
            text,
            r"Two full-grid runs, `results/bench\.csv` benches " + " and ".join(f"`{b}`" for b in ids),
            "Measured: bench ids",
        )

        columns = {
            "builtin ms": lambda c, t: ms(statistics.median(self.values(ids, c, "builtin", t, "ms_step"))),
            "hand ms": lambda c, t: ms(statistics.median(self.values(ids, c, "hand", t, "ms_step"))),
            "hand / builtin": lambda c, t: span(self.values(ids, c, "hand", t, "ratio_to_builtin")),
            "probe / step (hand)": lambda c, t: span(self.values(ids, c, "hand", t, "probe_ratio")),
            "2T / T hand step": lambda c, t: span(self.values(ids, c, "hand", t, "scale_2t")),
            "2T / T hand probe": lambda c, t: span(self.values(ids, c, "hand", t, "probe_scale_2t")),
        }
        if header[:2] != ["cell", "T"]:
            self.problems.append(f"Measured table: header starts {header[:2]}, not cell | T")
        for name in header[2:]:
            if name not in columns:
                self.problems.append(f"Measured table: no rule for the column '{name}'")
        seen = set()
        for row in rows:
            cell, seq_len = row[0].split()[0], int(row[1])
            seen.add((cell, seq_len))
            for name, quoted in zip(header[2:], row[2:]):
                if name in columns:
                    self.equal(
                        f"Measured table, {cell} T={seq_len}, {name}", quoted, columns[name](cell, seq_len)
                    )
        grid = {(r["cell"], int(r["seq_len"])) for b in ids for r in self.rows(b)}
        if seen != grid:
            self.problems.append(f"Measured table has rows {sorted(seen)}, the benches {sorted(grid)}")
        self.table = {(row[0].split()[0], int(row[1])): dict(zip(header, row)) for row in rows}

        m = self.claim(text, rf"The built-in cells' own 2T / T were {VAL}\.", "built-in 2T / T")
        if m:
            vals = [v for c, t in grid for v in self.values(ids, c, "builtin", t, "scale_2t")]
            self.equal("built-in 2T / T", m.group(1), span(vals))

        # one thread
        m = self.claim(
            text,
            rf"On one thread \(what each sweep worker uses; bench `({BENCH_ID})`, before the "
            rf"garbage-collector fix\) hand / builtin was rnn ({NUM}) / ({NUM}), lstm ({NUM}) / "
            rf"({NUM}), gru ({NUM}) / ({NUM}) \(T = 100 / 1000\)\.",
            "one thread",
        )
        if m:
            b = m.group(1)
            self.attr([b], "threads", "1", "one thread")
            for i, (cell, t) in enumerate([(c, t) for c in ("rnn", "lstm", "gru") for t in (100, 1000)]):
                self.equal(
                    f"one thread, {cell} T={t}",
                    m.group(2 + i),
                    span(self.values([b], cell, "hand", t, "ratio_to_builtin")),
                )

        # the bullets that sum the table up
        rnn_gru = [
            v
            for c in ("rnn", "gru")
            for t in (100, 1000)
            for v in self.values(ids, c, "hand", t, "ratio_to_builtin")
        ]
        m = self.claim(
            text,
            rf"The hand RNN and GRU take {VAL} of the step time of `nn\.RNN` / `nn\.GRU` "
            rf"\({VAL}x as fast\)",
            "hand RNN and GRU",
        )
        if m:
            self.equal("hand RNN and GRU / builtin", m.group(1), span(rnn_gru))
            self.equal(
                "hand RNN and GRU speed-up", m.group(2), span([1 / v for v in rnn_gru], lambda v: f"{v:.1f}")
            )
        m = self.claim(
            text,
            rf"the hand LSTM takes {VAL} of oneDNN's step time at T = 1000 and {VAL} at "
            r"T = 100",
            "hand LSTM",
        )
        if m:
            self.equal(
                "hand LSTM T=1000",
                m.group(1),
                span(self.values(ids, "lstm", "hand", 1000, "ratio_to_builtin")),
            )
            self.equal(
                "hand LSTM T=100", m.group(2), span(self.values(ids, "lstm", "hand", 100, "ratio_to_builtin"))
            )
        m = self.claim(text, rf"The hand probe costs {VAL} of a training step", "probe cost")
        if m:
            self.equal(
                "probe / step",
                m.group(1),
                span([v for c, t in grid for v in self.values(ids, c, "hand", t, "probe_ratio")]),
            )

    def allocator(self, text: str) -> None:
        m = self.claim(
            text,
            rf"the built-in LSTM step at T = 1000 took {VAL} ms with glibc's defaults "
            rf"\(benches ((?:`{BENCH_ID}`(?:,? and |, )?)+)\) and {VAL} ms tuned \(bench "
            rf"`({BENCH_ID})`\), and the built-in cells' 2T / T ratios went from {VAL} \(bench "
            rf"`({BENCH_ID})`\) to {VAL} \(bench `({BENCH_ID})`",
            "allocator",
        )
        if not m:
            return
        before, after = re.findall(BENCH_ID, m.group(2)), m.group(4)
        self.attr(before + [m.group(6)], "malloc", "default", "glibc's defaults")
        self.attr([after, m.group(8)], "malloc", "tuned", "tuned allocator")
        self.attr(before + [after], "threads", "2", "allocator: two threads")
        self.equal(
            "LSTM T=1000, glibc's defaults",
            m.group(1),
            span(self.values(before, "lstm", "builtin", 1000, "ms_step"), ms),
        )
        self.equal(
            "LSTM T=1000, tuned",
            m.group(3),
            span(self.values([after], "lstm", "builtin", 1000, "ms_step"), ms),
        )
        for group, bench in ((5, m.group(6)), (7, m.group(8))):
            vals = [num(r["scale_2t"]) for r in self.rows(bench) if r["impl"] == "builtin"]
            self.equal(f"built-in 2T / T, bench {bench}", m.group(group), span(vals or [float("nan")]))

    def compiled_lstm(self, text: str) -> None:
        m = self.claim(
            text,
            rf"which left the hand LSTM {VAL}x slower than oneDNN's fused kernel once the "
            rf"allocator was tuned \(bench `({BENCH_ID})`, T = 100 and 1000\)",
            "LSTM torch calls",
        )
        if m:
            b = m.group(2)
            self.attr([b], "malloc", "tuned", "LSTM torch calls: tuned")
            vals = [v for t in (100, 1000) for v in self.values([b], "lstm", "hand", t, "ratio_to_builtin")]
            self.equal("hand LSTM (torch calls) / builtin", m.group(1), span(vals))
            row = self.one(b, "lstm", "hand", 1000)
            if row and row["kernel"] != "hand (fused)":
                self.problems.append(f"bench {b}: the hand LSTM ran {row['kernel']!r}, not torch calls")
        m = self.claim(
            text,
            rf"Hand / builtin of the LSTM at T = 1000, two threads, as its loop was compiled "
            rf"stage by stage: torch calls {VAL} \(bench `({BENCH_ID})`\), the pointwise pass "
            rf"of each step compiled {VAL} \(bench `({BENCH_ID})`\), the whole loop compiled "
            rf"{VAL} \(the table below\)",
            "LSTM stages",
        )
        if m:
            for group, bench in ((1, m.group(2)), (3, m.group(4))):
                self.attr([bench], "threads", "2", "LSTM stages: two threads")
                self.equal(
                    f"LSTM stage, bench {bench}",
                    m.group(group),
                    span(self.values([bench], "lstm", "hand", 1000, "ratio_to_builtin")),
                )
            self.equal(
                "LSTM whole loop compiled",
                m.group(5),
                span(self.values(self.measured_ids, "lstm", "hand", 1000, "ratio_to_builtin")),
            )

    def gc_and_before(self, text: str) -> None:
        m = self.claim(
            text,
            rf"the GRU probe at T = 1000 read {VAL} of a step in full-grid runs \(benches "
            rf"((?:`{BENCH_ID}`(?:,? and |, )?)+)\) and {VAL} alone \(bench `({BENCH_ID})`\), "
            rf"its 2T / T {VAL} over these four",
            "garbage collection",
        )
        if m:
            full, alone = re.findall(BENCH_ID, m.group(2)), m.group(4)
            if len(full) != 3:
                self.problems.append(
                    f"garbage collection: {len(full)} full-grid benches, the text says four in all"
                )
            self.equal(
                "GRU probe, full grid",
                m.group(1),
                span(self.values(full, "gru", "hand", 1000, "probe_ratio")),
            )
            self.equal(
                "GRU probe, alone", m.group(3), span(self.values([alone], "gru", "hand", 1000, "probe_ratio"))
            )
            self.equal(
                "GRU probe 2T / T",
                m.group(5),
                span(self.values(full + [alone], "gru", "hand", 1000, "probe_scale_2t")),
            )
            if len(self.rows(alone)) != 2:
                self.problems.append(f"bench {alone} is not the GRU alone")
            for b in full:
                if len(self.rows(b)) != 12:
                    self.problems.append(f"bench {b} is not a full grid")
        m = self.claim(
            text,
            rf"the hand LSTM \(torch calls\) took {VAL} of its step time at T = 1000 \(every "
            r"bench with `malloc` = default on the CPU\)",
            "before the allocator",
        )
        if m:
            ids = sorted(
                {r["bench_id"] for r in self.bench if r["malloc"] == "default" and r["device"] == "cpu"}
            )
            vals = [
                num(r["ratio_to_builtin"])
                for r in self.bench
                if r["bench_id"] in ids
                and r["cell"] == "lstm"
                and r["impl"] == "hand"
                and r["seq_len"] == "1000"
            ]
            self.equal("hand LSTM / builtin, glibc's defaults", m.group(1), span(vals or [float("nan")]))

    def sweep_throughput(self, text: str) -> None:
        m = self.claim(
            text,
            rf"Sweep throughput \(`results/bench_sweep\.csv`, (\d+) runs of (\d+) steps at "
            rf"T = (\d+) over the (\w+) cells, local executor, idle machine\): two one-thread "
            rf"workers ran {VAL}x the runs per minute of one two-thread worker\.",
            "sweep",
        )
        if m:
            self.sweep_claim(m.group(1), m.group(2), m.group(3), m.group(4), m.group(5), "Performance")

    def sweep_claim(self, runs, steps, seq_len, cells, speedup, where) -> None:
        rows = self.sweep
        if not rows:
            self.problems.append("results/bench_sweep.csv has no rows")
            return
        for key, quoted in (("runs", runs), ("steps", steps), ("seq_len", seq_len)):
            if quoted is not None:
                self.equal(
                    f"sweep ({where}): {key}",
                    quoted,
                    span([float(r[key]) for r in rows], lambda v: f"{v:.0f}"),
                )
        if cells is not None:
            n = {len(r["cells"].split()) * len(r["impls"].split()) for r in rows}
            numbers = {"four": 4, "six": 6, "nine": 9}
            self.equal(
                f"sweep ({where}): cells", str(numbers.get(cells, cells)), span(list(n), lambda v: f"{v:.0f}")
            )
        two = [float(r["speedup"]) for r in rows if r["workers"] == "2" and r["threads"] == "1"]
        self.equal(f"sweep ({where}): speed-up", speedup, span(two or [float("nan")]))

    def gpu(self, text: str) -> None:
        m = self.claim(
            text,
            rf"On an NVIDIA H100 \(bench `({BENCH_ID})`: torch ({NUM}), cuDNN ({NUM}); measured "
            r"before the changes above\), `hand` replayed from a CUDA graph against cuDNN, ms per "
            rf"step: rnn ({NUM}) vs ({NUM}) \(T = 100\) and ({NUM}) vs ({NUM}) \(T = 1000\); "
            rf"lstm ({NUM}) vs ({NUM}) and ({NUM}) vs ({NUM}); gru ({NUM}) vs ({NUM}) and "
            rf"({NUM}) vs ({NUM})\.",
            "GPU",
        )
        if not m:
            return
        b = m.group(1)
        self.attr([b], "device_name", lambda v: "H100" in v, "H100")
        self.attr([b], "torch_version", lambda v: v.startswith(m.group(2) + "."), "GPU torch version")
        self.attr(
            [b],
            "cudnn_version",
            lambda v: v.isdigit() and f"{int(v) // 10000}.{int(v) // 100 % 100}" == m.group(3),
            "cuDNN version",
        )
        i = 4
        for cell in ("rnn", "lstm", "gru"):
            for t in (100, 1000):
                hand = self.one(b, cell, "hand", t)
                if hand and "CUDA graph" not in hand["kernel"]:
                    self.problems.append(f"bench {b}: {cell} hand T={t} ran without the CUDA graph")
                for impl in ("hand", "builtin"):
                    self.equal(
                        f"H100 {cell} {impl} T={t}",
                        m.group(i),
                        span(self.values([b], cell, impl, t, "ms_step"), ms),
                    )
                    i += 1

    def long_lag_cells(self, md: str, text: str) -> None:
        """The new cells' step time over the built-in LSTM's, T = 1,000 and 5,000, one bench."""
        intro, header, rows = table_after(md, "**The long-lag cells against the LSTM**")
        ids = re.findall(BENCH_ID, intro)
        if len(ids) != 1:
            self.problems.append("the long-lag cells paragraph names no single bench")
            return
        self.attr(ids, "against", "lstm", "long-lag cells: against lstm")
        self.attr(ids, "threads", "1", "long-lag cells: one thread")
        for row in rows:
            cell = row[0]
            for t, quoted in ((1000, row[2]), (5000, row[3])):
                self.equal(f"{cell} / lstm T={t}", quoted,
                           span(self.values(ids, cell, "hand", t, "ratio_to_against")))
        # "the built-in LSTM's step grows faster than linearly in T": its time, recomputed from
        # any cell's row as ms_step / ratio_to_against, more than 5x from T = 1,000 to 5,000
        if rows and self.find(text, r"the built-in LSTM's step grows faster than linearly in T",
                              "long-lag cells: LSTM superlinear"):
            lstm = {t: self.values(ids, rows[0][0], "hand", t, "ms_step")[0]
                    / self.values(ids, rows[0][0], "hand", t, "ratio_to_against")[0]
                    for t in (1000, 5000)}
            if not lstm[5000] > 5 * lstm[1000]:
                self.problems.append(f"the LSTM's step is not superlinear in T: {lstm}")

    def nothing_else(self, text: str) -> None:
        """No decimal number and no number with a unit outside the sentences checked above."""
        unit = r"(?:ms|us|s|%|x|MiB|GiB|MB|KB|GFLOP/s|min|h)\b"
        pattern = rf"(?<![\w.`-])(?:\d+\.\d+(?:-\d+(?:\.\d+)?)?(?:\s?{unit})?|\d+(?:-\d+)?\s?{unit})"
        # a formula and section numbers, not measurements: blanked, keeping the offsets
        text = text.replace("sigmoid(2x)", "sigmoid(..)")
        text = re.sub(r"section \d+(?:\.\d+)*", lambda m: "." * len(m.group(0)), text)
        for m in re.finditer(pattern, text):
            if any(a <= m.start() < b for a, b in self.covered) or m.group(0) in NOT_MEASURED:
                continue
            context = text[max(0, m.start() - 60) : m.end() + 20]
            self.problems.append(f"Performance: '{m.group(0)}' is no checked measurement: ...{context}...")

    # -- other sections --------------------------------------------------------------------

    def elsewhere(self) -> None:
        text = words(self.readme)
        m = self.find(
            text,
            rf"on a 2-core CPU two one-thread workers ran {VAL}x the runs per minute of one "
            r"two-thread process \(`results/bench_sweep\.csv`",
            "Sweeps: throughput",
        )
        if m:
            self.sweep_claim(None, None, None, None, m.group(1), "Sweeps")
        m = self.find(
            text,
            rf"[Oo]n one H100 the built-in cells took {VAL} ms per step at H=128 and T = 100 and "
            rf"1000 \(`results/bench\.csv`, bench `({BENCH_ID})`\)",
            "Benchmark specs: H100",
        )
        if m:
            b = m.group(2)
            self.attr([b], "hidden", "128", "H100: H=128")
            vals = [num(r["ms_step"]) for r in self.rows(b) if r["impl"] == "builtin"]
            self.equal(
                "H100 built-in ms per step", m.group(1), span(vals or [float("nan")], lambda v: f"{v:.1f}")
            )


def check(readme: str, bench: list[dict], sweep: list[dict]) -> list[str]:
    c = Check(readme, bench, sweep)
    c.performance()
    c.elsewhere()
    return c.problems


def committed() -> tuple[str, list[dict], list[dict]]:
    return README.read_text(encoding="utf-8"), read_csv(BENCH_CSV), read_csv(SWEEP_CSV)


# ---------------------------------------------------------------------------------------------
# the tests


def test_readme_measurements_are_the_committed_csvs():
    problems = check(*committed())
    assert not problems, "README.md differs from results/bench*.csv:\n" + "\n".join(problems)


def test_a_changed_timing_in_the_csv_is_caught(tmp_path):
    """Edit a copy of bench.csv: each number the README quotes must then disagree."""
    readme, _, sweep = committed()
    copy = tmp_path / "bench.csv"
    shutil.copy(BENCH_CSV, copy)
    rows = read_csv(copy)
    edits = [  # (bench, cell, impl, T, column, factor, the README value that must fail)
        ("20261125T201229-26270", "rnn", "builtin", 100, "ms_step", 1.5, "rnn T=100, builtin ms"),
        (
            "20261125T201401-26337",
            "gru",
            "hand",
            1000,
            "probe_scale_2t",
            1.2,
            "gru T=1000, 2T / T hand probe",
        ),
        ("20261125T185858-10794", "lstm", "hand", 1000, "ratio_to_builtin", 1.1, "hand LSTM (torch calls)"),
        ("20261125T175604-464", "gru", "builtin", 100, "ms_step", 1.3, "H100 gru builtin T=100"),
        ("20261125T194537-22395", "lstm", "hand", 100, "ratio_to_builtin", 1.1, "one thread, lstm T=100"),
    ]
    for bench, cell, impl, t, column, factor, _ in edits:
        (row,) = [
            r
            for r in rows
            if (r["bench_id"], r["cell"], r["impl"], r["seq_len"]) == (bench, cell, impl, str(t))
        ]
        row[column] = str(float(row[column]) * factor)
    with open(copy, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    problems = "\n".join(check(readme, read_csv(copy), sweep))
    for *_, what in edits:
        assert what in problems, f"a change behind '{what}' went unnoticed:\n{problems}"


def test_a_changed_sweep_speedup_is_caught(tmp_path):
    readme, bench, _ = committed()
    rows = read_csv(SWEEP_CSV)
    two = next(r for r in rows if r["workers"] == "2")
    two["speedup"] = str(float(two["speedup"]) + 0.2)
    copy = tmp_path / "bench_sweep.csv"
    with open(copy, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    problems = "\n".join(check(readme, bench, read_csv(copy)))
    assert "sweep (Performance): speed-up" in problems and "sweep (Sweeps): speed-up" in problems


def test_a_changed_or_new_number_in_the_readme_is_caught():
    readme, bench, sweep = committed()
    perf = section(readme, "Performance")
    _, header, rows = table_after(perf, "**Measured**")
    cell = rows[2][4]  # the lstm T=100 hand / builtin
    changed = readme.replace(f"| {cell} |", f"| {cell}0 |", 1)
    assert changed != readme
    assert any("hand / builtin" in p for p in check(changed, bench, sweep))
    extra = readme.replace("**Garbage collection.**", "**Garbage collection.** It took 12.5 ms.", 1)
    assert any("'12.5 ms' is no checked measurement" in p for p in check(extra, bench, sweep))


def test_the_formatting_rules():
    assert [ms(v) for v in (14.68, 170.29, 24.04, 9.49, 475.03, 2.96, 99.97)] == [
        "14.7",
        "170",
        "24.0",
        "9.5",
        "475",
        "3.0",
        "100",
    ]
    assert span([1.0851, 1.087]) == "1.09" and span([0.634, 0.662]) == "0.63-0.66"
