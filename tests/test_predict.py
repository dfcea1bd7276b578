"""seqbench predict: the AUC against a brute-force pair count, its bootstrap interval, Spearman
against scipy, the horizon's censoring, and the command on the committed fixes comparison."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from seqbench import predict as pr
from seqbench.cli import cli

ROOT = Path(__file__).resolve().parents[1]
FIXES = ROOT / "results" / "fixes" / "runs.csv"


def brute_auc(scores, labels) -> float:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_is_the_pair_count_with_ties_half(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=40).astype(float)  # many ties
    scores[:3] = [np.inf, -np.inf, np.inf]
    labels = rng.random(40) < 0.4
    assert pr.roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels), abs=1e-12)


def test_auc_extremes_and_missing():
    labels = np.array([0, 0, 0, 1, 1], dtype=bool)
    assert pr.roc_auc([1, 2, 3, 4, 5], labels) == 1.0
    assert pr.roc_auc([5, 4, 3, 2, 1], labels) == 0.0
    assert pr.roc_auc([7, 7, 7, 7, 7], labels) == 0.5
    assert pr.roc_auc([1, np.nan, 3, 4, 5], labels) == 1.0  # NaN dropped
    assert math.isnan(pr.roc_auc([1, 2], [True, True]))


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    labels = rng.random(120) < 0.4
    scores = rng.normal(size=120) + labels * 0.8
    auc = pr.roc_auc(scores, labels)
    lo, hi = pr.bootstrap_auc_ci(scores, labels, n_resamples=500, seed=3)
    assert 0 <= lo < auc < hi <= 1
    assert (lo, hi) == pr.bootstrap_auc_ci(scores, labels, n_resamples=500, seed=3)
    assert (lo, hi) != pr.bootstrap_auc_ci(scores, labels, n_resamples=500, seed=4)
    groups = np.arange(120) // 5  # clusters of five
    glo, ghi = pr.bootstrap_auc_ci(scores, labels, groups, n_resamples=300, seed=3)
    assert glo < auc < ghi
    assert (glo, ghi) == pr.bootstrap_auc_ci(scores, labels, groups, n_resamples=300, seed=3)
    assert all(map(math.isnan, pr.bootstrap_auc_ci([1, 2, 3], [True, False, False])))


def test_spearman_is_scipys():
    rng = np.random.default_rng(2)
    x = rng.normal(size=50)
    y = np.round(x + rng.normal(size=50), 0)  # ties in y
    rho, p = pr.spearman(x, y)
    ref = sps.spearmanr(x, y)
    assert rho == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)
    # unsolved runs at +inf rank as the largest values, tied: as the budget would
    t = np.where(y > 0, y, np.inf)
    assert pr.spearman(x, t) == pytest.approx(pr.spearman(x, np.where(y > 0, y, 1e9)))
    assert all(map(math.isnan, pr.spearman([1, 1, 1, 1], [1, 2, 3, 4])))


def test_horizon_censored_above_every_reached_one_at_the_common_lag():
    frame = pd.DataFrame({"horizon_reached": [5, np.nan, 25, 24, np.nan],
                          "max_lag": [24, 24, 25, 25, 25]})
    assert list(pr.horizon_ranked(frame)) == [5, np.inf, np.inf, 24, np.inf]
    assert list(pr.horizon_ranked(frame[frame["max_lag"] == 25])) == [25, 24, np.inf]


def test_init_measures_reads_the_step0_top_layer(tmp_path):
    path = tmp_path / "grads.csv"
    rows = [{"probe_id": f"r@{step}", "step": step, "layer": layer, "layers": 2, "lag": lag,
             "grad_norm": (0.5 if layer else 0.9) ** lag * (3 if step else 1),
             "decay_factor": 0.5 if layer else 0.9, "horizon": 20 if layer else ""}
            for step in (0, 500) for layer in (0, 1) for lag in range(11)]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    m = pr.init_measures(path)
    assert m["decay_factor"] == 0.5 and m["horizon_reached"] == 20 and m["max_lag"] == 10
    assert m["log10_ratio_lag_T"] == pytest.approx(10 * math.log10(0.5))
    assert m["abs_log_decay"] == pytest.approx(math.log(2))
    with open(path, "w", newline="") as fh:  # probed in training only: no step-0 probe
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["step"])
    assert pr.init_measures(path) is None


def test_command_on_the_committed_fixes():
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["predict", str(FIXES), "--select", "lr", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < 60
    lines = [ln for ln in result.output.splitlines() if ln and not ln.startswith("Warning")]
    from io import StringIO
    table = pd.read_csv(StringIO("\n".join(lines)))
    assert list(table["measure"]) == list(pr.MEASURES)
    assert (table["task"] == "all").all()
    assert table["auc"].between(0, 1).all()
    assert (table["auc_lo"] <= table["auc"]).all() and (table["auc"] <= table["auc_hi"]).all()
    # 27 arms x 2 tasks x 5 seeds at the selected lr (more while a new arm is being added)
    assert (table["n"] >= 270).all()
    assert (table["n"] == len(pr.load(FIXES, ["lr"])[0])).all()


def test_by_task_prints_a_table_per_task_and_pooled(tmp_path):
    figure = tmp_path / "sub" / "predict.png"
    result = CliRunner().invoke(cli, ["predict", str(FIXES), "--select", "lr", "--by", "task",
                                      "-o", str(figure)])
    assert result.exit_code == 0, result.output
    assert figure.stat().st_size > 10_000
    for task in ("adding", "delayed_recall", "all"):
        for measure in pr.MEASURES:
            assert any(ln.split()[:2] == [task, measure] for ln in result.output.splitlines())


def test_bad_input_is_one_line_exit_2(tmp_path):
    runs = pd.read_csv(FIXES, dtype=str).head(4)
    runs["run_dir"] = str(tmp_path / "nowhere")
    no_probes = tmp_path / "runs.csv"
    runs.to_csv(no_probes, index=False)
    for args, words in (([str(tmp_path / "none.csv")], "no such runs CSV"),
                        ([str(no_probes)], "no run of"),
                        ([str(FIXES), "-o", str(tmp_path / "f.xyz")], "cannot write figures")):
        result = CliRunner().invoke(cli, ["predict", *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1, \
            result.output
        assert words in result.output
