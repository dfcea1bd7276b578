"""minGRU and minLSTM (Feng et al. 2024): the stack against the paper's equations, the log-space scan
against the step-by-step loop, the zero initial state, a sequence split in two, the
initialization, the gradient probe and the options the cells refuse."""

import copy
import math

import numpy as np
import pytest
import torch

from seqbench import seeding
from seqbench.cells import CellConfig
from seqbench.cells.base import Cell
from seqbench.cells.stack import HandRNN
from seqbench.errors import ConfigError
from seqbench.model import build_model
from seqbench.probe import probe
from seqbench.provenance import kernel
from seqbench.tasks import make_task

I, H, B, LAYERS = 3, 8, 4, 2
CELLS = ["mingru", "minlstm"]


def g(x):
    """The paper's g (appendix B): x + 1/2 for x >= 0, sigmoid(x) below."""
    return torch.where(x >= 0, x + 0.5, 1 / (1 + torch.exp(-x)))


def paper_step(cell, w, b, x_t, h):
    """One step of the paper's equations, the blocks of W x + b in the order the cell stacks them:
    minGRU (z, h~), minLSTM (f, i, h~)."""
    pre = x_t @ w.T + b
    sigmoid = lambda v: 1 / (1 + torch.exp(-v))  # noqa: E731
    if cell == "mingru":
        k_z, k_h = pre.chunk(2, -1)
        z = sigmoid(k_z)
        return (1 - z) * h + z * g(k_h)
    k_f, k_i, k_h = pre.chunk(3, -1)
    f, i = sigmoid(k_f), sigmoid(k_i)
    return f / (f + i) * h + i / (f + i) * g(k_h)


def paper_stack(cell, x, h0, layers):
    """Layer after layer, one step at a time; ``layers``: (W, b) per layer."""
    finals = []
    for (w, b), h in zip(layers, h0):
        outs = []
        for x_t in x:
            h = paper_step(cell, w, b, x_t, h)
            outs.append(h)
        x = torch.stack(outs)
        finals.append(h)
    return x, torch.stack(finals)


def loss_of(out, h_n):
    return (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum() + (h_n**3).sum()


def randomized_stack(cell, seed=0):
    """A float64 stack with weights of scale 1 (both branches of g and saturated gates occur)."""
    gen = torch.Generator().manual_seed(seed)
    rnn = HandRNN(cell, I, H, LAYERS).double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return rnn, gen


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T", [7, 100])
@pytest.mark.parametrize("fused", [True, False], ids=["scan", "loop"])
def test_stack_matches_the_papers_equations_in_float64(cell, T, fused):
    rnn, gen = randomized_stack(cell)
    rnn.fused = fused
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    h0 = torch.randn(LAYERS, B, H, generator=gen, dtype=torch.float64)
    out, h_n = rnn(x, h0)
    loss_of(out, h_n).backward()

    ref = [(rnn.layer_params(l)["weight_ih"].detach().clone().requires_grad_(),
            rnn.layer_params(l)["bias_ih"].detach().clone().requires_grad_()) for l in range(LAYERS)]
    ref_out, ref_h_n = paper_stack(cell, x, h0, ref)
    grads = torch.autograd.grad(loss_of(ref_out, ref_h_n), [p for layer in ref for p in layer])

    assert (out < 0).any()  # a negative h0 stays visible: h0 enters as itself, not as g(h0)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-10)
    torch.testing.assert_close(h_n, ref_h_n, rtol=0, atol=1e-10)
    mine = [rnn.layer_params(l)[k].grad for l in range(LAYERS) for k in ("weight_ih", "bias_ih")]
    for a, b in zip(mine, grads):
        assert b.norm() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T", [1, 30, 150])
@pytest.mark.parametrize("h0", ["random", "zero"])
@pytest.mark.parametrize("form", ["log_space_layer", "linear_scan_layer", "fast_layer"])
def test_fast_layer_equals_layer(cell, T, h0, form):
    """The log-space scan (the paper's), the linear-space scan and the step-by-step loop: outputs,
    final state and the gradients of the parameters, the input and the initial state (also at
    h0 = 0, which has no logarithm)."""
    rnn, gen = randomized_stack(cell, seed=T)
    layer, params = rnn.cells[0], rnn.layer_params(0)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    start = (torch.randn if h0 == "random" else torch.zeros)(B, H, dtype=torch.float64)
    results = []
    for run in (getattr(layer, form), layer.layer):
        xs, hs = x.clone().requires_grad_(), start.clone().requires_grad_()
        out, (h_n,) = run(params, xs, (hs,))
        leaves = list(params.values()) + [xs, hs]
        results.append((out, h_n, torch.autograd.grad(loss_of(out, h_n), leaves)))
    (out_f, h_f, g_f), (out_l, h_l, g_l) = results
    torch.testing.assert_close(out_f, out_l, rtol=0, atol=1e-10)
    torch.testing.assert_close(h_f, h_l, rtol=0, atol=1e-10)
    for a, b in zip(g_f, g_l):
        assert b.norm() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", CELLS)
def test_step_and_layer_compute_the_same_function(cell):
    rnn, gen = randomized_stack(cell, seed=4)
    layer, params = rnn.cells[0], rnn.layer_params(0)
    x = torch.randn(20, B, I, generator=gen, dtype=torch.float64)
    h0 = (torch.randn(B, H, generator=gen, dtype=torch.float64),)
    out, (h_n,) = layer.layer(params, x, h0)
    by_step, (h_step,) = Cell.layer(layer, params, x, h0)  # the interface's loop over step
    torch.testing.assert_close(out, by_step, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n, h_step, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_zero_initial_state_is_exact(cell):
    """From h_0 = 0 the first step is the candidate's share alone, z g(h~) (minGRU) or
    i' g(h~) (minLSTM), in the scan as in the loop; and no state is ever negative."""
    rnn, gen = randomized_stack(cell, seed=5)
    layer, params = rnn.cells[0], rnn.layer_params(0)
    x = torch.randn(40, B, I, generator=gen, dtype=torch.float64)
    zero = torch.zeros(B, H, dtype=torch.float64)
    first = paper_step(cell, params["weight_ih"].detach(), params["bias_ih"].detach(), x[0], zero)
    for run in (layer.log_space_layer, layer.linear_scan_layer, layer.layer):
        out, _ = run(params, x, (zero,))
        torch.testing.assert_close(out[0], first, rtol=1e-14, atol=0)
        assert (out > 0).all()  # g > 0 and the gates keep h_t a positive mix from h_0 = 0
    out, h_n = rnn(x)  # the stack's default state is zero
    torch.testing.assert_close(out, paper_stack(cell, x, torch.zeros(LAYERS, B, H, dtype=torch.float64),
                                                [(rnn.layer_params(l)["weight_ih"].detach(),
                                                  rnn.layer_params(l)["bias_ih"].detach())
                                                 for l in range(LAYERS)])[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_a_sequence_split_in_two_continues_exactly(cell):
    """The final state handed back as h_0 continues the sequence: the scan uses h_0 itself (the
    paper's code would take g(h_0), which differs from h_0)."""
    rnn, gen = randomized_stack(cell, seed=6)
    x = torch.randn(90, B, I, generator=gen, dtype=torch.float64)
    whole, h_whole = rnn(x)
    first, h_mid = rnn(x[:37])
    second, h_end = rnn(x[37:], h_mid)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_end, h_whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell,blocks", [("mingru", 2), ("minlstm", 3)])
def test_initialization_is_torch_linear_default(cell, blocks):
    """weight_ih and bias_ih uniform in +-1/sqrt(I), the blocks stacked (torch.nn.Linear's
    default, the paper's code's layers)."""
    n_in, n = 64, 1024
    layer = HandRNN(cell, n_in, n).cells[0]
    shapes = layer.parameter_shapes()
    assert shapes == {"weight_ih": (blocks * n, n_in), "bias_ih": (blocks * n,)}
    params = {k: torch.empty(s, dtype=torch.float64) for k, s in shapes.items()}
    torch.manual_seed(0)
    layer.reset_parameters(params)
    bound = 1 / math.sqrt(n_in)
    for name, p in params.items():
        assert p.abs().max() <= bound and p.abs().max() > 0.99 * bound, name
        assert abs(p.std().item() / (bound / math.sqrt(3)) - 1) < 0.05, name


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_probe_gives_finite_decreasing_curves(cell):
    """One layer, loss at t* only: dL/dh_{t-1} = a_t dL/dh_t with 0 < a_t < 1 (1 - z_t or f'_t),
    so the norm falls at every lag; the probe leaves the model as it was."""
    task, seq_len = make_task("adding"), 20
    model = build_model(task, CellConfig(cell=cell, hidden=8), 0, seq_len=seq_len)
    batch = task.sample(seq_len, 8, seeding.generator(0, "probe"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curves = probe(model, task, batch, seq_len)
    assert len(curves) == 1
    c = curves[0]
    np.testing.assert_array_equal(c.lags, np.arange(task.query_step(seq_len) + 1))
    assert np.all(np.isfinite(c.grad_norm)) and c.grad_norm[0] > 0
    assert np.all(np.diff(c.grad_norm) < 0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert kernel(cell, "hand", torch.device("cpu")) == "hand (scan)"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("options", [
    {"init": "orthogonal"}, {"init_gain": 2.0}, {"forget_bias": 1.0}, {"chrono": True},
    {"norm": "layer"}, {"nonlinearity": "tanh"},
], ids=lambda o: next(iter(o)))
def test_options_the_cells_cannot_take_are_one_line_errors(cell, options):
    with pytest.raises(ConfigError) as err:
        CellConfig(cell=cell, **options).validate()
    message = str(err.value)
    assert f"'{cell}'" in message and "\n" not in message


def test_long_float32_sequence_stays_finite_and_close():
    """T = 2000 in float32 through the log-space scan: outputs near the float64 loop's, finite
    gradients."""
    torch.manual_seed(0)
    rnn = HandRNN("mingru", I, H, 1)
    reference = copy.deepcopy(rnn).double()
    reference.fused = False  # the loop, in float64
    x = torch.randn(2000, B, I)
    out, _ = rnn(x)
    with torch.no_grad():
        ref, _ = reference(x.double())
    assert ((out.double() - ref).abs() / ref.abs()).max() < 1e-3
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in rnn.parameters())
