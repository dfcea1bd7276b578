"""The gradient-vs-lag probe: theory, agreement of the two measurement methods, no side effects."""

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from seqbench import seeding
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.config import RunConfig
from seqbench.grads import GRADS_COLUMNS, measure_at_init
from seqbench.model import build_model
from seqbench.probe import (
    UNDERFLOW,
    builtin_lags,
    decay_factor,
    gradient_horizon,
    horizon_bracket,
    probe,
    probe_builtin,
    probe_hand,
)
from seqbench.tasks import make_task
from seqbench.train import train


@pytest.mark.parametrize("gain", [0.5, 0.9, 1.0])
def test_linear_orthogonal_rnn_decays_by_its_gain(gain):
    """||dL/dh_{t*-k}|| = g^k ||dL/dh_{t*}|| for a linear RNN with W_hh = g Q (Q orthogonal)."""
    cell = CellConfig(cell="rnn", impl="hand", nonlinearity="linear", init="orthogonal",
                      init_gain=gain, hidden=32)
    rows = pd.DataFrame(measure_at_init("adding", None, 60, cell, seed=0, batch_size=8))
    assert abs(rows["decay_factor"].iloc[0] - gain) < 1e-3
    norms = rows["grad_norm"].to_numpy()
    expected = norms[0] * gain ** rows["lag"].to_numpy()
    np.testing.assert_allclose(norms, expected, rtol=1e-4)
    if gain == 1.0:
        assert np.ptp(norms) / norms[0] < 1e-5  # constant across lags
        assert rows["horizon"].iloc[0] == ""


def _twin_models(task, seq_len, dtype=torch.float64, **cell):
    """A built-in and a hand-written model with identical weights."""
    models = [build_model(task, CellConfig(impl=impl, hidden=16, **cell), 7, seq_len).to(dtype)
              for impl in ("builtin", "hand")]
    batch = task.sample(seq_len, 8, seeding.generator(0, "probe"))
    batch.inputs = batch.inputs.to(dtype)
    if batch.targets.is_floating_point():
        batch.targets = batch.targets.to(dtype)
    return models, batch


def _max_rel(a, b):
    mask = np.abs(b) > 0
    return float(np.max(np.abs(a[mask] - b[mask]) / np.abs(b[mask])))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cell,layers,extra", [
    ("rnn", 1, {}), ("rnn", 2, {"nonlinearity": "relu"}), ("lstm", 1, {}), ("lstm", 2, {}),
    ("gru", 1, {}), ("gru", 2, {}), ("lstm", 3, {"residual": True}),
])
@pytest.mark.parametrize("task_name", ["adding", "copy", "delayed_recall"])
def test_builtin_probe_agrees_with_hand(task_name, cell, layers, extra, dtype):
    task = make_task(task_name)
    T = 40
    (builtin, hand), batch = _twin_models(task, T, dtype, cell=cell, layers=layers, **extra)
    ch = probe_hand(hand, task, batch, T)
    cb = probe_builtin(builtin, task, batch, T)
    assert len(cb) == len(ch) == layers
    for a, b in zip(ch, cb):
        np.testing.assert_array_equal(a.lags, np.arange(task.query_step(T) + 1))
        assert _max_rel(b.grad_norm, a.grad_norm[b.lags]) < 1e-4
        assert _max_rel(b.grad_norm_median, a.grad_norm_median[b.lags]) < 1e-4
        if cell == "lstm":
            assert _max_rel(b.cell_grad_norm, a.cell_grad_norm[b.lags]) < 1e-4


def test_builtin_lags_are_log_spaced_and_cover_the_ends():
    lags = builtin_lags(999)
    assert lags[0] == 0 and lags[-1] == 999 and len(lags) >= 20
    assert np.all(np.diff(lags) > 0)
    np.testing.assert_array_equal(builtin_lags(10), np.arange(11))


def test_hand_probe_gives_every_lag_of_each_layer():
    task = make_task("adding")
    model = build_model(task, CellConfig(cell="lstm", impl="hand", hidden=8, layers=2), 0)
    batch = task.sample(30, 4, seeding.generator(0, "probe"))
    curves = probe(model, task, batch, 30)
    assert [c.layer for c in curves] == [0, 1]
    for c in curves:
        np.testing.assert_array_equal(c.lags, np.arange(30))
        assert c.cell_grad_norm is not None and np.all(c.grad_norm > 0)


def test_decay_fit_ignores_underflow_and_horizon_is_first_crossing():
    lags = np.arange(10)
    norms = 0.5 ** lags
    norms[6:] = [0.0, 1e-45, 0.0, 0.0]  # underflow: zeros and a denormal
    assert decay_factor(lags, norms) == pytest.approx(0.5, rel=1e-12)
    norms = np.array([1.0, 1e-3, 1e-7, 1e-9])
    assert gradient_horizon(np.arange(4), norms) == 2
    assert gradient_horizon(np.arange(3), np.array([1.0, 0.5, 0.3])) is None
    assert UNDERFLOW == np.finfo(np.float32).tiny


def test_decay_fit_stops_above_the_floor_that_flushed_denormals_leave():
    """With denormals flushed, a backward product under float32's smallest normal becomes 0 and
    the norm can freeze on a constant (coRNN at initialization, adding T = 500, froze at 1.65e-35
    from lag ~275). The fit leaves that floor out: the decay of the curve above it stands."""
    from seqbench.probe import FIT_FLOOR

    lags = np.arange(300)
    norms = 0.73 ** lags
    frozen = norms < 1.65e-35
    norms[frozen] = 1.65e-35
    assert frozen.sum() > 40 and 1.65e-35 < FIT_FLOOR < 1e-30
    assert decay_factor(lags, norms) == pytest.approx(0.73, rel=1e-9)


@pytest.mark.parametrize("impl", ["builtin", "hand"])
def test_probing_does_not_change_training(impl):
    cfg = RunConfig(task="delayed_recall", seq_len=12, steps=30, eval_every=10, batch_size=16,
                    cell=CellConfig(cell="lstm", impl=impl, hidden=16), until_solved=False)
    plain = train(cfg, torch.device("cpu"))
    calls = []
    probed = train(RunConfig(**{**cfg.__dict__, "probe_every": 10}), torch.device("cpu"),
                   probe=lambda step, model: calls.append(step))
    assert calls == [0, 10, 20, 30]
    for p, q in zip(plain.model.parameters(), probed.model.parameters()):
        assert torch.equal(p, q)
    assert [c.eval_loss for c in plain.curve] == [c.eval_loss for c in probed.curve]


def test_run_with_probe_every_writes_grads_csv(tmp_path):
    result = CliRunner().invoke(cli, [
        "run", "--task", "delayed_recall", "--seq-len", "8", "--cell", "gru", "--hidden", "16",
        "--steps", "20", "--probe-every", "10", "--no-until-solved", "--out", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    grads = pd.read_csv(run_dir / "grads.csv")
    assert list(grads.columns) == GRADS_COLUMNS
    assert sorted(grads["step"].unique()) == [0, 10, 20]
    assert (grads["run_id"] == run_dir.name).all()
    # one row per (probe, layer, lag): builtin lags are every lag here (t* = 8 is small)
    assert len(grads) == 3 * 9


def test_grads_command_and_decay_figure(tmp_path):
    out = tmp_path / "grads.csv"
    args = ["grads", "--task", "adding", "--seq-len", "30", "--cell", "rnn", "--cell", "lstm",
            "--impl", "hand", "--impl", "builtin", "--hidden", "16", "--seeds", "2",
            "--batch-size", "8", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert df.groupby(["cell", "impl"])["seed"].nunique().to_dict() == {
        ("lstm", "builtin"): 2, ("lstm", "hand"): 2, ("rnn", "builtin"): 2, ("rnn", "hand"): 2}
    assert df[df.impl == "hand"].groupby("probe_id")["lag"].max().eq(29).all()
    assert df[df.cell == "lstm"]["cell_grad_norm"].notna().all()
    assert df[df.cell == "rnn"]["cell_grad_norm"].isna().all()
    png = tmp_path / "fig" / "decay.png"
    result = CliRunner().invoke(cli, ["plot", "decay", str(out), "-o", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,message", [
    (["grads", "--cell", "lstm", "--impl", "builtin", "--norm", "layer"], "hand only"),
    (["grads", "--task", "adding", "--seq-len", "1"], "seq_len"),
    (["grads", "--cell", "rnn", "--impl", "builtin", "--nonlinearity", "elu"], "hand only"),
])
def test_grads_bad_input_is_one_line(tmp_path, args, message):
    out = tmp_path / "grads.csv"
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("Error:")
    assert message in result.output and not out.exists()


def test_decay_figure_by_family_draws_the_reference_in_every_panel():
    from seqbench.plots.decay import plot_decay

    arms = {"rnn_tanh": {"cell": "rnn"}, "rnn_no_clip": {"cell": "rnn"},
            "irnn": {"cell": "rnn", "nonlinearity": "relu", "init": "identity"},
            "lstm_fb3": {"cell": "lstm", "forget_bias": 3.0}}
    rows = []
    for label, options in arms.items():
        cell = CellConfig(impl="hand", hidden=8, **options)
        rows += measure_at_init("delayed_recall", None, 12, cell, 0, 4, label=label)
    fig = plot_decay(pd.DataFrame(rows), by_family=True)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["initialization", "gated cells",
                                                 "training options"]
    for ax in panels:  # the shortest-named plain tanh RNN is the reference, in every legend
        assert any(t.get_text().startswith("rnn_tanh:") for t in ax.get_legend().get_texts())


def test_horizon_bracket_is_exact_on_every_lag_and_a_bracket_on_a_coarse_grid():
    every = np.arange(10)
    norms = 0.1 ** every.astype(float)  # 1e-6 of lag 0 first undershot at lag 7
    assert horizon_bracket(every, norms) == (7, 7)
    coarse = np.array([0, 1, 2, 4, 8])  # what a log-spaced grid sees of the same curve
    assert horizon_bracket(coarse, norms[coarse]) == (5, 8)  # crossing somewhere in 5..8
    assert horizon_bracket(every, np.ones(10)) is None


def _curve_rows(probe_id, seed, lags, norms, lag_grid_exact=True):
    bracket = horizon_bracket(lags, norms)
    return [{"probe_id": probe_id, "task": "adding", "seq_len": 9, "cell": "rnn", "impl": "hand",
             "layers": 1, "layer": 0, "step": 0, "seed": seed, "label": "", "lag": int(k),
             "grad_norm": float(v), "decay_factor": 0.5,
             "horizon": "" if bracket is None else bracket[1],
             "horizon_min": "" if bracket is None else bracket[0]} for k, v in zip(lags, norms)]


def test_summary_counts_seeds_that_never_reach_the_horizon_instead_of_dropping_them():
    from seqbench.grads import summarize

    lags = np.arange(10)
    rows = (_curve_rows("a", 0, lags, 0.1 ** lags.astype(float))  # horizon 7
            + _curve_rows("b", 1, lags, np.ones(10))  # never: censored at lag 9
            + _curve_rows("c", 2, lags, np.ones(10)))
    out = summarize(pd.DataFrame(rows)).iloc[0]
    assert out["seeds"] == 3 and out["horizon_reached"] == 1
    assert out["horizon_mean_reached"] == 7  # over the seed that reached it, said as 1 of 3
    assert np.isnan(out["horizon_km_median"])  # fewer than half reached: "not reached"
    two = summarize(pd.DataFrame(rows[:20] + _curve_rows("d", 3, lags, 0.1 ** lags.astype(float))
                                 )).iloc[0]
    assert two["horizon_reached"] == 2 and two["horizon_km_median"] == 7 and two["horizon_exact"]
    coarse = np.array([0, 1, 2, 4, 8])
    rough = summarize(pd.DataFrame(_curve_rows("e", 0, coarse, 0.1 ** coarse.astype(float)))).iloc[0]
    assert rough["horizon_mean_reached"] == 8 and not rough["horizon_exact"]


def test_read_grads_fits_the_decay_again_from_the_norms(tmp_path):
    """A grads CSV written before a change of the fit reads with the current fit: the norms are
    the observation, the factor is recomputed from them (one value per probe and layer)."""
    from seqbench.grads import read_grads

    lags = np.arange(300)
    norms = 0.73 ** lags
    norms[norms < 1.65e-35] = 1.65e-35  # the floor flushed denormals leave
    rows = pd.DataFrame({"probe_id": "p@0", "task": "adding", "seq_len": 300, "cell": "cornn",
                         "layers": 1, "layer": 0, "step": 0, "lag": lags, "grad_norm": norms,
                         "cell_grad_norm": np.nan, "decay_factor": 0.85,
                         "cell_decay_factor": np.nan})
    other = rows.assign(probe_id="p@10", grad_norm=0.5 ** lags + 0.0, decay_factor=0.9)
    pd.concat([rows, other]).to_csv(tmp_path / "grads.csv", index=False)
    read = read_grads([tmp_path / "grads.csv"])
    by_probe = read.groupby("probe_id")["decay_factor"].agg(["min", "max"])
    assert by_probe.loc["p@0", "min"] == by_probe.loc["p@0", "max"] == pytest.approx(0.73)
    assert by_probe.loc["p@10", "max"] == pytest.approx(0.5)
    assert read["cell_decay_factor"].isna().all()
