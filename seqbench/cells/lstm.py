"""The LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000), in
PyTorch's form (torch.nn.LSTM), gates in the order i, f, g, o:

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)      f = sigmoid(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)         o = sigmoid(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g                              h' = o * tanh(c')

Three forms of the same function: ``step`` (the equations), ``layer`` (plain autograd, the input
projection of all steps in one product before the loop) and ``fast_layer`` (``LSTMFunction``, a
whole-sequence autograd Function with a hand-written backward, whose per-step pointwise work runs
in seqbench.native's compiled kernel for float32 on the CPU).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqbench.cells import triton as triton_path
from seqbench.cells.base import Cell, input_projection, record_grad_norm
from seqbench.cells.fused import (
    WORKSPACE,
    bias_sum,
    check_norms,
    fast_tanh,
    input_products,
    record_norms,
    saves,
    sigmoid_backward,
    split_products,
    stacked_inputs,
    tanh_backward,
)


def lstm_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """(h', c') from the summed pre-activations (B, 4H), gates i, f, g, o, and c."""
    ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
    c = torch.sigmoid(forgetgate) * c + torch.sigmoid(ingate) * torch.tanh(cellgate)
    return torch.sigmoid(outgate) * torch.tanh(c), c


class LSTM(Cell):
    """PyTorch's LSTM (see the module docstring); states h and c."""

    name = "lstm"
    states = ("h", "c")
    recurrent_blocks = 4
    gate_bias = {"input": 0, "forget": 1}
    norms = ("layer", "batch", "batch_recurrent")
    builtin = "LSTM"

    def parameter_shapes(self):
        G, H, I = 4 * self.hidden_size, self.hidden_size, self.input_size
        return {"weight_ih": (G, I), "weight_hh": (G, H), "bias_ih": (G,), "bias_hh": (G,)}

    def step(self, params, x_t, state):
        h, c = state
        p = params
        gates = x_t @ p["weight_ih"].t() + p["bias_ih"] + h @ p["weight_hh"].t() + p["bias_hh"]
        h, c = lstm_update(gates, c)
        return h, (h, c)

    def layer(self, params, x, state, norms=None):
        h, c = state
        p, norms = params, norms or {}
        w_hh_t = p["weight_hh"].t()
        outputs = []
        for t, xp_t in enumerate(input_projection(x, p["weight_ih"],
                                                  p["bias_ih"] + p["bias_hh"])):
            h, c = lstm_update(torch.addmm(xp_t, h, w_hh_t), c)
            record_grad_norm(c, norms.get("c"), t)
            record_grad_norm(h, norms.get("h"), t)
            outputs.append(h)
        return torch.stack(outputs), (h, c)

    def fast_layer(self, params, x, state, norms=None):
        p, norms = params, norms or {}
        # on CUDA, float32: the Triton kernels where available (seqbench.cells.triton)
        layer = triton_path.lstm_layer if triton_path.wanted(x) else fused_layer
        out, h, c = layer(x, *state, p["weight_ih"], p["weight_hh"], p["bias_ih"],
                          p["bias_hh"], norms_h=norms.get("h"), norms_c=norms.get("c"))
        return out, (h, c)

    @classmethod
    def kernel(cls, device):
        if triton_path.label(device):  # CUDA: seqbench.cells.triton's kernels
            return triton_path.label(device)
        if device.type == "cpu":
            from seqbench import native

            if native.available():  # float32 LSTM steps in seqbench.native's compiled kernel
                return "hand (fused, native)"
        return "hand (fused)"


# ------------------------------------------------------------------------------------------------
# LSTM (PyTorch's equations, gates i, f, g, o)
#   c_t = f * c_{t-1} + i * g        h_t = o * tanh(c_t)
# ------------------------------------------------------------------------------------------------


def _stacked_weights(w_ih: Tensor, w_hh: Tensor, bias: Tensor | None) -> Tensor:
    parts = [w_hh, w_ih] if bias is None else [w_hh, w_ih, bias.unsqueeze(1)]
    return torch.cat(parts, dim=1)


def _lstm_forward(x, h0, c0, w_ih, w_hh, bias, out: Tensor,
                  K: Tensor | None) -> tuple[Tensor, Tensor]:
    """Fills out (T, B, H) with h_t and, if given, K (T, 6, B, H) with the factors the backward
    multiplies by: [f, g i(1-i), c_{t-1} f(1-f), i (1-g^2), tanh(c) o(1-o), o (1-tanh^2(c))].
    Returns c_T and the stacked inputs [h_{t-1}, x_t, 1] (T, B, H+I+1), a pooled buffer.

    Per step the gates are computed gate-major, (4, B, H), by one batched product of the stacked
    inputs with the four gates' stacked weights, so that every pointwise op works on contiguous
    (B, H) blocks (strided slices of a (B, 4H) row cost 3x as much here)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    hx = stacked_inputs(x, h0, bias is not None)
    w = _stacked_weights(w_ih, w_hh, bias).view(4, H, -1)
    w[2] *= 2  # g = tanh(a) = 2 sigmoid(2a) - 1: the cell gate's pre-activation, doubled (exact)
    w4 = w.transpose(1, 2)  # (4, H+I+1, H): gate k's weights, transposed
    kernels = _native_lstm(x)  # the same loop compiled (seqbench.native), or the torch calls
    loop = kernels.forward_loop if kernels is not None else _lstm_forward_loop
    return loop(hx, w4, c0.contiguous(), out, K), hx


def _lstm_forward_loop(hx: Tensor, w4: Tensor, c0: Tensor, out: Tensor, K: Tensor | None) -> Tensor:
    """The forward loop over the steps (seqbench.native's forward_loop does the same): fills the
    h block of hx's rows 1.., out and K; returns c_T. Slot 4 of the per-step buffer holds
    c_{t-1}, next to g, so that one op computes [g, c_{t-1}] i(1-i), f(1-f)."""
    T, B, n_in = hx.shape
    H = out.shape[2]
    x = out  # device and dtype for the buffers
    hx_in = [r.expand(4, B, n_in) for r in hx.unbind(0)]
    hx_h = hx[:, :, :H].unbind(0)
    outs = out.unbind(0)
    bufs = [x.new_empty(5, B, H) for _ in range(2)]  # [i, f, g, o, c_{t-1}], ping-pong
    views = [(s[:4], s[:2], *s.unbind(0), s[2::2]) for s in bufs]
    bufs[0][4] = c0
    c_last, tc = x.new_empty(B, H), x.new_empty(B, H)  # c_T; tanh(c_t)
    minus_one = x.new_full((), -1.0)
    if K is not None:  # per-step views of the factors' blocks
        k_f, k_if, k_g, k_o, k_c = (K[:, j].unbind(0) for j in (0, slice(1, 3), 3, 4, 5))
    for t in range(T):
        gates, i_f, i, f, g, o, c, g_c = views[t % 2]
        torch.bmm(hx_in[t], w4, out=gates)
        gates.sigmoid_()  # (4, B, H): one op, still below the size torch runs on two threads
        torch.add(minus_one, g, alpha=2, out=g)  # tanh(a) = 2 sigmoid(2a) - 1
        c_t = bufs[(t + 1) % 2][4] if t < T - 1 else c_last  # the next step's c_{t-1} slot
        torch.mul(f, c, out=c_t)
        c_t.addcmul_(i, g)
        fast_tanh(c_t, tc, minus_one)
        h_t = outs[t]
        torch.mul(o, tc, out=h_t)
        if t < T - 1:
            hx_h[t + 1].copy_(h_t)
        if K is not None:
            k_f[t].copy_(f)
            sigmoid_backward(g_c, i_f, grad_input=k_if[t])
            tanh_backward(i, g, grad_input=k_g[t])
            sigmoid_backward(tc, o, grad_input=k_o[t])
            tanh_backward(o, tc, grad_input=k_c[t])
    return c_last


def _lstm_backward_loop(g_out: Tensor, g_hn: Tensor, g_cn: Tensor, w_hh: Tensor, K: Tensor,
                        D: Tensor, dh_all: Tensor, dc_all: Tensor) -> None:
    """The backward loop over the steps (seqbench.native's backward_loop does the same): fills
    D (T, B, 5H) with [dc f, di, df, dg, do] of every step, and dh_all, dc_all with dh_t, dc_t
    when they have T rows (else they are one step's scratch)."""
    T, B, H = g_out.shape
    # per-step views, made once (a Python-level index per step costs more than it looks)
    Dv = D.view(T, B, 5, H).transpose(1, 2)  # (T, 5, B, H) view of D
    K_4, K_o, K_c = K[:, 0:4].unbind(0), K[:, 4].unbind(0), K[:, 5].unbind(0)
    D_4, D_o, D_cf = Dv[:, 0:4].unbind(0), Dv[:, 4].unbind(0), Dv[:, 0].unbind(0)
    dG, gY = D[..., H:].unbind(0), g_out.unbind(0)
    dhs = dh_all.unbind(0) if len(dh_all) == T else [dh_all[0]] * T
    dcs = dc_all.unbind(0) if len(dc_all) == T else [dc_all[0]] * T
    for t in range(T - 1, -1, -1):
        dh, dc = dhs[t], dcs[t]
        if t == T - 1:
            torch.add(gY[t], g_hn, out=dh)
            torch.addcmul(g_cn, dh, K_c[t], out=dc)
        else:
            torch.addmm(gY[t], dG[t + 1], w_hh, out=dh)
            torch.addcmul(D_cf[t + 1], dh, K_c[t], out=dc)
        torch.mul(K_4[t], dc, out=D_4[t])  # [dc f, di, df, dg] = dc * [f, Ki, Kf, Kg]
        torch.mul(dh, K_o[t], out=D_o[t])


def _native_lstm(x: Tensor):
    """seqbench.native's compiled LSTM steps for float32 on the CPU, or None (torch calls)."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return None
    from seqbench import native

    return native.lstm_kernels()


class LSTMFunction(torch.autograd.Function):
    """One LSTM layer over a whole sequence; see the module docstring.

    Saved: the factors K (T, 6, B, H) of ``_lstm_forward`` and the stacked inputs. A backward step
    is then: dh_t = dL/dh_t + dgates_{t+1} W_hh;  dc_t = dc_{t+1} f_{t+1} + dh_t A_t;
    [dc_t f_t, di, df, dg] = dc_t * K_t[0:4];  do = dh_t K_t[4]; and after the loop one product
    dgates^T [h_{t-1}, x_t, 1] gives dW_hh, dW_ih and the bias gradient.
    """

    @staticmethod
    def forward(ctx, save: bool, x, h0, c0, w_ih, w_hh, b_ih, b_hh, norms_h, norms_c):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        out = x.new_empty(T, B, H)
        K = WORKSPACE.take((T, 6, B, H), x) if save else None
        c_n, hx = _lstm_forward(x, h0, c0, w_ih, w_hh, bias_sum(b_ih, b_hh), out, K)
        if save:
            ctx.buffers = K, hx
        else:
            WORKSPACE.give(hx)
        ctx.norms = norms_h, norms_c
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        return out, out[T - 1].clone(), c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_hn, g_cn):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        T, B, n_in = x.shape
        H = w_hh.shape[1]
        buffers, ctx.buffers = getattr(ctx, "buffers", None), None
        if buffers is None:  # a second backward through this graph: recompute
            K = WORKSPACE.take((T, 6, B, H), x)
            _, hx = _lstm_forward(x, h0, c0, w_ih, w_hh, bias_sum(b_ih, b_hh),
                                  x.new_empty(T, B, H), K)
        else:
            K, hx = buffers
        need = ctx.needs_input_grad  # (save, x, h0, c0, w_ih, w_hh, b_ih, b_hh, norms_h, norms_c)
        D = WORKSPACE.take((T, B, 5 * H), x)  # per step: [dc_t f_t, di, df, dg, do]
        dgates = D[..., H:]
        # dh_t, dc_t (the total gradients arriving at h_t, c_t): kept for every t only when
        # their norms are asked for, else one step's scratch
        norms_h, norms_c = ctx.norms
        dh_all = WORKSPACE.take((T, B, H), x) if norms_h is not None else None
        dc_all = WORKSPACE.take((T, B, H), x) if norms_c is not None else None
        kernels = _native_lstm(x)  # the same loop compiled (seqbench.native), or the torch calls
        loop = kernels.backward_loop if kernels is not None else _lstm_backward_loop
        loop(g_out, g_hn, g_cn, w_hh, K, D,
             dh_all if dh_all is not None else h0.new_empty(1, B, H),
             dc_all if dc_all is not None else h0.new_empty(1, B, H))
        for grads, norms in ((dh_all, norms_h), (dc_all, norms_c)):
            if norms is not None:
                record_norms(grads, norms)
        dx = dw_ih = dw_hh = db_ih = db_hh = None
        if any(need[4:8]):
            dw_ih, dw_hh, db_ih, db_hh = split_products(input_products(dgates, hx), H, n_in,
                                                         need[4:8])
        if need[1]:
            dx = (dgates.reshape(T * B, 4 * H) @ w_ih).view(T, B, n_in)
        dh0 = dgates[0] @ w_hh if need[2] else None
        dc0 = D[0, :, :H].clone() if need[3] else None
        WORKSPACE.give(K, hx, D, dh_all, dc_all)
        return None, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, None, None


def fused_layer(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
         b_ih: Tensor | None = None, b_hh: Tensor | None = None, norms_h: Tensor | None = None,
         norms_c: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM layer over a sequence: returns (outputs (T, B, H), h_T, c_T)."""
    check_norms(norms_h, x, "norms_h")
    check_norms(norms_c, x, "norms_c")
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    return LSTMFunction.apply(saves(*args), *args, norms_h, norms_c)

