"""expRNN (Lezcano-Casado & Martinez-Rubio 2019): the paper's equations, orthogonality through
training, its initialization, the gradient probe, checkpoints and the options it refuses."""

import io
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from seqbench import seeding
from seqbench.cells import CellConfig
from seqbench.cells.stack import HandRNN
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.model import build_model, count_parameters
from seqbench.probe import probe
from seqbench.tasks import make_task
from seqbench.train import Trainer

A_NAME = "parametrizations.weight_hh_l{}.original"  # the stored entries of A, per layer


def reference_skew(upper: torch.Tensor, n: int) -> torch.Tensor:
    """A with A[i, j] = upper[k] for i < j (row by row) and A[j, i] = -A[i, j]."""
    a = torch.zeros(n, n, dtype=upper.dtype)
    k = 0
    for i in range(n):
        for j in range(i + 1, n):
            a[i, j] = upper[k]
            a[j, i] = -upper[k]
            k += 1
    return a


def reference_modrelu(z, b):
    """(|z| + b) z / |z| where |z| + b > 0, else 0 (Arjovsky et al. 2016), for z != 0."""
    return z * torch.relu(1 + b / z.abs())


def reference_layer(x, h, w_ih, upper, b):
    """h_t = modReLU(exp(A) h_{t-1} + W_ih x_t), one step at a time."""
    w_hh = torch.linalg.matrix_exp(reference_skew(upper, h.shape[-1]))
    outs = []
    for x_t in x:
        h = reference_modrelu(h @ w_hh.T + x_t @ w_ih.T, b)
        outs.append(h)
    return torch.stack(outs), h


def loss_of(out, h_n):
    weights = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)
    return (out * weights).sum() + (h_n ** 2).sum()


@pytest.mark.parametrize("H", [6, 5])
@pytest.mark.parametrize("layers", [1, 2])
def test_matches_the_papers_equations_in_float64(H, layers):
    I, B, T = 3, 4, 25
    torch.manual_seed(H + layers)
    rnn = HandRNN("exprnn", I, H, layers).double()
    with torch.no_grad():  # any A (not only the block init), and biases that rectify some units
        for layer in range(layers):
            rnn.get_parameter(A_NAME.format(layer)).normal_(0, 0.7)
            getattr(rnn, f"bias_l{layer}").uniform_(-1.0, 0.3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(layers, B, H, generator=gen, dtype=torch.float64, requires_grad=True)

    out, h_n = rnn(x, h0)
    loss_of(out, h_n).backward()
    ours = [x.grad, h0.grad] + [p.grad for p in rnn.parameters()]

    refs = {name: p.detach().clone().requires_grad_() for name, p in rnn.named_parameters()}
    xr, h0r = x.detach().clone().requires_grad_(), h0.detach().clone().requires_grad_()
    inp, finals = xr, []
    for layer in range(layers):
        inp, h = reference_layer(inp, h0r[layer], refs[f"weight_ih_l{layer}"],
                                 refs[A_NAME.format(layer)], refs[f"bias_l{layer}"])
        finals.append(h)
    assert (inp == 0).any() and (inp != 0).any()  # both branches of modReLU are exercised
    loss_of(inp, torch.stack(finals)).backward()
    theirs = [xr.grad, h0r.grad] + [refs[name].grad for name, _ in rnn.named_parameters()]

    assert (out - inp).abs().max() < 1e-10
    assert (h_n - torch.stack(finals)).abs().max() < 1e-10
    for g, r in zip(ours, theirs):
        assert (g - r).abs().max() <= 1e-10 * max(1.0, r.abs().max().item())

    # the cell's one-step form computes the same recurrence
    cell, params = rnn.cells[0], rnn.layer_params(0)
    h, steps = h0[0], []
    for x_t in x:
        y, (h,) = cell.step(params, x_t, (h,))
        steps.append(y)
    first_layer, _ = cell.layer(params, x, (h0[0],))
    assert (torch.stack(steps) - first_layer).abs().max() < 1e-12


def orthogonality_error(w):
    return (w.T @ w - torch.eye(w.shape[0], dtype=w.dtype)).abs().max().item()


def test_w_hh_is_orthogonal_at_init_and_stays_so_through_adam_training():
    cfg = RunConfig(task="adding", seq_len=20, batch_size=16, lr=1e-2, steps=10, eval_size=16,
                    test_size=16, cell=CellConfig(cell="exprnn", hidden=16, layers=2))
    trainer = Trainer(cfg, torch.device("cpu"))
    rnn = trainer.model.rnn
    w0 = [getattr(rnn, f"weight_hh_l{layer}").detach().clone() for layer in range(2)]
    for w in w0:
        assert w.dtype == torch.float32
        assert orthogonality_error(w) < 1e-5
    losses = [trainer.train_step() for _ in range(10)]
    assert all(math.isfinite(v) for v in losses)
    for layer in range(2):
        w = getattr(rnn, f"weight_hh_l{layer}").detach()
        assert (w - w0[layer]).abs().max() > 1e-2  # training moved it...
        assert orthogonality_error(w) < 1e-5  # ...along the orthogonal group
        assert torch.linalg.det(w.double()).item() == pytest.approx(1.0, abs=1e-5)  # SO(H)


@pytest.mark.parametrize("H", [200, 7])
def test_initialization_is_the_papers(H):
    """Henaff init of A (2 x 2 rotation blocks, angles U[-pi, pi]); He-normal W_ih; modReLU bias
    U(-0.01, 0.01); A's H(H-1)/2 free entries are the parameter count."""
    I = 50
    torch.manual_seed(0)
    rnn = HandRNN("exprnn", I, H)
    upper = rnn.get_parameter(A_NAME.format(0)).detach().double()
    assert upper.shape == (H * (H - 1) // 2,)
    a = reference_skew(upper, H)
    k = torch.arange(H // 2)
    angles = a[2 * k, 2 * k + 1]
    block = torch.zeros_like(a)
    block[2 * k, 2 * k + 1], block[2 * k + 1, 2 * k] = angles, -angles
    assert torch.equal(a, block)  # nothing outside the 2 x 2 blocks
    assert angles.abs().max() <= math.pi

    w = rnn.weight_hh_l0.detach().double()
    c, s = torch.cos(angles), torch.sin(angles)
    assert torch.allclose(w[2 * k, 2 * k], c, atol=1e-6)  # each block a rotation by s_k
    assert torch.allclose(w[2 * k, 2 * k + 1], s, atol=1e-6)
    assert torch.allclose(w[2 * k + 1, 2 * k], -s, atol=1e-6)
    phases = torch.sort(torch.angle(torch.linalg.eigvals(w))).values
    expected = torch.cat([angles, -angles] + ([torch.zeros(1, dtype=torch.float64)] if H % 2
                                                else []))
    assert torch.allclose(phases, torch.sort(expected).values, atol=1e-5)
    assert torch.allclose(torch.linalg.eigvals(w).abs(), torch.ones(H, dtype=torch.float64),
                          atol=1e-5)

    b = rnn.bias_l0.detach()
    assert b.abs().max() <= 0.01
    if H == 200:  # 100 angles, 10000 input weights, 200 biases: the distributions' moments
        u = angles.numpy() / math.pi  # U[-1, 1]: mean 0, E|u| = 1/2, E u^2 = 1/3 (about 3 sd)
        assert abs(u.mean()) < 0.2 and abs(np.abs(u).mean() - 0.5) < 0.1
        assert abs((u ** 2).mean() - 1 / 3) < 0.1
        std = rnn.weight_ih_l0.detach().std().item()
        assert std == pytest.approx(math.sqrt(2 / I), rel=0.05)
        assert abs(b.mean().item()) < 0.002 and b.abs().max() > 0.009

    task = make_task("adding")
    model = build_model(task, CellConfig(cell="exprnn", hidden=H), 0, seq_len=10)
    torch.manual_seed(0)  # build_model's draws are the cell's own: seqbench.init leaves them be
    twin = HandRNN("exprnn", task.input_size, H)
    assert all(torch.equal(p, q) for p, q in zip(model.rnn.parameters(), twin.parameters()))
    assert count_parameters(model) == H * (H - 1) // 2 + H * task.input_size + H \
        + (H + 1) * task.output_size


def test_gradient_probe_runs_and_orthogonal_recurrence_barely_decays():
    task, T = make_task("adding"), 20
    batch = task.sample(T, 8, seeding.generator(0, "probe"))
    model = build_model(task, CellConfig(cell="exprnn", hidden=8), 0, seq_len=T)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (curve,) = probe(model, task, batch, T)
    norms = curve.grad_norm
    assert len(norms) == task.query_step(T) + 1
    assert np.isfinite(norms).all() and norms[0] > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())

    tanh = build_model(task, CellConfig(cell="rnn", impl="hand", hidden=8), 0, seq_len=T)
    (tanh_curve,) = probe(tanh, task, batch, T)
    ratio, tanh_ratio = norms[-1] / norms[0], tanh_curve.grad_norm[-1] / tanh_curve.grad_norm[0]
    assert ratio > 0.5 and ratio > 100 * tanh_ratio
    assert curve.decay_factor() > 0.97 and tanh_curve.decay_factor() < 0.9


def test_functional_call_substitutes_a():
    """The probe hands the stack detached parameters by name: the parametrization must read the
    A it is given (A = 0: W_hh = I), not the module's own."""
    torch.manual_seed(0)
    rnn = HandRNN("exprnn", 2, 6)
    x = torch.randn(5, 3, 2)
    weights = {n: p.detach() for n, p in rnn.named_parameters()}
    weights[A_NAME.format(0)] = torch.zeros_like(weights[A_NAME.format(0)])
    out = functional_call(rnn, weights, (x,))[0]
    h, expected = torch.zeros(3, 6), []
    for x_t in x:
        h = reference_modrelu(h + x_t @ rnn.weight_ih_l0.detach().T, rnn.bias_l0.detach())
        expected.append(h)
    assert torch.allclose(out, torch.stack(expected), atol=1e-6)
    assert not torch.allclose(out, rnn(x)[0])


def test_state_dict_round_trip_reproduces_the_outputs():
    task, T = make_task("copy"), 10
    cfg = RunConfig(task="copy", seq_len=T, batch_size=8, steps=3, eval_size=8, test_size=8,
                    cell=CellConfig(cell="exprnn", hidden=12))
    trainer = Trainer(cfg, torch.device("cpu"))
    for _ in range(3):
        trainer.train_step()
    buffer = io.BytesIO()
    torch.save(trainer.model.state_dict(), buffer)  # as runner's checkpoints do
    buffer.seek(0)
    fresh = build_model(task, cfg.cell, 123, seq_len=T)
    batch = task.sample(T, 4, seeding.generator(1, "eval"))
    assert not torch.equal(fresh(batch.inputs), trainer.model(batch.inputs))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh(batch.inputs), trainer.model(batch.inputs))
    assert torch.equal(fresh.rnn.weight_hh_l0, trainer.model.rnn.weight_hh_l0)


@pytest.mark.parametrize("options", [
    {"init": "orthogonal"}, {"init_gain": 2.0}, {"forget_bias": 1.0}, {"chrono": True},
    {"norm": "layer"}, {"nonlinearity": "tanh"},
], ids=lambda o: next(iter(o)))
def test_options_it_cannot_take_are_one_line_config_errors(options):
    with pytest.raises(ConfigError) as info:
        CellConfig(cell="exprnn", hidden=8, **options).validate()
    message = str(info.value)
    assert "\n" not in message and "exprnn" in message


def test_cell_class_attributes():
    resolved = CellConfig(cell="exprnn", hidden=8).validate()
    assert (resolved.impl, resolved.nonlinearity) == ("hand", "modrelu")
