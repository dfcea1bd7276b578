"""Training: learning, stopping rules, determinism, divergence, builtin/hand agreement, evaluation."""

import dataclasses
import io
import math

import pytest
import torch

import seqbench.train as train_module
from seqbench import seeding
from seqbench.cells import CellConfig
from seqbench.config import RunConfig
from seqbench.errors import ConfigError
from seqbench.model import build_model
from seqbench.tasks import make_task
from seqbench.train import evaluate, train

CPU = torch.device("cpu")



#: LSTM on adding T=10, made fast (docs/references.md section 4 measured ~1,400 steps at H=64, lr 1e-3;
#: with lr 1e-2 and H=32 it takes a few hundred). The budget is generous: the test asserts the
#: solved flag, not a tuned loss value.
FAST_ADDING = RunConfig(task="adding", seq_len=10, cell=CellConfig("lstm", hidden=32), lr=1e-2,
                        batch_size=64, steps=2000, eval_every=50, eval_size=256, seed=0,
                        device="cpu")


def tiny(**kw) -> RunConfig:
    base = dict(task="adding", seq_len=8, cell=CellConfig("lstm", hidden=8), batch_size=16, steps=20,
                eval_every=10, eval_size=64, device="cpu")
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.slow
def test_lstm_solves_adding_t10():
    result = train(FAST_ADDING, CPU)
    assert result.status == "ok"
    assert result.solved is True
    assert result.solved_step is not None and 0 < result.solved_step <= FAST_ADDING.steps
    assert result.solved_step % FAST_ADDING.eval_every == 0
    # until_solved (the default) stops at the first solved evaluation
    assert result.steps_taken == result.solved_step
    assert result.curve[-1].step == result.solved_step
    assert result.val.loss < 0.01  # the stopping criterion, on the validation set
    assert result.final.loss < 0.01  # and the reported one, on the test set
    assert all(p.eval_loss >= 0.01 for p in result.curve[:-1])
    # a solved model beats the memoryless baseline by far; the untrained one does not
    assert result.curve[0].eval_loss > 0.5 * make_task("adding").baseline_loss(10)
    assert result.sequences_seen == result.steps_taken * FAST_ADDING.batch_size
    assert result.throughput > 0


@pytest.mark.slow
def test_no_until_solved_trains_to_the_budget():
    first = train(FAST_ADDING, CPU)
    budget = first.solved_step + 2 * FAST_ADDING.eval_every + 7  # ends between two evaluations
    cfg = dataclasses.replace(FAST_ADDING, steps=budget, until_solved=False)
    result = train(cfg, CPU)
    assert result.steps_taken == budget
    assert result.solved and result.solved_step == first.solved_step  # the first solved evaluation
    steps = [p.step for p in result.curve]
    assert steps == list(range(0, budget, cfg.eval_every)) + [budget]
    assert result.val.loss == result.curve[-1].eval_loss  # the final model on validation
    assert result.final.loss != result.val.loss  # the reported number is the test set's


def test_steps_zero_is_refused():
    # a run of no training step records nothing worth a row (issue 15): steps >= 1
    with pytest.raises(ConfigError, match="steps must be >= 1, got 0"):
        train(tiny(steps=0), CPU)


def test_curve_points_are_means_since_previous_point():
    losses = []
    result = train(tiny(steps=25), CPU, on_step=lambda step, loss: losses.append((step, loss)))
    assert [s for s, _ in losses] == list(range(1, 26))
    assert [p.step for p in result.curve] == [0, 10, 20, 25]
    values = [v for _, v in losses]
    for point, (a, b) in zip(result.curve[1:], [(0, 10), (10, 20), (20, 25)]):
        assert point.train_loss == pytest.approx(sum(values[a:b]) / (b - a), rel=1e-12)
        assert point.grad_norm > 0
    elapsed = [p.elapsed_s for p in result.curve]
    assert elapsed == sorted(elapsed)


@pytest.mark.parametrize("impl", ["builtin", "hand"])
def test_same_config_gives_bit_identical_runs(impl):
    cfg = tiny(task="copy", seq_len=5, cell=CellConfig("gru", impl, hidden=8), steps=20)
    a, b = train(cfg, CPU), train(cfg, CPU)
    def strip(curve):  # exact float reprs (nan included), without the timing column
        return repr([dataclasses.replace(p, elapsed_s=0.0) for p in curve])

    assert strip(a.curve) == strip(b.curve)
    assert repr(a.final) == repr(b.final) and a.steps_taken == b.steps_taken
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(p, q), name
    c = train(dataclasses.replace(cfg, seed=1), CPU)
    assert strip(c.curve) != strip(a.curve)


def _diverging():
    """A ReLU RNN with Adam at lr 1e3 and no clipping: the first update moves every weight by
    about 1e3, the next forward pass over 20 steps overflows float32."""
    return tiny(seq_len=20, cell=CellConfig("rnn", "hand", hidden=16, nonlinearity="relu"),
                lr=1e3, clip=0.0, steps=50, eval_every=10)


def test_diverging_run_is_recorded_not_raised():
    cfg = _diverging()
    finite_steps = []
    result = train(cfg, CPU, on_step=lambda step, loss: finite_steps.append(loss))
    assert result.status == "diverged"
    assert result.steps_taken < cfg.steps
    assert len(finite_steps) == result.steps_taken - 1  # the diverged step reports no loss
    assert all(math.isfinite(v) for v in finite_steps)
    assert math.isnan(result.final.loss) and math.isnan(result.final.accuracy)
    assert not result.solved and result.solved_step is None
    # verify independently: the returned model on the batch of the diverged step has a
    # non-finite loss or gradient (the optimizer step after it was not taken)
    task = make_task(cfg.task, cfg.validate().variant)
    gen = seeding.generator(cfg.seed, "train")
    for _ in range(result.steps_taken):
        batch = task.sample(cfg.seq_len, cfg.batch_size, gen)
    model = result.model
    model.zero_grad()
    loss = task.loss(model(batch.inputs, task.readout_steps(cfg.seq_len)), batch.targets)
    loss.backward()
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert not (math.isfinite(loss.item()) and math.isfinite(grad_norm.item()))


def test_diverging_config_trains_fine_at_a_sane_learning_rate():
    """The divergence above is the learning rate's doing, not a broken cell."""
    result = train(dataclasses.replace(_diverging(), lr=1e-3, steps=20), CPU)
    assert result.status == "ok" and result.steps_taken == 20
    assert math.isfinite(result.final.loss)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_builtin_and_hand_runs_agree_to_rounding(cell):
    results = {
        impl: train(tiny(cell=CellConfig(cell, impl, hidden=16), steps=20, eval_every=20), CPU)
        for impl in ("builtin", "hand")
    }
    b, h = results["builtin"], results["hand"]
    assert b.steps_taken == h.steps_taken == 20
    assert b.curve[0].eval_loss == pytest.approx(h.curve[0].eval_loss, rel=1e-5)  # same init
    assert b.final.loss == pytest.approx(h.final.loss, rel=1e-3)
    assert b.curve[-1].train_loss == pytest.approx(h.curve[-1].train_loss, rel=1e-3)
    # and training did something: the weights moved away from the shared init
    init = build_model(make_task("adding"), CellConfig(cell, "builtin", hidden=16),
                       seeding.derive_seed(0, "init"))
    assert not torch.equal(init.state_dict()["rnn.weight_hh_l0"],
                           b.model.state_dict()["rnn.weight_hh_l0"])


@pytest.fixture
def evaluated(monkeypatch) -> list:
    """The batches ``train`` evaluates on, in order (validation every eval_every, then test)."""
    seen = []
    real = train_module.evaluate

    def spy(model, task, batch, seq_len, *args, **kwargs):
        seen.append(batch)
        return real(model, task, batch, seq_len, *args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", spy)
    return seen


def test_evaluation_set_is_fixed_and_independent_of_the_training_stream(evaluated):
    seen = evaluated
    cfg = tiny(steps=20, eval_every=5)
    train(cfg, CPU)
    assert len(seen) == 6  # validation at steps 0, 5, 10, 15, 20; then the test set once
    first = seen[0]
    for batch in seen[1:5]:
        assert torch.equal(batch.inputs, first.inputs) and torch.equal(batch.targets, first.targets)
    # exactly the "eval" stream's first sample, whatever the training stream does
    expected = make_task("adding").sample(cfg.seq_len, cfg.eval_size, seeding.generator(0, "eval"))
    assert torch.equal(first.inputs, expected.inputs)
    seen.clear()
    train(dataclasses.replace(cfg, batch_size=7, steps=5, lr=1e-2), CPU)
    assert torch.equal(seen[0].inputs, first.inputs)
    # and it is not the training data
    train_batch = make_task("adding").sample(cfg.seq_len, cfg.eval_size, seeding.generator(0, "train"))
    assert not torch.equal(first.inputs, train_batch.inputs)


@pytest.mark.parametrize("task_name", ["adding", "copy", "delayed_recall"])
def test_evaluate_in_chunks_equals_one_pass(task_name):
    task = make_task(task_name)
    T = 6
    model = build_model(task, CellConfig("gru", hidden=8), init_seed=0).double()
    batch = task.sample(T, 50, torch.Generator().manual_seed(0))
    batch.inputs = batch.inputs.double()
    if task.kind == "regression":
        batch.targets = batch.targets.double()
    whole = evaluate(model, task, batch, T, chunk=50)
    pieces = evaluate(model, task, batch, T, chunk=7)
    assert pieces.loss == pytest.approx(whole.loss, rel=1e-12)
    assert pieces.accuracy == pytest.approx(whole.accuracy, abs=1e-6)  # float32 means
    with torch.no_grad():
        out = model(batch.inputs, task.readout_steps(T))
        assert whole.loss == pytest.approx(task.loss(out, batch.targets).item(), rel=1e-12)
    assert model.training  # evaluate restores the mode


def test_clip_gradients_clips_global_norm_and_returns_it_unclipped():
    """clip c rescales the gradient to norm c; clip 0 leaves it alone; both return the raw norm."""
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([3.0, 4.0, 0.0])
    assert train_module.clip_gradients([p], 1.0) == pytest.approx(5.0)
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-6)
    p.grad = torch.tensor([3.0, 4.0, 0.0])
    assert train_module.clip_gradients([p], 0.0) == pytest.approx(5.0)
    assert torch.equal(p.grad, torch.tensor([3.0, 4.0, 0.0]))


# -- the protocol: training / validation / test ---------------------------------------------------


def test_test_set_is_its_own_stream_and_is_what_is_reported(evaluated):
    seen, real = evaluated, evaluate
    cfg = tiny(steps=20, eval_every=10, test_size=96)
    result = train(cfg, CPU)
    test_batch = seen[-1]  # the last evaluation is the test set, once, after the curve's last point
    assert len(seen) == len(result.curve) + 1
    task = make_task("adding")
    expected = task.sample(cfg.seq_len, 96, seeding.generator(cfg.seed, "test"))
    assert torch.equal(test_batch.inputs, expected.inputs)
    validation = task.sample(cfg.seq_len, 96, seeding.generator(cfg.seed, "eval"))
    assert not torch.equal(test_batch.inputs, validation.inputs)
    # the reported metrics are the final model's on that test batch
    again = real(result.model, task, test_batch, cfg.seq_len)
    assert result.final.loss == pytest.approx(again.loss, rel=1e-6)


def test_solved_needs_the_test_set_too(monkeypatch):
    """Validation met the criterion (training stops), the test set did not: not solved."""
    real = train_module.evaluate
    validations = []

    def fake(model, task, batch, seq_len, *args, **kwargs):
        r = real(model, task, batch, seq_len, *args, **kwargs)
        if batch.inputs.shape[1] == 96:  # the test set
            return train_module.EvalResult(0.5, r.accuracy)
        validations.append(batch)
        return train_module.EvalResult(1.0 if len(validations) == 1 else 0.001, r.accuracy)

    monkeypatch.setattr(train_module, "evaluate", fake)
    result = train(tiny(steps=40, eval_every=10, test_size=96), CPU)
    assert result.val_solved and result.steps_taken == 10  # stopped by validation at step 10
    assert not result.solved and result.solved_step is None
    assert result.final.loss == 0.5
    from seqbench.runner import summary_line

    line = summary_line(tiny(steps=40), result, 1 / 6)
    assert "not solved in 10 steps: the validation set met the criterion, the test set did not" in line


def _curve(losses):
    return [train_module.CurvePoint(step=100 * i, train_loss=0.0, eval_loss=v, accuracy=0.0,
                                    grad_norm=0.0, elapsed_s=0.0) for i, v in enumerate(losses)]


def test_still_improving_reads_the_end_of_the_validation_curve():
    still = train_module.still_improving
    assert still(_curve([1.0] + [1.0 - 0.02 * i for i in range(30)]))  # falling steadily
    assert not still(_curve([1.0] + [0.5] * 30))  # flat: a plateau, not a budget limit
    assert not still(_curve([1.0] + [0.5 + 0.01 * i for i in range(30)]))  # rising
    assert not still(_curve([1.0, 0.9, 0.8, 0.7, 0.6]))  # too short to tell
    # windows are a tenth of the evaluations (at least 3): an early fall does not count
    assert not still(_curve([1.0] + [1.0 - 0.05 * i for i in range(10)] + [0.5] * 40))


# -- equal parameter count -------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("target", [5_000, 20_000])
def test_match_params_picks_the_closest_hidden_size(cell, target):
    from seqbench.model import count_parameters

    cfg = RunConfig(task="copy", seq_len=10, cell=CellConfig(cell), match_params=target).validate()
    H = cfg.cell.hidden
    task = make_task("copy")

    def n(h):
        return count_parameters(build_model(task, dataclasses.replace(cfg.cell, hidden=h), 0, 10))

    assert abs(n(H) - target) <= min(abs(n(H - 1) - target), abs(n(H + 1) - target))
    assert abs(n(H) - target) / target < 0.05  # about equal: one hidden unit is a small step here
    # the same size for every seed and lag: the identity depends on the target, not the draw
    assert RunConfig(task="copy", seq_len=10, cell=CellConfig(cell), match_params=target,
                     seed=3).validate().cell.hidden == H


def test_match_params_orders_the_cells_by_gates():
    sizes = {c: RunConfig(cell=CellConfig(c), match_params=50_000).validate().cell.hidden
             for c in ("rnn", "gru", "lstm")}
    assert sizes["rnn"] > sizes["gru"] > sizes["lstm"]  # 1, 3 and 4 gate blocks
    assert sizes["rnn"] == pytest.approx(2 * sizes["lstm"], rel=0.1)  # sqrt(4) at large H


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("rmsprop", torch.optim.RMSprop),
                                      ("sgd", torch.optim.SGD)])
def test_optimizers_are_the_papers_settings_and_resume_bit_identically(name, cls):
    cfg = tiny(optimizer=name, lr=1e-2, steps=6, eval_every=3)
    trainer = train_module.Trainer(cfg, CPU)
    opt = trainer.optimizer
    assert isinstance(opt, cls) and opt.param_groups[0]["lr"] == 1e-2
    if name == "rmsprop":
        assert opt.param_groups[0]["alpha"] == 0.9  # Tieleman & Hinton's decay (Arjovsky 2016)
    if name == "sgd":
        assert opt.param_groups[0]["momentum"] == 0  # plain SGD (Le 2015)
    for _ in range(3):
        trainer.train_step()
    resumed = train_module.Trainer(cfg, CPU)
    checkpoint = io.BytesIO()  # through bytes, as a checkpoint file: a state_dict shares tensors
    torch.save(trainer.state_dict(), checkpoint)
    checkpoint.seek(0)
    resumed.load_state_dict(torch.load(checkpoint, weights_only=True))
    for t in (trainer, resumed):
        for _ in range(3):
            t.train_step()
    for a, b in zip(trainer.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_unknown_optimizer_lists_the_allowed_ones():
    from seqbench.errors import ConfigError

    with pytest.raises(ConfigError, match="adam, rmsprop, sgd"):
        tiny(optimizer="adagrad").validate()


def scripted(cfg: RunConfig, solved_at: set[int], monkeypatch) -> train_module.Trainer:
    """A trainer whose evaluations meet the criterion exactly at the steps ``solved_at`` (loss 0
    there, 1 elsewhere; the criterion made deterministic, to test the stopping rule alone)."""
    trainer = train_module.Trainer(cfg, CPU)
    monkeypatch.setattr(train_module, "evaluate", lambda *args: train_module.EvalResult(
        0.0 if trainer.step in solved_at else 1.0, float("nan")))
    trainer.task.solved = lambda loss, accuracy: loss == 0.0
    return trainer


@pytest.mark.parametrize("k,solved_step,stopped_at", [(1, 3, 3), (2, 5, 6), (3, 5, 7)])
def test_solved_evals_needs_that_many_consecutive_solved_evaluations(k, solved_step, stopped_at,
                                                                    monkeypatch):
    cfg = tiny(steps=20, eval_every=1, eval_size=8, test_size=8, solved_evals=k)
    result = scripted(cfg, {3, 5, 6, 7, 8}, monkeypatch).run()
    assert result.val_solved and result.solved  # the final step is in the set: test solved too
    assert result.solved_step == solved_step  # the first evaluation of the streak
    assert result.steps_taken == stopped_at  # until_solved stops at its last


def test_solved_evals_without_until_solved_trains_on_and_isolated_hits_do_not_count(monkeypatch):
    cfg = tiny(steps=20, eval_every=1, eval_size=8, test_size=8, solved_evals=2,
               until_solved=False)
    result = scripted(cfg, {3, 9, 10, 11, 20}, monkeypatch).run()
    assert result.steps_taken == 20 and result.solved_step == 9
    isolated = scripted(dataclasses.replace(cfg, until_solved=True), {3, 9, 12, 20},
                        monkeypatch).run()
    assert isolated.steps_taken == 20  # never two in a row: trains to the budget
    assert not isolated.val_solved and not isolated.solved and isolated.solved_step is None


def test_solved_evals_streak_survives_a_resume(monkeypatch):
    cfg = tiny(steps=20, eval_every=1, eval_size=8, test_size=8, solved_evals=2)
    first = scripted(cfg, {5, 6}, monkeypatch)
    assert first.run(stop=lambda: "stop" if first.step == 5 else None).status == "interrupted"
    resumed = scripted(cfg, {5, 6}, monkeypatch)
    resumed.load_state_dict(first.state_dict())
    result = resumed.run()
    assert result.solved_step == 5 and result.steps_taken == 6


def test_solved_evals_default_keeps_older_runs_ids_and_blank_column():
    base = tiny()
    assert base.columns()["solved_evals"] is None  # blank in runs.csv, as in rows written before it
    assert tiny(solved_evals=1).config_id() == base.config_id()
    assert tiny(solved_evals=2).config_id() != base.config_id()
    assert tiny(solved_evals=2).columns()["solved_evals"] == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="solved_evals must be a whole number >= 1"):
            tiny(solved_evals=bad).validate()
