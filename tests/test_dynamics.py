"""seqbench.dynamics (issue 16, dynamics): Lyapunov spectra, Jacobian singular values and the
curse of memory, checked against exact linear cases and closed forms; every registered cell
measured; builtin cells agree with their hand twins; the CLI's rows and one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from seqbench import memory
from seqbench.cells import CellConfig
from seqbench.cells.registry import cell_names
from seqbench.cells.stack import HandRNN
from seqbench.cli import cli
from seqbench.dynamics import measures as M
from seqbench.dynamics.curse import curse_of_memory, scalar_sensitivity_variance
from seqbench.dynamics.records import (
    DYNAMICS_COLUMNS,
    Options,
    measure_at_init,
    measure_model,
)
from seqbench.dynamics.state import layer_maps, run_layer
from seqbench.model import build_model
from seqbench.results import CELL_COLUMNS
from seqbench.tasks import make_task


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def linear_rnn(w_hh: torch.Tensor, inputs: int = 2) -> HandRNN:
    rnn = HandRNN("rnn", inputs, w_hh.shape[0], 1, "linear")
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(w_hh)
    return rnn


def layer(rnn, x):
    return layer_maps(rnn, x.shape[1], x)[0]


def orthogonal(n, seed=0):
    return torch.linalg.qr(torch.randn(n, n, generator=gen(seed)))[0]


# -- Lyapunov spectrum: exact cases ----------------------------------------------------------------


@pytest.mark.parametrize("g", [0.7, 1.0, 1.3])
def test_orthogonal_linear_rnn_has_every_exponent_log_g(g):
    x = torch.randn(40, 3, 2, generator=gen(1))
    sp, _ = M.lyapunov(layer(linear_rnn(g * orthogonal(8)), x), x, 8, gen())
    assert sp.exponents.shape == (3, 8)
    np.testing.assert_allclose(sp.exponents, math.log(g), atol=1e-5)
    np.testing.assert_allclose(sp.running, math.log(g), atol=1e-5)  # exact from the first step


def test_diagonal_linear_rnn_has_the_sorted_log_moduli():
    d = torch.tensor([0.3, -1.2, 0.9, 0.5, -0.05, 1.05])
    x = torch.randn(120, 2, 2, generator=gen(2))
    m = layer(linear_rnn(torch.diag(d)), x)
    sp, _ = M.lyapunov(m, x, 4, gen(), warmup=60)  # the frame aligns during the warm-up
    want = np.sort(np.log(np.abs(d.numpy())))[::-1][:4]
    np.testing.assert_allclose(sp.exponents, np.broadcast_to(want, (2, 4)), atol=1e-4)
    full, _ = M.lyapunov(m, x, 99, gen(), warmup=60)  # k above D: every exponent
    assert full.exponents.shape == (2, 6)
    np.testing.assert_allclose(full.exponents.sum(1), np.log(np.abs(d.numpy())).sum(), atol=1e-4)


@pytest.mark.parametrize("gain, sign", [(0.5, -1), (4.0, 1)])
def test_contracting_and_chaotic_tanh_rnn(gain, sign):
    H = 32
    rnn = HandRNN("rnn", 2, H, 1)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(gain * torch.randn(H, H, generator=gen(3)) / math.sqrt(H))
    x = 0.1 * torch.randn(300, 2, 2, generator=gen(4))
    sp, _ = M.lyapunov(layer(rnn, x), x, 2, gen(), warmup=50)
    assert np.sign(sp.exponents[:, 0]).tolist() == [sign, sign]


# -- Jacobians ---------------------------------------------------------------------------------------


def test_products_of_orthogonal_jacobians_have_singular_values_g_to_the_k(monkeypatch):
    g = 0.9
    x = torch.randn(30, 2, 2, generator=gen(5))
    m = layer(linear_rnn(g * orthogonal(6)), x)
    states, _ = run_layer(m, x)
    products = M.jacobian_products(m, states, x, [1, 5, 20], 29, 2, gen())
    for p in products:
        assert p.exact and p.singular_values.shape == (2, 6)
        np.testing.assert_allclose(p.singular_values, g**p.lag, rtol=1e-5)
    norms = M.step_norms(m, states, x, M.norm_steps(30, 4), gen())
    np.testing.assert_allclose(norms, g, rtol=1e-5)
    # the power iteration, as used beyond EXACT_MAX_WIDTH, finds the same top values
    monkeypatch.setattr(M, "EXACT_MAX_WIDTH", 2)
    p = M.jacobian_products(m, states, x, [7], 29, 2, gen())[0]
    assert not p.exact and p.singular_values.shape == (2, 2)
    np.testing.assert_allclose(p.singular_values, g**7, rtol=1e-4)
    np.testing.assert_allclose(M.step_norms(m, states, x, np.array([3]), gen()), g, rtol=1e-4)


# -- sensitivity and the curse of memory ---------------------------------------------------------------


def test_scalar_sensitivity_matches_the_closed_form():
    lam, T, B = 0.8, 60, 4000
    rnn = linear_rnn(torch.tensor([[lam]]), inputs=1)
    with torch.no_grad():
        rnn.weight_ih_l0.fill_(1.0)
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
    x = torch.randn(T, B, 1, generator=gen(6))
    se = M.sensitivity(layer(rnn, x), x, 16, gen())
    assert se.exact and se.params == ("weight_hh",)
    for t in (0, 5, T - 1):
        want = scalar_sensitivity_variance(lam, t)
        assert np.mean(se.norms[t] ** 2) == pytest.approx(want, rel=0.1, abs=1e-12)
    # the limit formula, reached by t = 59 at lambda = 0.8
    assert scalar_sensitivity_variance(lam, T - 1) == pytest.approx(
        scalar_sensitivity_variance(lam), rel=1e-6)


def test_hutchinson_estimate_agrees_with_the_exact_norm(monkeypatch):
    rnn = HandRNN("rnn", 2, 4, 1)
    x = torch.randn(20, 3, 2, generator=gen(7))
    exact = M.sensitivity(layer(rnn, x), x, 16, gen())
    monkeypatch.setattr(M, "SENSITIVITY_EXACT_MAX", 0)
    estimate = M.sensitivity(layer(rnn, x), x, 600, gen())
    assert exact.exact and not estimate.exact
    np.testing.assert_allclose(estimate.norms[-1], exact.norms[-1], rtol=0.15)


def test_curse_of_memory_linear_explodes_and_lru_is_tamed():
    df = curse_of_memory(memories=(0.5, 0.95), cells=("linear", "lru"), steps=250, batch=48,
                         hidden=3).set_index(["cell", "param", "memory"]).sort_index()
    lin = df.loc[("linear", "weight_hh")]
    nu = df.loc[("lru", "nu_log")]
    for frame in (lin, nu):  # each against its closed form (Monte Carlo over 48 sequences)
        np.testing.assert_allclose(frame["value"], frame["theory"], rtol=0.25)
    assert lin.loc[0.95, "value"] / lin.loc[0.5, "value"] > 10  # theory: 26
    assert nu.loc[0.95, "value"] / nu.loc[0.5, "value"] < 2  # theory: 1.3


# -- every cell, builtin twins, rows -----------------------------------------------------------------


@pytest.mark.parametrize("name", cell_names())
def test_every_registered_cell_gives_spectra_of_the_right_shape(name):
    task = make_task("adding")
    cfg = CellConfig(cell=name, impl="hand", hidden=4, layers=2).validate()
    model = build_model(task, cfg, 0, 6)
    batch = task.sample(6, 2, gen(8))
    results = measure_model(model, batch, 5, Options(exponents=3, lags=(1, 4), probes=4))
    assert [r.layer for r in results] == [0, 1]
    width = 8 if name in ("lstm", "cornn", "lru") else 4
    for r in results:
        assert r.spectrum.exponents.shape == (2, 3)
        # -inf is an exponent too (a direction a step annihilates: a relu unit that is off)
        assert not np.isnan(r.spectrum.exponents).any()
        assert (r.spectrum.exponents < np.inf).all()
        assert [p.singular_values.shape for p in r.products] == [(2, width)] * 2
        assert np.isfinite(r.norms).all()
        if name in ("mingru", "minlstm"):
            assert r.sensitivity is None  # no recurrent parameter
        else:
            assert r.sensitivity.norms.shape == (6, 2) and np.isfinite(r.sensitivity.norms).all()


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_builtin_cells_agree_with_their_hand_twins(name):
    options = Options(exponents=4, lags=(1, 5), probes=4)
    rows = {impl: pd.DataFrame(measure_at_init("adding", None, 12, CellConfig(
        cell=name, impl=impl, hidden=5), seed=1, batch_size=3, options=options))
        for impl in ("builtin", "hand")}
    a, b = rows["builtin"], rows["hand"]
    assert len(a) == len(b) and (a["measure"] == b["measure"]).all()
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-4, atol=1e-6)


def test_rows_are_long_format_with_provenance():
    rows = pd.DataFrame(measure_at_init("adding", None, 10, CellConfig("lstm", "hand", 3), seed=0,
                                        batch_size=2, options=Options(exponents=2, lags=(3,))))
    assert set(rows.columns) == set(DYNAMICS_COLUMNS) and set(CELL_COLUMNS) <= set(rows.columns)
    assert set(rows["measure"]) == {"lyapunov", "lyapunov_running", "jacobian_sv", "step_norm",
                                    "sensitivity"}
    assert (rows["torch_version"] == torch.__version__).all() and (rows["step"] == 0).all()
    assert rows["probe_id"].nunique() == 1
    assert rows.loc[rows["measure"] == "jacobian_sv", "lag"].unique().tolist() == [3]


# -- the command line ------------------------------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("args, message", [
    (["--lag", 50], "--lag 50 is outside 1 .. 9"),
    (["--exponents", 0], "1<=x<="),
    (["--measure", "lyapunovv"], "did you mean 'lyapunov'"),
    (["--cell", "rnn", "--norm", "layer"], "without in-cell normalization"),
    (["--batch-size", 10**7], "1<=x<=1000000"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    out = tmp_path / "d.csv"
    result = invoke("dynamics", "-T", 10, "--hidden", 3, "-o", out, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_memory_guard_refuses_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(memory.ENV_LIMIT, "0.5")
    result = invoke("dynamics", "-T", 100000, "--batch-size", 512, "-o", tmp_path / "d.csv")
    assert result.exit_code == 2 and "memory" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_appends_rows_and_draws_the_spectrum(tmp_path):
    out = tmp_path / "d.csv"
    args = ["dynamics", "-T", 8, "--hidden", 3, "--cell", "rnn", "--cell", "lstm", "--seeds", 2,
            "--batch-size", 2, "--exponents", 3, "--lag", 2, "-o", out]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "lyap_1" in first.output and "appended to" in first.output
    n = len(pd.read_csv(out))
    assert invoke(*args, "--measure", "lyapunov", "-q").exit_code == 0
    df = pd.read_csv(out)
    assert len(df) > n and list(df.columns) == DYNAMICS_COLUMNS  # one header, rows appended
    fig = invoke("plot", "spectrum", out, "-o", tmp_path / "s.png")
    assert fig.exit_code == 0, fig.output
    assert (tmp_path / "s.png").stat().st_size > 0
    (tmp_path / "foreign.csv").write_text("name,score\na,1\n")
    refused = invoke("dynamics", "-T", 8, "-o", tmp_path / "foreign.csv")
    assert refused.exit_code == 2 and (tmp_path / "foreign.csv").read_text() == "name,score\na,1\n"
