#!/usr/bin/env python
"""Write results/README.md from the committed CSVs: every number in it is computed here.

    python results/readme.py            # (re)write results/README.md
    python results/readme.py --check    # exit 1 when the committed README differs from the CSVs

The prose around the numbers is fixed; any sentence that states a finding (which arm is better,
which cell solves which lag) is generated from the data and the tests in seqbench.leaderboard,
so it cannot disagree with the CSVs (tests/test_results_readme.py runs ``--check``). Claims about
a difference between arms quote their test (Fisher's exact test on the solve counts, Holm-adjusted
across the arms compared), never a bare mean.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

import pandas as pd

from seqbench import leaderboard as lb
from seqbench.grads import read_grads, summarize
from seqbench.results import read_results
from seqbench.spec import load_spec

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ALPHA = 0.05  # significance level of the claims, after Holm's correction
REFERENCE_ARM = "rnn_tanh"


# -- helpers ----------------------------------------------------------------------------------------


def _num(v, fmt: str = "{:.3g}") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _rate(row) -> str:
    return f"{row['solve_rate']:.2f} [{row['solve_rate_lo']:.2f}, {row['solve_rate_hi']:.2f}]"


def _ratio(row) -> str:
    return (f"{_num(row['loss_ratio_mean'])} [{_num(row['loss_ratio_ci_lo'])}, "
            f"{_num(row['loss_ratio_ci_hi'])}]")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _names(items) -> str:
    items = [f"`{i}`" for i in items]
    return ", ".join(items) if items else "none"


def _runs(path: Path) -> pd.DataFrame:
    return lb.load_runs(path)


def _true(frame: pd.DataFrame, column: str) -> pd.Series:
    """A runs.csv flag column as booleans (the CSV holds "True" / "False" / blank)."""
    return frame[column].map(lambda v: str(v) == "True")


@functools.cache
def _spec(spec_name: str):
    """tasks/<spec_name>, loaded once."""
    return load_spec(REPO / "tasks" / spec_name)


@functools.cache
def _configs(spec_name: str, profile: str) -> tuple:
    """The runs of a spec profile, expanded once (the long gpu profile has 1,260)."""
    return tuple(_spec(spec_name).expand(profile))


@functools.cache
def _profile_ids(spec_name: str, profile: str) -> frozenset:
    """The config ids of a spec profile's runs: how rows are matched to the profile they ran."""
    return frozenset(c.config_id() for c in _configs(spec_name, profile))


def _settings(spec_name: str, profile: str) -> dict:
    """One run's settings of a spec profile (what every run of it shares)."""
    configs = _configs(spec_name, profile)
    c = configs[0]
    return {"hidden": c.cell.hidden, "batch": c.batch_size, "steps": c.steps, "lr": c.lr,
            "clip": c.clip, "eval_every": c.eval_every, "eval_size": c.eval_size,
            "test_size": c.test_size, "probe_every": c.probe_every,
            "seeds": len({x.seed for x in configs}), "lrs": sorted({x.lr for x in configs})}


# -- sections ---------------------------------------------------------------------------------------


def header() -> str:
    quick = _settings("adding.toml", "quick")
    fixes = _settings("fixes.toml", "quick")
    lrs = ", ".join(f"{v:g}" for v in fixes["lrs"])
    setup = _table(["", ""], [
        ["hardware", "2-core AMD EPYC (x86_64) virtual machine, 24 GiB, no GPU; two one-thread "
                     "worker processes"],
        ["protocol", f"training batches, a validation set ({quick['eval_size']} sequences, every "
                     f"{quick['eval_every']} steps: stopping and learning-rate selection) and a "
                     f"test set ({quick['test_size']} sequences, once, at the end: every "
                     "reported number), from separate random streams of each seed"],
        ["`quick` task sweeps", f"H = {quick['hidden']}, batch {quick['batch']}, Adam lr "
                                f"{quick['lr']:g} (fixed), norm clipping {quick['clip']:g}, at "
                                f"most {quick['steps']:,} steps, stop when the validation set "
                                f"is solved, {quick['seeds']} seeds, gradient probe every "
                                f"{quick['probe_every']} steps"],
        ["fixes comparison", f"the same, hand-written cells, lr in {{{lrs}}} selected per arm "
                             "and task on the validation set (highest validation solve rate, "
                             f"then lowest validation loss), {fixes['seeds']} seeds"],
        ["comparisons", "at equal hidden size (not equal parameter count: `--match-params` was "
                        "not used)"]])
    return f"""# Reference results

Everything here comes from real runs of the specs in `tasks/` on this project's CPU machine,
regenerated by [`regenerate.sh`](regenerate.sh), and every number in this file is computed from
the committed CSVs by [`readme.py`](readme.py) (`python results/readme.py --check` is part of the
test suite). Claims that one arm differs from another quote a test (significance level {ALPHA}):
Fisher's exact test on solve counts (Holm-adjusted where several arms are compared), the
Mann-Whitney U test on loss ratios, McNemar's exact test on seeds paired across two protocols.

{setup}
Files: `runs.csv` (one row per run), `leaderboard*.csv` (`seqbench leaderboard`), `grads.csv`
(`seqbench grads` at initialization), `runs/<run id>/` (config, learning curve and the probe's
`grads.csv` of every run), `fixes/` (the same for the fixes comparison), `long/` (the long-lag
sweep, where it has run), `figures/`, `bench.csv` and `bench_sweep.csv` (`seqbench bench`).
"""


def gradients_at_init() -> str:
    grads = read_grads([HERE / "grads.csv"])
    grads = grads[(grads["task"] == "adding") & (grads["seq_len"] == 500)]
    table = summarize(grads)
    rows, decay = [], {}
    for r in table.itertuples(index=False):
        decay[r.series] = r.decay_factor
        part = grads[[n == r.series for n in _series(grads)]]
        first_under = part[_true(part, "underflow")].groupby(
            "probe_id")["lag"].min()
        n = part["probe_id"].nunique()
        under = (f"{len(first_under)} of {n} seeds, from lag "
                 f"{_lag_range(first_under)}" if len(first_under) else f"none of {n} seeds")
        rows.append([f"`{r.series}`", f"x{r.decay_factor:.3f}", under])
    return ("## 1. Gradient decay at initialization\n\n"
            "![decay at initialization, adding T=500](figures/decay_adding_T500.png)\n\n"
            "`seqbench grads --task adding --seq-len 500`, H = 128, at PyTorch's default "
            "initialization (the LSTM also with forget-gate bias 1): the decay factor per step "
            "(mean over seeds) and where the gradient underflows float32 (the figure's "
            "triangles).\n\n"
            + _table(["cell", "decay factor", "underflow (below the smallest normal float32)"],
                     rows)
            + _gate_sentence(decay))


def _gate_sentence(decay: dict) -> str:
    d = {k: f"x{v:.3f}" for k, v in decay.items()}
    if not {"rnn", "lstm", "gru", "lstm (forget bias 1)"} <= set(d):
        return ""
    far = all(decay[k] < 0.9 for k in ("rnn", "lstm", "gru"))
    return (f"\nAt PyTorch's default initialization the LSTM ({d['lstm']} per step), the GRU "
            f"({d['gru']}) and the tanh RNN ({d['rnn']}) "
            + ("all lose gradient faster than x0.9 per step" if far else "lose gradient at these "
               "rates") + ": the gated cells' forget/update gates start half closed "
            f"(sigmoid(0) = 0.5). A forget-gate bias of 1 "
            f"opens the LSTM's gate and its decay becomes {d['lstm (forget bias 1)']} per step "
            f"(docs/references.md section 5).\n")


def _series(df: pd.DataFrame) -> list[str]:
    from seqbench.grads import series_name

    return [series_name(r) for r in df.to_dict("records")]


def _lag_range(lags: pd.Series) -> str:
    lo, hi = int(lags.min()), int(lags.max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def training_opens_gates() -> str:
    grads = read_grads([HERE / "runs"])
    part = grads[(grads["task"] == "adding") & (grads["seq_len"] == 50)
                 & (grads["layer"] == grads["layers"] - 1)]
    if part.empty:
        return ""
    runs = read_results(HERE / "runs.csv").set_index("run_id")
    last = part.groupby("run_id")["step"].transform("max")
    rows = []
    for cell in ("rnn", "lstm", "gru"):
        mine = part[part["cell"] == cell]
        if mine.empty:
            continue
        init = mine[mine["step"] == 0].groupby("run_id")["decay_factor"].first()
        end = mine[mine["step"] == last[mine.index]].groupby("run_id")["decay_factor"].first()
        steps = mine[mine["step"] == last[mine.index]].groupby("run_id")["step"].first()
        solved = sum(str(runs.loc[r, "solved"]) == "True" for r in init.index)
        rows.append([cell, f"x{init.mean():.3f}", f"x{end.mean():.3f}",
                     f"{_lag_range(steps)}", f"{solved} of {len(init)}"])
    return ("\n## 2. Gradient decay before and after training\n\n"
            "![decay at initialization and after training, adding T=50]"
            "(figures/decay_training_adding_T50.png)\n\n"
            "The probe inside the training runs of the adding sweep at T = 50: decay factor per "
            "step at initialization and at each run's last probe (mean over seeds; runs stop "
            "when solved, so they end at different steps).\n\n"
            + _table(["cell", "at initialization", "at the end", "end step", "solved (test)"],
                     rows))


def quick_sweeps() -> str:
    path = HERE / "runs.csv"
    board, head = lb.build(path)
    runs = _runs(path)
    out = ["\n## 3. Cells against the lag: the quick sweeps\n",
           "Solve rate against T: [solve_rate.png](figures/solve_rate.png); loss / baseline: "
           "[loss_ratio.png](figures/loss_ratio.png); time to solve (Kaplan-Meier): "
           "[solved.png](figures/solved.png); the whole table: [leaderboard.csv](leaderboard.csv)."
           "\n\nHeadline: the longest T solved by at least half of the seeds (`≥ T`: the longest "
           "T tried was solved, so the grid, not the cell, ended there).\n",
           lb.format_frame(head, "markdown")]
    rows = []
    for r in board.to_dict("records"):
        rows.append([r["task"], r["cell"], str(int(r["seq_len"])), str(int(r["n_seeds"])),
                     _rate(r), _ratio(r), _num(r["km_median_solved_step"], "{:.0f}")])
    out.append("\nPer task, cell and T (test set; intervals 95%: Wilson for the solve rate, "
               "bootstrap for the mean loss ratio; KM: Kaplan-Meier median step to solve, `-` = "
               "the estimate never reaches one half; runs that stopped on a validation result "
               "their test set missed are censored where they stopped, so a KM median can "
               "exist with fewer than half of the seeds solved):\n")
    out.append(_table(["task", "cell", "T", "seeds", "solved", "loss / baseline", "KM median step"],
                      rows))
    out.append("\n" + _findings(board, runs))
    return "\n".join(out)


def _findings(board: pd.DataFrame, runs: pd.DataFrame) -> str:
    lines = []
    for task, part in board.groupby("task", sort=False):
        never = part.groupby("cell", sort=False)["solve_rate"].max()
        unsolved = [c for c, v in never.items() if v == 0]
        if len(unsolved) == len(never):
            best = part.loc[part["loss_ratio_mean"].idxmin()]
            lines.append(f"- {task}: no cell solved any T tried in this budget; the lowest mean "
                         f"loss / baseline is {_num(best['loss_ratio_mean'])} ({best['cell']}, "
                         f"T = {int(best['seq_len'])}).")
    lines.append(_split_effects(runs))
    return "\n".join(lines) + "\n"


def _budget_limited(runs: pd.DataFrame) -> pd.Series:
    """Unsolved runs that spent their whole step budget with the validation loss still falling
    (``still_improving``): a budget limit. Rows written before train.py required the budget to
    be spent also flag runs that stopped early on a validation result the test set did not
    confirm; those did not end at their budget and are not counted."""
    spent = pd.to_numeric(runs["steps_taken"], errors="coerce") >= pd.to_numeric(
        runs["step_budget"], errors="coerce")
    return _true(runs, "still_improving") & ~_true(runs, "solved") & spent


def _split_effects(runs: pd.DataFrame, what: str = "finished runs") -> str:
    ok = runs[runs["status"] == "ok"]
    val, test = _true(ok, "val_solved"), _true(ok, "solved")
    improving = _budget_limited(ok)
    return (f"- Of {len(ok)} {what}, {int(val.sum())} met the criterion on the validation "
            f"set and {int(test.sum())} of those also on the test set; "
            f"{int((val & ~test).sum())} stopped on a validation result the test set did not "
            f"confirm (they stopped at the first evaluation that met the criterion, where the two "
            f"sets differ by sampling noise). {int(improving.sum())} unsolved runs were still "
            f"improving when their budget ended (`still_improving`): not solved in this budget, "
            f"not shown unable.")


def fixes() -> str:
    path = HERE / "fixes" / "runs.csv"
    if not path.exists():
        return ""
    board, _ = lb.build(path, select=["lr"])
    against = lb.build_comparison(path, REFERENCE_ARM, select=["lr"])
    init = _init_decay(HERE / "fixes" / "grads_init.csv")
    runs = _runs(path)
    n_seeds = int(board["n_seeds"].max())
    out = ["\n## 4. The fixes: each remedy alone against the tanh RNN\n",
           f"`tasks/fixes.toml`, `quick`: every arm x {{delayed recall, adding}} x T = "
           f"{_lags(board)} x {runs['lr'].nunique()} learning rates x up to {n_seeds} seeds, "
           f"hand-written cells. The learning rate is "
           f"chosen per arm and task on the validation set; the table reports the test set of "
           f"that rate's runs, and tests each arm against `{REFERENCE_ARM}` (at its own selected "
           f"rate).\n",
           "![gradient vs lag for every remedy, delayed recall T=25](figures/fixes_decay.png)\n",
           "Adding: [fixes_decay_adding.png](figures/fixes_decay_adding.png); solve rates: "
           "[fixes_solve_rate.png](figures/fixes_solve_rate.png); the whole comparison: "
           f"[leaderboard_against_{REFERENCE_ARM}.csv](fixes/leaderboard_against_{REFERENCE_ARM}.csv).\n"]
    for task, part in board.groupby("task", sort=False):
        rows = []
        for r in part.to_dict("records"):
            cmp = against[(against["task"] == task) & (against["arm"] == r["label"])]
            c = cmp.iloc[0] if len(cmp) else None
            decay = init.get((task, r["label"]), math.nan)
            rows.append([f"`{r['label']}`", f"{r['lr']:g}", f"x{_num(decay)}",
                         f"{int(r['n_seeds'])}", _rate(r), _ratio(r),
                         _num(r["km_median_solved_step"], "{:.0f}"),
                         "reference" if c is None else
                         f"{c['solve_rate_diff']:+.2f}, p = {_num(c['p_fisher_holm'], '{:.2g}')}"])
        out.append(f"\n### {task.replace('_', ' ')}, T = {_lags(part)}\n")
        out.append(_table(["arm", "lr (selected)", "decay at init", "seeds", "solved",
                           "loss / baseline", "KM median step",
                           f"vs `{REFERENCE_ARM}`: solve-rate difference, Holm p"], rows))
        out.append(_fixes_findings(task, part, against[against["task"] == task], init))
    out.append(_family_tests(path))
    out.append(_init_predicts(path))
    out.append("\n" + _split_effects(runs, "finished runs (every learning rate)"))
    out.append(_lr_choices(board))
    return "\n".join(out)


#: each gated cell's fixes, tested against the same cell at its default initialization
FAMILIES = {"lstm": ("lstm_fb1", "lstm_fb3", "lstm_chrono", "lstm_floss"), "gru": ("gru_chrono",)}


def _family_tests(path: Path) -> str:
    """Each gated fix against its own default cell: Fisher's exact test on the solve counts,
    Holm-adjusted over these comparisons within each task (a family fixed in advance, smaller
    than 'every arm against the tanh RNN')."""
    from seqbench import stats

    rows, found = [], []
    for task in ("delayed_recall", "adding"):
        pairs = []
        for ref, fixes_ in FAMILIES.items():
            cmp = lb.build_comparison(path, ref, task=task, select=["lr"])
            for arm in fixes_:
                mine = cmp[cmp["arm"] == arm]
                if len(mine):
                    pairs.append(mine.iloc[0])
        if not pairs:
            continue
        adjusted = stats.holm([p["p_fisher"] for p in pairs])
        for p, q in zip(pairs, adjusted):
            rows.append([task.replace("_", " "), f"`{p['arm']}`", f"`{p['ref_arm']}`",
                         f"{p['solve_rate']:.2f} vs {p['ref_solve_rate']:.2f}",
                         _num(p["p_fisher"], "{:.2g}"), _num(q, "{:.2g}")])
            if q < ALPHA:
                found.append(f"`{p['arm']}` over `{p['ref_arm']}` on {task.replace('_', ' ')}")
    if not rows:
        return ""
    return ("\n### Each gated fix against its own default cell\n\n"
            "Fisher's exact test on the test solve counts (learning rates selected as above), "
            "Holm-adjusted over the comparisons of each task:\n\n"
            + _table(["task", "arm", "against", "solved", "p", "Holm p"], rows)
            + f"\nSignificant at {ALPHA} after Holm's correction: {', '.join(found) or 'none'}.\n")


def _init_decay(path: Path) -> dict:
    """(task, arm) -> mean decay factor at initialization (top layer) over seeds."""
    if not path.exists():
        return {}
    g = read_results(path)
    g = g[g["layer"] == g["layers"] - 1]
    per_probe = g.groupby(["task", "label", "probe_id"])["decay_factor"].first()
    return per_probe.groupby(["task", "label"]).mean().to_dict()


def _fixes_findings(task: str, part: pd.DataFrame, against: pd.DataFrame, init: dict) -> str:
    better = against[(against["p_fisher_holm"] < ALPHA) & (against["solve_rate_diff"] > 0)]
    worse = against[(against["p_fisher_holm"] < ALPHA) & (against["solve_rate_diff"] < 0)]
    loss_better = against[(against["p_rank_holm"] < ALPHA) & (against["rank_effect"] > 0)]
    ref = part[part["label"] == REFERENCE_ARM]
    ref_rate = f"{ref.iloc[0]['solve_rate']:.2f}" if len(ref) else "-"
    lines = [f"\nWhat it shows ({task.replace('_', ' ')}; `{REFERENCE_ARM}` solves at rate "
             f"{ref_rate}):",
             f"- Solved significantly more often than `{REFERENCE_ARM}`: "
             f"{_names(better['arm'])}.",
             f"- Solved significantly less often: {_names(worse['arm'])}.",
             f"- Lower test loss (Mann-Whitney, Holm p < {ALPHA}): {_names(loss_better['arm'])}.",
             f"- No significant difference in solve rate: "
             f"{_names(sorted(set(against['arm']) - set(better['arm']) - set(worse['arm'])))}."]
    lines.append(_decay_vs_solve(task, part, init))
    return "\n".join(lines) + "\n"


def _init_predicts(path: Path) -> str:
    """Does the gradient, or the hidden-state dynamics, at initialization predict which runs
    solve? (seqbench predict, with the dynamics of fixes/dynamics_init.csv where present)"""
    from seqbench.predict import DYNAMICS_MEASURES, predict

    dynamics = path.parent / "dynamics_init.csv"
    table, frame, _ = predict(path, select=["lr"], by_task=True, resample="config",
                              dynamics=dynamics if dynamics.exists() else None)
    rows = [[t.replace("_", " "), f"`{m}`", f"{int(n)} ({int(k)})",
             f"{auc:.2f} {_auc_interval(lo, hi)}", f"{rho:+.2f} (p = {p:.2g})"]
            for t, m, n, k, auc, lo, hi, rho, p in table[
                ["task", "measure", "n", "n_solved", "auc", "auc_lo", "auc_hi", "spearman_rho",
                 "spearman_p"]].itertuples(index=False)]
    has_dynamics = bool(set(table["measure"]) & set(DYNAMICS_MEASURES))
    command = ("`seqbench predict results/fixes/runs.csv --select lr --by task --resample config"
               + (" --dynamics results/fixes/dynamics_init.csv`" if has_dynamics else "`"))
    dyn_text = ""
    if has_dynamics:
        measured = frame[frame["lyapunov_max"].notna()]
        left = sorted(set(frame["label"]) - set(measured["label"]))
        dyn_text = (
            " The last two measures are the hidden-state dynamics of the same initial weights "
            "(`seqbench dynamics --spec tasks/fixes.toml --profile quick --measure lyapunov "
            "--measure jacobian --lag 10`, along the 16-sequence batch a run's `--probe` "
            "measures; joined to the runs by initial model: task, T, cell, seed), top layer: "
            "`lyapunov_max`, the largest Lyapunov exponent (per step), and `jacobian_norm`, "
            "the median over the sequence of the one-step Jacobian's spectral norm "
            "||J_t||_2. In-cell normalization has no per-sequence map, so "
            f"{_names(left)} have none ({len(frame) - len(measured)} runs). Their spectra: "
            "[fixes_spectrum.png](figures/fixes_spectrum.png) (delayed recall).")
    return ("\n### Does the gradient at initialization predict success?\n\n"
            f"{command}: "
            "for every run at its arm's selected rate, a measure of its step-0 gradient probe "
            "against whether it solved. ROC AUC = the probability that a solved run has the "
            "higher value (0.5: no information; below 0.5: lower values solve), with a 95% "
            "bootstrap interval resampling whole configurations (the seeds of one arm share "
            "their initialization, so this is an association across arms); Spearman's rho "
            f"with the time to solve (unsolved runs last).{dyn_text}\n\n"
            + _table(["task", "measure", "runs (solved)", "AUC [95% interval]",
                      "Spearman rho with time to solve"], rows)
            + _decay_separates(table) + _predictors(table))


def _separates(row) -> bool:
    """The AUC's 95% interval excludes 0.5: the measure tells solved runs from unsolved."""
    return row["auc_lo"] > 0.5 or row["auc_hi"] < 0.5


def _decay_separates(table: pd.DataFrame) -> str:
    """Which tasks' solved runs the decay factor at initialization separates (from the AUC
    intervals, not assumed)."""
    rows = table[table["measure"] == "decay_factor"].set_index("task")
    tasks = [t for t in ("delayed_recall", "adding") if t in rows.index]
    yes = [t for t in tasks if _separates(rows.loc[t])]
    no = [t for t in tasks if t not in yes]

    def named(group):
        return " and ".join(f"{t.replace('_', ' ')} (AUC {rows.loc[t, 'auc']:.2f})"
                            for t in group)

    if not tasks:
        return ""
    head = "\nThe decay factor at initialization separates "
    if yes and no:  # the reading that holds only when one task separates and the other not
        text = (head + f"the runs that solve {named(yes)} but not those that solve {named(no)}: "
                "a decay near 1 at initialization is not the same as solving; on "
                f"{yes[0].replace('_', ' ')} it mostly tells the gated cells with opened gates "
                "from their defaults")
    elif yes:
        text = head + f"the runs that solve {named(yes)}"
    else:
        text = head + "neither the runs that solve " + named(no).replace(" and ", " nor ")
    return text + " (95% interval of the AUC excludes 0.5 or not).\n"


def _auc_interval(lo: float, hi: float) -> str:
    """[lo, hi] to 2 decimals; 3 where an end rounds to 0.50 but is not 0.5 (so that the table
    shows whether the interval excludes 0.5, as the sentence below it says)."""
    def end(v):
        return f"{v:.3f}" if f"{v:.2f}" == "0.50" and v != 0.5 else f"{v:.2f}"

    return f"[{end(lo)}, {end(hi)}]"


def _predictors(table: pd.DataFrame) -> str:
    """Which measures predict success, per task: the 95% interval of the AUC excludes 0.5."""
    lines = []
    for task, part in table.groupby("task", sort=False):
        yes = [f"`{r['measure']}` ({'higher' if r['auc'] > 0.5 else 'lower'} values solve, AUC "
               f"{r['auc']:.2f})" for r in part.to_dict("records") if _separates(r)]
        no = [f"`{r['measure']}`" for r in part.to_dict("records") if not _separates(r)]
        name = "pooled over both tasks" if task == "all" else task.replace("_", " ")
        lines.append(f"- {name}: predict success (95% interval excludes 0.5): "
                     f"{', '.join(yes) or 'none'}; do not (interval includes 0.5): "
                     f"{', '.join(no) or 'none'}.")
    return ("\nWhich measures at initialization predict success (an association across arms, "
            "as above):\n\n" + "\n".join(lines) + "\n")


def _decay_vs_solve(task: str, part: pd.DataFrame, init: dict, level: float = 0.85) -> str:
    """Does a decay factor near 1 at initialization go with solving? Counted, not asserted."""
    near, far = [], []
    for r in part.to_dict("records"):
        d = init.get((task, r["label"]), math.nan)
        if math.isnan(d):
            continue
        # on the value the table prints (3 significant digits), so a reader's count agrees
        (near if float(f"{d:.3g}") >= level else far).append(r["solve_rate"] >= 0.5)
    if not near or not far:
        return ""
    from seqbench.stats import fisher_exact

    p, _ = fisher_exact(sum(near), len(near), sum(far), len(far))
    return (f"- Decay factor at initialization and outcome: of the arms that start at "
            f"x{level} per step or more, {sum(near)} of {len(near)} solve in at least half of "
            f"their seeds; of those below, {sum(far)} of {len(far)} (Fisher's exact test over "
            f"arms, p = {p:.2g}; an association across arms, not a test of any one remedy).")


def _lr_choices(board: pd.DataFrame) -> str:
    counts = board.groupby(["task", "lr"]).size()
    parts = [f"{task.replace('_', ' ')}: " + ", ".join(
        f"{lr:g} for {n}" for (t, lr), n in counts.items() if t == task)
        for task in dict.fromkeys(board["task"])]
    grid = sorted({float(v) for c in board["selected_from"] for v in str(c).split()})
    edge = int((board["lr"] == max(grid)).sum())
    line = "- Learning rates chosen on validation (arms per rate): " + "; ".join(parts) + "."
    if edge:
        line += (f" The largest rate of the grid ({max(grid):g}) was chosen {edge} times of "
                 f"{len(board)}: the grid may not bracket every arm's best rate, so a "
                 f"difference between arms can still be one of learning rate.")
    return line + "\n"


def long_lags() -> str:
    path = HERE / "long" / "runs.csv"
    if not path.exists():
        return ""
    board, head = lb.build(path)
    runs = _runs(path)
    improving = int(_budget_limited(runs).sum())
    tables = []
    for task, part in board.groupby("task", sort=False):
        rows = [[f"`{r['label']}`", str(int(r["seq_len"])), _setting(r),
                 str(int(r["n_seeds"])), _rate(r), _ratio(r),
                 _num(r["km_median_solved_step"], "{:.0f}")] for r in part.to_dict("records")]
        tables.append(f"\n### {task.replace('_', ' ')}\n\n" + _table(
            ["arm", "T", "setting", "seeds", "solved", "loss / baseline", "KM median step"], rows))
    adding = board[board["task"] == "adding"]
    default = adding[(adding["label"] == "lstm") & (adding["seq_len"] == 500)]
    users = ("The user's own command, `seqbench run --task adding --cell lstm --seq-len 500` (the "
             "`lstm` arm at T = 500): " + (
                 f"{int(default.iloc[0]['n_seeds'])} seed(s) recorded, solve rate "
                 f"{_rate(default.iloc[0])}." if len(default) else
                 "no seed recorded yet (`--profile cpu_t500` runs it)."))
    chrono = adding[(adding["label"] == "lstm_chrono") & (adding["seq_len"] == 500)]
    if len(default) and len(chrono):
        users += " Its fix, chrono initialization (`lstm_chrono`): " + _fisher_sentence(
            chrono.iloc[0], default.iloc[0])
    users += _long_dynamics(adding)
    decay = "".join(_long_decay(runs, adding, t) for t in (500, 1000, 2000))
    return ("\n## 5. Long lags (in progress)\n\n"
            "`tasks/long.toml`, the runs recorded so far (the sweep accumulates over sittings: "
            "`seqbench sweep tasks/long.toml --profile <profile> --workers 2 --out "
            "results/long`). " + _long_settings(runs) + " Runs stop when the validation set "
            "is solved. Solve rate against T with 95% Wilson bands: "
            "[long_solve_rate.png](figures/long_solve_rate.png).\n"
            + "\n".join(tables)
            + f"\nUnsolved runs still improving at the end of their budget: {improving}."
            + _unconfirmed(runs) + _stopping_margin(runs) + "\n\n"
            + _longest_solved(head, board) + "\n\n" + users + "\n" + decay)


def _long_settings(runs: pd.DataFrame) -> str:
    """Per task, the settings its runs trained with, read from the rows, and the profiles of
    tasks/long.toml they come from (matched by config id)."""
    ids = {p: _profile_ids("long.toml", p) for p in _spec("long.toml").profile_names}
    parts = []
    for task, part in runs.groupby("task", sort=False):
        profiles = [f"`{p}`" for p, wanted in ids.items() if wanted & set(part["config_id"])]
        parts.append(f"{task.replace('_', ' ').capitalize()} (profile"
                     f"{'s' if len(profiles) != 1 else ''} {', '.join(profiles)}): "
                     f"{_trained_with(part)}.")
    return " ".join(parts)


def _trained_with(runs: pd.DataFrame) -> str:
    """The training settings of runs.csv rows, read from them, one phrase per distinct
    combination: 'H = 64, Adam 3e-3, batch 64, clipping at 1, at most 3,000 steps'."""
    keys = ["hidden", "optimizer", "lr", "batch_size", "clip", "step_budget"]
    return "; ".join(
        f"{_setting(r)}, "
        + (f"clipping at {float(r['clip']):g}" if float(r["clip"]) else "no clipping")
        + f", at most {int(r['step_budget']):,} steps"
        for r in runs.drop_duplicates(keys).to_dict("records"))


@functools.cache
def _long_grads() -> pd.DataFrame:
    """The in-run probes of the long runs (results/long/runs/*/grads.csv), read once for the
    sections of every T."""
    return read_grads([HERE / "long" / "runs"])


def _long_decay(runs: pd.DataFrame, adding: pd.DataFrame, seq_len: int = 500) -> str:
    """Gradient decay at initialization and at the end of training of the adding runs at
    ``seq_len`` (their in-run probes, results/long/runs/*/grads.csv), against their outcome."""
    grads = _long_grads()
    grads = grads[grads["run_id"].isin(set(runs["run_id"])) & (grads["task"] == "adding")
                  & (grads["seq_len"] == seq_len) & (grads["layer"] == grads["layers"] - 1)]
    if grads.empty:
        return ""
    last = grads.groupby("run_id")["step"].transform("max")

    def mean_factor(part):
        return part.groupby(["label", "run_id"])["decay_factor"].first().groupby("label").mean()

    init, end = mean_factor(grads[grads["step"] == 0]), mean_factor(grads[grads["step"] == last])
    solved = {r["label"]: (round(r["solve_rate"] * r["n_seeds"]), int(r["n_seeds"]))
              for r in adding[adding["seq_len"] == seq_len].to_dict("records")}
    arms = [a for a in solved if a in init.index and a in end.index]
    won = [a for a in arms if solved[a][0] > 0]
    lost = [a for a in arms if solved[a][0] == 0]

    def listed(group):
        return ", ".join(f"`{a}` x{init[a]:.3f} -> x{end[a]:.3f} ({solved[a][0]}/{solved[a][1]})"
                         for a in group) or "none"

    text = (f"\n![gradient vs lag at initialization and after training, adding T = {seq_len}]"
            f"(figures/decay_long_adding_T{seq_len}.png)\n\n"
            f"At T = {seq_len:,}, the probe inside these runs (every {_probe_every(runs, seq_len)} "
            "steps): the fitted "
            "decay factor of ||dL/dh_t|| per step at initialization -> at each run's last probe (mean over "
            "seeds). Solved in at least one seed: " + listed(won)
            + ". Never solved: " + listed(lost) + ".")
    if won and lost:
        floor = min(end[a] for a in won)
        below = [a for a in lost if end[a] < floor]
        text += (f" Every arm that solved ends at x{floor:.3f} per step or slower; of the arms "
                 f"that never solved, {len(below)} of {len(lost)} end faster than that"
                 + (f" and {_names(sorted(set(lost) - set(below)))} "
                    f"{'ends' if len(lost) - len(below) == 1 else 'end'} as slow as the solvers "
                    "without solving: a slow decay after training goes with solving here but "
                    "does not make it" if len(below) < len(lost) else "") +
                 " (a description across arms" + _opened(won, init, end) + ").")
    return text + "\n"


def _probe_every(runs: pd.DataFrame, seq_len: int) -> str:
    """The probe interval(s) of the adding runs at ``seq_len``: '2,500' or '1,000 or 2,500'."""
    part = runs[(runs["task"] == "adding") & (runs["seq_len"] == seq_len)]
    every = sorted({int(v) for v in pd.to_numeric(part["probe_every"], errors="coerce").dropna()})
    return " or ".join(f"{v:,}" for v in every)


def _opened(arms, init, end, closed: float = 0.9) -> str:
    """'; `a` and `b` start below x0.9 per step and training opens them': the solving arms whose
    decay factor starts fast (below ``closed``) and ends near 1 (computed, not assumed)."""
    opened = [a for a in arms if init[a] < closed and end[a] >= closed]
    if not opened:
        return ""
    return (f"; {_names(opened)} start{'s' if len(opened) == 1 else ''} below x{closed} per "
            "step and training opens " + ("it" if len(opened) == 1 else "them"))


def _unconfirmed(runs: pd.DataFrame) -> str:
    """The runs that stopped on a validation result their test set did not confirm: the
    criterion met on validation, missed on test (by how much, on accuracy)."""
    missed = runs[_true(runs, "val_solved") & ~_true(runs, "solved")]
    if missed.empty:
        return ""
    parts = []
    for task, part in missed.groupby("task", sort=False):
        # adding is solved on its MSE (< 0.01), the other tasks on their accuracy (>= 0.99)
        name, test, val = (("MSE", "final_loss", "val_loss") if task == "adding" else
                           ("accuracy", "accuracy", "val_accuracy"))
        digits = 5 if task == "adding" else 4  # enough to show the side of 0.01 / 0.99 each is on
        t = pd.to_numeric(part[test], errors="coerce").dropna()
        v = pd.to_numeric(part[val], errors="coerce").dropna()
        parts.append(f"{task.replace('_', ' ')} {len(part)}"
                     + (f" (test {name} {_span(t, digits)} after {_span(v, digits)} on "
                        "validation)"
                        if len(t) and len(v) else ""))
    return (" Unsolved runs that met the criterion on the validation set and stopped there, "
            "but not on the test set: " + "; ".join(parts) + ". A run stops at the first "
            "validation result that meets the criterion (`solved_evals = 1`, the default), so "
            "the test set can land just on the wrong side of "
            "it: these are near-misses of the protocol, not failures to learn.")


#: long.toml's stopping-margin pairs: (task, the arm stopped at its first solved validation
#: result, the same runs with solved_evals = 2, the profile that runs the second)
MARGIN_PAIRS = (("copy", "exprnn_copy", "exprnn_copy_2evals", "cpu_copy_confirm"),
                ("adding", "lstm_chrono", "lstm_chrono_2evals", "cpu_adding_confirm"))


def _stopping_margin(runs: pd.DataFrame) -> str:
    """Each of MARGIN_PAIRS, paired by (T, seed): what stopping at the first solved validation
    result costs on the test set, against waiting for a second one in a row; then every pair
    together, where more than one task has pairs."""
    from seqbench.stats import mcnemar_exact

    paired = [(pair, _margin_frames(runs, *pair[:3])) for pair in MARGIN_PAIRS]
    paired = [(pair, ab) for pair, ab in paired if len(ab[0])]
    text = "".join(_margin_pair(*ab, *pair) for pair, ab in paired)
    if len(paired) > 1:
        sa = pd.concat([_true(a, "solved") for _, (a, _) in paired])
        sb = pd.concat([_true(b, "solved") for _, (_, b) in paired])
        text += (f" Both tasks together: {len(sa)} pairs, solved on the test set "
                 f"{int(sa.sum())}/{len(sa)} stopping at the first solved result against "
                 f"{int(sb.sum())}/{len(sb)} with two in a row (McNemar exact p = "
                 f"{mcnemar_exact(int((sa & ~sb).sum()), int((sb & ~sa).sum())):.2g}).")
    return text


def _margin_frames(runs: pd.DataFrame, task: str, first_name: str,
                   confirm_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the two arms of a stopping-margin pair, aligned by (T, seed)."""
    runs = runs[runs["task"] == task]
    first, confirm = (runs[runs["label"] == name].set_index(["seq_len", "seed"])
                      for name in (first_name, confirm_name))
    pairs = first.index.intersection(confirm.index)
    return first.loc[pairs], confirm.loc[pairs]


def _margin_pair(a: pd.DataFrame, b: pd.DataFrame, task: str, first_name: str,
                 confirm_name: str, profile: str) -> str:
    """One pair's sentence: test-set solves (McNemar), near-misses, extra steps and the paired
    test metric, first crossing (``a``) against two solved results in a row (``b``)."""
    from seqbench.stats import mcnemar_exact

    pairs = a.index
    sa, sb = _true(a, "solved"), _true(b, "solved")
    near = [int((_true(x, "val_solved") & ~_true(x, "solved")).sum()) for x in (a, b)]
    same = sum(_same_curve_until_stop(a.loc[k, "run_dir"], b.loc[k, "run_dir"]) for k in pairs)
    extra = (pd.to_numeric(b["steps_taken"]) - pd.to_numeric(a["steps_taken"]))[
        _true(a, "val_solved") & _true(b, "val_solved")]
    return (f" **Stopping margin, {task.replace('_', ' ')}** (profile `{profile}`, "
            f"`solved_evals = 2`: the `{first_name}` seeds at T = "
            f"{_lags(a.reset_index())} stopped only after two "
            f"solved validation results in a row), paired by seed: {len(pairs)} "
            f"pair{'s' if len(pairs) != 1 else ''}; validation curves identical up to the "
            f"first run's stop: {same} of {len(pairs)}. "
            f"Solved on the test set: {int(sa.sum())}/{len(pairs)} stopping at the first solved "
            f"result, {int(sb.sum())}/{len(pairs)} with two in a row (McNemar exact p = "
            f"{mcnemar_exact(int((sa & ~sb).sum()), int((sb & ~sa).sum())):.2g}); near-misses "
            f"{near[0]} -> {near[1]}"
            + (f"; the second result cost a median of {extra.median():,.0f} more steps"
               if len(extra) else "") + ". " + _paired_test_metric(task, a, b))


def _paired_test_metric(task: str, a: pd.DataFrame, b: pd.DataFrame) -> str:
    """The pairs' test metric, B against A (adding: MSE, lower is better; the other tasks:
    accuracy, higher is better): in how many pairs B is better and worse, and an exact
    two-sided sign test (ties dropped; the same binomial as McNemar's)."""
    from seqbench.stats import mcnemar_exact

    name, column, sign, words, digits = (("MSE", "final_loss", -1, ("lower", "higher"), 5)
                                         if task == "adding" else
                                         ("accuracy", "accuracy", 1, ("higher", "lower"), 4))
    diff = (pd.to_numeric(b[column], errors="coerce")
            - pd.to_numeric(a[column], errors="coerce")).dropna()
    better, worse = int((sign * diff > 0).sum()), int((sign * diff < 0).sum())
    if not len(diff):
        return ""
    return (f"Test {name} with two in a row is {words[0]} in {better} of {len(diff)} pairs and "
            f"{words[1]} in {worse} (median change {diff.median():+.{digits}f}; exact sign test "
            f"p = {mcnemar_exact(better, worse):.2g}).")


def _same_curve_until_stop(run_a: str, run_b: str) -> bool:
    """Do two runs' validation curves agree at every evaluation of the shorter one?"""
    try:
        a, b = (pd.read_csv(REPO / d / "curve.csv") for d in (run_a, run_b))
    except (OSError, ValueError):
        return False
    n = min(len(a), len(b))
    return n > 0 and a["eval_loss"].iloc[:n].tolist() == b["eval_loss"].iloc[:n].tolist()


def _span(values: pd.Series, digits: int = 4) -> str:
    """'a' for one value, 'a-b' for several (``digits`` decimals)."""
    lo, hi = f"{values.min():.{digits}f}", f"{values.max():.{digits}f}"
    return lo if lo == hi else f"{lo}-{hi}"


def _setting(row) -> str:
    """The settings that tell the long-lag arms apart: size, optimizer and learning rate, batch."""
    mantissa, exponent = f"{float(row['lr']):e}".split("e")
    lr = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    optimizer = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}.get(row["optimizer"],
                                                                        row["optimizer"])
    return f"H = {int(row['hidden'])}, {optimizer} {lr}, batch {int(row['batch_size'])}"


def _fisher_sentence(fix, default) -> str:
    """'k1 of n1 seeds solved against k0 of n0, Fisher's exact test p = ...' and whether that
    can carry a claim (5 seeds of each arm, p < 0.05)."""
    from seqbench.stats import fisher_exact

    def count(r) -> tuple[int, int]:
        return round(r["solve_rate"] * r["n_seeds"]), int(r["n_seeds"])

    (s1, n1), (s0, n0) = count(fix), count(default)
    p_value, _ = fisher_exact(s1, n1, s0, n0)
    return (f"{s1} of {n1} seeds solved against {s0} of {n0}, Fisher's exact test "
            f"p = {p_value:.2g}"
            + ((": not significant at 0.05 with this many seeds, the difference is not yet a "
                "claim (it needs 5 seeds of each arm)." if min(n0, n1) < 5 else
                ": not significant at 0.05.") if p_value >= 0.05 else
               ": fewer than 5 seeds of one arm, so not yet a claim." if min(n0, n1) < 5
               else "."))


def _longest_solved(head: pd.DataFrame, board: pd.DataFrame) -> str:
    """The longest lag each arm solved in at least half of its seeds (the leaderboard's headline), and
    whether a longer lag was tried and failed (bounded) or not (a lower bound only)."""
    parts = []
    for task, part in head.groupby("task", sort=False):
        items = []
        for r in part.to_dict("records"):
            tried = int(r["longest_tried_T"])
            if pd.isna(r["longest_solved_T"]):
                items.append(f"`{r['label']}` none up to {tried}")
            elif str(r["bounded"]) == "True":
                # the longer lags that bound it, with their seeds: one failed seed is a thin bound
                longer = board[(board["task"] == task) & (board["label"] == r["label"])
                               & (board["seq_len"] > r["longest_solved_T"])]
                items.append(f"`{r['label']}` {int(r['longest_solved_T'])} (" + ", ".join(
                    f"T = {int(b['seq_len'])}: {round(b['solve_rate'] * b['n_seeds'])} of "
                    f"{int(b['n_seeds'])} seed{'s' if b['n_seeds'] != 1 else ''} solved"
                    for b in longer.sort_values("seq_len").to_dict("records")) + ")")
            else:
                items.append(f"`{r['label']}` >= {int(r['longest_solved_T'])} (not bounded: "
                             "the longest T tried)")
        parts.append(f"{task.replace('_', ' ')}: " + "; ".join(items))
    return ("Longest T solved (by at least half of the arm's seeds; the leaderboard's headline, "
            "`seqbench leaderboard --runs results/long/runs.csv --headline`): "
            + ". ".join(parts) + ".")


def _long_dynamics(board: pd.DataFrame) -> str:
    """The largest Lyapunov exponent at initialization of each long-lag arm against its outcome
    (results/long/dynamics_init.csv: `seqbench dynamics --spec tasks/long.toml`)."""
    from seqbench.dynamics.records import read_dynamics

    path = HERE / "long" / "dynamics_init.csv"
    if not path.exists():
        return ""
    d = read_dynamics([path])
    top = d[(d["measure"] == "lyapunov") & (d["index"] == 0)]
    lam = top.groupby("label")["value"].mean()
    rows = []
    for r in board[board["seq_len"] == 500].to_dict("records"):  # the adding rows
        if r["label"] in lam.index:
            k = round(r["solve_rate"] * r["n_seeds"])
            rows.append((r["label"], float(lam[r["label"]]), k, int(r["n_seeds"])))
    if not rows:
        return ""
    near = [r for r in rows if abs(r[1]) < 0.05]
    far = [r for r in rows if r[1] <= -0.05]  # contracting: nearby trajectories converge
    expanding = [r for r in rows if r[1] >= 0.05]  # chaotic at initialization

    def listed(group, fmt):
        return ", ".join(f"`{a}` ({v:{fmt}}; solved {k}/{n})" for a, v, k, n in group) or "none"

    counts = sorted({n for _, _, _, n in rows})
    seeds = f"{counts[0]}-{counts[-1]}" if len(counts) > 1 else str(counts[0])
    finding = []
    if any(k == 0 for _, _, k, _ in near):
        finding.append("not enough (arms that start near 0 failed)")
    if any(k > 0 for _, _, k, _ in far):
        finding.append("not needed (contracting arms solved)")
    return ("\n\nThe largest Lyapunov exponent of each arm's initial model, per step (`seqbench "
            "dynamics --spec tasks/long.toml --measure lyapunov`; "
            "[long_spectrum.png](figures/long_spectrum.png)): near 0 (|lambda_1| < 0.05): "
            + listed(near, "+.3f") + "; contracting (lambda_1 <= -0.05): " + listed(far, "+.2f")
            + ("; expanding (lambda_1 >= 0.05): " + listed(expanding, "+.2f") if expanding else "")
            + "."
            + (" At T = 500 a neutral spectrum at initialization was "
               + " and ".join(finding) + f" to solve adding; with {seeds} seeds per arm this is "
               "a description across arms, not yet a test." if finding else ""))


def atlas() -> str:
    """Every registered cell's decay at initialization at one long lag (the cells issue's atlas)."""
    path = HERE / "atlas" / "grads.csv"
    if not path.exists():
        return ""
    table = summarize(read_grads([path]))
    last = max((c for c in table.columns if c.startswith("ratio_lag")),
               key=lambda c: int(c.removeprefix("ratio_lag")))
    rows = []
    for r in table.to_dict("records"):
        n, reached = int(r["seeds"]), int(r["horizon_reached"])
        horizon = (f"{_num(r['horizon_km_median'], '{:.0f}')} (reached in {reached} of {n})"
                   if reached else f"> {last.removeprefix('ratio_lag')} in all {n} seeds")
        rows.append([f"`{r['series']}`", f"x{r['decay_factor']:.4f}", horizon, _num(r[last])])
    T = int(table["seq_len"].iloc[0])
    # a straight-line fit over every norm above the underflow floor: a curve that falls fast and
    # then lies flat far below its lag-0 value is fitted as slow decay; its horizon says more
    flat = [f"`{r['series']}`" for r in table.to_dict("records")
            if r["horizon_reached"] == r["seeds"] and r["decay_factor"] > 0.9]
    records = table.to_dict("records")
    keep = [r["series"] for r in records if r["horizon_reached"] == 0]
    lose = [r for r in records if r["horizon_reached"] == r["seeds"]]
    shows = ("\nWhat it shows: the gradient at h_t (for the LSTM the cell state's gradient "
             "is grads.csv's `cell_grad_norm`, not shown here) reaches every lag of the "
             "sequence at initialization "
             f"in {_names(keep)} (no seed's norm fell below 1e-6 of its lag-0 value); in "
             f"{_names(r['series'] for r in lose)} it falls below that within "
             f"{min(r['horizon_km_median'] for r in lose):.0f}-"
             f"{max(r['horizon_km_median'] for r in lose):.0f} steps. A gradient that reaches "
             "the lag is what training needs to start, not a promise that it solves the task "
             "(section 5 and `tasks/long.toml` say which cells do).\n") if keep and lose else ""
    caveat = shows + ("" if not flat else
              f"\n{', '.join(flat)}: the decay factor is a least-squares line over every norm above "
              "the underflow floor, and this curve falls fast, then lies flat many orders of "
              "magnitude below its lag-0 value; read its horizon, not its factor.\n")
    return (f"\n## 6. Every cell at initialization: the decay atlas, adding T = {T:,}\n\n"
            f"![decay at initialization, every cell, adding T={T}](figures/decay_atlas_T{T}.png)"
            f"\n\n`seqbench grads --task adding --seq-len {T}` for every registered cell "
            "(`--impl hand`: every lag), H = 128, each cell at its paper's initialization "
            "(README.md, Cells): the decay factor per step (mean over seeds), the gradient "
            "horizon (the lag where ||dL/dh|| falls below 1e-6 of its lag-0 value; Kaplan-Meier "
            "median, seeds that never reach it censored at the sequence) and the norm at the "
            "longest lag relative to lag 0.\n\n"
            + _table(["cell", "decay factor", "horizon",
                      f"norm at lag {last.removeprefix('ratio_lag')} / lag 0"], rows) + caveat)


def new_tasks() -> str:
    """The newer tasks against every cell (tasks/new_tasks.toml, quick), as far as recorded."""
    path = HERE / "new_tasks" / "runs.csv"
    if not path.exists():
        return ""
    board, _ = lb.build(path)
    runs = _runs(path)
    one_rate = (" for every arm (one rate: an arm that needs another is at a disadvantage)"
                if runs["lr"].nunique() == 1 else "")
    out = [f"\n## 7. The newer tasks{_progress('new_tasks.toml', 'quick', path)}\n",
           "`tasks/new_tasks.toml`, `quick`: temporal order (6a), selective copy (mamba), "
           f"variable-lag copy (end_aligned) and MQAR (block, N = 8) at T = {_lags(board)}, every "
           f"cell and the LSTM/GRU with bias remedies, {_trained_with(runs)}{one_rate}; the "
           "sweep accumulates "
           "seeds over sittings (`seqbench sweep tasks/new_tasks.toml --out results/new_tasks`). "
           "Solved: test accuracy >= 0.99 on the answer positions. "
           "[new_tasks_solve_rate.png](figures/new_tasks_solve_rate.png)\n"]
    for task, part in board.groupby("task", sort=False):
        part = part.sort_values(["solve_rate", "loss_ratio_mean"], ascending=[False, True],
                                kind="stable")
        rows = [[f"`{r['label']}`", str(int(r["n_seeds"])), _rate(r), _ratio(r),
                 _num(r["km_median_solved_step"], "{:.0f}")] for r in part.to_dict("records")]
        out.append(f"\n### {task.replace('_', ' ')}, T = {_lags(part)}\n")
        out.append(_table(["arm", "seeds", "solved [95% Wilson]", "loss / baseline [95% CI]",
                           "KM median step"], rows))
        lstm = part[part["label"] == "lstm"]
        best = part.iloc[0]
        if len(lstm):
            out.append(f"Default LSTM: solve rate {_rate(lstm.iloc[0])}; best arm `{best['label']}`"
                       f": {_rate(best)} ({int(best['n_seeds'])} seed"
                       + ("s" if best["n_seeds"] != 1 else "")
                       + ("; fewer than 5 seeds: not yet a claim" if best["n_seeds"] < 5 else "")
                       + ").\n")
    return "\n".join(out)


def _progress(spec_name: str, profile: str, path: Path) -> str:
    """' (in progress)' while the runs recorded in ``path`` are fewer than the profile's."""
    wanted = _profile_ids(spec_name, profile)
    done = set(read_results(path)["config_id"].astype(str)) if path.exists() else set()
    return "" if wanted <= done else f" (in progress: {len(wanted & done)} of {len(wanted)} runs)"


def new_tasks_budget() -> str:
    """The tasks no arm solved in 3,000 steps, with 10,000 (tasks/new_tasks.toml, budget)."""
    from seqbench.stats import holm, rank_test

    path = HERE / "new_tasks_budget" / "runs.csv"
    if not path.exists():
        return ""
    longer, _ = lb.build(path)
    quick, _ = lb.build(HERE / "new_tasks" / "runs.csv")
    quick_runs, longer_runs = _runs(HERE / "new_tasks" / "runs.csv"), _runs(path)
    short, long_ = (f"{int(pd.to_numeric(r['step_budget']).max()):,}"
                    for r in (quick_runs, longer_runs))
    # the rank test's smallest two-sided p: 2 / C(n1 + n2, n1) with the fewest seeds of each side
    n1 = int(longer["n_seeds"].min())
    n2 = int(quick[quick["label"].isin(set(longer["label"]))]["n_seeds"].min())
    ways = math.comb(n1 + n2, n1)
    seeds = f"{n1} seeds each" if n1 == n2 else f"{n1} and {n2} seeds"
    out = [f"\n### 7b. A longer budget{_progress('new_tasks.toml', 'budget', path)}\n",
           f"`tasks/new_tasks.toml`, `budget`: the tasks no arm solved in {short} steps, again "
           f"with {long_} steps (everything else as above; the same seeds, so each run's first "
           f"{short} steps are the quick run's), for the default LSTM and GRU and the two bias "
           "remedies. Loss / baseline compared between the budgets per arm with the "
           f"Mann-Whitney U test ({seeds}: p >= 2/{ways} = {2 / ways:.2g} at best).\n"]
    for task, part in longer.groupby("task", sort=False):
        rows, tests = [], []
        for r in part.to_dict("records"):
            before = quick[(quick["task"] == task) & (quick["label"] == r["label"])]
            if before.empty:
                continue
            b = before.iloc[0]

            def ratios(runs, task=task, label=r["label"]):
                sel = runs[(runs["task"] == task) & (runs["label"] == label)]
                return lb.rank_sample(lb.finished_runs(sel))

            # effect: P(longer > quick) - P(longer < quick); lower loss is a negative effect
            effect, p_value = rank_test(ratios(longer_runs), ratios(quick_runs))
            tests.append((r["label"], effect, p_value))
            rows.append([f"`{r['label']}`", f"{int(b['n_seeds'])} / {int(r['n_seeds'])}",
                         _rate(b), _rate(r),
                         _ratio(b), _ratio(r), _num(r["accuracy_mean"], "{:.3f}"),
                         _num(p_value, "{:.2g}")])
        out.append(f"\n#### {task.replace('_', ' ')}, T = {_lags(part)}\n")
        out.append(_table(["arm", f"seeds ({short} / {long_})", f"solved, {short} steps",
                           f"solved, {long_} steps", f"loss / baseline, {short}",
                           f"loss / baseline, {long_}", f"accuracy, {long_}",
                           "p (loss, rank test)"], rows))
        improving = longer_runs[(longer_runs["task"] == task) & _budget_limited(longer_runs)]
        adjusted = holm([t[2] for t in tests]) if tests else []
        lower = [f"`{label}` (Holm p = {q:.2g})"
                 for (label, effect, _), q in zip(tests, adjusted) if q < ALPHA and effect < 0]
        claim = (f"Lower loss with {long_} steps than with {short} (rank test, Holm-adjusted over "
                 "the arms, p < 0.05): "
                 + (", ".join(lower) if lower else "no arm") + ". "
                 if part["n_seeds"].min() >= 5 else
                 f"Fewer than 5 seeds of an arm with {long_} steps so far: no comparison yet. ")
        out.append(claim + f"Unsolved runs still improving at {long_} steps: {len(improving)}.\n")
    return "\n".join(out)


def length_generalization() -> str:
    """Arms trained at T = 25 and tested at longer lags (tasks/lengths.toml)."""
    from seqbench.lengths import generalization
    from seqbench.stats import fisher_exact, holm

    path = HERE / "lengths" / "runs.csv"
    if not path.exists():
        return ""
    table = generalization(path)
    if table.empty:
        return ""
    lags = sorted(table["eval_seq_len"].unique())
    trained_at = int(table["seq_len"].iloc[0])  # every arm of lengths.toml trains at one T
    out = [f"\n## 8. Length generalization{_progress('lengths.toml', 'quick', path)}\n",
           f"`tasks/lengths.toml`: each arm trained at T = {trained_at} ({_trained_with(_runs(path))}, "
           "stopped when solved) and its final model tested at the longer lags "
           "(`--eval-seq-len`), on test sets of their own. Each cell: solve rate [95% Wilson] "
           "and mean loss / baseline at that lag. "
           "[lengths.png](figures/lengths.png)\n"]
    for task, part in table.groupby("task", sort=False):
        rows, tests = [], []
        for label, arm in part.groupby("label", sort=False):
            by_lag = {int(r["eval_seq_len"]): r for r in arm.to_dict("records")}
            rows.append([f"`{label}`", str(int(arm["n_seeds"].max()))]
                        + [f"{_rate(by_lag[t])}; {_num(by_lag[t]['loss_ratio_mean'])}"
                           if t in by_lag else "-" for t in lags])
            trained, longest = by_lag.get(int(arm["seq_len"].iloc[0])), by_lag.get(lags[-1])
            if trained is not None and longest is not None and trained["solve_rate"] > 0:
                k = [round(r["solve_rate"] * r["n_seeds"]) for r in (trained, longest)]
                n = [int(r["n_seeds"]) for r in (trained, longest)]
                tests.append((label, k, n, fisher_exact(k[0], n[0], k[1], n[1])[0]))
        out.append(f"\n### {task.replace('_', ' ')}\n")
        out.append(_table(["arm", "seeds"] + [f"T = {t}" + (" (trained)" if t == trained_at else "")
                                               for t in lags], rows))
        if part["n_seeds"].min() < 5:
            out.append("Fewer than 5 seeds of an arm so far: no test yet.\n")
        elif tests:
            adjusted = holm([t[3] for t in tests])
            # two-sided tests: "less often" only where the long lag's rate is the lower one
            lower = [k[1] / n[1] < k[0] / n[0] for (_, k, n, _) in tests]
            worse = [f"`{label}` ({k[0]}/{n[0]} at T = {trained_at}, {k[1]}/{n[1]} at "
                     f"T = {lags[-1]}, Holm-adjusted p = {p:.2g})"
                     for (label, k, n, _), p, low in zip(tests, adjusted, lower)
                     if p < ALPHA and low]
            same = [f"`{label}`" for (label, k, n, _), p in zip(tests, adjusted)
                    if p >= ALPHA]
            out.append(f"Arms that solved at T = {trained_at} and solve significantly less often at "
                       f"T = {lags[-1]} (Fisher's exact test, Holm-adjusted over the arms): "
                       + ("; ".join(worse) if worse else "none")
                       + ". No significant difference: " + (", ".join(same) if same else "none")
                       + ".\n")
    return "\n".join(out)


def published() -> str:
    """Published numbers against ours (tasks/papers.toml, cpu profile), as far as run here."""
    from seqbench.published import BASELINE_LEVEL, agreement_counts, compare, format_table

    path = HERE / "papers" / "runs.csv"
    if not path.exists():
        return ""
    spec = _spec("papers.toml")
    table = compare(spec, path, "cpu")
    run = table[table["n_seeds"] > 0]
    runs = _profile_runs(_runs(path), "papers.toml", "cpu")  # the 50,000-step rows: the check below
    seeds = len({cfg.seed for cfg in _configs("papers.toml", "cpu")})
    budget = int(pd.to_numeric(runs["step_budget"]).max())
    improving = int(_budget_limited(runs).sum())
    disagree = run[run["agreement"] == "disagree"]
    at_baseline = disagree[disagree["measured_outcome"] == "baseline"]
    budget_note = (f" Of the {len(disagree)} disagreements, {len(at_baseline)} are ours at the "
                   f"memoryless baseline where the paper reports learning, with at most "
                   f"{budget:,} steps against the papers' longer training (each row's "
                   f"`differences` gives the paper's where it is known): the budget is the first "
                   f"suspect, which the check below measures "
                   f"where it is affordable; {improving} of the {len(runs)} runs "
                   f"{'was' if improving == 1 else 'were'} still improving at the end."
                   ) if len(disagree) else ""
    return ("\n## 9. Published results side by side\n\n"
            "`tasks/papers.toml`, `cpu` profile: each arm runs one paper's setting as far as "
            "seqbench can express it (the spec's comments and each row's `differences` in "
            f"`papers/published.csv` say where ours differs: budgets above all), {seeds} seeds, "
            f"at most {budget:,} steps. The verdict is on outcomes (solved; partial; at the "
            f"memoryless baseline, i.e. loss >= {BASELINE_LEVEL:.0%} of it). Run here so far: "
            f"{len(run)} of {len(table)} arms, at T = {_lags(run)} (`seqbench sweep "
            "tasks/papers.toml --workers 2 --checkpoint-every 500 --out results/papers` runs "
            "the whole profile, resumably). " + _not_run(table)
            + f"{agreement_counts(table)}.{budget_note}\n\n"
            + (format_table(run, "markdown") if len(run) else "No arm recorded yet.\n")
            + _budget_check(spec, path, table))


def _measured(row) -> str:
    """One arm's outcome in a published-vs-measured row: outcome, solved seeds, loss ratio."""
    if not row["n_seeds"]:
        return "not run"
    return (f"{row['measured_outcome']} ({int(row['n_solved'])}/{int(row['n_seeds'])} solved, "
            f"loss/baseline {row['loss_ratio_median']:.3g})")


def _profile_runs(runs: pd.DataFrame, spec_name: str, profile: str) -> pd.DataFrame:
    """The rows of ``runs`` that belong to ``profile`` of tasks/<spec_name> (by config id)."""
    return runs[runs["config_id"].isin(_profile_ids(spec_name, profile))]


def _budget_check(spec, path: Path, cpu: pd.DataFrame) -> str:
    """The disagreeing arms run again at the papers' scale (profile ``paper``, 50,000 steps):
    does the budget explain the disagreement? Measured per arm, not assumed."""
    from seqbench.published import compare

    paper = compare(spec, path, "paper")
    paper = paper[paper["n_seeds"] > 0].set_index("arm")
    if paper.empty:
        return ""
    steps = int(_configs("papers.toml", "paper")[0].steps)
    rows, explained = [], []
    for r in cpu[cpu["arm"].isin(paper.index)].to_dict("records"):
        p = paper.loc[r["arm"]]
        rows.append([f"`{r['arm']}`", str(int(r["seq_len"])), r["published_outcome"],
                     _measured(r), _measured(p), p["agreement"]])
        if r["agreement"] == "disagree" and p["agreement"] == "agree":
            explained.append(r["arm"])
    checked = [r for r in rows if r[0].strip("`") in set(cpu.loc[cpu["agreement"] == "disagree",
                                                                    "arm"])]
    verdict = (f"Of the {len(checked)} disagreeing arm(s) checked, the budget explains "
               f"{len(explained)}" + (f" ({_names(explained)}: they agree with the paper at "
                                      f"{steps:,} steps)" if explained else "")
               + (f"; for {_names([r[0].strip('`') for r in checked if r[0].strip('`') not in explained])}, "
                  f"{steps:,} steps are not enough: a longer budget (some papers trained for "
                  "far more: each row's `differences`) and the other differences listed there "
                  "are the next suspects" if len(explained) < len(checked) else "") + ".")
    return ("\n**Budget check.** Arms run again at the papers' scale (the disagreeing ones "
            f"that are affordable on this CPU first): profile `paper`, {steps:,} steps (`seqbench sweep "
            "tasks/papers.toml --profile paper --arm NAME`; `seqbench published --profile "
            "paper`). " + verdict + "\n\n"
            + _table(["arm", "T", "published", "ours, cpu profile", f"ours, {steps:,} steps",
                      f"agreement at {steps:,}"], rows))


def _not_run(table: pd.DataFrame) -> str:
    """The arms with no recorded seed, by T: what a GPU (`--profile paper`) is for."""
    left = table[table["n_seeds"] == 0]
    if left.empty:
        return ""
    return (f"Not run yet: {len(left)} arms at T = {_lags(left)} ({_names(left['arm'])}; "
            "`seqbench sweep tasks/papers.toml --arm NAME --dry-run` estimates their time). ")


def _lags(table: pd.DataFrame) -> str:
    """The distinct T of a table's rows, ascending: '100, 150, 1,000'."""
    return ", ".join(f"{t:,}" for t in sorted({int(t) for t in table["seq_len"]}))


def provenance() -> str:
    rows = []
    for name in ("runs.csv", "fixes/runs.csv", "long/runs.csv", "new_tasks/runs.csv",
                 "new_tasks_budget/runs.csv", "lengths/runs.csv", "papers/runs.csv"):
        path = HERE / name
        if not path.exists():
            continue
        df = read_results(path)
        commits = ", ".join(f"`{c}` ({n})" for c, n in df["git_commit"].value_counts().items())
        versions = ", ".join(sorted(set(df["torch_version"].astype(str))))
        modes = (df["denormals"].fillna("keep") if "denormals" in df else
                 pd.Series(["keep"] * len(df)))
        denormal = ", ".join(f"{m} ({n})" for m, n in modes.value_counts().items())
        rows.append([f"`{name}`", str(len(df)), commits, versions, denormal])
    return ("\n## Provenance\n\nEach row names its commit (a `+dirty` suffix marks "
            "uncommitted changes to `seqbench/`) and whether denormals were flushed "
            "(README.md, Performance; rows from before the column existed computed with them):\n\n"
            + _table(["file", "rows", "commits (rows)", "torch", "denormals (rows)"], rows))


def regenerating() -> str:
    commands = [line for line in (HERE / "regenerate.sh").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    return ("\n## Regenerating\n\n```\nbash results/regenerate.sh\n```\n\nruns, in order (each "
            "sweep resumable: a second run trains only the missing runs):\n\n```\n"
            + "\n".join(c.rstrip() for c in commands) + "\n```\n")


def render() -> str:
    sections = [header(), gradients_at_init(), training_opens_gates(), quick_sweeps(), fixes(),
                long_lags(), atlas(), new_tasks(), new_tasks_budget(), length_generalization(),
                published(), provenance(), regenerating()]
    return "\n".join(s.rstrip("\n") + "\n" for s in sections if s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    text = render()
    target = HERE / "README.md"
    if args.check:
        if target.read_text(encoding="utf-8") != text:
            print(f"{target} is out of date with the CSVs: run python results/readme.py",
                  file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
