"""seqbench.cells.triton: the per-step Triton kernels of the rnn, lstm and gru against torch.nn's
modules and the fused torch path: outputs, final states, every gradient and the probe's per-step
norms, float32.

Without a GPU the kernels run under Triton's interpreter on CPU tensors (small sizes: T <= 6,
B <= 3, H <= 8, and one multi-tile case), where Triton is installed; with a CUDA device they also
run compiled (device "cuda"). The dispatch tests need neither.

Tolerances (float32, relative: ||a - b|| / ||b|| over a whole tensor): 1e-5 on the CPU (the
kernels' products sum in other orders than torch's, and tanh / sigmoid are computed from
exp(-|x|): measured 1e-7 .. 4e-7 here); 1e-4 on CUDA (as tests/test_fused.py against cuDNN).
"""

import importlib.util
import types

import pytest
import torch

from seqbench import seeding
from seqbench.cells import CellConfig, cell_class, elman, gru, lstm
from seqbench.cells import triton as tk
from seqbench.cells.stack import HandRNN, builtin_module
from seqbench.model import build_model
from seqbench.probe import probe_builtin, probe_hand
from seqbench.provenance import kernel, resolve_device
from seqbench.tasks import make_task

HAVE_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(
    not HAVE_TRITON, reason="triton is not installed (pip install 'seqbench[triton]'); "
    "its interpreter runs these kernels on the CPU")
CUDA = HAVE_TRITON and torch.cuda.is_available() and tk.used_on(torch.device("cuda"))
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])
TOL = {"cpu": 1e-5, "cuda": 1e-4}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
FUNCTIONS = [("rnn", a) for a in cell_class("rnn").nonlinearities] + [("lstm", "tanh"),
                                                                      ("gru", "tanh")]
IDS = [f"{c}-{a}" for c, a in FUNCTIONS]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype
    num = (a.double() - b.double()).norm().item()
    den = b.double().norm().item()
    return num / den if den > 0 else num


def _device(name: str) -> torch.device:
    return resolve_device("cuda") if name == "cuda" else torch.device("cpu")  # TF32 off on CUDA


def layer_inputs(cell, T=5, B=3, I=3, H=8, bias=True, device="cpu", seed=0):
    """One layer's tensors (float32, all requiring grad) and (T, B) float64 norm recorders."""
    gen = torch.Generator().manual_seed(seed)
    G = GATES[cell]

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen)).to(device).requires_grad_()

    x, h0, c0 = rand(T, B, I), rand(B, H), rand(B, H)
    w_ih, w_hh = rand(G * H, I), rand(G * H, H, scale=0.5)
    b_ih, b_hh = (rand(G * H), rand(G * H)) if bias else (None, None)
    n_h = torch.zeros(T, B, dtype=torch.float64, device=device)
    n_c = torch.zeros(T, B, dtype=torch.float64, device=device) if cell == "lstm" else None
    return [x, h0, c0, w_ih, w_hh, b_ih, b_hh], n_h, n_c


def run_layer(path, cell, act, tensors, n_h, n_c):
    """(outputs, final states...) of one layer through ``path``: "triton" or "fused"."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = tensors
    if cell == "lstm":
        fn = tk.lstm_layer if path == "triton" else lstm.fused_layer
        return fn(x, h0, c0, w_ih, w_hh, b_ih, b_hh, norms_h=n_h, norms_c=n_c)
    if cell == "gru":
        fn = tk.gru_layer if path == "triton" else gru.fused_layer
        return fn(x, h0, w_ih, w_hh, b_ih, b_hh, norms_h=n_h)
    fn = tk.rnn_layer if path == "triton" else elman.fused_layer
    return fn(x, h0, w_ih, w_hh, b_ih, b_hh, act, norms_h=n_h)


def loss_of(results) -> torch.Tensor:
    """A loss that weighs every output and every final state differently."""
    gen = torch.Generator().manual_seed(7)
    return sum((r * torch.randn(r.shape, generator=gen).to(r.device)).sum() for r in results)


def grads_and_norms(path, cell, act, **kw):
    tensors, n_h, n_c = layer_inputs(cell, **kw)
    results = run_layer(path, cell, act, tensors, n_h, n_c)
    used = [t for k, t in enumerate(tensors) if t is not None and (cell == "lstm" or k != 2)]
    grads = torch.autograd.grad(loss_of(results), used)
    return [r.detach() for r in results], grads, [n for n in (n_h, n_c) if n is not None]


# -- the Functions against the fused torch path ---------------------------------------------------


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell,act,bias", [(c, a, True) for c, a in FUNCTIONS]
                         + [("rnn", "tanh", False), ("lstm", "tanh", False), ("gru", "tanh", False)],
                         ids=[f"{i}-bias" for i in IDS] + ["rnn-tanh-nobias", "lstm-nobias",
                                                           "gru-nobias"])
def test_layer_matches_fused(cell, act, bias, device):
    """Outputs, final states, the gradients of x, h0 (c0), W_ih, W_hh, b_ih, b_hh, and the
    recorded norms ||dL/dh_t|| (||dL/dc_t||) of every step."""
    dev = _device(device)
    got = grads_and_norms("triton", cell, act, bias=bias, device=dev)
    want = grads_and_norms("fused", cell, act, bias=bias, device=dev)
    for a, b in zip(got[0] + list(got[1]) + got[2], want[0] + list(want[1]) + want[2]):
        assert rel_err(a, b) < TOL[device]
    assert all((n > 0).all() for n in got[2])


@needs_triton
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_several_tiles_and_k_blocks(cell, monkeypatch):
    """Batch rows and hidden units over 2 x 2 programs and the products over several K blocks
    (16-wide blocks, B = 17, H = 20): the masks at the tiles' edges."""
    monkeypatch.setenv(tk.ENV_BLOCKS, "16,16,16,1")
    kw = dict(T=3, B=17, H=20, I=2, seed=4)
    got = grads_and_norms("triton", cell, "tanh", **kw)
    want = grads_and_norms("fused", cell, "tanh", **kw)
    for a, b in zip(got[0] + list(got[1]) + got[2], want[0] + list(want[1]) + want[2]):
        assert rel_err(a, b) < TOL["cpu"]


@needs_triton
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_second_backward_and_no_grad(cell):
    """retain_graph: a second backward gives the same gradients; a no-grad forward the same
    outputs."""
    tensors, n_h, n_c = layer_inputs(cell, T=4)
    results = run_layer("triton", cell, "tanh", tensors, n_h, n_c)
    used = [t for k, t in enumerate(tensors) if t is not None and (cell == "lstm" or k != 2)]
    loss = loss_of(results)
    first = torch.autograd.grad(loss, used, retain_graph=True)
    second = torch.autograd.grad(loss, used)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    with torch.no_grad():
        again = run_layer("triton", cell, "tanh", tensors, None, None)
    for a, b in zip(results, again):
        assert torch.equal(a, b)


@needs_triton
def test_float32_only():
    tensors, _, _ = layer_inputs("gru", T=2)
    with pytest.raises(TypeError, match="float32 only"):
        tk.gru_layer(*[t.double() for k, t in enumerate(tensors) if k != 2])
    assert not tk.wanted(tensors[0].double())


#: one variant of every kernel: its compile-time options
COMPILED = {
    "rnn_forward_step": dict(ACT=0), "rnn_backward_step": dict(ACT=1, HAS_NEXT=True),
    "lstm_forward_step": {}, "lstm_backward_step": dict(HAS_NEXT=True),
    "gru_forward_step": dict(HAS_BIAS=True), "gru_backward_step": dict(HAS_NEXT=True),
}


@needs_triton
def test_kernels_compile_for_a_gpu(tmp_path, monkeypatch):
    """The interpreter runs what the GPU compiler may refuse (a global that is not a constexpr
    object, a tile below tl.dot's 16): every kernel is compiled here to a cubin for sm_90 (an
    H100 / H200), which needs no GPU."""
    import inspect

    import triton

    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as e:  # these moved between Triton versions
        pytest.skip(f"no ahead-of-time compile API in this Triton ({e})")
    if "nvidia" not in getattr(triton.backends, "backends", {}):
        pytest.skip("this Triton has no NVIDIA backend")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    k = tk.kernels_for(torch.device("cuda"))
    bb, bh, bk, num_warps = tk.DEFAULT_BLOCKS
    for name, options in COMPILED.items():
        fn = getattr(k, name)
        params = list(inspect.signature(fn.fn).parameters)
        consts = dict(options, BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, PRECISION="ieee")
        sig = {p: "constexpr" if p in consts else "i32" if p in ("B", "H") else "*fp32"
               for p in params}
        try:
            src = ASTSource(fn, sig, constexprs={(params.index(p),): v for p, v in consts.items()})
        except TypeError as e:  # the constexprs' form changed between Triton versions
            pytest.skip(f"another ASTSource signature in Triton {triton.__version__} ({e})")
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                                  options=dict(num_warps=num_warps, enable_fp_fusion=True))
        assert compiled.asm["cubin"], name


# -- HandRNN through the kernels against torch.nn -------------------------------------------------


@pytest.fixture
def force_triton(monkeypatch):
    """Route float32 layers of every device through the Triton Functions (on the CPU: the
    interpreter), counting the calls."""
    calls = []

    def wanted(x):
        calls.append(x.device.type)
        return x.dtype == torch.float32

    monkeypatch.setattr(tk, "wanted", wanted)
    return calls


BUILTIN = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode,nonlinearity", BUILTIN, ids=[f"{m}-{n}" for m, n in BUILTIN])
def test_handrnn_matches_builtin(mode, nonlinearity, device, force_triton):
    """HandRNN (2 layers, run by the kernels) against torch.nn.RNN / LSTM / GRU with the same
    weights: outputs, final states, the gradients of the input, the initial states and every
    parameter."""
    dev = _device(device)
    I, H, B, T, layers = 3, 8, 3, 6, 2
    torch.manual_seed(0)
    ref = builtin_module(mode, I, H, layers, nonlinearity).to(dev)
    hand = HandRNN(mode, I, H, layers, nonlinearity).to(dev)
    hand.load_state_dict(ref.state_dict())
    gen = torch.Generator().manual_seed(1)

    def inputs():
        x = torch.randn(T, B, I, generator=gen).to(dev).requires_grad_()
        states = [torch.randn(layers, B, H, generator=gen).to(dev).requires_grad_()
                  for _ in range(2 if mode == "lstm" else 1)]
        return x, states

    x, states = inputs()
    x2, states2 = (x.detach().clone().requires_grad_(),
                   [s.detach().clone().requires_grad_() for s in states])

    def run(module, x, states):
        out, final = module(x, tuple(states) if mode == "lstm" else states[0])
        final = list(final) if mode == "lstm" else [final]
        loss_of([out, *final]).backward()
        return [out.detach(), *[f.detach() for f in final], x.grad, *[s.grad for s in states]]

    want = run(ref, x, states)
    got = run(hand, x2, states2)
    assert force_triton.count(dev.type) == layers
    for a, b in zip(got, want):
        assert rel_err(a, b) < TOL[device]
    ref_params = dict(ref.named_parameters())
    for name, p in hand.named_parameters():
        assert rel_err(p.grad, ref_params[name].grad) < TOL[device], name


@needs_triton
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_probe_norms_match_builtin_probe(cell, device, monkeypatch):
    """seqbench.probe on a hand model run by the kernels (||dL/dh_t|| and the LSTM's ||dL/dc_t||
    recorded in its one backward) against the built-in twin's exact chunked probe and against
    the hand model on the fused torch path."""
    dev = _device(device)
    task, T = make_task("delayed_recall"), 6
    twins = [build_model(task, CellConfig(cell=cell, impl=impl, hidden=8), 0, T).to(dev)
             for impl in ("builtin", "hand")]
    batch = task.sample(T, 3, seeding.generator(0, "probe")).to(dev)
    ref = probe_builtin(twins[0], task, batch, T)[0]
    monkeypatch.setattr(tk, "wanted", lambda x: False)
    fused = probe_hand(twins[1], task, batch, T)[0]
    monkeypatch.setattr(tk, "wanted", lambda x: x.dtype == torch.float32)
    got = probe_hand(twins[1], task, batch, T)[0]
    assert len(got.lags) == len(ref.lags) and (got.grad_norm > 0).all()
    for want in (ref, fused):
        assert rel_err(torch.from_numpy(got.grad_norm[want.lags]),
                       torch.from_numpy(want.grad_norm)) < TOL[device]
    if cell == "lstm":
        assert rel_err(torch.from_numpy(got.cell_grad_norm),
                       torch.from_numpy(fused.cell_grad_norm)) < TOL[device]


# -- dispatch and labels (no Triton needed) -------------------------------------------------------


def fake(device: str, dtype=torch.float32):
    """What ``wanted`` looks at of a tensor: its device and dtype (no GPU needed)."""
    return types.SimpleNamespace(device=torch.device(device), dtype=dtype)


FUSED_LABEL = {"rnn": "hand (fused)", "lstm": "hand (fused)", "gru": "hand (fused)"}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_cuda_dispatch_and_label(cell, monkeypatch):
    """On CUDA the kernels run and are labelled "hand (triton)" only when Triton is importable and
    SEQBENCH_TRITON is not 0; otherwise the fused torch path runs and the label says so. Never on
    the CPU, never for float64."""
    cuda = torch.device("cuda")
    cls = cell_class(cell)
    monkeypatch.setattr(tk, "_device_ok", lambda device: device.type == "cuda")
    monkeypatch.delenv(tk.ENV, raising=False)

    monkeypatch.setattr(tk, "available", lambda: False)  # Triton absent
    assert not tk.wanted(fake("cuda"))
    assert cls.kernel(cuda) == FUSED_LABEL[cell] == kernel(cell, "hand", cuda)

    monkeypatch.setattr(tk, "available", lambda: True)
    assert tk.wanted(fake("cuda")) and not tk.wanted(fake("cuda", torch.float64))
    assert not tk.wanted(fake("cpu"))
    assert cls.kernel(cuda) == "hand (triton)" == kernel(cell, "hand", cuda)
    assert kernel(cell, "builtin", cuda) in ("cudnn", "aten")
    assert "triton" not in cls.kernel(torch.device("cpu"))

    monkeypatch.setenv(tk.ENV, "0")  # switched off
    assert not tk.wanted(fake("cuda"))
    assert cls.kernel(cuda) == FUSED_LABEL[cell]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_fast_layer_falls_back_to_the_fused_path(cell, monkeypatch):
    """fast_layer asks ``wanted``: yes, the Triton Function runs; no (here: Triton absent), the
    fused torch Function."""
    called = []

    def spy(*args, **kwargs):
        called.append(args)
        raise RuntimeError("the Triton path ran")

    for name in ("rnn_layer", "lstm_layer", "gru_layer"):
        monkeypatch.setattr(tk, name, spy)
    torch.manual_seed(0)
    hand = HandRNN(cell, 2, 4)
    x = torch.randn(3, 2, 2)
    real_wanted = tk.wanted
    monkeypatch.setattr(tk, "wanted", lambda x: True)
    with pytest.raises(RuntimeError, match="the Triton path ran"):
        hand(x)
    assert len(called) == 1
    monkeypatch.setattr(tk, "wanted", real_wanted)
    monkeypatch.setattr(tk, "available", lambda: False)
    monkeypatch.setattr(tk, "_device_ok", lambda device: True)
    out, _ = hand(x)
    assert len(called) == 1 and out.shape == (3, 2, 4)


def test_blocks_from_the_environment(monkeypatch):
    monkeypatch.delenv(tk.ENV_BLOCKS, raising=False)
    assert tk.blocks() == tk.DEFAULT_BLOCKS
    monkeypatch.setenv(tk.ENV_BLOCKS, "32,64,16,8")
    assert tk.blocks() == (32, 64, 16, 8)
    for bad in ("8,32,32,4", "16,24,32,4", "16,32", "a,b,c,d"):
        monkeypatch.setenv(tk.ENV_BLOCKS, bad)
        with pytest.raises(ValueError, match=tk.ENV_BLOCKS):
            tk.blocks()
