"""seqbench.cells fast paths: gradient checks of the whole-sequence Functions, and parity of HandRNN (fused
and unfused) with torch.nn.RNN/LSTM/GRU."""

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

from seqbench.cells import cell_class, elman, fused, gru, lstm
from seqbench.cells.stack import HandRNN, builtin_module
from seqbench.provenance import resolve_device

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
#: cuDNN's float32 kernels (TF32 off) sum in other orders than cuBLAS: 1e-4 there (as test_cuda)
TOL_CUDA = {torch.float32: 1e-4, torch.float64: 1e-10}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
#: (cell, activation) for every Function: the rnn with each activation, lstm, gru
FUNCTIONS = [("rnn", a) for a in cell_class("rnn").nonlinearities] + [("lstm", "tanh"), ("gru", "tanh")]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (the absolute error when b is exactly zero)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    num = (a.double() - b.double()).norm().item()
    den = b.double().norm().item()
    return num / den if den > 0 else num


def layer_inputs(cell, T, B=2, I=3, H=4, bias=True, norms=False, dtype=torch.float64,
                 device="cpu", seed=0):
    """Random inputs of one layer's Function, all requiring grad, and (T, B) gradient-norm
    recorders (zeros, float64) if ``norms``."""
    gen = torch.Generator().manual_seed(seed)
    G = GATES[cell]

    def rand(*shape, scale=1.0):
        t = (scale * torch.randn(*shape, generator=gen, dtype=dtype)).to(device)
        return t.requires_grad_()

    x, h0, c0 = rand(T, B, I), rand(B, H), rand(B, H)
    w_ih, w_hh = rand(G * H, I), rand(G * H, H, scale=0.5)
    b_ih = rand(G * H) if bias else None
    b_hh = rand(G * H) if bias else None

    def zeros():
        return torch.zeros(T, B, dtype=torch.float64, device=device)

    n_h = zeros() if norms else None
    n_c = zeros() if norms and cell == "lstm" else None
    return x, h0, c0, w_ih, w_hh, b_ih, b_hh, n_h, n_c


def apply(cell, act, x, h0, c0, w_ih, w_hh, b_ih, b_hh, n_h=None, n_c=None):
    if cell == "lstm":
        return lstm.fused_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, norms_h=n_h, norms_c=n_c)
    if cell == "gru":
        return gru.fused_layer(x, h0, w_ih, w_hh, b_ih, b_hh, norms_h=n_h)
    return elman.fused_layer(x, h0, w_ih, w_hh, b_ih, b_hh, act, norms_h=n_h)


def vnorm(g: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(g, dim=-1, dtype=torch.float64)


# -- gradient checks of the Functions (float64, small sizes) -----------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("norms", [False, True], ids=["plain", "norms"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("cell,act", FUNCTIONS, ids=[f"{c}-{a}" for c, a in FUNCTIONS])
def test_gradcheck(cell, act, bias, norms, device):
    """Every input's gradient, with and without recording the gradient norms on the way."""
    if device == "cuda":
        resolve_device("cuda")
    inputs = layer_inputs(cell, T=4, bias=bias, norms=norms, device=device)
    recorders = inputs[7:]
    grads = inputs[:7]
    tensors = [t for k, t in enumerate(grads) if t is not None and (cell == "lstm" or k != 2)]

    def fn(*args):
        it = iter(args)
        full = [next(it) if t is not None and (cell == "lstm" or k != 2) else None
                for k, t in enumerate(grads)]
        return apply(cell, act, *full, *recorders)

    assert gradcheck(fn, tuple(tensors))


@pytest.mark.parametrize("cell,act", FUNCTIONS, ids=[f"{c}-{a}" for c, a in FUNCTIONS])
def test_recorded_norms_are_total_state_gradient_norms(cell, act):
    """norms_h[t] = ||dL/dh_t|| per sequence (and norms_c[t] = ||dL/dc_t||), the total gradient
    arriving at the state: equal to what the plain autograd layer records through tensor hooks,
    and at t = T-1, for a loss on the outputs alone, the norm of the loss's own gradient."""
    inputs = layer_inputs(cell, T=6, norms=True, B=3, H=5, seed=1)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, n_h, n_c = inputs
    weight = torch.randn(6, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = apply(cell, act, *inputs)[0]
    (out * weight).sum().backward()
    _, _, _, _, _, _, _, r_h, r_c = layer_inputs(cell, T=6, norms=True, B=3, H=5)
    plain = cell_class(cell)(x.shape[2], h0.shape[1], act)  # the plain autograd layer
    params = {"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}
    state = (h0, c0) if cell == "lstm" else (h0,)
    ref = plain.layer(params, x, state, {"h": r_h, "c": r_c})[0]
    (ref * weight).sum().backward()
    assert (r_h > 0).all()
    assert rel_err(n_h, r_h) < 1e-12
    assert torch.equal(n_h[-1], vnorm(weight[-1]))  # the last step's gradient is the loss's own
    if cell == "lstm":
        assert (r_c > 0).all()
        assert rel_err(n_c, r_c) < 1e-12


@pytest.mark.parametrize("cell,act", FUNCTIONS, ids=[f"{c}-{a}" for c, a in FUNCTIONS])
def test_second_backward_recomputes(cell, act):
    """retain_graph: the buffers saved for the backward went back to the workspace after the first
    backward; a second backward recomputes them and gives the same gradients and norms."""
    inputs = layer_inputs(cell, T=5, norms=True)
    tensors = [t for t in inputs[:7] if t is not None]
    out = apply(cell, act, *inputs)
    loss = out[0].pow(2).sum() + out[1].sum()
    first = torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True)
    first_norms = [n.clone() for n in inputs[7:] if n is not None]
    apply(cell, act, *layer_inputs(cell, T=5, seed=3))  # another call may take the buffers
    second = torch.autograd.grad(loss, tensors, allow_unused=True)
    for a, b in zip(first, second):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(first_norms, [n for n in inputs[7:] if n is not None]):
        assert torch.allclose(a, b, rtol=1e-12, atol=0)


def test_norms_of_the_wrong_shape_are_refused():
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, _, _ = layer_inputs("gru", T=5)
    with pytest.raises(ValueError, match=r"norms_h must be a floating \(T, B\) = \(5, 2\)"):
        gru.fused_layer(x, h0, w_ih, w_hh, b_ih, b_hh, norms_h=torch.zeros(5, 2, 4))


def test_no_grad_forward_matches_and_keeps_nothing():
    fused.WORKSPACE.clear()
    inputs = layer_inputs("lstm", T=7)
    out = apply("lstm", "tanh", *inputs)
    with torch.no_grad():
        out_ng = apply("lstm", "tanh", *inputs)
    for a, b in zip(out, out_ng):
        assert torch.equal(a, b)
    assert not out_ng[0].requires_grad
    held = fused.WORKSPACE.nbytes()
    with torch.no_grad():
        apply("lstm", "tanh", *inputs)
    assert fused.WORKSPACE.nbytes() == held  # the forward's buffers came back


def test_workspace_reuses_blocks():
    ws = fused.Workspace(max_free=2)
    like = torch.empty(1)
    a = ws.take((4, 5), like)
    ptr = a.data_ptr()
    ws.give(a)
    b = ws.take((2, 3), like)  # the free block fits: reused
    assert b.data_ptr() == ptr and b.shape == (2, 3)
    c = ws.take((2, 3), like)  # none free: a new block
    assert c.data_ptr() != ptr
    ws.give(b, c, ws.take((100,), like))
    assert len(ws._free[torch.float32]) == 2  # the smallest was dropped
    ws.clear()
    assert ws.nbytes() == 0


def test_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation"):
        elman.fused_layer(*layer_inputs("rnn", T=2)[:2], *layer_inputs("rnn", T=2)[3:7], "sine")


# -- parity of HandRNN (fused and unfused) with the built-in modules ----------------------------

BUILTIN = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


def _loss(out, state, mode):
    h_n, c_n = state if mode == "lstm" else (state, None)
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype, device=out.device)).sum()
    loss = loss + (h_n**2).sum()
    return loss + (c_n**3).sum() if c_n is not None else loss


def _run(module, x, hx, mode):
    out, state = module(x, hx)
    _loss(out, state, mode).backward()
    h_n, c_n = state if mode == "lstm" else (state, None)
    return [out, h_n] + ([c_n] if c_n is not None else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("T", [1, 7, 100])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("fused_path", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("mode,nonlinearity", BUILTIN, ids=[f"{m}-{n}" for m, n in BUILTIN])
def test_parity_with_builtin(mode, nonlinearity, fused_path, layers, T, dtype, device):
    if device == "cuda":
        resolve_device("cuda")  # switches TF32 off for cuDNN and matrix products
    I, H, B = 3, 8, 4
    torch.manual_seed(0)
    ref = builtin_module(mode, I, H, layers, nonlinearity).to(device, dtype)
    hand = HandRNN(mode, I, H, layers, nonlinearity, fused=fused_path).to(device, dtype)
    hand.load_state_dict(ref.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=gen, dtype=dtype).to(device)
    h0 = torch.randn(layers, B, H, generator=gen, dtype=dtype).to(device)
    hx = (h0, torch.randn(layers, B, H, generator=gen, dtype=dtype).to(device)) \
        if mode == "lstm" else h0
    want = _run(ref, x, hx, mode)
    got = _run(hand, x, hx, mode)
    tol = (TOL_CUDA if device == "cuda" else TOL)[dtype]
    for a, b in zip(got, want):
        assert rel_err(a, b) < tol
    ref_params = dict(ref.named_parameters())
    for name, p in hand.named_parameters():
        assert rel_err(p.grad, ref_params[name].grad) < tol, name


@pytest.mark.parametrize("nonlinearity", ["leaky_relu", "elu", "linear"])
@pytest.mark.parametrize("layers", [1, 2])
def test_hand_only_activations_fused_equals_unfused(nonlinearity, layers):
    """Activations torch.nn.RNN lacks: the fused path against the plain autograd layer."""
    torch.manual_seed(0)
    a = HandRNN("rnn", 3, 8, layers, nonlinearity, fused=True).double()
    b = HandRNN("rnn", 3, 8, layers, nonlinearity, fused=False).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(30, 4, 3, dtype=torch.float64)
    got, want = _run(a, x, None, "rnn"), _run(b, x, None, "rnn")
    for u, v in zip(got, want):
        assert rel_err(u, v) < 1e-12
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert rel_err(p.grad, q.grad) < 1e-12, name


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_grad_norms_through_handrnn_fused_equal_unfused(mode):
    torch.manual_seed(0)
    a = HandRNN(mode, 3, 8, 2, fused=True).double()
    b = HandRNN(mode, 3, 8, 2, fused=False).double()
    b.load_state_dict(a.state_dict())
    x = torch.randn(12, 4, 3, dtype=torch.float64)
    keys = ("h", "c") if mode == "lstm" else ("h",)

    def grad_norms(module):
        norms = [{k: torch.zeros(12, 4, dtype=torch.float64) for k in keys} for _ in range(2)]
        out, _ = module(x, grad_norms=norms)
        out[-1].pow(2).sum().backward()
        return [n[k] for n in norms for k in keys]

    for u, v in zip(grad_norms(a), grad_norms(b)):
        assert (v > 0).all()
        assert rel_err(u, v) < 1e-12


def test_fused_is_default():
    assert HandRNN("lstm", 2, 4).fused is True
    assert isinstance(builtin_module("lstm", 2, 4), nn.LSTM)
