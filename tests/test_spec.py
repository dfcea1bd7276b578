"""Benchmark specs: the shipped ones parse for every profile; malformed ones are rejected with the
file and the key; grids, arms and profiles expand to the expected runs."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqbench.cli import cli
from seqbench.errors import ConfigError
from seqbench.spec import allowed_keys, expand_spec, load_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"
SHIPPED = sorted(TASKS_DIR.glob("*.toml"))


def _keys_used(path: Path) -> set[str]:
    """Every run key a spec file uses (settings, grid, arms, in every profile)."""
    data = tomllib.loads(path.read_text())
    tables = [data.get("settings", {}), data.get("grid", {}), *data.get("arms", [])]
    for p in data.get("profiles", {}).values():
        tables += [p.get("settings", {}), p.get("grid", {}), *p.get("arms", [])]
    return {k for t in tables for k in t} - {"name"}


def _skip_if_fields_missing(path: Path) -> None:
    missing = _keys_used(path) - set(allowed_keys())
    if missing:  # tasks/fixes.toml needs the fix options on RunConfig/CellConfig
        pytest.skip(f"{path.name} uses options not in RunConfig/CellConfig yet: {sorted(missing)}")


def test_the_four_specs_are_shipped():
    assert {p.name for p in SHIPPED} >= {"adding.toml", "copy.toml", "delayed_recall.toml",
                                         "fixes.toml"}


#: the specs with a quick (CPU) and a full (GPU) profile; long.toml and papers.toml have their own
QUICK_FULL = [p for p in SHIPPED if p.name not in ("long.toml", "papers.toml")]
#: the specs whose quick runs probe the gradient (results/README.md sections 2 and 4)
GRADIENT_SPECS = ("adding.toml", "copy.toml", "delayed_recall.toml", "fixes.toml", "new_tasks.toml")


@pytest.mark.parametrize("path", QUICK_FULL, ids=lambda p: p.name)
def test_shipped_spec_expands_for_every_profile(path):
    _skip_if_fields_missing(path)
    spec = load_spec(path)
    assert {"quick", "full"} <= set(spec.profile_names)
    assert spec.default_profile == "quick"
    for profile in spec.profile_names:  # extra profiles (new_tasks' budget) may pick arms
        configs = spec.expand(profile)
        assert configs, profile
        assert len({c.config_id() for c in configs}) == len(configs)
    quick, full = spec.expand("quick"), spec.expand("full")
    for configs in (quick, full):
        assert {c.cell.cell for c in configs} >= {"rnn", "lstm", "gru"}
    assert all(c.cell.hidden == 64 and c.steps <= 3000 for c in quick)
    if path.name in GRADIENT_SPECS:  # their runs feed the gradient-vs-lag figures
        assert all(c.probe_every > 0 for c in quick)
    assert max(c.seq_len for c in quick) <= 100
    assert all(c.cell.hidden == 128 for c in full)
    assert len({c.seed for c in full}) >= 5
    assert len({c.seed for c in quick}) >= 2


def test_long_spec_reaches_the_lags_the_papers_quote():
    spec = load_spec(TASKS_DIR / "long.toml")
    cpu, gpu = spec.expand("cpu"), spec.expand("gpu")
    assert spec.default_profile == "cpu"
    assert {100, 200, 500, 1000} <= {c.seq_len for c in cpu} and max(c.seq_len for c in gpu) == 5000
    assert {c.task for c in gpu} == {"adding", "copy", "delayed_recall"}
    assert len({c.seed for c in cpu}) >= 3 and len({c.seed for c in gpu}) >= 5
    labels = {c.label for c in cpu}
    assert {"lstm", "lstm_chrono", "gru_chrono", "irnn", "rnn_orthogonal", "rnn_tanh"} <= labels
    # the default LSTM at T=500 is the user's command (seqbench run --task adding --cell lstm
    # --seq-len 500) apart from the spec's label and the probe, which does not change the run
    lstm500 = next(c for c in cpu if c.label == "lstm" and c.seq_len == 500)
    from seqbench.config import RunConfig

    default = RunConfig(task="adding", seq_len=500).validate()
    assert dataclasses.replace(lstm500, label="", probe_every=0, seed=0) == default
    # cpu_t500 has cpu's T = 500 LSTM runs (they count for both) and two seeds more: 5 for a claim
    subset = spec.expand("cpu_t500")
    shared = {c.config_id() for c in subset if c.seed in {c.seed for c in cpu}}
    assert shared <= {c.config_id() for c in cpu} and len(shared) == 6
    assert {c.label for c in subset} == {"lstm", "lstm_chrono"} and len(subset) == 10
    assert sorted({c.seed for c in subset}) == [0, 1, 2, 3, 4]
    # the T = 500 subsets run alone (cells, remedies) are runs of the cpu profile too
    for profile in ("cpu_cells", "cpu_remedies"):
        part = spec.expand(profile)
        assert {c.seq_len for c in part} == {500}
        assert {c.config_id() for c in part} <= {c.config_id() for c in cpu}, profile


@pytest.mark.parametrize("confirm, first", [("cpu_copy_confirm", ("cpu_copy",)),
                                             ("cpu_adding_confirm", ("cpu_t500",))])
def test_long_confirm_profiles_are_their_partners_runs_with_two_solved_evals(confirm, first):
    """The stopping-margin pairs (results/README.md section 5) compare the same runs but for
    solved_evals: every confirm run, with solved_evals = 1 and its partner's label, is a run of
    the partner profiles (same seed, data, initialization), so the pairs' curves agree until the
    first one stops."""
    spec = load_spec(TASKS_DIR / "long.toml")
    runs = spec.expand(confirm)
    partners = {c.config_id(): c.label for p in first for c in spec.expand(p)}
    assert runs and {c.solved_evals for c in runs} == {2}
    for c in runs:
        twin = dataclasses.replace(c, solved_evals=1, label=c.label.removesuffix("_2evals"))
        assert partners.get(twin.config_id()) == twin.label
    assert {c.solved_evals for c in spec.expand("gpu")} == {2}  # the default for new profiles


def test_shipped_grid_sizes():
    for name in ("adding", "copy", "delayed_recall"):
        quick = expand_spec(TASKS_DIR / f"{name}.toml", "quick")
        assert len(quick) == 4 * 3 * 5  # T x cells x seeds
        assert [c.seed for c in quick[:13]] == [0] * 12 + [1]  # whole seeds first
        assert sorted({c.seq_len for c in quick}) == [10, 25, 50, 100]
        assert max(c.seq_len for c in expand_spec(TASKS_DIR / f"{name}.toml", "full")) == 1000


def test_fixes_spec_arms():
    path = TASKS_DIR / "fixes.toml"
    _skip_if_fields_missing(path)
    configs = expand_spec(path, "quick")
    labels = {c.label for c in configs}
    assert {"rnn_tanh", "lstm", "gru", "lstm_fb1", "irnn"} <= labels
    assert len(configs) == len(labels) * 2 * 3 * 5  # arms x tasks x learning rates x seeds (one lag)
    assert load_spec(path).selected("quick") == ("lr",)  # the rate is chosen per arm on validation
    irnn = next(c for c in configs if c.label == "irnn")
    assert irnn.cell.init == "irnn" and irnn.cell.nonlinearity == "relu"  # Le 2015's recipe
    reference = next(c for c in configs if c.label == "rnn_tanh")
    assert reference.cell.cell == "rnn" and reference.cell.nonlinearity == "tanh"
    fb1 = next(c for c in configs if c.label == "lstm_fb1")
    assert fb1.cell.forget_bias == 1.0 and fb1.cell.cell == "lstm"


# -- expansion ----------------------------------------------------------------------------------


def _write(tmp_path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """
[settings]
task = "adding"
steps = 10
hidden = 8
[grid]
seq_len = [5, 10]
cell = ["rnn", "lstm", "gru"]
seed = [0, 1]
[profiles.small]
grid = { seed = [0] }
[profiles.one_cell]
settings = { cell = "gru", lr = 0.01 }
"""


def test_grid_is_a_cross_product_in_order(tmp_path):
    configs = expand_spec(_write(tmp_path, BASE))
    assert len(configs) == 2 * 3 * 2
    assert [(c.seq_len, c.cell.cell, c.seed) for c in configs[:4]] == [
        (5, "rnn", 0), (5, "rnn", 1), (5, "lstm", 0), (5, "lstm", 1)]
    assert all(c.steps == 10 and c.cell.hidden == 8 and c.variant == "halves" for c in configs)


def test_profiles_override_grid_and_settings(tmp_path):
    path = _write(tmp_path, BASE)
    assert len(expand_spec(path, "small")) == 2 * 3
    one = expand_spec(path, "one_cell")  # a setting replaces the base grid's list for that key
    assert len(one) == 2 * 2 and {c.cell.cell for c in one} == {"gru"} and one[0].lr == 0.01


def test_arms_cross_the_remaining_grid_and_set_the_label(tmp_path):
    path = _write(tmp_path, BASE + """
[[arms]]
name = "tanh"
cell = "rnn"
[[arms]]
name = "relu"
cell = "rnn"
nonlinearity = "relu"
[[arms]]
name = "gated"
cell = "gru"
""")
    configs = expand_spec(path)
    assert len(configs) == 3 * 2 * 2  # arms x seq_len x seed: the arms replace the cell list
    assert [c.label for c in configs[:3]] == ["tanh", "relu", "gated"]  # arms innermost
    assert next(c for c in configs if c.label == "relu").cell.nonlinearity == "relu"


def test_integers_are_accepted_for_floats_with_the_same_identity(tmp_path):
    a = expand_spec(_write(tmp_path, BASE + "", "a.toml"), "small")
    b = expand_spec(_write(tmp_path, BASE.replace("hidden = 8", "hidden = 8\nclip = 1\nlr = 1e-3"),
                           "b.toml"), "small")
    assert isinstance(b[0].clip, float)
    assert [c.config_id() for c in a] == [c.config_id() for c in b]


# -- malformed specs ------------------------------------------------------------------------------

BAD = [
    ("[grid]\nseq_lenn = [5]\n", "grid.seq_lenn", "allowed: task"),
    ("[settings]\nlr = 'fast'\n[grid]\nseed = [0]\n", "settings.lr", "must be a number"),
    ("[settings]\nseq_len = 5.5\n[grid]\nseed = [0]\n", "settings.seq_len", "must be an integer"),
    ("[settings]\nuntil_solved = 1\n[grid]\nseed = [0]\n", "settings.until_solved", "true or false"),
    ("[grid]\n", "grid is empty", "seed = [0, 1, 2]"),
    ("[settings]\ntask = 'adding'\n", "nothing to run", "grid"),
    ("[grid]\nseed = []\n", "grid.seed is an empty list", "at least one value"),
    ("[grid]\nseed = 3\n", "grid.seed must be a list", "[settings]"),
    ("[grid]\nseed = [0, 0]\n", "grid.seed lists 0 more than once", ""),
    ("[settings]\nseed = [0, 1]\n[grid]\ncell = ['rnn']\n", "settings.seed must be a single value",
     "[grid]"),
    ("[settings]\nseed = 0\n[grid]\nseed = [1]\n", "seed given both in settings and in grid", ""),
    ("grid = 3\n", "grid must be a table", ""),
    ("steps = 3\n[grid]\nseed = [0]\n", "steps: unknown top-level key", "[settings]"),
    ("[grid]\nseed = [0]\n[profiles.quick]\nsteps = 3\n", "profiles.quick.steps: unknown key",
     "settings, grid"),
    ("[grid]\nseed = [0]\n[profiles.quick.grid]\ncel = ['rnn']\n", "profiles.quick.grid.cel",
     "allowed"),
    ("[grid]\nseed = [0]\n[[arms]]\ncell = 'rnn'\n", "arms[0].name is missing", ""),
    ("[grid]\nseed = [0]\n[[arms]]\nname = 'a'\n[[arms]]\nname = 'a'\n", "arms[1].name 'a'", "unique"),
    ("[grid]\nseed = [0]\n[[arms]]\nname = 'a'\nforget = 1.0\n", "arms[0].forget: unknown key",
     "allowed: name"),
    ("[grid]\nseed = [0]\ndefault_profile = 'quick'\n", "grid.default_profile", ""),
    ("default_profile = 'quik'\n[grid]\nseed = [0]\n[profiles.quick]\n", "default_profile 'quik'",
     "allowed: quick"),
    ("[grid]\ncell = ['lstmm']\n", "unknown cell 'lstmm'", "allowed: rnn, lstm, gru"),
    ("[grid]\nseq_len = [0]\n", "seq_len", ""),
    ("[grid\nseed = [0]\n", "not valid TOML", ""),
]


@pytest.mark.parametrize("text,where,allowed", BAD, ids=[b[1] for b in BAD])
def test_malformed_spec_names_file_and_key(tmp_path, text, where, allowed):
    path = _write(tmp_path, text, "bad.toml")
    with pytest.raises(ConfigError) as e:
        expand_spec(path)
    message = str(e.value)
    assert str(path) in message and where in message and allowed in message
    assert "\n" not in message


def test_unknown_profile_lists_the_profiles(tmp_path):
    path = _write(tmp_path, BASE)
    with pytest.raises(ConfigError, match=r"unknown profile 'huge'; allowed: small, one_cell"):
        expand_spec(path, "huge")


def test_invalid_run_names_the_run(tmp_path):
    path = _write(tmp_path, "[settings]\ncell = 'lstm'\nnonlinearity = 'relu'\n[grid]\nseed = [0]\n")
    with pytest.raises(ConfigError) as e:
        expand_spec(path)
    assert str(path) in str(e.value) and "run (cell=lstm" in str(e.value)
    assert "'lstm' uses tanh only; a choice of nonlinearity exists for: rnn" in str(e.value)


def test_missing_spec_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")


def test_cli_rejects_a_bad_spec_in_one_line_and_writes_nothing(tmp_path):
    path = _write(tmp_path, "[grid]\nseed = [0]\nbogus = [1]\n", "bad.toml")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and "bad.toml" in result.output
    assert "grid.bogus" in result.output and result.output.count("\n") == 1
    assert not out.exists()


def test_cli_dry_run_lists_runs_and_writes_nothing(tmp_path):
    path = _write(tmp_path, BASE)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["sweep", str(path), "--profile", "small", "--dry-run",
                                      "--no-estimate", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 6 + 1
    assert "adding/halves T=5 rnn/builtin seed 0" in lines[0]
    assert lines[-1].endswith("6 runs, 0 already recorded in " + f"{out}/runs.csv, 6 to run "
                              "(60 training steps)")  # 6 runs x 10 steps
    assert not out.exists()


def test_cli_unknown_profile(tmp_path):
    result = CliRunner().invoke(cli, ["sweep", str(_write(tmp_path, BASE)), "-p", "x", "-n"])
    assert result.exit_code == 2 and "unknown profile 'x'" in result.output


def test_select_names_the_keys_the_leaderboard_tunes(tmp_path):
    text = ('select = "lr"\n' + BASE.replace("[grid]", "[grid]\nlr = [0.001, 0.01]")
            + '[profiles.two]\nselect = ["lr", "hidden"]\n')
    spec = load_spec(_write(tmp_path, text))
    assert spec.select == ("lr",) and spec.selected() == ("lr",)
    assert spec.selected("two") == ("lr", "hidden") and spec.selected("small") == ("lr",)
    assert len(spec.expand()) == 2 * 2 * 3 * 2  # lr is an ordinary grid key for the runs


@pytest.mark.parametrize("value,word", [('"seed"', "seed"), ('"epochs"', "epochs"), ("3", "list")])
def test_select_rejects_what_cannot_be_tuned(tmp_path, value, word):
    path = _write(tmp_path, f"select = {value}\n" + BASE)
    with pytest.raises(ConfigError, match=word):
        load_spec(path)


def test_readme_spec_table_counts_the_runs_each_profile_expands_to():
    """README.md's Benchmark specs table: the first "N runs" of each profile column is what
    that profile expands to (the column's profile: `quick` / `full`, or the one it names)."""
    import re

    readme = (TASKS_DIR.parent / "README.md").read_text()
    section = readme.split("## Benchmark specs", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `tasks/")]
    assert len(rows) == len(SHIPPED)  # every shipped spec has a row
    checked = 0
    for cells in rows:
        spec = load_spec(TASKS_DIR.parent / cells[0].strip("| `"))
        for column, default in ((cells[2], "quick"), (cells[3], "full")):
            count = re.search(r"([\d,]+) runs", column)
            if count is None:
                continue
            named = re.match(r"\s*profile `(\w+)`", column)
            profile = named.group(1) if named else default
            assert len(spec.expand(profile)) == int(count.group(1).replace(",", "")), (
                cells[0], profile)
            checked += 1
    assert checked >= 10
