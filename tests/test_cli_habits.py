"""What a new user ran into (issue 15, part 4): runs that slowed each other down when several ran at
once, no progress when stderr is a log file, sweeps that could not be trimmed from the command line,
`| head` that ended in exit 1 or stopped a sweep, an empty folder after a Ray connection failure,
`--steps 0` accepted, and names that had to be typed in the registry's case with no suggestion."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import types

import pytest
import torch
from clihelp import invoke

from seqbench import progress, threads
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.spec import expand_spec, load_spec, parse_overrides
from seqbench.threads import Peer, ThreadShare, plan_threads

FAST = ["--seq-len", "5", "--hidden", "8", "--steps", "3", "--eval-every", "2", "--eval-size", "16",
        "--test-size", "16", "--batch-size", "8"]


@pytest.fixture(autouse=True)
def own_registry(tmp_path, monkeypatch):
    """A registry of training processes of this test alone (other tests and runs on the machine
    must not change the thread counts seen here), and the once-per-process warning reset."""
    monkeypatch.setenv(threads.REGISTRY_ENV, str(tmp_path / "procs"))
    monkeypatch.setattr(threads, "_warned", False)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# -- 1. several runs at once: each takes its share of the cores ---------------------------------


def test_plan_threads_shares_the_cores():
    assert plan_threads(2, [], default=2) == 2  # alone: torch's default
    assert plan_threads(2, [Peer(10)], default=2) == 1  # two runs on two cores: one each
    assert plan_threads(16, [Peer(10), Peer(11), Peer(12)], default=16) == 4
    assert plan_threads(8, [Peer(10, threads=4)], default=8) == 4  # a fixed --threads 4 keeps its 4
    assert plan_threads(2, [Peer(10, threads=2), Peer(11, threads=1)], default=2) == 1  # at least 1
    assert plan_threads(16, [Peer(10)], default=4) == 4  # never more than torch's default


class FakeTorch:
    def __init__(self, n):
        self.n, self.calls = n, []

    def get(self):
        return self.n

    def set(self, n):
        self.n = n
        self.calls.append(n)


def test_thread_share_follows_the_other_runs_and_warns_once(tmp_path):
    others, now, said, torch_ = [Peer(10)], [0.0], [], FakeTorch(2)
    share = ThreadShare(None, list_peers=lambda: others, cores=2, clock=lambda: now[0],
                        get_threads=torch_.get, set_threads=torch_.set, warn=said.append,
                        directory=tmp_path)
    with share:
        assert torch_.n == 1 and len(said) == 1
        assert "1 other seqbench training process(es)" in said[0] and "--threads" in said[0]
        assert "using 1 torch thread(s) instead of 2" in said[0]
        others.clear()
        now[0] = 1.0
        assert share.poll() == 1  # looked less than CHECK_EVERY_S ago: unchanged
        now[0] = 3.0
        assert share.poll() == 2 and torch_.n == 2  # the other run ended: the cores are back
        others.append(Peer(11))
        now[0] = 6.0
        assert share.poll() == 1 and len(said) == 1  # warned once only
        assert (tmp_path / str(os.getpid())).is_file()  # registered while running
    assert not (tmp_path / str(os.getpid())).exists()
    assert share.used == 1 and torch_.n == 2  # the row says 1; torch's count is put back


def test_explicit_threads_are_never_changed(tmp_path):
    said, torch_ = [], FakeTorch(2)
    with ThreadShare(2, list_peers=lambda: [Peer(10), Peer(11)], cores=2, get_threads=torch_.get,
                     set_threads=torch_.set, warn=said.append, directory=tmp_path) as share:
        assert share.poll(force=True) == 2
    assert torch_.calls == [2] and said == [] and share.used == 2


def test_registry_lists_live_processes_and_drops_dead_ones(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / dead).write_text('{"threads": null, "start": null}')
    (tmp_path / str(os.getppid())).write_text('{"threads": 3, "start": null}')
    threads.register(None, tmp_path)  # this process: never its own peer
    assert threads.peers(tmp_path) == [Peer(os.getppid(), 3)]
    assert not (tmp_path / dead).exists()


def test_run_takes_its_share_unless_threads_is_given(tmp_path):
    registry = threads.registry_dir()
    registry.mkdir(parents=True)
    (registry / str(os.getppid())).write_text('{"threads": null, "start": null}')  # a live run
    torch.set_num_threads(2)  # torch's default on a 2-core machine (conftest restores it)
    result = invoke(["run", *FAST, "--quiet", "--out", "out"], tmp_path)
    assert result.exit_code == 0, result.output
    share = plan_threads(threads.available_cores(), [Peer(os.getppid())], default=2)
    if share < 2:  # 1 on a machine of 2 or 3 cores: said once, on stderr
        assert f"Warning: 1 other seqbench training process(es) share this machine's " \
               f"{threads.available_cores()} cores: using {share} torch thread(s) instead of 2" \
               in result.stderr
    assert rows(tmp_path / "out" / "runs.csv")[0]["threads"] == str(share)
    assert torch.get_num_threads() == 2  # put back after the run

    result = invoke(["run", *FAST, "--quiet", "--threads", "2", "--out", "fixed"], tmp_path)
    assert result.exit_code == 0 and "Warning" not in result.output, result.output
    assert rows(tmp_path / "fixed" / "runs.csv")[0]["threads"] == "2"


# -- 2. progress when stderr is not a terminal -------------------------------------------------


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_plain_progress_every_30_seconds_with_eta():
    clock, out = Clock(), io.StringIO()  # StringIO: not a terminal
    bar = progress.ProgressLine(100, "adding T=5", stream=out, eta=True, clock=clock)
    bar.update(1, "loss 0.5 (50.0%) | 2.0 steps/s")
    clock.t += 10
    bar.update(10, "loss 0.4")
    assert out.getvalue() == ""  # nothing before 30 s
    clock.t += 21
    bar.update(31, "loss 0.3 (30.0%) | 1.0 steps/s")
    assert out.getvalue() == "adding T=5: step 31/100 (31%) loss 0.3 (30.0%) | 1.0 steps/s | ETA 1m11s\n"
    clock.t += 5
    bar.update(36, "loss 0.3")
    assert out.getvalue().count("\n") == 1  # the next one 30 s later
    bar.close()
    assert out.getvalue().count("\n") == 1


def test_terminal_bar_has_eta_and_quiet_draws_nothing():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    clock, tty = Clock(), Tty()
    bar = progress.ProgressLine(10, "x", stream=tty, eta=True, clock=clock)
    bar.update(0, "")
    clock.t += 2
    bar.update(5, "loss 1")
    assert "5/10 loss 1 | ETA 2.0s" in tty.getvalue()
    quiet = io.StringIO()
    silent = progress.ProgressLine(10, "x", stream=quiet, enabled=False, clock=clock)
    clock.t += 100
    silent.update(5)
    assert quiet.getvalue() == ""


def test_closed_progress_stream_is_dropped():
    class Closed(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    clock = Clock()
    bar = progress.ProgressLine(10, "x", stream=Closed(), clock=clock, every=0)
    bar.update(1)
    clock.t += 1
    bar.update(2)  # no exception: the run goes on
    assert not bar.enabled


def test_run_prints_plain_progress_to_a_log_unless_quiet(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    result = invoke(["run", *FAST, "--out", "out"], tmp_path)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if ": step " in line]
    assert lines and lines[-1].startswith("adding T=5 lstm/builtin s0: step 3/3 (100%) loss ")
    assert "steps/s" in lines[-1] and "ETA" in lines[-1]
    quiet = invoke(["run", *FAST, "--quiet", "--out", "out"], tmp_path)
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr


# -- 3. sweep overrides: --set, --limit, --seq-len -----------------------------------------------

SPEC = """
[settings]
task = "adding"
hidden = 8
steps = 3
eval_every = 2
eval_size = 16
test_size = 16
batch_size = 8

[grid]
seq_len = [5, 7]
cell = ["rnn", "gru"]
seed = [0, 1, 2]
"""


def spec_file(tmp_path, text=SPEC):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def listed(result):
    assert result.exit_code == 0, result.output
    return [line.split()[1] for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]


def test_set_limit_and_seq_len_shape_the_dry_run(tmp_path):
    spec = spec_file(tmp_path)
    dry = ["sweep", str(spec), "--dry-run", "--no-estimate", "--out", "out"]
    assert len(listed(invoke(dry, tmp_path))) == 12
    trimmed = invoke([*dry, "--set", "seeds=2", "--seq-len", "7"], tmp_path)
    assert len(listed(trimmed)) == 4 and "T=5" not in trimmed.stdout
    assert "seed 2" not in trimmed.stdout
    limited = invoke([*dry, "--seq-len", "5", "--seq-len", "7", "--limit", "5"], tmp_path)
    assert len(listed(limited)) == 5 and "--limit 5: 7 more not run now" in limited.stdout
    # a changed value is another run: not mixed up with the spec's own recorded runs
    plain, longer = listed(invoke(dry, tmp_path)), listed(invoke([*dry, "--set", "steps=4"], tmp_path))
    assert len(longer) == 12 and not set(plain) & set(longer)
    same = listed(invoke([*dry, "--set", "seeds=3", "--set", "device=cpu"], tmp_path))
    assert same == plain  # seeds 0..2 and the device (not part of a run's identity): the same runs


def test_set_values_are_checked_like_spec_values(tmp_path):
    spec = spec_file(tmp_path)
    configs = load_spec(spec).expand(overrides=parse_overrides(["steps=5", "cell=GRU", "lr=1"]))
    assert {(c.steps, c.cell.cell, c.lr) for c in configs} == {(5, "gru", 1.0)}
    assert len(configs) == 6  # the cell list is replaced: 2 lags x 3 seeds
    dry = ["sweep", str(spec), "--dry-run", "--no-estimate"]
    one_line_error(invoke([*dry, "--set", "stepz=3"], tmp_path),
                   "--set stepz: unknown key; did you mean 'steps'? (allowed: task,")
    one_line_error(invoke([*dry, "--set", "steps=many"], tmp_path),
                   "--set steps must be an integer, got 'many'")
    one_line_error(invoke([*dry, "--set", "steps"], tmp_path), "give key=value")
    one_line_error(invoke([*dry, "--set", "seeds=0"], tmp_path), "seeds must be an integer >= 1")
    one_line_error(invoke([*dry, "--set", "steps=0"], tmp_path), "steps must be >= 1")
    one_line_error(invoke([*dry, "--seq-len", "9"], tmp_path), "no run has --seq-len 9",
                   "allowed: 5, 7")
    assert not (tmp_path / "seqbench-results").exists()


ARMS_SPEC = SPEC.replace('cell = ["rnn", "gru"]\n', "") + """
[[arms]]
name = "plain"
cell = "rnn"

[[arms]]
name = "gated"
cell = "gru"
"""


def test_arm_picks_the_runs_of_named_arms(tmp_path):
    spec = spec_file(tmp_path, ARMS_SPEC)
    dry = ["sweep", str(spec), "--dry-run", "--no-estimate", "--out", "out"]
    assert len(listed(invoke(dry, tmp_path))) == 12
    gated = invoke([*dry, "--arm", "gated"], tmp_path)
    assert len(listed(gated)) == 6 and "[plain]" not in gated.stdout and "gru" in gated.stdout
    both = invoke([*dry, "--arm", "gated", "--arm", "plain", "--seq-len", "7"], tmp_path)
    assert len(listed(both)) == 6 and "T=5" not in both.stdout
    one_line_error(invoke([*dry, "--arm", "gatd"], tmp_path), "no arm named gatd",
                   "allowed: plain, gated")
    one_line_error(invoke(["sweep", str(spec_file(tmp_path)), "--dry-run", "--arm", "x"],
                          tmp_path), "no arm named x", "allowed: none (the spec has no arms)")


def test_limit_runs_the_next_n_each_time(tmp_path):
    spec = spec_file(tmp_path)
    args = ["sweep", str(spec), "--seq-len", "5", "--set", "cell=rnn", "--limit", "2", "--quiet",
            "--out", "out"]
    assert invoke(args, tmp_path).exit_code == 0
    first = rows(tmp_path / "out" / "runs.csv")
    assert [r["seed"] for r in first] == ["0", "1"]
    assert invoke(args, tmp_path).exit_code == 0
    assert [r["seed"] for r in rows(tmp_path / "out" / "runs.csv")] == ["0", "1", "2"]


# -- 4. a closed pipe ----------------------------------------------------------------------------


def seqbench(*args):
    return [sys.executable, "-m", "seqbench", *args]


def test_dry_run_into_head_exits_141_quietly(tmp_path):
    # more output than a pipe holds (about 100 KB), below the 1,000 runs that need --yes
    seeds = ", ".join(map(str, range(500)))
    arms = "".join(f"[[arms]]\nname = '{'an_arm_with_a_long_name_' * 2}{i}'\ncell = 'lstm'\n"
                   for i in range(2))
    spec = spec_file(tmp_path, f"[settings]\ntask = 'adding'\nseq_len = 5\n[grid]\n"
                               f"seed = [{seeds}]\n{arms}")
    proc = subprocess.Popen(seqbench("sweep", str(spec), "--dry-run", "--no-estimate", "--out",
                                     str(tmp_path / "out")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141, err
    assert first.split()[0] == b"1" and err == b""


def test_sweep_goes_on_when_its_stdout_closes(tmp_path):
    spec = spec_file(tmp_path, SPEC.replace("[5, 7]", "[5]").replace("[0, 1, 2]", "[0, 1]"))
    out = tmp_path / "out"
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen(seqbench("sweep", str(spec), "--out", str(out)),
                                stdout=subprocess.PIPE, stderr=err)
        first = proc.stdout.readline()
        proc.stdout.close()  # the reader went away after the first run's line
        assert proc.wait(timeout=300) == 0, (tmp_path / "stderr").read_text()
    assert b"seed 0" in first
    assert len(rows(out / "runs.csv")) == 4  # every run, not just those before the pipe closed
    assert "sweep: ran 4 run(s) (4 ok)" in (tmp_path / "stderr").read_text()


# -- 5. nothing written when the sweep cannot start; --steps >= 1 -------------------------------


def test_unreachable_ray_cluster_creates_no_out_folder(tmp_path, monkeypatch):
    def init(**kwargs):
        raise ConnectionError(f"could not reach {kwargs.get('address')}")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init)
    monkeypatch.setitem(sys.modules, "ray", fake)
    spec = spec_file(tmp_path)
    result = invoke(["sweep", str(spec), "--executor", "ray", "--address", "127.0.0.1:1",
                     "--out", "out"], tmp_path)
    assert result.exit_code == 2, result.output
    last = result.output.splitlines()[-1]  # after the line that says what the sweep would run
    assert last.startswith("Error: cannot connect to the Ray cluster at '127.0.0.1:1': "), last
    assert not (tmp_path / "out").exists()


def test_steps_zero_is_refused_everywhere(tmp_path):
    one_line_error(invoke(["run", "--steps", "0", "--seq-len", "5"], tmp_path), "--steps", "1<=x")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=r"^steps must be >= 1, got 0$"):
        RunConfig(steps=0).validate()
    spec = spec_file(tmp_path, SPEC.replace("steps = 3", "steps = 0"))
    with pytest.raises(ConfigError, match="steps must be >= 1, got 0") as e:
        expand_spec(spec)
    assert "\n" not in str(e.value)


# -- 6. names in any case, and "did you mean" ----------------------------------------------------


def test_names_ignore_case(tmp_path):
    result = invoke(["run", *FAST, "--quiet", "--task", "ADDING", "--variant", "Anywhere",
                     "--cell", "LSTM", "--impl", "Hand", "--init", "Orthogonal", "--optimizer",
                     "RMSprop", "--device", "CPU", "--out", "out"], tmp_path)
    assert result.exit_code == 0, result.output
    row = rows(tmp_path / "out" / "runs.csv")[0]
    assert (row["task"], row["variant"], row["cell"], row["impl"], row["init"], row["optimizer"]) \
        == ("adding", "anywhere", "lstm", "hand", "orthogonal", "rmsprop")


@pytest.mark.parametrize("args,message", [
    (["--task", "addding"], "unknown task 'addding'; did you mean 'adding'? (allowed: adding, copy,"),
    (["--cell", "lsmt"], "unknown cell 'lsmt'; did you mean 'lstm'? (allowed: rnn, lstm, gru,"),
    (["--variant", "halfs"], "unknown variant 'halfs' for task adding; did you mean 'halves'? "
                             "(allowed: halves, anywhere)"),
    (["--impl", "handd"], "did you mean 'hand'?"),
    (["--init", "orthogonl"], "did you mean 'orthogonal'?"),
    (["--norm", "layr"], "did you mean 'layer'?"),
    (["--nonlinearity", "rellu"], "did you mean 'relu'?"),
    (["--optimizer", "adamm"], "did you mean 'adam'?"),
    (["--device", "cpuu"], "did you mean 'cpu'?"),
    (["--cell", "transformer"], "unknown cell 'transformer'; allowed: rnn, lstm"),  # nothing close
], ids=lambda v: v[0] if isinstance(v, list) else None)
def test_unknown_names_suggest_the_closest(tmp_path, args, message):
    one_line_error(invoke(["run", *args, "--steps", "1", "--seq-len", "5"], tmp_path), message)
    assert list(tmp_path.iterdir()) == []


def test_class_paths_stay_case_sensitive():
    from seqbench.cells.registry import check_cell_name
    from seqbench.tasks.registry import check_task_name

    assert check_cell_name("my_pkg.cells:LSTM") == "my_pkg.cells:LSTM"
    assert check_task_name("my_pkg.tasks:Adding") == "my_pkg.tasks:Adding"


def test_specs_normalize_names_and_suggest(tmp_path):
    upper = load_spec(spec_file(tmp_path, SPEC.replace('"adding"', '"Adding"')
                                .replace('["rnn", "gru"]', '["RNN", "gru"]'))).expand()
    lower = load_spec(spec_file(tmp_path)).expand()
    assert [c.config_id() for c in upper] == [c.config_id() for c in lower]
    for old, new, message in [
        ('"adding"', '"addding"', "settings.task: unknown task 'addding'; did you mean 'adding'?"),
        ('"gru"]', '"gruu"]', "grid.cell: unknown cell 'gruu'; did you mean 'gru'?"),
        ("steps = 3", "stepz = 3", "settings.stepz: unknown key; did you mean 'steps'? (allowed:"),
        ("[grid]", "[gird]", "gird: unknown top-level key; did you mean 'grid'?"),
    ]:
        with pytest.raises(ConfigError) as e:
            expand_spec(spec_file(tmp_path, SPEC.replace(old, new)))
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_the_library_takes_names_in_any_case_with_one_config_id():
    from seqbench.cells import CellConfig
    from seqbench.config import RunConfig

    typed = RunConfig(task="Adding", cell=CellConfig(cell="LSTM")).validate()
    assert (typed.task, typed.cell.cell) == ("adding", "lstm")
    assert typed.config_id() == RunConfig().config_id()
