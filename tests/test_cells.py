"""The hand-written cells against torch.nn.RNN/LSTM/GRU: parity, weight exchange, init, gradient norms."""

import inspect

import pytest
import torch
from torch import nn

from seqbench.cells import CellConfig
from seqbench.cells.stack import HandRNN, builtin_module, make_recurrent
from seqbench.errors import ConfigError
from seqbench.model import build_model
from seqbench.tasks import make_task

CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
I, H, B = 3, 8, 4




#: HandRNN's two code paths when it has them: the whole-sequence fused Functions and the plain
#: autograd loop. Each must match the built-in module on its own.
PATHS = ([{"fused": True}, {"fused": False}] if "fused" in inspect.signature(HandRNN).parameters
         else [{}])


@pytest.fixture(params=PATHS, ids=[",".join(f"{k}={v}" for k, v in p.items()) or "default"
                                   for p in PATHS])
def hand_kw(request):
    return request.param


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (0 when both are exactly zero)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    den = b.double().norm().item()
    num = (a.double() - b.double()).norm().item()
    return num / den if den > 0 else num


def pair(mode, nonlinearity, layers, dtype, seed=0, hand_kw=None):
    """A built-in module and a hand-written one with the built-in's weights."""
    torch.manual_seed(seed)
    ref = builtin_module(mode, I, H, layers, nonlinearity).to(dtype)
    hand = HandRNN(mode, I, H, layers, nonlinearity, **(hand_kw or {})).to(dtype)
    hand.load_state_dict(ref.state_dict())
    return ref, hand


def initial_state(mode, layers, dtype, gen):
    h0 = torch.randn(layers, B, H, generator=gen, dtype=dtype)
    if mode == "lstm":
        return h0, torch.randn(layers, B, H, generator=gen, dtype=dtype)
    return h0


def split(mode, state):
    return state if mode == "lstm" else (state, None)


def run(module, x, hx, mode):
    """Forward and backward of a loss that touches every output and the final state."""
    out, state = module(x, hx)
    h_n, c_n = split(mode, state)
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum() + (h_n**2).sum()
    if c_n is not None:
        loss = loss + (c_n**3).sum()
    loss.backward()
    return out, h_n, c_n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("T", [1, 7, 100])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["h0=0", "h0=rand"])
def test_parity_with_builtin(mode, nonlinearity, layers, T, dtype, with_hx, hand_kw):
    tol = TOL[dtype]
    ref, hand = pair(mode, nonlinearity, layers, dtype, seed=T + layers, hand_kw=hand_kw)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, generator=gen, dtype=dtype)
    hx = initial_state(mode, layers, dtype, gen) if with_hx else None

    x_ref, x_hand = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_r, h_r, c_r = run(ref, x_ref, hx, mode)
    out_h, h_h, c_h = run(hand, x_hand, hx, mode)

    assert out_h.shape == out_r.shape == (T, B, H) and h_h.shape == h_r.shape == (layers, B, H)
    assert rel_err(out_h, out_r) < tol
    assert rel_err(h_h, h_r) < tol
    if mode == "lstm":
        assert rel_err(c_h, c_r) < tol
    assert rel_err(x_hand.grad, x_ref.grad) < tol
    ref_params = dict(ref.named_parameters())
    for name, p in hand.named_parameters():
        g_ref = ref_params[name].grad
        assert p.grad is not None and g_ref is not None, name
        if not (name.startswith("weight_hh") and T == 1 and not with_hx):  # h_{-1} = 0 there
            assert g_ref.norm() > 0, name  # a vacuous comparison would hide a dead gradient path
        assert rel_err(p.grad, g_ref) < tol, name


@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_initial_state_gradient_matches(mode, nonlinearity, hand_kw):
    ref, hand = pair(mode, nonlinearity, 2, torch.float64, hand_kw=hand_kw)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(9, B, I, generator=gen, dtype=torch.float64)
    hx = initial_state(mode, 2, torch.float64, gen)
    grads = []
    for module in (ref, hand):
        leaves = [t.clone().requires_grad_() for t in (hx if mode == "lstm" else (hx,))]
        run(module, x, tuple(leaves) if mode == "lstm" else leaves[0], mode)
        grads.append([t.grad for t in leaves])
    for g_ref, g_hand in zip(*grads):
        assert g_ref.norm() > 0
        assert rel_err(g_hand, g_ref) < 1e-10


@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_state_dict_round_trip_both_directions(mode, nonlinearity):
    torch.manual_seed(5)
    ref = builtin_module(mode, I, H, 2, nonlinearity)
    torch.manual_seed(6)  # different weights, so that a failed copy shows
    hand = HandRNN(mode, I, H, 2, nonlinearity)
    ref_sd, hand_sd = ref.state_dict(), hand.state_dict()
    assert list(ref_sd) == list(hand_sd)
    assert all(ref_sd[k].shape == hand_sd[k].shape for k in ref_sd)
    assert not all(torch.equal(ref_sd[k], hand_sd[k]) for k in ref_sd)

    x = torch.randn(6, B, I)
    # hand -> builtin
    ref.load_state_dict(hand.state_dict())
    assert rel_err(ref(x)[0], hand(x)[0]) < 1e-5
    # builtin -> a fresh hand module
    torch.manual_seed(7)
    hand2 = HandRNN(mode, I, H, 2, nonlinearity)
    hand2.load_state_dict(ref.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(hand2.state_dict().values(), ref.state_dict().values()))
    assert rel_err(hand2(x)[0], ref(x)[0]) < 1e-5


@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_identical_init_through_build_model(mode, nonlinearity, layers):
    task = make_task("copy")
    models = {
        impl: build_model(task, CellConfig(mode, impl, hidden=16, layers=layers,
                                           nonlinearity=nonlinearity), init_seed=123)
        for impl in ("builtin", "hand")
    }
    torch.manual_seed(0)  # the global RNG state must not matter
    again = build_model(task, CellConfig(mode, "hand", 16, layers, nonlinearity), init_seed=123)
    other = build_model(task, CellConfig(mode, "hand", 16, layers, nonlinearity), init_seed=124)
    sd_b, sd_h = models["builtin"].state_dict(), models["hand"].state_dict()
    assert list(sd_b) == list(sd_h)
    assert any(k.startswith("rnn.") for k in sd_b) and any(k.startswith("readout.") for k in sd_b)
    for k in sd_b:
        assert torch.equal(sd_b[k], sd_h[k]), k
        assert torch.equal(again.state_dict()[k], sd_h[k]), k
    assert not torch.equal(other.state_dict()["rnn.weight_hh_l0"], sd_h["rnn.weight_hh_l0"])
    assert isinstance(models["builtin"].rnn, nn.RNNBase)
    assert isinstance(models["hand"].rnn, HandRNN)


def test_hand_init_is_pytorch_default_range():
    hand = HandRNN("lstm", I, 25, 2)
    bound = 1 / 25**0.5
    for name, p in hand.named_parameters():
        assert p.abs().max() <= bound, name
        assert p.abs().max() > 0.8 * bound, name  # uniform over the whole range, not a constant


def _graph_ops(t: torch.Tensor) -> dict[str, int]:
    """Count autograd node types reachable from ``t``."""
    counts: dict[str, int] = {}
    seen, stack = set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        counts[type(fn).__name__] = counts.get(type(fn).__name__, 0) + 1
        stack.extend(f for f, _ in fn.next_functions)
    return counts


@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_no_per_step_indexing_of_stacked_tensors(mode, nonlinearity, hand_kw):
    """The O(T^2) trap (docs/references.md section 7): ``xp[t]`` inside the loop records one
    SelectBackward per step, each of whose backward allocates a full-size zero gradient. Views of
    ``unbind`` do not. Select/slice nodes may exist (h0[layer]) but their number must not grow
    with T."""
    hand = HandRNN(mode, I, H, 2, nonlinearity, **hand_kw)

    def indexing_nodes(T):
        x = torch.randn(T, B, I, requires_grad=True)
        ops = _graph_ops(hand(x)[0])
        return sum(v for k, v in ops.items() if k.startswith(("Select", "Slice", "Index")))

    assert indexing_nodes(40) == indexing_nodes(5)


# ------------------------------------------------------------------------------------------------
# CellConfig validation
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(cell="lstm", nonlinearity="relu"), "rnn"),
        (dict(cell="gru", nonlinearity="linear"), "rnn"),
        (dict(cell="rnn", impl="builtin", nonlinearity="leaky_relu"), "tanh, relu"),
        (dict(cell="rnn", impl="builtin", nonlinearity="elu"), "tanh, relu"),
        (dict(cell="rnn", nonlinearity="swish"), "tanh, relu, leaky_relu, elu, linear"),
        (dict(cell="transformer"), "rnn, lstm, gru"),
        (dict(impl="cudnn"), "builtin, hand"),
        (dict(hidden=0), "hidden"),
        (dict(layers=0), "layers"),
        (dict(hidden=-3), "hidden"),
        (dict(impl="hand", norm="group"), "none, layer, layer_split, batch, batch_recurrent"),
        (dict(init="fancy"), "orthogonal, identity, irnn"),
        (dict(cell="lstm", impl="hand", norm="layer_split"), "does not apply to cell 'lstm'"),
        (dict(cell="rnn", nonlinearity="tanh", init="irnn"), "'relu'"),
    ],
)
def test_cell_config_validate_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CellConfig(**kwargs).validate()
    with pytest.raises(ConfigError):
        make_recurrent(CellConfig(**kwargs), 2)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "leaky_relu", "elu", "linear"])
def test_cell_config_valid_rnn_nonlinearities_with_hand(nonlinearity):
    cfg = CellConfig(cell="rnn", impl="hand", hidden=4, nonlinearity=nonlinearity)
    assert cfg.validate() == cfg
    module = make_recurrent(cfg, 2)
    out, _ = module(torch.randn(3, 2, 2))
    assert out.shape == (3, 2, 4)


def test_hand_nonlinearities_compute_what_they_say(hand_kw):
    """A one-unit RNN with identity weights makes the activation visible."""
    x = torch.tensor([[[-2.0]], [[0.0]]])  # (T=2, B=1, I=1)
    expected = {
        "tanh": torch.tanh(torch.tensor(-2.0)),
        "relu": torch.tensor(0.0),
        "leaky_relu": torch.tensor(-0.02),
        "elu": torch.expm1(torch.tensor(-2.0)),
        "linear": torch.tensor(-2.0),
    }
    for name, value in expected.items():
        m = HandRNN("rnn", 1, 1, 1, name, **hand_kw)
        with torch.no_grad():
            m.weight_ih_l0.fill_(1.0)
            m.weight_hh_l0.fill_(0.0)
            m.bias_ih_l0.zero_()
            m.bias_hh_l0.zero_()
        out, _ = m(x)
        torch.testing.assert_close(out[0, 0, 0], value, msg=name)


# ------------------------------------------------------------------------------------------------
# Gradient norms: the backward pass records ||dL/dh_t|| (||dL/dc_t||) of every sequence
# ------------------------------------------------------------------------------------------------


def _norms(mode, layers, T):
    def z():
        return torch.zeros(T, B, dtype=torch.float64)

    return [{"h": z(), "c": z()} if mode == "lstm" else {"h": z()} for _ in range(layers)]


def vnorm(g: torch.Tensor) -> torch.Tensor:
    """Per-sequence norms of a (..., B, H) gradient."""
    return torch.linalg.vector_norm(g, dim=-1, dtype=torch.float64)


@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_grad_norms_leave_outputs_unchanged(mode, nonlinearity, layers, hand_kw):
    torch.manual_seed(0)
    hand = HandRNN(mode, I, H, layers, nonlinearity, **hand_kw).double()
    x = torch.randn(12, B, I, dtype=torch.float64)
    out, state = hand(x)
    out_p, state_p = hand(x, grad_norms=_norms(mode, layers, 12))
    assert torch.equal(out_p, out)
    for a, b in zip(split(mode, state_p), split(mode, state)):
        if b is not None:
            assert torch.equal(a, b)


@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_grad_norms_are_state_gradient_norms(mode, nonlinearity, hand_kw):
    """For a loss on the last output: the recorded norm at the last step is that of dL/dh_T, and
    at an earlier step k that of the gradient of the loss w.r.t. the initial state of the built-in
    module run on steps k+1..T-1 from the state at k (the chunking identity of docs/references.md
    section 5)."""
    T, layers = 15, 1
    dtype = torch.float64
    ref, hand = pair(mode, nonlinearity, layers, dtype, seed=3, hand_kw=hand_kw)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(T, B, I, generator=gen, dtype=dtype)
    w = torch.randn(H, generator=gen, dtype=dtype)

    def loss_of(last_h):
        return (torch.tanh(last_h) * w).sum()

    norms = _norms(mode, layers, T)
    out, _ = hand(x, grad_norms=norms)
    loss_of(out[-1]).backward()
    n_h = norms[0]["h"]
    # last step: dL/dh_T, known for L = sum(w * tanh(h_T))
    expected_last = (1 - torch.tanh(out[-1].detach()) ** 2) * w
    assert rel_err(n_h[-1], vnorm(expected_last)) < 1e-12
    assert (n_h[:-1] > 0).all()  # earlier steps get gradient through the recurrence alone

    for k in (0, 5, T - 2):
        with torch.no_grad():
            _, state_k = ref(x[: k + 1])
        state_k = tuple(s.clone().requires_grad_() for s in split(mode, state_k) if s is not None)
        out_rest, _ = ref(x[k + 1 :], state_k if mode == "lstm" else state_k[0])
        loss_of(out_rest[-1]).backward()
        assert rel_err(n_h[k], vnorm(state_k[0].grad[0])) < 1e-9, k
        if mode == "lstm":
            # the recorded dL/dc_k is the total one, which also runs through h_k = o_k tanh(c_k);
            # the chunk's initial-c gradient holds h_k fixed
            h_k, c_k = (s.detach()[0] for s in state_k)
            dh_dc = h_k * (1 - torch.tanh(c_k) ** 2) / torch.tanh(c_k)  # o_k (1 - tanh^2 c_k)
            expected_c = state_k[1].grad[0] + state_k[0].grad[0] * dh_dc
            assert rel_err(norms[0]["c"][k], vnorm(expected_c)) < 1e-9, k


def manual_reference(module: HandRNN, x: torch.Tensor):
    """The documented equations as a plain per-step loop, every h_t and c_t kept with
    retain_grad: their .grad after backward are the total derivatives dL/dh_t, dL/dc_t."""
    act = {"tanh": torch.tanh, "relu": torch.relu}[module.nonlinearity]
    T, Bx, _ = x.shape
    hs = [[None] * T for _ in range(module.num_layers)]
    cs = [[None] * T for _ in range(module.num_layers)]
    inputs = list(x)
    for layer in range(module.num_layers):
        w_ih, w_hh, b_ih, b_hh = (getattr(module, f"{n}_l{layer}") for n in
                                  ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        h = x.new_zeros(Bx, module.hidden_size)
        c = x.new_zeros(Bx, module.hidden_size)
        for t in range(T):
            xi = inputs[t] @ w_ih.t() + b_ih
            hh = h @ w_hh.t() + b_hh
            if module.mode == "lstm":
                i, f, g, o = (xi + hh).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                c.retain_grad()
                cs[layer][t] = c
                h = torch.sigmoid(o) * torch.tanh(c)
            elif module.mode == "gru":
                xr, xz, xn = xi.chunk(3, 1)
                hr, hz, hn = hh.chunk(3, 1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                h = (1 - z) * n + z * h
            else:
                h = act(xi + hh)
            h.retain_grad()
            hs[layer][t] = h
        inputs = hs[layer]
    return hs, cs


@pytest.mark.parametrize("mode,nonlinearity", CELLS, ids=["rnn-tanh", "rnn-relu", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_grad_norms_match_manual_loop_every_step_and_layer(mode, nonlinearity, layers, hand_kw):
    T, dtype = 12, torch.float64
    torch.manual_seed(10)
    hand = HandRNN(mode, I, H, layers, nonlinearity, **hand_kw).double()
    x = torch.randn(T, B, I, dtype=dtype)
    w = torch.randn(H, dtype=dtype)
    norms = _norms(mode, layers, T)
    out, _ = hand(x, grad_norms=norms)
    (out[-1] * w).sum().backward()

    hs, cs = manual_reference(hand, x)
    (hs[-1][-1] * w).sum().backward()
    for layer in range(layers):
        for t in range(T):
            assert rel_err(norms[layer]["h"][t], vnorm(hs[layer][t].grad)) < 1e-10, (layer, t)
            if mode == "lstm":
                assert rel_err(norms[layer]["c"][t], vnorm(cs[layer][t].grad)) < 1e-10, (layer, t)
        assert (norms[layer]["h"][0] > 0).all()
