"""Gradient flossing (Engelken 2023): a regularizer that pushes the largest Lyapunov exponents of
the network's forward dynamics toward zero, differentiated through the QR method.

For each layer of the recurrent stack (README, "Remedies"; docs/references.md section 6):

    lambda_i = (1 / n) sum_{t >= warmup} log |R_t[i, i]|,   J_t Q_{t-1} = Q_t R_t,

the k largest exponents of one sequence by the QR method (as seqbench.dynamics.measures.lyapunov
measures them, README "Dynamics"), but with the layer's **live** parameters: the trajectory s_t,
the Jacobian-vector products J_t Q (``torch.func.jvp`` of the cell's own ``step``, vmapped over
the k directions) and the QR decompositions are all recorded by autograd, so ``loss.backward()``
reaches the model's parameters. The flossing loss is

    L_floss = sum over layers of mean over the sequences and the k exponents of lambda_i^2,

the mean over the k exponents as the author's code takes it (mean((lambda - 0)^2)); training adds
``floss_weight * L_floss`` to the task loss for the first ``floss_steps`` steps (seqbench.train).

Choices (docs/references.md section 6 says which are the paper's):

- every layer is flossed, each its own k exponents: a stack's exponents are its layers' together
  (README "Dynamics"), and a layer's map depends on the layers below through its input, which
  is left attached (their parameters get the gradient of the layers above too);
- built-in modules (``--impl builtin``) are flossed through their hand twin's cells (the same
  step function, seqbench.dynamics.state.hand_twin) evaluated with the built-in module's **own**
  parameter tensors (torch.nn names them as the twin does: ``weight_hh_l0``, ...), so the
  gradient lands on the parameters the optimizer updates; the twin's copies are never used;
- cells with in-cell normalization are refused (no per-sequence map: seqbench.dynamics.state);
- the orthonormal frame Q_{-1} is the same every flossing step (drawn once per run from the
  ``floss-frame`` seed stream), as the author's code re-seeds it on every call; the first
  ``warmup`` = S // 10 steps of a flossing sequence of S steps align the frame and are not
  averaged (the author's transient is a tenth of the flossing pass plus 10 steps);
- the flossing sequences are the task's own, ``FLOSS_BATCH`` of them per step from the run's
  ``floss`` seed stream (never the training batch: the author draws them apart too).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqbench.cells.stack import HandRNN
from seqbench.dynamics.state import LayerMap, hand_stack, layer_maps, next_input
from seqbench.errors import ConfigError

#: sequences per flossing step (the author's code flosses on one; a few average the finite-time
#: exponents of the short sequences seqbench's quick profiles train on)
FLOSS_BATCH = 8
#: |R_t[i, i]| below this is taken as this (log 0 = -inf would make the loss infinite)
MIN_DIAG = 1e-12
#: the seed streams of the flossing sequences and of the fixed initial frame
FLOSS_STREAM = "floss"
FRAME_STREAM = "floss-frame"


def warmup_steps(steps: int) -> int:
    """Steps of a flossing sequence of ``steps`` steps not averaged over (the frame aligns)."""
    return steps // 10


class Flosser:
    """The flossing loss of one model: the layer maps (structure), the fixed initial frames and
    the live parameters, read from the model on every call."""

    def __init__(self, model: nn.Module, k: int, batch: int, frame_generator: torch.Generator):
        if int(k) < 1:
            raise ConfigError(f"floss must be at least 1 exponent, got {k}")
        rnn = model.rnn if hasattr(model, "rnn") else model
        self.source = rnn  # whose parameters are flossed
        # the cells' step functions and state layout; for a built-in module its hand twin, whose
        # own (copied) parameters are never read: ``live_params`` takes the module's
        self.stack: HandRNN = hand_stack(model)
        ref = next(rnn.parameters())
        like = torch.zeros(1, batch, 1, dtype=ref.dtype, device=ref.device)
        self.maps: list[LayerMap] = layer_maps(self.stack, batch, like)
        self.k = [min(int(k), m.dim) for m in self.maps]
        self.frames = [_frame(batch, m.dim, kk, frame_generator, ref.dtype, ref.device)
                       for m, kk in zip(self.maps, self.k)]

    def live_params(self, layer: int) -> dict[str, Tensor]:
        """The layer's parameters as the model holds them now (attached to autograd)."""
        names = self.stack._names[layer]
        if isinstance(self.source, HandRNN):
            return self.source.layer_params(layer)
        return {name: getattr(self.source, f"{name}_l{layer}") for name in names}

    def exponents(self, x: Tensor) -> list[Tensor]:
        """Per layer, the (B, k) largest Lyapunov exponents along ``x`` (S, B, I), per sequence,
        differentiable with respect to the model's parameters (unsorted: column i is the i-th
        direction of the frame, the i-th largest once the frame has aligned)."""
        S = x.shape[0]
        warmup = warmup_steps(S)
        out = []
        layer_input = x
        for m, frame in zip(self.maps, self.frames):
            live = LayerMap(m.layer, m.cell, self.live_params(m.layer), m.widths,
                            m.complex_states, m.init.to(x.dtype))
            lam, outs = layer_exponents(live, layer_input, frame, warmup)
            out.append(lam)
            layer_input = next_input(self.stack, m.layer, layer_input, outs)
        return out

    def loss(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(L_floss, the per-layer exponents): the sum over layers of the mean of lambda_i^2."""
        lams = self.exponents(x)
        return sum(lam.pow(2).mean() for lam in lams), lams


def _frame(batch: int, dim: int, k: int, generator: torch.Generator, dtype, device) -> Tensor:
    """(B, D, k) orthonormal columns, the Q factor of a Gaussian matrix (float64, then cast)."""
    z = torch.randn(batch, dim, k, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(z)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return q.to(device=device, dtype=dtype)


def layer_exponents(m: LayerMap, x: Tensor, frame: Tensor, warmup: int = 0
                    ) -> tuple[Tensor, Tensor]:
    """The QR method along ``x`` (S, B, I) from the frame (B, D, k), every operation recorded by
    autograd: ((B, k) exponents, (S, B, H) outputs for the layer above). ``m.params`` are the
    parameters differentiated (pass live ones)."""
    S = x.shape[0]
    warmup = min(max(int(warmup), 0), S - 1)
    q = frame
    s = m.init
    logs = None
    outs = []
    for t, x_t in enumerate(x.unbind(0)):
        z = m.pushforward(s, x_t)(q.permute(2, 0, 1))  # (k, B, D): J_t Q_{t-1}
        s, y = m.step(s, x_t)
        outs.append(y)
        q, r = torch.linalg.qr(z.permute(1, 2, 0))
        if t >= warmup:
            log_diag = torch.log(torch.diagonal(r, dim1=-2, dim2=-1).abs().clamp_min(MIN_DIAG))
            logs = log_diag if logs is None else logs + log_diag
    return logs / (S - warmup), torch.stack(outs)
