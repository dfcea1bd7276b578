"""Sweep estimates: the arithmetic on stubbed timings, the grouping by speed, a real (tiny)
measurement, and ``seqbench sweep --dry-run``, which times but writes nothing."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from seqbench import estimate
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.estimate import Timing, contention, estimate_sweep, group_runs


def cfg(**kw) -> RunConfig:
    cell = CellConfig(**{k: kw.pop(k) for k in ("cell", "impl", "hidden", "init", "forget_bias",
                                                 "chrono") if k in kw})
    base = dict(task="adding", seq_len=5, steps=10, eval_every=4, eval_size=4, test_size=8,
                batch_size=8, until_solved=False, device="cpu")
    return RunConfig(cell=cell, **{**base, **kw}).validate()


@pytest.fixture
def stub_timer(monkeypatch):
    """measure_group replaced: step 0.25 s x T/5, evaluation 1 s (binary-exact numbers)."""
    calls = []

    def measure(c, device, threads):
        calls.append((c.seq_len, c.cell.cell, device.type, threads))
        return Timing(step_s=0.25 * c.seq_len / 5, eval_s=1.0)

    monkeypatch.setattr(estimate, "measure_group", measure)
    return calls


def test_arithmetic_on_stubbed_timings_is_exact(stub_timer):
    # one run: 10 steps x 0.25 s; evaluations at steps 0, 4, 8, 10 (4 x 4 sequences) plus the
    # test set (8 sequences) at 1 s / 4 sequences: 24 x 0.25 s
    assert estimate.run_seconds(cfg(), Timing(0.25, 1.0), 4) == 2.5 + 6.0
    # probes at steps 0, 4, 8 and after the last: 4, at one step each
    assert estimate.probes(cfg(probe_every=4)) == 4 and estimate.evaluations(cfg()) == 4
    assert estimate.run_seconds(cfg(probe_every=4), Timing(0.25, 1.0), 4) == 3.5 + 6.0

    runs = [cfg(seed=s) for s in range(3)] + [cfg(seq_len=10, until_solved=True)]
    e = estimate_sweep(runs, workers=2, threads=1, cores=2)
    assert stub_timer == [(5, "lstm", "cpu", 1), (10, "lstm", "cpu", 1)]  # once per group
    assert e.runs == 4 and e.steps == 40
    assert [g.seconds for g in e.groups] == [3 * 8.5, 5.0 + 6.0]
    assert [g.step_s for g in e.groups] == [0.25, 0.5] and [g.runs for g in e.groups] == [3, 1]
    assert e.run_seconds == 36.5 and e.parallel == 2 and e.contention == 1.1
    assert e.seconds == pytest.approx(36.5 / 2 * 1.1, rel=1e-15)
    assert e.stops_early and not e.on_gpu


def test_workers_beyond_the_cores_and_the_longest_run(stub_timer):
    assert contention(1, 2, 2) == 1.0  # one worker: the measured speed itself
    assert contention(2, 1, 2) == 1.1  # measured: two one-thread workers on 2 cores, ~10% slower
    assert contention(4, 1, 2) == pytest.approx(2.2) and contention(2, 2, 2) == pytest.approx(2.2)
    runs = [cfg(seed=s) for s in range(4)]
    e = estimate_sweep(runs, workers=4, threads=1, cores=2)
    assert e.seconds == pytest.approx(4 * 8.5 / 4 * 2.2)
    # more workers than runs: the sweep still lasts as long as its longest run
    one = estimate_sweep([cfg(seq_len=20)], workers=8, threads=1, cores=16)
    assert one.parallel == 1 and one.seconds == one.run_seconds == 10 * 1.0 + 6.0


def test_cuda_runs_assume_no_speed_up_from_packing(stub_timer, monkeypatch):
    monkeypatch.setattr(estimate, "resolve_devices", lambda cs: {"cuda": torch.device("cuda")})
    runs = [cfg(seed=s, device="cuda") for s in range(8)]
    e = estimate_sweep(runs, workers=8, threads=1, gpus=2)
    assert e.on_gpu and e.parallel == 2 and e.contention == 1.0
    assert e.seconds == 8 * 8.5 / 2
    text = e.summary(8, 2)
    assert text.startswith("estimated 34 s on this device with 8 workers on 2 GPUs (")
    assert "assumes no speed-up from packing 4 runs per GPU" in text
    assert "seqbench bench --sweep-runs" in text


def test_groups_merge_runs_that_differ_only_in_what_they_compute():
    same = [cfg(), cfg(lr=1e-2), cfg(seed=3), cfg(init="orthogonal"), cfg(forget_bias=1.0),
            cfg(chrono=True), cfg(clip=0.5), cfg(label="arm"), cfg(optimizer="rmsprop")]
    other = [cfg(hidden=16), cfg(impl="hand"), cfg(batch_size=16), cfg(seq_len=10),
             cfg(cell="gru"), cfg(task="copy", seq_len=5)]
    groups = group_runs(same + other, threads=1)
    assert len(groups) == 1 + len(other)
    assert list(groups.values())[0] == same
    assert len(group_runs(same, threads=1)) == 1 and len(group_runs(same + same, threads=2)) == 1


def test_summary_and_table(stub_timer):
    e = estimate_sweep([cfg(until_solved=True), cfg(seq_len=10, hidden=16)], workers=2, cores=2)
    assert e.summary(2) == ("estimated at most 12 s on this device with 2 workers (runs that "
                            "solve stop early; timing: 2 groups measured in 0 s)")
    lines = estimate.format_groups(e).splitlines()
    assert lines[0].split() == ["T", "cell", "impl", "hidden", "ms/step", "runs", "hours"]
    assert lines[1].split() == ["5", "lstm", "builtin", "128", "250.0", "1", "0.00"]
    assert lines[-1].split() == ["total", "2", "0.01"]
    assert estimate.hours_text(5760) == "1.6 h" and estimate.hours_text(600) == "10 min"


def test_real_measurement_of_a_tiny_config_is_positive_and_finite():
    tiny = cfg(hidden=4, steps=2, eval_every=1)
    timing = estimate.measure_group(tiny, torch.device("cpu"), threads=1)
    assert 0 < timing.step_s < math.inf and 0 < timing.eval_s < math.inf
    e = estimate_sweep([tiny], workers=1, threads=1)
    assert 0 < e.seconds < math.inf and e.steps == 2 and e.groups[0].step_s > 0
    assert torch.get_num_threads() == 1  # restored


def test_bad_arguments_and_unavailable_cuda():
    with pytest.raises(ConfigError, match="workers, threads and gpus must be >= 1"):
        estimate_sweep([cfg()], workers=0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cannot time the runs here: device 'cuda'.*"
                                              "--no-estimate"):
            estimate_sweep([replace(cfg(), device="cuda")])


SPEC = """[settings]
task = 'adding'
seq_len = 5
hidden = 4
steps = 2
eval_every = 1
eval_size = 8
test_size = 8
batch_size = 4
[grid]
seed = [0, 1]
lr = [1e-3, 1e-2]
"""


def test_cli_dry_run_estimates_and_writes_nothing(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["sweep", str(spec), "--dry-run", "--out", str(out),
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"{spec}: 4 runs, 0 already recorded in {out}/runs.csv, 4 to run (8 training steps)" \
        in lines
    assert any(line.split()[:2] == ["T", "cell"] for line in lines)
    assert any(line.split()[:2] == ["5", "lstm"] and line.split()[5] == "4" for line in lines)
    assert lines[-1].startswith("estimated at most ") and "with 2 workers" in lines[-1]
    assert "timing: 1 group measured in" in lines[-1]
    assert not out.exists()


def test_cli_no_estimate_only_counts(tmp_path, monkeypatch):
    def boom(*args):
        raise AssertionError("timed despite --no-estimate")

    monkeypatch.setattr(estimate, "measure_group", boom)
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(cli, ["sweep", str(spec), "-n", "--no-estimate", "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].endswith("4 to run (8 training steps)")
    result = CliRunner().invoke(cli, ["sweep", str(spec), "--no-estimate"])
    assert result.exit_code == 2 and "Error: --no-estimate applies to --dry-run only" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cli_dry_run_on_a_missing_device_says_how_to_only_count(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(cli, ["sweep", str(spec), "-n", "--device", "cuda"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: cannot time the runs here: device 'cuda' requested")
    assert "--no-estimate" in result.output and len(result.output.splitlines()) == 1


def test_flossed_steps_are_counted_apart_and_flossing_makes_its_own_group():
    """A flossed run pays the flossing term on its first floss_steps steps only; the number of
    exponents flossed sets that cost, so it is part of the speed group."""
    from seqbench.estimate import Timing, group_key, run_seconds

    plain = RunConfig(task="adding", seq_len=10, cell=CellConfig(cell="rnn", hidden=8), steps=300,
                      eval_every=100, eval_size=10, test_size=10)
    flossed = RunConfig(task="adding", seq_len=10, cell=CellConfig(cell="rnn", hidden=8),
                        steps=300, eval_every=100, eval_size=10, test_size=10, floss=4,
                        floss_steps=100)
    timing = Timing(step_s=0.01, eval_s=0.0, floss_s=0.05)
    assert run_seconds(flossed, timing, 10) - run_seconds(plain, timing, 10) == \
        pytest.approx(100 * 0.05)
    assert group_key(plain, 1) != group_key(flossed, 1)
