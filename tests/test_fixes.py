"""The remedies for vanishing gradients: each option changes what it claims, and keeps parity."""

import math

import pytest
import torch
from click.testing import CliRunner

from seqbench import seeding
from seqbench.cells import CellConfig
from seqbench.cli import cli
from seqbench.errors import ConfigError
from seqbench.model import build_model
from seqbench.normcells import BN_GAIN_INIT, NormRNN
from seqbench.tasks import make_task
from seqbench.train import clip_gradients

H = 16


def model(cell="rnn", impl="hand", seq_len=20, task="delayed_recall", **options):
    return build_model(make_task(task), CellConfig(cell=cell, impl=impl, hidden=H, **options),
                       init_seed=3, seq_len=seq_len)


def blocks(w):
    return w.detach().split(H, dim=0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_identity_init_is_identity_with_zero_recurrent_biases(cell):
    rnn = model(cell, init="identity", layers=2).rnn
    for layer in range(2):
        for block in blocks(getattr(rnn, f"weight_hh_l{layer}")):
            assert torch.equal(block, torch.eye(H))
        assert not getattr(rnn, f"bias_ih_l{layer}").any()
        assert not getattr(rnn, f"bias_hh_l{layer}").any()


@pytest.mark.parametrize("gain", [0.5, 1.0, 1.5])
def test_orthogonal_init_has_every_singular_value_equal_to_the_gain(gain):
    rnn = model("lstm", init="orthogonal", init_gain=gain).rnn
    for block in blocks(rnn.weight_hh_l0):
        s = torch.linalg.svdvals(block.double())
        assert torch.allclose(s, torch.full_like(s, gain), atol=1e-5)


def test_xavier_and_he_scales():
    big = 256
    task = make_task("adding")
    for init, expected_std in [("xavier", math.sqrt(2 / (2 * big))), ("he", math.sqrt(2 / big))]:
        m = build_model(task, CellConfig(cell="rnn", impl="hand", hidden=big, init=init), 0, 10)
        assert m.rnn.weight_hh_l0.std().item() == pytest.approx(expected_std, rel=0.03)


def test_forget_bias_sets_that_slice_only():
    plain = model("lstm", impl="builtin").rnn
    rnn = model("lstm", impl="builtin", forget_bias=1.0).rnn
    assert torch.equal(rnn.bias_ih_l0[H : 2 * H], torch.ones(H))
    assert not rnn.bias_hh_l0[H : 2 * H].any()
    for name in ("weight_ih_l0", "weight_hh_l0"):
        assert torch.equal(getattr(rnn, name), getattr(plain, name))
    keep = torch.cat([torch.arange(0, H), torch.arange(2 * H, 4 * H)])
    assert torch.equal(rnn.bias_ih_l0[keep], plain.bias_ih_l0[keep])


def test_chrono_init_from_the_sequence_length():
    seq_len = 50
    t_max = make_task("delayed_recall").total_steps(seq_len)
    lstm = model("lstm", seq_len=seq_len, chrono=True).rnn
    b_f = lstm.bias_ih_l0[H : 2 * H].detach()
    assert torch.all(b_f >= 0) and torch.all(b_f <= math.log(t_max - 1))
    assert torch.equal(lstm.bias_ih_l0[:H], -b_f)
    assert not lstm.bias_hh_l0[: 2 * H].any()
    gru = model("gru", seq_len=seq_len, chrono=True).rnn
    b_z = gru.bias_ih_l0[H : 2 * H].detach()
    assert torch.all(b_z >= 0) and torch.all(b_z <= math.log(t_max - 1)) and b_z.std() > 0
    assert not gru.bias_hh_l0[H : 2 * H].any()


@pytest.mark.parametrize("options", [
    {"cell": "rnn", "init": "xavier"}, {"cell": "rnn", "init": "he", "nonlinearity": "relu"},
    {"cell": "rnn", "init": "identity", "nonlinearity": "relu"},
    {"cell": "rnn", "init": "irnn", "nonlinearity": "relu", "layers": 2},
    {"cell": "rnn", "init": "irnn", "nonlinearity": "relu", "init_gain": 0.9},
    {"cell": "rnn", "init": "orthogonal", "init_gain": 0.9},
    {"cell": "lstm", "forget_bias": 2.0}, {"cell": "lstm", "chrono": True},
    {"cell": "gru", "chrono": True, "init": "orthogonal"},
    {"cell": "lstm", "layers": 3, "residual": True}, {"cell": "gru", "layers": 2, "residual": True},
])
def test_options_keep_builtin_hand_parity(options):
    task = make_task("adding")
    twins = [build_model(task, CellConfig(impl=impl, hidden=H, **options), 5, 30).double()
             for impl in ("builtin", "hand")]
    for (k, v), (k2, v2) in zip(twins[0].state_dict().items(), twins[1].state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    batch = task.sample(30, 4, seeding.generator(0, "train"))
    x = batch.inputs.double()
    outs = [m(x, task.readout_steps(30)) for m in twins]
    losses = [task.loss(o, batch.targets.double()) for o in outs]
    for loss in losses:
        loss.backward()
    assert torch.allclose(outs[0], outs[1], rtol=1e-10, atol=0)
    for p, q in zip(twins[0].parameters(), twins[1].parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-14)


def test_residual_adds_each_upper_layer_input_to_its_output():
    task = make_task("adding")
    stacked = build_model(task, CellConfig(cell="gru", impl="hand", hidden=H, layers=2,
                                           residual=True), 1, 10)
    x = task.sample(10, 3, seeding.generator(0, "train")).inputs
    layer0 = torch.nn.GRU(2, H)
    layer1 = torch.nn.GRU(H, H)
    sd = stacked.rnn.state_dict()
    layer0.load_state_dict({k.replace("_l0", "_l0"): v for k, v in sd.items() if k.endswith("_l0")})
    layer1.load_state_dict({k.replace("_l1", "_l0"): v for k, v in sd.items() if k.endswith("_l1")})
    y0 = layer0(x)[0]
    expected = layer1(y0)[0] + y0
    assert torch.allclose(stacked.hidden_states(x), expected, atol=1e-6)


def _norm_rnn(norm, cell="lstm", max_steps=12):
    torch.manual_seed(0)
    return NormRNN(cell, 4, H, num_layers=1, norm=norm, max_steps=max_steps)


def test_layer_norm_gives_zero_mean_unit_variance_per_sample_before_its_gain():
    rnn = _norm_rnn("layer")
    v = torch.randn(7, 5, 4 * H) * 3 + 2
    out = rnn._norm_all_steps(v, "ih", 0)  # gain 1, bias 0 at init
    assert torch.allclose(out.mean(-1), torch.zeros(7, 5), atol=1e-5)
    assert torch.allclose(out.var(-1, unbiased=False), torch.ones(7, 5), atol=1e-3)
    with torch.no_grad():
        rnn.ln_hh_weight_l0.fill_(2.0)
    step = rnn._norm_step(v[0], "hh", 0, t=0)
    assert torch.allclose(step.std(-1, unbiased=False), torch.full((5,), 2.0), atol=1e-3)


def test_batch_norm_statistics_are_per_step_and_used_in_evaluation():
    rnn = _norm_rnn("batch", max_steps=6)
    assert torch.all(rnn.bn_ih_weight_l0 == BN_GAIN_INIT) and torch.all(rnn.bn_c_bias_l0 == 0)
    # steps with different input statistics get different running statistics
    x = torch.randn(6, 64, 4) * torch.arange(1, 7).view(6, 1, 1) + torch.arange(6).view(6, 1, 1)
    rnn.train()
    rnn(x)
    mean = rnn.bn_ih_mean_l0
    assert mean.shape == (6, 4 * H)
    expected = 0.1 * (x @ rnn.weight_ih_l0.t()).mean(1)  # momentum 0.1 from zero
    assert torch.allclose(mean, expected.detach(), atol=1e-5)
    assert not torch.allclose(mean[0], mean[5])
    # in evaluation, a sequence's output no longer depends on the rest of its batch
    rnn.eval()
    alone = rnn(x[:, :1])[0]
    together = rnn(x)[0][:, :1]
    assert torch.allclose(alone, together, atol=1e-6)
    rnn.train()
    assert not torch.allclose(rnn(x[:, :2])[0][:, :1], rnn(x)[0][:, :1], atol=1e-4)


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_clipping_modes(mode):
    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(2)]
    params[0].grad = torch.tensor([3.0, -4.0, 0.5])
    params[1].grad = torch.tensor([0.1, 0.2, -0.3])
    before = torch.cat([p.grad for p in params]).norm().item()
    assert clip_gradients(params, 1.0, mode) == pytest.approx(before)
    g = torch.cat([p.grad for p in params])
    if mode == "norm":
        assert g.norm().item() == pytest.approx(1.0, rel=1e-5)
    else:
        assert g.abs().max().item() == 1.0
        assert g[2].item() == 0.5  # entries inside the range are untouched


@pytest.mark.parametrize("options,message", [
    ({"cell": "gru", "forget_bias": 1.0}, "lstm"),
    ({"cell": "rnn", "chrono": True}, "chrono"),
    ({"cell": "lstm", "chrono": True, "forget_bias": 1.0}, "choose one"),
    ({"cell": "lstm", "residual": True}, "layers >= 2"),
    ({"cell": "lstm", "impl": "builtin", "norm": "batch"}, "hand only"),
    ({"cell": "rnn", "impl": "builtin", "nonlinearity": "leaky_relu"}, "hand only"),
    ({"cell": "rnn", "init": "fancy"}, "allowed"),
    ({"cell": "rnn", "init_gain": 0.0}, "init_gain"),
])
def test_invalid_combinations_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        CellConfig(**options).validate()


def test_run_records_every_option(tmp_path):
    args = ["run", "--task", "delayed_recall", "--seq-len", "6", "--cell", "lstm", "--impl", "hand",
            "--hidden", "8", "--layers", "2", "--residual", "--norm", "layer", "--init", "orthogonal",
            "--init-gain", "0.9", "--forget-bias", "1", "--clip", "0.5", "--clip-mode", "value",
            "--steps", "3", "--out", str(tmp_path), "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    import pandas as pd

    row = pd.read_csv(tmp_path / "runs.csv").iloc[0]
    assert (row["norm"], row["init"], row["init_gain"], row["forget_bias"]) == (
        "layer", "orthogonal", 0.9, 1.0)
    assert bool(row["residual"]) and row["clip_mode"] == "value" and row["clip"] == 0.5


# -- fidelity of the remedies to their papers ---------------------------------------------------


def _randomize_norm_params(rnn, seed=1):
    """Gains and shifts away from 1 and 0, so that a reference that ignores them would fail."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if name.startswith("ln_"):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5 if "weight" in name
                        else torch.randn(p.shape, generator=gen) * 0.3)


def test_layer_norm_rnn_normalizes_the_summed_preactivation_once():
    """Ba et al. 2016, eq. 4: with f the identity and b = 0, h_t = LN(W_hh h_{t-1} + W_ih x_t):
    zero mean and unit variance over the hidden units of the *sum*, which normalizing the two
    projections apart (layer_split) does not give."""
    x = torch.randn(6, 5, 4, dtype=torch.float64)
    outs = {}
    for norm in ("layer", "layer_split"):
        torch.manual_seed(0)
        rnn = NormRNN("rnn", 4, H, nonlinearity="linear", norm=norm).double()
        with torch.no_grad():
            rnn.bias_ih_l0.zero_()
            rnn.bias_hh_l0.zero_()
        outs[norm] = rnn(x)[0]
        if norm == "layer":
            assert [n for n, _ in rnn.named_parameters() if n.startswith("ln_")] == ["ln_a_weight_l0"]
            h_prev = torch.cat([torch.zeros(1, 5, H, dtype=x.dtype), outs[norm][:-1]])
            a = x @ rnn.weight_ih_l0.t() + h_prev @ rnn.weight_hh_l0.t()
            assert torch.allclose(outs[norm], torch.nn.functional.layer_norm(a, (H,), eps=1e-5),
                                  atol=1e-10)
    h = outs["layer"]
    assert torch.allclose(h.mean(-1), torch.zeros(6, 5, dtype=h.dtype), atol=1e-12)
    assert torch.allclose(h.var(-1, unbiased=False), torch.ones(6, 5, dtype=h.dtype), atol=1e-3)
    split_var = outs["layer_split"][1:].var(-1, unbiased=False)  # steps with both terms nonzero
    assert split_var.mean() > 1.3  # two normalized terms summed: variance ~2 on average, not 1


def test_layer_norm_rnn_gain_and_shift_are_eq4s():
    torch.manual_seed(0)
    rnn = NormRNN("rnn", 4, H, nonlinearity="relu", norm="layer").double()
    _randomize_norm_params(rnn)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    out = rnn(x)[0]
    h = torch.zeros(3, H, dtype=x.dtype)
    for t in range(5):
        a = x[t] @ rnn.weight_ih_l0.t() + h @ rnn.weight_hh_l0.t()
        normed = (a - a.mean(-1, keepdim=True)) / torch.sqrt(a.var(-1, unbiased=False,
                                                                 keepdim=True) + 1e-5)
        h = torch.relu(rnn.ln_a_weight_l0 * normed + rnn.bias_ih_l0 + rnn.bias_hh_l0)
        assert torch.allclose(out[t], h, atol=1e-12)


def _ln(v, gain, shift):
    return torch.nn.functional.layer_norm(v, v.shape[-1:], gain, shift, eps=1e-5)


def test_layer_norm_lstm_is_the_supplementary_ln_lstm():
    """(i, f, g, o) = LN(W_hh h; a1, b1) + LN(W_ih x; a2, b2) + b, h = o tanh(LN(c; a3, b3))."""
    torch.manual_seed(0)
    rnn = NormRNN("lstm", 4, H, norm="layer").double()
    _randomize_norm_params(rnn)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    out = rnn(x)[0]
    h = c = torch.zeros(3, H, dtype=x.dtype)
    p = dict(rnn.named_parameters())
    for t in range(5):
        gates = (_ln(h @ p["weight_hh_l0"].t(), p["ln_hh_weight_l0"], p["ln_hh_bias_l0"])
                 + _ln(x[t] @ p["weight_ih_l0"].t(), p["ln_ih_weight_l0"], p["ln_ih_bias_l0"])
                 + p["bias_ih_l0"] + p["bias_hh_l0"])
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(_ln(c, p["ln_c_weight_l0"], p["ln_c_bias_l0"]))
        assert torch.allclose(out[t], h, atol=1e-12)


def test_layer_norm_gru_normalizes_gates_and_candidate_apart():
    """Supplementary LN-GRU: per projection, LN over the (r, z) units together and over the
    candidate's n units on their own."""
    torch.manual_seed(0)
    rnn = NormRNN("gru", 4, H, norm="layer").double()
    _randomize_norm_params(rnn)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    out = rnn(x)[0]
    h = torch.zeros(3, H, dtype=x.dtype)
    p = dict(rnn.named_parameters())

    def proj(v, part):
        gain, shift = p[f"ln_{part}_weight_l0"], p[f"ln_{part}_bias_l0"]
        gates, cand = v.split([2 * H, H], -1)
        return (_ln(gates, gain[: 2 * H], shift[: 2 * H]), _ln(cand, gain[2 * H :], shift[2 * H :]))

    for t in range(5):
        (x_rz, x_n), (h_rz, h_n) = proj(x[t] @ p["weight_ih_l0"].t(), "ih"), proj(
            h @ p["weight_hh_l0"].t(), "hh")
        b_ih, b_hh = p["bias_ih_l0"], p["bias_hh_l0"]
        r, z = torch.sigmoid(x_rz + h_rz + b_ih[: 2 * H] + b_hh[: 2 * H]).chunk(2, -1)
        n = torch.tanh(x_n + b_ih[2 * H :] + r * (h_n + b_hh[2 * H :]))
        h = (1 - z) * n + z * h
        assert torch.allclose(out[t], h, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_batch_recurrent_lets_a_batch_constant_input_reach_the_state(cell):
    """The delayed-recall cue is the same one-hot vector for every sequence: plain recurrent batch
    norm subtracts its batch mean and erases it; batch_recurrent (recurrent term only) does not."""
    task, T = make_task("delayed_recall"), 12
    x = task.sample(T, 64, seeding.generator(0, "train")).inputs
    assert torch.equal(x[T], x[T, :1].expand_as(x[T]))  # the cue step is batch-constant
    no_cue = x.clone()
    no_cue[T] = 0
    effect = {}
    for norm in ("batch", "batch_recurrent"):
        torch.manual_seed(0)
        rnn = NormRNN(cell, task.input_size, H, norm=norm, max_steps=T + 1).train()
        effect[norm] = (rnn(x)[0][T] - rnn(no_cue)[0][T]).abs().mean().item()
    assert effect["batch"] < 1e-5  # erased (measured 2e-8 to 5e-7, float32 rounding)
    assert effect["batch_recurrent"] > 0.01  # reaches h_T (measured 0.03-0.11; |h_T| ~0.1-0.3)


def test_batch_recurrent_normalizes_the_recurrent_term_only():
    rnn = _norm_rnn("batch_recurrent")
    names = {n for n, _ in rnn.named_parameters() if n.startswith("bn_")}
    buffers = {n for n, _ in rnn.named_buffers()}
    assert names == {"bn_hh_weight_l0"} and torch.all(rnn.bn_hh_weight_l0 == BN_GAIN_INIT)
    assert buffers == {"bn_hh_mean_l0", "bn_hh_var_l0"}


def test_irnn_init_is_le_2015s_recipe():
    """Identity W_hh, zero biases, every non-recurrent weight from N(0, 0.001^2) (Le et al. 2015,
    section 4: standard deviation 0.001)."""
    big = 128
    m = build_model(make_task("adding"), CellConfig(cell="rnn", impl="builtin", hidden=big,
                                                    layers=2, nonlinearity="relu", init="irnn"),
                    0, 10)
    for layer in range(2):
        assert torch.equal(getattr(m.rnn, f"weight_hh_l{layer}"), torch.eye(big))
        assert not getattr(m.rnn, f"bias_ih_l{layer}").any()
        assert not getattr(m.rnn, f"bias_hh_l{layer}").any()
        w_ih = getattr(m.rnn, f"weight_ih_l{layer}")
        assert w_ih.std().item() == pytest.approx(1e-3, rel=0.10)
        assert abs(w_ih.mean().item()) < 3e-3 / math.sqrt(w_ih.numel())
    assert m.rnn.weight_ih_l1.std().item() == pytest.approx(1e-3, rel=0.03)  # 16,384 draws


def test_identity_init_keeps_pytorchs_input_weights():
    plain = model("rnn", nonlinearity="relu").rnn
    ident = model("rnn", nonlinearity="relu", init="identity").rnn
    assert torch.equal(plain.weight_ih_l0, ident.weight_ih_l0)


def test_spectral_radius_of_the_recurrent_inits_at_h128():
    """He's std sqrt(2/H) starts a tanh RNN with spectral radius ~1.45 (circular law: sqrt(2));
    orthogonal is exactly 1, Xavier (variance 1/H) about 1, PyTorch's default about 0.6."""
    big, task = 128, make_task("adding")

    def radius(init):
        m = build_model(task, CellConfig(cell="rnn", impl="hand", hidden=big, init=init), 0, 10)
        eig = torch.linalg.eigvals(m.rnn.weight_hh_l0.detach().double())
        return eig.abs().max().item(), eig.abs().min().item()

    he, _ = radius("he")
    assert he > 1.3
    ortho_max, ortho_min = radius("orthogonal")
    assert ortho_max == pytest.approx(1.0, abs=1e-5) and ortho_min == pytest.approx(1.0, abs=1e-5)
    xavier, _ = radius("xavier")
    assert 0.9 < xavier < 1.2
    default, _ = radius("default")
    assert default < 0.7


@pytest.mark.parametrize("options,message", [
    ({"cell": "rnn", "init": "irnn"}, "nonlinearity 'relu'"),
    ({"cell": "lstm", "init": "irnn"}, "cell 'rnn'"),
    ({"cell": "gru", "impl": "hand", "norm": "layer_split"}, "not apply to cell 'gru'"),
    ({"cell": "rnn", "impl": "builtin", "norm": "batch_recurrent"}, "hand only"),
])
def test_new_options_reject_what_they_cannot_express(options, message):
    with pytest.raises(ConfigError, match=message):
        CellConfig(**options).validate()


@pytest.mark.parametrize("norm", ["layer", "layer_split", "batch_recurrent"])
def test_new_norms_train_through_the_cli(tmp_path, norm):
    args = ["run", "--task", "delayed_recall", "--seq-len", "6", "--cell", "rnn", "--impl", "hand",
            "--hidden", "8", "--norm", norm, "--steps", "2", "--out", str(tmp_path), "-q"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
