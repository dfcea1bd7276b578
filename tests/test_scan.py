"""The parallel scans of seqbench.cells.scan against the recurrence h_t = a_t h_{t-1} + b_t written as
a plain loop: values and autograd gradients, real and complex, with h_0 != 0 and h_0 = 0."""

import functools

import pytest
import torch

import seqbench.cells.scan as scan
from seqbench.cells.scan import linear_scan, log_space_scan

B, N = 3, 4
F64, C128 = torch.float64, torch.complex128


def loop(a, b, h0, reverse=False):
    """The recurrence one step at a time (reverse: h_t = a_t h_{t+1} + b_t from h_T = h0)."""
    a = a.expand_as(b)
    h, out = h0, [None] * b.shape[0]
    for t in (range(b.shape[0] - 1, -1, -1) if reverse else range(b.shape[0])):
        h = a[t] * h + b[t]
        out[t] = h
    return torch.stack(out)


def rel(x, y):
    """||x - y|| / ||y|| (the absolute difference where y is 0)."""
    den = y.norm().item()
    return (x - y).norm().item() / (den if den > 0 else 1.0)


def inputs(T, dtype, gen, constant_a=False):
    """a with |a| < 1 (so that nothing overflows over T steps), b and h0 random, all leaves."""
    shape = (N,) if constant_a else (T, B, N)
    a = torch.randn(shape, generator=gen, dtype=dtype)
    a = a / a.abs() * 0.999 * torch.rand(shape, generator=gen, dtype=F64)
    b = torch.randn(T, B, N, generator=gen, dtype=dtype)
    h0 = torch.randn(B, N, generator=gen, dtype=dtype)
    return [v.requires_grad_() for v in (a, b, h0)]


def values_and_grads(fn, leaves, weight):
    """fn(*leaves) and the gradients of a loss that weighs every output differently."""
    out = fn(*leaves)
    return out, torch.autograd.grad((out * weight).real.sum(), leaves)


@pytest.mark.parametrize("chunk", [32, 3], ids=["chunk32", "chunk3"])
@pytest.mark.parametrize("T", [1, 2, 5, 63, 64, 65, 100, 333])
@pytest.mark.parametrize("dtype", [F64, C128], ids=["real", "complex"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("constant_a", [False, True], ids=["a_t", "a"])
def test_linear_scan_matches_the_loop(monkeypatch, chunk, T, dtype, reverse, constant_a):
    """chunk 3: a deep recursion with left-over steps at every level; chunk 32 (the default) with
    T > 64 runs the chunked path, below it the plain loop."""
    monkeypatch.setattr(scan, "CHUNK", chunk)
    gen = torch.Generator().manual_seed(T)
    leaves = inputs(T, dtype, gen, constant_a)
    weight = torch.randn(T, B, N, generator=gen, dtype=dtype)
    ref, ref_grads = values_and_grads(lambda a, b, h0: loop(a, b, h0, reverse), leaves, weight)
    out, grads = values_and_grads(lambda a, b, h0: linear_scan(a, b, h0, reverse), leaves, weight)
    assert out.dtype == dtype and out.shape == (T, B, N)
    assert rel(out, ref) < 1e-10
    for g, g_ref, name in zip(grads, ref_grads, ("a", "b", "h0")):
        assert g.shape == g_ref.shape and g_ref.norm() > 0, name
        assert rel(g, g_ref) < 1e-10, name


@pytest.mark.parametrize("dtype", [F64, C128], ids=["real", "complex"])
def test_linear_scan_twice_differentiable(monkeypatch, dtype):
    """The backward is written with the scan itself: gradcheck and gradgradcheck (chunk 2, T = 9:
    two levels of recursion and a left-over step)."""
    monkeypatch.setattr(scan, "CHUNK", 2)
    a, b, h0 = inputs(9, dtype, torch.Generator().manual_seed(0))
    for reverse in (False, True):
        fn = functools.partial(linear_scan, reverse=reverse)
        assert torch.autograd.gradcheck(fn, (a, b, h0))
        assert torch.autograd.gradgradcheck(fn, (a, b, h0))


def test_linear_scan_promotes_a_real_coefficient_to_a_complex_state():
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(N, generator=gen, dtype=F64)
    b = torch.randn(70, B, N, generator=gen, dtype=C128)
    h0 = torch.zeros(B, N, dtype=F64)
    out = linear_scan(a, b, h0)
    assert out.dtype == C128
    assert rel(out, loop(a.to(C128), b, h0.to(C128))) < 1e-12


def positive_inputs(T, gen, h0):
    """log a <= 0 and log b of either sign (a in (0, 1], b > 0), and h0 of the kind asked for."""
    log_a = -3 * torch.rand(T, B, N, generator=gen, dtype=F64)
    log_b = torch.randn(T, B, N, generator=gen, dtype=F64)
    h = {"random": torch.randn(B, N, generator=gen, dtype=F64),
         "zero": torch.zeros(B, N, dtype=F64)}[h0]
    return [v.requires_grad_() for v in (log_a, log_b, h)]


@pytest.mark.parametrize("T", [1, 2, 65, 300])
@pytest.mark.parametrize("h0", ["random", "zero"])
def test_log_space_scan_matches_the_loop(T, h0):
    """Heinsen's form: h_0 of any sign, and h_0 = 0 (no logarithm) exactly; gradients too."""
    gen = torch.Generator().manual_seed(T)
    leaves = positive_inputs(T, gen, h0)
    weight = torch.randn(T, B, N, generator=gen, dtype=F64)
    ref, ref_grads = values_and_grads(lambda la, lb, h: loop(la.exp(), lb.exp(), h), leaves, weight)
    out, grads = values_and_grads(log_space_scan, leaves, weight)
    assert rel(out, ref) < 1e-10
    for g, g_ref, name in zip(grads, ref_grads, ("log_a", "log_b", "h0")):
        if name == "log_a" and h0 == "zero" and T == 1:
            assert g.abs().max() == 0  # dh_1/dlog a_1 = a_1 h_0 = 0
            continue
        assert g_ref.norm() > 0, name
        assert rel(g, g_ref) < 1e-10, name
    if h0 == "zero":  # the first step from a zero state is b_1 alone
        torch.testing.assert_close(out[0], leaves[1][0].exp(), rtol=1e-14, atol=0)


def test_log_space_scan_without_h0_starts_from_zero():
    log_a, log_b, zero = positive_inputs(40, torch.Generator().manual_seed(2), "zero")
    torch.testing.assert_close(log_space_scan(log_a, log_b), log_space_scan(log_a, log_b, zero),
                               rtol=0, atol=0)


def test_log_space_scan_twice_differentiable():
    leaves = positive_inputs(7, torch.Generator().manual_seed(3), "random")
    assert torch.autograd.gradcheck(log_space_scan, leaves)
    assert torch.autograd.gradgradcheck(log_space_scan, leaves)


def test_log_space_scan_long_float32_sequence_keeps_its_precision():
    """T = 3000 in float32, sum of log a down to about -1500: the error grows with |sum log a|
    times float32's epsilon (module docstring), still below 1e-3 relative; gradients finite."""
    gen = torch.Generator().manual_seed(4)
    T = 3000
    log_a = -torch.rand(T, B, N, generator=gen, dtype=F64)
    log_b = torch.randn(T, B, N, generator=gen, dtype=F64)
    h0 = torch.rand(B, N, generator=gen, dtype=F64)  # h > 0 throughout: relative errors defined
    ref = loop(log_a.exp(), log_b.exp(), h0)
    leaves = [v.float().requires_grad_() for v in (log_a, log_b, h0)]
    out = log_space_scan(*leaves)
    assert ((out.double() - ref).abs() / ref.abs()).max() < 1e-3
    out.sum().backward()
    assert all(torch.isfinite(v.grad).all() for v in leaves)
