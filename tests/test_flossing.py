"""Gradient flossing (seqbench.flossing): the differentiated QR method against a closed form, its
effect on the largest exponent, the training hook off by default, the options and their row."""

import csv
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from clihelp import invoke

from seqbench import seeding
from seqbench.cells import CellConfig, options_label
from seqbench.cells.stack import HandRNN
from seqbench.config import RunConfig
from seqbench.dynamics import measures as M
from seqbench.dynamics.state import hand_stack, layer_maps
from seqbench.errors import ConfigError
from seqbench.flossing import Flosser, layer_exponents
from seqbench.leaderboard import key_columns
from seqbench.model import build_model
from seqbench.results import RUN_COLUMNS
from seqbench.tasks import make_task
from seqbench.tasks.base import masked_call, sample_split
from seqbench.train import Trainer, clip_gradients, make_optimizer


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def orthogonal(n, seed=0):
    return torch.linalg.qr(torch.randn(n, n, generator=gen(seed), dtype=torch.float64))[0]


# -- the closed form ------------------------------------------------------------------------------


@pytest.mark.parametrize("g", [0.6, 1.4])
def test_gradient_of_orthogonal_linear_rnn_matches_the_closed_form(g):
    """W_hh = g Q (Q orthogonal, linear RNN): every exponent is log g, so the flossing loss
    mean_i lambda_i^2 = (log g)^2 has d/dg = 2 log(g) / g (the sum over k exponents: k times
    that), and autograd through the jvps and the QR decompositions must give it."""
    H, k = 8, 5
    Q = orthogonal(H)
    rnn = HandRNN("rnn", 2, H, 1, "linear").double()
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(g * Q)
    x = torch.randn(30, 3, 2, generator=gen(1), dtype=torch.float64)
    loss, (lam,) = Flosser(rnn, k, 3, gen(2)).loss(x)
    np.testing.assert_allclose(lam.detach().numpy(), math.log(g), atol=1e-10)
    loss.backward()
    # W = g Q: dL/dg = <dL/dW, Q>
    assert float((rnn.weight_hh_l0.grad * Q).sum()) == pytest.approx(2 * math.log(g) / g,
                                                                     rel=1e-8)
    # the same through a scalar g itself, the sum of the k squares: 2 k log(g) / g
    gain = torch.tensor(g, dtype=torch.float64, requires_grad=True)
    m = layer_maps(rnn, 3, x)[0]
    m.params = {**m.params, "weight_hh": gain * Q}
    frame = torch.linalg.qr(torch.randn(3, H, k, generator=gen(3), dtype=torch.float64))[0]
    lam, _ = layer_exponents(m, x, frame)
    (total,) = torch.autograd.grad(lam[0].pow(2).sum(), gain)
    assert float(total) == pytest.approx(2 * k * math.log(g) / g, rel=1e-8)


def test_builtin_modules_are_flossed_through_their_own_parameters():
    """--impl builtin: the hand twin's step with the built-in module's tensors; the loss and the
    gradients are the hand-written model's (both start from the same weights)."""
    task = make_task("adding", None)
    x = sample_split(task, 6, 4, gen(0), "train").inputs
    out = {}
    for impl in ("hand", "builtin"):
        model = build_model(task, CellConfig(cell="lstm", impl=impl, hidden=6, layers=2), 0, 6)
        loss, _ = Flosser(model, 3, 4, gen(1)).loss(x)
        loss.backward()
        out[impl] = (float(loss.detach()), model.rnn.weight_hh_l0.grad, model.rnn.weight_ih_l1.grad)
    assert out["hand"][0] == pytest.approx(out["builtin"][0], rel=1e-6)
    for a, b in zip(out["hand"][1:], out["builtin"][1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# -- the effect ------------------------------------------------------------------------------------


def largest_exponent(model, x) -> float:
    """lambda_1 of the (only) layer, measured by seqbench.dynamics (not by the flossing code)."""
    m = layer_maps(hand_stack(model), x.shape[1], x)[0]
    spectrum, _ = M.lyapunov(m, x, 1, gen(5), warmup=5)
    return float(spectrum.exponents[:, 0].mean())


def test_flossing_moves_the_largest_exponent_of_a_chaotic_rnn_toward_zero():
    """A tanh RNN at orthogonal init with gain 3 is chaotic (lambda_1 > 0); 40 flossed steps bring
    lambda_1 much closer to 0 than 40 unflossed ones (same data, same optimizer)."""
    cell = CellConfig(cell="rnn", impl="hand", hidden=16, init="orthogonal", init_gain=3.0)
    cfg = RunConfig(task="adding", seq_len=20, cell=cell, lr=1e-2, batch_size=8, steps=40,
                    eval_every=40, eval_size=8, test_size=8, until_solved=False)
    task = make_task("adding", None)
    x = sample_split(task, 20, 16, gen(9), "train").inputs
    before = largest_exponent(Trainer(cfg, torch.device("cpu")).model, x)
    after = {}
    for floss in (0, 8):
        trainer = Trainer(replace(cfg, floss=floss, floss_steps=40 if floss else 500),
                          torch.device("cpu"))
        for _ in range(40):
            trainer.train_step()
        after[floss] = largest_exponent(trainer.model, x)
    assert before > 0.1  # chaotic (0.17 here), and 0.21 after 40 unflossed steps
    assert abs(after[8]) < 0.5 * before and abs(after[8]) < 0.5 * abs(after[0]), (before, after)


# -- off by default --------------------------------------------------------------------------------


def test_off_by_default_training_is_the_plain_step_bit_for_bit():
    """floss 0: no flosser, no flossing stream, the checkpoint's keys as before, and the weights
    after 5 steps exactly those of the plain loop (sample, loss, backward, clip, Adam)."""
    cfg = RunConfig(task="adding", seq_len=8, cell=CellConfig(cell="rnn", impl="hand", hidden=8),
                    batch_size=8, steps=5, eval_size=8, test_size=8).validate()
    assert cfg.floss == 0
    trainer = Trainer(cfg, torch.device("cpu"))
    assert trainer.flosser is None and not hasattr(trainer, "floss_gen")
    assert "floss_generator" not in trainer.state_dict()
    for _ in range(5):
        trainer.train_step()

    task = make_task("adding", None)
    model = build_model(task, cfg.cell, seeding.derive_seed(cfg.seed, "init"), cfg.seq_len)
    params = list(model.parameters())
    opt = make_optimizer(cfg.optimizer, params, cfg.lr)
    stream = seeding.generator(cfg.seed, "train")
    for _ in range(5):
        batch = sample_split(task, cfg.seq_len, cfg.batch_size, stream, "train")
        opt.zero_grad(set_to_none=True)
        masked_call(task.loss, model(batch.inputs, task.readout_steps(cfg.seq_len)),
                    batch.targets, batch.mask).backward()
        clip_gradients(params, cfg.clip, cfg.clip_mode)
        opt.step()
    for a, b in zip(trainer.model.parameters(), params):
        assert torch.equal(a, b)


def test_config_ids_without_flossing_are_unchanged():
    """Ids from before the flossing fields (computed then): floss 0 leaves them out."""
    assert RunConfig().config_id() == "c8ae357976a9"
    rnn = RunConfig(task="delayed_recall", seq_len=25, steps=3000, lr=3e-3, label="rnn_tanh",
                    seed=2, cell=CellConfig(cell="rnn", impl="hand", hidden=64))
    assert rnn.config_id() == "cfb5feeff387"
    flossed = replace(rnn, floss=8)
    assert len({flossed.config_id(), replace(flossed, floss_weight=2.0).config_id(),
                replace(flossed, floss_steps=9).config_id(), rnn.config_id()}) == 4
    assert replace(flossed, floss_weight=2).config_id() == \
        replace(flossed, floss_weight=2.0).config_id()  # a TOML 2 is 2.0


def test_a_flossing_run_resumes_bit_identically():
    """The flossing stream is in the checkpoint: 3 steps, save, 3 more == 6 straight."""
    cfg = RunConfig(task="adding", seq_len=6, batch_size=4, steps=6, eval_size=4, test_size=4,
                    cell=CellConfig(cell="gru", impl="hand", hidden=6), floss=3, floss_steps=6)
    straight = Trainer(cfg, torch.device("cpu"))
    for _ in range(6):
        straight.train_step()
    first = Trainer(cfg, torch.device("cpu"))
    for _ in range(3):
        first.train_step()
    resumed = Trainer(cfg, torch.device("cpu"))
    resumed.load_state_dict(first.state_dict())
    for _ in range(3):
        resumed.train_step()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


# -- options ---------------------------------------------------------------------------------------

FAST = ["--task", "adding", "--seq-len", "5", "--cell", "rnn", "--impl", "hand", "--hidden", "8",
        "--steps", "3", "--eval-every", "2", "--eval-size", "16", "--test-size", "16",
        "--batch-size", "8", "--quiet"]


@pytest.mark.parametrize("args,words", [
    (["--floss", "-1"], ["--floss"]),
    (["--floss", "9"], ["floss", "hidden (8)"]),
    (["--floss", "2", "--floss-weight", "0"], ["--floss-weight"]),
    (["--floss", "2", "--floss-weight", "inf"], ["floss_weight", "finite"]),
    (["--floss", "2", "--floss-weight", "nan"], ["floss_weight"]),
    (["--floss", "2", "--floss-steps", "0"], ["--floss-steps"]),
    (["--floss-weight", "2"], ["need floss >= 1"]),
    (["--floss-steps", "10"], ["need floss >= 1"]),
    (["--floss", "2", "--norm", "layer"], ["floss", "--norm layer"]),
], ids=["negative", "above-hidden", "zero-weight", "inf-weight", "nan-weight", "zero-steps",
        "weight-alone", "steps-alone", "norm"])
def test_bad_flossing_options_are_one_line_and_write_nothing(tmp_path, args, words):
    result = invoke(["run", *FAST, *args, "--out", "out"], tmp_path)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("values,words", [
    ({"floss": 1.5}, ["floss must be a whole number"]),
    ({"floss": True}, ["floss must be a whole number"]),
    ({"floss": 2, "floss_weight": "1"}, ["floss_weight"]),
    ({"floss": 2, "floss_steps": 2.0}, ["floss_steps"]),
])
def test_bad_flossing_spec_values_are_refused_in_one_line(values, words):
    with pytest.raises(ConfigError) as e:
        RunConfig(**values).validate()
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_option_is_in_the_run_row_and_the_leaderboard_keys(tmp_path):
    assert invoke(["run", *FAST, "--out", "out"], tmp_path).exit_code == 0
    result = invoke(["run", *FAST, "--floss", "4", "--floss-weight", "0.5", "--floss-steps", "2",
                     "--out", "out"], tmp_path)
    assert result.exit_code == 0, result.output
    plain, flossed = read_csv(tmp_path / "out" / "runs.csv")
    assert list(flossed) == RUN_COLUMNS
    assert (plain["floss"], plain["floss_weight"], plain["floss_steps"]) == ("", "", "")
    assert (flossed["floss"], flossed["floss_weight"], flossed["floss_steps"]) == ("4", "0.5", "2")
    assert options_label(plain) == "" and options_label(flossed) == "flossing 4 (weight 0.5, 2 steps)"
    assert {"floss", "floss_weight", "floss_steps"} <= set(key_columns(RUN_COLUMNS))
