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
