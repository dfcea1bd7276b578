"""Triton kernels of one time step of the Elman RNN, the LSTM and the GRU, forward and backward
(float32). What they compute and how they are launched: seqbench.cells.triton.

Every kernel is launched on a grid of (batch blocks, hidden-unit blocks); a program owns the tile
(rows ``rb``, hidden units ``rh``) of one step and computes, for it, the recurrent matrix product
(every gate of those units: the gates are blocks of ``G`` rows of W_hh, in PyTorch's order) and
the pointwise epilogue (gate nonlinearities, state update; backward: the gate gradients). Tensors
are contiguous and row-major: a step's pre-activations / gates (B, G H), states (B, H), W_hh
(G H, H).

This file is executed once per mode by seqbench.cells.triton.kernels_for (compiled for CUDA, or
under Triton's interpreter for CPU tensors, in the tests): ``triton.jit`` decides which at
decoration time, so each mode gets its own copy of the module.
"""

import triton
import triton.language as tl

# activation codes of the Elman kernels (seqbench.cells.triton.ACT_CODES)
# (globals a kernel reads must be constexpr objects; an annotation alone is not enough)
TANH = tl.constexpr(0)
RELU = tl.constexpr(1)
LEAKY_RELU = tl.constexpr(2)
ELU = tl.constexpr(3)
LINEAR = tl.constexpr(4)
LEAKY_SLOPE = tl.constexpr(0.01)  # seqbench.cells.fused.LEAKY_SLOPE, F.leaky_relu's default


@triton.jit
def _sigmoid(x):
    """1 / (1 + exp(-x)), without overflow: exp of a non-positive number only."""
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@triton.jit
def _tanh(x):
    """sign(x) (1 - e) / (1 + e), e = exp(-2 |x|) (no overflow)."""
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x >= 0, t, -t)


@triton.jit
def _product(a_ptr, a_stride, w_ptr, w_sk, w_sn, rb, mb, rn, mn, K,
             BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
             PRECISION: tl.constexpr):
    """(BLOCK_B, BLOCK_N) tile of A W: sum over k < K of A[rb, k] W[k, rn], where A[b, k] is at
    a_ptr + b a_stride + k and W[k, n] at w_ptr + k w_sk + n w_sn; masked rows and columns are 0."""
    acc = tl.full((BLOCK_B, BLOCK_N), 0.0, tl.float32)  # (tl.zeros is @jit: not in both modes)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        mk = rk < K
        a = tl.load(a_ptr + rb[:, None] * a_stride + rk[None, :], mask=mb[:, None] & mk[None, :],
                    other=0.0)
        w = tl.load(w_ptr + rk[:, None] * w_sk + rn[None, :] * w_sn, mask=mk[:, None] & mn[None, :],
                    other=0.0)
        acc = tl.dot(a, w, acc, input_precision=PRECISION)
    return acc


# ------------------------------------------------------------------------------------------------
# Elman RNN:  h_t = act(xp_t + W_hh h_{t-1}),  xp_t = W_ih x_t + b_ih + b_hh
# ------------------------------------------------------------------------------------------------


@triton.jit
def rnn_forward_step(xp_ptr, h_ptr, w_ptr, out_ptr, B, H, ACT: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                     PRECISION: tl.constexpr):
    """out = act(xp + h W_hh^T); xp, h, out (B, H)."""
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb, mh = rb < B, rh < H
    m2 = mb[:, None] & mh[None, :]
    idx = rb[:, None] * H + rh[None, :]
    # W^T[k, n] = W[n, k]: at w_ptr + k + n H
    y = tl.load(xp_ptr + idx, mask=m2, other=0.0) + _product(
        h_ptr, H, w_ptr, 1, H, rb, mb, rh, mh, H, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION)
    if ACT == TANH:
        y = _tanh(y)
    elif ACT == RELU:
        y = tl.maximum(y, 0.0)
    elif ACT == LEAKY_RELU:
        y = tl.where(y > 0, y, y * LEAKY_SLOPE)
    elif ACT == ELU:
        y = tl.where(y > 0, y, tl.exp(tl.minimum(y, 0.0)) - 1.0)
    tl.store(out_ptr + idx, y, mask=m2)


@triton.jit
def rnn_backward_step(gy_ptr, dnext_ptr, w_ptr, y_ptr, dh_ptr, dpre_ptr, B, H,
                      ACT: tl.constexpr, HAS_NEXT: tl.constexpr,
                      BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                      PRECISION: tl.constexpr):
    """dh = gy (+ dpre_{t+1} W_hh if HAS_NEXT); dpre = dh act'(pre), from the output y = h_t.
    All (B, H)."""
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb, mh = rb < B, rh < H
    m2 = mb[:, None] & mh[None, :]
    idx = rb[:, None] * H + rh[None, :]
    dh = tl.load(gy_ptr + idx, mask=m2, other=0.0)
    if HAS_NEXT:  # W[k, n] at w_ptr + k H + n
        dh += _product(dnext_ptr, H, w_ptr, H, 1, rb, mb, rh, mh, H,
                       BLOCK_B, BLOCK_H, BLOCK_K, PRECISION)
    y = tl.load(y_ptr + idx, mask=m2, other=0.0)
    if ACT == TANH:
        d = dh * (1.0 - y * y)
    elif ACT == RELU:
        d = tl.where(y > 0, dh, 0.0)
    elif ACT == LEAKY_RELU:
        d = tl.where(y > 0, dh, dh * LEAKY_SLOPE)
    elif ACT == ELU:
        d = tl.where(y > 0, dh, dh * (y + 1.0))
    else:
        d = dh
    tl.store(dh_ptr + idx, dh, mask=m2)
    tl.store(dpre_ptr + idx, d, mask=m2)


# ------------------------------------------------------------------------------------------------
# LSTM, gates i, f, g, o:  c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)
# ------------------------------------------------------------------------------------------------


@triton.jit
def lstm_forward_step(xp_ptr, h_ptr, c_ptr, w_ptr, gates_ptr, c_out_ptr, h_out_ptr, B, H,
                      BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                      PRECISION: tl.constexpr):
    """Gates [i, f, g, o] = act(xp + h W_hh^T) into gates (B, 4H); c_out = f c + i g;
    h_out = o tanh(c_out). xp (B, 4H): W_ih x + both biases."""
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb, mh = rb < B, rh < H
    m2 = mb[:, None] & mh[None, :]
    idx = rb[:, None] * H + rh[None, :]
    gidx = rb[:, None] * (4 * H) + rh[None, :]  # gate 0's columns; gate k: + k H
    HH = H * H  # gate k's rows of W_hh start at w_ptr + k H H
    i = _sigmoid(tl.load(xp_ptr + gidx, mask=m2, other=0.0) + _product(
        h_ptr, H, w_ptr, 1, H, rb, mb, rh, mh, H, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION))
    f = _sigmoid(tl.load(xp_ptr + gidx + H, mask=m2, other=0.0) + _product(
        h_ptr, H, w_ptr + HH, 1, H, rb, mb, rh, mh, H, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION))
    g = _tanh(tl.load(xp_ptr + gidx + 2 * H, mask=m2, other=0.0) + _product(
        h_ptr, H, w_ptr + 2 * HH, 1, H, rb, mb, rh, mh, H, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION))
    o = _sigmoid(tl.load(xp_ptr + gidx + 3 * H, mask=m2, other=0.0) + _product(
        h_ptr, H, w_ptr + 3 * HH, 1, H, rb, mb, rh, mh, H, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION))
    c = f * tl.load(c_ptr + idx, mask=m2, other=0.0) + i * g
    tl.store(gates_ptr + gidx, i, mask=m2)
    tl.store(gates_ptr + gidx + H, f, mask=m2)
    tl.store(gates_ptr + gidx + 2 * H, g, mask=m2)
    tl.store(gates_ptr + gidx + 3 * H, o, mask=m2)
    tl.store(c_out_ptr + idx, c, mask=m2)
    tl.store(h_out_ptr + idx, o * _tanh(c), mask=m2)


@triton.jit
def lstm_backward_step(gy_ptr, dnext_ptr, w_ptr, gates_ptr, gates_next_ptr, c_ptr, c_prev_ptr,
                       dc_in_ptr, dgates_ptr, dh_ptr, dc_ptr, B, H, HAS_NEXT: tl.constexpr,
                       BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                       PRECISION: tl.constexpr):
    """One step back: dh = gy (+ dgates_{t+1} W_hh); dc = dc_in (f_{t+1} if HAS_NEXT, dc_in being
    dc_{t+1}; else dc_in = dL/dc_T) + dh o (1 - tanh^2 c); then the pre-activation gradients
    [di, df, dg, do] into dgates (B, 4H), and dh, dc (B, H)."""
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb, mh = rb < B, rh < H
    m2 = mb[:, None] & mh[None, :]
    idx = rb[:, None] * H + rh[None, :]
    gidx = rb[:, None] * (4 * H) + rh[None, :]
    dh = tl.load(gy_ptr + idx, mask=m2, other=0.0)
    dc = tl.load(dc_in_ptr + idx, mask=m2, other=0.0)
    if HAS_NEXT:  # dgates_{t+1} (B, 4H) times W_hh (4H, H)
        dh += _product(dnext_ptr, 4 * H, w_ptr, H, 1, rb, mb, rh, mh, 4 * H,
                       BLOCK_B, BLOCK_H, BLOCK_K, PRECISION)
        dc = dc * tl.load(gates_next_ptr + gidx + H, mask=m2, other=0.0)
    i = tl.load(gates_ptr + gidx, mask=m2, other=0.0)
    f = tl.load(gates_ptr + gidx + H, mask=m2, other=0.0)
    g = tl.load(gates_ptr + gidx + 2 * H, mask=m2, other=0.0)
    o = tl.load(gates_ptr + gidx + 3 * H, mask=m2, other=0.0)
    tc = _tanh(tl.load(c_ptr + idx, mask=m2, other=0.0))
    dc += dh * o * (1.0 - tc * tc)
    c_prev = tl.load(c_prev_ptr + idx, mask=m2, other=0.0)
    tl.store(dgates_ptr + gidx, dc * g * i * (1.0 - i), mask=m2)
    tl.store(dgates_ptr + gidx + H, dc * c_prev * f * (1.0 - f), mask=m2)
    tl.store(dgates_ptr + gidx + 2 * H, dc * i * (1.0 - g * g), mask=m2)
    tl.store(dgates_ptr + gidx + 3 * H, dh * tc * o * (1.0 - o), mask=m2)
    tl.store(dh_ptr + idx, dh, mask=m2)
    tl.store(dc_ptr + idx, dc, mask=m2)


# ------------------------------------------------------------------------------------------------
# GRU, gates r, z, n:  n = tanh(xp_n + r (W_hn h + b_hn)),  h_t = n + z (h_{t-1} - n)
# ------------------------------------------------------------------------------------------------


@triton.jit
def gru_forward_step(xp_ptr, h_ptr, w_ptr, b_ptr, gates_ptr, hn_ptr, h_out_ptr, B, H,
                     HAS_BIAS: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                     PRECISION: tl.constexpr):
    """Gates [r, z, n] into gates (B, 3H), W_hn h + b_hn into hn (B, H), h_t into h_out.
    xp (B, 3H): W_ih x + b_ih; b: b_hh (3H,) if HAS_BIAS."""
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb, mh = rb < B, rh < H
    m2 = mb[:, None] & mh[None, :]
    idx = rb[:, None] * H + rh[None, :]
    gidx = rb[:, None] * (3 * H) + rh[None, :]
    HH = H * H
    hr = _product(h_ptr, H, w_ptr, 1, H, rb, mb, rh, mh, H, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION)
    hz = _product(h_ptr, H, w_ptr + HH, 1, H, rb, mb, rh, mh, H,
                  BLOCK_B, BLOCK_H, BLOCK_K, PRECISION)
    hn = _product(h_ptr, H, w_ptr + 2 * HH, 1, H, rb, mb, rh, mh, H,
                  BLOCK_B, BLOCK_H, BLOCK_K, PRECISION)
    if HAS_BIAS:
        hr += tl.load(b_ptr + rh, mask=mh, other=0.0)[None, :]
        hz += tl.load(b_ptr + H + rh, mask=mh, other=0.0)[None, :]
        hn += tl.load(b_ptr + 2 * H + rh, mask=mh, other=0.0)[None, :]
    r = _sigmoid(tl.load(xp_ptr + gidx, mask=m2, other=0.0) + hr)
    z = _sigmoid(tl.load(xp_ptr + gidx + H, mask=m2, other=0.0) + hz)
    n = _tanh(tl.load(xp_ptr + gidx + 2 * H, mask=m2, other=0.0) + r * hn)
    h = tl.load(h_ptr + idx, mask=m2, other=0.0)
    tl.store(gates_ptr + gidx, r, mask=m2)
    tl.store(gates_ptr + gidx + H, z, mask=m2)
    tl.store(gates_ptr + gidx + 2 * H, n, mask=m2)
    tl.store(hn_ptr + idx, hn, mask=m2)
    tl.store(h_out_ptr + idx, n + z * (h - n), mask=m2)


@triton.jit
def gru_backward_step(gy_ptr, dnext_ptr, dh_next_ptr, w_ptr, gates_ptr, gates_next_ptr, hn_ptr,
                      h_prev_ptr, D_ptr, dh_ptr, B, H, HAS_NEXT: tl.constexpr,
                      BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                      PRECISION: tl.constexpr):
    """One step back: dh = gy (+ dh_{t+1} z_{t+1} + [dr, dz, dhn]_{t+1} W_hh); then
    D (B, 4H) = [dr, dz, dhn, dn] (pre-activation gradients; dhn = dn r is that of W_hn h + b_hn,
    dn that of the input side's n) and dh (B, H). dnext: the next step's D."""
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb, mh = rb < B, rh < H
    m2 = mb[:, None] & mh[None, :]
    idx = rb[:, None] * H + rh[None, :]
    gidx = rb[:, None] * (3 * H) + rh[None, :]
    didx = rb[:, None] * (4 * H) + rh[None, :]
    dh = tl.load(gy_ptr + idx, mask=m2, other=0.0)
    if HAS_NEXT:  # the first 3H columns of the next D (row stride 4H) times W_hh (3H, H)
        dh += tl.load(dh_next_ptr + idx, mask=m2, other=0.0) * tl.load(
            gates_next_ptr + gidx + H, mask=m2, other=0.0)
        dh += _product(dnext_ptr, 4 * H, w_ptr, H, 1, rb, mb, rh, mh, 3 * H,
                       BLOCK_B, BLOCK_H, BLOCK_K, PRECISION)
    r = tl.load(gates_ptr + gidx, mask=m2, other=0.0)
    z = tl.load(gates_ptr + gidx + H, mask=m2, other=0.0)
    n = tl.load(gates_ptr + gidx + 2 * H, mask=m2, other=0.0)
    hn = tl.load(hn_ptr + idx, mask=m2, other=0.0)
    h_prev = tl.load(h_prev_ptr + idx, mask=m2, other=0.0)
    dn = (dh - dh * z) * (1.0 - n * n)
    tl.store(D_ptr + didx, dn * hn * r * (1.0 - r), mask=m2)
    tl.store(D_ptr + didx + H, dh * (h_prev - n) * z * (1.0 - z), mask=m2)
    tl.store(D_ptr + didx + 2 * H, dn * r, mask=m2)
    tl.store(D_ptr + didx + 3 * H, dn, mask=m2)
    tl.store(dh_ptr + idx, dh, mask=m2)
