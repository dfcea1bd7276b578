"""Property test (issue 7): random argument lists thrown at every command never show a traceback,
end with exit code 0 or 2, say what is wrong in exactly one line starting with "Error:", and leave
every file alone when they fail.

The options are read from the click commands themselves, so a new option is fuzzed at once. The
values mix valid ones, wrong types, out-of-range numbers, missing files, folders where files are
expected, foreign CSVs and garbage TOML specs. To stay fast, the options that set a run's cost
(steps, lengths, sizes, repeats) are always given, with a small valid value or an invalid one, and
a sweep whose spec parses as TOML is always a --dry-run.
"""

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner
from clihelp import commands, inside
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.results import RUN_COLUMNS
from seqbench.runner import execute_run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent

# -- the commands and their options, from click ---------------------------------------------------


COMMANDS = dict(commands())
assert {("run",), ("grads",), ("sweep",), ("leaderboard",), ("plot", "decay")} <= set(COMMANDS)

#: per command: options that set the cost of a successful call, and the small values allowed
SMALL = {
    "run": {"steps": (0, 2), "seq_len": (2, 6), "hidden": (1, 8), "layers": (1, 2),
            "batch_size": (1, 4), "eval_size": (1, 8), "threads": (1, 1)},
    "grads": {"seq_len": (2, 6), "hidden": (1, 8), "layers": (1, 2), "batch_size": (1, 4),
              "seeds": (1, 2), "threads": (1, 1)},
    "bench": {"seq_len": (2, 3), "batch": (1, 2), "hidden": (1, 4), "layers": (1, 1),
              "repeats": (1, 1), "warmup": (0, 0), "threads": (1, 1),
              # a sweep bench starts worker processes (tests/test_bench.py runs one)
              "sweep_runs": (0, 0), "sweep_steps": (1, 1)},
    "sweep": {"workers": (1, 2), "threads_per_worker": (1, 1)},
    "curse": {"steps": (2, 20), "batch": (1, 4), "hidden": (1, 4), "probes": (1, 4)},
}
#: integer options whose size costs nothing: fuzzed over a wide range
WIDE_INTS = {"seed", "checkpoint_every", "eval_every", "probe_every", "layer"}
#: valid values of options that take a name
NAMED = {"resume_dir": ["RESUMABLE", "RUN"], "profile": ["quick", "full"], "address": ["auto"],
         "spec": ["spec.toml", "spec.toml", "garbage.toml", "real.toml"],
         "runs_csv": ["results/runs.csv", "resumable/runs.csv", "foreign.csv", "binary.csv",
                      "empty.csv", "missing.csv", "adir", "afile/sub"],  # 1 in 8 draws a figure
         "variant": ["halves", "anywhere", "arjovsky", "tcn", "noisy", "blank"],
         "label": ["", "a"]}
#: at most this many occurrences of a repeatable option (grids multiply)
MAX_REPEAT = 2

# -- values -------------------------------------------------------------------------------------

#: files and folders in every example's folder (see _populate); paths stay inside it
PATHS = ["out", "results", "results/runs.csv", "adir", "afile", "afile/sub", "missing.csv",
         "missing/deeper/x.csv", "foreign.csv", "empty.csv", "binary.csv", "garbage.toml",
         "spec.toml", "real.toml", "RUN", "RESUMABLE", "resumable", ".", ""]


def _not_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return True
    return False


junk_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
numbers = st.one_of(
    st.integers(-10, 10).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e400", "-1e400", "0x10", "1_0", "1.5", "-0", "nan", "inf", "", " ", "-",
                     "--", "true"]),
)
#: invalid for an integer option (a valid one could be expensive)
bad_int = st.one_of(st.integers(max_value=-1).map(str),
                    st.sampled_from(["", "ten", "1.5", "1e3", "0x10", "nan", "inf", "-", "--"]),
                    junk_text.filter(_not_int))
safe_name = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=10).filter(
    lambda s: ".." not in s)
paths = st.one_of(st.sampled_from(PATHS), safe_name)


def _bounds(kind, default_lo: float) -> tuple[float, bool]:
    """The lower bound of a click number type (and whether it is open), else ``default_lo``."""
    lo = getattr(kind, "min", None)
    return (default_lo, False) if lo is None else (lo, bool(getattr(kind, "min_open", False)))


def _valid(command: str, param: click.Parameter):
    """Values of ``param`` that its command accepts (most of the time: combinations aside)."""
    name, kind = param.name, param.type
    small = SMALL.get(command, {})
    if name in small:
        return st.integers(*small[name]).map(str)
    if name in NAMED:
        return st.sampled_from(NAMED[name])
    if isinstance(kind, click.Path) or name in ("output", "out", "spec", "sources", "runs_csv"):
        return paths
    if isinstance(kind, click.Choice):
        return st.sampled_from(list(kind.choices))
    if isinstance(kind, (click.types.IntParamType, click.IntRange)):
        lo, open_ = _bounds(kind, 0)
        lo = int(lo) + open_
        wide = name in WIDE_INTS or (command.startswith("plot") and name in ("seq_len", "seed"))
        return st.integers(lo, lo + (2**40 if wide else 3)).map(str)
    if isinstance(kind, (click.types.FloatParamType, click.FloatRange)):
        lo, open_ = _bounds(kind, -5.0)
        return st.floats(lo, lo + 10, exclude_min=open_).map(repr)
    return st.one_of(st.sampled_from(["adding", "copy", "halves", "tcn", "lstm", "quick", "x"]),
                     junk_text)


def _invalid(command: str, param: click.Parameter):
    """Values of ``param`` of the wrong type or out of range (or any path)."""
    name, kind = param.name, param.type
    if isinstance(kind, click.Path) or name in ("output", "out", "spec", "sources", "runs_csv"):
        return paths
    if isinstance(kind, (click.types.IntParamType, click.IntRange)):
        wide = name in WIDE_INTS or (command.startswith("plot") and name in ("seq_len", "seed"))
        return numbers if wide and name not in SMALL.get(command, {}) else bad_int
    if isinstance(kind, (click.types.FloatParamType, click.FloatRange)):
        return numbers
    return junk_text


GARBAGE_OPTIONS = ["--epochs", "--seq_len", "-z", "---", "--=", "--task=adding", "--steps=1",
                   "-T", "--out=", "--help", "--version", "-h"]


@st.composite
def argument_lists(draw):
    """(argv, the content of garbage.toml, the spec dict of spec.toml)."""
    if draw(st.integers(0, 30)) == 0:  # now and then: garbage at the top level
        return draw(st.lists(st.one_of(st.sampled_from(GARBAGE_OPTIONS + ["bench", "runn"]),
                                       junk_text), max_size=4)), "", {}
    path, cmd = draw(st.sampled_from(sorted(COMMANDS.items())))
    command = " ".join(path)
    pairs: list[list[str]] = []  # token groups, shuffled below
    forced = set(SMALL.get(command, {}))
    options = [p for p in cmd.params if isinstance(p, click.Option)]
    resume = False
    bad = draw(st.sampled_from([0, 0.05, 0.2]))  # how often a value is invalid, per example
    for param in options:
        if param.name not in forced and draw(st.integers(0, 3)):
            continue  # each other option: one time in four
        times = draw(st.integers(1, MAX_REPEAT)) if param.multiple else 1
        for _ in range(times):
            flag = draw(st.sampled_from(param.opts + param.secondary_opts))
            if param.is_flag or param.count:
                pairs.append([flag])
                continue
            invalid = draw(st.floats(0, 1)) < bad
            pairs.append([flag, draw((_invalid if invalid else _valid)(command, param))])
            resume |= param.name == "resume_dir"
    if resume and draw(st.booleans()):  # a resume takes the run's own config: drop the rest
        pairs = [p for p in pairs if p[0] in ("--resume", "--device", "--threads", "--quiet",
                                              "-q")]
    for param in cmd.params:
        if isinstance(param, click.Argument):
            n = draw(st.integers(0, 2)) if param.nargs == -1 else draw(st.integers(0, 7)) > 0
            pairs += [[draw(st.one_of(_valid(command, param), paths))] for _ in range(n)]
    if draw(st.integers(0, 5)) == 0:
        pairs.append([draw(st.sampled_from(GARBAGE_OPTIONS))])
    order = draw(st.permutations(range(len(pairs))))
    argv = [*path, *[tok for i in order for tok in pairs[i]]]
    garbage = draw(st.one_of(junk_text, st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                             st.sampled_from(["[grid", "grid = [", "x = 1\nx = 2", "[[arms]]\n",
                                              "a = {", "grid = {seed = [0]}\nbogus = 1"])))
    spec = draw(specs())
    return argv, garbage, spec


SPEC_KEYS = ["task", "variant", "seq_len", "cell", "impl", "hidden", "layers", "lr", "steps",
             "seed", "batch_size", "forget_bias", "norm", "device", "label", "bogus", "clip_mode"]
spec_scalar = st.one_of(
    st.sampled_from(["adding", "copy", "delayed_recall", "lstm", "gru", "rnn", "builtin", "hand",
                     "cpu", "cuda", "halves", "layer", ""]),
    st.integers(-2, 6), st.floats(-10, 10), st.floats(allow_nan=True), st.booleans(),
    junk_text)
spec_table = st.dictionaries(st.sampled_from(SPEC_KEYS), spec_scalar, max_size=3)
spec_grid = st.dictionaries(st.sampled_from(SPEC_KEYS),
                            st.one_of(st.lists(spec_scalar, max_size=2), spec_scalar), max_size=3)


@st.composite
def specs(draw):
    """A spec as a dict: mostly the right shape, with wrong keys, types and values."""
    spec = {}
    if draw(st.booleans()):
        spec["description"] = draw(st.one_of(junk_text, st.integers()))
    if draw(st.booleans()):
        spec["settings"] = draw(spec_table)
    if draw(st.integers(0, 3)):
        spec["grid"] = draw(spec_grid)
    if draw(st.booleans()):
        spec["arms"] = draw(st.lists(st.fixed_dictionaries(
            {"name": st.one_of(st.sampled_from(["a", "b"]), st.integers())},
            optional={"cell": spec_scalar, "forget_bias": spec_scalar, "bogus": spec_scalar}),
            max_size=2))
    if draw(st.booleans()):
        spec["profiles"] = draw(st.dictionaries(
            st.sampled_from(["quick", "full"]),
            st.fixed_dictionaries({}, optional={"settings": spec_table, "grid": spec_grid,
                                                "bogus": spec_scalar}), max_size=2))
        if draw(st.booleans()):
            spec["default_profile"] = draw(st.sampled_from(["quick", "full", "nope"]))
    if draw(st.integers(0, 5)) == 0:
        spec[draw(st.sampled_from(["bogus", "seq_len"]))] = draw(spec_scalar)
    return spec


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(
            value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


# -- the folder each example runs in ------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """OUT with a finished two-step run (its checkpoint is its final state) and its runs.csv."""
    out = tmp_path_factory.mktemp("fuzz_base") / "results"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = RunConfig(task="adding", seq_len=4, cell=CellConfig("lstm", hidden=4), batch_size=4,
                        steps=2, eval_every=1, eval_size=4, until_solved=False, device="cpu")
        row, _ = execute_run(cfg, out=out, quiet=True, checkpoint_every=1)
    finally:
        torch.set_num_threads(n)
    return out, Path(row["run_dir"]).name


def _populate(root: Path, base: tuple[Path, str], garbage: str, spec: dict) -> dict[str, str]:
    out, run_id = base
    shutil.copytree(out, root / "results")
    shutil.copytree(out, root / "resumable")  # the same run, not recorded as finished
    (root / "resumable" / "runs.csv").write_text(",".join(RUN_COLUMNS) + "\n")
    for name, target in (("RUN", root / "results" / "runs" / run_id),
                         ("RESUMABLE", root / "resumable" / "runs" / run_id)):
        (root / name).symlink_to(target, target_is_directory=True)
    (root / "adir").mkdir()
    (root / "afile").write_text("mine\n")
    (root / "foreign.csv").write_text("name,score\nalice,3\n")
    (root / "empty.csv").write_text("")
    (root / "binary.csv").write_bytes(bytes(range(256)))
    (root / "garbage.toml").write_text(garbage, encoding="utf-8", errors="surrogateescape")
    (root / "spec.toml").write_text("".join(f"{json.dumps(k)} = {_toml(v)}\n"
                                            for k, v in spec.items()), encoding="utf-8")
    shutil.copy(REPO / "tasks" / "adding.toml", root / "real.toml")
    return snapshot(root)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (lock files aside) and the hash of each file."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            state[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            if f.endswith(".lock"):
                continue
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                state[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return state


def _parses_as_toml(path: Path) -> bool:
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return False
    return True


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=argument_lists())
def test_random_arguments_never_crash_and_errors_change_nothing(finished_run, case):
    argv, garbage, spec = case
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        before = _populate(root, finished_run, garbage, spec)
        if argv[:1] == ["sweep"]:
            specs_given = [a for a in argv[1:] if (root / a).is_file()]
            if any(_parses_as_toml(root / a) for a in specs_given):
                argv = [*argv, "--dry-run"]  # a real sweep would start worker processes
        if argv[:1] == ["grads"] and "real.toml" in argv:
            argv = [a if a != "real.toml" else "spec.toml" for a in argv]  # 36 real configs
        with inside(root), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a torn line skipped; not what is tested here
            result = CliRunner().invoke(cli, argv)
        torch.set_num_threads(threads)
        after = snapshot(root)

    output = result.output
    head = " ".join(argv[:2] if argv[:1] == ["plot"] else argv[:1])
    event(f"{head}: exit {result.exit_code}")  # pytest --hypothesis-show-statistics
    assert "Traceback" not in output, (argv, output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        argv, repr(result.exception), output)
    assert result.exit_code in (0, 2), (argv, result.exit_code, output)
    if result.exit_code == 2:
        lines = output.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (argv, output)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert not changed, (argv, output, changed)


# -- issue 18: 400 fixed-seed argument lists with extreme numbers, unicode and odd paths ----------

def _fuzz_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fuzz_cli", REPO / "benchmarks" / "fuzz_cli.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_400_fixed_seed_argument_lists_over_every_command_give_no_crash(tmp_path):
    """benchmarks/fuzz_cli.py: every command (read from click, so new ones too), 1e12, 2^63,
    2^64, inf, nan, -0 and unicode as values, a FIFO, links to nothing, a BOM file, a torn header
    and permuted columns as paths. No traceback, no exception, exit codes 0/1/2/141 only, no call
    that hangs, and every error is one line (warnings aside)."""
    fuzz = _fuzz_script()
    n = torch.get_num_threads()
    try:
        report = fuzz.fuzz(400, seed=18, root=tmp_path)
    finally:
        torch.set_num_threads(n)
    assert report.lists == 400
    assert not report.crashes, report.crashes[:5]
    assert not report.not_one_line, report.not_one_line[:5]
    assert set(report.exit_codes) <= {0, 1, 2, 141}, report.summary()
    assert report.exit_codes[0] >= 20, report.summary()  # not only refusals: some calls work
