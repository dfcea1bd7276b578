"""LRU (Orvieto et al. 2023): the stack against the paper's equations, the parallel scan against the
step-by-step loop, the ring initialization, real parameters with a complex state, the gradient
probe and the options the cell refuses."""

import math

import numpy as np
import pytest
import torch

from seqbench import seeding
from seqbench.cells import CellConfig
from seqbench.cells.base import Cell
from seqbench.cells.lru import LRU
from seqbench.cells.stack import HandRNN
from seqbench.errors import ConfigError
from seqbench.model import build_model
from seqbench.probe import probe
from seqbench.provenance import kernel
from seqbench.tasks import make_task

I, H, B, LAYERS = 3, 8, 4, 2
NAMES = ("nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im", "D")


def paper_lru(u, x0, layers):
    """x_t = lambda x_{t-1} + gamma (B u_t), y_t = Re(C x_t) + D u_t (section 3 and appendix A),
    lambda = exp(-exp(nu_log) + i exp(theta_log)), gamma = exp(gamma_log); one step at a time,
    layer after layer. ``layers``: the parameters by name. Returns the top outputs, final states."""
    finals = []
    for p, x in zip(layers, x0):
        lam = torch.exp(-torch.exp(p["nu_log"]) + 1j * torch.exp(p["theta_log"]))
        b_norm = (p["B_re"] + 1j * p["B_im"]) * torch.exp(p["gamma_log"])[:, None]
        c = p["C_re"] + 1j * p["C_im"]
        ys = []
        for u_t in u:
            x = lam * x + u_t.to(b_norm.dtype) @ b_norm.T
            ys.append((x @ c.T).real + u_t @ p["D"].T)
        u = torch.stack(ys)
        finals.append(x)
    return u, torch.stack(finals)


def loss_of(out, h_n):
    """Weighs every output and both parts of the final complex state differently."""
    w = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)
    return (out * w).sum() + (h_n.real**2).sum() + (h_n.imag**3).sum()


def stack_and_inputs(T, seed=0):
    """A float64 stack at the paper's initialization, inputs and a random complex initial state."""
    torch.manual_seed(seed)
    rnn = HandRNN("lru", I, H, LAYERS).double()
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    h0 = torch.randn(LAYERS, B, H, generator=gen, dtype=torch.complex128)
    return rnn, x, h0


@pytest.mark.parametrize("T", [7, 100])  # 100: the scan's chunked path (above 2 x 32 steps)
@pytest.mark.parametrize("fused", [True, False], ids=["scan", "loop"])
def test_stack_matches_the_papers_equations_in_float64(T, fused):
    rnn, x, h0 = stack_and_inputs(T)
    rnn.fused = fused
    x = x.requires_grad_()
    out, h_n = rnn(x, h0)
    assert out.dtype == torch.float64 and h_n.dtype == torch.complex128
    loss_of(out, h_n).backward()

    ref = [{k: rnn.layer_params(layer)[k].detach().clone().requires_grad_() for k in NAMES}
           for layer in range(LAYERS)]
    x_ref = x.detach().clone().requires_grad_()
    ref_out, ref_h_n = paper_lru(x_ref, h0, ref)
    leaves = [p for layer in ref for p in layer.values()] + [x_ref]
    grads = torch.autograd.grad(loss_of(ref_out, ref_h_n), leaves)

    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-10)
    torch.testing.assert_close(h_n, ref_h_n, rtol=0, atol=1e-10)
    mine = [rnn.layer_params(layer)[k].grad for layer in range(LAYERS) for k in NAMES] + [x.grad]
    for a, b in zip(mine, grads):
        assert b.norm() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("T", [1, 30, 150])
def test_fast_layer_equals_layer(T):
    """The parallel scan and the step-by-step loop: outputs, final state and every gradient
    (the parameters', the input's and the complex initial state's)."""
    rnn, x, h0 = stack_and_inputs(T, seed=T)
    cell, params = rnn.cells[0], rnn.layer_params(0)
    results = []
    for run in (cell.fast_layer, cell.layer):
        xs, hs = x.clone().requires_grad_(), h0[0].clone().requires_grad_()
        out, (h_n,) = run(params, xs, (hs,))
        leaves = list(params.values()) + [xs, hs]
        results.append((out, h_n, torch.autograd.grad(loss_of(out, h_n), leaves)))
    (out_f, h_f, g_f), (out_l, h_l, g_l) = results
    torch.testing.assert_close(out_f, out_l, rtol=0, atol=1e-10)
    torch.testing.assert_close(h_f, h_l, rtol=0, atol=1e-10)
    for a, b in zip(g_f, g_l):
        assert b.norm() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_step_and_layer_compute_the_same_function():
    rnn, x, h0 = stack_and_inputs(20, seed=3)
    cell, params = rnn.cells[0], rnn.layer_params(0)
    out, (h_n,) = cell.layer(params, x, (h0[0],))
    by_step, (h_step,) = Cell.layer(cell, params, x, (h0[0],))  # the interface's loop over step
    torch.testing.assert_close(out, by_step, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n, h_step, rtol=0, atol=1e-12)


def initialized(cell):
    params = {k: torch.empty(s, dtype=torch.float64) for k, s in cell.parameter_shapes().items()}
    cell.reset_parameters(params)
    return params


@pytest.mark.parametrize("ring", [(0.0, 1.0, 6.28), (0.9, 0.999, math.pi / 10)],
                         ids=["appendix-A", "narrow"])
def test_ring_initialization(ring):
    """|lambda| in [r_min, r_max] and uniform on the ring (|lambda|^2 uniform), phase in
    (0, max_phase] and uniform, gamma = sqrt(1 - |lambda|^2); B, C, D at their scales."""
    r_min, r_max, max_phase = ring
    n_in, n = 64, 4096
    cls = type("RingLRU", (LRU,), {"r_min": r_min, "r_max": r_max, "max_phase": max_phase})
    torch.manual_seed(0)
    p = initialized(cls(n_in, n))
    modulus = torch.exp(-torch.exp(p["nu_log"]))
    phase = torch.exp(p["theta_log"])
    assert torch.isfinite(torch.stack([p["nu_log"], p["theta_log"], p["gamma_log"]])).all()
    assert modulus.min() >= r_min and modulus.max() <= r_max and modulus.max() < 1
    assert phase.min() > 0 and phase.max() <= max_phase
    # uniform on the ring: |lambda|^2 uniform on [r_min^2, r_max^2], the phase uniform
    sq = (modulus**2 - r_min**2) / (r_max**2 - r_min**2)
    assert abs(sq.mean().item() - 0.5) < 0.02 and abs(sq.var().item() - 1 / 12) < 0.01
    assert abs((phase / max_phase).mean().item() - 0.5) < 0.02
    # gamma = sqrt(1 - |lambda|^2), computed without cancellation near |lambda| = 1
    one_minus = -torch.expm1(-2 * torch.exp(p["nu_log"]))
    torch.testing.assert_close(torch.exp(2 * p["gamma_log"]), one_minus, rtol=1e-10, atol=0)
    for name, std in (("B_re", 1 / math.sqrt(2 * n_in)), ("B_im", 1 / math.sqrt(2 * n_in)),
                      ("C_re", 1 / math.sqrt(n)), ("C_im", 1 / math.sqrt(n)), ("D", 1 / math.sqrt(n_in))):
        assert abs(p[name].std().item() / std - 1) < 0.05, name
        assert abs(p[name].mean().item()) < 0.05 * std, name


def test_parameters_real_state_complex():
    rnn = HandRNN("lru", I, H, LAYERS)
    assert all(not p.is_complex() for p in rnn.parameters())
    assert [k for k in rnn.state_dict()] == [f"{k}_l{layer}" for layer in range(LAYERS) for k in NAMES]
    x = torch.randn(5, B, I)
    (h0,) = rnn.initial_state(B, x)
    assert h0.dtype == torch.complex64 and h0.shape == (LAYERS, B, H) and not h0.any()
    out, h_n = rnn(x)
    assert out.dtype == torch.float32 and h_n.dtype == torch.complex64
    assert rnn.double().initial_state(B, x.double())[0].dtype == torch.complex128
    assert kernel("lru", "hand", torch.device("cpu")) == "hand (scan)"


def test_gradient_probe_gives_finite_decreasing_curves():
    """One layer, loss at t* only: dL/dx_{t-1} = conj(lambda) * dL/dx_t with |lambda| < 1, so the
    norm falls at every lag; the probe leaves the model as it was."""
    task, seq_len = make_task("adding"), 20
    model = build_model(task, CellConfig(cell="lru", hidden=8), 0, seq_len=seq_len)
    batch = task.sample(seq_len, 8, seeding.generator(0, "probe"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curves = probe(model, task, batch, seq_len)
    assert len(curves) == 1
    c = curves[0]
    np.testing.assert_array_equal(c.lags, np.arange(task.query_step(seq_len) + 1))
    assert np.all(np.isfinite(c.grad_norm)) and c.grad_norm[0] > 0
    assert np.all(np.diff(c.grad_norm) < 0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("options", [
    {"init": "orthogonal"}, {"init_gain": 2.0}, {"forget_bias": 1.0}, {"chrono": True},
    {"norm": "layer"}, {"nonlinearity": "tanh"},
], ids=lambda o: next(iter(o)))
def test_options_the_cell_cannot_take_are_one_line_errors(options):
    with pytest.raises(ConfigError) as err:
        CellConfig(cell="lru", **options).validate()
    message = str(err.value)
    assert "'lru'" in message and "\n" not in message


def test_validate_resolves_impl_and_nonlinearity():
    cfg = CellConfig(cell="lru").validate()
    assert (cfg.impl, cfg.nonlinearity) == ("hand", "linear")
