"""coRNN (Rusch & Mishra 2021): the stack against the paper's scheme (and the authors' code's), the
initialization of their nn.Linear, the gradient probe and the options the cell refuses."""

import numpy as np
import pytest
import torch
from torch import nn

from seqbench import seeding
from seqbench.cells import CellConfig
from seqbench.cells.base import Cell
from seqbench.cells.cornn import CoRNN
from seqbench.cells.stack import HandRNN
from seqbench.errors import ConfigError
from seqbench.model import build_model
from seqbench.probe import probe
from seqbench.tasks import make_task

I, H, B, T, LAYERS = 3, 8, 4, 40, 2


class ExplicitCoRNN(CoRNN):
    """The authors' code: damping taken at z_{n-1}."""

    implicit_damping = False


def reference(x, y0, z0, layers, implicit):
    """One step at a time, from the authors' concatenated layer: a = [u, z, y] M^T + b, then
    eq. 3 (implicit: z_n = z_{n-1} + dt tanh(a) - dt gamma y_{n-1} - dt eps z_n) or their code
    (z_n = z_{n-1} + dt (tanh(a) - gamma y_{n-1} - eps z_{n-1})); y_n = y_{n-1} + dt z_n.
    ``layers``: (M, b) per layer. Returns the top layer's y for every step and the final y, z."""
    dt, gamma, eps = CoRNN.dt, CoRNN.gamma, CoRNN.epsilon
    ys, zs = [], []
    for (m, b), y, z in zip(layers, y0, z0):
        outs = []
        for u in x:
            a = torch.cat([u, z, y], dim=1) @ m.t() + b
            if implicit:
                z = (z + dt * torch.tanh(a) - dt * gamma * y) / (1 + dt * eps)
            else:
                z = z + dt * (torch.tanh(a) - gamma * y - eps * z)
            y = y + dt * z
            outs.append(y)
        x = torch.stack(outs)
        ys.append(y)
        zs.append(z)
    return x, torch.stack(ys), torch.stack(zs)


def concatenated(rnn, layer):
    """A layer's parameters as the authors' single nn.Linear over [u, z, y]: (M, b)."""
    p = rnn.layer_params(layer)
    return torch.cat([p["weight_ih"], p["weight_hz"], p["weight_hy"]], dim=1), p["bias"]


def loss_of(out, y_n, z_n):
    """A loss that weighs every output and both final states differently."""
    w = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)
    return (out * w).sum() + (y_n**2).sum() + (z_n**3).sum()


@pytest.mark.parametrize("cell", [CoRNN, ExplicitCoRNN], ids=["eq3", "authors-code"])
def test_stack_matches_the_scheme_in_float64(cell):
    gen = torch.Generator().manual_seed(0)
    rnn = HandRNN(cell, I, H, LAYERS).double()
    with torch.no_grad():  # larger than the init, so that tanh is far from linear
        for p in rnn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    y0, z0 = (0.5 * torch.randn(LAYERS, B, H, generator=gen, dtype=torch.float64) for _ in "yz")
    out, (y_n, z_n) = rnn(x, (y0, z0))
    loss_of(out, y_n, z_n).backward()

    ref = [tuple(t.detach().clone().requires_grad_() for t in concatenated(rnn, layer))
           for layer in range(LAYERS)]
    ref_out, ref_y, ref_z = reference(x, y0, z0, ref, cell.implicit_damping)
    grads = torch.autograd.grad(loss_of(ref_out, ref_y, ref_z), [t for layer in ref for t in layer])

    for a, b in ((out, ref_out), (y_n, ref_y), (z_n, ref_z)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    for layer in range(LAYERS):
        p = rnn.layer_params(layer)
        mine = torch.cat([p["weight_ih"].grad, p["weight_hz"].grad, p["weight_hy"].grad], dim=1)
        torch.testing.assert_close(mine, grads[2 * layer], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(p["bias"].grad, grads[2 * layer + 1], rtol=1e-10, atol=1e-10)


def test_step_and_layer_compute_the_same_function():
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    rnn = HandRNN("cornn", I, H).double()
    cell, params = rnn.cells[0], rnn.layer_params(0)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    state = tuple(torch.randn(B, H, generator=gen, dtype=torch.float64) for _ in "yz")
    fast, fast_state = cell.layer(params, x, state)
    by_step, step_state = Cell.layer(cell, params, x, state)  # the interface's loop over ``step``
    torch.testing.assert_close(fast, by_step, rtol=0, atol=1e-12)
    for a, b in zip(fast_state, step_state):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_initialization_is_the_authors_linear_layer():
    """From the same RNG state the stack draws what nn.Linear(I + 2H, H) draws over [u, z, y]:
    every entry uniform in +-1/sqrt(I + 2H)."""
    n_in, hidden = 2, 16
    torch.manual_seed(3)
    linear = nn.Linear(n_in + 2 * hidden, hidden)
    torch.manual_seed(3)
    rnn = HandRNN("cornn", n_in, hidden)
    assert [name for name, _ in rnn.named_parameters()] == [
        "weight_ih_l0", "weight_hz_l0", "weight_hy_l0", "bias_l0"]
    m, b = concatenated(rnn, 0)
    torch.testing.assert_close(m, linear.weight.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(b, linear.bias.detach(), rtol=1e-6, atol=0)
    bound = 1 / (n_in + 2 * hidden) ** 0.5
    for p in rnn.parameters():
        assert p.abs().max() <= bound
    # the distribution itself, on a larger draw: uniform, so mean 0 and variance bound^2 / 3
    cell = CoRNN(64, 64)
    params = {k: torch.empty(s, dtype=torch.float64) for k, s in cell.parameter_shapes().items()}
    cell.reset_parameters(params)
    w = torch.cat([params["weight_ih"], params["weight_hz"], params["weight_hy"]], dim=1)
    bound = 1 / (64 + 2 * 64) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    assert w.var().item() == pytest.approx(bound**2 / 3, rel=0.05)
    assert abs(w.mean().item()) < 0.02 * bound


def test_gradient_probe_gives_finite_curves():
    """Finite norms, positive at lag 0, decaying per step by 1 / sqrt(1 + dt eps): eq. 3's
    linear part at small weights is a damped rotation of (y, z) whose determinant is
    1 / (1 + dt eps)."""
    task, seq_len = make_task("adding"), 20
    model = build_model(task, CellConfig(cell="cornn", hidden=8), 0, seq_len=seq_len)
    batch = task.sample(seq_len, 4, seeding.generator(0, "probe"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curves = probe(model, task, batch, seq_len)
    assert len(curves) == 1
    c = curves[0]
    np.testing.assert_array_equal(c.lags, np.arange(seq_len))
    assert np.all(np.isfinite(c.grad_norm)) and c.grad_norm[0] > 0
    assert c.decay_factor() == pytest.approx((1 + CoRNN.dt * CoRNN.epsilon) ** -0.5, rel=0.03)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("options,words", [
    ({"forget_bias": 1.0}, "forget_bias applies to cells with a forget gate"),
    ({"chrono": True}, "chrono initialization applies to cells"),
    ({"init": "orthogonal"}, "which cell 'cornn'"),
    ({"norm": "layer", "impl": "hand"}, "does not apply to cell 'cornn'"),
    ({"nonlinearity": "relu"}, "uses tanh only"),
])
def test_options_the_cell_cannot_take_are_one_line_errors(options, words):
    with pytest.raises(ConfigError) as err:
        CellConfig(cell="cornn", **options).validate()
    message = str(err.value)
    assert words in message and "\n" not in message


def test_validate_resolves_impl_and_nonlinearity():
    cfg = CellConfig(cell="cornn").validate()
    assert (cfg.impl, cfg.nonlinearity) == ("hand", "tanh")
    assert CellConfig(cell="cornn", impl="hand").validate() == cfg
