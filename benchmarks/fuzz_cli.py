"""A fixed-seed fuzz of the command line (issue 18): N argument lists over every command, with
extreme numbers (1e12, 2^63, 2^64, inf, nan, -0), unicode, and awkward paths (a FIFO, dangling
symbolic links, a BOM file, a torn header, columns in another order, folders, binary files).

A crash is a Python traceback in the output, an exception other than SystemExit, an exit code
other than 0, 1, 2 or 141, or a command that hangs (more than ``HANG_S`` seconds). Everything
runs in this process (click's CliRunner) in one scratch folder, so 400 lists take seconds.

Commands are read from click (``seqbench --help``), so a new command or option is fuzzed at
once. Commands that would train are always given tiny sizes first (``--steps 1 --hidden 4``...),
and the options that set a call's cost are only ever given values that fail validation; a sweep
is always a ``--dry-run --no-estimate`` (a real one starts worker processes).

    python benchmarks/fuzz_cli.py [--lists 400] [--seed 18]

prints the exit-code histogram, the crashes and the error lines that are not one line.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import os
import random
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import click
from click.testing import CliRunner

from seqbench.cli import cli

# the command walk and the chdir helper are those of the tests (tests/clihelp.py), which the
# property fuzz of tests/test_fuzz_cli.py uses too; tests/ is not a package: put it on the path
TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
from clihelp import commands, inside  # noqa: E402

#: seconds one call may take before it counts as hung (a FIFO read blocks forever)
HANG_S = 10

EXTREMES = ["1e12", "1000000000000", str(2**63), str(2**64), str(2**63 - 1), str(-(2**63)),
            str(2**64 + 1), "inf", "-inf", "nan", "NaN", "-0", "0", "-0.0", "1e-320", "1e308",
            "-1e308", "-1", "", " ", "0x10", "1_000", "1.5", "\u0663", "\uff11\uff12", "\u216b",
            "\u00e9", "\U0001f4a5", "\u202etxt", "a\u0301", "\x7f", "-", "--", "\u2212" + "1"]
#: values for the options that set a call's cost: every one fails validation (no unicode
#: digits: int("\u0663") is 3, and a big one would be a real, slow value)
COST_VALUES = ["1e12", str(2**63), str(2**64), str(-(2**63)), "inf", "nan", "-1", "", "1.5",
               "\U0001f4a5", "0x10", "\u2212" + "1"]
#: awkward paths, made by ``populate``
PATHS = ["results", "results/runs.csv", "fifo.csv", "dangling.csv", "dangling_dir",
         "bom/runs.csv", "torn/runs.csv", "perm/runs.csv", "foreign.csv", "empty.csv",
         "binary.csv", "adir", "afile", "afile/sub", "tiny.toml", "garbage.toml", "RUN",
         "results/runs", "\u00fcn\u00efc\u00f6d\u00e9.csv", "\U0001f4a5", "missing/deep/x.csv",
         "fifo_dir", "bom", "torn", "perm", ".", ""]
NAMES = ["adding", "copy", "lstm", "gru", "rnn", "halves", "quick", "full", "lr", "seed",
         "hand", "builtin", "x", "\u00e9", "\U0001f4a5"]

#: per command, the tiny sizes given first (later occurrences of an option replace them: the
#: fuzz gives those options only values that fail validation)
BOUNDED = {
    "run": ["--steps", "1", "--hidden", "4", "-T", "4", "--batch-size", "2", "--eval-size", "2",
            "--test-size", "2", "--eval-every", "1", "--device", "cpu", "--threads", "1", "-q",
            "--out", "out"],
    "grads": ["-T", "4", "--hidden", "4", "--batch-size", "2", "--seeds", "1", "--device",
              "cpu", "--threads", "1", "-q", "--out", "grads.csv"],
    "bench": ["-T", "2", "--batch", "1", "--hidden", "4", "--layers", "1", "--repeats", "1",
              "--warmup", "0", "--threads", "1", "--device", "cpu", "-q", "--no-scaling",
              "--no-probe", "--out", "bench.csv", "--sweep-runs", "0"],
    "demo": ["-T", "4", "--steps", "1", "--threads", "1", "-q", "--out", "demo"],
    "sweep": ["tiny.toml", "--workers", "1", "--threads-per-worker", "1"],
    "report": ["--no-run-figures", "-q", "-j", "1"],
    "dynamics": ["-T", "4", "--hidden", "4", "--seeds", "1", "--batch-size", "2", "-k", "2",
                 "--lag", "1", "--top", "1", "--probes", "1", "--warmup", "0", "--device", "cpu",
                 "--threads", "1", "-q", "--out", "dynamics.csv"],
    "curse": ["--steps", "4", "--batch", "2", "--hidden", "2", "--probes", "1", "-q",
              "--out", "curse.csv"],
}
#: options whose value sets the cost of a call: fuzzed with COST_VALUES only
COST = {"steps", "hidden", "seq_len", "seq_lens", "batch_size", "batch", "eval_size",
        "test_size", "layers", "seeds", "repeats", "warmup", "sweep_runs", "sweep_steps",
        "match_params", "workers", "threads_per_worker", "per_gpu", "jobs", "limit",
        "eval_seq_lens", "threads", "profile", "spec", "exponents", "lag", "top", "probes"}
#: always added (after the fuzzed tokens) to these commands
ALWAYS = {"sweep": ["--dry-run", "--no-estimate"]}


def populate(root: Path) -> None:
    """The scratch folder: a finished tiny run, and every awkward path of PATHS."""
    from seqbench.results import RUN_COLUMNS

    runner = CliRunner()
    with inside(root):
        result = runner.invoke(cli, ["run", *BOUNDED["run"][:-2], "--checkpoint-every", "1",
                                     "--out", "results"])
        assert result.exit_code == 0, result.output
    (run_dir,) = (root / "results" / "runs").iterdir()
    (root / "RUN").symlink_to(run_dir, target_is_directory=True)
    good = (root / "results" / "runs.csv").read_bytes()
    for name in ("bom", "torn", "perm", "adir", "fifo_dir"):
        (root / name).mkdir()
    (root / "bom" / "runs.csv").write_bytes(b"\xef\xbb\xbf" + good)
    (root / "torn" / "runs.csv").write_text(",".join(RUN_COLUMNS)[:50])
    rows = list(csv.reader(good.decode().splitlines()))
    order = [1, 0, *range(2, len(rows[0]))]
    with open(root / "perm" / "runs.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([[r[i] for i in order] for r in rows])
    os.mkfifo(root / "fifo.csv")
    os.mkfifo(root / "fifo_dir" / "runs.csv")
    (root / "dangling.csv").symlink_to(root / "nowhere" / "x.csv")
    (root / "dangling_dir").symlink_to(root / "nowhere", target_is_directory=True)
    (root / "afile").write_text("mine\n")
    (root / "foreign.csv").write_text("name,score\nalice,3\n")
    (root / "empty.csv").write_text("")
    (root / "binary.csv").write_bytes(bytes(range(256)))
    (root / "\u00fcn\u00efc\u00f6d\u00e9.csv").write_bytes(good)
    (root / "garbage.toml").write_text("[grid\nseed = [0, 1e12, nan]\n")
    (root / "tiny.toml").write_text(
        '[settings]\ntask = "adding"\nseq_len = 4\nhidden = 4\nsteps = 1\nbatch_size = 2\n'
        'eval_every = 1\neval_size = 2\ntest_size = 2\nuntil_solved = false\ndevice = "cpu"\n'
        '[grid]\nseed = [0, 1]\n')


def _value(rng: random.Random, param: click.Parameter) -> str:
    if param.name in COST:
        return rng.choice(COST_VALUES)
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(EXTREMES)
    if roll < 0.75 or isinstance(param.type, click.Path):
        return rng.choice(PATHS)
    if isinstance(param.type, click.Choice):
        return str(rng.choice(list(param.type.choices)))
    if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
        return str(rng.randint(0, 3))
    return rng.choice(NAMES)


def argument_lists(n: int, seed: int) -> list[list[str]]:
    """``n`` argument lists, the same for the same seed: commands in turn, each option given
    one time in three, a value drawn from the extremes, the paths or the valid values (one list
    in four fuzzes only the paths, so that most of those calls get past the other options)."""
    rng = random.Random(seed)
    cmds = sorted(commands())
    lists = []
    for i in range(n):
        if i % 50 == 49:  # now and then: garbage at the top level
            lists.append([rng.choice(EXTREMES + ["--help", "--version", "runn", "-h"])
                          for _ in range(rng.randint(0, 3))])
            continue
        path, cmd = cmds[i % len(cmds)]
        tokens: list[str] = []
        paths_only = i % 4 == 0  # one list in four: only files and folders, to go deeper
        for param in cmd.params:
            if paths_only and not (isinstance(param, click.Argument)
                                   or isinstance(param.type, click.Path)):
                continue
            if isinstance(param, click.Argument):
                count = rng.randint(0, 2) if param.nargs == -1 else int(rng.random() < 0.8)
                tokens += [rng.choice(PATHS + EXTREMES[:12]) for _ in range(count)]
            elif rng.random() < 1 / 3:
                flag = rng.choice(param.opts + param.secondary_opts)
                tokens += [flag] if param.is_flag or param.count else [flag, _value(rng, param)]
        name = " ".join(path)
        lists.append([*path, *BOUNDED.get(name, []), *tokens, *ALWAYS.get(name, [])])
    return lists


class Hang(Exception):
    """A call took more than HANG_S seconds."""


@dataclass
class Report:
    lists: int = 0
    exit_codes: collections.Counter = field(default_factory=collections.Counter)
    crashes: list = field(default_factory=list)  # (argv, what)
    not_one_line: list = field(default_factory=list)  # (argv, output) of errors
    seconds: float = 0.0

    def summary(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.exit_codes.items(), key=str))
        return (f"{self.lists} argument lists in {self.seconds:.1f}s; exit codes {{{codes}}}; "
                f"{len(self.crashes)} crash(es); {len(self.not_one_line)} error(s) not one line")


def fuzz(n: int = 400, seed: int = 18, root: Path | None = None) -> Report:
    """Run ``n`` fixed-seed argument lists in a scratch folder (``root``, else a temporary one)."""
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seqbench-fuzz-")))
        populate(root)
        report = Report()
        t0 = time.perf_counter()
        for argv in argument_lists(n, seed):
            report.lists += 1
            code, output, crash = _invoke(root, argv)
            report.exit_codes[code] += 1
            if crash:
                report.crashes.append((argv, crash))
            elif code == 2 and _error_lines(output) != 1:
                report.not_one_line.append((argv, output[-400:]))
        report.seconds = time.perf_counter() - t0
        return report


def _error_lines(output: str) -> int:
    """Lines of an error's output other than warnings (a good error has exactly one)."""
    return len([line for line in output.splitlines() if not line.startswith("Warning: ")])


def _invoke(root: Path, argv: list[str]) -> tuple[int | str, str, str]:
    """(exit code, output, what crashed or "") of one call."""
    import torch

    def alarm(signum, frame):
        raise Hang(f"no answer after {HANG_S}s")

    threads = torch.get_num_threads()
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_S)
    try:
        with inside(root), warnings.catch_warnings():
            warnings.simplefilter("default")
            result = CliRunner().invoke(cli, argv)
    except Hang as e:  # raised outside click's handling (a FIFO opened in a C call)
        return "hang", "", str(e)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        torch.set_num_threads(threads)
    output, code = result.output, result.exit_code
    if isinstance(result.exception, Hang):
        return "hang", output, str(result.exception)
    if "Traceback" in output:
        return code, output, "traceback in the output"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return code, output, f"{type(result.exception).__name__}: {result.exception}"[:300]
    if code not in (0, 1, 2, 141):
        return code, output, f"exit code {code}"
    return code, output, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=400)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    report = fuzz(args.lists, args.seed)
    for argv, what in report.crashes:
        print(f"CRASH {what}: seqbench {' '.join(map(repr, argv))}")
    for argv, output in report.not_one_line:
        print(f"NOT ONE LINE: seqbench {' '.join(map(repr, argv))}\n  {output!r}")
    print(report.summary())
    sys.exit(1 if report.crashes else 0)


if __name__ == "__main__":
    main()
