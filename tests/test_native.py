"""seqbench.native: the compiled LSTM steps compute what seqbench.cells.lstm's torch calls compute
(outputs, final states, every gradient, the recorded gradient norms), and can be switched off."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqbench import native
from seqbench.cells import lstm
from seqbench.cells.stack import HandRNN
from seqbench.provenance import kernel

needs_native = pytest.mark.skipif(not native.available(),
                                  reason=f"compiled kernel unavailable: {native.why_not()}")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def lstm_inputs(T, B, I, H, seed):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen)).requires_grad_()

    return (rand(T, B, I), rand(B, H), rand(B, H), rand(4 * H, I), rand(4 * H, H, scale=0.3),
            rand(4 * H), rand(4 * H))


def run(inputs, monkeypatch, on: bool, T, B):
    """Outputs, final states, every input's gradient and the gradient norms, one path."""
    monkeypatch.setenv(native.ENV, "1" if on else "0")
    norms_h, norms_c = torch.zeros(T, B, dtype=torch.float64), torch.zeros(T, B, dtype=torch.float64)
    out, h_n, c_n = lstm.fused_layer(*inputs, norms_h=norms_h, norms_c=norms_c)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(9))
    loss = (out * weight).sum() + h_n.sum() + (c_n ** 2).sum()
    grads = torch.autograd.grad(loss, inputs)
    return [out, h_n, c_n, *grads, norms_h, norms_c]


@needs_native
@pytest.mark.parametrize("T,B,H", [(1, 1, 16), (9, 3, 5), (30, 4, 20), (12, 64, 128)])
def test_compiled_steps_match_torch_calls(T, B, H, monkeypatch):
    """Sizes below, at and not a multiple of the vector width (the kernel's tail)."""
    inputs = lstm_inputs(T, B, 3, H, seed=T + H)
    got = run(inputs, monkeypatch, True, T, B)
    ref = run(inputs, monkeypatch, False, T, B)
    for k, (a, b) in enumerate(zip(got, ref)):
        assert rel_err(a, b) < 1e-5, k


@needs_native
def test_handrnn_lstm_matches_nn_lstm_through_the_compiled_steps(monkeypatch):
    monkeypatch.setenv(native.ENV, "1")
    torch.manual_seed(0)
    ref = nn.LSTM(3, 24, 2)
    hand = HandRNN("lstm", 3, 24, 2)
    hand.load_state_dict(ref.state_dict())
    x = torch.randn(40, 5, 3)
    (out_r, _), (out_h, _) = ref(x), hand(x)
    assert rel_err(out_h, out_r) < 1e-5
    out_r.pow(2).sum().backward()
    out_h.pow(2).sum().backward()
    for (name, p), q in zip(ref.named_parameters(), hand.parameters()):
        assert rel_err(q.grad, p.grad) < 1e-5, name


@needs_native
def test_second_backward_recomputes_with_the_compiled_steps(monkeypatch):
    monkeypatch.setenv(native.ENV, "1")
    inputs = lstm_inputs(7, 2, 3, 8, seed=1)
    out = lstm.fused_layer(*inputs)
    loss = out[0].pow(2).sum() + out[2].sum()
    first = torch.autograd.grad(loss, inputs, retain_graph=True)
    second = torch.autograd.grad(loss, inputs)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(native.ENV, "0")
    assert native.lstm_kernels() is None and native.why_not() == f"{native.ENV}=0"
    assert kernel("lstm", "hand", torch.device("cpu")) == "hand (fused)"


@needs_native
def test_kernel_column_names_the_compiled_steps(monkeypatch):
    monkeypatch.setenv(native.ENV, "1")
    assert kernel("lstm", "hand", torch.device("cpu")) == "hand (fused, native)"
    assert kernel("gru", "hand", torch.device("cpu")) == "hand (fused)"
    assert kernel("lstm", "hand", torch.device("cpu"), norm="layer") == "hand (autograd)"


def test_a_failed_build_falls_back_to_torch_calls(monkeypatch, capsys):
    import torch.utils.cpp_extension as cpp

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension: c++: not found")

    monkeypatch.setenv(native.ENV, "1")
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_why_not", "")
    monkeypatch.setattr(cpp, "load", no_compiler)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert native.lstm_kernels() is None and not native.available()
    assert "c++: not found" in native.why_not()
    err = capsys.readouterr().err.splitlines()  # (a line announcing the build, then) one line
    assert len(err) <= 2 and err[-1].startswith("seqbench: compiled LSTM kernel unavailable")
    # the LSTM still runs, through the torch calls
    inputs = lstm_inputs(4, 2, 3, 8, seed=2)
    out = lstm.fused_layer(*inputs)[0]
    ref = HandRNN("lstm", 3, 8, fused=False)
    with torch.no_grad():
        for name, value in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"),
                               inputs[3:]):
            getattr(ref, name).copy_(value)
    expected = ref(inputs[0].detach(), (inputs[1].detach()[None], inputs[2].detach()[None]))[0]
    assert rel_err(out, expected) < 1e-5
