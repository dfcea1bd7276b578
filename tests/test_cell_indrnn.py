"""IndRNN (Li et al. 2018): the stack against the paper's equations, the initialization and bound
of the adding problem, the gradient probe and the options the cell refuses."""

import math

import numpy as np
import pytest
import torch

from seqbench import seeding
from seqbench.cells import CellConfig
from seqbench.cells.base import Cell
from seqbench.cells.indrnn import IndRNN
from seqbench.cells.stack import HandRNN
from seqbench.errors import ConfigError
from seqbench.model import build_model
from seqbench.probe import probe
from seqbench.tasks import make_task

I, H, B, T, LAYERS = 3, 8, 4, 30, 2


def paper_indrnn(x, h0, layers):
    """h_t = relu(W x_t + u * h_{t-1} + b) (Li et al. 2018, eq. 2), layer after layer, one step at
    a time; ``layers``: (W, u, b) per layer. Returns the top layer's outputs and every final h."""
    finals = []
    for (w, u, b), h in zip(layers, h0):
        outs = []
        for x_t in x:
            h = torch.clamp(torch.einsum("hi,bi->bh", w, x_t) + u * h + b, min=0.0)
            outs.append(h)
        x = torch.stack(outs)
        finals.append(h)
    return x, torch.stack(finals)


def loss_of(out, h_n):
    """A loss that weighs every output and the final state differently."""
    return (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum() + (h_n**2).sum()


def randomized_stack(seed=0):
    """A float64 stack with weights large enough to matter and |u| inside its bound."""
    gen = torch.Generator().manual_seed(seed)
    rnn = HandRNN("indrnn", I, H, LAYERS, max_steps=T).double()
    bound = 2 ** (1 / T)
    with torch.no_grad():
        for layer in range(LAYERS):
            p = rnn.layer_params(layer)
            p["weight_ih"].copy_(torch.randn(p["weight_ih"].shape, generator=gen, dtype=torch.float64))
            p["bias"].copy_(0.3 * torch.randn(H, generator=gen, dtype=torch.float64))
            p["recurrent_weight"].copy_(bound * (2 * torch.rand(H, generator=gen, dtype=torch.float64) - 1))
    return rnn, gen


def test_stack_matches_the_papers_equations_in_float64():
    rnn, gen = randomized_stack()
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    h0 = torch.rand(LAYERS, B, H, generator=gen, dtype=torch.float64)
    out, h_n = rnn(x, h0)
    loss_of(out, h_n).backward()

    ref = [tuple(rnn.layer_params(l)[k].detach().clone().requires_grad_()
                 for k in ("weight_ih", "recurrent_weight", "bias")) for l in range(LAYERS)]
    ref_out, ref_h_n = paper_indrnn(x, h0, ref)
    grads = torch.autograd.grad(loss_of(ref_out, ref_h_n), [p for layer in ref for p in layer])

    assert (out > 0).any() and (out == 0).any()  # both sides of the ReLU are exercised
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-10)
    torch.testing.assert_close(h_n, ref_h_n, rtol=0, atol=1e-10)
    names = ("weight_ih", "recurrent_weight", "bias")
    mine = [getattr(rnn, f"{k}_l{l}").grad for l in range(LAYERS) for k in names]
    for a, b in zip(mine, grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_step_and_layer_compute_the_same_function():
    rnn, gen = randomized_stack(1)
    cell, params = rnn.cells[0], rnn.layer_params(0)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    h0 = (torch.rand(B, H, generator=gen, dtype=torch.float64),)
    fast, (h_fast,) = cell.layer(params, x, h0)
    by_step, (h_step,) = Cell.layer(cell, params, x, h0)  # the interface's loop over ``step``
    torch.testing.assert_close(fast, by_step, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_fast, h_step, rtol=0, atol=1e-12)


def test_initialization_of_the_adding_problem():
    """u uniform in [2^(-1/T), 2^(1/T)] (the readout layer; [0, 2^(1/T)] below it), W from
    N(0, 0.001^2), b = 0."""
    steps, n = 50, 4096
    bound = 2 ** (1 / steps)
    torch.manual_seed(0)
    for readout, low in ((True, 1 / bound), (False, 0.0)):
        cell = IndRNN(16, n, max_steps=steps)  # 16 x 4096 input weights
        cell.top_layer = readout
        params = {k: torch.empty(s, dtype=torch.float64) for k, s in cell.parameter_shapes().items()}
        cell.reset_parameters(params)
        u = params["recurrent_weight"]
        assert cell.bound() == pytest.approx(bound, rel=1e-15)
        assert low <= u.min() and u.max() <= bound
        width = bound - low  # uniform over the whole range: the extremes near both ends
        assert u.min() < low + 0.01 * width and u.max() > bound - 0.01 * width
        assert u.mean().item() == pytest.approx((low + bound) / 2, abs=0.02 * width)
        w = params["weight_ih"]
        assert w.std().item() == pytest.approx(1e-3, rel=0.01)
        assert abs(w.mean().item()) < 1e-5
        assert torch.equal(params["bias"], torch.zeros(n, dtype=torch.float64))


def test_effective_recurrent_weight_stays_in_the_bound():
    """Set u outside the bound: the recurrence uses clamp(u), so u^T never exceeds 2; the gradient
    still reaches u (straight-through), so the optimizer can bring it back."""
    steps = 20
    bound = 2 ** (1 / steps)
    rnn = HandRNN("indrnn", 1, 4, max_steps=steps).double()
    with torch.no_grad():
        rnn.weight_ih_l0.zero_()
        rnn.bias_l0.zero_()
        rnn.recurrent_weight_l0.copy_(torch.tensor([5.0, -5.0, 0.5, bound + 1e-3]))
    u_eff = rnn.cells[0].effective_recurrent_weight(rnn.layer_params(0))
    torch.testing.assert_close(u_eff, torch.tensor([bound, -bound, 0.5, bound], dtype=torch.float64))
    assert u_eff.abs().max() <= bound

    out, h_n = rnn(torch.zeros(steps, 1, 1, dtype=torch.float64),
                   torch.ones(1, 1, 4, dtype=torch.float64))
    # h_T = relu(u)^T with zero input: 2 for every u at or past the bound, 0 for a negative u
    expected = torch.tensor([2.0, 0.0, 0.5**steps, 2.0], dtype=torch.float64)
    torch.testing.assert_close(h_n[0, 0], expected, rtol=1e-12, atol=0)
    h_n.sum().backward()
    assert rnn.recurrent_weight_l0.grad[0] > 0 and rnn.recurrent_weight_l0.grad[3] > 0


def test_gradient_probe_gives_finite_curves():
    task, seq_len = make_task("adding"), 20
    model = build_model(task, CellConfig(cell="indrnn", hidden=8), 0, seq_len=seq_len)
    batch = task.sample(seq_len, 4, seeding.generator(0, "probe"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curves = probe(model, task, batch, seq_len)
    assert len(curves) == 1
    c = curves[0]
    np.testing.assert_array_equal(c.lags, np.arange(seq_len))
    assert np.all(np.isfinite(c.grad_norm)) and c.grad_norm[0] > 0
    # |u| in [2^(-1/T), 2^(1/T)]: through a neuron that stays active the gradient changes by a
    # factor in [1/2, 2] over the whole sequence; it does not vanish (the paper's point)
    assert c.grad_norm.min() > 0.1 * c.grad_norm[0]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("options,words", [
    ({"forget_bias": 1.0}, "forget_bias applies to cells with a forget gate"),
    ({"chrono": True}, "chrono initialization applies to cells"),
    ({"init": "orthogonal"}, "which cell 'indrnn'"),
    ({"init_gain": 2.0}, "which cell 'indrnn'"),
    ({"norm": "layer", "impl": "hand"}, "does not apply to cell 'indrnn'"),
    ({"nonlinearity": "tanh"}, "uses relu only"),
])
def test_options_the_cell_cannot_take_are_one_line_errors(options, words):
    with pytest.raises(ConfigError) as err:
        CellConfig(cell="indrnn", **options).validate()
    message = str(err.value)
    assert words in message and "\n" not in message


def test_validate_resolves_impl_and_nonlinearity():
    cfg = CellConfig(cell="indrnn").validate()
    assert (cfg.impl, cfg.nonlinearity) == ("hand", "relu")
    assert CellConfig(cell="indrnn", impl="hand").validate() == cfg
    assert math.isclose(HandRNN("indrnn", 2, 4, max_steps=100).cells[0].bound(), 2 ** 0.01)
